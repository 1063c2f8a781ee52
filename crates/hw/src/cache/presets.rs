//! Named CPUs: the cache geometries, latencies and DDIO setting of the
//! machines the experiments reproduce.
//!
//! Every number sits beside the source it was taken from, and a figure
//! that is a measurement range rather than a specification says which
//! value of the range was taken. Presets only fill in configurations; they
//! are validated like any other configuration when a cache is built.

use nextio_engine::{Duration, Freq};

use super::{CacheConfig, HierarchyConfig, PrefetchConfig};

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
    /// Ice Lake-SP LLC as on a Xeon Gold 6346: 36 MiB
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
}

impl HierarchyConfig {
    /// A Xeon Gold 6346 (Ice Lake-SP, 16 cores, 3.1 GHz base; Intel ARK):
    /// the generic modern server socket of the `ice-lake-sp` machine. The
    /// Ensō paper's DUT is a Skylake-X, see [`HierarchyConfig::skylake_x`].
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
            line_bytes: super::LINE_BYTES,
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

#[cfg(test)]
mod tests {
    use super::super::{Cache, Hierarchy};
    use super::*;

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
}
