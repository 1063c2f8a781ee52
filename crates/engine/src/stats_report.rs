//! Every counter of every component of one simulation, as one flat list
//! of dotted names and values (the role of gem5's `stats.txt`).
//!
//! Components add themselves to a simulation's report when it is
//! collected ([`crate::Sim::on_stats`], [`crate::Sim::collect_stats`]):
//! a host its cores' ledgers, caches, fabric, IOMMU, links and devices; a
//! wire its frames. What it keeps true: names are unique within a report
//! (a repeated name is kept with `#2`, `#3`, … so nothing is overwritten
//! silently), entries keep the order components added them (a pure
//! function of the simulation, so two runs of a seed give the same file),
//! and values are the models' own counters, never derived here.

use std::fmt::Write as _;

use serde::Serialize;

use crate::ledger::{Category, Ledger};
use crate::stats::{Counters, LatencyHist};

/// One value of a report.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StatValue {
    Count(u64),
    Real(f64),
}

impl std::fmt::Display for StatValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatValue::Count(n) => write!(f, "{n}"),
            StatValue::Real(x) => write!(f, "{x}"),
        }
    }
}

/// The counters of one simulation.
#[derive(Clone, Debug, Default)]
pub struct StatsReport {
    entries: Vec<(String, StatValue)>,
    names: std::collections::BTreeMap<String, u32>,
}

impl StatsReport {
    pub fn new() -> StatsReport {
        StatsReport::default()
    }

    fn push(&mut self, name: String, value: StatValue) {
        let seen = self.names.entry(name.clone()).or_insert(0);
        *seen += 1;
        let name = if *seen == 1 {
            name
        } else {
            format!("{name}#{seen}")
        };
        self.entries.push((name, value));
    }

    /// Add the count `name`.
    pub fn count(&mut self, name: impl Into<String>, n: u64) {
        self.push(name.into(), StatValue::Count(n));
    }

    /// Add the real value `name`.
    pub fn real(&mut self, name: impl Into<String>, x: f64) {
        self.push(name.into(), StatValue::Real(x));
    }

    /// Add every counter of `c` as `prefix.NAME`.
    pub fn counters(&mut self, prefix: &str, c: &Counters) {
        for (k, v) in c.iter() {
            self.count(format!("{prefix}.{k}"), v);
        }
    }

    /// Add a core's ledger: picoseconds per category and the total.
    pub fn ledger(&mut self, prefix: &str, l: &Ledger) {
        for c in Category::ALL {
            self.count(format!("{prefix}.{}_ps", c.name()), l.get(c).0);
        }
        self.count(format!("{prefix}.total_ps"), l.total().0);
    }

    /// Add a latency histogram: its summary (count, mean, p50, p99, p99.9
    /// and max, in picoseconds), then its samples in power-of-two buckets
    /// (`PREFIX.bucket_from_N_ps`: samples in `[N, 2N)` ps).
    pub fn histogram(&mut self, prefix: &str, h: &LatencyHist) {
        self.count(format!("{prefix}.count"), h.count());
        if h.count() == 0 {
            return;
        }
        self.count(format!("{prefix}.mean_ps"), h.mean().0);
        for (q, name) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p999")] {
            self.count(format!("{prefix}.{name}_ps"), h.quantile(q).0);
        }
        self.count(format!("{prefix}.max_ps"), h.max().0);
        for (from, n) in h.log2_buckets() {
            self.count(format!("{prefix}.bucket_from_{from}_ps"), n);
        }
    }

    /// Add every number of a serialisable statistics struct, its fields'
    /// names joined by dots (maps by key, lists by index, booleans as 0/1;
    /// text is left out).
    pub fn serialized(&mut self, prefix: &str, stats: &impl Serialize) {
        match serde_json::to_value(stats) {
            Ok(v) => self.flatten(prefix, &v),
            Err(e) => self.real(format!("{prefix}.unserialisable({e})"), f64::NAN),
        }
    }

    fn flatten(&mut self, prefix: &str, v: &serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::Number(n) => match n.as_u64() {
                Some(u) => self.count(prefix.to_string(), u),
                None => self.real(prefix.to_string(), n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::Bool(b) => self.count(prefix.to_string(), *b as u64),
            Value::Object(m) => {
                for (k, x) in m {
                    self.flatten(&format!("{prefix}.{k}"), x);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    self.flatten(&format!("{prefix}.{i}"), x);
                }
            }
            Value::Null | Value::String(_) => {}
        }
    }

    /// The value of `name`, if the report has it.
    pub fn get(&self, name: &str) -> Option<StatValue> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    pub fn entries(&self) -> &[(String, StatValue)] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The report as text: one `name value` line per entry, names padded
    /// to one column.
    pub fn to_text(&self) -> String {
        let width = self.entries.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        let mut s = String::with_capacity(self.entries.len() * (width + 16));
        for (n, v) in &self.entries {
            let _ = writeln!(s, "{n:<width$} {v}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{Duration, Time};

    #[test]
    fn names_stay_unique_and_structs_flatten() {
        let mut r = StatsReport::new();
        let mut c = Counters::new();
        c.add("drop.full", 3);
        r.counters("wire", &c);
        r.counters("wire", &c);
        #[derive(Serialize)]
        struct S {
            walks: u64,
            by: std::collections::BTreeMap<&'static str, u64>,
            name: &'static str,
        }
        r.serialized(
            "iommu",
            &S {
                walks: 2,
                by: [("data", 7)].into(),
                name: "x",
            },
        );
        let mut l = Ledger::new(Time(0));
        l.charge(Category::Driver, Duration(40));
        r.ledger("core0", &l);
        assert_eq!(r.get("wire.drop.full"), Some(StatValue::Count(3)));
        assert_eq!(r.get("wire.drop.full#2"), Some(StatValue::Count(3)));
        assert_eq!(r.get("iommu.walks"), Some(StatValue::Count(2)));
        assert_eq!(r.get("iommu.by.data"), Some(StatValue::Count(7)));
        assert_eq!(r.get("core0.driver_ps"), Some(StatValue::Count(40)));
        assert_eq!(r.get("core0.total_ps"), Some(StatValue::Count(40)));
        assert!(r.to_text().lines().count() == r.len());
    }

    #[test]
    fn a_histogram_is_summarised_and_bucketed() {
        let mut h = LatencyHist::new();
        for ps in [100, 150, 3000] {
            h.record(Duration(ps));
        }
        let mut r = StatsReport::new();
        r.histogram("rtt", &h);
        assert_eq!(r.get("rtt.count"), Some(StatValue::Count(3)));
        assert_eq!(r.get("rtt.bucket_from_64_ps"), Some(StatValue::Count(1)));
        assert_eq!(r.get("rtt.bucket_from_128_ps"), Some(StatValue::Count(1)));
        assert_eq!(r.get("rtt.bucket_from_2048_ps"), Some(StatValue::Count(1)));
        let bucketed: u64 = r
            .entries()
            .iter()
            .filter(|(n, _)| n.starts_with("rtt.bucket_from_"))
            .map(|(_, v)| match v {
                StatValue::Count(n) => *n,
                StatValue::Real(_) => 0,
            })
            .sum();
        assert_eq!(bucketed, 3);
    }
}
