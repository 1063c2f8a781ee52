//! The user-space DMA engine: a DSA-like data-movement device whose work
//! queues are mapped into processes, which submit 64-byte descriptors by
//! a store to a portal (MOVDIR64B to a dedicated queue, ENQCMD to a
//! shared one) with no system call. The engine translates the virtual
//! addresses of the submitting process (the page table the OS bound to
//! its PASID) through its ATC and the IOMMU, reads and writes real bytes
//! through the fabric, and reports each descriptor in a completion record
//! written to the submitter's memory, optionally followed by an MSI-X
//! message (which the OS may forward to a thread as a user interrupt).
//!
//! Parts: [`layout`] (descriptor and record, shared with the driver),
//! [`wq`] (work queues), [`caps`] (capabilities naming other address
//! spaces), `atc` (the translation cache), `engine` (the pipeline),
//! [`ops`] (the byte work: fill, compare, CRC-32C).
//!
//! Operations: no-op, batch, memmove (also device to device, when its
//! addresses are another device's BAR), fill, compare, CRC generation.
//!
//! Invariants (conservation): every 64-byte write to a portal is accepted
//! into a queue, refused with retry (shared queues: the submitter keeps
//! it), or dropped under one `drop.*` reason; every accepted descriptor —
//! and every descriptor of a fetched batch — ends exactly once in
//! `completed`, `faulted.<reason>` or `rejected.<reason>`. A descriptor
//! that faults or is rejected before moving data moves no byte; a page
//! fault moves exactly the bytes before the faulting page.
//!
//! The OS configures the device (queues, capabilities, ATC
//! invalidations) through the methods of [`Udma`] — configuration
//! writes, not timed.

mod atc;
pub mod caps;
mod engine;
pub mod layout;
pub mod ops;
pub mod wq;

use std::collections::VecDeque;

use nextio_engine::{Counters, Duration, SimRng};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::device::{BarSpec, Device, DeviceCtx, DmaFault, Requester};
use crate::fabric::Space;
use crate::mem::{PAGE_BYTES, TlbConfig, TlbStats};

pub use caps::{CapFault, Capability};
pub use layout::{Descriptor, Record};
pub use wq::{WqConfig, WqMode};

use caps::CapTable;
use layout::DESCRIPTOR_BYTES;
use wq::{Queued, WorkQueue};

/// A completion-latency distribution for no-op descriptors: the xUI
/// paper's offload device (§5.4), whose work is only a latency — a mean
/// (2 µs or 20 µs in the paper) plus uniform noise of ± `noise`, never
/// below `floor`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyDist {
    pub mean: Duration,
    /// Half-width of the uniform noise added to the mean.
    pub noise: Duration,
    /// Lower bound (a descriptor cannot complete before the engine reads it).
    pub floor: Duration,
}

impl LatencyDist {
    pub fn new(mean: Duration, noise: Duration) -> Result<LatencyDist, UdmaError> {
        if mean.0 == 0 {
            return Err(UdmaError::ZeroMean);
        }
        Ok(LatencyDist {
            mean,
            noise,
            floor: UdmaCosts::default().noop_floor,
        })
    }
    pub fn sample(&self, rng: &mut SimRng) -> Duration {
        let u = rng.unit() * 2.0 - 1.0;
        let ps = self.mean.0 as f64 + u * self.noise.0 as f64;
        Duration((ps.max(self.floor.0 as f64)) as u64)
    }
}

/// Configuration errors.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum UdmaError {
    #[error("mean completion latency must be positive")]
    ZeroMean,
    #[error("the engine needs 1..={MAX_WQS} work queues and 1..={MAX_ENGINES} engines")]
    Shape,
    #[error("no work queue {0}")]
    NoSuchQueue(usize),
    #[error("a work queue needs 1..=128 entries, transfers of 1..=16 MiB, batches of 2..=1024")]
    BadQueue,
    #[error("PASID {0} is out of range (1..0xffff)")]
    BadPasid(u32),
    #[error("the capability table is full")]
    CapTableFull,
    #[error("ATC: {0}")]
    Atc(String),
    #[error(
        "the datapath needs buffers of 64..=4096 B, requests of 64..=4096 B, and read buffers for two requests (a compare reads two operands at once)"
    )]
    Datapath,
}

/// Most work queues (DSA 1.0 has 8).
pub const MAX_WQS: usize = 8;
/// Most engines (DSA 1.0 has 4).
pub const MAX_ENGINES: usize = 4;

/// The engine's primitive costs: a preset's `[devices.udma]`, where each
/// value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdmaCosts {
    /// An engine's own time to decode and dispatch a descriptor.
    #[serde(rename = "dispatch_ps")]
    pub dispatch: Duration,
    /// No latency-only (no-op) descriptor completes earlier than this
    /// after submission.
    #[serde(rename = "noop_floor_ps")]
    pub noop_floor: Duration,
    /// The address translation cache's geometry.
    pub atc: TlbConfig,
    /// The engine's own datapath: its read buffers and read requests.
    pub datapath: Datapath,
}

/// The engine's datapath (see `engine`): the read buffers every read's
/// data is held in from the request until it is consumed (written out,
/// compared, folded into a CRC), shared by all engines of the device, and
/// the size of one read request. The bytes a device can have in flight
/// are `read_buffers × read_buffer_bytes`; divided by a read's round trip
/// that is its copy bandwidth — nothing else in the engine caps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datapath {
    pub read_buffers: u32,
    pub read_buffer_bytes: u32,
    pub read_request_bytes: u32,
}

impl Datapath {
    /// Buffers one read of `bytes` holds.
    pub fn buffers_for(&self, bytes: u64) -> u64 {
        bytes.div_ceil(self.read_buffer_bytes as u64)
    }
}

impl Default for UdmaCosts {
    /// The root preset's engine.
    fn default() -> Self {
        nextio_presets::root_section("devices.udma")
    }
}

/// The device's shape and primitive costs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UdmaConfig {
    pub wqs: usize,
    /// Engines, each working on one descriptor at a time. DSA 1.0 has 4
    /// (`dsa-perf-micros` configures "4 engines" per group).
    pub engines: usize,
    /// An engine's own time to decode and dispatch a descriptor, beyond
    /// its translations and transfers ([`UdmaCosts::dispatch`]).
    pub dispatch_ps: u64,
    /// No-op descriptors take this latency instead (the xUI paper's
    /// accelerator); `None`: a no-op only writes its record.
    pub noop_latency: Option<LatencyDist>,
    /// The engine's read buffers and read request size.
    pub datapath: Datapath,
}

impl Default for UdmaConfig {
    fn default() -> Self {
        UdmaConfig {
            wqs: MAX_WQS,
            engines: MAX_ENGINES,
            dispatch_ps: UdmaCosts::default().dispatch.0,
            noop_latency: None,
            datapath: UdmaCosts::default().datapath,
        }
    }
}

/// The device.
pub struct Udma {
    cfg: UdmaConfig,
    wqs: Vec<WorkQueue>,
    /// Which queues the OS enabled.
    enabled: Vec<bool>,
    caps: CapTable,
    atc: atc::Atc,
    jobs: Vec<Option<engine::Job>>,
    batch_queue: VecDeque<engine::BatchItem>,
    /// Engines working.
    busy: usize,
    /// Read buffers not holding a read's data.
    free_buffers: u64,
    /// Whether a timer to issue reads is already set (for the earliest
    /// piece whose translation is not back yet), and for when.
    pump_at: Option<nextio_engine::Time>,
    /// The next queue round-robin arbitration looks at.
    rr: usize,
    rng: SimRng,
    counters: Counters,
}

impl Udma {
    pub fn new(cfg: UdmaConfig, rng: SimRng) -> Result<Udma, UdmaError> {
        if !(1..=MAX_WQS).contains(&cfg.wqs) || !(1..=MAX_ENGINES).contains(&cfg.engines) {
            return Err(UdmaError::Shape);
        }
        let dp = cfg.datapath;
        if !(64..=4096).contains(&dp.read_buffer_bytes)
            || !(64..=4096).contains(&dp.read_request_bytes)
            || (dp.read_buffers as u64) < 2 * dp.buffers_for(dp.read_request_bytes as u64)
        {
            return Err(UdmaError::Datapath);
        }
        Ok(Udma {
            free_buffers: dp.read_buffers as u64,
            wqs: (0..cfg.wqs)
                .map(|_| WorkQueue::new(WqConfig::dedicated(None)))
                .collect(),
            enabled: vec![false; cfg.wqs],
            cfg,
            caps: CapTable::default(),
            atc: atc::Atc::new(UdmaCosts::default().atc).map_err(UdmaError::Atc)?,
            jobs: Vec::new(),
            batch_queue: VecDeque::new(),
            busy: 0,
            pump_at: None,
            rr: 0,
            rng,
            counters: Counters::new(),
        })
    }

    /// Byte offset of queue `wq`'s portal page in BAR 0.
    pub fn portal_offset(wq: usize) -> u64 {
        wq as u64 * PAGE_BYTES
    }

    // ---- the OS's configuration interface -------------------------------

    /// Configure and enable queue `wq` (WQCFG, then enable).
    pub fn configure_wq(&mut self, wq: usize, cfg: WqConfig) -> Result<(), UdmaError> {
        if wq >= self.wqs.len() {
            return Err(UdmaError::NoSuchQueue(wq));
        }
        if !(1..=128).contains(&cfg.size)
            || !(1..=16 << 20).contains(&cfg.max_xfer_bytes)
            || !(2..=1024).contains(&cfg.max_batch)
        {
            return Err(UdmaError::BadQueue);
        }
        if let Some(p) = cfg.pasid {
            check_pasid(p)?;
        }
        self.wqs[wq].cfg = cfg;
        self.enabled[wq] = true;
        Ok(())
    }

    /// Disable queue `wq`; descriptors still queued in it stay and run.
    pub fn disable_wq(&mut self, wq: usize) {
        if let Some(e) = self.enabled.get_mut(wq) {
            *e = false;
        }
    }

    pub fn wq_config(&self, wq: usize) -> Option<WqConfig> {
        self.wqs.get(wq).map(|w| w.cfg)
    }

    /// Write a capability table entry; returns its handle.
    pub fn grant(&mut self, cap: Capability) -> Result<u32, UdmaError> {
        check_pasid(cap.owner)?;
        self.caps.grant(cap).ok_or(UdmaError::CapTableFull)
    }

    /// Clear the entry `handle` names (descriptors not yet started that
    /// use it will fault); false if it was not live.
    pub fn revoke(&mut self, handle: u32) -> bool {
        self.caps.revoke(handle)
    }

    /// ATS invalidation of `[va, va + len)` in `space`.
    pub fn invalidate_atc(&mut self, space: Space, va: u64, len: u64) {
        self.atc.invalidate(space, va, len);
    }

    /// ATS invalidation of everything cached for `space`.
    pub fn invalidate_atc_space(&mut self, space: Space) {
        self.atc.invalidate_space(space);
    }

    // ---- inspection ------------------------------------------------------

    pub fn atc_stats(&self) -> TlbStats {
        self.atc.stats()
    }

    /// Descriptors started and not finished (batches included).
    pub fn in_flight(&self) -> usize {
        self.jobs.iter().flatten().count()
    }

    /// Read buffers free now (all of them when the engine is idle).
    pub fn free_read_buffers(&self) -> u64 {
        self.free_buffers
    }

    /// Descriptors waiting in queues or fetched batches.
    pub fn queued(&self) -> usize {
        self.wqs.iter().map(|w| w.queue.len()).sum::<usize>() + self.batch_queue.len()
    }

    /// Queue `wq`'s occupancy.
    pub fn wq_len(&self, wq: usize) -> usize {
        self.wqs.get(wq).map_or(0, |w| w.queue.len())
    }

    // ---- submission ------------------------------------------------------

    /// Which queue a portal write at `offset` is for, if it is a whole
    /// descriptor at a 64-byte slot of an enabled queue's portal.
    fn portal(&mut self, bar: u8, offset: u64, data: &[u8]) -> Option<usize> {
        if bar != 0 || data.len() != DESCRIPTOR_BYTES || !offset.is_multiple_of(64) {
            self.counters.inc("drop.bad_portal_write");
            return None;
        }
        let wq = (offset / PAGE_BYTES) as usize;
        if !self.enabled.get(wq).copied().unwrap_or(false) {
            self.counters.inc("drop.queue_disabled");
            return None;
        }
        Some(wq)
    }

    fn accept(&mut self, cx: &mut DeviceCtx<'_>, wq: usize, data: &[u8], pasid: Option<u32>) {
        let mut desc = [0u8; DESCRIPTOR_BYTES];
        desc.copy_from_slice(data);
        self.wqs[wq].queue.push_back(Queued { desc, pasid, wq });
        self.counters.inc("accepted");
        self.dispatch(cx);
    }
}

fn check_pasid(p: u32) -> Result<(), UdmaError> {
    if p == 0 || p >= 0xffff {
        return Err(UdmaError::BadPasid(p));
    }
    Ok(())
}

impl Device for Udma {
    fn name(&self) -> &'static str {
        "udma"
    }

    fn bars(&self) -> Vec<BarSpec> {
        // One 4 KiB portal page per queue, so the OS can map each queue
        // into one process (DSA spec §3.3: portals are page granular).
        vec![BarSpec::new(self.wqs.len() as u64 * PAGE_BYTES)]
    }

    /// MOVDIR64B: a posted 64-byte write to a dedicated queue's portal.
    fn bar_write(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        _from: Requester,
        bar: u8,
        offset: u64,
        data: &[u8],
    ) {
        self.counters.inc("portal_writes");
        let Some(wq) = self.portal(bar, offset, data) else {
            return;
        };
        let q = &self.wqs[wq];
        if q.cfg.mode == WqMode::Shared {
            // A shared queue only takes ENQCMD: a posted write there is
            // dropped (DSA treats it as an error).
            self.counters.inc("drop.movdir64b_to_shared");
            return;
        }
        if q.full() {
            self.counters.inc("drop.dedicated_full");
            return;
        }
        let pasid = q.cfg.pasid;
        self.accept(cx, wq, data, pasid);
    }

    /// ENQCMD: a shared queue takes the descriptor, with the PASID the
    /// CPU stamped into it, or answers retry.
    fn bar_enqueue(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        _from: Requester,
        bar: u8,
        offset: u64,
        data: &[u8],
    ) -> bool {
        self.counters.inc("portal_writes");
        let Some(wq) = self.portal(bar, offset, data) else {
            return false;
        };
        let q = &self.wqs[wq];
        if q.cfg.mode == WqMode::Dedicated {
            self.counters.inc("drop.enqcmd_to_dedicated");
            return false;
        }
        if q.full() {
            self.counters.inc("retry");
            return false;
        }
        let pasid = layout::Descriptor::new(data).map(|d| d.pasid());
        if pasid.is_none_or(|p| check_pasid(p).is_err()) {
            self.counters.inc("drop.no_pasid");
            return false;
        }
        self.accept(cx, wq, data, pasid);
        true
    }

    fn bar_read(&mut self, _: &mut DeviceCtx<'_>, _: Requester, _: u8, _: u64, _: &mut [u8]) {}

    fn dma_read_done(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, data: &[u8]) {
        self.read_done(cx, tag, data);
    }

    fn dma_fault(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, _fault: DmaFault) {
        self.transfer_fault(cx, tag);
    }

    fn timer(&mut self, cx: &mut DeviceCtx<'_>, token: u64) {
        if token & 0xff == engine::PUMP {
            self.pump_at = None;
            self.pump(cx);
        } else {
            self.data_phase(cx, (token >> 8) as usize);
        }
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}
