//! The engine's transmit path: a notification, a burst read of records,
//! frames built with headers and checksums, sent, and `TX_HEAD` posted.

use crate::accio::{regs as ict, ring};
use crate::device::DeviceCtx;
use crate::packet::{FCS_BYTES, FlowKey, Frame, Macs, build_udp_datagram};

use super::bus::Transfer;
use super::flows::Mode;
use super::{AccioNic, Outgoing, Pending, TIMER_TX_PIPE, token};

impl AccioNic {
    /// The table says a core moved `conn`'s `TX_TAIL` to `tail`.
    pub(super) fn tx_notified(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        core: usize,
        conn: u32,
        tail: u64,
    ) {
        let Some(c) = self.flows.conns.get_mut(&conn) else {
            return self.counters.inc("bad_notifications");
        };
        if c.core != core {
            self.counters.inc("notifications_other_core");
        }
        if tail < c.tx_tail {
            // A pointer moved backwards: ignored (only forward moves are
            // work the engine owes).
            return self.counters.inc("tx_tail_backwards");
        }
        c.tx_tail = tail;
        self.counters.inc("tx_notifications");
        self.tx_kick(cx, conn);
    }

    /// Start a burst for `conn` if one is owed and none is running.
    pub(super) fn tx_kick(&mut self, cx: &mut DeviceCtx<'_>, conn: u32) {
        let Some(c) = self.flows.conns.get_mut(&conn) else {
            return;
        };
        if c.tx_busy || c.mode != Mode::Fast || !self.engine_up || c.missed {
            return;
        }
        let Some(ctx) = c.ctx else {
            if c.tx_tail > c.tx_head.unwrap_or(0) || c.tx_head.is_none() {
                self.load_row(cx, conn);
            }
            return;
        };
        let head = c.tx_head.unwrap_or(0);
        let owed = c.tx_tail.saturating_sub(head);
        if owed == 0 {
            return;
        }
        if owed > ctx.tx_size {
            // More than a ring's worth: the writer broke the protocol.
            // Nothing past one ring is read.
            self.counters.inc("tx_overrun");
        }
        let at = head % ctx.tx_size;
        let len = owed
            .min(ctx.tx_size)
            .min(self.cfg.tx_burst_bytes)
            .min(ctx.tx_size - at);
        c.tx_busy = true;
        let tag = self.next_tag(Pending::TxData { conn, head });
        self.submit(
            cx,
            Transfer::Read {
                addr: ctx.tx_ring + at,
                len,
                purpose: "packet-data",
                tag,
            },
        );
    }

    /// A burst of `conn`'s TX ring, read from `head`, arrived.
    pub(super) fn tx_data(&mut self, cx: &mut DeviceCtx<'_>, conn: u32, head: u64, data: &[u8]) {
        let Some(c) = self.flows.conns.get_mut(&conn) else {
            return;
        };
        c.tx_busy = false;
        let Some(ctx) = c.ctx else {
            // Invalidated meanwhile: read again from the row.
            return self.tx_kick(cx, conn);
        };
        if c.tx_head != Some(head) && c.tx_head.is_some() {
            return self.counters.inc("stale_completions");
        }
        let tail = c.tx_tail;
        let mut off = 0usize;
        let mut built = Vec::new();
        let mut bad = false;
        while off + ring::HEADER_BYTES as usize <= data.len() {
            let Some(h) = ring::RecordHeader::new(&data[off..]) else {
                break;
            };
            if h.is_pad() {
                // The rest of the ring up to its end is padding.
                off = data.len();
                break;
            }
            let len = h.len() as usize;
            let rec = ring::record_bytes(len as u64) as usize;
            if len as u64 > ring::MAX_PAYLOAD_BYTES || len == 0 {
                bad = true;
                break;
            }
            if off + rec > data.len() {
                break;
            }
            let payload = &data[off + 8..off + 8 + len];
            let dst = if h.ip().is_unspecified() {
                ctx.remote
            } else {
                Some((h.ip(), h.port()))
            };
            let frame = dst.and_then(|dst| {
                let mac = if Some(dst) == ctx.remote {
                    Some(ctx.remote_mac)
                } else {
                    self.neighbours.get(&dst.0).copied()
                };
                let flow = FlowKey {
                    src_ip: ctx.local.0,
                    dst_ip: dst.0,
                    src_port: ctx.local.1,
                    dst_port: dst.1,
                };
                mac.and_then(|m| {
                    build_udp_datagram(
                        Macs {
                            src: self.cfg.mac,
                            dst: m,
                        },
                        flow,
                        payload,
                    )
                    .ok()
                })
            });
            match frame {
                Some(f) => built.push(f),
                None => self.counters.inc("drop.tx_no_route"),
            }
            off += rec;
        }
        let consumed = if bad {
            // A record the engine cannot parse: everything up to the tail
            // is given up, so a broken writer cannot stall the engine.
            self.counters.inc("drop.tx_bad_record");
            tail - head
        } else {
            off as u64
        };
        let new_head = head + consumed;
        if let Some(c) = self.flows.conns.get_mut(&conn) {
            c.tx_head = Some(new_head);
        }
        // Frames leave the engine's pipeline one after the other; the last
        // carries the pointer to post.
        let n = built.len();
        let mut ready = self
            .tx_pipe
            .back()
            .map_or(cx.now(), |o| o.ready)
            .max(cx.now());
        for (i, bytes) in built.into_iter().enumerate() {
            ready += self
                .cfg
                .engine
                .latency(bytes.len() as u64 + FCS_BYTES as u64);
            self.counters.inc("offload_tx_frames");
            self.tx_pipe.push_back(Outgoing {
                ready,
                frame: Some(Frame::new(bytes, 0)),
                conn,
                post_head: (i + 1 == n).then_some(new_head),
            });
        }
        if n == 0 && consumed > 0 {
            self.tx_pipe.push_back(Outgoing {
                ready,
                frame: None,
                conn,
                post_head: Some(new_head),
            });
        }
        if let Some(o) = self.tx_pipe.back() {
            let at = o.ready;
            cx.set_timer(at - cx.now(), token(TIMER_TX_PIPE, 0));
        }
        if consumed > 0 {
            self.tx_kick(cx, conn);
        }
        let quiesce = self
            .flows
            .conns
            .get(&conn)
            .is_some_and(|c| c.mode == Mode::Fallback && !c.tx_busy);
        if quiesce {
            self.quiesced(cx, conn);
        }
    }

    /// Frames whose pipeline time is up go to the port; each burst's last
    /// posts its `TX_HEAD`.
    pub(super) fn tx_pipe_due(&mut self, cx: &mut DeviceCtx<'_>) {
        while self.tx_pipe.front().is_some_and(|o| o.ready <= cx.now()) {
            let Some(o) = self.tx_pipe.pop_front() else {
                break;
            };
            match o.frame {
                Some(f) if !self.tx_backlog.is_empty() => {
                    self.tx_backlog.push_back((f, o.conn, o.post_head))
                }
                Some(f) => self.tx_send(cx, f, o.conn, o.post_head),
                None => {
                    if let Some(h) = o.post_head {
                        self.post_pointer(cx, o.conn, ict::row::TX_HEAD, h);
                    }
                }
            }
        }
    }

    fn tx_send(&mut self, cx: &mut DeviceCtx<'_>, f: Frame, conn: u32, post: Option<u64>) {
        if !self.link_up {
            self.counters.inc("drop.tx_link_down");
        } else {
            match cx.send_frame(0, f) {
                Ok(_) => self.counters.inc("offload_tx_sent"),
                Err(_) if !cx.port_connected(0) => self.counters.inc("drop.tx_no_wire"),
                Err(f) => {
                    self.tx_backlog.push_front((f, conn, post));
                    if !self.tx_waiting {
                        self.tx_waiting = true;
                        cx.wake_when_port_ready(0);
                    }
                    return;
                }
            }
        }
        if let Some(h) = post {
            self.post_pointer(cx, conn, ict::row::TX_HEAD, h);
        }
    }

    /// The port has room: send what waited for it, in order.
    pub(super) fn tx_port_ready(&mut self, cx: &mut DeviceCtx<'_>) {
        self.tx_waiting = false;
        while let Some((f, conn, post)) = self.tx_backlog.pop_front() {
            let before = self.tx_backlog.len();
            self.tx_send(cx, f, conn, post);
            if self.tx_backlog.len() > before {
                return;
            }
        }
    }
}
