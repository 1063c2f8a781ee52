//! IPv4 longest-prefix match and the l3fwd forwarding step (DPDK's
//! l3fwd with LPM, §5.4 of the xUI paper: 16,000 routes, 64-byte IPv4 UDP).
//!
//! The table keeps one hash map per prefix length and a bitmap of the
//! lengths present; a lookup probes from the longest present length down,
//! so the answer is the true longest match. Forwarding parses the real
//! frame (checksums verified), looks up the destination, rewrites the MAC
//! addresses for the output port, and yields the port.
//!
//! Invariants: lookup(addr) is the next hop of the longest prefix that
//! contains addr (tested against a brute-force scan); malformed frames are
//! counted drops, never panics.

use std::collections::HashMap;

use nextio_engine::SimRng;
use nextio_hw::packet::{self, PacketError};
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LpmError {
    #[error("prefix length {0} is longer than 32")]
    BadLength(u8),
}

/// A routing table.
#[derive(Clone, Debug, Default)]
pub struct Lpm {
    by_len: Vec<HashMap<u32, u16>>,
    present: u64,
    routes: usize,
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

impl Lpm {
    pub fn new() -> Lpm {
        Lpm {
            by_len: vec![HashMap::new(); 33],
            present: 0,
            routes: 0,
        }
    }
    /// Add (or replace) `prefix/len → next_hop`.
    pub fn add(&mut self, prefix: u32, len: u8, next_hop: u16) -> Result<(), LpmError> {
        if len > 32 {
            return Err(LpmError::BadLength(len));
        }
        if self.by_len[len as usize]
            .insert(prefix & mask(len), next_hop)
            .is_none()
        {
            self.routes += 1;
        }
        self.present |= 1 << len;
        Ok(())
    }
    pub fn len(&self) -> usize {
        self.routes
    }
    pub fn is_empty(&self) -> bool {
        self.routes == 0
    }
    /// Longest-prefix match; also returns how many lengths were probed
    /// (the memory accesses a lookup made).
    pub fn lookup(&self, addr: u32) -> (Option<u16>, u32) {
        let mut probes = 0;
        let mut lens = self.present;
        while lens != 0 {
            let len = 63 - lens.leading_zeros() as u8;
            lens &= !(1u64 << len);
            probes += 1;
            if let Some(h) = self.by_len[len as usize].get(&(addr & mask(len))) {
                return (Some(*h), probes);
            }
        }
        (None, probes)
    }
    /// A table of `n` random routes over `ports` next hops, plus a default
    /// route, with lengths spread like a BGP table (mostly /16–/24).
    pub fn random(n: usize, ports: u16, rng: &mut SimRng) -> Lpm {
        let mut t = Lpm::new();
        let _ = t.add(0, 0, 0);
        while t.len() < n + 1 {
            let len = match rng.below(10) {
                0 => 8 + rng.below(8) as u8,
                1..=6 => 24,
                _ => 16 + rng.below(8) as u8,
            };
            let hop = rng.below(ports.max(1) as u64) as u16;
            let _ = t.add(rng.next_u64() as u32, len, hop);
        }
        t
    }
}

/// Forward one frame in place: verify, look up the destination, rewrite
/// MACs for the output port. Returns the port.
pub fn forward(table: &Lpm, frame: &mut [u8]) -> Result<u16, PacketError> {
    let view = packet::parse_udp(frame)?;
    let dst: u32 = view.flow.dst_ip.into();
    let port = table.lookup(dst).0.unwrap_or(0);
    // Destination MAC of the next hop, source MAC of the output port.
    frame[0..6].copy_from_slice(&[0x02, 0, 0, 0, 1, port as u8]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 2, port as u8]);
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextio_hw::packet::{FlowKey, Macs};
    use std::net::Ipv4Addr;

    #[test]
    fn lookup_is_the_longest_match() {
        let mut rng = SimRng::new(11);
        let t = Lpm::random(16_000, 8, &mut rng);
        assert_eq!(t.len(), 16_001);
        // Brute force over every stored route.
        let all: Vec<(u32, u8, u16)> = (0..=32u8)
            .flat_map(|l| t.by_len[l as usize].iter().map(move |(p, h)| (*p, l, *h)))
            .collect();
        for _ in 0..300 {
            let a = rng.next_u64() as u32;
            let best = all
                .iter()
                .filter(|(p, l, _)| a & mask(*l) == *p)
                .max_by_key(|(_, l, _)| *l)
                .map(|(_, _, h)| *h);
            assert_eq!(t.lookup(a).0, best);
        }
        assert_eq!(Lpm::new().add(0, 33, 0), Err(LpmError::BadLength(33)));
    }

    #[test]
    fn forwarding_parses_real_frames_and_rejects_garbage() {
        let mut t = Lpm::new();
        t.add(0x0a00_0000, 8, 3).unwrap();
        let flow = FlowKey {
            src_ip: Ipv4Addr::new(1, 2, 3, 4),
            dst_ip: Ipv4Addr::new(10, 9, 9, 9),
            src_port: 1,
            dst_port: 2,
        };
        let mut f = packet::build_udp(Macs::default(), flow, &[], 64).unwrap();
        assert_eq!(forward(&t, &mut f), Ok(3));
        assert_eq!(f[5], 3);
        let mut junk = vec![0u8; 20];
        assert!(forward(&t, &mut junk).is_err());
    }
}
