//! `enso-apps` (Ensō Table 1, §3.3.3): one-core zero-loss throughput of
//! real applications on the Ensō NIC and on the packetized NIC with the
//! DPDK-style driver — the same application code on both, only the wrapper
//! differs (pipe bytes in place, or mbufs).
//!
//! Each case is an application and its traffic: Maglev with a few cached
//! flows and with a flood of new flows, … Each point is an RFC 2544 search
//! over full simulations. Beside each rate the experiment reports what
//! explains it: core cycles per packet by ledger category, LLC misses per
//! packet and PCIe bytes per packet.
//!
//! Nothing here is fitted to Table 1: the applications' primitive costs are
//! the root preset's `[apps.*]` sections, each an assumption with its
//! reason; memory costs emerge from the cache model on the applications'
//! real tables.

use std::sync::Arc;

use nextio_apps::maglev::MaglevConfig;
use nextio_engine::{Category, Time};
use nextio_hw::packet::{FlowKey, Macs, build_udp};
use nextio_hw::trafficgen::{STAMP_BYTES, Trace};
use serde_json::json;

use super::harness::{AppKind, Interface, TrialResult, run_trial, zero_loss_search};
use super::{Bench, interfaces, with_common_params};
use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, STATED, Series, SeriesKind,
};
use crate::params::{ParamKind, ParamSpec};

pub struct EnsoApps;

/// The cases the experiment knows.
const CASES: [&str; 2] = ["maglev-cached", "maglev-synflood"];

const PARAMS: &[ParamSpec] = with_common_params![
    ParamSpec::new(
        "cases",
        ParamKind::StrList,
        "maglev-cached,maglev-synflood",
        "",
        "applications and traffic: Maglev with a few cached flows, Maglev under a flood of new flows",
    )
    .choices(&CASES)
    .items(1, 8),
    ParamSpec::new(
        "interfaces",
        ParamKind::StrList,
        "enso,packetized",
        "",
        "NIC interfaces to compare",
    )
    .choices(&["enso", "packetized"])
    .items(1, 2),
    ParamSpec::new(
        "resolution_gbps",
        ParamKind::F64,
        "0.5",
        "Gb/s",
        "RFC 2544 search resolution, 0.01 to 100 (the paper's 0.1 costs three more trials per point)",
    )
    .quick("2")
    .real(0.01, 100.0),
    ParamSpec::new(
        "cached_flows",
        ParamKind::U64,
        "16",
        "flows",
        "flows of the Maglev cached-flows case, 1 to 65536: few enough that the connection table stays in L1d",
    )
    .int(1, 65_536),
    ParamSpec::new(
        "new_flows",
        ParamKind::U64,
        "1048576",
        "flows",
        "distinct flows of the Maglev flood (the issue: 1 M), 1 to 2^20; each trial's frames take the first of them, so every frame opens a new connection",
    )
    .int(1, 1 << 20),
];

/// Ensō Table 1 (stated).
const PAPER_MAGLEV_ENSO_MPPS: f64 = 138.0;
const PAPER_MAGLEV_PACKETIZED_MPPS: f64 = 23.0;

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "maglev-enso-mpps",
        "Maglev, Ensō, 1 core, 64 B, a few cached flows: 138 Mpps",
        "Mpps",
        Origin::Simulated,
    )
    .stated(PAPER_MAGLEV_ENSO_MPPS, STATED),
    CheckSpec::new(
        "maglev-packetized-mpps",
        "Maglev, E810/DPDK, 1 core, 64 B, a few cached flows: 23 Mpps",
        "Mpps",
        Origin::Simulated,
    )
    .stated(PAPER_MAGLEV_PACKETIZED_MPPS, STATED),
    CheckSpec::new(
        "maglev-synflood-enso-mpps",
        "Maglev, Ensō, 1 core, 64 B, every frame a new flow (no published value)",
        "Mpps",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "maglev-synflood-packetized-mpps",
        "Maglev, E810/DPDK, 1 core, 64 B, every frame a new flow (no published value)",
        "Mpps",
        Origin::Simulated,
    ),
];

/// One application with its traffic.
struct Case {
    id: &'static str,
    app: AppKind,
    frame_bytes: u64,
    /// Frames to replay instead of the bench's synthetic ones.
    trace: Option<Arc<Trace>>,
    flows: u32,
    /// Ids of the checks of its Ensō and packetized rates.
    checks: [&'static str; 2],
}

/// Flow `i` of a flood: distinct 5-tuples for every `i < 2^24`.
fn flood_flow(i: u32) -> FlowKey {
    FlowKey {
        src_ip: std::net::Ipv4Addr::new(172, (16 + (i >> 16)) as u8, (i >> 8) as u8, i as u8),
        dst_ip: std::net::Ipv4Addr::new(10, 0, 0, 1),
        src_port: 1024 + (i % 60_000) as u16,
        dst_port: 80,
    }
}

/// `n` minimum-size frames, each of its own flow.
fn flood_trace(n: u64) -> Result<Trace, RunError> {
    let mut t = Trace::new();
    for i in 0..n as u32 {
        let f = build_udp(Macs::default(), flood_flow(i), &[0; STAMP_BYTES], 64)
            .map_err(|e| RunError::Config(e.to_string()))?;
        t.push(Time::ZERO, &f)
            .map_err(|e| RunError::Config(format!("flood frame {i}: {e}")))?;
    }
    Ok(t)
}

fn cases(ctx: &RunContext, bench: &Bench) -> Result<Vec<Case>, RunError> {
    let frames_per_trial = bench.frames + bench.warmup_frames_per_core;
    ctx.params
        .str_list("cases")
        .iter()
        .map(|id| {
            Ok(match id.as_str() {
                "maglev-cached" => Case {
                    id: "maglev-cached",
                    app: AppKind::Maglev(MaglevConfig::default()),
                    frame_bytes: 64,
                    trace: None,
                    flows: ctx.params.u64("cached_flows") as u32,
                    checks: ["maglev-enso-mpps", "maglev-packetized-mpps"],
                },
                "maglev-synflood" => {
                    let n = ctx.params.u64("new_flows").min(frames_per_trial);
                    Case {
                        id: "maglev-synflood",
                        app: AppKind::Maglev(MaglevConfig::default()),
                        frame_bytes: 64,
                        trace: Some(Arc::new(flood_trace(n)?)),
                        flows: n as u32,
                        checks: [
                            "maglev-synflood-enso-mpps",
                            "maglev-synflood-packetized-mpps",
                        ],
                    }
                }
                other => return Err(RunError::Config(format!("unknown case `{other}`"))),
            })
        })
        .collect()
}

/// What explains a point's rate, per packet processed in its passing trial
/// (warm-up included for the ledger and PCIe, measured frames for the
/// caches, whose counters start after the warm-up).
struct Mechanism {
    app_cycles: f64,
    driver_cycles: f64,
    busy_cycles: f64,
    llc_misses: f64,
    l2_misses: f64,
    pcie_up_bytes: f64,
    pcie_down_bytes: f64,
}

fn mechanism(r: &TrialResult, processed: u64, measured: u64) -> Mechanism {
    let per = |ps: u64| ps as f64 * 1e-3 * r.core_ghz / processed.max(1) as f64;
    let sum = |c: Category| r.ledgers.iter().map(|l| l.get(c).ps()).sum::<u64>();
    let busy: u64 = [
        Category::Application,
        Category::Driver,
        Category::NetworkStack,
    ]
    .iter()
    .map(|c| sum(*c))
    .sum();
    let total = |d: &nextio_hw::pcie::DirectionCounters| {
        (d.header_bytes + d.payload_bytes + d.dllp_bytes) as f64 / processed.max(1) as f64
    };
    Mechanism {
        app_cycles: per(sum(Category::Application)),
        driver_cycles: per(sum(Category::Driver)),
        busy_cycles: per(busy),
        llc_misses: r.caches.llc.misses as f64 / measured.max(1) as f64,
        l2_misses: r.caches.l2.misses as f64 / measured.max(1) as f64,
        pcie_up_bytes: total(&r.upstream),
        pcie_down_bytes: total(&r.downstream),
    }
}

impl Experiment for EnsoApps {
    fn host(&self) -> &'static str {
        "enso-testbed"
    }
    fn name(&self) -> &'static str {
        "enso-apps"
    }
    fn reproduces(&self) -> &'static str {
        "Ensō Table 1: one-core throughput of Maglev (and the other applications) on Ensō vs E810/DPDK"
    }
    fn about(&self) -> &'static str {
        "Real applications (Maglev load balancer: prime-size lookup table over 1,000 backends, connection tracking, destination rewrite) on one core behind a 100 GbE link and PCIe 3.0 x16, the same code on the Ensō pipes and on the packetized NIC's mbufs; zero-loss throughput by RFC 2544 bisection, with cycles, LLC misses and PCIe bytes per packet."
    }
    fn paper(&self) -> &'static str {
        "Ensō (OSDI '23)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn checks(&self) -> &'static [CheckSpec] {
        CHECKS
    }

    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError> {
        let bench = Bench::from_ctx(ctx)?;
        if bench.replay.is_some() {
            return Err(RunError::Config(
                "enso-apps builds each application's own traffic: traffic_pcap is not used".into(),
            ));
        }
        let resolution = ctx.params.f64("resolution_gbps");
        let interfaces = interfaces(ctx, "interfaces")?;
        let cases = cases(ctx, &bench)?;
        let points: Vec<(usize, Interface)> = (0..cases.len())
            .flat_map(|c| interfaces.iter().map(move |i| (c, *i)))
            .collect();
        let results = ctx.sweep(&points, |i, (c, iface)| {
            let case = &cases[*c];
            let seed = ctx.point_seed(i);
            let mut trial = bench.trial(*iface, 1, case.frame_bytes, 100.0, seed);
            trial.app = Some(case.app.clone());
            trial.flows = case.flows;
            trial.replay = case.trace.clone();
            let search = zero_loss_search(0.0, 100.0, resolution, |rate| {
                run_trial(
                    ctx,
                    &super::harness::Trial {
                        rate_gbps: rate,
                        ..trial.clone()
                    },
                )
            })?;
            let processed = trial.frames + trial.warmup_frames;
            // A point that never passed is explained by its failing trial.
            let explain = search
                .passing
                .as_ref()
                .or(search.failing.as_ref().map(|(_, r)| r))
                .map(|r| (mechanism(r, processed, trial.frames), r.app.clone()));
            Ok((search.gbps, explain))
        })?;

        let mut series = Vec::new();
        let mut checks = Vec::new();
        let mut notes = vec![
            "Zero-loss throughput per RFC 2544 on one core: bisection on the offered line rate; a trial passes if every frame comes back with valid checksums (applications rewrite frames, so the echo's increment is not required) and the measured frames come back at no less than 97 % of the offered rate (a host that falls behind would otherwise finish a short trial from its pipe or ring buffer during the drain). One run per point (the paper reports medians of ten).".to_string(),
            "Cycles per packet are the core's ledger (application, driver and stack; polling and idle excluded) over every frame of the passing trial; LLC misses are demand loads that missed the LLC, per measured frame; PCIe bytes are everything on the NIC's link (TLP headers, payload, DLLPs) per frame, by direction (up = NIC to host).".to_string(),
        ];
        for (ci, case) in cases.iter().enumerate() {
            let mut s = Series::new(case.id, "interface", &["mpps"]);
            for ((c, iface), (gbps, explain)) in points.iter().zip(&results) {
                if *c != ci {
                    continue;
                }
                let mpps = bench.mpps(*gbps, case.frame_bytes);
                let mut point =
                    json!({"case": case.id, "interface": iface.name(), "mpps": mpps, "gbps": gbps});
                if let Some((m, app)) = explain {
                    point["app_cycles_per_packet"] = json!(m.app_cycles);
                    point["driver_cycles_per_packet"] = json!(m.driver_cycles);
                    point["busy_cycles_per_packet"] = json!(m.busy_cycles);
                    point["llc_misses_per_packet"] = json!(m.llc_misses);
                    point["l2_misses_per_packet"] = json!(m.l2_misses);
                    point["pcie_up_bytes_per_packet"] = json!(m.pcie_up_bytes);
                    point["pcie_down_bytes_per_packet"] = json!(m.pcie_down_bytes);
                    let counts: Vec<String> = app
                        .iter()
                        .filter(|(k, v)| *v > 0 && k.contains('.'))
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    notes.push(format!(
                        "{} on {}: {:.1} Mpps; per packet {:.1} application + {:.1} driver cycles ({:.1} busy), {:.2} LLC and {:.2} L2 misses, {:.0} B up / {:.0} B down on PCIe; application counters: {}.",
                        case.id,
                        iface.name(),
                        mpps,
                        m.app_cycles,
                        m.driver_cycles,
                        m.busy_cycles,
                        m.llc_misses,
                        m.l2_misses,
                        m.pcie_up_bytes,
                        m.pcie_down_bytes,
                        if counts.is_empty() { "none".to_string() } else { counts.join(", ") }
                    ));
                }
                s.push(point);
                let id = match iface {
                    Interface::Enso(_) => case.checks[0],
                    Interface::Packetized => case.checks[1],
                };
                if let Some(spec) = CHECKS.iter().find(|c| c.id == id) {
                    checks.push(spec.judge(mpps));
                }
            }
            series.push(s);
        }
        series.push(
            Series::new("paper: Table 1", "case", &["enso_mpps", "packetized_mpps"])
                .kind(SeriesKind::Paper)
                .with(json!({"case": "maglev-cached", "enso_mpps": PAPER_MAGLEV_ENSO_MPPS, "packetized_mpps": PAPER_MAGLEV_PACKETIZED_MPPS})),
        );
        notes.push("The flood is UDP, not TCP SYNs (the bench's generator stamps UDP payloads): what matters to Maglev is that every frame's 5-tuple is new, so each one misses the connection table, reads a lookup-table entry and inserts.".into());
        Ok(Outcome {
            series,
            axes: vec![
                Axis::new("interface", "NIC interface"),
                Axis::new("mpps", "zero-loss rate, one core (Mpps)"),
            ],
            checks,
            notes,
        })
    }
}
