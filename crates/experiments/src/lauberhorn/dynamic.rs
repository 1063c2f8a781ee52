//! `lauberhorn-dynamic` — the paper's central claim (§4, §6, Fig. 5):
//! with more RPC endpoints than cores and load that moves between them,
//! Lauberhorn keeps tail latency low without dedicating a core to each
//! endpoint. Several server processes each serve one procedure; time is
//! cut into bursts, and in each burst one process (in turn) is hot while
//! the others get a trickle. Open-loop Poisson arrivals, the same
//! schedule on every system.
//!
//! * Lauberhorn: a few RPC cores for all processes. The NIC sends a
//!   request to the process's user loop if one waits, else to a kernel
//!   dispatch thread, which switches to the process; a user loop idling
//!   while another process has work is told YIELDNOW; an idle core is
//!   retired and called back by interrupt.
//! * Kernel bypass with static core assignment: one dedicated core per
//!   service busy-polling its own queue (RSS steers each service's flow
//!   to it), a user-level ONC RPC server on each — one DPDK-style
//!   process with a thread per service, as a bypass deployment runs.
//! * Time-sliced static bypass, the fair baseline: the same bypass
//!   threads on as many cores as Lauberhorn gets, so several services'
//!   threads share a core (thread `i` on core `i mod cores`) and the
//!   kernel time-slices them ([`nextio_os::Dispatcher::set_time_slice`],
//!   a fair scheduler's slice); each thread busy-polls its own queue
//!   during its slice, so a request for a service whose thread is
//!   descheduled waits in its RX ring for that thread's next slice.
//!
//! * Linux on the same cores as Lauberhorn: each service a process with
//!   one thread blocked in `recvfrom` on a socket of its own; the kernel's
//!   UDP path (interrupt, NAPI, IP, UDP's socket lookup) queues each
//!   datagram and wakes its reader, which the scheduler runs when its
//!   core is free; the same user-level ONC RPC server on top.
//!
//! Measured: per-request round trips at the client (p50, p99) and CPU
//! efficiency — the handlers' work (requests × handler time) over the time
//! the service held its cores (everything but idle; a busy-polling core and
//! a core stalled in a held load are both held).

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Category, Duration, SimRng, Time};
use nextio_hw::machine::MachineSpec;
use nextio_hw::nic::lauberhorn::LauberhornConfig;
use nextio_hw::nic::packetized::{
    IndirectionTable, MICROSOFT_RSS_KEY, PacketizedConfig, PacketizedNic, regs, rss_hash,
};
use nextio_hw::oncrpc::{AcceptStat, XdrType, XdrValue};
use nextio_hw::packet::{FlowKey, Macs, build_udp};
use nextio_lib::dpdk::{Pmd, PmdConfig};
use nextio_lib::lauberhorn::{
    Outcome as RpcOutcome, Procedure, RpcServer, RuntimeCosts, compute_handler,
};
use nextio_os::lauberhorn::{Background, Callback, CallbackSignal};
use nextio_os::{Host, OsCosts};
use serde_json::json;

use super::common::{CLIENT_IP, CLIENT_MAC, cfg_err, client_host, lauberhorn_host, linux_server};
use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, Series, SeriesKind,
    SimTally, Tolerance,
};
use crate::params::{ParamKind, ParamSpec};
use nextio_apps::rpc_server::{DpdkIo, SocketIo, SoftRpcCosts, SoftRpcServer};

pub struct LauberhornDynamic;

/// The first process's program; process `i` serves `PROG0 + i`.
const PROG0: u32 = 0x2000_0100;
/// The server cores' clock (Enzian's ThunderX-1), to turn handler time
/// into cycles.
const GHZ: f64 = 2.0;

/// The workload's parameters (read by [`workload`]), with the defaults
/// an experiment gives the hot load (and its help), the cold share and
/// the silence after a burst.
pub(super) const fn workload_params(
    hot_load: (&'static str, &'static str),
    cold_share: &'static str,
    idle_us: &'static str,
) -> [ParamSpec; 8] {
    [
        ParamSpec::new(
            "processes",
            ParamKind::U64,
            "4",
            "",
            "server processes (endpoints)",
        )
        .int(2, 8),
        ParamSpec::new(
            "rpc_cores",
            ParamKind::U64,
            "2",
            "",
            "Lauberhorn's RPC cores (bypass uses one per process)",
        )
        .int(1, 8),
        ParamSpec::new(
            "handler_us",
            ParamKind::F64,
            "2",
            "µs",
            "each handler's compute time",
        )
        .real(0.1, 20.0),
        ParamSpec::new("hot_load", ParamKind::F64, hot_load.0, "", hot_load.1).real(0.2, 1.0),
        ParamSpec::new(
            "cold_share",
            ParamKind::F64,
            cold_share,
            "",
            "each cold process's rate as a share of the hot rate",
        )
        .real(0.0, 1.0),
        ParamSpec::new(
            "burst_us",
            ParamKind::F64,
            "200",
            "µs",
            "how long one process stays hot",
        )
        .real(10.0, 10_000.0),
        ParamSpec::new(
            "idle_us",
            ParamKind::F64,
            idle_us,
            "µs",
            "silence after each burst (0: bursts follow each other)",
        )
        .real(0.0, 10_000.0),
        ParamSpec::new("requests", ParamKind::U64, "6000", "", "calls per system")
            .quick("800")
            .int(10, 100_000),
    ]
}

const WORKLOAD: [ParamSpec; 8] = workload_params(
    (
        "0.5",
        "the hot process's offered handler work, in cores (0.5 keeps one bypass core, which also runs the software stack, below saturation)",
    ),
    "0.05",
    "0",
);

const PARAMS: &[ParamSpec] = &[
    WORKLOAD[0],
    WORKLOAD[1],
    WORKLOAD[2],
    WORKLOAD[3],
    WORKLOAD[4],
    WORKLOAD[5],
    WORKLOAD[6],
    WORKLOAD[7],
    // Source: Linux CFS, kernel/sched/fair.c: sysctl_sched_latency =
    // 6 ms (the period in which every runnable thread runs once) before
    // its 1 + log2(CPUs) scaling, which would only lengthen the slices.
    ParamSpec::new(
        "sched_latency_us",
        ParamKind::F64,
        "6000",
        "µs",
        "time-sliced bypass: the scheduler's period, shared by a core's runnable threads",
    )
    .real(10.0, 100_000.0),
    // Source: Linux CFS, kernel/sched/fair.c:
    // sysctl_sched_min_granularity = 0.75 ms, the shortest slice.
    ParamSpec::new(
        "min_granularity_us",
        ParamKind::F64,
        "750",
        "µs",
        "time-sliced bypass: the shortest slice",
    )
    .real(1.0, 100_000.0),
];

const CHECKS: &[CheckSpec] = &[
    // [0]–[2]: against static bypass; [3]–[5]: against Linux.
    CheckSpec::new(
        "p99-lauberhorn-over-bypass",
        "p99 round trip, Lauberhorn on the RPC cores ÷ bypass with a core per process (§4: 'performance better than the fastest kernel-bypass approaches' while dynamic, read as ≤ 1)",
        "ratio",
        Origin::Simulated,
    )
    .words(1.0, Tolerance::AtMost),
    CheckSpec::new(
        "efficiency-lauberhorn-over-bypass",
        "CPU efficiency (handler work ÷ core time held), Lauberhorn ÷ bypass (§4: better efficiency for dynamic workloads, read as > 1)",
        "ratio",
        Origin::Simulated,
    )
    .words(1.0, Tolerance::AtLeast),
    CheckSpec::new(
        "p99-lauberhorn-us",
        "p99 round trip on Lauberhorn",
        "µs",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "p99-lauberhorn-over-linux",
        "p99 round trip, Lauberhorn ÷ Linux on the same cores (§6, Fig. 5: NIC-driven dispatch against the traditional Linux dispatch loop, read as ≤ 1)",
        "ratio",
        Origin::Simulated,
    )
    .words(1.0, Tolerance::AtMost),
    CheckSpec::new(
        "efficiency-lauberhorn-over-linux",
        "CPU efficiency, Lauberhorn ÷ Linux on the same cores (no paper value: Linux idles its cores between requests but runs the whole stack per request)",
        "ratio",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "p99-linux-us",
        "p99 round trip on Linux",
        "µs",
        Origin::Simulated,
    ),
    // [6]–[8]: against time-sliced static bypass on Lauberhorn's cores.
    CheckSpec::new(
        "p99-lauberhorn-over-sliced-bypass",
        "p99 round trip, Lauberhorn ÷ static bypass time-sliced on the same cores (Fig. 5, §4: beats static assignment in tail latency with fewer cores than endpoints, read as ≤ 1)",
        "ratio",
        Origin::Simulated,
    )
    .words(1.0, Tolerance::AtMost),
    CheckSpec::new(
        "efficiency-lauberhorn-over-sliced-bypass",
        "CPU efficiency, Lauberhorn ÷ time-sliced bypass on the same cores (no paper value: both hold every core they have)",
        "ratio",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "p99-sliced-bypass-us",
        "p99 round trip on time-sliced bypass",
        "µs",
        Origin::Simulated,
    ),
];

#[derive(Clone, Copy)]
pub(super) struct Load {
    pub processes: usize,
    pub handler_us: f64,
    pub hot_load: f64,
    pub cold_share: f64,
    pub burst_us: f64,
    /// Silence after each burst (0: bursts follow each other).
    pub idle_us: f64,
    pub requests: u64,
}

/// Arrivals: (time from the start, process).
pub(super) type Schedule = Vec<(Duration, usize)>;

/// The arrival schedule: (time from the start, process), Poisson with the
/// hot process changing every burst; with `idle_us`, arrivals that would
/// fall in the silence after a burst move to the next burst's start (the
/// process is memoryless, so the rest of the schedule is unchanged).
fn schedule(load: Load, seed: u64) -> Vec<(Duration, usize)> {
    let mut rng = SimRng::new(seed).fork("lauberhorn-dynamic-arrivals");
    let hot_rate = load.hot_load / load.handler_us; // per µs
    let cold_rate = hot_rate * load.cold_share;
    let total = hot_rate + cold_rate * (load.processes - 1) as f64;
    let mut t = 0.0;
    let mut out = Vec::with_capacity(load.requests as usize);
    for _ in 0..load.requests {
        t += rng.exp(1.0 / total);
        let period = load.burst_us + load.idle_us;
        if load.idle_us > 0.0 && t % period >= load.burst_us {
            t = (t / period).floor() * period + period;
        }
        let hot = (t / period) as usize % load.processes;
        // Which process: the hot one with its share of the rate.
        let u = rng.below(1 << 20) as f64 / (1u64 << 20) as f64 * total;
        let p = if u < hot_rate {
            hot
        } else {
            let k = ((u - hot_rate) / cold_rate.max(f64::MIN_POSITIVE)) as usize;
            let others: Vec<usize> = (0..load.processes).filter(|x| *x != hot).collect();
            others[k.min(others.len() - 1)]
        };
        out.push((Duration::from_ps((t * 1e6) as u64), p));
    }
    out
}

fn procedure(i: usize, handler_cycles: u64) -> Procedure {
    Procedure {
        prog: PROG0 + i as u32,
        vers: 1,
        proc_: 1,
        args: vec![XdrType::U64],
        results: vec![XdrType::U64],
        handler: compute_handler(handler_cycles, |a| match a[0].as_u64() {
            Some(x) => RpcOutcome::Reply(vec![XdrValue::U64(x ^ 0x5a5a)]),
            None => RpcOutcome::Error(AcceptStat::GarbageArgs),
        }),
        continuation: None,
        nested_results: vec![],
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Run {
    pub p50_us: f64,
    pub p99_us: f64,
    pub efficiency: f64,
    pub held_cores: f64,
    /// Threads the kernel preempted at the end of their slice (0 where
    /// nothing is time-sliced).
    #[serde(default)]
    pub preemptions: u64,
    pub tally: SimTally,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Picoseconds `cores` have been held (anything but idle) up to `now`.
fn held_ps(cores: &[Rc<nextio_hw::cpu::Core>], now: Time) -> u64 {
    cores
        .iter()
        .map(|c| {
            let l = c.ledger_at(now);
            l.total().ps().saturating_sub(l.get(Category::Idle).ps())
        })
        .sum()
}

/// What [`drive`] measured: the round trips (µs, in reply order), the
/// window (µs), the core time the server's cores were held in it (µs),
/// and how many successful replies each call got (call `i` sends `i` and
/// its handler answers `i ^ 0x5a5a`, so a reply names its call).
struct Driven {
    rtts: Vec<f64>,
    window_us: f64,
    held_us: f64,
    answers: Vec<u32>,
}

/// The call a successful reply answers, from its XDR `u64` result.
fn answered_call(results: &[u8]) -> Option<usize> {
    let v = u64::from_be_bytes(results.get(..8)?.try_into().ok()?);
    usize::try_from(v ^ 0x5a5a).ok()
}

/// Drive `client` through `sched` open-loop, `ports[p]` the source and
/// destination ports of process `p`'s calls.
fn drive(
    sim: &nextio_engine::Sim,
    mut client: nextio_apps::rpc_client::RpcClient,
    sched: Vec<(Duration, usize)>,
    ports: Vec<(u16, u16)>,
    cores: Vec<Rc<nextio_hw::cpu::Core>>,
    horizon: Duration,
) -> Result<Driven, RunError> {
    let out = Rc::new(RefCell::new(None));
    let o = out.clone();
    sim.spawn(async move {
        if client.pmd().start().await.is_err() {
            return;
        }
        let start = client.pmd().ctx().local_now();
        let held0 = held_ps(&cores, start);
        let n = sched.len();
        let mut rtts = Vec::with_capacity(n);
        let mut answers = vec![0u32; n];
        let mut bad = 0u64;
        let mut next = 0;
        while rtts.len() + (bad as usize) < n {
            let now = client.pmd().ctx().local_now();
            if next < n && now >= start + sched[next].0 {
                let p = sched[next].1;
                client.set_src_port(ports[p].0);
                client.set_dst_port(ports[p].1);
                if client
                    .send(PROG0 + p as u32, 1, 1, &[XdrValue::U64(next as u64)])
                    .await
                    .is_err()
                {
                    return;
                }
                next += 1;
                continue;
            }
            let Ok(replies) = client.receive(false).await else {
                return;
            };
            for r in replies {
                let call = answered_call(&r.results).and_then(|i| answers.get_mut(i));
                match (r.stat, call) {
                    (AcceptStat::Success, Some(a)) => {
                        *a += 1;
                        rtts.push((r.received - r.sent).as_us_f64());
                    }
                    // An error reply, or one to no call this run made.
                    _ => bad += 1,
                }
            }
        }
        let end = client.pmd().ctx().local_now();
        let held = held_ps(&cores, end).saturating_sub(held0);
        *o.borrow_mut() = Some((rtts, answers, bad, start, end, held));
    });
    sim.run_until(Time::ZERO + horizon);
    let (rtts, answers, bad, start, end, held) = out
        .borrow_mut()
        .take()
        .ok_or_else(|| RunError::Config("not every call was answered in time".into()))?;
    if bad > 0 {
        return Err(RunError::Config(format!("{bad} calls failed")));
    }
    Ok(Driven {
        rtts,
        window_us: (end - start).as_us_f64(),
        held_us: held as f64 / 1e6,
        answers,
    })
}

fn cores_of(host: &Host, n: usize) -> Vec<Rc<nextio_hw::cpu::Core>> {
    (0..n)
        .filter_map(|c| host.machine().core(c).cloned())
        .collect()
}

fn summarise(rtts: Vec<f64>, work_us: f64, held: f64, window_us: f64, tally: SimTally) -> Run {
    let mut v = rtts;
    v.sort_by(f64::total_cmp);
    Run {
        p50_us: percentile(&v, 0.5),
        p99_us: percentile(&v, 0.99),
        efficiency: work_us / held.max(f64::MIN_POSITIVE),
        held_cores: held / window_us.max(f64::MIN_POSITIVE),
        preemptions: 0,
        tally,
    }
}

fn lauberhorn(
    run: &RunContext,
    load: Load,
    cores: usize,
    sched: Vec<(Duration, usize)>,
    horizon: Duration,
) -> Result<Run, RunError> {
    lauberhorn_with(run, load, cores, sched, horizon, None).map(|(r, _)| r)
}

/// Retired cores' other work and how the NIC calls them back.
pub(super) type Retirement = (CallbackSignal, Rc<dyn Background>);

/// Lauberhorn on `cores` RPC cores; with `retirement`, idle user loops are
/// released so idle cores retire, and a retired core runs that work (in a
/// process of its own) until called back by that signal. Also returns the
/// call-backs.
pub(super) fn lauberhorn_with(
    run: &RunContext,
    load: Load,
    cores: usize,
    sched: Vec<(Duration, usize)>,
    horizon: Duration,
    retirement: Option<Retirement>,
) -> Result<(Run, Vec<Callback>), RunError> {
    let sim = run.new_sim();
    let cfg = LauberhornConfig {
        cores,
        slots: load.processes,
        // Cores lent to other work come back only if idle loops let go.
        release_idle_loops: retirement.is_some(),
        ..LauberhornConfig::default()
    };
    let (host, os) = lauberhorn_host(&sim, MachineSpec::enzian(cores), cfg.clone())?;
    let cycles = (load.handler_us * 1000.0 * GHZ) as u64;
    let mut apps = Vec::new();
    for i in 0..load.processes {
        let p = host.create_process().map_err(cfg_err)?;
        apps.push(
            RpcServer::register(&os, &p, vec![procedure(i, cycles)], RuntimeCosts::default())
                .map_err(cfg_err)?,
        );
    }
    let label = match &retirement {
        None => "lauberhorn-dynamic".to_string(),
        Some((signal, work)) => {
            let p = host.create_process().map_err(cfg_err)?;
            os.set_background(&p, work.clone()).map_err(cfg_err)?;
            os.set_callback_signal(*signal);
            format!("lauberhorn-{signal:?}").to_lowercase()
        }
    };
    os.start();
    let (client, wires) =
        client_host(run, &sim, &host, os.nic().id, cfg.ip, cfg.rpc_port, cfg.mac)?;
    let ports = vec![(5000, cfg.rpc_port); load.processes];
    let d = drive(&sim, client, sched, ports, cores_of(&host, cores), horizon)?;
    let work = load.requests as f64 * load.handler_us;
    let r = summarise(
        d.rtts,
        work,
        d.held_us,
        d.window_us,
        SimTally::of(&sim, load.requests),
    );
    let callbacks = os.callbacks();
    wires.write(run, &label)?;
    sim.shutdown();
    Ok((r, callbacks))
}

/// A source port whose flow RSS steers to `queue` of `queues`.
fn port_for_queue(
    queue: usize,
    queues: usize,
    dst: (std::net::Ipv4Addr, u16),
    mac: [u8; 6],
) -> Option<u16> {
    let lut = IndirectionTable::round_robin(2048, queues)?;
    (5000..u16::MAX).find(|&port| {
        let flow = FlowKey {
            src_ip: CLIENT_IP,
            dst_ip: dst.0,
            src_port: port,
            dst_port: dst.1,
        };
        let macs = Macs {
            src: CLIENT_MAC,
            dst: mac,
        };
        build_udp(macs, flow, &[0; 64], 128)
            .ok()
            .is_some_and(|f| lut.queue(rss_hash(&MICROSOFT_RSS_KEY, &f)) == queue)
    })
}

/// Static bypass: one bypass thread per service, thread `i` on core
/// `i mod cores` polling queue `i`. With `slice` the kernel time-slices
/// the threads that share a core; without it every thread needs a core
/// of its own (`cores` = processes).
fn bypass(
    run: &RunContext,
    load: Load,
    cores: usize,
    slice: Option<Duration>,
    sched: Vec<(Duration, usize)>,
    horizon: Duration,
) -> Result<Run, RunError> {
    bypass_audited(run, load, cores, slice, sched, horizon).map(|(r, _)| r)
}

/// Every call answered exactly once, each answer one round trip.
fn conserved(a: &Audit) -> Result<(), RunError> {
    let wrong = a.answers.iter().filter(|&&n| n != 1).count();
    if wrong > 0 || a.rtts_us.len() != a.answers.len() {
        return Err(RunError::Config(format!(
            "{wrong} calls not answered exactly once"
        )));
    }
    Ok(())
}

/// What a bypass run leaves to check beyond its summary.
struct Audit {
    /// Round trips in reply order (µs).
    rtts_us: Vec<f64>,
    /// Successful replies per call.
    answers: Vec<u32>,
    /// The time-sliced kernel's dispatch counters (empty without slicing).
    sched: nextio_engine::Counters,
}

fn bypass_audited(
    run: &RunContext,
    load: Load,
    cores: usize,
    slice: Option<Duration>,
    sched: Vec<(Duration, usize)>,
    horizon: Duration,
) -> Result<(Run, Audit), RunError> {
    let sim = run.new_sim();
    let n = load.processes;
    if slice.is_none() && cores < n {
        return Err(cfg_err(
            "bypass without time slicing needs a core per process",
        ));
    }
    let host = Host::new(&sim, MachineSpec::enzian(cores), OsCosts::default()).map_err(cfg_err)?;
    // Only the time-sliced variant has the kernel dispatch its threads.
    let disp = match slice {
        Some(slice) => {
            let d = nextio_os::Dispatcher::new(&host);
            d.set_time_slice(slice).map_err(cfg_err)?;
            Some(d)
        }
        None => None,
    };
    let nic = host
        .attach_nic(
            PacketizedNic::new(PacketizedConfig {
                queues: n,
                ..PacketizedConfig::default()
            })
            .map_err(cfg_err)?,
        )
        .map_err(cfg_err)?;
    let cfg = LauberhornConfig::default();
    let costs = SoftRpcCosts::default();
    let cycles = (load.handler_us * 1000.0 * GHZ) as u64;
    // One DPDK-style process with a thread per service, each on its own
    // queue (the NIC has one IOMMU domain, whose addresses are the
    // process's).
    let p = host.create_process().map_err(cfg_err)?;
    for i in 0..n {
        let t = p.thread(i % cores).map_err(cfg_err)?;
        let tid = t.tid;
        if let Some(d) = &disp {
            d.adopt(&t);
        }
        let bar = p.map_bar(nic.id, 0, 0, regs::BAR0_BYTES).map_err(cfg_err)?;
        let pmd = Pmd::new(
            t.ctx,
            &p,
            &nic,
            bar,
            i,
            PmdConfig::default(),
            Rc::new(RefCell::new(nextio_engine::Counters::new())),
        )
        .map_err(cfg_err)?;
        let io = DpdkIo::new(pmd, cfg.mac, costs);
        let io = match &disp {
            Some(d) => io.time_sliced(d, tid).map_err(cfg_err)?,
            None => io,
        };
        let mut server = SoftRpcServer::new(io, vec![procedure(i, cycles)], costs);
        sim.spawn(async move {
            server.serve(None).await;
        });
    }
    let (client, wires) = client_host(run, &sim, &host, nic.id, cfg.ip, cfg.rpc_port, cfg.mac)?;
    let ports = (0..n)
        .map(|q| port_for_queue(q, n, (cfg.ip, cfg.rpc_port), cfg.mac).map(|p| (p, cfg.rpc_port)))
        .collect::<Option<Vec<(u16, u16)>>>()
        .ok_or_else(|| cfg_err("no source port steers to every queue"))?;
    let d = drive(&sim, client, sched, ports, cores_of(&host, cores), horizon)?;
    let audit = Audit {
        rtts_us: d.rtts.clone(),
        answers: d.answers,
        sched: disp.map(|x| x.counters()).unwrap_or_default(),
    };
    let work = load.requests as f64 * load.handler_us;
    let mut r = summarise(
        d.rtts,
        work,
        d.held_us,
        d.window_us,
        SimTally::of(&sim, load.requests),
    );
    r.preemptions = audit.sched.get("preemptions");
    let label = match slice {
        Some(_) => "sliced-bypass-dynamic",
        None => "kernel-bypass-dynamic",
    };
    wires.write(run, label)?;
    sim.shutdown();
    conserved(&audit)?;
    Ok((r, audit))
}

/// Linux: each service a process whose thread blocks in `recvfrom` on a
/// socket bound to a port of its own, the threads spread over `cores`
/// cores round robin (the NIC's one queue interrupts core 0, where NAPI
/// runs); the kernel runs whichever thread a datagram woke when its core
/// is free.
fn linux(
    run: &RunContext,
    load: Load,
    cores: usize,
    sched: Vec<(Duration, usize)>,
    horizon: Duration,
) -> Result<Run, RunError> {
    let sim = run.new_sim();
    let cfg = LauberhornConfig::default();
    let costs = SoftRpcCosts::default();
    let cycles = (load.handler_us * 1000.0 * GHZ) as u64;
    let linux = linux_server(&sim, cores)?;
    let mut ports = Vec::new();
    for i in 0..load.processes {
        let p = linux.host.create_process().map_err(cfg_err)?;
        let t = linux.thread(p.pid(), i % cores).map_err(cfg_err)?;
        let port = cfg.rpc_port + i as u16;
        let io =
            SocketIo::new(linux.stack.clone(), linux.disp.clone(), &p, t, port).map_err(cfg_err)?;
        let mut server = SoftRpcServer::new(io, vec![procedure(i, cycles)], costs);
        sim.spawn(async move {
            server.serve(None).await;
        });
        ports.push((5000, port));
    }
    let (client, wires) = client_host(
        run,
        &sim,
        &linux.host,
        linux.nic.id,
        cfg.ip,
        cfg.rpc_port,
        cfg.mac,
    )?;
    let held = cores_of(&linux.host, cores);
    let d = drive(&sim, client, sched, ports, held, horizon)?;
    let work = load.requests as f64 * load.handler_us;
    let r = summarise(
        d.rtts,
        work,
        d.held_us,
        d.window_us,
        SimTally::of(&sim, load.requests),
    );
    wires.write(run, "linux-dynamic")?;
    sim.shutdown();
    Ok(r)
}

/// The time-sliced baseline's slice: a fair scheduler's period shared by
/// the threads of the busiest core (CFS: `sched_latency / nr_running`,
/// at least `min_granularity`), as the parameters give them.
fn time_slice(ctx: &RunContext, load: Load, cores: usize) -> Duration {
    let per_core = load.processes.div_ceil(cores.max(1)).max(1) as f64;
    let slice_us =
        (ctx.params.f64("sched_latency_us") / per_core).max(ctx.params.f64("min_granularity_us"));
    Duration::from_ps((slice_us * 1e6) as u64)
}

/// The workload the run's parameters describe (those of [`PARAMS`], by
/// name): the load, the RPC cores, the arrival schedule and a horizon far
/// beyond the schedule plus every request served one by one.
pub(super) fn workload(ctx: &RunContext) -> Result<(Load, usize, Schedule, Duration), RunError> {
    let load = Load {
        processes: ctx.params.u64("processes") as usize,
        handler_us: ctx.params.f64("handler_us"),
        hot_load: ctx.params.f64("hot_load"),
        cold_share: ctx.params.f64("cold_share"),
        burst_us: ctx.params.f64("burst_us"),
        idle_us: ctx.params.f64("idle_us"),
        requests: ctx.params.u64("requests"),
    };
    let cores = ctx.params.u64("rpc_cores") as usize;
    if cores >= load.processes {
        return Err(RunError::Config(
            "rpc_cores must be fewer than processes (more endpoints than cores)".into(),
        ));
    }
    let sched = schedule(load, ctx.seed);
    let span = sched.last().map_or(Duration::ZERO, |x| x.0);
    let horizon = Duration::from_us(
        10_000 + 2 * (span.as_us_f64() as u64) + load.requests * (10 + 2 * load.handler_us as u64),
    );
    Ok((load, cores, sched, horizon))
}

impl Experiment for LauberhornDynamic {
    fn host(&self) -> &'static str {
        "enzian"
    }
    fn name(&self) -> &'static str {
        "lauberhorn-dynamic"
    }
    fn reproduces(&self) -> &'static str {
        "Lauberhorn (HotOS '25) §4/§6, Fig. 5: more endpoints than cores under bursty load — p99 and CPU efficiency against static kernel bypass (a core per process, and time-sliced on the same cores) and Linux"
    }
    fn about(&self) -> &'static str {
        "Several server processes each serve one procedure; one at a time is hot (bursts rotate), the others get a trickle, open-loop Poisson from a client host. Lauberhorn serves all of them from a few RPC cores (user loops, kernel dispatch, YIELDNOW, retiring idle cores); kernel bypass gives each process its own busy-polling core and RSS-steered queue, and, as the fair baseline, runs the same threads time-sliced by the kernel on the cores Lauberhorn gets; Linux runs each process's thread blocked in recvfrom on the same cores Lauberhorn gets. Reports p50/p99 round trips and CPU efficiency."
    }
    fn paper(&self) -> &'static str {
        "Lauberhorn (HotOS '25)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn checks(&self) -> &'static [CheckSpec] {
        CHECKS
    }
    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError> {
        let (load, cores, sched, horizon) = workload(ctx)?;
        let slice = time_slice(ctx, load, cores);
        // The time-sliced baseline waits up to (threads per core − 1)
        // slices for its turn: give the run that much longer.
        let sliced_horizon = horizon + slice.times(load.processes as u64);
        let res = ctx.sweep(&[0usize, 1, 2, 3], |_, &i| match i {
            0 => lauberhorn(ctx, load, cores, sched.clone(), horizon),
            1 => bypass(ctx, load, load.processes, None, sched.clone(), horizon),
            2 => linux(ctx, load, cores, sched.clone(), horizon),
            _ => bypass(ctx, load, cores, Some(slice), sched.clone(), sliced_horizon),
        })?;
        let (lh, by, lx, sl) = (&res[0], &res[1], &res[2], &res[3]);
        let mut s = Series::new(
            "systems",
            "system",
            &["p99_us", "p50_us", "efficiency", "held_cores"],
        );
        for (i, (name, r)) in [
            ("lauberhorn", lh),
            ("kernel-bypass (core per process)", by),
            ("linux (same cores as Lauberhorn)", lx),
            ("kernel-bypass time-sliced (same cores as Lauberhorn)", sl),
        ]
        .into_iter()
        .enumerate()
        {
            ctx.record(r.tally);
            s.push(json!({
                "system": name, "index": i, "p50_us": r.p50_us, "p99_us": r.p99_us,
                "efficiency": r.efficiency, "held_cores": r.held_cores,
            }));
        }
        let ratio = Series::new("ratios", "system", &["ratio"])
            .with(json!({"system": "p99 Lauberhorn ÷ bypass", "ratio": lh.p99_us / by.p99_us}))
            .with(json!({"system": "efficiency Lauberhorn ÷ bypass", "ratio": lh.efficiency / by.efficiency}))
            .with(json!({"system": "p99 Lauberhorn ÷ Linux", "ratio": lh.p99_us / lx.p99_us}))
            .with(json!({"system": "efficiency Lauberhorn ÷ Linux", "ratio": lh.efficiency / lx.efficiency}))
            .with(json!({"system": "p99 Lauberhorn ÷ time-sliced bypass", "ratio": lh.p99_us / sl.p99_us}))
            .with(json!({"system": "efficiency Lauberhorn ÷ time-sliced bypass", "ratio": lh.efficiency / sl.efficiency}));
        let bound = Series::new("§4: parity (bound)", "system", &["ratio"])
            .kind(SeriesKind::Paper)
            .with(json!({"system": "p99 Lauberhorn ÷ bypass", "ratio": 1.0}))
            .with(json!({"system": "efficiency Lauberhorn ÷ bypass", "ratio": 1.0}))
            .with(json!({"system": "p99 Lauberhorn ÷ Linux", "ratio": 1.0}))
            .with(json!({"system": "p99 Lauberhorn ÷ time-sliced bypass", "ratio": 1.0}));
        Ok(Outcome {
            series: vec![s, ratio, bound],
            axes: vec![
                Axis::new("system", "system"),
                Axis::new("p99_us", "p99 round trip (µs)"),
                Axis::new("p50_us", "p50 round trip (µs)"),
                Axis::new("efficiency", "handler work ÷ core time held"),
                Axis::new("held_cores", "cores held on average"),
                Axis::new("ratio", "Lauberhorn ÷ baseline"),
            ],
            checks: vec![
                CHECKS[0].judge(lh.p99_us / by.p99_us),
                CHECKS[1].judge(lh.efficiency / by.efficiency),
                CHECKS[2].judge(lh.p99_us),
                CHECKS[3].judge(lh.p99_us / lx.p99_us),
                CHECKS[4].judge(lh.efficiency / lx.efficiency),
                CHECKS[5].judge(lx.p99_us),
                CHECKS[6].judge(lh.p99_us / sl.p99_us),
                CHECKS[7].judge(lh.efficiency / sl.efficiency),
                CHECKS[8].judge(sl.p99_us),
            ],
            notes: vec![
                format!(
                    "{} processes, Lauberhorn on {cores} RPC cores, bypass on {} dedicated cores; handlers {} µs; the hot process offers {} cores' load for {} µs at a time.",
                    load.processes, load.processes, load.handler_us, load.hot_load, load.burst_us
                ),
                "The paper has no numbers for this (Fig. 5 is a diagram); the checks read its claims as bounds. Both systems see the same seeded arrival schedule; every call must be answered successfully or the run fails.".into(),
                format!("Linux serves every process from a thread blocked in recvfrom on its own socket, the threads spread over the same {cores} cores round robin (no migration between cores: each stays on its core's run queue), the NIC's single queue interrupting core 0 where NAPI runs; the kernel switches to a woken thread when its core is free, and a thread with datagrams queued keeps its core until it blocks (no time-slice preemption: bursts are far shorter than a scheduler quantum). The kernel's costs are a production kernel's assumptions (lauberhorn-rpc-cycles), so the Linux checks are model only or bounds."),
                "Where the differences come from: Lauberhorn lets every RPC core enter the hot process's user loop, so a burst is served by all its cores, while static bypass serves it from the one core it assigned, which also pays the software stack (parse, demultiplex, unmarshal, marshal: about 1 µs per call) on top of the handler; at hot_load 0.7 that one core saturates. Lauberhorn's cores stay held (stalled in held loads) throughout, because the cold processes' trickle keeps them from retiring: its efficiency gain is from holding fewer cores, not from releasing them.".into(),
                "Why Linux's tail is long here: the hot process's thread stays on its one core and pays the kernel's receive path, the user-level server and sendto per request (lauberhorn-rpc-cycles: about 2.9 µs in steps (1)–(12) alone) on top of the handler, so during a burst its core saturates and the queue drains only after the burst; the other core cannot help (no migration). Its efficiency is higher than Lauberhorn's because its cores idle between requests, while Lauberhorn's stay stalled in held loads.".into(),
                format!(
                    "Static bypass with a core per process is its best tail at its worst efficiency; the fair comparison is time-sliced bypass on Lauberhorn's {cores} cores: thread i polls queue i on core i mod {cores}, and the kernel's scheduler gives the threads of a core one slice each in turn ({:.0} µs: CFS's sched_latency {} µs over {} threads per core, at least min_granularity {} µs; a tick is a timer interrupt, the switch a context switch). The threads never block (they busy-poll), so no wake-up preemption: a request for a descheduled thread waits in its RX ring until that thread's slice comes round, then the backlog drains. Preemption takes effect at the thread's poll loop, so a slice overruns by at most the request in hand. The kernel preempted a polling thread {} times in the run.",
                    slice.as_us_f64(),
                    ctx.params.f64("sched_latency_us"),
                    load.processes.div_ceil(cores),
                    ctx.params.f64("min_granularity_us"),
                    sl.preemptions,
                ),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short run of the time-sliced baseline at the experiment's
    /// defaults (quick), with `overrides`.
    fn sliced(seed: u64, overrides: &[&str]) -> (Run, Audit, Duration) {
        let over: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let params = crate::params::Params::resolve("lauberhorn-dynamic", PARAMS, true, &over)
            .expect("parameters");
        let ctx = RunContext::new(params, seed, true);
        let (load, cores, sched, horizon) = workload(&ctx).expect("workload");
        let slice = time_slice(&ctx, load, cores);
        let (run, audit) = bypass_audited(
            &ctx,
            load,
            cores,
            Some(slice),
            sched,
            horizon + slice.times(load.processes as u64),
        )
        .expect("every call answered");
        (run, audit, slice)
    }

    #[test]
    fn every_call_is_answered_exactly_once_under_time_slicing() {
        let (_, audit, slice) = sliced(3, &["requests=400"]);
        assert_eq!(audit.answers.len(), 400);
        assert!(
            audit.answers.iter().all(|&a| a == 1),
            "calls answered other than once: {:?}",
            audit
                .answers
                .iter()
                .enumerate()
                .filter(|(_, a)| **a != 1)
                .collect::<Vec<_>>()
        );
        assert_eq!(audit.rtts_us.len(), 400);
        // The kernel really time-sliced the threads sharing a core ...
        assert!(audit.sched.get("preemptions") > 0, "{:?}", audit.sched);
        assert!(audit.sched.get("switches") >= audit.sched.get("preemptions"));
        // ... and some request waited in its ring for its thread's slice
        // (simulated time: longer than a tenth of a slice, far above any
        // path's own cost).
        let worst = audit.rtts_us.iter().copied().fold(0.0, f64::max);
        assert!(worst > slice.as_us_f64() / 10.0, "worst {worst} µs");
    }

    #[test]
    fn time_slicing_is_a_pure_function_of_the_seed() {
        let (a, aa, _) = sliced(5, &["requests=200"]);
        let (b, ba, _) = sliced(5, &["requests=200"]);
        assert_eq!(aa.rtts_us, ba.rtts_us);
        assert_eq!(aa.sched, ba.sched);
        assert_eq!(a.p99_us.to_bits(), b.p99_us.to_bits());
        assert_eq!(a.efficiency.to_bits(), b.efficiency.to_bits());
        let (_, ca, _) = sliced(6, &["requests=200"]);
        assert_ne!(aa.rtts_us, ca.rtts_us, "another seed, another schedule");
    }

    #[test]
    fn slices_follow_the_fair_scheduler_rule() {
        let params =
            crate::params::Params::resolve("lauberhorn-dynamic", PARAMS, true, &[]).unwrap();
        let ctx = RunContext::new(params, 1, true);
        let (load, cores, _, _) = workload(&ctx).unwrap();
        // 4 threads on 2 cores: 6 ms over 2 threads.
        assert_eq!(time_slice(&ctx, load, cores), Duration::from_us(3000));
        let over = vec!["sched_latency_us=1000".to_string()];
        let params =
            crate::params::Params::resolve("lauberhorn-dynamic", PARAMS, true, &over).unwrap();
        let ctx = RunContext::new(params, 1, true);
        // 500 µs would be below the 750 µs floor.
        assert_eq!(time_slice(&ctx, load, cores), Duration::from_us(750));
    }
}
