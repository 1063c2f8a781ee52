//! The byte layouts the Lauberhorn NIC and the software on the cores
//! share: where each channel's lines sit in the NIC's coherent window, the
//! control line of each direction, and the native (unmarshalled) form of
//! arguments and results. Defined once; the NIC and the runtime both use
//! these views.
//!
//! Window: channel `i` occupies `[i × CHANNEL_BYTES, (i+1) × CHANNEL_BYTES)`.
//! Channels `0..cores` are the cores' kernel channels; channel
//! `cores + slot × cores + core` is process `slot`'s user channel on
//! `core`. Each channel is 32 KiB, page aligned (the OS maps a channel
//! into exactly one address space): the receive half at +0, the transmit
//! half at +16 KiB; in each half control line 0 at +0, control line 1 one
//! line further, then overflow lines.
//!
//! A receive control line (NIC → core), little-endian:
//! `kind:u8 flags:u8 args_bytes:u16 slot:u16 overflow:u8 endpoint:u8
//! code:u64 data:u64 xid:u32 seq:u32`, then the first argument bytes
//! inline from [`CTRL_INLINE_OFFSET`]. The core writes its result into
//! the same line: `RESULT flags stat:u8 _ result_bytes:u16 …` with the
//! result's first bytes inline, the rest in overflow lines.
//! A transmit control line (core → NIC): `kind flags bytes:u16 dest:u16 _
//! cookie:u64 …`, payload inline then in overflow lines.

use crate::oncrpc::{XdrType, XdrValue};

/// Bytes of one channel in the window.
pub const CHANNEL_BYTES: u64 = 32 << 10;
/// Offset of the transmit half of a channel.
pub const TX_HALF: u64 = 16 << 10;
/// Offset of the inline payload in a control line.
pub const CTRL_INLINE_OFFSET: usize = 32;

/// What a receive control line says (byte 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RxKind {
    /// An RPC request to run.
    Request = 1,
    /// Nothing arrived in time: ask again.
    TryAgain = 2,
    /// Give the core back: return to the kernel's dispatch loop.
    YieldNow = 3,
    /// Leave the RPC pool (kernel channels only).
    Retire = 4,
    /// A message looped back from the transmit side (a loopback test).
    Message = 5,
    /// A reply to a call this process made (a nested RPC's continuation).
    Reply = 6,
    /// What the core writes back: the request's result.
    Result = 0x80,
}

impl RxKind {
    pub fn from_u8(b: u8) -> Option<RxKind> {
        Some(match b {
            1 => RxKind::Request,
            2 => RxKind::TryAgain,
            3 => RxKind::YieldNow,
            4 => RxKind::Retire,
            5 => RxKind::Message,
            6 => RxKind::Reply,
            0x80 => RxKind::Result,
            _ => return None,
        })
    }
}

/// Flag: the message's bytes are in the channel's DMA buffer, not in
/// overflow lines.
pub const FLAG_DMA: u8 = 1;

/// What a transmit control line says (byte 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TxKind {
    /// Raw bytes for the loopback path.
    Message = 1,
    /// An RPC call to an outgoing destination (a nested call).
    Call = 2,
    /// The NIC's answer to the doorbell read: the last message was taken.
    Ack = 0x81,
}

impl TxKind {
    pub fn from_u8(b: u8) -> Option<TxKind> {
        Some(match b {
            1 => TxKind::Message,
            2 => TxKind::Call,
            0x81 => TxKind::Ack,
            _ => return None,
        })
    }
}

/// Where things are in the window, for one line size and core count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowLayout {
    pub line_bytes: u64,
    pub cores: usize,
    pub slots: usize,
}

/// Which half of a channel a line is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    Rx,
    Tx,
}

/// A line of the window, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineAddr {
    pub channel: usize,
    pub half: Half,
    pub which: LineRole,
}

/// A control line (parity 0 or 1) or overflow line `k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineRole {
    Ctrl(u8),
    Overflow(usize),
}

impl WindowLayout {
    pub fn channels(&self) -> usize {
        self.cores * (1 + self.slots)
    }
    pub fn window_bytes(&self) -> u64 {
        self.channels() as u64 * CHANNEL_BYTES
    }
    /// Overflow lines per half.
    pub fn overflow_lines(&self) -> usize {
        (TX_HALF / self.line_bytes) as usize - 2
    }
    /// Inline payload bytes of a control line.
    pub fn inline_bytes(&self) -> usize {
        self.line_bytes as usize - CTRL_INLINE_OFFSET
    }
    /// The most a message can carry in lines (inline plus overflow).
    pub fn max_line_payload(&self) -> usize {
        self.inline_bytes() + self.overflow_lines() * self.line_bytes as usize
    }
    pub fn kernel_channel(&self, core: usize) -> usize {
        core
    }
    pub fn user_channel(&self, slot: usize, core: usize) -> usize {
        self.cores + slot * self.cores + core
    }
    /// Who a channel belongs to: `(core, Some(slot))` for a user channel.
    pub fn owner(&self, channel: usize) -> (usize, Option<usize>) {
        if channel < self.cores {
            (channel, None)
        } else {
            let i = channel - self.cores;
            (i % self.cores, Some(i / self.cores))
        }
    }
    /// Offset of a line in the window.
    pub fn offset(&self, channel: usize, half: Half, which: LineRole) -> u64 {
        let base = channel as u64 * CHANNEL_BYTES
            + match half {
                Half::Rx => 0,
                Half::Tx => TX_HALF,
            };
        base + match which {
            LineRole::Ctrl(p) => p as u64 * self.line_bytes,
            LineRole::Overflow(k) => (2 + k as u64) * self.line_bytes,
        }
    }
    /// The line at window offset `off`, if it is one of a channel's.
    pub fn decode(&self, off: u64) -> Option<LineAddr> {
        let channel = (off / CHANNEL_BYTES) as usize;
        if channel >= self.channels() {
            return None;
        }
        let in_ch = off % CHANNEL_BYTES;
        let (half, in_half) = if in_ch >= TX_HALF {
            (Half::Tx, in_ch - TX_HALF)
        } else {
            (Half::Rx, in_ch)
        };
        let idx = (in_half / self.line_bytes) as usize;
        let which = match idx {
            0 | 1 => LineRole::Ctrl(idx as u8),
            k => LineRole::Overflow(k - 2),
        };
        Some(LineAddr {
            channel,
            half,
            which,
        })
    }
}

/// The header of a receive control line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RxCtrl {
    pub kind: u8,
    pub flags: u8,
    pub args_bytes: u16,
    pub slot: u16,
    pub overflow: u8,
    pub endpoint: u8,
    pub code: u64,
    pub data: u64,
    pub xid: u32,
    pub seq: u32,
}

impl RxCtrl {
    pub fn write(&self, line: &mut [u8]) {
        line[0] = self.kind;
        line[1] = self.flags;
        line[2..4].copy_from_slice(&self.args_bytes.to_le_bytes());
        line[4..6].copy_from_slice(&self.slot.to_le_bytes());
        line[6] = self.overflow;
        line[7] = self.endpoint;
        line[8..16].copy_from_slice(&self.code.to_le_bytes());
        line[16..24].copy_from_slice(&self.data.to_le_bytes());
        line[24..28].copy_from_slice(&self.xid.to_le_bytes());
        line[28..32].copy_from_slice(&self.seq.to_le_bytes());
    }
    pub fn read(line: &[u8]) -> RxCtrl {
        let u16_at = |i: usize| u16::from_le_bytes([line[i], line[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes(line[i..i + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |i: usize| u64::from_le_bytes(line[i..i + 8].try_into().unwrap_or([0; 8]));
        RxCtrl {
            kind: line[0],
            flags: line[1],
            args_bytes: u16_at(2),
            slot: u16_at(4),
            overflow: line[6],
            endpoint: line[7],
            code: u64_at(8),
            data: u64_at(16),
            xid: u32_at(24),
            seq: u32_at(28),
        }
    }
}

/// The header a core writes back into a receive control line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ResultHdr {
    /// `accept_stat` of the reply (0: success).
    pub stat: u8,
    pub result_bytes: u16,
    /// The request's `seq`, echoed so a stale result is recognised.
    pub seq: u32,
}

impl ResultHdr {
    pub fn write(&self, line: &mut [u8]) {
        line[0] = RxKind::Result as u8;
        line[1] = 0;
        line[2] = self.stat;
        line[3] = 0;
        line[4..6].copy_from_slice(&self.result_bytes.to_le_bytes());
        line[28..32].copy_from_slice(&self.seq.to_le_bytes());
    }
    /// The result header, if the line holds one.
    pub fn read(line: &[u8]) -> Option<ResultHdr> {
        (line.first() == Some(&(RxKind::Result as u8))).then(|| ResultHdr {
            stat: line[2],
            result_bytes: u16::from_le_bytes([line[4], line[5]]),
            seq: u32::from_le_bytes(line[28..32].try_into().unwrap_or([0; 4])),
        })
    }
}

/// The header of a transmit control line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TxCtrl {
    pub kind: u8,
    pub flags: u8,
    pub bytes: u16,
    pub dest: u16,
    pub cookie: u64,
}

impl TxCtrl {
    pub fn write(&self, line: &mut [u8]) {
        line[0] = self.kind;
        line[1] = self.flags;
        line[2..4].copy_from_slice(&self.bytes.to_le_bytes());
        line[4..6].copy_from_slice(&self.dest.to_le_bytes());
        line[8..16].copy_from_slice(&self.cookie.to_le_bytes());
    }
    pub fn read(line: &[u8]) -> TxCtrl {
        TxCtrl {
            kind: line[0],
            flags: line[1],
            bytes: u16::from_le_bytes([line[2], line[3]]),
            dest: u16::from_le_bytes([line[4], line[5]]),
            cookie: u64::from_le_bytes(line[8..16].try_into().unwrap_or([0; 8])),
        }
    }
}

/// Lines a payload of `bytes` needs beyond the control line's inline part.
pub fn overflow_needed(bytes: usize, inline: usize, line_bytes: usize) -> usize {
    bytes.saturating_sub(inline).div_ceil(line_bytes)
}

/// Split `payload` into the control line's inline part and overflow lines.
pub fn split_payload(payload: &[u8], inline: usize, line_bytes: usize) -> (&[u8], Vec<&[u8]>) {
    let (head, rest) = payload.split_at(payload.len().min(inline));
    (head, rest.chunks(line_bytes).collect())
}

/// Native (unmarshalled) form of values, as the handler reads them: each
/// 32-bit value in 4 bytes and each 64-bit value in 8 bytes aligned to 8,
/// little-endian; an opaque as a 4-byte length, its bytes, then padding
/// to 8.
pub fn encode_native(values: &[XdrValue]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        match v {
            XdrValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            XdrValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            XdrValue::Bool(b) => out.extend_from_slice(&(*b as u32).to_le_bytes()),
            XdrValue::U64(x) => {
                out.resize(out.len().next_multiple_of(8), 0);
                out.extend_from_slice(&x.to_le_bytes());
            }
            XdrValue::I64(x) => {
                out.resize(out.len().next_multiple_of(8), 0);
                out.extend_from_slice(&x.to_le_bytes());
            }
            XdrValue::Opaque(b) => {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
                out.resize(out.len().next_multiple_of(8), 0);
            }
        }
    }
    out
}

/// Read native values of types `sig` back; `None` if the bytes are short
/// or an opaque is longer than its bound.
pub fn decode_native(bytes: &[u8], sig: &[XdrType]) -> Option<Vec<XdrValue>> {
    struct Cursor<'a> {
        bytes: &'a [u8],
        at: usize,
    }
    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize, align: usize) -> Option<&'a [u8]> {
            self.at = self.at.next_multiple_of(align);
            let s = self.bytes.get(self.at..self.at + n)?;
            self.at += n;
            Some(s)
        }
        fn u32(&mut self) -> Option<u32> {
            Some(u32::from_le_bytes(self.take(4, 1)?.try_into().ok()?))
        }
        fn u64(&mut self) -> Option<u64> {
            Some(u64::from_le_bytes(self.take(8, 8)?.try_into().ok()?))
        }
    }
    let mut c = Cursor { bytes, at: 0 };
    let mut out = Vec::with_capacity(sig.len());
    for t in sig {
        let v = match t {
            XdrType::U32 => XdrValue::U32(c.u32()?),
            XdrType::I32 => XdrValue::I32(c.u32()? as i32),
            XdrType::Bool => XdrValue::Bool(c.u32()? != 0),
            XdrType::U64 => XdrValue::U64(c.u64()?),
            XdrType::I64 => XdrValue::I64(c.u64()? as i64),
            XdrType::Opaque { max } => {
                let len = c.u32()? as usize;
                if len > *max as usize {
                    return None;
                }
                let b = c.take(len, 1)?.to_vec();
                c.at = c.at.next_multiple_of(8);
                XdrValue::Opaque(b)
            }
        };
        out.push(v);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_lines_and_owners_decode() {
        let w = WindowLayout {
            line_bytes: 128,
            cores: 4,
            slots: 3,
        };
        assert_eq!(w.channels(), 16);
        assert_eq!(w.overflow_lines(), 126);
        assert_eq!(w.inline_bytes(), 96);
        let ch = w.user_channel(2, 1);
        assert_eq!(w.owner(ch), (1, Some(2)));
        assert_eq!(w.owner(w.kernel_channel(3)), (3, None));
        for (half, which) in [
            (Half::Rx, LineRole::Ctrl(1)),
            (Half::Tx, LineRole::Ctrl(0)),
            (Half::Rx, LineRole::Overflow(125)),
            (Half::Tx, LineRole::Overflow(3)),
        ] {
            let off = w.offset(ch, half, which);
            assert_eq!(
                w.decode(off),
                Some(LineAddr {
                    channel: ch,
                    half,
                    which
                })
            );
        }
        assert_eq!(w.decode(w.window_bytes()), None);
    }

    #[test]
    fn native_values_round_trip_and_headers_too() {
        let v = vec![
            XdrValue::U32(1),
            XdrValue::U64(2),
            XdrValue::Opaque(vec![3; 5]),
            XdrValue::I32(-4),
            XdrValue::Bool(true),
        ];
        let sig: Vec<_> = v.iter().map(|x| x.xdr_type()).collect();
        let b = encode_native(&v);
        assert_eq!(decode_native(&b, &sig), Some(v));
        assert_eq!(decode_native(&b[..5], &sig), None);
        let mut line = vec![0u8; 128];
        let h = RxCtrl {
            kind: RxKind::Request as u8,
            args_bytes: 40,
            slot: 2,
            code: 0xdead,
            xid: 9,
            seq: 77,
            ..RxCtrl::default()
        };
        h.write(&mut line);
        assert_eq!(RxCtrl::read(&line), h);
        ResultHdr {
            stat: 0,
            result_bytes: 8,
            seq: 77,
        }
        .write(&mut line);
        assert_eq!(ResultHdr::read(&line).unwrap().seq, 77);
    }
}
