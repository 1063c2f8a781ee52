//! The Ensō experiments end to end, small: they run, repeat exactly for a
//! seed, and show the mechanisms the paper is about — the packetized NIC
//! spends a large share of PCIe read bytes on descriptors and Ensō does
//! not; reactive notifications keep up where per-packet ones lose frames.

use nextio_experiments::{ExperimentResult, Params, RunContext, execute, find};

fn run(name: &str, seed: u64, set: &[&str]) -> ExperimentResult {
    let exp = find(name).expect("registered");
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    let params = Params::resolve(exp.name(), exp.params(), true, &set).expect("parameters parse");
    let mut r = execute(exp, RunContext::new(params, seed, true)).expect("the experiment runs");
    r.sim.wall_s = 0.0;
    r.sim.events_per_wall_s = 0.0;
    r.sim.packets_per_wall_s = 0.0;
    r
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
