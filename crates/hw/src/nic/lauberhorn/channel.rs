//! The two-control-line protocol of one channel (§5, after 2F2F), both
//! halves.
//!
//! Receive: a core loads control line `p`; the load is held until the NIC
//! has something for the channel and is then answered (exclusively, so
//! the core can write its result in place) with the decoded request, a
//! TRYAGAIN, YIELDNOW or RETIRE. Overflow lines carry what does not fit
//! inline; above the DMA threshold the bytes go by DMA to the channel's
//! buffer instead, flushed by a read before the control line is answered.
//! The core's load of the *other* control line says it is done with `p`:
//! the NIC clean-invalidates `p` (and the overflow lines the core wrote)
//! to fetch the result, discards the overflow lines it only read, and only
//! then considers the new load.
//!
//! Transmit: the core writes a message into the control line it owns (and
//! into overflow lines it asks for), then loads the other control line as
//! a doorbell. The NIC clean-invalidates the written lines, takes the
//! message, and answers the doorbell — exclusively, so the next message
//! goes into that line without asking.
//!
//! Every load is answered: a re-load of a line that still holds a message
//! (the chip evicted it) gets the same bytes; lines outside any channel
//! get zeros and are counted.

use std::collections::BTreeMap;

use nextio_engine::Duration;

use super::layout::{
    CTRL_INLINE_OFFSET, FLAG_DMA, Half, LineRole, RxCtrl, RxKind, TxCtrl, TxKind, split_payload,
};
use super::{Collect, Held, LauberhornNic, Request, Slot, T_LOOP, T_TRYAGAIN, timer_token};
use crate::coherent::{Grant, Intent, Invalidate, LineRequest};
use crate::device::DeviceCtx;
use crate::mem::PhysAddr;

impl LauberhornNic {
    fn line_bytes(&self) -> usize {
        self.layout.map_or(128, |l| l.line_bytes as usize)
    }

    fn line_pa(&self, ch: usize, half: Half, which: LineRole) -> PhysAddr {
        let w = self.window.expect("attached");
        w.base
            .offset(self.layout.expect("attached").offset(ch, half, which))
    }

    fn respond(&mut self, id: u64, data: &[u8], grant: Grant) {
        let Some(port) = self.port.clone() else {
            return;
        };
        if port.respond(id, data, grant).is_err() {
            self.counters.inc("drop.refused_response");
        }
    }

    fn invalidate(&mut self, pa: PhysAddr, how: Invalidate, token: u64) {
        let Some(port) = self.port.clone() else {
            return;
        };
        if port.invalidate(pa, how, token).is_err() {
            self.counters.inc("drop.refused_invalidate");
        }
    }

    /// The chip asked for one of the window's lines.
    pub(super) fn line_request(&mut self, cx: &mut DeviceCtx<'_>, r: LineRequest) {
        let lb = self.line_bytes();
        let Some(addr) = self.layout.and_then(|l| l.decode(r.offset)) else {
            self.counters.inc("drop.stray_line");
            self.respond(r.id, &vec![0; lb], Grant::Exclusive);
            return;
        };
        let ch = addr.channel;
        match (addr.half, addr.which, r.intent) {
            (Half::Rx, LineRole::Ctrl(p), Intent::Read) => self.rx_load(cx, ch, p, r.id),
            (Half::Rx, LineRole::Ctrl(p), Intent::Write) => {
                // An upgrade (the line was evicted and read back shared).
                let line = self.channels[ch].rx.slots[p as usize]
                    .as_ref()
                    .map_or_else(|| vec![0; lb], |s| s.line.clone());
                self.respond(r.id, &line, Grant::Exclusive);
            }
            (Half::Rx, LineRole::Overflow(k), intent) => self.rx_overflow(ch, k, r.id, intent),
            (Half::Tx, LineRole::Ctrl(p), Intent::Read) => self.tx_doorbell(ch, p, r.id, cx),
            (Half::Tx, LineRole::Ctrl(_), Intent::Write) => {
                self.respond(r.id, &vec![0; lb], Grant::Exclusive)
            }
            (Half::Tx, LineRole::Overflow(k), Intent::Write) => {
                self.channels[ch].tx.ovf_written.insert(k);
                self.respond(r.id, &vec![0; lb], Grant::Exclusive);
            }
            (Half::Tx, LineRole::Overflow(_), Intent::Read) => {
                self.counters.inc("drop.stray_tx_read");
                self.respond(r.id, &vec![0; lb], Grant::Shared);
            }
        }
    }

    // ---- receive ----------------------------------------------------------

    /// A core's load of receive control line `p` of `ch`.
    fn rx_load(&mut self, cx: &mut DeviceCtx<'_>, ch: usize, p: u8, id: u64) {
        let layout = self.layout.expect("attached");
        let (core, slot) = layout.owner(ch);
        self.note_poll(cx, core, slot);
        if let Some(s) = &self.channels[ch].rx.slots[p as usize] {
            // Evicted and read again: the same message.
            let line = s.line.clone();
            self.counters.inc("reloads");
            self.respond(id, &line, Grant::Exclusive);
            return;
        }
        self.retire_rx(cx.now(), ch, 1 - p);
        let rx = &mut self.channels[ch].rx;
        if rx.held.is_some() {
            self.counters.inc("drop.double_hold");
        }
        rx.epoch = rx.epoch.wrapping_add(1);
        rx.held = Some(Held {
            id,
            parity: p,
            since: cx.now(),
            delivering: false,
        });
        self.fill_channel(cx, ch);
    }

    /// The core is done with receive line `q` of `ch`: fetch its result.
    pub(super) fn retire_rx(&mut self, now: nextio_engine::Time, ch: usize, q: u8) {
        let Some(slot) = self.channels[ch].rx.slots[q as usize].take() else {
            return;
        };
        if self.channels[ch].rx.current == Some(q) {
            self.channels[ch].rx.current = None;
        }
        for k in 0..slot.overflow.len() {
            if !slot.written.contains(&k) {
                let pa = self.line_pa(ch, Half::Rx, LineRole::Overflow(k));
                self.invalidate(pa, Invalidate::Discard, 0);
            }
        }
        let ctrl = self.line_pa(ch, Half::Rx, LineRole::Ctrl(q));
        let needs_result = slot
            .req
            .as_ref()
            .is_some_and(|r| matches!(r.kind, RxKind::Request | RxKind::Reply));
        match slot.req {
            Some(req) if needs_result => {
                let cid = self.fresh_token();
                let t = self.fresh_token();
                self.tokens.insert(t, (cid, None));
                self.invalidate(ctrl, Invalidate::Clean, t);
                for &k in &slot.written {
                    let t = self.fresh_token();
                    self.tokens.insert(t, (cid, Some(k)));
                    let pa = self.line_pa(ch, Half::Rx, LineRole::Overflow(k));
                    self.invalidate(pa, Invalidate::Clean, t);
                }
                self.collect_started.insert(cid, now);
                self.collects.insert(
                    cid,
                    Collect::Result {
                        req,
                        want: 1 + slot.written.len(),
                        ctrl: None,
                        ovf: BTreeMap::new(),
                    },
                );
            }
            _ => {
                self.invalidate(ctrl, Invalidate::Discard, 0);
                for &k in &slot.written {
                    let pa = self.line_pa(ch, Half::Rx, LineRole::Overflow(k));
                    self.invalidate(pa, Invalidate::Discard, 0);
                }
            }
        }
    }

    fn rx_overflow(&mut self, ch: usize, k: usize, id: u64, intent: Intent) {
        let lb = self.line_bytes();
        let rx = &mut self.channels[ch].rx;
        let cur = rx.current.and_then(|p| rx.slots[p as usize].as_mut());
        let (data, grant) = match cur {
            Some(s) => {
                let data = s.overflow.get(k).cloned();
                if intent == Intent::Write {
                    s.written.insert(k);
                }
                (data, intent)
            }
            None => (None, intent),
        };
        let data = data.unwrap_or_else(|| {
            if intent == Intent::Read {
                self.counters.inc("drop.stray_overflow_read");
            }
            vec![0; lb]
        });
        let grant = match grant {
            Intent::Read => Grant::Shared,
            Intent::Write => Grant::Exclusive,
        };
        self.respond(id, &data, grant);
    }

    /// Hand `msg` (a request, continuation or looped-back message) or a
    /// bare control `kind` to the held load of `ch`.
    pub(super) fn deliver(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        ch: usize,
        kind: RxKind,
        msg: Option<Request>,
    ) {
        let layout = self.layout.expect("attached");
        let lb = layout.line_bytes as usize;
        let Some(held) = self.channels[ch].rx.held else {
            return;
        };
        let p = held.parity;
        let mut line = vec![0u8; lb];
        let mut overflow = Vec::new();
        let mut dma = None;
        let mut hdr = RxCtrl {
            kind: kind as u8,
            ..RxCtrl::default()
        };
        if let Some(m) = &msg {
            let ep = self.endpoints.get(m.endpoint);
            hdr.slot = m.slot as u16;
            hdr.endpoint = m.endpoint as u8;
            hdr.code = ep.map_or(0, |e| e.code);
            hdr.data = if m.kind == RxKind::Reply {
                m.cookie
            } else {
                ep.map_or(0, |e| e.data)
            };
            hdr.xid = m.xid;
            hdr.seq = m.seq;
            hdr.args_bytes = m.args.len().min(u16::MAX as usize) as u16;
            let chan_dma = self.channels[ch].dma;
            if m.args.len() > self.cfg.dma_threshold_bytes && chan_dma.is_some() {
                hdr.flags |= FLAG_DMA;
                dma = chan_dma;
            } else if m.args.len() > layout.max_line_payload() {
                self.counters.inc("drop.too_large_for_lines");
                self.fail_request(cx, m.clone());
                self.deliver(cx, ch, RxKind::TryAgain, None);
                return;
            } else {
                let (head, rest) = split_payload(&m.args, layout.inline_bytes(), lb);
                line[CTRL_INLINE_OFFSET..CTRL_INLINE_OFFSET + head.len()].copy_from_slice(head);
                overflow = rest
                    .iter()
                    .map(|c| {
                        let mut v = c.to_vec();
                        v.resize(lb, 0);
                        v
                    })
                    .collect();
                hdr.overflow = overflow.len() as u8;
            }
        }
        hdr.write(&mut line);
        let rx = &mut self.channels[ch].rx;
        rx.slots[p as usize] = Some(Slot {
            line,
            overflow,
            req: msg.clone(),
            written: Default::default(),
        });
        rx.current = Some(p);
        self.counters.inc(match kind {
            RxKind::Request | RxKind::Reply | RxKind::Message => {
                if layout.owner(ch).1.is_some() {
                    "delivered.user"
                } else {
                    "delivered.kernel"
                }
            }
            RxKind::TryAgain => "tryagain",
            RxKind::YieldNow => "yieldnow",
            RxKind::Retire => "retire",
            RxKind::Result => "bad_delivery",
        });
        if let (Some((iova, bytes)), Some(m)) = (dma, msg) {
            // The bytes go to this parity's half of the buffer; a read of
            // it flushes the posted write before the line is answered.
            let at = iova + p as u64 * (bytes / 2);
            if m.args.len() as u64 > bytes / 2 {
                self.counters.inc("drop.dma_buffer_small");
                self.fail_delivery(cx, ch, p);
                return;
            }
            let tag = self.fresh_token();
            let wrote = cx.dma_write(at, &m.args, "lauberhorn-payload", tag).is_ok();
            if !wrote || cx.dma_read(at, 4, "lauberhorn-flush", tag).is_err() {
                self.counters.inc("drop.dma_error");
                self.fail_delivery(cx, ch, p);
                return;
            }
            self.counters.inc("dma_deliveries");
            self.flushes.insert(tag, (ch, p));
            if let Some(h) = self.channels[ch].rx.held.as_mut() {
                h.delivering = true;
            }
            return;
        }
        self.finish_delivery(cx, ch, p);
    }

    /// Answer the held load of `ch` with what line `p` now holds.
    pub(super) fn finish_delivery(&mut self, cx: &mut DeviceCtx<'_>, ch: usize, p: u8) {
        let rx = &mut self.channels[ch].rx;
        let Some(h) = rx.held.take().filter(|h| h.parity == p) else {
            self.counters.inc("drop.lost_hold");
            return;
        };
        let line = rx.slots[p as usize]
            .as_ref()
            .map(|s| s.line.clone())
            .unwrap_or_default();
        let held_ps = (cx.now() - h.since).ps();
        self.counters.add("held_ps", held_ps);
        self.max_held_ps = self.max_held_ps.max(held_ps);
        self.respond(h.id, &line, Grant::Exclusive);
    }

    /// A delivery that cannot complete: its request is answered with an
    /// error and the load with TRYAGAIN.
    pub(super) fn fail_delivery(&mut self, cx: &mut DeviceCtx<'_>, ch: usize, p: u8) {
        let slot = self.channels[ch].rx.slots[p as usize].take();
        if let Some(req) = slot.and_then(|s| s.req) {
            self.fail_request(cx, req);
        }
        if let Some(h) = self.channels[ch].rx.held.as_mut() {
            h.delivering = false;
        }
        self.deliver(cx, ch, RxKind::TryAgain, None);
    }

    /// A request that will not reach a core: answered with `SYSTEM_ERR`.
    pub(super) fn fail_request(&mut self, cx: &mut DeviceCtx<'_>, req: Request) {
        if matches!(req.kind, RxKind::Request | RxKind::Reply) {
            self.finish_result(cx, req, None, BTreeMap::new());
        }
    }

    /// The TRYAGAIN timer of `ch` fired.
    pub(super) fn tryagain_timer(&mut self, cx: &mut DeviceCtx<'_>, ch: usize, epoch: u32) {
        let Some(c) = self.channels.get(ch) else {
            return;
        };
        if c.rx.epoch == epoch && c.rx.held.is_some_and(|h| !h.delivering) {
            self.deliver(cx, ch, RxKind::TryAgain, None);
        }
    }

    /// Arm the TRYAGAIN timer of `ch`'s current hold.
    pub(super) fn arm_tryagain(&mut self, cx: &mut DeviceCtx<'_>, ch: usize) {
        let epoch = self.channels[ch].rx.epoch;
        cx.set_timer(
            Duration::from_ps(self.cfg.tryagain_ps),
            timer_token(T_TRYAGAIN, ch, epoch),
        );
    }

    /// An invalidation the NIC issued is done.
    pub(super) fn invalidated(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        token: u64,
        line: PhysAddr,
        data: Option<Vec<u8>>,
    ) {
        let data = data.or_else(|| self.writebacks.remove(&line.0));
        let Some((cid, k)) = self.tokens.remove(&token) else {
            return;
        };
        let Some(c) = self.collects.get_mut(&cid) else {
            return;
        };
        let (want, ctrl, ovf) = match c {
            Collect::Result {
                want, ctrl, ovf, ..
            }
            | Collect::Tx {
                want, ctrl, ovf, ..
            } => (want, ctrl, ovf),
        };
        match (k, data) {
            (None, d) => *ctrl = d,
            (Some(k), Some(d)) => {
                ovf.insert(k, d);
            }
            (Some(_), None) => {}
        }
        *want -= 1;
        if *want > 0 {
            return;
        }
        if let Some(t) = self.collect_started.remove(&cid) {
            self.fetch_ps += (cx.now() - t).ps();
            self.counters.inc("results_fetched");
        }
        match self.collects.remove(&cid).expect("present") {
            Collect::Result { req, ctrl, ovf, .. } => self.finish_result(cx, req, ctrl, ovf),
            Collect::Tx {
                ch,
                doorbell,
                ctrl,
                ovf,
                ..
            } => self.finish_tx(cx, ch, doorbell, ctrl, ovf),
        }
    }

    /// The chip evicted a modified line: keep its bytes for the
    /// invalidation that will ask for them.
    pub(super) fn written_back(&mut self, line: PhysAddr, data: Vec<u8>) {
        self.counters.inc("write_backs");
        self.writebacks.insert(line.0, data);
    }

    // ---- transmit ---------------------------------------------------------

    /// A core's load of transmit control line `d`: the doorbell for the
    /// message in the other line.
    fn tx_doorbell(&mut self, ch: usize, d: u8, id: u64, cx: &mut DeviceCtx<'_>) {
        let _ = cx;
        let m = 1 - d;
        let written: Vec<usize> = std::mem::take(&mut self.channels[ch].tx.ovf_written)
            .into_iter()
            .collect();
        let cid = self.fresh_token();
        let t = self.fresh_token();
        self.tokens.insert(t, (cid, None));
        let ctrl = self.line_pa(ch, Half::Tx, LineRole::Ctrl(m));
        self.invalidate(ctrl, Invalidate::Clean, t);
        for &k in &written {
            let t = self.fresh_token();
            self.tokens.insert(t, (cid, Some(k)));
            let pa = self.line_pa(ch, Half::Tx, LineRole::Overflow(k));
            self.invalidate(pa, Invalidate::Clean, t);
        }
        self.collects.insert(
            cid,
            Collect::Tx {
                ch,
                doorbell: Held {
                    id,
                    parity: d,
                    since: nextio_engine::Time::ZERO,
                    delivering: false,
                },
                want: 1 + written.len(),
                ctrl: None,
                ovf: BTreeMap::new(),
            },
        );
    }

    /// The message behind a doorbell is in: act on it and answer.
    fn finish_tx(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        ch: usize,
        doorbell: Held,
        ctrl: Option<Vec<u8>>,
        ovf: BTreeMap<usize, Vec<u8>>,
    ) {
        let layout = self.layout.expect("attached");
        let lb = layout.line_bytes as usize;
        if let Some(ctrl) = ctrl {
            let h = TxCtrl::read(&ctrl);
            let len = h.bytes as usize;
            let mut payload = ctrl[CTRL_INLINE_OFFSET..][..len.min(layout.inline_bytes())].to_vec();
            let mut k = 0;
            while payload.len() < len {
                let Some(l) = ovf.get(&k) else { break };
                let take = (len - payload.len()).min(l.len());
                payload.extend_from_slice(&l[..take]);
                k += 1;
            }
            let (core, slot) = layout.owner(ch);
            match TxKind::from_u8(h.kind) {
                _ if payload.len() < len => self.counters.inc("drop.tx_short"),
                Some(TxKind::Message) => {
                    self.counters.inc("tx_messages");
                    let seq = self.next_seq;
                    self.next_seq = self.next_seq.wrapping_add(1).max(1);
                    let d = Duration::from_ps(self.cfg.tx_pipeline_ps + self.cfg.rx_pipeline_ps);
                    let msg = Request {
                        seq,
                        kind: RxKind::Message,
                        slot: slot.unwrap_or(usize::MAX),
                        endpoint: usize::MAX,
                        xid: 0,
                        cookie: h.cookie,
                        reply_flow: crate::packet::FlowKey {
                            src_ip: self.cfg.ip,
                            dst_ip: self.cfg.ip,
                            src_port: 0,
                            dst_port: 0,
                        },
                        reply_macs: Default::default(),
                        args: payload,
                        arrived: cx.now() + d,
                    };
                    let _ = core;
                    self.loop_pipe.push_back((cx.now() + d, ch, msg));
                    cx.set_timer(d, timer_token(T_LOOP, ch, 0));
                }
                Some(TxKind::Call) => match slot {
                    Some(s) => self.call_out(cx, s, h.dest as usize, h.cookie as u32, &payload),
                    None => self.counters.inc("drop.kernel_call"),
                },
                _ => self.counters.inc("drop.tx_bad_kind"),
            }
        } else {
            self.counters.inc("tx_empty_doorbells");
        }
        let mut line = vec![0u8; lb];
        TxCtrl {
            kind: TxKind::Ack as u8,
            ..TxCtrl::default()
        }
        .write(&mut line);
        self.respond(doorbell.id, &line, Grant::Exclusive);
    }

    /// Looped-back messages whose pipelines are done reach their channels.
    pub(super) fn loop_ready(&mut self, cx: &mut DeviceCtx<'_>, _ch: usize) {
        let now = cx.now();
        while self.loop_pipe.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, ch, msg) = self.loop_pipe.pop_front().expect("checked");
            self.channels[ch].direct.push_back(msg);
            self.fill_channel(cx, ch);
        }
    }
}
