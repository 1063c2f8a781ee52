//! The Lauberhorn NIC's register page (BAR 0): how the kernel pushes
//! scheduling state to the NIC and reads its load information (§6).
//! Writes are 4-byte little-endian words.
//!
//! * `CORE_CTRL(c)`: `ONLINE` — core `c` joins the RPC pool (its kernel
//!   dispatch thread is about to poll); `PREEMPT` — the kernel wants the
//!   core: the NIC interrupts it and answers its held load with YIELDNOW;
//!   `OFFLINE` — the core leaves the pool.
//! * `RUNNING(c)`: slot + 1 of the process the kernel runs on core `c`
//!   (0: none), written at every switch.
//! * `QUEUED(s)` (read): requests waiting for process slot `s`.

/// Bytes of BAR 0.
pub const BAR0_BYTES: u64 = 4096;
/// Per-core control words.
pub const CORE_CTRL_BASE: u64 = 0x100;
/// Which process runs on each core.
pub const RUNNING_BASE: u64 = 0x800;
/// Per-slot queue lengths (read).
pub const QUEUED_BASE: u64 = 0x400;
/// Register stride.
pub const STRIDE: u64 = 8;
/// The most cores the page has words for.
pub const MAX_CORES: usize = ((QUEUED_BASE - CORE_CTRL_BASE) / STRIDE) as usize;

pub const ONLINE: u32 = 1;
pub const PREEMPT: u32 = 2;
pub const OFFLINE: u32 = 3;

pub fn core_ctrl(core: usize) -> u64 {
    CORE_CTRL_BASE + core as u64 * STRIDE
}
pub fn running(core: usize) -> u64 {
    RUNNING_BASE + core as u64 * STRIDE
}
pub fn queued(slot: usize) -> u64 {
    QUEUED_BASE + slot as u64 * STRIDE
}
