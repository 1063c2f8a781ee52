//! Interrupt context: the kernel's handlers for device vectors, run on the
//! core the message was sent to, one at a time per core.
//!
//! A driver registers a [`IrqHandler`] for a ⟨core, vector⟩. When the
//! host's interrupt path (MSI-X → APIC → [`crate::Kernel::interrupt`])
//! reports that vector, the handler runs as kernel code on that core: its
//! costs go to the core's ledger after whatever the core had accrued, so
//! an interrupt on a busy core stretches the interrupted work, and on an
//! idle core starts at once. Handlers of one core never overlap; a vector
//! that arrives while its core is in a handler waits its turn (the APIC's
//! IRR keeps it pending).
//!
//! Invariants: every reported vector with a handler runs that handler
//! exactly once; a vector without one is counted (`unhandled`), never lost
//! silently.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use nextio_engine::{Counters, Mailbox};
use nextio_hw::cpu::CoreCtx;

use crate::host::Host;
use crate::kernel::OsError;
use crate::sched::{Dispatcher, LocalFuture};

/// A kernel interrupt handler.
pub trait IrqHandler {
    /// Handle `vector` on `core`; `kctx` is kernel code on that core.
    fn handle<'a>(&'a self, kctx: &'a CoreCtx, core: usize, vector: u8) -> LocalFuture<'a, ()>;
}

struct Inner {
    disp: Dispatcher,
    handlers: RefCell<BTreeMap<(usize, u8), Rc<dyn IrqHandler>>>,
    /// Vectors waiting for their core's handler loop.
    pending: Vec<Rc<Mailbox<u8>>>,
    counters: RefCell<Counters>,
}

/// The interrupt context of one host. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Interrupts(Rc<Inner>);

impl Interrupts {
    /// Listen to `disp`'s host's interrupts and start one handler loop per
    /// core.
    pub fn new(disp: &Dispatcher) -> Result<Interrupts, OsError> {
        let host: &Host = disp.host();
        let sim = host.sim().clone();
        let cores = host.machine().cores().len();
        let pending: Vec<_> = (0..cores).map(|_| Rc::new(Mailbox::new(&sim))).collect();
        let me = Interrupts(Rc::new(Inner {
            disp: disp.clone(),
            handlers: RefCell::new(BTreeMap::new()),
            pending,
            counters: RefCell::new(Counters::new()),
        }));
        for core in 0..cores {
            let kctx = disp.core_kernel_ctx(core)?;
            let weak = Rc::downgrade(&me.0);
            let inbox = me.0.pending[core].clone();
            sim.spawn(async move {
                loop {
                    let vector = inbox.recv().await;
                    let Some(inner) = weak.upgrade() else { return };
                    let h = inner.handlers.borrow().get(&(core, vector)).cloned();
                    drop(inner);
                    if let Some(h) = h {
                        h.handle(&kctx, core, vector).await;
                    }
                }
            });
        }
        let (weak, prefix) = (
            Rc::downgrade(&me.0),
            format!("host{}.irq", host.machine().index()),
        );
        sim.on_stats(move |r| {
            if let Some(inner) = weak.upgrade() {
                r.counters(&prefix, &inner.counters.borrow());
            }
        });
        let weak = Rc::downgrade(&me.0);
        host.on_interrupt(move |ev| {
            let Some(inner) = weak.upgrade() else { return };
            let known = inner.handlers.borrow().contains_key(&(ev.core, ev.vector));
            if known && let Some(inbox) = inner.pending.get(ev.core) {
                inner.counters.borrow_mut().inc("delivered");
                inbox.push_at(inner.disp.host().sim().now(), ev.vector);
            } else {
                inner.counters.borrow_mut().inc("unhandled");
            }
        });
        Ok(me)
    }

    /// Run `handler` for `vector` on `core`.
    pub fn register(
        &self,
        core: usize,
        vector: u8,
        handler: Rc<dyn IrqHandler>,
    ) -> Result<(), OsError> {
        if core >= self.0.pending.len() {
            return Err(OsError::NoCore(core));
        }
        let mut h = self.0.handlers.borrow_mut();
        if h.contains_key(&(core, vector)) {
            return Err(OsError::VectorBusy(vector));
        }
        h.insert((core, vector), handler);
        Ok(())
    }

    pub fn dispatcher(&self) -> &Dispatcher {
        &self.0.disp
    }

    /// Vectors delivered to handlers and vectors nobody handles.
    pub fn counters(&self) -> Counters {
        self.0.counters.borrow().clone()
    }
}
