//! An opt-in log of every transaction the fabric carries, end to end: who
//! issued it, whom it reached, when it was issued and when it took effect
//! (a write landed, a read's data was back at its requester, an interrupt
//! reached the root complex). Experiments count round trips on a
//! message's critical path from it ([`critical_path`]) instead of
//! assuming them.
//!
//! Off by default (no cost); a host turns it on with
//! [`super::Fabric::record_transactions`].

use nextio_engine::Time;

use crate::device::DeviceId;
use crate::pcie::Purpose;

/// One end of a transaction.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Party {
    /// The CPU (a core's MMIO; the receiver of interrupts).
    Cpu,
    /// Host memory (what the CPU observes by polling).
    Memory,
    Device(DeviceId),
}

/// What a transaction was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TxnKind {
    /// A posted write (DMA write, MMIO write): one way.
    Write,
    /// A non-posted read and its completion: there and back.
    Read,
    /// An MSI-X message: a posted write to the interrupt range.
    Interrupt,
}

/// One logged transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Txn {
    /// Issue order.
    pub id: u64,
    pub kind: TxnKind,
    pub from: Party,
    pub to: Party,
    pub issued: Time,
    /// When it took effect where it went (a read: when its data was back).
    pub done: Time,
    pub bytes: u64,
    pub purpose: Purpose,
}

impl Txn {
    /// The party that learns of the transaction when it is done: the
    /// target of a write, the requester of a read, the CPU for an
    /// interrupt or a write to host memory (the CPU polls memory).
    pub fn observer(&self) -> Party {
        match self.kind {
            TxnKind::Read => self.from,
            TxnKind::Interrupt => Party::Cpu,
            TxnKind::Write if self.to == Party::Memory => Party::Cpu,
            TxnKind::Write => self.to,
        }
    }

    /// PCIe round trips the thesis charges it (Tables 2–3): half for a
    /// posted write, one for a read.
    pub fn round_trips(&self) -> f64 {
        match self.kind {
            TxnKind::Read => 1.0,
            TxnKind::Write | TxnKind::Interrupt => 0.5,
        }
    }
}

/// The chain of transactions that led to `end` being observed by `by`:
/// starting from the latest transaction `by` observed at or before `end`,
/// each step takes the latest transaction its issuer had observed when it
/// issued (a device or the CPU acts only on what reached it), back to one
/// issued at or after `start`. Valid for a message travelling alone (with
/// concurrent traffic the latest observation need not be the cause).
/// Returned in time order.
pub fn critical_path(log: &[Txn], by: Party, start: Time, end: Time) -> Vec<Txn> {
    let mut chain = Vec::new();
    let mut observer = by;
    let mut before = end;
    let mut used = std::collections::BTreeSet::new();
    loop {
        let prev = log
            .iter()
            .filter(|t| {
                t.observer() == observer
                    && t.done <= before
                    && t.issued >= start
                    && !used.contains(&t.id)
            })
            .max_by_key(|t| (t.done, t.id));
        let Some(t) = prev else { break };
        used.insert(t.id);
        chain.push(*t);
        // The CPU acts on memory and interrupts; memory itself acts on
        // nothing, so a write the CPU observed was issued by its writer.
        observer = match t.from {
            Party::Memory => break,
            p => p,
        };
        before = t.issued;
    }
    chain.reverse();
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(id: u64, kind: TxnKind, from: Party, to: Party, issued: u64, done: u64) -> Txn {
        Txn {
            id,
            kind,
            from,
            to,
            issued: Time(issued),
            done: Time(done),
            bytes: 64,
            purpose: "x",
        }
    }

    #[test]
    fn the_chain_follows_what_each_issuer_had_seen() {
        let (nic, acc) = (Party::Device(DeviceId(0)), Party::Device(DeviceId(1)));
        let log = [
            // NIC writes data, then a notification, to memory.
            txn(0, TxnKind::Write, nic, Party::Memory, 0, 10),
            txn(1, TxnKind::Write, nic, Party::Memory, 1, 11),
            // The CPU rings the accelerator; meanwhile an unrelated write
            // to the NIC.
            txn(2, TxnKind::Write, Party::Cpu, acc, 20, 30),
            txn(3, TxnKind::Write, Party::Cpu, nic, 21, 31),
            // The accelerator reads its command and data, writes back.
            txn(4, TxnKind::Read, acc, Party::Memory, 30, 50),
            txn(5, TxnKind::Read, acc, Party::Memory, 50, 70),
            txn(6, TxnKind::Write, acc, Party::Memory, 80, 90),
        ];
        let chain = critical_path(&log, Party::Cpu, Time(0), Time(100));
        let ids: Vec<u64> = chain.iter().map(|t| t.id).collect();
        assert_eq!(ids, vec![1, 2, 4, 5, 6]);
        let rtt: f64 = chain.iter().map(Txn::round_trips).sum();
        assert_eq!(rtt, 0.5 + 0.5 + 1.0 + 1.0 + 0.5);
    }
}
