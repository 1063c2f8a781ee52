//! Kernel-owned memory for devices and the kernel's view of device
//! registers: what a driver gets from `dma_alloc_coherent` and `ioremap`.
//!
//! A kernel DMA buffer is physically contiguous, reached by the kernel
//! through its direct map and by the device at an I/O virtual address
//! mapped into the device's IOMMU domain (the physical address itself,
//! as the DMA API's identity mappings give; with the IOMMU off the
//! device sees physical addresses anyway). A register window is mapped
//! uncached into the kernel's address space at `DIRECT_MAP_BASE + pa`,
//! above the direct map of memory (device windows lie above all memory).
//!
//! Invariants: no process page table ever holds these mappings (the
//! kernel's space is separate, as with kernel page-table isolation); a
//! device reaches exactly the buffers allocated for it.

use nextio_hw::device::DeviceId;
use nextio_hw::mem::{HUGE_PAGE_BYTES, PAGE_BYTES, PageSize, Perms, PhysAddr, VirtAddr};

use crate::kernel::{DIRECT_MAP_BASE, Kernel, OsError};

/// A kernel DMA buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelDma {
    /// Where the kernel reaches it (its direct map).
    pub kva: VirtAddr,
    /// Where the device reaches it.
    pub iova: u64,
    pub len: u64,
}

impl KernelDma {
    /// The device address of the byte at `offset`.
    pub fn iova_at(&self, offset: u64) -> u64 {
        self.iova + offset
    }
    /// The kernel address of the byte at `offset`.
    pub fn kva_at(&self, offset: u64) -> VirtAddr {
        self.kva.offset(offset)
    }
}

/// `dma_alloc_coherent`: `bytes` of contiguous, zeroed memory for `dev`.
pub fn dma_alloc(kernel: &mut Kernel, dev: DeviceId, bytes: u64) -> Result<KernelDma, OsError> {
    let len = bytes
        .max(1)
        .checked_next_multiple_of(HUGE_PAGE_BYTES)
        .ok_or_else(|| OsError::Invalid("DMA buffer too large".into()))?;
    let fabric = kernel.bus().fabric.clone();
    let region = kernel
        .bus()
        .memory
        .borrow_mut()
        .phys
        .alloc(len, HUGE_PAGE_BYTES)?;
    let pa = region.base;
    if fabric.iommu_enabled() {
        let domain = kernel.device_domain(dev)?;
        fabric.iommu_map(domain, pa.0, pa, len, true)?;
    }
    Ok(KernelDma {
        kva: VirtAddr(DIRECT_MAP_BASE + pa.0),
        iova: pa.0,
        len,
    })
}

/// `ioremap`: `len` bytes of `dev`'s BAR `bar` from `offset`, uncached in
/// the kernel's space. Mapping a window that is already mapped returns
/// the same address.
pub fn ioremap(
    kernel: &mut Kernel,
    dev: DeviceId,
    bar: u8,
    offset: u64,
    len: u64,
) -> Result<VirtAddr, OsError> {
    let w = kernel.bar_range(dev, bar, offset, len)?;
    let pa = PhysAddr(w.base + offset);
    let va = VirtAddr(DIRECT_MAP_BASE + pa.0);
    let len = len.div_ceil(PAGE_BYTES) * PAGE_BYTES;
    let space = kernel.kernel_space();
    let mut m = kernel.bus().memory.borrow_mut();
    for page in 0..len / PAGE_BYTES {
        let at = va.offset(page * PAGE_BYTES);
        if space.table.walk(&m.phys, at).found.is_some() {
            continue;
        }
        space.table.map(
            &mut m.phys,
            at,
            pa.offset(page * PAGE_BYTES),
            PageSize::Base,
            Perms::KERNEL_RW.uncached(),
        )?;
    }
    Ok(va)
}
