//! The echo server of the Ensō evaluation (Ensō paper §3.3: receive a
//! packet, increment a byte of its payload, send it back) and the host it
//! runs on, for either NIC interface.
//!
//! Both builders make the same kind of host from a machine preset — one
//! kernel, the NIC in the machine's NIC slot, one echo process with one
//! thread per core — and hand back an [`EchoSystem`] through which an
//! experiment wires the NIC's port and reads what happened: cache
//! statistics, PCIe bytes by purpose, per-core ledgers, and the NIC's and
//! application's counters. Experiments never reach inside a NIC.
//!
//! The echo thread increments the byte at
//! [`nextio_hw::trafficgen::ECHO_BYTE_OFFSET`] of the UDP payload and
//! refreshes the UDP checksum, so the generator can verify every echo.
//!
//! A host is [`EchoSystem::ready`] once every echo thread has handed its
//! receive rings to the NIC; a frame offered before then finds its queue
//! without descriptors and is dropped, so benches start traffic only then.

use std::cell::{Cell, RefCell};
use std::num::{NonZeroU64, NonZeroUsize};
use std::rc::Rc;

use nextio_engine::{Counters, Notify, Sim};
use nextio_hw::cache::CoreStats;
use nextio_hw::cpu::Core;
use nextio_hw::device::DeviceId;
use nextio_hw::machine::MachineSpec;
use nextio_hw::pcie::DirectionCounters;
use nextio_os::Host;
use serde::{Deserialize, Serialize};

pub mod enso;
pub mod packetized;

/// The echo application's primitives: a preset's `[apps.echo]`, where
/// each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoCosts {
    /// Its own instructions per packet, the same on both interfaces (check
    /// the header, increment the payload byte, queue the packet for
    /// transmission); memory accesses are cache-costed separately.
    pub packet_cycles: u64,
    /// Patching the UDP checksum in software after the increment (RFC 1624
    /// incremental update). Only the Ensō echo pays it: the E810 computes
    /// TX checksums in hardware, the Ensō NIC has no such offload.
    pub checksum_patch_cycles: u64,
    /// Most bytes the Ensō echo takes from a pipe per batch, so the NIC
    /// sends one batch (and software frees it) while the next is processed.
    pub enso_batch_bytes: NonZeroU64,
    /// Packets the packetized echo asks for per `rx_burst`.
    pub rx_burst: NonZeroUsize,
}

/// The root preset's echo application (read once per process).
pub fn costs() -> &'static EchoCosts {
    nextio_presets::cached_root_section!(EchoCosts, "apps.echo")
}

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
    /// The machine, with one core per echo thread (one thread, one RX
    /// queue or pipe each); its NIC slot is the NIC's PCIe link.
    pub machine: MachineSpec,
    pub seed: u64,
}

impl EchoConfig {
    pub fn cores(&self) -> usize {
        self.machine.cores
    }
}

/// Counts down the echo threads still setting up their receive rings.
pub struct Readiness {
    pending: Cell<usize>,
    notify: Notify,
}

impl Readiness {
    /// Readiness of `threads` threads, none of them ready yet.
    pub fn new(sim: &Sim, threads: usize) -> Rc<Readiness> {
        Rc::new(Readiness {
            pending: Cell::new(threads),
            notify: Notify::new(sim),
        })
    }
    /// One thread's receive rings are now the NIC's.
    pub fn thread_ready(&self) {
        self.pending.set(self.pending.get().saturating_sub(1));
        if self.pending.get() == 0 {
            self.notify.notify();
        }
    }
    /// Whether every thread's rings are the NIC's.
    pub fn is_ready(&self) -> bool {
        self.pending.get() == 0
    }
    /// Wait until [`Readiness::is_ready`].
    pub async fn wait(&self) {
        while !self.is_ready() {
            self.notify.notified().await;
        }
    }
}

/// A running echo host.
pub struct EchoSystem {
    pub host: Host,
    /// The NIC, a device of the host's fabric (its port is for the caller
    /// to wire).
    pub nic: DeviceId,
    nic_counters: Box<dyn Fn() -> Counters>,
    /// Application counters: `echoed`, and anything else the app counts.
    pub app: Rc<RefCell<Counters>>,
    /// Whether the drivers have handed their rings to the NIC (a thread
    /// that fails to start never becomes ready and counts `error`).
    pub ready: Rc<Readiness>,
}

impl EchoSystem {
    /// NIC counters: `rx_frames`, `tx_frames`, and `drop.*` by reason.
    pub fn nic_counters(&self) -> Counters {
        (self.nic_counters)()
    }
    /// What the NIC's PCIe link carried, upstream and downstream.
    pub fn link_counters(&self) -> (DirectionCounters, DirectionCounters) {
        self.host
            .machine()
            .fabric()
            .link_counters(self.nic)
            .unwrap_or_default()
    }
    /// Cache statistics summed over every core (each runs an echo thread).
    pub fn cache_stats(&self) -> CoreStats {
        self.host.machine().memory().borrow().caches.total_stats()
    }
    pub fn cores(&self) -> &[Rc<Core>] {
        self.host.machine().cores()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    #[error("invalid echo configuration: {0}")]
    Config(String),
}

fn config_error(e: impl std::fmt::Display) -> EchoError {
    EchoError::Config(e.to_string())
}
