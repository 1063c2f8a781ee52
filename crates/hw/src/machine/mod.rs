//! A machine: the hardware of one host, assembled in one place from a
//! named [`MachineSpec`] — cores with their clock and ledgers, the memory
//! system (bytes, caches, TLBs), the interconnect with its IOMMU, the
//! local APICs, and the devices attached to it — and the wires that join
//! a device's Ethernet port to another host or to a traffic source.
//!
//! The machine owns no software: the OS (one kernel per host) is built on
//! top of it by `nextio_os::Host`. Interrupts flow MSI-X → fabric → the
//! handler the OS installs with [`Machine::route_interrupts`], which
//! consults the APIC state kept here.
//!
//! A machine whose preset has a coherent link ([`MachineSpec::coherent_link`])
//! also has a [`CoherentFabric`], made when the first device is attached
//! as a home on it ([`Machine::attach_coherent`]).
//!
//! Invariants: the cores, the cache hierarchy, the TLBs and the APICs all
//! have the same count, fixed when the machine is built; every device of
//! the machine is in its fabric; a configuration error is an error, never
//! a panic.

pub mod presets;

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{HostId, Mailbox, Sim};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cache::HierarchyConfig;
use crate::coherent::{CoherentConfig, CoherentError, CoherentFabric, CoherentHome, HomeWindow};
use crate::cpu::{Bus, Core, CoreCtx};
use crate::device::{Device, DeviceId};
use crate::ethernet::{FrameSink, LinkConfig, Wire};
use crate::fabric::{
    Attach, DeviceHandle, DeviceLink, Fabric, FabricConfig, FabricError, MsiMessage,
};
use crate::interrupt::apic::LocalApic;
use crate::mem::TlbConfig;
use crate::memory::{MemorySystem, MemorySystemError, SharedMemory};
use crate::packet::Frame;
use crate::pcie::PcieConfig;

/// Everything a machine is built from: a preset's `[machine]` section
/// (where each value's source is) and the core count the caller chooses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSpec {
    /// The preset's name, for results and errors.
    #[serde(skip)]
    pub name: &'static str,
    #[serde(skip)]
    pub cores: usize,
    pub memory_bytes: u64,
    /// Read tags of the device in the NIC slot.
    pub nic_read_tags: u32,
    /// Cache geometry and latencies; its `core_clock` is the cores' clock.
    pub caches: HierarchyConfig,
    pub tlb: TlbConfig,
    pub fabric: FabricConfig,
    /// The slot a NIC is attached in.
    pub nic_slot: PcieConfig,
    /// The coherent link devices may attach to as homes, if any
    /// ([`MachineSpec::coherent_link`]).
    pub coherent: CoherentConfig,
}

impl MachineSpec {
    /// The same machine with `cores` cores.
    pub fn with_cores(mut self, cores: usize) -> MachineSpec {
        self.cores = cores;
        self.caches.cores = cores;
        self
    }

    /// The NIC slot as a device link.
    pub fn nic_link(&self) -> DeviceLink {
        DeviceLink {
            pcie: self.nic_slot.clone(),
            read_tags: self.nic_read_tags,
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MachineError {
    #[error("invalid machine `{name}`: {why}")]
    Config { name: &'static str, why: String },
    #[error(transparent)]
    Memory(#[from] MemorySystemError),
    #[error(transparent)]
    Fabric(#[from] FabricError),
    #[error(transparent)]
    Coherent(#[from] CoherentError),
}

/// The local APICs of a machine's cores, shared with the OS that programs
/// them.
pub type Apics = Rc<RefCell<Vec<LocalApic>>>;

/// One host's hardware.
pub struct Machine {
    sim: Sim,
    spec: MachineSpec,
    cores: Vec<Rc<Core>>,
    memory: SharedMemory,
    fabric: Fabric,
    apics: Apics,
    coherent: RefCell<Option<CoherentFabric>>,
    /// This host in the simulation's trace, if it is traced.
    trace_host: Option<HostId>,
    /// The host's build order in its simulation (`hostN` in stats).
    index: u32,
}

impl Machine {
    pub fn new(sim: &Sim, spec: MachineSpec) -> Result<Machine, MachineError> {
        let bad = |why: String| MachineError::Config {
            name: spec.name,
            why,
        };
        if spec.cores == 0 {
            return Err(bad("a machine needs at least one core".into()));
        }
        if spec.caches.cores != spec.cores {
            return Err(bad(format!(
                "the cache hierarchy is for {} cores, the machine has {}",
                spec.caches.cores, spec.cores
            )));
        }
        // Hosts are named by build order, so two of one preset stay apart.
        let index = sim.new_host_index();
        let trace_host = sim.trace_host(|| format!("host{index} {}", spec.name));
        let memory =
            MemorySystem::new(sim, spec.memory_bytes, spec.caches.clone(), spec.tlb)?.shared();
        let fabric = Fabric::new(sim, memory.clone(), spec.fabric.clone())?;
        fabric.trace_as(trace_host);
        let cores: Vec<Rc<Core>> = (0..spec.cores)
            .map(|i| Core::new(i, spec.caches.core_clock, sim.now()))
            .collect();
        for c in &cores {
            if let Some(track) = sim.trace_track(trace_host, || format!("core {}", c.id())) {
                c.trace_on(sim, track);
            }
        }
        if sim.stats_enabled() {
            let (s, cores, memory, fabric) =
                (sim.clone(), cores.clone(), memory.clone(), fabric.clone());
            sim.on_stats(move |r| {
                let now = s.now();
                for c in &cores {
                    let p = format!("host{index}.core{}", c.id());
                    r.ledger(&format!("{p}.ledger"), &c.ledger_at(now.max(c.cursor())));
                    if let Some(cs) = memory.borrow().caches.stats(c.id()) {
                        r.serialized(&format!("{p}.cache"), cs);
                    }
                }
                r.serialized(
                    &format!("host{index}.cache.device"),
                    &memory.borrow().caches.device_stats(),
                );
                fabric.stats(&format!("host{index}"), r);
            });
        }
        let apics = Rc::new(RefCell::new(
            (0..spec.cores).map(|i| LocalApic::new(i as u32)).collect(),
        ));
        Ok(Machine {
            sim: sim.clone(),
            spec,
            cores,
            memory,
            fabric,
            apics,
            coherent: RefCell::new(None),
            trace_host,
            index,
        })
    }

    pub fn sim(&self) -> &Sim {
        &self.sim
    }
    /// The host's build order in its simulation: it is `hostN` in traces
    /// and stats.
    pub fn index(&self) -> u32 {
        self.index
    }
    /// This host in the simulation's trace (`None` when not tracing), for
    /// models built on it to register their tracks under.
    pub fn trace_host(&self) -> Option<HostId> {
        self.trace_host
    }
    pub fn spec(&self) -> &MachineSpec {
        &self.spec
    }
    pub fn cores(&self) -> &[Rc<Core>] {
        &self.cores
    }
    pub fn core(&self, i: usize) -> Option<&Rc<Core>> {
        self.cores.get(i)
    }
    pub fn memory(&self) -> &SharedMemory {
        &self.memory
    }
    pub fn fabric(&self) -> &Fabric {
        &self.fabric
    }
    pub fn apics(&self) -> &Apics {
        &self.apics
    }
    /// What software on this machine's cores reaches.
    pub fn bus(&self) -> Bus {
        Bus {
            memory: self.memory.clone(),
            fabric: self.fabric.clone(),
        }
    }

    /// A thread context on core `i` (it reaches memory once an OS gives
    /// the core an address space).
    pub fn ctx(&self, i: usize) -> Option<CoreCtx> {
        Some(CoreCtx::on(
            &self.sim,
            self.cores.get(i)?.clone(),
            self.bus(),
        ))
    }

    /// Attach `dev` to the fabric at `at`.
    pub fn attach<D: Device + 'static>(
        &self,
        dev: D,
        at: Attach,
        link: DeviceLink,
    ) -> Result<DeviceHandle<D>, MachineError> {
        Ok(self.fabric.attach(dev, at, link)?)
    }

    /// The coherent link, once a device is attached as a home on it.
    pub fn coherent(&self) -> Option<CoherentFabric> {
        self.coherent.borrow().clone()
    }

    /// Attach `dev` to the fabric at `at` over `link` (for its ports,
    /// timers, DMA and interrupts) and make it the home of a window of at
    /// least `window_bytes` on the preset's coherent link.
    pub fn attach_coherent<D: CoherentHome + 'static>(
        &self,
        dev: D,
        at: Attach,
        link: DeviceLink,
        window_bytes: u64,
    ) -> Result<(DeviceHandle<D>, HomeWindow), MachineError> {
        let cfg = self
            .spec
            .coherent_link()
            .ok_or_else(|| MachineError::Config {
                name: self.spec.name,
                why: "this machine has no coherent link".into(),
            })?;
        let coherent = match self.coherent() {
            Some(c) => c,
            None => {
                let c = CoherentFabric::new(&self.sim, self.memory.clone(), cfg)?;
                *self.coherent.borrow_mut() = Some(c.clone());
                c
            }
        };
        let h = self.fabric.attach(dev, at, link)?;
        let window = coherent.attach_home(&self.fabric, &h, window_bytes)?;
        Ok((h, window))
    }

    /// Send every MSI-X message that reaches the root complex to
    /// `handler(core, vector)`: the OS's interrupt entry.
    pub fn route_interrupts(&self, handler: Rc<dyn Fn(usize, u8)>) {
        let (cores, sim) = (self.cores.clone(), self.sim.clone());
        self.fabric
            .set_interrupt_sink(Rc::new(move |m: MsiMessage| {
                if let Some(c) = cores.get(m.core) {
                    c.trace_instant("msi", sim.now(), Some(("vector", m.vector as u64)));
                }
                handler(m.core, m.vector)
            }));
    }

    /// Wire `dev`'s Ethernet port `port` to `peer`: the device transmits
    /// into `peer` over a link configured by `out`, and receives from the
    /// returned wire (configured by `back`), which the peer transmits on.
    pub fn wire_port(
        &self,
        dev: DeviceId,
        port: usize,
        peer: Rc<dyn FrameSink>,
        out: LinkConfig,
        back: LinkConfig,
    ) -> Result<(Rc<Wire>, Rc<Wire>), MachineError> {
        let tx = Rc::new(Wire::new(&self.sim, out, peer));
        self.fabric.connect_port(dev, port, tx.clone())?;
        let rx = Rc::new(Wire::new(
            &self.sim,
            back,
            self.fabric.port_sink(dev, port)?,
        ));
        self.name_port(dev, port, &tx, &rx);
        Ok((tx, rx))
    }

    /// Name the wires of `dev`'s port `port` in the trace and the stats:
    /// `tx` leaves the host, `rx` comes in. Whoever builds a port's wires
    /// by hand (to put a tap between, say) calls this so they are traced
    /// and counted like any other.
    pub fn name_port(&self, dev: DeviceId, port: usize, tx: &Rc<Wire>, rx: &Rc<Wire>) {
        let name = self.fabric.device_name(dev).unwrap_or("device");
        for (wire, dir) in [(tx, "tx"), (rx, "rx")] {
            if let Some(t) = self
                .sim
                .trace_track(self.trace_host, || format!("wire {name} port {port} {dir}"))
            {
                wire.trace_on(t);
            }
            let (w, p) = (
                wire.clone(),
                format!(
                    "host{}.wire.dev{}.{name}.port{port}.{dir}",
                    self.index, dev.0
                ),
            );
            self.sim.on_stats(move |r| r.counters(&p, &w.counters()));
        }
    }
}

/// Join port `a_port` of device `a` on machine `ma` to port `b_port` of
/// device `b` on machine `mb` with one link each way: two hosts on a wire.
/// Returns the wires `a → b` and `b → a`.
pub fn join(
    ma: &Machine,
    a: DeviceId,
    a_port: usize,
    mb: &Machine,
    b: DeviceId,
    b_port: usize,
    link: LinkConfig,
) -> Result<(Rc<Wire>, Rc<Wire>), MachineError> {
    let a_to_b = Rc::new(Wire::new(&ma.sim, link, mb.fabric.port_sink(b, b_port)?));
    let b_to_a = Rc::new(Wire::new(&mb.sim, link, ma.fabric.port_sink(a, a_port)?));
    ma.fabric.connect_port(a, a_port, a_to_b.clone())?;
    mb.fabric.connect_port(b, b_port, b_to_a.clone())?;
    ma.name_port(a, a_port, &a_to_b, &b_to_a);
    Ok((a_to_b, b_to_a))
}

/// A mailbox a task receives frames in, as a wire's far end.
pub fn frame_inbox(sim: &Sim) -> Rc<Mailbox<Frame>> {
    Rc::new(Mailbox::new(sim))
}
