//! A cache-coherent interconnect between a host's chip and devices that
//! home memory on it — ECI on Enzian, CXL.mem with back-invalidation on an
//! x86 server: the second kind of interconnect beside the PCIe fabric.
//!
//! A device attached as a home ([`CoherentFabric::attach_home`]) owns a
//! window of physical addresses. Cores reach it with ordinary cacheable
//! loads and stores ([`CoherentFabric::load`], [`CoherentFabric::store`],
//! [`CoherentFabric::load_lines`]): an access the chip's caches can serve
//! costs a cache hit; a miss (or a store to a line held shared) becomes a
//! request to the home, which answers with the line and a grant when it
//! chooses — a load can stay *held* until the home has something to say,
//! or until the core's memory system gives up with a bus error
//! ([`CoherentConfig::load_timeout_ps`]). The home may invalidate lines
//! the chip holds, discarding them or fetching modified data back
//! (clean-invalidate): the copies in every core's L1d and L2 and in the
//! LLC are dropped, so the next access misses and asks the home again.
//!
//! Every message crosses the link one way in its latency plus its
//! serialisation behind earlier messages in the same direction; the
//! directory ([`directory`]) keeps the chip's state and bytes of each line.
//!
//! Invariants: every request is answered exactly once or ends in a bus
//! error (`requests == responses + bus_errors + pending`); a core's access
//! moves bytes only once the chip holds the line in a state that allows
//! it; the chip's copy of a line is dropped before its home learns that an
//! invalidation is done; nothing reaches a device within the call that
//! caused it.

pub mod config;
mod directory;
pub mod home;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use nextio_engine::{Category, Counters, Duration, Mailbox, Notify, Sim, Time};
use thiserror::Error;

pub use config::{CoherentConfig, CoherentProtocol};
pub use directory::ChipState;
pub use home::{
    CoherentHome, Grant, HomeError, HomeEvent, HomePort, HomeWindow, Intent, Invalidate,
    LineRequest,
};

use crate::cache::AccessKind;
use crate::cpu::CoreCtx;
use crate::fabric::{DeviceHandle, Fabric};
use crate::mem::{AccessError, PhysAddr, VirtAddr};
use crate::memory::{MemorySystemError, SharedMemory};
use directory::Directory;

/// Why a coherent access or attachment failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoherentError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Memory(#[from] MemorySystemError),
    #[error("bus error: the home of line {:#x} did not answer within the load timeout", .0.0)]
    BusError(PhysAddr),
    #[error("invalid coherent link: {0}")]
    Config(String),
}

/// Something a core waits for.
enum Reply {
    /// The line is in the chip now.
    Filled,
    /// The memory system gave up.
    Timeout,
}

struct Pending {
    home: usize,
    line: u64,
    core: usize,
    intent: Intent,
    reply: Rc<Mailbox<Reply>>,
}

struct Home {
    window: HomeWindow,
    dispatch: Rc<dyn Fn(HomeEvent)>,
}

struct State {
    homes: Vec<Home>,
    next_window: u64,
    dir: Directory,
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    /// When each direction of the link is free again.
    to_home_free: Time,
    to_chip_free: Time,
    counters: Counters,
}

pub(crate) struct Inner {
    sim: Sim,
    memory: SharedMemory,
    pub(crate) cfg: CoherentConfig,
    state: RefCell<State>,
}

/// A host's coherent link and the homes on it. Cheap to clone.
#[derive(Clone)]
pub struct CoherentFabric(Rc<Inner>);

impl CoherentFabric {
    /// A link in front of `memory`, whose caches must use the link's lines.
    pub fn new(
        sim: &Sim,
        memory: SharedMemory,
        cfg: CoherentConfig,
    ) -> Result<CoherentFabric, CoherentError> {
        cfg.validate().map_err(CoherentError::Config)?;
        let chip_line = memory.borrow().caches.line_bytes();
        if chip_line != cfg.line_bytes {
            return Err(CoherentError::Config(format!(
                "{} moves {} B lines, the chip's caches hold {chip_line} B lines",
                cfg.protocol, cfg.line_bytes
            )));
        }
        let next_window = cfg.window_base;
        Ok(CoherentFabric(Rc::new(Inner {
            sim: sim.clone(),
            memory,
            cfg,
            state: RefCell::new(State {
                homes: Vec::new(),
                next_window,
                dir: Directory::default(),
                next_id: 0,
                pending: BTreeMap::new(),
                to_home_free: Time::ZERO,
                to_chip_free: Time::ZERO,
                counters: Counters::new(),
            }),
        })))
    }

    pub fn config(&self) -> &CoherentConfig {
        &self.0.cfg
    }

    /// The link's counters: requests, responses, invalidations,
    /// write-backs, bus errors, refused home actions (`drop.*`).
    pub fn counters(&self) -> Counters {
        let st = self.0.state.borrow();
        let mut c = st.counters.clone();
        c.add("pending", st.pending.len() as u64);
        c
    }

    /// The chip's state of the line holding `pa`.
    pub fn chip_state(&self, pa: PhysAddr) -> ChipState {
        let line = pa.0 & !(self.0.cfg.line_bytes - 1);
        self.0.state.borrow().dir.state(line)
    }

    /// Make `handle`'s device (attached to `fabric`) the home of a fresh
    /// window of at least `bytes` (rounded up to 2 MiB).
    pub fn attach_home<D: CoherentHome + 'static>(
        &self,
        fabric: &Fabric,
        handle: &DeviceHandle<D>,
        bytes: u64,
    ) -> Result<HomeWindow, CoherentError> {
        let bytes = bytes
            .max(1)
            .checked_next_multiple_of(1 << 21)
            .ok_or_else(|| CoherentError::Config("window too large".into()))?;
        let base = {
            let mut st = self.0.state.borrow_mut();
            let base = st.next_window;
            self.0
                .memory
                .borrow_mut()
                .add_homed(PhysAddr(base), bytes)?;
            st.next_window = base + bytes;
            base
        };
        let window = HomeWindow {
            base: PhysAddr(base),
            bytes,
        };
        let (f, h) = (fabric.clone(), handle.clone());
        let dispatch: Rc<dyn Fn(HomeEvent)> =
            Rc::new(move |ev| f.act(&h, |d, cx| d.coherent_event(cx, ev)));
        let home = {
            let mut st = self.0.state.borrow_mut();
            st.homes.push(Home { window, dispatch });
            st.homes.len() - 1
        };
        handle.borrow_mut().home_attached(
            HomePort {
                inner: Rc::downgrade(&self.0),
                home,
            },
            window,
        );
        Ok(window)
    }

    // ---- the cores' side ----------------------------------------------

    /// Load `buf.len()` bytes at `va`, within one line of device-homed
    /// memory, in the core's current address space. A miss waits for the
    /// home; the wait is charged to `category`.
    pub async fn load(
        &self,
        ctx: &CoreCtx,
        va: VirtAddr,
        buf: &mut [u8],
        category: Category,
    ) -> Result<(), CoherentError> {
        let line = self
            .access(ctx, va, buf.len() as u64, Intent::Read, category)
            .await?;
        let st = self.0.state.borrow();
        let off = (va.0 % self.0.cfg.line_bytes) as usize;
        let data = &st.dir.get(line).expect("a line just made readable").data;
        buf.copy_from_slice(&data[off..off + buf.len()]);
        Ok(())
    }

    /// Store `data` at `va`, within one line of device-homed memory. A line
    /// the chip does not hold exclusively is asked for first.
    pub async fn store(
        &self,
        ctx: &CoreCtx,
        va: VirtAddr,
        data: &[u8],
        category: Category,
    ) -> Result<(), CoherentError> {
        let line = self
            .access(ctx, va, data.len() as u64, Intent::Write, category)
            .await?;
        let off = (va.0 % self.0.cfg.line_bytes) as usize;
        self.0.state.borrow_mut().dir.line(line).write(off, data);
        Ok(())
    }

    /// Load whole lines at `vas` (each line-aligned) with their misses in
    /// flight together, at most [`CoherentConfig::core_outstanding`] at a
    /// time, as a core's out-of-order window issues independent loads.
    /// Returns each line's bytes in order.
    pub async fn load_lines(
        &self,
        ctx: &CoreCtx,
        vas: &[VirtAddr],
        category: Category,
    ) -> Result<Vec<Vec<u8>>, CoherentError> {
        let lb = self.0.cfg.line_bytes;
        ctx.sync().await;
        let mut lines = Vec::with_capacity(vas.len());
        let mut in_flight: std::collections::VecDeque<(u64, Rc<Mailbox<Reply>>)> =
            Default::default();
        for &va in vas {
            let (line, miss) = self.lookup(ctx, va, lb, Intent::Read, category)?;
            lines.push(line);
            if miss {
                while in_flight.len() >= self.0.cfg.core_outstanding {
                    let (l, m) = in_flight.pop_front().expect("not empty");
                    self.wait(ctx, l, &m, category).await?;
                }
                let reply = self.issue(ctx, line, Intent::Read)?;
                in_flight.push_back((line, reply));
            }
        }
        for (l, m) in in_flight {
            self.wait(ctx, l, &m, category).await?;
        }
        let st = self.0.state.borrow();
        Ok(lines
            .iter()
            .map(|l| st.dir.get(*l).map(|x| x.data.clone()).unwrap_or_default())
            .collect())
    }

    /// Store whole lines `lines` (each `(va, bytes)`, line-aligned) with
    /// their reads for ownership in flight together, at most
    /// [`CoherentConfig::store_outstanding`] at a time.
    pub async fn store_lines(
        &self,
        ctx: &CoreCtx,
        lines: &[(VirtAddr, &[u8])],
        category: Category,
    ) -> Result<(), CoherentError> {
        ctx.sync().await;
        let mut in_flight: std::collections::VecDeque<(u64, Rc<Mailbox<Reply>>)> =
            Default::default();
        let mut done = Vec::with_capacity(lines.len());
        for &(va, data) in lines {
            let (line, miss) = self.lookup(ctx, va, data.len() as u64, Intent::Write, category)?;
            if miss {
                while in_flight.len() >= self.0.cfg.store_outstanding {
                    let (l, m) = in_flight.pop_front().expect("not empty");
                    self.wait(ctx, l, &m, category).await?;
                }
                let reply = self.issue(ctx, line, Intent::Write)?;
                in_flight.push_back((line, reply));
            }
            done.push((line, (va.0 % self.0.cfg.line_bytes) as usize, data));
        }
        for (l, m) in in_flight {
            self.wait(ctx, l, &m, category).await?;
        }
        let mut st = self.0.state.borrow_mut();
        for (line, off, data) in done {
            st.dir.line(line).write(off, data);
        }
        Ok(())
    }

    /// Make the line of `va` readable (or writable) in the chip, charging
    /// the core; returns the line address.
    async fn access(
        &self,
        ctx: &CoreCtx,
        va: VirtAddr,
        len: u64,
        intent: Intent,
        category: Category,
    ) -> Result<u64, CoherentError> {
        loop {
            let (line, miss) = self.lookup(ctx, va, len, intent, category)?;
            if !miss {
                return Ok(line);
            }
            // Another core's request for this line is in flight: wait for
            // it, then look again (an MSHR merge at the shared level).
            let busy = {
                let mut st = self.0.state.borrow_mut();
                let l = st.dir.line(line);
                l.pending.is_some().then(|| {
                    let n = Rc::new(Notify::new(&self.0.sim));
                    l.waiters.push(n.clone());
                    n
                })
            };
            if let Some(n) = busy {
                ctx.sync().await;
                n.notified().await;
                ctx.core().charge_until(category, self.0.sim.now());
                continue;
            }
            ctx.sync().await;
            let reply = self.issue(ctx, line, intent)?;
            self.wait(ctx, line, &reply, category).await?;
            return Ok(line);
        }
    }

    /// Translate and look the line of `va` up in the chip: a hit is
    /// charged and returns `(line, false)`; otherwise `(line, true)`.
    fn lookup(
        &self,
        ctx: &CoreCtx,
        va: VirtAddr,
        len: u64,
        intent: Intent,
        category: Category,
    ) -> Result<(u64, bool), CoherentError> {
        let cfg = &self.0.cfg;
        let core = ctx.core().id();
        let (space, privilege) = ctx.core().space().ok_or(AccessError::NoAddressSpace)?;
        let write = intent == Intent::Write;
        let mut mem = self.0.memory.borrow_mut();
        let (pa, walk) =
            mem.homed_target(core, &space, privilege, va, len, write, cfg.line_bytes)?;
        let line = pa.0 & !(cfg.line_bytes - 1);
        let kind = if write {
            AccessKind::Write
        } else {
            AccessKind::Read
        };
        let (cost, held) = mem
            .caches
            .access_homed(core, PhysAddr(line), kind)
            .map_err(|e| CoherentError::Access(e.into()))?;
        let l1_hit = mem.caches.config().l1d.hit_latency_cycles as u64;
        drop(mem);
        ctx.cycles(category, walk);
        let mut st = self.0.state.borrow_mut();
        let l = st.dir.line(line);
        if l.readable() && !held {
            // The chip's caches let the line go since it was last used: a
            // clean copy is dropped silently, a modified one written back.
            if let Some(data) = l.drop_copy() {
                st.counters.inc("write_backs");
                drop(st);
                self.to_home_event(
                    PhysAddr(line),
                    cfg.line_bytes,
                    HomeEvent::WrittenBack {
                        line: PhysAddr(line),
                        data,
                    },
                );
            }
            return Ok((line, true));
        }
        let ok = match intent {
            Intent::Read => l.readable(),
            Intent::Write => l.writable(),
        };
        if ok {
            // Silent upgrade E → M happens in `store`.
            ctx.cycles(category, cost.cycles.saturating_sub(l1_hit));
            return Ok((line, false));
        }
        Ok((line, true))
    }

    /// Send the core's request for `line` to its home; returns where the
    /// answer will arrive.
    fn issue(
        &self,
        ctx: &CoreCtx,
        line: u64,
        intent: Intent,
    ) -> Result<Rc<Mailbox<Reply>>, CoherentError> {
        let inner = &self.0;
        let now = inner.sim.now();
        let core = ctx.core().id();
        let reply = Rc::new(Mailbox::new(&inner.sim));
        let mut st = inner.state.borrow_mut();
        let home = st
            .homes
            .iter()
            .position(|h| h.window.contains(PhysAddr(line)))
            .ok_or(AccessError::NotHomed(VirtAddr(line)))?;
        let id = st.next_id;
        st.next_id += 1;
        st.dir.line(line).pending = Some(id);
        st.pending.insert(
            id,
            Pending {
                home,
                line,
                core,
                intent,
                reply: reply.clone(),
            },
        );
        st.counters.inc("requests");
        let req = LineRequest {
            id,
            line: PhysAddr(line),
            offset: line - st.homes[home].window.base.0,
            core,
            intent,
        };
        let arrive = inner.link_to_home(&mut st, now, 0);
        let dispatch = st.homes[home].dispatch.clone();
        drop(st);
        inner
            .sim
            .after(arrive - now, move || dispatch(HomeEvent::Request(req)));
        let me = self.0.clone();
        inner
            .sim
            .after(Duration::from_ps(inner.cfg.load_timeout_ps), move || {
                me.time_out(id)
            });
        Ok(reply)
    }

    /// Wait for the answer to a request for `line`, charging the wait.
    async fn wait(
        &self,
        ctx: &CoreCtx,
        line: u64,
        reply: &Mailbox<Reply>,
        category: Category,
    ) -> Result<(), CoherentError> {
        let r = reply.recv().await;
        ctx.core().charge_until(category, self.0.sim.now());
        match r {
            Reply::Filled => Ok(()),
            Reply::Timeout => Err(CoherentError::BusError(PhysAddr(line))),
        }
    }

    fn to_home_event(&self, line: PhysAddr, payload: u64, ev: HomeEvent) {
        self.0.to_home_event(line, payload, ev);
    }
}

impl Inner {
    /// Book a message of `payload` bytes towards the home; its arrival.
    fn link_to_home(&self, st: &mut State, now: Time, payload: u64) -> Time {
        let start = now.max(st.to_home_free);
        st.to_home_free = start + Duration::from_ps(self.cfg.serialise_ps(payload));
        st.to_home_free + Duration::from_ps(self.cfg.to_home_ps)
    }

    /// Book a message of `payload` bytes towards the chip; its arrival.
    fn link_to_chip(&self, st: &mut State, now: Time, payload: u64) -> Time {
        let start = now.max(st.to_chip_free);
        st.to_chip_free = start + Duration::from_ps(self.cfg.serialise_ps(payload));
        st.to_chip_free + Duration::from_ps(self.cfg.to_chip_ps)
    }

    /// Send `ev` for the home of `line` across the link.
    fn to_home_event(&self, line: PhysAddr, payload: u64, ev: HomeEvent) {
        let now = self.sim.now();
        let mut st = self.state.borrow_mut();
        let Some(h) = st.homes.iter().find(|h| h.window.contains(line)) else {
            return;
        };
        let dispatch = h.dispatch.clone();
        let arrive = self.link_to_home(&mut st, now, payload);
        drop(st);
        self.sim.after(arrive - now, move || dispatch(ev));
    }

    fn respond(
        self: &Rc<Self>,
        home: usize,
        id: u64,
        data: &[u8],
        grant: Grant,
    ) -> Result<(), HomeError> {
        let now = self.sim.now();
        let mut st = self.state.borrow_mut();
        let refuse = |st: &mut State, e: HomeError| {
            st.counters.inc("drop.refused_response");
            Err(e)
        };
        let Some(p) = st.pending.get(&id) else {
            st.counters.inc("drop.late_response");
            return Err(HomeError::NoSuchRequest(id));
        };
        if p.home != home {
            return refuse(&mut st, HomeError::NoSuchRequest(id));
        }
        if data.len() as u64 != self.cfg.line_bytes {
            let line = self.cfg.line_bytes;
            return refuse(
                &mut st,
                HomeError::BadLength {
                    id,
                    got: data.len(),
                    line,
                },
            );
        }
        if p.intent == Intent::Write && grant == Grant::Shared {
            return refuse(&mut st, HomeError::NeedsExclusive(id));
        }
        let p = st.pending.remove(&id).expect("checked above");
        st.counters.inc("responses");
        let arrive = self.link_to_chip(&mut st, now, self.cfg.line_bytes);
        drop(st);
        let data = data.to_vec();
        let me = self.clone();
        self.sim.after(arrive - now, move || {
            let waiters = {
                let mut st = me.state.borrow_mut();
                let l = st.dir.line(p.line);
                l.pending = None;
                l.fill(&data, grant);
                std::mem::take(&mut l.waiters)
            };
            // Cores are configured with the memory system, so this core
            // exists.
            let _ = me
                .memory
                .borrow_mut()
                .caches
                .fill_homed(p.core, PhysAddr(p.line));
            for w in waiters {
                w.notify();
            }
            p.reply.push_at(me.sim.now(), Reply::Filled);
        });
        Ok(())
    }

    fn invalidate(
        self: &Rc<Self>,
        home: usize,
        line: PhysAddr,
        how: Invalidate,
        token: u64,
    ) -> Result<(), HomeError> {
        let now = self.sim.now();
        let line = PhysAddr(line.0 & !(self.cfg.line_bytes - 1));
        let mut st = self.state.borrow_mut();
        if !st.homes.get(home).is_some_and(|h| h.window.contains(line)) {
            st.counters.inc("drop.refused_invalidate");
            return Err(HomeError::NotMine(line));
        }
        st.counters.inc("invalidations");
        let dispatch = st.homes[home].dispatch.clone();
        let at_chip = self.link_to_chip(&mut st, now, 0);
        drop(st);
        let me = self.clone();
        self.sim.after(at_chip - now, move || {
            me.memory
                .borrow_mut()
                .caches
                .invalidate_homed(line, me.cfg.line_bytes);
            let now = me.sim.now();
            let mut st = me.state.borrow_mut();
            let dirty = st.dir.line(line.0).drop_copy();
            let data = match how {
                Invalidate::Clean => dirty,
                Invalidate::Discard => None,
            };
            let payload = data.as_ref().map_or(0, |d| d.len() as u64);
            let at_home = me.link_to_home(&mut st, now, payload);
            drop(st);
            me.sim.after(at_home - now, move || {
                dispatch(HomeEvent::Invalidated { token, line, data })
            });
        });
        Ok(())
    }

    fn time_out(&self, id: u64) {
        let mut st = self.state.borrow_mut();
        let Some(p) = st.pending.remove(&id) else {
            return;
        };
        st.counters.inc("bus_errors");
        let l = st.dir.line(p.line);
        l.pending = None;
        let waiters = std::mem::take(&mut l.waiters);
        drop(st);
        for w in waiters {
            w.notify();
        }
        p.reply.push_at(self.sim.now(), Reply::Timeout);
    }
}
