//! The kernel UDP path end to end: a client host and an echo host on one
//! wire, both running the Linux-shaped stack on the packetized NIC. The
//! client sends numbered datagrams and blocks in `recvfrom` for each
//! echo; every byte comes back, every frame and buffer is accounted for,
//! the receive-path timestamps are ordered, and bad calls get errors.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use nextio_engine::{Duration, Sim, Time};
use nextio_hw::device::Device as _;
use nextio_hw::ethernet::LinkConfig;
use nextio_hw::machine::{MachineSpec, join};
use nextio_hw::mem::VirtAddr;
use nextio_os::net::{Datagram, LinuxHost, LinuxNetCosts, NetConfig, NetError};
use nextio_os::{OsCosts, Pid};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PORT: u16 = 7000;

fn host(sim: &Sim, ip: Ipv4Addr, mac: [u8; 6], peer: (Ipv4Addr, [u8; 6])) -> LinuxHost {
    let mut net = NetConfig::new(ip, mac, LinuxNetCosts::accio_testbed());
    net.neighbours.push(peer);
    let os = OsCosts {
        context_switch_cycles: LinuxNetCosts::accio_testbed_context_switch_cycles(),
        ..OsCosts::default()
    };
    LinuxHost::build(sim, MachineSpec::accio_server(2), os, net).unwrap()
}

fn pair(sim: &Sim) -> (LinuxHost, LinuxHost) {
    let c = host(sim, CLIENT_IP, CLIENT_MAC, (SERVER_IP, SERVER_MAC));
    let s = host(sim, SERVER_IP, SERVER_MAC, (CLIENT_IP, CLIENT_MAC));
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

/// Start an echo server thread on `s`: every datagram back to its sender.
fn echo_server(s: &LinuxHost) {
    let p = s.host.create_process().unwrap();
    let t = s.thread(p.pid(), 1).unwrap();
    let fd = s.stack.socket(p.pid());
    s.stack.bind(p.pid(), fd, PORT).unwrap();
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

struct ClientRun {
    got: Vec<Vec<u8>>,
    stamps: Vec<Datagram>,
}

fn run(seed_len: usize, n: u64) -> (ClientRun, LinuxHost, LinuxHost, Sim) {
    let sim = Sim::new();
    let (c, s) = pair(&sim);
    echo_server(&s);
    let p = c.host.create_process().unwrap();
    let t = c.thread(p.pid(), 1).unwrap();
    let fd = c.stack.socket(p.pid());
    c.stack.connect(p.pid(), fd, (SERVER_IP, PORT)).unwrap();
    let tx = p.mmap(4096, false).unwrap();
    let rx = p.mmap(4096, false).unwrap();
    let out = Rc::new(RefCell::new(ClientRun {
        got: Vec::new(),
        stamps: Vec::new(),
    }));
    let (stack, disp, o) = (c.stack.clone(), c.disp.clone(), out.clone());
    sim.spawn(async move {
        disp.wait_turn(t.tid).await.unwrap();
        // Let the stacks hand their rings to the NICs.
        t.ctx
            .spin_until_time(Time::ZERO + Duration::from_us(5))
            .await;
        for i in 0..n {
            let mut msg = vec![0u8; seed_len];
            msg[..8].copy_from_slice(&i.to_be_bytes());
            for (k, b) in msg.iter_mut().enumerate().skip(8) {
                *b = (k as u64 ^ i) as u8;
            }
            t.ctx.poke(tx, &msg).unwrap();
            stack
                .sendto(&t.ctx, t.tid, fd, tx, msg.len(), None)
                .await
                .unwrap();
            let d = stack
                .recvfrom(&t.ctx, t.tid, fd, rx, 4096, false)
                .await
                .unwrap();
            let mut back = vec![0u8; d.len];
            t.ctx.peek(rx, &mut back).unwrap();
            o.borrow_mut().got.push(back);
            o.borrow_mut().stamps.push(d);
        }
    });
    sim.run_until(Time::ZERO + Duration::from_ms(20));
    let r = Rc::try_unwrap(out).ok().unwrap().into_inner();
    (r, c, s, sim)
}

#[test]
fn every_datagram_is_echoed_intact_and_accounted_for() {
    for len in [18usize, 256, 1024] {
        let (r, c, s, sim) = run(len, 50);
        assert_eq!(r.got.len(), 50, "{len} B: every echo came back");
        for (i, g) in r.got.iter().enumerate() {
            assert_eq!(g.len(), len);
            assert_eq!(u64::from_be_bytes(g[..8].try_into().unwrap()), i as u64);
            for (k, b) in g.iter().enumerate().skip(8) {
                assert_eq!(*b, (k as u64 ^ i as u64) as u8);
            }
        }
        for h in [&c, &s] {
            let k = h.stack.counters();
            assert_eq!(k.get("rx_frames"), 50);
            assert_eq!(k.get("rx_delivered"), 50);
            assert_eq!(k.sum_prefix("drop."), 0, "{k:?}");
            assert_eq!(k.get("recv_datagrams"), 50);
            assert_eq!(k.get("sent_datagrams"), 50);
            let (free, held) = h.stack.buffer_census();
            assert_eq!(free + held, 2048, "every buffer in one place");
            let nic = h.nic.borrow().counters().clone();
            assert_eq!(nic.get("rx_frames"), 50);
            assert_eq!(nic.sum_prefix("drop."), 0);
        }
        // Each receive passed the Table 1 points in order.
        for d in &r.stamps {
            assert!(d.stamps.header_start < d.stamps.queued);
            assert!(d.stamps.queued < d.returned);
        }
        // Blocking receives put the client's core to sleep.
        assert!(c.disp.counters().get("blocks") >= 50);
        sim.shutdown();
    }
}

#[test]
fn a_run_is_a_pure_function_of_its_configuration() {
    let a = run(64, 20);
    let b = run(64, 20);
    assert_eq!(a.0.stamps, b.0.stamps);
    assert_eq!(a.1.stack.counters(), b.1.stack.counters());
    assert_eq!(a.3.events(), b.3.events());
}

#[test]
fn bad_calls_get_errors_not_panics() {
    let sim = Sim::new();
    let (c, _s) = pair(&sim);
    let p = c.host.create_process().unwrap();
    let other = c.host.create_process().unwrap();
    let t = c.thread(p.pid(), 1).unwrap();
    let fd = c.stack.socket(p.pid());
    // Someone else's descriptor is not ours.
    assert_eq!(c.stack.bind(other.pid(), fd, 1), Err(NetError::BadFd(fd)));
    assert_eq!(
        c.stack.connect(Pid(99), fd, (SERVER_IP, 1)),
        Err(NetError::BadFd(fd))
    );
    let buf = p.mmap(4096, false).unwrap();
    let errs = Rc::new(RefCell::new(Vec::new()));
    let (stack, disp, e) = (c.stack.clone(), c.disp.clone(), errs.clone());
    sim.spawn(async move {
        disp.wait_turn(t.tid).await.unwrap();
        let r0 = stack.sendto(&t.ctx, t.tid, fd, buf, 10, None).await;
        let r1 = stack
            .sendto(&t.ctx, t.tid, fd, buf, 2000, Some((SERVER_IP, 1)))
            .await;
        let r2 = stack
            .sendto(
                &t.ctx,
                t.tid,
                fd,
                buf,
                10,
                Some((Ipv4Addr::new(1, 2, 3, 4), 1)),
            )
            .await;
        let r3 = stack
            .sendto(&t.ctx, t.tid, fd, VirtAddr(0x10), 10, Some((SERVER_IP, 1)))
            .await;
        let r4 = stack
            .recvfrom(&t.ctx, t.tid, fd, buf, 64, true)
            .await
            .map(|d| d.len);
        e.borrow_mut().extend([r0, r1, r2, r3, r4]);
    });
    sim.run_until(Time::ZERO + Duration::from_ms(1));
    let e = errs.borrow();
    assert_eq!(e[0], Err(NetError::NoDestination));
    assert_eq!(e[1], Err(NetError::TooLong(2000)));
    assert_eq!(
        e[2],
        Err(NetError::HostUnreachable(Ipv4Addr::new(1, 2, 3, 4)))
    );
    assert!(matches!(e[3], Err(NetError::Access(_))));
    assert_eq!(e[4], Err(NetError::WouldBlock));
    sim.shutdown();
}
