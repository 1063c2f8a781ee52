//! Device models other than NICs, each behind the device API
//! ([`crate::device`]):
//!
//! * [`blockdev`] — a storage-like block device: command doorbell, its
//!   own memory (a controller memory buffer peers reach), media of real
//!   bytes, reads by DMA to any bus address (peer to peer included);
//! * [`dma_bench`] — pcie-bench's DMA engine: streams of back-to-back DMA
//!   writes or reads, timed from the device;
//! * [`udma`] — the user-space DMA engine (DSA-like): work queues mapped
//!   into processes, descriptors submitted by MOVDIR64B or ENQCMD,
//!   virtual addresses translated per PASID, capabilities, batches,
//!   memmove / fill / compare / CRC-32C, completion records and MSI-X.

pub mod blockdev;
pub mod dma_bench;
pub mod udma;
