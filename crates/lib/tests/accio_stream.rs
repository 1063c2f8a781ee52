//! Accio in front of Ensō-style streaming rings (`rx_stream`, the
//! `accio-with-enso` design): datagrams written back to back and received
//! in batches arrive exactly once, in order and byte for byte, across many
//! ring wraps, with fewer notifications and transfers than datagrams; a
//! hostile process cannot read another's streaming ring; the same inputs
//! give the same run.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use nextio_engine::{Category, Counters, Duration, Sim, Time};
use nextio_hw::machine::MachineSpec;
use nextio_hw::packet::{FlowKey, Frame, Macs, build_udp_datagram};
use nextio_lib::accio::{Accio, LibCosts};
use nextio_os::OsCosts;
use nextio_os::accio::{AccioConfig, AccioHost};
use nextio_os::net::{LinuxNetCosts, NetConfig};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PEER_PORT: u16 = 7000;
const PORT: u16 = 5000;
/// The prototype's 8 KiB ring, so the stream wraps many times.
const RING_BYTES: u64 = 8192;
const BATCH: u32 = 16;
const SLOT: usize = 2048;

fn stream_host(sim: &Sim) -> AccioHost {
    let mut net = NetConfig::new(CLIENT_IP, CLIENT_MAC, LinuxNetCosts::production());
    net.neighbours.push((SERVER_IP, SERVER_MAC));
    let mut cfg = AccioConfig::server(2, CLIENT_MAC);
    cfg.ring_bytes = RING_BYTES;
    cfg.nic.rx_stream = true;
    cfg.nic.rx_tail_batch = BATCH;
    AccioHost::build(
        sim,
        MachineSpec::accio_server(2),
        OsCosts::default(),
        net,
        cfg,
    )
    .unwrap()
}

/// Datagram `i`: its sequence number, then bytes that depend on it.
fn payload(i: u64) -> Vec<u8> {
    // Sizes 64..=1024 B in a fixed pseudo-random order.
    let len = 64 + ((i * 2_654_435_761) % 961) as usize;
    let mut m = vec![0u8; len];
    m[..8].copy_from_slice(&i.to_be_bytes());
    for (k, b) in m.iter_mut().enumerate().skip(8) {
        *b = ((k as u64 * 131) ^ (i * 7)) as u8;
    }
    m
}

/// Offer `n` datagrams in bursts of 4 back to back (10 ns apart), a burst
/// every 2 µs, from `start` (a burst fits the 8 KiB ring whatever its
/// sizes, so nothing is dropped for a full ring).
fn offer(sim: &Sim, host: &AccioHost, n: u64, start: Time) {
    let sink = host
        .host
        .machine()
        .fabric()
        .port_sink(host.nic.id, 0)
        .unwrap();
    let flow = FlowKey {
        src_ip: SERVER_IP,
        dst_ip: CLIENT_IP,
        src_port: PEER_PORT,
        dst_port: PORT,
    };
    let macs = Macs {
        src: SERVER_MAC,
        dst: CLIENT_MAC,
    };
    for i in 0..n {
        let bytes = build_udp_datagram(macs, flow, &payload(i)).unwrap();
        let at = start + Duration::from_ns(2000 * (i / 4) + 10 * (i % 4));
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
}

/// What a streaming run received (payloads in order), the sizes of the
/// batches `recv_batch` returned, and the NIC's counters.
struct Run {
    got: Vec<Vec<u8>>,
    batches: Vec<usize>,
    nic: Counters,
}

fn stream_run(n: u64) -> Run {
    let sim = Sim::new();
    let c = stream_host(&sim);
    let p = c.host.create_process().unwrap();
    let t = c.thread(p.pid(), 1).unwrap();
    let buf = p.mmap(SLOT as u64 * BATCH as u64, false).unwrap();
    let got = Rc::new(RefCell::new((Vec::new(), Vec::new())));
    {
        let (os, got, ctx) = (c.os.clone(), got.clone(), t.ctx.clone());
        sim.spawn(async move {
            os.dispatcher().wait_turn(t.tid).await.unwrap();
            let mut lib = Accio::new(os, p.pid(), t.tid, ctx.clone(), LibCosts::default());
            let fd = lib.socket();
            lib.bind(fd, PORT).unwrap();
            lib.connect(fd, (SERVER_IP, PEER_PORT)).unwrap();
            lib.accelerate(fd).await.unwrap();
            let mut count = 0;
            while count < n {
                let b = lib.recv_batch(fd, buf, SLOT, BATCH as usize).await.unwrap();
                let mut g = got.borrow_mut();
                g.1.push(b.len());
                for (i, (len, src)) in b.iter().enumerate() {
                    assert_eq!(*src, (SERVER_IP, PEER_PORT));
                    let mut data = vec![0u8; *len];
                    ctx.peek(buf.offset((i * SLOT) as u64), &mut data).unwrap();
                    g.0.push(data);
                }
                count += b.len() as u64;
            }
        });
    }
    offer(&sim, &c, n, Time::ZERO + Duration::from_us(100));
    sim.run_until(Time::ZERO + Duration::from_us(100 + 2 * n / 4 + 200));
    let nic = c.nic.borrow().all_counters();
    let (got, batches) = got.borrow().clone();
    sim.shutdown();
    Run { got, batches, nic }
}

#[test]
fn every_datagram_arrives_once_intact_across_ring_wraps() {
    const N: u64 = 2000;
    let r = stream_run(N);
    assert_eq!(r.got.len() as u64, N, "{:?}", r.nic);
    for (i, d) in r.got.iter().enumerate() {
        assert_eq!(*d, payload(i as u64), "datagram {i} differs");
    }
    let ring_bytes: u64 = (0..N)
        .map(|i| nextio_hw::accio::ring::record_bytes(payload(i).len() as u64))
        .sum();
    assert!(
        ring_bytes > 50 * RING_BYTES,
        "the stream must wrap the ring many times"
    );
    let n = &r.nic;
    assert_eq!(n.get("offload_rx_delivered"), N, "{n:?}");
    assert_eq!(n.sum_prefix("drop."), 0, "{n:?}");
    // Batched: fewer RX_TAIL posts and fewer data transfers than
    // datagrams, and batch receives that took more than one.
    assert!(n.get("rx_tail_posts") < N, "{n:?}");
    assert!(n.get("rx_stream_writes") < N, "{n:?}");
    assert!(r.batches.iter().any(|&b| b > 1), "{:?}", r.batches);
    assert!(r.batches.iter().all(|&b| b >= 1 && b <= BATCH as usize));
}

#[test]
fn streaming_runs_repeat_exactly() {
    let a = stream_run(300);
    let b = stream_run(300);
    assert_eq!(a.got, b.got);
    assert_eq!(a.batches, b.batches);
    assert_eq!(a.nic, b.nic);
}

#[test]
fn a_hostile_process_cannot_read_another_streaming_ring() {
    const N: u64 = 64;
    let sim = Sim::new();
    let c = stream_host(&sim);
    let victim = c.host.create_process().unwrap();
    let vt = c.thread(victim.pid(), 1).unwrap();
    let thief = c.host.create_process().unwrap();
    let tt = c.thread(thief.pid(), 0).unwrap();
    let ring = Rc::new(std::cell::Cell::new(None));
    let conn_cell = Rc::new(std::cell::Cell::new(None));
    let received = Rc::new(std::cell::Cell::new(0u64));
    {
        let (os, ring, cc, rec) = (
            c.os.clone(),
            ring.clone(),
            conn_cell.clone(),
            received.clone(),
        );
        let buf = victim.mmap(SLOT as u64 * BATCH as u64, false).unwrap();
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
            lib.bind(fd, PORT).unwrap();
            lib.connect(fd, (SERVER_IP, PEER_PORT)).unwrap();
            cc.set(Some(lib.accelerate(fd).await.unwrap()));
            ring.set(lib.rings(fd).map(|r| r.rx));
            while rec.get() < N {
                let b = lib.recv_batch(fd, buf, SLOT, BATCH as usize).await.unwrap();
                rec.set(rec.get() + b.len() as u64);
            }
        });
    }
    offer(&sim, &c, N, Time::ZERO + Duration::from_us(100));
    let out = Rc::new(RefCell::new(Vec::new()));
    {
        let (os, ring, cc, o) = (c.os.clone(), ring.clone(), conn_cell.clone(), out.clone());
        sim.spawn(async move {
            os.dispatcher().wait_turn(tt.tid).await.unwrap();
            // After the victim's datagrams are in its ring.
            tt.ctx
                .spin_until_time(Time::ZERO + Duration::from_us(150))
                .await;
            let rx = ring.get().unwrap();
            let conn = cc.get().unwrap();
            let mut b = [0u8; 64];
            let mut refused = Vec::new();
            // The victim's ring, by its address in the victim's process,
            // in the thief's: not mapped there.
            refused.push(tt.ctx.load(rx.va, &mut b, Category::Application).is_err());
            refused.push(
                tt.ctx
                    .load(rx.va.offset(RING_BYTES / 2), &mut b, Category::Application)
                    .is_err(),
            );
            // Nor can it learn or move the victim's stream pointers.
            let mut lib = Accio::new(
                os.clone(),
                thief.pid(),
                tt.tid,
                tt.ctx.clone(),
                LibCosts::default(),
            );
            let fd = lib.socket();
            lib.bind(fd, PORT + 1).unwrap();
            lib.connect(fd, (SERVER_IP, PEER_PORT)).unwrap();
            lib.accelerate(fd).await.unwrap();
            use nextio_hw::accio::regs::row as r;
            let row = |f| os.row_field_va(thief.pid(), conn, f).unwrap();
            refused.push(
                tt.ctx
                    .mmio_read(row(r::RX_TAIL), 8, "x", Category::Application)
                    .await
                    .is_err(),
            );
            refused.push(
                tt.ctx
                    .mmio_write(row(r::RX_HEAD), &0u64.to_le_bytes(), "x")
                    .await
                    .is_err(),
            );
            // With its own ring now mapped, the victim's address shows it
            // only its own memory, never the victim's datagrams.
            let mine = lib.rings(fd).unwrap().rx;
            let leak = tt.ctx.load(rx.va, &mut b, Category::Application).is_ok()
                && mine.iova != rx.iova
                && b[16..64] == payload(0)[8..56];
            refused.push(!leak);
            o.borrow_mut().extend(refused);
        });
    }
    sim.run_until(Time::ZERO + Duration::from_us(400));
    let r = out.borrow();
    assert_eq!(r.len(), 5);
    for (i, refused) in r.iter().enumerate() {
        assert!(*refused, "hostile access {i} was not refused");
    }
    assert_eq!(received.get(), N, "the victim still got every datagram");
    sim.shutdown();
}
