//! Flow-control credits: a receiver advertises buffer space for posted
//! requests (headers and data) and non-posted requests (headers), and a
//! transmitter may only send a TLP the receiver has room for. Credits come
//! back when the receiver has consumed the TLP, after an UpdateFC DLLP's
//! flight. Completions are not credit-limited: endpoints and root ports
//! advertise infinite completion credits (PCIe Base Spec §2.6.1, Table
//! 2-46, "Infinite Credit" for completions at endpoints and root ports).
//!
//! Credits only bind when a receiver drains slower than the link fills it
//! (a slow peer device, a switch port behind a narrower link); with a fast
//! receiver they never delay a TLP.
//!
//! Invariant: credits in use never exceed what the receiver advertised.
//! Simplification: credits are taken in submission order; a TLP submitted
//! later but ready earlier (it fills a gap on the lane) is credited as if
//! it came last.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use nextio_engine::Time;
use serde::{Deserialize, Serialize};

use super::PcieError;

/// Bytes per data credit (PCIe Base Spec §2.6.1: one credit is 4 DW).
pub const CREDIT_UNIT_BYTES: u64 = 16;

/// What a receiver advertises: a preset's `[machine.nic_slot.credits]`,
/// where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditConfig {
    /// The receiver never limits its transmitter: a root port, which
    /// drains its receive queues into the on-chip fabric faster than any
    /// link fills them (an assumption, which pcie-bench's closed form
    /// makes too).
    #[serde(default)]
    pub unlimited: bool,
    /// Posted request headers (PH).
    pub posted_headers: u32,
    /// Posted request data (PD), in 16-byte credits.
    pub posted_data: u32,
    /// Non-posted request headers (NPH).
    pub non_posted_headers: u32,
}

impl Default for CreditConfig {
    /// The root preset's NIC-slot credits. Root ports are
    /// [`CreditConfig::UNLIMITED`].
    fn default() -> Self {
        nextio_presets::root_section("machine.nic_slot.credits")
    }
}

impl CreditConfig {
    /// A receiver that never limits its transmitter.
    pub const UNLIMITED: CreditConfig = CreditConfig {
        unlimited: true,
        posted_headers: u32::MAX,
        posted_data: u32::MAX,
        non_posted_headers: u32::MAX,
    };
}

impl CreditConfig {
    pub fn validate(&self) -> Result<(), PcieError> {
        if self.unlimited {
            return Ok(());
        }
        if self.posted_headers == 0 {
            return Err(PcieError::NoCredits("posted header"));
        }
        if self.posted_data == 0 {
            return Err(PcieError::NoCredits("posted data"));
        }
        if self.non_posted_headers == 0 {
            return Err(PcieError::NoCredits("non-posted header"));
        }
        Ok(())
    }
}

/// The kind of request, for credit accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreditClass {
    Posted,
    NonPosted,
    Completion,
}

/// The credits one receiver has outstanding with its transmitter.
#[derive(Clone, Debug)]
pub struct Credits {
    cfg: CreditConfig,
    used_ph: u32,
    used_pd: u32,
    used_nph: u32,
    /// Credits coming back: (time, class, data credits).
    returns: BinaryHeap<Reverse<(Time, u8, u32)>>,
    /// TLPs that had to wait for credits, and how long in total.
    pub stalls: u64,
    pub stalled_ps: u64,
}

fn class_code(c: CreditClass) -> u8 {
    match c {
        CreditClass::Posted => 0,
        CreditClass::NonPosted => 1,
        CreditClass::Completion => 2,
    }
}

impl Credits {
    pub fn new(cfg: CreditConfig) -> Credits {
        Credits {
            cfg,
            used_ph: 0,
            used_pd: 0,
            used_nph: 0,
            returns: BinaryHeap::new(),
            stalls: 0,
            stalled_ps: 0,
        }
    }

    fn fits(&self, class: CreditClass, data: u32) -> bool {
        match class {
            CreditClass::Posted => {
                self.used_ph < self.cfg.posted_headers
                    && self.used_pd + data <= self.cfg.posted_data
            }
            CreditClass::NonPosted => self.used_nph < self.cfg.non_posted_headers,
            CreditClass::Completion => true,
        }
    }

    fn give_back(&mut self, class: u8, data: u32) {
        match class {
            0 => {
                self.used_ph -= 1;
                self.used_pd -= data;
            }
            1 => self.used_nph -= 1,
            _ => {}
        }
    }

    /// Data credits a payload of `bytes` takes.
    pub fn data_credits(bytes: u64) -> u32 {
        bytes.div_ceil(CREDIT_UNIT_BYTES) as u32
    }

    /// The earliest time from `ready` on at which a TLP of `class` with
    /// `payload_bytes` of data may be sent, and take its credits. The
    /// caller must then say when they come back with [`Credits::release`].
    pub fn acquire(&mut self, ready: Time, class: CreditClass, payload_bytes: u64) -> Time {
        if class == CreditClass::Completion || self.cfg.unlimited {
            return ready;
        }
        // A payload larger than all data credits could never be sent; it
        // is credited as the whole buffer (validated MPS ≤ 4096 B always
        // fits the default 16 KiB).
        let data = if class == CreditClass::Posted {
            Self::data_credits(payload_bytes).min(self.cfg.posted_data)
        } else {
            0
        };
        let mut at = ready;
        // Everything returned by `ready` is available again.
        while let Some(Reverse((t, c, d))) = self.returns.peek().copied() {
            if t > at {
                break;
            }
            self.returns.pop();
            self.give_back(c, d);
        }
        // Then wait for returns, in time order, until the TLP fits. Every
        // acquired credit is released by the fabric, so the heap cannot run
        // dry while credits are in use.
        while !self.fits(class, data) {
            let Some(Reverse((t, c, d))) = self.returns.pop() else {
                break;
            };
            self.give_back(c, d);
            at = at.max(t);
        }
        if at > ready {
            self.stalls += 1;
            self.stalled_ps += (at - ready).ps();
        }
        match class {
            CreditClass::Posted => {
                self.used_ph += 1;
                self.used_pd += data;
            }
            CreditClass::NonPosted => self.used_nph += 1,
            CreditClass::Completion => {}
        }
        debug_assert!(self.used_ph <= self.cfg.posted_headers);
        debug_assert!(self.used_pd <= self.cfg.posted_data);
        debug_assert!(self.used_nph <= self.cfg.non_posted_headers);
        at
    }

    /// The credits of a TLP acquired earlier come back at `at`.
    pub fn release(&mut self, at: Time, class: CreditClass, payload_bytes: u64) {
        if class == CreditClass::Completion || self.cfg.unlimited {
            return;
        }
        let data = if class == CreditClass::Posted {
            Self::data_credits(payload_bytes).min(self.cfg.posted_data)
        } else {
            0
        };
        self.returns.push(Reverse((at, class_code(class), data)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_receiver_holds_the_sender_back() {
        let mut c = Credits::new(CreditConfig {
            unlimited: false,
            posted_headers: 2,
            posted_data: 1024,
            non_posted_headers: 1,
        });
        assert_eq!(c.acquire(Time(0), CreditClass::Posted, 64), Time(0));
        c.release(Time(100), CreditClass::Posted, 64);
        assert_eq!(c.acquire(Time(0), CreditClass::Posted, 64), Time(0));
        c.release(Time(200), CreditClass::Posted, 64);
        // Both headers are in use: the third waits for the first return.
        assert_eq!(c.acquire(Time(10), CreditClass::Posted, 64), Time(100));
        c.release(Time(300), CreditClass::Posted, 64);
        assert_eq!(c.stalls, 1);
        assert_eq!(c.stalled_ps, 90);
        // Non-posted and completions are accounted separately.
        assert_eq!(c.acquire(Time(10), CreditClass::NonPosted, 0), Time(10));
        assert_eq!(c.acquire(Time(10), CreditClass::Completion, 256), Time(10));
    }

    #[test]
    fn data_credits_bind_too() {
        let mut c = Credits::new(CreditConfig {
            unlimited: false,
            posted_headers: 100,
            posted_data: 32, // 512 B
            non_posted_headers: 1,
        });
        assert_eq!(c.acquire(Time(0), CreditClass::Posted, 256), Time(0));
        c.release(Time(50), CreditClass::Posted, 256);
        assert_eq!(c.acquire(Time(0), CreditClass::Posted, 256), Time(0));
        c.release(Time(70), CreditClass::Posted, 256);
        assert_eq!(c.acquire(Time(0), CreditClass::Posted, 16), Time(50));
    }
}
