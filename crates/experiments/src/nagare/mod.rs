//! Nagare's evaluation (thesis §4.4, planned there, built here): the
//! accelerator chain of Tables 2–3, the switch pipeline's added latency of
//! §4.3, the CPU's push through the fabric of §4.5, and access rules
//! against a misbehaving device.
//!
//! [`critical_path_round_trips`] is how every round-trip count here is
//! obtained: from the fabric's log of the transactions the run made, never
//! from a table.

pub mod acl;
pub mod chain;
pub mod cpu_push;
pub mod switch_latency;

use nextio_engine::Time;
use nextio_hw::fabric::txlog::{Party, Txn, TxnKind, critical_path};

/// One traversal of a message's critical path: one transaction, or a push
/// into the switch's dataplane together with the transaction the switch
/// issued because of it (the switch rewrote its destination: one
/// device-to-device crossing, as the thesis counts it).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Traversal {
    pub from: Party,
    pub to: Party,
    pub kind: TxnKind,
    pub issued: Time,
    pub done: Time,
    #[serde(with = "crate::shard::name")]
    pub purpose: crate::shard::Name,
    /// Through the switch's dataplane.
    pub via_switch: bool,
}

impl Traversal {
    pub fn round_trips(&self) -> f64 {
        match self.kind {
            TxnKind::Read => 1.0,
            _ => 0.5,
        }
    }
    pub fn ns(&self) -> f64 {
        (self.done - self.issued).as_ns_f64()
    }
}

/// The critical path of the message whose result `by` observed by `end`,
/// issued no earlier than `start`, as traversals; `switch` is the
/// dataplane's party, if there is one.
pub fn critical_path_round_trips(
    log: &[Txn],
    by: Party,
    start: Time,
    end: Time,
    switch: Option<Party>,
) -> Vec<Traversal> {
    let chain = critical_path(log, by, start, end);
    let mut out: Vec<Traversal> = Vec::new();
    let mut pending: Option<Txn> = None;
    for t in chain {
        if let Some(p) = pending.take() {
            if Some(t.from) == switch && t.kind != TxnKind::Read {
                out.push(Traversal {
                    from: p.from,
                    to: t.to,
                    kind: TxnKind::Write,
                    issued: p.issued,
                    done: t.done,
                    purpose: t.purpose,
                    via_switch: true,
                });
                continue;
            }
            out.push(single(&p));
        }
        if Some(t.to) == switch && t.kind == TxnKind::Write {
            pending = Some(t);
        } else {
            out.push(single(&t));
        }
    }
    if let Some(p) = pending {
        out.push(single(&p));
    }
    out
}

fn single(t: &Txn) -> Traversal {
    Traversal {
        from: t.from,
        to: t.to,
        kind: t.kind,
        issued: t.issued,
        done: t.done,
        purpose: t.purpose,
        via_switch: false,
    }
}

/// A party's name in a report, given the devices' names.
pub fn party_name(p: Party, names: &dyn Fn(u16) -> String) -> String {
    match p {
        Party::Cpu => "CPU".into(),
        Party::Memory => "host memory".into(),
        Party::Device(d) => names(d.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextio_hw::device::DeviceId;

    #[test]
    fn a_push_and_its_forward_are_one_traversal() {
        let (nic, sw, acc) = (
            Party::Device(DeviceId(0)),
            Party::Device(DeviceId(9)),
            Party::Device(DeviceId(1)),
        );
        let t = |id, kind, from, to, i, d| Txn {
            id,
            kind,
            from,
            to,
            issued: Time(i),
            done: Time(d),
            bytes: 1,
            purpose: "p",
        };
        let log = [
            t(0, TxnKind::Write, nic, sw, 0, 10),
            t(1, TxnKind::Write, sw, acc, 10, 20),
            t(2, TxnKind::Read, acc, sw, 25, 40),
            t(3, TxnKind::Write, acc, sw, 50, 60),
        ];
        let tr = critical_path_round_trips(&log, sw, Time(0), Time(100), Some(sw));
        let rtt: f64 = tr.iter().map(Traversal::round_trips).sum();
        // nic→sw→acc (½), acc reads from the switch (1), acc→sw (½).
        assert_eq!(tr.len(), 3);
        assert_eq!(rtt, 2.0);
        assert!(tr[0].via_switch);
        assert_eq!(tr[0].ns(), 0.02);
    }
}
