//! nextio's experiments: each reproduces one paper figure, table or
//! reference model, and reports the paper's numbers beside the model's.
//!
//! * [`params`] turns `KEY=VALUE` strings into validated parameters;
//! * [`experiment`] defines the [`Experiment`] trait and the result record;
//! * [`output`] and [`report`] write `result.json`, CSVs, SVG charts and the
//!   `index.html` report; [`compare`] sets two runs side by side;
//! * one module per experiment family, listed in [`all`].

pub mod accio;
pub mod cache_layout;
pub mod chart;
pub mod compare;
pub mod enso;
pub mod ethernet_linerate;
pub mod experiment;
pub mod lauberhorn;
pub mod nagare;
pub mod output;
pub mod params;
pub mod pcie_bandwidth;
pub mod primitives;
pub mod report;
pub mod seeds;
pub mod shard;
mod udma_common;
pub mod udma_cross_space;
pub mod udma_offload;
pub mod udma_p2p;
pub mod udma_pollution;
pub mod udma_submission;
mod xui_common;
pub mod xui_dsa;
pub mod xui_l3fwd;
pub mod xui_receiver_overhead;
pub mod xui_rocksdb;
pub mod xui_safepoints;
pub mod xui_timer_core;

pub use experiment::{
    Axis, Check, CheckSpec, Experiment, ExperimentResult, Origin, Outcome, Reference, RunContext,
    RunError, RunInfo, Series, SeriesKind, SimTally, Tolerance, Verdict, execute,
};
pub use params::{ParamKind, ParamSpec, Params};

/// Every experiment, in the order `nextio list` shows them.
pub fn all() -> Vec<&'static dyn Experiment> {
    vec![
        &ethernet_linerate::EthernetLinerate,
        &pcie_bandwidth::PcieBandwidth,
        &cache_layout::CacheLayout,
        &enso::packet_rate::EnsoPacketRate,
        &enso::pcie_metadata::EnsoPcieMetadata,
        &enso::cache_misses::EnsoCacheMisses,
        &enso::notification_latency::EnsoNotificationLatency,
        &enso::apps::EnsoApps,
        &xui_receiver_overhead::XuiReceiverOverhead,
        &xui_safepoints::XuiSafepoints,
        &xui_timer_core::XuiTimerCore,
        &xui_rocksdb::XuiRocksdb,
        &xui_l3fwd::XuiL3fwd,
        &xui_dsa::XuiDsa,
        &udma_offload::UdmaOffload,
        &udma_submission::UdmaSubmission,
        &udma_pollution::UdmaPollution,
        &udma_cross_space::UdmaCrossSpace,
        &udma_p2p::UdmaP2p,
        &nagare::chain::NagareChain,
        &nagare::switch_latency::NagareSwitchLatency,
        &nagare::cpu_push::NagareCpuPush,
        &nagare::acl::NagareAcl,
        &lauberhorn::rtt::LauberhornRtt,
        &lauberhorn::rpc_cycles::LauberhornRpcCycles,
        &lauberhorn::large::LauberhornLarge,
        &lauberhorn::nested::LauberhornNested,
        &lauberhorn::dynamic::LauberhornDynamic,
        &lauberhorn::with_xui::LauberhornWithXui,
        &accio::linux_breakdown::AccioLinuxBreakdown,
        &accio::latency::AccioLatency,
        &accio::cpu::AccioCpu,
        &accio::multiplex::AccioMultiplex,
        &accio::ict_pressure::AccioIctPressure,
        &accio::throughput::AccioThroughput,
        &accio::fallback::AccioFallback,
        &accio::with_enso::AccioWithEnso,
        &accio::dpdk_multiprocess::DpdkMultiprocess,
    ]
}

/// The experiment called `name`.
pub fn find(name: &str) -> Option<&'static dyn Experiment> {
    all().into_iter().find(|e| e.name() == name)
}
