//! A key-value store with GET and range SCAN over real values, and the
//! bimodal request mix of the xUI paper's RocksDB experiment (§5.3: 99.5 %
//! GET of 1.2 µs, 0.5 % SCAN of 580 µs).
//!
//! The data operations are real (values are stored, returned and summed);
//! their *time* is the service time the paper states for RocksDB, because
//! the model does not simulate RocksDB's internals.
//!
//! Invariant: a GET of a loaded key returns exactly the value stored.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use nextio_engine::{Duration, SimRng};
use nextio_hw::interrupt::pipeline::InstrMix;

/// Request kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get { key: u64 },
    Scan { start: u64, count: usize },
}

/// The store.
#[derive(Clone, Debug, Default)]
pub struct KvStore {
    map: BTreeMap<u64, Vec<u8>>,
}

/// A deterministic value for `key` (so results can be checked).
pub fn value_of(key: u64, bytes: usize) -> Vec<u8> {
    (0..bytes)
        .map(|i| (key.wrapping_mul(0x9e37_79b9).wrapping_add(i as u64) >> 3) as u8)
        .collect()
}

impl KvStore {
    /// A store with keys `0..keys`, each holding `value_bytes` bytes.
    pub fn load(keys: u64, value_bytes: usize) -> KvStore {
        KvStore {
            map: (0..keys).map(|k| (k, value_of(k, value_bytes))).collect(),
        }
    }
    pub fn put(&mut self, key: u64, value: Vec<u8>) {
        self.map.insert(key, value);
    }
    pub fn get(&self, key: u64) -> Option<&[u8]> {
        self.map.get(&key).map(Vec::as_slice)
    }
    /// Sum of the bytes of up to `count` values from `start` (what a range
    /// aggregation returns).
    pub fn scan(&self, start: u64, count: usize) -> u64 {
        self.map
            .range(start..)
            .take(count)
            .map(|(_, v)| v.iter().map(|b| *b as u64).sum::<u64>())
            .sum()
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Execute `op`, returning a digest of the result.
    pub fn execute(&self, op: Op) -> u64 {
        match op {
            Op::Get { key } => self
                .get(key)
                .map(|v| v.iter().map(|b| *b as u64).sum())
                .unwrap_or(0),
            Op::Scan { start, count } => self.scan(start, count),
        }
    }
}

/// The bimodal workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bimodal {
    pub scan_fraction: f64,
    pub get_time: Duration,
    pub scan_time: Duration,
    pub keys: u64,
    pub scan_count: usize,
}

impl Default for Bimodal {
    fn default() -> Self {
        Bimodal {
            scan_fraction: 0.005,              // §5.3
            get_time: Duration::from_ns(1200), // §5.3
            scan_time: Duration::from_us(580), // §5.3
            keys: 10_000,
            scan_count: 500,
        }
    }
}

impl Bimodal {
    /// Draw the next request.
    pub fn next(&self, rng: &mut SimRng) -> Op {
        if rng.unit() < self.scan_fraction {
            Op::Scan {
                start: rng.below(self.keys),
                count: self.scan_count,
            }
        } else {
            Op::Get {
                key: rng.below(self.keys),
            }
        }
    }
    pub fn service_time(&self, op: Op) -> Duration {
        match op {
            Op::Get { .. } => self.get_time,
            Op::Scan { .. } => self.scan_time,
        }
    }
    /// Mean service time: the inverse of the single-core capacity.
    pub fn mean_service(&self) -> Duration {
        Duration(
            ((1.0 - self.scan_fraction) * self.get_time.0 as f64
                + self.scan_fraction * self.scan_time.0 as f64) as u64,
        )
    }
}

/// RocksDB's pipeline behaviour (pointer-chasing through memtables and
/// block cache): the preset's `[apps.kv]`, where each value's source is.
pub fn rocksdb_mix() -> InstrMix {
    static MIX: OnceLock<InstrMix> = OnceLock::new();
    *MIX.get_or_init(|| nextio_presets::root_section::<InstrMix>("apps.kv").named("rocksdb"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gets_return_stored_values_and_scans_aggregate() {
        let mut s = KvStore::load(100, 16);
        assert_eq!(s.get(7), Some(value_of(7, 16).as_slice()));
        assert_eq!(s.get(1000), None);
        s.put(1000, vec![1, 2, 3]);
        assert_eq!(s.execute(Op::Get { key: 1000 }), 6);
        let by_hand: u64 = (10..15)
            .map(|k| value_of(k, 16).iter().map(|b| *b as u64).sum::<u64>())
            .sum();
        assert_eq!(s.scan(10, 5), by_hand);
    }

    #[test]
    fn the_mix_is_bimodal() {
        let b = Bimodal::default();
        let mut rng = SimRng::new(3);
        let n = 200_000;
        let scans = (0..n)
            .filter(|_| matches!(b.next(&mut rng), Op::Scan { .. }))
            .count();
        let f = scans as f64 / n as f64;
        assert!((f - 0.005).abs() < 0.001, "{f}");
    }
}
