//! Statistics a run collects: named counters (drops by reason, bytes, …)
//! and latency histograms.
//!
//! Counters are kept sorted by name so they print and serialise in a
//! stable order; a counter is found by the address of its `&'static str`
//! name first (counting is on the hot path of every model, and names are
//! literals), by comparing names only when that misses. Latencies are recorded in picoseconds in an HdrHistogram with
//! three significant digits, which bounds quantile error to 0.1 %.

use hdrhistogram::Histogram;

use crate::time::Duration;

/// Named monotonically increasing counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Sorted by name; names are unique.
    values: Vec<(&'static str, u64)>,
}

impl Counters {
    pub fn new() -> Counters {
        Counters::default()
    }
    pub fn add(&mut self, name: &'static str, n: u64) {
        if let Some(entry) = self.values.iter_mut().find(|(k, _)| std::ptr::eq(*k, name)) {
            entry.1 += n;
            return;
        }
        match self.values.binary_search_by(|(k, _)| (*k).cmp(name)) {
            Ok(i) => self.values[i].1 += n,
            Err(i) => self.values.insert(i, (name, n)),
        }
    }
    pub fn inc(&mut self, name: &'static str) {
        self.add(name, 1);
    }
    pub fn get(&self, name: &str) -> u64 {
        match self.values.binary_search_by(|(k, _)| (*k).cmp(name)) {
            Ok(i) => self.values[i].1,
            Err(_) => 0,
        }
    }
    /// Sum of every counter whose name starts with `prefix`.
    pub fn sum_prefix(&self, prefix: &str) -> u64 {
        self.values
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.values.iter().map(|(k, v)| (*k, *v))
    }
    pub fn merge(&mut self, other: &Counters) {
        for (k, v) in other.iter() {
            self.add(k, v);
        }
    }
}

/// A latency distribution in picoseconds.
#[derive(Clone, Debug)]
pub struct LatencyHist {
    hist: Histogram<u64>,
}

impl Default for LatencyHist {
    fn default() -> Self {
        LatencyHist::new()
    }
}

impl LatencyHist {
    pub fn new() -> LatencyHist {
        // 3 significant figures, auto-resizing: cannot fail for these bounds.
        let mut hist =
            Histogram::new(3).expect("3 significant figures is a valid HdrHistogram precision");
        hist.auto(true);
        LatencyHist { hist }
    }
    pub fn record(&mut self, d: Duration) {
        // With auto-resize, recording only fails for u64::MAX-sized values.
        let _ = self.hist.record(d.0.max(1));
    }
    pub fn count(&self) -> u64 {
        self.hist.len()
    }
    /// The `q` quantile (0–1), zero if empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.hist.is_empty() {
            Duration::ZERO
        } else {
            Duration(self.hist.value_at_quantile(q.clamp(0.0, 1.0)))
        }
    }
    pub fn mean(&self) -> Duration {
        Duration(self.hist.mean().round() as u64)
    }
    pub fn max(&self) -> Duration {
        Duration(self.hist.max())
    }
    pub fn merge(&mut self, other: &LatencyHist) {
        let _ = self.hist.add(&other.hist);
    }
    /// The distribution in power-of-two buckets: `(from_ps, samples)` for
    /// each `[from_ps, 2 × from_ps)` from the smallest sample's bucket to
    /// the largest's (empty buckets between included, so the list reads as
    /// a histogram). The samples add up to [`LatencyHist::count`].
    pub fn log2_buckets(&self) -> Vec<(u64, u64)> {
        if self.hist.is_empty() {
            return Vec::new();
        }
        let (lo, hi) = (self.hist.min().max(1), self.hist.max());
        let mut out = Vec::new();
        let mut k = lo.ilog2();
        loop {
            let from = 1u64 << k;
            let to = from.checked_mul(2).map_or(u64::MAX, |b| b - 1);
            out.push((from, self.hist.count_between(from, to)));
            if to >= hi || k == 63 {
                return out;
            }
            k += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_buckets_hold_every_sample_once() {
        let mut h = LatencyHist::new();
        assert!(h.log2_buckets().is_empty());
        // Values on and either side of power-of-two edges, over a wide range.
        let values = [
            1u64,
            2,
            3,
            4,
            1023,
            1024,
            1025,
            65_535,
            65_536,
            9_999_999,
            1 << 40,
        ];
        for v in values {
            h.record(Duration(v));
        }
        let b = h.log2_buckets();
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), h.count());
        assert_eq!(b.first().map(|(f, _)| *f), Some(1));
        assert_eq!(b.last().map(|(f, _)| *f), Some(1 << 40));
        assert!(b.windows(2).all(|w| w[1].0 == 2 * w[0].0));
        let at = |from: u64| b.iter().find(|(f, _)| *f == from).map(|(_, n)| *n);
        assert_eq!(at(1024), Some(2), "1024 and 1025");
        assert_eq!(at(512), Some(1), "1023");
        assert_eq!(at(1 << 20), Some(0), "an empty bucket between is listed");
    }

    #[test]
    fn counters_sum_by_prefix() {
        let mut c = Counters::new();
        c.inc("drop.queue_full");
        c.add("drop.no_buffer", 2);
        c.add("delivered", 5);
        assert_eq!(c.sum_prefix("drop."), 3);
        assert_eq!(c.get("missing"), 0);
    }

    #[test]
    fn order_of_counting_does_not_matter() {
        let mut a = Counters::new();
        let mut b = Counters::new();
        for name in ["tx", "rx", "drop.b", "drop.a", "rx"] {
            a.inc(name);
        }
        for name in ["drop.a", "rx", "rx", "tx", "drop.b"] {
            b.inc(name);
        }
        assert_eq!(a, b);
        let names: Vec<_> = a.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["drop.a", "drop.b", "rx", "tx"]);
        // A name that is not the same literal still finds its counter.
        let owned = String::from("rx");
        assert_eq!(a.get(&owned), 2);
    }

    #[test]
    fn quantiles_within_precision() {
        let mut h = LatencyHist::new();
        for ns in 1..=1000u64 {
            h.record(Duration::from_ns(ns));
        }
        let p50 = h.quantile(0.5).as_ns_f64();
        assert!((p50 - 500.0).abs() <= 1.0, "{p50}");
        assert_eq!(LatencyHist::new().quantile(0.99), Duration::ZERO);
    }
}
