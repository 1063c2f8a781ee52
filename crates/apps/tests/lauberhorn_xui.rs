//! Lauberhorn with xUI's tracked interrupt as the signal that calls a
//! retired core back: bursts of calls separated by silences in which the
//! NIC releases idle user loops and retires a core to background work;
//! the next burst calls it back. Every request is delivered exactly once
//! and answered with the right result, whichever signal calls the core
//! back, and the two signals serve the same calls.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use nextio_engine::{Duration, Sim, Time};
use nextio_hw::device::Device as _;
use nextio_hw::interrupt::pipeline::programs;
use nextio_hw::machine::MachineSpec;
use nextio_hw::nic::lauberhorn::LauberhornConfig;
use nextio_hw::oncrpc::{AcceptStat, Reader, XdrValue};
use nextio_lib::lauberhorn::{RpcServer, RuntimeCosts};
use nextio_os::lauberhorn::{CallbackSignal, ComputeBackground, LauberhornOs, LauberhornOsCosts};
use nextio_os::{Host, OsCosts};

mod rpc_common;

const PROG: u32 = 0x2000_0001;

/// Ten bursts of eight outstanding calls, 400 µs apart, with `signal`
/// calling retired cores back: (xid → every result it got), call-backs,
/// the NIC's counters, the server's served count.
fn run(signal: CallbackSignal) -> (BTreeMap<u32, Vec<u64>>, usize, nextio_engine::Counters, u64) {
    let sim = Sim::new();
    let server = Host::new(&sim, MachineSpec::enzian(2), OsCosts::default()).unwrap();
    let cfg = LauberhornConfig {
        cores: 2,
        slots: 2,
        release_idle_loops: true,
        ..LauberhornConfig::default()
    };
    let os = LauberhornOs::attach(&server, cfg.clone(), LauberhornOsCosts::default()).unwrap();
    let p = server.create_process().unwrap();
    let app = RpcServer::register(
        &os,
        &p,
        vec![rpc_common::add_procedure(PROG)],
        RuntimeCosts::default(),
    )
    .unwrap();
    let bg = server.create_process().unwrap();
    os.set_background(
        &bg,
        Rc::new(ComputeBackground::new(programs::linpack(), 20_000)),
    )
    .unwrap();
    os.set_callback_signal(signal);
    os.start();
    let (mut client, _) = rpc_common::client(
        &sim,
        server.machine(),
        os.nic().id,
        (cfg.ip, cfg.rpc_port, cfg.mac),
    );
    let got: Rc<RefCell<BTreeMap<u32, Vec<u64>>>> = Rc::new(RefCell::new(BTreeMap::new()));
    let expect: Rc<RefCell<BTreeMap<u32, u64>>> = Rc::new(RefCell::new(BTreeMap::new()));
    let (g, e, s) = (got.clone(), expect.clone(), sim.clone());
    sim.spawn(async move {
        client.pmd().start().await.unwrap();
        for burst in 0..10u64 {
            for i in 0..8u64 {
                let (a, b) = (burst * 1000 + i, 7 * i + 1);
                let xid = client
                    .send(PROG, 1, 1, &[XdrValue::U64(a), XdrValue::U64(b)])
                    .await
                    .unwrap();
                e.borrow_mut().insert(xid, a + b);
            }
            while client.outstanding() > 0 {
                for r in client.receive(true).await.unwrap() {
                    assert_eq!(r.stat, AcceptStat::Success);
                    let v = Reader::new(&r.results).u64().unwrap();
                    g.borrow_mut().entry(r.xid).or_default().push(v);
                }
            }
            s.sleep(Duration::from_us(400)).await;
        }
    });
    sim.run_until(Time::ZERO + Duration::from_ms(20));
    let c = os.nic().borrow().counters().clone();
    let served = app.counters().get("served");
    let callbacks = os.callbacks().len();
    sim.shutdown();
    let got = got.borrow().clone();
    for (xid, want) in expect.borrow().iter() {
        assert_eq!(
            got.get(xid),
            Some(&vec![*want]),
            "xid {xid}: one right answer"
        );
    }
    (got, callbacks, c, served)
}

#[test]
fn every_request_is_delivered_exactly_once_with_either_call_back_signal() {
    let (xui, xui_callbacks, c, served) = run(CallbackSignal::XuiTracked);
    assert_eq!(xui.len(), 80);
    assert!(xui_callbacks > 0, "retired cores were called back");
    assert!(c.get("released_loops") > 0 && c.get("wakes") > 0, "{c:?}");
    assert_eq!(c.get("requests"), 80, "{c:?}");
    assert_eq!(c.get("replies"), 80, "{c:?}");
    assert_eq!(c.sum_prefix("drop."), 0, "{c:?}");
    assert_eq!(served, 80);
    let (ipi, ipi_callbacks, _, _) = run(CallbackSignal::Ipi);
    assert_eq!(ipi, xui, "both signals answer the same calls the same");
    assert!(ipi_callbacks > 0);
}
