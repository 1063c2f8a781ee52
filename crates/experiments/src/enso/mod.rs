//! The Ensō evaluation (Ensō paper §3): the echo server on the Ensō NIC and
//! on a packetized (E810-like) NIC, compared on packet rate (Fig. 5), PCIe
//! metadata (Fig. 3b), cache misses (Fig. 3a) and latency under load
//! (Figs. 6–7). Every experiment runs the same bench ([`harness`]).

pub mod cache_misses;
pub mod harness;
pub mod notification_latency;
pub mod packet_rate;
pub mod pcie_metadata;

use nextio_apps::echo::NotificationMode;
use nextio_hw::pcie::PcieConfig;
use std::path::Path;
use std::sync::Arc;

use nextio_hw::trafficgen::{Arrivals, STAMP_BYTES};
use nextio_hw::{packet, pcap};

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
        ]
    };
}
pub(crate) use with_common_params;

/// Parameters every Ensō experiment shares.
pub const COMMON_PARAMS: [ParamSpec; 7] = [
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
        "frame departures from the generator: constant rate (EnsōGen's) or Poisson",
    )
    .choices(&["constant", "poisson"]),
    ParamSpec::new(
        "traffic_pcap",
        ParamKind::Str,
        "none",
        "path",
        "replay the IPv4/UDP frames of this pcap (looped) instead of synthetic frames; `none` for synthetic",
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
];

/// What every trial of an Ensō experiment shares, from the common
/// parameters: frames per trial, flows, and the PCIe link.
pub struct Bench {
    pub arrivals: Arrivals,
    /// Frames read from `traffic_pcap`, if one was given.
    pub replay: Option<Arc<Vec<Vec<u8>>>>,
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
        let pcie = PcieConfig {
            generation,
            lanes,
            ..PcieConfig::default()
        };
        pcie.validate()
            .map_err(|e| RunError::Config(e.to_string()))?;
        let arrivals = match ctx.params.str("arrivals") {
            "poisson" => Arrivals::Poisson,
            _ => Arrivals::Constant,
        };
        let replay = match ctx.params.str("traffic_pcap") {
            "none" => None,
            path => Some(Arc::new(replay_frames(Path::new(path))?)),
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
        }
    }
}

/// The frames of a pcap the generator can replay: IPv4/UDP frames with room
/// for its stamp, at most a full-size Ethernet frame. Anything else in the
/// file is skipped; a file with none left is an error.
fn replay_frames(path: &Path) -> Result<Vec<Vec<u8>>, RunError> {
    let frames = pcap::read(path).map_err(|e| RunError::Config(e.to_string()))?;
    let total = frames.len();
    let usable: Vec<Vec<u8>> = frames
        .into_iter()
        .map(|(_, bytes)| bytes)
        .filter(|b| {
            packet::frame_bytes(b.len()) <= packet::MAX_FRAME_BYTES
                && packet::parse_udp(b).is_ok_and(|v| v.payload_len >= STAMP_BYTES)
        })
        .collect();
    if usable.is_empty() {
        return Err(RunError::Config(format!(
            "{}: none of its {total} frames is an IPv4/UDP frame with at least {STAMP_BYTES} payload bytes",
            path.display()
        )));
    }
    Ok(usable)
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
