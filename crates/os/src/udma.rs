//! The OS's driver of the user-space DMA engine (`hw::devices::udma`):
//! what a kernel does so processes can use the engine without system
//! calls afterwards, and the one path that still needs them.
//!
//! * **Bind** a process: its page table is bound to a PASID in the IOMMU
//!   (shared virtual addressing) and the PASID is loaded into its threads'
//!   IA32_PASID, so ENQCMD stamps it.
//! * **Open a portal**: a dedicated queue is configured for one process's
//!   PASID and its portal page mapped into that process only; a shared
//!   queue's portal may be mapped into many. A process reaches no other
//!   portal: the page is not in its page table.
//! * **Capabilities**: the owner of some memory grants another process
//!   access to a window of it (read and/or write); the kernel checks the
//!   window is mapped, writes the engine's capability table and hands the
//!   grantee the handle. Only the memory's owner may revoke.
//! * **The kernel-mediated path** (the baseline the engine is judged
//!   against): per operation, a system call in which the kernel pins the
//!   user pages and maps them into the engine's IOMMU domain, submits in
//!   its own queue, waits, and unmaps.
//!
//! Invariants: a dedicated queue has at most one owner; a capability is
//! granted only over memory its granter has mapped and only to a bound
//! process; the engine's configuration is written only here.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use nextio_engine::SimRng;
use nextio_hw::devices::udma::{Capability, Udma, UdmaConfig, WqConfig, WqMode};
use nextio_hw::fabric::{Attach, DeviceHandle, DeviceLink, Space};
use nextio_hw::mem::{PAGE_BYTES, PhysAddr, VirtAddr};
use serde::{Deserialize, Serialize};

use crate::host::{Host, HostError, Process};
use crate::kernel::{OsError, Pid};

/// Costs of the driver's paths, in core cycles (callers charge them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdmaCosts {
    /// Pinning one user page and writing its IOMMU entry on the
    /// kernel-mediated path (get_user_pages, page refcount, PTE write).
    pub pin_map_page_cycles: u64,
    /// Unmapping after the operation: PTE clears and one IOTLB/ATC
    /// invalidation with its wait.
    pub unmap_flush_cycles: u64,
}

/// The driver's costs in time: a preset's `[os.udma]`, where each value's
/// source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdmaTimes {
    pub pin_map_page_ps: u64,
    pub unmap_flush_ps: u64,
}

impl Default for UdmaTimes {
    /// The root preset's driver.
    fn default() -> Self {
        nextio_presets::root_section("os.udma")
    }
}

impl UdmaCosts {
    /// The costs for a core clocked at `mhz` MHz.
    pub fn at_mhz(mhz: u64) -> UdmaCosts {
        let t = UdmaTimes::default();
        let cycles = |ps: u64| ps.saturating_mul(mhz) / 1_000_000;
        UdmaCosts {
            pin_map_page_cycles: cycles(t.pin_map_page_ps),
            unmap_flush_cycles: cycles(t.unmap_flush_ps),
        }
    }
}

/// A portal mapped into a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Portal {
    /// Where the process sees the portal page.
    pub va: VirtAddr,
    pub wq: usize,
    pub mode: WqMode,
}

/// One pinned range of the kernel-mediated path: its device address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pinned {
    pub iova: u64,
    pub len: u64,
}

#[derive(Default)]
struct State {
    /// Dedicated queue → its owner; shared queues are listed with `None`.
    queues: BTreeMap<usize, Option<Pid>>,
    /// Capability handle → the process whose memory it names.
    grants: BTreeMap<u32, Pid>,
}

/// The driver of one engine of a host.
#[derive(Clone)]
pub struct UdmaDriver {
    host: Host,
    dev: DeviceHandle<Udma>,
    state: Rc<RefCell<State>>,
}

impl UdmaDriver {
    /// Attach an engine to `host` on the CPU die (DSA is on the mesh:
    /// [`DeviceLink::on_die`], its requests still pass the root complex)
    /// and take charge of it.
    pub fn attach(host: &Host, cfg: UdmaConfig, rng: SimRng) -> Result<UdmaDriver, HostError> {
        let engine = Udma::new(cfg, rng).map_err(|e| OsError::Invalid(e.to_string()))?;
        let dev = host.attach(engine, Attach::RootPort, DeviceLink::on_die())?;
        Ok(UdmaDriver {
            host: host.clone(),
            dev,
            state: Rc::default(),
        })
    }

    pub fn device(&self) -> &DeviceHandle<Udma> {
        &self.dev
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Bind `p`'s address space to a PASID (its pid + 1); returns it.
    pub fn bind(&self, p: &Process) -> Result<u32, OsError> {
        let mut k = self.host.kernel().borrow_mut();
        if let Some(pasid) = k.pasid(p.pid()) {
            return Ok(pasid);
        }
        let pasid = u32::try_from(p.pid().0 + 1)
            .ok()
            .filter(|x| *x < 0xffff)
            .ok_or_else(|| OsError::Invalid("out of PASIDs".into()))?;
        let table = k.space(p.pid())?.table;
        self.host
            .machine()
            .fabric()
            .iommu_bind_pasid(self.dev.id, pasid, table)?;
        k.set_pasid(p.pid(), pasid)?;
        Ok(pasid)
    }

    /// Give `p` dedicated queue `wq` (running in its PASID) and map its
    /// portal into `p`.
    pub fn open_dedicated(&self, p: &Process, wq: usize) -> Result<Portal, OsError> {
        let pasid = self.bind(p)?;
        if self.state.borrow().queues.contains_key(&wq) {
            return Err(OsError::Invalid(format!("EBUSY: queue {wq} is taken")));
        }
        self.configure(wq, WqConfig::dedicated(Some(pasid)))?;
        self.state.borrow_mut().queues.insert(wq, Some(p.pid()));
        self.map_portal(p, wq, WqMode::Dedicated)
    }

    /// Map shared queue `wq` (configured on first use) into `p`.
    pub fn open_shared(&self, p: &Process, wq: usize) -> Result<Portal, OsError> {
        self.bind(p)?;
        let known = self.state.borrow().queues.get(&wq).copied();
        match known {
            Some(Some(_)) => {
                return Err(OsError::Invalid(format!("EBUSY: queue {wq} is dedicated")));
            }
            Some(None) => {}
            None => {
                self.configure(wq, WqConfig::shared())?;
                self.state.borrow_mut().queues.insert(wq, None);
            }
        }
        self.map_portal(p, wq, WqMode::Shared)
    }

    /// A page of kernel memory the engine can write (a completion record
    /// area for the kernel's own descriptors), mapped into the engine's
    /// domain at its physical address. Returns that address.
    pub fn kernel_page(&self) -> Result<PhysAddr, OsError> {
        let fabric = self.host.machine().fabric().clone();
        let pa = self
            .host
            .machine()
            .memory()
            .borrow_mut()
            .phys
            .alloc(PAGE_BYTES, PAGE_BYTES)?
            .base;
        if fabric.iommu_enabled() {
            let domain = self.host.kernel().borrow_mut().device_domain(self.dev.id)?;
            fabric.iommu_map(domain, pa.0, pa, PAGE_BYTES, true)?;
        }
        Ok(pa)
    }

    /// Keep dedicated queue `wq` for the kernel (the kernel-mediated
    /// path): it runs in the engine's IOMMU domain. Returns its portal's
    /// physical address.
    pub fn open_kernel(&self, wq: usize) -> Result<PhysAddr, OsError> {
        if self.state.borrow().queues.contains_key(&wq) {
            return Err(OsError::Invalid(format!("EBUSY: queue {wq} is taken")));
        }
        self.configure(wq, WqConfig::dedicated(None))?;
        self.state
            .borrow_mut()
            .queues
            .insert(wq, Some(Pid(usize::MAX)));
        let bar = self
            .host
            .machine()
            .fabric()
            .bar(self.dev.id, 0)
            .ok_or_else(|| OsError::Invalid("the engine has no BAR".into()))?;
        Ok(PhysAddr(bar.base + Udma::portal_offset(wq)))
    }

    fn configure(&self, wq: usize, cfg: WqConfig) -> Result<(), OsError> {
        self.dev
            .borrow_mut()
            .configure_wq(wq, cfg)
            .map_err(|e| OsError::Invalid(e.to_string()))
    }

    fn map_portal(&self, p: &Process, wq: usize, mode: WqMode) -> Result<Portal, OsError> {
        let va = p.map_bar(self.dev.id, 0, Udma::portal_offset(wq), PAGE_BYTES)?;
        Ok(Portal { va, wq, mode })
    }

    /// `owner` grants `to` access to `[va, va + len)` of its memory.
    pub fn grant(
        &self,
        owner: &Process,
        to: &Process,
        va: VirtAddr,
        len: u64,
        read: bool,
        write: bool,
    ) -> Result<u32, OsError> {
        let target = self.bind(owner)?;
        let grantee = self.bind(to)?;
        {
            // Every page of the window must be the owner's (EFAULT).
            let k = self.host.kernel().borrow();
            let space = k.space(owner.pid())?;
            let m = self.host.machine().memory().borrow();
            m.physical_ranges(&space, va, len)?;
        }
        let handle = self
            .dev
            .borrow_mut()
            .grant(Capability {
                owner: grantee,
                space: Space::Pasid(target),
                base: va.0,
                len,
                read,
                write,
            })
            .map_err(|e| OsError::Invalid(e.to_string()))?;
        self.state.borrow_mut().grants.insert(handle, owner.pid());
        Ok(handle)
    }

    /// `by` revokes `handle`; only the memory's owner may.
    pub fn revoke(&self, by: &Process, handle: u32) -> Result<(), OsError> {
        let owner = self.state.borrow().grants.get(&handle).copied();
        if owner != Some(by.pid()) {
            return Err(OsError::Invalid(format!(
                "EPERM: process {:?} does not own capability {handle:#x}",
                by.pid()
            )));
        }
        self.state.borrow_mut().grants.remove(&handle);
        self.dev.borrow_mut().revoke(handle);
        Ok(())
    }

    /// Kernel-mediated path: pin `[va, va + len)` of `p` and map each
    /// page into the engine's domain at its physical address. Returns the
    /// device ranges and the cycles it cost.
    pub fn pin(
        &self,
        p: &Process,
        va: VirtAddr,
        len: u64,
        costs: UdmaCosts,
    ) -> Result<(Vec<Pinned>, u64), OsError> {
        let fabric = self.host.machine().fabric().clone();
        let ranges = {
            let k = self.host.kernel().borrow();
            let space = k.space(p.pid())?;
            let m = self.host.machine().memory().borrow();
            m.physical_ranges(&space, va, len)?
        };
        let domain = self.host.kernel().borrow_mut().device_domain(self.dev.id)?;
        let mut out = Vec::with_capacity(ranges.len());
        let mut pages = 0u64;
        for (pa, n) in ranges {
            // Whole pages around the range, mapped at their own address.
            let start = pa.0 - pa.0 % PAGE_BYTES;
            let end = (pa.0 + n).div_ceil(PAGE_BYTES) * PAGE_BYTES;
            if fabric.iommu_enabled() {
                fabric.iommu_unmap(domain, start, end - start);
                fabric.iommu_map(domain, start, PhysAddr(start), end - start, true)?;
            }
            pages += (end - start) / PAGE_BYTES;
            out.push(Pinned { iova: pa.0, len: n });
        }
        Ok((out, pages * costs.pin_map_page_cycles))
    }

    /// Undo [`UdmaDriver::pin`]: unmap the pages and invalidate the IOTLB
    /// and the engine's ATC. Returns the cycles it cost.
    pub fn unpin(&self, pinned: &[Pinned], costs: UdmaCosts) -> Result<u64, OsError> {
        let fabric = self.host.machine().fabric().clone();
        let domain = self.host.kernel().borrow_mut().device_domain(self.dev.id)?;
        for r in pinned {
            let start = r.iova - r.iova % PAGE_BYTES;
            let end = (r.iova + r.len).div_ceil(PAGE_BYTES) * PAGE_BYTES;
            if fabric.iommu_enabled() {
                fabric.iommu_unmap(domain, start, end - start);
            }
            self.dev
                .borrow_mut()
                .invalidate_atc(Space::Domain, start, end - start);
        }
        Ok(costs.unmap_flush_cycles)
    }
}
