//! [`DeviceCtx`], the one way a device acts on the world, and the dispatch
//! of events to devices.
//!
//! A device is borrowed mutably only while one of its handlers runs; every
//! action it takes through the context only *schedules* events (nothing is
//! delivered synchronously), so a handler is never re-entered and a device
//! can never observe another device mid-handler.

use std::rc::{Rc, Weak};

use nextio_engine::{Duration, Time};

use crate::device::{Device, DeviceId};
use crate::ethernet::FrameSink;
use crate::packet::Frame;
use crate::pcie::Purpose;

use super::FabricInner;
use super::dma::{AtsTranslation, DmaError, DmaFault, Posted, Space};

/// What a device handler may do. Handed to every [`Device`] method.
pub struct DeviceCtx<'a> {
    pub(super) fabric: &'a Rc<FabricInner>,
    pub(super) dev: DeviceId,
}

impl DeviceCtx<'_> {
    /// The current simulated time.
    pub fn now(&self) -> Time {
        self.fabric.sim.now()
    }

    /// This device's id.
    pub fn id(&self) -> DeviceId {
        self.dev
    }

    /// A posted DMA write of `data` to bus address `addr`. The bytes land
    /// when the write arrives; a fault is reported later through
    /// [`Device::dma_fault`] with `tag`. Returns when the last TLP left the
    /// device's port (its transmit buffer is free again).
    pub fn dma_write(
        &mut self,
        addr: u64,
        data: &[u8],
        purpose: Purpose,
        tag: u64,
    ) -> Result<Posted, DmaError> {
        self.fabric
            .dma_write(self.dev, Space::Domain, addr, data, purpose, tag)
    }

    /// [`DeviceCtx::dma_write`] in address space `space`: with
    /// [`Space::Pasid`], `addr` is a virtual address of the process the OS
    /// bound to that PASID, translated by the IOMMU in its page table.
    pub fn dma_write_in(
        &mut self,
        space: Space,
        addr: u64,
        data: &[u8],
        purpose: Purpose,
        tag: u64,
    ) -> Result<Posted, DmaError> {
        self.fabric
            .dma_write(self.dev, space, addr, data, purpose, tag)
    }

    /// A DMA read of `len` bytes at bus address `addr`; the data arrives
    /// through [`Device::dma_read_done`] with `tag` (or a fault through
    /// [`Device::dma_fault`]). Requests wait for free read tags.
    pub fn dma_read(
        &mut self,
        addr: u64,
        len: u64,
        purpose: Purpose,
        tag: u64,
    ) -> Result<(), DmaError> {
        self.fabric
            .dma_read(self.dev, Space::Domain, addr, len, purpose, tag)
    }

    /// [`DeviceCtx::dma_read`] in address space `space` (see
    /// [`DeviceCtx::dma_write_in`]).
    pub fn dma_read_in(
        &mut self,
        space: Space,
        addr: u64,
        len: u64,
        purpose: Purpose,
        tag: u64,
    ) -> Result<(), DmaError> {
        self.fabric
            .dma_read(self.dev, space, addr, len, purpose, tag)
    }

    /// An ATS translation request for `addr` in `space`: the IOMMU walks
    /// the table (its IOTLB first) and answers with the physical address;
    /// the answer is known now and reaches the device at `ready`, when a
    /// careful device may use it (with [`Space::Translated`]). A fault is
    /// returned instead and moved nothing.
    pub fn ats_translate(
        &mut self,
        space: Space,
        addr: u64,
        write: bool,
    ) -> Result<AtsTranslation, DmaFault> {
        self.fabric.ats_translate(self.dev, space, addr, write)
    }

    /// Earliest time a new DMA read could get a tag and the upstream line.
    pub fn read_issue_at(&self) -> Time {
        self.fabric.read_issue_at(self.dev)
    }

    /// Send MSI-X vector `vector` (as programmed by the OS); counted as
    /// `drop.msix_unconfigured` in the fabric if it was never programmed.
    pub fn msix(&mut self, vector: u16) {
        self.fabric.msix(self.dev, vector);
    }

    /// Put `frame` on Ethernet port `port`. Returns when its last bit
    /// arrives at the far end, or the frame back if the port's transmit
    /// queue is full or the port is not connected.
    pub fn send_frame(&mut self, port: usize, frame: Frame) -> Result<Time, Frame> {
        match self.fabric.port_wire(self.dev, port) {
            Some(w) => w.try_send(frame),
            None => Err(frame),
        }
    }

    /// Whether port `port` is connected to a wire at all (a frame
    /// [`DeviceCtx::send_frame`] hands back from an unconnected port will
    /// never find room).
    pub fn port_connected(&self, port: usize) -> bool {
        self.fabric.port_wire(self.dev, port).is_some()
    }

    /// Whether port `port` can take a frame now.
    pub fn port_has_room(&self, port: usize) -> bool {
        self.fabric
            .port_wire(self.dev, port)
            .is_some_and(|w| w.has_room())
    }

    /// Call [`Device::port_ready`] for `port` once it has room again.
    pub fn wake_when_port_ready(&mut self, port: usize) {
        let Some(wire) = self.fabric.port_wire(self.dev, port) else {
            return;
        };
        let at = wire.next_accept();
        let dev = self.dev;
        self.fabric.schedule(at, move |f| {
            f.with_device(dev, |d, cx| d.port_ready(cx, port));
        });
    }

    /// Call [`Device::timer`] with `token` after `delay`.
    pub fn set_timer(&mut self, delay: Duration, token: u64) {
        let dev = self.dev;
        let at = self.now() + delay;
        self.fabric.schedule(at, move |f| {
            f.with_device(dev, |d, cx| d.timer(cx, token));
        });
    }
}

impl FabricInner {
    /// Run `f` on device `dev` with a context for it.
    pub(super) fn with_device(
        self: &Rc<Self>,
        dev: DeviceId,
        f: impl FnOnce(&mut dyn Device, &mut DeviceCtx<'_>),
    ) {
        let d = match self.devices.borrow().get(dev.0 as usize) {
            Some(e) => e.dev.clone(),
            None => return,
        };
        let mut cx = DeviceCtx { fabric: self, dev };
        f(&mut *d.borrow_mut(), &mut cx);
    }

    pub(super) fn port_wire(
        &self,
        dev: DeviceId,
        port: usize,
    ) -> Option<Rc<crate::ethernet::Wire>> {
        self.devices
            .borrow()
            .get(dev.0 as usize)?
            .ports
            .get(port)?
            .clone()
    }
}

/// The receiving end of a wire that ends at a device's port.
pub(super) struct PortSink {
    pub fabric: Weak<FabricInner>,
    pub dev: DeviceId,
    pub port: usize,
}

impl FrameSink for PortSink {
    fn deliver(&self, at: Time, frame: Frame) {
        let Some(fabric) = self.fabric.upgrade() else {
            return;
        };
        let (dev, port) = (self.dev, self.port);
        fabric.schedule(at, move |f| {
            f.with_device(dev, |d, cx| d.frame(cx, port, frame));
        });
    }
}
