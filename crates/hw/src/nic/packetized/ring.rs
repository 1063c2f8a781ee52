//! A descriptor ring as the NIC sees it — where it is, the tail software
//! last wrote, the next descriptor to fetch — and the window of descriptor
//! fetches in flight.
//!
//! Invariants:
//! * the NIC fetches only descriptors software handed over: `fetch_next`
//!   never passes the tail;
//! * fetched descriptors are used in ring order whatever order the
//!   fetches' completions arrive in: [`Fetches`] releases a fetch only
//!   when every earlier one has completed or faulted.

use std::collections::VecDeque;

/// A descriptor ring as configured by the driver.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Ring {
    /// Bus address (IOVA) of descriptor 0.
    pub base: u64,
    /// 0: not configured.
    pub entries: u32,
    /// Last tail value written by software.
    pub tail: u32,
    /// Next descriptor index the NIC will fetch.
    pub fetch_next: u32,
}

impl Ring {
    pub fn new(base: u64, entries: u32) -> Ring {
        Ring {
            base,
            entries,
            ..Ring::default()
        }
    }

    pub fn configured(&self) -> bool {
        self.entries > 0
    }

    /// Software writes the tail: refused if the ring is unconfigured or the
    /// value is not an index of it.
    pub fn set_tail(&mut self, value: u32) -> bool {
        if value >= self.entries {
            return false;
        }
        self.tail = value;
        true
    }

    /// Descriptors handed over and not fetched yet.
    pub fn unfetched(&self) -> u32 {
        if self.entries == 0 {
            0
        } else {
            (self.tail + self.entries - self.fetch_next) % self.entries
        }
    }

    /// The next fetch of at most `batch` descriptors: `(first, n)`, never
    /// past the tail nor across the end of the ring (one DMA read covers
    /// contiguous bytes). Marks them fetched.
    pub fn take_fetch(&mut self, batch: u32) -> Option<(u32, u32)> {
        let n = self
            .unfetched()
            .min(batch)
            .min(self.entries - self.fetch_next);
        if n == 0 {
            return None;
        }
        let first = self.fetch_next;
        self.fetch_next = (first + n) % self.entries;
        Some((first, n))
    }

    /// Bus address of descriptor `index` of `desc_bytes` bytes.
    pub fn addr(&self, index: u32, desc_bytes: u64) -> u64 {
        self.base + index as u64 * desc_bytes
    }
}

/// Where a fetch stands.
#[derive(Debug)]
enum FetchState {
    InFlight,
    Arrived(Vec<u8>),
    Faulted,
}

#[derive(Debug)]
struct Fetch {
    seq: u64,
    first: u32,
    n: u32,
    state: FetchState,
}

/// A fetch released in ring order.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Fetched {
    /// The descriptors `first..first + n` arrived with these bytes.
    Arrived { first: u32, n: u32, bytes: Vec<u8> },
    /// The fetch of `n` descriptors from `first` faulted: they are lost.
    Faulted { first: u32, n: u32 },
}

/// Descriptor fetches issued and not yet released, oldest first.
#[derive(Debug, Default)]
pub(super) struct Fetches {
    queue: VecDeque<Fetch>,
    /// Descriptors in fetches that have not faulted.
    promised: u32,
}

impl Fetches {
    /// A fetch of `n` descriptors from `first` was issued as `seq`.
    pub fn issued(&mut self, seq: u64, first: u32, n: u32) {
        self.queue.push_back(Fetch {
            seq,
            first,
            n,
            state: FetchState::InFlight,
        });
        self.promised += n;
    }

    fn find(&mut self, seq: u64) -> Option<&mut Fetch> {
        self.queue
            .iter_mut()
            .find(|f| f.seq == seq && matches!(f.state, FetchState::InFlight))
    }

    /// Fetch `seq`'s bytes arrived. False if no fetch in flight has that
    /// sequence number (a stale completion).
    pub fn arrived(&mut self, seq: u64, bytes: &[u8]) -> bool {
        match self.find(seq) {
            Some(f) => {
                f.state = FetchState::Arrived(bytes.to_vec());
                true
            }
            None => false,
        }
    }

    /// Fetch `seq` faulted. False if no fetch in flight has that sequence
    /// number.
    pub fn faulted(&mut self, seq: u64) -> bool {
        let Some(f) = self.find(seq) else {
            return false;
        };
        f.state = FetchState::Faulted;
        let n = f.n;
        self.promised -= n;
        true
    }

    /// The oldest fetch, once it has completed or faulted.
    pub fn release(&mut self) -> Option<Fetched> {
        if matches!(self.queue.front()?.state, FetchState::InFlight) {
            return None;
        }
        let f = self.queue.pop_front()?;
        Some(match f.state {
            FetchState::Arrived(bytes) => {
                self.promised -= f.n;
                Fetched::Arrived {
                    first: f.first,
                    n: f.n,
                    bytes,
                }
            }
            FetchState::Faulted | FetchState::InFlight => Fetched::Faulted {
                first: f.first,
                n: f.n,
            },
        })
    }

    /// Descriptors fetched or being fetched and not released yet, the
    /// faulted excluded: what the NIC can still count on.
    pub fn promised(&self) -> u32 {
        self.promised
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetches_stop_at_the_tail_and_the_ring_end() {
        let mut r = Ring::new(0x1000, 8);
        assert_eq!(r.take_fetch(4), None, "nothing handed over");
        assert!(r.set_tail(6));
        assert_eq!(r.take_fetch(4), Some((0, 4)));
        assert_eq!(r.take_fetch(4), Some((4, 2)));
        assert_eq!(r.take_fetch(4), None);
        assert!(r.set_tail(3));
        assert_eq!(r.take_fetch(8), Some((6, 2)), "not across the end");
        assert_eq!(r.take_fetch(8), Some((0, 3)));
        assert!(!r.set_tail(8));
        assert_eq!(r.addr(3, 32), 0x1000 + 96);
    }

    #[test]
    fn completions_are_released_in_issue_order() {
        let mut f = Fetches::default();
        f.issued(1, 0, 4);
        f.issued(2, 4, 4);
        f.issued(3, 8, 2);
        assert!(f.arrived(2, &[2; 4]));
        assert!(!f.arrived(2, &[2; 4]), "only once");
        assert!(!f.arrived(9, &[]), "stale");
        assert_eq!(f.release(), None, "the first is still in flight");
        assert!(f.faulted(3));
        assert_eq!(f.promised(), 8);
        assert!(f.arrived(1, &[1; 4]));
        let first = f.release();
        assert!(matches!(
            first,
            Some(Fetched::Arrived { first: 0, n: 4, .. })
        ));
        assert!(matches!(
            f.release(),
            Some(Fetched::Arrived { first: 4, .. })
        ));
        assert_eq!(f.release(), Some(Fetched::Faulted { first: 8, n: 2 }));
        assert_eq!(f.release(), None);
        assert_eq!(f.promised(), 0);
    }
}
