//! The `pcie-bandwidth` experiment in quick mode: every simulated
//! bandwidth is within its tolerance of pcie-bench's closed form (and says
//! that its reference is a closed form, not a measurement), the sizes
//! span 64 B to 4 KiB, and two runs with the same seed agree on everything
//! but the wall-clock fields.

use nextio_experiments::{
    ExperimentResult, Origin, Params, Reference, RunContext, Verdict, execute, find,
};

fn run_quick(seed: u64) -> ExperimentResult {
    let exp = find("pcie-bandwidth").expect("pcie-bandwidth is registered");
    let params = Params::resolve(exp.name(), exp.params(), true, &[]).expect("defaults parse");
    execute(exp, RunContext::new(params, seed, true)).expect("the experiment runs")
}

#[test]
fn every_check_passes_in_quick_mode() {
    let r = run_quick(1);
    assert!(!r.checks.is_empty());
    for c in &r.checks {
        assert_eq!(
            c.verdict,
            Verdict::Within,
            "{}: model {} vs closed form {:?}",
            c.id,
            c.model,
            c.paper
        );
        // The reference is pcie-bench's formula, not a measurement.
        assert_eq!(
            (c.origin, c.reference),
            (Origin::Validation, Reference::ClosedForm)
        );
    }
    for id in ["write-64B", "read-64B", "write-4096B", "read-4096B"] {
        assert!(r.checks.iter().any(|c| c.id == id), "missing check {id}");
    }
    let names: Vec<&str> = r.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["simulated", "closed form: pcie-bench model"]);
    assert!(r.sim.packets > 0 && r.sim.simulated_ps > 0);
}

#[test]
fn same_seed_gives_the_same_result() {
    assert_eq!(
        run_quick(7).without_wall_clock(),
        run_quick(7).without_wall_clock()
    );
}
