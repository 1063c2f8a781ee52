//! The receive path: admission into the on-NIC packet buffer, RSS
//! steering, the per-queue descriptor cache and its prefetch, the DMA of
//! each frame into the buffer its descriptor names, and the batched
//! write-back that publishes frames to software.
//!
//! Invariants:
//! * every frame ends in exactly one of `rx_delivered` and `drop.rx_*`,
//!   unless the NIC still holds it ([`super::PacketizedNic::rx_frames_held`]);
//! * a queue's frames take its descriptors in ring order, and its frames
//!   waiting for a descriptor are never overtaken: while any waits, the
//!   descriptor cache is empty;
//! * a frame waits only for a descriptor already being fetched, one
//!   descriptor per waiting frame;
//! * the packet buffer holds a frame from its admission until its DMA has
//!   left the NIC's port (or it is dropped).

use std::collections::VecDeque;

use nextio_engine::Time;

use crate::device::DeviceCtx;
use crate::packet::Frame;

use super::PacketizedNic;
use super::layout::{RX_DESC_BYTES, RxReadDesc, RxWbDesc};
use super::ring::{Fetched, Fetches, Ring};
use super::rss::{MICROSOFT_RSS_KEY, rss_hash};
use super::tag::{Op, Tag};

/// A frame written to its buffer whose descriptor is not written back yet.
#[derive(Clone, Copy, Debug)]
struct Written {
    index: u32,
    len: u16,
    hash: u32,
}

#[derive(Debug, Default)]
pub(super) struct RxQueue {
    pub ring: Ring,
    fetches: Fetches,
    /// Fetched descriptors, in ring order: (index, buffer bus address).
    cache: VecDeque<(u32, u64)>,
    /// Frames admitted while their descriptor is being fetched, in arrival
    /// order, with their RSS hash.
    waiting: VecDeque<(Frame, u32)>,
    pending: Vec<Written>,
    /// Sequence number of the write-back timer for the current batch; a
    /// timer that finds another number is for a batch already written.
    flush_timer: Option<u64>,
}

impl RxQueue {
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// Occupancy of the on-NIC receive packet buffer.
#[derive(Debug)]
pub(super) struct PacketBuffer {
    capacity: u64,
    held: u64,
    /// Frames whose DMA is issued: (when it has left the NIC, bytes), in
    /// issue order — the order the NIC's one upstream port sends them.
    leaving: VecDeque<(Time, u64)>,
}

impl PacketBuffer {
    pub fn new(capacity: u64) -> PacketBuffer {
        PacketBuffer {
            capacity,
            held: 0,
            leaving: VecDeque::new(),
        }
    }

    /// Give back the space of frames whose DMA has left by `now`.
    fn release(&mut self, now: Time) {
        while let Some(&(t, len)) = self.leaving.front() {
            if t > now {
                break;
            }
            self.leaving.pop_front();
            self.held -= len;
        }
    }

    fn has_room(&self, len: u64) -> bool {
        self.held + len <= self.capacity
    }

    fn hold(&mut self, len: u64) {
        self.held += len;
    }

    /// A held frame's DMA was issued; its space frees at `at`.
    fn leaves(&mut self, at: Time, len: u64) {
        self.leaving.push_back((at, len));
    }

    /// A held frame was dropped before its DMA.
    fn free(&mut self, len: u64) {
        self.held -= len;
    }
}

impl PacketizedNic {
    /// Reprogram RX queue `q` with `ring`. Frames waiting for the old
    /// ring's descriptors are dropped; its fetches in flight will match
    /// nothing.
    pub(super) fn rx_reset(&mut self, q: usize, ring: Ring) {
        let old = std::mem::take(&mut self.rx[q]);
        for (frame, _) in old.waiting {
            self.buffer.free(frame.bytes.len() as u64);
            self.counters.inc("drop.rx_queue_reset");
        }
        self.rx[q].ring = ring;
    }

    /// `QRX_TAIL(q)` reached the NIC: descriptors up to `value` are
    /// software's gift.
    pub(super) fn rx_tail_written(&mut self, cx: &mut DeviceCtx<'_>, q: usize, value: u32) {
        if !self.rx[q].ring.set_tail(value) {
            self.counters.inc("bad_register_writes");
            return;
        }
        self.rx_prefetch(cx, q);
    }

    /// Fetch RX descriptors while the cache has room for a batch and the
    /// ring holds posted, unfetched descriptors.
    fn rx_prefetch(&mut self, cx: &mut DeviceCtx<'_>, q: usize) {
        let batch = self.cfg.rx_desc_fetch_batch;
        loop {
            let rxq = &mut self.rx[q];
            let held = rxq.cache.len() as u32 + rxq.fetches.promised();
            if self.cfg.rx_desc_cache.saturating_sub(held) < batch {
                return;
            }
            let Some((first, n)) = rxq.ring.take_fetch(batch) else {
                return;
            };
            let seq = self.seq.next();
            let addr = rxq.ring.addr(first, RX_DESC_BYTES);
            let tag = Tag::new(Op::RxFetch, q, seq).encode();
            match cx.dma_read(addr, n as u64 * RX_DESC_BYTES, "descriptor", tag) {
                Ok(()) => rxq.fetches.issued(seq, first, n),
                Err(_) => {
                    // Not fetched after all: the next occasion tries again.
                    rxq.ring.fetch_next = first;
                    self.counters.inc("rx_fetch_error");
                    return;
                }
            }
        }
    }

    pub(super) fn rx_fetch_done(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        q: usize,
        seq: u64,
        data: &[u8],
    ) {
        if self
            .rx
            .get_mut(q)
            .is_some_and(|rxq| rxq.fetches.arrived(seq, data))
        {
            self.rx_release_fetches(cx, q);
        } else {
            self.counters.inc("stale_completions");
        }
    }

    /// Model choice: the descriptors a faulting fetch covered are lost (the
    /// NIC cannot use what it could not read); frames waiting for them are
    /// dropped, and the queue goes on with the descriptors after them.
    pub(super) fn rx_fetch_fault(&mut self, cx: &mut DeviceCtx<'_>, q: usize, seq: u64) {
        if self
            .rx
            .get_mut(q)
            .is_some_and(|rxq| rxq.fetches.faulted(seq))
        {
            self.counters.inc("rx_descriptor_fetch_faults");
            self.rx_release_fetches(cx, q);
        } else {
            self.counters.inc("stale_completions");
        }
    }

    /// Move fetches that are complete, in ring order, into the cache, and
    /// give their descriptors to the frames waiting for them.
    fn rx_release_fetches(&mut self, cx: &mut DeviceCtx<'_>, q: usize) {
        let rxq = &mut self.rx[q];
        while let Some(f) = rxq.fetches.release() {
            if let Fetched::Arrived { first, n, bytes } = f {
                let descs = bytes.chunks_exact(RX_DESC_BYTES as usize).take(n as usize);
                for (i, d) in descs.enumerate() {
                    let index = (first + i as u32) % rxq.ring.entries;
                    rxq.cache
                        .push_back((index, RxReadDesc::new_unchecked(d).pkt_addr()));
                }
            }
        }
        while !self.rx[q].waiting.is_empty() {
            let rxq = &mut self.rx[q];
            let Some((index, buffer)) = rxq.cache.pop_front() else {
                break;
            };
            let Some((frame, hash)) = rxq.waiting.pop_front() else {
                break;
            };
            self.rx_dma(cx, q, index, buffer, frame, hash);
        }
        // Frames beyond what the fetches still in flight can serve will
        // never get a descriptor.
        let rxq = &mut self.rx[q];
        while rxq.waiting.len() > rxq.fetches.promised() as usize {
            if let Some((frame, _)) = rxq.waiting.pop_back() {
                self.buffer.free(frame.bytes.len() as u64);
                self.counters.inc("drop.rx_descriptor_fault");
            }
        }
        self.rx_prefetch(cx, q);
    }

    /// A frame leaves the receive pipeline: steer it and give it a
    /// descriptor, a place in the queue of frames waiting for one, or a
    /// drop reason.
    pub(super) fn rx_accept(&mut self, cx: &mut DeviceCtx<'_>, frame: Frame) {
        let len = frame.bytes.len() as u64;
        if len == 0 || len > self.cfg.rx_max_frame_bytes {
            self.counters.inc("drop.rx_oversize");
            return;
        }
        let hash = rss_hash(&MICROSOFT_RSS_KEY, &frame.bytes);
        let q = self.lut.queue(hash);
        let hash = hash.unwrap_or(0);
        self.buffer.release(cx.now());
        if !self.buffer.has_room(len) {
            self.counters.inc("drop.rx_fifo_full");
            return;
        }
        if !self.rx[q].ring.configured() {
            self.counters.inc("drop.rx_queue_disabled");
            return;
        }
        if self.rx[q].cache.is_empty() {
            self.rx_prefetch(cx, q);
        }
        let rxq = &mut self.rx[q];
        let descriptor = rxq.cache.pop_front();
        if descriptor.is_none() && rxq.fetches.promised() as usize <= rxq.waiting.len() {
            self.counters.inc("drop.rx_no_descriptor");
            return;
        }
        // The frame now holds buffer space until its DMA has left.
        self.buffer.hold(len);
        match descriptor {
            Some((index, buffer)) => {
                debug_assert!(rxq.waiting.is_empty(), "a frame overtook a waiting one");
                self.rx_dma(cx, q, index, buffer, frame, hash);
                self.rx_prefetch(cx, q);
            }
            // Its descriptor is still crossing PCIe: wait in the packet
            // buffer, behind this queue's earlier frames, rather than drop.
            None => rxq.waiting.push_back((frame, hash)),
        }
    }

    /// DMA-write one frame into its buffer and queue its descriptor for
    /// write-back.
    fn rx_dma(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        q: usize,
        index: u32,
        buffer: u64,
        frame: Frame,
        hash: u32,
    ) {
        let len = frame.bytes.len() as u64;
        let tag = Tag::new(Op::RxData, q, 0).encode();
        let posted = match cx.dma_write(buffer, &frame.bytes, "packet-data", tag) {
            Ok(p) => p,
            Err(_) => {
                self.buffer.free(len);
                self.counters.inc("drop.rx_bad_descriptor");
                return;
            }
        };
        self.counters.inc("rx_delivered");
        self.counters.add("rx_bytes", len);
        self.buffer.leaves(posted.sent_at, len);
        let rxq = &mut self.rx[q];
        rxq.pending.push(Written {
            index,
            // The configuration bounds frames to the 14-bit length field.
            len: len as u16,
            hash,
        });
        if rxq.pending.len() as u32 >= self.cfg.rx_wb_batch {
            self.rx_write_back(cx, q);
        } else if rxq.pending.len() == 1 {
            // Write back once this packet has had time to reach memory,
            // with whatever else has joined the batch by then.
            let seq = self.seq.next();
            rxq.flush_timer = Some(seq);
            let delay = (posted.sent_at - cx.now()) + self.cfg.rx_wb_delay;
            cx.set_timer(delay, Tag::new(Op::WriteBackFlush, q, seq).encode());
        }
    }

    /// The write-back timer of queue `q`'s batch `seq` expired.
    pub(super) fn rx_flush_due(&mut self, cx: &mut DeviceCtx<'_>, q: usize, seq: u64) {
        if self.rx.get(q).is_some_and(|r| r.flush_timer == Some(seq)) {
            self.rx_write_back(cx, q);
        }
    }

    /// Write the pending descriptors of queue `q` back, then send its
    /// interrupt if armed.
    fn rx_write_back(&mut self, cx: &mut DeviceCtx<'_>, q: usize) {
        let rxq = &mut self.rx[q];
        rxq.flush_timer = None;
        let pending = std::mem::take(&mut rxq.pending);
        let ring = rxq.ring;
        let tag = Tag::new(Op::RxWriteBack, q, 0).encode();
        let mut issued = false;
        // One DMA write per run of consecutive descriptors: a run ends at
        // the end of the ring, or where a faulted fetch left a gap.
        let runs = pending.chunk_by(|a, b| b.index == a.index + 1);
        for run in runs {
            let mut bytes = vec![0u8; run.len() * RX_DESC_BYTES as usize];
            for (d, w) in bytes.chunks_exact_mut(RX_DESC_BYTES as usize).zip(run) {
                RxWbDesc::new_unchecked(d).fill(w.len, w.hash);
            }
            let addr = ring.addr(run[0].index, RX_DESC_BYTES);
            match cx.dma_write(addr, &bytes, "descriptor", tag) {
                Ok(_) => issued = true,
                Err(_) => self.counters.add("rx_write_back_errors", run.len() as u64),
            }
        }
        if issued && let Some(vector) = self.irq[q].written_back() {
            // Behind the write-back on the same ordered posted lane: the
            // descriptors are in memory before the message arrives.
            cx.msix(vector);
            self.counters.inc("irq_messages");
        }
    }
}
