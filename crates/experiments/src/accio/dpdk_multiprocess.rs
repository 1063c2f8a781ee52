//! `dpdk-multiprocess` — Accio Fig. 1: a UDP ping-pong's latency when
//! several processes share one NIC through DPDK.
//!
//! As §2.3 and DPDK's multi-process sample: one primary process owns the
//! NIC (the poll-mode driver on its own core) and forwards between the
//! NIC and the other processes through shared-memory FIFOs (one pair per
//! process, in a hugepage segment every process attaches); each
//! secondary process builds its own datagrams, hands them to the primary
//! and busy-polls its FIFO for the echo. Every process ping-pongs with its
//! own echo server thread at the same time. Beside them, the same
//! ping-pong from the kernel's sockets and from a single DPDK process
//! that owns the NIC itself. Latency is the client's processing time
//! (software round trip minus NIC round trip), simulated.
//!
//! Deviation, stated: the packet is copied into and out of the FIFO's
//! slots (the paper's implementation: "the additional shared-memory
//! copy"); DPDK's sample passes mbuf pointers instead.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Category, Counters, Duration, Time};
use nextio_hw::ethernet::LinkConfig;
use nextio_hw::machine::MachineSpec;
use nextio_hw::mem::HUGE_PAGE_BYTES;
use nextio_hw::nic::packetized::{PacketizedConfig, PacketizedNic, regs};
use nextio_hw::packet::{FlowKey, Macs, build_udp_datagram, parse_udp};
use nextio_lib::dpdk::{Pmd, PmdConfig};
use nextio_lib::shm_fifo::ShmFifo;
use nextio_os::{Host, OsCosts};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{
    CLIENT_IP, CLIENT_MAC, ECHO_PORT, PAPER, SERVER_IP, SERVER_MAC, cfg, join_stamped,
    linux_server, mean,
};
use super::pingpong::{self, PingPong, Platform, System, echo_server, message};
use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, Series, SeriesKind,
    SimTally, Tolerance,
};
use crate::params::{ParamKind, ParamSpec};

pub struct DpdkMultiprocess;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "processes",
        ParamKind::U64List,
        "1,2,4,8",
        "",
        "secondary processes sharing the NIC, 1 to 16",
    )
    .quick("1,4")
    .int(1, 16)
    .items(1, 8),
    ParamSpec::new(
        "messages",
        ParamKind::U64,
        "200",
        "",
        "ping-pongs per process, 1 to 100000",
    )
    .quick("20")
    .int(1, 100_000),
];

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "kernel-over-dpdk",
        "the kernel's sockets over one DPDK process owning the NIC (§2.3: DPDK \"≈1/6th\"; read as 6 ± 25 %)",
        "×",
        Origin::Simulated,
    )
    .words(6.0, Tolerance::Relative(0.25)),
    CheckSpec::new(
        "sharing-grows",
        "latency with the most processes over one process sharing (§2.3: \"progressively worse\"; at least 1)",
        "×",
        Origin::Simulated,
    )
    .words(1.0, Tolerance::AtLeast),
    CheckSpec::new(
        "shared",
        "mean processing time with N processes sharing the NIC",
        "µs",
        Origin::Simulated,
    )
    .per_point(),
];

/// The baseline's own costs: the root preset's `[apps.dpdk_multiprocess]`,
/// where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiprocessCosts {
    /// One idle iteration of a poll loop (ring checks, a pause).
    pub idle_poll_cycles: u64,
}

/// The root preset's baseline costs (read once per process).
fn costs() -> &'static MultiprocessCosts {
    nextio_presets::cached_root_section!(MultiprocessCosts, "apps.dpdk_multiprocess")
}
const BASE_PORT: u16 = 5000;
const FIFO_SLOTS: u64 = 64;

#[derive(Default)]
struct Log {
    sent: Vec<(u64, Time)>,
    got: Vec<(u64, Time)>,
    failed: Option<String>,
}

/// `n` processes sharing the NIC through the primary each ping-pong
/// `messages` 64 B datagrams; every echo's client processing time, µs.
/// `label` names the run's artefacts.
pub(super) fn shared(
    ctx: &RunContext,
    n: usize,
    messages: u64,
    label: &str,
) -> Result<(Vec<f64>, SimTally), RunError> {
    let sim = ctx.new_sim();
    let server = linux_server(
        &sim,
        SERVER_IP,
        SERVER_MAC,
        (CLIENT_IP, CLIENT_MAC),
        n + 1,
        0,
    )?;
    let ports: Vec<u16> = (0..n as u16).map(|k| ECHO_PORT + k).collect();
    echo_server(&server, &ports, Duration::ZERO)?;
    let client =
        Host::new(&sim, MachineSpec::accio_server(n + 1), OsCosts::default()).map_err(cfg)?;
    let nic = client
        .attach_nic(PacketizedNic::new(PacketizedConfig::default()).map_err(cfg)?)
        .map_err(cfg)?;
    let (ab, ba) = join_stamped(
        client.machine(),
        nic.id,
        server.host.machine(),
        server.nic.id,
        LinkConfig::default(),
    )?;
    // The primary: the NIC, the segment.
    let primary = client.create_process().map_err(cfg)?;
    let pt = primary.thread(0).map_err(cfg)?;
    let bar = primary
        .map_bar(nic.id, 0, 0, regs::BAR0_BYTES)
        .map_err(cfg)?;
    let mut pmd = Pmd::new(
        pt.ctx.clone(),
        &primary,
        &nic,
        bar,
        0,
        PmdConfig::default(),
        Rc::new(RefCell::new(Counters::new())),
    )
    .map_err(cfg)?;
    let fifo = ShmFifo::new(FIFO_SLOTS);
    let seg_bytes = (2 * n as u64 * fifo.bytes()).next_multiple_of(HUGE_PAGE_BYTES);
    let seg = primary.mmap(seg_bytes, true).map_err(cfg)?;
    // FIFO k to the secondary at 2k, from it at 2k + 1.
    let at = move |base: nextio_hw::mem::VirtAddr, k: usize, from: bool| {
        base.offset((2 * k as u64 + from as u64) * fifo.bytes())
    };
    let log = Rc::new(RefCell::new(Log::default()));
    let start = Time::ZERO + Duration::from_us(20);
    for k in 0..n {
        let p = client.create_process().map_err(cfg)?;
        let va = client
            .kernel()
            .borrow_mut()
            .sys_shm_attach(primary.pid(), seg, seg_bytes, p.pid())
            .map_err(cfg)?;
        let t = p.thread(1 + k).map_err(cfg)?;
        let log = log.clone();
        let flow = FlowKey {
            src_ip: CLIENT_IP,
            dst_ip: SERVER_IP,
            src_port: BASE_PORT + k as u16,
            dst_port: ECHO_PORT + k as u16,
        };
        let macs = Macs {
            src: CLIENT_MAC,
            dst: SERVER_MAC,
        };
        sim.spawn(async move {
            let fail = |e: String| {
                log.borrow_mut().failed.get_or_insert(e);
            };
            let ctx = t.ctx;
            ctx.spin_until_time(start).await;
            let mut back = Vec::new();
            for i in 0..messages {
                let seq = (k as u64) << 32 | i;
                log.borrow_mut().sent.push((seq, ctx.local_now()));
                let Ok(frame) = build_udp_datagram(macs, flow, &message(seq, 64)) else {
                    return fail("frame".into());
                };
                loop {
                    match fifo.push(&ctx, at(va, k, true), &frame) {
                        Ok(true) => break,
                        Ok(false) => {
                            ctx.compute(Category::Polling, costs().idle_poll_cycles)
                                .await
                        }
                        Err(e) => return fail(e.to_string()),
                    }
                }
                loop {
                    ctx.sync().await;
                    match fifo.pop(&ctx, at(va, k, false), &mut back) {
                        Ok(true) => break,
                        Ok(false) => {
                            ctx.compute(Category::Polling, costs().idle_poll_cycles)
                                .await
                        }
                        Err(e) => return fail(e.to_string()),
                    }
                }
                let seq = parse_udp(&back)
                    .ok()
                    .and_then(|v| back.get(v.payload_offset..v.payload_offset + 8))
                    .and_then(|b| b.try_into().ok())
                    .map_or(u64::MAX, u64::from_be_bytes);
                log.borrow_mut().got.push((seq, ctx.local_now()));
            }
        });
    }
    {
        let log = log.clone();
        let ctx = pt.ctx.clone();
        sim.spawn(async move {
            let fail = |e: String| {
                log.borrow_mut().failed.get_or_insert(e);
            };
            if let Err(e) = pmd.start().await {
                return fail(e.to_string());
            }
            let mut rx = Vec::new();
            let mut bytes = Vec::new();
            let total = messages * n as u64;
            // Until every process has its last echo (then the run ends
            // instead of polling on).
            while (log.borrow().got.len() as u64) < total && log.borrow().failed.is_none() {
                let mut busy = false;
                match pmd.rx_burst(&mut rx, 32).await {
                    Ok(_) => {}
                    Err(e) => return fail(e.to_string()),
                }
                for m in rx.drain(..) {
                    busy = true;
                    if pmd.read_packet(m, &mut bytes).is_err() {
                        return fail("read".into());
                    }
                    pmd.free(m);
                    // Which process: the datagram's destination port.
                    let k = parse_udp(&bytes)
                        .ok()
                        .map(|v| v.flow.dst_port.wrapping_sub(BASE_PORT) as usize);
                    if let Some(k) = k.filter(|k| *k < n) {
                        match fifo.push(&ctx, at(seg, k, false), &bytes) {
                            Ok(_) => {}
                            Err(e) => return fail(e.to_string()),
                        }
                    }
                }
                for k in 0..n {
                    ctx.sync().await;
                    match fifo.pop(&ctx, at(seg, k, true), &mut bytes) {
                        Ok(true) => {
                            busy = true;
                            let Some(m) = pmd.alloc() else {
                                return fail("no mbuf".into());
                            };
                            if pmd.write_packet(m, &bytes).is_err()
                                || pmd.request_udp_checksum(m).is_err()
                            {
                                return fail("write".into());
                            }
                            let mut tx = vec![m];
                            while !tx.is_empty() {
                                if let Err(e) = pmd.tx_burst(&mut tx).await {
                                    return fail(e.to_string());
                                }
                            }
                        }
                        Ok(false) => {}
                        Err(e) => return fail(e.to_string()),
                    }
                }
                if !busy {
                    ctx.compute(Category::Polling, costs().idle_poll_cycles)
                        .await;
                }
            }
        });
    }
    sim.run_until(start + Duration::from_ms(1).times(messages * n as u64 + 2));
    let l = log.borrow();
    if let Some(f) = &l.failed {
        return Err(RunError::Config(format!("dpdk-multiprocess {n}: {f}")));
    }
    if l.got.len() as u64 != messages * n as u64 {
        return Err(RunError::Config(format!(
            "dpdk-multiprocess {n}: {} of {} echoes came back",
            l.got.len(),
            messages * n as u64
        )));
    }
    let sent: std::collections::BTreeMap<u64, Time> = l.sent.iter().copied().collect();
    let (abl, bal) = (ab.borrow(), ba.borrow());
    let mut out = Vec::new();
    for (seq, t1) in &l.got {
        let (Some(t0), Some(h0), Some(h1)) = (sent.get(seq), abl.tx.get(seq), bal.rx.get(seq))
        else {
            return Err(RunError::Config(format!("no stamps for {seq:#x}")));
        };
        out.push((*t1 - *t0).as_us_f64() - (*h1 - *h0).as_us_f64());
    }
    drop((abl, bal, l));
    let tally = SimTally::of(&sim, 2 * messages * n as u64);
    ctx.write_artefacts(label, &sim)?;
    sim.shutdown();
    Ok((out, tally))
}

impl Experiment for DpdkMultiprocess {
    /// The test servers of §8.1.
    fn host(&self) -> &'static str {
        "accio-server"
    }
    fn name(&self) -> &'static str {
        "dpdk-multiprocess"
    }
    fn reproduces(&self) -> &'static str {
        "Accio (NINeS '26) Fig. 1: ping-pong latency with kernel sockets, DPDK, and DPDK shared by N processes"
    }
    fn about(&self) -> &'static str {
        "A UDP ping-pong against a Linux echo server from kernel sockets, from one DPDK process owning the NIC, and from N processes sharing the NIC through a primary DPDK process and shared-memory FIFOs; reports each client's processing time."
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
        let procs = ctx.params.u64_list("processes");
        let messages = ctx.params.u64("messages");
        let single = |system, label: &str| {
            pingpong::run(
                ctx,
                PingPong {
                    system,
                    platform: Platform::Server,
                    size: 64,
                    messages,
                    server_delay: Duration::ZERO,
                    testbed_kernel: false,
                },
                label,
            )
        };
        let kernel = single(System::Linux, "dpdk-multiprocess-kernel")?;
        let dpdk = single(System::Dpdk, "dpdk-multiprocess-dpdk")?;
        ctx.record(kernel.tally);
        ctx.record(dpdk.tally);
        let res = ctx.sweep(&procs, |_, &n| {
            shared(ctx, n as usize, messages, &format!("dpdk-multiprocess-{n}"))
        })?;
        let (k, d) = (mean(&kernel.processing_us), mean(&dpdk.processing_us));
        let mut s = Series::new("dpdk shared", "processes", &["processing_us"]);
        let mut checks = vec![CHECKS[0].judge(k / d.max(1e-9))];
        let mut means = Vec::new();
        for (n, (r, tally)) in procs.iter().zip(&res) {
            ctx.record(*tally);
            let m = mean(r);
            means.push((*n, m));
            s.push(json!({"processes": n, "processing_us": m}));
            checks.push(CHECKS[2].at(format!("{n}")).judge(m));
        }
        let lo = means.iter().min_by_key(|x| x.0).map_or(0.0, |x| x.1);
        let hi = means.iter().max_by_key(|x| x.0).map_or(0.0, |x| x.1);
        checks.insert(1, CHECKS[1].judge(hi / lo.max(1e-9)));
        let flat = |name: &str, v: f64| {
            let mut f = Series::new(name, "processes", &["processing_us"]);
            for n in &procs {
                f.push(json!({"processes": n, "processing_us": v}));
            }
            f
        };
        let series = vec![
            flat("kernel sockets", k),
            flat("dpdk, one process", d),
            s,
            Series::new("paper: kernel ≈ 6 × dpdk", "processes", &["processing_us"])
                .kind(SeriesKind::Paper)
                .with(json!({"processes": 1, "processing_us": 6.0 * d})),
        ];
        Ok(Outcome {
            series,
            axes: vec![
                Axis::new("processes", "processes sharing the NIC"),
                Axis::new("processing_us", "client processing time (µs)").log(),
            ],
            checks,
            notes: vec![
                "The paper's servers ran FreeBSD with X710 NICs; here the kernel is nextio's production Linux-like stack (assumed costs) and the NIC the E810-like packetized NIC. The paper draws its reference at 6× the single-process DPDK latency, so the paper series is 6 × the model's DPDK point (the ratio is what §2.3 states).".into(),
                "Each secondary process has its own core and busy-polls; the primary forwards on core 0. Every process ping-pongs at once, so the primary's loop serves them in turn: the growth with N is the primary's forwarding and the FIFO copies, simulated through the cache model.".into(),
            ],
        })
    }
}
