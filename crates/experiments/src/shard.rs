//! Splitting a run across machines: `--shard I/N` computes a fixed 1/N of
//! a run's independent simulations (the points of its sweep, under each
//! seed) and writes them as a [`Partial`]; [`merge`] replays the
//! experiment with every shard's points and yields exactly the result one
//! unsharded run gives.
//!
//! How it works: an experiment's independent simulations are the points
//! of the first [`RunContext::sweep`] it makes (an experiment that is one
//! simulation sweeps one point, [`RunContext::single`]); everything else
//! in its `run` — building the point list, turning point outputs into
//! series, checks and notes — is the reduce step, cheap and deterministic.
//! A shard runs `run` up to that sweep, computes its own points, and stops.
//! The merge runs `run` again with the sweep answered from the shards'
//! stored outputs, so the reduce step is the very code an unsharded run
//! executes, and later sweeps (which may depend on the first one's
//! results) are computed by the merge itself.
//!
//! Keeps true: point outputs cross the process boundary losslessly (CBOR,
//! every `f64` bit for bit, NaN included), with the work each did (its
//! [`SimTally`]); point `i` of a sweep of `P` points under seed number
//! `k` belongs to shard `(k·P + i + h) mod N` (`h` a fixed hash of the
//! experiment's name, so one-point experiments spread over the shards);
//! a merge refuses partials that disagree on anything but their shard and
//! points, a missing or repeated shard, and a point given twice or not at
//! all.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::experiment::{Experiment, ExperimentResult, RunContext, RunError, SimTally};
use crate::params::Params;

/// File name of a shard's partial result inside `DIR/NAME/`.
pub fn partial_file_name(shard: Shard) -> String {
    format!("partial-{}-of-{}.json", shard.index, shard.count)
}

/// Version of the [`Partial`] layout; a merge refuses any other.
pub const PARTIAL_FORMAT: u32 = 1;

/// Shard `index` of `count`, counted from 1 (`--shard 1/4` … `4/4`, as a
/// batch system's array index runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// Most shards one run may be split into.
pub const MAX_SHARDS: u32 = 100_000;

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("`{s}` is not a shard: write I/N with 1 ≤ I ≤ N (e.g. 2/8)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || index > count || count > MAX_SHARDS {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Whether point `point` of a `points`-point sweep under seed number
    /// `seed_index` of experiment `name` is this shard's.
    pub fn owns(self, name: &str, seed_index: u64, points: usize, point: usize) -> bool {
        let g = seed_index
            .wrapping_mul(points as u64)
            .wrapping_add(point as u64)
            .wrapping_add(name_hash(name));
        g % u64::from(self.count) == u64::from(self.index - 1)
    }
}

/// FNV-1a of `name`: fixed across builds and platforms.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One simulation a shard computed: which point of which seed, the work it
/// did and its output (CBOR, hex).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointRecord {
    pub seed_index: u64,
    pub point: usize,
    /// How many points the sweep had (the same in every shard, or the
    /// partials describe different runs).
    pub of: usize,
    pub tally: SimTally,
    pub output: String,
}

/// What a run shared by every shard was asked: partials merge only if
/// these agree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardedRun {
    pub experiment: String,
    pub quick: bool,
    pub seed: u64,
    pub seeds: u64,
    /// Parameter assignments (`KEY=VALUE`), as given.
    pub set: Vec<String>,
    /// Primitive assignments (`PATH=VALUE`), as given.
    pub primitives: Vec<String>,
    /// The configuration file laid over the presets: its label and text.
    pub config: Option<(String, String)>,
    pub version: String,
    pub commit: Option<String>,
}

/// One shard's share of a run: `DIR/NAME/partial-I-of-N.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    pub format: u32,
    pub shard: Shard,
    pub run: ShardedRun,
    /// The shard's command line without `--shard` and `--jobs` (the first
    /// shard's is what the merged result records, as an unsharded run of
    /// it would).
    pub command: String,
    /// When the shard started (UTC) and how long it took.
    pub started: String,
    pub wall_s: f64,
    pub points: Vec<PointRecord>,
}

/// Which of a run's simulations this context computes.
#[derive(Debug, Default)]
pub(crate) enum Mode {
    /// All of them (an ordinary run).
    #[default]
    All,
    /// This shard's points of the first sweep; the run stops there.
    Shard {
        shard: Shard,
        seed_index: u64,
        name: &'static str,
        done: std::sync::Mutex<Vec<PointRecord>>,
    },
    /// The first sweep answered from stored outputs (by point).
    Replay(BTreeMap<usize, PointRecord>),
}

/// `value` as CBOR, hex-encoded.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<String, RunError> {
    let mut bytes = Vec::new();
    ciborium::into_writer(value, &mut bytes)
        .map_err(|e| RunError::Config(format!("a point's output cannot be stored: {e}")))?;
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        hex.push_str(&format!("{b:02x}"));
    }
    Ok(hex)
}

/// The value [`encode`] stored.
pub(crate) fn decode<T: DeserializeOwned>(hex: &str) -> Result<T, RunError> {
    let bad = |why: String| RunError::Config(format!("a stored point output is damaged: {why}"));
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return Err(bad("not hex".into()));
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    ciborium::from_reader(bytes.as_slice()).map_err(|e| bad(e.to_string()))
}

/// Run seed number `seed_index` of `exp` as shard `shard` in `ctx`: the
/// points of its first sweep that are the shard's, with their work.
pub fn execute_shard(
    exp: &dyn Experiment,
    ctx: RunContext,
    shard: Shard,
    seed_index: u64,
) -> Result<Vec<PointRecord>, RunError> {
    let mut ctx = ctx.in_mode(Mode::Shard {
        shard,
        seed_index,
        name: exp.name(),
        done: Default::default(),
    });
    match crate::experiment::execute_in(exp, &mut ctx) {
        Err(RunError::ShardDone) => {}
        Err(e) => return Err(e),
        Ok(_) => {
            return Err(RunError::Declaration(format!(
                "{} ran without a sweep: it must expose its simulations \
                 (RunContext::sweep or RunContext::single) to be sharded",
                exp.name()
            )));
        }
    }
    match ctx.into_mode() {
        Mode::Shard { done, .. } => {
            let mut points = done.into_inner().unwrap_or_else(|e| e.into_inner());
            points.sort_by_key(|p| p.point);
            Ok(points)
        }
        _ => unreachable!("the mode was set above"),
    }
}

/// Combine the partials of one run of `exp` into its result: the run's
/// parameters resolved again, `run` replayed once per seed with its first
/// sweep answered from the partials, the seeds summarised. The process's
/// primitives must already be the partials' (`run.primitives`,
/// `run.config`).
pub fn merge(exp: &dyn Experiment, partials: &[Partial]) -> Result<ExperimentResult, RunError> {
    let bad = |why: String| RunError::Config(format!("cannot merge {}: {why}", exp.name()));
    let first = partials.first().ok_or_else(|| bad("no partial".into()))?;
    let run = &first.run;
    if run.experiment != exp.name() {
        return Err(bad(format!("a partial is of `{}`", run.experiment)));
    }
    let count = first.shard.count;
    let mut seen = vec![false; count as usize];
    for p in partials {
        if p.format != PARTIAL_FORMAT {
            return Err(bad(format!(
                "partial of format {} (this nextio reads {PARTIAL_FORMAT})",
                p.format
            )));
        }
        if p.run != *run {
            return Err(bad(format!(
                "shard {} was run differently from shard {} (command `{}` against `{}`)",
                p.shard, first.shard, p.command, first.command
            )));
        }
        if p.shard.count != count {
            return Err(bad(format!(
                "shards of {} and of {count} mixed",
                p.shard.count
            )));
        }
        let slot = &mut seen[(p.shard.index - 1) as usize];
        if *slot {
            return Err(bad(format!("shard {} given twice", p.shard)));
        }
        *slot = true;
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(bad(format!("shard {}/{count} missing", missing + 1)));
    }
    let params = Params::resolve(exp.name(), exp.params(), run.quick, &run.set)?;
    let mut runs = Vec::new();
    for k in 0..run.seeds {
        let mut stored = BTreeMap::new();
        for rec in partials.iter().flat_map(|p| &p.points) {
            if rec.seed_index != k {
                continue;
            }
            if stored.insert(rec.point, rec.clone()).is_some() {
                return Err(bad(format!(
                    "point {} of seed {} given by two shards",
                    rec.point, k
                )));
            }
        }
        let mut ctx = RunContext::new(params.clone(), run.seed.wrapping_add(k), run.quick)
            .in_mode(Mode::Replay(stored));
        let mut result = crate::experiment::execute_in(exp, &mut ctx)?;
        result.run.command = first.command.clone();
        result.run.commit = run.commit.clone();
        result.run.started = first.started.clone();
        runs.push(result);
    }
    let mut result = crate::seeds::summarise(runs)?;
    // The simulations ran in the shards: their wall clock is the shards'.
    let wall_s: f64 = partials.iter().map(|p| p.wall_s).sum();
    result.sim.wall_s = wall_s;
    let per_s = |n: u64| if wall_s > 0.0 { n as f64 / wall_s } else { 0.0 };
    result.sim.events_per_wall_s = per_s(result.sim.events);
    result.sim.packets_per_wall_s = per_s(result.sim.packets);
    Ok(result)
}

/// `name` as a `&'static str` (what models name counters and categories
/// by) after a partial's round trip: each distinct name is kept once for
/// the process's life.
fn intern(name: String) -> &'static str {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.get(name.as_str()) {
        return n;
    }
    let n: &'static str = Box::leak(name.into_boxed_str());
    names.insert(n);
    n
}

/// A model's name for something (a purpose, a category), spelled so
/// that serde does not take a field of it for a borrow of its input.
pub type Name = &'static str;

/// A `&'static str` field through a partial (`#[serde(with =
/// "crate::shard::name")]`, the field typed [`Name`]).
pub mod name {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &&'static str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(n)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
        Ok(super::intern(String::deserialize(d)?))
    }
}

/// A list of named values, `Vec<(&'static str, T)>`, through a partial.
pub mod named {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(
        v: &[(&'static str, T)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: DeserializeOwned>(
        d: D,
    ) -> Result<Vec<(&'static str, T)>, D::Error> {
        Ok(Vec::<(String, T)>::deserialize(d)?
            .into_iter()
            .map(|(n, v)| (super::intern(n), v))
            .collect())
    }
}

/// [`nextio_engine::Counters`] through a partial (`#[serde(with =
/// "crate::shard::counters")]`): its names and values in order.
pub mod counters {
    use nextio_engine::Counters;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(c: &Counters, s: S) -> Result<S::Ok, S::Error> {
        c.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Counters, D::Error> {
        let mut c = Counters::new();
        for (name, n) in Vec::<(String, u64)>::deserialize(d)? {
            c.add(super::intern(name), n);
        }
        Ok(c)
    }
}

/// `args` without `--shard V` / `--shard=V` and `--jobs V` / `--jobs=V`,
/// joined as a command line.
pub fn command_without_shard(args: &[String]) -> String {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a == "--shard" || a == "--jobs" {
            skip = true;
            continue;
        }
        if a.starts_with("--shard=") || a.starts_with("--jobs=") {
            continue;
        }
        out.push(a.clone());
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_from_one() {
        assert_eq!("2/8".parse::<Shard>(), Ok(Shard { index: 2, count: 8 }));
        for bad in ["0/4", "5/4", "1", "a/4", "1/0", "-1/4", "1/1000001"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_point_has_exactly_one_shard() {
        for n in 1..7u32 {
            for points in [1usize, 2, 5, 13] {
                for k in 0..3 {
                    for i in 0..points {
                        let owners = (1..=n)
                            .filter(|&s| Shard { index: s, count: n }.owns("exp", k, points, i))
                            .count();
                        assert_eq!(owners, 1);
                    }
                }
            }
        }
    }

    #[test]
    fn outputs_round_trip_bit_for_bit() {
        let v = (
            vec![0.1f64, -0.0, f64::NAN, f64::INFINITY, 1e-300, 2.0],
            u64::MAX,
            "text".to_string(),
        );
        let back: (Vec<f64>, u64, String) = decode(&encode(&v).unwrap()).unwrap();
        let bits = |x: &[f64]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.0), bits(&v.0));
        assert_eq!((back.1, back.2), (v.1, v.2));
        assert!(decode::<u64>("zz").is_err());
        assert!(decode::<u64>("a").is_err());
    }

    #[test]
    fn the_command_drops_shard_and_jobs() {
        let args: Vec<String> = "nextio run x --shard 2/4 --quick --jobs=3 --out d"
            .split(' ')
            .map(String::from)
            .collect();
        assert_eq!(command_without_shard(&args), "nextio run x --quick --out d");
    }
}
