//! Timed dispatch: which thread's code runs on each core, and what
//! switching costs.
//!
//! The kernel ([`crate::Kernel`]) says *who* runs (run queues, thread
//! states); the dispatcher makes that true in time. Every thread that
//! takes part is a simulated task that runs only while the kernel has it
//! on its core: it waits its turn in [`Dispatcher::wait_turn`], gives the
//! core up in [`Dispatcher::block`] (a system call that sleeps) or
//! [`Dispatcher::exit`], and is made runnable again by
//! [`Dispatcher::wake`] — from an interrupt handler, another core, or a
//! thread on the same core.
//!
//! Costs: the incoming thread pays its own switch-in (the kernel's
//! context-switch path, [`crate::OsCosts::context_switch_cycles`], charged
//! as `context-switch` on the core) before its code continues; a thread
//! switched in from an idle core pays the same. Hooks
//! ([`SchedHook`]) let hardware take part: Accio's scheduler asks the
//! I/O Connection Table's ready queue for a thread before it looks at its
//! run queue (§6 "OS Changes"), and tells the table what runs after each
//! switch.
//!
//! Time slicing ([`Dispatcher::set_time_slice`], off unless asked for):
//! each time a thread starts running, a timer is armed for one slice; when
//! it expires and another thread is ready on the core, the running
//! thread's need-resched flag is set (and a notify it asked for fires, so
//! a busy-polling thread notices), and at its next preemption point
//! ([`Dispatcher::preempt_point`]) it pays the timer interrupt and the
//! core goes to the head of the run queue, the preempted thread to its
//! back — a round robin of one slice each, as a fair scheduler gives
//! always-runnable threads. A slice that expires with nobody waiting is
//! re-armed (the tick finds nothing to switch to). Preemption takes effect
//! at the thread's preemption point, not mid-instruction: a thread that
//! never reaches one keeps its core.
//!
//! Invariants: at most one participating thread's code runs per core at a
//! time (the one the kernel has current); a thread resumes only after the
//! code that made it runnable has finished what it charged before the
//! wake-up (the switch is charged after it in the core's ledger); every
//! wake-up of a blocked thread makes it run exactly once.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use nextio_engine::{Category, Counters, Duration, Notify};
use nextio_hw::cpu::CoreCtx;
use nextio_hw::memory::Privilege;

use crate::host::{Host, Thread};
use crate::kernel::{OsError, ThreadState, Tid};

/// A boxed future borrowing its arguments, for hooks called through `dyn`.
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Hardware (or a policy) taking part in scheduling decisions.
pub trait SchedHook {
    /// Before the scheduler on `core` picks the next thread: a blocked
    /// thread to run first, if the hook knows one. `kctx` is kernel code
    /// on that core (its costs are the core's).
    fn pick_first<'a>(&'a self, kctx: &'a CoreCtx, core: usize) -> LocalFuture<'a, Option<Tid>>;
    /// `tid` has just been switched in on `core` (kernel code, before the
    /// thread's own code continues).
    fn switched_in<'a>(&'a self, kctx: &'a CoreCtx, core: usize, tid: Tid) -> LocalFuture<'a, ()>;
}

struct Slot {
    /// The thread's context on its current core (replaced when it
    /// migrates).
    ctx: RefCell<CoreCtx>,
    notify: Notify,
    /// Switched in by someone else: the thread pays the switch itself
    /// when it resumes.
    owed: Cell<bool>,
    /// Woken while it was still running (on its way to block): its next
    /// block returns at once, as a wake-up between a thread's last check
    /// and its sleep does in Linux (the task state is back to running).
    pending: Cell<bool>,
    /// A slice timer is pending for the thread's current run.
    slice_armed: Cell<bool>,
    /// Bumped each time the thread leaves its core, so a timer armed for
    /// an earlier run finds itself stale.
    slice_gen: Cell<u64>,
    /// Its slice ended with another thread ready: give the core up at the
    /// next preemption point.
    need_resched: Cell<bool>,
    /// Fired when `need_resched` is set (a busy-polling thread's wait).
    resched_watch: RefCell<Option<Rc<Notify>>>,
}

impl Slot {
    /// The thread leaves its core: its slice ends with it.
    fn leave(&self) {
        self.slice_gen.set(self.slice_gen.get() + 1);
        self.slice_armed.set(false);
        self.need_resched.set(false);
    }
}

struct Inner {
    host: Host,
    threads: RefCell<BTreeMap<Tid, Rc<Slot>>>,
    hooks: RefCell<Vec<Rc<dyn SchedHook>>>,
    counters: RefCell<Counters>,
    /// The time slice, if the host's scheduler time-slices.
    slice: Cell<Option<Duration>>,
}

/// The dispatcher of one host. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Dispatcher(Rc<Inner>);

impl Dispatcher {
    pub fn new(host: &Host) -> Dispatcher {
        let d = Dispatcher(Rc::new(Inner {
            host: host.clone(),
            threads: RefCell::new(BTreeMap::new()),
            hooks: RefCell::new(Vec::new()),
            counters: RefCell::new(Counters::new()),
            slice: Cell::new(None),
        }));
        let (weak, prefix) = (
            Rc::downgrade(&d.0),
            format!("host{}.sched", host.machine().index()),
        );
        host.sim().on_stats(move |r| {
            if let Some(inner) = weak.upgrade() {
                r.counters(&prefix, &inner.counters.borrow());
            }
        });
        d
    }

    pub fn host(&self) -> &Host {
        &self.0.host
    }

    /// Add a hook, consulted after the ones added before it.
    pub fn add_hook(&self, hook: Rc<dyn SchedHook>) {
        self.0.hooks.borrow_mut().push(hook);
    }

    /// Let the dispatcher run `thread` (it then waits its turn).
    pub fn adopt(&self, thread: &Thread) {
        let sim = self.0.host.sim().clone();
        self.0.threads.borrow_mut().insert(
            thread.tid,
            Rc::new(Slot {
                ctx: RefCell::new(thread.ctx.clone()),
                notify: Notify::new(&sim),
                owed: Cell::new(false),
                pending: Cell::new(false),
                slice_armed: Cell::new(false),
                slice_gen: Cell::new(0),
                need_resched: Cell::new(false),
                resched_watch: RefCell::new(None),
            }),
        );
    }

    fn slot(&self, tid: Tid) -> Result<Rc<Slot>, OsError> {
        self.0
            .threads
            .borrow()
            .get(&tid)
            .cloned()
            .ok_or(OsError::NoThread(tid))
    }

    /// Kernel code on the core `ctx` runs on: the same core and ledger,
    /// accesses made in the kernel's address space.
    pub fn kernel_ctx(&self, ctx: &CoreCtx) -> CoreCtx {
        let space = self.0.host.kernel().borrow().kernel_space();
        ctx.in_space(space, Privilege::Kernel)
    }

    /// Kernel code on `core` (for interrupt handlers and set-up).
    pub fn core_kernel_ctx(&self, core: usize) -> Result<CoreCtx, OsError> {
        let ctx = self
            .0
            .host
            .machine()
            .ctx(core)
            .ok_or(OsError::NoCore(core))?;
        Ok(self.kernel_ctx(&ctx))
    }

    fn now_cycles(ctx: &CoreCtx) -> u64 {
        ctx.core()
            .freq()
            .duration_to_cycles(ctx.sim().now() - nextio_engine::Time::ZERO)
    }

    /// Wait until `tid` is the thread running on its core; if it was
    /// switched in by someone else, pay the switch first.
    pub async fn wait_turn(&self, tid: Tid) -> Result<(), OsError> {
        let slot = self.slot(tid)?;
        loop {
            let state = self.0.host.kernel().borrow().state(tid)?;
            match state {
                ThreadState::Running(_) => break,
                ThreadState::Exited => return Err(OsError::NoThread(tid)),
                _ => slot.notify.notified().await,
            }
        }
        self.arm_slice(&slot, tid);
        if slot.owed.replace(false) {
            self.switch_in(&slot, tid).await;
        }
        Ok(())
    }

    /// Time-slice every core's threads: a thread that has run for `slice`
    /// while another waits on its core is preempted at its next
    /// preemption point. Threads already running get their first slice
    /// when they next start to run.
    pub fn set_time_slice(&self, slice: Duration) -> Result<(), OsError> {
        if slice == Duration::ZERO {
            return Err(OsError::Invalid("time slice must be positive".into()));
        }
        self.0.slice.set(Some(slice));
        Ok(())
    }

    /// Also fire `notify` when `tid`'s slice ends with another thread
    /// waiting (one wait for a thread that busy-polls on a notify of its
    /// own and must notice the tick).
    pub fn watch_resched(&self, tid: Tid, notify: Rc<Notify>) -> Result<(), OsError> {
        *self.slot(tid)?.resched_watch.borrow_mut() = Some(notify);
        Ok(())
    }

    /// Whether `tid`'s slice has ended with another thread waiting (the
    /// check a poll loop makes; uncharged).
    pub fn need_resched(&self, tid: Tid) -> bool {
        self.slot(tid).is_ok_and(|s| s.need_resched.get())
    }

    /// Start `tid`'s slice timer for its current run, if slicing is on and
    /// none is pending.
    fn arm_slice(&self, slot: &Rc<Slot>, tid: Tid) {
        let Some(slice) = self.0.slice.get() else {
            return;
        };
        if slot.slice_armed.replace(true) {
            return;
        }
        let (weak, s, generation) = (Rc::downgrade(&self.0), slot.clone(), slot.slice_gen.get());
        self.0.host.sim().after(slice, move || {
            if let Some(inner) = weak.upgrade() {
                Dispatcher(inner).slice_expired(&s, tid, generation);
            }
        });
    }

    /// `tid`'s slice timer fired: ask it to give the core up if another
    /// thread waits, else give it another slice.
    fn slice_expired(&self, slot: &Rc<Slot>, tid: Tid, generation: u64) {
        if slot.slice_gen.get() != generation {
            return;
        }
        slot.slice_armed.set(false);
        let (running, waiting) = {
            let k = self.0.host.kernel().borrow();
            match k.home_core(tid) {
                Ok(core) => (k.current(core) == Some(tid), k.ready_count(core)),
                Err(_) => (false, 0),
            }
        };
        if !running {
            return;
        }
        if waiting == 0 {
            self.arm_slice(slot, tid);
            return;
        }
        slot.need_resched.set(true);
        self.0.counters.borrow_mut().inc("slice_expiries");
        if let Some(n) = slot.resched_watch.borrow().as_ref() {
            n.notify();
        }
    }

    /// A preemption point of the running thread `tid` (where the timer
    /// interrupt's return path would switch): if its slice has ended with
    /// another thread ready, it pays the timer interrupt, the core goes to
    /// the next thread (`tid` to the back of the run queue), and this
    /// returns `true` once `tid` runs again; otherwise `false` at once.
    pub async fn preempt_point(&self, tid: Tid) -> Result<bool, OsError> {
        let slot = self.slot(tid)?;
        if !slot.need_resched.replace(false) {
            return Ok(false);
        }
        let ctx = slot.ctx.borrow().clone();
        let costs = self.0.host.kernel().borrow().costs;
        ctx.cycles(Category::Interrupt, costs.irq_cycles + costs.hrtimer_cycles);
        ctx.sync().await;
        let core = ctx.core().id();
        let kctx = self.kernel_ctx(&ctx);
        self.consult_hooks(&kctx, core).await?;
        let next = {
            let mut k = self.0.host.kernel().borrow_mut();
            if k.current(core) != Some(tid) {
                return Err(OsError::NotRunning(tid));
            }
            if k.ready_count(core) == 0 {
                None
            } else {
                k.schedule(core, Self::now_cycles(&ctx))?.0
            }
        };
        let Some(next) = next.filter(|n| *n != tid) else {
            // The waiter went elsewhere meanwhile: run on for a slice.
            self.arm_slice(&slot, tid);
            return Ok(false);
        };
        slot.leave();
        self.0.counters.borrow_mut().inc("preemptions");
        self.hand_over(Some(next));
        self.wait_turn(tid).await?;
        Ok(true)
    }

    /// The kernel's context-switch path for `tid`, charged on its core.
    async fn switch_in(&self, slot: &Slot, tid: Tid) {
        let cs = self.0.host.kernel().borrow().costs.context_switch_cycles;
        let ctx = slot.ctx.borrow().clone();
        ctx.core()
            .trace_instant("switch-in", ctx.local_now(), Some(("tid", tid.0 as u64)));
        ctx.cycles(Category::ContextSwitch, cs);
        let core = ctx.core().id();
        let kctx = self.kernel_ctx(&ctx);
        let hooks = self.0.hooks.borrow().clone();
        for h in hooks {
            h.switched_in(&kctx, core, tid).await;
        }
        ctx.sync().await;
        self.0.counters.borrow_mut().inc("switches");
    }

    /// Ask the hooks for a thread to run first on `core` and put it at the
    /// head of the run queue.
    async fn consult_hooks(&self, kctx: &CoreCtx, core: usize) -> Result<(), OsError> {
        let hooks = self.0.hooks.borrow().clone();
        for h in hooks {
            if let Some(first) = h.pick_first(kctx, core).await {
                let running = matches!(
                    self.0.host.kernel().borrow().state(first)?,
                    ThreadState::Running(_)
                );
                if running {
                    // The thread about to block is itself ready again.
                    if let Ok(s) = self.slot(first) {
                        s.pending.set(true);
                    }
                } else {
                    self.0.host.kernel().borrow_mut().wake_front(first)?;
                }
                self.0.counters.borrow_mut().inc("hook_picks");
            }
        }
        Ok(())
    }

    /// Hand `core` to whoever the kernel made current, if anyone.
    fn hand_over(&self, next: Option<Tid>) {
        let Some(next) = next else { return };
        if let Ok(s) = self.slot(next) {
            s.owed.set(true);
            s.notify.notify();
        }
    }

    /// The running thread `tid` blocks (a sleeping system call whose
    /// entry the caller has charged): the core goes to the next thread, or
    /// idles; returns once `tid` has been woken and runs again.
    pub async fn block(&self, tid: Tid) -> Result<(), OsError> {
        let slot = self.slot(tid)?;
        let ctx = slot.ctx.borrow().clone();
        ctx.sync().await;
        if slot.pending.replace(false) {
            self.0.counters.borrow_mut().inc("blocks_averted");
            return Ok(());
        }
        let core = ctx.core().id();
        let kctx = self.kernel_ctx(&ctx);
        self.consult_hooks(&kctx, core).await?;
        if slot.pending.replace(false) {
            self.0.counters.borrow_mut().inc("blocks_averted");
            return Ok(());
        }
        let next = {
            let mut k = self.0.host.kernel().borrow_mut();
            if k.current(core) != Some(tid) {
                return Err(OsError::NotRunning(tid));
            }
            k.block_current(core, Self::now_cycles(&ctx))?
        };
        slot.leave();
        self.0.counters.borrow_mut().inc("blocks");
        self.hand_over(next);
        self.wait_turn(tid).await
    }

    /// Make `tid` runnable (if blocked); an idle core switches to it at
    /// once. Callable from anywhere, at the time the wake-up happens.
    pub fn wake(&self, tid: Tid) -> Result<(), OsError> {
        let next = {
            let mut k = self.0.host.kernel().borrow_mut();
            match k.state(tid)? {
                ThreadState::Blocked => {}
                ThreadState::Running(_) => {
                    if let Ok(s) = self.slot(tid) {
                        s.pending.set(true);
                    }
                    return Ok(());
                }
                _ => return Ok(()),
            }
            k.wake(tid)?;
            let core = k.home_core(tid)?;
            if k.current(core).is_some() {
                None
            } else {
                let now = self.0.host.machine().core(core).map_or(0, |c| {
                    c.freq()
                        .duration_to_cycles(self.0.host.sim().now() - nextio_engine::Time::ZERO)
                });
                k.schedule(core, now)?.0
            }
        };
        self.0.counters.borrow_mut().inc("wakes");
        self.hand_over(next);
        Ok(())
    }

    /// An idle `core` (nothing current) takes what the hooks and its run
    /// queue offer: the scheduler's idle loop after an interrupt.
    pub async fn run_idle(&self, kctx: &CoreCtx, core: usize) -> Result<(), OsError> {
        if self.0.host.kernel().borrow().current(core).is_some() {
            return Ok(());
        }
        self.consult_hooks(kctx, core).await?;
        kctx.sync().await;
        let next = {
            let mut k = self.0.host.kernel().borrow_mut();
            if k.current(core).is_some() {
                return Ok(());
            }
            k.schedule(core, Self::now_cycles(kctx))?.0
        };
        self.hand_over(next);
        Ok(())
    }

    /// The running thread `tid` exits; the core goes to the next thread.
    pub async fn exit(&self, tid: Tid) -> Result<(), OsError> {
        let slot = self.slot(tid)?;
        let ctx = slot.ctx.borrow().clone();
        ctx.sync().await;
        let core = ctx.core().id();
        let kctx = self.kernel_ctx(&ctx);
        self.consult_hooks(&kctx, core).await?;
        let next = {
            let mut k = self.0.host.kernel().borrow_mut();
            if k.current(core) != Some(tid) {
                return Err(OsError::NotRunning(tid));
            }
            k.exit_current(core, Self::now_cycles(&ctx))?
        };
        self.0.threads.borrow_mut().remove(&tid);
        self.hand_over(next);
        Ok(())
    }

    /// The context `tid` runs in (on its current core).
    pub fn ctx(&self, tid: Tid) -> Result<CoreCtx, OsError> {
        Ok(self.slot(tid)?.ctx.borrow().clone())
    }

    /// Move `tid`, which is not running, to `core`; returns its context
    /// there (the thread's code continues in it once woken).
    pub fn migrate(&self, tid: Tid, core: usize) -> Result<CoreCtx, OsError> {
        let slot = self.slot(tid)?;
        let ctx = self
            .0
            .host
            .machine()
            .ctx(core)
            .ok_or(OsError::NoCore(core))?;
        self.0.host.kernel().borrow_mut().migrate(tid, core)?;
        *slot.ctx.borrow_mut() = ctx.clone();
        self.0.counters.borrow_mut().inc("migrations");
        Ok(ctx)
    }

    /// Blocks, wake-ups, switches and hook picks so far.
    pub fn counters(&self) -> Counters {
        self.0.counters.borrow().clone()
    }
}
