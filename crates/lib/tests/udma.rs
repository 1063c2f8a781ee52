//! The user-space DMA engine from user space on a whole host: copies by
//! portal store with no system call, the kernel-mediated path, and a
//! hostile process attacking portals, PASIDs and capabilities.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Sim, SimRng};
use nextio_hw::device::Device;
use nextio_hw::devices::udma::UdmaConfig;
use nextio_hw::devices::udma::layout::{Descriptor, flags, opcode, status};
use nextio_hw::machine::MachineSpec;
use nextio_hw::mem::VirtAddr;
use nextio_lib::udma::{KernelPath, UdmaQueue, descriptor};
use nextio_os::udma::{UdmaCosts, UdmaDriver};
use nextio_os::{Host, OsCosts};

fn host(sim: &Sim) -> (Host, UdmaDriver) {
    let h = Host::new(sim, MachineSpec::ice_lake_sp(2), OsCosts::default()).unwrap();
    let d = UdmaDriver::attach(&h, UdmaConfig::default(), SimRng::new(3)).unwrap();
    (h, d)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

#[test]
fn a_process_copies_by_portal_store_and_by_system_call() {
    let sim = Sim::new();
    let (h, drv) = host(&sim);
    let p = h.create_process().unwrap();
    let portal = drv.open_dedicated(&p, 0).unwrap();
    let t = p.thread(0).unwrap();
    let src = p.mmap(64 << 10, false).unwrap();
    let dst = p.mmap(64 << 10, false).unwrap();
    let data = pattern(40_000, 5);
    t.ctx.poke(src, &data).unwrap();
    let kernel = KernelPath::new(&drv, 1, OsCosts::default(), UdmaCosts::at_mhz(3100)).unwrap();
    let out = Rc::new(RefCell::new(Vec::new()));
    let o = out.clone();
    let ctx = t.ctx.clone();
    let p2 = p.clone();
    sim.spawn(async move {
        let mut q = UdmaQueue::new(&p2, ctx.clone(), portal, 4).unwrap();
        let r = q.memcpy(dst, src, 40_000).await.unwrap();
        o.borrow_mut().push(r.status());
        let r = q
            .memset(dst.offset(60_000), 0x0101_0101_0101_0101, 1000)
            .await
            .unwrap();
        o.borrow_mut().push(r.status());
        let r = kernel
            .memcpy(&ctx, &p2, dst.offset(0x8000), src, 20_000)
            .await
            .unwrap();
        o.borrow_mut().push(r.status());
    });
    sim.run();
    assert_eq!(*out.borrow(), vec![status::SUCCESS; 3]);
    let mut got = vec![0u8; 40_000];
    t.ctx.peek(dst, &mut got[..0x8000]).unwrap();
    t.ctx.peek(dst.offset(0x8000), &mut got[0x8000..]).unwrap();
    // The kernel path overwrote from 0x8000 with the source's start.
    assert_eq!(&got[..0x8000], &data[..0x8000]);
    assert_eq!(&got[0x8000..], &data[..40_000 - 0x8000]);
    let mut f = vec![0u8; 1000];
    t.ctx.peek(dst.offset(60_000), &mut f).unwrap();
    assert_eq!(f, vec![1u8; 1000]);
    let c = drv.device().borrow().counters().clone();
    assert_eq!(c.get("completed"), 3);
    assert_eq!(h.machine().fabric().counters().sum_prefix("drop."), 0);
}

#[test]
fn a_hostile_process_reaches_nothing_it_was_not_given() {
    let sim = Sim::new();
    let (h, drv) = host(&sim);
    let victim = h.create_process().unwrap();
    let evil = h.create_process().unwrap();
    let vportal = drv.open_dedicated(&victim, 0).unwrap();
    // The attacker's own memory lies where the victim's portal is in the
    // victim's address space (both lay out from the same base).
    let loot = evil.mmap(8192, false).unwrap();
    let erec = evil.mmap(4096, false).unwrap();
    let eportal = drv.open_shared(&evil, 1).unwrap();
    // The victim's dedicated queue is not the attacker's to take.
    assert!(drv.open_dedicated(&evil, 0).is_err());
    let vt = victim.thread(0).unwrap();
    let et = evil.thread(1).unwrap();
    // Padding, so the secret's address is unmapped in the attacker.
    victim.mmap(1 << 20, false).unwrap();
    let secret = victim.mmap(8192, false).unwrap();
    vt.ctx.poke(secret, &pattern(8192, 0x42)).unwrap();
    let vdst = victim.mmap(8192, false).unwrap();
    let results = Rc::new(RefCell::new(Vec::new()));
    let r = results.clone();
    let ectx = et.ctx.clone();
    let e2 = evil.clone();
    let v2 = victim.clone();
    let d2 = drv.clone();
    let vctx = vt.ctx.clone();
    sim.spawn(async move {
        // 1. The victim's portal address is ordinary memory in the
        //    attacker's address space: the MMIO store is refused before
        //    anything is sent.
        let d = descriptor(opcode::MEMMOVE, 0, secret.0, loot.0, 64, erec.0);
        let ok = ectx.mmio_write(vportal.va, &d, "x").await.is_err();
        r.borrow_mut().push(("foreign portal", ok));
        // 2. A forged PASID (the victim's) in its own ENQCMD: the CPU
        //    stamps the attacker's, so the victim's address faults.
        let mut forged = d;
        Descriptor::new(&mut forged[..]).unwrap().set_pasid(1);
        let mut q = UdmaQueue::new(&e2, ectx.clone(), eportal, 2).unwrap();
        q.clear(0).unwrap();
        let mut f2 = descriptor(opcode::MEMMOVE, 0, secret.0, loot.0, 64, q.record_va(0).0);
        Descriptor::new(&mut f2[..]).unwrap().set_pasid(1);
        q.submit(&f2).await.unwrap();
        let rec = q.wait(0).await.unwrap();
        r.borrow_mut().push((
            "forged pasid faults",
            rec.status() == status::PAGE_FAULT && rec.bytes_completed() == 0,
        ));
        // 3. A capability the victim grants, used, then revoked.
        let cap = d2.grant(&v2, &e2, secret, 4096, true, false).unwrap();
        let mut c = descriptor(
            opcode::MEMMOVE,
            flags::SRC_CAP,
            0,
            loot.0,
            4096,
            q.record_va(1).0,
        );
        Descriptor::new(&mut c[..]).unwrap().set_src_cap(cap);
        q.clear(1).unwrap();
        q.submit(&c).await.unwrap();
        let ok = q.wait(1).await.unwrap().status() == status::SUCCESS;
        r.borrow_mut().push(("granted copy", ok));
        // The attacker cannot revoke (or extend) what it does not own.
        r.borrow_mut()
            .push(("revoke by grantee refused", d2.revoke(&e2, cap).is_err()));
        d2.revoke(&v2, cap).unwrap();
        q.clear(1).unwrap();
        let mut c2 = descriptor(
            opcode::MEMMOVE,
            flags::SRC_CAP,
            4096,
            loot.0 + 4096,
            64,
            q.record_va(1).0,
        );
        Descriptor::new(&mut c2[..]).unwrap().set_src_cap(cap);
        q.submit(&c2).await.unwrap();
        let ok = q.wait(1).await.unwrap().status() == status::CAPABILITY;
        r.borrow_mut().push(("revoked", ok));
        // 4. Writing through a read-only grant, into the victim.
        let cap = d2.grant(&v2, &e2, vdst, 4096, true, false).unwrap();
        let mut w = descriptor(
            opcode::MEMMOVE,
            flags::DST_CAP,
            loot.0,
            0,
            64,
            q.record_va(1).0,
        );
        Descriptor::new(&mut w[..]).unwrap().set_dst_cap(cap);
        q.clear(1).unwrap();
        q.submit(&w).await.unwrap();
        let ok = q.wait(1).await.unwrap().status() == status::CAPABILITY;
        r.borrow_mut().push(("read-only", ok));
        let _ = vctx;
    });
    sim.run();
    for (what, ok) in results.borrow().iter() {
        assert!(*ok, "{what}");
    }
    assert_eq!(results.borrow().len(), 6);
    let mut got = vec![0u8; 8192];
    et.ctx.peek(loot, &mut got).unwrap();
    assert_eq!(
        &got[..4096],
        &pattern(8192, 0x42)[..4096],
        "exactly the granted page"
    );
    assert_eq!(&got[4096..], &[0u8; 4096][..], "nothing after revocation");
    let mut v = vec![0u8; 8192];
    vt.ctx.peek(vdst, &mut v).unwrap();
    assert_eq!(v, vec![0u8; 8192], "the victim's memory was not written");
    let c = drv.device().borrow().counters().clone();
    assert_eq!(
        c.get("accepted"),
        c.get("completed") + c.sum_prefix("faulted.") + c.sum_prefix("rejected.")
    );
    let _ = VirtAddr(0);
}
