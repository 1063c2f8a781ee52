//! The CPU's driver for a QAT-like command-queue accelerator
//! ([`nextio_hw::accel::cmdq`], thesis §2.1 Figure 1): the descriptor ring
//! is a DMA buffer of the process, descriptors are stored by virtual
//! address through the cache model, the tail doorbell is an MMIO write
//! (`"doorbell"`), and completions are polled where the device overwrites
//! each descriptor.
//!
//! Invariants: at most `entries − 1` descriptors are outstanding (a full
//! ring is distinguishable from an empty one); completions are taken in
//! ring order; misuse is an error.

use std::rc::Rc;

use nextio_engine::{Category, Notify};
use nextio_hw::accel::cmdq::{DESCRIPTOR_BYTES, Descriptor, TAIL_REGISTER};
use nextio_hw::accel::{Accelerator, Kernel};
use nextio_hw::cpu::{CoreCtx, MmioAccessError};
use nextio_hw::fabric::DeviceHandle;
use nextio_hw::mem::{AccessError, VirtAddr};
use nextio_os::{DmaBuffer, OsError, Process};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The driver's own instructions, in core cycles: the root preset's
/// `[cmdq_lib]`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmdqCosts {
    /// Building one descriptor (its 64-byte store is cache-costed).
    pub submit_cycles: u64,
    /// Testing and retiring one completion.
    pub complete_cycles: u64,
    /// The doorbell store and its fence.
    pub doorbell_cycles: u64,
}

impl Default for CmdqCosts {
    /// The root preset's `[cmdq_lib]`.
    fn default() -> Self {
        nextio_presets::root_section("cmdq_lib")
    }
}

#[derive(Debug, Error)]
pub enum CmdqError {
    #[error(transparent)]
    Os(#[from] OsError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Mmio(#[from] MmioAccessError),
    #[error("the device refused the ring: {0}")]
    Device(String),
    #[error("the ring is full")]
    Full,
}

/// One thread's command queue on one accelerator.
pub struct CommandQueue {
    ctx: CoreCtx,
    ring: DmaBuffer,
    entries: u32,
    tail: u32,
    head: u32,
    doorbell: VirtAddr,
    costs: CmdqCosts,
}

impl CommandQueue {
    /// Allocate a ring of `entries` descriptors for `dev` and hand it to
    /// the device (control plane, untimed).
    pub fn open<K: Kernel>(
        ctx: CoreCtx,
        process: &Process,
        dev: &DeviceHandle<Accelerator<K>>,
        entries: u32,
    ) -> Result<CommandQueue, CmdqError> {
        let ring = process.dma_alloc(dev.id, entries as u64 * DESCRIPTOR_BYTES)?;
        dev.borrow_mut()
            .configure_ring(ring.iova, entries)
            .map_err(|e| CmdqError::Device(e.to_string()))?;
        let regs = process.map_bar(dev.id, 0, 0, 4096)?;
        Ok(CommandQueue {
            ctx,
            ring,
            entries,
            tail: 0,
            head: 0,
            doorbell: regs.offset(TAIL_REGISTER),
            costs: CmdqCosts::default(),
        })
    }

    /// The ring's buffer.
    pub fn ring(&self) -> DmaBuffer {
        self.ring
    }

    /// Descriptors submitted and not yet retired.
    pub fn outstanding(&self) -> u32 {
        (self.tail + self.entries - self.head) % self.entries
    }

    pub fn has_room(&self) -> bool {
        self.outstanding() + 1 < self.entries
    }

    /// Fire `notify` whenever the device writes into the ring.
    pub fn watch(&self, notify: Rc<Notify>) -> Result<(), CmdqError> {
        self.ctx.watch_with(self.ring.va, self.ring.len, notify)?;
        Ok(())
    }

    fn slot_va(&self, slot: u32) -> VirtAddr {
        self.ring.va.offset(slot as u64 * DESCRIPTOR_BYTES)
    }

    /// Store `desc` at the tail (the doorbell is rung separately, so a
    /// batch costs one).
    pub fn submit(&mut self, mut desc: Descriptor) -> Result<(), CmdqError> {
        if !self.has_room() {
            return Err(CmdqError::Full);
        }
        desc.status = 0;
        self.ctx
            .store(self.slot_va(self.tail), &desc.emit(), Category::Driver)?;
        self.ctx.cycles(Category::Driver, self.costs.submit_cycles);
        self.tail = (self.tail + 1) % self.entries;
        Ok(())
    }

    /// Tell the device about everything submitted.
    pub async fn ring_doorbell(&mut self) -> Result<(), CmdqError> {
        self.ctx
            .cycles(Category::Driver, self.costs.doorbell_cycles);
        self.ctx
            .mmio_write(self.doorbell, &(self.tail as u64).to_le_bytes(), "doorbell")
            .await?;
        Ok(())
    }

    /// Whether the oldest outstanding descriptor has completed (read
    /// without charge: the poll loop's test).
    pub fn completion_ready(&self) -> bool {
        if self.head == self.tail {
            return false;
        }
        let mut b = [0u8; DESCRIPTOR_BYTES as usize];
        self.ctx.peek(self.slot_va(self.head), &mut b).is_ok()
            && Descriptor::parse(&b).is_some_and(|d| d.is_done())
    }

    /// Retire the oldest descriptor if it has completed.
    pub fn poll(&mut self) -> Result<Option<Descriptor>, CmdqError> {
        if self.head == self.tail {
            return Ok(None);
        }
        let mut b = [0u8; DESCRIPTOR_BYTES as usize];
        self.ctx
            .load(self.slot_va(self.head), &mut b, Category::Driver)?;
        let Some(d) = Descriptor::parse(&b).filter(|d| d.is_done()) else {
            return Ok(None);
        };
        self.ctx
            .cycles(Category::Driver, self.costs.complete_cycles);
        self.head = (self.head + 1) % self.entries;
        Ok(Some(d))
    }
}
