//! Memory regions: what `ibv_reg_mr` registers with the NIC. Each region
//! is a range of bus addresses owned by one protection domain and named by
//! a local key; a WQE names its buffer by address and key, and the NIC
//! serves it only if the key exists, belongs to the QP's protection domain
//! and covers the whole buffer. The IOMMU is the second line: a region is
//! memory the OS mapped into the NIC's domain, so even a forged key cannot
//! reach beyond what was mapped for some process.
//!
//! Invariant: `check` is true only for a buffer wholly inside a region of
//! the same protection domain; key 0 is never issued.

use std::collections::BTreeMap;

/// One registered region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub pd: u32,
    pub addr: u64,
    pub len: u64,
}

/// The NIC's memory translation and protection table.
#[derive(Default)]
pub struct MrTable {
    regions: BTreeMap<u32, MemoryRegion>,
    next_key: u32,
}

impl MrTable {
    /// Register `region`; its key, or `None` when the table holds `max`.
    pub fn register(&mut self, region: MemoryRegion, max: usize) -> Option<u32> {
        if self.regions.len() >= max || region.addr.checked_add(region.len).is_none() {
            return None;
        }
        self.next_key = self.next_key.checked_add(1)?;
        self.regions.insert(self.next_key, region);
        Some(self.next_key)
    }

    /// Forget key `lkey`; whether it existed.
    pub fn deregister(&mut self, lkey: u32) -> bool {
        self.regions.remove(&lkey).is_some()
    }

    /// Whether a WQE of protection domain `pd` may name `[addr, addr+len)`
    /// under `lkey`.
    pub fn check(&self, pd: u32, lkey: u32, addr: u64, len: u64) -> bool {
        self.regions.get(&lkey).is_some_and(|r| {
            r.pd == pd
                && addr >= r.addr
                && addr
                    .checked_add(len)
                    .is_some_and(|end| end <= r.addr + r.len)
        })
    }

    pub fn len(&self) -> usize {
        self.regions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_check_domain_and_bounds() {
        let mut t = MrTable::default();
        let a = t
            .register(
                MemoryRegion {
                    pd: 1,
                    addr: 4096,
                    len: 4096,
                },
                2,
            )
            .unwrap();
        assert_ne!(a, 0);
        assert!(t.check(1, a, 4096, 4096));
        assert!(t.check(1, a, 5000, 100));
        assert!(!t.check(2, a, 4096, 64), "another domain");
        assert!(!t.check(1, a, 4000, 200), "starts before");
        assert!(!t.check(1, a, 8000, 200), "ends after");
        assert!(!t.check(1, a, u64::MAX, 2), "overflows");
        assert!(!t.check(1, a + 1, 4096, 64), "no such key");
        let b = t
            .register(
                MemoryRegion {
                    pd: 2,
                    addr: 0,
                    len: 64,
                },
                2,
            )
            .unwrap();
        assert_eq!(
            t.register(
                MemoryRegion {
                    pd: 2,
                    addr: 0,
                    len: 64
                },
                2
            ),
            None
        );
        assert!(t.deregister(b));
        assert!(!t.deregister(b));
        assert_eq!(t.len(), 1);
    }
}
