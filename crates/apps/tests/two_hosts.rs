//! Two hosts on one wire, client and server: a DPDK-style client on a host
//! with the packetized NIC sends UDP requests to the Ensō echo host across
//! a 100 GbE link and receives every echo back, intact, in order; both
//! hosts account for every frame.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_apps::echo::{EchoConfig, NotificationMode, enso};
use nextio_engine::{Counters, Duration, Sim, Time};
use nextio_hw::device::Device as _;
use nextio_hw::ethernet::LinkConfig;
use nextio_hw::machine::{MachineSpec, join};
use nextio_hw::nic::packetized::{PacketizedConfig, PacketizedNic, regs};
use nextio_hw::packet::{Macs, build_udp, parse_udp};
use nextio_hw::trafficgen::{ECHO_BYTE_OFFSET, synthetic_flow};
use nextio_lib::dpdk::{Pmd, PmdConfig};
use nextio_os::{Host, OsCosts};

const REQUESTS: u64 = 200;

#[test]
fn a_client_host_gets_every_echo_from_a_server_host() {
    let sim = Sim::new();
    // The server: Ensō echo on its own host.
    let server = enso::build(
        &sim,
        &EchoConfig {
            machine: MachineSpec::enso_testbed(1),
            seed: 3,
        },
        NotificationMode::Reactive,
    )
    .unwrap();
    // The client: another host, the E810-like NIC, one DPDK thread.
    let client = Host::new(&sim, MachineSpec::ice_lake_sp(1), OsCosts::default()).unwrap();
    let nic = client
        .attach_nic(PacketizedNic::new(PacketizedConfig::default()).unwrap())
        .unwrap();
    join(
        client.machine(),
        nic.id,
        0,
        server.host.machine(),
        server.nic,
        0,
        LinkConfig::default(),
    )
    .unwrap();
    let process = client.create_process().unwrap();
    let thread = process.thread(0).unwrap();
    let bar = process.map_bar(nic.id, 0, 0, regs::BAR0_BYTES).unwrap();
    let app = Rc::new(RefCell::new(Counters::new()));
    let mut pmd = Pmd::new(
        thread.ctx,
        &process,
        &nic,
        bar,
        0,
        PmdConfig::default(),
        app.clone(),
    )
    .unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    sim.spawn(async move {
        pmd.start().await.unwrap();
        let mut rx = Vec::new();
        let mut bytes = Vec::new();
        for i in 0..REQUESTS {
            // One request: the sequence number in the payload, the echo
            // byte zero.
            let mut payload = [0u8; 18];
            payload[..8].copy_from_slice(&i.to_be_bytes());
            let frame =
                build_udp(Macs::default(), synthetic_flow(i as u32 % 4), &payload, 128).unwrap();
            let m = pmd.alloc().expect("a free mbuf");
            pmd.write_packet(m, &frame).unwrap();
            let mut tx = vec![m];
            while !tx.is_empty() {
                pmd.tx_burst(&mut tx).await.unwrap();
            }
            // Wait for its echo.
            loop {
                if pmd.rx_burst(&mut rx, 8).await.unwrap() > 0 {
                    break;
                }
                pmd.wait_rx().await;
            }
            for m in rx.drain(..) {
                pmd.read_packet(m, &mut bytes).unwrap();
                g.borrow_mut().push(bytes.clone());
                pmd.free(m);
            }
        }
    });
    sim.run_until(Time::ZERO + Duration::from_ms(5));
    let echoes = got.borrow();
    assert_eq!(echoes.len() as u64, REQUESTS);
    for (i, e) in echoes.iter().enumerate() {
        let v = parse_udp(e).expect("a valid frame with valid checksums");
        let p = &e[v.payload_offset..];
        assert_eq!(
            u64::from_be_bytes(p[..8].try_into().unwrap()),
            i as u64,
            "in order"
        );
        assert_eq!(p[ECHO_BYTE_OFFSET], 1, "echoed once by the server");
    }
    let c = nic.borrow().counters().clone();
    assert_eq!(c.get("tx_frames"), REQUESTS);
    assert_eq!(c.get("rx_frames"), REQUESTS);
    assert_eq!(c.sum_prefix("drop."), 0);
    assert_eq!(server.app.borrow().get("echoed"), REQUESTS);
    assert_eq!(server.nic_counters().get("tx_frames"), REQUESTS);
    sim.shutdown();
}
