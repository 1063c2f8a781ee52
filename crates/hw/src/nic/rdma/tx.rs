//! The RDMA NIC's transmit engine: QPs whose send doorbell moved wait in
//! round-robin order; up to `processing_units` send WQEs are served at
//! once, at most one per QP (so a QP's sends complete in order) — context
//! (cached or fetched), WQE read, region check, message read, RoCEv2
//! frame, pipeline latency, port — and completes it with a CQE once the
//! frame is on the port (a UD send completes locally; the datagram is not
//! acknowledged). Frames leave the port in the order their pipeline
//! latency ended.
//!
//! Invariant: every WQE taken (`wqes.send`) ends in exactly one
//! completion, or in `drop.tx_context` when its QP's context cannot be
//! read (there is then no CQ to complete into). A port without a wire
//! loses the frame (`drop.tx_no_link`) yet completes the send, as UD does.

use std::collections::{BTreeMap, VecDeque};

use nextio_engine::Duration;

use super::transport::{self, UdHeader};
use super::wqe::{Cqe, CqeOpcode, SEND_WQE_BYTES, SendWqe, status};
use super::{Engine, QpContext, RdmaNic, Tag};
use crate::device::DeviceCtx;
use crate::packet::{Frame, Macs};

#[derive(Default)]
pub(super) struct TxEngine {
    /// QPs with posted, untaken send WQEs.
    ready: VecDeque<u32>,
    jobs: BTreeMap<u64, TxJob>,
    /// Jobs whose frame is built and through the pipeline, in order.
    port_wait: VecDeque<u64>,
    seq: u64,
    frames: u64,
}

struct TxJob {
    qpn: u32,
    /// The WQE's position in the send queue, counted from 0.
    index: u64,
    ctx: Option<QpContext>,
    wqe: Option<SendWqe>,
    /// Built, waiting for its pipeline latency or for room on the port.
    frame: Option<Frame>,
}

impl RdmaNic {
    /// QP `qpn`'s send producer index moved.
    pub(super) fn tx_doorbell(&mut self, cx: &mut DeviceCtx<'_>, qpn: u32) {
        // A QP being served is requeued when its WQE is done.
        if let Some(st) = self.qps.get_mut(&qpn)
            && !st.queued
            && !st.tx_busy
        {
            st.queued = true;
            self.tx.ready.push_back(qpn);
        }
        self.tx_kick(cx);
    }

    /// Take the next WQE if the engine is free.
    fn tx_kick(&mut self, cx: &mut DeviceCtx<'_>) {
        while self.tx.jobs.len() < self.cfg.processing_units {
            let Some(qpn) = self.tx.ready.pop_front() else {
                return;
            };
            let Some(st) = self.qps.get_mut(&qpn) else {
                continue;
            };
            st.queued = false;
            if st.tx_busy || st.sq_next >= st.sq_producer {
                continue;
            }
            let index = st.sq_next;
            st.sq_next += 1;
            st.tx_busy = true;
            self.tx.seq += 1;
            let seq = self.tx.seq;
            self.counters.inc("wqes.send");
            self.tx.jobs.insert(
                seq,
                TxJob {
                    qpn,
                    index,
                    ctx: None,
                    wqe: None,
                    frame: None,
                },
            );
            match self.context(cx, qpn, Engine::Tx, seq) {
                Ok(Some(c)) => self.tx_context(cx, seq, Some(c)),
                Ok(None) => {}
                Err(()) => self.tx_context(cx, seq, None),
            }
        }
    }

    /// Job `seq`, if it is still being served.
    fn tx_job(&mut self, seq: u64) -> Option<&mut TxJob> {
        let job = self.tx.jobs.get_mut(&seq);
        if job.is_none() {
            self.counters.inc("unexpected_dma_events");
        }
        job
    }

    /// The job's QP context is known (`None`: it could not be read).
    pub(super) fn tx_context(&mut self, cx: &mut DeviceCtx<'_>, seq: u64, ctx: Option<QpContext>) {
        let Some(job) = self.tx_job(seq) else {
            return;
        };
        let qpn = job.qpn;
        let Some(ctx) = ctx else {
            self.counters.inc("drop.tx_context");
            return self.tx_finish(cx, seq);
        };
        self.cache.insert(qpn, ctx);
        let Some(job) = self.tx_job(seq) else {
            return;
        };
        job.ctx = Some(ctx);
        let addr = ctx.sq + (job.index % ctx.sq_entries as u64) * SEND_WQE_BYTES;
        if cx
            .dma_read(addr, SEND_WQE_BYTES, "wqe", Tag::TxWqe(seq).encode())
            .is_err()
        {
            self.counters.inc("dma_errors.tx_wqe");
            self.tx_fail(cx, seq, 0, status::GENERAL);
        }
    }

    /// Complete job `seq` with an error and move on.
    fn tx_fail(&mut self, cx: &mut DeviceCtx<'_>, seq: u64, wr_id: u64, st: u8) {
        if let Some(job) = self.tx.jobs.get(&seq)
            && let Some(ctx) = job.ctx
        {
            let qpn = job.qpn;
            let cqe = Cqe {
                wr_id,
                byte_len: 0,
                qpn,
                src_qpn: 0,
                opcode: CqeOpcode::Send,
                status: st,
                owner: 0,
            };
            self.complete(cx, qpn, &ctx, cqe);
        }
        self.tx_finish(cx, seq);
    }

    /// The job's WQE arrived (`None`: the read faulted).
    pub(super) fn tx_wqe_read(&mut self, cx: &mut DeviceCtx<'_>, seq: u64, data: Option<&[u8]>) {
        let Some(job) = self.tx_job(seq) else {
            return;
        };
        let Some(ctx) = job.ctx else {
            return self.tx_finish(cx, seq);
        };
        let Some(data) = data else {
            return self.tx_fail(cx, seq, 0, status::GENERAL);
        };
        let Some(wqe) = SendWqe::decode(data) else {
            let wr_id = data
                .get(8..16)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            return self.tx_fail(cx, seq, wr_id, status::LOCAL_QP_OPERATION);
        };
        job.wqe = Some(wqe);
        let fits = wqe.length as usize
            + transport::UD_HEADERS_BYTES
            + crate::packet::UDP_HEADERS_BYTES
            + crate::packet::FCS_BYTES
            <= crate::packet::MAX_FRAME_BYTES;
        if !fits {
            return self.tx_fail(cx, seq, wqe.wr_id, status::LOCAL_LENGTH);
        }
        if !self
            .mrs
            .check(ctx.pd, wqe.lkey, wqe.addr, wqe.length as u64)
        {
            self.counters.inc("protection_errors");
            return self.tx_fail(cx, seq, wqe.wr_id, status::LOCAL_PROTECTION);
        }
        if wqe.length == 0 {
            return self.tx_data_read(cx, seq, Some(&[]));
        }
        if cx
            .dma_read(
                wqe.addr,
                wqe.length as u64,
                "packet-data",
                Tag::TxData(seq).encode(),
            )
            .is_err()
        {
            self.counters.inc("dma_errors.tx_data");
            self.tx_fail(cx, seq, wqe.wr_id, status::GENERAL);
        }
    }

    /// The job's message arrived (`None`: the read faulted).
    pub(super) fn tx_data_read(&mut self, cx: &mut DeviceCtx<'_>, seq: u64, data: Option<&[u8]>) {
        let (mac, ip) = (self.cfg.mac, self.cfg.ip);
        let Some(job) = self.tx_job(seq) else {
            return;
        };
        let (qpn, index) = (job.qpn, job.index);
        let Some(wqe) = job.wqe else {
            return self.tx_finish(cx, seq);
        };
        let Some(data) = data else {
            return self.tx_fail(cx, seq, wqe.wr_id, status::GENERAL);
        };
        let header = UdHeader {
            dest_qpn: wqe.dest.qpn,
            src_qpn: qpn,
            qkey: wqe.dest.qkey,
            // UD does not check sequence numbers; the WQE's index will do.
            psn: index as u32,
        };
        let macs = Macs {
            src: mac,
            dst: wqe.dest.mac,
        };
        match transport::build(macs, ip, wqe.dest.ip, header, data) {
            Ok(bytes) => {
                self.tx.frames += 1;
                let frame = Frame::new(bytes, self.tx.frames);
                if let Some(job) = self.tx.jobs.get_mut(&seq) {
                    job.frame = Some(frame);
                }
                let delay = Duration::from_ps(self.cfg.tx_pipeline_ps);
                cx.set_timer(delay, Tag::TxPipeline(seq).encode());
            }
            Err(_) => self.tx_fail(cx, seq, wqe.wr_id, status::LOCAL_LENGTH),
        }
    }

    /// Job `seq`'s frame is through the pipeline: it queues for the port.
    pub(super) fn tx_pipeline_done(&mut self, cx: &mut DeviceCtx<'_>, seq: u64) {
        self.tx.port_wait.push_back(seq);
        self.tx_send(cx);
    }

    /// Put waiting frames on the port in order until it is full.
    pub(super) fn tx_send(&mut self, cx: &mut DeviceCtx<'_>) {
        while let Some(&seq) = self.tx.port_wait.front() {
            let Some(job) = self.tx.jobs.get_mut(&seq) else {
                self.tx.port_wait.pop_front();
                continue;
            };
            let (Some(frame), Some(wqe), Some(ctx)) = (job.frame.take(), job.wqe, job.ctx) else {
                self.tx.port_wait.pop_front();
                continue;
            };
            let qpn = job.qpn;
            match cx.send_frame(0, frame) {
                Ok(_) => {
                    self.counters.inc("tx_frames");
                    self.counters.add("tx_bytes", wqe.length as u64);
                }
                Err(frame) if cx.port_connected(0) => {
                    job.frame = Some(frame);
                    cx.wake_when_port_ready(0);
                    return;
                }
                Err(_) => self.counters.inc("drop.tx_no_link"),
            }
            self.tx.port_wait.pop_front();
            let cqe = Cqe {
                wr_id: wqe.wr_id,
                byte_len: wqe.length,
                qpn,
                src_qpn: 0,
                opcode: CqeOpcode::Send,
                status: status::SUCCESS,
                owner: 0,
            };
            self.complete(cx, qpn, &ctx, cqe);
            self.tx_finish(cx, seq);
        }
    }

    /// End job `seq`; requeue its QP if it has more posted.
    fn tx_finish(&mut self, cx: &mut DeviceCtx<'_>, seq: u64) {
        if let Some(job) = self.tx.jobs.remove(&seq)
            && let Some(st) = self.qps.get_mut(&job.qpn)
        {
            st.tx_busy = false;
            if st.sq_next < st.sq_producer && !st.queued {
                st.queued = true;
                self.tx.ready.push_back(job.qpn);
            }
        }
        self.tx_kick(cx);
    }
}
