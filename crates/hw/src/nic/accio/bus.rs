//! The NIC's port on a narrow system bus: what it may put on the bus per
//! second, and the transfers waiting for their turn.
//!
//! The fabric times a device's transactions on its link; an on-chip bus
//! narrower than that link (the prototype's 64-bit TileLink system bus at
//! 50 MHz: 8 bytes per cycle, 400 MB/s, §7) is this port's to enforce: a
//! transfer is issued to the fabric only once the bus has carried the
//! ones before it. Without a rate the port issues at once.
//!
//! Invariant: transfers are issued in the order they were submitted, never
//! before their bus time, and each exactly once.

use std::collections::VecDeque;

use nextio_engine::{Duration, Rate, Serializer, Time};

use crate::pcie::Purpose;

/// A transfer the engine wants on the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transfer {
    Write {
        addr: u64,
        data: Vec<u8>,
        purpose: Purpose,
        tag: u64,
    },
    Read {
        addr: u64,
        len: u64,
        purpose: Purpose,
        tag: u64,
    },
}

impl Transfer {
    /// Bytes it occupies on the bus: a write's data, or a read's request
    /// beat (its data returns on the other channel).
    fn bus_bytes(&self) -> u64 {
        match self {
            Transfer::Write { data, .. } => data.len() as u64,
            Transfer::Read { .. } => 8,
        }
    }
}

/// The port.
pub struct BusPort {
    serializer: Option<Serializer>,
    free_at: Time,
    waiting: VecDeque<(Time, Transfer)>,
}

impl BusPort {
    /// A port limited to `bytes_per_s`, or unlimited.
    pub fn new(bytes_per_s: Option<u64>) -> BusPort {
        let serializer = bytes_per_s
            .and_then(|b| Rate::from_bits_per_s(b.saturating_mul(8)))
            .map(|r| Serializer::new(r, 1, 1));
        BusPort {
            serializer,
            free_at: Time::ZERO,
            waiting: VecDeque::new(),
        }
    }

    /// Book `t` at `now`: `Ok(t)` to issue now, or `Err(when)` if it was
    /// queued to go at `when` (the caller sets a timer for it).
    pub fn submit(&mut self, now: Time, t: Transfer) -> Result<Transfer, Time> {
        let Some(ser) = self.serializer.as_mut() else {
            return Ok(t);
        };
        if now >= self.free_at && self.waiting.is_empty() {
            ser.reset();
        }
        let start = now.max(self.free_at);
        self.free_at = start + ser.next(t.bus_bytes());
        if start <= now && self.waiting.is_empty() {
            Ok(t)
        } else {
            self.waiting.push_back((start, t));
            Err(start)
        }
    }

    /// Transfers whose bus time has come.
    pub fn due(&mut self, now: Time) -> Vec<Transfer> {
        let mut out = Vec::new();
        while self.waiting.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, t)) = self.waiting.pop_front() {
                out.push(t);
            }
        }
        out
    }

    /// When the bus is free of everything submitted so far.
    pub fn free_at(&self) -> Time {
        self.free_at
    }

    /// Transfers waiting.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The time `bytes` take on the bus (zero without a rate).
    pub fn time_for(&self, bytes: u64) -> Duration {
        self.serializer
            .as_ref()
            .map_or(Duration::ZERO, |s| s.one_off(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(n: usize) -> Transfer {
        Transfer::Write {
            addr: 0,
            data: vec![0; n],
            purpose: "packet-data",
            tag: 0,
        }
    }

    #[test]
    fn a_narrow_bus_spaces_transfers_at_its_rate() {
        let mut b = BusPort::new(Some(400_000_000));
        assert!(b.submit(Time::ZERO, w(80)).is_ok());
        // 80 B at 400 MB/s: 200 ns.
        assert_eq!(b.submit(Time::ZERO, w(8)), Err(Time(200_000)));
        assert_eq!(b.submit(Time::ZERO, w(8)), Err(Time(220_000)));
        assert!(b.due(Time(199_999)).is_empty());
        assert_eq!(b.due(Time(220_000)).len(), 2);
        let mut free = BusPort::new(None);
        assert!(free.submit(Time::ZERO, w(1 << 20)).is_ok());
        assert_eq!(free.waiting(), 0);
    }
}
