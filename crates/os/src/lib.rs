//! nextio's operating-system model.
//!
//! * [`costs`] — the primitive costs of kernel paths (system call, context
//!   switch, signal delivery, timer interrupts), each with its source;
//! * [`kernel`] — processes with address spaces, threads, per-core run
//!   queues and the scheduler, signals, interval timers, `nanosleep`,
//!   futexes, and the system calls that set up user interrupts (UIPI and
//!   xUI) with their permission checks and the context-switch work that
//!   keeps user-interrupt state per thread (SN, NDST, KB_Timer save and
//!   restore, forwarded vectors, reposting on resume).
//!
//! * [`host`] — a host: one machine and its one kernel, the processes and
//!   threads on it, and the interrupt path from devices to the kernel.
//! * [`udma`] — the driver of the user-space DMA engine: PASID binding,
//!   portals, capabilities, and the kernel-mediated (pinning) path.
//! * [`sched`] — timed dispatch of threads on cores (blocking, wake-ups,
//!   context switches, hooks for hardware ready queues);
//! * [`irq`] — interrupt context: kernel handlers for device vectors;
//! * [`kmem`] — kernel DMA memory and register mappings;
//! * [`accio`] — Accio's kernel part: accelerate, the wait call, the miss
//!   handler, the table's interrupts and scheduler hook, fallback and
//!   return, migration and release of rows;
//! * [`net`] — the kernel's UDP/IPv4 stack in Linux's shape (NAPI,
//!   sockets, qdisc, an ice-like driver), reusable by every design that
//!   needs an ordinary kernel path;
//! * [`primitives`] — the preset sections the OS reads its costs from.
//!
//! The kernel is a functional state machine: it says *what* happens and
//! *what it costs* in cycles; the layers above decide *when*, on simulated
//! cores.

pub mod accio;
pub mod costs;
pub mod host;
pub mod irq;
pub mod kernel;
pub mod kmem;
pub mod lauberhorn;
pub mod net;
pub mod primitives;
pub mod rdma;
pub mod sched;
pub mod udma;

pub use costs::OsCosts;
pub use host::{Host, HostError, InterruptEvent, Process, Thread};
pub use irq::{Interrupts, IrqHandler};
pub use kernel::{Delivery, DeliveryPath, DmaBuffer, Kernel, OsError, Pid, ThreadState, Tid};
pub use sched::{Dispatcher, SchedHook};
pub use udma::{Portal, UdmaCosts, UdmaDriver};
