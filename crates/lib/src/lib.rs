//! nextio's user-space software, running as simulated threads on simulated
//! cores: it moves real bytes through simulated memory (every access goes
//! through the cache model via `CoreCtx::load`/`store`) and pays for its
//! instructions with `CoreCtx::cycles`.
//!
//! * [`accio`] — Accio's POSIX-shaped socket library: `send`/`recv` on the
//!   connection's ring and its row in the I/O Connection Table, one
//!   blocking call when a ring is empty or full;
//! * [`dpdk`] — a DPDK-style poll-mode driver for the packetized NIC;
//! * [`enso`] — the Ensō library (pipes, notifications) for the Ensō NIC;
//! * [`cmdq`] — the driver of a QAT-like command-queue accelerator;
//! * [`nagare`] — Nagare's control library: policy graphs set up once by
//!   MMIO configuration of the switch, CPU push and copy, the error log;
//! * [`rdma`] — a verbs library (UD queue pairs: `post_send`, `post_recv`,
//!   `poll_cq`) for the RDMA NIC, no system call on the fast path;
//! * [`shm_fifo`] — a packet FIFO in shared memory between processes (DPDK's
//!   multi-process sharing of one NIC);
//! * [`runtime`] — an Aspen/Caladan-like user-level thread runtime: user
//!   threads on kernel threads pinned to one or more worker cores, a FIFO
//!   run queue per core with optional work stealing, and preemption by a
//!   chosen source (none, interval-timer signals, UIPIs from
//!   a dedicated timer core with flush or tracked delivery, the xUI
//!   KB_Timer, compiler-inserted polling, or hardware safepoints).
//! * [`udma`] — the user library of the user-space DMA engine (portal
//!   submission without system calls, batches, polling) and its
//!   baselines: CPU copies through the cache model and the
//!   kernel-mediated path.
//! * [`primitives`] — the preset sections the libraries read their costs
//!   from.

pub mod accio;
pub mod cmdq;
pub mod dpdk;
pub mod enso;
pub mod lauberhorn;
pub mod nagare;
pub mod primitives;
pub mod rdma;
pub mod runtime;
pub mod shm_fifo;
pub mod udma;

pub use runtime::{Completion, Job, Preemption, Runtime, RuntimeConfig, RuntimeError};
