//! Simulator speed on the Ensō evaluation's bench (issue: simulator speed):
//! simulated packets per wall second of a 1-core 64 B echo at 100 Gb/s
//! for the Ensō host and for the packetized host, and how wall time scales
//! with simulated packets and with cores.
//!
//! These report, they never assert: wall-clock speed depends on the machine
//! and its load, so it belongs in a bench, not a test. Criterion's
//! throughput is in simulated frames ("elements"), so its `elem/s` figure
//! is packets per wall second.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nextio_apps::echo::NotificationMode;
use nextio_experiments::enso::harness::{Interface, Trial, run_trial};
use nextio_experiments::{Params, RunContext};
use nextio_hw::pcie::PcieConfig;
use nextio_hw::trafficgen::Arrivals;

const ENSO: Interface = Interface::Enso(NotificationMode::Reactive);

fn trial(interface: Interface, cores: usize, frames: u64) -> Trial {
    Trial {
        interface,
        cores,
        frame_bytes: 64,
        rate_gbps: 100.0,
        frames,
        warmup_frames: 0,
        flows: 256,
        arrivals: Arrivals::Constant,
        replay: None,
        pcie: PcieConfig::default(),
        seed: 1,
        app: None,
    }
}

fn run(t: &Trial) -> u64 {
    let params = Params::resolve("bench", &[], false, &[]).expect("no parameters to resolve");
    let ctx = RunContext::new(params, t.seed, false);
    let r = run_trial(&ctx, t).expect("the bench's trial is well formed");
    r.traffic.received
}

/// The headline figures: packets per wall second of a 1-core 64 B echo.
fn echo(c: &mut Criterion) {
    const FRAMES: u64 = 100_000;
    let mut g = c.benchmark_group("echo-1core-64B");
    g.sample_size(10);
    g.throughput(Throughput::Elements(FRAMES));
    for (name, interface) in [("enso", ENSO), ("packetized", Interface::Packetized)] {
        let t = trial(interface, 1, FRAMES);
        g.bench_function(name, |b| b.iter(|| run(&t)));
    }
    g.finish();
}

/// Wall time against simulated packets (cost linear in work) and against
/// cores at a fixed number of packets per core (the constant per core).
fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("scaling-packets");
    g.sample_size(10);
    for frames in [10_000u64, 100_000, 1_000_000] {
        g.throughput(Throughput::Elements(frames));
        let t = trial(ENSO, 1, frames);
        g.bench_with_input(BenchmarkId::new("enso", frames), &t, |b, t| {
            b.iter(|| run(t))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("scaling-cores");
    g.sample_size(10);
    const PER_CORE: u64 = 20_000;
    for cores in [1usize, 2, 4, 8, 16] {
        let frames = PER_CORE * cores as u64;
        g.throughput(Throughput::Elements(frames));
        let t = trial(ENSO, cores, frames);
        g.bench_with_input(BenchmarkId::new("enso", cores), &t, |b, t| {
            b.iter(|| run(t))
        });
    }
    g.finish();
}

criterion_group!(benches, echo, scaling);
criterion_main!(benches);
