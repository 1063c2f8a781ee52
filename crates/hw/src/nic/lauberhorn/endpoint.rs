//! The NIC's endpoint table: which process serves each ONC RPC procedure
//! and how to call it — the code pointer and data pointer its handler is
//! entered with, and the types of its arguments and results. The OS
//! installs entries for the processes it registered; a call to a program
//! or procedure nobody serves is answered by the NIC itself
//! (`PROG_UNAVAIL` / `PROC_UNAVAIL`).
//!
//! Invariants: one entry per (program, version, procedure); an entry
//! belongs to exactly one process slot; removing a slot removes all its
//! entries.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::oncrpc::{AcceptStat, Signature};

/// One procedure a process serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
    /// The process slot that serves it.
    pub slot: usize,
    /// Where the handler starts, in the process's address space.
    pub code: u64,
    /// The handler's context (its service object), likewise.
    pub data: u64,
    pub args: Signature,
    pub results: Signature,
}

/// Where a process's outgoing calls go (a nested RPC's server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub mac: [u8; 6],
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
    /// The slot allowed to call it.
    pub slot: usize,
    /// The procedure's argument and result types: the NIC encodes the
    /// call and decodes the reply.
    pub args: Signature,
    pub results: Signature,
}

/// Why an entry could not be installed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("program {prog} version {vers} procedure {proc_} is already served")]
    Duplicate { prog: u32, vers: u32, proc_: u32 },
    #[error("the endpoint table is full ({0} entries)")]
    Full(usize),
    #[error("no process slot {0}")]
    NoSlot(usize),
}

/// The table.
#[derive(Clone, Debug, Default)]
pub struct EndpointTable {
    entries: Vec<Endpoint>,
    by_key: BTreeMap<(u32, u32, u32), usize>,
    capacity: usize,
}

impl EndpointTable {
    pub fn new(capacity: usize) -> EndpointTable {
        EndpointTable {
            capacity,
            ..EndpointTable::default()
        }
    }

    /// Install `e`; returns its index.
    pub fn install(&mut self, e: Endpoint) -> Result<usize, EndpointError> {
        let key = (e.prog, e.vers, e.proc_);
        if self.by_key.contains_key(&key) {
            return Err(EndpointError::Duplicate {
                prog: e.prog,
                vers: e.vers,
                proc_: e.proc_,
            });
        }
        if self.by_key.len() >= self.capacity {
            return Err(EndpointError::Full(self.capacity));
        }
        let i = self.entries.len();
        self.entries.push(e);
        self.by_key.insert(key, i);
        Ok(i)
    }

    pub fn get(&self, i: usize) -> Option<&Endpoint> {
        self.entries
            .get(i)
            .filter(|_| self.by_key.values().any(|&v| v == i))
    }

    /// The entry serving a call, or the status the NIC answers with.
    pub fn lookup(&self, prog: u32, vers: u32, proc_: u32) -> Result<usize, AcceptStat> {
        if let Some(&i) = self.by_key.get(&(prog, vers, proc_)) {
            return Ok(i);
        }
        if self.by_key.keys().any(|&(p, v, _)| p == prog && v == vers) {
            Err(AcceptStat::ProcUnavail)
        } else if self.by_key.keys().any(|&(p, _, _)| p == prog) {
            Err(AcceptStat::ProgMismatch)
        } else {
            Err(AcceptStat::ProgUnavail)
        }
    }

    /// The lowest and highest version of `prog` served (for a
    /// `PROG_MISMATCH` reply).
    pub fn versions(&self, prog: u32) -> Option<(u32, u32)> {
        let v = self.by_key.keys().filter(|k| k.0 == prog).map(|k| k.1);
        Some((v.clone().min()?, v.max()?))
    }

    /// Remove every entry of `slot`.
    pub fn remove_slot(&mut self, slot: usize) {
        let entries = &self.entries;
        self.by_key.retain(|_, i| entries[*i].slot != slot);
    }

    /// Entries served by `slot`.
    pub fn of_slot(&self, slot: usize) -> impl Iterator<Item = &Endpoint> {
        self.by_key
            .values()
            .map(|&i| &self.entries[i])
            .filter(move |e| e.slot == slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oncrpc::XdrType;

    fn ep(prog: u32, proc_: u32, slot: usize) -> Endpoint {
        Endpoint {
            prog,
            vers: 1,
            proc_,
            slot,
            code: 0x1000,
            data: 0,
            args: vec![XdrType::U32],
            results: vec![XdrType::U32],
        }
    }

    #[test]
    fn lookups_answer_with_the_right_status() {
        let mut t = EndpointTable::new(4);
        let i = t.install(ep(100, 1, 0)).unwrap();
        assert_eq!(t.lookup(100, 1, 1), Ok(i));
        assert_eq!(t.lookup(100, 1, 2), Err(AcceptStat::ProcUnavail));
        assert_eq!(t.lookup(100, 2, 1), Err(AcceptStat::ProgMismatch));
        assert_eq!(t.lookup(7, 1, 1), Err(AcceptStat::ProgUnavail));
        assert!(
            t.install(ep(100, 1, 1)).is_err(),
            "one server per procedure"
        );
        t.install(ep(200, 1, 1)).unwrap();
        t.remove_slot(0);
        assert_eq!(t.lookup(100, 1, 1), Err(AcceptStat::ProgUnavail));
        assert_eq!(t.of_slot(1).count(), 1);
        for k in 0..3 {
            let _ = t.install(ep(300 + k, 1, 1));
        }
        assert!(matches!(
            t.install(ep(400, 1, 1)),
            Err(EndpointError::Full(4))
        ));
    }
}
