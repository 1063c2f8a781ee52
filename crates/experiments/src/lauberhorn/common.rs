//! What the Lauberhorn experiments share: building a server host with the
//! NIC on its coherent link, a process whose channel a benchmark thread
//! drives directly, and the repository's measured values, each with where
//! it comes from.

use std::rc::Rc;

use nextio_engine::Sim;
use nextio_hw::cpu::CoreCtx;
use nextio_hw::machine::MachineSpec;
use nextio_hw::memory::Privilege;
use nextio_hw::nic::lauberhorn::LauberhornConfig;
use nextio_lib::lauberhorn::{RpcServer, RuntimeCosts};
use nextio_os::lauberhorn::{LauberhornOs, LauberhornOsCosts};
use nextio_os::net::{LinuxHost, LinuxNetCosts, NetConfig};
use nextio_os::{Host, OsCosts};

use serde::{Deserialize, Serialize};

use crate::experiment::{RunContext, RunError};
use crate::params::{ParamKind, ParamSpec};

/// The parameters of a closed-loop call benchmark: calls measured per
/// system and calls before measuring.
pub const CALL_PARAMS: [ParamSpec; 2] = [
    ParamSpec::new(
        "requests",
        ParamKind::U64,
        "2000",
        "",
        "calls measured per system",
    )
    .quick("200")
    .int(1, 100_000),
    ParamSpec::new("warmup", ParamKind::U64, "50", "", "calls before measuring")
        .quick("20")
        .int(0, 10_000),
];

/// The values of [`CALL_PARAMS`]: (requests, warmup).
pub fn call_params(run: &RunContext) -> Result<(u64, u64), RunError> {
    let (requests, warmup) = (run.params.u64("requests"), run.params.u64("warmup"));
    if requests == 0 || requests > 100_000 || warmup > 10_000 {
        return Err(RunError::Config(
            "requests in 1..=100000, warmup at most 10000".into(),
        ));
    }
    Ok((requests, warmup))
}

pub fn cfg_err(e: impl std::fmt::Display) -> RunError {
    RunError::Config(e.to_string())
}

/// A host of `spec` with a Lauberhorn NIC of `cfg` on its coherent link.
pub fn lauberhorn_host(
    sim: &Sim,
    spec: MachineSpec,
    cfg: LauberhornConfig,
) -> Result<(Host, LauberhornOs), RunError> {
    let host = Host::new(sim, spec, OsCosts::default()).map_err(cfg_err)?;
    let os = LauberhornOs::attach(&host, cfg, LauberhornOsCosts::default()).map_err(cfg_err)?;
    Ok((host, os))
}

/// An Enzian of `cores` cores running Linux's UDP stack (a production
/// kernel's costs) on the DMA NIC, at the Lauberhorn server's address, the
/// client host its neighbour; the NIC interrupts core 0.
pub fn linux_server(sim: &Sim, cores: usize) -> Result<LinuxHost, RunError> {
    let cfg = LauberhornConfig::default();
    let mut net = NetConfig::new(cfg.ip, cfg.mac, LinuxNetCosts::production());
    net.neighbours.push((CLIENT_IP, CLIENT_MAC));
    LinuxHost::build(sim, MachineSpec::enzian(cores), OsCosts::default(), net).map_err(cfg_err)
}

/// A process registered with the NIC (serving nothing) and a context on
/// `core` running in it, for benchmarks that drive its channel directly
/// (the kernel's dispatch threads are not started).
pub fn channel_process(
    host: &Host,
    os: &LauberhornOs,
    core: usize,
) -> Result<(Rc<RpcServer>, CoreCtx), RunError> {
    let p = host.create_process().map_err(cfg_err)?;
    let server = RpcServer::register(os, &p, vec![], RuntimeCosts::default()).map_err(cfg_err)?;
    let space = host.kernel().borrow().space(p.pid()).map_err(cfg_err)?;
    let c = host
        .machine()
        .core(core)
        .ok_or_else(|| cfg_err("no such core"))?;
    c.set_space(space, Privilege::User);
    let ctx = host
        .machine()
        .ctx(core)
        .ok_or_else(|| cfg_err("no such core"))?;
    Ok((server, ctx))
}

/// Medians of the Lauberhorn repository's loopback measurements on
/// Enzian (enzian-pio-nic, `data/eci/loopback.csv` and
/// `data/pcie/loopback.csv`, 50 runs per size, FPGA cycles at 250 MHz;
/// the median of each column computed here, with the repository's own
/// correction of half a register-read round trip, as its `plot.py` does).
/// `rx` is a packet's arrival at the NIC to the core having read it; `tx`
/// the core holding a transmit buffer to the packet leaving the NIC.
pub mod repo {
    /// ECI, 64 B: receive and transmit, µs.
    pub const ECI_RX_64_US: f64 = 0.764;
    pub const ECI_TX_64_US: f64 = 0.864;
    /// ECI, 4 KiB receive, µs.
    pub const ECI_RX_4096_US: f64 = 16.708;
    /// PCIe PIO, 64 B: receive and transmit, µs.
    pub const PIO_RX_64_US: f64 = 3.194;
    pub const PIO_TX_64_US: f64 = 0.378;
    /// PCIe PIO, 1 KiB receive, µs.
    pub const PIO_RX_1024_US: f64 = 48.262;
    /// A core's read of an FPGA register over ECI and over PCIe, µs
    /// (`data/eci/eci_lat.csv`, `data/pcie/pcie_lat.csv`, medians of 50).
    pub const ECI_READ_RTT_US: f64 = 0.808;
    pub const PCIE_READ_RTT_US: f64 = 1.292;
}

/// The Lauberhorn repository's measured per-stage server costs of its
/// adder microbenchmark on Enzian (enzian-pio-nic,
/// docs/RPC-LATENCY-BREAKDOWN.md, "Current Adder-Demo Example", P50).
pub mod stages {
    /// Receive-side 2F2F software after the control-line read returned.
    pub const RX_SW_US: f64 = 0.035;
    /// The C runtime between receive and transmit.
    pub const RUNTIME_US: f64 = 0.520;
    pub const UNMARSHAL_US: f64 = 0.580;
    pub const HANDLER_US: f64 = 0.070;
    pub const MARSHAL_US: f64 = 0.270;
    /// Transmit-side 2F2F software (control line, payload, parity,
    /// doorbell read).
    pub const TX_SW_US: f64 = 1.570;
    /// Transmit-side 2F2F hardware: the invalidation path after the
    /// doorbell, which brings the core's written lines back to the NIC.
    pub const TX_HW_US: f64 = 0.980;
    /// Request arrival at the NIC's MAC to the reply leaving it.
    pub const CMAC_TO_CMAC_US: f64 = 4.4;
}

/// The two directions of the wire between a client host and its server,
/// captured when the run asked for pcap files.
pub struct ClientWires {
    to_server: Rc<nextio_hw::ethernet::Wire>,
    to_client: Rc<nextio_hw::ethernet::Wire>,
}

impl ClientWires {
    /// Write what the wires captured as `<label>-to-server.pcap` and
    /// `<label>-to-client.pcap` in the run's pcap folder, if it has one.
    pub fn write(&self, run: &RunContext, label: &str) -> Result<(), RunError> {
        for (wire, side) in [
            (&self.to_server, "to-server"),
            (&self.to_client, "to-client"),
        ] {
            if let Some(capture) = wire.take_capture() {
                run.write_capture(&format!("{label}-{side}"), &capture)?;
            }
        }
        Ok(())
    }
}

/// The client host's address and MAC (a server's kernel needs them as a
/// neighbour entry to reply).
pub const CLIENT_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 0, 1);
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

/// An ONC RPC client host (Ice Lake-SP, the E810-like NIC, a DPDK thread)
/// joined by a wire to `server_dev`'s port 0 on `server`; the wire is
/// captured if `run` asks for pcap files.
pub fn client_host(
    run: &RunContext,
    sim: &Sim,
    server: &Host,
    server_dev: nextio_hw::device::DeviceId,
    server_ip: std::net::Ipv4Addr,
    server_port: u16,
    server_mac: [u8; 6],
) -> Result<(nextio_apps::rpc_client::RpcClient, ClientWires), RunError> {
    use nextio_hw::nic::packetized::{PacketizedConfig, PacketizedNic, regs};
    let client =
        Host::new(sim, MachineSpec::ice_lake_sp(1), OsCosts::default()).map_err(cfg_err)?;
    let nic = client
        .attach_nic(PacketizedNic::new(PacketizedConfig::default()).map_err(cfg_err)?)
        .map_err(cfg_err)?;
    let (to_server, to_client) = nextio_hw::machine::join(
        client.machine(),
        nic.id,
        0,
        server.machine(),
        server_dev,
        0,
        nextio_hw::ethernet::LinkConfig::default(),
    )
    .map_err(cfg_err)?;
    let process = client.create_process().map_err(cfg_err)?;
    let thread = process.thread(0).map_err(cfg_err)?;
    let bar = process
        .map_bar(nic.id, 0, 0, regs::BAR0_BYTES)
        .map_err(cfg_err)?;
    let pmd = nextio_lib::dpdk::Pmd::new(
        thread.ctx,
        &process,
        &nic,
        bar,
        0,
        nextio_lib::dpdk::PmdConfig::default(),
        Rc::new(std::cell::RefCell::new(nextio_engine::Counters::new())),
    )
    .map_err(cfg_err)?;
    let flow = nextio_hw::packet::FlowKey {
        src_ip: CLIENT_IP,
        dst_ip: server_ip,
        src_port: 5000,
        dst_port: server_port,
    };
    let macs = nextio_hw::packet::Macs {
        src: CLIENT_MAC,
        dst: server_mac,
    };
    for wire in [&to_server, &to_client] {
        if let Some(capture) = run.new_capture() {
            wire.set_capture(capture);
        }
    }
    Ok((
        nextio_apps::rpc_client::RpcClient::new(pmd, macs, flow, 1),
        ClientWires {
            to_server,
            to_client,
        },
    ))
}

/// The adder of the repository's microbenchmark: two 64-bit integers in,
/// their sum out, its handler costing [`BenchCosts::adder_cycles`].
pub fn adder(prog: u32) -> nextio_lib::lauberhorn::Procedure {
    use nextio_hw::oncrpc::{AcceptStat, XdrType, XdrValue};
    use nextio_lib::lauberhorn::{Outcome, compute_handler};
    nextio_lib::lauberhorn::Procedure {
        prog,
        vers: 1,
        proc_: 1,
        args: vec![XdrType::U64, XdrType::U64],
        results: vec![XdrType::U64],
        handler: compute_handler(bench_costs().adder_cycles, |a| {
            match (a[0].as_u64(), a[1].as_u64()) {
                (Some(x), Some(y)) => Outcome::Reply(vec![XdrValue::U64(x.wrapping_add(y))]),
                _ => Outcome::Error(AcceptStat::GarbageArgs),
            }
        }),
        continuation: None,
        nested_results: vec![],
    }
}

/// The microbenchmarks' own costs: the root preset's
/// `[apps.lauberhorn_bench]`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchCosts {
    /// The adder handler's body (see [`adder`]).
    pub adder_cycles: u64,
    /// One core's post of a 64 B write-combined burst to a BAR: the
    /// stores and the buffer flush.
    pub pio_store_cycles: u64,
}

/// The root preset's microbenchmark costs (read once per process).
pub fn bench_costs() -> &'static BenchCosts {
    nextio_presets::cached_root_section!(BenchCosts, "apps.lauberhorn_bench")
}
