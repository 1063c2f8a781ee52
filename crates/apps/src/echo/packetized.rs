//! The echo host on the packetized (E810-like) NIC with the DPDK-style
//! poll-mode driver: one RX/TX queue pair and one echo thread per core,
//! RSS spreading flows over the queues.
//!
//! Each thread loops: `rx_burst` (up to 64 packets); for each packet load
//! the header line through the cache model, increment the byte at
//! [`ECHO_BYTE_OFFSET`] of the UDP payload (a cache-costed store), and ask
//! for the UDP checksum to be recomputed by the E810's TX L4 checksum
//! offload (the NIC recomputes it over the real bytes it reads); then
//! `tx_burst` everything back. When a burst comes back empty the thread
//! busy-polls as one charged wait.
//!
//! Invariants: frames leave byte-identical to how they arrived except the
//! incremented byte and the UDP checksum; every packet the driver hands
//! the application is echoed or counted under an app `drop.*` reason.
//!
//! Nothing here is calibrated on a result: the driver's per-packet costs
//! come from DPDK's own PMD performance unit test (see `nextio_lib::dpdk`)
//! and the application's from [`super::EchoCosts::packet_cycles`], an
//! assumption; the one-core 64-byte rate of Ensō §3.3.2 (Fig. 5, 59 Mpps)
//! is validation.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Category, Counters, Sim};
use nextio_hw::device::Device as _;
use nextio_hw::nic::packetized::{PacketizedConfig, PacketizedNic, regs};
use nextio_hw::trafficgen::ECHO_BYTE_OFFSET;
use nextio_lib::dpdk::{Mbuf, Pmd, PmdConfig};
use nextio_os::{Host, OsCosts};

use crate::app::{AppFactory, AppInstance};

use super::{EchoConfig, EchoError, EchoSystem, Readiness, config_error, costs};

/// Build the host and start one echo thread per core: the machine of
/// `config`, the E810-like NIC in its NIC slot with one queue pair per core
/// (RSS spreading flows over them), and one echo process whose threads
/// each drive one queue with the poll-mode driver.
pub fn build(sim: &Sim, config: &EchoConfig) -> Result<EchoSystem, EchoError> {
    build_app(sim, config, None)
}

/// [`build`], with each thread running an instance of the application
/// `factory` makes (its tables mapped into the process) instead of the
/// echo: every received mbuf is handed to it and sent back as it leaves it.
pub fn build_app(
    sim: &Sim,
    config: &EchoConfig,
    factory: Option<AppFactory>,
) -> Result<EchoSystem, EchoError> {
    let host = Host::new(sim, config.machine.clone(), OsCosts::default()).map_err(config_error)?;
    let nic = PacketizedNic::new(PacketizedConfig {
        queues: config.cores(),
        ..PacketizedConfig::default()
    })
    .map_err(config_error)?;
    let nic = host.attach_nic(nic).map_err(config_error)?;
    let app = Rc::new(RefCell::new(Counters::new()));
    let process = host.create_process().map_err(config_error)?;
    // The NIC's registers, mapped once into the process (as a VFIO BAR).
    let bar = process
        .map_bar(nic.id, 0, 0, regs::BAR0_BYTES)
        .map_err(config_error)?;
    let ready = Readiness::new(sim, config.cores());
    for q in 0..config.cores() {
        let thread = process.thread(q).map_err(config_error)?;
        let pmd = Pmd::new(
            thread.ctx,
            &process,
            &nic,
            bar,
            q,
            PmdConfig::default(),
            app.clone(),
        )
        .map_err(config_error)?;
        let run = match &factory {
            Some(f) => Some(AppInstance::new(f(q), &process, pmd.ctx()).map_err(config_error)?),
            None => None,
        };
        let (app, ready, s) = (app.clone(), ready.clone(), sim.clone());
        sim.spawn(async move {
            // The RX tail doorbell hands the ring to the NIC when it lands.
            match pmd.start().await {
                Ok(lands) => {
                    let now = s.now();
                    s.after(lands - now, move || ready.thread_ready());
                }
                Err(_) => {
                    app.borrow_mut().inc("error");
                    return;
                }
            }
            echo_thread(pmd, app, run).await;
        });
    }
    let handle = nic.clone();
    Ok(EchoSystem {
        host,
        nic: nic.id,
        nic_counters: Box::new(move || handle.borrow().counters().clone()),
        app,
        ready,
    })
}

/// Where the echo byte sits in a frame, from its header bytes; `None` if
/// the frame is not IPv4/UDP or too short.
fn echo_byte_at(hdr: &[u8], len: usize) -> Option<usize> {
    if hdr.len() < 14 + 20 || hdr[12..14] != [0x08, 0x00] || hdr[14] >> 4 != 4 || hdr[23] != 17 {
        return None;
    }
    let ihl = (hdr[14] & 0x0f) as usize * 4;
    let at = 14 + ihl + 8 + ECHO_BYTE_OFFSET;
    (ihl >= 20 && at < len).then_some(at)
}

async fn echo_thread(mut pmd: Pmd, app: Rc<RefCell<Counters>>, mut run: Option<AppInstance>) {
    let mut rx: Vec<Mbuf> = Vec::with_capacity(costs().rx_burst.get());
    let mut tx: Vec<Mbuf> = Vec::with_capacity(costs().rx_burst.get());
    loop {
        let n = match pmd.rx_burst(&mut rx, costs().rx_burst.get()).await {
            Ok(n) => n,
            Err(_) => {
                app.borrow_mut().inc("error");
                return;
            }
        };
        if n == 0 {
            pmd.wait_rx().await;
            continue;
        }
        // Prefetch every packet's first line before touching any, as
        // DPDK's l2fwd does (`rte_prefetch0(rte_pktmbuf_mtod(m, void *))`),
        // so the misses overlap.
        for &m in &rx {
            let va = pmd.data_va(m);
            if pmd.prefetch(va).is_err() {
                app.borrow_mut().inc("error");
                return;
            }
        }
        for m in rx.drain(..) {
            if let Some(run) = run.as_mut() {
                match app_one(&mut pmd, m, run, &app) {
                    Ok(()) => tx.push(m),
                    Err(_) => {
                        app.borrow_mut().inc("error");
                        pmd.free(m);
                    }
                }
                continue;
            }
            if echo_one(&mut pmd, m).unwrap_or(false) {
                tx.push(m);
            } else {
                app.borrow_mut().inc("drop.not_udp");
                pmd.free(m);
            }
        }
        match pmd.tx_burst(&mut tx).await {
            Ok(sent) => app.borrow_mut().add("echoed", sent as u64),
            Err(_) => {
                app.borrow_mut().inc("error");
                return;
            }
        }
        for m in tx.drain(..) {
            app.borrow_mut().inc("drop.tx_ring_full");
            pmd.free(m);
        }
    }
}

/// Run a packet-processing application on `m`: load the bytes it reads
/// (the first line already prefetched), let it rewrite them, store back
/// what changed (all cache-costed). Checksums are the application's: it
/// patches them as it rewrites, the same code as on Ensō.
fn app_one(
    pmd: &mut Pmd,
    m: Mbuf,
    run: &mut AppInstance,
    app: &RefCell<Counters>,
) -> Result<(), nextio_lib::dpdk::PmdError> {
    let len = pmd.peek_data_len(m)? as usize;
    let va = pmd.data_va(m);
    run.frame.resize(run.reads(len), 0);
    let head = run.frame.len().min(64);
    let (first, rest) = run.frame.split_at_mut(head);
    pmd.load_prefetched(va, first, Category::Application)?;
    if !rest.is_empty() {
        pmd.ctx()
            .load(va.offset(head as u64), rest, Category::Application)?;
    }
    // A switch's chosen output needs nothing more here: the mbuf itself
    // goes to the port's queue (one wire, one TX queue).
    let done = run.process(pmd.ctx(), len, &mut app.borrow_mut());
    if let Some(r) = done.changed {
        pmd.ctx().store(
            va.offset(r.start as u64),
            &run.frame[r],
            Category::Application,
        )?;
    }
    Ok(())
}

/// Increment the echo byte of `m`; false if the packet is not UDP.
fn echo_one(pmd: &mut Pmd, m: Mbuf) -> Result<bool, nextio_lib::dpdk::PmdError> {
    // data_len sits in the mbuf line rx_burst has just written (an L1d
    // hit, which costs nothing beyond the instructions).
    let len = pmd.peek_data_len(m)? as usize;
    let va = pmd.data_va(m);
    let mut hdr = [0u8; 64];
    let head = len.min(hdr.len());
    pmd.load_prefetched(va, &mut hdr[..head], Category::Application)?;
    let ctx = pmd.ctx();
    ctx.cycles(Category::Application, costs().packet_cycles);
    let Some(at) = echo_byte_at(&hdr[..head], len) else {
        return Ok(false);
    };
    let mut b = [0u8; 1];
    ctx.load(va.offset(at as u64), &mut b, Category::Application)?;
    b[0] = b[0].wrapping_add(1);
    ctx.store(va.offset(at as u64), &b, Category::Application)?;
    pmd.request_udp_checksum(m)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nextio_engine::{Duration, Mailbox, Time};
    use nextio_hw::ethernet::LinkConfig;
    use nextio_hw::machine::MachineSpec;
    use nextio_hw::trafficgen::{
        Arrivals, SizeSpec, Source, TrafficConfig, TrafficGen, TrafficStats,
    };

    pub(super) fn echo_config(cores: usize) -> EchoConfig {
        // The E810 host: PCIe Gen3 x16 in the Ice Lake-SP preset.
        EchoConfig {
            machine: MachineSpec::ice_lake_sp(cores),
            seed: 1,
        }
    }

    pub(super) struct Run {
        pub stats: TrafficStats,
        pub sys: EchoSystem,
        pub sim: Sim,
    }

    pub(super) fn run(cores: usize, rate_gbps: f64, frames: u64, flows: u32, size: usize) -> Run {
        let sim = Sim::new();
        let to_gen = Rc::new(Mailbox::new(&sim));
        let sys = build(&sim, &echo_config(cores)).expect("valid host");
        let (_, gen_out) = sys
            .host
            .machine()
            .wire_port(
                sys.nic,
                0,
                to_gen.clone(),
                LinkConfig::default(),
                LinkConfig::default(),
            )
            .expect("the NIC has a port");
        // Let the drivers' start-up doorbells reach the NIC first.
        sim.run_until(Time(Duration::from_us(5).ps()));
        let tg = TrafficGen::start(
            &sim,
            TrafficConfig {
                source: Source::Synthetic {
                    sizes: SizeSpec::Fixed(size),
                    flows,
                },
                arrivals: Arrivals::Constant,
                rate_gbps,
                frames,
                warmup_frames: 0,
                seed: 7,
            },
            gen_out,
            to_gen,
        )
        .expect("valid traffic");
        let line_ps = (size as f64 + 20.0) * 8.0 * 1e3 / rate_gbps;
        let end = sim.now() + Duration((frames as f64 * line_ps) as u64) + Duration::from_us(400);
        sim.run_until(end);
        let stats = tg.stats.borrow().clone();
        sim.shutdown();
        Run { stats, sys, sim }
    }

    fn conserved(sys: &EchoSystem) {
        let nic = sys.nic_counters();
        assert_eq!(
            nic.get("rx_frames"),
            nic.get("rx_delivered") + nic.sum_prefix("drop.rx_"),
            "{nic:?}"
        );
        assert_eq!(
            nic.get("tx_descriptors"),
            nic.get("tx_frames") + nic.sum_prefix("drop.tx_"),
            "{nic:?}"
        );
    }

    /// 5 Gb/s: low enough that the first lap through the cold mbuf pool
    /// (a DRAM miss per line) keeps up too.
    #[test]
    fn echoes_every_frame_intact_at_low_load() {
        let r = run(2, 5.0, 5_000, 16, 64);
        let s = &r.stats;
        assert_eq!(s.sent, 5_000);
        assert_eq!(
            s.received,
            5_000,
            "{:?} {:?}",
            r.sys.nic_counters(),
            r.sys.app.borrow()
        );
        assert_eq!((s.corrupt, s.not_echoed, s.reordered), (0, 0, 0));
        let nic = r.sys.nic_counters();
        assert_eq!(nic.get("rx_frames"), 5_000);
        assert_eq!(nic.get("tx_frames"), 5_000);
        assert_eq!(nic.sum_prefix("drop."), 0);
        assert_eq!(r.sys.app.borrow().get("echoed"), 5_000);
        conserved(&r.sys);
        // Every purpose crossed the link.
        let (up, down) = r.sys.link_counters();
        assert!(up.bytes_by_purpose["packet-data"] > 0);
        assert!(up.bytes_by_purpose["descriptor"] > 0);
        assert!(down.bytes_by_purpose["descriptor"] > 0);
        assert!(down.bytes_by_purpose["doorbell"] > 0);
    }

    #[test]
    fn overload_drops_are_counted_and_conserved() {
        let r = run(1, 100.0, 20_000, 4, 64);
        conserved(&r.sys);
        let nic = r.sys.nic_counters();
        assert_eq!(nic.get("rx_frames"), 20_000);
        assert!(nic.sum_prefix("drop.rx_") > 0, "{nic:?}");
        // What was delivered was echoed, byte-exact, in order.
        let s = &r.stats;
        assert_eq!((s.corrupt, s.not_echoed, s.reordered), (0, 0, 0));
        assert_eq!(s.received, nic.get("tx_frames"));
    }

    #[test]
    fn same_seed_same_counters() {
        let a = run(2, 80.0, 4_000, 8, 64);
        let b = run(2, 80.0, 4_000, 8, 64);
        assert_eq!(a.sys.nic_counters(), b.sys.nic_counters());
        assert_eq!(*a.sys.app.borrow(), *b.sys.app.borrow());
        assert_eq!(a.sim.events(), b.sim.events());
        assert_eq!(a.sys.link_counters(), b.sys.link_counters());
    }

    #[test]
    fn bad_configuration_is_an_error() {
        let sim = Sim::new();
        let cfg = EchoConfig {
            machine: MachineSpec::ice_lake_sp(2).with_cores(0),
            seed: 1,
        };
        assert!(build(&sim, &cfg).is_err());
        let mut cfg = echo_config(2);
        cfg.machine.cores = 4;
        assert!(
            build(&sim, &cfg).is_err(),
            "caches for 2 cores, machine of 4"
        );
        let mut cfg = echo_config(1);
        cfg.machine.nic_slot.lanes = 3;
        assert!(build(&sim, &cfg).is_err());
        let mut cfg = echo_config(1);
        cfg.machine.memory_bytes = 1 << 20;
        assert!(build(&sim, &cfg).is_err());
    }
}
