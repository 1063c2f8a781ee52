//! Socket buffers: the kernel's packet memory, one fixed-size buffer per
//! packet in one kernel DMA region, and the record a socket queues.
//!
//! A buffer is in exactly one place: the free list, the driver's RX ring
//! (posted to the NIC), a socket's receive queue, the qdisc, or the
//! driver's TX ring until its descriptor is written back. The pool counts
//! allocation failures; it never hands a buffer out twice (checked in
//! builds with debug assertions).

use std::net::Ipv4Addr;

use nextio_engine::Time;
use nextio_hw::mem::VirtAddr;

use crate::kmem::KernelDma;

/// Bytes per buffer: a 2 KiB data area, as the ice driver's RX buffers
/// (`ICE_RXBUF_2048`) hold one standard frame.
pub const SKB_BUFFER_BYTES: u64 = 2048;

/// What one received datagram costs a socket's receive buffer: the skb's
/// truesize for a 2 KiB buffer and its `sk_buff` (assumption: 2304 B, a
/// 2 KiB page fragment plus 256 B of `struct sk_buff` and shared info).
pub const SKB_TRUESIZE_BYTES: u64 = 2304;

/// A buffer of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BufId(pub u32);

/// The pool.
pub struct SkbPool {
    region: KernelDma,
    free: Vec<u32>,
    in_use: Vec<bool>,
    failures: u64,
}

impl SkbPool {
    /// `buffers` buffers in `region` (which must hold them).
    pub fn new(region: KernelDma, buffers: u32) -> SkbPool {
        debug_assert!(buffers as u64 * SKB_BUFFER_BYTES <= region.len);
        SkbPool {
            region,
            free: (0..buffers).rev().collect(),
            in_use: vec![false; buffers as usize],
            failures: 0,
        }
    }
    pub fn alloc(&mut self) -> Option<BufId> {
        match self.free.pop() {
            Some(b) => {
                debug_assert!(!self.in_use[b as usize], "buffer {b} handed out twice");
                self.in_use[b as usize] = true;
                Some(BufId(b))
            }
            None => {
                self.failures += 1;
                None
            }
        }
    }
    pub fn free(&mut self, b: BufId) {
        debug_assert!(self.in_use[b.0 as usize], "buffer {} freed twice", b.0);
        self.in_use[b.0 as usize] = false;
        self.free.push(b.0);
    }
    pub fn kva(&self, b: BufId) -> VirtAddr {
        self.region.kva_at(b.0 as u64 * SKB_BUFFER_BYTES)
    }
    pub fn iova(&self, b: BufId) -> u64 {
        self.region.iova_at(b.0 as u64 * SKB_BUFFER_BYTES)
    }
    pub fn free_count(&self) -> usize {
        self.free.len()
    }
    pub fn failures(&self) -> u64 {
        self.failures
    }
}

/// When a received datagram passed the points Accio's Table 1 divides the
/// receive path at (the kernel's own instrumentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxStamps {
    /// The NAPI interrupt handler begins (hard IRQ entry).
    pub irq_entry: Time,
    /// The driver's poll begins (hard IRQ and softirq entry done).
    pub poll_start: Time,
    /// `ip_rcv` begins: header processing starts.
    pub header_start: Time,
    /// `udp_rcv` begins: IP is done, the socket lookup starts.
    pub demux_start: Time,
    /// The datagram is on the socket's queue: header processing is done.
    pub queued: Time,
}

/// A datagram on a socket's receive queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skb {
    pub buf: BufId,
    /// Where the payload starts in the buffer, and its length.
    pub payload_offset: u16,
    pub payload_len: u16,
    pub src: (Ipv4Addr, u16),
    pub stamps: RxStamps,
}
