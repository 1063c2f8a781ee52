//! The IOMMU (VT-d-like DMA remapping): every device belongs to a domain,
//! every domain has a page table the OS builds in simulated memory, and
//! every DMA a device issues is an I/O virtual address translated through
//! its domain's table before it reaches memory or another device.
//!
//! A translation first looks in the IOTLB (tagged by domain); a miss walks
//! the domain's table. Each level of the walk costs
//! [`IommuConfig::walk_step_ps`] plus DRAM's extra latency when the entry's
//! line is not in the LLC (the walker reads through the LLC, like a
//! device). With the IOMMU disabled, addresses pass through unchanged.
//!
//! Invariants:
//! * a device with no domain, or an address its domain does not map, or a
//!   write to a read-only mapping, faults: the request moves no byte, the
//!   fault is counted by device and kind, and reported to the device;
//! * the IOTLB only ever holds translations a walk found; unmapping
//!   invalidates them (the OS's IOTLB flush), so a stale entry cannot
//!   outlive its mapping;
//! * the walk reads the same page-table bytes the OS wrote.
//!
//! Shared virtual addressing (VT-d scalable mode, first-level tables): the
//! OS may bind a process's own page table to a *PASID* of a device; a
//! request the device tags with that PASID is a virtual address of the
//! process, walked in the process's table with user permissions (a
//! PASID-tagged request is a user request, as DSA's are with Priv = 0).
//! Such translations are cached in a PASID IOTLB tagged by ⟨device,
//! PASID⟩, which the OS flushes when it changes the process's mappings or
//! unbinds the PASID.
//!
//! Simplification: no paging-structure caches (an IOTLB miss always walks
//! every level) and no ATS; interrupt remapping is not modelled.

use std::collections::BTreeMap;

use nextio_engine::Duration;
use serde::{Deserialize, Serialize};

use crate::device::DeviceId;
use crate::mem::{
    Access, Asid, FaultKind, MapError, PageSize, PageTable, Perms, PhysAddr, Tlb, TlbConfig,
    TlbStats, VirtAddr,
};
use crate::memory::MemorySystem;

/// An IOMMU domain: one I/O address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DomainId(pub u16);

/// Configuration of the IOMMU: a preset's `[machine.fabric.iommu]`, where
/// each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IommuConfig {
    /// Translate DMA (off: device addresses are physical addresses).
    pub enabled: bool,
    /// Cost of one level of a page walk whose entry is on chip.
    pub walk_step_ps: u64,
    /// The IOTLB's geometry.
    pub iotlb: TlbConfig,
}

impl Default for IommuConfig {
    /// The root preset's IOMMU.
    fn default() -> Self {
        nextio_presets::root_section("machine.fabric.iommu")
    }
}

/// What the IOMMU has done.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IommuStats {
    pub translations: u64,
    pub walks: u64,
    pub walk_reads: u64,
    pub walk_dram_reads: u64,
    /// Faults by `(device, kind)`.
    pub faults: BTreeMap<(u16, &'static str), u64>,
}

impl IommuStats {
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }
}

/// The IOMMU's state.
pub(crate) struct Iommu {
    pub cfg: IommuConfig,
    iotlb: Tlb,
    domains: Vec<PageTable>,
    device_domain: BTreeMap<DeviceId, DomainId>,
    /// First-level tables bound to ⟨device, PASID⟩, each with the tag its
    /// translations carry in `pasid_tlb`.
    pasids: BTreeMap<(DeviceId, u32), (PageTable, Asid)>,
    next_pasid_tag: u16,
    pasid_tlb: Tlb,
    pub stats: IommuStats,
}

/// A translation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IommuFault {
    pub iova: u64,
    pub kind: FaultKind,
}

impl Iommu {
    pub fn new(cfg: IommuConfig) -> Result<Iommu, String> {
        Ok(Iommu {
            iotlb: Tlb::new(cfg.iotlb)?,
            pasid_tlb: Tlb::new(cfg.iotlb)?,
            cfg,
            domains: Vec::new(),
            device_domain: BTreeMap::new(),
            pasids: BTreeMap::new(),
            next_pasid_tag: 0,
            stats: IommuStats::default(),
        })
    }

    pub fn iotlb_stats(&self) -> TlbStats {
        self.iotlb.stats()
    }

    pub fn pasid_tlb_stats(&self) -> TlbStats {
        self.pasid_tlb.stats()
    }

    /// Bind `table` (a process's page table) to `pasid` of `dev`,
    /// replacing (and flushing) any earlier binding.
    pub fn bind_pasid(
        &mut self,
        dev: DeviceId,
        pasid: u32,
        table: PageTable,
    ) -> Result<(), MapError> {
        self.unbind_pasid(dev, pasid);
        let tag = Asid(self.next_pasid_tag);
        self.next_pasid_tag = self
            .next_pasid_tag
            .checked_add(1)
            .ok_or(MapError::Mem(crate::mem::MemError::ZeroSize))?;
        self.pasids.insert((dev, pasid), (table, tag));
        Ok(())
    }

    /// Remove `pasid` of `dev` and flush its translations.
    pub fn unbind_pasid(&mut self, dev: DeviceId, pasid: u32) {
        if let Some((_, tag)) = self.pasids.remove(&(dev, pasid)) {
            self.pasid_tlb.invalidate_asid(tag);
        }
    }

    /// Flush the PASID IOTLB's translations of `[va, va + len)` for
    /// `pasid` of every device (the OS changed the process's mappings).
    pub fn invalidate_pasid_range(&mut self, table: PageTable, va: u64, len: u64) {
        for (t, tag) in self.pasids.values() {
            if *t != table {
                continue;
            }
            let mut at = va - va % crate::mem::PAGE_BYTES;
            while at < va.saturating_add(len) {
                self.pasid_tlb.invalidate(*tag, VirtAddr(at));
                at += crate::mem::PAGE_BYTES;
            }
        }
    }

    pub fn create_domain(&mut self, mem: &mut MemorySystem) -> Result<DomainId, MapError> {
        let id = u16::try_from(self.domains.len())
            .map_err(|_| MapError::Mem(crate::mem::MemError::ZeroSize))?;
        self.domains.push(PageTable::new(&mut mem.phys)?);
        Ok(DomainId(id))
    }

    pub fn attach(&mut self, dev: DeviceId, domain: DomainId) -> bool {
        if (domain.0 as usize) >= self.domains.len() {
            return false;
        }
        self.device_domain.insert(dev, domain);
        true
    }

    pub fn domain_of(&self, dev: DeviceId) -> Option<DomainId> {
        self.device_domain.get(&dev).copied()
    }

    /// Map `[iova, iova + len)` to `[pa, pa + len)` in `domain`, with the
    /// largest pages alignment allows.
    pub fn map(
        &mut self,
        mem: &mut MemorySystem,
        domain: DomainId,
        iova: u64,
        pa: PhysAddr,
        len: u64,
        writable: bool,
    ) -> Result<(), MapError> {
        let table = *self
            .domains
            .get(domain.0 as usize)
            .ok_or(MapError::NotMapped(iova))?;
        let perms = Perms {
            write: writable,
            user: false,
            uncached: false,
        };
        let mut done = 0u64;
        while done < len {
            let size = PageSize::largest_fitting(iova + done, pa.0 + done, len - done);
            table.map(
                &mut mem.phys,
                VirtAddr(iova + done),
                pa.offset(done),
                size,
                perms,
            )?;
            done += size.bytes();
        }
        Ok(())
    }

    /// Unmap every page of `[iova, iova + len)` in `domain` and flush them
    /// from the IOTLB. Pages not mapped are skipped.
    pub fn unmap(&mut self, mem: &mut MemorySystem, domain: DomainId, iova: u64, len: u64) {
        let Some(&table) = self.domains.get(domain.0 as usize) else {
            return;
        };
        let mut at = iova;
        while at < iova.saturating_add(len) {
            let walk = table.walk(&mem.phys, VirtAddr(at));
            let step = match walk.found {
                Some(t) => {
                    let _ = table.unmap(&mut mem.phys, t.page_va);
                    self.iotlb.invalidate(Asid(domain.0), t.page_va);
                    t.page_va.0 + t.size.bytes() - at
                }
                None => crate::mem::PAGE_BYTES - at % crate::mem::PAGE_BYTES,
            };
            at = at.saturating_add(step);
        }
    }

    /// Translate a PASID-tagged DMA of `dev`: `va` in the process address
    /// space bound to `pasid`, with user permissions. Returns the physical
    /// address and the time the translation took.
    pub fn translate_pasid(
        &mut self,
        mem: &MemorySystem,
        dev: DeviceId,
        pasid: u32,
        va: u64,
        write: bool,
        dram_extra: Duration,
    ) -> Result<(PhysAddr, Duration), IommuFault> {
        self.stats.translations += 1;
        let fault = |stats: &mut IommuStats, kind: FaultKind| {
            *stats.faults.entry((dev.0, kind.name())).or_insert(0) += 1;
            Err(IommuFault { iova: va, kind })
        };
        // Without the IOMMU there are no PASID tables: nothing is bound.
        let bound = if self.cfg.enabled {
            self.pasids.get(&(dev, pasid)).copied()
        } else {
            None
        };
        let Some((table, tag)) = bound else {
            return fault(&mut self.stats, FaultKind::NotMapped);
        };
        let (t, cost) = match self.pasid_tlb.lookup(tag, VirtAddr(va)) {
            Some(t) => (t, Duration::ZERO),
            None => {
                let (found, cost) = self.walk(mem, table, VirtAddr(va), dram_extra);
                let Some(t) = found else {
                    return fault(&mut self.stats, FaultKind::NotMapped);
                };
                self.pasid_tlb.insert(tag, t);
                (t, cost)
            }
        };
        if let Err(f) = t.permits(VirtAddr(va), Access::new(write, true)) {
            return fault(&mut self.stats, f.kind);
        }
        Ok((t.pa(VirtAddr(va)), cost))
    }

    /// Walk `table` for `va`, costing each level.
    fn walk(
        &mut self,
        mem: &MemorySystem,
        table: PageTable,
        va: VirtAddr,
        dram_extra: Duration,
    ) -> (Option<crate::mem::Translation>, Duration) {
        let walk = table.walk(&mem.phys, va);
        self.stats.walks += 1;
        let mut cost = Duration::ZERO;
        for &entry in walk.entries() {
            self.stats.walk_reads += 1;
            cost += Duration::from_ps(self.cfg.walk_step_ps);
            if !mem.caches.llc_holds(entry) {
                self.stats.walk_dram_reads += 1;
                cost += dram_extra;
            }
        }
        (walk.found, cost)
    }

    /// Translate a DMA of `dev` at `iova`. Returns the physical address and
    /// the time the translation took.
    pub fn translate(
        &mut self,
        mem: &MemorySystem,
        dev: DeviceId,
        iova: u64,
        write: bool,
        dram_extra: Duration,
    ) -> Result<(PhysAddr, Duration), IommuFault> {
        if !self.cfg.enabled {
            return Ok((PhysAddr(iova), Duration::ZERO));
        }
        self.stats.translations += 1;
        let fault = |stats: &mut IommuStats, kind: FaultKind| {
            *stats.faults.entry((dev.0, kind.name())).or_insert(0) += 1;
            Err(IommuFault { iova, kind })
        };
        let Some(domain) = self.device_domain.get(&dev).copied() else {
            return fault(&mut self.stats, FaultKind::NotMapped);
        };
        let asid = Asid(domain.0);
        let va = VirtAddr(iova);
        let mut cost = Duration::ZERO;
        let t = match self.iotlb.lookup(asid, va) {
            Some(t) => t,
            None => {
                let table = self.domains[domain.0 as usize];
                let (found, walked) = self.walk(mem, table, va, dram_extra);
                cost = walked;
                let Some(t) = found else {
                    return fault(&mut self.stats, FaultKind::NotMapped);
                };
                self.iotlb.insert(asid, t);
                t
            }
        };
        if t.permits(va, Access::new(write, false)).is_err() {
            return fault(&mut self.stats, FaultKind::WriteToReadOnly);
        }
        Ok((t.pa(va), cost))
    }
}
