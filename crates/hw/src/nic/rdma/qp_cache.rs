//! The NIC's on-chip cache of QP contexts, least recently used first out.
//! Kalia et al. (ATC'16 §3.1, §4) and Kong et al. (NSDI'23 §2–3) show the
//! NIC's SRAM holds the state of a limited number of QPs, and that
//! traffic spread over more QPs than fit turns into context fetches over
//! PCIe; this cache is that mechanism, its size the preset's
//! `nic.rdma.qp_cache_entries`.
//!
//! Invariant: at most `capacity` contexts are held; a context is held only
//! after it was fetched (inserted); `hits + misses` counts every lookup.

use std::collections::BTreeMap;

use super::context::QpContext;

pub struct QpCache {
    capacity: usize,
    /// QP number → (context, last use).
    held: BTreeMap<u32, (QpContext, u64)>,
    clock: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

impl QpCache {
    pub fn new(capacity: usize) -> QpCache {
        QpCache {
            capacity: capacity.max(1),
            held: BTreeMap::new(),
            clock: 0,
            hits: 0,
            misses: 0,
            evictions: 0,
        }
    }

    /// QP `qpn`'s context if it is on chip (a use), counting the hit or miss.
    pub fn lookup(&mut self, qpn: u32) -> Option<QpContext> {
        self.clock += 1;
        match self.held.get_mut(&qpn) {
            Some((c, used)) => {
                *used = self.clock;
                self.hits += 1;
                Some(*c)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Hold `ctx` for `qpn`, evicting the least recently used if full.
    pub fn insert(&mut self, qpn: u32, ctx: QpContext) {
        self.clock += 1;
        if !self.held.contains_key(&qpn) && self.held.len() >= self.capacity {
            let victim = self
                .held
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(q, _)| *q);
            if let Some(v) = victim {
                self.held.remove(&v);
                self.evictions += 1;
            }
        }
        self.held.insert(qpn, (ctx, self.clock));
    }

    /// Drop `qpn`'s context (the QP was destroyed).
    pub fn invalidate(&mut self, qpn: u32) {
        self.held.remove(&qpn);
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pd: u32) -> QpContext {
        QpContext {
            sq: 0,
            rq: 0,
            cq: 0,
            sq_entries: 1,
            rq_entries: 1,
            cq_entries: 1,
            pd,
            qkey: 0,
        }
    }

    #[test]
    fn least_recently_used_leaves_first() {
        let mut c = QpCache::new(2);
        assert_eq!(c.lookup(1), None);
        c.insert(1, ctx(1));
        c.insert(2, ctx(2));
        assert_eq!(c.lookup(1), Some(ctx(1)));
        c.insert(3, ctx(3)); // evicts 2, used least recently
        assert_eq!(c.lookup(2), None);
        assert_eq!(c.lookup(1), Some(ctx(1)));
        assert_eq!(c.lookup(3), Some(ctx(3)));
        assert_eq!((c.hits, c.misses, c.evictions, c.len()), (3, 2, 1, 2));
        c.invalidate(3);
        assert_eq!(c.lookup(3), None);
    }
}
