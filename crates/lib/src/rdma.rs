//! A user-level verbs library for the RDMA NIC (the shape of libibverbs
//! with the mlx5 provider, unreliable datagrams only): `post_send`,
//! `post_recv` and `poll_cq` on a queue pair the OS created
//! ([`nextio_os::rdma::RdmaDriver::create_qp`]).
//!
//! The fast path makes no system call: a post writes the WQE into the
//! ring in the process's memory and rings the QP's doorbell by one MMIO
//! store; a poll reads CQEs from the completion ring, a new one known by
//! its owner bit. Waiting for a completion is busy polling (charged as
//! polling on the core: verbs' completion channels, which sleep, are not
//! used by the latency-bound clients the paper compares against).
//!
//! Costs: the library's instructions are the preset's `[rdma_lib]`
//! cycles; every WQE and CQE access goes through the core's caches
//! ([`CoreCtx::load`]/[`CoreCtx::store`]); the doorbell's PCIe crossing is
//! timed by the fabric.
//!
//! Invariants: at most the ring's entries are outstanding on each queue
//! (a full queue is an error, never an overwrite of a WQE the NIC has not
//! taken); every CQE is consumed once, in order; the CQ consumer index
//! is reported to the NIC before the ring could fill.

use std::rc::Rc;

use nextio_engine::{Category, Notify};
use nextio_hw::cpu::{CoreCtx, MmioAccessError};
use nextio_hw::mem::{AccessError, VirtAddr};
use nextio_hw::nic::rdma::{
    CQE_BYTES, Cqe, CqeOpcode, Doorbell, RECV_WQE_BYTES, RecvWqe, SEND_WQE_BYTES, SendWqe,
};
use nextio_os::rdma::{Mr, QpResources};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The library's own instructions, in cycles of a server core: the root
/// preset's `[rdma_lib]`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerbsCosts {
    pub post_send_cycles: u64,
    pub post_recv_cycles: u64,
    pub poll_cq_cycles: u64,
    pub cqe_cycles: u64,
    pub doorbell_cycles: u64,
}

impl Default for VerbsCosts {
    /// The root preset's `[rdma_lib]`.
    fn default() -> Self {
        nextio_presets::root_section("rdma_lib")
    }
}

#[derive(Debug, Error)]
pub enum VerbsError {
    #[error("the {0} queue is full")]
    QueueFull(&'static str),
    #[error("the buffer is not inside the memory region")]
    NotInRegion,
    #[error(transparent)]
    Memory(#[from] AccessError),
    #[error(transparent)]
    Mmio(#[from] MmioAccessError),
}

/// A scatter entry: `len` bytes at `va` of region `mr`, as the NIC names
/// it (bus address and key).
pub fn sge(mr: &Mr, va: VirtAddr, len: u32) -> Result<(u64, u32), VerbsError> {
    let end =
        va.0.checked_add(len as u64)
            .ok_or(VerbsError::NotInRegion)?;
    match mr.iova_of(va) {
        Some(addr) if end <= mr.va.0 + mr.len => Ok((addr, mr.lkey)),
        _ => Err(VerbsError::NotInRegion),
    }
}

/// One queue pair of the process, driven from one thread.
pub struct QueuePair {
    ctx: CoreCtx,
    res: QpResources,
    costs: VerbsCosts,
    sq_posted: u64,
    sq_done: u64,
    rq_posted: u64,
    rq_done: u64,
    cq_consumed: u64,
    cq_reported: u64,
    cq_watch: Rc<Notify>,
}

impl QueuePair {
    pub fn new(ctx: CoreCtx, res: QpResources, costs: VerbsCosts) -> Result<QueuePair, VerbsError> {
        let cq_watch = ctx.watch(res.cq, res.sizes.cq_entries as u64 * CQE_BYTES)?;
        Ok(QueuePair {
            ctx,
            res,
            costs,
            sq_posted: 0,
            sq_done: 0,
            rq_posted: 0,
            rq_done: 0,
            cq_consumed: 0,
            cq_reported: 0,
            cq_watch,
        })
    }

    pub fn qpn(&self) -> u32 {
        self.res.qpn
    }

    pub fn qkey(&self) -> u32 {
        self.res.qkey
    }

    pub fn ctx(&self) -> &CoreCtx {
        &self.ctx
    }

    /// Send WQEs posted and not completed.
    pub fn sends_outstanding(&self) -> u64 {
        self.sq_posted - self.sq_done
    }

    /// Receive WQEs posted and not completed.
    pub fn recvs_outstanding(&self) -> u64 {
        self.rq_posted - self.rq_done
    }

    async fn ring(&self, reg: Doorbell, value: u64) -> Result<(), VerbsError> {
        self.ctx
            .cycles(Category::Driver, self.costs.doorbell_cycles);
        self.ctx
            .mmio_write(
                self.res.doorbell.offset(reg.offset()),
                &value.to_le_bytes(),
                "doorbell",
            )
            .await?;
        Ok(())
    }

    /// `ibv_post_send`: one UD SEND WQE, then the doorbell.
    pub async fn post_send(&mut self, wqe: SendWqe) -> Result<(), VerbsError> {
        let n = self.res.sizes.sq_entries as u64;
        if self.sq_posted - self.sq_done >= n {
            return Err(VerbsError::QueueFull("send"));
        }
        self.ctx
            .cycles(Category::Driver, self.costs.post_send_cycles);
        let slot = self.res.sq.offset((self.sq_posted % n) * SEND_WQE_BYTES);
        self.ctx.store(slot, &wqe.encode(), Category::Driver)?;
        self.sq_posted += 1;
        self.ring(Doorbell::SendProducer, self.sq_posted).await
    }

    /// `ibv_post_recv`: one receive WQE, then the doorbell.
    pub async fn post_recv(&mut self, wqe: RecvWqe) -> Result<(), VerbsError> {
        let n = self.res.sizes.rq_entries as u64;
        if self.rq_posted - self.rq_done >= n {
            return Err(VerbsError::QueueFull("receive"));
        }
        self.ctx
            .cycles(Category::Driver, self.costs.post_recv_cycles);
        let slot = self.res.rq.offset((self.rq_posted % n) * RECV_WQE_BYTES);
        self.ctx.store(slot, &wqe.encode(), Category::Driver)?;
        self.rq_posted += 1;
        self.ring(Doorbell::RecvProducer, self.rq_posted).await
    }

    fn slot(&self, index: u64) -> VirtAddr {
        let n = self.res.sizes.cq_entries as u64;
        self.res.cq.offset((index % n) * CQE_BYTES)
    }

    /// Whether the next CQE has been written (an uncharged look: the
    /// charged read is [`QueuePair::poll_cq`]'s).
    pub fn cqe_ready(&self) -> bool {
        let mut owner = [0u8; 1];
        let at = self.slot(self.cq_consumed).offset(CQE_BYTES - 1);
        self.ctx.peek(at, &mut owner).is_ok()
            && owner[0] == Cqe::owner_for(self.cq_consumed, self.res.sizes.cq_entries)
    }

    /// `ibv_poll_cq`: up to `max` completions into `out`; how many.
    pub async fn poll_cq(&mut self, out: &mut Vec<Cqe>, max: usize) -> Result<usize, VerbsError> {
        self.ctx.cycles(Category::Driver, self.costs.poll_cq_cycles);
        let n = self.res.sizes.cq_entries;
        let mut got = 0;
        while got < max {
            let mut b = [0u8; CQE_BYTES as usize];
            self.ctx
                .load(self.slot(self.cq_consumed), &mut b, Category::Driver)?;
            let Some(cqe) = Cqe::decode(&b) else {
                break;
            };
            if cqe.owner != Cqe::owner_for(self.cq_consumed, n) {
                break;
            }
            self.ctx.cycles(Category::Driver, self.costs.cqe_cycles);
            match cqe.opcode {
                CqeOpcode::Send => self.sq_done += 1,
                CqeOpcode::Recv => self.rq_done += 1,
            }
            self.cq_consumed += 1;
            out.push(cqe);
            got += 1;
        }
        // Report the consumer index every half ring, so the NIC never
        // finds the CQ full while software has room.
        if self.cq_consumed - self.cq_reported >= (n as u64 / 2).max(1) {
            self.cq_reported = self.cq_consumed;
            self.ring(Doorbell::CqConsumer, self.cq_consumed).await?;
        }
        Ok(got)
    }

    /// Busy-poll until a completion is there (charged as polling).
    pub async fn wait_cq(&self) {
        let w = self.cq_watch.clone();
        self.ctx.spin_until(&w, || self.cqe_ready()).await;
    }
}
