//! Lauberhorn end to end: a client host encodes ONC RPC calls with XDR
//! arguments and sends them over a wire to an Enzian host whose NIC
//! decodes them and hands them to a process's handler as cache lines;
//! the handler computes on the decoded arguments, the NIC encodes the
//! reply, and the client gets every answer right. Both hosts account for
//! every request.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use nextio_apps::rpc_client::RpcClient;
use nextio_engine::{Duration, Sim, Time};
use nextio_hw::device::Device as _;
use nextio_hw::ethernet::LinkConfig;
use nextio_hw::machine::{MachineSpec, join};
use nextio_hw::nic::lauberhorn::LauberhornConfig;
use nextio_hw::nic::packetized::{PacketizedConfig, PacketizedNic, regs};
use nextio_hw::oncrpc::{AcceptStat, Reader, XdrType, XdrValue};
use nextio_hw::packet::{FlowKey, Macs};
use nextio_lib::dpdk::{Pmd, PmdConfig};
use nextio_lib::lauberhorn::{Outcome, Procedure, RpcServer, RuntimeCosts, compute_handler};
use nextio_os::lauberhorn::{LauberhornOs, LauberhornOsCosts};
use nextio_os::{Host, OsCosts};

const PROG: u32 = 0x2000_0001;

fn add_procedure() -> Procedure {
    Procedure {
        prog: PROG,
        vers: 1,
        proc_: 1,
        args: vec![XdrType::U64, XdrType::U64],
        results: vec![XdrType::U64],
        handler: compute_handler(50, |a| match (a[0].as_u64(), a[1].as_u64()) {
            (Some(x), Some(y)) => Outcome::Reply(vec![XdrValue::U64(x.wrapping_add(y))]),
            _ => Outcome::Error(AcceptStat::GarbageArgs),
        }),
        continuation: None,
        nested_results: vec![],
    }
}

struct Rig {
    sim: Sim,
    server: Host,
    os: LauberhornOs,
    app: Rc<RpcServer>,
    client: RpcClient,
    nic: nextio_hw::fabric::DeviceHandle<PacketizedNic>,
}

fn rig(cores: usize) -> Rig {
    let sim = Sim::new();
    let server = Host::new(&sim, MachineSpec::enzian(cores), OsCosts::default()).unwrap();
    let cfg = LauberhornConfig {
        cores,
        slots: 2,
        ..LauberhornConfig::default()
    };
    let os = LauberhornOs::attach(&server, cfg.clone(), LauberhornOsCosts::default()).unwrap();
    let p = server.create_process().unwrap();
    let app = RpcServer::register(&os, &p, vec![add_procedure()], RuntimeCosts::default()).unwrap();
    os.start();
    let client = Host::new(&sim, MachineSpec::ice_lake_sp(1), OsCosts::default()).unwrap();
    let nic = client
        .attach_nic(PacketizedNic::new(PacketizedConfig::default()).unwrap())
        .unwrap();
    join(
        client.machine(),
        nic.id,
        0,
        server.machine(),
        os.nic().id,
        0,
        LinkConfig::default(),
    )
    .unwrap();
    let process = client.create_process().unwrap();
    let thread = process.thread(0).unwrap();
    let bar = process.map_bar(nic.id, 0, 0, regs::BAR0_BYTES).unwrap();
    let pmd = Pmd::new(
        thread.ctx,
        &process,
        &nic,
        bar,
        0,
        PmdConfig::default(),
        Rc::new(RefCell::new(nextio_engine::Counters::new())),
    )
    .unwrap();
    let flow = FlowKey {
        src_ip: Ipv4Addr::new(10, 0, 0, 1),
        dst_ip: cfg.ip,
        src_port: 5000,
        dst_port: cfg.rpc_port,
    };
    let macs = Macs {
        src: [0x02, 0, 0, 0, 0, 1],
        dst: cfg.mac,
    };
    Rig {
        sim,
        server,
        os,
        app,
        client: RpcClient::new(pmd, macs, flow, 1),
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
        mut client,
        nic,
    } = rig(2);
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    sim.spawn(async move {
        client.pmd().start().await.unwrap();
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..100 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let (a, b) = (x >> 11, x.rotate_left(17) >> 3);
            let r = client
                .call(PROG, 1, 1, &[XdrValue::U64(a), XdrValue::U64(b)])
                .await
                .unwrap();
            g.borrow_mut().push((a, b, r));
        }
    });
    sim.run_until(Time::ZERO + Duration::from_ms(20));
    let got = got.borrow();
    assert_eq!(got.len(), 100);
    for (a, b, r) in got.iter() {
        assert_eq!(r.stat, AcceptStat::Success);
        assert_eq!(
            u64_result(&r.results),
            a.wrapping_add(*b),
            "the handler saw the client's arguments"
        );
    }
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
