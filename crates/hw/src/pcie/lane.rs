//! One direction of a PCIe link: a serial symbol stream timed by a
//! [`Serializer`], carrying TLPs and, between them, the Ack and UpdateFC
//! DLLPs and SKIP ordered sets the spec requires.
//!
//! When DLLPs go out is a [`DllpSchedule`]. The default follows the spec:
//! a lane carries the Acks and UpdateFCs for what the *opposite* lane
//! delivered ([`Lane::received`]), each coalescing everything that arrived
//! within its interval, so a lane facing an idle direction sends none and
//! one facing a busy direction sends one per interval. pcie-bench's closed
//! form instead charges every lane one Ack and one UpdateFC per interval
//! of its own transmissions, reading N symbol times as N bytes; that
//! schedule is kept to reproduce its figures. SKIP ordered sets go out
//! every 1538 symbol times of each lane's own transmissions under both
//! (a SKIP occupies every lane at once, so its share of the line is the
//! same at every width). Simulated throughput therefore emerges from the
//! TLP stream and converges to [`super::model`]'s closed form of the same
//! schedule; it is not computed from it.
//!
//! Invariants:
//! * a TLP never starts before it is ready, and no two transmissions
//!   overlap on the line: each goes into the first idle gap it fits or
//!   after everything booked so far;
//! * a DLLP or SKIP is only ever inserted between TLPs, never inside one;
//! * under the spec schedule a lane owes at most one DLLP of each kind at
//!   a time, and never one for a direction that delivered nothing;
//! * the bytes attributed to purposes sum to exactly the header plus
//!   payload bytes of the TLPs sent ([`DirectionCounters`]).
//!
//! A TLP booked for a future instant (a completion waiting out the host's
//! latency) leaves an idle gap before it; traffic submitted later but ready
//! sooner (a doorbell, a write, a DLLP) is sent in that gap if it fits,
//! otherwise after everything booked. SKIPs and pcie-bench-schedule DLLPs
//! are only inserted at the end of the booked stream, though gap traffic
//! counts towards their intervals.

use std::collections::VecDeque;

use nextio_engine::{Duration, Rate, Serializer, Time};
use serde::{Deserialize, Serialize};

use super::credits::CreditClass;
use super::{DirectionCounters, PcieConfig, Purpose, model};

/// When a lane sends its Ack and UpdateFC DLLPs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DllpSchedule {
    /// As the spec allows: the receiver of TLPs acknowledges them on the
    /// opposite lane with one Ack per Ack latency limit, coalescing every
    /// TLP that arrived within it (PCIe Base Spec 5.0 §3.6.3.1, Tables
    /// 3-7..3-9), and returns the posted and non-posted credits it used
    /// with one UpdateFC per type per recommended interval (§2.6.1.2,
    /// Tables 2-46..2-48); completions need none, their credits being
    /// infinite. The tables count symbol times — one symbol on every lane
    /// at once — so an interval of N lasts N × lanes bytes of the stream.
    #[default]
    Spec,
    /// pcie-bench's closed-form assumption (model/pcie.py): every lane
    /// carries one Ack and one UpdateFC per interval of its own
    /// transmissions, N symbol times read as N bytes — an upper bound on
    /// DLLP overhead, kept to reproduce pcie-bench's figures.
    PcieBench,
}

impl DllpSchedule {
    /// The names a configuration uses: `spec`, `pcie-bench`.
    pub const NAMES: [&'static str; 2] = ["spec", "pcie-bench"];

    pub fn from_name(name: &str) -> Option<DllpSchedule> {
        match name {
            "spec" => Some(DllpSchedule::Spec),
            "pcie-bench" => Some(DllpSchedule::PcieBench),
            _ => None,
        }
    }
}

/// A DLLP owed under [`DllpSchedule::Spec`]: it goes out at `due`; `sent`
/// once its cost on the line has been settled.
#[derive(Clone, Copy, Debug)]
struct OwedDllp {
    due: Time,
    sent: bool,
}

/// The DLLPs a lane may owe under [`DllpSchedule::Spec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owed {
    Ack = 0,
    UpdateFcPosted = 1,
    UpdateFcNonPosted = 2,
}

/// One direction's symbol stream.
#[derive(Clone, Debug)]
pub struct Lane {
    serializer: Serializer,
    /// When the last thing sent in this direction leaves the transmitter.
    free_at: Time,
    schedule: DllpSchedule,
    /// pcie-bench schedule: DLLP intervals in bytes of this lane's stream
    /// (`u64::MAX` under the spec schedule, so none is ever owed).
    ack_interval_bytes: u64,
    fc_interval_bytes: u64,
    /// Spec schedule: how long the receiver may wait before its Ack and
    /// its UpdateFC of each type.
    ack_interval: Duration,
    fc_interval: Duration,
    /// Spec schedule: the Ack and the UpdateFC of each type last owed;
    /// anything the opposite lane delivers before one's due time is
    /// covered by it.
    owed: [Option<OwedDllp>; 3],
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
    /// that are not even ready yet. Sorted and disjoint: each new gap
    /// starts at or after `free_at`, where every older one ended, and a
    /// gap is only ever split in place; so the ends ascend too.
    gaps: VecDeque<(Time, Time)>,
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
        let serializer = Serializer::new(rate, num, den);
        let lanes = cfg.lanes as u64;
        let (ack_interval_bytes, fc_interval_bytes) = match cfg.dllp_schedule {
            DllpSchedule::Spec => (u64::MAX, u64::MAX),
            DllpSchedule::PcieBench => (ack, fc),
        };
        Lane {
            ack_interval: serializer.one_off(ack.saturating_mul(lanes)),
            fc_interval: serializer.one_off(fc.saturating_mul(lanes)),
            serializer,
            free_at: Time::ZERO,
            schedule: cfg.dllp_schedule,
            ack_interval_bytes,
            fc_interval_bytes,
            owed: [None; 3],
            since_ack_bytes: 0,
            since_fc_bytes: 0,
            since_skip_bytes: 0,
            gaps: VecDeque::new(),
            counters: DirectionCounters::default(),
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.since_ack_bytes += bytes;
        self.since_fc_bytes += bytes;
        self.since_skip_bytes += bytes;
    }

    /// Send every SKIP (and, under pcie-bench's schedule, every DLLP) owed
    /// by this lane's own transmissions, starting at `t`; returns when the
    /// last one has left. Sending them also counts towards the intervals,
    /// so in a long stream exactly 4/1538 (+ 8/ack + 8/fc) of it is
    /// overhead.
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
        self.place(now, ready, bytes)
    }

    /// How long a TLP of `bytes` occupies the line.
    pub fn tlp_time(&self, bytes: u64) -> Duration {
        self.serializer.one_off(bytes)
    }

    /// The opposite lane delivered a TLP of `class` at `arrived`: under the
    /// spec schedule this lane owes its receiver an Ack and, for a posted
    /// or non-posted request, an UpdateFC — unless one still to go out
    /// covers it (the receiver waits out its interval, coalescing what
    /// arrives meanwhile).
    pub fn received(&mut self, arrived: Time, class: CreditClass) {
        if self.schedule != DllpSchedule::Spec {
            return;
        }
        self.owe(arrived, Owed::Ack, self.ack_interval);
        let fc = match class {
            CreditClass::Posted => Owed::UpdateFcPosted,
            CreditClass::NonPosted => Owed::UpdateFcNonPosted,
            CreditClass::Completion => return,
        };
        self.owe(arrived, fc, self.fc_interval);
    }

    fn owe(&mut self, arrived: Time, kind: Owed, interval: Duration) {
        if let Some(owed) = self.owed[kind as usize] {
            if owed.due >= arrived {
                return;
            }
            // The previous one went out at its due time.
            if !owed.sent {
                self.send_dllp_at(owed.due);
            }
        }
        self.owed[kind as usize] = Some(OwedDllp {
            due: arrived + interval,
            sent: false,
        });
        self.counters.dllps += 1;
        self.counters.dllp_bytes += model::DLLP_BYTES;
    }

    /// A DLLP that went out at `due`: free if the line was idle then, else
    /// slipped in between the TLPs booked, delaying what follows. (The
    /// line is taken as busy up to `free_at`; a DLLP due in an idle gap
    /// before a booking is charged, a rare and small overcount.)
    fn send_dllp_at(&mut self, due: Time) {
        if due < self.free_at {
            self.free_at += self.serializer.next(model::DLLP_BYTES);
            self.advance(model::DLLP_BYTES);
        }
    }

    /// Send, from `t` on, the DLLPs owed that fell due by `until`; returns
    /// when the line is free again.
    fn send_due_dllps(&mut self, mut t: Time, until: Time) -> Time {
        for slot in 0..self.owed.len() {
            let Some(owed) = self.owed[slot] else {
                continue;
            };
            if owed.sent || owed.due > until {
                continue;
            }
            self.owed[slot] = Some(OwedDllp { sent: true, ..owed });
            // Due while the line was busy: it goes out as soon as it is
            // free. Due later, while the line idled: it cost nothing.
            if owed.due < t {
                t += self.serializer.next(model::DLLP_BYTES);
                self.advance(model::DLLP_BYTES);
            }
        }
        t
    }

    /// Put `bytes` (already counted) on the line at `ready` or as soon
    /// after as the line is free; returns when they have left.
    fn place(&mut self, now: Time, ready: Time, bytes: u64) -> Time {
        // Gaps wholly in the past can never be used again; the ends
        // ascend, so they are a prefix.
        while self.gaps.front().is_some_and(|(_, end)| *end <= now) {
            self.gaps.pop_front();
        }
        if ready < self.free_at
            && let Some(done) = self.fill_gap(ready, bytes)
        {
            return done;
        }
        // Overhead owed goes out first, from the moment the line last went
        // quiet: into the idle gap if there is one, else ahead of the TLP.
        let t = self.send_owed(self.free_at);
        let mut t = self.send_due_dllps(t, ready.max(t));
        if ready > t {
            // The line idles until the TLP is ready: remember the gap for
            // traffic that becomes ready sooner. A fraction of a picosecond
            // carried across an idle gap means nothing.
            debug_assert!(self.gaps.back().is_none_or(|(_, end)| *end <= t.max(now)));
            self.gaps.push_back((t.max(now), ready));
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
        // No gap ending before `ready + duration` can hold it, and the
        // ends ascend: the search starts after them.
        let from = self.gaps.partition_point(|(_, b)| *b < ready + duration);
        let (i, start) = self
            .gaps
            .range(from..)
            .enumerate()
            .find_map(|(i, (a, b))| {
                let start = ready.max(*a);
                (start + duration <= *b).then_some((from + i, start))
            })?;
        let (a, b) = self.gaps.remove(i)?;
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
