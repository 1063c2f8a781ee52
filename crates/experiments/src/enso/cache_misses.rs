//! `enso-cache-misses` (Ensō Fig. 3a, §3.1.2): L1d and L2 miss ratios of
//! the echo server's core with the packetized interface (scattered
//! per-packet buffers and descriptors) and with Ensō (packets back to back
//! in a pipe). The ratios are outcomes of the cache model as the simulated
//! software touches descriptors, notifications and packet bytes.

use serde_json::json;

use super::harness::run_trial;
use super::{Bench, check_frame_bytes, check_offered, interfaces, with_common_params};
use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, READ_OFF, RunContext, RunError, STATED, Series,
    SeriesKind,
};
use crate::params::{ParamKind, ParamSpec};

pub struct EnsoCacheMisses;

const PARAMS: &[ParamSpec] = with_common_params![
    ParamSpec::new(
        "frame_bytes",
        ParamKind::U64,
        "64",
        "bytes",
        "frame size, FCS included, 64 to 1518",
    )
    .int(64, 1518),
    ParamSpec::new(
        "offered_gbps",
        ParamKind::F64,
        "40",
        "Gb/s",
        "offered line rate (Ensō §3.1.2: the packetized echo peaks at 40 Gb/s on one core); 0.01 to 100",
    )
    .real(0.01, 100.0),
    ParamSpec::new(
        "interfaces",
        ParamKind::StrList,
        "packetized,enso",
        "",
        "NIC interfaces",
    )
    .choices(&["enso", "packetized"])
    .items(1, 4),
];

/// Ensō Fig. 3a (packetized, read off the figure) and §3.1.2's closing
/// comparison (Ensō, stated).
const PAPER_PACKETIZED: (f64, f64) = (0.06, 0.55);
const PAPER_ENSO: (f64, f64) = (0.002, 0.09);

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "packetized-l1d-miss-ratio",
        "packetized: L1d misses per load of the echo core",
        "fraction",
        Origin::Simulated,
    )
    .read_off(PAPER_PACKETIZED.0, READ_OFF),
    CheckSpec::new(
        "packetized-l2-miss-ratio",
        "packetized: L2 misses per L2 request of the echo core",
        "fraction",
        Origin::Simulated,
    )
    .read_off(PAPER_PACKETIZED.1, READ_OFF),
    CheckSpec::new(
        "enso-l1d-miss-ratio",
        "Ensō: L1d misses per load of the echo core",
        "fraction",
        Origin::Simulated,
    )
    .stated(PAPER_ENSO.0, STATED),
    CheckSpec::new(
        "enso-l2-miss-ratio",
        "Ensō: L2 misses per L2 request of the echo core",
        "fraction",
        Origin::Simulated,
    )
    .stated(PAPER_ENSO.1, STATED),
];

impl Experiment for EnsoCacheMisses {
    fn host(&self) -> &'static str {
        "enso-testbed"
    }
    fn name(&self) -> &'static str {
        "enso-cache-misses"
    }
    fn reproduces(&self) -> &'static str {
        "Ensō Fig. 3a / §3.1.2: echo-server L1d and L2 miss ratios, packetized vs Ensō"
    }
    fn about(&self) -> &'static str {
        "The one-core echo bench at a fixed load; L1d misses per load and L2 misses per L2 request (as Intel's L2_RQSTS counters count them) of the echo core, both outcomes of the cache model."
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
        let frame_bytes = ctx.params.u64("frame_bytes");
        check_frame_bytes(&[frame_bytes])?;
        let bench = Bench::from_ctx(ctx)?;
        let offered = check_offered(ctx.params.f64("offered_gbps"))?;
        let interfaces = interfaces(ctx, "interfaces")?;
        let results = ctx.sweep(&interfaces, |i, iface| {
            let r = run_trial(
                ctx,
                &bench.trial(*iface, 1, frame_bytes, offered, ctx.point_seed(i)),
            )?;
            Ok((
                r.caches.l1d_miss_ratio(),
                r.caches.l2_request_miss_ratio(),
                r.caches.l2_miss_ratio(),
                r.traffic.loss_ratio(),
            ))
        })?;
        // One bar group per interface: the model beside the paper.
        let mut series = Series::new("model", "interface", &["l1d_miss_ratio", "l2_miss_ratio"]);
        let mut read_off = Series::new(
            "paper: Fig. 3a (read off)",
            "interface",
            &["l1d_miss_ratio", "l2_miss_ratio"],
        )
        .kind(SeriesKind::ReadOff);
        let mut stated = Series::new(
            "paper: §3.1.2 (stated)",
            "interface",
            &["l1d_miss_ratio", "l2_miss_ratio"],
        )
        .kind(SeriesKind::Paper);
        let mut checks = Vec::new();
        for (iface, (l1d, l2, l2_demand, loss)) in interfaces.iter().zip(&results) {
            series.push(
                json!({"interface": iface.name(), "l1d_miss_ratio": l1d, "l2_miss_ratio": l2,
                "l2_demand_miss_ratio": l2_demand, "loss_ratio": loss}),
            );
            let (paper, specs, shown) = match iface.name() {
                "packetized" => (PAPER_PACKETIZED, &CHECKS[0..2], &mut read_off),
                _ => (PAPER_ENSO, &CHECKS[2..4], &mut stated),
            };
            checks.push(specs[0].judge(*l1d));
            checks.push(specs[1].judge(*l2));
            shown.push(json!({"interface": iface.name(), "l1d_miss_ratio": paper.0, "l2_miss_ratio": paper.1}));
        }
        Ok(Outcome {
            series: vec![series, read_off, stated],
            axes: vec![
                Axis::new("interface", "NIC interface"),
                Axis::new("l1d_miss_ratio", "L1d misses per load"),
                Axis::new("l2_miss_ratio", "L2 misses per L2 request"),
            ],
            checks,
            notes: vec![format!(
                "One echo core, {frame_bytes} B frames at {offered} Gb/s. l1d_miss_ratio = L1d misses / loads; l2_miss_ratio = L2 misses / L2 requests including L1d-prefetcher requests (Intel L2_RQSTS.MISS / L2_RQSTS.REFERENCES, as perf reports); l2_demand_miss_ratio counts demand lookups only. The paper measured the E810/DPDK echo with perf on an i9-9960X; the model's cores, caches and DDIO are configured after that machine."
            )],
        })
    }
}
