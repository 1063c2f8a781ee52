//! RoCEv2 unreliable-datagram framing (InfiniBand Architecture Spec. vol. 1
//! §9.2–9.3, RoCEv2 annex A17): an Ethernet/IPv4/UDP frame to port 4791
//! whose payload is a base transport header (BTH, 12 B: opcode, partition
//! key, destination QP, PSN) and a datagram extended transport header
//! (DETH, 8 B: queue key, source QP) in front of the message. The UDP
//! source port is the RoCEv2 entropy port, derived from the source QP.
//!
//! A UD receive buffer gets the 40-byte global route header in front of
//! the message (for RoCEv2 over IPv4, the IPv4 header in its last 20
//! bytes), as verbs specifies; [`GRH_BYTES`].
//!
//! Simplification: the 4-byte invariant CRC trailer is not carried (the
//! model's wires do not corrupt bits and the UDP checksum covers the
//! headers and the message).
//!
//! Invariant: `parse(build(..., h, m))` gives back `h` and `m`'s place;
//! anything that is not a well-formed UD SEND ONLY packet parses to `None`.

use crate::packet::{FlowKey, Macs, PacketError, build_udp_datagram, parse_udp};

/// The RoCEv2 UDP destination port (IANA).
pub const ROCE_UDP_PORT: u16 = 4791;
/// Base transport header bytes.
pub const BTH_BYTES: usize = 12;
/// Datagram extended transport header bytes.
pub const DETH_BYTES: usize = 8;
/// Transport header bytes in front of a UD message.
pub const UD_HEADERS_BYTES: usize = BTH_BYTES + DETH_BYTES;
/// BTH opcode of a UD SEND Only (IBA Table 38: UD class 011, SEND Only 00100).
pub const OPCODE_UD_SEND_ONLY: u8 = 0x64;
/// The default partition key.
pub const DEFAULT_PKEY: u16 = 0xffff;
/// Bytes of the global route header at the start of a UD receive buffer.
pub const GRH_BYTES: u64 = 40;
/// Where the IPv4 header sits in the GRH of a RoCEv2-over-IPv4 packet.
pub const GRH_IPV4_OFFSET: usize = 20;

/// QP numbers are 24 bits.
pub const QPN_MASK: u32 = 0x00ff_ffff;

/// The transport fields of a UD packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdHeader {
    pub dest_qpn: u32,
    pub src_qpn: u32,
    pub qkey: u32,
    /// Packet sequence number (24 bits; UD does not check it).
    pub psn: u32,
}

/// A parsed UD packet: its flow, headers and where the message is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdPacket {
    pub flow: FlowKey,
    pub header: UdHeader,
    pub message_offset: usize,
    pub message_len: usize,
    /// Where the IPv4 header starts in the frame.
    pub ip_offset: usize,
}

/// The RoCEv2 entropy source port of QP `qpn` (in the dynamic range).
pub fn entropy_port(qpn: u32) -> u16 {
    0xc000 | (qpn & 0x3fff) as u16
}

/// The frame carrying `message` from `src` to `dst` (IPv4) as a UD SEND.
pub fn build(
    macs: Macs,
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    h: UdHeader,
    message: &[u8],
) -> Result<Vec<u8>, PacketError> {
    let mut payload = Vec::with_capacity(UD_HEADERS_BYTES + message.len());
    payload.push(OPCODE_UD_SEND_ONLY);
    payload.push(0); // SE, M, pad count, transport version 0
    payload.extend_from_slice(&DEFAULT_PKEY.to_be_bytes());
    payload.extend_from_slice(&(h.dest_qpn & QPN_MASK).to_be_bytes());
    payload.extend_from_slice(&(h.psn & QPN_MASK).to_be_bytes());
    payload.extend_from_slice(&h.qkey.to_be_bytes());
    payload.extend_from_slice(&(h.src_qpn & QPN_MASK).to_be_bytes());
    payload.extend_from_slice(message);
    let flow = FlowKey {
        src_ip: src,
        dst_ip: dst,
        src_port: entropy_port(h.src_qpn),
        dst_port: ROCE_UDP_PORT,
    };
    build_udp_datagram(macs, flow, &payload)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The UD SEND in `frame`, if it is one (checksums verified).
pub fn parse(frame: &[u8]) -> Option<UdPacket> {
    let v = parse_udp(frame).ok()?;
    if v.flow.dst_port != ROCE_UDP_PORT || v.payload_len < UD_HEADERS_BYTES {
        return None;
    }
    let p = frame.get(v.payload_offset..v.payload_offset + v.payload_len)?;
    if p[0] != OPCODE_UD_SEND_ONLY {
        return None;
    }
    Some(UdPacket {
        flow: v.flow,
        header: UdHeader {
            dest_qpn: be32(&p[4..8]) & QPN_MASK,
            psn: be32(&p[8..12]) & QPN_MASK,
            qkey: be32(&p[12..16]),
            src_qpn: be32(&p[16..20]) & QPN_MASK,
        },
        message_offset: v.payload_offset + UD_HEADERS_BYTES,
        message_len: v.payload_len - UD_HEADERS_BYTES,
        // Ethernet II without VLAN: the IPv4 header follows 14 bytes in.
        ip_offset: 14,
    })
}

/// Where the message of a RoCEv2 frame starts, for taps that read its
/// first bytes (`None` for anything else).
pub fn message_offset(frame: &[u8]) -> Option<usize> {
    parse(frame).map(|p| p.message_offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn build_then_parse() {
        let h = UdHeader {
            dest_qpn: 0x12_3456,
            src_qpn: 7,
            qkey: 0x1111_1111,
            psn: 3,
        };
        let msg: Vec<u8> = (0..100u8).collect();
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        let f = build(Macs::default(), a, b, h, &msg).unwrap();
        let p = parse(&f).unwrap();
        assert_eq!(p.header, h);
        assert_eq!(
            &f[p.message_offset..p.message_offset + p.message_len],
            &msg[..]
        );
        assert_eq!(p.flow.dst_port, ROCE_UDP_PORT);
        assert_eq!(p.flow.src_port, entropy_port(7));
        assert_eq!(message_offset(&f), Some(p.message_offset));
        // Not RoCE: an ordinary datagram to another port.
        let flow = FlowKey {
            src_ip: a,
            dst_ip: b,
            src_port: 1,
            dst_port: 7000,
        };
        let u = build_udp_datagram(Macs::default(), flow, &msg).unwrap();
        assert_eq!(parse(&u), None);
        // A corrupted opcode is not a UD SEND.
        let mut bad = f.clone();
        bad[14 + 20 + 8] = 0x04;
        assert_eq!(parse(&bad), None);
    }
}
