//! The block device's command and completion formats, shared by the
//! device and its driver (NVMe-shaped, reduced to what the model uses).

use crate::layout::{get_u32, get_u64, set_u32, set_u64};

/// Bytes of a command (one 64-byte MMIO store to the doorbell page, as
/// an NVMe submission-queue entry is 64 bytes).
pub const COMMAND_BYTES: usize = 64;
/// Bytes of a completion the device writes.
pub const COMPLETION_BYTES: usize = 16;

pub mod field {
    use crate::layout::Field;
    pub const OPCODE: Field = 0..4;
    pub const FLAGS: Field = 4..8;
    /// First block.
    pub const LBA: Field = 8..16;
    pub const BLOCKS: Field = 16..20;
    /// Where the data goes: a bus address (host memory, or another
    /// device's BAR: peer to peer), or with [`super::flags::TO_CMB`] an
    /// offset into the device's own memory.
    pub const ADDR: Field = 24..32;
    /// Where the completion goes (a bus address).
    pub const COMPLETION: Field = 32..40;
    pub const TAG: Field = 40..48;
}

pub mod opcode {
    pub const READ: u32 = 2;
}

pub mod flags {
    /// Read into the device's controller memory buffer (BAR 1).
    pub const TO_CMB: u32 = 1;
}

/// Completion status (byte 0); the tag follows at bytes 8..16.
pub mod status {
    pub const SUCCESS: u8 = 1;
    pub const BAD_COMMAND: u8 = 2;
    pub const OUT_OF_RANGE: u8 = 3;
    pub const TRANSFER_ERROR: u8 = 4;
}

/// A command: a view over 64 bytes.
pub struct Command<T: AsRef<[u8]>>(T);

impl<T: AsRef<[u8]>> Command<T> {
    pub fn new(buf: T) -> Option<Command<T>> {
        (buf.as_ref().len() >= COMMAND_BYTES).then_some(Command(buf))
    }
    fn b(&self) -> &[u8] {
        self.0.as_ref()
    }
    pub fn opcode(&self) -> u32 {
        get_u32(self.b(), field::OPCODE)
    }
    pub fn flags(&self) -> u32 {
        get_u32(self.b(), field::FLAGS)
    }
    pub fn lba(&self) -> u64 {
        get_u64(self.b(), field::LBA)
    }
    pub fn blocks(&self) -> u32 {
        get_u32(self.b(), field::BLOCKS)
    }
    pub fn addr(&self) -> u64 {
        get_u64(self.b(), field::ADDR)
    }
    pub fn completion(&self) -> u64 {
        get_u64(self.b(), field::COMPLETION)
    }
    pub fn tag(&self) -> u64 {
        get_u64(self.b(), field::TAG)
    }
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Command<T> {
    /// A read of `blocks` from `lba` to `addr`, completing at `completion`.
    pub fn set_read(
        &mut self,
        lba: u64,
        blocks: u32,
        addr: u64,
        to_cmb: bool,
        completion: u64,
        tag: u64,
    ) {
        let b = self.0.as_mut();
        set_u32(b, field::OPCODE, opcode::READ);
        set_u32(b, field::FLAGS, if to_cmb { flags::TO_CMB } else { 0 });
        set_u64(b, field::LBA, lba);
        set_u32(b, field::BLOCKS, blocks);
        set_u64(b, field::ADDR, addr);
        set_u64(b, field::COMPLETION, completion);
        set_u64(b, field::TAG, tag);
    }
}
