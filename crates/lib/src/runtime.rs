//! A user-level thread runtime (Aspen/Caladan-like) on one or more worker
//! cores.
//!
//! A user thread is a [`Job`]: an amount of compute (cycles of a program
//! whose pipeline behaviour is the runtime's [`InstrMix`]). Each worker
//! core has one kernel thread pinned to it and its own FIFO run queue; it
//! runs the head of that queue through interruptible compute. A new job is
//! placed on the least-loaded worker (queued jobs plus the one running;
//! ties go to the lowest worker), or on a chosen worker with
//! [`Runtime::submit_to`]. With work stealing on (Caladan's policy), a
//! worker whose queue is empty takes the oldest job of the longest other
//! queue (ties to the lowest worker) and pays a steal cost.
//!
//! A preemption source raises a worker's interrupt line; the worker then
//! pays the cost of *how* it was told (signal, UIPI with flush, tracked
//! UIPI, KB_Timer, a polled flag) and, if the thread has used its quantum,
//! yields: the thread goes to the tail of that worker's run queue (or,
//! alone, is resumed after a trip through the scheduler).
//!
//! Sources and their mechanisms:
//! * `Signal` — `setitimer` on each worker thread: each tick is a kernel
//!   timer interrupt plus a SIGALRM delivered through the kernel;
//! * `TimerCore` — ONE dedicated core spins on the TSC and executes
//!   `senduipi` once per worker every interval, so its busy time grows
//!   with the number of workers (xUI Fig. 6); each IPI crosses the
//!   interconnect; the worker takes it with flush (UIPI) or tracking (xUI)
//!   and processes the UPID;
//! * `KbTimer` — each worker's own KB_Timer in periodic mode, tracked, no
//!   UPID;
//! * `Polling` — Concord-like: the timer core writes each worker's flag,
//!   every loop back-edge checks it (a cost paid on every iteration), and
//!   it is seen at the next back-edge;
//! * `Safepoint` — each worker's KB_Timer with tracking in hardware
//!   safepoint mode: the interrupt is taken at the next safepoint (loop
//!   back-edge), free otherwise.
//!
//! The kernel threads live in one shared OS model ([`Kernel`]): worker `i`
//! runs on kernel core `i`, the timer thread on kernel core `N`; every
//! handler, UITT entry, KB_Timer and interval timer is set up with the
//! real system calls, so the sources drive the real state.
//!
//! Invariants: every submitted job completes exactly once, on exactly one
//! worker (conservation); work is never lost across preemption or
//! stealing; costs are charged to each core's ledger by category
//! (application, interrupt, kernel, context switch, polling for steals).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use nextio_engine::{Category, Duration, Notify, Sim, Time};
use nextio_hw::cpu::{Core, CoreCtx};
use nextio_hw::interrupt::apic::TimerMode;
use nextio_hw::interrupt::line::{IrqLine, compute_interruptible};
use nextio_hw::interrupt::pipeline::{
    CoreParams, InstrMix, PipelineError, Route, Strategy, UcodeCosts, delivery_cost,
};
use nextio_os::{Host, Kernel, OsCosts, OsError, Tid};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// User vector the runtime uses for preemption.
const PREEMPT_UV: u8 = 1;
/// Address of the runtime's user-interrupt handler (any non-zero value).
const HANDLER: u64 = 0x40_1000;

/// How the runtime is told to preempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preemption {
    None,
    Signal,
    /// A dedicated timer core sends UIPIs; delivered with `strategy`.
    TimerCore {
        strategy: Strategy,
    },
    KbTimer,
    /// Compiler polling: `check_uops` added to a loop body of `body_uops`.
    Polling {
        check_uops: u32,
        body_uops: u32,
    },
    /// Hardware safepoints at every loop back-edge of `body_uops`.
    Safepoint {
        body_uops: u32,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct RuntimeConfig {
    pub preemption: Preemption,
    /// Timer period of the preemption source.
    pub interval: Duration,
    /// A thread is preempted at the notification that ends its quantum:
    /// counted in the source's ticks (`quantum / interval`, at least one),
    /// as a timer-driven runtime counts it, so with the quantum equal to
    /// the interval every tick preempts. (Counting time since the thread
    /// was scheduled instead lets a thread that started mid-interval run
    /// almost two quanta.)
    pub quantum: Duration,
    /// If false, interrupts are received and handled but never switch
    /// threads (the Fig. 4 receiver-overhead set-up).
    pub switch_threads: bool,
    pub core: CoreParams,
    pub ucode: UcodeCosts,
    pub os: OsCosts,
    pub mix: InstrMix,
    /// Receiving a polled notification: the flag's line was written by the
    /// remote core (a cache miss) and the check branch mispredicts.
    pub poll_hit_cycles: u64,
    /// Per-send overhead on the timer core beyond `senduipi` itself: read
    /// the TSC and the worker list.
    pub timer_loop_cycles: u64,
    /// An idle worker steals from another worker's run queue (no effect
    /// with one worker).
    pub work_stealing: bool,
    /// One steal attempt: lock the victim's queue and take a job, two
    /// cache lines last written by the victim core. Charged to the thief
    /// as polling.
    pub steal_cycles: u64,
}

/// The runtime's own primitives, which [`RuntimeConfig::new`] starts
/// from: a preset's `[runtime]`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeDefaults {
    pub poll_hit_cycles: u64,
    pub timer_loop_cycles: u64,
    pub work_stealing: bool,
    pub steal_cycles: u64,
}

/// The root preset's runtime primitives (read once per process).
pub fn defaults() -> &'static RuntimeDefaults {
    nextio_presets::cached_root_section!(RuntimeDefaults, "runtime")
}

#[derive(Clone, Debug, PartialEq, Error)]
pub enum RuntimeError {
    #[error("preemption interval must be positive")]
    ZeroInterval,
    #[error("loop body must have at least one µop")]
    EmptyLoop,
    #[error("the runtime needs at least one worker core")]
    NoWorkers,
    #[error("core {0} is given as a worker more than once")]
    DuplicateWorker(usize),
    #[error("the timer core (core {0}) is also a worker core")]
    TimerIsWorker(usize),
    #[error("no worker {0}")]
    NoSuchWorker(usize),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("OS set-up failed: {0}")]
    Os(#[from] OsError),
}

impl RuntimeConfig {
    pub fn new(preemption: Preemption, interval: Duration, mix: InstrMix) -> RuntimeConfig {
        RuntimeConfig {
            preemption,
            interval,
            quantum: interval,
            switch_threads: true,
            core: CoreParams::default(),
            ucode: UcodeCosts::default(),
            os: OsCosts::default(),
            mix,
            poll_hit_cycles: defaults().poll_hit_cycles,
            timer_loop_cycles: defaults().timer_loop_cycles,
            work_stealing: defaults().work_stealing,
            steal_cycles: defaults().steal_cycles,
        }
    }
    /// Notifications a thread runs through before it yields.
    pub fn ticks_per_quantum(&self) -> u64 {
        if self.interval.0 == 0 {
            return 1;
        }
        ((self.quantum.0 as f64 / self.interval.0 as f64).round() as u64).max(1)
    }

    pub fn validate(&self) -> Result<(), RuntimeError> {
        self.mix.validate(&self.core)?;
        if self.preemption != Preemption::None && self.interval.0 == 0 {
            return Err(RuntimeError::ZeroInterval);
        }
        match self.preemption {
            Preemption::Polling { body_uops: 0, .. } | Preemption::Safepoint { body_uops: 0 } => {
                Err(RuntimeError::EmptyLoop)
            }
            _ => Ok(()),
        }
    }
    /// What one notification costs the worker, and in which category.
    pub fn event_cost(&self) -> (Category, u64) {
        let c = |s, r| delivery_cost(&self.core, &self.ucode, &self.mix, s, r).overhead_cycles;
        match self.preemption {
            Preemption::None => (Category::Interrupt, 0),
            Preemption::Signal => (Category::Kernel, self.os.itimer_tick_cycles()),
            Preemption::TimerCore { strategy } => (Category::Interrupt, c(strategy, Route::Posted)),
            Preemption::KbTimer | Preemption::Safepoint { .. } => {
                (Category::Interrupt, c(Strategy::Tracked, Route::Direct))
            }
            Preemption::Polling { .. } => (Category::Interrupt, self.poll_hit_cycles),
        }
    }
    /// Cycles of one loop iteration (back-edge to back-edge) and the
    /// factor by which polling checks stretch the program.
    fn loop_shape(&self) -> (Option<u64>, u64, u64) {
        let per_uop = |u: u32| ((u as f64 / self.mix.ipc).ceil() as u64).max(1);
        match self.preemption {
            Preemption::Polling {
                check_uops,
                body_uops,
            } => {
                let body = body_uops as u64;
                let total = body + check_uops as u64;
                (Some(per_uop(body_uops + check_uops)), total, body)
            }
            Preemption::Safepoint { body_uops } => (Some(per_uop(body_uops)), 1, 1),
            _ => (None, 1, 1),
        }
    }
}

/// A user thread: `cycles` of the runtime's program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    pub id: u64,
    /// Request class (e.g. GET or SCAN), for reports.
    pub class: u8,
    pub cycles: u64,
    pub arrival: Time,
}

/// A finished job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    pub job: Job,
    pub finished: Time,
    pub preemptions: u32,
    /// Index of the worker that finished it (into [`Runtime::workers`]).
    pub worker: usize,
    /// Index of the worker it was placed on at submission.
    pub placed: usize,
}

struct Running {
    job: Job,
    remaining: u64,
    preemptions: u32,
    placed: usize,
}

/// One worker core: its kernel thread, interrupt line and run queue.
struct Worker {
    core: Rc<Core>,
    line: Rc<IrqLine>,
    queue: RefCell<VecDeque<Running>>,
    /// A user thread is on the core (for placement).
    busy: Cell<bool>,
    events: Cell<u64>,
    steals: Cell<u64>,
    /// The kernel thread pinned to this worker's kernel core.
    tid: Tid,
    /// The timer thread's `senduipi` index for this worker.
    uitt_index: usize,
}

/// The runtime: N worker cores and, for some sources, one timer core.
pub struct Runtime {
    sim: Sim,
    cfg: RuntimeConfig,
    workers: Vec<Worker>,
    /// Fired when a job becomes runnable anywhere.
    work: Notify,
    done: RefCell<Vec<Completion>>,
    switches: Cell<u64>,
    stop: Cell<bool>,
    /// The OS the runtime's kernel threads live in: worker `i`'s thread on
    /// kernel core `i` owns its handler, the timer thread on core `N` the
    /// UITT entries.
    kernel: Rc<RefCell<Kernel>>,
    timer_tid: Tid,
}

impl Runtime {
    /// A runtime on core `worker` of `host`; `timer_core` is needed by
    /// the sources that use one (timer-core UIPIs, polling's flag writer).
    pub fn start(
        host: &Host,
        cfg: RuntimeConfig,
        worker: usize,
        timer_core: Option<usize>,
    ) -> Result<Rc<Runtime>, RuntimeError> {
        Runtime::start_multi(host, cfg, &[worker], timer_core)
    }

    /// A runtime on cores `workers` of `host` (one kernel thread pinned to
    /// each, one run queue each); `timer_core`, if given, must not be one
    /// of them. The runtime's threads are one process of the host's kernel.
    pub fn start_multi(
        host: &Host,
        cfg: RuntimeConfig,
        workers: &[usize],
        timer_core: Option<usize>,
    ) -> Result<Rc<Runtime>, RuntimeError> {
        cfg.validate()?;
        if workers.is_empty() {
            return Err(RuntimeError::NoWorkers);
        }
        for (i, w) in workers.iter().enumerate() {
            if workers[..i].contains(w) {
                return Err(RuntimeError::DuplicateWorker(*w));
            }
        }
        if let Some(t) = timer_core
            && workers.contains(&t)
        {
            return Err(RuntimeError::TimerIsWorker(t));
        }
        let machine = host.machine();
        let core = |c: usize| {
            machine
                .core(c)
                .cloned()
                .ok_or(RuntimeError::Os(OsError::NoCore(c)))
        };
        let cores = workers
            .iter()
            .map(|&c| core(c))
            .collect::<Result<Vec<_>, _>>()?;
        let timer = timer_core.map(core).transpose()?;
        let sim = host.sim();
        // Kernel threads, pinned; the user-interrupt routes are set up with
        // the real system calls so the sources drive the real state. The
        // timer thread needs a core even for sources without a timer core:
        // it owns the UITT; it then shares the first worker's core, queued
        // behind the worker's thread.
        let kernel = host.kernel().clone();
        let mut k = kernel.borrow_mut();
        let pid = k.create_process()?;
        let tids = workers
            .iter()
            .map(|&c| k.create_thread(pid, c))
            .collect::<Result<Vec<_>, _>>()?;
        let timer_home = timer_core.unwrap_or(workers[0]);
        let timer_tid = k.create_thread(pid, timer_home)?;
        for &c in workers.iter().chain(timer_core.iter()) {
            if k.current(c).is_none() {
                k.schedule(c, 0)?;
            }
        }
        let mut ws = Vec::with_capacity(workers.len());
        for (core, tid) in cores.into_iter().zip(tids) {
            k.sys_register_handler(tid, HANDLER)?;
            let fd = k.sys_uintr_create_fd(tid, PREEMPT_UV)?;
            let uitt_index = k.sys_register_sender(timer_tid, fd)?;
            let now_cycles = core.freq().duration_to_cycles(sim.now() - Time::ZERO);
            let period_cycles = core.freq().duration_to_cycles(cfg.interval).max(1);
            match cfg.preemption {
                Preemption::KbTimer | Preemption::Safepoint { .. } => {
                    k.sys_enable_kb_timer(tid, PREEMPT_UV)?;
                    k.set_timer(tid, now_cycles, period_cycles, TimerMode::Periodic)?;
                    if matches!(cfg.preemption, Preemption::Safepoint { .. }) {
                        k.sys_set_safepoint_mode(tid, true)?;
                    }
                }
                Preemption::Signal => {
                    k.sys_setitimer(tid, Some(cfg.interval.0))?;
                }
                _ => {}
            }
            ws.push(Worker {
                core,
                line: Rc::new(IrqLine::new(sim)),
                queue: RefCell::new(VecDeque::new()),
                busy: Cell::new(false),
                events: Cell::new(0),
                steals: Cell::new(0),
                tid,
                uitt_index,
            });
        }
        drop(k);
        let rt = Rc::new(Runtime {
            sim: sim.clone(),
            cfg,
            workers: ws,
            work: Notify::new(sim),
            done: RefCell::new(Vec::new()),
            switches: Cell::new(0),
            stop: Cell::new(false),
            kernel,
            timer_tid,
        });
        for i in 0..workers.len() {
            let r = rt.clone();
            sim.spawn(async move { r.worker_loop(i).await });
        }
        rt.start_source(timer);
        Ok(rt)
    }

    /// A new user thread becomes runnable now, on the least-loaded worker
    /// (queued plus running; ties to the lowest worker).
    pub fn submit(&self, job: Job) {
        let load = |w: &Worker| w.queue.borrow().len() + w.busy.get() as usize;
        let mut best = 0;
        for (i, w) in self.workers.iter().enumerate().skip(1) {
            if load(w) < load(&self.workers[best]) {
                best = i;
            }
        }
        self.enqueue(best, job);
    }
    /// A new user thread becomes runnable now on worker `worker`.
    pub fn submit_to(&self, worker: usize, job: Job) -> Result<(), RuntimeError> {
        if worker >= self.workers.len() {
            return Err(RuntimeError::NoSuchWorker(worker));
        }
        self.enqueue(worker, job);
        Ok(())
    }
    fn enqueue(&self, worker: usize, job: Job) {
        self.workers[worker].queue.borrow_mut().push_back(Running {
            job,
            remaining: job.cycles,
            preemptions: 0,
            placed: worker,
        });
        self.work.notify();
    }
    /// Stop the preemption source (lets a run end).
    pub fn stop(&self) {
        self.stop.set(true);
    }
    pub fn completions(&self) -> std::cell::Ref<'_, Vec<Completion>> {
        self.done.borrow()
    }
    /// Notifications the workers received, in total.
    pub fn events(&self) -> u64 {
        self.workers.iter().map(|w| w.events.get()).sum()
    }
    /// Notifications worker `i` received.
    pub fn events_on(&self, i: usize) -> u64 {
        self.workers.get(i).map_or(0, |w| w.events.get())
    }
    /// Preemptions that switched to another user thread.
    pub fn switches(&self) -> u64 {
        self.switches.get()
    }
    /// Jobs worker `i` took from another worker's queue.
    pub fn steals_by(&self, i: usize) -> u64 {
        self.workers.get(i).map_or(0, |w| w.steals.get())
    }
    /// Jobs moved between workers by stealing, in total.
    pub fn steals(&self) -> u64 {
        self.workers.iter().map(|w| w.steals.get()).sum()
    }
    /// Jobs waiting in all run queues.
    pub fn queued(&self) -> usize {
        self.workers.iter().map(|w| w.queue.borrow().len()).sum()
    }
    /// The first worker core.
    pub fn worker(&self) -> &Rc<Core> {
        &self.workers[0].core
    }
    /// Every worker core, in worker order.
    pub fn workers(&self) -> Vec<Rc<Core>> {
        self.workers.iter().map(|w| w.core.clone()).collect()
    }
    /// User interrupts the OS model delivered to the worker threads.
    pub fn kernel_deliveries(&self) -> usize {
        self.kernel.borrow().deliveries().len()
    }
    /// The OS model the kernel threads live in.
    pub fn kernel(&self) -> std::cell::Ref<'_, Kernel> {
        self.kernel.borrow()
    }

    fn start_source(self: &Rc<Self>, timer_core: Option<Rc<Core>>) {
        let cfg = self.cfg;
        let interval = cfg.interval;
        match cfg.preemption {
            Preemption::None => {}
            Preemption::KbTimer | Preemption::Safepoint { .. } => {
                for i in 0..self.workers.len() {
                    self.spawn_kb_timer(i);
                }
            }
            Preemption::Signal => {
                for i in 0..self.workers.len() {
                    let rt = self.clone();
                    self.sim.spawn(async move {
                        let w = &rt.workers[i];
                        while !rt.stop.get() {
                            rt.sim.sleep(interval).await;
                            // ITIMER_REAL expires: SIGALRM becomes pending
                            // and the kernel interrupts the worker to
                            // deliver it.
                            if rt.kernel.borrow_mut().itimer_expire(w.tid).is_ok() {
                                w.line.raise(rt.sim.now());
                            }
                        }
                    });
                }
            }
            Preemption::TimerCore { .. } | Preemption::Polling { .. } => {
                let rt = self.clone();
                let Some(tc) = timer_core else {
                    // Without a timer core the source is a plain timer.
                    self.sim.spawn(async move {
                        while !rt.stop.get() {
                            rt.sim.sleep(interval).await;
                            for w in &rt.workers {
                                w.line.raise(rt.sim.now());
                            }
                        }
                    });
                    return;
                };
                let ctx = CoreCtx::new(&self.sim, tc);
                self.sim.spawn(async move { rt.timer_core_loop(ctx).await });
            }
        }
    }

    /// Worker `i`'s KB_Timer, programmed by its thread at start-up: fire
    /// at each deadline it reports.
    fn spawn_kb_timer(self: &Rc<Self>, i: usize) {
        let rt = self.clone();
        self.sim.spawn(async move {
            let w = &rt.workers[i];
            let freq = w.core.freq();
            while !rt.stop.get() {
                let Some(d) = rt.kernel.borrow().kb_deadline(w.core.id()) else {
                    break;
                };
                rt.sim
                    .sleep_until(Time::ZERO + freq.cycles_to_duration(d))
                    .await;
                let mut k = rt.kernel.borrow_mut();
                // Delivered at once, or (safepoint mode) left pending in
                // UIRR for the next safepoint.
                let delivered = k
                    .kb_timer_tick(w.core.id(), d, false)
                    .map(|v| !v.is_empty());
                let pending = k.ui_state(w.tid).map(|u| u.uirr != 0).unwrap_or(false);
                drop(k);
                if delivered.unwrap_or(false) || pending {
                    w.line.raise(rt.sim.now());
                }
            }
        });
    }

    /// The dedicated timer core: spin on the TSC to each deadline, then
    /// notify every worker in turn — a `senduipi` each (timer-core UIPIs)
    /// or a store to each worker's flag (polling).
    async fn timer_core_loop(self: Rc<Self>, ctx: CoreCtx) {
        let uipi = matches!(self.cfg.preemption, Preemption::TimerCore { .. });
        let send = if uipi {
            self.cfg.ucode.senduipi_cycles
        } else {
            1
        };
        let mut next = self.sim.now() + self.cfg.interval;
        while !self.stop.get() {
            ctx.spin_until_time(next).await;
            next += self.cfg.interval;
            for i in 0..self.workers.len() {
                ctx.compute(Category::Application, self.cfg.timer_loop_cycles + send)
                    .await;
                let w = &self.workers[i];
                if !uipi {
                    // Polling: a plain store to the flag line.
                    let r2 = self.clone();
                    self.sim.after(Duration::ZERO, move || {
                        r2.workers[i].line.raise(r2.sim.now())
                    });
                    continue;
                }
                let transit = w
                    .core
                    .freq()
                    .cycles_to_duration(self.cfg.ucode.ipi_transit_cycles);
                // senduipi: UITT lookup, post in the UPID, IPI.
                let sent = self
                    .kernel
                    .borrow_mut()
                    .senduipi(self.timer_tid, w.uitt_index);
                if let Ok(nextio_hw::interrupt::uipi::SendOutcome::Ipi { ndst, nv }) = sent {
                    let r2 = self.clone();
                    self.sim.after(transit, move || {
                        // Notification processing on the core the UPID
                        // names (its APIC id is the core's id).
                        let core = ndst as usize;
                        let d = r2
                            .kernel
                            .borrow_mut()
                            .interrupt(core, nv, false)
                            .map(|v| !v.is_empty())
                            .unwrap_or(false);
                        if d && let Some(w) = r2.workers.iter().find(|w| w.core.id() == core) {
                            w.line.raise(r2.sim.now());
                        }
                    });
                }
            }
        }
    }

    /// The functional side of taking a notification on worker `i`: signals
    /// are delivered on the return to user mode; in safepoint mode the
    /// pending user interrupt is delivered at the safepoint reached.
    fn take_notification(&self, i: usize) {
        let tid = self.workers[i].tid;
        let mut k = self.kernel.borrow_mut();
        match self.cfg.preemption {
            Preemption::Signal => {
                let _ = k.deliver_signals(tid);
            }
            Preemption::Safepoint { .. } => {
                let _ = k.safepoint(tid);
            }
            _ => {}
        }
    }

    fn stealing(&self) -> bool {
        self.cfg.work_stealing && self.workers.len() > 1
    }
    /// Worker `i` could steal: another worker has a job waiting.
    fn stealable(&self, i: usize) -> bool {
        self.stealing()
            && self
                .workers
                .iter()
                .enumerate()
                .any(|(j, w)| j != i && !w.queue.borrow().is_empty())
    }
    /// Take the oldest job of the longest other queue (ties to the lowest
    /// worker), if any.
    fn steal(&self, i: usize) -> Option<Running> {
        let mut victim: Option<(usize, usize)> = None;
        for (j, w) in self.workers.iter().enumerate() {
            let len = w.queue.borrow().len();
            if j != i && len > 0 && victim.is_none_or(|(_, l)| len > l) {
                victim = Some((j, len));
            }
        }
        let (j, _) = victim?;
        self.workers[j].queue.borrow_mut().pop_front()
    }

    async fn worker_loop(self: Rc<Self>, i: usize) {
        let w = &self.workers[i];
        let ctx = CoreCtx::new(&self.sim, w.core.clone());
        let (granule, stretch_num, stretch_den) = self.cfg.loop_shape();
        let (ev_cat, ev_cycles) = self.cfg.event_cost();
        loop {
            let next = w.queue.borrow_mut().pop_front();
            let next = match next {
                Some(r) => Some(r),
                None if self.stealable(i) => {
                    // Look at the other queues and take a job.
                    ctx.cycles(Category::Polling, self.cfg.steal_cycles);
                    let got = self.steal(i);
                    if got.is_some() {
                        w.steals.set(w.steals.get() + 1);
                    }
                    got
                }
                None => None,
            };
            let Some(mut cur) = next else {
                // Idle: a pending notification is taken (and paid) by the
                // idle loop, then the worker sleeps until work arrives
                // (its own, or, stealing, anyone's).
                if w.line.take().is_some() {
                    self.take_notification(i);
                    w.events.set(w.events.get() + 1);
                    ctx.cycles(ev_cat, ev_cycles);
                    continue;
                }
                let q = &w.queue;
                ctx.block_until(&self.work, || !q.borrow().is_empty() || self.stealable(i))
                    .await;
                continue;
            };
            w.busy.set(true);
            ctx.sync().await;
            let ticks_per_quantum = self.cfg.ticks_per_quantum();
            let mut ticks = 0u64;
            loop {
                // Polling stretches the program by its checks.
                let eff = (cur.remaining as u128 * stretch_num as u128)
                    .div_ceil(stretch_den as u128) as u64;
                let ran =
                    compute_interruptible(&ctx, &w.line, Category::Application, eff, granule).await;
                let progressed = (ran.executed_cycles as u128 * stretch_den as u128
                    / stretch_num as u128) as u64;
                cur.remaining = if ran.remaining_cycles == 0 {
                    0
                } else {
                    cur.remaining.saturating_sub(progressed)
                };
                if cur.remaining == 0 {
                    self.done.borrow_mut().push(Completion {
                        job: cur.job,
                        finished: self.sim.now(),
                        preemptions: cur.preemptions,
                        worker: i,
                        placed: cur.placed,
                    });
                    // A notification that arrived exactly at the end is
                    // handled by the next loop iteration.
                    break;
                }
                if w.line.take().is_none() {
                    continue;
                }
                self.take_notification(i);
                w.events.set(w.events.get() + 1);
                ctx.compute(ev_cat, ev_cycles).await;
                ticks += 1;
                if !self.cfg.switch_threads || ticks < ticks_per_quantum {
                    continue;
                }
                // Quantum expired: yield to the scheduler.
                ctx.compute(Category::ContextSwitch, self.cfg.os.uthread_switch_cycles)
                    .await;
                if w.queue.borrow().is_empty() {
                    ticks = 0;
                    continue;
                }
                cur.preemptions += 1;
                self.switches.set(self.switches.get() + 1);
                w.queue.borrow_mut().push_back(cur);
                if self.stealing() {
                    // The yielded thread may be taken by an idle worker.
                    self.work.notify();
                }
                break;
            }
            w.busy.set(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextio_hw::interrupt::pipeline::programs;
    use nextio_hw::machine::MachineSpec;

    fn host(sim: &Sim, cores: usize) -> Host {
        Host::new(sim, MachineSpec::xui_server(cores), OsCosts::default()).unwrap()
    }

    fn run(p: Preemption, jobs: &[u64]) -> (Vec<Completion>, u64, usize, u64) {
        let sim = Sim::new();
        let host = host(&sim, 2);
        let cfg = RuntimeConfig::new(p, Duration::from_us(5), programs::fib());
        let rt = Runtime::start(&host, cfg, 0, Some(1)).unwrap();
        for (i, c) in jobs.iter().enumerate() {
            rt.submit(Job {
                id: i as u64,
                class: 0,
                cycles: *c,
                arrival: Time::ZERO,
            });
        }
        let r = rt.clone();
        let s = sim.clone();
        let n = jobs.len();
        sim.spawn(async move {
            while r.completions().len() < n {
                s.sleep(Duration::from_us(1)).await;
            }
            r.stop();
        });
        sim.run_until(Time(Duration::from_ms(50).ps()));
        let c = rt.completions().clone();
        let sw = rt.switches();
        let kd = rt.kernel_deliveries();
        let ev = rt.events();
        sim.shutdown();
        (c, sw, kd, ev)
    }

    #[test]
    fn every_job_completes_once_under_every_source() {
        let jobs = [200_000, 2_400, 2_400, 1_160_000, 2_400];
        for p in ALL_SOURCES {
            let (c, switches, delivered, events) = run(p, &jobs);
            match p {
                // Each notification is a user interrupt the OS model
                // delivered (fast path, or at a safepoint).
                Preemption::TimerCore { .. }
                | Preemption::KbTimer
                | Preemption::Safepoint { .. } => {
                    assert!(
                        delivered as u64 >= events && events > 0,
                        "{p:?}: {delivered} vs {events}"
                    )
                }
                _ => assert_eq!(delivered, 0, "{p:?}"),
            }
            let mut ids: Vec<u64> = c.iter().map(|c| c.job.id).collect();
            ids.sort();
            assert_eq!(ids, vec![0, 1, 2, 3, 4], "{p:?}");
            if p == Preemption::None {
                assert_eq!(switches, 0);
                assert_eq!(c[1].job.id, 1, "FIFO without preemption");
            } else {
                assert!(switches > 0, "{p:?}");
                // Short jobs overtake the long head once it is preempted.
                assert_eq!(c[0].job.id, 1, "{p:?}");
            }
        }
    }

    /// Two long threads on one worker with a 5 µs quantum and a 5 µs tick:
    /// each runs at most one quantum at a time, so they alternate at every
    /// tick — about one switch per 5 µs of work, not one per 10 µs.
    #[test]
    fn the_quantum_is_honoured() {
        let sim = Sim::new();
        let host = host(&sim, 2);
        let cfg = RuntimeConfig::new(Preemption::KbTimer, Duration::from_us(5), programs::fib());
        assert_eq!(cfg.ticks_per_quantum(), 1);
        let rt = Runtime::start(&host, cfg, 0, Some(1)).unwrap();
        // 2 × 200 µs of work at 2 GHz, the second arriving mid-interval.
        rt.submit(Job {
            id: 0,
            class: 0,
            cycles: 400_000,
            arrival: Time::ZERO,
        });
        let r = rt.clone();
        let s = sim.clone();
        sim.spawn(async move {
            s.sleep(Duration::from_ns(2_500)).await;
            r.submit(Job {
                id: 1,
                class: 0,
                cycles: 400_000,
                arrival: s.now(),
            });
            while r.completions().len() < 2 {
                s.sleep(Duration::from_us(1)).await;
            }
            r.stop();
        });
        sim.run_until(Time(Duration::from_ms(5).ps()));
        assert_eq!(rt.completions().len(), 2);
        // ~400 µs of work in 5 µs slices: about 80 switches (some slack
        // for the start and the tail, when one thread runs alone).
        let switches = rt.switches();
        assert!(
            switches >= 70,
            "{switches} switches: a slice lasted two ticks"
        );
        sim.shutdown();
    }

    const ALL_SOURCES: [Preemption; 7] = [
        Preemption::None,
        Preemption::Signal,
        Preemption::TimerCore {
            strategy: Strategy::Flush,
        },
        Preemption::TimerCore {
            strategy: Strategy::Tracked,
        },
        Preemption::KbTimer,
        Preemption::Polling {
            check_uops: 2,
            body_uops: 24,
        },
        Preemption::Safepoint { body_uops: 24 },
    ];

    struct MultiRun {
        done: Vec<Completion>,
        steals: u64,
        events: Vec<u64>,
        deliveries: usize,
        delivered_to: Vec<usize>,
        timer_app: Duration,
    }

    /// `jobs` of (cycles, worker to place it on, or the runtime's choice)
    /// arriving every `gap` on `n` workers plus a timer core.
    fn run_multi(
        p: Preemption,
        n: usize,
        stealing: bool,
        jobs: &[(u64, Option<usize>)],
        gap: Duration,
    ) -> MultiRun {
        let sim = Sim::new();
        let host = host(&sim, n + 1);
        let ws: Vec<usize> = (0..n).collect();
        let t = host.machine().core(n).unwrap().clone();
        let mut cfg = RuntimeConfig::new(p, Duration::from_us(5), programs::fib());
        cfg.work_stealing = stealing;
        let rt = Runtime::start_multi(&host, cfg, &ws, Some(n)).unwrap();
        let jobs = jobs.to_vec();
        let total = jobs.len();
        let (r, s) = (rt.clone(), sim.clone());
        sim.spawn(async move {
            for (i, (cycles, at)) in jobs.into_iter().enumerate() {
                let job = Job {
                    id: i as u64,
                    class: 0,
                    cycles,
                    arrival: s.now(),
                };
                match at {
                    Some(w) => r.submit_to(w, job).unwrap(),
                    None => r.submit(job),
                }
                s.sleep(gap).await;
            }
            while r.completions().len() < total {
                s.sleep(Duration::from_us(1)).await;
            }
            r.stop();
        });
        sim.run_until(Time(Duration::from_ms(50).ps()));
        let out = MultiRun {
            done: rt.completions().clone(),
            steals: rt.steals(),
            events: (0..n).map(|i| rt.events_on(i)).collect(),
            deliveries: rt.kernel_deliveries(),
            delivered_to: rt.kernel().deliveries().iter().map(|d| d.tid.0).collect(),
            timer_app: t.ledger_at(sim.now()).get(Category::Application),
        };
        sim.shutdown();
        out
    }

    fn mixed_jobs() -> Vec<(u64, Option<usize>)> {
        (0..24)
            .map(|i| (if i % 6 == 0 { 400_000 } else { 3_000 }, None))
            .collect()
    }

    #[test]
    fn four_workers_complete_every_job_once_under_every_source() {
        let jobs = mixed_jobs();
        for (p, stealing) in ALL_SOURCES.iter().flat_map(|p| [(*p, true), (*p, false)]) {
            let r = run_multi(p, 4, stealing, &jobs, Duration::from_ns(500));
            let mut ids: Vec<u64> = r.done.iter().map(|c| c.job.id).collect();
            ids.sort();
            assert_eq!(ids, (0..jobs.len() as u64).collect::<Vec<_>>(), "{p:?}");
            if p != Preemption::None {
                // Every worker is told, through its own kernel thread.
                assert!(r.events.iter().all(|e| *e > 0), "{p:?}: {:?}", r.events);
            }
            if matches!(
                p,
                Preemption::TimerCore { .. } | Preemption::KbTimer | Preemption::Safepoint { .. }
            ) {
                let ev: u64 = r.events.iter().sum();
                assert!(r.deliveries as u64 >= ev, "{p:?}");
            }
        }
    }

    #[test]
    fn jobs_are_placed_on_per_core_queues() {
        let r = run_multi(Preemption::None, 4, false, &mixed_jobs(), Duration::ZERO);
        let mut cores: Vec<usize> = r.done.iter().map(|c| c.worker).collect();
        cores.sort();
        cores.dedup();
        assert_eq!(cores, vec![0, 1, 2, 3]);
        // Without stealing a job finishes where it was placed.
        assert!(r.done.iter().all(|c| c.worker == c.placed));
        // Shortest queue first, ties to the lowest worker.
        let placed: Vec<usize> = {
            let mut d = r.done.clone();
            d.sort_by_key(|c| c.job.id);
            d.iter().take(5).map(|c| c.placed).collect()
        };
        assert_eq!(placed, vec![0, 1, 2, 3, 0]);
    }

    #[test]
    fn work_stealing_moves_jobs_to_an_idle_core() {
        // Everything is placed on worker 0; worker 1 has nothing of its own.
        let jobs: Vec<_> = [200_000, 3_000, 3_000, 3_000]
            .iter()
            .map(|c| (*c, Some(0)))
            .collect();
        let on = run_multi(Preemption::None, 2, true, &jobs, Duration::ZERO);
        assert!(on.steals > 0);
        assert!(
            on.done.iter().any(|c| c.placed == 0 && c.worker == 1),
            "a job placed on worker 0 ran on worker 1"
        );
        let off = run_multi(Preemption::None, 2, false, &jobs, Duration::ZERO);
        assert_eq!(off.steals, 0);
        assert!(off.done.iter().all(|c| c.worker == 0));
        assert_eq!(off.done.len(), jobs.len());
    }

    #[test]
    fn timer_core_pays_a_senduipi_per_worker() {
        let p = Preemption::TimerCore {
            strategy: Strategy::Flush,
        };
        let jobs = [(100_000, None)];
        // The timer core spins (polling) between deadlines; its sends are
        // its application work.
        let one = run_multi(p, 1, true, &jobs, Duration::ZERO);
        let four = run_multi(p, 4, true, &jobs, Duration::ZERO);
        assert!(
            four.timer_app > one.timer_app,
            "{:?} vs {:?}",
            four.timer_app,
            one.timer_app
        );
        // Idle workers' threads are sent user interrupts too.
        let mut tids = four.delivered_to.clone();
        tids.sort();
        tids.dedup();
        assert_eq!(tids.len(), 4, "{tids:?}");
    }

    #[test]
    fn same_seed_same_completions() {
        // Job sizes and placements drawn from a seeded stream.
        let jobs = |seed: u64| -> Vec<(u64, Option<usize>)> {
            let mut rng = nextio_engine::SimRng::new(seed).fork("jobs");
            (0..24)
                .map(|_| {
                    let cycles = 1_000 + rng.below(300_000);
                    let at = rng.below(5);
                    (cycles, (at < 4).then_some(at as usize))
                })
                .collect()
        };
        for p in ALL_SOURCES {
            let a = run_multi(p, 4, true, &jobs(11), Duration::from_ns(700));
            let b = run_multi(p, 4, true, &jobs(11), Duration::from_ns(700));
            assert_eq!(a.done, b.done, "{p:?}");
            assert_eq!(a.done.len(), 24, "{p:?}");
        }
    }

    #[test]
    fn bad_worker_sets_are_errors() {
        let sim = Sim::new();
        let host = host(&sim, 2);
        let cfg = RuntimeConfig::new(Preemption::KbTimer, Duration::from_us(5), programs::fib());
        assert_eq!(
            Runtime::start_multi(&host, cfg, &[], None).err(),
            Some(RuntimeError::NoWorkers)
        );
        assert_eq!(
            Runtime::start_multi(&host, cfg, &[0, 1], Some(1)).err(),
            Some(RuntimeError::TimerIsWorker(1))
        );
        assert_eq!(
            Runtime::start_multi(&host, cfg, &[0, 0], None).err(),
            Some(RuntimeError::DuplicateWorker(0))
        );
        assert!(matches!(
            Runtime::start_multi(&host, cfg, &[0, 7], None).err(),
            Some(RuntimeError::Os(OsError::NoCore(7)))
        ));
        let rt = Runtime::start_multi(&host, cfg, &[0, 1], None).unwrap();
        let job = Job {
            id: 0,
            class: 0,
            cycles: 1,
            arrival: Time::ZERO,
        };
        assert_eq!(rt.submit_to(2, job), Err(RuntimeError::NoSuchWorker(2)));
        rt.stop();
        sim.shutdown();
    }

    #[test]
    fn bad_configuration_is_an_error() {
        let sim = Sim::new();
        let host = host(&sim, 1);
        let cfg = RuntimeConfig::new(Preemption::KbTimer, Duration::ZERO, programs::fib());
        assert!(Runtime::start(&host, cfg, 0, None).is_err());
        let mut mix = programs::fib();
        mix.ipc = 0.0;
        let cfg = RuntimeConfig::new(Preemption::None, Duration::from_us(1), mix);
        assert!(Runtime::start(&host, cfg, 0, None).is_err());
    }
}
