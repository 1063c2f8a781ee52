//! Device models other than NICs, each behind the device API
//! ([`crate::device`]):
//!
//! * [`latency_accel`] — a DSA-like offload device whose work is only a
//!   latency, with descriptor portal, completion records and MSI-X.

pub mod latency_accel;
