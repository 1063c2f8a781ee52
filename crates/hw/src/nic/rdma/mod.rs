//! An RDMA NIC in the shape of a ConnectX-5 serving unreliable-datagram
//! (UD) queue pairs over RoCEv2: the kernel-bypass baseline Accio compares
//! against (§2.3, §8.3–§8.6).
//!
//! Software's side is verbs-shaped. A queue pair (QP) is a send queue and
//! a receive queue of work queue entries (WQEs, [`wqe`]) in host memory
//! and a completion queue (CQ) the NIC writes completion entries (CQEs)
//! into; software posts WQEs by writing them into the ring and ringing the
//! QP's doorbell by MMIO ([`regs`]: one page per QP, so the OS maps one
//! QP's doorbells into exactly one process), and learns of completions by
//! polling the CQ's memory (an owner bit flips on every pass). Buffers are
//! named by bus address and the local key of a memory region registered
//! with the NIC ([`mr`]); a WQE naming memory its QP's protection domain
//! did not register completes with a protection error and moves no byte.
//!
//! The NIC's side. A QP's context (ring addresses and sizes, protection
//! domain, queue key: [`context`]) lives in a table in host memory that
//! the OS fills; the NIC holds a few contexts on chip ([`qp_cache`]) and
//! fetches any other by a DMA read before it serves the QP. Transmit
//! ([`tx`]): a send-queue doorbell queues the QP; the engine reads the
//! WQE, checks its region, reads the message, builds the RoCEv2 frame
//! ([`transport`]), sends it after its pipeline latency and writes the
//! send's CQE. Receive ([`rx`]): a RoCEv2 frame for a QP of this NIC waits
//! out the receive pipeline, then the engine reads the QP's next receive
//! WQE (a UD receive consumes one; with none posted the datagram is
//! dropped, as UD does), writes the 40-byte GRH and the message into the
//! buffer and then the CQE behind it on the same posted-write path, so
//! software never sees a CQE before its bytes.
//!
//! Invariants, tested:
//! * receive conservation: `rx_frames == rx_delivered + rx_error_completions
//!   + Σ drop.rx_*`;
//! * transmit conservation: every send WQE the engine takes ends in one
//!   completion or a counted `drop.tx_*` (its QP's context could not be
//!   read), and every completion is written (`cqes`) or counted
//!   (`drop.cq_overrun`, `dma_errors.cqe`);
//! * the NIC never writes outside a receive buffer its QP's domain
//!   registered, never reads outside a registered send buffer;
//! * at most `qp_cache_entries` contexts are on chip;
//! * bad configuration is an error; bad register writes, malformed WQEs
//!   and refused or faulting DMA are counted, never panics.
//!
//! Simplifications, documented where they act: UD only (no reliable
//! connection, no RDMA READ/WRITE); every send is signalled; each engine
//! serves up to `processing_units` requests at once, one per QP (the
//! NIC's processing units, their count an assumption); WQEs are always
//! fetched by DMA (mlx5's BlueFlame, which writes a small WQE through the
//! doorbell itself, is not modelled, nor is inline data); receive WQEs
//! are read when a message arrives, not prefetched; the producer and consumer indices
//! stay on chip for every QP while the rest of the context is cached.

pub mod context;
pub mod mr;
pub mod qp_cache;
pub mod regs;
mod rx;
pub mod transport;
mod tx;
pub mod wqe;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use nextio_engine::Counters;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::device::{BarSpec, Device, DeviceCtx, DmaFault, Requester};
use crate::packet::Frame;

pub use context::{CONTEXT_BYTES, QpContext};
pub use mr::MemoryRegion;
pub use regs::{DOORBELL_PAGE_BYTES, Doorbell};
pub use transport::{GRH_BYTES, ROCE_UDP_PORT};
pub use wqe::{
    CQE_BYTES, Cqe, CqeOpcode, RECV_WQE_BYTES, RecvWqe, SEND_WQE_BYTES, SendWqe, UdAddress, status,
};

/// The first QP number software may have (0 and 1 are InfiniBand's
/// special management QPs, never handed out).
pub const FIRST_QPN: u32 = 2;

/// Static configuration: a preset's `[nic.rdma]` (where each value's
/// source is) and the addresses the host builder gives the port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdmaNicConfig {
    /// The port's MAC and IPv4 address (the RoCEv2 GID).
    #[serde(skip)]
    pub mac: [u8; 6],
    #[serde(skip, default = "unspecified_ip")]
    pub ip: Ipv4Addr,
    /// Most QPs (the queue-pair limit); also sizes the doorbell BAR.
    pub max_qps: u32,
    /// QP contexts held on chip.
    pub qp_cache_entries: usize,
    /// Most registered memory regions.
    pub max_memory_regions: usize,
    /// Received frames that may wait for the receive engine; more are dropped.
    pub rx_queue_frames: usize,
    /// Work requests each engine (transmit, receive) serves at once, at
    /// most one per QP.
    pub processing_units: usize,
    /// Time from a send's message read to its first bit on the port.
    pub tx_pipeline_ps: u64,
    /// Time from a frame's last bit in to the receive engine.
    pub rx_pipeline_ps: u64,
}

fn unspecified_ip() -> Ipv4Addr {
    Ipv4Addr::UNSPECIFIED
}

impl Default for RdmaNicConfig {
    /// The root preset's RDMA NIC, with no addresses yet.
    fn default() -> Self {
        nextio_presets::root_section("nic.rdma")
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RdmaNicError {
    #[error("invalid RDMA NIC configuration: {0}")]
    Config(String),
    #[error("the queue-pair limit ({0}) is reached")]
    QpLimit(u32),
    #[error("no such queue pair {0}")]
    NoQp(u32),
    #[error("the memory region table is full or the region is invalid")]
    MemoryRegion,
    #[error("the QP context table at {0:#x} is not 64-byte aligned or too small")]
    ContextTable(u64),
}

/// What the NIC keeps on chip for every QP: its queues' indices.
#[derive(Clone, Copy, Debug, Default)]
struct QpState {
    sq_producer: u64,
    sq_next: u64,
    rq_producer: u64,
    rq_next: u64,
    cq_tail: u64,
    cq_head: u64,
    /// In the transmit engine's queue.
    queued: bool,
    /// A send WQE of this QP is being served (one at a time per QP).
    tx_busy: bool,
}

/// Which engine waits for a context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    Tx,
    Rx,
}

/// What a DMA or timer is for: a kind in the top 4 bits, the job's serial
/// number below (one job per engine at a time, so a stale answer — of a
/// job already ended — is recognised and counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    TxWqe(u64),
    TxData(u64),
    Context(Engine, u64),
    RxWqe(u64),
    /// A posted write of received data.
    RxData,
    /// A posted CQE write.
    Cqe,
    /// Timers: job `seq`'s frame through the transmit pipeline; the
    /// oldest frame through the receive pipeline.
    TxPipeline(u64),
    RxPipeline,
}

impl Tag {
    const KIND_SHIFT: u32 = 60;
    const INDEX_MASK: u64 = (1 << Self::KIND_SHIFT) - 1;

    fn encode(self) -> u64 {
        let (kind, index) = match self {
            Tag::TxWqe(s) => (0, s),
            Tag::TxData(s) => (1, s),
            Tag::Context(Engine::Tx, s) => (2, s),
            Tag::Context(Engine::Rx, s) => (3, s),
            Tag::RxWqe(s) => (4, s),
            Tag::RxData => (5, 0),
            Tag::Cqe => (6, 0),
            Tag::TxPipeline(s) => (7, s),
            Tag::RxPipeline => (8, 0),
        };
        (kind << Self::KIND_SHIFT) | (index & Self::INDEX_MASK)
    }

    fn decode(tag: u64) -> Option<Tag> {
        let s = tag & Self::INDEX_MASK;
        Some(match tag >> Self::KIND_SHIFT {
            0 => Tag::TxWqe(s),
            1 => Tag::TxData(s),
            2 => Tag::Context(Engine::Tx, s),
            3 => Tag::Context(Engine::Rx, s),
            4 => Tag::RxWqe(s),
            5 => Tag::RxData,
            6 => Tag::Cqe,
            7 => Tag::TxPipeline(s),
            8 => Tag::RxPipeline,
            _ => return None,
        })
    }
}

/// The RDMA NIC.
pub struct RdmaNic {
    cfg: RdmaNicConfig,
    qps: BTreeMap<u32, QpState>,
    /// Bus address and entries of the context table in host memory.
    context_table: Option<(u64, u32)>,
    cache: qp_cache::QpCache,
    mrs: mr::MrTable,
    tx: tx::TxEngine,
    rx: rx::RxEngine,
    counters: Counters,
}

impl RdmaNic {
    pub fn new(cfg: RdmaNicConfig) -> Result<RdmaNic, RdmaNicError> {
        if cfg.max_qps <= FIRST_QPN || cfg.max_qps > transport::QPN_MASK {
            return Err(RdmaNicError::Config(format!(
                "{} QPs: needs more than {FIRST_QPN} and at most 2^24",
                cfg.max_qps
            )));
        }
        if cfg.qp_cache_entries == 0
            || cfg.rx_queue_frames == 0
            || cfg.max_memory_regions == 0
            || cfg.processing_units == 0
        {
            return Err(RdmaNicError::Config(
                "the context cache, receive queue, region table and engines need room for one"
                    .into(),
            ));
        }
        Ok(RdmaNic {
            cache: qp_cache::QpCache::new(cfg.qp_cache_entries),
            cfg,
            qps: BTreeMap::new(),
            context_table: None,
            mrs: mr::MrTable::default(),
            tx: tx::TxEngine::default(),
            rx: rx::RxEngine::default(),
            counters: Counters::new(),
        })
    }

    pub fn config(&self) -> &RdmaNicConfig {
        &self.cfg
    }

    /// Tell the NIC where the OS keeps the QP contexts: `entries` of
    /// [`CONTEXT_BYTES`] at bus address `base`, indexed by QP number.
    pub fn set_context_table(&mut self, base: u64, entries: u32) -> Result<(), RdmaNicError> {
        let fits = base.checked_add(entries as u64 * CONTEXT_BYTES).is_some();
        if !base.is_multiple_of(CONTEXT_BYTES) || entries < self.cfg.max_qps || !fits {
            return Err(RdmaNicError::ContextTable(base));
        }
        self.context_table = Some((base, entries));
        Ok(())
    }

    /// Bus address of QP `qpn`'s context entry.
    pub fn context_address(&self, qpn: u32) -> Option<u64> {
        let (base, entries) = self.context_table?;
        (qpn < entries).then(|| base + qpn as u64 * CONTEXT_BYTES)
    }

    /// A new QP number (the OS writes its context before ringing anything).
    pub fn create_qp(&mut self) -> Result<u32, RdmaNicError> {
        let qpn = (FIRST_QPN..self.cfg.max_qps)
            .find(|q| !self.qps.contains_key(q))
            .ok_or(RdmaNicError::QpLimit(self.cfg.max_qps))?;
        self.qps.insert(qpn, QpState::default());
        self.counters.inc("qps_created");
        Ok(qpn)
    }

    /// Destroy QP `qpn`: its doorbells are ignored and its frames dropped
    /// from now on.
    pub fn destroy_qp(&mut self, qpn: u32) -> Result<(), RdmaNicError> {
        self.qps.remove(&qpn).ok_or(RdmaNicError::NoQp(qpn))?;
        self.cache.invalidate(qpn);
        Ok(())
    }

    /// QPs that exist.
    pub fn qps(&self) -> usize {
        self.qps.len()
    }

    /// Register `region`; its local key.
    pub fn register_mr(&mut self, region: MemoryRegion) -> Result<u32, RdmaNicError> {
        self.mrs
            .register(region, self.cfg.max_memory_regions)
            .ok_or(RdmaNicError::MemoryRegion)
    }

    pub fn deregister_mr(&mut self, lkey: u32) -> bool {
        self.mrs.deregister(lkey)
    }

    /// Counters, the context cache's included.
    pub fn all_counters(&self) -> Counters {
        let mut c = self.counters.clone();
        c.add("qp_cache.hits", self.cache.hits);
        c.add("qp_cache.misses", self.cache.misses);
        c.add("qp_cache.evictions", self.cache.evictions);
        c
    }

    /// QP `qpn`'s context if it is on chip; otherwise a fetch is issued
    /// for `engine`'s job `seq` and `None` returned (the engine resumes in
    /// [`RdmaNic::context_fetched`]).
    fn context(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        qpn: u32,
        engine: Engine,
        seq: u64,
    ) -> Result<Option<QpContext>, ()> {
        if let Some(c) = self.cache.lookup(qpn) {
            return Ok(Some(c));
        }
        let Some(addr) = self.context_address(qpn) else {
            self.counters.inc("drop.no_context_table");
            return Err(());
        };
        let tag = Tag::Context(engine, seq).encode();
        match cx.dma_read(addr, CONTEXT_BYTES, "qp-context", tag) {
            Ok(()) => Ok(None),
            Err(_) => {
                self.counters.inc("dma_errors.context");
                Err(())
            }
        }
    }

    /// A context read for `engine`'s job `seq` came back (`None`: it
    /// faulted or was not a valid context).
    fn context_fetched(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        engine: Engine,
        seq: u64,
        data: Option<&[u8]>,
    ) {
        let ctx = data.and_then(QpContext::decode);
        match engine {
            Engine::Tx => self.tx_context(cx, seq, ctx),
            Engine::Rx => self.rx_context(cx, seq, ctx),
        }
    }

    /// Write completion `cqe` into QP `qpn`'s CQ.
    fn complete(&mut self, cx: &mut DeviceCtx<'_>, qpn: u32, ctx: &QpContext, mut cqe: Cqe) {
        self.counters.inc("completions");
        if cqe.status != status::SUCCESS {
            self.counters.inc("error_completions");
        }
        let Some(st) = self.qps.get_mut(&qpn) else {
            self.counters.inc("drop.cqe_qp_destroyed");
            return;
        };
        let entries = ctx.cq_entries as u64;
        if st.cq_tail - st.cq_head >= entries {
            self.counters.inc("drop.cq_overrun");
            return;
        }
        cqe.qpn = qpn;
        cqe.owner = Cqe::owner_for(st.cq_tail, ctx.cq_entries);
        let addr = ctx.cq + (st.cq_tail % entries) * CQE_BYTES;
        st.cq_tail += 1;
        match cx.dma_write(addr, &cqe.encode(), "completion", Tag::Cqe.encode()) {
            Ok(_) => self.counters.inc("cqes"),
            Err(_) => self.counters.inc("dma_errors.cqe"),
        }
    }

    fn doorbell(&mut self, cx: &mut DeviceCtx<'_>, qpn: u32, reg: Doorbell, value: u64) {
        let Some(st) = self.qps.get_mut(&qpn) else {
            self.counters.inc("bad_register_writes");
            return;
        };
        match reg {
            Doorbell::SendProducer if value >= st.sq_producer => {
                st.sq_producer = value;
                self.counters.inc("doorbells.send");
                self.tx_doorbell(cx, qpn);
            }
            Doorbell::RecvProducer if value >= st.rq_producer => {
                st.rq_producer = value;
                self.counters.inc("doorbells.recv");
            }
            Doorbell::CqConsumer if value >= st.cq_head && value <= st.cq_tail => {
                st.cq_head = value;
            }
            _ => self.counters.inc("bad_register_writes"),
        }
    }
}

impl Device for RdmaNic {
    fn name(&self) -> &'static str {
        "rdma-nic"
    }

    fn bars(&self) -> Vec<BarSpec> {
        vec![BarSpec::new(regs::bar_bytes(self.cfg.max_qps))]
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
        let reg = (bar == 0)
            .then(|| regs::decode(offset, self.cfg.max_qps))
            .flatten();
        let value = <[u8; regs::REGISTER_BYTES]>::try_from(data)
            .ok()
            .map(u64::from_le_bytes);
        match (reg, value) {
            (Some((qpn, reg)), Some(v)) => self.doorbell(cx, qpn, reg, v),
            _ => self.counters.inc("bad_register_writes"),
        }
    }

    /// Doorbells are write-only: reads return zeros.
    fn bar_read(
        &mut self,
        _cx: &mut DeviceCtx<'_>,
        _from: Requester,
        _bar: u8,
        _offset: u64,
        _out: &mut [u8],
    ) {
    }

    fn dma_read_done(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, data: &[u8]) {
        match Tag::decode(tag) {
            Some(Tag::TxWqe(s)) => self.tx_wqe_read(cx, s, Some(data)),
            Some(Tag::TxData(s)) => self.tx_data_read(cx, s, Some(data)),
            Some(Tag::Context(e, s)) => self.context_fetched(cx, e, s, Some(data)),
            Some(Tag::RxWqe(s)) => self.rx_wqe_read(cx, s, Some(data)),
            _ => self.counters.inc("unexpected_dma_events"),
        }
    }

    fn dma_fault(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, _fault: DmaFault) {
        match Tag::decode(tag) {
            Some(Tag::TxWqe(s)) => {
                self.counters.inc("dma_faults.tx_wqe");
                self.tx_wqe_read(cx, s, None)
            }
            Some(Tag::TxData(s)) => {
                self.counters.inc("dma_faults.tx_data");
                self.tx_data_read(cx, s, None)
            }
            Some(Tag::Context(e, s)) => {
                self.counters.inc("dma_faults.context");
                self.context_fetched(cx, e, s, None)
            }
            Some(Tag::RxWqe(s)) => {
                self.counters.inc("dma_faults.rx_wqe");
                self.rx_wqe_read(cx, s, None)
            }
            // A posted write is gone once issued; the delivery or CQE it
            // carried was counted, the fault is counted beside it.
            Some(Tag::RxData) => self.counters.inc("dma_faults.rx_data"),
            Some(Tag::Cqe) => self.counters.inc("dma_faults.cqe"),
            _ => self.counters.inc("unexpected_dma_events"),
        }
    }

    fn frame(&mut self, cx: &mut DeviceCtx<'_>, _port: usize, frame: Frame) {
        self.receive(cx, frame);
    }

    fn port_ready(&mut self, cx: &mut DeviceCtx<'_>, _port: usize) {
        self.tx_send(cx);
    }

    fn timer(&mut self, cx: &mut DeviceCtx<'_>, token: u64) {
        match Tag::decode(token) {
            Some(Tag::TxPipeline(s)) => self.tx_pipeline_done(cx, s),
            Some(Tag::RxPipeline) => self.rx_pipeline_done(cx),
            _ => self.counters.inc("unexpected_timers"),
        }
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for t in [
            Tag::TxWqe(5),
            Tag::TxData(1 << 40),
            Tag::Context(Engine::Tx, 3),
            Tag::Context(Engine::Rx, 4),
            Tag::RxWqe(9),
            Tag::RxData,
            Tag::Cqe,
            Tag::TxPipeline(8),
            Tag::RxPipeline,
        ] {
            assert_eq!(Tag::decode(t.encode()), Some(t));
        }
        assert_eq!(Tag::decode(u64::MAX), None);
    }

    #[test]
    fn bad_configuration_and_limits_are_errors() {
        let bad = |cfg: RdmaNicConfig| matches!(RdmaNic::new(cfg), Err(RdmaNicError::Config(_)));
        assert!(bad(RdmaNicConfig {
            max_qps: 2,
            ..RdmaNicConfig::default()
        }));
        assert!(bad(RdmaNicConfig {
            qp_cache_entries: 0,
            ..RdmaNicConfig::default()
        }));
        let mut nic = RdmaNic::new(RdmaNicConfig {
            max_qps: 4,
            ..RdmaNicConfig::default()
        })
        .unwrap();
        assert_eq!(nic.create_qp(), Ok(2));
        assert_eq!(nic.create_qp(), Ok(3));
        assert_eq!(nic.create_qp(), Err(RdmaNicError::QpLimit(4)));
        nic.destroy_qp(2).unwrap();
        assert_eq!(nic.destroy_qp(2), Err(RdmaNicError::NoQp(2)));
        assert_eq!(nic.create_qp(), Ok(2));
        assert_eq!(
            nic.set_context_table(65, 4),
            Err(RdmaNicError::ContextTable(65))
        );
        assert_eq!(
            nic.set_context_table(0, 3),
            Err(RdmaNicError::ContextTable(0))
        );
        nic.set_context_table(4096, 4).unwrap();
        assert_eq!(nic.context_address(3), Some(4096 + 3 * 64));
        assert_eq!(nic.context_address(4), None);
        assert_eq!(nic.bars(), vec![BarSpec { bytes: 16384 }]);
    }
}
