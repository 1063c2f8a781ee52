//! `xui-l3fwd` — Fig. 8 of the xUI paper: DPDK's l3fwd (LPM, 16,000
//! routes, 64-byte IPv4/UDP) on one core fed by 1, 4 or 8 NIC receive
//! queues with exponential inter-arrivals, notified by busy polling or by
//! xUI forwarded device interrupts (tracked). Reports throughput, p95
//! latency and free cycles against load (a fraction of the polling
//! maximum, itself measured by saturating the polling router).
//!
//! The bench is the project's own: a traffic generator on one end of a
//! 100 Gb/s link sends real 64-byte frames (sequence number and transmit
//! time stamped in the payload) with Poisson departures; the router host
//! has the packetized E810-like NIC (RSS over 1, 4 or 8 queue pairs,
//! descriptor rings in host memory, PCIe Gen3 x16) and one core running
//! the DPDK-style poll-mode driver, one `Pmd` per queue. For each received
//! frame the router reads the frame's bytes, parses them (checksums
//! verified), looks the destination up in the LPM table (a real longest
//! match; its cost is the probes it made), rewrites the MAC addresses in
//! the mbuf, and transmits it back out of the same queue pair; the
//! generator reads the stamps back to measure each frame's latency.
//!
//! * `polling`: the core loops over its queues round robin (`rx_burst` of
//!   up to 32 each); when a whole round finds nothing it busy-polls (one
//!   charged wait until any queue's next descriptor is written back).
//! * `xui`: the router thread registers each queue's device vector for
//!   forwarding with the OS (`register_forward`, so the kernel's checks
//!   apply), arms every queue's interrupt (`GLINT_DYN_CTL` write over
//!   PCIe) and sleeps: idle time is free. A write-back on an armed queue
//!   sends its MSI-X message (a posted PCIe write) and masks it; the
//!   core's APIC forwards the vector to the running router thread (fast
//!   path; the kernel would park it in the DUPID otherwise), which pays
//!   the tracked delivery cost from [`delivery_cost`], drains every queue
//!   until a round finds nothing, and re-arms the queues whose vectors
//!   fired. A vector that fires while the handler runs is taken after it.
//!
//! Throughput counts frames forwarded in the measured window; latency is
//! the generator's round trip of frames sent in that window (warm-up
//! excluded); free cycles are the idle share of the router core's ledger
//! over the window (polling counts as busy).
//!
//! Every run, the saturating ones included (where the NIC drops), must
//! conserve frames or fail: offered = forwarded + dropped (by reason) +
//! still queued, and forwarded = returned to the generator + TX drops.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::num::NonZeroUsize;
use std::rc::Rc;

use nextio_apps::lpm::{Lpm, forward};
use nextio_engine::{Category, Counters, Duration, Mailbox, Notify, Sim, SimRng, Time};
use nextio_hw::device::Device as _;
use nextio_hw::ethernet::{LinkConfig, PER_FRAME_OVERHEAD_BYTES};
use nextio_hw::fabric::MsiMessage;
use nextio_hw::interrupt::pipeline::{
    CoreParams, InstrMix, Route, Strategy, UcodeCosts, delivery_cost,
};
use nextio_hw::nic::packetized::{PacketizedConfig, PacketizedNic, regs};
use nextio_hw::packet::{self, FlowKey, Macs};
use nextio_hw::trafficgen::{Arrivals, Source, TrafficConfig, TrafficGen};
use nextio_lib::dpdk::{Mbuf, Pmd, PmdConfig, PmdError};
use nextio_os::DeliveryPath;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, STATED, Series, SeriesKind,
    SimTally, Tolerance,
};
use crate::params::{ParamKind, ParamSpec};
use crate::xui_common::{FREQ, split_by, xui_host};

pub struct XuiL3fwd;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "queues",
        ParamKind::U64List,
        "1,4,8",
        "queues",
        "NIC receive queues, 1 to 63 (each takes one of the 64 user-interrupt vectors; vector 0 is not used)",
    )
    .int(1, 63)
    .items(1, 16),
    ParamSpec::new(
        "load",
        ParamKind::F64List,
        "0,0.1,0.2,0.4,0.6,0.8,0.9,1",
        "fraction",
        "offered load, fraction of the polling maximum, 0 to 1.5",
    )
    .quick("0,0.2,0.4,0.8,1")
    .real(0.0, 1.5)
    .items(1, 64),
    ParamSpec::new(
        "duration_us",
        ParamKind::U64,
        "10000",
        "µs",
        "simulated time per point, 100 to 10^6 µs (shorter windows hold too few frames for a p95)",
    )
    .quick("2000")
    .int(100, 1_000_000),
    ParamSpec::new(
        "routes",
        ParamKind::U64,
        "16000",
        "routes",
        "LPM table size, 1 to 10^6",
    )
    .int(1, 1_000_000),
];

/// The router's primitives: a preset's `[apps.l3fwd]`, where each value's
/// source is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L3fwdCosts {
    /// One probe of the LPM table (a hash-table access, L1/L2-resident).
    pub probe_cycles: u64,
    /// l3fwd's per-packet work besides the lookup and the driver: header
    /// parse and checks, MAC rewrite, output-port choice (its frame access
    /// is charged by the cache model, not here).
    pub route_cycles: u64,
    /// Packets per burst (never 0).
    pub burst: NonZeroUsize,
    /// l3fwd's pipeline when interrupted (idle or in the poll loop).
    #[serde(deserialize_with = "l3fwd_mix")]
    pub mix: InstrMix,
}

fn l3fwd_mix<'de, D: serde::Deserializer<'de>>(d: D) -> Result<InstrMix, D::Error> {
    Ok(InstrMix::deserialize(d)?.named("l3fwd"))
}

/// The root preset's router (read once per process).
fn costs() -> &'static L3fwdCosts {
    nextio_presets::cached_root_section!(L3fwdCosts, "apps.l3fwd")
}
/// Device vector of queue 0's MSI-X entry; queue q uses `NIC_VECTOR + q`.
/// Model choice (any vector the kernel has not taken).
const NIC_VECTOR: u8 = 40;
/// Frame size (FCS included), as the paper specifies.
const FRAME_BYTES: usize = 64;
/// Distinct frames the generator cycles through (5-tuples with random
/// destination addresses, so RSS spreads them and lookups vary). Model
/// choice.
const TEMPLATES: usize = 1024;
/// Warm-up before the measured window, as a fraction of it: caches warm,
/// rings and mbuf pools cycled. Model choice.
const WARMUP_FRACTION: f64 = 0.2;
/// After the generator stops, the run continues in steps of this until
/// every ring is empty and every forwarded frame is back (at most
/// [`DRAIN_STEPS`] steps), so conservation is checked on a quiet system.
const DRAIN_STEP: Duration = Duration::from_us(100);
const DRAIN_STEPS: usize = 50;
/// Offered rate that saturates the polling router when its maximum is
/// measured: well above what one 2 GHz core forwards, below line rate
/// (148.8 Mpps). Model choice.
const SATURATION_PPS: f64 = 60e6;

/// §6.2.2 / Fig. 8 of the xUI paper.
const PAPER_XUI_FREE_1Q_40PCT: f64 = 0.45;
const PAPER_P95_GAP: [(u64, f64); 3] = [(1, 0.02), (4, -0.08), (8, 0.65)];
const PAPER_THROUGHPUT_GAP: f64 = -0.0008;

/// The latency and throughput gaps are fractions near zero, where a
/// relative tolerance means nothing: they are judged within 10 and 1
/// percentage points.
const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "xui-free-1q-40pct",
        "free cycles with xUI, 1 queue, 40 % load",
        "fraction",
        Origin::Simulated,
    )
    .stated(PAPER_XUI_FREE_1Q_40PCT, STATED),
    CheckSpec::new(
        "p95-gap-1q",
        "xUI p95 latency relative to polling, 1 queue, mean over loads",
        "fraction",
        Origin::Simulated,
    )
    .stated(PAPER_P95_GAP[0].1, Tolerance::Absolute(0.10)),
    CheckSpec::new(
        "p95-gap-4q",
        "xUI p95 latency relative to polling, 4 queues, mean over loads",
        "fraction",
        Origin::Simulated,
    )
    .stated(PAPER_P95_GAP[1].1, Tolerance::Absolute(0.10)),
    CheckSpec::new(
        "p95-gap-8q",
        "xUI p95 latency relative to polling, 8 queues, mean over loads",
        "fraction",
        Origin::Simulated,
    )
    .stated(PAPER_P95_GAP[2].1, Tolerance::Absolute(0.10)),
    CheckSpec::new(
        "throughput-gap-full-load",
        "xUI throughput relative to polling at full load, mean over queue counts",
        "fraction",
        Origin::Simulated,
    )
    .stated(PAPER_THROUGHPUT_GAP, Tolerance::Absolute(0.01)),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mech {
    Polling,
    Xui,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Point {
    mpps: f64,
    p95_ns: f64,
    free: f64,
    /// Frames dropped anywhere (NIC RX, the router, TX).
    dropped: u64,
    tally: SimTally,
}

/// The generator's frames: 64-byte UDP over [`TEMPLATES`] 5-tuples with
/// random destinations.
fn templates(seed: u64) -> Result<Vec<Vec<u8>>, RunError> {
    let mut r = SimRng::new(seed).fork("destinations");
    (0..TEMPLATES)
        .map(|i| {
            let flow = FlowKey {
                src_ip: Ipv4Addr::new(192, 168, (i >> 8) as u8, i as u8),
                dst_ip: Ipv4Addr::from(r.next_u64() as u32),
                src_port: 10_000 + i as u16,
                dst_port: 7,
            };
            packet::build_udp(Macs::default(), flow, &[], FRAME_BYTES)
                .map_err(|e| RunError::Config(e.to_string()))
        })
        .collect()
}

/// Route one received packet in place; false if it is not IPv4/UDP.
fn route_one(pmd: &mut Pmd, table: &Lpm, m: Mbuf) -> Result<bool, PmdError> {
    let len = pmd.peek_data_len(m)? as usize;
    let va = pmd.data_va(m);
    let mut bytes = [0u8; 128];
    let n = len.min(bytes.len());
    pmd.load_prefetched(va, &mut bytes[..n], Category::Application)?;
    let frame = &mut bytes[..n];
    let probes = packet::parse_udp(frame)
        .map(|v| table.lookup(v.flow.dst_ip.into()).1 as u64)
        .unwrap_or(0);
    let ctx = pmd.ctx().clone();
    ctx.cycles(
        Category::Application,
        costs().route_cycles + probes * costs().probe_cycles,
    );
    if forward(table, frame).is_err() {
        return Ok(false);
    }
    // The rewritten MAC addresses go back to the mbuf.
    ctx.store(va, &frame[..12], Category::Application)?;
    Ok(true)
}

/// One `rx_burst` on `pmd`, routed and sent back out; returns packets
/// received.
async fn serve(
    pmd: &mut Pmd,
    table: &Lpm,
    app: &RefCell<Counters>,
    rx: &mut Vec<Mbuf>,
    tx: &mut Vec<Mbuf>,
) -> Result<usize, PmdError> {
    let n = pmd.rx_burst(rx, costs().burst.get()).await?;
    if n == 0 {
        return Ok(0);
    }
    app.borrow_mut().add("rx", n as u64);
    // l3fwd prefetches every packet's first line before touching any.
    for &m in rx.iter() {
        let va = pmd.data_va(m);
        pmd.prefetch(va)?;
    }
    for m in rx.drain(..) {
        if route_one(pmd, table, m)? {
            tx.push(m);
        } else {
            app.borrow_mut().inc("drop.not_ipv4_udp");
            pmd.free(m);
        }
    }
    let sent = pmd.tx_burst(tx).await?;
    app.borrow_mut().add("forwarded", sent as u64);
    for m in tx.drain(..) {
        app.borrow_mut().inc("drop.tx_ring_full");
        pmd.free(m);
    }
    Ok(n)
}

/// Hand every queue's filled RX ring to the NIC (counted as an error if a
/// doorbell fails).
async fn start_all(pmds: &[Pmd], app: &RefCell<Counters>) -> Result<(), PmdError> {
    for pmd in pmds {
        if let Err(e) = pmd.start().await {
            app.borrow_mut().inc("error");
            return Err(e);
        }
    }
    Ok(())
}

/// The busy-polling router.
async fn polling_router(
    mut pmds: Vec<Pmd>,
    any_rx: Rc<Notify>,
    table: Rc<Lpm>,
    app: Rc<RefCell<Counters>>,
    spinning: Rc<Cell<bool>>,
) {
    let (mut rx, mut tx) = (
        Vec::with_capacity(costs().burst.get()),
        Vec::with_capacity(costs().burst.get()),
    );
    let Some(ctx) = pmds.first().map(|p| p.ctx().clone()) else {
        return;
    };
    if start_all(&pmds, &app).await.is_err() {
        return;
    }
    loop {
        let mut found = 0;
        for pmd in pmds.iter_mut() {
            match serve(pmd, &table, &app, &mut rx, &mut tx).await {
                Ok(n) => found += n,
                Err(_) => {
                    app.borrow_mut().inc("error");
                    return;
                }
            }
        }
        if found == 0 {
            // Nothing anywhere: spin until some queue's next descriptor is
            // written back (one charged wait for the round-robin checks).
            let ps = &pmds;
            spinning.set(true);
            ctx.spin_until(&any_rx, || ps.iter().any(|p| p.rx_ready()))
                .await;
            spinning.set(false);
        }
    }
}

/// What the APIC forwarded to the router thread and it has not handled.
struct Forwarded {
    queues: RefCell<BTreeSet<usize>>,
    notify: Notify,
    slow: Cell<u64>,
}

/// The router on xUI forwarded interrupts.
async fn xui_router(
    mut pmds: Vec<Pmd>,
    fwd: Rc<Forwarded>,
    table: Rc<Lpm>,
    app: Rc<RefCell<Counters>>,
) {
    let (mut rx, mut tx) = (
        Vec::with_capacity(costs().burst.get()),
        Vec::with_capacity(costs().burst.get()),
    );
    let Some(ctx) = pmds.first().map(|p| p.ctx().clone()) else {
        return;
    };
    let irq = delivery_cost(
        &CoreParams::default(),
        &UcodeCosts::default(),
        &costs().mix,
        Strategy::Tracked,
        Route::Direct,
    );
    if start_all(&pmds, &app).await.is_err() {
        return;
    }
    for pmd in &pmds {
        if pmd.rx_intr_enable().await.is_err() {
            app.borrow_mut().inc("error");
            return;
        }
    }
    loop {
        // Idle until a forwarded vector is pending (the core sleeps).
        let f = fwd.clone();
        ctx.block_until(&fwd.notify, || !f.queues.borrow().is_empty())
            .await;
        // Tracked delivery: the front end redirects to the handler
        // (latency), then the delivery microcode and handler entry/uiret
        // cost the thread cycles.
        ctx.spend(Category::Idle, FREQ.cycles_to_duration(irq.latency_cycles));
        ctx.compute(Category::Interrupt, irq.overhead_cycles).await;
        let fired = std::mem::take(&mut *fwd.queues.borrow_mut());
        app.borrow_mut().inc("interrupts");
        // Drain every queue until a round finds nothing.
        loop {
            let mut found = 0;
            for pmd in pmds.iter_mut() {
                match serve(pmd, &table, &app, &mut rx, &mut tx).await {
                    Ok(n) => found += n,
                    Err(_) => {
                        app.borrow_mut().inc("error");
                        return;
                    }
                }
            }
            if found == 0 {
                break;
            }
        }
        // Re-arm the vectors that fired (the NIC masked them).
        for q in fired {
            if let Some(p) = pmds.get(q)
                && p.rx_intr_enable().await.is_err()
            {
                app.borrow_mut().inc("error");
                return;
            }
        }
    }
}

fn run_point(
    run: &RunContext,
    mech: Mech,
    queues: usize,
    rate_pps: f64,
    duration: Duration,
    table: &Lpm,
    seed: u64,
) -> Result<Point, RunError> {
    let cfg_err = |e: &dyn std::fmt::Display| RunError::Config(e.to_string());
    let sim = run.new_sim();
    let table = Rc::new(table.clone());
    // The host: the Table 3 core (2 GHz) with an Ice Lake cache hierarchy
    // clocked at it, the E810-like NIC on PCIe Gen3 x16 in its NIC slot.
    let host = xui_host(&sim, 1)?;
    let nic = PacketizedNic::new(PacketizedConfig {
        queues,
        ..PacketizedConfig::default()
    })
    .map_err(|e| cfg_err(&e))?;
    let nic = host.attach_nic(nic).map_err(|e| cfg_err(&e))?;
    // Wires: the generator's port never drops (a hardware generator's deep
    // transmit buffer); the router NIC's TX port buffers 4096 frames
    // (model choice, as in the Ensō bench).
    let to_gen = Rc::new(Mailbox::new(&sim));
    let (dut_out, gen_out) = host
        .machine()
        .wire_port(
            nic.id,
            0,
            to_gen.clone(),
            LinkConfig {
                queue_frames: 4096,
                ..LinkConfig::default()
            },
            LinkConfig {
                queue_frames: 1 << 16,
                ..LinkConfig::default()
            },
        )
        .map_err(|e| cfg_err(&e))?;
    let app = Rc::new(RefCell::new(Counters::new()));
    // The router process: one thread on core 0 driving every queue.
    let router = host.create_process().map_err(|e| cfg_err(&e))?;
    let thread = router.thread(0).map_err(|e| cfg_err(&e))?;
    let bar = router
        .map_bar(nic.id, 0, 0, regs::BAR0_BYTES)
        .map_err(|e| cfg_err(&e))?;
    let pmds = (0..queues)
        .map(|q| {
            Pmd::new(
                thread.ctx.clone(),
                &router,
                &nic,
                bar,
                q,
                PmdConfig::default(),
                app.clone(),
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cfg_err(&e))?;
    let core = host
        .machine()
        .core(0)
        .cloned()
        .ok_or_else(|| cfg_err(&"no core 0"))?;
    // Set while the polling router is in its charged wait, whose time the
    // ledger only books when the wait ends: a snapshot taken meanwhile
    // books it as polling.
    let spinning = Rc::new(Cell::new(false));
    let fwd = Rc::new(Forwarded {
        queues: RefCell::new(BTreeSet::new()),
        notify: Notify::new(&sim),
        slow: Cell::new(0),
    });
    match mech {
        Mech::Polling => {
            // One watch over every RX ring: the poll loop's wait.
            let any_rx = Rc::new(Notify::new(&sim));
            for p in &pmds {
                p.watch_rx(any_rx.clone()).map_err(|e| cfg_err(&e))?;
            }
            sim.spawn(polling_router(
                pmds,
                any_rx,
                table.clone(),
                app.clone(),
                spinning.clone(),
            ));
        }
        Mech::Xui => {
            // The router thread registers each queue's vector for
            // forwarding; the kernel checks it has a handler and that the
            // vector is free. The OS points each queue's MSI-X entry at
            // core 0's APIC.
            let tid = thread.tid;
            {
                let mut kernel = host.kernel().borrow_mut();
                kernel
                    .sys_register_handler(tid, 0x1000)
                    .map_err(|e| cfg_err(&e))?;
                for q in 0..queues {
                    let vector = NIC_VECTOR
                        .checked_add(q as u8)
                        .ok_or_else(|| RunError::Config("too many queues for vectors".into()))?;
                    kernel
                        .sys_register_forward(tid, vector, q as u8 + 1)
                        .map_err(|e| cfg_err(&e))?;
                    nic.borrow_mut()
                        .configure_interrupt(q, q as u16)
                        .map_err(|e| cfg_err(&e))?;
                    host.machine()
                        .fabric()
                        .set_msix(nic.id, q as u16, MsiMessage { core: 0, vector })
                        .map_err(|e| cfg_err(&e))?;
                }
            }
            // What the kernel did with each interrupt: a fast-path
            // delivery of a queue's user vector is the router's to handle.
            let f = fwd.clone();
            host.on_interrupt(move |ev| {
                let q = ev.vector.wrapping_sub(NIC_VECTOR) as usize;
                let fast = ev
                    .deliveries
                    .iter()
                    .any(|d| d.path == DeliveryPath::Fast && d.uv as usize == q + 1);
                if fast {
                    f.queues.borrow_mut().insert(q);
                    f.notify.notify();
                } else {
                    f.slow.set(f.slow.get() + 1);
                }
            });
            sim.spawn(xui_router(pmds, fwd.clone(), table.clone(), app.clone()));
        }
    }
    // Let the drivers' start-up doorbells reach the NIC.
    let start = Time::ZERO + Duration::from_us(5);
    sim.run_until(start);
    let warmup = Duration::from_ns_f64(duration.as_secs_f64() * 1e9 * WARMUP_FRACTION);
    let t0 = start + warmup;
    let t1 = t0 + duration;
    let generator = if rate_pps > 0.0 {
        let line_bits = (FRAME_BYTES as u64 + PER_FRAME_OVERHEAD_BYTES) as f64 * 8.0;
        let warmup_frames = (rate_pps * warmup.as_secs_f64()).round() as u64;
        let frames = (rate_pps * duration.as_secs_f64()).round() as u64;
        Some(
            TrafficGen::start(
                &sim,
                TrafficConfig {
                    source: Source::Replay(templates(seed)?),
                    arrivals: Arrivals::Poisson,
                    rate_gbps: rate_pps * line_bits / 1e9,
                    frames,
                    warmup_frames,
                    seed,
                },
                gen_out,
                to_gen,
            )
            .map_err(|e| cfg_err(&e))?,
        )
    } else {
        None
    };
    // Snapshots at the window's edges.
    let idle_at = |sim: &Sim| {
        let mut l = core.ledger_at(core.cursor());
        let now = sim.now().max(core.cursor());
        l.charge_until(
            if spinning.get() {
                Category::Polling
            } else {
                Category::Idle
            },
            now,
        );
        (l.get(Category::Idle), now)
    };
    sim.run_until(t0);
    let fwd0 = app.borrow().get("forwarded");
    let (idle0, cursor0) = idle_at(&sim);
    sim.run_until(t1);
    let fwd1 = app.borrow().get("forwarded");
    let (idle1, cursor1) = idle_at(&sim);
    // Drain: the generator may still be sending (Poisson schedule), then
    // rings and the TX path empty.
    let offered = |g: &Option<TrafficGen>| {
        g.as_ref()
            .map(|g| {
                let s = g.stats.borrow();
                (s.warmup_sent + s.sent, s.warmup_received + s.received)
            })
            .unwrap_or((0, 0))
    };
    for _ in 0..DRAIN_STEPS {
        let t = sim.now() + DRAIN_STEP;
        sim.run_until(t);
        let (sent, back) = offered(&generator);
        let a = app.borrow();
        let n = nic.borrow().counters().clone();
        let rx_done = n.get("rx_frames") == sent && n.get("rx_delivered") == a.get("rx");
        let tx_done = back + n.sum_prefix("drop.tx_") == a.get("forwarded");
        if rx_done && tx_done {
            break;
        }
    }
    let (sent, back) = offered(&generator);
    let a = app.borrow().clone();
    let n = nic.borrow().counters().clone();
    let wire_drops = dut_out.counters().sum_prefix("drop.");
    let dropped = n.sum_prefix("drop.rx_") + a.sum_prefix("drop.");
    // Still queued: on the wire to the NIC, or written back and not yet
    // received by the router.
    let in_rings = (n.get("rx_delivered")).saturating_sub(a.get("rx"));
    let queued = sent.saturating_sub(n.get("rx_frames")) + in_rings;
    let tx_conserved = back + n.sum_prefix("drop.tx_") + wire_drops == a.get("forwarded");
    let window = (cursor1 - cursor0).as_secs_f64().max(1e-12);
    let idle = (idle1.saturating_sub(idle0)).as_secs_f64();
    let p95_ns = generator
        .as_ref()
        .map(|g| g.stats.borrow().rtt.quantile(0.95).as_ns_f64())
        .unwrap_or(0.0);
    let forwarded_window = fwd1 - fwd0;
    let tally = SimTally::of(&sim, a.get("forwarded"));
    if sent != a.get("forwarded") + dropped + queued || !tx_conserved {
        return Err(RunError::Config(format!(
            "{mech:?}, {queues} queue(s), {rate_pps:.0} pps: frames not conserved: {sent} offered, {} forwarded, {dropped} dropped, {queued} queued; {back} returned, {} TX drops",
            a.get("forwarded"),
            n.sum_prefix("drop.tx_") + wire_drops
        )));
    }
    if fwd.slow.get() > 0 {
        return Err(RunError::Config(format!(
            "{} NIC interrupts did not reach the router thread on the fast path",
            fwd.slow.get()
        )));
    }
    if a.get("error") > 0 {
        return Err(RunError::Config("the router's driver failed".into()));
    }
    run.write_artefacts(
        &format!("xui-l3fwd-{mech:?}-{queues}q-{rate_pps:.0}pps"),
        &sim,
    )?;
    sim.shutdown();
    Ok(Point {
        mpps: forwarded_window as f64 / duration.as_secs_f64() / 1e6,
        p95_ns,
        free: (idle / window).clamp(0.0, 1.0),
        dropped: dropped + n.sum_prefix("drop.tx_") + wire_drops,
        tally,
    })
}

impl Experiment for XuiL3fwd {
    fn host(&self) -> &'static str {
        "xui-server"
    }
    fn name(&self) -> &'static str {
        "xui-l3fwd"
    }
    fn reproduces(&self) -> &'static str {
        "xUI (ASPLOS '25) Fig. 8: l3fwd efficiency with busy polling vs xUI forwarded interrupts"
    }
    fn about(&self) -> &'static str {
        "An LPM router (16,000 real routes, real 64-byte frames) on one core drains 1, 4 or 8 NIC receive queues with exponential arrivals, by busy polling or on xUI forwarded device interrupts. Reports throughput, p95 latency and free cycles against load."
    }
    fn paper(&self) -> &'static str {
        "xUI (ASPLOS '25)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn checks(&self) -> &'static [CheckSpec] {
        CHECKS
    }
    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError> {
        let qs = ctx.params.u64_list("queues");
        let loads = ctx.params.f64_list("load");
        let dur = ctx.params.u64("duration_us");
        let routes = ctx.params.u64("routes");
        if qs.iter().any(|q| *q == 0 || *q > 63)
            || loads.iter().any(|l| !(0.0..=1.5).contains(l))
            || dur == 0
            || dur > 1_000_000
            || routes == 0
            || routes > 1_000_000
        {
            return Err(RunError::Config(
                "queues in 1..=63, load in 0..=1.5, duration_us in 100..=10^6, routes in 1..=10^6"
                    .into(),
            ));
        }
        let table = Lpm::random(
            routes as usize,
            8,
            &mut SimRng::new(ctx.seed).fork("routes"),
        );
        let duration = Duration::from_us(dur);
        // The polling maximum, per queue count: saturate the polling router.
        let max = ctx.sweep(&qs, |i, &q| {
            run_point(
                ctx,
                Mech::Polling,
                q as usize,
                SATURATION_PPS,
                duration.min(Duration::from_us(500)),
                &table,
                ctx.point_seed(1000 + i),
            )
        })?;
        let mut points = Vec::new();
        for (k, m) in [Mech::Polling, Mech::Xui].iter().enumerate() {
            for (qi, &q) in qs.iter().enumerate() {
                for &l in &loads {
                    points.push((k, *m, qi, q, l));
                }
            }
        }
        let res = ctx.sweep(&points, |i, &(_, m, qi, q, l)| {
            let rate = l * max[qi].mpps * 1e6;
            run_point(
                ctx,
                m,
                q as usize,
                rate,
                duration,
                &table,
                ctx.point_seed(i % (qs.len() * loads.len())),
            )
        })?;
        let names = ["polling", "xui"];
        let mut series: Vec<Series> = names
            .iter()
            .map(|n| {
                Series::new(
                    *n,
                    "load",
                    &["throughput_mpps", "p95_latency_ns", "free_cycles"],
                )
            })
            .collect();
        let mut table_pts = std::collections::BTreeMap::new();
        let saturation_drops: u64 = max.iter().map(|r| r.dropped).sum();
        for r in &max {
            ctx.record(r.tally);
        }
        for ((k, _, _, q, l), r) in points.iter().zip(&res) {
            ctx.record(r.tally);
            table_pts.insert(
                (*k, *q, (l * 100.0).round() as u64),
                (r.mpps, r.p95_ns, r.free),
            );
            series[*k].push(json!({
                "mechanism": names[*k], "queues": q, "load": l,
                "throughput_mpps": r.mpps, "p95_latency_ns": r.p95_ns, "free_cycles": r.free,
            }));
        }
        let mut checks = Vec::new();
        if let Some(point) = table_pts.get(&(1, 1, 40)) {
            checks.push(CHECKS[0].judge(point.2));
        }
        for (spec, (q, _)) in CHECKS[1..4].iter().zip(PAPER_P95_GAP) {
            let gaps: Vec<f64> = table_pts
                .iter()
                .filter(|((k, qq, l), _)| *k == 1 && *qq == q && *l > 0)
                .filter_map(|((_, qq, l), x)| {
                    table_pts
                        .get(&(0, *qq, *l))
                        .map(|p| (x.1 - p.1) / p.1.max(1.0))
                })
                .collect();
            if !gaps.is_empty() {
                checks.push(spec.judge(gaps.iter().sum::<f64>() / gaps.len() as f64));
            }
        }
        let tput: Vec<f64> = table_pts
            .iter()
            .filter(|((k, _, l), _)| *k == 1 && *l == 100)
            .filter_map(|((_, q, l), x)| {
                table_pts
                    .get(&(0, *q, *l))
                    .map(|p| (x.0 - p.0) / p.0.max(1e-9))
            })
            .collect();
        if !tput.is_empty() {
            checks.push(CHECKS[4].judge(tput.iter().sum::<f64>() / tput.len() as f64));
        }
        let mut series = split_by(series, "queues", " queue(s)");
        series.push(
            Series::new("paper: xUI, 1 queue", "load", &["free_cycles"])
                .kind(SeriesKind::Paper)
                .with(json!({"load": 0.4, "free_cycles": PAPER_XUI_FREE_1Q_40PCT})),
        );
        Ok(Outcome {
            series,
            axes: vec![
                Axis::new("load", "offered load (share of the polling maximum)"),
                Axis::new("throughput_mpps", "forwarded (Mpps)"),
                Axis::new("p95_latency_ns", "95th-percentile round trip (ns)").log(),
                Axis::new("free_cycles", "free cycles (share of the router core)"),
            ],
            checks,
            notes: vec![
                "NIC: the packetized E810-like model (RSS over the queues, descriptor rings with the frames' real bytes, write-backs and doorbells timed on PCIe Gen3 x16) and the DPDK-style driver, one queue pair per RX queue on the router's one core; frames go back out of the queue pair they came in on (the paper's one-NIC setup sends packets back to the same NIC). The generator cycles 1,024 64-byte frames to random destinations with Poisson departures; latency is its round trip from the payload stamps, p95 over frames sent in the measured window (a warm-up of 20 % of the window is excluded).".into(),
                "xUI: each queue has an MSI-X-like vector armed by a GLINT_DYN_CTL register write over PCIe; the NIC sends it once (a posted write of purpose \"interrupt\") after a write-back on an armed queue and masks it; write-backs while masked set its pending bit, and re-arming a pending vector sends it at once. The vector is registered for forwarding with the OS model (register_forward) and reaches the running router thread through the APIC's fast path; tracked delivery costs come from the pipeline model (Route::Direct). The handler drains every queue, then re-arms the vectors that fired.".into(),
                "Per-packet costs: the driver's (fitted on the Ensō echo point), the cache model's for every descriptor, mbuf and frame access, and for l3fwd 20 cycles (model choice) plus 8 cycles per LPM probe (assumption); random destinations mostly fall to the default route, so a lookup probes every prefix length present, which makes the router slow (≈9 Mpps on one queue, ≈6 Mpps on 4 or 8 at 2 GHz). The polling maximum is measured per queue count by offering 60 Mpps to the polling router; load is a fraction of it.".into(),
                format!("Every run conserves frames or fails: offered = forwarded + dropped by reason + still queued, forwarded = returned + TX drops. The saturating runs that measure the polling maximum dropped {saturation_drops} frames in all, so the count is exercised where drops happen."),
                "Latency misses: with xUI the model's p95 is above polling's by more at 1 and 4 queues than the paper reports (the paper's −8 % at 4 queues is an xUI gain the model cannot show: an interrupt can only add to a poll loop that is already waiting). The model's gap comes from the real interrupt path: after draining, the re-arm is an MMIO write that crosses PCIe before the NIC can send the next message, and that message crosses back; frames written back in that window wait for the round trip. The paper's large 8-queue gap (+65 %) does not appear: here one vector per queue is re-armed after each drain and the core runs the same drain loop as polling, so more queues do not add interrupt latency.".into(),
            ],
        })
    }
}
