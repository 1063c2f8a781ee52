//! The engine's receive path: classify, pipeline, write the payload into
//! the connection's ring, post `RX_TAIL`.
//!
//! With streaming rings ([`super::AccioNicConfig::rx_stream`]) the records
//! of a batch are gathered and written back to back in one transfer; the
//! batch ends when the engine holds no further frame of the connection
//! (nothing in its pipeline, nothing waiting), at `rx_tail_batch` records,
//! before a pad, or when the engine cannot go on (row loading, ring full).
//! The record layout is the same ([`crate::accio::ring`]): the ring was
//! already one contiguous byte stream, so only the write and notification
//! granularity change.

use crate::accio::{regs as ict, ring};
use crate::device::{Device as _, DeviceCtx};
use crate::packet::{Frame, parse_udp};

use super::bus::Transfer;
use super::flows::{Mode, RingCtx};
use super::{AccioNic, HeldPost, OFFLOAD, TIMER_RX_PIPE, TIMER_TAIL_FLUSH, TIMER_TAIL_POST, token};

/// The row fields the engine reads, as beat indices into its burst.
fn beat(data: &[u8], field: u64) -> u64 {
    let i = ((field - ict::row::NIC_VIEW_START) / ict::BEAT_BYTES) as usize * 8;
    data.get(i..i + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

impl AccioNic {
    /// A frame arrived from the wire.
    pub(super) fn rx_frame(&mut self, cx: &mut DeviceCtx<'_>, port: usize, frame: Frame) {
        self.counters.inc("rx_frames");
        if !self.link_up {
            return self.counters.inc("drop.rx_link_down");
        }
        // Header parse with both checksums; anything else is the kernel's.
        let conn = parse_udp(&frame.bytes).ok().and_then(|v| {
            self.flows.lookup(
                (v.flow.dst_ip, v.flow.dst_port),
                (v.flow.src_ip, v.flow.src_port),
            )
        });
        let Some(conn) = conn else {
            self.counters.inc("rx_unmatched");
            return self.base.frame(cx, port, frame);
        };
        let fast = self
            .flows
            .conns
            .get(&conn)
            .is_some_and(|c| c.mode == Mode::Fast);
        self.counters.inc("offload_rx_frames");
        if !fast || !self.engine_up {
            return self.kernel_path(cx, frame);
        }
        let lat = self.cfg.engine.latency(frame.frame_bytes() as u64);
        let ready = (cx.now() + lat).max(self.rx_pipe.back().map_or(cx.now(), |(t, _, _)| *t));
        self.rx_pipe.push_back((ready, conn, frame));
        cx.set_timer(ready - cx.now(), token(TIMER_RX_PIPE, 0));
    }

    /// Frames whose pipeline time is up go to their connection.
    pub(super) fn rx_pipe_due(&mut self, cx: &mut DeviceCtx<'_>) {
        while self.rx_pipe.front().is_some_and(|(t, _, _)| *t <= cx.now()) {
            let Some((_, conn, frame)) = self.rx_pipe.pop_front() else {
                break;
            };
            match self.flows.conns.get_mut(&conn) {
                Some(c) if c.mode == Mode::Fast => {
                    if c.pending.len() >= self.cfg.conn_hold_frames {
                        self.counters.inc("drop.offload_rx_hold_full");
                        continue;
                    }
                    c.pending.push_back(frame);
                    self.rx_drain(cx, conn);
                }
                _ => self.kernel_path(cx, frame),
            }
        }
    }

    /// Deliver `conn`'s waiting frames while its row is known and its
    /// ring has room; ask for the row when it is not. With streaming
    /// rings, end the batch unless another frame of the connection is
    /// already in the pipeline (it will come back here).
    pub(super) fn rx_drain(&mut self, cx: &mut DeviceCtx<'_>, conn: u32) {
        self.rx_drain_records(cx, conn);
        if !self.cfg.rx_stream {
            return;
        }
        let Some(c) = self.flows.conns.get(&conn) else {
            return;
        };
        let more = c.pending.is_empty()
            && c.unposted < self.cfg.rx_tail_batch
            && self.rx_pipe.iter().any(|(_, k, _)| *k == conn);
        if !more {
            self.rx_flush_tail(cx, conn);
        }
    }

    /// Write `conn`'s gathered records (streaming rings) in one transfer.
    fn rx_write_gathered(&mut self, cx: &mut DeviceCtx<'_>, conn: u32) {
        let Some(c) = self.flows.conns.get_mut(&conn) else {
            return;
        };
        if c.gather.is_empty() {
            return;
        }
        let (addr, data) = (c.gather_at, std::mem::take(&mut c.gather));
        self.counters.inc("rx_stream_writes");
        self.submit(
            cx,
            Transfer::Write {
                addr,
                data,
                purpose: "packet-data",
                tag: OFFLOAD,
            },
        );
    }

    fn rx_drain_records(&mut self, cx: &mut DeviceCtx<'_>, conn: u32) {
        loop {
            let Some(c) = self.flows.conns.get_mut(&conn) else {
                return;
            };
            if c.mode != Mode::Fast || !self.engine_up {
                let held: Vec<Frame> = c.pending.drain(..).collect();
                for f in held {
                    self.kernel_path(cx, f);
                }
                return;
            }
            if c.loading || c.missed || c.pending.is_empty() {
                let missed = c.missed;
                // Past the hold limit, frames of a missed row go to the
                // kernel path rather than wait.
                let held = self.flows.held();
                if missed && held > self.cfg.miss_hold_frames {
                    let late: Vec<Frame> = match self.flows.conns.get_mut(&conn) {
                        Some(c) => {
                            let n = (held - self.cfg.miss_hold_frames).min(c.pending.len());
                            let at = c.pending.len() - n;
                            c.pending.drain(at..).collect()
                        }
                        None => Vec::new(),
                    };
                    for f in late {
                        self.counters.inc("rx_miss_to_kernel");
                        self.kernel_path(cx, f);
                    }
                }
                return;
            }
            let Some(ctx) = c.ctx else {
                self.load_row(cx, conn);
                return;
            };
            let frame = c.pending.front().expect("not empty");
            let Ok(v) = parse_udp(&frame.bytes) else {
                c.pending.pop_front();
                self.counters.inc("drop.offload_rx_malformed");
                continue;
            };
            let payload = &frame.bytes[v.payload_offset..v.payload_offset + v.payload_len];
            let tail = c.rx_tail.unwrap_or(0);
            let rec = ring::record_bytes(payload.len() as u64);
            let pad = ring::pad_before(tail, ctx.rx_size, rec);
            if ring::free_bytes(ctx.rx_head, tail, ctx.rx_size) < pad + rec {
                if c.fresh {
                    // Fresh from the row and still full: the ring is full.
                    c.pending.pop_front();
                    c.fresh = false;
                    self.counters.inc("drop.offload_rx_ring_full");
                    continue;
                }
                // Space may have been freed since the row was read.
                c.ctx = None;
                self.load_row(cx, conn);
                return;
            }
            let src = (v.flow.src_ip, v.flow.src_port);
            let mut rec_bytes = Vec::with_capacity(rec as usize);
            rec_bytes.extend_from_slice(&ring::header(payload.len() as u16, src));
            rec_bytes.extend_from_slice(payload);
            rec_bytes.resize(rec as usize, 0);
            c.pending.pop_front();
            c.rx_tail = Some(tail + pad + rec);
            c.fresh = false;
            c.unposted += 1;
            let flush = c.unposted >= self.cfg.rx_tail_batch;
            let first = c.unposted == 1;
            if self.cfg.rx_stream {
                // Back to back behind the batch's earlier records; a pad
                // ends the contiguous run, and the ring goes on at its start.
                let at = ctx.rx_ring + tail % ctx.rx_size;
                if c.gather.is_empty() {
                    c.gather_at = at;
                }
                if pad > 0 {
                    c.gather.extend_from_slice(&ring::pad_header());
                    self.rx_write_gathered(cx, conn);
                }
                let Some(c) = self.flows.conns.get_mut(&conn) else {
                    return;
                };
                if c.gather.is_empty() {
                    c.gather_at = ctx.rx_ring + (tail + pad) % ctx.rx_size;
                }
                c.gather.extend_from_slice(&rec_bytes);
                if (tail + pad + rec).is_multiple_of(ctx.rx_size) {
                    // It ends at the ring's end: the next record starts a
                    // new contiguous run at the beginning.
                    self.rx_write_gathered(cx, conn);
                }
            } else {
                if pad > 0 {
                    self.submit(
                        cx,
                        Transfer::Write {
                            addr: ctx.rx_ring + tail % ctx.rx_size,
                            data: ring::pad_header().to_vec(),
                            purpose: "packet-data",
                            tag: OFFLOAD,
                        },
                    );
                }
                self.submit(
                    cx,
                    Transfer::Write {
                        addr: ctx.rx_ring + (tail + pad) % ctx.rx_size,
                        data: rec_bytes,
                        purpose: "packet-data",
                        tag: OFFLOAD,
                    },
                );
            }
            self.counters.inc("offload_rx_delivered");
            if flush {
                self.rx_flush_tail(cx, conn);
            } else if first {
                cx.set_timer(self.cfg.rx_tail_delay, token(TIMER_TAIL_FLUSH, conn as u64));
            }
        }
    }

    /// Post `conn`'s `RX_TAIL` if records wait for it (after writing the
    /// records a streaming ring gathered).
    pub(super) fn rx_flush_tail(&mut self, cx: &mut DeviceCtx<'_>, conn: u32) {
        self.rx_write_gathered(cx, conn);
        let Some(c) = self.flows.conns.get_mut(&conn) else {
            return;
        };
        if c.unposted == 0 {
            return;
        }
        c.unposted = 0;
        let tail = c.rx_tail.unwrap_or(0);
        if !self.cfg.rx_stream {
            return self.post_pointer(cx, conn, ict::row::RX_TAIL, tail);
        }
        // A streaming batch is one large write to memory and the post a
        // small one to the table: the fabric orders a device's posted
        // writes to memory, not those to memory against those to a peer,
        // so the post waits for its batch to land (PCIe's ordering rule,
        // kept here; it costs the post its own flight after the data).
        let at = self
            .data_landed
            .max(self.tail_posts.back().map_or(cx.now(), |(t, _, _)| *t));
        if at <= cx.now() && self.tail_posts.is_empty() {
            return self.post_pointer(cx, conn, ict::row::RX_TAIL, tail);
        }
        self.tail_posts
            .push_back((at, conn, HeldPost::RxTail(tail)));
        cx.set_timer(at - cx.now(), token(TIMER_TAIL_POST, 0));
    }

    /// Post the `RX_TAIL`s whose batches have landed, and the quiesced
    /// notices queued behind them, in order (a connection removed
    /// meanwhile has no row to post to).
    pub(super) fn rx_tail_posts_due(&mut self, cx: &mut DeviceCtx<'_>) {
        while self
            .tail_posts
            .front()
            .is_some_and(|(t, _, _)| *t <= cx.now())
        {
            let Some((_, conn, held)) = self.tail_posts.pop_front() else {
                break;
            };
            if !self.flows.conns.contains_key(&conn) {
                continue;
            }
            match held {
                HeldPost::RxTail(tail) => self.post_pointer(cx, conn, ict::row::RX_TAIL, tail),
                HeldPost::Quiesced => self.post_quiesced(cx, conn),
            }
        }
    }

    /// The burst read of `conn`'s row came back (`None`: it faulted).
    pub(super) fn row_loaded(&mut self, cx: &mut DeviceCtx<'_>, conn: u32, data: Option<&[u8]>) {
        let core = {
            let Some(c) = self.flows.conns.get_mut(&conn) else {
                return;
            };
            c.loading = false;
            c.core
        };
        let Some(data) = data else {
            // The table is not reachable: the kernel path it is.
            if let Some(c) = self.flows.conns.get_mut(&conn) {
                c.mode = Mode::Fallback;
            }
            self.counters.inc("row_faults");
            return self.rx_drain(cx, conn);
        };
        let st = beat(data, ict::row::STATE);
        if st & ict::state::ENABLED == 0 {
            // Not resident: hold the frames, report the miss once.
            let first = self.flows.conns.get_mut(&conn).is_some_and(|c| {
                let f = !c.missed;
                c.missed = true;
                f
            });
            if first {
                self.counters.inc("row_misses");
                self.post_event(cx, ict::EventKind::Miss, core, conn);
            }
            return self.rx_drain(cx, conn);
        }
        let rx_size = beat(data, ict::row::RX_RING_SIZE);
        let tx_size = beat(data, ict::row::TX_RING_SIZE);
        if !ring::valid_size(rx_size) || !ring::valid_size(tx_size) {
            self.counters.inc("bad_rows");
            if let Some(c) = self.flows.conns.get_mut(&conn) {
                c.mode = Mode::Fallback;
            }
            return self.rx_drain(cx, conn);
        }
        let remote = beat(data, ict::row::REMOTE);
        let mac = beat(data, ict::row::REMOTE_MAC).to_le_bytes();
        let ctx = RingCtx {
            rx_ring: beat(data, ict::row::RX_RING_ADDR),
            rx_size,
            rx_head: beat(data, ict::row::RX_HEAD),
            tx_ring: beat(data, ict::row::TX_RING_ADDR),
            tx_size,
            local: ict::endpoint_of(beat(data, ict::row::LOCAL)),
            remote: (remote != 0).then(|| ict::endpoint_of(remote)),
            remote_mac: [mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]],
        };
        let accelerated = st & ict::state::ACCELERATED != 0;
        let (repost, rx_tail, tx_head) = {
            let c = self.flows.conns.get_mut(&conn).expect("present");
            if !accelerated {
                c.mode = Mode::Fallback;
            }
            c.ctx = Some(ctx);
            c.fresh = true;
            let rx_tail = *c.rx_tail.get_or_insert(beat(data, ict::row::RX_TAIL));
            let tx_head = *c.tx_head.get_or_insert(beat(data, ict::row::TX_HEAD));
            c.tx_tail = c.tx_tail.max(beat(data, ict::row::TX_TAIL));
            (std::mem::take(&mut c.repost), rx_tail, tx_head)
        };
        if repost {
            // The row may hold older pointers than the engine's own.
            self.post_pointer(cx, conn, ict::row::RX_TAIL, rx_tail);
            self.post_pointer(cx, conn, ict::row::TX_HEAD, tx_head);
        }
        self.rx_drain(cx, conn);
        self.tx_kick(cx, conn);
    }
}
