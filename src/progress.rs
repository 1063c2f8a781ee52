//! Progress of a run on stderr: in a terminal, one overall bar (experiments
//! done of the total, elapsed, estimate of what remains) above a bar for
//! the experiment running; elsewhere (a CI log, a batch job's file) plain
//! lines — one as each of several experiments ends, with the count and an
//! estimate of what remains, and one at most every [`LINE_EVERY`] while an
//! experiment runs — so a log shows where a long run is without
//! carriage-return noise, and a quick single run prints nothing. Progress never touches stdout, which
//! carries the results.

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Least time between two plain progress lines of one experiment.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// Bars shown only after this long, so quick runs print nothing.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// The progress of a whole invocation (`run` or `reproduce`).
pub struct Progress {
    total: usize,
    started: Instant,
    kind: Kind,
}

enum Kind {
    Bars {
        multi: MultiProgress,
        overall: Option<ProgressBar>,
    },
    Lines,
}

impl Progress {
    /// Progress over `total` experiments (seeds count as experiments).
    pub fn new(total: usize) -> Progress {
        let kind = if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = (total > 1).then(|| {
                let bar = multi.add(ProgressBar::new(total as u64));
                if let Ok(style) = ProgressStyle::with_template(
                    "{prefix:>24} [{bar:40}] {pos}/{len} experiments, {elapsed} elapsed, ~{eta} left",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_prefix("all");
                bar
            });
            Kind::Bars { multi, overall }
        } else {
            Kind::Lines
        };
        Progress {
            total,
            started: Instant::now(),
            kind,
        }
    }

    /// Start experiment number `index` (from 0); returns the callback the
    /// run reports its fraction done through.
    pub fn start(&self, index: usize, name: &str) -> Experiment {
        let label = format!("{name} ({}/{})", index + 1, self.total);
        match &self.kind {
            Kind::Bars { multi, .. } => {
                // Joins the display only once the run has lasted a while.
                let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::hidden());
                if let Ok(style) =
                    ProgressStyle::with_template("{prefix:>24} [{bar:40}] {percent:>3}% {elapsed}")
                {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_prefix(name.to_string());
                Experiment {
                    shown: Shown::Bar {
                        bar,
                        multi: multi.clone(),
                    },
                    started: Instant::now(),
                }
            }
            Kind::Lines => Experiment {
                shown: Shown::Line {
                    label,
                    last: Arc::new(Mutex::new(Instant::now())),
                },
                started: Instant::now(),
            },
        }
    }

    /// Experiment number `index` ended (successfully or not).
    pub fn finish(&self, index: usize, name: &str, experiment: Experiment) {
        experiment.clear();
        let done = index + 1;
        let elapsed = self.started.elapsed().as_secs_f64();
        match &self.kind {
            Kind::Bars { overall, .. } => {
                if let Some(bar) = overall {
                    bar.set_position(done as u64);
                    if done == self.total {
                        bar.finish_and_clear();
                    }
                }
            }
            // One experiment alone says nothing: its result follows.
            Kind::Lines if self.total > 1 => {
                let left = elapsed / done as f64 * (self.total - done) as f64;
                eprintln!(
                    "progress: {name} ended ({done}/{}), {elapsed:.0} s elapsed, ~{left:.0} s left",
                    self.total
                );
            }
            Kind::Lines => {}
        }
    }
}

/// The progress of one experiment.
pub struct Experiment {
    shown: Shown,
    started: Instant,
}

enum Shown {
    Bar {
        bar: ProgressBar,
        multi: MultiProgress,
    },
    Line {
        label: String,
        last: Arc<Mutex<Instant>>,
    },
}

impl Experiment {
    /// The callback a run reports its fraction done through.
    pub fn callback(&self) -> impl Fn(f64) + Sync + Send + 'static {
        let started = self.started;
        let (bar, line) = match &self.shown {
            Shown::Bar { bar, multi } => (Some((bar.clone(), multi.clone())), None),
            Shown::Line { label, last } => (None, Some((label.clone(), last.clone()))),
        };
        move |fraction: f64| {
            if let Some((bar, multi)) = &bar {
                if bar.is_hidden() && started.elapsed() > SHOW_AFTER {
                    multi.add(bar.clone());
                }
                bar.set_position((fraction * 1000.0) as u64);
            }
            if let Some((label, last)) = &line {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= LINE_EVERY {
                    *last = Instant::now();
                    eprintln!(
                        "progress: {label} {:.0} %, {:.0} s",
                        fraction * 100.0,
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }

    fn clear(self) {
        if let Shown::Bar { bar, multi } = self.shown {
            bar.finish_and_clear();
            multi.remove(&bar);
        }
    }
}
