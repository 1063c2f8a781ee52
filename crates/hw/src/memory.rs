//! A host's memory system — physical memory holding the bytes, the cache
//! hierarchy timing the accesses, each core's TLB — and the two ways into
//! it: virtual loads and stores from cores (translated through the running
//! address space, see [`crate::cpu::CoreCtx`]) and physical accesses from
//! the fabric on behalf of devices.
//!
//! Invariants:
//! * bytes and timing cannot disagree: every access moves real bytes in
//!   [`PhysMem`] *and* is looked up in the [`Hierarchy`], in one call;
//! * a faulting core access moves no byte and touches no cache: every page
//!   of the range is translated before anything happens;
//! * device writes are coherent: they land in the LLC's DDIO ways and
//!   invalidate the line in every core's private caches, so the next load
//!   by software misses in L1d/L2 as it would on real hardware;
//! * every write, by a device or a core, wakes the tasks watching the
//!   bytes it changed ([`MemorySystem::watch`]): that is how a polling
//!   driver learns a descriptor was written back, without an event per
//!   poll;
//! * memory a device homes over a coherent link (its windows are
//!   registered with [`MemorySystem::add_homed`]) is not DRAM: ordinary
//!   loads and stores to it are refused with `AccessError::DeviceHomed`
//!   and go through [`crate::coherent`] instead, which keeps the chip's
//!   copies coherent with the home;
//! * a core pays only the *stall* of an access: cycles beyond an L1d hit
//!   for every line touched, plus the full cost of any page walk. An L1d
//!   hit costs nothing extra because software's instruction costs already
//!   include issuing the load. Misses are charged one after another (no
//!   memory-level parallelism), so the charge is an upper bound for
//!   independent misses.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Notify, Sim};
use thiserror::Error;

use crate::cache::{AccessKind, CacheError, DeviceCost, Hierarchy, HierarchyConfig};
use crate::mem::{
    Access, AccessError, AddressSpace, MemError, PAGE_BYTES, PhysAddr, PhysMem, Tlb, TlbConfig,
    TlbStats, Translation, VirtAddr,
};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MemorySystemError {
    #[error(transparent)]
    Mem(#[from] MemError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("invalid TLB: {0}")]
    Tlb(String),
    #[error("device-homed window {pa:#x}+{len:#x} is empty, overlaps memory or another window")]
    HomedWindow { pa: u64, len: u64 },
}

/// A physical range some task watches for writes.
struct Watch {
    start: u64,
    end: u64,
    notify: Rc<Notify>,
}

/// What a core's MMU remembers: its TLB and the last translation it used
/// (a first-level dTLB hit costs nothing, so only STLB lookups count).
struct Mmu {
    tlb: Tlb,
    last: Option<(crate::mem::Asid, Translation)>,
}

/// Physical memory, the caches in front of it, and each core's TLB.
pub struct MemorySystem {
    pub phys: PhysMem,
    pub caches: Hierarchy,
    mmus: Vec<Mmu>,
    watches: Vec<Watch>,
    /// Physical windows `[start, end)` homed by devices on a coherent link.
    homed: Vec<(u64, u64)>,
    sim: Sim,
}

/// The memory system shared by every core and device of a host.
pub type SharedMemory = Rc<RefCell<MemorySystem>>;

/// Privilege a core access is made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    User,
    Kernel,
}

/// Where a core access goes once translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTranslation {
    pub pa: PhysAddr,
    /// The page is a device register page: loads and stores become MMIO.
    pub uncached: bool,
    /// Cycles spent walking page tables (0 on a TLB hit).
    pub walk_cycles: u64,
}

impl MemorySystem {
    pub fn new(
        sim: &Sim,
        phys_bytes: u64,
        caches: HierarchyConfig,
        tlb: TlbConfig,
    ) -> Result<MemorySystem, MemorySystemError> {
        let cores = caches.cores;
        let mut mmus = Vec::with_capacity(cores);
        for _ in 0..cores {
            mmus.push(Mmu {
                tlb: Tlb::new(tlb).map_err(MemorySystemError::Tlb)?,
                last: None,
            });
        }
        Ok(MemorySystem {
            phys: PhysMem::new(phys_bytes)?,
            caches: Hierarchy::new(caches)?,
            mmus,
            watches: Vec::new(),
            homed: Vec::new(),
            sim: sim.clone(),
        })
    }

    pub fn shared(self) -> SharedMemory {
        Rc::new(RefCell::new(self))
    }

    // ---- watches ---------------------------------------------------------

    /// A notification fired whenever anything writes into `[pa, pa + len)`.
    /// Several ranges may share one [`Notify`] (see [`MemorySystem::watch_with`]).
    pub fn watch(&mut self, pa: PhysAddr, len: u64) -> Rc<Notify> {
        let notify = Rc::new(Notify::new(&self.sim));
        self.watch_with(pa, len, notify.clone());
        notify
    }

    /// Fire `notify` whenever anything writes into `[pa, pa + len)`.
    pub fn watch_with(&mut self, pa: PhysAddr, len: u64, notify: Rc<Notify>) {
        self.watches.push(Watch {
            start: pa.0,
            end: pa.0.saturating_add(len),
            notify,
        });
    }

    fn written(&self, pa: PhysAddr, len: u64) {
        let end = pa.0.saturating_add(len);
        for w in &self.watches {
            if pa.0 < w.end && w.start < end {
                w.notify.notify();
            }
        }
    }

    // ---- device-homed memory ------------------------------------------

    /// Register `[pa, pa + len)` as homed by a device on a coherent link. It
    /// must lie above physical memory and overlap no other window.
    pub fn add_homed(&mut self, pa: PhysAddr, len: u64) -> Result<(), MemorySystemError> {
        let end = pa.0.checked_add(len).filter(|_| len > 0);
        let bad = MemorySystemError::HomedWindow { pa: pa.0, len };
        let Some(end) = end else {
            return Err(bad);
        };
        if pa.0 < self.phys.size_bytes() || self.homed.iter().any(|&(s, e)| pa.0 < e && s < end) {
            return Err(bad);
        }
        self.homed.push((pa.0, end));
        Ok(())
    }

    /// Whether `pa` is homed by a device.
    pub fn is_homed(&self, pa: PhysAddr) -> bool {
        self.homed.iter().any(|&(s, e)| (s..e).contains(&pa.0))
    }

    /// Translate a core access of `len` bytes at `va` that must lie in
    /// device-homed memory and in one line of `line_bytes`: the physical
    /// address and the walk cycles.
    #[allow(clippy::too_many_arguments)]
    pub fn homed_target(
        &mut self,
        core: usize,
        space: &AddressSpace,
        privilege: Privilege,
        va: VirtAddr,
        len: u64,
        write: bool,
        line_bytes: u64,
    ) -> Result<(PhysAddr, u64), AccessError> {
        let t = self.translate(core, space, privilege, va, write)?;
        let in_line = (va.0 % line_bytes)
            .checked_add(len)
            .is_some_and(|e| e <= line_bytes);
        if t.uncached || !self.is_homed(t.pa) || !in_line || len == 0 {
            return Err(AccessError::NotHomed(va));
        }
        Ok((t.pa, t.walk_cycles))
    }

    // ---- the device side -------------------------------------------------

    /// A device's write of `data` at `pa` lands: bytes, DDIO, invalidation
    /// of the cores' copies, and the watchers woken.
    pub fn device_write(
        &mut self,
        pa: PhysAddr,
        data: &[u8],
    ) -> Result<DeviceCost, MemorySystemError> {
        self.phys.write(pa, data)?;
        let cost = self.caches.device_write(pa, data.len() as u64);
        self.written(pa, data.len() as u64);
        Ok(cost)
    }

    /// Where a device read of `len` bytes at `pa` would be served from
    /// (LLC, a core's cache, or DRAM), counted in the device statistics.
    pub fn device_read_cost(&mut self, pa: PhysAddr, len: u64) -> DeviceCost {
        self.caches.device_read(pa, len)
    }

    /// The bytes of a device read.
    pub fn device_read_bytes(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.phys.read(pa, buf)
    }

    // ---- the core side ---------------------------------------------------

    /// TLB statistics of `core`.
    pub fn tlb_stats(&self, core: usize) -> Option<TlbStats> {
        self.mmus.get(core).map(|m| m.tlb.stats())
    }

    /// Drop `core`'s cached translations of `va` in `space` (INVLPG; the
    /// OS calls it on every core that may hold one: a shootdown).
    pub fn invalidate_tlb(&mut self, core: usize, space: &AddressSpace, va: VirtAddr) {
        if let Some(m) = self.mmus.get_mut(core) {
            m.tlb.invalidate(space.asid, va);
            if m.last.is_some_and(|(a, t)| a == space.asid && t.covers(va)) {
                m.last = None;
            }
        }
    }

    /// Translate `va` for `core` in `space`: the last translation, then the
    /// TLB, then a walk whose page-table loads go through the core's caches.
    pub fn translate(
        &mut self,
        core: usize,
        space: &AddressSpace,
        privilege: Privilege,
        va: VirtAddr,
        write: bool,
    ) -> Result<CpuTranslation, AccessError> {
        let access = Access::new(write, privilege == Privilege::User);
        let Some(mmu) = self.mmus.get_mut(core) else {
            return Err(AccessError::NoSuchCore(core));
        };
        let hit = match mmu.last {
            Some((asid, t)) if asid == space.asid && t.covers(va) => Some(t),
            _ => mmu.tlb.lookup(space.asid, va),
        };
        let (t, walk_cycles) = match hit {
            Some(t) => (t, 0),
            None => {
                let walk = space.table.walk(&self.phys, va);
                let mut cycles = 0;
                for &entry in walk.entries() {
                    cycles += self.caches.access(core, entry, 8, AccessKind::Walk)?.cycles;
                }
                let t = walk.found.ok_or(crate::mem::Fault {
                    va,
                    kind: crate::mem::FaultKind::NotMapped,
                })?;
                self.mmus[core].tlb.insert(space.asid, t);
                (t, cycles)
            }
        };
        t.permits(va, access)?;
        self.mmus[core].last = Some((space.asid, t));
        Ok(CpuTranslation {
            pa: t.pa(va),
            uncached: t.perms.uncached,
            walk_cycles,
        })
    }

    /// Stall cycles of a core touching `[pa, pa + len)`: beyond an L1d hit
    /// per line.
    fn stall(
        &mut self,
        core: usize,
        pa: PhysAddr,
        len: u64,
        kind: AccessKind,
    ) -> Result<u64, MemorySystemError> {
        let cost = self.caches.access(core, pa, len, kind)?;
        let l1_hit = self.caches.config().l1d.hit_latency_cycles as u64;
        Ok(cost.cycles.saturating_sub(cost.lines as u64 * l1_hit))
    }

    /// The page pieces `(offset, physical address, bytes)` of a core access
    /// of `len` bytes at `va`, all translated (and walks charged) before
    /// any is used; returns them with the walk cycles.
    fn pieces(
        &mut self,
        core: usize,
        space: &AddressSpace,
        privilege: Privilege,
        va: VirtAddr,
        len: u64,
        write: bool,
    ) -> Result<(PieceList, u64), AccessError> {
        if va.0.checked_add(len).is_none() {
            return Err(crate::mem::Fault {
                va,
                kind: crate::mem::FaultKind::NotMapped,
            }
            .into());
        }
        let mut pieces = PieceList::default();
        let mut cycles = 0;
        let mut done = 0u64;
        while done < len {
            let cur = va.offset(done);
            let t = self.translate(core, space, privilege, cur, write)?;
            if t.uncached {
                return Err(AccessError::Mmio(cur));
            }
            if self.is_homed(t.pa) {
                return Err(AccessError::DeviceHomed(cur));
            }
            let n = (PAGE_BYTES - cur.0 % PAGE_BYTES).min(len - done);
            self.phys.check(t.pa, n)?;
            pieces.push((done as usize, t.pa, n as usize));
            cycles += t.walk_cycles;
            done += n;
        }
        Ok((pieces, cycles))
    }

    /// A core loads `buf.len()` bytes at `va`; returns the stall cycles.
    pub fn cpu_load(
        &mut self,
        core: usize,
        space: &AddressSpace,
        privilege: Privilege,
        va: VirtAddr,
        buf: &mut [u8],
    ) -> Result<u64, AccessError> {
        let (pieces, mut cycles) =
            self.pieces(core, space, privilege, va, buf.len() as u64, false)?;
        for &(off, pa, n) in pieces.iter() {
            self.phys.read(pa, &mut buf[off..off + n])?;
            cycles += self
                .stall(core, pa, n as u64, AccessKind::Read)
                .map_err(to_access)?;
        }
        Ok(cycles)
    }

    /// A core stores `data` at `va`; returns the stall cycles.
    pub fn cpu_store(
        &mut self,
        core: usize,
        space: &AddressSpace,
        privilege: Privilege,
        va: VirtAddr,
        data: &[u8],
    ) -> Result<u64, AccessError> {
        let (pieces, mut cycles) =
            self.pieces(core, space, privilege, va, data.len() as u64, true)?;
        for &(off, pa, n) in pieces.iter() {
            self.phys.write(pa, &data[off..off + n])?;
            cycles += self
                .stall(core, pa, n as u64, AccessKind::Write)
                .map_err(to_access)?;
            self.written(pa, n as u64);
        }
        Ok(cycles)
    }

    /// A core's cache-touching access to `[va, va + len)` without moving
    /// bytes (a software prefetch, `rte_prefetch0`); returns the cycles the
    /// line(s) take to arrive beyond an L1d hit.
    pub fn cpu_touch(
        &mut self,
        core: usize,
        space: &AddressSpace,
        privilege: Privilege,
        va: VirtAddr,
        len: u64,
    ) -> Result<u64, AccessError> {
        let (pieces, mut cycles) = self.pieces(core, space, privilege, va, len, false)?;
        for &(_, pa, n) in pieces.iter() {
            cycles += self
                .stall(core, pa, n as u64, AccessKind::Prefetch)
                .map_err(to_access)?;
        }
        Ok(cycles)
    }

    /// The physical ranges behind `[va, va + len)` in `space`, without any
    /// timing (for the OS and for watches).
    pub fn physical_ranges(
        &self,
        space: &AddressSpace,
        va: VirtAddr,
        len: u64,
    ) -> Result<Vec<(PhysAddr, u64)>, AccessError> {
        let mut out: Vec<(PhysAddr, u64)> = Vec::new();
        space.pieces(&self.phys, va, len, Access::KERNEL_READ, |_, pa, n| {
            match out.last_mut() {
                Some((start, l)) if start.offset(*l) == pa => *l += n as u64,
                _ => out.push((pa, n as u64)),
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// Up to a few page pieces of one access, without allocating for the
/// common case of one or two.
#[derive(Default)]
struct PieceList {
    inline: [(usize, PhysAddr, usize); 2],
    len: usize,
    spill: Vec<(usize, PhysAddr, usize)>,
}

impl PieceList {
    fn push(&mut self, p: (usize, PhysAddr, usize)) {
        if self.len < self.inline.len() {
            self.inline[self.len] = p;
        } else {
            self.spill.push(p);
        }
        self.len += 1;
    }
    fn iter(&self) -> impl Iterator<Item = &(usize, PhysAddr, usize)> {
        self.inline[..self.len.min(self.inline.len())]
            .iter()
            .chain(self.spill.iter())
    }
}

fn to_access(e: MemorySystemError) -> AccessError {
    match e {
        MemorySystemError::Mem(m) => AccessError::Mem(m),
        MemorySystemError::Cache(c) => c.into(),
        // TLBs and windows are set up with the memory system; an access
        // cannot meet their errors.
        MemorySystemError::Tlb(_) | MemorySystemError::HomedWindow { .. } => {
            AccessError::NoAddressSpace
        }
    }
}

impl From<CacheError> for AccessError {
    fn from(e: CacheError) -> AccessError {
        match e {
            CacheError::NoSuchCore { core, .. } => AccessError::NoSuchCore(core),
            // Configurations are validated when the hierarchy is built.
            CacheError::BadConfig { .. } => AccessError::NoAddressSpace,
        }
    }
}
