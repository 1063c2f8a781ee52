//! Writing a run to disk: `DIR/NAME/result.json`, one CSV per series and an
//! SVG chart with one panel per plotted quantity.
//!
//! Output is a pure function of the [`ExperimentResult`]: two runs with the
//! same seed write byte-identical files except for the wall-clock fields
//! and the run information (date, command line).
//!
//! A rerun into the same folder removes the files the previous run wrote
//! there (as listed in its [`MANIFEST`]) and this one did not, so no stale
//! CSV of a series that no longer exists survives; files nextio did not
//! write are left alone. Every file is written beside its final name and renamed into
//! place, and `result.json` last: a failed write (a full disk) names the
//! file, leaves no partial file behind, and a `result.json` on disk always
//! belongs to a complete set.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::experiment::{Axis, Check, ExperimentResult, Origin, Series, Verdict};

/// The list of files nextio wrote into an experiment's folder, so a rerun
/// removes exactly those (and nothing a user put there).
pub const MANIFEST: &str = ".nextio-files";

/// Write every artefact of `result` under `out/NAME/`, then remove what
/// the previous run wrote there and this one did not; returns that folder.
/// An error's message names the file that could not be written, and a
/// failed write leaves the previous run's files as they were.
pub fn write_result(out: &Path, result: &ExperimentResult) -> std::io::Result<PathBuf> {
    let dir = out.join(&result.experiment);
    fs::create_dir_all(&dir).map_err(|e| path_error(&dir, e))?;
    let previous = previous_files(&dir).map_err(|e| path_error(&dir, e))?;
    let json = serde_json::to_string_pretty(result).map_err(std::io::Error::other)?;
    let mut written = Vec::new();
    let mut stems: Vec<String> = Vec::new();
    for series in &result.series {
        // Names that differ only in characters a file name cannot keep
        // must not overwrite each other.
        let base = file_stem(&series.name);
        let mut stem = base.clone();
        let mut n = 2;
        while stems.contains(&stem) {
            stem = format!("{base}-{n}");
            n += 1;
        }
        let name = format!("{stem}.csv");
        write_atomically(
            &dir.join(&name),
            series_csv(series, &result.axes).as_bytes(),
        )?;
        written.push(name);
        stems.push(stem);
    }
    write_atomically(&dir.join("chart.svg"), chart_svg(result).as_bytes())?;
    written.push("chart.svg".into());
    write_atomically(&dir.join("result.json"), (json + "\n").as_bytes())?;
    written.push("result.json".into());
    written.sort();
    for stale in previous.iter().filter(|name| !written.contains(name)) {
        match fs::remove_file(dir.join(stale)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(path_error(&dir.join(stale), e)),
        }
    }
    write_atomically(&dir.join(MANIFEST), (written.join("\n") + "\n").as_bytes())?;
    Ok(dir)
}

/// The files the manifest in `dir` lists. Only plain names in `dir`
/// itself are honoured, so a damaged manifest cannot reach outside.
fn previous_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let listed = match fs::read_to_string(dir.join(MANIFEST)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(listed
        .lines()
        .map(str::trim)
        .filter(|name| {
            !name.is_empty()
                && *name != MANIFEST
                && !name.starts_with('.')
                && !name.contains(['/', '\\'])
        })
        .map(str::to_string)
        .collect())
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

/// The series as CSV: the x field, the plotted fields in declared order,
/// then every other field seen (alphabetically); a header names each
/// field with its unit where its axis title gives one (`added_ns (ns)`),
/// and numbers carry six significant digits (`result.json` keeps them
/// whole).
pub fn series_csv(series: &Series, axes: &[Axis]) -> String {
    let mut columns: Vec<&str> = std::iter::once(series.x.as_str())
        .chain(series.y.iter().map(String::as_str))
        .collect();
    for p in &series.points {
        for k in p.keys() {
            if !columns.contains(&k.as_str()) {
                columns.push(k);
            }
        }
    }
    let header: Vec<String> = columns
        .iter()
        .map(|c| match axis_unit(axes, c) {
            Some(unit) => csv_text(&format!("{c} ({unit})")),
            None => csv_text(c),
        })
        .collect();
    let mut out = header.join(",");
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

/// The unit an axis title ends with, in parentheses: `latency (µs)` → `µs`.
fn axis_unit<'a>(axes: &'a [Axis], field: &str) -> Option<&'a str> {
    let title = axes.iter().find(|a| a.field == field)?.title.trim_end();
    let inner = title.strip_suffix(')')?;
    let open = inner.rfind('(')?;
    let unit = inner[open + 1..].trim();
    (!unit.is_empty() && unit.len() <= 24).then_some(unit)
}

/// `v` to six significant digits, without trailing zeros; integers whole.
pub fn significant(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let digits = 6 - 1 - v.abs().log10().floor() as i32;
    if (0..=17).contains(&digits) {
        let s = format!("{v:.*}", digits as usize);
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.5e}")
    }
}

fn csv_text(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_cell(v: &Value) -> String {
    match v {
        Value::String(s) => csv_text(s),
        Value::Number(n) if n.is_f64() => n.as_f64().map(significant).unwrap_or_default(),
        other => csv_text(&other.to_string()),
    }
}

/// The chart: one panel per plotted quantity, the paper's values beside
/// the model's (see [`crate::chart`]).
pub fn chart_svg(result: &ExperimentResult) -> String {
    crate::chart::svg(result)
}

/// The reference of a check in a few words: its value and what it is.
pub fn reference_text(c: &Check) -> String {
    match c.paper {
        None => "—".into(),
        Some(p) => format!("{} ({})", number(p), c.reference.name()),
    }
}

/// The tolerance of a check in a few words, or `—`.
pub fn tolerance_text(c: &Check) -> String {
    c.tolerance
        .map(|t| t.describe(&c.unit))
        .unwrap_or_else(|| "—".into())
}

/// A value in at most about eight characters.
pub fn number(v: f64) -> String {
    if v == 0.0 || (v.abs() >= 0.01 && v.abs() < 1e6) {
        let s = format!("{v:.4}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        format!("{v:.3e}")
    }
}

/// Counts of verdicts and origins over `checks`, as one line.
pub fn tally_line<'a>(checks: impl IntoIterator<Item = &'a Check>) -> String {
    let (mut within, mut miss, mut model_only) = (0, 0, 0);
    let mut origins = [0usize; 4];
    for c in checks {
        match c.verdict {
            Verdict::Within => within += 1,
            Verdict::Miss => miss += 1,
            Verdict::ModelOnly => model_only += 1,
        }
        if let Some(k) = Origin::ALL.iter().position(|o| *o == c.origin) {
            origins[k] += 1;
        }
    }
    let origins: Vec<String> = Origin::ALL
        .iter()
        .zip(origins)
        .filter(|(_, n)| *n > 0)
        .map(|(o, n)| format!("{n} {}", o.name()))
        .collect();
    format!(
        "{within} within, {miss} miss, {model_only} model only · origins: {}",
        if origins.is_empty() {
            "none".to_string()
        } else {
            origins.join(", ")
        }
    )
}

/// A check's model value, with its 95 % interval when several seeds made it.
pub fn model_text(c: &Check) -> String {
    match c.model_ci95 {
        Some(ci) => format!("{} ± {}", number(c.model), number(ci)),
        None => number(c.model),
    }
}

/// Human-readable summary of a result for the terminal: every check with
/// its verdict, origin, model value and reference.
pub fn summary_text(result: &ExperimentResult) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} ({})", result.experiment, result.reproduces);
    for c in &result.checks {
        let _ = writeln!(
            s,
            "  {:<40} {:<10} {:<10} model {:>10} {:<8} paper {} {}",
            c.id,
            c.verdict.name(),
            c.origin.name(),
            model_text(c),
            c.unit,
            reference_text(c),
            if c.tolerance.is_some() {
                format!("[{}]", tolerance_text(c))
            } else {
                String::new()
            }
        );
    }
    for id in &result.not_evaluated {
        let _ = writeln!(s, "  {id:<40} not evaluated with these parameters");
    }
    let _ = writeln!(s, "  checks: {}", tally_line(&result.checks));
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn significant_keeps_six_digits_and_integers_whole() {
        assert_eq!(significant(148.80952380952382), "148.81");
        assert_eq!(significant(0.0019531249), "0.00195312");
        assert_eq!(significant(12345678.0), "12345678");
        assert_eq!(significant(2.5), "2.5");
        assert_eq!(significant(-0.125), "-0.125");
        assert_eq!(significant(1.0e-21), "1.00000e-21");
        assert_eq!(significant(f64::NAN), "NaN");
    }

    #[test]
    fn csv_columns_follow_the_declaration_with_units() {
        let s = Series::new("s", "size", &["lat_us", "gbps"])
            .with(json!({"gbps": 1.23456789, "mode": "a,b", "lat_us": 2, "size": 64}));
        let axes = [
            Axis::new("size", "transfer (bytes)"),
            Axis::new("lat_us", "latency (µs)"),
        ];
        let csv = series_csv(&s, &axes);
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("size (bytes),lat_us (µs),gbps,mode"));
        assert_eq!(lines.next(), Some("64,2,1.23457,\"a,b\""));
    }
}
