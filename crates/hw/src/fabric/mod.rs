//! A host's I/O interconnect: the root complex with host memory behind it,
//! optional switches, devices at the leaves, a PCIe link from every node to
//! its parent, BAR decode, an IOMMU, and the dispatch of every event to the
//! device it is for.
//!
//! Every transaction is routed by address and timed hop by hop: on each
//! link it waits for the receiver's flow-control credits, takes its turn on
//! the lane, flies, and is forwarded by each switch after its latency. A
//! device's request goes peer to peer across a switch that forwards
//! directly, else up to the root complex, where the IOMMU translates it and
//! it reaches host memory (DDIO, DRAM latency and bandwidth charged) or,
//! translated into another device's BAR, that device. Bytes move when the
//! transaction arrives, in an event scheduled by the same call that booked
//! its time.
//!
//! Parts: [`topology`] (the tree, the address map, paths), [`switch`],
//! [`root_complex`] (the memory side), [`iommu`], `dma` (what devices
//! initiate), `mmio` (what cores initiate), `ctx` ([`DeviceCtx`] and event
//! dispatch).
//!
//! Invariants:
//! * every device event happens at or after the time the action causing it
//!   was issued, and in (time, issue) order;
//! * a transaction that faults or routes nowhere moves no byte and is
//!   counted (`drop.*` in [`Fabric::counters`]) and reported to its device;
//! * per link and direction, bytes by purpose sum to the TLP bytes sent.

mod ctx;
mod dma;
pub mod iommu;
mod mmio;
pub mod root_complex;
pub mod switch;
pub mod topology;
pub mod txlog;

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::rc::Rc;

use nextio_engine::{Counters, Duration, HostId, Sim, StatsReport, Time, TrackId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use ctx::DeviceCtx;
pub use dma::{AtsTranslation, DmaError, DmaFault, Posted, Space};
pub use iommu::{DomainId, IommuConfig, IommuStats};
pub use mmio::{CpuAccess, GuardFault, MmioError, MmioGuard};
pub use root_complex::{MemorySideStats, RootComplexConfig};
pub use switch::{P2pPolicy, SwitchConfig};
pub use topology::{BarWindow, NodeId};

use crate::device::{Device, DeviceId};
use crate::ethernet::{FrameSink, Wire};
use crate::mem::{MapError, PhysAddr, TlbStats};
use crate::memory::SharedMemory;
use crate::packet::Frame;
use crate::pcie::credits::CreditClass;
use crate::pcie::{Direction, DirectionCounters, PcieConfig, PcieError, PcieLink, Purpose};

use iommu::Iommu;
use root_complex::RootComplex;
use topology::{Hop, NodeKind, Path, ROOT, Topology};

/// Configuration of a host's interconnect (beyond its links): a preset's
/// `[machine.fabric]`, where each value's source is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricConfig {
    /// Where device BARs are placed: a window above any host memory.
    pub mmio_base: u64,
    pub mmio_bytes: u64,
    pub root_complex: RootComplexConfig,
    pub iommu: IommuConfig,
}

impl Default for FabricConfig {
    /// The root preset's fabric.
    fn default() -> Self {
        nextio_presets::root_section("machine.fabric")
    }
}

/// Where a device or switch is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// A root port of the root complex.
    RootPort,
    /// A downstream port of a switch.
    Switch(SwitchId),
}

/// A switch in the fabric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchId(pub NodeId);

/// The link a device is attached with, and its requester-side limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceLink {
    pub pcie: PcieConfig,
    /// Non-posted requests the device may have outstanding (its read tags).
    pub read_tags: u32,
}

impl Default for DeviceLink {
    /// The root preset's NIC slot and read tags.
    fn default() -> Self {
        DeviceLink {
            pcie: PcieConfig::default(),
            read_tags: nextio_presets::root_section::<crate::machine::MachineSpec>("machine")
                .nic_read_tags,
        }
    }
}

impl DeviceLink {
    /// A root-complex integrated endpoint, such as Sapphire Rapids' on-die
    /// DSA: no off-chip link, so no flight, but every transaction still
    /// passes the root complex. Gen3 x16 serialisation stands in for the
    /// on-die fabric's width (assumption: it is at least as wide).
    pub fn integrated() -> DeviceLink {
        DeviceLink::pcie(PcieConfig {
            flight_ps: 0,
            ..PcieConfig::gen_lanes(3, 16)
        })
    }

    /// An accelerator on the CPU die's mesh, such as Sapphire Rapids' DSA:
    /// not behind a PCIe link, so its attachment must not be what limits
    /// it — its own datapath does (for the DMA engine: its read buffers).
    /// The fabric times every device hop as a link, so this one is the
    /// widest link it models (Gen5 x32, ~126 GB/s per direction, no
    /// flight), a stand-in chosen not to bind (assumption: a mesh stop
    /// moves at least that; the engine draws at most a few tens of GB/s).
    /// Requests still pass the root complex: IOMMU, DDIO and DRAM are
    /// charged as for any device.
    pub fn on_die() -> DeviceLink {
        DeviceLink::pcie(PcieConfig {
            flight_ps: 0,
            ..PcieConfig::gen_lanes(5, 32)
        })
    }

    pub fn pcie(pcie: PcieConfig) -> DeviceLink {
        DeviceLink {
            pcie,
            ..DeviceLink::default()
        }
    }
}

/// Where an MSI-X vector's message goes: a core's local APIC and vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    pub core: usize,
    pub vector: u8,
}

/// Receives MSI-X messages as they reach the root complex: the host's
/// interrupt controller.
pub type InterruptSink = Rc<dyn Fn(MsiMessage)>;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FabricError {
    #[error(transparent)]
    Pcie(#[from] PcieError),
    #[error("invalid fabric configuration: {0}")]
    Config(String),
    #[error("the fabric is deeper than {} levels of switches", topology::MAX_HOPS / 2 - 1)]
    TooDeep,
    #[error("no room for a {bytes} B BAR of {device} in the MMIO window")]
    MmioWindowFull { device: &'static str, bytes: u64 },
    #[error("no such device {0:?}")]
    NoSuchDevice(DeviceId),
    #[error("no such switch")]
    NoSuchSwitch,
    #[error("device {device} has no port {port}")]
    NoSuchPort { device: &'static str, port: usize },
    #[error(transparent)]
    Map(#[from] MapError),
    #[error("no such IOMMU domain {0:?}")]
    NoSuchDomain(DomainId),
}

/// A device of the fabric with its model's type kept, for the host and
/// drivers to configure and inspect it.
pub struct DeviceHandle<D> {
    pub id: DeviceId,
    dev: Rc<RefCell<D>>,
}

impl<D> Clone for DeviceHandle<D> {
    fn clone(&self) -> Self {
        DeviceHandle {
            id: self.id,
            dev: self.dev.clone(),
        }
    }
}

impl<D> DeviceHandle<D> {
    pub fn borrow(&self) -> std::cell::Ref<'_, D> {
        self.dev.borrow()
    }
    pub fn borrow_mut(&self) -> std::cell::RefMut<'_, D> {
        self.dev.borrow_mut()
    }
}

/// When each outstanding read tag of a device comes back.
struct TagPool {
    max: usize,
    releases: BinaryHeap<Reverse<Time>>,
}

impl TagPool {
    /// The earliest time from `ready` at which a tag is free; takes it.
    fn acquire(&mut self, ready: Time) -> Time {
        while self.releases.peek().is_some_and(|Reverse(t)| *t <= ready) {
            self.releases.pop();
        }
        if self.releases.len() >= self.max
            && let Some(Reverse(t)) = self.releases.pop()
        {
            return ready.max(t);
        }
        ready
    }
    fn release(&mut self, at: Time) {
        self.releases.push(Reverse(at));
    }
    fn issue_at(&self, now: Time) -> Time {
        let outstanding = self.releases.iter().filter(|Reverse(t)| *t > now).count();
        if outstanding >= self.max {
            self.releases
                .iter()
                .map(|Reverse(t)| *t)
                .filter(|t| *t > now)
                .min()
                .unwrap_or(now)
        } else {
            now
        }
    }
}

/// What the fabric keeps per device.
struct DeviceEntry {
    dev: Rc<RefCell<dyn Device>>,
    name: &'static str,
    node: NodeId,
    bars: Vec<BarWindow>,
    tags: TagPool,
    /// Link parameters the device's requests are framed with.
    mps: u64,
    mrrs: u64,
    completion_chunk: u64,
    request_header: u64,
    completion_header: u64,
    addr64: bool,
    /// When this device's latest posted write takes effect at the root
    /// complex: a later one may not take effect before it (PCIe ordering:
    /// a posted request never passes another), even when its own
    /// translation was quicker.
    posted_done: Time,
    /// The transmit side of each Ethernet port, once connected.
    ports: Vec<Option<Rc<Wire>>>,
    msix: BTreeMap<u16, MsiMessage>,
}

/// Timing and routing state, borrowed for the duration of one call.
pub(crate) struct State {
    topo: Topology,
    rc: RootComplex,
    iommu: Iommu,
    counters: Counters,
    dram_bytes: u64,
    /// When traced: each link's tracks by topology link index, upstream
    /// then downstream, and the simulation they are recorded in. A TLP is
    /// a span on its lane's track while it is on the line.
    link_tracks: Vec<[Option<TrackId>; 2]>,
    sim: Sim,
}

impl State {
    /// Send one TLP along `path`, ready at `ready`; `end_consume` is how
    /// long the last node takes to consume it (its credits come back that
    /// long after arrival, plus the UpdateFC's flight). Returns when its
    /// last byte left the first hop and when it arrived at the last node.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        path: &Path,
        now: Time,
        ready: Time,
        header: u64,
        payload: u64,
        class: CreditClass,
        purpose: Purpose,
        end_consume: Duration,
    ) -> (Time, Time) {
        let mut ready = ready;
        let mut left_first = ready;
        let mut arrived = ready;
        let hops = path.hops();
        for (i, hop) in hops.iter().enumerate() {
            let last = i + 1 == hops.len();
            // A switch forwards after its latency; the last node consumes.
            let forward = if last {
                Duration::ZERO
            } else {
                Duration::from_ps(self.topo.forward_latency_ps(hop.to))
            };
            let consume = if last { end_consume } else { forward };
            let (done, arrival) = self.topo.links[hop.link].transmit(
                hop.dir, now, ready, header, payload, class, purpose, consume,
            );
            self.trace_tlp(hop, done, header + payload, purpose);
            if i == 0 {
                left_first = done;
            }
            // A TLP for a switch's own function is processed by the switch
            // (its latency and pipeline) before the function sees it.
            let through_switch = !last || self.topo.is_switch(hop.to);
            arrived = if through_switch {
                self.topo.forward(hop.link, hop.to, arrival)
            } else {
                arrival
            };
            ready = arrived;
        }
        (left_first, arrived)
    }

    /// The TLP of `bytes` that left `hop`'s lane at `done` as a span over
    /// its serialisation, if that lane is traced.
    fn trace_tlp(&self, hop: &Hop, done: Time, bytes: u64, purpose: Purpose) {
        let lane = match hop.dir {
            Direction::Upstream => 0,
            Direction::Downstream => 1,
        };
        let Some(track) = self.link_tracks.get(hop.link).and_then(|t| t[lane]) else {
            return;
        };
        let on_line = self.topo.links[hop.link].lane(hop.dir).tlp_time(bytes);
        let start = Time(done.0.saturating_sub(on_line.0));
        self.sim.trace_span_arg(
            track,
            purpose,
            "pcie.tlp",
            start,
            done - start,
            ("bytes", bytes),
        );
    }

    /// Give link `link` (the uplink of `name`) its two tracks, if traced.
    fn trace_link(&mut self, host: Option<HostId>, link: usize, name: &str) {
        if host.is_none() {
            return;
        }
        if self.link_tracks.len() <= link {
            self.link_tracks.resize(link + 1, [None, None]);
        }
        self.link_tracks[link] = [
            self.sim
                .trace_track(host, || format!("pcie link {name} up")),
            self.sim
                .trace_track(host, || format!("pcie link {name} down")),
        ];
    }
}

pub(crate) struct FabricInner {
    sim: Sim,
    memory: SharedMemory,
    state: RefCell<State>,
    devices: RefCell<Vec<DeviceEntry>>,
    interrupt_sink: RefCell<Option<InterruptSink>>,
    /// Every transaction, when asked for ([`Fabric::record_transactions`]).
    txlog: RefCell<Option<Vec<txlog::Txn>>>,
    /// The host in the simulation's trace, and each device's track in it
    /// (by device id), when traced: a span per transaction the device
    /// issues or receives, from issue to effect.
    trace_host: Cell<Option<HostId>>,
    device_tracks: RefCell<Vec<Option<TrackId>>>,
    /// Core-side checks on BARs whose protection the cores enforce.
    guards: RefCell<BTreeMap<(DeviceId, u8), Rc<dyn MmioGuard>>>,
}

/// A host's interconnect. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Fabric(Rc<FabricInner>);

impl Fabric {
    /// An interconnect with just a root complex in front of `memory`.
    pub fn new(sim: &Sim, memory: SharedMemory, cfg: FabricConfig) -> Result<Fabric, FabricError> {
        let (dram_bytes, line_bytes) = {
            let m = memory.borrow();
            (m.phys.size_bytes(), m.caches.line_bytes())
        };
        if cfg.mmio_base < dram_bytes {
            return Err(FabricError::Config(format!(
                "the MMIO window at {:#x} overlaps host memory of {dram_bytes} B",
                cfg.mmio_base
            )));
        }
        let mmio_end = cfg
            .mmio_base
            .checked_add(cfg.mmio_bytes)
            .ok_or_else(|| FabricError::Config("MMIO window overflows".into()))?;
        Ok(Fabric(Rc::new(FabricInner {
            sim: sim.clone(),
            memory,
            state: RefCell::new(State {
                topo: Topology::new(cfg.mmio_base, mmio_end),
                rc: RootComplex::new(cfg.root_complex, line_bytes).map_err(FabricError::Config)?,
                iommu: Iommu::new(cfg.iommu).map_err(FabricError::Config)?,
                counters: Counters::new(),
                dram_bytes,
                link_tracks: Vec::new(),
                sim: sim.clone(),
            }),
            devices: RefCell::new(Vec::new()),
            interrupt_sink: RefCell::new(None),
            txlog: RefCell::new(None),
            trace_host: Cell::new(None),
            device_tracks: RefCell::new(Vec::new()),
            guards: RefCell::new(BTreeMap::new()),
        })))
    }

    pub fn sim(&self) -> &Sim {
        &self.0.sim
    }

    pub fn memory(&self) -> &SharedMemory {
        &self.0.memory
    }

    fn parent_node(&self, at: Attach) -> Result<NodeId, FabricError> {
        match at {
            Attach::RootPort => Ok(ROOT),
            Attach::Switch(SwitchId(n)) => {
                let st = self.0.state.borrow();
                match st.topo.nodes.get(n.0 as usize).map(|n| n.kind) {
                    Some(NodeKind::Switch(_)) => Ok(n),
                    _ => Err(FabricError::NoSuchSwitch),
                }
            }
        }
    }

    /// Add a switch at `at`, joined by `link`.
    pub fn add_switch(
        &self,
        at: Attach,
        link: PcieConfig,
        cfg: SwitchConfig,
    ) -> Result<SwitchId, FabricError> {
        let parent = self.parent_node(at)?;
        let link = PcieLink::new(link)?;
        let mut st = self.0.state.borrow_mut();
        let node = st
            .topo
            .add_node(parent, NodeKind::Switch(cfg), link)
            .ok_or(FabricError::TooDeep)?;
        let link = st.topo.links.len() - 1;
        st.trace_link(self.0.trace_host.get(), link, &format!("switch {}", node.0));
        Ok(SwitchId(node))
    }

    /// Add a programmable switch (Nagare, thesis §4.3) at `at`: a switch
    /// whose every ingress port runs the match-action pipeline `pipeline`
    /// (see [`crate::nagare::pipeline`]) on top of `cfg`'s forwarding.
    pub fn add_programmable_switch(
        &self,
        at: Attach,
        link: PcieConfig,
        cfg: SwitchConfig,
        pipeline: crate::nagare::PipelineConfig,
    ) -> Result<SwitchId, FabricError> {
        crate::nagare::Program::fits(&pipeline).map_err(|e| FabricError::Config(e.to_string()))?;
        let sw = self.add_switch(at, link, cfg)?;
        self.0
            .state
            .borrow_mut()
            .topo
            .programmable
            .insert(sw.0, pipeline);
        Ok(sw)
    }

    /// Attach `dev` as `switch`'s own function (its upstream port's
    /// endpoint): it has no link of its own, its BARs are claimed by the
    /// switch for requests from below whatever the ACS policy, and its
    /// requests start at the switch. `link` gives the framing its requests
    /// use (MPS, read request size, tags). This is how a programmable
    /// switch's dataplane (Nagare's engine) is a device of the fabric.
    pub fn attach_switch_function<D: Device + 'static>(
        &self,
        dev: D,
        switch: SwitchId,
        link: DeviceLink,
    ) -> Result<DeviceHandle<D>, FabricError> {
        self.parent_node(Attach::Switch(switch))?;
        self.attach_at(dev, Some(switch.0), Attach::Switch(switch), link)
    }

    /// Start (or stop, with `false`) logging every transaction; starting
    /// clears the log.
    pub fn record_transactions(&self, on: bool) {
        *self.0.txlog.borrow_mut() = on.then(Vec::new);
    }

    /// Trace this fabric's devices under `host` (the machine's, when the
    /// simulation is traced): devices attached from now on get a track.
    pub fn trace_as(&self, host: Option<HostId>) {
        self.0.trace_host.set(host);
    }

    /// The transactions logged so far (empty when not recording).
    pub fn transactions(&self) -> Vec<txlog::Txn> {
        self.0.txlog.borrow().clone().unwrap_or_default()
    }

    /// Attach `dev` at `at` over `link`; its BARs are placed in the MMIO
    /// window. Returns a typed handle.
    pub fn attach<D: Device + 'static>(
        &self,
        dev: D,
        at: Attach,
        link: DeviceLink,
    ) -> Result<DeviceHandle<D>, FabricError> {
        self.attach_at(dev, None, at, link)
    }

    /// Attach `dev` below `at`, or, with `function`, at that switch node.
    fn attach_at<D: Device + 'static>(
        &self,
        dev: D,
        function: Option<NodeId>,
        at: Attach,
        link: DeviceLink,
    ) -> Result<DeviceHandle<D>, FabricError> {
        let parent = self.parent_node(at)?;
        if link.read_tags == 0 {
            return Err(FabricError::Config(
                "a device needs at least one read tag".into(),
            ));
        }
        let pcie = PcieLink::new(link.pcie.clone())?;
        let name = dev.name();
        let bar_specs = dev.bars();
        let ports = dev.ports();
        let mut devices = self.0.devices.borrow_mut();
        let id = DeviceId(
            u16::try_from(devices.len())
                .map_err(|_| FabricError::Config("too many devices".into()))?,
        );
        let mut st = self.0.state.borrow_mut();
        let node = match function {
            Some(n) => n,
            None => {
                let node = st
                    .topo
                    .add_node(parent, NodeKind::Endpoint, pcie)
                    .ok_or(FabricError::TooDeep)?;
                let link = st.topo.links.len() - 1;
                st.trace_link(self.0.trace_host.get(), link, name);
                node
            }
        };
        st.topo.endpoint.push(node);
        let mut bars = Vec::with_capacity(bar_specs.len());
        for (i, spec) in bar_specs.iter().enumerate() {
            let bytes = spec.bytes.max(4096).next_power_of_two();
            let w = st
                .topo
                .place_bar(id, i as u8, bytes)
                .ok_or(FabricError::MmioWindowFull {
                    device: name,
                    bytes,
                })?;
            bars.push(w);
        }
        let cfg = &link.pcie;
        let track = self.0.sim.trace_track(self.0.trace_host.get(), || {
            format!("pcie {name} (dev {})", id.0)
        });
        self.0.device_tracks.borrow_mut().push(track);
        let dev = Rc::new(RefCell::new(dev));
        let as_dyn: Rc<RefCell<dyn Device>> = dev.clone();
        devices.push(DeviceEntry {
            dev: as_dyn,
            name,
            node,
            bars,
            tags: TagPool {
                max: link.read_tags as usize,
                releases: BinaryHeap::new(),
            },
            mps: cfg.mps_bytes as u64,
            mrrs: cfg.mrrs_bytes as u64,
            completion_chunk: if cfg.rcb_chunks {
                cfg.rcb_bytes as u64
            } else {
                cfg.mps_bytes as u64
            },
            request_header: cfg.request_overhead_bytes(),
            completion_header: cfg.completion_overhead_bytes(),
            addr64: cfg.addr64,
            posted_done: Time::ZERO,
            ports: vec![None; ports],
            msix: BTreeMap::new(),
        });
        Ok(DeviceHandle { id, dev })
    }

    /// The address-map window of BAR `bar` of `dev`.
    pub fn bar(&self, dev: DeviceId, bar: u8) -> Option<BarWindow> {
        self.0
            .devices
            .borrow()
            .get(dev.0 as usize)?
            .bars
            .get(bar as usize)
            .copied()
    }

    /// The name of `dev`'s model.
    pub fn device_name(&self, dev: DeviceId) -> Option<&'static str> {
        self.0.devices.borrow().get(dev.0 as usize).map(|d| d.name)
    }

    /// Devices attached so far.
    pub fn device_count(&self) -> usize {
        self.0.devices.borrow().len()
    }

    /// Program MSI-X table entry `vector` of `dev` (a configuration-space
    /// write by the OS, not timed).
    pub fn set_msix(&self, dev: DeviceId, vector: u16, msg: MsiMessage) -> Result<(), FabricError> {
        let mut devices = self.0.devices.borrow_mut();
        let d = devices
            .get_mut(dev.0 as usize)
            .ok_or(FabricError::NoSuchDevice(dev))?;
        d.msix.insert(vector, msg);
        Ok(())
    }

    /// Where MSI-X messages go once they reach the root complex.
    pub fn set_interrupt_sink(&self, sink: InterruptSink) {
        *self.0.interrupt_sink.borrow_mut() = Some(sink);
    }

    /// Give `dev`'s Ethernet port `port` the transmitter `tx`.
    pub fn connect_port(
        &self,
        dev: DeviceId,
        port: usize,
        tx: Rc<Wire>,
    ) -> Result<(), FabricError> {
        let mut devices = self.0.devices.borrow_mut();
        let d = devices
            .get_mut(dev.0 as usize)
            .ok_or(FabricError::NoSuchDevice(dev))?;
        let name = d.name;
        let slot = d
            .ports
            .get_mut(port)
            .ok_or(FabricError::NoSuchPort { device: name, port })?;
        *slot = Some(tx);
        Ok(())
    }

    /// What a wire delivering to `dev`'s port `port` delivers into.
    pub fn port_sink(&self, dev: DeviceId, port: usize) -> Result<Rc<dyn FrameSink>, FabricError> {
        let devices = self.0.devices.borrow();
        let d = devices
            .get(dev.0 as usize)
            .ok_or(FabricError::NoSuchDevice(dev))?;
        if port >= d.ports.len() {
            return Err(FabricError::NoSuchPort {
                device: d.name,
                port,
            });
        }
        Ok(Rc::new(ctx::PortSink {
            fabric: Rc::downgrade(&self.0),
            dev,
            port,
        }))
    }

    /// What `dev`'s link to its parent has carried, upstream and downstream.
    pub fn link_counters(&self, dev: DeviceId) -> Option<(DirectionCounters, DirectionCounters)> {
        let node = *self.0.state.borrow().topo.endpoint.get(dev.0 as usize)?;
        self.node_link_counters(node)
    }

    /// What the link above `switch` has carried.
    pub fn switch_link_counters(
        &self,
        switch: SwitchId,
    ) -> Option<(DirectionCounters, DirectionCounters)> {
        self.node_link_counters(switch.0)
    }

    fn node_link_counters(&self, node: NodeId) -> Option<(DirectionCounters, DirectionCounters)> {
        let st = self.0.state.borrow();
        let link = st.topo.nodes.get(node.0 as usize)?.uplink?;
        let l = &st.topo.links[link];
        Some((
            l.counters(crate::pcie::Direction::Upstream).clone(),
            l.counters(crate::pcie::Direction::Downstream).clone(),
        ))
    }

    /// The fabric's own counters: drops by reason, credit stalls.
    pub fn counters(&self) -> Counters {
        let st = self.0.state.borrow();
        let mut c = st.counters.clone();
        let (mut stalls, mut stalled) = (0, 0);
        for l in &st.topo.links {
            for dir in [
                crate::pcie::Direction::Upstream,
                crate::pcie::Direction::Downstream,
            ] {
                let cr = l.credits(dir);
                stalls += cr.stalls;
                stalled += cr.stalled_ps;
            }
        }
        c.add("credit_stalls", stalls);
        c.add("credit_stalled_ps", stalled);
        c
    }

    /// Add every counter of the fabric to `report` under `prefix`: its own
    /// (drops by reason, credit stalls), the memory side's, the IOMMU's and
    /// its TLBs', and per device its model's counters and what its link
    /// carried each way (bytes by purpose).
    pub fn stats(&self, prefix: &str, report: &mut StatsReport) {
        report.counters(&format!("{prefix}.fabric"), &self.counters());
        report.serialized(&format!("{prefix}.memory_side"), &self.memory_side_stats());
        report.serialized(&format!("{prefix}.iommu"), &self.iommu_stats());
        report.serialized(&format!("{prefix}.iotlb"), &self.iotlb_stats());
        report.serialized(&format!("{prefix}.pasid_tlb"), &self.pasid_tlb_stats());
        for i in 0..self.device_count() {
            let dev = DeviceId(i as u16);
            let (name, counters) = {
                let devices = self.0.devices.borrow();
                let d = &devices[i];
                (d.name, d.dev.borrow().counters().clone())
            };
            let p = format!("{prefix}.dev{i}.{name}");
            report.counters(&p, &counters);
            if let Some((up, down)) = self.link_counters(dev) {
                report.serialized(&format!("{p}.link.upstream"), &up);
                report.serialized(&format!("{p}.link.downstream"), &down);
            }
        }
    }

    pub fn memory_side_stats(&self) -> MemorySideStats {
        self.0.state.borrow().rc.stats
    }

    pub fn iommu_stats(&self) -> IommuStats {
        self.0.state.borrow().iommu.stats.clone()
    }

    pub fn iotlb_stats(&self) -> TlbStats {
        self.0.state.borrow().iommu.iotlb_stats()
    }

    /// What the PASID IOTLB (shared-virtual-addressing translations) did.
    pub fn pasid_tlb_stats(&self) -> TlbStats {
        self.0.state.borrow().iommu.pasid_tlb_stats()
    }

    /// Bind the page table `table` (a process's) to `pasid` of `dev`: the
    /// device's requests tagged with it are that process's virtual
    /// addresses (the OS's SVA bind).
    pub fn iommu_bind_pasid(
        &self,
        dev: DeviceId,
        pasid: u32,
        table: crate::mem::PageTable,
    ) -> Result<(), FabricError> {
        if dev.0 as usize >= self.device_count() {
            return Err(FabricError::NoSuchDevice(dev));
        }
        Ok(self
            .0
            .state
            .borrow_mut()
            .iommu
            .bind_pasid(dev, pasid, table)?)
    }

    /// Unbind `pasid` of `dev` and flush its translations.
    pub fn iommu_unbind_pasid(&self, dev: DeviceId, pasid: u32) {
        self.0.state.borrow_mut().iommu.unbind_pasid(dev, pasid);
    }

    /// Flush cached PASID translations of `[va, va + len)` in `table`
    /// (the OS changed a bound process's mappings).
    pub fn iommu_flush_pasid_range(&self, table: crate::mem::PageTable, va: u64, len: u64) {
        self.0
            .state
            .borrow_mut()
            .iommu
            .invalidate_pasid_range(table, va, len);
    }

    pub fn iommu_enabled(&self) -> bool {
        self.0.state.borrow().iommu.cfg.enabled
    }

    // ---- IOMMU control (the OS's IOMMU driver) --------------------------

    /// A new, empty IOMMU domain.
    pub fn iommu_create_domain(&self) -> Result<DomainId, FabricError> {
        let mut mem = self.0.memory.borrow_mut();
        Ok(self.0.state.borrow_mut().iommu.create_domain(&mut mem)?)
    }

    /// Put `dev` in `domain`: its DMA is translated by the domain's table.
    pub fn iommu_attach(&self, dev: DeviceId, domain: DomainId) -> Result<(), FabricError> {
        if dev.0 as usize >= self.device_count() {
            return Err(FabricError::NoSuchDevice(dev));
        }
        if self.0.state.borrow_mut().iommu.attach(dev, domain) {
            Ok(())
        } else {
            Err(FabricError::NoSuchDomain(domain))
        }
    }

    pub fn iommu_domain_of(&self, dev: DeviceId) -> Option<DomainId> {
        self.0.state.borrow().iommu.domain_of(dev)
    }

    /// Map `[iova, iova + len)` to host physical `[pa, pa + len)` in `domain`.
    pub fn iommu_map(
        &self,
        domain: DomainId,
        iova: u64,
        pa: PhysAddr,
        len: u64,
        writable: bool,
    ) -> Result<(), FabricError> {
        let mut mem = self.0.memory.borrow_mut();
        Ok(self
            .0
            .state
            .borrow_mut()
            .iommu
            .map(&mut mem, domain, iova, pa, len, writable)?)
    }

    /// Unmap `[iova, iova + len)` from `domain` and flush the IOTLB.
    pub fn iommu_unmap(&self, domain: DomainId, iova: u64, len: u64) {
        let mut mem = self.0.memory.borrow_mut();
        self.0
            .state
            .borrow_mut()
            .iommu
            .unmap(&mut mem, domain, iova, len);
    }

    /// Whether `pa` is host memory (as opposed to a BAR or nothing).
    pub fn is_host_memory(&self, pa: PhysAddr) -> bool {
        pa.0 < self.0.state.borrow().dram_bytes
    }

    /// The BAR window `pa` falls in, if any.
    pub fn decode(&self, pa: PhysAddr) -> Option<BarWindow> {
        self.0.state.borrow().topo.decode(pa.0)
    }

    /// Deliver `frame` to `dev`'s port now (a test or a generator standing
    /// in for a wire).
    pub fn deliver_frame(&self, dev: DeviceId, port: usize, frame: Frame) {
        self.0.with_device(dev, |d, cx| d.frame(cx, port, frame));
    }

    /// Run `f` on `handle`'s device with a context, now: the device's own
    /// logic acting on its own initiative (a test script, a traffic source
    /// built into a device). Must not be called from inside a device
    /// handler.
    pub fn act<D: Device + 'static, R>(
        &self,
        handle: &DeviceHandle<D>,
        f: impl FnOnce(&mut D, &mut DeviceCtx<'_>) -> R,
    ) -> R {
        let mut cx = DeviceCtx {
            fabric: &self.0,
            dev: handle.id,
        };
        f(&mut handle.dev.borrow_mut(), &mut cx)
    }
}

impl FabricInner {
    /// Log a transaction, if transactions are being recorded.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn log_txn(
        &self,
        kind: txlog::TxnKind,
        from: txlog::Party,
        to: txlog::Party,
        issued: Time,
        done: Time,
        bytes: u64,
        purpose: Purpose,
    ) {
        let txn = txlog::Txn {
            id: 0,
            kind,
            from,
            to,
            issued,
            done,
            bytes,
            purpose,
        };
        self.trace_txn(&txn);
        if let Some(log) = self.txlog.borrow_mut().as_mut() {
            log.push(txlog::Txn {
                id: log.len() as u64,
                ..txn
            });
        }
    }

    /// A transaction as a span on the track of the device that issued it
    /// (or, for the CPU's MMIO, of the device it reached).
    fn trace_txn(&self, t: &txlog::Txn) {
        if !self.sim.trace_enabled() {
            return;
        }
        let dev = match (t.from, t.to) {
            (txlog::Party::Device(d), _) | (_, txlog::Party::Device(d)) => d,
            _ => return,
        };
        let Some(Some(track)) = self.device_tracks.borrow().get(dev.0 as usize).copied() else {
            return;
        };
        let category = match (t.kind, t.from) {
            (txlog::TxnKind::Interrupt, _) => "pcie.msi",
            (txlog::TxnKind::Write, txlog::Party::Cpu) => "pcie.mmio-write",
            (txlog::TxnKind::Read, txlog::Party::Cpu) => "pcie.mmio-read",
            (txlog::TxnKind::Write, _) => "pcie.dma-write",
            (txlog::TxnKind::Read, _) => "pcie.dma-read",
        };
        self.sim.trace_span_arg(
            track,
            t.purpose,
            category,
            t.issued,
            t.done - t.issued,
            ("bytes", t.bytes),
        );
    }

    /// Run `f` at `at` (which the caller computed from now on).
    fn schedule(self: &Rc<Self>, at: Time, f: impl FnOnce(&Rc<FabricInner>) + 'static) {
        let now = self.sim.now();
        debug_assert!(at >= now, "a fabric event at {at:?} before now {now:?}");
        let me = self.clone();
        self.sim.after(at - now, move || f(&me));
    }
}
