//! The primitive costs a run uses: every preset section a model reads,
//! the layers a run lays over the shipped presets (`--config`, dotted
//! `--set` paths), how `--describe` lists them, and how a result records
//! what was changed.
//!
//! Invariants: a run's layers are checked against every section of every
//! model before they are fixed, so a bad path or value is a one-line error
//! before anything is built; a result produced under changed primitives
//! says which, with the value it replaced, in its `inputs` and notes; a
//! result under the shipped presets carries nothing extra.

use nextio_presets::{Layers, Overlay, PresetError, Section, Tree, unit_of};
use serde_json::{Map, Value, json};

use crate::accio::dpdk_multiprocess::MultiprocessCosts;
use crate::experiment::{Experiment, RunContext};
use crate::lauberhorn::common::BenchCosts;
use crate::nagare::cpu_push::CpuPushCosts;
use crate::udma_pollution::PollutionCosts;
use crate::xui_dsa::OffloadClientCosts;
use crate::xui_l3fwd::L3fwdCosts;

/// The sections the experiments read themselves (the applications they
/// build from their own parts).
const OWN: &[Section] = &[
    Section::of::<L3fwdCosts>("apps.l3fwd"),
    Section::of::<OffloadClientCosts>("apps.offload_client"),
    Section::of::<BenchCosts>("apps.lauberhorn_bench"),
    Section::of::<MultiprocessCosts>("apps.dpdk_multiprocess"),
    Section::of::<CpuPushCosts>("apps.nagare_cpu_push"),
    Section::of::<PollutionCosts>("apps.udma_pollution"),
];

/// Every section any model reads, with the type it must fit.
pub fn sections() -> Vec<Section> {
    [
        nextio_hw::primitives::SECTIONS,
        nextio_os::primitives::SECTIONS,
        nextio_lib::primitives::SECTIONS,
        nextio_apps::primitives::SECTIONS,
        OWN,
    ]
    .concat()
}

/// Lay `config` (a file's text and its path) and `sets` (`PATH=VALUE`)
/// over the shipped presets for the rest of the process.
pub fn install(config: Option<(&str, &str)>, sets: &[String]) -> Result<(), PresetError> {
    let config = match config {
        Some((text, label)) => Some(Overlay::parse(text, label)?),
        None => None,
    };
    let mut pairs = Vec::new();
    for s in sets {
        let Some((path, value)) = s.split_once('=') else {
            return Err(PresetError::BadValue {
                path: s.clone(),
                why: "expected PATH=VALUE".into(),
            });
        };
        pairs.push((path.trim().to_string(), value.to_string()));
    }
    nextio_presets::install(
        Layers {
            config,
            sets: pairs,
        },
        &sections(),
    )
}

/// Whether a `--set` key names a primitive (a dotted preset path) rather
/// than an experiment parameter (parameter names have no dots).
pub fn is_primitive_path(assignment: &str) -> bool {
    assignment
        .split_once('=')
        .map_or(assignment, |(k, _)| k)
        .contains('.')
}

/// The resolved configuration `exp` builds its host from.
fn tree_of(exp: &dyn Experiment) -> Result<&'static Tree, PresetError> {
    nextio_presets::preset(exp.host())
}

/// `--describe`'s list of primitives: every value of the host `exp` is
/// built as, with its unit and source.
pub fn describe(exp: &dyn Experiment) -> String {
    let tree = match tree_of(exp) {
        Ok(t) => t,
        Err(e) => return format!("\nPrimitives: unavailable ({e})\n"),
    };
    let mut s = format!(
        "\nPrimitives of host preset `{}` (--set PATH=VALUE, --config FILE.toml; `nextio presets` lists hosts):\n",
        tree.name()
    );
    for leaf in tree.leaves() {
        let unit = unit_of(&leaf.path);
        let value = if unit.is_empty() {
            leaf.value.to_string()
        } else {
            format!("{} {unit}", leaf.value)
        };
        let source = leaf.source.map(|s| s.text.as_str()).unwrap_or("");
        let from = leaf
            .source
            .filter(|s| s.from != tree.name())
            .map(|s| format!(" [from {}]", s.from))
            .unwrap_or_default();
        s.push_str(&format!(
            "  {} = {value}{from}\n      {source}\n",
            leaf.path
        ));
    }
    for other in exp.other_hosts() {
        s.push_str(&other_host(tree, other));
    }
    s
}

/// Where the machine of preset `name`, which an experiment also builds,
/// differs from `primary`'s.
fn other_host(primary: &Tree, name: &str) -> String {
    let tree = match nextio_presets::preset(name) {
        Ok(t) => t,
        Err(e) => return format!("\nPrimitives of `{name}`: unavailable ({e})\n"),
    };
    let mut s = format!(
        "\nIt also builds machines as host preset `{name}`, which differs from `{}` in:\n",
        primary.name()
    );
    for (path, value, _) in tree.differences(primary) {
        if !path.starts_with("machine.") {
            continue;
        }
        let unit = unit_of(&path);
        let source = tree.source(&path).map(|s| s.text.as_str()).unwrap_or("");
        s.push_str(&format!("  {path} = {value} {unit}\n      {source}\n"));
    }
    s
}

/// The values of `exp`'s host that the layers changed: (path, value, the
/// shipped value, who set it).
fn changes(exp: &dyn Experiment) -> Vec<(String, Value, Option<Value>, String)> {
    if nextio_presets::active().is_empty() {
        return Vec::new();
    }
    let (Ok(now), Ok(shipped)) = (tree_of(exp), nextio_presets::shipped(exp.host())) else {
        return Vec::new();
    };
    now.differences(shipped)
        .into_iter()
        .map(|(path, value, was)| {
            let from = now
                .source(&path)
                .map(|s| s.from.clone())
                .unwrap_or_default();
            (path, to_json(&value), was.as_ref().map(to_json), from)
        })
        .collect()
}

/// Record in `ctx` (the result's `inputs` and notes) every primitive the
/// layers changed for `exp`'s host; nothing when none did.
pub fn record_changes(exp: &dyn Experiment, ctx: &RunContext) {
    let changes = changes(exp);
    if changes.is_empty() {
        return;
    }
    let mut map = Map::new();
    let mut words = Vec::new();
    for (path, value, was, from) in changes {
        let shown = match &was {
            Some(w) => format!("{path} = {value} (shipped {w}, from {from})"),
            None => format!("{path} = {value} (from {from})"),
        };
        words.push(shown);
        map.insert(
            path,
            json!({ "value": value, "shipped": was, "from": from }),
        );
    }
    ctx.record_input(
        "primitives",
        json!({ "host": exp.host(), "changed": map }),
        format!(
            "Primitives changed from the shipped `{}` preset: {}.",
            exp.host(),
            words.join("; ")
        ),
    );
}

fn to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => json!(f),
        toml::Value::Boolean(b) => json!(b),
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_of_every_preset_is_read_by_a_model_that_accepts_it() {
        let sections = sections();
        for p in nextio_presets::PRESETS {
            let tree = nextio_presets::shipped(p.name).unwrap();
            for s in &sections {
                s.fits(tree).unwrap_or_else(|e| panic!("{}: {e}", p.name));
            }
            for leaf in tree.leaves() {
                assert!(
                    sections
                        .iter()
                        .any(|s| leaf.path.starts_with(&format!("{}.", s.path))),
                    "{}: `{}` is read by no model",
                    p.name,
                    leaf.path
                );
            }
        }
    }

    #[test]
    fn dotted_keys_are_primitives_and_plain_ones_parameters() {
        assert!(is_primitive_path("machine.nic_slot.lanes=8"));
        assert!(!is_primitive_path("frame_bytes=64"));
        assert!(!is_primitive_path("rate=0.5"));
    }
}
