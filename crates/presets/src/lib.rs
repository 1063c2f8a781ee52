//! Named host presets: every primitive cost and size of a host — its
//! machine, fabric, NICs, kernel, runtime, drivers and applications — as
//! one TOML document shipped with nextio (`presets/*.toml`, embedded here
//! so the binary is self-contained), each value beside its source.
//!
//! A preset file holds `name`, `description`, optionally `base` (the preset
//! it derives from) and sections of values. The comment block directly
//! above a value is its source and starts with `source:` (a paper and
//! section, a datasheet, a specification, a measurement described) or
//! `assumption:` (with the reason); the files are the one place a source
//! lives. A preset with a `base` states only what differs from it, so a
//! value and its source are written once.
//!
//! A [`Tree`] is a resolved preset: the values of its whole `base` chain
//! with the overrides applied, and for every value where it came from.
//! Model crates deserialize the sections they own ([`Tree::section`]);
//! callers override values by dotted path ([`Tree::set`]) or with a partial
//! document ([`Tree::overlay`]). What a run lays over the shipped presets
//! (`--config`, `--set`) is [`Layers`], installed once per process before
//! any model reads a value ([`install`]).
//!
//! Only `machine.*` differs between presets: a host's machine is read
//! from the preset it is built as, every other section (fabric devices
//! outside the host, kernel, runtime, drivers, applications) from the
//! root, so a preset that changed one would change nothing (tested).
//!
//! Invariants: an override can only replace a value that exists, with a
//! value of the same TOML type, so a typo is an error naming the keys that
//! exist instead of a value silently ignored; every shipped preset
//! resolves, and each of its values has a source (tested).

mod emit;
mod layers;
mod source;
mod tree;

pub use layers::{Layers, Section, active, install};
pub use tree::{Leaf, Overlay, Source, Tree, unit_of};

use thiserror::Error;

/// A preset shipped with nextio.
#[derive(Clone, Copy, Debug)]
pub struct Preset {
    pub name: &'static str,
    pub text: &'static str,
}

/// Every shipped preset. The first is the root the others derive from, so
/// it defines every value; the `Default` of a model's configuration is the
/// root's value ([`root`]).
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "skylake-x",
        text: include_str!("../../../presets/skylake-x.toml"),
    },
    Preset {
        name: "enso-testbed",
        text: include_str!("../../../presets/enso-testbed.toml"),
    },
    Preset {
        name: "ice-lake-sp",
        text: include_str!("../../../presets/ice-lake-sp.toml"),
    },
    Preset {
        name: "xui-server",
        text: include_str!("../../../presets/xui-server.toml"),
    },
    Preset {
        name: "enzian",
        text: include_str!("../../../presets/enzian.toml"),
    },
    Preset {
        name: "cxl-server",
        text: include_str!("../../../presets/cxl-server.toml"),
    },
    Preset {
        name: "accio-server",
        text: include_str!("../../../presets/accio-server.toml"),
    },
    Preset {
        name: "accio-prototype",
        text: include_str!("../../../presets/accio-prototype.toml"),
    },
];

/// The names of the shipped presets, in [`PRESETS`] order.
pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

/// Why a preset, a configuration file or an override was refused. Every
/// message is one line fit to print as-is.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PresetError {
    #[error("unknown preset `{name}` (known: {known})")]
    UnknownPreset { name: String, known: String },
    #[error("{label}: {message}")]
    Parse { label: String, message: String },
    #[error("unknown primitive `{path}`: {hint}")]
    UnknownPath { path: String, hint: String },
    #[error("`{path}` is a section, not a value (its keys: {keys})")]
    Section { path: String, keys: String },
    #[error("`{path}` is a value, not a section")]
    NotSection { path: String },
    #[error("primitive `{path}`: {why}")]
    BadValue { path: String, why: String },
    #[error("preset `{0}` derives from itself")]
    Cycle(String),
    #[error(
        "the configuration was fixed already (layers are installed once, before any model reads a value)"
    )]
    AlreadyFixed,
}

/// The shipped preset called `name` under the active [`Layers`] (what
/// the command line laid over it): what a model built "as `name`" uses.
pub fn preset(name: &str) -> Result<&'static Tree, PresetError> {
    layers::layered(name)
}

/// The shipped preset called `name` as shipped, without the active layers.
pub fn shipped(name: &str) -> Result<&'static Tree, PresetError> {
    tree::shipped(name)
}

/// The root preset under the active layers, whose values are the models'
/// defaults.
///
/// Panics only if a shipped preset is broken, which the tests rule out.
pub fn root() -> &'static Tree {
    preset(PRESETS[0].name).expect("the root preset resolves (tested)")
}

/// The root preset's section `path` (under the active layers) as a `T`:
/// what a model's `Default` returns.
///
/// Panics only if a shipped preset does not fit its model's type, which
/// the tests rule out, and [`install`] checks for the layers.
pub fn root_section<T: serde::de::DeserializeOwned>(path: &str) -> T {
    match root().section(path) {
        Ok(v) => v,
        Err(e) => panic!("the root preset's `{path}` does not fit its type (tested): {e}"),
    }
}

/// The root preset's section `$path` as a `$ty`, read once per process
/// and kept: what a model whose costs were constants reads on its hot
/// path (a `&'static $ty`).
#[macro_export]
macro_rules! cached_root_section {
    ($ty:ty, $path:literal) => {{
        static SECTION: ::std::sync::OnceLock<$ty> = ::std::sync::OnceLock::new();
        SECTION.get_or_init(|| $crate::root_section($path))
    }};
}
