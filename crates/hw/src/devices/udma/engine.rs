//! The engine pipeline: what happens to a descriptor between the work
//! queue and its completion record.
//!
//! 1. **Dispatch.** A free engine takes the next descriptor — first the
//!    sub-descriptors of batches already fetched (in order; a fenced one
//!    waits for its batch's earlier ones), then the queues round robin.
//! 2. **Check.** Opcode, flags, sizes and alignments are checked; a bad
//!    descriptor is rejected with its DSA status and moves no byte.
//!    Operands named by capability are checked against the capability
//!    table *now*, when the descriptor starts — so a revocation applies
//!    to every descriptor not yet started.
//! 3. **Translate.** Every operand is cut into pieces at 4 KiB page
//!    boundaries, and each piece is translated, in order, through the
//!    ATC (an ATS request to the IOMMU on a miss). The first piece that
//!    faults cuts the operation: everything before it is done, nothing
//!    from it on (partial completion, resumable by software).
//! 4. **Move.** Reads and writes go out through the fabric with the
//!    translated (physical) addresses: for a copy, each piece is written
//!    as soon as its read data arrives. Reads go through the engine's own
//!    datapath: an operation is cut into read requests of at most
//!    `read_request_bytes` (and never across a page), each request waits
//!    until its own translation is back (translation overlaps the data
//!    of earlier pieces; every ATC miss is sent at the start) and until
//!    the device has read buffers free for its data; the buffers are held
//!    from the request until the data is consumed (written out, compared,
//!    folded into the CRC). So the device's read bandwidth is its buffer
//!    bytes over a read's round trip, shared by its engines; fills, which
//!    read nothing, write every piece at once.
//! 5. **Complete.** The completion record is written after the data (the
//!    device's posted writes land in order) and, if asked, an MSI-X
//!    message follows it.
//!
//! Invariants: every descriptor an engine takes ends in exactly one of
//! `completed`, `faulted.<reason>` or `rejected.<reason>`, once, after
//! every read it issued has returned; every read buffer taken is given
//! back exactly once (when the device is idle all are free); the bytes a
//! copy reads (`datapath.read_bytes`) equal the bytes it writes
//! (`datapath.write_bytes`).

use nextio_engine::{Duration, Time};

use crate::device::DeviceCtx;
use crate::fabric::Space;
use crate::mem::PAGE_BYTES;

use super::caps::CapFault;
use super::layout::{
    DESC_LIST_ALIGN, DESCRIPTOR_BYTES, Descriptor, RECORD_ALIGN, RECORD_BYTES, Record, flags,
    opcode, status,
};
use super::ops;
use super::{Udma, wq::Queued};

/// Timer kinds (the low byte of a token; the job's slot above it).
const DATA_PHASE: u64 = 1;
/// Issue the reads whose translations are back.
pub(super) const PUMP: u64 = 2;
/// The DMA tag of completion-record writes.
const RECORD_TAG: u64 = u64::MAX;

/// One operand of an operation: where it is and whether it is written.
#[derive(Clone, Copy, Debug)]
struct Operand {
    space: Space,
    addr: u64,
    write: bool,
}

/// A piece of an operation that lies within one page of every operand.
#[derive(Clone, Debug)]
struct Piece {
    off: u64,
    len: u64,
    pa: [u64; 2],
    data: [Option<Vec<u8>>; 2],
    /// When every operand's translation of this piece is back.
    ready: Time,
}

/// How a descriptor ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Success,
    Rejected { status: u8, counter: &'static str },
    Capability(CapFault),
}

/// What a batch waits for.
#[derive(Clone, Copy, Debug, Default)]
struct BatchState {
    total: usize,
    done: usize,
    succeeded: usize,
}

/// A descriptor an engine is working on (or a batch whose descriptors are
/// being worked on).
pub(super) struct Job {
    desc: [u8; DESCRIPTOR_BYTES],
    /// The queue it came from (its limits apply).
    wq: usize,
    pasid: Option<u32>,
    space: Space,
    /// The batch this descriptor belongs to (its slot).
    parent: Option<usize>,
    operands: Vec<Operand>,
    pieces: Vec<Piece>,
    /// Where the record goes, once translated.
    record_pa: Option<u64>,
    /// A translation fault cut the operation here: (bytes before it, the
    /// address that faulted).
    cut: Option<(u64, u64)>,
    outstanding: usize,
    /// The next piece whose reads are not issued yet (all pieces: done).
    next: usize,
    /// Reads per piece (compare reads both operands); 0: no reads.
    reads: usize,
    hw_error: bool,
    /// Compare: offset of the first difference found so far.
    difference: Option<u64>,
    /// CRC: running register and the next piece to fold in.
    crc: u32,
    crc_next: usize,
    batch: Option<BatchState>,
    /// Whether it still holds an engine.
    on_engine: bool,
    end: End,
}

impl Job {
    /// Every read issued and returned.
    fn drained(&self) -> bool {
        self.outstanding == 0 && self.next >= self.pieces.len()
    }
}

/// A sub-descriptor of a fetched batch, waiting for an engine.
pub(super) struct BatchItem {
    pub desc: [u8; DESCRIPTOR_BYTES],
    pub parent: usize,
    pub index: usize,
}

fn space_of(pasid: Option<u32>) -> Space {
    match pasid {
        Some(p) => Space::Pasid(p),
        None => Space::Domain,
    }
}

impl Udma {
    /// Give free engines work.
    pub(super) fn dispatch(&mut self, cx: &mut DeviceCtx<'_>) {
        while self.busy < self.cfg.engines {
            if let Some(item) = self.next_batch_item() {
                let parent = &self.jobs[item.parent];
                let (pasid, space, wq) = match parent {
                    Some(p) => (p.pasid, p.space, p.wq),
                    None => continue,
                };
                self.start(
                    cx,
                    item.desc,
                    wq,
                    pasid,
                    space,
                    Some((item.parent, item.index)),
                );
                continue;
            }
            let Some(q) = self.next_queued() else {
                return;
            };
            let space = space_of(q.pasid);
            self.start(cx, q.desc, q.wq, q.pasid, space, None);
        }
    }

    /// The next sub-descriptor a fence does not hold back.
    fn next_batch_item(&mut self) -> Option<BatchItem> {
        let head = self.batch_queue.front()?;
        let d = Descriptor::new(&head.desc[..])?;
        if d.flags() & flags::FENCE != 0 {
            // Fenced: wait until every earlier descriptor of its batch is done.
            let earlier_done = self.jobs[head.parent]
                .as_ref()
                .and_then(|p| p.batch)
                .is_some_and(|b| b.done >= head.index);
            if !earlier_done {
                return None;
            }
        }
        self.batch_queue.pop_front()
    }

    /// The head of the next non-empty queue, round robin.
    fn next_queued(&mut self) -> Option<Queued> {
        let n = self.wqs.len();
        for i in 0..n {
            let w = (self.rr + i) % n;
            if let Some(q) = self.wqs[w].queue.pop_front() {
                self.rr = (w + 1) % n;
                return Some(q);
            }
        }
        None
    }

    fn slot(&mut self, job: Job) -> usize {
        match self.jobs.iter().position(Option::is_none) {
            Some(i) => {
                self.jobs[i] = Some(job);
                i
            }
            None => {
                self.jobs.push(Some(job));
                self.jobs.len() - 1
            }
        }
    }

    /// An engine starts `desc`.
    fn start(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        desc: [u8; DESCRIPTOR_BYTES],
        wq: usize,
        pasid: Option<u32>,
        space: Space,
        parent: Option<(usize, usize)>,
    ) {
        self.busy += 1;
        self.counters.inc("started");
        let mut job = Job {
            desc,
            wq,
            pasid,
            space,
            parent: parent.map(|p| p.0),
            operands: Vec::new(),
            pieces: Vec::new(),
            record_pa: None,
            cut: None,
            outstanding: 0,
            next: 0,
            reads: 0,
            hw_error: false,
            difference: None,
            crc: 0,
            crc_next: 0,
            batch: None,
            on_engine: true,
            end: End::Success,
        };
        let d = Descriptor::new(&desc[..]).unwrap_or_else(|| unreachable!("64 bytes"));
        let mut ready = cx.now();
        // The record address is translated first: a descriptor whose
        // record cannot be written still runs, but nobody will see it.
        let f = d.flags();
        if f & flags::CRAV != 0 {
            let cra = d.completion_addr();
            if !cra.is_multiple_of(RECORD_ALIGN) {
                job.end = End::Rejected {
                    status: status::CRA_ALIGN,
                    counter: "rejected.record_align",
                };
            } else {
                match self.atc.translate(cx, space, cra, true) {
                    Ok((pa, at)) => {
                        job.record_pa = Some(pa);
                        ready = ready.max(at);
                    }
                    Err(_) => self.counters.inc("record_unwritable"),
                }
            }
        }
        if job.end == End::Success {
            job.end = self.check(&d, wq, parent.is_some(), pasid, space, &mut job.operands);
        }
        let slot = self.slot(job);
        let job_end = self.jobs[slot].as_ref().map(|j| j.end);
        if job_end != Some(End::Success) {
            self.schedule(cx, slot, ready);
            return;
        }
        let len = match d.opcode() {
            opcode::BATCH => d.xfer_size() as u64 * DESCRIPTOR_BYTES as u64,
            opcode::NOOP => 0,
            _ => d.xfer_size() as u64,
        };
        let reads = match d.opcode() {
            opcode::COMPARE => 2,
            opcode::MEMMOVE | opcode::CRCGEN | opcode::BATCH => 1,
            _ => 0,
        };
        let at = self.translate_pieces(cx, slot, len, reads > 0);
        if reads == 0 {
            // A fill writes every piece at once: all its translations
            // must be back. Reading operations wait piece by piece.
            ready = ready.max(at);
        }
        if d.opcode() == opcode::NOOP
            && let Some(dist) = self.cfg.noop_latency
        {
            // The xUI paper's accelerator (§5.4): a descriptor whose work
            // is only a latency drawn from a distribution.
            let work = dist.sample(&mut self.rng);
            self.schedule(cx, slot, ready.max(cx.now() + work));
            return;
        }
        let dispatch = Duration::from_ps(self.cfg.dispatch_ps);
        self.schedule(cx, slot, ready + dispatch);
    }

    fn schedule(&mut self, cx: &mut DeviceCtx<'_>, slot: usize, at: Time) {
        let delay = at.max(cx.now()) - cx.now();
        cx.set_timer(delay, (slot as u64) << 8 | DATA_PHASE);
    }

    /// Check `d` and resolve its operands.
    fn check(
        &mut self,
        d: &Descriptor<&[u8]>,
        wq: usize,
        in_batch: bool,
        pasid: Option<u32>,
        space: Space,
        operands: &mut Vec<Operand>,
    ) -> End {
        let reject = |status, counter| End::Rejected { status, counter };
        let f = d.flags();
        if f & !flags::KNOWN != 0 {
            return reject(status::INVALID_FLAGS, "rejected.invalid_flags");
        }
        let size = d.xfer_size();
        let limits = self.wqs[wq].cfg;
        let max_xfer = limits.max_xfer_bytes;
        let sized = |size: u32| size > 0 && size <= max_xfer;
        // (source is read, destination is written) per opcode.
        let uses: &[(u64, bool, u32, u32)] = match d.opcode() {
            opcode::NOOP => &[],
            opcode::MEMMOVE => &[
                (d.src(), false, flags::SRC_CAP, d.src_cap()),
                (d.dst(), true, flags::DST_CAP, d.dst_cap()),
            ],
            opcode::MEMFILL => &[(d.dst(), true, flags::DST_CAP, d.dst_cap())],
            opcode::COMPARE => &[
                (d.src(), false, flags::SRC_CAP, d.src_cap()),
                (d.dst(), false, flags::DST_CAP, d.dst_cap()),
            ],
            opcode::CRCGEN => &[(d.src(), false, flags::SRC_CAP, d.src_cap())],
            opcode::BATCH if !in_batch => {
                if size < 2 || size > limits.max_batch {
                    return reject(status::DESC_CNT_ERANGE, "rejected.desc_count");
                }
                if !d.src().is_multiple_of(DESC_LIST_ALIGN) {
                    return reject(status::DESCLIST_ALIGN, "rejected.desc_list_align");
                }
                operands.push(Operand {
                    space,
                    addr: d.src(),
                    write: false,
                });
                return End::Success;
            }
            _ => return reject(status::BAD_OPCODE, "rejected.bad_opcode"),
        };
        if d.opcode() != opcode::NOOP && !sized(size) {
            return reject(status::XFER_ERANGE, "rejected.xfer_range");
        }
        if f & flags::SRC_CAP != 0 && uses.iter().all(|u| u.2 != flags::SRC_CAP)
            || f & flags::DST_CAP != 0 && uses.iter().all(|u| u.2 != flags::DST_CAP)
        {
            return reject(status::INVALID_FLAGS, "rejected.invalid_flags");
        }
        for &(addr, write, cap_flag, handle) in uses {
            let operand = if f & cap_flag != 0 {
                match self.caps.check(handle, pasid, addr, size as u64, write) {
                    Ok((space, addr)) => Operand { space, addr, write },
                    Err(e) => return End::Capability(e),
                }
            } else {
                Operand { space, addr, write }
            };
            if operand.addr.checked_add(size as u64).is_none() {
                return reject(status::XFER_ERANGE, "rejected.xfer_range");
            }
            operands.push(operand);
        }
        End::Success
    }

    /// Cut the job's operation of `len` bytes into pieces and translate
    /// them in order, stopping at the first fault. Returns when the last
    /// translation is known.
    fn translate_pieces(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        slot: usize,
        len: u64,
        by_request: bool,
    ) -> Time {
        let Some(job) = self.jobs[slot].as_mut() else {
            return cx.now();
        };
        let operands = job.operands.clone();
        let mut ready = cx.now();
        let mut off = 0u64;
        let mut pieces = Vec::new();
        let mut cut = None;
        let request = self.cfg.datapath.read_request_bytes as u64;
        // The last translation of each operand: (its page, the page's
        // physical base, when it was known); a piece in the same page
        // reuses it, as the engine does within a page.
        let mut last: [Option<(u64, u64, Time)>; 2] = [None, None];
        'pieces: while off < len {
            let mut n = len - off;
            if by_request {
                n = n.min(request);
            }
            for o in &operands {
                let a = o.addr + off;
                n = n.min(PAGE_BYTES - a % PAGE_BYTES);
            }
            let mut pa = [0u64; 2];
            let mut piece_ready = cx.now();
            for (i, o) in operands.iter().enumerate() {
                let va = o.addr + off;
                let page = va - va % PAGE_BYTES;
                if let Some((p, base, at)) = last[i]
                    && p == page
                {
                    pa[i] = base + (va - page);
                    piece_ready = piece_ready.max(at);
                    continue;
                }
                match self.atc.translate(cx, o.space, va, o.write) {
                    Ok((p, at)) => {
                        pa[i] = p;
                        last[i] = Some((page, p - (va - page), at));
                        piece_ready = piece_ready.max(at);
                        ready = ready.max(at);
                    }
                    Err(_) => {
                        cut = Some((off, o.addr + off));
                        break 'pieces;
                    }
                }
            }
            pieces.push(Piece {
                off,
                len: n,
                pa,
                data: [None, None],
                ready: piece_ready,
            });
            off += n;
        }
        let job = self.jobs[slot].as_mut().unwrap_or_else(|| unreachable!());
        job.pieces = pieces;
        job.cut = cut;
        ready
    }

    /// The job's translations are ready: move its data.
    pub(super) fn data_phase(&mut self, cx: &mut DeviceCtx<'_>, slot: usize) {
        let Some(job) = self.jobs[slot].as_mut() else {
            return;
        };
        if job.end != End::Success {
            self.finish(cx, slot);
            return;
        }
        let d = Descriptor::new(&job.desc[..]).unwrap_or_else(|| unreachable!());
        let op = d.opcode();
        let pattern = d.src();
        job.crc = !d.crc_seed();
        match op {
            opcode::MEMFILL => {
                for p in &job.pieces {
                    let bytes = ops::fill_bytes(pattern, p.off, p.len as usize);
                    if cx
                        .dma_write_in(
                            Space::Translated,
                            p.pa[0],
                            &bytes,
                            "udma-data",
                            tag(slot, 0, 1),
                        )
                        .is_err()
                    {
                        job.hw_error = true;
                    }
                }
            }
            opcode::MEMMOVE | opcode::CRCGEN | opcode::BATCH | opcode::COMPARE => {
                job.reads = if op == opcode::COMPARE { 2 } else { 1 };
                let pieces = job.pieces.len();
                if pieces > 0 {
                    self.pump(cx);
                    return;
                }
            }
            _ => {}
        }
        if let Some(job) = self.jobs[slot].as_mut() {
            job.next = job.pieces.len();
            let bytes: u64 = if op == opcode::MEMFILL {
                job.pieces.iter().map(|p| p.len).sum()
            } else {
                0
            };
            self.counters.add("datapath.write_bytes", bytes);
        }
        if self.jobs[slot].as_ref().is_some_and(Job::drained) {
            self.finish(cx, slot);
        }
    }

    /// Issue the reads of every job whose piece's translation is back, a
    /// piece per job in turn, while the device has read buffers for them;
    /// set a timer for the earliest piece still waiting for a translation.
    pub(super) fn pump(&mut self, cx: &mut DeviceCtx<'_>) {
        let dp = self.cfg.datapath;
        let now = cx.now();
        let mut waiting: Option<Time> = None;
        'rounds: loop {
            let mut issued = false;
            for slot in 0..self.jobs.len() {
                let Some(job) = self.jobs[slot].as_mut() else {
                    continue;
                };
                if job.reads == 0 || job.next >= job.pieces.len() {
                    continue;
                }
                let p = &job.pieces[job.next];
                if p.ready > now {
                    waiting = Some(waiting.map_or(p.ready, |w| w.min(p.ready)));
                    continue;
                }
                let need = job.reads as u64 * dp.buffers_for(p.len);
                if self.free_buffers < need {
                    break 'rounds;
                }
                let purpose = match Descriptor::new(&job.desc[..]).map(|d| d.opcode()) {
                    Some(opcode::BATCH) => "descriptor",
                    _ => "udma-data",
                };
                let (i, pa, len) = (job.next, p.pa, p.len);
                job.next += 1;
                for (which, addr) in pa.iter().enumerate().take(job.reads) {
                    match cx.dma_read_in(
                        Space::Translated,
                        *addr,
                        len,
                        purpose,
                        tag(slot, i, which),
                    ) {
                        Ok(()) => {
                            job.outstanding += 1;
                            self.free_buffers -= dp.buffers_for(len);
                            self.counters.add("datapath.read_bytes", len);
                        }
                        Err(_) => job.hw_error = true,
                    }
                }
                issued = true;
            }
            if !issued {
                break;
            }
        }
        // A job whose last reads could not be issued may be done now.
        for slot in 0..self.jobs.len() {
            if self.jobs[slot]
                .as_ref()
                .is_some_and(|j| j.reads > 0 && j.on_engine && j.drained())
            {
                self.finish(cx, slot);
            }
        }
        if let Some(at) = waiting
            && self.pump_at.is_none_or(|t| at < t)
        {
            self.pump_at = Some(at);
            cx.set_timer(at - now, PUMP);
        }
    }

    /// Data of a read arrived.
    pub(super) fn read_done(&mut self, cx: &mut DeviceCtx<'_>, t: u64, data: &[u8]) {
        let (slot, piece, which) = untag(t);
        let Some(job) = self.jobs.get_mut(slot).and_then(Option::as_mut) else {
            self.counters.inc("drop.stray_read");
            return;
        };
        job.outstanding = job.outstanding.saturating_sub(1);
        // The data is consumed in this handler: its buffers are free.
        self.free_buffers += self.cfg.datapath.buffers_for(data.len() as u64);
        let op = Descriptor::new(&job.desc[..]).map_or(0, |d| d.opcode());
        let Some(p) = job.pieces.get_mut(piece) else {
            return;
        };
        match op {
            opcode::MEMMOVE => {
                let dst = p.pa[1];
                self.counters.add("datapath.write_bytes", data.len() as u64);
                if cx
                    .dma_write_in(
                        Space::Translated,
                        dst,
                        data,
                        "udma-data",
                        tag(slot, piece, 1),
                    )
                    .is_err()
                {
                    job.hw_error = true;
                }
            }
            opcode::COMPARE => {
                p.data[which] = Some(data.to_vec());
                if let [Some(a), Some(b)] = &p.data {
                    if let Some(i) = ops::first_difference(a, b) {
                        let at = p.off + i as u64;
                        job.difference = Some(job.difference.map_or(at, |d| d.min(at)));
                    }
                    p.data = [None, None];
                }
            }
            opcode::CRCGEN => {
                p.data[0] = Some(data.to_vec());
                while let Some(bytes) = job
                    .pieces
                    .get_mut(job.crc_next)
                    .and_then(|p| p.data[0].take())
                {
                    job.crc = ops::crc32c_update(job.crc, &bytes);
                    job.crc_next += 1;
                }
            }
            opcode::BATCH => p.data[0] = Some(data.to_vec()),
            _ => {}
        }
        if job.drained() {
            self.finish(cx, slot);
        }
        self.pump(cx);
    }

    /// A transfer of a job moved nothing (nothing answered its translated
    /// address). A read's job ends in a device error; a posted write's
    /// fault arrives after its job may have ended, so it is counted as a
    /// device error of its own (as DSA logs one in SWERROR).
    pub(super) fn transfer_fault(&mut self, cx: &mut DeviceCtx<'_>, t: u64) {
        if t == RECORD_TAG {
            self.counters.inc("record_unwritable");
            return;
        }
        let (slot, piece, which) = untag(t);
        let write = self
            .jobs
            .get(slot)
            .and_then(Option::as_ref)
            .and_then(|j| Descriptor::new(&j.desc[..]).map(|d| d.opcode()))
            .is_none_or(|op| which == 1 && matches!(op, opcode::MEMMOVE | opcode::MEMFILL));
        if write {
            self.counters.inc("write_errors");
            return;
        }
        let Some(job) = self.jobs.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        job.hw_error = true;
        job.outstanding = job.outstanding.saturating_sub(1);
        let len = job.pieces.get(piece).map_or(0, |p| p.len);
        self.free_buffers += self.cfg.datapath.buffers_for(len);
        if job.drained() {
            self.finish(cx, slot);
        }
        self.pump(cx);
    }

    /// The descriptor is done: record, interrupt, bookkeeping.
    fn finish(&mut self, cx: &mut DeviceCtx<'_>, slot: usize) {
        let Some(job) = self.jobs[slot].as_mut() else {
            return;
        };
        if job.on_engine {
            job.on_engine = false;
            self.busy -= 1;
        }
        let d = Descriptor::new(job.desc).unwrap_or_else(|| unreachable!());
        if d.opcode() == opcode::BATCH
            && job.end == End::Success
            && job.batch.is_none()
            && job.cut.is_none()
            && !job.hw_error
        {
            // The list is here: queue its descriptors, in order.
            let list: Vec<u8> = job
                .pieces
                .iter_mut()
                .flat_map(|p| p.data[0].take().unwrap_or_default())
                .collect();
            let count = list.len() / DESCRIPTOR_BYTES;
            job.batch = Some(BatchState {
                total: count,
                ..BatchState::default()
            });
            for (i, chunk) in list.chunks_exact(DESCRIPTOR_BYTES).enumerate() {
                let mut desc = [0u8; DESCRIPTOR_BYTES];
                desc.copy_from_slice(chunk);
                self.batch_queue.push_back(super::engine::BatchItem {
                    desc,
                    parent: slot,
                    index: i,
                });
            }
            self.counters.add("batch_descriptors", count as u64);
            self.dispatch(cx);
            return;
        }
        let Some(job) = self.jobs[slot].take() else {
            return;
        };
        let d = Descriptor::new(job.desc).unwrap_or_else(|| unreachable!());
        let mut rec = Record::new([0u8; RECORD_BYTES]).unwrap_or_else(|| unreachable!());
        let counter = match (job.end, job.batch) {
            (End::Rejected { status, counter }, _) => {
                rec.set_status(status);
                counter
            }
            (End::Capability(e), _) => {
                rec.set_status(status::CAPABILITY);
                e.counter()
            }
            (End::Success, Some(b)) => {
                rec.set_bytes_completed(b.succeeded as u32);
                if b.succeeded == b.total {
                    rec.set_status(status::SUCCESS);
                    "completed"
                } else {
                    rec.set_status(status::BATCH_FAIL);
                    "faulted.batch"
                }
            }
            (End::Success, None) if job.hw_error => {
                rec.set_status(status::HW_ERROR);
                "faulted.hw_error"
            }
            (End::Success, None) => {
                let done = job.cut.map_or(
                    if d.opcode() == opcode::NOOP {
                        0
                    } else {
                        d.xfer_size() as u64
                    },
                    |c| c.0,
                );
                rec.set_crc(!job.crc);
                match (job.difference, job.cut) {
                    // A difference before any fault decides a compare.
                    (Some(at), _) => {
                        rec.set_status(status::SUCCESS);
                        rec.set_result(1);
                        rec.set_bytes_completed(at as u32);
                        "completed"
                    }
                    (None, Some((bytes, addr))) => {
                        rec.set_status(status::PAGE_FAULT);
                        rec.set_bytes_completed(bytes as u32);
                        rec.set_fault_addr(addr);
                        "faulted.page_fault"
                    }
                    (None, None) => {
                        rec.set_status(status::SUCCESS);
                        rec.set_bytes_completed(done as u32);
                        "completed"
                    }
                }
            }
        };
        self.counters.inc(counter);
        let ok = counter == "completed";
        if let Some(pa) = job.record_pa {
            let record = rec.into_inner();
            match cx.dma_write_in(Space::Translated, pa, &record, "completion", RECORD_TAG) {
                Ok(_) => self.counters.inc("records"),
                Err(_) => self.counters.inc("record_unwritable"),
            }
            if d.flags() & flags::RCI != 0 {
                cx.msix(d.int_handle());
                self.counters.inc("interrupts");
            }
        }
        if let Some(parent) = job.parent {
            self.batch_child_done(cx, parent, ok);
        }
        self.dispatch(cx);
    }

    fn batch_child_done(&mut self, cx: &mut DeviceCtx<'_>, parent: usize, ok: bool) {
        let Some(p) = self.jobs.get_mut(parent).and_then(Option::as_mut) else {
            return;
        };
        let Some(b) = p.batch.as_mut() else {
            return;
        };
        b.done += 1;
        b.succeeded += ok as usize;
        if b.done == b.total {
            self.finish(cx, parent);
        }
    }
}

fn tag(slot: usize, piece: usize, which: usize) -> u64 {
    (slot as u64) << 32 | (piece as u64) << 1 | which as u64
}

fn untag(t: u64) -> (usize, usize, usize) {
    (
        (t >> 32) as usize,
        ((t & 0xffff_ffff) >> 1) as usize,
        (t & 1) as usize,
    )
}
