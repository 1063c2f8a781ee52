//! `accio-ict-pressure` — beyond the paper: what happens when more
//! sockets are accelerated than the I/O Connection Table has rows.
//!
//! One thread on a server-class Accio host owns N accelerated sockets
//! (16 to 4096) and ping-pongs over them round robin with a Linux echo
//! server, on a table of 64 rows per core. Up to 64 sockets every row
//! stays resident; beyond, going round robin over more rows than slots
//! evicts the row needed next (the worst case for any cache), so every
//! access traps to the kernel's refill handler, like a software TLB
//! refill, and the NIC finds rows absent (a NIC-side miss the kernel
//! refills through the control queue). Reported: mean processing time,
//! message rate, refills and NIC misses per message, and conservation:
//! every echo came back, every datagram went to a ring or the fallback
//! socket. All model only: the paper's prototype has no multiplexing
//! (§7 "Unimplemented Features").

use serde_json::json;

use super::common::{PAPER, mean};
use super::multi::{self, Multi};
use super::pingpong::Platform;
use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, Series,
};
use crate::params::{ParamKind, ParamSpec};

pub struct AccioIctPressure;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "sockets",
        ParamKind::U64List,
        "16,32,64,128,256,1024,4096",
        "",
        "accelerated sockets, 1 to 4096 (the table's connection ids)",
    )
    .quick("16,64,256")
    .int(1, 4096)
    .items(1, 16),
    ParamSpec::new(
        "slots",
        ParamKind::U64,
        "64",
        "",
        "table rows per core, 1 to 4096 (the prototype's: 64)",
    )
    .int(1, 4096),
    ParamSpec::new(
        "rounds",
        ParamKind::U64,
        "3",
        "",
        "passes over all sockets, 1 to 100",
    )
    .quick("2")
    .int(1, 100),
];

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "latency",
        "mean processing time per message",
        "µs",
        Origin::Simulated,
    )
    .per_point(),
    CheckSpec::new(
        "rate",
        "messages per second of one thread",
        "1/s",
        Origin::Simulated,
    )
    .per_point(),
    CheckSpec::new(
        "refills-per-message",
        "kernel refills (thread-side misses) per message",
        "",
        Origin::Simulated,
    )
    .per_point(),
    CheckSpec::new(
        "lost",
        "datagrams not accounted to a ring or the fallback socket, over all points",
        "",
        Origin::Simulated,
    ),
];

impl Experiment for AccioIctPressure {
    /// The test servers of §8.1.
    fn host(&self) -> &'static str {
        "accio-server"
    }
    fn name(&self) -> &'static str {
        "accio-ict-pressure"
    }
    fn reproduces(&self) -> &'static str {
        "beyond Accio (NINeS '26): latency and rate against accelerated sockets, 16 to 4096, on a 64-row table"
    }
    fn about(&self) -> &'static str {
        "One thread on a server-class Accio host ping-pongs round robin over N accelerated sockets with a Linux echo server; the table has 64 rows per core, so beyond 64 sockets rows are multiplexed by the kernel's refill handler. Reports latency, rate, refills and conservation."
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
        let sockets = ctx.params.u64_list("sockets");
        let slots = ctx.params.u64("slots") as usize;
        let rounds = ctx.params.u64("rounds");
        let res = ctx.sweep(&sockets, |_, &n| {
            multi::run(
                ctx,
                Multi {
                    platform: Platform::Server,
                    threads: 1,
                    sockets: n as usize,
                    slots,
                    messages: n * rounds,
                    size: 64,
                },
                &format!("accio-ict-pressure-{n}"),
            )
        })?;
        let mut s = Series::new(
            "accio-server",
            "sockets",
            &["latency_us", "rate_per_s", "refills_per_message"],
        );
        let mut checks = Vec::new();
        let mut lost = 0u64;
        for (n, r) in sockets.iter().zip(&res) {
            ctx.record(r.tally);
            let msgs = r.echoed.max(1) as f64;
            let lat = mean(&r.processing_us);
            let refills = r.os.get("refills") as f64 / msgs;
            let nic_misses = r.os.get("nic_misses") as f64 / msgs;
            // Requests and echoes: every echo the client's NIC took went
            // to a ring or to the fallback socket.
            lost += r.echoed.saturating_sub(r.to_rings + r.to_fallback) + r.dropped;
            s.push(json!({
                "sockets": n, "latency_us": lat, "rate_per_s": r.rate_per_s,
                "refills_per_message": refills, "nic_misses_per_message": nic_misses,
                "evictions": r.os.get("evictions"), "to_rings": r.to_rings,
                "to_fallback": r.to_fallback, "messages": r.echoed,
            }));
            checks.push(CHECKS[0].at(format!("{n}")).judge(lat));
            checks.push(CHECKS[1].at(format!("{n}")).judge(r.rate_per_s));
            checks.push(CHECKS[2].at(format!("{n}")).judge(refills));
        }
        checks.push(CHECKS[3].judge(lost as f64));
        Ok(Outcome {
            series: vec![s],
            axes: vec![
                Axis::new("sockets", "accelerated sockets").log(),
                Axis::new("latency_us", "processing time (µs)"),
                Axis::new("rate_per_s", "messages per second"),
                Axis::new("refills_per_message", "refills per message"),
            ],
            checks,
            notes: vec![
                format!("{slots} rows per core; round robin over more sockets than rows is the table's worst case (each access evicts the row needed next), so the curve is an upper bound on the cost of multiplexing."),
                "The refill is a trap to the kernel (the library's access faults with a miss), the install of the row by MMIO with a read-back that flushes the posted writes, and the NIC told to retry frames it held for the row; see nextio_os::accio.".into(),
            ],
        })
    }
}
