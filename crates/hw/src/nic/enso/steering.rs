//! Which pipe a received frame goes to: the flow table (5-tuple → pipe,
//! Ensō's `RxPipe::Bind`) and, for frames of unbound flows, the fallback
//! pipes, picked by a hash of the 5-tuple or in turn.
//!
//! Invariants: a bound flow always reaches its pipe; with
//! [`FallbackPolicy::Hash`] an unbound flow always reaches the same
//! fallback pipe, on every run (the hash is fixed and seedless); a frame
//! reaches no pipe only when it matches no binding and there is no
//! fallback pipe.

use std::collections::HashMap;

use crate::packet::FlowKey;

/// How an unmatched flow picks among the fallback pipes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FallbackPolicy {
    /// A hash of the 5-tuple (a flow always lands in the same pipe).
    #[default]
    Hash,
    /// Each unmatched frame goes to the next fallback pipe in turn.
    RoundRobin,
}

/// The flow table and the fallback pipes.
#[derive(Clone, Debug)]
pub struct Steering {
    policy: FallbackPolicy,
    flows: HashMap<FlowKey, usize>,
    fallback: Vec<usize>,
    round_robin: usize,
}

impl Steering {
    pub fn new(policy: FallbackPolicy) -> Steering {
        Steering {
            policy,
            flows: HashMap::new(),
            fallback: Vec::new(),
            round_robin: 0,
        }
    }

    /// Steer `flow` to `pipe` (a later binding of the same flow replaces it).
    pub fn bind(&mut self, flow: FlowKey, pipe: usize) {
        self.flows.insert(flow, pipe);
    }

    /// Add `pipe` to the fallback pipes (once).
    pub fn add_fallback(&mut self, pipe: usize) {
        if !self.fallback.contains(&pipe) {
            self.fallback.push(pipe);
        }
    }

    /// The pipe for the frame `bytes`, if any.
    pub fn steer(&mut self, bytes: &[u8]) -> Option<usize> {
        let flow = flow_of(bytes);
        if let Some(p) = flow.and_then(|f| self.flows.get(&f)) {
            return Some(*p);
        }
        if self.fallback.is_empty() {
            return None;
        }
        let i = match (self.policy, flow) {
            (FallbackPolicy::Hash, Some(f)) => {
                (flow_hash(&f) % self.fallback.len() as u64) as usize
            }
            // A frame the parser cannot read has no 5-tuple to hash.
            (FallbackPolicy::Hash, None) => 0,
            (FallbackPolicy::RoundRobin, _) => {
                self.round_robin = (self.round_robin + 1) % self.fallback.len();
                self.round_robin
            }
        };
        Some(self.fallback[i])
    }
}

/// The 5-tuple of an IPv4/UDP frame, read at fixed offsets as a parser
/// in the NIC's pipeline would (checksums are not checked on this path).
pub fn flow_of(b: &[u8]) -> Option<FlowKey> {
    if b.len() < 14 + 20 + 8 || b[12] != 0x08 || b[13] != 0x00 || b[14] >> 4 != 4 {
        return None;
    }
    let ihl = (b[14] & 0x0f) as usize * 4;
    if b[23] != FlowKey::PROTOCOL || ihl < 20 || b.len() < 14 + ihl + 8 {
        return None;
    }
    let l4 = 14 + ihl;
    Some(FlowKey {
        src_ip: [b[26], b[27], b[28], b[29]].into(),
        dst_ip: [b[30], b[31], b[32], b[33]].into(),
        src_port: u16::from_be_bytes([b[l4], b[l4 + 1]]),
        dst_port: u16::from_be_bytes([b[l4 + 2], b[l4 + 3]]),
    })
}

/// A fixed, seedless hash of a 5-tuple (FNV-1a over its bytes, then the
/// SplitMix64 finaliser so every output bit depends on every input bit —
/// plain FNV's low bit is a parity of the bytes' low bits), so the same flow
/// always lands in the same fallback pipe on every run.
pub fn flow_hash(f: &FlowKey) -> u64 {
    // FNV-1a 64-bit offset basis and prime (Fowler, Noll, Vo).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = f
        .src_ip
        .octets()
        .into_iter()
        .chain(f.dst_ip.octets())
        .chain(f.src_port.to_be_bytes())
        .chain(f.dst_port.to_be_bytes())
        .chain([FlowKey::PROTOCOL]);
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // SplitMix64's finaliser constants (Steele, Lea, Flood, OOPSLA'14).
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Macs, build_udp};
    use crate::trafficgen::synthetic_flow;

    fn frame(flow: u32) -> Vec<u8> {
        build_udp(Macs::default(), synthetic_flow(flow), &[0; 18], 64).unwrap()
    }

    #[test]
    fn the_parser_reads_the_five_tuple_the_builder_wrote() {
        assert_eq!(flow_of(&frame(9)), Some(synthetic_flow(9)));
        assert_eq!(flow_of(&frame(9)[..40]), None);
    }

    #[test]
    fn bound_flows_win_and_unparsable_frames_go_to_the_first_fallback() {
        let mut s = Steering::new(FallbackPolicy::Hash);
        assert_eq!(s.steer(&frame(1)), None);
        s.add_fallback(4);
        s.add_fallback(5);
        s.add_fallback(4);
        s.bind(synthetic_flow(1), 9);
        assert_eq!(s.steer(&frame(1)), Some(9));
        assert_eq!(s.steer(&[0u8; 60]), Some(4));
        let f2 = s.steer(&frame(2));
        assert!((0..10).all(|_| s.steer(&frame(2)) == f2));
    }
}
