//! `lauberhorn-rpc-cycles` — where the core cycles of one small RPC go,
//! split by the twelve steps of Lauberhorn §2 (read the packet, protocol
//! processing, demultiplex, notify, general protocol processing, identify
//! the process, find a core, schedule it, switch to it, unmarshal, find
//! the function, jump), on each system: Lauberhorn's fast path (the
//! process's user loop), Lauberhorn's kernel dispatch (every request
//! through the kernel's dispatch thread, a switch into the process, a copy
//! of the decoded request), and kernel bypass (a DPDK-style driver on a
//! dedicated core with a user-level ONC RPC server that parses,
//! demultiplexes and unmarshals in software). The workload is the
//! Lauberhorn repository's adder (two 64-bit arguments, one result), sent
//! closed-loop by a client host over a 100 GbE wire.
//!
//! Each step's time is the core time of the code that performs it,
//! measured around that code in the simulation (cache misses included);
//! waiting for a request is no step. Beside them: the NIC's time from a
//! request's arrival to its reply's departure, and the time the NIC takes
//! to fetch a result back from the core's cache (the clean-invalidate) —
//! the repository's `2F2F TX HW` stage.
//!
//! And Linux, the other baseline of §2: the same user-level server on the
//! kernel's UDP sockets (the DMA NIC's interrupt, NAPI, IP, UDP's socket
//! lookup, a reader blocked in `recvfrom` woken and switched in, the copy
//! to user), its steps (1)–(4), (8) and (9) read from the kernel's stamps
//! of each datagram and the core's ledger.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Duration, Time};
use nextio_hw::machine::MachineSpec;
use nextio_hw::nic::lauberhorn::LauberhornConfig;
use nextio_hw::nic::packetized::{PacketizedConfig, PacketizedNic, regs};
use nextio_hw::oncrpc::XdrValue;
use nextio_lib::dpdk::{Pmd, PmdConfig};
use nextio_lib::lauberhorn::{RpcServer, RuntimeCosts};
use nextio_os::lauberhorn::{Step, StepMeter};
use nextio_os::{Host, OsCosts};
use serde_json::json;

use super::common::{
    CALL_PARAMS, adder, call_params, cfg_err, client_host, lauberhorn_host, linux_server, stages,
};
use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, STATED, Series, SimTally,
    Tolerance,
};
use crate::params::ParamSpec;
use nextio_apps::rpc_server::{DatagramIo, DpdkIo, SocketIo, SoftRpcCosts, SoftRpcServer};

pub struct LauberhornRpcCycles;

const PROG: u32 = 0x2000_0001;
/// The server cores' clock in GHz: the `enzian` preset's.
fn ghz() -> f64 {
    MachineSpec::enzian(1).caches.core_clock.hz() as f64 / 1e9
}

const PARAMS: &[ParamSpec] = &CALL_PARAMS;

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "user-loop-cycles",
        "Lauberhorn user loop: core cycles of steps (1)–(12) per small RPC (§1: 'essentially zero', read as at most 100 cycles); the jump's fixed cost",
        "cycles",
        Origin::Composed,
    )
    .words(100.0, Tolerance::AtMost),
    CheckSpec::new(
        "user-loop-over-bypass",
        "steps (1)–(12): Lauberhorn's user loop ÷ kernel bypass (§4: better than the fastest kernel bypass, read as < 1)",
        "ratio",
        Origin::Simulated,
    )
    .words(1.0, Tolerance::AtMost),
    CheckSpec::new(
        "kernel-dispatch-cycles",
        "Lauberhorn kernel dispatch: core cycles of steps (1)–(12) per small RPC",
        "cycles",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "linux-cycles",
        "Linux (kernel UDP, user-level ONC RPC server): core cycles of steps (1)–(12) per small RPC (a production kernel's assumed costs)",
        "cycles",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "bypass-over-linux",
        "steps (1)–(12): kernel bypass ÷ Linux (§2: bypass replaces step 4 with polling and simplifies steps 5–9, read as < 1)",
        "ratio",
        Origin::Simulated,
    )
    .words(1.0, Tolerance::AtMost),
    CheckSpec::new(
        "kernel-dispatch-over-linux",
        "steps (1)–(12): Lauberhorn's kernel dispatch ÷ Linux (§6, Fig. 5: the NIC hands the kernel a decoded request instead of Linux's dispatch loop, read as < 1)",
        "ratio",
        Origin::Simulated,
    )
    .words(1.0, Tolerance::AtMost),
    CheckSpec::new(
        "bypass-unmarshal",
        "kernel bypass, step (10): software XDR unmarshal of the adder's arguments (repository: 0.58 µs; the per-argument cost is fitted to it)",
        "µs",
        Origin::Fitted,
    )
    .stated(stages::UNMARSHAL_US, STATED),
    CheckSpec::new(
        "result-fetch",
        "the NIC fetching a result back from the core's cache: clean-invalidate to data in hand (repository's 2F2F TX HW: 0.98 µs)",
        "µs",
        Origin::Simulated,
    )
    .stated(stages::TX_HW_US, STATED),
    CheckSpec::new(
        "nic-service",
        "Lauberhorn user loop: request at the NIC's port to its reply leaving (repository's prototype, which still marshals in software: 4.4 µs, read as an upper bound)",
        "µs",
        Origin::Simulated,
    )
    .stated(stages::CMAC_TO_CMAC_US, Tolerance::AtMost),
];

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Measured {
    pub steps_ns: [f64; 12],
    nic_service_us: Option<f64>,
    fetch_us: Option<f64>,
    pub rtt_us: f64,
    pub tally: SimTally,
}

fn measure(
    sim: &nextio_engine::Sim,
    mut client: nextio_apps::rpc_client::RpcClient,
    meter: &StepMeter,
    requests: u64,
    warmup: u64,
) -> Result<(f64, Time), RunError> {
    let rtts = Rc::new(RefCell::new(Vec::new()));
    let done = Rc::new(RefCell::new(None));
    let (r, d, m) = (rtts.clone(), done.clone(), meter.clone());
    sim.spawn(async move {
        if client.pmd().start().await.is_err() {
            return;
        }
        for i in 0..warmup + requests {
            if i == warmup {
                m.reset();
            }
            let Ok(rep) = client
                .call(PROG, 1, 1, &[XdrValue::U64(i), XdrValue::U64(3 * i)])
                .await
            else {
                return;
            };
            if i >= warmup {
                r.borrow_mut().push((rep.received - rep.sent).as_us_f64());
            }
        }
        *d.borrow_mut() = Some(client.pmd().ctx().local_now());
    });
    // Far beyond any call's round trip (tens of µs), so only a stuck run
    // reaches it.
    sim.run_until(Time::ZERO + Duration::from_us(1_000 + 100 * (requests + warmup)));
    let end = done
        .borrow()
        .ok_or_else(|| RunError::Config("the client did not finish its calls".into()))?;
    let v = rtts.borrow();
    if v.len() as u64 != requests || meter.rpcs() < requests {
        return Err(RunError::Config(format!(
            "{} of {requests} calls answered, {} metered",
            v.len(),
            meter.rpcs()
        )));
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    Ok((mean, end))
}

fn steps_of(meter: &StepMeter) -> [f64; 12] {
    let mut out = [0.0; 12];
    for s in Step::ALL {
        out[s as usize] = meter.mean(s).ps() as f64 / 1000.0;
    }
    out
}

fn lauberhorn(
    run: &RunContext,
    user_loop: bool,
    requests: u64,
    warmup: u64,
) -> Result<Measured, RunError> {
    let sim = run.new_sim();
    let cfg = LauberhornConfig {
        cores: 1,
        slots: 1,
        ..LauberhornConfig::default()
    };
    let (host, os) = lauberhorn_host(&sim, MachineSpec::enzian(1), cfg.clone())?;
    let p = host.create_process().map_err(cfg_err)?;
    let app = RpcServer::register(&os, &p, vec![adder(PROG)], RuntimeCosts::default())
        .map_err(cfg_err)?;
    app.set_user_loop(user_loop);
    let meter = StepMeter::new();
    os.set_meter(meter.clone());
    os.start();
    let (client, wires) =
        client_host(run, &sim, &host, os.nic().id, cfg.ip, cfg.rpc_port, cfg.mac)?;
    let (rtt_us, end) = measure(&sim, client, &meter, requests, warmup)?;
    let nic = os.nic().borrow();
    let m = Measured {
        steps_ns: steps_of(&meter),
        nic_service_us: Some(nic.mean_service_ps() as f64 / 1e6),
        fetch_us: Some(nic.mean_fetch_ps() as f64 / 1e6),
        rtt_us,
        tally: SimTally {
            events: sim.events(),
            simulated_ps: end.ps(),
            packets: requests,
        },
    };
    drop(nic);
    wires.write(
        run,
        if user_loop {
            "lauberhorn-user-loop"
        } else {
            "lauberhorn-kernel-dispatch"
        },
    )?;
    sim.shutdown();
    Ok(m)
}

/// Serve the adder with `server` on `host` (whose NIC is `dev`), metered
/// by `meter`, to the closed-loop client; `label` names the captures.
fn soft<Io: DatagramIo + 'static>(
    run: &RunContext,
    sim: &nextio_engine::Sim,
    host: &Host,
    dev: nextio_hw::device::DeviceId,
    mut server: SoftRpcServer<Io>,
    label: &str,
    (requests, warmup): (u64, u64),
) -> Result<Measured, RunError> {
    let cfg = LauberhornConfig::default();
    let meter = StepMeter::new();
    server.set_meter(meter.clone());
    sim.spawn(async move {
        server.serve(None).await;
    });
    let (client, wires) = client_host(run, sim, host, dev, cfg.ip, cfg.rpc_port, cfg.mac)?;
    let (rtt_us, end) = measure(sim, client, &meter, requests, warmup)?;
    let m = Measured {
        steps_ns: steps_of(&meter),
        nic_service_us: None,
        fetch_us: None,
        rtt_us,
        tally: SimTally {
            events: sim.events(),
            simulated_ps: end.ps(),
            packets: requests,
        },
    };
    wires.write(run, label)?;
    sim.shutdown();
    Ok(m)
}

pub(super) fn bypass(run: &RunContext, requests: u64, warmup: u64) -> Result<Measured, RunError> {
    let sim = run.new_sim();
    let host = Host::new(&sim, MachineSpec::enzian(1), OsCosts::default()).map_err(cfg_err)?;
    let nic = host
        .attach_nic(PacketizedNic::new(PacketizedConfig::default()).map_err(cfg_err)?)
        .map_err(cfg_err)?;
    let p = host.create_process().map_err(cfg_err)?;
    let t = p.thread(0).map_err(cfg_err)?;
    let bar = p.map_bar(nic.id, 0, 0, regs::BAR0_BYTES).map_err(cfg_err)?;
    let pmd = Pmd::new(
        t.ctx,
        &p,
        &nic,
        bar,
        0,
        PmdConfig::default(),
        Rc::new(RefCell::new(nextio_engine::Counters::new())),
    )
    .map_err(cfg_err)?;
    let cfg = LauberhornConfig::default();
    let costs = SoftRpcCosts::default();
    let server = SoftRpcServer::new(DpdkIo::new(pmd, cfg.mac, costs), vec![adder(PROG)], costs);
    soft(
        run,
        &sim,
        &host,
        nic.id,
        server,
        "kernel-bypass",
        (requests, warmup),
    )
}

/// The Linux baseline: the same user-level server on the kernel's UDP
/// sockets, its thread on the core that takes the NIC's interrupt.
fn linux(run: &RunContext, requests: u64, warmup: u64) -> Result<Measured, RunError> {
    let sim = run.new_sim();
    let cfg = LauberhornConfig::default();
    let linux = linux_server(&sim, 1)?;
    let p = linux.host.create_process().map_err(cfg_err)?;
    let t = linux.thread(p.pid(), 0).map_err(cfg_err)?;
    let io = SocketIo::new(linux.stack.clone(), linux.disp.clone(), &p, t, cfg.rpc_port)
        .map_err(cfg_err)?;
    let costs = SoftRpcCosts::default();
    let server = SoftRpcServer::new(io, vec![adder(PROG)], costs);
    soft(
        run,
        &sim,
        &linux.host,
        linux.nic.id,
        server,
        "linux",
        (requests, warmup),
    )
}

impl Experiment for LauberhornRpcCycles {
    fn host(&self) -> &'static str {
        "enzian"
    }
    fn name(&self) -> &'static str {
        "lauberhorn-rpc-cycles"
    }
    fn reproduces(&self) -> &'static str {
        "Lauberhorn (HotOS '25) §2: end-system CPU cycles of a small RPC by the twelve steps, Lauberhorn (user loop, kernel dispatch) vs kernel bypass and Linux, beside the repository's measured server stages"
    }
    fn about(&self) -> &'static str {
        "A client host calls the repository's adder (two 64-bit arguments) closed-loop over 100 GbE. The server is an Enzian whose Lauberhorn NIC decodes the call and delivers it as cache lines to the process's user loop, or to the kernel's dispatch thread, which switches to the process (every request); or an Enzian with a DMA NIC and a DPDK-style driver on a dedicated core running a user-level ONC RPC server; or the same server on Linux's UDP sockets (interrupt, NAPI, IP, UDP, recvfrom). Reports the server core's time per §2 step, the NIC's service time and its result fetch."
    }
    fn paper(&self) -> &'static str {
        "Lauberhorn (HotOS '25)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn checks(&self) -> &'static [CheckSpec] {
        CHECKS
    }
    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError> {
        let (requests, warmup) = call_params(ctx)?;
        let systems = [
            "lauberhorn-user-loop",
            "lauberhorn-kernel-dispatch",
            "kernel-bypass",
            "linux",
        ];
        let res = ctx.sweep(&[0usize, 1, 2, 3], |_, &i| match i {
            0 => lauberhorn(ctx, true, requests, warmup),
            1 => lauberhorn(ctx, false, requests, warmup),
            2 => bypass(ctx, requests, warmup),
            _ => linux(ctx, requests, warmup),
        })?;
        let mut series = Vec::new();
        let mut steps = Series::new("steps", "step", &["ns"]);
        for (name, m) in systems.iter().zip(&res) {
            ctx.record(m.tally);
            for s in Step::ALL {
                let ns = m.steps_ns[s as usize];
                steps.push(json!({
                    "system": name, "step": s as usize + 1, "name": s.name(),
                    "ns": ns, "cycles": ns * ghz(),
                }));
            }
        }
        series.push(steps);
        let mut totals = Series::new("totals", "system", &["cycles", "rtt_us"]);
        let total = |m: &Measured| m.steps_ns.iter().sum::<f64>() * ghz();
        for (i, (name, m)) in systems.iter().zip(&res).enumerate() {
            totals.push(json!({
                "system": name, "index": i, "cycles": total(m), "rtt_us": m.rtt_us,
                "nic_service_us": m.nic_service_us, "result_fetch_us": m.fetch_us,
            }));
        }
        series.push(totals);
        series.push(
            Series::new("repository stages", "stage", &["us"])
                .kind(crate::experiment::SeriesKind::Paper)
                .with(json!({"stage": "2F2F RX SW", "us": stages::RX_SW_US}))
                .with(json!({"stage": "server RT", "us": stages::RUNTIME_US}))
                .with(json!({"stage": "server unmarshal", "us": stages::UNMARSHAL_US}))
                .with(json!({"stage": "handler", "us": stages::HANDLER_US}))
                .with(json!({"stage": "server marshal", "us": stages::MARSHAL_US}))
                .with(json!({"stage": "2F2F TX SW", "us": stages::TX_SW_US}))
                .with(json!({"stage": "2F2F TX HW", "us": stages::TX_HW_US})),
        );
        let (user, kernel, byp, lin) = (&res[0], &res[1], &res[2], &res[3]);
        let ratio = |a: &Measured, b: &Measured| total(a) / total(b).max(f64::MIN_POSITIVE);
        let mut checks = vec![
            CHECKS[0].judge(total(user)),
            CHECKS[1].judge(ratio(user, byp)),
            CHECKS[2].judge(total(kernel)),
            CHECKS[3].judge(total(lin)),
            CHECKS[4].judge(ratio(byp, lin)),
            CHECKS[5].judge(ratio(kernel, lin)),
            CHECKS[6].judge(byp.steps_ns[Step::Unmarshal as usize] / 1000.0),
        ];
        if let Some(f) = user.fetch_us {
            checks.push(CHECKS[7].judge(f));
        }
        if let Some(s) = user.nic_service_us {
            checks.push(CHECKS[8].judge(s));
        }
        Ok(Outcome {
            series,
            axes: vec![
                Axis::new("step", "§2 step"),
                Axis::new("ns", "server core time per RPC (ns)"),
                Axis::new("system", "system"),
                Axis::new("cycles", "core cycles of steps (1)–(12) per RPC"),
                Axis::new("rtt_us", "client round trip (µs)"),
                Axis::new("stage", "repository stage"),
                Axis::new("us", "measured (µs)"),
            ],
            checks,
            notes: vec![
                "Lauberhorn's user loop spends no core time on steps (1)–(11): the NIC decodes, demultiplexes and unmarshals, and the held load is the notification; the jump through the code pointer is a fixed 20-cycle assumption, so its total is composed.".into(),
                "The kernel-dispatch path pays the kernel's lookup, a context switch (the OS model's 1000 cycles) and the copy of the decoded request into the process; it also makes a system call to return the result, which is not one of the twelve steps.".into(),
                "Kernel bypass uses the DPDK driver's measured per-packet costs and TI-RPC-like XDR costs fitted to the repository's adder (580 cycles per argument): its unmarshal check is fitted.".into(),
                "The repository's prototype still unmarshals and marshals on the core and replies through the transmit lines; the model follows the paper's design (the NIC does both, the result is written into the request's control line), so only the hardware fetch of a written line is compared stage for stage.".into(),
                "Linux runs the bypass's user-level server on the kernel's UDP sockets (a production kernel's assumed per-layer cycles, the OS model's 1000-cycle context switch, the same cycle counts on Enzian's ThunderX as on x86: an assumption). Its steps come from the kernel's stamps: (4) hard IRQ and softirq entry; (1) the driver's poll and GRO, plus recvmsg's copy to user and the return; (2) IP; (3) UDP's socket lookup and enqueue; (9) the switch into the reader (the core's ledger); (8) the rest between the enqueue and that switch (wake-up, NAPI completion, re-arm, the scheduler's pick). recvfrom's entry before it blocks and the reply's sendto are not among the twelve steps, as the bypass's transmit is not.".into(),
            ],
        })
    }
}
