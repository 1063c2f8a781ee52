//! What an experiment is: a named reproduction of one paper figure or table
//! that declares its parameters, runs simulations, and returns series of
//! points plus checks that put the paper's number beside the model's.
//!
//! The framework (not the experiment) fills in the run's identity, seed,
//! parameters and simulator statistics, so every `result.json` has the same
//! shape whoever wrote the experiment.
//!
//! Checks are declared before the run ([`CheckSpec`], listed by
//! [`Experiment::checks`] and printed by `--describe`): each names its
//! claim, its reference and tolerance, and the [`Origin`] of its model
//! value. A run can only emit declared checks, and every check it emits is
//! judged — [`Verdict::Within`], [`Verdict::Miss`] or, without a published
//! value, [`Verdict::ModelOnly`]. Tolerances cannot be attached after the
//! model value is known.
//!
//! What a run read from outside its parameters (a replayed capture: what
//! it held, what was skipped and why) is recorded through
//! [`RunContext::record_input`] and lands in `result.json`'s `inputs` and in
//! its notes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use nextio_engine::Sim;
use rayon::prelude::*;
use serde::de::DeserializeOwned;
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
    /// The paper (or standard) whose claims the checks judge, as the
    /// report's scoreboard groups them.
    fn paper(&self) -> &'static str;
    /// Parameters accepted with `--set KEY=VALUE`.
    fn params(&self) -> &'static [ParamSpec];
    /// The checks, declared before anything runs: `run` may emit only
    /// these (a per-point spec once per point).
    fn checks(&self) -> &'static [CheckSpec];
    /// Run with validated parameters.
    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError>;
    /// The shipped host preset its (measured) machine is built as, whose
    /// primitives `--describe` lists (`presets/*.toml`; sections outside
    /// `machine` are the same in every preset). Every experiment says, so
    /// none is described as a host it never builds.
    fn host(&self) -> &'static str;
    /// Other presets it builds machines as (a second platform, a client
    /// host): `--describe` lists where their machines differ from
    /// [`Experiment::host`]'s.
    fn other_hosts(&self) -> &'static [&'static str] {
        &[]
    }
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A check emitted without a declaration, or a declaration that is not
    /// coherent: a bug in the experiment, reported rather than shown.
    #[error("check declaration: {0}")]
    Declaration(String),
    /// A shard computed its points and stopped (see [`crate::shard`]):
    /// never seen outside the framework.
    #[error("the shard's simulations are done")]
    ShardDone,
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
    /// Largest pcap file written, bytes (the frames past it are left out
    /// and counted).
    pcap_limit_bytes: Option<u64>,
    /// Capture only the measured trials, not a search's probes.
    pcap_measured_only: bool,
    /// Where simulations made by [`RunContext::new_sim`] write their event
    /// traces, if asked.
    pub trace_dir: Option<PathBuf>,
    /// What the traces keep (tracks, time window, record cap).
    trace_config: nextio_engine::TraceConfig,
    /// Where each simulation's stats file goes (`OUT/EXPERIMENT/stats`),
    /// if asked, and the files written so far (relative to the
    /// experiment's folder).
    stats_dir: Option<PathBuf>,
    /// The stats folder under the experiment's (`stats`, or
    /// `stats/seed-N` when a run has several seeds).
    stats_folder: String,
    stats_files: Mutex<Vec<String>>,
    progress: Box<dyn Fn(f64) + Sync>,
    /// The experiment running (set by [`execute`]): artefacts go in a
    /// folder of that name.
    experiment: &'static str,
    /// Artefact file names already given out in this run.
    artefacts: Mutex<std::collections::BTreeSet<PathBuf>>,
    tally: Mutex<SimTally>,
    inputs: Mutex<Map<String, Value>>,
    input_notes: Mutex<Vec<String>>,
    /// Which simulations this context computes (all, a shard's, or
    /// replayed ones).
    mode: crate::shard::Mode,
    /// Sweeps made so far: only the first is sharded.
    sweeps: AtomicUsize,
}

thread_local! {
    /// This thread runs a search's probe trial (see [`RunContext::probe`]).
    static PROBE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// This thread reruns a trial only for its artefacts: its work is not
    /// counted again (see [`RunContext::rerun_for_artefacts`]).
    static RERUN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The work of the sweep point this thread is computing, when it is
    /// kept apart (a shard stores each point's work with its output).
    static POINT_TALLY: std::cell::Cell<Option<SimTally>> = const { std::cell::Cell::new(None) };
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
            pcap_limit_bytes: None,
            pcap_measured_only: false,
            trace_dir: None,
            trace_config: nextio_engine::TraceConfig::default(),
            stats_dir: None,
            stats_folder: "stats".into(),
            stats_files: Mutex::new(Vec::new()),
            progress: Box::new(|_| {}),
            experiment: "experiment",
            artefacts: Mutex::new(Default::default()),
            tally: Mutex::new(SimTally::default()),
            inputs: Mutex::new(Map::new()),
            input_notes: Mutex::new(Vec::new()),
            mode: crate::shard::Mode::All,
            sweeps: AtomicUsize::new(0),
        }
    }
    pub(crate) fn in_mode(mut self, mode: crate::shard::Mode) -> Self {
        self.mode = mode;
        self
    }
    pub(crate) fn into_mode(self) -> crate::shard::Mode {
        self.mode
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
    /// Keep pcap files within `limit_bytes`; capture only measured trials
    /// (not a search's probes) if `measured_only`.
    pub fn with_pcap_options(mut self, limit_bytes: Option<u64>, measured_only: bool) -> Self {
        self.pcap_limit_bytes = limit_bytes;
        self.pcap_measured_only = measured_only;
        self
    }
    /// A capture for one link of the trial running, if the run asked for
    /// pcap files and this trial is captured.
    pub fn new_capture(&self) -> Option<nextio_hw::pcap::Capture> {
        if self.pcap_dir.is_none() || (self.pcap_measured_only && PROBE.with(|p| p.get())) {
            return None;
        }
        Some(match self.pcap_limit_bytes {
            Some(l) => nextio_hw::pcap::Capture::with_limit(l),
            None => nextio_hw::pcap::Capture::new(),
        })
    }
    /// Write `capture` as `PCAP_DIR/EXPERIMENT/<label>.pcap`, saying on
    /// stderr when the size limit left frames out.
    pub fn write_capture(
        &self,
        label: &str,
        capture: &nextio_hw::pcap::Capture,
    ) -> Result<(), RunError> {
        let Some(dir) = &self.pcap_dir else {
            return Ok(());
        };
        let path = self.artefact_path(dir, label, "pcap")?;
        capture.write(&path).map_err(RunError::from_capture)?;
        if capture.left_out() > 0 {
            eprintln!(
                "note: {}: size limit reached, {} later frame(s) not written",
                path.display(),
                capture.left_out()
            );
        }
        Ok(())
    }
    /// Run `f` as a search's probe trial: not captured when only measured
    /// trials are.
    pub fn probe<T>(&self, f: impl FnOnce() -> T) -> T {
        let was = PROBE.with(|p| p.replace(true));
        let out = f();
        PROBE.with(|p| p.set(was));
        out
    }
    /// Whether only measured trials are captured (a search then reruns
    /// the trial it reports, with [`RunContext::rerun_for_artefacts`]).
    pub fn captures_measured_only(&self) -> bool {
        self.pcap_dir.is_some() && self.pcap_measured_only
    }
    /// Rerun a trial only to write its artefacts: the simulation is
    /// deterministic, so it is the trial already counted, and its work is
    /// not counted again.
    pub fn rerun_for_artefacts<T>(&self, f: impl FnOnce() -> T) -> T {
        let was = RERUN.with(|r| r.replace(true));
        let out = f();
        RERUN.with(|r| r.set(was));
        out
    }
    pub fn with_trace_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.trace_dir = dir;
        self
    }
    /// Keep in traces only what `config` says (tracks, window, cap).
    pub fn with_trace_config(mut self, config: nextio_engine::TraceConfig) -> Self {
        self.trace_config = config;
        self
    }
    /// Write every simulation's counters to `DIR/EXPERIMENT/stats/` (the
    /// experiment's result folder when `DIR` is the run's `--out`), or to
    /// `…/stats/seed-N/` when `per_seed` (a run of several seeds).
    pub fn with_stats_dir(mut self, dir: Option<PathBuf>, per_seed: bool) -> Self {
        self.stats_dir = dir;
        self.stats_folder = if per_seed {
            format!("stats/seed-{}", self.seed)
        } else {
            "stats".into()
        };
        self
    }
    /// A fresh simulator, tracing its models if the run asked for traces
    /// and keeping its components if it asked for stats.
    pub fn new_sim(&self) -> Sim {
        let sim = Sim::new();
        if self.trace_dir.is_some() {
            sim.enable_trace(self.trace_config.clone());
        }
        if self.stats_dir.is_some() {
            sim.enable_stats();
        }
        sim
    }
    /// Account a finished simulation that moved `packets` packets, and write
    /// its trace to `TRACE_DIR/EXPERIMENT/<label>.json` if traces were asked
    /// for.
    pub fn finish_sim(&self, label: &str, sim: &Sim, packets: u64) -> Result<(), RunError> {
        self.record(SimTally::of(sim, packets));
        self.write_artefacts(label, sim)
    }
    /// Write what the run asked for of a finished simulation `label`: its
    /// stats file and its trace.
    pub fn write_artefacts(&self, label: &str, sim: &Sim) -> Result<(), RunError> {
        self.write_stats(label, sim)?;
        self.write_trace(label, sim)
    }
    /// Write every counter of `sim`'s components to
    /// `STATS_DIR/EXPERIMENT/stats/<label>.txt`, if stats were asked for,
    /// and remember the file for `result.json`'s `stats`.
    pub fn write_stats(&self, label: &str, sim: &Sim) -> Result<(), RunError> {
        let (Some(dir), Some(report)) = (&self.stats_dir, sim.collect_stats()) else {
            return Ok(());
        };
        let folder = dir.join(self.experiment).join(&self.stats_folder);
        let path = self.artefact_in(&folder, label, "txt")?;
        let mut text = format!(
            "# every counter of simulation `{label}` of {} (seed {}), at {} ps\n",
            self.experiment,
            self.seed,
            sim.now().ps()
        );
        text.push_str(&report.to_text());
        crate::output::write_atomically(&path, text.as_bytes())?;
        if let Some(name) = path.file_name() {
            self.stats_files
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{}/{}", self.stats_folder, name.to_string_lossy()));
        }
        Ok(())
    }
    /// Where an artefact of this run labelled `label` goes under `dir`:
    /// `dir/EXPERIMENT/LABEL.EXT`, the folder created. A label given out
    /// before in this run gets `-2`, `-3`, … so no artefact silently
    /// overwrites another.
    pub fn artefact_path(&self, dir: &Path, label: &str, ext: &str) -> Result<PathBuf, RunError> {
        self.artefact_in(&dir.join(self.experiment), label, ext)
    }
    /// [`RunContext::artefact_path`] in `folder` itself.
    fn artefact_in(&self, folder: &Path, label: &str, ext: &str) -> Result<PathBuf, RunError> {
        let folder = folder.to_path_buf();
        std::fs::create_dir_all(&folder).map_err(|e| crate::output::path_error(&folder, e))?;
        let stem = crate::output::file_stem(label);
        let mut given = self.artefacts.lock().unwrap_or_else(|e| e.into_inner());
        let mut path = folder.join(format!("{stem}.{ext}"));
        let mut n = 2;
        while given.contains(&path) {
            path = folder.join(format!("{stem}-{n}.{ext}"));
            n += 1;
        }
        given.insert(path.clone());
        Ok(path)
    }
    /// Write `sim`'s trace as Chrome trace-event JSON to
    /// `TRACE_DIR/EXPERIMENT/<label>.json`, if traces were asked for,
    /// saying on stderr when the record cap left events out.
    pub fn write_trace(&self, label: &str, sim: &Sim) -> Result<(), RunError> {
        let Some(dir) = &self.trace_dir else {
            return Ok(());
        };
        let Some(trace) = sim.take_trace() else {
            return Ok(());
        };
        let path = self.artefact_path(dir, label, "json")?;
        crate::output::write_atomically(&path, trace.to_json().as_bytes())?;
        if trace.dropped() > 0 {
            eprintln!(
                "note: {}: record cap reached, {} later event(s) not written",
                path.display(),
                trace.dropped()
            );
        }
        Ok(())
    }
    /// Report progress as a fraction 0–1.
    pub fn progress(&self, fraction: f64) {
        (self.progress)(fraction.clamp(0.0, 1.0));
    }
    /// Add a finished simulation's work to the run's totals (or to the
    /// sweep point's, when that is kept apart).
    pub fn record(&self, tally: SimTally) {
        if RERUN.with(|r| r.get()) {
            return;
        }
        let kept = POINT_TALLY.with(|t| match t.get() {
            Some(mut mine) => {
                mine.add(tally);
                t.set(Some(mine));
                true
            }
            None => false,
        });
        if kept {
            return;
        }
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
    ///
    /// The points of a run's first sweep are its independent simulations:
    /// a shard computes only its own and stops the run there, and a merge
    /// answers the sweep from the shards' outputs (see [`crate::shard`]),
    /// which is why an output must serialise. What `f` does besides
    /// simulating and recording its work through [`RunContext::record`]
    /// or [`RunContext::finish_sim`] is not carried from shard to merge.
    pub fn sweep<P: Sync, T: Send + Serialize + DeserializeOwned>(
        &self,
        points: &[P],
        f: impl Fn(usize, &P) -> Result<T, RunError> + Sync,
    ) -> Result<Vec<T>, RunError> {
        use crate::shard::Mode;
        let first = self.sweeps.fetch_add(1, Ordering::Relaxed) == 0;
        match &self.mode {
            Mode::Shard {
                shard,
                seed_index,
                name,
                done,
            } if first => {
                let mine: Vec<usize> = (0..points.len())
                    .filter(|&i| shard.owns(name, *seed_index, points.len(), i))
                    .collect();
                let records = self.sweep_indices(&mine, |i| {
                    POINT_TALLY.with(|t| t.set(Some(SimTally::default())));
                    let out = f(i, &points[i]);
                    let tally = POINT_TALLY.with(|t| t.take()).unwrap_or_default();
                    Ok(crate::shard::PointRecord {
                        seed_index: *seed_index,
                        point: i,
                        of: points.len(),
                        tally,
                        output: crate::shard::encode(&out?)?,
                    })
                })?;
                done.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(records);
                Err(RunError::ShardDone)
            }
            Mode::Shard { .. } => Err(RunError::ShardDone),
            Mode::Replay(stored) if first => {
                let mut out = Vec::with_capacity(points.len());
                for i in 0..points.len() {
                    let rec = stored.get(&i).ok_or_else(|| {
                        RunError::Config(format!(
                            "the partials hold no output for point {i} of {}",
                            points.len()
                        ))
                    })?;
                    if rec.of != points.len() {
                        return Err(RunError::Config(format!(
                            "the partials swept {} points, this run sweeps {}",
                            rec.of,
                            points.len()
                        )));
                    }
                    self.record(rec.tally);
                    out.push(crate::shard::decode(&rec.output)?);
                }
                if stored.len() != points.len() {
                    return Err(RunError::Config(format!(
                        "the partials hold {} points, this run sweeps {}",
                        stored.len(),
                        points.len()
                    )));
                }
                self.progress(1.0);
                Ok(out)
            }
            _ => {
                let all: Vec<usize> = (0..points.len()).collect();
                self.sweep_indices(&all, |i| f(i, &points[i]))
            }
        }
    }
    /// `f` over `indices` in parallel, results in order, with progress.
    fn sweep_indices<T: Send>(
        &self,
        indices: &[usize],
        f: impl Fn(usize) -> Result<T, RunError> + Sync,
    ) -> Result<Vec<T>, RunError> {
        let done = AtomicUsize::new(0);
        let n = indices.len().max(1);
        indices
            .par_iter()
            .map(|&i| {
                let r = f(i);
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                self.progress(d as f64 / n as f64);
                r
            })
            .collect()
    }
    /// Run an experiment that is one simulation as a sweep of one point,
    /// so it shards like any other (the whole run is one shard's).
    pub fn single<T: Send + Serialize + DeserializeOwned>(
        &self,
        f: impl Fn() -> Result<T, RunError> + Sync,
    ) -> Result<T, RunError> {
        let mut out = self.sweep(&[()], |_, _| f())?;
        out.pop()
            .ok_or_else(|| RunError::Config("a one-point sweep returned nothing".into()))
    }
}

/// How a check's model value arises: what kind of evidence agreement is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// It emerges from the event simulation of the mechanism the paper is
    /// about: queues, contention, caches and timing interact as they run.
    Simulated,
    /// Arithmetic over primitive costs (a fixed cost charged per event, a
    /// ratio of assumed loop bodies) without simulating how they interact.
    Composed,
    /// The simulator against its own closed form: it tests the simulator,
    /// not the paper's claim.
    Validation,
    /// A primitive was tuned to this very value: agreement is by
    /// construction and is not evidence.
    Fitted,
}

impl Origin {
    pub const ALL: [Origin; 4] = [
        Origin::Simulated,
        Origin::Composed,
        Origin::Validation,
        Origin::Fitted,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Origin::Simulated => "simulated",
            Origin::Composed => "composed",
            Origin::Validation => "validation",
            Origin::Fitted => "fitted",
        }
    }
    /// What the origin means, for a legend.
    pub fn meaning(self) -> &'static str {
        match self {
            Origin::Simulated => "emerges from the event simulation of the mechanism",
            Origin::Composed => {
                "arithmetic over primitive costs, without simulating their interaction"
            }
            Origin::Validation => "the simulator against its own closed form",
            Origin::Fitted => "a primitive tuned to this value: not evidence",
        }
    }
}

/// How far from its reference a model value may be and still agree.
/// Declared with the check, before the run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tolerance {
    /// `|model − reference| ≤ r · |reference|` (absolute when the
    /// reference is 0).
    Relative(f64),
    /// `|model − reference| ≤ a`, in the check's unit.
    Absolute(f64),
    /// The reference is a lower bound: `model ≥ reference`.
    AtLeast,
    /// The reference is an upper bound: `model ≤ reference`.
    AtMost,
}

impl Tolerance {
    /// Whether `model` agrees with `reference`. NaN never agrees.
    pub fn admits(self, reference: f64, model: f64) -> bool {
        match self {
            Tolerance::Relative(r) => relative_error(reference, model) <= r,
            Tolerance::Absolute(a) => (model - reference).abs() <= a,
            Tolerance::AtLeast => model >= reference,
            Tolerance::AtMost => model <= reference,
        }
    }
    /// The tolerance in a few characters, in the check's unit.
    pub fn describe(self, unit: &str) -> String {
        match self {
            Tolerance::Relative(r) => format!("±{} %", trim_number(r * 100.0)),
            // A dimensionless absolute tolerance must not read as relative.
            Tolerance::Absolute(a) if matches!(unit, "" | "fraction" | "ratio" | "×") => {
                format!("±{} (absolute)", trim_number(a))
            }
            Tolerance::Absolute(a) => format!("±{} {unit}", trim_number(a)),
            Tolerance::AtLeast => "at least".into(),
            Tolerance::AtMost => "at most".into(),
        }
    }
    fn valid(self) -> bool {
        match self {
            Tolerance::Relative(x) | Tolerance::Absolute(x) => x.is_finite() && x >= 0.0,
            Tolerance::AtLeast | Tolerance::AtMost => true,
        }
    }
}

/// A number without trailing zeros (at most four decimals).
fn trim_number(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// Tolerance policy, so that tolerances are chosen by the kind of value
/// rather than by how close the model happens to come.
///
/// A result the paper states in its text or tables: 10 %.
pub const STATED: Tolerance = Tolerance::Relative(0.10);
/// A value read off one of the paper's figures: 20 %, the reading error of
/// a plotted point on top of the model's.
pub const READ_OFF: Tolerance = Tolerance::Relative(0.20);

/// What the reference value of a check is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reference {
    /// No published value: the model's number is reported alone.
    None,
    /// A number the paper states in its text or tables.
    Stated,
    /// A number read off one of the paper's figures.
    ReadOff,
    /// A number standing for the paper's words ("over 100 krps",
    /// "rises", "comparable"); the claim says how they are read.
    Words,
    /// A closed form evaluated by nextio at run time for each point (the
    /// IEEE line rate, pcie-bench's model), not a published measurement.
    ClosedForm,
}

impl Reference {
    pub fn name(self) -> &'static str {
        match self {
            Reference::None => "none",
            Reference::Stated => "stated",
            Reference::ReadOff => "read off a figure",
            Reference::Words => "the paper's words",
            Reference::ClosedForm => "closed form",
        }
    }
}

/// The judgement of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The model is within the declared tolerance of the reference.
    Within,
    /// It is not.
    Miss,
    /// There is no published value to judge against.
    ModelOnly,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Within => "within",
            Verdict::Miss => "miss",
            Verdict::ModelOnly => "model only",
        }
    }
    /// The verdict of `model` against an optional reference. A reference
    /// without a tolerance cannot be judged and counts as a miss, so a
    /// mistake in a declaration never shows as agreement.
    pub fn of(reference: Option<f64>, tolerance: Option<Tolerance>, model: f64) -> Verdict {
        match (reference, tolerance) {
            (None, _) => Verdict::ModelOnly,
            (Some(r), Some(t)) if t.admits(r, model) => Verdict::Within,
            (Some(_), _) => Verdict::Miss,
        }
    }
}

/// A check as declared before the run: what is claimed, against what, how
/// strictly, and how the model's value arises.
///
/// Built in `const` context: [`CheckSpec::new`] declares a model-only
/// check; [`stated`](CheckSpec::stated), [`read_off`](CheckSpec::read_off),
/// [`words`](CheckSpec::words) and [`closed_form`](CheckSpec::closed_form)
/// give it a reference and a tolerance together (a reference without a
/// tolerance cannot be declared this way); [`per_point`](CheckSpec::per_point)
/// makes it a family with one check per sweep point, `ID-POINT`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CheckSpec {
    pub id: &'static str,
    pub claim: &'static str,
    pub unit: &'static str,
    /// The published value; `None` for model-only checks and for closed
    /// forms, whose value is computed per point at run time.
    pub paper: Option<f64>,
    pub tolerance: Option<Tolerance>,
    pub reference: Reference,
    pub origin: Origin,
    /// One check per sweep point, with ids `ID-POINT`.
    pub per_point: bool,
}

impl CheckSpec {
    /// A model-only check: no published value.
    pub const fn new(
        id: &'static str,
        claim: &'static str,
        unit: &'static str,
        origin: Origin,
    ) -> CheckSpec {
        CheckSpec {
            id,
            claim,
            unit,
            paper: None,
            tolerance: None,
            reference: Reference::None,
            origin,
            per_point: false,
        }
    }
    /// Against a value the paper states.
    pub const fn stated(self, paper: f64, tolerance: Tolerance) -> CheckSpec {
        self.against(Reference::Stated, paper, tolerance)
    }
    /// Against a value read off one of the paper's figures.
    pub const fn read_off(self, paper: f64, tolerance: Tolerance) -> CheckSpec {
        self.against(Reference::ReadOff, paper, tolerance)
    }
    /// Against a number standing for the paper's words; the claim must say
    /// how they are read.
    pub const fn words(self, paper: f64, tolerance: Tolerance) -> CheckSpec {
        self.against(Reference::Words, paper, tolerance)
    }
    /// Against a closed form evaluated at run time
    /// ([`judge_against`](CheckSpec::judge_against)).
    pub const fn closed_form(mut self, tolerance: Tolerance) -> CheckSpec {
        self.reference = Reference::ClosedForm;
        self.tolerance = Some(tolerance);
        self
    }
    /// One check per sweep point.
    pub const fn per_point(mut self) -> CheckSpec {
        self.per_point = true;
        self
    }
    const fn against(
        mut self,
        reference: Reference,
        paper: f64,
        tolerance: Tolerance,
    ) -> CheckSpec {
        self.reference = reference;
        self.paper = Some(paper);
        self.tolerance = Some(tolerance);
        self
    }

    /// Whether the declaration is coherent: a published value comes with a
    /// tolerance; a closed form is validation and validation is against a
    /// closed form; a fit is to a published value; ids are plain words.
    pub fn validate(&self) -> Result<(), String> {
        let fail = |why: &str| Err(format!("check `{}`: {why}", self.id));
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return fail("ids are ASCII letters, digits, `-` and `.`");
        }
        if self.claim.is_empty() {
            return fail("no claim");
        }
        if self.tolerance.is_some_and(|t| !t.valid()) {
            return fail("a tolerance is finite and non-negative");
        }
        if self.paper.is_some_and(|p| !p.is_finite()) {
            return fail("the paper's value is not a finite number");
        }
        match (self.reference, self.paper, self.tolerance) {
            (Reference::None, None, None) => {}
            (Reference::None, _, _) => return fail("a model-only check has no value or tolerance"),
            (Reference::ClosedForm, None, Some(_)) => {}
            (Reference::ClosedForm, _, _) => {
                return fail("a closed form has a tolerance and its value comes at run time");
            }
            (_, Some(_), Some(_)) => {}
            (_, _, _) => return fail("a published value needs a declared tolerance"),
        }
        if (self.origin == Origin::Validation) != (self.reference == Reference::ClosedForm) {
            return fail("validation is exactly the checks against a closed form");
        }
        if self.origin == Origin::Fitted && self.paper.is_none() {
            return fail("a fit is to a published value");
        }
        Ok(())
    }

    /// Whether a check with `id` belongs to this declaration.
    pub fn declares(&self, id: &str) -> bool {
        if self.per_point {
            id.strip_prefix(self.id)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|point| !point.is_empty())
        } else {
            id == self.id
        }
    }

    /// Judge `model` against the declared value (or report it alone for a
    /// model-only check).
    pub fn judge(&self, model: f64) -> Check {
        debug_assert!(
            !self.per_point && self.reference != Reference::ClosedForm,
            "check `{}` is judged per point or against a closed form",
            self.id
        );
        self.make(
            self.id.to_string(),
            self.claim.to_string(),
            self.paper,
            model,
        )
    }

    /// Judge `model` against `reference`, computed at run time.
    pub fn judge_against(&self, reference: f64, model: f64) -> Check {
        debug_assert!(!self.per_point, "check `{}` is judged per point", self.id);
        debug_assert_eq!(self.reference, Reference::ClosedForm, "check `{}`", self.id);
        self.make(
            self.id.to_string(),
            self.claim.to_string(),
            Some(reference),
            model,
        )
    }

    /// The check of this family at sweep point `point` (a plain word such
    /// as `64B`), named `ID-POINT`.
    pub fn at(&self, point: impl std::fmt::Display) -> PointCheck<'_> {
        debug_assert!(self.per_point, "check `{}` is not per point", self.id);
        PointCheck {
            spec: self,
            point: point.to_string(),
        }
    }

    fn make(&self, id: String, claim: String, reference: Option<f64>, model: f64) -> Check {
        Check {
            id,
            claim,
            paper: reference,
            model,
            unit: self.unit.to_string(),
            tolerance: self.tolerance,
            reference: self.reference,
            origin: self.origin,
            verdict: Verdict::of(reference, self.tolerance, model),
            model_ci95: None,
        }
    }
}

/// One point of a per-point check family.
pub struct PointCheck<'a> {
    spec: &'a CheckSpec,
    point: String,
}

impl PointCheck<'_> {
    fn id(&self) -> String {
        format!("{}-{}", self.spec.id, self.point)
    }
    fn claim(&self) -> String {
        format!("{} [{}]", self.spec.claim, self.point)
    }
    /// Judge against the family's declared value.
    pub fn judge(&self, model: f64) -> Check {
        debug_assert_ne!(self.spec.reference, Reference::ClosedForm);
        self.spec
            .make(self.id(), self.claim(), self.spec.paper, model)
    }
    /// Judge against this point's closed-form value.
    pub fn judge_against(&self, reference: f64, model: f64) -> Check {
        debug_assert_eq!(self.spec.reference, Reference::ClosedForm);
        self.spec
            .make(self.id(), self.claim(), Some(reference), model)
    }
}

/// One judged comparison, as `result.json` records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub id: String,
    pub claim: String,
    /// The reference value (see `reference` for what it is), or `null`
    /// where there is none.
    pub paper: Option<f64>,
    pub model: f64,
    pub unit: String,
    /// The tolerance declared with the check, if it has a reference.
    pub tolerance: Option<Tolerance>,
    /// What `paper` is: stated, read off a figure, words, a closed form.
    pub reference: Reference,
    pub origin: Origin,
    pub verdict: Verdict,
    /// With several seeds: `model` is their mean and this the half-width of
    /// its 95 % confidence interval (Student's t); the verdict judges the
    /// mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_ci95: Option<f64>,
}

impl Check {
    /// Relative error of the model against the reference, if there is one.
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

/// Whether every check of `checks` belongs to one of `specs`; the first
/// that does not, otherwise.
pub fn undeclared<'a>(specs: &[CheckSpec], checks: &'a [Check]) -> Option<&'a Check> {
    checks
        .iter()
        .find(|c| !specs.iter().any(|s| s.declares(&c.id)))
}

/// What a series is: the model's points, or a reference drawn beside them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// Points the model produced.
    #[default]
    Model,
    /// Values the paper states.
    Paper,
    /// Points read off one of the paper's figures.
    ReadOff,
    /// A closed form (the IEEE line rate, pcie-bench's model).
    ClosedForm,
}

impl SeriesKind {
    /// Whether the series is a reference rather than the model.
    pub fn is_reference(self) -> bool {
        self != SeriesKind::Model
    }
}

/// A set of points for one curve family: each point is a JSON object with
/// (at least) the `x` field and every `y` field.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Series {
    pub name: String,
    #[serde(default)]
    pub kind: SeriesKind,
    pub x: String,
    pub y: Vec<String>,
    pub points: Vec<Map<String, Value>>,
}

impl Series {
    pub fn new(name: impl Into<String>, x: &str, y: &[&str]) -> Series {
        Series {
            name: name.into(),
            kind: SeriesKind::Model,
            x: x.into(),
            y: y.iter().map(|s| s.to_string()).collect(),
            points: Vec::new(),
        }
    }
    /// The same series marked as `kind`.
    pub fn kind(mut self, kind: SeriesKind) -> Series {
        self.kind = kind;
        self
    }
    /// An empty series with the same name, kind and axes.
    pub fn clone_shape(&self) -> Series {
        Series::new(
            self.name.clone(),
            &self.x,
            &self.y.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .kind(self.kind)
    }
    /// Add a point; `point` must be a JSON object (`serde_json::json!({..})`).
    pub fn push(&mut self, point: Value) {
        if let Value::Object(map) = point {
            self.points.push(map);
        }
    }
    /// The same series with `point` added.
    pub fn with(mut self, point: Value) -> Series {
        self.push(point);
        self
    }
    /// `(x, y)` pairs of numeric field `y`, in point order.
    pub fn xy(&self, y: &str) -> Vec<(f64, f64)> {
        self.points
            .iter()
            .filter_map(|p| Some((p.get(&self.x)?.as_f64()?, p.get(y)?.as_f64()?)))
            .collect()
    }
    /// `(x, y, half-width)` of every point whose `y` has a 95 % interval
    /// (several seeds, see [`crate::seeds`]).
    pub fn xy_ci95(&self, y: &str) -> Vec<(f64, f64, f64)> {
        let ci = format!("{y}_ci95");
        self.points
            .iter()
            .filter_map(|p| {
                Some((
                    p.get(&self.x)?.as_f64()?,
                    p.get(y)?.as_f64()?,
                    p.get(&ci)?.as_f64()?,
                ))
            })
            .collect()
    }
}

/// How a chart shows one field of the series: its title (quantity and
/// unit) and its scale.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Axis {
    pub field: String,
    pub title: String,
    /// Logarithmic (for sweeps and values that span decades).
    #[serde(default)]
    pub log: bool,
}

impl Axis {
    pub fn new(field: &str, title: &str) -> Axis {
        Axis {
            field: field.into(),
            title: title.into(),
            log: false,
        }
    }
    pub fn log(mut self) -> Axis {
        self.log = true;
        self
    }
}

/// What an experiment's `run` returns.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub series: Vec<Series>,
    /// Titles and scales of the fields the series plot.
    pub axes: Vec<Axis>,
    /// Judged checks, each of a spec in [`Experiment::checks`].
    pub checks: Vec<Check>,
    /// Explanations: how the model differs from the paper and why.
    pub notes: Vec<String>,
}

/// The simulator's statistics of one run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SimStats {
    pub events: u64,
    pub simulated_ps: u64,
    pub packets: u64,
    pub wall_s: f64,
    pub events_per_wall_s: f64,
    pub packets_per_wall_s: f64,
}

/// Where a result comes from: which build, when, asked how.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    /// nextio's version.
    pub version: String,
    /// The git commit nextio was built from, where the build knew it.
    pub commit: Option<String>,
    /// When the run started (UTC).
    pub started: String,
    /// The command line, as given.
    pub command: String,
}

impl RunInfo {
    /// This process, now.
    pub fn now(commit: Option<&str>) -> RunInfo {
        let command = std::env::args()
            .map(|a| {
                if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"') {
                    format!("{a:?}")
                } else {
                    a
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        RunInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            commit: commit.map(String::from),
            started: utc(secs),
            command,
        }
    }
}

/// `secs` after the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC` (the civil
/// calendar from a day count, after Howard Hinnant's `civil_from_days`).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The whole record of one run: what `result.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExperimentResult {
    pub experiment: String,
    pub reproduces: String,
    /// The paper (or reference) the experiment belongs to, for the scoreboard.
    pub paper: String,
    pub run: RunInfo,
    pub seed: u64,
    /// Every seed the result summarises, when there were several (see
    /// [`crate::seeds`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<u64>,
    pub quick: bool,
    pub params: Value,
    pub series: Vec<Series>,
    pub axes: Vec<Axis>,
    pub checks: Vec<Check>,
    /// Declared checks that these parameters did not produce (a sweep
    /// without the point a check is taken at).
    pub not_evaluated: Vec<String>,
    pub notes: Vec<String>,
    /// What the run read besides its parameters (a replayed capture's
    /// frames, flows and skipped records by reason); absent when nothing.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub inputs: Map<String, Value>,
    pub sim: SimStats,
    /// Each simulation's stats file (`stats/LABEL.txt`, relative to the
    /// result's folder; LABEL names the sweep point and trial), when the
    /// run asked for `--stats`; absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stats: Vec<String>,
}

impl ExperimentResult {
    /// The result with everything the wall clock decides (when the run
    /// started, how long it took, the rates derived from that) cleared: what
    /// two runs of one configuration and seed must agree on byte for byte.
    pub fn without_wall_clock(mut self) -> Self {
        self.run.started.clear();
        self.sim.wall_s = 0.0;
        self.sim.events_per_wall_s = 0.0;
        self.sim.packets_per_wall_s = 0.0;
        self
    }
}

/// Resolve parameters and run `exp`, timing it on the wall clock. A check
/// the experiment did not declare, or a declaration that is not coherent,
/// is an error: no result carries a check that `--describe` did not show.
pub fn execute(exp: &dyn Experiment, mut ctx: RunContext) -> Result<ExperimentResult, RunError> {
    execute_in(exp, &mut ctx)
}

/// [`execute`] in a context the caller keeps (a shard reads the points it
/// computed from it afterwards).
pub(crate) fn execute_in(
    exp: &dyn Experiment,
    ctx: &mut RunContext,
) -> Result<ExperimentResult, RunError> {
    ctx.experiment = exp.name();
    let specs = exp.checks();
    for spec in specs {
        spec.validate().map_err(RunError::Declaration)?;
    }
    crate::primitives::record_changes(exp, ctx);
    let started = std::time::Instant::now();
    let outcome = exp.run(ctx)?;
    let wall_s = started.elapsed().as_secs_f64();
    if let Some(c) = undeclared(specs, &outcome.checks) {
        return Err(RunError::Declaration(format!(
            "{} emitted check `{}`, which it does not declare",
            exp.name(),
            c.id
        )));
    }
    let not_evaluated = specs
        .iter()
        .filter(|s| !outcome.checks.iter().any(|c| s.declares(&c.id)))
        .map(|s| s.id.to_string())
        .collect();
    let tally = ctx.tally();
    let per_s = |n: u64| if wall_s > 0.0 { n as f64 / wall_s } else { 0.0 };
    let inputs = std::mem::take(&mut *ctx.inputs.lock().unwrap_or_else(|e| e.into_inner()));
    let mut notes = std::mem::take(&mut *ctx.input_notes.lock().unwrap_or_else(|e| e.into_inner()));
    notes.extend(outcome.notes);
    let mut stats = std::mem::take(&mut *ctx.stats_files.lock().unwrap_or_else(|e| e.into_inner()));
    stats.sort();
    Ok(ExperimentResult {
        experiment: exp.name().into(),
        reproduces: exp.reproduces().into(),
        paper: exp.paper().into(),
        run: RunInfo::now(None),
        seed: ctx.seed,
        seeds: Vec::new(),
        quick: ctx.quick,
        params: ctx.params.to_json(),
        series: outcome.series,
        axes: outcome.axes,
        checks: outcome.checks,
        not_evaluated,
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
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artefacts_go_in_the_experiments_folder_and_never_share_a_name() {
        let dir = std::env::temp_dir().join(format!("nextio-artefacts-{}", std::process::id()));
        let params = Params::resolve("t", &[], false, &[]).unwrap();
        let mut ctx = RunContext::new(params, 1, false);
        ctx.experiment = "some-experiment";
        let a = ctx.artefact_path(&dir, "trial 1.5gbps", "pcap").unwrap();
        let b = ctx.artefact_path(&dir, "trial 1.5gbps", "pcap").unwrap();
        let c = ctx.artefact_path(&dir, "trial 1.5gbps", "trace").unwrap();
        assert_eq!(a, dir.join("some-experiment/trial_1_5gbps.pcap"));
        assert_eq!(b, dir.join("some-experiment/trial_1_5gbps-2.pcap"));
        assert_eq!(c, dir.join("some-experiment/trial_1_5gbps.trace"));
        assert!(dir.join("some-experiment").is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const HIT: CheckSpec =
        CheckSpec::new("rate", "a stated rate", "Mpps", Origin::Simulated).stated(100.0, STATED);

    #[test]
    fn a_value_outside_its_tolerance_is_a_miss() {
        assert_eq!(HIT.judge(95.0).verdict, Verdict::Within);
        assert_eq!(HIT.judge(110.0).verdict, Verdict::Within);
        assert_eq!(HIT.judge(110.1).verdict, Verdict::Miss);
        assert_eq!(HIT.judge(50.0).verdict, Verdict::Miss);
        assert_eq!(HIT.judge(f64::NAN).verdict, Verdict::Miss);
        let c = HIT.judge(50.0);
        assert_eq!(
            (c.paper, c.tolerance, c.origin, c.reference),
            (
                Some(100.0),
                Some(STATED),
                Origin::Simulated,
                Reference::Stated
            )
        );
    }

    #[test]
    fn bounds_and_absolute_tolerances() {
        let over = CheckSpec::new("over", "over 100", "krps", Origin::Simulated)
            .words(100.0, Tolerance::AtLeast);
        assert_eq!(over.judge(209.0).verdict, Verdict::Within);
        assert_eq!(over.judge(99.0).verdict, Verdict::Miss);
        let under = CheckSpec::new("under", "within 0.2", "µs", Origin::Composed)
            .stated(0.2, Tolerance::AtMost);
        assert_eq!(under.judge(-1.0).verdict, Verdict::Within);
        assert_eq!(under.judge(0.21).verdict, Verdict::Miss);
        let near_zero = CheckSpec::new("gap", "a gap", "fraction", Origin::Simulated)
            .stated(-0.08, Tolerance::Absolute(0.10));
        assert_eq!(near_zero.judge(0.01).verdict, Verdict::Within);
        assert_eq!(near_zero.judge(0.06).verdict, Verdict::Miss);
    }

    #[test]
    fn a_model_only_check_is_never_within() {
        let alone = CheckSpec::new("alone", "no published value", "µs", Origin::Simulated);
        for v in [0.0, 1.0, -3.0, 1e9] {
            let c = alone.judge(v);
            assert_eq!(c.verdict, Verdict::ModelOnly);
            assert_eq!((c.paper, c.tolerance), (None, None));
        }
    }

    #[test]
    fn closed_forms_are_judged_per_point_against_run_time_values() {
        let spec = CheckSpec::new("linerate", "line rate", "Mpps", Origin::Validation)
            .closed_form(Tolerance::Relative(0.001))
            .per_point();
        let c = spec.at("64B").judge_against(148.81, 148.80);
        assert_eq!(
            (c.id.as_str(), c.verdict),
            ("linerate-64B", Verdict::Within)
        );
        assert_eq!(c.reference, Reference::ClosedForm);
        assert_eq!(
            spec.at("64B").judge_against(148.81, 140.0).verdict,
            Verdict::Miss
        );
        assert!(spec.declares("linerate-1518B"));
        assert!(!spec.declares("linerate") && !spec.declares("linerate-"));
        assert!(!spec.declares("lineratex-64B"));
        assert!(HIT.declares("rate") && !HIT.declares("rate-64B"));
    }

    #[test]
    fn incoherent_declarations_are_refused() {
        assert!(HIT.validate().is_ok());
        let no_tolerance = CheckSpec {
            tolerance: None,
            ..HIT
        };
        assert!(
            no_tolerance.validate().is_err(),
            "a paper value needs a tolerance"
        );
        assert_eq!(Verdict::of(Some(1.0), None, 1.0), Verdict::Miss);
        let validation_against_paper = CheckSpec {
            origin: Origin::Validation,
            ..HIT
        };
        assert!(validation_against_paper.validate().is_err());
        let closed_form_simulated =
            CheckSpec::new("c", "c", "x", Origin::Simulated).closed_form(Tolerance::Relative(0.01));
        assert!(closed_form_simulated.validate().is_err());
        let fit_to_nothing = CheckSpec::new("f", "f", "x", Origin::Fitted);
        assert!(fit_to_nothing.validate().is_err());
        let negative =
            CheckSpec::new("n", "n", "x", Origin::Simulated).stated(1.0, Tolerance::Relative(-0.1));
        assert!(negative.validate().is_err());
        let bad_id = CheckSpec::new("has space", "b", "x", Origin::Simulated);
        assert!(bad_id.validate().is_err());
    }

    #[test]
    fn undeclared_checks_are_found() {
        let specs = [HIT];
        let ok = [HIT.judge(100.0)];
        assert!(undeclared(&specs, &ok).is_none());
        let mut stray = HIT.judge(100.0);
        stray.id = "other".into();
        assert_eq!(
            undeclared(&specs, &[stray]).map(|c| c.id.as_str()),
            Some("other")
        );
    }

    #[test]
    fn checks_round_trip_through_json() {
        let c = HIT.judge(120.0);
        let text = serde_json::to_string(&c).unwrap();
        for key in [
            "\"id\"",
            "\"claim\"",
            "\"paper\"",
            "\"model\"",
            "\"unit\"",
            "\"tolerance\":{\"relative\":0.1}",
            "\"origin\":\"simulated\"",
            "\"verdict\":\"miss\"",
            "\"reference\":\"stated\"",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
        assert_eq!(serde_json::from_str::<Check>(&text).unwrap(), c);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }
}
