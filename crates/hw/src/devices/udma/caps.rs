//! Capabilities: how a process names memory outside its own address
//! space. The OS grants a capability — ⟨owner PASID, target address space,
//! window, permissions⟩ — by writing an entry of the device's capability
//! table (in the manner of DSA 2.0's inter-domain permissions table) and
//! hands the owner a *handle*: the entry's index and its generation. A
//! descriptor names an operand through the handle and gives an offset
//! into the window.
//!
//! Invariants: a handle is honoured only while its entry holds the same
//! generation (revoking bumps it, so a stale handle never matches again,
//! even after the entry is reused); only the owner's descriptors may use
//! it; an operand must lie wholly inside the window with the permission
//! its use needs. The check is made when a descriptor *starts*, so a
//! revocation takes effect for every descriptor not yet started.

use crate::fabric::Space;

/// What a capability grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// The only PASID whose descriptors may use it.
    pub owner: u32,
    /// The address space the window is in.
    pub space: Space,
    /// The window: `[base, base + len)` of `space`.
    pub base: u64,
    pub len: u64,
    pub read: bool,
    pub write: bool,
}

/// Why a capability was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapFault {
    /// No entry at that index, or never granted.
    Forged,
    /// The entry was revoked (or reissued) since the handle was made.
    Stale,
    /// The submitter is not the owner (or has no PASID).
    NotOwner,
    /// The operand runs outside the window.
    OutOfRange,
    /// The use needs a permission the capability lacks.
    Permission,
}

impl CapFault {
    pub fn counter(self) -> &'static str {
        match self {
            CapFault::Forged => "faulted.capability.forged",
            CapFault::Stale => "faulted.capability.stale",
            CapFault::NotOwner => "faulted.capability.not_owner",
            CapFault::OutOfRange => "faulted.capability.out_of_range",
            CapFault::Permission => "faulted.capability.permission",
        }
    }
}

/// The device's capability table.
#[derive(Default)]
pub(super) struct CapTable {
    /// Per entry: its generation and the grant, if live.
    entries: Vec<(u16, Option<Capability>)>,
}

/// Most entries (the handle's index is 16 bits).
const MAX_ENTRIES: usize = 1 << 16;

impl CapTable {
    /// Grant `cap`; returns its handle, or `None` if the table is full.
    pub fn grant(&mut self, cap: Capability) -> Option<u32> {
        let index = match self.entries.iter().position(|(_, c)| c.is_none()) {
            Some(i) => i,
            None if self.entries.len() < MAX_ENTRIES => {
                // Generation 0 is never handed out, so an all-zero handle
                // is never valid.
                self.entries.push((0, None));
                self.entries.len() - 1
            }
            None => return None,
        };
        let e = &mut self.entries[index];
        e.0 = e.0.wrapping_add(1).max(1);
        e.1 = Some(cap);
        Some((index as u32) << 16 | e.0 as u32)
    }

    /// Revoke the capability `handle` names; false if it was not live.
    pub fn revoke(&mut self, handle: u32) -> bool {
        let (index, generation) = split(handle);
        match self.entries.get_mut(index) {
            Some(e) if e.0 == generation && e.1.is_some() => {
                e.1 = None;
                true
            }
            _ => false,
        }
    }

    /// Check a use of `handle` by `submitter` for `[offset, offset + len)`
    /// of its window; returns the operand's space and address.
    pub fn check(
        &self,
        handle: u32,
        submitter: Option<u32>,
        offset: u64,
        len: u64,
        write: bool,
    ) -> Result<(Space, u64), CapFault> {
        let (index, generation) = split(handle);
        let (g, cap) = self.entries.get(index).ok_or(CapFault::Forged)?;
        let cap = match cap {
            Some(c) if *g == generation => c,
            // A generation this entry once had: revoked since.
            _ if generation != 0 && generation <= *g => return Err(CapFault::Stale),
            _ => return Err(CapFault::Forged),
        };
        if submitter != Some(cap.owner) {
            return Err(CapFault::NotOwner);
        }
        if offset.checked_add(len).is_none_or(|end| end > cap.len) {
            return Err(CapFault::OutOfRange);
        }
        if (write && !cap.write) || (!write && !cap.read) {
            return Err(CapFault::Permission);
        }
        Ok((cap.space, cap.base + offset))
    }
}

fn split(handle: u32) -> (usize, u16) {
    ((handle >> 16) as usize, handle as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap() -> Capability {
        Capability {
            owner: 1,
            space: Space::Pasid(2),
            base: 0x1000,
            len: 0x2000,
            read: true,
            write: false,
        }
    }

    #[test]
    fn handles_are_checked_for_owner_range_permission_and_generation() {
        let mut t = CapTable::default();
        let h = t.grant(cap()).unwrap();
        assert_eq!(
            t.check(h, Some(1), 0x100, 0x100, false),
            Ok((Space::Pasid(2), 0x1100))
        );
        assert_eq!(t.check(h, Some(3), 0, 1, false), Err(CapFault::NotOwner));
        assert_eq!(t.check(h, None, 0, 1, false), Err(CapFault::NotOwner));
        assert_eq!(
            t.check(h, Some(1), 0x1f00, 0x200, false),
            Err(CapFault::OutOfRange)
        );
        assert_eq!(
            t.check(h, Some(1), u64::MAX, 2, false),
            Err(CapFault::OutOfRange)
        );
        assert_eq!(t.check(h, Some(1), 0, 1, true), Err(CapFault::Permission));
        assert_eq!(t.check(0, Some(1), 0, 1, false), Err(CapFault::Forged));
        assert_eq!(t.check(h + 1, Some(1), 0, 1, false), Err(CapFault::Forged));
        assert_eq!(
            t.check(5 << 16 | 1, Some(1), 0, 1, false),
            Err(CapFault::Forged)
        );
        assert!(t.revoke(h));
        assert!(!t.revoke(h));
        assert_eq!(t.check(h, Some(1), 0, 1, false), Err(CapFault::Stale));
        // The entry is reused with a new generation: the old handle stays dead.
        let h2 = t.grant(cap()).unwrap();
        assert_ne!(h, h2);
        assert_eq!(t.check(h, Some(1), 0, 1, false), Err(CapFault::Stale));
        assert!(t.check(h2, Some(1), 0, 1, false).is_ok());
    }
}
