//! Lauberhorn end to end: a client host encodes ONC RPC calls with XDR
//! arguments and sends them over a wire to an Enzian host whose NIC
//! decodes them and hands them to a process's handler as cache lines;
//! the handler computes on the decoded arguments, the NIC encodes the
//! reply, and the client gets every answer right. Both hosts account for
//! every request.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

mod rpc_common;

use nextio_apps::rpc_client::RpcClient;
use nextio_engine::{Duration, Sim, Time};
use nextio_hw::device::Device as _;
use nextio_hw::machine::MachineSpec;
use nextio_hw::nic::lauberhorn::LauberhornConfig;
use nextio_hw::nic::packetized::PacketizedNic;
use nextio_hw::oncrpc::{AcceptStat, Reader, XdrType, XdrValue};
use nextio_lib::lauberhorn::{Outcome, Procedure, RpcServer, RuntimeCosts, compute_handler};
use nextio_os::lauberhorn::{LauberhornOs, LauberhornOsCosts};
use nextio_os::{Host, OsCosts};

const PROG: u32 = 0x2000_0001;

fn add_procedure() -> Procedure {
    rpc_common::add_procedure(PROG)
}

struct Rig {
    sim: Sim,
    server: Host,
    os: LauberhornOs,
    app: Rc<RpcServer>,
    /// The serving process.
    pid: nextio_os::Pid,
    client: RpcClient,
    nic: nextio_hw::fabric::DeviceHandle<PacketizedNic>,
}

fn rig(cores: usize) -> Rig {
    rig_with(cores, cores, vec![add_procedure()])
}

/// A server of `machine_cores` cores, `cores` of them serving RPCs, and
/// one process serving `procs`.
fn rig_with(machine_cores: usize, cores: usize, procs: Vec<Procedure>) -> Rig {
    let sim = Sim::new();
    let server = Host::new(&sim, MachineSpec::enzian(machine_cores), OsCosts::default()).unwrap();
    let cfg = LauberhornConfig {
        cores,
        slots: 2,
        ..LauberhornConfig::default()
    };
    let os = LauberhornOs::attach(&server, cfg.clone(), LauberhornOsCosts::default()).unwrap();
    let p = server.create_process().unwrap();
    let app = RpcServer::register(&os, &p, procs, RuntimeCosts::default()).unwrap();
    os.start();
    let (client, nic) = rpc_common::client(
        &sim,
        server.machine(),
        os.nic().id,
        (cfg.ip, cfg.rpc_port, cfg.mac),
    );
    Rig {
        sim,
        server,
        os,
        app,
        pid: p.pid(),
        client,
        nic,
    }
}

fn u64_result(r: &[u8]) -> u64 {
    Reader::new(r).u64().unwrap()
}

#[test]
fn every_call_is_decoded_computed_and_answered() {
    let Rig {
        sim,
        server: _server,
        os,
        app,
        client,
        nic,
        ..
    } = rig(2);
    rpc_common::calls_return_their_sums(&sim, client, PROG, 0x1234_5678_9abc_def0u64, 100);
    let c = os.nic().borrow().counters().clone();
    assert_eq!(c.get("rx_frames"), 100);
    assert_eq!(c.get("requests"), 100);
    assert_eq!(c.get("replies"), 100);
    assert_eq!(c.sum_prefix("drop."), 0, "{c:?}");
    assert_eq!(app.counters().get("served"), 100);
    // The first request went through a kernel dispatch thread; the rest
    // reached the process's user loop directly.
    assert!(c.get("delivered.kernel") >= 1, "{c:?}");
    assert!(c.get("delivered.user") >= 90, "{c:?}");
    assert_eq!(nic.borrow().counters().sum_prefix("drop."), 0);
    sim.shutdown();
}

/// A procedure of program `prog` that records the arguments it saw and
/// answers with `tag`.
fn recording(prog: u32, tag: u64, seen: Rc<RefCell<Vec<u64>>>) -> Procedure {
    let handler: nextio_lib::lauberhorn::HandlerFn = Rc::new(move |ctx, args| {
        let seen = seen.clone();
        Box::pin(async move {
            ctx.compute(nextio_engine::Category::Application, 30).await;
            seen.borrow_mut().push(args[0].as_u64().unwrap_or(u64::MAX));
            Outcome::Reply(vec![XdrValue::U64(tag)])
        })
    });
    Procedure {
        prog,
        vers: 1,
        proc_: 1,
        args: vec![XdrType::U64],
        results: vec![XdrType::U64],
        handler,
        continuation: None,
        nested_results: vec![],
    }
}

#[test]
fn a_process_never_gets_another_process_s_request_nor_reaches_its_lines() {
    let seen_a = Rc::new(RefCell::new(Vec::new()));
    let seen_b = Rc::new(RefCell::new(Vec::new()));
    // Process A serves program 1 (from the rig); process B serves 2.
    let Rig {
        sim,
        server,
        os,
        app: _a,
        mut client,
        ..
    } = rig_with(3, 2, vec![recording(1, 0xa, seen_a.clone())]);
    let pb = server.create_process().unwrap();
    let _b = RpcServer::register(
        &os,
        &pb,
        vec![recording(2, 0xb, seen_b.clone())],
        RuntimeCosts::default(),
    )
    .unwrap();
    // B cannot take over A's program, nor point a handler outside its text.
    let steal = nextio_os::lauberhorn::ServiceEndpoint {
        prog: 1,
        vers: 1,
        proc_: 1,
        code: 0,
        data: 0,
        args: vec![],
        results: vec![],
    };
    assert!(os.register_endpoint(pb.pid(), steal.clone()).is_err());
    let outside = nextio_os::lauberhorn::ServiceEndpoint {
        prog: 9,
        code: 0xdead_0000,
        ..steal
    };
    assert!(matches!(
        os.register_endpoint(pb.pid(), outside),
        Err(nextio_os::lauberhorn::LauberhornOsError::BadCodePointer(_))
    ));
    // B, on a core of its own, tries A's control lines: A's channel is at
    // a virtual address of A's, which B's page tables do not map; and B's
    // own channel's lines are not A's.
    let layout = os.layout();
    let a_channel_pa = os.window().base.offset(layout.offset(
        layout.user_channel(0, 0),
        nextio_hw::nic::lauberhorn::layout::Half::Rx,
        nextio_hw::nic::lauberhorn::layout::LineRole::Ctrl(0),
    ));
    let hostile = pb.thread(2).unwrap();
    let coh = os.coherent().clone();
    let attack = Rc::new(RefCell::new(Vec::new()));
    let at = attack.clone();
    let kspace_guess =
        nextio_hw::mem::VirtAddr(nextio_os::kernel::DIRECT_MAP_BASE + a_channel_pa.0);
    sim.spawn(async move {
        let mut b = [0u8; 8];
        // Every address B might try: low user addresses, the kernel's
        // mapping of the window, the window's physical address as a VA.
        for va in [
            nextio_hw::mem::VirtAddr(0x10_0000_0000),
            kspace_guess,
            nextio_hw::mem::VirtAddr(a_channel_pa.0),
        ] {
            let r = coh
                .load(
                    &hostile.ctx,
                    va,
                    &mut b,
                    nextio_engine::Category::Application,
                )
                .await;
            at.borrow_mut().push(r.is_err());
        }
    });
    sim.spawn(async move {
        client.pmd().start().await.unwrap();
        for i in 0..40u64 {
            let prog = 1 + (i % 2) as u32;
            let r = client.call(prog, 1, 1, &[XdrValue::U64(i)]).await.unwrap();
            assert_eq!(u64_result(&r.results), if prog == 1 { 0xa } else { 0xb });
        }
    });
    sim.run_until(Time::ZERO + Duration::from_ms(20));
    assert_eq!(
        *attack.borrow(),
        vec![true, true, true],
        "every probe faults"
    );
    let a: Vec<u64> = seen_a.borrow().clone();
    let b: Vec<u64> = seen_b.borrow().clone();
    assert_eq!(a, (0..40).filter(|i| i % 2 == 0).collect::<Vec<_>>());
    assert_eq!(b, (0..40).filter(|i| i % 2 == 1).collect::<Vec<_>>());
    sim.shutdown();
}

#[test]
fn tryagain_bounds_every_blocked_load() {
    let Rig { sim, os, .. } = rig(2);
    // No traffic at all for 100 ms: every load the cores leave held is
    // answered with TRYAGAIN (or RETIRE) within the bound, none times out.
    sim.run_until(Time::ZERO + Duration::from_ms(100));
    let nic = os.nic().borrow();
    let bound = nic.config().tryagain_ps;
    assert!(
        nic.max_held_ps() <= bound + 1_000_000,
        "{} > {bound}",
        nic.max_held_ps()
    );
    let c = nic.counters().clone();
    assert!(c.get("tryagain") >= 100 / 15, "{c:?}");
    let coh = os.coherent().counters();
    assert_eq!(coh.get("bus_errors"), 0);
    assert_eq!(
        coh.get("requests"),
        coh.get("responses") + coh.get("pending")
    );
    drop(nic);
    sim.shutdown();
}

#[test]
fn every_request_is_answered_or_dropped_under_a_reason() {
    let Rig {
        sim, os, client, ..
    } = rig(1);
    let stats = rpc_common::make_mixed_calls(&sim, client, PROG);
    sim.run_until(Time::ZERO + Duration::from_ms(10));
    assert_eq!(
        *stats.borrow(),
        vec![
            AcceptStat::Success,
            AcceptStat::ProgUnavail,
            AcceptStat::ProcUnavail,
            AcceptStat::ProgMismatch,
            AcceptStat::GarbageArgs,
            AcceptStat::Success
        ]
    );
    let c = os.nic().borrow().counters().clone();
    let nic_replied = c.sum_prefix("nic_replied.");
    assert_eq!(
        c.get("rx_frames"),
        c.sum_prefix("drop.") + nic_replied + c.get("requests"),
        "{c:?}"
    );
    assert_eq!(
        c.get("requests"),
        c.get("replies") + c.get("replies.system_err")
    );
    assert_eq!(nic_replied, 4);
    sim.shutdown();
}

#[test]
fn the_same_configuration_gives_the_same_run() {
    let run = || {
        let Rig {
            sim,
            os,
            mut client,
            ..
        } = rig(2);
        let out = Rc::new(RefCell::new(Vec::new()));
        let o = out.clone();
        sim.spawn(async move {
            client.pmd().start().await.unwrap();
            for i in 0..30u64 {
                let r = client
                    .call(PROG, 1, 1, &[XdrValue::U64(i), XdrValue::U64(i * 3)])
                    .await
                    .unwrap();
                o.borrow_mut().push((r.sent, r.received, r.results));
            }
        });
        sim.run_until(Time::ZERO + Duration::from_ms(5));
        let c = os.nic().borrow().counters().clone();
        let events = sim.events();
        sim.shutdown();
        let v = out.borrow().clone();
        (v, format!("{c:?}"), events)
    };
    assert_eq!(run(), run());
}

const BACKEND_PROG: u32 = 0x2000_0002;

/// Program `prog` procedure 1: the handler calls destination `dest`
/// with its argument; the continuation answers with the nested result
/// plus one.
fn nesting(prog: u32, dest: u16) -> Procedure {
    Procedure {
        prog,
        vers: 1,
        proc_: 1,
        args: vec![XdrType::U64],
        results: vec![XdrType::U64],
        handler: compute_handler(30, move |a| Outcome::Call {
            dest,
            args: a.to_vec(),
        }),
        continuation: Some(compute_handler(30, |r| {
            Outcome::Reply(vec![XdrValue::U64(r[0].as_u64().unwrap_or(0) + 1)])
        })),
        nested_results: vec![XdrType::U64],
    }
}

fn backend_destination() -> nextio_os::lauberhorn::OutgoingCall {
    nextio_os::lauberhorn::OutgoingCall {
        ip: Ipv4Addr::new(10, 0, 0, 1),
        port: 6000,
        mac: [0x02, 0, 0, 0, 0, 1],
        prog: BACKEND_PROG,
        vers: 1,
        proc_: 1,
        args: vec![XdrType::U64],
        results: vec![XdrType::U64],
    }
}

#[test]
fn a_nested_call_s_reply_reaches_the_continuation_and_another_process_cannot_use_its_destination() {
    // Process A (the rig's) serves program 1 by calling the backend on
    // the client's host; process B serves program 2 and tries to call
    // through A's destination.
    let Rig {
        sim,
        server,
        os,
        app: _a,
        pid,
        mut client,
        ..
    } = rig_with(3, 2, vec![nesting(1, 0)]);
    assert_eq!(
        os.register_destination(pid, backend_destination()).unwrap(),
        0
    );
    let pb = server.create_process().unwrap();
    let _b = RpcServer::register(&os, &pb, vec![nesting(2, 0)], RuntimeCosts::default()).unwrap();
    client.set_backend(nextio_apps::rpc_client::Backend {
        prog: BACKEND_PROG,
        vers: 1,
        proc_: 1,
        args: vec![XdrType::U64],
        cycles: 30,
        handler: Box::new(|a| vec![XdrValue::U64(a[0].as_u64().unwrap_or(0) * 3)]),
    });
    let got = Rc::new(RefCell::new(Vec::new()));
    let served = Rc::new(std::cell::Cell::new(0));
    let (g, s) = (got.clone(), served.clone());
    sim.spawn(async move {
        client.pmd().start().await.unwrap();
        for i in 0..40u64 {
            let prog = if i % 4 == 3 { 2 } else { 1 };
            let r = client.call(prog, 1, 1, &[XdrValue::U64(i)]).await.unwrap();
            g.borrow_mut().push((prog, i, r));
        }
        s.set(client.served);
    });
    sim.run_until(Time::ZERO + Duration::from_ms(50));
    let got = got.borrow();
    assert_eq!(got.len(), 40, "every call was answered");
    for (prog, i, r) in got.iter() {
        if *prog == 1 {
            assert_eq!(r.stat, AcceptStat::Success, "call {i}");
            assert_eq!(u64_result(&r.results), 3 * i + 1, "call {i}");
        } else {
            assert_eq!(r.stat, AcceptStat::SystemErr, "B's call {i} got a reply");
        }
    }
    let c = os.nic().borrow().counters().clone();
    assert_eq!(c.get("nested.calls"), 30, "{c:?}");
    assert_eq!(c.get("nested.replies"), 30, "{c:?}");
    assert_eq!(c.get("drop.bad_destination"), 10, "{c:?}");
    assert_eq!(served.get(), 30, "the backend served A's calls only");
    sim.shutdown();
}
