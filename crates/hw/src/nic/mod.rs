//! Network interface cards: devices on a host's fabric with Ethernet ports.
//!
//! * [`enso`] — the Ensō NIC: Ensō Pipes, notification buffers, reactive
//!   notifications;
//! * [`packetized`] — an E810-like NIC with descriptor rings and per-packet
//!   buffers (the interface Ensō compares against);
//! * [`accio`] — Accio's NIC: the packetized NIC for the kernel path and a
//!   UDP offload engine serving accelerated connections through the I/O
//!   Connection Table;
//! * [`rdma`] — an RDMA NIC (ConnectX-5-shaped): verbs queue pairs over
//!   RoCEv2 unreliable datagrams, a cache of queue-pair contexts.
//!
//! A NIC reaches host memory only by DMA through its
//! [`crate::device::DeviceCtx`] (every transfer attributed to a purpose
//! such as `"packet-data"`, `"descriptor"` or `"notification"`), is driven
//! by register writes to its BAR, and sends and receives frames on its
//! ports. Every frame that reaches a NIC ends up delivered to host memory
//! or counted under a `drop.*` reason.

pub mod accio;
pub mod enso;
pub mod lauberhorn;
pub mod packetized;
pub mod rdma;
