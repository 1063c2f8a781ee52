//! The forwarding step of a virtual switch (Open vSwitch, BESS; the Ensō
//! paper §3.2's example of an application that demultiplexes packets):
//! each frame's 5-tuple is hashed into a flow table that names the output
//! port and its MAC address, the destination MAC is rewritten to it, and
//! the frame leaves through that port.
//!
//! This is the application behind the Ensō paper's copy comparison
//! (§3.2: "an application that uses Ensō and copies each packet, to a
//! similar DPDK-based application that does not copy packets"): on the
//! packetized interface a switch hands each mbuf to its port's queue; on
//! Ensō a pipe's bytes are consumed in order, so each frame is copied into
//! its port's TX pipe ([`crate::app::PacketApp::outputs`]).
//!
//! Memory layout of the region: `[flow table: entries × 8 B]`, an entry
//! the output port (1 byte), its MAC (6 bytes) and a spare byte.
//!
//! Invariants: every frame of one flow leaves through the same port; a
//! frame's bytes other than its destination MAC are unchanged (the MAC is
//! outside both checksums, so they stay valid).

use nextio_engine::Counters;
use serde::{Deserialize, Serialize};

use crate::app::{AppMemory, PacketApp, Verdict, five_tuple, hash64, udp_layout};

/// The switch's primitives: the preset's `[apps.vswitch]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VswitchCosts {
    /// Parsing the headers, extracting the 5-tuple and queueing the frame
    /// on its port (memory and the hash are costed apart).
    pub packet_cycles: u64,
    /// One hash of a 5-tuple.
    pub hash_cycles: u64,
}

/// The root preset's switch costs (read once per process).
pub fn costs() -> &'static VswitchCosts {
    nextio_presets::cached_root_section!(VswitchCosts, "apps.vswitch")
}

/// Bytes of a flow-table entry.
pub const ENTRY_BYTES: u64 = 8;
/// Seed of the flow hash.
const SEED_FLOW: u64 = 7;
/// Bytes the switch reads of a frame: Ethernet, IPv4 without options and
/// UDP headers.
const HEADER_BYTES: usize = 14 + 20 + 8;

/// A switch configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VswitchConfig {
    /// Output ports (virtual machines' interfaces), 1 to 255.
    pub ports: usize,
    /// Flow-table entries (a power of two).
    pub entries: u64,
}

impl Default for VswitchConfig {
    fn default() -> Self {
        VswitchConfig {
            ports: 4,
            // 8192 entries: Open vSwitch's exact-match cache size.
            entries: 8192,
        }
    }
}

impl VswitchConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=255).contains(&self.ports) {
            return Err(format!("{} switch ports: 1 to 255", self.ports));
        }
        if !self.entries.is_power_of_two() || self.entries > 1 << 24 {
            return Err(format!(
                "{} flow-table entries: a power of two up to 2^24",
                self.entries
            ));
        }
        Ok(())
    }
}

/// Port `p`'s MAC address (locally administered).
pub fn port_mac(p: usize) -> [u8; 6] {
    [0x02, 0x00, 0x00, 0x00, 0x01, p as u8]
}

/// The port a switch of `config` sends a flow with 5-tuple `key` to (the
/// reference the tests hold the simulated switch to).
pub fn reference_port(config: &VswitchConfig, key: &[u8; 13]) -> usize {
    let slot = hash64(key, SEED_FLOW) & (config.entries - 1);
    slot as usize % config.ports
}

/// The switch.
pub struct Vswitch {
    config: VswitchConfig,
    costs: VswitchCosts,
}

impl Vswitch {
    pub fn new(config: VswitchConfig, costs: VswitchCosts) -> Result<Vswitch, String> {
        config.validate()?;
        Ok(Vswitch { config, costs })
    }
}

impl PacketApp for Vswitch {
    fn name(&self) -> &'static str {
        "vswitch"
    }
    fn memory_bytes(&self) -> u64 {
        self.config.entries * ENTRY_BYTES
    }
    fn outputs(&self) -> usize {
        self.config.ports
    }
    fn init(&mut self, mem: &mut dyn AppMemory) {
        for slot in 0..self.config.entries {
            let port = slot as usize % self.config.ports;
            let mut entry = [0u8; ENTRY_BYTES as usize];
            entry[0] = port as u8;
            entry[1..7].copy_from_slice(&port_mac(port));
            mem.store(slot * ENTRY_BYTES, &entry);
        }
    }
    fn reads(&self, _frame_len: usize) -> usize {
        HEADER_BYTES
    }
    fn process(
        &mut self,
        frame: &mut [u8],
        _frame_len: usize,
        mem: &mut dyn AppMemory,
        _counters: &mut Counters,
    ) -> Verdict {
        mem.compute(self.costs.packet_cycles);
        let Some(l) = udp_layout(frame) else {
            return Verdict::Skipped("skipped.not_udp");
        };
        mem.compute(self.costs.hash_cycles);
        let slot = hash64(&five_tuple(frame, l), SEED_FLOW) & (self.config.entries - 1);
        let mut entry = [0u8; ENTRY_BYTES as usize];
        mem.load(slot * ENTRY_BYTES, &mut entry);
        let port = entry[0] as usize;
        if port >= self.config.ports {
            return Verdict::Skipped("skipped.bad_flow_entry");
        }
        frame[..6].copy_from_slice(&entry[1..7]);
        Verdict::Forward(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::VecMemory;
    use nextio_hw::packet::{Macs, build_udp, parse_udp};
    use nextio_hw::trafficgen::synthetic_flow;

    fn switch(config: VswitchConfig) -> (Vswitch, VecMemory) {
        let costs = VswitchCosts {
            packet_cycles: 1,
            hash_cycles: 1,
        };
        let mut s = Vswitch::new(config, costs).unwrap();
        let mut mem = VecMemory::new(s.memory_bytes());
        s.init(&mut mem);
        (s, mem)
    }

    #[test]
    fn every_flow_keeps_its_port_and_only_the_mac_changes() {
        let config = VswitchConfig::default();
        let (mut s, mut mem) = switch(config.clone());
        let mut seen = [0u64; 4];
        for flow in 0..2000u32 {
            for _ in 0..2 {
                let f = build_udp(Macs::default(), synthetic_flow(flow), &[7; 30], 128).unwrap();
                let mut g = f.clone();
                let key = five_tuple(&f, udp_layout(&f).unwrap());
                let v = s.process(&mut g, f.len(), &mut mem, &mut Counters::new());
                let port = reference_port(&config, &key);
                assert_eq!(v, Verdict::Forward(port), "flow {flow}");
                assert_eq!(&g[..6], &port_mac(port));
                assert_eq!(&g[6..], &f[6..], "only the destination MAC changes");
                assert!(parse_udp(&g).is_ok(), "checksums stay valid");
                seen[port] += 1;
            }
        }
        assert!(
            seen.iter().all(|&n| n > 800),
            "flows spread over ports: {seen:?}"
        );
        assert_eq!(mem.faults, 0);
    }

    #[test]
    fn frames_that_are_not_udp_are_passed_on_and_counted() {
        let (mut s, mut mem) = switch(VswitchConfig::default());
        let mut f = build_udp(Macs::default(), synthetic_flow(1), &[0; 18], 64).unwrap();
        f[23] = 6;
        let before = f.clone();
        let v = s.process(&mut f, 64, &mut mem, &mut Counters::new());
        assert_eq!(v, Verdict::Skipped("skipped.not_udp"));
        assert_eq!(f, before);
    }

    #[test]
    fn bad_configurations_are_refused() {
        let costs = VswitchCosts {
            packet_cycles: 1,
            hash_cycles: 1,
        };
        for config in [
            VswitchConfig {
                ports: 0,
                ..VswitchConfig::default()
            },
            VswitchConfig {
                ports: 256,
                ..VswitchConfig::default()
            },
            VswitchConfig {
                entries: 1000,
                ..VswitchConfig::default()
            },
        ] {
            assert!(Vswitch::new(config, costs).is_err());
        }
    }
}
