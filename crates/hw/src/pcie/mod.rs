//! A PCIe link at transaction-layer granularity, after the pcie-bench model
//! (Neugebauer et al., "Understanding PCIe performance for end host
//! networking", SIGCOMM'18, §3).
//!
//! Every TLP is simulated on its own: DMA writes become MPS-sized MWr TLPs,
//! DMA reads become MRRS-sized MRd TLPs answered by MPS- (or RCB-) sized
//! CplD TLPs, and MMIO from a core becomes one downstream MWr or MRd. Each
//! direction — upstream (device → host) and downstream (host → device) — is
//! its own serial symbol stream timed by a [`Serializer`], so back-to-back
//! traffic takes exactly as long as its bytes at the coded line rate.
//!
//! Into each direction's stream the link inserts Ack and UpdateFC DLLPs at
//! the spec's recommended intervals and SKIP ordered sets every 1538 symbol
//! times, counted over that direction's own transmissions. This follows
//! pcie-bench's assumption that both directions are in use, so each carries
//! the DLLPs acknowledging and crediting the other; like pcie-bench, an
//! interval of N symbol times is taken as N bytes of the link's stream. The
//! simulated throughput therefore emerges from the TLP stream and converges
//! to [`model`]'s closed form; it is not computed from it.
//!
//! The API is a state machine: every method takes `now` and answers with
//! simulated times; nothing reads a wall clock.
//!
//! Invariants:
//! * a TLP never starts before it is ready, and no two TLPs of a direction
//!   overlap on the line: each goes into the first idle gap it fits or
//!   after everything booked so far;
//! * a DLLP or SKIP is only ever inserted between TLPs, never inside one;
//! * per direction, the bytes attributed to purposes sum to exactly the
//!   header plus payload bytes of the TLPs sent ([`DirectionCounters`]);
//! * bad configuration or requests are errors, never panics.
//!
//! Simplifications, all documented where they act:
//! * transfers are split at MPS-, MRRS- and completion-chunk-aligned
//!   addresses, which never cross a 4 KiB boundary because every such size
//!   divides 4096; for the aligned transfers pcie-bench assumes this gives
//!   exactly its TLP counts;
//! * a TLP booked for a future instant (a completion waiting out the host
//!   latency) leaves an idle gap before it; traffic submitted later but
//!   ready sooner (a doorbell, a write) is sent in that gap if it fits,
//!   otherwise after everything booked. DLLPs and SKIPs are only inserted
//!   at the end of the booked stream, though gap traffic counts towards
//!   their intervals.

pub mod model;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use nextio_engine::{Duration, Rate, Serializer, Time};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What a transfer is for, e.g. `"packet-data"`, `"descriptor"`,
/// `"notification"`, `"doorbell"`. Every TLP's bytes are attributed to the
/// purpose of the transfer it belongs to.
pub type Purpose = &'static str;

/// Configuration of one link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// DMA read round trip seen by the device, excluding the serialization
    /// of the request and its completions: link flight both ways, root
    /// complex and host memory.
    pub dma_read_latency_ps: u64,
    /// One-way flight of a TLP through the link and root complex, charged
    /// to posted writes and to each leg of an MMIO read.
    pub one_way_latency_ps: u64,
    /// Time a device takes to answer an MMIO read once the request arrived.
    pub mmio_read_turnaround_ps: u64,
    /// Non-posted requests the device may have outstanding (read tags).
    pub max_read_tags: u32,
}

impl Default for PcieConfig {
    fn default() -> Self {
        PcieConfig {
            // Gen 3 x8: the link of the NFP-6000 and NetFPGA-SUME boards
            // pcie-bench measured (SIGCOMM'18); MPS 256 B and MRRS 512 B:
            // the values its model discussion uses (§3).
            generation: 3,
            lanes: 8,
            mps_bytes: 256,
            mrrs_bytes: 512,
            // 64 B: the smaller of the two completion boundaries a root
            // complex may advertise (PCIe Base Spec, Link Control RCB bit).
            rcb_bytes: 64,
            rcb_chunks: false,
            addr64: true,
            ecrc: false,
            // pcie-bench (SIGCOMM'18 §6) measured median DMA read latencies
            // of several hundred nanoseconds for small (64 B) reads on its
            // Xeon E5 hosts; 500 ns is a round value in that range, not a
            // figure read off a specific plot.
            dma_read_latency_ps: 500_000,
            // Half the read round trip: an assumption (the flight is split
            // evenly and the host's memory access is folded in), not a
            // measurement.
            one_way_latency_ps: 250_000,
            // Zero: the link charges only the link; a device model that
            // needs time to answer sets it.
            mmio_read_turnaround_ps: 0,
            // 256: an 8-bit tag with Extended Tag Field Enable (PCIe Base
            // Spec §2.2.6.2); gen4+ devices may use 10-bit tags (768).
            max_read_tags: 256,
        }
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
    #[error("a device needs at least one read tag")]
    NoReadTags,
    #[error("a transfer of zero bytes")]
    ZeroLength,
    #[error("a transfer of {len} B at {addr:#x} runs past the end of the address space")]
    AddressOverflow { addr: u64, len: u64 },
    #[error("address {addr:#x} needs 64-bit addressing, but the link uses 32-bit requests")]
    AddressNeeds64Bit { addr: u64 },
    #[error("an MMIO access of {len} B does not fit in one TLP of at most {max} B")]
    MmioTooLong { len: u64, max: u64 },
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
        if self.max_read_tags == 0 {
            return Err(PcieError::NoReadTags);
        }
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

/// One direction's symbol stream.
#[derive(Clone, Debug)]
struct Lane {
    serializer: Serializer,
    /// When the last thing sent in this direction leaves the transmitter.
    free_at: Time,
    ack_interval_bytes: u64,
    fc_interval_bytes: u64,
    /// Bytes sent since the last DLLP or SKIP of each kind was due; one is
    /// owed whenever a counter reaches its interval.
    since_ack_bytes: u64,
    since_fc_bytes: u64,
    since_skip_bytes: u64,
    /// Idle intervals `[start, end)` left before `free_at` when a TLP was
    /// booked for a later instant (a completion waiting out the host's
    /// latency). A TLP ready earlier goes into the first one it fits, as
    /// a real transmitter would send whatever is ready while the line
    /// waits; without this, a doorbell would queue behind completions
    /// that are not even ready yet.
    gaps: Vec<(Time, Time)>,
    counters: DirectionCounters,
}

impl Lane {
    fn new(cfg: &PcieConfig, rate: Rate) -> Lane {
        let (num, den) = model::encoding(cfg.generation);
        // Validated before a lane is built, so the tables have an entry.
        let ack = model::ack_interval_symbols(cfg.generation, cfg.lanes, cfg.mps_bytes)
            .unwrap_or(u64::MAX);
        let fc = model::fc_interval_symbols(cfg.generation, cfg.lanes, cfg.mps_bytes)
            .unwrap_or(u64::MAX);
        Lane {
            serializer: Serializer::new(rate, num, den),
            free_at: Time::ZERO,
            ack_interval_bytes: ack,
            fc_interval_bytes: fc,
            since_ack_bytes: 0,
            since_fc_bytes: 0,
            since_skip_bytes: 0,
            gaps: Vec::new(),
            counters: DirectionCounters::default(),
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.since_ack_bytes += bytes;
        self.since_fc_bytes += bytes;
        self.since_skip_bytes += bytes;
    }

    /// Send every DLLP and SKIP owed, starting at `t`; returns when the
    /// last one has left. Sending them also counts towards the intervals,
    /// so in a long stream exactly 8/ack + 8/fc + 4/1538 of it is overhead.
    fn send_owed(&mut self, mut t: Time) -> Time {
        loop {
            let bytes = if self.since_ack_bytes >= self.ack_interval_bytes {
                self.since_ack_bytes -= self.ack_interval_bytes;
                self.counters.dllps += 1;
                self.counters.dllp_bytes += model::DLLP_BYTES;
                model::DLLP_BYTES
            } else if self.since_fc_bytes >= self.fc_interval_bytes {
                self.since_fc_bytes -= self.fc_interval_bytes;
                self.counters.dllps += 1;
                self.counters.dllp_bytes += model::DLLP_BYTES;
                model::DLLP_BYTES
            } else if self.since_skip_bytes >= model::SKIP_INTERVAL_SYMBOLS {
                self.since_skip_bytes -= model::SKIP_INTERVAL_SYMBOLS;
                self.counters.skip_bytes += model::SKIP_BYTES;
                model::SKIP_BYTES
            } else {
                return t;
            };
            t += self.serializer.next(bytes);
            self.advance(bytes);
        }
    }

    /// Send one TLP, submitted at `now`, that may start at `ready`;
    /// returns when its last byte leaves the transmitter.
    fn send_tlp(
        &mut self,
        now: Time,
        ready: Time,
        header_bytes: u64,
        payload_bytes: u64,
        purpose: Purpose,
    ) -> Time {
        let bytes = header_bytes + payload_bytes;
        self.count(bytes, header_bytes, payload_bytes, purpose);
        // Gaps wholly in the past can never be used again.
        self.gaps.retain(|(_, end)| *end > now);
        if ready < self.free_at
            && let Some(done) = self.fill_gap(ready, bytes)
        {
            return done;
        }
        // Overhead owed goes out first, from the moment the line last went
        // quiet: into the idle gap if there is one, else ahead of the TLP.
        let mut t = self.send_owed(self.free_at);
        if ready > t {
            // The line idles until the TLP is ready: remember the gap for
            // traffic that becomes ready sooner. A fraction of a picosecond
            // carried across an idle gap means nothing.
            self.gaps.push((t.max(now), ready));
            self.serializer.reset();
            t = ready;
        }
        t += self.serializer.next(bytes);
        self.free_at = t;
        t
    }

    /// Place `bytes` in the earliest idle gap it fits from `ready` on;
    /// returns when it finishes, or `None` if no gap is wide enough. The
    /// DLLP and SKIP intervals still count its bytes.
    fn fill_gap(&mut self, ready: Time, bytes: u64) -> Option<Time> {
        let duration = self.serializer.one_off(bytes);
        let (i, start) = self.gaps.iter().enumerate().find_map(|(i, (a, b))| {
            let start = ready.max(*a);
            (start + duration <= *b).then_some((i, start))
        })?;
        let (a, b) = self.gaps.remove(i);
        let end = start + duration;
        if end < b {
            self.gaps.insert(i, (end, b));
        }
        if start > a {
            self.gaps.insert(i, (a, start));
        }
        Some(end)
    }

    fn count(&mut self, bytes: u64, header_bytes: u64, payload_bytes: u64, purpose: Purpose) {
        self.advance(bytes);
        let c = &mut self.counters;
        c.tlps += 1;
        c.header_bytes += header_bytes;
        c.payload_bytes += payload_bytes;
        *c.bytes_by_purpose.entry(purpose).or_insert(0) += bytes;
    }
}

/// A PCIe link between one device and the host.
#[derive(Clone, Debug)]
pub struct PcieLink {
    cfg: PcieConfig,
    upstream: Lane,
    downstream: Lane,
    /// When each outstanding read tag is released (its last completion
    /// reaches the device).
    tag_release: BinaryHeap<Reverse<Time>>,
    mem_overhead_bytes: u64,
    cpl_overhead_bytes: u64,
}

/// Pieces of `[addr, addr + len)` cut at multiples of `chunk` (a power of
/// two dividing 4096, so no piece crosses a 4 KiB boundary).
fn aligned_pieces(addr: u64, len: u64, chunk: u64) -> impl Iterator<Item = (u64, u64)> {
    let end = addr + len;
    let mut at = addr;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let next = ((at / chunk) + 1).saturating_mul(chunk).min(end);
        let piece = (at, next - at);
        at = next;
        Some(piece)
    })
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
            tag_release: BinaryHeap::new(),
            mem_overhead_bytes: model::mem_request_overhead_bytes(cfg.addr64, cfg.ecrc),
            cpl_overhead_bytes: model::completion_overhead_bytes(cfg.ecrc),
            cfg,
        })
    }

    pub fn config(&self) -> &PcieConfig {
        &self.cfg
    }

    /// What `dir` has carried so far.
    pub fn counters(&self, dir: Direction) -> &DirectionCounters {
        &self.lane(dir).counters
    }

    /// When `dir` finishes sending everything submitted to it so far.
    pub fn idle_at(&self, dir: Direction) -> Time {
        self.lane(dir).free_at
    }

    /// Earliest time a new DMA read request could go out: the upstream
    /// line is free and, if every tag is taken, the first one is released.
    pub fn read_issue_at(&self, now: Time) -> Time {
        let outstanding = self
            .tag_release
            .iter()
            .filter(|Reverse(t)| *t > now)
            .count();
        let tag_free = if outstanding >= self.cfg.max_read_tags as usize {
            self.tag_release
                .iter()
                .map(|Reverse(t)| *t)
                .filter(|t| *t > now)
                .min()
                .unwrap_or(now)
        } else {
            now
        };
        now.max(self.upstream.free_at).max(tag_free)
    }

    fn lane(&self, dir: Direction) -> &Lane {
        match dir {
            Direction::Upstream => &self.upstream,
            Direction::Downstream => &self.downstream,
        }
    }

    fn check_range(&self, addr: u64, len: u64) -> Result<(), PcieError> {
        if len == 0 {
            return Err(PcieError::ZeroLength);
        }
        let last = addr
            .checked_add(len - 1)
            .ok_or(PcieError::AddressOverflow { addr, len })?;
        if !self.cfg.addr64 && last > u32::MAX as u64 {
            return Err(PcieError::AddressNeeds64Bit { addr: last });
        }
        Ok(())
    }

    /// A posted DMA write of `len` bytes to host address `addr`, handed to
    /// the link at `now`. Returns when its last MWr TLP reaches the host.
    pub fn dma_write(
        &mut self,
        now: Time,
        addr: u64,
        len: u64,
        purpose: Purpose,
    ) -> Result<Time, PcieError> {
        self.check_range(addr, len)?;
        let flight = Duration::from_ps(self.cfg.one_way_latency_ps);
        let mut sent = now;
        for (_, bytes) in aligned_pieces(addr, len, self.cfg.mps_bytes as u64) {
            let done = self
                .upstream
                .send_tlp(now, now, self.mem_overhead_bytes, bytes, purpose);
            sent = sent.max(done);
        }
        Ok(sent + flight)
    }

    /// A DMA read of `len` bytes from host address `addr`, handed to the
    /// link at `now`. Each MRRS-sized request waits for a free tag, and its
    /// completions start back once the host latency has passed. Returns
    /// when the last completion reaches the device.
    pub fn dma_read(
        &mut self,
        now: Time,
        addr: u64,
        len: u64,
        purpose: Purpose,
    ) -> Result<Time, PcieError> {
        self.check_range(addr, len)?;
        let latency = Duration::from_ps(self.cfg.dma_read_latency_ps);
        let chunk = self.cfg.completion_chunk_bytes();
        let mut done = now;
        for (req_addr, req_bytes) in aligned_pieces(addr, len, self.cfg.mrrs_bytes as u64) {
            let mut ready = now;
            while self
                .tag_release
                .peek()
                .is_some_and(|Reverse(t)| *t <= ready)
            {
                self.tag_release.pop();
            }
            if self.tag_release.len() >= self.cfg.max_read_tags as usize
                && let Some(Reverse(t)) = self.tag_release.pop()
            {
                ready = ready.max(t);
            }
            let request_sent =
                self.upstream
                    .send_tlp(now, ready, self.mem_overhead_bytes, 0, purpose);
            let host_ready = request_sent + latency;
            let mut arrived = host_ready;
            for (_, bytes) in aligned_pieces(req_addr, req_bytes, chunk) {
                // The flight is inside the round-trip latency, so a
                // completion is at the device when its last byte is sent.
                let done = self.downstream.send_tlp(
                    now,
                    host_ready,
                    self.cpl_overhead_bytes,
                    bytes,
                    purpose,
                );
                arrived = arrived.max(done);
            }
            self.tag_release.push(Reverse(arrived));
            done = done.max(arrived);
        }
        Ok(done)
    }

    fn mmio_payload_bytes(&self, len: u64) -> Result<u64, PcieError> {
        let max = self.cfg.mps_bytes as u64;
        if len > max {
            return Err(PcieError::MmioTooLong { len, max });
        }
        // Payloads are whole doublewords; byte enables mask the rest.
        Ok(len.div_ceil(4) * 4)
    }

    /// A posted MMIO write of `len` bytes (typically 4 or 8) from a core to
    /// device address `addr` at `now`, sent as one downstream MWr. Returns
    /// when it reaches the device.
    pub fn mmio_write(
        &mut self,
        now: Time,
        addr: u64,
        len: u64,
        purpose: Purpose,
    ) -> Result<Time, PcieError> {
        self.check_range(addr, len)?;
        let payload = self.mmio_payload_bytes(len)?;
        let sent = self
            .downstream
            .send_tlp(now, now, self.mem_overhead_bytes, payload, purpose);
        Ok(sent + Duration::from_ps(self.cfg.one_way_latency_ps))
    }

    /// A non-posted MMIO read of `len` bytes by a core at `now`: a
    /// downstream MRd, the device's turnaround, an upstream CplD. Returns
    /// when the completion reaches the core.
    pub fn mmio_read(
        &mut self,
        now: Time,
        addr: u64,
        len: u64,
        purpose: Purpose,
    ) -> Result<Time, PcieError> {
        self.check_range(addr, len)?;
        let payload = self.mmio_payload_bytes(len)?;
        let flight = Duration::from_ps(self.cfg.one_way_latency_ps);
        let request_sent = self
            .downstream
            .send_tlp(now, now, self.mem_overhead_bytes, 0, purpose);
        let device_ready =
            request_sent + flight + Duration::from_ps(self.cfg.mmio_read_turnaround_ps);
        let completion_sent =
            self.upstream
                .send_tlp(now, device_ready, self.cpl_overhead_bytes, payload, purpose);
        Ok(completion_sent + flight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(cfg: PcieConfig) -> PcieLink {
        PcieLink::new(cfg).expect("valid configuration")
    }

    #[test]
    fn a_doorbell_uses_the_gap_before_pending_completions() {
        let mut l = link(PcieConfig::default());
        // The read's completions are booked ~500 ns ahead, leaving the
        // downstream line idle until then.
        let read_done = l.dma_read(Time::ZERO, 0x1000, 256, "descriptor").unwrap();
        let doorbell = l.mmio_write(Time(1_000), 0x10, 4, "doorbell").unwrap();
        assert!(
            doorbell < Time(PcieConfig::default().dma_read_latency_ps),
            "{doorbell:?}"
        );
        // The completions were not moved by the doorbell.
        let mut again = link(PcieConfig::default());
        assert_eq!(
            again
                .dma_read(Time::ZERO, 0x1000, 256, "descriptor")
                .unwrap(),
            read_done
        );
        // A doorbell too large for any gap still goes after the bookings.
        let c = l.counters(Direction::Downstream);
        assert_eq!(c.tlps, 2);
    }

    #[test]
    fn write_splits_into_mps_tlps() {
        let mut l = link(PcieConfig::default());
        l.dma_write(Time::ZERO, 0, 4096, "packet-data").unwrap();
        let up = l.counters(Direction::Upstream);
        assert_eq!(up.tlps, 16);
        assert_eq!(up.header_bytes, 16 * 24);
        assert_eq!(up.payload_bytes, 4096);
        assert_eq!(l.counters(Direction::Downstream).tlps, 0);
    }

    #[test]
    fn unaligned_write_splits_at_mps_boundaries() {
        let mut l = link(PcieConfig::default());
        l.dma_write(Time::ZERO, 200, 100, "packet-data").unwrap();
        assert_eq!(l.counters(Direction::Upstream).tlps, 2);
    }

    #[test]
    fn read_splits_into_mrrs_requests_and_chunked_completions() {
        let mut l = link(PcieConfig::default());
        l.dma_read(Time::ZERO, 0, 4096, "packet-data").unwrap();
        assert_eq!(l.counters(Direction::Upstream).tlps, 8);
        assert_eq!(l.counters(Direction::Upstream).header_bytes, 8 * 24);
        assert_eq!(l.counters(Direction::Downstream).tlps, 16);
        assert_eq!(l.counters(Direction::Downstream).header_bytes, 16 * 20);

        let mut l = link(PcieConfig {
            rcb_chunks: true,
            rcb_bytes: 64,
            ..PcieConfig::default()
        });
        l.dma_read(Time::ZERO, 0, 4096, "packet-data").unwrap();
        assert_eq!(l.counters(Direction::Downstream).tlps, 64);
    }

    #[test]
    fn header_sizes_follow_addressing_and_ecrc() {
        let mut l = link(PcieConfig {
            addr64: false,
            ecrc: true,
            ..PcieConfig::default()
        });
        l.dma_write(Time::ZERO, 0, 64, "packet-data").unwrap();
        assert_eq!(l.counters(Direction::Upstream).header_bytes, 24);
        l.dma_read(Time::ZERO, 0, 64, "descriptor").unwrap();
        assert_eq!(l.counters(Direction::Downstream).header_bytes, 24);
        let mut l = link(PcieConfig::default());
        l.mmio_write(Time::ZERO, 0x1000, 4, "doorbell").unwrap();
        let down = l.counters(Direction::Downstream);
        assert_eq!((down.header_bytes, down.payload_bytes), (24, 4));
        assert!(matches!(
            l.dma_write(Time::ZERO, 0, 0, "x"),
            Err(PcieError::ZeroLength)
        ));
        assert!(matches!(
            l.dma_write(Time::ZERO, u64::MAX, 2, "x"),
            Err(PcieError::AddressOverflow { .. })
        ));
        let mut l = link(PcieConfig {
            addr64: false,
            ..PcieConfig::default()
        });
        assert!(matches!(
            l.dma_write(Time::ZERO, 1 << 32, 64, "x"),
            Err(PcieError::AddressNeeds64Bit { .. })
        ));
        assert!(matches!(
            l.mmio_write(Time::ZERO, 0, 4096, "x"),
            Err(PcieError::MmioTooLong { .. })
        ));
    }

    #[test]
    fn purpose_bytes_sum_to_tlp_bytes() {
        let mut l = link(PcieConfig::default());
        let mut now = Time::ZERO;
        for i in 0..200u64 {
            now = l.dma_write(now, i * 4096, 1500, "packet-data").unwrap();
            l.dma_read(now, 1 << 30, 64, "descriptor").unwrap();
            l.mmio_write(now, 0x10, 4, "doorbell").unwrap();
            l.dma_write(now, 1 << 31, 16, "notification").unwrap();
            if i % 50 == 0 {
                now = l.mmio_read(now, 0x20, 4, "register").unwrap();
            }
        }
        for dir in [Direction::Upstream, Direction::Downstream] {
            let c = l.counters(dir);
            let by_purpose: u64 = c.bytes_by_purpose.values().sum();
            assert_eq!(by_purpose, c.header_bytes + c.payload_bytes);
            assert!(c.dllps > 0 && c.skip_bytes > 0);
        }
        assert_eq!(
            l.counters(Direction::Upstream).bytes_by_purpose["notification"],
            200 * (24 + 16)
        );
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
        assert_eq!(
            bad(PcieConfig {
                max_read_tags: 0,
                ..d()
            }),
            PcieError::NoReadTags
        );
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

    /// Back-to-back writes of `size` bytes; returns payload Gb/s measured
    /// between the first and last completion.
    fn stream_writes(l: &mut PcieLink, size: u64, n: u64) -> f64 {
        let mut first = None;
        let mut last = Time::ZERO;
        for i in 0..n {
            let now = l.idle_at(Direction::Upstream);
            last = l.dma_write(now, i * 4096, size, "packet-data").unwrap();
            first.get_or_insert(last);
        }
        ((n - 1) * size * 8) as f64 * 1e3 / (last - first.unwrap_or(last)).ps() as f64
    }

    #[test]
    fn write_stream_converges_to_the_closed_form() {
        let cfg = PcieConfig {
            lanes: 16,
            ..PcieConfig::default()
        };
        for size in [64, 256, 1500, 4096] {
            let mut l = link(cfg.clone());
            let sim = stream_writes(&mut l, size, 3000);
            let closed = model::write_gbps(&cfg, size);
            assert!(
                (sim - closed).abs() / closed < 2e-3,
                "{size}: {sim} vs {closed}"
            );
        }
    }

    #[test]
    fn reads_do_not_slow_writes_beyond_their_request_bytes() {
        let cfg = PcieConfig {
            lanes: 16,
            ..PcieConfig::default()
        };
        let n = 2000u64;
        let alone = stream_writes(&mut link(cfg.clone()), 1024, n);
        // Same writes with a 512 B read issued beside each one (small enough
        // that its completions never fill the downstream direction).
        let mut l = link(cfg.clone());
        let mut first = None;
        let mut last = Time::ZERO;
        for i in 0..n {
            let now = l.idle_at(Direction::Upstream);
            last = l.dma_write(now, i * 4096, 1024, "packet-data").unwrap();
            first.get_or_insert(last);
            l.dma_read(now, (1 << 32) + i * 4096, 512, "packet-data")
                .unwrap();
        }
        let mixed = ((n - 1) * 1024 * 8) as f64 * 1e3 / (last - first.unwrap_or(last)).ps() as f64;
        // Upstream now carries one 24 B MRd per 1024 B write.
        let write_wire = (4 * 24 + 1024) as f64;
        let expected = alone * write_wire / (write_wire + 24.0);
        assert!(
            (mixed - expected).abs() / expected < 5e-3,
            "{mixed} vs {expected}"
        );
        // Completions flowed downstream without touching upstream's TLPs.
        assert_eq!(l.counters(Direction::Downstream).tlps, n * 2);
        assert_eq!(l.counters(Direction::Upstream).tlps, n * (4 + 1));
    }

    #[test]
    fn read_tags_bound_outstanding_requests() {
        let cfg = PcieConfig {
            max_read_tags: 2,
            ..PcieConfig::default()
        };
        let mut l = link(cfg);
        let a = l.dma_read(Time::ZERO, 0, 64, "d").unwrap();
        let b = l.dma_read(Time::ZERO, 64, 64, "d").unwrap();
        // The third request must wait for the first tag to come back.
        assert_eq!(l.read_issue_at(Time::ZERO), a.min(b));
        let c = l.dma_read(Time::ZERO, 128, 64, "d").unwrap();
        assert!(c > a + Duration::from_ps(l.config().dma_read_latency_ps));
    }

    #[test]
    fn mmio_read_is_a_round_trip() {
        let mut l = link(PcieConfig::default());
        let done = l.mmio_read(Time::ZERO, 0x100, 4, "register").unwrap();
        let flights = 2 * l.config().one_way_latency_ps;
        assert!(done.ps() > flights && done.ps() < flights + 10_000);
        let arrive = l.mmio_write(done, 0x100, 8, "doorbell").unwrap();
        assert!(arrive > done + Duration::from_ps(l.config().one_way_latency_ps));
    }

    #[test]
    fn identical_inputs_give_identical_timelines() {
        let run = || {
            let mut l = link(PcieConfig::default());
            let mut t = Time::ZERO;
            let mut log = Vec::new();
            for i in 0..500u64 {
                t = l
                    .dma_write(t, i * 64, 64 + (i % 7) * 100, "packet-data")
                    .unwrap();
                log.push(t);
                log.push(l.dma_read(t, i * 128, 512, "descriptor").unwrap());
            }
            (
                log,
                l.counters(Direction::Upstream).clone(),
                l.counters(Direction::Downstream).clone(),
            )
        };
        assert_eq!(run(), run());
    }
}
