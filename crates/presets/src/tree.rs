//! [`Tree`]: a resolved preset — values by dotted path, each with the
//! source that states it — and the two ways to change one: a single value
//! by path ([`Tree::set`]) and a partial document ([`Tree::overlay`]).
//!
//! Invariants: the shape of a tree (its sections, keys and the TOML type of
//! each value) is the root preset's and never changes; an override names
//! an existing value and gives one of the same type (an integer may stand
//! for a real number), or it is refused with a message naming what exists.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use crate::source::{self, join, one_line};
use crate::{PRESETS, PresetError};

/// Keys of a document that describe it rather than configure a model.
const META: [&str; 3] = ["name", "description", "base"];

/// Longest `base` chain a preset may have.
const MAX_DEPTH: usize = 8;

/// Where a value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The comment above the value (`source: …` or `assumption: …`), or
    /// what set it (`--set`), empty if a configuration file gave none.
    pub text: String,
    /// The preset, file or flag that set the value.
    pub from: String,
}

/// One value of a tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Leaf<'a> {
    pub path: String,
    pub value: &'a Value,
    pub source: Option<&'a Source>,
}

/// A resolved host configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Tree {
    name: String,
    description: String,
    values: Table,
    sources: BTreeMap<String, Source>,
}

/// A partial (or whole) configuration document to lay over a tree: a
/// `--config` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Overlay {
    /// The file, for messages and sources.
    pub label: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// The preset it asks to be laid over instead of the caller's.
    pub base: Option<String>,
    values: Table,
    comments: BTreeMap<String, String>,
}

/// The unit a key's name ends in, for display: `flight_ps` → `ps`.
pub fn unit_of(path: &str) -> &'static str {
    const SUFFIXES: [(&str, &str); 15] = [
        ("_bytes_per_s", "B/s"),
        ("_bits_per_s", "bit/s"),
        ("_ps", "ps"),
        ("_ns", "ns"),
        ("_us", "µs"),
        ("_hz", "Hz"),
        ("_mhz", "MHz"),
        ("_cycles", "cycles"),
        ("_bytes", "B"),
        ("_uops", "µops"),
        ("_lines", "lines"),
        ("_frames", "frames"),
        ("_entries", "entries"),
        ("_descriptors", "descriptors"),
        ("_ppm", "ppm"),
    ];
    let key = path.rsplit('.').next().unwrap_or(path);
    SUFFIXES
        .iter()
        .find(|(s, _)| key.ends_with(s))
        .map(|(_, u)| *u)
        .unwrap_or("")
}

/// The shipped presets, resolved once per process.
pub(crate) fn shipped(name: &str) -> Result<&'static Tree, PresetError> {
    static TREES: OnceLock<Vec<Result<Tree, PresetError>>> = OnceLock::new();
    let trees = TREES.get_or_init(|| PRESETS.iter().map(|p| resolve(p.name, 0)).collect());
    match PRESETS.iter().position(|p| p.name == name) {
        Some(i) => trees[i].as_ref().map_err(Clone::clone),
        None => Err(PresetError::UnknownPreset {
            name: name.to_string(),
            known: crate::names().join(", "),
        }),
    }
}

fn resolve(name: &str, depth: usize) -> Result<Tree, PresetError> {
    if depth > MAX_DEPTH {
        return Err(PresetError::Cycle(name.to_string()));
    }
    let preset =
        PRESETS
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| PresetError::UnknownPreset {
                name: name.to_string(),
                known: crate::names().join(", "),
            })?;
    let doc = Overlay::parse(preset.text, &format!("preset {name}"))?;
    let mut tree = match &doc.base {
        None => Tree::whole(&doc, name),
        Some(base) => {
            let mut tree = resolve(base, depth + 1)?;
            tree.lay(&doc.values, "", &doc.comments, name)?;
            tree
        }
    };
    tree.name = name.to_string();
    tree.description = doc.description.clone().unwrap_or_default();
    Ok(tree)
}

/// Dotted paths of every value under `t`, in document order.
fn leaf_paths(t: &Table, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in t {
        let path = join(prefix, k);
        match v {
            Value::Table(sub) => out.extend(leaf_paths(sub, &path)),
            _ => out.push(path),
        }
    }
    out
}

impl Overlay {
    /// Parse a configuration document; `label` names it in errors and
    /// sources (a file's path).
    pub fn parse(text: &str, label: &str) -> Result<Overlay, PresetError> {
        let mut parsed = source::parse(text, label)?;
        let mut meta = BTreeMap::new();
        for key in META {
            if let Some(v) = parsed.values.remove(key) {
                match v {
                    Value::String(s) => {
                        meta.insert(key, s);
                    }
                    _ => {
                        return Err(PresetError::Parse {
                            label: label.to_string(),
                            message: format!("`{key}` must be a string"),
                        });
                    }
                }
            }
        }
        parsed.comments.retain(|k, _| !META.contains(&k.as_str()));
        Ok(Overlay {
            label: label.to_string(),
            name: meta.remove("name"),
            description: meta.remove("description"),
            base: meta.remove("base"),
            values: parsed.values,
            comments: parsed.comments,
        })
    }

    /// Whether the document sets nothing.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl Tree {
    /// A document that defines every value itself (no `base`): the root
    /// preset, or a whole configuration written by [`Tree::to_toml`].
    pub fn whole(doc: &Overlay, name: &str) -> Tree {
        let mut sources = BTreeMap::new();
        for leaf in leaf_paths(&doc.values, "") {
            let text = doc.comments.get(&leaf).cloned().unwrap_or_default();
            sources.insert(
                leaf,
                Source {
                    text,
                    from: name.to_string(),
                },
            );
        }
        Tree {
            name: doc.name.clone().unwrap_or_else(|| name.to_string()),
            description: doc.description.clone().unwrap_or_default(),
            values: doc.values.clone(),
            sources,
        }
    }

    /// The preset's name (or the name a configuration file gave it).
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn description(&self) -> &str {
        &self.description
    }
    /// Every value, in document order.
    pub fn leaves(&self) -> Vec<Leaf<'_>> {
        leaf_paths(&self.values, "")
            .into_iter()
            .filter_map(|path| {
                let value = self.get(&path)?;
                let source = self.sources.get(&path);
                Some(Leaf {
                    path,
                    value,
                    source,
                })
            })
            .collect()
    }
    /// The value or section at `path`.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut v = self.values.get(parts.next()?)?;
        for p in parts {
            v = v.as_table()?.get(p)?;
        }
        Some(v)
    }
    /// The source of the value at `path`.
    pub fn source(&self, path: &str) -> Option<&Source> {
        self.sources.get(path)
    }

    /// Section `path` deserialized as a `T` (a model's configuration type).
    pub fn section<T: DeserializeOwned>(&self, path: &str) -> Result<T, PresetError> {
        let v = self.get(path).ok_or_else(|| self.unknown(path))?.clone();
        if !v.is_table() {
            return Err(PresetError::NotSection {
                path: path.to_string(),
            });
        }
        v.try_into().map_err(|e: toml::de::Error| {
            // The deserializer names the key inside the section on its
            // last line: "in `nic_slot.lanes`".
            let text = e.to_string().trim_end().to_string();
            let (why, inner) = match text.rsplit_once("\nin `") {
                Some((why, rest)) => (why.to_string(), rest.trim_end_matches('`').to_string()),
                None => (text.clone(), String::new()),
            };
            PresetError::BadValue {
                path: if inner.is_empty() {
                    path.to_string()
                } else {
                    join(path, &inner)
                },
                why: one_line(&why),
            }
        })
    }

    /// Set the value at `path` from its command-line text `raw`, which must
    /// parse as the value's type; `from` says who set it (`--set`).
    pub fn set(&mut self, path: &str, raw: &str, from: &str) -> Result<(), PresetError> {
        let old = match self.get(path) {
            None => return Err(self.unknown(path)),
            Some(Value::Table(t)) => {
                return Err(PresetError::Section {
                    path: path.to_string(),
                    keys: keys_of(t),
                });
            }
            Some(v) => v,
        };
        let new = parse_like(raw, old).map_err(|why| PresetError::BadValue {
            path: path.to_string(),
            why,
        })?;
        self.replace(path, new);
        self.sources.insert(
            path.to_string(),
            Source {
                text: format!("set by {from}"),
                from: from.to_string(),
            },
        );
        Ok(())
    }

    /// Lay `overlay` over this tree: every value it gives replaces this
    /// tree's (each must exist, with the same type). A `name` it gives
    /// becomes the tree's.
    pub fn overlay(&mut self, overlay: &Overlay) -> Result<(), PresetError> {
        self.lay(&overlay.values, "", &overlay.comments, &overlay.label)?;
        if let Some(name) = &overlay.name {
            self.name = name.clone();
        }
        Ok(())
    }

    /// The values that differ from `other`'s (same shape), by path.
    pub fn differences(&self, other: &Tree) -> Vec<(String, Value, Option<Value>)> {
        self.leaves()
            .into_iter()
            .filter_map(|l| {
                let theirs = other.get(&l.path);
                (theirs != Some(l.value)).then(|| (l.path, l.value.clone(), theirs.cloned()))
            })
            .collect()
    }

    fn lay(
        &mut self,
        over: &Table,
        prefix: &str,
        comments: &BTreeMap<String, String>,
        from: &str,
    ) -> Result<(), PresetError> {
        for (k, v) in over {
            let path = join(prefix, k);
            match (self.get(&path), v) {
                (None, _) => return Err(self.unknown(&path)),
                (Some(Value::Table(_)), Value::Table(sub)) => {
                    self.lay(sub, &path, comments, from)?;
                }
                (Some(Value::Table(t)), _) => {
                    return Err(PresetError::Section {
                        path,
                        keys: keys_of(t),
                    });
                }
                (Some(_), Value::Table(_)) => return Err(PresetError::NotSection { path }),
                (Some(old), new) => {
                    let new = coerce_like(new, old).map_err(|why| PresetError::BadValue {
                        path: path.clone(),
                        why,
                    })?;
                    self.replace(&path, new);
                    let text = comments
                        .get(&path)
                        .cloned()
                        .unwrap_or_else(|| format!("set by {from}"));
                    self.sources.insert(
                        path,
                        Source {
                            text,
                            from: from.to_string(),
                        },
                    );
                }
            }
        }
        Ok(())
    }

    fn replace(&mut self, path: &str, new: Value) {
        let mut parts: Vec<&str> = path.split('.').collect();
        let Some(last) = parts.pop() else { return };
        let mut t = &mut self.values;
        for p in parts {
            match t.get_mut(p) {
                Some(Value::Table(sub)) => t = sub,
                _ => return,
            }
        }
        if let Some(slot) = t.get_mut(last) {
            *slot = new;
        }
    }

    /// The error for a path that does not exist: what does exist at the
    /// deepest level it reached, and the nearest value's path.
    fn unknown(&self, path: &str) -> PresetError {
        let parts: Vec<&str> = path.split('.').collect();
        let mut at = &self.values;
        let mut reached = String::new();
        for p in &parts {
            match at.get(*p) {
                Some(Value::Table(sub)) => {
                    at = sub;
                    reached = join(&reached, p);
                }
                _ => break,
            }
        }
        let known = if reached.is_empty() {
            format!("the sections are {}", keys_of(at))
        } else {
            format!("`{reached}` has {}", keys_of(at))
        };
        // A key without its unit suffix (`flight` for `flight_ps`), or a
        // near miss.
        let leaves = leaf_paths(&self.values, "");
        let suffixed = leaves
            .iter()
            .find(|l| {
                l.strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with('_'))
            })
            .cloned();
        let nearest = leaves
            .into_iter()
            .map(|l| (edit_distance(&l, path), l))
            .min()
            .filter(|(d, _)| *d <= 3.max(path.len() / 5))
            .map(|(_, l)| l);
        let hint = match suffixed.or(nearest) {
            Some(l) => format!("{known}; did you mean `{l}`?"),
            None => known,
        };
        PresetError::UnknownPath {
            path: path.to_string(),
            hint,
        }
    }
}

fn keys_of(t: &Table) -> String {
    t.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a word",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::Table(_) => "a section",
    }
}

/// `new` as a value of `old`'s type, if it is one (an integer stands for a
/// real number).
fn coerce_like(new: &Value, old: &Value) -> Result<Value, String> {
    match (old, new) {
        (Value::Float(_), Value::Integer(i)) => Ok(Value::Float(*i as f64)),
        (Value::Float(_), Value::Float(f)) if !f.is_finite() => {
            Err(format!("{f} is not a finite number"))
        }
        (a, b) if std::mem::discriminant(a) == std::mem::discriminant(b) => Ok(b.clone()),
        _ => Err(format!("expects {}, got {}", kind(old), kind(new))),
    }
}

/// Command-line text `raw` as a value of `old`'s type.
fn parse_like(raw: &str, old: &Value) -> Result<Value, String> {
    let raw = raw.trim();
    let bad = || format!("expects {}, got `{}`", kind(old), raw.escape_default());
    match old {
        Value::String(_) => Ok(Value::String(
            raw.strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .unwrap_or(raw)
                .to_string(),
        )),
        Value::Integer(_) => raw
            .replace('_', "")
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| bad()),
        Value::Float(_) => match raw.replace('_', "").parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            _ => Err(bad()),
        },
        Value::Boolean(_) => match raw {
            "true" => Ok(Value::Boolean(true)),
            "false" => Ok(Value::Boolean(false)),
            _ => Err(bad()),
        },
        _ => Err(format!("{} cannot be set from the command line", kind(old))),
    }
}

/// Levenshtein distance, for suggesting the path a typo meant.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Tree {
        let doc = Overlay::parse(
            "name = \"t\"\n[link]\n# source: spec\nflight_ps = 200\n# assumption: why\nratio = 0.5\non = true\nmode = \"spec\"\n[link.credits]\nheaders = 4\n",
            "t",
        )
        .unwrap();
        let mut t = Tree {
            name: "t".into(),
            description: String::new(),
            values: Table::new(),
            sources: BTreeMap::new(),
        };
        t.values = doc.values;
        t
    }

    #[test]
    fn set_replaces_a_value_of_the_same_type() {
        let mut t = tree();
        t.set("link.flight_ps", "150_000", "--set").unwrap();
        t.set("link.ratio", "2", "--set").unwrap();
        t.set("link.mode", "pcie-bench", "--set").unwrap();
        assert_eq!(t.get("link.flight_ps"), Some(&Value::Integer(150_000)));
        assert_eq!(t.get("link.ratio"), Some(&Value::Float(2.0)));
        assert_eq!(t.source("link.flight_ps").unwrap().from, "--set");
        for (path, raw) in [
            ("link.flight_ps", "fast"),
            ("link.flight_ps", "1.5"),
            ("link.ratio", "NaN"),
            ("link.on", "yes"),
        ] {
            assert!(
                matches!(t.set(path, raw, "--set"), Err(PresetError::BadValue { .. })),
                "{path}={raw}"
            );
        }
    }

    #[test]
    fn unknown_paths_name_what_exists() {
        let mut t = tree();
        let e = t
            .set("link.flight_p", "1", "--set")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`link` has flight_ps, ratio, on, mode, credits"),
            "{e}"
        );
        assert!(e.contains("did you mean `link.flight_ps`"), "{e}");
        let e = t.set("lnk.x", "1", "--set").unwrap_err().to_string();
        assert!(e.contains("the sections are link"), "{e}");
        let e = t.set("link.credits", "1", "--set").unwrap_err();
        assert!(matches!(e, PresetError::Section { .. }), "{e}");
    }

    #[test]
    fn an_overlay_replaces_only_what_it_names() {
        let mut t = tree();
        let o = Overlay::parse(
            "name = \"mine\"\n[link]\n# source: my measurement\nflight_ps = 300\n[link.credits]\nheaders = 8\n",
            "mine.toml",
        )
        .unwrap();
        t.overlay(&o).unwrap();
        assert_eq!(t.name(), "mine");
        assert_eq!(t.get("link.flight_ps"), Some(&Value::Integer(300)));
        assert_eq!(t.get("link.credits.headers"), Some(&Value::Integer(8)));
        assert_eq!(t.get("link.ratio"), Some(&Value::Float(0.5)));
        assert_eq!(
            t.source("link.flight_ps").unwrap().text,
            "source: my measurement"
        );
        assert_eq!(
            t.source("link.credits.headers").unwrap().text,
            "set by mine.toml"
        );
        for bad in [
            "[link]\nflight = 1\n",
            "[link]\nflight_ps = \"fast\"\n",
            "[link]\ncredits = 1\n",
            "[link.flight_ps]\nx = 1\n",
            "[other]\nx = 1\n",
        ] {
            let o = Overlay::parse(bad, "bad.toml").unwrap();
            assert!(tree().overlay(&o).is_err(), "{bad}");
        }
    }

    #[test]
    fn section_errors_name_the_value() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Credits {
            headers: u8,
        }
        let mut t = tree();
        t.set("link.credits.headers", "300", "--set").unwrap();
        let e = t.section::<Credits>("link.credits").unwrap_err();
        assert!(
            matches!(&e, PresetError::BadValue { path, .. } if path == "link.credits.headers"),
            "{e}"
        );
    }

    #[test]
    fn units_come_from_key_names() {
        assert_eq!(unit_of("machine.nic_slot.flight_ps"), "ps");
        assert_eq!(
            unit_of("machine.fabric.root_complex.dram_bytes_per_s"),
            "B/s"
        );
        assert_eq!(unit_of("nic.packetized.rx_buffer_bytes"), "B");
        assert_eq!(unit_of("machine.caches.l1d.ways"), "");
    }
}
