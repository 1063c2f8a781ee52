//! A translation lookaside buffer: a set-associative cache of page-table
//! translations tagged by address space, with true-LRU replacement. One
//! type serves as a core's second-level TLB and as an IOMMU's IOTLB.
//!
//! Invariants:
//! * an entry is only ever a copy of a translation a walk found; the TLB
//!   never invents one, and a lookup returns a translation covering the
//!   address asked for, in the address space asked for;
//! * `hits + misses` equals the number of lookups;
//! * invalidation is explicit, as in hardware: changing a page table does
//!   not update a TLB, the OS (or IOMMU driver) must invalidate.

use serde::{Deserialize, Serialize};

use super::address_space::Asid;
use super::page_table::{PageSize, Translation};
use super::{VirtAddr, page_table::Perms};
use crate::mem::PhysAddr;

/// Geometry of a TLB: a preset's `[machine.tlb]` (a core's STLB) or
/// `[machine.fabric.iommu.iotlb]`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlbConfig {
    pub entries: u32,
    pub ways: u32,
}

/// Most entries a modelled TLB may have (real ones have thousands).
const MAX_ENTRIES: u32 = 1 << 20;

impl TlbConfig {
    /// A Skylake-SP core's shared second-level TLB: the `skylake-x`
    /// preset's. First-level dTLB hits are free in the model, so the STLB's
    /// reach is what decides whether an access walks.
    pub fn skylake_stlb() -> TlbConfig {
        nextio_presets::root_section("machine.tlb")
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.entries == 0 || self.ways == 0 || !self.entries.is_multiple_of(self.ways) {
            return Err(format!(
                "a TLB of {} entries cannot be {}-way",
                self.entries, self.ways
            ));
        }
        if self.entries > MAX_ENTRIES {
            return Err(format!(
                "a TLB of {} entries: at most {MAX_ENTRIES} are modelled",
                self.entries
            ));
        }
        Ok(())
    }
}

/// What a TLB has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TlbStats {
    pub hits: u64,
    pub misses: u64,
    pub fills: u64,
    pub evictions: u64,
    pub invalidations: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    asid: Asid,
    page_va: u64,
    size: PageSize,
    frame: PhysAddr,
    perms: Perms,
    stamp: u64,
}

/// A set-associative, address-space-tagged translation cache.
#[derive(Clone, Debug)]
pub struct Tlb {
    ways: usize,
    sets: usize,
    slots: Vec<Option<Entry>>,
    clock: u64,
    stats: TlbStats,
}

fn set_of(sets: usize, asid: Asid, page_va: u64, size: PageSize) -> usize {
    let page = page_va / size.bytes();
    // Mix in the ASID so two spaces' identical pages do not always collide.
    ((page ^ (asid.0 as u64).wrapping_mul(0x9e37_79b9)) % sets as u64) as usize
}

impl Tlb {
    pub fn new(config: TlbConfig) -> Result<Tlb, String> {
        config.validate()?;
        let ways = config.ways as usize;
        Ok(Tlb {
            ways,
            sets: (config.entries / config.ways) as usize,
            slots: vec![None; config.entries as usize],
            clock: 0,
            stats: TlbStats::default(),
        })
    }

    pub fn stats(&self) -> TlbStats {
        self.stats
    }

    fn set(&mut self, set: usize) -> &mut [Option<Entry>] {
        &mut self.slots[set * self.ways..(set + 1) * self.ways]
    }

    /// The cached translation of `va` in `asid`, if any (counted as a hit
    /// or a miss).
    pub fn lookup(&mut self, asid: Asid, va: VirtAddr) -> Option<Translation> {
        self.clock += 1;
        let clock = self.clock;
        for size in [PageSize::Huge, PageSize::Base, PageSize::Giant] {
            let page_va = va.0 & !(size.bytes() - 1);
            let set = set_of(self.sets, asid, page_va, size);
            for slot in self.set(set).iter_mut().flatten() {
                if slot.asid == asid && slot.size == size && slot.page_va == page_va {
                    slot.stamp = clock;
                    let t = Translation {
                        page_va: VirtAddr(page_va),
                        frame: slot.frame,
                        size,
                        perms: slot.perms,
                    };
                    self.stats.hits += 1;
                    return Some(t);
                }
            }
        }
        self.stats.misses += 1;
        None
    }

    /// Cache `t`, a translation in `asid` a walk found, evicting the least
    /// recently used entry of its set if the set is full.
    pub fn insert(&mut self, asid: Asid, t: Translation) {
        self.clock += 1;
        let entry = Entry {
            asid,
            page_va: t.page_va.0,
            size: t.size,
            frame: t.frame,
            perms: t.perms,
            stamp: self.clock,
        };
        let set = set_of(self.sets, asid, t.page_va.0, t.size);
        let slots = self.set(set);
        let victim = slots
            .iter()
            .position(|s| {
                s.is_none_or(|e| e.asid == asid && e.size == t.size && e.page_va == t.page_va.0)
            })
            .or_else(|| {
                slots
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.map_or(0, |e| e.stamp))
                    .map(|(i, _)| i)
            })
            .unwrap_or(0);
        let evicting = slots[victim]
            .is_some_and(|e| !(e.asid == asid && e.size == t.size && e.page_va == t.page_va.0));
        slots[victim] = Some(entry);
        self.stats.fills += 1;
        self.stats.evictions += evicting as u64;
    }

    /// Drop every entry of `asid` covering `va` (INVLPG, an IOTLB page
    /// invalidation). Returns how many were dropped.
    pub fn invalidate(&mut self, asid: Asid, va: VirtAddr) -> u64 {
        let mut n = 0;
        for slot in &mut self.slots {
            if let Some(e) = slot
                && e.asid == asid
                && va.0 >= e.page_va
                && va.0 - e.page_va < e.size.bytes()
            {
                *slot = None;
                n += 1;
            }
        }
        self.stats.invalidations += n;
        n
    }

    /// Drop every entry of `asid` (a context or domain invalidation).
    pub fn invalidate_asid(&mut self, asid: Asid) -> u64 {
        let mut n = 0;
        for slot in &mut self.slots {
            if slot.is_some_and(|e| e.asid == asid) {
                *slot = None;
                n += 1;
            }
        }
        self.stats.invalidations += n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(va: u64, pa: u64, size: PageSize) -> Translation {
        Translation {
            page_va: VirtAddr(va),
            frame: PhysAddr(pa),
            size,
            perms: Perms::USER_RW,
        }
    }

    #[test]
    fn hits_only_in_the_right_space_and_page() {
        let mut tlb = Tlb::new(TlbConfig {
            entries: 8,
            ways: 2,
        })
        .unwrap();
        tlb.insert(Asid(1), t(0x20_0000, 0x60_0000, PageSize::Huge));
        let hit = tlb.lookup(Asid(1), VirtAddr(0x21_2345)).unwrap();
        assert_eq!(hit.pa(VirtAddr(0x21_2345)), PhysAddr(0x61_2345));
        assert!(tlb.lookup(Asid(2), VirtAddr(0x21_2345)).is_none());
        assert!(tlb.lookup(Asid(1), VirtAddr(0x40_0000)).is_none());
        assert_eq!(tlb.stats().hits, 1);
        assert_eq!(tlb.stats().misses, 2);
        assert_eq!(tlb.invalidate(Asid(1), VirtAddr(0x3f_ffff)), 1);
        assert!(tlb.lookup(Asid(1), VirtAddr(0x20_0000)).is_none());
    }

    #[test]
    fn lru_within_a_set_and_reach_is_the_entry_count() {
        let mut tlb = Tlb::new(crate::fabric::IommuConfig::default().iotlb).unwrap();
        for p in 0..64u64 {
            tlb.insert(Asid(3), t(p << 12, p << 12, PageSize::Base));
        }
        for p in 0..64u64 {
            assert!(tlb.lookup(Asid(3), VirtAddr(p << 12)).is_some());
        }
        // A 65th page evicts the least recently used one (page 0).
        tlb.insert(Asid(3), t(64 << 12, 0, PageSize::Base));
        assert!(tlb.lookup(Asid(3), VirtAddr(0)).is_none());
        assert!(tlb.lookup(Asid(3), VirtAddr(1 << 12)).is_some());
        assert_eq!(tlb.stats().evictions, 1);
        assert_eq!(tlb.invalidate_asid(Asid(3)), 64);
        assert!(
            Tlb::new(TlbConfig {
                entries: 10,
                ways: 4
            })
            .is_err()
        );
    }
}
