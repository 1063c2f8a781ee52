//! The RDMA NIC's receive engine: a RoCEv2 UD SEND for one of this NIC's
//! QPs waits out the receive pipeline, then the engine serves it (up to
//! `processing_units` frames at once, at most one per QP, so a QP's
//! receives complete in arrival order) — the
//! QP's context (cached or fetched), the queue key, the next receive WQE
//! (read by DMA: Kalia et al., ATC'16 §3.1, a RECV costs the NIC a
//! descriptor read), the region check, then the GRH and message written
//! into the buffer and the CQE behind them.
//!
//! Invariant: every frame that reaches the port ends in exactly one of
//! `rx_delivered`, `rx_error_completions` (a receive WQE consumed with a
//! length or protection error) or a `drop.rx_*` counter.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use nextio_engine::Duration;

use super::transport::{self, GRH_BYTES, GRH_IPV4_OFFSET, UdPacket};
use super::wqe::{Cqe, CqeOpcode, RECV_WQE_BYTES, RecvWqe, status};
use super::{Engine, QpContext, RdmaNic, Tag};
use crate::device::DeviceCtx;
use crate::packet::Frame;

/// Bytes of an IPv4 header without options (what the GRH carries).
const IPV4_HEADER_BYTES: usize = 20;

#[derive(Default)]
pub(super) struct RxEngine {
    /// Frames in the receive pipeline, in arrival order.
    pipeline: VecDeque<RxFrame>,
    /// Frames out of the pipeline waiting for the engine.
    queue: VecDeque<RxFrame>,
    jobs: BTreeMap<u64, RxJob>,
    /// QPs with a job in flight.
    busy: BTreeSet<u32>,
    seq: u64,
}

struct RxFrame {
    packet: UdPacket,
    bytes: Vec<u8>,
}

struct RxJob {
    frame: RxFrame,
    ctx: Option<QpContext>,
}

impl RdmaNic {
    /// A frame arrived on the port.
    pub(super) fn receive(&mut self, cx: &mut DeviceCtx<'_>, frame: Frame) {
        self.counters.inc("rx_frames");
        let Some(packet) = transport::parse(&frame.bytes) else {
            return self.counters.inc("drop.rx_not_rocev2");
        };
        if !self.qps.contains_key(&packet.header.dest_qpn) {
            return self.counters.inc("drop.rx_no_qp");
        }
        let waiting = self.rx.pipeline.len() + self.rx.queue.len();
        if waiting >= self.cfg.rx_queue_frames {
            return self.counters.inc("drop.rx_queue_full");
        }
        self.rx.pipeline.push_back(RxFrame {
            packet,
            bytes: frame.bytes,
        });
        let delay = Duration::from_ps(self.cfg.rx_pipeline_ps);
        cx.set_timer(delay, Tag::RxPipeline.encode());
    }

    /// The oldest frame in the pipeline reached the engine.
    pub(super) fn rx_pipeline_done(&mut self, cx: &mut DeviceCtx<'_>) {
        if let Some(f) = self.rx.pipeline.pop_front() {
            self.rx.queue.push_back(f);
        }
        self.rx_kick(cx);
    }

    fn rx_kick(&mut self, cx: &mut DeviceCtx<'_>) {
        while self.rx.jobs.len() < self.cfg.processing_units {
            // The oldest frame whose QP has no job in flight.
            let busy = &self.rx.busy;
            let Some(at) = self
                .rx
                .queue
                .iter()
                .position(|f| !busy.contains(&f.packet.header.dest_qpn))
            else {
                return;
            };
            let Some(frame) = self.rx.queue.remove(at) else {
                return;
            };
            let qpn = frame.packet.header.dest_qpn;
            if !self.qps.contains_key(&qpn) {
                self.counters.inc("drop.rx_no_qp");
                continue;
            }
            self.rx.seq += 1;
            let seq = self.rx.seq;
            self.rx.busy.insert(qpn);
            self.rx.jobs.insert(seq, RxJob { frame, ctx: None });
            match self.context(cx, qpn, Engine::Rx, seq) {
                Ok(Some(c)) => self.rx_context(cx, seq, Some(c)),
                Ok(None) => {}
                Err(()) => self.rx_context(cx, seq, None),
            }
        }
    }

    fn rx_job(&mut self, seq: u64) -> Option<&mut RxJob> {
        let job = self.rx.jobs.get_mut(&seq);
        if job.is_none() {
            self.counters.inc("unexpected_dma_events");
        }
        job
    }

    /// End job `seq` and take the next frame.
    fn rx_finish(&mut self, cx: &mut DeviceCtx<'_>, seq: u64) {
        if let Some(job) = self.rx.jobs.remove(&seq) {
            self.rx.busy.remove(&job.frame.packet.header.dest_qpn);
        }
        self.rx_kick(cx);
    }

    fn rx_drop(&mut self, cx: &mut DeviceCtx<'_>, seq: u64, reason: &'static str) {
        self.counters.inc(reason);
        self.rx_finish(cx, seq);
    }

    /// The job's QP context is known (`None`: it could not be read).
    pub(super) fn rx_context(&mut self, cx: &mut DeviceCtx<'_>, seq: u64, ctx: Option<QpContext>) {
        let Some(job) = self.rx_job(seq) else {
            return;
        };
        let qpn = job.frame.packet.header.dest_qpn;
        let qkey = job.frame.packet.header.qkey;
        let Some(ctx) = ctx else {
            return self.rx_drop(cx, seq, "drop.rx_context");
        };
        job.ctx = Some(ctx);
        self.cache.insert(qpn, ctx);
        if qkey != ctx.qkey {
            return self.rx_drop(cx, seq, "drop.rx_bad_qkey");
        }
        let Some(st) = self.qps.get_mut(&qpn) else {
            return self.rx_drop(cx, seq, "drop.rx_no_qp");
        };
        if st.rq_next >= st.rq_producer {
            // UD: no receive posted, the datagram is silently lost.
            return self.rx_drop(cx, seq, "drop.rx_no_recv_wqe");
        }
        let index = st.rq_next;
        st.rq_next += 1;
        let addr = ctx.rq + (index % ctx.rq_entries as u64) * RECV_WQE_BYTES;
        if cx
            .dma_read(addr, RECV_WQE_BYTES, "wqe", Tag::RxWqe(seq).encode())
            .is_err()
        {
            self.rx_drop(cx, seq, "drop.rx_wqe_dma_error");
        }
    }

    /// The job's receive WQE arrived (`None`: the read faulted).
    pub(super) fn rx_wqe_read(&mut self, cx: &mut DeviceCtx<'_>, seq: u64, data: Option<&[u8]>) {
        // The job ends here whatever happens.
        let Some(job) = self.rx.jobs.remove(&seq) else {
            return self.counters.inc("unexpected_dma_events");
        };
        self.rx.busy.remove(&job.frame.packet.header.dest_qpn);
        let (Some(ctx), Some(wqe)) = (job.ctx, data.and_then(RecvWqe::decode)) else {
            self.counters.inc("drop.rx_wqe_fault");
            return self.rx_kick(cx);
        };
        let p = &job.frame.packet;
        let qpn = p.header.dest_qpn;
        let need = GRH_BYTES + p.message_len as u64;
        let mut cqe = Cqe {
            wr_id: wqe.wr_id,
            byte_len: 0,
            qpn,
            src_qpn: p.header.src_qpn,
            opcode: CqeOpcode::Recv,
            status: status::SUCCESS,
            owner: 0,
        };
        if (wqe.length as u64) < need {
            cqe.status = status::LOCAL_LENGTH;
        } else if !self.mrs.check(ctx.pd, wqe.lkey, wqe.addr, need) {
            self.counters.inc("protection_errors");
            cqe.status = status::LOCAL_PROTECTION;
        }
        if cqe.status != status::SUCCESS {
            self.counters.inc("rx_error_completions");
        } else {
            // The GRH (the IPv4 header in its last 20 bytes), then the message.
            let mut buf = vec![0u8; GRH_BYTES as usize];
            let ip = &job.frame.bytes[p.ip_offset..p.ip_offset + IPV4_HEADER_BYTES];
            buf[GRH_IPV4_OFFSET..].copy_from_slice(ip);
            buf.extend_from_slice(
                &job.frame.bytes[p.message_offset..p.message_offset + p.message_len],
            );
            let len = p.message_len as u64;
            match cx.dma_write(wqe.addr, &buf, "packet-data", Tag::RxData.encode()) {
                Ok(_) => {
                    self.counters.inc("rx_delivered");
                    self.counters.add("rx_bytes", len);
                    cqe.byte_len = need as u32;
                }
                Err(_) => {
                    self.counters.inc("rx_error_completions");
                    cqe.status = status::GENERAL;
                }
            }
        }
        self.complete(cx, qpn, &ctx, cqe);
        self.rx_kick(cx);
    }
}
