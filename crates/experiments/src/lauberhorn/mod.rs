//! The Lauberhorn experiments (Xu & Roscoe, HotOS '25) and the hosts they
//! share: an Enzian (or CXL) server whose NIC sits on the coherent link,
//! with the kernel's Lauberhorn driver and one or more server processes,
//! and the measurements of the Lauberhorn repository (enzian-pio-nic)
//! they are judged against.

pub mod common;

pub mod dynamic;
pub mod large;
pub mod nested;
pub mod rpc_cycles;
pub mod rtt;
pub mod with_xui;
