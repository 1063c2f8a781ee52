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

use clap::{Parser, Subcommand};
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
        /// Write every simulation's event trace (time in ps, event) into DIR.
        #[arg(long, value_name = "DIR")]
        trace: Option<PathBuf>,
        /// Print the experiment's parameters (defaults, units, meaning) and its
        /// declared checks (claim, paper value, tolerance, origin), and exit.
        #[arg(long)]
        describe: bool,
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
        /// Lay a configuration file over the host presets (as for `run`).
        #[arg(long, value_name = "FILE.toml")]
        config: Option<PathBuf>,
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
            describe,
        } => {
            let exp = find(&name)?;
            let (prims, set): (Vec<String>, Vec<String>) = set
                .into_iter()
                .partition(|s| primitives::is_primitive_path(s));
            install(config.as_deref(), &prims)?;
            if describe {
                print!("{}", describe_text(exp));
                return Ok(());
            }
            let progress = Progress::new(seeds as usize);
            let result = run_seeds(exp, quick, seed, seeds, &set, pcap, trace, &progress, 0)?;
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
            config,
        } => {
            install(config.as_deref(), &[])?;
            let started = Instant::now();
            let mut done = Vec::new();
            let mut failed = Vec::new();
            let all = nextio_experiments::all();
            let progress = Progress::new(all.len() * seeds as usize);
            for (i, exp) in all.into_iter().enumerate() {
                let first = i * seeds as usize;
                match run_seeds(
                    exp,
                    quick,
                    seed,
                    seeds,
                    &[],
                    pcap.clone(),
                    None,
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
            let run = RunInfo::now(GIT_COMMIT);
            let index = out.join("index.html");
            output::write_atomically(&index, report::index_html(&run, &done).as_bytes())
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
            println!(
                "wrote {} ({} experiments in {:.1} s)",
                index.display(),
                done.len(),
                started.elapsed().as_secs_f64()
            );
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
    }
}

/// Fix the primitives of this process: `config` laid over the presets,
/// then the `prims` assignments.
fn install(config: Option<&Path>, prims: &[String]) -> Result<(), Failure> {
    let text = match config {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let label = config.map(|p| p.display().to_string()).unwrap_or_default();
    primitives::install(text.as_deref().map(|t| (t, label.as_str())), prims)
        .map_err(|e| Failure::usage(e.to_string()))
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

/// Run `exp` under `seeds` consecutive seeds from `seed` and summarise;
/// the runs are experiments `first..first + seeds` of `progress`.
#[allow(clippy::too_many_arguments)]
fn run_seeds(
    exp: &dyn Experiment,
    quick: bool,
    seed: u64,
    seeds: u64,
    set: &[String],
    pcap: Option<PathBuf>,
    trace: Option<PathBuf>,
    progress: &Progress,
    first: usize,
) -> Result<ExperimentResult, Failure> {
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
        let run = run_one(
            exp,
            quick,
            this_seed,
            set,
            per_seed(&pcap),
            per_seed(&trace),
            &shown,
        );
        progress.finish(index, exp.name(), shown);
        runs.push(run?);
    }
    Ok(nextio_experiments::seeds::summarise(runs)?)
}

fn run_one(
    exp: &dyn Experiment,
    quick: bool,
    seed: u64,
    set: &[String],
    pcap: Option<PathBuf>,
    trace: Option<PathBuf>,
    shown: &progress::Experiment,
) -> Result<ExperimentResult, Failure> {
    let params = Params::resolve(exp.name(), exp.params(), quick, set).map_err(RunError::from)?;
    let ctx = RunContext::new(params, seed, quick)
        .with_pcap_dir(pcap)
        .with_trace_dir(trace)
        .with_progress(shown.callback());
    let mut result = nextio_experiments::execute(exp, ctx)?;
    result.run.commit = GIT_COMMIT.map(String::from);
    Ok(result)
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
