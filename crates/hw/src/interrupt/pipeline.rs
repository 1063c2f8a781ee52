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

use thiserror::Error;

/// Core parameters (Table 3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CoreParams {
    pub freq_mhz: u64,
    pub rob_entries: u32,
    pub fetch_width: u32,
    pub squash_width: u32,
    pub retire_width: u32,
    /// Fetch-to-dispatch depth: cycles before a redirected front end
    /// delivers its first µop. Not in Table 3; a Golden Cove-class front
    /// end (the paper's Sapphire Rapids) is about 20 stages — assumption.
    pub frontend_depth_cycles: u32,
}

impl Default for CoreParams {
    fn default() -> Self {
        CoreParams {
            freq_mhz: 2000, // Table 3
            rob_entries: 384,
            fetch_width: 6,
            squash_width: 10,
            retire_width: 10,
            frontend_depth_cycles: 20,
        }
    }
}

/// Costs of the user-interrupt microcode and instructions, in cycles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UcodeCosts {
    /// Fig. 2: last program instruction → first notification-processing
    /// event, measured on the calibration loop (≈424 cycles).
    pub flush_window_cycles: u64,
    /// Fig. 2 / §4.2: delivery microcode, step (5) of §3.3 (105 cycles).
    pub delivery_cycles: u64,
    /// Fig. 2: notification processing (step 4): read the UPID that a
    /// remote core wrote (a cache miss), move PIR to UIRR, clear ON with a
    /// locked RMW. Notification + delivery ≥ 262 cycles ⇒ 262 − 105.
    pub notification_cycles: u64,
    /// Fig. 2: `uiret` ≈ 10 cycles.
    pub uiret_cycles: u64,
    /// µops of `uiret` (it pops SP/PC/flags and sets UIF).
    pub uiret_uops: u64,
    /// An empty handler (save/restore, bump a counter), executed in an
    /// empty pipeline: Table 2 receiver cost 720 − (424 + 262 + 10).
    pub handler_cycles: u64,
    /// µops of that handler, for the fetch slots it takes when tracked.
    pub handler_uops: u64,
    /// Table 2: `senduipi` 383 cycles (279 of them serialising stalls).
    pub senduipi_cycles: u64,
    /// Table 2: `clui` 2, `stui` 32 cycles.
    pub clui_cycles: u64,
    pub stui_cycles: u64,
    /// `testui` reads UIF into CF: a register read (assumed 1 cycle).
    pub testui_cycles: u64,
    /// Fig. 2: senduipi start → interrupt at the receiver ≈ 380 cycles
    /// (ICR write, APIC message over the interconnect).
    pub ipi_transit_cycles: u64,
    /// ROB occupancy of the Fig. 2 calibration loop (an rdtsc-and-store
    /// loop; rdtsc limits it to a short window). Used only to split the
    /// measured flush window into squash, refill and microcode entry.
    pub calibration_occupancy: u32,
}

impl Default for UcodeCosts {
    fn default() -> Self {
        UcodeCosts {
            flush_window_cycles: 424,
            delivery_cycles: 105,
            notification_cycles: 262 - 105,
            uiret_cycles: 10,
            uiret_uops: 12,
            handler_cycles: 720 - (424 + 262 + 10),
            handler_uops: 12,
            senduipi_cycles: 383,
            clui_cycles: 2,
            stui_cycles: 32,
            testui_cycles: 1,
            ipi_transit_cycles: 380,
            calibration_occupancy: 64,
        }
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

/// A compute program's pipeline behaviour.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstrMix {
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
    #[error("instruction mix {0}: IPC must be positive and at most the retire width")]
    BadIpc(&'static str),
    #[error("instruction mix {0}: ROB occupancy exceeds the ROB")]
    BadOccupancy(&'static str),
}

impl InstrMix {
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

/// The compute programs of §6.1 (Fig. 4 and Fig. 5), as instruction mixes.
/// IPC and occupancy are characteristic of each kernel class on a
/// Golden Cove-class core (assumed; the paper gives none):
/// * fib — call/return-bound integer recursion, short window;
/// * linpack — FP multiply-add chains that fill the ROB;
/// * memops — streaming memory ops, the window full of outstanding misses;
/// * matmul — FP-heavy loop nest; base64 — table-lookup byte loop.
pub mod programs {
    use super::InstrMix;
    pub const FIB: InstrMix = InstrMix {
        name: "fib",
        ipc: 2.2,
        rob_occupancy: 120,
        inflight_miss_cycles: 0,
        sp_chain_cycles: 0,
    };
    pub const LINPACK: InstrMix = InstrMix {
        name: "linpack",
        ipc: 2.6,
        rob_occupancy: 300,
        inflight_miss_cycles: 10,
        sp_chain_cycles: 0,
    };
    pub const MEMOPS: InstrMix = InstrMix {
        name: "memops",
        ipc: 1.2,
        rob_occupancy: 360,
        inflight_miss_cycles: 80,
        sp_chain_cycles: 0,
    };
    pub const MATMUL: InstrMix = InstrMix {
        name: "matmul",
        ipc: 2.8,
        rob_occupancy: 280,
        inflight_miss_cycles: 10,
        sp_chain_cycles: 0,
    };
    pub const BASE64: InstrMix = InstrMix {
        name: "base64",
        ipc: 3.0,
        rob_occupancy: 200,
        inflight_miss_cycles: 0,
        sp_chain_cycles: 0,
    };
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
        for mix in [programs::FIB, programs::LINPACK, programs::MEMOPS] {
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
        let mut mix = programs::FIB;
        let base = delivery_cost(&core, &u, &mix, Strategy::Tracked, Route::Direct);
        mix.sp_chain_cycles = 50 * 130; // 50 dependent misses (§6.1)
        let slow = delivery_cost(&core, &u, &mix, Strategy::Tracked, Route::Direct);
        assert_eq!(slow.latency_cycles - base.latency_cycles, 6500);
        let flush = delivery_cost(&core, &u, &mix, Strategy::Flush, Route::Direct);
        assert!(flush.latency_cycles * 5 < slow.latency_cycles);
    }
}
