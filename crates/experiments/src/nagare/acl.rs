//! `nagare-acl` — §4.5's interposed access rules, attacked: while a
//! client's images flow NIC → crypto → ML → NIC through Nagare, a
//! misbehaving device on the same switch forges data into every stream
//! of the chain (the crypto's output, the ML's output — forged replies —
//! and the NIC's pipe), writes into a window no stream owns, tries to
//! reprogram the switch, and tries to reach the classifier's input window
//! directly, around the switch's dataplane. Every forged push must be
//! dropped and counted, the CPU must find each one in the switch's error
//! log naming the offender, and every one of the victim's replies must
//! still equal the software reference.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_apps::chain::{self, ChainConfig, ChainMode};
use nextio_engine::Duration;
use nextio_hw::accel::ml::Classifier;
use nextio_hw::accel::{AccelConfig, Accelerator};
use nextio_hw::device::Device as _;
use nextio_hw::fabric::{Attach, DeviceLink};
use nextio_hw::machine::MachineSpec;
use nextio_hw::nagare::layout::{ConfigEntry, DropReason, MessageHeader, Offender, regs};
use nextio_hw::pcie::PcieConfig;
use nextio_lib::nagare::Nagare;
use serde_json::json;

use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, Series, SeriesKind,
    Tolerance,
};
use crate::params::{ParamKind, ParamSpec};

pub struct NagareAcl;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "messages",
        ParamKind::U64,
        "2000",
        "messages",
        "victim's requests, 10 to 10^6",
    )
    .quick("300")
    .int(10, 1_000_000),
    ParamSpec::new(
        "attack_every_us",
        ParamKind::U64,
        "2",
        "µs",
        "the misbehaving device's interval between attack rounds, 1 to 10000",
    )
    .int(1, 10_000),
];

/// §4.5 says a violation is dropped and reported and the victim unharmed;
/// its words are read as "every one" (1, or 0 forged replies), exactly.
const EXACT: Tolerance = Tolerance::Absolute(0.0);

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "victim-correct",
        "victim's replies equal to the software reference, as a share of its requests (§4.5: the victim is unharmed, read as all of them)",
        "fraction",
        Origin::Simulated,
    )
    .words(1.0, EXACT),
    CheckSpec::new(
        "forged-replies",
        "forged replies the victim's client received (§4.5, read as none)",
        "frames",
        Origin::Simulated,
    )
    .words(0.0, EXACT),
    CheckSpec::new(
        "forged-dropped",
        "forged pushes into stream windows (and the forged configuration write) dropped by the switch, as a share of those made (§4.5: a violation is dropped, read as every one)",
        "fraction",
        Origin::Simulated,
    )
    .words(1.0, EXACT),
    CheckSpec::new(
        "forged-logged",
        "error-log entries, as a share of the drops (§4.5: each reported to the CPU, read as every one)",
        "fraction",
        Origin::Simulated,
    )
    .words(1.0, EXACT),
    CheckSpec::new(
        "bypass-stopped",
        "peer-to-peer writes around the dataplane stopped by the IOMMU (ACS redirect), as a share of those made (read as every one)",
        "fraction",
        Origin::Simulated,
    )
    .words(1.0, EXACT),
    CheckSpec::new(
        "log-names-offender",
        "error-log entries the CPU read that name the misbehaving device, as a share of those read (read as every one)",
        "fraction",
        Origin::Simulated,
    )
    .words(1.0, EXACT),
];

fn cfg_err(e: impl std::fmt::Display) -> RunError {
    RunError::Config(e.to_string())
}

impl Experiment for NagareAcl {
    fn host(&self) -> &'static str {
        "enso-testbed"
    }
    fn name(&self) -> &'static str {
        "nagare-acl"
    }
    fn reproduces(&self) -> &'static str {
        "Ensō/Nagare thesis §4.5 (interposed dataplane policies): a misbehaving device pushing into another's stream is dropped, counted and reported; the victim is unharmed"
    }
    fn about(&self) -> &'static str {
        "The nagare chain host with one more device under the switch that, every few microseconds, pushes forged messages into each of the chain's streams and into an unowned window, writes a configuration entry, and writes peer to peer into the classifier's input. The switch's access rules (which device may push into which stream) and the IOMMU (ACS redirects peer-to-peer writes to the root complex) must stop all of it while the victim's images are served."
    }
    fn paper(&self) -> &'static str {
        "Nagare (thesis §4)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn checks(&self) -> &'static [CheckSpec] {
        CHECKS
    }
    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError> {
        // One simulation: the whole run is one shard's.
        ctx.single(|| simulate(ctx))
    }
}

/// The run, start to end.
fn simulate(ctx: &RunContext) -> Result<Outcome, RunError> {
    let n = ctx.params.u64("messages");
    let every = ctx.params.u64("attack_every_us");
    let sim = ctx.new_sim();
    let sys = chain::build(
        &sim,
        &ChainConfig::new(MachineSpec::enso_testbed(2), ChainMode::Nagare),
    )
    .map_err(cfg_err)?;
    let rogue = sys
        .host
        .attach(
            Accelerator::new(Classifier::default(), AccelConfig::default()).map_err(cfg_err)?,
            Attach::Switch(sys.switch),
            DeviceLink::pcie(PcieConfig::gen_lanes(3, 8)),
        )
        .map_err(cfg_err)?;
    let nagare = sys.nagare.clone().ok_or_else(|| cfg_err("no switch"))?;
    let fabric = sys.host.machine().fabric().clone();
    // Let the chain be set up, then attack while the victim runs.
    sim.run();
    let streams = sys.streams.borrow().clone();
    if streams.len() != 3 {
        return Err(cfg_err("the chain did not set up three streams"));
    }
    let windows: Vec<u64> = streams.iter().map(|s| nagare.borrow().window(*s)).collect();
    let unowned = nagare
        .borrow()
        .window(nagare.borrow().config().max_streams - 1);
    let cfg_reg = fabric.bar(nagare.id, 0).map(|b| b.base).unwrap_or(0) + regs::CONFIG;
    let ml_in = fabric.bar(sys.ml.id, 1).map(|b| b.base).unwrap_or(0);
    let rounds = Rc::new(RefCell::new(0u64));
    // The attack lasts as long as the victim's requests (2 µs apart).
    let planned = (2 * n).div_ceil(every);
    {
        let (s, f, r, rogue) = (sim.clone(), fabric.clone(), rounds.clone(), rogue.clone());
        let forged_reply = MessageHeader::data(8, 0).message(&[0xee; 8]);
        let forged_frame = {
            let mut b = vec![0u8; 128];
            b[12] = 0x08;
            b[16..18].copy_from_slice(&100u16.to_be_bytes());
            b
        };
        let forged_cfg = ConfigEntry::Destroy { stream: streams[0] }.emit();
        sim.spawn(async move {
            for _ in 0..planned {
                s.sleep(Duration::from_us(every)).await;
                let _ = f.act(&rogue, |_, cx| {
                    let _ = cx.dma_write(windows[1], &forged_reply, "forged", 0);
                    let _ = cx.dma_write(windows[2], &forged_reply, "forged", 0);
                    let _ = cx.dma_write(windows[0], &forged_frame, "forged", 0);
                    let _ = cx.dma_write(unowned, &forged_reply, "forged", 0);
                    let _ = cx.dma_write(cfg_reg, &forged_cfg, "forged", 0);
                    cx.dma_write(ml_in, &forged_reply, "forged", 0)
                });
                *r.borrow_mut() += 1;
            }
        });
    }
    let out = chain::run_client(
        &sim,
        &sys,
        n,
        1000,
        Duration::from_us(2),
        Duration::from_us(300),
    )
    .map_err(cfg_err)?;
    sim.run();
    let attacks = *rounds.borrow();
    // The CPU reads the error log over MMIO.
    let process = sys.host.create_process().map_err(cfg_err)?;
    let thread = process.thread(1).map_err(cfg_err)?;
    let mut lib = Nagare::open(thread.ctx, &process, nagare.clone()).map_err(cfg_err)?;
    let log = Rc::new(RefCell::new(None));
    {
        let l = log.clone();
        sim.spawn(async move {
            *l.borrow_mut() = lib.errors().await.ok();
        });
    }
    sim.run();
    let (logged, entries) = log
        .borrow()
        .clone()
        .ok_or_else(|| cfg_err("the error log could not be read"))?;
    nagare.borrow().conservation().map_err(RunError::Config)?;
    let c = nagare.borrow().counters().clone();
    let denied = c.get(DropReason::AccessDenied.counter());
    let no_stream = c.get(DropReason::NoStream.counter());
    let iommu = fabric.counters().get("drop.iommu_fault");
    let named = entries
        .iter()
        .filter(|e| e.requester == Offender::Device(rogue.id.0))
        .count();
    ctx.finish_sim("nagare-acl", &sim, n + attacks * 6)?;
    sim.shutdown();
    let mut s = Series::new(
        "acl",
        "attack_rounds",
        &["forged_pushes", "dropped", "logged"],
    );
    s.push(json!({
        "attack_rounds": attacks, "forged_pushes": attacks * 5, "dropped": denied + no_stream,
        "logged": logged, "access_denied": denied, "no_stream": no_stream,
        "iommu_faults": iommu, "victim_sent": out.sent, "victim_correct": out.replies.len(),
        "victim_wrong": out.wrong, "log_entries_read": entries.len(), "log_entries_naming_rogue": named,
    }));
    let checks = vec![
        CHECKS[0].judge(out.replies.len() as f64 / out.sent.max(1) as f64),
        CHECKS[1].judge(out.wrong as f64),
        CHECKS[2].judge((denied + no_stream) as f64 / (attacks * 5).max(1) as f64),
        CHECKS[3].judge(logged as f64 / (denied + no_stream).max(1) as f64),
        CHECKS[4].judge(iommu as f64 / attacks.max(1) as f64),
        CHECKS[5].judge(named as f64 / entries.len().max(1) as f64),
    ];
    // §4.5's words: every forged push dropped and logged.
    let words = Series::new("§4.5: every one dropped", "attack_rounds", &["dropped"])
        .kind(SeriesKind::Paper)
        .with(json!({"attack_rounds": attacks, "dropped": attacks * 5}));
    Ok(Outcome {
        series: vec![s, words],
        axes: vec![
            Axis::new("attack_rounds", "attack rounds"),
            Axis::new("forged_pushes", "forged pushes"),
            Axis::new("dropped", "pushes dropped"),
            Axis::new("logged", "error-log entries"),
        ],
        checks,
        notes: vec![
            "Each attack round is six writes: forged data into the crypto's output stream, the ML's output stream (forged replies), the NIC's pipe stream, a window no stream owns, the switch's configuration register, and the classifier's input window directly. The first five meet the switch's rules (four access denials, one push into no stream); the sixth is a peer-to-peer write that ACS redirects to the root complex, where the rogue's IOMMU domain maps nothing.".into(),
            "Only the CPU may write configuration entries (the switch checks the requester); a device's write there is an access denial like a forged push.".into(),
        ],
    })
}
