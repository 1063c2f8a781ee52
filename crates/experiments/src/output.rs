//! Writing a run to disk: `DIR/NAME/result.json`, one CSV per series and an
//! SVG chart with one panel per plotted quantity.
//!
//! Output is a pure function of the [`ExperimentResult`]: two runs with the
//! same seed write byte-identical files except for the wall-clock fields.
//! Every file is written beside its final name and renamed into place, and
//! `result.json` last: a failed write (a full disk) names the file, leaves
//! no partial file behind, and a `result.json` on disk always belongs to a
//! complete set.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::Value;

use crate::experiment::{ExperimentResult, Series};

/// Write every artefact of `result` under `out/NAME/`; returns that folder.
/// An error's message names the file that could not be written.
pub fn write_result(out: &Path, result: &ExperimentResult) -> std::io::Result<PathBuf> {
    let dir = out.join(&result.experiment);
    fs::create_dir_all(&dir).map_err(|e| path_error(&dir, e))?;
    let json = serde_json::to_string_pretty(result).map_err(std::io::Error::other)?;
    for series in &result.series {
        write_atomically(
            &dir.join(format!("{}.csv", file_stem(&series.name))),
            series_csv(series).as_bytes(),
        )?;
    }
    write_atomically(&dir.join("chart.svg"), chart_svg(result).as_bytes())?;
    write_atomically(&dir.join("result.json"), (json + "\n").as_bytes())?;
    Ok(dir)
}

/// `e` with `path` in its message (its kind kept).
pub fn path_error(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Write `bytes` to `path` through a temporary file in the same folder,
/// synced and then renamed into place: `path` is either left as it was or
/// holds all of `bytes`. An error names `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = nextio_hw::pcap::temporary_path(path);
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(|e| path_error(path, e))
}

/// A name safe to use as a file name.
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The series as CSV; columns are every field seen, in first-seen order.
pub fn series_csv(series: &Series) -> String {
    let mut columns: Vec<&str> = Vec::new();
    for p in &series.points {
        for k in p.keys() {
            if !columns.contains(&k.as_str()) {
                columns.push(k);
            }
        }
    }
    let mut out = columns.join(",");
    out.push('\n');
    for p in &series.points {
        let row: Vec<String> = columns
            .iter()
            .map(|c| p.get(*c).map(csv_cell).unwrap_or_default())
            .collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

fn csv_cell(v: &Value) -> String {
    match v {
        Value::String(s) if s.contains([',', '"', '\n']) => {
            format!("\"{}\"", s.replace('"', "\"\""))
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// The chart: one panel per `y` field, one line per series.
pub fn chart_svg(result: &ExperimentResult) -> String {
    let mut panels: Vec<(String, String)> = Vec::new(); // (x, y)
    for s in &result.series {
        for y in &s.y {
            if !panels.iter().any(|(px, py)| px == &s.x && py == y) {
                panels.push((s.x.clone(), y.clone()));
            }
        }
    }
    let panel_h = 300u32;
    let height = panel_h * panels.len().max(1) as u32 + 40;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, height)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let (title_area, body) = root.split_vertically(40);
        let _ = title_area.titled(
            &format!("{} — {}", result.experiment, result.reproduces),
            ("sans-serif", 16),
        );
        if panels.is_empty() {
            let _ = body.titled("no plottable series", ("sans-serif", 14));
        }
        let areas = body.split_evenly((panels.len().max(1), 1));
        for ((x, y), area) in panels.iter().zip(areas.iter()) {
            draw_panel(area, result, x, y);
        }
        let _ = root.present();
    }
    svg
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    result: &ExperimentResult,
    x: &str,
    y: &str,
) {
    let lines: Vec<(&Series, Vec<(f64, f64)>)> = result
        .series
        .iter()
        .filter(|s| s.x == x && s.y.iter().any(|v| v == y))
        .map(|s| (s, s.xy(y)))
        .collect();
    let all: Vec<(f64, f64)> = lines.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    if all.is_empty() {
        return;
    }
    let (mut x0, mut x1) = bounds(all.iter().map(|p| p.0));
    let (_, mut y1) = bounds(all.iter().map(|p| p.1));
    let mut y0 = all
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .min(0.0);
    if x0 == x1 {
        x0 -= 1.0;
        x1 += 1.0;
    }
    if y0 == y1 {
        y0 -= 1.0;
        y1 += 1.0;
    }
    let Ok(mut chart) = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1 * 1.05)
    else {
        return;
    };
    let _ = chart.configure_mesh().x_desc(x).y_desc(y).draw();
    for (i, (series, pts)) in lines.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let label = series.name.clone();
        if let Ok(ann) =
            chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
        {
            ann.label(label).legend(move |(lx, ly)| {
                PathElement::new(vec![(lx, ly), (lx + 15, ly)], color.stroke_width(2))
            });
        }
        let _ = chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())));
    }
    let _ = chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw();
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// Human-readable summary of a result for the terminal.
pub fn summary_text(result: &ExperimentResult) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} ({})", result.experiment, result.reproduces);
    for c in &result.checks {
        let paper = c
            .paper
            .map(|p| format!("{p:.4}"))
            .unwrap_or_else(|| "—".into());
        let verdict = c.verdict();
        let _ = writeln!(
            s,
            "  {:<40} paper {:>12} model {:>12.4} {:<8} {}",
            c.id, paper, c.model, c.unit, verdict
        );
    }
    let _ = writeln!(
        s,
        "  sim: {} events, {:.3} ms simulated, {:.2} s wall, {:.2} M events/s, {:.2} M packets/s",
        result.sim.events,
        result.sim.simulated_ps as f64 / 1e9,
        result.sim.wall_s,
        result.sim.events_per_wall_s / 1e6,
        result.sim.packets_per_wall_s / 1e6
    );
    s
}
