//! The kernel's part of RDMA (what `ib_uverbs` and mlx5's kernel driver do
//! for a ConnectX): attach the NIC, own its QP context table, and on a
//! process's request create a queue pair or register memory. Everything
//! after that — posting WQEs, ringing doorbells, polling completions — is
//! the process's own, with no system call ([`nextio_lib`]'s `rdma`).
//!
//! * QP creation pins the QP's send, receive and completion rings in
//!   kernel memory for the NIC (its I/O address is its physical one,
//!   distinct for every process, mapped in the NIC's IOMMU domain) and
//!   maps them into the process; writes the QP's context (rings, the
//!   process's protection domain, queue key) into the NIC's table in host
//!   memory; and maps the QP's doorbell page — that page only — into the
//!   process, uncached.
//! * Memory registration pins a buffer the same way and registers it with
//!   the NIC under the process's protection domain (one per process),
//!   returning its local key.
//!
//! Invariants: a process's doorbell mappings are only of QPs it created; a
//! QP's WQEs can name only memory its own process registered (the NIC
//! checks the key against the QP's domain); the table entry of a QP is
//! written before its doorbell page is mapped, so the NIC never fetches a
//! context that is not there. These control-path calls are untimed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use nextio_hw::fabric::DeviceHandle;
use nextio_hw::mem::{PhysAddr, VirtAddr};
use nextio_hw::nic::rdma::{
    CONTEXT_BYTES, CQE_BYTES, DOORBELL_PAGE_BYTES, MemoryRegion, QpContext, RECV_WQE_BYTES,
    RdmaNic, RdmaNicConfig, SEND_WQE_BYTES, regs,
};
use thiserror::Error;

use crate::kernel::{OsError, Pid};
use crate::kmem::{self, KernelDma};
use crate::{Host, HostError, Process};

/// Ring sizes of one QP (entries; an experiment's choice of shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QpSizes {
    pub sq_entries: u32,
    pub rq_entries: u32,
    pub cq_entries: u32,
}

impl QpSizes {
    /// `sq` send and `rq` receive entries, a CQ with room for both.
    pub fn new(sq: u32, rq: u32) -> QpSizes {
        QpSizes {
            sq_entries: sq,
            rq_entries: rq,
            cq_entries: sq.saturating_add(rq),
        }
    }
}

/// What a process gets from QP creation: where it sees its rings and
/// doorbells, and the names it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QpResources {
    pub qpn: u32,
    pub pd: u32,
    pub qkey: u32,
    pub sizes: QpSizes,
    pub sq: VirtAddr,
    pub rq: VirtAddr,
    pub cq: VirtAddr,
    /// The QP's doorbell page.
    pub doorbell: VirtAddr,
}

/// A registered memory region as the process sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mr {
    pub lkey: u32,
    pub va: VirtAddr,
    /// Where the NIC reaches it.
    pub iova: u64,
    pub len: u64,
}

impl Mr {
    /// The bus address of `va`, if it lies in the region.
    pub fn iova_of(&self, va: VirtAddr) -> Option<u64> {
        (va.0 >= self.va.0 && va.0 < self.va.0 + self.len).then(|| self.iova + (va.0 - self.va.0))
    }
}

#[derive(Debug, Error)]
pub enum RdmaError {
    #[error(transparent)]
    Os(#[from] OsError),
    #[error(transparent)]
    Nic(#[from] nextio_hw::nic::rdma::RdmaNicError),
    #[error("invalid queue pair sizes {0:?}")]
    Sizes(QpSizes),
}

#[derive(Default)]
struct State {
    /// Protection domain of each process.
    pds: BTreeMap<Pid, u32>,
    /// Owner of each QP.
    owners: BTreeMap<u32, Pid>,
}

/// The RDMA NIC's kernel driver on one host.
#[derive(Clone)]
pub struct RdmaDriver {
    host: Host,
    nic: DeviceHandle<RdmaNic>,
    table: KernelDma,
    state: Rc<RefCell<State>>,
}

impl RdmaDriver {
    /// Attach an RDMA NIC built from `cfg` in the host's NIC slot and give
    /// it its context table.
    pub fn attach(host: &Host, cfg: RdmaNicConfig) -> Result<RdmaDriver, HostError> {
        let invalid = |e: nextio_hw::nic::rdma::RdmaNicError| OsError::Invalid(e.to_string());
        let max = cfg.max_qps;
        let nic = host.attach_nic(RdmaNic::new(cfg).map_err(invalid)?)?;
        let table = {
            let mut k = host.kernel().borrow_mut();
            kmem::dma_alloc(&mut k, nic.id, max as u64 * CONTEXT_BYTES)?
        };
        nic.borrow_mut()
            .set_context_table(table.iova, max)
            .map_err(invalid)?;
        Ok(RdmaDriver {
            host: host.clone(),
            nic,
            table,
            state: Rc::default(),
        })
    }

    pub fn nic(&self) -> &DeviceHandle<RdmaNic> {
        &self.nic
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The protection domain of `pid` (one per process).
    fn pd_of(&self, pid: Pid) -> u32 {
        let mut st = self.state.borrow_mut();
        let next = st.pds.len() as u32 + 1;
        *st.pds.entry(pid).or_insert(next)
    }

    /// Pinned kernel memory for the NIC of at least `bytes`, mapped into `pid`.
    fn pinned(&self, pid: Pid, bytes: u64) -> Result<(KernelDma, VirtAddr), OsError> {
        let mut k = self.host.kernel().borrow_mut();
        let mem = kmem::dma_alloc(&mut k, self.nic.id, bytes)?;
        let va = k.map_frames(pid, PhysAddr(mem.iova), mem.len)?;
        Ok((mem, va))
    }

    /// `ibv_create_qp` (UD) by `p`: rings, context, doorbell page.
    pub fn create_qp(
        &self,
        p: &Process,
        sizes: QpSizes,
        qkey: u32,
    ) -> Result<QpResources, RdmaError> {
        if sizes.sq_entries == 0 || sizes.rq_entries == 0 || sizes.cq_entries == 0 {
            return Err(RdmaError::Sizes(sizes));
        }
        let page = |b: u64| b.next_multiple_of(DOORBELL_PAGE_BYTES);
        let sq_bytes = page(sizes.sq_entries as u64 * SEND_WQE_BYTES);
        let rq_bytes = page(sizes.rq_entries as u64 * RECV_WQE_BYTES);
        let cq_bytes = page(sizes.cq_entries as u64 * CQE_BYTES);
        let (mem, va) = self.pinned(p.pid(), sq_bytes + rq_bytes + cq_bytes)?;
        let pd = self.pd_of(p.pid());
        let qpn = self.nic.borrow_mut().create_qp()?;
        let ctx = QpContext {
            sq: mem.iova,
            rq: mem.iova + sq_bytes,
            cq: mem.iova + sq_bytes + rq_bytes,
            sq_entries: sizes.sq_entries,
            rq_entries: sizes.rq_entries,
            cq_entries: sizes.cq_entries,
            pd,
            qkey,
        };
        let entry = self
            .nic
            .borrow()
            .context_address(qpn)
            .ok_or(OsError::Invalid("QP beyond the context table".into()))?;
        {
            let k = self.host.kernel().borrow();
            let mut m = k.bus().memory.borrow_mut();
            m.phys
                .write(PhysAddr(entry), &ctx.encode())
                .map_err(|e| OsError::Invalid(e.to_string()))?;
        }
        let doorbell = p.map_bar(self.nic.id, 0, regs::page_offset(qpn), DOORBELL_PAGE_BYTES)?;
        self.state.borrow_mut().owners.insert(qpn, p.pid());
        Ok(QpResources {
            qpn,
            pd,
            qkey,
            sizes,
            sq: va,
            rq: va.offset(sq_bytes),
            cq: va.offset(sq_bytes + rq_bytes),
            doorbell,
        })
    }

    /// `ibv_reg_mr` by `p`: `bytes` of pinned memory registered under its
    /// protection domain.
    pub fn reg_mr(&self, p: &Process, bytes: u64) -> Result<Mr, RdmaError> {
        let (mem, va) = self.pinned(p.pid(), bytes)?;
        let pd = self.pd_of(p.pid());
        let lkey = self.nic.borrow_mut().register_mr(MemoryRegion {
            pd,
            addr: mem.iova,
            len: mem.len,
        })?;
        Ok(Mr {
            lkey,
            va,
            iova: mem.iova,
            len: mem.len,
        })
    }

    /// The process that created QP `qpn`.
    pub fn owner(&self, qpn: u32) -> Option<Pid> {
        self.state.borrow().owners.get(&qpn).copied()
    }

    /// Bus address of the context table (for tests and traces).
    pub fn context_table(&self) -> u64 {
        self.table.iova
    }
}
