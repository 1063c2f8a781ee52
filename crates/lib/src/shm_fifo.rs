//! A single-producer single-consumer FIFO of packets in a shared-memory
//! segment, as DPDK's multi-process sample (§2.3 of Accio, Fig. 1) uses
//! between the process that owns the NIC and the others: fixed slots,
//! a producer index and a consumer index on cache lines of their own.
//!
//! Every access is a load or store through the cache model by the
//! calling thread, so a packet handed from one core to another pays for
//! the lines that move. Each process reaches the segment at its own
//! address; the FIFO is the layout, the address is the caller's.
//!
//! Layout (bytes from the segment's base): the consumer's `head` at 0,
//! the producer's `tail` at 64 (both free-running u64), slot `i` at
//! `128 + i * SLOT_BYTES`: a u16 length, then the packet.
//!
//! Invariants: `tail - head` is at most the slot count; the producer
//! writes a slot before it publishes `tail`, the consumer reads it before
//! it publishes `head`; a packet longer than a slot is refused.

use nextio_engine::Category;
use nextio_hw::cpu::CoreCtx;
use nextio_hw::mem::{AccessError, VirtAddr};

const HEAD: u64 = 0;
const TAIL: u64 = 64;
const SLOTS_AT: u64 = 128;
/// One slot: a length and up to one maximum-sized Ethernet frame.
pub const SLOT_BYTES: u64 = 2048;
/// The largest packet a slot holds.
pub const MAX_PACKET_BYTES: usize = (SLOT_BYTES - 2) as usize;

/// A FIFO's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShmFifo {
    pub slots: u64,
}

impl ShmFifo {
    pub fn new(slots: u64) -> ShmFifo {
        ShmFifo {
            slots: slots.max(1),
        }
    }

    /// Bytes of segment it needs.
    pub fn bytes(&self) -> u64 {
        SLOTS_AT + self.slots * SLOT_BYTES
    }

    fn slot(&self, base: VirtAddr, i: u64) -> VirtAddr {
        base.offset(SLOTS_AT + (i % self.slots) * SLOT_BYTES)
    }

    /// Enqueue `packet` at `base` (the caller's address of the FIFO);
    /// `false` when full or the packet does not fit.
    pub fn push(&self, ctx: &CoreCtx, base: VirtAddr, packet: &[u8]) -> Result<bool, AccessError> {
        if packet.len() > MAX_PACKET_BYTES {
            return Ok(false);
        }
        let head = ctx.load_u64(base.offset(HEAD), Category::Application)?;
        let tail = ctx.load_u64(base.offset(TAIL), Category::Application)?;
        if tail.wrapping_sub(head) >= self.slots {
            return Ok(false);
        }
        let at = self.slot(base, tail);
        let mut rec = Vec::with_capacity(packet.len() + 2);
        rec.extend_from_slice(&(packet.len() as u16).to_le_bytes());
        rec.extend_from_slice(packet);
        ctx.store(at, &rec, Category::Application)?;
        ctx.store_u64(base.offset(TAIL), tail + 1, Category::Application)?;
        Ok(true)
    }

    /// Whether a packet waits (the consumer's poll: one load of `tail`).
    pub fn ready(&self, ctx: &CoreCtx, base: VirtAddr) -> Result<bool, AccessError> {
        let head = ctx.load_u64(base.offset(HEAD), Category::Polling)?;
        let tail = ctx.load_u64(base.offset(TAIL), Category::Polling)?;
        Ok(tail != head)
    }

    /// Dequeue into `out` (replacing its contents); `false` when empty.
    pub fn pop(
        &self,
        ctx: &CoreCtx,
        base: VirtAddr,
        out: &mut Vec<u8>,
    ) -> Result<bool, AccessError> {
        let head = ctx.load_u64(base.offset(HEAD), Category::Application)?;
        let tail = ctx.load_u64(base.offset(TAIL), Category::Application)?;
        if tail == head {
            return Ok(false);
        }
        let at = self.slot(base, head);
        let len = (ctx.load_u16(at, Category::Application)? as usize).min(MAX_PACKET_BYTES);
        out.clear();
        out.resize(len, 0);
        ctx.load(at.offset(2), out, Category::Application)?;
        ctx.store_u64(base.offset(HEAD), head + 1, Category::Application)?;
        Ok(true)
    }
}
