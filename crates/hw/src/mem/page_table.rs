//! The x86-64 4-level page-table format, kept in simulated physical memory.
//!
//! A page table is a tree of 4 KiB frames of 512 eight-byte entries, levels
//! 4..1 indexed by virtual-address bits 47:39, 38:30, 29:21 and 20:12. An
//! entry's bits are the architectural ones (Intel SDM Vol. 3A §4.5, Tables
//! 4-14 to 4-19): P (bit 0), R/W (1), U/S (2), PCD (4), PS (7, a leaf at
//! level 3 or 2), and the frame address in bits 51:12. Leaves may be 1 GiB
//! (level 3), 2 MiB (level 2) or 4 KiB (level 1) pages. The same format
//! serves the IOMMU: VT-d second-level tables use bit 0 as Read and bit 1 as
//! Write at the same positions (VT-d spec §9.8), so one walker translates
//! for cores and devices alike.
//!
//! Invariants:
//! * the tables are bytes in [`PhysMem`]; this module reads and writes them
//!   only through it, so what a walk finds is exactly what was written;
//! * intermediate entries are present, writable and user: permissions are
//!   decided by the leaf alone (x86 ANDs the levels; with permissive upper
//!   levels the result is the leaf's);
//! * a present entry is readable (x86 has no read-permission bit);
//! * a failed `map` changes nothing visible: tables it allocated on the way
//!   stay empty, and no leaf is written.

use thiserror::Error;

use super::{GIANT_PAGE_BYTES, HUGE_PAGE_BYTES, MemError, PAGE_BYTES, PhysAddr, PhysMem, VirtAddr};

/// Bits of virtual address a 4-level table translates.
const VA_BITS: u32 = 48;
const LEVEL_BITS: u32 = 9;
const ENTRIES: u64 = 1 << LEVEL_BITS;
const ENTRY_BYTES: u64 = 8;

const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_USER: u64 = 1 << 2;
/// PCD: the page is uncacheable (device registers).
const PTE_UNCACHED: u64 = 1 << 4;
/// PS: this entry maps a page at level 3 or 2 instead of naming a table.
const PTE_PAGE_SIZE: u64 = 1 << 7;
const PTE_FRAME_MASK: u64 = 0x000f_ffff_ffff_f000;
/// What an intermediate entry carries: permissions are the leaf's.
const TABLE_FLAGS: u64 = PTE_PRESENT | PTE_WRITABLE | PTE_USER;

/// Size of one mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageSize {
    /// 4 KiB, a level-1 leaf.
    Base,
    /// 2 MiB, a level-2 leaf.
    Huge,
    /// 1 GiB, a level-3 leaf.
    Giant,
}

impl PageSize {
    pub const ALL: [PageSize; 3] = [PageSize::Giant, PageSize::Huge, PageSize::Base];

    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Base => PAGE_BYTES,
            PageSize::Huge => HUGE_PAGE_BYTES,
            PageSize::Giant => GIANT_PAGE_BYTES,
        }
    }
    /// The table level whose entries are leaves of this size.
    const fn leaf_level(self) -> u32 {
        match self {
            PageSize::Base => 1,
            PageSize::Huge => 2,
            PageSize::Giant => 3,
        }
    }
    /// The largest page size that `va`, `pa` and `len` all allow.
    pub fn largest_fitting(va: u64, pa: u64, len: u64) -> PageSize {
        for size in PageSize::ALL {
            let b = size.bytes();
            if va.is_multiple_of(b) && pa.is_multiple_of(b) && len >= b {
                return size;
            }
        }
        PageSize::Base
    }
}

/// What a mapping allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perms {
    pub write: bool,
    /// Reachable from user mode; kernel pages are not.
    pub user: bool,
    /// Uncacheable: loads and stores go to the device, not the caches.
    pub uncached: bool,
}

impl Perms {
    pub const USER_RW: Perms = Perms {
        write: true,
        user: true,
        uncached: false,
    };
    pub const USER_RO: Perms = Perms {
        write: false,
        user: true,
        uncached: false,
    };
    pub const KERNEL_RW: Perms = Perms {
        write: true,
        user: false,
        uncached: false,
    };
    pub const KERNEL_RO: Perms = Perms {
        write: false,
        user: false,
        uncached: false,
    };
    /// The same permissions on an uncacheable (device register) page.
    pub const fn uncached(self) -> Perms {
        Perms {
            uncached: true,
            ..self
        }
    }
    fn bits(self) -> u64 {
        PTE_PRESENT
            | if self.write { PTE_WRITABLE } else { 0 }
            | if self.user { PTE_USER } else { 0 }
            | if self.uncached { PTE_UNCACHED } else { 0 }
    }
    fn of_entry(e: u64) -> Perms {
        Perms {
            write: e & PTE_WRITABLE != 0,
            user: e & PTE_USER != 0,
            uncached: e & PTE_UNCACHED != 0,
        }
    }
}

/// One memory access as the page walker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub write: bool,
    /// Issued in user mode (for a device: always, see the IOMMU).
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
    pub const fn new(write: bool, user: bool) -> Access {
        Access { write, user }
    }
}

/// Why a translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// No mapping covers the address (or it is not a canonical 48-bit one).
    NotMapped,
    /// A write to a page mapped without write permission.
    WriteToReadOnly,
    /// A user-mode access to a kernel page.
    UserToKernel,
}

impl FaultKind {
    /// A short name for counters (`fault.not_mapped`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::NotMapped => "not_mapped",
            FaultKind::WriteToReadOnly => "write_to_read_only",
            FaultKind::UserToKernel => "user_to_kernel",
        }
    }
}

/// A page fault: the address and why.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("page fault at {:#x}: {kind:?}", va.0)]
pub struct Fault {
    pub va: VirtAddr,
    pub kind: FaultKind,
}

/// Errors of changing a mapping.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
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
    #[error("no memory for a page-table frame: {0}")]
    Mem(#[from] MemError),
}

/// A successful translation: the page found and what it allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Virtual address of the page's first byte.
    pub page_va: VirtAddr,
    /// Physical address of the page's first byte.
    pub frame: PhysAddr,
    pub size: PageSize,
    pub perms: Perms,
}

impl Translation {
    /// The physical address of `va`, which must lie in this page.
    pub fn pa(&self, va: VirtAddr) -> PhysAddr {
        self.frame.offset(va.0 - self.page_va.0)
    }
    /// Whether `va` lies in this page.
    pub fn covers(&self, va: VirtAddr) -> bool {
        va.0 >= self.page_va.0 && va.0 - self.page_va.0 < self.size.bytes()
    }
    /// Check `access` against the page's permissions. Privilege is checked
    /// before the access type, as the U/S bit is on x86: a user process
    /// learns nothing about a kernel page's writability.
    pub fn permits(&self, va: VirtAddr, access: Access) -> Result<(), Fault> {
        let fault = |kind| Err(Fault { va, kind });
        if access.user && !self.perms.user {
            return fault(FaultKind::UserToKernel);
        }
        if access.write && !self.perms.write {
            return fault(FaultKind::WriteToReadOnly);
        }
        Ok(())
    }
}

/// What a walk did: the entries it read, in order (what a hardware walker's
/// loads are costed by), and the page it found, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    entries: [PhysAddr; 4],
    reads: usize,
    pub found: Option<Translation>,
}

impl Walk {
    /// Physical addresses of the entries read, root first.
    pub fn entries(&self) -> &[PhysAddr] {
        &self.entries[..self.reads]
    }
}

/// A page table: the physical address of its root frame. Copying the
/// handle does not copy the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageTable {
    root: PhysAddr,
}

fn index(va: u64, level: u32) -> u64 {
    (va >> (12 + LEVEL_BITS * (level - 1))) & (ENTRIES - 1)
}

fn entry_pa(table: PhysAddr, va: u64, level: u32) -> PhysAddr {
    table.offset(index(va, level) * ENTRY_BYTES)
}

impl PageTable {
    /// An empty table (one zeroed root frame): every access faults.
    pub fn new(mem: &mut PhysMem) -> Result<PageTable, MemError> {
        let root = mem.alloc(PAGE_BYTES, PAGE_BYTES)?;
        Ok(PageTable { root: root.base })
    }

    /// The table whose root frame is at `root` (what CR3 or a VT-d context
    /// entry holds).
    pub const fn from_root(root: PhysAddr) -> PageTable {
        PageTable { root }
    }

    pub const fn root(self) -> PhysAddr {
        self.root
    }

    /// Map the page at `va` to the frame at `pa` with `perms`.
    pub fn map(
        self,
        mem: &mut PhysMem,
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
        let leaf_level = size.leaf_level();
        let mut table = self.root;
        for level in (leaf_level + 1..=4).rev() {
            let at = entry_pa(table, va.0, level);
            let e = mem.read_u64(at)?;
            table = if e & PTE_PRESENT == 0 {
                let fresh = mem.alloc(PAGE_BYTES, PAGE_BYTES)?.base;
                mem.write_u64(at, fresh.0 | TABLE_FLAGS)?;
                fresh
            } else if e & PTE_PAGE_SIZE != 0 {
                return Err(MapError::AlreadyMapped(va.0));
            } else {
                PhysAddr(e & PTE_FRAME_MASK)
            };
        }
        let at = entry_pa(table, va.0, leaf_level);
        let e = mem.read_u64(at)?;
        let leaf = pa.0 | perms.bits() | if leaf_level > 1 { PTE_PAGE_SIZE } else { 0 };
        if e & PTE_PRESENT == 0 {
            mem.write_u64(at, leaf)?;
            return Ok(());
        }
        // A large page over a table is allowed only if nothing below is
        // mapped; the (empty) table is then dropped from the tree.
        if leaf_level > 1
            && e & PTE_PAGE_SIZE == 0
            && Self::table_is_empty(mem, PhysAddr(e & PTE_FRAME_MASK))?
        {
            mem.write_u64(at, leaf)?;
            return Ok(());
        }
        Err(MapError::AlreadyMapped(va.0))
    }

    fn table_is_empty(mem: &PhysMem, table: PhysAddr) -> Result<bool, MemError> {
        let mut frame = [0u8; PAGE_BYTES as usize];
        mem.read(table, &mut frame)?;
        Ok(frame.iter().all(|b| *b == 0))
    }

    /// Map `len` bytes of contiguous physical memory at `va` with pages of
    /// `size` (both addresses aligned to it; `len` rounded up to it).
    pub fn map_range(
        self,
        mem: &mut PhysMem,
        va: VirtAddr,
        pa: PhysAddr,
        len: u64,
        size: PageSize,
        perms: Perms,
    ) -> Result<(), MapError> {
        let pages = len.div_ceil(size.bytes());
        for p in 0..pages {
            let off = p * size.bytes();
            self.map(mem, va.offset(off), pa.offset(off), size, perms)?;
        }
        Ok(())
    }

    /// Remove the mapping that starts at `va`, returning its size. Cached
    /// translations elsewhere (TLBs) are the caller's to invalidate.
    pub fn unmap(self, mem: &mut PhysMem, va: VirtAddr) -> Result<PageSize, MapError> {
        let walk = self.walk(mem, va);
        match walk.found {
            Some(t) if t.page_va == va => {
                let at = walk.entries[walk.reads - 1];
                mem.write_u64(at, 0)?;
                Ok(t.size)
            }
            _ => Err(MapError::NotMapped(va.0)),
        }
    }

    /// Walk the table for `va`, reading one entry per level until a leaf or
    /// a non-present entry. Never fails: a walk that finds nothing says so.
    pub fn walk(self, mem: &PhysMem, va: VirtAddr) -> Walk {
        let mut walk = Walk {
            entries: [PhysAddr(0); 4],
            reads: 0,
            found: None,
        };
        if va.0 >> VA_BITS != 0 {
            return walk;
        }
        let mut table = self.root;
        for level in (1..=4).rev() {
            let at = entry_pa(table, va.0, level);
            walk.entries[walk.reads] = at;
            walk.reads += 1;
            let Ok(e) = mem.read_u64(at) else {
                return walk;
            };
            if e & PTE_PRESENT == 0 {
                return walk;
            }
            let leaf_size = match level {
                1 => Some(PageSize::Base),
                2 if e & PTE_PAGE_SIZE != 0 => Some(PageSize::Huge),
                3 if e & PTE_PAGE_SIZE != 0 => Some(PageSize::Giant),
                _ => None,
            };
            match leaf_size {
                Some(size) => {
                    let bytes = size.bytes();
                    walk.found = Some(Translation {
                        page_va: VirtAddr(va.0 & !(bytes - 1)),
                        frame: PhysAddr(e & PTE_FRAME_MASK & !(bytes - 1)),
                        size,
                        perms: Perms::of_entry(e),
                    });
                    return walk;
                }
                None => table = PhysAddr(e & PTE_FRAME_MASK),
            }
        }
        walk
    }

    /// Translate `va` for `access`: walk, then check the leaf.
    pub fn translate(
        self,
        mem: &PhysMem,
        va: VirtAddr,
        access: Access,
    ) -> Result<Translation, Fault> {
        let t = self.walk(mem, va).found.ok_or(Fault {
            va,
            kind: FaultKind::NotMapped,
        })?;
        t.permits(va, access)?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (PhysMem, PageTable) {
        let mut mem = PhysMem::new(64 << 20).unwrap();
        let pt = PageTable::new(&mut mem).unwrap();
        (mem, pt)
    }

    #[test]
    fn translate_base_huge_and_giant_pages() {
        let (mut mem, pt) = setup();
        pt.map(
            &mut mem,
            VirtAddr(0x40_0000),
            PhysAddr(0x1000),
            PageSize::Base,
            Perms::USER_RW,
        )
        .unwrap();
        pt.map(
            &mut mem,
            VirtAddr(0x8000_0000),
            PhysAddr(0x20_0000),
            PageSize::Huge,
            Perms::USER_RO,
        )
        .unwrap();
        pt.map(
            &mut mem,
            VirtAddr(0x40_0000_0000),
            PhysAddr(0x4000_0000),
            PageSize::Giant,
            Perms::KERNEL_RW,
        )
        .unwrap();
        let pa = |va: u64, a| {
            pt.translate(&mem, VirtAddr(va), a)
                .map(|t| t.pa(VirtAddr(va)))
        };
        assert_eq!(pa(0x40_0123, Access::USER_READ), Ok(PhysAddr(0x1123)));
        assert_eq!(pa(0x801f_ffff, Access::USER_READ), Ok(PhysAddr(0x3f_ffff)));
        assert_eq!(
            pa(0x40_3fff_ffff, Access::KERNEL_WRITE),
            Ok(PhysAddr(0x7fff_ffff))
        );
        let fault = |va, a| pt.translate(&mem, VirtAddr(va), a).unwrap_err().kind;
        assert_eq!(fault(0x40_1000, Access::USER_READ), FaultKind::NotMapped);
        assert_eq!(fault(0x8020_0000, Access::USER_READ), FaultKind::NotMapped);
        assert_eq!(
            fault(0x8000_0000, Access::USER_WRITE),
            FaultKind::WriteToReadOnly
        );
        assert_eq!(
            fault(0x40_0000_0000, Access::USER_READ),
            FaultKind::UserToKernel
        );
        assert_eq!(fault(1 << 48, Access::KERNEL_READ), FaultKind::NotMapped);
        assert_eq!(fault(u64::MAX, Access::KERNEL_READ), FaultKind::NotMapped);
    }

    #[test]
    fn entries_are_the_architectural_bytes_in_memory() {
        let (mut mem, pt) = setup();
        let va = VirtAddr(0x7f12_3456_7000);
        pt.map(
            &mut mem,
            va,
            PhysAddr(0xabc000),
            PageSize::Base,
            Perms::USER_RO,
        )
        .unwrap();
        let walk = pt.walk(&mem, va);
        assert_eq!(walk.entries().len(), 4, "a 4 KiB page takes four reads");
        assert_eq!(walk.entries()[0], pt.root().offset(index(va.0, 4) * 8));
        let leaf = mem.read_u64(walk.entries()[3]).unwrap();
        assert_eq!(leaf, 0xabc000 | PTE_PRESENT | PTE_USER);
        // Clearing the present bit in memory is seen by the next walk.
        mem.write_u64(walk.entries()[3], leaf & !PTE_PRESENT)
            .unwrap();
        assert_eq!(pt.walk(&mem, va).found, None);
        let huge = VirtAddr(0x20_0000);
        pt.map(
            &mut mem,
            huge,
            PhysAddr(0x60_0000),
            PageSize::Huge,
            Perms::KERNEL_RW,
        )
        .unwrap();
        let w = pt.walk(&mem, huge);
        assert_eq!(w.entries().len(), 3, "a 2 MiB page takes three reads");
        let e = mem.read_u64(w.entries()[2]).unwrap();
        assert_eq!(e, 0x60_0000 | PTE_PRESENT | PTE_WRITABLE | PTE_PAGE_SIZE);
    }

    #[test]
    fn map_rejects_misalignment_and_overlap_unmap_removes() {
        let (mut mem, pt) = setup();
        let m = |mem: &mut PhysMem, va, pa, size| {
            pt.map(mem, VirtAddr(va), PhysAddr(pa), size, Perms::USER_RW)
        };
        assert!(matches!(
            m(&mut mem, 0x1001, 0, PageSize::Base),
            Err(MapError::Misaligned { .. })
        ));
        assert!(matches!(
            m(&mut mem, 0x20_0000, 0x1000, PageSize::Huge),
            Err(MapError::Misaligned { .. })
        ));
        m(&mut mem, 0x20_0000, 0x20_0000, PageSize::Huge).unwrap();
        assert_eq!(
            m(&mut mem, 0x20_1000, 0, PageSize::Base),
            Err(MapError::AlreadyMapped(0x20_1000))
        );
        assert!(m(&mut mem, 0x20_0000, 0, PageSize::Huge).is_err());
        assert_eq!(
            pt.unmap(&mut mem, VirtAddr(0x20_1000)),
            Err(MapError::NotMapped(0x20_1000))
        );
        assert_eq!(pt.unmap(&mut mem, VirtAddr(0x20_0000)), Ok(PageSize::Huge));
        assert_eq!(
            pt.translate(&mem, VirtAddr(0x20_0000), Access::KERNEL_READ)
                .unwrap_err()
                .kind,
            FaultKind::NotMapped
        );
        // A base page under a live table blocks a huge page; once it is
        // unmapped the huge page may take the slot.
        m(&mut mem, 0x40_0000, 0, PageSize::Base).unwrap();
        assert!(m(&mut mem, 0x40_0000, 0, PageSize::Huge).is_err());
        pt.unmap(&mut mem, VirtAddr(0x40_0000)).unwrap();
        m(&mut mem, 0x40_0000, 0, PageSize::Huge).unwrap();
        assert!(matches!(
            m(&mut mem, 1 << 48, 0, PageSize::Base),
            Err(MapError::NonCanonical(_))
        ));
    }

    #[test]
    fn running_out_of_table_frames_is_an_error() {
        let mut mem = PhysMem::new(4 * PAGE_BYTES).unwrap();
        let pt = PageTable::new(&mut mem).unwrap();
        // Root took one frame, the first of three needed tables another,
        // the next a third: the last level cannot be allocated.
        let r = pt.map(
            &mut mem,
            VirtAddr(0),
            PhysAddr(0),
            PageSize::Base,
            Perms::USER_RW,
        );
        assert!(matches!(r, Err(MapError::Mem(_))), "{r:?}");
        assert_eq!(pt.walk(&mem, VirtAddr(0)).found, None);
    }

    #[test]
    fn largest_fitting_page() {
        assert_eq!(PageSize::largest_fitting(0, 0, 1 << 30), PageSize::Giant);
        assert_eq!(
            PageSize::largest_fitting(2 << 20, 4 << 20, 1 << 30),
            PageSize::Huge
        );
        assert_eq!(PageSize::largest_fitting(4096, 0, 1 << 30), PageSize::Base);
        assert_eq!(PageSize::largest_fitting(0, 0, 4096), PageSize::Base);
    }
}
