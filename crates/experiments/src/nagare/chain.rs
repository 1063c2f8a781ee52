//! `nagare-chain` — the thesis's Tables 2–3 (§4.1): NIC → crypto → ML →
//! NIC, CPU-mediated (Table 2, 9 PCIe RTT) against Nagare (Table 3, 1.5
//! PCIe RTT), and Nagare driving the same devices unmodified through its
//! adapters (no published value). Round trips are counted on each
//! message's critical path in the fabric's transaction log; latencies are
//! simulated. Then throughput, latency and CPU cores used against offered
//! load.

use nextio_apps::chain::{self, ChainConfig, ChainMode, ChainSystem};
use nextio_engine::{Category, Duration, Sim, Time};
use nextio_hw::fabric::txlog::Party;
use nextio_hw::machine::MachineSpec;
use serde_json::json;

use super::{Traversal, critical_path_round_trips, party_name};
use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, Series, SeriesKind,
    Tolerance,
};
use crate::params::{ParamKind, ParamSpec};

pub struct NagareChain;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "image_bytes",
        ParamKind::U64,
        "1000",
        "bytes",
        "plaintext image per request (sealed adds 28 B), 16 to 1400",
    )
    .int(16, 1400),
    ParamSpec::new(
        "isolated",
        ParamKind::U64,
        "5",
        "messages",
        "messages sent alone (100 µs apart) to count round trips, 1 to 100",
    )
    .quick("2")
    .int(1, 100),
    ParamSpec::new(
        "loads_kmps",
        ParamKind::U64List,
        "100,250,500,750,900,1000,1250",
        "kmsg/s",
        "offered loads, 1 to 10000",
    )
    .quick("250,1000")
    .int(1, 10_000)
    .items(1, 32),
    ParamSpec::new(
        "messages",
        ParamKind::U64,
        "3000",
        "messages",
        "requests per load point, 10 to 10^6",
    )
    .quick("400")
    .int(10, 1_000_000),
    ParamSpec::new(
        "modes",
        ParamKind::StrList,
        "cpu-mediated,nagare,nagare-legacy",
        "",
        "how the chain is run",
    )
    .choices(&["cpu-mediated", "nagare", "nagare-legacy"])
    .items(1, 3),
];

/// A count of round trips is a sum of halves: it matches exactly or not.
const EXACT: Tolerance = Tolerance::Absolute(0.0);

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "cpu-mediated-rtt",
        "PCIe round trips on an isolated message's critical path, CPU-mediated (Table 2)",
        "RTT",
        Origin::Simulated,
    )
    .stated(9.0, EXACT),
    CheckSpec::new(
        "nagare-rtt",
        "PCIe round trips on the critical path through Nagare with streaming devices (Table 3)",
        "RTT",
        Origin::Simulated,
    )
    .stated(1.5, EXACT),
    CheckSpec::new(
        "nagare-legacy-rtt",
        "round trips through Nagare's adapters to the unmodified devices (reads of switch memory count 1 each; no published value)",
        "RTT",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "nagare-legacy-comm-us",
        "communication time on that path (no published value)",
        "µs",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "cpu-mediated-comm-us",
        "communication time on the CPU-mediated critical path (transactions only, no device or CPU work)",
        "µs",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "nagare-comm-us",
        "communication time on Nagare's critical path",
        "µs",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "comm-ratio",
        "CPU-mediated ÷ Nagare communication time, against the tables' RTT ratio 9 / 1.5 (which weighs every read 1 RTT and every write ½)",
        "×",
        Origin::Simulated,
    )
    .stated(6.0, Tolerance::Relative(0.25)),
    CheckSpec::new(
        "e2e-saving-us",
        "end-to-end latency saved per image, CPU-mediated − Nagare (device work included)",
        "µs",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "max-kmps",
        "highest delivered throughput, per mode (no published value)",
        "kmsg/s",
        Origin::Simulated,
    )
    .per_point(),
    CheckSpec::new(
        "nagare-cores",
        "CPU cores busy on the data path with Nagare, most over all loads (§4.2: the CPU is only used when establishing a stream, read as none)",
        "cores",
        Origin::Simulated,
    )
    .words(0.0, Tolerance::Absolute(0.01)),
    CheckSpec::new(
        "cpu-mediated-cores",
        "CPU cores busy (polling counted) with the CPU-mediated glue, most over all loads",
        "cores",
        Origin::Simulated,
    ),
];

fn cfg_err(e: impl std::fmt::Display) -> RunError {
    RunError::Config(e.to_string())
}

fn mode_of(name: &str) -> Option<ChainMode> {
    ChainMode::ALL.into_iter().find(|m| m.name() == name)
}

fn machine() -> MachineSpec {
    // The Ensō testbed (the thesis's own host, §3.3.1), two cores: the
    // CPU-mediated glue runs on core 0.
    MachineSpec::enso_testbed(2)
}

/// The round trips and latencies of isolated messages through `mode`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Isolated {
    /// Per message: its critical path.
    paths: Vec<Vec<Traversal>>,
    e2e_us: Vec<f64>,
    names: Vec<String>,
}

fn isolated(run: &RunContext, mode: ChainMode, image: usize, n: u64) -> Result<Isolated, RunError> {
    let sim = run.new_sim();
    let sys = chain::build(&sim, &ChainConfig::new(machine(), mode)).map_err(cfg_err)?;
    let fabric = sys.host.machine().fabric().clone();
    fabric.record_transactions(true);
    let out = chain::run_client(
        &sim,
        &sys,
        n,
        image,
        Duration::from_us(100),
        Duration::from_us(200),
    )
    .map_err(cfg_err)?;
    if out.replies.len() as u64 != n || out.wrong > 0 {
        return Err(RunError::Config(format!(
            "{}: {} of {n} replies right ({} wrong)",
            mode.name(),
            out.replies.len(),
            out.wrong
        )));
    }
    let log = fabric.transactions();
    let switch = sys.nagare.as_ref().map(|n| Party::Device(n.id));
    let nic = Party::Device(sys.nic.id);
    let mut paths = Vec::new();
    let mut e2e = Vec::new();
    for (seq, (lat, _)) in &out.replies {
        let sent = out.first_sent + Duration::from_us(100).times(*seq);
        let end = sent + *lat;
        paths.push(critical_path_round_trips(&log, nic, sent, end, switch));
        e2e.push(lat.as_us_f64());
    }
    let names = (0..fabric.device_count() as u16)
        .map(|d| {
            fabric
                .device_name(nextio_hw::device::DeviceId(d))
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    run.finish_sim(&format!("nagare-chain-isolated-{}", mode.name()), &sim, n)?;
    sim.shutdown();
    Ok(Isolated {
        paths,
        e2e_us: e2e,
        names,
    })
}

/// One load point.
#[derive(serde::Serialize, serde::Deserialize)]
struct Loaded {
    offered_kmps: f64,
    delivered_kmps: f64,
    mean_us: f64,
    p99_us: f64,
    cores_used: f64,
    cores_working: f64,
    lost: u64,
}

/// Per core at `t`: picoseconds busy (polling counted) and working
/// (polling not counted), from its ledger.
fn busy_at(sys: &ChainSystem, t: Time) -> Vec<(f64, f64)> {
    sys.host
        .machine()
        .cores()
        .iter()
        .map(|c| {
            let l = c.ledger_at(t);
            let busy = l.total().saturating_sub(l.get(Category::Idle)).ps() as f64;
            (busy, busy - l.get(Category::Polling).ps() as f64)
        })
        .collect()
}

/// Cores busy and working between two snapshots `span` apart.
fn cores_between(a: &[(f64, f64)], b: &[(f64, f64)], span: Duration) -> (f64, f64) {
    let span = span.ps().max(1) as f64;
    a.iter().zip(b).fold((0.0, 0.0), |(u, w), (x, y)| {
        (
            u + ((y.0 - x.0) / span).clamp(0.0, 1.0),
            w + ((y.1 - x.1) / span).clamp(0.0, 1.0),
        )
    })
}

fn loaded(
    run: &RunContext,
    mode: ChainMode,
    image: usize,
    kmps: u64,
    n: u64,
) -> Result<Loaded, RunError> {
    let sim: Sim = run.new_sim();
    let sys = chain::build(&sim, &ChainConfig::new(machine(), mode)).map_err(cfg_err)?;
    let interval = Duration::from_ps(1_000_000_000 / kmps.max(1));
    // Set-up first: the CPU's share is measured from the first request.
    sim.run();
    let t0 = sim.now();
    let before = busy_at(&sys, t0);
    let out = chain::run_client(&sim, &sys, n, image, interval, Duration::from_us(500))
        .map_err(cfg_err)?;
    if out.wrong > 0 {
        return Err(RunError::Config(format!(
            "{}: {} wrong replies",
            mode.name(),
            out.wrong
        )));
    }
    if let Some(sw) = &sys.nagare {
        sw.borrow().conservation().map_err(RunError::Config)?;
    }
    let got = out.replies.len() as u64;
    let span = out.last_reply - out.first_sent;
    let mut lat: Vec<f64> = out.replies.values().map(|(l, _)| l.as_us_f64()).collect();
    lat.sort_by(f64::total_cmp);
    let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
    let p99 = lat
        .get(((lat.len() as f64 * 0.99) as usize).min(lat.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    let end = out.last_reply.max(t0);
    let (cores, working) = cores_between(&before, &busy_at(&sys, end), end - t0);
    run.finish_sim(&format!("nagare-chain-{}-{kmps}kmps", mode.name()), &sim, n)?;
    sim.shutdown();
    Ok(Loaded {
        offered_kmps: kmps as f64,
        delivered_kmps: got as f64 / span.as_secs_f64().max(1e-12) / 1e3,
        mean_us: mean,
        p99_us: p99,
        cores_used: cores,
        cores_working: working,
        lost: out.sent - got,
    })
}

impl Experiment for NagareChain {
    fn host(&self) -> &'static str {
        "enso-testbed"
    }
    fn name(&self) -> &'static str {
        "nagare-chain"
    }
    fn reproduces(&self) -> &'static str {
        "Ensō/Nagare thesis Tables 2–3 (§4.1): NIC → crypto → ML → NIC, CPU-mediated vs Nagare, in PCIe round trips and µs; throughput and CPU cores against load"
    }
    fn about(&self) -> &'static str {
        "A client sends AES-GCM-sealed images to a host whose Ensō NIC, crypto accelerator and ML accelerator sit under one PCIe switch. CPU-mediated: a polling thread glues their command queues in host memory (Table 2). Nagare: the CPU programs a policy graph into a programmable switch once; devices push into stream windows and the switch routes (Table 3). Nagare-legacy: the same, driving the unmodified accelerators and NIC through switch adapters. Round trips are counted on each isolated message's critical path from the fabric's transaction log; then offered load is swept."
    }
    fn paper(&self) -> &'static str {
        "Nagare (thesis §4)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn checks(&self) -> &'static [CheckSpec] {
        CHECKS
    }
    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError> {
        let image = ctx.params.u64("image_bytes") as usize;
        let n_iso = ctx.params.u64("isolated");
        let loads = ctx.params.u64_list("loads_kmps");
        let n = ctx.params.u64("messages");
        let modes: Vec<ChainMode> = ctx
            .params
            .str_list("modes")
            .iter()
            .filter_map(|m| mode_of(m))
            .collect();
        let iso = ctx.sweep(&modes, |_, m| isolated(ctx, *m, image, n_iso))?;
        let mut points = Vec::new();
        for m in &modes {
            for l in &loads {
                points.push((*m, *l));
            }
        }
        let load_res = ctx.sweep(&points, |_, (m, l)| loaded(ctx, *m, image, *l, n))?;

        let mut rtt_series =
            Series::new("round_trips", "mode_index", &["rtt", "comm_us", "e2e_us"]);
        let mut path_series = Series::new("critical_path", "step", &["rtt", "ns"]);
        let mut checks = Vec::new();
        let mut summary = std::collections::BTreeMap::new();
        for (k, (m, r)) in modes.iter().zip(&iso).enumerate() {
            let rtts: Vec<f64> = r
                .paths
                .iter()
                .map(|p| p.iter().map(Traversal::round_trips).sum())
                .collect();
            let comm: Vec<f64> = r
                .paths
                .iter()
                .map(|p| p.iter().map(|t| t.ns()).sum::<f64>() / 1e3)
                .collect();
            let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
            let (rtt, comm_us, e2e) = (avg(&rtts), avg(&comm), avg(&r.e2e_us));
            let spread = rtts.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
                - rtts.iter().cloned().fold(f64::INFINITY, f64::min);
            summary.insert(m.name(), (rtt, comm_us, e2e, spread));
            rtt_series.push(json!({
                "mode": m.name(), "mode_index": k, "rtt": rtt, "comm_us": comm_us,
                "e2e_us": e2e, "rtt_spread": spread,
            }));
            let names = |d: u16| r.names.get(d as usize).cloned().unwrap_or_default();
            if let Some(p) = r.paths.first() {
                for (i, t) in p.iter().enumerate() {
                    path_series.push(json!({
                        "mode": m.name(), "step": i,
                        "from": party_name(t.from, &names), "to": party_name(t.to, &names),
                        "kind": format!("{:?}", t.kind), "purpose": t.purpose,
                        "via_switch": t.via_switch, "rtt": t.round_trips(), "ns": t.ns(),
                    }));
                }
            }
        }
        if let Some((rtt, ..)) = summary.get("cpu-mediated") {
            checks.push(CHECKS[0].judge(*rtt));
        }
        if let Some((rtt, ..)) = summary.get("nagare") {
            checks.push(CHECKS[1].judge(*rtt));
        }
        if let Some((rtt, comm, ..)) = summary.get("nagare-legacy") {
            checks.push(CHECKS[2].judge(*rtt));
            checks.push(CHECKS[3].judge(*comm));
        }
        if let (Some(c), Some(g)) = (summary.get("cpu-mediated"), summary.get("nagare")) {
            checks.push(CHECKS[4].judge(c.1));
            checks.push(CHECKS[5].judge(g.1));
            checks.push(CHECKS[6].judge(c.1 / g.1.max(1e-9)));
            checks.push(CHECKS[7].judge(c.2 - g.2));
        }
        let mut load_series: Vec<Series> = modes
            .iter()
            .map(|m| {
                Series::new(
                    format!("load-{}", m.name()),
                    "offered_kmps",
                    &["delivered_kmps", "mean_us", "p99_us", "cores_used"],
                )
            })
            .collect();
        let mut max_tput = std::collections::BTreeMap::new();
        let mut nagare_cores: f64 = 0.0;
        let mut cpu_cores: f64 = 0.0;
        for ((m, l), r) in points.iter().zip(&load_res) {
            let k = modes.iter().position(|x| x == m).unwrap_or(0);
            load_series[k].push(json!({
                "mode": m.name(), "offered_kmps": r.offered_kmps,
                "delivered_kmps": r.delivered_kmps, "mean_us": r.mean_us,
                "p99_us": r.p99_us, "cores_used": r.cores_used,
                "cores_working": r.cores_working, "lost": r.lost, "load": l,
            }));
            let e = max_tput.entry(m.name()).or_insert(0.0f64);
            *e = e.max(r.delivered_kmps);
            match m {
                ChainMode::CpuMediated => cpu_cores = cpu_cores.max(r.cores_used),
                _ => nagare_cores = nagare_cores.max(r.cores_used),
            }
        }
        for (m, t) in &max_tput {
            checks.push(CHECKS[8].at(m).judge(*t));
        }
        if modes.iter().any(|m| *m != ChainMode::CpuMediated) {
            checks.push(CHECKS[9].judge(nagare_cores));
        }
        if modes.contains(&ChainMode::CpuMediated) {
            checks.push(CHECKS[10].judge(cpu_cores));
        }
        let mut series = vec![rtt_series, path_series];
        let paper_modes = [(ChainMode::CpuMediated, 9.0), (ChainMode::Nagare, 1.5)];
        let mut tables =
            Series::new("paper: Tables 2–3", "mode_index", &["rtt"]).kind(SeriesKind::Paper);
        for (m, rtt) in paper_modes {
            if let Some(k) = modes.iter().position(|x| *x == m) {
                tables.push(json!({"mode": m.name(), "mode_index": k, "rtt": rtt}));
            }
        }
        if !tables.points.is_empty() {
            series.push(tables);
        }
        series.extend(load_series);
        Ok(Outcome {
            series,
            axes: vec![
                Axis::new("mode_index", "mode (cpu-mediated, nagare, nagare-legacy)"),
                Axis::new("rtt", "PCIe round trips"),
                Axis::new("comm_us", "communication time on the critical path (µs)"),
                Axis::new("e2e_us", "end-to-end latency (µs)"),
                Axis::new("step", "step on the critical path"),
                Axis::new("ns", "step duration (ns)"),
                Axis::new("offered_kmps", "offered load (kmsg/s)"),
                Axis::new("delivered_kmps", "delivered (kmsg/s)"),
                Axis::new("mean_us", "mean latency (µs)"),
                Axis::new("p99_us", "p99 latency (µs)"),
                Axis::new("cores_used", "CPU cores busy"),
            ],
            checks,
            notes: vec![
                "Round trips are counted, not assumed: the fabric logs every transaction; a message's critical path is walked back from the reply leaving the NIC, each step taking the latest transaction its issuer had observed (valid for a message alone, which is why they are counted on isolated messages). A posted write counts ½, a read 1 (the tables' weights); a push into the switch's dataplane and the push the switch issued for it are one device-to-device crossing.".into(),
                "Topology: one PCIe switch (150 ns port to port) under a root port, the NIC (gen3 x16) and both accelerators (gen3 x8) under it. CPU-mediated runs on a plain switch; the Nagare modes on a programmable one whose 10-stage, 10-cycle, 3 GHz pipeline (33 ns) every TLP crosses. Device-to-host and device-to-device crossings both take two links here, so one round trip costs about the same either way.".into(),
                "Nagare needs the NIC to accept a pushed frame (an opt-in TX push window in the Ensō model, not in the Ensō hardware). With an unmodified NIC (nagare-legacy) the switch drives Ensō's TX notification ring from its own memory: that hop and the accelerator hops become doorbell + two reads of switch memory, switch-local but counted 1 RTT each by the tables' weights.".into(),
                "Accelerator costs: AES-GCM at 100 Gb/s after 500 ns set-up per request (QAT 8970 brief; set-up assumed), the classifier at 34 GB/s after 1 µs (TPU memory bandwidth; set-up assumed). At these costs the ML accelerator bounds every mode's throughput near 1 Mmsg/s; Nagare's gain is latency and the core the CPU-mediated glue keeps busy polling.".into(),
            ],
        })
    }
}
