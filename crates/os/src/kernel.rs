//! The kernel: processes, threads, per-core run queues, the scheduler, and
//! the system calls of the OS model, user-interrupt set-up included.
//!
//! User-interrupt semantics follow §3.2–3.3 and §4.3–4.5 of the xUI paper:
//! * `register_handler` allocates the thread's UPID; `uintr_create_fd`
//!   makes a capability naming ⟨thread, user vector⟩; only a process that
//!   holds the capability can `register_sender`, which is the only way a
//!   UITT entry is made. `senduipi` with any other index faults (#GP, and
//!   the sender gets SIGSEGV).
//! * Switching a thread out sets SN in its UPID (senders stop sending IPIs),
//!   saves its KB_Timer and clears `forwarded_active`; switching it in sets
//!   NDST, clears SN, reposts anything posted meanwhile as a self-IPI,
//!   restores the KB_Timer (delivering at once if the deadline passed) and
//!   delivers forwarded vectors the kernel parked in its DUPID.
//! * Hardware safepoint mode delivers only when the thread executes a
//!   safepoint.
//!
//! Invariants: every thread is in exactly one place (running on one core,
//! on one run queue, or blocked); a posted user vector is delivered exactly
//! once; ids are dense and allocation is deterministic.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use nextio_engine::Counters;
use nextio_hw::interrupt::apic::{Arrival, KbTimerState, LocalApic, TimerMode, VectorSet};
use nextio_hw::interrupt::uipi::{
    SendOutcome, USER_VECTORS, UiFault, UiState, UittEntry, Upid, UpidAddr, post_and_notify,
};
use thiserror::Error;

use crate::costs::OsCosts;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(pub usize);
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tid(pub usize);
/// A user-interrupt file descriptor: the capability to send to one
/// ⟨thread, vector⟩.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UintrFd(pub usize);

pub const SIGALRM: u8 = 14;
pub const SIGSEGV: u8 = 11;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum OsError {
    #[error("no such process {0:?}")]
    NoProcess(Pid),
    #[error("no such thread {0:?}")]
    NoThread(Tid),
    #[error("no such core {0}")]
    NoCore(usize),
    #[error("EPERM: process does not hold user-interrupt fd {0:?}")]
    NotPermitted(UintrFd),
    #[error("EINVAL: thread {0:?} has no user-interrupt handler")]
    NoHandler(Tid),
    #[error("EINVAL: user vector {0} out of range")]
    BadVector(u8),
    #[error("EBUSY: device vector {0} is already forwarded on this core")]
    VectorBusy(u8),
    #[error("thread {0:?} is not running")]
    NotRunning(Tid),
    #[error("EAGAIN: futex word changed")]
    FutexAgain,
    #[error(transparent)]
    Fault(#[from] UiFault),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    Running(usize),
    Ready,
    Blocked,
    Exited,
}

/// How a user interrupt reached its handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryPath {
    /// Directly to the running thread.
    Fast,
    /// Through the kernel, when the thread was resumed.
    Slow,
}

/// One user-interrupt delivery (the handler was invoked with `uv`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub tid: Tid,
    pub uv: u8,
    pub path: DeliveryPath,
}

struct Process {
    /// Address-space id: futex keys and memory are per address space.
    asid: usize,
    uitt: nextio_hw::interrupt::uipi::Uitt,
    fds: BTreeSet<UintrFd>,
    /// The words of the address space that futexes use.
    mem: BTreeMap<u64, u32>,
}

struct Thread {
    pid: Pid,
    home_core: usize,
    state: ThreadState,
    ui: UiState,
    upid: Option<UpidAddr>,
    kb: KbTimerState,
    kb_uv: Option<u8>,
    /// Device vectors forwarded to this thread (its `forwarded_active`).
    forwarded: VectorSet,
    /// Device User Posted Interrupt Descriptor: user vectors parked by the
    /// kernel while the thread was not running.
    dupid: u64,
    sig_pending: u64,
    signals_delivered: u64,
    itimer_interval_ps: Option<u64>,
    futex_wait: Option<(usize, u64)>,
}

struct Cpu {
    apic: LocalApic,
    current: Option<Tid>,
    runq: VecDeque<Tid>,
    /// Device vector → the thread it is forwarded to.
    forward_owner: BTreeMap<u8, Tid>,
}

/// The whole kernel state.
pub struct Kernel {
    pub costs: OsCosts,
    cpus: Vec<Cpu>,
    procs: Vec<Process>,
    threads: Vec<Thread>,
    upids: Vec<Upid>,
    fds: Vec<(Tid, u8)>,
    deliveries: Vec<Delivery>,
    counters: Counters,
}

impl Kernel {
    pub fn new(cores: usize, costs: OsCosts) -> Kernel {
        Kernel {
            costs,
            cpus: (0..cores)
                .map(|i| Cpu {
                    apic: LocalApic::new(i as u32),
                    current: None,
                    runq: VecDeque::new(),
                    forward_owner: BTreeMap::new(),
                })
                .collect(),
            procs: Vec::new(),
            threads: Vec::new(),
            upids: Vec::new(),
            fds: Vec::new(),
            deliveries: Vec::new(),
            counters: Counters::new(),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// Every user-interrupt delivery so far, in order.
    pub fn deliveries(&self) -> &[Delivery] {
        &self.deliveries
    }
    pub fn apic(&self, core: usize) -> Option<&LocalApic> {
        self.cpus.get(core).map(|c| &c.apic)
    }
    pub fn current(&self, core: usize) -> Option<Tid> {
        self.cpus.get(core).and_then(|c| c.current)
    }
    pub fn state(&self, tid: Tid) -> Result<ThreadState, OsError> {
        Ok(self.thread(tid)?.state)
    }
    pub fn ui_state(&self, tid: Tid) -> Result<UiState, OsError> {
        Ok(self.thread(tid)?.ui)
    }
    pub fn upid(&self, tid: Tid) -> Option<Upid> {
        self.threads
            .get(tid.0)
            .and_then(|t| t.upid)
            .map(|a| self.upids[a.0])
    }

    fn thread(&self, tid: Tid) -> Result<&Thread, OsError> {
        self.threads.get(tid.0).ok_or(OsError::NoThread(tid))
    }
    fn thread_mut(&mut self, tid: Tid) -> Result<&mut Thread, OsError> {
        self.threads.get_mut(tid.0).ok_or(OsError::NoThread(tid))
    }
    fn check_core(&self, core: usize) -> Result<(), OsError> {
        if core < self.cpus.len() {
            Ok(())
        } else {
            Err(OsError::NoCore(core))
        }
    }

    // ---- processes, threads, scheduling -------------------------------

    /// A new process with its own address space.
    pub fn create_process(&mut self) -> Pid {
        let asid = self.procs.len();
        self.procs.push(Process {
            asid,
            uitt: Default::default(),
            fds: BTreeSet::new(),
            mem: BTreeMap::new(),
        });
        Pid(asid)
    }

    /// A new thread of `pid`, pinned to `core`, put on that run queue.
    pub fn create_thread(&mut self, pid: Pid, core: usize) -> Result<Tid, OsError> {
        if pid.0 >= self.procs.len() {
            return Err(OsError::NoProcess(pid));
        }
        self.check_core(core)?;
        let tid = Tid(self.threads.len());
        self.threads.push(Thread {
            pid,
            home_core: core,
            state: ThreadState::Ready,
            ui: UiState::default(),
            upid: None,
            kb: KbTimerState::default(),
            kb_uv: None,
            forwarded: VectorSet::default(),
            dupid: 0,
            sig_pending: 0,
            signals_delivered: 0,
            itimer_interval_ps: None,
            futex_wait: None,
        });
        self.cpus[core].runq.push_back(tid);
        Ok(tid)
    }

    /// Run the scheduler on `core`: the running thread (if still runnable)
    /// goes to the back of the run queue and the head runs. Returns the
    /// thread now running and the cycles the switch cost.
    pub fn schedule(
        &mut self,
        core: usize,
        now_cycles: u64,
    ) -> Result<(Option<Tid>, u64), OsError> {
        self.check_core(core)?;
        let prev = self.cpus[core].current;
        let next = self.cpus[core].runq.pop_front();
        let Some(next) = next else {
            return Ok((prev, 0));
        };
        if let Some(p) = prev {
            self.switch_out(core, p);
            self.threads[p.0].state = ThreadState::Ready;
            self.cpus[core].runq.push_back(p);
        }
        self.switch_in(core, next, now_cycles);
        self.counters.inc("context_switches");
        Ok((Some(next), self.costs.context_switch_cycles))
    }

    /// The running thread on `core` blocks (system call that sleeps);
    /// the next ready thread, if any, runs.
    pub fn block_current(&mut self, core: usize, now_cycles: u64) -> Result<Option<Tid>, OsError> {
        self.check_core(core)?;
        if let Some(p) = self.cpus[core].current.take() {
            self.switch_out(core, p);
            self.threads[p.0].state = ThreadState::Blocked;
        }
        if let Some(n) = self.cpus[core].runq.pop_front() {
            self.switch_in(core, n, now_cycles);
            self.counters.inc("context_switches");
            Ok(Some(n))
        } else {
            Ok(None)
        }
    }

    /// Make a blocked thread ready on its home core.
    pub fn wake(&mut self, tid: Tid) -> Result<(), OsError> {
        let t = self.thread_mut(tid)?;
        if t.state == ThreadState::Blocked {
            t.state = ThreadState::Ready;
            t.futex_wait = None;
            let c = t.home_core;
            self.cpus[c].runq.push_back(tid);
        }
        Ok(())
    }

    fn switch_out(&mut self, core: usize, tid: Tid) {
        let cpu = &mut self.cpus[core];
        cpu.current = None;
        let t = &mut self.threads[tid.0];
        if let Some(a) = t.upid {
            self.upids[a.0].set_sn(true);
        }
        t.kb = cpu.apic.kb_timer.save();
        cpu.apic.forwarded_active = VectorSet::default();
    }

    fn switch_in(&mut self, core: usize, tid: Tid, now_cycles: u64) {
        let cpu = &mut self.cpus[core];
        cpu.current = Some(tid);
        let t = &mut self.threads[tid.0];
        t.state = ThreadState::Running(core);
        let mut late = 0u64;
        if let Some(a) = t.upid {
            let u = &mut self.upids[a.0];
            u.set_ndst(cpu.apic.apic_id);
            u.set_sn(false);
            // Repost what was posted while suppressed: a self-IPI whose
            // notification processing moves PIR to UIRR.
            if u.on() || u.pir() != 0 {
                late |= u.take_pir();
                self.counters.inc("uipi.reposted");
            }
        }
        cpu.apic.kb_timer.restore(t.kb);
        if let (Some(uv), Some(d)) = (t.kb_uv, t.kb.deadline_cycles)
            && d <= now_cycles
        {
            cpu.apic.kb_timer.expire(now_cycles);
            late |= 1 << uv;
            self.counters.inc("kb_timer.late_on_resume");
        }
        cpu.apic.forwarded_active = t.forwarded;
        late |= std::mem::take(&mut t.dupid);
        if late != 0 {
            t.ui.recognise(late);
            self.drain_deliveries(tid, false, DeliveryPath::Slow);
        }
        if t_signals(&self.threads[tid.0]) {
            self.counters.inc("signals.pending_on_resume");
        }
    }

    // ---- signals, timers, futex --------------------------------------

    /// `kill`/`tgkill`: make `sig` pending on `tid`.
    pub fn sys_kill(&mut self, tid: Tid, sig: u8) -> Result<(), OsError> {
        let t = self.thread_mut(tid)?;
        t.sig_pending |= 1 << (sig % 64);
        Ok(())
    }
    /// Deliver pending signals on return to user mode; returns the signals
    /// and the cycles they cost the thread.
    pub fn deliver_signals(&mut self, tid: Tid) -> Result<(Vec<u8>, u64), OsError> {
        let per = self.costs.signal_cycles();
        let t = self.thread_mut(tid)?;
        let mut sigs = Vec::new();
        while t.sig_pending != 0 {
            let s = t.sig_pending.trailing_zeros() as u8;
            t.sig_pending &= !(1 << s);
            sigs.push(s);
        }
        t.signals_delivered += sigs.len() as u64;
        let cost = per * sigs.len() as u64;
        Ok((sigs, cost))
    }
    pub fn signals_pending(&self, tid: Tid) -> Result<u64, OsError> {
        Ok(self.thread(tid)?.sig_pending)
    }
    /// `setitimer(ITIMER_REAL)`: the caller (the timing layer) fires it
    /// every `interval_ps` with [`Kernel::itimer_expire`].
    pub fn sys_setitimer(&mut self, tid: Tid, interval_ps: Option<u64>) -> Result<u64, OsError> {
        self.thread_mut(tid)?.itimer_interval_ps = interval_ps.filter(|p| *p > 0);
        Ok(self.costs.syscall_cycles + self.costs.hrtimer_cycles)
    }
    pub fn itimer_interval(&self, tid: Tid) -> Option<u64> {
        self.threads.get(tid.0).and_then(|t| t.itimer_interval_ps)
    }
    /// The interval timer expired: SIGALRM becomes pending.
    pub fn itimer_expire(&mut self, tid: Tid) -> Result<(), OsError> {
        if self.thread(tid)?.itimer_interval_ps.is_some() {
            self.sys_kill(tid, SIGALRM)?;
        }
        Ok(())
    }
    /// `nanosleep`: the running thread on `core` blocks until the caller
    /// wakes it with [`Kernel::wake`] when its hrtimer expires.
    pub fn sys_nanosleep(&mut self, core: usize, now_cycles: u64) -> Result<u64, OsError> {
        self.block_current(core, now_cycles)?;
        Ok(self.costs.syscall_cycles + self.costs.hrtimer_cycles)
    }
    /// Write a word of `pid`'s address space (user code storing).
    pub fn store(&mut self, pid: Pid, addr: u64, val: u32) -> Result<(), OsError> {
        self.procs
            .get_mut(pid.0)
            .ok_or(OsError::NoProcess(pid))?
            .mem
            .insert(addr, val);
        Ok(())
    }
    /// `futex(FUTEX_WAIT)`: block the running thread on `core` if the word
    /// at `addr` still holds `expected`.
    pub fn futex_wait(
        &mut self,
        core: usize,
        addr: u64,
        expected: u32,
        now_cycles: u64,
    ) -> Result<(), OsError> {
        self.check_core(core)?;
        let tid = self.cpus[core]
            .current
            .ok_or(OsError::NotRunning(Tid(usize::MAX)))?;
        let pid = self.threads[tid.0].pid;
        let p = &self.procs[pid.0];
        if p.mem.get(&addr).copied().unwrap_or(0) != expected {
            return Err(OsError::FutexAgain);
        }
        let key = (p.asid, addr);
        self.block_current(core, now_cycles)?;
        self.threads[tid.0].futex_wait = Some(key);
        Ok(())
    }
    /// `futex(FUTEX_WAKE)`: wake up to `n` waiters on `addr` in `pid`'s
    /// address space, oldest first; returns how many woke.
    pub fn futex_wake(&mut self, pid: Pid, addr: u64, n: usize) -> Result<usize, OsError> {
        let asid = self.procs.get(pid.0).ok_or(OsError::NoProcess(pid))?.asid;
        let waiters: Vec<Tid> = (0..self.threads.len())
            .map(Tid)
            .filter(|t| self.threads[t.0].futex_wait == Some((asid, addr)))
            .take(n)
            .collect();
        for t in &waiters {
            self.wake(*t)?;
        }
        Ok(waiters.len())
    }

    // ---- user-interrupt system calls ----------------------------------

    /// `uintr_register_handler`: allocate the thread's UPID and install the
    /// handler; delivery is enabled (UIF set) on return to user mode.
    pub fn sys_register_handler(&mut self, tid: Tid, handler: u64) -> Result<(), OsError> {
        let core = self.thread(tid)?.home_core;
        let running = matches!(self.thread(tid)?.state, ThreadState::Running(_));
        let apic = &self.cpus[core].apic;
        let mut upid = Upid::new(apic.uinv, apic.apic_id);
        upid.set_sn(!running);
        let addr = UpidAddr(self.upids.len());
        self.upids.push(upid);
        let t = self.thread_mut(tid)?;
        t.upid = Some(addr);
        t.ui.handler = handler.max(1);
        t.ui.uif = true;
        Ok(())
    }
    /// `uintr_create_fd`: a capability to interrupt `tid` with `uv`, held by
    /// `tid`'s process.
    pub fn sys_uintr_create_fd(&mut self, tid: Tid, uv: u8) -> Result<UintrFd, OsError> {
        if uv >= USER_VECTORS {
            return Err(OsError::BadVector(uv));
        }
        let t = self.thread(tid)?;
        if t.upid.is_none() {
            return Err(OsError::NoHandler(tid));
        }
        let pid = t.pid;
        let fd = UintrFd(self.fds.len());
        self.fds.push((tid, uv));
        self.procs[pid.0].fds.insert(fd);
        Ok(fd)
    }
    /// Pass a capability to another process (as over a Unix socket); only
    /// a holder can.
    pub fn sys_share_fd(&mut self, from: Pid, fd: UintrFd, to: Pid) -> Result<(), OsError> {
        let holds = self
            .procs
            .get(from.0)
            .ok_or(OsError::NoProcess(from))?
            .fds
            .contains(&fd);
        if !holds {
            return Err(OsError::NotPermitted(fd));
        }
        self.procs
            .get_mut(to.0)
            .ok_or(OsError::NoProcess(to))?
            .fds
            .insert(fd);
        Ok(())
    }
    /// `uintr_register_sender`: make a UITT entry for `fd` in the caller's
    /// process; returns the `senduipi` index.
    pub fn sys_register_sender(&mut self, tid: Tid, fd: UintrFd) -> Result<usize, OsError> {
        let pid = self.thread(tid)?.pid;
        if !self.procs[pid.0].fds.contains(&fd) {
            self.counters.inc("uipi.register_denied");
            return Err(OsError::NotPermitted(fd));
        }
        let (target, uv) = self.fds[fd.0];
        let upid = self.threads[target.0]
            .upid
            .ok_or(OsError::NoHandler(target))?;
        Ok(self.procs[pid.0].uitt.insert(UittEntry { upid, uv }))
    }

    /// The `senduipi index` instruction executed by running thread `tid`.
    /// A missing UITT entry is #GP: the sender gets SIGSEGV. On `Ipi`, the
    /// caller delivers the IPI to core `ndst` with [`Kernel::interrupt`]
    /// after the interconnect delay.
    pub fn senduipi(&mut self, tid: Tid, index: usize) -> Result<SendOutcome, OsError> {
        let t = self.thread(tid)?;
        if !matches!(t.state, ThreadState::Running(_)) {
            return Err(OsError::NotRunning(tid));
        }
        let pid = t.pid;
        let Some(e) = self.procs[pid.0].uitt.get(index) else {
            self.counters.inc("uipi.fault");
            self.sys_kill(tid, SIGSEGV)?;
            return Err(UiFault::InvalidUittEntry(index).into());
        };
        let out = post_and_notify(&mut self.upids[e.upid.0], e.uv)?;
        self.counters.inc(match out {
            SendOutcome::Ipi { .. } => "uipi.ipi",
            SendOutcome::Posted { suppressed: true } => "uipi.suppressed",
            SendOutcome::Posted { suppressed: false } => "uipi.coalesced",
        });
        Ok(out)
    }

    /// An interrupt message with `vector` arrives at `core`'s APIC while
    /// the current thread is at a safepoint or not. Returns deliveries made.
    pub fn interrupt(
        &mut self,
        core: usize,
        vector: u8,
        at_safepoint: bool,
    ) -> Result<Vec<Delivery>, OsError> {
        self.check_core(core)?;
        let cur = self.cpus[core].current;
        match self.cpus[core].apic.arrive(vector) {
            Arrival::UipiNotification => {
                // Notification processing against the *current* thread's
                // UPID; a UIPI for a thread switched out meanwhile stays
                // posted in its own UPID until it resumes.
                let Some(tid) = cur else {
                    self.counters.inc("uipi.no_thread");
                    return Ok(vec![]);
                };
                if let Some(a) = self.threads[tid.0].upid {
                    let pir = self.upids[a.0].take_pir();
                    self.threads[tid.0].ui.recognise(pir);
                }
                Ok(self.drain_deliveries(tid, at_safepoint, DeliveryPath::Fast))
            }
            Arrival::ForwardedFast { uv } => {
                let Some(tid) = cur else {
                    return Ok(vec![]);
                };
                self.threads[tid.0].ui.recognise(1 << uv);
                self.counters.inc("forward.fast");
                Ok(self.drain_deliveries(tid, at_safepoint, DeliveryPath::Fast))
            }
            Arrival::ForwardedSlow { vector } => {
                // Conventional interrupt: the kernel parks it in the DUPID.
                self.counters.inc("forward.slow");
                if let Some(&owner) = self.cpus[core].forward_owner.get(&vector) {
                    let uv = self.cpus[core].apic.forwarded_uv(vector);
                    self.threads[owner.0].dupid |= 1 << uv;
                    if self.threads[owner.0].state == ThreadState::Blocked {
                        self.wake(owner)?;
                    }
                }
                Ok(vec![])
            }
            Arrival::Kernel { .. } => {
                self.counters.inc("irq.kernel");
                Ok(vec![])
            }
        }
    }

    fn drain_deliveries(
        &mut self,
        tid: Tid,
        at_safepoint: bool,
        path: DeliveryPath,
    ) -> Vec<Delivery> {
        let mut out = Vec::new();
        // The handler runs and returns with uiret; further pending vectors
        // are delivered back to back.
        while let Some(uv) = self.threads[tid.0].ui.deliver(at_safepoint) {
            let d = Delivery { tid, uv, path };
            self.deliveries.push(d);
            out.push(d);
            self.threads[tid.0].ui.uiret();
        }
        out
    }

    /// The running thread executes a safepoint instruction: in safepoint
    /// mode, pending user interrupts are delivered here.
    pub fn safepoint(&mut self, tid: Tid) -> Result<Vec<Delivery>, OsError> {
        self.thread(tid)?;
        Ok(self.drain_deliveries(tid, true, DeliveryPath::Fast))
    }
    /// `clui` / `stui` on the running thread; `stui` delivers anything
    /// pending.
    pub fn clui(&mut self, tid: Tid) -> Result<(), OsError> {
        self.thread_mut(tid)?.ui.clui();
        Ok(())
    }
    pub fn stui(&mut self, tid: Tid) -> Result<Vec<Delivery>, OsError> {
        self.thread_mut(tid)?.ui.stui();
        Ok(self.drain_deliveries(tid, false, DeliveryPath::Fast))
    }

    /// xUI: enable hardware safepoint mode for `tid` (a system call).
    pub fn sys_set_safepoint_mode(&mut self, tid: Tid, on: bool) -> Result<(), OsError> {
        self.thread_mut(tid)?.ui.safepoint_mode = on;
        Ok(())
    }

    /// xUI `enable_kb_timer`: the KB_Timer of `tid` delivers user vector
    /// `uv`.
    pub fn sys_enable_kb_timer(&mut self, tid: Tid, uv: u8) -> Result<(), OsError> {
        if uv >= USER_VECTORS {
            return Err(OsError::BadVector(uv));
        }
        if self.thread(tid)?.upid.is_none() {
            return Err(OsError::NoHandler(tid));
        }
        let t = self.thread_mut(tid)?;
        t.kb_uv = Some(uv);
        t.kb.enabled = true;
        t.kb.vector = uv;
        if let ThreadState::Running(c) = t.state {
            self.cpus[c].apic.kb_timer.configure(true, uv);
        }
        Ok(())
    }
    /// The `set_timer(cycles, mode)` instruction by running thread `tid`.
    pub fn set_timer(
        &mut self,
        tid: Tid,
        now_cycles: u64,
        cycles: u64,
        mode: TimerMode,
    ) -> Result<bool, OsError> {
        let ThreadState::Running(c) = self.thread(tid)?.state else {
            return Err(OsError::NotRunning(tid));
        };
        Ok(self.cpus[c]
            .apic
            .kb_timer
            .set_timer(now_cycles, cycles, mode))
    }
    pub fn clear_timer(&mut self, tid: Tid) -> Result<(), OsError> {
        let ThreadState::Running(c) = self.thread(tid)?.state else {
            return Err(OsError::NotRunning(tid));
        };
        self.cpus[c].apic.kb_timer.clear_timer();
        Ok(())
    }
    /// The KB_Timer deadline on `core`, for the timing layer to schedule.
    pub fn kb_deadline(&self, core: usize) -> Option<u64> {
        self.cpus.get(core).and_then(|c| c.apic.kb_timer.deadline())
    }
    /// The TSC of `core` reached its KB_Timer deadline: deliver to the
    /// current thread directly (no UPID, §4.3).
    pub fn kb_timer_tick(
        &mut self,
        core: usize,
        now_cycles: u64,
        at_safepoint: bool,
    ) -> Result<Vec<Delivery>, OsError> {
        self.check_core(core)?;
        let Some(uv) = self.cpus[core].apic.kb_timer.expire(now_cycles) else {
            return Ok(vec![]);
        };
        let Some(tid) = self.cpus[core].current else {
            self.counters.inc("kb_timer.kernel_trap");
            return Ok(vec![]);
        };
        self.threads[tid.0].ui.recognise(1 << uv);
        Ok(self.drain_deliveries(tid, at_safepoint, DeliveryPath::Fast))
    }

    /// xUI: forward device `vector` on `tid`'s core to `tid` as user
    /// vector `uv` (allocates its DUPID state).
    pub fn sys_register_forward(&mut self, tid: Tid, vector: u8, uv: u8) -> Result<(), OsError> {
        if uv >= USER_VECTORS {
            return Err(OsError::BadVector(uv));
        }
        if self.thread(tid)?.upid.is_none() {
            return Err(OsError::NoHandler(tid));
        }
        let core = self.thread(tid)?.home_core;
        let cpu = &mut self.cpus[core];
        if cpu.forward_owner.contains_key(&vector) || vector == cpu.apic.uinv {
            return Err(OsError::VectorBusy(vector));
        }
        cpu.forward_owner.insert(vector, tid);
        cpu.apic.enable_forwarding(vector, uv);
        let running = cpu.current == Some(tid);
        if running {
            cpu.apic.forwarded_active.set(vector, true);
        }
        self.threads[tid.0].forwarded.set(vector, true);
        Ok(())
    }
}

fn t_signals(t: &Thread) -> bool {
    t.sig_pending != 0
}
