//! The state of the I/O Connection Table: one table of slots per core,
//! each slot a row of 32 eight-byte beats (its layout is
//! [`super::regs::row`]), the round-robin hardware ready queue, the
//! register that says what the core runs, interrupt masks, and the
//! control event queue shared by all cores.
//!
//! The rules every access follows are here, in one place, so that the
//! table's device model and the core-side protection check cannot
//! disagree: who may touch which field ([`IctState::check_cpu`]), when a
//! pointer update wakes a row ([`CoreTable::wake`]) and when that wake-up
//! interrupts the core (§4: only if the row asks for interrupts and the
//! core is not running an accelerated thread of equal or higher
//! priority).
//!
//! Invariants: a connection has at most one valid slot per core; a slot
//! is ready only while valid; the ready queue serves ready slots in
//! round-robin order of slot index, each pop clearing the ready bit.

use std::collections::VecDeque;

use nextio_engine::Counters;

use super::regs::{self, CONN_VALID, row, state};
use crate::fabric::GuardFault;

/// Beats in a row.
pub const ROW_BEATS: usize = (regs::ROW_BYTES / regs::BEAT_BYTES) as usize;

/// A row: its beats.
pub type Row = [u64; ROW_BEATS];

/// A field of a row, by offset.
pub fn get(r: &Row, field: u64) -> u64 {
    r[(field / regs::BEAT_BYTES) as usize % ROW_BEATS]
}
pub fn set(r: &mut Row, field: u64, v: u64) {
    r[(field / regs::BEAT_BYTES) as usize % ROW_BEATS] = v;
}
/// The row's connection id, if valid.
pub fn conn_of(r: &Row) -> Option<u32> {
    let c = get(r, row::CONN);
    (c & CONN_VALID != 0).then_some(c as u32)
}
/// The row's owning address space.
pub fn asid_of(r: &Row) -> u16 {
    get(r, row::OWNER) as u16
}
/// The row's owner thread id.
pub fn tid_of(r: &Row) -> u32 {
    (get(r, row::OWNER) >> 32) as u32
}
/// The row's priority.
pub fn priority_of(r: &Row) -> u8 {
    (get(r, row::OWNER) >> 24) as u8
}

/// One core's table.
#[derive(Clone, Debug)]
pub struct CoreTable {
    pub slots: Vec<Row>,
    /// `CURRENT`: what the core runs.
    pub current: u64,
    pub int_mask: u64,
    /// Where the round-robin scan resumes.
    rr_next: usize,
    pub kick_count: u64,
    pub kick_mask: u64,
    /// A wake-up did not interrupt because the core ran an accelerated
    /// thread of at least its priority; a later `CURRENT` or mask write
    /// that lifts the reason sends the interrupt then.
    pub suppressed: bool,
}

impl CoreTable {
    fn new(slots: usize) -> CoreTable {
        CoreTable {
            slots: vec![[0; ROW_BEATS]; slots],
            current: 0,
            int_mask: 0,
            rr_next: 0,
            kick_count: 0,
            kick_mask: 0,
            suppressed: false,
        }
    }

    /// The slot holding `conn` (the content-addressed lookup).
    pub fn find(&self, conn: u32) -> Option<usize> {
        self.slots.iter().position(|r| conn_of(r) == Some(conn))
    }

    pub fn first_empty(&self) -> Option<usize> {
        self.slots.iter().position(|r| conn_of(r).is_none())
    }

    /// The next ready slot in round-robin order; `pop` clears its ready
    /// bit and moves the scan on.
    pub fn next_ready(&mut self, pop: bool) -> Option<usize> {
        let n = self.slots.len();
        for k in 0..n {
            let s = (self.rr_next + k) % n;
            let st = get(&self.slots[s], row::STATE);
            if conn_of(&self.slots[s]).is_some() && st & state::READY != 0 {
                if pop {
                    set(&mut self.slots[s], row::STATE, st & !state::READY);
                    self.rr_next = (s + 1) % n;
                }
                return Some(s);
            }
        }
        None
    }

    /// Whether the core runs an accelerated thread of priority `p` or more.
    fn runs_at_least(&self, p: u8) -> bool {
        let accel = self.current >> 16 & 1 == 1;
        let prio = (self.current >> 24) as u8;
        accel && prio >= p
    }

    /// Slot `s`'s `bit` (RX or TX suspended) is cleared by a pointer
    /// update: the row becomes ready. Returns whether to send the core's
    /// I/O interrupt now.
    pub fn wake(&mut self, s: usize, bit: u64) -> bool {
        let r = &mut self.slots[s];
        let st = get(r, row::STATE);
        if st & bit == 0 {
            return false;
        }
        set(r, row::STATE, (st & !bit) | state::READY);
        if st & state::HIPRIO_IRQ == 0 {
            return false;
        }
        let p = priority_of(r);
        if self.runs_at_least(p) {
            self.suppressed = true;
            return false;
        }
        self.int_mask & 1 == 0
    }

    /// After `CURRENT` or the mask changed: whether a suppressed wake-up
    /// should interrupt now.
    pub fn recheck(&mut self) -> bool {
        if !self.suppressed || self.int_mask & 1 != 0 {
            return false;
        }
        let waiting = self.slots.iter().any(|r| {
            let st = get(r, row::STATE);
            conn_of(r).is_some()
                && st & state::READY != 0
                && st & state::HIPRIO_IRQ != 0
                && !self.runs_at_least(priority_of(r))
        });
        if waiting {
            self.suppressed = false;
        }
        waiting
    }

    /// Kick-all: clear every row's suspended and ready bits; remember how
    /// many and which were ready.
    pub fn kick_all(&mut self) {
        let mut count = 0;
        let mut mask = 0u64;
        for (i, r) in self.slots.iter_mut().enumerate() {
            let st = get(r, row::STATE);
            if st & state::READY != 0 {
                count += 1;
                mask |= 1 << (i % 64);
            }
            set(
                r,
                row::STATE,
                st & !(state::READY | state::RX_SUSPENDED | state::TX_SUSPENDED),
            );
        }
        self.kick_count = count;
        self.kick_mask = mask;
        self.suppressed = false;
    }
}

/// The whole table: every core's, and the control event queue.
#[derive(Clone, Debug)]
pub struct IctState {
    pub cores: Vec<CoreTable>,
    pub events: VecDeque<u64>,
    pub event_capacity: usize,
    pub event_overflows: u64,
    pub counters: Counters,
}

impl IctState {
    pub fn new(cores: usize, slots: usize, event_capacity: usize) -> IctState {
        IctState {
            cores: (0..cores).map(|_| CoreTable::new(slots)).collect(),
            events: VecDeque::new(),
            event_capacity,
            event_overflows: 0,
            counters: Counters::new(),
        }
    }

    /// Queue a control event; a full queue loses it (counted).
    pub fn push_event(&mut self, e: u64) -> bool {
        if self.events.len() >= self.event_capacity {
            self.event_overflows += 1;
            self.counters.inc("drop.event_overflow");
            return false;
        }
        self.events.push_back(e);
        true
    }

    /// The core-side check of an access by `core` at `offset` of the BAR:
    /// what the core's load/store unit refuses before the access leaves.
    pub fn check_cpu(
        &self,
        core: usize,
        offset: u64,
        len: u64,
        write: bool,
        asid: u16,
        user: bool,
    ) -> Result<(), GuardFault> {
        if len != regs::BEAT_BYTES || !offset.is_multiple_of(regs::BEAT_BYTES) {
            return Err(GuardFault::Protection);
        }
        match regs::decode(offset) {
            Some(regs::Window::User { conn, field }) => {
                if conn >= regs::MAX_CONNECTIONS {
                    return Err(GuardFault::Protection);
                }
                let t = self.cores.get(core).ok_or(GuardFault::Protection)?;
                let s = t.find(conn).ok_or(GuardFault::Miss)?;
                if user && asid_of(&t.slots[s]) != asid {
                    return Err(GuardFault::Protection);
                }
                if write && !row::user_writable(field) {
                    return Err(GuardFault::Protection);
                }
                // A connection the OS took off the fast path cannot send
                // through it: the store misses, and the OS's handler says
                // why.
                if write
                    && field == row::TX_TAIL
                    && get(&t.slots[s], row::STATE) & state::ACCELERATED == 0
                {
                    return Err(GuardFault::Miss);
                }
                Ok(())
            }
            Some(regs::Window::Kernel { core: c, .. })
            | Some(regs::Window::Slot { core: c, .. })
                if !user && c < self.cores.len() =>
            {
                Ok(())
            }
            Some(regs::Window::Control { .. }) if !user => Ok(()),
            _ => Err(GuardFault::Protection),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_of(conn: u32, asid: u16, prio: u8, st: u64) -> Row {
        let mut r = [0; ROW_BEATS];
        set(&mut r, row::CONN, conn as u64 | CONN_VALID);
        set(&mut r, row::OWNER, regs::owner(asid, true, prio, 9));
        set(&mut r, row::STATE, st);
        r
    }

    #[test]
    fn a_wake_interrupts_only_a_core_not_running_an_equal_or_higher_thread() {
        let mut t = CoreTable::new(4);
        let s = state::ENABLED | state::ACCELERATED | state::HIPRIO_IRQ;
        t.slots[1] = row_of(5, 1, 2, s | state::RX_SUSPENDED);
        t.slots[2] = row_of(6, 2, 2, s | state::RX_SUSPENDED);
        t.current = regs::current(3, true, 2);
        assert!(
            !t.wake(1, state::RX_SUSPENDED),
            "equal priority runs: no irq"
        );
        assert!(t.suppressed);
        t.current = regs::current(3, true, 1);
        assert!(t.recheck(), "a lower one runs now: the suppressed irq goes");
        assert!(t.wake(2, state::RX_SUSPENDED));
        assert!(!t.wake(2, state::RX_SUSPENDED), "not suspended any more");
        // Round robin over the ready slots, each once.
        assert_eq!(t.next_ready(false), Some(1));
        assert_eq!(t.next_ready(true), Some(1));
        assert_eq!(t.next_ready(true), Some(2));
        assert_eq!(t.next_ready(true), None);
        t.int_mask = 1;
        t.slots[1] = row_of(5, 1, 2, s | state::TX_SUSPENDED);
        t.current = 0;
        assert!(!t.wake(1, state::TX_SUSPENDED), "masked");
    }

    #[test]
    fn the_core_refuses_other_address_spaces_and_misses_absent_rows() {
        let mut st = IctState::new(2, 4, 8);
        st.cores[0].slots[0] = row_of(7, 1, 1, state::ENABLED);
        let user = |off, w, asid| st.check_cpu(0, off, 8, w, asid, true);
        assert_eq!(user(regs::user_field(7, row::RX_TAIL), false, 1), Ok(()));
        assert_eq!(
            user(regs::user_field(7, row::RX_TAIL), false, 2),
            Err(GuardFault::Protection)
        );
        assert_eq!(user(regs::user_field(7, row::RX_HEAD), true, 1), Ok(()));
        assert_eq!(
            user(regs::user_field(7, row::RX_RING_ADDR), true, 1),
            Err(GuardFault::Protection),
            "a user cannot move its ring"
        );
        assert_eq!(
            user(regs::user_field(8, row::RX_TAIL), false, 1),
            Err(GuardFault::Miss)
        );
        assert_eq!(
            st.check_cpu(1, regs::user_field(7, row::RX_TAIL), 8, false, 1, true),
            Err(GuardFault::Miss),
            "another core's table does not hold it"
        );
        assert_eq!(
            user(regs::kernel_reg(0, regs::kernel::SCHED_READ), false, 1),
            Err(GuardFault::Protection)
        );
        assert_eq!(
            user(regs::nic_field(0, 7, row::RX_TAIL), true, 1),
            Err(GuardFault::Protection)
        );
        assert_eq!(
            st.check_cpu(0, regs::user_field(7, row::RX_TAIL), 4, false, 1, true),
            Err(GuardFault::Protection),
            "one whole beat at a time"
        );
        assert_eq!(
            st.check_cpu(
                0,
                regs::kernel_reg(0, regs::kernel::SCHED_READ),
                8,
                false,
                0,
                false
            ),
            Ok(())
        );
        assert!(st.push_event(1));
        for _ in 0..8 {
            st.push_event(2);
        }
        assert_eq!(st.event_overflows, 1);
    }
}
