//! The SVG chart of a result: one panel per plotted quantity, one curve (or
//! bar) per series, the paper's values beside the model's.
//!
//! What it keeps true:
//! * a pure function of the [`ExperimentResult`] — no clock, no randomness
//!   — so two runs with the same seed draw the same chart;
//! * it scales with the page: a `viewBox`, `width="100%"`, no fixed size;
//! * axes are titled with quantity and unit from the result's [`Axis`]
//!   list (a field without one falls back to its name), and an axis marked
//!   logarithmic is drawn so, leaving out values that are not positive;
//! * a panel whose x values are words (interfaces, modes) is a grouped bar
//!   chart; otherwise lines with markers;
//! * the legend sits right of the plot, never over the data, and every
//!   series has its own colour, marker and dash (24 distinct model styles);
//!   reference series (the paper's values, points read off a figure, closed
//!   forms) are dark, dashed and hollow, so they never pass for the model.

use std::fmt::Write as _;

use serde_json::Value;

use crate::experiment::{Axis, ExperimentResult, Series, SeriesKind};

const WIDTH: f64 = 960.0;
const TITLE_H: f64 = 56.0;
/// Plot area of a panel, in panel coordinates.
const PLOT_LEFT: f64 = 70.0;
const PLOT_RIGHT: f64 = 660.0;
const PLOT_TOP: f64 = 30.0;
const PLOT_BOTTOM_MARGIN: f64 = 52.0;
const LEGEND_LEFT: f64 = 680.0;
const LEGEND_ROW: f64 = 17.0;
const MIN_PANEL_H: f64 = 300.0;

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const REFERENCE_PALETTE: [&str; 4] = ["#000000", "#555555", "#7f6000", "#3d3d8f"];
const DASHES: [&str; 3] = ["", "7 4", "2 3"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    Circle,
    Square,
    TriangleUp,
    Diamond,
    TriangleDown,
    Cross,
}

const MARKERS: [Marker; 6] = [
    Marker::Circle,
    Marker::Square,
    Marker::TriangleUp,
    Marker::Diamond,
    Marker::TriangleDown,
    Marker::Cross,
];

/// How one series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Style {
    colour: &'static str,
    dash: &'static str,
    marker: Marker,
    hollow: bool,
}

/// Styles for every series of a result: model series cycle colour (8),
/// marker (6) and dash (3) together, distinct for the first 24; reference
/// series are dark, dashed and hollow.
fn styles(series: &[Series]) -> Vec<Style> {
    let (mut model, mut reference) = (0, 0);
    series
        .iter()
        .map(|s| {
            if s.kind.is_reference() {
                let i = reference;
                reference += 1;
                Style {
                    colour: REFERENCE_PALETTE[i % REFERENCE_PALETTE.len()],
                    dash: if s.kind == SeriesKind::ClosedForm {
                        "2 3"
                    } else {
                        "7 4"
                    },
                    marker: [Marker::Diamond, Marker::Square, Marker::TriangleUp][i % 3],
                    hollow: true,
                }
            } else {
                let i = model;
                model += 1;
                Style {
                    colour: PALETTE[i % PALETTE.len()],
                    dash: DASHES[(i / PALETTE.len()) % DASHES.len()],
                    marker: MARKERS[i % MARKERS.len()],
                    hollow: false,
                }
            }
        })
        .collect()
}

/// The chart of `result`.
pub fn svg(result: &ExperimentResult) -> String {
    let panels = panels(result);
    let styles = styles(&result.series);
    let heights: Vec<f64> = panels
        .iter()
        .map(|p| panel_height(p.series.len()))
        .collect();
    let height = TITLE_H + heights.iter().sum::<f64>().max(60.0);
    let mut out = String::new();
    let title = format!("{} — {}", result.experiment, result.reproduces);
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height:.0}\" width=\"100%\" \
         font-family=\"sans-serif\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>",
        t = esc(&title)
    );
    let _ = writeln!(
        out,
        "<rect width=\"{WIDTH}\" height=\"{height:.0}\" fill=\"white\"/>\
         <text x=\"{:.0}\" y=\"24\" font-size=\"17\" font-weight=\"bold\" text-anchor=\"middle\">{}</text>\
         <text x=\"{:.0}\" y=\"44\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
        WIDTH / 2.0,
        esc(&result.experiment),
        WIDTH / 2.0,
        esc(&shorten(&result.reproduces, 140))
    );
    if panels.is_empty() {
        let _ = writeln!(
            out,
            "<text x=\"{:.0}\" y=\"70\" font-size=\"14\" text-anchor=\"middle\">no plottable series</text>",
            WIDTH / 2.0
        );
    }
    let mut top = TITLE_H;
    for (panel, h) in panels.iter().zip(&heights) {
        let _ = writeln!(out, "<g transform=\"translate(0,{top:.0})\">");
        draw_panel(&mut out, result, panel, &styles, *h);
        out.push_str("</g>\n");
        top += h;
    }
    out.push_str("</svg>\n");
    out
}

fn panel_height(entries: usize) -> f64 {
    (PLOT_TOP + entries as f64 * LEGEND_ROW + 20.0).max(MIN_PANEL_H)
}

/// One panel: a y field over an x field, and the series (by index) that
/// have points for it.
struct Panel {
    x: String,
    y: String,
    series: Vec<usize>,
}

fn panels(result: &ExperimentResult) -> Vec<Panel> {
    let mut out: Vec<Panel> = Vec::new();
    for (i, s) in result.series.iter().enumerate() {
        for y in &s.y {
            if !s
                .points
                .iter()
                .any(|p| p.get(y).is_some_and(Value::is_number))
            {
                continue;
            }
            match out.iter_mut().find(|p| p.x == s.x && p.y == *y) {
                Some(p) => p.series.push(i),
                None => out.push(Panel {
                    x: s.x.clone(),
                    y: y.clone(),
                    series: vec![i],
                }),
            }
        }
    }
    out
}

/// The title and scale of `field`.
fn axis<'a>(result: &'a ExperimentResult, field: &str) -> (String, bool) {
    let found: Option<&'a Axis> = result.axes.iter().find(|a| a.field == field);
    match found {
        Some(a) => (a.title.clone(), a.log),
        None => (field.replace('_', " "), false),
    }
}

fn draw_panel(
    out: &mut String,
    result: &ExperimentResult,
    panel: &Panel,
    styles: &[Style],
    height: f64,
) {
    let (x_title, x_log) = axis(result, &panel.x);
    let (y_title, y_log) = axis(result, &panel.y);
    let bottom = height - PLOT_BOTTOM_MARGIN;
    let _ = writeln!(
        out,
        "<text x=\"{PLOT_LEFT}\" y=\"18\" font-size=\"13\" font-weight=\"bold\">{}</text>\
         <text x=\"{:.0}\" y=\"{:.0}\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
        esc(&y_title),
        (PLOT_LEFT + PLOT_RIGHT) / 2.0,
        height - 12.0,
        esc(&x_title)
    );
    let categorical = panel.series.iter().any(|&i| {
        result.series[i]
            .points
            .iter()
            .any(|p| p.get(&panel.x).is_some_and(Value::is_string))
    });
    if categorical {
        draw_bars(out, result, panel, styles, bottom, y_log);
    } else {
        draw_lines(out, result, panel, styles, bottom, x_log, y_log);
    }
    draw_legend(out, result, panel, styles);
}

/// A scale from data to pixels.
#[derive(Clone, Copy, Debug)]
struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
    from: f64,
    to: f64,
}

impl Scale {
    /// A scale over `values`; a log scale leaves out values that are not
    /// positive (a zero load, an idle point), and is linear if none is.
    fn new(values: &[f64], log: bool, from: f64, to: f64, zero: bool) -> Scale {
        let log = log && values.iter().any(|v| *v > 0.0);
        let (mut lo, mut hi) = values
            .iter()
            .filter(|v| v.is_finite() && (!log || **v > 0.0))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(*v), hi.max(*v))
            });
        if !lo.is_finite() || !hi.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if log {
            let (l, h) = (lo.log10(), hi.log10());
            let pad = ((h - l) * 0.05).max(0.05);
            (lo, hi) = (10f64.powf(l - pad), 10f64.powf(h + pad));
        } else {
            if zero {
                lo = lo.min(0.0);
                hi = hi.max(0.0);
            }
            if lo == hi {
                (lo, hi) = (lo - 1.0, hi + 1.0);
            }
            let step = nice_step((hi - lo) / 6.0);
            lo = (lo / step).floor() * step;
            hi = (hi / step).ceil() * step;
        }
        Scale {
            lo,
            hi,
            log,
            from,
            to,
        }
    }
    fn px(&self, v: f64) -> f64 {
        let t = if self.log {
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        self.from + t * (self.to - self.from)
    }
    fn contains(&self, v: f64) -> bool {
        v.is_finite() && (!self.log || v > 0.0)
    }
    /// Tick values: 1-2-5 steps on a linear scale; decades on a log scale
    /// that spans three or more, else 1-2-5 within each decade.
    fn ticks(&self) -> Vec<f64> {
        if !self.log {
            let step = nice_step((self.hi - self.lo) / 6.0);
            let n = ((self.hi - self.lo) / step).round() as i64;
            return (0..=n).map(|k| self.lo + k as f64 * step).collect();
        }
        let decades = (self.hi / self.lo).log10();
        let (l, h) = (
            self.lo.log10().floor() as i32,
            self.hi.log10().ceil() as i32,
        );
        let mantissas: &[f64] = if decades >= 3.0 {
            &[1.0]
        } else {
            &[1.0, 2.0, 5.0]
        };
        (l..=h)
            .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| *v >= self.lo * 0.999 && *v <= self.hi * 1.001)
            .collect()
    }
}

/// The 1-2-5 step nearest above `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw > 0.0 && raw.is_finite()) {
        return 1.0;
    }
    let e = 10f64.powf(raw.log10().floor());
    let m = raw / e;
    let nice = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * e
}

/// A tick label: short, without trailing zeros.
fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || a < 1e-12 {
        return "0".into();
    }
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.0e}");
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn draw_lines(
    out: &mut String,
    result: &ExperimentResult,
    panel: &Panel,
    styles: &[Style],
    bottom: f64,
    x_log: bool,
    y_log: bool,
) {
    let curves: Vec<(usize, Vec<(f64, f64)>)> = panel
        .series
        .iter()
        .map(|&i| (i, result.series[i].xy(&panel.y)))
        .collect();
    let xs: Vec<f64> = curves
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = curves
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .collect();
    let sx = Scale::new(&xs, x_log, PLOT_LEFT, PLOT_RIGHT, false);
    let sy = Scale::new(&ys, y_log, bottom, PLOT_TOP, true);
    draw_axes(out, &sx, &sy, bottom);
    // References first, larger and hollow, so a model point that matches
    // shows as a dot inside the paper's ring.
    let order = curves
        .iter()
        .filter(|(i, _)| styles[*i].hollow)
        .chain(curves.iter().filter(|(i, _)| !styles[*i].hollow));
    for (i, pts) in order {
        let style = styles[*i];
        let pts: Vec<(f64, f64)> = pts
            .iter()
            .filter(|(x, y)| sx.contains(*x) && sy.contains(*y))
            .map(|(x, y)| (sx.px(*x), sy.px(*y)))
            .collect();
        if pts.len() > 1 {
            let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"{}\"{} points=\"{}\"/>",
                style.colour,
                if style.hollow { 1.5 } else { 2.0 },
                dash_attr(style.dash),
                path.join(" ")
            );
        }
        let r = if style.hollow { 6.0 } else { 3.5 };
        for (x, y) in pts {
            marker(out, style, x, y, r);
        }
        // 95 % intervals over seeds, as whiskers.
        for (x, y, ci) in result.series[*i].xy_ci95(&panel.y) {
            let (lo, hi) = (y - ci, y + ci);
            if ci <= 0.0 || !sx.contains(x) || !sy.contains(lo) || !sy.contains(hi) {
                continue;
            }
            let (px, top, bot) = (sx.px(x), sy.px(hi), sy.px(lo));
            let _ = writeln!(
                out,
                "<path stroke=\"{}\" stroke-width=\"1.2\" d=\"M{px:.1},{top:.1}V{bot:.1}M{:.1},{top:.1}h6M{:.1},{bot:.1}h6\"/>",
                style.colour,
                px - 3.0,
                px - 3.0
            );
        }
    }
}

fn draw_bars(
    out: &mut String,
    result: &ExperimentResult,
    panel: &Panel,
    styles: &[Style],
    bottom: f64,
    y_log: bool,
) {
    let mut categories: Vec<String> = Vec::new();
    let mut values: Vec<(usize, String, f64)> = Vec::new();
    for &i in &panel.series {
        for p in &result.series[i].points {
            let (Some(c), Some(v)) = (
                p.get(&panel.x).and_then(Value::as_str),
                p.get(&panel.y).and_then(Value::as_f64),
            ) else {
                continue;
            };
            if !categories.iter().any(|k| k == c) {
                categories.push(c.to_string());
            }
            values.push((i, c.to_string(), v));
        }
    }
    let ys: Vec<f64> = values.iter().map(|v| v.2).collect();
    let sy = Scale::new(&ys, y_log, bottom, PLOT_TOP, true);
    draw_y_axis(out, &sy, bottom);
    let group = (PLOT_RIGHT - PLOT_LEFT) / categories.len().max(1) as f64;
    let bar = group * 0.8 / panel.series.len().max(1) as f64;
    let base = if sy.log { sy.lo } else { 0.0f64.max(sy.lo) };
    for (k, c) in categories.iter().enumerate() {
        let left = PLOT_LEFT + k as f64 * group + group * 0.1;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
            PLOT_LEFT + (k as f64 + 0.5) * group,
            bottom + 16.0,
            esc(c)
        );
        for (j, &i) in panel.series.iter().enumerate() {
            let Some((_, _, v)) = values.iter().find(|(s, cat, _)| *s == i && cat == c) else {
                continue;
            };
            if !sy.contains(*v) {
                continue;
            }
            let style = styles[i];
            let (y0, y1) = (sy.px(base), sy.px(*v));
            let (fill, stroke) = if style.hollow {
                ("white", style.colour)
            } else {
                (style.colour, style.colour)
            };
            let _ = writeln!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"{}/>",
                left + j as f64 * bar,
                y0.min(y1),
                bar * 0.9,
                (y0 - y1).abs(),
                dash_attr(style.dash)
            );
        }
    }
    let _ = writeln!(
        out,
        "<line x1=\"{PLOT_LEFT}\" y1=\"{bottom:.1}\" x2=\"{PLOT_RIGHT}\" y2=\"{bottom:.1}\" stroke=\"#333\"/>"
    );
}

fn draw_axes(out: &mut String, sx: &Scale, sy: &Scale, bottom: f64) {
    draw_y_axis(out, sy, bottom);
    for t in sx.ticks() {
        let x = sx.px(t);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{PLOT_TOP}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#e6e6e6\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            bottom + 15.0,
            tick_label(t)
        );
    }
    let _ = writeln!(
        out,
        "<line x1=\"{PLOT_LEFT}\" y1=\"{bottom:.1}\" x2=\"{PLOT_RIGHT}\" y2=\"{bottom:.1}\" stroke=\"#333\"/>"
    );
}

fn draw_y_axis(out: &mut String, sy: &Scale, bottom: f64) {
    for t in sy.ticks() {
        let y = sy.px(t);
        let _ = writeln!(
            out,
            "<line x1=\"{PLOT_LEFT}\" y1=\"{y:.1}\" x2=\"{PLOT_RIGHT}\" y2=\"{y:.1}\" stroke=\"#e6e6e6\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            PLOT_LEFT - 6.0,
            y + 4.0,
            tick_label(t)
        );
    }
    let _ = writeln!(
        out,
        "<line x1=\"{PLOT_LEFT}\" y1=\"{PLOT_TOP}\" x2=\"{PLOT_LEFT}\" y2=\"{bottom:.1}\" stroke=\"#333\"/>"
    );
}

fn draw_legend(out: &mut String, result: &ExperimentResult, panel: &Panel, styles: &[Style]) {
    for (row, &i) in panel.series.iter().enumerate() {
        let style = styles[i];
        let y = PLOT_TOP + 8.0 + row as f64 * LEGEND_ROW;
        let _ = writeln!(
            out,
            "<line x1=\"{LEGEND_LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{}\" stroke-width=\"2\"{}/>",
            LEGEND_LEFT + 24.0,
            style.colour,
            dash_attr(style.dash)
        );
        marker(out, style, LEGEND_LEFT + 12.0, y, 4.0);
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
            LEGEND_LEFT + 30.0,
            y + 4.0,
            esc(&shorten(&result.series[i].name, 40))
        );
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

fn dash_attr(dash: &str) -> String {
    if dash.is_empty() {
        String::new()
    } else {
        format!(" stroke-dasharray=\"{dash}\"")
    }
}

fn marker(out: &mut String, style: Style, x: f64, y: f64, r: f64) {
    let (fill, stroke) = if style.hollow {
        ("white", style.colour)
    } else {
        (style.colour, style.colour)
    };
    let paint = format!("fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"");
    let poly = |pts: &[(f64, f64)]| {
        let p: Vec<String> = pts
            .iter()
            .map(|(dx, dy)| format!("{:.1},{:.1}", x + dx, y + dy))
            .collect();
        format!("<polygon points=\"{}\" {paint}/>", p.join(" "))
    };
    let shape = match style.marker {
        Marker::Circle => format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r}\" {paint}/>"),
        Marker::Square => format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" {paint}/>",
            x - r,
            y - r,
            2.0 * r,
            2.0 * r
        ),
        Marker::TriangleUp => poly(&[(0.0, -r * 1.2), (r * 1.1, r * 0.8), (-r * 1.1, r * 0.8)]),
        Marker::TriangleDown => poly(&[(0.0, r * 1.2), (r * 1.1, -r * 0.8), (-r * 1.1, -r * 0.8)]),
        Marker::Diamond => poly(&[
            (0.0, -r * 1.3),
            (r * 1.1, 0.0),
            (0.0, r * 1.3),
            (-r * 1.1, 0.0),
        ]),
        Marker::Cross => format!(
            "<path d=\"M{:.1},{:.1}L{:.1},{:.1}M{:.1},{:.1}L{:.1},{:.1}\" stroke=\"{}\" stroke-width=\"2\"/>",
            x - r,
            y - r,
            x + r,
            y + r,
            x - r,
            y + r,
            x + r,
            y - r,
            style.colour
        ),
    };
    out.push_str(&shape);
    out.push('\n');
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{RunInfo, SimStats};
    use serde_json::json;

    fn result(series: Vec<Series>, axes: Vec<Axis>) -> ExperimentResult {
        ExperimentResult {
            experiment: "demo".into(),
            reproduces: "a figure".into(),
            paper: "a paper".into(),
            run: RunInfo::default(),
            seed: 1,
            quick: true,
            params: json!({}),
            series,
            axes,
            checks: vec![],
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

    fn line(name: &str, kind: SeriesKind, pts: &[(f64, f64)]) -> Series {
        let mut s = Series::new(name, "size", &["rate"]).kind(kind);
        for (x, y) in pts {
            s.push(json!({"size": x, "rate": y}));
        }
        s
    }

    #[test]
    fn scales_with_the_page_and_titles_axes() {
        let r = result(
            vec![line(
                "model",
                SeriesKind::Model,
                &[(64.0, 1.0), (4096.0, 2.0)],
            )],
            vec![
                Axis::new("size", "transfer size (bytes)").log(),
                Axis::new("rate", "throughput (Gb/s)"),
            ],
        );
        let svg = svg(&r);
        assert!(svg.contains("viewBox=\"0 0 960 ") && svg.contains("width=\"100%\""));
        assert!(svg.contains("transfer size (bytes)") && svg.contains("throughput (Gb/s)"));
        // A log axis over 64–4096 has 1-2-5 ticks.
        for t in [">100<", ">200<", ">500<", ">1000<", ">2000<"] {
            assert!(svg.contains(t), "{t} missing: {svg}");
        }
    }

    #[test]
    fn more_than_eight_series_are_all_distinct() {
        let series: Vec<Series> = (0..20)
            .map(|i| line(&format!("s{i}"), SeriesKind::Model, &[(1.0, i as f64)]))
            .collect();
        let st = styles(&series);
        for i in 0..st.len() {
            for j in 0..i {
                assert_ne!(st[i], st[j], "series {i} and {j} look alike");
            }
        }
    }

    #[test]
    fn reference_series_never_look_like_the_model() {
        let series = vec![
            line("model", SeriesKind::Model, &[(1.0, 1.0)]),
            line("paper", SeriesKind::Paper, &[(1.0, 1.0)]),
            line("closed form", SeriesKind::ClosedForm, &[(1.0, 1.0)]),
        ];
        let st = styles(&series);
        assert!(!st[0].hollow && st[1].hollow && st[2].hollow);
        assert!(!st[1].dash.is_empty() && !st[2].dash.is_empty());
        assert!(!PALETTE.contains(&st[1].colour));
    }

    #[test]
    fn word_valued_x_draws_bars() {
        let mut s = Series::new("model", "interface", &["miss"]);
        s.push(json!({"interface": "packetized", "miss": 0.2}));
        s.push(json!({"interface": "enso", "miss": 0.01}));
        let svg = svg(&result(vec![s], vec![]));
        assert!(svg.contains(">packetized<") && svg.contains(">enso<"));
        assert_eq!(svg.matches("<rect x=").count(), 2, "{svg}");
    }

    #[test]
    fn legend_is_right_of_the_plot() {
        let r = result(
            vec![line(
                "a-long-series-name",
                SeriesKind::Model,
                &[(1.0, 1.0), (2.0, 3.0)],
            )],
            vec![],
        );
        let svg = svg(&r);
        let at = svg.find(">a-long-series-name<").expect("legend entry");
        let x: f64 = svg[..at]
            .rsplit("<text x=\"")
            .next()
            .and_then(|s| s.split('"').next())
            .and_then(|s| s.parse().ok())
            .expect("legend x");
        assert!(x > PLOT_RIGHT, "legend at x = {x}");
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(nice_step(0.13), 0.2);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(tick_label(0.5), "0.5");
        assert_eq!(tick_label(1500.0), "1500");
        let s = Scale::new(&[1.0, 100_000.0], true, 0.0, 1.0, false);
        assert_eq!(
            s.ticks(),
            vec![1.0, 10.0, 100.0, 1000.0, 10_000.0, 100_000.0]
        );
    }
}
