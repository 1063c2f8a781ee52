//! The MICA key-value store (Lim et al., NSDI '14, §4.2–4.3) as ported to
//! Ensō (Ensō paper §3.3.3): one partition per core, a circular log of
//! items and a lossy hash index over it, serving GET and SET over UDP.
//!
//! Memory layout of the application's region (real bytes in the simulated
//! memory, reached through the core's caches): `[index: buckets × 64 B]
//! [log: log_bytes]`. A bucket is one cache line of [`BUCKET_SLOTS`]
//! 8-byte slots, each a 16-bit tag of the key's hash and a 48-bit log
//! offset (0 = empty; offsets start at one item so none is 0). The log is
//! appended at a monotonically growing offset and wraps: a slot whose
//! offset is more than a log's length behind the tail names an
//! overwritten item and is a miss — MICA's lossy, FIFO-evicting cache
//! mode. An item is a [`ITEM_BYTES`]-byte record: key length, value
//! length, key, value.
//!
//! Wire format of a request, in the UDP payload after the generator's
//! stamp: `[op: 1][status: 1][key: 8][value: 8]`; the response is the
//! request rewritten in place — addresses swapped, status set, the value
//! of a GET filled in. Requests are sized to their response (the value
//! field travels empty in a GET), so the in-place reply fits.
//!
//! Invariants: a GET of a key whose last SET is still in the log returns
//! exactly the value stored; a GET never returns another key's value.

use nextio_engine::{Counters, SimRng};
use serde::{Deserialize, Serialize};

use crate::app::{AppMemory, PacketApp, Verdict, hash64, rewrite, swap_endpoints, udp_layout};

/// MICA's primitives: the preset's `[apps.mica]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MicaCosts {
    /// Parsing a request, dispatching on its operation and building the
    /// response (memory is costed apart).
    pub request_cycles: u64,
    /// One hash of an 8-byte key.
    pub hash_cycles: u64,
    /// Comparing a bucket's slots with a tag, and a key with an item's.
    pub probe_cycles: u64,
    /// One RFC 1624 checksum-word update.
    pub checksum_word_cycles: u64,
}

/// The root preset's MICA costs (read once per process).
pub fn costs() -> &'static MicaCosts {
    nextio_presets::cached_root_section!(MicaCosts, "apps.mica")
}

pub const KEY_BYTES: usize = 8;
pub const VALUE_BYTES: usize = 8;
/// An item in the log: key length, value length, 6 bytes of padding,
/// key, value.
pub const ITEM_BYTES: u64 = 8 + KEY_BYTES as u64 + VALUE_BYTES as u64;
/// Slots of a bucket (one 64-byte line).
pub const BUCKET_SLOTS: u64 = 8;
const BUCKET_BYTES: u64 = 64;
/// Bytes of a request after the stamp: op, status, key, value.
pub const REQUEST_BYTES: usize = 2 + KEY_BYTES + VALUE_BYTES;

/// Operations and statuses on the wire.
pub const OP_GET: u8 = 1;
pub const OP_SET: u8 = 2;
pub const STATUS_HIT: u8 = 1;
pub const STATUS_MISS: u8 = 2;
pub const STATUS_STORED: u8 = 3;

/// A MICA partition's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MicaConfig {
    /// Keys loaded before the run: `0..keys`.
    pub keys: u64,
    /// Index buckets (a power of two).
    pub buckets: u64,
    /// Log bytes (a multiple of [`ITEM_BYTES`]).
    pub log_bytes: u64,
}

impl Default for MicaConfig {
    fn default() -> Self {
        MicaConfig {
            keys: 1 << 20,
            // Two slots per key: few index evictions at load.
            buckets: 1 << 18,
            // Room for every key and as many SETs again.
            log_bytes: ITEM_BYTES * (2 << 20),
        }
    }
}

impl MicaConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.buckets.is_power_of_two() {
            return Err(format!("{} index buckets: a power of two", self.buckets));
        }
        if self.log_bytes == 0 || !self.log_bytes.is_multiple_of(ITEM_BYTES) {
            return Err(format!(
                "log of {} bytes: a positive multiple of {ITEM_BYTES}",
                self.log_bytes
            ));
        }
        if self.keys.saturating_mul(ITEM_BYTES) > self.log_bytes {
            return Err(format!(
                "{} keys do not fit a {}-byte log",
                self.keys, self.log_bytes
            ));
        }
        Ok(())
    }
    fn log_base(&self) -> u64 {
        self.buckets * BUCKET_BYTES
    }
}

/// The value a key is loaded with (deterministic, so results can be checked).
pub fn loaded_value(key: u64) -> [u8; VALUE_BYTES] {
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555).to_le_bytes()
}

/// A request's bytes (after the stamp).
pub fn request(op: u8, key: u64, value: [u8; VALUE_BYTES]) -> [u8; REQUEST_BYTES] {
    let mut r = [0u8; REQUEST_BYTES];
    r[0] = op;
    r[2..2 + KEY_BYTES].copy_from_slice(&key.to_le_bytes());
    if op == OP_SET {
        r[2 + KEY_BYTES..].copy_from_slice(&value);
    }
    r
}

/// Keys drawn from a Zipf distribution over `0..n` with exponent `s`
/// (MICA's skewed workload: 0.99), by inverting its cumulative sum.
pub struct ZipfKeys {
    cdf: Vec<f64>,
}

impl ZipfKeys {
    pub fn new(n: u64, s: f64) -> ZipfKeys {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n.max(1))
            .map(|k| {
                acc += 1.0 / (k as f64).powf(s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        ZipfKeys { cdf }
    }
    /// The next key (0 the most popular).
    pub fn sample(&self, rng: &mut SimRng) -> u64 {
        let u = rng.unit();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1) as u64
    }
}

/// One MICA partition.
pub struct Mica {
    config: MicaConfig,
    costs: MicaCosts,
    /// Next log offset to append at (starts at one item: 0 means empty).
    tail: u64,
}

impl Mica {
    pub fn new(config: MicaConfig, costs: MicaCosts) -> Result<Mica, String> {
        config.validate()?;
        Ok(Mica {
            config,
            costs,
            tail: ITEM_BYTES,
        })
    }

    fn locate(&self, key: u64) -> (u64, u64) {
        let h = hash64(&key.to_le_bytes(), 0x4d49_4341);
        let bucket = (h & (self.config.buckets - 1)) * BUCKET_BYTES;
        // A non-zero 16-bit tag from the hash's top bits.
        let tag = (h >> 48).max(1);
        (bucket, tag)
    }

    fn live(&self, offset: u64) -> bool {
        offset != 0 && offset + self.config.log_bytes >= self.tail && offset < self.tail
    }

    fn item_at(&self, offset: u64) -> u64 {
        self.config.log_base() + offset % self.config.log_bytes
    }

    /// Look `key` up: its value if the index and log still hold it.
    pub fn get(&self, mem: &mut dyn AppMemory, key: u64) -> Option<[u8; VALUE_BYTES]> {
        mem.compute(self.costs.hash_cycles);
        let (bucket, tag) = self.locate(key);
        let mut line = [0u8; BUCKET_BYTES as usize];
        mem.load(bucket, &mut line);
        mem.compute(self.costs.probe_cycles);
        for s in 0..BUCKET_SLOTS as usize {
            let slot = u64::from_le_bytes(line[s * 8..s * 8 + 8].try_into().unwrap_or_default());
            if slot >> 48 != tag || !self.live(slot & ((1 << 48) - 1)) {
                continue;
            }
            let mut item = [0u8; ITEM_BYTES as usize];
            mem.load(self.item_at(slot & ((1 << 48) - 1)), &mut item);
            mem.compute(self.costs.probe_cycles);
            if item[8..8 + KEY_BYTES] == key.to_le_bytes() {
                let mut v = [0u8; VALUE_BYTES];
                v.copy_from_slice(&item[8 + KEY_BYTES..]);
                return Some(v);
            }
        }
        None
    }

    /// Store `value` under `key`: append it to the log and point the
    /// index at it, replacing the key's old slot, a free or stale slot,
    /// or else the oldest slot of the bucket (lossy). Returns whether a
    /// live slot of another key was evicted.
    pub fn set(&mut self, mem: &mut dyn AppMemory, key: u64, value: [u8; VALUE_BYTES]) -> bool {
        mem.compute(self.costs.hash_cycles);
        let (bucket, tag) = self.locate(key);
        let offset = self.tail;
        let mut item = [0u8; ITEM_BYTES as usize];
        item[0] = KEY_BYTES as u8;
        item[1] = VALUE_BYTES as u8;
        item[8..8 + KEY_BYTES].copy_from_slice(&key.to_le_bytes());
        item[8 + KEY_BYTES..].copy_from_slice(&value);
        mem.store(self.item_at(offset), &item);
        self.tail += ITEM_BYTES;
        let mut line = [0u8; BUCKET_BYTES as usize];
        mem.load(bucket, &mut line);
        mem.compute(self.costs.probe_cycles);
        let slots: Vec<u64> = (0..BUCKET_SLOTS as usize)
            .map(|s| u64::from_le_bytes(line[s * 8..s * 8 + 8].try_into().unwrap_or_default()))
            .collect();
        let offset_of = |s: u64| s & ((1 << 48) - 1);
        // The key's own slot: same tag and the item it names has this key.
        let own = slots.iter().position(|s| {
            if *s >> 48 != tag || !self.live(offset_of(*s)) {
                return false;
            }
            let mut k = [0u8; KEY_BYTES];
            mem.load(self.item_at(offset_of(*s)) + 8, &mut k);
            k == key.to_le_bytes()
        });
        let free = || slots.iter().position(|s| !self.live(offset_of(*s)));
        let (slot, evicted) = match own.or_else(free) {
            Some(i) => (i, false),
            None => {
                let oldest = (0..slots.len())
                    .min_by_key(|i| offset_of(slots[*i]))
                    .unwrap_or(0);
                (oldest, true)
            }
        };
        mem.store_u64(bucket + slot as u64 * 8, (tag << 48) | offset);
        evicted
    }
}

impl PacketApp for Mica {
    fn name(&self) -> &'static str {
        "mica"
    }
    fn memory_bytes(&self) -> u64 {
        self.config.log_base() + self.config.log_bytes
    }
    fn init(&mut self, mem: &mut dyn AppMemory) {
        for key in 0..self.config.keys {
            self.set(mem, key, loaded_value(key));
        }
    }
    fn reads(&self, frame_len: usize) -> usize {
        frame_len
    }
    fn process(
        &mut self,
        frame: &mut [u8],
        _frame_len: usize,
        mem: &mut dyn AppMemory,
        counters: &mut Counters,
    ) -> Verdict {
        mem.compute(self.costs.request_cycles);
        let Some(l) = udp_layout(frame) else {
            return Verdict::Skipped("skipped.not_udp");
        };
        let at = l.app_data();
        if l.end() < at + REQUEST_BYTES || frame.len() < at + REQUEST_BYTES {
            return Verdict::Skipped("skipped.short_request");
        }
        let key = u64::from_le_bytes(
            frame[at + 2..at + 2 + KEY_BYTES]
                .try_into()
                .unwrap_or_default(),
        );
        let mut reply = [0u8; 1 + VALUE_BYTES];
        match frame[at] {
            OP_GET => match self.get(mem, key) {
                Some(v) => {
                    counters.inc("mica.get_hit");
                    reply[0] = STATUS_HIT;
                    reply[1..].copy_from_slice(&v);
                }
                None => {
                    counters.inc("mica.get_miss");
                    reply[0] = STATUS_MISS;
                }
            },
            OP_SET => {
                let mut v = [0u8; VALUE_BYTES];
                v.copy_from_slice(&frame[at + 2 + KEY_BYTES..at + REQUEST_BYTES]);
                if self.set(mem, key, v) {
                    counters.inc("mica.index_evictions");
                }
                counters.inc("mica.set");
                reply[0] = STATUS_STORED;
                reply[1..].copy_from_slice(&v);
            }
            _ => return Verdict::Skipped("skipped.unknown_op"),
        }
        swap_endpoints(frame, l);
        // The status byte, then the value over the key's slot end.
        let mut words = rewrite(frame, l, at + 1, &reply[..1]);
        words += rewrite(frame, l, at + 2 + KEY_BYTES, &reply[1..]);
        mem.compute(words * self.costs.checksum_word_cycles);
        Verdict::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::VecMemory;
    use nextio_hw::packet::{Macs, build_udp, parse_udp};
    use nextio_hw::trafficgen::{STAMP_BYTES, synthetic_flow};
    use std::collections::HashMap;

    const COSTS: MicaCosts = MicaCosts {
        request_cycles: 1,
        hash_cycles: 1,
        probe_cycles: 1,
        checksum_word_cycles: 1,
    };

    fn small() -> MicaConfig {
        MicaConfig {
            keys: 1000,
            buckets: 512,
            log_bytes: ITEM_BYTES * 4096,
        }
    }

    fn frame(op: u8, key: u64, value: [u8; VALUE_BYTES]) -> Vec<u8> {
        let mut payload = vec![0u8; STAMP_BYTES];
        payload.extend_from_slice(&request(op, key, value));
        build_udp(Macs::default(), synthetic_flow(1), &payload, 96).unwrap()
    }

    fn serve(app: &mut Mica, mem: &mut VecMemory, f: &mut [u8]) -> (u8, [u8; VALUE_BYTES]) {
        let len = f.len();
        assert_eq!(
            app.process(f, len, mem, &mut Counters::new()),
            Verdict::Done
        );
        assert!(parse_udp(f).is_ok(), "the reply keeps valid checksums");
        let at = udp_layout(f).unwrap().app_data();
        let mut v = [0u8; VALUE_BYTES];
        v.copy_from_slice(&f[at + 2 + KEY_BYTES..at + REQUEST_BYTES]);
        (f[at + 1], v)
    }

    #[test]
    fn gets_return_what_was_stored() {
        let mut app = Mica::new(small(), COSTS).unwrap();
        let mut mem = VecMemory::new(app.memory_bytes());
        app.init(&mut mem);
        for key in [0, 1, 500, 999] {
            let mut f = frame(OP_GET, key, [0; 8]);
            assert_eq!(
                serve(&mut app, &mut mem, &mut f),
                (STATUS_HIT, loaded_value(key))
            );
        }
        let mut f = frame(OP_SET, 77, *b"newvalue");
        assert_eq!(serve(&mut app, &mut mem, &mut f).0, STATUS_STORED);
        let mut f = frame(OP_GET, 77, [0; 8]);
        assert_eq!(
            serve(&mut app, &mut mem, &mut f),
            (STATUS_HIT, *b"newvalue")
        );
        let mut f = frame(OP_GET, 123_456, [0; 8]);
        assert_eq!(serve(&mut app, &mut mem, &mut f).0, STATUS_MISS);
        assert_eq!(mem.faults, 0);
    }

    /// Against a map: a hit is always the last value stored; a miss only
    /// happens to keys whose item the log has overwritten or whose slot
    /// the lossy index gave away.
    #[test]
    fn a_random_workload_agrees_with_a_map() {
        let config = small();
        let mut app = Mica::new(config.clone(), COSTS).unwrap();
        let mut mem = VecMemory::new(app.memory_bytes());
        app.init(&mut mem);
        let mut truth: HashMap<u64, [u8; 8]> =
            (0..config.keys).map(|k| (k, loaded_value(k))).collect();
        let zipf = ZipfKeys::new(2000, 0.99);
        let mut rng = SimRng::new(5);
        let (mut hits, mut misses) = (0, 0);
        for i in 0..20_000u64 {
            let key = zipf.sample(&mut rng);
            if rng.unit() < 0.05 {
                let v = (i ^ 0xabcd).to_le_bytes();
                app.set(&mut mem, key, v);
                truth.insert(key, v);
            } else {
                match app.get(&mut mem, key) {
                    Some(v) => {
                        assert_eq!(Some(&v), truth.get(&key), "key {key}");
                        hits += 1;
                    }
                    None => misses += 1,
                }
            }
        }
        assert!(hits > 10 * misses, "{hits} hits, {misses} misses");
    }

    #[test]
    fn zipf_keys_are_skewed() {
        let z = ZipfKeys::new(1 << 16, 0.99);
        let mut rng = SimRng::new(1);
        let n = 100_000;
        let top = (0..n).filter(|_| z.sample(&mut rng) < 16).count();
        // The 16 hottest of 65,536 keys draw about 28 % of requests at 0.99.
        assert!((0.2..0.4).contains(&(top as f64 / n as f64)), "{top}");
    }

    #[test]
    fn bad_requests_are_skipped_unchanged() {
        let mut app = Mica::new(small(), COSTS).unwrap();
        let mut mem = VecMemory::new(app.memory_bytes());
        app.init(&mut mem);
        let mut f = frame(9, 1, [0; 8]);
        let before = f.clone();
        let len = f.len();
        let v = app.process(&mut f, len, &mut mem, &mut Counters::new());
        assert_eq!(v, Verdict::Skipped("skipped.unknown_op"));
        assert_eq!(f, before);
        let mut short = build_udp(Macs::default(), synthetic_flow(1), &[0; 18], 64).unwrap();
        let len = short.len();
        let v = app.process(&mut short, len, &mut mem, &mut Counters::new());
        assert_eq!(v, Verdict::Skipped("skipped.short_request"));
        assert!(
            Mica::new(
                MicaConfig {
                    buckets: 3,
                    ..small()
                },
                COSTS
            )
            .is_err()
        );
        assert!(
            Mica::new(
                MicaConfig {
                    keys: 1 << 30,
                    ..small()
                },
                COSTS
            )
            .is_err()
        );
    }
}
