//! A DPDK-style poll-mode driver for the packetized (E810-like) NIC,
//! running as a simulated thread on a [`CoreCtx`]: a mempool of mbufs in
//! hugepages, `rx_burst` / `tx_burst` over real descriptor rings, tail
//! doorbells over MMIO, and TX completion by the RS/DD protocol. Its shape
//! follows DPDK's ice PMD scalar paths (`ice_recv_pkts`,
//! `ice_xmit_pkts_simple`).
//!
//! Memory. The rings and the mempool are DMA buffers the OS pinned and
//! mapped into the process and into the NIC's IOMMU domain (VFIO's IOVA =
//! VA); descriptors carry the NIC's bus address of each buffer. The NIC's
//! registers are its BAR mapped into the process; doorbells are MMIO
//! writes through the fabric. Descriptors are built and read with the
//! NIC's own layout views.
//!
//! Costs. Every descriptor and mbuf access goes through
//! [`CoreCtx::load`]/[`CoreCtx::store`], so cache misses are an outcome of
//! the memory layout; instructions are charged as `cycles` from the preset's
//! [`DriverCosts`]. Polling an empty queue is one charged wait on a watch
//! of the RX ring's memory (woken by the NIC's write-backs), never a loop
//! of events.
//!
//! Invariants:
//! * every mbuf is in exactly one place: the free list, the RX software
//!   ring (posted to the NIC), the application, or the TX software ring
//!   until its descriptor's RS write-back says the NIC has read it;
//! * software only reads an RX descriptor's payload after its DD bit is
//!   set, and only hands the NIC descriptors it has refilled;
//! * bad configuration is an error, never a panic.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Category, Counters, Notify, Time};
use nextio_hw::cache::LINE_BYTES;
use nextio_hw::cpu::{CoreCtx, MmioAccessError};
use nextio_hw::fabric::DeviceHandle;
use nextio_hw::mem::{AccessError, VirtAddr};
use nextio_hw::nic::packetized::{
    self as pkt, NicError, PacketizedNic, RX_DESC_BYTES, RxReadDesc, RxWbDesc, TX_DESC_BYTES,
    TxDataDesc, regs,
};
use nextio_os::{DmaBuffer, OsError, Process};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// `sizeof(struct rte_mbuf)`: two cache lines.
pub const MBUF_STRUCT_BYTES: u64 = 128;
/// `RTE_PKTMBUF_HEADROOM` default.
pub const MBUF_HEADROOM_BYTES: u64 = 128;
/// `RTE_MBUF_DEFAULT_DATAROOM`: 2048 B of data room
/// (`RTE_MBUF_DEFAULT_BUF_SIZE` = 2048 + headroom).
pub const MBUF_DATA_ROOM_BYTES: u64 = 2048;
/// One mempool element: struct + headroom + data room (the mempool's own
/// object header is left out, a model simplification).
pub const MBUF_BYTES: u64 = MBUF_STRUCT_BYTES + MBUF_HEADROOM_BYTES + MBUF_DATA_ROOM_BYTES;

/// Offsets inside `struct rte_mbuf` (DPDK 22.x layout): `rearm_data`
/// (data_off, refcnt, nb_segs, port) at 16, `ol_flags` at 24,
/// `rx_descriptor_fields1` (packet_type, pkt_len, data_len, vlan_tci,
/// hash) at 32.
pub const MBUF_REARM_OFFSET: u64 = 16;
pub const MBUF_OL_FLAGS_OFFSET: u64 = 24;
pub const MBUF_PKT_LEN_OFFSET: u64 = 36;
pub const MBUF_DATA_LEN_OFFSET: u64 = 40;
pub const MBUF_RSS_OFFSET: u64 = 44;
/// `RTE_MBUF_F_TX_UDP_CKSUM` (3 << 52) and `RTE_MBUF_F_TX_IPV4` (1 << 55).
pub const MBUF_F_TX_UDP_CKSUM: u64 = 3 << 52;
pub const MBUF_F_TX_IPV4: u64 = 1 << 55;

/// The driver's instruction costs, in core cycles: a preset's
/// `[dpdk.costs]`, where each value's source is.
///
/// The per-packet costs come from DPDK's own measurement, the PMD
/// performance unit test (`pmd_perf_autotest`): its rx+tx (io forwarding)
/// total is split as its rx-only figure (receive, refill, and the free
/// rx-only adds) and the rest for transmit, with the free taken out of the
/// receive share, since io forwarding frees after transmission. Nothing is
/// fitted to any result nextio reports. Two known biases, both towards a
/// slower core: DPDK's totals include the memory stalls of its platform,
/// which nextio's cache model charges again as they happen; and they were
/// measured on an older core and the SSE vector path, where the E810's
/// driver has AVX2 and AVX-512 paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverCosts {
    pub rx_per_packet_cycles: u64,
    pub tx_per_packet_cycles: u64,
    pub tx_free_per_mbuf_cycles: u64,
    /// Per-call overhead of a burst (function call, ring state, loop
    /// set-up).
    pub rx_burst_cycles: u64,
    pub tx_burst_cycles: u64,
    /// A write barrier and an uncached 4-byte store; the PCIe crossing is
    /// timed by the link.
    pub doorbell_cycles: u64,
}

/// The root preset's driver costs (read once per process).
pub fn costs() -> &'static DriverCosts {
    nextio_presets::cached_root_section!(DriverCosts, "dpdk.costs")
}

/// Queue and pool sizes, and the driver's software prefetching: a
/// preset's `[dpdk.pmd]`, where each value's source is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PmdConfig {
    /// RX descriptors.
    pub rx_ring_entries: u32,
    /// TX descriptors.
    pub tx_ring_entries: u32,
    /// Refill doorbell after this many held descriptors.
    pub rx_free_thresh: u32,
    /// RS bit every this many TX descriptors.
    pub tx_rs_thresh: u32,
    /// Reclaim completed TX descriptors when fewer than this are free.
    pub tx_free_thresh: u32,
    /// Mbufs in this queue's pool.
    pub mbufs: u32,
    /// Software prefetches remembered at once, bounded like a core's fill
    /// buffers.
    pub prefetches_in_flight: usize,
    /// Descriptors whose lines `rx_burst` prefetches at a time, so their
    /// misses overlap.
    pub rx_desc_prefetch: u32,
}

impl Default for PmdConfig {
    /// The root preset's driver.
    fn default() -> Self {
        nextio_presets::root_section("dpdk.pmd")
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PmdError {
    #[error("invalid poll-mode driver configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Mmio(#[from] MmioAccessError),
    #[error(transparent)]
    Os(#[from] OsError),
    #[error(transparent)]
    Nic(#[from] NicError),
}

impl PmdConfig {
    pub fn validate(&self) -> Result<(), PmdError> {
        let bad = |s: &str| Err(PmdError::Config(s.into()));
        if !(1..=4096).contains(&self.prefetches_in_flight) {
            return bad("prefetches_in_flight must be in 1..=4096");
        }
        if !(1..=64).contains(&self.rx_desc_prefetch) {
            return bad("rx_desc_prefetch must be in 1..=64");
        }
        if self.rx_ring_entries < 64 || self.tx_ring_entries < 64 {
            return bad("rings need at least 64 descriptors");
        }
        if self.rx_free_thresh == 0 || self.rx_free_thresh >= self.rx_ring_entries {
            return bad("rx_free_thresh must be in 1..rx_ring_entries");
        }
        if self.tx_rs_thresh == 0 || !self.tx_ring_entries.is_multiple_of(self.tx_rs_thresh) {
            return bad("tx_rs_thresh must divide the TX ring size");
        }
        if self.tx_free_thresh == 0
            || self.tx_free_thresh + self.tx_rs_thresh > self.tx_ring_entries
        {
            return bad("tx_free_thresh + tx_rs_thresh must fit the TX ring");
        }
        if (self.mbufs as u64) < self.rx_ring_entries as u64 + 64 {
            return bad("the pool must fill the RX ring and leave a burst spare");
        }
        Ok(())
    }
}

/// A packet buffer: an index into the queue's mempool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mbuf(u32);

/// One queue pair of the packetized NIC, driven from one core.
pub struct Pmd {
    ctx: CoreCtx,
    /// The NIC's BAR0 as the process maps it.
    regs: VirtAddr,
    queue: usize,
    cfg: PmdConfig,
    counters: Rc<RefCell<Counters>>,
    pool: DmaBuffer,
    /// Fired by every write into the RX ring (the NIC's write-backs).
    rx_watch: Rc<Notify>,
    /// Free mbufs, used last-in first-out like DPDK's per-lcore mempool
    /// cache, so recently freed (cache-warm) mbufs are reused first.
    free: Vec<u32>,
    rx_ring: VirtAddr,
    rx_sw: Vec<u32>,
    rx_next: u32,
    rx_hold: u32,
    tx_ring: VirtAddr,
    tx_sw: Vec<Option<u32>>,
    tx_tail: u32,
    tx_free: u32,
    tx_next_dd: u32,
    tx_next_rs: u32,
    /// Software prefetches in flight: (cache line, local time the line
    /// arrives). Bounded like a core's fill buffers.
    prefetches: std::collections::VecDeque<(u64, Time)>,
}

impl Pmd {
    /// Have the OS pin the rings and pool in hugepages for `nic`, program
    /// queue `queue`, fill the RX ring with mbufs and hand it to the NIC.
    /// `regs` is the NIC's BAR0 as `process` maps it; `counters` receives
    /// the driver's counters (`rx_nombuf`).
    pub fn new(
        ctx: CoreCtx,
        process: &Process,
        nic: &DeviceHandle<PacketizedNic>,
        regs: VirtAddr,
        queue: usize,
        cfg: PmdConfig,
        counters: Rc<RefCell<Counters>>,
    ) -> Result<Pmd, PmdError> {
        cfg.validate()?;
        let rx_bytes = cfg.rx_ring_entries as u64 * RX_DESC_BYTES;
        let rings = process.dma_alloc(
            nic.id,
            rx_bytes + cfg.tx_ring_entries as u64 * TX_DESC_BYTES,
        )?;
        let pool = process.dma_alloc(nic.id, cfg.mbufs as u64 * MBUF_BYTES)?;
        let rx_ring = rings.va;
        let tx_ring = rings.va.offset(rx_bytes);
        {
            let mut n = nic.borrow_mut();
            n.configure_rx(queue, rings.iova, cfg.rx_ring_entries)?;
            n.configure_tx(queue, rings.iova_of(tx_ring), cfg.tx_ring_entries)?;
        }
        let rx_watch = ctx.watch(rx_ring, rx_bytes)?;
        let mut pmd = Pmd {
            ctx,
            regs,
            queue,
            counters,
            pool,
            rx_watch,
            free: (0..cfg.mbufs).rev().collect(),
            rx_ring,
            rx_sw: Vec::with_capacity(cfg.rx_ring_entries as usize),
            rx_next: 0,
            rx_hold: 0,
            tx_ring,
            tx_sw: vec![None; cfg.tx_ring_entries as usize],
            tx_tail: 0,
            tx_free: cfg.tx_ring_entries - 1,
            tx_next_dd: cfg.tx_rs_thresh - 1,
            tx_next_rs: cfg.tx_rs_thresh - 1,
            prefetches: std::collections::VecDeque::with_capacity(cfg.prefetches_in_flight),
            cfg,
        };
        // Start-up (`ice_alloc_rx_queue_mbufs`): every RX descriptor gets a
        // buffer, written without timing (start-up is not measured).
        for i in 0..pmd.cfg.rx_ring_entries {
            let m = pmd
                .free
                .pop()
                .ok_or(PmdError::Config("pool smaller than the RX ring".into()))?;
            let d = RxReadDesc::build(pmd.data_iova(Mbuf(m)));
            pmd.ctx.poke(rx_ring.offset(i as u64 * RX_DESC_BYTES), &d)?;
            pmd.rx_sw.push(m);
        }
        Ok(pmd)
    }

    /// Hand the filled RX ring to the NIC: all but one descriptor (tail =
    /// entries - 1), with a doorbell at the thread's time. Returns when the
    /// doorbell reaches the NIC, from which on the ring is the NIC's.
    pub async fn start(&self) -> Result<Time, PmdError> {
        self.doorbell(regs::rx_tail(self.queue), self.cfg.rx_ring_entries - 1)
            .await
    }

    pub fn ctx(&self) -> &CoreCtx {
        &self.ctx
    }
    pub fn queue(&self) -> usize {
        self.queue
    }
    /// Mbufs currently free in the pool.
    pub fn free_mbufs(&self) -> usize {
        self.free.len()
    }

    fn mbuf_va(&self, m: Mbuf) -> VirtAddr {
        self.pool.va.offset(m.0 as u64 * MBUF_BYTES)
    }
    /// Where `m`'s packet bytes start (after struct and headroom).
    pub fn data_va(&self, m: Mbuf) -> VirtAddr {
        self.mbuf_va(m)
            .offset(MBUF_STRUCT_BYTES + MBUF_HEADROOM_BYTES)
    }
    /// The NIC's bus address of `m`'s packet bytes.
    fn data_iova(&self, m: Mbuf) -> u64 {
        self.pool.iova_of(self.data_va(m))
    }

    /// `m`'s `data_len`, read without charge (for tests and checks).
    pub fn peek_data_len(&self, m: Mbuf) -> Result<u16, PmdError> {
        let mut b = [0u8; 2];
        self.ctx
            .peek(self.mbuf_va(m).offset(MBUF_DATA_LEN_OFFSET), &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// `rte_prefetch0(pa)`: start bringing `pa`'s line into L1d without
    /// stalling. The line's latency is remembered; a later
    /// [`Pmd::load_prefetched`] waits only for what is left of it, so the
    /// miss overlaps with whatever work came in between (memory-level
    /// parallelism that plain loads, charged one after another, lack).
    pub fn prefetch(&mut self, va: VirtAddr) -> Result<(), PmdError> {
        let line = va.0 / LINE_BYTES;
        if self.prefetches.iter().any(|(l, _)| *l == line) {
            return Ok(());
        }
        let stall = self.ctx.touch(va, 1)?;
        if stall == 0 {
            return Ok(());
        }
        if self.prefetches.len() == self.cfg.prefetches_in_flight {
            self.prefetches.pop_front();
        }
        let ready = self.ctx.local_now() + self.ctx.core().freq().cycles_to_duration(stall);
        self.prefetches.push_back((line, ready));
        Ok(())
    }

    /// A load that first waits out any software prefetch of its line still
    /// in flight; the cache model charges whatever miss remains.
    pub fn load_prefetched(
        &mut self,
        va: VirtAddr,
        buf: &mut [u8],
        category: Category,
    ) -> Result<(), PmdError> {
        let line = va.0 / LINE_BYTES;
        if let Some(k) = self.prefetches.iter().position(|(l, _)| *l == line)
            && let Some((_, ready)) = self.prefetches.remove(k)
        {
            let now = self.ctx.local_now();
            if ready > now {
                self.ctx.spend(category, ready - now);
            }
        }
        self.ctx.load(va, buf, category)?;
        Ok(())
    }

    /// Receive up to `max` packets into `out` (appended). Returns how many.
    pub async fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> Result<usize, PmdError> {
        // Descriptors are shared with the NIC: look at them at our own time.
        self.ctx.sync().await;
        self.ctx.cycles(Category::Driver, costs().rx_burst_cycles);
        let entries = self.cfg.rx_ring_entries;
        let mut n = 0;
        while n < max {
            let idx = self.rx_next;
            let desc = self.rx_ring.offset(idx as u64 * RX_DESC_BYTES);
            if idx.is_multiple_of(self.cfg.rx_desc_prefetch) {
                // Issue the loads of the next group of descriptors together.
                for k in (0..self.cfg.rx_desc_prefetch as u64)
                    .step_by((LINE_BYTES / RX_DESC_BYTES) as usize)
                {
                    let i = (idx as u64 + k) % entries as u64;
                    self.prefetch(self.rx_ring.offset(i * RX_DESC_BYTES))?;
                }
            }
            // The write-back's first 16 bytes: length, status, RSS hash.
            let mut wb = [0u8; RX_DESC_BYTES as usize];
            self.load_prefetched(desc, &mut wb[..16], Category::Driver)?;
            let ctx = &self.ctx;
            let wb = RxWbDesc::new_unchecked(&wb[..]);
            if !wb.dd() {
                break;
            }
            let Some(fresh) = self.free.pop() else {
                self.counters.borrow_mut().inc("rx_nombuf");
                break;
            };
            let len = wb.pkt_len();
            let hash = wb.rss_hash();
            let got = self.rx_sw[idx as usize];
            // Refill: read format, pkt_addr then hdr_addr = 0 (clears DD).
            let d = RxReadDesc::build(self.data_iova(Mbuf(fresh)));
            ctx.store(desc, &d[..16], Category::Driver)?;
            self.rx_sw[idx as usize] = fresh;
            // Initialise the mbuf: rearm data, ol_flags, packet fields.
            let mut f = [0u8; 32];
            f[0..2].copy_from_slice(&(MBUF_HEADROOM_BYTES as u16).to_le_bytes());
            f[2..4].copy_from_slice(&1u16.to_le_bytes()); // refcnt
            f[4..6].copy_from_slice(&1u16.to_le_bytes()); // nb_segs
            f[6..8].copy_from_slice(&(self.queue as u16).to_le_bytes()); // port
            f[20..24].copy_from_slice(&(len as u32).to_le_bytes()); // pkt_len
            f[24..26].copy_from_slice(&len.to_le_bytes()); // data_len
            f[28..32].copy_from_slice(&hash.to_le_bytes()); // hash.rss
            let m = Mbuf(got);
            ctx.store(
                self.mbuf_va(m).offset(MBUF_REARM_OFFSET),
                &f,
                Category::Driver,
            )?;
            ctx.cycles(Category::Driver, costs().rx_per_packet_cycles);
            out.push(m);
            self.rx_next = (idx + 1) % entries;
            self.rx_hold += 1;
            n += 1;
        }
        if self.rx_hold > self.cfg.rx_free_thresh {
            // Hand the refilled descriptors back, keeping one slot empty.
            let tail = (self.rx_next + entries - 1) % entries;
            self.doorbell(regs::rx_tail(self.queue), tail).await?;
            self.rx_hold = 0;
        }
        Ok(n)
    }

    /// Ring a doorbell; returns when it reaches the NIC.
    async fn doorbell(&self, register: u64, value: u32) -> Result<Time, PmdError> {
        self.ctx.cycles(Category::Driver, costs().doorbell_cycles);
        let lands = self
            .ctx
            .mmio_write(self.regs.offset(register), &value.to_le_bytes(), "doorbell")
            .await?;
        Ok(lands)
    }

    /// Whether the write-back status of RX descriptor `i` has DD set, read
    /// without charge (a poll loop's test; an unreadable ring counts as
    /// set so a waiter notices).
    fn dd_set(&self, i: u32) -> bool {
        let status = self
            .rx_ring
            .offset(i as u64 * RX_DESC_BYTES + pkt::RX_WB_STATUS_OFFSET as u64);
        let mut b = [0u8; 2];
        self.ctx
            .peek(status, &mut b)
            .map_or(true, |_| u16::from_le_bytes(b) & pkt::RX_STATUS_DD != 0)
    }

    /// Also fire `notify` on every write into this queue's RX ring (one
    /// wait for a loop that polls several queues).
    pub fn watch_rx(&self, notify: Rc<Notify>) -> Result<(), PmdError> {
        let bytes = self.cfg.rx_ring_entries as u64 * RX_DESC_BYTES;
        self.ctx.watch_with(self.rx_ring, bytes, notify)?;
        Ok(())
    }

    /// Busy-poll until the next RX descriptor is written back: one charged
    /// wait, woken by the NIC's write-backs.
    pub async fn wait_rx(&self) {
        let next = self.rx_next;
        self.ctx
            .spin_until(&self.rx_watch, || self.dd_set(next))
            .await;
    }

    /// Whether the next RX descriptor has been written back (DD set): the
    /// check a poll loop makes, read without charge (charge the poll
    /// separately, or wait with [`CoreCtx::spin_until`]).
    pub fn rx_ready(&self) -> bool {
        self.rx_written_back(1) > 0
    }

    /// RX descriptors written back and not yet received, counted from the
    /// next one up to `max` (uncharged; for checks and conservation).
    pub fn rx_written_back(&self, max: u32) -> u32 {
        let entries = self.cfg.rx_ring_entries;
        let mut n = 0;
        while n < max.min(entries) && self.dd_set((self.rx_next + n) % entries) {
            n += 1;
        }
        n
    }

    /// `rte_eth_dev_rx_intr_enable`: arm this queue's RX interrupt by
    /// writing `GLINT_DYN_CTL` with `INTENA` (a doorbell-priced MMIO write).
    pub async fn rx_intr_enable(&self) -> Result<(), PmdError> {
        self.doorbell(regs::irq_dyn_ctl(self.queue), regs::DYN_CTL_INTENA)
            .await?;
        Ok(())
    }

    /// Ask the NIC to compute `m`'s UDP checksum on transmit (E810 L4
    /// checksum offload), by setting the mbuf's offload flags.
    pub fn request_udp_checksum(&self, m: Mbuf) -> Result<(), PmdError> {
        self.ctx.store_u64(
            self.mbuf_va(m).offset(MBUF_OL_FLAGS_OFFSET),
            MBUF_F_TX_UDP_CKSUM | MBUF_F_TX_IPV4,
            Category::Driver,
        )?;
        Ok(())
    }

    /// Take an mbuf from the pool for a packet to send
    /// (`rte_pktmbuf_alloc`); `None` if the pool is empty.
    pub fn alloc(&mut self) -> Option<Mbuf> {
        self.ctx
            .cycles(Category::Driver, costs().tx_free_per_mbuf_cycles);
        self.free.pop().map(Mbuf)
    }

    /// Write `frame` into `m`'s data room and set its lengths, as an
    /// application building a packet does (cache-costed stores).
    pub fn write_packet(&mut self, m: Mbuf, frame: &[u8]) -> Result<(), PmdError> {
        if frame.len() as u64 > MBUF_DATA_ROOM_BYTES {
            return Err(PmdError::Config(format!(
                "a {} B frame does not fit an mbuf's {MBUF_DATA_ROOM_BYTES} B data room",
                frame.len()
            )));
        }
        self.ctx
            .store(self.data_va(m), frame, Category::Application)?;
        let len = frame.len() as u16;
        self.ctx.store(
            self.mbuf_va(m).offset(MBUF_PKT_LEN_OFFSET),
            &(len as u32).to_le_bytes(),
            Category::Driver,
        )?;
        self.ctx.store(
            self.mbuf_va(m).offset(MBUF_DATA_LEN_OFFSET),
            &len.to_le_bytes(),
            Category::Driver,
        )?;
        // No offload requested: clear what a previous use left.
        self.ctx.store_u64(
            self.mbuf_va(m).offset(MBUF_OL_FLAGS_OFFSET),
            0,
            Category::Driver,
        )?;
        Ok(())
    }

    /// Read `m`'s packet bytes (cache-costed).
    pub fn read_packet(&self, m: Mbuf, buf: &mut Vec<u8>) -> Result<(), PmdError> {
        let len = self.peek_data_len(m)? as usize;
        buf.resize(len, 0);
        self.ctx.load(self.data_va(m), buf, Category::Application)?;
        Ok(())
    }

    /// Return `m` to the pool.
    pub fn free(&mut self, m: Mbuf) {
        self.ctx
            .cycles(Category::Driver, costs().tx_free_per_mbuf_cycles);
        self.free.push(m.0);
    }

    /// Reclaim `tx_rs_thresh` descriptors if the NIC has written back the
    /// RS descriptor at `tx_next_dd` (`ice_tx_free_bufs`).
    fn tx_free_bufs(&mut self) -> Result<bool, PmdError> {
        let mut d = [0u8; TX_DESC_BYTES as usize];
        self.ctx.load(
            self.tx_ring
                .offset(self.tx_next_dd as u64 * TX_DESC_BYTES + 8),
            &mut d[8..],
            Category::Driver,
        )?;
        if !TxDataDesc::new_unchecked(&d[..]).done() {
            return Ok(false);
        }
        let rs = self.cfg.tx_rs_thresh;
        let first = self.tx_next_dd + 1 - rs;
        for i in first..=self.tx_next_dd {
            if let Some(m) = self.tx_sw[i as usize].take() {
                self.free(Mbuf(m));
            }
        }
        self.tx_free += rs;
        self.tx_next_dd = (self.tx_next_dd + rs) % self.cfg.tx_ring_entries;
        Ok(true)
    }

    /// Post the packets at the front of `pkts` for transmission, removing
    /// those accepted; returns how many. Packets left did not fit the ring.
    pub async fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> Result<usize, PmdError> {
        self.ctx.sync().await;
        self.ctx.cycles(Category::Driver, costs().tx_burst_cycles);
        // Like `ice_xmit_pkts_simple`, post in chunks of at most
        // `tx_rs_thresh`, reclaiming before each chunk if the ring is low.
        let mut n = 0;
        while n < pkts.len() {
            if self.tx_free < self.cfg.tx_free_thresh {
                self.tx_free_bufs()?;
            }
            let chunk = (pkts.len() - n)
                .min(self.cfg.tx_rs_thresh as usize)
                .min(self.tx_free as usize);
            if chunk == 0 {
                break;
            }
            self.tx_post(&pkts[n..n + chunk])?;
            n += chunk;
        }
        if n == 0 {
            return Ok(0);
        }
        pkts.drain(..n);
        self.doorbell(regs::tx_tail(self.queue), self.tx_tail)
            .await?;
        Ok(n)
    }

    /// Write TX descriptors for `pkts` (which fit the free descriptors).
    fn tx_post(&mut self, pkts: &[Mbuf]) -> Result<(), PmdError> {
        let entries = self.cfg.tx_ring_entries;
        // MACLEN 14 B in 2 B units, IPLEN 20 B in 4 B units, L4LEN 8 B in
        // 4 B units (ice `ICE_TX_DESC_LEN_*` fields).
        let offsets = pkt::tx_offsets(14, 20, 8);
        for &m in pkts {
            let mut f = [0u8; 24];
            self.ctx.load(
                self.mbuf_va(m).offset(MBUF_OL_FLAGS_OFFSET),
                &mut f,
                Category::Driver,
            )?;
            let ol_flags = u64::from_le_bytes(f[0..8].try_into().unwrap_or([0; 8]));
            let data_len = u16::from_le_bytes([f[16], f[17]]) as u64;
            let idx = self.tx_tail;
            let mut cmd = pkt::TXD_CMD_EOP;
            if ol_flags & MBUF_F_TX_UDP_CKSUM == MBUF_F_TX_UDP_CKSUM {
                cmd |= pkt::TXD_CMD_L4T_UDP | pkt::TXD_CMD_IIPT_IPV4;
            }
            if idx == self.tx_next_rs {
                cmd |= pkt::TXD_CMD_RS;
                self.tx_next_rs = (self.tx_next_rs + self.cfg.tx_rs_thresh) % entries;
            }
            let d = TxDataDesc::build(self.data_iova(m), cmd, offsets, data_len);
            self.ctx.store(
                self.tx_ring.offset(idx as u64 * TX_DESC_BYTES),
                &d,
                Category::Driver,
            )?;
            self.tx_sw[idx as usize] = Some(m.0);
            self.ctx
                .cycles(Category::Driver, costs().tx_per_packet_cycles);
            self.tx_tail = (idx + 1) % entries;
        }
        self.tx_free -= pkts.len() as u32;
        Ok(())
    }
}
