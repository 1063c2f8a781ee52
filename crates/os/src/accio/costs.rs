//! The kernel's Accio paths that the hardware does not time: the
//! instructions of the accelerate call, the wait call, the miss handler
//! and the interrupt entries, in cycles of the core they run on.
//!
//! Everything the table, the NIC and the fabric do is timed by them
//! (every kernel access to the table is a real MMIO load or store); these
//! are the instructions around those accesses, the root preset's
//! `[os.accio]`, each an assumption stated there; the system calls' entry and exit are the kernel's own
//! ([`crate::net::LinuxNetCosts`] of the host's stack).

use serde::{Deserialize, Serialize};

/// Cycles of the kernel's Accio paths: the root preset's `[os.accio]`,
/// where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccioOsCosts {
    /// The accelerate `ioctl` beyond its MMIO and mappings: checks,
    /// allocation, bookkeeping. Set-up, never on a measured path.
    pub accelerate_cycles: u64,
    /// The wait call's own work between entry and the block: find the
    /// connection, check its mode and the fallback queue.
    pub wait_cycles: u64,
    /// The miss trap's entry, the handler's bookkeeping (victim choice,
    /// shadow update) and return, besides its table accesses: a fast
    /// exception path like a software-managed TLB refill.
    pub refill_trap_cycles: u64,
    /// Issuing one uncached store to the table or the NIC on a server
    /// core ([`AccioOsCosts::scaled`] has the Rocket core's).
    pub mmio_store_cycles: u64,
    /// Interrupt entry and exit around the table's handlers: the OS
    /// model's [`crate::OsCosts::irq_cycles`].
    #[serde(skip)]
    pub irq_cycles: u64,
    /// Reverting or resuming one connection, besides its MMIO.
    pub mode_change_cycles: u64,
}

impl Default for AccioOsCosts {
    /// The root preset's `[os.accio]`, with the OS model's interrupt
    /// entry and exit (read here, not while the section is checked, which
    /// happens before the run's configuration is fixed).
    fn default() -> Self {
        AccioOsCosts {
            irq_cycles: crate::OsCosts::default().irq_cycles,
            ..nextio_presets::root_section("os.accio")
        }
    }
}

impl AccioOsCosts {
    /// The prototype's kernel: instruction costs `factor` times the
    /// server's (see [`crate::net::costs::rocket_cycle_factor`]); an
    /// uncached store issues in two cycles (assumption: a Rocket core's
    /// store unit hands the beat to the bus).
    pub fn scaled(self, factor: f64) -> AccioOsCosts {
        let s = |c: u64| (c as f64 * factor).round() as u64;
        AccioOsCosts {
            accelerate_cycles: s(self.accelerate_cycles),
            wait_cycles: s(self.wait_cycles),
            refill_trap_cycles: s(self.refill_trap_cycles),
            mmio_store_cycles: 2,
            irq_cycles: s(self.irq_cycles),
            mode_change_cycles: s(self.mode_change_cycles),
        }
    }
}
