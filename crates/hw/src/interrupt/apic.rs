//! The local APIC of one core, with the UIPI and xUI extensions: the UINV
//! notification vector (§3.2), interrupt forwarding's `forwarding_enabled`
//! and `forwarded_active` 256-bit registers (§4.5), and the per-core
//! KB_Timer (§4.3).
//!
//! The APIC classifies every arriving vector; what happens next (notification
//! processing against the current thread's UPID, a forwarded fast-path
//! delivery, or a conventional interrupt to the kernel) is the caller's,
//! because it needs thread state the APIC does not hold.
//!
//! Invariants: a forwarded vector whose bit is set in `forwarded_active`
//! never reaches the kernel; one whose bit is clear always does (slow path);
//! the KB_Timer fires at most once per deadline and, in periodic mode,
//! re-arms at `deadline + period` so periods do not drift.

/// A 256-bit vector register, one bit per APIC vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VectorSet([u64; 4]);

impl VectorSet {
    pub fn set(&mut self, v: u8, on: bool) {
        let (w, b) = (v as usize / 64, v as u32 % 64);
        if on {
            self.0[w] |= 1 << b
        } else {
            self.0[w] &= !(1 << b)
        }
    }
    pub fn get(&self, v: u8) -> bool {
        self.0[v as usize / 64] >> (v as u32 % 64) & 1 == 1
    }
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
}

/// KB_Timer mode bit of `set_timer(cycles, mode)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// `cycles` is an absolute deadline (TSC value).
    OneShot,
    /// `cycles` is a period.
    Periodic,
}

/// The state the OS saves and restores on a context switch (§4.3: the
/// deadline read from `kb_timer_state_MSR`, plus vector, period and mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KbTimerState {
    pub enabled: bool,
    pub vector: u8,
    /// Next expiry, in core cycles (TSC); `None`: disarmed.
    pub deadline_cycles: Option<u64>,
    /// Period in cycles when periodic.
    pub period_cycles: Option<u64>,
}

/// One core's KB_Timer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KbTimer {
    state: KbTimerState,
}

impl KbTimer {
    /// `kb_config_MSR` write by the kernel (`enable_kb_timer`).
    pub fn configure(&mut self, enabled: bool, vector: u8) {
        self.state.enabled = enabled;
        self.state.vector = vector;
        if !enabled {
            self.state.deadline_cycles = None;
            self.state.period_cycles = None;
        }
    }
    /// The `set_timer(cycles, mode)` instruction at TSC `now_cycles`.
    /// Returns false (and does nothing) if the kernel has not enabled it.
    pub fn set_timer(&mut self, now_cycles: u64, cycles: u64, mode: TimerMode) -> bool {
        if !self.state.enabled {
            return false;
        }
        match mode {
            TimerMode::OneShot => {
                self.state.deadline_cycles = Some(cycles);
                self.state.period_cycles = None;
            }
            TimerMode::Periodic => {
                let p = cycles.max(1);
                self.state.deadline_cycles = Some(now_cycles.saturating_add(p));
                self.state.period_cycles = Some(p);
            }
        }
        true
    }
    /// The `clear_timer()` instruction.
    pub fn clear_timer(&mut self) {
        self.state.deadline_cycles = None;
        self.state.period_cycles = None;
    }
    pub fn deadline(&self) -> Option<u64> {
        if self.state.enabled {
            self.state.deadline_cycles
        } else {
            None
        }
    }
    /// Called when the TSC reaches the deadline: returns the vector to
    /// deliver and re-arms (periodic) or disarms (one-shot).
    pub fn expire(&mut self, now_cycles: u64) -> Option<u8> {
        let d = self.deadline()?;
        if now_cycles < d {
            return None;
        }
        self.state.deadline_cycles = self.state.period_cycles.map(|p| {
            // Next multiple after now, anchored at the old deadline.
            let missed = (now_cycles - d) / p;
            d + (missed + 1) * p
        });
        Some(self.state.vector)
    }
    /// Context-switch save (`kb_timer_state_MSR` read) and disarm.
    pub fn save(&mut self) -> KbTimerState {
        let s = self.state;
        self.state = KbTimerState::default();
        s
    }
    /// Context-switch restore.
    pub fn restore(&mut self, s: KbTimerState) {
        self.state = s;
    }
}

/// How the APIC classified an arriving vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Vector equals UINV: run UIPI notification processing on the current
    /// thread's UPID.
    UipiNotification,
    /// Forwarded and the owner is running: set UIRR bit `uv` and deliver
    /// directly (fast path, the UPID is never touched).
    ForwardedFast { uv: u8 },
    /// Forwarded but the owner is not running: conventional interrupt; the
    /// kernel stores `uv` in the owner's DUPID (slow path).
    ForwardedSlow { vector: u8 },
    /// Anything else: an ordinary kernel interrupt.
    Kernel { vector: u8 },
}

/// One core's local APIC.
#[derive(Clone, Debug)]
pub struct LocalApic {
    pub apic_id: u32,
    /// IA32_UINTR_MISC.UINV: the vector that means "a UIPI is pending".
    pub uinv: u8,
    pub forwarding_enabled: VectorSet,
    pub forwarded_active: VectorSet,
    /// Device vector → user vector, programmed with forwarding_enabled.
    forward_map: [u8; 256],
    pub kb_timer: KbTimer,
}

impl LocalApic {
    /// Linux's UINTR notification vector.
    pub const DEFAULT_UINV: u8 = 0xec;

    pub fn new(apic_id: u32) -> LocalApic {
        LocalApic {
            apic_id,
            uinv: Self::DEFAULT_UINV,
            forwarding_enabled: VectorSet::default(),
            forwarded_active: VectorSet::default(),
            forward_map: [0; 256],
            kb_timer: KbTimer::default(),
        }
    }
    /// Kernel: forward device `vector` on this core to user vector `uv`.
    pub fn enable_forwarding(&mut self, vector: u8, uv: u8) {
        self.forwarding_enabled.set(vector, true);
        self.forward_map[vector as usize] = uv;
    }
    pub fn forwarded_uv(&self, vector: u8) -> u8 {
        self.forward_map[vector as usize]
    }
    /// Classify an interrupt message with `vector`.
    pub fn arrive(&self, vector: u8) -> Arrival {
        if vector == self.uinv {
            Arrival::UipiNotification
        } else if self.forwarding_enabled.get(vector) {
            if self.forwarded_active.get(vector) {
                Arrival::ForwardedFast {
                    uv: self.forward_map[vector as usize],
                }
            } else {
                Arrival::ForwardedSlow { vector }
            }
        } else {
            Arrival::Kernel { vector }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_timer_rearms_without_drift() {
        let mut t = KbTimer::default();
        assert!(!t.set_timer(0, 100, TimerMode::Periodic), "disabled");
        t.configure(true, 3);
        assert!(t.set_timer(0, 100, TimerMode::Periodic));
        assert_eq!(t.expire(99), None);
        assert_eq!(t.expire(105), Some(3));
        assert_eq!(t.deadline(), Some(200));
        assert_eq!(t.expire(450), Some(3));
        assert_eq!(t.deadline(), Some(500));
    }

    #[test]
    fn one_shot_fires_once() {
        let mut t = KbTimer::default();
        t.configure(true, 1);
        t.set_timer(0, 50, TimerMode::OneShot);
        assert_eq!(t.expire(50), Some(1));
        assert_eq!(t.expire(60), None);
    }

    #[test]
    fn forwarded_vectors_split_fast_and_slow() {
        let mut a = LocalApic::new(0);
        a.enable_forwarding(40, 2);
        assert_eq!(a.arrive(40), Arrival::ForwardedSlow { vector: 40 });
        a.forwarded_active.set(40, true);
        assert_eq!(a.arrive(40), Arrival::ForwardedFast { uv: 2 });
        assert_eq!(a.arrive(41), Arrival::Kernel { vector: 41 });
        assert_eq!(a.arrive(LocalApic::DEFAULT_UINV), Arrival::UipiNotification);
    }
}
