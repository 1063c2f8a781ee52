//! The kernel's Accio paths that the hardware does not time: the
//! instructions of the accelerate call, the wait call, the miss handler
//! and the interrupt entries, in cycles of the core they run on.
//!
//! Everything the table, the NIC and the fabric do is timed by them
//! (every kernel access to the table is a real MMIO load or store); these
//! are the instructions around those accesses. They are assumptions,
//! stated as such; the system calls' entry and exit are the kernel's own
//! ([`crate::net::LinuxNetCosts`] of the host's stack).

/// Cycles of the kernel's Accio paths.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AccioOsCosts {
    /// The accelerate `ioctl` beyond its MMIO and mappings: checks,
    /// allocation, bookkeeping. Set-up, never on a measured path.
    /// Assumption: 5000 cycles.
    pub accelerate_cycles: u64,
    /// The wait call's own work between entry and the block: find the
    /// connection, check its mode and the fallback queue. Assumption: 200
    /// cycles, of the order of a `poll` on one descriptor.
    pub wait_cycles: u64,
    /// The miss trap's entry, the handler's bookkeeping (victim choice,
    /// shadow update) and return, besides its table accesses: a fast
    /// exception path like a software-managed TLB refill. Assumption: 300
    /// cycles.
    pub refill_trap_cycles: u64,
    /// Issuing one uncached store to the table or the NIC. Assumption: 30
    /// cycles on an x86 server core (the order of a store fence draining,
    /// as the DPDK driver's doorbell); a Rocket core issues one in about
    /// two cycles (its store unit hands the beat to the bus).
    pub mmio_store_cycles: u64,
    /// Interrupt entry and exit around the table's handlers: the OS
    /// model's [`crate::OsCosts::irq_cycles`] by default.
    pub irq_cycles: u64,
    /// Reverting or resuming one connection, besides its MMIO.
    /// Assumption: 500 cycles.
    pub mode_change_cycles: u64,
}

impl Default for AccioOsCosts {
    fn default() -> Self {
        AccioOsCosts {
            accelerate_cycles: 5000,
            wait_cycles: 200,
            refill_trap_cycles: 300,
            mmio_store_cycles: 30,
            irq_cycles: crate::OsCosts::default().irq_cycles,
            mode_change_cycles: 500,
        }
    }
}

impl AccioOsCosts {
    /// The prototype's kernel: instruction costs `factor` times the
    /// server's (see [`crate::net::costs::rocket_cycle_factor`]); an
    /// uncached store issues in two cycles.
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
