//! The device API: what every device model (NIC, DMA engine, accelerator,
//! storage) implements, in the sans-I/O shape of SimBricks' behavioural
//! device models and quinn-proto. A device never holds the simulator,
//! never spawns a task and never touches host memory: it *reacts* — to a
//! write or read of one of its BARs, a DMA read's data arriving, a DMA
//! fault, a frame on one of its Ethernet ports, a port ready to send, or
//! one of its own timers — and *acts* through the [`DeviceCtx`] it is
//! handed: DMA reads and writes by bus address with a purpose label, an
//! MSI-X message, a frame sent, a timer set.
//!
//! The fabric routes every action by address (through switches and the
//! IOMMU, to host memory or to another device's BAR), books its time on
//! each link, and moves its bytes when it arrives — in the same call, so
//! timing and data cannot disagree.
//!
//! Conventions every device keeps, so they compose in one host:
//! * configuration errors are returned by the constructor (`Result`),
//!   never panics; bad register writes and bad descriptors are counted in
//!   the device's [`Counters`] (`bad_register_writes`, `drop.<reason>`);
//! * every unit of work the device accepts ends in exactly one counter
//!   (delivered, or `drop.<reason>`), so conservation can be tested;
//! * DMA addresses are I/O virtual addresses: with the IOMMU on, a device
//!   reaches exactly what the OS mapped into its domain.

use nextio_engine::Counters;

pub use crate::fabric::{DeviceCtx, DmaError, DmaFault, Posted};
use crate::packet::Frame;

/// A device's identity within its host's fabric.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct DeviceId(pub u16);

/// Who issued a transaction a device receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requester {
    /// A core's MMIO access.
    Cpu { core: usize },
    /// Another device's peer-to-peer DMA.
    Device(DeviceId),
}

/// One base address register: a power-of-two window of registers or
/// device memory (PCIe Base Spec §7.5.1.2: BARs are naturally aligned
/// powers of two; 4 KiB is the smallest a page-mapped BAR can usefully be).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarSpec {
    pub bytes: u64,
}

impl BarSpec {
    pub fn new(bytes: u64) -> BarSpec {
        BarSpec {
            bytes: bytes.max(4096).next_power_of_two(),
        }
    }
}

/// A device model. Every method but the BAR accesses has a default that
/// ignores the event, so a device implements only what it reacts to.
pub trait Device {
    /// A short name for errors, counters and traces (`"enso-nic"`).
    fn name(&self) -> &'static str;

    /// The device's BARs, sized; the fabric assigns their addresses.
    fn bars(&self) -> Vec<BarSpec>;

    /// How many Ethernet ports it has.
    fn ports(&self) -> usize {
        0
    }

    /// A write of `data` to `offset` in BAR `bar` arrived.
    fn bar_write(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        from: Requester,
        bar: u8,
        offset: u64,
        data: &[u8],
    );

    /// A read of `out.len()` bytes at `offset` in BAR `bar` arrived; fill
    /// `out` (it starts zeroed). The completion leaves after
    /// [`Device::bar_read_turnaround_ps`].
    fn bar_read(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        from: Requester,
        bar: u8,
        offset: u64,
        out: &mut [u8],
    );

    /// A deferrable memory write — what ENQCMD/ENQCMDS send (PCIe DMWr) —
    /// of `data` to `offset` in BAR `bar` arrived; return whether the
    /// device took it. Unlike a posted write it is answered: a refusal
    /// (a shared queue full) tells the submitter to retry. A device with
    /// no shared queues refuses every one.
    fn bar_enqueue(
        &mut self,
        _cx: &mut DeviceCtx<'_>,
        _from: Requester,
        _bar: u8,
        _offset: u64,
        _data: &[u8],
    ) -> bool {
        false
    }

    /// Time the device takes to answer a BAR read.
    fn bar_read_turnaround_ps(&self) -> u64 {
        0
    }

    /// The data of DMA read `tag` arrived.
    fn dma_read_done(&mut self, _cx: &mut DeviceCtx<'_>, _tag: u64, _data: &[u8]) {}

    /// DMA `tag` (a read or a write) faulted: it moved no byte.
    fn dma_fault(&mut self, _cx: &mut DeviceCtx<'_>, _tag: u64, _fault: DmaFault) {}

    /// A frame arrived on Ethernet port `port`.
    fn frame(&mut self, _cx: &mut DeviceCtx<'_>, _port: usize, _frame: Frame) {}

    /// Port `port`, which had no room, can take a frame again (asked for
    /// with [`DeviceCtx::wake_when_port_ready`]).
    fn port_ready(&mut self, _cx: &mut DeviceCtx<'_>, _port: usize) {}

    /// Timer `token` (set with [`DeviceCtx::set_timer`]) expired.
    fn timer(&mut self, _cx: &mut DeviceCtx<'_>, _token: u64) {}

    /// Everything the device counts.
    fn counters(&self) -> &Counters;
}
