//! A hardware traffic generator and receiver, in the manner of EnsōGen: it
//! sits at the far end of a link from the system under test, sends real
//! Ethernet/IPv4/UDP frames at a set rate, and checks and timestamps what
//! comes back.
//!
//! Frames come from a synthetic spec (a size or a uniform size range, a
//! number of flows) or are replayed from a pcap file. Inter-departure times
//! are constant or exponential (Poisson arrivals). Each synthetic frame's UDP
//! payload carries, in its first 17 bytes, the frame's sequence number
//! (8 bytes, big endian), its transmit timestamp in picoseconds (8 bytes) and
//! a counter byte that an echo server increments; the receiver reads these
//! *bytes* back — not simulator metadata — to compute round-trip times and
//! to verify that the echo touched the payload.
//!
//! Rates are line rates: `rate_gbps` counts each frame's bytes plus the 20
//! bytes of preamble, start delimiter and inter-frame gap, so 100 Gb/s is
//! 148.8 Mpps of 64-byte frames. Invariant: `sent = received + lost`, where
//! `received` counts every frame that came back (intact or not).

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use nextio_engine::{Duration, LatencyHist, Mailbox, Sim, SimRng, Time};
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
    /// Frames replayed in order (e.g. read from a pcap), looped as needed.
    /// Their timing is set by the generator's rate, not by the trace.
    Replay(Vec<Vec<u8>>),
}

/// How departures are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrivals {
    Constant,
    /// Exponential inter-departure times with the configured mean rate.
    Poisson,
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
        let templates = templates(&config.source)?;
        let stats = Rc::new(RefCell::new(TrafficStats::default()));
        let mut rng = SimRng::new(config.seed).fork("trafficgen");
        let sizes = match &config.source {
            Source::Synthetic { sizes, .. } => Some(*sizes),
            Source::Replay(_) => None,
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
            for seq in 0..warmup + config.frames {
                s.sleep_until(next).await;
                let mut bytes = match sizes {
                    Some(SizeSpec::Uniform(lo, hi)) => {
                        let size = lo + rng.below((hi - lo + 1) as u64) as usize;
                        let flow = synthetic_flow((seq % templates.len() as u64) as u32);
                        packet::build_udp(Macs::default(), flow, &[], size)
                            .unwrap_or_else(|_| templates[0].clone())
                    }
                    _ => templates[(seq % templates.len() as u64) as usize].clone(),
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
                let gap_s = match config.arrivals {
                    Arrivals::Constant => mean_gap_s,
                    Arrivals::Poisson => rng.exp(mean_gap_s),
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

fn templates(source: &Source) -> Result<Vec<Vec<u8>>, TrafficError> {
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
        tg.stats.borrow().clone()
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
}
