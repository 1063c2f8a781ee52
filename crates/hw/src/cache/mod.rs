//! A timing model of a server CPU's cache hierarchy: per-core private L1d
//! and L2, one shared sliced LLC, an L2 stream prefetcher, an L1 next-line
//! prefetcher, and DDIO-style device writes that land in a few LLC ways.
//!
//! Only tags are kept: the bytes live in [`crate::mem::PhysMem`]. The model
//! answers "which level served this line and what did it cost".
//!
//! Policies (simplifications are deliberate and listed here):
//! * One line size for every level (64 bytes on x86, 128 on ThunderX-1),
//!   set-associative, true LRU per set.
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
//! demand loads equal L1d demand-load misses and LLC demand loads equal L2
//! demand-load misses (stores, software prefetches and page-walker loads
//! have their own L1d counters). No configuration panics: [`CacheConfig`] and
//! [`HierarchyConfig`] are validated into a [`CacheError`]. The access path
//! allocates nothing.
//!
//! One concept per file: `set_assoc` holds a single cache, `prefetch` the
//! hardware prefetchers, `hierarchy` the levels wired together with DDIO,
//! `presence` the filter that spares device traffic snooping every core,
//! `presets` the named CPUs with the sources of their numbers, and `stats`
//! the counters. The files are private and everything is re-exported here,
//! so callers name an item `cache::X` whichever file holds it.

use thiserror::Error;

mod hierarchy;
mod prefetch;
mod presence;
mod presets;
mod set_assoc;
mod stats;

pub use hierarchy::{AccessCost, AccessKind, DeviceCost, Hierarchy, HierarchyConfig};
pub use prefetch::PrefetchConfig;
pub use set_assoc::{Cache, CacheConfig};
pub use stats::{CoreStats, DeviceStats, LevelStats};

/// Bytes per cache line of every x86 server core since the Pentium 4: the
/// default line ([`HierarchyConfig::line_bytes`] sets a hierarchy's own).
pub const LINE_BYTES: u64 = 64;

/// Invalid cache or hierarchy configuration.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CacheError {
    #[error("{level}: {reason}")]
    BadConfig { level: &'static str, reason: String },
    #[error("core {core} does not exist (the hierarchy has {cores} cores)")]
    NoSuchCore { core: usize, cores: usize },
}

#[cfg(test)]
mod test_support {
    //! Helpers shared by the tests of every file in this folder.

    use super::{CacheConfig, Hierarchy, HierarchyConfig, LINE_BYTES, PrefetchConfig};
    use crate::mem::PhysAddr;

    pub(super) fn tiny(name: &'static str, size_bytes: u64, ways: u32, lat: u32) -> CacheConfig {
        CacheConfig {
            name,
            size_bytes,
            ways,
            slices: 1,
            hit_latency_cycles: lat,
        }
    }

    pub(super) fn line(n: u64) -> PhysAddr {
        PhysAddr(n * LINE_BYTES)
    }

    pub(super) fn no_prefetch(cores: usize) -> Hierarchy {
        let mut cfg = HierarchyConfig::ice_lake(cores);
        cfg.prefetch = PrefetchConfig::off();
        Hierarchy::new(cfg).unwrap()
    }
}
