//! The byte formats the Ensō NIC and its software share: the pipe (a ring
//! of 64-byte quanta holding padded frames back to back) and the two
//! 64-byte notifications, as views over host memory bytes.
//!
//! Each format is defined once here and used by both sides — the NIC
//! writes RX notifications and reads TX ones through these views, the
//! library reads RX notifications, writes TX ones and walks pipes with
//! [`frame_len_from_header`] — so the two cannot disagree about a byte.
//! Every field is a little-endian `u64`, as Ensō's `RxNotification` and
//! `TxNotification` structs are on an x86 host.

use crate::layout::{Field, get_u64, set_u64};
use crate::packet::{FCS_BYTES, MIN_FRAME_BYTES};

/// Bytes of one Ensō Pipe's ring: one 2 MiB hugepage (Ensō software
/// default: 32768 lines of 64 B per pipe).
pub const PIPE_BYTES: u64 = 2 << 20;

/// The quantum data is appended in: one 64-byte line (the Ensō NIC's
/// 512-bit datapath word, Ensō paper §3.2 "flits"); frames are padded to it.
pub const LINE_BYTES: u64 = 64;

/// Size of one RX or TX notification (Ensō software: 64-byte
/// `RxNotification`/`TxNotification`, one cache line).
pub const NOTIFICATION_BYTES: u64 = 64;

/// Bytes a frame of `stored` bytes occupies in a pipe: rounded up to the
/// quantum, so the next frame starts on a line boundary.
pub fn padded_len(stored: u64) -> u64 {
    stored.div_ceil(LINE_BYTES) * LINE_BYTES
}

/// Stored length (no FCS) of the frame starting at `b`, from its IPv4
/// header — how both the NIC's TX parser and the library walk a pipe,
/// since a pipe holds no per-frame metadata. `None` if `b` does not start
/// with an IPv4 frame header.
pub fn frame_len_from_header(b: &[u8]) -> Option<usize> {
    if b.len() < 18 || b[12] != 0x08 || b[13] != 0x00 {
        return None;
    }
    let ip_total = u16::from_be_bytes([b[16], b[17]]) as usize;
    if ip_total < 20 {
        return None;
    }
    // Short frames were padded to the Ethernet minimum on the wire and are
    // stored with that padding.
    Some((14 + ip_total).max(MIN_FRAME_BYTES - FCS_BYTES))
}

/// Field ranges of the two notifications.
pub mod field {
    use super::Field;

    /// Word 0 of both kinds: non-zero while the entry is valid (RX: written
    /// by the NIC, cleared by software; TX: set by software, cleared by the
    /// NIC on completion).
    pub const SIGNAL: Field = 0..8;
    /// RX word 1: the pipe id.
    pub const RX_PIPE: Field = 8..16;
    /// RX word 2: the pipe's new tail, a byte offset within its ring.
    pub const RX_TAIL: Field = 16..24;
    /// TX word 1: bus address of the data to send.
    pub const TX_ADDR: Field = 8..16;
    /// TX word 2: length of the data in bytes.
    pub const TX_LEN: Field = 16..24;
}

/// An RX notification: "pipe `pipe` has been filled up to `tail`".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxNotification<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RxNotification<T> {
    /// A view of `buffer`, or `None` if it is shorter than a notification.
    pub fn new(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= NOTIFICATION_BYTES as usize).then_some(Self { buffer })
    }

    /// A view of an entry known to be whole (a `[u8; 64]`); a field access
    /// on a shorter buffer panics.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn signal(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::SIGNAL)
    }

    pub fn pipe(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::RX_PIPE)
    }

    pub fn tail(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::RX_TAIL)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RxNotification<T> {
    pub fn set_signal(&mut self, v: u64) {
        set_u64(self.buffer.as_mut(), field::SIGNAL, v);
    }

    pub fn set_pipe(&mut self, v: u64) {
        set_u64(self.buffer.as_mut(), field::RX_PIPE, v);
    }

    pub fn set_tail(&mut self, v: u64) {
        set_u64(self.buffer.as_mut(), field::RX_TAIL, v);
    }
}

/// A TX notification: "send the `len` bytes at bus address `addr`".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxNotification<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TxNotification<T> {
    /// A view of `buffer`, or `None` if it is shorter than a notification.
    pub fn new(buffer: T) -> Option<Self> {
        (buffer.as_ref().len() >= NOTIFICATION_BYTES as usize).then_some(Self { buffer })
    }

    /// A view of an entry known to be whole (a `[u8; 64]`); a field access
    /// on a shorter buffer panics.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn signal(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::SIGNAL)
    }

    pub fn addr(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::TX_ADDR)
    }

    pub fn len(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::TX_LEN)
    }

    /// Whether it names no data (such a notification is refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TxNotification<T> {
    pub fn set_signal(&mut self, v: u64) {
        set_u64(self.buffer.as_mut(), field::SIGNAL, v);
    }

    pub fn set_addr(&mut self, v: u64) {
        set_u64(self.buffer.as_mut(), field::TX_ADDR, v);
    }

    pub fn set_len(&mut self, v: u64) {
        set_u64(self.buffer.as_mut(), field::TX_LEN, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_round_trip_and_refuse_short_buffers() {
        let mut e = [0u8; NOTIFICATION_BYTES as usize];
        let mut rx = RxNotification::new(&mut e[..]).unwrap();
        rx.set_signal(1);
        rx.set_pipe(7);
        rx.set_tail(4096);
        let rx = RxNotification::new(&e[..]).unwrap();
        assert_eq!((rx.signal(), rx.pipe(), rx.tail()), (1, 7, 4096));
        assert_eq!(&e[8..16], &7u64.to_le_bytes());

        let mut t = TxNotification::new([0u8; 64]).unwrap();
        t.set_signal(1);
        t.set_addr(0x1234_5000);
        t.set_len(200);
        assert_eq!((t.signal(), t.addr(), t.len()), (1, 0x1234_5000, 200));
        assert!(RxNotification::new(&e[..63]).is_none());
        assert!(TxNotification::new([0u8; 8]).is_none());
    }

    #[test]
    fn frames_pad_to_the_quantum_and_lengths_come_from_the_header() {
        assert_eq!(padded_len(60), 64);
        assert_eq!(padded_len(64), 64);
        assert_eq!(padded_len(1514), 1536);
        let mut h = [0u8; 18];
        h[12] = 0x08;
        h[16..18].copy_from_slice(&186u16.to_be_bytes());
        assert_eq!(frame_len_from_header(&h), Some(200));
        // A tiny IPv4 packet is stored padded to the Ethernet minimum.
        h[16..18].copy_from_slice(&28u16.to_be_bytes());
        assert_eq!(frame_len_from_header(&h), Some(60));
        h[12] = 0x86;
        assert_eq!(frame_len_from_header(&h), None);
        assert_eq!(frame_len_from_header(&h[..17]), None);
    }
}
