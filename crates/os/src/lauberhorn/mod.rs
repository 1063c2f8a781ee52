//! The OS side of Lauberhorn (§6): the kernel driver that attaches the
//! NIC, registers processes and their RPC services with it, maps each
//! process's own channels into it (and only into it), and runs on every
//! RPC core a kernel-mode dispatch thread that can take a request for any
//! process and switch to it.
//!
//! * [`channel`] — a channel as software uses it (receive, result,
//!   transmit), shared by the kernel thread and the user runtime;
//! * `dispatch` — the per-core loop: the kernel thread polls its kernel
//!   channel; a request makes it switch to the request's process, run the
//!   handler, and leave the core in that process's user loop (a
//!   [`RpcProcess`] supplies both) until the NIC says YIELDNOW; TRYAGAIN
//!   is the kernel's chance to call the scheduler; RETIRE gives the core
//!   to other work until the NIC's interrupt calls it back — a device
//!   interrupt the kernel takes, or (beyond the paper) an xUI tracked
//!   interrupt forwarded to the background thread ([`CallbackSignal`]);
//! * [`steps`] — the §2 steps and a meter of core time per step;
//! * `background` — compute a retired core can be lent to.
//!
//! The kernel keeps the NIC informed: which core joins or leaves the RPC
//! pool and which process runs on it (register writes), and it preempts a
//! core through the NIC (interrupt plus YIELDNOW).
//!
//! Invariants: a process's channels are mapped into that process only,
//! the kernel channels into the kernel only; a handler runs only in the
//! process that registered its endpoint; every RPC thread is running, or
//! parked (blocked) — never on a run queue, so the dispatch loop alone
//! decides what a core runs.

mod background;
pub mod channel;
mod dispatch;
pub mod steps;

use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use nextio_engine::{Counters, Notify, Time};
use nextio_hw::coherent::{CoherentFabric, HomeWindow};
use nextio_hw::cpu::CoreCtx;
use nextio_hw::fabric::{DeviceHandle, MsiMessage};
use nextio_hw::interrupt::line::IrqLine;
use nextio_hw::interrupt::pipeline::InstrMix;
use nextio_hw::mem::{PhysAddr, VirtAddr};
use nextio_hw::nic::lauberhorn::layout::{CHANNEL_BYTES, Half, LineRole, WindowLayout};
use nextio_hw::nic::lauberhorn::{Destination, Endpoint, LauberhornConfig, LauberhornNic, regs};
use nextio_hw::oncrpc::Signature;

use crate::host::{Host, Process};
use crate::kernel::{OsError, Pid, Tid};
pub use background::ComputeBackground;
pub use channel::{ChannelError, ChannelIo, Delivery};
pub use steps::{Step, StepMeter};

/// The interrupt vector the NIC's messages (wake, preempt) arrive on.
pub const LH_VECTOR: u8 = 0x41;
/// Bytes of each user channel's DMA buffer (two halves of 16 KiB: a
/// request up to 16 KiB of native arguments).
pub const CHANNEL_DMA_BYTES: u64 = 32 << 10;

/// A future a process's runtime returns to the kernel.
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// How a process's user loop gave the core back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopExit {
    /// The NIC said YIELDNOW; the loop made the system call back.
    Yield,
    /// The channel failed (a bus error): the kernel takes the core back.
    Failed,
}

/// What the kernel needs from a process that serves RPCs: its handlers
/// (for a request the kernel dispatched) and its user loop.
pub trait RpcProcess {
    /// Run the request `d`, which the kernel copied in, on `ctx`'s core
    /// (the process is switched in); returns `accept_stat` and the native
    /// result.
    fn handle<'a>(&'a self, ctx: &'a CoreCtx, d: &'a Delivery) -> LocalFuture<'a, (u8, Vec<u8>)>;
    /// Run the user loop on this process's channel of `core` until told
    /// to yield.
    fn user_loop<'a>(&'a self, ctx: &'a CoreCtx, core: usize) -> LocalFuture<'a, LoopExit>;
}

/// Work a retired core does until the NIC wants it back: one chunk per
/// call; a chunk stops early when `irq` (the core's interrupt line, raised
/// by the NIC's message) is raised, so the interrupt is taken when it
/// arrives.
pub trait Background {
    fn chunk<'a>(&'a self, ctx: &'a CoreCtx, core: usize, irq: &'a IrqLine) -> LocalFuture<'a, ()>;
    /// How the work keeps the pipeline busy (what an interrupt's delivery
    /// costs it).
    fn mix(&self) -> InstrMix;
}

/// How the NIC's call-back message reaches a retired core that runs other
/// work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallbackSignal {
    /// Lauberhorn's: a device interrupt the kernel takes — the pipeline
    /// is flushed (xUI's flush delivery), the kernel's interrupt entry and
    /// exit run, and the scheduler switches to the dispatch thread.
    Ipi,
    /// xUI's tracked interrupt: the kernel forwards the NIC's vector to
    /// the background thread while it runs (xUI §4.5, the APIC's fast
    /// path), delivered without a flush (§4.2); its user handler makes
    /// a system call to give the core back, and the scheduler switches to
    /// the dispatch thread.
    XuiTracked,
}

/// One call-back of a retired core: when the NIC's message arrived at the
/// core, when the first handler instruction ran, and when the core was
/// back in the RPC pool (its dispatch thread running again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Callback {
    pub core: usize,
    pub arrived: Time,
    pub handler: Time,
    pub back: Time,
}

/// Costs of the kernel's Lauberhorn paths, in core cycles: the root
/// preset's `[os.lauberhorn]`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LauberhornOsCosts {
    /// The dispatch thread reads a kernel-channel request and finds the
    /// process's thread for this core.
    pub kernel_dispatch_cycles: u64,
    /// Copying a request into the process: a fixed part plus the bytes at
    /// `copy_bytes_per_cycle`.
    pub copy_fixed_cycles: u64,
    pub copy_bytes_per_cycle: u64,
    /// What the dispatch thread does on TRYAGAIN: a `cond_resched()`
    /// with nothing to run.
    pub tryagain_cycles: u64,
}

impl Default for LauberhornOsCosts {
    /// The root preset's `[os.lauberhorn]`.
    fn default() -> Self {
        nextio_presets::root_section("os.lauberhorn")
    }
}

/// A process registered with the NIC.
pub struct Registration {
    pub slot: usize,
    pub pid: Pid,
    /// The process's own channel on each RPC core, in its address space.
    pub channels: Vec<ChannelIo>,
    /// Its thread on each RPC core.
    pub threads: Vec<Tid>,
}

struct SlotInfo {
    pid: Pid,
    service: Rc<dyn RpcProcess>,
    threads: Vec<Tid>,
    /// Mapped text: endpoints' code pointers must fall in it.
    text: (VirtAddr, u64),
}

/// Work for retired cores and its thread on each core.
type BackgroundWork = (Rc<dyn Background>, Vec<Tid>);

/// A procedure a process asks the kernel to install in the NIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEndpoint {
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
    /// Where its handler starts, in the process's text.
    pub code: u64,
    pub data: u64,
    pub args: Signature,
    pub results: Signature,
}

/// A remote procedure a process asks the kernel to let it call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingCall {
    pub ip: std::net::Ipv4Addr,
    pub port: u16,
    pub mac: [u8; 6],
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
    pub args: Signature,
    pub results: Signature,
}

struct CoreState {
    /// An interrupt from the NIC arrived and is not yet handled.
    irq: Cell<bool>,
    irq_notify: Rc<Notify>,
    /// The same interrupt as a line into the core, for work it stops.
    line: IrqLine,
}

pub(crate) struct Inner {
    host: Host,
    nic: DeviceHandle<LauberhornNic>,
    coh: CoherentFabric,
    window: HomeWindow,
    layout: WindowLayout,
    costs: LauberhornOsCosts,
    /// The kernel's mapping of each core's kernel channel.
    kernel_channels: Vec<VirtAddr>,
    /// The driver's DMA pool for the user channels (one buffer per
    /// channel, so every channel's bus addresses are distinct in the
    /// device's IOMMU domain), owned by the driver's own process.
    dma_pool: crate::kernel::DmaBuffer,
    driver_pid: Pid,
    slots: RefCell<Vec<Option<SlotInfo>>>,
    cores: Vec<CoreState>,
    background: RefCell<Option<BackgroundWork>>,
    signal: Cell<CallbackSignal>,
    callbacks: RefCell<Vec<Callback>>,
    meter: RefCell<Option<StepMeter>>,
    stop: Cell<bool>,
    counters: RefCell<Counters>,
}

/// Why the driver refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LauberhornOsError {
    #[error(transparent)]
    Os(#[from] OsError),
    #[error(transparent)]
    Nic(#[from] nextio_hw::nic::lauberhorn::LauberhornError),
    #[error("{0}")]
    Host(String),
    #[error("no free process slot (the NIC has {0})")]
    NoSlot(usize),
    #[error("process {0:?} has not registered with the NIC")]
    NotRegistered(Pid),
    #[error("code pointer {0:#x} is outside the process's text")]
    BadCodePointer(u64),
}

/// The kernel's Lauberhorn driver. Cheap to clone.
#[derive(Clone)]
pub struct LauberhornOs(Rc<Inner>);

impl LauberhornOs {
    /// Attach a Lauberhorn NIC built from `cfg` to `host` (whose machine
    /// must have a coherent link), map the kernel channels, and point the
    /// NIC's interrupts at each core.
    pub fn attach(
        host: &Host,
        cfg: LauberhornConfig,
        costs: LauberhornOsCosts,
    ) -> Result<LauberhornOs, LauberhornOsError> {
        let cores = cfg.cores;
        if cores > host.machine().cores().len() || cores > regs::MAX_CORES {
            return Err(LauberhornOsError::Host(format!(
                "the NIC serves {cores} cores, the host has {}",
                host.machine().cores().len()
            )));
        }
        let bytes = LauberhornNic::window_bytes(&cfg);
        let slots = cfg.slots;
        let nic = LauberhornNic::new(cfg)?;
        let (nic, window) = host
            .attach_coherent(nic, bytes)
            .map_err(|e| LauberhornOsError::Host(e.to_string()))?;
        let coh = host
            .machine()
            .coherent()
            .ok_or_else(|| LauberhornOsError::Host("no coherent link".into()))?;
        let layout = nic.borrow().layout().ok_or(LauberhornOsError::Host(
            "the NIC was not attached as a home".into(),
        ))?;
        let mut kernel_channels = Vec::with_capacity(cores);
        for c in 0..cores {
            let pa = window.base.offset(layout.offset(
                layout.kernel_channel(c),
                Half::Rx,
                LineRole::Ctrl(0),
            ));
            let va = host
                .kernel()
                .borrow_mut()
                .map_kernel_device_memory(pa, CHANNEL_BYTES)?;
            kernel_channels.push(va);
            host.machine()
                .fabric()
                .set_msix(
                    nic.id,
                    c as u16,
                    MsiMessage {
                        core: c,
                        vector: LH_VECTOR,
                    },
                )
                .map_err(|e| LauberhornOsError::Host(e.to_string()))?;
        }
        // The driver's DMA pool: a buffer per user channel.
        let driver = host
            .create_process()
            .map_err(|e| LauberhornOsError::Host(e.to_string()))?;
        let dma_pool = driver.dma_alloc(
            nic.id,
            CHANNEL_DMA_BYTES * (layout.slots * layout.cores) as u64,
        )?;
        let sim = host.sim().clone();
        let inner = Rc::new(Inner {
            host: host.clone(),
            nic,
            coh,
            window,
            layout,
            costs,
            kernel_channels,
            dma_pool,
            driver_pid: driver.pid(),
            slots: RefCell::new((0..slots).map(|_| None).collect()),
            cores: (0..cores)
                .map(|_| CoreState {
                    irq: Cell::new(false),
                    irq_notify: Rc::new(Notify::new(&sim)),
                    line: IrqLine::new(&sim),
                })
                .collect(),
            background: RefCell::new(None),
            signal: Cell::new(CallbackSignal::Ipi),
            callbacks: RefCell::new(Vec::new()),
            meter: RefCell::new(None),
            stop: Cell::new(false),
            counters: RefCell::new(Counters::new()),
        });
        let weak = Rc::downgrade(&inner);
        host.on_interrupt(move |ev| {
            let Some(os) = weak.upgrade() else { return };
            if ev.vector == LH_VECTOR
                && let Some(c) = os.cores.get(ev.core)
            {
                c.irq.set(true);
                c.irq_notify.notify();
                c.line.raise(os.host.sim().now());
            }
        });
        Ok(LauberhornOs(inner))
    }

    pub fn nic(&self) -> &DeviceHandle<LauberhornNic> {
        &self.0.nic
    }
    pub fn coherent(&self) -> &CoherentFabric {
        &self.0.coh
    }
    pub fn layout(&self) -> WindowLayout {
        self.0.layout
    }
    pub fn window(&self) -> HomeWindow {
        self.0.window
    }
    pub fn counters(&self) -> Counters {
        self.0.counters.borrow().clone()
    }
    /// Meter the §2 steps of every RPC served from now on.
    pub fn set_meter(&self, meter: StepMeter) {
        *self.0.meter.borrow_mut() = Some(meter);
    }
    pub fn meter(&self) -> Option<StepMeter> {
        self.0.meter.borrow().clone()
    }

    /// Register `process` as a server: a NIC slot, its own channel on each
    /// RPC core mapped into it, a DMA buffer per channel, and a thread per
    /// core, parked until the dispatch loop runs it. `text` is the mapped
    /// range its handlers' code pointers must lie in.
    pub fn register_process(
        &self,
        process: &Process,
        service: Rc<dyn RpcProcess>,
        text: (VirtAddr, u64),
    ) -> Result<Registration, LauberhornOsError> {
        let inner = &self.0;
        let slot = inner
            .slots
            .borrow()
            .iter()
            .position(|s| s.is_none())
            .ok_or(LauberhornOsError::NoSlot(inner.layout.slots))?;
        let pid = process.pid();
        let cores = inner.layout.cores;
        let mut channels = Vec::with_capacity(cores);
        let mut threads = Vec::with_capacity(cores);
        for c in 0..cores {
            let ch = inner.layout.user_channel(slot, c);
            let pa: PhysAddr =
                inner
                    .window
                    .base
                    .offset(inner.layout.offset(ch, Half::Rx, LineRole::Ctrl(0)));
            let va = inner
                .host
                .kernel()
                .borrow_mut()
                .map_device_memory(pid, pa, CHANNEL_BYTES)?;
            // This channel's piece of the driver's pool, shared with the
            // process read-only: the NIC writes it, the process reads it.
            let off = (slot * cores + c) as u64 * CHANNEL_DMA_BYTES;
            let piece_va = inner.dma_pool.va.offset(off);
            let piece_pa = {
                let k = inner.host.kernel().borrow();
                let space = k.space(inner.driver_pid)?;
                let m = k.bus().memory.borrow();
                m.physical_ranges(&space, piece_va, CHANNEL_DMA_BYTES)
                    .map_err(OsError::from)?[0]
                    .0
            };
            let user_va = inner.host.kernel().borrow_mut().map_physical(
                pid,
                piece_pa,
                CHANNEL_DMA_BYTES,
                nextio_hw::mem::Perms::USER_RO,
            )?;
            inner.nic.borrow_mut().set_channel_dma(
                ch,
                inner.dma_pool.iova_of(piece_va),
                CHANNEL_DMA_BYTES,
            )?;
            channels.push(ChannelIo::new(
                inner.coh.clone(),
                inner.layout,
                va,
                Some((user_va, CHANNEL_DMA_BYTES)),
            ));
            let mut k = inner.host.kernel().borrow_mut();
            let tid = k.create_thread(pid, c)?;
            k.park(tid)?;
            threads.push(tid);
        }
        inner.slots.borrow_mut()[slot] = Some(SlotInfo {
            pid,
            service,
            threads: threads.clone(),
            text,
        });
        Ok(Registration {
            slot,
            pid,
            channels,
            threads,
        })
    }

    /// Install an endpoint for a registered process (the `register`
    /// system call): the code pointer must lie in its text.
    pub fn register_endpoint(
        &self,
        pid: Pid,
        e: ServiceEndpoint,
    ) -> Result<usize, LauberhornOsError> {
        let slots = self.0.slots.borrow();
        let (slot, info) = slots
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.as_ref().filter(|s| s.pid == pid).map(|s| (i, s)))
            .ok_or(LauberhornOsError::NotRegistered(pid))?;
        let (t, len) = info.text;
        if e.code < t.0 || e.code >= t.0 + len {
            return Err(LauberhornOsError::BadCodePointer(e.code));
        }
        Ok(self.0.nic.borrow_mut().install_endpoint(Endpoint {
            prog: e.prog,
            vers: e.vers,
            proc_: e.proc_,
            slot,
            code: e.code,
            data: e.data,
            args: e.args,
            results: e.results,
        })?)
    }

    /// Let a registered process call out (a nested RPC, §7): the NIC
    /// encodes its calls to `to` and turns the replies into continuations
    /// for that process only. Returns the destination's index, which the
    /// process names in its calls.
    pub fn register_destination(
        &self,
        pid: Pid,
        to: OutgoingCall,
    ) -> Result<u16, LauberhornOsError> {
        let slot = self
            .0
            .slots
            .borrow()
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.pid == pid))
            .ok_or(LauberhornOsError::NotRegistered(pid))?;
        Ok(self.0.nic.borrow_mut().install_destination(Destination {
            ip: to.ip,
            port: to.port,
            mac: to.mac,
            prog: to.prog,
            vers: to.vers,
            proc_: to.proc_,
            slot,
            args: to.args,
            results: to.results,
        })?)
    }

    /// Give retired cores `work` to do, one thread of `process` per core.
    pub fn set_background(
        &self,
        process: &Process,
        work: Rc<dyn Background>,
    ) -> Result<(), LauberhornOsError> {
        let mut threads = Vec::new();
        for c in 0..self.0.layout.cores {
            let mut k = self.0.host.kernel().borrow_mut();
            let tid = k.create_thread(process.pid(), c)?;
            k.park(tid)?;
            threads.push(tid);
        }
        *self.0.background.borrow_mut() = Some((work, threads));
        Ok(())
    }

    /// How the NIC's call-back reaches a retired core running background
    /// work (Lauberhorn's interrupt unless set).
    pub fn set_callback_signal(&self, signal: CallbackSignal) {
        self.0.signal.set(signal);
    }

    /// Every call-back of a retired core from background work so far.
    pub fn callbacks(&self) -> Vec<Callback> {
        self.0.callbacks.borrow().clone()
    }

    /// Start the dispatch thread on every RPC core.
    pub fn start(&self) {
        for c in 0..self.0.layout.cores {
            let me = self.0.clone();
            self.0.host.sim().spawn(async move {
                dispatch::core_loop(me, c).await;
            });
        }
    }

    /// Ask the kernel's dispatch threads to stop at their next TRYAGAIN.
    pub fn stop(&self) {
        self.0.stop.set(true);
    }

    /// The kernel preempts `core` through the NIC: an interrupt, and
    /// YIELDNOW to the load it is stalled in.
    pub async fn preempt(&self, ctx: &CoreCtx, core: usize) -> Result<(), LauberhornOsError> {
        self.0
            .reg_write(ctx, regs::core_ctrl(core), regs::PREEMPT)
            .await
    }
}

impl Inner {
    /// A kernel register write from `ctx`'s core (posted).
    async fn reg_write(&self, ctx: &CoreCtx, offset: u64, v: u32) -> Result<(), LauberhornOsError> {
        let fabric = self.host.machine().fabric();
        let bar = fabric
            .bar(self.nic.id, 0)
            .ok_or_else(|| LauberhornOsError::Host("the NIC has no BAR 0".into()))?;
        ctx.sync().await;
        fabric
            .cpu_mmio_write(
                ctx.core().id(),
                PhysAddr(bar.base + offset),
                &v.to_le_bytes(),
                "lauberhorn-sched",
            )
            .map_err(|e| LauberhornOsError::Host(e.to_string()))?;
        Ok(())
    }
}
