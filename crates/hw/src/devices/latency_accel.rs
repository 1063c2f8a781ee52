//! A DSA-like offload device whose work is only a latency (xUI §5.4): a
//! descriptor is submitted by a 64-byte MMIO write to the device's portal
//! (MOVDIR64B), and completes after a latency drawn from a configurable
//! distribution — a mean (2 µs or 20 µs in the paper) plus uniform noise of
//! ± `noise`, never below a floor. Completing writes the descriptor's
//! completion record into host memory by DMA (what a spinning or
//! periodically polling core reads) and, if the descriptor asks for it,
//! sends MSI-X vector 0 behind the record.
//!
//! Invariants: every accepted descriptor completes exactly once
//! (`submitted == completed + in flight`); a descriptor that is not 64
//! bytes at the portal's start is counted (`drop.bad_descriptor`) and
//! dropped; a completion record the IOMMU refuses is counted
//! (`drop.completion_fault`).

use nextio_engine::{Counters, Duration, SimRng};
use thiserror::Error;

use crate::device::{BarSpec, Device, DeviceCtx, DmaFault, Requester};
use crate::layout::{get_u32, get_u64, set_u32, set_u64};

/// Completion-latency distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyDist {
    pub mean: Duration,
    /// Half-width of the uniform noise added to the mean.
    pub noise: Duration,
    /// Lower bound (a descriptor cannot complete before the engine reads it).
    pub floor: Duration,
}

#[derive(Clone, Debug, PartialEq, Error)]
pub enum DsaError {
    #[error("mean completion latency must be positive")]
    ZeroMean,
}

impl LatencyDist {
    pub fn new(mean: Duration, noise: Duration) -> Result<LatencyDist, DsaError> {
        if mean.0 == 0 {
            return Err(DsaError::ZeroMean);
        }
        Ok(LatencyDist {
            mean,
            noise,
            // Assumption: the engine needs some time to read a descriptor
            // and write a record even when the work takes none.
            floor: Duration::from_ns(200),
        })
    }
    pub fn sample(&self, rng: &mut SimRng) -> Duration {
        let u = rng.unit() * 2.0 - 1.0;
        let ps = self.mean.0 as f64 + u * self.noise.0 as f64;
        Duration((ps.max(self.floor.0 as f64)) as u64)
    }
}

/// The 64-byte descriptor written to the portal.
pub mod descriptor {
    use crate::layout::Field;
    /// Bytes of a descriptor (one MOVDIR64B store).
    pub const BYTES: usize = 64;
    /// Flags: bit 0 asks for an interrupt on completion (DSA's Request
    /// Completion Interrupt flag, DSA spec §8.3.3).
    pub const FLAGS: Field = 0..4;
    /// Where the completion record goes (DSA: descriptor bytes 24..32).
    pub const COMPLETION_ADDR: Field = 24..32;
    /// The software's own tag, echoed in the record.
    pub const ID: Field = 32..40;
    pub const FLAG_INTERRUPT: u32 = 1;
}

/// The completion record the device writes.
pub mod record {
    use crate::layout::Field;
    /// Bytes of a record (a DSA completion record is 32 bytes).
    pub const BYTES: usize = 32;
    /// Byte 0: status, non-zero once complete (DSA: 1 = success).
    pub const STATUS: usize = 0;
    pub const STATUS_SUCCESS: u8 = 1;
    /// Bytes of work completed (DSA: bytes 4..8).
    pub const BYTES_COMPLETED: Field = 4..8;
    /// The descriptor's tag (nextio's; DSA puts a fault address here).
    pub const ID: Field = 8..16;
}

/// A descriptor waiting out its latency.
struct InFlight {
    record: u64,
    id: u64,
    interrupt: bool,
}

/// The device.
pub struct LatencyAccel {
    dist: LatencyDist,
    rng: SimRng,
    inflight: Vec<Option<InFlight>>,
    counters: Counters,
}

impl LatencyAccel {
    pub fn new(dist: LatencyDist, rng: SimRng) -> LatencyAccel {
        LatencyAccel {
            dist,
            rng,
            inflight: Vec::new(),
            counters: Counters::new(),
        }
    }

    fn slot(&mut self, d: InFlight) -> u64 {
        match self.inflight.iter().position(Option::is_none) {
            Some(i) => {
                self.inflight[i] = Some(d);
                i as u64
            }
            None => {
                self.inflight.push(Some(d));
                (self.inflight.len() - 1) as u64
            }
        }
    }

    /// Descriptors accepted and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.inflight.iter().flatten().count()
    }
}

/// A descriptor for the portal: where the record goes, the tag, and
/// whether to interrupt.
pub fn build_descriptor(record: u64, id: u64, interrupt: bool) -> [u8; descriptor::BYTES] {
    let mut d = [0u8; descriptor::BYTES];
    let flags = if interrupt {
        descriptor::FLAG_INTERRUPT
    } else {
        0
    };
    set_u32(&mut d, descriptor::FLAGS, flags);
    set_u64(&mut d, descriptor::COMPLETION_ADDR, record);
    set_u64(&mut d, descriptor::ID, id);
    d
}

impl Device for LatencyAccel {
    fn name(&self) -> &'static str {
        "latency-accel"
    }
    fn bars(&self) -> Vec<BarSpec> {
        // One portal page (DSA portals are 4 KiB pages, DSA spec §3.3).
        vec![BarSpec::new(4096)]
    }
    fn bar_write(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        _from: Requester,
        _bar: u8,
        offset: u64,
        data: &[u8],
    ) {
        if offset != 0 || data.len() != descriptor::BYTES {
            self.counters.inc("drop.bad_descriptor");
            return;
        }
        let d = InFlight {
            record: get_u64(data, descriptor::COMPLETION_ADDR),
            id: get_u64(data, descriptor::ID),
            interrupt: get_u32(data, descriptor::FLAGS) & descriptor::FLAG_INTERRUPT != 0,
        };
        self.counters.inc("submitted");
        let latency = self.dist.sample(&mut self.rng);
        let slot = self.slot(d);
        cx.set_timer(latency, slot);
    }
    fn bar_read(&mut self, _: &mut DeviceCtx<'_>, _: Requester, _: u8, _: u64, _: &mut [u8]) {}
    fn timer(&mut self, cx: &mut DeviceCtx<'_>, token: u64) {
        let Some(d) = self.inflight.get_mut(token as usize).and_then(Option::take) else {
            return;
        };
        let mut r = [0u8; record::BYTES];
        r[record::STATUS] = record::STATUS_SUCCESS;
        set_u64(&mut r, record::ID, d.id);
        match cx.dma_write(d.record, &r, "completion", d.id) {
            Ok(_) => self.counters.inc("completed"),
            Err(_) => {
                self.counters.inc("drop.completion_fault");
                return;
            }
        }
        if d.interrupt {
            cx.msix(0);
        }
    }
    fn dma_fault(&mut self, _: &mut DeviceCtx<'_>, _: u64, _: DmaFault) {
        // The record was refused by the IOMMU: counted, not retried.
        self.counters.inc("drop.completion_fault");
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::HierarchyConfig;
    use crate::fabric::{Attach, DeviceLink, Fabric, FabricConfig, IommuConfig, MsiMessage};
    use crate::mem::{PhysAddr, TlbConfig};
    use crate::memory::MemorySystem;
    use nextio_engine::Sim;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn every_descriptor_completes_once_with_its_record_and_interrupt() {
        let sim = Sim::new();
        let mem = MemorySystem::new(
            &sim,
            64 << 20,
            HierarchyConfig::ice_lake(1),
            TlbConfig::SKYLAKE_STLB,
        )
        .unwrap()
        .shared();
        let fabric = Fabric::new(
            &sim,
            mem.clone(),
            FabricConfig {
                iommu: IommuConfig {
                    enabled: false,
                    ..IommuConfig::default()
                },
                ..FabricConfig::default()
            },
        )
        .unwrap();
        let d = LatencyDist::new(Duration::from_us(2), Duration::from_us(1)).unwrap();
        let dev = fabric
            .attach(
                LatencyAccel::new(d, SimRng::new(7)),
                Attach::RootPort,
                DeviceLink::default(),
            )
            .unwrap();
        fabric
            .set_msix(
                dev.id,
                0,
                MsiMessage {
                    core: 0,
                    vector: 48,
                },
            )
            .unwrap();
        let irqs = Rc::new(RefCell::new(0));
        let i = irqs.clone();
        fabric.set_interrupt_sink(Rc::new(move |_| *i.borrow_mut() += 1));
        let records = mem.borrow_mut().phys.alloc(100 * 64, 64).unwrap();
        let portal = fabric.bar(dev.id, 0).unwrap().base;
        for k in 0..100u64 {
            let desc = build_descriptor(records.base.0 + k * 64, k, k % 2 == 0);
            fabric
                .cpu_mmio_write(0, PhysAddr(portal), &desc, "descriptor")
                .unwrap();
        }
        // A short write is not a descriptor.
        fabric
            .cpu_mmio_write(0, PhysAddr(portal), &[0; 8], "descriptor")
            .unwrap();
        sim.run();
        let c = dev.borrow().counters().clone();
        assert_eq!(c.get("submitted"), 100);
        assert_eq!(c.get("completed"), 100);
        assert_eq!(c.get("drop.bad_descriptor"), 1);
        assert_eq!(dev.borrow().in_flight(), 0);
        assert_eq!(*irqs.borrow(), 50);
        for k in 0..100u64 {
            let mut r = [0u8; record::BYTES];
            mem.borrow()
                .phys
                .read(records.base.offset(k * 64), &mut r)
                .unwrap();
            assert_eq!(r[record::STATUS], record::STATUS_SUCCESS);
            assert_eq!(get_u64(&r, record::ID), k);
        }
        assert!(sim.now().ps() >= Duration::from_us(1).ps());
        assert!(LatencyDist::new(Duration::ZERO, Duration::ZERO).is_err());
    }
}
