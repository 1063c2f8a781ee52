//! The echo server of the Ensō evaluation (Ensō paper §3.3: receive a
//! packet, increment a byte of its payload, send it back) and the host it
//! runs on, for either NIC interface.
//!
//! Both builders assemble the same kind of host — cores, a memory system
//! (bytes + caches), a PCIe link, a NIC — start one echo thread per core, and
//! hand back an [`EchoSystem`] through which an experiment reads what
//! happened: cache statistics, PCIe bytes by purpose, per-core ledgers, and
//! the NIC's and application's counters. Experiments never reach inside a
//! NIC; everything they report comes from these handles.
//!
//! The echo thread increments the byte at
//! [`nextio_hw::trafficgen::ECHO_BYTE_OFFSET`] of the UDP payload and
//! refreshes the UDP checksum, so the generator can verify every echo.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::Counters;
use nextio_hw::cache::HierarchyConfig;
use nextio_hw::cpu::Core;
use nextio_hw::host::SharedMemory;
use nextio_hw::pcie::{PcieConfig, PcieLink};

pub mod enso;
pub mod packetized;

/// How the Ensō NIC notifies software (Ensō paper §3.2, Figs. 6–7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationMode {
    /// One notification per packet (the paper's baseline).
    PerPacket,
    /// At most one outstanding notification per pipe; a head update re-arms it.
    Reactive,
    /// Reactive, plus software prefetches notifications for pipes it expects.
    Prefetch,
}

/// What every echo host is built from.
#[derive(Clone, Debug)]
pub struct EchoConfig {
    /// Cores running echo threads (one thread, one RX queue or pipe each).
    pub cores: usize,
    pub pcie: PcieConfig,
    pub caches: HierarchyConfig,
    /// Physical memory of the host.
    pub memory_bytes: u64,
    pub seed: u64,
}

/// A running echo host.
pub struct EchoSystem {
    pub memory: SharedMemory,
    pub pcie: Rc<RefCell<PcieLink>>,
    pub cores: Vec<Rc<Core>>,
    /// NIC counters: `rx_frames`, `tx_frames`, and `drop.*` by reason.
    pub nic: Rc<RefCell<Counters>>,
    /// Application counters: `echoed`, and anything else the app counts.
    pub app: Rc<RefCell<Counters>>,
}

#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    #[error("invalid echo configuration: {0}")]
    Config(String),
}
