//! The execution context of one simulated thread on a core, and the cost
//! interface simulated software calls.
//!
//! A thread *accrues* costs (`cycles`) without creating events, then
//! *synchronises* (`sync`) before it interacts with anything shared, which
//! sleeps until the ledger's cursor. This is temporal decoupling: the
//! thread's local time may run ahead of the global clock only between
//! synchronisation points, and every wait (`spin_until`, `block_until`)
//! synchronises first. Busy polling is one charged wait, not an event per
//! poll iteration.
//!
//! Memory is reached by virtual address only, in the address space the
//! core runs in ([`Core::space`]): loads and stores are translated by the
//! core's MMU (TLB, then a page walk through the caches) and checked
//! against the page's permissions, so a thread can touch exactly what its
//! process has mapped. A load or store to a device register page is an
//! error; registers are reached with [`CoreCtx::mmio_write`] and
//! [`CoreCtx::mmio_read`], which go through the fabric.

use std::rc::Rc;

use nextio_engine::{Category, Duration, Notify, Sim, Time};

use super::Core;
use crate::fabric::{Fabric, MmioError};
use crate::mem::{AccessError, VirtAddr};
use crate::memory::SharedMemory;
use crate::pcie::Purpose;

/// What a core reaches: its host's memory system and interconnect.
#[derive(Clone)]
pub struct Bus {
    pub memory: SharedMemory,
    pub fabric: Fabric,
}

/// Why an MMIO access failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MmioAccessError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Mmio(#[from] MmioError),
    /// ENQCMD with no valid PASID in IA32_PASID raises #GP.
    #[error("#GP: ENQCMD without a PASID (the process has none)")]
    NoPasid,
    #[error("ENQCMD sends a 64-byte command, not {0} bytes")]
    EnqcmdSize(usize),
}

/// What ENQCMD writes into the first doubleword of the 64-byte command it
/// sends (Intel SDM Vol. 2A, ENQCMD): the PASID from IA32_PASID in bits
/// 19:0 and a clear privilege bit 31, whatever software put there, so a
/// user process cannot name another address space.
pub fn enqcmd_stamp(command: &mut [u8; 64], pasid: u32) {
    let dword = pasid & 0x000f_ffff;
    command[0..4].copy_from_slice(&dword.to_le_bytes());
}

/// The execution context of one simulated thread on a core.
#[derive(Clone)]
pub struct CoreCtx {
    sim: Sim,
    core: Rc<Core>,
    bus: Option<Bus>,
    /// The address space and privilege accesses are made in, when they are
    /// not the core's current ones: kernel code entered from a thread or an
    /// interrupt runs in the kernel's space without rewriting the core's
    /// register, so the interrupted thread's view is never disturbed.
    space: Option<(crate::mem::AddressSpace, crate::memory::Privilege)>,
}

impl CoreCtx {
    /// A thread starting on `core` that only computes (it reaches no
    /// memory); time before now counts as idle.
    pub fn new(sim: &Sim, core: Rc<Core>) -> CoreCtx {
        core.charge_until(Category::Idle, sim.now());
        CoreCtx {
            sim: sim.clone(),
            core,
            bus: None,
            space: None,
        }
    }
    /// A thread starting on `core` of a host whose memory and fabric are
    /// `bus`.
    pub fn on(sim: &Sim, core: Rc<Core>, bus: Bus) -> CoreCtx {
        core.charge_until(Category::Idle, sim.now());
        CoreCtx {
            sim: sim.clone(),
            core,
            bus: Some(bus),
            space: None,
        }
    }
    /// The same thread's context making its accesses in `space` at
    /// `privilege` instead of the core's current address space: the view
    /// kernel code has of memory while it runs on this core (a system call
    /// or an interrupt handler). Time and ledger stay the core's.
    pub fn in_space(
        &self,
        space: crate::mem::AddressSpace,
        privilege: crate::memory::Privilege,
    ) -> CoreCtx {
        CoreCtx {
            space: Some((space, privilege)),
            ..self.clone()
        }
    }
    /// The address space and privilege this context's accesses are made in.
    pub fn access_space(&self) -> Option<(crate::mem::AddressSpace, crate::memory::Privilege)> {
        self.space.or_else(|| self.core.space())
    }
    /// The host's memory and fabric, if the thread has them.
    pub fn bus(&self) -> Option<&Bus> {
        self.bus.as_ref()
    }
    pub fn sim(&self) -> &Sim {
        &self.sim
    }
    pub fn core(&self) -> &Rc<Core> {
        &self.core
    }
    /// The thread's local time: global time plus costs not yet slept for.
    pub fn local_now(&self) -> Time {
        self.core.cursor().max(self.sim.now())
    }
    /// Accrue `cycles` of work in `category` (no event; see [`CoreCtx::sync`]).
    pub fn cycles(&self, category: Category, cycles: u64) {
        self.catch_up();
        self.core.charge_cycles(category, cycles);
    }
    /// Accrue a cost given as a duration.
    pub fn spend(&self, category: Category, d: Duration) {
        self.catch_up();
        self.core.charge(category, d);
    }
    /// Sleep until the global clock reaches the thread's local time.
    pub async fn sync(&self) {
        // Re-read the cursor after each wake: an interrupt handler may have
        // stretched this thread's outstanding work while it slept.
        loop {
            let target = self.core.cursor();
            if self.sim.now() >= target {
                return;
            }
            self.sim.sleep_until(target).await;
        }
    }
    /// Accrue and then synchronise.
    pub async fn compute(&self, category: Category, cycles: u64) {
        self.cycles(category, cycles);
        self.sync().await;
    }
    /// Busy-poll until `ready()` holds, re-checking whenever `notify`
    /// fires. The waiting time is charged as polling; the check itself is
    /// free (charge it separately if it matters).
    pub async fn spin_until(&self, notify: &Notify, mut ready: impl FnMut() -> bool) {
        self.sync().await;
        while !ready() {
            notify.notified().await;
        }
        self.core.charge_until(Category::Polling, self.sim.now());
    }
    /// Like [`CoreCtx::spin_until`] but the core is idle (the thread sleeps).
    pub async fn block_until(&self, notify: &Notify, mut ready: impl FnMut() -> bool) {
        self.sync().await;
        while !ready() {
            notify.notified().await;
        }
        self.core.charge_until(Category::Idle, self.sim.now());
    }
    /// Spin (charged as polling) until global time `t`.
    pub async fn spin_until_time(&self, t: Time) {
        self.sync().await;
        self.sim.sleep_until(t).await;
        self.core.charge_until(Category::Polling, self.sim.now());
    }
    // ---- memory, by virtual address ------------------------------------

    fn memory_and_space(
        &self,
    ) -> Result<
        (
            &SharedMemory,
            crate::mem::AddressSpace,
            crate::memory::Privilege,
        ),
        AccessError,
    > {
        let bus = self.bus.as_ref().ok_or(AccessError::NoAddressSpace)?;
        let (space, privilege) = self.access_space().ok_or(AccessError::NoAddressSpace)?;
        Ok((&bus.memory, space, privilege))
    }

    /// Load `buf.len()` bytes at `va` into `buf`, accruing the stall in
    /// `category` (no event: synchronise before acting on shared state).
    /// A fault moves no byte and costs nothing.
    pub fn load(
        &self,
        va: VirtAddr,
        buf: &mut [u8],
        category: Category,
    ) -> Result<(), AccessError> {
        let (mem, space, privilege) = self.memory_and_space()?;
        let stall = mem
            .borrow_mut()
            .cpu_load(self.core.id(), &space, privilege, va, buf)?;
        self.cycles(category, stall);
        Ok(())
    }

    /// Store `data` at `va`, accruing the stall in `category`.
    pub fn store(&self, va: VirtAddr, data: &[u8], category: Category) -> Result<(), AccessError> {
        let (mem, space, privilege) = self.memory_and_space()?;
        let stall = mem
            .borrow_mut()
            .cpu_store(self.core.id(), &space, privilege, va, data)?;
        self.cycles(category, stall);
        Ok(())
    }

    /// Bring `[va, va + len)` towards the core without moving bytes (a
    /// software prefetch); returns the cycles its lines take to arrive
    /// beyond an L1d hit, charging nothing.
    pub fn touch(&self, va: VirtAddr, len: u64) -> Result<u64, AccessError> {
        let (mem, space, privilege) = self.memory_and_space()?;
        mem.borrow_mut()
            .cpu_touch(self.core.id(), &space, privilege, va, len)
    }

    pub fn load_u16(&self, va: VirtAddr, category: Category) -> Result<u16, AccessError> {
        let mut b = [0u8; 2];
        self.load(va, &mut b, category)?;
        Ok(u16::from_le_bytes(b))
    }
    pub fn load_u32(&self, va: VirtAddr, category: Category) -> Result<u32, AccessError> {
        let mut b = [0u8; 4];
        self.load(va, &mut b, category)?;
        Ok(u32::from_le_bytes(b))
    }
    /// Load a little-endian `u64`.
    pub fn load_u64(&self, va: VirtAddr, category: Category) -> Result<u64, AccessError> {
        let mut b = [0u8; 8];
        self.load(va, &mut b, category)?;
        Ok(u64::from_le_bytes(b))
    }
    /// Store a little-endian `u64`.
    pub fn store_u64(&self, va: VirtAddr, v: u64, category: Category) -> Result<(), AccessError> {
        self.store(va, &v.to_le_bytes(), category)
    }
    pub fn store_u32(&self, va: VirtAddr, v: u32, category: Category) -> Result<(), AccessError> {
        self.store(va, &v.to_le_bytes(), category)
    }

    /// Read bytes at `va` without charge or cache effects: for checks and
    /// for functional peeks the model does not time. Still translated and
    /// permission-checked.
    pub fn peek(&self, va: VirtAddr, buf: &mut [u8]) -> Result<(), AccessError> {
        let (mem, space, privilege) = self.memory_and_space()?;
        let m = mem.borrow();
        space.read(
            &m.phys,
            va,
            buf,
            privilege == crate::memory::Privilege::User,
        )
    }

    /// Write bytes at `va` without charge or cache effects: set-up the
    /// model does not time (a driver filling its rings before the run).
    /// Still translated and permission-checked.
    pub fn poke(&self, va: VirtAddr, data: &[u8]) -> Result<(), AccessError> {
        let (mem, space, privilege) = self.memory_and_space()?;
        let mut m = mem.borrow_mut();
        space.write(
            &mut m.phys,
            va,
            data,
            privilege == crate::memory::Privilege::User,
        )
    }

    /// A notification fired whenever anything (a device or another core)
    /// writes into `[va, va + len)`: what a polling loop waits on.
    pub fn watch(&self, va: VirtAddr, len: u64) -> Result<Rc<Notify>, AccessError> {
        let notify = Rc::new(Notify::new(&self.sim));
        self.watch_with(va, len, notify.clone())?;
        Ok(notify)
    }

    /// Fire `notify` whenever anything writes into `[va, va + len)` (one
    /// notification for several ranges: a loop polling several rings).
    pub fn watch_with(
        &self,
        va: VirtAddr,
        len: u64,
        notify: Rc<Notify>,
    ) -> Result<(), AccessError> {
        let (mem, space, _) = self.memory_and_space()?;
        let mut m = mem.borrow_mut();
        let ranges = m.physical_ranges(&space, va, len)?;
        for (pa, n) in ranges {
            m.watch_with(pa, n, notify.clone());
        }
        Ok(())
    }

    fn mmio_target(
        &self,
        va: VirtAddr,
        len: u64,
        write: bool,
    ) -> Result<(&Fabric, crate::mem::PhysAddr), MmioAccessError> {
        let (mem, space, privilege) = self.memory_and_space()?;
        let bus = self.bus.as_ref().ok_or(AccessError::NoAddressSpace)?;
        let t = mem
            .borrow_mut()
            .translate(self.core.id(), &space, privilege, va, write)?;
        if !t.uncached {
            return Err(AccessError::NotMmio(va).into());
        }
        self.cycles(Category::Driver, t.walk_cycles);
        // The core's own check of guarded registers: a precise fault of
        // the access, before anything leaves the core.
        bus.fabric.check_cpu_access(
            self.core.id(),
            t.pa,
            len,
            write,
            space.asid,
            privilege == crate::memory::Privilege::User,
        )?;
        Ok((&bus.fabric, t.pa))
    }

    /// A posted MMIO write of `data` to the device register at `va`, made
    /// at the thread's local time (it synchronises first). Returns when the
    /// write reaches the device. The store instruction's own cost (fences,
    /// write-combining) is the caller's to charge.
    pub async fn mmio_write(
        &self,
        va: VirtAddr,
        data: &[u8],
        purpose: Purpose,
    ) -> Result<Time, MmioAccessError> {
        let (fabric, pa) = self.mmio_target(va, data.len() as u64, true)?;
        let fabric = fabric.clone();
        self.sync().await;
        Ok(fabric.cpu_mmio_write(self.core.id(), pa, data, purpose)?)
    }

    /// ENQCMD: send the 64-byte `command` to the shared work queue register
    /// at `va`, the running process's PASID stamped into it; the thread
    /// stalls until the device answers (the instruction's ZF). Returns
    /// whether the device accepted it; refused, software retries.
    pub async fn enqcmd(
        &self,
        va: VirtAddr,
        command: &[u8],
        purpose: Purpose,
        category: Category,
    ) -> Result<bool, MmioAccessError> {
        let mut cmd: [u8; 64] = command
            .try_into()
            .map_err(|_| MmioAccessError::EnqcmdSize(command.len()))?;
        let pasid = self.core.pasid().ok_or(MmioAccessError::NoPasid)?;
        enqcmd_stamp(&mut cmd, pasid);
        let (fabric, pa) = self.mmio_target(va, cmd.len() as u64, true)?;
        let fabric = fabric.clone();
        self.sync().await;
        let reply = fabric.cpu_enqcmd(self.core.id(), pa, &cmd, purpose)?;
        let accepted = reply.recv().await;
        self.core.charge_until(category, self.sim.now());
        Ok(accepted)
    }

    /// A non-posted MMIO read of `len` bytes at `va`: the thread stalls
    /// until the completion returns (charged to `category`).
    pub async fn mmio_read(
        &self,
        va: VirtAddr,
        len: u64,
        purpose: Purpose,
        category: Category,
    ) -> Result<Vec<u8>, MmioAccessError> {
        let (fabric, pa) = self.mmio_target(va, len, false)?;
        let fabric = fabric.clone();
        self.sync().await;
        let reply = fabric.cpu_mmio_read(self.core.id(), pa, len, purpose)?;
        let data = reply.recv().await;
        self.core.charge_until(category, self.sim.now());
        Ok(data)
    }

    /// An idle gap from the cursor to now counts as idle: a thread that was
    /// not running cannot have been computing.
    fn catch_up(&self) {
        self.core.charge_until(Category::Idle, self.sim.now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextio_engine::Freq;
    use std::cell::Cell;

    #[test]
    fn accrued_cycles_become_time_exactly() {
        let sim = Sim::new();
        let core = Core::new(0, Freq::mhz(3000), Time::ZERO);
        let ctx = CoreCtx::new(&sim, core.clone());
        let s = sim.clone();
        sim.spawn(async move {
            for _ in 0..3000 {
                ctx.cycles(Category::Application, 1);
            }
            ctx.sync().await;
            assert_eq!(s.now(), Time(1_000_000));
        });
        sim.run();
        let l = core.ledger_at(sim.now());
        assert_eq!(l.get(Category::Application), Duration(1_000_000));
        assert_eq!(l.total(), Duration(1_000_000));
    }

    #[test]
    fn polling_is_one_charged_wait() {
        let sim = Sim::new();
        let core = Core::new(0, Freq::mhz(2000), Time::ZERO);
        let ctx = CoreCtx::new(&sim, core.clone());
        let flag = Rc::new(Cell::new(false));
        let notify = Rc::new(Notify::new(&sim));
        let (f, n) = (flag.clone(), notify.clone());
        sim.spawn(async move {
            ctx.compute(Category::Driver, 200).await; // 100 ns
            ctx.spin_until(&n, || f.get()).await;
            ctx.compute(Category::Application, 2000).await; // 1 µs
        });
        let (f, n, s) = (flag.clone(), notify.clone(), sim.clone());
        sim.spawn(async move {
            s.sleep(Duration::from_us(5)).await;
            f.set(true);
            n.notify();
        });
        sim.run();
        let l = core.ledger_at(Time(Duration::from_us(10).ps()));
        assert_eq!(l.get(Category::Driver), Duration::from_ns(100));
        assert_eq!(l.get(Category::Polling), Duration::from_ns(4900));
        assert_eq!(l.get(Category::Application), Duration::from_us(1));
        assert_eq!(l.get(Category::Idle), Duration::from_us(4));
        assert_eq!(l.total(), Duration::from_us(10));
        // Events: two spawns, one compute wake, one notify wake, one timer, one compute wake.
        assert!(sim.events() <= 8, "{}", sim.events());
    }
}
