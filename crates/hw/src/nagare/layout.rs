//! The byte formats Nagare shares with devices and with the CPU's library,
//! each defined once here as a `Repr` with `parse` and `emit` (smoltcp's
//! shape): the 64-byte message header that frames every message on a
//! record stream and every command the switch pushes to a streaming
//! device; the 64-byte configuration entries the CPU writes to program
//! streams and adapters; the 64-byte entries of the error log.
//!
//! Every field is little-endian. A message is its header followed by
//! `len` payload bytes, padded with zeros to a multiple of 64 bytes (one
//! cache line, the quantum of Ensō's pipes), so the next header starts on
//! a line.

use crate::layout::{Field, get_u16, get_u32, get_u64, set_u16, set_u32, set_u64};

/// Bytes of a message header, a configuration entry and an error entry.
pub const ENTRY_BYTES: usize = 64;
/// Messages are padded to this quantum.
pub const QUANTUM_BYTES: u64 = 64;
/// Bytes of per-stream state a header carries (an AES-128 key, a model id).
pub const STATE_BYTES: usize = 16;

/// Bytes a message of `payload` bytes occupies on a record stream.
pub fn message_bytes(payload: u64) -> u64 {
    (ENTRY_BYTES as u64 + payload).div_ceil(QUANTUM_BYTES) * QUANTUM_BYTES
}

/// What a message header heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// Switch → device: data with the hop's command.
    Command = 1,
    /// Device → switch (or any producer → stream): a result or data.
    Data = 2,
}

/// A message's status: 0 is success; anything else says why its payload
/// is not the hop's output (carried on to the end of the chain, where the
/// message is counted as dropped under that reason).
pub mod status {
    pub const OK: u8 = 0;
    /// The accelerator refused the operation code.
    pub const BAD_OP: u8 = 1;
    /// The input was malformed for the operation (too short).
    pub const BAD_INPUT: u8 = 2;
    /// Authentication failed (AES-GCM tag mismatch).
    pub const AUTH_FAILED: u8 = 3;
    /// The output did not fit where it was to go.
    pub const NO_ROOM: u8 = 4;
    /// A read the operation needed faulted.
    pub const FAULT: u8 = 5;
}

const MAGIC: u16 = 0x4e47; // "NG"

mod header {
    use super::Field;
    pub const MAGIC: Field = 0..2;
    pub const KIND: usize = 2;
    pub const STATUS: usize = 3;
    pub const OP: Field = 4..8;
    pub const LEN: Field = 8..12;
    pub const SEQ: Field = 16..24;
    pub const PARAM: Field = 24..32;
    pub const OUT_ADDR: Field = 32..40;
    pub const STATE: Field = 40..56;
    pub const COOKIE: Field = 56..64;
}

/// A message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageHeader {
    pub kind: MessageKind,
    pub status: u8,
    /// The operation a command asks for (an accelerator's op code).
    pub op: u32,
    /// Payload bytes after the header.
    pub len: u32,
    /// The message's sequence number within its chain.
    pub seq: u64,
    /// The operation's parameter (a model id, …).
    pub param: u64,
    /// Where the device pushes its result: a stream window.
    pub out_addr: u64,
    /// Per-stream state the switch feeds the device (a key, …).
    pub state: [u8; STATE_BYTES],
    /// Opaque to devices; echoed in results.
    pub cookie: u64,
}

impl MessageHeader {
    /// A data message of `len` bytes with sequence number `seq`.
    pub fn data(len: u32, seq: u64) -> MessageHeader {
        MessageHeader {
            kind: MessageKind::Data,
            status: status::OK,
            op: 0,
            len,
            seq,
            param: 0,
            out_addr: 0,
            state: [0; STATE_BYTES],
            cookie: 0,
        }
    }

    /// The header at the start of `b`, if `b` holds one.
    pub fn parse(b: &[u8]) -> Option<MessageHeader> {
        if b.len() < ENTRY_BYTES || get_u16(b, header::MAGIC) != MAGIC {
            return None;
        }
        let kind = match b[header::KIND] {
            1 => MessageKind::Command,
            2 => MessageKind::Data,
            _ => return None,
        };
        let mut state = [0; STATE_BYTES];
        state.copy_from_slice(&b[header::STATE]);
        Some(MessageHeader {
            kind,
            status: b[header::STATUS],
            op: get_u32(b, header::OP),
            len: get_u32(b, header::LEN),
            seq: get_u64(b, header::SEQ),
            param: get_u64(b, header::PARAM),
            out_addr: get_u64(b, header::OUT_ADDR),
            state,
            cookie: get_u64(b, header::COOKIE),
        })
    }

    pub fn emit(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        set_u16(&mut b, header::MAGIC, MAGIC);
        b[header::KIND] = self.kind as u8;
        b[header::STATUS] = self.status;
        set_u32(&mut b, header::OP, self.op);
        set_u32(&mut b, header::LEN, self.len);
        set_u64(&mut b, header::SEQ, self.seq);
        set_u64(&mut b, header::PARAM, self.param);
        set_u64(&mut b, header::OUT_ADDR, self.out_addr);
        b[header::STATE].copy_from_slice(&self.state);
        set_u64(&mut b, header::COOKIE, self.cookie);
        b
    }

    /// This header followed by `payload`, padded to the quantum.
    pub fn message(&self, payload: &[u8]) -> Vec<u8> {
        let mut m = self.emit().to_vec();
        m.extend_from_slice(payload);
        m.resize(message_bytes(payload.len() as u64) as usize, 0);
        m
    }
}

/// The format of the bytes a stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFormat {
    /// Messages with [`MessageHeader`]s.
    Records = 0,
    /// Ethernet frames as an Ensō pipe holds them (each on a 64-byte
    /// boundary, its length from its IPv4 header); a message is a UDP
    /// payload.
    EnsoFrames = 1,
}

/// What the switch does with a stream's messages: its hop of the policy
/// graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Push a command message (header + data) to a streaming device's
    /// input window at `target`.
    Stream = 1,
    /// Drive a legacy command-queue device through adapter `adapter`.
    Adapter = 2,
    /// Push an Ethernet frame (the stream's header template + the data) to
    /// a NIC's push window at `target`.
    Frame = 3,
    /// Drive a NIC's legacy TX interface through adapter `adapter` with an
    /// Ethernet frame built as for [`Action::Frame`].
    AdapterFrame = 4,
    /// Append the message (header + data) to a ring in host memory at
    /// `target` of `ring_bytes`.
    Host = 5,
}

/// The kind of legacy device an adapter drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterKind {
    /// A QAT-like command queue ([`crate::accel::cmdq`]).
    CommandQueue = 1,
    /// An Ensō NIC's TX notification ring.
    EnsoTx = 2,
}

/// Configuration entry operations.
pub mod config_op {
    pub const STREAM: u8 = 1;
    pub const TEMPLATE: u8 = 2;
    pub const ADAPTER: u8 = 3;
    pub const DESTROY: u8 = 4;
    pub const ENSO_RX: u8 = 5;
}

/// Requesters a stream accepts: one bit per device id below 63, and
/// [`CPU_WRITER`] for the CPU's own pushes.
pub type WriterSet = u64;
pub const CPU_WRITER: WriterSet = 1 << 63;
/// The writer bit of device `id`, if it has one.
pub fn writer_bit(id: u16) -> Option<WriterSet> {
    (id < 63).then(|| 1u64 << id)
}

/// A configuration entry the CPU writes to the switch's `CONFIG` register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigEntry {
    /// Create (or replace) stream `stream`: its format, who may push to
    /// it, and its hop.
    Stream {
        stream: u16,
        format: StreamFormat,
        writers: WriterSet,
        action: Action,
        /// A device window (streams, frames), a host ring (host).
        target: u64,
        /// Bytes of the host ring ([`Action::Host`]).
        ring_bytes: u32,
        /// Where the hop's device pushes its result.
        out_stream: Option<u16>,
        adapter: u16,
        op: u32,
        param: u64,
        state: [u8; STATE_BYTES],
    },
    /// The frame header template of `stream` (up to 48 bytes).
    Template {
        stream: u16,
        bytes: Vec<u8>,
    },
    /// Adapter `adapter` drives a legacy device: its kind, device id, the
    /// bus address of its doorbell (tail) register, and its ring size.
    Adapter {
        adapter: u16,
        kind: AdapterKind,
        device: u16,
        doorbell: u64,
        entries: u32,
    },
    /// Stream `stream` is an Ensō pipe: its head register and its
    /// notification buffer's head register, for the switch to free what
    /// it consumed, and the notification ring's entries.
    EnsoRx {
        stream: u16,
        pipe_head: u64,
        nb_head: u64,
        nb_entries: u32,
    },
    Destroy {
        stream: u16,
    },
}

/// Most template bytes an entry carries.
pub const MAX_TEMPLATE_BYTES: usize = 48;

impl ConfigEntry {
    pub fn emit(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        match self {
            ConfigEntry::Stream {
                stream,
                format,
                writers,
                action,
                target,
                ring_bytes,
                out_stream,
                adapter,
                op,
                param,
                state,
            } => {
                b[0] = config_op::STREAM;
                b[1] = *format as u8;
                set_u16(&mut b, 2..4, *stream);
                b[4] = *action as u8;
                set_u16(&mut b, 6..8, out_stream.unwrap_or(u16::MAX));
                set_u64(&mut b, 8..16, *target);
                set_u64(&mut b, 16..24, *writers);
                set_u32(&mut b, 24..28, *op);
                set_u16(&mut b, 28..30, *adapter);
                set_u64(&mut b, 32..40, *param);
                b[40..56].copy_from_slice(state);
                set_u32(&mut b, 56..60, *ring_bytes);
            }
            ConfigEntry::Template { stream, bytes } => {
                b[0] = config_op::TEMPLATE;
                set_u16(&mut b, 2..4, *stream);
                let n = bytes.len().min(MAX_TEMPLATE_BYTES);
                b[4] = n as u8;
                b[16..16 + n].copy_from_slice(&bytes[..n]);
            }
            ConfigEntry::Adapter {
                adapter,
                kind,
                device,
                doorbell,
                entries,
            } => {
                b[0] = config_op::ADAPTER;
                b[1] = *kind as u8;
                set_u16(&mut b, 2..4, *adapter);
                set_u16(&mut b, 4..6, *device);
                set_u64(&mut b, 8..16, *doorbell);
                set_u32(&mut b, 16..20, *entries);
            }
            ConfigEntry::EnsoRx {
                stream,
                pipe_head,
                nb_head,
                nb_entries,
            } => {
                b[0] = config_op::ENSO_RX;
                set_u16(&mut b, 2..4, *stream);
                set_u64(&mut b, 8..16, *pipe_head);
                set_u64(&mut b, 16..24, *nb_head);
                set_u32(&mut b, 24..28, *nb_entries);
            }
            ConfigEntry::Destroy { stream } => {
                b[0] = config_op::DESTROY;
                set_u16(&mut b, 2..4, *stream);
            }
        }
        b
    }

    /// The entry in `b`, or why it is not one.
    pub fn parse(b: &[u8]) -> Result<ConfigEntry, ConfigError> {
        if b.len() != ENTRY_BYTES {
            return Err(ConfigError::BadLength);
        }
        let stream = get_u16(b, 2..4);
        Ok(match b[0] {
            config_op::STREAM => {
                let format = match b[1] {
                    0 => StreamFormat::Records,
                    1 => StreamFormat::EnsoFrames,
                    _ => return Err(ConfigError::BadFormat),
                };
                let action = match b[4] {
                    1 => Action::Stream,
                    2 => Action::Adapter,
                    3 => Action::Frame,
                    4 => Action::AdapterFrame,
                    5 => Action::Host,
                    _ => return Err(ConfigError::BadAction),
                };
                let out = get_u16(b, 6..8);
                let mut state = [0; STATE_BYTES];
                state.copy_from_slice(&b[40..56]);
                ConfigEntry::Stream {
                    stream,
                    format,
                    writers: get_u64(b, 16..24),
                    action,
                    target: get_u64(b, 8..16),
                    ring_bytes: get_u32(b, 56..60),
                    out_stream: (out != u16::MAX).then_some(out),
                    adapter: get_u16(b, 28..30),
                    op: get_u32(b, 24..28),
                    param: get_u64(b, 32..40),
                    state,
                }
            }
            config_op::TEMPLATE => {
                let n = b[4] as usize;
                if n > MAX_TEMPLATE_BYTES {
                    return Err(ConfigError::BadTemplate);
                }
                ConfigEntry::Template {
                    stream,
                    bytes: b[16..16 + n].to_vec(),
                }
            }
            config_op::ADAPTER => ConfigEntry::Adapter {
                adapter: stream,
                kind: match b[1] {
                    1 => AdapterKind::CommandQueue,
                    2 => AdapterKind::EnsoTx,
                    _ => return Err(ConfigError::BadAdapter),
                },
                device: get_u16(b, 4..6),
                doorbell: get_u64(b, 8..16),
                entries: get_u32(b, 16..20),
            },
            config_op::ENSO_RX => ConfigEntry::EnsoRx {
                stream,
                pipe_head: get_u64(b, 8..16),
                nb_head: get_u64(b, 16..24),
                nb_entries: get_u32(b, 24..28),
            },
            config_op::DESTROY => ConfigEntry::Destroy { stream },
            _ => return Err(ConfigError::BadOp),
        })
    }
}

/// Why the switch refused a configuration entry; its code is what the
/// `CONFIG_STATUS` register reads back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("a configuration entry is 64 bytes written at once")]
    BadLength,
    #[error("unknown configuration operation")]
    BadOp,
    #[error("unknown stream format")]
    BadFormat,
    #[error("unknown stream action")]
    BadAction,
    #[error("unknown adapter kind")]
    BadAdapter,
    #[error("a template longer than 48 bytes")]
    BadTemplate,
    #[error("no such stream (beyond the switch's stream table)")]
    NoSuchStream,
    #[error("the stream's output stream does not exist")]
    NoOutputStream,
    #[error("no such adapter, or the adapter is not configured")]
    NoSuchAdapter,
    #[error("the adapter's ring does not fit the switch's memory")]
    AdapterTooLarge,
    #[error("a host ring must be a non-zero multiple of 64 bytes")]
    BadRing,
    #[error("a stream's target address is not where its action can push")]
    BadTarget,
}

impl ConfigError {
    pub fn code(self) -> u64 {
        self as u64 + 1
    }
    pub fn from_code(code: u64) -> Option<ConfigError> {
        use ConfigError::*;
        [
            BadLength,
            BadOp,
            BadFormat,
            BadAction,
            BadAdapter,
            BadTemplate,
            NoSuchStream,
            NoOutputStream,
            NoSuchAdapter,
            AdapterTooLarge,
            BadRing,
            BadTarget,
        ]
        .get(usize::try_from(code.checked_sub(1)?).ok()?)
        .copied()
    }
}

/// Why the switch dropped a TLP or a message: the error log's reason
/// codes, one `drop.*` counter each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A requester pushed into a stream it may not push to.
    AccessDenied = 1,
    /// A push into a window no stream owns.
    NoStream = 2,
    /// The stream's buffer in the switch was full.
    StreamBufferFull = 3,
    /// The bytes were not a message of the stream's format.
    Malformed = 4,
    /// A legacy adapter's ring was full.
    AdapterFull = 5,
    /// The switch's own DMA was refused.
    DmaError = 6,
}

impl DropReason {
    pub fn counter(self) -> &'static str {
        match self {
            DropReason::AccessDenied => "drop.access_denied",
            DropReason::NoStream => "drop.no_stream",
            DropReason::StreamBufferFull => "drop.stream_buffer_full",
            DropReason::Malformed => "drop.malformed",
            DropReason::AdapterFull => "drop.adapter_full",
            DropReason::DmaError => "drop.dma_error",
        }
    }
    pub fn from_code(c: u8) -> Option<DropReason> {
        use DropReason::*;
        [
            AccessDenied,
            NoStream,
            StreamBufferFull,
            Malformed,
            AdapterFull,
            DmaError,
        ]
        .get(usize::from(c.checked_sub(1)?))
        .copied()
    }
}

mod error_entry {
    use super::Field;
    pub const REASON: usize = 0;
    pub const REQUESTER_IS_CPU: usize = 1;
    pub const REQUESTER: Field = 2..4;
    pub const STREAM: Field = 4..8;
    pub const OFFSET: Field = 8..16;
    pub const BYTES: Field = 16..20;
    pub const TIME_PS: Field = 24..32;
}

/// Who issued a dropped TLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offender {
    Cpu,
    Device(u16),
}

/// One entry of the switch's error log, read by the CPU over MMIO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorEntry {
    pub reason: DropReason,
    pub requester: Offender,
    /// The stream the TLP was aimed at (its window's index).
    pub stream: u32,
    /// Its offset in the stream window.
    pub offset: u64,
    pub bytes: u32,
    pub time_ps: u64,
}

impl ErrorEntry {
    pub fn emit(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[error_entry::REASON] = self.reason as u8;
        let (cpu, id) = match self.requester {
            Offender::Cpu => (1, 0),
            Offender::Device(d) => (0, d),
        };
        b[error_entry::REQUESTER_IS_CPU] = cpu;
        set_u16(&mut b, error_entry::REQUESTER, id);
        set_u32(&mut b, error_entry::STREAM, self.stream);
        set_u64(&mut b, error_entry::OFFSET, self.offset);
        set_u32(&mut b, error_entry::BYTES, self.bytes);
        set_u64(&mut b, error_entry::TIME_PS, self.time_ps);
        b
    }
    pub fn parse(b: &[u8]) -> Option<ErrorEntry> {
        if b.len() < ENTRY_BYTES {
            return None;
        }
        Some(ErrorEntry {
            reason: DropReason::from_code(b[error_entry::REASON])?,
            requester: if b[error_entry::REQUESTER_IS_CPU] != 0 {
                Offender::Cpu
            } else {
                Offender::Device(get_u16(b, error_entry::REQUESTER))
            },
            stream: get_u32(b, error_entry::STREAM),
            offset: get_u64(b, error_entry::OFFSET),
            bytes: get_u32(b, error_entry::BYTES),
            time_ps: get_u64(b, error_entry::TIME_PS),
        })
    }
}

/// The switch's BARs: 0 holds its registers, 1 its stream windows (one
/// per stream, [`super::NagareConfig::window_bytes`] each), 2 its memory
/// (SRAM) that legacy devices read commands and data from.
pub mod bar {
    pub const REGISTERS: u8 = 0;
    pub const STREAMS: u8 = 1;
    pub const SRAM: u8 = 2;
}

/// Offsets of the registers in BAR0.
pub mod regs {
    /// Write a 64-byte [`super::ConfigEntry`].
    pub const CONFIG: u64 = 0x000;
    /// Read (8 B): the result of the last configuration entry, 0 or a
    /// [`super::ConfigError`] code.
    pub const CONFIG_STATUS: u64 = 0x040;
    /// Read (8 B): entries ever appended to the error log.
    pub const ERROR_COUNT: u64 = 0x048;
    /// Write a 64-byte [`super::PushCommand`].
    pub const PUSH: u64 = 0x080;
    /// The error log: a ring of [`ERROR_LOG_ENTRIES`] 64-byte
    /// [`super::ErrorEntry`]s; entry `n` of all time is at slot
    /// `n % ERROR_LOG_ENTRIES`.
    pub const ERROR_LOG: u64 = 0x1000;
    pub const ERROR_LOG_ENTRIES: u64 = 64;
    /// Bytes of BAR0.
    pub const BYTES: u64 = ERROR_LOG + ERROR_LOG_ENTRIES * 64;
}

/// Where in BAR2 the switch absorbs the notifications an Ensō NIC writes
/// for the pipe of stream `s`: a ring of up to [`SINK_ENTRIES`] entries.
pub fn sink_offset(stream: u16) -> u64 {
    stream as u64 * SINK_ENTRIES * 64
}
pub const SINK_ENTRIES: u64 = 1024;

/// What the CPU asks of the switch with one 64-byte write to `PUSH`
/// (thesis §4.5): read `len` bytes of host memory at `src` and push them
/// as one message into `stream`, or, with no stream, copy them to host
/// address `dst`; then, if `done` is non-zero, write 8 bytes of 1 there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushCommand {
    pub src: u64,
    pub len: u32,
    pub stream: Option<u16>,
    pub dst: u64,
    pub done: u64,
}

impl PushCommand {
    pub fn emit(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        set_u64(&mut b, 0..8, self.src);
        set_u32(&mut b, 8..12, self.len);
        set_u16(&mut b, 12..14, self.stream.unwrap_or(u16::MAX));
        set_u64(&mut b, 16..24, self.dst);
        set_u64(&mut b, 24..32, self.done);
        b
    }
    pub fn parse(b: &[u8]) -> Option<PushCommand> {
        if b.len() != ENTRY_BYTES {
            return None;
        }
        let stream = get_u16(b, 12..14);
        Some(PushCommand {
            src: get_u64(b, 0..8),
            len: get_u32(b, 8..12),
            stream: (stream != u16::MAX).then_some(stream),
            dst: get_u64(b, 16..24),
            done: get_u64(b, 24..32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_round_trips() {
        let h = MessageHeader {
            kind: MessageKind::Command,
            status: status::AUTH_FAILED,
            op: 7,
            len: 1000,
            seq: 1 << 40,
            param: 3,
            out_addr: 0xdead_beef_0000,
            state: [9; STATE_BYTES],
            cookie: 42,
        };
        assert_eq!(MessageHeader::parse(&h.emit()), Some(h));
        assert_eq!(h.message(&[1; 10]).len(), 128);
        assert_eq!(MessageHeader::parse(&[0; 64]), None);
        let entries = [
            ConfigEntry::Stream {
                stream: 5,
                format: StreamFormat::EnsoFrames,
                writers: CPU_WRITER | 0b101,
                action: Action::AdapterFrame,
                target: 1 << 41,
                ring_bytes: 4096,
                out_stream: Some(6),
                adapter: 2,
                op: 1,
                param: 8,
                state: [3; STATE_BYTES],
            },
            ConfigEntry::Template {
                stream: 1,
                bytes: vec![0xaa; 42],
            },
            ConfigEntry::Adapter {
                adapter: 1,
                kind: AdapterKind::EnsoTx,
                device: 4,
                doorbell: 77,
                entries: 64,
            },
            ConfigEntry::EnsoRx {
                stream: 0,
                pipe_head: 1,
                nb_head: 2,
                nb_entries: 3,
            },
            ConfigEntry::Destroy { stream: 9 },
        ];
        for e in entries {
            assert_eq!(ConfigEntry::parse(&e.emit()), Ok(e));
        }
        assert_eq!(ConfigEntry::parse(&[0; 8]), Err(ConfigError::BadLength));
        assert_eq!(ConfigEntry::parse(&[99; 64]), Err(ConfigError::BadOp));
        for c in 1..=12 {
            assert_eq!(ConfigError::from_code(c).map(|e| e.code()), Some(c));
        }
        assert_eq!(ConfigError::from_code(0), None);
        let p = PushCommand {
            src: 1,
            len: 2,
            stream: Some(3),
            dst: 4,
            done: 5,
        };
        assert_eq!(PushCommand::parse(&p.emit()), Some(p));
        let e = ErrorEntry {
            reason: DropReason::AccessDenied,
            requester: Offender::Device(3),
            stream: 2,
            offset: 128,
            bytes: 64,
            time_ps: 5,
        };
        assert_eq!(ErrorEntry::parse(&e.emit()), Some(e));
    }
}
