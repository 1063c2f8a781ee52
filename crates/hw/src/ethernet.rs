//! A point-to-point Ethernet link, one direction of it: serialization at the
//! line rate, 20 bytes of preamble, start-of-frame delimiter and
//! inter-frame gap per frame, propagation delay, and a bounded transmit
//! queue that drops (and counts) frames offered while it is full.
//!
//! [`EthTx`] is the pure timing model (handed `now`, answers with times);
//! [`Wire`] joins it to a receiver — a [`FrameSink`]: a task's
//! [`Mailbox`], or a device's port in a host's fabric — and an optional
//! pcap capture. Invariant, tested: every frame offered to a wire is either
//! delivered to the receiver or counted under a drop reason.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use nextio_engine::{Counters, Duration, Mailbox, Rate, Serializer, Sim, Time, TrackId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::packet::Frame;
use crate::pcap::Capture;

/// Preamble (7) + start-of-frame delimiter (1) + minimum inter-frame gap
/// (12) bytes that accompany every frame on the wire (IEEE 802.3 §4.4.2).
pub const PER_FRAME_OVERHEAD_BYTES: u64 = 20;

/// Configuration of one direction of a link: a preset's `[ethernet]`,
/// where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    #[serde(
        rename = "rate_bits_per_s",
        with = "nextio_engine::time::as_bits_per_s"
    )]
    pub rate: Rate,
    /// Signal propagation delay.
    #[serde(rename = "propagation_ps")]
    pub propagation: Duration,
    /// Frames that may wait for the line while another is sent; more are dropped.
    pub queue_frames: usize,
}

impl Default for LinkConfig {
    /// The root preset's Ethernet port.
    fn default() -> Self {
        nextio_presets::root_section("ethernet")
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("transmit queue full ({0} frames)")]
    QueueFull(usize),
}

/// The timing of one transmitter.
#[derive(Clone, Debug)]
pub struct EthTx {
    config: LinkConfig,
    serializer: Serializer,
    /// When the line finishes the last accepted frame.
    busy_until: Time,
    /// Start times of accepted frames, oldest first; those not yet started
    /// are the queue.
    starts: VecDeque<Time>,
    /// When traced: each frame that left the queue, as `(its start, the
    /// depth after it)`, until the wire draws them.
    left_queue: Option<Vec<(Time, usize)>>,
}

impl EthTx {
    pub fn new(config: LinkConfig) -> EthTx {
        EthTx {
            serializer: Serializer::new(config.rate, 1, 1),
            config,
            busy_until: Time::ZERO,
            starts: VecDeque::new(),
            left_queue: None,
        }
    }

    /// Keep, from now on, when each queued frame starts and the depth it
    /// leaves ([`EthTx::take_left_queue`]).
    pub fn log_queue(&mut self) {
        self.left_queue.get_or_insert_with(Vec::new);
    }

    /// The queue departures logged since the last call.
    pub fn take_left_queue(&mut self) -> Vec<(Time, usize)> {
        self.left_queue
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Frames accepted but not yet on the line at `now`.
    pub fn queued(&mut self, now: Time) -> usize {
        while let Some(&s) = self.starts.front().filter(|s| **s <= now) {
            self.starts.pop_front();
            if let Some(log) = &mut self.left_queue {
                log.push((s, self.starts.len()));
            }
        }
        self.starts.len()
    }

    /// The earliest time at which a frame offered would be accepted.
    pub fn next_accept(&mut self, now: Time) -> Time {
        if self.queued(now) < self.config.queue_frames.max(1) {
            now
        } else {
            // The queue drains one frame each time one starts.
            self.starts[self.starts.len() - self.config.queue_frames.max(1)]
        }
    }

    /// Accept a frame of `frame_bytes` (FCS included) at `now`; returns
    /// `(start, arrival)`: when its first bit leaves and when its last bit
    /// reaches the far end.
    pub fn transmit(&mut self, now: Time, frame_bytes: u64) -> Result<(Time, Time), LinkError> {
        if self.queued(now) >= self.config.queue_frames.max(1) {
            return Err(LinkError::QueueFull(self.config.queue_frames));
        }
        if now >= self.busy_until {
            // The line went idle: no fraction of a picosecond carries over.
            self.serializer.reset();
        }
        let start = now.max(self.busy_until);
        self.busy_until = start + self.serializer.next(frame_bytes + PER_FRAME_OVERHEAD_BYTES);
        if start > now {
            self.starts.push_back(start);
        }
        Ok((start, self.busy_until + self.config.propagation))
    }

    /// Closed-form frames per second at line rate for `frame_bytes` frames.
    pub fn line_rate_fps(rate: Rate, frame_bytes: u64) -> f64 {
        rate.bits_per_s() as f64 / (8.0 * (frame_bytes + PER_FRAME_OVERHEAD_BYTES) as f64)
    }
}

/// One direction of a link inside a simulation: a transmitter feeding a
/// receiver's mailbox, with counters and optional capture.
/// Where a wire delivers: whatever receives frames at a time.
pub trait FrameSink {
    /// `frame`'s last bit arrives at `at` (never before now).
    fn deliver(&self, at: Time, frame: Frame);
}

impl FrameSink for Mailbox<Frame> {
    fn deliver(&self, at: Time, frame: Frame) {
        self.push_at(at, frame);
    }
}

pub struct Wire {
    sim: Sim,
    tx: RefCell<EthTx>,
    rx: Rc<dyn FrameSink>,
    counters: RefCell<Counters>,
    capture: RefCell<Option<Capture>>,
    /// The link is up (a cable in both ends). A frame sent on a link
    /// that is down is lost, counted as `drop.link_down`.
    up: std::cell::Cell<bool>,
    /// The wire's track in the trace, if traced: a span per frame for the
    /// time its bits are on the line, an instant per frame lost.
    track: std::cell::OnceCell<TrackId>,
}

impl Wire {
    /// A wire delivering into `rx`.
    pub fn new(sim: &Sim, config: LinkConfig, rx: Rc<dyn FrameSink>) -> Wire {
        Wire {
            sim: sim.clone(),
            tx: RefCell::new(EthTx::new(config)),
            rx,
            counters: RefCell::new(Counters::new()),
            capture: RefCell::new(None),
            up: std::cell::Cell::new(true),
            track: std::cell::OnceCell::new(),
        }
    }

    /// Record the wire's frames on `track` of the simulation's trace, and
    /// its transmit queue's depth as the track's `queue` counter.
    pub fn trace_on(&self, track: TrackId) {
        let _ = self.track.set(track);
        self.tx.borrow_mut().log_queue();
    }

    /// Draw the queue's depth: each departure the transmitter logged (at
    /// its start), then the depth now. Departures after the wire's last
    /// offer are not drawn: the wire learns of them only when next used.
    fn trace_queue(&self, now: Time) {
        let Some(t) = self.track.get() else { return };
        let mut tx = self.tx.borrow_mut();
        let depth = tx.queued(now);
        for (at, left) in tx.take_left_queue() {
            self.sim.trace_counter(*t, "queue", at, left as u64);
        }
        self.sim.trace_counter(*t, "queue", now, depth as u64);
    }

    fn trace_drop(&self, why: &'static str) {
        if let Some(t) = self.track.get() {
            self.sim
                .trace_instant(*t, why, "wire.drop", self.sim.now(), None);
        }
    }

    /// Take the link down (a cable pulled) or bring it back.
    pub fn set_up(&self, up: bool) {
        self.up.set(up);
    }

    pub fn is_up(&self) -> bool {
        self.up.get()
    }

    /// Record every accepted frame, stamped with the time its first bit left.
    pub fn set_capture(&self, capture: Capture) {
        *self.capture.borrow_mut() = Some(capture);
    }

    /// Take the capture back (to finish writing it).
    pub fn take_capture(&self) -> Option<Capture> {
        self.capture.borrow_mut().take()
    }

    /// Offer `frame` now. Accepted frames arrive in the receiver's mailbox
    /// at their arrival time; a full queue drops and counts the frame.
    pub fn send(&self, frame: Frame) -> Result<Time, LinkError> {
        self.counters.borrow_mut().inc("offered");
        self.transmit(frame).map_err(|_| {
            self.counters.borrow_mut().inc("drop.queue_full");
            self.trace_drop("drop.queue_full");
            LinkError::QueueFull(self.tx.borrow().config().queue_frames)
        })
    }

    /// Send `frame` if the queue has room; otherwise hand it back, neither
    /// offered nor dropped (the sender keeps it and decides).
    pub fn try_send(&self, frame: Frame) -> Result<Time, Frame> {
        let sent = self.transmit(frame);
        if sent.is_ok() {
            self.counters.borrow_mut().inc("offered");
        }
        sent
    }

    fn transmit(&self, frame: Frame) -> Result<Time, Frame> {
        let now = self.sim.now();
        let frame_bytes = frame.frame_bytes() as u64;
        let mut c = self.counters.borrow_mut();
        if !self.up.get() {
            // The sender's MAC puts it out; nothing is at the other end.
            c.inc("drop.link_down");
            self.trace_drop("drop.link_down");
            return Ok(now);
        }
        let sent = self.tx.borrow_mut().transmit(now, frame_bytes);
        match sent {
            Ok((start, arrival)) => {
                c.inc("accepted");
                c.add("accepted_bytes", frame_bytes);
                if let Some(cap) = self.capture.borrow_mut().as_mut() {
                    cap.record(start, &frame.bytes);
                }
                if let Some(t) = self.track.get() {
                    // On the line from the first bit to the last; the
                    // propagation delay after it is the link's constant.
                    let propagation = self.tx.borrow().config().propagation;
                    let on_line = (arrival - start).saturating_sub(propagation);
                    self.sim.trace_span_arg(
                        *t,
                        "frame",
                        "wire",
                        start,
                        on_line,
                        ("bytes", frame_bytes),
                    );
                }
                drop(c);
                self.trace_queue(now);
                self.rx.deliver(arrival, frame);
                Ok(arrival)
            }
            Err(_) => Err(frame),
        }
    }

    /// Whether the transmit queue can take a frame now.
    pub fn has_room(&self) -> bool {
        self.next_accept() <= self.sim.now()
    }

    /// The earliest time a frame offered would be accepted.
    pub fn next_accept(&self) -> Time {
        self.tx.borrow_mut().next_accept(self.sim.now())
    }

    /// Wait until the queue has room.
    pub async fn wait_for_room(&self) {
        let t = self.next_accept();
        self.sim.sleep_until(t).await;
    }

    pub fn counters(&self) -> Counters {
        self.counters.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_to_back_64b_frames_take_6720ps_each() {
        let mut tx = EthTx::new(LinkConfig {
            queue_frames: 10,
            ..LinkConfig::default()
        });
        let (s0, a0) = tx.transmit(Time::ZERO, 64).unwrap();
        let (s1, _) = tx.transmit(Time::ZERO, 64).unwrap();
        assert_eq!(s0, Time::ZERO);
        assert_eq!(s1, Time(6720));
        assert_eq!(a0, Time(6720 + 5000));
    }

    #[test]
    fn a_logged_queue_records_each_departure_with_the_depth_it_leaves() {
        let mut tx = EthTx::new(LinkConfig {
            queue_frames: 10,
            ..LinkConfig::default()
        });
        tx.log_queue();
        // One on the line at once, two queued behind it.
        let starts: Vec<Time> = (0..3)
            .map(|_| tx.transmit(Time::ZERO, 64).unwrap().0)
            .collect();
        assert_eq!(tx.queued(Time::ZERO), 2);
        assert!(tx.take_left_queue().is_empty());
        assert_eq!(tx.queued(starts[2]), 0);
        assert_eq!(tx.take_left_queue(), vec![(starts[1], 1), (starts[2], 0)]);
        assert!(tx.take_left_queue().is_empty(), "taken once");
    }

    #[test]
    fn full_queue_drops() {
        let mut tx = EthTx::new(LinkConfig {
            queue_frames: 2,
            ..LinkConfig::default()
        });
        tx.transmit(Time::ZERO, 1518).unwrap(); // on the line at once
        tx.transmit(Time::ZERO, 1518).unwrap(); // queued
        tx.transmit(Time::ZERO, 1518).unwrap(); // queued
        assert_eq!(tx.transmit(Time::ZERO, 1518), Err(LinkError::QueueFull(2)));
        // Once the first frame is done the second starts and room opens up.
        let t = tx.next_accept(Time::ZERO);
        assert_eq!(t, Time((1538 * 80) as u64));
        assert!(tx.transmit(t, 64).is_ok());
    }

    #[test]
    fn idle_line_starts_immediately() {
        let mut tx = EthTx::new(LinkConfig::default());
        tx.transmit(Time::ZERO, 64).unwrap();
        let (s, _) = tx.transmit(Time(1_000_000), 64).unwrap();
        assert_eq!(s, Time(1_000_000));
    }

    #[test]
    fn line_rate_closed_form() {
        let fps = EthTx::line_rate_fps(Rate::gbps(100), 64);
        assert!((fps - 148_809_523.8).abs() < 1.0);
    }
}
