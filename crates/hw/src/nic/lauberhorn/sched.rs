//! Which channel gets which request (§6). The NIC knows where every
//! core's load waits: in its kernel channel (the kernel dispatch thread,
//! which takes a request for *any* process and switches to it) or in a
//! process's user channel (the user loop, which takes only that
//! process's requests and needs no kernel at all).
//!
//! Policy, in order, when a request is queued for process `s`:
//! 1. a held user channel of `s` takes it (the fast path);
//! 2. else a held kernel channel takes it (the kernel switches to `s`);
//! 3. else, if allowed, a core idling in another process's user loop with
//!    nothing queued is told YIELDNOW, so it returns to its kernel channel;
//! 4. else a retired core is woken by interrupt to rejoin the pool;
//!
//! and the request waits in `s`'s queue (bounded; `drop.queue_full`).
//! A kernel channel idle for [`LauberhornConfig::retire_idle_ps`] is told
//! RETIRE while more than `min_rpc_cores` cores serve RPCs (and, if
//! [`LauberhornConfig::release_idle_loops`], a user loop idle that long is
//! told YIELDNOW first); every held load gets TRYAGAIN after
//! [`LauberhornConfig::tryagain_ps`].

use nextio_engine::Duration;

use super::layout::RxKind;
use super::{CoreMode, LauberhornNic, Request, T_RETIRE, regs, timer_token};
use crate::device::DeviceCtx;

impl LauberhornNic {
    fn held(&self, ch: usize) -> bool {
        self.channels
            .get(ch)
            .is_some_and(|c| c.rx.held.is_some_and(|h| !h.delivering))
    }

    /// Cores serving RPCs (polling or running in kernel or user mode).
    fn rpc_cores(&self) -> usize {
        self.cores
            .iter()
            .filter(|m| matches!(m, CoreMode::Kernel | CoreMode::User(_)))
            .count()
    }

    /// Queue `req` for its process and find it a core.
    pub(super) fn enqueue(&mut self, cx: &mut DeviceCtx<'_>, req: Request) {
        let slot = req.slot;
        let Some(q) = self.queues.get_mut(slot) else {
            self.counters.inc("drop.no_slot");
            return;
        };
        if q.len() >= self.cfg.queue_depth {
            self.counters.inc("drop.queue_full");
            return;
        }
        q.push_back(req);
        self.dispatch(cx, slot);
    }

    /// Find a core for the head of `slot`'s queue.
    fn dispatch(&mut self, cx: &mut DeviceCtx<'_>, slot: usize) {
        let layout = self.layout.expect("attached");
        let cores = self.cfg.cores;
        if let Some(ch) = (0..cores)
            .map(|c| layout.user_channel(slot, c))
            .find(|&ch| self.held(ch))
        {
            self.fill_channel(cx, ch);
            return;
        }
        if let Some(ch) = (0..cores)
            .map(|c| layout.kernel_channel(c))
            .find(|&ch| self.held(ch))
        {
            self.fill_channel(cx, ch);
            return;
        }
        if self.cfg.yield_idle_loops {
            let idle_loop = (0..self.cfg.slots)
                .filter(|&s| s != slot && self.queues[s].is_empty())
                .flat_map(|s| (0..cores).map(move |c| (s, c)))
                .map(|(s, c)| layout.user_channel(s, c))
                .find(|&ch| self.held(ch) && self.channels[ch].direct.is_empty());
            if let Some(ch) = idle_loop {
                self.deliver(cx, ch, RxKind::YieldNow, None);
                return;
            }
        }
        self.wake_core(cx);
    }

    /// Interrupt a retired core so its kernel brings it back.
    fn wake_core(&mut self, cx: &mut DeviceCtx<'_>) {
        if !self.waking.is_empty() {
            return;
        }
        if let Some(c) = (0..self.cfg.cores).find(|&c| self.cores[c] == CoreMode::Retired) {
            self.waking.insert(c);
            self.counters.inc("wakes");
            cx.msix(c as u16);
        }
    }

    /// Give the held load of `ch` whatever is for it, or wait.
    pub(super) fn fill_channel(&mut self, cx: &mut DeviceCtx<'_>, ch: usize) {
        if !self.held(ch) {
            return;
        }
        let layout = self.layout.expect("attached");
        let (core, slot) = layout.owner(ch);
        if let Some(m) = self.channels[ch].direct.pop_front() {
            self.deliver(cx, ch, m.kind, Some(m));
            return;
        }
        match slot {
            Some(s) => {
                if let Some(r) = self.queues[s].pop_front() {
                    self.deliver(cx, ch, r.kind, Some(r));
                    return;
                }
                let others_wait = (0..self.cfg.slots).any(|o| o != s && !self.queues[o].is_empty());
                if self.cfg.yield_idle_loops && others_wait {
                    self.deliver(cx, ch, RxKind::YieldNow, None);
                    return;
                }
                self.arm_tryagain(cx, ch);
                if self.cfg.release_idle_loops {
                    let epoch = self.channels[ch].rx.epoch;
                    cx.set_timer(
                        Duration::from_ps(self.cfg.retire_idle_ps),
                        timer_token(T_RETIRE, ch, epoch),
                    );
                }
            }
            None => {
                let oldest = (0..self.cfg.slots)
                    .filter_map(|s| self.queues[s].front().map(|r| (r.arrived, r.seq, s)))
                    .min();
                if let Some((_, _, s)) = oldest {
                    let r = self.queues[s].pop_front().expect("has a head");
                    self.idle_since[core] = None;
                    self.deliver(cx, ch, r.kind, Some(r));
                    return;
                }
                self.arm_tryagain(cx, ch);
                if self.idle_since[core].is_none() {
                    self.idle_since[core] = Some(cx.now());
                }
                let epoch = self.channels[ch].rx.epoch;
                cx.set_timer(
                    Duration::from_ps(self.cfg.retire_idle_ps),
                    timer_token(T_RETIRE, ch, epoch),
                );
            }
        }
    }

    /// The RETIRE timer of channel `ch` fired: a kernel channel is sent
    /// RETIRE, a user loop (when released) YIELDNOW.
    pub(super) fn retire_timer(&mut self, cx: &mut DeviceCtx<'_>, ch: usize, epoch: u32) {
        let layout = self.layout.expect("attached");
        let (core, slot) = layout.owner(ch);
        let Some(c) = self.channels.get(ch) else {
            return;
        };
        if c.rx.epoch != epoch || !self.held(ch) {
            return;
        }
        if let Some(s) = slot {
            if self.cfg.release_idle_loops
                && self.queues[s].is_empty()
                && self.channels[ch].direct.is_empty()
            {
                self.counters.inc("released_loops");
                self.deliver(cx, ch, RxKind::YieldNow, None);
            }
            return;
        }
        if self.rpc_cores() > self.cfg.min_rpc_cores {
            self.cores[core] = CoreMode::Retired;
            self.idle_since[core] = None;
            self.deliver(cx, ch, RxKind::Retire, None);
        }
    }

    /// A core's load reached its kernel channel (`slot` None) or the user
    /// channel of `slot`: it is in that mode now, and whatever it was
    /// given in its other channels is done.
    pub(super) fn note_poll(&mut self, cx: &mut DeviceCtx<'_>, core: usize, slot: Option<usize>) {
        let layout = self.layout.expect("attached");
        let mode = match slot {
            Some(s) => CoreMode::User(s),
            None => CoreMode::Kernel,
        };
        self.waking.remove(&core);
        if self.cores[core] == mode {
            return;
        }
        self.cores[core] = mode;
        let here = match slot {
            Some(s) => layout.user_channel(s, core),
            None => layout.kernel_channel(core),
        };
        let others: Vec<usize> = std::iter::once(layout.kernel_channel(core))
            .chain((0..self.cfg.slots).map(|s| layout.user_channel(s, core)))
            .filter(|&ch| ch != here)
            .collect();
        for ch in others {
            for q in 0..2 {
                self.retire_rx(cx.now(), ch, q);
            }
            // A load left held there (the core moved on without it being
            // answered) cannot be outstanding: a core waits in one load.
            self.channels[ch].rx.held = None;
        }
    }

    // ---- the kernel's registers -----------------------------------------

    pub(super) fn register_write(&mut self, cx: &mut DeviceCtx<'_>, offset: u64, data: &[u8]) {
        let Ok(word) = <[u8; 4]>::try_from(data.get(..4).unwrap_or(&[])) else {
            self.counters.inc("bad_register_writes");
            return;
        };
        let v = u32::from_le_bytes(word);
        let index = ((offset % 0x400) / regs::STRIDE) as usize;
        match offset {
            o if (regs::CORE_CTRL_BASE..regs::QUEUED_BASE).contains(&o) => {
                let core = ((o - regs::CORE_CTRL_BASE) / regs::STRIDE) as usize;
                if core >= self.cfg.cores {
                    self.counters.inc("bad_register_writes");
                    return;
                }
                match v {
                    regs::ONLINE => {
                        self.waking.remove(&core);
                        if matches!(self.cores[core], CoreMode::Offline | CoreMode::Retired) {
                            self.cores[core] = CoreMode::Kernel;
                        }
                    }
                    regs::PREEMPT => self.preempt(cx, core),
                    regs::OFFLINE => self.cores[core] = CoreMode::Offline,
                    _ => self.counters.inc("bad_register_writes"),
                }
            }
            o if o >= regs::RUNNING_BASE && index < self.cfg.cores => {
                self.counters.inc("sched_updates");
            }
            _ => self.counters.inc("bad_register_writes"),
        }
    }

    pub(super) fn register_read(&self, offset: u64, out: &mut [u8]) {
        if (regs::QUEUED_BASE..regs::RUNNING_BASE).contains(&offset) {
            let slot = ((offset - regs::QUEUED_BASE) / regs::STRIDE) as usize;
            let n = self.queued(slot) as u32;
            for (o, b) in out.iter_mut().zip(n.to_le_bytes()) {
                *o = b;
            }
        }
    }

    /// The kernel wants core `core`: interrupt it, and let a load it is
    /// stalled in return (with YIELDNOW) so the interrupt can be taken.
    fn preempt(&mut self, cx: &mut DeviceCtx<'_>, core: usize) {
        let layout = self.layout.expect("attached");
        self.counters.inc("preemptions");
        cx.msix(core as u16);
        let chans: Vec<usize> = std::iter::once(layout.kernel_channel(core))
            .chain((0..self.cfg.slots).map(|s| layout.user_channel(s, core)))
            .collect();
        for ch in chans {
            if self.held(ch) {
                self.deliver(cx, ch, RxKind::YieldNow, None);
            }
        }
    }
}
