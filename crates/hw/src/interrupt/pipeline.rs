//! What an interrupt costs the interrupted program, derived from how the
//! pipeline treats in-flight work (§3.5, §4.2 of the xUI paper).
//!
//! The core is the Table 3 baseline (2 GHz, 384-entry ROB, 6-wide fetch,
//! 10-wide squash). A program is an [`InstrMix`]: its steady-state IPC,
//! how full it keeps the ROB, how much elapsed latency its in-flight
//! long-latency operations have accumulated, and how long a dependency
//! chain feeds the stack pointer. Microcode routines are [`UcodeCosts`],
//! calibrated from Table 2 and the Fig. 2 timeline only.
//!
//! Three strategies, each costed by its mechanism:
//! * **flush** squashes the window (`occupancy / squash_width` cycles),
//!   enters microcode in an empty pipeline, runs notification processing,
//!   delivery, the handler and `uiret` exposed, then refills the front end
//!   and re-issues the in-flight long-latency operations it threw away;
//! * **drain** waits for the window to retire (Little's law:
//!   `occupancy / ipc`), loses nothing, then runs the microcode exposed;
//! * **tracked** injects the microcode at fetch: nothing is squashed; the
//!   serialising microcode (UPID access, delivery's stack/MSR writes) is
//!   exposed, ordinary handler instructions only take fetch slots; delivery
//!   waits for a dependency chain that feeds the stack pointer.
//!
//! Per-event costs reported in Fig. 4 (645/231/105 cycles) are *not* inputs:
//! they come out of [`delivery_cost`].

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Core parameters (xUI Table 3): a preset's `[xui.core]`, where each
/// value's source is. The clock is the machine's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreParams {
    pub rob_entries: u32,
    pub fetch_width: u32,
    pub squash_width: u32,
    pub retire_width: u32,
    /// Fetch-to-dispatch depth: cycles before a redirected front end
    /// delivers its first µop.
    pub frontend_depth_cycles: u32,
}

impl Default for CoreParams {
    /// The root preset's core.
    fn default() -> Self {
        nextio_presets::root_section("xui.core")
    }
}

impl CoreParams {
    pub fn validate(&self) -> Result<(), PipelineError> {
        if self.rob_entries == 0
            || self.fetch_width == 0
            || self.squash_width == 0
            || self.retire_width == 0
        {
            return Err(PipelineError::BadCore(
                "the ROB and the fetch, squash and retire widths must be non-zero",
            ));
        }
        Ok(())
    }
}

/// Costs of the user-interrupt microcode and instructions, in cycles: a
/// preset's `[xui.ucode]`, where each value's source (Table 2, Fig. 2) is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UcodeCosts {
    /// Last program instruction → first notification-processing event,
    /// measured on the calibration loop.
    pub flush_window_cycles: u64,
    /// Delivery microcode, step (5) of §3.3.
    pub delivery_cycles: u64,
    /// Notification processing (step 4): read the UPID that a remote core
    /// wrote (a cache miss), move PIR to UIRR, clear ON with a locked RMW.
    pub notification_cycles: u64,
    pub uiret_cycles: u64,
    /// µops of `uiret` (it pops SP/PC/flags and sets UIF).
    pub uiret_uops: u64,
    /// An empty handler (save/restore, bump a counter), executed in an
    /// empty pipeline.
    pub handler_cycles: u64,
    /// µops of that handler, for the fetch slots it takes when tracked.
    pub handler_uops: u64,
    pub senduipi_cycles: u64,
    pub clui_cycles: u64,
    pub stui_cycles: u64,
    /// `testui` reads UIF into CF.
    pub testui_cycles: u64,
    /// senduipi start → interrupt at the receiver (ICR write, APIC message
    /// over the interconnect).
    pub ipi_transit_cycles: u64,
    /// ROB occupancy of the Fig. 2 calibration loop. Used only to split the
    /// measured flush window into squash, refill and microcode entry.
    pub calibration_occupancy: u32,
}

impl Default for UcodeCosts {
    /// The root preset's microcode costs.
    fn default() -> Self {
        nextio_presets::root_section("xui.ucode")
    }
}

impl UcodeCosts {
    /// The part of the flush window that is neither squash nor front-end
    /// refill: microcode entry (interrupt acceptance). Fitted so the
    /// calibration loop reproduces Fig. 2's window.
    pub fn flush_entry_cycles(&self, core: &CoreParams) -> u64 {
        let squash = (self.calibration_occupancy as u64).div_ceil(core.squash_width as u64);
        self.flush_window_cycles
            .saturating_sub(squash + core.frontend_depth_cycles as u64)
    }
}

/// A compute program's pipeline behaviour: a preset's `[programs.*]` or an
/// application's `mix`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrMix {
    /// Set by whoever names the program.
    #[serde(skip)]
    pub name: &'static str,
    /// Retired µops per cycle in steady state.
    pub ipc: f64,
    /// Average µops in flight (≤ ROB size).
    pub rob_occupancy: u32,
    /// Elapsed latency of in-flight long-latency operations (cache misses)
    /// that a squash throws away and must pay again, in cycles.
    pub inflight_miss_cycles: u64,
    /// Length of a dependency chain that produces the stack pointer (the
    /// §6.1 pathological case); 0 for ordinary code.
    pub sp_chain_cycles: u64,
}

/// How interrupt microcode meets in-flight work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Flush,
    Drain,
    Tracked,
}

/// Whether the interrupt needs UPID notification processing (a UIPI) or
/// skips to delivery (KB_Timer, forwarded device interrupt, §4.3/§4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Posted,
    Direct,
}

/// The cost of one interrupt to the program it interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryCost {
    /// Arrival at the core → first handler instruction.
    pub latency_cycles: u64,
    /// Extra cycles the interrupted program takes (lost progress), handler
    /// and `uiret` included.
    pub overhead_cycles: u64,
}

#[derive(Clone, Debug, PartialEq, Error)]
pub enum PipelineError {
    #[error("core: {0}")]
    BadCore(&'static str),
    #[error("instruction mix {0}: IPC must be positive and at most the retire width")]
    BadIpc(&'static str),
    #[error("instruction mix {0}: ROB occupancy exceeds the ROB")]
    BadOccupancy(&'static str),
}

impl InstrMix {
    /// The same mix under another name.
    pub fn named(mut self, name: &'static str) -> InstrMix {
        self.name = name;
        self
    }

    pub fn validate(&self, core: &CoreParams) -> Result<(), PipelineError> {
        if !(self.ipc > 0.0 && self.ipc <= core.retire_width as f64) {
            return Err(PipelineError::BadIpc(self.name));
        }
        if self.rob_occupancy > core.rob_entries {
            return Err(PipelineError::BadOccupancy(self.name));
        }
        Ok(())
    }
}

/// Cost of delivering one user interrupt to `mix` under `strategy`.
pub fn delivery_cost(
    core: &CoreParams,
    ucode: &UcodeCosts,
    mix: &InstrMix,
    strategy: Strategy,
    route: Route,
) -> DeliveryCost {
    let notification = match route {
        Route::Posted => ucode.notification_cycles,
        Route::Direct => 0,
    };
    let depth = core.frontend_depth_cycles as u64;
    // Microcode and handler run in an empty pipeline (flush, drain).
    let exposed_micro =
        notification + ucode.delivery_cycles + ucode.handler_cycles + ucode.uiret_cycles;
    match strategy {
        Strategy::Flush => {
            let squash = (mix.rob_occupancy as u64).div_ceil(core.squash_width as u64);
            let entry = ucode.flush_entry_cycles(core);
            let window = entry + squash + depth;
            DeliveryCost {
                latency_cycles: window + notification + ucode.delivery_cycles,
                // After uiret the front end refills and the squashed misses
                // are issued again.
                overhead_cycles: window + exposed_micro + depth + mix.inflight_miss_cycles,
            }
        }
        Strategy::Drain => {
            let drain = (mix.rob_occupancy as f64 / mix.ipc).ceil() as u64;
            DeliveryCost {
                latency_cycles: drain.max(mix.sp_chain_cycles)
                    + depth
                    + notification
                    + ucode.delivery_cycles,
                // Nothing is lost, but fetch stopped at the interrupt: the
                // pipeline runs dry and refills twice.
                overhead_cycles: exposed_micro + 2 * depth,
            }
        }
        Strategy::Tracked => {
            let fetch = core.fetch_width as u64;
            let slots = (ucode.handler_uops + ucode.uiret_uops).div_ceil(fetch);
            DeliveryCost {
                latency_cycles: depth + notification + mix.sp_chain_cycles + ucode.delivery_cycles,
                overhead_cycles: notification + ucode.delivery_cycles + slots,
            }
        }
    }
}

/// The compute programs of §6.1 (Fig. 4 and Fig. 5) as instruction mixes,
/// with the loop bodies and the dependent-load chain the experiments build
/// from them: a preset's `[programs]`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Programs {
    /// Call/return-bound integer recursion, short window.
    #[serde(deserialize_with = "programs::fib_mix")]
    pub fib: InstrMix,
    /// FP multiply-add chains that fill the ROB.
    #[serde(deserialize_with = "programs::linpack_mix")]
    pub linpack: InstrMix,
    /// Streaming memory ops, the window full of outstanding misses.
    #[serde(deserialize_with = "programs::memops_mix")]
    pub memops: InstrMix,
    /// FP-heavy loop nest.
    #[serde(deserialize_with = "programs::matmul_mix")]
    pub matmul: InstrMix,
    /// Table-lookup byte loop.
    #[serde(deserialize_with = "programs::base64_mix")]
    pub base64: InstrMix,
    pub loops: LoopBodies,
    pub sp_chain: SpChain,
}

/// µops per loop back-edge of the looping programs (where polling checks
/// and safepoints go).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopBodies {
    pub matmul_body_uops: u32,
    pub base64_body_uops: u32,
}

/// §6.1's pathological chain of dependent loads that feeds the stack
/// pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpChain {
    /// Latency of one load of the chain (a DRAM miss).
    pub miss_cycles: u64,
}

impl Default for Programs {
    /// The root preset's programs.
    fn default() -> Self {
        nextio_presets::root_section("programs")
    }
}

impl Programs {
    pub fn validate(&self, core: &CoreParams) -> Result<(), PipelineError> {
        for mix in [
            self.fib,
            self.linpack,
            self.memops,
            self.matmul,
            self.base64,
        ] {
            mix.validate(core)?;
        }
        Ok(())
    }
}

/// The root preset's programs, one by one.
pub mod programs {
    use super::{InstrMix, Programs};
    use serde::{Deserialize, Deserializer};

    macro_rules! program {
        ($get:ident, $de:ident, $name:literal) => {
            pub fn $get() -> InstrMix {
                Programs::default().$get
            }
            pub(super) fn $de<'de, D: Deserializer<'de>>(d: D) -> Result<InstrMix, D::Error> {
                Ok(InstrMix::deserialize(d)?.named($name))
            }
        };
    }
    program!(fib, fib_mix, "fib");
    program!(linpack, linpack_mix, "linpack");
    program!(memops, memops_mix, "memops");
    program!(matmul, matmul_mix, "matmul");
    program!(base64, base64_mix, "base64");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_loop_reproduces_table_2_receiver_cost() {
        let core = CoreParams::default();
        let u = UcodeCosts::default();
        let squash = (u.calibration_occupancy as u64).div_ceil(core.squash_width as u64);
        let window = u.flush_entry_cycles(&core) + squash + core.frontend_depth_cycles as u64;
        assert_eq!(window, 424);
        assert_eq!(
            window + u.notification_cycles + u.delivery_cycles + u.handler_cycles + u.uiret_cycles,
            720
        );
    }

    #[test]
    fn tracking_loses_no_work_and_direct_routes_skip_the_upid() {
        let core = CoreParams::default();
        let u = UcodeCosts::default();
        for mix in [programs::fib(), programs::linpack(), programs::memops()] {
            let f = delivery_cost(&core, &u, &mix, Strategy::Flush, Route::Posted);
            let t = delivery_cost(&core, &u, &mix, Strategy::Tracked, Route::Posted);
            let k = delivery_cost(&core, &u, &mix, Strategy::Tracked, Route::Direct);
            let d = delivery_cost(&core, &u, &mix, Strategy::Drain, Route::Posted);
            assert!(t.overhead_cycles < f.overhead_cycles);
            assert!(k.overhead_cycles < t.overhead_cycles);
            assert!(
                d.overhead_cycles < f.overhead_cycles,
                "drain wastes nothing"
            );
            assert!(
                d.latency_cycles > t.latency_cycles,
                "drain waits for the window"
            );
        }
    }

    #[test]
    fn a_chain_into_the_stack_pointer_delays_tracked_delivery() {
        let core = CoreParams::default();
        let u = UcodeCosts::default();
        let mut mix = programs::fib();
        let base = delivery_cost(&core, &u, &mix, Strategy::Tracked, Route::Direct);
        mix.sp_chain_cycles = 50 * 130; // 50 dependent misses (§6.1)
        let slow = delivery_cost(&core, &u, &mix, Strategy::Tracked, Route::Direct);
        assert_eq!(slow.latency_cycles - base.latency_cycles, 6500);
        let flush = delivery_cost(&core, &u, &mix, Strategy::Flush, Route::Direct);
        assert!(flush.latency_cycles * 5 < slow.latency_cycles);
    }
}
