//! Placeholder: the echo host on the Ensō NIC lands here.
