//! The root complex as a completer: what host memory costs a device's DMA.
//!
//! A request spends [`RootComplexConfig::latency_ps`] getting from the root
//! port to the LLC's home agent, and a read's completion as long getting
//! back. A read of a line no on-chip cache holds waits for DRAM — the
//! extra latency pcie-bench measured between cold and warm host buffers —
//! and for DRAM bandwidth, shared by every device of the host: a DMA read
//! miss occupies it for its lines, and so do DDIO's write-backs of lines it
//! evicts and every write when DDIO is off.
//!
//! Invariant: DRAM is one serial resource per host; its bookings never
//! overlap and never start before they are requested.

use nextio_engine::{Duration, Rate, Serializer, Time};
use serde::{Deserialize, Serialize};

use crate::cache::DeviceCost;

/// Timing of the root complex and the memory behind it: a preset's
/// `[machine.fabric.root_complex]`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootComplexConfig {
    /// One pass between a root port and the LLC (or from a core to a root
    /// port, for MMIO).
    pub latency_ps: u64,
    /// Extra latency of a DMA read served by DRAM rather than the LLC.
    pub dram_extra_ps: u64,
    /// DRAM bandwidth available to device traffic, bytes per second.
    pub dram_bytes_per_s: u64,
}

impl Default for RootComplexConfig {
    /// The root preset's root complex.
    fn default() -> Self {
        nextio_presets::root_section("machine.fabric.root_complex")
    }
}

impl RootComplexConfig {
    pub fn latency(&self) -> Duration {
        Duration::from_ps(self.latency_ps)
    }
    pub fn validate(&self) -> Result<(), String> {
        if self.dram_bytes_per_s == 0 {
            return Err("DRAM bandwidth must be positive".into());
        }
        Ok(())
    }
}

/// What the memory side has done for devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemorySideStats {
    pub dram_read_bytes: u64,
    pub dram_write_bytes: u64,
    /// Time DMA requests waited for DRAM bandwidth, in ps.
    pub dram_queued_ps: u64,
}

/// The root complex's timing state.
#[derive(Clone, Debug)]
pub(crate) struct RootComplex {
    pub cfg: RootComplexConfig,
    dram: Serializer,
    dram_free_at: Time,
    /// The host's cache-line size: DRAM moves whole lines.
    line_bytes: u64,
    pub stats: MemorySideStats,
}

impl RootComplex {
    pub fn new(cfg: RootComplexConfig, line_bytes: u64) -> Result<RootComplex, String> {
        cfg.validate()?;
        let rate = Rate::from_bits_per_s(cfg.dram_bytes_per_s.saturating_mul(8))
            .ok_or_else(|| "DRAM bandwidth out of range".to_string())?;
        Ok(RootComplex {
            cfg,
            dram: Serializer::new(rate, 1, 1),
            dram_free_at: Time::ZERO,
            line_bytes,
            stats: MemorySideStats::default(),
        })
    }

    /// Book `lines` of DRAM traffic from `at`; returns when it is done.
    fn dram(&mut self, at: Time, lines: u32) -> Time {
        if lines == 0 {
            return at;
        }
        if at >= self.dram_free_at {
            self.dram.reset();
        }
        let start = at.max(self.dram_free_at);
        self.stats.dram_queued_ps += (start - at).ps();
        self.dram_free_at = start + self.dram.next(lines as u64 * self.line_bytes);
        self.dram_free_at
    }

    /// A read request reached the root port at `arrive`; `cost` says where
    /// its lines are. Returns when its completion data is back at the port.
    pub fn read(&mut self, arrive: Time, cost: DeviceCost) -> Time {
        let lat = self.cfg.latency();
        let at_memory = arrive + lat;
        let data = if cost.llc_misses > 0 {
            self.stats.dram_read_bytes += cost.llc_misses as u64 * self.line_bytes;
            self.dram(at_memory, cost.llc_misses) + Duration::from_ps(self.cfg.dram_extra_ps)
        } else {
            at_memory
        };
        data + lat
    }

    /// A posted write reached the root port at `arrive`, `dram_lines` of it
    /// bound for DRAM (DDIO off). Returns when it is in memory.
    pub fn write(&mut self, arrive: Time, dram_lines: u32) -> Time {
        let at_memory = arrive + self.cfg.latency();
        self.stats.dram_write_bytes += dram_lines as u64 * self.line_bytes;
        self.dram(at_memory, dram_lines).max(at_memory)
    }

    /// Lines DDIO evicted at `at` are written back in the background.
    pub fn write_back(&mut self, at: Time, lines: u32) {
        self.stats.dram_write_bytes += lines as u64 * self.line_bytes;
        self.dram(at, lines);
    }
}
