//! The shape of a host's interconnect: a tree rooted at the root complex,
//! with switches as inner nodes and devices as leaves, one PCIe link from
//! every node to its parent; the address map (host memory below, device
//! BARs in the MMIO window); and the paths transactions take.
//!
//! Invariants:
//! * the tree is built top down, so a node's parent always exists and has
//!   a smaller index; paths are therefore finite and loop-free;
//! * BAR windows are naturally aligned powers of two, never overlap each
//!   other or host memory, and are kept sorted for decode;
//! * a path from a node to one of its ancestors (or back) crosses each
//!   link at most once, in the direction named.

use std::collections::BTreeMap;

use nextio_engine::{Duration, Time};

use crate::device::DeviceId;
use crate::nagare::pipeline::{Pipeline, PipelineConfig};
use crate::pcie::{Direction, PcieLink};

use super::switch::SwitchConfig;

/// A node of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u16);

/// The root complex is always node 0.
pub const ROOT: NodeId = NodeId(0);

#[derive(Clone, Copy, Debug)]
pub(crate) enum NodeKind {
    RootComplex,
    Switch(SwitchConfig),
    /// A device; which one is kept in [`Topology::endpoint`].
    Endpoint,
}

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub parent: Option<NodeId>,
    /// Index of the link to the parent.
    pub uplink: Option<usize>,
    pub depth: u16,
}

/// One BAR's place in the address map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarWindow {
    pub base: u64,
    pub bytes: u64,
    pub dev: DeviceId,
    pub bar: u8,
}

impl BarWindow {
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.bytes
    }
}

/// One link crossing of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hop {
    pub link: usize,
    pub dir: Direction,
    /// The node the TLP arrives at.
    pub to: NodeId,
}

/// Most links a path crosses: two per level of switches plus the root
/// ports; trees deeper than this are refused when built.
pub(crate) const MAX_HOPS: usize = 8;

/// A path: a short list of hops, kept inline (no allocation per TLP).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Path {
    hops: [Hop; MAX_HOPS],
    len: usize,
}

impl Path {
    fn new() -> Path {
        Path {
            hops: [Hop {
                link: 0,
                dir: Direction::Upstream,
                to: ROOT,
            }; MAX_HOPS],
            len: 0,
        }
    }
    fn push(&mut self, hop: Hop) {
        if self.len < MAX_HOPS {
            self.hops[self.len] = hop;
            self.len += 1;
        }
    }
    pub fn hops(&self) -> &[Hop] {
        &self.hops[..self.len]
    }
    /// This path followed by `rest`.
    pub fn then(mut self, rest: &Path) -> Path {
        for h in rest.hops() {
            self.push(*h);
        }
        self
    }
}

pub(crate) struct Topology {
    pub nodes: Vec<Node>,
    pub links: Vec<PcieLink>,
    /// Sorted by base.
    pub bars: Vec<BarWindow>,
    /// The endpoint node of each device, by device id.
    pub endpoint: Vec<NodeId>,
    pub next_mmio: u64,
    pub mmio_end: u64,
    /// Programmable switches (Nagare): their pipeline configuration, and
    /// one pipeline per ingress port, keyed by (switch, link the TLP came
    /// in on), made on first use.
    pub programmable: BTreeMap<NodeId, PipelineConfig>,
    pub pipelines: BTreeMap<(NodeId, usize), Pipeline>,
}

impl Topology {
    pub fn new(mmio_base: u64, mmio_end: u64) -> Topology {
        Topology {
            nodes: vec![Node {
                kind: NodeKind::RootComplex,
                parent: None,
                uplink: None,
                depth: 0,
            }],
            links: Vec::new(),
            bars: Vec::new(),
            endpoint: Vec::new(),
            next_mmio: mmio_base,
            mmio_end,
            programmable: BTreeMap::new(),
            pipelines: BTreeMap::new(),
        }
    }

    /// Add a node under `parent` joined by `link`; `None` if the tree
    /// would be too deep for [`MAX_HOPS`].
    pub fn add_node(
        &mut self,
        parent: NodeId,
        kind: NodeKind,
        mut link: PcieLink,
    ) -> Option<NodeId> {
        let depth = self.nodes.get(parent.0 as usize)?.depth + 1;
        if parent == ROOT {
            // A root port never limits what it receives (see CreditConfig).
            link.set_upstream_credits(crate::pcie::CreditConfig::UNLIMITED);
        }
        if depth as usize * 2 > MAX_HOPS {
            return None;
        }
        let id = NodeId(u16::try_from(self.nodes.len()).ok()?);
        self.links.push(link);
        self.nodes.push(Node {
            kind,
            parent: Some(parent),
            uplink: Some(self.links.len() - 1),
            depth,
        });
        Some(id)
    }

    /// Place a BAR of `bytes` (a power of two) in the MMIO window.
    pub fn place_bar(&mut self, dev: DeviceId, bar: u8, bytes: u64) -> Option<BarWindow> {
        let base = self.next_mmio.checked_next_multiple_of(bytes)?;
        let end = base.checked_add(bytes)?;
        if end > self.mmio_end {
            return None;
        }
        self.next_mmio = end;
        let w = BarWindow {
            base,
            bytes,
            dev,
            bar,
        };
        let at = self.bars.partition_point(|b| b.base < base);
        self.bars.insert(at, w);
        Some(w)
    }

    /// The BAR window holding `addr`, if any.
    pub fn decode(&self, addr: u64) -> Option<BarWindow> {
        let i = self.bars.partition_point(|b| b.base <= addr);
        let w = *self.bars.get(i.checked_sub(1)?)?;
        w.contains(addr).then_some(w)
    }

    pub fn parent(&self, n: NodeId) -> Option<NodeId> {
        self.nodes[n.0 as usize].parent
    }

    /// The hops from `from` up to its ancestor `to`.
    pub fn up(&self, from: NodeId, to: NodeId) -> Path {
        let mut p = Path::new();
        let mut at = from;
        while at != to {
            let node = &self.nodes[at.0 as usize];
            let (Some(parent), Some(link)) = (node.parent, node.uplink) else {
                break;
            };
            p.push(Hop {
                link,
                dir: Direction::Upstream,
                to: parent,
            });
            at = parent;
        }
        p
    }

    /// The hops from `from` down to its descendant `to`.
    pub fn down(&self, from: NodeId, to: NodeId) -> Path {
        let up = self.up(to, from);
        let mut p = Path::new();
        let hops = up.hops();
        for (i, h) in hops.iter().enumerate().rev() {
            let below = if i == 0 { to } else { hops[i - 1].to };
            p.push(Hop {
                link: h.link,
                dir: Direction::Downstream,
                to: below,
            });
        }
        p
    }

    /// The lowest switch above both `a` and `b` whose P2P policy forwards
    /// directly, if the first common ancestor is such a switch. A switch's
    /// own function (one end being the switch itself) is always reached
    /// directly: the switch claims its own windows whatever its ACS policy.
    pub fn direct_p2p_switch(&self, a: NodeId, b: NodeId) -> Option<NodeId> {
        let common = self.common_ancestor(a, b);
        match self.nodes[common.0 as usize].kind {
            NodeKind::Switch(_) if common == a || common == b => Some(common),
            NodeKind::Switch(cfg) if cfg.p2p == super::switch::P2pPolicy::Direct => Some(common),
            _ => None,
        }
    }

    /// Whether `n` is a switch.
    pub fn is_switch(&self, n: NodeId) -> bool {
        matches!(self.nodes[n.0 as usize].kind, NodeKind::Switch(_))
    }

    /// When a TLP that arrived at node `n` over `link` at `arrived` is
    /// ready to leave it: a switch's forwarding latency, plus, in a
    /// programmable switch, the traversal of its ingress port's pipeline.
    pub fn forward(&mut self, link: usize, n: NodeId, arrived: Time) -> Time {
        let base = arrived + Duration::from_ps(self.forward_latency_ps(n));
        let Some(cfg) = self.programmable.get(&n) else {
            return base;
        };
        let pipeline = match self.pipelines.entry((n, link)) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => match Pipeline::new(cfg) {
                Ok(p) => e.insert(p),
                // Configurations are validated when set; an invalid one
                // never gets here.
                Err(_) => return base,
            },
        };
        let out = pipeline.traverse(arrived);
        base + (out - arrived)
    }

    fn common_ancestor(&self, mut a: NodeId, mut b: NodeId) -> NodeId {
        let depth = |n: NodeId| self.nodes[n.0 as usize].depth;
        while depth(a) > depth(b) {
            a = self.parent(a).unwrap_or(super::topology::ROOT);
        }
        while depth(b) > depth(a) {
            b = self.parent(b).unwrap_or(super::topology::ROOT);
        }
        while a != b {
            a = self.parent(a).unwrap_or(super::topology::ROOT);
            b = self.parent(b).unwrap_or(super::topology::ROOT);
        }
        a
    }

    /// Forwarding latency charged when a TLP arrives at `n`.
    pub fn forward_latency_ps(&self, n: NodeId) -> u64 {
        match self.nodes[n.0 as usize].kind {
            NodeKind::Switch(cfg) => cfg.forward_latency_ps,
            _ => 0,
        }
    }
}
