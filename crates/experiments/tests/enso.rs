//! The Ensō experiments end to end, small: they run, repeat exactly for a
//! seed, and show the mechanisms the paper is about — the packetized NIC
//! spends a large share of PCIe read bytes on descriptors and Ensō does
//! not; reactive notifications keep up where per-packet ones lose frames.

use nextio_experiments::{ExperimentResult, Params, RunContext, execute, find};
use nextio_hw::packet::{Macs, build_udp};
use nextio_hw::pcap::Capture;
use nextio_hw::trafficgen::synthetic_flow;

fn run(name: &str, seed: u64, set: &[&str]) -> ExperimentResult {
    let exp = find(name).expect("registered");
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    let params = Params::resolve(exp.name(), exp.params(), true, &set).expect("parameters parse");
    execute(exp, RunContext::new(params, seed, true))
        .expect("the experiment runs")
        .without_wall_clock()
}

fn point<'a>(
    r: &'a ExperimentResult,
    series: &str,
    field: &str,
    value: f64,
) -> &'a serde_json::Map<String, serde_json::Value> {
    r.series
        .iter()
        .find(|s| s.name == series)
        .and_then(|s| s.points.iter().find(|p| p[field].as_f64() == Some(value)))
        .unwrap_or_else(|| panic!("no {series} point with {field} = {value}"))
}

const SMALL: [&str; 2] = ["frames=2000", "warmup_frames_per_core=2000"];

#[test]
fn metadata_share_separates_the_interfaces_and_repeats() {
    let set = [SMALL[0], SMALL[1], "frame_bytes=64"];
    let a = run("enso-pcie-metadata", 3, &set);
    let packetized = point(&a, "packetized", "frame_bytes", 64.0)["metadata_share_rd"]
        .as_f64()
        .unwrap();
    let enso = point(&a, "enso", "frame_bytes", 64.0)["metadata_share_rd"]
        .as_f64()
        .unwrap();
    assert!(
        packetized > 0.2,
        "descriptors dominate small-packet reads: {packetized}"
    );
    assert!(enso < 0.1, "Ensō reads little metadata: {enso}");
    assert_eq!(a, run("enso-pcie-metadata", 3, &set));
}

#[test]
fn reactive_keeps_up_where_per_packet_loses() {
    let set = [
        SMALL[0],
        SMALL[1],
        "modes=per-packet,reactive",
        "offered_gbps=10,90",
    ];
    let r = run("enso-notification-latency", 1, &set);
    for mode in ["per-packet", "reactive"] {
        assert_eq!(
            point(&r, mode, "offered_gbps", 10.0)["loss_ratio"].as_f64(),
            Some(0.0),
            "{mode} at 10 Gb/s"
        );
    }
    assert_eq!(
        point(&r, "reactive", "offered_gbps", 90.0)["loss_ratio"].as_f64(),
        Some(0.0)
    );
    assert!(
        point(&r, "per-packet", "offered_gbps", 90.0)["loss_ratio"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn bad_parameters_are_errors() {
    for set in [["cores=0"], ["interfaces=token-ring"], ["frame_bytes=9000"]] {
        let exp = find("enso-packet-rate").unwrap();
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        let outcome = Params::resolve(exp.name(), exp.params(), true, &set)
            .map_err(|e| e.to_string())
            .and_then(|p| execute(exp, RunContext::new(p, 1, true)).map_err(|e| e.to_string()));
        assert!(outcome.is_err(), "{set:?}");
    }
}
/// The bench starts its generator only once the echo host's drivers have
/// handed their rings to the NIC: without a warm-up to hide it, a
/// packetized echo at a light load loses nothing at start-up.
#[test]
fn the_packetized_bench_loses_nothing_at_start_up_without_warm_up() {
    use nextio_experiments::enso::harness::{Interface, Trial, run_trial};
    use nextio_hw::pcie::PcieConfig;
    use nextio_hw::trafficgen::Arrivals;
    let params = Params::resolve(
        "enso-cache-misses",
        find("enso-cache-misses").unwrap().params(),
        true,
        &[],
    )
    .unwrap();
    let ctx = RunContext::new(params, 1, true);
    for cores in [1, 4] {
        let trial = Trial {
            interface: Interface::Packetized,
            cores,
            frame_bytes: 64,
            rate_gbps: 10.0,
            frames: 2000,
            warmup_frames: 0,
            flows: 64,
            arrivals: Arrivals::Constant,
            replay: None,
            pcie: PcieConfig::gen_lanes(3, 16),
            seed: 1,
            app: None,
        };
        let r = run_trial(&ctx, &trial).expect("the trial runs");
        assert_eq!(
            (r.traffic.sent, r.traffic.lost()),
            (2000, 0),
            "{cores} core(s): NIC {:?}",
            r.nic
        );
    }
}

/// A capture of `n` frames of `size` bytes over `flows` flows, 1 µs apart.
fn capture(name: &str, size: usize, flows: u32, n: u64) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nextio-enso-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let mut c = Capture::new();
    for i in 0..n {
        let f = build_udp(
            Macs::default(),
            synthetic_flow((i % flows as u64) as u32),
            &[0; 17],
            size,
        )
        .unwrap();
        c.record(nextio_engine::Time(i * 1_000_000), &f);
    }
    c.write(&path).unwrap();
    path
}

#[test]
fn a_replayed_capture_is_what_the_bench_sends() {
    let big = capture("big.pcap", 1518, 16, 64);
    let replay = format!("traffic_pcap={}", big.display());
    let set = [
        SMALL[0],
        SMALL[1],
        "frame_bytes=64",
        "interfaces=packetized",
        "offered_gbps=10",
    ];
    let synthetic = run("enso-pcie-metadata", 1, &set);
    let mut with_replay = set.to_vec();
    with_replay.push(&replay);
    let replayed = run("enso-pcie-metadata", 1, &with_replay);
    let share = |r: &ExperimentResult| {
        point(r, "packetized", "frame_bytes", 64.0)["metadata_share_rd"]
            .as_f64()
            .unwrap()
    };
    // Descriptors are a large share of 64 B frames' PCIe reads and a small
    // one of 1518 B frames'.
    assert!(
        share(&synthetic) > 3.0 * share(&replayed),
        "synthetic 64 B {} vs replayed 1518 B {}",
        share(&synthetic),
        share(&replayed)
    );
    let input = &replayed.inputs["traffic_pcap"];
    assert_eq!(input["replayed_frames"], 64);
    assert_eq!(input["flows"], 16);
    assert_eq!(input["mean_frame_bytes"], 1518.0);
    assert!(
        replayed.notes[0].starts_with("Traffic replayed from"),
        "{:?}",
        replayed.notes
    );
    assert!(synthetic.inputs.is_empty());

    // The capture's own spacing, scaled to the offered rate, runs too.
    with_replay.push("arrivals=trace");
    let timed = run("enso-pcie-metadata", 1, &with_replay);
    assert!(share(&timed) < share(&synthetic) / 3.0);
}

#[test]
fn replay_skips_are_counted_and_an_unusable_capture_is_an_error() {
    let dir = std::env::temp_dir().join(format!("nextio-enso-skips-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mixed.pcap");
    let mut c = Capture::new();
    let good = build_udp(Macs::default(), synthetic_flow(1), &[0; 17], 128).unwrap();
    let mut v6 = good.clone();
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    let mut tcp = good.clone();
    tcp[23] = 6;
    for f in [&good, &v6, &v6, &tcp, &good[..20].to_vec()] {
        c.record(nextio_engine::Time(0), f);
    }
    c.write(&path).unwrap();
    let set = [
        SMALL[0].to_string(),
        SMALL[1].to_string(),
        "interfaces=enso".to_string(),
        format!("traffic_pcap={}", path.display()),
    ];
    let set: Vec<&str> = set.iter().map(String::as_str).collect();
    let r = run("enso-cache-misses", 1, &set);
    let skipped = &r.inputs["traffic_pcap"]["skipped"];
    assert_eq!(skipped["non_ipv4"], 2);
    assert_eq!(skipped["non_udp"], 1);
    assert_eq!(skipped["runt"], 1);
    assert_eq!(r.inputs["traffic_pcap"]["replayed_frames"], 1);

    // Nothing usable: one clear error that says what the file held.
    let mut c = Capture::new();
    c.record(nextio_engine::Time(0), &v6);
    c.write(&path).unwrap();
    let exp = find("enso-cache-misses").unwrap();
    let bad = vec![format!("traffic_pcap={}", path.display())];
    let p = Params::resolve(exp.name(), exp.params(), true, &bad).unwrap();
    let e = execute(exp, RunContext::new(p, 1, true))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no frame to replay") && e.contains("1 non_ipv4"),
        "{e}"
    );
}
