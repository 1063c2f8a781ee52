//! The user library of the user-space DMA engine: a process opens a
//! portal once (through the OS driver, `nextio_os::udma`), then submits
//! 64-byte descriptors with one store to the portal — MOVDIR64B to a
//! dedicated queue, ENQCMD (retried while the shared queue answers
//! retry) to a shared one — with no system call, and learns of
//! completion by polling its completion record (one charged wait on a
//! memory watch) or by interrupt.
//!
//! Beside it are the baselines the engine is judged against: the CPU
//! copying or filling through the cache model ([`cpu_memcpy`],
//! [`cpu_memset`]), and the kernel-mediated path ([`KernelPath`]): one
//! system call per operation, in which the kernel pins and maps the
//! pages, submits in its own queue, waits, and unmaps.
//!
//! Invariants: a record slot is reused only after its descriptor
//! completed (the caller waits or polls it first); software reads a
//! record's fields only after its status byte is non-zero; nothing here
//! touches memory except through the thread's own address space (or, on
//! the kernel path, the kernel's), so a misuse faults instead of
//! corrupting.

use std::num::NonZeroU64;
use std::rc::Rc;

use nextio_engine::{Category, Counters, Notify};
use nextio_hw::cpu::{CoreCtx, MmioAccessError};
use nextio_hw::devices::udma::WqMode;
use nextio_hw::devices::udma::layout::{
    DESCRIPTOR_BYTES, Descriptor, RECORD_BYTES, Record, flags, opcode, status,
};
use nextio_hw::mem::{AccessError, PhysAddr, VirtAddr};
use nextio_os::udma::{Pinned, Portal, UdmaCosts, UdmaDriver};
use nextio_os::{OsCosts, OsError, Process};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The library's primitives: a preset's `[udma_lib]`, where each value's
/// source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdmaLibCosts {
    /// Building a descriptor and issuing its store (the crossing itself is
    /// timed by the fabric).
    pub submit_cycles: u64,
    /// Consuming a completion record once seen.
    pub complete_cycles: u64,
    /// A CPU copy's instruction throughput when its lines are in L1d
    /// (stalls beyond L1d are charged by the cache model); never 0.
    pub cpu_copy_bytes_per_cycle: NonZeroU64,
    /// Retries of a refused ENQCMD before giving up.
    pub enqcmd_retries: u32,
}

/// The root preset's library primitives (read once per process).
pub fn costs() -> &'static UdmaLibCosts {
    nextio_presets::cached_root_section!(UdmaLibCosts, "udma_lib")
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UdmaLibError {
    #[error(transparent)]
    Os(#[from] OsError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Mmio(#[from] MmioAccessError),
    #[error("the shared queue refused {0} times")]
    QueueFull(u32),
    #[error("record slot {0} out of range")]
    BadSlot(usize),
}

/// A descriptor for `op` on `len` bytes from `src` to `dst` whose record
/// goes to `record` (CRAV | RCR set, plus `extra` flags).
pub fn descriptor(
    op: u8,
    extra: u32,
    src: u64,
    dst: u64,
    len: u32,
    record: u64,
) -> [u8; DESCRIPTOR_BYTES] {
    let mut d = Descriptor::new([0u8; DESCRIPTOR_BYTES]).unwrap_or_else(|| unreachable!());
    d.set_op(op, extra | flags::CRAV | flags::RCR);
    d.set_src(src);
    d.set_dst(dst);
    d.set_xfer_size(len);
    d.set_completion_addr(record);
    d.into_inner()
}

/// One thread's handle on a portal, with a ring of completion records in
/// the process's memory.
pub struct UdmaQueue {
    ctx: CoreCtx,
    portal: Portal,
    records: VirtAddr,
    slots: usize,
    /// Where batch descriptor lists are built, one per record slot.
    lists: VirtAddr,
    list_bytes: u64,
    written: Rc<Notify>,
    counters: Counters,
}

/// Most descriptors one batch of this library holds.
pub const MAX_BATCH: usize = 64;

impl UdmaQueue {
    /// Open `portal` for the thread running in `ctx`, with `slots`
    /// record slots (ordinary memory: the engine reaches it by the
    /// process's own virtual addresses).
    pub fn new(
        process: &Process,
        ctx: CoreCtx,
        portal: Portal,
        slots: usize,
    ) -> Result<UdmaQueue, UdmaLibError> {
        let slots = slots.max(1);
        let records = process.mmap((slots * RECORD_BYTES) as u64, false)?;
        let list_bytes = (MAX_BATCH * DESCRIPTOR_BYTES) as u64;
        let lists = process.mmap(slots as u64 * list_bytes, false)?;
        let written = ctx.watch(records, (slots * RECORD_BYTES) as u64)?;
        Ok(UdmaQueue {
            ctx,
            portal,
            records,
            slots,
            lists,
            list_bytes,
            written,
            counters: Counters::new(),
        })
    }

    pub fn ctx(&self) -> &CoreCtx {
        &self.ctx
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The record address of `slot`.
    pub fn record_va(&self, slot: usize) -> VirtAddr {
        self.records
            .offset((slot % self.slots * RECORD_BYTES) as u64)
    }

    /// Clear `slot`'s record (a store: its line comes to this core).
    pub fn clear(&self, slot: usize) -> Result<(), UdmaLibError> {
        self.ctx.store(
            self.record_va(slot),
            &[0u8; RECORD_BYTES],
            Category::Application,
        )?;
        Ok(())
    }

    /// Submit `desc`: one store to the portal, no system call.
    pub async fn submit(&mut self, desc: &[u8; DESCRIPTOR_BYTES]) -> Result<(), UdmaLibError> {
        self.ctx
            .cycles(Category::Application, costs().submit_cycles);
        self.counters.inc("submitted");
        match self.portal.mode {
            WqMode::Dedicated => {
                self.ctx
                    .mmio_write(self.portal.va, desc, "descriptor")
                    .await?;
            }
            WqMode::Shared => {
                let mut tries = 0;
                while !self
                    .ctx
                    .enqcmd(self.portal.va, desc, "descriptor", Category::Application)
                    .await?
                {
                    tries += 1;
                    self.counters.inc("retries");
                    if tries >= costs().enqcmd_retries {
                        return Err(UdmaLibError::QueueFull(tries));
                    }
                }
            }
        }
        Ok(())
    }

    /// The record of `slot` if its descriptor completed (no charge).
    pub fn poll(&self, slot: usize) -> Option<Record<Vec<u8>>> {
        let mut b = vec![0u8; RECORD_BYTES];
        self.ctx.peek(self.record_va(slot), &mut b).ok()?;
        (b[0] != status::NONE).then(|| Record::new(b).unwrap_or_else(|| unreachable!()))
    }

    /// Spin until `slot`'s record is written, then read it (the load
    /// misses: the engine's write invalidated the line).
    pub async fn wait(&self, slot: usize) -> Result<Record<Vec<u8>>, UdmaLibError> {
        let va = self.record_va(slot);
        let ctx = &self.ctx;
        ctx.spin_until(&self.written, || {
            let mut b = [0u8; 1];
            ctx.peek(va, &mut b).is_ok() && b[0] != status::NONE
        })
        .await;
        let mut b = vec![0u8; RECORD_BYTES];
        ctx.load(va, &mut b, Category::Polling)?;
        ctx.compute(Category::Application, costs().complete_cycles)
            .await;
        Ok(Record::new(b).unwrap_or_else(|| unreachable!()))
    }

    /// Submit `op` into `slot` without waiting (asynchronous use).
    pub async fn start(
        &mut self,
        slot: usize,
        op: u8,
        src: u64,
        dst: u64,
        len: u32,
    ) -> Result<(), UdmaLibError> {
        self.clear(slot)?;
        let d = descriptor(op, 0, src, dst, len, self.record_va(slot).0);
        self.submit(&d).await
    }

    /// A synchronous copy: submit, wait, return the record.
    pub async fn memcpy(
        &mut self,
        dst: VirtAddr,
        src: VirtAddr,
        len: u32,
    ) -> Result<Record<Vec<u8>>, UdmaLibError> {
        self.start(0, opcode::MEMMOVE, src.0, dst.0, len).await?;
        self.wait(0).await
    }

    /// A synchronous fill of `len` bytes at `dst` with `pattern`.
    pub async fn memset(
        &mut self,
        dst: VirtAddr,
        pattern: u64,
        len: u32,
    ) -> Result<Record<Vec<u8>>, UdmaLibError> {
        self.start(0, opcode::MEMFILL, pattern, dst.0, len).await?;
        self.wait(0).await
    }

    /// Submit `descs` as one batch whose record is `slot`'s; each member
    /// gets no record of its own unless it asks for one.
    pub async fn batch(
        &mut self,
        slot: usize,
        descs: &[[u8; DESCRIPTOR_BYTES]],
    ) -> Result<(), UdmaLibError> {
        if descs.len() > MAX_BATCH {
            return Err(UdmaLibError::BadSlot(descs.len()));
        }
        let list = self
            .lists
            .offset((slot % self.slots) as u64 * self.list_bytes);
        let bytes: Vec<u8> = descs.iter().flatten().copied().collect();
        self.ctx.store(list, &bytes, Category::Application)?;
        self.clear(slot)?;
        let d = descriptor(
            opcode::BATCH,
            0,
            list.0,
            0,
            descs.len() as u32,
            self.record_va(slot).0,
        );
        self.submit(&d).await
    }
}

/// Copy `len` bytes from `src` to `dst` on the CPU through the cache
/// model (what `memcpy` costs a core, its misses and its pollution of the
/// core's caches included).
pub async fn cpu_memcpy(
    ctx: &CoreCtx,
    dst: VirtAddr,
    src: VirtAddr,
    len: u64,
) -> Result<(), AccessError> {
    let mut buf = vec![0u8; 4096];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(4096) as usize;
        ctx.load(src.offset(off), &mut buf[..n], Category::Application)?;
        ctx.store(dst.offset(off), &buf[..n], Category::Application)?;
        off += n as u64;
    }
    ctx.compute(
        Category::Application,
        len.div_ceil(costs().cpu_copy_bytes_per_cycle.get()),
    )
    .await;
    Ok(())
}

/// Fill `len` bytes at `dst` with `byte` on the CPU through the cache model.
pub async fn cpu_memset(
    ctx: &CoreCtx,
    dst: VirtAddr,
    byte: u8,
    len: u64,
) -> Result<(), AccessError> {
    let buf = vec![byte; 4096];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(4096) as usize;
        ctx.store(dst.offset(off), &buf[..n], Category::Application)?;
        off += n as u64;
    }
    ctx.compute(
        Category::Application,
        len.div_ceil(costs().cpu_copy_bytes_per_cycle.get()),
    )
    .await;
    Ok(())
}

/// The kernel-mediated path: each operation is a system call in which
/// the kernel pins and maps the pages, submits to its own queue by
/// physical address, polls its own record and unmaps.
pub struct KernelPath {
    driver: UdmaDriver,
    portal: PhysAddr,
    record: PhysAddr,
    written: Rc<Notify>,
    os: OsCosts,
    costs: UdmaCosts,
}

impl KernelPath {
    /// The kernel keeps queue `wq` for itself.
    pub fn new(
        driver: &UdmaDriver,
        wq: usize,
        os: OsCosts,
        costs: UdmaCosts,
    ) -> Result<KernelPath, OsError> {
        let portal = driver.open_kernel(wq)?;
        let record = driver.kernel_page()?;
        let host = driver_host(driver);
        let written = host
            .machine()
            .memory()
            .borrow_mut()
            .watch(record, RECORD_BYTES as u64);
        Ok(KernelPath {
            driver: driver.clone(),
            portal,
            record,
            written,
            os,
            costs,
        })
    }

    /// `memcpy` as a system call of `process`, made by the thread in `ctx`.
    pub async fn memcpy(
        &self,
        ctx: &CoreCtx,
        process: &Process,
        dst: VirtAddr,
        src: VirtAddr,
        len: u64,
    ) -> Result<Record<Vec<u8>>, UdmaLibError> {
        ctx.cycles(Category::Kernel, self.os.syscall_cycles);
        let (s, c1) = self.driver.pin(process, src, len, self.costs)?;
        let (d, c2) = self.driver.pin(process, dst, len, self.costs)?;
        ctx.cycles(Category::Kernel, c1 + c2);
        let r = self.run(ctx, &s, &d, opcode::MEMMOVE).await;
        let mut pinned = s;
        pinned.extend(d);
        ctx.cycles(Category::Kernel, self.driver.unpin(&pinned, self.costs)?);
        ctx.sync().await;
        r
    }

    /// The kernel's own offload of a copy between memory it already has
    /// mapped for the engine (no system call, no pinning): the prototype's
    /// in-kernel `memcpy`.
    pub async fn kernel_memcpy(
        &self,
        ctx: &CoreCtx,
        dst: Pinned,
        src: Pinned,
    ) -> Result<Record<Vec<u8>>, UdmaLibError> {
        self.run(ctx, &[src], &[dst], opcode::MEMMOVE).await
    }

    /// Submit one descriptor per piece both range lists share, wait for
    /// the last.
    async fn run(
        &self,
        ctx: &CoreCtx,
        src: &[Pinned],
        dst: &[Pinned],
        op: u8,
    ) -> Result<Record<Vec<u8>>, UdmaLibError> {
        let host = driver_host(&self.driver);
        let fabric = host.machine().fabric().clone();
        let memory = host.machine().memory().clone();
        let pieces = pair_pieces(src, dst);
        let mut last = None;
        for (i, (s, d, n)) in pieces.iter().enumerate() {
            memory
                .borrow_mut()
                .phys
                .write(self.record, &[0u8; RECORD_BYTES])
                .map_err(AccessError::from)?;
            ctx.cycles(Category::Kernel, costs().submit_cycles);
            let desc = descriptor(op, 0, *s, *d, *n as u32, self.record.0);
            ctx.sync().await;
            fabric
                .cpu_mmio_write(ctx.core().id(), self.portal, &desc, "descriptor")
                .map_err(MmioAccessError::from)?;
            let rec = self.record;
            let m = memory.clone();
            ctx.spin_until(&self.written, || {
                m.borrow()
                    .phys
                    .read_u64(rec)
                    .is_ok_and(|v| v as u8 != status::NONE)
            })
            .await;
            let mut b = vec![0u8; RECORD_BYTES];
            memory
                .borrow()
                .phys
                .read(rec, &mut b)
                .map_err(AccessError::from)?;
            ctx.compute(Category::Kernel, costs().complete_cycles).await;
            let r = Record::new(b).unwrap_or_else(|| unreachable!());
            let ok = r.status() == status::SUCCESS;
            last = Some(r);
            if !ok || i + 1 == pieces.len() {
                break;
            }
        }
        last.ok_or(UdmaLibError::BadSlot(0))
    }
}

fn driver_host(d: &UdmaDriver) -> nextio_os::Host {
    d.host().clone()
}

/// Cut two lists of device ranges into pieces contiguous in both.
fn pair_pieces(src: &[Pinned], dst: &[Pinned]) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let (mut i, mut j, mut si, mut dj) = (0, 0, 0u64, 0u64);
    while i < src.len() && j < dst.len() {
        let n = (src[i].len - si).min(dst[j].len - dj);
        out.push((src[i].iova + si, dst[j].iova + dj, n));
        si += n;
        dj += n;
        if si == src[i].len {
            i += 1;
            si = 0;
        }
        if dj == dst[j].len {
            j += 1;
            dj = 0;
        }
    }
    out
}
