//! An E810-like packetized NIC: receive and transmit descriptor rings in
//! host memory, one packet buffer per descriptor, tail doorbells over MMIO,
//! receive-side scaling, and an on-NIC receive packet buffer.
//!
//! Receive. A frame from the wire is hashed (Toeplitz over the IPv4/UDP
//! 4-tuple with the standard Microsoft key) and steered through an
//! indirection table to a queue. The NIC takes the next descriptor from its
//! per-queue descriptor cache — filled by DMA reads of the RX ring in
//! batches — DMA-writes the frame into the buffer the descriptor names and
//! later writes the descriptor back (32 bytes, length and the DD status
//! bit) in batches. Posted writes are ordered, so the packet bytes land in
//! memory together with the write-back that publishes them: software can
//! never tell the difference. The write-back fires the queue's [`Notify`]
//! so a driver busy-polling on it wakes.
//!
//! Transmit. A TX tail doorbell makes the NIC fetch the posted 16-byte TX
//! descriptors by DMA read, then each packet's bytes by DMA read, compute
//! the UDP checksum if the descriptor asks for L4 checksum offload, and put
//! the frame on the wire. A descriptor with the RS bit set is written back
//! with DTYPE = DESC_DONE once its packet has been read.
//!
//! Interrupts. Each queue can have an MSI-X-like vector. Software arms it
//! by writing `GLINT_DYN_CTL(q)` with `INTENA` set (an MMIO write over
//! PCIe, like a doorbell). The next RX write-back on an armed queue sends
//! the vector's MSI-X message — a 4-byte posted write upstream, ordered
//! behind the write-back it announces, so the descriptors are in memory
//! before the interrupt arrives — and masks the vector until software arms
//! it again. A write-back while masked sets the vector's pending bit (the
//! MSI-X Pending Bit Array); arming a pending vector sends its message at
//! once, so no write-back is ever lost to a race between a handler's last
//! look at the ring and its re-arm. Queues without a vector, or never
//! armed, behave exactly as before (polling).
//!
//! Every PCIe transfer names its purpose: `"packet-data"`, `"descriptor"`
//! (fetches and write-backs), `"doorbell"` (MMIO register writes) or
//! `"interrupt"` (MSI-X messages).
//!
//! Invariants (tested):
//! * `rx_frames == rx_delivered + Σ drop.rx_*` at every instant;
//! * `tx_descriptors == tx_frames + Σ drop.tx_*` once the link is quiet;
//! * bytes in host memory are exactly the frame's bytes (the FCS is
//!   stripped, as DPDK's default `keep_crc = off` configures the E810);
//! * the NIC only ever uses descriptors software has handed over by tail
//!   doorbell, in ring order, and never overtakes the tail;
//! * bad configuration is an error; a bad descriptor is a counted drop.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use nextio_engine::{Counters, Duration, Mailbox, Notify, Sim, Time};
use thiserror::Error;

use crate::ethernet::Wire;
use crate::host::{HostError, SharedMemory};
use crate::mem::PhysAddr;
use crate::packet::{self, Frame};
use crate::pcie::{PcieError, PcieLink};

/// Bytes of one RX descriptor: the E810's 32-byte descriptor format
/// (ice `union ice_32b_rx_flex_desc`; DPDK ice's default).
pub const RX_DESC_BYTES: u64 = 32;
/// Bytes of one TX data descriptor (ice `struct ice_tx_desc`).
pub const TX_DESC_BYTES: u64 = 16;

/// Write-back layout of an RX descriptor (ice `ice_32b_rx_flex_desc_nic`):
/// packet length (14 bits) at byte 4, `status_error0` at byte 8 (bit 0 DD,
/// bit 1 EOF), RSS hash at byte 12.
pub const RX_WB_PKT_LEN_OFFSET: usize = 4;
pub const RX_WB_STATUS_OFFSET: usize = 8;
pub const RX_WB_RSS_HASH_OFFSET: usize = 12;
/// `ICE_RX_FLEX_DESC_STATUS0_DD_S` and `..._EOF_S`.
pub const RX_STATUS_DD: u16 = 1 << 0;
pub const RX_STATUS_EOF: u16 = 1 << 1;
/// The 14-bit length field of the write-back (`ICE_RX_FLX_DESC_PKT_LEN_M`).
pub const RX_PKT_LEN_MASK: u16 = 0x3fff;

/// TX descriptor quadword 1 fields (ice `ICE_TXD_QW1_*`): DTYPE in bits
/// 0–3, CMD from bit 4, OFFSET from bit 16, buffer size from bit 34.
pub const TXD_CMD_SHIFT: u32 = 4;
pub const TXD_OFFSET_SHIFT: u32 = 16;
pub const TXD_BUF_SZ_SHIFT: u32 = 34;
pub const TXD_BUF_SZ_MASK: u64 = 0x3fff;
/// `ICE_TX_DESC_DTYPE_DATA` and `ICE_TX_DESC_DTYPE_DESC_DONE`.
pub const TXD_DTYPE_DATA: u64 = 0x0;
pub const TXD_DTYPE_DESC_DONE: u64 = 0xf;
/// `ICE_TX_DESC_CMD_EOP`, `_RS`, `_IIPT_IPV4`, `_L4T_EOFT_UDP`.
pub const TXD_CMD_EOP: u64 = 0x0001;
pub const TXD_CMD_RS: u64 = 0x0002;
pub const TXD_CMD_IIPT_IPV4: u64 = 0x0040;
pub const TXD_CMD_L4T_UDP: u64 = 0x0300;
const TXD_CMD_L4T_MASK: u64 = 0x0300;

/// MMIO register of RX queue `q`'s tail: `QRX_TAIL(q) = 0x00290000 + 4q`
/// (ice_hw_autogen.h).
pub fn rx_tail_register(q: usize) -> u64 {
    0x0029_0000 + 4 * q as u64
}
/// MMIO register of TX queue `q`'s tail doorbell: `QTX_COMM_DBELL(q) =
/// 0x002C0000 + 4q` (ice_hw_autogen.h).
pub fn tx_tail_register(q: usize) -> u64 {
    0x002C_0000 + 4 * q as u64
}

/// MMIO register of interrupt `q`'s dynamic control: `GLINT_DYN_CTL(q) =
/// 0x00160000 + 4q` (ice_hw_autogen.h). The model maps interrupt `q` to
/// RX queue `q` (one vector per queue, as DPDK's ice PMD sets up RX
/// interrupts).
pub fn irq_dyn_ctl_register(q: usize) -> u64 {
    0x0016_0000 + 4 * q as u64
}
/// `GLINT_DYN_CTL_INTENA_M`: bit 0 enables (arms) the interrupt.
pub const DYN_CTL_INTENA: u32 = 1 << 0;
/// Where MSI-X messages go: the x86 interrupt address range `0xFEExxxxx`
/// (Intel SDM Vol. 3, §11.11.1, message address register); the message
/// data is 4 bytes (PCIe Base Spec, MSI-X table entry).
pub const MSIX_ADDRESS: u64 = 0xFEE0_0000;
pub const MSIX_DATA_BYTES: u64 = 4;

/// Receives a queue's MSI-X message when it reaches the host: `(queue,
/// vector)`. Wired by whoever models the host's interrupt controller.
pub type InterruptSink = Rc<dyn Fn(usize, u8)>;

/// The standard 40-byte RSS key from Microsoft's "Verifying the RSS Hash
/// Calculation" (the key every NIC's RSS test vectors use).
pub const MICROSOFT_RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// The Toeplitz hash of `input` under `key` (Microsoft RSS specification):
/// for every set bit of the input, XOR in the 32-bit window of the key
/// starting at that bit.
pub fn toeplitz_hash(key: &[u8], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    let key_bit = |i: usize| -> u32 {
        key.get(i / 8)
            .map(|b| ((b >> (7 - (i % 8))) & 1) as u32)
            .unwrap_or(0)
    };
    // The window is the 32 key bits starting at the input bit's position.
    let mut window: u32 = (0..32).fold(0, |w, i| (w << 1) | key_bit(i));
    for (byte_no, byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | key_bit(byte_no * 8 + bit + 32);
        }
    }
    hash
}

/// The RSS hash of a frame: Toeplitz over source and destination IPv4
/// addresses and UDP ports (the "IPv4 with UDP" hash type), `None` for a
/// frame RSS does not classify (it goes to the default queue 0).
pub fn rss_hash(key: &[u8], frame: &[u8]) -> Option<u32> {
    // Parse the headers by hand: the NIC's parser does not verify
    // checksums, and this runs once per received frame.
    if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 17 || ip.len() < ihl + 8 {
        return None;
    }
    let mut input = [0u8; 12];
    input[0..8].copy_from_slice(&ip[12..20]);
    input[8..12].copy_from_slice(&ip[ihl..ihl + 4]);
    Some(toeplitz_hash(key, &input))
}

/// How the NIC is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketizedConfig {
    /// Queue pairs (RX + TX).
    pub queues: usize,
    /// Entries of the RSS indirection table: 2048, the E810 PF-wide LUT
    /// (ice `ICE_LUT_PF_SIZE`). Filled round-robin over the queues, as
    /// DPDK's ice PMD does by default.
    pub rss_lut_entries: usize,
    /// RX descriptors fetched per DMA read. Model choice: 32, one DPDK
    /// `rx_free_thresh` (32, ice default) worth, so one tail doorbell's
    /// refill is one fetch (a 1 KiB read: two 512 B MRRS requests).
    pub rx_desc_fetch_batch: u32,
    /// Descriptors the NIC caches per RX queue. Model choice: two fetch
    /// batches, so one fetch can be in flight while the other is used.
    pub rx_desc_cache: u32,
    /// Most RX descriptors written back in one DMA write. Model choice: 4
    /// (128 B, two cache lines); a write-back also goes out as soon as the
    /// first packet of a batch has reached host memory, so batching only
    /// happens when packets arrive faster than PCIe turns them around.
    pub rx_wb_batch: u32,
    /// TX descriptors fetched per DMA read. Model choice: 32 (512 B, one
    /// MRRS-sized read), one DPDK `tx_rs_thresh` (32, ice default) worth.
    pub tx_desc_fetch_batch: u32,
    /// On-NIC receive packet buffer. Model choice: 512 KiB, a round value
    /// of the order of the E810's per-port receive buffering; only the
    /// loss pattern under overload depends on it.
    pub rx_buffer_bytes: u64,
    /// Largest frame a descriptor's buffer may receive (DPDK's 2048 B data
    /// room); longer frames would need scatter, which the model lacks.
    pub rx_max_frame_bytes: u64,
    /// Time from a frame's last bit arriving to the NIC being ready to DMA
    /// it (parser, RSS, packet buffer). Model choice: 0; the E810's
    /// pipeline latency is not published.
    pub rx_pipeline: Duration,
}

impl Default for PacketizedConfig {
    fn default() -> Self {
        PacketizedConfig {
            queues: 1,
            rss_lut_entries: 2048,
            rx_desc_fetch_batch: 32,
            rx_desc_cache: 64,
            rx_wb_batch: 4,
            tx_desc_fetch_batch: 32,
            rx_buffer_bytes: 512 << 10,
            rx_max_frame_bytes: 2048,
            rx_pipeline: Duration::ZERO,
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NicError {
    #[error("invalid NIC configuration: {0}")]
    Config(String),
    #[error("queue {queue} does not exist (the NIC has {queues})")]
    NoSuchQueue { queue: usize, queues: usize },
    #[error(transparent)]
    Pcie(#[from] PcieError),
    #[error(transparent)]
    Host(#[from] HostError),
}

impl PacketizedConfig {
    pub fn validate(&self) -> Result<(), NicError> {
        let bad = |s: &str| Err(NicError::Config(s.to_string()));
        if self.queues == 0 {
            return bad("at least one queue pair is needed");
        }
        if self.rss_lut_entries == 0 || !self.rss_lut_entries.is_power_of_two() {
            return bad("the RSS table size must be a power of two");
        }
        if self.rx_desc_fetch_batch == 0 || self.tx_desc_fetch_batch == 0 {
            return bad("descriptor fetch batches must be at least one descriptor");
        }
        if self.rx_desc_cache < self.rx_desc_fetch_batch {
            return bad("the RX descriptor cache must hold at least one fetch batch");
        }
        if self.rx_wb_batch == 0 {
            return bad("the RX write-back batch must be at least one descriptor");
        }
        if self.rx_buffer_bytes < packet::MAX_FRAME_BYTES as u64 {
            return bad("the RX packet buffer must hold at least one maximum-size frame");
        }
        if self.rx_max_frame_bytes == 0 {
            return bad("the RX buffer size must be positive");
        }
        Ok(())
    }
}

/// A descriptor ring as configured by the driver.
#[derive(Clone, Copy, Debug, Default)]
struct Ring {
    base: PhysAddr,
    entries: u32,
    /// Last tail value written by software.
    tail: u32,
    /// Next descriptor index the NIC will fetch.
    fetch_next: u32,
}

impl Ring {
    fn unfetched(&self) -> u32 {
        if self.entries == 0 {
            0
        } else {
            (self.tail + self.entries - self.fetch_next) % self.entries
        }
    }
}

/// A received frame whose descriptor has not been written back yet.
struct PendingRx {
    index: u32,
    buffer: PhysAddr,
    frame: Frame,
    hash: u32,
}

#[derive(Default)]
struct RxQueue {
    ring: Ring,
    /// Fetched descriptors: (index, buffer address, usable from).
    cache: VecDeque<(u32, PhysAddr, Time)>,
    pending: Vec<PendingRx>,
    /// Frames waiting for their descriptor fetch to complete.
    waiting: VecDeque<(Time, PendingRx)>,
    /// Bumped at each write-back, so a stale flush timer does nothing.
    wb_generation: u64,
}

/// One queue's MSI-X-like interrupt state.
#[derive(Clone, Copy, Debug, Default)]
struct QueueIrq {
    vector: Option<u8>,
    /// Armed (unmasked): the next write-back sends the message.
    armed: bool,
    /// A write-back happened while masked (the Pending Bit Array).
    pending: bool,
}

#[derive(Default)]
struct TxQueue {
    ring: Ring,
}

struct State {
    rx: Vec<RxQueue>,
    tx: Vec<TxQueue>,
    irq: Vec<QueueIrq>,
    lut: Vec<u16>,
    /// Frames in the on-NIC buffer: (time their DMA has left, bytes).
    buffer: VecDeque<(Time, u64)>,
    buffer_bytes: u64,
    tx_sent: u64,
}

/// The NIC. Shared by the driver (doorbells) and its own RX task.
pub struct PacketizedNic {
    sim: Sim,
    cfg: PacketizedConfig,
    mem: SharedMemory,
    pcie: Rc<RefCell<PcieLink>>,
    counters: Rc<RefCell<Counters>>,
    notify: Vec<Notify>,
    /// Fired on every RX write-back, whatever the queue.
    any_notify: Notify,
    state: RefCell<State>,
    wire: RefCell<Option<Rc<Wire>>>,
    irq_sink: RefCell<Option<InterruptSink>>,
    /// Some queue has a vector: only then do write-backs consult it.
    irq_configured: std::cell::Cell<bool>,
}

impl PacketizedNic {
    pub fn new(
        sim: &Sim,
        cfg: PacketizedConfig,
        mem: SharedMemory,
        pcie: Rc<RefCell<PcieLink>>,
        counters: Rc<RefCell<Counters>>,
    ) -> Result<Rc<PacketizedNic>, NicError> {
        cfg.validate()?;
        let lut = (0..cfg.rss_lut_entries)
            .map(|i| (i % cfg.queues) as u16)
            .collect();
        Ok(Rc::new(PacketizedNic {
            sim: sim.clone(),
            notify: (0..cfg.queues).map(|_| Notify::new(sim)).collect(),
            any_notify: Notify::new(sim),
            state: RefCell::new(State {
                rx: (0..cfg.queues).map(|_| RxQueue::default()).collect(),
                tx: (0..cfg.queues).map(|_| TxQueue::default()).collect(),
                irq: vec![QueueIrq::default(); cfg.queues],
                lut,
                buffer: VecDeque::new(),
                buffer_bytes: 0,
                tx_sent: 0,
            }),
            cfg,
            mem,
            pcie,
            counters,
            wire: RefCell::new(None),
            irq_sink: RefCell::new(None),
            irq_configured: std::cell::Cell::new(false),
        }))
    }

    pub fn config(&self) -> &PacketizedConfig {
        &self.cfg
    }

    fn check_queue(&self, q: usize) -> Result<(), NicError> {
        if q >= self.cfg.queues {
            return Err(NicError::NoSuchQueue {
                queue: q,
                queues: self.cfg.queues,
            });
        }
        Ok(())
    }

    fn check_ring(&self, base: PhysAddr, entries: u32, desc_bytes: u64) -> Result<(), NicError> {
        if entries < 2 {
            return Err(NicError::Config("a ring needs at least two entries".into()));
        }
        let end = base.0.checked_add(entries as u64 * desc_bytes);
        if end.is_none_or(|e| e > self.mem.borrow().phys.size_bytes()) {
            return Err(NicError::Config("ring lies outside host memory".into()));
        }
        if !base.0.is_multiple_of(128) {
            // QRX_CTX base address is in 128-byte units (ice_rlan_ctx).
            return Err(NicError::Config(
                "ring base must be 128-byte aligned".into(),
            ));
        }
        Ok(())
    }

    /// Program RX queue `q`'s context (the driver does this at start-up,
    /// over the admin queue in the real device; untimed here). The tail
    /// starts at 0: the NIC owns no descriptor until the first doorbell.
    pub fn configure_rx(&self, q: usize, base: PhysAddr, entries: u32) -> Result<(), NicError> {
        self.check_queue(q)?;
        self.check_ring(base, entries, RX_DESC_BYTES)?;
        self.state.borrow_mut().rx[q] = RxQueue {
            ring: Ring {
                base,
                entries,
                ..Ring::default()
            },
            ..RxQueue::default()
        };
        Ok(())
    }

    /// Program TX queue `q`'s context.
    pub fn configure_tx(&self, q: usize, base: PhysAddr, entries: u32) -> Result<(), NicError> {
        self.check_queue(q)?;
        self.check_ring(base, entries, TX_DESC_BYTES)?;
        self.state.borrow_mut().tx[q] = TxQueue {
            ring: Ring {
                base,
                entries,
                ..Ring::default()
            },
        };
        Ok(())
    }

    /// Fired whenever RX descriptors of any queue are written back (for a
    /// driver that polls several queues in one loop).
    pub fn rx_any_notify(&self) -> &Notify {
        &self.any_notify
    }

    /// Program queue `q`'s MSI-X table entry with `vector` (start-up, like
    /// the ring contexts; untimed). The vector starts masked.
    pub fn configure_interrupt(&self, q: usize, vector: u8) -> Result<(), NicError> {
        self.check_queue(q)?;
        self.state.borrow_mut().irq[q] = QueueIrq {
            vector: Some(vector),
            ..QueueIrq::default()
        };
        self.irq_configured.set(true);
        Ok(())
    }

    /// Where MSI-X messages are delivered (the host's interrupt fabric).
    pub fn set_interrupt_sink(&self, sink: InterruptSink) {
        *self.irq_sink.borrow_mut() = Some(sink);
    }

    /// Fired whenever RX descriptors of queue `q` are written back.
    pub fn rx_notify(&self, q: usize) -> Option<&Notify> {
        self.notify.get(q)
    }

    /// Which queue RSS steers a frame to.
    pub fn rss_queue(&self, frame: &[u8]) -> usize {
        match rss_hash(&MICROSOFT_RSS_KEY, frame) {
            Some(h) => {
                let st = self.state.borrow();
                st.lut[h as usize & (st.lut.len() - 1)] as usize
            }
            None => 0,
        }
    }

    /// Start receiving frames from `from_wire` and sending on `to_wire`.
    pub fn start(self: &Rc<Self>, from_wire: Rc<Mailbox<Frame>>, to_wire: Rc<Wire>) {
        *self.wire.borrow_mut() = Some(to_wire);
        let nic = self.clone();
        self.sim.spawn(async move {
            loop {
                let frame = from_wire.recv().await;
                nic.receive(frame);
            }
        });
    }

    /// A core writes `value` to the MMIO register at `register` at `now`
    /// (the writer's synchronised time). The write crosses PCIe as a
    /// doorbell and takes effect when it reaches the NIC. Returns that time.
    pub fn mmio_write32(
        self: &Rc<Self>,
        now: Time,
        register: u64,
        value: u32,
    ) -> Result<Time, NicError> {
        let arrive = self
            .pcie
            .borrow_mut()
            .mmio_write(now, register, 4, "doorbell")?;
        let q_rx = register.wrapping_sub(rx_tail_register(0)) / 4;
        let q_tx = register.wrapping_sub(tx_tail_register(0)) / 4;
        let q_irq = register.wrapping_sub(irq_dyn_ctl_register(0)) / 4;
        let nic = self.clone();
        if register >= irq_dyn_ctl_register(0)
            && register < rx_tail_register(0)
            && (q_irq as usize) < self.cfg.queues
        {
            self.sim
                .at(arrive, move || nic.dyn_ctl_written(q_irq as usize, value))
                .expect("a device event is never scheduled in the past");
        } else if register >= rx_tail_register(0) && (q_rx as usize) < self.cfg.queues {
            self.sim
                .at(arrive, move || nic.rx_tail_written(q_rx as usize, value))
                .expect("a device event is never scheduled in the past");
        } else if register >= tx_tail_register(0) && (q_tx as usize) < self.cfg.queues {
            self.sim
                .at(arrive, move || nic.tx_tail_written(q_tx as usize, value))
                .expect("a device event is never scheduled in the past");
        } else {
            self.counters.borrow_mut().inc("mmio_unknown_register");
        }
        Ok(arrive)
    }

    /// `GLINT_DYN_CTL(q)` reached the NIC: `INTENA` arms the vector (and
    /// sends it at once if a write-back is pending), clear masks it.
    fn dyn_ctl_written(self: &Rc<Self>, q: usize, value: u32) {
        let now = self.sim.now();
        let fire = {
            let mut st = self.state.borrow_mut();
            let irq = &mut st.irq[q];
            if irq.vector.is_none() {
                self.counters.borrow_mut().inc("irq_not_configured");
                return;
            }
            irq.armed = value & DYN_CTL_INTENA != 0;
            irq.armed && irq.pending
        };
        if fire {
            self.send_msix(q, now, now);
        }
    }

    /// An RX write-back to queue `q` was issued at `now` and lands at
    /// `landed`: send the vector if armed, else mark it pending.
    fn rx_written_back(self: &Rc<Self>, q: usize, now: Time, landed: Time) {
        let fire = {
            let mut st = self.state.borrow_mut();
            let irq = &mut st.irq[q];
            if irq.vector.is_none() {
                return;
            }
            if !irq.armed {
                irq.pending = true;
            }
            irq.armed
        };
        if fire {
            self.send_msix(q, now, landed);
        }
    }

    /// Send queue `q`'s MSI-X message (a posted write, issued at `now`,
    /// delivered no earlier than `after`) and mask the vector.
    fn send_msix(self: &Rc<Self>, q: usize, now: Time, after: Time) {
        let vector = {
            let mut st = self.state.borrow_mut();
            let irq = &mut st.irq[q];
            irq.armed = false;
            irq.pending = false;
            irq.vector
        };
        let Some(vector) = vector else {
            return;
        };
        let done =
            self.pcie
                .borrow_mut()
                .dma_write(now, MSIX_ADDRESS, MSIX_DATA_BYTES, "interrupt");
        let Ok(done) = done else {
            self.counters.borrow_mut().inc("irq_send_error");
            return;
        };
        self.counters.borrow_mut().inc("irq_messages");
        let nic = self.clone();
        self.sim
            .at(done.max(after), move || {
                let sink = nic.irq_sink.borrow().clone();
                match sink {
                    Some(s) => s(q, vector),
                    None => nic.counters.borrow_mut().inc("irq_no_sink"),
                }
            })
            .expect("a device event is never scheduled in the past");
    }

    fn rx_tail_written(&self, q: usize, value: u32) {
        let now = self.sim.now();
        let mut st = self.state.borrow_mut();
        let rxq = &mut st.rx[q];
        if rxq.ring.entries == 0 || value >= rxq.ring.entries {
            self.counters.borrow_mut().inc("mmio_bad_tail");
            return;
        }
        rxq.ring.tail = value;
        self.rx_prefetch(rxq, now);
    }

    /// Fetch RX descriptors while the cache has room for a batch and the
    /// ring holds posted, unfetched descriptors.
    fn rx_prefetch(&self, rxq: &mut RxQueue, now: Time) {
        let batch = self.cfg.rx_desc_fetch_batch;
        loop {
            let unfetched = rxq.ring.unfetched();
            let room = self.cfg.rx_desc_cache - rxq.cache.len() as u32;
            if unfetched == 0 || (room < batch && !rxq.cache.is_empty()) {
                return;
            }
            let n = unfetched
                .min(batch)
                .min(room.max(1))
                .min(rxq.ring.entries - rxq.ring.fetch_next);
            let addr = rxq
                .ring
                .base
                .offset(rxq.ring.fetch_next as u64 * RX_DESC_BYTES);
            let len = n as u64 * RX_DESC_BYTES;
            let Ok(done) = self
                .pcie
                .borrow_mut()
                .dma_read(now, addr.0, len, "descriptor")
            else {
                self.counters.borrow_mut().inc("rx_fetch_error");
                return;
            };
            let mut bytes = [0u8; (RX_DESC_BYTES * 64) as usize];
            let chunk = &mut bytes[..len.min(RX_DESC_BYTES * 64) as usize];
            if self.mem.borrow_mut().dma_read(addr, chunk).is_err() {
                self.counters.borrow_mut().inc("rx_fetch_error");
                return;
            }
            for i in 0..n.min(64) {
                let o = (i as u64 * RX_DESC_BYTES) as usize;
                let mut b = [0u8; 8];
                b.copy_from_slice(&chunk[o..o + 8]);
                let buffer = PhysAddr(u64::from_le_bytes(b));
                rxq.cache
                    .push_back(((rxq.ring.fetch_next + i) % rxq.ring.entries, buffer, done));
            }
            rxq.ring.fetch_next = (rxq.ring.fetch_next + n) % rxq.ring.entries;
        }
    }

    /// A frame's last bit has arrived from the wire.
    fn receive(self: &Rc<Self>, frame: Frame) {
        let now = self.sim.now() + self.cfg.rx_pipeline;
        self.counters.borrow_mut().inc("rx_frames");
        let len = frame.bytes.len() as u64;
        if len == 0 || len > self.cfg.rx_max_frame_bytes {
            self.counters.borrow_mut().inc("drop.rx_oversize");
            return;
        }
        let hash = rss_hash(&MICROSOFT_RSS_KEY, &frame.bytes);
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let q = match hash {
            Some(h) => st.lut[h as usize & (st.lut.len() - 1)] as usize,
            None => 0,
        };
        // Release buffer space of frames whose DMA has left the NIC.
        while st.buffer.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, b)) = st.buffer.pop_front() {
                st.buffer_bytes -= b;
            }
        }
        if st.buffer_bytes + len > self.cfg.rx_buffer_bytes {
            self.counters.borrow_mut().inc("drop.rx_fifo_full");
            return;
        }
        let rxq = &mut st.rx[q];
        if rxq.ring.entries == 0 {
            self.counters.borrow_mut().inc("drop.rx_queue_disabled");
            return;
        }
        if rxq.cache.is_empty() {
            self.rx_prefetch(rxq, now);
        }
        let Some((index, buffer, usable)) = rxq.cache.pop_front() else {
            self.counters.borrow_mut().inc("drop.rx_no_descriptor");
            return;
        };
        self.rx_prefetch(rxq, now);
        let mem_end = self.mem.borrow().phys.size_bytes();
        if buffer.0.checked_add(len).is_none_or(|e| e > mem_end) {
            self.counters.borrow_mut().inc("drop.rx_bad_descriptor");
            return;
        }
        let p = PendingRx {
            index,
            buffer,
            frame,
            hash: hash.unwrap_or(0),
        };
        // The frame now holds buffer space until its DMA has left.
        st.buffer_bytes += len;
        if usable > now || !rxq.waiting.is_empty() {
            // Its descriptor is still crossing PCIe: wait in the packet
            // buffer (in order behind this queue's earlier frames) rather
            // than reserve the link ahead of traffic submitted meanwhile.
            if rxq.waiting.back().is_none_or(|(t, _)| *t != usable) {
                let nic = self.clone();
                self.sim
                    .at(usable, move || nic.rx_issue_waiting(q))
                    .expect("a device event is never scheduled in the past");
            }
            rxq.waiting.push_back((usable, p));
            return;
        }
        self.rx_dma(q, st, p, now);
    }

    /// Frames of queue `q` whose descriptors have arrived go to memory.
    fn rx_issue_waiting(self: &Rc<Self>, q: usize) {
        let now = self.sim.now();
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        while st.rx[q].waiting.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, p)) = st.rx[q].waiting.pop_front() {
                self.rx_dma(q, st, p, now);
            }
        }
    }

    /// DMA-write one frame into its buffer at `now` and queue its
    /// descriptor for write-back.
    fn rx_dma(self: &Rc<Self>, q: usize, st: &mut State, p: PendingRx, now: Time) {
        let len = p.frame.bytes.len() as u64;
        let Ok(done) = self
            .pcie
            .borrow_mut()
            .dma_write(now, p.buffer.0, len, "packet-data")
        else {
            st.buffer_bytes -= len;
            self.counters.borrow_mut().inc("drop.rx_bad_descriptor");
            return;
        };
        self.counters.borrow_mut().inc("rx_delivered");
        self.counters.borrow_mut().add("rx_bytes", len);
        let flight = Duration::from_ps(self.pcie.borrow().config().one_way_latency_ps);
        let left = Time(done.ps().saturating_sub(flight.ps())).max(now);
        st.buffer.push_back((left, len));
        let rxq = &mut st.rx[q];
        rxq.pending.push(p);
        if rxq.pending.len() as u32 >= self.cfg.rx_wb_batch {
            self.rx_write_back(q, rxq, now);
        } else if rxq.pending.len() == 1 {
            // Write back as soon as this packet has reached host memory,
            // with whatever else has joined the batch by then.
            let generation = rxq.wb_generation;
            let nic = self.clone();
            self.sim
                .at(done, move || {
                    let now = nic.sim.now();
                    let mut st = nic.state.borrow_mut();
                    let rxq = &mut st.rx[q];
                    if rxq.wb_generation == generation {
                        nic.rx_write_back(q, rxq, now);
                    }
                })
                .expect("a device event is never scheduled in the past");
        }
    }

    /// DMA-write the pending descriptors of `rxq` back at `now`; the bytes
    /// land (and the driver is notified) when the write reaches memory.
    fn rx_write_back(self: &Rc<Self>, q: usize, rxq: &mut RxQueue, now: Time) {
        rxq.wb_generation += 1;
        let pending = std::mem::take(&mut rxq.pending);
        let Some(first) = pending.first() else {
            return;
        };
        let ring = rxq.ring;
        let mut done = now;
        let mut start = first.index;
        let mut n = 0u32;
        let mut pcie = self.pcie.borrow_mut();
        // Descriptors are consecutive modulo the ring; split at the wrap.
        for (k, p) in pending.iter().enumerate() {
            let last = k + 1 == pending.len();
            n += 1;
            if last || p.index + 1 == ring.entries {
                let addr = ring.base.offset(start as u64 * RX_DESC_BYTES);
                if let Ok(t) = pcie.dma_write(now, addr.0, n as u64 * RX_DESC_BYTES, "descriptor") {
                    done = done.max(t);
                }
                start = (p.index + 1) % ring.entries;
                n = 0;
            }
        }
        drop(pcie);
        let nic = self.clone();
        self.sim
            .at(done, move || nic.rx_land(q, ring.base, pending))
            .expect("a device event is never scheduled in the past");
        // The MSI-X message follows the write-back on the same ordered
        // posted-write path.
        if self.irq_configured.get() {
            let nic = self.clone();
            self.sim
                .at(now, move || nic.rx_written_back(q, now, done))
                .expect("a device event is never scheduled in the past");
        }
    }

    /// Packet bytes and their write-backs reach host memory.
    fn rx_land(&self, q: usize, ring: PhysAddr, pending: Vec<PendingRx>) {
        {
            let mut mem = self.mem.borrow_mut();
            for p in &pending {
                let ok = mem.dma_write(p.buffer, &p.frame.bytes).is_ok();
                let mut d = [0u8; RX_DESC_BYTES as usize];
                let len = (p.frame.bytes.len() as u16) & RX_PKT_LEN_MASK;
                // rxdid 2 (`ICE_RXDID_FLEX_NIC`) in byte 0.
                d[0] = 2;
                d[RX_WB_PKT_LEN_OFFSET..RX_WB_PKT_LEN_OFFSET + 2]
                    .copy_from_slice(&len.to_le_bytes());
                d[RX_WB_STATUS_OFFSET..RX_WB_STATUS_OFFSET + 2]
                    .copy_from_slice(&(RX_STATUS_DD | RX_STATUS_EOF).to_le_bytes());
                d[RX_WB_RSS_HASH_OFFSET..RX_WB_RSS_HASH_OFFSET + 4]
                    .copy_from_slice(&p.hash.to_le_bytes());
                let ok = ok
                    && mem
                        .dma_write(ring.offset(p.index as u64 * RX_DESC_BYTES), &d)
                        .is_ok();
                if !ok {
                    self.counters.borrow_mut().inc("rx_land_error");
                }
            }
        }
        self.notify[q].notify();
        self.any_notify.notify();
    }

    fn tx_tail_written(self: &Rc<Self>, q: usize, value: u32) {
        let now = self.sim.now();
        let mut st = self.state.borrow_mut();
        let ring = &mut st.tx[q].ring;
        if ring.entries == 0 || value >= ring.entries {
            self.counters.borrow_mut().inc("mmio_bad_tail");
            return;
        }
        ring.tail = value;
        // Fetch every posted descriptor, a batch per DMA read; reads are
        // pipelined up to the link's read tags.
        while ring.unfetched() > 0 {
            let n = ring
                .unfetched()
                .min(self.cfg.tx_desc_fetch_batch)
                .min(ring.entries - ring.fetch_next);
            let first = ring.fetch_next;
            let addr = ring.base.offset(first as u64 * TX_DESC_BYTES);
            let len = n as u64 * TX_DESC_BYTES;
            ring.fetch_next = (first + n) % ring.entries;
            let Ok(done) = self
                .pcie
                .borrow_mut()
                .dma_read(now, addr.0, len, "descriptor")
            else {
                self.counters
                    .borrow_mut()
                    .add("drop.tx_bad_descriptor", n as u64);
                self.counters.borrow_mut().add("tx_descriptors", n as u64);
                continue;
            };
            let mut bytes = vec![0u8; len as usize];
            if self.mem.borrow_mut().dma_read(addr, &mut bytes).is_err() {
                self.counters
                    .borrow_mut()
                    .add("drop.tx_bad_descriptor", n as u64);
                self.counters.borrow_mut().add("tx_descriptors", n as u64);
                continue;
            }
            let nic = self.clone();
            let (base, entries) = (ring.base, ring.entries);
            self.sim
                .at(done, move || {
                    nic.tx_descriptors_arrived(base, entries, first, bytes)
                })
                .expect("a device event is never scheduled in the past");
        }
    }

    /// A batch of TX descriptors reached the NIC: read each packet.
    fn tx_descriptors_arrived(
        self: &Rc<Self>,
        ring: PhysAddr,
        ring_entries: u32,
        first: u32,
        bytes: Vec<u8>,
    ) {
        let now = self.sim.now();
        let entries = bytes.len() / TX_DESC_BYTES as usize;
        for i in 0..entries {
            let o = i * TX_DESC_BYTES as usize;
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[o..o + 8]);
            let buf = u64::from_le_bytes(w);
            w.copy_from_slice(&bytes[o + 8..o + 16]);
            let qw1 = u64::from_le_bytes(w);
            let index = (first + i as u32) % ring_entries;
            let desc_pa = ring.offset(index as u64 * TX_DESC_BYTES);
            let cmd = (qw1 >> TXD_CMD_SHIFT) & 0xfff;
            let len = (qw1 >> TXD_BUF_SZ_SHIFT) & TXD_BUF_SZ_MASK;
            let rs = cmd & TXD_CMD_RS != 0;
            self.counters.borrow_mut().inc("tx_descriptors");
            let frame_ok = (qw1 & 0xf) == TXD_DTYPE_DATA
                && len > 0
                && len <= packet::MAX_FRAME_BYTES as u64
                && cmd & TXD_CMD_EOP != 0;
            let read = if frame_ok {
                let mut data = vec![0u8; len as usize];
                let done = self
                    .pcie
                    .borrow_mut()
                    .dma_read(now, buf, len, "packet-data");
                match (
                    done,
                    self.mem.borrow_mut().dma_read(PhysAddr(buf), &mut data),
                ) {
                    (Ok(t), Ok(_)) => Some((t, data)),
                    _ => None,
                }
            } else {
                None
            };
            let nic = self.clone();
            match read {
                Some((done, mut data)) => {
                    if cmd & TXD_CMD_L4T_MASK == TXD_CMD_L4T_UDP
                        && packet::refresh_udp_checksum(&mut data).is_err()
                    {
                        self.counters.borrow_mut().inc("tx_csum_offload_not_udp");
                    }
                    self.sim
                        .at(done, move || {
                            nic.tx_send(data);
                            if rs {
                                nic.tx_write_back(desc_pa, buf);
                            }
                        })
                        .expect("a device event is never scheduled in the past");
                }
                None => {
                    self.counters.borrow_mut().inc("drop.tx_bad_descriptor");
                    if rs {
                        self.sim
                            .at(now, move || nic.tx_write_back(desc_pa, buf))
                            .expect("a device event is never scheduled in the past");
                    }
                }
            }
        }
    }

    fn tx_send(&self, data: Vec<u8>) {
        let id = {
            let mut st = self.state.borrow_mut();
            st.tx_sent += 1;
            st.tx_sent
        };
        let wire = self.wire.borrow().clone();
        let sent = wire.map(|w| w.send(Frame::new(data, id)).is_ok());
        let mut c = self.counters.borrow_mut();
        match sent {
            Some(true) => c.inc("tx_frames"),
            Some(false) => c.inc("drop.tx_wire_full"),
            None => c.inc("drop.tx_no_wire"),
        }
    }

    /// Write the RS descriptor back as done (`DTYPE = DESC_DONE`).
    fn tx_write_back(self: &Rc<Self>, desc_pa: PhysAddr, buf: u64) {
        let now = self.sim.now();
        let Ok(done) =
            self.pcie
                .borrow_mut()
                .dma_write(now, desc_pa.0, TX_DESC_BYTES, "descriptor")
        else {
            return;
        };
        let nic = self.clone();
        self.sim
            .at(done, move || {
                let mut d = [0u8; TX_DESC_BYTES as usize];
                d[..8].copy_from_slice(&buf.to_le_bytes());
                d[8..].copy_from_slice(&TXD_DTYPE_DESC_DONE.to_le_bytes());
                if nic.mem.borrow_mut().dma_write(desc_pa, &d).is_err() {
                    nic.counters.borrow_mut().inc("tx_land_error");
                }
            })
            .expect("a device event is never scheduled in the past");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::HierarchyConfig;
    use crate::ethernet::LinkConfig;
    use crate::host::MemorySystem;
    use crate::packet::{FlowKey, Macs, build_udp};
    use crate::pcie::PcieConfig;
    use crate::trafficgen::synthetic_flow;
    use std::net::Ipv4Addr;

    #[test]
    fn toeplitz_matches_the_microsoft_test_vector() {
        // "Verifying the RSS Hash Calculation": 66.9.149.187:2794 →
        // 161.142.100.80:1766 hashes to 0x51ccc178 with ports and
        // 0x323e8fc2 over the addresses alone.
        let mut input = Vec::new();
        input.extend_from_slice(&[66, 9, 149, 187, 161, 142, 100, 80]);
        assert_eq!(toeplitz_hash(&MICROSOFT_RSS_KEY, &input), 0x323e8fc2);
        input.extend_from_slice(&2794u16.to_be_bytes());
        input.extend_from_slice(&1766u16.to_be_bytes());
        assert_eq!(toeplitz_hash(&MICROSOFT_RSS_KEY, &input), 0x51ccc178);
        let flow = FlowKey {
            src_ip: Ipv4Addr::new(66, 9, 149, 187),
            dst_ip: Ipv4Addr::new(161, 142, 100, 80),
            src_port: 2794,
            dst_port: 1766,
        };
        let frame = build_udp(Macs::default(), flow, &[], 64).unwrap();
        assert_eq!(rss_hash(&MICROSOFT_RSS_KEY, &frame), Some(0x51ccc178));
        assert_eq!(rss_hash(&MICROSOFT_RSS_KEY, &[0u8; 10]), None);
    }

    struct Bench {
        sim: Sim,
        mem: SharedMemory,
        nic: Rc<PacketizedNic>,
        counters: Rc<RefCell<Counters>>,
        inbox: Rc<Mailbox<Frame>>,
        outbox: Rc<Mailbox<Frame>>,
    }

    fn bench(queues: usize) -> Bench {
        let sim = Sim::new();
        let mem = MemorySystem::new(256 << 20, HierarchyConfig::ice_lake(1))
            .unwrap()
            .shared();
        let pcie = Rc::new(RefCell::new(
            PcieLink::new(PcieConfig {
                lanes: 16,
                ..PcieConfig::default()
            })
            .unwrap(),
        ));
        let counters = Rc::new(RefCell::new(Counters::new()));
        let nic = PacketizedNic::new(
            &sim,
            PacketizedConfig {
                queues,
                ..PacketizedConfig::default()
            },
            mem.clone(),
            pcie,
            counters.clone(),
        )
        .unwrap();
        let inbox = Rc::new(Mailbox::new(&sim));
        let outbox = Rc::new(Mailbox::new(&sim));
        let wire = Rc::new(Wire::new(&sim, LinkConfig::default(), outbox.clone()));
        nic.start(inbox.clone(), wire);
        Bench {
            sim,
            mem,
            nic,
            counters,
            inbox,
            outbox,
        }
    }

    /// An RX ring of `entries` descriptors pointing at 2 KiB buffers.
    fn rx_ring(b: &Bench, q: usize, entries: u32) -> (PhysAddr, Vec<PhysAddr>) {
        let mut m = b.mem.borrow_mut();
        let ring = m.phys.alloc_huge(entries as u64 * RX_DESC_BYTES).unwrap();
        let bufs = m.phys.alloc_huge(entries as u64 * 2048).unwrap();
        let addrs: Vec<PhysAddr> = (0..entries)
            .map(|i| bufs.base.offset(i as u64 * 2048))
            .collect();
        for (i, a) in addrs.iter().enumerate() {
            m.phys
                .write_u64(ring.base.offset(i as u64 * RX_DESC_BYTES), a.0)
                .unwrap();
        }
        drop(m);
        b.nic.configure_rx(q, ring.base, entries).unwrap();
        (ring.base, addrs)
    }

    fn frames(n: u64) -> Vec<Frame> {
        (0..n)
            .map(|i| {
                let payload = i.to_be_bytes();
                let bytes = build_udp(
                    Macs::default(),
                    synthetic_flow(0),
                    &payload,
                    64 + i as usize % 100,
                )
                .unwrap();
                Frame::new(bytes, i)
            })
            .collect()
    }

    fn conserved(c: &Counters) {
        assert_eq!(
            c.get("rx_frames"),
            c.get("rx_delivered") + c.sum_prefix("drop.rx_"),
            "{c:?}"
        );
    }

    #[test]
    fn received_bytes_land_in_order_with_dd_write_back() {
        let b = bench(1);
        let (ring, bufs) = rx_ring(&b, 0, 256);
        b.nic
            .mmio_write32(Time::ZERO, rx_tail_register(0), 255)
            .unwrap();
        let sent = frames(200);
        for (i, f) in sent.iter().enumerate() {
            b.inbox.push_at(
                Time(Duration::from_us(2).ps() + i as u64 * 20_000),
                f.clone(),
            );
        }
        b.sim.run_until(Time(Duration::from_us(20).ps()));
        let c = b.counters.borrow().clone();
        assert_eq!(c.get("rx_delivered"), 200);
        conserved(&c);
        let m = b.mem.borrow();
        for (i, f) in sent.iter().enumerate() {
            let d = ring.offset(i as u64 * RX_DESC_BYTES);
            let status = m
                .phys
                .read_u16(d.offset(RX_WB_STATUS_OFFSET as u64))
                .unwrap();
            assert_eq!(status & RX_STATUS_DD, RX_STATUS_DD, "descriptor {i}");
            let len = m
                .phys
                .read_u16(d.offset(RX_WB_PKT_LEN_OFFSET as u64))
                .unwrap();
            assert_eq!(len as usize, f.bytes.len());
            let mut got = vec![0u8; f.bytes.len()];
            m.phys.read(bufs[i], &mut got).unwrap();
            assert_eq!(got, f.bytes, "packet {i}");
        }
        // Descriptors past the last packet stay untouched (no DD).
        let d = ring.offset(200 * RX_DESC_BYTES + RX_WB_STATUS_OFFSET as u64);
        assert_eq!(m.phys.read_u16(d).unwrap() & RX_STATUS_DD, 0);
    }

    #[test]
    fn ring_without_refill_drops_as_no_descriptor() {
        let b = bench(1);
        rx_ring(&b, 0, 64);
        b.nic
            .mmio_write32(Time::ZERO, rx_tail_register(0), 63)
            .unwrap();
        for f in frames(100) {
            b.inbox.push_at(Time(Duration::from_us(2).ps()), f);
        }
        b.sim.run_until(Time(Duration::from_us(30).ps()));
        let c = b.counters.borrow().clone();
        assert_eq!(c.get("rx_delivered"), 63);
        assert_eq!(c.get("drop.rx_no_descriptor"), 37);
        conserved(&c);
        // An unconfigured queue and an oversized frame are drops too.
        let b = bench(1);
        b.inbox.push_at(Time::ZERO, frames(1).remove(0));
        b.inbox.push_at(Time::ZERO, Frame::new(vec![0; 4000], 9));
        b.sim.run_until(Time(Duration::from_us(1).ps()));
        let c = b.counters.borrow().clone();
        assert_eq!(c.get("drop.rx_queue_disabled"), 1);
        assert_eq!(c.get("drop.rx_oversize"), 1);
        conserved(&c);
    }

    #[test]
    fn rss_spreads_flows_deterministically() {
        let b = bench(4);
        let mut per_queue = [0u32; 4];
        for i in 0..256 {
            let f = build_udp(Macs::default(), synthetic_flow(i), &[], 64).unwrap();
            let q = b.nic.rss_queue(&f);
            assert_eq!(q, b.nic.rss_queue(&f));
            per_queue[q] += 1;
        }
        assert!(per_queue.iter().all(|&n| n > 32), "{per_queue:?}");
    }

    #[test]
    fn transmit_reads_descriptors_and_bytes_and_writes_back_rs() {
        let b = bench(1);
        let entries = 64u32;
        let (ring, bufs) = {
            let mut m = b.mem.borrow_mut();
            let ring = m.phys.alloc_huge(entries as u64 * TX_DESC_BYTES).unwrap();
            let bufs = m.phys.alloc_huge(entries as u64 * 2048).unwrap();
            (ring.base, bufs.base)
        };
        b.nic.configure_tx(0, ring, entries).unwrap();
        let sent = frames(40);
        for (i, f) in sent.iter().enumerate() {
            let buf = bufs.offset(i as u64 * 2048);
            let mut bytes = f.bytes.clone();
            // Spoil the UDP checksum of even frames: offload fixes it.
            let o = crate::packet::parse_udp(&bytes).unwrap().payload_offset;
            if i % 2 == 0 {
                bytes[o - 2] ^= 0xff;
            }
            let mut m = b.mem.borrow_mut();
            m.phys.write(buf, &bytes).unwrap();
            let mut cmd = TXD_CMD_EOP;
            if i % 2 == 0 {
                cmd |= TXD_CMD_L4T_UDP;
            }
            if i == 31 {
                cmd |= TXD_CMD_RS;
            }
            let qw1 = (cmd << TXD_CMD_SHIFT) | ((bytes.len() as u64) << TXD_BUF_SZ_SHIFT);
            let d = ring.offset(i as u64 * TX_DESC_BYTES);
            m.phys.write_u64(d, buf.0).unwrap();
            m.phys.write_u64(d.offset(8), qw1).unwrap();
        }
        b.nic
            .mmio_write32(Time::ZERO, tx_tail_register(0), 40)
            .unwrap();
        b.sim.run_until(Time(Duration::from_us(20).ps()));
        let c = b.counters.borrow().clone();
        assert_eq!(c.get("tx_descriptors"), 40);
        assert_eq!(c.get("tx_frames"), 40);
        for f in &sent {
            let got = b.outbox.try_recv().expect("frame on the wire");
            assert_eq!(got.bytes, f.bytes);
        }
        let m = b.mem.borrow();
        let dtype = |i: u64| m.phys.read_u64(ring.offset(i * TX_DESC_BYTES + 8)).unwrap() & 0xf;
        assert_eq!(dtype(31), TXD_DTYPE_DESC_DONE);
        assert_eq!(dtype(30), TXD_DTYPE_DATA);
    }

    /// (time, queue, vector) of each MSI-X message delivered.
    type IrqLog = Rc<RefCell<Vec<(Time, usize, u8)>>>;

    /// A bench whose queue 0 has vector 40, and its message log.
    fn irq_bench() -> (Bench, IrqLog) {
        let b = bench(1);
        rx_ring(&b, 0, 256);
        b.nic
            .mmio_write32(Time::ZERO, rx_tail_register(0), 255)
            .unwrap();
        b.nic.configure_interrupt(0, 40).unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let (l, s) = (log.clone(), b.sim.clone());
        b.nic
            .set_interrupt_sink(Rc::new(move |q, v| l.borrow_mut().push((s.now(), q, v))));
        (b, log)
    }

    fn at_us(us: u64) -> Time {
        Time(Duration::from_us(us).ps())
    }

    #[test]
    fn an_armed_vector_fires_once_then_stays_masked() {
        let (b, log) = irq_bench();
        b.nic
            .mmio_write32(at_us(1), irq_dyn_ctl_register(0), DYN_CTL_INTENA)
            .unwrap();
        // Ten frames in a row: one message, after the first write-back.
        for (i, f) in frames(10).into_iter().enumerate() {
            b.inbox.push_at(Time(at_us(2).ps() + i as u64 * 10_000), f);
        }
        b.sim.run_until(at_us(10));
        assert_eq!(log.borrow().len(), 1, "{:?}", log.borrow());
        let (t, q, v) = log.borrow()[0];
        assert_eq!((q, v), (0, 40));
        assert!(t > at_us(2));
        // The message is a posted write of its own purpose.
        let up = b
            .nic
            .pcie
            .borrow()
            .counters(crate::pcie::Direction::Upstream)
            .clone();
        assert!(up.bytes_by_purpose["interrupt"] > 0);
        assert_eq!(b.counters.borrow().get("irq_messages"), 1);
        // The descriptor it announces was already in memory.
        assert_eq!(b.counters.borrow().get("rx_delivered"), 10);
    }

    #[test]
    fn nothing_fires_while_masked_and_masked_write_backs_are_not_lost() {
        let (b, log) = irq_bench();
        // Never armed: frames arrive, no message.
        for f in frames(3) {
            b.inbox.push_at(at_us(2), f);
        }
        b.sim.run_until(at_us(10));
        assert!(log.borrow().is_empty());
        assert_eq!(b.counters.borrow().get("rx_delivered"), 3);
        // Arming with a write-back pending sends the message at once.
        let arrive = b
            .nic
            .mmio_write32(at_us(10), irq_dyn_ctl_register(0), DYN_CTL_INTENA)
            .unwrap();
        b.sim.run_until(at_us(20));
        assert_eq!(log.borrow().len(), 1);
        assert!(log.borrow()[0].0 >= arrive);
        // Re-armed and then masked again (INTENA clear): silent.
        b.nic
            .mmio_write32(at_us(20), irq_dyn_ctl_register(0), DYN_CTL_INTENA)
            .unwrap();
        b.nic
            .mmio_write32(at_us(21), irq_dyn_ctl_register(0), 0)
            .unwrap();
        for f in frames(2) {
            b.inbox.push_at(at_us(25), f);
        }
        b.sim.run_until(at_us(40));
        assert_eq!(log.borrow().len(), 1);
        // One re-arm, one message for everything that came meanwhile.
        b.nic
            .mmio_write32(at_us(40), irq_dyn_ctl_register(0), DYN_CTL_INTENA)
            .unwrap();
        b.sim.run_until(at_us(50));
        assert_eq!(log.borrow().len(), 2);
        // A queue without a vector ignores the register.
        let b2 = bench(1);
        b2.nic
            .mmio_write32(Time::ZERO, irq_dyn_ctl_register(0), DYN_CTL_INTENA)
            .unwrap();
        b2.sim.run_until(at_us(1));
        assert_eq!(b2.counters.borrow().get("irq_not_configured"), 1);
        assert!(b2.nic.configure_interrupt(3, 1).is_err());
    }

    #[test]
    fn bad_configuration_is_an_error() {
        let b = bench(2);
        assert!(matches!(
            b.nic.configure_rx(5, PhysAddr(0), 64),
            Err(NicError::NoSuchQueue { .. })
        ));
        assert!(b.nic.configure_rx(0, PhysAddr(1 << 40), 64).is_err());
        assert!(b.nic.configure_rx(0, PhysAddr(64), 64).is_err());
        let bad = PacketizedConfig {
            queues: 0,
            ..PacketizedConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = PacketizedConfig {
            rss_lut_entries: 100,
            ..PacketizedConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
