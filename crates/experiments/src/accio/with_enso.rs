//! `accio-with-enso` — beyond the paper: Accio's I/O Connection Table and
//! wake-only-when-blocked in front of Ensō-style streaming rings, against
//! each alone.
//!
//! The combined design (what was chosen, and why). Accio keeps, per
//! connection, a row in the table (5-tuple lookup on the NIC, owned by an
//! address space, a hardware ready queue, an interrupt only when the owner
//! is blocked). Its RX ring was already one contiguous byte ring of
//! records (an 8-byte length/peer header and the payload,
//! [`nextio_hw::accio::ring`], shared by the NIC and the library), so the
//! smallest honest change is not a new layout but Ensō's granularity: the
//! NIC's `rx_stream` mode writes a batch's records back to back in one DMA
//! transfer and posts `RX_TAIL` once per batch — a batch ends when the
//! engine holds no further frame of the connection, at `batch` records, or
//! at the ring's end — and the library's `recv_batch` consumes everything
//! up to the tail it read with one `RX_HEAD` store. Ensō's own pipe format
//! (whole frames padded to 64 B) was not reused: Accio strips the headers
//! on the NIC, which is the point of its offload. A blocked owner is still
//! woken through the table, once per batch.
//!
//! The workload, on the same server machine (`accio-server`, the NIC in
//! its PCIe slot for all three so bus bytes compare): a stream of
//! datagrams of each size at the 100 GbE line rate into one socket, whose
//! sink thread (core 1) copies each payload into its buffer; a
//! latency-sensitive socket (core 2) receiving a 64 B probe every 10 µs,
//! its one-way latency taken from the datagram's time on the wire to the
//! receive call's return; and `idle_sockets` sockets (cores 3…) on which
//! nothing arrives. A quiet trial sends the probes alone. Systems: (a)
//! Accio alone (one `recv` per datagram, `RX_TAIL` per record), (b) Ensō
//! alone (its library and NIC with reactive notifications; every socket
//! is a pipe with its own notification buffer, polled by its thread, since
//! Ensō has no blocking wait), (c) the combination. Reported: datagrams
//! and payload per second in the middle half of the stream, the sink
//! core's working (neither idle nor polling) cycles per datagram,
//! notifications and I/O interrupts per datagram delivered, PCIe bytes
//! (both directions, the NIC's link) per datagram delivered, the busy
//! fraction of the idle sockets' cores, and the probe's latency.
//!
//! A datagram received twice, out of order or on the wrong socket is a run
//! error (drops are counted, and show as gaps).
//!
//! Every check is model only (no paper measured this); each claim states
//! the expectation declared before the run, and the notes say whether the
//! run met it.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Category, Duration, Ledger, Mailbox, Sim, Time};
use nextio_hw::cpu::CoreCtx;
use nextio_hw::device::{Device as _, DeviceId};
use nextio_hw::ethernet::{LinkConfig, PER_FRAME_OVERHEAD_BYTES, Wire};
use nextio_hw::machine::MachineSpec;
use nextio_hw::mem::VirtAddr;
use nextio_hw::nic::enso::{EnsoNic, EnsoNicConfig, FallbackPolicy, NotificationPolicy};
use nextio_hw::packet::{FlowKey, Frame, Macs, build_udp_datagram};
use nextio_lib::accio::{Accio, LibCosts};
use nextio_lib::enso::Device;
use nextio_os::{Host, OsCosts};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{CLIENT_IP, CLIENT_MAC, PAPER, SERVER_IP, SERVER_MAC, cfg};
use super::multi::quantile;
use super::pingpong::{Platform, accio_host_with, message};
use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, Series, SimTally,
};
use crate::params::{ParamKind, ParamSpec};

pub struct AccioWithEnso;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "duration_us",
        ParamKind::U64,
        "400",
        "µs",
        "how long the stream is offered, 40 to 20000",
    )
    .quick("80")
    .int(40, 20_000),
    ParamSpec::new(
        "sizes",
        ParamKind::U64List,
        "64,256,1024",
        "B",
        "UDP payload sizes of the stream (the checks are at the first)",
    )
    .quick("64")
    .int(64, 1024)
    .items(1, 8),
    ParamSpec::new(
        "idle_sockets",
        ParamKind::U64,
        "2",
        "",
        "sockets (one thread and core each) on which nothing arrives, 1 to 8",
    )
    .int(1, 8),
    ParamSpec::new(
        "batch",
        ParamKind::U64,
        "32",
        "datagrams",
        "most records per RX_TAIL post and per recv_batch in the combined design, 2 to 256",
    )
    .int(2, 256),
    ParamSpec::new(
        "ring_kib",
        ParamKind::U64,
        "64",
        "KiB",
        "each Accio ring (alone and combined; Ensō's pipes are its 2 MiB), 8 to 1024, a power of two",
    )
    .int(8, 1024),
];

const fn check(id: &'static str, claim: &'static str, unit: &'static str) -> CheckSpec {
    CheckSpec::new(id, claim, unit, Origin::Simulated)
}

const CHECKS: &[CheckSpec] = &[
    check(
        "accio-mpps",
        "Accio alone: datagrams/s one sink receives from a line-rate stream of the first size, millions. Expected: the lowest of the three (an RX_TAIL load and an RX_HEAD store, uncached, per datagram)",
        "Mpps",
    ),
    check(
        "enso-mpps",
        "Ensō alone: the same. Expected: above Accio alone (one notification and one head update per batch)",
        "Mpps",
    ),
    check(
        "combined-mpps",
        "Accio + Ensō-style rings: the same. Expected: above Accio alone and within 25 % of Ensō alone",
        "Mpps",
    ),
    check(
        "accio-cycles-per-dgram",
        "Accio alone: the sink core's working cycles (neither idle nor polling) per datagram. Expected: the highest of the three",
        "cycles",
    ),
    check(
        "enso-cycles-per-dgram",
        "Ensō alone: the same. Expected: below Accio alone",
        "cycles",
    ),
    check(
        "combined-cycles-per-dgram",
        "Accio + Ensō-style rings: the same. Expected: below Accio alone",
        "cycles",
    ),
    check(
        "accio-notifications-per-dgram",
        "Accio alone: RX_TAIL posts per datagram delivered. Expected: 1 (one per record, as §5 describes)",
        "ratio",
    ),
    check(
        "enso-notifications-per-dgram",
        "Ensō alone: RX notifications per datagram delivered. Expected: below 1 (reactive: one outstanding per pipe)",
        "ratio",
    ),
    check(
        "combined-notifications-per-dgram",
        "Accio + Ensō-style rings: RX_TAIL posts per datagram delivered. Expected: below 1 (one per batch)",
        "ratio",
    ),
    check(
        "combined-interrupts-per-dgram",
        "Accio + Ensō-style rings: I/O interrupts per datagram delivered under the stream. Expected: below 0.1 (only a blocked owner is interrupted, and the busy sink rarely blocks)",
        "ratio",
    ),
    check(
        "accio-bus-bytes-per-dgram",
        "Accio alone: PCIe bytes on the NIC's link (both directions) per datagram delivered. Expected: above the combined design's (one transfer and one post per record)",
        "B",
    ),
    check(
        "enso-bus-bytes-per-dgram",
        "Ensō alone: the same. Expected: above the combined design's (whole frames padded to 64 B)",
        "B",
    ),
    check(
        "combined-bus-bytes-per-dgram",
        "Accio + Ensō-style rings: the same. Expected: the lowest of the three",
        "B",
    ),
    check(
        "enso-idle-core-busy",
        "Ensō alone: busy fraction of the cores whose sockets receive nothing. Expected: about 1 (each thread polls its notification buffer)",
        "fraction",
    ),
    check(
        "combined-idle-core-busy",
        "Accio + Ensō-style rings: the same. Expected: below 0.01 (the threads block; nothing wakes them)",
        "fraction",
    ),
    check(
        "accio-quiet-latency-us",
        "Accio alone: a 64 B probe's median one-way latency on a quiet host (wire to recv's return). Expected: above Ensō's (an interrupt wakes the blocked owner)",
        "µs",
    ),
    check(
        "enso-quiet-latency-us",
        "Ensō alone: the same. Expected: the lowest of the three (a core polls)",
        "µs",
    ),
    check(
        "combined-quiet-latency-us",
        "Accio + Ensō-style rings: the same. Expected: within 0.5 µs of Accio alone (the same wake-up; a lone probe ends its batch at once, and its post waits for its data to land)",
        "µs",
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum System {
    Accio,
    Enso,
    Combined,
}

impl System {
    const ALL: [System; 3] = [System::Accio, System::Enso, System::Combined];
    fn name(self) -> &'static str {
        match self {
            System::Accio => "accio",
            System::Enso => "enso",
            System::Combined => "accio+enso",
        }
    }
    /// The prefix of its checks.
    fn id(self) -> &'static str {
        match self {
            System::Accio => "accio",
            System::Enso => "enso",
            System::Combined => "combined",
        }
    }
}

const PEER_PORT: u16 = 7000;
const STREAM_PORT: u16 = 5000;
const PROBE_PORT: u16 = 5001;
const IDLE_PORT: u16 = 5100;
const SINK_CORE: usize = 1;
const PROBE_CORE: usize = 2;
const IDLE_CORE: usize = 3;
const PROBE_BYTES: usize = 64;
/// assumption: a probe every 10 µs, sparse enough that each finds its
/// thread waiting (blocked or polling), as a latency-sensitive request does.
const PROBE_GAP: Duration = Duration::from_us(10);
/// After the sockets are accelerated (set-up takes simulated time).
const START: Duration = Duration::from_us(50);
/// How often an Ensō thread on an idle socket has its spin charged (a
/// measurement step, not a cost: the core spins throughout).
const IDLE_POLL_STEP: Duration = Duration::from_us(1);
/// Ethernet, IPv4 and UDP headers ahead of the payload in an Ensō pipe.
const HEADERS_BYTES: u64 = 14 + 20 + 8;

#[derive(Clone, Copy, Debug)]
struct Trial {
    system: System,
    /// The stream's payload size; `None`: the probes alone.
    size: Option<usize>,
}

#[derive(Clone, Copy)]
struct Knobs {
    duration: Duration,
    idle: usize,
    batch: usize,
    ring_bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Point {
    mpps: f64,
    gbps: f64,
    offered_mpps: f64,
    cycles_per_dgram: f64,
    sink_busy: f64,
    idle_core_busy: f64,
    notifications_per_dgram: f64,
    interrupts_per_dgram: f64,
    bus_bytes_per_dgram: f64,
    delivered: u64,
    dropped: u64,
    probes: u64,
    probe_p50_us: f64,
    probe_p99_us: f64,
    tally: Option<SimTally>,
}

/// What the receiving threads saw.
#[derive(Default)]
struct Log {
    in_window: u64,
    /// The last sequence number the sink and the probe socket received:
    /// each datagram arrives at most once and in order (drops are gaps).
    last: [Option<u64>; 2],
    probe_us: Vec<f64>,
    errors: Vec<String>,
    ledgers: Option<(Vec<Ledger>, Vec<Ledger>)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Sink,
    Probe,
    Idle,
}

/// Who counts what a thread receives.
#[derive(Clone)]
struct Recorder {
    log: Rc<RefCell<Log>>,
    role: Role,
    window: (Time, Time),
}

impl Recorder {
    /// Datagram `seq` became the application's at `now`.
    fn got(&self, seq: u64, now: Time) {
        let mut l = self.log.borrow_mut();
        let k = match self.role {
            Role::Sink => 0,
            Role::Probe => 1,
            Role::Idle => {
                l.errors
                    .push(format!("datagram {seq} reached an idle socket"));
                return;
            }
        };
        if l.last[k].is_some_and(|p| seq <= p) {
            l.errors
                .push(format!("datagram {seq} received twice or out of order"));
        }
        l.last[k] = Some(seq);
        match self.role {
            Role::Sink if now >= self.window.0 && now < self.window.1 => l.in_window += 1,
            Role::Probe => {
                let sent = probe_sent(seq);
                l.probe_us.push(now.since(sent).as_us_f64());
            }
            _ => {}
        }
    }
    fn fail(&self, e: impl std::fmt::Display) {
        self.log.borrow_mut().errors.push(e.to_string());
    }
}

/// When probe `seq` was put on the wire.
fn probe_sent(seq: u64) -> Time {
    Time::ZERO + START + PROBE_GAP.times(seq) + Duration::from_ps(PROBE_GAP.ps() / 2)
}

/// The sequence number at the start of a payload copied to `va`.
fn seq_at(ctx: &CoreCtx, va: VirtAddr) -> u64 {
    let mut b = [0u8; 8];
    // Read for the measurement only: not charged to the thread.
    if ctx.peek(va, &mut b).is_err() {
        return u64::MAX;
    }
    u64::from_be_bytes(b)
}

fn flow(port: u16) -> FlowKey {
    FlowKey {
        src_ip: SERVER_IP,
        dst_ip: CLIENT_IP,
        src_port: PEER_PORT,
        dst_port: port,
    }
}

/// The sockets of a trial: (core, port, role).
fn sockets(idle: usize) -> Vec<(usize, u16, Role)> {
    let mut v = vec![
        (SINK_CORE, STREAM_PORT, Role::Sink),
        (PROBE_CORE, PROBE_PORT, Role::Probe),
    ];
    v.extend((0..idle).map(|k| (IDLE_CORE + k, IDLE_PORT + k as u16, Role::Idle)));
    v
}

/// One payload slot of the receive buffer per datagram of a batch.
fn slot_bytes(size: usize) -> usize {
    size.max(PROBE_BYTES).next_multiple_of(64)
}

/// The receiving side as built: how to read its counters afterwards.
struct Built {
    host: Host,
    nic: DeviceId,
    wire: Rc<Wire>,
    /// Datagrams delivered to rings or pipes, notifications, interrupts,
    /// drops.
    counts: Box<dyn Fn() -> (u64, u64, u64, u64)>,
}

fn build_accio(
    sim: &Sim,
    system: System,
    k: Knobs,
    slot: usize,
    rec: &dyn Fn(Role) -> Recorder,
) -> Result<Built, RunError> {
    let combined = system == System::Combined;
    let cores = IDLE_CORE + k.idle;
    let a = accio_host_with(sim, Platform::Server, 64, cores, |c| {
        c.nic_on_pcie = true;
        c.ring_bytes = k.ring_bytes;
        if combined {
            c.nic.rx_stream = true;
            c.nic.rx_tail_batch = k.batch as u32;
        }
    })?;
    let link = LinkConfig::default();
    let discard: Rc<Mailbox<Frame>> = Rc::new(Mailbox::new(sim));
    let (_out, wire) = a
        .host
        .machine()
        .wire_port(a.nic.id, 0, discard, link, link)
        .map_err(cfg)?;
    for (core, port, role) in sockets(k.idle) {
        let p = a.host.create_process().map_err(cfg)?;
        let t = a.thread(p.pid(), core).map_err(cfg)?;
        let buf = p.mmap((slot * k.batch) as u64, false).map_err(cfg)?;
        let (os, r, batch) = (a.os.clone(), rec(role), k.batch);
        sim.spawn(async move {
            if os.dispatcher().wait_turn(t.tid).await.is_err() {
                return r.fail("the thread never ran");
            }
            let mut lib = Accio::new(os, p.pid(), t.tid, t.ctx.clone(), LibCosts::default());
            let fd = lib.socket();
            if let Err(e) = lib.bind(fd, port) {
                return r.fail(e);
            }
            if let Err(e) = lib.connect(fd, (SERVER_IP, PEER_PORT)) {
                return r.fail(e);
            }
            if let Err(e) = lib.accelerate(fd).await {
                return r.fail(e);
            }
            let mut n = 0usize;
            loop {
                if combined {
                    match lib.recv_batch(fd, buf, slot, batch).await {
                        Ok(got) => {
                            let now = lib.ctx().local_now();
                            for i in 0..got.len() {
                                r.got(seq_at(lib.ctx(), buf.offset((i * slot) as u64)), now);
                            }
                        }
                        Err(e) => return r.fail(e),
                    }
                } else {
                    let at = buf.offset(((n % batch) * slot) as u64);
                    match lib.recv(fd, at, slot).await {
                        Ok(_) => r.got(seq_at(lib.ctx(), at), lib.ctx().local_now()),
                        Err(e) => return r.fail(e),
                    }
                    n += 1;
                }
            }
        });
    }
    let (nic, os) = (a.nic.clone(), a.os.clone());
    Ok(Built {
        nic: a.nic.id,
        host: a.host.clone(),
        wire,
        counts: Box::new(move || {
            let c = nic.borrow().all_counters();
            (
                c.get("offload_rx_delivered"),
                c.get("rx_tail_posts"),
                os.counters().get("io_interrupts"),
                c.sum_prefix("drop."),
            )
        }),
    })
}

fn build_enso(
    sim: &Sim,
    k: Knobs,
    slot: usize,
    rec: &dyn Fn(Role) -> Recorder,
) -> Result<Built, RunError> {
    let host = Host::new(
        sim,
        MachineSpec::accio_server(IDLE_CORE + k.idle),
        OsCosts::default(),
    )
    .map_err(cfg)?;
    let nic = EnsoNic::new(EnsoNicConfig {
        policy: NotificationPolicy::Reactive,
        fallback: FallbackPolicy::Hash,
        ..EnsoNicConfig::default()
    })
    .map_err(cfg)?;
    let nic = host.attach_nic(nic).map_err(cfg)?;
    let link = LinkConfig::default();
    let discard: Rc<Mailbox<Frame>> = Rc::new(Mailbox::new(sim));
    let (_out, wire) = host
        .machine()
        .wire_port(nic.id, 0, discard, link, link)
        .map_err(cfg)?;
    let process = host.create_process().map_err(cfg)?;
    let batch_bytes = nextio_apps::echo::costs().enso_batch_bytes.get();
    for (core, port, role) in sockets(k.idle) {
        let t = process.thread(core).map_err(cfg)?;
        let mut dev = Device::open(
            t.ctx,
            &process,
            nic.clone(),
            nextio_lib::enso::config().notification_entries,
        )
        .map_err(cfg)?;
        dev.alloc_rx_pipe(Some(flow(port)), false).map_err(cfg)?;
        let buf = process.mmap((slot * k.batch) as u64, false).map_err(cfg)?;
        let (r, batch) = (rec(role), k.batch);
        sim.spawn(async move {
            let mut n = 0usize;
            let mut data = vec![0u8; slot];
            loop {
                let p = match dev.next_rx_pipe_to_recv().await {
                    Ok(Some(p)) => p,
                    Ok(None) if role == Role::Idle => {
                        // A thread whose socket never receives spins for
                        // ever; polled in 1 µs steps so its core's ledger
                        // shows the spin as it goes (a wait is charged
                        // when it ends).
                        while !dev.has_activity() {
                            let until = dev.ctx().local_now() + IDLE_POLL_STEP;
                            dev.ctx().spin_until_time(until).await;
                        }
                        continue;
                    }
                    Ok(None) => {
                        dev.wait_for_activity().await;
                        continue;
                    }
                    Err(e) => return r.fail(e),
                };
                let step = async {
                    let b = dev.peek(p, batch_bytes)?;
                    let mut off = 0;
                    while let Some(pkt) = dev.packet_at(&b, off)? {
                        let len = (pkt.len.saturating_sub(HEADERS_BYTES) as usize).min(slot);
                        dev.read(
                            p,
                            pkt.start + HEADERS_BYTES,
                            &mut data[..len],
                            Category::Application,
                        )?;
                        let at = buf.offset(((n % batch) * slot) as u64);
                        dev.ctx().store(at, &data[..len], Category::Application)?;
                        r.got(seq_at(dev.ctx(), at), dev.ctx().local_now());
                        n += 1;
                        off += pkt.padded_len;
                    }
                    dev.confirm_bytes(p, off)?;
                    dev.free(p, off).await?;
                    Ok::<(), nextio_lib::enso::EnsoError>(())
                };
                if let Err(e) = step.await {
                    return r.fail(e);
                }
            }
        });
    }
    let handle = nic.clone();
    Ok(Built {
        nic: nic.id,
        host,
        wire,
        counts: Box::new(move || {
            let c = handle.borrow().counters().clone();
            // Ensō's threads poll: there is no interrupt to count.
            (
                c.get("appended"),
                c.get("notifications.rx"),
                0,
                c.sum_prefix("drop."),
            )
        }),
    })
}

fn run_trial(ctx: &RunContext, t: Trial, k: Knobs) -> Result<Point, RunError> {
    let sim = ctx.new_sim();
    let size = t.size.unwrap_or(PROBE_BYTES);
    let slot = slot_bytes(size);
    let start = Time::ZERO + START;
    let end = start + k.duration;
    let quarter = Duration::from_ps(k.duration.ps() / 4);
    let window = (start + quarter, start + quarter.times(3));
    let log = Rc::new(RefCell::new(Log::default()));
    let rec = |role| Recorder {
        log: log.clone(),
        role,
        window,
    };
    let b = match t.system {
        System::Enso => build_enso(&sim, k, slot, &rec)?,
        s => build_accio(&sim, s, k, slot, &rec)?,
    };
    let macs = Macs {
        src: SERVER_MAC,
        dst: CLIENT_MAC,
    };
    let link = LinkConfig::default();
    // The stream, back to back at the line rate.
    let mut offered = 0;
    let mut offered_mpps = 0.0;
    if let Some(size) = t.size {
        let probe = build_udp_datagram(macs, flow(STREAM_PORT), &message(0, size)).map_err(cfg)?;
        let spacing = link.rate.duration_for_bytes(
            Frame::new(probe, 0).frame_bytes() as u64 + PER_FRAME_OVERHEAD_BYTES,
        );
        offered = k.duration.ps() / spacing.ps().max(1);
        offered_mpps = 1e6 / spacing.as_us_f64() / 1e6;
        let (sim2, wire) = (sim.clone(), b.wire.clone());
        sim.spawn(async move {
            for i in 0..offered {
                sim2.sleep_until(start + spacing.times(i)).await;
                if let Ok(f) = build_udp_datagram(macs, flow(STREAM_PORT), &message(i, size)) {
                    let _ = wire.send(Frame::new(f, i));
                }
            }
        });
    }
    // The probes, between the stream's frames.
    let probes = k.duration.ps() / PROBE_GAP.ps();
    {
        let (sim2, wire) = (sim.clone(), b.wire.clone());
        sim.spawn(async move {
            for j in 0..probes {
                sim2.sleep_until(probe_sent(j)).await;
                if let Ok(f) = build_udp_datagram(macs, flow(PROBE_PORT), &message(j, PROBE_BYTES))
                {
                    let _ = wire.send(Frame::new(f, u64::MAX - j));
                }
            }
        });
    }
    // Every core's ledger at the window's ends.
    {
        let (sim2, host, log) = (sim.clone(), b.host.clone(), log.clone());
        sim.spawn(async move {
            let snap = |now: Time| -> Vec<Ledger> {
                host.machine()
                    .cores()
                    .iter()
                    .map(|c| c.ledger_at(now.max(c.cursor())))
                    .collect()
            };
            sim2.sleep_until(window.0).await;
            let a = snap(sim2.now());
            sim2.sleep_until(window.1).await;
            let z = snap(sim2.now());
            log.borrow_mut().ledgers = Some((a, z));
        });
    }
    sim.run_until(end + Duration::from_us(50));
    let (delivered, notes, irqs, dropped) = (b.counts)();
    let (up, down) = b
        .host
        .machine()
        .fabric()
        .link_counters(b.nic)
        .ok_or_else(|| RunError::Config("the NIC has no PCIe link".into()))?;
    let log = log.borrow();
    if let Some(e) = log.errors.first() {
        return Err(RunError::Config(format!("{}: {e}", t.system.name())));
    }
    let Some((la, lz)) = &log.ledgers else {
        return Err(RunError::Config("the window never closed".into()));
    };
    let ghz = b.host.machine().cores()[SINK_CORE].freq().ghz_f64();
    let span = |c: usize, cat: Option<Category>| -> f64 {
        let d = |l: &Ledger| match cat {
            Some(cat) => l.get(cat).ps(),
            None => l.total().ps(),
        };
        // Signed: a spin still under way at the window's start is idle in
        // the first copy and polling in the second, so one category may
        // shrink while the sum stays exact.
        d(&lz[c]) as f64 - d(&la[c]) as f64
    };
    let busy = |c: usize| {
        let total = span(c, None);
        if total > 0.0 {
            1.0 - span(c, Some(Category::Idle)) / total
        } else {
            0.0
        }
    };
    let working_ps = span(SINK_CORE, None)
        - span(SINK_CORE, Some(Category::Idle))
        - span(SINK_CORE, Some(Category::Polling));
    let secs = (window.1 - window.0).as_secs_f64();
    let n = log.in_window;
    let per = |x: u64| {
        if delivered > 0 {
            x as f64 / delivered as f64
        } else {
            0.0
        }
    };
    let mut lat = log.probe_us.clone();
    lat.sort_by(f64::total_cmp);
    let p = Point {
        mpps: n as f64 / secs / 1e6,
        gbps: n as f64 * size as f64 * 8.0 / secs / 1e9,
        offered_mpps,
        cycles_per_dgram: if n > 0 {
            working_ps * ghz / 1000.0 / n as f64
        } else {
            0.0
        },
        sink_busy: busy(SINK_CORE),
        idle_core_busy: (0..k.idle).map(|i| busy(IDLE_CORE + i)).sum::<f64>() / k.idle as f64,
        notifications_per_dgram: per(notes),
        interrupts_per_dgram: per(irqs),
        bus_bytes_per_dgram: per(up.wire_bytes() + down.wire_bytes()),
        delivered,
        dropped,
        probes: lat.len() as u64,
        probe_p50_us: quantile(&lat, 0.5),
        probe_p99_us: quantile(&lat, 0.99),
        tally: Some(SimTally::of(&sim, offered + probes)),
    };
    drop(log);
    let label = format!(
        "accio-with-enso-{}-{}",
        t.system.id(),
        t.size.map_or("quiet".to_string(), |s| format!("{s}b"))
    );
    ctx.write_artefacts(&label, &sim)?;
    sim.shutdown();
    Ok(p)
}

impl Experiment for AccioWithEnso {
    fn host(&self) -> &'static str {
        "accio-server"
    }
    fn name(&self) -> &'static str {
        "accio-with-enso"
    }
    fn reproduces(&self) -> &'static str {
        "beyond Accio (NINeS '26) and Ensō (OSDI '23): Accio's connection table and wake-ups in front of Ensō-style streaming rings, against each alone"
    }
    fn about(&self) -> &'static str {
        "A line-rate UDP stream into one socket, a latency probe on another and idle sockets beside them, on Accio alone, Ensō alone and Accio with streaming rings (one transfer and one RX_TAIL per batch, recv_batch with one RX_HEAD store). Reports rate, sink cycles, notifications, interrupts and PCIe bytes per datagram, idle cores' busy time and the probe's latency."
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
        let ring_kib = ctx.params.u64("ring_kib");
        if !ring_kib.is_power_of_two() {
            return Err(RunError::Config(format!(
                "ring_kib={ring_kib}: a ring is a power of two of bytes"
            )));
        }
        let k = Knobs {
            duration: Duration::from_us(ctx.params.u64("duration_us")),
            idle: ctx.params.u64("idle_sockets") as usize,
            batch: ctx.params.u64("batch") as usize,
            ring_bytes: ring_kib * 1024,
        };
        let sizes: Vec<usize> = ctx
            .params
            .u64_list("sizes")
            .iter()
            .map(|&s| s as usize)
            .collect();
        let mut trials = Vec::new();
        for system in System::ALL {
            trials.push(Trial { system, size: None });
            trials.extend(sizes.iter().map(|&s| Trial {
                system,
                size: Some(s),
            }));
        }
        let res = ctx.sweep(&trials, |_, &t| run_trial(ctx, t, k))?;
        let at = |system: System, size: Option<usize>| {
            trials
                .iter()
                .zip(&res)
                .find(|(t, _)| t.system == system && t.size == size)
                .map(|(_, p)| p)
        };
        for tally in res.iter().filter_map(|p| p.tally) {
            ctx.record(tally);
        }
        let mut series = Vec::new();
        for system in System::ALL {
            let mut s = Series::new(system.name(), "payload_bytes", &["mpps"]);
            for (t, p) in trials.iter().zip(&res) {
                if t.system != system {
                    continue;
                }
                let Some(size) = t.size else { continue };
                s.push(json!({
                    "payload_bytes": size, "mpps": p.mpps, "gbps": p.gbps,
                    "offered_mpps": p.offered_mpps, "cycles_per_dgram": p.cycles_per_dgram,
                    "sink_busy": p.sink_busy, "idle_core_busy": p.idle_core_busy,
                    "notifications_per_dgram": p.notifications_per_dgram,
                    "interrupts_per_dgram": p.interrupts_per_dgram,
                    "bus_bytes_per_dgram": p.bus_bytes_per_dgram,
                    "delivered": p.delivered, "dropped": p.dropped,
                    "probe_p50_us": p.probe_p50_us, "probe_p99_us": p.probe_p99_us,
                }));
            }
            series.push(s);
        }
        let mut quiet = Series::new("quiet probe", "system", &["probe_p50_us"]);
        for system in System::ALL {
            if let Some(p) = at(system, None) {
                quiet.push(json!({
                    "system": system.name(), "probe_p50_us": p.probe_p50_us,
                    "probe_p99_us": p.probe_p99_us, "probes": p.probes,
                    "interrupts_per_dgram": p.interrupts_per_dgram,
                    "idle_core_busy": p.idle_core_busy,
                }));
            }
        }
        series.push(quiet);
        let first = sizes.first().copied();
        let mut checks = Vec::new();
        let spec = |id: String| CHECKS.iter().find(|c| c.id == id);
        let mut judge = |id: String, v: f64| {
            if let Some(c) = spec(id) {
                checks.push(c.judge(v));
            }
        };
        for system in System::ALL {
            let id = system.id();
            if let Some(p) = at(system, first) {
                judge(format!("{id}-mpps"), p.mpps);
                judge(format!("{id}-cycles-per-dgram"), p.cycles_per_dgram);
                judge(
                    format!("{id}-notifications-per-dgram"),
                    p.notifications_per_dgram,
                );
                judge(format!("{id}-interrupts-per-dgram"), p.interrupts_per_dgram);
                judge(format!("{id}-bus-bytes-per-dgram"), p.bus_bytes_per_dgram);
                judge(format!("{id}-idle-core-busy"), p.idle_core_busy);
            }
            if let Some(p) = at(system, None) {
                judge(format!("{id}-quiet-latency-us"), p.probe_p50_us);
            }
        }
        let notes = expectations(&|s, z| at(s, z).cloned(), first);
        Ok(Outcome {
            series,
            axes: vec![
                Axis::new("payload_bytes", "UDP payload of the stream (B)"),
                Axis::new("mpps", "datagrams received by the sink (Mpps)"),
                Axis::new("system", "system"),
                Axis::new("probe_p50_us", "probe one-way latency, median (µs)"),
            ],
            checks,
            notes,
        })
    }
}

/// Whether each declared expectation held, in words.
fn expectations(
    at: &dyn Fn(System, Option<usize>) -> Option<Point>,
    first: Option<usize>,
) -> Vec<String> {
    let mut notes = vec![
        "All three systems run on the same accio-server machine with the NIC in its PCIe slot. Accio alone calls recv once per datagram (an uncached RX_HEAD store each, an RX_TAIL load whenever it has consumed all it saw); the combined design's NIC writes a batch's records in one transfer and posts RX_TAIL once, and its sink calls recv_batch (one RX_HEAD store per batch). Ensō alone polls: every socket's thread spins on its own notification buffer, so idle sockets cost a core each; Accio's and the combined design's idle threads block and cost nothing.".into(),
        "The combined design's RX_TAIL post waits until its batch's data has landed: the fabric orders a device's posted writes to memory, not a write to memory against one to the table, and a large batch would otherwise be announced before its bytes arrive. This costs the combined design one post flight of latency that PCIe's own ordering would not; Accio alone's per-record posts are not held (their records are small), as before.".into(),
    ];
    let (Some(a), Some(e), Some(c)) = (
        at(System::Accio, first),
        at(System::Enso, first),
        at(System::Combined, first),
    ) else {
        return notes;
    };
    let held = |ok: bool| if ok { "held" } else { "did not hold" };
    notes.push(format!(
        "Expectations at {} B: combined above Accio alone in rate ({:.2} vs {:.2} Mpps): {}; Ensō above Accio alone ({:.2}): {}; combined within 25 % of Ensō: {}; combined cycles per datagram below Accio's ({:.0} vs {:.0}): {}; Ensō's below Accio's ({:.0}): {}.",
        first.unwrap_or(0),
        c.mpps,
        a.mpps,
        held(c.mpps > a.mpps),
        e.mpps,
        held(e.mpps > a.mpps),
        held((c.mpps - e.mpps).abs() <= 0.25 * e.mpps),
        c.cycles_per_dgram,
        a.cycles_per_dgram,
        held(c.cycles_per_dgram < a.cycles_per_dgram),
        e.cycles_per_dgram,
        held(e.cycles_per_dgram < a.cycles_per_dgram),
    ));
    notes.push(format!(
        "Notifications per datagram: Accio {:.3} (expected 1: {}), Ensō {:.3} (below 1: {}), combined {:.3} (below 1: {}); combined interrupts per datagram {:.4} (below 0.1: {}). PCIe bytes per datagram: Accio {:.0}, Ensō {:.0}, combined {:.0} (combined lowest: {}). Idle cores busy: Ensō {:.2} (about 1: {}), combined {:.4} (below 0.01: {}).",
        a.notifications_per_dgram,
        held((a.notifications_per_dgram - 1.0).abs() < 0.01),
        e.notifications_per_dgram,
        held(e.notifications_per_dgram < 1.0),
        c.notifications_per_dgram,
        held(c.notifications_per_dgram < 1.0),
        c.interrupts_per_dgram,
        held(c.interrupts_per_dgram < 0.1),
        a.bus_bytes_per_dgram,
        e.bus_bytes_per_dgram,
        c.bus_bytes_per_dgram,
        held(
            c.bus_bytes_per_dgram < a.bus_bytes_per_dgram
                && c.bus_bytes_per_dgram < e.bus_bytes_per_dgram
        ),
        e.idle_core_busy,
        held(e.idle_core_busy > 0.95),
        c.idle_core_busy,
        held(c.idle_core_busy < 0.01),
    ));
    if let (Some(qa), Some(qe), Some(qc)) = (
        at(System::Accio, None),
        at(System::Enso, None),
        at(System::Combined, None),
    ) {
        notes.push(format!(
            "Quiet probe latency (median): Accio {:.2} µs, Ensō {:.2} µs, combined {:.2} µs; Ensō lowest: {}; Accio above Ensō: {}; combined within 0.5 µs of Accio: {}.",
            qa.probe_p50_us,
            qe.probe_p50_us,
            qc.probe_p50_us,
            held(qe.probe_p50_us <= qa.probe_p50_us && qe.probe_p50_us <= qc.probe_p50_us),
            held(qa.probe_p50_us > qe.probe_p50_us),
            held((qc.probe_p50_us - qa.probe_p50_us).abs() <= 0.5),
        ));
    }
    notes
}
