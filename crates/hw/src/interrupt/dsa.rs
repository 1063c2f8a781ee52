//! A DSA-like streaming accelerator (§5.4): descriptors are submitted, and
//! each completes after a latency drawn from a configurable distribution —
//! a mean (2 µs or 20 µs in the paper) plus uniform noise of ± `noise`,
//! never below a floor. A completion writes a completion record (what a
//! spinning or periodically polling core reads) and, if interrupts are
//! requested, raises a device interrupt vector at the core's APIC.
//!
//! Invariant: every submitted descriptor completes exactly once, in
//! completion-time order; the device keeps no wall clock.

use std::collections::BinaryHeap;

use nextio_engine::{Duration, SimRng, Time};
use thiserror::Error;

/// Completion-latency distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyDist {
    pub mean: Duration,
    /// Half-width of the uniform noise added to the mean.
    pub noise: Duration,
    /// Lower bound (a descriptor cannot complete before the engine reads it).
    pub floor: Duration,
}

#[derive(Clone, Debug, PartialEq, Error)]
pub enum DsaError {
    #[error("mean completion latency must be positive")]
    ZeroMean,
}

impl LatencyDist {
    pub fn new(mean: Duration, noise: Duration) -> Result<LatencyDist, DsaError> {
        if mean.0 == 0 {
            return Err(DsaError::ZeroMean);
        }
        Ok(LatencyDist {
            mean,
            noise,
            // A PCIe round trip for descriptor fetch plus completion write.
            floor: Duration::from_ns(200),
        })
    }
    pub fn sample(&self, rng: &mut SimRng) -> Duration {
        let u = rng.unit() * 2.0 - 1.0;
        let ps = self.mean.0 as f64 + u * self.noise.0 as f64;
        Duration((ps.max(self.floor.0 as f64)) as u64)
    }
}

/// The accelerator: outstanding descriptors and their completion times.
pub struct Dsa {
    dist: LatencyDist,
    rng: SimRng,
    next_id: u64,
    /// (completion time, id), earliest first.
    inflight: BinaryHeap<std::cmp::Reverse<(Time, u64)>>,
    completed: u64,
}

impl Dsa {
    pub fn new(dist: LatencyDist, rng: SimRng) -> Dsa {
        Dsa {
            dist,
            rng,
            next_id: 0,
            inflight: BinaryHeap::new(),
            completed: 0,
        }
    }
    /// Submit a descriptor at `now` (ENQCMD); returns (id, completion time).
    pub fn submit(&mut self, now: Time) -> (u64, Time) {
        let id = self.next_id;
        self.next_id += 1;
        let done = now + self.dist.sample(&mut self.rng);
        self.inflight.push(std::cmp::Reverse((done, id)));
        (id, done)
    }
    /// The device's next wake-up: the earliest outstanding completion.
    pub fn next_completion(&self) -> Option<Time> {
        self.inflight.peek().map(|r| r.0.0)
    }
    /// Completion records written by `now`.
    pub fn poll_completions(&mut self, now: Time) -> Vec<(u64, Time)> {
        let mut out = Vec::new();
        while let Some(std::cmp::Reverse((t, id))) = self.inflight.peek().copied() {
            if t > now {
                break;
            }
            self.inflight.pop();
            self.completed += 1;
            out.push((id, t));
        }
        out
    }
    pub fn submitted(&self) -> u64 {
        self.next_id
    }
    pub fn completed(&self) -> u64 {
        self.completed
    }
    pub fn outstanding(&self) -> usize {
        self.inflight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_descriptor_completes_once_in_time_order() {
        let d = LatencyDist::new(Duration::from_us(2), Duration::from_us(1)).unwrap();
        let mut dsa = Dsa::new(d, SimRng::new(7));
        let mut last = Time::ZERO;
        for i in 0..100 {
            let (_, t) = dsa.submit(Time(i * 1000));
            assert!(t >= Time(i * 1000) + Duration::from_ns(200));
        }
        let mut n = 0;
        for (_, t) in dsa.poll_completions(Time(u64::MAX)) {
            assert!(t >= last);
            last = t;
            n += 1;
        }
        assert_eq!(n, 100);
        assert_eq!(dsa.completed(), dsa.submitted());
        assert!(LatencyDist::new(Duration::ZERO, Duration::ZERO).is_err());
    }
}
