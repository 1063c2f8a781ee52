//! A hardware traffic generator and receiver, in the manner of EnsōGen: it
//! sits at the far end of a link from the system under test, sends real
//! Ethernet/IPv4/UDP frames at a set rate, and checks and timestamps what
//! comes back.
//!
//! Frames come from a synthetic spec (a size or a uniform size range, a
//! number of flows) or are replayed — a list of frames, or a captured
//! [`Trace`] whose frames keep their sizes and flows. Inter-departure times
//! are constant, exponential (Poisson arrivals), or a trace's own
//! inter-arrival times scaled to the offered rate. Each frame's UDP payload
//! carries, in its first 17 bytes, the frame's sequence number (8 bytes, big
//! endian), its transmit timestamp in picoseconds (8 bytes) and a counter
//! byte (zeroed on departure) that an echo server increments; the receiver
//! reads these *bytes* back — not simulator metadata — to compute round-trip
//! times and to verify that the echo touched the payload.
//!
//! Rates are line rates: `rate_gbps` counts each frame's bytes plus the 20
//! bytes of preamble, start delimiter and inter-frame gap, so 100 Gb/s is
//! 148.8 Mpps of 64-byte frames. Invariant: `sent = received + lost`, where
//! `received` counts every frame that came back (intact or not).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::Arc;

use nextio_engine::{Duration, LatencyHist, Mailbox, Sim, SimRng, StatsReport, Time};
use thiserror::Error;

use crate::ethernet::{PER_FRAME_OVERHEAD_BYTES, Wire};
use crate::packet::{self, FlowKey, Frame, Macs, PacketError};

/// Payload bytes the generator uses: sequence, timestamp, echo counter.
pub const STAMP_BYTES: usize = 17;
/// Offset of the byte an echo server increments, within the UDP payload.
pub const ECHO_BYTE_OFFSET: usize = 16;

/// Frame sizes to generate (FCS included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeSpec {
    Fixed(usize),
    /// Uniform over the inclusive range.
    Uniform(usize, usize),
}

/// Where frames come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// Synthetic UDP frames over `flows` distinct 5-tuples, cycled in turn.
    Synthetic { sizes: SizeSpec, flows: u32 },
    /// Frames replayed in order, looped as needed.
    /// Their timing is set by the generator's rate.
    Replay(Vec<Vec<u8>>),
    /// A captured trace replayed in order, looped as needed, shared between
    /// generators without copying; with [`Arrivals::Recorded`] departures
    /// keep the capture's spacing.
    Trace(Arc<Trace>),
}

/// How departures are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrivals {
    Constant,
    /// The constant rate's gaps, each stretched or shrunk by a seeded
    /// uniform factor in `1 ± jitter_ppm / 10⁶` — the mean rate is kept,
    /// but runs with different seeds see different interleavings (a
    /// hardware generator's clock is never perfectly even).
    Jittered {
        jitter_ppm: u32,
    },
    /// Exponential inter-departure times with the configured mean rate.
    Poisson,
    /// A [`Source::Trace`]'s own inter-arrival times, all scaled by one
    /// factor so that the mean line rate over a lap of the trace is the
    /// configured rate (as tcpreplay's multiplier does). A trace whose
    /// frames all share one timestamp departs at a constant rate.
    Recorded,
}

/// Frames read from a capture to replay: every one an Ethernet/IPv4/UDP
/// frame the generator can stamp, with the time it was captured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    frames: Vec<Vec<u8>>,
    /// Capture time of each frame, relative to the capture's first record.
    times: Vec<Time>,
}

/// Most frame bytes a [`Trace`] keeps (256 MiB): a longer capture is
/// replayed from its first frames, so memory is bounded whatever the file.
pub const MAX_TRACE_BYTES: usize = 256 << 20;
/// Most frames a [`Trace`] keeps (2^20, a million).
pub const MAX_TRACE_FRAMES: usize = 1 << 20;

/// Why a captured frame cannot be replayed, as counted by [`Trace::push`].
pub const SKIP_REASONS: [&str; 9] = [
    "runt",
    "oversize",
    "non_ipv4",
    "malformed",
    "fragment",
    "non_udp",
    "bad_checksum",
    "short_payload",
    "trace_full",
];

/// Why `bytes` (a frame without FCS) cannot be replayed by the generator,
/// or `None` if it can: it must be an unfragmented Ethernet II / IPv4 / UDP
/// frame of at most [`packet::MAX_FRAME_BYTES`], with valid checksums and
/// room for the stamp in its payload.
pub fn replay_skip_reason(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() < 14 {
        return Some("runt");
    }
    if packet::frame_bytes(bytes.len()) > packet::MAX_FRAME_BYTES {
        return Some("oversize");
    }
    // IPv6, ARP, VLAN-tagged frames, LLDP, …
    if bytes[12..14] != [0x08, 0x00] {
        return Some("non_ipv4");
    }
    let Some(&vihl) = bytes.get(14) else {
        return Some("runt");
    };
    let ihl = (vihl & 0x0f) as usize * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return Some("malformed");
    }
    if bytes.len() < 14 + ihl {
        return Some("runt");
    }
    let total = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
    if total < ihl {
        return Some("malformed");
    }
    if bytes.len() < 14 + total {
        return Some("runt");
    }
    let frag = u16::from_be_bytes([bytes[20], bytes[21]]);
    if frag & 0x2000 != 0 || frag & 0x1fff != 0 {
        return Some("fragment");
    }
    if bytes[23] != FlowKey::PROTOCOL {
        return Some("non_udp");
    }
    match packet::parse_udp(bytes) {
        Ok(v) if v.payload_len < STAMP_BYTES => Some("short_payload"),
        Ok(_) => None,
        Err(PacketError::BadIpChecksum | PacketError::BadUdpChecksum) => Some("bad_checksum"),
        Err(_) => Some("malformed"),
    }
}

impl Trace {
    pub fn new() -> Trace {
        Trace::default()
    }
    /// Keep `bytes`, captured at `time`, if the generator can replay it
    /// and the trace has room; otherwise say why not.
    pub fn push(&mut self, time: Time, bytes: &[u8]) -> Result<(), &'static str> {
        if let Some(reason) = replay_skip_reason(bytes) {
            return Err(reason);
        }
        if self.frames.len() >= MAX_TRACE_FRAMES || self.bytes() + bytes.len() > MAX_TRACE_BYTES {
            return Err("trace_full");
        }
        self.frames.push(bytes.to_vec());
        self.times.push(time);
        Ok(())
    }
    pub fn len(&self) -> usize {
        self.frames.len()
    }
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
    pub fn frames(&self) -> &[Vec<u8>] {
        &self.frames
    }
    /// Stored bytes of every frame.
    pub fn bytes(&self) -> usize {
        self.frames.iter().map(Vec::len).sum()
    }
    /// Mean frame size, FCS included (0 for an empty trace).
    pub fn mean_frame_bytes(&self) -> f64 {
        if self.frames.is_empty() {
            return 0.0;
        }
        self.frames
            .iter()
            .map(|f| packet::frame_bytes(f.len()) as f64)
            .sum::<f64>()
            / self.frames.len() as f64
    }
    /// Frames per distinct UDP 5-tuple, the flows RSS spreads.
    pub fn flows(&self) -> BTreeMap<FlowKey, u64> {
        let mut flows = BTreeMap::new();
        for f in &self.frames {
            if let Ok(v) = packet::parse_udp(f) {
                *flows.entry(v.flow).or_default() += 1;
            }
        }
        flows
    }
    /// Recorded gap after frame `i` (picoseconds): to the next frame, or
    /// the trace's mean gap after the last, so a looped trace keeps its
    /// mean spacing. Captures out of time order give zero gaps.
    fn gap_ps(&self, i: usize) -> u64 {
        match self.times.get(i + 1) {
            Some(next) => (*next - self.times[i]).ps(),
            None => self.span_ps() / (self.times.len().max(2) - 1) as u64,
        }
    }
    fn span_ps(&self) -> u64 {
        match (self.times.first(), self.times.last()) {
            (Some(a), Some(b)) => (*b - *a).ps(),
            _ => 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrafficConfig {
    pub source: Source,
    pub arrivals: Arrivals,
    /// Offered line rate in Gb/s (frame bytes + 20 per frame).
    pub rate_gbps: f64,
    /// Frames to send and measure.
    pub frames: u64,
    /// Frames sent first, at the same rate, and left out of every statistic
    /// (RFC 2544 §23's trial preparation): they bring the system under test
    /// to steady state (buffer pools cycled once, caches warm).
    pub warmup_frames: u64,
    pub seed: u64,
}

#[derive(Debug, Error, PartialEq)]
pub enum TrafficError {
    #[error("rate must be a positive number of Gb/s, got {0}")]
    BadRate(f64),
    #[error("bad frame size: {0}")]
    Packet(#[from] PacketError),
    #[error("the replay trace is empty")]
    EmptyTrace,
    #[error("synthetic traffic needs at least one flow")]
    NoFlows,
    #[error("{warmup} warm-up + {frames} measured frames overflow a frame count")]
    TooManyFrames { warmup: u64, frames: u64 },
    #[error("recorded inter-arrival times need a captured trace to replay")]
    RecordedNeedsTrace,
}

impl TrafficConfig {
    /// Frames the generator sends in all (warm-up included), if that count
    /// fits.
    pub fn total_frames(&self) -> Result<u64, TrafficError> {
        self.warmup_frames
            .checked_add(self.frames)
            .ok_or(TrafficError::TooManyFrames {
                warmup: self.warmup_frames,
                frames: self.frames,
            })
    }
    /// Line bytes (frame + 20 per frame) of everything the generator sends,
    /// warm-up included, exactly for constant sizes and traces, on average
    /// for uniform sizes; `None` if the count does not fit.
    pub fn line_bytes(&self) -> Option<u128> {
        let n = self.total_frames().ok()? as u128;
        let line =
            |stored: usize| (packet::frame_bytes(stored) as u64 + PER_FRAME_OVERHEAD_BYTES) as u128;
        let laps = |frames: &[Vec<u8>]| {
            let len = frames.len().max(1) as u128;
            let lap: u128 = frames.iter().map(|f| line(f.len())).sum();
            let rest: u128 = frames
                .iter()
                .take((n % len) as usize)
                .map(|f| line(f.len()))
                .sum();
            (n / len).checked_mul(lap)?.checked_add(rest)
        };
        match &self.source {
            Source::Synthetic { sizes, .. } => {
                let mean = match sizes {
                    SizeSpec::Fixed(s) => *s as u128,
                    SizeSpec::Uniform(lo, hi) => (*lo as u128 + *hi as u128) / 2,
                };
                n.checked_mul(mean + PER_FRAME_OVERHEAD_BYTES as u128)
            }
            Source::Replay(frames) => laps(frames),
            Source::Trace(t) => laps(&t.frames),
        }
    }
    /// Simulated time to offer everything at the configured rate; `None`
    /// if it does not fit a [`Duration`].
    pub fn offered_time(&self) -> Option<Duration> {
        if !(self.rate_gbps.is_finite() && self.rate_gbps > 0.0) {
            return None;
        }
        let ns = self.line_bytes()? as f64 * 8.0 / self.rate_gbps;
        (ns * 1e3 < u64::MAX as f64).then(|| Duration::from_ns_f64(ns))
    }
}

/// What the generator saw, over the measured frames (warm-up excluded).
#[derive(Clone, Debug, Default)]
pub struct TrafficStats {
    /// Warm-up frames sent and received (not in any other statistic).
    pub warmup_sent: u64,
    pub warmup_received: u64,
    pub sent: u64,
    pub sent_bytes: u64,
    pub received: u64,
    /// Received frames whose stamp did not parse or whose checksums failed.
    pub corrupt: u64,
    /// Received frames whose echo counter byte was not incremented once.
    pub not_echoed: u64,
    /// Received frames with a sequence number lower than one already seen.
    pub reordered: u64,
    pub rtt: LatencyHist,
    pub first_rx: Option<Time>,
    pub last_rx: Option<Time>,
    pub first_tx: Option<Time>,
    pub last_tx: Option<Time>,
    /// Line bytes (frame + 20) of frames received, for achieved rate.
    pub received_line_bytes: u64,
    highest_seq: Option<u64>,
}

impl TrafficStats {
    /// Add what the generator saw to a stats report under `prefix`: its
    /// frame counts and the round-trip histogram.
    pub fn report(&self, prefix: &str, r: &mut StatsReport) {
        for (name, n) in [
            ("warmup_sent", self.warmup_sent),
            ("warmup_received", self.warmup_received),
            ("sent", self.sent),
            ("sent_bytes", self.sent_bytes),
            ("received", self.received),
            ("received_line_bytes", self.received_line_bytes),
            ("lost", self.lost()),
            ("corrupt", self.corrupt),
            ("not_echoed", self.not_echoed),
            ("reordered", self.reordered),
        ] {
            r.count(format!("{prefix}.{name}"), n);
        }
        r.histogram(&format!("{prefix}.rtt"), &self.rtt);
    }

    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }
    pub fn loss_ratio(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.lost() as f64 / self.sent as f64
        }
    }
    /// Achieved line rate of the returning traffic, over the sending window
    /// (so a system that drops shows a lower rate, one that delays does not).
    pub fn achieved_gbps(&self) -> f64 {
        match (self.first_tx, self.last_tx) {
            (Some(a), Some(b)) if b > a => {
                let per_frame = (b - a).as_secs_f64() / (self.sent.max(2) - 1) as f64;
                self.received_line_bytes as f64 * 8.0 / (per_frame * self.sent as f64) / 1e9
            }
            _ => 0.0,
        }
    }
}

/// A running generator: its statistics fill in as the simulation runs.
pub struct TrafficGen {
    pub stats: Rc<RefCell<TrafficStats>>,
}

/// The flow of synthetic frame number `i` of `flows`.
pub fn synthetic_flow(i: u32) -> FlowKey {
    FlowKey {
        src_ip: Ipv4Addr::new(192, 168, (i >> 8) as u8, i as u8),
        dst_ip: Ipv4Addr::new(10, 0, 0, 1),
        src_port: 10_000u16.wrapping_add(i as u16),
        dst_port: 7,
    }
}

fn write_stamp(bytes: &mut [u8], seq: u64, t: Time) -> bool {
    let Ok(v) = packet::parse_udp(bytes) else {
        return false;
    };
    if v.payload_len < STAMP_BYTES {
        return false;
    }
    let o = v.payload_offset;
    bytes[o..o + 8].copy_from_slice(&seq.to_be_bytes());
    bytes[o + 8..o + 16].copy_from_slice(&t.ps().to_be_bytes());
    // A replayed frame may carry any byte here (a captured echo's, say):
    // the receiver's check needs it to leave as zero.
    bytes[o + ECHO_BYTE_OFFSET] = 0;
    packet::refresh_udp_checksum(bytes).is_ok()
}

/// Read `(seq, tx time, echo counter)` from a returned frame.
pub fn read_stamp(bytes: &[u8]) -> Option<(u64, Time, u8)> {
    let v = packet::parse_udp(bytes).ok()?;
    if v.payload_len < STAMP_BYTES {
        return None;
    }
    let o = v.payload_offset;
    let seq = u64::from_be_bytes(bytes[o..o + 8].try_into().ok()?);
    let t = u64::from_be_bytes(bytes[o + 8..o + 16].try_into().ok()?);
    Some((seq, Time(t), bytes[o + ECHO_BYTE_OFFSET]))
}

impl TrafficGen {
    /// Start sending on `out` and receiving from `inbox` (both owned by the
    /// simulation); returns at once.
    pub fn start(
        sim: &Sim,
        config: TrafficConfig,
        out: Rc<Wire>,
        inbox: Rc<Mailbox<Frame>>,
    ) -> Result<TrafficGen, TrafficError> {
        if !(config.rate_gbps.is_finite() && config.rate_gbps > 0.0) {
            return Err(TrafficError::BadRate(config.rate_gbps));
        }
        let total = config.total_frames()?;
        let templates = templates(&config.source)?;
        let stats = Rc::new(RefCell::new(TrafficStats::default()));
        let seen = stats.clone();
        let name = format!("trafficgen{}", sim.new_component_index("trafficgen"));
        sim.on_stats(move |r| seen.borrow().report(&name, r));
        let mut rng = SimRng::new(config.seed).fork("trafficgen");
        let sizes = match &config.source {
            Source::Synthetic { sizes, .. } => Some(*sizes),
            Source::Replay(_) | Source::Trace(_) => None,
        };
        // Recorded gaps are scaled so one lap of the trace offers its line
        // bytes at the configured rate.
        let recorded = match (&config.arrivals, &config.source) {
            (Arrivals::Recorded, Source::Trace(t)) => {
                let lap_ps: u64 = (0..t.len()).map(|i| t.gap_ps(i)).sum();
                let lap_bits: f64 = t
                    .frames
                    .iter()
                    .map(|f| {
                        (packet::frame_bytes(f.len()) as u64 + PER_FRAME_OVERHEAD_BYTES) as f64
                            * 8.0
                    })
                    .sum();
                (lap_ps > 0).then(|| {
                    (
                        t.clone(),
                        lap_bits / (config.rate_gbps * 1e9) / lap_ps as f64,
                    )
                })
            }
            (Arrivals::Recorded, _) => return Err(TrafficError::RecordedNeedsTrace),
            _ => None,
        };

        let (s, st) = (sim.clone(), stats.clone());
        sim.spawn(async move {
            let start = s.now();
            let mut next = start;
            // The schedule is kept in absolute time from the start (real
            // nanoseconds, summed frame by frame), so rounding never
            // accumulates and mixed sizes keep the offered rate.
            let mut scheduled_ns = 0.0f64;
            let warmup = config.warmup_frames;
            for seq in 0..total {
                s.sleep_until(next).await;
                let k = (seq % templates.len() as u64) as usize;
                let mut bytes = match sizes {
                    Some(SizeSpec::Uniform(lo, hi)) => {
                        let size = lo + rng.below((hi - lo + 1) as u64) as usize;
                        let flow = synthetic_flow(k as u32);
                        packet::build_udp(Macs::default(), flow, &[], size)
                            .unwrap_or_else(|_| templates.get(0).to_vec())
                    }
                    _ => templates.get(k).to_vec(),
                };
                write_stamp(&mut bytes, seq, s.now());
                let line_bytes =
                    (packet::frame_bytes(bytes.len()) as u64 + PER_FRAME_OVERHEAD_BYTES) as f64;
                let mut frame = Frame::new(bytes, seq);
                frame.tx_timestamp_ps = s.now().ps();
                {
                    let mut st = st.borrow_mut();
                    if seq < warmup {
                        st.warmup_sent += 1;
                    } else {
                        st.sent += 1;
                        st.sent_bytes += frame.frame_bytes() as u64;
                        st.first_tx.get_or_insert(s.now());
                        st.last_tx = Some(s.now());
                    }
                }
                // The generator's own port never queues: it paces itself.
                let _ = out.send(frame);
                let mean_gap_s = line_bytes * 8.0 / (config.rate_gbps * 1e9);
                let gap_s = match (&config.arrivals, &recorded) {
                    (Arrivals::Poisson, _) => rng.exp(mean_gap_s),
                    (Arrivals::Jittered { jitter_ppm }, _) => {
                        let jitter = f64::from((*jitter_ppm).min(1_000_000)) / 1e6;
                        mean_gap_s * (1.0 + jitter * (2.0 * rng.unit() - 1.0))
                    }
                    (Arrivals::Recorded, Some((t, scale))) => t.gap_ps(k) as f64 * scale,
                    _ => mean_gap_s,
                };
                scheduled_ns += gap_s * 1e9;
                next = (start + Duration::from_ns_f64(scheduled_ns)).max(next);
            }
        });

        let (s, st) = (sim.clone(), stats.clone());
        let warmup = config.warmup_frames;
        sim.spawn(async move {
            loop {
                let frame: Frame = inbox.recv().await;
                let now = s.now();
                let mut st = st.borrow_mut();
                // Warm-up frames are recognised by the sequence number in
                // their bytes; a frame too mangled to read is measured.
                if read_stamp(&frame.bytes).is_some_and(|(seq, _, _)| seq < warmup) {
                    st.warmup_received += 1;
                    continue;
                }
                st.received += 1;
                st.received_line_bytes += frame.frame_bytes() as u64 + PER_FRAME_OVERHEAD_BYTES;
                st.first_rx.get_or_insert(now);
                st.last_rx = Some(now);
                match read_stamp(&frame.bytes) {
                    Some((seq, sent_at, counter)) => {
                        st.rtt.record(now - sent_at);
                        if counter != 1 {
                            st.not_echoed += 1;
                        }
                        if st.highest_seq.is_some_and(|h| seq < h) {
                            st.reordered += 1;
                        } else {
                            st.highest_seq = Some(seq);
                        }
                    }
                    None => st.corrupt += 1,
                }
            }
        });
        Ok(TrafficGen { stats })
    }
}

/// The frames a generator cycles through: built, or shared with a trace.
enum Templates {
    Owned(Vec<Vec<u8>>),
    Shared(Arc<Trace>),
}

impl Templates {
    fn len(&self) -> usize {
        match self {
            Templates::Owned(v) => v.len(),
            Templates::Shared(t) => t.len(),
        }
    }
    fn get(&self, i: usize) -> &[u8] {
        match self {
            Templates::Owned(v) => &v[i],
            Templates::Shared(t) => &t.frames[i],
        }
    }
}

fn templates(source: &Source) -> Result<Templates, TrafficError> {
    if let Source::Trace(t) = source {
        if t.is_empty() {
            return Err(TrafficError::EmptyTrace);
        }
        return Ok(Templates::Shared(t.clone()));
    }
    build_templates(source).map(Templates::Owned)
}

fn build_templates(source: &Source) -> Result<Vec<Vec<u8>>, TrafficError> {
    match source {
        Source::Synthetic { sizes, flows } => {
            if *flows == 0 {
                return Err(TrafficError::NoFlows);
            }
            let size = match sizes {
                SizeSpec::Fixed(s) => *s,
                SizeSpec::Uniform(lo, hi) => {
                    packet::build_udp(Macs::default(), synthetic_flow(0), &[], *hi)?;
                    *lo
                }
            };
            (0..*flows)
                .map(|i| {
                    Ok(packet::build_udp(
                        Macs::default(),
                        synthetic_flow(i),
                        &[],
                        size,
                    )?)
                })
                .collect()
        }
        Source::Replay(frames) if frames.is_empty() => Err(TrafficError::EmptyTrace),
        Source::Replay(frames) => Ok(frames.clone()),
        Source::Trace(t) => Ok(t.frames.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethernet::LinkConfig;

    /// A loopback "echo": frames come straight back with the counter bumped.
    fn looped(config: TrafficConfig) -> TrafficStats {
        let sim = Sim::new();
        let to_dut = Rc::new(Mailbox::new(&sim));
        let to_gen = Rc::new(Mailbox::new(&sim));
        let out = Rc::new(Wire::new(&sim, LinkConfig::default(), to_dut.clone()));
        let back = Rc::new(Wire::new(&sim, LinkConfig::default(), to_gen.clone()));
        let tg = TrafficGen::start(&sim, config, out, to_gen).unwrap();
        sim.spawn(async move {
            loop {
                let mut f: Frame = to_dut.recv().await;
                let o = packet::parse_udp(&f.bytes).unwrap().payload_offset;
                f.bytes[o + ECHO_BYTE_OFFSET] += 1;
                packet::refresh_udp_checksum(&mut f.bytes).unwrap();
                let _ = back.send(f);
            }
        });
        sim.run_until(Time(Duration::from_ms(2).ps()));
        sim.shutdown();
        tg.stats.take()
    }

    #[test]
    fn echoed_frames_come_back_stamped_and_counted() {
        let cfg = TrafficConfig {
            source: Source::Synthetic {
                sizes: SizeSpec::Fixed(64),
                flows: 4,
            },
            arrivals: Arrivals::Constant,
            rate_gbps: 50.0,
            frames: 10_000,
            warmup_frames: 500,
            seed: 1,
        };
        let s = looped(cfg);
        assert_eq!(s.sent, 10_000);
        assert_eq!(s.received, 10_000);
        assert_eq!((s.warmup_sent, s.warmup_received), (500, 500));
        assert_eq!((s.corrupt, s.not_echoed, s.reordered), (0, 0, 0));
        // Two 5 ns cables and two 6.72 ns serializations.
        assert!(s.rtt.quantile(0.5) >= Duration::from_ns(23));
        assert!(
            (s.achieved_gbps() - 50.0).abs() < 0.1,
            "{}",
            s.achieved_gbps()
        );
    }

    #[test]
    fn poisson_is_seeded_and_bad_rates_are_errors() {
        let cfg = |seed| TrafficConfig {
            source: Source::Synthetic {
                sizes: SizeSpec::Uniform(64, 512),
                flows: 3,
            },
            arrivals: Arrivals::Poisson,
            rate_gbps: 20.0,
            frames: 2_000,
            warmup_frames: 0,
            seed,
        };
        let (a, b) = (looped(cfg(3)), looped(cfg(3)));
        assert_eq!(a.sent_bytes, b.sent_bytes);
        assert_eq!(a.rtt.quantile(0.99), b.rtt.quantile(0.99));
        assert_eq!(a.received, 2_000);
        let sim = Sim::new();
        let mb = Rc::new(Mailbox::new(&sim));
        let w = Rc::new(Wire::new(&sim, LinkConfig::default(), mb.clone()));
        let bad = TrafficConfig {
            rate_gbps: -1.0,
            ..cfg(1)
        };
        assert!(matches!(
            TrafficGen::start(&sim, bad, w, mb).err(),
            Some(TrafficError::BadRate(_))
        ));
    }

    /// Jitter changes when frames leave, differently for each seed, but
    /// keeps the mean rate: the same frames go out over (almost) the same
    /// time.
    #[test]
    fn jittered_departures_depend_on_the_seed_and_keep_the_rate() {
        let cfg = |arrivals, seed| TrafficConfig {
            source: Source::Synthetic {
                sizes: SizeSpec::Fixed(64),
                flows: 4,
            },
            arrivals,
            rate_gbps: 20.0,
            frames: 5_000,
            warmup_frames: 0,
            seed,
        };
        let jitter = Arrivals::Jittered {
            jitter_ppm: 500_000,
        };
        let (a, b, c) = (
            looped(cfg(jitter, 1)),
            looped(cfg(jitter, 1)),
            looped(cfg(jitter, 2)),
        );
        assert_eq!((a.first_tx, a.last_tx), (b.first_tx, b.last_tx));
        assert_ne!(a.last_tx, c.last_tx, "the seed moves departures");
        let even = looped(cfg(Arrivals::Constant, 1));
        let span = |s: &TrafficStats| (s.last_tx.unwrap() - s.first_tx.unwrap()).ps() as f64;
        assert!((span(&a) / span(&even) - 1.0).abs() < 0.02);
        assert_eq!((a.received, c.received), (5_000, 5_000));
    }

    fn udp(size: usize, i: u32) -> Vec<u8> {
        packet::build_udp(
            Macs::default(),
            synthetic_flow(i),
            &[0xee; STAMP_BYTES],
            size,
        )
        .unwrap()
    }

    #[test]
    fn a_trace_keeps_only_frames_it_can_replay() {
        let mut t = Trace::new();
        assert_eq!(t.push(Time(0), &udp(1518, 1)), Ok(()));
        assert_eq!(t.push(Time(0), &[0; 10]), Err("runt"));
        let mut v6 = udp(100, 1);
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(t.push(Time(0), &v6), Err("non_ipv4"));
        let mut frag = udp(100, 1);
        frag[20] |= 0x20; // more fragments
        assert_eq!(t.push(Time(0), &frag), Err("fragment"));
        let mut tcp = udp(100, 1);
        tcp[23] = 6;
        assert_eq!(t.push(Time(0), &tcp), Err("non_udp"));
        let mut bad = udp(100, 1);
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(t.push(Time(0), &bad), Err("bad_checksum"));
        let mut jumbo = udp(1518, 1);
        jumbo.extend([0; 100]);
        assert_eq!(t.push(Time(0), &jumbo), Err("oversize"));
        let short = packet::build_udp(Macs::default(), synthetic_flow(0), &[], 64).unwrap();
        assert_eq!(t.push(Time(0), &short[..14 + 20 + 8 + 4]), Err("runt"));
        for reason in [
            t.push(Time(0), &[0; 10]).unwrap_err(),
            t.push(Time(0), &tcp).unwrap_err(),
        ] {
            assert!(SKIP_REASONS.contains(&reason));
        }
        assert_eq!(t.len(), 1);
        assert_eq!(t.mean_frame_bytes(), 1518.0);
    }

    #[test]
    fn a_replayed_trace_keeps_sizes_and_flows_and_zeroes_the_echo_byte() {
        let mut t = Trace::new();
        for (i, size) in [(1u32, 1518usize), (2, 200), (3, 64)] {
            let mut f = udp(size, i);
            let o = packet::parse_udp(&f).unwrap().payload_offset;
            f[o + ECHO_BYTE_OFFSET] = 1; // as a captured echo would carry
            packet::refresh_udp_checksum(&mut f).unwrap();
            t.push(Time(0), &f).unwrap();
        }
        let cfg = TrafficConfig {
            source: Source::Trace(Arc::new(t)),
            arrivals: Arrivals::Constant,
            rate_gbps: 10.0,
            frames: 300,
            warmup_frames: 0,
            seed: 1,
        };
        assert_eq!(cfg.line_bytes(), Some(100 * (1538 + 220 + 84)));
        let s = looped(cfg);
        assert_eq!(s.received, 300);
        assert_eq!(s.sent_bytes, 100 * (1518 + 200 + 64));
        assert_eq!((s.corrupt, s.not_echoed), (0, 0));
    }

    #[test]
    fn recorded_arrivals_keep_the_trace_shape_at_the_offered_rate() {
        // Two frames 1 µs apart, then (looping) the mean gap of 1 µs: one
        // lap of 2 × (1518 + 20) B in 2 µs is 12.3 Gb/s; offered at twice
        // that, the gaps halve.
        let mut t = Trace::new();
        t.push(Time(0), &udp(1518, 1)).unwrap();
        t.push(Time(1_000_000), &udp(1518, 2)).unwrap();
        let rate = 2.0 * 2.0 * 1538.0 * 8.0 / 2e-6 / 1e9;
        let cfg = TrafficConfig {
            source: Source::Trace(Arc::new(t)),
            arrivals: Arrivals::Recorded,
            rate_gbps: rate,
            frames: 101,
            warmup_frames: 0,
            seed: 1,
        };
        let s = looped(cfg);
        let span = s.last_tx.unwrap() - s.first_tx.unwrap();
        assert_eq!(span, Duration::from_us(50), "100 gaps of 0.5 µs");
        let synthetic = TrafficConfig {
            source: Source::Synthetic {
                sizes: SizeSpec::Fixed(64),
                flows: 1,
            },
            arrivals: Arrivals::Recorded,
            rate_gbps: 1.0,
            frames: 1,
            warmup_frames: 0,
            seed: 1,
        };
        let sim = Sim::new();
        let mb = Rc::new(Mailbox::new(&sim));
        let w = Rc::new(Wire::new(&sim, LinkConfig::default(), mb.clone()));
        assert_eq!(
            TrafficGen::start(&sim, synthetic, w, mb).err(),
            Some(TrafficError::RecordedNeedsTrace)
        );
    }

    #[test]
    fn frame_counts_that_overflow_are_errors() {
        let sim = Sim::new();
        let mb = Rc::new(Mailbox::new(&sim));
        let w = Rc::new(Wire::new(&sim, LinkConfig::default(), mb.clone()));
        let cfg = TrafficConfig {
            source: Source::Synthetic {
                sizes: SizeSpec::Fixed(64),
                flows: 1,
            },
            arrivals: Arrivals::Constant,
            rate_gbps: 1.0,
            frames: u64::MAX,
            warmup_frames: 20_000,
            seed: 1,
        };
        assert_eq!(cfg.offered_time(), None);
        assert!(matches!(
            TrafficGen::start(&sim, cfg, w, mb).err(),
            Some(TrafficError::TooManyFrames { .. })
        ));
    }
}
