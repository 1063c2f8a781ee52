//! The OS side of Accio (§6): the accelerate call that puts a socket on
//! the fast path (its row in the I/O Connection Table, pinned rings mapped
//! into the process and the NIC's IOMMU domain, the NIC's flow entry), the
//! one blocking call the library makes when a ring is empty or full, the
//! miss handler that refills a row when more sockets are accelerated than
//! the table has slots (like a software-managed TLB), the scheduler hook
//! that runs threads the hardware ready queue names before the run queue,
//! the I/O and control interrupts, the fallback to the kernel path on a
//! link or engine failure and the return from it, migration of a thread's
//! rows, and their release when a thread exits or a socket closes.
//!
//! Every accelerated socket keeps its ordinary kernel socket (the
//! fallback, §6 "Exception Handling"): it is bound to the same address,
//! so traffic the NIC cannot take to the ring reaches the socket's owner
//! by the kernel path.
//!
//! The kernel keeps each connection's row in memory ([`table`]); the table
//! caches up to its slot count per core. A row is resident on the core
//! its owner runs on.
//!
//! Invariants: a connection's row is resident in at most one slot of one
//! core; a user can name only connections its process accelerated (any
//! other access faults in the core or is refused by the miss handler); a
//! datagram the NIC accepted for an accelerated socket is delivered
//! through its ring or its fallback socket, or counted dropped.

mod calls;
pub mod costs;
mod irq;
mod lock;
mod table;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::rc::Rc;

use nextio_engine::{Counters, Sim};
use nextio_hw::accio::regs as ict;
use nextio_hw::accio::table::Row;
use nextio_hw::accio::{Ict, IctConfig};
use nextio_hw::fabric::{Attach, DeviceHandle, DeviceLink, MsiMessage};
use nextio_hw::machine::MachineSpec;
use nextio_hw::mem::VirtAddr;
use nextio_hw::nic::accio::{AccioNic, AccioNicConfig, regs as nicregs};
use nextio_hw::nic::packetized::NicError;
use thiserror::Error;

pub use calls::{Accelerated, Dir, FallbackRecv, Refill, WaitResult};
pub use costs::AccioOsCosts;

use crate::costs::OsCosts;
use crate::host::{Host, Thread};
use crate::irq::Interrupts;
use crate::kernel::{OsError, Pid, Tid};
use crate::kmem;
use crate::net::{Fd, NetConfig, NetError, NetStack, PacketizedQueues, SocketId};
use crate::sched::Dispatcher;

/// The APIC vectors of the table's interrupts: the I/O interrupt at a
/// higher priority class than the NIC's ordinary one (§4: "a new
/// interrupt type, with an associated interrupt vector"; x86 priority
/// classes are vector / 16) and the control interrupt below it.
pub const IO_VECTOR: u8 = 0xd0;
pub const CONTROL_VECTOR: u8 = 0x60;

/// How an Accio host is set up.
#[derive(Clone, Debug, PartialEq)]
pub struct AccioConfig {
    pub table: IctConfig,
    pub nic: AccioNicConfig,
    /// The NIC's attachment: on the system bus (an integrated link) or
    /// in the machine's PCIe NIC slot.
    pub nic_on_pcie: bool,
    /// Bytes of each ring (§8.1: 8 KB).
    pub ring_bytes: u64,
    /// The priority of accelerated threads (and their rows).
    pub priority: u8,
    /// Whether rows ask for the prioritised interrupt on wake-up.
    pub hiprio_irq: bool,
    pub costs: AccioOsCosts,
}

impl AccioConfig {
    /// The prototype's configuration for a machine of `cores` cores.
    pub fn prototype(cores: usize, mac: [u8; 6]) -> AccioConfig {
        AccioConfig {
            table: IctConfig::new(cores),
            nic: AccioNicConfig::prototype(mac),
            nic_on_pcie: false,
            ring_bytes: nextio_hw::accio::ring::DEFAULT_RING_BYTES,
            priority: 1,
            hiprio_irq: true,
            costs: AccioOsCosts::default().scaled(crate::net::costs::rocket_cycle_factor()),
        }
    }

    /// A server-class Accio host of `cores` cores.
    pub fn server(cores: usize, mac: [u8; 6]) -> AccioConfig {
        AccioConfig {
            nic: AccioNicConfig::server(mac),
            costs: AccioOsCosts::default(),
            ..AccioConfig::prototype(cores, mac)
        }
    }
}

/// What can go wrong in Accio's calls.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AccioError {
    #[error("EPERM: connection {0} is not this process's")]
    NotOwner(u32),
    #[error("EBADF: {0:?} is not an accelerated socket of this process")]
    NotAccelerated(Fd),
    #[error("EBUSY: socket {0:?} is already accelerated")]
    AlreadyAccelerated(Fd),
    #[error("ENOSPC: all {0} connection ids are in use")]
    NoConnections(u32),
    #[error("EINVAL: {0}")]
    Invalid(String),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Os(#[from] OsError),
    #[error("the connection table: {0}")]
    Hardware(String),
}

impl From<nextio_hw::cpu::MmioAccessError> for AccioError {
    fn from(e: nextio_hw::cpu::MmioAccessError) -> AccioError {
        AccioError::Hardware(e.to_string())
    }
}

/// Where a connection's traffic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Fast,
    /// Told to leave the fast path; the NIC has not confirmed yet.
    Reverting,
    Fallback,
}

/// One ring, in the process and as the NIC and the kernel reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingMem {
    pub va: VirtAddr,
    pub iova: u64,
    /// The kernel's address of it (its direct map).
    pub kva: VirtAddr,
    pub bytes: u64,
}

/// What the kernel keeps per accelerated socket.
#[derive(Clone, Debug)]
struct Conn {
    pid: Pid,
    tid: Tid,
    fd: Fd,
    sock: SocketId,
    /// The row as the kernel last knew it (the backing store).
    shadow: Row,
    /// The slot that holds it, if resident.
    slot: Option<(usize, usize)>,
    mode: Mode,
    rx: RingMem,
    tx: RingMem,
    local: (Ipv4Addr, u16),
    remote: Option<(Ipv4Addr, u16)>,
    /// The owner blocked in the wait call on this connection.
    waiting: Option<Tid>,
}

/// Ring memory a process has been given, allocated in hugepage chunks.
#[derive(Clone, Copy, Debug)]
struct Arena {
    va: VirtAddr,
    iova: u64,
    kva: VirtAddr,
    bytes: u64,
    used: u64,
}

struct State {
    conns: BTreeMap<u32, Conn>,
    next_conn: u32,
    free_conns: Vec<u32>,
    by_fd: BTreeMap<(Pid, Fd), u32>,
    /// Which connection each slot of each core holds.
    resident: BTreeMap<(usize, usize), u32>,
    /// Where the table's user window is mapped in each process.
    windows: BTreeMap<Pid, VirtAddr>,
    arenas: BTreeMap<Pid, Arena>,
    /// Round-robin victim pointer per core.
    victim: Vec<usize>,
    /// Per core, the connection its thread's last refill installed: not a
    /// victim while the access that missed is retried.
    protect: Vec<Option<u32>>,
    engine_ready: bool,
    counters: Counters,
}

struct Inner {
    host: Host,
    disp: Dispatcher,
    irqs: Interrupts,
    stack: NetStack,
    table: DeviceHandle<Ict>,
    nic: DeviceHandle<AccioNic>,
    /// The table's BAR and the NIC's engine BAR in the kernel's space.
    table_kva: VirtAddr,
    nic_kva: VirtAddr,
    cfg: AccioConfig,
    /// Held across every multi-access change of the table's slots.
    lock: lock::TableLock,
    state: RefCell<State>,
}

/// The Accio part of a host's kernel. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct AccioOs(Rc<Inner>);

/// An Accio host: the machine, kernel, table, NIC, stack and Accio.
#[derive(Clone)]
pub struct AccioHost {
    pub host: Host,
    pub disp: Dispatcher,
    pub irqs: Interrupts,
    pub stack: NetStack,
    pub table: DeviceHandle<Ict>,
    pub nic: DeviceHandle<AccioNic>,
    pub os: AccioOs,
}

impl PacketizedQueues for AccioNic {
    fn configure_rx(&mut self, q: usize, ring: u64, entries: u32) -> Result<(), NicError> {
        self.base_mut().configure_rx(q, ring, entries)
    }
    fn configure_tx(&mut self, q: usize, ring: u64, entries: u32) -> Result<(), NicError> {
        self.base_mut().configure_tx(q, ring, entries)
    }
    fn configure_interrupt(&mut self, q: usize, vector: u16) -> Result<(), NicError> {
        self.base_mut().configure_interrupt(q, vector)
    }
}

fn err(e: impl std::fmt::Display) -> AccioError {
    AccioError::Hardware(e.to_string())
}

impl AccioHost {
    /// Build `spec` with kernel costs `os`, the table on its system bus,
    /// the Accio NIC, the kernel stack `net` on the NIC's ordinary path,
    /// and Accio's kernel part.
    pub fn build(
        sim: &Sim,
        spec: MachineSpec,
        os: OsCosts,
        net: NetConfig,
        cfg: AccioConfig,
    ) -> Result<AccioHost, AccioError> {
        let cores = spec.cores;
        if cfg.table.cores != cores {
            return Err(AccioError::Invalid(format!(
                "the table is for {} cores, the machine has {cores}",
                cfg.table.cores
            )));
        }
        if !nextio_hw::accio::ring::valid_size(cfg.ring_bytes) {
            return Err(AccioError::Invalid(format!(
                "rings are a power of two of 4 KiB to 1 GiB, not {} B",
                cfg.ring_bytes
            )));
        }
        let host = Host::new(sim, spec, os).map_err(err)?;
        let table = host
            .attach(
                Ict::new(cfg.table.clone()).map_err(err)?,
                Attach::RootPort,
                DeviceLink::integrated(),
            )
            .map_err(err)?;
        let nic_dev = AccioNic::new(cfg.nic.clone()).map_err(err)?;
        let nic = if cfg.nic_on_pcie {
            host.attach_nic(nic_dev)
        } else {
            host.attach(nic_dev, Attach::RootPort, DeviceLink::integrated())
        }
        .map_err(err)?;
        let fabric = host.machine().fabric().clone();
        fabric.guard_bar(table.id, 0, table.borrow().guard());
        let tbar = fabric.bar(table.id, 0).ok_or_else(|| err("no table BAR"))?;
        let nbar = fabric.bar(nic.id, 1).ok_or_else(|| err("no engine BAR"))?;
        // Peer-to-peer: the NIC reaches the table's NIC windows, the table
        // the NIC's notify register, at their physical addresses.
        if fabric.iommu_enabled() {
            let mut k = host.kernel().borrow_mut();
            let nd = k.device_domain(nic.id)?;
            let td = k.device_domain(table.id)?;
            drop(k);
            fabric
                .iommu_map(
                    nd,
                    tbar.base,
                    nextio_hw::mem::PhysAddr(tbar.base),
                    tbar.bytes,
                    true,
                )
                .map_err(err)?;
            fabric
                .iommu_map(
                    td,
                    nbar.base,
                    nextio_hw::mem::PhysAddr(nbar.base),
                    nbar.bytes,
                    true,
                )
                .map_err(err)?;
        }
        nic.borrow_mut().set_ict_base(tbar.base);
        table
            .borrow_mut()
            .set_notify_target(nbar.base + nicregs::NOTIFY);
        for (ip, mac) in &net.neighbours {
            nic.borrow_mut().add_neighbour(*ip, *mac);
        }
        for core in 0..cores {
            for (entry, vector) in [
                (ict::io_vector_entry(core), IO_VECTOR),
                (ict::control_vector_entry(core), CONTROL_VECTOR),
            ] {
                fabric
                    .set_msix(table.id, entry, MsiMessage { core, vector })
                    .map_err(err)?;
            }
        }
        let (table_kva, nic_kva) = {
            let mut k = host.kernel().borrow_mut();
            (
                kmem::ioremap(&mut k, table.id, 0, 0, tbar.bytes)?,
                kmem::ioremap(&mut k, nic.id, 1, 0, nbar.bytes)?,
            )
        };
        let disp = Dispatcher::new(&host);
        let irqs = Interrupts::new(&disp)?;
        let stack = {
            let mut n = nic.borrow_mut();
            NetStack::new(&irqs, &mut *n, nic.id, net)?
        };
        stack.start()?;
        let os = AccioOs(Rc::new(Inner {
            host: host.clone(),
            disp: disp.clone(),
            irqs: irqs.clone(),
            stack: stack.clone(),
            table: table.clone(),
            nic: nic.clone(),
            table_kva,
            nic_kva,
            lock: lock::TableLock::new(sim),
            state: RefCell::new(State {
                conns: BTreeMap::new(),
                next_conn: 0,
                free_conns: Vec::new(),
                by_fd: BTreeMap::new(),
                resident: BTreeMap::new(),
                windows: BTreeMap::new(),
                arenas: BTreeMap::new(),
                victim: vec![0; cores],
                protect: vec![None; cores],
                engine_ready: true,
                counters: Counters::new(),
            }),
            cfg,
        }));
        os.install_interrupts()?;
        Ok(AccioHost {
            host,
            disp,
            irqs,
            stack,
            table,
            nic,
            os,
        })
    }

    /// A thread of `pid` on `core`, adopted by the dispatcher.
    pub fn thread(&self, pid: Pid, core: usize) -> Result<Thread, OsError> {
        let t = self.host.process(pid)?.thread(core).map_err(|e| match e {
            crate::HostError::Os(o) => o,
            other => OsError::Invalid(other.to_string()),
        })?;
        self.disp.adopt(&t);
        Ok(t)
    }
}

impl AccioOs {
    pub fn stack(&self) -> &NetStack {
        &self.0.stack
    }
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.0.disp
    }
    pub fn config(&self) -> &AccioConfig {
        &self.0.cfg
    }
    /// Accio's kernel counters (accelerations, misses, refills, evictions,
    /// fallbacks, ...).
    pub fn counters(&self) -> Counters {
        self.0.state.borrow().counters.clone()
    }
    /// The mode of connection `conn`.
    pub fn mode(&self, conn: u32) -> Option<Mode> {
        self.0.state.borrow().conns.get(&conn).map(|c| c.mode)
    }
    /// Connections accelerated and not closed.
    pub fn connections(&self) -> usize {
        self.0.state.borrow().conns.len()
    }
    /// Where `conn`'s row is resident, if it is.
    pub fn resident(&self, conn: u32) -> Option<(usize, usize)> {
        self.0.state.borrow().conns.get(&conn).and_then(|c| c.slot)
    }
    /// The user-window address of `conn`'s field `field` in `pid`.
    pub fn row_field_va(&self, pid: Pid, conn: u32, field: u64) -> Option<VirtAddr> {
        let w = *self.0.state.borrow().windows.get(&pid)?;
        Some(w.offset(ict::user_field(conn, field)))
    }
}
