//! Frames in and out: the receive pipeline (verify Ethernet/IPv4/UDP,
//! parse the ONC RPC call, find its endpoint, decode its XDR arguments
//! into native form) and the transmit pipeline (encode a result as an ONC
//! RPC reply in a UDP frame). Calls no endpoint serves, and arguments that
//! do not decode, are answered by the NIC itself with the RFC 5531 status;
//! replies to this NIC's own outgoing calls (nested RPCs) are matched by
//! xid and become continuations.

use nextio_engine::Duration;

use super::layout::{ResultHdr, RxKind, encode_native};
use super::{LauberhornNic, Request, T_TX_PIPE};
use crate::device::DeviceCtx;
use crate::oncrpc::{self, AcceptStat};
use crate::packet::{
    FCS_BYTES, FlowKey, Frame, MAX_FRAME_BYTES, MIN_FRAME_BYTES, Macs, UDP_HEADERS_BYTES,
    build_udp, parse_udp,
};
use std::collections::BTreeMap;

/// Refused nested calls remembered at most (see `refuse`).
const REFUSED_CALLS_MAX: usize = 4096;

/// The counter of a reply the NIC sends itself with status `s`.
fn nic_replied(s: AcceptStat) -> &'static str {
    match s {
        AcceptStat::Success => "nic_replied.success",
        AcceptStat::ProgUnavail => "nic_replied.prog_unavail",
        AcceptStat::ProgMismatch => "nic_replied.prog_mismatch",
        AcceptStat::ProcUnavail => "nic_replied.proc_unavail",
        AcceptStat::GarbageArgs => "nic_replied.garbage_args",
        AcceptStat::SystemErr => "nic_replied.system_err",
    }
}

impl LauberhornNic {
    /// Frames whose decode finished by now.
    pub(super) fn decode_ready(&mut self, cx: &mut DeviceCtx<'_>) {
        let now = cx.now();
        while self.rx_pipe.front().is_some_and(|(t, _)| *t <= now) {
            let (_, f) = self.rx_pipe.pop_front().expect("checked");
            self.decode(cx, f);
        }
    }

    fn decode(&mut self, cx: &mut DeviceCtx<'_>, frame: Frame) {
        let Ok(v) = parse_udp(&frame.bytes) else {
            self.counters.inc("drop.bad_frame");
            return;
        };
        if v.flow.dst_ip != self.cfg.ip {
            self.counters.inc("drop.not_for_us");
            return;
        }
        let macs = Macs {
            src: frame.bytes[0..6].try_into().unwrap_or([0; 6]),
            dst: frame.bytes[6..12].try_into().unwrap_or([0; 6]),
        };
        let reply_flow = v.flow.reversed();
        let payload = &frame.bytes[v.payload_offset..v.payload_offset + v.payload_len];
        match oncrpc::parse_call(payload) {
            Ok((h, off)) if v.flow.dst_port == self.cfg.rpc_port => {
                let now = cx.now();
                match self.endpoints.lookup(h.prog, h.vers, h.proc_) {
                    Err(stat) => {
                        let info = match stat {
                            AcceptStat::ProgMismatch => {
                                let (lo, hi) = self.endpoints.versions(h.prog).unwrap_or((0, 0));
                                [lo.to_be_bytes(), hi.to_be_bytes()].concat()
                            }
                            _ => Vec::new(),
                        };
                        self.nic_reply(cx, reply_flow, macs, h.xid, stat, &info);
                    }
                    Ok(i) => {
                        let ep = self.endpoints.get(i).expect("looked up");
                        match oncrpc::decode_args(&payload[off..], &ep.args) {
                            Err(_) => {
                                self.nic_reply(
                                    cx,
                                    reply_flow,
                                    macs,
                                    h.xid,
                                    AcceptStat::GarbageArgs,
                                    &[],
                                );
                            }
                            Ok(vals) => {
                                let seq = self.next_seq;
                                self.next_seq = self.next_seq.wrapping_add(1).max(1);
                                let req = Request {
                                    seq,
                                    kind: RxKind::Request,
                                    slot: ep.slot,
                                    endpoint: i,
                                    xid: h.xid,
                                    cookie: 0,
                                    reply_flow,
                                    reply_macs: macs,
                                    args: encode_native(&vals),
                                    arrived: now,
                                };
                                self.counters.inc("requests");
                                self.enqueue(cx, req);
                            }
                        }
                    }
                }
            }
            Ok(_) => self.counters.inc("drop.not_rpc_port"),
            Err(_) => self.continuation(cx, payload),
        }
    }

    /// A reply to one of this NIC's nested calls: the waiting request's
    /// continuation, for the process that made the call.
    fn continuation(&mut self, cx: &mut DeviceCtx<'_>, payload: &[u8]) {
        let Ok((xid, stat, off)) = oncrpc::parse_reply(payload) else {
            self.counters.inc("drop.bad_rpc");
            return;
        };
        let Some((dest, orig)) = self.calls.remove(&xid) else {
            self.counters.inc("drop.unknown_reply");
            return;
        };
        let Some(mut req) = self.deferred.remove(&orig) else {
            self.counters.inc("drop.unknown_reply");
            return;
        };
        let vals = match (stat, self.dests.get(dest)) {
            (AcceptStat::Success, Some(d)) => oncrpc::decode_args(&payload[off..], &d.results).ok(),
            _ => None,
        };
        let Some(vals) = vals else {
            // The nested call failed: the original caller learns it.
            self.counters.inc("nested.failed");
            self.counters.inc("replies.system_err");
            self.error_reply(cx, &req);
            return;
        };
        self.counters.inc("nested.replies");
        req.kind = RxKind::Reply;
        req.args = encode_native(&vals);
        req.arrived = cx.now();
        self.enqueue(cx, req);
    }

    /// The NIC answers a call itself with `stat`.
    fn nic_reply(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        flow: FlowKey,
        macs: Macs,
        xid: u32,
        stat: AcceptStat,
        results: &[u8],
    ) {
        self.counters.inc(nic_replied(stat));
        let msg = oncrpc::build_reply(xid, stat, results);
        self.emit(cx, flow, macs, &msg);
    }

    /// The core's result for `req` came back (`ctrl` is the control line
    /// as the core left it, `ovf` the overflow lines it wrote): encode and
    /// send the reply.
    pub(super) fn finish_result(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        req: Request,
        ctrl: Option<Vec<u8>>,
        ovf: BTreeMap<usize, Vec<u8>>,
    ) {
        let layout = self.layout.expect("attached");
        let inline = layout.inline_bytes();
        let hdr = ctrl.as_deref().and_then(ResultHdr::read);
        let Some(hdr) = hdr.filter(|h| h.seq == req.seq) else {
            self.counters.inc("replies.system_err");
            self.error_reply(cx, &req);
            return;
        };
        if hdr.stat == super::rx_stat::DEFERRED {
            if self.refused_calls.remove(&(req.slot, req.seq)) {
                // Its nested call was refused: no continuation will come.
                self.counters.inc("replies.system_err");
                self.error_reply(cx, &req);
                return;
            }
            // A nested call is under way; its continuation will answer.
            self.counters.inc("deferred");
            self.deferred.insert(req.seq, req);
            return;
        }
        let ctrl = ctrl.expect("a header was read from it");
        let len = hdr.result_bytes as usize;
        let mut bytes = ctrl[super::layout::CTRL_INLINE_OFFSET..][..len.min(inline)].to_vec();
        let mut k = 0;
        while bytes.len() < len {
            let Some(l) = ovf.get(&k) else { break };
            let take = (len - bytes.len()).min(l.len());
            bytes.extend_from_slice(&l[..take]);
            k += 1;
        }
        let ep = self.endpoints.get(req.endpoint);
        let results = match (hdr.stat, ep) {
            (0, Some(ep)) if bytes.len() == len => {
                super::layout::decode_native(&bytes, &ep.results).map(|v| {
                    let mut out = Vec::new();
                    for x in &v {
                        oncrpc::put_value(&mut out, x);
                    }
                    out
                })
            }
            _ => None,
        };
        match results {
            Some(r) => {
                self.counters.inc("replies");
                // Frame arrival (before the decode pipeline) to departure
                // (after the encode pipeline).
                let leaves = cx.now() + Duration::from_ps(self.cfg.tx_pipeline_ps);
                self.service_ps += (leaves - req.arrived).ps() + self.cfg.rx_pipeline_ps;
                let msg = oncrpc::build_reply(req.xid, AcceptStat::Success, &r);
                self.emit(cx, req.reply_flow, req.reply_macs, &msg);
            }
            None => {
                self.counters.inc("replies.system_err");
                self.error_reply(cx, &req);
            }
        }
    }

    /// A `SYSTEM_ERR` reply for a request that got no usable result.
    fn error_reply(&mut self, cx: &mut DeviceCtx<'_>, req: &Request) {
        let msg = oncrpc::build_reply(req.xid, AcceptStat::SystemErr, &[]);
        self.emit(cx, req.reply_flow, req.reply_macs, &msg);
    }

    /// Remember that `slot`'s nested call for request `orig` was refused
    /// (bounded: a process that makes calls for requests it never defers
    /// only loses its own error replies).
    fn refuse(&mut self, slot: usize, orig: u32) {
        if self.refused_calls.len() < REFUSED_CALLS_MAX {
            self.refused_calls.insert((slot, orig));
        } else {
            self.counters.inc("drop.refused_calls_full");
        }
    }

    /// An outgoing call by `slot` to destination `dest`, with native
    /// arguments `args`, on behalf of the deferred request `orig`.
    pub(super) fn call_out(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        slot: usize,
        dest: usize,
        orig: u32,
        args: &[u8],
    ) {
        let Some(d) = self.dests.get(dest).cloned().filter(|d| d.slot == slot) else {
            self.counters.inc("drop.bad_destination");
            self.refuse(slot, orig);
            return;
        };
        let Some(vals) = super::layout::decode_native(args, &d.args) else {
            self.counters.inc("drop.bad_call_args");
            self.refuse(slot, orig);
            return;
        };
        let xid = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1);
        self.calls.insert(xid, (dest, orig));
        let msg = oncrpc::build_call(
            oncrpc::CallHeader {
                xid,
                prog: d.prog,
                vers: d.vers,
                proc_: d.proc_,
            },
            &vals,
        );
        let flow = FlowKey {
            src_ip: self.cfg.ip,
            dst_ip: d.ip,
            src_port: self.cfg.rpc_port.wrapping_add(1),
            dst_port: d.port,
        };
        let macs = Macs {
            src: self.cfg.mac,
            dst: d.mac,
        };
        self.counters.inc("nested.calls");
        self.emit(cx, flow, macs, &msg);
    }

    /// Put `msg` in a UDP frame for `flow` into the transmit pipeline.
    fn emit(&mut self, cx: &mut DeviceCtx<'_>, flow: FlowKey, macs: Macs, msg: &[u8]) {
        let size = (msg.len() + UDP_HEADERS_BYTES + FCS_BYTES).max(MIN_FRAME_BYTES);
        if size > MAX_FRAME_BYTES {
            self.counters.inc("drop.reply_too_large");
            return;
        }
        let macs = Macs {
            src: self.cfg.mac,
            dst: macs.dst,
        };
        let Ok(bytes) = build_udp(macs, flow, msg, size) else {
            self.counters.inc("drop.reply_too_large");
            return;
        };
        let d = Duration::from_ps(self.cfg.tx_pipeline_ps);
        let id = self.counters.get("tx_built");
        self.counters.inc("tx_built");
        self.tx_pipe
            .push_back((cx.now() + d, Frame::new(bytes, id)));
        cx.set_timer(d, T_TX_PIPE);
    }

    /// Send every encoded frame whose pipeline finished, while the port
    /// has room.
    pub(super) fn drain_tx(&mut self, cx: &mut DeviceCtx<'_>) {
        let now = cx.now();
        while self.tx_pipe.front().is_some_and(|(t, _)| *t <= now) {
            let (t, f) = self.tx_pipe.pop_front().expect("checked");
            match cx.send_frame(0, f) {
                Ok(_) => self.counters.inc("tx_frames"),
                Err(_) if !cx.port_connected(0) => self.counters.inc("drop.no_wire"),
                Err(f) => {
                    self.tx_pipe.push_front((t, f));
                    cx.wake_when_port_ready(0);
                    return;
                }
            }
        }
    }
}
