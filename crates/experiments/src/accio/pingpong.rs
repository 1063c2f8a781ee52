//! The UDP ping-pong of Accio §8.3–§8.5, from every client the paper
//! compares: Linux sockets, DPDK (the poll-mode driver on the packetized
//! NIC, raw frames built and parsed by the application) and Accio (the
//! POSIX-shaped library on the connection table), on a server-class
//! client or on the FPGA prototype. The echo server is always a Linux
//! test server (§8.1), optionally slowed down (§8.5).
//!
//! What is measured per message, as §8.1 does: the client's processing
//! time, the software round trip (from just before `send` to `recv`
//! returning) minus the NIC round trip (first bit of the request leaving
//! the client's MAC to the last bit of the echo reaching it), so the
//! wire and the server drop out. DPDK's software stamp is taken before
//! the frame is built, as the paper's (favourable) DPDK stamp is. CPU use
//! is the busy share of the client thread's core over the run.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Category, Counters, Duration, Ledger, Sim, Time};
use nextio_hw::cpu::CoreCtx;
use nextio_hw::ethernet::LinkConfig;
use nextio_hw::machine::MachineSpec;
use nextio_hw::nic::packetized::{PacketizedConfig, PacketizedNic, regs};
use nextio_hw::nic::rdma::{GRH_BYTES, UdAddress};
use nextio_hw::packet::{FlowKey, Macs, build_udp_datagram, parse_udp};
use nextio_lib::accio::{Accio, LibCosts};
use nextio_lib::dpdk::{Pmd, PmdConfig};
use nextio_lib::rdma::{QueuePair, VerbsCosts};
use nextio_os::accio::{AccioConfig, AccioHost};
use nextio_os::net::{LinuxHost, LinuxNetCosts, NetConfig};
use nextio_os::rdma::QpSizes;
use nextio_os::{Host, OsCosts};

use super::common::{
    CLIENT_IP, CLIENT_MAC, ECHO_PORT, SERVER_IP, SERVER_MAC, SharedStamps, cfg, join_stamped,
    linux_server,
};
use super::rdma;
use crate::experiment::{RunContext, RunError, SimTally};

/// Where the client runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// A test server (§8.1): Xeon Gold 6240 at its observed 2 GHz.
    Server,
    /// The FPGA prototype: four 50 MHz Rocket cores, a 64-bit bus.
    Prototype,
}

/// Which client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Linux,
    Dpdk,
    Accio,
    /// Verbs UD SEND/RECV on the RDMA NIC, against a verbs echo server.
    Rdma,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Linux => "linux",
            System::Dpdk => "dpdk",
            System::Accio => "accio",
            System::Rdma => "rdma",
        }
    }
}

/// One ping-pong run.
#[derive(Clone, Copy, Debug)]
pub struct PingPong {
    pub system: System,
    pub platform: Platform,
    pub size: usize,
    pub messages: u64,
    /// Extra time the server takes before each echo (§8.5's slowdown).
    pub server_delay: Duration,
    /// The Linux client's kernel: the Table 1 test servers' (debugging
    /// on, §8.2) or a production kernel.
    pub testbed_kernel: bool,
}

/// What one run measured.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PingResult {
    /// Per message, µs (as simulated on the client's platform, unscaled).
    pub processing_us: Vec<f64>,
    pub rtt_us: Vec<f64>,
    /// The server's turnaround per message (request's last bit in to the
    /// echo's first bit out), µs.
    pub turnaround_us: Vec<f64>,
    /// Busy share of the client's core between the first send and the last
    /// receive.
    pub cpu_busy: f64,
    /// The client core's time per message by ledger category, µs.
    #[serde(with = "crate::shard::named")]
    pub breakdown_us: Vec<(&'static str, f64)>,
    pub tally: SimTally,
}

/// The client's core.
const CLIENT_CORE: usize = 0;
/// The client's port.
const CLIENT_PORT: u16 = 5000;

/// Kernel costs on a core that needs `factor` times a server's cycles.
pub fn scaled_os(os: OsCosts, factor: f64) -> OsCosts {
    let s = |c: u64| (c as f64 * factor).round() as u64;
    OsCosts {
        syscall_cycles: s(os.syscall_cycles),
        irq_cycles: s(os.irq_cycles),
        hrtimer_cycles: s(os.hrtimer_cycles),
        context_switch_cycles: s(os.context_switch_cycles),
        wakeup_cycles: s(os.wakeup_cycles),
        signal_kernel_cycles: s(os.signal_kernel_cycles),
        signal_pollution_cycles: s(os.signal_pollution_cycles),
        uthread_switch_cycles: s(os.uthread_switch_cycles),
    }
}

/// The prototype's cycle factor (CoreMark per MHz, Table 2).
pub fn rocket() -> f64 {
    nextio_os::net::costs::rocket_cycle_factor()
}

/// The message of sequence number `i`, `len` bytes.
pub fn message(i: u64, len: usize) -> Vec<u8> {
    let mut m = vec![0u8; len.max(8)];
    m[..8].copy_from_slice(&i.to_be_bytes());
    for (k, b) in m.iter_mut().enumerate().skip(8) {
        *b = ((k as u64 * 131) ^ i) as u8;
    }
    m
}

/// A Linux echo server on `s`, one thread per port, placed round robin
/// on the cores after the first (which takes the NIC's interrupt), each
/// echo after `delay`.
pub fn echo_server(s: &LinuxHost, ports: &[u16], delay: Duration) -> Result<(), RunError> {
    let cores = s.host.machine().cores().len().max(2);
    for (i, &port) in ports.iter().enumerate() {
        let p = s.host.create_process().map_err(cfg)?;
        let t = s.thread(p.pid(), 1 + i % (cores - 1)).map_err(cfg)?;
        let fd = s.stack.socket(p.pid());
        s.stack.bind(p.pid(), fd, port).map_err(cfg)?;
        let buf = p.mmap(4096, false).map_err(cfg)?;
        let (stack, disp) = (s.stack.clone(), s.disp.clone());
        s.host.sim().spawn(async move {
            if disp.wait_turn(t.tid).await.is_err() {
                return;
            }
            loop {
                let Ok(d) = stack.recvfrom(&t.ctx, t.tid, fd, buf, 2048, false).await else {
                    return;
                };
                if delay > Duration::ZERO {
                    let until = t.ctx.local_now() + delay;
                    t.ctx.spin_until_time(until).await;
                }
                if stack
                    .sendto(&t.ctx, t.tid, fd, buf, d.len, Some(d.src))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
    Ok(())
}

/// The Accio client host on `platform` with `slots` table rows per core.
pub fn accio_host(sim: &Sim, platform: Platform, slots: usize) -> Result<AccioHost, RunError> {
    accio_host_with(sim, platform, slots, 4, |_| {})
}

/// [`accio_host`] with `cores` cores and the Accio configuration changed
/// by `tweak` (ring size, attachment, streaming rings).
pub fn accio_host_with(
    sim: &Sim,
    platform: Platform,
    slots: usize,
    cores: usize,
    tweak: impl FnOnce(&mut AccioConfig),
) -> Result<AccioHost, RunError> {
    let (spec, os, costs, mut acfg) = match platform {
        Platform::Server => (
            MachineSpec::accio_server(cores),
            OsCosts::default(),
            LinuxNetCosts::production(),
            AccioConfig::server(cores, CLIENT_MAC),
        ),
        Platform::Prototype => (
            MachineSpec::accio_prototype(cores),
            scaled_os(OsCosts::default(), rocket()),
            LinuxNetCosts::production().scaled(rocket()),
            AccioConfig::prototype(cores, CLIENT_MAC),
        ),
    };
    acfg.table.slots = slots;
    tweak(&mut acfg);
    let mut net = NetConfig::new(CLIENT_IP, CLIENT_MAC, costs);
    net.neighbours.push((SERVER_IP, SERVER_MAC));
    net.irq_core = CLIENT_CORE;
    AccioHost::build(sim, spec, os, net, acfg).map_err(cfg)
}

/// The library's costs on `platform`.
pub fn lib_costs(platform: Platform) -> LibCosts {
    match platform {
        Platform::Server => LibCosts::default(),
        Platform::Prototype => LibCosts::default().scaled(rocket()),
    }
}

/// Shared by the client task and the run: send and receive stamps and
/// the core's busy time.
#[derive(Default)]
struct Log {
    sent: Vec<(u64, Time)>,
    got: Vec<(u64, Time)>,
    /// The client core's ledger at the first send and the last receive.
    window: Option<(Ledger, Ledger)>,
    failed: Option<String>,
}

type SharedLog = Rc<RefCell<Log>>;

fn seq_of(b: &[u8]) -> u64 {
    b.get(..8)
        .and_then(|s| s.try_into().ok())
        .map_or(u64::MAX, u64::from_be_bytes)
}

/// Run one ping-pong.
pub fn run(ctx: &RunContext, p: PingPong, label: &str) -> Result<PingResult, RunError> {
    let sim = ctx.new_sim();
    let log: SharedLog = Rc::new(RefCell::new(Log::default()));
    let start = Time::ZERO + Duration::from_us(20);
    // The RDMA client talks to a verbs echo server on the test server's
    // ConnectX (§8.1); every other client to the Linux echo server.
    let (to_server, to_client, _client) = if p.system == System::Rdma {
        rdma_client(&sim, p, start, &log)?
    } else {
        let server = linux_server(&sim, SERVER_IP, SERVER_MAC, (CLIENT_IP, CLIENT_MAC), 2, 0)?;
        echo_server(&server, &[ECHO_PORT], p.server_delay)?;
        let (ab, ba, client) = match p.system {
            System::Linux => linux_client(&sim, &server, p, start, &log)?,
            System::Dpdk => dpdk_client(&sim, &server, p, start, &log)?,
            _ => accio_client(&sim, &server, p, start, &log)?,
        };
        (ab, ba, Box::new((client, server)) as Box<dyn std::any::Any>)
    };
    // Generous: every message's round trip bounded by a millisecond plus
    // the server's delay, on the slowest platform.
    let per = Duration::from_ms(1) + p.server_delay;
    sim.run_until(start + per.times(p.messages + 2));
    let l = log.borrow();
    if let Some(f) = &l.failed {
        return Err(RunError::Config(format!("{label}: {f}")));
    }
    if l.got.len() as u64 != p.messages {
        return Err(RunError::Config(format!(
            "{label}: {} of {} echoes came back",
            l.got.len(),
            p.messages
        )));
    }
    let (ab, ba) = (to_server.borrow(), to_client.borrow());
    let mut processing_us = Vec::new();
    let mut rtt_us = Vec::new();
    let mut turnaround_us = Vec::new();
    for ((seq, t0), (seq2, t1)) in l.sent.iter().zip(&l.got) {
        if seq != seq2 {
            return Err(RunError::Config(format!("{label}: echo {seq2} for {seq}")));
        }
        let (Some(h0), Some(h1)) = (ab.tx.get(seq), ba.rx.get(seq)) else {
            return Err(RunError::Config(format!("{label}: no NIC stamp for {seq}")));
        };
        let sw = *t1 - *t0;
        let hw = *h1 - *h0;
        if let (Some(a), Some(b)) = (ab.rx.get(seq), ba.tx.get(seq)) {
            turnaround_us.push((*b - *a).as_us_f64());
        }
        rtt_us.push(sw.as_us_f64());
        processing_us.push(sw.as_us_f64() - hw.as_us_f64());
    }
    let mut breakdown_us = Vec::new();
    let cpu_busy = match &l.window {
        Some((la, lb)) if lb.total() > la.total() => {
            for c in Category::ALL {
                let d = lb.get(c).0.saturating_sub(la.get(c).0);
                breakdown_us.push((c.name(), d as f64 / 1e6 / p.messages as f64));
            }
            let idle = lb.get(Category::Idle).0 - la.get(Category::Idle).0;
            1.0 - idle as f64 / (lb.total().0 - la.total().0) as f64
        }
        _ => 0.0,
    };
    drop((ab, ba, l));
    ctx.write_artefacts(label, &sim)?;
    let tally = SimTally::of(&sim, 2 * p.messages);
    sim.shutdown();
    Ok(PingResult {
        processing_us,
        rtt_us,
        turnaround_us,
        cpu_busy,
        breakdown_us,
        tally,
    })
}

/// The wires' stamp logs and the client host itself:
/// it must live as long as the run (its interrupt context is held by
/// nothing else).
type Clients = (SharedStamps, SharedStamps, Box<dyn std::any::Any>);

fn note_window(log: &SharedLog, ctx: &CoreCtx, first: bool) {
    let now = ctx.core().ledger_at(ctx.local_now());
    let mut l = log.borrow_mut();
    match &mut l.window {
        Some(w) if !first => w.1 = now,
        w => *w = Some((now.clone(), now)),
    }
}

fn linux_client(
    sim: &Sim,
    server: &LinuxHost,
    p: PingPong,
    start: Time,
    log: &SharedLog,
) -> Result<Clients, RunError> {
    let c = match (p.platform, p.testbed_kernel) {
        (Platform::Server, true) => {
            linux_server(sim, CLIENT_IP, CLIENT_MAC, (SERVER_IP, SERVER_MAC), 2, 0)?
        }
        (Platform::Server, false) => {
            let mut net = NetConfig::new(CLIENT_IP, CLIENT_MAC, LinuxNetCosts::production());
            net.neighbours.push((SERVER_IP, SERVER_MAC));
            LinuxHost::build(sim, MachineSpec::accio_server(2), OsCosts::default(), net)
                .map_err(cfg)?
        }
        (Platform::Prototype, _) => {
            // Linux on the prototype: the Accio host's kernel path.
            let a = accio_host(sim, Platform::Prototype, 64)?;
            let (ab, ba) = join_stamped(
                a.host.machine(),
                a.nic.id,
                server.host.machine(),
                server.nic.id,
                LinkConfig::default(),
            )?;
            spawn_socket_client(&a.host, &a.disp, &a.stack, p, start, log)?;
            return Ok((ab, ba, Box::new(a)));
        }
    };
    let (ab, ba) = join_stamped(
        c.host.machine(),
        c.nic.id,
        server.host.machine(),
        server.nic.id,
        LinkConfig::default(),
    )?;
    spawn_socket_client(&c.host, &c.disp, &c.stack, p, start, log)?;
    Ok((ab, ba, Box::new(c)))
}

/// A blocking-socket client on the kernel stack `stack`.
fn spawn_socket_client(
    host: &Host,
    disp: &nextio_os::sched::Dispatcher,
    stack: &nextio_os::net::NetStack,
    p: PingPong,
    start: Time,
    log: &SharedLog,
) -> Result<(), RunError> {
    let proc_ = host.create_process().map_err(cfg)?;
    let t = host.process(proc_.pid()).map_err(cfg)?;
    let t = t.thread(CLIENT_CORE).map_err(cfg)?;
    disp.adopt(&t);
    let fd = stack.socket(proc_.pid());
    stack.bind(proc_.pid(), fd, CLIENT_PORT).map_err(cfg)?;
    stack
        .connect(proc_.pid(), fd, (SERVER_IP, ECHO_PORT))
        .map_err(cfg)?;
    let tx = proc_.mmap(4096, false).map_err(cfg)?;
    let rx = proc_.mmap(4096, false).map_err(cfg)?;
    let (stack, disp, log) = (stack.clone(), disp.clone(), log.clone());
    host.sim().spawn(async move {
        if disp.wait_turn(t.tid).await.is_err() {
            return;
        }
        t.ctx.spin_until_time(start).await;
        for i in 0..p.messages {
            if t.ctx.poke(tx, &message(i, p.size)).is_err() {
                return;
            }
            note_window(&log, &t.ctx, i == 0);
            log.borrow_mut().sent.push((i, t.ctx.local_now()));
            if let Err(e) = stack.sendto(&t.ctx, t.tid, fd, tx, p.size, None).await {
                log.borrow_mut().failed = Some(e.to_string());
                return;
            }
            match stack.recvfrom(&t.ctx, t.tid, fd, rx, 4096, false).await {
                Ok(_) => {}
                Err(e) => {
                    log.borrow_mut().failed = Some(e.to_string());
                    return;
                }
            }
            let mut seq = [0u8; 8];
            let _ = t.ctx.peek(rx, &mut seq);
            log.borrow_mut().got.push((seq_of(&seq), t.ctx.local_now()));
            note_window(&log, &t.ctx, false);
        }
    });
    Ok(())
}

fn dpdk_client(
    sim: &Sim,
    server: &LinuxHost,
    p: PingPong,
    start: Time,
    log: &SharedLog,
) -> Result<Clients, RunError> {
    if p.platform != Platform::Server {
        return Err(RunError::Config(
            "DPDK runs on the test servers only (the prototype has no E810)".into(),
        ));
    }
    let client = Host::new(sim, MachineSpec::accio_server(2), OsCosts::default()).map_err(cfg)?;
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
    let process = client.create_process().map_err(cfg)?;
    let thread = process.thread(CLIENT_CORE).map_err(cfg)?;
    let bar = process
        .map_bar(nic.id, 0, 0, regs::BAR0_BYTES)
        .map_err(cfg)?;
    let counters = Rc::new(RefCell::new(Counters::new()));
    let mut pmd = Pmd::new(
        thread.ctx.clone(),
        &process,
        &nic,
        bar,
        0,
        PmdConfig::default(),
        counters,
    )
    .map_err(cfg)?;
    let flow = FlowKey {
        src_ip: CLIENT_IP,
        dst_ip: SERVER_IP,
        src_port: CLIENT_PORT,
        dst_port: ECHO_PORT,
    };
    let macs = Macs {
        src: CLIENT_MAC,
        dst: SERVER_MAC,
    };
    let log = log.clone();
    let ctx = thread.ctx.clone();
    sim.spawn(async move {
        let fail = |e: String| log.borrow_mut().failed = Some(e);
        if let Err(e) = pmd.start().await {
            return fail(e.to_string());
        }
        ctx.spin_until_time(start).await;
        let mut rx = Vec::new();
        let mut bytes = Vec::new();
        for i in 0..p.messages {
            note_window(&log, &ctx, i == 0);
            log.borrow_mut().sent.push((i, ctx.local_now()));
            // The application builds the datagram's headers itself.
            let Ok(frame) = build_udp_datagram(macs, flow, &message(i, p.size)) else {
                return fail("frame".into());
            };
            let Some(m) = pmd.alloc() else {
                return fail("no mbuf".into());
            };
            if let Err(e) = pmd.write_packet(m, &frame) {
                return fail(e.to_string());
            }
            if let Err(e) = pmd.request_udp_checksum(m) {
                return fail(e.to_string());
            }
            let mut tx = vec![m];
            while !tx.is_empty() {
                if let Err(e) = pmd.tx_burst(&mut tx).await {
                    return fail(e.to_string());
                }
            }
            // Busy-poll for the echo.
            loop {
                match pmd.rx_burst(&mut rx, 8).await {
                    Ok(0) => pmd.wait_rx().await,
                    Ok(_) => break,
                    Err(e) => return fail(e.to_string()),
                }
            }
            for m in rx.drain(..) {
                if pmd.read_packet(m, &mut bytes).is_err() {
                    return fail("read".into());
                }
                pmd.free(m);
                let seq = parse_udp(&bytes)
                    .ok()
                    .map_or(u64::MAX, |v| seq_of(&bytes[v.payload_offset..]));
                log.borrow_mut().got.push((seq, ctx.local_now()));
            }
            note_window(&log, &ctx, false);
        }
    });
    Ok((ab, ba, Box::new((client, nic))))
}

fn accio_client(
    sim: &Sim,
    server: &LinuxHost,
    p: PingPong,
    start: Time,
    log: &SharedLog,
) -> Result<Clients, RunError> {
    let a = accio_host(sim, p.platform, 64)?;
    let (ab, ba) = join_stamped(
        a.host.machine(),
        a.nic.id,
        server.host.machine(),
        server.nic.id,
        LinkConfig::default(),
    )?;
    let proc_ = a.host.create_process().map_err(cfg)?;
    let t = a.thread(proc_.pid(), CLIENT_CORE).map_err(cfg)?;
    let tx = proc_.mmap(4096, false).map_err(cfg)?;
    let rx = proc_.mmap(4096, false).map_err(cfg)?;
    let (os, log) = (a.os.clone(), log.clone());
    let costs = lib_costs(p.platform);
    sim.spawn(async move {
        let fail = |e: String| log.borrow_mut().failed = Some(e);
        if os.dispatcher().wait_turn(t.tid).await.is_err() {
            return;
        }
        let mut lib = Accio::new(os, proc_.pid(), t.tid, t.ctx.clone(), costs);
        let fd = lib.socket();
        if let Err(e) = lib.bind(fd, CLIENT_PORT) {
            return fail(e.to_string());
        }
        if let Err(e) = lib.connect(fd, (SERVER_IP, ECHO_PORT)) {
            return fail(e.to_string());
        }
        if let Err(e) = lib.accelerate(fd).await {
            return fail(e.to_string());
        }
        lib.ctx().spin_until_time(start).await;
        for i in 0..p.messages {
            if lib.ctx().poke(tx, &message(i, p.size)).is_err() {
                return fail("poke".into());
            }
            let c = lib.ctx().clone();
            note_window(&log, &c, i == 0);
            log.borrow_mut().sent.push((i, c.local_now()));
            if let Err(e) = lib.send(fd, tx, p.size).await {
                return fail(e.to_string());
            }
            if let Err(e) = lib.recv(fd, rx, 4096).await {
                return fail(e.to_string());
            }
            let mut seq = [0u8; 8];
            let _ = lib.ctx().peek(rx, &mut seq);
            let c = lib.ctx().clone();
            log.borrow_mut().got.push((seq_of(&seq), c.local_now()));
            note_window(&log, &c, false);
        }
    });
    Ok((ab, ba, Box::new(a)))
}

fn rdma_client(sim: &Sim, p: PingPong, start: Time, log: &SharedLog) -> Result<Clients, RunError> {
    if p.platform != Platform::Server {
        return Err(RunError::Config(
            "RDMA runs on the test servers only (the prototype has no ConnectX)".into(),
        ));
    }
    let (client, cdrv) = rdma::rdma_host(sim, CLIENT_MAC, CLIENT_IP, 2)?;
    let (server, sdrv) = rdma::rdma_host(sim, SERVER_MAC, SERVER_IP, 2)?;
    let echo = rdma::echo_server(&server, &sdrv, 1, p.server_delay, CLIENT_MAC)?;
    let (ab, ba) = rdma::join(&client, &cdrv, &server, &sdrv)?;
    let process = client.create_process().map_err(cfg)?;
    let thread = process.thread(CLIENT_CORE).map_err(cfg)?;
    let (qp, mr) = rdma::open(&cdrv, &process, QpSizes::new(4, 4), 2 * rdma::SLOT_BYTES)?;
    let dest = UdAddress {
        mac: SERVER_MAC,
        ip: SERVER_IP,
        qpn: echo[0],
        qkey: rdma::QKEY,
    };
    let (tx, rx) = (mr.va, mr.va.offset(rdma::SLOT_BYTES));
    let log = log.clone();
    let ctx = thread.ctx.clone();
    sim.spawn(async move {
        let fail = |e: String| log.borrow_mut().failed = Some(e);
        let mut q = match QueuePair::new(ctx.clone(), qp, VerbsCosts::default()) {
            Ok(q) => q,
            Err(e) => return fail(e.to_string()),
        };
        ctx.spin_until_time(start).await;
        for i in 0..p.messages {
            if ctx.poke(tx, &message(i, p.size)).is_err() {
                return fail("poke".into());
            }
            note_window(&log, &ctx, i == 0);
            log.borrow_mut().sent.push((i, ctx.local_now()));
            if let Err(e) = rdma::ping(&mut q, &mr, tx, rx, p.size as u32, dest).await {
                return fail(e);
            }
            let mut seq = [0u8; 8];
            let _ = ctx.peek(rx.offset(GRH_BYTES), &mut seq);
            log.borrow_mut().got.push((seq_of(&seq), ctx.local_now()));
            note_window(&log, &ctx, false);
        }
    });
    Ok((ab, ba, Box::new((client, cdrv, server, sdrv))))
}
