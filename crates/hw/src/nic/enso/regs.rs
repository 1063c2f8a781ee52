//! The Ensō NIC's BAR0 register map: where each register software writes
//! sits, and the decode the NIC applies to every BAR write.
//!
//! Each pipe's registers and each notification buffer's registers sit on a
//! 4 KiB page of their own — pipes first, then notification buffers — so
//! the OS can map one pipe or one buffer into one process and no other
//! (as the Ensō hardware does). Every register is a 64-bit little-endian
//! value at an 8-byte-aligned offset in its page.
//!
//! Invariant: [`decode`] inverts [`offset`] for every pipe below
//! `max_pipes`, and answers `None` for any offset that is not a register.

/// Each pipe's and each notification buffer's registers sit on their own
/// 4 KiB page, so they can be mapped to one process only (as in Ensō).
pub const REGISTER_PAGE_BYTES: u64 = 4096;

/// Width of every register write: one 64-bit store holds any head or tail.
/// A model choice, as are the offsets below; the map keeps Ensō's
/// page-per-pipe shape, not its exact addresses.
pub const REGISTER_BYTES: usize = 8;

// Register offsets within a register page: a pipe's, then a notification
// buffer's.
const PIPE_HEAD: u64 = 0;
const PIPE_PREFETCH: u64 = 8;
const NB_RX_HEAD: u64 = 0;
const NB_TX_TAIL: u64 = 8;

/// A register software writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Register {
    /// A pipe's head (byte offset within its ring): frees space, re-arms.
    PipeHead(usize),
    /// Ask for a notification for a pipe if it holds unfreed data.
    PipePrefetch(usize),
    /// How far software has consumed a notification buffer's RX ring.
    RxNotificationHead(usize),
    /// The new tail of a notification buffer's TX ring (the TX doorbell).
    TxNotificationTail(usize),
}

fn page(index: u64) -> u64 {
    // Saturating: a silly index yields an offset past any BAR, which the
    // fabric refuses, instead of wrapping onto a real register.
    index.saturating_mul(REGISTER_PAGE_BYTES)
}

/// BAR-relative offset of `reg` on a NIC keeping state for `max_pipes`
/// pipes. A pipe id at or above `max_pipes` has no register of its own;
/// ids the NIC hands out are always below it.
pub fn offset(reg: Register, max_pipes: usize) -> u64 {
    let nb_page = |nb: usize| page((max_pipes as u64).saturating_add(nb as u64));
    match reg {
        Register::PipeHead(p) => page(p as u64).saturating_add(PIPE_HEAD),
        Register::PipePrefetch(p) => page(p as u64).saturating_add(PIPE_PREFETCH),
        Register::RxNotificationHead(n) => nb_page(n).saturating_add(NB_RX_HEAD),
        Register::TxNotificationTail(n) => nb_page(n).saturating_add(NB_TX_TAIL),
    }
}

/// The register at BAR-relative `offset`, if any.
pub fn decode(offset: u64, max_pipes: usize) -> Option<Register> {
    let index = usize::try_from(offset / REGISTER_PAGE_BYTES).ok()?;
    let within = offset % REGISTER_PAGE_BYTES;
    if index < max_pipes {
        match within {
            PIPE_HEAD => Some(Register::PipeHead(index)),
            PIPE_PREFETCH => Some(Register::PipePrefetch(index)),
            _ => None,
        }
    } else {
        let nb = index - max_pipes;
        match within {
            NB_RX_HEAD => Some(Register::RxNotificationHead(nb)),
            NB_TX_TAIL => Some(Register::TxNotificationTail(nb)),
            _ => None,
        }
    }
}

/// Bytes of register space for `max_pipes` pipes and
/// `max_notification_buffers` buffers (before BAR rounding).
pub fn register_bytes(max_pipes: usize, max_notification_buffers: usize) -> u64 {
    page((max_pipes as u64).saturating_add(max_notification_buffers as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_inverts_offset_and_every_register_has_its_own_page() {
        let max = 16;
        let regs: Vec<Register> = (0..max)
            .flat_map(|p| [Register::PipeHead(p), Register::PipePrefetch(p)])
            .chain((0..4).flat_map(|n| {
                [
                    Register::RxNotificationHead(n),
                    Register::TxNotificationTail(n),
                ]
            }))
            .collect();
        for r in &regs {
            assert_eq!(decode(offset(*r, max), max), Some(*r), "{r:?}");
        }
        assert_eq!(offset(Register::PipeHead(3), max), 3 * 4096);
        assert_eq!(offset(Register::TxNotificationTail(1), max), 17 * 4096 + 8);
        // Two pipes never share a page.
        assert_ne!(
            offset(Register::PipeHead(1), max) / REGISTER_PAGE_BYTES,
            offset(Register::PipeHead(2), max) / REGISTER_PAGE_BYTES
        );
        for bad in [4, 16, 4095, 2 * 4096 + 1] {
            assert_eq!(decode(bad, max), None, "{bad}");
        }
        assert_eq!(register_bytes(max, 4), 20 * 4096);
    }
}
