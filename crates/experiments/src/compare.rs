//! Two runs side by side: `nextio compare A B`.
//!
//! A and B are result folders (what `run` or `reproduce` wrote: one
//! `NAME/result.json` per experiment) or single `result.json` files. Every
//! check is matched by experiment and id, every series point by
//! experiment, series, x value and the point's text fields (mode,
//! interface, …); numbers are compared exactly, so a rerun of the same
//! configuration and seed shows no difference at all. A verdict that
//! changed, or a check present on one side only, is a *verdict change*:
//! the command exits non-zero on any, which makes it usable in CI as a
//! regression test of the model itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::experiment::{Check, ExperimentResult, Verdict};

/// Why a side could not be read.
#[derive(Debug)]
pub enum CompareError {
    /// Not a file or folder, or unreadable.
    Unreadable(PathBuf, String),
    /// A `result.json` that does not parse as one.
    NotAResult(PathBuf, String),
    /// A folder holding no result at all.
    Empty(PathBuf),
    /// One experiment twice on one side.
    Duplicate(PathBuf, String),
}

impl std::fmt::Display for CompareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompareError::Unreadable(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            CompareError::NotAResult(p, e) => {
                write!(f, "{} is not a nextio result: {e}", p.display())
            }
            CompareError::Empty(p) => write!(f, "{} holds no result.json", p.display()),
            CompareError::Duplicate(p, n) => {
                write!(f, "{} holds experiment {n} twice", p.display())
            }
        }
    }
}

impl std::error::Error for CompareError {}

/// Every result under `path`, by experiment name.
pub fn load(path: &Path) -> Result<BTreeMap<String, ExperimentResult>, CompareError> {
    let unreadable =
        |e: std::io::Error| CompareError::Unreadable(path.to_path_buf(), e.to_string());
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    let files = if meta.is_file() {
        vec![path.to_path_buf()]
    } else {
        let direct = path.join("result.json");
        if direct.is_file() {
            vec![direct]
        } else {
            let mut v: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(unreadable)?
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("result.json"))
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            v
        }
    };
    let mut out = BTreeMap::new();
    for f in &files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| CompareError::Unreadable(f.clone(), e.to_string()))?;
        let r: ExperimentResult = serde_json::from_str(&text)
            .map_err(|e| CompareError::NotAResult(f.clone(), e.to_string()))?;
        let name = r.experiment.clone();
        if out.insert(name.clone(), r).is_some() {
            return Err(CompareError::Duplicate(path.to_path_buf(), name));
        }
    }
    if out.is_empty() {
        return Err(CompareError::Empty(path.to_path_buf()));
    }
    Ok(out)
}

/// One check on both sides (`None` where a side lacks it).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckDiff {
    pub experiment: String,
    pub id: String,
    pub unit: String,
    pub paper: Option<f64>,
    pub a: Option<(f64, Verdict)>,
    pub b: Option<(f64, Verdict)>,
}

impl CheckDiff {
    /// The verdict differs, or the check exists on one side only.
    pub fn verdict_changed(&self) -> bool {
        match (self.a, self.b) {
            (Some((_, va)), Some((_, vb))) => va != vb,
            _ => true,
        }
    }
    /// The model value differs (bit for bit).
    pub fn value_changed(&self) -> bool {
        match (self.a, self.b) {
            (Some((a, _)), Some((b, _))) => a.to_bits() != b.to_bits(),
            _ => true,
        }
    }
}

/// One plotted number that differs between the sides.
#[derive(Clone, Debug, PartialEq)]
pub struct PointDiff {
    pub experiment: String,
    pub series: String,
    /// The point's identity: x value and its text fields.
    pub at: String,
    pub field: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
}

impl PointDiff {
    /// |b − a| / |a| (∞ when a side lacks the point, or a is 0 and b is not).
    pub fn relative(&self) -> f64 {
        match (self.a, self.b) {
            (Some(a), Some(b)) if a == b => 0.0,
            (Some(a), Some(b)) if a != 0.0 => ((b - a) / a).abs(),
            _ => f64::INFINITY,
        }
    }
}

/// The whole comparison.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// Experiments on one side only: (name, in A).
    pub lone: Vec<(String, bool)>,
    /// How the two runs of one experiment were configured differently
    /// (seed, seeds, quick, a parameter): (experiment, what, A, B).
    pub config: Vec<(String, String, String, String)>,
    pub checks: Vec<CheckDiff>,
    /// Series points compared (present on either side).
    pub points_compared: usize,
    pub points: Vec<PointDiff>,
}

impl Comparison {
    /// Checks whose verdict changed (or that appeared or vanished), and
    /// experiments present on one side only.
    pub fn verdict_changes(&self) -> usize {
        self.checks.iter().filter(|c| c.verdict_changed()).count() + self.lone.len()
    }
    /// Whether the two sides agree on every number.
    pub fn identical(&self) -> bool {
        self.lone.is_empty()
            && self.points.is_empty()
            && self.checks.iter().all(|c| !c.value_changed())
    }
}

/// Compare two sets of results.
pub fn compare(
    a: &BTreeMap<String, ExperimentResult>,
    b: &BTreeMap<String, ExperimentResult>,
) -> Comparison {
    let mut out = Comparison::default();
    for name in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        let (ra, rb) = match (a.get(name), b.get(name)) {
            (Some(x), Some(y)) => (x, y),
            (x, _) => {
                out.lone.push((name.clone(), x.is_some()));
                continue;
            }
        };
        compare_config(name, ra, rb, &mut out.config);
        compare_checks(name, &ra.checks, &rb.checks, &mut out.checks);
        compare_series(name, ra, rb, &mut out);
    }
    out
}

fn compare_config(
    name: &str,
    a: &ExperimentResult,
    b: &ExperimentResult,
    out: &mut Vec<(String, String, String, String)>,
) {
    let mut differ = |what: &str, x: String, y: String| {
        if x != y {
            out.push((name.to_string(), what.to_string(), x, y));
        }
    };
    differ("seed", a.seed.to_string(), b.seed.to_string());
    differ("seeds", format!("{:?}", a.seeds), format!("{:?}", b.seeds));
    differ("quick", a.quick.to_string(), b.quick.to_string());
    let (pa, pb) = (a.params.as_object(), b.params.as_object());
    let empty = Map::new();
    let (pa, pb) = (pa.unwrap_or(&empty), pb.unwrap_or(&empty));
    let keys: std::collections::BTreeSet<&String> = pa.keys().chain(pb.keys()).collect();
    for k in keys {
        let show = |v: Option<&Value>| v.map_or("—".to_string(), |v| v.to_string());
        differ(k, show(pa.get(k)), show(pb.get(k)));
    }
}

fn compare_checks(name: &str, a: &[Check], b: &[Check], out: &mut Vec<CheckDiff>) {
    let side = |cs: &[Check]| -> BTreeMap<String, Check> {
        cs.iter().map(|c| (c.id.clone(), c.clone())).collect()
    };
    let (ma, mb) = (side(a), side(b));
    // Declared order of side A, then B's extras.
    let ids = a
        .iter()
        .map(|c| &c.id)
        .chain(b.iter().map(|c| &c.id).filter(|id| !ma.contains_key(*id)));
    for id in ids {
        let (ca, cb) = (ma.get(id), mb.get(id));
        let any = ca.or(cb).expect("the id came from a side");
        out.push(CheckDiff {
            experiment: name.to_string(),
            id: id.clone(),
            unit: any.unit.clone(),
            paper: any.paper,
            a: ca.map(|c| (c.model, c.verdict)),
            b: cb.map(|c| (c.model, c.verdict)),
        });
    }
}

/// A point's identity within its series: x and every text field.
fn point_key(x: &str, p: &Map<String, Value>) -> String {
    let mut parts = vec![format!("{x}={}", p.get(x).map(short).unwrap_or_default())];
    for (k, v) in p {
        if let Value::String(s) = v {
            parts.push(format!("{k}={s}"));
        }
    }
    parts.join(" ")
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

type Points<'r> = BTreeMap<(String, String), (&'r Vec<String>, &'r Map<String, Value>)>;

/// Every point of `r`'s series by (series, point key).
fn index_points(r: &ExperimentResult) -> Points<'_> {
    let mut m = BTreeMap::new();
    for s in &r.series {
        for p in &s.points {
            m.insert((s.name.clone(), point_key(&s.x, p)), (&s.y, p));
        }
    }
    m
}

fn compare_series(name: &str, a: &ExperimentResult, b: &ExperimentResult, out: &mut Comparison) {
    let (ia, ib) = (index_points(a), index_points(b));
    let keys: std::collections::BTreeSet<_> = ia.keys().chain(ib.keys()).collect();
    for key in keys {
        out.points_compared += 1;
        let (pa, pb) = (ia.get(key), ib.get(key));
        let fields = pa
            .or(pb)
            .map(|(y, _)| *y)
            .expect("the key came from a side");
        for field in fields {
            let num = |p: Option<&(&Vec<String>, &Map<String, Value>)>| {
                p.and_then(|(_, m)| m.get(field)).and_then(Value::as_f64)
            };
            let (va, vb) = (num(pa), num(pb));
            let same = match (va, vb) {
                (Some(x), Some(y)) => x.to_bits() == y.to_bits(),
                (None, None) => true,
                _ => false,
            };
            if !same {
                out.points.push(PointDiff {
                    experiment: name.to_string(),
                    series: key.0.clone(),
                    at: key.1.clone(),
                    field: field.clone(),
                    a: va,
                    b: vb,
                });
            }
        }
    }
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(x) if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) => format!("{x:.4e}"),
        Some(x) => format!("{:.6}", x)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string(),
    }
}

/// The comparison as Markdown: changed checks first, then every check
/// whose value moved, then the largest point differences (`max_points`).
pub fn render(c: &Comparison, a: &str, b: &str, max_points: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# nextio compare\n\n- A: `{a}`\n- B: `{b}`\n");
    let changed_values = c.checks.iter().filter(|d| d.value_changed()).count();
    let _ = writeln!(
        s,
        "{} checks compared: {} verdict change(s), {} value change(s); {} series points compared, {} number(s) differ.\n",
        c.checks.len(),
        c.verdict_changes() - c.lone.len(),
        changed_values,
        c.points_compared,
        c.points.len()
    );
    if !c.config.is_empty() {
        let _ = writeln!(
            s,
            "The runs were configured differently, so differences below are expected:\n"
        );
        for (name, what, x, y) in &c.config {
            let _ = writeln!(s, "- {name}: {what} = {x} in A, {y} in B");
        }
        let _ = writeln!(s);
    }
    for (name, in_a) in &c.lone {
        let _ = writeln!(
            s,
            "- experiment `{name}` only in {}",
            if *in_a { "A" } else { "B" }
        );
    }
    let verdict = |v: Option<(f64, Verdict)>| v.map_or("—", |(_, v)| v.name());
    let model = |v: Option<(f64, Verdict)>| num(v.map(|(m, _)| m));
    let moved: Vec<&CheckDiff> = c.checks.iter().filter(|d| d.value_changed()).collect();
    if !moved.is_empty() {
        let _ = writeln!(
            s,
            "\n| experiment | check | paper | A | B | Δ | verdict A → B |\n|---|---|---|---|---|---|---|"
        );
        // Verdict changes first.
        let mut moved = moved;
        moved.sort_by_key(|d| !d.verdict_changed());
        for d in moved {
            let delta = match (d.a, d.b) {
                (Some((x, _)), Some((y, _))) => num(Some(y - x)),
                _ => "—".into(),
            };
            let flag = if d.verdict_changed() { "**" } else { "" };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} {u} | {} {u} | {delta} | {flag}{} → {}{flag} |",
                d.experiment,
                d.id,
                num(d.paper),
                model(d.a),
                model(d.b),
                verdict(d.a),
                verdict(d.b),
                u = d.unit,
            );
        }
    }
    if !c.points.is_empty() {
        let mut pts: Vec<&PointDiff> = c.points.iter().collect();
        pts.sort_by(|x, y| y.relative().total_cmp(&x.relative()));
        let _ = writeln!(
            s,
            "\n| experiment | series | point | field | A | B | relative |\n|---|---|---|---|---|---|---|"
        );
        for p in pts.iter().take(max_points) {
            let rel = p.relative();
            let rel = if rel.is_finite() {
                format!("{:.2} %", rel * 100.0)
            } else {
                "—".into()
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {rel} |",
                p.experiment,
                p.series,
                p.at,
                p.field,
                num(p.a),
                num(p.b)
            );
        }
        if pts.len() > max_points {
            let _ = writeln!(s, "\n… and {} more.", pts.len() - max_points);
        }
    }
    if c.identical() {
        let _ = writeln!(s, "The two runs agree on every number.");
    }
    s
}
