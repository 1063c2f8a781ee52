//! Address spaces attacked the way a hostile process would: it cannot
//! read or write another process's pages, the kernel's direct map, or
//! memory it never mapped; a device reaches a process's DMA buffer and
//! nothing else; register pages are reached only by MMIO.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Category, Counters, Sim};
use nextio_hw::device::{BarSpec, Device, DeviceCtx, DmaFault, Requester};
use nextio_hw::machine::MachineSpec;
use nextio_hw::mem::{AccessError, FaultKind, VirtAddr};
use nextio_os::kernel::DIRECT_MAP_BASE;
use nextio_os::{Host, OsCosts};

/// Register writes a device saw: (offset, bytes).
type WriteLog = Rc<RefCell<Vec<(u64, Vec<u8>)>>>;

struct Regs {
    writes: WriteLog,
    faults: Rc<RefCell<Vec<DmaFault>>>,
    counters: Counters,
}

impl Device for Regs {
    fn name(&self) -> &'static str {
        "regs"
    }
    fn bars(&self) -> Vec<BarSpec> {
        vec![BarSpec::new(16 << 10)]
    }
    fn bar_write(&mut self, _: &mut DeviceCtx<'_>, _: Requester, _: u8, offset: u64, data: &[u8]) {
        self.writes.borrow_mut().push((offset, data.to_vec()));
    }
    fn bar_read(
        &mut self,
        _: &mut DeviceCtx<'_>,
        _: Requester,
        _: u8,
        offset: u64,
        out: &mut [u8],
    ) {
        out.fill(offset as u8);
    }
    fn dma_fault(&mut self, _: &mut DeviceCtx<'_>, _: u64, fault: DmaFault) {
        self.faults.borrow_mut().push(fault);
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
}

fn host() -> (Sim, Host) {
    let sim = Sim::new();
    let host = Host::new(&sim, MachineSpec::enso_testbed(2), OsCosts::default()).unwrap();
    (sim, host)
}

#[test]
fn a_process_cannot_touch_another_process_or_the_kernel() {
    let (sim, host) = host();
    let victim = host.create_process().unwrap();
    let attacker = host.create_process().unwrap();
    let secret = victim.mmap(4096, false).unwrap();
    let v = victim.thread(0).unwrap();
    let a = attacker.thread(1).unwrap();
    let done = Rc::new(RefCell::new(Vec::new()));
    let d = done.clone();
    sim.spawn(async move {
        v.ctx
            .store(secret, b"victim's secret", Category::Application)
            .unwrap();
        // The attacker's own page at the same address is its own memory.
        let own = attacker.mmap(4096, false).unwrap();
        assert_eq!(own, secret, "both processes got the same virtual address");
        let mut buf = [0u8; 15];
        a.ctx.load(own, &mut buf, Category::Application).unwrap();
        assert_eq!(buf, [0; 15], "the attacker sees its own zeroed page");
        // Addresses the attacker never mapped fault.
        let e = a
            .ctx
            .load(secret.offset(8192), &mut buf, Category::Application)
            .unwrap_err();
        d.borrow_mut().push(e.clone());
        // The kernel's direct map covers the victim's frame, but a
        // process's tables hold no kernel mappings (as with kernel
        // page-table isolation).
        let e = a
            .ctx
            .store(VirtAddr(DIRECT_MAP_BASE), b"x", Category::Application)
            .unwrap_err();
        d.borrow_mut().push(e);
        // The victim's bytes are intact.
        let mut back = [0u8; 15];
        v.ctx
            .load(secret, &mut back, Category::Application)
            .unwrap();
        assert_eq!(&back, b"victim's secret");
    });
    sim.run();
    let errs = done.borrow();
    assert!(matches!(
        errs[0],
        AccessError::Fault(f) if f.kind == FaultKind::NotMapped
    ));
    assert!(matches!(
        errs[1],
        AccessError::Fault(f) if f.kind == FaultKind::NotMapped
    ));
}

#[test]
fn a_device_reaches_its_dma_buffer_and_registers_only_by_mmio() {
    let (sim, host) = host();
    let writes = Rc::new(RefCell::new(Vec::new()));
    let faults = Rc::new(RefCell::new(Vec::new()));
    let dev = host
        .attach_nic(Regs {
            writes: writes.clone(),
            faults: faults.clone(),
            counters: Counters::new(),
        })
        .unwrap();
    let p = host.create_process().unwrap();
    let other = host.create_process().unwrap();
    let buf = p.dma_alloc(dev.id, 4096).unwrap();
    let not_for_device = other.mmap(4096, true).unwrap();
    let other_frame = host
        .machine()
        .memory()
        .borrow()
        .physical_ranges(
            &host.kernel().borrow().space(other.pid()).unwrap(),
            not_for_device,
            8,
        )
        .unwrap()[0]
        .0;
    let regs = p.map_bar(dev.id, 0, 4096, 4096).unwrap();
    let t = p.thread(0).unwrap();
    let fabric = host.machine().fabric().clone();
    // The device writes the buffer at the address the process knows it by.
    fabric.act(&dev, |_, cx| {
        cx.dma_write(buf.iova, b"from the device", "test", 1)
            .unwrap();
        // Past the buffer, and another process's frame by its physical
        // address: neither is in the device's domain.
        cx.dma_write(buf.iova + buf.len, b"stray", "test", 2)
            .unwrap();
        cx.dma_write(other_frame.0, b"stray", "test", 3).unwrap();
    });
    let ctx = t.ctx.clone();
    sim.spawn(async move {
        ctx.sync().await;
        ctx.sim().sleep(nextio_engine::Duration::from_us(2)).await;
        let mut got = [0u8; 15];
        ctx.load(buf.va, &mut got, Category::Application).unwrap();
        assert_eq!(&got, b"from the device");
        // A plain store to a register page is refused; MMIO reaches it.
        assert!(matches!(
            ctx.store(regs, &[1, 2, 3, 4], Category::Driver),
            Err(AccessError::Mmio(_))
        ));
        ctx.mmio_write(regs.offset(0x10), &7u32.to_le_bytes(), "doorbell")
            .await
            .unwrap();
        let v = ctx
            .mmio_read(regs.offset(0x20), 4, "register", Category::Driver)
            .await
            .unwrap();
        assert_eq!(
            v,
            vec![0x20; 4],
            "offset 4096 + 0x20 is the device's 0x1020"
        );
        // MMIO to ordinary memory is refused too.
        assert!(ctx.mmio_write(buf.va, &[0; 4], "x").await.is_err());
    });
    sim.run();
    assert_eq!(
        writes.borrow().as_slice(),
        &[(0x1010, 7u32.to_le_bytes().to_vec())]
    );
    assert_eq!(faults.borrow().len(), 2, "both stray writes faulted");
    let mut stray = [0u8; 5];
    other
        .host()
        .kernel()
        .borrow()
        .space(other.pid())
        .unwrap()
        .read(
            &host.machine().memory().borrow().phys,
            not_for_device,
            &mut stray,
            true,
        )
        .unwrap();
    assert_eq!(stray, [0; 5], "no byte of the stray write landed");
}
