//! The interrupt line into a core, and compute that an interrupt can stop.
//!
//! [`CoreCtx::cycles`] accrues work without events, which is right for code
//! nothing can interrupt. A thread that can be interrupted instead runs its
//! work through [`compute_interruptible`]: it sleeps until the work would be
//! done *or* the [`IrqLine`] is raised, charges the part actually executed,
//! and returns what is left, so the caller (the user-level runtime or the
//! OS) can run a handler, switch threads, and resume later.
//!
//! Safepoint-granular work (hardware safepoints, compiler polling) stops
//! only at a multiple of `granule_cycles` from its start: the interrupt is
//! taken at the next safepoint, never between two.
//!
//! Invariant: executed + remaining = requested, in cycles, exactly.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

use nextio_engine::{Category, Notify, Sim, Time};

use crate::cpu::CoreCtx;

/// A level-triggered interrupt request into one core.
pub struct IrqLine {
    pending: Cell<bool>,
    raised_at: Cell<Time>,
    notify: Notify,
}

impl IrqLine {
    pub fn new(sim: &Sim) -> IrqLine {
        IrqLine {
            pending: Cell::new(false),
            raised_at: Cell::new(Time::ZERO),
            notify: Notify::new(sim),
        }
    }
    /// Assert the line (idempotent while pending).
    pub fn raise(&self, now: Time) {
        if !self.pending.get() {
            self.pending.set(true);
            self.raised_at.set(now);
        }
        self.notify.notify();
    }
    pub fn is_pending(&self) -> bool {
        self.pending.get()
    }
    /// Acknowledge: returns when it was raised, if it was.
    pub fn take(&self) -> Option<Time> {
        if self.pending.replace(false) {
            Some(self.raised_at.get())
        } else {
            None
        }
    }
    /// Wait (without consuming) until the line is raised.
    pub async fn wait(&self) {
        while !self.pending.get() {
            self.notify.notified().await;
        }
    }
}

/// What [`compute_interruptible`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ran {
    pub executed_cycles: u64,
    pub remaining_cycles: u64,
    /// The line was raised and the work stopped for it.
    pub interrupted: bool,
}

/// Run `cycles` of work in `category` on `ctx`'s core, stopping early (at a
/// `granule_cycles` boundary when given) if `line` is raised.
pub async fn compute_interruptible(
    ctx: &CoreCtx,
    line: &IrqLine,
    category: Category,
    cycles: u64,
    granule_cycles: Option<u64>,
) -> Ran {
    ctx.sync().await;
    let sim = ctx.sim().clone();
    let freq = ctx.core().freq();
    let start = sim.now();
    if cycles == 0 {
        return Ran {
            executed_cycles: 0,
            remaining_cycles: 0,
            interrupted: line.is_pending(),
        };
    }
    if !line.is_pending() {
        let end = start + freq.cycles_to_duration(cycles);
        let mut sleep = pin!(sim.sleep_until(end));
        let mut raised = pin!(line.wait());
        poll_fn(|cx| {
            if sleep.as_mut().poll(cx).is_ready() || raised.as_mut().poll(cx).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
    let mut done = freq.duration_to_cycles(sim.now() - start).min(cycles);
    if done < cycles
        && let Some(g) = granule_cycles.filter(|g| *g > 0)
    {
        // Run on to the next safepoint.
        let next = done.div_ceil(g).max(1) * g;
        done = next.min(cycles);
        ctx.core().charge_cycles(category, done);
        ctx.sync().await;
    } else {
        ctx.core().charge_cycles(category, done);
    }
    Ran {
        executed_cycles: done,
        remaining_cycles: cycles - done,
        interrupted: done < cycles,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::Core;
    use nextio_engine::{Duration, Freq};
    use std::rc::Rc;

    #[test]
    fn work_is_conserved_across_an_interrupt_and_safepoints_are_respected() {
        let sim = Sim::new();
        let core = Core::new(0, Freq::mhz(2000), Time::ZERO);
        let ctx = CoreCtx::new(&sim, core.clone());
        let line = Rc::new(IrqLine::new(&sim));
        let out = Rc::new(Cell::new((0, 0, 0)));
        let (l, o) = (line.clone(), out.clone());
        sim.spawn(async move {
            let r = compute_interruptible(&ctx, &l, Category::Application, 10_000, Some(300)).await;
            assert!(r.interrupted);
            assert_eq!(r.executed_cycles + r.remaining_cycles, 10_000);
            assert_eq!(r.executed_cycles % 300, 0, "stopped at a safepoint");
            l.take();
            let r2 =
                compute_interruptible(&ctx, &l, Category::Application, r.remaining_cycles, None)
                    .await;
            assert!(!r2.interrupted);
            o.set((r.executed_cycles, r2.executed_cycles, ctx.sim().now().ps()));
        });
        let (l, s) = (line.clone(), sim.clone());
        sim.after(Duration::from_ns(1000), move || l.raise(s.now()));
        sim.run();
        let (a, b, _) = out.get();
        assert_eq!(a, 2100, "2000 cycles in, next multiple of 300");
        assert_eq!(a + b, 10_000);
        assert_eq!(
            core.ledger_at(sim.now()).get(Category::Application),
            Duration::from_us(5)
        );
    }
}
