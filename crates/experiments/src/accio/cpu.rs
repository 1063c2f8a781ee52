//! `accio-cpu` — Accio Fig. 7: the CPU use of a ping-pong client's core
//! against the server's slowdown.
//!
//! As §8.5: the client runs on the FPGA prototype (Accio, and Linux
//! sockets on the prototype's kernel path) and sends 64 B datagrams to a
//! Linux echo server, which is slowed down by a factor: each echo waits
//! (factor − 1) × the server's own turnaround (measured from the NIC
//! timestamps of an unslowed run) before it is sent. DPDK busy-polls on
//! a test server, and so does RDMA (verbs UD SEND/RECV against a verbs
//! echo server slowed the same way). CPU use is the busy share of the client's core between
//! its first send and its last receive; it is simulated: the client's
//! core sleeps in the blocking call or polls, as its code does.

use nextio_engine::Duration;
use serde_json::json;

use super::common::{PAPER, mean};
use super::pingpong::{self, PingPong, Platform, System};
use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, STATED, Series, SeriesKind,
};
use crate::params::{ParamKind, ParamSpec};

pub struct AccioCpu;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "slowdowns",
        ParamKind::U64List,
        "1,5,10,20,40",
        "×",
        "server slowdown factors, 1 to 100 (Fig. 7: 1 to 40)",
    )
    .quick("1,40")
    .int(1, 100)
    .items(1, 16),
    ParamSpec::new(
        "messages",
        ParamKind::U64,
        "200",
        "",
        "ping-pongs per point, 1 to 100000 (the paper: 10K)",
    )
    .quick("20")
    .int(1, 100_000),
];

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "accio-40x",
        "Accio's CPU use at a 40× server slowdown (§8.5)",
        "%",
        Origin::Simulated,
    )
    .stated(33.0, STATED),
    CheckSpec::new(
        "linux-40x",
        "Linux sockets' CPU use at a 40× server slowdown (§8.5)",
        "%",
        Origin::Simulated,
    )
    .stated(54.0, STATED),
    CheckSpec::new(
        "dpdk-40x",
        "DPDK's CPU use at a 40× server slowdown (§8.5: busy polling)",
        "%",
        Origin::Simulated,
    )
    .stated(100.0, STATED),
    CheckSpec::new(
        "linux-over-accio-40x",
        "Linux's CPU use over Accio's at 40× (§8.5: \"nearly increasing efficiency by 1.6×\")",
        "×",
        Origin::Simulated,
    )
    .stated(1.6, STATED),
    CheckSpec::new(
        "rdma-40x",
        "RDMA's CPU use at a 40× server slowdown (§8.5: busy polling)",
        "%",
        Origin::Simulated,
    )
    .stated(100.0, STATED),
];

const CLIENTS: [(&str, System, Platform); 4] = [
    ("accio", System::Accio, Platform::Prototype),
    ("linux", System::Linux, Platform::Prototype),
    ("dpdk", System::Dpdk, Platform::Server),
    ("rdma", System::Rdma, Platform::Server),
];

/// The check stating each client's CPU use at 40×.
const AT40_CHECK: [usize; 4] = [0, 1, 2, 4];

impl Experiment for AccioCpu {
    /// Accio and Linux run on the FPGA prototype (§8.5); DPDK and RDMA on the server.
    fn host(&self) -> &'static str {
        "accio-prototype"
    }
    fn other_hosts(&self) -> &'static [&'static str] {
        &["accio-server"]
    }
    fn name(&self) -> &'static str {
        "accio-cpu"
    }
    fn reproduces(&self) -> &'static str {
        "Accio (NINeS '26) Fig. 7: CPU use of a ping-pong client against server slowdown"
    }
    fn about(&self) -> &'static str {
        "A 64 B UDP ping-pong client on the FPGA prototype (Accio, or Linux sockets) or on a test server (DPDK, RDMA) against a Linux (for RDMA a verbs) echo server slowed by 1× to 40×; reports the busy share of the client's core."
    }
    fn paper(&self) -> &'static str {
        PAPER
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn checks(&self) -> &'static [CheckSpec] {
        CHECKS
    }
    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError> {
        let slowdowns = ctx.params.u64_list("slowdowns");
        let messages = ctx.params.u64("messages");
        let base = |system, platform, delay, label: String| {
            pingpong::run(
                ctx,
                PingPong {
                    system,
                    platform,
                    size: 64,
                    messages,
                    server_delay: delay,
                    testbed_kernel: true,
                },
                &label,
            )
        };
        // The server's own turnaround, unslowed.
        let probe = base(
            System::Accio,
            Platform::Prototype,
            Duration::ZERO,
            "accio-cpu-probe".into(),
        )?;
        ctx.record(probe.tally);
        let turnaround_us = mean(&probe.turnaround_us);
        let mut points = Vec::new();
        for (name, system, platform) in CLIENTS {
            for &s in &slowdowns {
                points.push((name, system, platform, s));
            }
        }
        let res = ctx.sweep(&points, |_, &(name, system, platform, s)| {
            let delay = Duration::from_ps(((s - 1) as f64 * turnaround_us * 1e6).round() as u64);
            base(system, platform, delay, format!("accio-cpu-{name}-{s}"))
        })?;
        let mut series: Vec<Series> = CLIENTS
            .iter()
            .map(|(n, _, _)| Series::new(*n, "slowdown", &["cpu_pct"]))
            .collect();
        let mut at40 = [None; 4];
        for ((name, _, _, s), r) in points.iter().zip(&res) {
            ctx.record(r.tally);
            let k = CLIENTS.iter().position(|c| c.0 == *name).unwrap_or(0);
            let pct = 100.0 * r.cpu_busy;
            let mut p = json!({
                "slowdown": s, "cpu_pct": pct,
                "rtt_us": mean(&r.rtt_us),
                "processing_us": mean(&r.processing_us),
            });
            for (cat, us) in &r.breakdown_us {
                p[format!("core_{cat}_us")] = json!(us);
            }
            series[k].push(p);
            if *s == 40 {
                at40[k] = Some(pct);
            }
        }
        for (i, (name, _, _)) in CLIENTS.iter().enumerate() {
            series.push(
                Series::new(format!("paper: {name}"), "slowdown", &["cpu_pct"])
                    .kind(SeriesKind::Paper)
                    .with(json!({"slowdown": 40, "cpu_pct": CHECKS[AT40_CHECK[i]].paper})),
            );
        }
        let mut checks = Vec::new();
        if let [Some(a), Some(l), Some(d), _] = at40 {
            checks.push(CHECKS[0].judge(a));
            checks.push(CHECKS[1].judge(l));
            checks.push(CHECKS[2].judge(d));
            checks.push(CHECKS[3].judge(l / a.max(1e-9)));
        }
        if let Some(r) = at40[3] {
            checks.push(CHECKS[4].judge(r));
        }
        Ok(Outcome {
            series,
            axes: vec![
                Axis::new("slowdown", "server slowdown (×)"),
                Axis::new("cpu_pct", "client core busy (%)"),
            ],
            checks,
            notes: vec![
                format!("The server's unslowed turnaround (Linux test server, Table 1 kernel) is {turnaround_us:.2} µs from the NIC stamps; a slowdown s adds (s − 1) times that before each echo."),
                "Checks are judged at 40× when the sweep includes it. RDMA busy-polls its completion queue (verbs UD on the RDMA NIC model) against a verbs echo server slowed by the same delay as the Linux one.".into(),
                "Linux on the prototype is the Accio host's kernel path with a production kernel's costs scaled by the CoreMark-per-MHz ratio (Table 2); the paper's FPGA kernel had debugging off (§8.1). The per-category core time of every point is in the series (core_*_us).".into(),
            ],
        })
    }
}
