//! The accelerator chain of the thesis's motivating example (§4.1,
//! Figure 8): an encrypted image arrives from the network, is decrypted
//! by a crypto accelerator, classified by an ML accelerator, and the
//! result goes back out of the NIC — on one host, in one of three ways:
//!
//! * [`ChainMode::CpuMediated`] — today's shared-memory interfaces
//!   (Table 2): a CPU thread receives from the Ensō NIC, drives each
//!   accelerator's command queue in host memory, and sends the result;
//! * [`ChainMode::Nagare`] — Nagare with streaming devices (Table 3): the
//!   CPU sets a policy graph up once; the NIC's pipe is the first stream,
//!   each device pushes its output into the next stream, the switch pushes
//!   the result as a frame into the NIC's push window;
//! * [`ChainMode::NagareLegacy`] — Nagare with the same accelerators and
//!   NIC unmodified, driven by the switch's adapters (§4.3).
//!
//! The host: a preset machine with its IOMMU on, one PCIe switch under a
//! root port (programmable for the Nagare modes, plain for the baseline),
//! and under it the Ensō NIC, the crypto and the ML accelerator. A client
//! on the NIC's wire sends sealed images ([`request`]) at a chosen rate and
//! checks every reply against the software reference ([`reference`]).

mod cpu;

pub use cpu::ChainCosts;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use nextio_engine::{Counters, Duration, Sim, Time};
use nextio_hw::accel::crypto::{self, AesGcm, OP_DECRYPT};
use nextio_hw::accel::ml::{self, Classifier, OP_CLASSIFY};
use nextio_hw::accel::{AccelConfig, Accelerator};
use nextio_hw::ethernet::LinkConfig;
use nextio_hw::fabric::{Attach, DeviceHandle, DeviceLink, SwitchConfig, SwitchId};
use nextio_hw::machine::{MachineSpec, frame_inbox};
use nextio_hw::nagare::{NagareConfig, NagareSwitch, PipelineConfig};
use nextio_hw::nic::enso::{EnsoNic, EnsoNicConfig, NotificationPolicy};
use nextio_hw::packet::{FlowKey, Frame, Macs, build_udp, parse_udp};
use nextio_hw::pcie::PcieConfig;
use nextio_hw::trafficgen::synthetic_flow;
use nextio_lib::nagare::{Hop, Nagare, Source, Via};
use nextio_os::{Host, OsCosts};
use thiserror::Error;

/// The key the client seals images with, and the graph's per-stream state.
pub const KEY: [u8; 16] = *b"chain-image-key!";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainMode {
    CpuMediated,
    Nagare,
    NagareLegacy,
}

impl ChainMode {
    pub const ALL: [ChainMode; 3] = [
        ChainMode::CpuMediated,
        ChainMode::Nagare,
        ChainMode::NagareLegacy,
    ];
    pub fn name(self) -> &'static str {
        match self {
            ChainMode::CpuMediated => "cpu-mediated",
            ChainMode::Nagare => "nagare",
            ChainMode::NagareLegacy => "nagare-legacy",
        }
    }
}

/// How to build the chain's host.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainConfig {
    pub machine: MachineSpec,
    pub mode: ChainMode,
    pub pipeline: PipelineConfig,
    /// The switch's forwarding (its latency is charged in every mode).
    pub switch: SwitchConfig,
    /// Links of the accelerators: gen3 x8, a QAT 8970's (Intel product
    /// brief: PCIe Gen3 x8).
    pub accel_link: PcieConfig,
}

impl ChainConfig {
    pub fn new(machine: MachineSpec, mode: ChainMode) -> ChainConfig {
        ChainConfig {
            machine,
            mode,
            pipeline: PipelineConfig::default(),
            switch: SwitchConfig::default(),
            accel_link: PcieConfig::gen_lanes(3, 8),
        }
    }
}

#[derive(Debug, Error)]
pub enum ChainError {
    #[error("building the chain host: {0}")]
    Build(String),
}

fn err(e: impl std::fmt::Display) -> ChainError {
    ChainError::Build(e.to_string())
}

/// A built chain host.
pub struct ChainSystem {
    pub host: Host,
    pub mode: ChainMode,
    pub switch: SwitchId,
    pub nagare: Option<DeviceHandle<NagareSwitch>>,
    pub nic: DeviceHandle<EnsoNic>,
    pub crypto: DeviceHandle<Accelerator<AesGcm>>,
    pub ml: DeviceHandle<Accelerator<Classifier>>,
    /// The CPU software's counters (errors, set-up, per-stage work).
    pub app: Rc<RefCell<Counters>>,
    /// When the CPU finished setting up (the data path may start), or why
    /// it could not.
    pub ready: Rc<RefCell<Option<Result<Time, String>>>>,
    /// The chain's streams, first to last, once set up (Nagare modes).
    pub streams: Rc<RefCell<Vec<u16>>>,
    pub flow: FlowKey,
}

/// The client's flow and the reply template (the reverse flow's headers).
pub fn client_flow() -> FlowKey {
    synthetic_flow(1)
}

/// The 42 header bytes of the replies.
pub fn reply_template(flow: FlowKey) -> Vec<u8> {
    let macs = Macs::default();
    let back = Macs {
        src: macs.dst,
        dst: macs.src,
    };
    let f = build_udp(back, flow.reversed(), &[], 64).unwrap_or_default();
    f[..f.len().min(42)].to_vec()
}

/// Image `i` of `bytes` bytes: deterministic content, its id in front.
pub fn image(i: u64, bytes: usize) -> Vec<u8> {
    let mut img: Vec<u8> = (0..bytes as u64)
        .map(|j| ((j.wrapping_mul(i + 7)) ^ (j >> 3) ^ i.wrapping_mul(131)) as u8)
        .collect();
    let n = img.len().min(8);
    img[..n].copy_from_slice(&i.to_le_bytes()[..n]);
    img
}

/// Request `i`: image `i` sealed under [`KEY`], nonce = `i`.
pub fn request(i: u64, bytes: usize) -> Vec<u8> {
    let mut nonce = [0u8; crypto::NONCE_BYTES];
    nonce[..8].copy_from_slice(&i.to_le_bytes());
    crypto::seal(&KEY, &nonce, &image(i, bytes))
}

/// What reply `seq` must carry for `sealed`: the sequence number, then the
/// classifier's result on the decrypted bytes.
pub fn reference(seq: u64, sealed: &[u8]) -> Option<Vec<u8>> {
    let plain = crypto::open(&KEY, sealed).ok()?;
    let (c, s) = ml::classify(&plain)?;
    let mut out = seq.to_le_bytes().to_vec();
    out.extend_from_slice(&ml::encode_result(c, s));
    Some(out)
}

/// Build the host of `cfg`, set its chain up, and return it (the set-up
/// runs as a CPU thread: run the simulator to let it finish).
pub fn build(sim: &Sim, cfg: &ChainConfig) -> Result<ChainSystem, ChainError> {
    let host = Host::new(sim, cfg.machine.clone(), OsCosts::default()).map_err(err)?;
    let fabric = host.machine().fabric().clone();
    let uplink = PcieConfig::gen_lanes(3, 16);
    let nagare_mode = cfg.mode != ChainMode::CpuMediated;
    let switch = if nagare_mode {
        fabric
            .add_programmable_switch(Attach::RootPort, uplink, cfg.switch, cfg.pipeline)
            .map_err(err)?
    } else {
        fabric
            .add_switch(Attach::RootPort, uplink, cfg.switch)
            .map_err(err)?
    };
    let at = Attach::Switch(switch);
    let nic_cfg = EnsoNicConfig {
        policy: NotificationPolicy::Reactive,
        push_window_bytes: if cfg.mode == ChainMode::Nagare {
            64 << 10
        } else {
            0
        },
        ..EnsoNicConfig::default()
    };
    let nic = host
        .attach(
            EnsoNic::new(nic_cfg).map_err(err)?,
            at,
            cfg.machine.nic_link(),
        )
        .map_err(err)?;
    let link = DeviceLink::pcie(cfg.accel_link.clone());
    let crypto = host
        .attach(
            Accelerator::new(AesGcm::default(), AccelConfig::default()).map_err(err)?,
            at,
            link.clone(),
        )
        .map_err(err)?;
    let ml = host
        .attach(
            Accelerator::new(Classifier::default(), AccelConfig::default()).map_err(err)?,
            at,
            link.clone(),
        )
        .map_err(err)?;
    let nagare = if nagare_mode {
        let n = host
            .attach_switch_function(
                NagareSwitch::new(NagareConfig::default()).map_err(err)?,
                switch,
                DeviceLink::pcie(PcieConfig::gen_lanes(3, 16)),
            )
            .map_err(err)?;
        let w = fabric.bar(n.id, 1).map(|b| b.base).unwrap_or(0);
        let s = fabric.bar(n.id, 2).map(|b| b.base).unwrap_or(0);
        n.borrow_mut().set_bar_addresses(w, s);
        Some(n)
    } else {
        None
    };
    let sys = ChainSystem {
        host,
        mode: cfg.mode,
        switch,
        nagare,
        nic,
        crypto,
        ml,
        app: Rc::new(RefCell::new(Counters::new())),
        ready: Rc::new(RefCell::new(None)),
        streams: Rc::new(RefCell::new(Vec::new())),
        flow: client_flow(),
    };
    match cfg.mode {
        ChainMode::CpuMediated => cpu::start(sim, &sys)?,
        ChainMode::Nagare | ChainMode::NagareLegacy => start_nagare(sim, &sys)?,
    }
    Ok(sys)
}

/// The CPU's whole part in Nagare: set the policy graph up, then leave.
fn start_nagare(sim: &Sim, sys: &ChainSystem) -> Result<(), ChainError> {
    let process = sys.host.create_process().map_err(err)?;
    let thread = process.thread(0).map_err(err)?;
    let Some(switch) = sys.nagare.clone() else {
        return Err(err("no Nagare switch"));
    };
    let mut lib = Nagare::open(thread.ctx.clone(), &process, switch).map_err(err)?;
    let template = reply_template(sys.flow);
    let legacy = sys.mode == ChainMode::NagareLegacy;
    let via = |entries: u32| {
        if legacy {
            Via::CommandQueue { entries }
        } else {
            Via::Stream
        }
    };
    let hops = vec![
        Hop {
            device: sys.crypto.id,
            via: via(64),
            op: OP_DECRYPT,
            param: 0,
            state: KEY,
        },
        Hop {
            device: sys.ml.id,
            via: via(64),
            op: OP_CLASSIFY,
            param: 0,
            state: [0; 16],
        },
        Hop {
            device: sys.nic.id,
            via: if legacy {
                Via::NicTx {
                    template,
                    entries: 64,
                }
            } else {
                Via::NicPush { template }
            },
            op: 0,
            param: 0,
            state: [0; 16],
        },
    ];
    let source = Source::EnsoFlow {
        nic: sys.nic.clone(),
        flow: sys.flow,
    };
    let (crypto, mlh) = (sys.crypto.clone(), sys.ml.clone());
    let (app, ready, streams) = (sys.app.clone(), sys.ready.clone(), sys.streams.clone());
    let ctx = thread.ctx;
    let s = sim.clone();
    sim.spawn(async move {
        let mut configure_ring = |dev, ring, entries| {
            if dev == crypto.id {
                crypto
                    .borrow_mut()
                    .configure_ring(ring, entries)
                    .map_err(|e| e.to_string())
            } else if dev == mlh.id {
                mlh.borrow_mut()
                    .configure_ring(ring, entries)
                    .map_err(|e| e.to_string())
            } else {
                Err("no such accelerator".into())
            }
        };
        match lib.create_chain(source, &hops, &mut configure_ring).await {
            Ok(chain) => {
                *streams.borrow_mut() = chain.streams;
                app.borrow_mut().add("config_entries", lib.entries_written);
                ctx.sync().await;
                *ready.borrow_mut() = Some(Ok(s.now()));
            }
            Err(e) => *ready.borrow_mut() = Some(Err(e.to_string())),
        }
    });
    Ok(())
}

/// A client's run against a chain host: what it sent and got back.
#[derive(Clone, Debug, Default)]
pub struct ClientOutcome {
    pub sent: u64,
    /// Replies, by sequence number: (latency, payload).
    pub replies: BTreeMap<u64, (Duration, Vec<u8>)>,
    /// Replies whose payload was not the reference, or unparseable.
    pub wrong: u64,
    pub first_sent: Time,
    pub last_reply: Time,
    /// Frames the wire into the NIC dropped (its queue full).
    pub wire_drops: u64,
}

/// Drive `sys` with `n` requests of `image_bytes`-byte images, one every
/// `interval` (0: all at once after set-up), run to quiescence (or
/// `deadline` after the last send), and check every reply.
pub fn run_client(
    sim: &Sim,
    sys: &ChainSystem,
    n: u64,
    image_bytes: usize,
    interval: Duration,
    deadline: Duration,
) -> Result<ClientOutcome, ChainError> {
    // Let set-up finish before the first request.
    sim.run();
    let start = match sys.ready.borrow().clone() {
        Some(Ok(t)) => t.max(sim.now()),
        Some(Err(e)) => return Err(err(format!("the chain's set-up failed: {e}"))),
        None => return Err(err("the chain's set-up never finished")),
    };
    let inbox = frame_inbox(sim);
    let wire = LinkConfig {
        queue_frames: 1 << 16,
        ..LinkConfig::default()
    };
    let (_to_client, to_nic) = sys
        .host
        .machine()
        .wire_port(sys.nic.id, 0, inbox.clone(), LinkConfig::default(), wire)
        .map_err(err)?;
    let flow = sys.flow;
    let requests: Vec<Vec<u8>> = (0..n).map(|i| request(i, image_bytes)).collect();
    let sent_at: Rc<RefCell<Vec<Time>>> = Rc::new(RefCell::new(Vec::new()));
    {
        let (s, w, reqs, sent) = (
            sim.clone(),
            to_nic.clone(),
            requests.clone(),
            sent_at.clone(),
        );
        sim.spawn(async move {
            s.sleep_until(start).await;
            for (i, payload) in reqs.iter().enumerate() {
                let size = (payload.len() + 46).max(64);
                let Ok(bytes) = build_udp(Macs::default(), flow, payload, size) else {
                    break;
                };
                sent.borrow_mut().push(s.now());
                let _ = w.try_send(Frame::new(bytes, i as u64));
                if interval > Duration::ZERO {
                    s.sleep(interval).await;
                }
            }
        });
    }
    let offer_end = start + Duration(interval.0.saturating_mul(n));
    sim.run_until(offer_end + deadline);
    let mut out = ClientOutcome {
        sent: sent_at.borrow().len() as u64,
        first_sent: sent_at.borrow().first().copied().unwrap_or(start),
        wire_drops: to_nic.counters().sum_prefix("drop."),
        ..ClientOutcome::default()
    };
    while let Some(head) = inbox.head_time() {
        if head > sim.now() {
            break;
        }
        let Some(f) = inbox.try_recv() else { break };
        let Ok(v) = parse_udp(&f.bytes) else {
            out.wrong += 1;
            continue;
        };
        let payload = f.bytes[v.payload_offset..v.payload_offset + v.payload_len].to_vec();
        let seq = payload
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
        let ok = seq.is_some_and(|s| {
            requests
                .get(s as usize)
                .and_then(|r| reference(s, r))
                .is_some_and(|want| want == payload)
        });
        match seq {
            Some(s) if ok && !out.replies.contains_key(&s) => {
                let sent = sent_at.borrow().get(s as usize).copied().unwrap_or(start);
                out.replies.insert(s, (head - sent, payload));
                out.last_reply = out.last_reply.max(head);
            }
            _ => out.wrong += 1,
        }
    }
    Ok(out)
}
