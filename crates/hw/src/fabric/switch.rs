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
pub enum P2pPolicy {
    /// ACS P2P Request Redirect: up to the root complex and its IOMMU.
    RedirectUpstream,
    /// Forward directly between the downstream ports.
    Direct,
}

/// Configuration of one switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchConfig {
    /// Port-to-port latency of a TLP through the switch. 150 ns: Broadcom
    /// specifies "~150 ns" cut-through port-to-port latency for its PEX
    /// 8700/8600 switches (product briefs); modelled per TLP after its
    /// last byte arrived (store-and-forward), an upper bound.
    pub forward_latency_ps: u64,
    pub p2p: P2pPolicy,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            forward_latency_ps: 150_000,
            p2p: P2pPolicy::RedirectUpstream,
        }
    }
}
