//! One set-associative cache with true LRU, holding tags only.
//!
//! A line lives in exactly one set (chosen from its low line bits, and a
//! slice hash when the cache is sliced) and in at most one way of it. The
//! A set's ways sit side by side in memory (tag, LRU stamp and prefetch
//! bit together), because the simulator's own time goes into fetching
//! them: a lookup reads one set's bytes and nothing else. The line-address methods are
//! `pub(super)` so the hierarchy and prefetchers can drive the cache
//! without rebuilding a [`PhysAddr`] for every line.

use serde::{Deserialize, Serialize};

use super::{CacheError, LINE_BYTES};
use crate::mem::PhysAddr;

const INVALID: u64 = u64::MAX;

/// Geometry and latency of one cache (a `[machine.caches.*]` section of
/// a preset, where each value's source is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Name used in error messages: the level, set by the hierarchy.
    #[serde(skip)]
    pub name: &'static str,
    /// Total capacity over all slices.
    pub size_bytes: u64,
    pub ways: u32,
    /// Slices the address is hashed across (1 for private caches). Need
    /// not be a power of two; sets per slice must be.
    pub slices: u32,
    /// Load-to-use latency of a hit, in core cycles.
    pub hit_latency_cycles: u32,
}

impl CacheConfig {
    fn validate(&self, line_bytes: u64) -> Result<u64, CacheError> {
        let bad = |reason: String| CacheError::BadConfig {
            level: self.name,
            reason,
        };
        if self.ways == 0 || self.slices == 0 {
            return Err(bad("ways and slices must be non-zero".into()));
        }
        if self.ways > 256 {
            return Err(bad(format!("{} ways: at most 256 are modelled", self.ways)));
        }
        if !line_bytes.is_power_of_two() || !(32..=256).contains(&line_bytes) {
            return Err(bad(format!(
                "{line_bytes} B lines: a line is a power of two of 32 to 256 bytes"
            )));
        }
        let per_set_bytes = line_bytes * self.ways as u64 * self.slices as u64;
        if self.size_bytes == 0 || !self.size_bytes.is_multiple_of(per_set_bytes) {
            return Err(bad(format!(
                "size {} B is not a non-zero multiple of line × ways × slices = {per_set_bytes} B",
                self.size_bytes
            )));
        }
        let sets_per_slice = self.size_bytes / per_set_bytes;
        if !sets_per_slice.is_power_of_two() {
            return Err(bad(format!(
                "{sets_per_slice} sets per slice is not a power of two"
            )));
        }
        if sets_per_slice * self.slices as u64 * self.ways as u64 > u32::MAX as u64 {
            return Err(bad("too many lines to model".into()));
        }
        Ok(sets_per_slice)
    }
}

/// One way of one set.
#[derive(Clone, Copy, Debug)]
struct Way {
    /// Line address (`pa >> line_shift`) held, `INVALID` if none.
    tag: u64,
    /// Last-use stamp (the smallest in a set is the LRU way), with the
    /// prefetched bit in [`PREFETCHED`].
    meta: u64,
}

/// Set on a prefetch fill, cleared by the first demand hit: the tag bit of
/// a tagged next-line prefetcher. Stamps count uses and never reach it.
const PREFETCHED: u64 = 1 << 63;

impl Way {
    const EMPTY: Way = Way {
        tag: INVALID,
        meta: 0,
    };
    fn stamp(self) -> u64 {
        self.meta & !PREFETCHED
    }
}

/// One set-associative cache: its ways in one flat array indexed by
/// `set × ways + way`.
#[derive(Clone, Debug)]
pub struct Cache {
    config: CacheConfig,
    ways: usize,
    sets_per_slice: u64,
    /// log2 of the line size: a line address is `pa >> line_shift`.
    line_shift: u32,
    slots: Vec<Way>,
    clock: u64,
}

/// Stand-in for Intel's undocumented slice hash (reverse engineered by
/// Maurice et al., RAID 2015): any good mix spreads consecutive lines
/// across slices, which is the property that matters here.
fn slice_hash(line: u64) -> u64 {
    let mut z = line.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Cache {
    /// A cache of [`LINE_BYTES`] lines.
    pub fn new(config: CacheConfig) -> Result<Cache, CacheError> {
        Cache::with_line_bytes(config, LINE_BYTES)
    }

    /// A cache of `line_bytes` lines (a power of two, 32 to 256 bytes).
    pub fn with_line_bytes(config: CacheConfig, line_bytes: u64) -> Result<Cache, CacheError> {
        let sets_per_slice = config.validate(line_bytes)?;
        let lines = (sets_per_slice * config.slices as u64 * config.ways as u64) as usize;
        Ok(Cache {
            ways: config.ways as usize,
            sets_per_slice,
            line_shift: line_bytes.trailing_zeros(),
            slots: vec![Way::EMPTY; lines],
            clock: 0,
            config,
        })
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Bytes per line.
    pub fn line_bytes(&self) -> u64 {
        1 << self.line_shift
    }

    /// Number of sets over all slices.
    pub fn sets(&self) -> usize {
        self.slots.len() / self.ways
    }

    /// The set (over all slices) that line address `line` maps to.
    fn set_of_line(&self, line: u64) -> usize {
        let in_slice = line & (self.sets_per_slice - 1);
        let slice = if self.config.slices == 1 {
            0
        } else {
            slice_hash(line) % self.config.slices as u64
        };
        (slice * self.sets_per_slice + in_slice) as usize
    }

    /// The set the line holding `pa` maps to.
    pub fn set_of(&self, pa: PhysAddr) -> usize {
        self.set_of_line(pa.0 >> self.line_shift)
    }

    pub(super) fn find(&self, line: u64) -> Option<usize> {
        self.find_in(self.set_of_line(line), line)
    }

    /// The slot of `line` in `set`, if it is there. A line is in at most
    /// one way, so the scan need not stop at a match: a loop without an
    /// early exit has no branch to mispredict.
    fn find_in(&self, set: usize, line: u64) -> Option<usize> {
        let base = set * self.ways;
        let mut found = None;
        for (w, way) in self.slots[base..base + self.ways].iter().enumerate() {
            if way.tag == line {
                found = Some(base + w);
            }
        }
        found
    }

    fn note_use(&mut self, slot: usize) {
        self.clock += 1;
        let way = &mut self.slots[slot];
        way.meta = (way.meta & PREFETCHED) | self.clock;
    }

    /// Whether the line holding `pa` is cached (no LRU update).
    pub fn contains(&self, pa: PhysAddr) -> bool {
        self.find(pa.0 >> self.line_shift).is_some()
    }

    pub(super) fn touch_line(&mut self, line: u64) -> bool {
        self.lookup(line).is_some()
    }

    /// Look `line` up and make it most recently used; its slot on a hit.
    pub(super) fn lookup(&mut self, line: u64) -> Option<usize> {
        let set = self.set_of_line(line);
        let i = self.find_in(set, line)?;
        self.note_use(i);
        Some(i)
    }

    /// Clear slot `i`'s prefetched bit, returning its old value.
    pub(super) fn take_prefetched(&mut self, i: usize) -> bool {
        let way = &mut self.slots[i];
        let was = way.meta & PREFETCHED != 0;
        way.meta &= !PREFETCHED;
        was
    }

    /// Look the line holding `pa` up, making it most recently used on a hit.
    pub fn touch(&mut self, pa: PhysAddr) -> bool {
        self.touch_line(pa.0 >> self.line_shift)
    }

    /// Insert `line` as most recently used into one of the ways in
    /// `ways` (an invalid one if any, else the LRU one), returning the line
    /// it evicted. A line already present is only touched.
    pub(super) fn fill_line_in(&mut self, line: u64, ways: std::ops::Range<usize>) -> Option<u64> {
        if self.touch_line(line) {
            return None;
        }
        self.insert_absent_in(line, ways).1
    }

    /// Insert `line`, which the caller has just looked up and not found,
    /// as [`Cache::fill_line_in`] would (without looking it up again);
    /// returns its slot and the line it evicted.
    pub(super) fn insert_absent_in(
        &mut self,
        line: u64,
        ways: std::ops::Range<usize>,
    ) -> (usize, Option<u64>) {
        let set = self.set_of_line(line);
        debug_assert!(self.find_in(set, line).is_none(), "line already cached");
        let base = set * self.ways;
        let mut victim = base + ways.start;
        for i in base + ways.start..base + ways.end {
            if self.slots[i].tag == INVALID {
                victim = i;
                break;
            }
            if self.slots[i].stamp() < self.slots[victim].stamp() {
                victim = i;
            }
        }
        let old = std::mem::replace(&mut self.slots[victim].tag, line);
        self.slots[victim].meta = 0;
        self.note_use(victim);
        (victim, (old != INVALID).then_some(old))
    }

    /// [`Cache::insert_absent_in`] over every way.
    pub(super) fn insert_absent(&mut self, line: u64) -> (usize, Option<u64>) {
        self.insert_absent_in(line, 0..self.ways)
    }

    /// Set slot `i`'s prefetched bit (the slot [`Cache::insert_absent`]
    /// returned).
    pub(super) fn set_prefetched(&mut self, i: usize) {
        self.slots[i].meta |= PREFETCHED;
    }

    pub(super) fn fill_line(&mut self, line: u64) -> Option<u64> {
        self.fill_line_in(line, 0..self.ways)
    }

    /// Insert the line holding `pa` as most recently used, returning the
    /// address of the line evicted to make room, if any.
    pub fn fill(&mut self, pa: PhysAddr) -> Option<PhysAddr> {
        self.fill_line(pa.0 >> self.line_shift)
            .map(|l| PhysAddr(l << self.line_shift))
    }

    pub(super) fn invalidate_line(&mut self, line: u64) -> bool {
        match self.find(line) {
            Some(i) => {
                self.slots[i] = Way::EMPTY;
                true
            }
            None => false,
        }
    }

    /// Drop the line holding `pa`; whether it was present.
    pub fn invalidate(&mut self, pa: PhysAddr) -> bool {
        self.invalidate_line(pa.0 >> self.line_shift)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{line, tiny};
    use super::*;

    #[test]
    fn set_mapping_uses_low_line_bits() {
        let c = Cache::new(tiny("x", 64 * 4 * 16, 4, 1)).unwrap();
        assert_eq!(c.sets(), 16);
        assert_eq!(c.set_of(line(0)), 0);
        assert_eq!(c.set_of(line(5)), 5);
        assert_eq!(c.set_of(line(16 + 5)), 5);
        assert_eq!(c.set_of(PhysAddr(5 * 64 + 63)), 5);
        let llc = Cache::new(CacheConfig::ice_lake_llc()).unwrap();
        let slices: std::collections::BTreeSet<_> =
            (0..1000).map(|l| llc.set_of(line(l)) / 2048).collect();
        assert_eq!(
            slices.len(),
            24,
            "consecutive lines spread over every slice"
        );
    }

    #[test]
    fn hit_after_fill_and_lru_eviction_order() {
        // One set of 4 ways.
        let mut c = Cache::new(tiny("x", 64 * 4, 4, 1)).unwrap();
        assert!(!c.touch(line(1)));
        for l in 1..=4 {
            assert_eq!(c.fill(line(l)), None);
        }
        assert!(c.touch(line(1)));
        // LRU order is now 2, 3, 4, 1.
        assert_eq!(c.fill(line(5)), Some(line(2)));
        assert_eq!(c.fill(line(6)), Some(line(3)));
        assert!(c.touch(line(4)));
        assert_eq!(c.fill(line(7)), Some(line(1)));
        assert_eq!(c.fill(line(8)), Some(line(5)));
        assert!(c.contains(line(4)) && c.contains(line(6)));
        assert!(c.invalidate(line(4)));
        assert!(!c.contains(line(4)));
        assert_eq!(c.fill(line(9)), None, "invalid way is used first");
    }
}
