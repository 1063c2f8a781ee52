//! Nagare's switch on real bytes, driven the way the CPU and devices drive
//! it: streams programmed by MMIO configuration entries, devices pushing
//! into stream windows, the switch pushing on by each stream's hop —
//! to streaming accelerators, through adapters to unmodified command-queue
//! accelerators, into host memory — and access rules attacked by a hostile
//! device. Every check is on bytes and counters, not on timing, except the
//! one that the pipeline's cost is on the TLP path.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Counters, Sim, Time};
use nextio_hw::accel::cmdq::TAIL_REGISTER;
use nextio_hw::accel::crypto::{self, AesGcm, OP_DECRYPT};
use nextio_hw::accel::ml::{self, Classifier, OP_CLASSIFY};
use nextio_hw::accel::{AccelConfig, Accelerator};
use nextio_hw::cache::HierarchyConfig;
use nextio_hw::device::{BarSpec, Device, DeviceCtx, Requester};
use nextio_hw::fabric::{
    Attach, DeviceHandle, DeviceLink, Fabric, FabricConfig, IommuConfig, P2pPolicy, SwitchConfig,
    SwitchId,
};
use nextio_hw::mem::{PhysAddr, TlbConfig};
use nextio_hw::memory::{MemorySystem, SharedMemory};
use nextio_hw::nagare::layout::{
    Action, AdapterKind, CPU_WRITER, ConfigEntry, ConfigError, DropReason, ENTRY_BYTES, ErrorEntry,
    MessageHeader, Offender, PushCommand, STATE_BYTES, StreamFormat, bar, regs, writer_bit,
};
use nextio_hw::nagare::{NagareConfig, NagareSwitch, PipelineConfig};
use nextio_hw::pcie::PcieConfig;

/// The writes a probe saw: when, and what.
type Seen = Rc<RefCell<Vec<(Time, Vec<u8>)>>>;

/// A device that records the writes reaching it.
struct Probe {
    seen: Seen,
    counters: Counters,
}

impl Device for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn bars(&self) -> Vec<BarSpec> {
        vec![BarSpec::new(1 << 16)]
    }
    fn bar_write(&mut self, cx: &mut DeviceCtx<'_>, _: Requester, _: u8, _: u64, data: &[u8]) {
        self.seen.borrow_mut().push((cx.now(), data.to_vec()));
    }
    fn bar_read(&mut self, _: &mut DeviceCtx<'_>, _: Requester, _: u8, _: u64, _: &mut [u8]) {}
    fn counters(&self) -> &Counters {
        &self.counters
    }
}

fn probe() -> (Probe, Seen) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    (
        Probe {
            seen: seen.clone(),
            counters: Counters::new(),
        },
        seen,
    )
}

struct Rig {
    sim: Sim,
    mem: SharedMemory,
    fabric: Fabric,
    nagare: DeviceHandle<NagareSwitch>,
    crypto: DeviceHandle<Accelerator<AesGcm>>,
    ml: DeviceHandle<Accelerator<Classifier>>,
    source: DeviceHandle<Probe>,
    hostile: DeviceHandle<Probe>,
    /// Host memory for the results ring.
    ring: u64,
}

const KEY: [u8; 16] = *b"nagare-test-key!";
const RING_BYTES: u32 = 1 << 16;

fn memory(sim: &Sim) -> SharedMemory {
    MemorySystem::new(
        sim,
        256 << 20,
        HierarchyConfig::ice_lake(1),
        TlbConfig::skylake_stlb(),
    )
    .unwrap()
    .shared()
}

fn rig() -> Rig {
    let sim = Sim::new();
    let mem = memory(&sim);
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
    let sw = fabric
        .add_programmable_switch(
            Attach::RootPort,
            PcieConfig::gen_lanes(3, 16),
            SwitchConfig::default(),
            PipelineConfig::default(),
        )
        .unwrap();
    let link = DeviceLink::pcie(PcieConfig::gen_lanes(3, 8));
    let nagare = fabric
        .attach_switch_function(
            NagareSwitch::new(NagareConfig::default()).unwrap(),
            sw,
            link.clone(),
        )
        .unwrap();
    let (w, s) = (
        fabric.bar(nagare.id, bar::STREAMS).unwrap().base,
        fabric.bar(nagare.id, bar::SRAM).unwrap().base,
    );
    nagare.borrow_mut().set_bar_addresses(w, s);
    let at = Attach::Switch(sw);
    let crypto = fabric
        .attach(
            Accelerator::new(AesGcm::default(), AccelConfig::default()).unwrap(),
            at,
            link.clone(),
        )
        .unwrap();
    let ml = fabric
        .attach(
            Accelerator::new(Classifier::default(), AccelConfig::default()).unwrap(),
            at,
            link.clone(),
        )
        .unwrap();
    let source = fabric.attach(probe().0, at, link.clone()).unwrap();
    let hostile = fabric.attach(probe().0, at, link).unwrap();
    let ring = mem
        .borrow_mut()
        .phys
        .alloc(RING_BYTES as u64, 4096)
        .unwrap()
        .base
        .0;
    Rig {
        sim,
        mem,
        fabric,
        nagare,
        crypto,
        ml,
        source,
        hostile,
        ring,
    }
}

impl Rig {
    fn reg(&self, off: u64) -> PhysAddr {
        PhysAddr(
            self.fabric
                .bar(self.nagare.id, bar::REGISTERS)
                .unwrap()
                .base
                + off,
        )
    }
    /// Write a configuration entry as the CPU does, and read its result.
    fn configure(&self, e: ConfigEntry) -> Result<(), ConfigError> {
        self.fabric
            .cpu_mmio_write(0, self.reg(regs::CONFIG), &e.emit(), "config")
            .unwrap();
        let reply = self
            .fabric
            .cpu_mmio_read(0, self.reg(regs::CONFIG_STATUS), 8, "config")
            .unwrap();
        let v = u64::from_le_bytes(self.await_reply(&reply).try_into().unwrap());
        match ConfigError::from_code(v) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
    /// Run until an MMIO read's completion is back, and take it.
    fn await_reply(&self, reply: &nextio_engine::Mailbox<Vec<u8>>) -> Vec<u8> {
        self.sim.run();
        if let Some(t) = reply.head_time() {
            self.sim.run_until(t);
        }
        reply.try_recv().expect("the completion came back")
    }
    fn bit(&self, id: nextio_hw::device::DeviceId) -> u64 {
        writer_bit(id.0).unwrap()
    }
    fn bar1(&self, id: nextio_hw::device::DeviceId) -> u64 {
        self.fabric.bar(id, 1).unwrap().base
    }
    fn window(&self, s: u16) -> u64 {
        self.nagare.borrow().window(s)
    }
    #[allow(clippy::too_many_arguments)]
    fn stream(
        &self,
        stream: u16,
        writers: u64,
        action: Action,
        target: u64,
        out: Option<u16>,
        adapter: u16,
        op: u32,
        state: [u8; STATE_BYTES],
    ) -> Result<(), ConfigError> {
        self.configure(ConfigEntry::Stream {
            stream,
            format: StreamFormat::Records,
            writers,
            action,
            target,
            ring_bytes: RING_BYTES,
            out_stream: out,
            adapter,
            op,
            param: 0,
            state,
        })
    }
    /// The chain source → crypto → ML → host ring, natively streamed.
    fn native_chain(&self) {
        self.stream(
            2,
            self.bit(self.ml.id),
            Action::Host,
            self.ring,
            None,
            0,
            0,
            [0; 16],
        )
        .unwrap();
        let ml_in = self.bar1(self.ml.id);
        self.stream(
            1,
            self.bit(self.crypto.id),
            Action::Stream,
            ml_in,
            Some(2),
            0,
            OP_CLASSIFY,
            [0; 16],
        )
        .unwrap();
        let c_in = self.bar1(self.crypto.id);
        self.stream(
            0,
            self.bit(self.source.id) | CPU_WRITER,
            Action::Stream,
            c_in,
            Some(1),
            0,
            OP_DECRYPT,
            KEY,
        )
        .unwrap();
    }
    /// Push message `seq` (a sealed image) into `stream` from `dev`.
    fn push(&self, dev: &DeviceHandle<Probe>, stream: u16, payload: &[u8], seq: u64) {
        let msg = MessageHeader::data(payload.len() as u32, seq).message(payload);
        let addr = self.window(stream);
        self.fabric
            .act(dev, |_, cx| cx.dma_write(addr, &msg, "stream-push", seq))
            .unwrap();
    }
    /// The messages in the host ring, in order.
    fn results(&self, n: usize) -> Vec<(MessageHeader, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0u64;
        for _ in 0..n {
            let mut h = [0u8; ENTRY_BYTES];
            self.mem
                .borrow()
                .phys
                .read(PhysAddr(self.ring + at), &mut h)
                .unwrap();
            let Some(hdr) = MessageHeader::parse(&h) else {
                break;
            };
            let mut p = vec![0u8; hdr.len as usize];
            self.mem
                .borrow()
                .phys
                .read(PhysAddr(self.ring + at + 64), &mut p)
                .unwrap();
            at += nextio_hw::nagare::layout::message_bytes(hdr.len as u64);
            out.push((hdr, p));
        }
        out
    }
}

fn image(i: u64, bytes: usize) -> Vec<u8> {
    (0..bytes as u64)
        .map(|j| ((j * (i + 3)) ^ (i * 29)) as u8)
        .collect()
}

fn sealed(i: u64, bytes: usize) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&i.to_le_bytes());
    crypto::seal(&KEY, &nonce, &image(i, bytes))
}

fn reference(i: u64, bytes: usize) -> Vec<u8> {
    let plain = crypto::open(&KEY, &sealed(i, bytes)).unwrap();
    let (c, s) = ml::classify(&plain).unwrap();
    ml::encode_result(c, s).to_vec()
}

#[test]
fn a_native_chain_computes_the_software_reference_and_conserves_messages() {
    let r = rig();
    r.native_chain();
    let n = 20;
    for i in 0..n {
        r.push(&r.source, 0, &sealed(i, 1000), i);
    }
    r.sim.run();
    let got = r.results(n as usize);
    assert_eq!(got.len(), n as usize);
    for (i, (h, p)) in got.iter().enumerate() {
        assert_eq!(h.seq, i as u64);
        assert_eq!(p, &reference(i as u64, 1000), "message {i}");
    }
    let sw = r.nagare.borrow();
    for s in 0..3 {
        let (inn, out, _) = sw.stream_stats(s).unwrap();
        assert_eq!((inn, out), (n, n), "stream {s}");
    }
    assert_eq!(sw.counters().sum_prefix("drop."), 0);
    sw.conservation().unwrap();
    for c in [
        r.crypto.borrow().counters().clone(),
        r.ml.borrow().counters().clone(),
    ] {
        assert_eq!(c.get("accepted"), n);
        assert_eq!(c.get("completed"), n);
        assert_eq!(c.sum_prefix("drop."), 0);
    }
}

#[test]
fn a_bad_tag_is_carried_as_a_status_and_counted_at_the_end_of_the_chain() {
    let r = rig();
    r.native_chain();
    let mut bad = sealed(1, 500);
    bad[40] ^= 0x10;
    r.push(&r.source, 0, &sealed(0, 500), 0);
    r.push(&r.source, 0, &bad, 1);
    r.push(&r.source, 0, &sealed(2, 500), 2);
    r.sim.run();
    // The ML hop drops the failed message; the others come through.
    let got = r.results(2);
    assert_eq!(
        got.iter().map(|(h, _)| h.seq).collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert_eq!(r.nagare.borrow().counters().get("drop.upstream_failed"), 1);
    r.nagare.borrow().conservation().unwrap();
    assert_eq!(r.crypto.borrow().counters().get("failed_jobs"), 1);
}

#[test]
fn legacy_command_queue_accelerators_join_the_chain_through_adapters() {
    let r = rig();
    let entries = 16;
    for (a, dev) in [(0u16, r.crypto.id), (1, r.ml.id)] {
        let doorbell = r.fabric.bar(dev, 0).unwrap().base + TAIL_REGISTER;
        r.configure(ConfigEntry::Adapter {
            adapter: a,
            kind: AdapterKind::CommandQueue,
            device: dev.0,
            doorbell,
            entries,
        })
        .unwrap();
    }
    // The CPU configures each unmodified device's ring in switch memory.
    let ring0 = r.nagare.borrow().adapter_ring(0).unwrap();
    let ring1 = r.nagare.borrow().adapter_ring(1).unwrap();
    r.crypto
        .borrow_mut()
        .configure_ring(ring0, entries)
        .unwrap();
    r.ml.borrow_mut().configure_ring(ring1, entries).unwrap();
    r.stream(2, 0, Action::Host, r.ring, None, 0, 0, [0; 16])
        .unwrap();
    r.stream(1, 0, Action::Adapter, 0, Some(2), 1, OP_CLASSIFY, [0; 16])
        .unwrap();
    r.stream(
        0,
        r.bit(r.source.id),
        Action::Adapter,
        0,
        Some(1),
        0,
        OP_DECRYPT,
        KEY,
    )
    .unwrap();
    let n = 40; // more than the rings hold: some wait in the switch
    for i in 0..n {
        r.push(&r.source, 0, &sealed(i, 800), i);
    }
    r.sim.run();
    let got = r.results(n as usize);
    assert_eq!(got.len(), n as usize);
    for (i, (h, p)) in got.iter().enumerate() {
        assert_eq!(h.seq, i as u64);
        assert_eq!(p, &reference(i as u64, 800));
    }
    let c = r.nagare.borrow().counters().clone();
    assert_eq!(c.get("adapter_submits"), 2 * n);
    assert_eq!(c.get("adapter_completions"), 2 * n);
    assert!(c.get("adapter_waits") > 0);
    assert_eq!(c.sum_prefix("drop."), 0);
    assert_eq!(r.nagare.borrow().waiting(), 0);
    r.nagare.borrow().conservation().unwrap();
    // Another device may neither read the crypto's commands and data in
    // switch memory nor forge its completions.
    r.fabric
        .act(&r.hostile, |_, cx| cx.dma_read(ring0, 64, "snoop", 0))
        .unwrap();
    let forged = [0xffu8; 64];
    r.fabric
        .act(&r.hostile, |_, cx| {
            cx.dma_write(ring0, &forged, "forged", 0)
        })
        .unwrap();
    r.sim.run();
    let sw = r.nagare.borrow();
    assert_eq!(sw.counters().get(DropReason::AccessDenied.counter()), 2);
    assert_eq!(sw.counters().get("adapter_spurious_completions"), 0);
    sw.conservation().unwrap();
}

#[test]
fn a_hostile_device_cannot_push_into_another_stream_and_the_victim_is_unharmed() {
    let r = rig();
    r.native_chain();
    let n = 10;
    for i in 0..n {
        r.push(&r.source, 0, &sealed(i, 600), i);
        // The hostile device forges results into the crypto's output
        // stream and garbage into the source's stream and into a window
        // no stream owns.
        r.push(&r.hostile, 1, &[0xee; 600], i);
        r.push(&r.hostile, 0, &[0xee; 600], i);
        r.push(&r.hostile, 40, &[0xee; 64], i);
    }
    // And it tries to reprogram the switch.
    let forged = ConfigEntry::Destroy { stream: 0 }.emit();
    let cfg = r.reg(regs::CONFIG).0;
    r.fabric
        .act(&r.hostile, |_, cx| cx.dma_write(cfg, &forged, "config", 0))
        .unwrap();
    r.sim.run();
    let got = r.results(n as usize);
    assert_eq!(got.len(), n as usize);
    for (i, (_, p)) in got.iter().enumerate() {
        assert_eq!(p, &reference(i as u64, 600));
    }
    let c = r.nagare.borrow().counters().clone();
    assert_eq!(c.get(DropReason::AccessDenied.counter()), 2 * n + 1);
    assert_eq!(c.get(DropReason::NoStream.counter()), n);
    assert_eq!(r.nagare.borrow().errors(), 3 * n + 1);
    // The CPU reads the error log over MMIO: the offender is named.
    let reply = r
        .fabric
        .cpu_mmio_read(0, r.reg(regs::ERROR_LOG), 64, "error-log")
        .unwrap();
    let e = ErrorEntry::parse(&r.await_reply(&reply)).unwrap();
    assert_eq!(e.reason, DropReason::AccessDenied);
    assert_eq!(e.requester, Offender::Device(r.hostile.id.0));
    assert_eq!(e.stream, 1);
    let sw = r.nagare.borrow();
    sw.conservation().unwrap();
    // Every forged TLP was received and refused.
    assert_eq!(sw.counters().get("tlps_refused"), 3 * n + 1);
}

#[test]
fn a_refused_push_interrupts_the_cpu_when_asked_to() {
    let r = rig();
    r.nagare.borrow_mut().set_error_interrupt(true);
    r.fabric
        .set_msix(
            r.nagare.id,
            0,
            nextio_hw::fabric::MsiMessage {
                core: 0,
                vector: 77,
            },
        )
        .unwrap();
    let irqs = Rc::new(RefCell::new(Vec::new()));
    let i = irqs.clone();
    r.fabric
        .set_interrupt_sink(Rc::new(move |m| i.borrow_mut().push(m.vector)));
    r.native_chain();
    r.push(&r.hostile, 1, &[0xee; 100], 0);
    r.push(&r.hostile, 2, &[0xee; 100], 1);
    r.sim.run();
    assert_eq!(*irqs.borrow(), vec![77, 77]);
    assert_eq!(r.nagare.borrow().errors(), 2);
}

#[test]
fn bad_configuration_is_refused_with_a_code_and_changes_nothing() {
    let r = rig();
    assert_eq!(
        r.stream(0, 0, Action::Stream, 0, Some(0), 0, 0, [0; 16]),
        Err(ConfigError::BadTarget)
    );
    assert_eq!(
        r.stream(0, 0, Action::Stream, 5, Some(9), 0, 0, [0; 16]),
        Err(ConfigError::NoOutputStream)
    );
    assert_eq!(
        r.stream(500, 0, Action::Host, r.ring, None, 0, 0, [0; 16]),
        Err(ConfigError::NoSuchStream)
    );
    assert_eq!(
        r.stream(0, 0, Action::Adapter, 0, Some(0), 3, 0, [0; 16]),
        Err(ConfigError::NoSuchAdapter)
    );
    assert_eq!(
        r.configure(ConfigEntry::Template {
            stream: 0,
            bytes: vec![0; 10]
        }),
        Err(ConfigError::BadTemplate)
    );
    // A push into the never-created stream is refused, not a panic.
    r.push(&r.source, 0, b"x", 0);
    r.sim.run();
    assert_eq!(r.nagare.borrow().counters().get("drop.no_stream"), 1);
    assert_eq!(r.nagare.borrow().counters().get("config_errors"), 5);
}

#[test]
fn the_cpu_pushes_host_memory_into_a_stream_and_copies_host_to_host() {
    let r = rig();
    r.native_chain();
    let src = r.mem.borrow_mut().phys.alloc(4096, 4096).unwrap().base.0;
    let dst = r.mem.borrow_mut().phys.alloc(4096, 4096).unwrap().base.0;
    let done = r.mem.borrow_mut().phys.alloc(4096, 4096).unwrap().base.0;
    let s = sealed(7, 900);
    r.mem.borrow_mut().phys.write(PhysAddr(src), &s).unwrap();
    for cmd in [
        PushCommand {
            src,
            len: s.len() as u32,
            stream: Some(0),
            dst: 0,
            done: 0,
        },
        PushCommand {
            src,
            len: s.len() as u32,
            stream: None,
            dst,
            done,
        },
    ] {
        r.fabric
            .cpu_mmio_write(0, r.reg(regs::PUSH), &cmd.emit(), "push")
            .unwrap();
    }
    r.sim.run();
    let got = r.results(1);
    assert_eq!(got[0].1, reference(7, 900));
    let mut copy = vec![0u8; s.len()];
    r.mem.borrow().phys.read(PhysAddr(dst), &mut copy).unwrap();
    assert_eq!(copy, s);
    let mut flag = [0u8; 8];
    r.mem.borrow().phys.read(PhysAddr(done), &mut flag).unwrap();
    assert_eq!(u64::from_le_bytes(flag), 1);
    r.nagare.borrow().conservation().unwrap();
}

/// Added latency of the pipeline on a P2P write across the switch: the
/// same write under a plain switch and under a programmable one.
fn p2p_arrival(pipeline: Option<PipelineConfig>) -> Time {
    let sim = Sim::new();
    let fabric = Fabric::new(&sim, memory(&sim), FabricConfig::default()).unwrap();
    let cfg = SwitchConfig {
        p2p: P2pPolicy::Direct,
        ..SwitchConfig::default()
    };
    let link = PcieConfig::gen_lanes(3, 16);
    let sw: SwitchId = match pipeline {
        Some(p) => fabric
            .add_programmable_switch(Attach::RootPort, link.clone(), cfg, p)
            .unwrap(),
        None => fabric
            .add_switch(Attach::RootPort, link.clone(), cfg)
            .unwrap(),
    };
    let (a, _) = probe();
    let (b, seen) = probe();
    let a = fabric
        .attach(a, Attach::Switch(sw), DeviceLink::default())
        .unwrap();
    let b = fabric
        .attach(b, Attach::Switch(sw), DeviceLink::default())
        .unwrap();
    let to = fabric.bar(b.id, 0).unwrap().base;
    fabric
        .act(&a, |_, cx| cx.dma_write(to, &[1; 64], "probe", 0))
        .unwrap();
    sim.run();
    seen.borrow()[0].0
}

#[test]
fn the_pipeline_adds_stages_times_cycles_on_the_tlp_path() {
    let plain = p2p_arrival(None);
    for (stages, cycles, mhz) in [(10, 10, 3000), (6, 1, 1000), (20, 4, 2000)] {
        let cfg = PipelineConfig {
            stages,
            cycles_per_stage: cycles,
            clock: nextio_engine::Freq::mhz(mhz),
            initiation_interval_cycles: 1,
        };
        let added = p2p_arrival(Some(cfg)) - plain;
        let stage_ps = (cycles as u64 * 1_000_000).div_ceil(mhz);
        assert_eq!(
            added.ps(),
            stages as u64 * stage_ps,
            "{stages}x{cycles}@{mhz}"
        );
    }
}

#[test]
fn the_same_run_twice_is_the_same_run() {
    let run = || {
        let r = rig();
        r.fabric.record_transactions(true);
        r.native_chain();
        for i in 0..5 {
            r.push(&r.source, 0, &sealed(i, 700), i);
        }
        r.sim.run();
        let txns = r.fabric.transactions();
        (
            txns.iter()
                .map(|t| (t.issued, t.done, t.bytes))
                .collect::<Vec<_>>(),
            r.nagare.borrow().counters().clone(),
            r.sim.now(),
        )
    };
    assert_eq!(run(), run());
}
