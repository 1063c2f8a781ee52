//! What a coherent link costs: the line size it moves, the one-way latency
//! of each message between the chip and a device's home agent, the link's
//! bandwidth, and the limits on the requesting side (outstanding misses per
//! core, how long a core waits for a line before its memory system gives
//! up with a bus error). Presets for ECI on Enzian and for CXL, each value
//! beside its source or marked as an assumption.

use serde::Serialize;

/// One coherent link's parameters.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CoherentConfig {
    /// The protocol's name, for results and errors.
    pub name: &'static str,
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
    /// ECI, the Enzian Coherent Interconnect between the ThunderX-1 and
    /// the FPGA (Cock et al., ASPLOS '22).
    ///
    /// * 128-byte lines: the ThunderX-1's line, which ECI moves whole.
    /// * 404 ns each way: half the 808 ns median round trip of a core's
    ///   read answered by the FPGA over ECI (202 cycles of the FPGA's
    ///   250 MHz clock, 50 back-to-back reads; enzian-pio-nic repository,
    ///   `data/eci/eci_lat.csv`, measured by `sw/apps/rt-eci-test`). The
    ///   split into two equal halves is an assumption; the round trip
    ///   includes the chip's own lookups and the FPGA's handling.
    /// * 21 GiB/s: the link bandwidth the Enzian documentation states
    ///   (Enzian wiki, "Quick Start").
    /// * 16 header bytes per message (assumption: one ECI control word
    ///   plus framing).
    /// * 2 load misses in flight per core: the repository's loopback read
    ///   of a message grows by 0.51 µs per 128-byte line (4.84 µs at
    ///   1 KiB, 16.4 µs at 4 KiB; medians of `data/eci/loopback.csv`)
    ///   against the 0.808 µs round trip, ≈1.6 lines in flight (fitted to
    ///   that slope; the ThunderX-1's miss handling is not public).
    /// * 8 store misses in flight: its transmit write grows by 0.09 µs per
    ///   line (2.22 µs at 1 KiB, 3.60 µs at 4 KiB, same data), ≈9 in
    ///   flight (fitted likewise).
    /// * 50 ms load timeout (assumption: Lauberhorn §5 must answer a held
    ///   load with TRYAGAIN before the chip's timeout and picks 15 ms; the
    ///   repository's runtime blocks loads for 20 ms, so the timeout is
    ///   longer than both).
    pub fn eci() -> CoherentConfig {
        CoherentConfig {
            name: "ECI",
            line_bytes: 128,
            to_home_ps: 404_000,
            to_chip_ps: 404_000,
            bytes_per_s: 21 << 30,
            header_bytes: 16,
            core_outstanding: 2,
            store_outstanding: 8,
            load_timeout_ps: 50_000_000_000,
            window_base: 1 << 39,
        }
    }

    /// CXL 3.0 (CXL.mem with back-invalidation) on an x86 server.
    ///
    /// * 64-byte lines (CXL 3.0 §3.3: 64 B flits carry 64 B lines).
    /// * 125 ns each way: a 250 ns load-to-use round trip, ≈2.3× a local
    ///   DRAM access, inside the 2–5× that measurements of CXL memory
    ///   expanders report ("Exploring and Evaluating Real-world CXL: Use
    ///   Cases and System Adoption", arXiv 2405.14209); the even split is
    ///   an assumption.
    /// * 64 GB/s: PCIe 5.0 x16, CXL's physical layer, per direction.
    /// * 16 header bytes (one 16 B slot of a 68 B flit); 10 outstanding
    ///   load and 16 store misses per core (assumption: an Ice Lake-SP
    ///   core's 10 L1d fill buffers, Intel Optimization Reference Manual,
    ///   and a store buffer that overlaps more); the same 50 ms timeout.
    pub fn cxl() -> CoherentConfig {
        CoherentConfig {
            name: "CXL",
            line_bytes: 64,
            to_home_ps: 125_000,
            to_chip_ps: 125_000,
            bytes_per_s: 64_000_000_000,
            header_bytes: 16,
            core_outstanding: 10,
            store_outstanding: 16,
            load_timeout_ps: 50_000_000_000,
            window_base: 1 << 39,
        }
    }

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
