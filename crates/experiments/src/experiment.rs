//! What an experiment is: a named reproduction of one paper figure or table
//! that declares its parameters, runs simulations, and returns series of
//! points plus checks that put the paper's number beside the model's.
//!
//! The framework (not the experiment) fills in the run's identity, seed,
//! parameters and simulator statistics, so every `result.json` has the same
//! shape whoever wrote the experiment. What a run read from outside its
//! parameters (a replayed capture: what it held, what was skipped and why)
//! is recorded through [`RunContext::record_input`] and lands in
//! `result.json`'s `inputs` and in its notes.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use nextio_engine::Sim;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::params::{ParamError, ParamSpec, Params};

/// A reproducible experiment.
pub trait Experiment: Sync {
    /// Stable name used on the command line and in result paths.
    fn name(&self) -> &'static str;
    /// The figure, table or model this reproduces.
    fn reproduces(&self) -> &'static str;
    /// One paragraph: what is simulated and what is measured.
    fn about(&self) -> &'static str;
    /// Parameters accepted with `--set KEY=VALUE`.
    fn params(&self) -> &'static [ParamSpec];
    /// Run with validated parameters.
    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError>;
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl RunError {
    /// A capture that could not be written is an I/O failure (it names
    /// its path); one that could not be read is bad input.
    pub fn from_capture(e: nextio_hw::pcap::PcapError) -> RunError {
        match e {
            nextio_hw::pcap::PcapError::Write { ref source, .. } => {
                RunError::Io(std::io::Error::new(source.kind(), e.to_string()))
            }
            other => RunError::Config(other.to_string()),
        }
    }
}

/// Everything an experiment's `run` may read, plus the sinks it reports to.
pub struct RunContext {
    pub params: Params,
    pub seed: u64,
    pub quick: bool,
    /// Where links should write their wire traffic as pcap, if asked.
    pub pcap_dir: Option<PathBuf>,
    /// Where simulations made by [`RunContext::new_sim`] write their event
    /// traces, if asked.
    pub trace_dir: Option<PathBuf>,
    progress: Box<dyn Fn(f64) + Sync>,
    tally: Mutex<SimTally>,
    inputs: Mutex<Map<String, Value>>,
    input_notes: Mutex<Vec<String>>,
}

/// Work done by the simulator during a run, for the speed report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimTally {
    pub events: u64,
    pub simulated_ps: u64,
    /// Packets (frames, TLPs or requests — whatever the experiment moves).
    pub packets: u64,
}

impl SimTally {
    /// Count the work of a finished `sim` that moved `packets` packets.
    pub fn of(sim: &Sim, packets: u64) -> SimTally {
        SimTally {
            events: sim.events(),
            simulated_ps: sim.now().ps(),
            packets,
        }
    }
    pub fn add(&mut self, other: SimTally) {
        self.events += other.events;
        self.simulated_ps += other.simulated_ps;
        self.packets += other.packets;
    }
}

impl RunContext {
    pub fn new(params: Params, seed: u64, quick: bool) -> RunContext {
        RunContext {
            params,
            seed,
            quick,
            pcap_dir: None,
            trace_dir: None,
            progress: Box::new(|_| {}),
            tally: Mutex::new(SimTally::default()),
            inputs: Mutex::new(Map::new()),
            input_notes: Mutex::new(Vec::new()),
        }
    }
    /// Record what the run read as input `key` (shown in `result.json`'s
    /// `inputs`), with a note that says it in words.
    pub fn record_input(&self, key: &str, what: Value, note: String) {
        self.inputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), what);
        self.input_notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(note);
    }
    pub fn with_progress(mut self, f: impl Fn(f64) + Sync + 'static) -> Self {
        self.progress = Box::new(f);
        self
    }
    pub fn with_pcap_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.pcap_dir = dir;
        self
    }
    pub fn with_trace_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.trace_dir = dir;
        self
    }
    /// A fresh simulator, tracing every event if the run asked for traces.
    pub fn new_sim(&self) -> Sim {
        let sim = Sim::new();
        if self.trace_dir.is_some() {
            sim.enable_trace();
        }
        sim
    }
    /// Account a finished simulation that moved `packets` packets, and write
    /// its trace to `TRACE_DIR/<label>.trace` if traces were asked for.
    pub fn finish_sim(&self, label: &str, sim: &Sim, packets: u64) -> Result<(), RunError> {
        self.record(SimTally::of(sim, packets));
        self.write_trace(label, sim)
    }
    /// Write `sim`'s trace to `TRACE_DIR/<label>.trace`, if traces were
    /// asked for (labels must be unique within a run).
    pub fn write_trace(&self, label: &str, sim: &Sim) -> Result<(), RunError> {
        let Some(dir) = &self.trace_dir else {
            return Ok(());
        };
        let (records, dropped) = sim.take_trace();
        std::fs::create_dir_all(dir).map_err(|e| crate::output::path_error(dir, e))?;
        let mut text = String::with_capacity(records.len() * 32);
        for r in &records {
            text.push_str(&format!("{} {}\n", r.time.ps(), r.message));
        }
        if dropped > 0 {
            text.push_str(&format!("# {dropped} later records not kept\n"));
        }
        let path = dir.join(format!("{}.trace", crate::output::file_stem(label)));
        crate::output::write_atomically(&path, text.as_bytes())?;
        Ok(())
    }
    /// Report progress as a fraction 0–1.
    pub fn progress(&self, fraction: f64) {
        (self.progress)(fraction.clamp(0.0, 1.0));
    }
    /// Add a finished simulation's work to the run's totals.
    pub fn record(&self, tally: SimTally) {
        self.tally
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(tally);
    }
    pub fn tally(&self) -> SimTally {
        *self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The seed for point `index` of a sweep: distinct per point, fixed by
    /// the run seed, so points can run in any order or in parallel.
    pub fn point_seed(&self, index: usize) -> u64 {
        self.seed
            .wrapping_add((index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
    /// Run independent sweep points in parallel (each builds its own
    /// simulator), returning results in input order and reporting progress.
    pub fn sweep<P: Sync, T: Send>(
        &self,
        points: &[P],
        f: impl Fn(usize, &P) -> Result<T, RunError> + Sync,
    ) -> Result<Vec<T>, RunError> {
        let done = AtomicUsize::new(0);
        let n = points.len().max(1);
        points
            .par_iter()
            .enumerate()
            .map(|(i, p)| {
                let r = f(i, p);
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                self.progress(d as f64 / n as f64);
                r
            })
            .collect()
    }
}

/// One paper-versus-model comparison.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub id: String,
    pub claim: String,
    /// The published value, or `null` where the paper gives none.
    pub paper: Option<f64>,
    pub model: f64,
    pub unit: String,
    /// Relative tolerance the comparison is judged by, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tolerance: Option<f64>,
    /// Whether `model` is within `tolerance` of `paper` (null: not judged).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pass: Option<bool>,
}

impl Check {
    pub fn new(
        id: impl Into<String>,
        claim: impl Into<String>,
        paper: Option<f64>,
        model: f64,
        unit: impl Into<String>,
    ) -> Check {
        Check {
            id: id.into(),
            claim: claim.into(),
            paper,
            model,
            unit: unit.into(),
            tolerance: None,
            pass: None,
        }
    }
    /// Judge the model against the paper with relative tolerance `rel`.
    pub fn within(mut self, rel: f64) -> Check {
        self.tolerance = Some(rel);
        self.pass = self.paper.map(|p| relative_error(p, self.model) <= rel);
        self
    }
    /// The judgement in words: "within tolerance", "miss", or "" (not judged).
    pub fn verdict(&self) -> &'static str {
        match self.pass {
            Some(true) => "within tolerance",
            Some(false) => "miss",
            None => "",
        }
    }
    /// Relative error of the model against the paper, if there is a paper value.
    pub fn error(&self) -> Option<f64> {
        self.paper.map(|p| relative_error(p, self.model))
    }
}

/// `|model − reference| / |reference|`, or the absolute error when the
/// reference is zero.
pub fn relative_error(reference: f64, model: f64) -> f64 {
    if reference == 0.0 {
        model.abs()
    } else {
        ((model - reference) / reference).abs()
    }
}

/// A set of points for one curve family: each point is a JSON object with
/// (at least) the `x` field and every `y` field.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Series {
    pub name: String,
    pub x: String,
    pub y: Vec<String>,
    pub points: Vec<Map<String, Value>>,
}

impl Series {
    pub fn new(name: impl Into<String>, x: &str, y: &[&str]) -> Series {
        Series {
            name: name.into(),
            x: x.into(),
            y: y.iter().map(|s| s.to_string()).collect(),
            points: Vec::new(),
        }
    }
    /// An empty series with the same name and axes.
    pub fn clone_shape(&self) -> Series {
        Series::new(
            self.name.clone(),
            &self.x,
            &self.y.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    }
    /// Add a point; `point` must be a JSON object (`serde_json::json!({..})`).
    pub fn push(&mut self, point: Value) {
        if let Value::Object(map) = point {
            self.points.push(map);
        }
    }
    /// `(x, y)` pairs of numeric field `y`, in point order.
    pub fn xy(&self, y: &str) -> Vec<(f64, f64)> {
        self.points
            .iter()
            .filter_map(|p| Some((p.get(&self.x)?.as_f64()?, p.get(y)?.as_f64()?)))
            .collect()
    }
}

/// What an experiment's `run` returns.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub series: Vec<Series>,
    pub checks: Vec<Check>,
    /// Explanations: how the model differs from the paper and why.
    pub notes: Vec<String>,
}

/// The simulator's statistics of one run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SimStats {
    pub events: u64,
    pub simulated_ps: u64,
    pub packets: u64,
    pub wall_s: f64,
    pub events_per_wall_s: f64,
    pub packets_per_wall_s: f64,
}

/// The whole record of one run: what `result.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExperimentResult {
    pub experiment: String,
    pub reproduces: String,
    pub seed: u64,
    pub quick: bool,
    pub params: Value,
    pub series: Vec<Series>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
    /// What the run read besides its parameters (a replayed capture's
    /// frames, flows and skipped records by reason); absent when nothing.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub inputs: Map<String, Value>,
    pub sim: SimStats,
}

/// Resolve parameters and run `exp`, timing it on the wall clock.
pub fn execute(exp: &dyn Experiment, ctx: RunContext) -> Result<ExperimentResult, RunError> {
    let started = std::time::Instant::now();
    let outcome = exp.run(&ctx)?;
    let wall_s = started.elapsed().as_secs_f64();
    let tally = ctx.tally();
    let per_s = |n: u64| if wall_s > 0.0 { n as f64 / wall_s } else { 0.0 };
    let inputs = std::mem::take(&mut *ctx.inputs.lock().unwrap_or_else(|e| e.into_inner()));
    let mut notes = std::mem::take(&mut *ctx.input_notes.lock().unwrap_or_else(|e| e.into_inner()));
    notes.extend(outcome.notes);
    Ok(ExperimentResult {
        experiment: exp.name().into(),
        reproduces: exp.reproduces().into(),
        seed: ctx.seed,
        quick: ctx.quick,
        params: ctx.params.to_json(),
        series: outcome.series,
        checks: outcome.checks,
        notes,
        inputs,
        sim: SimStats {
            events: tally.events,
            simulated_ps: tally.simulated_ps,
            packets: tally.packets,
            wall_s,
            events_per_wall_s: per_s(tally.events),
            packets_per_wall_s: per_s(tally.packets),
        },
    })
}
