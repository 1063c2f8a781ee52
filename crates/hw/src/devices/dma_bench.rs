//! A DMA benchmark device, after pcie-bench's NFP and NetFPGA firmware
//! (Neugebauer et al., SIGCOMM'18 §4): it issues a stream of DMA writes or
//! reads of one size back to back and records when each finishes, so the
//! throughput a link sustains can be measured from the device side.
//!
//! A stream is started by the control plane ([`DmaBench::start`]); each
//! transfer is issued as soon as the device could start it — the upstream
//! line is free (writes) or a read tag is (reads) — and finishes when its
//! last TLP leaves the device (writes, posted) or its last completion
//! arrives (reads).
//!
//! Invariant: every transfer issued either finishes or is counted as a
//! fault (`drop.fault`) or an error (`drop.error`).

use nextio_engine::{Counters, Duration, Time};

use crate::device::{BarSpec, Device, DeviceCtx, DmaFault, Requester};

/// Which direction a stream moves data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchOp {
    /// Device → host memory (DMA writes).
    Write,
    /// Host memory → device (DMA reads).
    Read,
}

#[derive(Clone, Copy, Debug)]
struct Stream {
    op: BenchOp,
    base: u64,
    size: u64,
    stride: u64,
    count: u64,
    issued: u64,
}

/// The device.
#[derive(Default)]
pub struct DmaBench {
    stream: Option<Stream>,
    /// When each transfer finished, in issue order for writes and arrival
    /// order for reads.
    finished: Vec<Time>,
    payload: Vec<u8>,
    counters: Counters,
}

const ISSUE: u64 = 0;

impl DmaBench {
    pub fn new() -> DmaBench {
        DmaBench::default()
    }

    /// Stream `count` transfers of `size` bytes, the i-th at
    /// `base + i * stride` (bus addresses), starting at the next event the
    /// device sees (call through `Fabric::act`).
    pub fn start(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        op: BenchOp,
        base: u64,
        size: u64,
        stride: u64,
        count: u64,
    ) {
        self.stream = Some(Stream {
            op,
            base,
            size,
            stride,
            count,
            issued: 0,
        });
        self.payload = vec![0xa5; size as usize];
        self.finished.clear();
        cx.set_timer(Duration::ZERO, ISSUE);
    }

    /// When each transfer finished.
    pub fn finished(&self) -> &[Time] {
        &self.finished
    }

    fn issue(&mut self, cx: &mut DeviceCtx<'_>) {
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        if s.issued >= s.count {
            return;
        }
        let addr = s.base + s.issued * s.stride;
        let tag = s.issued;
        s.issued += 1;
        self.counters.inc("issued");
        let next = match s.op {
            BenchOp::Write => match cx.dma_write(addr, &self.payload, "packet-data", tag) {
                Ok(p) => {
                    self.finished.push(p.sent_at);
                    self.counters.inc("finished");
                    p.sent_at
                }
                Err(_) => {
                    self.counters.inc("drop.error");
                    cx.now()
                }
            },
            BenchOp::Read => {
                if cx.dma_read(addr, s.size, "packet-data", tag).is_err() {
                    self.counters.inc("drop.error");
                }
                cx.read_issue_at()
            }
        };
        let delay = next.max(cx.now()) - cx.now();
        cx.set_timer(delay, ISSUE);
    }
}

impl Device for DmaBench {
    fn name(&self) -> &'static str {
        "dma-bench"
    }
    fn bars(&self) -> Vec<BarSpec> {
        vec![BarSpec::new(4096)]
    }
    fn bar_write(&mut self, _: &mut DeviceCtx<'_>, _: Requester, _: u8, _: u64, _: &[u8]) {}
    fn bar_read(&mut self, _: &mut DeviceCtx<'_>, _: Requester, _: u8, _: u64, _: &mut [u8]) {}
    fn dma_read_done(&mut self, cx: &mut DeviceCtx<'_>, _tag: u64, _data: &[u8]) {
        self.finished.push(cx.now());
        self.counters.inc("finished");
    }
    fn dma_fault(&mut self, _: &mut DeviceCtx<'_>, _: u64, _: DmaFault) {
        self.counters.inc("drop.fault");
    }
    fn timer(&mut self, cx: &mut DeviceCtx<'_>, _token: u64) {
        self.issue(cx);
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
}
