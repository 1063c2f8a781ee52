//! Accio's CPU-side hardware (Nazari, Manohar, Soulé, NINeS '26, §4): the
//! I/O Connection Table — per core, 64 rows by default, each holding a
//! connection's 5-tuple, owner (address space, accelerated-thread bit,
//! priority, thread), direction, ring addresses and sizes, read and write
//! pointers and state bits — with its hardware ready queue, its
//! prioritised I/O interrupt and its control event queue; and the byte
//! layout of the per-connection rings the NIC and the user library share.
//!
//! * [`regs`] — the register map, shared by the table, the NIC, the OS
//!   and the library;
//! * [`table`] — the table's state and the rules of every access;
//! * [`ict`] — the table as a device on the fabric, and the cores'
//!   protection check of its BAR;
//! * [`ring`] — the rings' record layout.
//!
//! The NIC side (the UDP offload engine) is [`crate::nic::accio`].

pub mod ict;
pub mod regs;
pub mod ring;
pub mod table;

pub use ict::{Ict, IctConfig, IctError, IctGuard};
pub use regs::{Event, EventKind};
