//! Accio end to end: a client host with the connection table and the
//! Accio NIC, its library on top, against a Linux echo host on one wire.
//! Data comes back intact through the rings; the thread sleeps in the one
//! blocking call and the table's interrupt wakes it; no system call is on
//! the fast path; hostile processes are stopped by the core; runs repeat.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use nextio_engine::{Duration, Sim, Time};
use nextio_hw::device::Device as _;
use nextio_hw::ethernet::LinkConfig;
use nextio_hw::machine::{MachineSpec, join};
use nextio_lib::accio::{Accio, LibCosts, LibError};
use nextio_os::OsCosts;
use nextio_os::accio::{AccioConfig, AccioHost};
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
    use nextio_hw::packet::{FlowKey, Frame, Macs, build_udp};
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
    let sink = c.host.machine().fabric().port_sink(c.nic.id, 0).unwrap();
    let flow = FlowKey {
        src_ip: SERVER_IP,
        dst_ip: CLIENT_IP,
        src_port: PORT,
        dst_port: 5000,
    };
    let macs = Macs {
        src: SERVER_MAC,
        dst: CLIENT_MAC,
    };
    let start = Time::ZERO + Duration::from_us(200);
    for i in 0..FLOOD {
        let bytes = build_udp(macs, flow, &message(i, 64), 128).unwrap();
        let at = start + Duration::from_ns(10 * i);
        let sink = sink.clone();
        sim.at(at, move || {
            sink.deliver(
                at,
                Frame {
                    bytes,
                    id: i,
                    tx_timestamp_ps: at.ps(),
                },
            )
        })
        .unwrap();
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
