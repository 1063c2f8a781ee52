//! The levels wired together: private L1d and L2 per core, one shared
//! LLC, DRAM behind it, and device (DMA) traffic with DDIO.
//!
//! Keeps true: every line a core touches is counted once at each level it
//! reaches, so `hits + misses == accesses` per level, L2 demand loads
//! equal L1d demand-load misses and LLC demand loads equal L2 demand-load
//! misses. Stores, software prefetches and page-walker loads are counted
//! apart from demand loads, as the hardware's load counters are.
//! Device writes stay coherent with the cores' private copies. The access
//! path allocates nothing.

use nextio_engine::{Duration, Freq};
use serde::{Deserialize, Deserializer, Serialize};

use super::prefetch::{PrefetchConfig, Stream};
use super::presence::Presence;
use super::stats::{CoreStats, DeviceStats};
use super::{Cache, CacheConfig, CacheError};
use crate::mem::PhysAddr;

/// Configuration of the whole hierarchy: a preset's `[machine.caches]`
/// (the sources of its values are there).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HierarchyConfig {
    /// Set by the machine ([`crate::machine::MachineSpec::with_cores`]).
    #[serde(skip)]
    pub cores: usize,
    /// Core clock.
    #[serde(rename = "core_clock_hz", with = "nextio_engine::time::as_hz")]
    pub core_clock: Freq,
    /// LLC ways device writes may allocate into (DDIO); 0 disables DDIO:
    /// device writes go to DRAM.
    pub ddio_ways: u32,
    /// Load-to-use latency of DRAM.
    #[serde(rename = "dram_latency_ps")]
    pub dram_latency: Duration,
    #[serde(deserialize_with = "level::<L1D, _>")]
    pub l1d: CacheConfig,
    #[serde(deserialize_with = "level::<L2, _>")]
    pub l2: CacheConfig,
    #[serde(deserialize_with = "level::<LLC, _>")]
    pub llc: CacheConfig,
    pub prefetch: PrefetchConfig,
    /// Bytes per cache line at every level: 64 on x86 servers (Intel
    /// Optimization Reference Manual), 128 on Cavium ThunderX-1.
    pub line_bytes: u64,
}

/// Most cache lines a hierarchy may hold over all its cores and levels:
/// 4 GiB of 64-byte lines, far above any CPU modelled, so that no
/// configuration asks for unbounded tag memory.
const MAX_LINES: u64 = 1 << 26;
/// Most prefetch streams a core tracks (real ones track 32).
const MAX_STREAMS: u32 = 1024;

const L1D: u8 = 0;
const L2: u8 = 1;
const LLC: u8 = 2;

/// A cache level read from a configuration, named after its level.
fn level<'de, const L: u8, D: Deserializer<'de>>(d: D) -> Result<CacheConfig, D::Error> {
    let mut c = CacheConfig::deserialize(d)?;
    c.name = ["L1d", "L2", "LLC"][L as usize];
    Ok(c)
}

/// What kind of core access a lookup is: it decides which counters it
/// lands in (hardware counts demand loads, stores, software prefetches
/// and page-walker loads separately), never how the caches behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    /// A demand load.
    Read,
    /// A store (its line is read for ownership like a load).
    Write,
    /// A software prefetch (`prefetcht0`, DPDK's `rte_prefetch0`).
    Prefetch,
    /// A page-table entry read by the core's page walker.
    Walk,
}

/// What one core access cost and where its lines came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessCost {
    pub cycles: u64,
    pub lines: u32,
    pub l1d_hits: u32,
    pub l2_hits: u32,
    pub llc_hits: u32,
    pub dram_reads: u32,
}

/// What one device access found in the LLC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCost {
    pub lines: u32,
    pub llc_hits: u32,
    pub llc_misses: u32,
    /// Lines written to DRAM: DDIO off, or lines DDIO evicted to make room
    /// (written back, as DDIO-written lines are dirty).
    pub dram_writes: u32,
}

/// Lines of `1 << shift` bytes that `[pa, pa + len)` spans: `first..=last`.
fn line_span(pa: PhysAddr, len: u64, shift: u32) -> std::ops::RangeInclusive<u64> {
    let first = pa.0 >> shift;
    let last = pa.0.saturating_add(len.max(1) - 1) >> shift;
    first..=last
}

/// A core's private caches and prefetcher state.
#[derive(Clone, Debug)]
pub(super) struct CoreCaches {
    pub(super) l1d: Cache,
    pub(super) l2: Cache,
    pub(super) streams: Vec<Stream>,
    pub(super) stream_clock: u64,
    pub(super) stats: CoreStats,
}

/// Private L1d/L2 per core, a shared LLC, DRAM behind it, and DDIO.
#[derive(Clone, Debug)]
pub struct Hierarchy {
    pub(super) config: HierarchyConfig,
    pub(super) cores: Vec<CoreCaches>,
    pub(super) llc: Cache,
    ddio_ways: std::ops::Range<usize>,
    dram_cycles: u64,
    line_shift: u32,
    device: DeviceStats,
    /// Which lines some core's L1d or L2 may hold: every private fill and
    /// eviction goes through [`Hierarchy::took`], every invalidation
    /// through `drop_private`.
    pub(super) presence: Presence,
}

impl Hierarchy {
    pub fn new(config: HierarchyConfig) -> Result<Hierarchy, CacheError> {
        let bad = |level, reason: &str| CacheError::BadConfig {
            level,
            reason: reason.into(),
        };
        if config.cores == 0 {
            return Err(bad("hierarchy", "needs at least one core"));
        }
        if config.ddio_ways > config.llc.ways {
            return Err(bad("LLC", "DDIO ways exceed the LLC's ways"));
        }
        let p = &config.prefetch;
        if p.l2_streamer && (p.degree == 0 || p.distance_lines == 0 || p.streams == 0) {
            return Err(bad(
                "prefetcher",
                "degree, distance and streams must be non-zero",
            ));
        }
        if p.streams > MAX_STREAMS {
            return Err(bad("prefetcher", "at most 1024 streams are modelled"));
        }
        // Tags of every level are allocated up front: bound them before.
        let lines = |c: &CacheConfig| c.size_bytes / config.line_bytes.max(1);
        let total = (config.cores as u64)
            .saturating_mul(lines(&config.l1d).saturating_add(lines(&config.l2)))
            .saturating_add(lines(&config.llc));
        if total > MAX_LINES {
            return Err(bad(
                "hierarchy",
                "more than 2^26 cache lines over all cores and levels (4 GiB of caches)",
            ));
        }
        let line = config.line_bytes;
        let llc = Cache::with_line_bytes(config.llc.clone(), line)?;
        let private_lines = (config.cores as u64)
            .saturating_mul(lines(&config.l1d).saturating_add(lines(&config.l2)));
        let mut cores = Vec::with_capacity(config.cores);
        for _ in 0..config.cores {
            cores.push(CoreCaches {
                l1d: Cache::with_line_bytes(config.l1d.clone(), line)?,
                l2: Cache::with_line_bytes(config.l2.clone(), line)?,
                streams: Vec::with_capacity(p.streams as usize),
                stream_clock: 0,
                stats: CoreStats::default(),
            });
        }
        let llc_ways = config.llc.ways as usize;
        // DDIO uses the highest-numbered ways, as the default IIO LLC WAYS
        // mask (0x600 on an 11-way LLC) does.
        let ddio_ways = llc_ways - config.ddio_ways as usize..llc_ways;
        let dram_cycles = config
            .core_clock
            .duration_to_cycles(config.dram_latency)
            .max(1);
        Ok(Hierarchy {
            config,
            cores,
            llc,
            ddio_ways,
            dram_cycles,
            line_shift: line.trailing_zeros(),
            device: DeviceStats::default(),
            presence: Presence::new(private_lines),
        })
    }

    pub fn config(&self) -> &HierarchyConfig {
        &self.config
    }

    /// Bytes per line.
    pub fn line_bytes(&self) -> u64 {
        1 << self.line_shift
    }

    /// Lines per 4 KiB page, the prefetchers' horizon.
    pub(super) fn lines_per_page(&self) -> u64 {
        4096 >> self.line_shift
    }

    /// Cache lines `[pa, pa + len)` spans (0 for an empty range).
    pub fn lines_of(&self, pa: PhysAddr, len: u64) -> u32 {
        if len == 0 {
            return 0;
        }
        let span = line_span(pa, len, self.line_shift);
        (span.end() - span.start() + 1) as u32
    }

    /// DRAM latency in core cycles.
    pub fn dram_latency_cycles(&self) -> u64 {
        self.dram_cycles
    }

    pub fn stats(&self, core: usize) -> Option<&CoreStats> {
        self.cores.get(core).map(|c| &c.stats)
    }

    /// Counters summed over every core.
    pub fn total_stats(&self) -> CoreStats {
        let mut t = CoreStats::default();
        for c in &self.cores {
            t.add(&c.stats);
        }
        t
    }

    pub fn device_stats(&self) -> DeviceStats {
        self.device
    }

    /// Zero every counter, keeping cache contents.
    pub fn reset_stats(&mut self) {
        for c in &mut self.cores {
            c.stats = CoreStats::default();
        }
        self.device = DeviceStats::default();
    }

    pub fn l1d(&self, core: usize) -> Option<&Cache> {
        self.cores.get(core).map(|c| &c.l1d)
    }
    pub fn l2(&self, core: usize) -> Option<&Cache> {
        self.cores.get(core).map(|c| &c.l2)
    }
    pub fn llc(&self) -> &Cache {
        &self.llc
    }

    /// A core reads or writes `len` bytes at `pa`: every line of the range
    /// is looked up in turn. A zero-length access touches nothing.
    pub fn access(
        &mut self,
        core: usize,
        pa: PhysAddr,
        len: u64,
        kind: AccessKind,
    ) -> Result<AccessCost, CacheError> {
        let cores = self.cores.len();
        if core >= cores {
            return Err(CacheError::NoSuchCore { core, cores });
        }
        let mut cost = AccessCost::default();
        if len == 0 {
            return Ok(cost);
        }
        for line in line_span(pa, len, self.line_shift) {
            self.access_line(core, line, kind, &mut cost);
        }
        Ok(cost)
    }

    fn access_line(&mut self, core: usize, line: u64, kind: AccessKind, cost: &mut AccessCost) {
        self.lookup_line(core, line, kind, cost, false);
    }

    /// Look `line` up for `core` in L1d, L2 and the LLC, counting the
    /// access. A line no level holds is fetched from DRAM (and filled on
    /// the way in), unless it is `homed` by a device, in which case nothing
    /// is filled and `false` is returned: the coherent link fetches it.
    fn lookup_line(
        &mut self,
        core: usize,
        line: u64,
        kind: AccessKind,
        cost: &mut AccessCost,
        homed: bool,
    ) -> bool {
        let l1_lat = self.config.l1d.hit_latency_cycles as u64;
        let l2_lat = self.config.l2.hit_latency_cycles as u64;
        let llc_lat = self.config.llc.hit_latency_cycles as u64;
        cost.lines += 1;
        let c = &mut self.cores[core];
        let l1_slot = c.l1d.lookup(line);
        let demand = kind == AccessKind::Read;
        match kind {
            AccessKind::Read => c.stats.l1d.record(l1_slot.is_some()),
            AccessKind::Write => c.stats.l1d_stores.record(l1_slot.is_some()),
            AccessKind::Prefetch => c.stats.sw_prefetches.record(l1_slot.is_some()),
            AccessKind::Walk => c.stats.walks.record(l1_slot.is_some()),
        }
        if let Some(i) = l1_slot {
            cost.l1d_hits += 1;
            cost.cycles += l1_lat;
            // Tagged next-line prefetch: the first use of a prefetched line
            // fetches the next one, so an ascending stream stays ahead.
            if c.l1d.take_prefetched(i) && self.config.prefetch.l1_next_line && !homed {
                self.prefetch_l1(core, line + 1);
            }
            return true;
        }
        let l2_hit = c.l2.touch_line(line);
        if demand {
            c.stats.l2.record(l2_hit);
        }
        // Every request L1d sends to L2 — demand loads, stores' reads for
        // ownership, software prefetches — but not the page walker's.
        if kind != AccessKind::Walk {
            c.stats.l2_requests.record(l2_hit);
        }
        if l2_hit {
            cost.l2_hits += 1;
            cost.cycles += l2_lat;
        } else {
            let llc_hit = self.llc.touch_line(line);
            let c = &mut self.cores[core];
            if demand {
                c.stats.llc.record(llc_hit);
            }
            if llc_hit {
                cost.llc_hits += 1;
                cost.cycles += llc_lat;
            } else if homed {
                // Not on chip: the request leaves for the line's home.
                // Prefetchers never reach into device-homed memory.
                return false;
            } else {
                cost.dram_reads += 1;
                cost.cycles += self.dram_cycles;
                self.llc.insert_absent(line);
            }
            let (_, out) = self.cores[core].l2.insert_absent(line);
            self.took(line, out);
        }
        // Every level filled here was just looked up and missed.
        let (_, out) = self.cores[core].l1d.insert_absent(line);
        self.took(line, out);
        if homed {
            return true;
        }
        // The streamer trains on the L2 lookup this miss caused; the
        // next-line prefetcher reacts to the miss itself.
        if self.config.prefetch.l2_streamer {
            self.stream(core, line);
        }
        if self.config.prefetch.l1_next_line {
            self.prefetch_l1(core, line + 1);
        }
        true
    }

    // ---- lines homed by a device on a coherent link ---------------------

    /// A core's access to the line holding `pa`, which a device homes over
    /// a coherent link: looked up and counted like any access, but a line
    /// the chip does not hold is not read from DRAM. Returns the cost of
    /// the lookup and whether the chip held the line; if not, the caller
    /// fetches it from its home and then calls [`Hierarchy::fill_homed`].
    pub fn access_homed(
        &mut self,
        core: usize,
        pa: PhysAddr,
        kind: AccessKind,
    ) -> Result<(AccessCost, bool), CacheError> {
        let cores = self.cores.len();
        if core >= cores {
            return Err(CacheError::NoSuchCore { core, cores });
        }
        let mut cost = AccessCost::default();
        let held = self.lookup_line(core, pa.0 >> self.line_shift, kind, &mut cost, true);
        Ok((cost, held))
    }

    /// The line holding `pa` arrived from its home for `core`: it is filled
    /// into the core's L1d and L2 and the LLC, as a DRAM fill would be.
    pub fn fill_homed(&mut self, core: usize, pa: PhysAddr) -> Result<(), CacheError> {
        let cores = self.cores.len();
        if core >= cores {
            return Err(CacheError::NoSuchCore { core, cores });
        }
        let line = pa.0 >> self.line_shift;
        self.llc.fill_line(line);
        for level in [L2, L1D] {
            let c = &mut self.cores[core];
            let cache = if level == L2 { &mut c.l2 } else { &mut c.l1d };
            if !cache.touch_line(line) {
                let (_, out) = cache.insert_absent(line);
                self.took(line, out);
            }
        }
        Ok(())
    }

    /// Whether any cache of the chip (a core's L1d or L2, or the LLC)
    /// holds the line of `pa` (no state changes).
    pub fn chip_holds(&self, pa: PhysAddr) -> bool {
        let line = pa.0 >> self.line_shift;
        self.llc.find(line).is_some() || self.private_holds(line)
    }

    /// Whether some core's L1d or L2 holds `line`.
    fn private_holds(&self, line: u64) -> bool {
        if !self.presence.may_hold(line) {
            debug_assert!(!self.private_search(line), "presence filter missed a copy");
            return false;
        }
        self.private_search(line)
    }

    fn private_search(&self, line: u64) -> bool {
        self.cores
            .iter()
            .any(|c| c.l1d.find(line).is_some() || c.l2.find(line).is_some())
    }

    /// A private cache took `line`, evicting `out` if it had to.
    pub(super) fn took(&mut self, line: u64, out: Option<u64>) {
        self.presence.add(line);
        if let Some(old) = out {
            self.presence.remove(old);
        }
    }

    /// Drop `line` from every core's L1d and L2; the copies dropped.
    fn drop_private(&mut self, line: u64) -> u32 {
        if !self.presence.may_hold(line) {
            debug_assert!(!self.private_search(line), "presence filter missed a copy");
            return 0;
        }
        let mut dropped = 0;
        for c in &mut self.cores {
            dropped += c.l1d.invalidate_line(line) as u32 + c.l2.invalidate_line(line) as u32;
        }
        for _ in 0..dropped {
            self.presence.remove(line);
        }
        dropped
    }

    /// The home of `[pa, pa + len)` invalidates it: every copy in every
    /// core's L1d and L2 and in the LLC is dropped. Returns the copies
    /// dropped (counted as `snoop_invalidations`).
    pub fn invalidate_homed(&mut self, pa: PhysAddr, len: u64) -> u32 {
        let mut dropped = 0u32;
        for line in line_span(pa, len, self.line_shift) {
            dropped += self.drop_private(line);
            dropped += self.llc.invalidate_line(line) as u32;
        }
        self.device.snoop_invalidations += dropped as u64;
        dropped
    }

    /// A device writes `len` bytes at `pa` (DMA with DDIO): each line is
    /// invalidated in every core's private caches, then updated in place if
    /// the LLC holds it, else allocated in the DDIO ways. With DDIO off the
    /// line goes to DRAM and any LLC copy is dropped. `llc_misses` counts
    /// allocations / DRAM writes.
    pub fn device_write(&mut self, pa: PhysAddr, len: u64) -> DeviceCost {
        let mut cost = DeviceCost::default();
        if len == 0 {
            return cost;
        }
        for line in line_span(pa, len, self.line_shift) {
            cost.lines += 1;
            self.device.write_core_invalidations += self.drop_private(line) as u64;
            if self.ddio_ways.is_empty() {
                // Without DDIO the write goes to memory and any LLC copy
                // becomes stale, so it is dropped.
                self.llc.invalidate_line(line);
                cost.llc_misses += 1;
                cost.dram_writes += 1;
                self.device.write_dram += 1;
                continue;
            }
            if self.llc.touch_line(line) {
                cost.llc_hits += 1;
                self.device.write_llc_hits += 1;
                continue;
            }
            cost.llc_misses += 1;
            self.device.write_llc_allocs += 1;
            if self
                .llc
                .insert_absent_in(line, self.ddio_ways.clone())
                .1
                .is_some()
            {
                cost.dram_writes += 1;
                self.device.write_llc_evictions += 1;
            }
        }
        cost
    }

    /// A device reads `len` bytes at `pa`: served on chip where the LLC or
    /// a core's private cache holds the line (without allocating or
    /// reordering LRU), else by DRAM.
    pub fn device_read(&mut self, pa: PhysAddr, len: u64) -> DeviceCost {
        let mut cost = DeviceCost::default();
        if len == 0 {
            return cost;
        }
        for line in line_span(pa, len, self.line_shift) {
            cost.lines += 1;
            if self.llc.find(line).is_some() {
                cost.llc_hits += 1;
                self.device.read_llc_hits += 1;
            } else if self.private_holds(line) {
                // A line only a core holds (written there, since evicted
                // from the LLC) is snooped from that core: served on chip
                // like an LLC hit, not by DRAM.
                cost.llc_hits += 1;
                self.device.read_core_snoops += 1;
            } else {
                cost.llc_misses += 1;
                self.device.read_llc_misses += 1;
            }
        }
        cost
    }

    /// Whether the LLC holds the line of `pa` (no state changes): what a
    /// device-side walker finds on chip.
    pub fn llc_holds(&self, pa: PhysAddr) -> bool {
        self.llc.find(pa.0 >> self.line_shift).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{line, no_prefetch, tiny};
    use super::*;

    #[test]
    fn bad_configs_are_errors() {
        assert!(Cache::new(tiny("x", 4096, 0, 1)).is_err());
        assert!(Cache::new(tiny("x", 0, 4, 1)).is_err());
        assert!(Cache::new(tiny("x", 3 * 64 * 4, 4, 1)).is_err(), "3 sets");
        assert!(Cache::new(tiny("x", 100, 1, 1)).is_err());
        let mut h = HierarchyConfig::ice_lake(1);
        h.ddio_ways = 13;
        assert!(Hierarchy::new(h).is_err());
        assert!(Hierarchy::new(HierarchyConfig::ice_lake(0)).is_err());
        let mut h = HierarchyConfig::ice_lake(1);
        h.prefetch.degree = 0;
        assert!(Hierarchy::new(h).is_err());
        let mut h = Hierarchy::new(HierarchyConfig::ice_lake(1)).unwrap();
        assert_eq!(
            h.access(1, PhysAddr(0), 8, AccessKind::Read),
            Err(CacheError::NoSuchCore { core: 1, cores: 1 })
        );
    }

    #[test]
    fn streaming_twice_through_l1_misses_every_line() {
        // 64 KiB does not fit in a 48 KiB L1d: with LRU, the second pass
        // finds every line evicted. It does fit in L2, so the second pass
        // hits there.
        let mut h = no_prefetch(1);
        for _pass in 0..2 {
            for off in (0..64 << 10).step_by(8) {
                h.access(0, PhysAddr(off), 8, AccessKind::Read).unwrap();
            }
        }
        let s = h.stats(0).unwrap();
        let loads = 2 * (64 << 10) / 8;
        let lines = 2 * (64 << 10) / 64;
        assert_eq!(s.l1d.accesses, loads);
        assert_eq!(s.l1d.misses, lines);
        assert_eq!(s.l1d_miss_ratio(), 1.0 / 8.0);
        assert_eq!(s.l2.accesses, lines);
        assert_eq!(s.l2.misses, lines / 2);
        assert_eq!(s.l2_miss_ratio(), 0.5);
        assert_eq!(s.llc.accesses, lines / 2);
        assert_eq!(s.llc.misses, lines / 2);
    }

    #[test]
    fn costs_follow_the_serving_level() {
        let mut h = no_prefetch(1);
        let dram = h.dram_latency_cycles();
        let c = h.access(0, PhysAddr(0), 128, AccessKind::Read).unwrap();
        assert_eq!((c.lines, c.dram_reads, c.cycles), (2, 2, 2 * dram));
        let c = h.access(0, PhysAddr(60), 8, AccessKind::Write).unwrap();
        assert_eq!((c.lines, c.l1d_hits, c.cycles), (2, 2, 10));
        assert_eq!(
            h.access(0, PhysAddr(0), 0, AccessKind::Read).unwrap().lines,
            0
        );
    }

    #[test]
    fn device_write_invalidates_core_copies_and_lands_in_llc() {
        let mut h = no_prefetch(2);
        h.access(0, PhysAddr(0x1000), 64, AccessKind::Read).unwrap();
        h.access(1, PhysAddr(0x1000), 64, AccessKind::Read).unwrap();
        assert!(h.l1d(0).unwrap().contains(PhysAddr(0x1000)));
        let w = h.device_write(PhysAddr(0x1000), 64);
        assert_eq!((w.lines, w.llc_hits), (1, 1));
        for core in 0..2 {
            assert!(!h.l1d(core).unwrap().contains(PhysAddr(0x1000)));
            assert!(!h.l2(core).unwrap().contains(PhysAddr(0x1000)));
        }
        assert_eq!(h.device_stats().write_core_invalidations, 4);
        let w = h.device_write(PhysAddr(0x8000), 100);
        assert_eq!((w.lines, w.llc_misses), (2, 2));
        assert!(h.llc().contains(PhysAddr(0x8000)));
        let c = h.access(0, PhysAddr(0x8000), 8, AccessKind::Read).unwrap();
        assert_eq!((c.llc_hits, c.dram_reads), (1, 0));
        let r = h.device_read(PhysAddr(0x8000), 64);
        assert_eq!(r.llc_hits, 1);
        let r = h.device_read(PhysAddr(0x10_0000), 64);
        assert_eq!(r.llc_misses, 1);
        assert!(
            !h.llc().contains(PhysAddr(0x10_0000)),
            "reads do not allocate"
        );
    }

    #[test]
    fn ddio_ways_bound_device_allocations() {
        // One LLC set of 4 ways, 2 of them for DDIO.
        let cfg = HierarchyConfig {
            cores: 1,
            l1d: tiny("L1d", 64, 1, 1),
            l2: tiny("L2", 64, 1, 2),
            llc: tiny("LLC", 64 * 4, 4, 3),
            ddio_ways: 2,
            dram_latency: Duration::from_ns(80),
            core_clock: Freq::mhz(3100),
            prefetch: PrefetchConfig::off(),
            line_bytes: 64,
        };
        let mut h = Hierarchy::new(cfg.clone()).unwrap();
        for l in 1..=4 {
            h.access(0, line(l), 8, AccessKind::Read).unwrap();
        }
        for l in 10..16 {
            h.device_write(line(l), 64);
        }
        let llc = h.llc();
        assert!(
            llc.contains(line(1)) && llc.contains(line(2)),
            "core ways kept"
        );
        assert!(!llc.contains(line(3)) && !llc.contains(line(4)));
        assert!(
            llc.contains(line(14)) && llc.contains(line(15)),
            "newest DDIO lines"
        );
        assert!(!llc.contains(line(10)), "older DDIO lines evicted");
        let d = h.device_stats();
        assert_eq!((d.write_llc_allocs, d.write_llc_evictions), (6, 6));
        // Without DDIO, device writes go to DRAM and drop the LLC copy.
        let mut off = Hierarchy::new(HierarchyConfig {
            ddio_ways: 0,
            ..cfg
        })
        .unwrap();
        off.access(0, line(1), 8, AccessKind::Read).unwrap();
        off.device_write(line(1), 64);
        off.device_write(line(2), 64);
        assert!(!off.llc().contains(line(1)), "stale copy dropped");
        assert!(!off.llc().contains(line(2)));
        assert_eq!(off.device_stats().write_dram, 2);
    }

    #[test]
    fn lines_of_128_bytes_and_device_homed_lookups() {
        let mut cfg = HierarchyConfig::ice_lake(2);
        cfg.line_bytes = 128;
        cfg.prefetch = PrefetchConfig::off();
        let mut h = Hierarchy::new(cfg.clone()).unwrap();
        assert_eq!(h.lines_of(PhysAddr(0), 128), 1);
        assert_eq!(h.lines_of(PhysAddr(64), 128), 2);
        let c = h.access(0, PhysAddr(0), 128, AccessKind::Read).unwrap();
        assert_eq!((c.lines, c.dram_reads), (1, 1));
        // A homed line the chip lacks is reported missing, not read from
        // DRAM, and filled only when its home's data arrives.
        let pa = PhysAddr(1 << 39);
        let (c, held) = h.access_homed(0, pa, AccessKind::Read).unwrap();
        assert!(!held && c.dram_reads == 0 && !h.chip_holds(pa));
        h.fill_homed(0, pa).unwrap();
        let (c, held) = h.access_homed(0, pa, AccessKind::Read).unwrap();
        assert!(held && c.l1d_hits == 1);
        let (c, held) = h.access_homed(1, pa.offset(64), AccessKind::Read).unwrap();
        assert!(held && c.llc_hits == 1, "another core finds it in the LLC");
        // Its home's invalidation drops every copy: two cores' L1d and L2
        // and the LLC.
        assert_eq!(h.invalidate_homed(pa, 128), 5);
        assert!(!h.chip_holds(pa));
        assert_eq!(h.device_stats().snoop_invalidations, 5);
        let s = h.stats(1).unwrap();
        assert_eq!(s.l1d.hits + s.l1d.misses, s.l1d.accesses);
        cfg.line_bytes = 96;
        assert!(Hierarchy::new(cfg).is_err());
    }

    #[test]
    fn counters_are_conserved() {
        let mut h = Hierarchy::new(HierarchyConfig::ice_lake(2)).unwrap();
        let mut x = 12345u64;
        for i in 0..50_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pa = PhysAddr((x >> 20) % (8 << 20));
            if i % 7 == 0 {
                h.device_write(pa, 256);
            } else {
                h.access((i % 2) as usize, pa, 1 + (x >> 58), AccessKind::Read)
                    .unwrap();
            }
        }
        for core in 0..2 {
            let s = h.stats(core).unwrap();
            for l in [s.l1d, s.l2, s.llc] {
                assert_eq!(l.hits + l.misses, l.accesses);
            }
            assert_eq!(s.l2.accesses, s.l1d.misses);
            assert_eq!(s.llc.accesses, s.l2.misses);
            let r = s.l2_requests;
            assert_eq!(r.hits + r.misses, r.accesses);
            assert_eq!(r.accesses, s.l1d.misses + s.l1_prefetch_fills);
        }
        h.reset_stats();
        assert_eq!(h.total_stats(), CoreStats::default());
    }

    #[test]
    fn stores_prefetches_and_walks_are_not_demand_loads() {
        let cfg = HierarchyConfig {
            prefetch: PrefetchConfig::off(),
            ..HierarchyConfig::ice_lake(1)
        };
        let mut h = Hierarchy::new(cfg).unwrap();
        let line = |l: u64| PhysAddr(l * super::super::LINE_BYTES);
        h.access(0, line(1), 8, AccessKind::Write).unwrap();
        h.access(0, line(2), 8, AccessKind::Prefetch).unwrap();
        h.access(0, line(3), 8, AccessKind::Walk).unwrap();
        let s = h.stats(0).unwrap();
        assert_eq!(s.l1d.accesses, 0, "no demand load yet");
        assert_eq!((s.l2.accesses, s.llc.accesses), (0, 0));
        assert_eq!((s.l1d_stores.accesses, s.l1d_stores.misses), (1, 1));
        assert_eq!((s.sw_prefetches.accesses, s.sw_prefetches.misses), (1, 1));
        assert_eq!((s.walks.accesses, s.walks.misses), (1, 1));
        // The store's and the prefetch's lookups reached L2; the walk's is
        // not an L1d request the L2 counters see.
        assert_eq!(s.l2_requests.accesses, 2);
        // The lines they brought in serve later loads: hits, not misses.
        for l in 1..=3 {
            h.access(0, line(l), 8, AccessKind::Read).unwrap();
        }
        let s = h.stats(0).unwrap();
        assert_eq!((s.l1d.accesses, s.l1d.hits), (3, 3));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn presence_never_misses_a_private_copy(
            ops in proptest::collection::vec((0u8..5, 0usize..2, 0u64..4096), 1..200),
        ) {
            // Small private caches (so lines are evicted) on two cores with
            // the prefetchers on, driven by core accesses, device reads and
            // writes and homed invalidations: after every step each private
            // copy is counted, and a zero bucket holds no copy.
            let mut cfg = HierarchyConfig::ice_lake(2);
            cfg.l1d = tiny("L1d", 64 * 4 * 4, 4, 5);
            cfg.l2 = tiny("L2", 64 * 8 * 8, 8, 14);
            let mut h = Hierarchy::new(cfg).unwrap();
            for (op, core, l) in ops {
                let kind = [AccessKind::Read, AccessKind::Write, AccessKind::Prefetch][op as usize % 3];
                match op {
                    0..=2 => drop(h.access(core, line(l), 8, kind).unwrap()),
                    3 => drop(h.device_write(line(l), 128)),
                    _ => drop(h.invalidate_homed(line(l), 64)),
                }
                let mut copies = 0u64;
                for c in &h.cores {
                    for cache in [&c.l1d, &c.l2] {
                        for probe in 0..4200u64 {
                            if cache.find(probe).is_some() {
                                copies += 1;
                                proptest::prop_assert!(h.presence.may_hold(probe));
                            }
                        }
                    }
                }
                proptest::prop_assert_eq!(copies, h.presence.total());
            }
        }
    }
}
