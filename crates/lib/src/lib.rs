//! nextio's user-space libraries.
//!
//! * [`runtime`] — an Aspen/Caladan-like user-level thread runtime: user
//!   threads on a kernel thread pinned to a core, a FIFO run queue, and
//!   preemption by a chosen source (none, interval-timer signals, UIPIs from
//!   a dedicated timer core with flush or tracked delivery, the xUI
//!   KB_Timer, compiler-inserted polling, or hardware safepoints).

pub mod runtime;

pub use runtime::{Completion, Job, Preemption, Runtime, RuntimeConfig, RuntimeError};
