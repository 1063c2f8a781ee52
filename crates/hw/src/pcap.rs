//! Capture files: a [`Capture`] that records frames as a link transmits
//! them and writes them as nanosecond pcap, and a reader that loads a
//! capture to replay the way tshark reads it.
//!
//! Writing: standard libpcap with the nanosecond magic (`0xa1b23c4d`) and
//! link type Ethernet, so tshark and Wireshark open the files; simulated
//! picoseconds are truncated to nanoseconds, the format's resolution. The
//! file is written beside its final name and renamed into place, so a
//! failed write (a full disk) leaves no partial capture and is reported as
//! the write error it is, naming the path.
//!
//! Reading ([`read_with`]) accepts:
//! * pcap in either byte order, with micro- or nanosecond timestamps (and
//!   the Kuznetzov variant with its longer record headers), link type
//!   Ethernet; an FCS the header declares is stripped;
//! * pcapng: Section Header, Interface Description (`if_tsresol`,
//!   `if_tsoffset`, `if_fcslen`), Enhanced Packet, Simple Packet and the
//!   obsolete Packet block, in either byte order and across sections.
//!   Every other block type (name resolution, interface statistics,
//!   decryption secrets, custom, journal, …) carries no frame and is skipped,
//!   counted in [`ReadSummary::blocks_skipped`].
//!
//! A frame inside an accepted file that cannot be replayed as captured is
//! skipped and counted by reason, never a reason to reject the file:
//! `truncated` (captured fewer bytes than were on the wire, or more than
//! the snap length), `link_type` (its pcapng interface is not Ethernet),
//! `no_interface` (it names an interface no block described), `cut_short`
//! (the file ends inside it). A record whose framing is corrupt (a length
//! no reader accepts) ends the reading there, counted as `corrupt`, with
//! the frames before it kept — as tshark shows the packets before such an
//! error. Only special files are refused outright: a FIFO with no writer
//! would block the reader forever.
//!
//! Invariants: reading never panics and never allocates more than one
//! record (at most [`MAX_BLOCK_BYTES`]) beyond what the caller keeps; an
//! I/O failure is [`PcapError::Io`], never mistaken for a format problem.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use nextio_engine::Time;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PcapError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a readable pcap or pcapng file: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("{}: link type {link} is not Ethernet", path.display())]
    NotEthernet { path: PathBuf, link: u32 },
    #[error(
        "{}: is {what}, not a regular file (a capture must be a file: a FIFO or device could block forever)",
        path.display()
    )]
    NotRegular { path: PathBuf, what: &'static str },
}

/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u32 = 1;
/// Largest record libpcap (and so tshark) reads: its `MAXIMUM_SNAPLEN`.
pub const MAX_RECORD_BYTES: u32 = 262_144;
/// Largest pcapng block read (16 MiB): far above what a frame of the largest
/// snap length needs; a longer length is taken as corruption, so a bogus
/// length field cannot make the reader allocate without bound.
pub const MAX_BLOCK_BYTES: u32 = 16 << 20;

/// The container format of a capture file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap,
    Pcapng,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Pcap => "pcap",
            Format::Pcapng => "pcapng",
        }
    }
}

/// What reading a capture found, beside the frames handed to the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSummary {
    pub format: Option<Format>,
    /// Frame records seen, whether handed over or skipped.
    pub records: u64,
    /// Frames not handed over, by reason (`truncated`, `link_type`,
    /// `no_interface`, `cut_short`, `corrupt`).
    pub skipped: BTreeMap<&'static str, u64>,
    /// pcapng blocks that carry no frame, by block name.
    pub blocks_skipped: BTreeMap<String, u64>,
    /// Set when the caller stopped the reading early.
    pub stopped_early: bool,
}

impl ReadSummary {
    fn skip(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += 1;
    }
}

/// An in-memory capture, written out by [`Capture::write`]. With a size
/// limit it keeps the frames whose file fits in it and counts the rest,
/// so neither memory nor the file grows past the limit.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    records: Vec<(Time, Vec<u8>)>,
    /// Bytes the pcap file will take (global header and record headers
    /// counted).
    file_bytes: u64,
    limit_bytes: Option<u64>,
    left_out: u64,
}

/// A pcap file's global header and each record's header, bytes.
const PCAP_HEADER_BYTES: u64 = 24;
const PCAP_RECORD_HEADER_BYTES: u64 = 16;

impl Capture {
    pub fn new() -> Capture {
        Capture {
            file_bytes: PCAP_HEADER_BYTES,
            ..Capture::default()
        }
    }
    /// A capture whose file stays within `limit_bytes`.
    pub fn with_limit(limit_bytes: u64) -> Capture {
        Capture {
            limit_bytes: Some(limit_bytes),
            ..Capture::new()
        }
    }
    pub fn record(&mut self, t: Time, bytes: &[u8]) {
        let grown = self
            .file_bytes
            .saturating_add(PCAP_RECORD_HEADER_BYTES + bytes.len() as u64);
        if self.limit_bytes.is_some_and(|l| grown > l) {
            self.left_out += 1;
            return;
        }
        self.file_bytes = grown;
        self.records.push((t, bytes.to_vec()));
    }
    /// Frames not kept because the file would have passed its limit.
    pub fn left_out(&self) -> u64 {
        self.left_out
    }
    pub fn len(&self) -> usize {
        self.records.len()
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    /// Write as a nanosecond pcap at `path` (through a temporary file in
    /// the same folder, renamed into place).
    pub fn write(&self, path: &Path) -> Result<(), PcapError> {
        let write_err = |source| PcapError::Write {
            path: path.to_path_buf(),
            source,
        };
        let tmp = temporary_path(path);
        let result = (|| -> std::io::Result<()> {
            let file = File::create(&tmp)?;
            let header = PcapHeader {
                datalink: DataLink::ETHERNET,
                ts_resolution: TsResolution::NanoSecond,
                ..PcapHeader::default()
            };
            let mut w = PcapWriter::with_header(BufWriter::new(file), header).map_err(io_of)?;
            for (t, bytes) in &self.records {
                let ts = std::time::Duration::from_nanos(t.ps() / 1_000);
                w.write_packet(&PcapPacket::new(ts, bytes.len() as u32, bytes))
                    .map_err(io_of)?;
            }
            let file = w.into_writer().into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(write_err)
    }
}

/// `DIR/.NAME.PID.tmp` for `DIR/NAME`: in the same folder (so the rename
/// is atomic), never a name nextio writes as a result.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

fn io_of(e: pcap_file::PcapError) -> std::io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

/// Read every frame of a capture as `(timestamp, bytes)`, timestamps
/// relative to the first record; skipped frames are left out (see
/// [`read_with`] for the counts).
pub fn read(path: &Path) -> Result<Vec<(Time, Vec<u8>)>, PcapError> {
    let mut out = Vec::new();
    read_with(path, |t, bytes| {
        out.push((t, bytes.to_vec()));
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Read a pcap or pcapng capture, handing each replayable frame (its
/// timestamp relative to the file's first record, clamped at zero, and its
/// bytes without FCS) to `each` until it breaks.
pub fn read_with(
    path: &Path,
    mut each: impl FnMut(Time, &[u8]) -> ControlFlow<()>,
) -> Result<ReadSummary, PcapError> {
    let io = |source| PcapError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Opening a FIFO blocks until a writer appears: look before opening.
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(PcapError::NotRegular {
            path: path.to_path_buf(),
            what: file_kind(&meta),
        });
    }
    let file = File::open(path).map_err(io)?;
    let mut r = Input {
        inner: BufReader::new(file),
    };
    let format_err = |reason: String| PcapError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let mut magic = [0u8; 4];
    match r.fill(&mut magic).map_err(io)? {
        Fill::Full => {}
        _ => {
            return Err(format_err(
                "the file is shorter than any capture header".into(),
            ));
        }
    }
    let mut summary = ReadSummary::default();
    let mut first: Option<i128> = None;
    let mut hand = |ps: i128, bytes: &[u8]| {
        let base = *first.get_or_insert(ps);
        let rel = (ps - base).clamp(0, u64::MAX as i128) as u64;
        each(Time(rel), bytes)
    };
    match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => {
            summary.format = Some(Format::Pcapng);
            read_pcapng(&mut r, &mut summary, &mut hand).map_err(|e| e.into_error(path))?;
        }
        [0x1f, 0x8b, _, _] => {
            return Err(format_err(
                "it is gzip-compressed; decompress it first".into(),
            ));
        }
        _ => {
            let (order, frac_ps, extra) = match (
                u32::from_le_bytes(magic),
                u32::from_be_bytes(magic),
            ) {
                (0xa1b2_c3d4, _) => (Order::Little, 1_000_000, 0),
                (_, 0xa1b2_c3d4) => (Order::Big, 1_000_000, 0),
                (0xa1b2_3c4d, _) => (Order::Little, 1_000, 0),
                (_, 0xa1b2_3c4d) => (Order::Big, 1_000, 0),
                (0xa1b2_cd34, _) => (Order::Little, 1_000_000, 8),
                (_, 0xa1b2_cd34) => (Order::Big, 1_000_000, 8),
                _ => {
                    return Err(format_err(format!(
                        "unknown magic number {:02x} {:02x} {:02x} {:02x} (neither pcap nor pcapng)",
                        magic[0], magic[1], magic[2], magic[3]
                    )));
                }
            };
            summary.format = Some(Format::Pcap);
            let pcap = PcapLayout {
                order,
                frac_ps,
                extra,
            };
            read_pcap(&mut r, pcap, &mut summary, &mut hand).map_err(|e| e.into_error(path))?;
        }
    }
    Ok(summary)
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    "a special file"
}

/// Why reading stopped with an error (the path is added by the caller).
enum ReadError {
    Io(std::io::Error),
    Format(String),
    NotEthernet(u32),
}

impl ReadError {
    fn into_error(self, path: &Path) -> PcapError {
        let path = path.to_path_buf();
        match self {
            ReadError::Io(source) => PcapError::Io { path, source },
            ReadError::Format(reason) => PcapError::Format { path, reason },
            ReadError::NotEthernet(link) => PcapError::NotEthernet { path, link },
        }
    }
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> ReadError {
        ReadError::Io(e)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    Little,
    Big,
}

impl Order {
    fn u16(self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        match self {
            Order::Little => u16::from_le_bytes(a),
            Order::Big => u16::from_be_bytes(a),
        }
    }
    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        match self {
            Order::Little => u32::from_le_bytes(a),
            Order::Big => u32::from_be_bytes(a),
        }
    }
    fn u64(self, b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        match self {
            Order::Little => u64::from_le_bytes(a),
            Order::Big => u64::from_be_bytes(a),
        }
    }
}

enum Fill {
    Full,
    /// End of file before the first byte.
    Eof,
    /// End of file part way.
    Partial,
}

struct Input {
    inner: BufReader<File>,
}

impl Input {
    /// Fill `buf` entirely, or say where the file ended.
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<Fill> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => return Ok(if got == 0 { Fill::Eof } else { Fill::Partial }),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Fill::Full)
    }
}

struct PcapLayout {
    order: Order,
    /// Picoseconds per unit of the timestamp's fraction field.
    frac_ps: i128,
    /// Bytes of record header beyond the standard 16 (Kuznetzov: 8).
    extra: usize,
}

fn read_pcap(
    r: &mut Input,
    pcap: PcapLayout,
    summary: &mut ReadSummary,
    hand: &mut impl FnMut(i128, &[u8]) -> ControlFlow<()>,
) -> Result<(), ReadError> {
    let o = pcap.order;
    let mut rest = [0u8; 20];
    if !matches!(r.fill(&mut rest)?, Fill::Full) {
        return Err(ReadError::Format(
            "the file ends inside the pcap header".into(),
        ));
    }
    let major = o.u16(&rest[0..2]);
    if major != 2 {
        return Err(ReadError::Format(format!(
            "pcap version {major}.{} is not 2.x",
            o.u16(&rest[2..4])
        )));
    }
    // libpcap reads a snap length of 0 or beyond its maximum as the maximum.
    let snaplen = match o.u32(&rest[12..16]) {
        0 => MAX_RECORD_BYTES,
        s => s.min(MAX_RECORD_BYTES),
    };
    let link_field = o.u32(&rest[16..20]);
    // libpcap's LT_LINKTYPE, LT_FCS_LENGTH_PRESENT and LT_FCS_LENGTH.
    let link = link_field & 0x03ff_ffff;
    let fcs_bytes = if link_field & 0x0400_0000 != 0 {
        ((link_field >> 28) & 0xf) as usize * 2
    } else {
        0
    };
    if link != LINKTYPE_ETHERNET {
        return Err(ReadError::NotEthernet(link));
    }
    let mut header = vec![0u8; 16 + pcap.extra];
    let mut data = Vec::new();
    loop {
        match r.fill(&mut header)? {
            Fill::Full => {}
            Fill::Eof => return Ok(()),
            Fill::Partial => {
                summary.records += 1;
                summary.skip("cut_short");
                return Ok(());
            }
        }
        summary.records += 1;
        let secs = o.u32(&header[0..4]) as i128;
        let frac = o.u32(&header[4..8]) as i128;
        let incl = o.u32(&header[8..12]);
        let orig = o.u32(&header[12..16]);
        if incl > MAX_RECORD_BYTES {
            // Nothing after a record length no reader accepts can be framed.
            summary.skip("corrupt");
            return Ok(());
        }
        data.resize(incl as usize, 0);
        if !matches!(r.fill(&mut data)?, Fill::Full) {
            summary.skip("cut_short");
            return Ok(());
        }
        if orig > incl || incl > snaplen {
            summary.skip("truncated");
            continue;
        }
        let frame = &data[..data.len().saturating_sub(fcs_bytes)];
        let ps = secs * 1_000_000_000_000 + frac * pcap.frac_ps;
        if hand(ps, frame).is_break() {
            summary.stopped_early = true;
            return Ok(());
        }
    }
}

/// What an Interface Description Block says about its frames.
struct Interface {
    link: u16,
    /// 0: no limit.
    snaplen: u32,
    /// Timestamp units per second: 10^n or 2^n.
    units: TsUnits,
    offset_s: i64,
    fcs_bytes: usize,
}

#[derive(Clone, Copy)]
enum TsUnits {
    Pow10(u32),
    Pow2(u32),
}

impl TsUnits {
    fn to_ps(self, ts: u64) -> i128 {
        let ts = ts as u128;
        let ps = match self {
            TsUnits::Pow10(n) if n <= 12 => ts.saturating_mul(10u128.pow(12 - n)),
            TsUnits::Pow10(n) => ts / 10u128.checked_pow(n - 12).unwrap_or(u128::MAX),
            // ts < 2^64 and 10^12 < 2^40, so the product fits.
            TsUnits::Pow2(n) => (ts * 1_000_000_000_000).checked_shr(n).unwrap_or(0),
        };
        ps.min(i128::MAX as u128) as i128
    }
}

/// pcapng block types that carry frames or describe them.
const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const OBSOLETE_PB: u32 = 2;
const SPB: u32 = 3;
const EPB: u32 = 6;

fn block_name(kind: u32) -> String {
    match kind {
        4 => "name resolution".into(),
        5 => "interface statistics".into(),
        9 => "systemd journal export".into(),
        0x0a => "decryption secrets".into(),
        0x0bad | 0x4000_0bad => "custom".into(),
        other => format!("type 0x{other:08x}"),
    }
}

fn read_pcapng(
    r: &mut Input,
    summary: &mut ReadSummary,
    hand: &mut impl FnMut(i128, &[u8]) -> ControlFlow<()>,
) -> Result<(), ReadError> {
    let mut order = Order::Little;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut body = Vec::new();
    // The magic already read is the first block's type.
    let mut kind_bytes = [0x0a, 0x0d, 0x0d, 0x0a];
    let mut first = true;
    loop {
        if !first {
            match r.fill(&mut kind_bytes)? {
                Fill::Full => {}
                Fill::Eof => return Ok(()),
                Fill::Partial => {
                    summary.skip("cut_short");
                    return Ok(());
                }
            }
        }
        let mut len_bytes = [0u8; 4];
        if !matches!(r.fill(&mut len_bytes)?, Fill::Full) {
            if first {
                return Err(ReadError::Format(
                    "the file ends inside the section header".into(),
                ));
            }
            summary.skip("cut_short");
            return Ok(());
        }
        let kind = order.u32(&kind_bytes);
        if kind == SHB {
            // The byte-order magic decides how this section is read,
            // its own length field included.
            let mut bom = [0u8; 4];
            if !matches!(r.fill(&mut bom)?, Fill::Full) {
                return Err(ReadError::Format(
                    "the file ends inside a section header".into(),
                ));
            }
            order = match bom {
                [0x4d, 0x3c, 0x2b, 0x1a] => Order::Little,
                [0x1a, 0x2b, 0x3c, 0x4d] => Order::Big,
                _ if first => {
                    return Err(ReadError::Format(
                        "pcapng section header with a bad byte-order magic".into(),
                    ));
                }
                _ => {
                    summary.skip("corrupt");
                    return Ok(());
                }
            };
            let total = order.u32(&len_bytes);
            if !(28..=MAX_BLOCK_BYTES).contains(&total) || !total.is_multiple_of(4) {
                if first {
                    return Err(ReadError::Format(format!(
                        "pcapng section header of {total} bytes"
                    )));
                }
                summary.skip("corrupt");
                return Ok(());
            }
            body.resize(total as usize - 12, 0);
            body[..4].copy_from_slice(&bom);
            let mut tail = [0u8; 4];
            if !matches!(r.fill(&mut body[4..])?, Fill::Full)
                || !matches!(r.fill(&mut tail)?, Fill::Full)
            {
                if first {
                    return Err(ReadError::Format(
                        "the file ends inside the section header".into(),
                    ));
                }
                summary.skip("cut_short");
                return Ok(());
            }
            let major = order.u16(&body[4..6]);
            if major != 1 {
                return Err(ReadError::Format(format!(
                    "pcapng version {major}.{} is not 1.x",
                    order.u16(&body[6..8])
                )));
            }
            interfaces.clear();
            first = false;
            continue;
        }
        first = false;
        let total = order.u32(&len_bytes);
        if !(12..=MAX_BLOCK_BYTES).contains(&total) || !total.is_multiple_of(4) {
            summary.skip("corrupt");
            return Ok(());
        }
        body.resize(total as usize - 8, 0);
        if !matches!(r.fill(&mut body)?, Fill::Full) {
            if matches!(kind, EPB | SPB | OBSOLETE_PB) {
                summary.records += 1;
            }
            summary.skip("cut_short");
            return Ok(());
        }
        if order.u32(&body[body.len() - 4..]) != total {
            summary.skip("corrupt");
            return Ok(());
        }
        let b = &body[..body.len() - 4];
        let flow = match kind {
            IDB => {
                match interface(order, b) {
                    Some(i) => interfaces.push(i),
                    // Its frames will be counted as naming no interface.
                    None => {
                        *summary
                            .blocks_skipped
                            .entry("malformed interface description".into())
                            .or_default() += 1
                    }
                }
                ControlFlow::Continue(())
            }
            EPB | OBSOLETE_PB => {
                summary.records += 1;
                let (if_id, fixed) = if kind == EPB {
                    (b.get(0..4).map(|x| order.u32(x) as usize), 20)
                } else {
                    (b.get(0..2).map(|x| order.u16(x) as usize), 20)
                };
                match (if_id, b.len() >= fixed) {
                    (Some(id), true) => {
                        let ts = (order.u32(&b[4..8]) as u64) << 32 | order.u32(&b[8..12]) as u64;
                        let caplen = order.u32(&b[12..16]);
                        let orig = order.u32(&b[16..20]);
                        let data = b.get(fixed..fixed.saturating_add(caplen as usize));
                        let p = Packet {
                            if_id: id,
                            ts,
                            caplen,
                            orig,
                            data,
                        };
                        frame(summary, &interfaces, p, hand)
                    }
                    _ => {
                        summary.skip("corrupt");
                        ControlFlow::Continue(())
                    }
                }
            }
            SPB => {
                summary.records += 1;
                match b.get(0..4).map(|x| order.u32(x)) {
                    Some(orig) => {
                        let room = (b.len() - 4) as u32;
                        let snap = interfaces.first().map(|i| i.snaplen).unwrap_or(0);
                        let mut caplen = orig.min(room);
                        if snap != 0 {
                            caplen = caplen.min(snap);
                        }
                        // A simple packet has no timestamp.
                        let p = Packet {
                            if_id: 0,
                            ts: 0,
                            caplen,
                            orig,
                            data: b.get(4..4 + caplen as usize),
                        };
                        frame(summary, &interfaces, p, hand)
                    }
                    None => {
                        summary.skip("corrupt");
                        ControlFlow::Continue(())
                    }
                }
            }
            other => {
                *summary.blocks_skipped.entry(block_name(other)).or_default() += 1;
                ControlFlow::Continue(())
            }
        };
        if flow.is_break() {
            summary.stopped_early = true;
            return Ok(());
        }
    }
}

/// One frame record of a pcapng block, as read.
struct Packet<'a> {
    if_id: usize,
    /// In the interface's timestamp units.
    ts: u64,
    caplen: u32,
    orig: u32,
    /// `None` if the block is too short for its captured length.
    data: Option<&'a [u8]>,
}

/// Hand one pcapng frame over, or count why not.
fn frame(
    summary: &mut ReadSummary,
    interfaces: &[Interface],
    p: Packet<'_>,
    hand: &mut impl FnMut(i128, &[u8]) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let Packet {
        if_id,
        ts,
        caplen,
        orig,
        data,
    } = p;
    let Some(data) = data else {
        summary.skip("corrupt");
        return ControlFlow::Continue(());
    };
    let Some(i) = interfaces.get(if_id) else {
        summary.skip("no_interface");
        return ControlFlow::Continue(());
    };
    if i.link as u32 != LINKTYPE_ETHERNET {
        summary.skip("link_type");
        return ControlFlow::Continue(());
    }
    if orig > caplen || (i.snaplen != 0 && caplen > i.snaplen) {
        summary.skip("truncated");
        return ControlFlow::Continue(());
    }
    let ps = i.units.to_ps(ts) + i.offset_s as i128 * 1_000_000_000_000;
    hand(ps, &data[..data.len().saturating_sub(i.fcs_bytes)])
}

/// Parse an Interface Description Block body (without the trailing length).
fn interface(order: Order, b: &[u8]) -> Option<Interface> {
    if b.len() < 8 {
        return None;
    }
    let mut i = Interface {
        link: order.u16(&b[0..2]),
        snaplen: order.u32(&b[4..8]),
        units: TsUnits::Pow10(6),
        offset_s: 0,
        fcs_bytes: 0,
    };
    let mut opts = &b[8..];
    while opts.len() >= 4 {
        let code = order.u16(&opts[0..2]);
        let len = order.u16(&opts[2..4]) as usize;
        let padded = len.next_multiple_of(4);
        let value = opts.get(4..4 + len)?;
        match (code, len) {
            (0, _) => break,
            // if_tsresol
            (9, 1) => {
                let v = value[0];
                i.units = if v & 0x80 == 0 {
                    TsUnits::Pow10(v as u32)
                } else {
                    TsUnits::Pow2((v & 0x7f) as u32)
                };
            }
            // if_fcslen, in bits
            (13, 1) => i.fcs_bytes = value[0] as usize / 8,
            // if_tsoffset, seconds
            (14, 8) => i.offset_s = order.u64(value) as i64,
            _ => {}
        }
        opts = opts.get(4 + padded..).unwrap_or(&[]);
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextio_engine::Duration;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nextio-pcap-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_size_limit_keeps_the_file_within_it_and_counts_the_rest() {
        let path = dir("limit").join("t.pcap");
        let limit = 24 + 3 * (16 + 100) + 50;
        let mut c = Capture::with_limit(limit);
        for i in 0..10u64 {
            c.record(Time::ZERO + Duration::from_ns(i), &[i as u8; 100]);
        }
        assert_eq!((c.len(), c.left_out()), (3, 7));
        c.write(&path).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() <= limit);
        let back = read(&path).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[2].1, vec![2u8; 100]);
        // Without a limit nothing is left out.
        let mut all = Capture::new();
        for i in 0..10u64 {
            all.record(Time::ZERO + Duration::from_ns(i), &[0; 100]);
        }
        assert_eq!((all.len(), all.left_out()), (10, 0));
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn write_then_read_keeps_bytes_and_nanoseconds() {
        let path = dir("rt").join("t.pcap");
        let mut c = Capture::new();
        c.record(Time(1_000), &[1, 2, 3]);
        c.record(Time(7_724_999), &[4, 5]);
        c.write(&path).unwrap();
        let frames = read(&path).unwrap();
        assert_eq!(
            frames,
            vec![(Time(0), vec![1, 2, 3]), (Time(7_723_000), vec![4, 5])]
        );
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(&raw[..4], &[0xa1, 0xb2, 0x3c, 0x4d]); // nanosecond magic, big endian
    }

    #[test]
    fn garbage_is_an_error() {
        let d = dir("bad");
        let path = d.join("bad.pcap");
        std::fs::write(&path, b"this is not a pcap").unwrap();
        assert!(matches!(read(&path), Err(PcapError::Format { .. })));
        assert!(matches!(
            read(&d.join("missing.pcap")),
            Err(PcapError::Io { .. })
        ));
        assert!(matches!(read(&d), Err(PcapError::NotRegular { .. })));
    }

    /// A classic pcap: `order`, `nanos`, records of (secs, frac, incl, orig, bytes).
    fn pcap_bytes(
        order: Order,
        nanos: bool,
        snaplen: u32,
        records: &[(u32, u32, u32, u32, &[u8])],
    ) -> Vec<u8> {
        let w32 = |v: u32| match order {
            Order::Little => v.to_le_bytes(),
            Order::Big => v.to_be_bytes(),
        };
        let w16 = |v: u16| match order {
            Order::Little => v.to_le_bytes(),
            Order::Big => v.to_be_bytes(),
        };
        let mut out = Vec::new();
        out.extend(w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
        out.extend(w16(2));
        out.extend(w16(4));
        out.extend(w32(0));
        out.extend(w32(0));
        out.extend(w32(snaplen));
        out.extend(w32(1));
        for (s, f, incl, orig, bytes) in records {
            out.extend(w32(*s));
            out.extend(w32(*f));
            out.extend(w32(*incl));
            out.extend(w32(*orig));
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn both_byte_orders_and_resolutions_read_alike() {
        let d = dir("orders");
        for (i, (order, nanos)) in [
            (Order::Little, false),
            (Order::Big, false),
            (Order::Little, true),
            (Order::Big, true),
        ]
        .into_iter()
        .enumerate()
        {
            let frac = if nanos { 2_000 } else { 2 };
            let bytes = pcap_bytes(
                order,
                nanos,
                65535,
                &[
                    (1_700_000_000, 0, 3, 3, &[1, 2, 3]),
                    (1_700_000_000, frac, 2, 2, &[4, 5]),
                ],
            );
            let path = d.join(format!("{i}.pcap"));
            std::fs::write(&path, bytes).unwrap();
            // Unix-epoch timestamps in picoseconds overflow u64: the gap
            // must survive.
            assert_eq!(
                read(&path).unwrap(),
                vec![(Time(0), vec![1, 2, 3]), (Time(2_000_000), vec![4, 5])],
                "{order:?} nanos={nanos}"
            );
        }
    }

    #[test]
    fn truncated_frames_are_skipped_and_counted_not_fatal() {
        let d = dir("trunc");
        let path = d.join("t.pcap");
        let bytes = pcap_bytes(
            Order::Little,
            false,
            4,
            &[
                (0, 0, 4, 60, &[1, 2, 3, 4]),      // orig_len > caplen
                (0, 1, 3, 3, &[7, 8, 9]),          // whole
                (0, 2, 6, 6, &[1, 2, 3, 4, 5, 6]), // incl_len > snaplen
            ],
        );
        std::fs::write(&path, bytes).unwrap();
        let mut kept = Vec::new();
        let s = read_with(&path, |_, b| {
            kept.push(b.to_vec());
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(kept, vec![vec![7, 8, 9]]);
        assert_eq!(s.records, 3);
        assert_eq!(s.skipped.get("truncated"), Some(&2));
    }

    #[test]
    fn a_file_cut_inside_a_record_keeps_what_came_before() {
        let d = dir("cut");
        let path = d.join("c.pcap");
        let mut bytes = pcap_bytes(
            Order::Big,
            true,
            65535,
            &[(0, 0, 3, 3, &[1, 2, 3]), (0, 5, 10, 10, &[0; 10])],
        );
        bytes.truncate(bytes.len() - 4);
        std::fs::write(&path, bytes).unwrap();
        let mut n = 0;
        let s = read_with(&path, |_, _| {
            n += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!((n, s.skipped.get("cut_short")), (1, Some(&1)));
    }

    #[test]
    fn non_ethernet_pcap_and_compressed_files_are_named() {
        let d = dir("link");
        let path = d.join("raw.pcap");
        let mut bytes = pcap_bytes(Order::Little, false, 65535, &[]);
        bytes[20] = 101; // LINKTYPE_RAW
        std::fs::write(&path, bytes).unwrap();
        let e = read(&path).unwrap_err();
        assert!(matches!(e, PcapError::NotEthernet { link: 101, .. }), "{e}");
        std::fs::write(&path, [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("gzip"));
    }

    /// A pcapng block.
    fn block(order: Order, kind: u32, body: &[u8]) -> Vec<u8> {
        let w32 = |v: u32| match order {
            Order::Little => v.to_le_bytes(),
            Order::Big => v.to_be_bytes(),
        };
        let padded = body.len().next_multiple_of(4);
        let total = (12 + padded) as u32;
        let mut out = Vec::new();
        out.extend(w32(kind));
        out.extend(w32(total));
        out.extend_from_slice(body);
        out.resize(8 + padded, 0);
        out.extend(w32(total));
        out
    }

    fn shb(order: Order) -> Vec<u8> {
        let mut body = match order {
            Order::Little => 0x1a2b_3c4du32.to_le_bytes().to_vec(),
            Order::Big => 0x1a2b_3c4du32.to_be_bytes().to_vec(),
        };
        let (maj, min) = match order {
            Order::Little => (1u16.to_le_bytes(), 0u16.to_le_bytes()),
            Order::Big => (1u16.to_be_bytes(), 0u16.to_be_bytes()),
        };
        body.extend(maj);
        body.extend(min);
        body.extend((-1i64).to_le_bytes());
        block(order, SHB, &body)
    }

    fn idb(order: Order, link: u16, snaplen: u32, tsresol: Option<u8>) -> Vec<u8> {
        let w16 = |v: u16| match order {
            Order::Little => v.to_le_bytes(),
            Order::Big => v.to_be_bytes(),
        };
        let w32 = |v: u32| match order {
            Order::Little => v.to_le_bytes(),
            Order::Big => v.to_be_bytes(),
        };
        let mut body = Vec::new();
        body.extend(w16(link));
        body.extend(w16(0));
        body.extend(w32(snaplen));
        if let Some(r) = tsresol {
            body.extend(w16(9));
            body.extend(w16(1));
            body.extend([r, 0, 0, 0]);
            body.extend(w16(0));
            body.extend(w16(0));
        }
        block(order, IDB, &body)
    }

    fn epb(order: Order, if_id: u32, ts: u64, caplen: u32, orig: u32, data: &[u8]) -> Vec<u8> {
        let w32 = |v: u32| match order {
            Order::Little => v.to_le_bytes(),
            Order::Big => v.to_be_bytes(),
        };
        let mut body = Vec::new();
        body.extend(w32(if_id));
        body.extend(w32((ts >> 32) as u32));
        body.extend(w32(ts as u32));
        body.extend(w32(caplen));
        body.extend(w32(orig));
        body.extend_from_slice(data);
        block(order, EPB, &body)
    }

    #[test]
    fn pcapng_reads_enhanced_and_simple_packets_in_both_byte_orders() {
        let d = dir("ng");
        for (k, order) in [Order::Little, Order::Big].into_iter().enumerate() {
            let w32 = |v: u32| match order {
                Order::Little => v.to_le_bytes(),
                Order::Big => v.to_be_bytes(),
            };
            let mut f = shb(order);
            f.extend(idb(order, 1, 0, Some(9))); // nanoseconds
            f.extend(block(order, 4, &[0; 8])); // name resolution: skipped
            f.extend(epb(order, 0, 1_000, 3, 3, &[1, 2, 3]));
            f.extend(epb(order, 0, 3_500, 2, 10, &[4, 5])); // truncated
            f.extend(epb(order, 7, 3_600, 2, 2, &[4, 5])); // no such interface
            let mut spb = w32(2).to_vec();
            spb.extend([6, 7]);
            f.extend(block(order, SPB, &spb));
            f.extend(idb(order, 113, 0, None)); // Linux cooked: not Ethernet
            f.extend(epb(order, 1, 9_000, 2, 2, &[8, 9]));
            f.extend(epb(order, 0, 5_000, 1, 1, &[9]));
            let path = d.join(format!("{k}.pcapng"));
            std::fs::write(&path, &f).unwrap();
            let mut got = Vec::new();
            let s = read_with(&path, |t, b| {
                got.push((t, b.to_vec()));
                ControlFlow::Continue(())
            })
            .unwrap();
            assert_eq!(s.format, Some(Format::Pcapng));
            assert_eq!(s.records, 6);
            // The simple packet has no timestamp: before the first.
            assert_eq!(
                got,
                vec![
                    (Time(0), vec![1, 2, 3]),
                    (Time(0), vec![6, 7]),
                    (Time(4_000_000), vec![9])
                ],
                "{order:?}"
            );
            assert_eq!(s.skipped.get("truncated"), Some(&1));
            assert_eq!(s.skipped.get("no_interface"), Some(&1));
            assert_eq!(s.skipped.get("link_type"), Some(&1));
            assert_eq!(s.blocks_skipped.get("name resolution"), Some(&1));
        }
    }

    #[test]
    fn pcapng_binary_timestamp_resolution() {
        let d = dir("ng2");
        let o = Order::Little;
        let mut f = shb(o);
        f.extend(idb(o, 1, 0, Some(0x80 | 10))); // 2^-10 s
        f.extend(epb(o, 0, 0, 1, 1, &[1]));
        f.extend(epb(o, 0, 1024, 1, 1, &[2]));
        let path = d.join("b.pcapng");
        std::fs::write(&path, &f).unwrap();
        let got = read(&path).unwrap();
        assert_eq!(got[1].0, Time(1_000_000_000_000));
    }

    #[test]
    fn pcapng_written_by_another_implementation_reads_back() {
        use pcap_file::Endianness;
        use pcap_file::pcapng::PcapNgWriter;
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        use pcap_file::pcapng::blocks::interface_description::{
            InterfaceDescriptionBlock, InterfaceDescriptionOption,
        };
        use pcap_file::pcapng::blocks::simple_packet::SimplePacketBlock;
        use std::borrow::Cow;
        let d = dir("other");
        for (k, endianness) in [Endianness::Big, Endianness::Little]
            .into_iter()
            .enumerate()
        {
            let mut w = PcapNgWriter::with_endianness(Vec::new(), endianness).unwrap();
            let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0);
            idb.options = vec![InterfaceDescriptionOption::IfTsResol(9)];
            w.write_pcapng_block(idb).unwrap();
            for (ns, data) in [(1_000u64, vec![1u8, 2, 3]), (2_500, vec![4, 5, 6, 7, 8])] {
                w.write_pcapng_block(EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp: std::time::Duration::from_nanos(ns),
                    original_len: data.len() as u32,
                    data: Cow::Owned(data),
                    options: vec![],
                })
                .unwrap();
            }
            w.write_pcapng_block(SimplePacketBlock {
                original_len: 2,
                data: Cow::Owned(vec![9, 9]),
            })
            .unwrap();
            let path = d.join(format!("{k}.pcapng"));
            std::fs::write(&path, w.into_inner()).unwrap();
            assert_eq!(
                read(&path).unwrap(),
                vec![
                    (Time(0), vec![1, 2, 3]),
                    (Time(1_500_000), vec![4, 5, 6, 7, 8]),
                    (Time(0), vec![9, 9]),
                ],
                "{endianness:?}"
            );
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_is_a_write_error_naming_the_path() {
        let d = dir("full");
        let path = d.join("x.pcap");
        let tmp = temporary_path(&path);
        let _ = std::fs::remove_file(&tmp);
        // Writes to /dev/full fail with "no space left on device".
        std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
        let mut c = Capture::new();
        c.record(Time(0), &[0; 64]);
        let e = c.write(&path).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, PcapError::Write { .. }), "{text}");
        assert!(
            text.contains("x.pcap") && !text.contains("not a readable"),
            "{text}"
        );
        assert!(!path.exists());
        assert!(
            std::fs::symlink_metadata(&tmp).is_err(),
            "the temporary is removed"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = dir("fifo");
        let path = d.join("f.pcap");
        let _ = std::fs::remove_file(&path);
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        if !made.is_ok_and(|s| s.success()) {
            return; // no mkfifo on this system
        }
        let e = read(&path).unwrap_err();
        assert!(
            matches!(e, PcapError::NotRegular { what: "a FIFO", .. }),
            "{e}"
        );
        assert!(matches!(
            read(Path::new("/dev/null")),
            Err(PcapError::NotRegular { .. })
        ));
    }
}
