//! A run split into shards and merged is the run itself: every
//! simulation is computed by exactly one shard, and the merged result is
//! byte for byte the unsharded one (wall-clock fields aside) — for a
//! sweep, for a run that sweeps twice, for a one-simulation run, and
//! under several seeds. Partials that do not belong together are refused.

use nextio_experiments::shard::{self, PARTIAL_FORMAT, Partial, Shard, ShardedRun};
use nextio_experiments::{ExperimentResult, Params, RunContext, execute, find, seeds};

fn asked(name: &str, set: &[&str], seeds: u64) -> ShardedRun {
    ShardedRun {
        experiment: name.into(),
        quick: true,
        seed: 7,
        seeds,
        set: set.iter().map(|s| s.to_string()).collect(),
        primitives: Vec::new(),
        config: None,
        version: env!("CARGO_PKG_VERSION").into(),
        commit: None,
    }
}

fn params(run: &ShardedRun) -> Params {
    let exp = find(&run.experiment).unwrap();
    Params::resolve(exp.name(), exp.params(), run.quick, &run.set).unwrap()
}

/// The run unsharded, its seeds summarised.
fn whole(run: &ShardedRun) -> ExperimentResult {
    let exp = find(&run.experiment).unwrap();
    let runs: Vec<ExperimentResult> = (0..run.seeds)
        .map(|k| execute(exp, RunContext::new(params(run), run.seed + k, true)).unwrap())
        .collect();
    seeds::summarise(runs).unwrap()
}

fn json(r: ExperimentResult) -> String {
    serde_json::to_string_pretty(&r.without_wall_clock()).unwrap()
}

fn partial(run: &ShardedRun, shard: Shard) -> Partial {
    let exp = find(&run.experiment).unwrap();
    let mut points = Vec::new();
    for k in 0..run.seeds {
        let ctx = RunContext::new(params(run), run.seed + k, true);
        points.extend(shard::execute_shard(exp, ctx, shard, k).unwrap());
    }
    Partial {
        format: PARTIAL_FORMAT,
        shard,
        run: run.clone(),
        command: "nextio run".into(),
        started: String::new(),
        wall_s: 0.0,
        points,
    }
}

fn shards(n: u32) -> impl Iterator<Item = Shard> {
    (1..=n).map(move |index| Shard { index, count: n })
}

/// Split `run` into `n` shards, check each simulation is computed once,
/// merge, and compare with the unsharded run.
fn split_and_merge(run: &ShardedRun, n: u32) -> Vec<Partial> {
    let exp = find(&run.experiment).unwrap();
    let parts: Vec<Partial> = shards(n).map(|s| partial(run, s)).collect();
    let mut computed: Vec<(u64, usize)> = parts
        .iter()
        .flat_map(|p| p.points.iter().map(|r| (r.seed_index, r.point)))
        .collect();
    let total = computed.len();
    computed.sort();
    computed.dedup();
    assert_eq!(computed.len(), total, "a simulation computed twice");
    let of = parts.iter().flat_map(|p| &p.points).map(|r| r.of).next();
    assert_eq!(
        total as u64,
        run.seeds * of.unwrap() as u64,
        "every simulation of every seed computed"
    );
    let mut merged = shard::merge(exp, &parts).unwrap();
    merged.run.command = String::new();
    let mut single = whole(run);
    single.run.command = String::new();
    assert_eq!(json(merged), json(single), "{}", run.experiment);
    parts
}

#[test]
fn a_sweep_in_four_shards_merges_into_the_unsharded_result() {
    let run = asked("pcie-bandwidth", &[], 1);
    let parts = split_and_merge(&run, 4);
    assert!(
        parts.iter().all(|p| !p.points.is_empty()),
        "every shard of this sweep has work"
    );
    // The merge does not depend on the order the partials come in.
    let exp = find("pcie-bandwidth").unwrap();
    let mut reversed = parts.clone();
    reversed.reverse();
    assert_eq!(
        json(shard::merge(exp, &parts).unwrap()),
        json(shard::merge(exp, &reversed).unwrap())
    );
}

#[test]
fn several_seeds_two_sweeps_and_one_simulation_shard_too() {
    split_and_merge(
        &asked(
            "ethernet-linerate",
            &["frame_bytes=64,1518", "frames=200"],
            3,
        ),
        4,
    );
    // A second sweep (the loaded points after the isolated ones) is
    // computed by the merge.
    split_and_merge(&asked("nagare-chain", &[], 1), 3);
    // One simulation: the whole run is one shard's.
    let parts = split_and_merge(&asked("nagare-acl", &[], 1), 4);
    assert_eq!(parts.iter().filter(|p| !p.points.is_empty()).count(), 1);
}

#[test]
fn partials_that_do_not_belong_together_are_refused() {
    let run = asked(
        "ethernet-linerate",
        &["frame_bytes=64,1518", "frames=200"],
        1,
    );
    let exp = find("ethernet-linerate").unwrap();
    let parts: Vec<Partial> = shards(2).map(|s| partial(&run, s)).collect();
    let err = |ps: &[Partial]| shard::merge(exp, ps).unwrap_err().to_string();
    assert!(err(&parts[..1]).contains("shard 2/2 missing"));
    assert!(err(&[parts[0].clone(), parts[0].clone()]).contains("given twice"));
    let mut other = parts[1].clone();
    other.run.seed += 1;
    assert!(err(&[parts[0].clone(), other]).contains("run differently"));
    let mut damaged = parts[1].clone();
    if let Some(p) = damaged.points.first_mut() {
        p.output = "zz".into();
    }
    assert!(err(&[parts[0].clone(), damaged]).contains("damaged"));
    let mut wrong = parts[1].clone();
    wrong.run.experiment = "pcie-bandwidth".into();
    let mut wrong0 = parts[0].clone();
    wrong0.run.experiment = "pcie-bandwidth".into();
    assert!(err(&[wrong0, wrong]).contains("is of"));
}
