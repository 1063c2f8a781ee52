//! Which lines some core's private cache (L1d or L2) may hold: a counting
//! filter consulted before device traffic snoops every core.
//!
//! A device write must drop the line from every core's L1d and L2, and a
//! device read that misses the LLC asks whether any core holds it; done
//! directly, that is two lookups per core per line, and on a many-core
//! host most of the simulator's time. The filter keeps, per bucket of
//! line addresses, how many private copies exist; a bucket at zero
//! proves no core holds the line, so the per-core search is skipped.
//!
//! Keeps true: the count of a bucket is exactly the number of (core,
//! level) copies of lines hashing to it — every private insertion adds
//! one, every private eviction or invalidation removes one — so a zero
//! is never wrong (a non-zero only means "look"). It changes no hit, miss
//! or victim: it only decides whether a search that would find nothing
//! is made.

/// Counts of private copies per bucket of line addresses.
#[derive(Clone, Debug)]
pub(super) struct Presence {
    counts: Vec<u32>,
    /// `64 - log2(buckets)`: a bucket is the top bits of a multiplicative hash.
    shift: u32,
}

impl Presence {
    /// A filter for up to `lines` private lines in all: about two buckets
    /// per line, so buckets are mostly empty.
    pub(super) fn new(lines: u64) -> Presence {
        let buckets = (lines.saturating_mul(2)).next_power_of_two().max(1024);
        Presence {
            counts: vec![0; buckets as usize],
            shift: 64 - buckets.trailing_zeros(),
        }
    }

    fn bucket(&self, line: u64) -> usize {
        // Fibonacci hashing: consecutive lines land in distant buckets.
        (line.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// A private cache took a copy of `line`.
    pub(super) fn add(&mut self, line: u64) {
        let b = self.bucket(line);
        self.counts[b] += 1;
    }

    /// A private cache dropped its copy of `line` (evicted or invalidated).
    pub(super) fn remove(&mut self, line: u64) {
        let b = self.bucket(line);
        debug_assert!(self.counts[b] > 0, "a copy removed that was never added");
        self.counts[b] -= 1;
    }

    /// Whether some private cache may hold `line`; `false` is certain.
    pub(super) fn may_hold(&self, line: u64) -> bool {
        self.counts[self.bucket(line)] != 0
    }

    /// Copies counted over every bucket (for tests).
    #[cfg(test)]
    pub(super) fn total(&self) -> u64 {
        self.counts.iter().map(|&c| c as u64).sum()
    }
}
