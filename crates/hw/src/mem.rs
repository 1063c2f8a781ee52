//! Simulated physical memory that holds real bytes, a physical allocator,
//! and per-process address spaces (page tables) that translate and police
//! every virtual access.
//!
//! Invariants:
//! * [`PhysMem`] never panics on a bad address: every access is checked
//!   against the configured size and an out-of-range access is a
//!   [`MemError`]. Memory nobody has written reads as zeros; 4 KiB frames are
//!   only materialised on first write, so a 64 GiB machine costs nothing
//!   until software touches it.
//! * The allocator hands out disjoint regions and never address 0, so a
//!   zeroed descriptor can never name a valid buffer.
//! * [`AddressSpace::translate`] is the only way from a [`VirtAddr`] to a
//!   [`PhysAddr`]; a process reaches exactly the frames mapped into its
//!   space, with the permissions they were mapped with.
//! * A faulting virtual `read`/`write` has no effect: every page of the range
//!   is translated before the first byte moves, so a write that straddles
//!   into a read-only or unmapped page changes nothing.

use thiserror::Error;

/// Bytes in a base page / physical frame (x86-64 4 KiB pages).
pub const PAGE_BYTES: u64 = 4096;
/// Bytes in a huge page (x86-64 2 MiB pages, a page-directory leaf).
pub const HUGE_PAGE_BYTES: u64 = 2 << 20;
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

    fn check(&self, pa: PhysAddr, len: u64) -> Result<(), MemError> {
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

/// Size of one mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB, a page-table (level 1) leaf.
    Base,
    /// 2 MiB, a page-directory (level 2) leaf.
    Huge,
}

impl PageSize {
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Base => PAGE_BYTES,
            PageSize::Huge => HUGE_PAGE_BYTES,
        }
    }
}

/// What a mapping allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    /// Reachable from user mode; kernel pages are not.
    pub user: bool,
}

impl Perms {
    pub const USER_RW: Perms = Perms {
        read: true,
        write: true,
        user: true,
    };
    pub const USER_RO: Perms = Perms {
        read: true,
        write: false,
        user: true,
    };
    pub const KERNEL_RW: Perms = Perms {
        read: true,
        write: true,
        user: false,
    };
    pub const KERNEL_RO: Perms = Perms {
        read: true,
        write: false,
        user: false,
    };
}

/// One memory access as the page walker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub write: bool,
    /// Issued in user mode.
    pub user: bool,
}

impl Access {
    pub const USER_READ: Access = Access {
        write: false,
        user: true,
    };
    pub const USER_WRITE: Access = Access {
        write: true,
        user: true,
    };
    pub const KERNEL_READ: Access = Access {
        write: false,
        user: false,
    };
    pub const KERNEL_WRITE: Access = Access {
        write: true,
        user: false,
    };
}

/// Why a translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// No mapping covers the address (or it is not a canonical 48-bit one).
    NotMapped,
    /// A write to a page mapped without write permission.
    WriteToReadOnly,
    /// A read of a page mapped without read permission.
    ReadNotPermitted,
    /// A user-mode access to a kernel page.
    UserToKernel,
}

/// A page fault: the address and why.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("page fault at {:#x}: {kind:?}", va.0)]
pub struct Fault {
    pub va: VirtAddr,
    pub kind: FaultKind,
}

/// Errors of changing a mapping.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum MapError {
    #[error("{what} address {addr:#x} is not aligned to the {page_bytes}-byte page")]
    Misaligned {
        what: &'static str,
        addr: u64,
        page_bytes: u64,
    },
    #[error("virtual address {0:#x} is outside the 48-bit address space")]
    NonCanonical(u64),
    #[error("virtual address {0:#x} overlaps an existing mapping")]
    AlreadyMapped(u64),
    #[error("virtual address {0:#x} is not the start of a mapping")]
    NotMapped(u64),
}

/// Errors of a virtual read or write.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AccessError {
    #[error(transparent)]
    Fault(#[from] Fault),
    #[error(transparent)]
    Mem(#[from] MemError),
}

/// Bits of virtual address a 4-level x86-64 page table translates.
const VA_BITS: u32 = 48;
const LEVEL_BITS: u32 = 9;
const ENTRIES: usize = 1 << LEVEL_BITS;

#[derive(Clone, Copy, Debug)]
enum Slot {
    Empty,
    /// Index of the next-level table in the arena.
    Table(u32),
    Leaf {
        frame: PhysAddr,
        perms: Perms,
    },
}

/// A process's page table: a 4-level radix tree like x86-64's (levels 4..1
/// indexed by VA bits 47:39, 38:30, 29:21, 20:12), with 2 MiB leaves at
/// level 2 and 4 KiB leaves at level 1.
///
/// Tables live in a flat arena; emptied tables are not reclaimed (address
/// spaces are built once and torn down whole).
pub struct AddressSpace {
    tables: Vec<Box<[Slot; ENTRIES]>>,
}

impl Default for AddressSpace {
    fn default() -> Self {
        AddressSpace::new()
    }
}

fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + LEVEL_BITS * (level - 1))) & (ENTRIES as u64 - 1)) as usize
}

impl AddressSpace {
    /// An empty address space: every access faults.
    pub fn new() -> AddressSpace {
        AddressSpace {
            tables: vec![Box::new([Slot::Empty; ENTRIES])],
        }
    }

    /// Map the page at `va` to the frame at `pa` with `perms`.
    pub fn map(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        size: PageSize,
        perms: Perms,
    ) -> Result<(), MapError> {
        let page_bytes = size.bytes();
        if !va.0.is_multiple_of(page_bytes) {
            return Err(MapError::Misaligned {
                what: "virtual",
                addr: va.0,
                page_bytes,
            });
        }
        if !pa.0.is_multiple_of(page_bytes) {
            return Err(MapError::Misaligned {
                what: "physical",
                addr: pa.0,
                page_bytes,
            });
        }
        if va.0 >> VA_BITS != 0 {
            return Err(MapError::NonCanonical(va.0));
        }
        let leaf_level = match size {
            PageSize::Base => 1,
            PageSize::Huge => 2,
        };
        let mut table = 0usize;
        for level in (leaf_level + 1..=4).rev() {
            let i = index(va.0, level);
            table = match self.tables[table][i] {
                Slot::Table(t) => t as usize,
                Slot::Leaf { .. } => return Err(MapError::AlreadyMapped(va.0)),
                Slot::Empty => {
                    let t = self.tables.len();
                    self.tables.push(Box::new([Slot::Empty; ENTRIES]));
                    self.tables[table][i] = Slot::Table(t as u32);
                    t
                }
            };
        }
        let i = index(va.0, leaf_level);
        match self.tables[table][i] {
            Slot::Empty => {
                self.tables[table][i] = Slot::Leaf { frame: pa, perms };
                Ok(())
            }
            // A huge page over a table is only allowed if nothing below is
            // mapped; the table is then dropped from the tree.
            Slot::Table(t)
                if self.tables[t as usize]
                    .iter()
                    .all(|s| matches!(s, Slot::Empty)) =>
            {
                self.tables[table][i] = Slot::Leaf { frame: pa, perms };
                Ok(())
            }
            _ => Err(MapError::AlreadyMapped(va.0)),
        }
    }

    /// Map `len` bytes of contiguous physical memory at `va` with pages of
    /// `size` (both addresses aligned to it; `len` rounded up to it).
    pub fn map_range(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        len: u64,
        size: PageSize,
        perms: Perms,
    ) -> Result<(), MapError> {
        let pages = len.div_ceil(size.bytes());
        for p in 0..pages {
            let off = p * size.bytes();
            self.map(va.offset(off), pa.offset(off), size, perms)?;
        }
        Ok(())
    }

    /// Remove the mapping that starts at `va`, returning its size.
    pub fn unmap(&mut self, va: VirtAddr) -> Result<PageSize, MapError> {
        if va.0 >> VA_BITS != 0 {
            return Err(MapError::NonCanonical(va.0));
        }
        let mut table = 0usize;
        for level in (1..=4).rev() {
            let i = index(va.0, level);
            match self.tables[table][i] {
                Slot::Table(t) => table = t as usize,
                Slot::Leaf { .. } => {
                    let size = if level == 2 {
                        PageSize::Huge
                    } else {
                        PageSize::Base
                    };
                    if !va.0.is_multiple_of(size.bytes()) {
                        return Err(MapError::NotMapped(va.0));
                    }
                    self.tables[table][i] = Slot::Empty;
                    return Ok(size);
                }
                Slot::Empty => return Err(MapError::NotMapped(va.0)),
            }
        }
        Err(MapError::NotMapped(va.0))
    }

    /// Walk the table for `va` and check `access` against the leaf.
    pub fn translate(&self, va: VirtAddr, access: Access) -> Result<PhysAddr, Fault> {
        let fault = |kind| Fault { va, kind };
        if va.0 >> VA_BITS != 0 {
            return Err(fault(FaultKind::NotMapped));
        }
        let mut table = 0usize;
        for level in (1..=4).rev() {
            match self.tables[table][index(va.0, level)] {
                Slot::Table(t) => table = t as usize,
                Slot::Empty => return Err(fault(FaultKind::NotMapped)),
                Slot::Leaf { frame, perms } => {
                    // Privilege is checked before the access type, as the
                    // U/S bit is on x86: a user process learns nothing about
                    // a kernel page's writability.
                    if access.user && !perms.user {
                        return Err(fault(FaultKind::UserToKernel));
                    }
                    if access.write && !perms.write {
                        return Err(fault(FaultKind::WriteToReadOnly));
                    }
                    if !access.write && !perms.read {
                        return Err(fault(FaultKind::ReadNotPermitted));
                    }
                    let page_bytes = if level == 2 {
                        HUGE_PAGE_BYTES
                    } else {
                        PAGE_BYTES
                    };
                    return Ok(frame.offset(va.0 & (page_bytes - 1)));
                }
            }
        }
        Err(fault(FaultKind::NotMapped))
    }

    /// Translate every page of `[va, va + len)` (in order, so the first
    /// faulting address is reported) without touching memory; calls `each`
    /// with `(offset into range, physical address, bytes)` per piece.
    fn walk(
        &self,
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
            let pa = self.translate(cur, access)?;
            // Pieces never cross a 4 KiB boundary, which is also correct
            // (merely finer than needed) inside a 2 MiB page.
            let n = (PAGE_BYTES - cur.0 % PAGE_BYTES).min(len - done);
            each(done as usize, pa, n as usize)?;
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
        self.walk(va, len, access, |_, _, _| Ok(()))?;
        self.walk(va, len, access, |off, pa, n| {
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
        self.walk(va, len, access, |_, pa, n| Ok(mem.check(pa, n as u64)?))?;
        self.walk(va, len, access, |off, pa, n| {
            Ok(mem.write(pa, &data[off..off + n])?)
        })
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

    #[test]
    fn translate_base_and_huge_pages() {
        let mut asp = AddressSpace::new();
        asp.map(
            VirtAddr(0x40_0000),
            PhysAddr(0x1000),
            PageSize::Base,
            Perms::USER_RW,
        )
        .unwrap();
        asp.map(
            VirtAddr(0x8000_0000),
            PhysAddr(0x20_0000),
            PageSize::Huge,
            Perms::USER_RO,
        )
        .unwrap();
        assert_eq!(
            asp.translate(VirtAddr(0x40_0123), Access::USER_READ),
            Ok(PhysAddr(0x1123))
        );
        assert_eq!(
            asp.translate(VirtAddr(0x801f_ffff), Access::USER_READ),
            Ok(PhysAddr(0x3f_ffff))
        );
        let fault = |va, a| asp.translate(VirtAddr(va), a).unwrap_err().kind;
        assert_eq!(fault(0x40_1000, Access::USER_READ), FaultKind::NotMapped);
        assert_eq!(fault(0x8020_0000, Access::USER_READ), FaultKind::NotMapped);
        assert_eq!(
            fault(0x8000_0000, Access::USER_WRITE),
            FaultKind::WriteToReadOnly
        );
        assert_eq!(fault(1 << 48, Access::KERNEL_READ), FaultKind::NotMapped);
        assert_eq!(fault(u64::MAX, Access::KERNEL_READ), FaultKind::NotMapped);
    }

    #[test]
    fn user_cannot_touch_kernel_pages() {
        let mut asp = AddressSpace::new();
        asp.map(
            VirtAddr(0xffff_0000_0000 & ((1 << 48) - 1)),
            PhysAddr(0x5000),
            PageSize::Base,
            Perms::KERNEL_RO,
        )
        .unwrap();
        let va = VirtAddr(0xffff_0000_0000 & ((1 << 48) - 1));
        assert_eq!(
            asp.translate(va, Access::USER_READ).unwrap_err().kind,
            FaultKind::UserToKernel
        );
        assert_eq!(
            asp.translate(va, Access::USER_WRITE).unwrap_err().kind,
            FaultKind::UserToKernel
        );
        assert_eq!(asp.translate(va, Access::KERNEL_READ), Ok(PhysAddr(0x5000)));
        assert_eq!(
            asp.translate(va, Access::KERNEL_WRITE).unwrap_err().kind,
            FaultKind::WriteToReadOnly
        );
        let mut wo = AddressSpace::new();
        wo.map(
            VirtAddr(0),
            PhysAddr(0),
            PageSize::Base,
            Perms {
                read: false,
                write: true,
                user: true,
            },
        )
        .unwrap();
        assert_eq!(
            wo.translate(VirtAddr(8), Access::USER_READ)
                .unwrap_err()
                .kind,
            FaultKind::ReadNotPermitted
        );
    }

    #[test]
    fn map_rejects_misalignment_and_overlap_unmap_removes() {
        let mut asp = AddressSpace::new();
        assert!(matches!(
            asp.map(
                VirtAddr(0x1001),
                PhysAddr(0),
                PageSize::Base,
                Perms::USER_RW
            ),
            Err(MapError::Misaligned { .. })
        ));
        assert!(matches!(
            asp.map(
                VirtAddr(0x20_0000),
                PhysAddr(0x1000),
                PageSize::Huge,
                Perms::USER_RW
            ),
            Err(MapError::Misaligned { .. })
        ));
        asp.map(
            VirtAddr(0x20_0000),
            PhysAddr(0x20_0000),
            PageSize::Huge,
            Perms::USER_RW,
        )
        .unwrap();
        assert_eq!(
            asp.map(
                VirtAddr(0x20_1000),
                PhysAddr(0),
                PageSize::Base,
                Perms::USER_RW
            ),
            Err(MapError::AlreadyMapped(0x20_1000))
        );
        assert!(
            asp.map(
                VirtAddr(0x20_0000),
                PhysAddr(0),
                PageSize::Huge,
                Perms::USER_RW
            )
            .is_err()
        );
        assert_eq!(
            asp.unmap(VirtAddr(0x20_1000)),
            Err(MapError::NotMapped(0x20_1000))
        );
        assert_eq!(asp.unmap(VirtAddr(0x20_0000)), Ok(PageSize::Huge));
        assert_eq!(
            asp.translate(VirtAddr(0x20_0000), Access::KERNEL_READ)
                .unwrap_err()
                .kind,
            FaultKind::NotMapped
        );
        // A base page under a live table blocks a huge page; once it is
        // unmapped the huge page may take the slot.
        asp.map(
            VirtAddr(0x40_0000),
            PhysAddr(0),
            PageSize::Base,
            Perms::USER_RW,
        )
        .unwrap();
        assert!(
            asp.map(
                VirtAddr(0x40_0000),
                PhysAddr(0),
                PageSize::Huge,
                Perms::USER_RW
            )
            .is_err()
        );
        asp.unmap(VirtAddr(0x40_0000)).unwrap();
        asp.map(
            VirtAddr(0x40_0000),
            PhysAddr(0),
            PageSize::Huge,
            Perms::USER_RW,
        )
        .unwrap();
    }

    #[test]
    fn virtual_ranges_cross_pages_to_discontiguous_frames() {
        let mut mem = PhysMem::new(1 << 20).unwrap();
        let mut asp = AddressSpace::new();
        // Two adjacent virtual pages backed by frames in reverse order.
        asp.map(
            VirtAddr(0x1000),
            PhysAddr(0x9000),
            PageSize::Base,
            Perms::USER_RW,
        )
        .unwrap();
        asp.map(
            VirtAddr(0x2000),
            PhysAddr(0x3000),
            PageSize::Base,
            Perms::USER_RW,
        )
        .unwrap();
        let data: Vec<u8> = (0..200u8).collect();
        asp.write(&mut mem, VirtAddr(0x1fa0), &data, true).unwrap();
        assert_eq!(mem.read_u8_for_test(0x9fa0), 0);
        assert_eq!(mem.read_u8_for_test(0x3000), 96);
        let mut back = vec![0; 200];
        asp.read(&mem, VirtAddr(0x1fa0), &mut back, true).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn faulting_write_changes_nothing() {
        let mut mem = PhysMem::new(1 << 20).unwrap();
        let mut asp = AddressSpace::new();
        asp.map(
            VirtAddr(0x1000),
            PhysAddr(0x9000),
            PageSize::Base,
            Perms::USER_RW,
        )
        .unwrap();
        asp.map(
            VirtAddr(0x2000),
            PhysAddr(0x3000),
            PageSize::Base,
            Perms::USER_RO,
        )
        .unwrap();
        asp.map(
            VirtAddr(0x4000),
            PhysAddr(0x4000),
            PageSize::Base,
            Perms::KERNEL_RW,
        )
        .unwrap();
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
            mem.read_u64(PhysAddr(0x9ff0)).unwrap(),
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
        asp.map(
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
}
