//! What a coherent link costs: the line size it moves, the one-way latency
//! of each message between the chip and a device's home agent, the link's
//! bandwidth, and the limits on the requesting side (outstanding misses per
//! core, how long a core waits for a line before its memory system gives
//! up with a bus error). A host preset's `[machine.coherent]`, where each
//! value's source is: ECI on `enzian`, CXL on `cxl-server`, none on the
//! others (which carry CXL's values, so setting the protocol alone gives a
//! CXL link at that host).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which coherent link a host has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CoherentProtocol {
    /// No coherent link: devices attach over PCIe only.
    None,
    /// The Enzian Coherent Interconnect (Cock et al., ASPLOS '22).
    Eci,
    /// CXL 3.0: CXL.mem with back-invalidation.
    Cxl,
}

impl fmt::Display for CoherentProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CoherentProtocol::None => "no coherent link",
            CoherentProtocol::Eci => "ECI",
            CoherentProtocol::Cxl => "CXL",
        })
    }
}

/// One coherent link's parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoherentConfig {
    /// The protocol, for results and errors; `none`: the host has no link.
    pub protocol: CoherentProtocol,
    /// Bytes per coherent line; equal to the host's cache line.
    pub line_bytes: u64,
    /// A message from the chip (a core's miss, an acknowledgement, a
    /// write-back) to the home agent, one way, without serialisation.
    pub to_home_ps: u64,
    /// A message from the home agent to the chip (data, an invalidation).
    pub to_chip_ps: u64,
    /// Bytes per second the link carries in each direction: messages with
    /// a line of data queue behind each other for it.
    pub bytes_per_s: u64,
    /// Header bytes of every message (a request, a snoop, an ack); data
    /// messages carry a line on top.
    pub header_bytes: u64,
    /// Load misses one core may have outstanding to the link at once.
    pub core_outstanding: usize,
    /// Store misses (reads for ownership) one core may have outstanding:
    /// stores retire into the store buffer, so more of them overlap.
    pub store_outstanding: usize,
    /// How long a core's load may wait for its line before the memory
    /// system raises a bus error.
    pub load_timeout_ps: u64,
    /// Where the first device-homed window is placed: above any host's
    /// memory and below the PCIe MMIO window.
    pub window_base: u64,
}

impl CoherentConfig {
    /// A description of what is wrong, if anything.
    pub fn validate(&self) -> Result<(), String> {
        if !self.line_bytes.is_power_of_two() || !(32..=256).contains(&self.line_bytes) {
            return Err(format!(
                "{} B lines: a line is a power of two of 32 to 256 bytes",
                self.line_bytes
            ));
        }
        if self.bytes_per_s == 0
            || self.core_outstanding == 0
            || self.store_outstanding == 0
            || self.load_timeout_ps == 0
        {
            return Err(
                "bandwidth, outstanding misses and the load timeout must be positive".into(),
            );
        }
        if !self.window_base.is_multiple_of(1 << 21) {
            return Err("the window base must be 2 MiB aligned".into());
        }
        Ok(())
    }

    /// Time a message of `payload` bytes occupies one direction of the link.
    pub fn serialise_ps(&self, payload: u64) -> u64 {
        let bytes = (self.header_bytes + payload) as u128;
        (bytes * 1_000_000_000_000 / self.bytes_per_s as u128) as u64
    }
}
