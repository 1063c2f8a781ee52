//! Accelerators that compute on real bytes, behind the device API, each
//! with two interfaces over one compute engine:
//!
//! * a QAT-like command queue ([`cmdq`], thesis §2.1 Figure 1) for the
//!   CPU-mediated baseline and for Nagare's legacy adapters;
//! * a streaming input window (BAR1, thesis §4.2 "streaming buffer"): a
//!   producer pushes command messages ([`crate::nagare::layout`]: a
//!   64-byte header with the operation, the per-stream state and where the
//!   result goes, then the data) and the device pushes each result, as a
//!   data message, to the address the command names.
//!
//! What is computed is a [`Kernel`]: [`crypto::AesGcm`] (AES-128-GCM
//! decryption) or [`ml::Classifier`] (a fixed linear classifier). The
//! engine runs one job at a time, in the order inputs arrived, each for
//! the kernel's [`Kernel::cost`]; reads of later inputs overlap it.
//!
//! Invariants: every descriptor the tail hands over is completed exactly
//! once (also one whose input read faults or whose output does not fit:
//! the status says why), and every command message accepted yields one
//! result message; `accepted == completed + in flight`, and every push
//! that is not accepted is counted under a `drop.*` reason.

pub mod cmdq;
pub mod crypto;
pub mod ml;

use std::collections::{BTreeMap, VecDeque};

use nextio_engine::{Counters, Duration};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::device::{BarSpec, Device, DeviceCtx, DmaFault, Requester};
use crate::nagare::layout::{
    ENTRY_BYTES, MessageHeader, MessageKind, QUANTUM_BYTES, STATE_BYTES, message_bytes, status,
};

use cmdq::{DESCRIPTOR_BYTES, DONE, Descriptor, TAIL_REGISTER};

/// What an accelerator computes.
pub trait Kernel {
    /// The device's name.
    fn name(&self) -> &'static str;
    /// Run `op` on `input`: the output, or a [`status`] code.
    fn run(
        &mut self,
        op: u32,
        param: u64,
        state: &[u8; STATE_BYTES],
        input: &[u8],
    ) -> Result<Vec<u8>, u8>;
    /// How long the engine is busy with `input_bytes` of `op`.
    fn cost(&self, op: u32, input_bytes: u64) -> Duration;
}

/// Static configuration of an accelerator's interfaces: a preset's
/// `[accel]`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccelConfig {
    /// Bytes of the streaming input buffer (BAR1): pushes beyond what it
    /// holds are dropped.
    pub input_buffer_bytes: u64,
    /// Largest input or output of one job (a bad descriptor cannot make
    /// the model allocate more).
    pub max_job_bytes: u32,
}

impl Default for AccelConfig {
    /// The root preset's accelerator interfaces.
    fn default() -> Self {
        nextio_presets::root_section("accel")
    }
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AccelError {
    #[error("invalid accelerator configuration: {0}")]
    Config(String),
    #[error("a descriptor ring needs 2..=65536 entries, at a 64-byte aligned address")]
    BadRing,
}

/// Where a job came from, to say where its result goes.
#[derive(Clone, Copy, Debug)]
enum Origin {
    Queue { slot: u32, desc: Descriptor },
    Stream { header: MessageHeader },
}

struct Job {
    origin: Origin,
    input: Option<Vec<u8>>,
    /// Why it already failed (a faulting read): completed with this.
    failed: Option<u8>,
}

/// What a DMA of the device is for, in its tag: kind in the top bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    /// Descriptors from ring slot `first` on.
    Fetch {
        first: u32,
    },
    /// The input of job `job`.
    Input {
        job: u64,
    },
    Output,
    Completion,
}

impl Tag {
    const SHIFT: u32 = 60;
    fn encode(self) -> u64 {
        let (k, i) = match self {
            Tag::Fetch { first } => (0, first as u64),
            Tag::Input { job } => (1, job),
            Tag::Output => (2, 0),
            Tag::Completion => (3, 0),
        };
        (k << Self::SHIFT) | (i & ((1 << Self::SHIFT) - 1))
    }
    fn decode(t: u64) -> Option<Tag> {
        let i = t & ((1 << Self::SHIFT) - 1);
        match t >> Self::SHIFT {
            0 => u32::try_from(i).ok().map(|first| Tag::Fetch { first }),
            1 => Some(Tag::Input { job: i }),
            2 => Some(Tag::Output),
            3 => Some(Tag::Completion),
            _ => None,
        }
    }
}

/// An accelerator computing `K`.
pub struct Accelerator<K: Kernel> {
    kernel: K,
    cfg: AccelConfig,
    ring: Option<(u64, u32)>,
    /// Next ring slot to fetch.
    fetched: u32,
    jobs: BTreeMap<u64, Job>,
    next_job: u64,
    /// Jobs whose input is here, in arrival order, waiting for the engine.
    ready: VecDeque<u64>,
    /// The job the engine is running, if any.
    running: Option<u64>,
    /// Bytes pushed to the streaming window and not yet parsed.
    stream: Vec<u8>,
    /// Bytes of streamed jobs accepted and not yet completed.
    stream_held: u64,
    busy_ps: u64,
    counters: Counters,
}

impl<K: Kernel> Accelerator<K> {
    pub fn new(kernel: K, cfg: AccelConfig) -> Result<Accelerator<K>, AccelError> {
        if cfg.input_buffer_bytes < message_bytes(cfg.max_job_bytes as u64) {
            return Err(AccelError::Config(format!(
                "an input buffer of {} B cannot hold one job of {} B",
                cfg.input_buffer_bytes, cfg.max_job_bytes
            )));
        }
        Ok(Accelerator {
            kernel,
            cfg,
            ring: None,
            fetched: 0,
            jobs: BTreeMap::new(),
            next_job: 0,
            ready: VecDeque::new(),
            running: None,
            stream: Vec::new(),
            stream_held: 0,
            busy_ps: 0,
            counters: Counters::new(),
        })
    }

    /// Set the descriptor ring (the driver's control plane: the ring's bus
    /// address and size, as a QAT ring's base and size CSRs are written
    /// at set-up).
    pub fn configure_ring(&mut self, base: u64, entries: u32) -> Result<(), AccelError> {
        if !(2..=65536).contains(&entries)
            || !base.is_multiple_of(DESCRIPTOR_BYTES)
            || base
                .checked_add(entries as u64 * DESCRIPTOR_BYTES)
                .is_none()
        {
            return Err(AccelError::BadRing);
        }
        self.ring = Some((base, entries));
        self.fetched = 0;
        Ok(())
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// Jobs accepted and not completed.
    pub fn in_flight(&self) -> usize {
        self.jobs.len()
    }

    /// Picoseconds the engine has been busy.
    pub fn busy_ps(&self) -> u64 {
        self.busy_ps
    }

    fn new_job(&mut self, origin: Origin) -> u64 {
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(
            id,
            Job {
                origin,
                input: None,
                failed: None,
            },
        );
        self.counters.inc("accepted");
        id
    }

    fn doorbell(&mut self, cx: &mut DeviceCtx<'_>, value: u64) {
        let Some((base, entries)) = self.ring else {
            self.counters.inc("bad_register_writes");
            return;
        };
        if value >= entries as u64 {
            self.counters.inc("bad_register_writes");
            return;
        }
        let tail = value as u32;
        while self.fetched != tail {
            let first = self.fetched;
            let end = if tail > first { tail } else { entries };
            let addr = base + first as u64 * DESCRIPTOR_BYTES;
            let len = (end - first) as u64 * DESCRIPTOR_BYTES;
            let tag = Tag::Fetch { first }.encode();
            if cx.dma_read(addr, len, "descriptor", tag).is_err() {
                self.counters.inc("dma_errors");
            }
            self.fetched = end % entries;
        }
    }

    fn descriptors_fetched(&mut self, cx: &mut DeviceCtx<'_>, first: u32, data: &[u8]) {
        for (i, raw) in data.chunks_exact(DESCRIPTOR_BYTES as usize).enumerate() {
            let Some(desc) = Descriptor::parse(raw) else {
                continue;
            };
            let slot = first + i as u32;
            let job = self.new_job(Origin::Queue { slot, desc });
            if desc.src_len == 0 || desc.src_len > self.cfg.max_job_bytes {
                self.fail(cx, job, status::BAD_INPUT);
                continue;
            }
            let tag = Tag::Input { job }.encode();
            if cx
                .dma_read(desc.src, desc.src_len as u64, "accel-input", tag)
                .is_err()
            {
                self.counters.inc("dma_errors");
                self.fail(cx, job, status::FAULT);
            }
        }
    }

    /// Job `job` cannot run: it completes at once with `code`, in turn.
    fn fail(&mut self, cx: &mut DeviceCtx<'_>, job: u64, code: u8) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.failed = Some(code);
            j.input = Some(Vec::new());
            self.ready.push_back(job);
        }
        self.pump(cx);
    }

    fn input_arrived(&mut self, cx: &mut DeviceCtx<'_>, job: u64, data: &[u8]) {
        match self.jobs.get_mut(&job) {
            Some(j) if j.input.is_none() => {
                j.input = Some(data.to_vec());
                self.ready.push_back(job);
            }
            _ => self.counters.inc("unexpected_dma_events"),
        }
        self.pump(cx);
    }

    /// Start the next ready job if the engine is free.
    fn pump(&mut self, cx: &mut DeviceCtx<'_>) {
        if self.running.is_some() {
            return;
        }
        let Some(id) = self.ready.pop_front() else {
            return;
        };
        let Some(j) = self.jobs.get(&id) else { return };
        let (op, bytes) = match j.origin {
            Origin::Queue { desc, .. } => (desc.op, desc.src_len as u64),
            Origin::Stream { header } => (header.op, header.len as u64),
        };
        let cost = if j.failed.is_some() {
            Duration::ZERO
        } else {
            self.kernel.cost(op, bytes)
        };
        self.busy_ps += cost.ps();
        self.running = Some(id);
        cx.set_timer(cost, id);
    }

    /// The engine finished job `id`: push its result, complete it.
    fn finish(&mut self, cx: &mut DeviceCtx<'_>, id: u64) {
        if self.running != Some(id) {
            self.counters.inc("unexpected_timers");
            return;
        }
        self.running = None;
        let Some(job) = self.jobs.remove(&id) else {
            return;
        };
        let input = job.input.unwrap_or_default();
        let (op, param, state) = match job.origin {
            Origin::Queue { desc, .. } => (desc.op, desc.param as u64, desc.state),
            Origin::Stream { header } => (header.op, header.param, header.state),
        };
        let result = match job.failed {
            Some(code) => Err(code),
            None => self.kernel.run(op, param, &state, &input),
        };
        match job.origin {
            Origin::Queue { slot, desc } => self.complete_descriptor(cx, slot, desc, result),
            Origin::Stream { header } => {
                self.stream_held = self
                    .stream_held
                    .saturating_sub(message_bytes(header.len as u64));
                self.push_result(cx, header, result);
            }
        }
        self.counters.inc("completed");
        self.pump(cx);
    }

    fn complete_descriptor(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        slot: u32,
        mut desc: Descriptor,
        result: Result<Vec<u8>, u8>,
    ) {
        let code = match result {
            Ok(out) if out.len() > desc.dst_cap as usize => status::NO_ROOM,
            Ok(out) => {
                desc.out_len = out.len() as u32;
                if !out.is_empty()
                    && cx
                        .dma_write(desc.dst, &out, "accel-output", Tag::Output.encode())
                        .is_err()
                {
                    self.counters.inc("dma_errors");
                }
                status::OK
            }
            Err(code) => code,
        };
        if code != status::OK {
            self.counters.inc("failed_jobs");
        }
        desc.status = DONE | code;
        let Some((base, _)) = self.ring else { return };
        let addr = base + slot as u64 * DESCRIPTOR_BYTES;
        if cx
            .dma_write(addr, &desc.emit(), "completion", Tag::Completion.encode())
            .is_err()
        {
            self.counters.inc("dma_errors");
        }
    }

    fn push_result(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        cmd: MessageHeader,
        result: Result<Vec<u8>, u8>,
    ) {
        let (code, out) = match result {
            Ok(out) => (status::OK, out),
            Err(code) => (code, Vec::new()),
        };
        if code != status::OK {
            self.counters.inc("failed_jobs");
        }
        let mut h = MessageHeader::data(out.len() as u32, cmd.seq);
        h.status = code;
        h.op = cmd.op;
        h.cookie = cmd.cookie;
        let msg = h.message(&out);
        if cx
            .dma_write(cmd.out_addr, &msg, "stream-push", Tag::Output.encode())
            .is_err()
        {
            self.counters.inc("dma_errors");
        }
    }

    /// Bytes pushed to the streaming window.
    fn pushed(&mut self, cx: &mut DeviceCtx<'_>, data: &[u8]) {
        let held = self.stream.len() as u64 + self.stream_held;
        if held + data.len() as u64 > self.cfg.input_buffer_bytes {
            self.counters.inc("drop.input_full");
            return;
        }
        self.stream.extend_from_slice(data);
        let mut at = 0usize;
        while self.stream.len() - at >= ENTRY_BYTES {
            let rest = &self.stream[at..];
            let header = match MessageHeader::parse(rest) {
                Some(h) if h.kind == MessageKind::Command => h,
                _ => {
                    // Not a command: skip a quantum and look again.
                    self.counters.inc("drop.malformed");
                    at += QUANTUM_BYTES as usize;
                    continue;
                }
            };
            let total = message_bytes(header.len as u64) as usize;
            if rest.len() < total {
                break;
            }
            let payload = rest[ENTRY_BYTES..ENTRY_BYTES + header.len as usize].to_vec();
            at += total;
            self.stream_held += total as u64;
            let job = self.new_job(Origin::Stream { header });
            if header.len > self.cfg.max_job_bytes {
                self.fail(cx, job, status::BAD_INPUT);
                continue;
            }
            if let Some(j) = self.jobs.get_mut(&job) {
                j.input = Some(payload);
            }
            self.ready.push_back(job);
        }
        self.stream.drain(..at);
        self.pump(cx);
    }
}

impl<K: Kernel> Device for Accelerator<K> {
    fn name(&self) -> &'static str {
        self.kernel.name()
    }

    fn bars(&self) -> Vec<BarSpec> {
        vec![
            BarSpec::new(4096),
            BarSpec::new(self.cfg.input_buffer_bytes),
        ]
    }

    fn bar_write(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        _from: Requester,
        bar: u8,
        offset: u64,
        data: &[u8],
    ) {
        match (bar, offset, <[u8; 8]>::try_from(data)) {
            (0, TAIL_REGISTER, Ok(v)) => self.doorbell(cx, u64::from_le_bytes(v)),
            (1, _, _) => self.pushed(cx, data),
            _ => self.counters.inc("bad_register_writes"),
        }
    }

    fn bar_read(&mut self, _: &mut DeviceCtx<'_>, _: Requester, _: u8, _: u64, _: &mut [u8]) {}

    fn dma_read_done(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, data: &[u8]) {
        match Tag::decode(tag) {
            Some(Tag::Fetch { first }) => self.descriptors_fetched(cx, first, data),
            Some(Tag::Input { job }) => self.input_arrived(cx, job, data),
            _ => self.counters.inc("unexpected_dma_events"),
        }
    }

    fn dma_fault(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, _fault: DmaFault) {
        match Tag::decode(tag) {
            Some(Tag::Input { job }) => {
                self.counters.inc("input_faults");
                match self.jobs.get(&job) {
                    Some(j) if j.input.is_none() => self.fail(cx, job, status::FAULT),
                    _ => self.counters.inc("unexpected_dma_events"),
                }
            }
            // The descriptors never arrived: nothing can be completed.
            Some(Tag::Fetch { .. }) => self.counters.inc("drop.descriptor_fault"),
            Some(Tag::Output) => self.counters.inc("dma_faults.output"),
            Some(Tag::Completion) => self.counters.inc("dma_faults.completion"),
            None => self.counters.inc("unexpected_dma_events"),
        }
    }

    fn timer(&mut self, cx: &mut DeviceCtx<'_>, token: u64) {
        self.finish(cx, token);
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// When the engine would finish `bytes` of work at `rate` bytes per second
/// after a fixed `setup`: the shape of every kernel's cost.
pub fn linear_cost(setup: Duration, bytes: u64, bytes_per_s: u64) -> Duration {
    let ps = (bytes as u128 * 1_000_000_000_000u128).div_ceil(bytes_per_s.max(1) as u128);
    setup + Duration::from_ps(ps.min(u64::MAX as u128) as u64)
}
