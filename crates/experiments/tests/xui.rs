//! The six xUI experiments: each runs on small parameters, reports the
//! paper's numbers beside the model's, is deterministic for a seed, and
//! turns bad parameters into errors instead of panics.

use nextio_experiments::{Params, RunContext, execute, find};

const SMALL: &[(&str, &[&str])] = &[
    (
        "xui-receiver-overhead",
        &["interval_us=5,50", "program_ms=1"],
    ),
    ("xui-safepoints", &["quantum_us=5,50", "program_ms=1"]),
    (
        "xui-timer-core",
        &["workers=1,8", "interval_us=5", "ticks=50"],
    ),
    ("xui-rocksdb", &["offered_krps=50,150", "duration_ms=20"]),
    (
        "xui-rocksdb",
        &["offered_krps=50,150", "duration_ms=20", "workers=3"],
    ),
    (
        "xui-l3fwd",
        &["queues=1,4", "load=0,0.4", "duration_us=200", "routes=2000"],
    ),
    ("xui-dsa", &["mean_us=2", "noise_frac=0,1", "requests=200"]),
];

fn run(name: &str, sets: &[&str], seed: u64) -> serde_json::Value {
    let exp = find(name).unwrap_or_else(|| panic!("{name} is not registered"));
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let params = Params::resolve(name, exp.params(), true, &sets).expect("parameters");
    let r = execute(exp, RunContext::new(params, seed, true)).expect("run");
    assert!(!r.checks.is_empty(), "{name}: no checks");
    assert!(
        r.checks.iter().any(|c| c.paper.is_some()),
        "{name}: no paper value"
    );
    for c in &r.checks {
        assert!(c.model.is_finite(), "{name}/{}: {}", c.id, c.model);
    }
    serde_json::json!({"series": r.series, "checks": r.checks})
}

#[test]
fn every_xui_experiment_runs_and_is_deterministic() {
    for (name, sets) in SMALL {
        let a = run(name, sets, 7);
        let b = run(name, sets, 7);
        assert_eq!(a, b, "{name}: same seed, different result");
    }
}

#[test]
fn busy_spinning_leaves_no_cycle_free() {
    // Not a check (it holds by construction: spinning is charged as
    // polling), but a regression would mean the ledger lost its time.
    let v = run("xui-dsa", &["mean_us=2", "noise_frac=0", "requests=200"], 1);
    let mut seen = 0;
    for s in v["series"].as_array().into_iter().flatten() {
        for p in s["points"].as_array().into_iter().flatten() {
            if p["mechanism"] == "spin" {
                assert_eq!(p["free_cycles"], 0.0, "{p}");
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 1);
}

#[test]
fn bad_parameters_are_errors() {
    for (name, bad) in [
        ("xui-receiver-overhead", "interval_us=0"),
        ("xui-safepoints", "program_ms=0"),
        ("xui-timer-core", "ticks=0"),
        ("xui-rocksdb", "offered_krps=0"),
        ("xui-rocksdb", "workers=0"),
        ("xui-timer-core", "workers=0"),
        ("xui-rocksdb", "workers=65"),
        ("xui-l3fwd", "queues=0"),
        ("xui-l3fwd", "load=2"),
        ("xui-dsa", "noise_frac=2"),
    ] {
        let exp = find(name).unwrap();
        // Refused by the declared range, or by the experiment's own checks.
        let refused = Params::resolve(name, exp.params(), true, &[bad.to_string()])
            .map_err(|e| e.to_string())
            .and_then(|p| execute(exp, RunContext::new(p, 1, true)).map_err(|e| e.to_string()));
        assert!(refused.is_err(), "{name} accepted {bad}");
    }
}

#[test]
fn l3fwd_on_the_nic_forwards_the_offer_and_xui_frees_cycles() {
    let v = run(
        "xui-l3fwd",
        &["queues=1,4", "load=0,0.4", "duration_us=300", "routes=2000"],
        5,
    );
    let mut seen = 0;
    let model = v["series"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["kind"] == "model");
    for s in model {
        for p in s["points"].as_array().into_iter().flatten() {
            seen += 1;
            let (mech, load) = (
                p["mechanism"].as_str().unwrap(),
                p["load"].as_f64().unwrap(),
            );
            let free = p["free_cycles"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&free), "{p}");
            if load == 0.0 {
                assert_eq!(p["throughput_mpps"], 0.0, "{p}");
                // Idle polling still burns the core; xUI sleeps.
                assert_eq!(free, if mech == "xui" { 1.0 } else { 0.0 }, "{p}");
            } else {
                assert!(p["throughput_mpps"].as_f64().unwrap() > 0.0, "{p}");
                assert!(p["p95_latency_ns"].as_f64().unwrap() > 0.0, "{p}");
                if mech == "xui" {
                    assert!(free > 0.05, "{p}");
                } else {
                    assert_eq!(free, 0.0, "{p}");
                }
            }
        }
    }
    assert_eq!(seen, 8, "2 mechanisms × 2 queue counts × 2 loads");
}
