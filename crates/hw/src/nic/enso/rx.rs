//! The receive path: a frame from the port is steered to a pipe, checked
//! against the RX FIFO, the pipe's free space and its notification buffer,
//! appended at the pipe's tail by DMA, and announced by an RX notification
//! at the pace the [`NotificationPolicy`] sets; and the registers that
//! steer the pace from software (head updates, prefetch requests).
//!
//! Invariants: every frame ends in exactly one of `appended` or one of
//! [`RX_DROPS`]; a frame is appended whole or not at all (all checks come
//! before the first byte is written); a pipe never holds more than
//! `PIPE_BYTES - LINE_BYTES`; a notification is written only after the
//! data it names, on the same posted-write path, so it cannot overtake it.

use std::collections::VecDeque;

use nextio_engine::Time;

use super::layout::{LINE_BYTES, NOTIFICATION_BYTES, PIPE_BYTES, RxNotification, padded_len};
use super::{EnsoNic, NotificationPolicy, Tag};
use crate::device::DeviceCtx;

/// Every reason a received frame is dropped: with `appended`, they account
/// for every `rx_frames`.
pub const RX_DROPS: [&str; 5] = [
    "drop.no_pipe",
    "drop.rx_fifo_full",
    "drop.pipe_full",
    "drop.notification_buffer_full",
    "drop.rx_dma_error",
];

/// The RX FIFO in front of the PCIe link: packet data accepted from the
/// port whose DMA has not yet left the NIC. A frame that does not fit is
/// dropped — the NIC's only buffer when the link cannot keep up.
pub(super) struct RxFifo {
    /// Bursts still inside, oldest first: (when its last TLP leaves, bytes).
    bursts: VecDeque<(Time, u64)>,
    bytes: u64,
    capacity: u64,
}

impl RxFifo {
    pub(super) fn new(capacity: u64) -> RxFifo {
        RxFifo {
            bursts: VecDeque::new(),
            bytes: 0,
            capacity,
        }
    }

    /// Whether `bytes` more fit at `now`, after the bursts gone by then left.
    fn has_room(&mut self, now: Time, bytes: u64) -> bool {
        while let Some(&(sent, b)) = self.bursts.front() {
            if sent > now {
                break;
            }
            self.bursts.pop_front();
            self.bytes -= b;
        }
        self.bytes + bytes <= self.capacity
    }

    /// A burst of `bytes` that occupies the FIFO until `sent_at`.
    fn push(&mut self, sent_at: Time, bytes: u64) {
        self.bursts.push_back((sent_at, bytes));
        self.bytes += bytes;
    }
}

impl EnsoNic {
    /// One frame from the port, now.
    pub(super) fn receive(&mut self, cx: &mut DeviceCtx<'_>, bytes: &[u8]) {
        self.counters.inc("rx_frames");
        // Bindings and fallbacks are checked against the registered pipes,
        // so a steered id always names one.
        let Some(p) = self.steering.steer(bytes) else {
            self.counters.inc("drop.no_pipe");
            return;
        };
        let padded = padded_len(bytes.len() as u64);
        if !self.fifo.has_room(cx.now(), padded) {
            self.counters.inc("drop.rx_fifo_full");
            return;
        }
        let pipe = &self.pipes[p];
        if padded > PIPE_BYTES - LINE_BYTES - pipe.used_bytes() {
            self.counters.inc("drop.pipe_full");
            return;
        }
        let needs_notification =
            self.cfg.policy == NotificationPolicy::PerPacket || !pipe.outstanding;
        if needs_notification && self.nbs[pipe.nb].rx_full() {
            self.counters.inc("drop.notification_buffer_full");
            return;
        }
        if !self.append(cx, p, bytes, padded) {
            self.counters.inc("drop.rx_dma_error");
            return;
        }
        self.counters.inc("appended");
        self.counters.add("appended_bytes", padded);
        if needs_notification {
            self.notify_pipe(cx, p);
        }
    }

    /// Write `bytes`, padded with zeros to `padded`, at pipe `p`'s tail in
    /// bursts that neither cross the ring's end nor exceed the burst size.
    /// False if the fabric refused a burst: the tail then stays where it
    /// was, so software never sees the bytes that did go out.
    fn append(&mut self, cx: &mut DeviceCtx<'_>, p: usize, bytes: &[u8], padded: u64) -> bool {
        self.scratch.clear();
        self.scratch.extend_from_slice(bytes);
        self.scratch.resize(padded as usize, 0);
        let ring = self.pipes[p].ring;
        let mut tail = self.pipes[p].tail;
        let tag = Tag::RxData { pipe: p }.encode();
        let mut done = 0u64;
        while done < padded {
            let burst = (padded - done)
                .min(self.cfg.max_dma_burst_bytes)
                .min(PIPE_BYTES - tail);
            let data = &self.scratch[done as usize..(done + burst) as usize];
            match cx.dma_write(ring + tail, data, "packet-data", tag) {
                Ok(posted) => self.fifo.push(posted.sent_at, burst),
                Err(_) => {
                    self.counters.inc("dma_errors");
                    return false;
                }
            }
            done += burst;
            tail = (tail + burst) % PIPE_BYTES;
        }
        self.pipes[p].tail = tail;
        true
    }

    /// Write a notification for pipe `p` (its current tail) into its
    /// notification buffer; software sees it when the write lands.
    pub(super) fn notify_pipe(&mut self, cx: &mut DeviceCtx<'_>, p: usize) {
        let pipe = &mut self.pipes[p];
        let nb_id = pipe.nb;
        let nb = &mut self.nbs[nb_id];
        if nb.rx_full() {
            self.counters.inc("notifications.suppressed_full");
            return;
        }
        let mut entry = [0u8; NOTIFICATION_BYTES as usize];
        let mut n = RxNotification::new_unchecked(&mut entry[..]);
        n.set_signal(1);
        n.set_pipe(p as u64);
        n.set_tail(pipe.tail);
        let addr = nb.rx_ring + nb.rx_tail as u64 * NOTIFICATION_BYTES;
        let tag = Tag::RxNotification { nb: nb_id }.encode();
        if cx.dma_write(addr, &entry, "notification", tag).is_err() {
            self.counters.inc("dma_errors");
            return;
        }
        nb.rx_tail = (nb.rx_tail + 1) % nb.rx_entries;
        pipe.outstanding = true;
        pipe.last_notified_tail = pipe.tail;
        self.counters.inc("notifications.rx");
    }

    /// Software freed pipe `p` up to `value`, which re-arms it.
    pub(super) fn head_written(&mut self, cx: &mut DeviceCtx<'_>, p: usize, value: u64) {
        let Some(pipe) = self.pipes.get_mut(p) else {
            self.counters.inc("bad_register_writes");
            return;
        };
        let head = value % PIPE_BYTES;
        // Software may only free what the NIC has written, a quantum at a time.
        let freed = (head + PIPE_BYTES - pipe.head) % PIPE_BYTES;
        if freed > pipe.used_bytes() || !head.is_multiple_of(LINE_BYTES) {
            self.counters.inc("bad_register_writes");
            return;
        }
        pipe.head = head;
        pipe.outstanding = false;
        if self.cfg.policy == NotificationPolicy::Reactive && pipe.tail != pipe.last_notified_tail {
            self.counters.inc("notifications.rearm");
            self.notify_pipe(cx, p);
        }
    }

    /// Software asks for a notification for pipe `p` if it holds data.
    pub(super) fn prefetch(&mut self, cx: &mut DeviceCtx<'_>, p: usize) {
        let Some(pipe) = self.pipes.get(p) else {
            self.counters.inc("bad_register_writes");
            return;
        };
        self.counters.inc("prefetch_requests");
        if pipe.tail != pipe.head {
            self.counters.inc("notifications.prefetch");
            self.notify_pipe(cx, p);
        } else {
            self.counters.inc("prefetch_empty");
        }
    }
}
