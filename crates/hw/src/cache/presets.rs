//! Named CPUs' cache hierarchies, read from the shipped host presets
//! (`presets/*.toml`, section `[machine.caches]`), which hold every value
//! with its source. Presets only fill in configurations; they are
//! validated like any other configuration when a cache is built.

use super::{CacheConfig, HierarchyConfig};
use crate::machine::MachineSpec;

impl CacheConfig {
    /// Ice Lake-SP (Sunny Cove) L1d: the `ice-lake-sp` preset's.
    pub fn ice_lake_l1d() -> CacheConfig {
        HierarchyConfig::ice_lake(1).l1d
    }
    /// Ice Lake-SP L2: the `ice-lake-sp` preset's.
    pub fn ice_lake_l2() -> CacheConfig {
        HierarchyConfig::ice_lake(1).l2
    }
    /// Ice Lake-SP LLC as on a Xeon Gold 6346: the `ice-lake-sp` preset's.
    pub fn ice_lake_llc() -> CacheConfig {
        HierarchyConfig::ice_lake(1).llc
    }
    /// Skylake-X (Core i9-9960X, the Ensō paper's DUT) L1d: the
    /// `skylake-x` preset's.
    pub fn skylake_x_l1d() -> CacheConfig {
        HierarchyConfig::skylake_x(1).l1d
    }
    /// Skylake-X L2: the `skylake-x` preset's.
    pub fn skylake_x_l2() -> CacheConfig {
        HierarchyConfig::skylake_x(1).l2
    }
    /// The i9-9960X's LLC: the `skylake-x` preset's.
    pub fn skylake_x_llc() -> CacheConfig {
        HierarchyConfig::skylake_x(1).llc
    }
}

impl HierarchyConfig {
    /// A Xeon Gold 6346 (Ice Lake-SP): the `ice-lake-sp` preset's caches.
    pub fn ice_lake(cores: usize) -> HierarchyConfig {
        MachineSpec::ice_lake_sp(cores).caches
    }
    /// The Ensō paper's DUT, an Intel Core i9-9960X (Skylake-X): the
    /// `skylake-x` preset's caches.
    pub fn skylake_x(cores: usize) -> HierarchyConfig {
        MachineSpec::preset("skylake-x", cores)
            .expect("shipped presets resolve (tested)")
            .caches
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

    #[test]
    fn levels_read_from_a_preset_are_named() {
        let h = HierarchyConfig::skylake_x(2);
        assert_eq!(h.cores, 2);
        assert_eq!([h.l1d.name, h.l2.name, h.llc.name], ["L1d", "L2", "LLC"]);
    }
}
