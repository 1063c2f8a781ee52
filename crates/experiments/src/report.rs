//! `index.html`: one self-contained page (charts inlined, so the folder can
//! be moved or mailed as is) that opens with how the run was made and a
//! scoreboard — within / miss / model only per paper and overall, and the
//! origins of the model values — followed by every experiment's chart,
//! its checks with verdict and origin (misses coloured), and its notes;
//! and `summary.md`, the same run information, scoreboard and checks in
//! Markdown (what the README's results table is taken from).
//!
//! Invariant: the scoreboard counts exactly the checks the tables list.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::experiment::{Check, ExperimentResult, Origin, RunInfo, Verdict};
use crate::output::{model_text, reference_text, tolerance_text};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Verdicts and origins counted over a set of checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub within: usize,
    pub miss: usize,
    pub model_only: usize,
    /// Checks by the origin of their model value.
    pub origins: BTreeMap<Origin, usize>,
    /// Checks by origin and verdict.
    pub by_origin: BTreeMap<(Origin, Verdict), usize>,
}

impl Tally {
    pub fn add(&mut self, c: &Check) {
        match c.verdict {
            Verdict::Within => self.within += 1,
            Verdict::Miss => self.miss += 1,
            Verdict::ModelOnly => self.model_only += 1,
        }
        *self.origins.entry(c.origin).or_default() += 1;
        *self.by_origin.entry((c.origin, c.verdict)).or_default() += 1;
    }
    pub fn checks(&self) -> usize {
        self.within + self.miss + self.model_only
    }
    pub fn origin(&self, o: Origin) -> usize {
        self.origins.get(&o).copied().unwrap_or(0)
    }
    pub fn count(&self, o: Origin, v: Verdict) -> usize {
        self.by_origin.get(&(o, v)).copied().unwrap_or(0)
    }
}

/// The scoreboard: a [`Tally`] per paper, in the order the results name
/// them, and over everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scoreboard {
    pub papers: Vec<(String, Tally)>,
    pub total: Tally,
}

impl Scoreboard {
    pub fn of(results: &[ExperimentResult]) -> Scoreboard {
        let mut board = Scoreboard::default();
        for r in results {
            let i = match board.papers.iter().position(|(p, _)| *p == r.paper) {
                Some(i) => i,
                None => {
                    board.papers.push((r.paper.clone(), Tally::default()));
                    board.papers.len() - 1
                }
            };
            for c in &r.checks {
                board.papers[i].1.add(c);
                board.total.add(c);
            }
        }
        board
    }
}

/// Quick or full, and the seed, if every result agrees on them.
fn mode_and_seed(results: &[ExperimentResult]) -> (String, String) {
    let one = |f: &dyn Fn(&ExperimentResult) -> String| {
        let mut v: Vec<String> = results.iter().map(f).collect();
        v.dedup();
        v.join(", ")
    };
    (
        one(&|r| if r.quick { "quick" } else { "full" }.to_string()),
        one(&|r| r.seed.to_string()),
    )
}

fn run_lines(run: &RunInfo, results: &[ExperimentResult]) -> Vec<(&'static str, String)> {
    let (mode, seed) = mode_and_seed(results);
    vec![
        ("mode", mode),
        ("seed", seed),
        ("nextio", run.version.clone()),
        (
            "commit",
            run.commit.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("started", run.started.clone()),
        ("command", run.command.clone()),
    ]
}

fn verdict_html(v: Verdict) -> String {
    let class = match v {
        Verdict::Within => "ok",
        Verdict::Miss => "miss",
        Verdict::ModelOnly => "only",
    };
    format!("<span class=\"{class}\">{}</span>", v.name())
}

/// The report page for `results`, with each chart's SVG given beside it.
pub fn index_html(run: &RunInfo, results: &[(ExperimentResult, String)]) -> String {
    let plain: Vec<ExperimentResult> = results.iter().map(|(r, _)| r.clone()).collect();
    let board = Scoreboard::of(&plain);
    let mut h = String::new();
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>nextio report</title>\n");
    h.push_str(
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
         td.l,th{text-align:left}.ok{color:#197a19}.miss{color:#b11;font-weight:bold}.only{color:#666}\
         tr.miss td{background:#fde8e8}.sim{color:#666;font-size:90%}\
         section{border-top:2px solid #444;margin-top:2em}svg{max-width:100%;height:auto}\
         dl.run{display:grid;grid-template-columns:max-content auto;gap:2px 1em}dl.run dt{font-weight:bold}\
         dl.run dd{margin:0;font-family:monospace;word-break:break-all}</style></head><body>\n",
    );
    h.push_str("<h1>nextio: paper versus model</h1>\n<dl class=\"run\">\n");
    for (k, v) in run_lines(run, &plain) {
        let _ = writeln!(h, "<dt>{k}</dt><dd>{}</dd>", esc(&v));
    }
    h.push_str("</dl>\n");
    scoreboard_html(&mut h, &board);
    h.push_str("<h2>Experiments</h2>\n<ul>\n");
    for (r, _) in results {
        let _ = writeln!(
            h,
            "<li><a href=\"#{0}\">{0}</a> — {1} ({2})</li>",
            esc(&r.experiment),
            esc(&r.reproduces),
            tally_words(&r.checks)
        );
    }
    h.push_str("</ul>\n");
    for (r, svg) in results {
        let _ = writeln!(
            h,
            "<section id=\"{0}\"><h2>{0}</h2><p>{1}</p>",
            esc(&r.experiment),
            esc(&r.reproduces)
        );
        h.push_str(svg.trim_start_matches(|c| c != '<'));
        h.push_str(
            "\n<table><tr><th>check</th><th>claim</th><th>verdict</th><th>origin</th>\
             <th>paper</th><th>model</th><th>unit</th><th>tolerance</th><th>error</th></tr>\n",
        );
        for c in &r.checks {
            let err = c
                .error()
                .map(|e| format!("{:.1} %", e * 100.0))
                .unwrap_or_default();
            let _ = writeln!(
                h,
                "<tr{}><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td>\
                 <td>{}</td><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td></tr>",
                if c.verdict == Verdict::Miss {
                    " class=\"miss\""
                } else {
                    ""
                },
                esc(&c.id),
                esc(&c.claim),
                verdict_html(c.verdict),
                c.origin.name(),
                esc(&reference_text(c)),
                model_text(c),
                esc(&c.unit),
                esc(&tolerance_text(c)),
                err
            );
        }
        h.push_str("</table>\n");
        if !r.not_evaluated.is_empty() {
            let _ = writeln!(
                h,
                "<p class=\"sim\">Declared but not evaluated with these parameters: {}</p>",
                esc(&r.not_evaluated.join(", "))
            );
        }
        for n in &r.notes {
            let _ = writeln!(h, "<p>{}</p>", esc(n));
        }
        let _ = writeln!(
            h,
            "<p class=\"sim\">seed {} · {} · {} events · {:.3} ms simulated · {:.2} s wall · {:.2} M events/s · {:.2} M packets/s · <a href=\"{}/result.json\">result.json</a></p></section>",
            r.seed,
            if r.quick { "quick" } else { "full" },
            r.sim.events,
            r.sim.simulated_ps as f64 / 1e9,
            r.sim.wall_s,
            r.sim.events_per_wall_s / 1e6,
            r.sim.packets_per_wall_s / 1e6,
            esc(&r.experiment)
        );
    }
    h.push_str("</body></html>\n");
    h
}

fn tally_words(checks: &[Check]) -> String {
    let mut t = Tally::default();
    for c in checks {
        t.add(c);
    }
    format!(
        "{} within, {} miss, {} model only",
        t.within, t.miss, t.model_only
    )
}

fn scoreboard_html(h: &mut String, board: &Scoreboard) {
    h.push_str("<h2>Scoreboard</h2>\n<table><tr><th>paper</th><th>checks</th><th>within</th><th>miss</th><th>model only</th>");
    for o in Origin::ALL {
        let _ = write!(h, "<th>{}</th>", o.name());
    }
    h.push_str("</tr>\n");
    let row = |h: &mut String, name: &str, t: &Tally, bold: bool| {
        let (a, b) = if bold { ("<b>", "</b>") } else { ("", "") };
        let _ = write!(
            h,
            "<tr><td class=\"l\">{a}{}{b}</td><td>{a}{}{b}</td><td class=\"ok\">{a}{}{b}</td><td class=\"miss\">{a}{}{b}</td><td class=\"only\">{a}{}{b}</td>",
            esc(name),
            t.checks(),
            t.within,
            t.miss,
            t.model_only
        );
        for o in Origin::ALL {
            let _ = write!(h, "<td>{a}{}{b}</td>", t.origin(o));
        }
        h.push_str("</tr>\n");
    };
    for (paper, t) in &board.papers {
        row(h, paper, t, false);
    }
    row(h, "all", &board.total, true);
    h.push_str("</table>\n");
    // Verdicts by origin: only simulated agreement is evidence for the
    // model's mechanism; fitted agreement is none.
    h.push_str("<table><tr><th>origin</th><th>meaning</th><th>within</th><th>miss</th><th>model only</th></tr>\n");
    for o in Origin::ALL {
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"ok\">{}</td><td class=\"miss\">{}</td><td class=\"only\">{}</td></tr>",
            o.name(),
            esc(o.meaning()),
            board.total.count(o, Verdict::Within),
            board.total.count(o, Verdict::Miss),
            board.total.count(o, Verdict::ModelOnly)
        );
    }
    h.push_str("</table>\n");
}

/// The run information, scoreboard and every check as Markdown.
pub fn summary_markdown(run: &RunInfo, results: &[ExperimentResult]) -> String {
    let board = Scoreboard::of(results);
    let mut m = String::from("# nextio: paper versus model\n\n");
    for (k, v) in run_lines(run, results) {
        let _ = writeln!(m, "- {k}: `{}`", v.replace('`', "'"));
    }
    m.push_str("\n| paper | checks | within | miss | model only |");
    for o in Origin::ALL {
        let _ = write!(m, " {} |", o.name());
    }
    m.push_str("\n|---|---|---|---|---|---|---|---|---|\n");
    let row = |m: &mut String, name: &str, t: &Tally| {
        let _ = write!(
            m,
            "| {name} | {} | {} | {} | {} |",
            t.checks(),
            t.within,
            t.miss,
            t.model_only
        );
        for o in Origin::ALL {
            let _ = write!(m, " {} |", t.origin(o));
        }
        m.push('\n');
    };
    for (paper, t) in &board.papers {
        row(&mut m, paper, t);
    }
    row(&mut m, "**all**", &board.total);
    m.push_str(
        "\n| experiment | check | claim | verdict | origin | paper | model | unit | tolerance |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        for c in &r.checks {
            let verdict = match c.verdict {
                Verdict::Miss => "**miss**".to_string(),
                v => v.name().to_string(),
            };
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.experiment,
                c.id,
                c.claim.replace('|', "/"),
                verdict,
                c.origin.name(),
                reference_text(c),
                model_text(c),
                c.unit,
                tolerance_text(c)
            );
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{CheckSpec, STATED, SimStats, Tolerance};
    use serde_json::json;

    const SPECS: [CheckSpec; 4] = [
        CheckSpec::new("a", "a hit", "x", Origin::Simulated).stated(10.0, STATED),
        CheckSpec::new("b", "a miss", "x", Origin::Composed).stated(10.0, STATED),
        CheckSpec::new("c", "alone", "x", Origin::Simulated),
        CheckSpec::new("d", "a closed form", "x", Origin::Validation)
            .closed_form(Tolerance::Relative(0.01)),
    ];

    fn result(paper: &str, checks: Vec<Check>) -> ExperimentResult {
        ExperimentResult {
            experiment: format!("exp-{paper}"),
            reproduces: "a figure".into(),
            paper: paper.into(),
            run: RunInfo::default(),
            seed: 3,
            quick: false,
            params: json!({}),
            series: vec![],
            axes: vec![],
            checks,
            not_evaluated: vec![],
            seeds: vec![],
            inputs: Default::default(),
            notes: vec![],
            sim: SimStats {
                events: 0,
                simulated_ps: 0,
                packets: 0,
                wall_s: 0.0,
                events_per_wall_s: 0.0,
                packets_per_wall_s: 0.0,
            },
            stats: vec![],
        }
    }

    fn sample() -> Vec<ExperimentResult> {
        vec![
            result(
                "P",
                vec![
                    SPECS[0].judge(10.5),
                    SPECS[1].judge(20.0),
                    SPECS[2].judge(1.0),
                ],
            ),
            result("Q", vec![SPECS[3].judge_against(5.0, 5.01)]),
        ]
    }

    #[test]
    fn scoreboard_counts_match_the_checks() {
        let results = sample();
        let board = Scoreboard::of(&results);
        assert_eq!(board.papers.len(), 2);
        let p = &board.papers[0].1;
        assert_eq!((p.within, p.miss, p.model_only), (1, 1, 1));
        assert_eq!(p.origin(Origin::Simulated), 2);
        assert_eq!(p.origin(Origin::Composed), 1);
        assert_eq!(board.total.checks(), 4);
        assert_eq!(board.total.count(Origin::Validation, Verdict::Within), 1);
        let all: usize = results.iter().map(|r| r.checks.len()).sum();
        assert_eq!(board.total.checks(), all);
    }

    #[test]
    fn report_opens_with_run_information_and_scoreboard_and_colours_misses() {
        let run = RunInfo {
            version: "9.9.9".into(),
            commit: None,
            started: "2000-01-01 00:00:00 UTC".into(),
            command: "nextio reproduce".into(),
        };
        let page = index_html(
            &run,
            &sample()
                .into_iter()
                .map(|r| (r, "<svg></svg>".to_string()))
                .collect::<Vec<_>>(),
        );
        let board = page.find("Scoreboard").expect("scoreboard");
        let first_section = page.find("<section").expect("a section");
        assert!(board < first_section);
        for s in ["full", "9.9.9", "2000-01-01", "nextio reproduce", "commit"] {
            assert!(page[..board].contains(s), "run information lacks {s}");
        }
        assert!(page.contains("<tr class=\"miss\">"));
        assert_eq!(page.matches("<span class=\"miss\">miss</span>").count(), 1);
        let md = summary_markdown(&run, &sample());
        assert!(md.contains("| **all** | 4 | 2 | 1 | 1 |"), "{md}");
        assert!(md.contains("**miss**") && md.contains("(closed form)"));
    }
}
