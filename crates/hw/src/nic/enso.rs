//! The Ensō NIC (Ensō paper §3.2): receive data lands in *Ensō Pipes*,
//! 2 MiB ring buffers of real bytes in host hugepages, and the NIC tells
//! software how far each pipe has been filled through *notification
//! buffers* (one per software thread) instead of per-packet descriptors.
//!
//! Receive. A frame from the wire is steered by a flow table (5-tuple →
//! pipe) or, if its flow is not bound, to a fallback pipe chosen by hash or
//! round robin. Its bytes, padded with zeros to a multiple of 64 B (the
//! pipe's quantum), are appended at the pipe's tail by DMA writes of at most
//! [`MAX_DMA_BURST_BYTES`], attributed to `"packet-data"`. A notification —
//! a 64-byte entry naming the pipe and its new tail — is then DMA-written
//! into the pipe's notification buffer (`"notification"`), at one of two
//! paces ([`NotificationPolicy`]):
//! * per packet: one notification per appended frame (the paper's baseline);
//! * reactive: at most one outstanding notification per pipe. Software's
//!   head update (an MMIO write) re-arms the pipe, and if data arrived since
//!   the last notification a new one is sent at once.
//!
//! Either way software may *prefetch* a notification: an MMIO request that
//! the NIC answers with a notification when the pipe holds data software has
//! not freed, and ignores when the pipe is empty.
//!
//! Transmit mirrors the real protocol: software writes a 64-byte TX
//! notification (signal, physical address, length) into the TX half of its
//! notification buffer and rings a doorbell with the new TX tail. The NIC
//! DMA-reads the new notifications, then the data they point to, parses the
//! byte stream into frames (each frame starts on a 64-byte boundary, its
//! length taken from the IPv4 header, as in a pipe), hands them to the wire,
//! and completes each notification by DMA-writing it back with the signal
//! cleared. Because TX data is named by address, an RX pipe's bytes can be
//! sent back from where they sit (an RX/TX pipe): software frees that RX
//! space only once the TX notification completes.
//!
//! Invariants, tested:
//! * conservation: `rx_frames == appended + Σ drop.*`, and on transmit every
//!   frame parsed from TX data is counted in `tx_frames` or `drop.tx_*`;
//! * the NIC never writes into pipe space software has not freed: a pipe
//!   holds at most `PIPE_BYTES - 64` bytes (one quantum stays free so a full
//!   ring is distinguishable from an empty one, as in a classic ring);
//! * in reactive mode a pipe has at most one notification outstanding
//!   unless software asked for more with prefetch requests;
//! * bad configuration and bad register writes are errors or counted, never
//!   panics.
//!
//! Simplifications, documented where they act: packet bytes are written into
//! physical memory when their DMA is issued (software cannot see them before
//! the notification naming them, which travels behind them on the same
//! posted-write FIFO and is made visible only when it arrives); the NIC's
//! own pipeline adds no latency beyond the PCIe link's (its datapath is
//! assumed to keep up with 100 Gb/s, as the paper's FPGA design does, §3.3.1).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use nextio_engine::{Counters, Duration, Mailbox, Notify, Sim, Time};
use thiserror::Error;

use crate::ethernet::Wire;
use crate::host::SharedMemory;
use crate::mem::{PhysAddr, Region};
use crate::packet::{FCS_BYTES, FlowKey, Frame, MIN_FRAME_BYTES};
use crate::pcie::PcieLink;

/// Bytes of one Ensō Pipe's ring: one 2 MiB hugepage (Ensō software
/// default: 32768 lines of 64 B per pipe).
pub const PIPE_BYTES: u64 = 2 << 20;
/// The quantum data is appended in: one 64-byte line (the Ensō NIC's
/// 512-bit datapath word, Ensō paper §3.2 "flits"); frames are padded to it.
pub const LINE_BYTES: u64 = 64;
/// Largest DMA write burst the NIC issues for packet data (brief of this
/// model, after the Ensō hardware's 512-byte DMA bursts); longer appends are
/// split.
pub const MAX_DMA_BURST_BYTES: u64 = 512;
/// Size of one RX or TX notification (Ensō software: 64-byte
/// `RxNotification`/`TxNotification`, one cache line).
pub const NOTIFICATION_BYTES: u64 = 64;
/// Default entries per notification ring (Ensō software default
/// `kNotificationBufSize` = 16384).
pub const DEFAULT_NOTIFICATION_ENTRIES: u32 = 16384;
/// Default RX FIFO in front of the PCIe link: model choice (tens of KiB of
/// on-chip buffer, as an FPGA NIC has), not fitted.
pub const DEFAULT_RX_FIFO_BYTES: u64 = 64 << 10;
/// Base of the NIC's register BAR. Below 4 GiB so it works with 32-bit
/// PCIe addressing too; model choice.
pub const DEFAULT_MMIO_BASE: u64 = 0xE000_0000;
/// Each pipe's and each notification buffer's registers sit on their own
/// 4 KiB page, so they can be mapped to one process only (as in Ensō).
pub const REGISTER_PAGE_BYTES: u64 = 4096;

// Layout of a notification: little-endian u64 words.
/// Word 0 of both kinds: non-zero while the entry is valid (RX: written by
/// the NIC, cleared by software; TX: set by software, cleared by the NIC).
pub const NOTIF_SIGNAL_OFFSET: u64 = 0;
/// RX word 1: the pipe id.
pub const NOTIF_PIPE_OFFSET: u64 = 8;
/// RX word 2: the pipe's new tail, a byte offset within the ring.
pub const NOTIF_TAIL_OFFSET: u64 = 16;
/// TX word 1: physical address of the data to send.
pub const TX_NOTIF_ADDR_OFFSET: u64 = 8;
/// TX word 2: length of the data in bytes.
pub const TX_NOTIF_LEN_OFFSET: u64 = 16;

/// When the NIC sends RX notifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationPolicy {
    /// One per appended frame.
    PerPacket,
    /// At most one outstanding per pipe; re-armed by a head update.
    Reactive,
}

/// How an unmatched flow picks among the fallback pipes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackPolicy {
    /// A hash of the 5-tuple (a flow always lands in the same pipe).
    Hash,
    /// Each unmatched frame goes to the next fallback pipe in turn.
    RoundRobin,
}

/// Static configuration of the NIC.
#[derive(Clone, Debug)]
pub struct EnsoNicConfig {
    pub policy: NotificationPolicy,
    pub fallback: FallbackPolicy,
    /// Bytes of packet data that may wait for the PCIe link; more are dropped.
    pub rx_fifo_bytes: u64,
    pub mmio_base: u64,
    /// Most pipes the NIC keeps state for.
    pub max_pipes: usize,
    /// Most notification buffers (threads).
    pub max_notification_buffers: usize,
}

impl Default for EnsoNicConfig {
    fn default() -> Self {
        EnsoNicConfig {
            policy: NotificationPolicy::Reactive,
            fallback: FallbackPolicy::Hash,
            rx_fifo_bytes: DEFAULT_RX_FIFO_BYTES,
            mmio_base: DEFAULT_MMIO_BASE,
            // Model choice: enough for any host built here; the Ensō
            // hardware supports thousands.
            max_pipes: 1024,
            max_notification_buffers: 128,
        }
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

/// A register write from software, decoded from its MMIO address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    /// A pipe's head (byte offset within its ring): frees space, re-arms.
    PipeHead(usize),
    /// Ask for a notification for a pipe if it holds unfreed data.
    PipePrefetch(usize),
    /// How far software has consumed a notification buffer's RX ring.
    RxNotificationHead(usize),
    /// The new tail of a notification buffer's TX ring (the TX doorbell).
    TxNotificationTail(usize),
}

// Register offsets within a register page.
const REG_PIPE_HEAD: u64 = 0;
const REG_PIPE_PREFETCH: u64 = 8;
const REG_NB_RX_HEAD: u64 = 0;
const REG_NB_TX_TAIL: u64 = 8;

struct Pipe {
    ring: PhysAddr,
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

struct NotificationBuffer {
    rx_ring: PhysAddr,
    rx_entries: u32,
    /// Next RX slot the NIC writes, and the head software last reported.
    rx_tail: u32,
    rx_head: u32,
    tx_ring: PhysAddr,
    tx_entries: u32,
    /// Next TX notification the NIC fetches.
    tx_fetched: u32,
    /// Bytes of a frame cut by the end of one TX transfer, awaiting the rest.
    tx_partial: Vec<u8>,
    notify: Rc<Notify>,
}

/// Data the NIC has read for one TX notification.
struct TxChunk {
    nb: usize,
    slot: u32,
    data: Vec<u8>,
}

struct State {
    cfg: EnsoNicConfig,
    pipes: Vec<Pipe>,
    nbs: Vec<NotificationBuffer>,
    flows: HashMap<FlowKey, usize>,
    fallback: Vec<usize>,
    round_robin: usize,
    /// Packet-data DMA still to leave the NIC: (time its last TLP is sent, bytes).
    rx_fifo: VecDeque<(Time, u64)>,
    rx_fifo_bytes: u64,
    /// Reused buffer for padded frames (no per-packet allocation).
    scratch: Vec<u8>,
}

/// The Ensō NIC. Shared (`Rc`) between its receive task, the host's
/// software (which rings its registers) and scheduled DMA completions.
pub struct EnsoNic {
    sim: Sim,
    mem: SharedMemory,
    pcie: Rc<RefCell<PcieLink>>,
    counters: Rc<RefCell<Counters>>,
    state: RefCell<State>,
    tx_data: Rc<Mailbox<TxChunk>>,
}

/// Where a pipe's registers and ring are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipeInfo {
    pub id: usize,
    pub ring: PhysAddr,
}

fn u64_at(b: &[u8], off: u64) -> u64 {
    let o = off as usize;
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(w)
}

/// Stored length (no FCS) of the frame starting at `b`, from its IPv4
/// header — how both the NIC's TX parser and the library walk a pipe.
/// `None` if `b` does not start with an IPv4 frame header.
pub fn frame_len_from_header(b: &[u8]) -> Option<usize> {
    if b.len() < 18 || b[12] != 0x08 || b[13] != 0x00 {
        return None;
    }
    let ip_total = u16::from_be_bytes([b[16], b[17]]) as usize;
    if ip_total < 20 {
        return None;
    }
    Some((14 + ip_total).max(MIN_FRAME_BYTES - FCS_BYTES))
}

/// Bytes a frame of `stored` bytes occupies in a pipe.
pub fn padded_len(stored: u64) -> u64 {
    stored.div_ceil(LINE_BYTES) * LINE_BYTES
}

/// The 5-tuple of an IPv4/UDP frame, read at fixed offsets as a parser
/// in the NIC's pipeline would (checksums are not checked on this path).
fn flow_of(b: &[u8]) -> Option<FlowKey> {
    if b.len() < 14 + 20 + 8 || b[12] != 0x08 || b[13] != 0x00 || b[14] >> 4 != 4 {
        return None;
    }
    let ihl = (b[14] & 0x0f) as usize * 4;
    if b[23] != FlowKey::PROTOCOL || ihl < 20 || b.len() < 14 + ihl + 8 {
        return None;
    }
    let l4 = 14 + ihl;
    Some(FlowKey {
        src_ip: [b[26], b[27], b[28], b[29]].into(),
        dst_ip: [b[30], b[31], b[32], b[33]].into(),
        src_port: u16::from_be_bytes([b[l4], b[l4 + 1]]),
        dst_port: u16::from_be_bytes([b[l4 + 2], b[l4 + 3]]),
    })
}

/// A fixed, seedless hash of a 5-tuple (FNV-1a over its bytes, then the
/// SplitMix64 finaliser so every output bit depends on every input bit —
/// plain FNV's low bit is a parity of the bytes' low bits), so the same flow
/// always lands in the same fallback pipe on every run.
fn flow_hash(f: &FlowKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = f
        .src_ip
        .octets()
        .into_iter()
        .chain(f.dst_ip.octets())
        .chain(f.src_port.to_be_bytes())
        .chain(f.dst_port.to_be_bytes())
        .chain([FlowKey::PROTOCOL]);
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl EnsoNic {
    /// A NIC receiving from `from_wire` and transmitting on `to_wire`.
    /// Pipes and notification buffers are registered afterwards by software.
    pub fn new(
        sim: &Sim,
        cfg: EnsoNicConfig,
        mem: SharedMemory,
        pcie: Rc<RefCell<PcieLink>>,
        from_wire: Rc<Mailbox<Frame>>,
        to_wire: Rc<Wire>,
    ) -> Result<Rc<EnsoNic>, EnsoNicError> {
        if cfg.rx_fifo_bytes < padded_len(crate::packet::MAX_FRAME_BYTES as u64) {
            return Err(EnsoNicError::Config(format!(
                "RX FIFO of {} B cannot hold one maximum-size frame",
                cfg.rx_fifo_bytes
            )));
        }
        if cfg.max_pipes == 0 || cfg.max_notification_buffers == 0 {
            return Err(EnsoNicError::Config(
                "needs at least one pipe and one notification buffer".into(),
            ));
        }
        if !cfg.mmio_base.is_multiple_of(REGISTER_PAGE_BYTES) {
            return Err(EnsoNicError::Config(
                "MMIO base must be page aligned".into(),
            ));
        }
        let nic = Rc::new(EnsoNic {
            sim: sim.clone(),
            mem,
            pcie,
            counters: Rc::new(RefCell::new(Counters::new())),
            state: RefCell::new(State {
                cfg,
                pipes: Vec::new(),
                nbs: Vec::new(),
                flows: HashMap::new(),
                fallback: Vec::new(),
                round_robin: 0,
                rx_fifo: VecDeque::new(),
                rx_fifo_bytes: 0,
                scratch: Vec::with_capacity(2048),
            }),
            tx_data: Rc::new(Mailbox::new(sim)),
        });
        let n = nic.clone();
        sim.spawn(async move {
            loop {
                let frame = from_wire.recv().await;
                n.receive(&frame.bytes);
            }
        });
        let n = nic.clone();
        sim.spawn(async move {
            loop {
                let chunk = n.tx_data.recv().await;
                n.transmit_chunk(chunk, &to_wire).await;
            }
        });
        Ok(nic)
    }

    /// The NIC's counters (`rx_frames`, `appended`, `tx_frames`, `drop.*`,
    /// `notifications.*`, ...).
    pub fn counters(&self) -> Rc<RefCell<Counters>> {
        self.counters.clone()
    }

    pub fn policy(&self) -> NotificationPolicy {
        self.state.borrow().cfg.policy
    }

    /// Register a notification buffer: an RX ring and a TX ring of 64-byte
    /// entries in host memory. Returns its id and the [`Notify`] the NIC
    /// fires whenever it writes into either ring.
    pub fn register_notification_buffer(
        &self,
        rx: Region,
        rx_entries: u32,
        tx: Region,
        tx_entries: u32,
    ) -> Result<(usize, Rc<Notify>), EnsoNicError> {
        for (r, n) in [(rx, rx_entries), (tx, tx_entries)] {
            if n < 2 {
                return Err(EnsoNicError::BadRegion {
                    base: r.base.0,
                    len: r.len,
                    why: "a ring needs at least two entries",
                });
            }
            if r.len < n as u64 * NOTIFICATION_BYTES || !r.base.0.is_multiple_of(NOTIFICATION_BYTES)
            {
                return Err(EnsoNicError::BadRegion {
                    base: r.base.0,
                    len: r.len,
                    why: "ring too small or not line aligned",
                });
            }
        }
        let mut st = self.state.borrow_mut();
        if st.nbs.len() >= st.cfg.max_notification_buffers {
            return Err(EnsoNicError::TooMany("notification buffers"));
        }
        let notify = Rc::new(Notify::new(&self.sim));
        st.nbs.push(NotificationBuffer {
            rx_ring: rx.base,
            rx_entries,
            rx_tail: 0,
            rx_head: 0,
            tx_ring: tx.base,
            tx_entries,
            tx_fetched: 0,
            tx_partial: Vec::new(),
            notify: notify.clone(),
        });
        Ok((st.nbs.len() - 1, notify))
    }

    /// Register a pipe whose ring is `ring` (one 2 MiB, line-aligned
    /// region), notifying through notification buffer `nb`.
    pub fn register_pipe(&self, ring: Region, nb: usize) -> Result<PipeInfo, EnsoNicError> {
        if ring.len < PIPE_BYTES || !ring.base.0.is_multiple_of(LINE_BYTES) {
            return Err(EnsoNicError::BadRegion {
                base: ring.base.0,
                len: ring.len,
                why: "a pipe needs 2 MiB, line aligned",
            });
        }
        let mut st = self.state.borrow_mut();
        if nb >= st.nbs.len() {
            return Err(EnsoNicError::NoNotificationBuffer(nb));
        }
        if st.pipes.len() >= st.cfg.max_pipes {
            return Err(EnsoNicError::TooMany("pipes"));
        }
        st.pipes.push(Pipe {
            ring: ring.base,
            nb,
            tail: 0,
            head: 0,
            outstanding: false,
            last_notified_tail: 0,
        });
        Ok(PipeInfo {
            id: st.pipes.len() - 1,
            ring: ring.base,
        })
    }

    /// Steer `flow` to `pipe` (Ensō's `RxPipe::Bind`).
    pub fn bind_flow(&self, flow: FlowKey, pipe: usize) -> Result<(), EnsoNicError> {
        let mut st = self.state.borrow_mut();
        if pipe >= st.pipes.len() {
            return Err(EnsoNicError::NoPipe(pipe));
        }
        st.flows.insert(flow, pipe);
        Ok(())
    }

    /// Make `pipe` one of the pipes unmatched flows are spread over.
    pub fn add_fallback_pipe(&self, pipe: usize) -> Result<(), EnsoNicError> {
        let mut st = self.state.borrow_mut();
        if pipe >= st.pipes.len() {
            return Err(EnsoNicError::NoPipe(pipe));
        }
        if !st.fallback.contains(&pipe) {
            st.fallback.push(pipe);
        }
        Ok(())
    }

    /// MMIO address of a register.
    pub fn register_address(&self, reg: Register) -> u64 {
        let base = self.state.borrow().cfg.mmio_base;
        let max_pipes = self.state.borrow().cfg.max_pipes as u64;
        match reg {
            Register::PipeHead(p) => base + p as u64 * REGISTER_PAGE_BYTES + REG_PIPE_HEAD,
            Register::PipePrefetch(p) => base + p as u64 * REGISTER_PAGE_BYTES + REG_PIPE_PREFETCH,
            Register::RxNotificationHead(n) => {
                base + (max_pipes + n as u64) * REGISTER_PAGE_BYTES + REG_NB_RX_HEAD
            }
            Register::TxNotificationTail(n) => {
                base + (max_pipes + n as u64) * REGISTER_PAGE_BYTES + REG_NB_TX_TAIL
            }
        }
    }

    /// Software writes `value` to `reg` at the current simulated time: an
    /// 8-byte posted MMIO write (`"doorbell"`) whose effect happens when it
    /// reaches the NIC. Returns that arrival time.
    pub fn mmio_write(self: &Rc<Self>, reg: Register, value: u64) -> Result<Time, EnsoNicError> {
        let addr = self.register_address(reg);
        let now = self.sim.now();
        let arrival = self
            .pcie
            .borrow_mut()
            .mmio_write(now, addr, 8, "doorbell")
            .map_err(|e| EnsoNicError::Config(e.to_string()))?;
        let nic = self.clone();
        self.sim
            .at(arrival, move || nic.register_written(reg, value))
            .expect("a device event is never scheduled in the past");
        Ok(arrival)
    }

    /// The effect of a register write reaching the NIC (now).
    pub fn register_written(&self, reg: Register, value: u64) {
        let now = self.sim.now();
        let mut st = self.state.borrow_mut();
        let policy = st.cfg.policy;
        match reg {
            Register::PipeHead(p) => {
                let Some(pipe) = st.pipes.get_mut(p) else {
                    self.counters.borrow_mut().inc("bad_register_writes");
                    return;
                };
                let head = value % PIPE_BYTES;
                // Software may only free what the NIC has written.
                let freed = (head + PIPE_BYTES - pipe.head) % PIPE_BYTES;
                if freed > pipe.used_bytes() || !head.is_multiple_of(LINE_BYTES) {
                    self.counters.borrow_mut().inc("bad_register_writes");
                    return;
                }
                pipe.head = head;
                pipe.outstanding = false;
                if policy == NotificationPolicy::Reactive && pipe.tail != pipe.last_notified_tail {
                    self.counters.borrow_mut().inc("notifications.rearm");
                    Self::notify_pipe(
                        &self.sim,
                        &self.mem,
                        &self.pcie,
                        &self.counters,
                        &mut st,
                        p,
                        now,
                    );
                }
            }
            Register::PipePrefetch(p) => {
                let Some(pipe) = st.pipes.get(p) else {
                    self.counters.borrow_mut().inc("bad_register_writes");
                    return;
                };
                self.counters.borrow_mut().inc("prefetch_requests");
                if pipe.tail != pipe.head {
                    self.counters.borrow_mut().inc("notifications.prefetch");
                    Self::notify_pipe(
                        &self.sim,
                        &self.mem,
                        &self.pcie,
                        &self.counters,
                        &mut st,
                        p,
                        now,
                    );
                } else {
                    self.counters.borrow_mut().inc("prefetch_empty");
                }
            }
            Register::RxNotificationHead(n) => match st.nbs.get_mut(n) {
                Some(nb) if value < nb.rx_entries as u64 => nb.rx_head = value as u32,
                _ => self.counters.borrow_mut().inc("bad_register_writes"),
            },
            Register::TxNotificationTail(n) => {
                let Some(nb) = st.nbs.get_mut(n) else {
                    self.counters.borrow_mut().inc("bad_register_writes");
                    return;
                };
                if value >= nb.tx_entries as u64 {
                    self.counters.borrow_mut().inc("bad_register_writes");
                    return;
                }
                let tail = value as u32;
                let (entries, ring) = (nb.tx_entries, nb.tx_ring);
                let mut first = nb.tx_fetched;
                nb.tx_fetched = tail;
                drop(st);
                // Fetch the new notifications, in at most two reads (the
                // ring may wrap), then the data each names.
                while first != tail {
                    let end = if tail > first { tail } else { entries };
                    let count = end - first;
                    let pa = ring.offset(first as u64 * NOTIFICATION_BYTES);
                    let bytes = count as u64 * NOTIFICATION_BYTES;
                    let fetched = self
                        .pcie
                        .borrow_mut()
                        .dma_read(now, pa.0, bytes, "notification");
                    match fetched {
                        Ok(t) => self.schedule_tx_fetch(t, n, first, count),
                        Err(_) => self
                            .counters
                            .borrow_mut()
                            .add("drop.tx_bad_notification", count as u64),
                    }
                    first = end % entries;
                }
            }
        }
    }

    fn schedule_tx_fetch(&self, at: Time, nb: usize, first: u32, count: u32) {
        // The notifications' bytes are read when they reach the NIC.
        let mem = self.mem.clone();
        let pcie = self.pcie.clone();
        let counters = self.counters.clone();
        let tx_data = self.tx_data.clone();
        let ring = self.state.borrow().nbs[nb].tx_ring;
        let sim = self.sim.clone();
        self.sim
            .at(at, move || {
                let now = sim.now();
                let mut buf = vec![0u8; (count as u64 * NOTIFICATION_BYTES) as usize];
                let pa = ring.offset(first as u64 * NOTIFICATION_BYTES);
                if mem.borrow_mut().dma_read(pa, &mut buf).is_err() {
                    counters
                        .borrow_mut()
                        .add("drop.tx_bad_notification", count as u64);
                    return;
                }
                for i in 0..count {
                    let e = &buf[(i as u64 * NOTIFICATION_BYTES) as usize..]
                        [..NOTIFICATION_BYTES as usize];
                    let (signal, addr, len) = (
                        u64_at(e, NOTIF_SIGNAL_OFFSET),
                        u64_at(e, TX_NOTIF_ADDR_OFFSET),
                        u64_at(e, TX_NOTIF_LEN_OFFSET),
                    );
                    let slot = first + i;
                    let mut data = vec![0u8; len.min(PIPE_BYTES) as usize];
                    let ok = signal != 0
                        && len > 0
                        && len <= PIPE_BYTES
                        && mem.borrow_mut().dma_read(PhysAddr(addr), &mut data).is_ok();
                    let arrival = if ok {
                        pcie.borrow_mut()
                            .dma_read(now, addr, len, "packet-data")
                            .ok()
                    } else {
                        None
                    };
                    match arrival {
                        Some(t) => tx_data.push_at(t, TxChunk { nb, slot, data }),
                        None => {
                            counters.borrow_mut().inc("tx_bad_notifications");
                            // Complete it anyway so software does not wait forever.
                            tx_data.push_at(
                                now,
                                TxChunk {
                                    nb,
                                    slot,
                                    data: Vec::new(),
                                },
                            );
                        }
                    }
                }
            })
            .expect("a device event is never scheduled in the past");
    }

    /// Send the frames of one TX transfer, then complete its notification.
    async fn transmit_chunk(&self, chunk: TxChunk, wire: &Wire) {
        let frames = {
            let mut st = self.state.borrow_mut();
            let nb = &mut st.nbs[chunk.nb];
            let mut stream = std::mem::take(&mut nb.tx_partial);
            stream.extend_from_slice(&chunk.data);
            let mut frames = Vec::new();
            let mut at = 0usize;
            while at < stream.len() {
                let rest = &stream[at..];
                let Some(len) = frame_len_from_header(rest) else {
                    if rest.len() >= 18 {
                        // Not a frame: skip one quantum and count it.
                        self.counters.borrow_mut().inc("drop.tx_malformed");
                        at += LINE_BYTES as usize;
                        continue;
                    }
                    break;
                };
                let padded = padded_len(len as u64) as usize;
                if rest.len() < len {
                    break;
                }
                frames.push(rest[..len].to_vec());
                at += padded.min(rest.len());
            }
            nb.tx_partial = stream.split_off(at.min(stream.len()));
            frames
        };
        for bytes in frames {
            wire.wait_for_room().await;
            match wire.send(Frame::new(bytes, 0)) {
                Ok(_) => self.counters.borrow_mut().inc("tx_frames"),
                Err(_) => self.counters.borrow_mut().inc("drop.tx_wire_full"),
            }
        }
        self.complete_tx(chunk.nb, chunk.slot);
    }

    /// Overwrite TX notification `slot` with its signal cleared.
    fn complete_tx(&self, nb: usize, slot: u32) {
        let now = self.sim.now();
        let (pa, notify) = {
            let st = self.state.borrow();
            let b = &st.nbs[nb];
            (
                b.tx_ring.offset(slot as u64 * NOTIFICATION_BYTES),
                b.notify.clone(),
            )
        };
        let t = self
            .pcie
            .borrow_mut()
            .dma_write(now, pa.0, NOTIFICATION_BYTES, "notification")
            .unwrap_or(now);
        self.counters
            .borrow_mut()
            .inc("notifications.tx_completion");
        let mem = self.mem.clone();
        self.sim
            .at(t, move || {
                let mut m = mem.borrow_mut();
                let mut entry = [0u8; NOTIFICATION_BYTES as usize];
                if m.phys.read(pa, &mut entry).is_ok() {
                    entry[..8].copy_from_slice(&0u64.to_le_bytes());
                    let _ = m.dma_write(pa, &entry);
                }
                drop(m);
                notify.notify();
            })
            .expect("a device event is never scheduled in the past");
    }

    /// One frame from the wire, now.
    fn receive(&self, bytes: &[u8]) {
        let now = self.sim.now();
        let mut c = self.counters.borrow_mut();
        c.inc("rx_frames");
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let pipe_id =
            match flow_of(bytes).and_then(|f| st.flows.get(&f).copied().map(Ok).or(Some(Err(f)))) {
                Some(Ok(p)) => Some(p),
                other => {
                    if st.fallback.is_empty() {
                        None
                    } else {
                        let i = match (st.cfg.fallback, other) {
                            (FallbackPolicy::Hash, Some(Err(f))) => {
                                (flow_hash(&f) % st.fallback.len() as u64) as usize
                            }
                            (FallbackPolicy::Hash, _) => 0,
                            (FallbackPolicy::RoundRobin, _) => {
                                st.round_robin = (st.round_robin + 1) % st.fallback.len();
                                st.round_robin
                            }
                        };
                        Some(st.fallback[i])
                    }
                }
            };
        let Some(p) = pipe_id else {
            c.inc("drop.no_pipe");
            return;
        };
        let padded = padded_len(bytes.len() as u64);
        // The RX FIFO holds data whose DMA has not yet left for the host.
        while st.rx_fifo.front().is_some_and(|(t, _)| *t <= now) {
            let (_, b) = st.rx_fifo.pop_front().unwrap_or_default();
            st.rx_fifo_bytes -= b;
        }
        if st.rx_fifo_bytes + padded > st.cfg.rx_fifo_bytes {
            c.inc("drop.rx_fifo_full");
            return;
        }
        let policy = st.cfg.policy;
        let pipe = &st.pipes[p];
        if padded > PIPE_BYTES - LINE_BYTES - pipe.used_bytes() {
            c.inc("drop.pipe_full");
            return;
        }
        let needs_notification = policy == NotificationPolicy::PerPacket || !pipe.outstanding;
        let nb = &st.nbs[pipe.nb];
        if needs_notification && (nb.rx_tail + 1) % nb.rx_entries == nb.rx_head {
            c.inc("drop.notification_buffer_full");
            return;
        }
        // Append, padded with zeros, in bursts that neither cross the ring's
        // end nor exceed the burst size.
        st.scratch.clear();
        st.scratch.extend_from_slice(bytes);
        st.scratch.resize(padded as usize, 0);
        let (ring, mut tail) = (st.pipes[p].ring, st.pipes[p].tail);
        let one_way = Duration::from_ps(self.pcie.borrow().config().one_way_latency_ps);
        let mut done = 0u64;
        let mut mem = self.mem.borrow_mut();
        let mut pcie = self.pcie.borrow_mut();
        while done < padded {
            let burst = (padded - done)
                .min(MAX_DMA_BURST_BYTES)
                .min(PIPE_BYTES - tail);
            let pa = ring.offset(tail);
            let _ = mem.dma_write(pa, &st.scratch[done as usize..(done + burst) as usize]);
            if let Ok(arrival) = pcie.dma_write(now, pa.0, burst, "packet-data") {
                st.rx_fifo
                    .push_back((Time(arrival.ps().saturating_sub(one_way.ps())), burst));
                st.rx_fifo_bytes += burst;
            }
            done += burst;
            tail = (tail + burst) % PIPE_BYTES;
        }
        drop((mem, pcie));
        st.pipes[p].tail = tail;
        c.inc("appended");
        c.add("appended_bytes", padded);
        drop(c);
        if needs_notification {
            Self::notify_pipe(&self.sim, &self.mem, &self.pcie, &self.counters, st, p, now);
        }
    }

    /// Write a notification for pipe `p` (its current tail) into its
    /// notification buffer, visible to software when the DMA lands.
    fn notify_pipe(
        sim: &Sim,
        mem: &SharedMemory,
        pcie: &Rc<RefCell<PcieLink>>,
        counters: &Rc<RefCell<Counters>>,
        st: &mut State,
        p: usize,
        now: Time,
    ) {
        let (tail, nb_id) = (st.pipes[p].tail, st.pipes[p].nb);
        let nb = &mut st.nbs[nb_id];
        if (nb.rx_tail + 1) % nb.rx_entries == nb.rx_head {
            counters.borrow_mut().inc("notifications.suppressed_full");
            return;
        }
        let pa = nb.rx_ring.offset(nb.rx_tail as u64 * NOTIFICATION_BYTES);
        nb.rx_tail = (nb.rx_tail + 1) % nb.rx_entries;
        let notify = nb.notify.clone();
        let pipe = &mut st.pipes[p];
        pipe.outstanding = true;
        pipe.last_notified_tail = tail;
        counters.borrow_mut().inc("notifications.rx");
        let t = pcie
            .borrow_mut()
            .dma_write(now, pa.0, NOTIFICATION_BYTES, "notification")
            .unwrap_or(now);
        let mem = mem.clone();
        sim.at(t, move || {
            let mut entry = [0u8; NOTIFICATION_BYTES as usize];
            entry[0..8].copy_from_slice(&1u64.to_le_bytes());
            entry[8..16].copy_from_slice(&(p as u64).to_le_bytes());
            entry[16..24].copy_from_slice(&tail.to_le_bytes());
            let _ = mem.borrow_mut().dma_write(pa, &entry);
            notify.notify();
        })
        .expect("a device event is never scheduled in the past");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::HierarchyConfig;
    use crate::ethernet::LinkConfig;
    use crate::host::MemorySystem;
    use crate::packet::{Macs, build_udp};
    use crate::pcie::PcieConfig;
    use crate::trafficgen::synthetic_flow;

    struct Rig {
        sim: Sim,
        nic: Rc<EnsoNic>,
        mem: SharedMemory,
        inbox: Rc<Mailbox<Frame>>,
        outbox: Rc<Mailbox<Frame>>,
        rx_ring: PhysAddr,
        tx_ring: PhysAddr,
    }

    const ENTRIES: u32 = 64;

    fn rig(
        policy: NotificationPolicy,
        fallback: FallbackPolicy,
        pipes: usize,
    ) -> (Rig, Vec<PipeInfo>) {
        rig_with(
            EnsoNicConfig {
                policy,
                fallback,
                ..EnsoNicConfig::default()
            },
            PcieConfig::default(),
            pipes,
        )
    }

    fn rig_with(cfg: EnsoNicConfig, pcie: PcieConfig, pipes: usize) -> (Rig, Vec<PipeInfo>) {
        let sim = Sim::new();
        let mem = MemorySystem::new(64 << 20, HierarchyConfig::ice_lake(1))
            .unwrap()
            .shared();
        let pcie = Rc::new(RefCell::new(PcieLink::new(pcie).unwrap()));
        let inbox = Rc::new(Mailbox::new(&sim));
        let outbox = Rc::new(Mailbox::new(&sim));
        let wire = Rc::new(Wire::new(&sim, LinkConfig::default(), outbox.clone()));
        let nic = EnsoNic::new(&sim, cfg, mem.clone(), pcie, inbox.clone(), wire).unwrap();
        let nb_mem = mem.borrow_mut().phys.alloc_huge(1).unwrap();
        let rx = Region {
            base: nb_mem.base,
            len: ENTRIES as u64 * 64,
        };
        let tx = Region {
            base: nb_mem.base.offset(1 << 20),
            len: ENTRIES as u64 * 64,
        };
        let (nb, _) = nic
            .register_notification_buffer(rx, ENTRIES, tx, ENTRIES)
            .unwrap();
        let infos = (0..pipes)
            .map(|_| {
                let ring = mem.borrow_mut().phys.alloc_huge(PIPE_BYTES).unwrap();
                nic.register_pipe(ring, nb).unwrap()
            })
            .collect();
        (
            Rig {
                sim,
                nic,
                mem,
                inbox,
                outbox,
                rx_ring: rx.base,
                tx_ring: tx.base,
            },
            infos,
        )
    }

    fn frame(flow: u32, size: usize, fill: u8) -> Vec<u8> {
        let payload = vec![fill; size - 64 + 18];
        build_udp(Macs::default(), synthetic_flow(flow), &payload, size).unwrap()
    }

    impl Rig {
        fn deliver(&self, frames: &[Vec<u8>], gap: Duration) {
            let mut t = self.sim.now();
            for (i, f) in frames.iter().enumerate() {
                t += gap;
                self.inbox.push_at(t, Frame::new(f.clone(), i as u64));
            }
            self.sim.run_until(t);
            self.settle();
        }
        fn settle(&self) {
            self.sim.run_until(self.sim.now() + Duration::from_us(200));
        }
        /// Valid notifications in the RX ring, as (slot, pipe, tail).
        fn notifications(&self) -> Vec<(u32, u64, u64)> {
            let m = self.mem.borrow();
            (0..ENTRIES)
                .filter_map(|i| {
                    let pa = self.rx_ring.offset(i as u64 * 64);
                    let sig = m.phys.read_u64(pa).unwrap();
                    (sig != 0).then(|| {
                        (
                            i,
                            m.phys.read_u64(pa.offset(8)).unwrap(),
                            m.phys.read_u64(pa.offset(16)).unwrap(),
                        )
                    })
                })
                .collect()
        }
        fn clear_notifications(&self) {
            let mut m = self.mem.borrow_mut();
            for i in 0..ENTRIES {
                m.phys
                    .write_u64(self.rx_ring.offset(i as u64 * 64), 0)
                    .unwrap();
            }
        }
        fn counters(&self) -> Counters {
            self.nic.counters().borrow().clone()
        }
        fn pipe_bytes(&self, p: &PipeInfo, at: u64, len: usize) -> Vec<u8> {
            let mut out = vec![0u8; len];
            let m = self.mem.borrow();
            for (i, b) in out.iter_mut().enumerate() {
                let mut one = [0u8; 1];
                m.phys
                    .read(p.ring.offset((at + i as u64) % PIPE_BYTES), &mut one)
                    .unwrap();
                *b = one[0];
            }
            out
        }
    }

    fn conserved(c: &Counters) {
        assert_eq!(
            c.get("rx_frames"),
            c.get("appended") + c.sum_prefix("drop."),
            "{c:?}"
        );
    }

    #[test]
    fn bytes_arrive_intact_in_order_and_wrap_the_ring() {
        let (r, pipes) = rig(NotificationPolicy::Reactive, FallbackPolicy::Hash, 1);
        r.nic.add_fallback_pipe(0).unwrap();
        let p = &pipes[0];
        // 1518-byte frames pad to 1536: 1365 of them fill a ring; send
        // 3000 in rounds, freeing behind the NIC like software would.
        let mut offset = 0u64;
        for round in 0..10u8 {
            let frames: Vec<Vec<u8>> = (0..300)
                .map(|i| frame(i, 1518, round.wrapping_add(i as u8)))
                .collect();
            r.deliver(&frames, Duration::from_ns(200));
            for f in &frames {
                assert_eq!(r.pipe_bytes(p, offset, f.len()), *f, "round {round}");
                assert!(
                    r.pipe_bytes(p, offset + f.len() as u64, 1536 - f.len())
                        .iter()
                        .all(|b| *b == 0)
                );
                offset = (offset + 1536) % PIPE_BYTES;
            }
            r.nic.register_written(Register::PipeHead(0), offset);
        }
        let c = r.counters();
        assert_eq!(c.get("appended"), 3000);
        assert_eq!(c.sum_prefix("drop."), 0);
        conserved(&c);
    }

    #[test]
    fn reactive_keeps_one_outstanding_and_head_update_rearms() {
        let (r, _) = rig(NotificationPolicy::Reactive, FallbackPolicy::Hash, 1);
        r.nic.add_fallback_pipe(0).unwrap();
        r.deliver(
            &(0..10).map(|i| frame(i, 64, 1)).collect::<Vec<_>>(),
            Duration::from_ns(10),
        );
        assert_eq!(
            r.notifications(),
            vec![(0, 0, 64)],
            "one notification, for the first frame"
        );
        // Software consumed it and freed what it named: more data arrived
        // since, so the NIC notifies again at once with the full tail.
        r.clear_notifications();
        r.nic.register_written(Register::RxNotificationHead(0), 1);
        r.nic.register_written(Register::PipeHead(0), 64);
        r.settle();
        assert_eq!(r.notifications(), vec![(1, 0, 640)]);
        // Freeing everything with no new data: no notification.
        r.clear_notifications();
        r.nic.register_written(Register::PipeHead(0), 640);
        r.settle();
        assert!(r.notifications().is_empty());
        // The pipe is re-armed: the next frame is notified immediately.
        r.deliver(&[frame(0, 64, 2)], Duration::from_ns(10));
        assert_eq!(r.notifications(), vec![(2, 0, 704)]);
        assert_eq!(r.counters().get("notifications.rx"), 3);
    }

    #[test]
    fn per_packet_mode_notifies_every_frame() {
        let (r, _) = rig(NotificationPolicy::PerPacket, FallbackPolicy::Hash, 1);
        r.nic.add_fallback_pipe(0).unwrap();
        r.deliver(
            &(0..10).map(|i| frame(i, 128, 1)).collect::<Vec<_>>(),
            Duration::from_ns(10),
        );
        let n = r.notifications();
        assert_eq!(n.len(), 10);
        for (i, (slot, pipe, tail)) in n.into_iter().enumerate() {
            assert_eq!((slot, pipe, tail), (i as u32, 0, 128 * (i as u64 + 1)));
        }
    }

    #[test]
    fn prefetch_notifies_pending_data_only() {
        let (r, _) = rig(NotificationPolicy::Reactive, FallbackPolicy::Hash, 2);
        r.nic.bind_flow(synthetic_flow(1), 1).unwrap();
        // Pipe 0 is empty: a prefetch is ignored.
        r.nic.register_written(Register::PipePrefetch(0), 0);
        r.settle();
        assert!(r.notifications().is_empty());
        assert_eq!(r.counters().get("prefetch_empty"), 1);
        // Pipe 1 has data (already notified once): a prefetch is answered
        // even though a notification is outstanding.
        r.deliver(&[frame(1, 64, 1), frame(1, 64, 2)], Duration::from_ns(10));
        assert_eq!(r.notifications(), vec![(0, 1, 64)]);
        r.nic.register_written(Register::PipePrefetch(1), 0);
        r.settle();
        assert_eq!(r.notifications(), vec![(0, 1, 64), (1, 1, 128)]);
        // Once software has freed everything, a prefetch finds nothing.
        r.nic.register_written(Register::PipeHead(1), 128);
        r.nic.register_written(Register::PipePrefetch(1), 0);
        r.settle();
        assert_eq!(r.notifications().len(), 2);
        assert_eq!(r.counters().get("prefetch_empty"), 2);
    }

    #[test]
    fn flow_table_steers_and_fallback_spreads() {
        let (r, _) = rig(NotificationPolicy::PerPacket, FallbackPolicy::Hash, 3);
        // No pipe for unmatched flows yet: dropped and counted.
        r.deliver(&[frame(5, 64, 0)], Duration::from_ns(10));
        assert_eq!(r.counters().get("drop.no_pipe"), 1);
        r.nic.bind_flow(synthetic_flow(5), 2).unwrap();
        r.nic.add_fallback_pipe(0).unwrap();
        r.nic.add_fallback_pipe(1).unwrap();
        r.clear_notifications();
        let frames: Vec<Vec<u8>> = (0..40).map(|i| frame(i % 8, 64, 0)).collect();
        r.deliver(&frames, Duration::from_ns(10));
        let n = r.notifications();
        let by_flow = |f: usize| -> Vec<u64> {
            n.iter()
                .enumerate()
                .filter(|(i, _)| i % 8 == f)
                .map(|(_, x)| x.1)
                .collect()
        };
        assert!(
            by_flow(5).iter().all(|p| *p == 2),
            "bound flow goes to its pipe"
        );
        for f in [0, 1, 2, 3, 4, 6, 7] {
            let ps = by_flow(f);
            assert!(
                ps.iter().all(|p| *p == ps[0] && *p < 2),
                "hash keeps flow {f} in one fallback pipe"
            );
        }
        let used: std::collections::BTreeSet<u64> = n.iter().map(|x| x.1).collect();
        assert_eq!(used.len(), 3, "8 flows spread over both fallback pipes");
        conserved(&r.counters());

        let (r, _) = rig(NotificationPolicy::PerPacket, FallbackPolicy::RoundRobin, 2);
        r.nic.add_fallback_pipe(0).unwrap();
        r.nic.add_fallback_pipe(1).unwrap();
        r.deliver(
            &(0..6).map(|_| frame(3, 64, 0)).collect::<Vec<_>>(),
            Duration::from_ns(10),
        );
        let pipes: Vec<u64> = r.notifications().iter().map(|x| x.1).collect();
        assert_eq!(pipes, vec![1, 0, 1, 0, 1, 0]);
    }

    #[test]
    fn pipe_fills_when_software_stops_freeing() {
        let (r, _) = rig(NotificationPolicy::Reactive, FallbackPolicy::Hash, 1);
        r.nic.add_fallback_pipe(0).unwrap();
        let frames: Vec<Vec<u8>> = (0..1500).map(|i| frame(i, 1518, 0)).collect();
        r.deliver(&frames, Duration::from_ns(300));
        let c = r.counters();
        // A ring holds (2 MiB - 64) / 1536 = 1365 such frames.
        assert_eq!(c.get("appended"), 1365);
        assert_eq!(c.get("drop.pipe_full"), 135);
        conserved(&c);
    }

    #[test]
    fn rx_fifo_overflows_behind_a_slow_link() {
        let slow = PcieConfig {
            generation: 1,
            lanes: 1,
            ..PcieConfig::default()
        };
        let cfg = EnsoNicConfig {
            rx_fifo_bytes: 16 << 10,
            ..EnsoNicConfig::default()
        };
        let (r, _) = rig_with(cfg, slow, 1);
        r.nic.add_fallback_pipe(0).unwrap();
        let frames: Vec<Vec<u8>> = (0..200).map(|i| frame(i, 1024, 0)).collect();
        r.deliver(&frames, Duration::from_ns(85));
        let c = r.counters();
        assert!(c.get("drop.rx_fifo_full") > 0, "{c:?}");
        conserved(&c);
    }

    #[test]
    fn tx_reads_notification_and_data_sends_frames_and_completes() {
        let (r, pipes) = rig(NotificationPolicy::Reactive, FallbackPolicy::Hash, 1);
        // Three frames laid out in a pipe as the NIC would, 64-B aligned.
        let frames = [frame(1, 64, 1), frame(2, 200, 2), frame(3, 1518, 3)];
        let mut at = 0;
        {
            let mut m = r.mem.borrow_mut();
            for f in &frames {
                m.phys.write(pipes[0].ring.offset(at), f).unwrap();
                at += padded_len(f.len() as u64);
            }
            // Two TX notifications; the second frame is cut between them.
            let cut = 64 + 100;
            for (slot, (addr, len)) in [(0u64, cut), (cut, at - cut)].into_iter().enumerate() {
                let pa = r.tx_ring.offset(slot as u64 * 64);
                m.phys.write_u64(pa, 1).unwrap();
                m.phys
                    .write_u64(pa.offset(8), pipes[0].ring.offset(addr).0)
                    .unwrap();
                m.phys.write_u64(pa.offset(16), len).unwrap();
            }
        }
        r.nic.register_written(Register::TxNotificationTail(0), 2);
        r.settle();
        let mut sent = Vec::new();
        while let Some(f) = r.outbox.try_recv() {
            sent.push(f.bytes);
        }
        assert_eq!(sent, frames.to_vec());
        let m = r.mem.borrow();
        for slot in 0..2u64 {
            assert_eq!(
                m.phys.read_u64(r.tx_ring.offset(slot * 64)).unwrap(),
                0,
                "completed"
            );
        }
        assert_eq!(r.counters().get("tx_frames"), 3);
    }
}
