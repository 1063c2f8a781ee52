//! Named machines: the hosts the papers' evaluations ran on, as far as
//! the model needs them (cores and clock, caches, TLB, memory, the
//! interconnect, the slot a NIC sits in). Every value sits beside its
//! source or is marked as an assumption.

use nextio_engine::Freq;

use crate::cache::HierarchyConfig;
use crate::fabric::{FabricConfig, RootComplexConfig};
use crate::mem::TlbConfig;
use crate::pcie::PcieConfig;

use super::MachineSpec;

/// Physical memory of a modelled host. Only frames software touches cost
/// anything, so this is a ceiling, not a footprint: 4 GiB holds the
/// hugepages of 8 cores' pipes or mempools with margin.
const MEMORY_BYTES: u64 = 4 << 30;

impl MachineSpec {
    /// Every preset, by name.
    pub const NAMES: [&'static str; 3] = ["enso-testbed", "ice-lake-sp", "xui-server"];

    /// The preset called `name` with `cores` cores, if there is one.
    pub fn by_name(name: &str, cores: usize) -> Option<MachineSpec> {
        match name {
            "enso-testbed" => Some(MachineSpec::enso_testbed(cores)),
            "ice-lake-sp" => Some(MachineSpec::ice_lake_sp(cores)),
            "xui-server" => Some(MachineSpec::xui_server(cores)),
            _ => None,
        }
    }

    /// The Ensō paper's device under test (§3.3.1): an Intel Core
    /// i9-9960X (Skylake-X, 3.1 GHz base, 22 MB LLC) with its NICs on PCIe
    /// Gen3 x16, both the Ensō FPGA NIC and the E810 (Ensō §3.3.1). Memory:
    /// the i9-9960X's four DDR4-2666 channels (Intel ARK).
    pub fn enso_testbed(cores: usize) -> MachineSpec {
        MachineSpec {
            name: "enso-testbed",
            cores,
            caches: HierarchyConfig::skylake_x(cores),
            tlb: TlbConfig::SKYLAKE_STLB,
            memory_bytes: MEMORY_BYTES,
            fabric: FabricConfig {
                root_complex: RootComplexConfig {
                    dram_bytes_per_s: 4 * 21_328_000_000,
                    ..RootComplexConfig::default()
                },
                ..FabricConfig::default()
            },
            nic_slot: PcieConfig::gen_lanes(3, 16),
        }
    }

    /// A Xeon Gold 6346 (Ice Lake-SP, 3.1 GHz, 36 MiB LLC) with eight
    /// DDR4-3200 channels (Intel ARK), its NIC on PCIe Gen3 x16 as an
    /// E810-CQDA2 (Gen4 x16 capable, assumption: run at Gen3 for
    /// comparison with the Ensō testbed).
    pub fn ice_lake_sp(cores: usize) -> MachineSpec {
        MachineSpec {
            name: "ice-lake-sp",
            cores,
            caches: HierarchyConfig::ice_lake(cores),
            tlb: TlbConfig::SKYLAKE_STLB,
            memory_bytes: MEMORY_BYTES,
            fabric: FabricConfig {
                root_complex: RootComplexConfig {
                    dram_bytes_per_s: 8 * 25_600_000_000,
                    ..RootComplexConfig::default()
                },
                ..FabricConfig::default()
            },
            nic_slot: PcieConfig::gen_lanes(3, 16),
        }
    }

    /// The xUI evaluation's core (xUI Table 3: a Sapphire Rapids-like
    /// out-of-order core at 2 GHz) with an Ice Lake-SP cache hierarchy
    /// clocked at it (assumption: the paper's gem5 model gives no cache
    /// latencies in ns; Sapphire Rapids' geometry is close to Ice Lake-SP's)
    /// and the E810-like NIC of its l3fwd study on PCIe Gen3 x16.
    pub fn xui_server(cores: usize) -> MachineSpec {
        let mut caches = HierarchyConfig::ice_lake(cores);
        caches.core_clock = Freq::mhz(2000);
        MachineSpec {
            name: "xui-server",
            caches,
            ..MachineSpec::ice_lake_sp(cores)
        }
    }
}
