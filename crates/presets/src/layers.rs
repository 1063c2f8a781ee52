//! The configuration a process runs under: the shipped presets with what
//! the command line lays over them — a `--config` file, then `--set`
//! values — fixed once, before any model reads a value.
//!
//! Models read their primitives where they are built (a `Default` reads
//! [`crate::root_section`], a machine reads [`crate::preset`]), so the
//! layers are process-wide rather than threaded through every
//! constructor; they are installed at most once, and never after the
//! first read, so every value one run sees comes from the same layers.
//!
//! Invariants: installed layers resolve over every shipped preset and
//! every section fits its model's type ([`install`] checks both before it
//! fixes them), so a bad override is refused up front with its path and a
//! model never meets a value it cannot take.

use std::sync::OnceLock;

use serde::de::DeserializeOwned;

use crate::tree::{Overlay, Tree};
use crate::{PRESETS, PresetError};

/// What a run lays over the shipped presets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layers {
    /// A configuration file: laid over the preset a model asks for, or
    /// over its own `base` instead.
    pub config: Option<Overlay>,
    /// `--set PATH=VALUE` assignments, in order, after the file.
    pub sets: Vec<(String, String)>,
}

impl Layers {
    /// Whether the layers change nothing.
    pub fn is_empty(&self) -> bool {
        self.config
            .as_ref()
            .is_none_or(|c| c.is_empty() && c.base.is_none())
            && self.sets.is_empty()
    }

    /// `tree` (a shipped preset) with the layers laid over it.
    pub fn apply(&self, tree: &Tree) -> Result<Tree, PresetError> {
        let mut out = match self.config.as_ref().and_then(|c| c.base.as_deref()) {
            Some(base) => crate::tree::shipped(base)?.clone(),
            None => tree.clone(),
        };
        if let Some(config) = &self.config {
            out.overlay(config)?;
        }
        for (path, raw) in &self.sets {
            out.set(path, raw, "--set")?;
        }
        Ok(out)
    }
}

/// A section a model reads, with the check that it fits the model's type.
#[derive(Clone, Copy, Debug)]
pub struct Section {
    pub path: &'static str,
    pub check: fn(&Tree, &str) -> Result<(), PresetError>,
}

impl Section {
    /// Section `path`, read as a `T`.
    pub const fn of<T: DeserializeOwned>(path: &'static str) -> Section {
        Section {
            path,
            check: fits::<T>,
        }
    }
    /// Whether `tree`'s section fits.
    pub fn fits(&self, tree: &Tree) -> Result<(), PresetError> {
        (self.check)(tree, self.path)
    }
}

fn fits<T: DeserializeOwned>(tree: &Tree, path: &str) -> Result<(), PresetError> {
    tree.section::<T>(path).map(drop)
}

static ACTIVE: OnceLock<Layers> = OnceLock::new();

/// Fix the layers of this process, once they resolve over every shipped
/// preset and every one of `sections` fits. Refused if layers were fixed
/// already, or a model read a value before (it would have seen none).
pub fn install(layers: Layers, sections: &[Section]) -> Result<(), PresetError> {
    for p in PRESETS {
        let tree = layers.apply(crate::tree::shipped(p.name)?)?;
        for s in sections {
            s.fits(&tree)?;
        }
    }
    ACTIVE.set(layers).map_err(|_| PresetError::AlreadyFixed)
}

/// The layers in force (none unless [`install`]ed).
pub fn active() -> &'static Layers {
    ACTIVE.get_or_init(Layers::default)
}

/// Shipped preset `name` under the active layers (resolved once).
pub(crate) fn layered(name: &str) -> Result<&'static Tree, PresetError> {
    static TREES: OnceLock<Vec<Result<Tree, PresetError>>> = OnceLock::new();
    let trees = TREES.get_or_init(|| {
        PRESETS
            .iter()
            .map(|p| crate::tree::shipped(p.name).and_then(|t| active().apply(t)))
            .collect()
    });
    match PRESETS.iter().position(|p| p.name == name) {
        Some(i) => trees[i].as_ref().map_err(Clone::clone),
        None => crate::tree::shipped(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_file_then_sets_and_refuse_what_does_not_exist() {
        let root = crate::tree::shipped("skylake-x").unwrap();
        let file = Overlay::parse(
            "[machine.nic_slot]\n# source: my board\nflight_ps = 300000\n",
            "mine.toml",
        )
        .unwrap();
        let layers = Layers {
            config: Some(file),
            sets: vec![("machine.nic_slot.lanes".into(), "8".into())],
        };
        assert!(!layers.is_empty());
        let t = layers.apply(root).unwrap();
        assert_eq!(
            t.get("machine.nic_slot.flight_ps").unwrap().as_integer(),
            Some(300_000)
        );
        assert_eq!(
            t.get("machine.nic_slot.lanes").unwrap().as_integer(),
            Some(8)
        );
        assert_eq!(
            t.source("machine.nic_slot.flight_ps").unwrap().text,
            "source: my board"
        );
        assert_eq!(t.source("machine.nic_slot.lanes").unwrap().from, "--set");
        let bad = Layers {
            config: None,
            sets: vec![("machine.nic_slot.lane".into(), "8".into())],
        };
        assert!(matches!(
            bad.apply(root),
            Err(PresetError::UnknownPath { .. })
        ));
    }

    #[test]
    fn a_base_replaces_the_preset_asked_for() {
        let file = Overlay::parse("base = \"xui-server\"\n", "mine.toml").unwrap();
        let layers = Layers {
            config: Some(file),
            sets: Vec::new(),
        };
        let t = layers
            .apply(crate::tree::shipped("skylake-x").unwrap())
            .unwrap();
        assert_eq!(
            t.get("machine.caches.core_clock_hz").unwrap().as_integer(),
            Some(2_000_000_000)
        );
    }

    #[test]
    fn install_checks_sections_before_fixing() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Slot {
            lanes: u8,
        }
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Machine {
            nic_slot: Slot,
        }
        // Only the one field read: unknown fields are the model's concern.
        let sections = [Section::of::<Machine>("machine")];
        let bad = Layers {
            config: None,
            sets: vec![("machine.nic_slot.lanes".into(), "300".into())],
        };
        let e = install(bad, &sections).unwrap_err();
        assert!(
            matches!(&e, PresetError::BadValue { path, .. } if path == "machine.nic_slot.lanes"),
            "{e}"
        );
        // The refused layers were not fixed.
        assert!(active().is_empty());
    }
}
