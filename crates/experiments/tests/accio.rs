//! The Accio experiments on small parameters: conservation across a link
//! flap and across table multiplexing (every datagram delivered or
//! counted), the fast path back after the flap, refills only when sockets
//! outnumber rows, DPDK's shared NIC delivering every echo (alone and in
//! Fig. 8 beside Accio and RDMA), Accio in front
//! of streaming rings (batched notifications, idle sockets that cost
//! nothing where Ensō's spin), and runs that repeat exactly for a seed.

use nextio_experiments::{ExperimentResult, Params, RunContext, execute, find};

fn run(name: &str, sets: &[&str], seed: u64) -> ExperimentResult {
    let exp = find(name).unwrap_or_else(|| panic!("{name} is not registered"));
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let params = Params::resolve(name, exp.params(), true, &sets).expect("parameters");
    execute(exp, RunContext::new(params, seed, true)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn model(r: &ExperimentResult, id: &str) -> f64 {
    r.checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("{}: no check {id}", r.experiment))
        .model
}

#[test]
fn a_link_flap_loses_nothing_unaccounted_and_the_fast_path_returns() {
    for (down, at) in [("100", "0.3"), ("400", "0.6")] {
        let r = run(
            "accio-fallback",
            &[
                "datagrams=200",
                &format!("down_us={down}"),
                &format!("down_at={at}"),
            ],
            1,
        );
        assert_eq!(model(&r, "tx-unaccounted"), 0.0);
        assert_eq!(model(&r, "rx-unaccounted"), 0.0);
        assert_eq!(model(&r, "back-on-fast-path"), 2.0, "both sockets resumed");
        assert!(
            model(&r, "via-fallback") > 0.0,
            "the kernel path carried traffic"
        );
    }
}

#[test]
fn multiplexing_refills_only_beyond_the_rows_and_loses_nothing() {
    let r = run(
        "accio-ict-pressure",
        &["sockets=16,96", "slots=32", "rounds=1"],
        1,
    );
    assert_eq!(model(&r, "lost"), 0.0);
    assert_eq!(model(&r, "refills-per-message-16"), 0.0);
    assert!(model(&r, "refills-per-message-96") > 0.0);
}

#[test]
fn processes_sharing_dpdk_get_every_echo() {
    // The run fails if an echo is missing or unmatched.
    let r = run("dpdk-multiprocess", &["processes=1,3", "messages=10"], 1);
    assert!(model(&r, "shared-3") > 0.0);
}

#[test]
fn fig8_runs_dpdk_sharing_beside_accio_and_rdma() {
    // The run fails if an echo is missing or unmatched.
    let r = run("accio-multiplex", &["processes=1,4", "messages=5"], 1);
    for n in [1, 4] {
        assert!(model(&r, &format!("dpdk-p50-T{n}")) > 0.0);
        assert!(model(&r, &format!("dpdk-over-accio-T{n}")) > 0.0);
        assert!(model(&r, &format!("dpdk-over-rdma-T{n}")) > 0.0);
        let cdf = r
            .series
            .iter()
            .find(|s| s.name == format!("dpdk T={n}"))
            .expect("DPDK's CDF");
        assert_eq!(cdf.points.len(), 5 * n);
    }
}

#[test]
fn accio_runs_repeat_for_a_seed() {
    for (name, sets) in [
        ("accio-latency", &["sizes=64", "messages=10"][..]),
        ("accio-multiplex", &["processes=1,4", "messages=5"][..]),
    ] {
        let a = run(name, sets, 7);
        let b = run(name, sets, 7);
        let values = |r: &ExperimentResult| r.checks.iter().map(|c| c.model).collect::<Vec<_>>();
        assert_eq!(values(&a), values(&b), "{name}");
        assert_eq!(a.series, b.series, "{name}");
    }
}

#[test]
fn accio_with_enso_batches_blocks_idle_sockets_and_repeats() {
    // The run fails if a datagram arrives twice or out of order.
    let sets = &["sizes=64,1024", "duration_us=60"][..];
    let a = run("accio-with-enso", sets, 3);
    let b = run("accio-with-enso", sets, 3);
    let values = |r: &ExperimentResult| r.checks.iter().map(|c| c.model).collect::<Vec<_>>();
    assert_eq!(values(&a), values(&b));
    assert_eq!(a.series, b.series);
    assert_eq!(a.checks.len(), 18);
    assert!(model(&a, "combined-mpps") > 0.0);
    assert!(model(&a, "combined-notifications-per-dgram") < 1.0);
    assert!(model(&a, "accio-notifications-per-dgram") >= 1.0);
    assert_eq!(model(&a, "combined-idle-core-busy"), 0.0);
    assert!(model(&a, "enso-idle-core-busy") > 0.9);
}
