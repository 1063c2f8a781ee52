//! The kernel's driver for the packetized (E810-like) NIC, in the shape of
//! Linux's `ice` driver: one queue pair, RX and TX descriptor rings and
//! packet buffers in kernel DMA memory, an MSI-X vector armed through
//! `GLINT_DYN_CTL`, and the NAPI poll's receive and transmit cleaning.
//!
//! Every descriptor access is a cache-modelled load or store by kernel
//! code on the polling core; every register access is an MMIO write
//! through the fabric; the instructions in between are the costs of
//! [`super::LinuxNetCosts`]. The driver knows nothing above Ethernet: it
//! hands received buffers to the stack and takes frames to send.
//!
//! Invariants: a descriptor's buffer is read only after its DD bit says
//! the NIC wrote it back; the NIC only ever owns buffers the driver posted;
//! every RX ring slot always holds a buffer (a receive that finds the pool
//! empty recycles its own buffer and counts `drop.rx_nombuf`).

use nextio_engine::{Category, Counters};
use nextio_hw::cpu::CoreCtx;
use nextio_hw::mem::VirtAddr;
use nextio_hw::nic::packetized::{
    DYN_CTL_INTENA, NicError, PacketizedNic, RX_DESC_BYTES, RxReadDesc, RxWbDesc, TX_DESC_BYTES,
    TXD_CMD_EOP, TXD_CMD_IIPT_IPV4, TXD_CMD_L4T_UDP, TXD_CMD_RS, TxDataDesc, regs, tx_offsets,
};

use serde::{Deserialize, Serialize};

use super::NetError;
use super::skb::{BufId, SkbPool};
use crate::kmem::KernelDma;

/// What the driver programs at start-up (over the admin queue in the real
/// device; untimed): a packetized NIC's queue contexts. Implemented by
/// every NIC whose ordinary path is the packetized one.
pub trait PacketizedQueues {
    fn configure_rx(&mut self, q: usize, ring: u64, entries: u32) -> Result<(), NicError>;
    fn configure_tx(&mut self, q: usize, ring: u64, entries: u32) -> Result<(), NicError>;
    fn configure_interrupt(&mut self, q: usize, vector: u16) -> Result<(), NicError>;
}

impl PacketizedQueues for PacketizedNic {
    fn configure_rx(&mut self, q: usize, ring: u64, entries: u32) -> Result<(), NicError> {
        PacketizedNic::configure_rx(self, q, ring, entries)
    }
    fn configure_tx(&mut self, q: usize, ring: u64, entries: u32) -> Result<(), NicError> {
        PacketizedNic::configure_tx(self, q, ring, entries)
    }
    fn configure_interrupt(&mut self, q: usize, vector: u16) -> Result<(), NicError> {
        PacketizedNic::configure_interrupt(self, q, vector)
    }
}

/// Ring sizes and thresholds: the root preset's `[os.ice]`, where each
/// value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceConfig {
    /// RX and TX descriptors per ring.
    pub rx_entries: u32,
    pub tx_entries: u32,
    /// Refill doorbell once this many RX descriptors are refilled.
    pub rx_refill_batch: u32,
    /// Packets per NAPI poll.
    pub napi_budget: u32,
}

impl Default for IceConfig {
    /// The root preset's `[os.ice]`.
    fn default() -> Self {
        nextio_presets::root_section("os.ice")
    }
}

/// A register write the driver asks for: rung by [`ring`] once the
/// driver's state is no longer borrowed (an MMIO write takes time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Doorbell {
    pub reg: u64,
    pub value: u32,
}

/// Ring `db` in the BAR mapped at `regs`, from kernel code `kctx`.
pub async fn ring(kctx: &CoreCtx, regs: VirtAddr, db: Doorbell) -> Result<(), NetError> {
    kctx.mmio_write(regs.offset(db.reg), &db.value.to_le_bytes(), "doorbell")
        .await?;
    Ok(())
}

/// A received frame handed to the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxFrame {
    pub buf: BufId,
    pub len: u16,
}

/// The driver of one queue pair.
pub struct IceDriver {
    queue: usize,
    cfg: IceConfig,
    /// BAR0 as the kernel maps it.
    regs: VirtAddr,
    rx_ring: KernelDma,
    rx_bufs: Vec<BufId>,
    rx_next: u32,
    rx_refilled: u32,
    tx_ring: KernelDma,
    tx_bufs: Vec<Option<BufId>>,
    tx_next: u32,
    tx_clean: u32,
    tx_used: u32,
    pub(super) counters: Counters,
}

impl IceDriver {
    /// Program queue `queue` of `nic` with rings in `rx_ring`/`tx_ring`
    /// and fill the RX ring from `pool` (start-up, untimed); the tail
    /// doorbell and the first arming are [`IceDriver::start`]'s.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        nic: &mut dyn PacketizedQueues,
        queue: usize,
        cfg: IceConfig,
        regs: VirtAddr,
        rx_ring: KernelDma,
        tx_ring: KernelDma,
        pool: &mut SkbPool,
        kctx: &CoreCtx,
        vector: u16,
    ) -> Result<IceDriver, NetError> {
        if cfg.rx_entries < 8 || cfg.tx_entries < 8 || cfg.napi_budget == 0 {
            return Err(NetError::Config(
                "rings need 8 descriptors, NAPI a budget".into(),
            ));
        }
        if rx_ring.len < cfg.rx_entries as u64 * RX_DESC_BYTES
            || tx_ring.len < cfg.tx_entries as u64 * TX_DESC_BYTES
        {
            return Err(NetError::Config("ring memory too small".into()));
        }
        nic.configure_rx(queue, rx_ring.iova, cfg.rx_entries)?;
        nic.configure_tx(queue, tx_ring.iova, cfg.tx_entries)?;
        nic.configure_interrupt(queue, vector)?;
        let mut rx_bufs = Vec::with_capacity(cfg.rx_entries as usize);
        for i in 0..cfg.rx_entries {
            let b = pool.alloc().ok_or_else(|| {
                NetError::Config("the buffer pool cannot fill the RX ring".into())
            })?;
            let d = RxReadDesc::build(pool.iova(b));
            kctx.poke(rx_ring.kva_at(i as u64 * RX_DESC_BYTES), &d)?;
            rx_bufs.push(b);
        }
        Ok(IceDriver {
            queue,
            regs,
            rx_ring,
            rx_bufs,
            rx_next: 0,
            rx_refilled: 0,
            tx_ring,
            tx_bufs: vec![None; cfg.tx_entries as usize],
            tx_next: 0,
            tx_clean: 0,
            tx_used: 0,
            cfg,
            counters: Counters::new(),
        })
    }

    pub fn config(&self) -> &IceConfig {
        &self.cfg
    }

    /// Hand the RX ring to the NIC and arm its interrupt: the doorbells to
    /// ring (see [`ring`]).
    pub fn start(&self) -> [Doorbell; 2] {
        [
            Doorbell {
                reg: regs::rx_tail(self.queue),
                value: self.cfg.rx_entries - 1,
            },
            self.arm(),
        ]
    }

    /// Re-enable the queue's interrupt (`ice_irq_dynamic_ena`).
    pub fn arm(&self) -> Doorbell {
        Doorbell {
            reg: regs::irq_dyn_ctl(self.queue),
            value: DYN_CTL_INTENA,
        }
    }

    /// BAR0 as the kernel maps it.
    pub fn regs(&self) -> VirtAddr {
        self.regs
    }

    /// `ice_clean_rx_irq`: take up to `budget` written-back frames,
    /// replacing each buffer with a fresh one from `pool`. `per_packet` is
    /// the driver's instruction cost per frame. Returns the refill
    /// doorbell to ring, if one is due. The caller synchronised `kctx`
    /// (descriptors are shared with the NIC).
    pub fn clean_rx(
        &mut self,
        kctx: &CoreCtx,
        pool: &mut SkbPool,
        budget: u32,
        per_packet: u64,
        out: &mut Vec<RxFrame>,
    ) -> Result<Option<Doorbell>, NetError> {
        let entries = self.cfg.rx_entries;
        for _ in 0..budget {
            let idx = self.rx_next;
            let desc = self.rx_ring.kva_at(idx as u64 * RX_DESC_BYTES);
            let mut wb = [0u8; 16];
            kctx.load(desc, &mut wb, Category::Driver)?;
            let wb = RxWbDesc::new_unchecked(&wb[..]);
            if !wb.dd() {
                break;
            }
            let len = wb.pkt_len();
            kctx.cycles(Category::Driver, per_packet);
            let got = self.rx_bufs[idx as usize];
            let fresh = match pool.alloc() {
                Some(f) => {
                    out.push(RxFrame { buf: got, len });
                    f
                }
                None => {
                    // No memory for a new skb: the frame is dropped and its
                    // buffer goes back to the NIC.
                    self.counters.inc("drop.rx_nombuf");
                    got
                }
            };
            let d = RxReadDesc::build(pool.iova(fresh));
            kctx.store(desc, &d[..16], Category::Driver)?;
            self.rx_bufs[idx as usize] = fresh;
            self.rx_next = (idx + 1) % entries;
            self.rx_refilled += 1;
            self.counters.inc("rx_frames");
        }
        if self.rx_refilled >= self.cfg.rx_refill_batch {
            self.rx_refilled = 0;
            return Ok(Some(Doorbell {
                reg: regs::rx_tail(self.queue),
                value: (self.rx_next + entries - 1) % entries,
            }));
        }
        Ok(None)
    }

    /// `ice_clean_tx_irq`: free the buffers of written-back TX descriptors.
    pub fn clean_tx(
        &mut self,
        kctx: &CoreCtx,
        pool: &mut SkbPool,
        per_packet: u64,
    ) -> Result<u32, NetError> {
        let mut n = 0;
        while self.tx_used > 0 {
            let idx = self.tx_clean;
            let mut d = [0u8; TX_DESC_BYTES as usize];
            kctx.load(
                self.tx_ring.kva_at(idx as u64 * TX_DESC_BYTES),
                &mut d,
                Category::Driver,
            )?;
            if !TxDataDesc::new_unchecked(&d[..]).done() {
                break;
            }
            if let Some(b) = self.tx_bufs[idx as usize].take() {
                pool.free(b);
            }
            kctx.cycles(Category::Driver, per_packet);
            self.tx_clean = (idx + 1) % self.cfg.tx_entries;
            self.tx_used -= 1;
            n += 1;
        }
        Ok(n)
    }

    /// Whether the TX ring can take a frame (one slot stays empty).
    pub fn tx_has_room(&self) -> bool {
        self.tx_used + 1 < self.cfg.tx_entries
    }

    /// `ice_start_xmit`: post `len` bytes in `buf` (which holds a whole
    /// frame) with UDP checksum offload; returns the tail doorbell to ring.
    /// The caller checked [`IceDriver::tx_has_room`].
    pub fn xmit(
        &mut self,
        kctx: &CoreCtx,
        pool: &SkbPool,
        buf: BufId,
        len: u16,
        per_packet: u64,
    ) -> Result<Doorbell, NetError> {
        debug_assert!(self.tx_has_room());
        let idx = self.tx_next;
        let cmd = TXD_CMD_EOP | TXD_CMD_RS | TXD_CMD_L4T_UDP | TXD_CMD_IIPT_IPV4;
        let d = TxDataDesc::build(pool.iova(buf), cmd, tx_offsets(14, 20, 8), len as u64);
        kctx.store(
            self.tx_ring.kva_at(idx as u64 * TX_DESC_BYTES),
            &d,
            Category::Driver,
        )?;
        kctx.cycles(Category::Driver, per_packet);
        self.tx_bufs[idx as usize] = Some(buf);
        self.tx_next = (idx + 1) % self.cfg.tx_entries;
        self.tx_used += 1;
        self.counters.inc("tx_frames");
        Ok(Doorbell {
            reg: regs::tx_tail(self.queue),
            value: self.tx_next,
        })
    }

    /// Buffers the driver holds: the RX ring's and the TX ring's in flight.
    pub fn buffers_held(&self) -> usize {
        self.rx_bufs.len() + self.tx_used as usize
    }
}
