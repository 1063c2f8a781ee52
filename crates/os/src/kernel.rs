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
//! Memory: every process has an address space whose page table lives in
//! the machine's simulated memory; the kernel maps anonymous memory, DMA
//! buffers (pinned hugepages, mapped into the process *and* into the
//! device's IOMMU domain at the same address) and device register pages
//! (uncached) into it. Switching a thread in loads its process's address
//! space on the core (a CR3 write), so simulated software reaches exactly
//! what its process mapped. Futex words are words of that memory.
//!
//! The local APICs are hardware (the machine's); the kernel programs them
//! as a real kernel writes MSRs.
//!
//! Invariants: every thread is in exactly one place (running on one core,
//! on one run queue, or blocked); a posted user vector is delivered exactly
//! once; ids are dense and allocation is deterministic; a process's
//! mappings never overlap and only the kernel changes them; a process's page
//! table holds no kernel mappings (as with kernel page-table isolation).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use nextio_engine::Counters;
use nextio_hw::cpu::{Bus, Core};
use nextio_hw::device::DeviceId;
use nextio_hw::fabric::FabricError;
use nextio_hw::interrupt::apic::{Arrival, KbTimerState, LocalApic, TimerMode, VectorSet};
use nextio_hw::interrupt::uipi::{
    SendOutcome, USER_VECTORS, UiFault, UiState, UittEntry, Upid, UpidAddr, post_and_notify,
};
use nextio_hw::machine::{Apics, Machine};
use nextio_hw::mem::{
    AccessError, AddressSpace, Asid, HUGE_PAGE_BYTES, MapError, MemError, PAGE_BYTES, PageSize,
    Perms, PhysAddr, VirtAddr,
};
use nextio_hw::memory::Privilege;
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
    #[error("out of memory: {0}")]
    Memory(#[from] MemError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Fabric(#[from] FabricError),
    #[error("EINVAL: {0}")]
    Invalid(String),
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
    /// The page table and its id: futex keys and memory are per space.
    space: AddressSpace,
    /// Next free virtual address for a new mapping.
    next_va: u64,
    uitt: nextio_hw::interrupt::uipi::Uitt,
    fds: BTreeSet<UintrFd>,
    /// The PASID its address space is bound to on a DMA engine (loaded
    /// into IA32_PASID when its threads run, for ENQCMD).
    pasid: Option<u32>,
}

/// Where a process's mappings start: above the first 4 GiB, as a 64-bit
/// Linux process's heap and mmap areas are (assumption: the exact layout
/// does not matter to any model).
const USER_VA_BASE: u64 = 0x10_0000_0000;
/// Where the kernel's direct map of physical memory starts in the kernel's
/// address space (supervisor pages only).
pub const DIRECT_MAP_BASE: u64 = 0x4000_0000_0000;

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
    futex_wait: Option<(Asid, u64)>,
}

struct Cpu {
    current: Option<Tid>,
    runq: VecDeque<Tid>,
    /// Device vector → the thread it is forwarded to.
    forward_owner: BTreeMap<u8, Tid>,
}

/// The whole kernel state.
pub struct Kernel {
    pub costs: OsCosts,
    cpus: Vec<Cpu>,
    /// The machine's cores (their address-space register) and APICs.
    cores: Vec<Rc<Core>>,
    apics: Apics,
    bus: Bus,
    /// The kernel's own address space: a direct map of physical memory.
    kernel_space: AddressSpace,
    procs: Vec<Process>,
    threads: Vec<Thread>,
    upids: Vec<Upid>,
    fds: Vec<(Tid, u8)>,
    deliveries: Vec<Delivery>,
    counters: Counters,
}

impl Kernel {
    /// The kernel of `machine`: it programs the machine's APICs and builds
    /// page tables in its memory. Fails only if memory cannot hold the
    /// kernel's own page tables.
    pub fn new(machine: &Machine, costs: OsCosts) -> Result<Kernel, OsError> {
        let bus = machine.bus();
        let kernel_space = {
            let mut m = bus.memory.borrow_mut();
            let space = AddressSpace::new(&mut m.phys, Asid(0))?;
            let size = m.phys.size_bytes();
            let mut at = 0u64;
            while at < size {
                let page = PageSize::largest_fitting(at, at, size - at);
                space.table.map(
                    &mut m.phys,
                    VirtAddr(DIRECT_MAP_BASE + at),
                    PhysAddr(at),
                    page,
                    Perms::KERNEL_RW,
                )?;
                at += page.bytes();
            }
            space
        };
        Ok(Kernel {
            costs,
            cpus: (0..machine.cores().len())
                .map(|_| Cpu {
                    current: None,
                    runq: VecDeque::new(),
                    forward_owner: BTreeMap::new(),
                })
                .collect(),
            cores: machine.cores().to_vec(),
            apics: machine.apics().clone(),
            bus,
            kernel_space,
            procs: Vec::new(),
            threads: Vec::new(),
            upids: Vec::new(),
            fds: Vec::new(),
            deliveries: Vec::new(),
            counters: Counters::new(),
        })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// Every user-interrupt delivery so far, in order.
    pub fn deliveries(&self) -> &[Delivery] {
        &self.deliveries
    }
    /// A copy of `core`'s APIC state.
    pub fn apic(&self, core: usize) -> Option<LocalApic> {
        self.apics.borrow().get(core).cloned()
    }
    /// The kernel's own address space (a direct map of all memory).
    pub fn kernel_space(&self) -> AddressSpace {
        self.kernel_space
    }
    /// Record that `pid`'s address space is bound to `pasid` (the DMA
    /// engine driver does, after binding it in the IOMMU); its threads
    /// run with it in IA32_PASID from now on.
    pub fn set_pasid(&mut self, pid: Pid, pasid: u32) -> Result<(), OsError> {
        self.procs
            .get_mut(pid.0)
            .ok_or(OsError::NoProcess(pid))?
            .pasid = Some(pasid);
        for (i, cpu) in self.cpus.iter().enumerate() {
            if let Some(t) = cpu.current
                && self.threads[t.0].pid == pid
            {
                self.cores[i].set_pasid(Some(pasid));
            }
        }
        Ok(())
    }
    /// The PASID `pid` is bound to, if any.
    pub fn pasid(&self, pid: Pid) -> Option<u32> {
        self.procs.get(pid.0).and_then(|p| p.pasid)
    }
    /// The address space of `pid`.
    pub fn space(&self, pid: Pid) -> Result<AddressSpace, OsError> {
        Ok(self.procs.get(pid.0).ok_or(OsError::NoProcess(pid))?.space)
    }
    /// The process `tid` belongs to.
    pub fn process_of(&self, tid: Tid) -> Result<Pid, OsError> {
        Ok(self.thread(tid)?.pid)
    }
    /// The machine's memory and fabric, as the kernel reaches them.
    pub fn bus(&self) -> &Bus {
        &self.bus
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

    /// A new process with its own, empty address space.
    pub fn create_process(&mut self) -> Result<Pid, OsError> {
        let pid = Pid(self.procs.len());
        let asid = u16::try_from(pid.0 + 1)
            .map(Asid)
            .map_err(|_| OsError::Invalid("too many processes".into()))?;
        let space = AddressSpace::new(&mut self.bus.memory.borrow_mut().phys, asid)?;
        self.procs.push(Process {
            space,
            next_va: USER_VA_BASE,
            uitt: Default::default(),
            fds: BTreeSet::new(),
            pasid: None,
        });
        Ok(pid)
    }

    // ---- memory ---------------------------------------------------------

    /// Reserve `bytes` of `pid`'s virtual addresses, aligned to `align`.
    fn reserve_va(&mut self, pid: Pid, bytes: u64, align: u64) -> Result<VirtAddr, OsError> {
        let p = self.procs.get_mut(pid.0).ok_or(OsError::NoProcess(pid))?;
        let va = p
            .next_va
            .checked_next_multiple_of(align)
            .ok_or_else(|| OsError::Invalid("address space exhausted".into()))?;
        p.next_va = va
            .checked_add(bytes)
            .filter(|end| end >> 47 == 0)
            .ok_or_else(|| OsError::Invalid("address space exhausted".into()))?;
        Ok(VirtAddr(va))
    }

    /// `mmap(MAP_ANONYMOUS | MAP_POPULATE)`: `bytes` of zeroed memory in
    /// `pid`, backed by hugepages if `huge` (then rounded up to 2 MiB).
    pub fn sys_mmap(&mut self, pid: Pid, bytes: u64, huge: bool) -> Result<VirtAddr, OsError> {
        if bytes == 0 {
            return Err(OsError::Invalid("mmap of zero bytes".into()));
        }
        let space = self.space(pid)?;
        let (page, len) = if huge {
            (
                PageSize::Huge,
                bytes.div_ceil(HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES,
            )
        } else {
            (PageSize::Base, bytes.div_ceil(PAGE_BYTES) * PAGE_BYTES)
        };
        let va = self.reserve_va(pid, len, page.bytes())?;
        let mut m = self.bus.memory.borrow_mut();
        let frames = m.phys.alloc(len, page.bytes())?;
        space
            .table
            .map_range(&mut m.phys, va, frames.base, len, page, Perms::USER_RW)?;
        Ok(va)
    }

    /// Pin `bytes` of hugepage memory for `dev`'s DMA and map it into
    /// `pid` and into `dev`'s IOMMU domain at the same address (VFIO's
    /// IOVA = VA mode, as DPDK and Ensō use it). Returns that address.
    /// With the IOMMU off the device sees physical addresses, so the
    /// physical address is returned as the device's address.
    pub fn dma_alloc(&mut self, pid: Pid, dev: DeviceId, bytes: u64) -> Result<DmaBuffer, OsError> {
        let va = self.sys_mmap(pid, bytes, true)?;
        let len = bytes.div_ceil(HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES;
        let fabric = self.bus.fabric.clone();
        let ranges = {
            let m = self.bus.memory.borrow();
            m.physical_ranges(&self.space(pid)?, va, len)?
        };
        if !fabric.iommu_enabled() {
            let (pa, _) = ranges[0];
            return Ok(DmaBuffer {
                va,
                iova: pa.0,
                len,
            });
        }
        let domain = self.device_domain(dev)?;
        let mut at = va.0;
        for (pa, n) in ranges {
            fabric.iommu_map(domain, at, pa, n, true)?;
            at += n;
        }
        Ok(DmaBuffer {
            va,
            iova: va.0,
            len,
        })
    }

    /// Map the frames behind `[va, va + len)` of `from` (page aligned)
    /// into `to` as well, read-write: a shared mapping (`mmap` of a
    /// shared file or `shmat`). Returns where `to` sees it.
    pub fn share_mapping(
        &mut self,
        from: Pid,
        va: VirtAddr,
        len: u64,
        to: Pid,
    ) -> Result<VirtAddr, OsError> {
        if !va.0.is_multiple_of(PAGE_BYTES) || len == 0 {
            return Err(OsError::Invalid("a shared mapping is page aligned".into()));
        }
        let len = len.div_ceil(PAGE_BYTES) * PAGE_BYTES;
        let ranges = {
            let m = self.bus.memory.borrow();
            m.physical_ranges(&self.space(from)?, va, len)?
        };
        let at = self.reserve_va(to, len, PAGE_BYTES)?;
        let space = self.space(to)?;
        let mut m = self.bus.memory.borrow_mut();
        let mut off = 0;
        for (pa, n) in ranges {
            space.table.map_range(
                &mut m.phys,
                at.offset(off),
                pa,
                n,
                PageSize::Base,
                Perms::USER_RW,
            )?;
            off += n;
        }
        Ok(at)
    }

    /// Map `buf`, a DMA buffer of `pid`, into `dev`'s IOMMU domain too, at
    /// the same IOVA (devices sharing one VFIO container see one IOVA
    /// space): so one device can write what another reads. A no-op with
    /// the IOMMU off, where every device sees physical addresses.
    pub fn dma_share(&mut self, pid: Pid, buf: DmaBuffer, dev: DeviceId) -> Result<(), OsError> {
        let fabric = self.bus.fabric.clone();
        if !fabric.iommu_enabled() {
            return Ok(());
        }
        let ranges = {
            let m = self.bus.memory.borrow();
            m.physical_ranges(&self.space(pid)?, buf.va, buf.len)?
        };
        let domain = self.device_domain(dev)?;
        let mut at = buf.iova;
        for (pa, n) in ranges {
            fabric.iommu_map(domain, at, pa, n, true)?;
            at += n;
        }
        Ok(())
    }

    /// `dev`'s IOMMU domain, created and attached on first use (the IOMMU
    /// driver binding a device to its own domain, as VFIO does per group).
    pub fn device_domain(&mut self, dev: DeviceId) -> Result<nextio_hw::fabric::DomainId, OsError> {
        let fabric = self.bus.fabric.clone();
        if let Some(d) = fabric.iommu_domain_of(dev) {
            return Ok(d);
        }
        let d = fabric.iommu_create_domain()?;
        fabric.iommu_attach(dev, d)?;
        Ok(d)
    }

    /// `dev`'s BAR `bar`, checked to hold the page-aligned range
    /// `[offset, offset + len)`.
    pub fn bar_range(
        &self,
        dev: DeviceId,
        bar: u8,
        offset: u64,
        len: u64,
    ) -> Result<nextio_hw::fabric::BarWindow, OsError> {
        let w = self
            .bus
            .fabric
            .bar(dev, bar)
            .ok_or_else(|| OsError::Invalid(format!("device {dev:?} has no BAR {bar}")))?;
        if !offset.is_multiple_of(PAGE_BYTES)
            || len == 0
            || offset.checked_add(len).is_none_or(|e| e > w.bytes)
        {
            return Err(OsError::Invalid(format!(
                "BAR {bar} range {offset:#x}+{len:#x} is not page aligned inside its {} B",
                w.bytes
            )));
        }
        Ok(w)
    }

    /// Map `len` bytes of `dev`'s BAR `bar` from `offset` (page aligned)
    /// into `pid`, uncached, as `mmap` of a VFIO region or a UIO device
    /// file does. Returns the virtual address of `offset`.
    pub fn map_bar(
        &mut self,
        pid: Pid,
        dev: DeviceId,
        bar: u8,
        offset: u64,
        len: u64,
    ) -> Result<VirtAddr, OsError> {
        let w = self.bar_range(dev, bar, offset, len)?;
        let len = len.div_ceil(PAGE_BYTES) * PAGE_BYTES;
        let va = self.reserve_va(pid, len, PAGE_BYTES)?;
        let space = self.space(pid)?;
        let mut m = self.bus.memory.borrow_mut();
        space.table.map_range(
            &mut m.phys,
            va,
            PhysAddr(w.base + offset),
            len,
            PageSize::Base,
            Perms::USER_RW.uncached(),
        )?;
        Ok(va)
    }

    /// Map `len` bytes of physical memory from `pa` (page aligned) that
    /// is not DRAM — a window a device homes on a coherent link — into
    /// `pid`, cacheable, read-write. Returns its virtual address.
    pub fn map_device_memory(
        &mut self,
        pid: Pid,
        pa: PhysAddr,
        len: u64,
    ) -> Result<VirtAddr, OsError> {
        if !self.bus.memory.borrow().is_homed(pa) {
            return Err(OsError::Invalid(format!(
                "{:#x} is not device-homed memory",
                pa.0
            )));
        }
        self.map_physical(pid, pa, len, Perms::USER_RW)
    }

    /// Map `len` bytes of physical memory from `pa` (page aligned) into
    /// `pid` with `perms`: memory a driver owns and shares with one
    /// process (a buffer the device writes and the process reads).
    pub fn map_physical(
        &mut self,
        pid: Pid,
        pa: PhysAddr,
        len: u64,
        perms: Perms,
    ) -> Result<VirtAddr, OsError> {
        if !pa.0.is_multiple_of(PAGE_BYTES) || len == 0 {
            return Err(OsError::Invalid(format!(
                "{:#x}+{len:#x} is not a page-aligned range",
                pa.0
            )));
        }
        let len = len.div_ceil(PAGE_BYTES) * PAGE_BYTES;
        let va = self.reserve_va(pid, len, PAGE_BYTES)?;
        let space = self.space(pid)?;
        let mut m = self.bus.memory.borrow_mut();
        space
            .table
            .map_range(&mut m.phys, va, pa, len, PageSize::Base, perms)?;
        Ok(va)
    }

    /// Map device-homed memory at `pa` into the kernel's own address
    /// space, where the direct map would put it (`DIRECT_MAP_BASE + pa`),
    /// supervisor-only. Returns that address.
    pub fn map_kernel_device_memory(
        &mut self,
        pa: PhysAddr,
        len: u64,
    ) -> Result<VirtAddr, OsError> {
        if !pa.0.is_multiple_of(PAGE_BYTES) || len == 0 || !self.bus.memory.borrow().is_homed(pa) {
            return Err(OsError::Invalid(format!(
                "{:#x}+{len:#x} is not page-aligned device-homed memory",
                pa.0
            )));
        }
        let len = len.div_ceil(PAGE_BYTES) * PAGE_BYTES;
        let va = VirtAddr(DIRECT_MAP_BASE + pa.0);
        let mut m = self.bus.memory.borrow_mut();
        self.kernel_space.table.map_range(
            &mut m.phys,
            va,
            pa,
            len,
            PageSize::Base,
            Perms::KERNEL_RW,
        )?;
        Ok(va)
    }

    /// Take a ready (not running) thread off its run queue: it waits,
    /// blocked, until [`Kernel::wake`] or [`Kernel::run_thread`].
    pub fn park(&mut self, tid: Tid) -> Result<(), OsError> {
        let t = self.thread(tid)?;
        if t.state != ThreadState::Ready {
            return Err(OsError::Invalid(format!("thread {tid:?} is not ready")));
        }
        let core = t.home_core;
        self.cpus[core].runq.retain(|&x| x != tid);
        self.threads[tid.0].state = ThreadState::Blocked;
        Ok(())
    }

    /// Make `tid` (a ready or blocked thread of `core`) the one running on
    /// `core` now; the thread running before, if any, becomes ready.
    /// Returns the cycles of the switch (0 if `tid` already runs).
    pub fn run_thread(&mut self, core: usize, tid: Tid, now_cycles: u64) -> Result<u64, OsError> {
        self.check_core(core)?;
        let t = self.thread(tid)?;
        if t.home_core != core || t.state == ThreadState::Exited {
            return Err(OsError::Invalid(format!(
                "thread {tid:?} cannot run on core {core}"
            )));
        }
        if self.cpus[core].current == Some(tid) {
            return Ok(0);
        }
        self.cpus[core].runq.retain(|&x| x != tid);
        if let Some(p) = self.cpus[core].current {
            self.switch_out(core, p);
            self.threads[p.0].state = ThreadState::Ready;
            self.cpus[core].runq.push_back(p);
        }
        self.threads[tid.0].futex_wait = None;
        self.switch_in(core, tid, now_cycles);
        self.counters.inc("context_switches");
        Ok(self.costs.context_switch_cycles)
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

    /// Make a blocked thread ready at the *head* of its home core's run
    /// queue: it runs next (a scheduler that takes threads a hardware
    /// ready queue named before the software run queue).
    pub fn wake_front(&mut self, tid: Tid) -> Result<(), OsError> {
        let t = self.thread_mut(tid)?;
        if t.state == ThreadState::Blocked {
            t.state = ThreadState::Ready;
            t.futex_wait = None;
            let c = t.home_core;
            self.cpus[c].runq.push_front(tid);
        }
        Ok(())
    }

    /// Threads ready on `core`'s run queue, waiting for it (the running
    /// one not counted): what a scheduler tick asks before it preempts.
    pub fn ready_count(&self, core: usize) -> usize {
        self.cpus.get(core).map_or(0, |c| c.runq.len())
    }

    /// The thread's home core (where it runs and is queued).
    pub fn home_core(&self, tid: Tid) -> Result<usize, OsError> {
        Ok(self.thread(tid)?.home_core)
    }

    /// Move a thread that is not running to `core` (a migration by the
    /// load balancer or `sched_setaffinity`): a ready thread changes run
    /// queues, a blocked one will be woken there.
    pub fn migrate(&mut self, tid: Tid, core: usize) -> Result<(), OsError> {
        self.check_core(core)?;
        let t = self.thread(tid)?;
        let (from, state) = (t.home_core, t.state);
        match state {
            ThreadState::Running(_) => {
                return Err(OsError::Invalid(format!(
                    "thread {tid:?} is running; only a thread off its core migrates"
                )));
            }
            ThreadState::Exited => return Err(OsError::NoThread(tid)),
            ThreadState::Ready => {
                self.cpus[from].runq.retain(|x| *x != tid);
                self.cpus[core].runq.push_back(tid);
            }
            ThreadState::Blocked => {}
        }
        self.thread_mut(tid)?.home_core = core;
        self.counters.inc("migrations");
        Ok(())
    }

    /// The running thread on `core` exits; the next ready thread, if any,
    /// runs. Its resources are the caller's to release first.
    pub fn exit_current(&mut self, core: usize, now_cycles: u64) -> Result<Option<Tid>, OsError> {
        self.check_core(core)?;
        let Some(tid) = self.cpus[core].current else {
            return Err(OsError::NotRunning(Tid(usize::MAX)));
        };
        self.block_current(core, now_cycles)?;
        self.threads[tid.0].state = ThreadState::Exited;
        self.counters.inc("thread_exits");
        Ok(self.cpus[core].current)
    }

    /// Map the physical frames `[pa, pa + len)` (hugepage aligned) into
    /// `pid`, user read-write: memory the kernel allocated for a device
    /// and shares with the process (Accio's rings). Returns their address.
    pub fn map_frames(&mut self, pid: Pid, pa: PhysAddr, len: u64) -> Result<VirtAddr, OsError> {
        if len == 0 || !pa.0.is_multiple_of(HUGE_PAGE_BYTES) || !len.is_multiple_of(HUGE_PAGE_BYTES)
        {
            return Err(OsError::Invalid(
                "shared frames are whole hugepages, hugepage aligned".into(),
            ));
        }
        let va = self.reserve_va(pid, len, HUGE_PAGE_BYTES)?;
        let space = self.space(pid)?;
        let mut m = self.bus.memory.borrow_mut();
        space
            .table
            .map_range(&mut m.phys, va, pa, len, PageSize::Huge, Perms::USER_RW)?;
        Ok(va)
    }

    /// Map the pages of `[va, va + len)` of `owner` into `to` as well (a
    /// shared-memory segment both attach, as `shm_open` + `mmap` or a
    /// hugepage file do): the same frames, at a new address in `to`.
    pub fn sys_shm_attach(
        &mut self,
        owner: Pid,
        va: VirtAddr,
        len: u64,
        to: Pid,
    ) -> Result<VirtAddr, OsError> {
        if len == 0 || !va.0.is_multiple_of(HUGE_PAGE_BYTES) || !len.is_multiple_of(HUGE_PAGE_BYTES)
        {
            return Err(OsError::Invalid(
                "shared segments are whole hugepages, hugepage aligned".into(),
            ));
        }
        let ranges = {
            let m = self.bus.memory.borrow();
            m.physical_ranges(&self.space(owner)?, va, len)?
        };
        let dst = self.reserve_va(to, len, HUGE_PAGE_BYTES)?;
        let space = self.space(to)?;
        let mut m = self.bus.memory.borrow_mut();
        let mut at = dst;
        for (pa, n) in ranges {
            space
                .table
                .map_range(&mut m.phys, at, pa, n, PageSize::Huge, Perms::USER_RW)?;
            at = at.offset(n);
        }
        Ok(dst)
    }

    fn switch_out(&mut self, core: usize, tid: Tid) {
        let cpu = &mut self.cpus[core];
        cpu.current = None;
        let t = &mut self.threads[tid.0];
        if let Some(a) = t.upid {
            self.upids[a.0].set_sn(true);
        }
        let mut apics = self.apics.borrow_mut();
        let apic = &mut apics[core];
        t.kb = apic.kb_timer.save();
        apic.forwarded_active = VectorSet::default();
    }

    fn switch_in(&mut self, core: usize, tid: Tid, now_cycles: u64) {
        let cpu = &mut self.cpus[core];
        cpu.current = Some(tid);
        let t = &mut self.threads[tid.0];
        t.state = ThreadState::Running(core);
        // Load the thread's address space (CR3) and IA32_PASID, and return
        // to user mode.
        self.cores[core].set_space(self.procs[t.pid.0].space, Privilege::User);
        self.cores[core].set_pasid(self.procs[t.pid.0].pasid);
        let mut apics = self.apics.borrow_mut();
        let apic = &mut apics[core];
        let mut late = 0u64;
        if let Some(a) = t.upid {
            let u = &mut self.upids[a.0];
            u.set_ndst(apic.apic_id);
            u.set_sn(false);
            // Repost what was posted while suppressed: a self-IPI whose
            // notification processing moves PIR to UIRR.
            if u.on() || u.pir() != 0 {
                late |= u.take_pir();
                self.counters.inc("uipi.reposted");
            }
        }
        apic.kb_timer.restore(t.kb);
        if let (Some(uv), Some(d)) = (t.kb_uv, t.kb.deadline_cycles)
            && d <= now_cycles
        {
            apic.kb_timer.expire(now_cycles);
            late |= 1 << uv;
            self.counters.inc("kb_timer.late_on_resume");
        }
        apic.forwarded_active = t.forwarded;
        drop(apics);
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
    /// Write a word of `pid`'s memory at `addr` (user code storing, untimed).
    pub fn store(&mut self, pid: Pid, addr: VirtAddr, val: u32) -> Result<(), OsError> {
        let space = self.space(pid)?;
        let mut m = self.bus.memory.borrow_mut();
        space.write(&mut m.phys, addr, &val.to_le_bytes(), true)?;
        Ok(())
    }
    /// `futex(FUTEX_WAIT)`: block the running thread on `core` if the word
    /// at `addr` still holds `expected`.
    pub fn futex_wait(
        &mut self,
        core: usize,
        addr: VirtAddr,
        expected: u32,
        now_cycles: u64,
    ) -> Result<(), OsError> {
        self.check_core(core)?;
        let tid = self.cpus[core]
            .current
            .ok_or(OsError::NotRunning(Tid(usize::MAX)))?;
        let pid = self.threads[tid.0].pid;
        let space = self.procs[pid.0].space;
        // The word is read from the process's memory, as the kernel reads
        // it with get_user; an unmapped word is EFAULT.
        let word = space.read_u32(&self.bus.memory.borrow().phys, addr, true)?;
        if word != expected {
            return Err(OsError::FutexAgain);
        }
        let key = (space.asid, addr.0);
        self.block_current(core, now_cycles)?;
        self.threads[tid.0].futex_wait = Some(key);
        Ok(())
    }
    /// `futex(FUTEX_WAKE)`: wake up to `n` waiters on `addr` in `pid`'s
    /// address space, oldest first; returns how many woke.
    pub fn futex_wake(&mut self, pid: Pid, addr: VirtAddr, n: usize) -> Result<usize, OsError> {
        let asid = self.space(pid)?.asid;
        let addr = addr.0;
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
        let (uinv, apic_id) = {
            let apics = self.apics.borrow();
            (apics[core].uinv, apics[core].apic_id)
        };
        let mut upid = Upid::new(uinv, apic_id);
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
        let arrival = self.apics.borrow()[core].arrive(vector);
        match arrival {
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
                    let uv = self.apics.borrow()[core].forwarded_uv(vector);
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
            self.apics.borrow_mut()[c].kb_timer.configure(true, uv);
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
        Ok(self.apics.borrow_mut()[c]
            .kb_timer
            .set_timer(now_cycles, cycles, mode))
    }
    pub fn clear_timer(&mut self, tid: Tid) -> Result<(), OsError> {
        let ThreadState::Running(c) = self.thread(tid)?.state else {
            return Err(OsError::NotRunning(tid));
        };
        self.apics.borrow_mut()[c].kb_timer.clear_timer();
        Ok(())
    }
    /// The KB_Timer deadline on `core`, for the timing layer to schedule.
    pub fn kb_deadline(&self, core: usize) -> Option<u64> {
        self.apics
            .borrow()
            .get(core)
            .and_then(|a| a.kb_timer.deadline())
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
        let expired = self.apics.borrow_mut()[core].kb_timer.expire(now_cycles);
        let Some(uv) = expired else {
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
        let mut apics = self.apics.borrow_mut();
        let apic = &mut apics[core];
        if cpu.forward_owner.contains_key(&vector) || vector == apic.uinv {
            return Err(OsError::VectorBusy(vector));
        }
        cpu.forward_owner.insert(vector, tid);
        apic.enable_forwarding(vector, uv);
        let running = cpu.current == Some(tid);
        if running {
            apic.forwarded_active.set(vector, true);
        }
        drop(apics);
        self.threads[tid.0].forwarded.set(vector, true);
        Ok(())
    }
}

fn t_signals(t: &Thread) -> bool {
    t.sig_pending != 0
}

/// A DMA buffer: pinned memory mapped into a process and into a device's
/// IOMMU domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaBuffer {
    /// Where the process sees it.
    pub va: VirtAddr,
    /// Where the device sees it (equal to `va` with the IOMMU on).
    pub iova: u64,
    pub len: u64,
}

impl DmaBuffer {
    /// The device address of the byte at `va`, which must lie in the buffer.
    pub fn iova_of(&self, va: VirtAddr) -> u64 {
        self.iova + (va.0 - self.va.0)
    }
}
