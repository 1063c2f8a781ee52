//! Primitive costs of kernel paths, in cycles of the 2 GHz Table 3 core: a
//! preset's `[os.costs]`, where each value's source is.
//!
//! Only the signal cost has a number in the xUI paper (§2: ≈2.4 µs per
//! signal at 2 GHz without KPTI, ≈1.4 µs of it OS transitions, the rest
//! pollution of branch predictors and caches by kernel code). The others are
//! typical Linux x86-64 path lengths, stated as assumptions; Figures 6 and 9
//! are validation of them.

use serde::{Deserialize, Serialize};

/// Kernel path costs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsCosts {
    /// User→kernel→user round trip of a trivial system call (≈100 ns
    /// without KPTI; assumption).
    pub syscall_cycles: u64,
    /// Kernel interrupt entry + exit around a hardware interrupt (≈250 ns;
    /// assumption).
    pub irq_cycles: u64,
    /// hrtimer expiry handling and re-arming in the interrupt (≈150 ns;
    /// assumption).
    pub hrtimer_cycles: u64,
    /// Switching between two threads in the scheduler, register and
    /// address-space state included (≈0.5 µs; assumption).
    pub context_switch_cycles: u64,
    /// Waking a blocked thread: run-queue insert, IPI-free local wake
    /// (≈100 ns; assumption).
    pub wakeup_cycles: u64,
    /// Signal delivery: the OS transitions of §2 (1.4 µs at 2 GHz) —
    /// frame set-up on the user stack and `sigreturn`.
    pub signal_kernel_cycles: u64,
    /// Signal delivery: branch mispredictions and cache misses from kernel
    /// signal code (§2: 2.4 µs − 1.4 µs).
    pub signal_pollution_cycles: u64,
    /// A user-level context switch between user threads (save and restore
    /// callee-saved registers, switch stacks): ≈50 ns (Caladan-class
    /// runtimes; assumption).
    pub uthread_switch_cycles: u64,
}

impl Default for OsCosts {
    /// The root preset's kernel.
    fn default() -> Self {
        nextio_presets::root_section("os.costs")
    }
}

impl OsCosts {
    /// One signal, delivered and returned from (§2: ≈4800 cycles).
    pub fn signal_cycles(&self) -> u64 {
        self.signal_kernel_cycles + self.signal_pollution_cycles
    }
    /// Core time a `setitimer` tick costs the thread that receives the
    /// SIGALRM: the timer interrupt, the hrtimer, the signal.
    pub fn itimer_tick_cycles(&self) -> u64 {
        self.irq_cycles + self.hrtimer_cycles + self.signal_cycles()
    }
    /// Core time one `nanosleep` period costs a thread that sleeps and is
    /// woken each interval: timer interrupt and hrtimer, wake-up, switch
    /// from idle to the thread, return from the system call, the next
    /// `nanosleep` call, switch back to idle.
    pub fn nanosleep_period_cycles(&self) -> u64 {
        self.irq_cycles
            + self.hrtimer_cycles
            + self.wakeup_cycles
            + 2 * self.context_switch_cycles
            + self.syscall_cycles
    }
}
