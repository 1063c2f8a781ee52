//! Accio in front of Ensō-style streaming rings (`rx_stream`, the
//! `accio-with-enso` design): datagrams written back to back and received
//! in batches arrive exactly once, in order and byte for byte, across many
//! ring wraps, with fewer notifications and transfers than datagrams; a
//! hostile process cannot read another's streaming ring; the same inputs
//! give the same run. Under faults the same holds for every datagram the
//! NIC accepted: across a link flap mid-stream (revert to the kernel path
//! and back), and with more streaming sockets than table rows (a post that
//! outlives its row is refused by the table, never written into the
//! slot's next row); and the NIC's quiesced event never overtakes the
//! `RX_TAIL` post a streaming batch holds until its data lands.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use nextio_engine::{Category, Counters, Duration, Sim, Time};
use nextio_hw::device::Device as _;
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
    stream_host_slots(sim, None)
}

/// A streaming host whose table has `slots` rows per core (`None`: the
/// preset's).
fn stream_host_slots(sim: &Sim, slots: Option<usize>) -> AccioHost {
    let mut net = NetConfig::new(CLIENT_IP, CLIENT_MAC, LinuxNetCosts::production());
    net.neighbours.push((SERVER_IP, SERVER_MAC));
    let mut cfg = AccioConfig::server(2, CLIENT_MAC);
    if let Some(s) = slots {
        cfg.table.slots = s;
    }
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
    offer_to(sim, host, n, start, 1, 2000);
}

/// [`offer`], datagram `i` to port `PORT + i % sockets` (so each socket
/// sees its own sub-stream, in order), a burst every `burst_gap_ns`.
fn offer_to(sim: &Sim, host: &AccioHost, n: u64, start: Time, sockets: u64, burst_gap_ns: u64) {
    let sink = host
        .host
        .machine()
        .fabric()
        .port_sink(host.nic.id, 0)
        .unwrap();
    let macs = Macs {
        src: SERVER_MAC,
        dst: CLIENT_MAC,
    };
    for i in 0..n {
        let flow = FlowKey {
            src_ip: SERVER_IP,
            dst_ip: CLIENT_IP,
            src_port: PEER_PORT,
            dst_port: PORT + (i % sockets) as u16,
        };
        let bytes = build_udp_datagram(macs, flow, &payload(i)).unwrap();
        let at = start + Duration::from_ns(burst_gap_ns * (i / 4) + 10 * (i % 4));
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

/// What a streaming run under faults received: per socket, the payloads
/// in arrival order; and the NIC's, table's and OS's counters.
struct FaultRun {
    got: Vec<Vec<Vec<u8>>>,
    nic: Counters,
    table: Counters,
    os: Counters,
}

/// `sockets` streaming sockets of one thread (on core 1), `n` datagrams
/// spread over them ([`offer_to`]), receiving round robin with
/// `recv_batch`; the table has `slots` rows per core; the link goes down
/// at `flap.0` and back at `flap.1`. A socket is read only while it
/// still expects datagrams, so the thread never waits on one that is
/// done (with a flap, the socket — there is one — is read until the end).
fn fault_run(
    sockets: u64,
    slots: Option<usize>,
    n: u64,
    burst_gap_ns: u64,
    flap: Option<(Time, Time)>,
) -> FaultRun {
    let sim = Sim::new();
    let c = stream_host_slots(&sim, slots);
    let p = c.host.create_process().unwrap();
    let t = c.thread(p.pid(), 1).unwrap();
    let buf = p.mmap(SLOT as u64 * BATCH as u64, false).unwrap();
    let got = Rc::new(RefCell::new(vec![Vec::new(); sockets as usize]));
    {
        let (os, got, ctx) = (c.os.clone(), got.clone(), t.ctx.clone());
        sim.spawn(async move {
            os.dispatcher().wait_turn(t.tid).await.unwrap();
            let mut lib = Accio::new(os, p.pid(), t.tid, ctx.clone(), LibCosts::default());
            let mut fds = Vec::new();
            for s in 0..sockets {
                let fd = lib.socket();
                lib.bind(fd, PORT + s as u16).unwrap();
                lib.connect(fd, (SERVER_IP, PEER_PORT)).unwrap();
                lib.accelerate(fd).await.unwrap();
                fds.push(fd);
            }
            let want = |s: u64| n / sockets + u64::from(s < n % sockets);
            loop {
                let mut any = false;
                for (s, fd) in fds.iter().enumerate() {
                    if flap.is_none() && got.borrow()[s].len() as u64 >= want(s as u64) {
                        continue;
                    }
                    any = true;
                    let b = lib
                        .recv_batch(*fd, buf, SLOT, BATCH as usize)
                        .await
                        .unwrap();
                    let mut g = got.borrow_mut();
                    for (i, (len, src)) in b.iter().enumerate() {
                        assert_eq!(*src, (SERVER_IP, PEER_PORT));
                        let mut data = vec![0u8; *len];
                        ctx.peek(buf.offset((i * SLOT) as u64), &mut data).unwrap();
                        g[s].push(data);
                    }
                }
                if !any {
                    break;
                }
            }
        });
    }
    let start = Time::ZERO + Duration::from_us(100);
    offer_to(&sim, &c, n, start, sockets, burst_gap_ns);
    if let Some((down, up)) = flap {
        let (nic, fabric, sim2) = (
            c.nic.clone(),
            c.host.machine().fabric().clone(),
            sim.clone(),
        );
        sim.spawn(async move {
            sim2.sleep_until(down).await;
            fabric.act(&nic, |n, cx| n.set_carrier(cx, false));
            sim2.sleep_until(up).await;
            fabric.act(&nic, |n, cx| n.set_carrier(cx, true));
        });
    }
    let end = flap.map_or(start, |(_, up)| up)
        + Duration::from_ns(burst_gap_ns * n / 4)
        + Duration::from_us(2000);
    sim.run_until(end);
    let r = FaultRun {
        got: got.borrow().clone(),
        nic: c.nic.borrow().all_counters(),
        table: c.table.borrow().counters().clone(),
        os: c.os.counters(),
    };
    sim.shutdown();
    r
}

/// Each socket's datagrams arrived intact, at most once and in the order
/// sent (`sockets` sub-streams of [`offer_to`]); how many arrived.
fn check_order(r: &FaultRun, sockets: u64) -> u64 {
    let mut total = 0;
    for (s, got) in r.got.iter().enumerate() {
        let mut last: Option<u64> = None;
        for d in got {
            assert!(d.len() >= 8, "socket {s}: short datagram");
            let seq = u64::from_be_bytes(d[..8].try_into().unwrap());
            assert_eq!(seq % sockets, s as u64, "socket {s} got datagram {seq}");
            assert_eq!(*d, payload(seq), "socket {s}: datagram {seq} differs");
            assert!(
                last.is_none_or(|l| seq > l),
                "socket {s}: datagram {seq} after {last:?} (duplicate or reordered); {:?}",
                r.nic
            );
            last = Some(seq);
        }
        total += got.len() as u64;
    }
    total
}

#[test]
fn a_link_flap_mid_stream_loses_duplicates_and_reorders_nothing() {
    const N: u64 = 600;
    let base = Time::ZERO + Duration::from_us(100 + 2 * 40);
    // The carrier drops at instants spread over one 2 µs burst period,
    // so some land while a batch's `RX_TAIL` post waits for its data.
    for k in 0..16u64 {
        let down = base + Duration::from_ns(125 * k);
        let up = down + Duration::from_us(30);
        let r = fault_run(1, None, N, 2000, Some((down, up)));
        let got = check_order(&r, 1);
        let n = &r.nic;
        assert_eq!(n.get("link_down_events"), 1, "{n:?}");
        // The NIC refused only what reached it with the link down; every
        // datagram it accepted reached the socket, once.
        assert_eq!(n.sum_prefix("drop."), n.get("drop.rx_link_down"), "{n:?}");
        assert!(n.get("drop.rx_link_down") > 0, "the flap hit the stream");
        assert_eq!(got, N - n.get("drop.rx_link_down"), "flap {k}: {n:?}");
        assert_eq!(
            n.get("offload_rx_frames"),
            n.get("offload_rx_delivered") + n.get("offload_to_kernel"),
            "{n:?}"
        );
        // Reverted and back on the fast path: datagrams came both ways.
        let o = &r.os;
        assert!(o.get("reverted") >= 1 && o.get("resumed") >= 1, "{o:?}");
        assert!(n.get("offload_rx_delivered") > 0 && n.get("offload_to_kernel") > 0);
    }
}

#[test]
fn streaming_sockets_beyond_the_table_rows_lose_nothing() {
    const SOCKETS: u64 = 8;
    const N: u64 = 1200;
    // A burst every 4 µs: each 8 KiB ring keeps up while its row is out,
    // and some posts reach the table after their row left.
    let r = fault_run(SOCKETS, Some(2), N, 4000, None);
    let got = check_order(&r, SOCKETS);
    let (n, o) = (&r.nic, &r.os);
    assert!(o.get("evictions") > 0 && o.get("refills") > 0, "{o:?}");
    assert!(n.get("row_misses") > 0, "NIC-side misses happened: {n:?}");
    assert_eq!(n.sum_prefix("drop."), 0, "{n:?}");
    assert_eq!(got, N, "{n:?} {o:?}");
    assert_eq!(
        n.get("offload_rx_delivered") + n.get("offload_to_kernel"),
        N,
        "{n:?}"
    );
    // Posts are addressed by connection: one that reaches the table after
    // its row left is refused there (counted), never written into the
    // slot's next row; the NIC posts its pointers again on the refill.
    let t = &r.table;
    assert!(
        t.get("stale_nic_writes") > 0,
        "no post outlived its row: {t:?}"
    );
    assert_eq!(t.get("bad_nic_writes"), 0, "{t:?}");
    assert_eq!(
        t.get("nic_pointer_writes") + t.get("stale_nic_writes"),
        n.get("rx_tail_posts") + n.get("tx_head_posts"),
        "{t:?} {n:?}"
    );
}

/// What the table showed around a fallback command sent to the NIC
/// mid-stream: the row's `RX_TAIL` when it was sent, when the NIC's
/// quiesced event for the connection was first in the event queue, and
/// after everything settled.
struct Quiesce {
    at_cmd: u64,
    at_event: Option<u64>,
    settled: u64,
}

/// One streaming socket receiving [`offer`]'s stream; at `cmd_at` a
/// fallback command for its connection goes to the NIC (as the OS's
/// revert sends it), and the table is watched every 5 ns for 5 µs.
fn fallback_mid_stream(cmd_at: Time) -> Quiesce {
    use nextio_hw::accio::regs::{Event, EventKind, row};
    use nextio_hw::accio::table;
    use nextio_hw::device::Requester;
    use nextio_hw::nic::accio::regs::{FLOW_CMD, FlowOp, flow_cmd};
    let sim = Sim::new();
    let c = stream_host(&sim);
    let p = c.host.create_process().unwrap();
    let t = c.thread(p.pid(), 1).unwrap();
    let buf = p.mmap(SLOT as u64 * BATCH as u64, false).unwrap();
    let conn = Rc::new(std::cell::Cell::new(None));
    {
        let (os, conn, ctx) = (c.os.clone(), conn.clone(), t.ctx.clone());
        sim.spawn(async move {
            os.dispatcher().wait_turn(t.tid).await.unwrap();
            let mut lib = Accio::new(os, p.pid(), t.tid, ctx, LibCosts::default());
            let fd = lib.socket();
            lib.bind(fd, PORT).unwrap();
            lib.connect(fd, (SERVER_IP, PEER_PORT)).unwrap();
            conn.set(Some(lib.accelerate(fd).await.unwrap()));
            loop {
                lib.recv_batch(fd, buf, SLOT, BATCH as usize).await.unwrap();
            }
        });
    }
    offer(&sim, &c, 400, Time::ZERO + Duration::from_us(100));
    let seen = Rc::new(RefCell::new(None));
    {
        let (nic, table, fabric, sim2, seen) = (
            c.nic.clone(),
            c.table.clone(),
            c.host.machine().fabric().clone(),
            sim.clone(),
            seen.clone(),
        );
        sim.spawn(async move {
            sim2.sleep_until(cmd_at).await;
            let conn = conn.get().expect("accelerated by then");
            let tail = || {
                let st = table.borrow().snapshot();
                st.cores
                    .iter()
                    .find_map(|t| t.find(conn).map(|s| table::get(&t.slots[s], row::RX_TAIL)))
            };
            let core = table
                .borrow()
                .snapshot()
                .cores
                .iter()
                .position(|t| t.find(conn).is_some())
                .expect("resident");
            let at_cmd = tail().expect("resident");
            let v = flow_cmd(FlowOp::Fallback, core, conn);
            fabric.act(&nic, |n, cx| {
                n.bar_write(cx, Requester::Cpu { core }, 1, FLOW_CMD, &v.to_le_bytes())
            });
            let mut at_event = None;
            for _ in 0..1000 {
                sim2.sleep(Duration::from_ns(5)).await;
                let quiesced = table.borrow().snapshot().events.iter().any(|e| {
                    Event::decode(*e)
                        .is_some_and(|e| e.kind == EventKind::Quiesced && e.conn == conn)
                });
                if quiesced && at_event.is_none() {
                    at_event = tail();
                }
            }
            *seen.borrow_mut() = Some((at_cmd, at_event, tail().expect("resident")));
        });
    }
    sim.run_until(cmd_at + Duration::from_us(20));
    let (at_cmd, at_event, settled) = seen.borrow().expect("watched");
    sim.shutdown();
    Quiesce {
        at_cmd,
        at_event,
        settled,
    }
}

#[test]
fn a_fallback_during_a_held_batch_signals_quiesced_only_after_its_tail() {
    // Commands at instants spread over one 2 µs burst period, so some
    // arrive while a batch's records are gathered or in flight.
    let base = Time::ZERO + Duration::from_us(100 + 2 * 30);
    let mut held = 0;
    for k in 0..40u64 {
        let q = fallback_mid_stream(base + Duration::from_ns(50 * k));
        // The OS takes the event to mean every record is announced: the
        // row's tail then must already be the last one the NIC posts.
        assert_eq!(
            q.at_event,
            Some(q.settled),
            "command {k}: quiesced seen with RX_TAIL {:?}, the NIC's last is {} (at the command {})",
            q.at_event,
            q.settled,
            q.at_cmd
        );
        held += u64::from(q.settled > q.at_cmd);
    }
    assert!(held > 0, "no command found records not yet announced");
}
