//! The preset sections the applications read (`presets/*.toml`), each
//! with the type it must fit.

use nextio_presets::Section;

use crate::rpc_client::RpcClientCosts;
use crate::rpc_server::SoftRpcCosts;

use nextio_hw::interrupt::pipeline::InstrMix;

use crate::chain::ChainCosts;
use crate::echo::EchoCosts;
use crate::log_monitor::LogMonitorCosts;
use crate::maglev::MaglevCosts;
use crate::mica::MicaCosts;
use crate::nitrosketch::SketchCosts;
use crate::vswitch::VswitchCosts;

/// Every section read by the applications.
pub const SECTIONS: &[Section] = &[
    Section::of::<EchoCosts>("apps.echo"),
    Section::of::<ChainCosts>("apps.chain"),
    Section::of::<InstrMix>("apps.kv"),
    Section::of::<SoftRpcCosts>("apps.soft_rpc"),
    Section::of::<RpcClientCosts>("apps.rpc_client"),
    Section::of::<MaglevCosts>("apps.maglev"),
    Section::of::<MicaCosts>("apps.mica"),
    Section::of::<SketchCosts>("apps.nitrosketch"),
    Section::of::<LogMonitorCosts>("apps.log_monitor"),
    Section::of::<VswitchCosts>("apps.vswitch"),
];
