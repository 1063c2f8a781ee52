//! Placeholder: the DPDK-style poll-mode driver lands here.
