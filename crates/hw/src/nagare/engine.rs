//! Nagare's switch dataplane as the switch's own function on the fabric
//! ([`crate::fabric::Fabric::attach_switch_function`]): the device that
//! owns the stream windows (BAR1), the switch memory legacy devices read
//! (BAR2) and the registers the CPU programs it through (BAR0).
//!
//! Every TLP it receives has already crossed the switch's ingress pipeline
//! in the fabric (its `stages × cycles` are on the TLP's path); what it
//! then does is what the pipeline's program computes ([`Program`]): match
//! the address to a stream, check the requester against the stream's
//! access rule, update the stream's registers, look up the stream's hop
//! and emit — a command message to a streaming device, a frame to a NIC's
//! push window, a command into a legacy device's queue and a doorbell
//! ([`super::adapter`]), or a message into a ring in host memory.
//!
//! Access rules (thesis §4.5): a push by a requester the stream does not
//! allow, or into a window no stream owns, moves nothing; it is counted
//! (`drop.access_denied`, `drop.no_stream`), logged in the error log the
//! CPU reads over MMIO, and — if the switch was given an interrupt —
//! signalled with MSI-X vector 0.
//!
//! Invariants: every message formed on a stream is delivered (pushed on,
//! handed to an adapter, written to the host) or dropped under exactly one
//! `drop.*` reason; a stream's buffer holds at most
//! [`NagareConfig::stream_buffer_bytes`]; a configuration entry either
//! takes effect whole or leaves the tables as they were, and its result
//! reads back from `CONFIG_STATUS`.
//!
//! [`Program`]: super::pipeline::Program

use std::collections::BTreeMap;

use nextio_engine::Counters;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::device::{BarSpec, Device, DeviceCtx, DmaFault, Requester};
use crate::nic::enso::PIPE_BYTES;

use super::adapter::Adapter;
use super::frame::{self, Parsed};
use super::layout::{
    Action, AdapterKind, CPU_WRITER, ConfigEntry, ConfigError, DropReason, ENTRY_BYTES, ErrorEntry,
    MAX_TEMPLATE_BYTES, MessageHeader, MessageKind, Offender, PushCommand, QUANTUM_BYTES,
    SINK_ENTRIES, StreamFormat, bar, message_bytes, regs, status, writer_bit,
};
use super::stream::{EnsoRx, Msg, Stream};

/// Static configuration of the switch's dataplane: a preset's
/// `[nagare.switch]` (where each value's source is) and whether the host
/// builder wants error interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NagareConfig {
    /// Entries of the stream table.
    pub max_streams: u16,
    /// Bytes of each stream's window (an Ensō pipe's ring, so a NIC's pipe
    /// can be a stream).
    pub window_bytes: u64,
    /// Bytes a stream may hold while a message forms.
    pub stream_buffer_bytes: u64,
    /// Legacy adapters.
    pub max_adapters: u16,
    /// Switch memory for adapters' rings and staging slots.
    pub adapter_bytes: u64,
    /// Bytes of one staging slot: the largest message an adapter takes.
    pub slot_bytes: u64,
    /// Time to answer a read of switch memory.
    pub sram_read_ps: u64,
    /// An Ensō pipe's head is written back once this many bytes were
    /// consumed since the last write.
    pub free_batch_bytes: u64,
    /// Signal error-log entries with MSI-X vector 0.
    #[serde(skip)]
    pub error_interrupt: bool,
}

impl Default for NagareConfig {
    /// The root preset's switch dataplane.
    fn default() -> Self {
        nextio_presets::root_section("nagare.switch")
    }
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum NagareError {
    #[error("invalid Nagare configuration: {0}")]
    Config(String),
}

/// What a DMA of the switch is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tag {
    Push,
    Doorbell,
    Free,
    Host,
    /// The host-memory read of push command `id`.
    PushRead {
        id: u64,
    },
    PushDone,
}

impl Tag {
    pub(super) fn encode(self) -> u64 {
        match self {
            Tag::Push => 0,
            Tag::Doorbell => 1,
            Tag::Free => 2,
            Tag::Host => 3,
            Tag::PushDone => 4,
            Tag::PushRead { id } => (1 << 60) | (id & ((1 << 60) - 1)),
        }
    }
    fn decode(t: u64) -> Option<Tag> {
        Some(match t {
            0 => Tag::Push,
            1 => Tag::Doorbell,
            2 => Tag::Free,
            3 => Tag::Host,
            4 => Tag::PushDone,
            t if t >> 60 == 1 => Tag::PushRead {
                id: t & ((1 << 60) - 1),
            },
            _ => return None,
        })
    }
}

/// The switch's dataplane.
pub struct NagareSwitch {
    pub(super) cfg: NagareConfig,
    pub(super) streams: Vec<Option<Stream>>,
    pub(super) adapters: Vec<Option<Adapter>>,
    /// BAR2: the sinks, then the adapters' memory.
    pub(super) sram: Vec<u8>,
    /// Bus addresses of BAR1 and BAR2 (set when the BARs are placed).
    windows_base: u64,
    pub(super) sram_base: u64,
    /// Next free byte of the adapters' memory.
    adapter_next: u64,
    config_status: u64,
    errors: u64,
    error_log: Vec<[u8; ENTRY_BYTES]>,
    pushes: BTreeMap<u64, PushCommand>,
    next_push: u64,
    pub(super) counters: Counters,
}

impl NagareSwitch {
    pub fn new(cfg: NagareConfig) -> Result<NagareSwitch, NagareError> {
        let bad = |s: String| Err(NagareError::Config(s));
        if cfg.max_streams == 0 || cfg.max_streams > 1024 {
            return bad("the stream table needs 1..=1024 entries".into());
        }
        if !cfg.window_bytes.is_power_of_two() || cfg.window_bytes < 4096 {
            return bad("a stream window is a power of two of at least 4 KiB".into());
        }
        if cfg.stream_buffer_bytes < message_bytes(cfg.slot_bytes) {
            return bad(format!(
                "a stream buffer of {} B cannot hold one {} B message",
                cfg.stream_buffer_bytes, cfg.slot_bytes
            ));
        }
        if cfg.slot_bytes < 2048 || cfg.slot_bytes > 1 << 20 || cfg.max_adapters > 64 {
            return bad("slots of 2 KiB..=1 MiB and at most 64 adapters".into());
        }
        let sinks = cfg.max_streams as u64 * SINK_ENTRIES * 64;
        let sram = sinks
            .checked_add(cfg.adapter_bytes)
            .filter(|b| *b <= 1 << 30)
            .ok_or_else(|| NagareError::Config("switch memory above 1 GiB".into()))?;
        Ok(NagareSwitch {
            cfg,
            streams: vec![None; cfg.max_streams as usize],
            adapters: (0..cfg.max_adapters).map(|_| None).collect(),
            sram: vec![0; sram as usize],
            windows_base: 0,
            sram_base: 0,
            adapter_next: sinks,
            config_status: 0,
            errors: 0,
            error_log: vec![[0; ENTRY_BYTES]; regs::ERROR_LOG_ENTRIES as usize],
            pushes: BTreeMap::new(),
            next_push: 0,
            counters: Counters::new(),
        })
    }

    pub fn config(&self) -> &NagareConfig {
        &self.cfg
    }

    /// Tell the dataplane where its BARs were placed (the BIOS's BAR
    /// assignment, written into the function's configuration space).
    pub fn set_bar_addresses(&mut self, windows: u64, sram: u64) {
        self.windows_base = windows;
        self.sram_base = sram;
    }

    /// Signal (or stop signalling) error-log entries with MSI-X vector 0
    /// (the OS's choice when it binds the switch's driver).
    pub fn set_error_interrupt(&mut self, on: bool) {
        self.cfg.error_interrupt = on;
    }

    /// Bus address of stream `s`'s window.
    pub fn window(&self, s: u16) -> u64 {
        self.windows_base + s as u64 * self.cfg.window_bytes
    }

    /// Bus address of byte `off` of the switch memory.
    pub fn sram_addr(&self, off: u64) -> u64 {
        self.sram_base + off
    }

    /// Bus address where adapter `a`'s ring starts, once configured.
    pub fn adapter_ring(&self, a: u16) -> Option<u64> {
        let ad = self.adapters.get(a as usize)?.as_ref()?;
        Some(self.sram_base + ad.ring)
    }

    /// Messages delivered by stream `s` and bytes it took in.
    pub fn stream_stats(&self, s: u16) -> Option<(u64, u64, u64)> {
        let st = self.streams.get(s as usize)?.as_ref()?;
        Some((st.messages_in, st.messages_out, st.bytes_in))
    }

    /// Whether stream `s` is in the table (the driver's view of the table
    /// it programmed, for allocating ids).
    pub fn stream_in_use(&self, s: u16) -> bool {
        self.streams.get(s as usize).is_some_and(Option::is_some)
    }

    /// Whether adapter `a` is configured.
    pub fn adapter_in_use(&self, a: u16) -> bool {
        self.adapters.get(a as usize).is_some_and(Option::is_some)
    }

    /// Error-log entries ever appended.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// A message ends here, dropped for `why`.
    pub(super) fn drop_msg(&mut self, why: DropReason) {
        self.msg_dropped(why.counter());
    }

    /// A message ends here, dropped and counted under `counter`.
    pub(super) fn msg_dropped(&mut self, counter: &'static str) {
        self.counters.inc(counter);
        self.counters.inc("messages_dropped");
    }

    /// Messages waiting in adapters for a free slot.
    pub fn waiting(&self) -> u64 {
        self.adapters
            .iter()
            .flatten()
            .map(|a| a.waiting.len() as u64)
            .sum()
    }

    /// The switch's conservation laws: every TLP it received was accepted,
    /// refused, or was not a register; every message formed on a stream
    /// left the switch (pushed on, written to the host, handed to a
    /// device's ring), was dropped under one reason, or still waits.
    pub fn conservation(&self) -> Result<(), String> {
        let c = &self.counters;
        let tlps = c.get("tlps_in");
        let ends = c.get("tlps_accepted") + c.get("tlps_refused") + c.get("bad_register_writes");
        if tlps != ends {
            return Err(format!("{tlps} TLPs in, {ends} accounted for: {c:?}"));
        }
        let msgs = c.get("messages");
        let ends = c.get("delivered") + c.get("messages_dropped") + self.waiting();
        if msgs != ends {
            return Err(format!(
                "{msgs} messages formed, {ends} accounted for: {c:?}"
            ));
        }
        Ok(())
    }

    /// Drop a TLP: count it, log it, signal the CPU.
    fn refuse(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        why: DropReason,
        from: Requester,
        stream: u32,
        offset: u64,
        bytes: usize,
    ) {
        self.counters.inc(why.counter());
        self.counters.inc("tlps_refused");
        let entry = ErrorEntry {
            reason: why,
            requester: match from {
                Requester::Cpu { .. } => Offender::Cpu,
                Requester::Device(d) => Offender::Device(d.0),
            },
            stream,
            offset,
            bytes: bytes as u32,
            time_ps: cx.now().ps(),
        };
        let slot = (self.errors % regs::ERROR_LOG_ENTRIES) as usize;
        self.error_log[slot] = entry.emit();
        self.errors += 1;
        if self.cfg.error_interrupt {
            cx.msix(0);
        }
    }

    // ---- configuration --------------------------------------------------

    fn configure(&mut self, entry: ConfigEntry) -> Result<(), ConfigError> {
        let max = self.cfg.max_streams;
        let exists = |s: &Self, id: u16| s.streams.get(id as usize).is_some_and(Option::is_some);
        match entry {
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
                if stream >= max {
                    return Err(ConfigError::NoSuchStream);
                }
                if let Some(o) = out_stream
                    && !exists(self, o)
                    && o != stream
                {
                    return Err(ConfigError::NoOutputStream);
                }
                match action {
                    Action::Stream | Action::Frame if target == 0 => {
                        return Err(ConfigError::BadTarget);
                    }
                    Action::Stream if out_stream.is_none() => {
                        return Err(ConfigError::NoOutputStream);
                    }
                    Action::Adapter | Action::AdapterFrame => {
                        let kind = self
                            .adapters
                            .get(adapter as usize)
                            .and_then(Option::as_ref)
                            .map(|a| a.kind)
                            .ok_or(ConfigError::NoSuchAdapter)?;
                        let want = if action == Action::Adapter {
                            AdapterKind::CommandQueue
                        } else {
                            AdapterKind::EnsoTx
                        };
                        if kind != want {
                            return Err(ConfigError::NoSuchAdapter);
                        }
                        if action == Action::Adapter && out_stream.is_none() {
                            return Err(ConfigError::NoOutputStream);
                        }
                    }
                    Action::Host
                        if ring_bytes < 2 * QUANTUM_BYTES as u32
                            || !(ring_bytes as u64).is_multiple_of(QUANTUM_BYTES)
                            || target == 0 =>
                    {
                        return Err(ConfigError::BadRing);
                    }
                    _ => {}
                }
                self.streams[stream as usize] = Some(Stream::new(
                    format, writers, action, target, ring_bytes, out_stream, adapter, op, param,
                    state,
                ));
            }
            ConfigEntry::Template { stream, bytes } => {
                if bytes.len() < 42 || bytes.len() > MAX_TEMPLATE_BYTES {
                    return Err(ConfigError::BadTemplate);
                }
                let s = self
                    .streams
                    .get_mut(stream as usize)
                    .and_then(Option::as_mut)
                    .ok_or(ConfigError::NoSuchStream)?;
                s.template = bytes;
            }
            ConfigEntry::Adapter {
                adapter,
                kind,
                device,
                doorbell,
                entries,
            } => {
                if adapter >= self.cfg.max_adapters {
                    return Err(ConfigError::NoSuchAdapter);
                }
                if !(2..=1024).contains(&entries) || doorbell == 0 {
                    return Err(ConfigError::BadTarget);
                }
                // Re-programming an adapter of the same shape (a new
                // doorbell) keeps its memory: rings already handed to a
                // device stay where they are.
                if let Some(ad) = self.adapters[adapter as usize].as_mut()
                    && ad.kind == kind
                    && ad.entries == entries
                    && ad.device == device
                {
                    ad.doorbell = doorbell;
                    return Ok(());
                }
                let bytes = Adapter::footprint(kind, entries, self.cfg.slot_bytes);
                let base = self.adapter_next;
                if base + bytes > self.sram.len() as u64 {
                    return Err(ConfigError::AdapterTooLarge);
                }
                self.adapter_next += bytes;
                let ring = base;
                let inputs = ring + entries as u64 * 64;
                self.adapters[adapter as usize] = Some(Adapter {
                    kind,
                    device,
                    doorbell,
                    entries,
                    ring,
                    inputs,
                    outputs: inputs + entries as u64 * self.cfg.slot_bytes,
                    tail: 0,
                    slots: vec![None; entries as usize],
                    waiting: Default::default(),
                });
            }
            ConfigEntry::EnsoRx {
                stream,
                pipe_head,
                nb_head,
                nb_entries,
            } => {
                if nb_entries as u64 > SINK_ENTRIES || nb_entries < 2 {
                    return Err(ConfigError::BadRing);
                }
                let s = self
                    .streams
                    .get_mut(stream as usize)
                    .and_then(Option::as_mut)
                    .ok_or(ConfigError::NoSuchStream)?;
                if s.format != StreamFormat::EnsoFrames {
                    return Err(ConfigError::BadFormat);
                }
                s.enso_rx = Some(EnsoRx {
                    pipe_head,
                    nb_head,
                    nb_entries,
                    consumed: 0,
                    freed: 0,
                    notifications: 0,
                });
            }
            ConfigEntry::Destroy { stream } => {
                let s = self
                    .streams
                    .get_mut(stream as usize)
                    .ok_or(ConfigError::NoSuchStream)?;
                if s.take().is_none() {
                    return Err(ConfigError::NoSuchStream);
                }
            }
        }
        Ok(())
    }

    // ---- the dataplane ---------------------------------------------------

    /// A push of `data` into stream `s`'s window at `offset`.
    fn stream_write(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        from: Requester,
        s: u16,
        offset: u64,
        data: &[u8],
    ) {
        let writer = match from {
            Requester::Cpu { .. } => Some(CPU_WRITER),
            Requester::Device(d) => writer_bit(d.0),
        };
        let limit = self.cfg.stream_buffer_bytes;
        let why = match self.streams.get(s as usize).and_then(Option::as_ref) {
            None => Some(DropReason::NoStream),
            Some(st) if !st.allows(writer) => Some(DropReason::AccessDenied),
            Some(st) if st.buf.len() as u64 + data.len() as u64 > limit => {
                Some(DropReason::StreamBufferFull)
            }
            Some(_) => None,
        };
        if let Some(why) = why {
            self.refuse(cx, why, from, s as u32, offset, data.len());
            return;
        }
        let Some(st) = self.streams[s as usize].as_mut() else {
            return;
        };
        self.counters.inc("tlps_accepted");
        st.bytes_in += data.len() as u64;
        st.buf.extend_from_slice(data);
        let msgs = self.form_messages(s);
        self.messages_on(cx, s, msgs);
    }

    /// The whole messages at the front of stream `s`'s buffer, removed.
    fn form_messages(&mut self, s: u16) -> Vec<Msg> {
        let Some(st) = self.streams[s as usize].as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut at = 0usize;
        let mut malformed = 0u64;
        let mut consumed_pipe = 0u64;
        loop {
            let rest = &st.buf[at..];
            match st.format {
                StreamFormat::EnsoFrames => match frame::parse(rest) {
                    Parsed::Incomplete => break,
                    Parsed::Garbage => {
                        malformed += 1;
                        at += QUANTUM_BYTES as usize;
                        consumed_pipe += QUANTUM_BYTES;
                    }
                    Parsed::Frame { consumed, payload } => {
                        at += consumed;
                        consumed_pipe += consumed as u64;
                        match payload {
                            Some(p) => {
                                out.push(Msg {
                                    seq: st.seq,
                                    status: status::OK,
                                    payload: p,
                                });
                                st.seq += 1;
                            }
                            None => malformed += 1,
                        }
                    }
                },
                StreamFormat::Records => {
                    if rest.len() < ENTRY_BYTES {
                        break;
                    }
                    let Some(h) =
                        MessageHeader::parse(rest).filter(|h| h.kind == MessageKind::Data)
                    else {
                        malformed += 1;
                        at += QUANTUM_BYTES as usize;
                        continue;
                    };
                    let total = message_bytes(h.len as u64) as usize;
                    if rest.len() < total {
                        if total as u64 > self.cfg.stream_buffer_bytes {
                            // It can never fit: skip its header.
                            malformed += 1;
                            at += QUANTUM_BYTES as usize;
                            continue;
                        }
                        break;
                    }
                    out.push(Msg {
                        seq: h.seq,
                        status: h.status,
                        payload: rest[ENTRY_BYTES..ENTRY_BYTES + h.len as usize].to_vec(),
                    });
                    at += total;
                }
            }
        }
        st.buf.drain(..at.min(st.buf.len()));
        if let Some(rx) = st.enso_rx.as_mut() {
            rx.consumed += consumed_pipe;
        }
        self.counters
            .add(DropReason::Malformed.counter(), malformed);
        out
    }

    /// Deliver `msgs`, formed on stream `s`, by its hop.
    pub(super) fn messages_on(&mut self, cx: &mut DeviceCtx<'_>, s: u16, msgs: Vec<Msg>) {
        self.counters.add("messages", msgs.len() as u64);
        for msg in msgs {
            self.deliver(cx, s, msg);
        }
        self.free_pipe(cx, s);
    }

    fn deliver(&mut self, cx: &mut DeviceCtx<'_>, s: u16, msg: Msg) {
        let out_window = self.streams[s as usize]
            .as_ref()
            .and_then(|st| st.out_stream)
            .map(|o| self.window(o));
        let Some(st) = self.streams[s as usize].as_mut() else {
            self.drop_msg(DropReason::NoStream);
            return;
        };
        st.messages_in += 1;
        if msg.status != status::OK {
            self.msg_dropped("drop.upstream_failed");
            return;
        }
        let (action, target, adapter) = (st.action, st.target, st.adapter);
        let result = match action {
            Action::Stream => {
                let h = MessageHeader {
                    kind: MessageKind::Command,
                    status: status::OK,
                    op: st.op,
                    len: msg.payload.len() as u32,
                    seq: msg.seq,
                    param: st.param,
                    out_addr: out_window.unwrap_or(0),
                    state: st.state,
                    cookie: msg.seq,
                };
                st.messages_out += 1;
                cx.dma_write(
                    target,
                    &h.message(&msg.payload),
                    "stream-push",
                    Tag::Push.encode(),
                )
            }
            Action::Frame | Action::AdapterFrame => {
                let mut body = msg.seq.to_le_bytes().to_vec();
                body.extend_from_slice(&msg.payload);
                let Some(mut f) = frame::build(&st.template, &body) else {
                    self.drop_msg(DropReason::Malformed);
                    return;
                };
                st.messages_out += 1;
                if action == Action::AdapterFrame {
                    self.adapter_submit(cx, adapter, s, msg, f);
                    return;
                }
                f.resize(crate::nic::enso::padded_len(f.len() as u64) as usize, 0);
                cx.dma_write(target, &f, "stream-push", Tag::Push.encode())
            }
            Action::Adapter => {
                st.messages_out += 1;
                let data = msg.payload.clone();
                self.adapter_submit(cx, adapter, s, msg, data);
                return;
            }
            Action::Host => {
                let mut h = MessageHeader::data(msg.payload.len() as u32, msg.seq);
                h.cookie = msg.seq;
                let m = h.message(&msg.payload);
                let ring = st.ring_bytes as u64;
                if m.len() as u64 > ring {
                    self.drop_msg(DropReason::Malformed);
                    return;
                }
                // A message never wraps: it starts the ring over instead.
                if st.host_tail + m.len() as u64 > ring {
                    st.host_tail = 0;
                }
                let addr = target + st.host_tail;
                st.host_tail = (st.host_tail + m.len() as u64) % ring;
                st.messages_out += 1;
                cx.dma_write(addr, &m, "stream-push", Tag::Host.encode())
            }
        };
        match result {
            Ok(_) => self.counters.inc("delivered"),
            Err(_) => self.drop_msg(DropReason::DmaError),
        }
    }

    /// Give an Ensō pipe's consumed bytes back to its NIC, in batches.
    fn free_pipe(&mut self, cx: &mut DeviceCtx<'_>, s: u16) {
        let batch = self.cfg.free_batch_bytes;
        let Some(rx) = self.streams[s as usize]
            .as_mut()
            .and_then(|st| st.enso_rx.as_mut())
        else {
            return;
        };
        if rx.consumed - rx.freed < batch {
            return;
        }
        rx.freed = rx.consumed;
        let head = rx.consumed % PIPE_BYTES;
        let nb = rx.notifications % rx.nb_entries as u64;
        let (ph, nh) = (rx.pipe_head, rx.nb_head);
        self.counters.inc("pipe_frees");
        for (addr, v) in [(nh, nb), (ph, head)] {
            if cx
                .dma_write(addr, &v.to_le_bytes(), "nagare-free", Tag::Free.encode())
                .is_err()
            {
                self.counters.inc("dma_errors");
            }
        }
    }

    /// A write into the switch memory.
    fn sram_write(&mut self, cx: &mut DeviceCtx<'_>, from: Requester, off: u64, data: &[u8]) {
        let sinks = self.cfg.max_streams as u64 * SINK_ENTRIES * 64;
        if off < sinks {
            // An Ensō NIC's notification for the pipe of stream `s`.
            let s = (off / (SINK_ENTRIES * 64)) as u16;
            if let Some(rx) = self.streams[s as usize]
                .as_mut()
                .and_then(|st| st.enso_rx.as_mut())
            {
                rx.notifications += data.len() as u64 / 64;
                self.counters.inc("notifications_absorbed");
                self.counters.inc("tlps_accepted");
            } else {
                self.refuse(cx, DropReason::NoStream, from, s as u32, off, data.len());
            }
            return;
        }
        let Some(a) = self.sram_access(cx, from, off, data.len()) else {
            return;
        };
        self.counters.inc("tlps_accepted");
        let end = (off as usize + data.len()).min(self.sram.len());
        self.sram[off as usize..end].copy_from_slice(&data[..end - off as usize]);
        self.adapter_written(cx, a, off);
    }

    /// The adapter whose switch memory `off` is, if `from` is that
    /// adapter's device: only it may read or write there. Anything else is
    /// refused and logged.
    fn sram_access(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        from: Requester,
        off: u64,
        bytes: usize,
    ) -> Option<usize> {
        let slot_bytes = self.cfg.slot_bytes;
        let owner = self
            .adapters
            .iter()
            .position(|a| a.as_ref().is_some_and(|a| a.owns(off, slot_bytes)));
        let Some(a) = owner else {
            self.refuse(cx, DropReason::NoStream, from, u32::MAX, off, bytes);
            return None;
        };
        let dev = self.adapters[a].as_ref().map(|ad| ad.device);
        if !matches!(from, Requester::Device(d) if Some(d.0) == dev) {
            self.refuse(cx, DropReason::AccessDenied, from, u32::MAX, off, bytes);
            return None;
        }
        Some(a)
    }

    fn register_write(&mut self, cx: &mut DeviceCtx<'_>, from: Requester, off: u64, data: &[u8]) {
        match off {
            regs::CONFIG => {
                if !matches!(from, Requester::Cpu { .. }) {
                    self.refuse(
                        cx,
                        DropReason::AccessDenied,
                        from,
                        u32::MAX,
                        off,
                        data.len(),
                    );
                    return;
                }
                self.counters.inc("tlps_accepted");
                let r = ConfigEntry::parse(data).and_then(|e| self.configure(e));
                self.config_status = match r {
                    Ok(()) => 0,
                    Err(e) => {
                        self.counters.inc("config_errors");
                        e.code()
                    }
                };
            }
            regs::PUSH => {
                let Some(cmd) = PushCommand::parse(data) else {
                    self.counters.inc("bad_register_writes");
                    return;
                };
                if !matches!(from, Requester::Cpu { .. }) {
                    let s = cmd.stream.map_or(u32::MAX, u32::from);
                    self.refuse(cx, DropReason::AccessDenied, from, s, off, data.len());
                    return;
                }
                // A push into a stream needs the stream to take the CPU's
                // pushes; a copy (no stream) only the CPU's own write.
                let stream_ok = cmd.stream.is_none_or(|s| {
                    self.streams
                        .get(s as usize)
                        .and_then(Option::as_ref)
                        .is_some_and(|st| st.allows(Some(CPU_WRITER)))
                });
                if !stream_ok {
                    let s = cmd.stream.map_or(u32::MAX, u32::from);
                    self.refuse(cx, DropReason::AccessDenied, from, s, off, data.len());
                    return;
                }
                self.counters.inc("tlps_accepted");
                if cmd.len == 0 || cmd.len as u64 > self.cfg.slot_bytes {
                    self.counters.inc("drop.bad_push");
                    return;
                }
                let id = self.next_push;
                self.next_push += 1;
                self.pushes.insert(id, cmd);
                let tag = Tag::PushRead { id }.encode();
                if cx
                    .dma_read(cmd.src, cmd.len as u64, "nagare-push", tag)
                    .is_err()
                {
                    self.pushes.remove(&id);
                    self.counters.inc("drop.push_fault");
                }
            }
            _ => self.counters.inc("bad_register_writes"),
        }
    }

    fn push_read(&mut self, cx: &mut DeviceCtx<'_>, id: u64, data: &[u8]) {
        let Some(cmd) = self.pushes.remove(&id) else {
            self.counters.inc("unexpected_dma_events");
            return;
        };
        self.counters.inc("pushes");
        match cmd.stream {
            Some(s) => {
                let seq = match self.streams[s as usize].as_mut() {
                    Some(st) => {
                        st.seq += 1;
                        st.seq - 1
                    }
                    None => {
                        self.counters.inc("drop.push_no_stream");
                        return;
                    }
                };
                let msg = Msg {
                    seq,
                    status: status::OK,
                    payload: data.to_vec(),
                };
                self.messages_on(cx, s, vec![msg]);
            }
            None => {
                if cx
                    .dma_write(cmd.dst, data, "nagare-copy", Tag::Host.encode())
                    .is_err()
                {
                    self.counters.inc("drop.push_fault");
                    return;
                }
                self.counters.inc("copies");
            }
        }
        if cmd.done != 0
            && cx
                .dma_write(
                    cmd.done,
                    &1u64.to_le_bytes(),
                    "completion",
                    Tag::PushDone.encode(),
                )
                .is_err()
        {
            self.counters.inc("dma_errors");
        }
    }
}

impl Device for NagareSwitch {
    fn name(&self) -> &'static str {
        "nagare-switch"
    }

    fn bars(&self) -> Vec<BarSpec> {
        vec![
            BarSpec::new(regs::BYTES),
            BarSpec::new(self.cfg.max_streams as u64 * self.cfg.window_bytes),
            BarSpec::new(self.sram.len() as u64),
        ]
    }

    fn bar_write(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        from: Requester,
        b: u8,
        offset: u64,
        data: &[u8],
    ) {
        self.counters.inc("tlps_in");
        match b {
            bar::REGISTERS => self.register_write(cx, from, offset, data),
            bar::STREAMS => {
                let s = offset / self.cfg.window_bytes;
                let within = offset % self.cfg.window_bytes;
                match u16::try_from(s) {
                    Ok(s) if s < self.cfg.max_streams => {
                        self.stream_write(cx, from, s, within, data)
                    }
                    _ => self.refuse(cx, DropReason::NoStream, from, u32::MAX, offset, data.len()),
                }
            }
            bar::SRAM => self.sram_write(cx, from, offset, data),
            _ => self.counters.inc("bad_register_writes"),
        }
    }

    fn bar_read(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        from: Requester,
        b: u8,
        offset: u64,
        out: &mut [u8],
    ) {
        self.counters.inc("tlps_in");
        match b {
            bar::REGISTERS => {
                self.counters.inc("tlps_accepted");
                let v = match offset {
                    regs::CONFIG_STATUS => Some(self.config_status),
                    regs::ERROR_COUNT => Some(self.errors),
                    _ => None,
                };
                if let Some(v) = v {
                    let n = out.len().min(8);
                    out[..n].copy_from_slice(&v.to_le_bytes()[..n]);
                } else if (regs::ERROR_LOG..regs::BYTES).contains(&offset) {
                    let rel = (offset - regs::ERROR_LOG) as usize;
                    let flat: Vec<u8> = self.error_log.iter().flatten().copied().collect();
                    let n = out.len().min(flat.len() - rel);
                    out[..n].copy_from_slice(&flat[rel..rel + n]);
                }
            }
            bar::SRAM => {
                // A legacy device reads its commands and data.
                if self.sram_access(cx, from, offset, out.len()).is_none() {
                    return;
                }
                self.counters.inc("tlps_accepted");
                let start = offset as usize;
                let end = (start + out.len()).min(self.sram.len());
                out[..end - start].copy_from_slice(&self.sram[start..end]);
            }
            _ => self.counters.inc("bad_register_writes"),
        }
    }

    fn bar_read_turnaround_ps(&self) -> u64 {
        self.cfg.sram_read_ps
    }

    fn dma_read_done(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, data: &[u8]) {
        match Tag::decode(tag) {
            Some(Tag::PushRead { id }) => self.push_read(cx, id, data),
            _ => self.counters.inc("unexpected_dma_events"),
        }
    }

    fn dma_fault(&mut self, _cx: &mut DeviceCtx<'_>, tag: u64, _fault: DmaFault) {
        match Tag::decode(tag) {
            Some(Tag::PushRead { id }) => {
                self.pushes.remove(&id);
                self.counters.inc("drop.push_fault");
            }
            _ => self.counters.inc("dma_faults"),
        }
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}
