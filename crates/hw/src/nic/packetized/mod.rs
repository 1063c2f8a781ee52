//! An E810-like packetized NIC: receive and transmit descriptor rings in
//! host memory, one packet buffer per descriptor, tail doorbells in BAR0,
//! receive-side scaling, and an on-NIC receive packet buffer — a
//! [`Device`] on the fabric, so every host memory access is a DMA by bus
//! address (an IOVA when the IOMMU is on) and every register access is an
//! MMIO write reaching BAR0.
//!
//! Receive (`rx`). A frame from the wire is hashed (Toeplitz over the
//! IPv4/UDP 4-tuple with the standard Microsoft key, [`rss`]) and steered
//! through an indirection table to a queue. The NIC takes the next
//! descriptor from its per-queue descriptor cache — filled by DMA reads of
//! the RX ring in batches, parsed from the bytes that arrive — DMA-writes
//! the frame into the buffer the descriptor names and later writes the
//! descriptor back (32 bytes, length, DD and the RSS hash) in batches.
//! Posted writes are ordered, so the packet bytes are in memory before the
//! write-back that publishes them. A driver learns of write-backs by
//! watching the ring's memory ([`crate::memory::MemorySystem::watch`]).
//!
//! Transmit (`tx`). A TX tail doorbell makes the NIC fetch the posted
//! 16-byte TX descriptors by DMA read, then each packet's bytes by DMA
//! read, compute the UDP checksum over them if the descriptor asks for L4
//! checksum offload, and put the frame on its port — or hold it until the
//! port has room. A descriptor with the RS bit set is written back with
//! DTYPE = DESC_DONE once its packet has been read.
//!
//! Interrupts (`irq`). Each queue can have an MSI-X vector (an index
//! into the NIC's MSI-X table, which the OS programs with
//! [`crate::fabric::Fabric::set_msix`]). Software arms it by writing
//! `GLINT_DYN_CTL(q)` with `INTENA`. The next RX write-back on an armed
//! queue sends the message right behind the write-back's DMA — the same
//! ordered posted lane, so the descriptors are in memory before the
//! interrupt arrives — and masks the vector until software arms it again.
//! A write-back while masked sets the vector's pending bit; arming a
//! pending vector sends its message at once. Queues without a vector, or
//! never armed, are polled.
//!
//! Every DMA names its purpose: `"packet-data"`, `"descriptor"` (fetches
//! and write-backs); the fabric labels MSI-X messages `"interrupt"` and the
//! driver's register writes carry its own (`"doorbell"`).
//!
//! Invariants (tested):
//! * `rx_frames == rx_delivered + Σ drop.rx_* + rx_frames_held()` at every
//!   instant, where the NIC holds a frame only in its receive pipeline or
//!   while the descriptor it will use is still being fetched; so once the
//!   NIC is idle, `rx_frames == rx_delivered + Σ drop.rx_*`;
//! * `tx_descriptors == tx_frames + Σ drop.tx_*` once the NIC is quiet;
//! * bytes in host memory are exactly the frame's bytes (the FCS is
//!   stripped, as DPDK's default `keep_crc = off` configures the E810);
//! * the NIC only ever uses descriptors software has handed over by tail
//!   doorbell, in ring order, and never overtakes the tail;
//! * bad configuration is an error; a bad register write, a bad
//!   descriptor or a faulting DMA is counted, never a panic.

mod irq;
pub mod layout;
pub mod regs;
mod ring;
pub mod rss;
mod rx;
mod tag;
mod tx;

use std::collections::VecDeque;

use nextio_engine::{Counters, Duration};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::device::{BarSpec, Device, DeviceCtx, DmaFault, Requester};
use crate::packet::{self, Frame};

pub use layout::{
    RX_DESC_BYTES, RX_PKT_LEN_MASK, RX_STATUS_DD, RX_STATUS_EOF, RX_WB_PKT_LEN_OFFSET,
    RX_WB_RSS_HASH_OFFSET, RX_WB_STATUS_OFFSET, RxReadDesc, RxWbDesc, TX_DESC_BYTES, TXD_CMD_EOP,
    TXD_CMD_IIPT_IPV4, TXD_CMD_L4T_UDP, TXD_CMD_RS, TXD_DTYPE_DATA, TXD_DTYPE_DESC_DONE,
    TxDataDesc, tx_offsets,
};
pub use regs::{DYN_CTL_INTENA, Reg};
pub use rss::{IndirectionTable, MICROSOFT_RSS_KEY, rss_hash, toeplitz_hash};

use irq::QueueIrq;
use ring::Ring;
use rx::{PacketBuffer, RxQueue};
use tag::{Op, Sequence, Tag};
use tx::{Port, TxQueue};

/// How the NIC is built: a preset's `[nic.packetized]` (where each
/// value's source is) and the queue count the host builder chooses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacketizedConfig {
    /// Queue pairs (RX + TX).
    #[serde(skip, default = "one")]
    pub queues: usize,
    /// Entries of the RSS indirection table, filled round-robin over the
    /// queues.
    pub rss_lut_entries: usize,
    /// RX descriptors fetched per DMA read.
    pub rx_desc_fetch_batch: u32,
    /// Descriptors the NIC caches per RX queue, fetched or being fetched.
    pub rx_desc_cache: u32,
    /// Most RX descriptors written back in one DMA write; a partial batch
    /// also goes out [`PacketizedConfig::rx_wb_delay`] after its first
    /// packet's bytes left the NIC.
    pub rx_wb_batch: u32,
    /// How long after the first packet of a partial write-back batch has
    /// left the NIC the batch is written back anyway.
    #[serde(rename = "rx_wb_delay_ps")]
    pub rx_wb_delay: Duration,
    /// TX descriptors fetched per DMA read.
    pub tx_desc_fetch_batch: u32,
    /// On-NIC receive packet buffer.
    pub rx_buffer_bytes: u64,
    /// Largest frame a descriptor's buffer may receive; longer frames would
    /// need scatter, which the model lacks.
    pub rx_max_frame_bytes: u64,
    /// Time from a frame's last bit arriving to the NIC being ready to DMA
    /// it (parser, RSS, packet buffer).
    #[serde(rename = "rx_pipeline_ps")]
    pub rx_pipeline: Duration,
}

fn one() -> usize {
    1
}

impl Default for PacketizedConfig {
    /// The root preset's packetized NIC with one queue pair.
    fn default() -> Self {
        nextio_presets::root_section("nic.packetized")
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NicError {
    #[error("invalid NIC configuration: {0}")]
    Config(String),
    #[error("queue {queue} does not exist (the NIC has {queues})")]
    NoSuchQueue { queue: usize, queues: usize },
}

/// Bounds that keep what a configuration asks of the NIC's own state
/// finite (real NICs are far below them).
const MAX_LUT_ENTRIES: usize = 1 << 16;
const MAX_DESC_CACHE: u32 = 1 << 16;

impl PacketizedConfig {
    pub fn validate(&self) -> Result<(), NicError> {
        let bad = |s: &str| Err(NicError::Config(s.to_string()));
        if self.queues == 0 {
            return bad("at least one queue pair is needed");
        }
        if self.queues > regs::MAX_QUEUES {
            return bad("more queue pairs than the register map has tail registers (2048)");
        }
        if self.rss_lut_entries == 0 || !self.rss_lut_entries.is_power_of_two() {
            return bad("the RSS table size must be a power of two");
        }
        if self.rss_lut_entries > MAX_LUT_ENTRIES {
            return bad("the RSS table may have at most 65536 entries");
        }
        if self.rx_desc_cache > MAX_DESC_CACHE || self.tx_desc_fetch_batch > MAX_DESC_CACHE {
            return bad("a descriptor cache or fetch may hold at most 65536 descriptors");
        }
        if self.rx_desc_fetch_batch == 0 || self.tx_desc_fetch_batch == 0 {
            return bad("descriptor fetch batches must be at least one descriptor");
        }
        if self.rx_desc_cache < self.rx_desc_fetch_batch {
            return bad("the RX descriptor cache must hold at least one fetch batch");
        }
        if self.rx_wb_batch == 0 {
            return bad("the RX write-back batch must be at least one descriptor");
        }
        if self.rx_buffer_bytes < packet::MAX_FRAME_BYTES as u64 {
            return bad("the RX packet buffer must hold at least one maximum-size frame");
        }
        if self.rx_max_frame_bytes == 0 {
            return bad("the RX buffer size must be positive");
        }
        if self.rx_max_frame_bytes > RX_PKT_LEN_MASK as u64 {
            return bad("the RX buffer size exceeds what the write-back's 14-bit length can say");
        }
        Ok(())
    }
}

/// The NIC. The OS configures it through a
/// [`crate::fabric::DeviceHandle`]; the data plane reaches it only through
/// BAR0 register writes.
pub struct PacketizedNic {
    cfg: PacketizedConfig,
    rx: Vec<RxQueue>,
    tx: Vec<TxQueue>,
    irq: Vec<QueueIrq>,
    lut: IndirectionTable,
    buffer: PacketBuffer,
    /// Frames in the receive pipeline, oldest first.
    pipeline: VecDeque<Frame>,
    port: Port,
    seq: Sequence,
    counters: Counters,
}

impl PacketizedNic {
    pub fn new(cfg: PacketizedConfig) -> Result<PacketizedNic, NicError> {
        cfg.validate()?;
        let lut = IndirectionTable::round_robin(cfg.rss_lut_entries, cfg.queues)
            .ok_or_else(|| NicError::Config("the RSS table cannot be built".into()))?;
        Ok(PacketizedNic {
            rx: (0..cfg.queues).map(|_| RxQueue::default()).collect(),
            tx: (0..cfg.queues).map(|_| TxQueue::default()).collect(),
            irq: vec![QueueIrq::default(); cfg.queues],
            lut,
            buffer: PacketBuffer::new(cfg.rx_buffer_bytes),
            pipeline: VecDeque::new(),
            port: Port::default(),
            seq: Sequence::default(),
            counters: Counters::new(),
            cfg,
        })
    }

    pub fn config(&self) -> &PacketizedConfig {
        &self.cfg
    }

    fn check_queue(&self, q: usize) -> Result<(), NicError> {
        if q >= self.cfg.queues {
            return Err(NicError::NoSuchQueue {
                queue: q,
                queues: self.cfg.queues,
            });
        }
        Ok(())
    }

    fn check_ring(base: u64, entries: u32, desc_bytes: u64) -> Result<(), NicError> {
        if entries < 2 {
            return Err(NicError::Config("a ring needs at least two entries".into()));
        }
        if base.checked_add(entries as u64 * desc_bytes).is_none() {
            return Err(NicError::Config(
                "ring runs past the end of the bus address space".into(),
            ));
        }
        if !base.is_multiple_of(128) {
            // QRX_CTX base address is in 128-byte units (ice_rlan_ctx).
            return Err(NicError::Config(
                "ring base must be 128-byte aligned".into(),
            ));
        }
        Ok(())
    }

    /// Program RX queue `q`'s context with the ring at bus address `ring`
    /// (the driver does this at start-up, over the admin queue in the real
    /// device; untimed here). The tail starts at 0: the NIC owns no
    /// descriptor until the first doorbell.
    pub fn configure_rx(&mut self, q: usize, ring: u64, entries: u32) -> Result<(), NicError> {
        self.check_queue(q)?;
        Self::check_ring(ring, entries, RX_DESC_BYTES)?;
        self.rx_reset(q, Ring::new(ring, entries));
        Ok(())
    }

    /// Program TX queue `q`'s context with the ring at bus address `ring`.
    pub fn configure_tx(&mut self, q: usize, ring: u64, entries: u32) -> Result<(), NicError> {
        self.check_queue(q)?;
        Self::check_ring(ring, entries, TX_DESC_BYTES)?;
        self.tx_reset(q, Ring::new(ring, entries));
        Ok(())
    }

    /// Give queue `q` MSI-X table entry `vector` (start-up, like the ring
    /// contexts; untimed). The vector starts masked.
    pub fn configure_interrupt(&mut self, q: usize, vector: u16) -> Result<(), NicError> {
        self.check_queue(q)?;
        self.irq[q] = QueueIrq::with_vector(vector);
        Ok(())
    }

    /// Which queue RSS steers a frame to.
    pub fn rss_queue(&self, frame: &[u8]) -> usize {
        self.lut.queue(rss_hash(&MICROSOFT_RSS_KEY, frame))
    }

    /// Frames received and not yet delivered or dropped: in the receive
    /// pipeline, or waiting for the descriptor being fetched for them.
    pub fn rx_frames_held(&self) -> u64 {
        (self.pipeline.len() + self.rx.iter().map(RxQueue::waiting).sum::<usize>()) as u64
    }

    /// The receive conservation law, checked after every event in builds
    /// with debug assertions.
    fn rx_conserved(&self) -> bool {
        let c = &self.counters;
        c.get("rx_frames")
            == c.get("rx_delivered") + c.sum_prefix("drop.rx_") + self.rx_frames_held()
    }

    /// `GLINT_DYN_CTL(q)` reached the NIC.
    fn dyn_ctl_written(&mut self, cx: &mut DeviceCtx<'_>, q: usize, value: u32) {
        match self.irq[q].dyn_ctl(value) {
            Err(irq::NotConfigured) => self.counters.inc("irq_not_configured"),
            Ok(Some(vector)) => {
                cx.msix(vector);
                self.counters.inc("irq_messages");
            }
            Ok(None) => {}
        }
    }

    fn register_value(&self, reg: Reg) -> Option<u32> {
        Some(match reg {
            Reg::RxTail(q) => self.rx.get(q)?.ring.tail,
            Reg::TxTail(q) => self.tx.get(q)?.ring.tail,
            Reg::IrqDynCtl(q) => {
                if self.irq.get(q)?.armed() {
                    DYN_CTL_INTENA
                } else {
                    0
                }
            }
        })
    }
}

impl Device for PacketizedNic {
    fn name(&self) -> &'static str {
        "packetized-nic"
    }

    fn bars(&self) -> Vec<BarSpec> {
        vec![BarSpec::new(regs::BAR0_BYTES)]
    }

    fn ports(&self) -> usize {
        1
    }

    fn bar_write(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        _from: Requester,
        bar: u8,
        offset: u64,
        data: &[u8],
    ) {
        let reg = if bar == 0 { regs::decode(offset) } else { None };
        let (Some(reg), Ok(value)) = (reg, <[u8; regs::REGISTER_BYTES]>::try_from(data)) else {
            self.counters.inc("bad_register_writes");
            return;
        };
        let value = u32::from_le_bytes(value);
        let queues = self.cfg.queues;
        match reg {
            Reg::RxTail(q) if q < queues => self.rx_tail_written(cx, q, value),
            Reg::TxTail(q) if q < queues => self.tx_tail_written(cx, q, value),
            Reg::IrqDynCtl(q) if q < queues => self.dyn_ctl_written(cx, q, value),
            _ => self.counters.inc("bad_register_writes"),
        }
    }

    fn bar_read(
        &mut self,
        _cx: &mut DeviceCtx<'_>,
        _from: Requester,
        bar: u8,
        offset: u64,
        out: &mut [u8],
    ) {
        let reg = if bar == 0 { regs::decode(offset) } else { None };
        match reg.and_then(|r| self.register_value(r)) {
            Some(v) if out.len() == regs::REGISTER_BYTES => out.copy_from_slice(&v.to_le_bytes()),
            _ => self.counters.inc("bad_register_reads"),
        }
    }

    fn dma_read_done(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, data: &[u8]) {
        match Tag::decode(tag) {
            Some(Tag {
                op: Op::RxFetch,
                queue,
                seq,
            }) => self.rx_fetch_done(cx, queue, seq, data),
            Some(Tag {
                op: Op::TxFetch,
                queue,
                seq,
            }) => self.tx_fetch_done(cx, queue, seq, data),
            Some(Tag {
                op: Op::TxData,
                queue,
                seq,
            }) => self.tx_data_done(cx, queue, seq, data),
            _ => self.counters.inc("stale_completions"),
        }
        debug_assert!(self.rx_conserved(), "{:?}", self.counters);
    }

    fn dma_fault(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, _fault: DmaFault) {
        let Some(Tag { op, queue, seq }) = Tag::decode(tag) else {
            self.counters.inc("stale_completions");
            return;
        };
        match op {
            Op::RxFetch => self.rx_fetch_fault(cx, queue, seq),
            Op::TxFetch => self.tx_fetch_fault(cx, queue, seq),
            Op::TxData => self.tx_data_fault(cx, queue, seq),
            // A posted write's fault comes after the NIC has moved on: the
            // frame counts as delivered, the loss is the IOMMU's to report.
            Op::RxData => self.counters.inc("rx_data_write_faults"),
            Op::RxWriteBack => self.counters.inc("rx_write_back_faults"),
            Op::TxWriteBack => self.counters.inc("tx_write_back_faults"),
            Op::WriteBackFlush | Op::Pipeline => self.counters.inc("stale_completions"),
        }
        debug_assert!(self.rx_conserved(), "{:?}", self.counters);
    }

    fn frame(&mut self, cx: &mut DeviceCtx<'_>, _port: usize, frame: Frame) {
        self.counters.inc("rx_frames");
        if self.cfg.rx_pipeline == Duration::ZERO {
            self.rx_accept(cx, frame);
        } else {
            // Every frame spends the same time in the pipeline, so the
            // timers expire in arrival order and each takes the oldest.
            self.pipeline.push_back(frame);
            let token = Tag::new(Op::Pipeline, 0, 0).encode();
            cx.set_timer(self.cfg.rx_pipeline, token);
        }
        debug_assert!(self.rx_conserved(), "{:?}", self.counters);
    }

    fn port_ready(&mut self, cx: &mut DeviceCtx<'_>, _port: usize) {
        self.tx_port_ready(cx);
    }

    fn timer(&mut self, cx: &mut DeviceCtx<'_>, token: u64) {
        match Tag::decode(token) {
            Some(Tag {
                op: Op::WriteBackFlush,
                queue,
                seq,
            }) => self.rx_flush_due(cx, queue, seq),
            Some(Tag {
                op: Op::Pipeline, ..
            }) => {
                if let Some(frame) = self.pipeline.pop_front() {
                    self.rx_accept(cx, frame);
                }
            }
            _ => self.counters.inc("stale_completions"),
        }
        debug_assert!(self.rx_conserved(), "{:?}", self.counters);
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}
