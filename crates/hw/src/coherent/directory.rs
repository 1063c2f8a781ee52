//! What the chip holds of each device-homed line: its coherence state and,
//! while valid, the bytes of its copy — the one the cores read and write
//! (the cache model keeps tags only, so the bytes of a line a device homes
//! live here while the chip has it, and at the device otherwise).
//!
//! Invariants (checked in debug builds): a line is `Invalid` exactly when
//! it has no bytes; only an `Exclusive` or `Modified` line is written; at
//! most one request of the chip is outstanding per line.

use std::collections::BTreeMap;
use std::rc::Rc;

use nextio_engine::Notify;

use super::home::Grant;

/// The chip's coherence state of one line (MESI, from the chip's side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChipState {
    Invalid,
    Shared,
    Exclusive,
    Modified,
}

/// The chip's view of one line.
pub(super) struct Line {
    pub state: ChipState,
    pub data: Vec<u8>,
    /// The request in flight for this line, if any.
    pub pending: Option<u64>,
    /// Cores waiting for that request to finish before they retry.
    pub waiters: Vec<Rc<Notify>>,
}

impl Line {
    fn new() -> Line {
        Line {
            state: ChipState::Invalid,
            data: Vec::new(),
            pending: None,
            waiters: Vec::new(),
        }
    }

    pub fn readable(&self) -> bool {
        self.state != ChipState::Invalid
    }

    pub fn writable(&self) -> bool {
        matches!(self.state, ChipState::Exclusive | ChipState::Modified)
    }

    /// The home's data arrived with `grant`.
    pub fn fill(&mut self, data: &[u8], grant: Grant) {
        self.data.clear();
        self.data.extend_from_slice(data);
        self.state = match grant {
            Grant::Shared => ChipState::Shared,
            Grant::Exclusive => ChipState::Exclusive,
        };
        self.check();
    }

    /// A core stores `bytes` at `offset` of a line it may write.
    pub fn write(&mut self, offset: usize, bytes: &[u8]) {
        debug_assert!(self.writable(), "a store to a line the chip may not write");
        self.data[offset..offset + bytes.len()].copy_from_slice(bytes);
        self.state = ChipState::Modified;
    }

    /// Drop the chip's copy; its bytes if they were modified.
    pub fn drop_copy(&mut self) -> Option<Vec<u8>> {
        let dirty = self.state == ChipState::Modified;
        self.state = ChipState::Invalid;
        let data = std::mem::take(&mut self.data);
        self.check();
        dirty.then_some(data)
    }

    fn check(&self) {
        debug_assert_eq!(
            self.state == ChipState::Invalid,
            self.data.is_empty(),
            "an invalid line holds no bytes, a valid one does"
        );
    }
}

/// Every device-homed line the chip has touched, by line address.
#[derive(Default)]
pub(super) struct Directory {
    lines: BTreeMap<u64, Line>,
}

impl Directory {
    pub fn line(&mut self, line: u64) -> &mut Line {
        self.lines.entry(line).or_insert_with(Line::new)
    }

    pub fn get(&self, line: u64) -> Option<&Line> {
        self.lines.get(&line)
    }

    /// The chip's state of `line`.
    pub fn state(&self, line: u64) -> ChipState {
        self.lines
            .get(&line)
            .map_or(ChipState::Invalid, |l| l.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_moves_through_its_states() {
        let mut d = Directory::default();
        let l = d.line(7);
        assert!(!l.readable());
        l.fill(&[1; 4], Grant::Shared);
        assert!(l.readable() && !l.writable());
        l.fill(&[2; 4], Grant::Exclusive);
        l.write(1, &[9]);
        assert_eq!(l.state, ChipState::Modified);
        assert_eq!(l.drop_copy(), Some(vec![2, 9, 2, 2]));
        assert_eq!(d.state(7), ChipState::Invalid);
        let l = d.line(7);
        l.fill(&[3; 4], Grant::Exclusive);
        assert_eq!(l.drop_copy(), None, "a clean copy returns nothing");
    }
}
