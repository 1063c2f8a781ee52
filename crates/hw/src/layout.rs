//! Byte layouts as views, in the manner of smoltcp's `Packet` types: a
//! format (a descriptor, a write-back, a notification) is a set of named
//! field ranges over a byte slice, defined once, and read and written by
//! the device model and its driver through the same definitions. Neither
//! side encodes by hand what the other decodes, so the two cannot drift.
//!
//! All fields are little-endian, as PCIe devices and x86 hosts lay them
//! out. A layout is written as a `field` module of [`Field`] constants and
//! a view type `Foo<T: AsRef<[u8]>>` whose constructor checks the length
//! once, with one getter (and, for `T: AsMut<[u8]>`, one setter) per field
//! built from the accessors here.

use std::ops::Range;

/// A field of a layout: its byte range.
pub type Field = Range<usize>;

/// Read a little-endian `u16` at `f`.
pub fn get_u16(b: &[u8], f: Field) -> u16 {
    let mut w = [0u8; 2];
    w.copy_from_slice(&b[f]);
    u16::from_le_bytes(w)
}

/// Read a little-endian `u32` at `f`.
pub fn get_u32(b: &[u8], f: Field) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[f]);
    u32::from_le_bytes(w)
}

/// Read a little-endian `u64` at `f`.
pub fn get_u64(b: &[u8], f: Field) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[f]);
    u64::from_le_bytes(w)
}

pub fn set_u16(b: &mut [u8], f: Field, v: u16) {
    b[f].copy_from_slice(&v.to_le_bytes());
}

pub fn set_u32(b: &mut [u8], f: Field, v: u32) {
    b[f].copy_from_slice(&v.to_le_bytes());
}

pub fn set_u64(b: &mut [u8], f: Field, v: u64) {
    b[f].copy_from_slice(&v.to_le_bytes());
}
