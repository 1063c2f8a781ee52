//! The offload engine's flow table — which connection, on which core's
//! table, a datagram belongs to — and what the engine keeps per
//! connection: its mode, what it cached of the connection's row, the
//! pointers it owns (`RX_TAIL`, `TX_HEAD`: the engine is their only
//! writer, so its copies are the truth and it posts them to the row), and
//! the frames waiting for the row.
//!
//! Invariants: a connection's frames are delivered in arrival order (a
//! frame waits behind earlier ones of its connection); a connection has
//! at most one row read outstanding.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;

use crate::packet::Frame;

/// An address and port.
pub type Endpoint = (Ipv4Addr, u16);

/// What a flow entry matches: the local endpoint, and the remote one for
/// a connected socket (a bound one takes any remote).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowMatch {
    pub local: Endpoint,
    pub remote: Option<Endpoint>,
}

/// Where a connection's traffic goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The offload engine: payloads into the connection's ring.
    Fast,
    /// The kernel path (the OS reverted the connection).
    Fallback,
}

/// What the engine cached of a connection's row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingCtx {
    pub rx_ring: u64,
    pub rx_size: u64,
    /// `RX_HEAD` when last read: space is at least what it says.
    pub rx_head: u64,
    pub tx_ring: u64,
    pub tx_size: u64,
    pub local: Endpoint,
    pub remote: Option<Endpoint>,
    pub remote_mac: [u8; 6],
}

/// The engine's per-connection state.
#[derive(Debug)]
pub struct Conn {
    pub core: usize,
    pub mode: Mode,
    pub ctx: Option<RingCtx>,
    /// The engine's write pointer into the RX ring (`None` until it first
    /// read the row, whose value it then takes).
    pub rx_tail: Option<u64>,
    /// The engine's read pointer into the TX ring.
    pub tx_head: Option<u64>,
    /// The latest `TX_TAIL` the table notified.
    pub tx_tail: u64,
    /// Received frames waiting for the row (or for space news).
    pub pending: VecDeque<Frame>,
    /// A row read is outstanding.
    pub loading: bool,
    /// A miss was reported and not yet answered by a retry.
    pub missed: bool,
    /// The pointers must be posted again once the row is read.
    pub repost: bool,
    /// The cached row was read since the last record was written: a full
    /// ring by its `RX_HEAD` is really full.
    pub fresh: bool,
    /// A TX burst is in progress.
    pub tx_busy: bool,
    /// Records written whose `RX_TAIL` is not yet posted (batching).
    pub unposted: u32,
    /// Streaming rings: the batch's records not yet written, back to back
    /// from bus address `gather_at` (one DMA transfer when the batch ends).
    pub gather: Vec<u8>,
    pub gather_at: u64,
}

impl Conn {
    fn new(core: usize) -> Conn {
        Conn {
            core,
            mode: Mode::Fast,
            ctx: None,
            rx_tail: None,
            tx_head: None,
            tx_tail: 0,
            pending: VecDeque::new(),
            loading: false,
            missed: false,
            repost: false,
            fresh: false,
            tx_busy: false,
            unposted: 0,
            gather: Vec::new(),
            gather_at: 0,
        }
    }
}

/// The table.
#[derive(Debug, Default)]
pub struct Flows {
    by_match: BTreeMap<FlowMatch, u32>,
    pub conns: BTreeMap<u32, Conn>,
}

impl Flows {
    /// Steer `m` to connection `conn`, whose row is in `core`'s table.
    /// Refuses a match or a connection already present.
    pub fn install(&mut self, m: FlowMatch, conn: u32, core: usize) -> bool {
        if self.by_match.contains_key(&m) || self.conns.contains_key(&conn) {
            return false;
        }
        self.by_match.insert(m, conn);
        self.conns.insert(conn, Conn::new(core));
        true
    }

    /// Forget `conn`; returns the frames it was holding.
    pub fn remove(&mut self, conn: u32) -> Vec<Frame> {
        self.by_match.retain(|_, c| *c != conn);
        self.conns
            .remove(&conn)
            .map(|c| c.pending.into_iter().collect())
            .unwrap_or_default()
    }

    /// The connection a datagram to `dst` from `src` belongs to: a
    /// connected flow first, then a bound one.
    pub fn lookup(&self, dst: Endpoint, src: Endpoint) -> Option<u32> {
        let exact = FlowMatch {
            local: dst,
            remote: Some(src),
        };
        let any = FlowMatch {
            local: dst,
            remote: None,
        };
        self.by_match
            .get(&exact)
            .or_else(|| self.by_match.get(&any))
            .copied()
    }

    /// Frames held for any connection.
    pub fn held(&self) -> usize {
        self.conns.values().map(|c| c.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_flows_win_over_bound_ones() {
        let me = (Ipv4Addr::new(10, 0, 0, 1), 5000);
        let peer = (Ipv4Addr::new(10, 0, 0, 2), 7000);
        let mut f = Flows::default();
        assert!(f.install(
            FlowMatch {
                local: me,
                remote: None
            },
            1,
            0
        ));
        assert!(f.install(
            FlowMatch {
                local: me,
                remote: Some(peer)
            },
            2,
            1
        ));
        assert!(!f.install(
            FlowMatch {
                local: me,
                remote: None
            },
            3,
            0
        ));
        assert_eq!(f.lookup(me, peer), Some(2));
        assert_eq!(f.lookup(me, (peer.0, 1)), Some(1));
        assert_eq!(f.lookup((me.0, 1), peer), None);
        f.remove(2);
        assert_eq!(f.lookup(me, peer), Some(1));
    }
}
