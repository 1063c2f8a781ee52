//! The hardware prefetchers of one core: the L2 streamer and the L1d
//! next-line prefetcher.
//!
//! Prefetches are timely and free for the core: they fill lines but are
//! never counted as demand accesses, so the demand counters' invariants
//! hold whether the prefetchers are on or off. Neither prefetcher crosses
//! a 4 KiB page, because the next page's frame is unknown to hardware.

use serde::{Deserialize, Serialize};

use super::hierarchy::Hierarchy;

/// The hardware prefetchers of one core: a preset's
/// `[machine.caches.prefetch]`, where each value's source is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefetchConfig {
    /// The L2 streamer: watches L2 lookups (L1d misses) for ascending or
    /// descending line sequences within a 4 KiB page and prefetches ahead
    /// into L2.
    pub l2_streamer: bool,
    /// Lines the streamer issues per triggering lookup.
    pub degree: u32,
    /// How far ahead of the demand stream it may run.
    pub distance_lines: u32,
    /// Streams tracked at once.
    pub streams: u32,
    /// The L1d next-line ("DCU") prefetcher, modelled as tagged next-line
    /// prefetch: a demand miss, or the first demand hit on a prefetched
    /// line, fetches the next line of the same 4 KiB page into L1d.
    pub l1_next_line: bool,
}

impl Default for PrefetchConfig {
    /// The root preset's prefetchers.
    fn default() -> Self {
        nextio_presets::root_section("machine.caches.prefetch")
    }
}

impl PrefetchConfig {
    pub fn off() -> PrefetchConfig {
        PrefetchConfig {
            l2_streamer: false,
            l1_next_line: false,
            ..PrefetchConfig::default()
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Stream {
    page: u64,
    last_line: u64,
    /// +1 ascending, -1 descending, 0 not yet known.
    dir: i8,
    /// Furthest line already prefetched in `dir`.
    frontier: u64,
    stamp: u64,
}

impl Hierarchy {
    /// Bring `line` into `core`'s L2 (and the LLC on a DRAM fetch) without
    /// charging the core; returns whether anything was fetched.
    fn prefetch_l2(&mut self, core: usize, line: u64) -> bool {
        if self.cores[core].l2.find(line).is_some() {
            return false;
        }
        if self.llc.find(line).is_none() {
            self.llc.insert_absent(line);
            self.cores[core].stats.prefetch_dram_reads += 1;
        }
        let (_, out) = self.cores[core].l2.insert_absent(line);
        self.took(line, out);
        self.cores[core].stats.l2_prefetch_fills += 1;
        true
    }

    /// Bring `line` into `core`'s L1d ahead of use. Like the hardware it
    /// never crosses a 4 KiB page (the next page's frame is unknown), and
    /// its request is an L2 lookup the streamer trains on.
    pub(super) fn prefetch_l1(&mut self, core: usize, line: u64) {
        if line.is_multiple_of(self.lines_per_page()) || self.cores[core].l1d.find(line).is_some() {
            return;
        }
        if self.config.prefetch.l2_streamer {
            self.stream(core, line);
        }
        let l2_miss = self.prefetch_l2(core, line);
        let c = &mut self.cores[core];
        c.stats.l2_requests.record(!l2_miss);
        // Still absent: the streamer and the L2 fill do not touch L1d.
        let (slot, out) = c.l1d.insert_absent(line);
        c.l1d.set_prefetched(slot);
        c.stats.l1_prefetch_fills += 1;
        self.took(line, out);
    }

    /// The L2 streamer: one entry per 4 KiB page; two lookups in the same
    /// direction confirm a stream, after which each lookup prefetches up to
    /// `degree` lines beyond the frontier, at most `distance_lines` ahead of
    /// the demand line and never past the page.
    pub(super) fn stream(&mut self, core: usize, line: u64) {
        let p = &self.config.prefetch;
        let (degree, distance, max_streams) =
            (p.degree as u64, p.distance_lines as u64, p.streams as usize);
        let lines_per_page = self.lines_per_page();
        let page = line / lines_per_page;
        let c = &mut self.cores[core];
        c.stream_clock += 1;
        let now = c.stream_clock;
        let Some(i) = c.streams.iter().position(|s| s.page == page) else {
            let fresh = Stream {
                page,
                last_line: line,
                dir: 0,
                frontier: line,
                stamp: now,
            };
            if c.streams.len() < max_streams {
                c.streams.push(fresh);
            } else if let Some(lru) = c.streams.iter_mut().min_by_key(|s| s.stamp) {
                *lru = fresh;
            }
            return;
        };
        let s = &mut c.streams[i];
        s.stamp = now;
        let dir: i8 = match line.cmp(&s.last_line) {
            std::cmp::Ordering::Greater => 1,
            std::cmp::Ordering::Less => -1,
            std::cmp::Ordering::Equal => return,
        };
        s.last_line = line;
        if s.dir != dir {
            // A new or reversed direction must be confirmed first.
            s.dir = dir;
            s.frontier = line;
            return;
        }
        let page_first = page * lines_per_page;
        let page_last = page_first + lines_per_page - 1;
        let mut next = if dir > 0 {
            s.frontier.max(line)
        } else {
            s.frontier.min(line)
        };
        let mut issued = 0;
        let mut targets = [0u64; 64];
        while issued < degree.min(64) {
            let cand = if dir > 0 {
                next.checked_add(1)
            } else {
                next.checked_sub(1)
            };
            let Some(cand) = cand else { break };
            if cand < page_first || cand > page_last || cand.abs_diff(line) > distance {
                break;
            }
            targets[issued as usize] = cand;
            next = cand;
            issued += 1;
        }
        s.frontier = next;
        for &t in &targets[..issued as usize] {
            self.prefetch_l2(core, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{line, no_prefetch};
    use super::super::{AccessKind, HierarchyConfig};
    use super::*;
    use crate::mem::PhysAddr;

    #[test]
    fn prefetcher_turns_sequential_misses_into_hits() {
        let walk = |h: &mut Hierarchy| {
            for off in (0..256 << 10).step_by(64) {
                h.access(0, PhysAddr(off), 8, AccessKind::Read).unwrap();
            }
            *h.stats(0).unwrap()
        };
        let off = walk(&mut no_prefetch(1));
        assert_eq!(off.l2.misses, off.l2.accesses);
        let mut cfg = HierarchyConfig::ice_lake(1);
        cfg.prefetch.l1_next_line = false;
        let on = walk(&mut Hierarchy::new(cfg).unwrap());
        assert_eq!(
            on.l1d.misses, off.l1d.misses,
            "L2 prefetch does not fill L1d"
        );
        assert!(on.l2_miss_ratio() < 0.1, "{on:?}");
        assert!(on.l2_prefetch_fills > 0);
        // Prefetched lines are fills, not demand misses.
        assert_eq!(on.l2.hits + on.l2.misses, on.l2.accesses);
        let both = walk(&mut Hierarchy::new(HierarchyConfig::ice_lake(1)).unwrap());
        assert!(both.l1d.misses < off.l1d.misses / 2, "{both:?}");
        // Descending streams are detected too.
        let mut cfg = HierarchyConfig::ice_lake(1);
        cfg.prefetch.l1_next_line = false;
        let mut h = Hierarchy::new(cfg).unwrap();
        for l in (0..4096u64).rev() {
            h.access(0, line(l), 8, AccessKind::Read).unwrap();
        }
        assert!(h.stats(0).unwrap().l2_miss_ratio() < 0.1);
    }
}
