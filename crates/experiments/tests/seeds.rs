//! Several seeds summarised as one result: means with intervals, verdicts
//! on the mean, and runs of different shapes refused.

use nextio_experiments::{Params, RunContext, Verdict, execute, find, seeds};

fn run(seed: u64) -> nextio_experiments::ExperimentResult {
    let exp = find("ethernet-linerate").unwrap();
    let set = vec!["frame_bytes=64,1518".to_string(), "frames=200".to_string()];
    let params = Params::resolve(exp.name(), exp.params(), true, &set).unwrap();
    execute(exp, RunContext::new(params, seed, true)).unwrap()
}

#[test]
fn seeds_are_averaged_and_judged_on_the_mean() {
    let (a, b) = (run(1), run(2));
    let s = seeds::summarise(vec![a.clone(), b.clone()]).unwrap();
    assert_eq!(s.seeds, vec![1, 2]);
    assert_eq!(s.checks.len(), a.checks.len());
    for (c, (x, y)) in s.checks.iter().zip(a.checks.iter().zip(&b.checks)) {
        assert!((c.model - (x.model + y.model) / 2.0).abs() <= 1e-9 * c.model.abs().max(1.0));
        assert!(c.model_ci95.is_some());
        assert_eq!(c.verdict, Verdict::of(c.paper, c.tolerance, c.model));
    }
    assert_eq!(s.sim.events, a.sim.events + b.sim.events);
    assert!(s.notes[0].contains("2 seeds"));

    // A check judged on a mean that misses although one seed was within.
    let mut far = b.clone();
    far.checks[0].model = a.checks[0].model * 3.0;
    let s = seeds::summarise(vec![a.clone(), far]).unwrap();
    assert_eq!(s.checks[0].verdict, Verdict::Miss);

    // Different shapes cannot be averaged.
    let mut short = b.clone();
    short.series[0].points.pop();
    assert!(seeds::summarise(vec![a.clone(), short]).is_err());
    let mut renamed = b;
    renamed.checks[0].id = "something-else".into();
    assert!(seeds::summarise(vec![a, renamed]).is_err());
}
