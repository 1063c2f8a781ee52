//! The descriptor formats the NIC and its driver share, as views over
//! bytes: the RX descriptor in its read format (what software posts) and
//! its write-back format (what the NIC returns), and the TX data
//! descriptor, whose quadword 1 the NIC overwrites with `DESC_DONE` on an
//! RS write-back.
//!
//! One definition per format: the device model reads and writes
//! descriptors through these views and so does the driver, so neither
//! encodes by hand what the other decodes. Every view checks its length
//! once, in [`RxReadDesc::new`] and its siblings; `new_unchecked` is for
//! callers that sized the bytes themselves.

use crate::layout::{Field, get_u16, get_u32, get_u64, set_u16, set_u32, set_u64};

/// Bytes of one RX descriptor: the E810's 32-byte descriptor format
/// (ice `union ice_32b_rx_flex_desc`; DPDK ice's default).
pub const RX_DESC_BYTES: u64 = 32;
/// Bytes of one TX data descriptor (ice `struct ice_tx_desc`).
pub const TX_DESC_BYTES: u64 = 16;

/// Fields of the RX descriptor read format (ice `ice_32b_rx_flex_desc.read`).
pub mod rx_read {
    use super::Field;
    /// `pkt_addr`: where the NIC writes the packet.
    pub const PKT_ADDR: Field = 0..8;
    /// `hdr_addr`: the header buffer of header split, unused by the model.
    pub const HDR_ADDR: Field = 8..16;
}

/// Fields of the RX write-back format (ice `ice_32b_rx_flex_desc_nic`).
pub mod rx_wb {
    use super::Field;
    /// `rxdid`: which write-back layout this is.
    pub const RXDID: Field = 0..1;
    /// `pkt_len`: the packet's length in its low 14 bits.
    pub const PKT_LEN: Field = 4..6;
    /// `status_error0`: DD, EOF and the error bits.
    pub const STATUS0: Field = 8..10;
    /// `rss_hash`: the Toeplitz hash RSS steered by.
    pub const RSS_HASH: Field = 12..16;
}

/// Fields of the TX data descriptor (ice `struct ice_tx_desc`).
pub mod tx_desc {
    use super::Field;
    /// `buf_addr`: the packet's bytes.
    pub const BUF_ADDR: Field = 0..8;
    /// `cmd_type_offset_bsz`: DTYPE, CMD, OFFSET and buffer size bit fields.
    pub const QW1: Field = 8..16;
}

/// Byte offsets of the write-back fields, for code that addresses one
/// field of a descriptor in memory (a driver polling DD).
pub const RX_WB_PKT_LEN_OFFSET: usize = rx_wb::PKT_LEN.start;
pub const RX_WB_STATUS_OFFSET: usize = rx_wb::STATUS0.start;
pub const RX_WB_RSS_HASH_OFFSET: usize = rx_wb::RSS_HASH.start;
/// `ICE_RX_FLEX_DESC_STATUS0_DD_S` and `..._EOF_S`.
pub const RX_STATUS_DD: u16 = 1 << 0;
pub const RX_STATUS_EOF: u16 = 1 << 1;
/// The 14-bit length field of the write-back (`ICE_RX_FLX_DESC_PKT_LEN_M`).
pub const RX_PKT_LEN_MASK: u16 = 0x3fff;
/// `ICE_RXDID_FLEX_NIC`: the write-back layout the NIC uses (DPDK ice's
/// default flexible descriptor profile).
pub const RXDID_FLEX_NIC: u8 = 2;

/// TX descriptor quadword 1 fields (ice `ICE_TXD_QW1_*`): DTYPE in bits
/// 0–3, CMD from bit 4 (12 bits), OFFSET from bit 16 (18 bits), buffer size
/// from bit 34 (14 bits).
pub const TXD_DTYPE_MASK: u64 = 0xf;
pub const TXD_CMD_SHIFT: u32 = 4;
pub const TXD_CMD_MASK: u64 = 0xfff;
pub const TXD_OFFSET_SHIFT: u32 = 16;
pub const TXD_OFFSET_MASK: u64 = 0x3_ffff;
pub const TXD_BUF_SZ_SHIFT: u32 = 34;
pub const TXD_BUF_SZ_MASK: u64 = 0x3fff;
/// `ICE_TX_DESC_DTYPE_DATA` and `ICE_TX_DESC_DTYPE_DESC_DONE`.
pub const TXD_DTYPE_DATA: u64 = 0x0;
pub const TXD_DTYPE_DESC_DONE: u64 = 0xf;
/// `ICE_TX_DESC_CMD_EOP`, `_RS`, `_IIPT_IPV4`, `_L4T_EOFT_UDP`.
pub const TXD_CMD_EOP: u64 = 0x0001;
pub const TXD_CMD_RS: u64 = 0x0002;
pub const TXD_CMD_IIPT_IPV4: u64 = 0x0040;
pub const TXD_CMD_L4T_UDP: u64 = 0x0300;
/// `ICE_TX_DESC_CMD_L4T_EOFT_*` occupy these CMD bits.
pub const TXD_CMD_L4T_MASK: u64 = 0x0300;
/// The OFFSET field's header lengths (ice `ICE_TX_DESC_LEN_MACLEN_S` = 0,
/// in 2-byte words; `_IPLEN_S` = 7 and `_L4_LEN_S` = 14, in 4-byte words).
pub const TXD_LEN_MACLEN_SHIFT: u32 = 0;
pub const TXD_LEN_IPLEN_SHIFT: u32 = 7;
pub const TXD_LEN_L4_LEN_SHIFT: u32 = 14;

/// The OFFSET field for headers of `mac`, `ip` and `l4` bytes (the
/// checksum offload's idea of where the headers are).
pub fn tx_offsets(mac: u64, ip: u64, l4: u64) -> u64 {
    ((mac / 2) << TXD_LEN_MACLEN_SHIFT)
        | ((ip / 4) << TXD_LEN_IPLEN_SHIFT)
        | ((l4 / 4) << TXD_LEN_L4_LEN_SHIFT)
}

/// An RX descriptor in its read format.
#[derive(Clone, Copy, Debug)]
pub struct RxReadDesc<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> RxReadDesc<T> {
    /// A view of `buf`, which must hold at least one descriptor.
    pub fn new(buf: T) -> Option<Self> {
        (buf.as_ref().len() >= RX_DESC_BYTES as usize).then_some(RxReadDesc { buf })
    }
    /// A view of `buf` the caller sized; accessors panic if it is short.
    pub fn new_unchecked(buf: T) -> Self {
        RxReadDesc { buf }
    }
    pub fn into_inner(self) -> T {
        self.buf
    }
    pub fn pkt_addr(&self) -> u64 {
        get_u64(self.buf.as_ref(), rx_read::PKT_ADDR)
    }
    pub fn hdr_addr(&self) -> u64 {
        get_u64(self.buf.as_ref(), rx_read::HDR_ADDR)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RxReadDesc<T> {
    pub fn set_pkt_addr(&mut self, addr: u64) {
        set_u64(self.buf.as_mut(), rx_read::PKT_ADDR, addr);
    }
    pub fn set_hdr_addr(&mut self, addr: u64) {
        set_u64(self.buf.as_mut(), rx_read::HDR_ADDR, addr);
    }
}

impl RxReadDesc<[u8; RX_DESC_BYTES as usize]> {
    /// The bytes of a descriptor posting the buffer at `pkt_addr`.
    pub fn build(pkt_addr: u64) -> [u8; RX_DESC_BYTES as usize] {
        let mut d = RxReadDesc::new_unchecked([0u8; RX_DESC_BYTES as usize]);
        d.set_pkt_addr(pkt_addr);
        d.into_inner()
    }
}

/// An RX descriptor in its write-back format.
#[derive(Clone, Copy, Debug)]
pub struct RxWbDesc<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> RxWbDesc<T> {
    /// A view of `buf`, which must hold at least one descriptor.
    pub fn new(buf: T) -> Option<Self> {
        (buf.as_ref().len() >= RX_DESC_BYTES as usize).then_some(RxWbDesc { buf })
    }
    /// A view of `buf` the caller sized; accessors panic if it is short.
    pub fn new_unchecked(buf: T) -> Self {
        RxWbDesc { buf }
    }
    pub fn into_inner(self) -> T {
        self.buf
    }
    pub fn rxdid(&self) -> u8 {
        self.buf.as_ref()[rx_wb::RXDID.start]
    }
    /// The packet's length (the 14 bits of `pkt_len` that hold it).
    pub fn pkt_len(&self) -> u16 {
        get_u16(self.buf.as_ref(), rx_wb::PKT_LEN) & RX_PKT_LEN_MASK
    }
    pub fn status0(&self) -> u16 {
        get_u16(self.buf.as_ref(), rx_wb::STATUS0)
    }
    /// The NIC is done with the descriptor: software owns it again.
    pub fn dd(&self) -> bool {
        self.status0() & RX_STATUS_DD != 0
    }
    /// The descriptor holds the end of its packet.
    pub fn eof(&self) -> bool {
        self.status0() & RX_STATUS_EOF != 0
    }
    pub fn rss_hash(&self) -> u32 {
        get_u32(self.buf.as_ref(), rx_wb::RSS_HASH)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RxWbDesc<T> {
    pub fn set_rxdid(&mut self, rxdid: u8) {
        self.buf.as_mut()[rx_wb::RXDID.start] = rxdid;
    }
    /// Sets the length bits of `pkt_len`; `len` is cut to its 14 bits.
    pub fn set_pkt_len(&mut self, len: u16) {
        set_u16(self.buf.as_mut(), rx_wb::PKT_LEN, len & RX_PKT_LEN_MASK);
    }
    pub fn set_status0(&mut self, status: u16) {
        set_u16(self.buf.as_mut(), rx_wb::STATUS0, status);
    }
    pub fn set_rss_hash(&mut self, hash: u32) {
        set_u32(self.buf.as_mut(), rx_wb::RSS_HASH, hash);
    }
    /// Fill in the write-back of a whole packet of `len` bytes: the
    /// layout id, the length, DD and EOF, and the hash. Bytes not named by
    /// a field are left as they are.
    pub fn fill(&mut self, len: u16, hash: u32) {
        self.set_rxdid(RXDID_FLEX_NIC);
        self.set_pkt_len(len);
        self.set_status0(RX_STATUS_DD | RX_STATUS_EOF);
        self.set_rss_hash(hash);
    }
}

impl RxWbDesc<[u8; RX_DESC_BYTES as usize]> {
    /// The bytes of the write-back of a whole packet of `len` bytes.
    pub fn build(len: u16, hash: u32) -> [u8; RX_DESC_BYTES as usize] {
        let mut d = RxWbDesc::new_unchecked([0u8; RX_DESC_BYTES as usize]);
        d.fill(len, hash);
        d.into_inner()
    }
}

/// A TX data descriptor (and, once written back, its `DESC_DONE` form).
#[derive(Clone, Copy, Debug)]
pub struct TxDataDesc<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> TxDataDesc<T> {
    /// A view of `buf`, which must hold at least one descriptor.
    pub fn new(buf: T) -> Option<Self> {
        (buf.as_ref().len() >= TX_DESC_BYTES as usize).then_some(TxDataDesc { buf })
    }
    /// A view of `buf` the caller sized; accessors panic if it is short.
    pub fn new_unchecked(buf: T) -> Self {
        TxDataDesc { buf }
    }
    pub fn into_inner(self) -> T {
        self.buf
    }
    pub fn buf_addr(&self) -> u64 {
        get_u64(self.buf.as_ref(), tx_desc::BUF_ADDR)
    }
    /// Quadword 1 whole (`cmd_type_offset_bsz`).
    pub fn qw1(&self) -> u64 {
        get_u64(self.buf.as_ref(), tx_desc::QW1)
    }
    pub fn dtype(&self) -> u64 {
        self.qw1() & TXD_DTYPE_MASK
    }
    /// The `TXD_CMD_*` bits.
    pub fn cmd(&self) -> u64 {
        (self.qw1() >> TXD_CMD_SHIFT) & TXD_CMD_MASK
    }
    pub fn offsets(&self) -> u64 {
        (self.qw1() >> TXD_OFFSET_SHIFT) & TXD_OFFSET_MASK
    }
    pub fn buf_size(&self) -> u64 {
        (self.qw1() >> TXD_BUF_SZ_SHIFT) & TXD_BUF_SZ_MASK
    }
    /// The NIC has written the descriptor back (`DTYPE = DESC_DONE`).
    pub fn done(&self) -> bool {
        self.dtype() == TXD_DTYPE_DESC_DONE
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TxDataDesc<T> {
    pub fn set_buf_addr(&mut self, addr: u64) {
        set_u64(self.buf.as_mut(), tx_desc::BUF_ADDR, addr);
    }
    pub fn set_qw1(&mut self, qw1: u64) {
        set_u64(self.buf.as_mut(), tx_desc::QW1, qw1);
    }
    fn set_bits(&mut self, shift: u32, mask: u64, value: u64) {
        let qw1 = self.qw1() & !(mask << shift);
        self.set_qw1(qw1 | ((value & mask) << shift));
    }
    pub fn set_dtype(&mut self, dtype: u64) {
        self.set_bits(0, TXD_DTYPE_MASK, dtype);
    }
    pub fn set_cmd(&mut self, cmd: u64) {
        self.set_bits(TXD_CMD_SHIFT, TXD_CMD_MASK, cmd);
    }
    pub fn set_offsets(&mut self, offsets: u64) {
        self.set_bits(TXD_OFFSET_SHIFT, TXD_OFFSET_MASK, offsets);
    }
    pub fn set_buf_size(&mut self, len: u64) {
        self.set_bits(TXD_BUF_SZ_SHIFT, TXD_BUF_SZ_MASK, len);
    }
}

impl TxDataDesc<[u8; TX_DESC_BYTES as usize]> {
    /// The bytes of a data descriptor sending `len` bytes at `addr` with
    /// the `TXD_CMD_*` bits `cmd` and the OFFSET field `offsets`.
    pub fn build(addr: u64, cmd: u64, offsets: u64, len: u64) -> [u8; TX_DESC_BYTES as usize] {
        let mut d = TxDataDesc::new_unchecked([0u8; TX_DESC_BYTES as usize]);
        d.set_buf_addr(addr);
        d.set_dtype(TXD_DTYPE_DATA);
        d.set_cmd(cmd);
        d.set_offsets(offsets);
        d.set_buf_size(len);
        d.into_inner()
    }

    /// The bytes the NIC writes back for a done descriptor that sent the
    /// buffer at `addr`: the address kept, quadword 1 only `DESC_DONE`
    /// (what ice's cleanup tests for).
    pub fn done_for(addr: u64) -> [u8; TX_DESC_BYTES as usize] {
        let mut d = TxDataDesc::new_unchecked([0u8; TX_DESC_BYTES as usize]);
        d.set_buf_addr(addr);
        d.set_qw1(TXD_DTYPE_DESC_DONE);
        d.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_read_what_they_wrote_at_the_ice_offsets() {
        let d = RxReadDesc::build(0x1234_5678_9abc);
        assert_eq!(d[..8], 0x1234_5678_9abcu64.to_le_bytes());
        assert_eq!(
            RxReadDesc::new(&d[..]).unwrap().pkt_addr(),
            0x1234_5678_9abc
        );
        assert!(RxReadDesc::new(&d[..31]).is_none());

        let wb = RxWbDesc::build(1514, 0xdead_beef);
        assert_eq!(wb[0], RXDID_FLEX_NIC);
        assert_eq!(wb[RX_WB_PKT_LEN_OFFSET..][..2], 1514u16.to_le_bytes());
        assert_eq!(wb[RX_WB_STATUS_OFFSET], 0b11);
        assert_eq!(
            wb[RX_WB_RSS_HASH_OFFSET..][..4],
            0xdead_beefu32.to_le_bytes()
        );
        let v = RxWbDesc::new(&wb).unwrap();
        assert!(v.dd() && v.eof());
        assert_eq!((v.pkt_len(), v.rss_hash()), (1514, 0xdead_beef));

        let cmd = TXD_CMD_EOP | TXD_CMD_RS | TXD_CMD_L4T_UDP | TXD_CMD_IIPT_IPV4;
        let offsets = tx_offsets(14, 20, 8);
        assert_eq!(offsets, 7 | (5 << 7) | (2 << 14));
        let t = TxDataDesc::build(0xabc0, cmd, offsets, 60);
        let qw1 = (cmd << TXD_CMD_SHIFT) | (offsets << TXD_OFFSET_SHIFT) | (60 << TXD_BUF_SZ_SHIFT);
        assert_eq!(t[8..], qw1.to_le_bytes());
        let v = TxDataDesc::new(&t).unwrap();
        assert_eq!(
            (v.buf_addr(), v.cmd(), v.offsets(), v.buf_size()),
            (0xabc0, cmd, offsets, 60)
        );
        assert_eq!(v.dtype(), TXD_DTYPE_DATA);
        assert!(!v.done());
        assert!(
            TxDataDesc::new(&TxDataDesc::done_for(0xabc0))
                .unwrap()
                .done()
        );
        // Out-of-range values are cut to their field, never spill over.
        let mut t = [0u8; 16];
        TxDataDesc::new_unchecked(&mut t).set_buf_size(u64::MAX);
        assert_eq!(
            TxDataDesc::new_unchecked(&t).qw1(),
            TXD_BUF_SZ_MASK << TXD_BUF_SZ_SHIFT
        );
    }
}
