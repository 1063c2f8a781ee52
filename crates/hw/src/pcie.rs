//! Placeholder: the pcie model lands here.
