//! A PCIe switch: one upstream port, several downstream ports, routing by
//! address windows, and a policy for peer-to-peer requests between its
//! downstream ports.
//!
//! With Access Control Services redirect on (what Linux enables whenever
//! an IOMMU isolates devices), a request from one downstream port to
//! another's address window is sent upstream to the root complex, where
//! the IOMMU decides; with it off the switch forwards the request straight
//! across, bypassing the IOMMU (PCIe Base Spec §6.12, ACS P2P Request
//! Redirect). The switch's own store-and-forward latency is charged to
//! every TLP it forwards.

use serde::{Deserialize, Serialize};

/// What a switch does with a request from one downstream port aimed at
/// another downstream port's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum P2pPolicy {
    /// ACS P2P Request Redirect: up to the root complex and its IOMMU.
    RedirectUpstream,
    /// Forward directly between the downstream ports.
    Direct,
}

/// Configuration of one switch: a preset's `[switch]`, where each value's
/// source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchConfig {
    /// Port-to-port latency of a TLP through the switch, charged after its
    /// last byte arrived (store-and-forward).
    pub forward_latency_ps: u64,
    pub p2p: P2pPolicy,
}

impl Default for SwitchConfig {
    /// The root preset's switch.
    fn default() -> Self {
        nextio_presets::root_section("switch")
    }
}
