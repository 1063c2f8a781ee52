//! The stream table and each stream's registers: what the CPU programmed
//! for a stream (its format, who may push to it, its hop) and what the
//! dataplane keeps per stream (bytes waiting to form a message, sequence
//! number, counts, an Ensō pipe's freeing state).
//!
//! Invariant: a stream's buffer never holds more than the configured
//! bytes; every message formed from it is delivered once or dropped under
//! one reason.

use super::layout::{Action, STATE_BYTES, StreamFormat, WriterSet};

/// An Ensō pipe feeding a stream: where to tell the NIC what the switch
/// has consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnsoRx {
    pub pipe_head: u64,
    pub nb_head: u64,
    pub nb_entries: u32,
    /// Pipe bytes consumed, and the head last written.
    pub consumed: u64,
    pub freed: u64,
    /// Notifications the NIC wrote into the switch's sink.
    pub notifications: u64,
}

/// One stream-table entry with its registers.
#[derive(Clone, Debug)]
pub struct Stream {
    pub format: StreamFormat,
    pub writers: WriterSet,
    pub action: Action,
    pub target: u64,
    pub ring_bytes: u32,
    pub out_stream: Option<u16>,
    pub adapter: u16,
    pub op: u32,
    pub param: u64,
    pub state: [u8; STATE_BYTES],
    pub template: Vec<u8>,
    pub enso_rx: Option<EnsoRx>,
    /// Bytes pushed and not yet a whole message.
    pub buf: Vec<u8>,
    /// Next sequence number given to a message formed here (frames).
    pub seq: u64,
    /// Next write offset in a host ring.
    pub host_tail: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
}

impl Stream {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        format: StreamFormat,
        writers: WriterSet,
        action: Action,
        target: u64,
        ring_bytes: u32,
        out_stream: Option<u16>,
        adapter: u16,
        op: u32,
        param: u64,
        state: [u8; STATE_BYTES],
    ) -> Stream {
        Stream {
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
            template: Vec::new(),
            enso_rx: None,
            buf: Vec::new(),
            seq: 0,
            host_tail: 0,
            messages_in: 0,
            messages_out: 0,
            bytes_in: 0,
        }
    }

    /// Whether `writer` may push to this stream.
    pub fn allows(&self, writer: Option<WriterSet>) -> bool {
        writer.is_some_and(|w| self.writers & w != 0)
    }
}

/// A message inside the switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub seq: u64,
    /// 0, or why an upstream hop failed ([`super::layout::status`]).
    pub status: u8,
    pub payload: Vec<u8>,
}
