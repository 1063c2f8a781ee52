//! Google's Maglev load balancer (Eisenbud et al., NSDI '16, §3.4) as
//! ported to Ensō (Ensō paper §3.3.3): a consistent-hashing lookup table
//! of prime size filled from each backend's permutation, a connection
//! table that pins a flow to the backend it first got, and the packet's
//! destination address rewritten to that backend.
//!
//! Memory layout of the application's region (all of it real bytes in the
//! simulated memory, reached through the core's caches):
//! `[lookup table: M × u16][connection table: buckets × 64 B][backend
//! addresses: N × 4 B]`. A connection-table bucket is one cache line of
//! four 16-byte entries: the flow's addresses and ports (12 bytes), then
//! the backend's index plus one (0 = empty).
//!
//! Invariants: the lookup table names every backend and has no empty
//! entry; a tracked flow keeps its backend for as long as its entry lives;
//! every frame leaves with valid checksums.

use nextio_engine::Counters;
use serde::{Deserialize, Serialize};

use crate::app::{
    AppMemory, ETH_BYTES, PacketApp, Verdict, five_tuple, hash64, rewrite, udp_layout,
};

/// Maglev's primitives: the preset's `[apps.maglev]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaglevCosts {
    /// Parsing the headers, extracting the 5-tuple, comparing a bucket's
    /// entries and the bookkeeping of the rewrite (memory is costed apart).
    pub packet_cycles: u64,
    /// One hash of a 5-tuple.
    pub hash_cycles: u64,
    /// One RFC 1624 checksum-word update.
    pub checksum_word_cycles: u64,
}

/// The root preset's Maglev costs (read once per process).
pub fn costs() -> &'static MaglevCosts {
    nextio_presets::cached_root_section!(MaglevCosts, "apps.maglev")
}

/// The Maglev paper's default lookup-table size (§3.4: a prime; 65,537
/// in their evaluation).
pub const DEFAULT_TABLE_SIZE: u64 = 65_537;
/// Bytes of a connection-table bucket: one cache line.
pub const BUCKET_BYTES: u64 = 64;
/// Entries per bucket.
pub const BUCKET_ENTRIES: u64 = 4;
const ENTRY_BYTES: u64 = BUCKET_BYTES / BUCKET_ENTRIES;
/// Seeds of the hashes: backend offset, backend skip, the flow's hash.
const SEED_OFFSET: u64 = 1;
const SEED_SKIP: u64 = 2;
const SEED_FLOW: u64 = 3;

/// A Maglev configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaglevConfig {
    /// Backends (the issue: 1,000).
    pub backends: u32,
    /// Lookup-table size M: a prime larger than the number of backends.
    pub table_size: u64,
    /// Connection-table buckets (a power of two).
    pub conn_buckets: u64,
}

impl Default for MaglevConfig {
    fn default() -> Self {
        MaglevConfig {
            backends: 1000,
            table_size: DEFAULT_TABLE_SIZE,
            // 2^18 buckets of four: a million tracked flows (16 MiB).
            conn_buckets: 1 << 18,
        }
    }
}

/// Whether `n` is prime (trial division: tables are at most millions).
pub fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

impl MaglevConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.backends == 0 || self.backends > u16::MAX as u32 - 1 {
            return Err(format!("{} backends: 1 to 65534", self.backends));
        }
        if !is_prime(self.table_size) || self.table_size <= self.backends as u64 {
            return Err(format!(
                "lookup table size {} must be a prime above the {} backends",
                self.table_size, self.backends
            ));
        }
        if !self.conn_buckets.is_power_of_two() {
            return Err(format!(
                "{} connection buckets: a power of two",
                self.conn_buckets
            ));
        }
        Ok(())
    }
    fn conn_base(&self) -> u64 {
        (self.table_size * 2).next_multiple_of(BUCKET_BYTES)
    }
    fn backends_base(&self) -> u64 {
        self.conn_base() + self.conn_buckets * BUCKET_BYTES
    }
}

/// A backend's name, which its permutation is hashed from.
pub fn backend_name(i: u32) -> String {
    format!("backend-{i}")
}

/// Backend `i`'s IPv4 address (10.1.0.0/16).
pub fn backend_addr(i: u32) -> [u8; 4] {
    [10, 1, (i >> 8) as u8, i as u8]
}

/// Maglev's permutation parameters of a backend: (offset, skip).
pub fn permutation(name: &str, m: u64) -> (u64, u64) {
    let offset = hash64(name.as_bytes(), SEED_OFFSET) % m;
    let skip = hash64(name.as_bytes(), SEED_SKIP) % (m - 1) + 1;
    (offset, skip)
}

/// Fill a lookup table of size `m` from `backends` (their ids), as the
/// Maglev paper's Pseudocode 1: backends take turns claiming the next
/// free entry of their own permutation until every entry is taken.
pub fn populate(backends: &[u32], m: u64) -> Vec<u16> {
    const EMPTY: u16 = u16::MAX;
    let mut entry = vec![EMPTY; m as usize];
    if backends.is_empty() {
        return entry;
    }
    let perms: Vec<(u64, u64)> = backends
        .iter()
        .map(|b| permutation(&backend_name(*b), m))
        .collect();
    let mut next = vec![0u64; backends.len()];
    let mut filled = 0;
    loop {
        for (i, &(offset, skip)) in perms.iter().enumerate() {
            let mut c = (offset + next[i] * skip) % m;
            while entry[c as usize] != EMPTY {
                next[i] += 1;
                c = (offset + next[i] * skip) % m;
            }
            entry[c as usize] = backends[i] as u16;
            next[i] += 1;
            filled += 1;
            if filled == m {
                return entry;
            }
        }
    }
}

/// One Maglev instance.
pub struct Maglev {
    config: MaglevConfig,
    costs: MaglevCosts,
}

impl Maglev {
    pub fn new(config: MaglevConfig, costs: MaglevCosts) -> Result<Maglev, String> {
        config.validate()?;
        Ok(Maglev { config, costs })
    }
    pub fn config(&self) -> &MaglevConfig {
        &self.config
    }
    /// The backend a flow's connection-table entry names, if tracked.
    pub fn tracked(&self, mem: &mut dyn AppMemory, key: &[u8; 13]) -> Option<u16> {
        let h = hash64(key, SEED_FLOW);
        let bucket = self.config.conn_base() + (h & (self.config.conn_buckets - 1)) * BUCKET_BYTES;
        let mut line = [0u8; BUCKET_BYTES as usize];
        mem.load(bucket, &mut line);
        (0..BUCKET_ENTRIES as usize).find_map(|e| {
            let entry = &line[e * ENTRY_BYTES as usize..][..ENTRY_BYTES as usize];
            let b = u16::from_le_bytes([entry[12], entry[13]]);
            (b != 0 && entry[..12] == key[..12]).then(|| b - 1)
        })
    }
    /// Replace the lookup table with one for `backends` (a backend added
    /// or removed); tracked connections keep their entries.
    pub fn set_backends(&self, mem: &mut dyn AppMemory, backends: &[u32]) {
        let table = populate(backends, self.config.table_size);
        let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
        mem.store(0, &bytes);
    }
}

impl PacketApp for Maglev {
    fn name(&self) -> &'static str {
        "maglev"
    }
    fn memory_bytes(&self) -> u64 {
        self.config.backends_base() + self.config.backends as u64 * 4
    }
    fn init(&mut self, mem: &mut dyn AppMemory) {
        let all: Vec<u32> = (0..self.config.backends).collect();
        self.set_backends(mem, &all);
        let addrs: Vec<u8> = all.iter().flat_map(|b| backend_addr(*b)).collect();
        mem.store(self.config.backends_base(), &addrs);
    }
    fn reads(&self, frame_len: usize) -> usize {
        // The headers: Ethernet, IPv4 and UDP.
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
        mem.compute(self.costs.hash_cycles);
        let h = hash64(&key, SEED_FLOW);
        let bucket = self.config.conn_base() + (h & (self.config.conn_buckets - 1)) * BUCKET_BYTES;
        let mut line = [0u8; BUCKET_BYTES as usize];
        mem.load(bucket, &mut line);
        let mut free = None;
        let mut hit = None;
        for e in 0..BUCKET_ENTRIES as usize {
            let entry = &line[e * ENTRY_BYTES as usize..][..ENTRY_BYTES as usize];
            let b = u16::from_le_bytes([entry[12], entry[13]]);
            if b == 0 {
                free.get_or_insert(e);
            } else if entry[..12] == key[..12] {
                hit = Some(b - 1);
                break;
            }
        }
        let backend = match hit {
            Some(b) => {
                counters.inc("maglev.conn_hit");
                b
            }
            None => {
                counters.inc("maglev.conn_new");
                // The flow's hash picks its lookup-table entry.
                let idx = (h >> 20) % self.config.table_size;
                let b = mem.load_u16(idx * 2);
                let slot = free.unwrap_or_else(|| {
                    counters.inc("maglev.conn_evicted");
                    ((h >> 8) % BUCKET_ENTRIES) as usize
                });
                let mut entry = [0u8; ENTRY_BYTES as usize];
                entry[..12].copy_from_slice(&key[..12]);
                entry[12..14].copy_from_slice(&(b + 1).to_le_bytes());
                mem.store(bucket + slot as u64 * ENTRY_BYTES, &entry);
                b
            }
        };
        let mut addr = [0u8; 4];
        mem.load(self.config.backends_base() + backend as u64 * 4, &mut addr);
        let words = rewrite(frame, l, ETH_BYTES + 16, &addr);
        mem.compute(words * self.costs.checksum_word_cycles);
        Verdict::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::VecMemory;
    use nextio_hw::packet::{Macs, build_udp, parse_udp};
    use nextio_hw::trafficgen::synthetic_flow;

    const COSTS: MaglevCosts = MaglevCosts {
        packet_cycles: 1,
        hash_cycles: 1,
        checksum_word_cycles: 1,
    };

    /// The table population as the Maglev paper writes it out: every
    /// backend's whole permutation listed first, then the round-robin fill.
    fn reference_populate(backends: &[u32], m: u64) -> Vec<i64> {
        let perm: Vec<Vec<u64>> = backends
            .iter()
            .map(|b| {
                let (offset, skip) = permutation(&backend_name(*b), m);
                (0..m).map(|j| (offset + j * skip) % m).collect()
            })
            .collect();
        let mut next = vec![0usize; backends.len()];
        let mut entry = vec![-1i64; m as usize];
        let mut n = 0;
        loop {
            for i in 0..backends.len() {
                let mut c = perm[i][next[i]];
                while entry[c as usize] >= 0 {
                    next[i] += 1;
                    c = perm[i][next[i]];
                }
                entry[c as usize] = backends[i] as i64;
                next[i] += 1;
                n += 1;
                if n == m {
                    return entry;
                }
            }
        }
    }

    #[test]
    fn the_table_matches_the_papers_algorithm() {
        for (n, m) in [(1u32, 7u64), (5, 13), (100, 4099), (37, 1031)] {
            let b: Vec<u32> = (0..n).collect();
            let ours: Vec<i64> = populate(&b, m).iter().map(|e| *e as i64).collect();
            assert_eq!(ours, reference_populate(&b, m), "{n} backends, M = {m}");
        }
    }

    #[test]
    fn every_backend_gets_a_near_equal_share() {
        let b: Vec<u32> = (0..1000).collect();
        let t = populate(&b, DEFAULT_TABLE_SIZE);
        let mut share = vec![0u32; 1000];
        for e in &t {
            share[*e as usize] += 1;
        }
        // Maglev's round robin gives each backend ⌊M/N⌋ or ⌈M/N⌉ entries.
        let (lo, hi) = (share.iter().min().unwrap(), share.iter().max().unwrap());
        assert!(*lo >= 65 && *hi <= 66, "shares {lo}..{hi}");
    }

    #[test]
    fn removing_a_backend_moves_few_other_entries() {
        let all: Vec<u32> = (0..1000).collect();
        let before = populate(&all, DEFAULT_TABLE_SIZE);
        let gone = 417;
        let rest: Vec<u32> = all.iter().copied().filter(|b| *b != gone).collect();
        let after = populate(&rest, DEFAULT_TABLE_SIZE);
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b != gone as u16 && b != a)
            .count();
        // Random reassignment would move 99.9 % of the entries; Maglev's
        // permutations keep all but a few per cent in place (Maglev Fig. 13).
        assert!(
            (moved as f64) < 0.03 * DEFAULT_TABLE_SIZE as f64,
            "{moved} entries of other backends moved"
        );
        assert!(after.iter().all(|e| *e != gone as u16));
    }

    fn frame(flow: u32) -> Vec<u8> {
        build_udp(Macs::default(), synthetic_flow(flow), &[0; 18], 64).unwrap()
    }

    #[test]
    fn packets_go_to_the_table_backend_and_flows_stick_through_removal() {
        let mut app = Maglev::new(MaglevConfig::default(), COSTS).unwrap();
        let mut mem = VecMemory::new(app.memory_bytes());
        app.init(&mut mem);
        let table = populate(&(0..1000).collect::<Vec<_>>(), DEFAULT_TABLE_SIZE);
        let mut c = Counters::new();
        let mut chosen = Vec::new();
        for flow in 0..500 {
            let mut f = frame(flow);
            let len = f.len();
            assert_eq!(app.process(&mut f, len, &mut mem, &mut c), Verdict::Done);
            let l = udp_layout(&f).unwrap();
            let key = five_tuple(&frame(flow), l);
            let want = table[((hash64(&key, SEED_FLOW) >> 20) % DEFAULT_TABLE_SIZE) as usize];
            assert_eq!(f[ETH_BYTES + 16..ETH_BYTES + 20], backend_addr(want as u32));
            assert!(parse_udp(&f).is_ok(), "checksums stay valid");
            chosen.push(want);
        }
        assert_eq!(c.get("maglev.conn_new"), 500);
        // Remove a backend nobody uses and one somebody uses: every tracked
        // flow keeps its backend (connection tracking, Maglev §3.3).
        let used = chosen[0] as u32;
        let rest: Vec<u32> = (0..1000).filter(|b| *b != used).collect();
        app.set_backends(&mut mem, &rest);
        for (flow, want) in (0..500).zip(&chosen) {
            let mut f = frame(flow);
            let len = f.len();
            app.process(&mut f, len, &mut mem, &mut c);
            assert_eq!(
                f[ETH_BYTES + 16..ETH_BYTES + 20],
                backend_addr(*want as u32)
            );
        }
        assert_eq!(c.get("maglev.conn_hit"), 500);
        assert_eq!(mem.faults, 0);
        // A new flow never lands on the removed backend.
        for flow in 1000..3000 {
            let mut f = frame(flow);
            let len = f.len();
            app.process(&mut f, len, &mut mem, &mut c);
            assert_ne!(f[ETH_BYTES + 16..ETH_BYTES + 20], backend_addr(used));
        }
    }

    #[test]
    fn bad_configurations_are_refused() {
        let bad = |c: MaglevConfig| Maglev::new(c, COSTS).is_err();
        let d = MaglevConfig::default();
        assert!(bad(MaglevConfig {
            table_size: 65_536,
            ..d.clone()
        }));
        assert!(bad(MaglevConfig {
            table_size: 997,
            ..d.clone()
        }));
        assert!(bad(MaglevConfig {
            conn_buckets: 1000,
            ..d.clone()
        }));
        assert!(bad(MaglevConfig { backends: 0, ..d }));
    }

    #[test]
    fn frames_that_are_not_udp_pass_unchanged() {
        let mut app = Maglev::new(MaglevConfig::default(), COSTS).unwrap();
        let mut mem = VecMemory::new(app.memory_bytes());
        app.init(&mut mem);
        let mut f = frame(1);
        f[ETH_BYTES + 9] = 6;
        let before = f.clone();
        let len = f.len();
        let v = app.process(&mut f, len, &mut mem, &mut Counters::new());
        assert_eq!(v, Verdict::Skipped("skipped.not_udp"));
        assert_eq!(f, before);
    }
}
