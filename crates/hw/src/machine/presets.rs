//! Named machines: the hosts the papers' evaluations ran on, as far as
//! the model needs them (cores and clock, caches, TLB, memory, the
//! interconnect, the slot a NIC sits in). Every value sits beside its
//! source or is marked as an assumption.

use nextio_engine::{Duration, Freq};

use crate::cache::{CacheConfig, HierarchyConfig, PrefetchConfig};
use crate::coherent::CoherentConfig;
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
    pub const NAMES: [&'static str; 7] = [
        "enso-testbed",
        "ice-lake-sp",
        "xui-server",
        "enzian",
        "cxl-server",
        "accio-server",
        "accio-prototype",
    ];

    /// The preset called `name` with `cores` cores, if there is one.
    pub fn by_name(name: &str, cores: usize) -> Option<MachineSpec> {
        match name {
            "enso-testbed" => Some(MachineSpec::enso_testbed(cores)),
            "ice-lake-sp" => Some(MachineSpec::ice_lake_sp(cores)),
            "xui-server" => Some(MachineSpec::xui_server(cores)),
            "enzian" => Some(MachineSpec::enzian(cores)),
            "cxl-server" => Some(MachineSpec::cxl_server(cores)),
            "accio-server" => Some(MachineSpec::accio_server(cores)),
            "accio-prototype" => Some(MachineSpec::accio_prototype(cores)),
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

    /// Accio's test servers (§8.1, Table 1): a Xeon Gold 6240 (Cascade
    /// Lake, 18 cores per socket, 24.75 MiB LLC, six DDR4-2933 channels;
    /// Intel ARK), clocked at the ≈2 GHz average the paper observed rather
    /// than its 2.6 GHz label (§8.2), with the E810 on PCIe Gen3 x16
    /// (Cascade Lake's root ports are Gen3). Cascade Lake's core and
    /// caches are Skylake-SP's: L1d and L2 as the Skylake-X preset; the
    /// LLC is 18 slices of 1.375 MiB, 11-way.
    pub fn accio_server(cores: usize) -> MachineSpec {
        let mut caches = HierarchyConfig::skylake_x(cores);
        caches.llc.size_bytes = (18 * 1408) << 10;
        caches.llc.slices = 18;
        caches.core_clock = Freq::mhz(2000);
        MachineSpec {
            name: "accio-server",
            cores,
            caches,
            tlb: TlbConfig::SKYLAKE_STLB,
            memory_bytes: MEMORY_BYTES,
            fabric: FabricConfig {
                root_complex: RootComplexConfig {
                    dram_bytes_per_s: 6 * 23_466_000_000,
                    ..RootComplexConfig::default()
                },
                ..FabricConfig::default()
            },
            nic_slot: PcieConfig::gen_lanes(3, 16),
        }
    }

    /// Accio's FPGA prototype (§7, §8.1): four Rocket cores, the system
    /// bus, the peripherals and the NIC all at 50 MHz, 2 GiB of DDR4 on the
    /// VCU118. Its caches: Rocket's default 32 KiB L1d (§8.1; 8-way and a
    /// 3-cycle load-to-use are assumptions) and one shared 512 KiB L2
    /// (§8.1; 8-way and 24 cycles from a core are assumptions), no L3. The
    /// model's hierarchy has a private L2 and a shared LLC: the shared L2
    /// is the LLC, and the private level mirrors the L1d (same geometry
    /// and latency, so it adds nothing). Device writes go into the L2, the
    /// chip's point of coherence (all its ways stand for DDIO's). DRAM:
    /// 400 ns behind the L2 (20 bus cycles; assumption), and no more than
    /// the 64-bit bus carries, 400 MB/s (§7). One crossing of the system
    /// bus between a core or device and its target is 35 cycles (700 ns):
    /// half the 70-cycle CPU–NIC round trip of §7. Its TLB: Rocket's
    /// 32-entry fully associative DTLB (assumption: no L2 TLB).
    pub fn accio_prototype(cores: usize) -> MachineSpec {
        use crate::cache::CacheConfig;
        use nextio_engine::Duration;
        let l1d = CacheConfig {
            name: "L1d",
            size_bytes: 32 << 10,
            ways: 8,
            slices: 1,
            hit_latency_cycles: 3,
        };
        let caches = HierarchyConfig {
            // Rocket's 64-byte lines.
            line_bytes: 64,
            cores,
            l2: CacheConfig {
                name: "L2 (mirror of L1d)",
                ..l1d.clone()
            },
            l1d,
            llc: CacheConfig {
                name: "L2",
                size_bytes: 512 << 10,
                ways: 8,
                slices: 1,
                hit_latency_cycles: 24,
            },
            ddio_ways: 8,
            dram_latency: Duration::from_ns(400),
            core_clock: Freq::mhz(50),
            prefetch: crate::cache::PrefetchConfig {
                l1_next_line: false,
                l2_streamer: false,
                ..crate::cache::PrefetchConfig::default()
            },
        };
        MachineSpec {
            name: "accio-prototype",
            cores,
            caches,
            tlb: TlbConfig {
                entries: 32,
                ways: 32,
            },
            memory_bytes: 2 << 30,
            fabric: FabricConfig {
                root_complex: RootComplexConfig {
                    latency_ps: 700_000,
                    dram_extra_ps: 400_000,
                    dram_bytes_per_s: 400_000_000,
                },
                ..FabricConfig::default()
            },
            nic_slot: PcieConfig {
                flight_ps: 0,
                ..PcieConfig::gen_lanes(3, 16)
            },
        }
    }

    /// The coherent link of the preset, if it has one: ECI between the
    /// ThunderX-1 and the FPGA on Enzian, CXL on `cxl-server`.
    pub fn coherent_link(&self) -> Option<CoherentConfig> {
        match self.name {
            "enzian" => Some(CoherentConfig::eci()),
            "cxl-server" => Some(CoherentConfig::cxl()),
            _ => None,
        }
    }

    /// Enzian (Cock et al., ASPLOS '22): a 48-core Cavium ThunderX-1
    /// (CN8890, ARMv8.0) at 2.0 GHz, joined by ECI to a Xilinx XCVU9P FPGA
    /// that also sits on the CPU's PCIe (Gen3 x16; Enzian FAQ, "the FPGA
    /// has an x16").
    ///
    /// Caches: 128-byte lines; a 32 KiB L1d per core (AnandTech, "ARM
    /// Challenging Intel in the Server Market", 2014: 78 KB L1I and 32 KB
    /// L1D per core) — 8-way and a 4-cycle load-to-use are assumptions;
    /// one 16 MiB 16-way L2 shared by all cores and no L3 (same source).
    /// The model's hierarchy has a private L2 and a shared LLC: the shared
    /// L2 is the LLC (40 cycles, assumption), and the private level mirrors
    /// the L1d (same geometry and latency, so it adds nothing). No DDIO
    /// (assumption: device writes go to DRAM and drop the L2's copy).
    /// DRAM: four DDR4-2133 channels (ThunderX-1 product brief), 110 ns to
    /// load (assumption).
    ///
    /// PCIe: one root-complex pass of 446 ns, so that a core's 4-byte read
    /// of an FPGA register over PCIe takes the 1.292 µs the Lauberhorn
    /// repository measured (median of 50 back-to-back reads of the FPGA's
    /// cycle counter, 323 cycles at 250 MHz; enzian-pio-nic
    /// `data/pcie/pcie_lat.csv`), with the default 200 ns link flight each
    /// way. The TLB is the Skylake STLB's reach (assumption: the
    /// ThunderX-1's is not public).
    pub fn enzian(cores: usize) -> MachineSpec {
        let l1d = CacheConfig {
            name: "L1d",
            size_bytes: 32 << 10,
            ways: 8,
            slices: 1,
            hit_latency_cycles: 4,
        };
        let caches = HierarchyConfig {
            cores,
            l2: CacheConfig {
                name: "L2 (mirror of L1d)",
                ..l1d.clone()
            },
            l1d,
            llc: CacheConfig {
                name: "L2 (shared)",
                size_bytes: 16 << 20,
                ways: 16,
                slices: 1,
                hit_latency_cycles: 40,
            },
            ddio_ways: 0,
            dram_latency: Duration::from_ns(110),
            core_clock: Freq::mhz(2000),
            prefetch: PrefetchConfig::default(),
            line_bytes: 128,
        };
        MachineSpec {
            name: "enzian",
            cores,
            caches,
            tlb: TlbConfig::SKYLAKE_STLB,
            memory_bytes: MEMORY_BYTES,
            fabric: FabricConfig {
                root_complex: RootComplexConfig {
                    latency_ps: 446_000,
                    dram_bytes_per_s: 4 * 17_064_000_000,
                    ..RootComplexConfig::default()
                },
                ..FabricConfig::default()
            },
            nic_slot: PcieConfig::gen_lanes(3, 16),
        }
    }

    /// A modern x86 server with a CXL 3.0 device: the `ice-lake-sp`
    /// machine (64-byte lines) with the CXL link of
    /// [`CoherentConfig::cxl`] (assumption: no CXL 3.0 host with
    /// back-invalidation is documented with cache numbers yet).
    pub fn cxl_server(cores: usize) -> MachineSpec {
        MachineSpec {
            name: "cxl-server",
            ..MachineSpec::ice_lake_sp(cores)
        }
    }
}
