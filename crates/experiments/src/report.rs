//! `index.html`: every experiment's chart and its paper-versus-model table
//! on one self-contained page (charts are inlined, so the folder can be
//! moved or mailed as is); and `summary.md`, the same checks as one
//! Markdown table (what the README's results table is taken from).

use std::fmt::Write as _;

use crate::experiment::ExperimentResult;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(v: f64) -> String {
    if v == 0.0 || (v.abs() >= 0.01 && v.abs() < 1e6) {
        format!("{v:.4}")
    } else {
        format!("{v:.4e}")
    }
}

/// The report page for `results`, with each chart's SVG given in `charts`.
pub fn index_html(results: &[(ExperimentResult, String)]) -> String {
    let mut h = String::new();
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>nextio report</title>\n");
    h.push_str(
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
         td:first-child,td:nth-child(2),th{text-align:left}.ok{color:#197a19}.miss{color:#b11}\
         .sim{color:#666;font-size:90%}section{border-top:2px solid #444;margin-top:2em}</style></head><body>\n",
    );
    h.push_str("<h1>nextio: paper versus model</h1>\n<ul>\n");
    for (r, _) in results {
        let _ = writeln!(
            h,
            "<li><a href=\"#{0}\">{0}</a> — {1}</li>",
            esc(&r.experiment),
            esc(&r.reproduces)
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
        h.push_str("\n<table><tr><th>check</th><th>claim</th><th>paper</th><th>model</th><th>unit</th><th>error</th><th></th></tr>\n");
        for c in &r.checks {
            let paper = c.paper.map(num).unwrap_or_else(|| "—".into());
            let err = c
                .error()
                .map(|e| format!("{:.2} %", e * 100.0))
                .unwrap_or_default();
            let verdict = match c.pass {
                Some(true) => format!("<span class=\"ok\">{}</span>", c.verdict()),
                Some(false) => format!("<span class=\"miss\">{}</span>", c.verdict()),
                None => String::new(),
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.id),
                esc(&c.claim),
                paper,
                num(c.model),
                esc(&c.unit),
                err,
                verdict
            );
        }
        h.push_str("</table>\n");
        for n in &r.notes {
            let _ = writeln!(h, "<p>{}</p>", esc(n));
        }
        let _ = writeln!(
            h,
            "<p class=\"sim\">seed {} · {} events · {:.3} ms simulated · {:.2} s wall · {:.2} M events/s · {:.2} M packets/s · <a href=\"{}/result.json\">result.json</a></p></section>",
            r.seed,
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

/// Every check of every result as one Markdown table.
pub fn summary_markdown(results: &[ExperimentResult]) -> String {
    let mut m = String::from(
        "| experiment | check | paper | model | unit | verdict |\n|---|---|---|---|---|---|\n",
    );
    for r in results {
        for c in &r.checks {
            let paper = c.paper.map(num).unwrap_or_else(|| "—".into());
            let verdict = c.verdict();
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} |",
                r.experiment,
                c.claim.replace('|', "/"),
                paper,
                num(c.model),
                c.unit,
                verdict
            );
        }
    }
    m
}
