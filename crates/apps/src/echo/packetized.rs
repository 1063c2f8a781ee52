//! Placeholder: the echo host on the packetized NIC lands here.
