//! The switch's parser and deparser for Ethernet frames (RMT's parse
//! graph and deparser, SIGCOMM'13 §2, for the one protocol stack Nagare's
//! NIC hops carry): the UDP payload of an IPv4 frame as an Ensō pipe holds
//! it, and a frame built from a stream's 42-byte header template around a
//! payload, with lengths and checksums filled in.

use crate::nic::enso::{frame_len_from_header, padded_len};
use crate::packet::{FCS_BYTES, MIN_FRAME_BYTES, UDP_HEADERS_BYTES, refresh_udp_checksum};

/// What the parser found at the front of a pipe's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Too few bytes to tell yet.
    Incomplete,
    /// A frame occupying `consumed` bytes (padding included) whose UDP
    /// payload is `payload`, or `None` if it is not IPv4/UDP.
    Frame {
        consumed: usize,
        payload: Option<Vec<u8>>,
    },
    /// Not the start of a frame: skip one quantum.
    Garbage,
}

/// Parse the frame at the front of `b`.
pub fn parse(b: &[u8]) -> Parsed {
    if b.len() < 18 {
        return Parsed::Incomplete;
    }
    let Some(len) = frame_len_from_header(b) else {
        return Parsed::Garbage;
    };
    let consumed = padded_len(len as u64) as usize;
    if b.len() < consumed {
        return Parsed::Incomplete;
    }
    let udp = len >= UDP_HEADERS_BYTES && b[14] == 0x45 && b[23] == 17;
    let payload = udp
        .then(|| u16::from_be_bytes([b[38], b[39]]) as usize)
        .filter(|&u| u >= 8 && UDP_HEADERS_BYTES + u - 8 <= len)
        .map(|u| b[UDP_HEADERS_BYTES..UDP_HEADERS_BYTES + u - 8].to_vec());
    Parsed::Frame { consumed, payload }
}

/// A frame with `template`'s headers (Ethernet, IPv4 without options,
/// UDP) around `payload`: lengths, IPv4 header checksum and UDP checksum
/// filled in, short frames padded to the Ethernet minimum. `None` if the
/// template is not such headers or the frame would be too long.
pub fn build(template: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    if template.len() < UDP_HEADERS_BYTES || template[14] != 0x45 || template[23] != 17 {
        return None;
    }
    let ip_total = 20 + 8 + payload.len();
    let ip_total16 = u16::try_from(ip_total).ok()?;
    let mut f = template[..UDP_HEADERS_BYTES].to_vec();
    f.extend_from_slice(payload);
    f[16..18].copy_from_slice(&ip_total16.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_total16 - 20).to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let sum = ipv4_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    f[40..42].copy_from_slice(&[0, 0]);
    f.resize(f.len().max(MIN_FRAME_BYTES - FCS_BYTES), 0);
    refresh_udp_checksum(&mut f).ok()?;
    Some(f)
}

/// The one's-complement sum of an IPv4 header (RFC 791 §3.1).
fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|w| u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Macs, build_udp, parse_udp};
    use crate::trafficgen::synthetic_flow;

    #[test]
    fn built_frames_parse_back_with_valid_checksums() {
        let template = build_udp(Macs::default(), synthetic_flow(3), &[], 64).unwrap();
        for n in [0usize, 5, 16, 400, 1400] {
            let payload: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let f = build(&template, &payload).unwrap();
            let v = parse_udp(&f).unwrap();
            assert_eq!(
                &f[v.payload_offset..v.payload_offset + v.payload_len],
                &payload[..]
            );
            let mut padded = f.clone();
            padded.resize(padded_len(f.len() as u64) as usize, 0);
            assert_eq!(
                parse(&padded),
                Parsed::Frame {
                    consumed: padded.len(),
                    payload: Some(payload.clone())
                }
            );
        }
        assert_eq!(parse(&[0; 10]), Parsed::Incomplete);
        assert_eq!(parse(&[0xff; 64]), Parsed::Garbage);
        assert!(build(&[0; 42], b"x").is_none());
        assert!(build(&template, &[0; 70_000]).is_none());
    }
}
