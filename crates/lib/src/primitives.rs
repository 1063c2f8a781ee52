//! The preset sections the user-space software reads (`presets/*.toml`),
//! each with the type it must fit.

use nextio_presets::Section;

use crate::accio::LibCosts;
use crate::cmdq::CmdqCosts;
use crate::lauberhorn::RuntimeCosts;
use crate::nagare::NagareLibCosts;

use crate::dpdk::{DriverCosts, PmdConfig};
use crate::enso::EnsoLibConfig;
use crate::rdma::VerbsCosts;
use crate::runtime::RuntimeDefaults;
use crate::udma::UdmaLibCosts;

/// Every section read by the libraries.
pub const SECTIONS: &[Section] = &[
    Section::of::<PmdConfig>("dpdk.pmd"),
    Section::of::<DriverCosts>("dpdk.costs"),
    Section::of::<EnsoLibConfig>("enso_lib"),
    Section::of::<RuntimeDefaults>("runtime"),
    Section::of::<UdmaLibCosts>("udma_lib"),
    Section::of::<RuntimeCosts>("lauberhorn_lib"),
    Section::of::<LibCosts>("accio_lib"),
    Section::of::<CmdqCosts>("cmdq_lib"),
    Section::of::<NagareLibCosts>("nagare_lib"),
    Section::of::<VerbsCosts>("rdma_lib"),
];
