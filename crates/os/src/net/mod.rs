//! The kernel's UDP/IPv4 network stack, in Linux's shape, reusable by any
//! design that needs an ordinary kernel path (the Linux baseline, Accio's
//! fallback and unmatched traffic, Lauberhorn's comparison).
//!
//! Receive: the NIC writes a frame and its descriptor, interrupts; the
//! hard IRQ schedules NAPI; the softirq polls the ring ([`ice`]), hands
//! each frame to IP and UDP, which find the socket ([`udp`]) and queue
//! the skb ([`skb`]); a reader blocked in `recvfrom` is woken, switched
//! in when the core is free, copies the payload to user memory and
//! returns. Send: `sendto` copies the payload into an skb, IP builds the
//! headers, the qdisc (pfifo_fast) passes it to the driver, which posts a
//! descriptor and rings the doorbell; completions are cleaned by the next
//! poll or when the ring runs low.
//!
//! Timing: every descriptor, header and payload access is a
//! cache-modelled load or store on the core that makes it, every doorbell
//! and re-arm an MMIO write, the NIC and fabric time their part, and the
//! instructions between are [`LinuxNetCosts`] — one cost per mechanism,
//! each with its source. Threads block and run through the OS's
//! dispatcher, so wake-up latency and context switches happen as events.
//! The kernel timestamps each datagram where Accio's Table 1 divides the
//! receive path ([`skb::RxStamps`]).
//!
//! Invariants (tested): every frame the driver takes from the ring ends
//! on a socket's queue or under one `drop.*` counter; every queued
//! datagram is received exactly once or freed at close; every skb buffer
//! is in exactly one place ([`skb`]).

pub mod costs;
pub mod host;
pub mod ice;
pub mod skb;
pub mod stack;
pub mod udp;

pub use costs::LinuxNetCosts;
pub use host::LinuxHost;
pub use ice::{IceConfig, IceDriver, PacketizedQueues};
pub use skb::{RxStamps, SKB_BUFFER_BYTES};
pub use stack::{Datagram, NetConfig, NetStack};
pub use udp::{Fd, SocketId};

use nextio_hw::cpu::MmioAccessError;
use nextio_hw::mem::AccessError;
use nextio_hw::nic::packetized::NicError;
use thiserror::Error;

use crate::kernel::OsError;

/// What a network system call or the stack's set-up can fail with.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum NetError {
    #[error("EBADF: descriptor {0:?} is not an open socket of this process")]
    BadFd(Fd),
    #[error("EADDRINUSE: port {0}")]
    AddrInUse(u16),
    #[error("EAGAIN: nothing to receive")]
    WouldBlock,
    #[error("EDESTADDRREQ: no destination for an unconnected socket")]
    NoDestination,
    #[error("EHOSTUNREACH: no neighbour entry for {0}")]
    HostUnreachable(std::net::Ipv4Addr),
    #[error("EMSGSIZE: {0} B does not fit one frame")]
    TooLong(usize),
    #[error("ENOBUFS: no socket buffer")]
    NoBuffers,
    #[error("EINVAL: {0}")]
    Invalid(String),
    #[error("invalid network configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Mmio(#[from] MmioAccessError),
    #[error(transparent)]
    Os(#[from] OsError),
    #[error(transparent)]
    Nic(#[from] NicError),
}
