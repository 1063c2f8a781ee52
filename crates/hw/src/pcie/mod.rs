//! PCIe as a link technology, at transaction-layer granularity, after the
//! pcie-bench model (Neugebauer et al., "Understanding PCIe performance for
//! end host networking", SIGCOMM'18, §3): one [`PcieLink`] joins two ports
//! of the fabric, each direction its own serial symbol stream ([`Lane`])
//! with DLLP and SKIP overhead, flow-control credits at each receiver
//! ([`credits`]), and TLP framing ([`tlp`]). Routing, the root complex, the
//! IOMMU and devices live in [`crate::fabric`]; this module only knows what
//! one hop costs.
//!
//! The API is a state machine: every method takes `now` and answers with
//! simulated times; nothing reads a wall clock. Bad configuration is an
//! error, never a panic.

pub mod credits;
pub mod lane;
pub mod model;
pub mod tlp;

use std::collections::BTreeMap;

use nextio_engine::{Duration, Rate, Time};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use credits::{CreditClass, CreditConfig, Credits};
pub use lane::{DllpSchedule, Lane};

/// What a transfer is for, e.g. `"packet-data"`, `"descriptor"`,
/// `"notification"`, `"doorbell"`. Every TLP's bytes are attributed to the
/// purpose of the transfer it belongs to.
pub type Purpose = &'static str;

/// Configuration of one link: a preset's `[machine.nic_slot]`, where each
/// value's source is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcieConfig {
    /// PCIe generation 1–5 (2.5, 5, 8, 16, 32 GT/s per lane).
    pub generation: u8,
    /// Lanes: 1, 2, 4, 8, 16 or 32.
    pub lanes: u8,
    /// Maximum payload size: a power of two in 128..=4096.
    pub mps_bytes: u32,
    /// Maximum read request size: a power of two in 128..=4096.
    pub mrrs_bytes: u32,
    /// Read completion boundary: a power of two in 64..=512.
    pub rcb_bytes: u32,
    /// Completions come back in RCB-sized chunks instead of MPS-sized ones
    /// (pcie-bench's `rcb_chunks`, seen on older chipsets).
    pub rcb_chunks: bool,
    /// Requests carry 64-bit addresses (4 DW headers) rather than 32-bit.
    pub addr64: bool,
    /// TLPs carry the optional 4-byte ECRC digest.
    pub ecrc: bool,
    /// Time from a TLP's last byte leaving one port to its arrival, usable,
    /// at the other: the wire plus both ends' physical- and data-link-layer
    /// pipelines.
    pub flight_ps: u64,
    /// When Ack and UpdateFC DLLPs go out: as the spec allows, or as
    /// pcie-bench's closed form assumes.
    #[serde(default)]
    pub dllp_schedule: DllpSchedule,
    /// Flow-control credits each receiver on the link advertises.
    pub credits: CreditConfig,
}

impl Default for PcieConfig {
    /// The root preset's NIC slot.
    fn default() -> Self {
        nextio_presets::root_section("machine.nic_slot")
    }
}

impl PcieConfig {
    /// The same link at another width and generation.
    pub fn gen_lanes(generation: u8, lanes: u8) -> PcieConfig {
        PcieConfig {
            generation,
            lanes,
            ..PcieConfig::default()
        }
    }

    /// The link flight as a duration.
    pub fn flight(&self) -> Duration {
        Duration::from_ps(self.flight_ps)
    }

    /// Bytes a memory request (MWr or MRd) adds to its payload on the wire.
    pub fn request_overhead_bytes(&self) -> u64 {
        model::mem_request_overhead_bytes(self.addr64, self.ecrc)
    }

    /// Bytes a completion with data adds to its payload on the wire.
    pub fn completion_overhead_bytes(&self) -> u64 {
        model::completion_overhead_bytes(self.ecrc)
    }
}

/// Why a configuration or a request was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PcieError {
    #[error("unknown PCIe generation {0} (known: 1 to 5)")]
    UnknownGeneration(u8),
    #[error("a link cannot have {0} lanes (1, 2, 4, 8, 16 or 32)")]
    BadLanes(u8),
    #[error("maximum payload size {0} B is not a power of two in 128..=4096")]
    BadMps(u32),
    #[error("maximum read request size {0} B is not a power of two in 128..=4096")]
    BadMrrs(u32),
    #[error("read completion boundary {0} B is not a power of two in 64..=512")]
    BadRcb(u32),
    #[error(
        "completions in {rcb_bytes} B RCB chunks would exceed the {mps_bytes} B maximum payload size"
    )]
    RcbAboveMps { rcb_bytes: u32, mps_bytes: u32 },
    #[error("a receiver must advertise at least one {0} credit")]
    NoCredits(&'static str),
}

impl PcieConfig {
    /// Check every field; a link is only built from a valid configuration.
    pub fn validate(&self) -> Result<(), PcieError> {
        if model::signalling_bits_per_s(self.generation, 1).is_none() {
            return Err(PcieError::UnknownGeneration(self.generation));
        }
        if !model::LANES.contains(&self.lanes) {
            return Err(PcieError::BadLanes(self.lanes));
        }
        if !model::MPS_BYTES.contains(&self.mps_bytes) {
            return Err(PcieError::BadMps(self.mps_bytes));
        }
        if !model::MPS_BYTES.contains(&self.mrrs_bytes) {
            return Err(PcieError::BadMrrs(self.mrrs_bytes));
        }
        if !matches!(self.rcb_bytes, 64 | 128 | 256 | 512) {
            return Err(PcieError::BadRcb(self.rcb_bytes));
        }
        if self.rcb_chunks && self.rcb_bytes > self.mps_bytes {
            return Err(PcieError::RcbAboveMps {
                rcb_bytes: self.rcb_bytes,
                mps_bytes: self.mps_bytes,
            });
        }
        self.credits.validate()?;
        Ok(())
    }

    /// Payload of one completion: MPS, or RCB with `rcb_chunks`.
    pub fn completion_chunk_bytes(&self) -> u64 {
        if self.rcb_chunks {
            self.rcb_bytes as u64
        } else {
            self.mps_bytes as u64
        }
    }
}

/// The two directions of a link, named from the host's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Device → host: DMA write data, DMA read requests, MMIO completions.
    Upstream,
    /// Host → device: DMA read completions, MMIO writes and read requests.
    Downstream,
}

/// What one direction has carried.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DirectionCounters {
    pub tlps: u64,
    /// Ack and UpdateFC DLLPs.
    pub dllps: u64,
    pub dllp_bytes: u64,
    pub skip_bytes: u64,
    /// Per-TLP overhead on the wire: framing, sequence number, LCRC, header
    /// and ECRC.
    pub header_bytes: u64,
    pub payload_bytes: u64,
    /// Header plus payload bytes of the TLPs of each purpose.
    pub bytes_by_purpose: BTreeMap<Purpose, u64>,
}

impl DirectionCounters {
    /// Every byte the direction put on the wire.
    pub fn wire_bytes(&self) -> u64 {
        self.header_bytes + self.payload_bytes + self.dllp_bytes + self.skip_bytes
    }
}

/// A PCIe link: two lanes and the credits of the receiver at each end.
#[derive(Clone, Debug)]
pub struct PcieLink {
    cfg: PcieConfig,
    upstream: Lane,
    downstream: Lane,
    /// Credits the upstream receiver (the parent port) advertises for
    /// traffic on the upstream lane, and vice versa.
    upstream_credits: Credits,
    downstream_credits: Credits,
}

impl PcieLink {
    pub fn new(cfg: PcieConfig) -> Result<PcieLink, PcieError> {
        cfg.validate()?;
        let bits = model::signalling_bits_per_s(cfg.generation, cfg.lanes)
            .ok_or(PcieError::UnknownGeneration(cfg.generation))?;
        let rate =
            Rate::from_bits_per_s(bits).ok_or(PcieError::UnknownGeneration(cfg.generation))?;
        Ok(PcieLink {
            upstream: Lane::new(&cfg, rate),
            downstream: Lane::new(&cfg, rate),
            upstream_credits: Credits::new(cfg.credits),
            downstream_credits: Credits::new(cfg.credits),
            cfg,
        })
    }

    pub fn config(&self) -> &PcieConfig {
        &self.cfg
    }

    /// What `dir` has carried so far.
    pub fn counters(&self, dir: Direction) -> &DirectionCounters {
        self.lane(dir).counters()
    }

    pub fn lane(&self, dir: Direction) -> &Lane {
        match dir {
            Direction::Upstream => &self.upstream,
            Direction::Downstream => &self.downstream,
        }
    }

    /// Send one TLP of `class` in `dir`, submitted at `now` and ready at
    /// `ready`, once the far receiver has credit for it; the receiver takes
    /// `consume` to drain it, after which its credits come back an
    /// UpdateFC's flight later. The opposite lane owes the DLLPs that
    /// acknowledge and credit it. Returns when its last byte left and when
    /// it arrived.
    #[allow(clippy::too_many_arguments)]
    pub fn transmit(
        &mut self,
        dir: Direction,
        now: Time,
        ready: Time,
        header_bytes: u64,
        payload_bytes: u64,
        class: CreditClass,
        purpose: Purpose,
        consume: Duration,
    ) -> (Time, Time) {
        let flight = self.cfg.flight();
        let (lane, credits, back) = match dir {
            Direction::Upstream => (
                &mut self.upstream,
                &mut self.upstream_credits,
                &mut self.downstream,
            ),
            Direction::Downstream => (
                &mut self.downstream,
                &mut self.downstream_credits,
                &mut self.upstream,
            ),
        };
        let start = credits.acquire(ready, class, payload_bytes);
        let done = lane.send_tlp(now, start, header_bytes, payload_bytes, purpose);
        let arrived = done + flight;
        credits.release(arrived + consume + flight, class, payload_bytes);
        back.received(arrived, class);
        (done, arrived)
    }

    /// Make the upstream receiver (the parent port) advertise `cfg`.
    pub fn set_upstream_credits(&mut self, cfg: CreditConfig) {
        self.upstream_credits = Credits::new(cfg);
    }

    /// The credits of the receiver at the far end of `dir`.
    pub fn credits(&self, dir: Direction) -> &Credits {
        match dir {
            Direction::Upstream => &self.upstream_credits,
            Direction::Downstream => &self.downstream_credits,
        }
    }

    /// When `dir` finishes sending everything submitted to it so far.
    pub fn idle_at(&self, dir: Direction) -> Time {
        self.lane(dir).free_at()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(cfg: &PcieConfig) -> Lane {
        let bits = model::signalling_bits_per_s(cfg.generation, cfg.lanes).unwrap();
        Lane::new(cfg, Rate::from_bits_per_s(bits).unwrap())
    }

    #[test]
    fn bad_configurations_are_errors() {
        let bad = |cfg: PcieConfig| PcieLink::new(cfg).unwrap_err();
        let d = PcieConfig::default;
        assert_eq!(
            bad(PcieConfig {
                generation: 0,
                ..d()
            }),
            PcieError::UnknownGeneration(0)
        );
        assert_eq!(
            bad(PcieConfig {
                generation: 6,
                ..d()
            }),
            PcieError::UnknownGeneration(6)
        );
        assert_eq!(
            bad(PcieConfig { lanes: 12, ..d() }),
            PcieError::BadLanes(12)
        );
        assert_eq!(
            bad(PcieConfig {
                mps_bytes: 300,
                ..d()
            }),
            PcieError::BadMps(300)
        );
        assert_eq!(
            bad(PcieConfig {
                mps_bytes: 64,
                ..d()
            }),
            PcieError::BadMps(64)
        );
        assert_eq!(
            bad(PcieConfig {
                mrrs_bytes: 8192,
                ..d()
            }),
            PcieError::BadMrrs(8192)
        );
        assert_eq!(
            bad(PcieConfig {
                rcb_bytes: 32,
                ..d()
            }),
            PcieError::BadRcb(32)
        );
        assert_eq!(
            bad(PcieConfig {
                mps_bytes: 128,
                rcb_bytes: 256,
                rcb_chunks: true,
                ..d()
            }),
            PcieError::RcbAboveMps {
                rcb_bytes: 256,
                mps_bytes: 128
            }
        );
        assert!(matches!(
            bad(PcieConfig {
                credits: CreditConfig {
                    posted_headers: 0,
                    ..CreditConfig::default()
                },
                ..d()
            }),
            PcieError::NoCredits(_)
        ));
        for generation in 1..=5 {
            for lanes in model::LANES {
                for mps_bytes in model::MPS_BYTES {
                    assert!(
                        PcieLink::new(PcieConfig {
                            generation,
                            lanes,
                            mps_bytes,
                            ..d()
                        })
                        .is_ok()
                    );
                }
            }
        }
    }

    /// Back-to-back writes of `size` bytes upstream; returns the measured
    /// payload rate in Gb/s and the link.
    fn write_stream(cfg: &PcieConfig, size: u64, n: u64) -> (f64, PcieLink) {
        let mut link = PcieLink::new(cfg.clone()).unwrap();
        let mut first = None;
        let mut last = Time::ZERO;
        for i in 0..n {
            for (_, bytes) in tlp::pieces(i * 4096, size, cfg.mps_bytes as u64) {
                let now = link.idle_at(Direction::Upstream);
                let header = cfg.request_overhead_bytes();
                (last, _) = link.transmit(
                    Direction::Upstream,
                    now,
                    now,
                    header,
                    bytes,
                    CreditClass::Posted,
                    "packet-data",
                    Duration::ZERO,
                );
            }
            first.get_or_insert(last);
        }
        let gbps = ((n - 1) * size * 8) as f64 * 1e3 / (last - first.unwrap()).ps() as f64;
        (gbps, link)
    }

    #[test]
    fn a_tlp_stream_converges_to_the_closed_form() {
        for schedule in [DllpSchedule::PcieBench, DllpSchedule::Spec] {
            let cfg = PcieConfig {
                dllp_schedule: schedule,
                credits: CreditConfig::UNLIMITED,
                ..PcieConfig::gen_lanes(3, 16)
            };
            for size in [64u64, 256, 1500, 4096] {
                let (gbps, link) = write_stream(&cfg, size, 3000);
                let closed = model::write_gbps(&cfg, size);
                assert!(
                    (gbps - closed).abs() / closed < 2e-3,
                    "{schedule:?} {size}: {gbps} vs {closed}"
                );
                let c = link.counters(Direction::Upstream);
                let by_purpose: u64 = c.bytes_by_purpose.values().sum();
                assert_eq!(by_purpose, c.header_bytes + c.payload_bytes);
                assert!(c.skip_bytes > 0);
            }
        }
    }

    /// The spec's Ack coalescing: the lane facing a busy direction carries
    /// one Ack and one UpdateFC per interval, the busy lane none (there is
    /// nothing coming the other way to acknowledge); pcie-bench's schedule
    /// charges the busy lane itself.
    #[test]
    fn dllps_acknowledge_the_opposite_lane_once_per_interval() {
        let spec = PcieConfig {
            credits: CreditConfig::UNLIMITED,
            ..PcieConfig::gen_lanes(3, 16)
        };
        let (_, link) = write_stream(&spec, 4096, 2000);
        let up = link.counters(Direction::Upstream);
        let down = link.counters(Direction::Downstream);
        assert_eq!(up.dllps, 0, "nothing came downstream to acknowledge");
        assert_eq!(down.tlps, 0);
        // DLLPs sent while a lane idles neither cost nor book it: a device
        // pacing itself on the lane's idle time is not held back.
        assert_eq!(link.idle_at(Direction::Downstream), Time::ZERO);
        // 168 symbol times of 1.015625 ns (8 bits at 8 GT/s, 128b/130b).
        let interval_ps = 168.0 * 1_015.625;
        let busy_ps = link.idle_at(Direction::Upstream).ps() as f64;
        // A 280 B write TLP lasts 17.8 ns on this link; a new interval
        // starts with the first arrival after the previous DLLP went out.
        let tlp_ps = 280.0 * 8.0 * 130.0 / 128.0 / 128.0 * 1e3;
        let (most, fewest) = (busy_ps / interval_ps, busy_ps / (interval_ps + tlp_ps));
        // An Ack and a posted UpdateFC per interval.
        let per_kind = down.dllps as f64 / 2.0;
        assert!(
            per_kind <= most + 1.0 && per_kind >= fewest - 1.0,
            "{per_kind} DLLPs of each kind for {fewest:.0}..{most:.0} intervals"
        );
        assert_eq!(down.dllp_bytes, down.dllps * model::DLLP_BYTES);
        let bench = PcieConfig {
            dllp_schedule: DllpSchedule::PcieBench,
            ..spec
        };
        let (_, link) = write_stream(&bench, 4096, 2000);
        assert!(link.counters(Direction::Upstream).dllps > 10 * down.dllps);
        assert_eq!(link.counters(Direction::Downstream).dllps, 0);
    }

    #[test]
    fn traffic_ready_sooner_uses_the_gap_before_a_booking() {
        let cfg = PcieConfig::default();
        let mut l = lane(&cfg);
        // A completion booked 500 ns ahead leaves the line idle until then.
        let late = l.send_tlp(Time::ZERO, Time(500_000), 20, 256, "descriptor");
        let doorbell = l.send_tlp(Time(1_000), Time(1_000), 24, 4, "doorbell");
        assert!(doorbell < Time(500_000), "{doorbell:?}");
        assert!(late > Time(500_000));
        assert_eq!(l.counters().tlps, 2);
    }
}
