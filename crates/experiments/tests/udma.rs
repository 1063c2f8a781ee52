//! The user-space DMA experiments end to end in quick mode: each runs,
//! its checks are declared, a seed replays it exactly, and bad
//! parameters are refused with an error rather than a panic.

use nextio_experiments::experiment::{RunContext, execute};
use nextio_experiments::params::Params;

fn run(name: &str, sets: &[&str], seed: u64) -> nextio_experiments::ExperimentResult {
    let exp = nextio_experiments::find(name).expect("registered");
    let raw: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let params = Params::resolve(name, exp.params(), true, &raw).expect("valid parameters");
    execute(exp, RunContext::new(params, seed, true)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const RUNS: &[(&str, &[&str])] = &[
    (
        "udma-offload",
        &["sizes=64,8192,65536", "ops=4", "inflight=4"],
    ),
    ("udma-submission", &["sizes=64,4096", "ops=5"]),
    (
        "udma-pollution",
        &["working_set_kib=64", "copy_kib=128", "iterations=2"],
    ),
    ("udma-cross-space", &["sizes=64,5000", "messages=3"]),
    ("udma-p2p", &["kib=4,12", "transfers=2"]),
];

#[test]
fn every_udma_experiment_runs_and_replays_exactly() {
    for (name, sets) in RUNS {
        let a = run(name, sets, 7);
        assert!(!a.checks.is_empty(), "{name} declares checks");
        assert!(!a.series.is_empty() && a.series.iter().all(|s| !s.points.is_empty()));
        let b = run(name, sets, 7);
        assert_eq!(
            a.checks, b.checks,
            "{name}: the same seed gives the same checks"
        );
        assert_eq!(a.series, b.series, "{name}: and the same series");
    }
}

#[test]
fn bad_parameters_are_errors() {
    for (name, bad) in [
        ("udma-offload", "sizes=0"),
        ("udma-offload", "inflight=0"),
        ("udma-submission", "sizes=8192"),
        ("udma-pollution", "iterations=0"),
        ("udma-cross-space", "messages=0"),
        ("udma-p2p", "kib=0"),
    ] {
        let exp = nextio_experiments::find(name).expect("registered");
        // Refused where the parameter is declared, or else by the run.
        let refused = match Params::resolve(name, exp.params(), true, &[bad.to_string()]) {
            Err(_) => true,
            Ok(params) => execute(exp, RunContext::new(params, 1, true)).is_err(),
        };
        assert!(refused, "{name} {bad}");
    }
}
