//! The Lauberhorn NIC (Xu & Roscoe, "The NIC should be part of the OS",
//! HotOS '25): a NIC on a cache-coherent interconnect that decodes every
//! incoming RPC completely — Ethernet, IPv4, UDP, ONC RPC and the XDR
//! arguments — finds the process and handler serving it in an endpoint
//! table the OS installed, and hands it to a core as cache lines: a
//! core's load of a control line is held until there is a request for it
//! and then answered with the decoded request (the code pointer to jump
//! to and the arguments), the result is fetched back from the same line by
//! a clean-invalidate when the core loads the other control line, and the
//! NIC encodes and sends the reply (§5, after Ruzhanskaia et al.'s 2F2F).
//!
//! Parts, one concept each: [`layout`] (the window's channels and the
//! control lines' bytes, shared with the runtime), [`endpoint`] (the
//! endpoint table), `rx` (frames in, decoded requests; replies out),
//! `channel` (the two-control-line protocol per channel, receive and
//! transmit), `sched` (which channel gets which request; TRYAGAIN,
//! YIELDNOW, RETIRE and waking cores), [`regs`] (the register page the
//! kernel reports scheduling state through).
//!
//! The NIC knows the OS's state (§6): which core polls in kernel mode (a
//! load of its kernel channel) or in a process's user loop (a load of that
//! process's channel on that core), and what the kernel tells it through
//! its registers. Messages above [`LauberhornConfig::dma_threshold_bytes`]
//! go by DMA into the channel's buffer instead of overflow lines (§7).
//!
//! Invariants: every frame received ends in exactly one counter — a
//! `drop.*` reason, a reply the NIC answers itself (`nic_replied.*`), or an
//! accepted request (`requests`); every accepted request is in exactly one
//! place (a queue, a control line, being retired) until its reply is sent
//! (`replies`) or dropped under a reason; a held load is answered within
//! [`LauberhornConfig::tryagain_ps`].

mod channel;
pub mod endpoint;
pub mod layout;
pub mod pio;
pub mod regs;
mod rx;
mod sched;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;

use nextio_engine::{Counters, Time};
use serde::{Deserialize, Serialize};

use crate::coherent::{CoherentHome, HomeEvent, HomePort, HomeWindow};
use crate::device::{BarSpec, Device, DeviceCtx, DmaFault, Requester};
use crate::packet::{FlowKey, Frame, Macs};

/// Statuses a core writes into a result beyond RFC 5531's.
pub mod rx_stat {
    /// The reply will come from a continuation: a nested call is under way.
    pub const DEFERRED: u8 = 0xff;
}

pub use endpoint::{Destination, Endpoint, EndpointError, EndpointTable};
pub use layout::{RxCtrl, RxKind, TxCtrl, TxKind, WindowLayout};

/// How the NIC is built: its shape (cores, slots, addresses, policy),
/// chosen by whoever builds it, and its timings and sizes, the root
/// preset's `[nic.lauberhorn]`, where each value's source is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LauberhornConfig {
    /// Cores it has channels for.
    #[serde(skip, default = "default_cores")]
    pub cores: usize,
    /// Process slots (processes that may register services).
    #[serde(skip, default = "default_slots")]
    pub slots: usize,
    #[serde(skip, default = "default_ip")]
    pub ip: Ipv4Addr,
    #[serde(skip, default = "default_mac")]
    pub mac: [u8; 6],
    /// The UDP port it serves ONC RPC on.
    #[serde(skip, default = "default_rpc_port")]
    pub rpc_port: u16,
    /// A held load is answered with TRYAGAIN after this long.
    pub tryagain_ps: u64,
    /// Frame arrival to a decoded request: the four decode stages
    /// (Ethernet, IPv4, UDP, ONC RPC).
    pub rx_pipeline_ps: u64,
    /// A result to a reply frame on the wire: the four encoder stages.
    pub tx_pipeline_ps: u64,
    /// Requests queued per process before more are dropped.
    pub queue_depth: usize,
    /// Messages larger than this go by DMA.
    pub dma_threshold_bytes: usize,
    /// A kernel channel idle this long is sent RETIRE, if more than
    /// `min_rpc_cores` cores serve RPCs.
    pub retire_idle_ps: u64,
    #[serde(skip, default = "default_min_rpc_cores")]
    pub min_rpc_cores: usize,
    /// Ask a core idling in one process's user loop to yield when another
    /// process has requests waiting and no core (§6).
    #[serde(skip, default = "default_yield_idle_loops")]
    pub yield_idle_loops: bool,
    /// Also release a user loop that waited `retire_idle_ps` with nothing
    /// for it (YIELDNOW), so its core goes back to its kernel channel and
    /// can retire when load drops (§6: the NIC gives cores back based on
    /// the load it sees). Off unless an experiment asks for it.
    #[serde(skip, default)]
    pub release_idle_loops: bool,
    /// Endpoints the table holds.
    pub endpoints: usize,
}

impl Default for LauberhornConfig {
    /// Four cores and four process slots at 10.0.0.2, serving ONC RPC on
    /// port 20049, with the root preset's timings.
    fn default() -> Self {
        nextio_presets::root_section("nic.lauberhorn")
    }
}

fn default_cores() -> usize {
    4
}
fn default_slots() -> usize {
    4
}
fn default_ip() -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 2)
}
fn default_mac() -> [u8; 6] {
    [0x02, 0, 0, 0, 0, 2]
}
fn default_rpc_port() -> u16 {
    20049
}
fn default_min_rpc_cores() -> usize {
    1
}
fn default_yield_idle_loops() -> bool {
    true
}

/// Why the NIC could not be built or configured.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LauberhornError {
    #[error("invalid Lauberhorn configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("the NIC is not attached to a coherent link yet")]
    NotAttached,
    #[error("no channel {0}")]
    NoChannel(usize),
}

/// A decoded message the NIC will hand to a core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub seq: u32,
    pub kind: RxKind,
    pub slot: usize,
    pub endpoint: usize,
    pub xid: u32,
    pub cookie: u64,
    /// Who to reply to.
    pub reply_flow: FlowKey,
    pub reply_macs: Macs,
    /// Arguments in native form (or the message's bytes).
    pub args: Vec<u8>,
    pub arrived: Time,
}

/// What one control line holds.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub line: Vec<u8>,
    pub overflow: Vec<Vec<u8>>,
    /// The request whose result comes back in this line, if it needs one.
    pub req: Option<Request>,
    /// Overflow lines the core asked to write (its result's).
    pub written: BTreeSet<usize>,
}

/// A held load.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Held {
    pub id: u64,
    pub parity: u8,
    pub since: Time,
    /// A delivery is under way (its DMA is being flushed).
    pub delivering: bool,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RxHalf {
    pub held: Option<Held>,
    pub slots: [Option<Slot>; 2],
    /// The parity of the message the core works on now.
    pub current: Option<u8>,
    pub epoch: u32,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct TxHalf {
    /// Overflow lines the core asked to write since the last doorbell
    /// (the message itself is always in the control line opposite the
    /// doorbell).
    pub ovf_written: BTreeSet<usize>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Channel {
    pub rx: RxHalf,
    pub tx: TxHalf,
    /// Messages for this channel alone (loopback).
    pub direct: VecDeque<Request>,
    /// Host DMA buffer for large messages: bus address and bytes.
    pub dma: Option<(u64, u64)>,
}

/// What a core does, as far as the NIC knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CoreMode {
    /// Not (yet) serving RPCs.
    Offline,
    /// Its kernel dispatch thread polls or runs.
    Kernel,
    /// A process's user loop polls or runs.
    User(usize),
    /// Retired from the RPC pool; doing other work.
    Retired,
}

/// What waits for invalidation acknowledgements.
#[derive(Clone, Debug)]
pub(crate) enum Collect {
    /// A retired receive line: its result.
    Result {
        req: Request,
        want: usize,
        ctrl: Option<Vec<u8>>,
        ovf: BTreeMap<usize, Vec<u8>>,
    },
    /// A transmit message behind a doorbell.
    Tx {
        ch: usize,
        doorbell: Held,
        want: usize,
        ctrl: Option<Vec<u8>>,
        ovf: BTreeMap<usize, Vec<u8>>,
    },
}

/// The NIC.
pub struct LauberhornNic {
    cfg: LauberhornConfig,
    port: Option<HomePort>,
    window: Option<HomeWindow>,
    layout: Option<WindowLayout>,
    endpoints: EndpointTable,
    dests: Vec<Destination>,
    channels: Vec<Channel>,
    queues: Vec<VecDeque<Request>>,
    cores: Vec<CoreMode>,
    /// Cores woken (by interrupt) that have not come back yet.
    waking: BTreeSet<usize>,
    /// When each kernel channel became idle (for RETIRE).
    idle_since: Vec<Option<Time>>,
    rx_pipe: VecDeque<(Time, Frame)>,
    tx_pipe: VecDeque<(Time, Frame)>,
    collects: BTreeMap<u64, Collect>,
    /// Invalidation token → the collect it belongs to and the line.
    tokens: BTreeMap<u64, (u64, Option<usize>)>,
    next_token: u64,
    /// DMA flush tag → (channel, parity) whose delivery waits for it.
    flushes: BTreeMap<u64, (usize, u8)>,
    /// Outstanding nested calls: xid → (destination, the deferred
    /// request's seq).
    calls: BTreeMap<u32, (usize, u32)>,
    /// Requests whose handler made a nested call, by seq: their reply
    /// comes from the continuation.
    deferred: BTreeMap<u32, Request>,
    /// Nested calls the NIC refused (bad destination or arguments), by
    /// (slot, the deferring request's seq): that request is answered
    /// with an error when its deferral arrives, never left waiting.
    refused_calls: std::collections::BTreeSet<(usize, u32)>,
    /// Looped-back messages in the pipelines: (ready, channel, message).
    loop_pipe: VecDeque<(Time, usize, Request)>,
    /// Lines the chip wrote back on eviction, by physical address.
    writebacks: BTreeMap<u64, Vec<u8>>,
    /// The longest a load was held before its answer, in ps.
    max_held_ps: u64,
    /// Per reply sent: frame arrival to the reply leaving, and the
    /// clean-invalidate that fetched the result (retire to result in
    /// hand), summed in ps.
    service_ps: u64,
    fetch_ps: u64,
    /// When each retirement's collect started, by collect id.
    collect_started: BTreeMap<u64, Time>,
    next_xid: u32,
    next_seq: u32,
    counters: Counters,
}

impl LauberhornNic {
    pub fn new(cfg: LauberhornConfig) -> Result<LauberhornNic, LauberhornError> {
        let bad = |s: &str| Err(LauberhornError::Config(s.into()));
        if cfg.cores == 0 || cfg.cores > 1024 || cfg.slots == 0 || cfg.slots > 256 {
            return bad("1..=1024 cores and 1..=256 process slots");
        }
        if cfg.tryagain_ps == 0 || cfg.queue_depth == 0 || cfg.endpoints == 0 {
            return bad("the TRYAGAIN wait, queue depth and endpoint table must be positive");
        }
        Ok(LauberhornNic {
            endpoints: EndpointTable::new(cfg.endpoints),
            queues: vec![VecDeque::new(); cfg.slots],
            cores: vec![CoreMode::Offline; cfg.cores],
            idle_since: vec![None; cfg.cores],
            cfg,
            port: None,
            window: None,
            layout: None,
            dests: Vec::new(),
            channels: Vec::new(),
            waking: BTreeSet::new(),
            rx_pipe: VecDeque::new(),
            tx_pipe: VecDeque::new(),
            collects: BTreeMap::new(),
            tokens: BTreeMap::new(),
            next_token: 1,
            flushes: BTreeMap::new(),
            calls: BTreeMap::new(),
            deferred: BTreeMap::new(),
            refused_calls: Default::default(),
            loop_pipe: VecDeque::new(),
            writebacks: BTreeMap::new(),
            max_held_ps: 0,
            service_ps: 0,
            fetch_ps: 0,
            collect_started: BTreeMap::new(),
            next_xid: 0x4c48_0000,
            next_seq: 1,
            counters: Counters::new(),
        })
    }

    pub fn config(&self) -> &LauberhornConfig {
        &self.cfg
    }

    /// Bytes of coherent window the NIC needs for `cfg` with `line_bytes`.
    pub fn window_bytes(cfg: &LauberhornConfig) -> u64 {
        WindowLayout {
            line_bytes: 128,
            cores: cfg.cores,
            slots: cfg.slots,
        }
        .window_bytes()
    }

    /// The window's layout, once attached.
    pub fn layout(&self) -> Option<WindowLayout> {
        self.layout
    }
    /// The window, once attached.
    pub fn window(&self) -> Option<HomeWindow> {
        self.window
    }
    /// What the NIC believes each core does.
    pub fn core_modes(&self) -> &[CoreMode] {
        &self.cores
    }
    /// The longest any load was held before it was answered.
    pub fn max_held_ps(&self) -> u64 {
        self.max_held_ps
    }
    /// Mean time from a request's frame arriving to its reply leaving,
    /// over the replies sent (ps).
    pub fn mean_service_ps(&self) -> u64 {
        self.service_ps / self.counters.get("replies").max(1)
    }
    /// Mean time to fetch a result back from the chip: the retirement's
    /// clean-invalidate until the result is in hand (ps).
    pub fn mean_fetch_ps(&self) -> u64 {
        self.fetch_ps / self.counters.get("results_fetched").max(1)
    }
    /// Requests queued for `slot`.
    pub fn queued(&self, slot: usize) -> usize {
        self.queues.get(slot).map_or(0, |q| q.len())
    }

    // ---- the control plane (the OS's Lauberhorn driver) -----------------

    /// Install an endpoint (the OS has checked the process may serve it).
    pub fn install_endpoint(&mut self, e: Endpoint) -> Result<usize, LauberhornError> {
        if e.slot >= self.cfg.slots {
            return Err(EndpointError::NoSlot(e.slot).into());
        }
        Ok(self.endpoints.install(e)?)
    }

    /// Remove every endpoint of `slot` and drop what it has queued.
    pub fn remove_slot(&mut self, slot: usize) {
        self.endpoints.remove_slot(slot);
        if let Some(q) = self.queues.get_mut(slot) {
            self.counters.add("drop.slot_removed", q.len() as u64);
            q.clear();
        }
    }

    pub fn endpoints(&self) -> &EndpointTable {
        &self.endpoints
    }

    /// Install an outgoing destination `slot` may call; returns its index.
    pub fn install_destination(&mut self, d: Destination) -> Result<u16, LauberhornError> {
        if d.slot >= self.cfg.slots {
            return Err(EndpointError::NoSlot(d.slot).into());
        }
        self.dests.push(d);
        Ok((self.dests.len() - 1) as u16)
    }

    /// Give `channel` a DMA buffer at bus address `iova` of `bytes` (two
    /// halves, one per control-line parity).
    pub fn set_channel_dma(
        &mut self,
        channel: usize,
        iova: u64,
        bytes: u64,
    ) -> Result<(), LauberhornError> {
        let c = self
            .channels
            .get_mut(channel)
            .ok_or(LauberhornError::NoChannel(channel))?;
        c.dma = Some((iova, bytes));
        Ok(())
    }

    fn fresh_token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }
}

/// Timer tokens: the kind in the top byte.
pub(crate) const T_RX_PIPE: u64 = 1 << 56;
pub(crate) const T_TX_PIPE: u64 = 2 << 56;
pub(crate) const T_TRYAGAIN: u64 = 3 << 56;
pub(crate) const T_RETIRE: u64 = 4 << 56;
pub(crate) const T_LOOP: u64 = 5 << 56;

pub(crate) fn timer_token(kind: u64, ch: usize, epoch: u32) -> u64 {
    kind | (ch as u64) << 32 | epoch as u64
}

impl Device for LauberhornNic {
    fn name(&self) -> &'static str {
        "lauberhorn-nic"
    }
    fn bars(&self) -> Vec<BarSpec> {
        vec![BarSpec::new(regs::BAR0_BYTES)]
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
        if !matches!(from, Requester::Cpu { .. }) || bar != 0 {
            self.counters.inc("bad_register_writes");
            return;
        }
        self.register_write(cx, offset, data);
    }
    fn bar_read(
        &mut self,
        _cx: &mut DeviceCtx<'_>,
        _from: Requester,
        _bar: u8,
        offset: u64,
        out: &mut [u8],
    ) {
        self.register_read(offset, out);
    }
    fn frame(&mut self, cx: &mut DeviceCtx<'_>, _port: usize, frame: Frame) {
        self.counters.inc("rx_frames");
        let ready = cx.now() + nextio_engine::Duration::from_ps(self.cfg.rx_pipeline_ps);
        self.rx_pipe.push_back((ready, frame));
        cx.set_timer(
            nextio_engine::Duration::from_ps(self.cfg.rx_pipeline_ps),
            T_RX_PIPE,
        );
    }
    fn port_ready(&mut self, cx: &mut DeviceCtx<'_>, _port: usize) {
        self.drain_tx(cx);
    }
    fn timer(&mut self, cx: &mut DeviceCtx<'_>, token: u64) {
        let kind = token & (0xff << 56);
        let ch = ((token >> 32) & 0xff_ffff) as usize;
        let epoch = token as u32;
        match kind {
            T_RX_PIPE => self.decode_ready(cx),
            T_TX_PIPE => self.drain_tx(cx),
            T_TRYAGAIN => self.tryagain_timer(cx, ch, epoch),
            T_RETIRE => self.retire_timer(cx, ch, epoch),
            T_LOOP => self.loop_ready(cx, ch),
            _ => self.counters.inc("bad_timer"),
        }
    }
    fn dma_read_done(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, _data: &[u8]) {
        if let Some((ch, p)) = self.flushes.remove(&tag) {
            self.finish_delivery(cx, ch, p);
        }
    }
    fn dma_fault(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, _fault: DmaFault) {
        self.counters.inc("drop.dma_fault");
        if let Some((ch, p)) = self.flushes.remove(&tag) {
            // The buffer was unreachable: the request cannot be delivered.
            self.fail_delivery(cx, ch, p);
        }
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl CoherentHome for LauberhornNic {
    fn home_attached(&mut self, port: HomePort, window: HomeWindow) {
        let layout = WindowLayout {
            line_bytes: port.line_bytes(),
            cores: self.cfg.cores,
            slots: self.cfg.slots,
        };
        self.channels = vec![Channel::default(); layout.channels()];
        self.layout = Some(layout);
        self.port = Some(port);
        self.window = Some(window);
    }
    fn coherent_event(&mut self, cx: &mut DeviceCtx<'_>, event: HomeEvent) {
        match event {
            HomeEvent::Request(r) => self.line_request(cx, r),
            HomeEvent::Invalidated { token, line, data } => self.invalidated(cx, token, line, data),
            HomeEvent::WrittenBack { line, data } => self.written_back(line, data),
        }
    }
}
