//! nextio's hardware models. Each is a functional model (it moves real
//! bytes) and a timing model (it says when), written as a state machine that
//! is handed `now` and answers with times; none reads a wall clock.
//!
//! * [`ethernet`] — a full-duplex Ethernet link with a bounded queue;
//! * [`packet`] — real Ethernet/IPv4/UDP frames, built and parsed;
//! * [`pcap`] — nanosecond pcap capture of a link's wire traffic;
//! * [`pcie`] — a PCIe link at transaction-layer granularity;
//! * [`mem`] — physical memory holding real bytes, address spaces;
//! * [`cache`] — a set-associative cache hierarchy with DDIO;
//! * [`host`] — memory + caches as one system, loads/stores from cores, DMA;
//! * [`trafficgen`] — an EnsōGen-like generator and checker at a link's far end;
//! * [`nic`] — the packetized and Ensō NICs;
//! * [`cpu`] — cores, their time ledgers and the cost interface software uses;
//! * [`interrupt`] — local APIC, UIPI and xUI user interrupts, delivery
//!   strategies, the KB_Timer and a DSA-like accelerator;
//! * [`accio`] — Accio's I/O Connection Table, its ready queue, prioritised
//!   interrupt and control events, and the per-connection ring layout;
//! * [`primitives`] — the preset sections these models read their primitive
//!   costs from.

pub mod accel;
pub mod accio;
pub mod cache;
pub mod coherent;
pub mod cpu;
pub mod device;
pub mod devices;
pub mod ethernet;
pub mod fabric;
pub mod interrupt;
pub mod layout;
pub mod machine;
pub mod mem;
pub mod memory;
pub mod nagare;
pub mod nic;
pub mod oncrpc;
pub mod packet;
pub mod pcap;
pub mod pcie;
pub mod primitives;
pub mod trafficgen;
