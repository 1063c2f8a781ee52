//! The Ensō NIC (Ensō paper §3.2): receive data lands in *Ensō Pipes*,
//! 2 MiB ring buffers of real bytes in host hugepages, and the NIC tells
//! software how far each pipe has been filled through *notification
//! buffers* (one per software thread) instead of per-packet descriptors.
//!
//! The NIC is a [`Device`]: it holds no simulator and touches host memory
//! only by DMA through its [`DeviceCtx`], by bus address (an IOVA when the
//! IOMMU is on), and software drives its data plane only through 8-byte
//! writes to BAR0 ([`regs`]). Pipes and notification buffers are set up by
//! the OS or library through the untimed control-plane methods.
//!
//! Receive (`rx`). A frame from the Ethernet port is steered by a flow
//! table (5-tuple → pipe) or, if its flow is not bound, to a fallback pipe
//! chosen by hash or round robin ([`steering`]). Its bytes, padded with
//! zeros to a multiple of 64 B (the pipe's quantum, [`layout`]), are
//! appended at the pipe's tail by DMA writes of at most
//! `max_dma_burst_bytes` (the preset's), attributed to `"packet-data"`,
//! through an RX FIFO that drops what the PCIe link cannot take in time. A
//! notification — a 64-byte entry naming the pipe and its new tail — is
//! then DMA-written
//! into the pipe's notification buffer (`"notification"`), behind the data
//! on the same posted-write path, so software never sees a tail before the
//! bytes under it; at one of two paces ([`NotificationPolicy`]):
//! * per packet: one notification per appended frame (the paper's baseline);
//! * reactive: at most one outstanding notification per pipe. Software's
//!   head update (a register write) re-arms the pipe, and if data arrived
//!   since the last notification a new one is sent at once.
//!
//! Either way software may *prefetch* a notification: a register write
//! that the NIC answers with a notification when the pipe holds data
//! software has not freed, and ignores when the pipe is empty.
//!
//! Transmit (`tx`) mirrors the real protocol: software writes a 64-byte
//! TX notification (signal, bus address, length) into the TX half of its
//! notification buffer and rings a doorbell with the new TX tail.
//! The NIC DMA-reads the new notifications, then the data they point to,
//! parses the byte stream into frames (each frame starts on a 64-byte
//! boundary, its length taken from the IPv4 header, as in a pipe), sends
//! them on its port, and completes each notification by DMA-writing it back
//! with the signal cleared, once all its frames have left. Because TX data
//! is named by address, an RX pipe's bytes can be sent back from where they
//! sit (an RX/TX pipe): software frees that RX space only once the TX
//! notification completes. When the port is full the NIC holds the frame
//! and resumes once the port has room: transmit never drops for lack of
//! room.
//!
//! Push (an extension for Nagare, off unless configured): frames written
//! into BAR1, the TX push window, are sent like TX pipe data but with no
//! notification to fetch or complete.
//!
//! Faults. A DMA the fabric refuses at once (`DmaError`) is counted in
//! `dma_errors` and its work undone or dropped; one that faults on the way
//! (the IOMMU refused it) moved no byte. A faulting read is a TX
//! notification that cannot be served (`drop.tx_bad_notification`); a
//! faulting posted write is counted in `dma_faults.*`, beside the frame or
//! notification the NIC had already counted, as a real NIC never learns
//! that its posted write was discarded.
//!
//! Invariants, tested:
//! * conservation: `rx_frames == appended + Σ` of the receive drops
//!   ([`RX_DROPS`]), and on transmit every frame parsed from TX data is
//!   counted in `tx_frames` or `drop.tx_*` once it has left or been
//!   refused;
//! * the NIC never writes into pipe space software has not freed: a pipe
//!   holds at most `PIPE_BYTES - 64` bytes (one quantum stays free so a full
//!   ring is distinguishable from an empty one, as in a classic ring);
//! * in reactive mode a pipe has at most one notification outstanding
//!   unless software asked for more with prefetch requests;
//! * every TX notification the doorbell hands over is completed, even one
//!   that is malformed or whose reads fault, so software never waits forever;
//! * bad configuration is an error, bad register writes and refused or
//!   faulting DMA are counted, never panics.
//!
//! Simplifications, each documented where it acts: the NIC's own pipeline
//! adds no latency beyond the fabric's (its datapath is assumed to keep up
//! with 100 Gb/s, as the paper's FPGA design does, §3.3.1); TX
//! notifications are served one at a time in the order their doorbells
//! arrived, across all notification buffers (one transmit engine in front
//! of one port).

pub mod layout;
pub mod regs;
mod rx;
pub mod steering;
mod tx;

use nextio_engine::Counters;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::device::{BarSpec, Device, DeviceCtx, DmaFault, Requester};
use crate::packet::{FlowKey, Frame, MAX_FRAME_BYTES};

pub use layout::{
    LINE_BYTES, NOTIFICATION_BYTES, PIPE_BYTES, RxNotification, TxNotification,
    frame_len_from_header, padded_len,
};
pub use regs::{REGISTER_BYTES, REGISTER_PAGE_BYTES, Register};
pub use rx::RX_DROPS;
pub use steering::FallbackPolicy;

/// Most register pages (pipes plus notification buffers) a NIC may have:
/// a 4 GiB BAR. An assumption that only bounds what a configuration can
/// ask of the MMIO window; the Ensō hardware has thousands of pipes.
const MAX_REGISTER_PAGES: u64 = 1 << 20;

/// When the NIC sends RX notifications.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NotificationPolicy {
    /// One per appended frame.
    PerPacket,
    /// At most one outstanding per pipe; re-armed by a head update.
    #[default]
    Reactive,
}

/// Static configuration of the NIC: a preset's `[nic.enso]` (where each
/// value's source is) and what the host builder chooses: the notification
/// and steering policies and the push window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsoNicConfig {
    #[serde(skip)]
    pub policy: NotificationPolicy,
    #[serde(skip)]
    pub fallback: FallbackPolicy,
    /// Bytes of packet data that may wait for the PCIe link; more are dropped.
    pub rx_fifo_bytes: u64,
    /// Most pipes the NIC keeps state for.
    pub max_pipes: usize,
    /// Most notification buffers (threads).
    pub max_notification_buffers: usize,
    /// Bytes of the TX push window (BAR1), 0 for none: a producer (a
    /// Nagare switch, thesis §4.3) pushes frames into it by DMA writes, in
    /// the byte format of a TX pipe, and the NIC sends them with no
    /// notification, doorbell or read. An extension of this model, off by
    /// default; the Ensō hardware has no such window.
    #[serde(skip)]
    pub push_window_bytes: u64,
    /// Largest DMA write the NIC issues for packet data; longer appends
    /// are split. A multiple of the pipes' 64-byte quantum.
    pub max_dma_burst_bytes: u64,
}

impl Default for EnsoNicConfig {
    /// The root preset's Ensō NIC, reactive notifications, flows spread by
    /// hash.
    fn default() -> Self {
        nextio_presets::root_section("nic.enso")
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EnsoNicError {
    #[error("invalid Ensō NIC configuration: {0}")]
    Config(String),
    #[error("no such pipe {0}")]
    NoPipe(usize),
    #[error("no such notification buffer {0}")]
    NoNotificationBuffer(usize),
    #[error("region at {base:#x} of {len} B does not fit: {why}")]
    BadRegion {
        base: u64,
        len: u64,
        why: &'static str,
    },
    #[error("too many {0}")]
    TooMany(&'static str),
}

/// A registered pipe: its id (which names its registers) and its ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipeInfo {
    pub id: usize,
    /// Bus address of the ring.
    pub ring: u64,
}

/// What the NIC knows of one pipe.
struct Pipe {
    ring: u64,
    nb: usize,
    /// Byte offsets within the ring.
    tail: u64,
    head: u64,
    outstanding: bool,
    last_notified_tail: u64,
}

impl Pipe {
    fn used_bytes(&self) -> u64 {
        (self.tail + PIPE_BYTES - self.head) % PIPE_BYTES
    }
}

/// What the NIC knows of one notification buffer.
struct NotificationBuffer {
    rx_ring: u64,
    rx_entries: u32,
    /// Next RX slot the NIC writes, and the head software last reported.
    rx_tail: u32,
    rx_head: u32,
    tx_ring: u64,
    tx_entries: u32,
    /// Next TX notification the NIC fetches.
    tx_fetched: u32,
    /// Bytes of a frame cut by the end of one TX transfer, awaiting the rest.
    tx_partial: Vec<u8>,
}

impl NotificationBuffer {
    /// Whether one more RX notification would overwrite one software has
    /// not consumed (one slot stays free, as in a classic ring).
    fn rx_full(&self) -> bool {
        (self.rx_tail + 1) % self.rx_entries == self.rx_head
    }
}

/// What a DMA is for, carried in its tag so a completion or fault finds
/// its way back. Encoded as a kind in the top bits and an index below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    /// Packet data appended to pipe `pipe`.
    RxData { pipe: usize },
    /// An RX notification into buffer `nb`.
    RxNotification { nb: usize },
    /// The TX notifications of the transmit jobs from `first` on.
    TxNotifications { first: u64 },
    /// The data of transmit job `job`.
    TxData { job: u64 },
    /// The completion of a TX notification of buffer `nb`.
    TxCompletion { nb: usize },
}

impl Tag {
    // The kind takes the top 4 bits: five kinds, and 60 bits of index are
    // more than any pipe, buffer or job count reaches.
    const KIND_SHIFT: u32 = 60;
    const INDEX_MASK: u64 = (1 << Self::KIND_SHIFT) - 1;

    fn encode(self) -> u64 {
        let (kind, index) = match self {
            Tag::RxData { pipe } => (0, pipe as u64),
            Tag::RxNotification { nb } => (1, nb as u64),
            Tag::TxNotifications { first } => (2, first),
            Tag::TxData { job } => (3, job),
            Tag::TxCompletion { nb } => (4, nb as u64),
        };
        (kind << Self::KIND_SHIFT) | (index & Self::INDEX_MASK)
    }

    fn decode(tag: u64) -> Option<Tag> {
        let index = tag & Self::INDEX_MASK;
        let small = usize::try_from(index).ok();
        match tag >> Self::KIND_SHIFT {
            0 => small.map(|pipe| Tag::RxData { pipe }),
            1 => small.map(|nb| Tag::RxNotification { nb }),
            2 => Some(Tag::TxNotifications { first: index }),
            3 => Some(Tag::TxData { job: index }),
            4 => small.map(|nb| Tag::TxCompletion { nb }),
            _ => None,
        }
    }
}

/// The Ensō NIC.
pub struct EnsoNic {
    cfg: EnsoNicConfig,
    pipes: Vec<Pipe>,
    nbs: Vec<NotificationBuffer>,
    steering: steering::Steering,
    fifo: rx::RxFifo,
    /// Reused buffer for padded frames (no per-packet allocation).
    scratch: Vec<u8>,
    tx: tx::TxEngine,
    counters: Counters,
}

impl EnsoNic {
    /// A NIC with no pipes or notification buffers yet; software registers
    /// them once the NIC is attached.
    pub fn new(cfg: EnsoNicConfig) -> Result<EnsoNic, EnsoNicError> {
        if cfg.rx_fifo_bytes < padded_len(MAX_FRAME_BYTES as u64) {
            return Err(EnsoNicError::Config(format!(
                "RX FIFO of {} B cannot hold one maximum-size frame",
                cfg.rx_fifo_bytes
            )));
        }
        if cfg.max_dma_burst_bytes == 0
            || !cfg.max_dma_burst_bytes.is_multiple_of(LINE_BYTES)
            || cfg.max_dma_burst_bytes > PIPE_BYTES
        {
            return Err(EnsoNicError::Config(format!(
                "a DMA burst of {} B is not a multiple of 64 B up to a pipe's 2 MiB",
                cfg.max_dma_burst_bytes
            )));
        }
        if cfg.max_pipes == 0 || cfg.max_notification_buffers == 0 {
            return Err(EnsoNicError::Config(
                "needs at least one pipe and one notification buffer".into(),
            ));
        }
        let pages = (cfg.max_pipes as u64).saturating_add(cfg.max_notification_buffers as u64);
        if pages > MAX_REGISTER_PAGES {
            return Err(EnsoNicError::Config(format!(
                "{pages} register pages exceed the {MAX_REGISTER_PAGES} a BAR may hold"
            )));
        }
        Ok(EnsoNic {
            fifo: rx::RxFifo::new(cfg.rx_fifo_bytes),
            steering: steering::Steering::new(cfg.fallback),
            cfg,
            pipes: Vec::new(),
            nbs: Vec::new(),
            scratch: Vec::with_capacity(2048),
            tx: tx::TxEngine::default(),
            counters: Counters::new(),
        })
    }

    pub fn config(&self) -> &EnsoNicConfig {
        &self.cfg
    }

    pub fn policy(&self) -> NotificationPolicy {
        self.cfg.policy
    }

    /// BAR0-relative offset of `reg` on this NIC.
    pub fn register_offset(&self, reg: Register) -> u64 {
        regs::offset(reg, self.cfg.max_pipes)
    }

    /// TX notifications handed over by doorbells and not yet completed.
    pub fn tx_pending(&self) -> usize {
        self.tx.pending()
    }

    /// Register a notification buffer: an RX ring and a TX ring of 64-byte
    /// entries at bus addresses `rx_ring` and `tx_ring`. Returns its id.
    /// Software learns of the NIC's writes into either ring by watching
    /// the memory.
    pub fn register_notification_buffer(
        &mut self,
        rx_ring: u64,
        rx_entries: u32,
        tx_ring: u64,
        tx_entries: u32,
    ) -> Result<usize, EnsoNicError> {
        for (base, entries) in [(rx_ring, rx_entries), (tx_ring, tx_entries)] {
            let len = entries as u64 * NOTIFICATION_BYTES;
            let bad = |why| EnsoNicError::BadRegion { base, len, why };
            if entries < 2 {
                return Err(bad("a ring needs at least two entries"));
            }
            if !base.is_multiple_of(NOTIFICATION_BYTES) {
                return Err(bad("a ring must be line aligned"));
            }
            if base.checked_add(len).is_none() {
                return Err(bad("a ring must fit in the bus address space"));
            }
        }
        if self.nbs.len() >= self.cfg.max_notification_buffers {
            return Err(EnsoNicError::TooMany("notification buffers"));
        }
        self.nbs.push(NotificationBuffer {
            rx_ring,
            rx_entries,
            rx_tail: 0,
            rx_head: 0,
            tx_ring,
            tx_entries,
            tx_fetched: 0,
            tx_partial: Vec::new(),
        });
        Ok(self.nbs.len() - 1)
    }

    /// Register a pipe whose ring of [`PIPE_BYTES`] is at bus address
    /// `ring` (line aligned), notifying through notification buffer `nb`.
    pub fn register_pipe(&mut self, ring: u64, nb: usize) -> Result<PipeInfo, EnsoNicError> {
        let bad = |why| EnsoNicError::BadRegion {
            base: ring,
            len: PIPE_BYTES,
            why,
        };
        if !ring.is_multiple_of(LINE_BYTES) {
            return Err(bad("a pipe must be line aligned"));
        }
        if ring.checked_add(PIPE_BYTES).is_none() {
            return Err(bad("a pipe must fit in the bus address space"));
        }
        if nb >= self.nbs.len() {
            return Err(EnsoNicError::NoNotificationBuffer(nb));
        }
        if self.pipes.len() >= self.cfg.max_pipes {
            return Err(EnsoNicError::TooMany("pipes"));
        }
        self.pipes.push(Pipe {
            ring,
            nb,
            tail: 0,
            head: 0,
            outstanding: false,
            last_notified_tail: 0,
        });
        Ok(PipeInfo {
            id: self.pipes.len() - 1,
            ring,
        })
    }

    /// Steer `flow` to `pipe` (Ensō's `RxPipe::Bind`).
    pub fn bind_flow(&mut self, flow: FlowKey, pipe: usize) -> Result<(), EnsoNicError> {
        if pipe >= self.pipes.len() {
            return Err(EnsoNicError::NoPipe(pipe));
        }
        self.steering.bind(flow, pipe);
        Ok(())
    }

    /// Make `pipe` one of the pipes unmatched flows are spread over.
    pub fn add_fallback_pipe(&mut self, pipe: usize) -> Result<(), EnsoNicError> {
        if pipe >= self.pipes.len() {
            return Err(EnsoNicError::NoPipe(pipe));
        }
        self.steering.add_fallback(pipe);
        Ok(())
    }

    /// The effect of `value` written to `reg`, now.
    fn register_written(&mut self, cx: &mut DeviceCtx<'_>, reg: Register, value: u64) {
        match reg {
            Register::PipeHead(p) => self.head_written(cx, p, value),
            Register::PipePrefetch(p) => self.prefetch(cx, p),
            Register::RxNotificationHead(n) => match self.nbs.get_mut(n) {
                Some(nb) if value < nb.rx_entries as u64 => nb.rx_head = value as u32,
                _ => self.counters.inc("bad_register_writes"),
            },
            Register::TxNotificationTail(n) => self.tx_doorbell(cx, n, value),
        }
    }
}

impl Device for EnsoNic {
    fn name(&self) -> &'static str {
        "enso-nic"
    }

    fn bars(&self) -> Vec<BarSpec> {
        let mut bars = vec![BarSpec::new(regs::register_bytes(
            self.cfg.max_pipes,
            self.cfg.max_notification_buffers,
        ))];
        if self.cfg.push_window_bytes > 0 {
            bars.push(BarSpec::new(self.cfg.push_window_bytes));
        }
        bars
    }

    fn ports(&self) -> usize {
        1
    }

    fn bar_write(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        _from: Requester,
        bar: u8,
        offset: u64,
        data: &[u8],
    ) {
        if bar == 1 && self.cfg.push_window_bytes > 0 {
            self.tx_pushed(cx, data);
            return;
        }
        let reg = match bar {
            0 => regs::decode(offset, self.cfg.max_pipes),
            _ => None,
        };
        let value = <[u8; REGISTER_BYTES]>::try_from(data)
            .ok()
            .map(u64::from_le_bytes);
        match (reg, value) {
            (Some(reg), Some(value)) => self.register_written(cx, reg, value),
            _ => self.counters.inc("bad_register_writes"),
        }
    }

    /// The registers are write-only (software keeps its own copy of every
    /// head and tail, as Ensō's library does): reads return zeros.
    fn bar_read(
        &mut self,
        _cx: &mut DeviceCtx<'_>,
        _from: Requester,
        _bar: u8,
        _offset: u64,
        _out: &mut [u8],
    ) {
    }

    fn dma_read_done(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, data: &[u8]) {
        match Tag::decode(tag) {
            Some(Tag::TxNotifications { first }) => self.tx_notifications_fetched(cx, first, data),
            Some(Tag::TxData { job }) => self.tx_data_read(cx, job, data),
            _ => self.counters.inc("unexpected_dma_events"),
        }
    }

    fn dma_fault(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, _fault: DmaFault) {
        match Tag::decode(tag) {
            // A posted write is gone once issued: the frame it carried was
            // counted as appended, the fault is counted beside it.
            Some(Tag::RxData { .. }) => self.counters.inc("dma_faults.rx_data"),
            Some(Tag::RxNotification { .. }) => self.counters.inc("dma_faults.rx_notification"),
            Some(Tag::TxCompletion { .. }) => self.counters.inc("dma_faults.tx_completion"),
            Some(Tag::TxNotifications { first }) => self.tx_fetch_faulted(cx, first),
            Some(Tag::TxData { job }) => self.tx_data_faulted(cx, job),
            None => self.counters.inc("unexpected_dma_events"),
        }
    }

    fn frame(&mut self, cx: &mut DeviceCtx<'_>, _port: usize, frame: Frame) {
        self.receive(cx, &frame.bytes);
    }

    fn port_ready(&mut self, cx: &mut DeviceCtx<'_>, _port: usize) {
        self.tx_port_ready(cx);
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for t in [
            Tag::RxData { pipe: 1023 },
            Tag::RxNotification { nb: 5 },
            Tag::TxNotifications { first: 1 << 40 },
            Tag::TxData { job: 7 },
            Tag::TxCompletion { nb: 0 },
        ] {
            assert_eq!(Tag::decode(t.encode()), Some(t));
        }
        assert_eq!(Tag::decode(u64::MAX), None);
    }

    #[test]
    fn bad_configuration_is_an_error() {
        let bad = |cfg: EnsoNicConfig| matches!(EnsoNic::new(cfg), Err(EnsoNicError::Config(_)));
        assert!(bad(EnsoNicConfig {
            rx_fifo_bytes: 1024,
            ..EnsoNicConfig::default()
        }));
        assert!(bad(EnsoNicConfig {
            max_pipes: 0,
            ..EnsoNicConfig::default()
        }));
        assert!(bad(EnsoNicConfig {
            max_notification_buffers: 0,
            ..EnsoNicConfig::default()
        }));
        assert!(bad(EnsoNicConfig {
            max_pipes: usize::MAX,
            ..EnsoNicConfig::default()
        }));
        let nic = EnsoNic::new(EnsoNicConfig::default()).unwrap();
        assert_eq!(nic.name(), "enso-nic");
        assert_eq!(nic.ports(), 1);
        // 1024 + 128 register pages, rounded up to a power of two.
        assert_eq!(nic.bars(), vec![BarSpec { bytes: 8 << 20 }]);
    }

    #[test]
    fn bad_regions_are_refused() {
        let mut nic = EnsoNic::new(EnsoNicConfig {
            max_pipes: 1,
            max_notification_buffers: 1,
            ..EnsoNicConfig::default()
        })
        .unwrap();
        assert!(matches!(
            nic.register_notification_buffer(0, 1, 4096, 64),
            Err(EnsoNicError::BadRegion { .. })
        ));
        assert!(matches!(
            nic.register_notification_buffer(32, 64, 4096, 64),
            Err(EnsoNicError::BadRegion { .. })
        ));
        assert!(matches!(
            nic.register_notification_buffer(0, 64, u64::MAX - 63, 64),
            Err(EnsoNicError::BadRegion { .. })
        ));
        assert_eq!(
            nic.register_pipe(1 << 21, 0),
            Err(EnsoNicError::NoNotificationBuffer(0))
        );
        let nb = nic.register_notification_buffer(0, 64, 4096, 64).unwrap();
        assert_eq!(
            nic.register_notification_buffer(0, 64, 4096, 64),
            Err(EnsoNicError::TooMany("notification buffers"))
        );
        assert!(matches!(
            nic.register_pipe(100, nb),
            Err(EnsoNicError::BadRegion { .. })
        ));
        assert!(matches!(
            nic.register_pipe(u64::MAX - 63, nb),
            Err(EnsoNicError::BadRegion { .. })
        ));
        let p = nic.register_pipe(1 << 21, nb).unwrap();
        assert_eq!(
            p,
            PipeInfo {
                id: 0,
                ring: 1 << 21
            }
        );
        assert_eq!(
            nic.register_pipe(2 << 21, nb),
            Err(EnsoNicError::TooMany("pipes"))
        );
        assert_eq!(
            nic.bind_flow(crate::trafficgen::synthetic_flow(0), 1),
            Err(EnsoNicError::NoPipe(1))
        );
        assert_eq!(nic.add_fallback_pipe(3), Err(EnsoNicError::NoPipe(3)));
    }
}
