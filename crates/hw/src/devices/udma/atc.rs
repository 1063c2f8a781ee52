//! The engine's address translation cache (a PCIe ATC, DSA's device
//! TLB): translations the IOMMU gave it with ATS, tagged by address space
//! (its domain, or a PASID), so a repeated page costs no translation
//! request. A miss asks the IOMMU ([`crate::fabric::DeviceCtx::ats_translate`]),
//! whose answer arrives after a round trip and its walk.
//!
//! Invariants: an entry is a copy of an answer the IOMMU gave; the OS
//! invalidates entries when it changes or revokes a mapping (an ATS
//! invalidation), so an unmapped page is never reached through a stale
//! entry; a read-only entry never serves a write.

use nextio_engine::Time;

use crate::device::DeviceCtx;
use crate::fabric::{DmaFault, Space};
use crate::mem::{
    Asid, PageSize, Perms, PhysAddr, Tlb, TlbConfig, TlbStats, Translation, VirtAddr,
};

pub(super) struct Atc {
    tlb: Tlb,
}

/// The tag a space's translations carry.
fn tag(space: Space) -> Asid {
    match space {
        Space::Pasid(p) => Asid((p as u16).wrapping_add(1)),
        Space::Domain | Space::Translated => Asid(0),
    }
}

impl Atc {
    /// An ATC of geometry `cfg` (the preset's `devices.udma.atc`).
    pub fn new(cfg: TlbConfig) -> Result<Atc, String> {
        Ok(Atc {
            tlb: Tlb::new(cfg)?,
        })
    }

    pub fn stats(&self) -> TlbStats {
        self.tlb.stats()
    }

    /// The physical address of `va` in `space` for a `write` or a read,
    /// and when it is known: now on a hit, after an ATS round trip on a
    /// miss.
    pub fn translate(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        space: Space,
        va: u64,
        write: bool,
    ) -> Result<(u64, Time), DmaFault> {
        if space == Space::Translated {
            return Ok((va, cx.now()));
        }
        if let Some(t) = self.tlb.lookup(tag(space), VirtAddr(va))
            && (t.perms.write || !write)
        {
            return Ok((t.pa(VirtAddr(va)).0, cx.now()));
        }
        let a = cx.ats_translate(space, va, write)?;
        let offset = va - a.page_va;
        self.tlb.insert(
            tag(space),
            Translation {
                page_va: VirtAddr(a.page_va),
                frame: PhysAddr(a.pa - offset),
                size: PageSize::Base,
                perms: Perms {
                    write: a.writable,
                    user: true,
                    uncached: false,
                },
            },
        );
        Ok((a.pa, a.ready))
    }

    /// Drop the translations of `[va, va + len)` in `space`.
    pub fn invalidate(&mut self, space: Space, va: u64, len: u64) {
        let page = crate::mem::PAGE_BYTES;
        let mut at = va - va % page;
        while at < va.saturating_add(len) {
            self.tlb.invalidate(tag(space), VirtAddr(at));
            at += page;
        }
    }

    /// Drop every translation of `space`.
    pub fn invalidate_space(&mut self, space: Space) {
        self.tlb.invalidate_asid(tag(space));
    }
}
