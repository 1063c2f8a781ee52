//! The `nextio` command: list experiments, run one, or reproduce them all
//! into a report.
//!
//! Raw arguments become a validated configuration in one place
//! ([`Cli`] → [`nextio_experiments::Params::resolve`] for parameters,
//! [`nextio_experiments::primitives::install`] for primitive costs, which
//! happens before anything is built); every user error — unknown
//! experiment, unknown key or primitive, unparsable value, unreadable
//! configuration file, unwritable folder — prints a single `error:` line
//! and exits with status 2. Nothing panics on bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use nextio_engine::Time;

use clap::{Parser, Subcommand};
use nextio_experiments::shard::{self, Partial, Shard, ShardedRun};
use nextio_experiments::{
    Experiment, ExperimentResult, Params, RunContext, RunError, RunInfo, compare, output,
    primitives, report,
};

mod progress;

use progress::Progress;

/// The commit this binary was built from, if the build could tell.
const GIT_COMMIT: Option<&str> = option_env!("NEXTIO_GIT_COMMIT");

#[derive(Parser)]
#[command(
    name = "nextio",
    version,
    about = "Functional and timing model of next-generation host I/O, reproducing the papers' evaluations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the experiments and the figure each reproduces.
    List {
        /// Everything `--describe` shows, for every experiment, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the host presets, or print one as a whole configuration file
    /// (every primitive with its source) to edit and pass to `--config`.
    Presets {
        /// A preset to print.
        name: Option<String>,
    },
    /// Run one experiment and write DIR/NAME/{result.json, *.csv, chart.svg}.
    Run {
        /// Experiment name (see `nextio list`).
        name: String,
        /// Fewer points and shorter runs (seconds, not minutes).
        #[arg(long)]
        quick: bool,
        /// Seed of every random stream in the run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Run every point under N seeds (SEED, SEED+1, …) and report means
        /// with 95 % confidence intervals.
        #[arg(long, default_value_t = 1, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..=MAX_SEEDS))]
        seeds: u64,
        /// Override a parameter, KEY=VALUE (lists are comma-separated), or a
        /// primitive cost by its dotted path, PATH=VALUE (see --describe).
        /// Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Lay a configuration file (TOML, preset format: a whole
        /// configuration from `nextio presets NAME`, or only the values to
        /// change) over the host presets.
        #[arg(long, value_name = "FILE.toml")]
        config: Option<PathBuf>,
        /// Output folder.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Write each link's wire traffic as nanosecond pcap files into DIR.
        #[arg(long, value_name = "DIR")]
        pcap: Option<PathBuf>,
        /// Write every simulation's trace as Chrome trace-event JSON (opens in
        /// ui.perfetto.dev and chrome://tracing) into DIR/NAME/LABEL.json.
        #[arg(long, value_name = "DIR")]
        trace: Option<PathBuf>,
        #[command(flatten)]
        trace_opts: TraceOpts,
        /// Write every simulation's counters (every component's: drops by
        /// reason, PCIe bytes by purpose, caches, IOMMU, ledgers by core and
        /// category) to OUT/NAME/stats/LABEL.txt; result.json lists them.
        #[arg(long)]
        stats: bool,
        /// Print the experiment's parameters (defaults, units, meaning) and its
        /// declared checks (claim, paper value, tolerance, origin), and exit.
        #[arg(long)]
        describe: bool,
        #[command(flatten)]
        scale: Scale,
        #[command(flatten)]
        captures: CaptureOpts,
    },
    /// Run every experiment and write DIR/index.html with charts and paper-vs-model tables.
    Reproduce {
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Run every point under N seeds and report means with 95 % intervals.
        #[arg(long, default_value_t = 1, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..=MAX_SEEDS))]
        seeds: u64,
        #[arg(long, default_value = "results")]
        out: PathBuf,
        #[arg(long, value_name = "DIR")]
        pcap: Option<PathBuf>,
        /// Write every simulation's counters to OUT/NAME/stats/ (as for `run`).
        #[arg(long)]
        stats: bool,
        /// Lay a configuration file over the host presets (as for `run`).
        #[arg(long, value_name = "FILE.toml")]
        config: Option<PathBuf>,
        #[command(flatten)]
        scale: Scale,
        #[command(flatten)]
        captures: CaptureOpts,
    },
    /// Combine the partial results of a sharded run (`--shard I/N`, every
    /// shard once) into the result one unsharded run gives.
    Merge {
        /// Output folder of the merged results.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Partial results: `partial-I-of-N.json` files, or folders holding
        /// them (a shard's `--out`, searched two levels deep).
        #[arg(required = true, value_name = "PART")]
        parts: Vec<PathBuf>,
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024))]
        jobs: Option<u64>,
    },
    /// Compare two runs (result folders or result.json files) check by check
    /// and point by point; exit status 1 when a verdict changed.
    Compare {
        /// The baseline run.
        a: PathBuf,
        /// The run compared with it.
        b: PathBuf,
        /// Most differing series points listed.
        #[arg(long, default_value_t = 40, value_name = "N")]
        points: usize,
        /// Also write the comparison (Markdown) to FILE.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Limits on the pcap files a run writes.
#[derive(clap::Args, Clone, Copy)]
struct CaptureOpts {
    /// Largest pcap file, MB: frames past it are left out (and counted on
    /// stderr).
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pcap_max_mb: Option<u64>,
    /// Capture only the trials a result reports, not the probes of a
    /// zero-loss search (the reported trial is rerun with capture on).
    #[arg(long)]
    pcap_measured_only: bool,
}

impl CaptureOpts {
    fn apply(self, ctx: RunContext) -> RunContext {
        ctx.with_pcap_options(
            self.pcap_max_mb.map(|mb| mb * 1_000_000),
            self.pcap_measured_only,
        )
    }
}

/// What a trace keeps, so that it stays small.
#[derive(clap::Args, Clone)]
struct TraceOpts {
    /// Keep only tracks whose name (`hostN PRESET/TRACK`, e.g. `core 0`,
    /// `pcie`, `wire`) contains one of these comma-separated strings.
    #[arg(long, value_name = "COMPONENT[,..]", value_parser = parse_trace_filter)]
    trace_filter: Option<TraceFilter>,
    /// Keep only events overlapping this window of simulated time, µs.
    #[arg(long, value_name = "START_US..END_US", value_parser = parse_trace_window)]
    trace_window: Option<(Time, Time)>,
    /// Most events kept per simulation; later ones are counted in the file
    /// (`otherData.dropped_events`) and on stderr.
    #[arg(long, value_name = "N", default_value_t = nextio_engine::trace::DEFAULT_TRACE_LIMIT as u64,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    trace_limit: u64,
}

/// The components of `--trace-filter`.
#[derive(Clone, Debug)]
struct TraceFilter(Vec<String>);

fn parse_trace_filter(s: &str) -> Result<TraceFilter, String> {
    let parts: Vec<String> = s.split(',').map(|p| p.trim().to_string()).collect();
    if parts.iter().any(String::is_empty) {
        return Err(format!(
            "`{s}` has an empty component; give COMPONENT[,COMPONENT..]"
        ));
    }
    Ok(TraceFilter(parts))
}

/// `START_US..END_US` as a window of simulated time, whole picoseconds.
fn parse_trace_window(s: &str) -> Result<(Time, Time), String> {
    let bad = || format!("`{s}` is not START_US..END_US (microseconds, START below END)");
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let us = |v: &str| -> Result<Time, String> {
        let x: f64 = v.trim().parse().map_err(|_| bad())?;
        // Up to about 213 days: beyond it picoseconds overflow u64.
        if !(0.0..=1.8e13).contains(&x) {
            return Err(bad());
        }
        Ok(Time((x * 1e6).round() as u64))
    };
    let (start, end) = (us(a)?, us(b)?);
    if start >= end {
        return Err(bad());
    }
    Ok((start, end))
}

impl TraceOpts {
    fn config(&self) -> nextio_engine::TraceConfig {
        nextio_engine::TraceConfig {
            filter: self
                .trace_filter
                .as_ref()
                .map(|f| f.0.clone())
                .unwrap_or_default(),
            window: self.trace_window,
            limit: self.trace_limit as usize,
        }
    }
    /// Whether any option was given (they need `--trace`).
    fn any(&self) -> bool {
        self.trace_filter.is_some()
            || self.trace_window.is_some()
            || self.trace_limit != nextio_engine::trace::DEFAULT_TRACE_LIMIT as u64
    }
}

/// How a run spreads over processes and threads.
#[derive(clap::Args, Clone, Copy)]
struct Scale {
    /// Compute only shard I of N (counted from 1) of the run's independent
    /// simulations (sweep points × seeds) and write DIR/NAME/partial-I-of-N.json;
    /// `nextio merge` combines the N partials.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Simulations run at once on this machine (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024))]
    jobs: Option<u64>,
}

/// A failure to report in one line, with the exit status it deserves.
struct Failure {
    message: String,
    status: u8,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            status: 2,
        }
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Failure {
        Failure::usage(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version: clap's own output, success.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.to_string();
            let line = rendered
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("error: {line} (try --help)");
            return ExitCode::from(2);
        }
    };
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", one_line(&f.message));
            ExitCode::from(f.status)
        }
    }
}

/// `message` with control characters escaped, so an error stays one line
/// whatever a path or value held.
fn one_line(message: &str) -> String {
    message
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Compare { a, b, points, out } => {
            let load = |p: &Path| compare::load(p).map_err(|e| Failure::usage(e.to_string()));
            let c = compare::compare(&load(&a)?, &load(&b)?);
            let text = compare::render(
                &c,
                &a.display().to_string(),
                &b.display().to_string(),
                points,
            );
            print!("{text}");
            if let Some(file) = out {
                output::write_atomically(&file, text.as_bytes())
                    .map_err(|e| Failure::usage(format!("cannot write {e}")))?;
            }
            match c.verdict_changes() {
                0 => Ok(()),
                n => Err(Failure {
                    message: format!("{n} verdict change(s) between the runs"),
                    status: 1,
                }),
            }
        }
        Command::List { json: true } => {
            let list: Vec<serde_json::Value> = nextio_experiments::all()
                .into_iter()
                .map(|e| {
                    serde_json::json!({
                        "name": e.name(),
                        "paper": e.paper(),
                        "reproduces": e.reproduces(),
                        "about": e.about(),
                        "params": e.params().iter().map(|p| serde_json::json!({
                            "name": p.name,
                            "kind": p.kind_name(),
                            "unit": p.unit,
                            "default": p.default,
                            "quick": p.quick_default,
                            "accepts": p.accepts(),
                            "help": p.help,
                        })).collect::<Vec<_>>(),
                        "checks": e.checks(),
                    })
                })
                .collect();
            let text = serde_json::to_string_pretty(&list)
                .map_err(|e| Failure::usage(format!("cannot render the list: {e}")))?;
            println!("{text}");
            Ok(())
        }
        Command::List { json: false } => {
            for e in nextio_experiments::all() {
                println!("{:<28} {}", e.name(), e.reproduces());
            }
            Ok(())
        }
        Command::Presets { name } => {
            match name {
                None => {
                    for p in nextio_presets::PRESETS {
                        let t = nextio_presets::shipped(p.name)
                            .map_err(|e| Failure::usage(e.to_string()))?;
                        println!("{:<16} {}", p.name, t.description());
                    }
                }
                Some(name) => {
                    let t = nextio_presets::shipped(&name)
                        .map_err(|e| Failure::usage(e.to_string()))?;
                    print!("{}", t.to_toml());
                }
            }
            Ok(())
        }
        Command::Run {
            name,
            quick,
            seed,
            seeds,
            set,
            config,
            out,
            pcap,
            trace,
            trace_opts,
            stats,
            describe,
            scale,
            captures,
        } => {
            let exp = find(&name)?;
            if trace.is_none() && trace_opts.any() {
                return Err(Failure::usage(
                    "--trace-filter, --trace-window and --trace-limit need --trace DIR",
                ));
            }
            let traces = trace_opts.config();
            if stats && scale.shard.is_some() {
                return Err(Failure::usage(
                    "--stats is not available with --shard (run the point unsharded)",
                ));
            }
            let stats = stats.then(|| out.clone());
            let (prims, set): (Vec<String>, Vec<String>) = set
                .into_iter()
                .partition(|s| primitives::is_primitive_path(s));
            let config = install(config.as_deref(), &prims)?;
            if describe {
                print!("{}", describe_text(exp));
                return Ok(());
            }
            jobs(scale.jobs)?;
            let progress = Progress::new(seeds as usize);
            if let Some(shard) = scale.shard {
                let asked = asked(exp, quick, seed, seeds, &set, &prims, config);
                let files = [(pcap, "pcap"), (trace, "trace")];
                let partial =
                    run_shard(exp, &asked, shard, &files, &traces, captures, &progress, 0)?;
                let path = write_partial(&out, &partial)?;
                println!(
                    "{}: shard {shard} computed {} simulation(s); wrote {}",
                    exp.name(),
                    partial.points.len(),
                    path.display()
                );
                return Ok(());
            }
            let files = Artefacts {
                pcap,
                trace,
                traces,
                stats,
            };
            let result = run_seeds(exp, quick, seed, seeds, &set, files, captures, &progress, 0)?;
            let dir = write(&out, &result)?;
            print!("{}", output::summary_text(&result));
            println!("wrote {}", dir.display());
            Ok(())
        }
        Command::Reproduce {
            quick,
            seed,
            seeds,
            out,
            pcap,
            stats,
            config,
            scale,
            captures,
        } => {
            let config = install(config.as_deref(), &[])?;
            if stats && scale.shard.is_some() {
                return Err(Failure::usage(
                    "--stats is not available with --shard (run the point unsharded)",
                ));
            }
            jobs(scale.jobs)?;
            let started = Instant::now();
            let mut done = Vec::new();
            let mut failed = Vec::new();
            let all = nextio_experiments::all();
            let progress = Progress::new(all.len() * seeds as usize);
            if let Some(shard) = scale.shard {
                let mut points = 0;
                for (i, exp) in all.into_iter().enumerate() {
                    let asked = asked(exp, quick, seed, seeds, &[], &[], config.clone());
                    let files = [(pcap.clone(), "pcap"), (None, "trace")];
                    let first = i * seeds as usize;
                    let traces = nextio_engine::TraceConfig::default();
                    match run_shard(
                        exp, &asked, shard, &files, &traces, captures, &progress, first,
                    )
                    .and_then(|p| write_partial(&out, &p).map(|_| p))
                    {
                        Ok(p) => points += p.points.len(),
                        Err(f) => {
                            eprintln!("error: {}: {}", exp.name(), one_line(&f.message));
                            failed.push(exp.name());
                        }
                    }
                }
                println!(
                    "shard {shard}: {points} simulation(s) in {:.1} s; partials in {}",
                    started.elapsed().as_secs_f64(),
                    out.display()
                );
                return failures(&failed);
            }
            for (i, exp) in all.into_iter().enumerate() {
                let first = i * seeds as usize;
                let files = Artefacts {
                    pcap: pcap.clone(),
                    trace: None,
                    traces: nextio_engine::TraceConfig::default(),
                    stats: stats.then(|| out.clone()),
                };
                match run_seeds(
                    exp,
                    quick,
                    seed,
                    seeds,
                    &[],
                    files,
                    captures,
                    &progress,
                    first,
                ) {
                    Ok(result) => {
                        write(&out, &result)?;
                        print!("{}", output::summary_text(&result));
                        let svg = output::chart_svg(&result);
                        done.push((result, svg));
                    }
                    Err(f) => {
                        eprintln!("error: {}: {}", exp.name(), one_line(&f.message));
                        failed.push(exp.name());
                    }
                }
            }
            let index = write_report(&out, &done)?;
            println!(
                "wrote {} ({} experiments in {:.1} s)",
                index.display(),
                done.len(),
                started.elapsed().as_secs_f64()
            );
            failures(&failed)
        }
        Command::Merge {
            out,
            parts,
            jobs: j,
        } => {
            jobs(j)?;
            merge(&out, &parts)
        }
    }
}

/// Status 1 naming the experiments that failed, if any did.
fn failures(failed: &[&str]) -> Result<(), Failure> {
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            message: format!(
                "{} experiment(s) failed: {}",
                failed.len(),
                failed.join(", ")
            ),
            status: 1,
        })
    }
}

/// Write `DIR/index.html` and `DIR/summary.md` over `done`; returns the
/// index's path.
fn write_report(out: &Path, done: &[(ExperimentResult, String)]) -> Result<PathBuf, Failure> {
    let run = RunInfo::now(GIT_COMMIT);
    let index = out.join("index.html");
    output::write_atomically(&index, report::index_html(&run, done).as_bytes())
        .map_err(|e| Failure::usage(format!("cannot write {e}")))?;
    let summary = out.join("summary.md");
    let results: Vec<ExperimentResult> = done.iter().map(|(r, _)| r.clone()).collect();
    output::write_atomically(
        &summary,
        report::summary_markdown(&run, &results).as_bytes(),
    )
    .map_err(|e| Failure::usage(format!("cannot write {e}")))?;
    println!(
        "all checks: {}",
        output::tally_line(results.iter().flat_map(|r| &r.checks))
    );
    Ok(index)
}

/// Bound the simulations run at once to `n` threads.
fn jobs(n: Option<u64>) -> Result<(), Failure> {
    let Some(n) = n else { return Ok(()) };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n as usize)
        .build_global()
        .map_err(|e| Failure::usage(format!("cannot start {n} worker threads: {e}")))
}

/// What a sharded run of `exp` was asked, as every shard records it.
fn asked(
    exp: &dyn Experiment,
    quick: bool,
    seed: u64,
    seeds: u64,
    set: &[String],
    prims: &[String],
    config: Option<(String, String)>,
) -> ShardedRun {
    ShardedRun {
        experiment: exp.name().into(),
        quick,
        seed,
        seeds,
        set: set.to_vec(),
        primitives: prims.to_vec(),
        config,
        version: env!("CARGO_PKG_VERSION").into(),
        commit: GIT_COMMIT.map(String::from),
    }
}

/// Shard `shard` of the run `asked` of `exp`: its simulations under every
/// seed. `files` are the capture and trace folders with what they hold.
#[allow(clippy::too_many_arguments)]
fn run_shard(
    exp: &dyn Experiment,
    asked: &ShardedRun,
    shard: Shard,
    files: &[(Option<PathBuf>, &str); 2],
    traces: &nextio_engine::TraceConfig,
    captures: CaptureOpts,
    progress: &Progress,
    first: usize,
) -> Result<Partial, Failure> {
    let started = Instant::now();
    let params = Params::resolve(exp.name(), exp.params(), asked.quick, &asked.set)
        .map_err(RunError::from)?;
    let mut points = Vec::new();
    for k in 0..asked.seeds {
        let index = first + k as usize;
        let shown = progress.start(index, exp.name());
        let this_seed = asked.seed.wrapping_add(k);
        let per_seed = |dir: &Option<PathBuf>| match dir {
            Some(d) if asked.seeds > 1 => Some(d.join(format!("seed-{this_seed}"))),
            other => other.clone(),
        };
        let ctx = captures
            .apply(RunContext::new(params.clone(), this_seed, asked.quick))
            .with_pcap_dir(per_seed(&files[0].0))
            .with_trace_dir(per_seed(&files[1].0))
            .with_trace_config(traces.clone())
            .with_progress(shown.callback());
        let done = shard::execute_shard(exp, ctx, shard, k);
        progress.finish(index, exp.name(), shown);
        points.extend(done?);
    }
    Ok(Partial {
        format: shard::PARTIAL_FORMAT,
        shard,
        run: asked.clone(),
        command: shard::command_without_shard(&std::env::args().collect::<Vec<_>>()),
        started: RunInfo::now(None).started,
        wall_s: started.elapsed().as_secs_f64(),
        points,
    })
}

/// Write `partial` as `out/NAME/partial-I-of-N.json`.
fn write_partial(out: &Path, partial: &Partial) -> Result<PathBuf, Failure> {
    let dir = out.join(&partial.run.experiment);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::usage(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join(shard::partial_file_name(partial.shard));
    let json = serde_json::to_string_pretty(partial)
        .map_err(|e| Failure::usage(format!("cannot render the partial: {e}")))?;
    output::write_atomically(&path, (json + "\n").as_bytes())
        .map_err(|e| Failure::usage(format!("cannot write {e}")))?;
    Ok(path)
}

/// The partial files among `parts`: files as given, folders searched two
/// levels deep for `partial-I-of-N.json`.
fn partial_files(parts: &[PathBuf]) -> Result<Vec<PathBuf>, Failure> {
    fn walk(dir: &Path, depth: u32, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() && depth > 0 {
                walk(&p, depth - 1, found)?;
            } else if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("partial-") && n.ends_with(".json") && n.contains("-of-")
            }) {
                found.push(p);
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    for part in parts {
        if part.is_dir() {
            walk(part, 2, &mut found)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", part.display())))?;
        } else {
            found.push(part.clone());
        }
    }
    if found.is_empty() {
        return Err(Failure::usage("no partial results among the given paths"));
    }
    Ok(found)
}

/// `nextio merge`: read the partials, check they belong together, replay
/// each experiment over them and write its result (and the report, when
/// several experiments were merged).
fn merge(out: &Path, parts: &[PathBuf]) -> Result<(), Failure> {
    let mut by_experiment: std::collections::BTreeMap<String, Vec<Partial>> = Default::default();
    for path in partial_files(parts)? {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
        let p: Partial = serde_json::from_str(&text).map_err(|e| {
            Failure::usage(format!("{} is not a partial result: {e}", path.display()))
        })?;
        by_experiment
            .entry(p.run.experiment.clone())
            .or_default()
            .push(p);
    }
    // Primitives are the process's: every experiment merged must share them.
    let mut groups = by_experiment.values();
    let first = &groups.next().expect("at least one partial")[0].run;
    if let Some(other) =
        groups.find(|g| g[0].run.primitives != first.primitives || g[0].run.config != first.config)
    {
        return Err(Failure::usage(format!(
            "{} and {} were run with different primitives; merge them apart",
            first.experiment, other[0].run.experiment
        )));
    }
    let config = first.config.as_ref().map(|(l, t)| (t.as_str(), l.as_str()));
    primitives::install(config, &first.primitives).map_err(|e| Failure::usage(e.to_string()))?;
    let mut done = Vec::new();
    for exp in nextio_experiments::all() {
        let Some(partials) = by_experiment.remove(exp.name()) else {
            continue;
        };
        let result = shard::merge(exp, &partials)?;
        write(out, &result)?;
        print!("{}", output::summary_text(&result));
        let svg = output::chart_svg(&result);
        done.push((result, svg));
    }
    if let Some(unknown) = by_experiment.keys().next() {
        return Err(Failure::usage(format!(
            "partials of unknown experiment `{unknown}`"
        )));
    }
    if done.len() > 1 {
        let index = write_report(out, &done)?;
        println!(
            "wrote {} ({} experiments merged)",
            index.display(),
            done.len()
        );
    } else {
        println!("wrote {}", out.join(&done[0].0.experiment).display());
    }
    Ok(())
}

/// Fix the primitives of this process: `config` laid over the presets,
/// then the `prims` assignments. Returns the configuration's label and
/// text, for a shard to record.
fn install(config: Option<&Path>, prims: &[String]) -> Result<Option<(String, String)>, Failure> {
    let text = match config {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let label = config.map(|p| p.display().to_string()).unwrap_or_default();
    primitives::install(text.as_deref().map(|t| (t, label.as_str())), prims)
        .map_err(|e| Failure::usage(e.to_string()))?;
    Ok(text.map(|t| (label, t)))
}

fn find(name: &str) -> Result<&'static dyn Experiment, Failure> {
    nextio_experiments::find(name).ok_or_else(|| {
        let names: Vec<_> = nextio_experiments::all().iter().map(|e| e.name()).collect();
        Failure::usage(format!(
            "unknown experiment `{name}` (known: {})",
            names.join(", ")
        ))
    })
}

/// Most seeds one run may ask for: each multiplies its time.
const MAX_SEEDS: u64 = 64;

/// Where a run writes what it was asked for besides its result.
struct Artefacts {
    pcap: Option<PathBuf>,
    trace: Option<PathBuf>,
    traces: nextio_engine::TraceConfig,
    /// The run's `--out`, when it writes stats files.
    stats: Option<PathBuf>,
}

/// Run `exp` under `seeds` consecutive seeds from `seed` and summarise;
/// the runs are experiments `first..first + seeds` of `progress`.
#[allow(clippy::too_many_arguments)]
fn run_seeds(
    exp: &dyn Experiment,
    quick: bool,
    seed: u64,
    seeds: u64,
    set: &[String],
    files: Artefacts,
    captures: CaptureOpts,
    progress: &Progress,
    first: usize,
) -> Result<ExperimentResult, Failure> {
    if let Some(out) = &files.stats {
        // The stats of an earlier run of this experiment would be listed
        // nowhere: the folder is this run's alone.
        let old = out.join(exp.name()).join("stats");
        match std::fs::remove_dir_all(&old) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Failure::usage(format!(
                    "cannot clear {}: {e}",
                    old.display()
                )));
            }
        }
    }
    let mut runs = Vec::new();
    for k in 0..seeds {
        let index = first + k as usize;
        let shown = progress.start(index, exp.name());
        let this_seed = seed.wrapping_add(k);
        // Several seeds write their captures and traces apart.
        let per_seed = |dir: &Option<PathBuf>| match dir {
            Some(d) if seeds > 1 => Some(d.join(format!("seed-{this_seed}"))),
            other => other.clone(),
        };
        let params =
            Params::resolve(exp.name(), exp.params(), quick, set).map_err(RunError::from)?;
        let ctx = captures
            .apply(RunContext::new(params, this_seed, quick))
            .with_pcap_dir(per_seed(&files.pcap))
            .with_trace_dir(per_seed(&files.trace))
            .with_trace_config(files.traces.clone())
            .with_stats_dir(files.stats.clone(), seeds > 1)
            .with_progress(shown.callback());
        let run = nextio_experiments::execute(exp, ctx)
            .map(|mut result| {
                result.run.commit = GIT_COMMIT.map(String::from);
                result
            })
            .map_err(Failure::from);
        progress.finish(index, exp.name(), shown);
        runs.push(run?);
    }
    Ok(nextio_experiments::seeds::summarise(runs)?)
}

fn write(out: &Path, result: &ExperimentResult) -> Result<PathBuf, Failure> {
    output::write_result(out, result).map_err(|e| Failure::usage(format!("cannot write {e}")))
}

fn describe_text(exp: &dyn Experiment) -> String {
    let mut s = format!(
        "{} — {}\n\n{}\n\nParameters (--set KEY=VALUE):\n",
        exp.name(),
        exp.reproduces(),
        exp.about()
    );
    for p in exp.params() {
        let quick = p
            .quick_default
            .map(|q| format!(" (quick: {q})"))
            .unwrap_or_default();
        let unit = if p.unit.is_empty() {
            String::new()
        } else {
            format!(" [{}]", p.unit)
        };
        let choices = if p.choices.is_empty() {
            String::new()
        } else {
            format!("; one of: {}", p.choices.join(", "))
        };
        s.push_str(&format!(
            "  {:<16} {}{unit}, default {}{quick}{choices}\n      {}\n",
            p.name,
            p.accepts(),
            p.default,
            p.help
        ));
    }
    s.push_str("\nChecks (declared before the run; ID-POINT: one per sweep point):\n");
    for c in exp.checks() {
        let id = if c.per_point {
            format!("{}-POINT", c.id)
        } else {
            c.id.to_string()
        };
        let paper = match (c.paper, c.reference) {
            (Some(p), r) => format!("{p} {} ({})", c.unit, r.name()),
            (None, nextio_experiments::Reference::ClosedForm) => {
                "closed form, computed per point".to_string()
            }
            (None, _) => "none (model only)".to_string(),
        };
        let tolerance = c
            .tolerance
            .map(|t| t.describe(c.unit))
            .unwrap_or_else(|| "—".into());
        s.push_str(&format!(
            "  {id}\n      {}\n      paper: {paper}; tolerance: {tolerance}; origin: {} ({})\n",
            c.claim,
            c.origin.name(),
            c.origin.meaning()
        ));
    }
    s.push_str(&primitives::describe(exp));
    s
}
