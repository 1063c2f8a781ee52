//! Accio end to end: a client host with the connection table and the
//! Accio NIC, its library on top, against a Linux echo host on one wire.
//! Data comes back intact through the rings; the thread sleeps in the one
//! blocking call and the table's interrupt wakes it; no system call is on
//! the fast path; hostile processes are stopped by the core; runs repeat.
//! A thread that migrates takes its row with it: the old core's table
//! lets it go, wake-ups interrupt the new core, nothing is lost or
//! doubled (also for datagrams that arrive while the row moves), and a
//! hostile process left on the old core only misses and is refused.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use nextio_engine::{Duration, Sim, Time};
use nextio_hw::cpu::MmioAccessError;
use nextio_hw::device::Device as _;
use nextio_hw::ethernet::LinkConfig;
use nextio_hw::fabric::{GuardFault, MmioError};
use nextio_hw::machine::{MachineSpec, join};
use nextio_lib::accio::{Accio, LibCosts, LibError};
use nextio_os::OsCosts;
use nextio_os::accio::{AccioConfig, AccioError, AccioHost};
use nextio_os::net::{LinuxHost, LinuxNetCosts, NetConfig};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PORT: u16 = 7000;

fn accio_client(sim: &Sim, cores: usize, slots: usize) -> AccioHost {
    let mut net = NetConfig::new(CLIENT_IP, CLIENT_MAC, LinuxNetCosts::production());
    net.neighbours.push((SERVER_IP, SERVER_MAC));
    let mut cfg = AccioConfig::server(cores, CLIENT_MAC);
    cfg.table.slots = slots;
    AccioHost::build(
        sim,
        MachineSpec::accio_server(cores),
        OsCosts::default(),
        net,
        cfg,
    )
    .unwrap()
}

fn linux_server(sim: &Sim) -> LinuxHost {
    let mut net = NetConfig::new(SERVER_IP, SERVER_MAC, LinuxNetCosts::production());
    net.neighbours.push((CLIENT_IP, CLIENT_MAC));
    LinuxHost::build(sim, MachineSpec::accio_server(2), OsCosts::default(), net).unwrap()
}

/// An echo server on `s` answering on `ports`, one thread each on core 1.
fn echo(s: &LinuxHost, ports: &[u16]) {
    for &port in ports {
        let p = s.host.create_process().unwrap();
        let t = s.thread(p.pid(), 1).unwrap();
        let fd = s.stack.socket(p.pid());
        s.stack.bind(p.pid(), fd, port).unwrap();
        let buf = p.mmap(4096, false).unwrap();
        let (stack, disp) = (s.stack.clone(), s.disp.clone());
        s.host.sim().spawn(async move {
            disp.wait_turn(t.tid).await.unwrap();
            loop {
                let d = stack
                    .recvfrom(&t.ctx, t.tid, fd, buf, 2048, false)
                    .await
                    .unwrap();
                stack
                    .sendto(&t.ctx, t.tid, fd, buf, d.len, Some(d.src))
                    .await
                    .unwrap();
            }
        });
    }
}

fn pair(sim: &Sim, slots: usize) -> (AccioHost, LinuxHost) {
    let c = accio_client(sim, 2, slots);
    let s = linux_server(sim);
    join(
        c.host.machine(),
        c.nic.id,
        0,
        s.host.machine(),
        s.nic.id,
        0,
        LinkConfig::default(),
    )
    .unwrap();
    (c, s)
}

fn message(i: u64, len: usize) -> Vec<u8> {
    let mut m = vec![0u8; len];
    m[..8].copy_from_slice(&i.to_be_bytes());
    for (k, b) in m.iter_mut().enumerate().skip(8) {
        *b = ((k as u64 * 7) ^ i) as u8;
    }
    m
}

/// Ping-pong `n` messages of `len` from one accelerated socket.
fn ping_pong(len: usize, n: u64) -> (Vec<Vec<u8>>, AccioHost, LinuxHost, Sim) {
    let sim = Sim::new();
    let (c, s) = pair(&sim, 64);
    echo(&s, &[PORT]);
    let p = c.host.create_process().unwrap();
    let t = c.thread(p.pid(), 1).unwrap();
    let tx = p.mmap(4096, false).unwrap();
    let rx = p.mmap(4096, false).unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let (os, g) = (c.os.clone(), got.clone());
    sim.spawn(async move {
        os.dispatcher().wait_turn(t.tid).await.unwrap();
        t.ctx
            .spin_until_time(Time::ZERO + Duration::from_us(5))
            .await;
        let mut lib = Accio::new(os, p.pid(), t.tid, t.ctx.clone(), LibCosts::default());
        let fd = lib.socket();
        lib.bind(fd, 5000).unwrap();
        lib.connect(fd, (SERVER_IP, PORT)).unwrap();
        lib.accelerate(fd).await.unwrap();
        for i in 0..n {
            lib.ctx().poke(tx, &message(i, len)).unwrap();
            assert_eq!(lib.send(fd, tx, len).await.unwrap(), len);
            let k = lib.recv(fd, rx, 4096).await.unwrap();
            let mut back = vec![0u8; k];
            lib.ctx().peek(rx, &mut back).unwrap();
            g.borrow_mut().push(back);
        }
    });
    sim.run_until(Time::ZERO + Duration::from_ms(20));
    let r = got.borrow().clone();
    (r, c, s, sim)
}

#[test]
fn ping_pong_through_the_rings_is_intact_and_wakes_through_the_table() {
    for len in [8usize, 64, 1024, 1472] {
        let (got, c, _s, sim) = ping_pong(len, 40);
        assert_eq!(got.len(), 40, "{len} B: every echo back");
        for (i, g) in got.iter().enumerate() {
            assert_eq!(*g, message(i as u64, len), "{len} B, message {i}");
        }
        let nic = c.nic.borrow().all_counters();
        assert_eq!(nic.get("offload_rx_delivered"), 40, "{nic:?}");
        assert_eq!(nic.get("offload_tx_sent"), 40, "{nic:?}");
        assert_eq!(nic.sum_prefix("drop."), 0, "{nic:?}");
        assert_eq!(nic.get("offload_to_kernel"), 0);
        // Nothing took the kernel path on the client.
        assert_eq!(c.stack.counters().get("rx_delivered"), 0);
        let t = c.table.borrow().counters().clone();
        assert!(t.get("io_interrupts") > 0, "{t:?}");
        let k = c.os.counters();
        assert!(k.get("waits_blocked") > 0, "{k:?}");
        sim.shutdown();
    }
}

#[test]
fn hostile_processes_cannot_reach_another_row() {
    let sim = Sim::new();
    let (c, s) = pair(&sim, 64);
    echo(&s, &[PORT]);
    let victim = c.host.create_process().unwrap();
    let vt = c.thread(victim.pid(), 1).unwrap();
    let thief = c.host.create_process().unwrap();
    let tt = c.thread(thief.pid(), 1).unwrap();
    let out = Rc::new(RefCell::new(Vec::new()));
    let conn_cell = Rc::new(std::cell::Cell::new(None));
    let vfd_cell = Rc::new(std::cell::Cell::new(None));
    {
        let (os, cc, fc) = (c.os.clone(), conn_cell.clone(), vfd_cell.clone());
        sim.spawn(async move {
            os.dispatcher().wait_turn(vt.tid).await.unwrap();
            let mut lib = Accio::new(
                os,
                victim.pid(),
                vt.tid,
                vt.ctx.clone(),
                LibCosts::default(),
            );
            let fd = lib.socket();
            lib.bind(fd, 5001).unwrap();
            lib.connect(fd, (SERVER_IP, PORT)).unwrap();
            cc.set(Some(lib.accelerate(fd).await.unwrap()));
            fc.set(Some(fd));
            // The victim sleeps waiting for data that never comes.
            let buf = VirtAddrHelper::scratch(&lib);
            let _ = lib.recv(fd, buf, 64).await;
        });
    }
    {
        let (os, cc, fc, o) = (
            c.os.clone(),
            conn_cell.clone(),
            vfd_cell.clone(),
            out.clone(),
        );
        let table = c.table.clone();
        sim.spawn(async move {
            os.dispatcher().wait_turn(tt.tid).await.unwrap();
            tt.ctx
                .spin_until_time(Time::ZERO + Duration::from_us(50))
                .await;
            let conn = cc.get().unwrap();
            let mut lib = Accio::new(
                os.clone(),
                thief.pid(),
                tt.tid,
                tt.ctx.clone(),
                LibCosts::default(),
            );
            // Its own socket, so the table's user window is mapped here.
            let fd = lib.socket();
            lib.bind(fd, 5002).unwrap();
            lib.connect(fd, (SERVER_IP, PORT)).unwrap();
            let mine = lib.accelerate(fd).await.unwrap();
            let row = |f| os.row_field_va(thief.pid(), conn, f).unwrap();
            // Read, move the pointers of, or redirect the victim's row.
            use nextio_hw::accio::regs::row as r;
            let mut results = Vec::new();
            results.push(
                tt.ctx
                    .mmio_read(
                        row(r::RX_TAIL),
                        8,
                        "x",
                        nextio_engine::Category::Application,
                    )
                    .await
                    .is_err(),
            );
            results.push(
                tt.ctx
                    .mmio_write(row(r::RX_HEAD), &0u64.to_le_bytes(), "x")
                    .await
                    .is_err(),
            );
            results.push(
                tt.ctx
                    .mmio_write(row(r::TX_TAIL), &64u64.to_le_bytes(), "x")
                    .await
                    .is_err(),
            );
            // Its own row: it may not re-aim its rings (the NIC's DMA).
            let own = |f| os.row_field_va(thief.pid(), mine, f).unwrap();
            results.push(
                tt.ctx
                    .mmio_write(own(r::RX_RING_ADDR), &0u64.to_le_bytes(), "x")
                    .await
                    .is_err(),
            );
            results.push(
                tt.ctx
                    .mmio_write(own(r::STATE), &0u64.to_le_bytes(), "x")
                    .await
                    .is_err(),
            );
            // Neither the kernel's scheduler port nor the NIC's window.
            let base = os.row_field_va(thief.pid(), 0, 0).unwrap();
            use nextio_hw::accio::regs as ict;
            results.push(
                tt.ctx
                    .mmio_read(
                        base.offset(ict::kernel_reg(0, ict::kernel::SCHED_READ)),
                        8,
                        "x",
                        nextio_engine::Category::Application,
                    )
                    .await
                    .is_err(),
            );
            // It cannot accelerate the victim's socket, nor refill its row.
            let vfd = fc.get().unwrap();
            results.push(os.accelerate(&tt.ctx, tt.tid, vfd).await.is_err());
            results.push(os.refill(&tt.ctx, tt.tid, conn).await.is_err());
            results.push(
                os.wait(&tt.ctx, tt.tid, conn, nextio_os::accio::Dir::Rx, 0)
                    .await
                    .is_err(),
            );
            o.borrow_mut().extend(results);
            let _ = table;
        });
    }
    sim.run_until(Time::ZERO + Duration::from_ms(1));
    let r = out.borrow();
    assert_eq!(r.len(), 9);
    for (i, refused) in r.iter().enumerate() {
        assert!(*refused, "hostile access {i} was not refused");
    }
    // Nothing of the victim's row moved: it still sleeps on RX.
    let st = c.table.borrow().snapshot();
    let conn = conn_cell.get().unwrap();
    let (core, slot) = c.os.resident(conn).unwrap();
    let rowv = st.cores[core].slots[slot];
    use nextio_hw::accio::{regs, table};
    assert_eq!(table::get(&rowv, regs::row::RX_HEAD), 0);
    assert_eq!(table::get(&rowv, regs::row::TX_TAIL), 0);
    assert!(table::get(&rowv, regs::row::STATE) & regs::state::RX_SUSPENDED != 0);
    assert_eq!(c.nic.borrow().all_counters().get("offload_tx_frames"), 0);
    sim.shutdown();
}

/// A scratch buffer in the library's process (the test's own helper).
struct VirtAddrHelper;
impl VirtAddrHelper {
    fn scratch(lib: &Accio) -> nextio_hw::mem::VirtAddr {
        // The RX ring's first page is readable by the owner; tests read
        // into it only to exercise the call.
        lib.rings(nextio_os::net::Fd(3))
            .map(|r| r.tx.va)
            .unwrap_or(nextio_hw::mem::VirtAddr(0))
    }
}

#[test]
fn runs_repeat_exactly() {
    let a = ping_pong(64, 20);
    let b = ping_pong(64, 20);
    assert_eq!(a.0, b.0);
    assert_eq!(
        a.1.nic.borrow().all_counters(),
        b.1.nic.borrow().all_counters()
    );
    assert_eq!(a.3.events(), b.3.events());
    let _ = LibError::Corrupt;
}

/// Ping-pong over `sockets` accelerated sockets of one thread, round
/// robin, on a table of `slots` slots per core.
fn multiplexed(
    sockets: usize,
    slots: usize,
    rounds: u64,
) -> (Vec<(usize, Vec<u8>)>, AccioHost, Sim) {
    let sim = Sim::new();
    let (c, s) = pair(&sim, slots);
    let ports: Vec<u16> = (0..sockets as u16).map(|i| PORT + i).collect();
    echo(&s, &ports);
    let p = c.host.create_process().unwrap();
    let t = c.thread(p.pid(), 1).unwrap();
    let tx = p.mmap(4096, false).unwrap();
    let rx = p.mmap(4096, false).unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let (os, g) = (c.os.clone(), got.clone());
    sim.spawn(async move {
        os.dispatcher().wait_turn(t.tid).await.unwrap();
        t.ctx
            .spin_until_time(Time::ZERO + Duration::from_us(5))
            .await;
        let mut lib = Accio::new(os, p.pid(), t.tid, t.ctx.clone(), LibCosts::default());
        let mut fds = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let fd = lib.socket();
            lib.bind(fd, 5000 + i as u16).unwrap();
            lib.connect(fd, (SERVER_IP, *port)).unwrap();
            lib.accelerate(fd).await.unwrap();
            fds.push(fd);
        }
        for r in 0..rounds {
            // Send on every socket, then collect every echo: replies land
            // for rows evicted meanwhile (NIC-side misses).
            for (i, fd) in fds.iter().enumerate() {
                let m = message(r * 1000 + i as u64, 32);
                lib.ctx().poke(tx, &m).unwrap();
                lib.send(*fd, tx, 32).await.unwrap();
            }
            for (i, fd) in fds.iter().enumerate() {
                let k = lib.recv(*fd, rx, 4096).await.unwrap();
                let mut back = vec![0u8; k];
                lib.ctx().peek(rx, &mut back).unwrap();
                g.borrow_mut().push((i, back));
            }
        }
    });
    sim.run_until(Time::ZERO + Duration::from_ms(50));
    let r = got.borrow().clone();
    (r, c, sim)
}

#[test]
fn more_sockets_than_slots_multiplex_the_table_and_lose_nothing() {
    let (got, c, sim) = multiplexed(16, 4, 5);
    assert_eq!(got.len(), 16 * 5);
    for (n, (i, back)) in got.iter().enumerate() {
        let r = n as u64 / 16;
        assert_eq!(
            *back,
            message(r * 1000 + *i as u64, 32),
            "round {r} socket {i}"
        );
    }
    let k = c.os.counters();
    assert!(k.get("evictions") > 0 && k.get("refills") > 0, "{k:?}");
    let nic = c.nic.borrow().all_counters();
    assert!(
        nic.get("row_misses") > 0,
        "NIC-side misses happened: {nic:?}"
    );
    // Every datagram the NIC took for a connection reached its ring or
    // the kernel path, where the fallback socket received it.
    assert_eq!(nic.sum_prefix("drop."), 0, "{nic:?}");
    assert_eq!(
        nic.get("offload_rx_delivered") + c.stack.counters().get("rx_delivered"),
        16 * 5
    );
    // At most the table's slots are resident per core.
    let st = c.table.borrow().snapshot();
    for t in &st.cores {
        let valid = t
            .slots
            .iter()
            .filter(|r| nextio_hw::accio::table::conn_of(r).is_some())
            .count();
        assert!(valid <= 4);
    }
    sim.shutdown();
}

#[test]
fn multiplexing_is_deterministic() {
    let a = multiplexed(8, 2, 3);
    let b = multiplexed(8, 2, 3);
    assert_eq!(a.0, b.0);
    assert_eq!(a.1.os.counters(), b.1.os.counters());
    assert_eq!(a.2.events(), b.2.events());
}

/// A connection whose owner never reads, flooded at 100 Mpps from the
/// wire: its ring fills, the engine holds no more than its per-connection
/// buffer, and every frame is delivered, taken by the kernel path or
/// counted under a drop reason.
#[test]
fn a_flooded_connection_that_never_reads_holds_a_bounded_backlog() {
    use nextio_hw::packet::build_udp;
    const FLOOD: u64 = 20_000;
    let sim = Sim::new();
    let (c, _s) = pair(&sim, 64);
    let p = c.host.create_process().unwrap();
    let t = c.thread(p.pid(), 1).unwrap();
    let os = c.os.clone();
    sim.spawn(async move {
        os.dispatcher().wait_turn(t.tid).await.unwrap();
        let mut lib = Accio::new(os, p.pid(), t.tid, t.ctx.clone(), LibCosts::default());
        let fd = lib.socket();
        lib.bind(fd, 5000).unwrap();
        lib.connect(fd, (SERVER_IP, PORT)).unwrap();
        lib.accelerate(fd).await.unwrap();
        // The owner never reads again.
    });
    let start = Time::ZERO + Duration::from_us(200);
    for i in 0..FLOOD {
        let bytes = build_udp(server_macs(), from_server(5000), &message(i, 64), 128).unwrap();
        deliver_at(&c, start + Duration::from_ns(10 * i), i, bytes);
    }
    let mut most_held = 0;
    for step in 1..=40 {
        sim.run_until(start + Duration::from_us(25 * step));
        most_held = most_held.max(c.nic.borrow().rx_held());
    }
    let nic = c.nic.borrow();
    let n = nic.all_counters();
    let hold = nic.config().conn_hold_frames as u64;
    // Frames still in the engine's pipeline (one every 10 ns) are held too.
    let in_pipe = nic.config().engine.latency(128 + 4).ps().div_ceil(10_000) + 1;
    assert_eq!(n.get("offload_rx_frames"), FLOOD, "{n:?}");
    assert!(n.get("offload_rx_delivered") > 0, "{n:?}");
    assert!(n.get("drop.offload_rx_hold_full") > 0, "{n:?}");
    assert!(
        most_held <= hold + in_pipe,
        "held {most_held} frames, more than the connection's {hold} and {in_pipe} in the pipeline"
    );
    assert_eq!(
        n.get("offload_rx_frames"),
        n.get("offload_rx_delivered")
            + n.get("offload_to_kernel")
            + n.sum_prefix("drop.offload_rx_")
            + nic.rx_held(),
        "{n:?}"
    );
    drop(nic);
    sim.shutdown();
}

/// The echo host's MACs, as frames from it to the client carry them.
fn server_macs() -> nextio_hw::packet::Macs {
    nextio_hw::packet::Macs {
        src: SERVER_MAC,
        dst: CLIENT_MAC,
    }
}

/// The flow from the echo host's `PORT` to the client's `dst_port`.
fn from_server(dst_port: u16) -> nextio_hw::packet::FlowKey {
    nextio_hw::packet::FlowKey {
        src_ip: SERVER_IP,
        dst_ip: CLIENT_IP,
        src_port: PORT,
        dst_port,
    }
}

/// Put frame `bytes` on the client NIC's wire at `at`, as if sent then.
fn deliver_at(c: &AccioHost, at: Time, id: u64, bytes: Vec<u8>) {
    let sink = c.host.machine().fabric().port_sink(c.nic.id, 0).unwrap();
    c.host
        .sim()
        .at(at, move || {
            sink.deliver(
                at,
                nextio_hw::packet::Frame {
                    bytes,
                    id,
                    tx_timestamp_ps: at.ps(),
                },
            )
        })
        .unwrap();
}

/// Datagrams the migrating reader gets before, during and after its move.
const MIG_BEFORE: u64 = 6;
const MIG_DURING: u64 = 6;
const MIG_AFTER: u64 = 6;

/// A hostile process's attempts on another's row: the core's answer to
/// a load of `RX_TAIL`, a store of `RX_HEAD` and one of `TX_TAIL` (`None`
/// if it let one through, `Err` for anything but a guard fault), and the
/// kernel's to the miss trap.
struct Attacks {
    faults: [Option<Result<GuardFault, String>>; 3],
    refill: Result<(), AccioError>,
}

/// What one migration run showed.
struct Migration {
    c: AccioHost,
    sim: Sim,
    conn: u32,
    /// Each datagram the reader received, with the core it ran on then.
    got: Vec<(usize, Vec<u8>)>,
    /// Every I/O interrupt: when, and to which core.
    io_irqs: Vec<(Time, usize)>,
    /// What the hostile process's attempts came to, once it made them.
    attacks: Option<Attacks>,
    /// Core 0's busy time when the move starts and just before the
    /// hostile thread is woken.
    core0_busy: (Duration, Duration),
    migrated_at: Time,
    attack_at: Time,
}

/// A reader (process V, core 0) blocks on its accelerated socket; at
/// `migrated_at` the load balancer on core 1 moves it there. Datagrams
/// come before, (if `during`) while its row moves, and after. A hostile
/// process H on core 0, asleep on its own accelerated socket, is woken
/// by a datagram at `attack_at` and goes for V's row from the old core.
fn migration(during: bool) -> Migration {
    use nextio_hw::accio::regs::row as r;
    use nextio_hw::packet::build_udp_datagram;
    let sim = Sim::new();
    let (c, _s) = pair(&sim, 64);
    let victim = c.host.create_process().unwrap();
    let vt = c.thread(victim.pid(), 0).unwrap();
    let thief = c.host.create_process().unwrap();
    let tt = c.thread(thief.pid(), 0).unwrap();
    let vbuf = victim.mmap(4096, false).unwrap();
    let tbuf = thief.mmap(4096, false).unwrap();
    let io_irqs = Rc::new(RefCell::new(Vec::new()));
    {
        let (ir, s) = (io_irqs.clone(), sim.clone());
        c.host.on_interrupt(move |ev| {
            if ev.vector == nextio_os::accio::IO_VECTOR {
                ir.borrow_mut().push((s.now(), ev.core));
            }
        });
    }
    let total = MIG_BEFORE + if during { MIG_DURING } else { 0 } + MIG_AFTER;
    let conn_cell = Rc::new(std::cell::Cell::new(None));
    let got = Rc::new(RefCell::new(Vec::new()));
    {
        let (os, cc, g) = (c.os.clone(), conn_cell.clone(), got.clone());
        sim.spawn(async move {
            os.dispatcher().wait_turn(vt.tid).await.unwrap();
            let mut lib = Accio::new(
                os,
                victim.pid(),
                vt.tid,
                vt.ctx.clone(),
                LibCosts::default(),
            );
            let fd = lib.socket();
            lib.bind(fd, 5000).unwrap();
            lib.connect(fd, (SERVER_IP, PORT)).unwrap();
            cc.set(Some(lib.accelerate(fd).await.unwrap()));
            for _ in 0..total {
                let k = lib.recv(fd, vbuf, 4096).await.unwrap();
                let mut back = vec![0u8; k];
                lib.ctx().peek(vbuf, &mut back).unwrap();
                g.borrow_mut().push((lib.ctx().core().id(), back));
            }
            // Then it sleeps on the empty ring for good.
            let _ = lib.recv(fd, vbuf, 4096).await;
        });
    }
    let attacks = Rc::new(RefCell::new(None));
    {
        let (os, cc, out) = (c.os.clone(), conn_cell.clone(), attacks.clone());
        sim.spawn(async move {
            os.dispatcher().wait_turn(tt.tid).await.unwrap();
            let mut lib = Accio::new(
                os.clone(),
                thief.pid(),
                tt.tid,
                tt.ctx.clone(),
                LibCosts::default(),
            );
            // Its own socket: the table's user window is mapped in it and
            // it sleeps on its row until the test wakes it.
            let fd = lib.socket();
            lib.bind(fd, 5002).unwrap();
            lib.connect(fd, (SERVER_IP, PORT)).unwrap();
            lib.accelerate(fd).await.unwrap();
            lib.recv(fd, tbuf, 4096).await.unwrap();
            let ctx = lib.ctx().clone();
            let conn = cc.get().unwrap();
            let field = |f| os.row_field_va(thief.pid(), conn, f).unwrap();
            // What the core said to an access: `None` if it went through.
            let fault = |r: Result<(), MmioAccessError>| match r {
                Ok(()) => None,
                Err(MmioAccessError::Mmio(MmioError::Guarded { fault, .. })) => Some(Ok(fault)),
                Err(other) => Some(Err(other.to_string())),
            };
            let read = ctx
                .mmio_read(
                    field(r::RX_TAIL),
                    8,
                    "x",
                    nextio_engine::Category::Application,
                )
                .await
                .map(|_| ());
            let head = ctx
                .mmio_write(field(r::RX_HEAD), &0u64.to_le_bytes(), "x")
                .await
                .map(|_| ());
            let tail = ctx
                .mmio_write(field(r::TX_TAIL), &64u64.to_le_bytes(), "x")
                .await
                .map(|_| ());
            // The miss trap a real fault takes: the kernel must not bring
            // another process's row into this core for it.
            let refill = os.refill(&ctx, tt.tid, conn).await.map(|_| ());
            *out.borrow_mut() = Some(Attacks {
                faults: [fault(read), fault(head), fault(tail)],
                refill,
            });
        });
    }
    // Before: V reads on core 0, waking there each time.
    let mut id = 0;
    let send = |at: Time, port: u16, id: &mut u64| {
        let bytes =
            build_udp_datagram(server_macs(), from_server(port), &message(*id, 64)).unwrap();
        deliver_at(&c, at, *id, bytes);
        *id += 1;
    };
    for i in 0..MIG_BEFORE {
        send(Time::ZERO + Duration::from_us(100 + 5 * i), 5000, &mut id);
    }
    let migrated_at = Time::ZERO + Duration::from_us(200);
    // During: frames every 250 ns from the move on, so some reach the
    // NIC while the row is out of every table or just in the new one.
    if during {
        for i in 0..MIG_DURING {
            send(migrated_at + Duration::from_ns(250 * i), 5000, &mut id);
        }
    }
    // After: V sleeps on core 1 and is woken there.
    for i in 0..MIG_AFTER {
        send(migrated_at + Duration::from_us(50 + 5 * i), 5000, &mut id);
    }
    let attack_at = migrated_at + Duration::from_us(150);
    send(attack_at, 5002, &mut id);
    {
        let (os, tid) = (c.os.clone(), vt.tid);
        let kctx = c.disp.core_kernel_ctx(1).unwrap();
        let k = c.host.kernel().clone();
        sim.spawn(async move {
            kctx.spin_until_time(migrated_at).await;
            // Only a thread off its core moves; V sleeps on its ring now.
            assert_eq!(
                k.borrow().state(tid).unwrap(),
                nextio_os::ThreadState::Blocked
            );
            os.migrate(&kctx, tid, 1).await.unwrap();
        });
    }
    let busy0 = |c: &AccioHost, sim: &Sim| {
        let l = c.host.machine().core(0).unwrap().ledger_at(sim.now());
        Duration(l.total().0 - l.get(nextio_engine::Category::Idle).0)
    };
    sim.run_until(migrated_at);
    let b0 = busy0(&c, &sim);
    sim.run_until(Time(attack_at.ps() - 1));
    let b1 = busy0(&c, &sim);
    sim.run_until(attack_at + Duration::from_us(100));
    let conn = conn_cell.get().unwrap();
    let got = got.borrow().clone();
    let io_irqs = io_irqs.borrow().clone();
    let attacks = attacks.borrow_mut().take();
    Migration {
        c,
        sim,
        conn,
        got,
        io_irqs,
        attacks,
        core0_busy: (b0, b1),
        migrated_at,
        attack_at,
    }
}

/// What every migration run must show: each datagram once, intact and
/// in order; the row only on the new core; wake-ups there after the
/// move; the hostile process on the old core refused at each step.
fn check_migration(m: &Migration, during: bool) {
    let before = MIG_BEFORE as usize;
    let total = before + if during { MIG_DURING as usize } else { 0 } + MIG_AFTER as usize;
    assert_eq!(m.got.len(), total, "every datagram arrived, once");
    for (i, (_, back)) in m.got.iter().enumerate() {
        assert_eq!(*back, message(i as u64, 64), "datagram {i}");
    }
    assert!(m.got[..before].iter().all(|(core, _)| *core == 0));
    assert!(
        m.got[total - MIG_AFTER as usize..]
            .iter()
            .all(|(core, _)| *core == 1),
        "{:?}",
        m.got.iter().map(|g| g.0).collect::<Vec<_>>()
    );
    let nic = m.c.nic.borrow().all_counters();
    assert_eq!(nic.get("offload_rx_delivered"), total as u64 + 1, "{nic:?}");
    assert_eq!(nic.sum_prefix("drop."), 0, "{nic:?}");
    assert_eq!(nic.get("offload_to_kernel"), 0, "{nic:?}");
    assert_eq!(m.c.stack.counters().get("rx_delivered"), 0);
    // The row left core 0's table: only the new core holds it.
    let st = m.c.table.borrow().snapshot();
    assert_eq!(st.cores[0].find(m.conn), None, "core 0 released the row");
    let slot = st.cores[1].find(m.conn).expect("core 1 holds the row");
    assert_eq!(m.c.os.resident(m.conn), Some((1, slot)));
    assert_eq!(m.c.os.counters().get("migrations"), 1);
    // Wake-ups before the move interrupted core 0; once the row is in
    // core 1's table (the move is over well within 20 µs), only core 1
    // until the hostile thread's own datagram wakes it on core 0.
    assert!(
        m.io_irqs
            .iter()
            .any(|(t, core)| *t < m.migrated_at && *core == 0)
    );
    let after: Vec<_> = m
        .io_irqs
        .iter()
        .filter(|(t, _)| *t >= m.migrated_at + Duration::from_us(20) && *t < m.attack_at)
        .collect();
    assert!(!after.is_empty(), "{:?}", m.io_irqs);
    assert!(after.iter().all(|(_, core)| *core == 1), "{after:?}");
    // The hostile process on the old core: its loads and stores of V's
    // row miss there (the row is gone) and the miss trap refuses it.
    let a = m.attacks.as_ref().expect("the hostile thread ran");
    for (i, f) in a.faults.iter().enumerate() {
        assert_eq!(*f, Some(Ok(GuardFault::Miss)), "access {i}");
    }
    assert_eq!(a.refill, Err(AccioError::NotOwner(m.conn)));
    assert_eq!(m.c.os.counters().get("refill_denied"), 1);
    // Nothing of V's row moved for it: still on core 1, V's head where V
    // left it, nothing sent.
    use nextio_hw::accio::{regs, table};
    let rowv = st.cores[1].slots[slot];
    assert_ne!(table::get(&rowv, regs::row::RX_HEAD), 0);
    assert_eq!(table::get(&rowv, regs::row::TX_TAIL), 0);
    assert!(table::get(&rowv, regs::row::STATE) & regs::state::RX_SUSPENDED != 0);
    assert_eq!(nic.get("offload_tx_frames"), 0);
}

#[test]
fn a_migrated_reader_takes_its_row_and_wake_ups_to_the_new_core() {
    let m = migration(false);
    check_migration(&m, false);
    // Nothing ran on core 0 between the move and the hostile thread's
    // wake-up: V's calls after the move are billed to core 1, where it
    // runs.
    assert_eq!(m.core0_busy.0, m.core0_busy.1);
    m.sim.shutdown();
}

#[test]
fn datagrams_arriving_while_the_row_moves_arrive_once() {
    let m = migration(true);
    check_migration(&m, true);
    // The race was run: a frame reached the NIC while the row was in no
    // core's table, and the kernel's refill put it where V now lives.
    let nic = m.c.nic.borrow().all_counters();
    assert!(nic.get("row_misses") > 0, "{nic:?}");
    assert!(m.c.os.counters().get("nic_misses") > 0);
    let again = migration(true);
    assert_eq!(m.got, again.got, "runs repeat");
    assert_eq!(m.sim.events(), again.sim.events());
    m.sim.shutdown();
    again.sim.shutdown();
}
