//! A host running the kernel stack on the packetized NIC, built in one
//! call: the machine, its kernel, the NIC in its slot, the dispatcher, the
//! interrupt context and the stack, started.

use nextio_engine::Sim;
use nextio_hw::fabric::DeviceHandle;
use nextio_hw::machine::MachineSpec;
use nextio_hw::nic::packetized::{PacketizedConfig, PacketizedNic};

use super::{NetConfig, NetError, NetStack};
use crate::costs::OsCosts;
use crate::host::{Host, Thread};
use crate::irq::Interrupts;
use crate::kernel::{OsError, Pid};
use crate::sched::Dispatcher;

/// Everything of a Linux host a workload needs.
#[derive(Clone)]
pub struct LinuxHost {
    pub host: Host,
    pub disp: Dispatcher,
    pub irqs: Interrupts,
    pub nic: DeviceHandle<PacketizedNic>,
    pub stack: NetStack,
}

impl LinuxHost {
    /// Build `spec` with kernel costs `os`, the packetized NIC in its NIC
    /// slot, and the stack of `net` on it.
    pub fn build(
        sim: &Sim,
        spec: MachineSpec,
        os: OsCosts,
        net: NetConfig,
    ) -> Result<LinuxHost, NetError> {
        let host = Host::new(sim, spec, os).map_err(|e| NetError::Config(e.to_string()))?;
        let nic = host
            .attach_nic(PacketizedNic::new(PacketizedConfig::default())?)
            .map_err(|e| NetError::Config(e.to_string()))?;
        let disp = Dispatcher::new(&host);
        let irqs = Interrupts::new(&disp)?;
        let stack = {
            let mut n = nic.borrow_mut();
            NetStack::new(&irqs, &mut *n, nic.id, net)?
        };
        stack.start()?;
        Ok(LinuxHost {
            host,
            disp,
            irqs,
            nic,
            stack,
        })
    }

    /// A thread of `pid` on `core`, adopted by the dispatcher.
    pub fn thread(&self, pid: Pid, core: usize) -> Result<Thread, OsError> {
        let p = self.process(pid)?;
        let t = p.thread(core).map_err(|e| match e {
            crate::HostError::Os(o) => o,
            other => OsError::Invalid(other.to_string()),
        })?;
        self.disp.adopt(&t);
        Ok(t)
    }

    /// A handle on process `pid` of this host.
    pub fn process(&self, pid: Pid) -> Result<crate::host::Process, OsError> {
        self.host.process(pid)
    }
}
