//! The packetized NIC on a fabric, driven the way its driver drives it:
//! rings and buffers in host memory, register writes over MMIO, frames on
//! its Ethernet port, MSI-X through the fabric. What lands in memory and
//! on the wire is checked byte for byte, and every frame and descriptor is
//! accounted for.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Counters, Duration, Mailbox, Rate, Sim, Time};
use nextio_hw::cache::HierarchyConfig;
use nextio_hw::device::Device;
use nextio_hw::ethernet::{LinkConfig, Wire};
use nextio_hw::fabric::{
    Attach, DeviceHandle, DeviceLink, Fabric, FabricConfig, IommuConfig, MsiMessage,
};
use nextio_hw::mem::{HUGE_PAGE_BYTES, PhysAddr, TlbConfig};
use nextio_hw::memory::{MemorySystem, SharedMemory};
use nextio_hw::nic::packetized::{
    DYN_CTL_INTENA, MICROSOFT_RSS_KEY, NicError, PacketizedConfig, PacketizedNic, RX_DESC_BYTES,
    RX_STATUS_DD, RX_WB_STATUS_OFFSET, RxReadDesc, RxWbDesc, TX_DESC_BYTES, TXD_CMD_EOP,
    TXD_CMD_IIPT_IPV4, TXD_CMD_L4T_UDP, TXD_CMD_RS, TXD_DTYPE_DATA, TXD_DTYPE_DESC_DONE,
    TxDataDesc, regs, rss_hash, tx_offsets,
};
use nextio_hw::packet::{Frame, Macs, build_udp, parse_udp};
use nextio_hw::pcie::PcieConfig;
use nextio_hw::trafficgen::synthetic_flow;

struct Bench {
    sim: Sim,
    mem: SharedMemory,
    fabric: Fabric,
    nic: DeviceHandle<PacketizedNic>,
    /// Base address of BAR0.
    bar: u64,
    /// What the NIC sends.
    outbox: Rc<Mailbox<Frame>>,
    /// The wire into the NIC's port.
    inject: Rc<Wire>,
}

fn bench_with(cfg: PacketizedConfig, iommu: bool, out_link: LinkConfig) -> Bench {
    let sim = Sim::new();
    let mem = MemorySystem::new(
        &sim,
        256 << 20,
        HierarchyConfig::ice_lake(1),
        TlbConfig::skylake_stlb(),
    )
    .unwrap()
    .shared();
    let fabric = Fabric::new(
        &sim,
        mem.clone(),
        FabricConfig {
            iommu: IommuConfig {
                enabled: iommu,
                ..IommuConfig::default()
            },
            ..FabricConfig::default()
        },
    )
    .unwrap();
    let nic = fabric
        .attach(
            PacketizedNic::new(cfg).unwrap(),
            Attach::RootPort,
            DeviceLink::pcie(PcieConfig::gen_lanes(3, 16)),
        )
        .unwrap();
    let bar = fabric.bar(nic.id, 0).unwrap().base;
    let outbox = Rc::new(Mailbox::new(&sim));
    let out = Rc::new(Wire::new(&sim, out_link, outbox.clone()));
    fabric.connect_port(nic.id, 0, out).unwrap();
    let inject = Rc::new(Wire::new(
        &sim,
        LinkConfig {
            queue_frames: 4096,
            ..LinkConfig::default()
        },
        fabric.port_sink(nic.id, 0).unwrap(),
    ));
    Bench {
        sim,
        mem,
        fabric,
        nic,
        bar,
        outbox,
        inject,
    }
}

fn bench(queues: usize) -> Bench {
    bench_with(
        PacketizedConfig {
            queues,
            ..PacketizedConfig::default()
        },
        false,
        LinkConfig::default(),
    )
}

fn at_us(us: u64) -> Time {
    Time(Duration::from_us(us).ps())
}

impl Bench {
    fn counters(&self) -> Counters {
        self.nic.borrow().counters().clone()
    }

    /// A core writes `value` to register `offset` of BAR0 now; returns when
    /// the write reaches the NIC.
    fn write_reg(&self, offset: u64, value: u32) -> Time {
        self.fabric
            .cpu_mmio_write(
                0,
                PhysAddr(self.bar + offset),
                &value.to_le_bytes(),
                "doorbell",
            )
            .unwrap()
    }

    /// Put `frame` on the wire into the NIC at `t`.
    fn send_at(&self, t: Time, frame: Frame) {
        let w = self.inject.clone();
        self.sim
            .at(t, move || {
                w.send(frame).unwrap();
            })
            .unwrap();
    }

    fn run_until(&self, t: Time) {
        self.sim.run_until(t);
    }

    fn read(&self, pa: PhysAddr, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        self.mem.borrow().phys.read(pa, &mut b).unwrap();
        b
    }

    fn rx_wb(&self, ring: PhysAddr, i: u64) -> RxWbDesc<Vec<u8>> {
        RxWbDesc::new(self.read(ring.offset(i * RX_DESC_BYTES), RX_DESC_BYTES as usize)).unwrap()
    }

    /// An RX ring of `entries` descriptors posting 2 KiB buffers, its
    /// physical addresses, configured on queue `q` at bus address
    /// `iova_of(ring)`.
    fn rx_ring_at(
        &self,
        q: usize,
        entries: u32,
        iova_of: impl Fn(PhysAddr) -> u64,
    ) -> (PhysAddr, Vec<PhysAddr>) {
        let mut m = self.mem.borrow_mut();
        let ring = m.phys.alloc_huge(entries as u64 * RX_DESC_BYTES).unwrap();
        let bufs = m.phys.alloc_huge(entries as u64 * 2048).unwrap();
        let addrs: Vec<PhysAddr> = (0..entries)
            .map(|i| bufs.base.offset(i as u64 * 2048))
            .collect();
        for (i, a) in addrs.iter().enumerate() {
            let d = RxReadDesc::build(iova_of(*a));
            m.phys
                .write(ring.base.offset(i as u64 * RX_DESC_BYTES), &d)
                .unwrap();
        }
        drop(m);
        self.nic
            .borrow_mut()
            .configure_rx(q, iova_of(ring.base), entries)
            .unwrap();
        (ring.base, addrs)
    }

    fn rx_ring(&self, q: usize, entries: u32) -> (PhysAddr, Vec<PhysAddr>) {
        self.rx_ring_at(q, entries, |pa| pa.0)
    }
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

fn rx_conserved(c: &Counters) {
    assert_eq!(
        c.get("rx_frames"),
        c.get("rx_delivered") + c.sum_prefix("drop.rx_"),
        "{c:?}"
    );
}

fn tx_conserved(c: &Counters) {
    assert_eq!(
        c.get("tx_descriptors"),
        c.get("tx_frames") + c.sum_prefix("drop.tx_"),
        "{c:?}"
    );
}

#[test]
fn received_bytes_land_in_order_with_dd_write_back() {
    let b = bench(1);
    let (ring, bufs) = b.rx_ring(0, 256);
    let watch = b.mem.borrow_mut().watch(ring, 256 * RX_DESC_BYTES);
    let woke = Rc::new(RefCell::new(None));
    {
        let (s, w) = (b.sim.clone(), woke.clone());
        b.sim.spawn(async move {
            watch.notified().await;
            *w.borrow_mut() = Some(s.now());
        });
    }
    b.write_reg(regs::rx_tail(0), 255);
    let sent = frames(200);
    for (i, f) in sent.iter().enumerate() {
        b.send_at(Time(at_us(2).ps() + i as u64 * 20_000), f.clone());
    }
    b.run_until(at_us(20));
    let c = b.counters();
    assert_eq!(c.get("rx_delivered"), 200);
    rx_conserved(&c);
    for (i, f) in sent.iter().enumerate() {
        let wb = b.rx_wb(ring, i as u64);
        assert!(wb.dd() && wb.eof(), "descriptor {i}");
        assert_eq!(wb.pkt_len() as usize, f.bytes.len());
        assert_eq!(Some(wb.rss_hash()), rss_hash(&MICROSOFT_RSS_KEY, &f.bytes));
        assert_eq!(b.read(bufs[i], f.bytes.len()), f.bytes, "packet {i}");
    }
    // Descriptors past the last packet stay as software wrote them.
    assert!(!b.rx_wb(ring, 200).dd());
    // A watcher of the ring learned of the first write-back.
    assert!(woke.borrow().is_some_and(|t| t > at_us(2)));
    // Fetches and write-backs are descriptors, frames packet data.
    let (up, down) = b.fabric.link_counters(b.nic.id).unwrap();
    assert!(up.bytes_by_purpose["packet-data"] > 200 * 60);
    assert!(up.bytes_by_purpose["descriptor"] >= 200 * RX_DESC_BYTES);
    assert!(down.bytes_by_purpose["descriptor"] >= 255 * RX_DESC_BYTES);
    assert_eq!(down.bytes_by_purpose["doorbell"] % 4, 0);
}

#[test]
fn ring_without_refill_drops_as_no_descriptor() {
    let b = bench(1);
    b.rx_ring(0, 64);
    b.write_reg(regs::rx_tail(0), 63);
    for f in frames(100) {
        b.send_at(at_us(2), f);
    }
    b.run_until(at_us(30));
    let c = b.counters();
    assert_eq!(c.get("rx_delivered"), 63);
    assert_eq!(c.get("drop.rx_no_descriptor"), 37);
    rx_conserved(&c);
    // An unconfigured queue and an oversized frame are drops too.
    let b = bench(1);
    b.send_at(Time::ZERO, frames(1).remove(0));
    b.send_at(Time::ZERO, Frame::new(vec![0; 4000], 9));
    b.run_until(at_us(1));
    let c = b.counters();
    assert_eq!(c.get("drop.rx_queue_disabled"), 1);
    assert_eq!(c.get("drop.rx_oversize"), 1);
    rx_conserved(&c);
}

#[test]
fn a_receive_pipeline_holds_frames_and_loses_none() {
    let b = bench_with(
        PacketizedConfig {
            rx_pipeline: Duration::from_us(1),
            ..PacketizedConfig::default()
        },
        false,
        LinkConfig::default(),
    );
    b.rx_ring(0, 64);
    b.write_reg(regs::rx_tail(0), 63);
    for f in frames(10) {
        b.send_at(at_us(2), f);
    }
    b.run_until(Time(at_us(2).ps() + 500_000));
    let c = b.counters();
    assert_eq!(c.get("rx_frames"), 10);
    assert_eq!(c.get("rx_delivered"), 0);
    assert_eq!(b.nic.borrow().rx_frames_held(), 10);
    b.run_until(at_us(10));
    let c = b.counters();
    assert_eq!(c.get("rx_delivered"), 10);
    assert_eq!(b.nic.borrow().rx_frames_held(), 0);
    rx_conserved(&c);
}

#[test]
fn rss_spreads_flows_deterministically() {
    let b = bench(4);
    let mut per_queue = [0u32; 4];
    for i in 0..256 {
        let f = build_udp(Macs::default(), synthetic_flow(i), &[], 64).unwrap();
        let q = b.nic.borrow().rss_queue(&f);
        assert_eq!(q, b.nic.borrow().rss_queue(&f));
        per_queue[q] += 1;
    }
    assert!(per_queue.iter().all(|&n| n > 32), "{per_queue:?}");
}

/// A TX ring of `entries` with the first `frames.len()` descriptors
/// posting `frames`; even frames get a spoiled UDP checksum and ask for
/// offload, descriptor `rs` asks for a write-back. Returns the ring.
fn tx_ring(b: &Bench, entries: u32, frames: &[Frame], rs: usize) -> PhysAddr {
    let mut m = b.mem.borrow_mut();
    let ring = m.phys.alloc_huge(entries as u64 * TX_DESC_BYTES).unwrap();
    let bufs = m.phys.alloc_huge(entries as u64 * 2048).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let buf = bufs.base.offset(i as u64 * 2048);
        let mut bytes = f.bytes.clone();
        let mut cmd = TXD_CMD_EOP;
        if i % 2 == 0 {
            let o = parse_udp(&bytes).unwrap().payload_offset;
            bytes[o - 2] ^= 0xff;
            cmd |= TXD_CMD_L4T_UDP | TXD_CMD_IIPT_IPV4;
        }
        if i == rs {
            cmd |= TXD_CMD_RS;
        }
        m.phys.write(buf, &bytes).unwrap();
        let d = TxDataDesc::build(buf.0, cmd, tx_offsets(14, 20, 8), bytes.len() as u64);
        m.phys
            .write(ring.base.offset(i as u64 * TX_DESC_BYTES), &d)
            .unwrap();
    }
    drop(m);
    b.nic
        .borrow_mut()
        .configure_tx(0, ring.base.0, entries)
        .unwrap();
    ring.base
}

fn dtype(b: &Bench, ring: PhysAddr, i: u64) -> u64 {
    TxDataDesc::new(b.read(ring.offset(i * TX_DESC_BYTES), TX_DESC_BYTES as usize))
        .unwrap()
        .dtype()
}

#[test]
fn transmit_reads_descriptors_and_bytes_and_writes_back_rs() {
    let b = bench(1);
    let sent = frames(40);
    let ring = tx_ring(&b, 64, &sent, 31);
    b.write_reg(regs::tx_tail(0), 40);
    b.run_until(at_us(20));
    let c = b.counters();
    assert_eq!(c.get("tx_descriptors"), 40);
    assert_eq!(c.get("tx_frames"), 40);
    tx_conserved(&c);
    for f in &sent {
        let got = b.outbox.try_recv().expect("frame on the wire");
        assert_eq!(got.bytes, f.bytes, "checksums offloaded, bytes intact");
    }
    assert!(b.outbox.try_recv().is_none());
    assert_eq!(dtype(&b, ring, 31), TXD_DTYPE_DESC_DONE);
    assert_eq!(dtype(&b, ring, 30), TXD_DTYPE_DATA);
    let (up, down) = b.fabric.link_counters(b.nic.id).unwrap();
    assert!(up.bytes_by_purpose["descriptor"] > 0, "the RS write-back");
    assert!(down.bytes_by_purpose["descriptor"] >= 40 * TX_DESC_BYTES);
    assert!(down.bytes_by_purpose["packet-data"] >= 40 * 60);
}

#[test]
fn a_full_port_holds_frames_back_and_loses_none() {
    // A 1 Gb/s wire with room for one waiting frame: the NIC reads frames
    // far faster than the wire takes them.
    let b = bench_with(
        PacketizedConfig::default(),
        false,
        LinkConfig {
            rate: Rate::gbps(1),
            queue_frames: 1,
            ..LinkConfig::default()
        },
    );
    let sent = frames(40);
    tx_ring(&b, 64, &sent, 39);
    b.write_reg(regs::tx_tail(0), 40);
    b.run_until(at_us(200));
    let c = b.counters();
    assert!(c.get("tx_port_full") > 0, "{c:?}");
    assert_eq!(c.get("tx_frames"), 40);
    tx_conserved(&c);
    for f in &sent {
        assert_eq!(b.outbox.try_recv().expect("frame").bytes, f.bytes);
    }
}

/// (time, message, descriptor 0's DD when it arrived) of each MSI-X
/// message.
type IrqLog = Rc<RefCell<Vec<(Time, MsiMessage, bool)>>>;

/// A bench whose queue 0 uses MSI-X entry 3, which the OS points at core
/// 0's vector 40, and its message log.
fn irq_bench() -> (Bench, IrqLog) {
    let b = bench(1);
    let (ring, _) = b.rx_ring(0, 256);
    b.write_reg(regs::rx_tail(0), 255);
    b.nic.borrow_mut().configure_interrupt(0, 3).unwrap();
    b.fabric
        .set_msix(
            b.nic.id,
            3,
            MsiMessage {
                core: 0,
                vector: 40,
            },
        )
        .unwrap();
    let log: IrqLog = Rc::new(RefCell::new(Vec::new()));
    let (l, s, m) = (log.clone(), b.sim.clone(), b.mem.clone());
    b.fabric.set_interrupt_sink(Rc::new(move |msg| {
        let status = m
            .borrow()
            .phys
            .read_u16(ring.offset(RX_WB_STATUS_OFFSET as u64))
            .unwrap();
        l.borrow_mut()
            .push((s.now(), msg, status & RX_STATUS_DD != 0));
    }));
    (b, log)
}

#[test]
fn an_armed_vector_fires_once_then_stays_masked() {
    let (b, log) = irq_bench();
    b.run_until(at_us(1));
    b.write_reg(regs::irq_dyn_ctl(0), DYN_CTL_INTENA);
    // Ten frames in a row: one message, after the first write-back.
    for (i, f) in frames(10).into_iter().enumerate() {
        b.send_at(Time(at_us(2).ps() + i as u64 * 10_000), f);
    }
    b.run_until(at_us(10));
    assert_eq!(log.borrow().len(), 1, "{:?}", log.borrow());
    let (t, msg, dd) = log.borrow()[0];
    assert_eq!(msg.vector, 40);
    assert!(t > at_us(2));
    assert!(dd, "the descriptor it announces was already in memory");
    // The message is a posted write of its own purpose.
    let (up, _) = b.fabric.link_counters(b.nic.id).unwrap();
    assert!(up.bytes_by_purpose["interrupt"] > 0);
    assert_eq!(b.counters().get("irq_messages"), 1);
    assert_eq!(b.counters().get("rx_delivered"), 10);
}

#[test]
fn nothing_fires_while_masked_and_masked_write_backs_are_not_lost() {
    let (b, log) = irq_bench();
    // Never armed: frames arrive, no message.
    for f in frames(3) {
        b.send_at(at_us(2), f);
    }
    b.run_until(at_us(10));
    assert!(log.borrow().is_empty());
    assert_eq!(b.counters().get("rx_delivered"), 3);
    // Arming with a write-back pending sends the message at once.
    let arrive = b.write_reg(regs::irq_dyn_ctl(0), DYN_CTL_INTENA);
    b.run_until(at_us(20));
    assert_eq!(log.borrow().len(), 1);
    assert!(log.borrow()[0].0 >= arrive);
    // Re-armed and then masked again (INTENA clear): silent.
    b.write_reg(regs::irq_dyn_ctl(0), DYN_CTL_INTENA);
    b.run_until(at_us(21));
    b.write_reg(regs::irq_dyn_ctl(0), 0);
    for f in frames(2) {
        b.send_at(at_us(25), f);
    }
    b.run_until(at_us(40));
    assert_eq!(log.borrow().len(), 1);
    // One re-arm, one message for everything that came meanwhile.
    b.write_reg(regs::irq_dyn_ctl(0), DYN_CTL_INTENA);
    b.run_until(at_us(50));
    assert_eq!(log.borrow().len(), 2);
    assert_eq!(b.counters().get("irq_messages"), 2);
    // A queue without a vector ignores the register.
    let b2 = bench(1);
    b2.write_reg(regs::irq_dyn_ctl(0), DYN_CTL_INTENA);
    b2.run_until(at_us(1));
    assert_eq!(b2.counters().get("irq_not_configured"), 1);
    assert!(b2.nic.borrow_mut().configure_interrupt(3, 1).is_err());
}

#[test]
fn bad_configuration_is_an_error() {
    let b = bench(2);
    let mut nic = b.nic.borrow_mut();
    assert!(matches!(
        nic.configure_rx(5, 0x1000, 64),
        Err(NicError::NoSuchQueue { .. })
    ));
    assert!(nic.configure_rx(0, !127, 64).is_err());
    assert!(nic.configure_rx(0, 64, 64).is_err());
    assert!(nic.configure_tx(0, 0x1000, 1).is_err());
    assert!(nic.configure_interrupt(2, 0).is_err());
    drop(nic);
    let bad = PacketizedConfig {
        queues: 0,
        ..PacketizedConfig::default()
    };
    assert!(bad.validate().is_err());
    assert!(PacketizedNic::new(bad).is_err());
    let bad = PacketizedConfig {
        rss_lut_entries: 100,
        ..PacketizedConfig::default()
    };
    assert!(bad.validate().is_err());
    let bad = PacketizedConfig {
        rx_max_frame_bytes: 1 << 14,
        ..PacketizedConfig::default()
    };
    assert!(bad.validate().is_err());
}

#[test]
fn bad_register_writes_are_counted_and_change_nothing() {
    let b = bench(2);
    b.rx_ring(0, 64);
    let reg = |offset: u64| PhysAddr(b.bar + offset);
    // Not a register, a register of a queue the NIC lacks, a tail past the
    // ring, a tail of an unconfigured ring, and a 2-byte write.
    b.write_reg(0x10, 1);
    b.write_reg(regs::rx_tail(2), 1);
    b.write_reg(regs::rx_tail(0), 64);
    b.write_reg(regs::tx_tail(1), 1);
    b.fabric
        .cpu_mmio_write(0, reg(regs::rx_tail(0)), &[1, 0], "doorbell")
        .unwrap();
    b.write_reg(regs::rx_tail(0), 7);
    b.run_until(at_us(2));
    let c = b.counters();
    assert_eq!(c.get("bad_register_writes"), 5, "{c:?}");
    // The good write took effect and reads back.
    let reply = b
        .fabric
        .cpu_mmio_read(0, reg(regs::rx_tail(0)), 4, "register")
        .unwrap();
    b.run_until(at_us(4));
    assert_eq!(reply.try_recv(), Some(7u32.to_le_bytes().to_vec()));
}

#[test]
fn with_the_iommu_the_nic_reaches_exactly_what_is_mapped() {
    let cfg = PacketizedConfig::default();
    let b = bench_with(cfg, true, LinkConfig::default());
    let domain = b.fabric.iommu_create_domain().unwrap();
    b.fabric.iommu_attach(b.nic.id, domain).unwrap();
    // Buffers are mapped at IOVA = PA + 112 TiB; the ring is not mapped.
    let iova = |pa: PhysAddr| pa.0 + 0x7000_0000_0000;
    let (ring, bufs) = b.rx_ring_at(0, 64, iova);
    let region = PhysAddr(bufs[0].0);
    b.fabric
        .iommu_map(domain, iova(region), region, HUGE_PAGE_BYTES, true)
        .unwrap();
    let ring_before = b.read(ring, 64 * RX_DESC_BYTES as usize);
    let tail_at = b.write_reg(regs::rx_tail(0), 63);
    // One frame while the fetch is in flight, more after it faulted.
    b.send_at(tail_at, frames(1).remove(0));
    for f in frames(5) {
        b.send_at(at_us(5), f);
    }
    b.run_until(at_us(10));
    let c = b.counters();
    assert_eq!(c.get("rx_delivered"), 0);
    assert!(c.get("rx_descriptor_fetch_faults") >= 1, "{c:?}");
    assert_eq!(c.get("drop.rx_descriptor_fault"), 1, "{c:?}");
    assert_eq!(c.get("drop.rx_no_descriptor"), 5, "{c:?}");
    rx_conserved(&c);
    assert!(b.fabric.counters().get("drop.iommu_fault") >= 1);
    assert_eq!(b.read(ring, 64 * RX_DESC_BYTES as usize), ring_before);
    assert!(b.read(bufs[0], 2048 * 4).iter().all(|&x| x == 0));

    // With a ring the OS did map, frames land at the buffers' physical
    // addresses.
    let (ring, bufs) = b.rx_ring_at(0, 64, iova);
    b.fabric
        .iommu_map(domain, iova(bufs[0]), bufs[0], HUGE_PAGE_BYTES, true)
        .unwrap();
    b.fabric
        .iommu_map(domain, iova(ring), ring, HUGE_PAGE_BYTES, true)
        .unwrap();
    b.write_reg(regs::rx_tail(0), 63);
    let sent = frames(4);
    for f in &sent {
        b.send_at(at_us(15), f.clone());
    }
    b.run_until(at_us(25));
    assert_eq!(b.counters().get("rx_delivered"), 4);
    for (i, f) in sent.iter().enumerate() {
        assert_eq!(b.read(bufs[i], f.bytes.len()), f.bytes);
        assert!(b.rx_wb(ring, i as u64).dd());
    }
    rx_conserved(&b.counters());
}

#[test]
fn faulting_transmit_reads_are_counted_drops() {
    let b = bench_with(PacketizedConfig::default(), true, LinkConfig::default());
    let domain = b.fabric.iommu_create_domain().unwrap();
    b.fabric.iommu_attach(b.nic.id, domain).unwrap();
    // Identity-mapped ring and buffers, but descriptor 1 points at a
    // buffer nobody mapped.
    let sent = frames(3);
    let ring = tx_ring(&b, 64, &sent, 2);
    let bufs = PhysAddr(TxDataDesc::new(b.read(ring, 16)).unwrap().buf_addr());
    b.fabric
        .iommu_map(domain, ring.0, ring, HUGE_PAGE_BYTES, true)
        .unwrap();
    b.fabric
        .iommu_map(domain, bufs.0, bufs, HUGE_PAGE_BYTES, true)
        .unwrap();
    let stray = TxDataDesc::build(0x7000_0000, TXD_CMD_EOP, 0, 60);
    b.mem
        .borrow_mut()
        .phys
        .write(ring.offset(TX_DESC_BYTES), &stray)
        .unwrap();
    b.write_reg(regs::tx_tail(0), 3);
    b.run_until(at_us(10));
    let c = b.counters();
    assert_eq!(c.get("tx_descriptors"), 3);
    assert_eq!(c.get("tx_frames"), 2);
    assert_eq!(c.get("drop.tx_data_fault"), 1);
    tx_conserved(&c);
    assert_eq!(b.outbox.try_recv().unwrap().bytes, sent[0].bytes);
    assert_eq!(b.outbox.try_recv().unwrap().bytes, sent[2].bytes);
    assert_eq!(dtype(&b, ring, 2), TXD_DTYPE_DESC_DONE);

    // An unmapped TX ring: every descriptor fetched is a counted drop.
    let b = bench_with(PacketizedConfig::default(), true, LinkConfig::default());
    let domain = b.fabric.iommu_create_domain().unwrap();
    b.fabric.iommu_attach(b.nic.id, domain).unwrap();
    tx_ring(&b, 64, &frames(40), 31);
    b.write_reg(regs::tx_tail(0), 40);
    b.run_until(at_us(10));
    let c = b.counters();
    assert_eq!(c.get("drop.tx_descriptor_fault"), 40, "{c:?}");
    assert_eq!(c.get("tx_frames"), 0);
    tx_conserved(&c);
}
