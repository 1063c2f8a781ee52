//! Placeholder: the packetized (E810-like) NIC lands here.
