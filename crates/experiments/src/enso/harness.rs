//! The test bench of the Ensō evaluation (Ensō paper §3.3.1): a traffic
//! generator on one side of a 100 Gb/s link, an echo host on the other,
//! and the RFC 2544 zero-loss throughput search on top.
//!
//! One [`Trial`] is one simulation: build the host with the chosen NIC
//! interface, wait until its drivers have handed their rings to the NIC
//! (the start barrier: traffic offered earlier would be lost to set-up, not
//! to the system under test), offer `frames` frames at a rate — synthetic,
//! or a capture's frames with their own sizes and flows — let the system
//! drain, and collect everything the experiments report — generator
//! statistics (loss, round-trip times measured from the stamped payload
//! bytes), PCIe bytes by purpose and direction, cache statistics of the
//! echo cores, and the NIC's and application's counters. Trials are
//! independent and deterministic for their seed, so sweeps run them in
//! parallel.
//!
//! Bounds: a trial's offered traffic must fit [`MAX_OFFER`] of simulated
//! time (checked before it runs, so no rate saturates the clock), and a
//! zero-loss search runs at most [`MAX_HALVINGS`] bisection steps whatever
//! its resolution.

use std::rc::Rc;
use std::sync::Arc;

use nextio_apps::app::AppFactory;
use nextio_apps::echo::{self, EchoConfig, EchoSystem, NotificationMode};
use nextio_apps::log_monitor::{self, LogMonitor, LogMonitorConfig};
use nextio_apps::maglev::{self, Maglev, MaglevConfig};
use nextio_apps::mica::{self, Mica, MicaConfig};
use nextio_apps::nitrosketch::{self, NitroSketch, SketchConfig};
use nextio_apps::vswitch::{self, Vswitch, VswitchConfig};
use nextio_engine::{Counters, Duration, Ledger, Mailbox, Time};
use nextio_hw::cache::CoreStats;
use nextio_hw::ethernet::{LinkConfig, PER_FRAME_OVERHEAD_BYTES};
use nextio_hw::machine::MachineSpec;
use nextio_hw::pcie::{DirectionCounters, PcieConfig};
use nextio_hw::trafficgen::{
    Arrivals, SizeSpec, Source, Trace, TrafficConfig, TrafficGen, TrafficStats,
};

use crate::experiment::{RunContext, RunError};

/// The NIC interface under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    Packetized,
    Enso(NotificationMode),
}

impl Interface {
    pub fn name(self) -> &'static str {
        match self {
            Interface::Packetized => "packetized",
            Interface::Enso(_) => "enso",
        }
    }
    pub fn mode_name(self) -> &'static str {
        match self {
            Interface::Packetized => "packetized",
            Interface::Enso(NotificationMode::PerPacket) => "per-packet",
            Interface::Enso(NotificationMode::Reactive) => "reactive",
            Interface::Enso(NotificationMode::Prefetch) => "prefetch",
        }
    }
}

/// A packet-processing application run instead of the echo (Ensō paper
/// §3.3.3), one instance per core, with its costs from the root preset.
#[derive(Clone, Debug, PartialEq)]
pub enum AppKind {
    Maglev(MaglevConfig),
    Mica(MicaConfig),
    NitroSketch(SketchConfig),
    LogMonitor(LogMonitorConfig),
    Vswitch(VswitchConfig),
}

impl AppKind {
    pub fn name(&self) -> &'static str {
        match self {
            AppKind::Maglev(_) => "maglev",
            AppKind::Mica(_) => "mica",
            AppKind::NitroSketch(_) => "nitrosketch",
            AppKind::LogMonitor(_) => "log-monitor",
            AppKind::Vswitch(_) => "vswitch",
        }
    }
    /// Check the configuration before any host is built.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            AppKind::Maglev(c) => c.validate(),
            AppKind::Mica(c) => c.validate(),
            AppKind::NitroSketch(c) => c.validate(),
            AppKind::LogMonitor(c) => LogMonitor::new(c.clone(), *log_monitor::costs()).map(|_| ()),
            AppKind::Vswitch(c) => c.validate(),
        }
    }
    fn factory(&self) -> AppFactory {
        match self.clone() {
            AppKind::Maglev(c) => std::rc::Rc::new(move |_core| {
                Box::new(
                    Maglev::new(c.clone(), *maglev::costs()).expect("validated before the run"),
                )
            }),
            AppKind::Mica(c) => std::rc::Rc::new(move |_core| {
                Box::new(Mica::new(c.clone(), *mica::costs()).expect("validated before the run"))
            }),
            AppKind::NitroSketch(c) => std::rc::Rc::new(move |core| {
                let c = SketchConfig {
                    seed: c.seed.wrapping_add(core as u64),
                    ..c.clone()
                };
                Box::new(
                    NitroSketch::new(c, *nitrosketch::costs()).expect("validated before the run"),
                )
            }),
            AppKind::LogMonitor(c) => std::rc::Rc::new(move |_core| {
                Box::new(
                    LogMonitor::new(c.clone(), *log_monitor::costs())
                        .expect("validated before the run"),
                )
            }),
            AppKind::Vswitch(c) => std::rc::Rc::new(move |_core| {
                Box::new(
                    Vswitch::new(c.clone(), *vswitch::costs()).expect("validated before the run"),
                )
            }),
        }
    }
}

/// Time allowed after the last frame is offered for the system to drain:
/// far above any round trip the model produces (µs), so frames still in
/// flight are not mistaken for losses.
const DRAIN: Duration = Duration::from_us(200);
/// Longest a host may take to hand its rings to the NIC: a doorbell crosses
/// PCIe in well under a microsecond, so a host not ready by then is broken.
const READY_WITHIN: Duration = Duration::from_us(100);
/// Most simulated time a trial's offered traffic may take: 10^6 s, beyond
/// every legal configuration (the most frames at the lowest rate a search
/// reaches take under half of it) and far below where the picosecond clock
/// saturates (≈ 1.8 × 10^7 s).
pub const MAX_OFFER: Duration = Duration::from_ms(1_000_000_000);
/// Most bisection steps of a zero-loss search after its line-rate trial:
/// 100 Gb/s halved 40 times is below 10^-10 Gb/s, finer than any declared
/// resolution; a step that no longer moves the bounds (float spacing)
/// ends the search too.
pub const MAX_HALVINGS: u32 = 40;

/// One simulation of the bench.
#[derive(Clone, Debug)]
pub struct Trial {
    pub interface: Interface,
    pub cores: usize,
    pub frame_bytes: usize,
    /// Offered line rate (frame + 20 bytes per frame).
    pub rate_gbps: f64,
    /// Measured frames.
    pub frames: u64,
    /// Frames offered first at the same rate and not measured.
    pub warmup_frames: u64,
    /// Distinct flows: enough that RSS / the flow table spreads them over cores.
    pub flows: u32,
    pub arrivals: Arrivals,
    /// A capture to replay instead of synthetic frames: its frames' own
    /// sizes and flows (then `frame_bytes` and `flows` only name the
    /// trial), spaced by `arrivals`.
    pub replay: Option<Arc<Trace>>,
    pub pcie: PcieConfig,
    pub seed: u64,
    /// The application on the host (`None`: the echo server).
    pub app: Option<AppKind>,
}

/// What a trial measured.
pub struct TrialResult {
    pub traffic: TrafficStats,
    pub nic: Counters,
    pub app: Counters,
    pub upstream: DirectionCounters,
    pub downstream: DirectionCounters,
    /// Cache statistics summed over the echo cores (every core of the host).
    pub caches: CoreStats,
    /// Each core's ledger at the end of the trial (warm-up included).
    pub ledgers: Vec<Ledger>,
    /// Core clock, GHz.
    pub core_ghz: f64,
    /// Whether returning frames must carry the echo's increment (an
    /// application other than the echo rewrites frames its own way).
    pub expects_echo: bool,
    /// Offered line rate of the trial, Gb/s.
    pub offered_gbps: f64,
}

/// Least fraction of the offered rate at which an application host must
/// return the measured frames to pass a trial. A trial is 10^4–10^5
/// frames, and an Ensō pipe buffers megabytes: a host a few per cent too
/// slow would finish the trial from its buffer during the drain and lose
/// nothing, where the paper's trials (RFC 2544: seconds) would overflow.
/// Returning frames at the offered rate is what keeping up means; 3 %
/// leaves room for the spacing jitter of batched processing (model choice).
pub const KEEP_UP_FRACTION: f64 = 0.97;

/// Line rate (Gb/s) at which the measured frames came back: their line
/// bytes over the span between the first and the last return.
pub fn return_gbps(t: &TrafficStats) -> f64 {
    match (t.first_rx, t.last_rx) {
        (Some(a), Some(b)) if b > a && t.received > 1 => {
            let per_frame = (b - a).as_secs_f64() / (t.received - 1) as f64;
            t.received_line_bytes as f64 * 8.0 / (per_frame * t.received as f64) / 1e9
        }
        _ => 0.0,
    }
}

impl TrialResult {
    pub fn zero_loss(&self) -> bool {
        let kept_up = || return_gbps(&self.traffic) >= KEEP_UP_FRACTION * self.offered_gbps;
        self.traffic.lost() == 0
            && self.traffic.corrupt == 0
            && (if self.expects_echo {
                self.traffic.not_echoed == 0
            } else {
                kept_up()
            })
    }
    /// Achieved packet rate of the returning traffic, in Mpps.
    pub fn achieved_mpps(&self, frame_bytes: usize) -> f64 {
        self.traffic.achieved_gbps() * 1e9
            / (8.0 * (frame_bytes as f64 + PER_FRAME_OVERHEAD_BYTES as f64))
            / 1e6
    }
}

/// Fraction of a direction's TLP bytes (headers included) that are not
/// packet data: descriptors, notifications, doorbells.
pub fn metadata_share(c: &DirectionCounters) -> f64 {
    let total: u64 = c.bytes_by_purpose.values().sum();
    let data = c.bytes_by_purpose.get("packet-data").copied().unwrap_or(0);
    if total == 0 {
        0.0
    } else {
        (total - data) as f64 / total as f64
    }
}

/// Mpps of `frame_bytes` frames at a line rate of `gbps`.
pub fn gbps_to_mpps(gbps: f64, frame_bytes: usize) -> f64 {
    gbps * 1e9 / (8.0 * (frame_bytes as f64 + PER_FRAME_OVERHEAD_BYTES as f64)) / 1e6
}

/// Run one trial on a fresh simulator; its work is added to `ctx`'s tally
/// (and its event trace written, if the run asked for traces).
pub fn run_trial(ctx: &RunContext, t: &Trial) -> Result<TrialResult, RunError> {
    let cfg = |e: &dyn std::fmt::Display| RunError::Config(e.to_string());
    let sim = ctx.new_sim();
    let to_gen = Rc::new(Mailbox::new(&sim));
    // The Ensō testbed, its NIC slot the trial's PCIe link.
    let mut machine = MachineSpec::enso_testbed(t.cores);
    machine.nic_slot = t.pcie.clone();
    let echo_config = EchoConfig {
        machine,
        seed: t.seed,
    };
    if let Some(app) = &t.app {
        app.validate().map_err(|e| cfg(&e))?;
    }
    let factory = t.app.as_ref().map(AppKind::factory);
    let system: EchoSystem = match t.interface {
        Interface::Packetized => echo::packetized::build_app(&sim, &echo_config, factory),
        Interface::Enso(mode) => echo::enso::build_app(&sim, &echo_config, mode, factory),
    }
    .map_err(|e| cfg(&e))?;
    // The generator paces itself but Poisson departures bunch up; like a
    // hardware generator's deep transmit buffer, its port never drops, so
    // every loss the bench reports is the host's.
    let gen_port = LinkConfig {
        queue_frames: 1 << 16,
        ..LinkConfig::default()
    };
    // The host NIC's transmit side: a NIC holds frames in its TX packet
    // buffer until the MAC takes them rather than dropping them, so the port
    // queue is deep (4096 frames: model choice; E810-class NICs buffer
    // hundreds of KiB per port).
    let dut_port = LinkConfig {
        queue_frames: 4096,
        ..LinkConfig::default()
    };
    let (dut_out, gen_out) = system
        .host
        .machine()
        .wire_port(system.nic, 0, to_gen.clone(), dut_port, gen_port)
        .map_err(|e| cfg(&e))?;
    let source = match &t.replay {
        Some(trace) => Source::Trace(trace.clone()),
        None => Source::Synthetic {
            sizes: SizeSpec::Fixed(t.frame_bytes),
            flows: t.flows,
        },
    };
    let traffic = TrafficConfig {
        source,
        arrivals: t.arrivals,
        rate_gbps: t.rate_gbps,
        frames: t.frames,
        warmup_frames: t.warmup_frames,
        seed: t.seed,
    };
    let offer = traffic
        .offered_time()
        .filter(|d| *d <= MAX_OFFER)
        .ok_or_else(|| {
            RunError::Config(format!(
                "{} frames at {} Gb/s take more than the {} s of simulated time a trial may offer",
                t.warmup_frames.saturating_add(t.frames),
                t.rate_gbps,
                MAX_OFFER.as_secs_f64()
            ))
        })?;
    for wire in [&gen_out, &dut_out] {
        if let Some(capture) = ctx.new_capture() {
            wire.set_capture(capture);
        }
    }
    // The start barrier: run the host alone until its drivers are ready.
    let (ready, s) = (system.ready.clone(), sim.clone());
    sim.spawn(async move {
        ready.wait().await;
        s.stop();
    });
    sim.run_until(Time::ZERO + READY_WITHIN);
    if !system.ready.is_ready() {
        return Err(RunError::Config(format!(
            "the {} echo host's drivers did not hand their rings to the NIC within {} µs (application counters: {:?})",
            t.interface.mode_name(),
            READY_WITHIN.as_us_f64(),
            system.app.borrow()
        )));
    }
    // The cache counters measure the steady state, as perf attached after
    // start-up does: the warm-up's cold misses are zeroed when its frames
    // have been offered.
    let warm_up = TrafficConfig {
        frames: 0,
        ..traffic.clone()
    };
    if let Some(warm) = warm_up.offered_time().filter(|_| t.warmup_frames > 0) {
        let memory = system.host.machine().memory().clone();
        sim.after(warm, move || memory.borrow_mut().caches.reset_stats());
    }
    let generator =
        TrafficGen::start(&sim, traffic, gen_out.clone(), to_gen).map_err(|e| cfg(&e))?;
    let end = sim.now() + offer + DRAIN;
    // The cache counters measure the steady state, as perf attached after
    // start-up does: the warm-up's cold misses are zeroed when its frames
    // have been offered.
    sim.run_until(end);

    let mut nic = system.nic_counters();
    nic.merge(
        &dut_out
            .counters()
            .iter()
            .filter(|(k, _)| k.starts_with("drop."))
            .fold(Counters::new(), |mut c, (k, v)| {
                c.add(
                    if k == "drop.queue_full" {
                        "drop.tx_wire_queue_full"
                    } else {
                        k
                    },
                    v,
                );
                c
            }),
    );
    let (upstream, downstream) = system.link_counters();
    // Every core of the host runs an echo thread, so the total is theirs.
    let caches = system.cache_stats();
    let ledgers = system
        .cores()
        .iter()
        .map(|c| c.ledger_at(sim.now().max(c.cursor())))
        .collect();
    let core_ghz = system.cores().first().map_or(0.0, |c| c.freq().ghz_f64());
    let result = TrialResult {
        ledgers,
        core_ghz,
        expects_echo: t.app.is_none(),
        offered_gbps: t.rate_gbps,
        traffic: generator.stats.borrow().clone(),
        nic,
        app: system.app.borrow().clone(),
        upstream,
        downstream,
        caches,
    };
    // The rate in full: a search's trials differ in the third decimal.
    let label = format!(
        "{}{}-{}core-{}B-{}gbps",
        t.app
            .as_ref()
            .map_or(String::new(), |a| format!("{}-", a.name())),
        t.interface.mode_name(),
        t.cores,
        t.frame_bytes,
        crate::output::significant(t.rate_gbps)
    );
    for (wire, side) in [(&gen_out, "to-host"), (&dut_out, "from-host")] {
        if let Some(capture) = wire.take_capture() {
            ctx.write_capture(&format!("{label}-{side}"), &capture)?;
        }
    }
    ctx.finish_sim(&label, &sim, t.warmup_frames + t.frames)?;
    sim.shutdown();
    Ok(result)
}

/// The outcome of a zero-loss search.
pub struct Search {
    /// Highest passing offered rate (0 if none passed).
    pub gbps: f64,
    /// The trial at that rate.
    pub passing: Option<TrialResult>,
    /// The lowest failing trial: it shows *why* the system loses beyond.
    pub failing: Option<(f64, TrialResult)>,
}

/// RFC 2544 §26.1 throughput: the highest offered rate in `[lo, hi]` Gb/s
/// at which `trial(rate)` loses nothing, found by bisection to within
/// `resolution` Gb/s — or as close as [`MAX_HALVINGS`] steps and float
/// spacing allow, so no resolution can keep it running.
pub fn zero_loss_search(
    lo: f64,
    hi: f64,
    resolution: f64,
    mut trial: impl FnMut(f64) -> Result<TrialResult, RunError>,
) -> Result<Search, RunError> {
    // Line rate first: a system that keeps up there needs no search.
    let top = trial(hi)?;
    if top.zero_loss() {
        return Ok(Search {
            gbps: hi,
            passing: Some(top),
            failing: None,
        });
    }
    let (mut pass, mut fail) = (lo, hi);
    let mut passing = None;
    let mut failing = (hi, top);
    let mut steps = 0;
    while fail - pass > resolution && steps < MAX_HALVINGS {
        steps += 1;
        let mid = pass + (fail - pass) / 2.0;
        if !(mid > pass && mid < fail) {
            break;
        }
        let r = trial(mid)?;
        if r.zero_loss() {
            pass = mid;
            passing = Some(r);
        } else {
            fail = mid;
            failing = (mid, r);
        }
    }
    Ok(Search {
        gbps: if passing.is_some() { pass } else { 0.0 },
        passing,
        failing: Some(failing),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Params;

    fn trial(warmup_frames: u64) -> Trial {
        Trial {
            interface: Interface::Packetized,
            cores: 1,
            frame_bytes: 64,
            rate_gbps: 5.0,
            frames: 2_000,
            warmup_frames,
            flows: 16,
            arrivals: Arrivals::Constant,
            replay: None,
            pcie: PcieConfig::default(),
            seed: 1,
            app: None,
        }
    }

    /// A trial result that lost frames or not.
    fn result(lost: bool) -> TrialResult {
        let mut traffic = TrafficStats::default();
        traffic.sent = 10;
        traffic.received = if lost { 9 } else { 10 };
        TrialResult {
            traffic,
            nic: Counters::new(),
            app: Counters::new(),
            upstream: DirectionCounters::default(),
            downstream: DirectionCounters::default(),
            caches: CoreStats::default(),
            ledgers: Vec::new(),
            core_ghz: 2.0,
            expects_echo: true,
            offered_gbps: 0.0,
        }
    }

    #[test]
    fn cache_counters_leave_the_warm_up_out() {
        let ctx = RunContext::new(
            Params::resolve("t", &[], true, &[]).expect("no parameters"),
            1,
            true,
        );
        let cold = run_trial(&ctx, &trial(0)).expect("cold trial");
        let warm = run_trial(&ctx, &trial(6_000)).expect("warm trial");
        // Both measure 2 000 frames; counting the warm-up's 6 000 as well
        // would make the warm trial's loads four times the cold one's.
        let (c, w) = (cold.caches.l1d.accesses, warm.caches.l1d.accesses);
        assert!(c > 0 && w > 0);
        assert!(
            w < 2 * c,
            "warm-up counted: {w} loads vs {c} without warm-up"
        );
    }

    /// PCIe DLLPs follow the spec's Ack coalescing: charged per TLP of
    /// each direction instead, they held this echo to 94 % of line rate.
    #[test]
    fn a_1518_byte_echo_on_one_packetized_core_keeps_up_with_line_rate() {
        let ctx = RunContext::new(
            Params::resolve("t", &[], true, &[]).expect("no parameters"),
            1,
            true,
        );
        let t = Trial {
            frame_bytes: 1518,
            rate_gbps: 100.0,
            frames: 4_000,
            warmup_frames: 20_000,
            pcie: PcieConfig::gen_lanes(3, 16),
            ..trial(0)
        };
        let r = run_trial(&ctx, &t).expect("trial");
        assert!(r.zero_loss(), "lost {} frames", r.traffic.lost());
        assert_eq!(r.traffic.received, 4_000);
    }

    #[test]
    fn a_search_ends_whatever_its_resolution() {
        for resolution in [0.1, 1e-15, 1e-16, 1e-300, 0.0, -1.0] {
            let mut trials = 0;
            let s = zero_loss_search(0.0, 100.0, resolution, |rate| {
                trials += 1;
                assert!(
                    trials < 1000,
                    "resolution {resolution}: the search does not end"
                );
                Ok(result(rate > 37.3))
            })
            .unwrap();
            assert!(trials <= 1 + MAX_HALVINGS, "{trials} trials");
            assert!(
                s.gbps <= 37.3 && s.gbps > 37.3 - resolution.max(1e-9) - 1e-9,
                "{resolution}: {}",
                s.gbps
            );
        }
    }
}
