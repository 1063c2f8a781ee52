//! Adapters: how the switch drives an unmodified legacy device so it can
//! join a chain (thesis §4.3 "Working with existing accelerator
//! interfaces"). The CPU configures the device once with its command ring
//! in the switch's memory (BAR2); per message the switch writes the data
//! and a command into that memory, rings the device's doorbell with a TLP
//! of its own, serves the device's reads of both from its memory, and
//! takes the completion the device writes back — then routes the output
//! on, by the stream's policy graph.
//!
//! Two kinds, closed: a QAT-like command queue ([`crate::accel::cmdq`]),
//! whose device writes its output into a slot of the switch's memory; and
//! an Ensō NIC's TX notification ring, for a NIC that cannot take pushes.
//!
//! Invariants: a slot is in use from submission to completion, never
//! reused before; messages wait (bounded) when every slot is in use and
//! are dropped (`drop.adapter_full`) past that; every submitted message
//! completes once — with the device's status — or stays in use.

use std::collections::VecDeque;

use crate::accel::cmdq::{DESCRIPTOR_BYTES, Descriptor};
use crate::device::DeviceCtx;
use crate::nic::enso::{NOTIFICATION_BYTES, TxNotification};

use super::engine::{NagareSwitch, Tag};
use super::layout::{AdapterKind, DropReason, status};
use super::stream::Msg;

/// A submitted message: which stream's hop it is, and its sequence.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub stream: u16,
    pub seq: u64,
}

/// One adapter's state.
pub(super) struct Adapter {
    pub kind: AdapterKind,
    pub device: u16,
    pub doorbell: u64,
    pub entries: u32,
    /// SRAM offsets of the ring, the input slots and the output slots.
    pub ring: u64,
    pub inputs: u64,
    pub outputs: u64,
    pub tail: u32,
    pub slots: Vec<Option<Slot>>,
    pub waiting: VecDeque<(u16, Msg, Vec<u8>)>,
}

impl Adapter {
    /// SRAM bytes an adapter of `entries` slots of `slot_bytes` needs.
    pub fn footprint(kind: AdapterKind, entries: u32, slot_bytes: u64) -> u64 {
        let outputs = match kind {
            AdapterKind::CommandQueue => 1,
            AdapterKind::EnsoTx => 0,
        };
        entries as u64 * (DESCRIPTOR_BYTES + slot_bytes * (1 + outputs))
    }

    /// The slot whose ring entry holds SRAM offset `off`, if any.
    pub fn ring_slot(&self, off: u64) -> Option<u32> {
        let end = self.ring + self.entries as u64 * DESCRIPTOR_BYTES;
        (off >= self.ring && off < end).then(|| ((off - self.ring) / DESCRIPTOR_BYTES) as u32)
    }

    /// Whether SRAM offset `off` belongs to this adapter.
    pub fn owns(&self, off: u64, slot_bytes: u64) -> bool {
        off >= self.ring && off < self.ring + Self::footprint(self.kind, self.entries, slot_bytes)
    }

    fn in_use(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

/// Most messages waiting for a free slot per adapter.
pub(super) const MAX_WAITING: usize = 256;

impl NagareSwitch {
    /// Hand `data` (the device's input: a payload, or a whole frame for a
    /// NIC) of stream `stream`'s message `msg` to adapter `a`.
    pub(super) fn adapter_submit(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        a: u16,
        stream: u16,
        msg: Msg,
        data: Vec<u8>,
    ) {
        let Some(ad) = self.adapters.get_mut(a as usize).and_then(Option::as_mut) else {
            self.drop_msg(DropReason::AdapterFull);
            return;
        };
        if ad.in_use() + 1 >= ad.entries as usize {
            if ad.waiting.len() >= MAX_WAITING {
                self.drop_msg(DropReason::AdapterFull);
            } else {
                ad.waiting.push_back((stream, msg, data));
                self.counters.inc("adapter_waits");
            }
            return;
        }
        let slot = ad.tail;
        if ad.slots[slot as usize].is_some() {
            // The ring's next slot is still in use (completions came back
            // out of order): wait for it.
            ad.waiting.push_back((stream, msg, data));
            self.counters.inc("adapter_waits");
            return;
        }
        let slot_bytes = self.cfg.slot_bytes;
        if data.len() as u64 > slot_bytes {
            self.drop_msg(DropReason::Malformed);
            return;
        }
        let input = ad.inputs + slot as u64 * slot_bytes;
        let entry_off = ad.ring + slot as u64 * DESCRIPTOR_BYTES;
        let sram_base = self.sram_base;
        let entry: [u8; 64] = match ad.kind {
            AdapterKind::CommandQueue => {
                let s = &self.streams[stream as usize];
                let st = s.as_ref().map(|s| (s.op, s.param, s.state));
                let (op, param, state) = st.unwrap_or((0, 0, [0; 16]));
                Descriptor {
                    op,
                    status: 0,
                    state,
                    src: sram_base + input,
                    src_len: data.len() as u32,
                    dst: sram_base + ad.outputs + slot as u64 * slot_bytes,
                    dst_cap: slot_bytes as u32,
                    out_len: 0,
                    param: param as u32,
                    cookie: msg.seq,
                }
                .emit()
            }
            AdapterKind::EnsoTx => {
                let mut e = [0u8; NOTIFICATION_BYTES as usize];
                let mut n = TxNotification::new_unchecked(&mut e[..]);
                n.set_signal(1);
                n.set_addr(sram_base + input);
                n.set_len(data.len() as u64);
                e
            }
        };
        ad.slots[slot as usize] = Some(Slot {
            stream,
            seq: msg.seq,
        });
        ad.tail = (ad.tail + 1) % ad.entries;
        let (doorbell, tail) = (ad.doorbell, ad.tail);
        let i = input as usize;
        self.sram[i..i + data.len()].copy_from_slice(&data);
        let e = entry_off as usize;
        self.sram[e..e + 64].copy_from_slice(&entry);
        if cx
            .dma_write(
                doorbell,
                &(tail as u64).to_le_bytes(),
                "nagare-doorbell",
                Tag::Doorbell.encode(),
            )
            .is_err()
        {
            // The device will never learn of it: take the slot back.
            if let Some(ad) = self.adapters.get_mut(a as usize).and_then(Option::as_mut) {
                ad.slots[slot as usize] = None;
                ad.tail = slot;
            }
            self.drop_msg(DropReason::DmaError);
            return;
        }
        self.counters.inc("adapter_submits");
        self.counters.inc("delivered");
    }

    /// The adapter's device wrote SRAM at `off`: if that completed a ring
    /// entry, take the completion and route the output on.
    pub(super) fn adapter_written(&mut self, cx: &mut DeviceCtx<'_>, a: usize, off: u64) {
        let Some(ad) = self.adapters.get_mut(a).and_then(Option::as_mut) else {
            return;
        };
        let Some(slot) = ad.ring_slot(off) else {
            // Output bytes landing in a slot: taken with the completion.
            return;
        };
        let e = (ad.ring + slot as u64 * DESCRIPTOR_BYTES) as usize;
        let entry = &self.sram[e..e + 64];
        let done = match ad.kind {
            AdapterKind::CommandQueue => Descriptor::parse(entry)
                .filter(Descriptor::is_done)
                .map(|d| (d.code(), d.out_len)),
            AdapterKind::EnsoTx => {
                (TxNotification::new_unchecked(entry).signal() == 0).then_some((status::OK, 0))
            }
        };
        let Some((code, out_len)) = done else {
            return;
        };
        let Some(s) = ad.slots.get_mut(slot as usize).and_then(Option::take) else {
            self.counters.inc("adapter_spurious_completions");
            return;
        };
        self.counters.inc("adapter_completions");
        let kind = ad.kind;
        let out = ad.outputs + slot as u64 * self.cfg.slot_bytes;
        let waiting = ad.waiting.pop_front();
        match kind {
            AdapterKind::EnsoTx => self.counters.inc("frames_sent"),
            AdapterKind::CommandQueue => {
                let n = (out_len as u64).min(self.cfg.slot_bytes) as usize;
                let payload = self.sram[out as usize..out as usize + n].to_vec();
                let msg = Msg {
                    seq: s.seq,
                    status: code,
                    payload,
                };
                let next = self.streams[s.stream as usize]
                    .as_ref()
                    .and_then(|st| st.out_stream);
                match next {
                    Some(o) => self.messages_on(cx, o, vec![msg]),
                    None => {
                        self.counters.inc("messages");
                        self.drop_msg(DropReason::NoStream);
                    }
                }
            }
        }
        if let Some((stream, msg, data)) = waiting {
            self.adapter_submit(cx, a as u16, stream, msg, data);
        }
    }
}
