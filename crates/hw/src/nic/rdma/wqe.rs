//! The byte layouts software and the NIC share in host memory: send and
//! receive work queue entries (WQEs) and completion queue entries (CQEs),
//! all little-endian, shaped after mlx5's (a 64-byte send WQE carrying its
//! UD address inline, a receive WQE of one scatter entry, a 64-byte CQE
//! whose last byte is an owner bit that flips on every pass over the ring,
//! so software sees a new CQE without reading a NIC register).
//!
//! Invariant: `decode(encode(x)) == x` for every entry; decoding a slice of
//! the wrong length or an unknown opcode is `None`, never a panic.

use std::net::Ipv4Addr;

/// Bytes of a send WQE.
pub const SEND_WQE_BYTES: u64 = 64;
/// Bytes of a receive WQE.
pub const RECV_WQE_BYTES: u64 = 32;
/// Bytes of a CQE.
pub const CQE_BYTES: u64 = 64;

/// A send WQE's opcode (the only one this NIC serves: UD SEND).
pub const OPCODE_SEND: u8 = 1;

/// Where a UD send goes: the verbs address handle, inline in the WQE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdAddress {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub qpn: u32,
    pub qkey: u32,
}

/// A UD SEND of `length` bytes at bus address `addr` in region `lkey`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendWqe {
    pub wr_id: u64,
    pub addr: u64,
    pub length: u32,
    pub lkey: u32,
    pub dest: UdAddress,
}

/// A receive buffer of `length` bytes at bus address `addr` in `lkey`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvWqe {
    pub wr_id: u64,
    pub addr: u64,
    pub length: u32,
    pub lkey: u32,
}

/// What a CQE completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CqeOpcode {
    Send,
    Recv,
}

/// Completion status, as `ibv_wc_status` names them.
pub mod status {
    pub const SUCCESS: u8 = 0;
    /// The message does not fit the receive buffer, or a send is longer
    /// than one frame can carry (`IBV_WC_LOC_LEN_ERR`).
    pub const LOCAL_LENGTH: u8 = 1;
    /// The WQE names memory its QP's protection domain did not register
    /// (`IBV_WC_LOC_PROT_ERR`).
    pub const LOCAL_PROTECTION: u8 = 4;
    /// A malformed WQE (`IBV_WC_LOC_QP_OP_ERR`).
    pub const LOCAL_QP_OPERATION: u8 = 2;
    /// A DMA of the WQE or its data faulted in the IOMMU
    /// (`IBV_WC_GENERAL_ERR`).
    pub const GENERAL: u8 = 21;
}

/// A completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cqe {
    pub wr_id: u64,
    pub byte_len: u32,
    pub qpn: u32,
    /// The sending QP of a received message.
    pub src_qpn: u32,
    pub opcode: CqeOpcode,
    pub status: u8,
    /// Flips on every pass over the CQ ring (1 on the first).
    pub owner: u8,
}

/// The little-endian `u32` at `at` (the caller checked the length).
pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The little-endian `u64` at `at` (the caller checked the length).
pub(super) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl SendWqe {
    pub fn encode(&self) -> [u8; SEND_WQE_BYTES as usize] {
        let mut b = [0u8; SEND_WQE_BYTES as usize];
        b[0] = OPCODE_SEND;
        b[8..16].copy_from_slice(&self.wr_id.to_le_bytes());
        b[16..24].copy_from_slice(&self.addr.to_le_bytes());
        b[24..28].copy_from_slice(&self.length.to_le_bytes());
        b[28..32].copy_from_slice(&self.lkey.to_le_bytes());
        b[32..36].copy_from_slice(&self.dest.qpn.to_le_bytes());
        b[36..40].copy_from_slice(&self.dest.qkey.to_le_bytes());
        b[40..46].copy_from_slice(&self.dest.mac);
        b[48..52].copy_from_slice(&self.dest.ip.octets());
        b
    }

    pub fn decode(b: &[u8]) -> Option<SendWqe> {
        if b.len() != SEND_WQE_BYTES as usize || b[0] != OPCODE_SEND {
            return None;
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&b[40..46]);
        Some(SendWqe {
            wr_id: u64_at(b, 8),
            addr: u64_at(b, 16),
            length: u32_at(b, 24),
            lkey: u32_at(b, 28),
            dest: UdAddress {
                qpn: u32_at(b, 32),
                qkey: u32_at(b, 36),
                mac,
                ip: Ipv4Addr::new(b[48], b[49], b[50], b[51]),
            },
        })
    }
}

impl RecvWqe {
    pub fn encode(&self) -> [u8; RECV_WQE_BYTES as usize] {
        let mut b = [0u8; RECV_WQE_BYTES as usize];
        b[0..8].copy_from_slice(&self.wr_id.to_le_bytes());
        b[8..16].copy_from_slice(&self.addr.to_le_bytes());
        b[16..20].copy_from_slice(&self.length.to_le_bytes());
        b[20..24].copy_from_slice(&self.lkey.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<RecvWqe> {
        if b.len() != RECV_WQE_BYTES as usize {
            return None;
        }
        Some(RecvWqe {
            wr_id: u64_at(b, 0),
            addr: u64_at(b, 8),
            length: u32_at(b, 16),
            lkey: u32_at(b, 20),
        })
    }
}

impl Cqe {
    pub fn encode(&self) -> [u8; CQE_BYTES as usize] {
        let mut b = [0u8; CQE_BYTES as usize];
        b[0..8].copy_from_slice(&self.wr_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.byte_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.qpn.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_qpn.to_le_bytes());
        b[24] = match self.opcode {
            CqeOpcode::Send => 0,
            CqeOpcode::Recv => 1,
        };
        b[25] = self.status;
        b[63] = self.owner;
        b
    }

    pub fn decode(b: &[u8]) -> Option<Cqe> {
        if b.len() != CQE_BYTES as usize {
            return None;
        }
        let opcode = match b[24] {
            0 => CqeOpcode::Send,
            1 => CqeOpcode::Recv,
            _ => return None,
        };
        Some(Cqe {
            wr_id: u64_at(b, 0),
            byte_len: u32_at(b, 8),
            qpn: u32_at(b, 12),
            src_qpn: u32_at(b, 16),
            opcode,
            status: b[25],
            owner: b[63],
        })
    }

    /// The owner bit a CQE written at ring position `index` (counted from
    /// 0 over all passes) of a ring of `entries` carries.
    pub fn owner_for(index: u64, entries: u32) -> u8 {
        (((index / entries.max(1) as u64) & 1) ^ 1) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let s = SendWqe {
            wr_id: 0xdead_beef_0000_0001,
            addr: 0x1234_5678_9000,
            length: 1024,
            lkey: 7,
            dest: UdAddress {
                mac: [2, 0, 0, 0, 0, 2],
                ip: Ipv4Addr::new(10, 0, 0, 2),
                qpn: 0x00ab_cdef,
                qkey: 0x1111_2222,
            },
        };
        assert_eq!(SendWqe::decode(&s.encode()), Some(s));
        let r = RecvWqe {
            wr_id: 9,
            addr: 4096,
            length: 2048,
            lkey: 3,
        };
        assert_eq!(RecvWqe::decode(&r.encode()), Some(r));
        let c = Cqe {
            wr_id: 5,
            byte_len: 104,
            qpn: 3,
            src_qpn: 4,
            opcode: CqeOpcode::Recv,
            status: status::SUCCESS,
            owner: 1,
        };
        assert_eq!(Cqe::decode(&c.encode()), Some(c));
        assert_eq!(SendWqe::decode(&[0u8; 64]), None);
        assert_eq!(RecvWqe::decode(&[0u8; 3]), None);
        assert_eq!(Cqe::owner_for(0, 8), 1);
        assert_eq!(Cqe::owner_for(8, 8), 0);
        assert_eq!(Cqe::owner_for(16, 8), 1);
    }
}
