//! Compute-bound work for retired RPC cores: a fixed-size chunk at a
//! time, each stopped early by the core's interrupt line, so the NIC's
//! call-back is taken when it arrives. Keeps the cycles it got done.

use std::cell::Cell;

use nextio_engine::Category;
use nextio_hw::cpu::CoreCtx;
use nextio_hw::interrupt::line::{IrqLine, compute_interruptible};
use nextio_hw::interrupt::pipeline::InstrMix;

use super::{Background, LocalFuture};

/// Background compute of pipeline behaviour `mix`, in chunks of
/// `chunk_cycles`.
pub struct ComputeBackground {
    mix: InstrMix,
    chunk_cycles: u64,
    done_cycles: Cell<u64>,
}

impl ComputeBackground {
    pub fn new(mix: InstrMix, chunk_cycles: u64) -> ComputeBackground {
        ComputeBackground {
            mix,
            chunk_cycles,
            done_cycles: Cell::new(0),
        }
    }
    /// Cycles of work done on every core so far.
    pub fn done_cycles(&self) -> u64 {
        self.done_cycles.get()
    }
}

impl Background for ComputeBackground {
    fn chunk<'a>(
        &'a self,
        ctx: &'a CoreCtx,
        _core: usize,
        irq: &'a IrqLine,
    ) -> LocalFuture<'a, ()> {
        Box::pin(async move {
            let ran =
                compute_interruptible(ctx, irq, Category::Application, self.chunk_cycles, None)
                    .await;
            self.done_cycles
                .set(self.done_cycles.get() + ran.executed_cycles);
        })
    }
    fn mix(&self) -> InstrMix {
        self.mix
    }
}
