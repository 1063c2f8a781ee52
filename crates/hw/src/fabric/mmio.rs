//! What cores initiate: MMIO writes (posted) and reads (non-posted) to a
//! device's BAR, from the core through the root complex and down the tree.
//!
//! Invariants: an MMIO access is one TLP (at most the device link's MPS);
//! an address no BAR decodes is refused before anything is sent; a read's
//! completion reaches the core after the device answered, never before.
//!
//! Core-side guards: a BAR may be guarded by a check the *core* makes
//! before the access leaves it (Accio's I/O Connection Table protects its
//! rows by address-space id "via the same mechanism used for TLB memory
//! protection", §4). A refused access is a precise fault of the
//! instruction: nothing is sent and the device never sees it.

use std::rc::Rc;

use nextio_engine::{Duration, Mailbox, Time};
use thiserror::Error;

use crate::device::{DeviceId, Requester};
use crate::mem::{Asid, PhysAddr};
use crate::pcie::credits::CreditClass;
use crate::pcie::{Purpose, tlp};

use super::topology::{BarWindow, ROOT};
use super::txlog::{Party, TxnKind};
use super::{Fabric, FabricInner};

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MmioError {
    #[error("no device register at physical address {:#x}", .0.0)]
    NotMmio(PhysAddr),
    #[error("an MMIO access of zero bytes")]
    ZeroLength,
    #[error("an MMIO access of {len} B does not fit in one TLP of at most {max} B")]
    TooLong { len: u64, max: u64 },
    #[error("an MMIO access at {:#x} of {len} B runs past its BAR", .pa.0)]
    PastBar { pa: PhysAddr, len: u64 },
    #[error("the core refused the access at {:#x}: {fault:?}", .pa.0)]
    Guarded { pa: PhysAddr, fault: GuardFault },
}

/// A core-side MMIO access as a guard sees it, before it leaves the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuAccess {
    pub core: usize,
    pub dev: DeviceId,
    pub bar: u8,
    /// Offset in the BAR.
    pub offset: u64,
    pub len: u64,
    pub write: bool,
    /// The address space the core runs in, and whether in user mode.
    pub asid: Asid,
    pub user: bool,
}

/// Why a guard refused an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardFault {
    /// The running address space (or privilege) may not make it: a
    /// protection fault, as for a page the process may not touch.
    Protection,
    /// What the access names is not resident in the hardware table: a
    /// miss, to be refilled by the OS (as a software-managed TLB misses).
    Miss,
}

/// A check the core makes on every access to a guarded BAR.
pub trait MmioGuard {
    fn check(&self, access: &CpuAccess) -> Result<(), GuardFault>;
}

impl Fabric {
    /// Make every core access to `dev`'s BAR `bar` pass `guard` first.
    pub fn guard_bar(&self, dev: DeviceId, bar: u8, guard: std::rc::Rc<dyn MmioGuard>) {
        self.0.guards.borrow_mut().insert((dev, bar), guard);
    }

    /// The core-side check of an access of `len` bytes at `pa` by `core`
    /// running in `asid` (in user mode if `user`): `Ok` for an address no
    /// guard covers.
    pub fn check_cpu_access(
        &self,
        core: usize,
        pa: PhysAddr,
        len: u64,
        write: bool,
        asid: Asid,
        user: bool,
    ) -> Result<(), MmioError> {
        let Some(w) = self.0.state.borrow().topo.decode(pa.0) else {
            return Ok(());
        };
        let guard = self.0.guards.borrow().get(&(w.dev, w.bar)).cloned();
        let Some(guard) = guard else { return Ok(()) };
        let access = CpuAccess {
            core,
            dev: w.dev,
            bar: w.bar,
            offset: pa.0 - w.base,
            len,
            write,
            asid,
            user,
        };
        guard
            .check(&access)
            .map_err(|fault| MmioError::Guarded { pa, fault })
    }
}

impl FabricInner {
    fn mmio_target(&self, pa: PhysAddr, len: u64) -> Result<(BarWindow, u64), MmioError> {
        if len == 0 {
            return Err(MmioError::ZeroLength);
        }
        let w = self
            .state
            .borrow()
            .topo
            .decode(pa.0)
            .ok_or(MmioError::NotMmio(pa))?;
        if (pa.0 - w.base).saturating_add(len) > w.bytes {
            return Err(MmioError::PastBar { pa, len });
        }
        let max = self
            .devices
            .borrow()
            .get(w.dev.0 as usize)
            .map_or(0, |d| d.mps);
        if len > max {
            return Err(MmioError::TooLong { len, max });
        }
        Ok((w, self.devices.borrow()[w.dev.0 as usize].request_header))
    }
}

impl Fabric {
    /// Core `core` writes `data` to device register address `pa` now.
    /// Returns when the write reaches the device (its effect happens then).
    pub fn cpu_mmio_write(
        &self,
        core: usize,
        pa: PhysAddr,
        data: &[u8],
        purpose: Purpose,
    ) -> Result<Time, MmioError> {
        let f = &self.0;
        let (w, hdr) = f.mmio_target(pa, data.len() as u64)?;
        let now = f.sim.now();
        let mut st = f.state.borrow_mut();
        let target = st.topo.endpoint[w.dev.0 as usize];
        let down = st.topo.down(ROOT, target);
        let ready = now + st.rc.cfg.latency();
        let (_, arrive) = st.send(
            &down,
            now,
            ready,
            hdr,
            tlp::dword_payload_bytes(data.len() as u64),
            CreditClass::Posted,
            purpose,
            Duration::ZERO,
        );
        drop(st);
        f.log_txn(
            TxnKind::Write,
            Party::Cpu,
            Party::Device(w.dev),
            now,
            arrive,
            data.len() as u64,
            purpose,
        );
        let offset = pa.0 - w.base;
        let data = data.to_vec();
        f.schedule(arrive, move |f| {
            f.with_device(w.dev, |d, cx| {
                d.bar_write(cx, Requester::Cpu { core }, w.bar, offset, &data)
            });
        });
        Ok(arrive)
    }

    /// Core `core` sends an ENQCMD of `data` to device register address
    /// `pa` now: a non-posted write the device answers with accepted or
    /// retry, delivered into the returned mailbox when the completion
    /// reaches the core. (The caller filled in the PASID, as the
    /// instruction does.)
    pub fn cpu_enqcmd(
        &self,
        core: usize,
        pa: PhysAddr,
        data: &[u8],
        purpose: Purpose,
    ) -> Result<Rc<Mailbox<bool>>, MmioError> {
        let f = &self.0;
        let (w, hdr) = f.mmio_target(pa, data.len() as u64)?;
        let now = f.sim.now();
        let mut st = f.state.borrow_mut();
        let target = st.topo.endpoint[w.dev.0 as usize];
        let down = st.topo.down(ROOT, target);
        let up = st.topo.up(target, ROOT);
        let rc_latency = st.rc.cfg.latency();
        let (_, arrive) = st.send(
            &down,
            now,
            now + rc_latency,
            hdr,
            tlp::dword_payload_bytes(data.len() as u64),
            CreditClass::NonPosted,
            purpose,
            Duration::ZERO,
        );
        let cpl_hdr = f.devices.borrow()[w.dev.0 as usize].completion_header;
        drop(st);
        let reply = Rc::new(Mailbox::new(&f.sim));
        let out = reply.clone();
        let offset = pa.0 - w.base;
        let data = data.to_vec();
        f.schedule(arrive, move |f| {
            let mut accepted = false;
            f.with_device(w.dev, |d, cx| {
                accepted = d.bar_enqueue(cx, Requester::Cpu { core }, w.bar, offset, &data);
            });
            let now = f.sim.now();
            // The answer is a completion without data.
            let (_, back) = f.state.borrow_mut().send(
                &up,
                now,
                now,
                cpl_hdr,
                0,
                CreditClass::Completion,
                purpose,
                Duration::ZERO,
            );
            out.push_at(back + rc_latency, accepted);
        });
        Ok(reply)
    }

    /// Core `core` reads `len` bytes of device register address `pa` now.
    /// The bytes are delivered into the returned mailbox when the
    /// completion reaches the core.
    pub fn cpu_mmio_read(
        &self,
        core: usize,
        pa: PhysAddr,
        len: u64,
        purpose: Purpose,
    ) -> Result<Rc<Mailbox<Vec<u8>>>, MmioError> {
        let f = &self.0;
        let (w, hdr) = f.mmio_target(pa, len)?;
        let now = f.sim.now();
        let mut st = f.state.borrow_mut();
        let target = st.topo.endpoint[w.dev.0 as usize];
        let down = st.topo.down(ROOT, target);
        let up = st.topo.up(target, ROOT);
        let rc_latency = st.rc.cfg.latency();
        let (_, arrive) = st.send(
            &down,
            now,
            now + rc_latency,
            hdr,
            0,
            CreditClass::NonPosted,
            purpose,
            Duration::ZERO,
        );
        let cpl_hdr = f.devices.borrow()[w.dev.0 as usize].completion_header;
        drop(st);
        let reply = Rc::new(Mailbox::new(&f.sim));
        let out = reply.clone();
        let offset = pa.0 - w.base;
        let now_issued = now;
        f.schedule(arrive, move |f| {
            let mut data = vec![0u8; len as usize];
            let mut turnaround = 0;
            f.with_device(w.dev, |d, cx| {
                d.bar_read(cx, Requester::Cpu { core }, w.bar, offset, &mut data);
                turnaround = d.bar_read_turnaround_ps();
            });
            let now = f.sim.now();
            let (_, back) = f.state.borrow_mut().send(
                &up,
                now,
                now + Duration::from_ps(turnaround),
                cpl_hdr,
                tlp::dword_payload_bytes(len),
                CreditClass::Completion,
                purpose,
                Duration::ZERO,
            );
            f.log_txn(
                TxnKind::Read,
                Party::Cpu,
                Party::Device(w.dev),
                now_issued,
                back + rc_latency,
                len,
                purpose,
            );
            out.push_at(back + rc_latency, data);
        });
        Ok(reply)
    }
}
