//! A host: one machine and the one kernel that runs it. The single place
//! a host is assembled — experiments name a machine preset, attach
//! devices, create processes and threads, and never wire hardware by
//! hand.
//!
//! Interrupts: the machine's MSI-X messages reach the kernel's interrupt
//! entry ([`Kernel::interrupt`]), which decides from the APIC state (UIPI
//! notification, forwarded device vector, ordinary interrupt) what is
//! delivered; whoever models the interrupted software listens with
//! [`Host::on_interrupt`].
//!
//! Invariants: a host has exactly one kernel; every device attached
//! through the host is bound to its own IOMMU domain at once (as the IOMMU
//! driver does when a device is probed), so until the OS maps memory for
//! it a device reaches nothing.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::Sim;
use nextio_hw::coherent::{CoherentHome, HomeWindow};
use nextio_hw::cpu::CoreCtx;
use nextio_hw::device::{Device, DeviceId};
use nextio_hw::fabric::{Attach, DeviceHandle, DeviceLink, SwitchId};
use nextio_hw::machine::{Machine, MachineError, MachineSpec};
use nextio_hw::mem::VirtAddr;
use thiserror::Error;

use crate::costs::OsCosts;
use crate::kernel::{Delivery, DmaBuffer, Kernel, OsError, Pid, Tid};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HostError {
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error(transparent)]
    Os(#[from] OsError),
}

/// An interrupt as the kernel handled it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterruptEvent {
    pub core: usize,
    pub vector: u8,
    /// User interrupts it delivered (forwarded vectors, UIPIs).
    pub deliveries: Vec<Delivery>,
}

type Listener = Rc<dyn Fn(&InterruptEvent)>;

struct HostInner {
    machine: Machine,
    kernel: Rc<RefCell<Kernel>>,
    /// Everyone listening to the kernel's interrupts, in the order they
    /// asked (each subsystem picks out the vectors it owns).
    listeners: RefCell<Vec<Listener>>,
}

/// A host. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Host(Rc<HostInner>);

impl Host {
    /// Build the machine `spec` describes and boot its kernel.
    pub fn new(sim: &Sim, spec: MachineSpec, costs: OsCosts) -> Result<Host, HostError> {
        let machine = Machine::new(sim, spec)?;
        let kernel = Rc::new(RefCell::new(Kernel::new(&machine, costs)?));
        let host = Host(Rc::new(HostInner {
            machine,
            kernel,
            listeners: RefCell::new(Vec::new()),
        }));
        let weak = Rc::downgrade(&host.0);
        host.0
            .machine
            .route_interrupts(Rc::new(move |core, vector| {
                let Some(h) = weak.upgrade() else { return };
                let deliveries = h
                    .kernel
                    .borrow_mut()
                    .interrupt(core, vector, false)
                    .unwrap_or_default();
                let listeners = h.listeners.borrow().clone();
                let event = InterruptEvent {
                    core,
                    vector,
                    deliveries,
                };
                for l in listeners {
                    l(&event);
                }
            }));
        Ok(host)
    }

    pub fn machine(&self) -> &Machine {
        &self.0.machine
    }
    pub fn sim(&self) -> &Sim {
        self.0.machine.sim()
    }
    pub fn kernel(&self) -> &Rc<RefCell<Kernel>> {
        &self.0.kernel
    }

    /// Attach `dev` to the host's fabric at `at` and bind it to its own
    /// IOMMU domain.
    pub fn attach<D: Device + 'static>(
        &self,
        dev: D,
        at: Attach,
        link: DeviceLink,
    ) -> Result<DeviceHandle<D>, HostError> {
        let h = self.0.machine.attach(dev, at, link)?;
        if self.0.machine.fabric().iommu_enabled() {
            self.0.kernel.borrow_mut().device_domain(h.id)?;
        }
        Ok(h)
    }

    /// Attach `dev` as `switch`'s own function (a programmable switch's
    /// dataplane) and bind it to its own IOMMU domain.
    pub fn attach_switch_function<D: Device + 'static>(
        &self,
        dev: D,
        switch: SwitchId,
        link: DeviceLink,
    ) -> Result<DeviceHandle<D>, HostError> {
        let h = self
            .0
            .machine
            .fabric()
            .attach_switch_function(dev, switch, link)
            .map_err(MachineError::from)?;
        if self.0.machine.fabric().iommu_enabled() {
            self.0.kernel.borrow_mut().device_domain(h.id)?;
        }
        Ok(h)
    }

    /// Attach `dev` in the machine's NIC slot.
    pub fn attach_nic<D: Device + 'static>(&self, dev: D) -> Result<DeviceHandle<D>, HostError> {
        let link = self.0.machine.spec().nic_link();
        self.attach(dev, Attach::RootPort, link)
    }

    /// Attach `dev` in the NIC slot and make it the home of a window of at
    /// least `window_bytes` on the machine's coherent link (binding it to
    /// its IOMMU domain like any device).
    pub fn attach_coherent<D: CoherentHome + 'static>(
        &self,
        dev: D,
        window_bytes: u64,
    ) -> Result<(DeviceHandle<D>, HomeWindow), HostError> {
        let m = &self.0.machine;
        let (h, w) = m.attach_coherent(dev, Attach::RootPort, m.spec().nic_link(), window_bytes)?;
        if m.fabric().iommu_enabled() {
            self.0.kernel.borrow_mut().device_domain(h.id)?;
        }
        Ok((h, w))
    }

    /// Call `f` with every interrupt the kernel handles (after the
    /// listeners added before it).
    pub fn on_interrupt(&self, f: impl Fn(&InterruptEvent) + 'static) {
        self.0.listeners.borrow_mut().push(Rc::new(f));
    }

    /// A handle on the existing process `pid`.
    pub fn process(&self, pid: Pid) -> Result<Process, OsError> {
        self.0.kernel.borrow().space(pid)?;
        Ok(Process {
            host: self.clone(),
            pid,
        })
    }

    /// A new process.
    pub fn create_process(&self) -> Result<Process, HostError> {
        let pid = self.0.kernel.borrow_mut().create_process()?;
        Ok(Process {
            host: self.clone(),
            pid,
        })
    }
}

/// A process of a host: a handle through which its memory is mapped and
/// its threads are made.
#[derive(Clone)]
pub struct Process {
    host: Host,
    pid: Pid,
}

/// A thread: its id and the context it runs in on its core.
#[derive(Clone)]
pub struct Thread {
    pub tid: Tid,
    pub ctx: CoreCtx,
}

impl Process {
    pub fn pid(&self) -> Pid {
        self.pid
    }
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Anonymous memory (see [`Kernel::sys_mmap`]).
    pub fn mmap(&self, bytes: u64, huge: bool) -> Result<VirtAddr, OsError> {
        self.host
            .kernel()
            .borrow_mut()
            .sys_mmap(self.pid, bytes, huge)
    }

    /// Let `dev` reach `buf` too (see [`Kernel::dma_share`]).
    pub fn dma_share(&self, buf: DmaBuffer, dev: DeviceId) -> Result<(), OsError> {
        self.host
            .kernel()
            .borrow_mut()
            .dma_share(self.pid, buf, dev)
    }

    /// Pinned memory for `dev`'s DMA (see [`Kernel::dma_alloc`]).
    pub fn dma_alloc(&self, dev: DeviceId, bytes: u64) -> Result<DmaBuffer, OsError> {
        self.host
            .kernel()
            .borrow_mut()
            .dma_alloc(self.pid, dev, bytes)
    }

    /// `dev`'s BAR `bar` from `offset`, mapped uncached (see
    /// [`Kernel::map_bar`]).
    pub fn map_bar(
        &self,
        dev: DeviceId,
        bar: u8,
        offset: u64,
        len: u64,
    ) -> Result<VirtAddr, OsError> {
        self.host
            .kernel()
            .borrow_mut()
            .map_bar(self.pid, dev, bar, offset, len)
    }

    /// A new thread pinned to `core`, scheduled there at once if the core
    /// is free (it then runs in this process's address space).
    pub fn thread(&self, core: usize) -> Result<Thread, HostError> {
        let machine = self.host.machine();
        let ctx = machine.ctx(core).ok_or(OsError::NoCore(core))?;
        let mut k = self.host.kernel().borrow_mut();
        let tid = k.create_thread(self.pid, core)?;
        if k.current(core).is_none() {
            k.schedule(core, 0)?;
        }
        Ok(Thread { tid, ctx })
    }
}
