//! The kernel's lock over the connection table: installing, evicting and
//! rewriting a row are sequences of MMIO accesses with waits in between,
//! and the thread's miss handler, the NIC-miss and control interrupts and
//! the scheduler can all run them. A real kernel holds a spinlock with
//! interrupts off; here a task that finds the lock held waits for its
//! release.
//!
//! Invariant: at most one guard exists at a time; dropping it wakes the
//! waiters, which re-check.

use std::cell::Cell;

use nextio_engine::{Notify, Sim};

pub(super) struct TableLock {
    held: Cell<bool>,
    freed: Notify,
}

pub(super) struct TableGuard<'a>(&'a TableLock);

impl TableLock {
    pub(super) fn new(sim: &Sim) -> TableLock {
        TableLock {
            held: Cell::new(false),
            freed: Notify::new(sim),
        }
    }

    pub(super) async fn lock(&self) -> TableGuard<'_> {
        while self.held.get() {
            self.freed.notified().await;
        }
        self.held.set(true);
        TableGuard(self)
    }
}

impl Drop for TableGuard<'_> {
    fn drop(&mut self) {
        self.0.held.set(false);
        self.0.freed.notify();
    }
}
