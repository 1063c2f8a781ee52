//! The preset sections the OS model reads (`presets/*.toml`), each with
//! the type it must fit.

use nextio_presets::Section;

use crate::lauberhorn::LauberhornOsCosts;

use crate::costs::OsCosts;
use crate::udma::UdmaTimes;

/// Every section read by the OS model.
pub const SECTIONS: &[Section] = &[
    Section::of::<OsCosts>("os.costs"),
    Section::of::<UdmaTimes>("os.udma"),
    Section::of::<LauberhornOsCosts>("os.lauberhorn"),
];
