//! The Ensō library: what an application thread uses to talk to the Ensō
//! NIC (Ensō paper §3.2), shaped after the public Ensō software's API — a
//! [`Device`] per thread owning one notification buffer, RX pipes with
//! `recv`/`peek`/`confirm_bytes`/`free`/`prefetch`, TX pipes with
//! `alloc_buf`/`send`, RX/TX pipes that send received bytes back from where
//! they sit, and `next_rx_pipe_to_recv`, which consumes the notification
//! buffer and names a pipe with data.
//!
//! Everything runs on a [`CoreCtx`] of a thread of the process that opened
//! the device: the notification buffer and the pipes are DMA buffers the
//! OS pinned and mapped into the process and into the NIC's IOMMU domain,
//! read and written by virtual address through `CoreCtx::load`/`store`, so
//! cache behaviour (a sequential ring, the prefetchers, DDIO) is an outcome
//! of the access pattern, not a parameter; TX notifications name data by
//! the NIC's bus address of it. Each pipe's and the notification buffer's
//! register page is mapped into the process uncached, and register writes
//! are MMIO through the fabric (`"doorbell"`), after a `sync` so they leave
//! at the thread's own time. Instructions are charged with `cycles` at the
//! named constants below, each with its source. Entries are read and
//! built with the NIC's own layout views, so library and NIC share one
//! definition of every byte.
//!
//! Invariants kept: software never frees pipe bytes it has not confirmed;
//! an RX/TX pipe's bytes are freed only once the NIC has completed the TX
//! notification that sends them (the NIC reads them after the doorbell, so
//! freeing earlier would let new packets overwrite them); offsets are byte
//! offsets within a 2 MiB ring and a batch may wrap, so reads and writes
//! through a batch are split at the ring's end. Misuse is an error.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::rc::Rc;

use nextio_engine::{Category, Notify};
use nextio_hw::cpu::{CoreCtx, MmioAccessError};
use nextio_hw::fabric::DeviceHandle;
use nextio_hw::mem::{AccessError, VirtAddr};
use nextio_hw::nic::enso::{
    self as hw, EnsoNic, EnsoNicError, LINE_BYTES, NOTIFICATION_BYTES, PIPE_BYTES,
    REGISTER_PAGE_BYTES, Register, RxNotification, TxNotification,
};
use nextio_hw::packet::FlowKey;
use nextio_os::{DmaBuffer, OsError, Process};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The library's ring sizes and instruction costs: a preset's
/// `[enso_lib]`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsoLibConfig {
    /// Entries per notification ring a device is opened with.
    pub notification_entries: u32,
    /// Notifications consumed per pass at most (never 0: a pass that
    /// takes none would spin).
    pub notification_batch: NonZeroU32,
    pub costs: EnsoCosts,
}

/// Instruction costs, charged to `Category::Driver`. None is fitted to a
/// result: each is a count of the operations the library performs at a
/// sustained ~2 simple instructions per cycle; the cache cost of what they
/// touch is charged by the memory model, the link time by the PCIe model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsoCosts {
    /// Consuming one RX notification.
    pub notification_cycles: u64,
    /// One pass over the notification buffer.
    pub notification_poll_cycles: u64,
    /// `peek`/`recv`.
    pub recv_cycles: u64,
    /// Walking one packet in a batch.
    pub packet_walk_cycles: u64,
    /// A posted MMIO register write as the core sees it.
    pub doorbell_cycles: u64,
    /// Building one TX notification.
    pub tx_notification_cycles: u64,
    /// Retiring one completed TX notification.
    pub completion_cycles: u64,
}

/// The root preset's library configuration (read once per process).
pub fn config() -> &'static EnsoLibConfig {
    nextio_presets::cached_root_section!(EnsoLibConfig, "enso_lib")
}

fn costs() -> &'static EnsoCosts {
    &config().costs
}

#[derive(Debug, Error)]
pub enum EnsoError {
    #[error(transparent)]
    Nic(#[from] EnsoNicError),
    #[error(transparent)]
    Os(#[from] OsError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Mmio(#[from] MmioAccessError),
    #[error("no such pipe")]
    NoPipe,
    #[error("{0}")]
    Misuse(&'static str),
}

/// Handle of an RX (or RX/TX) pipe of a [`Device`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RxPipe(pub usize);
/// Handle of a TX pipe of a [`Device`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxPipe(pub usize);

/// Bytes of an RX pipe handed to software: `len` bytes from ring offset
/// `start`, possibly wrapping past the ring's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxBatch {
    pub pipe: RxPipe,
    pub start: u64,
    pub len: u64,
}

/// One packet inside a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Ring offset of its first byte.
    pub start: u64,
    /// Stored bytes (no FCS).
    pub len: u64,
    /// Bytes it occupies in the pipe (padded to 64).
    pub padded_len: u64,
}

struct RxState {
    nic_id: usize,
    ring: DmaBuffer,
    /// Ring offsets: freed up to `head`, handed out up to `read`, notified
    /// up to `tail`.
    head: u64,
    read: u64,
    tail: u64,
    queued: bool,
    /// Bytes sent in place and not yet completed (RX/TX pipes).
    in_flight: u64,
}

struct TxState {
    ring: DmaBuffer,
    head: u64,
    tail: u64,
    /// Bytes left unused before the ring's end when a buffer wrapped to
    /// its start ([`Device::alloc_contiguous`]); freed with the next
    /// send's completion, which is the first to pass over them.
    skipped: u64,
}

/// What a TX notification frees once the NIC completes it.
enum TxOwner {
    Rx(usize, u64),
    Tx(usize, u64),
}

/// One thread's handle on the NIC: its notification buffer and pipes.
pub struct Device {
    ctx: CoreCtx,
    process: Process,
    nic: DeviceHandle<EnsoNic>,
    nb: usize,
    /// Fired by every write into the notification buffer.
    notify: Rc<Notify>,
    /// The register pages mapped so far, by their offset in the BAR.
    reg_pages: HashMap<u64, VirtAddr>,
    rx_ring: VirtAddr,
    rx_entries: u32,
    rx_head: u32,
    tx_ring: VirtAddr,
    tx_entries: u32,
    tx_head: u32,
    tx_tail: u32,
    tx_owners: VecDeque<TxOwner>,
    rx: Vec<RxState>,
    tx: Vec<TxState>,
    by_nic_id: HashMap<usize, usize>,
    ready: VecDeque<usize>,
    /// Round-robin cursor over pipes, for prefetching "the next pipe".
    next_hint: usize,
}

fn ring_add(a: u64, b: u64) -> u64 {
    (a + b) % PIPE_BYTES
}
fn ring_dist(from: u64, to: u64) -> u64 {
    (to + PIPE_BYTES - from) % PIPE_BYTES
}

impl Device {
    /// Open the device for the thread running on `ctx`, of `process`:
    /// the OS pins its notification buffer (RX and TX rings of `entries`
    /// each, in one hugepage) for the NIC, and the library registers it.
    /// Set-up is control plane and costs no simulated time.
    pub fn open(
        ctx: CoreCtx,
        process: &Process,
        nic: DeviceHandle<EnsoNic>,
        entries: u32,
    ) -> Result<Device, EnsoError> {
        if entries < 2 {
            return Err(EnsoError::Misuse(
                "a notification ring needs at least two entries",
            ));
        }
        let ring_bytes = entries as u64 * NOTIFICATION_BYTES;
        let buf = process.dma_alloc(nic.id, 2 * ring_bytes)?;
        let (rx, tx) = (buf.va, buf.va.offset(ring_bytes));
        let nb = nic.borrow_mut().register_notification_buffer(
            buf.iova,
            entries,
            buf.iova_of(tx),
            entries,
        )?;
        let notify = ctx.watch(buf.va, 2 * ring_bytes)?;
        Ok(Device {
            ctx,
            process: process.clone(),
            nic,
            nb,
            notify,
            reg_pages: HashMap::new(),
            rx_ring: rx,
            rx_entries: entries,
            rx_head: 0,
            tx_ring: tx,
            tx_entries: entries,
            tx_head: 0,
            tx_tail: 0,
            tx_owners: VecDeque::new(),
            rx: Vec::new(),
            tx: Vec::new(),
            by_nic_id: HashMap::new(),
            ready: VecDeque::new(),
            next_hint: 0,
        })
    }

    pub fn ctx(&self) -> &CoreCtx {
        &self.ctx
    }
    pub fn notification_buffer_id(&self) -> usize {
        self.nb
    }

    /// A new RX pipe (a 2 MiB hugepage ring), optionally bound to `flow`
    /// and/or used as a fallback pipe. The same pipe can send its bytes
    /// back in place ([`Device::send_in_place`]): Ensō's RX/TX pipe.
    pub fn alloc_rx_pipe(
        &mut self,
        flow: Option<FlowKey>,
        fallback: bool,
    ) -> Result<RxPipe, EnsoError> {
        let ring = self.process.dma_alloc(self.nic.id, PIPE_BYTES)?;
        let info = self.nic.borrow_mut().register_pipe(ring.iova, self.nb)?;
        if let Some(f) = flow {
            self.nic.borrow_mut().bind_flow(f, info.id)?;
        }
        if fallback {
            self.nic.borrow_mut().add_fallback_pipe(info.id)?;
        }
        self.rx.push(RxState {
            nic_id: info.id,
            ring,
            head: 0,
            read: 0,
            tail: 0,
            queued: false,
            in_flight: 0,
        });
        self.by_nic_id.insert(info.id, self.rx.len() - 1);
        Ok(RxPipe(self.rx.len() - 1))
    }

    /// The NIC's id of a pipe.
    pub fn nic_pipe_id(&self, p: RxPipe) -> Result<usize, EnsoError> {
        Ok(self.rx.get(p.0).ok_or(EnsoError::NoPipe)?.nic_id)
    }

    /// A new TX pipe: a 2 MiB ring software fills and the NIC reads.
    pub fn alloc_tx_pipe(&mut self) -> Result<TxPipe, EnsoError> {
        let ring = self.process.dma_alloc(self.nic.id, PIPE_BYTES)?;
        self.tx.push(TxState {
            ring,
            head: 0,
            tail: 0,
            skipped: 0,
        });
        Ok(TxPipe(self.tx.len() - 1))
    }

    /// The virtual address of `reg`, mapping its register page into the
    /// process on first use (the OS maps each pipe's page to the process
    /// that owns the pipe).
    fn register_va(&mut self, reg: Register) -> Result<VirtAddr, EnsoError> {
        let offset = self.nic.borrow().register_offset(reg);
        let page = offset - offset % REGISTER_PAGE_BYTES;
        let va = match self.reg_pages.get(&page) {
            Some(va) => *va,
            None => {
                let va = self
                    .process
                    .map_bar(self.nic.id, 0, page, REGISTER_PAGE_BYTES)?;
                self.reg_pages.insert(page, va);
                va
            }
        };
        Ok(va.offset(offset - page))
    }

    async fn doorbell(&mut self, reg: Register, value: u64) -> Result<(), EnsoError> {
        let va = self.register_va(reg)?;
        self.ctx.cycles(Category::Driver, costs().doorbell_cycles);
        self.ctx
            .mmio_write(va, &value.to_le_bytes(), "doorbell")
            .await?;
        Ok(())
    }

    /// Consume up to [`EnsoLibConfig::notification_batch`] notifications, recording each
    /// pipe's new tail; tells the NIC how far the buffer was consumed.
    /// Returns how many were consumed.
    pub async fn consume_notifications(&mut self) -> Result<u32, EnsoError> {
        self.ctx.sync().await;
        self.ctx
            .cycles(Category::Driver, costs().notification_poll_cycles);
        let mut n = 0;
        while n < config().notification_batch.get() {
            let va = self
                .rx_ring
                .offset(self.rx_head as u64 * NOTIFICATION_BYTES);
            // The three words software reads (one line: one cache access).
            let mut e = [0u8; NOTIFICATION_BYTES as usize];
            self.ctx.load(va, &mut e[..24], Category::Driver)?;
            let note = RxNotification::new_unchecked(&e[..]);
            if note.signal() == 0 {
                break;
            }
            self.ctx.store_u64(va, 0, Category::Driver)?;
            self.ctx
                .cycles(Category::Driver, costs().notification_cycles);
            self.rx_head = (self.rx_head + 1) % self.rx_entries;
            n += 1;
            let (nic_id, tail) = (note.pipe() as usize, note.tail() % PIPE_BYTES);
            if let Some(&i) = self.by_nic_id.get(&nic_id) {
                let s = &mut self.rx[i];
                s.tail = tail;
                if s.tail != s.read && !s.queued {
                    s.queued = true;
                    self.ready.push_back(i);
                }
            }
        }
        if n > 0 {
            self.doorbell(Register::RxNotificationHead(self.nb), self.rx_head as u64)
                .await?;
        }
        Ok(n)
    }

    /// A pipe with data to receive, consuming notifications if none is
    /// known (Ensō's `NextRxPipeToRecv`); `None` if there is none now.
    pub async fn next_rx_pipe_to_recv(&mut self) -> Result<Option<RxPipe>, EnsoError> {
        if self.ready.is_empty() {
            self.consume_notifications().await?;
        }
        while let Some(i) = self.ready.pop_front() {
            self.rx[i].queued = false;
            if self.rx[i].tail != self.rx[i].read {
                self.next_hint = (i + 1) % self.rx.len();
                return Ok(Some(RxPipe(i)));
            }
        }
        // A pipe may still hold notified bytes a bounded receive left
        // behind: serve those in round-robin order.
        for k in 0..self.rx.len() {
            let i = (self.next_hint + k) % self.rx.len();
            if self.rx[i].tail != self.rx[i].read {
                self.next_hint = (i + 1) % self.rx.len();
                return Ok(Some(RxPipe(i)));
            }
        }
        Ok(None)
    }

    /// The pipe after the last one returned, in round-robin order: the one
    /// whose notification to prefetch while working on the current one.
    pub fn next_pipe_hint(&self) -> Option<RxPipe> {
        (!self.rx.is_empty()).then_some(RxPipe(self.next_hint % self.rx.len()))
    }

    /// Busy-poll until a notification or a TX completion has arrived: one
    /// charged wait, woken by the NIC's writes into this buffer.
    pub async fn wait_for_activity(&self) {
        self.ctx
            .spin_until(&self.notify, || self.has_activity())
            .await;
    }

    /// Whether a notification or a TX completion is waiting (the poll
    /// loop's test, read without charge: a wait is charged as polling).
    pub fn has_activity(&self) -> bool {
        let rx = self
            .rx_ring
            .offset(self.rx_head as u64 * NOTIFICATION_BYTES);
        let tx = self
            .tx_ring
            .offset(self.tx_head as u64 * NOTIFICATION_BYTES);
        let tx_pending = self.tx_head != self.tx_tail;
        let word = |va: VirtAddr, absent: u64| {
            let mut b = [0u8; 8];
            self.ctx
                .peek(va, &mut b)
                .map_or(absent, |_| u64::from_le_bytes(b))
        };
        word(rx, 1) != 0 || (tx_pending && word(tx, 1) == 0)
    }

    /// Whether a TX completion is waiting to be retired.
    pub fn tx_completion_ready(&self) -> bool {
        if self.tx_head == self.tx_tail {
            return false;
        }
        let tx = self
            .tx_ring
            .offset(self.tx_head as u64 * NOTIFICATION_BYTES);
        let mut b = [0u8; 8];
        self.ctx
            .peek(tx, &mut b)
            .is_ok_and(|_| u64::from_le_bytes(b) == 0)
    }

    /// Fire `notify` too whenever the NIC writes into this notification
    /// buffer (for a loop that polls this device and others).
    pub fn watch_activity(&self, notify: Rc<Notify>) -> Result<(), EnsoError> {
        let bytes = (self.rx_entries + self.tx_entries) as u64 * NOTIFICATION_BYTES;
        self.ctx.watch_with(self.rx_ring, bytes, notify)?;
        Ok(())
    }

    /// The DMA buffer holding pipe `p`'s ring (to share it with another
    /// device that reads received bytes where they sit).
    pub fn rx_ring_buffer(&self, p: RxPipe) -> Result<DmaBuffer, EnsoError> {
        Ok(self.rx.get(p.0).ok_or(EnsoError::NoPipe)?.ring)
    }

    /// The next up to `max_bytes` bytes of `p`, without consuming them.
    pub fn peek(&self, p: RxPipe, max_bytes: u64) -> Result<RxBatch, EnsoError> {
        let s = self.rx.get(p.0).ok_or(EnsoError::NoPipe)?;
        self.ctx.cycles(Category::Driver, costs().recv_cycles);
        Ok(RxBatch {
            pipe: p,
            start: s.read,
            len: ring_dist(s.read, s.tail).min(max_bytes),
        })
    }

    /// Mark `n` more bytes of `p` as received (they may then be freed).
    pub fn confirm_bytes(&mut self, p: RxPipe, n: u64) -> Result<(), EnsoError> {
        let s = self.rx.get_mut(p.0).ok_or(EnsoError::NoPipe)?;
        if n > ring_dist(s.read, s.tail) {
            return Err(EnsoError::Misuse("confirming bytes that were not received"));
        }
        s.read = ring_add(s.read, n);
        Ok(())
    }

    /// `peek` and `confirm_bytes` in one (Ensō's `Recv`).
    pub fn recv(&mut self, p: RxPipe, max_bytes: u64) -> Result<RxBatch, EnsoError> {
        let b = self.peek(p, max_bytes)?;
        self.confirm_bytes(p, b.len)?;
        Ok(b)
    }

    /// Free `n` received bytes of `p` (advance its head: a doorbell).
    pub async fn free(&mut self, p: RxPipe, n: u64) -> Result<(), EnsoError> {
        let s = self.rx.get_mut(p.0).ok_or(EnsoError::NoPipe)?;
        if n + s.in_flight > ring_dist(s.head, s.read) {
            return Err(EnsoError::Misuse("freeing bytes that were not received"));
        }
        s.head = ring_add(s.head, n);
        let (id, head) = (s.nic_id, s.head);
        self.doorbell(Register::PipeHead(id), head).await
    }

    /// Ask the NIC for a notification for `p` if it holds data
    /// (notification prefetching, Ensō paper §3.3.2).
    pub async fn prefetch(&mut self, p: RxPipe) -> Result<(), EnsoError> {
        let id = self.rx.get(p.0).ok_or(EnsoError::NoPipe)?.nic_id;
        self.doorbell(Register::PipePrefetch(id), 0).await
    }

    /// Walk the packet at `offset` bytes into `batch`: its placement from
    /// its IPv4 header (read through the cache). `None` past the batch.
    pub fn packet_at(&self, batch: &RxBatch, offset: u64) -> Result<Option<Packet>, EnsoError> {
        if offset + 18 > batch.len {
            return Ok(None);
        }
        let start = ring_add(batch.start, offset);
        let mut h = [0u8; 18];
        self.read(batch.pipe, start, &mut h, Category::Driver)?;
        self.ctx
            .cycles(Category::Driver, costs().packet_walk_cycles);
        let Some(len) = hw::frame_len_from_header(&h) else {
            return Err(EnsoError::Misuse(
                "a pipe's bytes do not start with a frame",
            ));
        };
        let padded = hw::padded_len(len as u64);
        if offset + padded > batch.len {
            return Ok(None);
        }
        Ok(Some(Packet {
            start,
            len: len as u64,
            padded_len: padded,
        }))
    }

    /// Read bytes of pipe `p` at ring offset `at` (wrapping), cache-costed.
    pub fn read(&self, p: RxPipe, at: u64, buf: &mut [u8], cat: Category) -> Result<(), EnsoError> {
        let ring = self.rx.get(p.0).ok_or(EnsoError::NoPipe)?.ring.va;
        let first = (buf.len() as u64).min(PIPE_BYTES - at % PIPE_BYTES) as usize;
        let (a, b) = buf.split_at_mut(first);
        self.ctx.load(ring.offset(at % PIPE_BYTES), a, cat)?;
        if !b.is_empty() {
            self.ctx.load(ring, b, cat)?;
        }
        Ok(())
    }

    /// Write bytes into pipe `p` at ring offset `at` (wrapping), cache-costed.
    pub fn write(&self, p: RxPipe, at: u64, data: &[u8], cat: Category) -> Result<(), EnsoError> {
        let ring = self.rx.get(p.0).ok_or(EnsoError::NoPipe)?.ring.va;
        let first = (data.len() as u64).min(PIPE_BYTES - at % PIPE_BYTES) as usize;
        self.ctx
            .store(ring.offset(at % PIPE_BYTES), &data[..first], cat)?;
        if first < data.len() {
            self.ctx.store(ring, &data[first..], cat)?;
        }
        Ok(())
    }

    async fn wait_tx_slot(&mut self) -> Result<(), EnsoError> {
        while (self.tx_tail + 1) % self.tx_entries == self.tx_head {
            if self.process_completions().await? == 0 {
                self.wait_for_activity().await;
            }
        }
        Ok(())
    }

    /// Queue a TX notification for `len` bytes at bus address `iova`.
    async fn push_tx_notification(
        &mut self,
        iova: u64,
        len: u64,
        owner: TxOwner,
    ) -> Result<(), EnsoError> {
        self.wait_tx_slot().await?;
        let mut e = [0u8; NOTIFICATION_BYTES as usize];
        let mut note = TxNotification::new_unchecked(&mut e[..]);
        note.set_signal(1);
        note.set_addr(iova);
        note.set_len(len);
        let va = self
            .tx_ring
            .offset(self.tx_tail as u64 * NOTIFICATION_BYTES);
        self.ctx.store(va, &e, Category::Driver)?;
        self.ctx
            .cycles(Category::Driver, costs().tx_notification_cycles);
        self.tx_tail = (self.tx_tail + 1) % self.tx_entries;
        self.tx_owners.push_back(owner);
        Ok(())
    }

    /// Send `batch`'s received bytes back from where they sit (Ensō's
    /// RX/TX pipe `SendAndFree`): they are freed when the NIC completes
    /// the send, in [`Device::process_completions`].
    pub async fn send_and_free(&mut self, batch: RxBatch) -> Result<(), EnsoError> {
        let s = self.rx.get(batch.pipe.0).ok_or(EnsoError::NoPipe)?;
        if batch.len == 0 {
            return Ok(());
        }
        if ring_dist(s.head, batch.start) != s.in_flight
            || batch.len > ring_dist(batch.start, s.read)
        {
            return Err(EnsoError::Misuse(
                "in-place sends must cover received bytes in order",
            ));
        }
        let ring = s.ring;
        let first = batch.len.min(PIPE_BYTES - batch.start);
        self.rx[batch.pipe.0].in_flight += batch.len;
        self.push_tx_notification(
            ring.iova + batch.start,
            first,
            TxOwner::Rx(batch.pipe.0, first),
        )
        .await?;
        if first < batch.len {
            self.push_tx_notification(
                ring.iova,
                batch.len - first,
                TxOwner::Rx(batch.pipe.0, batch.len - first),
            )
            .await?;
        }
        self.doorbell(Register::TxNotificationTail(self.nb), self.tx_tail as u64)
            .await
    }

    /// Contiguous space at the tail of TX pipe `t`: its address and size
    /// (Ensō's `TxPipe::AllocateBuf`). Fill it, then [`Device::send`].
    pub fn alloc_buf(&self, t: TxPipe) -> Result<(VirtAddr, u64), EnsoError> {
        let s = self.tx.get(t.0).ok_or(EnsoError::NoPipe)?;
        let free = PIPE_BYTES - LINE_BYTES - ring_dist(s.head, s.tail);
        Ok((s.ring.va.offset(s.tail), free.min(PIPE_BYTES - s.tail)))
    }

    /// A new buffer of `need` contiguous bytes at the tail of TX pipe `t`,
    /// wrapping to the ring's start when only the end of the ring is short
    /// (the bytes skipped return with the next send's completion); `None`
    /// while the ring lacks the space (sends are in flight: process
    /// completions). Nothing may be written at the tail and not yet sent:
    /// a wrap would leave it behind.
    /// An application that copies frames into a pipe uses it, so no frame
    /// is split across the ring's end (Ensō maps its pipes twice for the
    /// same purpose).
    pub fn alloc_contiguous(
        &mut self,
        t: TxPipe,
        need: u64,
    ) -> Result<Option<VirtAddr>, EnsoError> {
        let s = self.tx.get_mut(t.0).ok_or(EnsoError::NoPipe)?;
        if need == 0 || need > PIPE_BYTES / 2 {
            return Err(EnsoError::Misuse("a TX buffer of 1 byte to half a pipe"));
        }
        let free = PIPE_BYTES - LINE_BYTES - ring_dist(s.head, s.tail);
        let to_end = PIPE_BYTES - s.tail;
        if need <= free.min(to_end) {
            return Ok(Some(s.ring.va.offset(s.tail)));
        }
        if to_end < need && s.skipped == 0 && free >= to_end + need {
            s.skipped = to_end;
            s.tail = 0;
            return Ok(Some(s.ring.va));
        }
        Ok(None)
    }

    /// Send the first `len` bytes of the buffer from [`Device::alloc_buf`];
    /// the pipe space returns once the NIC completes the send.
    pub async fn send(&mut self, t: TxPipe, len: u64) -> Result<(), EnsoError> {
        let (addr, cap) = self.alloc_buf(t)?;
        if len == 0 || len > cap {
            return Err(EnsoError::Misuse("sending more than the allocated buffer"));
        }
        // Keep the tail on a 64-byte boundary, as frames in a pipe are.
        let advance = hw::padded_len(len).min(cap);
        let s = &mut self.tx[t.0];
        let iova = s.ring.iova_of(addr);
        s.tail = ring_add(s.tail, advance);
        let freed = advance + std::mem::take(&mut s.skipped);
        self.push_tx_notification(iova, len, TxOwner::Tx(t.0, freed))
            .await?;
        self.doorbell(Register::TxNotificationTail(self.nb), self.tx_tail as u64)
            .await
    }

    /// Retire TX notifications the NIC has completed, freeing what they
    /// sent (one head doorbell per RX/TX pipe). Returns how many retired.
    pub async fn process_completions(&mut self) -> Result<u32, EnsoError> {
        if self.tx_head == self.tx_tail {
            return Ok(0);
        }
        self.ctx.sync().await;
        let mut n = 0;
        let mut freed: Vec<(usize, u64)> = Vec::new();
        while self.tx_head != self.tx_tail {
            let va = self
                .tx_ring
                .offset(self.tx_head as u64 * NOTIFICATION_BYTES);
            if self.ctx.load_u64(va, Category::Driver)? != 0 {
                break;
            }
            self.ctx.cycles(Category::Driver, costs().completion_cycles);
            self.tx_head = (self.tx_head + 1) % self.tx_entries;
            n += 1;
            match self.tx_owners.pop_front() {
                Some(TxOwner::Rx(p, len)) => match freed.iter_mut().find(|(q, _)| *q == p) {
                    Some((_, l)) => *l += len,
                    None => freed.push((p, len)),
                },
                Some(TxOwner::Tx(t, len)) => self.tx[t].head = ring_add(self.tx[t].head, len),
                None => return Err(EnsoError::Misuse("a completion without a send")),
            }
        }
        for (p, len) in freed {
            let s = &mut self.rx[p];
            s.in_flight -= len;
            s.head = ring_add(s.head, len);
            let (id, head) = (s.nic_id, s.head);
            self.doorbell(Register::PipeHead(id), head).await?;
        }
        Ok(n)
    }

    /// TX notifications sent and not yet completed.
    pub fn tx_pending(&self) -> u32 {
        (self.tx_tail + self.tx_entries - self.tx_head) % self.tx_entries
    }
}
