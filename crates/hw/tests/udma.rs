//! The user-space DMA engine on a fabric, attacked and checked on its
//! bytes: copies land exactly, fills/compares/CRCs compute what an
//! independent computation does, a page fault moves exactly the bytes
//! before it and says where, batches report each descriptor, bad
//! descriptors are rejected with a counted reason and move nothing, a
//! shared queue refuses with retry instead of losing, capabilities are
//! checked for owner, generation, range and permission, and every
//! descriptor is conserved.

use std::rc::Rc;

use nextio_engine::{Counters, Duration, Mailbox, Sim, SimRng};
use nextio_hw::cache::HierarchyConfig;
use nextio_hw::cpu::ctx::enqcmd_stamp;
use nextio_hw::device::Device;
use nextio_hw::devices::udma::layout::{
    DESCRIPTOR_BYTES, Descriptor, RECORD_BYTES, Record, flags, opcode, status,
};
use nextio_hw::devices::udma::{Capability, Udma, UdmaConfig, WqConfig, ops};
use nextio_hw::fabric::{Attach, DeviceHandle, DeviceLink, Fabric, FabricConfig, Space};
use nextio_hw::mem::{
    AddressSpace, Asid, PAGE_BYTES, PageSize, Perms, PhysAddr, TlbConfig, VirtAddr,
};
use nextio_hw::memory::{MemorySystem, SharedMemory};

const VA: u64 = 0x10_0000_0000;

struct Rig {
    sim: Sim,
    mem: SharedMemory,
    fabric: Fabric,
    dev: DeviceHandle<Udma>,
    portal: u64,
    /// Process address spaces; process i has PASID i + 1.
    procs: Vec<AddressSpace>,
}

impl Rig {
    fn new(procs: usize, queues: &[WqConfig]) -> Rig {
        Rig::with(UdmaConfig::default(), procs, queues)
    }

    fn with(cfg: UdmaConfig, procs: usize, queues: &[WqConfig]) -> Rig {
        let sim = Sim::new();
        let mem = MemorySystem::new(
            &sim,
            256 << 20,
            HierarchyConfig::ice_lake(1),
            TlbConfig::skylake_stlb(),
        )
        .unwrap()
        .shared();
        let fabric = Fabric::new(&sim, mem.clone(), FabricConfig::default()).unwrap();
        let dev = fabric
            .attach(
                Udma::new(cfg, SimRng::new(1)).unwrap(),
                Attach::RootPort,
                DeviceLink::on_die(),
            )
            .unwrap();
        let portal = fabric.bar(dev.id, 0).unwrap().base;
        let domain = fabric.iommu_create_domain().unwrap();
        fabric.iommu_attach(dev.id, domain).unwrap();
        let mut spaces = Vec::new();
        for i in 0..procs {
            let s = AddressSpace::new(&mut mem.borrow_mut().phys, Asid(i as u16 + 1)).unwrap();
            fabric
                .iommu_bind_pasid(dev.id, i as u32 + 1, s.table)
                .unwrap();
            spaces.push(s);
        }
        for (i, q) in queues.iter().enumerate() {
            dev.borrow_mut().configure_wq(i, *q).unwrap();
        }
        Rig {
            sim,
            mem,
            fabric,
            dev,
            portal,
            procs: spaces,
        }
    }

    /// Map `pages` fresh pages at `va` in process `p`.
    fn map(&self, p: usize, va: u64, pages: u64) {
        let mut m = self.mem.borrow_mut();
        let frames = m.phys.alloc(pages * PAGE_BYTES, PAGE_BYTES).unwrap();
        for i in 0..pages {
            self.procs[p]
                .table
                .map(
                    &mut m.phys,
                    VirtAddr(va + i * PAGE_BYTES),
                    frames.base.offset(i * PAGE_BYTES),
                    PageSize::Base,
                    Perms::USER_RW,
                )
                .unwrap();
        }
    }

    fn write(&self, p: usize, va: u64, data: &[u8]) {
        let mut m = self.mem.borrow_mut();
        self.procs[p]
            .write(&mut m.phys, VirtAddr(va), data, true)
            .unwrap();
    }

    fn read(&self, p: usize, va: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.procs[p]
            .read(&self.mem.borrow().phys, VirtAddr(va), &mut b, true)
            .unwrap();
        b
    }

    fn record(&self, p: usize, va: u64) -> Record<Vec<u8>> {
        Record::new(self.read(p, va, RECORD_BYTES)).unwrap()
    }

    /// MOVDIR64B to queue `wq`.
    fn movdir64b(&self, wq: usize, desc: &[u8; DESCRIPTOR_BYTES]) {
        self.fabric
            .cpu_mmio_write(
                0,
                PhysAddr(self.portal + wq as u64 * PAGE_BYTES),
                desc,
                "descriptor",
            )
            .unwrap();
    }

    /// ENQCMD to queue `wq` from a thread of PASID `pasid`.
    fn enqcmd(&self, wq: usize, desc: &[u8; DESCRIPTOR_BYTES], pasid: u32) -> Rc<Mailbox<bool>> {
        let mut d = *desc;
        enqcmd_stamp(&mut d, pasid);
        self.fabric
            .cpu_enqcmd(
                0,
                PhysAddr(self.portal + wq as u64 * PAGE_BYTES),
                &d,
                "descriptor",
            )
            .unwrap()
    }

    fn counters(&self) -> Counters {
        self.dev.borrow().counters().clone()
    }
}

fn desc(op: u8, fl: u32, src: u64, dst: u64, size: u32, record: u64) -> [u8; DESCRIPTOR_BYTES] {
    let mut d = Descriptor::new([0u8; DESCRIPTOR_BYTES]).unwrap();
    d.set_op(op, fl | flags::CRAV | flags::RCR);
    d.set_src(src);
    d.set_dst(dst);
    d.set_xfer_size(size);
    d.set_completion_addr(record);
    d.into_inner()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// Every accepted descriptor (and every batch member) ended in exactly one
/// outcome.
fn conserved(c: &Counters) {
    let outcomes = c.get("completed") + c.sum_prefix("faulted.") + c.sum_prefix("rejected.");
    assert_eq!(
        c.get("accepted") + c.get("batch_descriptors"),
        outcomes,
        "conservation: {c:?}"
    );
    assert_eq!(c.get("started"), outcomes, "{c:?}");
    assert_eq!(
        c.get("portal_writes"),
        c.get("accepted") + c.get("retry") + c.sum_prefix("drop."),
        "{c:?}"
    );
}

const SRC: u64 = VA;
const DST: u64 = VA + 0x10_0000;
const REC: u64 = VA + 0x20_0000;

#[test]
fn copies_fills_compares_and_crcs_real_bytes_across_pages() {
    let r = Rig::new(1, &[WqConfig::dedicated(Some(1))]);
    r.map(0, SRC, 4);
    r.map(0, DST, 4);
    r.map(0, REC, 1);
    let data = pattern(3 * 4096 + 100, 7);
    // An unaligned source across four pages.
    r.write(0, SRC + 50, &data);
    r.movdir64b(
        0,
        &desc(
            opcode::MEMMOVE,
            0,
            SRC + 50,
            DST + 3,
            data.len() as u32,
            REC,
        ),
    );
    let mut fill = desc(opcode::MEMFILL, 0, 0, DST + 0x3100, 1000, REC + 32);
    Descriptor::new(&mut fill[..])
        .unwrap()
        .set_src(0x1122_3344_5566_7788);
    r.movdir64b(0, &fill);
    r.movdir64b(
        0,
        &desc(opcode::CRCGEN, 0, SRC + 50, 0, data.len() as u32, REC + 64),
    );
    r.sim.run();
    // Compare the copy with its source (equal), then with a changed byte.
    r.movdir64b(
        0,
        &desc(
            opcode::COMPARE,
            0,
            SRC + 50,
            DST + 3,
            data.len() as u32,
            REC + 96,
        ),
    );
    r.sim.run();
    r.write(0, DST + 3 + 5000, &[0xff]);
    r.movdir64b(
        0,
        &desc(
            opcode::COMPARE,
            0,
            SRC + 50,
            DST + 3,
            data.len() as u32,
            REC + 128,
        ),
    );
    r.sim.run();

    let copy = r.read(0, DST + 3, data.len());
    let mut expect = data.clone();
    expect[5000] = 0xff;
    assert_eq!(
        copy, expect,
        "the copy is the source (then one byte changed)"
    );
    assert_eq!(
        r.read(0, DST, 3),
        vec![0, 0, 0],
        "nothing before the destination"
    );
    let rec = r.record(0, REC);
    assert_eq!(
        (rec.status(), rec.bytes_completed()),
        (status::SUCCESS, data.len() as u32)
    );
    let filled = r.read(0, DST + 0x3100, 1000);
    assert_eq!(filled, ops::fill_bytes(0x1122_3344_5566_7788, 0, 1000));
    assert_eq!(filled[0], 0x88);
    let crc = r.record(0, REC + 64);
    assert_eq!(crc.status(), status::SUCCESS);
    assert_eq!(crc.crc(), ops::crc32c(0, &data));
    let eq = r.record(0, REC + 96);
    assert_eq!((eq.status(), eq.result()), (status::SUCCESS, 0));
    let ne = r.record(0, REC + 128);
    assert_eq!(
        (ne.status(), ne.result(), ne.bytes_completed()),
        (status::SUCCESS, 1, 5000)
    );
    let c = r.counters();
    assert_eq!(c.get("completed"), 5);
    conserved(&c);
    assert_eq!(r.dev.borrow().in_flight(), 0);
    assert_eq!(r.fabric.counters().sum_prefix("drop."), 0);
}

#[test]
fn a_page_fault_completes_partially_and_the_rest_resumes() {
    let r = Rig::new(1, &[WqConfig::dedicated(Some(1))]);
    r.map(0, SRC, 3);
    r.map(0, DST, 2); // the third destination page is missing
    r.map(0, REC, 1);
    let data = pattern(3 * 4096, 3);
    r.write(0, SRC, &data);
    r.movdir64b(
        0,
        &desc(opcode::MEMMOVE, 0, SRC, DST, data.len() as u32, REC),
    );
    r.sim.run();
    let rec = r.record(0, REC);
    assert_eq!(rec.status(), status::PAGE_FAULT);
    assert_eq!(rec.bytes_completed(), 8192);
    assert_eq!(rec.fault_addr(), DST + 8192);
    assert_eq!(r.read(0, DST, 8192), data[..8192].to_vec());
    // Software maps the page and resubmits the rest.
    r.map(0, DST + 8192, 1);
    let done = rec.bytes_completed() as u64;
    r.movdir64b(
        0,
        &desc(
            opcode::MEMMOVE,
            0,
            SRC + done,
            DST + done,
            (data.len() as u64 - done) as u32,
            REC + 32,
        ),
    );
    r.sim.run();
    assert_eq!(r.record(0, REC + 32).status(), status::SUCCESS);
    assert_eq!(r.read(0, DST, data.len()), data);
    let c = r.counters();
    assert_eq!((c.get("completed"), c.get("faulted.page_fault")), (1, 1));
    conserved(&c);
}

#[test]
fn batches_run_their_descriptors_and_report_how_many_succeeded() {
    let r = Rig::new(1, &[WqConfig::dedicated(Some(1))]);
    r.map(0, SRC, 2);
    r.map(0, DST, 2);
    r.map(0, REC, 1);
    let list = VA + 0x30_0000;
    r.map(0, list, 1);
    let data = pattern(2048, 9);
    r.write(0, SRC, &data);
    let members = [
        desc(opcode::MEMMOVE, 0, SRC, DST, 1024, REC + 32),
        desc(0x7f, 0, 0, 0, 8, REC + 64), // no such opcode
        desc(
            opcode::MEMMOVE,
            flags::FENCE,
            SRC + 1024,
            DST + 1024,
            1024,
            REC + 96,
        ),
    ];
    let bytes: Vec<u8> = members.iter().flatten().copied().collect();
    r.write(0, list, &bytes);
    r.movdir64b(0, &desc(opcode::BATCH, 0, list, 0, 3, REC));
    r.sim.run();
    assert_eq!(r.read(0, DST, 2048), data);
    let b = r.record(0, REC);
    assert_eq!((b.status(), b.bytes_completed()), (status::BATCH_FAIL, 2));
    assert_eq!(r.record(0, REC + 32).status(), status::SUCCESS);
    assert_eq!(r.record(0, REC + 64).status(), status::BAD_OPCODE);
    assert_eq!(r.record(0, REC + 96).status(), status::SUCCESS);
    let c = r.counters();
    assert_eq!(c.get("batch_descriptors"), 3);
    assert_eq!(c.get("rejected.bad_opcode"), 1);
    assert_eq!(c.get("faulted.batch"), 1);
    conserved(&c);
}

#[test]
fn bad_descriptors_are_rejected_with_a_reason_and_move_nothing() {
    let r = Rig::new(1, &[WqConfig::dedicated(Some(1))]);
    r.map(0, SRC, 1);
    r.map(0, DST, 1);
    r.map(0, REC, 1);
    r.write(0, SRC, &[0xaa; 64]);
    let cases: [(u8, u32, u32, u64, u8); 5] = [
        (opcode::MEMMOVE, 1 << 23, 64, REC, status::INVALID_FLAGS),
        (opcode::MEMMOVE, 0, 0, REC + 32, status::XFER_ERANGE),
        (opcode::MEMMOVE, 0, 4 << 20, REC + 64, status::XFER_ERANGE),
        (0x42, 0, 64, REC + 96, status::BAD_OPCODE),
        (opcode::BATCH, 0, 1, REC + 128, status::DESC_CNT_ERANGE),
    ];
    for (op, fl, size, rec, _) in cases {
        r.movdir64b(0, &desc(op, fl, SRC, DST, size, rec));
    }
    // A misaligned record address: no record, but still counted.
    r.movdir64b(0, &desc(opcode::MEMMOVE, 0, SRC, DST, 64, REC + 200));
    // Not a descriptor: a short store, a store at a disabled queue's portal.
    r.fabric
        .cpu_mmio_write(0, PhysAddr(r.portal), &[0; 8], "descriptor")
        .unwrap();
    r.movdir64b(3, &desc(opcode::MEMMOVE, 0, SRC, DST, 64, REC));
    r.sim.run();
    for (_, _, _, rec, st) in cases {
        assert_eq!(r.record(0, rec).status(), st);
    }
    assert_eq!(r.read(0, DST, 64), vec![0; 64], "no byte moved");
    let c = r.counters();
    assert_eq!(c.sum_prefix("rejected."), 6);
    assert_eq!(c.get("rejected.record_align"), 1);
    assert_eq!(c.get("drop.bad_portal_write"), 1);
    assert_eq!(c.get("drop.queue_disabled"), 1);
    conserved(&c);
}

#[test]
fn a_full_shared_queue_answers_retry_and_loses_nothing() {
    let mut q = WqConfig::shared();
    q.size = 2;
    let one_engine = UdmaConfig {
        engines: 1,
        ..UdmaConfig::default()
    };
    let r = Rig::with(one_engine, 2, &[q, WqConfig::dedicated(Some(1))]);
    for p in 0..2 {
        r.map(p, SRC, 1);
        r.map(p, DST, 1);
        r.map(p, REC, 1);
        r.write(p, SRC, &pattern(4096, p as u8));
    }
    // Five commands at once from two processes into two entries; the
    // PASID each carries decides whose memory it touches.
    let answers: Vec<_> = (0..5)
        .map(|i| {
            let pasid = 1 + (i % 2) as u32;
            r.enqcmd(0, &desc(opcode::MEMMOVE, 0, SRC, DST, 4096, REC), pasid)
        })
        .collect();
    // A posted write to a shared queue is not a submission.
    r.movdir64b(0, &desc(opcode::MEMMOVE, 0, SRC, DST, 64, REC));
    r.sim.run();
    let accepted = answers
        .iter()
        .filter(|a| a.try_recv() == Some(true))
        .count() as u64;
    let c = r.counters();
    assert_eq!(c.get("accepted"), accepted);
    assert!(c.get("retry") >= 1, "{c:?}");
    assert_eq!(
        c.get("accepted") + c.get("retry") + c.get("drop.enqcmd_to_dedicated"),
        5
    );
    assert_eq!(c.get("drop.movdir64b_to_shared"), 1);
    for p in 0..2 {
        if r.record(p, REC).status() == status::SUCCESS {
            assert_eq!(
                r.read(p, DST, 4096),
                pattern(4096, p as u8),
                "own bytes only"
            );
        }
    }
    // ENQCMD to a dedicated queue is refused, not queued.
    let a = r.enqcmd(1, &desc(opcode::MEMMOVE, 0, SRC, DST, 64, REC), 1);
    r.sim.run_until(r.sim.now() + Duration::from_us(1));
    assert_eq!(a.try_recv(), Some(false));
    conserved(&r.counters());
}

#[test]
fn capabilities_are_checked_like_a_hostile_process_would_probe_them() {
    // Process 0 (PASID 1) copies from process 1 (PASID 2) with a
    // capability for one page of it; process 2 (PASID 3) is hostile.
    let r = Rig::new(3, &[WqConfig::shared()]);
    for p in 0..3 {
        r.map(p, SRC, 2);
        r.map(p, DST, 2);
        r.map(p, REC, 1);
    }
    let secret = pattern(8192, 0x5a);
    r.write(1, SRC, &secret);
    let cap = r
        .dev
        .borrow_mut()
        .grant(Capability {
            owner: 1,
            space: Space::Pasid(2),
            base: SRC,
            len: 4096,
            read: true,
            write: false,
        })
        .unwrap();
    let cap_copy = |off: u64, size: u32, handle: u32, rec: u64| {
        let mut d = desc(opcode::MEMMOVE, flags::SRC_CAP, off, DST, size, rec);
        Descriptor::new(&mut d[..]).unwrap().set_src_cap(handle);
        d
    };
    // The owner's use succeeds.
    r.enqcmd(0, &cap_copy(0, 4096, cap, REC), 1);
    r.sim.run();
    assert_eq!(r.record(0, REC).status(), status::SUCCESS);
    assert_eq!(r.read(0, DST, 4096), secret[..4096].to_vec());
    // The hostile process: the same handle (not its own), a forged one, a
    // range past the window, a write through a read-only capability.
    r.enqcmd(0, &cap_copy(0, 64, cap, REC), 3);
    r.enqcmd(0, &cap_copy(0, 64, cap ^ 0x0001_0000, REC + 32), 3);
    r.enqcmd(0, &cap_copy(0, 64, 0xffff_ffff, REC + 64), 3);
    r.enqcmd(0, &cap_copy(4000, 200, cap, REC + 32), 1);
    let mut wr = desc(opcode::MEMMOVE, flags::DST_CAP, DST, 0, 64, REC + 64);
    Descriptor::new(&mut wr[..]).unwrap().set_dst_cap(cap);
    r.enqcmd(0, &wr, 1);
    r.sim.run();
    let hostile = 2;
    for rec in [REC, REC + 32, REC + 64] {
        assert_eq!(r.record(hostile, rec).status(), status::CAPABILITY);
        // The owner's own misuses are refused too.
        assert_eq!(r.record(0, rec).status() == status::CAPABILITY, rec != REC);
    }
    assert_eq!(
        r.read(hostile, DST, 64),
        vec![0; 64],
        "the hostile process got nothing"
    );
    assert_eq!(r.read(1, SRC, 8192), secret, "the target is untouched");
    // Revoked: the next descriptor faults, stale.
    assert!(r.dev.borrow_mut().revoke(cap));
    r.write(0, DST, &[0; 4096]);
    r.enqcmd(0, &cap_copy(0, 64, cap, REC), 1);
    r.sim.run();
    assert_eq!(r.record(0, REC).status(), status::CAPABILITY);
    assert_eq!(r.read(0, DST, 64), vec![0; 64]);
    let c = r.counters();
    assert_eq!(c.get("faulted.capability.not_owner"), 1);
    assert_eq!(c.get("faulted.capability.forged"), 2);
    assert_eq!(c.get("faulted.capability.out_of_range"), 1);
    assert_eq!(c.get("faulted.capability.permission"), 1);
    assert_eq!(c.get("faulted.capability.stale"), 1);
    conserved(&c);
}

#[test]
fn a_process_cannot_reach_memory_it_did_not_map() {
    // Dedicated queue of PASID 1; the address belongs to process 2 only.
    let r = Rig::new(2, &[WqConfig::dedicated(Some(1))]);
    r.map(0, REC, 1);
    r.map(0, DST, 1);
    r.map(1, SRC + 0x4000, 1);
    r.write(1, SRC + 0x4000, &[0x77; 64]);
    r.movdir64b(0, &desc(opcode::MEMMOVE, 0, SRC + 0x4000, DST, 64, REC));
    r.sim.run();
    let rec = r.record(0, REC);
    assert_eq!(
        (rec.status(), rec.bytes_completed()),
        (status::PAGE_FAULT, 0)
    );
    assert_eq!(r.read(0, DST, 64), vec![0; 64]);
    conserved(&r.counters());
}

#[test]
fn the_same_run_gives_the_same_bytes_counters_and_time() {
    let run = || {
        let r = Rig::new(1, &[WqConfig::dedicated(Some(1))]);
        r.map(0, SRC, 16);
        r.map(0, DST, 16);
        r.map(0, REC, 1);
        r.write(0, SRC, &pattern(65536, 1));
        for i in 0..8u64 {
            r.movdir64b(
                0,
                &desc(
                    opcode::MEMMOVE,
                    0,
                    SRC + i * 8192,
                    DST + i * 8192,
                    8192,
                    REC + i * 32,
                ),
            );
        }
        r.sim.run();
        (
            r.counters(),
            r.read(0, DST, 65536),
            r.sim.now(),
            r.sim.events(),
        )
    };
    let a = run();
    assert_eq!(a.1, pattern(65536, 1));
    assert_eq!(a, run());
    assert!(a.2.ps() > Duration::from_ns(500).ps());
}

/// One 256 KiB copy and a CRC of it (two engines at once) under `read_buffers`:
/// when it ends, and the engine's counters.
fn copy_with_buffers(read_buffers: u32) -> (u64, Counters, u64) {
    let mut cfg = UdmaConfig::default();
    cfg.datapath.read_buffers = read_buffers;
    let r = Rig::with(cfg, 1, &[WqConfig::dedicated(Some(1))]);
    let pages = 64;
    r.map(0, SRC, pages);
    r.map(0, DST, pages);
    r.map(0, REC, 1);
    let len = (pages * PAGE_BYTES) as usize;
    let data = pattern(len, 3);
    r.write(0, SRC, &data);
    r.movdir64b(0, &desc(opcode::MEMMOVE, 0, SRC, DST, len as u32, REC));
    r.movdir64b(0, &desc(opcode::CRCGEN, 0, SRC, 0, len as u32, REC + 32));
    r.sim.run();
    assert_eq!(r.record(0, REC).status(), status::SUCCESS);
    assert_eq!(r.read(0, DST, len), data, "the copy's bytes");
    let crc = r.record(0, REC + 32);
    assert_eq!(crc.status(), status::SUCCESS);
    assert_eq!(
        crc.crc(),
        ops::crc32c(0, &data),
        "the CRC over every piece, in order"
    );
    assert_eq!(
        r.dev.borrow().free_read_buffers(),
        read_buffers as u64,
        "every read buffer taken was given back"
    );
    let c = r.counters();
    conserved(&c);
    (r.sim.now().ps(), c, len as u64)
}

#[test]
fn the_datapath_conserves_bytes_and_buffers_and_more_buffers_are_never_slower() {
    let mut last = u64::MAX;
    let mut first = None;
    for buffers in [16, 32, 96, 384] {
        let (end_ps, c, len) = copy_with_buffers(buffers);
        // The copy reads and writes its bytes once; the CRC reads them once.
        assert_eq!(c.get("datapath.read_bytes"), 2 * len, "{c:?}");
        assert_eq!(c.get("datapath.write_bytes"), len, "{c:?}");
        assert!(
            end_ps <= last,
            "{buffers} read buffers finished at {end_ps} ps, after {last} ps with fewer"
        );
        last = end_ps;
        first.get_or_insert(end_ps);
    }
    // The buffers are what bounds a copy: 24 times as many finish sooner.
    assert!(
        first > Some(last),
        "buffers did not bind: {first:?} vs {last}"
    );
    // Too few buffers for a compare's two requests: a configuration error.
    let mut cfg = UdmaConfig::default();
    cfg.datapath.read_buffers = 8;
    assert!(Udma::new(cfg, SimRng::new(1)).is_err());
}
