//! One direction of a PCIe link: a serial symbol stream timed by a
//! [`Serializer`], carrying TLPs and, between them, the Ack and UpdateFC
//! DLLPs and SKIP ordered sets the spec requires.
//!
//! Into the stream the lane inserts DLLPs at the spec's recommended
//! intervals and SKIP ordered sets every 1538 symbol times, counted over
//! its own transmissions. This follows pcie-bench's assumption that both
//! directions are in use, so each carries the DLLPs acknowledging and
//! crediting the other; like pcie-bench, an interval of N symbol times is
//! taken as N bytes of the link's stream. Simulated throughput therefore
//! emerges from the TLP stream and converges to [`super::model`]'s closed
//! form; it is not computed from it.
//!
//! Invariants:
//! * a TLP never starts before it is ready, and no two TLPs overlap on the
//!   line: each goes into the first idle gap it fits or after everything
//!   booked so far;
//! * a DLLP or SKIP is only ever inserted between TLPs, never inside one;
//! * the bytes attributed to purposes sum to exactly the header plus
//!   payload bytes of the TLPs sent ([`DirectionCounters`]).
//!
//! A TLP booked for a future instant (a completion waiting out the host's
//! latency) leaves an idle gap before it; traffic submitted later but ready
//! sooner (a doorbell, a write) is sent in that gap if it fits, otherwise
//! after everything booked. DLLPs and SKIPs are only inserted at the end of
//! the booked stream, though gap traffic counts towards their intervals.

use nextio_engine::{Rate, Serializer, Time};

use super::{DirectionCounters, PcieConfig, Purpose, model};

/// One direction's symbol stream.
#[derive(Clone, Debug)]
pub struct Lane {
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
    pub fn new(cfg: &PcieConfig, rate: Rate) -> Lane {
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
    pub fn send_tlp(
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

impl Lane {
    /// What the lane has carried so far.
    pub fn counters(&self) -> &DirectionCounters {
        &self.counters
    }
    /// When the lane finishes sending everything booked so far.
    pub fn free_at(&self) -> Time {
        self.free_at
    }
}
