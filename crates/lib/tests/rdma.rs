//! The RDMA NIC and the verbs library on two hosts joined by a wire: UD
//! sends deliver exactly the bytes sent, every work request completes
//! once, the context cache fetches what it does not hold, and a hostile
//! process can neither ring another's doorbell nor name memory it did not
//! register.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use nextio_engine::{Counters, Duration, Sim, Time};
use nextio_hw::device::Device;
use nextio_hw::ethernet::LinkConfig;
use nextio_hw::machine::{MachineSpec, join};
use nextio_hw::mem::VirtAddr;
use nextio_hw::nic::rdma::{
    Cqe, CqeOpcode, GRH_BYTES, RdmaNicConfig, RecvWqe, SendWqe, UdAddress, status,
};
use nextio_lib::rdma::{QueuePair, VerbsCosts, sge};
use nextio_os::rdma::{Mr, QpResources, QpSizes, RdmaDriver};
use nextio_os::{Host, OsCosts, Process, Thread};

const QKEY: u32 = 0x1111_1111;
const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const A_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const B_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn rdma_host(sim: &Sim, mac: [u8; 6], ip: Ipv4Addr, cache: usize) -> (Host, RdmaDriver) {
    let h = Host::new(sim, MachineSpec::accio_server(2), OsCosts::default()).unwrap();
    let cfg = RdmaNicConfig {
        mac,
        ip,
        qp_cache_entries: cache,
        ..RdmaNicConfig::default()
    };
    let d = RdmaDriver::attach(&h, cfg).unwrap();
    (h, d)
}

fn pair(sim: &Sim, cache: usize) -> ((Host, RdmaDriver), (Host, RdmaDriver)) {
    let a = rdma_host(sim, A_MAC, A_IP, cache);
    let b = rdma_host(sim, B_MAC, B_IP, cache);
    join(
        a.0.machine(),
        a.1.nic().id,
        0,
        b.0.machine(),
        b.1.nic().id,
        0,
        LinkConfig::default(),
    )
    .unwrap();
    (a, b)
}

/// Two RDMA hosts on a wire, one process with one thread on each: the
/// first host, both drivers, both processes and both threads.
type Two = (
    Host,
    RdmaDriver,
    RdmaDriver,
    Process,
    Process,
    Thread,
    Thread,
);

fn two(sim: &Sim, cache: usize) -> Two {
    let ((ha, da), (hb, db)) = pair(sim, cache);
    let pa = ha.create_process().unwrap();
    let pb = hb.create_process().unwrap();
    let ta = pa.thread(0).unwrap();
    let tb = pb.thread(0).unwrap();
    (ha, da, db, pa, pb, ta, tb)
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(131) ^ seed) as u8)
        .collect()
}

fn at_us(us: u64) -> Time {
    Time::ZERO + Duration::from_us(us)
}

/// The UD address of QP `qp` on the host at `mac`, `ip`.
fn to(qp: &QpResources, mac: [u8; 6], ip: Ipv4Addr) -> UdAddress {
    UdAddress {
        mac,
        ip,
        qpn: qp.qpn,
        qkey: QKEY,
    }
}

/// Post a send of `len` bytes at `va` of `mr`.
async fn send(q: &mut QueuePair, mr: &Mr, va: VirtAddr, len: u32, wr_id: u64, dest: UdAddress) {
    let (addr, lkey) = sge(mr, va, len).unwrap();
    q.post_send(SendWqe {
        wr_id,
        addr,
        length: len,
        lkey,
        dest,
    })
    .await
    .unwrap();
}

/// Post a receive of `len` bytes at `va` of `mr`.
async fn recv(q: &mut QueuePair, mr: &Mr, va: VirtAddr, len: u32, wr_id: u64) {
    let (addr, lkey) = sge(mr, va, len).unwrap();
    q.post_recv(RecvWqe {
        wr_id,
        addr,
        length: len,
        lkey,
    })
    .await
    .unwrap();
}

fn nic_counters(d: &RdmaDriver) -> Counters {
    d.nic().borrow().all_counters()
}

/// Every frame that reached the NIC is delivered, completed in error or
/// counted as a drop; every completion is written or counted.
fn assert_conserved(c: &Counters) {
    assert_eq!(
        c.get("rx_frames"),
        c.get("rx_delivered") + c.get("rx_error_completions") + c.sum_prefix("drop.rx_"),
        "{c:?}"
    );
    assert_eq!(
        c.get("completions"),
        c.get("cqes")
            + c.get("drop.cq_overrun")
            + c.get("dma_errors.cqe")
            + c.get("drop.cqe_qp_destroyed"),
        "{c:?}"
    );
}

#[test]
fn ud_sends_deliver_the_bytes_sent_and_every_request_completes_once() {
    let sim = Sim::new();
    let (_, da, db, pa, pb, ta, tb) = two(&sim, 256);
    let qa = da.create_qp(&pa, QpSizes::new(16, 16), QKEY).unwrap();
    let qb = db.create_qp(&pb, QpSizes::new(16, 16), QKEY).unwrap();
    let ma = da.reg_mr(&pa, 64 << 10).unwrap();
    let mb = db.reg_mr(&pb, 64 << 10).unwrap();
    let sizes: Vec<usize> = vec![1, 8, 64, 100, 512, 1024, 1400, 0, 33];
    let n = sizes.len();
    let got = Rc::new(RefCell::new(Vec::<(Cqe, Vec<u8>)>::new()));
    let sent_cqes = Rc::new(RefCell::new(Vec::<Cqe>::new()));
    // Receiver: one buffer of 2 KiB per message, all posted up front.
    {
        let (ctx, got) = (tb.ctx.clone(), got.clone());
        sim.spawn(async move {
            let mut q = QueuePair::new(ctx.clone(), qb, VerbsCosts::default()).unwrap();
            for i in 0..n as u64 {
                recv(&mut q, &mb, mb.va.offset(i * 2048), 2048, i).await;
            }
            let mut out = Vec::new();
            while out.len() < n {
                q.wait_cq().await;
                q.poll_cq(&mut out, 8).await.unwrap();
            }
            for c in out {
                let mut b = vec![0u8; c.byte_len as usize];
                ctx.peek(mb.va.offset(c.wr_id * 2048), &mut b).unwrap();
                got.borrow_mut().push((c, b));
            }
        });
    }
    {
        let (ctx, sent_cqes, sizes) = (ta.ctx.clone(), sent_cqes.clone(), sizes.clone());
        sim.spawn(async move {
            let mut q = QueuePair::new(ctx.clone(), qa, VerbsCosts::default()).unwrap();
            // Let the receiver post first.
            ctx.spin_until_time(at_us(20)).await;
            let dest = to(&qb, B_MAC, B_IP);
            for (i, &len) in sizes.iter().enumerate() {
                let va = ma.va.offset(i as u64 * 2048);
                ctx.poke(va, &pattern(len, i as u64)).unwrap();
                while q.sends_outstanding() >= 16 {
                    q.wait_cq().await;
                    let mut v = Vec::new();
                    q.poll_cq(&mut v, 16).await.unwrap();
                    sent_cqes.borrow_mut().extend(v);
                }
                send(&mut q, &ma, va, len as u32, 100 + i as u64, dest).await;
            }
            while sent_cqes.borrow().len() < sizes.len() {
                q.wait_cq().await;
                let mut v = Vec::new();
                q.poll_cq(&mut v, 16).await.unwrap();
                sent_cqes.borrow_mut().extend(v);
            }
        });
    }
    sim.run_until(at_us(5000));
    let got = got.borrow();
    assert_eq!(got.len(), n);
    let mut bytes_sent = 0u64;
    for (c, b) in got.iter() {
        let i = c.wr_id as usize;
        assert_eq!(c.status, status::SUCCESS);
        assert_eq!(c.opcode, CqeOpcode::Recv);
        assert_eq!(c.src_qpn, qa.qpn);
        assert_eq!(c.byte_len as u64, GRH_BYTES + sizes[i] as u64);
        // The GRH carries the IPv4 header: the sender's address at 12..16.
        assert_eq!(&b[20 + 12..20 + 16], &A_IP.octets());
        assert_eq!(&b[GRH_BYTES as usize..], &pattern(sizes[i], i as u64)[..]);
        bytes_sent += sizes[i] as u64;
    }
    let s = sent_cqes.borrow();
    assert_eq!(s.len(), n);
    let mut ids: Vec<u64> = s.iter().map(|c| c.wr_id).collect();
    ids.sort();
    assert_eq!(ids, (100..100 + n as u64).collect::<Vec<_>>());
    assert!(
        s.iter()
            .all(|c| c.status == status::SUCCESS && c.opcode == CqeOpcode::Send)
    );
    let (ca, cb) = (nic_counters(&da), nic_counters(&db));
    assert_eq!(ca.get("tx_bytes"), bytes_sent);
    assert_eq!(cb.get("rx_bytes"), bytes_sent);
    assert_eq!(ca.get("wqes.send"), n as u64);
    assert_eq!(ca.get("completions"), n as u64);
    assert_eq!(cb.get("completions"), n as u64);
    assert_eq!(cb.get("rx_delivered"), n as u64);
    assert_conserved(&ca);
    assert_conserved(&cb);
}

/// A frame with no receive posted is dropped and counted, as UD does; a
/// message longer than the buffer completes the receive with an error.
#[test]
fn unposted_and_too_small_receives_are_counted() {
    let sim = Sim::new();
    let (_, da, db, pa, pb, ta, tb) = two(&sim, 256);
    let qa = da.create_qp(&pa, QpSizes::new(8, 8), QKEY).unwrap();
    let qb = db.create_qp(&pb, QpSizes::new(8, 8), QKEY).unwrap();
    let ma = da.reg_mr(&pa, 4096).unwrap();
    let mb = db.reg_mr(&pb, 4096).unwrap();
    let out = Rc::new(RefCell::new(Vec::new()));
    {
        let (ctx, out) = (tb.ctx.clone(), out.clone());
        sim.spawn(async move {
            let mut q = QueuePair::new(ctx.clone(), qb, VerbsCosts::default()).unwrap();
            // One receive of 64 B: the GRH and 24 bytes.
            recv(&mut q, &mb, mb.va, 64, 1).await;
            q.wait_cq().await;
            let mut v = Vec::new();
            q.poll_cq(&mut v, 4).await.unwrap();
            out.borrow_mut().extend(v);
        });
    }
    {
        let ctx = ta.ctx.clone();
        sim.spawn(async move {
            let mut q = QueuePair::new(ctx.clone(), qa, VerbsCosts::default()).unwrap();
            ctx.spin_until_time(at_us(20)).await;
            let dest = to(&qb, B_MAC, B_IP);
            for i in 0..3 {
                send(&mut q, &ma, ma.va, 100, i, dest).await;
            }
            // A wrong queue key is refused by the receiver.
            send(&mut q, &ma, ma.va, 10, 9, UdAddress { qkey: 7, ..dest }).await;
        });
    }
    sim.run_until(at_us(2000));
    let out = out.borrow();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, status::LOCAL_LENGTH);
    let cb = nic_counters(&db);
    assert_eq!(cb.get("rx_frames"), 4);
    assert_eq!(cb.get("rx_error_completions"), 1);
    assert_eq!(cb.get("drop.rx_no_recv_wqe"), 2);
    assert_eq!(cb.get("drop.rx_bad_qkey"), 1);
    assert_eq!(cb.get("rx_delivered"), 0);
    assert_conserved(&cb);
}

/// More busy QPs than the NIC caches contexts for: contexts are fetched
/// from host memory, evicted, fetched again, and every byte still arrives.
#[test]
fn contexts_beyond_the_cache_are_fetched_and_delivery_is_unchanged() {
    let sim = Sim::new();
    let (_, da, db, pa, pb, ta, tb) = two(&sim, 2);
    let qps = 6usize;
    let rounds = 3u64;
    let qa: Vec<_> = (0..qps)
        .map(|_| da.create_qp(&pa, QpSizes::new(8, 8), QKEY).unwrap())
        .collect();
    let qb: Vec<_> = (0..qps)
        .map(|_| db.create_qp(&pb, QpSizes::new(8, 8), QKEY).unwrap())
        .collect();
    let ma = da.reg_mr(&pa, 64 << 10).unwrap();
    let mb = db.reg_mr(&pb, 64 << 10).unwrap();
    let got = Rc::new(RefCell::new(0u64));
    {
        let (ctx, got, qb) = (tb.ctx.clone(), got.clone(), qb.clone());
        sim.spawn(async move {
            let mut qs: Vec<QueuePair> = qb
                .into_iter()
                .map(|r| QueuePair::new(ctx.clone(), r, VerbsCosts::default()).unwrap())
                .collect();
            for (k, q) in qs.iter_mut().enumerate() {
                for i in 0..rounds {
                    let slot = (k as u64 * rounds + i) * 1024;
                    recv(q, &mb, mb.va.offset(slot), 1024, slot).await;
                }
            }
            let mut left = qps as u64 * rounds;
            while left > 0 {
                for q in qs.iter_mut() {
                    let mut v = Vec::new();
                    q.poll_cq(&mut v, 8).await.unwrap();
                    for c in v {
                        let mut b = vec![0u8; c.byte_len as usize - GRH_BYTES as usize];
                        ctx.peek(mb.va.offset(c.wr_id + GRH_BYTES), &mut b).unwrap();
                        assert_eq!(b, pattern(200, c.src_qpn as u64));
                        *got.borrow_mut() += 1;
                        left -= 1;
                    }
                }
                ctx.compute(nextio_engine::Category::Polling, 200).await;
            }
        });
    }
    {
        let (ctx, qa, qb) = (ta.ctx.clone(), qa.clone(), qb.clone());
        sim.spawn(async move {
            let mut qs: Vec<QueuePair> = qa
                .into_iter()
                .map(|r| QueuePair::new(ctx.clone(), r, VerbsCosts::default()).unwrap())
                .collect();
            ctx.spin_until_time(at_us(50)).await;
            for i in 0..rounds {
                for (k, q) in qs.iter_mut().enumerate() {
                    let va = ma.va.offset(k as u64 * 1024);
                    ctx.poke(va, &pattern(200, q.qpn() as u64)).unwrap();
                    send(q, &ma, va, 200, i, to(&qb[k], B_MAC, B_IP)).await;
                    // Wait for this send's completion before the next QP.
                    while q.sends_outstanding() > 0 {
                        q.wait_cq().await;
                        q.poll_cq(&mut Vec::new(), 8).await.unwrap();
                    }
                }
            }
        });
    }
    sim.run_until(at_us(5000));
    assert_eq!(*got.borrow(), qps as u64 * rounds);
    let (ca, cb) = (nic_counters(&da), nic_counters(&db));
    // Six QPs taking turns through two cached contexts: every send and
    // every receive missed.
    assert!(ca.get("qp_cache.misses") >= qps as u64 * rounds, "{ca:?}");
    assert!(ca.get("qp_cache.evictions") > 0);
    assert!(cb.get("qp_cache.misses") >= qps as u64 * rounds, "{cb:?}");
    assert_eq!(cb.get("rx_delivered"), qps as u64 * rounds);
    assert_conserved(&ca);
    assert_conserved(&cb);
}

/// A hostile process on the sending host: it cannot ring the victim's
/// doorbell (the page is not mapped in it: the store faults), and neither
/// its sends nor its receives can name the victim's registered memory
/// (protection errors; no byte read or written).
#[test]
fn a_hostile_process_cannot_use_another_process_qp_or_memory() {
    let sim = Sim::new();
    let (ha, da, db, victim, peer, tv, tp) = two(&sim, 256);
    let evil = ha.create_process().unwrap();
    let te = evil.thread(1).unwrap();
    // The victim has two QPs, the attacker one: the victim's second
    // doorbell page lies where nothing is mapped in the attacker.
    let _first = da.create_qp(&victim, QpSizes::new(8, 8), QKEY).unwrap();
    let qv = da.create_qp(&victim, QpSizes::new(8, 8), QKEY).unwrap();
    let qe = da.create_qp(&evil, QpSizes::new(8, 8), QKEY).unwrap();
    assert_ne!(qv.doorbell, qe.doorbell);
    let qp = db.create_qp(&peer, QpSizes::new(8, 8), QKEY).unwrap();
    let mv = da.reg_mr(&victim, 4096).unwrap();
    let me = da.reg_mr(&evil, 4096).unwrap();
    let mp = db.reg_mr(&peer, 4096).unwrap();
    assert_eq!(da.owner(qv.qpn), Some(victim.pid()));
    let secret = pattern(256, 0x5ec);
    tv.ctx.poke(mv.va, &secret).unwrap();
    let results = Rc::new(RefCell::new(Vec::new()));
    {
        let (ctx, r) = (te.ctx.clone(), results.clone());
        sim.spawn(async move {
            // 1. The victim's doorbell page, at the victim's address: not
            //    mapped in the attacker, so the store faults on the core.
            let rang = ctx
                .mmio_write(qv.doorbell, &1u64.to_le_bytes(), "doorbell")
                .await;
            r.borrow_mut()
                .push(("foreign doorbell faults", rang.is_err()));
            let mut q = QueuePair::new(ctx.clone(), qe, VerbsCosts::default()).unwrap();
            // 2. A send naming the victim's region by its key and address;
            // 3. its own key over the victim's address.
            for (wr_id, lkey) in [(1, mv.lkey), (2, me.lkey)] {
                let wqe = SendWqe {
                    wr_id,
                    addr: mv.iova,
                    length: 256,
                    lkey,
                    dest: to(&qp, B_MAC, B_IP),
                };
                q.post_send(wqe).await.unwrap();
            }
            // 4. A receive into the victim's memory.
            q.post_recv(RecvWqe {
                wr_id: 3,
                addr: mv.iova,
                length: 1024,
                lkey: mv.lkey,
            })
            .await
            .unwrap();
            let mut out = Vec::new();
            while out.len() < 3 {
                q.wait_cq().await;
                q.poll_cq(&mut out, 4).await.unwrap();
            }
            for c in out {
                r.borrow_mut().push((
                    match c.wr_id {
                        1 => "send with the victim's key refused",
                        2 => "send over the victim's memory refused",
                        _ => "receive into the victim's memory refused",
                    },
                    c.status == status::LOCAL_PROTECTION,
                ));
            }
        });
    }
    {
        // The peer sends the attacker's QP a datagram to land somewhere.
        let ctx = tp.ctx.clone();
        sim.spawn(async move {
            let mut q = QueuePair::new(ctx.clone(), qp, VerbsCosts::default()).unwrap();
            ctx.spin_until_time(at_us(50)).await;
            ctx.poke(mp.va, &[0xee; 64]).unwrap();
            send(&mut q, &mp, mp.va, 64, 7, to(&qe, A_MAC, A_IP)).await;
        });
    }
    sim.run_until(at_us(2000));
    let r = results.borrow();
    assert_eq!(r.len(), 4, "{r:?}");
    for (what, ok) in r.iter() {
        assert!(ok, "{what}");
    }
    // Nothing left the attacker's host, nothing of the victim's changed.
    let ca = nic_counters(&da);
    assert_eq!(ca.get("tx_frames"), 0, "{ca:?}");
    assert_eq!(ca.get("protection_errors"), 3);
    assert_eq!(ca.get("rx_delivered"), 0);
    assert_eq!(nic_counters(&db).get("rx_frames"), 0);
    let mut now = vec![0u8; 256];
    tv.ctx.peek(mv.va, &mut now).unwrap();
    assert_eq!(now, secret);
    assert_eq!(da.nic().borrow().counters().get("doorbells.send"), 2);
    assert_conserved(&ca);
}
