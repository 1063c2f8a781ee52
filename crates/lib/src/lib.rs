//! nextio's user-space software, running as simulated threads on simulated
//! cores: it moves real bytes through simulated memory (every access goes
//! through the cache model via `CoreCtx::load`/`store`) and pays for its
//! instructions with `CoreCtx::cycles`.
//!
//! * [`dpdk`] — a DPDK-style poll-mode driver for the packetized NIC;
//! * [`enso`] — the Ensō library (pipes, notifications) for the Ensō NIC.

pub mod dpdk;
pub mod enso;
