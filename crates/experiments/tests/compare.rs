//! `compare`: a rerun of one configuration agrees on every number; a
//! moved value, a flipped verdict, a vanished check or experiment is found
//! and counted; unreadable input is an error, not a panic.

use std::collections::BTreeMap;

use nextio_experiments::compare::{self, CompareError};
use nextio_experiments::{ExperimentResult, Params, RunContext, Verdict, execute, find};

fn run(seed: u64) -> ExperimentResult {
    let exp = find("ethernet-linerate").expect("registered");
    let set = ["frame_bytes=64,1518".to_string(), "frames=200".to_string()];
    let params = Params::resolve(exp.name(), exp.params(), true, &set).expect("parameters");
    execute(exp, RunContext::new(params, seed, true)).expect("runs")
}

fn side(r: ExperimentResult) -> BTreeMap<String, ExperimentResult> {
    BTreeMap::from([(r.experiment.clone(), r)])
}

#[test]
fn a_rerun_agrees_on_every_number() {
    let c = compare::compare(&side(run(1)), &side(run(1)));
    assert!(c.identical(), "{c:?}");
    assert_eq!(c.verdict_changes(), 0);
    assert!(c.points_compared > 0 && !c.checks.is_empty());
    assert!(compare::render(&c, "a", "b", 10).contains("agree on every number"));
}

#[test]
fn moved_values_and_flipped_verdicts_are_found() {
    let a = run(1);
    let mut b = a.clone();
    b.checks[0].model *= 1.5;
    b.checks[0].verdict = Verdict::Miss;
    let f = b.series[0].y[0].clone();
    let v = b.series[0].points[0][&f].as_f64().unwrap();
    b.series[0].points[0].insert(f.clone(), serde_json::json!(v + 1.0));
    let removed = b.checks.pop().unwrap();
    let c = compare::compare(&side(a.clone()), &side(b));
    assert_eq!(c.verdict_changes(), 2, "one flipped, one vanished: {c:?}");
    assert!(c.checks.iter().any(|d| d.id == removed.id && d.b.is_none()));
    assert_eq!(c.points.len(), 1);
    assert_eq!(c.points[0].field, f);
    assert!(!c.identical());
    let text = compare::render(&c, "a", "b", 10);
    assert!(text.contains("within → miss"), "{text}");
}

#[test]
fn a_different_configuration_is_named() {
    let c = compare::compare(&side(run(1)), &side(run(2)));
    assert!(c.config.iter().any(|(_, what, ..)| what == "seed"));
}

#[test]
fn an_experiment_on_one_side_only_is_a_change() {
    let a = side(run(1));
    let mut b = a.clone();
    let mut other = run(1);
    other.experiment = "renamed".into();
    b.insert("renamed".into(), other);
    let c = compare::compare(&a, &b);
    assert_eq!(c.lone, vec![("renamed".to_string(), false)]);
    assert_eq!(c.verdict_changes(), 1);
}

#[test]
fn folders_files_and_bad_input() {
    let dir = std::env::temp_dir().join(format!("nextio-compare-{}", std::process::id()));
    let exp_dir = dir.join("ethernet-linerate");
    std::fs::create_dir_all(&exp_dir).unwrap();
    let r = run(1);
    std::fs::write(
        exp_dir.join("result.json"),
        serde_json::to_string(&r).unwrap(),
    )
    .unwrap();
    let folder = compare::load(&dir).unwrap();
    let file = compare::load(&exp_dir.join("result.json")).unwrap();
    let one = compare::load(&exp_dir).unwrap();
    assert_eq!(folder.len(), 1);
    assert_eq!(folder, file);
    assert_eq!(file, one);
    std::fs::write(exp_dir.join("result.json"), b"{ not json").unwrap();
    assert!(matches!(
        compare::load(&dir),
        Err(CompareError::NotAResult(..))
    ));
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(matches!(compare::load(&empty), Err(CompareError::Empty(_))));
    assert!(matches!(
        compare::load(&dir.join("missing")),
        Err(CompareError::Unreadable(..))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
