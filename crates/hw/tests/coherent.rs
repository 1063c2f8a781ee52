//! The coherent link seen from a core and from a home: a miss waits for
//! the home (which may hold it), a hit does not ask again, an invalidation
//! drops the chip's copies from every cache, a clean-invalidate brings a
//! core's store back to the home, an unanswered load ends in a bus error,
//! and ordinary accesses to device-homed memory are refused.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Category, Counters, Duration, Sim, Time};
use nextio_hw::coherent::{
    ChipState, CoherentError, CoherentHome, Grant, HomeEvent, HomePort, HomeWindow, Intent,
    Invalidate, LineRequest,
};
use nextio_hw::cpu::CoreCtx;
use nextio_hw::device::{BarSpec, Device, DeviceCtx, Requester};
use nextio_hw::fabric::{Attach, DeviceLink};
use nextio_hw::machine::{Machine, MachineSpec};
use nextio_hw::mem::{AccessError, AddressSpace, Asid, PageSize, Perms, PhysAddr, VirtAddr};
use nextio_hw::memory::Privilege;

/// A home that keeps its lines' bytes, answers reads after `hold` (or
/// never, if `None`), and records what it saw.
struct ToyHome {
    port: Option<HomePort>,
    window: Option<HomeWindow>,
    lines: std::collections::BTreeMap<u64, Vec<u8>>,
    hold: Option<Duration>,
    held: Vec<LineRequest>,
    seen: Rc<RefCell<Vec<(Time, HomeEvent)>>>,
    counters: Counters,
}

const HOLD_TOKEN: u64 = 1;

impl Device for ToyHome {
    fn name(&self) -> &'static str {
        "toy-home"
    }
    fn bars(&self) -> Vec<BarSpec> {
        vec![]
    }
    fn bar_write(&mut self, _: &mut DeviceCtx<'_>, _: Requester, _: u8, _: u64, _: &[u8]) {}
    fn bar_read(&mut self, _: &mut DeviceCtx<'_>, _: Requester, _: u8, _: u64, _: &mut [u8]) {}
    fn timer(&mut self, _cx: &mut DeviceCtx<'_>, _token: u64) {
        for r in std::mem::take(&mut self.held) {
            self.answer(r);
        }
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl ToyHome {
    fn answer(&mut self, r: LineRequest) {
        let port = self.port.as_ref().unwrap();
        let lb = port.line_bytes() as usize;
        let data = self
            .lines
            .get(&r.offset)
            .cloned()
            .unwrap_or_else(|| vec![r.offset as u8; lb]);
        let grant = match r.intent {
            Intent::Read => Grant::Shared,
            Intent::Write => Grant::Exclusive,
        };
        port.respond(r.id, &data, grant).unwrap();
    }
}

impl CoherentHome for ToyHome {
    fn home_attached(&mut self, port: HomePort, window: HomeWindow) {
        self.port = Some(port);
        self.window = Some(window);
    }
    fn coherent_event(&mut self, cx: &mut DeviceCtx<'_>, event: HomeEvent) {
        self.seen.borrow_mut().push((cx.now(), event.clone()));
        match event {
            HomeEvent::Request(r) => match self.hold {
                Some(d) if d == Duration::ZERO => self.answer(r),
                Some(d) => {
                    self.held.push(r);
                    cx.set_timer(d, HOLD_TOKEN);
                }
                None => {}
            },
            HomeEvent::Invalidated { line, data, .. } => {
                if let Some(d) = data {
                    let off = self.window.unwrap().offset_of(line);
                    self.lines.insert(off, d);
                }
            }
            HomeEvent::WrittenBack { .. } => {}
        }
    }
}

struct Rig {
    sim: Sim,
    machine: Machine,
    home: nextio_hw::fabric::DeviceHandle<ToyHome>,
    window: HomeWindow,
    ctx: CoreCtx,
    va: VirtAddr,
    seen: Rc<RefCell<Vec<(Time, HomeEvent)>>>,
}

/// An Enzian machine with the toy home, its window mapped cacheable at a
/// user address in core 0's address space.
fn rig(hold: Option<Duration>) -> Rig {
    let sim = Sim::new();
    let machine = Machine::new(&sim, MachineSpec::enzian(2)).unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (home, window) = machine
        .attach_coherent(
            ToyHome {
                port: None,
                window: None,
                lines: Default::default(),
                hold,
                held: vec![],
                seen: seen.clone(),
                counters: Counters::new(),
            },
            Attach::RootPort,
            DeviceLink::default(),
            1 << 20,
        )
        .unwrap();
    let va = VirtAddr(0x10_0000_0000);
    let space = {
        let mut m = machine.memory().borrow_mut();
        let space = AddressSpace::new(&mut m.phys, Asid(1)).unwrap();
        space
            .table
            .map_range(
                &mut m.phys,
                va,
                window.base,
                1 << 20,
                PageSize::Base,
                Perms::USER_RW,
            )
            .unwrap();
        space
    };
    machine.core(0).unwrap().set_space(space, Privilege::User);
    let ctx = machine.ctx(0).unwrap();
    Rig {
        sim,
        machine,
        home,
        window,
        ctx,
        va,
        seen,
    }
}

fn requests(seen: &[(Time, HomeEvent)]) -> usize {
    seen.iter()
        .filter(|(_, e)| matches!(e, HomeEvent::Request(_)))
        .count()
}

#[test]
fn a_miss_asks_the_home_and_a_hit_does_not() {
    let r = rig(Some(Duration::ZERO));
    let coh = r.machine.coherent().unwrap();
    let (ctx, va) = (r.ctx.clone(), r.va);
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let c = coh.clone();
    r.sim.spawn(async move {
        let mut b = [0u8; 8];
        // Warm the TLB with another line of the page: its walk misses
        // in every cache (four DRAM reads).
        c.load(&ctx, va.offset(1024), &mut b, Category::Driver)
            .await
            .unwrap();
        let start = ctx.local_now();
        c.load(&ctx, va.offset(128), &mut b, Category::Driver)
            .await
            .unwrap();
        g.borrow_mut().push((ctx.local_now() - start, b));
        let start = ctx.local_now();
        c.load(&ctx, va.offset(136), &mut b, Category::Driver)
            .await
            .unwrap();
        g.borrow_mut().push((ctx.local_now() - start, b));
    });
    r.sim.run();
    let got = got.borrow();
    // The home fills the line with its offset (128).
    assert_eq!(got[0].1, [128; 8]);
    assert_eq!(got[1].1, [128; 8]);
    let rtt = got[0].0;
    // Two crossings of ECI, plus serialisation: ≈ 808 ns.
    assert!(
        rtt >= Duration::from_ns(808) && rtt < Duration::from_ns(830),
        "{rtt:?}"
    );
    assert!(got[1].0 < Duration::from_ns(10), "a hit: {:?}", got[1].0);
    assert_eq!(requests(&r.seen.borrow()), 2);
    assert_eq!(coh.chip_state(r.window.base.offset(128)), ChipState::Shared);
    let c = coh.counters();
    assert_eq!((c.get("requests"), c.get("responses")), (2, 2));
}

#[test]
fn a_held_load_returns_when_the_home_answers() {
    let r = rig(Some(Duration::from_us(100)));
    let coh = r.machine.coherent().unwrap();
    let (ctx, va) = (r.ctx.clone(), r.va);
    let done = Rc::new(RefCell::new(None));
    let d = done.clone();
    r.sim.spawn(async move {
        let mut b = [0u8; 4];
        coh.load(&ctx, va, &mut b, Category::Polling).await.unwrap();
        *d.borrow_mut() = Some(ctx.local_now());
    });
    r.sim.run();
    let t = done.borrow().unwrap();
    assert!(t >= Time::ZERO + Duration::from_us(100) + Duration::from_ns(808));
    // The whole wait is the core's, charged as polling.
    let l = r.machine.core(0).unwrap().ledger_at(t);
    assert!(l.get(Category::Polling) >= Duration::from_us(100));
}

#[test]
fn invalidation_drops_every_copy_and_clean_invalidate_returns_stores() {
    let r = rig(Some(Duration::ZERO));
    let coh = r.machine.coherent().unwrap();
    let (ctx, va) = (r.ctx.clone(), r.va);
    let line = r.window.base;
    let port = r.home.borrow().port.clone().unwrap();
    let out = Rc::new(RefCell::new(Vec::new()));
    let (o, s) = (out.clone(), r.sim.clone());
    let c = coh.clone();
    let m = r.machine.memory().clone();
    r.sim.spawn(async move {
        // A store misses, gets the line exclusively and writes it.
        c.store(&ctx, va.offset(4), &[7, 7], Category::Driver)
            .await
            .unwrap();
        assert_eq!(c.chip_state(line), ChipState::Modified);
        assert!(m.borrow().caches.chip_holds(line));
        // The home recalls it with its data.
        port.invalidate(line, Invalidate::Clean, 9).unwrap();
        s.sleep(Duration::from_us(2)).await;
        assert_eq!(c.chip_state(line), ChipState::Invalid);
        assert!(!m.borrow().caches.chip_holds(line), "no cache keeps a copy");
        // The next load misses and sees what the home now holds: the store.
        let mut b = [0u8; 8];
        c.load(&ctx, va, &mut b, Category::Driver).await.unwrap();
        o.borrow_mut().push(b);
    });
    r.sim.run();
    assert_eq!(out.borrow()[0], [0, 0, 0, 0, 7, 7, 0, 0]);
    let seen = r.seen.borrow();
    assert!(seen.iter().any(|(_, e)| matches!(
        e,
        HomeEvent::Invalidated {
            token: 9,
            data: Some(_),
            ..
        }
    )));
    assert_eq!(requests(&seen), 2, "the store's and the second load's");
    assert!(
        r.machine
            .memory()
            .borrow()
            .caches
            .device_stats()
            .snoop_invalidations
            > 0
    );
}

#[test]
fn an_unanswered_load_is_a_bus_error() {
    let r = rig(None);
    let coh = r.machine.coherent().unwrap();
    let (ctx, va) = (r.ctx.clone(), r.va);
    let res = Rc::new(RefCell::new(None));
    let rr = res.clone();
    let c = coh.clone();
    r.sim.spawn(async move {
        let mut b = [0u8; 4];
        *rr.borrow_mut() = Some((
            c.load(&ctx, va, &mut b, Category::Polling).await,
            ctx.local_now(),
        ));
    });
    r.sim.run();
    let (e, t) = res.borrow_mut().take().unwrap();
    assert!(matches!(e, Err(CoherentError::BusError(_))), "{e:?}");
    // The timeout, after the page walk that preceded the request.
    let waited = t - Time::ZERO;
    assert!(
        waited >= Duration::from_ms(50) && waited < Duration::from_ms(50) + Duration::from_us(1)
    );
    let c = coh.counters();
    assert_eq!(
        c.get("requests"),
        c.get("responses") + c.get("bus_errors") + c.get("pending")
    );
    assert_eq!(c.get("bus_errors"), 1);
    // A late answer is refused and counted.
    let id = match r.seen.borrow()[0].1 {
        HomeEvent::Request(q) => q.id,
        _ => unreachable!(),
    };
    let port = r.home.borrow().port.clone().unwrap();
    assert!(port.respond(id, &[0; 128], Grant::Shared).is_err());
    assert_eq!(coh.counters().get("drop.late_response"), 1);
}

#[test]
fn ordinary_accesses_to_homed_memory_are_refused() {
    let r = rig(Some(Duration::ZERO));
    let mut b = [0u8; 8];
    assert!(matches!(
        r.ctx.load(r.va, &mut b, Category::Driver),
        Err(AccessError::DeviceHomed(_))
    ));
    assert!(matches!(
        r.ctx.store(r.va, &b, Category::Driver),
        Err(AccessError::DeviceHomed(_))
    ));
    // An access across two lines is not one coherent access.
    let coh = r.machine.coherent().unwrap();
    let ctx = r.ctx.clone();
    let va = r.va;
    let res = Rc::new(RefCell::new(None));
    let rr = res.clone();
    r.sim.spawn(async move {
        let mut b = [0u8; 16];
        *rr.borrow_mut() = Some(
            coh.load(&ctx, va.offset(120), &mut b, Category::Driver)
                .await,
        );
    });
    r.sim.run();
    assert!(matches!(
        res.borrow_mut().take().unwrap(),
        Err(CoherentError::Access(AccessError::NotHomed(_)))
    ));
    // A home cannot answer for, or invalidate, lines outside its window.
    let port = r.home.borrow().port.clone().unwrap();
    assert!(
        port.invalidate(PhysAddr(0x1000), Invalidate::Discard, 0)
            .is_err()
    );
}

#[test]
fn a_machine_without_a_coherent_link_refuses_homes() {
    let sim = Sim::new();
    let m = Machine::new(&sim, MachineSpec::ice_lake_sp(1)).unwrap();
    let home = ToyHome {
        port: None,
        window: None,
        lines: Default::default(),
        hold: None,
        held: vec![],
        seen: Default::default(),
        counters: Counters::new(),
    };
    assert!(
        m.attach_coherent(home, Attach::RootPort, DeviceLink::default(), 4096)
            .is_err()
    );
}
