//! A storage-like block device: a command doorbell (BAR 0), its own
//! memory exposed as a controller memory buffer (BAR 1, which peers read
//! and write), and media holding real bytes. A read takes the media's
//! latency and bandwidth, then moves its blocks by DMA to the command's
//! bus address — host memory, or another device's BAR, which the fabric
//! routes peer to peer (straight across a switch whose policy allows it)
//! — or into its own memory, and writes a completion.
//!
//! Invariants: every command accepted ends exactly once in `completed`
//! or `failed.<reason>`; the media and the controller memory are real
//! bytes; a command naming blocks past the media moves nothing.

pub mod layout;

use std::collections::VecDeque;

use nextio_engine::{Counters, Duration, Time};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::device::{BarSpec, Device, DeviceCtx, DmaFault, Requester};
use crate::layout::set_u64;

use layout::{COMMAND_BYTES, COMPLETION_BYTES, Command, flags, opcode, status};

/// The device's size and timing: a preset's `[devices.blockdev]`, where
/// each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDevConfig {
    pub block_bytes: u64,
    pub blocks: u64,
    /// Controller memory buffer bytes (BAR 1).
    pub cmb_bytes: u64,
    /// Media read latency.
    pub read_latency_ps: u64,
    /// Media bandwidth.
    pub media_bytes_per_s: u64,
}

impl Default for BlockDevConfig {
    /// The root preset's block device.
    fn default() -> Self {
        nextio_presets::root_section("devices.blockdev")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BlockDevError {
    #[error(
        "a block device needs blocks of 512..=65536 B, 1..=2^20 blocks, a CMB of 4 KiB..=64 MiB and positive media bandwidth"
    )]
    Shape,
}

/// The device.
pub struct BlockDev {
    cfg: BlockDevConfig,
    media: Vec<u8>,
    cmb: Vec<u8>,
    queue: VecDeque<[u8; COMMAND_BYTES]>,
    /// When the media is free again.
    media_free: Time,
    /// Commands waiting for their media time (a timer each).
    pending: VecDeque<[u8; COMMAND_BYTES]>,
    counters: Counters,
}

const MEDIA_DONE: u64 = 1;
const COMPLETION_TAG: u64 = u64::MAX;

impl BlockDev {
    pub fn new(cfg: BlockDevConfig) -> Result<BlockDev, BlockDevError> {
        if !(512..=65536).contains(&cfg.block_bytes)
            || !(1..=1 << 20).contains(&cfg.blocks)
            || !(4096..=64 << 20).contains(&cfg.cmb_bytes)
            || cfg.media_bytes_per_s == 0
        {
            return Err(BlockDevError::Shape);
        }
        Ok(BlockDev {
            media: vec![0; (cfg.block_bytes * cfg.blocks) as usize],
            cmb: vec![0; cfg.cmb_bytes as usize],
            cfg,
            queue: VecDeque::new(),
            media_free: Time::ZERO,
            pending: VecDeque::new(),
            counters: Counters::new(),
        })
    }

    /// Write `data` onto the media at `lba` (formatting the device before
    /// a run, untimed).
    pub fn load(&mut self, lba: u64, data: &[u8]) -> bool {
        let at = lba.saturating_mul(self.cfg.block_bytes) as usize;
        match self.media.get_mut(at..at.saturating_add(data.len())) {
            Some(dst) => {
                dst.copy_from_slice(data);
                true
            }
            None => false,
        }
    }

    /// The controller memory buffer's bytes.
    pub fn cmb(&self) -> &[u8] {
        &self.cmb
    }

    pub fn config(&self) -> BlockDevConfig {
        self.cfg
    }

    fn complete(&mut self, cx: &mut DeviceCtx<'_>, cmd: &Command<&[u8]>, st: u8) {
        let mut c = [0u8; COMPLETION_BYTES];
        c[0] = st;
        set_u64(&mut c, 8..16, cmd.tag());
        self.counters.inc(match st {
            status::SUCCESS => "completed",
            status::OUT_OF_RANGE => "failed.out_of_range",
            status::BAD_COMMAND => "failed.bad_command",
            _ => "failed.transfer",
        });
        if cmd.completion() != 0
            && cx
                .dma_write(cmd.completion(), &c, "completion", COMPLETION_TAG)
                .is_err()
        {
            self.counters.inc("completion_unwritable");
        }
    }

    fn start_next(&mut self, cx: &mut DeviceCtx<'_>) {
        while let Some(cmd) = self.queue.pop_front() {
            let c = Command::new(&cmd[..]).unwrap_or_else(|| unreachable!());
            let bytes = c.blocks() as u64 * self.cfg.block_bytes;
            let in_range = c
                .lba()
                .checked_add(c.blocks() as u64)
                .is_some_and(|end| end <= self.cfg.blocks);
            let fits_cmb = c.flags() & flags::TO_CMB == 0
                || c.addr().saturating_add(bytes) <= self.cfg.cmb_bytes;
            if c.opcode() != opcode::READ || c.blocks() == 0 {
                self.complete(cx, &c, status::BAD_COMMAND);
                continue;
            }
            if !in_range || !fits_cmb {
                self.complete(cx, &c, status::OUT_OF_RANGE);
                continue;
            }
            // Media time: latency, then the blocks at the media's rate,
            // one command after another.
            let transfer = Duration::from_ps(
                (bytes as u128 * 1_000_000_000_000 / self.cfg.media_bytes_per_s as u128) as u64,
            );
            let start = self.media_free.max(cx.now());
            let done = start + Duration::from_ps(self.cfg.read_latency_ps) + transfer;
            self.media_free = start + transfer;
            self.pending.push_back(cmd);
            cx.set_timer(done - cx.now(), MEDIA_DONE);
        }
    }
}

impl Device for BlockDev {
    fn name(&self) -> &'static str {
        "blockdev"
    }
    fn bars(&self) -> Vec<BarSpec> {
        vec![BarSpec::new(4096), BarSpec::new(self.cfg.cmb_bytes)]
    }
    fn bar_write(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        _from: Requester,
        bar: u8,
        offset: u64,
        data: &[u8],
    ) {
        match bar {
            0 if offset == 0 && data.len() == COMMAND_BYTES => {
                let mut cmd = [0u8; COMMAND_BYTES];
                cmd.copy_from_slice(data);
                self.counters.inc("accepted");
                self.queue.push_back(cmd);
                self.start_next(cx);
            }
            1 => match self
                .cmb
                .get_mut(offset as usize..offset as usize + data.len())
            {
                Some(dst) => {
                    dst.copy_from_slice(data);
                    self.counters.add("cmb_bytes_written", data.len() as u64);
                }
                None => self.counters.inc("drop.cmb_out_of_range"),
            },
            _ => self.counters.inc("drop.bad_register_write"),
        }
    }
    fn bar_read(
        &mut self,
        _cx: &mut DeviceCtx<'_>,
        _from: Requester,
        bar: u8,
        offset: u64,
        out: &mut [u8],
    ) {
        if bar == 1
            && let Some(src) = self.cmb.get(offset as usize..offset as usize + out.len())
        {
            out.copy_from_slice(src);
            self.counters.add("cmb_bytes_read", out.len() as u64);
        }
    }
    fn timer(&mut self, cx: &mut DeviceCtx<'_>, _token: u64) {
        let Some(cmd) = self.pending.pop_front() else {
            return;
        };
        let c = Command::new(&cmd[..]).unwrap_or_else(|| unreachable!());
        let at = (c.lba() * self.cfg.block_bytes) as usize;
        let n = (c.blocks() as u64 * self.cfg.block_bytes) as usize;
        let data = self.media[at..at + n].to_vec();
        let st = if c.flags() & flags::TO_CMB != 0 {
            let o = c.addr() as usize;
            self.cmb[o..o + n].copy_from_slice(&data);
            status::SUCCESS
        } else {
            match cx.dma_write(c.addr(), &data, "storage-data", c.tag()) {
                Ok(_) => status::SUCCESS,
                Err(_) => status::TRANSFER_ERROR,
            }
        };
        self.complete(cx, &c, st);
    }
    fn dma_fault(&mut self, _cx: &mut DeviceCtx<'_>, tag: u64, _fault: DmaFault) {
        // A posted write's fault arrives after its completion was sent.
        self.counters.inc(if tag == COMPLETION_TAG {
            "completion_unwritable"
        } else {
            "transfer_faults"
        });
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
}
