//! nextio's applications.
//!
//! * [`kv`] — a key-value store serving GET and SCAN over real stored
//!   values (the RocksDB stand-in of the xUI paper's Fig. 7);
//! * [`lpm`] — an IPv4 longest-prefix-match routing table and the l3fwd
//!   forwarding step over real Ethernet/IPv4/UDP frames (Fig. 8).

pub mod kv;
pub mod lpm;
