//! Experiment parameters: what each experiment declares it accepts, and the
//! one place where raw `KEY=VALUE` strings from the command line become
//! validated, typed values.
//!
//! Invariants: an experiment only ever sees parameters that exist in its
//! declaration, parsed as their declared kind and inside their declared
//! range — every numeric parameter declares one ([`Range`]), every list how
//! many items it takes — so no value can ask for unbounded memory or
//! simulated time; anything else is a [`ParamError`] with a one-line message
//! fit to print as-is (naming the parameter, what it accepts and the value).
//! A numeric or list parameter without a declaration is rejected, so a
//! forgotten range fails the defaults test rather than passing unchecked.

use std::collections::BTreeMap;

use serde_json::Value;
use thiserror::Error;

/// The type of a parameter's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A non-negative integer.
    U64,
    /// A comma-separated list of non-negative integers.
    U64List,
    /// A real number.
    F64,
    /// A comma-separated list of real numbers.
    F64List,
    /// A word (an identifier, a mode name).
    Str,
    /// A comma-separated list of words.
    StrList,
}

impl ParamKind {
    fn describe(self) -> &'static str {
        match self {
            ParamKind::U64 => "an integer",
            ParamKind::U64List => "a list of integers",
            ParamKind::F64 => "a number",
            ParamKind::F64List => "a list of numbers",
            ParamKind::Str => "a word",
            ParamKind::StrList => "a list of words",
        }
    }
}

/// The values a numeric parameter accepts (every item, for a list).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Range {
    /// Not declared: right for words, refused for numbers.
    Undeclared,
    /// Integers `min..=max`.
    Int { min: u64, max: u64 },
    /// Real numbers from `min` to `max`, both included.
    Real { min: f64, max: f64 },
}

impl Range {
    fn contains_int(self, v: u64) -> bool {
        matches!(self, Range::Int { min, max } if (min..=max).contains(&v))
    }
    fn contains_real(self, v: f64) -> bool {
        match self {
            Range::Real { min, max } => v >= min && v <= max,
            Range::Int { min, max } => v >= min as f64 && v <= max as f64,
            Range::Undeclared => false,
        }
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Range::Undeclared => write!(f, "(no declared range)"),
            Range::Int { min, max } => write!(f, "{min}..={max}"),
            Range::Real { min, max } => write!(f, "{min} to {max}"),
        }
    }
}

/// One parameter an experiment accepts.
#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    /// Default value, written as on the command line.
    pub default: &'static str,
    /// Default used with `--quick`, if different.
    pub quick_default: Option<&'static str>,
    pub unit: &'static str,
    pub help: &'static str,
    /// For word parameters: the accepted words (empty: any).
    pub choices: &'static [&'static str],
    /// For numeric parameters: the accepted values.
    pub range: Range,
    /// For list parameters: the least and the most items, both included
    /// (`(0, 0)`: not declared, which refuses every list).
    pub items: (usize, usize),
}

impl ParamSpec {
    pub const fn new(
        name: &'static str,
        kind: ParamKind,
        default: &'static str,
        unit: &'static str,
        help: &'static str,
    ) -> Self {
        ParamSpec {
            name,
            kind,
            default,
            quick_default: None,
            unit,
            help,
            choices: &[],
            range: Range::Undeclared,
            items: (0, 0),
        }
    }
    pub const fn quick(mut self, quick_default: &'static str) -> Self {
        self.quick_default = Some(quick_default);
        self
    }
    pub const fn choices(mut self, choices: &'static [&'static str]) -> Self {
        self.choices = choices;
        self
    }
    /// Integer values (or items) `min..=max`.
    pub const fn int(mut self, min: u64, max: u64) -> Self {
        self.range = Range::Int { min, max };
        self
    }
    /// Real values (or items) from `min` to `max`, both included.
    pub const fn real(mut self, min: f64, max: f64) -> Self {
        self.range = Range::Real { min, max };
        self
    }
    /// A list takes `min..=max` items.
    pub const fn items(mut self, min: usize, max: usize) -> Self {
        self.items = (min, max);
        self
    }
    pub fn kind_name(&self) -> &'static str {
        self.kind.describe()
    }
    /// Whether values of this kind are numbers (and so need a [`Range`]).
    pub fn is_numeric(&self) -> bool {
        matches!(
            self.kind,
            ParamKind::U64 | ParamKind::U64List | ParamKind::F64 | ParamKind::F64List
        )
    }
    /// Whether values of this kind are lists (and so need item bounds).
    pub fn is_list(&self) -> bool {
        matches!(
            self.kind,
            ParamKind::U64List | ParamKind::F64List | ParamKind::StrList
        )
    }
    /// What the parameter accepts, in words: "an integer in 1..=16", "1 to
    /// 8 numbers, each 0 to 1.5", "a word".
    pub fn accepts(&self) -> String {
        let each = if self.is_numeric() {
            format!(" in {}", self.range)
        } else {
            String::new()
        };
        if self.is_list() {
            let what = match self.kind {
                ParamKind::U64List => "integers",
                ParamKind::F64List => "numbers",
                _ => "words",
            };
            let (lo, hi) = self.items;
            let count = if lo == hi {
                format!("{lo}")
            } else {
                format!("{lo} to {hi}")
            };
            let each = if self.is_numeric() {
                format!(", each{each}")
            } else {
                String::new()
            };
            format!("a list of {count} {what}{each}")
        } else {
            format!("{}{each}", self.kind.describe())
        }
    }
}

/// A parsed parameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    U64(u64),
    U64List(Vec<u64>),
    F64(f64),
    F64List(Vec<f64>),
    Str(String),
    StrList(Vec<String>),
}

impl ParamValue {
    pub fn to_json(&self) -> Value {
        match self {
            ParamValue::U64(v) => Value::from(*v),
            ParamValue::U64List(v) => Value::from(v.clone()),
            ParamValue::F64(v) => Value::from(*v),
            ParamValue::F64List(v) => Value::from(v.clone()),
            ParamValue::Str(v) => Value::from(v.clone()),
            ParamValue::StrList(v) => Value::from(v.clone()),
        }
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum ParamError {
    #[error("unknown parameter `{key}` for experiment {experiment} (known: {known})")]
    UnknownKey {
        experiment: String,
        key: String,
        known: String,
    },
    #[error("parameter `{key}`: cannot parse `{value}` as {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: String,
    },
    #[error("parameter `{key}`: `{value}` is not one of {choices}")]
    BadChoice {
        key: String,
        value: String,
        choices: String,
    },
    #[error("parameter `{key}`: {value} is outside its range {range}{unit}")]
    OutOfRange {
        key: String,
        value: String,
        range: String,
        unit: String,
    },
    #[error("parameter `{key}`: {count} items, but it takes {min} to {max}")]
    ItemCount {
        key: String,
        count: usize,
        min: usize,
        max: usize,
    },
    #[error("parameter `{key}` declares no {what}, so no value is accepted")]
    Undeclared { key: String, what: &'static str },
    #[error("`{0}` is not KEY=VALUE")]
    NotKeyValue(String),
}

/// A value as an error message shows it: control characters escaped (so
/// the message stays one line) and long values cut.
pub fn shown(raw: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out: String = raw
        .chars()
        .take(MAX_CHARS)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if raw.chars().count() > MAX_CHARS {
        out.push('…');
    }
    out
}

/// Parse one value of `spec`'s kind, inside its declared range and item
/// bounds.
pub fn parse_value(spec: &ParamSpec, raw: &str) -> Result<ParamValue, ParamError> {
    let bad = || ParamError::BadValue {
        key: spec.name.into(),
        value: shown(raw),
        expected: spec.accepts(),
    };
    if spec.is_numeric() && spec.range == Range::Undeclared {
        return Err(ParamError::Undeclared {
            key: spec.name.into(),
            what: "range",
        });
    }
    if spec.is_list() && spec.items.1 == 0 {
        return Err(ParamError::Undeclared {
            key: spec.name.into(),
            what: "number of items",
        });
    }
    let items = || raw.split(',').map(str::trim).filter(|s| !s.is_empty());
    // Counted before anything is parsed or stored, so a huge list costs
    // no more than its own text.
    if spec.is_list() {
        let count = items().count();
        let (min, max) = spec.items;
        if count == 0 {
            return Err(bad());
        }
        if count < min || count > max {
            return Err(ParamError::ItemCount {
                key: spec.name.into(),
                count,
                min,
                max,
            });
        }
    }
    let word_ok = |w: &str| spec.choices.is_empty() || spec.choices.contains(&w);
    let bad_choice = |w: &str| ParamError::BadChoice {
        key: spec.name.into(),
        value: shown(w),
        choices: spec.choices.join(", "),
    };
    let out_of_range = |item: &str| ParamError::OutOfRange {
        key: spec.name.into(),
        value: shown(item),
        range: spec.range.to_string(),
        unit: if spec.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", spec.unit)
        },
    };
    let int = |s: &str| -> Result<u64, ParamError> {
        // An integer too large for 64 bits is out of range, not garbage.
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_err() {
            return Err(out_of_range(s));
        }
        let v: u64 = s.parse().map_err(|_| bad())?;
        if spec.range.contains_int(v) {
            Ok(v)
        } else {
            Err(out_of_range(s))
        }
    };
    let real = |s: &str| -> Result<f64, ParamError> {
        let v = parse_f64(s).ok_or_else(bad)?;
        if spec.range.contains_real(v) {
            Ok(v)
        } else {
            Err(out_of_range(s))
        }
    };
    let value = match spec.kind {
        ParamKind::U64 => ParamValue::U64(int(raw.trim())?),
        ParamKind::F64 => ParamValue::F64(real(raw.trim())?),
        ParamKind::U64List => ParamValue::U64List(items().map(int).collect::<Result<_, _>>()?),
        ParamKind::F64List => ParamValue::F64List(items().map(real).collect::<Result<_, _>>()?),
        ParamKind::Str => {
            let w = raw.trim();
            if w.is_empty() {
                return Err(bad());
            }
            if !word_ok(w) {
                return Err(bad_choice(w));
            }
            ParamValue::Str(w.into())
        }
        ParamKind::StrList => {
            let v: Vec<String> = items().map(String::from).collect();
            if let Some(w) = v.iter().find(|w| !word_ok(w)) {
                return Err(bad_choice(w));
            }
            ParamValue::StrList(v)
        }
    };
    Ok(value)
}

/// Finite real numbers only: `NaN` and infinities are not parameters.
fn parse_f64(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Validated parameters of one run.
#[derive(Clone, Debug, Default)]
pub struct Params {
    values: BTreeMap<&'static str, ParamValue>,
}

impl Params {
    /// Defaults from `specs` (quick defaults with `quick`), overridden by
    /// `overrides` (`KEY=VALUE` strings, later ones win).
    pub fn resolve(
        experiment: &str,
        specs: &[ParamSpec],
        quick: bool,
        overrides: &[String],
    ) -> Result<Params, ParamError> {
        let mut values = BTreeMap::new();
        for spec in specs {
            let raw = if quick {
                spec.quick_default.unwrap_or(spec.default)
            } else {
                spec.default
            };
            values.insert(spec.name, parse_value(spec, raw)?);
        }
        for kv in overrides {
            let (key, raw) = kv
                .split_once('=')
                .ok_or_else(|| ParamError::NotKeyValue(shown(kv)))?;
            let key = key.trim();
            let spec =
                specs
                    .iter()
                    .find(|s| s.name == key)
                    .ok_or_else(|| ParamError::UnknownKey {
                        experiment: experiment.into(),
                        key: shown(key),
                        known: specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
                    })?;
            values.insert(spec.name, parse_value(spec, raw)?);
        }
        Ok(Params { values })
    }

    fn get(&self, name: &str) -> &ParamValue {
        self.values
            .get(name)
            .unwrap_or_else(|| panic!("experiment read undeclared parameter `{name}`"))
    }
    pub fn u64(&self, name: &str) -> u64 {
        match self.get(name) {
            ParamValue::U64(v) => *v,
            other => panic!("parameter `{name}` is {other:?}, not an integer"),
        }
    }
    pub fn u64_list(&self, name: &str) -> Vec<u64> {
        match self.get(name) {
            ParamValue::U64List(v) => v.clone(),
            ParamValue::U64(v) => vec![*v],
            other => panic!("parameter `{name}` is {other:?}, not a list of integers"),
        }
    }
    pub fn f64(&self, name: &str) -> f64 {
        match self.get(name) {
            ParamValue::F64(v) => *v,
            ParamValue::U64(v) => *v as f64,
            other => panic!("parameter `{name}` is {other:?}, not a number"),
        }
    }
    pub fn f64_list(&self, name: &str) -> Vec<f64> {
        match self.get(name) {
            ParamValue::F64List(v) => v.clone(),
            ParamValue::F64(v) => vec![*v],
            other => panic!("parameter `{name}` is {other:?}, not a list of numbers"),
        }
    }
    pub fn str(&self, name: &str) -> &str {
        match self.get(name) {
            ParamValue::Str(v) => v,
            other => panic!("parameter `{name}` is {other:?}, not a word"),
        }
    }
    pub fn str_list(&self, name: &str) -> Vec<String> {
        match self.get(name) {
            ParamValue::StrList(v) => v.clone(),
            ParamValue::Str(v) => vec![v.clone()],
            other => panic!("parameter `{name}` is {other:?}, not a list of words"),
        }
    }
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_json()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[ParamSpec] = &[
        ParamSpec::new(
            "sizes",
            ParamKind::U64List,
            "64,128",
            "bytes",
            "transfer sizes",
        )
        .quick("64")
        .int(1, 4096)
        .items(1, 4),
        ParamSpec::new("gen", ParamKind::U64, "3", "", "PCIe generation").int(1, 5),
        ParamSpec::new("mode", ParamKind::Str, "a", "", "mode").choices(&["a", "b"]),
        ParamSpec::new("load", ParamKind::F64List, "0.5", "", "loads")
            .real(0.0, 1.5)
            .items(1, 3),
        ParamSpec::new("rate", ParamKind::F64, "1", "Gb/s", "rate").real(0.01, 100.0),
    ];

    fn err(kv: &str) -> ParamError {
        Params::resolve("x", SPECS, false, &[kv.to_string()]).unwrap_err()
    }

    #[test]
    fn defaults_quick_and_overrides() {
        let p = Params::resolve("x", SPECS, false, &[]).unwrap();
        assert_eq!(p.u64_list("sizes"), vec![64, 128]);
        let p = Params::resolve("x", SPECS, true, &["gen=4".into(), "mode=b".into()]).unwrap();
        assert_eq!(p.u64_list("sizes"), vec![64]);
        assert_eq!(p.u64("gen"), 4);
        assert_eq!(p.str("mode"), "b");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(matches!(err("nope=1"), ParamError::UnknownKey { .. }));
        assert!(matches!(err("gen=three"), ParamError::BadValue { .. }));
        assert!(matches!(err("sizes=64,x"), ParamError::BadValue { .. }));
        assert!(matches!(err("sizes="), ParamError::BadValue { .. }));
        assert!(matches!(err("mode=c"), ParamError::BadChoice { .. }));
        assert!(matches!(err("gen"), ParamError::NotKeyValue(_)));
        assert!(matches!(err("gen=-1"), ParamError::BadValue { .. }));
        assert!(matches!(err("rate=NaN"), ParamError::BadValue { .. }));
        assert!(matches!(err("rate=inf"), ParamError::BadValue { .. }));
    }

    #[test]
    fn values_outside_the_declared_range_are_refused_by_name() {
        for kv in [
            "gen=0",
            "gen=6",
            "gen=18446744073709551615",
            "gen=99999999999999999999999",
            "sizes=64,8192",
            "load=-0.5",
            "load=0.5,2",
            "rate=1e-300",
            "rate=1e12",
        ] {
            let e = err(kv);
            assert!(matches!(e, ParamError::OutOfRange { .. }), "{kv}: {e:?}");
            let key = kv.split('=').next().unwrap();
            let value = kv.rsplit([',', '=']).next().unwrap();
            let text = e.to_string();
            assert!(
                text.contains(&format!("`{key}`")) && text.contains(value),
                "{text}"
            );
        }
        assert_eq!(
            err("gen=6").to_string(),
            "parameter `gen`: 6 is outside its range 1..=5"
        );
        assert_eq!(
            err("rate=1e-300").to_string(),
            "parameter `rate`: 1e-300 is outside its range 0.01 to 100 Gb/s"
        );
    }

    #[test]
    fn lists_have_bounded_lengths() {
        assert!(matches!(
            err("sizes=1,2,3,4,5"),
            ParamError::ItemCount { count: 5, .. }
        ));
        let huge = format!("load={}", vec!["0.1"; 100_000].join(","));
        assert_eq!(
            err(&huge).to_string(),
            "parameter `load`: 100000 items, but it takes 1 to 3"
        );
    }

    #[test]
    fn undeclared_ranges_are_refused() {
        let spec = ParamSpec::new("n", ParamKind::U64, "1", "", "no range");
        assert!(matches!(
            parse_value(&spec, "1"),
            Err(ParamError::Undeclared { .. })
        ));
        let list = ParamSpec::new("l", ParamKind::StrList, "a", "", "no item bounds");
        assert!(matches!(
            parse_value(&list, "a"),
            Err(ParamError::Undeclared { .. })
        ));
    }

    #[test]
    fn messages_stay_on_one_line() {
        let e = err("mode=a\nb\u{7}");
        let text = e.to_string();
        assert!(!text.contains('\n') && !text.contains('\u{7}'), "{text}");
        let long = format!("mode={}", "z".repeat(10_000));
        assert!(err(&long).to_string().len() < 200);
    }

    #[test]
    fn every_experiment_declares_ranges_its_defaults_keep() {
        for exp in crate::all() {
            for spec in exp.params() {
                let what = format!("{} {}", exp.name(), spec.name);
                if spec.is_numeric() {
                    assert_ne!(spec.range, Range::Undeclared, "{what}: no range");
                }
                if spec.is_list() {
                    assert!(
                        spec.items.0 >= 1 && spec.items.0 <= spec.items.1,
                        "{what}: no item bounds"
                    );
                }
                for raw in [Some(spec.default), spec.quick_default]
                    .into_iter()
                    .flatten()
                {
                    assert!(
                        parse_value(spec, raw).is_ok(),
                        "{what}: default {raw} refused"
                    );
                }
            }
            for quick in [false, true] {
                Params::resolve(exp.name(), exp.params(), quick, &[]).unwrap();
            }
        }
    }
}
