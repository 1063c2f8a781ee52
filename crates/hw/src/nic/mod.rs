//! Network interface cards behind a PCIe link.
//!
//! * [`packetized`] — an E810-like NIC with descriptor rings and per-packet
//!   buffers (the interface Ensō compares against);
//! * [`enso`] — the Ensō NIC: Ensō Pipes, notification buffers, reactive
//!   notifications.
//!
//! Both take frames from a wire's mailbox, move them into host memory by
//! DMA over a shared [`crate::pcie::PcieLink`] (every TLP attributed to a
//! purpose such as `"packet-data"` or `"descriptor"`), and send frames out
//! on a [`crate::ethernet::Wire`]. Every frame that reaches a NIC ends up
//! delivered to host memory or counted under a `drop.*` reason.

pub mod enso;
pub mod packetized;
