//! One experiment under several seeds, summarised as one result: every
//! numeric value of every point and every check becomes the mean over the
//! seeds, with the half-width of its 95 % confidence interval beside it
//! (`FIELD_ci95` in a point, `model_ci95` in a check), and each check is
//! judged on the mean.
//!
//! Keeps true: a summary exists only for runs of the same shape — the same
//! series with the same points and x values, the same checks — so a value
//! is only ever averaged with the values of the same quantity; anything
//! else is an error, never a silent mismatch. With one seed the result is
//! returned unchanged.

use serde_json::{Map, Number, Value};

use crate::experiment::{Check, ExperimentResult, RunError, SimStats, Verdict};

/// Two-sided 95 % quantiles of Student's t for 1..=30 degrees of freedom
/// (any statistics table); beyond 30 the normal 1.96 is within 2 %.
const T_975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// Mean and 95 % confidence half-width of `values` (0 for one value).
pub fn mean_ci95(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = T_975.get(n - 2).copied().unwrap_or(1.96);
    (mean, t * (var / n as f64).sqrt())
}

/// The runs of one experiment under different seeds, as one result.
pub fn summarise(mut runs: Vec<ExperimentResult>) -> Result<ExperimentResult, RunError> {
    if runs.len() <= 1 {
        return runs
            .pop()
            .ok_or_else(|| RunError::Config("no run to summarise".into()));
    }
    let mismatch = |what: String| {
        RunError::Config(format!(
            "runs under different seeds differ in shape ({what}); they cannot be averaged"
        ))
    };
    let first = runs[0].clone();
    for r in &runs[1..] {
        if r.series.len() != first.series.len() || r.checks.len() != first.checks.len() {
            return Err(mismatch("series or check count".into()));
        }
        for (a, b) in first.series.iter().zip(&r.series) {
            if a.name != b.name || a.points.len() != b.points.len() {
                return Err(mismatch(format!("series `{}`", a.name)));
            }
            for (p, q) in a.points.iter().zip(&b.points) {
                if p.get(&a.x) != q.get(&a.x) {
                    return Err(mismatch(format!("x values of series `{}`", a.name)));
                }
            }
        }
        for (a, b) in first.checks.iter().zip(&r.checks) {
            if a.id != b.id {
                return Err(mismatch(format!("check `{}`", a.id)));
            }
        }
    }
    let mut out = first;
    out.seeds = runs.iter().map(|r| r.seed).collect();
    for (si, series) in out.series.iter_mut().enumerate() {
        for (pi, point) in series.points.iter_mut().enumerate() {
            let same: Vec<&Map<String, Value>> =
                runs.iter().map(|r| &r.series[si].points[pi]).collect();
            *point = summarise_point(&series.x, &series.y, &same);
        }
    }
    for (ci, check) in out.checks.iter_mut().enumerate() {
        let models: Vec<f64> = runs.iter().map(|r| r.checks[ci].model).collect();
        *check = summarise_check(check, &models);
    }
    out.stats = runs.iter().flat_map(|r| r.stats.iter().cloned()).collect();
    out.stats.sort();
    out.sim = runs.iter().fold(SimStats::default(), |mut s, r| {
        s.events += r.sim.events;
        s.simulated_ps += r.sim.simulated_ps;
        s.packets += r.sim.packets;
        s.wall_s += r.sim.wall_s;
        s
    });
    let per_s = |n: u64| {
        if out.sim.wall_s > 0.0 {
            n as f64 / out.sim.wall_s
        } else {
            0.0
        }
    };
    out.sim.events_per_wall_s = per_s(out.sim.events);
    out.sim.packets_per_wall_s = per_s(out.sim.packets);
    out.notes.insert(
        0,
        format!(
            "{} seeds ({}): every value is the mean over them, FIELD_ci95 and model_ci95 the \
             half-width of its 95 % confidence interval (Student's t); verdicts judge the mean.",
            out.seeds.len(),
            out.seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    Ok(out)
}

/// One point averaged over seeds. A number that is the same under every
/// seed (a parameter, a count fixed by the sweep) is kept as it is; one
/// that varies becomes its mean plus a `_ci95` field, and so does every
/// plotted quantity (`ys`), so its column exists at every point. The x
/// value and anything not a number are kept.
fn summarise_point(x: &str, ys: &[String], same: &[&Map<String, Value>]) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in same[0] {
        let numbers: Option<Vec<f64>> = same.iter().map(|p| p.get(key)?.as_f64()).collect();
        let plotted = ys.iter().any(|y| y == key);
        match numbers {
            Some(values) if key != x && value.is_number() => {
                let varies = same.iter().any(|p| p.get(key) != Some(value));
                let (mean, ci) = mean_ci95(&values);
                out.insert(
                    key.clone(),
                    if varies { number(mean) } else { value.clone() },
                );
                if varies || plotted {
                    out.insert(format!("{key}_ci95"), number(ci));
                }
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

fn summarise_check(check: &Check, models: &[f64]) -> Check {
    let (mean, ci) = mean_ci95(models);
    Check {
        model: mean,
        model_ci95: Some(ci),
        verdict: Verdict::of(check.paper, check.tolerance, mean),
        ..check.clone()
    }
}

fn number(v: f64) -> Value {
    Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_interval_follow_student_t() {
        assert_eq!(mean_ci95(&[4.0]), (4.0, 0.0));
        let (m, ci) = mean_ci95(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12);
        // sd 1, n 3: t(2) 4.303 × 1/√3.
        assert!((ci - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(mean_ci95(&[5.0, 5.0, 5.0]).1, 0.0);
    }

    #[test]
    fn points_keep_x_and_words_and_average_numbers() {
        let p = |x: u64, y: f64| {
            let mut m = Map::new();
            m.insert("x".into(), x.into());
            m.insert("y".into(), y.into());
            m.insert("mode".into(), "a".into());
            m
        };
        let (a, b) = (p(7, 1.0), p(7, 3.0));
        let s = summarise_point("x", &[], &[&a, &b]);
        assert_eq!(s["x"], 7);
        assert_eq!(s["mode"], "a");
        assert_eq!(s["y"].as_f64(), Some(2.0));
        assert!(s["y_ci95"].as_f64().unwrap() > 0.0);
        assert!(!s.contains_key("x_ci95"));
        // The same under both seeds: kept as written, no interval unless
        // it is plotted.
        let s = summarise_point("x", &[], &[&a, &a]);
        assert_eq!(s["y"], a["y"]);
        assert!(!s.contains_key("y_ci95"));
        let s = summarise_point("x", &["y".to_string()], &[&a, &a]);
        assert_eq!(s["y_ci95"].as_f64(), Some(0.0));
    }
}
