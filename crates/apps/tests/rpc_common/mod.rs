//! What the RPC end-to-end tests share: the adder they call, an ONC RPC
//! client host joined to a server's NIC, and the calls that exercise
//! every error reply.

// Each test crate uses a part of what is here.
#![allow(dead_code)]

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use nextio_apps::rpc_client::RpcClient;
use nextio_hw::device::DeviceId;
use nextio_hw::ethernet::LinkConfig;
use nextio_hw::machine::{Machine, MachineSpec, join};
use nextio_hw::nic::packetized::{PacketizedConfig, PacketizedNic, regs};
use nextio_hw::oncrpc::{AcceptStat, XdrType, XdrValue};
use nextio_hw::packet::{FlowKey, Macs};
use nextio_lib::dpdk::{Pmd, PmdConfig};
use nextio_lib::lauberhorn::{Outcome, Procedure, compute_handler};
use nextio_os::{Host, OsCosts};

pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

/// Procedure 1 of version 1 of `prog`: two 64-bit integers in, their sum
/// out.
pub fn add_procedure(prog: u32) -> Procedure {
    Procedure {
        prog,
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

/// Make, one after the other, good calls of `prog`'s adder, then calls
/// of an unknown program, an unknown procedure, a wrong version, with
/// arguments that do not decode, and a good one; the reply statuses in
/// order.
pub fn make_mixed_calls(
    sim: &nextio_engine::Sim,
    mut client: RpcClient,
    prog: u32,
) -> Rc<RefCell<Vec<AcceptStat>>> {
    let calls: Vec<(u32, u32, u32, Vec<XdrValue>)> = vec![
        (prog, 1, 1, vec![XdrValue::U64(1), XdrValue::U64(2)]),
        (77, 1, 1, vec![]),
        (prog, 1, 9, vec![]),
        (prog, 2, 1, vec![]),
        (prog, 1, 1, vec![XdrValue::U32(5)]),
        (prog, 1, 1, vec![XdrValue::U64(3), XdrValue::U64(4)]),
    ];
    let stats = Rc::new(RefCell::new(Vec::new()));
    let st = stats.clone();
    sim.spawn(async move {
        client.pmd().start().await.unwrap();
        for (p, v, q, a) in calls {
            let r = client.call(p, v, q, &a).await.unwrap();
            st.borrow_mut().push(r.stat);
        }
    });
    stats
}

/// A client host (Ice Lake-SP, the E810-like NIC, one DPDK thread) on a
/// wire to port 0 of `server_dev` on `server`, calling `ip:port` at
/// `mac`; also returns the client's NIC.
pub fn client(
    sim: &nextio_engine::Sim,
    server: &Machine,
    server_dev: DeviceId,
    (ip, port, mac): (Ipv4Addr, u16, [u8; 6]),
) -> (RpcClient, nextio_hw::fabric::DeviceHandle<PacketizedNic>) {
    let client = Host::new(sim, MachineSpec::ice_lake_sp(1), OsCosts::default()).unwrap();
    let nic = client
        .attach_nic(PacketizedNic::new(PacketizedConfig::default()).unwrap())
        .unwrap();
    join(
        client.machine(),
        nic.id,
        0,
        server,
        server_dev,
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
        src_ip: CLIENT_IP,
        dst_ip: ip,
        src_port: 5000,
        dst_port: port,
    };
    let macs = Macs {
        src: CLIENT_MAC,
        dst: mac,
    };
    (RpcClient::new(pmd, macs, flow, 1), nic)
}

/// Call procedure 1 of `prog` (the adder) `n` times with pseudo-random
/// operands from `seed`, then run `sim` for 20 ms; every call must come
/// back `Success` carrying the sum of what the client encoded.
pub fn calls_return_their_sums(
    sim: &nextio_engine::Sim,
    mut client: RpcClient,
    prog: u32,
    seed: u64,
    n: usize,
) {
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    sim.spawn(async move {
        client.pmd().start().await.unwrap();
        let mut x = seed;
        for _ in 0..n {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let (a, b) = (x >> 11, x.rotate_left(17) >> 3);
            let r = client
                .call(prog, 1, 1, &[XdrValue::U64(a), XdrValue::U64(b)])
                .await
                .unwrap();
            g.borrow_mut().push((a, b, r));
        }
    });
    sim.run_until(nextio_engine::Time::ZERO + nextio_engine::Duration::from_ms(20));
    let got = got.borrow();
    assert_eq!(got.len(), n, "every call answered");
    for (a, b, r) in got.iter() {
        assert_eq!(r.stat, AcceptStat::Success);
        assert_eq!(
            nextio_hw::oncrpc::Reader::new(&r.results).u64().unwrap(),
            a.wrapping_add(*b),
            "the handler computed on the client's arguments"
        );
    }
}
