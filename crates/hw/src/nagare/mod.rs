//! Nagare (thesis §4): a programmable host interconnect that routes
//! streams between devices by policy, the CPU only setting streams up.
//!
//! * [`pipeline`] — the RMT-like match-action pipeline every TLP through a
//!   programmable switch traverses: its timing (stages × cycles at the
//!   switch clock, per stage, per ingress port) and its program;
//! * [`layout`] — the byte formats shared with devices and the CPU's
//!   library: message headers, configuration entries, the error log, the
//!   push command;
//! * [`stream`] — the stream table and per-stream registers;
//! * [`frame`] — the parser and deparser for the NIC's frames;
//! * [`engine`] — the dataplane as the switch's own function: stream
//!   windows, policy-graph hops, access rules, CPU push and copy;
//! * [`adapter`] — driving unmodified command-queue devices (and an Ensō
//!   NIC's TX ring) from the switch.
//!
//! The switch itself is a fabric switch with pipelines
//! ([`crate::fabric::Fabric::add_programmable_switch`]); the dataplane is
//! attached as its function
//! ([`crate::fabric::Fabric::attach_switch_function`]).

mod adapter;
pub mod engine;
pub mod frame;
pub mod layout;
pub mod pipeline;
pub mod stream;

pub use engine::{NagareConfig, NagareError, NagareSwitch};
pub use pipeline::{Pipeline, PipelineConfig, PipelineError, Program};
