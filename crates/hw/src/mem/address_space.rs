//! An address space: a page table plus the address-space identifier that
//! tags its translations in TLBs (x86 PCID, an IOMMU domain id).
//!
//! [`AddressSpace::read`] and [`AddressSpace::write`] are the functional
//! (untimed) way through a space, for the OS and for tests; timed accesses
//! by simulated software go through a core's MMU, which uses the same
//! [`PageTable`] and adds a TLB and the cost of walks.
//!
//! Invariant: a faulting virtual `read`/`write` has no effect. Every page
//! of the range is translated, and its physical range checked, before the
//! first byte moves, so a write that straddles into a read-only or unmapped
//! page changes nothing.

use thiserror::Error;

use super::page_table::{Access, Fault, FaultKind, PageTable};
use super::{MemError, PAGE_BYTES, PhysAddr, PhysMem, VirtAddr};

/// Identifies an address space in translation caches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Asid(pub u16);

/// Errors of a virtual read or write.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AccessError {
    #[error(transparent)]
    Fault(#[from] Fault),
    #[error(transparent)]
    Mem(#[from] MemError),
    #[error("address {:#x} is a device register: use an MMIO access", .0.0)]
    Mmio(VirtAddr),
    #[error("address {:#x} is ordinary memory, not a device register", .0.0)]
    NotMmio(VirtAddr),
    #[error("address {:#x} is homed by a device: reach it through the coherent link", .0.0)]
    DeviceHomed(VirtAddr),
    #[error("address {:#x} is not homed by a device on a coherent link", .0.0)]
    NotHomed(VirtAddr),
    #[error("core {0} is not part of this host")]
    NoSuchCore(usize),
    #[error("this thread has no address space to access memory through")]
    NoAddressSpace,
}

/// A page table and its identifier. A handle: copies share the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddressSpace {
    pub asid: Asid,
    pub table: PageTable,
}

impl AddressSpace {
    /// A new, empty address space (every access faults).
    pub fn new(mem: &mut PhysMem, asid: Asid) -> Result<AddressSpace, MemError> {
        Ok(AddressSpace {
            asid,
            table: PageTable::new(mem)?,
        })
    }

    /// Translate every page of `[va, va + len)` in order (so the first
    /// faulting address is reported) without touching memory; calls `each`
    /// with `(offset into range, physical address, bytes)` per piece.
    pub fn pieces(
        &self,
        mem: &PhysMem,
        va: VirtAddr,
        len: u64,
        access: Access,
        mut each: impl FnMut(usize, PhysAddr, usize) -> Result<(), AccessError>,
    ) -> Result<(), AccessError> {
        if va.0.checked_add(len).is_none() {
            return Err(Fault {
                va,
                kind: FaultKind::NotMapped,
            }
            .into());
        }
        let mut done = 0u64;
        while done < len {
            let cur = va.offset(done);
            let t = self.table.translate(mem, cur, access)?;
            // Pieces never cross a 4 KiB boundary, which is also correct
            // (merely finer than needed) inside a larger page.
            let n = (PAGE_BYTES - cur.0 % PAGE_BYTES).min(len - done);
            each(done as usize, t.pa(cur), n as usize)?;
            done += n;
        }
        Ok(())
    }

    /// Read `buf.len()` bytes of virtual memory at `va`.
    pub fn read(
        &self,
        mem: &PhysMem,
        va: VirtAddr,
        buf: &mut [u8],
        user: bool,
    ) -> Result<(), AccessError> {
        let access = Access { write: false, user };
        let len = buf.len() as u64;
        self.pieces(
            mem,
            va,
            len,
            access,
            |_, pa, n| Ok(mem.check(pa, n as u64)?),
        )?;
        self.pieces(mem, va, len, access, |off, pa, n| {
            Ok(mem.read(pa, &mut buf[off..off + n])?)
        })
    }

    /// Write `data` to virtual memory at `va`; on any fault nothing is written.
    pub fn write(
        &self,
        mem: &mut PhysMem,
        va: VirtAddr,
        data: &[u8],
        user: bool,
    ) -> Result<(), AccessError> {
        let access = Access { write: true, user };
        let len = data.len() as u64;
        // Validate the whole range first (translation and physical bounds)
        // so a faulting write is not half done.
        self.pieces(
            mem,
            va,
            len,
            access,
            |_, pa, n| Ok(mem.check(pa, n as u64)?),
        )?;
        let mut pieces = Vec::new();
        self.pieces(mem, va, len, access, |off, pa, n| {
            pieces.push((off, pa, n));
            Ok(())
        })?;
        for (off, pa, n) in pieces {
            mem.write(pa, &data[off..off + n])?;
        }
        Ok(())
    }

    pub fn read_u32(&self, mem: &PhysMem, va: VirtAddr, user: bool) -> Result<u32, AccessError> {
        let mut b = [0; 4];
        self.read(mem, va, &mut b, user)?;
        Ok(u32::from_le_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::page_table::{PageSize, Perms};

    fn space(mem: &mut PhysMem) -> AddressSpace {
        AddressSpace::new(mem, Asid(1)).unwrap()
    }

    #[test]
    fn virtual_ranges_cross_pages_to_discontiguous_frames() {
        let mut mem = PhysMem::new(1 << 20).unwrap();
        let asp = space(&mut mem);
        let a = mem.alloc(PAGE_BYTES, PAGE_BYTES).unwrap().base;
        let b = mem.alloc(PAGE_BYTES, PAGE_BYTES).unwrap().base;
        // Two adjacent virtual pages backed by frames in reverse order.
        let map = |mem: &mut PhysMem, va, pa| {
            asp.table
                .map(mem, VirtAddr(va), pa, PageSize::Base, Perms::USER_RW)
                .unwrap()
        };
        map(&mut mem, 0x1000, b);
        map(&mut mem, 0x2000, a);
        let data: Vec<u8> = (0..200u8).collect();
        asp.write(&mut mem, VirtAddr(0x1fa0), &data, true).unwrap();
        let mut one = [0u8];
        mem.read(b.offset(0xfa0), &mut one).unwrap();
        assert_eq!(one[0], 0);
        mem.read(a, &mut one).unwrap();
        assert_eq!(one[0], 96);
        let mut back = vec![0; 200];
        asp.read(&mem, VirtAddr(0x1fa0), &mut back, true).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn faulting_write_changes_nothing() {
        let mut mem = PhysMem::new(1 << 20).unwrap();
        let asp = space(&mut mem);
        let frames: Vec<PhysAddr> = (0..3)
            .map(|_| mem.alloc(PAGE_BYTES, PAGE_BYTES).unwrap().base)
            .collect();
        for (va, pa, perms) in [
            (0x1000, frames[0], Perms::USER_RW),
            (0x2000, frames[1], Perms::USER_RO),
            (0x4000, frames[2], Perms::KERNEL_RW),
        ] {
            asp.table
                .map(&mut mem, VirtAddr(va), pa, PageSize::Base, perms)
                .unwrap();
        }
        let err = asp
            .write(&mut mem, VirtAddr(0x1ff0), &[7; 32], true)
            .unwrap_err();
        assert_eq!(
            err,
            AccessError::Fault(Fault {
                va: VirtAddr(0x2000),
                kind: FaultKind::WriteToReadOnly
            })
        );
        assert_eq!(
            mem.read_u64(frames[0].offset(0xff0)).unwrap(),
            0,
            "no partial write"
        );
        // Unmapped hole between pages.
        assert!(
            asp.read(&mem, VirtAddr(0x2ff0), &mut [0; 32], true)
                .is_err()
        );
        // A user process cannot read kernel memory; the kernel can.
        assert!(matches!(
            asp.read(&mem, VirtAddr(0x4000), &mut [0; 8], true),
            Err(AccessError::Fault(Fault {
                kind: FaultKind::UserToKernel,
                ..
            }))
        ));
        asp.read(&mem, VirtAddr(0x4000), &mut [0; 8], false)
            .unwrap();
        // A mapping past the end of physical memory is a memory error, not a panic.
        asp.table
            .map(
                &mut mem,
                VirtAddr(0x10_0000),
                PhysAddr(1 << 30),
                PageSize::Base,
                Perms::USER_RW,
            )
            .unwrap();
        assert!(matches!(
            asp.write(&mut mem, VirtAddr(0x10_0000), &[1], true),
            Err(AccessError::Mem(_))
        ));
        // Wrapping ranges fault instead of overflowing.
        assert!(
            asp.read(&mem, VirtAddr(u64::MAX), &mut [0; 2], true)
                .is_err()
        );
    }

    #[test]
    fn two_spaces_are_isolated() {
        let mut mem = PhysMem::new(8 << 20).unwrap();
        let a = AddressSpace::new(&mut mem, Asid(1)).unwrap();
        let b = AddressSpace::new(&mut mem, Asid(2)).unwrap();
        let fa = mem.alloc(PAGE_BYTES, PAGE_BYTES).unwrap().base;
        a.table
            .map(
                &mut mem,
                VirtAddr(0x1000),
                fa,
                PageSize::Base,
                Perms::USER_RW,
            )
            .unwrap();
        a.write(&mut mem, VirtAddr(0x1000), b"secret", true)
            .unwrap();
        // The same virtual address in another space reaches nothing.
        let mut buf = [0u8; 6];
        assert!(b.read(&mem, VirtAddr(0x1000), &mut buf, true).is_err());
        assert!(
            b.write(&mut mem, VirtAddr(0x1000), b"XXXXXX", true)
                .is_err()
        );
        a.read(&mem, VirtAddr(0x1000), &mut buf, true).unwrap();
        assert_eq!(&buf, b"secret");
    }
}
