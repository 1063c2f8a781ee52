//! The RDMA side of the Accio testbed (§8.1: both test servers also carry
//! ConnectX-5 NICs, used for the RDMA runs): a test server with the RDMA
//! NIC, a verbs echo server on it, and the client's ping-pong step. The
//! client and the echo server speak UD SEND/RECV; each echo is sent from
//! the buffer the request landed in (after its GRH) back to the
//! requesting QP, after the server's slowdown, and the buffer is posted
//! again once that send has completed.
//!
//! What is measured is as for every client (see [`super::pingpong`]): the
//! NIC stamps of the RoCEv2 frames (the taps find the message after the
//! BTH and DETH) against the client's software stamps.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use nextio_engine::{Duration, Sim, Time};
use nextio_hw::ethernet::LinkConfig;
use nextio_hw::machine::MachineSpec;
use nextio_hw::mem::VirtAddr;
use nextio_hw::nic::rdma::{
    Cqe, CqeOpcode, GRH_BYTES, RdmaNicConfig, RecvWqe, SendWqe, UdAddress, status,
};
use nextio_lib::rdma::{QueuePair, VerbsCosts, VerbsError, sge};
use nextio_os::rdma::{Mr, QpResources, QpSizes, RdmaDriver};
use nextio_os::{Host, OsCosts, Process};

use super::common::{
    CLIENT_IP, CLIENT_MAC, Framing, SERVER_IP, SERVER_MAC, SharedStamps, cfg, join_stamped_as,
};
use super::multi::{Log, MultiResult};
use super::pingpong::message;
use crate::experiment::{RunContext, RunError, SimTally};

/// The queue key every QP of the testbed uses.
pub const QKEY: u32 = 0x1111_1111;
/// Bytes of one receive buffer: the GRH and the largest message.
pub const SLOT_BYTES: u64 = 2048;
/// Receive buffers each echo QP keeps posted.
const ECHO_SLOTS: u32 = 16;
/// Where the sender's IPv4 address sits in a received GRH (its IPv4
/// header's source field, the header in the GRH's last 20 bytes).
const GRH_SRC_IP: u64 = 20 + 12;

/// Join the client's and the server's RDMA NICs with a stamped wire
/// carrying RoCEv2; the logs of the wires client → server and back.
pub fn join(
    client: &Host,
    cdrv: &RdmaDriver,
    server: &Host,
    sdrv: &RdmaDriver,
) -> Result<(SharedStamps, SharedStamps), RunError> {
    join_stamped_as(
        client.machine(),
        cdrv.nic().id,
        server.machine(),
        sdrv.nic().id,
        LinkConfig::default(),
        Framing::RoceV2,
    )
}

/// A test server with an RDMA NIC at `mac`, `ip`, and `cores` cores.
pub fn rdma_host(
    sim: &Sim,
    mac: [u8; 6],
    ip: Ipv4Addr,
    cores: usize,
) -> Result<(Host, RdmaDriver), RunError> {
    let host = Host::new(sim, MachineSpec::accio_server(cores), OsCosts::default()).map_err(cfg)?;
    let nic = RdmaNicConfig {
        mac,
        ip,
        ..RdmaNicConfig::default()
    };
    let drv = RdmaDriver::attach(&host, nic).map_err(cfg)?;
    Ok((host, drv))
}

/// A process's QP and a region of `bytes` for its buffers.
pub fn open(
    drv: &RdmaDriver,
    p: &Process,
    sizes: QpSizes,
    bytes: u64,
) -> Result<(QpResources, Mr), RunError> {
    let qp = drv.create_qp(p, sizes, QKEY).map_err(cfg)?;
    let mr = drv.reg_mr(p, bytes).map_err(cfg)?;
    Ok((qp, mr))
}

/// Post a receive of a whole slot at `va`.
pub async fn post_slot(
    q: &mut QueuePair,
    mr: &Mr,
    va: VirtAddr,
    wr_id: u64,
) -> Result<(), VerbsError> {
    let (addr, lkey) = sge(mr, va, SLOT_BYTES as u32)?;
    q.post_recv(RecvWqe {
        wr_id,
        addr,
        length: SLOT_BYTES as u32,
        lkey,
    })
    .await
}

/// Post a send of `len` bytes at `va` to `dest`.
pub async fn post_message(
    q: &mut QueuePair,
    mr: &Mr,
    va: VirtAddr,
    len: u32,
    wr_id: u64,
    dest: UdAddress,
) -> Result<(), VerbsError> {
    let (addr, lkey) = sge(mr, va, len)?;
    q.post_send(SendWqe {
        wr_id,
        addr,
        length: len,
        lkey,
        dest,
    })
    .await
}

/// One verbs echo server per QP on `host`, placed round robin on the
/// cores after the first, each echo after `delay`, replies addressed to
/// `peer_mac` (the client host's; the IP and QP come from the request).
/// Returns the echo QPs' numbers.
pub fn echo_server(
    host: &Host,
    drv: &RdmaDriver,
    qps: usize,
    delay: Duration,
    peer_mac: [u8; 6],
) -> Result<Vec<u32>, RunError> {
    let cores = host.machine().cores().len().max(2);
    let mut qpns = Vec::new();
    for k in 0..qps {
        let p = host.create_process().map_err(cfg)?;
        let t = p.thread(1 + k % (cores - 1)).map_err(cfg)?;
        let sizes = QpSizes::new(ECHO_SLOTS, ECHO_SLOTS);
        let (qp, mr) = open(drv, &p, sizes, ECHO_SLOTS as u64 * SLOT_BYTES)?;
        qpns.push(qp.qpn);
        let ctx = t.ctx.clone();
        host.sim().spawn(async move {
            let Ok(mut q) = QueuePair::new(ctx.clone(), qp, VerbsCosts::default()) else {
                return;
            };
            let slot = |i: u64| mr.va.offset(i * SLOT_BYTES);
            for i in 0..ECHO_SLOTS as u64 {
                if post_slot(&mut q, &mr, slot(i), i).await.is_err() {
                    return;
                }
            }
            let mut done: Vec<Cqe> = Vec::new();
            loop {
                q.wait_cq().await;
                done.clear();
                if q.poll_cq(&mut done, ECHO_SLOTS as usize).await.is_err() {
                    return;
                }
                for c in done.iter() {
                    let ok = match c.opcode {
                        // The echo's send completed: the slot is free again.
                        CqeOpcode::Send => post_slot(&mut q, &mr, slot(c.wr_id), c.wr_id).await,
                        CqeOpcode::Recv if c.status != status::SUCCESS => {
                            post_slot(&mut q, &mr, slot(c.wr_id), c.wr_id).await
                        }
                        CqeOpcode::Recv => {
                            if delay > Duration::ZERO {
                                let until = ctx.local_now() + delay;
                                ctx.spin_until_time(until).await;
                            }
                            let mut ip = [0u8; 4];
                            if ctx.peek(slot(c.wr_id).offset(GRH_SRC_IP), &mut ip).is_err() {
                                return;
                            }
                            let dest = UdAddress {
                                mac: peer_mac,
                                ip: Ipv4Addr::from(ip),
                                qpn: c.src_qpn,
                                qkey: QKEY,
                            };
                            let len = c.byte_len.saturating_sub(GRH_BYTES as u32);
                            let at = slot(c.wr_id).offset(GRH_BYTES);
                            post_message(&mut q, &mr, at, len, c.wr_id, dest).await
                        }
                    };
                    if ok.is_err() {
                        return;
                    }
                }
            }
        });
    }
    Ok(qpns)
}

/// The client's step of a ping-pong: post a receive for the echo into
/// `rx`, send the `len` bytes at `tx` to `dest`, and poll until the echo
/// has arrived (the send's completion is consumed on the way). Returns
/// the echo's completion.
pub async fn ping(
    q: &mut QueuePair,
    mr: &Mr,
    tx: VirtAddr,
    rx: VirtAddr,
    len: u32,
    dest: UdAddress,
) -> Result<Cqe, String> {
    post_slot(q, mr, rx, 1).await.map_err(|e| e.to_string())?;
    post_message(q, mr, tx, len, 0, dest)
        .await
        .map_err(|e| e.to_string())?;
    let mut done = Vec::new();
    loop {
        q.wait_cq().await;
        done.clear();
        q.poll_cq(&mut done, 4).await.map_err(|e| e.to_string())?;
        if let Some(bad) = done.iter().find(|c| c.status != status::SUCCESS) {
            return Err(format!("completion failed: {bad:?}"));
        }
        if let Some(c) = done.iter().find(|c| c.opcode == CqeOpcode::Recv) {
            return Ok(*c);
        }
    }
}

/// Most client processes [`multi`] runs: each polls on its own core of a
/// test server (72 cores, §8.1).
pub const MAX_PROCESSES: usize = 72;

/// Fig. 8's RDMA: `threads` client processes on a test server, each with
/// one QP (the paper's "multiple queue pairs") and its own core, each
/// ping-ponging `messages` of `size` bytes with its own echo QP on the
/// other test server. Sequence numbers are `process << 32 | message`.
pub fn multi(
    ctx: &RunContext,
    threads: usize,
    messages: u64,
    size: usize,
    label: &str,
) -> Result<MultiResult, RunError> {
    if threads == 0 || threads > MAX_PROCESSES || messages == 0 {
        return Err(RunError::Config(format!(
            "{label}: RDMA runs 1 to {MAX_PROCESSES} processes (each polls on its own core of a test server), with messages"
        )));
    }
    let sim = ctx.new_sim();
    let (client, cdrv) = rdma_host(&sim, CLIENT_MAC, CLIENT_IP, threads.max(2))?;
    let (server, sdrv) = rdma_host(&sim, SERVER_MAC, SERVER_IP, (threads + 1).min(72))?;
    let echo = echo_server(&server, &sdrv, threads, Duration::ZERO, CLIENT_MAC)?;
    let (ab, ba) = join(&client, &cdrv, &server, &sdrv)?;
    let log = Rc::new(RefCell::new(Log::default()));
    let start = Time::ZERO + Duration::from_us(50);
    for (k, &qpn) in echo.iter().enumerate() {
        let p = client.create_process().map_err(cfg)?;
        let t = p.thread(k).map_err(cfg)?;
        let (qp, mr) = open(&cdrv, &p, QpSizes::new(4, 4), 2 * SLOT_BYTES)?;
        let dest = UdAddress {
            mac: SERVER_MAC,
            ip: SERVER_IP,
            qpn,
            qkey: QKEY,
        };
        let (tx, rx) = (mr.va, mr.va.offset(SLOT_BYTES));
        let (ctx, log) = (t.ctx.clone(), log.clone());
        sim.spawn(async move {
            let fail = |e: String| {
                log.borrow_mut().failed.get_or_insert(e);
            };
            let mut q = match QueuePair::new(ctx.clone(), qp, VerbsCosts::default()) {
                Ok(q) => q,
                Err(e) => return fail(e.to_string()),
            };
            ctx.spin_until_time(start).await;
            for i in 0..messages {
                let seq = (k as u64) << 32 | i;
                if ctx.poke(tx, &message(seq, size)).is_err() {
                    return fail("poke".into());
                }
                log.borrow_mut().sent(seq, ctx.local_now());
                if let Err(e) = ping(&mut q, &mr, tx, rx, size as u32, dest).await {
                    return fail(e);
                }
                let mut b = [0u8; 8];
                let _ = ctx.peek(rx.offset(GRH_BYTES), &mut b);
                log.borrow_mut().got(u64::from_be_bytes(b), ctx.local_now());
            }
        });
    }
    let total = messages * threads as u64;
    sim.run_until(start + Duration::from_ms(1).times(messages + 5));
    let l = log.borrow();
    let (processing_us, rate_per_s) = l.measure(label, &ab, &ba)?;
    let nic = cdrv.nic().borrow().all_counters();
    let r = MultiResult {
        processing_us,
        rate_per_s,
        sent: l.sent.len() as u64,
        echoed: l.got.len() as u64,
        to_rings: nic.get("rx_delivered"),
        to_fallback: 0,
        dropped: nic.sum_prefix("drop."),
        os: nic,
        tally: SimTally::of(&sim, 2 * total),
    };
    drop(l);
    ctx.write_artefacts(label, &sim)?;
    sim.shutdown();
    if r.echoed != total {
        return Err(RunError::Config(format!(
            "{label}: {} of {total} echoes came back ({} dropped)",
            r.echoed, r.dropped
        )));
    }
    Ok(r)
}
