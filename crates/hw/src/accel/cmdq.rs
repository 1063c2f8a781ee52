//! The QAT-like command-queue interface of nextio's accelerators (thesis
//! §2.1, Figure 1), shared by the device and by whoever drives it — the
//! CPU's driver or Nagare's legacy adapter: a ring of 64-byte descriptors
//! at a bus address, whose tail the driver advances with an 8-byte MMIO
//! write to the device's `TAIL` register (①); the device DMA-reads the
//! new descriptors (②) and each one's input (③), DMA-writes the output
//! (④) and overwrites the descriptor with its completion (⑤).
//!
//! A descriptor is complete when its `STATUS` byte has [`DONE`] set; the
//! low bits are a [`crate::nagare::layout::status`] code.

use crate::layout::{Field, get_u32, get_u64, set_u32, set_u64};
use crate::nagare::layout::STATE_BYTES;

/// Bytes of a descriptor (one cache line, as a QAT request is 64 or 128 B).
pub const DESCRIPTOR_BYTES: u64 = 64;
/// Offset of the tail (doorbell) register in BAR0; an 8-byte write.
pub const TAIL_REGISTER: u64 = 0;
/// Set in `STATUS` by the device on completion.
pub const DONE: u8 = 0x80;

mod field {
    use super::Field;
    pub const OP: Field = 0..4;
    pub const STATUS: usize = 4;
    pub const STATE: Field = 8..24;
    pub const SRC: Field = 24..32;
    pub const SRC_LEN: Field = 32..36;
    pub const DST_CAP: Field = 36..40;
    pub const DST: Field = 40..48;
    pub const OUT_LEN: Field = 48..52;
    pub const PARAM: Field = 52..56;
    pub const COOKIE: Field = 56..64;
}

/// A descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub op: u32,
    /// 0 when submitted; [`DONE`] | status when complete.
    pub status: u8,
    /// Per-request state (an AES key).
    pub state: [u8; STATE_BYTES],
    pub src: u64,
    pub src_len: u32,
    pub dst: u64,
    pub dst_cap: u32,
    /// Output bytes, set on completion.
    pub out_len: u32,
    pub param: u32,
    pub cookie: u64,
}

impl Descriptor {
    pub fn parse(b: &[u8]) -> Option<Descriptor> {
        if b.len() < DESCRIPTOR_BYTES as usize {
            return None;
        }
        let mut state = [0; STATE_BYTES];
        state.copy_from_slice(&b[field::STATE]);
        Some(Descriptor {
            op: get_u32(b, field::OP),
            status: b[field::STATUS],
            state,
            src: get_u64(b, field::SRC),
            src_len: get_u32(b, field::SRC_LEN),
            dst: get_u64(b, field::DST),
            dst_cap: get_u32(b, field::DST_CAP),
            out_len: get_u32(b, field::OUT_LEN),
            param: get_u32(b, field::PARAM),
            cookie: get_u64(b, field::COOKIE),
        })
    }

    pub fn emit(&self) -> [u8; DESCRIPTOR_BYTES as usize] {
        let mut b = [0u8; DESCRIPTOR_BYTES as usize];
        set_u32(&mut b, field::OP, self.op);
        b[field::STATUS] = self.status;
        b[field::STATE].copy_from_slice(&self.state);
        set_u64(&mut b, field::SRC, self.src);
        set_u32(&mut b, field::SRC_LEN, self.src_len);
        set_u64(&mut b, field::DST, self.dst);
        set_u32(&mut b, field::DST_CAP, self.dst_cap);
        set_u32(&mut b, field::OUT_LEN, self.out_len);
        set_u32(&mut b, field::PARAM, self.param);
        set_u64(&mut b, field::COOKIE, self.cookie);
        b
    }

    /// Whether the device has completed it.
    pub fn is_done(&self) -> bool {
        self.status & DONE != 0
    }

    /// The status code of a completed descriptor.
    pub fn code(&self) -> u8 {
        self.status & !DONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_round_trips() {
        let d = Descriptor {
            op: 1,
            status: DONE | 3,
            state: [7; STATE_BYTES],
            src: 1 << 40,
            src_len: 1000,
            dst: 2 << 40,
            dst_cap: 2000,
            out_len: 900,
            param: 5,
            cookie: 99,
        };
        assert_eq!(Descriptor::parse(&d.emit()), Some(d));
        assert!(d.is_done());
        assert_eq!(d.code(), 3);
        assert_eq!(Descriptor::parse(&[0; 10]), None);
    }
}
