//! `accio-fallback` — beyond the paper (§6 "Exception Handling", which
//! the prototype does not implement, §7): a link flap in the middle of
//! two datagram streams.
//!
//! A server-class Accio client has two accelerated sockets, each owned by
//! its own thread: one sends a datagram every `gap_us` to a Linux server,
//! the other receives the server's stream at the same rate. At
//! `down_us` the cable is pulled (both wire directions down, the NIC's
//! PHY loses carrier); at `up_us` it is back. The NIC reports both
//! through the table's control queue; the kernel moves every socket to
//! its fallback socket (draining what the TX ring still held through the
//! kernel path) and back when the engine is ready again.
//!
//! Conservation is the point: every datagram the client's `send`
//! accepted reached the server or is counted lost (on the dead wire, or
//! in the NIC's transmit pipe when the carrier went), and every datagram
//! the server sent reached the client's ring or fallback socket or is
//! counted lost (the dead wire, or refused by the NIC while down). A
//! datagram neither delivered nor counted fails the run. All values are
//! model only: the paper has no such experiment.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use nextio_engine::{Duration, Time};
use nextio_hw::ethernet::LinkConfig;
use nextio_lib::accio::Accio;
use nextio_os::accio::Mode;
use serde_json::json;

use super::common::{CLIENT_IP, CLIENT_MAC, PAPER, SERVER_IP, SERVER_MAC, cfg, linux_server};
use super::pingpong::{Platform, accio_host, lib_costs, message};
use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, Series, SimTally,
};
use crate::params::{ParamKind, ParamSpec};

pub struct AccioFallback;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "datagrams",
        ParamKind::U64,
        "2000",
        "",
        "datagrams per stream, 10 to 100000",
    )
    .quick("300")
    .int(10, 100_000),
    ParamSpec::new(
        "gap_us",
        ParamKind::U64,
        "5",
        "µs",
        "time between datagrams of a stream, 1 to 1000",
    )
    .int(1, 1000),
    ParamSpec::new(
        "down_at",
        ParamKind::F64,
        "0.3",
        "",
        "when the link goes down, as a fraction of the streams' length, 0.05 to 0.9",
    )
    .real(0.05, 0.9),
    ParamSpec::new(
        "down_us",
        ParamKind::U64,
        "200",
        "µs",
        "how long it stays down, 1 to 100000",
    )
    .int(1, 100_000),
];

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "tx-unaccounted",
        "client datagrams accepted by send but neither received by the server nor counted lost",
        "",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "rx-unaccounted",
        "server datagrams neither received by the client (ring or fallback) nor counted lost",
        "",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "tx-lost-in-flap",
        "client datagrams lost to the flap (dead wire, the NIC's pipe at carrier loss, the server's full socket buffer after the outage)",
        "",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "duplicates",
        "client datagrams the server received twice (sent by the NIC, then again by the kernel's drain of the TX ring)",
        "",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "via-fallback",
        "client datagrams carried by the kernel path while the fast path was off",
        "",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "back-on-fast-path",
        "sockets on the fast path at the end (of 2)",
        "",
        Origin::Simulated,
    ),
];

const TX_PORT: u16 = 6000;
const RX_PORT: u16 = 6001;
const SINK_PORT: u16 = 7000;
const SOURCE_PORT: u16 = 7001;

#[derive(Default)]
struct Log {
    accepted: u64,
    server_got: BTreeSet<u64>,
    client_got: BTreeSet<u64>,
    server_sent: u64,
    /// Datagrams the server received twice.
    duplicates: u64,
    /// (time µs, datagrams the client had received)
    timeline: Vec<(f64, u64)>,
    failed: Option<String>,
}

impl Experiment for AccioFallback {
    /// The test servers of §8.1.
    fn host(&self) -> &'static str {
        "accio-server"
    }
    fn name(&self) -> &'static str {
        "accio-fallback"
    }
    fn reproduces(&self) -> &'static str {
        "beyond Accio (NINeS '26) §6: a link flap mid-stream; sockets revert to the kernel path and return, no datagram unaccounted"
    }
    fn about(&self) -> &'static str {
        "Two datagram streams (client to server and back) over accelerated sockets of a server-class Accio host; the link goes down and up mid-stream. Counts every datagram: delivered, carried by the fallback socket, or lost to the flap and counted."
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
        // One simulation: the whole run is one shard's.
        ctx.single(|| simulate(ctx))
    }
}

/// The run, start to end.
fn simulate(ctx: &RunContext) -> Result<Outcome, RunError> {
    let n = ctx.params.u64("datagrams");
    let gap = Duration::from_us(ctx.params.u64("gap_us"));
    let down_for = Duration::from_us(ctx.params.u64("down_us"));
    let sim = ctx.new_sim();
    // Interrupts on core 0, the sink on 1, the source (which spins
    // between datagrams) on 2.
    let server = linux_server(&sim, SERVER_IP, SERVER_MAC, (CLIENT_IP, CLIENT_MAC), 3, 0)?;
    let a = accio_host(&sim, Platform::Server, 64)?;
    // The two directions of the cable, kept so they can be pulled.
    let link = LinkConfig::default();
    let (to_server, to_client) = nextio_hw::machine::join(
        a.host.machine(),
        a.nic.id,
        0,
        server.host.machine(),
        server.nic.id,
        0,
        link,
    )
    .map_err(cfg)?;
    let log = Rc::new(RefCell::new(Log::default()));
    let start = Time::ZERO + Duration::from_us(50);
    let down_at = start + gap.times((n as f64 * ctx.params.f64("down_at")) as u64);
    let up_at = down_at + down_for;
    // Server: a sink and a source.
    {
        let p = server.host.create_process().map_err(cfg)?;
        let t = server.thread(p.pid(), 1).map_err(cfg)?;
        let fd = server.stack.socket(p.pid());
        server.stack.bind(p.pid(), fd, SINK_PORT).map_err(cfg)?;
        let buf = p.mmap(4096, false).map_err(cfg)?;
        let (stack, disp, slog) = (server.stack.clone(), server.disp.clone(), log.clone());
        sim.spawn(async move {
            if disp.wait_turn(t.tid).await.is_err() {
                return;
            }
            while let Ok(_d) = stack.recvfrom(&t.ctx, t.tid, fd, buf, 2048, false).await {
                let mut b = [0u8; 8];
                let _ = t.ctx.peek(buf, &mut b);
                let mut l = slog.borrow_mut();
                if !l.server_got.insert(u64::from_be_bytes(b)) {
                    l.duplicates += 1;
                }
            }
        });
        let p = server.host.create_process().map_err(cfg)?;
        let t = server.thread(p.pid(), 2).map_err(cfg)?;
        let fd = server.stack.socket(p.pid());
        server.stack.bind(p.pid(), fd, SOURCE_PORT).map_err(cfg)?;
        server
            .stack
            .connect(p.pid(), fd, (CLIENT_IP, RX_PORT))
            .map_err(cfg)?;
        let buf = p.mmap(4096, false).map_err(cfg)?;
        let (stack, disp, slog) = (server.stack.clone(), server.disp.clone(), log.clone());
        sim.spawn(async move {
            if disp.wait_turn(t.tid).await.is_err() {
                return;
            }
            for i in 0..n {
                t.ctx.spin_until_time(start + gap.times(i)).await;
                if t.ctx.poke(buf, &message(i, 64)).is_err() {
                    return;
                }
                if stack
                    .sendto(&t.ctx, t.tid, fd, buf, 64, None)
                    .await
                    .is_err()
                {
                    return;
                }
                slog.borrow_mut().server_sent += 1;
            }
        });
    }
    // Client: a sender thread and a receiver thread, each with its own
    // accelerated socket.
    for (core, port, sending) in [(1usize, TX_PORT, true), (2, RX_PORT, false)] {
        let proc_ = a.host.create_process().map_err(cfg)?;
        let t = a.thread(proc_.pid(), core).map_err(cfg)?;
        let buf = proc_.mmap(4096, false).map_err(cfg)?;
        let (os, log) = (a.os.clone(), log.clone());
        sim.spawn(async move {
            let fail = |e: String| {
                log.borrow_mut().failed.get_or_insert(e);
            };
            if os.dispatcher().wait_turn(t.tid).await.is_err() {
                return;
            }
            let mut lib = Accio::new(
                os,
                proc_.pid(),
                t.tid,
                t.ctx.clone(),
                lib_costs(Platform::Server),
            );
            let fd = lib.socket();
            let remote = if sending { SINK_PORT } else { SOURCE_PORT };
            if let Err(e) = lib.bind(fd, port) {
                return fail(e.to_string());
            }
            if let Err(e) = lib.connect(fd, (SERVER_IP, remote)) {
                return fail(e.to_string());
            }
            if let Err(e) = lib.accelerate(fd).await {
                return fail(e.to_string());
            }
            if sending {
                for i in 0..n {
                    lib.ctx().spin_until_time(start + gap.times(i)).await;
                    if lib.ctx().poke(buf, &message(i, 64)).is_err() {
                        return fail("poke".into());
                    }
                    match lib.send(fd, buf, 64).await {
                        Ok(_) => log.borrow_mut().accepted += 1,
                        Err(e) => return fail(e.to_string()),
                    }
                }
            } else {
                loop {
                    if let Err(e) = lib.recv(fd, buf, 2048).await {
                        return fail(e.to_string());
                    }
                    let mut b = [0u8; 8];
                    let _ = lib.ctx().peek(buf, &mut b);
                    let now = lib.ctx().local_now();
                    let mut l = log.borrow_mut();
                    l.client_got.insert(u64::from_be_bytes(b));
                    let got = l.client_got.len() as u64;
                    l.timeline.push(((now - Time::ZERO).as_us_f64(), got));
                }
            }
        });
    }
    // The flap.
    {
        let (ws, wc, nic, fabric) = (
            to_server.clone(),
            to_client.clone(),
            a.nic.clone(),
            a.host.machine().fabric().clone(),
        );
        let sim2 = sim.clone();
        sim.spawn(async move {
            sim2.sleep_until(down_at).await;
            ws.set_up(false);
            wc.set_up(false);
            fabric.act(&nic, |n, cx| n.set_carrier(cx, false));
            sim2.sleep_until(up_at).await;
            ws.set_up(true);
            wc.set_up(true);
            fabric.act(&nic, |n, cx| n.set_carrier(cx, true));
        });
    }
    let end = start + gap.times(n) + down_for + Duration::from_ms(2);
    sim.run_until(end);
    let l = log.borrow();
    if let Some(f) = &l.failed {
        return Err(RunError::Config(format!("accio-fallback: {f}")));
    }
    let nic = a.nic.borrow().all_counters();
    let wire_s = to_server.counters();
    let wire_c = to_client.counters();
    let os = a.os.counters();
    // Lost to the flap, and dropped by the server's socket when the
    // kernel's qdisc released what it held during the outage at once
    // (a full receive buffer, as Linux counts it).
    let server_drops = server.stack.counters().sum_prefix("drop.");
    let tx_lost = wire_s.get("drop.link_down") + nic.get("drop.tx_link_down") + server_drops;
    let tx_unaccounted = l
        .accepted
        .saturating_sub(l.server_got.len() as u64 + tx_lost);
    let rx_lost = wire_c.get("drop.link_down") + nic.sum_prefix("drop.rx_");
    let rx_unaccounted = l
        .server_sent
        .saturating_sub(l.client_got.len() as u64 + rx_lost);
    // Connection ids are handed out from 0.
    let fast = (0..a.os.connections() as u32)
        .filter(|c| a.os.mode(*c) == Some(Mode::Fast))
        .count();
    let via_fallback = os.get("fallback_tx_drained") + a.stack.counters().get("sent_datagrams");
    let mut timeline = Series::new("client received", "time_us", &["received"]);
    let step = (l.timeline.len() / 300).max(1);
    for (i, (t, g)) in l.timeline.iter().enumerate() {
        if i % step == 0 || i + 1 == l.timeline.len() {
            timeline.push(json!({"time_us": t, "received": g}));
        }
    }
    let summary = json!({
        "accepted": l.accepted, "server_received": l.server_got.len(),
        "tx_lost_wire": wire_s.get("drop.link_down"), "tx_lost_nic": nic.get("drop.tx_link_down"),
        "server_socket_drops": server_drops, "server_duplicates": l.duplicates,
        "client_nic_drops": nic.sum_prefix("drop."),
        "server_sent": l.server_sent, "client_received": l.client_got.len(),
        "rx_lost_wire": wire_c.get("drop.link_down"), "rx_refused_nic": nic.sum_prefix("drop.rx_"),
        "reverted": os.get("reverted"), "resumed": os.get("resumed"),
        "fallback_tx_drained": os.get("fallback_tx_drained"),
        "kernel_path_sends": a.stack.counters().get("sent_datagrams"),
        "kernel_path_receives": a.stack.counters().get("rx_delivered"),
    });
    let checks = vec![
        CHECKS[0].judge(tx_unaccounted as f64),
        CHECKS[1].judge(rx_unaccounted as f64),
        CHECKS[2].judge(tx_lost as f64),
        CHECKS[3].judge(l.duplicates as f64),
        CHECKS[4].judge(via_fallback as f64),
        CHECKS[5].judge(fast as f64),
    ];
    let notes = vec![
        format!("Counts: {summary}"),
        format!("The link was down from {:.0} µs to {:.0} µs; the NIC's engine comes back after its ready delay (AccioNicConfig::engine_ready_delay), after which the kernel resumes every socket.", (down_at - Time::ZERO).as_us_f64(), (up_at - Time::ZERO).as_us_f64()),
        "Frames on the wire or in the NIC's transmit pipe when the cable is pulled are lost, as on real hardware, and counted; \"losing no datagram\" holds for everything the client or server still held (rings, queues, the kernel's qdisc while carrier is off).".into(),
    ];
    drop(l);
    ctx.record(SimTally::of(&sim, 2 * n));
    ctx.write_artefacts("accio-fallback", &sim)?;
    sim.shutdown();
    if tx_unaccounted > 0 || rx_unaccounted > 0 {
        return Err(RunError::Config(format!(
            "accio-fallback: datagrams unaccounted ({tx_unaccounted} sent, {rx_unaccounted} received): {summary}"
        )));
    }
    Ok(Outcome {
        series: vec![timeline],
        axes: vec![
            Axis::new("time_us", "simulated time (µs)"),
            Axis::new("received", "datagrams the client received"),
        ],
        checks,
        notes,
    })
}
