//! The Accio NIC (§5, §7): an ordinary packetized NIC for the kernel path
//! with a UDP offload engine beside it that serves accelerated
//! connections through their rows in the I/O Connection Table.
//!
//! Receive. A frame is parsed (Ethernet, IPv4, UDP, both checksums) and
//! looked up by its addresses in the engine's flow table ([`flows`]).
//! Unmatched traffic, traffic of a connection the OS reverted to the
//! kernel, and anything while the engine is down go to the packetized
//! NIC — the ordinary path. A matched frame passes the engine's pipeline
//! and its payload alone is written, behind an 8-byte record header, into
//! the connection's RX ring ([`crate::accio::ring`]); the engine then
//! posts the new `RX_TAIL` to the row, which wakes a suspended owner. The
//! engine learns a connection's ring from its row (one burst read through
//! the fabric) and keeps it until the OS invalidates it; it re-reads the
//! row only when its copy of `RX_HEAD` says the ring is full. A row that is
//! not resident (a miss, under slot multiplexing) makes the engine hold
//! the connection's frames, post a miss event, and deliver them when the
//! OS says the row is back (`FLOW_CMD` retry); past its hold limit frames
//! go to the kernel path instead.
//!
//! Transmit. The table notifies the engine when a core moves a row's
//! `TX_TAIL`. The engine reads the records between its `TX_HEAD` and the
//! tail in bursts, builds each frame (headers and checksums from the
//! row's addresses), sends it, and posts the new `TX_HEAD` to the row —
//! completion by pointer update, which wakes an owner waiting for space.
//!
//! Link. Losing carrier drops what the engine holds for the wire and
//! posts a link-down event; carrier back posts link-up, and the engine is
//! ready again after its restart delay (an event too).
//!
//! Attachment: on the system bus (the prototype: an integrated link and
//! [`AccioNicConfig::bus_bytes_per_s`] for the bus's width) or in a PCIe
//! slot; either way every transfer goes through the fabric.
//!
//! Invariants (tested): every frame the NIC receives ends delivered into
//! a ring, handed to the packetized NIC (which accounts for it), or under
//! one `drop.*` counter; `offload_rx_frames == offload_rx_delivered +
//! offload_to_kernel + Σ drop.offload_rx_* + held` at every instant; the
//! engine writes only inside rings the table names, and the IOMMU holds
//! it to what the OS mapped; a connection's quiesced event reaches the
//! table after every `RX_TAIL` the engine posts for it before the
//! fallback (streaming rings hold those posts; the event waits its turn).

pub mod bus;
pub mod flows;
pub mod regs;
mod rx;
mod tx;

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::num::NonZeroU64;

use nextio_engine::{Counters, Duration, Freq, Time};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::accio::regs as ict;
use crate::device::{BarSpec, Device, DeviceCtx, DmaFault, Requester};
use crate::nic::packetized::{NicError, PacketizedConfig, PacketizedNic};
use crate::packet::Frame;

use bus::{BusPort, Transfer};
use flows::{FlowMatch, Flows};

/// Marks the engine's DMA tags and timer tokens (the packetized NIC's
/// never set the top bit).
const OFFLOAD: u64 = 1 << 63;
const TIMER_SHIFT: u32 = 56;
const TIMER_RX_PIPE: u64 = 1;
const TIMER_BUS: u64 = 2;
const TIMER_ENGINE_READY: u64 = 3;
const TIMER_TAIL_FLUSH: u64 = 4;
const TIMER_TX_PIPE: u64 = 5;
const TIMER_TAIL_POST: u64 = 6;

fn token(kind: u64, arg: u64) -> u64 {
    OFFLOAD | kind << TIMER_SHIFT | (arg & ((1 << TIMER_SHIFT) - 1))
}

/// How long the engine's pipelines take per frame: a streaming datapath
/// of `bytes_per_cycle` at `clock`, plus fixed stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineTiming {
    pub clock: Freq,
    pub bytes_per_cycle: u64,
    pub pipeline_cycles: u64,
}

impl EngineTiming {
    pub fn latency(&self, frame_bytes: u64) -> Duration {
        self.clock.cycles_to_duration(
            frame_bytes.div_ceil(self.bytes_per_cycle.max(1)) + self.pipeline_cycles,
        )
    }
}

/// How the NIC is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccioNicConfig {
    pub base: PacketizedConfig,
    /// The NIC's MAC, the source of every frame the engine builds.
    pub mac: [u8; 6],
    pub engine: EngineTiming,
    /// The system bus the NIC sits on, if narrower than its link.
    pub bus_bytes_per_s: Option<u64>,
    /// Frames held for connections whose row missed.
    pub miss_hold_frames: usize,
    /// Frames one connection may have waiting in the engine (for its row
    /// to load, or its ring to drain); more are dropped
    /// (`drop.offload_rx_hold_full`), as a NIC's finite buffer does.
    pub conn_hold_frames: usize,
    /// Most bytes of TX ring read in one burst.
    pub tx_burst_bytes: u64,
    /// Records written before `RX_TAIL` is posted (1: every record, as the
    /// prototype does; more: Ensō-style batched notifications).
    pub rx_tail_batch: u32,
    /// How long a partial batch waits before its `RX_TAIL` goes anyway.
    pub rx_tail_delay: Duration,
    /// Ensō-style streaming rings (the `accio-with-enso` design, beyond
    /// the paper): the records of a batch are written back to back in one
    /// DMA transfer, and the batch ends — one `RX_TAIL` post — when the
    /// engine holds no further frame of the connection, or at
    /// `rx_tail_batch` records. Off: each record is its own transfer and a
    /// batch ends only at `rx_tail_batch` records or `rx_tail_delay`, as
    /// before. Not a primitive but the design a host is built with, so it
    /// is not in the presets.
    pub rx_stream: bool,
    /// Time from carrier back to the engine ready (reset, re-training of
    /// its state).
    pub engine_ready_delay: Duration,
}

/// One Accio NIC's timings and sizes as a preset states them: the root
/// preset's `[nic.accio.prototype]` and `[nic.accio.server]`, where each
/// value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccioNicPreset {
    pub engine_clock_hz: NonZeroU64,
    pub engine_bytes_per_cycle: u64,
    pub engine_pipeline_cycles: u64,
    /// 0: no bus narrower than the NIC's link.
    pub bus_bytes_per_s: u64,
    pub miss_hold_frames: usize,
    pub conn_hold_frames: usize,
    pub tx_burst_bytes: u64,
    pub rx_tail_batch: u32,
    pub rx_tail_delay_ps: u64,
    pub engine_ready_delay_ps: u64,
}

impl AccioNicConfig {
    /// The FPGA prototype's NIC (§7): IceNIC with the engine, on the
    /// prototype's system bus (`[nic.accio.prototype]`).
    pub fn prototype(mac: [u8; 6]) -> AccioNicConfig {
        AccioNicConfig::from_preset(mac, nextio_presets::root_section("nic.accio.prototype"))
    }

    /// A server-class Accio NIC in a slot that is not narrower than its
    /// link (`[nic.accio.server]`).
    pub fn server(mac: [u8; 6]) -> AccioNicConfig {
        AccioNicConfig::from_preset(mac, nextio_presets::root_section("nic.accio.server"))
    }

    /// The NIC at `mac` with `p`'s timings and sizes.
    pub fn from_preset(mac: [u8; 6], p: AccioNicPreset) -> AccioNicConfig {
        AccioNicConfig {
            base: PacketizedConfig::default(),
            mac,
            engine: EngineTiming {
                // Never the fallback: the clock is non-zero by its type.
                clock: Freq::from_hz(p.engine_clock_hz.get()).unwrap_or(Freq::mhz(1)),
                bytes_per_cycle: p.engine_bytes_per_cycle,
                pipeline_cycles: p.engine_pipeline_cycles,
            },
            bus_bytes_per_s: (p.bus_bytes_per_s > 0).then_some(p.bus_bytes_per_s),
            miss_hold_frames: p.miss_hold_frames,
            conn_hold_frames: p.conn_hold_frames,
            tx_burst_bytes: p.tx_burst_bytes,
            rx_tail_batch: p.rx_tail_batch,
            rx_tail_delay: Duration::from_ps(p.rx_tail_delay_ps),
            rx_stream: false,
            engine_ready_delay: Duration::from_ps(p.engine_ready_delay_ps),
        }
    }

    pub fn validate(&self) -> Result<(), NicError> {
        self.base.validate()?;
        if self.engine.bytes_per_cycle == 0 || self.tx_burst_bytes < 2048 {
            return Err(NicError::Config(
                "the engine needs a datapath width and bursts of at least 2 KiB".into(),
            ));
        }
        if self.conn_hold_frames == 0 {
            return Err(NicError::Config(
                "a connection must be able to hold one frame".into(),
            ));
        }
        if self.rx_tail_batch == 0 {
            return Err(NicError::Config("RX_TAIL batches need one record".into()));
        }
        if self.bus_bytes_per_s == Some(0) {
            return Err(NicError::Config("a bus needs bandwidth".into()));
        }
        Ok(())
    }
}

/// What an outstanding engine DMA read is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Row { conn: u32 },
    TxData { conn: u32, head: u64 },
}

/// A frame built for sending, and the `TX_HEAD` to post once it is out.
struct Outgoing {
    ready: Time,
    frame: Option<Frame>,
    conn: u32,
    post_head: Option<u64>,
}

/// A posted write the engine holds until the ring data written before it
/// has landed (streaming rings), kept in one queue so they leave in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HeldPost {
    /// A batch's `RX_TAIL`.
    RxTail(u64),
    /// The quiesced notice of a fallback, which must not overtake the
    /// connection's last `RX_TAIL` ([`AccioNic::quiesced`]).
    Quiesced,
}

/// The NIC.
pub struct AccioNic {
    cfg: AccioNicConfig,
    base: PacketizedNic,
    /// The table's BAR as the NIC addresses it.
    ict: Option<u64>,
    flows: Flows,
    neighbours: BTreeMap<Ipv4Addr, [u8; 6]>,
    link_up: bool,
    engine_up: bool,
    /// Frames in the receive pipeline, with their exit times.
    rx_pipe: VecDeque<(Time, u32, Frame)>,
    ops: BTreeMap<u64, Pending>,
    next_op: u64,
    bus: BusPort,
    /// Frames built and the pointers to post after them, in order.
    tx_pipe: VecDeque<Outgoing>,
    /// Frames the port had no room for.
    tx_backlog: VecDeque<(Frame, u32, Option<u64>)>,
    tx_waiting: bool,
    /// Streaming rings: when the engine's latest ring-data write takes
    /// effect, and the posts waiting for their batch to land.
    data_landed: Time,
    tail_posts: VecDeque<(Time, u32, HeldPost)>,
    counters: Counters,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AccioNicError {
    #[error(transparent)]
    Nic(#[from] NicError),
    #[error("flow for connection {0} clashes with one installed")]
    FlowClash(u32),
    #[error("connection {0} is not installed")]
    NoFlow(u32),
}

impl AccioNic {
    pub fn new(cfg: AccioNicConfig) -> Result<AccioNic, NicError> {
        cfg.validate()?;
        Ok(AccioNic {
            base: PacketizedNic::new(cfg.base.clone())?,
            bus: BusPort::new(cfg.bus_bytes_per_s),
            cfg,
            ict: None,
            flows: Flows::default(),
            neighbours: BTreeMap::new(),
            link_up: true,
            engine_up: true,
            rx_pipe: VecDeque::new(),
            ops: BTreeMap::new(),
            next_op: 0,
            tx_pipe: VecDeque::new(),
            tx_backlog: VecDeque::new(),
            tx_waiting: false,
            data_landed: Time::ZERO,
            tail_posts: VecDeque::new(),
            counters: Counters::new(),
        })
    }

    pub fn config(&self) -> &AccioNicConfig {
        &self.cfg
    }

    /// The packetized NIC of the ordinary path (the kernel's driver
    /// configures it).
    pub fn base(&self) -> &PacketizedNic {
        &self.base
    }
    pub fn base_mut(&mut self) -> &mut PacketizedNic {
        &mut self.base
    }

    /// Where the connection table's BAR is, as the NIC addresses it
    /// (configuration by the OS, untimed).
    pub fn set_ict_base(&mut self, bus_addr: u64) {
        self.ict = Some(bus_addr);
    }

    /// A static neighbour entry, for datagrams sent to addresses other
    /// than a row's remote (the OS copies its neighbour table).
    pub fn add_neighbour(&mut self, ip: Ipv4Addr, mac: [u8; 6]) {
        self.neighbours.insert(ip, mac);
    }

    /// Steer `m` to connection `conn` in `core`'s table (the accelerate
    /// system call programming the engine; untimed).
    pub fn install_flow(
        &mut self,
        m: FlowMatch,
        conn: u32,
        core: usize,
    ) -> Result<(), AccioNicError> {
        if self.flows.install(m, conn, core) {
            Ok(())
        } else {
            Err(AccioNicError::FlowClash(conn))
        }
    }

    /// Forget `conn` (its socket closed). Frames it held go to the kernel
    /// path, which drops or delivers them.
    pub fn remove_flow(&mut self, cx: &mut DeviceCtx<'_>, conn: u32) -> Result<(), AccioNicError> {
        if !self.flows.conns.contains_key(&conn) {
            return Err(AccioNicError::NoFlow(conn));
        }
        // Records already written (or gathered) reach the ring first.
        self.rx_flush_tail(cx, conn);
        for f in self.flows.remove(conn) {
            self.kernel_path(cx, f);
        }
        Ok(())
    }

    /// Whether the engine serves traffic.
    pub fn engine_up(&self) -> bool {
        self.link_up && self.engine_up
    }

    /// Frames held for connections (waiting for rows) and in the pipeline.
    pub fn rx_held(&self) -> u64 {
        (self.flows.held() + self.rx_pipe.len()) as u64
    }

    /// The engine's counters and the packetized NIC's, together.
    pub fn all_counters(&self) -> Counters {
        let mut c = self.counters.clone();
        c.merge(self.base.counters());
        c
    }

    /// The engine's receive conservation law (checked after every event
    /// with debug assertions).
    fn rx_conserved(&self) -> bool {
        let c = &self.counters;
        c.get("offload_rx_frames")
            == c.get("offload_rx_delivered")
                + c.get("offload_to_kernel")
                + c.sum_prefix("drop.offload_rx_")
                + self.rx_held()
    }

    /// Carrier lost (`up == false`) or back: what the PHY tells the NIC.
    pub fn set_carrier(&mut self, cx: &mut DeviceCtx<'_>, up: bool) {
        if up == self.link_up {
            return;
        }
        self.link_up = up;
        if !up {
            self.engine_up = false;
            self.counters.inc("link_down_events");
            // What waits for the wire is lost with it.
            let lost =
                self.tx_pipe.iter().filter(|o| o.frame.is_some()).count() + self.tx_backlog.len();
            self.counters.add("drop.tx_link_down", lost as u64);
            let mut posts: Vec<(u32, u64)> = Vec::new();
            for o in self.tx_pipe.drain(..) {
                if let Some(h) = o.post_head {
                    posts.push((o.conn, h));
                }
            }
            for (_, conn, h) in self.tx_backlog.drain(..) {
                if let Some(h) = h {
                    posts.push((conn, h));
                }
            }
            for (conn, h) in posts {
                self.post_pointer(cx, conn, ict::row::TX_HEAD, h);
            }
            // The engine resets: cached rows are gone; frames it held for
            // rows go to the kernel path.
            let conns: Vec<u32> = self.flows.conns.keys().copied().collect();
            for conn in conns {
                let held: Vec<Frame> = match self.flows.conns.get_mut(&conn) {
                    Some(c) => {
                        c.ctx = None;
                        c.tx_busy = false;
                        c.repost = true;
                        c.pending.drain(..).collect()
                    }
                    None => Vec::new(),
                };
                for f in held {
                    self.kernel_path(cx, f);
                }
            }
            self.post_event(cx, ict::EventKind::LinkDown, 0, 0);
        } else {
            self.counters.inc("link_up_events");
            self.post_event(cx, ict::EventKind::LinkUp, 0, 0);
            cx.set_timer(self.cfg.engine_ready_delay, token(TIMER_ENGINE_READY, 0));
        }
    }

    // ---- the bus --------------------------------------------------------

    fn next_tag(&mut self, p: Pending) -> u64 {
        self.next_op += 1;
        let tag = OFFLOAD | self.next_op;
        self.ops.insert(tag, p);
        tag
    }

    fn submit(&mut self, cx: &mut DeviceCtx<'_>, t: Transfer) {
        match self.bus.submit(cx.now(), t) {
            Ok(t) => self.issue(cx, t),
            Err(at) => {
                let delay = at - cx.now();
                cx.set_timer(delay, token(TIMER_BUS, 0));
            }
        }
    }

    fn issue(&mut self, cx: &mut DeviceCtx<'_>, t: Transfer) {
        let r = match t {
            Transfer::Write {
                addr,
                data,
                purpose,
                tag,
            } => cx.dma_write(addr, &data, purpose, tag).map(|p| {
                if purpose == "packet-data" {
                    self.data_landed = self.data_landed.max(p.landed_at);
                }
            }),
            Transfer::Read {
                addr,
                len,
                purpose,
                tag,
            } => cx.dma_read(addr, len, purpose, tag),
        };
        if r.is_err() {
            self.counters.inc("dma_errors");
        }
    }

    /// Post `value` to `conn`'s row field `field` (a posted write to the
    /// table's NIC window).
    fn post_pointer(&mut self, cx: &mut DeviceCtx<'_>, conn: u32, field: u64, value: u64) {
        let (Some(base), Some(c)) = (self.ict, self.flows.conns.get(&conn)) else {
            self.counters.inc("drop.post_unconfigured");
            return;
        };
        let addr = base + ict::nic_field(c.core, conn, field);
        if field == ict::row::RX_TAIL {
            self.counters.inc("rx_tail_posts");
        } else if field == ict::row::TX_HEAD {
            self.counters.inc("tx_head_posts");
        }
        self.submit(
            cx,
            Transfer::Write {
                addr,
                data: value.to_le_bytes().to_vec(),
                purpose: "ict",
                tag: OFFLOAD,
            },
        );
    }

    fn post_event(&mut self, cx: &mut DeviceCtx<'_>, kind: ict::EventKind, core: usize, conn: u32) {
        let Some(base) = self.ict else {
            self.counters.inc("drop.event_unconfigured");
            return;
        };
        let e = ict::Event {
            kind,
            core: core as u8,
            conn,
        };
        self.submit(
            cx,
            Transfer::Write {
                addr: base + ict::nic_event(core),
                data: e.encode().to_le_bytes().to_vec(),
                purpose: "ict",
                tag: OFFLOAD,
            },
        );
    }

    /// Hand `frame` to the ordinary path.
    fn kernel_path(&mut self, cx: &mut DeviceCtx<'_>, frame: Frame) {
        self.counters.inc("offload_to_kernel");
        self.base.frame(cx, 0, frame);
    }

    fn flow_cmd(&mut self, cx: &mut DeviceCtx<'_>, v: u64) {
        let Some((op, core, conn)) = regs::decode_flow_cmd(v) else {
            return self.counters.inc("bad_register_writes");
        };
        if !self.flows.conns.contains_key(&conn) {
            return self.counters.inc("bad_flow_cmds");
        }
        // Whatever the command, the records of a batch in progress reach
        // the ring and their `RX_TAIL` the row first (a no-op unless
        // notifications are batched).
        self.rx_flush_tail(cx, conn);
        let Some(c) = self.flows.conns.get_mut(&conn) else {
            return self.counters.inc("bad_flow_cmds");
        };
        match op {
            regs::FlowOp::Invalidate => {
                c.core = core;
                c.ctx = None;
                c.repost = true;
                self.counters.inc("flow_invalidations");
            }
            regs::FlowOp::Fallback => {
                c.mode = flows::Mode::Fallback;
                c.ctx = None;
                let held: Vec<Frame> = c.pending.drain(..).collect();
                let busy = c.tx_busy;
                for f in held {
                    self.kernel_path(cx, f);
                }
                if !busy {
                    self.quiesced(cx, conn);
                }
                self.counters.inc("flow_fallbacks");
            }
            regs::FlowOp::Resume => {
                c.mode = flows::Mode::Fast;
                c.ctx = None;
                c.missed = false;
                c.repost = true;
                self.counters.inc("flow_resumes");
            }
            regs::FlowOp::Retry => {
                c.missed = false;
                c.ctx = None;
                c.repost = true;
                self.counters.inc("flow_retries");
                self.load_row(cx, conn);
            }
        }
        self.rx_drain(cx, conn);
        self.tx_kick(cx, conn);
    }

    /// Tell the OS the engine is done with `conn` (after a fallback).
    ///
    /// With streaming rings the fallback's flush may have left the
    /// connection's last `RX_TAIL` post waiting for its batch to land. The
    /// OS takes "quiesced" to mean every record the engine wrote has been
    /// announced: posted ahead of that `RX_TAIL`, the event would let the
    /// OS revert (and the library read the fallback socket) with records
    /// announced only later — delivered after younger datagrams of the
    /// kernel path, out of order. Posting the tail early would break the
    /// data-before-pointer rule instead, and dropping it would strand the
    /// records (the kernel path never sees them). So the notice queues
    /// behind the held posts and leaves after them, in order: every
    /// record is announced exactly once, before the connection reverts.
    fn quiesced(&mut self, cx: &mut DeviceCtx<'_>, conn: u32) {
        if let Some(&(at, _, _)) = self.tail_posts.back() {
            self.counters.inc("quiesce_deferred");
            self.tail_posts.push_back((at, conn, HeldPost::Quiesced));
            return;
        }
        self.post_quiesced(cx, conn);
    }

    fn post_quiesced(&mut self, cx: &mut DeviceCtx<'_>, conn: u32) {
        let (core, head) = match self.flows.conns.get(&conn) {
            Some(c) => (c.core, c.tx_head),
            None => return,
        };
        if let Some(h) = head {
            self.post_pointer(cx, conn, ict::row::TX_HEAD, h);
        }
        self.post_event(cx, ict::EventKind::Quiesced, core, conn);
    }

    /// Read `conn`'s row from its core's table, unless a read is out.
    fn load_row(&mut self, cx: &mut DeviceCtx<'_>, conn: u32) {
        let Some(base) = self.ict else {
            return self.counters.inc("drop.row_unconfigured");
        };
        let Some(c) = self.flows.conns.get_mut(&conn) else {
            return;
        };
        if c.loading {
            return;
        }
        c.loading = true;
        let addr = base + ict::nic_field(c.core, conn, ict::row::NIC_VIEW_START);
        let tag = self.next_tag(Pending::Row { conn });
        self.submit(
            cx,
            Transfer::Read {
                addr,
                len: ict::row::NIC_VIEW_BYTES,
                purpose: "ict",
                tag,
            },
        );
    }
}

impl Device for AccioNic {
    fn name(&self) -> &'static str {
        "accio-nic"
    }

    fn bars(&self) -> Vec<BarSpec> {
        let mut b = self.base.bars();
        b.push(BarSpec::new(regs::BAR1_BYTES));
        b
    }

    fn ports(&self) -> usize {
        1
    }

    fn bar_write(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        from: Requester,
        bar: u8,
        offset: u64,
        data: &[u8],
    ) {
        if bar == 0 {
            return self.base.bar_write(cx, from, bar, offset, data);
        }
        match (bar, offset, data.len()) {
            (1, regs::NOTIFY, 16) => {
                let a = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
                let tail = u64::from_le_bytes(data[8..].try_into().unwrap_or([0; 8]));
                self.tx_notified(cx, a as u16 as usize, (a >> 16) as u32, tail);
            }
            (1, regs::FLOW_CMD, 8) => {
                let v = u64::from_le_bytes(data.try_into().unwrap_or([0; 8]));
                self.flow_cmd(cx, v);
            }
            _ => self.counters.inc("bad_register_writes"),
        }
        debug_assert!(self.rx_conserved(), "{:?}", self.counters);
    }

    fn bar_read(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        from: Requester,
        bar: u8,
        offset: u64,
        out: &mut [u8],
    ) {
        if bar == 0 {
            return self.base.bar_read(cx, from, bar, offset, out);
        }
        if bar == 1 && offset == regs::ENGINE_STATE && out.len() == 8 {
            let v = self.link_up as u64 | (self.engine_up as u64) << 1;
            out.copy_from_slice(&v.to_le_bytes());
        } else {
            self.counters.inc("bad_register_reads");
        }
    }

    fn dma_read_done(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, data: &[u8]) {
        if tag & OFFLOAD == 0 {
            return self.base.dma_read_done(cx, tag, data);
        }
        match self.ops.remove(&tag) {
            Some(Pending::Row { conn }) => self.row_loaded(cx, conn, Some(data)),
            Some(Pending::TxData { conn, head }) => self.tx_data(cx, conn, head, data),
            None => self.counters.inc("stale_completions"),
        }
        debug_assert!(self.rx_conserved(), "{:?}", self.counters);
    }

    fn dma_fault(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, fault: DmaFault) {
        if tag & OFFLOAD == 0 {
            return self.base.dma_fault(cx, tag, fault);
        }
        self.counters.inc("dma_faults");
        match self.ops.remove(&tag) {
            Some(Pending::Row { conn }) => self.row_loaded(cx, conn, None),
            Some(Pending::TxData { conn, .. }) => {
                // The ring is not the engine's to read: the connection's
                // records cannot be sent; nothing is retried.
                if let Some(c) = self.flows.conns.get_mut(&conn) {
                    c.tx_busy = false;
                }
                self.counters.inc("drop.tx_ring_fault");
            }
            None => {}
        }
        debug_assert!(self.rx_conserved(), "{:?}", self.counters);
    }

    fn frame(&mut self, cx: &mut DeviceCtx<'_>, port: usize, frame: Frame) {
        self.rx_frame(cx, port, frame);
        debug_assert!(self.rx_conserved(), "{:?}", self.counters);
    }

    fn port_ready(&mut self, cx: &mut DeviceCtx<'_>, port: usize) {
        self.base.port_ready(cx, port);
        self.tx_port_ready(cx);
    }

    fn timer(&mut self, cx: &mut DeviceCtx<'_>, t: u64) {
        if t & OFFLOAD == 0 {
            return self.base.timer(cx, t);
        }
        let arg = t & ((1 << TIMER_SHIFT) - 1);
        match (t & !OFFLOAD) >> TIMER_SHIFT {
            TIMER_RX_PIPE => self.rx_pipe_due(cx),
            TIMER_BUS => {
                for tr in self.bus.due(cx.now()) {
                    self.issue(cx, tr);
                }
            }
            TIMER_ENGINE_READY => {
                if self.link_up && !self.engine_up {
                    self.engine_up = true;
                    self.post_event(cx, ict::EventKind::EngineReady, 0, 0);
                }
            }
            TIMER_TAIL_FLUSH => self.rx_flush_tail(cx, arg as u32),
            TIMER_TAIL_POST => self.rx_tail_posts_due(cx),
            TIMER_TX_PIPE => self.tx_pipe_due(cx),
            _ => self.counters.inc("stale_timers"),
        }
        debug_assert!(self.rx_conserved(), "{:?}", self.counters);
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}
