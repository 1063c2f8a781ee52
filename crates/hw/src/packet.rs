//! Real Ethernet II / IPv4 / UDP frames: built with valid IPv4 header and
//! UDP checksums, and parsed back with every checksum verified.
//!
//! Conventions kept everywhere in nextio:
//! * a [`Frame`]'s bytes run from the destination MAC to the end of the
//!   payload — no preamble and no FCS, exactly what a pcap records;
//! * a frame's *size* (`frame_bytes`, as in "64-byte packets") counts the
//!   4-byte FCS, so a 64-byte frame holds 60 bytes here; [`frame_bytes`]
//!   converts;
//! * frames shorter than the Ethernet minimum are padded with zeros after
//!   the UDP payload, as a NIC would pad them.

use std::net::Ipv4Addr;

use etherparse::checksum::Sum16BitWords;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice, UdpHeader};
use thiserror::Error;

/// Bytes of the frame check sequence the MAC appends on the wire.
pub const FCS_BYTES: usize = 4;
/// Smallest Ethernet frame, FCS included (IEEE 802.3 §3.2.8).
pub const MIN_FRAME_BYTES: usize = 64;
/// Largest untagged Ethernet frame, FCS included (IEEE 802.3 §3.2.8).
pub const MAX_FRAME_BYTES: usize = 1518;
/// Ethernet II (14) + IPv4 without options (20) + UDP (8).
pub const UDP_HEADERS_BYTES: usize = 14 + 20 + 8;

/// A UDP flow's identity: what RSS hashes and flow tables match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

impl FlowKey {
    /// The flow with source and destination swapped (the reply direction).
    pub fn reversed(self) -> FlowKey {
        FlowKey {
            src_ip: self.dst_ip,
            dst_ip: self.src_ip,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }
    /// Protocol number of the 5-tuple (always UDP here).
    pub const PROTOCOL: u8 = 17;
}

/// Source and destination MAC addresses of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Macs {
    pub src: [u8; 6],
    pub dst: [u8; 6],
}

impl Default for Macs {
    fn default() -> Self {
        // Locally administered unicast addresses.
        Macs {
            src: [0x02, 0, 0, 0, 0, 1],
            dst: [0x02, 0, 0, 0, 0, 2],
        }
    }
}

/// A frame on a wire or in a queue: its bytes and bookkeeping that a
/// hardware timestamping NIC would carry alongside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub bytes: Vec<u8>,
    /// Sequence number given by the sender, for conservation and ordering checks.
    pub id: u64,
    /// Hardware transmit timestamp (ps), set by the sender, for round-trip times.
    pub tx_timestamp_ps: u64,
}

impl Frame {
    pub fn new(bytes: Vec<u8>, id: u64) -> Frame {
        Frame {
            bytes,
            id,
            tx_timestamp_ps: 0,
        }
    }
    /// Size on the wire counting the FCS, at least the Ethernet minimum.
    pub fn frame_bytes(&self) -> usize {
        frame_bytes(self.bytes.len())
    }
}

/// Frame size (FCS included, padded to the minimum) of `stored_bytes` bytes.
pub fn frame_bytes(stored_bytes: usize) -> usize {
    (stored_bytes + FCS_BYTES).max(MIN_FRAME_BYTES)
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PacketError {
    #[error("frame size {0} bytes is outside {MIN_FRAME_BYTES}..={MAX_FRAME_BYTES}")]
    BadFrameSize(usize),
    #[error("payload of {payload} bytes does not fit a {frame} byte frame")]
    PayloadTooLarge { payload: usize, frame: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("not an IPv4/UDP frame")]
    NotUdp,
    #[error("IPv4 header checksum mismatch")]
    BadIpChecksum,
    #[error("UDP checksum mismatch")]
    BadUdpChecksum,
}

/// Build an Ethernet/IPv4/UDP frame of exactly `size_bytes` on the wire
/// (FCS included), carrying `payload` followed by zero padding.
pub fn build_udp(
    macs: Macs,
    flow: FlowKey,
    payload: &[u8],
    size_bytes: usize,
) -> Result<Vec<u8>, PacketError> {
    if !(MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&size_bytes) {
        return Err(PacketError::BadFrameSize(size_bytes));
    }
    let stored = size_bytes - FCS_BYTES;
    let udp_payload_bytes = stored - UDP_HEADERS_BYTES;
    if payload.len() > udp_payload_bytes {
        return Err(PacketError::PayloadTooLarge {
            payload: payload.len(),
            frame: size_bytes,
        });
    }
    let mut body = vec![0u8; udp_payload_bytes];
    body[..payload.len()].copy_from_slice(payload);
    let builder = PacketBuilder::ethernet2(macs.src, macs.dst)
        .ipv4(flow.src_ip.octets(), flow.dst_ip.octets(), 64)
        .udp(flow.src_port, flow.dst_port);
    let mut bytes = Vec::with_capacity(stored);
    builder
        .write(&mut bytes, &body)
        .map_err(|e| PacketError::Malformed(e.to_string()))?;
    debug_assert_eq!(bytes.len(), stored);
    Ok(bytes)
}

/// Build an Ethernet/IPv4/UDP frame carrying exactly `payload` as the
/// UDP datagram (its length field says so), the frame padded with zeros
/// after the IP packet up to the Ethernet minimum, as a MAC pads it.
/// What a socket's `sendto` puts on the wire.
pub fn build_udp_datagram(
    macs: Macs,
    flow: FlowKey,
    payload: &[u8],
) -> Result<Vec<u8>, PacketError> {
    let size = (payload.len() + UDP_HEADERS_BYTES + FCS_BYTES).max(MIN_FRAME_BYTES);
    if size > MAX_FRAME_BYTES {
        return Err(PacketError::PayloadTooLarge {
            payload: payload.len(),
            frame: MAX_FRAME_BYTES,
        });
    }
    let builder = PacketBuilder::ethernet2(macs.src, macs.dst)
        .ipv4(flow.src_ip.octets(), flow.dst_ip.octets(), 64)
        .udp(flow.src_port, flow.dst_port);
    let mut bytes = Vec::with_capacity(size - FCS_BYTES);
    builder
        .write(&mut bytes, payload)
        .map_err(|e| PacketError::Malformed(e.to_string()))?;
    bytes.resize(size - FCS_BYTES, 0);
    Ok(bytes)
}

/// A parsed UDP frame: its flow and where its payload sits in the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpView {
    pub flow: FlowKey,
    pub payload_offset: usize,
    pub payload_len: usize,
}

/// Parse and verify an Ethernet/IPv4/UDP frame (both checksums checked).
pub fn parse_udp(bytes: &[u8]) -> Result<UdpView, PacketError> {
    match plain_udp(bytes) {
        Some(p) if p.ip_checksum_ok() && p.udp_checksum_ok() => Ok(p.view()),
        _ => parse_udp_sliced(bytes),
    }
}

/// The fixed offsets of the frames nearly every model sends: Ethernet II
/// carrying IPv4 without options, unfragmented, carrying UDP with a
/// non-zero length that fits the IPv4 payload. For those, the fields are
/// read in place rather than sliced layer by layer; anything else (and any
/// frame whose checksums fail, so that its error is the general parser's)
/// goes through [`parse_udp_sliced`]. Both give the same answer for every
/// frame the fast path accepts (tested below on mutated frames).
struct PlainUdp<'a> {
    ip: &'a [u8],
    udp: UdpHeader,
    payload: &'a [u8],
}

/// Where a plain frame's UDP payload starts.
const PLAIN_PAYLOAD_OFFSET: usize = UDP_HEADERS_BYTES;

fn plain_udp(bytes: &[u8]) -> Option<PlainUdp<'_>> {
    let be = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    if bytes.len() < UDP_HEADERS_BYTES || bytes[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &bytes[14..];
    // Version 4, IHL 5; no reserved flag, no more fragments, offset 0 (the
    // DF bit may be set); protocol UDP.
    if ip[0] != 0x45 || ip[6] & 0xbf != 0 || ip[7] != 0 || ip[9] != FlowKey::PROTOCOL {
        return None;
    }
    let total = be(ip, 2) as usize;
    if !(28..=ip.len()).contains(&total) {
        return None;
    }
    let datagram = &ip[20..total];
    let length = be(datagram, 4);
    if !(8..=datagram.len()).contains(&(length as usize)) {
        return None;
    }
    Some(PlainUdp {
        ip: &ip[..20],
        udp: UdpHeader {
            source_port: be(datagram, 0),
            destination_port: be(datagram, 2),
            length,
            checksum: be(datagram, 6),
        },
        payload: &datagram[8..length as usize],
    })
}

impl PlainUdp<'_> {
    fn addrs(&self) -> ([u8; 4], [u8; 4]) {
        let a = |at: usize| {
            [
                self.ip[at],
                self.ip[at + 1],
                self.ip[at + 2],
                self.ip[at + 3],
            ]
        };
        (a(12), a(16))
    }
    /// The header checksum as the general parser computes it (over every
    /// field but the checksum; the reserved flag is zero here).
    fn ip_checksum_ok(&self) -> bool {
        let calc = Sum16BitWords::new()
            .add_slice(&self.ip[..10])
            .add_slice(&self.ip[12..20])
            .ones_complement()
            .to_be();
        calc == u16::from_be_bytes([self.ip[10], self.ip[11]])
    }
    fn udp_checksum(&self) -> Option<u16> {
        let (src, dst) = self.addrs();
        self.udp.calc_checksum_ipv4_raw(src, dst, self.payload).ok()
    }
    fn udp_checksum_ok(&self) -> bool {
        self.udp.checksum == 0 || self.udp_checksum() == Some(self.udp.checksum)
    }
    fn view(&self) -> UdpView {
        let (src, dst) = self.addrs();
        UdpView {
            flow: FlowKey {
                src_ip: Ipv4Addr::from(src),
                dst_ip: Ipv4Addr::from(dst),
                src_port: self.udp.source_port,
                dst_port: self.udp.destination_port,
            },
            payload_offset: PLAIN_PAYLOAD_OFFSET,
            payload_len: self.payload.len(),
        }
    }
}

/// [`parse_udp`] by the general parser, layer by layer.
fn parse_udp_sliced(bytes: &[u8]) -> Result<UdpView, PacketError> {
    let sliced =
        SlicedPacket::from_ethernet(bytes).map_err(|e| PacketError::Malformed(e.to_string()))?;
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        return Err(PacketError::NotUdp);
    };
    let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
        return Err(PacketError::NotUdp);
    };
    let ip_header = ip.header().to_header();
    if ip_header.calc_header_checksum() != ip_header.header_checksum {
        return Err(PacketError::BadIpChecksum);
    }
    let udp_header = udp.to_header();
    let payload = udp.payload();
    if udp_header.checksum != 0 {
        let expected = udp_header
            .calc_checksum_ipv4(&ip_header, payload)
            .map_err(|e| PacketError::Malformed(e.to_string()))?;
        if expected != udp_header.checksum {
            return Err(PacketError::BadUdpChecksum);
        }
    }
    let payload_offset = payload.as_ptr() as usize - bytes.as_ptr() as usize;
    Ok(UdpView {
        flow: FlowKey {
            src_ip: Ipv4Addr::from(ip_header.source),
            dst_ip: Ipv4Addr::from(ip_header.destination),
            src_port: udp_header.source_port,
            dst_port: udp_header.destination_port,
        },
        payload_offset,
        payload_len: payload.len(),
    })
}

/// Recompute the UDP checksum of a frame whose payload was changed in place
/// (the IPv4 header checksum does not cover the payload).
pub fn refresh_udp_checksum(bytes: &mut [u8]) -> Result<(), PacketError> {
    if let Some(checksum) = plain_udp(bytes).and_then(|p| p.udp_checksum()) {
        let at = PLAIN_PAYLOAD_OFFSET - 2;
        bytes[at..at + 2].copy_from_slice(&checksum.to_be_bytes());
        return Ok(());
    }
    refresh_udp_checksum_sliced(bytes)
}

/// [`refresh_udp_checksum`] by the general parser.
fn refresh_udp_checksum_sliced(bytes: &mut [u8]) -> Result<(), PacketError> {
    let (at, checksum) = {
        let sliced = SlicedPacket::from_ethernet(bytes)
            .map_err(|e| PacketError::Malformed(e.to_string()))?;
        let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
            return Err(PacketError::NotUdp);
        };
        let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
            return Err(PacketError::NotUdp);
        };
        let checksum = udp
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), udp.payload())
            .map_err(|e| PacketError::Malformed(e.to_string()))?;
        (
            udp.slice().as_ptr() as usize - bytes.as_ptr() as usize + 6,
            checksum,
        )
    };
    bytes[at..at + 2].copy_from_slice(&checksum.to_be_bytes());
    Ok(())
}

/// Turn a UDP frame into its reply in place: swap MACs, addresses and
/// ports and recompute nothing (the checksums are symmetric under swaps).
pub fn swap_udp_in_place(bytes: &mut [u8]) -> Result<(), PacketError> {
    parse_udp(bytes)?;
    let (dst, src) = bytes[..12].split_at_mut(6);
    dst.swap_with_slice(src);
    let (s, d) = bytes[26..34].split_at_mut(4);
    s.swap_with_slice(d);
    let (sp, dp) = bytes[34..38].split_at_mut(2);
    sp.swap_with_slice(dp);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn flow() -> FlowKey {
        FlowKey {
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 1234,
            dst_port: 5678,
        }
    }

    #[test]
    fn sixty_four_byte_frame_round_trips() {
        let bytes = build_udp(Macs::default(), flow(), b"hello", 64).unwrap();
        assert_eq!(bytes.len(), 60);
        assert_eq!(frame_bytes(bytes.len()), 64);
        let v = parse_udp(&bytes).unwrap();
        assert_eq!(v.flow, flow());
        assert_eq!(&bytes[v.payload_offset..v.payload_offset + 5], b"hello");
        assert_eq!(v.payload_len, 60 - UDP_HEADERS_BYTES);
    }

    #[test]
    fn corrupted_bytes_are_caught() {
        let mut bytes = build_udp(Macs::default(), flow(), b"data", 128).unwrap();
        bytes[50] ^= 0xff;
        assert_eq!(parse_udp(&bytes), Err(PacketError::BadUdpChecksum));
        let mut bytes = build_udp(Macs::default(), flow(), b"data", 128).unwrap();
        bytes[22] ^= 0x01; // TTL
        assert_eq!(parse_udp(&bytes), Err(PacketError::BadIpChecksum));
        assert!(parse_udp(&bytes[..10]).is_err());
    }

    #[test]
    fn sizes_out_of_range_are_errors() {
        assert_eq!(
            build_udp(Macs::default(), flow(), b"", 63),
            Err(PacketError::BadFrameSize(63))
        );
        assert!(build_udp(Macs::default(), flow(), &[0; 100], 64).is_err());
    }

    #[test]
    fn refreshed_checksum_validates_changed_payload() {
        let mut bytes = build_udp(Macs::default(), flow(), b"abcd", 64).unwrap();
        let o = parse_udp(&bytes).unwrap().payload_offset;
        bytes[o] = b'z';
        assert_eq!(parse_udp(&bytes), Err(PacketError::BadUdpChecksum));
        refresh_udp_checksum(&mut bytes).unwrap();
        assert!(parse_udp(&bytes).is_ok());
    }

    #[test]
    fn a_short_datagram_keeps_its_length_in_a_padded_frame() {
        let bytes = build_udp_datagram(Macs::default(), flow(), b"8 bytes!").unwrap();
        assert_eq!(frame_bytes(bytes.len()), MIN_FRAME_BYTES);
        let v = parse_udp(&bytes).unwrap();
        assert_eq!(v.payload_len, 8);
        assert_eq!(&bytes[v.payload_offset..v.payload_offset + 8], b"8 bytes!");
        assert!(build_udp_datagram(Macs::default(), flow(), &[0; 1473]).is_err());
        let full = build_udp_datagram(Macs::default(), flow(), &[1; 1472]).unwrap();
        assert_eq!(frame_bytes(full.len()), MAX_FRAME_BYTES);
    }

    #[test]
    fn swap_makes_a_valid_reply() {
        let mut bytes = build_udp(Macs::default(), flow(), b"ping", 64).unwrap();
        swap_udp_in_place(&mut bytes).unwrap();
        assert_eq!(parse_udp(&bytes).unwrap().flow, flow().reversed());
    }

    proptest! {
        #[test]
        fn any_size_builds_and_parses(size in MIN_FRAME_BYTES..=MAX_FRAME_BYTES, fill in any::<u8>()) {
            let payload = vec![fill; 16];
            let bytes = build_udp(Macs::default(), flow(), &payload, size).unwrap();
            prop_assert_eq!(frame_bytes(bytes.len()), size);
            prop_assert!(parse_udp(&bytes).is_ok());
        }

        #[test]
        fn fast_path_agrees_with_the_general_parser(
            size in MIN_FRAME_BYTES..=256usize,
            payload_len in 0usize..16,
            flips in proptest::collection::vec((0usize..64, any::<u8>()), 0..3),
            cut in 0usize..8,
        ) {
            // Valid frames, then a few bytes of the headers (or just after)
            // overwritten and a tail cut off: the fast path must agree with
            // the general parser on every one of them.
            let mut bytes = if payload_len % 2 == 0 {
                build_udp(Macs::default(), flow(), &vec![7; payload_len], size).unwrap()
            } else {
                build_udp_datagram(Macs::default(), flow(), &vec![7; payload_len]).unwrap()
            };
            for (at, v) in flips {
                let at = at.min(bytes.len() - 1);
                bytes[at] = v;
            }
            bytes.truncate(bytes.len() - cut.min(bytes.len()));
            prop_assert_eq!(parse_udp(&bytes), parse_udp_sliced(&bytes));
            let (mut a, mut b) = (bytes.clone(), bytes);
            prop_assert_eq!(refresh_udp_checksum(&mut a), refresh_udp_checksum_sliced(&mut b));
            prop_assert_eq!(a, b);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_udp(&bytes);
        }
    }
}
