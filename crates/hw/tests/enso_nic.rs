//! The Ensō NIC on a fabric, driven as its software drives it: control
//! plane through the device handle, data plane through BAR0 writes, host
//! memory read back to check what the NIC's DMA left there.
//!
//! What is checked: bytes arrive intact and in order and wrap the ring;
//! receive conservation under every drop reason; reactive notifications
//! (one outstanding per pipe, re-armed by the head update), per-packet
//! notifications and prefetch; steering; transmit parsing, completion,
//! backpressure and faults; bad register writes; the IOMMU confining the
//! NIC to what its domain maps.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use nextio_engine::{Counters, Duration, Mailbox, Rate, Sim, Time};
use nextio_hw::cache::HierarchyConfig;
use nextio_hw::device::Device;
use nextio_hw::ethernet::{LinkConfig, Wire};
use nextio_hw::fabric::{
    Attach, BarWindow, DeviceHandle, DeviceLink, Fabric, FabricConfig, IommuConfig,
};
use nextio_hw::mem::{HUGE_PAGE_BYTES, PhysAddr, TlbConfig};
use nextio_hw::memory::{MemorySystem, SharedMemory};
use nextio_hw::nic::enso::{
    EnsoNic, EnsoNicConfig, FallbackPolicy, NotificationPolicy, PIPE_BYTES, PipeInfo, RX_DROPS,
    Register, RxNotification, TxNotification, padded_len,
};
use nextio_hw::packet::{Frame, Macs, build_udp};
use nextio_hw::pcie::PcieConfig;
use nextio_hw::trafficgen::synthetic_flow;

/// Entries of each notification ring in these tests.
const ENTRIES: u32 = 64;

struct Rig {
    sim: Sim,
    mem: SharedMemory,
    fabric: Fabric,
    nic: DeviceHandle<EnsoNic>,
    bar: BarWindow,
    /// Delivers into the NIC's port.
    ingress: Rc<Wire>,
    /// The NIC's port's transmitter, and what it delivered.
    egress: Rc<Wire>,
    outbox: Rc<Mailbox<Frame>>,
    rx_ring: PhysAddr,
    tx_ring: PhysAddr,
}

fn sim_and_memory() -> (Sim, SharedMemory) {
    let sim = Sim::new();
    let mem = MemorySystem::new(
        &sim,
        64 << 20,
        HierarchyConfig::ice_lake(1),
        TlbConfig::skylake_stlb(),
    )
    .unwrap()
    .shared();
    (sim, mem)
}

fn new_fabric(sim: &Sim, mem: &SharedMemory, iommu: bool) -> Fabric {
    Fabric::new(
        sim,
        mem.clone(),
        FabricConfig {
            iommu: IommuConfig {
                enabled: iommu,
                ..IommuConfig::default()
            },
            ..FabricConfig::default()
        },
    )
    .unwrap()
}

/// A NIC on a fabric without an IOMMU (bus addresses are physical), its
/// port wired both ways; nothing registered.
fn attach(cfg: EnsoNicConfig, pcie: PcieConfig, egress: LinkConfig) -> Rig {
    let (sim, mem) = sim_and_memory();
    let fabric = new_fabric(&sim, &mem, false);
    let nic = fabric
        .attach(
            EnsoNic::new(cfg).unwrap(),
            Attach::RootPort,
            DeviceLink::pcie(pcie),
        )
        .unwrap();
    let bar = fabric.bar(nic.id, 0).unwrap();
    let outbox = Rc::new(Mailbox::new(&sim));
    let egress = Rc::new(Wire::new(&sim, egress, outbox.clone()));
    fabric.connect_port(nic.id, 0, egress.clone()).unwrap();
    let ingress = Rc::new(Wire::new(
        &sim,
        LinkConfig {
            queue_frames: 1 << 16,
            ..LinkConfig::default()
        },
        fabric.port_sink(nic.id, 0).unwrap(),
    ));
    Rig {
        sim,
        mem,
        fabric,
        nic,
        bar,
        ingress,
        egress,
        outbox,
        rx_ring: PhysAddr(0),
        tx_ring: PhysAddr(0),
    }
}

/// [`attach`], then one notification buffer and `pipes` pipes.
fn rig_with(cfg: EnsoNicConfig, pcie: PcieConfig, pipes: usize) -> (Rig, Vec<PipeInfo>) {
    let mut r = attach(cfg, pcie, LinkConfig::default());
    let nb_mem = r.mem.borrow_mut().phys.alloc_huge(1).unwrap();
    r.rx_ring = nb_mem.base;
    r.tx_ring = nb_mem.base.offset(1 << 20);
    let nb = r
        .nic
        .borrow_mut()
        .register_notification_buffer(r.rx_ring.0, ENTRIES, r.tx_ring.0, ENTRIES)
        .unwrap();
    let infos = (0..pipes)
        .map(|_| {
            let ring = r.mem.borrow_mut().phys.alloc_huge(PIPE_BYTES).unwrap();
            r.nic.borrow_mut().register_pipe(ring.base.0, nb).unwrap()
        })
        .collect();
    (r, infos)
}

fn rig(policy: NotificationPolicy, fallback: FallbackPolicy, pipes: usize) -> (Rig, Vec<PipeInfo>) {
    rig_with(
        EnsoNicConfig {
            policy,
            fallback,
            ..EnsoNicConfig::default()
        },
        PcieConfig::default(),
        pipes,
    )
}

/// A valid UDP frame of `size` bytes on the wire (FCS included) of
/// synthetic flow `flow`, its payload filled with `fill`.
fn frame(flow: u32, size: usize, fill: u8) -> Vec<u8> {
    let payload = vec![fill; size - 64 + 18];
    build_udp(Macs::default(), synthetic_flow(flow), &payload, size).unwrap()
}

impl Rig {
    /// Send `frames` into the NIC's port, one every `gap`, and settle.
    fn deliver(&self, frames: &[Vec<u8>], gap: Duration) {
        let mut t = self.sim.now();
        for (i, f) in frames.iter().enumerate() {
            t += gap;
            let (wire, frame) = (self.ingress.clone(), Frame::new(f.clone(), i as u64));
            self.sim
                .at(t, move || {
                    wire.send(frame).unwrap();
                })
                .unwrap();
        }
        self.settle();
    }

    /// Run until nothing is left to happen, and on until what is still in
    /// flight on a wire has arrived (a mailbox item is no event).
    fn settle(&self) {
        self.sim.run();
        self.sim.run_for(Duration::from_us(100));
    }

    /// Software writes `value` to `reg` (an 8-byte MMIO write).
    fn ring(&self, reg: Register, value: u64) -> Time {
        let offset = self.nic.borrow().register_offset(reg);
        self.fabric
            .cpu_mmio_write(
                0,
                PhysAddr(self.bar.base + offset),
                &value.to_le_bytes(),
                "doorbell",
            )
            .unwrap()
    }

    /// Valid notifications in the RX ring, as (slot, pipe, tail).
    fn notifications(&self) -> Vec<(u32, u64, u64)> {
        let m = self.mem.borrow();
        (0..ENTRIES)
            .filter_map(|i| {
                let mut e = [0u8; 64];
                m.phys
                    .read(self.rx_ring.offset(i as u64 * 64), &mut e)
                    .unwrap();
                let n = RxNotification::new(&e[..]).unwrap();
                (n.signal() != 0).then(|| (i, n.pipe(), n.tail()))
            })
            .collect()
    }

    fn clear_notifications(&self) {
        let mut m = self.mem.borrow_mut();
        for i in 0..ENTRIES {
            m.phys
                .write_u64(self.rx_ring.offset(i as u64 * 64), 0)
                .unwrap();
        }
    }

    fn counters(&self) -> Counters {
        self.nic.borrow().counters().clone()
    }

    /// `len` bytes of pipe `p` from ring offset `at`, wrapping.
    fn pipe_bytes(&self, p: &PipeInfo, at: u64, len: usize) -> Vec<u8> {
        let m = self.mem.borrow();
        let first = (len as u64).min(PIPE_BYTES - at) as usize;
        let mut out = vec![0u8; len];
        m.phys
            .read(PhysAddr(p.ring + at), &mut out[..first])
            .unwrap();
        m.phys.read(PhysAddr(p.ring), &mut out[first..]).unwrap();
        out
    }

    /// Write TX notification `slot` naming `len` bytes at `addr`.
    fn tx_notification(&self, slot: u64, addr: u64, len: u64) {
        let mut e = [0u8; 64];
        let mut n = TxNotification::new(&mut e[..]).unwrap();
        n.set_signal(1);
        n.set_addr(addr);
        n.set_len(len);
        self.mem
            .borrow_mut()
            .phys
            .write(self.tx_ring.offset(slot * 64), &e)
            .unwrap();
    }

    fn tx_signal(&self, slot: u64) -> u64 {
        self.mem
            .borrow()
            .phys
            .read_u64(self.tx_ring.offset(slot * 64))
            .unwrap()
    }

    fn sent(&self) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        while let Some(f) = self.outbox.try_recv() {
            sent.push(f.bytes);
        }
        sent
    }
}

/// `got` is `want`, frame by frame (without printing kilobytes of bytes).
fn same_frames(got: &[Vec<u8>], want: &[Vec<u8>]) {
    assert_eq!(got.len(), want.len(), "frames sent");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w,
            "frame {i} differs: {} B sent, {} B expected",
            g.len(),
            w.len()
        );
    }
}

fn rx_drops(c: &Counters) -> u64 {
    RX_DROPS.iter().map(|d| c.get(d)).sum()
}

fn conserved(c: &Counters) {
    assert_eq!(c.get("rx_frames"), c.get("appended") + rx_drops(c), "{c:?}");
    // Every drop the NIC counts is one the receive path knows of, or a
    // transmit one.
    let listed: u64 = rx_drops(c) + c.sum_prefix("drop.tx_");
    assert_eq!(c.sum_prefix("drop."), listed, "{c:?}");
}

#[test]
fn bytes_arrive_intact_in_order_and_wrap_the_ring() {
    let (r, pipes) = rig(NotificationPolicy::Reactive, FallbackPolicy::Hash, 1);
    r.nic.borrow_mut().add_fallback_pipe(0).unwrap();
    let p = &pipes[0];
    // 1518-byte frames pad to 1536: 1365 of them fill a ring; send
    // 3000 in rounds, freeing behind the NIC like software would.
    let mut offset = 0u64;
    for round in 0..10u8 {
        let frames: Vec<Vec<u8>> = (0..300)
            .map(|i| frame(i, 1518, round.wrapping_add(i as u8)))
            .collect();
        r.deliver(&frames, Duration::from_ns(200));
        for f in &frames {
            assert_eq!(r.pipe_bytes(p, offset, f.len()), *f, "round {round}");
            let pad = r.pipe_bytes(p, (offset + f.len() as u64) % PIPE_BYTES, 1536 - f.len());
            assert!(pad.iter().all(|b| *b == 0));
            offset = (offset + 1536) % PIPE_BYTES;
        }
        r.ring(Register::PipeHead(0), offset);
        r.settle();
    }
    let c = r.counters();
    assert_eq!(c.get("appended"), 3000);
    assert_eq!(c.get("appended_bytes"), 3000 * 1536);
    assert_eq!(c.sum_prefix("drop."), 0);
    assert_eq!(c.get("bad_register_writes"), 0);
    conserved(&c);
    // The data and the notifications went up the link under their
    // purposes; nothing else did.
    let (up, _) = r.fabric.link_counters(r.nic.id).unwrap();
    let purposes: BTreeSet<&str> = up.bytes_by_purpose.keys().copied().collect();
    assert_eq!(purposes, BTreeSet::from(["notification", "packet-data"]));
    assert!(up.bytes_by_purpose["packet-data"] > 3000 * 1536);
}

#[test]
fn reactive_keeps_one_outstanding_and_head_update_rearms() {
    let (r, _) = rig(NotificationPolicy::Reactive, FallbackPolicy::Hash, 1);
    r.nic.borrow_mut().add_fallback_pipe(0).unwrap();
    r.deliver(
        &(0..10).map(|i| frame(i, 64, 1)).collect::<Vec<_>>(),
        Duration::from_ns(10),
    );
    assert_eq!(
        r.notifications(),
        vec![(0, 0, 64)],
        "one notification, for the first frame"
    );
    // Software consumed it and freed what it named: more data arrived
    // since, so the NIC notifies again at once with the full tail.
    r.clear_notifications();
    r.ring(Register::RxNotificationHead(0), 1);
    r.ring(Register::PipeHead(0), 64);
    r.settle();
    assert_eq!(r.notifications(), vec![(1, 0, 640)]);
    // Freeing everything with no new data: no notification.
    r.clear_notifications();
    r.ring(Register::PipeHead(0), 640);
    r.settle();
    assert!(r.notifications().is_empty());
    // The pipe is re-armed: the next frame is notified immediately.
    r.deliver(&[frame(0, 64, 2)], Duration::from_ns(10));
    assert_eq!(r.notifications(), vec![(2, 0, 704)]);
    let c = r.counters();
    assert_eq!(c.get("notifications.rx"), 3);
    assert_eq!(c.get("notifications.rearm"), 1);
    conserved(&c);
}

#[test]
fn a_notification_lands_after_the_data_it_names() {
    let (r, pipes) = rig(NotificationPolicy::PerPacket, FallbackPolicy::Hash, 1);
    r.nic.borrow_mut().add_fallback_pipe(0).unwrap();
    let f = frame(0, 1518, 9);
    // Watch the notification slot; when it is written the frame must be
    // in the pipe already.
    let watch = r.mem.borrow_mut().watch(r.rx_ring, 64);
    let seen = Rc::new(RefCell::new(None));
    {
        let (mem, seen, ring, n) = (r.mem.clone(), seen.clone(), pipes[0].ring, watch.clone());
        let len = f.len();
        r.sim.spawn(async move {
            n.notified().await;
            let mut b = vec![0u8; len];
            mem.borrow().phys.read(PhysAddr(ring), &mut b).unwrap();
            *seen.borrow_mut() = Some(b);
        });
    }
    r.deliver(std::slice::from_ref(&f), Duration::from_ns(10));
    assert_eq!(seen.borrow().as_deref(), Some(&f[..]));
}

#[test]
fn per_packet_mode_notifies_every_frame() {
    let (r, _) = rig(NotificationPolicy::PerPacket, FallbackPolicy::Hash, 1);
    r.nic.borrow_mut().add_fallback_pipe(0).unwrap();
    r.deliver(
        &(0..10).map(|i| frame(i, 128, 1)).collect::<Vec<_>>(),
        Duration::from_ns(10),
    );
    let n = r.notifications();
    assert_eq!(n.len(), 10);
    for (i, (slot, pipe, tail)) in n.into_iter().enumerate() {
        assert_eq!((slot, pipe, tail), (i as u32, 0, 128 * (i as u64 + 1)));
    }
}

#[test]
fn prefetch_notifies_pending_data_only() {
    let (r, _) = rig(NotificationPolicy::Reactive, FallbackPolicy::Hash, 2);
    r.nic.borrow_mut().bind_flow(synthetic_flow(1), 1).unwrap();
    // Pipe 0 is empty: a prefetch is ignored.
    r.ring(Register::PipePrefetch(0), 0);
    r.settle();
    assert!(r.notifications().is_empty());
    assert_eq!(r.counters().get("prefetch_empty"), 1);
    // Pipe 1 has data (already notified once): a prefetch is answered
    // even though a notification is outstanding.
    r.deliver(&[frame(1, 64, 1), frame(1, 64, 2)], Duration::from_ns(10));
    assert_eq!(r.notifications(), vec![(0, 1, 64)]);
    r.ring(Register::PipePrefetch(1), 0);
    r.settle();
    assert_eq!(r.notifications(), vec![(0, 1, 64), (1, 1, 128)]);
    // Once software has freed everything, a prefetch finds nothing.
    r.ring(Register::PipeHead(1), 128);
    r.ring(Register::PipePrefetch(1), 0);
    r.settle();
    assert_eq!(r.notifications().len(), 2);
    let c = r.counters();
    assert_eq!(c.get("prefetch_empty"), 2);
    assert_eq!(c.get("prefetch_requests"), 3);
    assert_eq!(c.get("notifications.prefetch"), 1);
}

#[test]
fn flow_table_steers_and_fallback_spreads() {
    let (r, _) = rig(NotificationPolicy::PerPacket, FallbackPolicy::Hash, 3);
    // No pipe for unmatched flows yet: dropped and counted.
    r.deliver(&[frame(5, 64, 0)], Duration::from_ns(10));
    assert_eq!(r.counters().get("drop.no_pipe"), 1);
    {
        let mut nic = r.nic.borrow_mut();
        nic.bind_flow(synthetic_flow(5), 2).unwrap();
        nic.add_fallback_pipe(0).unwrap();
        nic.add_fallback_pipe(1).unwrap();
    }
    r.clear_notifications();
    let frames: Vec<Vec<u8>> = (0..40).map(|i| frame(i % 8, 64, 0)).collect();
    r.deliver(&frames, Duration::from_ns(10));
    let n = r.notifications();
    assert_eq!(n.len(), 40);
    let by_flow = |f: usize| -> Vec<u64> {
        n.iter()
            .enumerate()
            .filter(|(i, _)| i % 8 == f)
            .map(|(_, x)| x.1)
            .collect()
    };
    assert!(
        by_flow(5).iter().all(|p| *p == 2),
        "bound flow goes to its pipe"
    );
    for f in [0, 1, 2, 3, 4, 6, 7] {
        let ps = by_flow(f);
        assert!(
            ps.iter().all(|p| *p == ps[0] && *p < 2),
            "hash keeps flow {f} in one fallback pipe"
        );
    }
    let used: BTreeSet<u64> = n.iter().map(|x| x.1).collect();
    assert_eq!(used.len(), 3, "8 flows spread over both fallback pipes");
    conserved(&r.counters());

    let (r, _) = rig(NotificationPolicy::PerPacket, FallbackPolicy::RoundRobin, 2);
    r.nic.borrow_mut().add_fallback_pipe(0).unwrap();
    r.nic.borrow_mut().add_fallback_pipe(1).unwrap();
    r.deliver(
        &(0..6).map(|_| frame(3, 64, 0)).collect::<Vec<_>>(),
        Duration::from_ns(10),
    );
    let pipes: Vec<u64> = r.notifications().iter().map(|x| x.1).collect();
    assert_eq!(pipes, vec![1, 0, 1, 0, 1, 0]);
}

#[test]
fn pipe_fills_when_software_stops_freeing() {
    let (r, _) = rig(NotificationPolicy::Reactive, FallbackPolicy::Hash, 1);
    r.nic.borrow_mut().add_fallback_pipe(0).unwrap();
    let frames: Vec<Vec<u8>> = (0..1500).map(|i| frame(i, 1518, 0)).collect();
    r.deliver(&frames, Duration::from_ns(300));
    let c = r.counters();
    // A ring holds (2 MiB - 64) / 1536 = 1365 such frames.
    assert_eq!(c.get("appended"), 1365);
    assert_eq!(c.get("drop.pipe_full"), 135);
    conserved(&c);
}

#[test]
fn a_full_notification_buffer_drops_frames_that_need_a_notification() {
    let (r, _) = rig(NotificationPolicy::PerPacket, FallbackPolicy::Hash, 1);
    r.nic.borrow_mut().add_fallback_pipe(0).unwrap();
    // Software never advances the RX head: ENTRIES - 1 slots fit.
    r.deliver(
        &(0..100).map(|i| frame(i, 64, 0)).collect::<Vec<_>>(),
        Duration::from_ns(10),
    );
    let c = r.counters();
    assert_eq!(c.get("appended"), ENTRIES as u64 - 1);
    assert_eq!(c.get("drop.notification_buffer_full"), 101 - ENTRIES as u64);
    conserved(&c);
    // Prefetch cannot notify into a full buffer either: suppressed, counted.
    r.ring(Register::PipePrefetch(0), 0);
    r.settle();
    assert_eq!(r.counters().get("notifications.suppressed_full"), 1);
}

#[test]
fn rx_fifo_overflows_behind_a_slow_link() {
    let slow = PcieConfig {
        generation: 1,
        lanes: 1,
        ..PcieConfig::default()
    };
    let cfg = EnsoNicConfig {
        rx_fifo_bytes: 16 << 10,
        ..EnsoNicConfig::default()
    };
    let (r, _) = rig_with(cfg, slow, 1);
    r.nic.borrow_mut().add_fallback_pipe(0).unwrap();
    let frames: Vec<Vec<u8>> = (0..200).map(|i| frame(i, 1024, 0)).collect();
    r.deliver(&frames, Duration::from_ns(85));
    let c = r.counters();
    assert!(c.get("drop.rx_fifo_full") > 0, "{c:?}");
    assert!(c.get("appended") > 0, "{c:?}");
    conserved(&c);
}

/// `frames` laid out from the start of pipe `p` as the NIC would, 64-byte
/// aligned; returns the bytes they span.
fn lay_out(r: &Rig, p: &PipeInfo, frames: &[Vec<u8>]) -> u64 {
    let mut at = 0;
    let mut m = r.mem.borrow_mut();
    for f in frames {
        m.phys.write(PhysAddr(p.ring + at), f).unwrap();
        at += padded_len(f.len() as u64);
    }
    at
}

#[test]
fn tx_reads_notification_and_data_sends_frames_and_completes() {
    let (r, pipes) = rig(NotificationPolicy::Reactive, FallbackPolicy::Hash, 1);
    let frames = [frame(1, 64, 1), frame(2, 200, 2), frame(3, 1518, 3)];
    let at = lay_out(&r, &pipes[0], &frames);
    // Two TX notifications; the second frame is cut between them.
    let cut = 64 + 100;
    r.tx_notification(0, pipes[0].ring, cut);
    r.tx_notification(1, pipes[0].ring + cut, at - cut);
    r.ring(Register::TxNotificationTail(0), 2);
    r.settle();
    same_frames(&r.sent(), &frames);
    for slot in 0..2 {
        assert_eq!(r.tx_signal(slot), 0, "completed");
    }
    let c = r.counters();
    assert_eq!(c.get("tx_frames"), 3);
    assert_eq!(c.get("notifications.tx_completion"), 2);
    assert_eq!(c.sum_prefix("drop."), 0);
    assert_eq!(r.nic.borrow().tx_pending(), 0);
    // The completion rewrote the entry with only its signal cleared.
    let mut e = [0u8; 64];
    r.mem
        .borrow()
        .phys
        .read(r.tx_ring.offset(64), &mut e)
        .unwrap();
    let n = TxNotification::new(&e[..]).unwrap();
    assert_eq!((n.addr(), n.len()), (pipes[0].ring + cut, at - cut));
}

#[test]
fn tx_wraps_the_notification_ring() {
    let (r, pipes) = rig(NotificationPolicy::Reactive, FallbackPolicy::Hash, 1);
    let frames: Vec<Vec<u8>> = (0..4).map(|i| frame(i, 128, i as u8)).collect();
    lay_out(&r, &pipes[0], &frames);
    // Software's TX tail sits two short of the ring's end: move the NIC's
    // fetch pointer there with empty-handed notifications first.
    for slot in 0..(ENTRIES as u64 - 2) {
        r.tx_notification(slot, pipes[0].ring, 0);
    }
    r.ring(Register::TxNotificationTail(0), ENTRIES as u64 - 2);
    r.settle();
    assert_eq!(r.counters().get("tx_bad_notifications"), ENTRIES as u64 - 2);
    assert!(r.sent().is_empty());
    // Four notifications from slot 62: two before the end, two after.
    for (i, slot) in [62u64, 63, 0, 1].into_iter().enumerate() {
        r.tx_notification(slot, pipes[0].ring + i as u64 * 128, 128);
    }
    r.ring(Register::TxNotificationTail(0), 2);
    r.settle();
    same_frames(&r.sent(), &frames);
    for slot in [62, 63, 0, 1] {
        assert_eq!(r.tx_signal(slot), 0);
    }
    assert_eq!(r.nic.borrow().tx_pending(), 0);
}

#[test]
fn tx_waits_for_a_full_port_and_completes_only_after_the_last_frame() {
    // A 1 Gb/s port with room for one waiting frame: 20 maximum-size
    // frames take ~250 µs to leave.
    let egress = LinkConfig {
        rate: Rate::gbps(1),
        queue_frames: 1,
        ..LinkConfig::default()
    };
    let mut r = attach(EnsoNicConfig::default(), PcieConfig::default(), egress);
    let nb_mem = r.mem.borrow_mut().phys.alloc_huge(1).unwrap();
    r.rx_ring = nb_mem.base;
    r.tx_ring = nb_mem.base.offset(1 << 20);
    let nb = r
        .nic
        .borrow_mut()
        .register_notification_buffer(r.rx_ring.0, ENTRIES, r.tx_ring.0, ENTRIES)
        .unwrap();
    let ring = r.mem.borrow_mut().phys.alloc_huge(PIPE_BYTES).unwrap();
    let p = r.nic.borrow_mut().register_pipe(ring.base.0, nb).unwrap();
    let frames: Vec<Vec<u8>> = (0..20).map(|i| frame(i, 1518, i as u8)).collect();
    let len = lay_out(&r, &p, &frames);
    r.tx_notification(0, p.ring, len);
    // A second notification sends the first frame again.
    r.tx_notification(1, p.ring, frames[0].len() as u64);
    r.ring(Register::TxNotificationTail(0), 2);
    r.sim.run_until(Time::ZERO + Duration::from_us(100));
    let early = r.counters().get("tx_frames");
    assert!(early > 0 && early < 20, "{early}");
    assert_eq!(r.tx_signal(0), 1, "not complete while frames wait");
    assert_eq!(r.tx_signal(1), 1, "the next waits its turn");
    assert_eq!(r.nic.borrow().tx_pending(), 2);
    r.settle();
    let mut expect = frames.clone();
    expect.push(frames[0].clone());
    same_frames(&r.sent(), &expect);
    assert_eq!((r.tx_signal(0), r.tx_signal(1)), (0, 0));
    assert_eq!(r.counters().get("tx_frames"), 21);
    // Nothing was dropped on the port: the NIC waited instead.
    let w = r.egress.counters();
    assert_eq!((w.get("accepted"), w.sum_prefix("drop.")), (21, 0));
}

#[test]
fn tx_faults_and_bad_notifications_are_counted_and_still_completed() {
    let (sim, mem) = sim_and_memory();
    let fabric = new_fabric(&sim, &mem, true);
    let nic = fabric
        .attach(
            EnsoNic::new(EnsoNicConfig::default()).unwrap(),
            Attach::RootPort,
            DeviceLink::default(),
        )
        .unwrap();
    let bar = fabric.bar(nic.id, 0).unwrap();
    let outbox = Rc::new(Mailbox::new(&sim));
    let wire = Rc::new(Wire::new(&sim, LinkConfig::default(), outbox.clone()));
    fabric.connect_port(nic.id, 0, wire).unwrap();
    // The notification rings are mapped; the data is not.
    let domain = fabric.iommu_create_domain().unwrap();
    fabric.iommu_attach(nic.id, domain).unwrap();
    let nb_mem = mem.borrow_mut().phys.alloc_huge(1).unwrap();
    fabric
        .iommu_map(domain, nb_mem.base.0, nb_mem.base, HUGE_PAGE_BYTES, true)
        .unwrap();
    let (rx_ring, tx_ring) = (nb_mem.base, nb_mem.base.offset(1 << 20));
    let nb = nic
        .borrow_mut()
        .register_notification_buffer(rx_ring.0, ENTRIES, tx_ring.0, ENTRIES)
        .unwrap();
    let data = mem.borrow_mut().phys.alloc_huge(1).unwrap();
    let f = frame(1, 64, 1);
    mem.borrow_mut().phys.write(data.base, &f).unwrap();
    let entries = [
        (1, data.base.0, 64), // data not mapped: faults
        (0, data.base.0, 64), // signal clear
        (1, data.base.0, 0),  // nothing to send
        (1, data.base.0, PIPE_BYTES + 64),
    ];
    for (slot, (signal, addr, len)) in entries.into_iter().enumerate() {
        let mut e = [0u8; 64];
        let mut n = TxNotification::new(&mut e[..]).unwrap();
        n.set_signal(signal);
        n.set_addr(addr);
        n.set_len(len);
        mem.borrow_mut()
            .phys
            .write(tx_ring.offset(slot as u64 * 64), &e)
            .unwrap();
    }
    let doorbell = nic
        .borrow()
        .register_offset(Register::TxNotificationTail(nb));
    fabric
        .cpu_mmio_write(
            0,
            PhysAddr(bar.base + doorbell),
            &4u64.to_le_bytes(),
            "doorbell",
        )
        .unwrap();
    sim.run();
    sim.run_for(Duration::from_us(10));
    let c = nic.borrow().counters().clone();
    assert_eq!(c.get("drop.tx_bad_notification"), 1, "{c:?}");
    assert_eq!(c.get("tx_bad_notifications"), 3, "{c:?}");
    assert_eq!(c.get("tx_frames"), 0);
    assert_eq!(c.get("notifications.tx_completion"), 4);
    for slot in 0..4 {
        assert_eq!(
            mem.borrow()
                .phys
                .read_u64(tx_ring.offset(slot * 64))
                .unwrap(),
            0
        );
    }
    assert!(outbox.try_recv().is_none());
    assert_eq!(fabric.counters().get("drop.iommu_fault"), 1);
    // Once the data is mapped the same notification sends its frame.
    fabric
        .iommu_map(domain, data.base.0, data.base, HUGE_PAGE_BYTES, false)
        .unwrap();
    let mut e = [0u8; 64];
    let mut n = TxNotification::new(&mut e[..]).unwrap();
    n.set_signal(1);
    n.set_addr(data.base.0);
    n.set_len(64);
    mem.borrow_mut()
        .phys
        .write(tx_ring.offset(4 * 64), &e)
        .unwrap();
    fabric
        .cpu_mmio_write(
            0,
            PhysAddr(bar.base + doorbell),
            &5u64.to_le_bytes(),
            "doorbell",
        )
        .unwrap();
    sim.run();
    sim.run_for(Duration::from_us(10));
    assert_eq!(outbox.try_recv().map(|f| f.bytes), Some(f));
    assert_eq!(nic.borrow().counters().get("tx_frames"), 1);
}

#[test]
fn bad_register_writes_are_counted_and_change_nothing() {
    let (r, _) = rig(NotificationPolicy::Reactive, FallbackPolicy::Hash, 1);
    r.nic.borrow_mut().add_fallback_pipe(0).unwrap();
    r.deliver(&[frame(0, 64, 1), frame(0, 64, 2)], Duration::from_ns(10));
    let base = r.counters().get("bad_register_writes");
    assert_eq!(base, 0);
    let offset = |reg| r.nic.borrow().register_offset(reg);
    let bad: Vec<(u64, Vec<u8>)> = vec![
        // A 4-byte write to a register.
        (offset(Register::PipeHead(0)), vec![0; 4]),
        // Not a register within a page.
        (offset(Register::PipeHead(0)) + 16, vec![0; 8]),
        // A pipe that was never registered.
        (offset(Register::PipeHead(5)), 64u64.to_le_bytes().to_vec()),
        (offset(Register::PipePrefetch(5)), vec![0; 8]),
        // Freeing more than the NIC wrote, or part of a quantum.
        (offset(Register::PipeHead(0)), 192u64.to_le_bytes().to_vec()),
        (offset(Register::PipeHead(0)), 32u64.to_le_bytes().to_vec()),
        // Heads and tails past their rings, and an unregistered buffer.
        (
            offset(Register::RxNotificationHead(0)),
            (ENTRIES as u64).to_le_bytes().to_vec(),
        ),
        (
            offset(Register::TxNotificationTail(0)),
            (ENTRIES as u64).to_le_bytes().to_vec(),
        ),
        (
            offset(Register::TxNotificationTail(3)),
            vec![1, 0, 0, 0, 0, 0, 0, 0],
        ),
        // Past the last notification buffer's page, inside the BAR.
        (r.bar.bytes - 8, vec![0; 8]),
    ];
    for (off, data) in &bad {
        r.fabric
            .cpu_mmio_write(0, PhysAddr(r.bar.base + off), data, "doorbell")
            .unwrap();
    }
    r.settle();
    let c = r.counters();
    assert_eq!(c.get("bad_register_writes"), bad.len() as u64, "{c:?}");
    assert_eq!(r.nic.borrow().tx_pending(), 0);
    // The pipe is as it was: freeing what the NIC did write still works.
    r.ring(Register::PipeHead(0), 128);
    r.settle();
    assert_eq!(r.counters().get("bad_register_writes"), bad.len() as u64);
    // Reads return zeros and change nothing.
    let reply = r
        .fabric
        .cpu_mmio_read(0, PhysAddr(r.bar.base), 8, "register")
        .unwrap();
    r.settle();
    assert_eq!(reply.try_recv(), Some(vec![0; 8]));
}

#[test]
fn with_the_iommu_on_the_nic_reaches_only_what_its_domain_maps() {
    let (sim, mem) = sim_and_memory();
    let fabric = new_fabric(&sim, &mem, true);
    let nic = fabric
        .attach(
            EnsoNic::new(EnsoNicConfig {
                policy: NotificationPolicy::PerPacket,
                ..EnsoNicConfig::default()
            })
            .unwrap(),
            Attach::RootPort,
            DeviceLink::default(),
        )
        .unwrap();
    let domain = fabric.iommu_create_domain().unwrap();
    fabric.iommu_attach(nic.id, domain).unwrap();
    let nb_mem = mem.borrow_mut().phys.alloc_huge(1).unwrap();
    let mapped = mem.borrow_mut().phys.alloc_huge(PIPE_BYTES).unwrap();
    let unmapped = mem.borrow_mut().phys.alloc_huge(PIPE_BYTES).unwrap();
    // The notification buffer and one pipe are mapped at IOVAs that are
    // not their physical addresses; the other pipe's ring is not mapped.
    let (nb_iova, pipe_iova) = (0x10_0000_0000u64, 0x20_0000_0000u64);
    fabric
        .iommu_map(domain, nb_iova, nb_mem.base, HUGE_PAGE_BYTES, true)
        .unwrap();
    fabric
        .iommu_map(domain, pipe_iova, mapped.base, PIPE_BYTES, true)
        .unwrap();
    let (good, bad) = {
        let mut n = nic.borrow_mut();
        let nb = n
            .register_notification_buffer(nb_iova, ENTRIES, nb_iova + (1 << 20), ENTRIES)
            .unwrap();
        let good = n.register_pipe(pipe_iova, nb).unwrap();
        let bad = n.register_pipe(unmapped.base.0, nb).unwrap();
        n.bind_flow(synthetic_flow(1), good.id).unwrap();
        n.bind_flow(synthetic_flow(2), bad.id).unwrap();
        (good, bad)
    };
    assert_eq!(good.ring, pipe_iova);
    let (f1, f2) = (frame(1, 256, 0xaa), frame(2, 256, 0xbb));
    fabric.deliver_frame(nic.id, 0, Frame::new(f2.clone(), 0));
    sim.run();
    // Nothing of the frame anywhere in the unmapped ring's memory, and the
    // fault is counted by the NIC and the fabric.
    let mut ring = vec![0u8; 4096];
    mem.borrow()
        .phys
        .read(PhysAddr(bad.ring), &mut ring)
        .unwrap();
    assert!(ring.iter().all(|b| *b == 0));
    let c = nic.borrow().counters().clone();
    assert_eq!(c.get("dma_faults.rx_data"), 1, "{c:?}");
    assert!(fabric.counters().get("drop.iommu_fault") >= 1);
    // The mapped pipe receives at the physical address behind its IOVA.
    fabric.deliver_frame(nic.id, 0, Frame::new(f1.clone(), 1));
    sim.run();
    let mut got = vec![0u8; f1.len()];
    mem.borrow().phys.read(mapped.base, &mut got).unwrap();
    assert_eq!(got, f1);
    assert_eq!(nic.borrow().counters().get("dma_faults.rx_data"), 1);

    // With no mapping at all the NIC writes nothing: neither the data nor
    // the notification.
    let (sim, mem) = sim_and_memory();
    let fabric = new_fabric(&sim, &mem, true);
    let nic = fabric
        .attach(
            EnsoNic::new(EnsoNicConfig::default()).unwrap(),
            Attach::RootPort,
            DeviceLink::default(),
        )
        .unwrap();
    let domain = fabric.iommu_create_domain().unwrap();
    fabric.iommu_attach(nic.id, domain).unwrap();
    let nb_mem = mem.borrow_mut().phys.alloc_huge(1).unwrap();
    let ring = mem.borrow_mut().phys.alloc_huge(PIPE_BYTES).unwrap();
    {
        let mut n = nic.borrow_mut();
        let nb = n
            .register_notification_buffer(
                nb_mem.base.0,
                ENTRIES,
                nb_mem.base.0 + (1 << 20),
                ENTRIES,
            )
            .unwrap();
        let p = n.register_pipe(ring.base.0, nb).unwrap();
        n.add_fallback_pipe(p.id).unwrap();
    }
    let watch = mem.borrow_mut().watch(nb_mem.base, HUGE_PAGE_BYTES);
    mem.borrow_mut()
        .watch_with(ring.base, PIPE_BYTES, watch.clone());
    let woke = Rc::new(RefCell::new(false));
    {
        let w = woke.clone();
        sim.spawn(async move {
            watch.notified().await;
            *w.borrow_mut() = true;
        });
    }
    fabric.deliver_frame(nic.id, 0, Frame::new(frame(3, 1518, 0xcc), 0));
    sim.run();
    assert!(!*woke.borrow(), "no byte was written");
    let mut b = vec![0u8; 2048];
    mem.borrow().phys.read(ring.base, &mut b).unwrap();
    assert!(b.iter().all(|x| *x == 0));
    let c = nic.borrow().counters().clone();
    // A 1514-byte frame padded to 1536 goes out in three bursts.
    assert_eq!(c.get("dma_faults.rx_data"), 3, "{c:?}");
    assert_eq!(c.get("dma_faults.rx_notification"), 1, "{c:?}");
    assert_eq!(
        c.get("appended"),
        1,
        "the NIC cannot know a posted write faulted"
    );
    assert_eq!(fabric.counters().get("drop.iommu_fault"), 4);
}

#[test]
fn dma_the_link_cannot_address_is_refused_counted_and_never_half_done() {
    // A 32-bit link, and a pipe and TX data above 4 GiB.
    let link = PcieConfig {
        addr64: false,
        ..PcieConfig::default()
    };
    let (r, pipes) = rig_with(EnsoNicConfig::default(), link, 1);
    let high = r.nic.borrow_mut().register_pipe(1 << 32, 0).unwrap();
    {
        let mut nic = r.nic.borrow_mut();
        nic.bind_flow(synthetic_flow(1), pipes[0].id).unwrap();
        nic.bind_flow(synthetic_flow(2), high.id).unwrap();
    }
    r.deliver(&[frame(2, 256, 1), frame(1, 256, 2)], Duration::from_ns(10));
    let c = r.counters();
    assert_eq!(c.get("drop.rx_dma_error"), 1, "{c:?}");
    assert_eq!(c.get("dma_errors"), 1);
    assert_eq!(c.get("appended"), 1);
    conserved(&c);
    // Only the frame that was appended is notified.
    assert_eq!(r.notifications(), vec![(0, pipes[0].id as u64, 256)]);
    // A TX notification naming data the link cannot reach is refused and
    // still completed.
    r.tx_notification(0, 1 << 32, 64);
    r.ring(Register::TxNotificationTail(0), 1);
    r.settle();
    let c = r.counters();
    assert_eq!(c.get("tx_bad_notifications"), 1, "{c:?}");
    assert_eq!(c.get("dma_errors"), 2);
    assert_eq!(r.tx_signal(0), 0);
    assert!(r.sent().is_empty());
}
