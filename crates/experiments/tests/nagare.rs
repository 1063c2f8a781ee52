//! Nagare's four experiments in quick mode: they run, every check is
//! judged as the model promises (the round trips of Tables 2–3 come out
//! of the transaction log, the access rules hold), and the same seed gives
//! the same result.

use nextio_experiments::experiment::{RunContext, execute};
use nextio_experiments::params::Params;
use nextio_experiments::{ExperimentResult, find};

fn run(name: &str, seed: u64, set: &[&str]) -> ExperimentResult {
    let exp = find(name).unwrap();
    let overrides: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    let params = Params::resolve(name, exp.params(), true, &overrides).unwrap();
    execute(exp, RunContext::new(params, seed, true)).unwrap()
}

fn check(r: &ExperimentResult, id: &str) -> f64 {
    r.checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("{}: no check {id}", r.experiment))
        .model
}

#[test]
fn the_chain_counts_table_2_and_table_3_from_the_transaction_log() {
    let r = run("nagare-chain", 1, &["loads_kmps=500", "messages=100"]);
    assert_eq!(check(&r, "cpu-mediated-rtt"), 9.0);
    assert_eq!(check(&r, "nagare-rtt"), 1.5);
    assert!(check(&r, "nagare-comm-us") < check(&r, "cpu-mediated-comm-us"));
    assert_eq!(check(&r, "nagare-cores"), 0.0);
    assert!(check(&r, "cpu-mediated-cores") > 0.5);
    // The critical path names Table 2's rows: three doorbells, six reads.
    let path = r.series.iter().find(|s| s.name == "critical_path").unwrap();
    let cpu: Vec<_> = path
        .points
        .iter()
        .filter(|p| p["mode"] == "cpu-mediated")
        .collect();
    assert_eq!(cpu.len(), 12);
    assert_eq!(cpu.iter().filter(|p| p["kind"] == "Read").count(), 6);
    assert_eq!(cpu.iter().filter(|p| p["purpose"] == "doorbell").count(), 3);
}

#[test]
fn the_switch_latency_is_the_pipeline_and_only_the_pipeline() {
    let r = run("nagare-switch-latency", 1, &[]);
    let a = check(&r, "added-10x10-3ghz");
    assert!((a - 33.34).abs() < 0.01, "{a}");
    assert!(check(&r, "closed-form-deviation") <= 1.0);
}

#[test]
fn the_access_rules_hold_against_a_misbehaving_device() {
    let r = run("nagare-acl", 3, &["messages=60"]);
    for id in [
        "victim-correct",
        "forged-dropped",
        "forged-logged",
        "bypass-stopped",
        "log-names-offender",
    ] {
        assert_eq!(check(&r, id), 1.0, "{id}");
    }
    assert_eq!(check(&r, "forged-replies"), 0.0);
}

#[test]
fn the_cpu_push_beats_doorbell_and_pull_and_bad_sizes_are_refused() {
    let r = run("nagare-cpu-push", 1, &["sizes=64,1024"]);
    assert!(check(&r, "push-saving-64B") > 0.0);
    let exp = find("nagare-cpu-push").unwrap();
    // Below the declared range: refused before anything is built.
    assert!(Params::resolve("nagare-cpu-push", exp.params(), true, &["sizes=8".into()]).is_err());
    let exp = find("nagare-switch-latency").unwrap();
    let params = Params::resolve(
        "nagare-switch-latency",
        exp.params(),
        true,
        &["stages=4".into()],
    )
    .unwrap();
    assert!(execute(exp, RunContext::new(params, 1, true)).is_err());
}

#[test]
fn the_same_seed_gives_the_same_result() {
    let strip = |r: ExperimentResult| (r.series, r.checks);
    let set = ["loads_kmps=800", "messages=80", "isolated=1"];
    assert_eq!(
        strip(run("nagare-chain", 9, &set)),
        strip(run("nagare-chain", 9, &set))
    );
    assert_eq!(
        strip(run("nagare-acl", 9, &["messages=30"])),
        strip(run("nagare-acl", 9, &["messages=30"]))
    );
}
