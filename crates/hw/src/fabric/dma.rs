//! What devices initiate: DMA writes and reads by bus address, and MSI-X
//! messages, routed and timed across the fabric.
//!
//! Routing of a device's request to `addr`:
//! 1. if `addr` is in another device's BAR and the lowest switch above
//!    both forwards peer to peer directly, straight across that switch
//!    (no IOMMU, as with ACS redirect off);
//! 2. otherwise up to the root complex, where the IOMMU translates `addr`
//!    (with the IOMMU off it is already physical); the result is host
//!    memory, another device's BAR (peer to peer through the root complex),
//!    or nothing (an Unsupported Request).
//!
//! Invariants: a request whose translation faults or that routes nowhere
//! moves no byte, is counted in the fabric's `drop.*` counters and is
//! reported to its device with [`crate::device::Device::dma_fault`]; a
//! read's data is delivered exactly once, when its last completion arrives.
//!
//! Simplifications, each where it acts: a write's bytes land together when
//! its last TLP lands, and a read's bytes are sampled when its completions
//! reach the device (no nextio model rewrites a buffer while a device
//! reads it); translation and cache lookups happen when the request is
//! issued, in issue order, and are charged at the time the request reaches
//! the root complex.

use std::rc::Rc;

use nextio_engine::{Duration, Time};
use thiserror::Error;

use crate::device::{DeviceId, Requester};
use crate::mem::{FaultKind, PhysAddr};
use crate::pcie::credits::CreditClass;
use crate::pcie::{Purpose, tlp};

use super::topology::{BarWindow, Path, ROOT};
use super::txlog::{Party, TxnKind};
use super::{FabricInner, State};

/// Largest single DMA a device may issue: bounds the memory a bad
/// descriptor can make the simulator allocate.
pub const MAX_DMA_BYTES: u64 = 16 << 20;

/// A DMA request that could not even be issued.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DmaError {
    #[error("a DMA of zero bytes")]
    ZeroLength,
    #[error("a DMA of {len} B exceeds the {MAX_DMA_BYTES} B a device may issue at once")]
    TooLong { len: u64 },
    #[error("a DMA of {len} B at {addr:#x} runs past the end of the address space")]
    AddressOverflow { addr: u64, len: u64 },
    #[error("address {addr:#x} needs 64-bit addressing, but the link uses 32-bit requests")]
    Needs64Bit { addr: u64 },
    #[error("device {0:?} is not attached")]
    NoSuchDevice(DeviceId),
}

/// Why an issued DMA moved no byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaFault {
    /// The IOMMU refused the address: not mapped in the device's domain
    /// (or the device has none), or a write to a read-only mapping.
    Iommu { iova: u64, kind: FaultKind },
    /// Nothing answers the (translated) address.
    UnsupportedRequest { addr: u64 },
}

impl DmaFault {
    fn counter(&self) -> &'static str {
        match self {
            DmaFault::Iommu { .. } => "drop.iommu_fault",
            DmaFault::UnsupportedRequest { .. } => "drop.unsupported_request",
        }
    }
}

/// The address space a DMA's address is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// A bus address: an I/O virtual address of the device's IOMMU
    /// domain (or physical, with the IOMMU off).
    Domain,
    /// A virtual address of the process whose page table the OS bound to
    /// this PASID of the device (shared virtual addressing). Always sent
    /// to the root complex untranslated, never straight across a switch.
    Pasid(u32),
    /// A physical address the device obtained with an ATS translation
    /// request ([`super::DeviceCtx::ats_translate`]): the IOMMU lets it
    /// pass untranslated (PCIe AT = Translated), and a switch may route
    /// it peer to peer directly.
    Translated,
}

/// An address translated for a device by the IOMMU (an ATS completion):
/// the physical address of the byte asked for, the base page it lies in,
/// whether the page may be written, and when the answer reaches the
/// device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtsTranslation {
    pub pa: u64,
    pub page_va: u64,
    pub page_bytes: u64,
    pub writable: bool,
    pub ready: Time,
}

/// A posted write on its way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posted {
    /// When the last TLP left the device's port.
    pub sent_at: Time,
    /// When the write's bytes take effect at their destination (memory or
    /// a peer's BAR); the issue time if none does (a fault).
    pub landed_at: Time,
}

/// Where the requests of one device DMA go.
enum Route {
    /// Across a switch to a peer's BAR.
    Direct { path: Path, window: BarWindow },
    /// Up to the root complex.
    Host { up: Path },
}

/// Where a translated address leads, at the root complex.
enum Target {
    Memory(PhysAddr),
    Peer(BarWindow),
    Nothing,
}

impl State {
    fn route_in(&self, from: super::NodeId, space: Space, addr: u64) -> Route {
        match space {
            Space::Domain | Space::Translated => self.route(from, addr),
            Space::Pasid(_) => Route::Host {
                up: self.topo.up(from, ROOT),
            },
        }
    }

    fn translate(
        &mut self,
        mem: &crate::memory::MemorySystem,
        dev: DeviceId,
        space: Space,
        addr: u64,
        write: bool,
        dram_extra: Duration,
    ) -> Result<(PhysAddr, Duration), super::iommu::IommuFault> {
        match space {
            Space::Domain => self.iommu.translate(mem, dev, addr, write, dram_extra),
            Space::Pasid(p) => self
                .iommu
                .translate_pasid(mem, dev, p, addr, write, dram_extra),
            Space::Translated => Ok((PhysAddr(addr), Duration::ZERO)),
        }
    }

    fn route(&self, from: super::NodeId, addr: u64) -> Route {
        if let Some(w) = self.topo.decode(addr) {
            let target = self.topo.endpoint[w.dev.0 as usize];
            if let Some(sw) = self.topo.direct_p2p_switch(from, target) {
                return Route::Direct {
                    path: self.topo.up(from, sw).then(&self.topo.down(sw, target)),
                    window: w,
                };
            }
        }
        Route::Host {
            up: self.topo.up(from, ROOT),
        }
    }

    fn target(&self, pa: PhysAddr) -> Target {
        if pa.0 < self.dram_bytes {
            Target::Memory(pa)
        } else if let Some(w) = self.topo.decode(pa.0) {
            Target::Peer(w)
        } else {
            Target::Nothing
        }
    }
}

/// What a device's requests are framed with, copied out of its entry.
#[derive(Clone, Copy)]
struct Framing {
    node: super::NodeId,
    mps: u64,
    mrrs: u64,
    chunk: u64,
    req_hdr: u64,
    cpl_hdr: u64,
}

impl FabricInner {
    fn framing(&self, dev: DeviceId, addr: u64, len: u64) -> Result<Framing, DmaError> {
        if len == 0 {
            return Err(DmaError::ZeroLength);
        }
        if len > MAX_DMA_BYTES {
            return Err(DmaError::TooLong { len });
        }
        let last = addr
            .checked_add(len - 1)
            .ok_or(DmaError::AddressOverflow { addr, len })?;
        let devices = self.devices.borrow();
        let d = devices
            .get(dev.0 as usize)
            .ok_or(DmaError::NoSuchDevice(dev))?;
        if !d.addr64 && last > u32::MAX as u64 {
            return Err(DmaError::Needs64Bit { addr: last });
        }
        Ok(Framing {
            node: d.node,
            mps: d.mps,
            mrrs: d.mrrs,
            chunk: d.completion_chunk,
            req_hdr: d.request_header,
            cpl_hdr: d.completion_header,
        })
    }

    fn report_fault(self: &Rc<Self>, dev: DeviceId, at: Time, tag: u64, fault: DmaFault) {
        self.state.borrow_mut().counters.inc(fault.counter());
        self.schedule(at, move |f| {
            f.with_device(dev, |d, cx| d.dma_fault(cx, tag, fault));
        });
    }

    /// See [`super::DeviceCtx::dma_write`].
    pub(super) fn dma_write(
        self: &Rc<Self>,
        dev: DeviceId,
        space: Space,
        addr: u64,
        data: &[u8],
        purpose: Purpose,
        tag: u64,
    ) -> Result<Posted, DmaError> {
        let fr = self.framing(dev, addr, data.len() as u64)?;
        let now = self.sim.now();
        let mut st = self.state.borrow_mut();
        let route = st.route_in(fr.node, space, addr);
        let up = match route {
            Route::Direct { path, window } => {
                let mut sent = now;
                let mut arrived = now;
                for (_, n) in tlp::pieces(addr, data.len() as u64, fr.mps) {
                    let (left, arrive) = st.send(
                        &path,
                        now,
                        now,
                        fr.req_hdr,
                        n,
                        CreditClass::Posted,
                        purpose,
                        Duration::ZERO,
                    );
                    sent = sent.max(left);
                    arrived = arrived.max(arrive);
                }
                drop(st);
                self.log_txn(
                    TxnKind::Write,
                    Party::Device(dev),
                    Party::Device(window.dev),
                    now,
                    arrived,
                    data.len() as u64,
                    purpose,
                );
                self.peer_write(dev, window, addr, data.to_vec(), arrived);
                return Ok(Posted {
                    sent_at: sent,
                    landed_at: arrived,
                });
            }
            Route::Host { up } => up,
        };
        let rc_latency = st.rc.cfg.latency();
        let dram_extra = Duration::from_ps(st.rc.cfg.dram_extra_ps);
        let ddio_off = self.memory.borrow().caches.config().ddio_ways == 0;
        let mut sent = now;
        let mut landing = now;
        let mut writes: Vec<(PhysAddr, usize, usize)> = Vec::new();
        let mut peer: Option<(BarWindow, PhysAddr, Time)> = None;
        let mut fault: Option<(Time, DmaFault)> = None;
        let mut offset = 0usize;
        for (a, n) in tlp::pieces(addr, data.len() as u64, fr.mps) {
            let (left, arrive) = st.send(
                &up,
                now,
                now,
                fr.req_hdr,
                n,
                CreditClass::Posted,
                purpose,
                rc_latency,
            );
            sent = sent.max(left);
            let translated = {
                let mem = self.memory.borrow();
                st.translate(&mem, dev, space, a, true, dram_extra)
            };
            match translated {
                Err(e) => {
                    fault.get_or_insert((
                        arrive,
                        DmaFault::Iommu {
                            iova: e.iova,
                            kind: e.kind,
                        },
                    ));
                }
                Ok((pa, walk)) => {
                    let at_rc = arrive + walk;
                    match st.target(pa) {
                        Target::Memory(pa) => {
                            let lines = if ddio_off {
                                self.memory.borrow().caches.lines_of(pa, n)
                            } else {
                                0
                            };
                            landing = landing.max(st.rc.write(at_rc, lines));
                            writes.push((pa, offset, n as usize));
                        }
                        Target::Peer(w) => {
                            let down = st.topo.down(ROOT, st.topo.endpoint[w.dev.0 as usize]);
                            let (_, at_peer) = st.send(
                                &down,
                                now,
                                at_rc + rc_latency,
                                fr.req_hdr,
                                n,
                                CreditClass::Posted,
                                purpose,
                                Duration::ZERO,
                            );
                            let first = peer.map_or(pa, |(_, p, _)| p);
                            let last = peer.map_or(at_peer, |(_, _, t)| t.max(at_peer));
                            peer = Some((w, first, last));
                        }
                        Target::Nothing => {
                            fault.get_or_insert((
                                at_rc,
                                DmaFault::UnsupportedRequest { addr: pa.0 },
                            ));
                        }
                    }
                }
            }
            offset += n as usize;
        }
        drop(st);
        if !writes.is_empty() {
            landing = self.order_posted(dev, landing);
        }
        if let Some((at, f)) = fault {
            self.report_fault(dev, at, tag, f);
        }
        if let Some((window, first_pa, at)) = peer {
            // A write translated into a peer's BAR goes there whole.
            self.log_txn(
                TxnKind::Write,
                Party::Device(dev),
                Party::Device(window.dev),
                now,
                at,
                data.len() as u64,
                purpose,
            );
            self.peer_write(dev, window, first_pa.0, data.to_vec(), at);
        }
        if !writes.is_empty() {
            self.log_txn(
                TxnKind::Write,
                Party::Device(dev),
                Party::Memory,
                now,
                landing,
                data.len() as u64,
                purpose,
            );
            let bytes = data.to_vec();
            self.schedule(landing, move |f| f.land_writes(&bytes, &writes));
        }
        let landed_at = peer.map_or(landing, |(_, _, at)| at.max(landing));
        Ok(Posted {
            sent_at: sent,
            landed_at,
        })
    }

    /// A posted write of `dev` that would take effect at `at` takes effect
    /// no earlier than the device's previous one; returns when it does.
    fn order_posted(&self, dev: DeviceId, at: Time) -> Time {
        let mut devices = self.devices.borrow_mut();
        match devices.get_mut(dev.0 as usize) {
            Some(d) => {
                d.posted_done = d.posted_done.max(at);
                d.posted_done
            }
            None => at,
        }
    }

    /// The bytes of a write land in host memory (now).
    fn land_writes(self: &Rc<Self>, bytes: &[u8], writes: &[(PhysAddr, usize, usize)]) {
        let mut evicted = 0;
        {
            let mut mem = self.memory.borrow_mut();
            for &(pa, off, n) in writes {
                match mem.device_write(pa, &bytes[off..off + n]) {
                    Ok(cost) if mem.caches.config().ddio_ways > 0 => evicted += cost.dram_writes,
                    Ok(_) => {}
                    Err(_) => self.state.borrow_mut().counters.inc("drop.memory_error"),
                }
            }
        }
        if evicted > 0 {
            let now = self.sim.now();
            self.state.borrow_mut().rc.write_back(now, evicted);
        }
    }

    fn peer_write(
        self: &Rc<Self>,
        from: DeviceId,
        window: BarWindow,
        addr: u64,
        data: Vec<u8>,
        at: Time,
    ) {
        let offset = addr - window.base;
        if offset.saturating_add(data.len() as u64) > window.bytes {
            self.state
                .borrow_mut()
                .counters
                .inc("drop.peer_write_past_bar");
            return;
        }
        self.state.borrow_mut().counters.inc("peer_writes");
        self.schedule(at, move |f| {
            f.with_device(window.dev, |d, cx| {
                d.bar_write(cx, Requester::Device(from), window.bar, offset, &data)
            });
        });
    }

    /// See [`super::DeviceCtx::ats_translate`].
    pub(super) fn ats_translate(
        self: &Rc<Self>,
        dev: DeviceId,
        space: Space,
        addr: u64,
        write: bool,
    ) -> Result<AtsTranslation, DmaFault> {
        let now = self.sim.now();
        let (node, req_hdr, cpl_hdr) = {
            let devices = self.devices.borrow();
            let d = devices
                .get(dev.0 as usize)
                .ok_or(DmaFault::UnsupportedRequest { addr })?;
            (d.node, d.request_header, d.completion_header)
        };
        let mut st = self.state.borrow_mut();
        let up = st.topo.up(node, ROOT);
        let down = st.topo.down(ROOT, node);
        let rc_latency = st.rc.cfg.latency();
        let dram_extra = Duration::from_ps(st.rc.cfg.dram_extra_ps);
        let (_, arrive) = st.send(
            &up,
            now,
            now,
            req_hdr,
            0,
            CreditClass::NonPosted,
            "translation",
            rc_latency,
        );
        let translated = match space {
            Space::Translated => Ok((PhysAddr(addr), Duration::ZERO)),
            _ => {
                let mem = self.memory.borrow();
                st.translate(&mem, dev, space, addr, write, dram_extra)
            }
        };
        // The completion carries one 8-byte translation (or an error).
        let payload = if translated.is_ok() { 8 } else { 0 };
        let (_, back) = st.send(
            &down,
            now,
            arrive + rc_latency,
            cpl_hdr,
            payload,
            CreditClass::Completion,
            "translation",
            Duration::ZERO,
        );
        st.counters.inc("ats_requests");
        match translated {
            Ok((pa, walk)) => {
                let ready = back + walk;
                // The reach of the answer: to the end of the base page.
                // (The IOMMU may map larger pages; the device caches 4 KiB.)
                let page_va = addr - addr % crate::mem::PAGE_BYTES;
                Ok(AtsTranslation {
                    pa: pa.0,
                    page_va,
                    page_bytes: crate::mem::PAGE_BYTES,
                    writable: write,
                    ready,
                })
            }
            Err(e) => {
                st.counters.inc("ats_faults");
                Err(DmaFault::Iommu {
                    iova: e.iova,
                    kind: e.kind,
                })
            }
        }
    }

    /// See [`super::DeviceCtx::read_issue_at`].
    pub(super) fn read_issue_at(&self, dev: DeviceId) -> Time {
        let now = self.sim.now();
        let devices = self.devices.borrow();
        let Some(d) = devices.get(dev.0 as usize) else {
            return now;
        };
        let st = self.state.borrow();
        let up_free = st
            .topo
            .nodes
            .get(d.node.0 as usize)
            .and_then(|n| n.uplink)
            .map_or(now, |l| {
                st.topo.links[l].idle_at(crate::pcie::Direction::Upstream)
            });
        d.tags.issue_at(now).max(up_free).max(now)
    }

    fn acquire_tag(&self, dev: DeviceId, ready: Time) -> Time {
        let mut devices = self.devices.borrow_mut();
        devices
            .get_mut(dev.0 as usize)
            .map_or(ready, |d| d.tags.acquire(ready))
    }

    fn release_tag(&self, dev: DeviceId, at: Time) {
        if let Some(d) = self.devices.borrow_mut().get_mut(dev.0 as usize) {
            d.tags.release(at);
        }
    }

    /// See [`super::DeviceCtx::dma_read`].
    pub(super) fn dma_read(
        self: &Rc<Self>,
        dev: DeviceId,
        space: Space,
        addr: u64,
        len: u64,
        purpose: Purpose,
        tag: u64,
    ) -> Result<(), DmaError> {
        let fr = self.framing(dev, addr, len)?;
        let now = self.sim.now();
        let route = self.state.borrow().route_in(fr.node, space, addr);
        let up = match route {
            Route::Direct { path, window } => {
                let ready = self.acquire_tag(dev, now);
                let (_, at_peer) = self.state.borrow_mut().send(
                    &path,
                    now,
                    ready,
                    fr.req_hdr,
                    0,
                    CreditClass::NonPosted,
                    purpose,
                    Duration::ZERO,
                );
                let reverse = {
                    let st = self.state.borrow();
                    let target = st.topo.endpoint[window.dev.0 as usize];
                    let sw = st.topo.direct_p2p_switch(fr.node, target).unwrap_or(ROOT);
                    st.topo.up(target, sw).then(&st.topo.down(sw, fr.node))
                };
                self.peer_read(dev, window, addr, len, at_peer, reverse, fr, purpose, tag);
                return Ok(());
            }
            Route::Host { up } => up,
        };
        let mut st = self.state.borrow_mut();
        let rc_latency = st.rc.cfg.latency();
        let dram_extra = Duration::from_ps(st.rc.cfg.dram_extra_ps);
        let down = st.topo.down(ROOT, fr.node);
        let mut arrived = now;
        let mut reads: Vec<(PhysAddr, usize, usize)> = Vec::new();
        let mut fault: Option<DmaFault> = None;
        let mut peer: Option<(BarWindow, u64, Time)> = None;
        let mut offset = 0usize;
        for (req_addr, req_bytes) in tlp::pieces(addr, len, fr.mrrs) {
            drop(st);
            let ready = self.acquire_tag(dev, now);
            st = self.state.borrow_mut();
            let (_, arrive) = st.send(
                &up,
                now,
                ready,
                fr.req_hdr,
                0,
                CreditClass::NonPosted,
                purpose,
                rc_latency,
            );
            let translated = {
                let mem = self.memory.borrow();
                st.translate(&mem, dev, space, req_addr, false, dram_extra)
            };
            let done = match translated {
                Err(e) => {
                    fault.get_or_insert(DmaFault::Iommu {
                        iova: e.iova,
                        kind: e.kind,
                    });
                    // An error completion (no data) comes back.
                    st.send(
                        &down,
                        now,
                        arrive + rc_latency,
                        fr.cpl_hdr,
                        0,
                        CreditClass::Completion,
                        purpose,
                        Duration::ZERO,
                    )
                    .1
                }
                Ok((pa, walk)) => match st.target(pa) {
                    Target::Memory(pa) => {
                        let cost = self.memory.borrow_mut().device_read_cost(pa, req_bytes);
                        let data_ready = st.rc.read(arrive + walk, cost);
                        let mut last = data_ready;
                        for (_, n) in tlp::pieces(req_addr, req_bytes, fr.chunk) {
                            let (_, a) = st.send(
                                &down,
                                now,
                                data_ready,
                                fr.cpl_hdr,
                                n,
                                CreditClass::Completion,
                                purpose,
                                Duration::ZERO,
                            );
                            last = last.max(a);
                        }
                        reads.push((pa, offset, req_bytes as usize));
                        last
                    }
                    Target::Peer(w) => {
                        // Only a read that starts in a peer's BAR is sent
                        // there (whole); see the module doc.
                        if offset == 0 {
                            peer = Some((w, pa.0, arrive + walk + rc_latency));
                        } else {
                            fault.get_or_insert(DmaFault::UnsupportedRequest { addr: pa.0 });
                        }
                        arrive
                    }
                    Target::Nothing => {
                        fault.get_or_insert(DmaFault::UnsupportedRequest { addr: pa.0 });
                        st.send(
                            &down,
                            now,
                            arrive + walk + rc_latency,
                            fr.cpl_hdr,
                            0,
                            CreditClass::Completion,
                            purpose,
                            Duration::ZERO,
                        )
                        .1
                    }
                },
            };
            drop(st);
            self.release_tag(dev, done);
            st = self.state.borrow_mut();
            arrived = arrived.max(done);
            offset += req_bytes as usize;
            if peer.is_some() {
                break;
            }
        }
        if let Some((window, pa, at_rc)) = peer {
            let target = st.topo.endpoint[window.dev.0 as usize];
            let to_peer = st.topo.down(ROOT, target);
            let (_, at_peer) = st.send(
                &to_peer,
                now,
                at_rc,
                fr.req_hdr,
                0,
                CreditClass::NonPosted,
                purpose,
                Duration::ZERO,
            );
            let back = st.topo.up(target, ROOT).then(&down);
            drop(st);
            self.peer_read(dev, window, pa, len, at_peer, back, fr, purpose, tag);
            return Ok(());
        }
        drop(st);
        if let Some(f) = fault {
            self.report_fault(dev, arrived, tag, f);
            return Ok(());
        }
        self.log_txn(
            TxnKind::Read,
            Party::Device(dev),
            Party::Memory,
            now,
            arrived,
            len,
            purpose,
        );
        self.schedule(arrived, move |f| {
            let mut data = vec![0u8; len as usize];
            {
                let mem = f.memory.borrow();
                for &(pa, off, n) in &reads {
                    if mem.device_read_bytes(pa, &mut data[off..off + n]).is_err() {
                        drop(mem);
                        f.report_fault(
                            dev,
                            f.sim.now(),
                            tag,
                            DmaFault::UnsupportedRequest { addr: pa.0 },
                        );
                        return;
                    }
                }
            }
            f.with_device(dev, |d, cx| d.dma_read_done(cx, tag, &data));
        });
        Ok(())
    }

    /// A read of `len` bytes at `addr` in a peer's BAR, arriving there at
    /// `at`: the peer answers, its completions come back along `back`.
    #[allow(clippy::too_many_arguments)]
    fn peer_read(
        self: &Rc<Self>,
        from: DeviceId,
        window: BarWindow,
        addr: u64,
        len: u64,
        at: Time,
        back: Path,
        fr: Framing,
        purpose: Purpose,
        tag: u64,
    ) {
        let offset = addr - window.base;
        if offset.saturating_add(len) > window.bytes {
            self.report_fault(from, at, tag, DmaFault::UnsupportedRequest { addr });
            return;
        }
        self.state.borrow_mut().counters.inc("peer_reads");
        let issued = self.sim.now();
        self.schedule(at, move |f| {
            let mut data = vec![0u8; len as usize];
            let mut turnaround = 0;
            f.with_device(window.dev, |d, cx| {
                d.bar_read(cx, Requester::Device(from), window.bar, offset, &mut data);
                turnaround = d.bar_read_turnaround_ps();
            });
            let now = f.sim.now();
            let ready = now + Duration::from_ps(turnaround);
            let mut arrived = ready;
            {
                let mut st = f.state.borrow_mut();
                for (_, n) in tlp::pieces(addr, len, fr.chunk) {
                    let (_, a) = st.send(
                        &back,
                        now,
                        ready,
                        fr.cpl_hdr,
                        n,
                        CreditClass::Completion,
                        purpose,
                        Duration::ZERO,
                    );
                    arrived = arrived.max(a);
                }
            }
            f.release_tag(from, arrived);
            f.log_txn(
                TxnKind::Read,
                Party::Device(from),
                Party::Device(window.dev),
                issued,
                arrived,
                len,
                purpose,
            );
            f.schedule(arrived, move |f| {
                f.with_device(from, |d, cx| d.dma_read_done(cx, tag, &data));
            });
        });
    }

    /// See [`super::DeviceCtx::msix`].
    pub(super) fn msix(self: &Rc<Self>, dev: DeviceId, vector: u16) {
        let now = self.sim.now();
        let (node, hdr, msg) = {
            let devices = self.devices.borrow();
            let Some(d) = devices.get(dev.0 as usize) else {
                return;
            };
            (d.node, d.request_header, d.msix.get(&vector).copied())
        };
        let Some(msg) = msg else {
            self.state
                .borrow_mut()
                .counters
                .inc("drop.msix_unconfigured");
            return;
        };
        let mut st = self.state.borrow_mut();
        let up = st.topo.up(node, ROOT);
        let rc_latency = st.rc.cfg.latency();
        // A 4-byte posted write to the interrupt address range, behind the
        // device's earlier writes on the same lanes.
        let (_, arrive) = st.send(
            &up,
            now,
            now,
            hdr,
            4,
            CreditClass::Posted,
            "interrupt",
            rc_latency,
        );
        st.counters.inc("msix_messages");
        drop(st);
        // Behind every write the device posted before it.
        let at = self.order_posted(dev, arrive + rc_latency);
        self.log_txn(
            TxnKind::Interrupt,
            Party::Device(dev),
            Party::Cpu,
            now,
            at,
            4,
            "interrupt",
        );
        self.schedule(at, move |f| {
            let sink = f.interrupt_sink.borrow().clone();
            match sink {
                Some(sink) => sink(msg),
                None => f.state.borrow_mut().counters.inc("drop.msix_no_controller"),
            }
        });
    }
}
