//! ONC RPC version 2 (RFC 5531) messages over UDP, with XDR (RFC 4506)
//! arguments and results: what a client encodes, what the Lauberhorn NIC
//! decodes in hardware, and what a software RPC server decodes on a core.
//! One definition, so every side agrees on the bytes.
//!
//! A call is `xid, CALL, rpcvers = 2, prog, vers, proc, cred, verf, args`;
//! a reply is `xid, REPLY, MSG_ACCEPTED, verf, accept_stat, results`.
//! Credentials and verifiers are `AUTH_NONE` when built here and skipped
//! (up to the RFC's 400 bytes) when parsed. Arguments are decoded by a
//! [`Signature`]: the procedure's argument types in order.
//!
//! Bad bytes are an error value ([`RpcError`]), never a panic: every
//! length is checked against what is left of the message.

use thiserror::Error;

/// `msg_type` of a call.
pub const CALL: u32 = 0;
/// `msg_type` of a reply.
pub const REPLY: u32 = 1;
/// The only RPC version (RFC 5531 §9).
pub const RPC_VERSION: u32 = 2;
/// `AUTH_NONE` (RFC 5531 §8.1).
pub const AUTH_NONE: u32 = 0;
/// The largest opaque body of a credential or verifier (RFC 5531 §8.2).
pub const MAX_AUTH_BYTES: usize = 400;
/// Bytes of a call header with `AUTH_NONE` credential and verifier.
pub const CALL_HEADER_BYTES: usize = 40;
/// Bytes of an accepted reply header with an `AUTH_NONE` verifier.
pub const REPLY_HEADER_BYTES: usize = 24;

/// `accept_stat` of an accepted reply (RFC 5531 §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptStat {
    Success = 0,
    ProgUnavail = 1,
    ProgMismatch = 2,
    ProcUnavail = 3,
    GarbageArgs = 4,
    SystemErr = 5,
}

impl AcceptStat {
    fn from_u32(v: u32) -> Option<AcceptStat> {
        Some(match v {
            0 => AcceptStat::Success,
            1 => AcceptStat::ProgUnavail,
            2 => AcceptStat::ProgMismatch,
            3 => AcceptStat::ProcUnavail,
            4 => AcceptStat::GarbageArgs,
            5 => AcceptStat::SystemErr,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RpcError {
    #[error("message ends {0} bytes early")]
    Truncated(usize),
    #[error("not a call (msg_type {0})")]
    NotCall(u32),
    #[error("not an accepted reply")]
    NotAcceptedReply,
    #[error("RPC version {0}, only 2 exists")]
    BadVersion(u32),
    #[error("credential or verifier of {0} bytes, more than 400")]
    BadAuth(usize),
    #[error("an opaque of {len} bytes exceeds its bound of {max}")]
    TooLong { len: usize, max: usize },
    #[error("a boolean of value {0}")]
    BadBool(u32),
    #[error("{0} bytes left over after the arguments")]
    Trailing(usize),
    #[error("unknown accept_stat {0}")]
    BadAcceptStat(u32),
}

/// The XDR type of one argument or result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdrType {
    /// `unsigned int`.
    U32,
    /// `int`.
    I32,
    /// `unsigned hyper`.
    U64,
    /// `hyper`.
    I64,
    /// `bool`.
    Bool,
    /// `opaque<max>`, variable length.
    Opaque { max: u32 },
}

/// One decoded XDR value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XdrValue {
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    Bool(bool),
    Opaque(Vec<u8>),
}

impl XdrValue {
    /// The value's type (an opaque's bound is its length).
    pub fn xdr_type(&self) -> XdrType {
        match self {
            XdrValue::U32(_) => XdrType::U32,
            XdrValue::I32(_) => XdrType::I32,
            XdrValue::U64(_) => XdrType::U64,
            XdrValue::I64(_) => XdrType::I64,
            XdrValue::Bool(_) => XdrType::Bool,
            XdrValue::Opaque(b) => XdrType::Opaque {
                max: b.len() as u32,
            },
        }
    }
    /// As an unsigned integer, if it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            XdrValue::U32(v) => Some(v as u64),
            XdrValue::U64(v) => Some(v),
            XdrValue::I32(v) => Some(v as u64),
            XdrValue::I64(v) => Some(v as u64),
            XdrValue::Bool(b) => Some(b as u64),
            XdrValue::Opaque(_) => None,
        }
    }
}

/// A procedure's argument types, in order.
pub type Signature = Vec<XdrType>;

/// Append the XDR encoding of `v`.
pub fn put_value(out: &mut Vec<u8>, v: &XdrValue) {
    match v {
        XdrValue::U32(x) => out.extend_from_slice(&x.to_be_bytes()),
        XdrValue::I32(x) => out.extend_from_slice(&x.to_be_bytes()),
        XdrValue::U64(x) => out.extend_from_slice(&x.to_be_bytes()),
        XdrValue::I64(x) => out.extend_from_slice(&x.to_be_bytes()),
        XdrValue::Bool(b) => out.extend_from_slice(&(*b as u32).to_be_bytes()),
        XdrValue::Opaque(b) => {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
            out.resize(out.len() + pad(b.len()), 0);
        }
    }
}

/// Zero bytes after an opaque of `len` to reach a multiple of four.
pub fn pad(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// A cursor over XDR bytes that refuses to read past the end.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }
    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.at
    }
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], RpcError> {
        if self.remaining() < n {
            return Err(RpcError::Truncated(n - self.remaining()));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    pub fn u32(&mut self) -> Result<u32, RpcError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, RpcError> {
        let hi = self.u32()? as u64;
        Ok(hi << 32 | self.u32()? as u64)
    }
    /// A variable-length opaque of at most `max` bytes, padding skipped.
    pub fn opaque(&mut self, max: usize) -> Result<&'a [u8], RpcError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(RpcError::TooLong { len, max });
        }
        let b = self.take(len)?;
        self.take(pad(len))?;
        Ok(b)
    }
    /// One value of type `t`.
    pub fn value(&mut self, t: XdrType) -> Result<XdrValue, RpcError> {
        Ok(match t {
            XdrType::U32 => XdrValue::U32(self.u32()?),
            XdrType::I32 => XdrValue::I32(self.u32()? as i32),
            XdrType::U64 => XdrValue::U64(self.u64()?),
            XdrType::I64 => XdrValue::I64(self.u64()? as i64),
            XdrType::Bool => match self.u32()? {
                0 => XdrValue::Bool(false),
                1 => XdrValue::Bool(true),
                v => return Err(RpcError::BadBool(v)),
            },
            XdrType::Opaque { max } => XdrValue::Opaque(self.opaque(max as usize)?.to_vec()),
        })
    }
    /// Skip an `opaque_auth` (flavor and body).
    fn auth(&mut self) -> Result<(), RpcError> {
        self.u32()?;
        let len = self.u32()? as usize;
        if len > MAX_AUTH_BYTES {
            return Err(RpcError::BadAuth(len));
        }
        self.take(len + pad(len))?;
        Ok(())
    }
}

/// The header of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallHeader {
    pub xid: u32,
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
}

/// Encode a call with `AUTH_NONE` credential and verifier.
pub fn build_call(h: CallHeader, args: &[XdrValue]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CALL_HEADER_BYTES + 8 * args.len());
    for w in [
        h.xid,
        CALL,
        RPC_VERSION,
        h.prog,
        h.vers,
        h.proc_,
        AUTH_NONE,
        0,
        AUTH_NONE,
        0,
    ] {
        out.extend_from_slice(&w.to_be_bytes());
    }
    for a in args {
        put_value(&mut out, a);
    }
    out
}

/// Parse a call's header; returns it and the offset of its arguments.
pub fn parse_call(msg: &[u8]) -> Result<(CallHeader, usize), RpcError> {
    let mut r = Reader::new(msg);
    let xid = r.u32()?;
    let ty = r.u32()?;
    if ty != CALL {
        return Err(RpcError::NotCall(ty));
    }
    let v = r.u32()?;
    if v != RPC_VERSION {
        return Err(RpcError::BadVersion(v));
    }
    let (prog, vers, proc_) = (r.u32()?, r.u32()?, r.u32()?);
    r.auth()?;
    r.auth()?;
    Ok((
        CallHeader {
            xid,
            prog,
            vers,
            proc_,
        },
        r.position(),
    ))
}

/// Decode arguments `args` (the bytes after the header) by `sig`; every
/// byte must be used.
pub fn decode_args(args: &[u8], sig: &[XdrType]) -> Result<Vec<XdrValue>, RpcError> {
    let mut r = Reader::new(args);
    let v = sig
        .iter()
        .map(|t| r.value(*t))
        .collect::<Result<Vec<_>, _>>()?;
    if r.remaining() > 0 {
        return Err(RpcError::Trailing(r.remaining()));
    }
    Ok(v)
}

/// Encode an accepted reply with `stat` and (for success) `results`, the
/// results already XDR-encoded.
pub fn build_reply(xid: u32, stat: AcceptStat, results: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(REPLY_HEADER_BYTES + results.len());
    for w in [xid, REPLY, 0, AUTH_NONE, 0, stat as u32] {
        out.extend_from_slice(&w.to_be_bytes());
    }
    if stat == AcceptStat::ProgMismatch {
        // The supported range (RFC 5531 §9): this model serves one version.
        out.extend_from_slice(&results[..results.len().min(8)]);
    } else {
        out.extend_from_slice(results);
    }
    out
}

/// Parse an accepted reply: its xid, status and the offset of the results.
pub fn parse_reply(msg: &[u8]) -> Result<(u32, AcceptStat, usize), RpcError> {
    let mut r = Reader::new(msg);
    let xid = r.u32()?;
    if r.u32()? != REPLY || r.u32()? != 0 {
        return Err(RpcError::NotAcceptedReply);
    }
    r.auth()?;
    let s = r.u32()?;
    let stat = AcceptStat::from_u32(s).ok_or(RpcError::BadAcceptStat(s))?;
    Ok((xid, stat, r.position()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sig() -> Signature {
        vec![
            XdrType::U32,
            XdrType::I64,
            XdrType::Bool,
            XdrType::Opaque { max: 64 },
        ]
    }

    #[test]
    fn a_call_round_trips() {
        let h = CallHeader {
            xid: 7,
            prog: 0x2000_0001,
            vers: 1,
            proc_: 3,
        };
        let args = vec![
            XdrValue::U32(5),
            XdrValue::I64(-2),
            XdrValue::Bool(true),
            XdrValue::Opaque(b"hello".to_vec()),
        ];
        let m = build_call(h, &args);
        assert_eq!(m.len(), CALL_HEADER_BYTES + 4 + 8 + 4 + 4 + 8);
        let (g, off) = parse_call(&m).unwrap();
        assert_eq!((g, off), (h, CALL_HEADER_BYTES));
        assert_eq!(decode_args(&m[off..], &sig()).unwrap(), args);
        let r = build_reply(7, AcceptStat::Success, &9u32.to_be_bytes());
        let (xid, st, off) = parse_reply(&r).unwrap();
        assert_eq!((xid, st, off), (7, AcceptStat::Success, REPLY_HEADER_BYTES));
        assert_eq!(&r[off..], &9u32.to_be_bytes());
    }

    #[test]
    fn bad_messages_are_errors() {
        let m = build_call(
            CallHeader {
                xid: 1,
                prog: 1,
                vers: 1,
                proc_: 1,
            },
            &[XdrValue::Opaque(vec![1; 100])],
        );
        let (_, off) = parse_call(&m).unwrap();
        assert!(matches!(
            decode_args(&m[off..], &[XdrType::Opaque { max: 10 }]),
            Err(RpcError::TooLong { .. })
        ));
        assert!(matches!(parse_call(&m[..10]), Err(RpcError::Truncated(_))));
        let mut bad = m.clone();
        bad[4..8].copy_from_slice(&REPLY.to_be_bytes());
        assert_eq!(parse_call(&bad), Err(RpcError::NotCall(1)));
        assert!(matches!(
            decode_args(&[0, 0, 0, 2], &[XdrType::Bool]),
            Err(RpcError::BadBool(2))
        ));
        assert!(matches!(
            decode_args(&[0; 8], &[XdrType::U32]),
            Err(RpcError::Trailing(4))
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok((_, off)) = parse_call(&bytes) {
                let _ = decode_args(&bytes[off..], &sig());
            }
            let _ = parse_reply(&bytes);
        }

        #[test]
        fn values_round_trip(a in any::<u32>(), b in any::<i64>(), c in any::<bool>(),
                             d in proptest::collection::vec(any::<u8>(), 0..64)) {
            let v = vec![XdrValue::U32(a), XdrValue::I64(b), XdrValue::Bool(c), XdrValue::Opaque(d)];
            let mut out = Vec::new();
            for x in &v { put_value(&mut out, x); }
            prop_assert_eq!(out.len() % 4, 0);
            prop_assert_eq!(decode_args(&out, &sig()).unwrap(), v);
        }
    }
}
