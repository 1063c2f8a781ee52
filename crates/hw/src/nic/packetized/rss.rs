//! Receive-side scaling: the Toeplitz hash over a frame's IPv4/UDP 4-tuple
//! under the standard Microsoft key, and the indirection table that maps
//! the hash to a queue.
//!
//! Steering is a pure function of the frame's bytes and the table: the same
//! flow always lands on the same queue, and a frame RSS does not classify
//! goes to queue 0, as the E810 sends unhashed traffic to the default
//! queue.

/// The standard 40-byte RSS key from Microsoft's "Verifying the RSS Hash
/// Calculation" (the key every NIC's RSS test vectors use).
pub const MICROSOFT_RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// The Toeplitz hash of `input` under `key` (Microsoft RSS specification):
/// for every set bit of the input, XOR in the 32-bit window of the key
/// starting at that bit.
pub fn toeplitz_hash(key: &[u8], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    let key_bit = |i: usize| -> u32 {
        key.get(i / 8)
            .map(|b| ((b >> (7 - (i % 8))) & 1) as u32)
            .unwrap_or(0)
    };
    // The window is the 32 key bits starting at the input bit's position.
    let mut window: u32 = (0..32).fold(0, |w, i| (w << 1) | key_bit(i));
    for (byte_no, byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | key_bit(byte_no * 8 + bit + 32);
        }
    }
    hash
}

/// The RSS hash of a frame: Toeplitz over source and destination IPv4
/// addresses and UDP ports (the "IPv4 with UDP" hash type), `None` for a
/// frame RSS does not classify (it goes to the default queue 0).
pub fn rss_hash(key: &[u8], frame: &[u8]) -> Option<u32> {
    // Parse the headers by hand: the NIC's parser does not verify
    // checksums, and this runs once per received frame.
    if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 17 || ip.len() < ihl + 8 {
        return None;
    }
    let mut input = [0u8; 12];
    input[0..8].copy_from_slice(&ip[12..20]);
    input[8..12].copy_from_slice(&ip[ihl..ihl + 4]);
    Some(toeplitz_hash(key, &input))
}

/// The RSS indirection table (the E810's PF lookup table): hash → queue.
/// Its size is a power of two, so the low bits of the hash index it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndirectionTable {
    entries: Vec<u16>,
}

impl IndirectionTable {
    /// A table of `entries` (a power of two) filled round-robin over
    /// `queues`, as DPDK's ice PMD fills it by default. `None` if `entries`
    /// is not a power of two or `queues` does not fit an entry.
    pub fn round_robin(entries: usize, queues: usize) -> Option<IndirectionTable> {
        if !entries.is_power_of_two() || queues == 0 || queues > u16::MAX as usize + 1 {
            return None;
        }
        Some(IndirectionTable {
            entries: (0..entries).map(|i| (i % queues) as u16).collect(),
        })
    }

    /// The queue a frame with RSS hash `hash` goes to (`None`: unhashed).
    pub fn queue(&self, hash: Option<u32>) -> usize {
        match hash {
            Some(h) => self.entries[h as usize & (self.entries.len() - 1)] as usize,
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{FlowKey, Macs, build_udp};
    use std::net::Ipv4Addr;

    #[test]
    fn toeplitz_matches_the_microsoft_test_vector() {
        // "Verifying the RSS Hash Calculation": 66.9.149.187:2794 →
        // 161.142.100.80:1766 hashes to 0x51ccc178 with ports and
        // 0x323e8fc2 over the addresses alone.
        let mut input = Vec::new();
        input.extend_from_slice(&[66, 9, 149, 187, 161, 142, 100, 80]);
        assert_eq!(toeplitz_hash(&MICROSOFT_RSS_KEY, &input), 0x323e8fc2);
        input.extend_from_slice(&2794u16.to_be_bytes());
        input.extend_from_slice(&1766u16.to_be_bytes());
        assert_eq!(toeplitz_hash(&MICROSOFT_RSS_KEY, &input), 0x51ccc178);
        let flow = FlowKey {
            src_ip: Ipv4Addr::new(66, 9, 149, 187),
            dst_ip: Ipv4Addr::new(161, 142, 100, 80),
            src_port: 2794,
            dst_port: 1766,
        };
        let frame = build_udp(Macs::default(), flow, &[], 64).unwrap();
        assert_eq!(rss_hash(&MICROSOFT_RSS_KEY, &frame), Some(0x51ccc178));
        assert_eq!(rss_hash(&MICROSOFT_RSS_KEY, &[0u8; 10]), None);
    }

    #[test]
    fn the_table_indexes_by_the_low_bits_and_sends_unhashed_to_queue_0() {
        let t = IndirectionTable::round_robin(8, 3).unwrap();
        assert_eq!(t.queue(Some(0)), 0);
        assert_eq!(t.queue(Some(4)), 1);
        assert_eq!(t.queue(Some(8 + 5)), 2);
        assert_eq!(t.queue(None), 0);
        assert!(IndirectionTable::round_robin(100, 3).is_none());
        assert!(IndirectionTable::round_robin(8, 0).is_none());
    }
}
