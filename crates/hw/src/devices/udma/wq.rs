//! Work queues: where submitted descriptors wait for an engine.
//!
//! A *dedicated* queue belongs to one client: the OS configures the PASID
//! its descriptors run in (or none: bus addresses of the device's
//! domain), and the client submits with MOVDIR64B, a posted write the
//! device cannot refuse — so the client must never overfill it; a
//! descriptor arriving at a full dedicated queue is dropped and counted,
//! as DSA records it in its software error register. A *shared* queue
//! takes ENQCMD from any number of clients: each command carries its
//! submitter's PASID (stamped by the CPU), and a full queue answers
//! *retry*, so nothing is lost.
//!
//! Invariant: a queue never holds more than its configured size.

use std::collections::VecDeque;

use super::layout::DESCRIPTOR_BYTES;

/// How clients submit to a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WqMode {
    /// One client, MOVDIR64B, PASID from the queue's configuration.
    Dedicated,
    /// Many clients, ENQCMD, PASID from each command.
    Shared,
}

/// A queue's configuration (DSA's WQCFG, as far as the model needs it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WqConfig {
    pub mode: WqMode,
    /// Entries. DSA's queues share 128 entries per device
    /// (`dsa-perf-micros` sample configurations: "max size (128)").
    pub size: usize,
    /// Dedicated queues: the PASID descriptors run in, or `None` for the
    /// device's own IOMMU domain (bus addresses). Ignored by shared ones.
    pub pasid: Option<u32>,
    /// Largest transfer a descriptor may ask for.
    pub max_xfer_bytes: u32,
    /// Most descriptors in one batch.
    pub max_batch: u32,
}

impl WqConfig {
    /// A dedicated queue of 128 entries running in `pasid`.
    pub fn dedicated(pasid: Option<u32>) -> WqConfig {
        WqConfig {
            mode: WqMode::Dedicated,
            size: 128,
            pasid,
            // Assumption: 2 MiB covers every transfer the experiments make
            // (DSA allows up to 2 GiB, configured per queue).
            max_xfer_bytes: 2 << 20,
            // DSA's largest batch is 1024 descriptors (DSA spec, GENCAP
            // maximum batch size).
            max_batch: 1024,
        }
    }
    /// A shared queue of 128 entries.
    pub fn shared() -> WqConfig {
        WqConfig {
            mode: WqMode::Shared,
            pasid: None,
            ..WqConfig::dedicated(None)
        }
    }
}

/// A descriptor waiting in a queue.
#[derive(Clone, Debug)]
pub(super) struct Queued {
    pub desc: [u8; DESCRIPTOR_BYTES],
    /// The PASID it runs in (`None`: the device's domain).
    pub pasid: Option<u32>,
    /// The queue it was submitted to.
    pub wq: usize,
}

/// One work queue.
pub(super) struct WorkQueue {
    pub cfg: WqConfig,
    pub queue: VecDeque<Queued>,
}

impl WorkQueue {
    pub fn new(cfg: WqConfig) -> WorkQueue {
        WorkQueue {
            cfg,
            queue: VecDeque::with_capacity(cfg.size),
        }
    }
    pub fn full(&self) -> bool {
        self.queue.len() >= self.cfg.size
    }
}
