//! CPU cores and the cost interface simulated software calls.
//!
//! A [`Core`] has a clock and a [`Ledger`]. Software runs on it through a
//! [`CoreCtx`]: it *accrues* costs (`cycles`) without creating events, then
//! *synchronises* (`sync`) before it interacts with anything shared, which
//! sleeps until the ledger's cursor. This is temporal decoupling: the
//! thread's local time may run ahead of the global clock only between
//! synchronisation points, and every wait (`spin_until`, `block_until`)
//! synchronises first. Busy polling is one charged wait, not an event per
//! poll iteration.
//!
//! Invariants: the ledger's categories sum to the core's accounted time;
//! cycle costs convert to picoseconds exactly over a run (the sub-ps
//! remainder is carried, so 3 cycles at 3 GHz are 1000 ps, not 1002).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use nextio_engine::{Category, Duration, Freq, Ledger, Notify, Sim, Time};

/// One simulated core.
pub struct Core {
    id: usize,
    freq: Freq,
    ledger: RefCell<Ledger>,
    /// Sub-picosecond remainder of cycle costs, in units of 1/hz ps.
    cycle_remainder: Cell<u128>,
}

impl Core {
    pub fn new(id: usize, freq: Freq, start: Time) -> Rc<Core> {
        Rc::new(Core {
            id,
            freq,
            ledger: RefCell::new(Ledger::new(start)),
            cycle_remainder: Cell::new(0),
        })
    }
    pub fn id(&self) -> usize {
        self.id
    }
    pub fn freq(&self) -> Freq {
        self.freq
    }
    /// A copy of the ledger, closed at `now` (unaccounted time is idle).
    pub fn ledger_at(&self, now: Time) -> Ledger {
        let mut l = self.ledger.borrow().clone();
        l.charge_until(nextio_engine::Category::Idle, now);
        l
    }
    /// Time up to which the core's activity is accounted.
    pub fn cursor(&self) -> Time {
        self.ledger.borrow().cursor()
    }
    /// Charge `d` to `category` at the cursor.
    pub fn charge(&self, category: Category, d: Duration) {
        self.ledger.borrow_mut().charge(category, d);
    }
    /// Charge `cycles` cycles to `category`, exactly (remainder carried).
    pub fn charge_cycles(&self, category: Category, cycles: u64) {
        let hz = self.freq.hz() as u128;
        let total =
            cycles as u128 * nextio_engine::time::PS_PER_S as u128 + self.cycle_remainder.get();
        self.cycle_remainder.set(total % hz);
        self.charge(
            category,
            Duration((total / hz).min(u64::MAX as u128) as u64),
        );
    }
    /// Charge the gap from the cursor up to `t` to `category`.
    pub fn charge_until(&self, category: Category, t: Time) {
        self.ledger.borrow_mut().charge_until(category, t);
    }
}

/// The execution context of one simulated thread on a core.
#[derive(Clone)]
pub struct CoreCtx {
    sim: Sim,
    core: Rc<Core>,
}

impl CoreCtx {
    /// A thread starting on `core`; time before now counts as idle.
    pub fn new(sim: &Sim, core: Rc<Core>) -> CoreCtx {
        core.charge_until(Category::Idle, sim.now());
        CoreCtx {
            sim: sim.clone(),
            core,
        }
    }
    pub fn sim(&self) -> &Sim {
        &self.sim
    }
    pub fn core(&self) -> &Rc<Core> {
        &self.core
    }
    /// The thread's local time: global time plus costs not yet slept for.
    pub fn local_now(&self) -> Time {
        self.core.cursor().max(self.sim.now())
    }
    /// Accrue `cycles` of work in `category` (no event; see [`CoreCtx::sync`]).
    pub fn cycles(&self, category: Category, cycles: u64) {
        self.catch_up();
        self.core.charge_cycles(category, cycles);
    }
    /// Accrue a cost given as a duration.
    pub fn spend(&self, category: Category, d: Duration) {
        self.catch_up();
        self.core.charge(category, d);
    }
    /// Sleep until the global clock reaches the thread's local time.
    pub async fn sync(&self) {
        // Re-read the cursor after each wake: an interrupt handler may have
        // stretched this thread's outstanding work while it slept.
        loop {
            let target = self.core.cursor();
            if self.sim.now() >= target {
                return;
            }
            self.sim.sleep_until(target).await;
        }
    }
    /// Accrue and then synchronise.
    pub async fn compute(&self, category: Category, cycles: u64) {
        self.cycles(category, cycles);
        self.sync().await;
    }
    /// Busy-poll until `ready()` holds, re-checking whenever `notify`
    /// fires. The waiting time is charged as polling; the check itself is
    /// free (charge it separately if it matters).
    pub async fn spin_until(&self, notify: &Notify, mut ready: impl FnMut() -> bool) {
        self.sync().await;
        while !ready() {
            notify.notified().await;
        }
        self.core.charge_until(Category::Polling, self.sim.now());
    }
    /// Like [`CoreCtx::spin_until`] but the core is idle (the thread sleeps).
    pub async fn block_until(&self, notify: &Notify, mut ready: impl FnMut() -> bool) {
        self.sync().await;
        while !ready() {
            notify.notified().await;
        }
        self.core.charge_until(Category::Idle, self.sim.now());
    }
    /// Spin (charged as polling) until global time `t`.
    pub async fn spin_until_time(&self, t: Time) {
        self.sync().await;
        self.sim.sleep_until(t).await;
        self.core.charge_until(Category::Polling, self.sim.now());
    }
    /// An idle gap from the cursor to now counts as idle: a thread that was
    /// not running cannot have been computing.
    fn catch_up(&self) {
        self.core.charge_until(Category::Idle, self.sim.now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accrued_cycles_become_time_exactly() {
        let sim = Sim::new();
        let core = Core::new(0, Freq::mhz(3000), Time::ZERO);
        let ctx = CoreCtx::new(&sim, core.clone());
        let s = sim.clone();
        sim.spawn(async move {
            for _ in 0..3000 {
                ctx.cycles(Category::Application, 1);
            }
            ctx.sync().await;
            assert_eq!(s.now(), Time(1_000_000));
        });
        sim.run();
        let l = core.ledger_at(sim.now());
        assert_eq!(l.get(Category::Application), Duration(1_000_000));
        assert_eq!(l.total(), Duration(1_000_000));
    }

    #[test]
    fn polling_is_one_charged_wait() {
        let sim = Sim::new();
        let core = Core::new(0, Freq::mhz(2000), Time::ZERO);
        let ctx = CoreCtx::new(&sim, core.clone());
        let flag = Rc::new(Cell::new(false));
        let notify = Rc::new(Notify::new(&sim));
        let (f, n) = (flag.clone(), notify.clone());
        sim.spawn(async move {
            ctx.compute(Category::Driver, 200).await; // 100 ns
            ctx.spin_until(&n, || f.get()).await;
            ctx.compute(Category::Application, 2000).await; // 1 µs
        });
        let (f, n, s) = (flag.clone(), notify.clone(), sim.clone());
        sim.spawn(async move {
            s.sleep(Duration::from_us(5)).await;
            f.set(true);
            n.notify();
        });
        sim.run();
        let l = core.ledger_at(Time(Duration::from_us(10).ps()));
        assert_eq!(l.get(Category::Driver), Duration::from_ns(100));
        assert_eq!(l.get(Category::Polling), Duration::from_ns(4900));
        assert_eq!(l.get(Category::Application), Duration::from_us(1));
        assert_eq!(l.get(Category::Idle), Duration::from_us(4));
        assert_eq!(l.total(), Duration::from_us(10));
        // Events: two spawns, one compute wake, one notify wake, one timer, one compute wake.
        assert!(sim.events() <= 8, "{}", sim.events());
    }
}
