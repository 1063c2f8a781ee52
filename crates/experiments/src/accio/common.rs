//! What every Accio experiment shares: the hosts of the paper's testbed
//! (§8.1: the FPGA prototype or a server-class Accio host as client, Xeon
//! servers with E810s running Linux), the wires between them with the
//! NIC timestamps the paper's methodology relies on.
//!
//! Hardware timestamps: the paper reports processing time as the
//! software round trip minus the NIC's (§8.1). A [`Stamps`] tap sits on
//! a wire's receiving end and records, per datagram sequence number (the
//! first 8 payload bytes, big-endian), when its last bit reached the NIC
//! (`rx`) and when its first bit left the sender's MAC (`tx`, the arrival
//! minus the frame's serialisation and the propagation delay, which the
//! wire model fixes exactly).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::rc::Rc;

use nextio_engine::{Duration, Sim, Time};
use nextio_hw::ethernet::{FrameSink, LinkConfig, PER_FRAME_OVERHEAD_BYTES, Wire};
use nextio_hw::machine::MachineSpec;
use nextio_hw::nic::rdma::{ROCE_UDP_PORT, transport};
use nextio_hw::packet::{Frame, parse_udp};
use nextio_os::OsCosts;
use nextio_os::net::{LinuxHost, LinuxNetCosts, NetConfig};

use crate::experiment::RunError;

pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
/// The echo server's port.
pub const ECHO_PORT: u16 = 7000;

/// The message sizes of Fig. 6 (64 B to 1024 B of UDP payload).
pub const FIG6_SIZES: &str = "64,128,256,512,1024";

/// The paper whose claims these experiments judge.
pub const PAPER: &str = "Accio (NINeS '26)";

/// The kernel of Accio's Linux test servers (Table 1): fitted costs, and
/// their context switch in the OS model.
pub fn testbed_os() -> (OsCosts, LinuxNetCosts) {
    (
        OsCosts {
            context_switch_cycles: LinuxNetCosts::accio_testbed_context_switch_cycles(),
            ..OsCosts::default()
        },
        LinuxNetCosts::accio_testbed(),
    )
}

/// One of the Linux test servers of §8.1 at `ip`, with a neighbour entry
/// for `peer`, `cores` cores, its NIC interrupt on core `irq_core`.
pub fn linux_server(
    sim: &Sim,
    ip: Ipv4Addr,
    mac: [u8; 6],
    peer: (Ipv4Addr, [u8; 6]),
    cores: usize,
    irq_core: usize,
) -> Result<LinuxHost, RunError> {
    let (os, costs) = testbed_os();
    let mut net = NetConfig::new(ip, mac, costs);
    net.neighbours.push(peer);
    net.irq_core = irq_core;
    LinuxHost::build(sim, MachineSpec::accio_server(cores), os, net).map_err(cfg)
}

/// A configuration error from anything displayable.
pub fn cfg(e: impl std::fmt::Display) -> RunError {
    RunError::Config(e.to_string())
}

/// Per-sequence-number NIC timestamps of one wire direction.
#[derive(Default)]
pub struct StampLog {
    /// First bit left the sender's MAC.
    pub tx: BTreeMap<u64, Time>,
    /// Last bit reached the receiving NIC.
    pub rx: BTreeMap<u64, Time>,
}

/// A stamp log shared between a tap and the experiment reading it.
pub type SharedStamps = Rc<RefCell<StampLog>>;

/// What a stamped wire carries, so the tap knows where a message's
/// sequence number is. Declared by the experiment, never guessed from a
/// port: an application's UDP port may be RoCEv2's 4791 too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Plain UDP datagrams: the sequence number opens the payload.
    Udp,
    /// RoCEv2 frames (UDP 4791): it opens the message after the
    /// transport headers.
    RoceV2,
}

/// A tap in front of a wire's receiver: timestamps, then delivers.
pub struct Stamps {
    inner: Rc<dyn FrameSink>,
    link: LinkConfig,
    framing: Framing,
    pub log: Rc<RefCell<StampLog>>,
}

impl Stamps {
    pub fn new(inner: Rc<dyn FrameSink>, link: LinkConfig, framing: Framing) -> Stamps {
        Stamps {
            inner,
            link,
            framing,
            log: Rc::new(RefCell::new(StampLog::default())),
        }
    }
}

/// The sequence number of a message: the first 8 bytes of a datagram's
/// payload, or of a RoCEv2 frame's message after its transport headers.
pub fn sequence_of(frame: &[u8], framing: Framing) -> Option<u64> {
    let v = parse_udp(frame).ok()?;
    let at = match framing {
        Framing::RoceV2 if v.flow.dst_port == ROCE_UDP_PORT => transport::message_offset(frame)?,
        Framing::RoceV2 => return None,
        Framing::Udp => v.payload_offset,
    };
    let p = frame.get(at..at + 8)?;
    Some(u64::from_be_bytes(p.try_into().ok()?))
}

impl FrameSink for Stamps {
    fn deliver(&self, at: Time, frame: Frame) {
        if let Some(seq) = sequence_of(&frame.bytes, self.framing) {
            let ser = self
                .link
                .rate
                .duration_for_bytes(frame.frame_bytes() as u64 + PER_FRAME_OVERHEAD_BYTES);
            let start = Time(at.ps().saturating_sub((ser + self.link.propagation).ps()));
            let mut log = self.log.borrow_mut();
            log.rx.entry(seq).or_insert(at);
            log.tx.entry(seq).or_insert(start);
        }
        self.inner.deliver(at, frame);
    }
}

/// Join two hosts' NIC port 0 with timestamping taps at both ends, the
/// wire carrying UDP datagrams. Returns the logs of the wires `a → b` and
/// `b → a`.
pub fn join_stamped(
    a: &nextio_hw::machine::Machine,
    a_dev: nextio_hw::device::DeviceId,
    b: &nextio_hw::machine::Machine,
    b_dev: nextio_hw::device::DeviceId,
    link: LinkConfig,
) -> Result<(SharedStamps, SharedStamps), RunError> {
    join_stamped_as(a, a_dev, b, b_dev, link, Framing::Udp)
}

/// [`join_stamped`] for a wire carrying `framing`.
pub fn join_stamped_as(
    a: &nextio_hw::machine::Machine,
    a_dev: nextio_hw::device::DeviceId,
    b: &nextio_hw::machine::Machine,
    b_dev: nextio_hw::device::DeviceId,
    link: LinkConfig,
    framing: Framing,
) -> Result<(SharedStamps, SharedStamps), RunError> {
    let to_b = Rc::new(Stamps::new(
        b.fabric().port_sink(b_dev, 0).map_err(cfg)?,
        link,
        framing,
    ));
    let to_a = Rc::new(Stamps::new(
        a.fabric().port_sink(a_dev, 0).map_err(cfg)?,
        link,
        framing,
    ));
    let (log_ab, log_ba) = (to_b.log.clone(), to_a.log.clone());
    let a_to_b = Rc::new(Wire::new(a.sim(), link, to_b));
    let b_to_a = Rc::new(Wire::new(b.sim(), link, to_a));
    a.fabric()
        .connect_port(a_dev, 0, a_to_b.clone())
        .map_err(cfg)?;
    b.fabric()
        .connect_port(b_dev, 0, b_to_a.clone())
        .map_err(cfg)?;
    a.name_port(a_dev, 0, &a_to_b, &b_to_a);
    Ok((log_ab, log_ba))
}

/// Mean of `xs` (0 when empty).
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// `d` in microseconds.
pub fn us(d: Duration) -> f64 {
    d.as_us_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextio_hw::packet::{FlowKey, Macs, build_udp};
    use std::net::Ipv4Addr;

    /// A plain datagram to an application that happens to listen on
    /// RoCEv2's port keeps its sequence number where UDP puts it (4096
    /// sockets on ports from 1024 reach 4791).
    #[test]
    fn a_udp_datagram_on_port_4791_is_not_read_as_rocev2() {
        let flow = FlowKey {
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 5000,
            dst_port: ROCE_UDP_PORT,
        };
        let f = build_udp(Macs::default(), flow, &0xeb7u64.to_be_bytes(), 64).unwrap();
        assert_eq!(sequence_of(&f, Framing::Udp), Some(0xeb7));
        assert_eq!(sequence_of(&f, Framing::RoceV2), None, "not a RoCEv2 frame");
    }
}
