//! Named machines: the hosts the papers' evaluations ran on, as far as
//! the model needs them (cores and clock, caches, TLB, memory, the
//! interconnect, the slot a NIC sits in), read from the `[machine]`
//! section of the shipped host presets (`presets/*.toml`), which hold
//! every value beside its source. A new machine is a new preset file.

use nextio_presets::{PresetError, Tree};

use crate::coherent::{CoherentConfig, CoherentProtocol};

use super::MachineSpec;

impl MachineSpec {
    /// Every shipped preset, by name.
    pub fn names() -> Vec<&'static str> {
        nextio_presets::names()
    }

    /// The machine of shipped preset `name` with `cores` cores.
    pub fn preset(name: &str, cores: usize) -> Result<MachineSpec, PresetError> {
        MachineSpec::from_tree(nextio_presets::preset(name)?, cores)
    }

    /// The machine of a resolved configuration with `cores` cores, named
    /// after the shipped preset it derives from (a configuration laid over
    /// a preset keeps that preset's name).
    pub fn from_tree(tree: &Tree, cores: usize) -> Result<MachineSpec, PresetError> {
        let mut spec: MachineSpec = tree.section("machine")?;
        spec.name = nextio_presets::names()
            .into_iter()
            .find(|n| *n == tree.name())
            .unwrap_or("custom");
        Ok(spec.with_cores(cores))
    }

    /// The shipped preset called `name` with `cores` cores, if there is one.
    pub fn by_name(name: &str, cores: usize) -> Option<MachineSpec> {
        MachineSpec::preset(name, cores).ok()
    }

    /// The Ensō paper's device under test (§3.3.1): an Intel Core i9-9960X
    /// with both the Ensō NIC and the E810 on PCIe 3.0 x16 (`enso-testbed`).
    pub fn enso_testbed(cores: usize) -> MachineSpec {
        shipped("enso-testbed", cores)
    }

    /// A Xeon Gold 6346 (Ice Lake-SP) with an E810 (`ice-lake-sp`).
    pub fn ice_lake_sp(cores: usize) -> MachineSpec {
        shipped("ice-lake-sp", cores)
    }

    /// The xUI evaluation's Sapphire Rapids-like host at 2 GHz (`xui-server`).
    pub fn xui_server(cores: usize) -> MachineSpec {
        shipped("xui-server", cores)
    }

    /// Enzian (Cock et al., ASPLOS '22): a 48-core Cavium ThunderX-1 at
    /// 2.0 GHz with 128-byte lines, joined by ECI to an FPGA that also sits
    /// on its PCIe (`enzian`).
    pub fn enzian(cores: usize) -> MachineSpec {
        shipped("enzian", cores)
    }

    /// A modern x86 server with a CXL 3.0 device (`cxl-server`).
    pub fn cxl_server(cores: usize) -> MachineSpec {
        shipped("cxl-server", cores)
    }

    /// Accio's test servers (§8.1, Table 1): a Xeon Gold 6240 (Cascade
    /// Lake) at the ≈2 GHz the paper observed, with the E810 on PCIe Gen3
    /// x16 (`accio-server`).
    pub fn accio_server(cores: usize) -> MachineSpec {
        shipped("accio-server", cores)
    }

    /// Accio's FPGA prototype (§7, §8.1): four Rocket cores at 50 MHz on a
    /// VCU118 (`accio-prototype`).
    pub fn accio_prototype(cores: usize) -> MachineSpec {
        shipped("accio-prototype", cores)
    }

    /// The coherent link of the machine, if it has one: ECI between the
    /// ThunderX-1 and the FPGA on Enzian, CXL on `cxl-server`.
    pub fn coherent_link(&self) -> Option<CoherentConfig> {
        (self.coherent.protocol != CoherentProtocol::None).then(|| self.coherent.clone())
    }
}

/// A shipped preset's machine; every shipped preset resolves (tested).
fn shipped(name: &str, cores: usize) -> MachineSpec {
    match MachineSpec::preset(name, cores) {
        Ok(spec) => spec,
        Err(e) => panic!("shipped preset `{name}` does not resolve (tested): {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_preset_is_a_machine_that_builds() {
        for name in MachineSpec::names() {
            let spec = MachineSpec::preset(name, 2).unwrap();
            assert_eq!(spec.name, name);
            assert_eq!(spec.caches.cores, 2);
            let sim = nextio_engine::Sim::new();
            super::super::Machine::new(&sim, spec).unwrap();
        }
        assert!(MachineSpec::by_name("no-such-host", 1).is_none());
    }

    #[test]
    fn presets_keep_their_sources_values() {
        // The Ensō testbed's LLC and clock (Ensō §3.3.1), the xUI server's
        // clock (xUI Table 3).
        let enso = MachineSpec::enso_testbed(1);
        assert_eq!(enso.caches.llc.size_bytes, 22 << 20);
        assert_eq!(enso.caches.core_clock.hz(), 3_100_000_000);
        assert_eq!(
            MachineSpec::xui_server(1).caches.core_clock.hz(),
            2_000_000_000
        );
        assert_eq!(MachineSpec::ice_lake_sp(1).caches.llc.size_bytes, 36 << 20);
    }
}
