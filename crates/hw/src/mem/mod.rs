//! Simulated memory: physical memory that holds real bytes and its
//! allocator ([`PhysMem`]), the x86-64 page-table format kept *in* that
//! memory ([`page_table`]), address spaces built from it
//! ([`address_space`]), and the translation caches in front of it
//! ([`tlb`]: a core's TLB, an IOMMU's IOTLB).
//!
//! Invariants:
//! * [`PhysMem`] never panics on a bad address: every access is checked
//!   against the configured size and an out-of-range access is a
//!   [`MemError`]. Memory nobody has written reads as zeros; 4 KiB frames are
//!   only materialised on first write, so a 64 GiB machine costs nothing
//!   until software touches it.
//! * The allocator hands out disjoint regions and never address 0, so a
//!   zeroed descriptor can never name a valid buffer.
//! * Page tables are bytes in [`PhysMem`] like any other: the MMU, the
//!   IOMMU and the OS all read and write the same entries, so what a walk
//!   finds is exactly what the OS wrote, and a walk's loads can be costed
//!   through the cache hierarchy like any other load.

pub mod address_space;
pub mod page_table;
pub mod tlb;

pub use address_space::{AccessError, AddressSpace, Asid};
pub use page_table::{
    Access, Fault, FaultKind, MapError, PageSize, PageTable, Perms, Translation, Walk,
};
pub use tlb::{Tlb, TlbConfig, TlbStats};

use thiserror::Error;

/// Bytes in a base page / physical frame (x86-64 4 KiB pages).
pub const PAGE_BYTES: u64 = 4096;
/// Bytes in a huge page (x86-64 2 MiB pages, a page-directory leaf).
pub const HUGE_PAGE_BYTES: u64 = 2 << 20;
/// Bytes in a giant page (x86-64 1 GiB pages, a page-directory-pointer leaf).
pub const GIANT_PAGE_BYTES: u64 = 1 << 30;

/// Frames in one huge page: the fan-out of the sparse frame directory.
const FRAMES_PER_CHUNK: usize = (HUGE_PAGE_BYTES / PAGE_BYTES) as usize;

/// A physical (bus) address: what caches, DMA engines and page tables use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysAddr(pub u64);

/// A virtual address in some process's [`AddressSpace`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VirtAddr(pub u64);

impl PhysAddr {
    pub const fn offset(self, bytes: u64) -> PhysAddr {
        PhysAddr(self.0.wrapping_add(bytes))
    }
}
impl VirtAddr {
    pub const fn offset(self, bytes: u64) -> VirtAddr {
        VirtAddr(self.0.wrapping_add(bytes))
    }
}

/// Errors of physical memory and its allocator.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MemError {
    #[error("physical access {pa:#x}+{len} is outside memory of {size_bytes} bytes")]
    OutOfBounds { pa: u64, len: u64, size_bytes: u64 },
    #[error("out of physical memory: {requested_bytes} bytes requested, {free_bytes} left")]
    OutOfMemory {
        requested_bytes: u64,
        free_bytes: u64,
    },
    #[error("alignment {align} is not a non-zero power of two")]
    BadAlignment { align: u64 },
    #[error("cannot allocate zero bytes")]
    ZeroSize,
    #[error("memory size {size_bytes} is not a non-zero multiple of {PAGE_BYTES}")]
    BadMemorySize { size_bytes: u64 },
}

/// A contiguous range of physical memory handed out by the allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub base: PhysAddr,
    pub len: u64,
}

impl Region {
    /// First address past the region.
    pub fn end(&self) -> PhysAddr {
        self.base.offset(self.len)
    }
    pub fn contains(&self, pa: PhysAddr) -> bool {
        pa >= self.base && pa < self.end()
    }
}

type Frame = [u8; PAGE_BYTES as usize];
/// One 2 MiB chunk of the sparse frame directory.
type Chunk = [Option<Box<Frame>>; FRAMES_PER_CHUNK];

/// Physical memory: real bytes, allocated lazily in 4 KiB frames.
///
/// Frames hang off a two-level directory (2 MiB chunks of 512 frames) kept
/// in a flat `Vec`, so a lookup is two indexings and no hashing, and the
/// directory of a 64 GiB machine is 32 Ki pointers.
pub struct PhysMem {
    size_bytes: u64,
    chunks: Vec<Option<Box<Chunk>>>,
    /// Bump pointer of the allocator. Regions are never freed: simulated
    /// software allocates its rings and pools once at start-up, and a bump
    /// allocator keeps placement a pure function of the allocation order.
    next_free: u64,
}

impl PhysMem {
    /// Memory of `size_bytes` (a multiple of 4 KiB), all zeros.
    pub fn new(size_bytes: u64) -> Result<PhysMem, MemError> {
        if size_bytes == 0 || !size_bytes.is_multiple_of(PAGE_BYTES) {
            return Err(MemError::BadMemorySize { size_bytes });
        }
        let chunks = size_bytes.div_ceil(HUGE_PAGE_BYTES) as usize;
        // The first frame is never allocated so physical address 0 can mean
        // "no buffer" in descriptors, as it does for real drivers.
        Ok(PhysMem {
            size_bytes,
            chunks: (0..chunks).map(|_| None).collect(),
            next_free: PAGE_BYTES,
        })
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Bytes the allocator can still hand out (ignoring alignment padding).
    pub fn free_bytes(&self) -> u64 {
        self.size_bytes - self.next_free
    }

    /// Bytes of host memory actually backing written frames.
    pub fn resident_bytes(&self) -> u64 {
        let frames: usize = self
            .chunks
            .iter()
            .flatten()
            .map(|c| c.iter().filter(|f| f.is_some()).count())
            .sum();
        frames as u64 * PAGE_BYTES
    }

    /// Allocate `bytes` contiguous bytes aligned to `align` (a power of two).
    pub fn alloc(&mut self, bytes: u64, align: u64) -> Result<Region, MemError> {
        if bytes == 0 {
            return Err(MemError::ZeroSize);
        }
        if align == 0 || !align.is_power_of_two() {
            return Err(MemError::BadAlignment { align });
        }
        let oom = MemError::OutOfMemory {
            requested_bytes: bytes,
            free_bytes: self.free_bytes(),
        };
        let base = self
            .next_free
            .checked_next_multiple_of(align)
            .ok_or(oom.clone())?;
        let end = base.checked_add(bytes).ok_or(oom.clone())?;
        if end > self.size_bytes {
            return Err(oom);
        }
        self.next_free = end;
        Ok(Region {
            base: PhysAddr(base),
            len: bytes,
        })
    }

    /// Allocate whole 2 MiB huge pages covering `bytes`, 2 MiB aligned, as a
    /// DPDK- or Ensō-style driver does for its rings and buffer pools.
    pub fn alloc_huge(&mut self, bytes: u64) -> Result<Region, MemError> {
        if bytes == 0 {
            return Err(MemError::ZeroSize);
        }
        let len = bytes
            .checked_next_multiple_of(HUGE_PAGE_BYTES)
            .ok_or(MemError::OutOfMemory {
                requested_bytes: bytes,
                free_bytes: self.free_bytes(),
            })?;
        self.alloc(len, HUGE_PAGE_BYTES)
    }

    /// Whether `[pa, pa + len)` lies inside memory.
    pub fn check(&self, pa: PhysAddr, len: u64) -> Result<(), MemError> {
        match pa.0.checked_add(len) {
            Some(end) if end <= self.size_bytes => Ok(()),
            _ => Err(MemError::OutOfBounds {
                pa: pa.0,
                len,
                size_bytes: self.size_bytes,
            }),
        }
    }

    fn frame(&self, frame_no: u64) -> Option<&Frame> {
        let chunk = self
            .chunks
            .get((frame_no / FRAMES_PER_CHUNK as u64) as usize)?
            .as_ref()?;
        chunk[(frame_no % FRAMES_PER_CHUNK as u64) as usize].as_deref()
    }

    fn frame_mut(&mut self, frame_no: u64) -> &mut Frame {
        // Callers have bounds-checked the address, so the chunk exists.
        let chunk = self.chunks[(frame_no / FRAMES_PER_CHUNK as u64) as usize]
            .get_or_insert_with(|| Box::new(std::array::from_fn(|_| None)));
        chunk[(frame_no % FRAMES_PER_CHUNK as u64) as usize]
            .get_or_insert_with(|| Box::new([0; PAGE_BYTES as usize]))
    }

    /// Copy `buf.len()` bytes starting at `pa` into `buf`.
    pub fn read(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), MemError> {
        self.check(pa, buf.len() as u64)?;
        let mut addr = pa.0;
        let mut done = 0;
        while done < buf.len() {
            let off = (addr % PAGE_BYTES) as usize;
            let n = (PAGE_BYTES as usize - off).min(buf.len() - done);
            match self.frame(addr / PAGE_BYTES) {
                Some(f) => buf[done..done + n].copy_from_slice(&f[off..off + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
            addr += n as u64;
        }
        Ok(())
    }

    /// Copy `data` into memory starting at `pa`.
    pub fn write(&mut self, pa: PhysAddr, data: &[u8]) -> Result<(), MemError> {
        self.check(pa, data.len() as u64)?;
        let mut addr = pa.0;
        let mut done = 0;
        while done < data.len() {
            let off = (addr % PAGE_BYTES) as usize;
            let n = (PAGE_BYTES as usize - off).min(data.len() - done);
            let chunk = &data[done..done + n];
            // Writing zeros to a frame nobody wrote changes nothing, so it
            // need not cost host memory.
            let untouched = self.frame(addr / PAGE_BYTES).is_none();
            if !(untouched && chunk.iter().all(|b| *b == 0)) {
                self.frame_mut(addr / PAGE_BYTES)[off..off + n].copy_from_slice(chunk);
            }
            done += n;
            addr += n as u64;
        }
        Ok(())
    }

    pub fn read_u16(&self, pa: PhysAddr) -> Result<u16, MemError> {
        let mut b = [0; 2];
        self.read(pa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    pub fn read_u32(&self, pa: PhysAddr) -> Result<u32, MemError> {
        let mut b = [0; 4];
        self.read(pa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    pub fn read_u64(&self, pa: PhysAddr) -> Result<u64, MemError> {
        let mut b = [0; 8];
        self.read(pa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    pub fn write_u16(&mut self, pa: PhysAddr, v: u16) -> Result<(), MemError> {
        self.write(pa, &v.to_le_bytes())
    }
    pub fn write_u32(&mut self, pa: PhysAddr, v: u32) -> Result<(), MemError> {
        self.write(pa, &v.to_le_bytes())
    }
    pub fn write_u64(&mut self, pa: PhysAddr, v: u64) -> Result<(), MemError> {
        self.write(pa, &v.to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_memory_reads_zero_and_costs_nothing() {
        let mem = PhysMem::new(64 << 30).unwrap();
        let mut b = [0xffu8; 16];
        mem.read(PhysAddr(12345 << 20), &mut b).unwrap();
        assert_eq!(b, [0; 16]);
        assert_eq!(mem.resident_bytes(), 0);
    }

    #[test]
    fn bytes_round_trip_across_frames() {
        let mut mem = PhysMem::new(1 << 20).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        mem.write(PhysAddr(4000), &data).unwrap();
        let mut back = vec![0; data.len()];
        mem.read(PhysAddr(4000), &mut back).unwrap();
        assert_eq!(back, data);
        mem.write_u64(PhysAddr(4095), 0x0102_0304_0506_0708)
            .unwrap();
        assert_eq!(mem.read_u64(PhysAddr(4095)).unwrap(), 0x0102_0304_0506_0708);
        assert_eq!(mem.read_u8_for_test(4095), 0x08, "little-endian");
        mem.write_u32(PhysAddr(8), 0xdead_beef).unwrap();
        mem.write_u16(PhysAddr(12), 0xcafe).unwrap();
        assert_eq!(mem.read_u32(PhysAddr(8)).unwrap(), 0xdead_beef);
        assert_eq!(mem.read_u16(PhysAddr(12)).unwrap(), 0xcafe);
    }

    impl PhysMem {
        fn read_u8_for_test(&self, pa: u64) -> u8 {
            let mut b = [0];
            self.read(PhysAddr(pa), &mut b).unwrap();
            b[0]
        }
    }

    #[test]
    fn out_of_bounds_is_an_error() {
        let mut mem = PhysMem::new(1 << 20).unwrap();
        let mut b = [0; 8];
        assert!(matches!(
            mem.read(PhysAddr((1 << 20) - 4), &mut b),
            Err(MemError::OutOfBounds { .. })
        ));
        assert!(mem.write(PhysAddr(u64::MAX - 2), &b).is_err());
        assert!(mem.read_u64(PhysAddr((1 << 20) - 8)).is_ok());
        assert!(PhysMem::new(0).is_err());
        assert!(PhysMem::new(1000).is_err());
    }

    #[test]
    fn allocator_aligns_never_overlaps_and_runs_out() {
        let mut mem = PhysMem::new(8 << 20).unwrap();
        let a = mem.alloc(100, 64).unwrap();
        assert_ne!(a.base.0, 0);
        assert_eq!(a.base.0 % 64, 0);
        let h = mem.alloc_huge(1).unwrap();
        assert_eq!(h.base.0 % HUGE_PAGE_BYTES, 0);
        assert_eq!(h.len, HUGE_PAGE_BYTES);
        assert!(h.base.0 >= a.end().0);
        let b = mem.alloc(4096, 4096).unwrap();
        assert!(b.base.0 >= h.end().0);
        assert!(matches!(
            mem.alloc(1, 3),
            Err(MemError::BadAlignment { .. })
        ));
        assert!(matches!(mem.alloc(0, 8), Err(MemError::ZeroSize)));
        assert!(matches!(
            mem.alloc_huge(8 << 20),
            Err(MemError::OutOfMemory { .. })
        ));
        assert!(matches!(
            mem.alloc(u64::MAX, 1),
            Err(MemError::OutOfMemory { .. })
        ));
    }
}
