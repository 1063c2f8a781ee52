//! A timing model of a server CPU's cache hierarchy: per-core private L1d
//! and L2, one shared sliced LLC, an L2 stream prefetcher, an L1 next-line
//! prefetcher, and DDIO-style device writes that land in a few LLC ways.
//!
//! Only tags are kept: the bytes live in [`crate::mem::PhysMem`]. The model
//! answers "which level served this line and what did it cost".
//!
//! Policies (simplifications are deliberate and listed here):
//! * 64-byte lines, set-associative, true LRU per set.
//! * Non-inclusive fill-all: a demand miss fills the line into every level
//!   that missed (L1d, L2 and, on a DRAM fetch, the LLC); an eviction from
//!   one level never invalidates another. Ice Lake-SP's real LLC is a
//!   non-inclusive, mostly-victim cache; filling on the way in is simpler
//!   and only matters for workloads whose LLC reuse depends on L2 victims.
//! * Writes are write-allocate and cost what a read costs; dirty state and
//!   write-backs are not modelled.
//! * The cost of an access is the load-to-use latency of the level that
//!   served each line, summed over lines: no memory-level parallelism, so
//!   cycles are an upper bound for independent loads.
//! * Prefetches are timely and free for the core: a prefetched line is a
//!   fill, never a demand miss, and a later demand access to it hits.
//! * Device writes are coherent: they invalidate the line in every core's
//!   L1d and L2, then update it in the LLC if present in any way, or
//!   allocate it in the DDIO ways only.
//!
//! Invariants: for every core and level, `hits + misses == accesses`; L2
//! demand accesses equal L1d demand misses and LLC demand accesses equal L2
//! demand misses. No configuration panics: [`CacheConfig`] and
//! [`HierarchyConfig`] are validated into a [`CacheError`]. The access path
//! allocates nothing.

use nextio_engine::{Duration, Freq};
use thiserror::Error;

use crate::mem::PhysAddr;

/// Bytes per cache line (every x86 server core since the Pentium 4).
pub const LINE_BYTES: u64 = 64;
const LINE_SHIFT: u32 = 6;
/// Lines per 4 KiB page: the stream prefetcher never crosses a page.
const LINES_PER_PAGE: u64 = 4096 / LINE_BYTES;
const INVALID: u64 = u64::MAX;

/// Invalid cache or hierarchy configuration.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CacheError {
    #[error("{level}: {reason}")]
    BadConfig { level: &'static str, reason: String },
    #[error("core {core} does not exist (the hierarchy has {cores} cores)")]
    NoSuchCore { core: usize, cores: usize },
}

/// Geometry and latency of one cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Name used in error messages.
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
    /// Ice Lake-SP (Sunny Cove) L1d: 48 KiB, 12-way, 5-cycle load-to-use
    /// (Intel 64 and IA-32 Architectures Optimization Reference Manual,
    /// Sunny Cove cache-parameter table; the same geometry is reported by
    /// AnandTech's Ice Lake review, 2019).
    pub fn ice_lake_l1d() -> CacheConfig {
        CacheConfig {
            name: "L1d",
            size_bytes: 48 << 10,
            ways: 12,
            slices: 1,
            hit_latency_cycles: 5,
        }
    }
    /// Ice Lake-SP L2: 1.25 MiB, 20-way (Intel, 3rd Gen Xeon Scalable
    /// disclosures, Hot Chips 32, 2020), ~14 cycles (approximate published
    /// latency measurements of Ice Lake-SP; treat as ±1 cycle).
    pub fn ice_lake_l2() -> CacheConfig {
        CacheConfig {
            name: "L2",
            size_bytes: 1280 << 10,
            ways: 20,
            slices: 1,
            hit_latency_cycles: 14,
        }
    }
    /// Ice Lake-SP LLC as on the Ensō testbed's Xeon Gold 6346: 36 MiB
    /// (Intel ARK spec sheet), built from 1.5 MiB 12-way slices (Ice Lake-SP
    /// die disclosures), hence 24 slices. ~60 cycles is the middle of the
    /// 50-70-cycle range published measurements of Ice Lake-SP report; the
    /// real figure varies with the mesh distance to the slice.
    pub fn ice_lake_llc() -> CacheConfig {
        CacheConfig {
            name: "LLC",
            size_bytes: 36 << 20,
            ways: 12,
            slices: 24,
            hit_latency_cycles: 60,
        }
    }

    /// Skylake-X (Core i9-9960X, the Ensō paper's DUT, §3.3.1) L1d: 32 KiB,
    /// 8-way, 5-cycle load-to-use (Intel Optimization Reference Manual,
    /// Skylake server cache-parameter table: 4–5 cycles).
    pub fn skylake_x_l1d() -> CacheConfig {
        CacheConfig {
            name: "L1d",
            size_bytes: 32 << 10,
            ways: 8,
            slices: 1,
            hit_latency_cycles: 5,
        }
    }
    /// Skylake-X L2: 1 MiB, 16-way, 14 cycles (same manual and table).
    pub fn skylake_x_l2() -> CacheConfig {
        CacheConfig {
            name: "L2",
            size_bytes: 1 << 20,
            ways: 16,
            slices: 1,
            hit_latency_cycles: 14,
        }
    }
    /// The i9-9960X's LLC: 22 MiB (Intel ARK; Ensō §3.3.1 "22 MB of LLC"),
    /// 16 slices of 1.375 MiB, 11-way, non-inclusive (Skylake-SP mesh
    /// disclosures); ~50–70 cycles in published measurements, 60 taken.
    pub fn skylake_x_llc() -> CacheConfig {
        CacheConfig {
            name: "LLC",
            size_bytes: 22 << 20,
            ways: 11,
            slices: 16,
            hit_latency_cycles: 60,
        }
    }

    fn validate(&self) -> Result<u64, CacheError> {
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
        let per_set_bytes = LINE_BYTES * self.ways as u64 * self.slices as u64;
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

/// One set-associative cache: tags and LRU stamps in flat arrays indexed by
/// `set × ways + way`.
#[derive(Clone, Debug)]
pub struct Cache {
    config: CacheConfig,
    ways: usize,
    sets_per_slice: u64,
    /// Line address (`pa >> 6`) held by each way, `INVALID` if none.
    tags: Vec<u64>,
    /// Last-use stamp of each way; the smallest in a set is the LRU way.
    stamps: Vec<u64>,
    /// Set on a prefetch fill, cleared by the first demand hit: the tag
    /// bit of a tagged next-line prefetcher.
    prefetched: Vec<bool>,
    /// Most recently used way of each set: looked at first, because
    /// consecutive accesses mostly touch the same line (a lookup hint; it
    /// changes no hit or miss).
    mru_way: Vec<u8>,
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
    pub fn new(config: CacheConfig) -> Result<Cache, CacheError> {
        let sets_per_slice = config.validate()?;
        let lines = (sets_per_slice * config.slices as u64 * config.ways as u64) as usize;
        Ok(Cache {
            ways: config.ways as usize,
            sets_per_slice,
            tags: vec![INVALID; lines],
            stamps: vec![0; lines],
            prefetched: vec![false; lines],
            mru_way: vec![0; lines / config.ways as usize],
            clock: 0,
            config,
        })
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Number of sets over all slices.
    pub fn sets(&self) -> usize {
        self.tags.len() / self.ways
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
        self.set_of_line(pa.0 >> LINE_SHIFT)
    }

    fn find(&self, line: u64) -> Option<usize> {
        let set = self.set_of_line(line);
        let base = set * self.ways;
        let hint = base + self.mru_way[set] as usize;
        if self.tags[hint] == line {
            return Some(hint);
        }
        self.tags[base..base + self.ways]
            .iter()
            .position(|t| *t == line)
            .map(|w| base + w)
    }

    fn note_use(&mut self, slot: usize) {
        self.clock += 1;
        self.stamps[slot] = self.clock;
        self.mru_way[slot / self.ways] = (slot % self.ways) as u8;
    }

    /// Whether the line holding `pa` is cached (no LRU update).
    pub fn contains(&self, pa: PhysAddr) -> bool {
        self.find(pa.0 >> LINE_SHIFT).is_some()
    }

    fn touch_line(&mut self, line: u64) -> bool {
        self.lookup(line).is_some()
    }

    /// Look `line` up and make it most recently used; its slot on a hit.
    fn lookup(&mut self, line: u64) -> Option<usize> {
        let i = self.find(line)?;
        self.note_use(i);
        Some(i)
    }

    /// Clear slot `i`'s prefetched bit, returning its old value.
    fn take_prefetched(&mut self, i: usize) -> bool {
        std::mem::replace(&mut self.prefetched[i], false)
    }

    fn mark_prefetched(&mut self, line: u64) {
        if let Some(i) = self.find(line) {
            self.prefetched[i] = true;
        }
    }

    /// Look the line holding `pa` up, making it most recently used on a hit.
    pub fn touch(&mut self, pa: PhysAddr) -> bool {
        self.touch_line(pa.0 >> LINE_SHIFT)
    }

    /// Insert `line` as most recently used into one of the ways in
    /// `ways` (an invalid one if any, else the LRU one), returning the line
    /// it evicted. A line already present is only touched.
    fn fill_line_in(&mut self, line: u64, ways: std::ops::Range<usize>) -> Option<u64> {
        if self.touch_line(line) {
            return None;
        }
        let base = self.set_of_line(line) * self.ways;
        let mut victim = base + ways.start;
        for i in base + ways.start..base + ways.end {
            if self.tags[i] == INVALID {
                victim = i;
                break;
            }
            if self.stamps[i] < self.stamps[victim] {
                victim = i;
            }
        }
        let old = std::mem::replace(&mut self.tags[victim], line);
        self.prefetched[victim] = false;
        self.note_use(victim);
        (old != INVALID).then_some(old)
    }

    fn fill_line(&mut self, line: u64) -> Option<u64> {
        self.fill_line_in(line, 0..self.ways)
    }

    /// Insert the line holding `pa` as most recently used, returning the
    /// address of the line evicted to make room, if any.
    pub fn fill(&mut self, pa: PhysAddr) -> Option<PhysAddr> {
        self.fill_line(pa.0 >> LINE_SHIFT)
            .map(|l| PhysAddr(l << LINE_SHIFT))
    }

    fn invalidate_line(&mut self, line: u64) -> bool {
        match self.find(line) {
            Some(i) => {
                self.tags[i] = INVALID;
                self.stamps[i] = 0;
                true
            }
            None => false,
        }
    }

    /// Drop the line holding `pa`; whether it was present.
    pub fn invalidate(&mut self, pa: PhysAddr) -> bool {
        self.invalidate_line(pa.0 >> LINE_SHIFT)
    }
}

/// The hardware prefetchers of one core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefetchConfig {
    /// The L2 streamer: watches L2 lookups (L1d misses) for ascending or
    /// descending line sequences within a 4 KiB page and prefetches ahead
    /// into L2 (Intel Optimization Reference Manual, "Data Prefetch to the
    /// L2 and Last Level Cache").
    pub l2_streamer: bool,
    /// Lines the streamer issues per triggering lookup; the manual says it
    /// "may issue two prefetch requests on every L2 lookup".
    pub degree: u32,
    /// How far ahead of the demand stream it may run; the manual: "up to 20
    /// lines ahead".
    pub distance_lines: u32,
    /// Streams tracked at once; the manual: "up to 32 streams".
    pub streams: u32,
    /// The L1d next-line ("DCU") prefetcher (same manual, "Data Prefetch
    /// to L1 Data Cache": triggered by ascending accesses to recently
    /// loaded data). Modelled as tagged next-line prefetch (Smith, 1982):
    /// a demand miss, or the first demand hit on a prefetched line, fetches
    /// the next line of the same 4 KiB page into L1d.
    pub l1_next_line: bool,
}

impl Default for PrefetchConfig {
    fn default() -> Self {
        // Both are enabled out of the box on Intel servers.
        PrefetchConfig {
            l2_streamer: true,
            degree: 2,
            distance_lines: 20,
            streams: 32,
            l1_next_line: true,
        }
    }
}

impl PrefetchConfig {
    pub fn off() -> PrefetchConfig {
        PrefetchConfig {
            l2_streamer: false,
            l1_next_line: false,
            ..PrefetchConfig::default()
        }
    }
}

/// Configuration of the whole hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HierarchyConfig {
    pub cores: usize,
    pub l1d: CacheConfig,
    pub l2: CacheConfig,
    pub llc: CacheConfig,
    /// LLC ways device writes may allocate into. Intel DDIO's default is 2
    /// ways (the IIO LLC WAYS register; measured on Skylake-SP's 11-way
    /// LLC by Farshin et al., "Reexamining Direct Cache Access to Optimize
    /// I/O Intensive Applications for Multi-hundred-gigabit Networks",
    /// USENIX ATC 2020). 0 disables DDIO: device writes go to DRAM.
    pub ddio_ways: u32,
    /// Load-to-use latency of DRAM. ~80 ns is typical of a loaded-idle
    /// DDR4-3200 Xeon socket (Intel Memory Latency Checker idle latencies
    /// published for Ice Lake-SP are in the 80-90 ns range).
    pub dram_latency: Duration,
    /// Core clock: the Xeon Gold 6346's 3.1 GHz base (Intel ARK).
    pub core_clock: Freq,
    pub prefetch: PrefetchConfig,
}

impl HierarchyConfig {
    /// A Xeon Gold 6346 (Ice Lake-SP, 16 cores), the Ensō paper's testbed.
    pub fn ice_lake(cores: usize) -> HierarchyConfig {
        HierarchyConfig {
            cores,
            l1d: CacheConfig::ice_lake_l1d(),
            l2: CacheConfig::ice_lake_l2(),
            llc: CacheConfig::ice_lake_llc(),
            ddio_ways: 2,
            dram_latency: Duration::from_ns(80),
            core_clock: Freq::mhz(3100),
            prefetch: PrefetchConfig::default(),
        }
    }
}

impl HierarchyConfig {
    /// The Ensō paper's DUT: an Intel Core i9-9960X (Skylake-X, 16 cores,
    /// 3.1 GHz base, 22 MB LLC; Ensō §3.3.1), with DDIO's default 2 LLC
    /// ways and the same DRAM latency as [`HierarchyConfig::ice_lake`].
    pub fn skylake_x(cores: usize) -> HierarchyConfig {
        HierarchyConfig {
            l1d: CacheConfig::skylake_x_l1d(),
            l2: CacheConfig::skylake_x_l2(),
            llc: CacheConfig::skylake_x_llc(),
            ..HierarchyConfig::ice_lake(cores)
        }
    }
}

/// Demand hits and misses at one level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelStats {
    pub accesses: u64,
    pub hits: u64,
    pub misses: u64,
}

impl LevelStats {
    /// `misses / accesses`, 0 when there were no accesses.
    pub fn miss_ratio(&self) -> f64 {
        if self.accesses == 0 {
            0.0
        } else {
            self.misses as f64 / self.accesses as f64
        }
    }
    fn record(&mut self, hit: bool) {
        self.accesses += 1;
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
    }
    fn add(&mut self, o: &LevelStats) {
        self.accesses += o.accesses;
        self.hits += o.hits;
        self.misses += o.misses;
    }
}

/// One core's counters. Accesses are counted per line touched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreStats {
    pub l1d: LevelStats,
    /// Demand lookups that missed L1d.
    pub l2: LevelStats,
    /// Demand lookups that missed L2 (this core's share of the LLC).
    pub llc: LevelStats,
    /// Every request L1d sends to L2: demand misses plus next-line
    /// prefetches. This is what Intel's `L2_RQSTS.REFERENCES`/`MISS`
    /// counters see, as opposed to the demand-only `l2`.
    pub l2_requests: LevelStats,
    /// Lines the L1d next-line prefetcher brought into L1d.
    pub l1_prefetch_fills: u64,
    /// Lines either prefetcher brought into L2.
    pub l2_prefetch_fills: u64,
    /// Prefetches that had to go to DRAM.
    pub prefetch_dram_reads: u64,
}

impl CoreStats {
    pub fn l1d_miss_ratio(&self) -> f64 {
        self.l1d.miss_ratio()
    }
    pub fn l2_miss_ratio(&self) -> f64 {
        self.l2.miss_ratio()
    }
    pub fn llc_miss_ratio(&self) -> f64 {
        self.llc.miss_ratio()
    }
    /// L2 misses over all L2 requests, L1d prefetches included.
    pub fn l2_request_miss_ratio(&self) -> f64 {
        self.l2_requests.miss_ratio()
    }
    fn add(&mut self, o: &CoreStats) {
        self.l1d.add(&o.l1d);
        self.l2.add(&o.l2);
        self.llc.add(&o.llc);
        self.l2_requests.add(&o.l2_requests);
        self.l1_prefetch_fills += o.l1_prefetch_fills;
        self.l2_prefetch_fills += o.l2_prefetch_fills;
        self.prefetch_dram_reads += o.prefetch_dram_reads;
    }
}

/// Counters of device (DMA) traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    pub write_llc_hits: u64,
    pub write_llc_allocs: u64,
    /// Lines device writes evicted from the DDIO ways.
    pub write_llc_evictions: u64,
    /// Lines written straight to DRAM (DDIO disabled).
    pub write_dram: u64,
    /// Copies in core caches invalidated by device writes.
    pub write_core_invalidations: u64,
    pub read_llc_hits: u64,
    pub read_llc_misses: u64,
}

/// Read or write, from a core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    Read,
    Write,
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
}

#[derive(Clone, Copy, Debug)]
struct Stream {
    page: u64,
    last_line: u64,
    /// +1 ascending, -1 descending, 0 not yet known.
    dir: i8,
    /// Furthest line already prefetched in `dir`.
    frontier: u64,
    stamp: u64,
}

/// A core's private caches and prefetcher state.
#[derive(Clone, Debug)]
struct CoreCaches {
    l1d: Cache,
    l2: Cache,
    streams: Vec<Stream>,
    stream_clock: u64,
    stats: CoreStats,
}

/// Private L1d/L2 per core, a shared LLC, DRAM behind it, and DDIO.
#[derive(Clone, Debug)]
pub struct Hierarchy {
    config: HierarchyConfig,
    cores: Vec<CoreCaches>,
    llc: Cache,
    ddio_ways: std::ops::Range<usize>,
    dram_cycles: u64,
    device: DeviceStats,
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
        let llc = Cache::new(config.llc.clone())?;
        let mut cores = Vec::with_capacity(config.cores);
        for _ in 0..config.cores {
            cores.push(CoreCaches {
                l1d: Cache::new(config.l1d.clone())?,
                l2: Cache::new(config.l2.clone())?,
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
            device: DeviceStats::default(),
        })
    }

    pub fn config(&self) -> &HierarchyConfig {
        &self.config
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
        _kind: AccessKind,
    ) -> Result<AccessCost, CacheError> {
        let cores = self.cores.len();
        if core >= cores {
            return Err(CacheError::NoSuchCore { core, cores });
        }
        let mut cost = AccessCost::default();
        if len == 0 {
            return Ok(cost);
        }
        let first = pa.0 >> LINE_SHIFT;
        let last = pa.0.saturating_add(len - 1) >> LINE_SHIFT;
        for line in first..=last {
            self.access_line(core, line, &mut cost);
        }
        Ok(cost)
    }

    fn access_line(&mut self, core: usize, line: u64, cost: &mut AccessCost) {
        let l1_lat = self.config.l1d.hit_latency_cycles as u64;
        let l2_lat = self.config.l2.hit_latency_cycles as u64;
        let llc_lat = self.config.llc.hit_latency_cycles as u64;
        cost.lines += 1;
        let c = &mut self.cores[core];
        let l1_slot = c.l1d.lookup(line);
        c.stats.l1d.record(l1_slot.is_some());
        if let Some(i) = l1_slot {
            cost.l1d_hits += 1;
            cost.cycles += l1_lat;
            // Tagged next-line prefetch: the first use of a prefetched line
            // fetches the next one, so an ascending stream stays ahead.
            if c.l1d.take_prefetched(i) && self.config.prefetch.l1_next_line {
                self.prefetch_l1(core, line + 1);
            }
            return;
        }
        let l2_hit = c.l2.touch_line(line);
        c.stats.l2.record(l2_hit);
        c.stats.l2_requests.record(l2_hit);
        if l2_hit {
            cost.l2_hits += 1;
            cost.cycles += l2_lat;
        } else {
            let llc_hit = self.llc.touch_line(line);
            let c = &mut self.cores[core];
            c.stats.llc.record(llc_hit);
            if llc_hit {
                cost.llc_hits += 1;
                cost.cycles += llc_lat;
            } else {
                cost.dram_reads += 1;
                cost.cycles += self.dram_cycles;
                self.llc.fill_line(line);
            }
            self.cores[core].l2.fill_line(line);
        }
        self.cores[core].l1d.fill_line(line);
        // The streamer trains on the L2 lookup this miss caused; the
        // next-line prefetcher reacts to the miss itself.
        if self.config.prefetch.l2_streamer {
            self.stream(core, line);
        }
        if self.config.prefetch.l1_next_line {
            self.prefetch_l1(core, line + 1);
        }
    }

    /// Bring `line` into `core`'s L2 (and the LLC on a DRAM fetch) without
    /// charging the core; returns whether anything was fetched.
    fn prefetch_l2(&mut self, core: usize, line: u64) -> bool {
        if self.cores[core].l2.find(line).is_some() {
            return false;
        }
        if self.llc.find(line).is_none() {
            self.llc.fill_line(line);
            self.cores[core].stats.prefetch_dram_reads += 1;
        }
        let c = &mut self.cores[core];
        c.l2.fill_line(line);
        c.stats.l2_prefetch_fills += 1;
        true
    }

    /// Bring `line` into `core`'s L1d ahead of use. Like the hardware it
    /// never crosses a 4 KiB page (the next page's frame is unknown), and
    /// its request is an L2 lookup the streamer trains on.
    fn prefetch_l1(&mut self, core: usize, line: u64) {
        if line.is_multiple_of(LINES_PER_PAGE) || self.cores[core].l1d.find(line).is_some() {
            return;
        }
        if self.config.prefetch.l2_streamer {
            self.stream(core, line);
        }
        let l2_miss = self.prefetch_l2(core, line);
        let c = &mut self.cores[core];
        c.stats.l2_requests.record(!l2_miss);
        c.l1d.fill_line(line);
        c.l1d.mark_prefetched(line);
        c.stats.l1_prefetch_fills += 1;
    }

    /// The L2 streamer: one entry per 4 KiB page; two lookups in the same
    /// direction confirm a stream, after which each lookup prefetches up to
    /// `degree` lines beyond the frontier, at most `distance_lines` ahead of
    /// the demand line and never past the page.
    fn stream(&mut self, core: usize, line: u64) {
        let p = &self.config.prefetch;
        let (degree, distance, max_streams) =
            (p.degree as u64, p.distance_lines as u64, p.streams as usize);
        let page = line / LINES_PER_PAGE;
        let c = &mut self.cores[core];
        c.stream_clock += 1;
        let now = c.stream_clock;
        let Some(i) = c.streams.iter().position(|s| s.page == page) else {
            let fresh = Stream {
                page,
                last_line: line,
                dir: 0,
                frontier: line,
                stamp: now,
            };
            if c.streams.len() < max_streams {
                c.streams.push(fresh);
            } else if let Some(lru) = c.streams.iter_mut().min_by_key(|s| s.stamp) {
                *lru = fresh;
            }
            return;
        };
        let s = &mut c.streams[i];
        s.stamp = now;
        let dir: i8 = match line.cmp(&s.last_line) {
            std::cmp::Ordering::Greater => 1,
            std::cmp::Ordering::Less => -1,
            std::cmp::Ordering::Equal => return,
        };
        s.last_line = line;
        if s.dir != dir {
            // A new or reversed direction must be confirmed first.
            s.dir = dir;
            s.frontier = line;
            return;
        }
        let page_first = page * LINES_PER_PAGE;
        let page_last = page_first + LINES_PER_PAGE - 1;
        let mut next = if dir > 0 {
            s.frontier.max(line)
        } else {
            s.frontier.min(line)
        };
        let mut issued = 0;
        let mut targets = [0u64; 64];
        while issued < degree.min(64) {
            let cand = if dir > 0 {
                next.checked_add(1)
            } else {
                next.checked_sub(1)
            };
            let Some(cand) = cand else { break };
            if cand < page_first || cand > page_last || cand.abs_diff(line) > distance {
                break;
            }
            targets[issued as usize] = cand;
            next = cand;
            issued += 1;
        }
        s.frontier = next;
        for &t in &targets[..issued as usize] {
            self.prefetch_l2(core, t);
        }
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
        let first = pa.0 >> LINE_SHIFT;
        let last = pa.0.saturating_add(len - 1) >> LINE_SHIFT;
        for line in first..=last {
            cost.lines += 1;
            for c in &mut self.cores {
                let a = c.l1d.invalidate_line(line);
                let b = c.l2.invalidate_line(line);
                self.device.write_core_invalidations += a as u64 + b as u64;
            }
            if self.ddio_ways.is_empty() {
                // Without DDIO the write goes to memory and any LLC copy
                // becomes stale, so it is dropped.
                self.llc.invalidate_line(line);
                cost.llc_misses += 1;
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
                .fill_line_in(line, self.ddio_ways.clone())
                .is_some()
            {
                self.device.write_llc_evictions += 1;
            }
        }
        cost
    }

    /// A device reads `len` bytes at `pa`: served by the LLC where present
    /// (without allocating or reordering LRU), else by DRAM. Dirty copies
    /// in core caches are not modelled, so cores are not snooped.
    pub fn device_read(&mut self, pa: PhysAddr, len: u64) -> DeviceCost {
        let mut cost = DeviceCost::default();
        if len == 0 {
            return cost;
        }
        let first = pa.0 >> LINE_SHIFT;
        let last = pa.0.saturating_add(len - 1) >> LINE_SHIFT;
        for line in first..=last {
            cost.lines += 1;
            if self.llc.find(line).is_some() {
                cost.llc_hits += 1;
                self.device.read_llc_hits += 1;
            } else {
                cost.llc_misses += 1;
                self.device.read_llc_misses += 1;
            }
        }
        cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(name: &'static str, size_bytes: u64, ways: u32, lat: u32) -> CacheConfig {
        CacheConfig {
            name,
            size_bytes,
            ways,
            slices: 1,
            hit_latency_cycles: lat,
        }
    }

    fn line(n: u64) -> PhysAddr {
        PhysAddr(n * LINE_BYTES)
    }

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
    fn ice_lake_geometry() {
        assert_eq!(Cache::new(CacheConfig::ice_lake_l1d()).unwrap().sets(), 64);
        assert_eq!(Cache::new(CacheConfig::ice_lake_l2()).unwrap().sets(), 1024);
        assert_eq!(
            Cache::new(CacheConfig::ice_lake_llc()).unwrap().sets(),
            24 * 2048
        );
        // 80 ns at 3.1 GHz.
        let h = Hierarchy::new(HierarchyConfig::ice_lake(1)).unwrap();
        assert_eq!(h.dram_latency_cycles(), 248);
    }

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

    fn no_prefetch(cores: usize) -> Hierarchy {
        let mut cfg = HierarchyConfig::ice_lake(cores);
        cfg.prefetch = PrefetchConfig::off();
        Hierarchy::new(cfg).unwrap()
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
    fn prefetcher_turns_sequential_misses_into_hits() {
        let walk = |h: &mut Hierarchy| {
            for off in (0..256 << 10).step_by(64) {
                h.access(0, PhysAddr(off), 8, AccessKind::Read).unwrap();
            }
            *h.stats(0).unwrap()
        };
        let off = walk(&mut no_prefetch(1));
        assert_eq!(off.l2.misses, off.l2.accesses);
        let mut cfg = HierarchyConfig::ice_lake(1);
        cfg.prefetch.l1_next_line = false;
        let on = walk(&mut Hierarchy::new(cfg).unwrap());
        assert_eq!(
            on.l1d.misses, off.l1d.misses,
            "L2 prefetch does not fill L1d"
        );
        assert!(on.l2_miss_ratio() < 0.1, "{on:?}");
        assert!(on.l2_prefetch_fills > 0);
        // Prefetched lines are fills, not demand misses.
        assert_eq!(on.l2.hits + on.l2.misses, on.l2.accesses);
        let both = walk(&mut Hierarchy::new(HierarchyConfig::ice_lake(1)).unwrap());
        assert!(both.l1d.misses < off.l1d.misses / 2, "{both:?}");
        // Descending streams are detected too.
        let mut cfg = HierarchyConfig::ice_lake(1);
        cfg.prefetch.l1_next_line = false;
        let mut h = Hierarchy::new(cfg).unwrap();
        for l in (0..4096u64).rev() {
            h.access(0, line(l), 8, AccessKind::Read).unwrap();
        }
        assert!(h.stats(0).unwrap().l2_miss_ratio() < 0.1);
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
}
