//! Experiment parameters: what each experiment declares it accepts, and the
//! one place where raw `KEY=VALUE` strings from the command line become
//! validated, typed values.
//!
//! Invariant: an experiment only ever sees parameters that exist in its
//! declaration and parsed as their declared kind; anything else is an
//! [`ParamError`] with a message fit to print as-is.

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
    pub fn kind_name(&self) -> &'static str {
        self.kind.describe()
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
        expected: &'static str,
    },
    #[error("parameter `{key}`: `{value}` is not one of {choices}")]
    BadChoice {
        key: String,
        value: String,
        choices: String,
    },
    #[error("`{0}` is not KEY=VALUE")]
    NotKeyValue(String),
}

/// Parse one value of `spec`'s kind.
pub fn parse_value(spec: &ParamSpec, raw: &str) -> Result<ParamValue, ParamError> {
    let bad = || ParamError::BadValue {
        key: spec.name.into(),
        value: raw.into(),
        expected: spec.kind.describe(),
    };
    let items = || raw.split(',').map(str::trim).filter(|s| !s.is_empty());
    let word_ok = |w: &str| spec.choices.is_empty() || spec.choices.contains(&w);
    let bad_choice = |w: &str| ParamError::BadChoice {
        key: spec.name.into(),
        value: w.into(),
        choices: spec.choices.join(", "),
    };
    let value = match spec.kind {
        ParamKind::U64 => ParamValue::U64(raw.trim().parse().map_err(|_| bad())?),
        ParamKind::F64 => ParamValue::F64(parse_f64(raw.trim()).ok_or_else(bad)?),
        ParamKind::U64List => {
            let v: Vec<u64> = items()
                .map(|s| s.parse().map_err(|_| bad()))
                .collect::<Result<_, _>>()?;
            if v.is_empty() {
                return Err(bad());
            }
            ParamValue::U64List(v)
        }
        ParamKind::F64List => {
            let v: Vec<f64> = items()
                .map(|s| parse_f64(s).ok_or_else(bad))
                .collect::<Result<_, _>>()?;
            if v.is_empty() {
                return Err(bad());
            }
            ParamValue::F64List(v)
        }
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
            if v.is_empty() {
                return Err(bad());
            }
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
                .ok_or_else(|| ParamError::NotKeyValue(kv.clone()))?;
            let key = key.trim();
            let spec =
                specs
                    .iter()
                    .find(|s| s.name == key)
                    .ok_or_else(|| ParamError::UnknownKey {
                        experiment: experiment.into(),
                        key: key.into(),
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
        .quick("64"),
        ParamSpec::new("gen", ParamKind::U64, "3", "", "PCIe generation"),
        ParamSpec::new("mode", ParamKind::Str, "a", "", "mode").choices(&["a", "b"]),
    ];

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
        let err = |kv: &str| Params::resolve("x", SPECS, false, &[kv.to_string()]).unwrap_err();
        assert!(matches!(err("nope=1"), ParamError::UnknownKey { .. }));
        assert!(matches!(err("gen=three"), ParamError::BadValue { .. }));
        assert!(matches!(err("sizes=64,x"), ParamError::BadValue { .. }));
        assert!(matches!(err("sizes="), ParamError::BadValue { .. }));
        assert!(matches!(err("mode=c"), ParamError::BadChoice { .. }));
        assert!(matches!(err("gen"), ParamError::NotKeyValue(_)));
        assert!(matches!(err("gen=-1"), ParamError::BadValue { .. }));
    }
}
