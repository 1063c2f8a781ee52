//! Many Accio connections at once (Fig. 8 and beyond the paper): client
//! threads, each owning accelerated sockets, ping-pong with one Linux
//! echo server, one message at a time per thread, going round robin over
//! the thread's sockets. Every message's processing time is measured as
//! in [`super::pingpong`] (software round trip minus NIC round trip),
//! every datagram is accounted for (ring, fallback socket or a counted
//! drop), and the kernel's table counters (refills, evictions) come back.
//!
//! Sequence numbers are `thread << 32 | message`, so the NIC stamps of
//! every thread's messages are told apart.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Counters, Duration, Time};
use nextio_hw::ethernet::LinkConfig;

use super::common::{
    CLIENT_IP, CLIENT_MAC, ECHO_PORT, SERVER_IP, SERVER_MAC, SharedStamps, cfg, join_stamped,
    linux_server,
};
use super::pingpong::{Platform, accio_host, echo_server, lib_costs, message};
use crate::experiment::{RunContext, RunError, SimTally};
use nextio_lib::accio::Accio;

/// One many-connection run.
#[derive(Clone, Copy, Debug)]
pub struct Multi {
    pub platform: Platform,
    /// Client threads (each its own process), spread over the cores.
    pub threads: usize,
    /// Accelerated sockets per thread.
    pub sockets: usize,
    /// Table rows per core.
    pub slots: usize,
    /// Messages per thread.
    pub messages: u64,
    pub size: usize,
}

/// What it measured.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct MultiResult {
    /// Every message's processing time, µs (unscaled).
    pub processing_us: Vec<f64>,
    /// Messages completed per second of the run (all threads).
    pub rate_per_s: f64,
    pub sent: u64,
    pub echoed: u64,
    /// Datagrams that reached a ring, a fallback socket, or were dropped
    /// on the client (NIC and stack `drop.*`).
    pub to_rings: u64,
    pub to_fallback: u64,
    pub dropped: u64,
    /// The client kernel's Accio counters (table refills, evictions), or
    /// for RDMA the client NIC's.
    #[serde(with = "crate::shard::counters")]
    pub os: Counters,
    pub tally: SimTally,
}

/// What the client threads record: every message's send and receive
/// stamps by sequence number, the first send and the last receive, the
/// first failure.
#[derive(Default)]
pub struct Log {
    pub sent: Vec<(u64, Time)>,
    pub got: Vec<(u64, Time)>,
    pub first: Option<Time>,
    pub last: Option<Time>,
    pub failed: Option<String>,
}

impl Log {
    /// Note message `seq` sent now.
    pub fn sent(&mut self, seq: u64, now: Time) {
        self.first = Some(self.first.map_or(now, |f| f.min(now)));
        self.sent.push((seq, now));
    }

    /// Note the echo of `seq` received now.
    pub fn got(&mut self, seq: u64, now: Time) {
        self.got.push((seq, now));
        self.last = Some(self.last.map_or(now, |x| x.max(now)));
    }

    /// Every echo's processing time (software round trip minus the NIC
    /// round trip from the wires' stamps), µs, and the message rate.
    pub fn measure(
        &self,
        label: &str,
        ab: &SharedStamps,
        ba: &SharedStamps,
    ) -> Result<(Vec<f64>, f64), RunError> {
        if let Some(f) = &self.failed {
            return Err(RunError::Config(format!("{label}: {f}")));
        }
        let (abl, bal) = (ab.borrow(), ba.borrow());
        let sent_at: std::collections::BTreeMap<u64, Time> = self.sent.iter().copied().collect();
        let mut processing_us = Vec::with_capacity(self.got.len());
        for (seq, t1) in &self.got {
            let (Some(t0), Some(h0), Some(h1)) =
                (sent_at.get(seq), abl.tx.get(seq), bal.rx.get(seq))
            else {
                return Err(RunError::Config(format!(
                    "{label}: echo {seq:#x} without its send or NIC stamps"
                )));
            };
            processing_us.push((*t1 - *t0).as_us_f64() - (*h1 - *h0).as_us_f64());
        }
        let rate_per_s = match (self.first, self.last) {
            (Some(a), Some(b)) if b > a => self.got.len() as f64 / (b - a).as_secs_f64(),
            _ => 0.0,
        };
        Ok((processing_us, rate_per_s))
    }
}

/// Run `m`.
pub fn run(ctx: &RunContext, m: Multi, label: &str) -> Result<MultiResult, RunError> {
    if m.threads == 0 || m.sockets == 0 || m.messages == 0 {
        return Err(RunError::Config(
            "threads, sockets and messages must be positive".into(),
        ));
    }
    let sim = ctx.new_sim();
    // One echo server per client thread (§8.6 runs client/server pairs),
    // each on its own core of a test server (72 cores, §8.1).
    let server_cores = (m.threads + 1).min(72);
    let server = linux_server(
        &sim,
        SERVER_IP,
        SERVER_MAC,
        (CLIENT_IP, CLIENT_MAC),
        server_cores,
        0,
    )?;
    let ports: Vec<u16> = (0..m.threads as u16).map(|k| ECHO_PORT + k).collect();
    echo_server(&server, &ports, Duration::ZERO)?;
    let a = accio_host(&sim, m.platform, m.slots)?;
    let (ab, ba) = join_stamped(
        a.host.machine(),
        a.nic.id,
        server.host.machine(),
        server.nic.id,
        LinkConfig::default(),
    )?;
    let cores = a.host.machine().cores().len();
    let log = Rc::new(RefCell::new(Log::default()));
    let start = Time::ZERO + Duration::from_us(50);
    for k in 0..m.threads {
        let proc_ = a.host.create_process().map_err(cfg)?;
        let t = a.thread(proc_.pid(), k % cores).map_err(cfg)?;
        let tx = proc_.mmap(4096, false).map_err(cfg)?;
        let rx = proc_.mmap(4096, false).map_err(cfg)?;
        let (os, log) = (a.os.clone(), log.clone());
        let costs = lib_costs(m.platform);
        sim.spawn(async move {
            let fail = |e: String| {
                log.borrow_mut().failed.get_or_insert(e);
            };
            if os.dispatcher().wait_turn(t.tid).await.is_err() {
                return;
            }
            let mut lib = Accio::new(os, proc_.pid(), t.tid, t.ctx.clone(), costs);
            let mut fds = Vec::new();
            for i in 0..m.sockets {
                let fd = lib.socket();
                let port = 1024 + (k * m.sockets + i) as u16;
                if let Err(e) = lib.bind(fd, port) {
                    return fail(e.to_string());
                }
                if let Err(e) = lib.connect(fd, (SERVER_IP, ECHO_PORT + k as u16)) {
                    return fail(e.to_string());
                }
                if let Err(e) = lib.accelerate(fd).await {
                    return fail(e.to_string());
                }
                fds.push(fd);
            }
            lib.ctx().spin_until_time(start).await;
            for i in 0..m.messages {
                let fd = fds[i as usize % fds.len()];
                let seq = (k as u64) << 32 | i;
                if lib.ctx().poke(tx, &message(seq, m.size)).is_err() {
                    return fail("poke".into());
                }
                let now = lib.ctx().local_now();
                log.borrow_mut().sent(seq, now);
                if let Err(e) = lib.send(fd, tx, m.size).await {
                    return fail(e.to_string());
                }
                if let Err(e) = lib.recv(fd, rx, 4096).await {
                    return fail(e.to_string());
                }
                let mut b = [0u8; 8];
                let _ = lib.ctx().peek(rx, &mut b);
                let now = lib.ctx().local_now();
                log.borrow_mut().got(u64::from_be_bytes(b), now);
            }
            // Leave the core to the others (and release the rows).
            if let Err(e) = lib.exit().await {
                fail(e.to_string());
            }
        });
    }
    // Bound: every message a millisecond (ten on the prototype) behind
    // every other thread's.
    let per = match m.platform {
        Platform::Server => Duration::from_ms(1),
        Platform::Prototype => Duration::from_ms(10),
    };
    let total = m.messages * m.threads as u64;
    sim.run_until(start + per.times(total.min(200_000) + 5));
    let l = log.borrow();
    let (processing_us, rate_per_s) = l.measure(label, &ab, &ba)?;
    let nic = a.nic.borrow().all_counters();
    let stack = a.stack.counters();
    let r = MultiResult {
        processing_us,
        rate_per_s,
        sent: l.sent.len() as u64,
        echoed: l.got.len() as u64,
        to_rings: nic.get("offload_rx_delivered"),
        to_fallback: stack.get("rx_delivered"),
        dropped: nic.sum_prefix("drop.") + stack.sum_prefix("drop."),
        os: a.os.counters(),
        tally: SimTally::of(&sim, 2 * total),
    };
    drop(l);
    ctx.write_artefacts(label, &sim)?;
    sim.shutdown();
    if r.echoed != total {
        return Err(RunError::Config(format!(
            "{label}: {} of {total} echoes came back ({} to rings, {} to fallback sockets, {} dropped; kernel {:?})",
            r.echoed, r.to_rings, r.to_fallback, r.dropped, r.os
        )));
    }
    Ok(r)
}

/// The `q`-quantile (0–1) of `xs` (nearest rank; 0 when empty).
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}
