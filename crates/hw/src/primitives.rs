//! The preset sections the hardware models read (`presets/*.toml`), each
//! with the type it must fit: what a run's overrides are checked against
//! before anything is built.

use nextio_presets::Section;

use crate::accel::AccelConfig;
use crate::accel::crypto::AesGcm;
use crate::accel::ml::Classifier;
use crate::accio::ict::IctConfig;
use crate::devices::blockdev::BlockDevConfig;
use crate::devices::udma::UdmaCosts;
use crate::ethernet::LinkConfig;
use crate::fabric::SwitchConfig;
use crate::interrupt::pipeline::{CoreParams, Programs, UcodeCosts};
use crate::machine::MachineSpec;
use crate::nagare::{NagareConfig, PipelineConfig};
use crate::nic::accio::AccioNicPreset;
use crate::nic::enso::EnsoNicConfig;
use crate::nic::lauberhorn::LauberhornConfig;
use crate::nic::packetized::PacketizedConfig;
use crate::nic::rdma::RdmaNicConfig;

/// Every section read by a hardware model.
pub const SECTIONS: &[Section] = &[
    Section::of::<MachineSpec>("machine"),
    Section::of::<SwitchConfig>("switch"),
    Section::of::<LinkConfig>("ethernet"),
    Section::of::<EnsoNicConfig>("nic.enso"),
    Section::of::<PacketizedConfig>("nic.packetized"),
    Section::of::<CoreParams>("xui.core"),
    Section::of::<UcodeCosts>("xui.ucode"),
    Section::of::<Programs>("programs"),
    Section::of::<UdmaCosts>("devices.udma"),
    Section::of::<BlockDevConfig>("devices.blockdev"),
    Section::of::<NagareConfig>("nagare.switch"),
    Section::of::<PipelineConfig>("nagare.pipeline"),
    Section::of::<AccelConfig>("accel"),
    Section::of::<AesGcm>("accel_kernels.aes_gcm"),
    Section::of::<Classifier>("accel_kernels.classifier"),
    Section::of::<LauberhornConfig>("nic.lauberhorn"),
    Section::of::<AccioNicPreset>("nic.accio.prototype"),
    Section::of::<AccioNicPreset>("nic.accio.server"),
    Section::of::<IctConfig>("accio.ict"),
    Section::of::<RdmaNicConfig>("nic.rdma"),
];
