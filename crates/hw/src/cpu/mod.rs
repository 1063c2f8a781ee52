//! CPU cores and the cost interface simulated software calls.
//!
//! A [`Core`] has a clock, a [`Ledger`] and the address space it currently
//! runs in (its CR3 and privilege level). Software runs on it through a
//! [`CoreCtx`] ([`ctx`]): it *accrues* costs (`cycles`) without creating
//! events, then *synchronises* (`sync`) before it interacts with anything
//! shared. Memory is reached only by virtual address, through the core's
//! address space, MMU and caches; device registers only by MMIO through
//! the fabric.
//!
//! Invariants: the ledger's categories sum to the core's accounted time;
//! cycle costs convert to picoseconds exactly over a run (the sub-ps
//! remainder is carried, so 3 cycles at 3 GHz are 1000 ps, not 1002).

pub mod ctx;

pub use ctx::{Bus, CoreCtx, MmioAccessError};

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;

use nextio_engine::{Category, Duration, Freq, Ledger, Sim, Time, TrackId};

use crate::mem::AddressSpace;
use crate::memory::Privilege;

/// One simulated core.
pub struct Core {
    id: usize,
    freq: Freq,
    ledger: RefCell<Ledger>,
    /// Sub-picosecond remainder of cycle costs, in units of 1/hz ps.
    cycle_remainder: Cell<u128>,
    /// The address space the core runs in and at which privilege (its CR3
    /// and CPL); `None` until an OS puts a thread on it.
    space: Cell<Option<(AddressSpace, Privilege)>>,
    /// The running thread's IA32_PASID MSR: the PASID ENQCMD puts in the
    /// descriptors it sends; `None` when its process has none.
    pasid: Cell<Option<u32>>,
    /// The core's track in the simulation's trace, if it is traced: every
    /// charge but idle time becomes a span named by its ledger category.
    trace: OnceCell<(Sim, TrackId)>,
}

impl Core {
    pub fn new(id: usize, freq: Freq, start: Time) -> Rc<Core> {
        Rc::new(Core {
            id,
            freq,
            ledger: RefCell::new(Ledger::new(start)),
            cycle_remainder: Cell::new(0),
            space: Cell::new(None),
            pasid: Cell::new(None),
            trace: OnceCell::new(),
        })
    }
    /// Record the core's ledger charges as spans on `track` of `sim`'s
    /// trace (set once, when the machine is built).
    pub fn trace_on(&self, sim: &Sim, track: TrackId) {
        let _ = self.trace.set((sim.clone(), track));
    }
    /// Record an instant (an interrupt's arrival, a context switch) on the
    /// core's track, if it is traced.
    pub fn trace_instant(&self, name: &'static str, at: Time, arg: Option<(&'static str, u64)>) {
        if let Some((sim, track)) = self.trace.get() {
            sim.trace_instant(*track, name, "cpu.event", at, arg);
        }
    }
    fn trace_charge(&self, category: Category, from: Time, d: Duration) {
        if let Some((sim, track)) = self.trace.get()
            && category != Category::Idle
            && d > Duration::ZERO
        {
            sim.trace_span(*track, category.name(), "cpu", from, d);
        }
    }
    pub fn id(&self) -> usize {
        self.id
    }
    pub fn freq(&self) -> Freq {
        self.freq
    }
    /// The address space and privilege the core runs in.
    pub fn space(&self) -> Option<(AddressSpace, Privilege)> {
        self.space.get()
    }
    /// Switch the core to `space` at `privilege` (a CR3 write and a
    /// privilege change; their cost is the caller's to charge).
    pub fn set_space(&self, space: AddressSpace, privilege: Privilege) {
        self.space.set(Some((space, privilege)));
    }
    /// The PASID ENQCMD sends (the IA32_PASID MSR).
    pub fn pasid(&self) -> Option<u32> {
        self.pasid.get()
    }
    /// Load the IA32_PASID MSR (the OS does, on a context switch).
    pub fn set_pasid(&self, pasid: Option<u32>) {
        self.pasid.set(pasid);
    }
    /// A copy of the ledger, closed at `now` (unaccounted time is idle).
    pub fn ledger_at(&self, now: Time) -> Ledger {
        let mut l = self.ledger.borrow().clone();
        l.charge_until(Category::Idle, now);
        l
    }
    /// Time up to which the core's activity is accounted.
    pub fn cursor(&self) -> Time {
        self.ledger.borrow().cursor()
    }
    /// Charge `d` to `category` at the cursor.
    pub fn charge(&self, category: Category, d: Duration) {
        let mut l = self.ledger.borrow_mut();
        self.trace_charge(category, l.cursor(), d);
        l.charge(category, d);
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
        let mut l = self.ledger.borrow_mut();
        if t > l.cursor() {
            self.trace_charge(category, l.cursor(), t - l.cursor());
        }
        l.charge_until(category, t);
    }
}
