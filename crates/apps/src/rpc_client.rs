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

/// Client work to marshal one call (assumption: 200 cycles for the XDR
/// encoding of a few arguments and the header).
pub const ENCODE_CYCLES: u64 = 200;

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

/// An ONC RPC client on one DPDK queue.
pub struct RpcClient {
    pmd: Pmd,
    macs: Macs,
    flow: FlowKey,
    next_xid: u32,
    sent: BTreeMap<u32, Time>,
    rx: Vec<Mbuf>,
    buf: Vec<u8>,
    /// Frames that were not a reply to an outstanding call.
    pub strays: u64,
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
        }
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
        self.pmd.ctx().cycles(Category::Application, ENCODE_CYCLES);
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
        for m in std::mem::take(&mut self.rx) {
            self.pmd.read_packet(m, &mut self.buf)?;
            self.pmd.free(m);
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
        Ok(out)
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
