//! The preset sections the OS model reads (`presets/*.toml`), each with
//! the type it must fit.

use nextio_presets::Section;

use crate::accio::AccioOsCosts;
use crate::lauberhorn::LauberhornOsCosts;
use crate::net::IceConfig;
use crate::net::LinuxNetCosts;
use crate::net::costs::TestbedScheduler;

use crate::costs::OsCosts;
use crate::udma::UdmaTimes;

/// Every section read by the OS model.
pub const SECTIONS: &[Section] = &[
    Section::of::<OsCosts>("os.costs"),
    Section::of::<UdmaTimes>("os.udma"),
    Section::of::<LauberhornOsCosts>("os.lauberhorn"),
    Section::of::<AccioOsCosts>("os.accio"),
    Section::of::<IceConfig>("os.ice"),
    Section::of::<LinuxNetCosts>("os.linux_net.production"),
    Section::of::<LinuxNetCosts>("os.linux_net.accio_testbed"),
    Section::of::<TestbedScheduler>("os.linux_net.accio_testbed_scheduler"),
];
