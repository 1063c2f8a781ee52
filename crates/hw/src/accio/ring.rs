//! The per-connection rings' byte layout, shared by the NIC (which writes
//! received payloads and reads payloads to send) and the user library.
//!
//! A ring is a power-of-two number of bytes in pinned memory. Pointers
//! are free-running byte counts (`RX_HEAD`/`RX_TAIL`, `TX_HEAD`/`TX_TAIL`
//! of the connection's row); a byte count `p` lives at `p mod size`, and
//! `tail − head` bytes are in use. A ring holds *records*: an 8-byte
//! header and the UDP payload only (no Ethernet, IP or UDP header — the
//! NIC builds and strips those), padded to 8 bytes. A record never wraps:
//! one that would not fit before the end is preceded by a pad record
//! filling the rest, and starts at the ring's beginning.
//!
//! Header: payload length (0..2, `PAD_LEN` marks a pad), the peer's UDP
//! port (2..4) and IPv4 address (4..8) — the source of a received
//! datagram, the destination of one to send (zero: the row's remote).

use crate::layout::{Field, get_u16, get_u32, set_u16, set_u32};

pub const HEADER_BYTES: u64 = 8;
/// The length that marks a pad record.
pub const PAD_LEN: u16 = 0xffff;
/// Largest payload a record may carry (one standard frame's UDP payload).
pub const MAX_PAYLOAD_BYTES: u64 = 1472;
/// Smallest ring: a maximal record twice.
pub const MIN_RING_BYTES: u64 = 4096;
/// The prototype's ring (§8.1: 8 KB per ring).
pub const DEFAULT_RING_BYTES: u64 = 8192;

mod field {
    use super::Field;
    pub const LEN: Field = 0..2;
    pub const PORT: Field = 2..4;
    pub const IP: Field = 4..8;
}

/// A record header over bytes.
pub struct RecordHeader<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> RecordHeader<T> {
    pub fn new(buf: T) -> Option<Self> {
        (buf.as_ref().len() >= HEADER_BYTES as usize).then_some(RecordHeader(buf))
    }
    pub fn len(&self) -> u16 {
        get_u16(self.0.as_ref(), field::LEN)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn is_pad(&self) -> bool {
        self.len() == PAD_LEN
    }
    pub fn port(&self) -> u16 {
        get_u16(self.0.as_ref(), field::PORT)
    }
    pub fn ip(&self) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(get_u32(self.0.as_ref(), field::IP))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RecordHeader<T> {
    pub fn set_len(&mut self, v: u16) {
        set_u16(self.0.as_mut(), field::LEN, v)
    }
    pub fn set_port(&mut self, v: u16) {
        set_u16(self.0.as_mut(), field::PORT, v)
    }
    pub fn set_ip(&mut self, v: std::net::Ipv4Addr) {
        set_u32(self.0.as_mut(), field::IP, u32::from(v))
    }
}

/// The header of a record of `len` payload bytes for peer `peer`.
pub fn header(len: u16, peer: (std::net::Ipv4Addr, u16)) -> [u8; HEADER_BYTES as usize] {
    let mut b = [0u8; HEADER_BYTES as usize];
    let mut h = RecordHeader(&mut b[..]);
    h.set_len(len);
    h.set_port(peer.1);
    h.set_ip(peer.0);
    b
}

/// A pad header.
pub fn pad_header() -> [u8; HEADER_BYTES as usize] {
    header(PAD_LEN, (std::net::Ipv4Addr::UNSPECIFIED, 0))
}

/// Bytes a record of `payload` bytes takes in the ring.
pub fn record_bytes(payload: u64) -> u64 {
    HEADER_BYTES + payload.next_multiple_of(HEADER_BYTES)
}

/// The pad needed before a record of `bytes` at free-running `tail` in a
/// ring of `size`: the bytes left to the end if it would not fit there.
pub fn pad_before(tail: u64, size: u64, bytes: u64) -> u64 {
    let at = tail % size;
    if at + bytes > size { size - at } else { 0 }
}

/// Whether `size` is a usable ring size.
pub fn valid_size(size: u64) -> bool {
    size.is_power_of_two() && (MIN_RING_BYTES..=1 << 30).contains(&size)
}

/// Bytes free between `head` and `tail` in a ring of `size` (0 if the
/// pointers are inconsistent).
pub fn free_bytes(head: u64, tail: u64, size: u64) -> u64 {
    size.saturating_sub(tail.wrapping_sub(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_never_wrap_and_headers_round_trip() {
        assert_eq!(record_bytes(1), 16);
        assert_eq!(record_bytes(64), 72);
        assert_eq!(pad_before(8192 - 16, 8192, 72), 16);
        assert_eq!(pad_before(0, 8192, 8192), 0);
        assert_eq!(pad_before(100, 8192, 72), 0);
        let ip = std::net::Ipv4Addr::new(10, 0, 0, 2);
        let h = header(64, (ip, 7000));
        let v = RecordHeader::new(&h[..]).unwrap();
        assert_eq!((v.len(), v.port(), v.ip()), (64, 7000, ip));
        assert!(RecordHeader::new(&pad_header()[..]).unwrap().is_pad());
        assert!(RecordHeader::new(&h[..4]).is_none());
        assert!(valid_size(8192) && !valid_size(8000) && !valid_size(2048));
        assert_eq!(free_bytes(10, 8, 4096), 0, "inconsistent pointers");
        assert_eq!(free_bytes(0, 72, 4096), 4024);
    }
}
