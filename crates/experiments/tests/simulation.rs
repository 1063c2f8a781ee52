//! Seeded simulation testing, in the manner of TigerBeetle's simulator:
//! random configurations of every kind of host the experiments build —
//! the Ensō and packetized echo hosts (each notification mode, IOMMU on and
//! off, several PCIe links and machine presets, fixed and mixed frame
//! sizes, constant and Poisson arrivals, loads up to overload), the
//! user-level runtime under each preemption source, and the l3fwd and DSA
//! offload hosts through their experiments — each run to quiescence and
//! checked against the invariants every model promises:
//!
//! * conservation: every frame offered comes back or is counted under
//!   exactly one `drop.*` reason somewhere (NIC, application, wire); every
//!   job completes exactly once;
//! * ledgers: every core's categories sum to its elapsed time;
//! * isolation: no DMA of a correct driver faults in the IOMMU;
//! * determinism: the same seed gives the same counters.
//!
//! The accelerator chain of Nagare (every mode) is among the hosts: its
//! replies must equal the software reference, and the switch must
//! conserve every TLP and message.
//!
//! A failure prints the seed and the command that replays it alone:
//! `NEXTIO_SIM_SEED=<seed> cargo test -p nextio-experiments --profile ci
//! --test simulation`. `NEXTIO_SIM_RUNS=<n>` runs more seeds.

use std::rc::Rc;

use nextio_apps::app::{AppFactory, PacketApp};
use nextio_apps::echo::{self, EchoConfig, EchoSystem, NotificationMode};
use nextio_apps::maglev::{self, Maglev, MaglevConfig};
use nextio_engine::{Category, Counters, Duration, Mailbox, Sim, SimRng, Time};
use nextio_experiments::experiment::{RunContext, execute};
use nextio_experiments::params::Params;
use nextio_hw::ethernet::LinkConfig;
use nextio_hw::interrupt::pipeline::{Strategy, programs};
use nextio_hw::machine::MachineSpec;
use nextio_hw::pcie::PcieConfig;
use nextio_hw::trafficgen::{Arrivals, SizeSpec, Source, TrafficConfig, TrafficGen};
use nextio_lib::{Job, Preemption, Runtime, RuntimeConfig};
use nextio_os::{Host, OsCosts};

/// Seeds run by default (each is a fraction of a second).
const DEFAULT_RUNS: u64 = 24;
/// The seed every default run derives from: fixed, so CI is reproducible.
const BASE_SEED: u64 = 0x005e_ed0f_5eed;

fn pick<T: Clone>(rng: &mut SimRng, xs: &[T]) -> T {
    xs[(rng.next_u64() % xs.len() as u64) as usize].clone()
}

fn range(rng: &mut SimRng, lo: u64, hi: u64) -> u64 {
    lo + rng.next_u64() % (hi - lo + 1)
}

/// What one echo run ended with, for the determinism check.
#[derive(Debug, PartialEq)]
struct EchoOutcome {
    nic: Counters,
    app: Counters,
    sent: u64,
    received: u64,
    events: u64,
}

fn ledgers_balance(host: &Host, sim: &Sim) -> Result<(), String> {
    for core in host.machine().cores() {
        let end = sim.now().max(core.cursor());
        let l = core.ledger_at(end);
        let sum: u64 = Category::ALL.iter().map(|c| l.get(*c).ps()).sum();
        if sum != (end - Time::ZERO).ps() {
            return Err(format!(
                "core {}: ledger categories sum to {sum} ps, elapsed {} ps",
                core.id(),
                (end - Time::ZERO).ps()
            ));
        }
    }
    Ok(())
}

fn echo_run(seed: u64) -> Result<EchoOutcome, String> {
    let mut rng = SimRng::new(seed).fork("echo");
    let interface = pick(&mut rng, &[0u8, 1, 2, 3]);
    let cores = range(&mut rng, 1, 3) as usize;
    let mut machine = match pick(&mut rng, &[0u8, 1, 2]) {
        0 => MachineSpec::enso_testbed(cores),
        _ => MachineSpec::ice_lake_sp(cores),
    };
    machine.fabric.iommu.enabled = pick(&mut rng, &[true, false]);
    machine.nic_slot = pick(
        &mut rng,
        &[
            PcieConfig::gen_lanes(3, 16),
            PcieConfig::gen_lanes(3, 8),
            PcieConfig::gen_lanes(4, 16),
        ],
    );
    let sizes = pick(
        &mut rng,
        &[
            SizeSpec::Fixed(64),
            SizeSpec::Fixed(1518),
            SizeSpec::Uniform(64, 1518),
        ],
    );
    let rate_gbps = pick(&mut rng, &[5.0, 25.0, 60.0, 100.0]);
    let frames = range(&mut rng, 300, 3000);
    let flows = range(&mut rng, 1, 64) as u32;
    let arrivals = pick(&mut rng, &[Arrivals::Constant, Arrivals::Poisson]);
    let config = EchoConfig { machine, seed };
    // The echo, or an application in its place (a small Maglev: its
    // connection table is a few lines, so flows evict one another).
    let app: Option<AppFactory> = pick(&mut rng, &[false, true]).then(|| {
        Rc::new(|_core: usize| {
            let config = MaglevConfig {
                backends: 10,
                table_size: 251,
                conn_buckets: 4,
            };
            Box::new(Maglev::new(config, *maglev::costs()).expect("a valid Maglev"))
                as Box<dyn PacketApp>
        }) as AppFactory
    });
    let with_app = app.is_some();
    let sim = Sim::new();
    let sys: EchoSystem = match interface {
        0 => echo::packetized::build_app(&sim, &config, app),
        1 => echo::enso::build_app(&sim, &config, NotificationMode::PerPacket, app),
        2 => echo::enso::build_app(&sim, &config, NotificationMode::Reactive, app),
        _ => echo::enso::build_app(&sim, &config, NotificationMode::Prefetch, app),
    }
    .map_err(|e| format!("building the host: {e}"))?;
    let to_gen = Rc::new(Mailbox::new(&sim));
    let gen_port = LinkConfig {
        queue_frames: 1 << 16,
        ..LinkConfig::default()
    };
    let (dut_out, gen_out) = sys
        .host
        .machine()
        .wire_port(sys.nic, 0, to_gen.clone(), LinkConfig::default(), gen_port)
        .map_err(|e| e.to_string())?;
    let tg = TrafficGen::start(
        &sim,
        TrafficConfig {
            source: Source::Synthetic { sizes, flows },
            arrivals,
            rate_gbps,
            frames,
            warmup_frames: 0,
            seed,
        },
        gen_out.clone(),
        to_gen,
    )
    .map_err(|e| e.to_string())?;
    // Offer everything, then let the host drain completely.
    let offer = Duration::from_ns_f64(frames as f64 * 1538.0 * 8.0 / rate_gbps * 4.0);
    sim.run_until(Time::ZERO + offer + Duration::from_us(500));
    let stats = tg.stats.borrow().clone();
    let nic = sys.nic_counters();
    let app = sys.app.borrow().clone();
    let wires = dut_out.counters().sum_prefix("drop.") + gen_out.counters().sum_prefix("drop.");
    let dropped = nic.sum_prefix("drop.") + app.sum_prefix("drop.") + wires;
    let what = format!(
        "interface {interface}, {cores} cores, {sizes:?} at {rate_gbps} Gb/s, {frames} frames, \
         iommu {}",
        sys.host.machine().fabric().iommu_enabled()
    );
    if stats.sent != frames {
        return Err(format!(
            "{what}: the generator sent {} of {frames}",
            stats.sent
        ));
    }
    if stats.sent != stats.received + dropped {
        return Err(format!(
            "{what}: {} sent ≠ {} back + {dropped} dropped\nNIC {nic:?}\napp {app:?}",
            stats.sent, stats.received
        ));
    }
    // An application rewrites frames its own way (checksums kept valid)
    // and never bumps the echo byte; every frame it saw is counted once.
    let not_echoed_expected = if with_app { stats.received } else { 0 };
    if stats.corrupt > 0 || stats.not_echoed != not_echoed_expected {
        return Err(format!(
            "{what}, app {with_app}: {} corrupt, {} not echoed",
            stats.corrupt, stats.not_echoed
        ));
    }
    let verdicts = app.get("processed") + app.sum_prefix("skipped.");
    if with_app && !(stats.received <= verdicts && verdicts <= nic.get("rx_frames")) {
        return Err(format!(
            "{what}: the application's verdicts do not cover the frames delivered\nNIC {nic:?}\napp {app:?}"
        ));
    }
    let fabric = sys.host.machine().fabric().counters();
    if fabric.sum_prefix("drop.") > 0 {
        return Err(format!("{what}: the fabric dropped DMA: {fabric:?}"));
    }
    if app.get("thread_errors") + app.get("error") > 0 {
        return Err(format!("{what}: a driver thread failed: {app:?}"));
    }
    ledgers_balance(&sys.host, &sim).map_err(|e| format!("{what}: {e}"))?;
    let events = sim.events();
    sim.shutdown();
    Ok(EchoOutcome {
        nic,
        app,
        sent: stats.sent,
        received: stats.received,
        events,
    })
}

fn runtime_run(seed: u64) -> Result<(), String> {
    let mut rng = SimRng::new(seed).fork("runtime");
    let workers = range(&mut rng, 1, 3) as usize;
    let preemption = pick(
        &mut rng,
        &[
            Preemption::None,
            Preemption::Signal,
            Preemption::TimerCore {
                strategy: Strategy::Flush,
            },
            Preemption::TimerCore {
                strategy: Strategy::Tracked,
            },
            Preemption::KbTimer,
        ],
    );
    let sim = Sim::new();
    let host = Host::new(
        &sim,
        MachineSpec::xui_server(workers + 1),
        OsCosts::default(),
    )
    .map_err(|e| e.to_string())?;
    // From 5 µs: below ~3 µs a signal (2.4 µs, xUI §2) every interval
    // leaves the worker no time to make progress, a livelock the model
    // reproduces faithfully (xui-dsa's notes) but that no job survives.
    let mut cfg = RuntimeConfig::new(
        preemption,
        Duration::from_us(range(&mut rng, 5, 20)),
        programs::fib(),
    );
    cfg.work_stealing = pick(&mut rng, &[true, false]);
    let cores: Vec<usize> = (0..workers).collect();
    let rt = Runtime::start_multi(&host, cfg, &cores, Some(workers)).map_err(|e| e.to_string())?;
    let jobs = range(&mut rng, 5, 60);
    for id in 0..jobs {
        rt.submit(Job {
            id,
            class: 0,
            cycles: range(&mut rng, 1_000, 400_000),
            arrival: Time::ZERO,
        });
    }
    let (r, s) = (rt.clone(), sim.clone());
    sim.spawn(async move {
        while (r.completions().len() as u64) < jobs {
            s.sleep(Duration::from_us(5)).await;
        }
        r.stop();
    });
    sim.run_until(Time::ZERO + Duration::from_ms(200));
    let what = format!("{preemption:?} on {workers} workers, {jobs} jobs");
    let mut ids: Vec<u64> = rt.completions().iter().map(|c| c.job.id).collect();
    ids.sort_unstable();
    if ids != (0..jobs).collect::<Vec<_>>() {
        return Err(format!(
            "{what}: completed {} jobs, not each once",
            ids.len()
        ));
    }
    ledgers_balance(&host, &sim).map_err(|e| format!("{what}: {e}"))?;
    sim.shutdown();
    Ok(())
}

/// An experiment run with random small parameters; it must finish, which
/// includes keeping its own conservation invariants.
fn experiment_run(seed: u64) -> Result<(), String> {
    let mut rng = SimRng::new(seed).fork("experiment");
    let (name, sets): (&str, Vec<(&str, String)>) = match pick(&mut rng, &[0u8, 1, 2, 3, 4, 5]) {
        0 => (
            "xui-l3fwd",
            vec![
                ("queues", pick(&mut rng, &["1", "2", "4"]).to_string()),
                ("load", pick(&mut rng, &["0.2", "0.6", "1"]).to_string()),
                ("duration_us", range(&mut rng, 100, 400).to_string()),
            ],
        ),
        2 => (
            "udma-offload",
            vec![
                (
                    "sizes",
                    pick(&mut rng, &["64,4096", "100,5000", "8192"]).to_string(),
                ),
                ("ops", range(&mut rng, 2, 8).to_string()),
                ("inflight", range(&mut rng, 1, 8).to_string()),
                ("cold", pick(&mut rng, &["0", "1"]).to_string()),
            ],
        ),
        3 => (
            "udma-cross-space",
            vec![
                (
                    "sizes",
                    pick(&mut rng, &["64", "3000", "4096,9000"]).to_string(),
                ),
                ("messages", range(&mut rng, 1, 6).to_string()),
            ],
        ),
        5 => (
            "enso-apps",
            vec![
                (
                    "interfaces",
                    pick(&mut rng, &["enso", "packetized"]).to_string(),
                ),
                (
                    "cases",
                    pick(
                        &mut rng,
                        &[
                            "maglev-cached",
                            "maglev-synflood",
                            "nitrosketch",
                            "mica",
                            "log-monitor-literal",
                            "log-monitor-stream",
                        ],
                    )
                    .to_string(),
                ),
                ("frames", range(&mut rng, 100, 400).to_string()),
                ("warmup_frames_per_core", "0".to_string()),
                ("resolution_gbps", "50".to_string()),
                ("mica_keys", "4096".to_string()),
            ],
        ),
        4 => (
            "lauberhorn-rpc-cycles",
            vec![
                ("requests", range(&mut rng, 20, 120).to_string()),
                ("warmup", range(&mut rng, 0, 20).to_string()),
            ],
        ),
        _ => (
            "xui-dsa",
            vec![
                ("mean_us", pick(&mut rng, &["2", "20"]).to_string()),
                ("noise_frac", pick(&mut rng, &["0", "0.5"]).to_string()),
                ("requests", range(&mut rng, 50, 400).to_string()),
            ],
        ),
    };
    let exp = nextio_experiments::find(name).ok_or_else(|| format!("no experiment {name}"))?;
    let raw: Vec<String> = sets.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let params = Params::resolve(name, exp.params(), true, &raw).map_err(|e| e.to_string())?;
    // Conservation (frames, offloads) is enforced by the run itself: a
    // broken count is an error, not a check that can be overlooked.
    execute(exp, RunContext::new(params, seed, true))
        .map_err(|e| format!("{name} {raw:?}: {e}"))?;
    Ok(())
}

/// What one accelerator-chain run ended with, for the determinism check.
#[derive(Debug, PartialEq)]
struct ChainOutcome {
    replies: usize,
    switch: Option<Counters>,
    crypto: Counters,
    ml: Counters,
    events: u64,
}

/// The accelerator chain (Nagare's §4.1) in a random mode, machine,
/// pipeline, image size and arrival pattern: every reply is the reference,
/// every request is answered or counted dropped somewhere, the switch
/// conserves TLPs and messages, no DMA faults in the IOMMU.
fn chain_run(seed: u64) -> Result<ChainOutcome, String> {
    use nextio_apps::chain::{self, ChainConfig, ChainMode};
    use nextio_hw::device::Device as _;
    use nextio_hw::nagare::PipelineConfig;
    let mut rng = SimRng::new(seed).fork("chain");
    let mode = pick(&mut rng, &ChainMode::ALL);
    let cores = range(&mut rng, 1, 2) as usize;
    let mut machine = match pick(&mut rng, &[0u8, 1]) {
        0 => MachineSpec::enso_testbed(cores),
        _ => MachineSpec::ice_lake_sp(cores),
    };
    machine.fabric.iommu.enabled = pick(&mut rng, &[true, false]);
    let mut cfg = ChainConfig::new(machine, mode);
    cfg.pipeline = PipelineConfig {
        stages: range(&mut rng, 6, 24) as u32,
        cycles_per_stage: range(&mut rng, 1, 20) as u32,
        ..PipelineConfig::default()
    };
    let image = range(&mut rng, 16, 1400) as usize;
    let n = range(&mut rng, 20, 300);
    let interval = Duration::from_ns(pick(&mut rng, &[0u64, 500, 1000, 3000]));
    let what = format!("{mode:?}, {image} B images, {n} at {interval:?}");
    let sim = Sim::new();
    let sys = chain::build(&sim, &cfg).map_err(|e| format!("{what}: {e}"))?;
    let out = chain::run_client(&sim, &sys, n, image, interval, Duration::from_ms(2))
        .map_err(|e| format!("{what}: {e}"))?;
    if out.wrong > 0 {
        return Err(format!(
            "{what}: {} replies differ from the reference",
            out.wrong
        ));
    }
    let crypto = sys.crypto.borrow().counters().clone();
    let ml = sys.ml.borrow().counters().clone();
    let nic = sys.nic.borrow().counters().clone();
    let app = sys.app.borrow().clone();
    let switch = sys.nagare.as_ref().map(|n| n.borrow().counters().clone());
    if let Some(n) = &sys.nagare {
        n.borrow()
            .conservation()
            .map_err(|e| format!("{what}: {e}"))?;
    }
    let dropped = crypto.sum_prefix("drop.")
        + ml.sum_prefix("drop.")
        + nic.sum_prefix("drop.")
        + app.sum_prefix("drop.")
        + switch.as_ref().map_or(0, |c| c.get("messages_dropped"))
        + out.wire_drops;
    if out.replies.len() as u64 + dropped != out.sent {
        return Err(format!(
            "{what}: {} replies + {dropped} counted drops for {} requests",
            out.replies.len(),
            out.sent
        ));
    }
    let faults = sys
        .host
        .machine()
        .fabric()
        .counters()
        .get("drop.iommu_fault");
    if faults > 0 {
        return Err(format!("{what}: {faults} IOMMU faults"));
    }
    ledgers_balance(&sys.host, &sim).map_err(|e| format!("{what}: {e}"))?;
    let events = sim.events();
    sim.shutdown();
    Ok(ChainOutcome {
        replies: out.replies.len(),
        switch,
        crypto,
        ml,
        events,
    })
}

fn run_seed(seed: u64) -> Result<(), String> {
    echo_run(seed)?;
    runtime_run(seed)?;
    chain_run(seed)?;
    experiment_run(seed)
}

fn replay_hint(seed: u64) -> String {
    format!(
        "replay with: NEXTIO_SIM_SEED={seed} cargo test -p nextio-experiments --profile ci --test simulation"
    )
}

#[test]
fn random_hosts_keep_every_invariant() {
    let seeds: Vec<u64> = match std::env::var("NEXTIO_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("NEXTIO_SIM_SEED is a number")],
        Err(_) => {
            let runs = std::env::var("NEXTIO_SIM_RUNS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(DEFAULT_RUNS);
            let mut base = SimRng::new(BASE_SEED);
            (0..runs).map(|_| base.next_u64()).collect()
        }
    };
    let mut failures = Vec::new();
    for &seed in &seeds {
        if let Err(e) = run_seed(seed) {
            failures.push(format!("seed {seed}: {e}\n  {}", replay_hint(seed)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let seed = SimRng::new(BASE_SEED).next_u64();
    let a = echo_run(seed).unwrap_or_else(|e| panic!("{e}\n{}", replay_hint(seed)));
    let b = echo_run(seed).unwrap_or_else(|e| panic!("{e}\n{}", replay_hint(seed)));
    assert_eq!(a, b, "{}", replay_hint(seed));
    assert!(a.sent > 0 && a.received > 0);
    let a = chain_run(seed).unwrap_or_else(|e| panic!("{e}\n{}", replay_hint(seed)));
    let b = chain_run(seed).unwrap_or_else(|e| panic!("{e}\n{}", replay_hint(seed)));
    assert_eq!(a, b, "{}", replay_hint(seed));
    assert!(a.replies > 0);
}
