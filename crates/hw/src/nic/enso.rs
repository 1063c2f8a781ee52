//! Placeholder: the Ensō NIC lands here.
