//! Nanosecond pcap files: a [`Capture`] that records frames as a link
//! transmits them, and a reader that loads a trace to replay.
//!
//! Files are standard libpcap with the nanosecond magic (`0xa1b23c4d`) and
//! link type Ethernet, so tshark and Wireshark open them. Simulated
//! picoseconds are truncated to nanoseconds, the format's resolution.
//! Reading never panics: a truncated or foreign file is a [`PcapError`].

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use nextio_engine::Time;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::{DataLink, TsResolution};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PcapError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a readable pcap file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: link type {link:?} is not Ethernet")]
    NotEthernet { path: PathBuf, link: String },
}

/// An in-memory capture, written out by [`Capture::write`].
#[derive(Clone, Debug, Default)]
pub struct Capture {
    records: Vec<(Time, Vec<u8>)>,
}

impl Capture {
    pub fn new() -> Capture {
        Capture::default()
    }
    pub fn record(&mut self, t: Time, bytes: &[u8]) {
        self.records.push((t, bytes.to_vec()));
    }
    pub fn len(&self) -> usize {
        self.records.len()
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    /// Write as a nanosecond pcap at `path`.
    pub fn write(&self, path: &Path) -> Result<(), PcapError> {
        let io = |source| PcapError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(path).map_err(io)?;
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            ..PcapHeader::default()
        };
        let fmt = |e: pcap_file::PcapError| PcapError::Format {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut w = PcapWriter::with_header(BufWriter::new(file), header).map_err(fmt)?;
        for (t, bytes) in &self.records {
            let ts = std::time::Duration::from_nanos(t.ps() / 1_000);
            w.write_packet(&PcapPacket::new(ts, bytes.len() as u32, bytes))
                .map_err(fmt)?;
        }
        w.into_writer().flush().map_err(io)
    }
}

/// Read every frame of an Ethernet pcap (micro- or nanosecond) as
/// `(timestamp, bytes)`, timestamps relative to the first frame.
pub fn read(path: &Path) -> Result<Vec<(Time, Vec<u8>)>, PcapError> {
    let file = File::open(path).map_err(|source| PcapError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let fmt = |e: pcap_file::PcapError| PcapError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut r = PcapReader::new(BufReader::new(file)).map_err(fmt)?;
    if r.header().datalink != DataLink::ETHERNET {
        return Err(PcapError::NotEthernet {
            path: path.to_path_buf(),
            link: format!("{:?}", r.header().datalink),
        });
    }
    let mut out = Vec::new();
    let mut first = None;
    while let Some(p) = r.next_packet() {
        let p = p.map_err(fmt)?;
        let ps = p
            .timestamp
            .as_nanos()
            .saturating_mul(1_000)
            .min(u64::MAX as u128) as u64;
        let base = *first.get_or_insert(ps);
        out.push((Time(ps.saturating_sub(base)), p.data.into_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_keeps_bytes_and_nanoseconds() {
        let dir = std::env::temp_dir().join(format!("nextio-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
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
        let dir = std::env::temp_dir().join(format!("nextio-pcap-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.pcap");
        std::fs::write(&path, b"this is not a pcap").unwrap();
        assert!(matches!(read(&path), Err(PcapError::Format { .. })));
        assert!(matches!(
            read(&dir.join("missing.pcap")),
            Err(PcapError::Io { .. })
        ));
    }
}
