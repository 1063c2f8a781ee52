//! The fabric seen from devices: bytes land where the IOMMU says and only
//! there, faults move nothing and are reported, peer-to-peer reaches a
//! peer only where routing allows, MMIO and MSI-X arrive in order, and the
//! timing composes from the hops.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Counters, Duration, Sim, Time};
use nextio_hw::cache::HierarchyConfig;
use nextio_hw::device::{BarSpec, Device, DeviceCtx, DeviceId, DmaFault, Requester};
use nextio_hw::fabric::{
    Attach, DeviceHandle, DeviceLink, Fabric, FabricConfig, IommuConfig, MsiMessage, P2pPolicy,
    SwitchConfig,
};
use nextio_hw::mem::{FaultKind, HUGE_PAGE_BYTES, PhysAddr, TlbConfig};
use nextio_hw::memory::{MemorySystem, SharedMemory};
use nextio_hw::pcie::PcieConfig;

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Write {
        from: Requester,
        offset: u64,
        data: Vec<u8>,
        at: Time,
    },
    ReadDone {
        tag: u64,
        data: Vec<u8>,
        at: Time,
    },
    Fault {
        tag: u64,
        fault: DmaFault,
    },
}

/// What a [`Probe`] saw, in order.
type Log = Rc<RefCell<Vec<Seen>>>;

/// A device that records what reaches it and answers BAR reads with a
/// fixed pattern.
struct Probe {
    log: Log,
    counters: Counters,
}

impl Device for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn bars(&self) -> Vec<BarSpec> {
        vec![BarSpec::new(1 << 20)]
    }
    fn bar_write(
        &mut self,
        cx: &mut DeviceCtx<'_>,
        from: Requester,
        _bar: u8,
        offset: u64,
        data: &[u8],
    ) {
        self.log.borrow_mut().push(Seen::Write {
            from,
            offset,
            data: data.to_vec(),
            at: cx.now(),
        });
    }
    fn bar_read(
        &mut self,
        _cx: &mut DeviceCtx<'_>,
        _from: Requester,
        _bar: u8,
        offset: u64,
        out: &mut [u8],
    ) {
        for (i, b) in out.iter_mut().enumerate() {
            *b = (offset as usize + i) as u8;
        }
    }
    fn dma_read_done(&mut self, cx: &mut DeviceCtx<'_>, tag: u64, data: &[u8]) {
        self.log.borrow_mut().push(Seen::ReadDone {
            tag,
            data: data.to_vec(),
            at: cx.now(),
        });
    }
    fn dma_fault(&mut self, _cx: &mut DeviceCtx<'_>, tag: u64, fault: DmaFault) {
        self.log.borrow_mut().push(Seen::Fault { tag, fault });
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
}

struct Rig {
    sim: Sim,
    mem: SharedMemory,
    fabric: Fabric,
}

fn rig(iommu: bool) -> Rig {
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
    Rig { sim, mem, fabric }
}

fn probe(r: &Rig, at: Attach) -> (DeviceHandle<Probe>, Log) {
    let log = Rc::new(RefCell::new(Vec::new()));
    let h = r
        .fabric
        .attach(
            Probe {
                log: log.clone(),
                counters: Counters::new(),
            },
            at,
            DeviceLink::default(),
        )
        .unwrap();
    (h, log)
}

fn read(mem: &SharedMemory, pa: PhysAddr, n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    mem.borrow().phys.read(pa, &mut b).unwrap();
    b
}

#[test]
fn a_mapped_write_lands_after_its_flight_and_wakes_watchers() {
    let r = rig(true);
    let (dev, _) = probe(&r, Attach::RootPort);
    let buf = r.mem.borrow_mut().phys.alloc_huge(HUGE_PAGE_BYTES).unwrap();
    let domain = r.fabric.iommu_create_domain().unwrap();
    r.fabric.iommu_attach(dev.id, domain).unwrap();
    let iova = 0x7000_0000_0000u64;
    r.fabric
        .iommu_map(domain, iova, buf.base, HUGE_PAGE_BYTES, true)
        .unwrap();
    let notify = r.mem.borrow_mut().watch(buf.base.offset(64), 64);
    let woke = Rc::new(RefCell::new(None));
    {
        let (s, n, w) = (r.sim.clone(), notify.clone(), woke.clone());
        r.sim.spawn(async move {
            n.notified().await;
            *w.borrow_mut() = Some(s.now());
        });
    }
    r.sim.run();
    let posted = r
        .fabric
        .act(&dev, |_, cx| {
            cx.dma_write(iova + 64, &[0xab; 64], "test", 1)
        })
        .unwrap();
    assert!(
        read(&r.mem, buf.base.offset(64), 64)
            .iter()
            .all(|b| *b == 0),
        "not before it lands"
    );
    r.sim.run();
    assert_eq!(read(&r.mem, buf.base.offset(64), 64), vec![0xab; 64]);
    let landed = woke.borrow().expect("the watcher woke");
    // Flight 200 ns + root complex 50 ns + an IOTLB miss beyond the TLP's
    // serialization: a 2 MiB mapping walks three levels, each 70 ns plus
    // 40 ns from DRAM (the OS wrote the tables without caching them).
    let lat = (landed - posted.sent_at).ps();
    assert_eq!(lat, 200_000 + 50_000 + 3 * (70_000 + 40_000), "{lat}");
    // A second write to the same page hits the IOTLB: no walk.
    let t0 = r.sim.now();
    let p2 = r
        .fabric
        .act(&dev, |_, cx| cx.dma_write(iova + 4096, &[1; 8], "test", 2))
        .unwrap();
    assert!(p2.sent_at > t0);
    assert_eq!(r.fabric.iotlb_stats().hits, 1);
    assert_eq!(r.fabric.iommu_stats().walks, 1);
}

#[test]
fn dma_outside_the_domain_faults_and_moves_no_byte() {
    let r = rig(true);
    let (dev, log) = probe(&r, Attach::RootPort);
    let secret = r.mem.borrow_mut().phys.alloc_huge(HUGE_PAGE_BYTES).unwrap();
    r.mem
        .borrow_mut()
        .phys
        .write(secret.base, b"kernel secret")
        .unwrap();
    let mine = r.mem.borrow_mut().phys.alloc_huge(HUGE_PAGE_BYTES).unwrap();
    let domain = r.fabric.iommu_create_domain().unwrap();
    r.fabric.iommu_attach(dev.id, domain).unwrap();
    r.fabric
        .iommu_map(domain, mine.base.0, mine.base, HUGE_PAGE_BYTES, false)
        .unwrap();
    // A hostile device aims at the secret's physical address, at a
    // read-only page of its own, and at its own page past the end.
    r.fabric.act(&dev, |_, cx| {
        cx.dma_write(secret.base.0, b"XXXXXXXXXXXXX", "attack", 10)
            .unwrap();
        cx.dma_read(secret.base.0, 13, "attack", 11).unwrap();
        cx.dma_write(mine.base.0, &[9; 64], "attack", 12).unwrap();
        cx.dma_read(mine.end().0, 64, "attack", 13).unwrap();
        cx.dma_read(mine.base.0, 16, "ok", 14).unwrap();
    });
    r.sim.run();
    assert_eq!(read(&r.mem, secret.base, 13), b"kernel secret");
    assert!(read(&r.mem, mine.base, 64).iter().all(|b| *b == 0));
    let log = log.borrow();
    let faults: Vec<_> = log
        .iter()
        .filter_map(|s| match s {
            Seen::Fault { tag, fault } => Some((*tag, *fault)),
            _ => None,
        })
        .collect();
    assert_eq!(faults.len(), 4, "{log:?}");
    assert!(faults.contains(&(
        12,
        DmaFault::Iommu {
            iova: mine.base.0,
            kind: FaultKind::WriteToReadOnly
        }
    )));
    assert!(faults.iter().any(|(t, f)| *t == 10
        && matches!(
            f,
            DmaFault::Iommu {
                kind: FaultKind::NotMapped,
                ..
            }
        )));
    // No data ever reached the device for the faulting reads.
    assert!(
        log.iter()
            .all(|s| !matches!(s, Seen::ReadDone { tag: 11 | 13, .. }))
    );
    assert!(
        log.iter()
            .any(|s| matches!(s, Seen::ReadDone { tag: 14, .. }))
    );
    assert_eq!(r.fabric.counters().get("drop.iommu_fault"), 4);
    assert_eq!(r.fabric.iommu_stats().total_faults(), 4);
}

#[test]
fn a_device_with_no_domain_reaches_nothing() {
    let r = rig(true);
    let (dev, log) = probe(&r, Attach::RootPort);
    r.fabric
        .act(&dev, |_, cx| cx.dma_write(0x1000, &[1; 8], "x", 1).unwrap());
    r.sim.run();
    assert_eq!(read(&r.mem, PhysAddr(0x1000), 8), vec![0; 8]);
    assert!(matches!(log.borrow()[0], Seen::Fault { tag: 1, .. }));
}

#[test]
fn without_an_iommu_addresses_are_physical() {
    let r = rig(false);
    let (dev, log) = probe(&r, Attach::RootPort);
    let b = r.mem.borrow_mut().phys.alloc(4096, 4096).unwrap();
    r.mem.borrow_mut().phys.write(b.base, b"hello").unwrap();
    r.fabric.act(&dev, |_, cx| {
        cx.dma_read(b.base.0, 5, "x", 7).unwrap();
        cx.dma_write(b.base.0 + 100, b"world", "x", 8).unwrap();
    });
    r.sim.run();
    assert_eq!(read(&r.mem, b.base.offset(100), 5), b"world");
    match &log.borrow()[0] {
        Seen::ReadDone { tag: 7, data, at } => {
            assert_eq!(data, b"hello");
            // An LLC-missing 64 B read: 2 × 200 ns flights, 2 × 50 ns root
            // complex, 40 ns DRAM, plus serialization of request and
            // completion.
            let ns = at.ps() as f64 / 1e3;
            assert!((540.0..560.0).contains(&ns), "{ns}");
        }
        other => panic!("{other:?}"),
    }
    // Nothing at an address no memory or BAR decodes.
    r.fabric.act(&dev, |_, cx| {
        cx.dma_read(0x20_0000_0000, 8, "x", 9).unwrap()
    });
    r.sim.run();
    assert!(log.borrow().iter().any(|s| matches!(
        s,
        Seen::Fault {
            tag: 9,
            fault: DmaFault::UnsupportedRequest { .. }
        }
    )));
}

fn switch_rig(p2p: P2pPolicy) -> (Rig, DeviceHandle<Probe>, DeviceHandle<Probe>, Log) {
    let r = rig(true);
    let sw = r
        .fabric
        .add_switch(
            Attach::RootPort,
            PcieConfig::gen_lanes(3, 16),
            SwitchConfig {
                p2p,
                ..SwitchConfig::default()
            },
        )
        .unwrap();
    let (a, _) = probe(&r, Attach::Switch(sw));
    let (b, b_log) = probe(&r, Attach::Switch(sw));
    let domain = r.fabric.iommu_create_domain().unwrap();
    r.fabric.iommu_attach(a.id, domain).unwrap();
    (r, a, b, b_log)
}

#[test]
fn a_peer_bar_is_reachable_only_where_routing_allows() {
    // ACS redirect (the default): A's write to B's BAR goes to the root
    // complex, whose IOMMU has no mapping for it: B never sees it.
    let (r, a, b, b_log) = switch_rig(P2pPolicy::RedirectUpstream);
    let bar = r.fabric.bar(b.id, 0).unwrap();
    r.fabric.act(&a, |_, cx| {
        cx.dma_write(bar.base + 8, b"poke", "p2p", 1).unwrap()
    });
    r.sim.run();
    assert!(b_log.borrow().is_empty(), "{:?}", b_log.borrow());
    assert_eq!(r.fabric.counters().get("drop.iommu_fault"), 1);
    // Once the OS maps B's BAR into A's domain, the write reaches B through
    // the root complex.
    let domain = r.fabric.iommu_domain_of(a.id).unwrap();
    let iova = 0x40_0000_0000;
    r.fabric
        .iommu_map(domain, iova, PhysAddr(bar.base), bar.bytes, true)
        .unwrap();
    r.fabric.act(&a, |_, cx| {
        cx.dma_write(iova + 8, b"poke", "p2p", 2).unwrap()
    });
    r.sim.run();
    match &b_log.borrow()[0] {
        Seen::Write {
            from, offset, data, ..
        } => {
            assert_eq!(*from, Requester::Device(a.id));
            assert_eq!(*offset, 8);
            assert_eq!(data, b"poke");
        }
        other => panic!("{other:?}"),
    }

    // A switch that forwards directly lets A reach B without the IOMMU,
    // faster than the trip through the root complex.
    let (r, a, b, b_log) = switch_rig(P2pPolicy::Direct);
    let bar = r.fabric.bar(b.id, 0).unwrap();
    let t0 = r.sim.now();
    r.fabric.act(&a, |_, cx| {
        cx.dma_write(bar.base, b"direct", "p2p", 3).unwrap()
    });
    r.fabric
        .act(&a, |_, cx| cx.dma_read(bar.base + 16, 4, "p2p", 4).unwrap());
    r.sim.run();
    match &b_log.borrow()[0] {
        Seen::Write { from, data, at, .. } => {
            assert_eq!(*from, Requester::Device(a.id));
            assert_eq!(data, b"direct");
            // Two flights and one switch: no root complex on the way.
            assert!((*at - t0) < Duration::from_ns(600), "{:?}", *at - t0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.fabric.iommu_stats().translations, 0);
    assert_eq!(r.fabric.counters().get("peer_reads"), 1);
    let _: DeviceId = b.id;
}

#[test]
fn mmio_reaches_the_device_and_reads_return_its_answer() {
    let r = rig(true);
    let (dev, log) = probe(&r, Attach::RootPort);
    let bar = r.fabric.bar(dev.id, 0).unwrap();
    let arrive = r
        .fabric
        .cpu_mmio_write(
            0,
            PhysAddr(bar.base + 0x40),
            &7u32.to_le_bytes(),
            "doorbell",
        )
        .unwrap();
    // Core to root port 50 ns, flight 200 ns, plus one small TLP.
    assert!(arrive.ps() > 250_000 && arrive.ps() < 260_000, "{arrive:?}");
    let reply = r
        .fabric
        .cpu_mmio_read(0, PhysAddr(bar.base + 0x10), 4, "register")
        .unwrap();
    let got = Rc::new(RefCell::new(None));
    let (g, s) = (got.clone(), r.sim.clone());
    r.sim.spawn(async move {
        let data = reply.recv().await;
        *g.borrow_mut() = Some((data, s.now()));
    });
    r.sim.run();
    let (data, at) = got.borrow().clone().unwrap();
    assert_eq!(data, vec![0x10, 0x11, 0x12, 0x13]);
    assert!(at.ps() > 500_000, "a round trip: {at:?}");
    assert!(matches!(
        &log.borrow()[0],
        Seen::Write {
            from: Requester::Cpu { core: 0 },
            offset: 0x40,
            ..
        }
    ));
    assert!(
        r.fabric
            .cpu_mmio_write(0, PhysAddr(0x1000), &[0; 4], "x")
            .is_err()
    );
    assert!(
        r.fabric
            .cpu_mmio_write(0, PhysAddr(bar.base), &[0; 4096], "x")
            .is_err()
    );
}

#[test]
fn an_interrupt_arrives_after_the_writes_before_it() {
    let r = rig(false);
    let (dev, _) = probe(&r, Attach::RootPort);
    let b = r.mem.borrow_mut().phys.alloc(4096, 4096).unwrap();
    r.fabric
        .set_msix(
            dev.id,
            3,
            MsiMessage {
                core: 0,
                vector: 0x40,
            },
        )
        .unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (s, m, mem) = (seen.clone(), r.sim.clone(), r.mem.clone());
    r.fabric.set_interrupt_sink(Rc::new(move |msg| {
        let landed = mem.borrow().phys.read_u64(b.base).unwrap();
        s.borrow_mut().push((msg, landed, m.now()));
    }));
    r.fabric.act(&dev, |_, cx| {
        cx.dma_write(b.base.0, &42u64.to_le_bytes(), "data", 0)
            .unwrap();
        cx.msix(3);
        cx.msix(9); // never programmed
    });
    r.sim.run();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].0,
        MsiMessage {
            core: 0,
            vector: 0x40
        }
    );
    assert_eq!(seen[0].1, 42, "the data was in memory before the interrupt");
    assert_eq!(r.fabric.counters().get("drop.msix_unconfigured"), 1);
}

#[test]
fn a_narrow_uplink_backs_writes_up_into_credit_stalls_and_loses_none() {
    let r = rig(false);
    let sw = r
        .fabric
        .add_switch(
            Attach::RootPort,
            PcieConfig::gen_lanes(1, 1),
            SwitchConfig::default(),
        )
        .unwrap();
    let (a, _) = probe(&r, Attach::Switch(sw));
    let (b, _) = probe(&r, Attach::Switch(sw));
    let buf = r.mem.borrow_mut().phys.alloc_huge(HUGE_PAGE_BYTES).unwrap();
    for (i, d) in [&a, &b].into_iter().enumerate() {
        r.fabric.act(d, |_, cx| {
            for k in 0..2000u64 {
                let at = buf.base.0 + (i as u64 * 1_000_000) + k * 256;
                cx.dma_write(at, &[(k % 251) as u8; 256], "bulk", k)
                    .unwrap();
            }
        });
    }
    r.sim.run();
    assert!(r.fabric.counters().get("credit_stalls") > 0);
    for (i, _) in [&a, &b].into_iter().enumerate() {
        for k in [0u64, 999, 1999] {
            let at = buf.base.offset(i as u64 * 1_000_000 + k * 256);
            assert_eq!(read(&r.mem, at, 256), vec![(k % 251) as u8; 256]);
        }
    }
    let (up, _) = r.fabric.switch_link_counters(sw).unwrap();
    assert_eq!(up.payload_bytes, 2 * 2000 * 256);
}
