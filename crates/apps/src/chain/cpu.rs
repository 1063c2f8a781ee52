//! The CPU-mediated chain (thesis Table 2): one thread on core 0 runs the
//! glue between three devices with today's interfaces. Per image:
//! the NIC writes it into an Ensō pipe (½ RTT); the thread hands it to
//! the crypto accelerator with a descriptor in host memory and a doorbell
//! (½), which reads the descriptor (1) and the image where it sits in the
//! pipe (1) and writes the plaintext and its completion back (½); the same
//! again for the classifier (½ + 1 + 1 + ½); and the thread builds the
//! reply frame in a TX pipe and rings the NIC (½), which reads the TX
//! notification (1) and the frame (1). Nothing in the model counts these:
//! they are the transactions this software makes the devices issue.
//!
//! The loop is asynchronous — each stage runs whenever its input is ready
//! — so images overlap at load; its instruction costs are the drivers'
//! constants plus the named ones below.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use nextio_engine::{Category, Counters, Notify, Sim};
use nextio_hw::accel::cmdq::Descriptor;
use nextio_hw::accel::crypto::OP_DECRYPT;
use nextio_hw::accel::ml::{OP_CLASSIFY, RESULT_BYTES};
use nextio_hw::nagare::frame;
use nextio_hw::packet::UDP_HEADERS_BYTES;
use nextio_lib::cmdq::CommandQueue;
use nextio_lib::enso::{Device, RxPipe, TxPipe};
use nextio_os::DmaBuffer;
use serde::{Deserialize, Serialize};

use super::{ChainError, ChainSystem, KEY, err, reply_template};

/// Images in flight between the NIC and the reply (staging slots).
const SLOTS: usize = 64;
/// Bytes of a staging slot (largest image).
const SLOT_BYTES: u64 = 2048;
/// Descriptors per accelerator ring.
const RING_ENTRIES: u32 = 128;
/// The glue's own costs: the root preset's `[apps.chain]`, where each
/// value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainCosts {
    /// Per image, beyond the drivers' costs: parse the UDP header, pick a
    /// slot, build the reply.
    pub glue_cycles: u64,
}

/// The root preset's glue costs (read once per process).
pub fn costs() -> &'static ChainCosts {
    nextio_presets::cached_root_section!(ChainCosts, "apps.chain")
}

struct Glue {
    dev: Device,
    rx: RxPipe,
    tx: TxPipe,
    crypto: CommandQueue,
    ml: CommandQueue,
    mid: DmaBuffer,
    res: DmaBuffer,
    free_slots: Vec<usize>,
    /// Per image at the crypto: (seq, slot, pipe bytes to free after it).
    at_crypto: VecDeque<(u64, usize, u64)>,
    at_ml: VecDeque<(u64, usize)>,
    /// Received bytes not yet handed to the crypto (they must be freed in
    /// order, after the crypto read them).
    next_seq: u64,
    template: Vec<u8>,
    app: Rc<RefCell<Counters>>,
}

pub(super) fn start(sim: &Sim, sys: &ChainSystem) -> Result<(), ChainError> {
    let process = sys.host.create_process().map_err(err)?;
    let thread = process.thread(0).map_err(err)?;
    let ctx = thread.ctx.clone();
    let mut dev = Device::open(
        ctx.clone(),
        &process,
        sys.nic.clone(),
        nextio_lib::enso::config().notification_entries,
    )
    .map_err(err)?;
    let rx = dev.alloc_rx_pipe(Some(sys.flow), false).map_err(err)?;
    let tx = dev.alloc_tx_pipe().map_err(err)?;
    // The crypto reads images where they sit in the pipe.
    process
        .dma_share(dev.rx_ring_buffer(rx).map_err(err)?, sys.crypto.id)
        .map_err(err)?;
    let crypto =
        CommandQueue::open(ctx.clone(), &process, &sys.crypto, RING_ENTRIES).map_err(err)?;
    let ml = CommandQueue::open(ctx.clone(), &process, &sys.ml, RING_ENTRIES).map_err(err)?;
    // Plaintext: written by the crypto, read by the classifier.
    let mid = process
        .dma_alloc(sys.crypto.id, SLOTS as u64 * SLOT_BYTES)
        .map_err(err)?;
    process.dma_share(mid, sys.ml.id).map_err(err)?;
    let res = process
        .dma_alloc(sys.ml.id, SLOTS as u64 * 64)
        .map_err(err)?;
    let notify = Rc::new(Notify::new(sim));
    dev.watch_activity(notify.clone()).map_err(err)?;
    crypto.watch(notify.clone()).map_err(err)?;
    ml.watch(notify.clone()).map_err(err)?;
    let glue = Glue {
        dev,
        rx,
        tx,
        crypto,
        ml,
        mid,
        res,
        free_slots: (0..SLOTS).rev().collect(),
        at_crypto: VecDeque::new(),
        at_ml: VecDeque::new(),
        next_seq: 0,
        template: reply_template(sys.flow),
        app: sys.app.clone(),
    };
    let (ready, s) = (sys.ready.clone(), sim.clone());
    *ready.borrow_mut() = Some(Ok(s.now()));
    let app = sys.app.clone();
    sim.spawn(async move {
        if glue.run(notify).await.is_err() {
            app.borrow_mut().inc("thread_errors");
        }
    });
    Ok(())
}

type R<T> = Result<T, Box<dyn std::error::Error>>;

impl Glue {
    async fn run(mut self, notify: Rc<Notify>) -> R<()> {
        loop {
            let mut did = self.stage_rx().await?;
            did |= self.stage_crypto_done().await?;
            did |= self.stage_ml_done().await?;
            did |= self.dev.process_completions().await? > 0;
            if !did {
                // Wait for something this loop can act on: a notification
                // while it has room for an image, a completion it can
                // pass on, a TX completion.
                let (c, m, d) = (&self.crypto, &self.ml, &self.dev);
                let can_rx = !self.free_slots.is_empty() && c.has_room();
                d.ctx()
                    .spin_until(&notify, || {
                        (can_rx && d.has_activity())
                            || (c.completion_ready() && m.has_room())
                            || m.completion_ready()
                            || d.tx_completion_ready()
                    })
                    .await;
            }
        }
    }

    /// Received images → crypto descriptors, one doorbell per batch.
    async fn stage_rx(&mut self) -> R<bool> {
        if self.free_slots.is_empty() || !self.crypto.has_room() {
            return Ok(false);
        }
        let Some(p) = self.dev.next_rx_pipe_to_recv().await? else {
            return Ok(false);
        };
        let batch = self.dev.peek(p, u64::MAX)?;
        let ring = self.dev.rx_ring_buffer(self.rx)?;
        let mut off = 0;
        let mut submitted = 0;
        while !self.free_slots.is_empty() && self.crypto.has_room() {
            let Some(pkt) = self.dev.packet_at(&batch, off)? else {
                break;
            };
            let mut h = [0u8; UDP_HEADERS_BYTES];
            self.dev.read(p, pkt.start, &mut h, Category::Application)?;
            self.dev
                .ctx()
                .cycles(Category::Application, costs().glue_cycles);
            let udp = u16::from_be_bytes([h[38], h[39]]) as u64;
            let start = (pkt.start + UDP_HEADERS_BYTES as u64) % ring.len;
            let len = udp.saturating_sub(8);
            off += pkt.padded_len;
            let seq = self.next_seq;
            self.next_seq += 1;
            if start + len > ring.len || len == 0 || len > SLOT_BYTES {
                // Wrapped around the ring's end or unusable: not served
                // (counted; the generator's images never wrap a 2 MiB pipe
                // at the sizes the experiments use).
                self.app.borrow_mut().inc("drop.unusable_image");
                self.at_crypto.push_back((seq, usize::MAX, pkt.padded_len));
                continue;
            }
            let slot = self.free_slots.pop().unwrap_or(0);
            self.crypto.submit(Descriptor {
                op: OP_DECRYPT,
                status: 0,
                state: KEY,
                src: ring.iova + start,
                src_len: len as u32,
                dst: self.mid.iova + slot as u64 * SLOT_BYTES,
                dst_cap: SLOT_BYTES as u32,
                out_len: 0,
                param: 0,
                cookie: seq,
            })?;
            self.at_crypto.push_back((seq, slot, pkt.padded_len));
            submitted += 1;
        }
        self.dev.confirm_bytes(p, off)?;
        if submitted > 0 {
            self.crypto.ring_doorbell().await?;
        }
        Ok(off > 0)
    }

    /// Crypto completions → free the pipe bytes it read → classifier.
    async fn stage_crypto_done(&mut self) -> R<bool> {
        let mut freed = 0;
        let mut submitted = 0;
        while let Some((seq, slot, bytes)) = self.at_crypto.front().copied() {
            if slot != usize::MAX {
                if !self.ml.has_room() {
                    break;
                }
                let Some(d) = self.crypto.poll()? else { break };
                if d.code() != 0 {
                    self.app.borrow_mut().inc("drop.crypto_failed");
                    self.free_slots.push(slot);
                } else {
                    self.ml.submit(Descriptor {
                        op: OP_CLASSIFY,
                        status: 0,
                        state: [0; 16],
                        src: self.mid.iova + slot as u64 * SLOT_BYTES,
                        src_len: d.out_len,
                        dst: self.res.iova + slot as u64 * 64,
                        dst_cap: 64,
                        out_len: 0,
                        param: 0,
                        cookie: seq,
                    })?;
                    self.at_ml.push_back((seq, slot));
                    submitted += 1;
                }
            }
            self.at_crypto.pop_front();
            freed += bytes;
        }
        if submitted > 0 {
            self.ml.ring_doorbell().await?;
        }
        if freed > 0 {
            self.dev.free(self.rx, freed).await?;
        }
        Ok(freed > 0)
    }

    /// Classifier results → reply frames on the TX pipe.
    async fn stage_ml_done(&mut self) -> R<bool> {
        let mut did = false;
        while let Some((seq, slot)) = self.at_ml.front().copied() {
            let Some(d) = self.ml.poll()? else { break };
            self.at_ml.pop_front();
            self.free_slots.push(slot);
            did = true;
            if d.code() != 0 || d.out_len as usize != RESULT_BYTES {
                self.app.borrow_mut().inc("drop.ml_failed");
                continue;
            }
            let mut result = [0u8; RESULT_BYTES];
            let ctx = self.dev.ctx().clone();
            ctx.load(
                self.res.va.offset(slot as u64 * 64),
                &mut result,
                Category::Application,
            )?;
            let mut body = seq.to_le_bytes().to_vec();
            body.extend_from_slice(&result);
            let Some(f) = frame::build(&self.template, &body) else {
                self.app.borrow_mut().inc("drop.reply_build");
                continue;
            };
            let (va, cap) = self.dev.alloc_buf(self.tx)?;
            if (f.len() as u64) > cap {
                self.app.borrow_mut().inc("drop.tx_full");
                continue;
            }
            ctx.store(va, &f, Category::Application)?;
            ctx.cycles(Category::Application, costs().glue_cycles);
            self.dev.send(self.tx, f.len() as u64).await?;
            self.app.borrow_mut().inc("replies");
        }
        Ok(did)
    }
}
