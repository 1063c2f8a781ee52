//! A queue pair's context as it lives in host memory: the table of QP
//! contexts the OS allocates for the NIC (one 64-byte entry per QP number)
//! and fills at QP creation. The NIC keeps only a few contexts on chip
//! ([`super::qp_cache`]) and reads the others from this table by DMA when
//! a doorbell or a packet names them (Kalia et al., ATC'16 §3.1, and Kong
//! et al., NSDI'23 §2: the NIC's SRAM caches QP state, a miss costs a
//! PCIe read).
//!
//! Invariant: `decode(encode(c)) == Some(c)`; an entry whose valid byte is
//! clear (a QP never created or destroyed) decodes to `None`.

use super::wqe::{u32_at, u64_at};

/// Bytes of one context entry.
pub const CONTEXT_BYTES: u64 = 64;

/// What the NIC needs to serve a QP: its rings and their owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QpContext {
    /// Bus addresses of the send, receive and completion rings.
    pub sq: u64,
    pub rq: u64,
    pub cq: u64,
    pub sq_entries: u32,
    pub rq_entries: u32,
    pub cq_entries: u32,
    /// Protection domain: the memory regions the QP's WQEs may name.
    pub pd: u32,
    /// The queue key a UD packet must carry to be accepted.
    pub qkey: u32,
}

impl QpContext {
    pub fn encode(&self) -> [u8; CONTEXT_BYTES as usize] {
        let mut b = [0u8; CONTEXT_BYTES as usize];
        b[0..8].copy_from_slice(&self.sq.to_le_bytes());
        b[8..16].copy_from_slice(&self.rq.to_le_bytes());
        b[16..24].copy_from_slice(&self.cq.to_le_bytes());
        b[24..28].copy_from_slice(&self.sq_entries.to_le_bytes());
        b[28..32].copy_from_slice(&self.rq_entries.to_le_bytes());
        b[32..36].copy_from_slice(&self.cq_entries.to_le_bytes());
        b[36..40].copy_from_slice(&self.pd.to_le_bytes());
        b[40..44].copy_from_slice(&self.qkey.to_le_bytes());
        b[63] = 1;
        b
    }

    pub fn decode(b: &[u8]) -> Option<QpContext> {
        if b.len() != CONTEXT_BYTES as usize || b[63] != 1 {
            return None;
        }
        let c = QpContext {
            sq: u64_at(b, 0),
            rq: u64_at(b, 8),
            cq: u64_at(b, 16),
            sq_entries: u32_at(b, 24),
            rq_entries: u32_at(b, 28),
            cq_entries: u32_at(b, 32),
            pd: u32_at(b, 36),
            qkey: u32_at(b, 40),
        };
        // A ring of no entries cannot be served.
        (c.sq_entries > 0 && c.rq_entries > 0 && c.cq_entries > 0).then_some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_invalid() {
        let c = QpContext {
            sq: 1 << 21,
            rq: (1 << 21) + 4096,
            cq: (1 << 21) + 8192,
            sq_entries: 64,
            rq_entries: 64,
            cq_entries: 128,
            pd: 3,
            qkey: 0x1111_1111,
        };
        assert_eq!(QpContext::decode(&c.encode()), Some(c));
        assert_eq!(QpContext::decode(&[0u8; 64]), None);
        let mut e = c.encode();
        e[24..28].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(QpContext::decode(&e), None);
    }
}
