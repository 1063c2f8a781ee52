//! One channel of the Lauberhorn NIC as software on a core uses it: the
//! receive half's parity-flipping loads (the held load that returns a
//! request, its overflow lines or DMA buffer, the result written back into
//! the same line) and the transmit half's write-then-doorbell. The kernel
//! dispatch thread uses it on its core's kernel channel, a process's user
//! loop on that process's own channel; each through its own mapping, so a
//! process reaches only the lines the OS mapped for it.
//!
//! Invariant: the next receive load is always of the control line the
//! previous one did not use, and a result is written only into the line
//! its request came in.

use nextio_engine::Category;
use nextio_hw::coherent::{CoherentError, CoherentFabric};
use nextio_hw::cpu::CoreCtx;
use nextio_hw::mem::{AccessError, VirtAddr};
use nextio_hw::nic::lauberhorn::layout::{
    CTRL_INLINE_OFFSET, FLAG_DMA, Half, LineRole, ResultHdr, RxCtrl, RxKind, TxCtrl, TxKind,
    WindowLayout, split_payload,
};

/// Why a channel operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Coherent(#[from] CoherentError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("control line kind {0:#x} is not one the NIC sends")]
    BadKind(u8),
    #[error("a payload of {0} bytes does not fit the channel's lines")]
    TooLarge(usize),
    #[error("the NIC did not acknowledge the doorbell")]
    NoAck,
}

/// What a receive load returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub kind: RxKind,
    pub hdr: RxCtrl,
    /// The control line it came in.
    pub parity: u8,
    /// Its arguments (or message bytes), in native form.
    pub args: Vec<u8>,
}

/// A channel seen from one address space.
#[derive(Clone)]
pub struct ChannelIo {
    coh: CoherentFabric,
    layout: WindowLayout,
    /// The channel's first byte in the accessing address space.
    base: VirtAddr,
    /// Its DMA buffer there, and the buffer's size.
    dma: Option<(VirtAddr, u64)>,
    rx_parity: u8,
    tx_parity: u8,
}

impl ChannelIo {
    pub fn new(
        coh: CoherentFabric,
        layout: WindowLayout,
        base: VirtAddr,
        dma: Option<(VirtAddr, u64)>,
    ) -> ChannelIo {
        ChannelIo {
            coh,
            layout,
            base,
            dma,
            rx_parity: 0,
            tx_parity: 0,
        }
    }

    pub fn layout(&self) -> WindowLayout {
        self.layout
    }

    /// The virtual address of a line of this channel.
    pub fn line_va(&self, half: Half, which: LineRole) -> VirtAddr {
        self.base.offset(self.layout.offset(0, half, which))
    }

    /// Load the next receive control line: held by the NIC until it has
    /// something; the wait is charged to `wait`, reading overflow lines or
    /// the DMA buffer to `work`.
    pub async fn receive(
        &mut self,
        ctx: &CoreCtx,
        wait: Category,
        work: Category,
    ) -> Result<Delivery, ChannelError> {
        let p = self.rx_parity;
        let lb = self.layout.line_bytes as usize;
        let mut line = vec![0u8; lb];
        self.coh
            .load(
                ctx,
                self.line_va(Half::Rx, LineRole::Ctrl(p)),
                &mut line,
                wait,
            )
            .await?;
        self.rx_parity = 1 - p;
        let hdr = RxCtrl::read(&line);
        let kind = RxKind::from_u8(hdr.kind)
            .filter(|k| *k != RxKind::Result)
            .ok_or(ChannelError::BadKind(hdr.kind))?;
        let n = hdr.args_bytes as usize;
        let mut args = Vec::with_capacity(n);
        if hdr.flags & FLAG_DMA != 0 {
            let (va, bytes) = self.dma.ok_or(ChannelError::TooLarge(n))?;
            args.resize(n, 0);
            ctx.load(va.offset(p as u64 * (bytes / 2)), &mut args, work)?;
        } else {
            let inline = self.layout.inline_bytes();
            args.extend_from_slice(&line[CTRL_INLINE_OFFSET..][..n.min(inline)]);
            if n > inline {
                let vas: Vec<VirtAddr> = (0..hdr.overflow as usize)
                    .map(|k| self.line_va(Half::Rx, LineRole::Overflow(k)))
                    .collect();
                for l in self.coh.load_lines(ctx, &vas, work).await? {
                    let take = (n - args.len()).min(l.len());
                    args.extend_from_slice(&l[..take]);
                }
            }
        }
        Ok(Delivery {
            kind,
            hdr,
            parity: p,
            args,
        })
    }

    /// Write the result of `d` into its control line (and overflow lines
    /// for what does not fit inline); the NIC fetches it when the next
    /// receive load reaches the other line.
    pub async fn write_result(
        &self,
        ctx: &CoreCtx,
        d: &Delivery,
        stat: u8,
        result: &[u8],
        category: Category,
    ) -> Result<(), ChannelError> {
        let lb = self.layout.line_bytes as usize;
        if result.len() > self.layout.max_line_payload() {
            return Err(ChannelError::TooLarge(result.len()));
        }
        let (head, rest) = split_payload(result, self.layout.inline_bytes(), lb);
        let mut line = vec![0u8; lb];
        ResultHdr {
            stat,
            result_bytes: result.len() as u16,
            seq: d.hdr.seq,
        }
        .write(&mut line);
        line[CTRL_INLINE_OFFSET..CTRL_INLINE_OFFSET + head.len()].copy_from_slice(head);
        for (k, chunk) in rest.iter().enumerate() {
            self.coh
                .store(
                    ctx,
                    self.line_va(Half::Rx, LineRole::Overflow(k)),
                    chunk,
                    category,
                )
                .await?;
        }
        self.coh
            .store(
                ctx,
                self.line_va(Half::Rx, LineRole::Ctrl(d.parity)),
                &line,
                category,
            )
            .await?;
        Ok(())
    }

    /// Send a message through the transmit half: write it into the line
    /// this core owns, then ring by loading the other line, which the NIC
    /// answers once it has taken the message.
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &mut self,
        ctx: &CoreCtx,
        kind: TxKind,
        dest: u16,
        cookie: u64,
        payload: &[u8],
        category: Category,
    ) -> Result<(), ChannelError> {
        let lb = self.layout.line_bytes as usize;
        if payload.len() > self.layout.max_line_payload() {
            return Err(ChannelError::TooLarge(payload.len()));
        }
        let t = self.tx_parity;
        let (head, rest) = split_payload(payload, self.layout.inline_bytes(), lb);
        for (k, chunk) in rest.iter().enumerate() {
            self.coh
                .store(
                    ctx,
                    self.line_va(Half::Tx, LineRole::Overflow(k)),
                    chunk,
                    category,
                )
                .await?;
        }
        let mut line = vec![0u8; lb];
        TxCtrl {
            kind: kind as u8,
            flags: 0,
            bytes: payload.len() as u16,
            dest,
            cookie,
        }
        .write(&mut line);
        line[CTRL_INLINE_OFFSET..CTRL_INLINE_OFFSET + head.len()].copy_from_slice(head);
        self.coh
            .store(
                ctx,
                self.line_va(Half::Tx, LineRole::Ctrl(t)),
                &line,
                category,
            )
            .await?;
        let mut ack = vec![0u8; lb];
        self.coh
            .load(
                ctx,
                self.line_va(Half::Tx, LineRole::Ctrl(1 - t)),
                &mut ack,
                category,
            )
            .await?;
        self.tx_parity = 1 - t;
        if TxKind::from_u8(ack[0]) != Some(TxKind::Ack) {
            return Err(ChannelError::NoAck);
        }
        Ok(())
    }
}
