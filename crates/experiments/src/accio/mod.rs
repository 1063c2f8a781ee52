//! The Accio experiments (Nazari, Manohar, Soulé, NINeS '26): the Linux
//! baseline's breakdown (Table 1), latency against message size (Fig. 6),
//! CPU use against server slowdown (Fig. 7), connection multiplexing
//! (Fig. 8), the sink's throughput (§8.4), DPDK's multi-process sharing
//! (Fig. 1), and three beyond the paper: connection-table pressure, a
//! link flap, and Accio in front of Ensō-style streaming rings.
//!
//! [`common`] holds the testbed's hosts, the NIC timestamp taps and the
//! check helper every one of them uses.

pub mod common;
pub mod cpu;
pub mod dpdk_multiprocess;
pub mod fallback;
pub mod ict_pressure;
pub mod latency;
pub mod linux_breakdown;
pub mod multi;
pub mod multiplex;
pub mod pingpong;
pub mod rdma;
pub mod throughput;
pub mod with_enso;
