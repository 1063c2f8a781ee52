//! The twelve steps that turn a packet into a function invocation
//! (Lauberhorn §2), and a meter that software charges the core time of
//! each step to, so an experiment can report where a small RPC's cycles
//! go on each system. Only time a core spends working is charged; waiting
//! for a request to arrive belongs to no step.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Duration, Time};

/// One of the §2 steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    ReadPacket = 0,
    ProtocolProcessing,
    Demultiplex,
    Notify,
    GeneralProtocol,
    IdentifyProcess,
    FindCore,
    Schedule,
    ContextSwitch,
    Unmarshal,
    FindFunction,
    Jump,
}

impl Step {
    pub const ALL: [Step; 12] = [
        Step::ReadPacket,
        Step::ProtocolProcessing,
        Step::Demultiplex,
        Step::Notify,
        Step::GeneralProtocol,
        Step::IdentifyProcess,
        Step::FindCore,
        Step::Schedule,
        Step::ContextSwitch,
        Step::Unmarshal,
        Step::FindFunction,
        Step::Jump,
    ];
    /// The step's wording in §2.
    pub fn name(self) -> &'static str {
        match self {
            Step::ReadPacket => "(1) read the packet",
            Step::ProtocolProcessing => "(2) protocol processing",
            Step::Demultiplex => "(3) demultiplex to a queue",
            Step::Notify => "(4) notify a core",
            Step::GeneralProtocol => "(5) general protocol processing",
            Step::IdentifyProcess => "(6) identify the process",
            Step::FindCore => "(7) find a core",
            Step::Schedule => "(8) schedule the process",
            Step::ContextSwitch => "(9) context switch",
            Step::Unmarshal => "(10) unmarshal arguments",
            Step::FindFunction => "(11) find the function",
            Step::Jump => "(12) jump to it",
        }
    }
}

#[derive(Default)]
struct Totals {
    ps: [u64; 12],
    rpcs: u64,
}

/// Core time per step, summed over RPCs. Cheap to clone; clones share.
#[derive(Clone, Default)]
pub struct StepMeter(Rc<RefCell<Totals>>);

impl StepMeter {
    pub fn new() -> StepMeter {
        StepMeter::default()
    }
    /// Charge the core time from `from` to `to` to `step`.
    pub fn charge(&self, step: Step, from: Time, to: Time) {
        self.0.borrow_mut().ps[step as usize] += (to - from).ps();
    }
    /// Charge a duration to `step`.
    pub fn add(&self, step: Step, d: Duration) {
        self.0.borrow_mut().ps[step as usize] += d.ps();
    }
    /// One more RPC served.
    pub fn rpc_done(&self) {
        self.0.borrow_mut().rpcs += 1;
    }
    pub fn rpcs(&self) -> u64 {
        self.0.borrow().rpcs
    }
    /// Mean core time of `step` per RPC.
    pub fn mean(&self, step: Step) -> Duration {
        let t = self.0.borrow();
        Duration(t.ps[step as usize] / t.rpcs.max(1))
    }
    /// Zero everything (after a warm-up).
    pub fn reset(&self) {
        *self.0.borrow_mut() = Totals::default();
    }
}
