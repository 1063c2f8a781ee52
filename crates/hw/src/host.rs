//! A host's memory system — physical memory holding the bytes plus the
//! cache hierarchy timing the accesses — and the two ways into it: loads and
//! stores from simulated software on a core ([`CoreCtx::load`],
//! [`CoreCtx::store`]) and DMA from devices ([`MemorySystem::dma_write`],
//! [`MemorySystem::dma_read`]).
//!
//! Invariants:
//! * bytes and timing cannot disagree: every access moves real bytes in
//!   [`PhysMem`] *and* is looked up in the [`Hierarchy`], through one call;
//! * device writes are coherent: they land in the LLC's DDIO ways and
//!   invalidate the line in every core's private caches, so the next load
//!   by software misses in L1d/L2 as it would on real hardware;
//! * a core pays only the *stall* of an access: cycles beyond an L1d hit for
//!   every line touched. An L1d hit costs nothing extra because the
//!   software's instruction costs already include issuing the load. Misses
//!   are charged one after another (no memory-level parallelism), so the
//!   charge is an upper bound for independent misses.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::Category;
use thiserror::Error;

use crate::cache::{AccessKind, CacheError, DeviceCost, Hierarchy, HierarchyConfig};
use crate::cpu::CoreCtx;
use crate::mem::{MemError, PhysAddr, PhysMem};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HostError {
    #[error(transparent)]
    Mem(#[from] MemError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Physical memory and the caches in front of it.
pub struct MemorySystem {
    pub phys: PhysMem,
    pub caches: Hierarchy,
}

/// The memory system shared by every core and device of a host.
pub type SharedMemory = Rc<RefCell<MemorySystem>>;

impl MemorySystem {
    pub fn new(phys_bytes: u64, caches: HierarchyConfig) -> Result<MemorySystem, HostError> {
        Ok(MemorySystem {
            phys: PhysMem::new(phys_bytes)?,
            caches: Hierarchy::new(caches)?,
        })
    }

    pub fn shared(self) -> SharedMemory {
        Rc::new(RefCell::new(self))
    }

    /// A device writes `data` at `pa` (DMA, with DDIO per the hierarchy).
    pub fn dma_write(&mut self, pa: PhysAddr, data: &[u8]) -> Result<DeviceCost, HostError> {
        self.phys.write(pa, data)?;
        Ok(self.caches.device_write(pa, data.len() as u64))
    }

    /// A device reads `buf.len()` bytes at `pa`.
    pub fn dma_read(&mut self, pa: PhysAddr, buf: &mut [u8]) -> Result<DeviceCost, HostError> {
        self.phys.read(pa, buf)?;
        Ok(self.caches.device_read(pa, buf.len() as u64))
    }

    /// Stall cycles of a core access: beyond an L1d hit per line.
    fn cpu_access(
        &mut self,
        core: usize,
        pa: PhysAddr,
        len: u64,
        kind: AccessKind,
    ) -> Result<u64, HostError> {
        let cost = self.caches.access(core, pa, len, kind)?;
        let l1_hit = self.caches.config().l1d.hit_latency_cycles as u64;
        Ok(cost.cycles.saturating_sub(cost.lines as u64 * l1_hit))
    }
}

impl CoreCtx {
    /// Load `buf.len()` bytes at `pa` into `buf`, accruing the stall in
    /// `category` (no event: synchronise before acting on shared state).
    pub fn load(
        &self,
        mem: &SharedMemory,
        pa: PhysAddr,
        buf: &mut [u8],
        category: Category,
    ) -> Result<(), HostError> {
        let stall = {
            let mut m = mem.borrow_mut();
            m.phys.read(pa, buf)?;
            m.cpu_access(self.core().id(), pa, buf.len() as u64, AccessKind::Read)?
        };
        self.cycles(category, stall);
        Ok(())
    }

    /// Store `data` at `pa`, accruing the stall in `category`.
    pub fn store(
        &self,
        mem: &SharedMemory,
        pa: PhysAddr,
        data: &[u8],
        category: Category,
    ) -> Result<(), HostError> {
        let stall = {
            let mut m = mem.borrow_mut();
            m.phys.write(pa, data)?;
            m.cpu_access(self.core().id(), pa, data.len() as u64, AccessKind::Write)?
        };
        self.cycles(category, stall);
        Ok(())
    }

    /// Load a little-endian `u64`.
    pub fn load_u64(
        &self,
        mem: &SharedMemory,
        pa: PhysAddr,
        category: Category,
    ) -> Result<u64, HostError> {
        let mut b = [0u8; 8];
        self.load(mem, pa, &mut b, category)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Store a little-endian `u64`.
    pub fn store_u64(
        &self,
        mem: &SharedMemory,
        pa: PhysAddr,
        v: u64,
        category: Category,
    ) -> Result<(), HostError> {
        self.store(mem, pa, &v.to_le_bytes(), category)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::Core;
    use nextio_engine::{Freq, Sim, Time};

    #[test]
    fn dma_then_load_sees_bytes_and_misses_private_caches() {
        let sim = Sim::new();
        let mem = MemorySystem::new(64 << 20, HierarchyConfig::ice_lake(1))
            .unwrap()
            .shared();
        let region = mem.borrow_mut().phys.alloc_huge(2 << 20).unwrap();
        let ctx = CoreCtx::new(&sim, Core::new(0, Freq::mhz(3100), Time::ZERO));
        // Warm the line into the core's L1d, then let a device overwrite it.
        ctx.store(&mem, region.base, &[1; 64], Category::Application)
            .unwrap();
        let before = ctx.core().cursor();
        let mut buf = [0u8; 64];
        ctx.load(&mem, region.base, &mut buf, Category::Application)
            .unwrap();
        assert_eq!(ctx.core().cursor(), before, "an L1d hit adds no stall");
        mem.borrow_mut().dma_write(region.base, &[7; 64]).unwrap();
        ctx.load(&mem, region.base, &mut buf, Category::Application)
            .unwrap();
        assert_eq!(buf, [7; 64]);
        assert!(
            ctx.core().cursor() > before,
            "the device write invalidated the L1d copy"
        );
        let stats = *mem.borrow().caches.stats(0).unwrap();
        assert_eq!(stats.l1d.misses, 2);
        assert!(
            ctx.load(
                &mem,
                PhysAddr(u64::MAX - 4),
                &mut buf,
                Category::Application
            )
            .is_err()
        );
    }
}
