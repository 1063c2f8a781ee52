//! Device models other than NICs, each behind the device API
//! ([`crate::device`]):
//!
//! * [`dma_bench`] — pcie-bench's DMA engine: streams of back-to-back DMA
//!   writes or reads, timed from the device;
//! * [`latency_accel`] — a DSA-like offload device whose work is only a
//!   latency, with descriptor portal, completion records and MSI-X.

pub mod dma_bench;
pub mod latency_accel;
