//! End-to-end checks of the Ensō echo host against the traffic generator:
//! every frame comes back echoed and intact, every frame is accounted for,
//! and a run is a pure function of its seed. Behaviour, not timing.

use std::rc::Rc;

use nextio_apps::echo::{EchoConfig, NotificationMode, enso};
use nextio_engine::{Counters, Duration, Mailbox, Sim, Time};
use nextio_hw::ethernet::LinkConfig;
use nextio_hw::machine::MachineSpec;
use nextio_hw::nic::enso::RX_DROPS;
use nextio_hw::trafficgen::{Arrivals, SizeSpec, Source, TrafficConfig, TrafficGen, TrafficStats};

fn config(cores: usize) -> EchoConfig {
    let mut machine = MachineSpec::ice_lake_sp(cores);
    machine.memory_bytes = 256 << 20;
    EchoConfig { machine, seed: 7 }
}

fn run(
    mode: NotificationMode,
    cores: usize,
    sizes: SizeSpec,
    rate_gbps: f64,
    frames: u64,
) -> (TrafficStats, Counters, Counters) {
    let sim = Sim::new();
    let to_gen = Rc::new(Mailbox::new(&sim));
    // The generator paces frames by their own size, so mixed sizes can
    // momentarily outrun the line: give its port a deep queue.
    let gen_link = LinkConfig {
        queue_frames: 1 << 16,
        ..LinkConfig::default()
    };
    let sys = enso::build(&sim, &config(cores), mode).unwrap();
    let (_, out) = sys
        .host
        .machine()
        .wire_port(sys.nic, 0, to_gen.clone(), LinkConfig::default(), gen_link)
        .unwrap();
    let tg = TrafficGen::start(
        &sim,
        TrafficConfig {
            source: Source::Synthetic { sizes, flows: 16 },
            arrivals: Arrivals::Constant,
            rate_gbps,
            frames,
            warmup_frames: 0,
            seed: 7,
        },
        out,
        to_gen,
    )
    .unwrap();
    sim.run_until(Time(Duration::from_ms(10).ps()));
    sim.shutdown();
    let stats = tg.stats.borrow().clone();
    let nic = sys.nic_counters();
    let app = sys.app.borrow().clone();
    (stats, nic, app)
}

fn conserved(nic: &Counters) {
    let drops: u64 = RX_DROPS.iter().map(|d| nic.get(d)).sum();
    assert_eq!(nic.get("rx_frames"), nic.get("appended") + drops, "{nic:?}");
}

#[test]
fn every_frame_comes_back_echoed_in_each_mode() {
    for mode in [
        NotificationMode::PerPacket,
        NotificationMode::Reactive,
        NotificationMode::Prefetch,
    ] {
        let (s, nic, app) = run(mode, 1, SizeSpec::Fixed(64), 10.0, 5_000);
        assert_eq!(s.sent, 5_000);
        assert_eq!(s.received, 5_000, "{mode:?} {nic:?}");
        assert_eq!(
            (s.corrupt, s.not_echoed, s.reordered),
            (0, 0, 0),
            "{mode:?}"
        );
        assert_eq!(app.get("echoed"), 5_000);
        assert_eq!(nic.get("tx_frames"), 5_000);
        conserved(&nic);
    }
}

#[test]
fn mixed_sizes_and_several_cores_wrap_the_rings() {
    // 20k frames of up to 1518 B are far more than one 2 MiB ring per core.
    let (s, nic, app) = run(
        NotificationMode::Reactive,
        2,
        SizeSpec::Uniform(64, 1518),
        40.0,
        20_000,
    );
    assert_eq!(s.received, 20_000, "{nic:?} {app:?}");
    assert_eq!((s.corrupt, s.not_echoed), (0, 0));
    assert!(
        nic.get("appended_bytes") > 4 * (2 << 20),
        "both rings wrapped more than once"
    );
    conserved(&nic);
}

#[test]
fn per_packet_mode_sends_one_notification_per_packet() {
    let (_, nic, _) = run(
        NotificationMode::PerPacket,
        1,
        SizeSpec::Fixed(64),
        10.0,
        2_000,
    );
    assert_eq!(nic.get("notifications.rx"), 2_000);
    let (_, nic, _) = run(
        NotificationMode::Reactive,
        1,
        SizeSpec::Fixed(64),
        50.0,
        20_000,
    );
    assert!(nic.get("notifications.rx") < 20_000, "{nic:?}");
}

#[test]
fn same_seed_same_counters() {
    let a = run(
        NotificationMode::Prefetch,
        2,
        SizeSpec::Uniform(64, 512),
        30.0,
        5_000,
    );
    let b = run(
        NotificationMode::Prefetch,
        2,
        SizeSpec::Uniform(64, 512),
        30.0,
        5_000,
    );
    assert_eq!(a.1, b.1);
    assert_eq!(a.2, b.2);
    assert_eq!(a.0.rtt.quantile(0.99), b.0.rtt.quantile(0.99));
}
