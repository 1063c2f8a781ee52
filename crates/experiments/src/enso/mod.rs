//! The Ensō evaluation (Ensō paper §3): the echo server on the Ensō NIC and
//! on a packetized (E810-like) NIC, compared on packet rate (Fig. 5), PCIe
//! metadata (Fig. 3b), cache misses (Fig. 3a) and latency under load
//! (Figs. 6–7), and real applications on both (Table 1, [`apps`]). Every
//! experiment runs the same bench ([`harness`]).

pub mod apps;
pub mod cache_misses;
pub mod harness;
pub mod notification_latency;
pub mod packet_rate;
pub mod pcie_metadata;

use nextio_apps::echo::NotificationMode;
use nextio_hw::pcie::{DllpSchedule, PcieConfig};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use nextio_hw::pcap;
use nextio_hw::trafficgen::{Arrivals, MAX_TRACE_BYTES, MAX_TRACE_FRAMES, Trace};
use serde_json::json;

use crate::experiment::{RunContext, RunError};
use crate::params::{ParamKind, ParamSpec};
use harness::{Interface, Trial};

/// An experiment's parameter list: its own specs followed by the
/// [`COMMON_PARAMS`].
macro_rules! with_common_params {
    ($($spec:expr),* $(,)?) => {
        &[
            $($spec,)*
            $crate::enso::COMMON_PARAMS[0],
            $crate::enso::COMMON_PARAMS[1],
            $crate::enso::COMMON_PARAMS[2],
            $crate::enso::COMMON_PARAMS[3],
            $crate::enso::COMMON_PARAMS[4],
            $crate::enso::COMMON_PARAMS[5],
            $crate::enso::COMMON_PARAMS[6],
            $crate::enso::COMMON_PARAMS[7],
            $crate::enso::COMMON_PARAMS[8],
        ]
    };
}
pub(crate) use with_common_params;

/// Parameters every Ensō experiment shares.
pub const COMMON_PARAMS: [ParamSpec; 9] = [
    ParamSpec::new(
        "frames",
        ParamKind::U64,
        "40000",
        "frames",
        "frames measured per trial, 100 to 10^7 (250× the default)",
    )
    .quick("6000")
    .int(100, 10_000_000),
    ParamSpec::new(
        "warmup_frames_per_core",
        ParamKind::U64,
        "20000",
        "frames",
        "frames offered before measuring, per echo core (RFC 2544 trial preparation): several laps of a core's 4096-mbuf pool, after which the packetized echo's loss stops changing; 0 to 10^6",
    )
    .int(0, 1_000_000),
    ParamSpec::new(
        "arrivals",
        ParamKind::Str,
        "constant",
        "",
        "frame departures from the generator: constant rate (EnsōGen's), Poisson, or `trace`: a replayed capture's own inter-arrival times, scaled so the mean is the offered rate (needs traffic_pcap)",
    )
    .choices(&["constant", "poisson", "trace"]),
    ParamSpec::new(
        "jitter",
        ParamKind::F64,
        "0",
        "fraction",
        "with arrivals=constant: each gap stretched or shrunk by a seeded uniform factor in 1 ± jitter, 0 to 1 (the mean rate is kept); 0 makes every seed give the same run",
    )
    .real(0.0, 1.0),
    ParamSpec::new(
        "traffic_pcap",
        ParamKind::Str,
        "none",
        "path",
        "replay the IPv4/UDP frames of this pcap or pcapng file (looped; their own sizes and flows) instead of synthetic frames; frames that cannot be replayed are skipped and counted in the result; `none` for synthetic",
    ),
    ParamSpec::new(
        "flows",
        ParamKind::U64,
        "256",
        "flows",
        "distinct UDP 5-tuples, spread over cores by RSS or the flow table; 1 to 65536 (the synthetic flows' source addresses are 192.168.x.y)",
    )
    .int(1, 65_536),
    ParamSpec::new(
        "pcie_gen",
        ParamKind::U64,
        "3",
        "",
        "PCIe generation, 1 to 5 (Ensō §3.3.1: both NICs run at PCIe 3.0 x16)",
    )
    .int(1, 5),
    ParamSpec::new(
        "pcie_lanes",
        ParamKind::U64,
        "16",
        "lanes",
        "PCIe lanes: 1, 2, 4, 8, 16 or 32",
    )
    .int(1, 32),
    ParamSpec::new(
        "dllp_schedule",
        ParamKind::Str,
        "spec",
        "",
        "when PCIe Ack/UpdateFC DLLPs go out: coalesced as the spec allows, or pcie-bench's per-lane assumption",
    )
    .choices(&DllpSchedule::NAMES),
];

/// What every trial of an Ensō experiment shares, from the common
/// parameters: frames per trial, flows, and the PCIe link.
pub struct Bench {
    pub arrivals: Arrivals,
    /// Frames read from `traffic_pcap`, if one was given.
    pub replay: Option<Arc<Trace>>,
    pub frames: u64,
    pub warmup_frames_per_core: u64,
    pub flows: u32,
    pub pcie: PcieConfig,
}

impl Bench {
    pub fn from_ctx(ctx: &RunContext) -> Result<Bench, RunError> {
        let bad = |m: &str| RunError::Config(m.to_string());
        let frames = ctx.params.u64("frames");
        if frames < 100 {
            return Err(bad("frames must be at least 100"));
        }
        let flows = u32::try_from(ctx.params.u64("flows"))
            .ok()
            .filter(|f| *f > 0)
            .ok_or_else(|| bad("flows must be 1..2^32"))?;
        let generation =
            u8::try_from(ctx.params.u64("pcie_gen")).map_err(|_| bad("pcie_gen must be 1-5"))?;
        let lanes =
            u8::try_from(ctx.params.u64("pcie_lanes")).map_err(|_| bad("bad pcie_lanes"))?;
        let dllp_schedule = DllpSchedule::from_name(ctx.params.str("dllp_schedule"))
            .ok_or_else(|| bad("dllp_schedule must be spec or pcie-bench"))?;
        let pcie = PcieConfig {
            generation,
            lanes,
            dllp_schedule,
            ..PcieConfig::default()
        };
        pcie.validate()
            .map_err(|e| RunError::Config(e.to_string()))?;
        let replay = match ctx.params.str("traffic_pcap") {
            "none" => None,
            path => Some(Arc::new(replay_trace(ctx, Path::new(path))?)),
        };
        let arrivals = match ctx.params.str("arrivals") {
            "poisson" => Arrivals::Poisson,
            "trace" if replay.is_none() => {
                return Err(bad(
                    "arrivals=trace replays a capture's timing: it needs traffic_pcap",
                ));
            }
            "trace" => Arrivals::Recorded,
            _ => match ctx.params.f64("jitter") {
                j if j > 0.0 => Arrivals::Jittered {
                    jitter_ppm: (j * 1e6).round() as u32,
                },
                _ => Arrivals::Constant,
            },
        };
        Ok(Bench {
            arrivals,
            replay,
            frames,
            warmup_frames_per_core: ctx.params.u64("warmup_frames_per_core"),
            flows,
            pcie,
        })
    }

    /// Mpps of traffic at `gbps` line rate: of `frame_bytes` frames, or of
    /// the replayed capture's mean frame size.
    pub fn mpps(&self, gbps: f64, frame_bytes: u64) -> f64 {
        let size = match &self.replay {
            Some(t) => t.mean_frame_bytes(),
            None => frame_bytes as f64,
        };
        gbps * 1e9 / (8.0 * (size + nextio_hw::ethernet::PER_FRAME_OVERHEAD_BYTES as f64)) / 1e6
    }

    /// A constant-rate trial of this bench.
    pub fn trial(
        &self,
        interface: Interface,
        cores: usize,
        frame_bytes: u64,
        rate_gbps: f64,
        seed: u64,
    ) -> Trial {
        Trial {
            interface,
            cores,
            frame_bytes: frame_bytes as usize,
            rate_gbps,
            frames: self.frames,
            warmup_frames: self.warmup_frames_per_core * cores as u64,
            flows: self.flows,
            arrivals: self.arrivals,
            replay: self.replay.clone(),
            pcie: self.pcie.clone(),
            seed,
            app: None,
        }
    }
}

/// The frames of a capture the generator can replay (see
/// [`nextio_hw::trafficgen::replay_skip_reason`]), with their capture times;
/// every other record is skipped and counted by reason, and what was read
/// is recorded in the run's inputs and notes. A file with no usable frame
/// is an error that says what it held.
fn replay_trace(ctx: &RunContext, path: &Path) -> Result<Trace, RunError> {
    let mut trace = Trace::new();
    let mut skipped: BTreeMap<&'static str, u64> = BTreeMap::new();
    let summary = pcap::read_with(path, |t, bytes| match trace.push(t, bytes) {
        Ok(()) => ControlFlow::Continue(()),
        Err("trace_full") => ControlFlow::Break(()),
        Err(reason) => {
            *skipped.entry(reason).or_default() += 1;
            ControlFlow::Continue(())
        }
    })
    .map_err(|e| RunError::Config(e.to_string()))?;
    for (reason, n) in &summary.skipped {
        *skipped.entry(reason).or_default() += n;
    }
    let list = |m: &BTreeMap<&str, u64>| {
        m.iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let format = summary.format.map(|f| f.name()).unwrap_or("capture");
    if trace.is_empty() {
        return Err(RunError::Config(format!(
            "{}: no frame to replay: of its {} frame records none is an unfragmented Ethernet/IPv4/UDP frame of at most 1518 B with valid checksums and at least 17 payload bytes (skipped: {})",
            path.display(),
            summary.records,
            if skipped.is_empty() {
                "none".to_string()
            } else {
                list(&skipped)
            }
        )));
    }
    let flows = trace.flows().len();
    let mut note = format!(
        "Traffic replayed from {} ({format}): {} of its {} frame records, {} flows, mean frame {:.0} B (FCS included), looped as needed; frame_bytes and flows only name the points.",
        path.display(),
        trace.len(),
        summary.records,
        flows,
        trace.mean_frame_bytes()
    );
    if !skipped.is_empty() {
        note.push_str(&format!(" Skipped: {}.", list(&skipped)));
    }
    if summary.stopped_early {
        note.push_str(&format!(
            " Only the first frames were kept (a replay keeps at most {MAX_TRACE_FRAMES} frames or {} MiB).",
            MAX_TRACE_BYTES >> 20
        ));
    }
    if !summary.blocks_skipped.is_empty() {
        let blocks: Vec<String> = summary
            .blocks_skipped
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        note.push_str(&format!(
            " pcapng blocks without frames skipped: {}.",
            blocks.join(", ")
        ));
    }
    ctx.record_input(
        "traffic_pcap",
        json!({
            "path": path.display().to_string(),
            "format": format,
            "records": summary.records,
            "replayed_frames": trace.len(),
            "flows": flows,
            "mean_frame_bytes": trace.mean_frame_bytes(),
            "skipped": skipped,
            "truncated_to_limit": summary.stopped_early,
            "blocks_skipped": summary.blocks_skipped,
        }),
        note,
    );
    Ok(trace)
}

/// The interfaces (or notification modes) named by parameter `key`.
pub fn interfaces(ctx: &RunContext, key: &str) -> Result<Vec<Interface>, RunError> {
    ctx.params
        .str_list(key)
        .iter()
        .map(|s| interface(s))
        .collect()
}

/// An offered load in Gb/s, which must be in (0, 100].
pub fn check_offered(gbps: f64) -> Result<f64, RunError> {
    if gbps > 0.0 && gbps <= 100.0 {
        Ok(gbps)
    } else {
        Err(RunError::Config(format!(
            "offered load {gbps} Gb/s is outside (0, 100]"
        )))
    }
}

/// The number of echo cores, which must be 1..=16 (the DUT has 16).
pub fn check_cores(cores: u64) -> Result<usize, RunError> {
    if (1..=16).contains(&cores) {
        Ok(cores as usize)
    } else {
        Err(RunError::Config(format!(
            "cores {cores} is outside 1..=16 (the DUT has 16)"
        )))
    }
}

/// Parse an interface/mode name.
pub fn interface(name: &str) -> Result<Interface, RunError> {
    Ok(match name {
        "packetized" => Interface::Packetized,
        "enso" | "reactive" => Interface::Enso(NotificationMode::Reactive),
        "per-packet" => Interface::Enso(NotificationMode::PerPacket),
        "prefetch" => Interface::Enso(NotificationMode::Prefetch),
        other => return Err(RunError::Config(format!("unknown interface `{other}`"))),
    })
}

/// Frame sizes must be Ethernet frames.
pub fn check_frame_bytes(sizes: &[u64]) -> Result<(), RunError> {
    match sizes.iter().find(|s| !(64..=1518).contains(*s)) {
        Some(bad) => Err(RunError::Config(format!(
            "frame_bytes {bad} is outside 64..=1518"
        ))),
        None => Ok(()),
    }
}
