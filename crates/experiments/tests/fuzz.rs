//! Property-based fuzzing of everything a user hands nextio: every
//! experiment's parameters with random and boundary values (`0`, `1`,
//! `u64::MAX`, just outside the declared range, huge lists, `NaN`, `inf`,
//! negative numbers, garbage), and the capture reader with random bytes and
//! mutated valid pcap and pcapng files.
//!
//! What it keeps true: every input ends as a result or as one clean error
//! line that names the parameter — never a panic, an abort or a hang — in
//! bounded time and memory. Time is bounded by construction (the declared
//! ranges); a run is only attempted when every value is below the "cheap"
//! caps here, and [`worst_legal_values_finish_quickly`] runs the costliest
//! values of the parameters that do not scale the work. Memory is the
//! process's peak resident set, reset before each run (Linux).
//!
//! Cases per property: `NEXTIO_FUZZ_CASES` (default 100; CI runs the
//! default, a deeper search sets it higher).

use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nextio_experiments::params::{ParamKind, ParamSpec, Range};
use nextio_experiments::{Params, RunContext, all, execute};
use nextio_hw::packet::{Macs, build_udp};
use nextio_hw::pcap::{self, Capture};
use nextio_hw::trafficgen::{Trace, synthetic_flow};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Longest one fuzzed run may take (the ci profile, a loaded machine).
const RUN_DEADLINE: Duration = Duration::from_secs(30);
/// Most resident memory one run may add.
const RUN_MEMORY: u64 = 1 << 30;

/// Runs one at a time, so the peak resident set is one run's.
static SERIAL: Mutex<()> = Mutex::new(());

fn cases() -> u32 {
    std::env::var("NEXTIO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

/// Small, fast settings for every experiment: the fuzzed parameter is set
/// after these, so it replaces its own.
fn small(experiment: &str) -> &'static [&'static str] {
    match experiment {
        "ethernet-linerate" => &["frame_bytes=64", "frames=200"],
        "pcie-bandwidth" => &["sizes=256", "transfers=50"],
        "cache-layout" => &["packets=64", "packet_bytes=64", "pool_mib=1"],
        "enso-packet-rate" => &[
            "cores=1",
            "interfaces=enso",
            "frames=100",
            "warmup_frames_per_core=0",
            "flows=4",
        ],
        "enso-pcie-metadata" => &[
            "frame_bytes=64",
            "interfaces=enso",
            "frames=100",
            "warmup_frames_per_core=0",
            "flows=4",
        ],
        "enso-cache-misses" => &[
            "interfaces=enso",
            "frames=100",
            "warmup_frames_per_core=0",
            "flows=4",
        ],
        "enso-notification-latency" => &[
            "offered_gbps=10",
            "modes=reactive",
            "frames=100",
            "warmup_frames_per_core=0",
            "flows=4",
        ],
        "enso-apps" => &[
            "interfaces=enso",
            "cases=maglev-cached",
            "frames=100",
            "warmup_frames_per_core=0",
            "resolution_gbps=50",
        ],
        "xui-receiver-overhead" => &["interval_us=100", "program_ms=1"],
        "xui-safepoints" => &["quantum_us=100", "program_ms=1"],
        "xui-timer-core" => &["workers=1", "interval_us=100", "ticks=5"],
        "xui-rocksdb" => &["offered_krps=20", "duration_ms=10"],
        "xui-l3fwd" => &["queues=1", "load=0.2", "duration_us=100", "routes=100"],
        "xui-dsa" => &["mean_us=2", "noise_frac=0", "requests=20"],
        "udma-offload" => &["sizes=4096", "ops=4"],
        "udma-submission" => &["sizes=64", "ops=10"],
        "udma-pollution" => &["working_set_kib=64", "copy_kib=64", "iterations=2"],
        "udma-cross-space" => &["sizes=64", "messages=5"],
        "udma-p2p" => &["kib=4", "transfers=2"],
        "nagare-chain" => &["isolated=1", "loads_kmps=250", "messages=50"],
        "nagare-switch-latency" => &["stages=10", "cycles_per_stage=10", "clock_ghz=3"],
        "nagare-cpu-push" => &["sizes=64"],
        "nagare-acl" => &["messages=50"],
        "lauberhorn-rtt" => &["systems=eci", "sizes=64", "iterations=5"],
        "lauberhorn-rpc-cycles" => &["requests=20", "warmup=5"],
        "lauberhorn-large" => &["sizes=256,4096", "iterations=5"],
        "lauberhorn-nested" => &["requests=20", "warmup=5"],
        "lauberhorn-dynamic" => &["requests=50"],
        "lauberhorn-with-xui" => &["requests=50"],
        "accio-linux-breakdown" => &["sizes=64", "datagrams=5", "kernel=testbed"],
        "accio-latency" => &["sizes=64", "messages=5"],
        "accio-cpu" => &["slowdowns=1,40", "messages=5"],
        "accio-multiplex" => &["processes=1,4", "messages=3"],
        "accio-ict-pressure" => &["sockets=16,80", "rounds=1"],
        "accio-fallback" => &["datagrams=50", "down_us=20"],
        "accio-throughput" => &["duration_us=50", "platforms=server"],
        "accio-with-enso" => &["duration_us=40", "sizes=1024", "idle_sockets=1"],
        "dpdk-multiprocess" => &["processes=1,2", "messages=3"],
        other => panic!("no small settings for {other}: add them"),
    }
}

/// Whether a legal `raw` value of `spec` is cheap enough to run here: the
/// parameters that scale the work (frames, transfers, ticks, durations,
/// table sizes, list lengths) only up to a few times the small settings.
/// Larger legal values are bounded by their declared ranges; running them
/// is what the full experiments do.
fn cheap(spec: &ParamSpec, raw: &str) -> bool {
    let items: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.len() > 4 {
        return false;
    }
    let cap = cap(spec);
    items
        .iter()
        .all(|v| v.parse::<f64>().map_or(true, |x| x <= cap))
}

/// The largest value of `spec` this test runs (see [`cheap`]).
fn cap(spec: &ParamSpec) -> f64 {
    match spec.name {
        "frames" | "warmup_frames_per_core" => 2_000.0,
        "transfers" => 200.0,
        "sizes" => 65_536.0,
        "packets" => 512.0,
        "pool_mib" => 64.0,
        "program_ms" => 2.0,
        "ticks" => 20.0,
        "duration_ms" => 20.0,
        "duration_us" => 500.0,
        "down_us" => 2_000.0,
        "requests" => 200.0,
        "warmup" => 50.0,
        "routes" => 2_000.0,
        "flows" => 4_096.0,
        "queue_frames" => 4_096.0,
        "offered_krps" => 300.0,
        "workers" => 16.0,
        "queues" => 8.0,
        "ops" => 64.0,
        "messages" => 400.0,
        "working_set_kib" | "copy_kib" | "kib" => 512.0,
        "iterations" => 8.0,
        "isolated" => 5.0,
        "datagrams" => 50.0,
        "processes" => 8.0,
        "sockets" => 256.0,
        "rounds" => 2.0,
        _ => f64::INFINITY,
    }
}

/// A legal value of `spec`, mostly one cheap enough to run.
fn legal(spec: &'static ParamSpec) -> BoxedStrategy<String> {
    let one: BoxedStrategy<String> = match spec.range {
        Range::Int { min, max } => {
            let cheap_max = (cap(spec).min(max as f64) as u64).max(min);
            prop_oneof![
                4 => (min..=cheap_max).prop_map(|v| v.to_string()),
                1 => Just(min.to_string()),
                1 => (min..=max).prop_map(|v| v.to_string()),
            ]
            .boxed()
        }
        Range::Real { min, max } => prop_oneof![
            4 => (min..=max).prop_map(|v| v.to_string()),
            1 => Just(min.to_string()),
            1 => Just(max.to_string()),
        ]
        .boxed(),
        Range::Undeclared if !spec.choices.is_empty() => {
            prop::sample::select(spec.choices.to_vec())
                .prop_map(String::from)
                .boxed()
        }
        Range::Undeclared if spec.name == "traffic_pcap" => {
            prop_oneof![Just("none".to_string()), Just(valid_pcap_path())].boxed()
        }
        Range::Undeclared => Just(spec.default.to_string()).boxed(),
    };
    if spec.is_list() {
        let most = spec.items.1.min(3);
        prop::collection::vec(one, spec.items.0..=most)
            .prop_map(|v| v.join(","))
            .boxed()
    } else {
        one
    }
}

/// Values at and around the edges of what `spec` accepts, and beyond.
fn boundary(spec: &ParamSpec) -> Vec<String> {
    let mut v: Vec<String> = [
        "0",
        "1",
        "-1",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999",
        "NaN",
        "inf",
        "-inf",
        "1e-300",
        "1e300",
        "-0",
        "0x10",
        "1e3",
        "",
        " ",
        ",",
        "1,,2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match spec.range {
        Range::Int { min, max } => {
            v.extend([
                min.to_string(),
                max.to_string(),
                min.saturating_sub(1).to_string(),
                (max as u128 + 1).to_string(),
            ]);
        }
        Range::Real { min, max } => {
            v.extend([
                min.to_string(),
                max.to_string(),
                (min - min.abs() * 1e-9 - 1e-12).to_string(),
                (max + max.abs() * 1e-9 + 1e-12).to_string(),
            ]);
        }
        Range::Undeclared => {}
    }
    v.extend(spec.choices.iter().map(|c| c.to_string()));
    if spec.name == "traffic_pcap" {
        v.extend(["/", "/dev/null", "/no/such/capture.pcap", "."].map(String::from));
    }
    v
}

/// A value for `spec`: a boundary value, a random number, a list of
/// either, a huge list, or garbage.
fn value(spec: &'static ParamSpec) -> BoxedStrategy<String> {
    let edge = prop::sample::select(boundary(spec));
    let number = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| x.to_string()),
        (0u64..2_000).prop_map(|n| n.to_string()),
        (-10.0f64..200.0).prop_map(|x| x.to_string()),
    ];
    let item = prop_oneof![edge.clone(), number.clone()];
    let list = prop::collection::vec(item, 1..6).prop_map(|v| v.join(","));
    let huge = (1usize..5).prop_map(move |k| {
        let n = spec.items.1.max(1) * 10 * k + 1000;
        vec!["1"; n].join(",")
    });
    let garbage = prop_oneof!["[ -~]{0,24}", "\\PC{0,12}", "[0-9,.eE+-]{1,16}"];
    prop_oneof![
        8 => legal(spec),
        3 => edge,
        2 => number,
        1 => list,
        1 => huge,
        1 => garbage
    ]
    .boxed()
}

/// Every (experiment, parameter) pair.
fn targets() -> Vec<(usize, usize)> {
    all()
        .iter()
        .enumerate()
        .flat_map(|(e, exp)| (0..exp.params().len()).map(move |p| (e, p)))
        .collect()
}

/// The process's peak resident set since the last reset, where Linux
/// offers both (`/proc/self/clear_refs` value 5 resets it).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
fn peak_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resolve and (if cheap) run `experiment` with its small settings and
/// `key=raw`; a failure is described, a clean error or result is `Ok`.
fn drive(e: usize, p: usize, raw: &str) -> Result<(), String> {
    let exp = all()[e];
    let spec = &exp.params()[p];
    let mut set: Vec<String> = small(exp.name()).iter().map(|s| s.to_string()).collect();
    set.push(format!("{}={raw}", spec.name));
    let params = match Params::resolve(exp.name(), exp.params(), true, &set) {
        Ok(p) => p,
        Err(err) => {
            let text = err.to_string();
            if text.contains('\n') || text.len() > 1_000 {
                return Err(format!("{}: {raw:?}: a messy error: {text:?}", exp.name()));
            }
            if !text.contains(&format!("`{}`", spec.name)) {
                return Err(format!(
                    "{}: {raw:?}: the error does not name the parameter: {text}",
                    exp.name()
                ));
            }
            return Ok(());
        }
    };
    if !cheap(spec, raw) {
        return Ok(());
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = if reset_peak() { peak_bytes() } else { None };
    let started = Instant::now();
    let outcome = execute(exp, RunContext::new(params, 1, true));
    let took = started.elapsed();
    if let Err(err) = &outcome {
        let text = err.to_string();
        if text.contains('\n') {
            return Err(format!(
                "{}: {raw:?}: a multi-line error: {text:?}",
                exp.name()
            ));
        }
    }
    if took > RUN_DEADLINE {
        return Err(format!(
            "{} {}={raw:?} took {took:?}",
            exp.name(),
            spec.name
        ));
    }
    if let (Some(base), Some(peak)) = (before, peak_bytes())
        && peak.saturating_sub(base) > RUN_MEMORY
    {
        return Err(format!(
            "{} {}={raw:?} used {} MiB",
            exp.name(),
            spec.name,
            (peak - base) >> 20
        ));
    }
    Ok(())
}

#[test]
fn every_parameter_takes_any_value_cleanly() {
    let targets = targets();
    let strategy = prop::sample::select(targets).prop_flat_map(|(e, p)| {
        let spec: &'static ParamSpec = &all()[e].params()[p];
        value(spec).prop_map(move |v| (e, p, v))
    });
    let mut runner = TestRunner::new(Config {
        cases: cases() * 4,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |(e, p, raw)| {
            drive(e, p, &raw).map_err(TestCaseError::fail)
        })
        .unwrap();
}

#[test]
fn every_boundary_value_of_every_parameter_parses_or_is_refused_by_name() {
    // Parsing only (no run): all of them, deterministically.
    for (e, p) in targets() {
        let exp = all()[e];
        let spec = &exp.params()[p];
        for raw in boundary(spec) {
            let set = vec![format!("{}={raw}", spec.name)];
            if let Err(err) = Params::resolve(exp.name(), exp.params(), true, &set) {
                let text = err.to_string();
                assert!(
                    text.contains(&format!("`{}`", spec.name)) && !text.contains('\n'),
                    "{} {raw:?}: {text}",
                    exp.name()
                );
            } else if spec.kind == ParamKind::U64 || spec.kind == ParamKind::F64 {
                // Anything accepted is inside the declared range.
                let x: f64 = raw.trim().parse().unwrap();
                match spec.range {
                    Range::Int { min, max } => assert!(x >= min as f64 && x <= max as f64),
                    Range::Real { min, max } => assert!(x >= min && x <= max),
                    Range::Undeclared => panic!("{} has no range", spec.name),
                }
            }
        }
    }
}

/// The costliest values of the parameters that do not scale the work by
/// design, each with the other parameters small: they must finish quickly.
#[test]
fn worst_legal_values_finish_quickly() {
    let worst: &[(&str, &[&str])] = &[
        (
            "enso-packet-rate",
            &["interfaces=packetized", "resolution_gbps=0.001"],
        ),
        ("enso-pcie-metadata", &["offered_gbps=0.01"]),
        ("enso-notification-latency", &["offered_gbps=0.01,100"]),
        ("enso-cache-misses", &["flows=65536", "frame_bytes=1518"]),
        ("ethernet-linerate", &["gbps=1600", "queue_frames=65536"]),
        ("ethernet-linerate", &["gbps=1", "frame_bytes=1518"]),
        (
            "pcie-bandwidth",
            &["sizes=1048576", "transfers=2", "tags=1"],
        ),
        ("pcie-bandwidth", &["gen=1", "lanes=1", "tags=1024"]),
        ("cache-layout", &["pool_mib=4096", "packet_bytes=2048"]),
        ("xui-receiver-overhead", &["interval_us=1,500"]),
        ("xui-safepoints", &["quantum_us=1,500", "check_uops=100"]),
        ("xui-timer-core", &["workers=256", "interval_us=10000"]),
        ("xui-rocksdb", &["workers=64", "quantum_us=1"]),
        ("xui-rocksdb", &["offered_krps=2000", "quantum_us=10000"]),
        ("xui-l3fwd", &["queues=63", "load=1.5"]),
        ("xui-dsa", &["mean_us=10000", "noise_frac=1", "requests=5"]),
        (
            "lauberhorn-rtt",
            &[
                "systems=eci,cxl,pcie-pio,pcie-dma,pcie-dma-x86",
                "sizes=1,16000",
            ],
        ),
        ("lauberhorn-large", &["sizes=1,16000", "machine=cxl"]),
        (
            "lauberhorn-dynamic",
            &[
                "processes=8",
                "rpc_cores=7",
                "handler_us=20",
                "hot_load=0.2",
                "burst_us=10000",
            ],
        ),
    ];
    for (name, values) in worst {
        let e = all().iter().position(|x| x.name() == *name).unwrap();
        let exp = all()[e];
        let mut set: Vec<String> = small(name).iter().map(|s| s.to_string()).collect();
        set.extend(values.iter().map(|s| s.to_string()));
        let params = Params::resolve(name, exp.params(), true, &set)
            .unwrap_or_else(|err| panic!("{name} {values:?} should be legal: {err}"));
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let outcome = execute(exp, RunContext::new(params, 1, true));
        let took = started.elapsed();
        assert!(
            outcome.is_ok(),
            "{name} {values:?}: {}",
            outcome.err().unwrap()
        );
        assert!(took < RUN_DEADLINE, "{name} {values:?} took {took:?}");
    }
}

/// A valid capture on disk, for legal `traffic_pcap` values.
fn valid_pcap_path() -> String {
    let dir = std::env::temp_dir().join(format!("nextio-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("legal.pcap");
    if !path.exists() {
        let _ = std::fs::write(&path, valid_pcap());
    }
    path.display().to_string()
}

/// A small valid capture: pcap (nanosecond, big endian) of UDP frames.
fn valid_pcap() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("nextio-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One file per call: tests run in parallel.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("valid-{n}.pcap"));
    let mut c = Capture::new();
    for (i, size) in [64usize, 128, 1518, 300].iter().enumerate() {
        let f = build_udp(Macs::default(), synthetic_flow(i as u32), &[7; 17], *size).unwrap();
        c.record(nextio_engine::Time(i as u64 * 1_000_000), &f);
    }
    c.write(&path).unwrap();
    std::fs::read(&path).unwrap()
}

/// The same frames as a pcapng file (little endian, one interface).
fn valid_pcapng() -> Vec<u8> {
    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let padded = body.len().next_multiple_of(4);
        let total = (12 + padded) as u32;
        let mut b = kind.to_le_bytes().to_vec();
        b.extend(total.to_le_bytes());
        b.extend_from_slice(body);
        b.resize(8 + padded, 0);
        b.extend(total.to_le_bytes());
        b
    }
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend([1, 0, 0, 0]);
    shb.extend((-1i64).to_le_bytes());
    let mut f = block(0x0a0d_0d0a, &shb);
    f.extend(block(1, &[1, 0, 0, 0, 0, 0, 0, 0]));
    for (i, size) in [64usize, 1518, 200].iter().enumerate() {
        let frame = build_udp(Macs::default(), synthetic_flow(i as u32), &[7; 17], *size).unwrap();
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend(0u32.to_le_bytes());
        epb.extend((i as u32 * 1000).to_le_bytes());
        epb.extend((frame.len() as u32).to_le_bytes());
        epb.extend((frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&frame);
        f.extend(block(6, &epb));
    }
    f
}

/// Read `bytes` as a capture file the way a replay does; must not panic.
fn read_capture(bytes: &[u8], name: &str) -> Result<usize, String> {
    let dir = std::env::temp_dir().join(format!("nextio-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{:?}-{name}", std::thread::current().id()));
    std::fs::write(&path, bytes).unwrap();
    let mut trace = Trace::new();
    let started = Instant::now();
    let read = pcap::read_with(&path, |t, b| {
        let _ = trace.push(t, b);
        ControlFlow::Continue(())
    });
    if started.elapsed() > Duration::from_secs(5) {
        return Err(format!(
            "reading {} bytes took {:?}",
            bytes.len(),
            started.elapsed()
        ));
    }
    match read {
        Ok(s) => Ok(s.records as usize),
        Err(e) if e.to_string().contains('\n') => Err(format!("a multi-line error: {e}")),
        Err(_) => Ok(0),
    }
}

/// A mutation of a valid file: bytes flipped, set to edge values, cut,
/// duplicated or inserted.
#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    Xor(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Duplicate(usize, usize),
    Length(usize, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (
            any::<usize>(),
            prop::sample::select(vec![0u8, 1, 0x7f, 0x80, 0xff])
        )
            .prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Xor(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..200).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        (
            any::<usize>(),
            prop::sample::select(vec![
                0u32,
                1,
                11,
                12,
                13,
                0xffff,
                262_145,
                0x7fff_ffff,
                u32::MAX
            ]),
        )
            .prop_map(|(i, v)| Mutation::Length(i, v)),
    ]
}

fn mutate(mut bytes: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        let n = bytes.len().max(1);
        match m {
            Mutation::Set(i, b) => {
                if let Some(x) = bytes.get_mut(i % n) {
                    *x = *b;
                }
            }
            Mutation::Xor(i, b) => {
                if let Some(x) = bytes.get_mut(i % n) {
                    *x ^= *b;
                }
            }
            Mutation::Truncate(i) => bytes.truncate(i % n),
            Mutation::Insert(i, b) => {
                let at = i % n;
                bytes.splice(at.min(bytes.len())..at.min(bytes.len()), b.iter().copied());
            }
            Mutation::Duplicate(i, len) => {
                let at = (i % n).min(bytes.len());
                let end = (at + len).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(end..end, copy);
            }
            Mutation::Length(i, v) => {
                let at = (i % n) & !3;
                if at + 4 <= bytes.len() {
                    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(Config { cases: cases() * 10, failure_persistence: None, ..Config::default() })]

    #[test]
    fn random_bytes_never_break_the_capture_reader(
        prefix in prop::sample::select(vec![
            vec![],
            vec![0xd4, 0xc3, 0xb2, 0xa1],
            vec![0xa1, 0xb2, 0x3c, 0x4d],
            vec![0x0a, 0x0d, 0x0d, 0x0a],
        ]),
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = prefix;
        bytes.extend(body);
        read_capture(&bytes, "random.cap").map_err(TestCaseError::fail)?;
    }

    #[test]
    fn mutated_captures_never_break_the_capture_reader(
        ng in any::<bool>(),
        ms in prop::collection::vec(mutation(), 1..6),
    ) {
        let base = if ng { valid_pcapng() } else { valid_pcap() };
        let bytes = mutate(base, &ms);
        read_capture(&bytes, if ng { "mutated.pcapng" } else { "mutated.pcap" })
            .map_err(TestCaseError::fail)?;
    }
}

#[test]
fn unmutated_captures_read_whole() {
    assert_eq!(read_capture(&valid_pcap(), "v.pcap"), Ok(4));
    assert_eq!(read_capture(&valid_pcapng(), "v.pcapng"), Ok(3));
}

/// Mutated captures through a whole replay: a result or one clean error.
#[test]
fn mutated_captures_replay_or_fail_cleanly() {
    let mut runner = TestRunner::new(Config {
        cases: cases() / 4 + 2,
        failure_persistence: None,
        ..Config::default()
    });
    let e = all()
        .iter()
        .position(|x| x.name() == "enso-cache-misses")
        .unwrap();
    let p = all()[e]
        .params()
        .iter()
        .position(|s| s.name == "traffic_pcap")
        .unwrap();
    let dir = std::env::temp_dir().join(format!("nextio-fuzz-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    runner
        .run(
            &(any::<bool>(), prop::collection::vec(mutation(), 0..4)),
            |(ng, ms)| {
                let base = if ng { valid_pcapng() } else { valid_pcap() };
                let path = dir.join(if ng { "m.pcapng" } else { "m.pcap" });
                std::fs::write(&path, mutate(base, &ms)).unwrap();
                drive(e, p, &path.display().to_string()).map_err(TestCaseError::fail)
            },
        )
        .unwrap();
}
