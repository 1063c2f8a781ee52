//! An ONC RPC client over UDP on a DPDK-style poll-mode driver: it encodes
//! calls with XDR arguments (RFC 5531 / RFC 4506, [`nextio_hw::oncrpc`]),
//! sends them in real Ethernet/IPv4/UDP frames, and matches replies to
//! calls by xid. The load generator of the Lauberhorn experiments and the
//! client host of the end-to-end tests.

use std::collections::BTreeMap;

use nextio_engine::{Category, Time};
use nextio_hw::oncrpc::{self, AcceptStat, CallHeader, XdrValue};
use nextio_hw::packet::{
    FCS_BYTES, FlowKey, MAX_FRAME_BYTES, MIN_FRAME_BYTES, Macs, UDP_HEADERS_BYTES, build_udp,
    parse_udp,
};
use nextio_lib::dpdk::{Mbuf, Pmd, PmdError};
use serde::{Deserialize, Serialize};

/// The client's own instruction costs, in core cycles: the root preset's
/// `[apps.rpc_client]`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcClientCosts {
    /// Marshal one call: the XDR encoding of its arguments and header.
    pub encode_cycles: u64,
}

impl Default for RpcClientCosts {
    /// The root preset's `[apps.rpc_client]`.
    fn default() -> Self {
        nextio_presets::root_section("apps.rpc_client")
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Pmd(#[from] PmdError),
    #[error("a call of {0} bytes does not fit one frame")]
    TooLarge(usize),
    #[error("no free mbuf")]
    NoMbuf,
}

/// A reply as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub xid: u32,
    pub stat: AcceptStat,
    /// The XDR-encoded results.
    pub results: Vec<u8>,
    /// When the call was sent and its reply received (client time).
    pub sent: Time,
    pub received: Time,
}

/// A procedure the client's host also serves: the far end of a server's
/// nested call. (The model has no Ethernet switch, so a service the
/// server calls out to sits on the client's side of the one wire.)
pub struct Backend {
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
    pub args: oncrpc::Signature,
    /// The handler's cost, in core cycles.
    pub cycles: u64,
    pub handler: BackendFn,
}

/// A backend's handler: decoded arguments in, results out.
pub type BackendFn = Box<dyn Fn(&[XdrValue]) -> Vec<XdrValue>>;

/// An ONC RPC client on one DPDK queue.
pub struct RpcClient {
    pmd: Pmd,
    macs: Macs,
    flow: FlowKey,
    next_xid: u32,
    sent: BTreeMap<u32, Time>,
    rx: Vec<Mbuf>,
    buf: Vec<u8>,
    /// Frames that were not a reply to an outstanding call (nor a call
    /// the backend served).
    pub strays: u64,
    backend: Option<Backend>,
    /// Calls the backend answered.
    pub served: u64,
    costs: RpcClientCosts,
}

impl RpcClient {
    /// A client sending from `flow.src` to the server at `flow.dst`.
    pub fn new(pmd: Pmd, macs: Macs, flow: FlowKey, first_xid: u32) -> RpcClient {
        RpcClient {
            pmd,
            macs,
            flow,
            next_xid: first_xid,
            sent: BTreeMap::new(),
            rx: Vec::new(),
            buf: Vec::new(),
            strays: 0,
            backend: None,
            served: 0,
            costs: RpcClientCosts::default(),
        }
    }

    /// Send the next calls from UDP port `port` (to steer them, e.g. by
    /// RSS, to a queue of the server's NIC).
    pub fn set_src_port(&mut self, port: u16) {
        self.flow.src_port = port;
    }

    /// Send the next calls to the server's UDP port `port` (services
    /// bound to ports of their own, as Linux sockets are).
    pub fn set_dst_port(&mut self, port: u16) {
        self.flow.dst_port = port;
    }

    /// Also answer calls for `backend` that arrive while receiving.
    pub fn set_backend(&mut self, backend: Backend) {
        self.backend = Some(backend);
    }

    pub fn pmd(&self) -> &Pmd {
        &self.pmd
    }
    /// Calls sent and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.sent.len()
    }

    /// Encode and send one call; returns its xid.
    pub async fn send(
        &mut self,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &[XdrValue],
    ) -> Result<u32, ClientError> {
        let xid = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1);
        let msg = oncrpc::build_call(
            CallHeader {
                xid,
                prog,
                vers,
                proc_,
            },
            args,
        );
        let size = (msg.len() + UDP_HEADERS_BYTES + FCS_BYTES).max(MIN_FRAME_BYTES);
        if size > MAX_FRAME_BYTES {
            return Err(ClientError::TooLarge(msg.len()));
        }
        let frame = build_udp(self.macs, self.flow, &msg, size)
            .map_err(|_| ClientError::TooLarge(msg.len()))?;
        self.pmd
            .ctx()
            .cycles(Category::Application, self.costs.encode_cycles);
        let m = self.pmd.alloc().ok_or(ClientError::NoMbuf)?;
        self.pmd.write_packet(m, &frame)?;
        self.sent.insert(xid, self.pmd.ctx().local_now());
        let mut tx = vec![m];
        while !tx.is_empty() {
            self.pmd.tx_burst(&mut tx).await?;
        }
        Ok(xid)
    }

    /// Receive whatever replies have arrived, waiting for at least one if
    /// `wait` (busy polling).
    pub async fn receive(&mut self, wait: bool) -> Result<Vec<Reply>, ClientError> {
        let mut out = Vec::new();
        loop {
            if self.pmd.rx_burst(&mut self.rx, 32).await? > 0 {
                break;
            }
            if !wait {
                return Ok(out);
            }
            self.pmd.wait_rx().await;
        }
        let now = self.pmd.ctx().local_now();
        let mut answers = Vec::new();
        for m in std::mem::take(&mut self.rx) {
            self.pmd.read_packet(m, &mut self.buf)?;
            self.pmd.free(m);
            if let Some(a) = self.serve_backend() {
                answers.push(a);
                continue;
            }
            let parsed = parse_udp(&self.buf).ok().and_then(|v| {
                let p = &self.buf[v.payload_offset..v.payload_offset + v.payload_len];
                oncrpc::parse_reply(p)
                    .ok()
                    .map(|(xid, stat, off)| (xid, stat, p[off..].to_vec()))
            });
            match parsed
                .and_then(|(xid, stat, r)| self.sent.remove(&xid).map(|s| (xid, stat, r, s)))
            {
                Some((xid, stat, results, sent)) => out.push(Reply {
                    xid,
                    stat,
                    results,
                    sent,
                    received: now,
                }),
                None => self.strays += 1,
            }
        }
        for frame in answers {
            self.pmd
                .ctx()
                .cycles(Category::Application, self.costs.encode_cycles);
            let m = self.pmd.alloc().ok_or(ClientError::NoMbuf)?;
            self.pmd.write_packet(m, &frame)?;
            let mut tx = vec![m];
            while !tx.is_empty() {
                self.pmd.tx_burst(&mut tx).await?;
            }
            self.served += 1;
        }
        Ok(out)
    }

    /// If the frame in `buf` is a call for the backend, its reply frame
    /// (the handler's cost charged).
    fn serve_backend(&mut self) -> Option<Vec<u8>> {
        let b = self.backend.as_ref()?;
        let v = parse_udp(&self.buf).ok()?;
        let p = &self.buf[v.payload_offset..v.payload_offset + v.payload_len];
        let (h, off) = oncrpc::parse_call(p).ok()?;
        let reply = if (h.prog, h.vers, h.proc_) != (b.prog, b.vers, b.proc_) {
            oncrpc::build_reply(h.xid, AcceptStat::ProcUnavail, &[])
        } else {
            match oncrpc::decode_args(&p[off..], &b.args) {
                Ok(args) => {
                    self.pmd.ctx().cycles(Category::Application, b.cycles);
                    let mut out = Vec::new();
                    for r in (b.handler)(&args) {
                        oncrpc::put_value(&mut out, &r);
                    }
                    oncrpc::build_reply(h.xid, AcceptStat::Success, &out)
                }
                Err(_) => oncrpc::build_reply(h.xid, AcceptStat::GarbageArgs, &[]),
            }
        };
        let macs = Macs {
            src: self.macs.src,
            dst: self.buf.get(6..12)?.try_into().ok()?,
        };
        let size = (reply.len() + UDP_HEADERS_BYTES + FCS_BYTES).max(MIN_FRAME_BYTES);
        build_udp(macs, v.flow.reversed(), &reply, size).ok()
    }

    /// One call, waiting for its reply.
    pub async fn call(
        &mut self,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &[XdrValue],
    ) -> Result<Reply, ClientError> {
        let xid = self.send(prog, vers, proc_, args).await?;
        loop {
            for r in self.receive(true).await? {
                if r.xid == xid {
                    return Ok(r);
                }
            }
        }
    }
}
