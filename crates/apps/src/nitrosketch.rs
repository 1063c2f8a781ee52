//! Network telemetry with NitroSketch (Liu et al., SIGCOMM '19) as ported
//! to Ensō (Ensō paper §3.3.3): a count-min sketch over flows' 5-tuples
//! whose row updates are sampled — each (packet, row) pair is updated with
//! probability p by adding 1/p, and the gaps between sampled pairs are
//! drawn geometrically so that unsampled packets cost no hash and no
//! random draw (NitroSketch's key idea) — and a table of heavy-hitter
//! candidates fed by sampled updates. Packets pass through unchanged.
//!
//! Memory layout of the application's region (real bytes in the simulated
//! memory, reached through the core's caches): `[sketch: rows × width ×
//! u32][heavy-hitter slots: slots × 32 B]`. A slot holds the flow's 13-byte
//! 5-tuple, a used flag and the flow's estimate when last updated.
//!
//! Invariants: the sketch's total is the number of sampled updates times
//! 1/p; with p = 1 it is an exact count-min sketch (never under a flow's
//! count).

use nextio_engine::{Counters, SimRng};
use serde::{Deserialize, Serialize};

use crate::app::{AppMemory, PacketApp, Verdict, five_tuple, hash64, udp_layout};

/// NitroSketch's primitives: the preset's `[apps.nitrosketch]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SketchCosts {
    /// Parsing the headers, extracting the 5-tuple and counting down the
    /// geometric gap: what every packet pays.
    pub packet_cycles: u64,
    /// One hash of a 5-tuple (one per sampled row).
    pub hash_cycles: u64,
    /// Drawing the next geometric gap (a uniform draw and a logarithm).
    pub geometric_cycles: u64,
}

/// The root preset's NitroSketch costs (read once per process).
pub fn costs() -> &'static SketchCosts {
    nextio_presets::cached_root_section!(SketchCosts, "apps.nitrosketch")
}

const SLOT_BYTES: u64 = 32;

/// A sketch's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct SketchConfig {
    /// Rows d: the bound holds with probability 1 − e^−d.
    pub rows: u64,
    /// Counters per row w: the bound is e/w of the packets counted.
    pub width: u64,
    /// Sampling probability p of a (packet, row) pair, in (0, 1].
    pub p: f64,
    /// Heavy-hitter candidate slots (a power of two).
    pub slots: u64,
    /// Estimate from which a flow becomes a heavy-hitter candidate.
    pub threshold: u32,
    /// Seed of the sampling draws.
    pub seed: u64,
}

impl Default for SketchConfig {
    fn default() -> Self {
        SketchConfig {
            rows: 4,
            width: 1 << 14,
            // assumption: one (packet, row) pair in 16 sampled, within the
            // range of sampling rates NitroSketch's evaluation uses for
            // software switches at tens of Gb/s.
            p: 1.0 / 16.0,
            slots: 256,
            threshold: 64,
            seed: 1,
        }
    }
}

impl SketchConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.rows == 0 || self.rows > 16 || self.width == 0 {
            return Err(format!(
                "a {}×{} sketch: 1 to 16 rows of at least one counter",
                self.rows, self.width
            ));
        }
        if !(self.p > 0.0 && self.p <= 1.0) {
            return Err(format!("sampling probability {} is outside (0, 1]", self.p));
        }
        if !self.slots.is_power_of_two() {
            return Err(format!("{} heavy-hitter slots: a power of two", self.slots));
        }
        Ok(())
    }
    fn slots_base(&self) -> u64 {
        (self.rows * self.width * 4).next_multiple_of(64)
    }
    /// The additive error bound of the count-min estimate: e/w of the
    /// packets counted.
    pub fn epsilon(&self) -> f64 {
        std::f64::consts::E / self.width as f64
    }
}

/// One NitroSketch instance.
pub struct NitroSketch {
    config: SketchConfig,
    costs: SketchCosts,
    rng: SimRng,
    /// (packet, row) pairs left to skip before the next sampled one.
    skip: u64,
    /// Increment of a sampled update: round(1/p).
    step: u32,
}

impl NitroSketch {
    pub fn new(config: SketchConfig, costs: SketchCosts) -> Result<NitroSketch, String> {
        config.validate()?;
        let mut rng = SimRng::new(config.seed).fork("nitrosketch");
        let step = (1.0 / config.p).round().max(1.0) as u32;
        let skip = geometric(&mut rng, config.p);
        Ok(NitroSketch {
            config,
            costs,
            rng,
            skip,
            step,
        })
    }

    fn counter_at(&self, row: u64, key: &[u8; 13]) -> u64 {
        let col = hash64(key, 0x6e69_7472 + row) % self.config.width;
        (row * self.config.width + col) * 4
    }

    /// The count-min estimate of a flow: its smallest counter.
    pub fn estimate(&self, mem: &mut dyn AppMemory, key: &[u8; 13]) -> u32 {
        (0..self.config.rows)
            .map(|r| mem.load_u32(self.counter_at(r, key)))
            .min()
            .unwrap_or(0)
    }

    /// The heavy-hitter candidates: 5-tuple and estimate, largest first.
    pub fn heavy_hitters(&self, mem: &mut dyn AppMemory) -> Vec<([u8; 13], u32)> {
        let mut out: Vec<([u8; 13], u32)> = (0..self.config.slots)
            .filter_map(|s| {
                let mut slot = [0u8; SLOT_BYTES as usize];
                mem.load(self.config.slots_base() + s * SLOT_BYTES, &mut slot);
                (slot[13] == 1).then(|| {
                    let mut k = [0u8; 13];
                    k.copy_from_slice(&slot[..13]);
                    (k, self.estimate(mem, &k))
                })
            })
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// Count one packet of `key`.
    pub fn update(&mut self, mem: &mut dyn AppMemory, key: &[u8; 13], counters: &mut Counters) {
        let rows = self.config.rows;
        while self.skip < rows {
            let row = self.skip;
            mem.compute(self.costs.hash_cycles);
            let at = self.counter_at(row, key);
            let v = mem.load_u32(at).saturating_add(self.step);
            mem.store_u32(at, v);
            counters.inc("sketch.row_updates");
            if v >= self.config.threshold {
                self.offer(mem, key, v);
            }
            mem.compute(self.costs.geometric_cycles);
            self.skip += 1 + geometric(&mut self.rng, self.config.p);
        }
        self.skip -= rows;
    }

    /// Put `key` in its candidate slot if it is free, already `key`'s, or
    /// held by a flow last seen with a smaller estimate.
    fn offer(&self, mem: &mut dyn AppMemory, key: &[u8; 13], estimate: u32) {
        let s = hash64(key, 0x6868) & (self.config.slots - 1);
        let at = self.config.slots_base() + s * SLOT_BYTES;
        let mut slot = [0u8; SLOT_BYTES as usize];
        mem.load(at, &mut slot);
        let held = u32::from_le_bytes([slot[16], slot[17], slot[18], slot[19]]);
        if slot[13] == 0 || slot[..13] == key[..] || held < estimate {
            slot[..13].copy_from_slice(key);
            slot[13] = 1;
            slot[16..20].copy_from_slice(&estimate.to_le_bytes());
            mem.store(at, &slot);
        }
    }
}

/// Failures before the first success of a Bernoulli(p) sequence (0 with
/// probability p), by inversion.
fn geometric(rng: &mut SimRng, p: f64) -> u64 {
    if p >= 1.0 {
        return 0;
    }
    let u = rng.unit().max(f64::MIN_POSITIVE);
    (u.ln() / (1.0 - p).ln()).floor().min(1e12) as u64
}

impl PacketApp for NitroSketch {
    fn name(&self) -> &'static str {
        "nitrosketch"
    }
    fn memory_bytes(&self) -> u64 {
        self.config.slots_base() + self.config.slots * SLOT_BYTES
    }
    fn init(&mut self, _mem: &mut dyn AppMemory) {
        // Counters and slots start at zero (fresh anonymous memory).
    }
    fn reads(&self, frame_len: usize) -> usize {
        frame_len.min(64)
    }
    fn process(
        &mut self,
        frame: &mut [u8],
        _frame_len: usize,
        mem: &mut dyn AppMemory,
        counters: &mut Counters,
    ) -> Verdict {
        mem.compute(self.costs.packet_cycles);
        let Some(l) = udp_layout(frame) else {
            return Verdict::Skipped("skipped.not_udp");
        };
        let key = five_tuple(frame, l);
        self.update(mem, &key, counters);
        Verdict::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::VecMemory;
    use crate::mica::ZipfKeys;
    use std::collections::HashMap;

    const COSTS: SketchCosts = SketchCosts {
        packet_cycles: 1,
        hash_cycles: 1,
        geometric_cycles: 1,
    };

    fn key(flow: u64) -> [u8; 13] {
        let mut k = [0u8; 13];
        k[..8].copy_from_slice(&flow.to_le_bytes());
        k[12] = 17;
        k
    }

    /// Count `n` Zipf-distributed packets over `flows` flows.
    fn run(
        config: SketchConfig,
        n: u64,
        flows: u64,
    ) -> (NitroSketch, VecMemory, HashMap<u64, u64>) {
        let mut s = NitroSketch::new(config, COSTS).unwrap();
        let mut mem = VecMemory::new(s.memory_bytes());
        let zipf = ZipfKeys::new(flows, 1.1);
        let mut rng = SimRng::new(9);
        let mut truth = HashMap::new();
        let mut c = Counters::new();
        for _ in 0..n {
            let f = zipf.sample(&mut rng);
            *truth.entry(f).or_insert(0) += 1;
            s.update(&mut mem, &key(f), &mut c);
        }
        (s, mem, truth)
    }

    #[test]
    fn unsampled_it_is_an_exact_count_min_sketch() {
        let config = SketchConfig {
            p: 1.0,
            width: 1024,
            ..SketchConfig::default()
        };
        let eps_n = config.epsilon() * 100_000.0;
        let (s, mut mem, truth) = run(config, 100_000, 5_000);
        let mut over = 0;
        for (f, c) in &truth {
            let e = s.estimate(&mut mem, &key(*f)) as u64;
            assert!(e >= *c, "flow {f}: {e} under its {c} packets");
            if e as f64 > *c as f64 + eps_n {
                over += 1;
            }
        }
        // Pr[error > εN] ≤ e^-d = 1.8 % per flow.
        assert!(
            (over as f64) < 0.02 * truth.len() as f64,
            "{over} of {} flows",
            truth.len()
        );
    }

    #[test]
    fn sampled_estimates_of_heavy_hitters_are_within_their_bound() {
        let config = SketchConfig::default();
        let n = 400_000u64;
        let (eps, p) = (config.epsilon(), config.p);
        let (s, mut mem, truth) = run(config, n, 100_000);
        let mut flows: Vec<(u64, u64)> = truth.into_iter().collect();
        flows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (f, c) in flows.iter().take(20) {
            let e = s.estimate(&mut mem, &key(*f)) as f64;
            // Count-min's εN, plus four standard deviations of sampling
            // (1/p · Binomial(c, p) has variance c(1 − p)/p).
            let bound = eps * n as f64 + 4.0 * (*c as f64 * (1.0 - p) / p).sqrt();
            assert!(
                (e - *c as f64).abs() <= bound,
                "flow {f}: estimate {e} vs {c} packets (bound {bound:.0})"
            );
        }
        // The ten largest flows are all among the reported candidates.
        let reported: Vec<[u8; 13]> = s.heavy_hitters(&mut mem).iter().map(|h| h.0).collect();
        for (f, _) in flows.iter().take(10) {
            assert!(reported.contains(&key(*f)), "heavy flow {f} not reported");
        }
        assert_eq!(mem.faults, 0);
    }

    #[test]
    fn sampling_skips_most_rows() {
        let no_candidates = SketchConfig {
            threshold: u32::MAX,
            ..SketchConfig::default()
        };
        let (_, mem, _) = run(no_candidates, 100_000, 1000);
        // About p·d = 1/4 row updates per packet, one load and store each.
        let per_packet = mem.stores as f64 / 100_000.0;
        assert!(
            (0.2..0.35).contains(&per_packet),
            "{per_packet} stores per packet"
        );
    }

    #[test]
    fn bad_configurations_are_refused() {
        let d = SketchConfig::default();
        for bad in [
            SketchConfig {
                p: 0.0,
                ..d.clone()
            },
            SketchConfig {
                p: 1.5,
                ..d.clone()
            },
            SketchConfig {
                rows: 0,
                ..d.clone()
            },
            SketchConfig {
                slots: 100,
                ..d.clone()
            },
        ] {
            assert!(NitroSketch::new(bad, COSTS).is_err());
        }
    }
}
