//! A user-level thread runtime (Aspen/Caladan-like) on one worker core.
//!
//! A user thread is a [`Job`]: an amount of compute (cycles of a program
//! whose pipeline behaviour is the runtime's [`InstrMix`]). The worker runs
//! the head of a FIFO run queue through interruptible compute. A preemption
//! source raises the worker's interrupt line; the worker then pays the cost
//! of *how* it was told (signal, UIPI with flush, tracked UIPI, KB_Timer,
//! a polled flag) and, if the thread has used its quantum, yields: the
//! thread goes to the tail of the run queue (or, alone, is resumed after a
//! trip through the scheduler).
//!
//! Sources and their mechanisms:
//! * `Signal` — `setitimer` on the worker: each tick is a kernel timer
//!   interrupt plus a SIGALRM delivered through the kernel;
//! * `TimerCore` — a dedicated core spins on the TSC and executes
//!   `senduipi` per worker; the IPI crosses the interconnect; the worker
//!   takes it with flush (UIPI) or tracking (xUI) and processes the UPID;
//! * `KbTimer` — the worker's own KB_Timer in periodic mode, tracked, no
//!   UPID;
//! * `Polling` — Concord-like: a timer core writes a flag, every loop
//!   back-edge checks it (a cost paid on every iteration), and it is seen
//!   at the next back-edge;
//! * `Safepoint` — KB_Timer with tracking in hardware safepoint mode: the
//!   interrupt is taken at the next safepoint (loop back-edge), free
//!   otherwise.
//!
//! Invariants: every submitted job completes exactly once (conservation);
//! work is never lost across preemption; costs are charged to the worker's
//! ledger by category (application, interrupt, kernel, context switch).

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
use nextio_os::{Kernel, OsCosts, OsError, Tid};
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
    /// A thread that has run this long is preempted when told to.
    pub quantum: Duration,
    /// If false, interrupts are received and handled but never switch
    /// threads (the Fig. 4 receiver-overhead set-up).
    pub switch_threads: bool,
    pub core: CoreParams,
    pub ucode: UcodeCosts,
    pub os: OsCosts,
    pub mix: InstrMix,
    /// Receiving a polled notification: the flag's line was written by the
    /// remote core (a cache miss) and the check branch mispredicts (§2:
    /// "roughly 100 cycles").
    pub poll_hit_cycles: u64,
    /// Per-send overhead on the timer core beyond `senduipi` itself: read
    /// the TSC and the worker list (assumption: 25 cycles, rdtsc-bound).
    pub timer_loop_cycles: u64,
}

#[derive(Clone, Debug, PartialEq, Error)]
pub enum RuntimeError {
    #[error("preemption interval must be positive")]
    ZeroInterval,
    #[error("loop body must have at least one µop")]
    EmptyLoop,
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
            poll_hit_cycles: 100,
            timer_loop_cycles: 25,
        }
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
}

struct Running {
    job: Job,
    remaining: u64,
    preemptions: u32,
}

/// One worker core's runtime.
pub struct Runtime {
    sim: Sim,
    cfg: RuntimeConfig,
    worker: Rc<Core>,
    line: Rc<IrqLine>,
    queue: RefCell<VecDeque<Running>>,
    work: Notify,
    done: RefCell<Vec<Completion>>,
    events: Cell<u64>,
    switches: Cell<u64>,
    stop: Cell<bool>,
    /// The OS the runtime's kernel threads live in: the worker thread on
    /// core 0 owns the handler, the timer thread on core 1 the UITT entry.
    kernel: RefCell<Kernel>,
    worker_tid: Tid,
    timer_tid: Tid,
    uitt_index: usize,
}

impl Runtime {
    /// A runtime on `worker`; `timer_core` is needed by the sources that
    /// use one (timer-core UIPIs, polling's flag writer).
    pub fn start(
        sim: &Sim,
        cfg: RuntimeConfig,
        worker: Rc<Core>,
        timer_core: Option<Rc<Core>>,
    ) -> Result<Rc<Runtime>, RuntimeError> {
        cfg.validate()?;
        // Kernel threads, pinned; the user-interrupt route is set up with
        // the real system calls so the sources drive the real state.
        let mut k = Kernel::new(2, cfg.os);
        let pid = k.create_process();
        let worker_tid = k.create_thread(pid, 0)?;
        let timer_tid = k.create_thread(pid, 1)?;
        k.schedule(0, 0)?;
        k.schedule(1, 0)?;
        k.sys_register_handler(worker_tid, HANDLER)?;
        let fd = k.sys_uintr_create_fd(worker_tid, PREEMPT_UV)?;
        let uitt_index = k.sys_register_sender(timer_tid, fd)?;
        let now_cycles = worker.freq().duration_to_cycles(sim.now() - Time::ZERO);
        let period_cycles = worker.freq().duration_to_cycles(cfg.interval).max(1);
        match cfg.preemption {
            Preemption::KbTimer | Preemption::Safepoint { .. } => {
                k.sys_enable_kb_timer(worker_tid, PREEMPT_UV)?;
                k.set_timer(worker_tid, now_cycles, period_cycles, TimerMode::Periodic)?;
                if matches!(cfg.preemption, Preemption::Safepoint { .. }) {
                    k.sys_set_safepoint_mode(worker_tid, true)?;
                }
            }
            Preemption::Signal => {
                k.sys_setitimer(worker_tid, Some(cfg.interval.0))?;
            }
            _ => {}
        }
        let rt = Rc::new(Runtime {
            sim: sim.clone(),
            cfg,
            worker: worker.clone(),
            line: Rc::new(IrqLine::new(sim)),
            queue: RefCell::new(VecDeque::new()),
            work: Notify::new(sim),
            done: RefCell::new(Vec::new()),
            events: Cell::new(0),
            switches: Cell::new(0),
            stop: Cell::new(false),
            kernel: RefCell::new(k),
            worker_tid,
            timer_tid,
            uitt_index,
        });
        let r = rt.clone();
        sim.spawn(async move { r.worker_loop().await });
        rt.start_source(timer_core);
        Ok(rt)
    }

    /// A new user thread becomes runnable now.
    pub fn submit(&self, job: Job) {
        self.queue.borrow_mut().push_back(Running {
            job,
            remaining: job.cycles,
            preemptions: 0,
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
    /// Notifications the worker received.
    pub fn events(&self) -> u64 {
        self.events.get()
    }
    /// Preemptions that switched to another user thread.
    pub fn switches(&self) -> u64 {
        self.switches.get()
    }
    pub fn queued(&self) -> usize {
        self.queue.borrow().len()
    }
    pub fn worker(&self) -> &Rc<Core> {
        &self.worker
    }
    /// User interrupts the OS model delivered to the worker thread.
    pub fn kernel_deliveries(&self) -> usize {
        self.kernel.borrow().deliveries().len()
    }
    /// Signals delivered to the worker thread.
    pub fn kernel(&self) -> std::cell::Ref<'_, Kernel> {
        self.kernel.borrow()
    }

    fn start_source(self: &Rc<Self>, timer_core: Option<Rc<Core>>) {
        let cfg = self.cfg;
        let interval = cfg.interval;
        match cfg.preemption {
            Preemption::None => {}
            Preemption::KbTimer | Preemption::Safepoint { .. } => {
                // The worker core's KB_Timer, programmed by the worker
                // thread at start-up: fire at each deadline it reports.
                let rt = self.clone();
                self.sim.spawn(async move {
                    let freq = rt.worker.freq();
                    while !rt.stop.get() {
                        let Some(d) = rt.kernel.borrow().kb_deadline(0) else {
                            break;
                        };
                        rt.sim
                            .sleep_until(Time::ZERO + freq.cycles_to_duration(d))
                            .await;
                        let mut k = rt.kernel.borrow_mut();
                        // Delivered at once, or (safepoint mode) left
                        // pending in UIRR for the next safepoint.
                        let delivered = k.kb_timer_tick(0, d, false).map(|v| !v.is_empty());
                        let pending = k
                            .ui_state(rt.worker_tid)
                            .map(|u| u.uirr != 0)
                            .unwrap_or(false);
                        drop(k);
                        if delivered.unwrap_or(false) || pending {
                            rt.line.raise(rt.sim.now());
                        }
                    }
                });
            }
            Preemption::Signal => {
                let rt = self.clone();
                self.sim.spawn(async move {
                    while !rt.stop.get() {
                        rt.sim.sleep(interval).await;
                        // ITIMER_REAL expires: SIGALRM becomes pending and
                        // the kernel interrupts the worker to deliver it.
                        if rt.kernel.borrow_mut().itimer_expire(rt.worker_tid).is_ok() {
                            rt.line.raise(rt.sim.now());
                        }
                    }
                });
            }
            Preemption::TimerCore { .. } | Preemption::Polling { .. } => {
                let rt = self.clone();
                let Some(tc) = timer_core else {
                    // Without a timer core the source is a plain timer.
                    self.sim.spawn(async move {
                        while !rt.stop.get() {
                            rt.sim.sleep(interval).await;
                            rt.line.raise(rt.sim.now());
                        }
                    });
                    return;
                };
                let ctx = CoreCtx::new(&self.sim, tc);
                self.sim.spawn(async move {
                    let mut next = rt.sim.now() + interval;
                    while !rt.stop.get() {
                        ctx.spin_until_time(next).await;
                        next += interval;
                        let uipi = matches!(rt.cfg.preemption, Preemption::TimerCore { .. });
                        let send = if uipi {
                            rt.cfg.ucode.senduipi_cycles
                        } else {
                            1
                        };
                        ctx.compute(Category::Application, rt.cfg.timer_loop_cycles + send)
                            .await;
                        let transit = if uipi {
                            rt.worker
                                .freq()
                                .cycles_to_duration(rt.cfg.ucode.ipi_transit_cycles)
                        } else {
                            Duration::ZERO
                        };
                        if !uipi {
                            // Polling: a plain store to the flag line.
                            let r2 = rt.clone();
                            rt.sim.at(rt.sim.now(), move || r2.line.raise(r2.sim.now()));
                            continue;
                        }
                        // senduipi: UITT lookup, post in the UPID, IPI.
                        let sent = rt.kernel.borrow_mut().senduipi(rt.timer_tid, rt.uitt_index);
                        if let Ok(nextio_hw::interrupt::uipi::SendOutcome::Ipi { ndst, nv }) = sent
                        {
                            let r2 = rt.clone();
                            rt.sim.at(rt.sim.now() + transit, move || {
                                // Notification processing on the worker.
                                let d = r2
                                    .kernel
                                    .borrow_mut()
                                    .interrupt(ndst as usize, nv, false)
                                    .map(|v| !v.is_empty())
                                    .unwrap_or(false);
                                if d {
                                    r2.line.raise(r2.sim.now());
                                }
                            });
                        }
                    }
                });
            }
        }
    }

    /// The functional side of taking a notification on the worker: signals
    /// are delivered on the return to user mode; in safepoint mode the
    /// pending user interrupt is delivered at the safepoint reached.
    fn take_notification(&self) {
        let mut k = self.kernel.borrow_mut();
        match self.cfg.preemption {
            Preemption::Signal => {
                let _ = k.deliver_signals(self.worker_tid);
            }
            Preemption::Safepoint { .. } => {
                let _ = k.safepoint(self.worker_tid);
            }
            _ => {}
        }
    }

    async fn worker_loop(self: Rc<Self>) {
        let ctx = CoreCtx::new(&self.sim, self.worker.clone());
        let (granule, stretch_num, stretch_den) = self.cfg.loop_shape();
        let (ev_cat, ev_cycles) = self.cfg.event_cost();
        loop {
            let next = self.queue.borrow_mut().pop_front();
            let Some(mut cur) = next else {
                // Idle: a pending notification is taken (and paid) by the
                // idle loop, then the worker sleeps until work arrives.
                if self.line.take().is_some() {
                    self.take_notification();
                    self.events.set(self.events.get() + 1);
                    ctx.cycles(ev_cat, ev_cycles);
                    continue;
                }
                let q = &self.queue;
                ctx.block_until(&self.work, || !q.borrow().is_empty()).await;
                continue;
            };
            ctx.sync().await;
            let mut slice_start = self.sim.now();
            loop {
                // Polling stretches the program by its checks.
                let eff = (cur.remaining as u128 * stretch_num as u128)
                    .div_ceil(stretch_den as u128) as u64;
                let ran =
                    compute_interruptible(&ctx, &self.line, Category::Application, eff, granule)
                        .await;
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
                    });
                    // A notification that arrived exactly at the end is
                    // handled by the next loop iteration.
                    break;
                }
                if self.line.take().is_none() {
                    continue;
                }
                self.take_notification();
                self.events.set(self.events.get() + 1);
                ctx.compute(ev_cat, ev_cycles).await;
                let used = self.sim.now().since(slice_start);
                if !self.cfg.switch_threads || used < self.cfg.quantum {
                    continue;
                }
                // Quantum expired: yield to the scheduler.
                ctx.compute(Category::ContextSwitch, self.cfg.os.uthread_switch_cycles)
                    .await;
                if self.queue.borrow().is_empty() {
                    slice_start = self.sim.now();
                    continue;
                }
                cur.preemptions += 1;
                self.switches.set(self.switches.get() + 1);
                self.queue.borrow_mut().push_back(cur);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextio_engine::Freq;
    use nextio_hw::interrupt::pipeline::programs;

    fn run(p: Preemption, jobs: &[u64]) -> (Vec<Completion>, u64, usize, u64) {
        let sim = Sim::new();
        let w = Core::new(0, Freq::mhz(2000), Time::ZERO);
        let t = Core::new(1, Freq::mhz(2000), Time::ZERO);
        let cfg = RuntimeConfig::new(p, Duration::from_us(5), programs::FIB);
        let rt = Runtime::start(&sim, cfg, w, Some(t)).unwrap();
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
        for p in [
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
        ] {
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

    #[test]
    fn bad_configuration_is_an_error() {
        let sim = Sim::new();
        let w = Core::new(0, Freq::mhz(2000), Time::ZERO);
        let cfg = RuntimeConfig::new(Preemption::KbTimer, Duration::ZERO, programs::FIB);
        assert!(Runtime::start(&sim, cfg, w.clone(), None).is_err());
        let mut mix = programs::FIB;
        mix.ipc = 0.0;
        let cfg = RuntimeConfig::new(Preemption::None, Duration::from_us(1), mix);
        assert!(Runtime::start(&sim, cfg, w, None).is_err());
    }
}
