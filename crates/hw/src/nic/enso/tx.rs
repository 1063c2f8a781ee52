//! The transmit path: a doorbell (a notification buffer's new TX tail)
//! hands the NIC TX notifications; the NIC DMA-reads them, then the data
//! each names, parses the bytes into frames on 64-byte boundaries, sends
//! them on port 0, and completes each notification by DMA-writing it back
//! with its signal cleared.
//!
//! Each notification becomes one *job*, served strictly in the order the
//! doorbells handed them over: reads may complete in any order, but a job
//! is parsed and sent only once every job before it has been completed,
//! so a frame cut across two transfers is joined in the right order and
//! frames leave in the order software queued them.
//!
//! Invariants: every job is completed exactly once, after all its frames
//! were accepted by the port — also a job whose notification is malformed
//! or whose reads failed, so software never waits forever; when the port
//! is full the NIC keeps the frame (no drop) and resumes when the port
//! has room; every frame parsed is counted in `tx_frames` once the port
//! took it.

use std::collections::VecDeque;

use nextio_engine::Counters;

use super::layout::{
    LINE_BYTES, NOTIFICATION_BYTES, PIPE_BYTES, TxNotification, frame_len_from_header, padded_len,
};
use super::{EnsoNic, Tag};
use crate::device::DeviceCtx;
use crate::packet::Frame;

/// The NIC's only Ethernet port.
const PORT: usize = 0;

/// Where one TX notification is on its way through the NIC.
enum JobState {
    /// Its notification is being read, by the read tagged with the first
    /// job it covers.
    Fetching { fetch: u64 },
    /// Its data is being read.
    Reading,
    /// Its data arrived.
    Ready(Vec<u8>),
    /// Nothing to send (a malformed notification or a failed read).
    Failed,
    /// Parsed: the frames the port has not taken yet.
    Sending(VecDeque<Frame>),
}

/// Where a job's data came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobFrom {
    /// A TX notification of notification buffer `nb`, in ring slot `slot`:
    /// completed by writing it back.
    Notification { nb: usize, slot: u32 },
    /// A push into the TX push window ([`super::push`]): nothing to
    /// complete.
    Push,
}

/// One TX notification handed over by a doorbell, or one push.
struct Job {
    seq: u64,
    from: JobFrom,
    /// The notification as read (zeros if the read failed): written back,
    /// signal cleared, on completion.
    entry: [u8; NOTIFICATION_BYTES as usize],
    state: JobState,
}

/// The jobs not yet completed, oldest first, and the port's state.
#[derive(Default)]
pub(super) struct TxEngine {
    jobs: VecDeque<Job>,
    /// Sequence number of the next job.
    next_seq: u64,
    /// Id of the next frame sent.
    next_frame: u64,
    /// The port was full and a wake-up is pending.
    waiting_for_port: bool,
    /// Bytes of a frame cut by the end of one push, awaiting the rest.
    push_partial: Vec<u8>,
}

impl TxEngine {
    pub(super) fn pending(&self) -> usize {
        self.jobs.len()
    }

    fn job_mut(&mut self, seq: u64) -> Option<&mut Job> {
        let first = self.jobs.front()?.seq;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.jobs.get_mut(i)
    }
}

impl EnsoNic {
    /// Software moved notification buffer `n`'s TX tail to `value`.
    pub(super) fn tx_doorbell(&mut self, cx: &mut DeviceCtx<'_>, n: usize, value: u64) {
        let Some(nb) = self.nbs.get_mut(n) else {
            self.counters.inc("bad_register_writes");
            return;
        };
        if value >= nb.tx_entries as u64 {
            self.counters.inc("bad_register_writes");
            return;
        }
        let tail = value as u32;
        let (entries, ring) = (nb.tx_entries, nb.tx_ring);
        let mut first = nb.tx_fetched;
        nb.tx_fetched = tail;
        // The new notifications, in at most two reads (the ring may wrap).
        while first != tail {
            let end = if tail > first { tail } else { entries };
            let seq = self.tx.next_seq;
            for slot in first..end {
                self.tx.jobs.push_back(Job {
                    seq: self.tx.next_seq,
                    from: JobFrom::Notification { nb: n, slot },
                    entry: [0; NOTIFICATION_BYTES as usize],
                    state: JobState::Fetching { fetch: seq },
                });
                self.tx.next_seq += 1;
            }
            let addr = ring + first as u64 * NOTIFICATION_BYTES;
            let len = (end - first) as u64 * NOTIFICATION_BYTES;
            let tag = Tag::TxNotifications { first: seq }.encode();
            if cx.dma_read(addr, len, "notification", tag).is_err() {
                self.counters.inc("dma_errors");
                self.tx_fetch_faulted(cx, seq);
            }
            first = end % entries;
        }
        self.pump_tx(cx);
    }

    /// Bytes pushed into the TX push window: a job whose data is here.
    pub(super) fn tx_pushed(&mut self, cx: &mut DeviceCtx<'_>, data: &[u8]) {
        self.counters.inc("tx_pushes");
        self.tx.jobs.push_back(Job {
            seq: self.tx.next_seq,
            from: JobFrom::Push,
            entry: [0; NOTIFICATION_BYTES as usize],
            state: JobState::Ready(data.to_vec()),
        });
        self.tx.next_seq += 1;
        self.pump_tx(cx);
    }

    /// The notifications of the jobs from `first` on arrived: read the data
    /// each names.
    pub(super) fn tx_notifications_fetched(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        first: u64,
        data: &[u8],
    ) {
        for (i, e) in data.chunks_exact(NOTIFICATION_BYTES as usize).enumerate() {
            let seq = first + i as u64;
            let Some(job) = self.tx.job_mut(seq) else {
                self.counters.inc("unexpected_dma_events");
                continue;
            };
            if !matches!(job.state, JobState::Fetching { fetch } if fetch == first) {
                self.counters.inc("unexpected_dma_events");
                continue;
            }
            job.entry.copy_from_slice(e);
            let n = TxNotification::new_unchecked(e);
            if n.signal() == 0 || n.is_empty() || n.len() > PIPE_BYTES {
                self.counters.inc("tx_bad_notifications");
                job.state = JobState::Failed;
                continue;
            }
            let tag = Tag::TxData { job: seq }.encode();
            job.state = match cx.dma_read(n.addr(), n.len(), "packet-data", tag) {
                Ok(()) => JobState::Reading,
                Err(_) => {
                    self.counters.inc("dma_errors");
                    self.counters.inc("tx_bad_notifications");
                    JobState::Failed
                }
            };
        }
        self.pump_tx(cx);
    }

    /// The read of the notifications of the jobs from `first` on failed.
    pub(super) fn tx_fetch_faulted(&mut self, cx: &mut DeviceCtx<'_>, first: u64) {
        let mut seq = first;
        while let Some(job) = self.tx.job_mut(seq) {
            if !matches!(job.state, JobState::Fetching { fetch } if fetch == first) {
                break;
            }
            job.state = JobState::Failed;
            self.counters.inc("drop.tx_bad_notification");
            seq += 1;
        }
        self.pump_tx(cx);
    }

    /// The data of job `seq` arrived.
    pub(super) fn tx_data_read(&mut self, cx: &mut DeviceCtx<'_>, seq: u64, data: &[u8]) {
        match self.tx.job_mut(seq) {
            Some(job) if matches!(job.state, JobState::Reading) => {
                job.state = JobState::Ready(data.to_vec());
            }
            _ => self.counters.inc("unexpected_dma_events"),
        }
        self.pump_tx(cx);
    }

    /// The data read of job `seq` failed.
    pub(super) fn tx_data_faulted(&mut self, cx: &mut DeviceCtx<'_>, seq: u64) {
        match self.tx.job_mut(seq) {
            Some(job) if matches!(job.state, JobState::Reading) => {
                job.state = JobState::Failed;
                self.counters.inc("drop.tx_bad_notification");
            }
            _ => self.counters.inc("unexpected_dma_events"),
        }
        self.pump_tx(cx);
    }

    /// The port has room again.
    pub(super) fn tx_port_ready(&mut self, cx: &mut DeviceCtx<'_>) {
        self.tx.waiting_for_port = false;
        self.pump_tx(cx);
    }

    /// Serve jobs from the oldest until one is still waiting for a read or
    /// the port is full.
    fn pump_tx(&mut self, cx: &mut DeviceCtx<'_>) {
        if self.tx.waiting_for_port {
            return;
        }
        while let Some(job) = self.tx.jobs.front_mut() {
            match &mut job.state {
                JobState::Fetching { .. } | JobState::Reading => return,
                JobState::Failed => job.state = JobState::Sending(VecDeque::new()),
                JobState::Ready(data) => {
                    let data = std::mem::take(data);
                    let partial = match job.from {
                        JobFrom::Notification { nb, .. } => &mut self.nbs[nb].tx_partial,
                        JobFrom::Push => &mut self.tx.push_partial,
                    };
                    let frames = parse(partial, &data, &mut self.tx.next_frame, &mut self.counters);
                    job.state = JobState::Sending(frames);
                }
                JobState::Sending(frames) => {
                    while let Some(frame) = frames.pop_front() {
                        match cx.send_frame(PORT, frame) {
                            Ok(_) => self.counters.inc("tx_frames"),
                            Err(frame) => {
                                // Kept, not dropped: the port takes it when
                                // it has room. An unconnected port never
                                // does, as a port without a link holds its
                                // queue.
                                frames.push_front(frame);
                                self.tx.waiting_for_port = true;
                                cx.wake_when_port_ready(PORT);
                                return;
                            }
                        }
                    }
                    if let Some(job) = self.tx.jobs.pop_front() {
                        self.complete(cx, &job);
                    }
                }
            }
        }
    }

    /// Overwrite `job`'s TX notification with its signal cleared.
    fn complete(&mut self, cx: &mut DeviceCtx<'_>, job: &Job) {
        let JobFrom::Notification { nb: nb_id, slot } = job.from else {
            self.counters.inc("tx_pushes_sent");
            return;
        };
        let mut entry = job.entry;
        TxNotification::new_unchecked(&mut entry[..]).set_signal(0);
        let nb = &self.nbs[nb_id];
        let addr = nb.tx_ring + slot as u64 * NOTIFICATION_BYTES;
        let tag = Tag::TxCompletion { nb: nb_id }.encode();
        match cx.dma_write(addr, &entry, "notification", tag) {
            Ok(_) => self.counters.inc("notifications.tx_completion"),
            Err(_) => self.counters.inc("dma_errors"),
        }
    }
}

/// The frames in `partial ++ data`, a notification buffer's TX byte stream:
/// each starts on a 64-byte boundary and is as long as its IPv4 header
/// says. A frame the transfer cuts short is kept in `partial` for the next
/// transfer; a transfer that ends inside a frame's padding ends the frame
/// there (software may name a frame's exact length). A quantum that does
/// not start a frame is skipped and counted (`drop.tx_malformed`).
fn parse(
    partial: &mut Vec<u8>,
    data: &[u8],
    next_id: &mut u64,
    counters: &mut Counters,
) -> VecDeque<Frame> {
    let joined;
    let stream: &[u8] = if partial.is_empty() {
        data
    } else {
        partial.extend_from_slice(data);
        joined = std::mem::take(partial);
        &joined
    };
    let mut frames = VecDeque::new();
    let mut at = 0usize;
    while at < stream.len() {
        let rest = &stream[at..];
        let Some(len) = frame_len_from_header(rest) else {
            if rest.len() >= 18 {
                counters.inc("drop.tx_malformed");
                at += LINE_BYTES as usize;
                continue;
            }
            // Too short to tell: maybe a header the next transfer completes.
            break;
        };
        if rest.len() < len {
            break;
        }
        frames.push_back(Frame::new(rest[..len].to_vec(), *next_id));
        *next_id += 1;
        at += (padded_len(len as u64) as usize).min(rest.len());
    }
    *partial = stream[at.min(stream.len())..].to_vec();
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Macs, build_udp};
    use crate::trafficgen::synthetic_flow;

    fn frame(size: usize) -> Vec<u8> {
        build_udp(
            Macs::default(),
            synthetic_flow(1),
            &vec![7; size - 46],
            size,
        )
        .unwrap()
    }

    #[test]
    fn frames_are_joined_across_transfers_and_garbage_is_skipped() {
        let (a, b) = (frame(200), frame(100));
        let mut stream = a.clone();
        stream.resize(256, 0);
        stream.extend_from_slice(&[0xff; 64]);
        stream.extend_from_slice(&b);
        let mut partial = Vec::new();
        let mut id = 0;
        let mut c = Counters::new();
        let first = parse(&mut partial, &stream[..150], &mut id, &mut c);
        assert!(first.is_empty());
        assert_eq!(partial.len(), 150);
        let rest: Vec<Vec<u8>> = parse(&mut partial, &stream[150..], &mut id, &mut c)
            .into_iter()
            .map(|f| f.bytes)
            .collect();
        assert_eq!(rest, vec![a, b]);
        assert!(partial.is_empty());
        assert_eq!(c.get("drop.tx_malformed"), 1);
        assert_eq!(id, 2);
    }
}
