//! The RDMA NIC's doorbells (BAR0): one 4 KiB page per queue pair, so the
//! OS can map exactly one QP's doorbells into the process that created it
//! (the role of a ConnectX user access region page). A process without
//! the page mapped cannot ring the QP's doorbells at all: its store faults
//! in its own page table before anything reaches the NIC.
//!
//! In each page, 8-byte little-endian registers:
//! * `0x00` send queue producer index (WQEs posted, counted from 0);
//! * `0x08` receive queue producer index;
//! * `0x10` completion queue consumer index (CQEs software has consumed,
//!   so the NIC knows the CQ's free space).
//!
//! Invariant: `decode(page_offset(qpn) + reg_offset(r)) == Some((qpn, r))`
//! for every QP within the BAR and nothing else decodes.

/// Bytes of one QP's doorbell page.
pub const DOORBELL_PAGE_BYTES: u64 = 4096;
/// Bytes of one register.
pub const REGISTER_BYTES: usize = 8;

/// Which doorbell of a QP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doorbell {
    SendProducer,
    RecvProducer,
    CqConsumer,
}

impl Doorbell {
    /// Offset within the QP's page.
    pub fn offset(self) -> u64 {
        match self {
            Doorbell::SendProducer => 0x00,
            Doorbell::RecvProducer => 0x08,
            Doorbell::CqConsumer => 0x10,
        }
    }
}

/// BAR0-relative offset of QP `qpn`'s page.
pub fn page_offset(qpn: u32) -> u64 {
    qpn as u64 * DOORBELL_PAGE_BYTES
}

/// Bytes of BAR0 for `max_qps` QPs.
pub fn bar_bytes(max_qps: u32) -> u64 {
    (max_qps as u64).max(1) * DOORBELL_PAGE_BYTES
}

/// The QP and doorbell at BAR0 offset `offset`, if any.
pub fn decode(offset: u64, max_qps: u32) -> Option<(u32, Doorbell)> {
    let qpn = u32::try_from(offset / DOORBELL_PAGE_BYTES).ok()?;
    if qpn >= max_qps {
        return None;
    }
    let reg = match offset % DOORBELL_PAGE_BYTES {
        0x00 => Doorbell::SendProducer,
        0x08 => Doorbell::RecvProducer,
        0x10 => Doorbell::CqConsumer,
        _ => return None,
    };
    Some((qpn, reg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip() {
        for qpn in [0, 1, 77, 4095] {
            for r in [
                Doorbell::SendProducer,
                Doorbell::RecvProducer,
                Doorbell::CqConsumer,
            ] {
                assert_eq!(decode(page_offset(qpn) + r.offset(), 4096), Some((qpn, r)));
            }
        }
        assert_eq!(decode(page_offset(4096), 4096), None);
        assert_eq!(decode(4, 4096), None);
        assert_eq!(decode(0x18, 4096), None);
    }
}
