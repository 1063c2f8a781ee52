//! The virtual switch on both NIC interfaces, end to end: every frame
//! leaves once, through the port its flow maps to (its destination MAC),
//! with every other byte as it arrived; on Ensō each frame was copied into
//! its port's TX pipe (the rings wrapping many times over), with DPDK the
//! mbuf was handed on. Behaviour and data, not timing.

use std::collections::HashMap;
use std::rc::Rc;

use nextio_apps::app::{AppFactory, PacketApp, five_tuple, udp_layout};
use nextio_apps::echo::{self, EchoConfig, EchoSystem, NotificationMode};
use nextio_apps::vswitch::{self, Vswitch, VswitchConfig, port_mac, reference_port};
use nextio_engine::{Duration, Mailbox, Sim, Time};
use nextio_hw::ethernet::LinkConfig;
use nextio_hw::machine::MachineSpec;
use nextio_hw::packet::{Frame, Macs, build_udp};
use nextio_hw::trafficgen::synthetic_flow;

fn factory(config: VswitchConfig) -> AppFactory {
    Rc::new(move |_core| {
        Box::new(Vswitch::new(config.clone(), *vswitch::costs()).expect("a valid switch"))
            as Box<dyn PacketApp>
    })
}

/// Offer `frames` frames of sizes 64–1518 B over 97 flows at about
/// 20 Gb/s and return what came back, with the host's counters.
fn run(enso: bool, frames: u64) -> (Vec<Frame>, Vec<Vec<u8>>, EchoSystem) {
    let sim = Sim::new();
    let mut machine = MachineSpec::ice_lake_sp(1);
    machine.memory_bytes = 256 << 20;
    let config = EchoConfig { machine, seed: 3 };
    let app = Some(factory(VswitchConfig::default()));
    let sys = if enso {
        echo::enso::build_app(&sim, &config, NotificationMode::Reactive, app)
    } else {
        echo::packetized::build_app(&sim, &config, app)
    }
    .unwrap();
    let back = Rc::new(Mailbox::new(&sim));
    let deep = LinkConfig {
        queue_frames: 1 << 16,
        ..LinkConfig::default()
    };
    let (_, to_host) = sys
        .host
        .machine()
        .wire_port(sys.nic, 0, back.clone(), deep, deep)
        .unwrap();
    let sent: Vec<Vec<u8>> = (0..frames)
        .map(|i| {
            let size = 64 + (i * 389 % 1455) as usize;
            let payload: Vec<u8> = (0..18).map(|b| (i as u8).wrapping_mul(31) ^ b).collect();
            build_udp(
                Macs::default(),
                synthetic_flow((i % 97) as u32),
                &payload,
                size,
            )
            .unwrap()
        })
        .collect();
    let offered = sent.clone();
    let s = sim.clone();
    let ready = sys.ready.clone();
    sim.spawn(async move {
        // A frame offered before the host handed its rings to the NIC
        // would be dropped for want of a descriptor.
        ready.wait().await;
        for (i, bytes) in offered.into_iter().enumerate() {
            // ≈ 20 Gb/s of 800-byte frames on average: well within one core.
            s.sleep(Duration::from_ns(320)).await;
            let _ = to_host.send(Frame::new(bytes, i as u64));
        }
    });
    sim.run_until(Time(Duration::from_ms(8).ps()));
    let mut got = Vec::new();
    while let Some(f) = back.try_recv() {
        got.push(f);
    }
    (got, sent, sys)
}

fn check(enso: bool) {
    let frames = 16_000;
    let (got, sent, sys) = run(enso, frames);
    assert_eq!(
        got.len() as u64,
        frames,
        "every frame leaves once: NIC {:?} app {:?}",
        sys.nic_counters(),
        sys.app.borrow()
    );
    let config = VswitchConfig::default();
    let by_payload: HashMap<&[u8], &Vec<u8>> = sent.iter().map(|f| (&f[6..], f)).collect();
    let mut ports = [0u64; 4];
    for f in &got {
        let original = by_payload
            .get(&f.bytes[6..])
            .expect("a frame that left is a frame that came in, MAC aside");
        let key = five_tuple(original, udp_layout(original).unwrap());
        let port = reference_port(&config, &key);
        assert_eq!(&f.bytes[..6], &port_mac(port), "its flow's port");
        ports[port] += 1;
    }
    assert!(ports.iter().all(|&n| n > 0), "every port used: {ports:?}");
    let app = sys.app.borrow().clone();
    assert_eq!(app.get("processed"), frames);
    assert_eq!(app.get("copied"), if enso { frames } else { 0 });
    if enso {
        let bytes: u64 = sent.iter().map(|f| f.len() as u64).sum();
        assert!(
            bytes > 4 * (2 << 20),
            "several laps of each 2 MiB TX pipe, so copies wrap"
        );
    }
}

#[test]
fn the_switch_on_enso_copies_every_frame_to_its_port() {
    check(true);
}

#[test]
fn the_switch_with_dpdk_hands_every_mbuf_to_its_port() {
    check(false);
}
