//! Network interface cards, as devices of a host's fabric.
//!
//! * [`enso`] — the Ensō NIC: Ensō Pipes, notification buffers, reactive
//!   notifications.
//!
//! A NIC takes frames from its Ethernet port, moves them into host memory
//! by DMA through the fabric (every TLP attributed to a purpose such as
//! `"packet-data"` or `"notification"`), and sends frames out on its port.
//! Every frame that reaches a NIC ends up delivered to host memory or
//! counted under a `drop.*` reason.

pub mod enso;
