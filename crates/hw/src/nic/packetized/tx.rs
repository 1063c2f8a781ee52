//! The transmit path: descriptor fetches on a tail doorbell, a DMA read of
//! each packet's bytes, UDP checksum offload over those bytes, RS
//! write-backs, and the port, which holds frames back while the wire has
//! no room.
//!
//! Invariants:
//! * packets leave in ring order, and RS write-backs are issued in ring
//!   order, whatever order the reads' completions arrive in: a packet is
//!   finished only when every earlier one is;
//! * every descriptor fetched is counted in `tx_descriptors` when it is
//!   parsed, and ends as one `tx_frames` or one `drop.tx_*`;
//! * a frame the port cannot take is kept, never dropped; it goes out, in
//!   order, when the port has room.

use std::collections::VecDeque;

use crate::device::DeviceCtx;
use crate::packet::{self, Frame};

use super::PacketizedNic;
use super::layout::{
    TX_DESC_BYTES, TXD_CMD_EOP, TXD_CMD_L4T_MASK, TXD_CMD_L4T_UDP, TXD_CMD_RS, TXD_DTYPE_DATA,
    TxDataDesc,
};
use super::ring::{Fetched, Fetches, Ring};
use super::tag::{Op, Tag};

/// Where a packet stands.
#[derive(Debug)]
enum State {
    Reading,
    Read(Vec<u8>),
    /// Not sent, for the reason counted.
    Dropped(&'static str),
}

/// A packet whose descriptor has been fetched.
#[derive(Debug)]
struct Packet {
    seq: u64,
    index: u32,
    buf_addr: u64,
    cmd: u64,
    state: State,
}

#[derive(Debug, Default)]
pub(super) struct TxQueue {
    pub ring: Ring,
    fetches: Fetches,
    /// Packets in ring order, the oldest first.
    packets: VecDeque<Packet>,
}

/// The Ethernet port's transmit side.
#[derive(Debug, Default)]
pub(super) struct Port {
    /// Frames the wire had no room for, in order.
    backlog: VecDeque<Frame>,
    /// A wake-up is asked for.
    waiting: bool,
    /// Frames sent, for their ids.
    sent: u64,
}

impl PacketizedNic {
    /// Reprogram TX queue `q` with `ring`. Packets of the old ring not yet
    /// finished are dropped.
    pub(super) fn tx_reset(&mut self, q: usize, ring: Ring) {
        let old = std::mem::take(&mut self.tx[q]);
        let lost = old.packets.len() as u64;
        self.counters.add("drop.tx_queue_reset", lost);
        self.tx[q].ring = ring;
    }

    /// `QTX_COMM_DBELL(q)` reached the NIC: fetch every posted descriptor,
    /// a batch per DMA read; reads are pipelined up to the link's read
    /// tags.
    pub(super) fn tx_tail_written(&mut self, cx: &mut DeviceCtx<'_>, q: usize, value: u32) {
        let txq = &mut self.tx[q];
        if !txq.ring.set_tail(value) {
            self.counters.inc("bad_register_writes");
            return;
        }
        while let Some((first, n)) = txq.ring.take_fetch(self.cfg.tx_desc_fetch_batch) {
            let seq = self.seq.next();
            let addr = txq.ring.addr(first, TX_DESC_BYTES);
            let tag = Tag::new(Op::TxFetch, q, seq).encode();
            match cx.dma_read(addr, n as u64 * TX_DESC_BYTES, "descriptor", tag) {
                Ok(()) => txq.fetches.issued(seq, first, n),
                Err(_) => {
                    self.counters.add("tx_descriptors", n as u64);
                    self.counters.add("drop.tx_bad_descriptor", n as u64);
                }
            }
        }
    }

    pub(super) fn tx_fetch_done(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        q: usize,
        seq: u64,
        data: &[u8],
    ) {
        if self
            .tx
            .get_mut(q)
            .is_some_and(|txq| txq.fetches.arrived(seq, data))
        {
            self.tx_release_fetches(cx, q);
        } else {
            self.counters.inc("stale_completions");
        }
    }

    pub(super) fn tx_fetch_fault(&mut self, cx: &mut DeviceCtx<'_>, q: usize, seq: u64) {
        if self
            .tx
            .get_mut(q)
            .is_some_and(|txq| txq.fetches.faulted(seq))
        {
            self.tx_release_fetches(cx, q);
        } else {
            self.counters.inc("stale_completions");
        }
    }

    /// Parse the descriptors of completed fetches, in ring order, and
    /// start reading each packet.
    fn tx_release_fetches(&mut self, cx: &mut DeviceCtx<'_>, q: usize) {
        let txq = &mut self.tx[q];
        while let Some(f) = txq.fetches.release() {
            let (first, n, bytes) = match f {
                Fetched::Arrived { first, n, bytes } => (first, n, bytes),
                Fetched::Faulted { n, .. } => {
                    self.counters.add("tx_descriptors", n as u64);
                    self.counters.add("drop.tx_descriptor_fault", n as u64);
                    continue;
                }
            };
            let descs = bytes.chunks_exact(TX_DESC_BYTES as usize).take(n as usize);
            for (i, d) in descs.enumerate() {
                self.counters.inc("tx_descriptors");
                let d = TxDataDesc::new_unchecked(d);
                let len = d.buf_size();
                let cmd = d.cmd();
                let seq = self.seq.next();
                let frame_ok = d.dtype() == TXD_DTYPE_DATA
                    && len > 0
                    && len <= packet::MAX_FRAME_BYTES as u64
                    && cmd & TXD_CMD_EOP != 0;
                let state = if !frame_ok {
                    State::Dropped("drop.tx_bad_descriptor")
                } else {
                    let tag = Tag::new(Op::TxData, q, seq).encode();
                    match cx.dma_read(d.buf_addr(), len, "packet-data", tag) {
                        Ok(()) => State::Reading,
                        Err(_) => State::Dropped("drop.tx_bad_descriptor"),
                    }
                };
                txq.packets.push_back(Packet {
                    seq,
                    index: (first + i as u32) % txq.ring.entries,
                    buf_addr: d.buf_addr(),
                    cmd,
                    state,
                });
            }
        }
        self.tx_finish(cx, q);
    }

    fn tx_packet(&mut self, q: usize, seq: u64) -> Option<&mut Packet> {
        self.tx
            .get_mut(q)?
            .packets
            .iter_mut()
            .find(|p| p.seq == seq && matches!(p.state, State::Reading))
    }

    pub(super) fn tx_data_done(&mut self, cx: &mut DeviceCtx<'_>, q: usize, seq: u64, data: &[u8]) {
        match self.tx_packet(q, seq) {
            Some(p) => {
                p.state = State::Read(data.to_vec());
                self.tx_finish(cx, q);
            }
            None => self.counters.inc("stale_completions"),
        }
    }

    pub(super) fn tx_data_fault(&mut self, cx: &mut DeviceCtx<'_>, q: usize, seq: u64) {
        match self.tx_packet(q, seq) {
            Some(p) => {
                p.state = State::Dropped("drop.tx_data_fault");
                self.tx_finish(cx, q);
            }
            None => self.counters.inc("stale_completions"),
        }
    }

    /// Send (or count) the packets at the head of queue `q` that are
    /// ready, and write back their RS descriptors.
    fn tx_finish(&mut self, cx: &mut DeviceCtx<'_>, q: usize) {
        loop {
            let txq = &mut self.tx[q];
            if txq
                .packets
                .front()
                .is_none_or(|p| matches!(p.state, State::Reading))
            {
                return;
            }
            let Some(p) = txq.packets.pop_front() else {
                return;
            };
            let desc_addr = txq.ring.addr(p.index, TX_DESC_BYTES);
            match p.state {
                State::Read(mut data) => {
                    if p.cmd & TXD_CMD_L4T_MASK == TXD_CMD_L4T_UDP
                        && packet::refresh_udp_checksum(&mut data).is_err()
                    {
                        self.counters.inc("tx_csum_offload_not_udp");
                    }
                    self.tx_send(cx, data);
                }
                State::Dropped(reason) => self.counters.inc(reason),
                State::Reading => {}
            }
            if p.cmd & TXD_CMD_RS != 0 {
                self.tx_write_back(cx, q, desc_addr, p.buf_addr);
            }
        }
    }

    /// Write the RS descriptor back as done (`DTYPE = DESC_DONE`).
    fn tx_write_back(&mut self, cx: &mut DeviceCtx<'_>, q: usize, desc_addr: u64, buf_addr: u64) {
        let tag = Tag::new(Op::TxWriteBack, q, 0).encode();
        let done = TxDataDesc::done_for(buf_addr);
        if cx.dma_write(desc_addr, &done, "descriptor", tag).is_err() {
            self.counters.inc("tx_write_back_errors");
        }
    }

    /// Put a frame on the port, behind any it is holding back.
    fn tx_send(&mut self, cx: &mut DeviceCtx<'_>, data: Vec<u8>) {
        self.port.sent += 1;
        let frame = Frame::new(data, self.port.sent);
        if !self.port.backlog.is_empty() {
            self.port.backlog.push_back(frame);
            return;
        }
        self.tx_try_send(cx, frame);
    }

    /// Send `frame` now, or keep it (at the head of the backlog) and ask to
    /// be woken when the port has room. False if it was kept.
    fn tx_try_send(&mut self, cx: &mut DeviceCtx<'_>, frame: Frame) -> bool {
        match cx.send_frame(0, frame) {
            Ok(_) => {
                self.counters.inc("tx_frames");
                true
            }
            // Nothing will ever make room on a port with no wire.
            Err(_) if !cx.port_connected(0) => {
                self.counters.inc("drop.tx_no_wire");
                true
            }
            Err(frame) => {
                self.counters.inc("tx_port_full");
                self.port.backlog.push_front(frame);
                if !self.port.waiting {
                    self.port.waiting = true;
                    cx.wake_when_port_ready(0);
                }
                false
            }
        }
    }

    /// The port has room again: send what it held back, in order.
    pub(super) fn tx_port_ready(&mut self, cx: &mut DeviceCtx<'_>) {
        self.port.waiting = false;
        while let Some(frame) = self.port.backlog.pop_front() {
            if !self.tx_try_send(cx, frame) {
                return;
            }
        }
    }
}
