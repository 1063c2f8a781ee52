//! `accio-throughput` — Accio §8.4: a UDP sink on Accio receiving a
//! constant stream of 64 B datagrams.
//!
//! A generator on the wire offers back-to-back 64 B datagrams at the
//! 100 GbE line rate to one accelerated socket; one sink thread receives
//! and discards them with `recv` (one datagram per call, POSIX-shaped:
//! the payload is copied out of the ring). Reported per platform: the
//! payload rate the sink received (Gb/s), the ring bytes the NIC wrote
//! over the system bus (payload plus record headers), and where the rest
//! went (the NIC's counted drops when the ring was full). On the
//! prototype the paper measures 3.1 Gb/s, the 64-bit bus's limit (§7:
//! 3.2 Gb/s); the server-class host is model only.

use std::rc::Rc;

use nextio_engine::{Duration, Mailbox, Time};
use nextio_hw::ethernet::{LinkConfig, PER_FRAME_OVERHEAD_BYTES};
use nextio_hw::packet::{FlowKey, Frame, Macs, build_udp_datagram};
use nextio_lib::accio::Accio;
use serde_json::json;

use super::common::{CLIENT_IP, CLIENT_MAC, PAPER, SERVER_IP, SERVER_MAC, cfg};
use super::pingpong::{Platform, accio_host, lib_costs, message};
use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, STATED, Series, SeriesKind,
    SimTally,
};
use crate::params::{ParamKind, ParamSpec};

pub struct AccioThroughput;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "duration_us",
        ParamKind::U64,
        "2000",
        "µs",
        "how long the stream is offered, 50 to 100000",
    )
    .quick("300")
    .int(50, 100_000),
    ParamSpec::new(
        "platforms",
        ParamKind::StrList,
        "prototype,server",
        "",
        "the FPGA prototype and a server-class Accio host",
    )
    .choices(&["prototype", "server"])
    .items(1, 2),
];

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "prototype-gbps",
        "64 B payload received by the sink on the prototype (§8.4: 3.1 Gb/s, the bus saturated)",
        "Gb/s",
        Origin::Simulated,
    )
    .stated(3.1, STATED),
    CheckSpec::new(
        "prototype-bus-gbps",
        "ring bytes the prototype's NIC wrote over the bus (payload and record headers)",
        "Gb/s",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "server-gbps",
        "64 B payload received by the sink on a server-class Accio host (no paper value)",
        "Gb/s",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "server-mpps",
        "datagrams per second received on a server-class Accio host, millions",
        "Mpps",
        Origin::Simulated,
    ),
];

const PAYLOAD_BYTES: usize = 64;
const SINK_PORT: u16 = 5000;

#[derive(serde::Serialize, serde::Deserialize)]
struct Point {
    gbps: f64,
    bus_gbps: f64,
    mpps: f64,
    offered_mpps: f64,
    dropped: u64,
    /// The engine's frames in, to rings, and still held at the end.
    nic_in: u64,
    nic_delivered: u64,
    nic_held: u64,
    tally: SimTally,
}

fn run_point(ctx: &RunContext, platform: Platform, duration: Duration) -> Result<Point, RunError> {
    let sim = ctx.new_sim();
    let a = accio_host(&sim, platform, 64)?;
    let link = LinkConfig::default();
    let discard: Rc<Mailbox<Frame>> = Rc::new(Mailbox::new(&sim));
    let (_out, into_nic) = a
        .host
        .machine()
        .wire_port(a.nic.id, 0, discard, link, link)
        .map_err(cfg)?;
    let proc_ = a.host.create_process().map_err(cfg)?;
    // Off the kernel path's interrupt core.
    let t = a.thread(proc_.pid(), 1).map_err(cfg)?;
    let buf = proc_.mmap(4096, false).map_err(cfg)?;
    let got = Rc::new(std::cell::RefCell::new((0u64, None::<Time>, None::<Time>)));
    // After the socket is accelerated (its set-up is slow at 50 MHz).
    let start = Time::ZERO
        + match platform {
            Platform::Server => Duration::from_us(50),
            Platform::Prototype => Duration::from_ms(1),
        };
    let end = start + duration;
    let quarter = Duration::from_ps(duration.ps() / 4);
    let window = (start + quarter, start + quarter.times(3));
    {
        let (os, got) = (a.os.clone(), got.clone());
        sim.spawn(async move {
            if os.dispatcher().wait_turn(t.tid).await.is_err() {
                return;
            }
            let mut lib = Accio::new(os, proc_.pid(), t.tid, t.ctx.clone(), lib_costs(platform));
            let fd = lib.socket();
            if lib.bind(fd, SINK_PORT).is_err()
                || lib.connect(fd, (SERVER_IP, 7000)).is_err()
                || lib.accelerate(fd).await.is_err()
            {
                return;
            }
            while lib.recv(fd, buf, 2048).await.is_ok() {
                let now = lib.ctx().local_now();
                let mut g = got.borrow_mut();
                // Count what arrives in the middle half of the stream.
                if now >= window.0 && now < window.1 {
                    g.0 += 1;
                    g.1.get_or_insert(now);
                    g.2 = Some(now);
                }
            }
        });
    }
    // The generator: back to back at the line rate.
    let flow = FlowKey {
        src_ip: SERVER_IP,
        dst_ip: CLIENT_IP,
        src_port: 7000,
        dst_port: SINK_PORT,
    };
    let macs = Macs {
        src: SERVER_MAC,
        dst: CLIENT_MAC,
    };
    let frame = build_udp_datagram(macs, flow, &message(0, PAYLOAD_BYTES)).map_err(cfg)?;
    let spacing = link.rate.duration_for_bytes(
        Frame::new(frame.clone(), 0).frame_bytes() as u64 + PER_FRAME_OVERHEAD_BYTES,
    );
    let offered = duration.ps() / spacing.ps().max(1);
    {
        let sim2 = sim.clone();
        sim.spawn(async move {
            for i in 0..offered {
                sim2.sleep_until(start + spacing.times(i)).await;
                let _ = into_nic.send(Frame::new(frame.clone(), i));
            }
        });
    }
    sim.run_until(end + Duration::from_us(100));
    let (n, first, last) = *got.borrow();
    let secs = match (first, last) {
        (Some(f), Some(l)) if l > f => (l - f).as_secs_f64(),
        _ => 0.0,
    };
    let rate = if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let nic = a.nic.borrow().all_counters();
    let record = nextio_hw::accio::ring::record_bytes(PAYLOAD_BYTES as u64) as f64;
    let p = Point {
        gbps: rate * PAYLOAD_BYTES as f64 * 8.0 / 1e9,
        bus_gbps: rate * record * 8.0 / 1e9,
        mpps: rate / 1e6,
        offered_mpps: 1e6 / spacing.as_us_f64() / 1e6,
        dropped: nic.sum_prefix("drop."),
        nic_in: nic.get("offload_rx_frames"),
        nic_delivered: nic.get("offload_rx_delivered"),
        nic_held: a.nic.borrow().rx_held(),
        tally: SimTally::of(&sim, offered),
    };
    ctx.write_artefacts(
        &format!(
            "accio-throughput-{}",
            if platform == Platform::Server {
                "server"
            } else {
                "prototype"
            }
        ),
        &sim,
    )?;
    sim.shutdown();
    Ok(p)
}

impl Experiment for AccioThroughput {
    /// The servers and the FPGA prototype.
    fn host(&self) -> &'static str {
        "accio-server"
    }
    fn other_hosts(&self) -> &'static [&'static str] {
        &["accio-prototype"]
    }
    fn name(&self) -> &'static str {
        "accio-throughput"
    }
    fn reproduces(&self) -> &'static str {
        "Accio (NINeS '26) §8.4: a 64 B UDP sink's throughput on the prototype (3.1 Gb/s) and on a server-class host"
    }
    fn about(&self) -> &'static str {
        "A line-rate stream of 64 B datagrams into one accelerated socket; one thread receives and discards them with recv. Reports the payload rate received, the ring bytes written over the bus, and the NIC's counted drops."
    }
    fn paper(&self) -> &'static str {
        PAPER
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn checks(&self) -> &'static [CheckSpec] {
        CHECKS
    }
    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError> {
        let duration = Duration::from_us(ctx.params.u64("duration_us"));
        let platforms: Vec<Platform> = ctx
            .params
            .str_list("platforms")
            .iter()
            .map(|p| {
                if p == "server" {
                    Platform::Server
                } else {
                    Platform::Prototype
                }
            })
            .collect();
        let res = ctx.sweep(&platforms, |_, &p| run_point(ctx, p, duration))?;
        let mut series = Series::new("accio sink", "platform", &["gbps"]);
        let mut checks = Vec::new();
        for (p, r) in platforms.iter().zip(&res) {
            ctx.record(r.tally);
            let name = if *p == Platform::Server {
                "server"
            } else {
                "prototype"
            };
            series.push(json!({
                "platform": name, "gbps": r.gbps, "bus_gbps": r.bus_gbps,
                "mpps": r.mpps, "offered_mpps": r.offered_mpps, "nic_drops": r.dropped,
                "nic_offload_in": r.nic_in, "nic_to_rings": r.nic_delivered, "nic_held_at_end": r.nic_held,
            }));
            match p {
                Platform::Prototype => {
                    checks.push(CHECKS[0].judge(r.gbps));
                    checks.push(CHECKS[1].judge(r.bus_gbps));
                }
                Platform::Server => {
                    checks.push(CHECKS[2].judge(r.gbps));
                    checks.push(CHECKS[3].judge(r.mpps));
                }
            }
        }
        let mut out = vec![series];
        if platforms.contains(&Platform::Prototype) {
            out.push(
                Series::new("paper", "platform", &["gbps"])
                    .kind(SeriesKind::Paper)
                    .with(json!({"platform": "prototype", "gbps": CHECKS[0].paper})),
            );
        }
        Ok(Outcome {
            series: out,
            axes: vec![
                Axis::new("platform", "client platform"),
                Axis::new("gbps", "64 B payload received (Gb/s)"),
            ],
            checks,
            notes: vec![
                "The sink calls recv once per datagram; every call copies the payload out of the ring, stores RX_HEAD (an uncached store to the table) and, when it has consumed all it saw, loads RX_TAIL. On the 50 MHz prototype those costs (the library's instructions scaled by Table 2's CoreMark ratio, and the bus round trips) bound the rate well below the bus: the model's sink is CPU-bound, not bus-bound, and the NIC drops what the full ring cannot take (counted). The paper's sink reaching the bus limit suggests it consumed the ring in bulk rather than one POSIX recv per datagram.".into(),
                "Rates are counted over the middle half of the stream. The series also holds the engine's frames in, delivered to the ring, dropped and still held at the end: the engine queues what it cannot write yet (its miss and pipeline queues), so on the prototype most of the offered stream is still queued when the run ends rather than dropped — a buffer deeper than a real NIC's, stated here rather than hidden.".into(),
            ],
        })
    }
}
