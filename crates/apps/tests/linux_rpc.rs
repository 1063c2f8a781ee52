//! The Linux baseline of the Lauberhorn evaluation end to end: a client
//! host encodes ONC RPC calls and sends them over a wire to an Enzian
//! running the kernel's UDP stack, where the user-level RPC server reads
//! them with `recvfrom`, unmarshals, calls the handler and answers with
//! `sendto`. Every call gets the right answer, and every datagram is
//! accounted for: answered (a result or an RFC 5531 error reply) or
//! dropped under a named reason.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;

mod rpc_common;

use nextio_apps::rpc_client::RpcClient;
use nextio_apps::rpc_server::{SocketIo, SoftRpcCosts, SoftRpcServer};
use nextio_engine::{Counters, Duration, Sim, Time};
use nextio_hw::machine::MachineSpec;
use nextio_hw::oncrpc::AcceptStat;
use nextio_os::OsCosts;
use nextio_os::net::{LinuxHost, LinuxNetCosts, NetConfig};

const PROG: u32 = 0x2000_0001;
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const PORT: u16 = 2049;

/// The Linux server (serving `n` datagrams, then publishing its
/// counters) and a DPDK client joined to it.
fn rig(sim: &Sim, n: u64) -> (LinuxHost, RpcClient, Rc<RefCell<Option<Counters>>>) {
    let mut net = NetConfig::new(SERVER_IP, SERVER_MAC, LinuxNetCosts::production());
    net.neighbours
        .push((rpc_common::CLIENT_IP, rpc_common::CLIENT_MAC));
    let linux = LinuxHost::build(sim, MachineSpec::enzian(1), OsCosts::default(), net).unwrap();
    let p = linux.host.create_process().unwrap();
    let t = linux.thread(p.pid(), 0).unwrap();
    let io = SocketIo::new(linux.stack.clone(), linux.disp.clone(), &p, t, PORT).unwrap();
    let costs = SoftRpcCosts::default();
    let mut server = SoftRpcServer::new(io, vec![rpc_common::add_procedure(PROG)], costs);
    let done = Rc::new(RefCell::new(None));
    let d = done.clone();
    sim.spawn(async move {
        server.serve(Some(n)).await;
        *d.borrow_mut() = Some(server.counters());
    });
    let (client, _) = rpc_common::client(
        sim,
        linux.host.machine(),
        linux.nic.id,
        (SERVER_IP, PORT, SERVER_MAC),
    );
    (linux, client, done)
}

#[test]
fn the_linux_server_answers_every_call_with_the_right_result() {
    let sim = Sim::new();
    let (linux, client, done) = rig(&sim, 100);
    rpc_common::calls_return_their_sums(&sim, client, PROG, 0x0fed_cba9_8765_4321u64, 100);
    let c = done.borrow().clone().expect("the server served 100 calls");
    assert_eq!(c.get("datagrams"), 100);
    assert_eq!(c.get("served"), 100);
    assert_eq!(c.sum_prefix("drop."), 0, "{c:?}");
    let k = linux.stack.counters();
    assert_eq!(k.get("rx_delivered"), 100);
    assert_eq!(k.get("recv_datagrams"), 100);
    assert_eq!(k.get("sent_datagrams"), 100);
    assert_eq!(k.sum_prefix("drop."), 0, "{k:?}");
    sim.shutdown();
}

#[test]
fn every_datagram_is_answered_or_dropped_under_a_reason() {
    let sim = Sim::new();
    let (linux, client, done) = rig(&sim, 6);
    let stats = rpc_common::make_mixed_calls(&sim, client, PROG);
    sim.run_until(Time::ZERO + Duration::from_ms(10));
    // The user-level server's table has no program registry: an unknown
    // program or version is an unknown procedure to it.
    assert_eq!(
        *stats.borrow(),
        vec![
            AcceptStat::Success,
            AcceptStat::ProcUnavail,
            AcceptStat::ProcUnavail,
            AcceptStat::ProcUnavail,
            AcceptStat::GarbageArgs,
            AcceptStat::Success
        ]
    );
    let c = done
        .borrow()
        .clone()
        .expect("the server handled 6 datagrams");
    assert_eq!(
        c.get("datagrams"),
        c.get("served") + c.get("error_replies") + c.sum_prefix("drop."),
        "{c:?}"
    );
    assert_eq!((c.get("served"), c.get("error_replies")), (2, 4));
    let k = linux.stack.counters();
    assert_eq!(k.get("rx_delivered"), c.get("datagrams"));
    assert_eq!(
        k.get("sent_datagrams"),
        c.get("served") + c.get("error_replies")
    );
    sim.shutdown();
}
