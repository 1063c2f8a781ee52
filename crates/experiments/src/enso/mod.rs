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

use crate::experiment::{RunContext, RunError};
use crate::params::{ParamKind, ParamSpec};
use harness::Interface;

/// Parameters every Ensō experiment shares.
pub const COMMON_PARAMS: [ParamSpec; 4] = [
    ParamSpec::new(
        "frames",
        ParamKind::U64,
        "40000",
        "frames",
        "frames offered per trial",
    )
    .quick("6000"),
    ParamSpec::new(
        "flows",
        ParamKind::U64,
        "256",
        "flows",
        "distinct UDP 5-tuples, spread over cores by RSS or the flow table",
    ),
    ParamSpec::new(
        "pcie_gen",
        ParamKind::U64,
        "3",
        "",
        "PCIe generation (Ensō §3.3.1: both NICs run at PCIe 3.0 x16)",
    ),
    ParamSpec::new("pcie_lanes", ParamKind::U64, "16", "lanes", "PCIe lanes"),
];

/// The PCIe link both NICs sit behind, from the common parameters.
pub fn pcie_config(ctx: &RunContext) -> Result<PcieConfig, RunError> {
    let generation = u8::try_from(ctx.params.u64("pcie_gen"))
        .map_err(|_| RunError::Config("pcie_gen must be 1-5".into()))?;
    let lanes = u8::try_from(ctx.params.u64("pcie_lanes"))
        .map_err(|_| RunError::Config("bad pcie_lanes".into()))?;
    let cfg = PcieConfig {
        generation,
        lanes,
        ..PcieConfig::default()
    };
    cfg.validate()
        .map_err(|e| RunError::Config(e.to_string()))?;
    Ok(cfg)
}

/// `frames` and `flows` from the common parameters, validated.
pub fn frames_and_flows(ctx: &RunContext) -> Result<(u64, u32), RunError> {
    let frames = ctx.params.u64("frames");
    if frames < 100 {
        return Err(RunError::Config("frames must be at least 100".into()));
    }
    let flows = u32::try_from(ctx.params.u64("flows"))
        .ok()
        .filter(|f| *f > 0);
    Ok((
        frames,
        flows.ok_or_else(|| RunError::Config("flows must be 1..2^32".into()))?,
    ))
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
