//! The byte layouts the engine and its driver share: the 64-byte work
//! descriptor and the 32-byte completion record, in Intel DSA's format
//! (Linux `include/uapi/linux/idxd.h`: `struct dsa_hw_desc`,
//! `struct dsa_completion_record`, opcodes, flags and status codes), plus
//! the two fields nextio adds for capability-named operands.
//!
//! Defined once here and read and written by both sides through the views
//! below, so a field cannot mean one thing to the device and another to
//! the driver.

use crate::layout::{get_u16, get_u32, get_u64, set_u16, set_u32, set_u64};

/// Bytes of a work descriptor (one MOVDIR64B or ENQCMD store).
pub const DESCRIPTOR_BYTES: usize = 64;
/// Bytes of a completion record.
pub const RECORD_BYTES: usize = 32;
/// Alignment a completion record address must have (DSA: 32 bytes).
pub const RECORD_ALIGN: u64 = 32;
/// Alignment of a batch's descriptor list (DSA: 64 bytes).
pub const DESC_LIST_ALIGN: u64 = 64;

/// Descriptor fields.
pub mod field {
    use crate::layout::Field;
    /// PASID in bits 19:0, privilege in bit 31 (what ENQCMD stamps).
    pub const PASID: Field = 0..4;
    /// Flags in bits 23:0, opcode in bits 31:24.
    pub const FLAGS_OPCODE: Field = 4..8;
    pub const COMPLETION_ADDR: Field = 8..16;
    /// Source (memmove, compare, CRC), pattern (fill) or the descriptor
    /// list (batch).
    pub const SRC: Field = 16..24;
    /// Destination (memmove, fill) or the second source (compare).
    pub const DST: Field = 24..32;
    /// Transfer size, or the descriptor count of a batch.
    pub const XFER_SIZE: Field = 32..36;
    /// Which MSI-X entry a completion interrupt uses.
    pub const INT_HANDLE: Field = 36..38;
    /// CRC seed (CRC generation).
    pub const CRC_SEED: Field = 40..44;
    /// The software's own tag, echoed nowhere by the device: free for
    /// drivers (DSA leaves these operation-specific bytes reserved for
    /// memmove and fill).
    pub const TAG: Field = 48..56;
    /// nextio: the capability naming the source (or first) operand's
    /// address space when [`super::flags::SRC_CAP`] is set.
    pub const SRC_CAP: Field = 56..60;
    /// nextio: the capability naming the destination (or second) operand.
    pub const DST_CAP: Field = 60..64;
}

/// Opcodes (idxd.h `enum dsa_opcode`).
pub mod opcode {
    pub const NOOP: u8 = 0x00;
    pub const BATCH: u8 = 0x01;
    pub const MEMMOVE: u8 = 0x03;
    pub const MEMFILL: u8 = 0x04;
    pub const COMPARE: u8 = 0x05;
    pub const CRCGEN: u8 = 0x10;
}

/// Descriptor flags (idxd.h `IDXD_OP_FLAG_*`), and nextio's two.
pub mod flags {
    /// Wait for earlier descriptors of the batch (accepted, honoured by
    /// in-order execution of a batch).
    pub const FENCE: u32 = 0x0001;
    /// Block on fault: not modelled (no page requests); every fault is
    /// reported as a partial completion.
    pub const BOF: u32 = 0x0002;
    /// Completion record address valid.
    pub const CRAV: u32 = 0x0004;
    /// Request a completion record.
    pub const RCR: u32 = 0x0008;
    /// Request a completion interrupt.
    pub const RCI: u32 = 0x0010;
    /// Cache control: destination writes allocate in the LLC (DDIO does
    /// so for every device write in the model, so it is accepted and has
    /// no further effect).
    pub const CC: u32 = 0x0100;
    /// nextio: the source operand is an offset into the window of the
    /// capability in [`super::field::SRC_CAP`].
    pub const SRC_CAP: u32 = 0x01_0000;
    /// nextio: the destination operand likewise, with
    /// [`super::field::DST_CAP`].
    pub const DST_CAP: u32 = 0x02_0000;
    /// Every flag the engine knows; any other bit is `INVALID_FLAGS`.
    pub const KNOWN: u32 = FENCE | BOF | CRAV | RCR | RCI | CC | SRC_CAP | DST_CAP;
}

/// Completion status codes (idxd.h `enum dsa_completion_status`) and
/// nextio's capability fault.
pub mod status {
    pub const NONE: u8 = 0x00;
    pub const SUCCESS: u8 = 0x01;
    /// A page fault stopped the operation; `bytes_completed` bytes were
    /// done and `fault_addr` is the address that faulted: software may
    /// fix the mapping and resubmit the rest.
    pub const PAGE_FAULT: u8 = 0x03;
    /// Some descriptor of a batch did not succeed.
    pub const BATCH_FAIL: u8 = 0x05;
    pub const BAD_OPCODE: u8 = 0x10;
    pub const INVALID_FLAGS: u8 = 0x11;
    pub const XFER_ERANGE: u8 = 0x13;
    pub const DESC_CNT_ERANGE: u8 = 0x14;
    pub const DESCLIST_ALIGN: u8 = 0x18;
    /// The completion record address is not 32-byte aligned.
    pub const CRA_ALIGN: u8 = 0x1b;
    /// A device error (a transfer nothing answered).
    pub const HW_ERROR: u8 = 0x1f;
    /// nextio: a capability was forged, stale, revoked, not the
    /// submitter's, too small for the operation or lacks the permission.
    pub const CAPABILITY: u8 = 0x30;
}

/// A descriptor: a view over 64 bytes.
pub struct Descriptor<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> Descriptor<T> {
    /// A view, if `buf` holds a whole descriptor.
    pub fn new(buf: T) -> Option<Descriptor<T>> {
        (buf.as_ref().len() >= DESCRIPTOR_BYTES).then_some(Descriptor(buf))
    }
    fn b(&self) -> &[u8] {
        self.0.as_ref()
    }
    pub fn pasid(&self) -> u32 {
        get_u32(self.b(), field::PASID) & 0x000f_ffff
    }
    pub fn privileged(&self) -> bool {
        get_u32(self.b(), field::PASID) >> 31 != 0
    }
    pub fn opcode(&self) -> u8 {
        (get_u32(self.b(), field::FLAGS_OPCODE) >> 24) as u8
    }
    pub fn flags(&self) -> u32 {
        get_u32(self.b(), field::FLAGS_OPCODE) & 0x00ff_ffff
    }
    pub fn completion_addr(&self) -> u64 {
        get_u64(self.b(), field::COMPLETION_ADDR)
    }
    pub fn src(&self) -> u64 {
        get_u64(self.b(), field::SRC)
    }
    pub fn dst(&self) -> u64 {
        get_u64(self.b(), field::DST)
    }
    pub fn xfer_size(&self) -> u32 {
        get_u32(self.b(), field::XFER_SIZE)
    }
    pub fn int_handle(&self) -> u16 {
        get_u16(self.b(), field::INT_HANDLE)
    }
    pub fn crc_seed(&self) -> u32 {
        get_u32(self.b(), field::CRC_SEED)
    }
    pub fn tag(&self) -> u64 {
        get_u64(self.b(), field::TAG)
    }
    pub fn src_cap(&self) -> u32 {
        get_u32(self.b(), field::SRC_CAP)
    }
    pub fn dst_cap(&self) -> u32 {
        get_u32(self.b(), field::DST_CAP)
    }
}

impl<T: AsRef<[u8]>> Descriptor<T> {
    /// The bytes viewed.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Descriptor<T> {
    fn m(&mut self) -> &mut [u8] {
        self.0.as_mut()
    }
    pub fn set_op(&mut self, opcode: u8, flags: u32) {
        set_u32(
            self.m(),
            field::FLAGS_OPCODE,
            (opcode as u32) << 24 | (flags & 0x00ff_ffff),
        );
    }
    pub fn set_pasid(&mut self, pasid: u32) {
        set_u32(self.m(), field::PASID, pasid & 0x000f_ffff);
    }
    pub fn set_completion_addr(&mut self, v: u64) {
        set_u64(self.m(), field::COMPLETION_ADDR, v);
    }
    pub fn set_src(&mut self, v: u64) {
        set_u64(self.m(), field::SRC, v);
    }
    pub fn set_dst(&mut self, v: u64) {
        set_u64(self.m(), field::DST, v);
    }
    pub fn set_xfer_size(&mut self, v: u32) {
        set_u32(self.m(), field::XFER_SIZE, v);
    }
    pub fn set_int_handle(&mut self, v: u16) {
        set_u16(self.m(), field::INT_HANDLE, v);
    }
    pub fn set_crc_seed(&mut self, v: u32) {
        set_u32(self.m(), field::CRC_SEED, v);
    }
    pub fn set_tag(&mut self, v: u64) {
        set_u64(self.m(), field::TAG, v);
    }
    pub fn set_src_cap(&mut self, v: u32) {
        set_u32(self.m(), field::SRC_CAP, v);
    }
    pub fn set_dst_cap(&mut self, v: u32) {
        set_u32(self.m(), field::DST_CAP, v);
    }
}

/// Completion-record fields.
pub mod record {
    use crate::layout::Field;
    /// Status; non-zero once the device wrote the record.
    pub const STATUS: usize = 0;
    /// Compare: 0 equal, 1 different.
    pub const RESULT: usize = 1;
    /// Bytes done (for a batch: descriptors that succeeded; for a
    /// mismatching compare: bytes before the first difference).
    pub const BYTES_COMPLETED: Field = 4..8;
    /// The address that faulted.
    pub const FAULT_ADDR: Field = 8..16;
    /// CRC generation: the CRC value.
    pub const CRC: Field = 16..20;
}

/// A completion record: a view over 32 bytes.
pub struct Record<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> Record<T> {
    pub fn new(buf: T) -> Option<Record<T>> {
        (buf.as_ref().len() >= RECORD_BYTES).then_some(Record(buf))
    }
    fn b(&self) -> &[u8] {
        self.0.as_ref()
    }
    pub fn status(&self) -> u8 {
        self.b()[record::STATUS]
    }
    pub fn result(&self) -> u8 {
        self.b()[record::RESULT]
    }
    pub fn bytes_completed(&self) -> u32 {
        get_u32(self.b(), record::BYTES_COMPLETED)
    }
    pub fn fault_addr(&self) -> u64 {
        get_u64(self.b(), record::FAULT_ADDR)
    }
    pub fn crc(&self) -> u32 {
        get_u32(self.b(), record::CRC)
    }
}

impl<T: AsRef<[u8]>> Record<T> {
    /// The bytes viewed.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Record<T> {
    fn m(&mut self) -> &mut [u8] {
        self.0.as_mut()
    }
    pub fn set_status(&mut self, v: u8) {
        self.m()[record::STATUS] = v;
    }
    pub fn set_result(&mut self, v: u8) {
        self.m()[record::RESULT] = v;
    }
    pub fn set_bytes_completed(&mut self, v: u32) {
        set_u32(self.m(), record::BYTES_COMPLETED, v);
    }
    pub fn set_fault_addr(&mut self, v: u64) {
        set_u64(self.m(), record::FAULT_ADDR, v);
    }
    pub fn set_crc(&mut self, v: u32) {
        set_u32(self.m(), record::CRC, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_at_dsa_offsets() {
        let mut d = Descriptor::new([0u8; DESCRIPTOR_BYTES]).unwrap();
        d.set_op(opcode::MEMMOVE, flags::CRAV | flags::RCR);
        d.set_pasid(0x12345);
        d.set_completion_addr(0xdead_bee0);
        d.set_src(0x1000);
        d.set_dst(0x2000);
        d.set_xfer_size(4096);
        d.set_src_cap(7);
        assert_eq!(d.opcode(), opcode::MEMMOVE);
        assert_eq!(d.flags(), flags::CRAV | flags::RCR);
        assert_eq!(d.pasid(), 0x12345);
        assert!(!d.privileged());
        assert_eq!((d.src(), d.dst(), d.xfer_size()), (0x1000, 0x2000, 4096));
        assert_eq!(d.src_cap(), 7);
        // The opcode is the descriptor's byte 7, as in dsa_hw_desc.
        assert_eq!(d.0[7], opcode::MEMMOVE);
        assert_eq!(&d.0[8..16], &0xdead_bee0u64.to_le_bytes());
        let mut r = Record::new([0u8; RECORD_BYTES]).unwrap();
        r.set_status(status::PAGE_FAULT);
        r.set_bytes_completed(8192);
        r.set_fault_addr(0x3000);
        assert_eq!(
            (r.status(), r.bytes_completed(), r.fault_addr()),
            (3, 8192, 0x3000)
        );
        assert!(Descriptor::new([0u8; 63]).is_none());
    }
}
