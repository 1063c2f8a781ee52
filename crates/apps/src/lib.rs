//! nextio's applications, and the hosts they run on assembled as systems
//! under test.
//!
//! * [`app`] — the contract between a packet-processing application and
//!   the NIC interface it runs on ([`app::PacketApp`], [`app::AppMemory`]),
//!   so one implementation serves the Ensō pipes and the packetized mbufs;
//! * [`maglev`] — Google's Maglev load balancer (lookup table, connection
//!   tracking, destination rewrite);
//! * [`mica`] — the MICA key-value store (circular log, lossy index) over
//!   UDP, with a Zipf key sampler;
//! * [`nitrosketch`] — network telemetry: a count-min sketch with
//!   NitroSketch's geometric row sampling and heavy-hitter candidates;
//! * [`log_monitor`] — a log monitor counting the log lines that hold a
//!   set of patterns (Aho–Corasick over the payload text);
//! * [`vswitch`] — a virtual switch's forwarding step (flow table →
//!   output port), the application of the Ensō paper's copy comparison;
//! * [`chain`] — the accelerator chain of Nagare's motivating example
//!   (NIC → crypto → ML → NIC), CPU-mediated or through Nagare;
//! * [`echo`] — the echo server of the Ensō evaluation (receive, increment a
//!   payload byte, send back) on either NIC interface, behind one
//!   [`echo::EchoSystem`] shape so experiments can compare them;
//! * [`kv`] — a key-value store serving GET and SCAN over real stored
//!   values (the RocksDB stand-in of the xUI paper's Fig. 7);
//! * [`lpm`] — an IPv4 longest-prefix-match routing table and the l3fwd
//!   forwarding step over real Ethernet/IPv4/UDP frames (Fig. 8);
//! * [`rpc_client`] — an ONC RPC client over UDP on the DPDK-style driver;
//! * [`rpc_server`] — a user-level ONC RPC server (the software baseline)
//!   over a datagram source: kernel bypass here, kernel sockets later;
//! * [`primitives`] — the preset sections the applications read their
//!   costs from.

pub mod app;
pub mod chain;
pub mod echo;
pub mod kv;
pub mod log_monitor;
pub mod lpm;
pub mod maglev;
pub mod mica;
pub mod nitrosketch;
pub mod primitives;
pub mod rpc_client;
pub mod rpc_server;
pub mod vswitch;
