//! What cores initiate: MMIO writes (posted) and reads (non-posted) to a
//! device's BAR, from the core through the root complex and down the tree.
//!
//! Invariants: an MMIO access is one TLP (at most the device link's MPS);
//! an address no BAR decodes is refused before anything is sent; a read's
//! completion reaches the core after the device answered, never before.

use std::rc::Rc;

use nextio_engine::{Duration, Mailbox, Time};
use thiserror::Error;

use crate::device::Requester;
use crate::mem::PhysAddr;
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
