//! Counters of the hierarchy: per-level demand hits and misses, per-core
//! prefetch activity, and device traffic.
//!
//! Counters are only ever incremented by the access paths and summed or
//! zeroed as a whole, so `hits + misses == accesses` holds for every
//! [`LevelStats`], including sums over cores.

/// Demand hits and misses at one level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
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
    pub(super) fn record(&mut self, hit: bool) {
        self.accesses += 1;
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
    }
    pub(super) fn add(&mut self, o: &LevelStats) {
        self.accesses += o.accesses;
        self.hits += o.hits;
        self.misses += o.misses;
    }
}

/// One core's counters. Accesses are counted per line touched. `l1d`,
/// `l2` and `llc` count demand *loads* only, as the hardware counters the
/// papers report do (perf's `L1-dcache-loads` / `-load-misses`); stores,
/// software prefetches and page-walker loads have their own L1d counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CoreStats {
    /// Demand loads at L1d.
    pub l1d: LevelStats,
    /// Demand loads that missed L1d.
    pub l2: LevelStats,
    /// Demand loads that missed L2 (this core's share of the LLC).
    pub llc: LevelStats,
    /// Stores at L1d.
    pub l1d_stores: LevelStats,
    /// Software prefetches at L1d.
    pub sw_prefetches: LevelStats,
    /// Page-walker loads at L1d.
    pub walks: LevelStats,
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
    pub(super) fn add(&mut self, o: &CoreStats) {
        self.l1d.add(&o.l1d);
        self.l1d_stores.add(&o.l1d_stores);
        self.sw_prefetches.add(&o.sw_prefetches);
        self.walks.add(&o.walks);
        self.l2.add(&o.l2);
        self.llc.add(&o.llc);
        self.l2_requests.add(&o.l2_requests);
        self.l1_prefetch_fills += o.l1_prefetch_fills;
        self.l2_prefetch_fills += o.l2_prefetch_fills;
        self.prefetch_dram_reads += o.prefetch_dram_reads;
    }
}

/// Counters of device (DMA) traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
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
    /// Reads of lines only a core's private cache held (snooped on chip).
    pub read_core_snoops: u64,
    pub read_llc_misses: u64,
    /// Copies of device-homed lines dropped from the chip's caches because
    /// their home invalidated them over a coherent link.
    pub snoop_invalidations: u64,
}
