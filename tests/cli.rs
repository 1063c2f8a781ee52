//! The command line as a user meets it: listing, running, describing,
//! reproducible output, and one-line errors with status 2 for bad input —
//! never a hang, an abort or a silently wrong result. Every run here has a
//! deadline, so an input that would hang fails the test instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest any run in these tests may take.
const DEADLINE: Duration = Duration::from_secs(120);

fn nextio(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nextio"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the nextio binary runs");
    // Drain both pipes while waiting: a child whose output fills a pipe
    // would otherwise block and look like a hang.
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nextio {args:?} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout read"),
        stderr: stderr.join().expect("stderr read"),
    }
}

/// Assert `out` is bad input's answer: status 2, one `error:` line.
fn one_error_line(args: &[&str], out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?} printed:\n{err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    err
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nextio-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// result.json without the fields that depend on the wall clock.
fn stable_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("result.json exists");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("result.json is JSON");
    let sim = v["sim"].as_object_mut().expect("sim section");
    for k in ["wall_s", "events_per_wall_s", "packets_per_wall_s"] {
        assert!(sim.remove(k).is_some(), "sim.{k} present");
    }
    let run = v["run"].as_object_mut().expect("run section");
    for k in ["started", "command"] {
        assert!(run.remove(k).is_some(), "run.{k} present");
    }
    v
}

#[test]
fn list_names_every_experiment() {
    let out = nextio(&["list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let names: Vec<_> = nextio_experiments::all().iter().map(|e| e.name()).collect();
    assert!(names.contains(&"ethernet-linerate"));
    for name in names {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}

#[test]
fn list_json_carries_every_parameter_and_declared_check() {
    let out = nextio(&["list", "--json"]);
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let list = list.as_array().expect("an array");
    let all = nextio_experiments::all();
    assert_eq!(list.len(), all.len());
    for (j, e) in list.iter().zip(&all) {
        assert_eq!(j["name"], e.name());
        assert_eq!(j["params"].as_array().unwrap().len(), e.params().len());
        let ids: Vec<&str> = j["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        let declared: Vec<&str> = e.checks().iter().map(|c| c.id).collect();
        assert_eq!(ids, declared, "{}", e.name());
    }
}

#[test]
fn bad_input_is_one_line_and_status_2() {
    let huge_list = format!("frame_bytes={}", vec!["64"; 20_000].join(","));
    let newline_path = "traffic_pcap=/no/such\nfile.pcap";
    for args in [
        vec!["run", "no-such-experiment"],
        vec!["run", "ethernet-linerate", "--set", "nope=1"],
        vec!["run", "ethernet-linerate", "--set", "frames=many"],
        vec!["run", "ethernet-linerate", "--set", "frame_bytes=10"],
        vec!["run", "ethernet-linerate", "--set", "gbps"],
        vec!["run", "ethernet-linerate", "--seed", "-3"],
        vec!["frobnicate"],
        // Each of these used to wrap, hang, saturate, exhaust memory or
        // report a meaningless zero.
        vec![
            "run",
            "ethernet-linerate",
            "--set",
            "frames=18446744073709551615",
        ],
        vec!["run", "ethernet-linerate", "--set", "gbps=1000000000000"],
        vec!["run", "ethernet-linerate", "--set", &huge_list],
        vec!["run", "enso-packet-rate", "--set", "resolution_gbps=1e-16"],
        vec!["run", "enso-packet-rate", "--set", "resolution_gbps=1e-15"],
        vec!["run", "enso-pcie-metadata", "--set", "offered_gbps=1e-300"],
        vec!["run", "enso-cache-misses", "--set", "flows=4294967295"],
        vec![
            "run",
            "enso-cache-misses",
            "--set",
            "frames=18446744073709551615",
        ],
        vec!["run", "pcie-bandwidth", "--set", "transfers=4294967295"],
        vec!["run", "xui-timer-core", "--set", "ticks=4294967295"],
        vec![
            "run",
            "xui-receiver-overhead",
            "--set",
            "interval_us=18446744073709551615",
        ],
        vec!["run", "xui-l3fwd", "--set", "load=NaN"],
        vec!["run", "xui-l3fwd", "--set", "load=-inf"],
        vec!["run", "xui-dsa", "--set", "noise_frac=-0.5"],
        vec!["run", "enso-cache-misses", "--quick", "--set", newline_path],
        vec![
            "run",
            "ethernet-linerate",
            "--quick",
            "--out",
            "/dev/null/results",
        ],
        vec![
            "run",
            "ethernet-linerate",
            "--quick",
            "--set",
            "frames=100",
            "--pcap",
            "/dev/null/captures",
        ],
        vec!["run", "ethernet-linerate", "--trace-filter", "core"],
        vec![
            "run",
            "ethernet-linerate",
            "--trace",
            "/tmp",
            "--trace-filter",
            "core,",
        ],
        vec![
            "run",
            "ethernet-linerate",
            "--trace",
            "/tmp",
            "--trace-window",
            "5..1",
        ],
        vec![
            "run",
            "ethernet-linerate",
            "--trace",
            "/tmp",
            "--trace-window",
            "x..1",
        ],
        vec![
            "run",
            "ethernet-linerate",
            "--trace",
            "/tmp",
            "--trace-window",
            "-1..1",
        ],
        vec![
            "run",
            "ethernet-linerate",
            "--trace",
            "/tmp",
            "--trace-limit",
            "0",
        ],
    ] {
        let out = nextio(&args);
        one_error_line(&args, &out);
    }
}

#[test]
fn an_out_of_range_value_is_named_with_its_range() {
    let args = [
        "run",
        "ethernet-linerate",
        "--set",
        "frames=18446744073709551615",
    ];
    let err = one_error_line(&args, &nextio(&args));
    assert_eq!(
        err.trim_end(),
        "error: parameter `frames`: 18446744073709551615 is outside its range 2..=100000000 frames"
    );
    let args = ["run", "enso-packet-rate", "--set", "resolution_gbps=1e-16"];
    let err = one_error_line(&args, &nextio(&args));
    assert!(
        err.contains("`resolution_gbps`") && err.contains("0.001 to 100") && err.contains("1e-16"),
        "{err}"
    );
    // Combinations the ranges alone cannot bound are refused before running.
    let args = [
        "run",
        "xui-receiver-overhead",
        "--quick",
        "--set",
        "interval_us=5000",
    ];
    let err = one_error_line(&args, &nextio(&args));
    assert!(err.contains("interval_us 5000"), "{err}");
    let args = [
        "run",
        "ethernet-linerate",
        "--quick",
        "--out",
        "/dev/null/results",
    ];
    let err = one_error_line(&args, &nextio(&args));
    assert!(err.contains("/dev/null/results"), "{err}");
}

#[test]
fn describe_lists_parameters() {
    let out = nextio(&["run", "ethernet-linerate", "--describe"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("frame_bytes") && text.contains("64,128,256,512,1024,1518"),
        "{text}"
    );
}

#[test]
fn describe_lists_every_declared_check_before_running() {
    for exp in nextio_experiments::all() {
        let out = nextio(&["run", exp.name(), "--describe"]);
        assert!(out.status.success(), "{}", exp.name());
        let text = String::from_utf8_lossy(&out.stdout);
        let checks = text
            .split("Checks (declared")
            .nth(1)
            .expect("a checks section");
        for c in exp.checks() {
            assert!(
                checks.contains(c.id),
                "{}: {} missing:\n{text}",
                exp.name(),
                c.id
            );
            assert!(
                checks.contains(c.claim),
                "{}: claim of {}",
                exp.name(),
                c.id
            );
        }
        for word in ["\n      paper: ", "; tolerance: ", "; origin: "] {
            assert_eq!(
                checks.matches(word).count(),
                exp.checks().len(),
                "{}: `{word}` per check",
                exp.name()
            );
        }
    }
    let out = nextio(&["run", "enso-packet-rate", "--describe"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("59 Mpps (stated)") && text.contains("origin: simulated"),
        "{text}"
    );
}

#[test]
fn the_result_carries_verdicts_origins_and_run_information() {
    let dir = temp_dir("verdicts");
    let out = nextio(&[
        "run",
        "ethernet-linerate",
        "--quick",
        "--set",
        "frame_bytes=64",
        "--set",
        "frames=2000",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("within") && summary.contains("validation"),
        "{summary}"
    );
    let v = stable_json(&dir.join("ethernet-linerate/result.json"));
    for c in v["checks"].as_array().expect("checks") {
        for key in [
            "id",
            "claim",
            "paper",
            "model",
            "unit",
            "tolerance",
            "origin",
            "verdict",
        ] {
            assert!(c.get(key).is_some(), "check lacks {key}: {c}");
        }
        assert_eq!(c["origin"], "validation");
        assert_eq!(c["reference"], "closed_form");
    }
    assert_eq!(v["run"]["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn a_rerun_removes_the_previous_runs_files_and_only_those() {
    let dir = temp_dir("rerun");
    let run = |interval: &str| {
        let out = nextio(&[
            "run",
            "xui-timer-core",
            "--quick",
            "--set",
            "workers=1",
            "--set",
            &format!("interval_us={interval}"),
            "--set",
            "ticks=10",
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let files = || {
        let mut v: Vec<String> = std::fs::read_dir(dir.join("xui-timer-core"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    run("5");
    let first = files();
    let stale = "setitimer__5__s.csv".to_string();
    assert!(first.contains(&stale), "{first:?}");
    std::fs::write(dir.join("xui-timer-core/my-notes.txt"), "mine").unwrap();
    run("20");
    let second = files();
    assert!(
        !second.contains(&stale),
        "a CSV of the first run survived: {second:?}"
    );
    assert!(
        second.contains(&"setitimer__20__s.csv".to_string()),
        "{second:?}"
    );
    assert!(
        second.contains(&"my-notes.txt".to_string()),
        "a user's file was removed"
    );
}

#[test]
fn same_seed_same_result() {
    let (a, b) = (temp_dir("a"), temp_dir("b"));
    let args = |d: &Path| {
        vec![
            "run".to_string(),
            "ethernet-linerate".into(),
            "--quick".into(),
            "--seed".into(),
            "7".into(),
            "--set".into(),
            "frame_bytes=64,1518".into(),
            "--out".into(),
            d.display().to_string(),
        ]
    };
    for d in [&a, &b] {
        let out = Command::new(env!("CARGO_BIN_EXE_nextio"))
            .args(args(d))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (ja, jb) = (
        stable_json(&a.join("ethernet-linerate/result.json")),
        stable_json(&b.join("ethernet-linerate/result.json")),
    );
    assert_eq!(ja, jb);
    assert_eq!(ja["seed"], 7);
    for key in ["experiment", "params", "series", "checks", "sim"] {
        assert!(ja.get(key).is_some(), "result.json lacks {key}");
    }
    assert!(a.join("ethernet-linerate/chart.svg").exists());
    assert!(a.join("ethernet-linerate/simulated.csv").exists());
}

#[test]
fn compare_exits_non_zero_only_when_a_verdict_changed() {
    let (a, b) = (temp_dir("cmp-a"), temp_dir("cmp-b"));
    for d in [&a, &b] {
        let d = d.display().to_string();
        let args = [
            "run",
            "ethernet-linerate",
            "--quick",
            "--set",
            "frame_bytes=64",
            "--out",
            &d,
        ];
        assert!(nextio(&args).status.success());
    }
    let (sa, sb) = (a.display().to_string(), b.display().to_string());
    let same = nextio(&["compare", &sa, &sb]);
    assert!(same.status.success(), "{same:?}");
    assert!(String::from_utf8_lossy(&same.stdout).contains("agree on every number"));
    // Flip one verdict in B's result, as a regressed model would.
    let file = b.join("ethernet-linerate/result.json");
    let mut r: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    r["checks"][0]["verdict"] = "miss".into();
    std::fs::write(&file, serde_json::to_vec(&r).unwrap()).unwrap();
    let changed = nextio(&["compare", &sa, &sb]);
    assert_eq!(changed.status.code(), Some(1), "{changed:?}");
    let missing = a.join("nothing-here").display().to_string();
    one_error_line(
        &["compare", &sa, &missing],
        &nextio(&["compare", &sa, &missing]),
    );
}

#[test]
fn pcap_output_opens_as_nanosecond_pcap() {
    let (out_dir, pcap_dir) = (temp_dir("pout"), temp_dir("pcap"));
    let out = nextio(&[
        "run",
        "ethernet-linerate",
        "--quick",
        "--set",
        "frame_bytes=128",
        "--set",
        "frames=100",
        "--out",
        out_dir.to_str().unwrap(),
        "--pcap",
        pcap_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames =
        count_pcap_records(&pcap_dir.join("ethernet-linerate/ethernet-linerate-128B.pcap"));
    assert_eq!(frames, 100);
}

/// Count pcap records by walking the file format directly (nanosecond
/// magic, 16-byte record headers), independently of the writer's library.
fn count_pcap_records(path: &Path) -> usize {
    let raw = std::fs::read(path).expect("pcap written");
    assert_eq!(
        &raw[..4],
        &[0xa1, 0xb2, 0x3c, 0x4d],
        "nanosecond pcap magic"
    );
    let mut off = 24;
    let mut n = 0;
    while off + 16 <= raw.len() {
        let incl = u32::from_be_bytes(raw[off + 8..off + 12].try_into().unwrap()) as usize;
        assert_eq!(incl, 124, "128-byte frames are stored without FCS");
        off += 16 + incl;
        n += 1;
    }
    assert_eq!(off, raw.len());
    n
}

/// A small traced Ensō echo: one frame size, a few hundred frames.
fn enso_echo_args(out: &Path) -> Vec<String> {
    [
        "run",
        "enso-pcie-metadata",
        "--quick",
        "--set",
        "frame_bytes=64",
        "--set",
        "frames=200",
        "--set",
        "warmup_frames_per_core=100",
        "--set",
        "interfaces=enso",
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

/// Every trace file a run wrote under `dir`, parsed.
fn traces(dir: &Path) -> Vec<serde_json::Value> {
    let folder = dir.join("enso-pcie-metadata");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .expect("the trace folder exists")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no trace written in {}",
        folder.display()
    );
    files
        .iter()
        .map(|f| {
            assert_eq!(f.extension().and_then(|e| e.to_str()), Some("json"));
            let text = std::fs::read_to_string(f).unwrap();
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", f.display()))
        })
        .collect()
}

/// Track names (`thread_name` metadata) and the X/i events of a trace.
fn tracks_and_events(trace: &serde_json::Value) -> (Vec<String>, Vec<serde_json::Value>) {
    let events = trace["traceEvents"].as_array().expect("traceEvents array");
    let names = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| e["args"]["name"].as_str().unwrap().to_string())
        .collect();
    let timed = events
        .iter()
        .filter(|e| e["ph"] == "X" || e["ph"] == "i")
        .cloned()
        .collect();
    (names, timed)
}

/// The first trace of the small Ensō echo traced with `options`.
fn traced_with(name: &str, options: &[&str]) -> serde_json::Value {
    let (out, dir) = (temp_dir(name), temp_dir(&format!("{name}-trace")));
    let mut args = enso_echo_args(&out);
    args.extend(["--trace".to_string(), dir.display().to_string()]);
    args.extend(options.iter().map(|o| o.to_string()));
    run_ok(&args);
    traces(&dir).swap_remove(0)
}

fn run_ok(args: &[String]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = nextio(&args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn trace_is_trace_event_json_with_tracks_per_component_and_results_unchanged() {
    let (plain, traced, trace_dir) = (temp_dir("tplain"), temp_dir("ttraced"), temp_dir("tjson"));
    run_ok(&enso_echo_args(&plain));
    let mut args = enso_echo_args(&traced);
    args.extend(["--trace".into(), trace_dir.display().to_string()]);
    run_ok(&args);
    // Tracing observes; it never changes what is simulated.
    assert_eq!(
        stable_json(&plain.join("enso-pcie-metadata/result.json")),
        stable_json(&traced.join("enso-pcie-metadata/result.json"))
    );
    let all = traces(&trace_dir);
    let trace = &all[0];
    let (names, events) = tracks_and_events(trace);
    for want in ["core 0", "pcie", "pcie link", "wire"] {
        assert!(
            names.iter().any(|n| n.contains(want)),
            "no `{want}` track among {names:?}"
        );
    }
    let categories: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e["cat"].as_str().unwrap()).collect();
    for want in ["cpu", "wire", "pcie.dma-write", "pcie.dma-read", "pcie.tlp"] {
        assert!(
            categories.contains(want),
            "no {want} events: {categories:?}"
        );
    }
    // Well formed: every span has a duration ≥ 0, and on each track
    // (pid, tid) timestamps rise and no span starts before the previous
    // one ended (so none overlaps another or nests improperly).
    let mut by_track: std::collections::BTreeMap<(u64, u64), Vec<(f64, f64)>> = Default::default();
    for e in &events {
        let ts = e["ts"].as_f64().expect("ts is a number");
        assert!(ts >= 0.0);
        let dur = if e["ph"] == "X" {
            let d = e["dur"].as_f64().expect("a span has a dur");
            assert!(d >= 0.0, "{e}");
            d
        } else {
            0.0
        };
        let key = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
        by_track.entry(key).or_default().push((ts, dur));
    }
    for (track, spans) in &by_track {
        for w in spans.windows(2) {
            assert!(w[1].0 >= w[0].0, "{track:?}: time goes back: {w:?}");
            assert!(
                w[1].0 + 1e-7 >= w[0].0 + w[0].1,
                "{track:?}: spans overlap: {w:?}"
            );
        }
    }
    assert_eq!(trace["otherData"]["dropped_events"], 0);
    // Queues are counter tracks: each wire's transmit queue depth, never
    // above what the queue holds.
    let queue: Vec<&serde_json::Value> = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "C")
        .collect();
    assert!(
        queue
            .iter()
            .any(|e| e["name"].as_str().unwrap().ends_with("queue")),
        "no queue counter"
    );
    assert!(queue.iter().all(|e| e["args"]["queue"].as_u64().is_some()));

    // Filters keep a trace small: only wire tracks, only the first 50 µs.
    let small = &traced_with(
        "tsmall",
        &["--trace-filter", "wire", "--trace-window", "0..50"],
    );
    let (small_names, small_events) = tracks_and_events(small);
    assert!(!small_names.is_empty());
    assert!(
        small_names.iter().all(|n| n.contains("wire")),
        "{small_names:?}"
    );
    assert!(small_events.len() < events.len());
    assert!(
        small_events
            .iter()
            .all(|e| e["ts"].as_f64().unwrap() < 50.0),
        "events past the window"
    );
    // A cap counts what it leaves out.
    let c = &traced_with("tcap", &["--trace-limit", "10"]);
    assert_eq!(c["otherData"]["events"], 10);
    assert!(c["otherData"]["dropped_events"].as_u64().unwrap() > 0);
}

#[test]
fn enso_bench_captures_and_replays_pcap() {
    let (out_dir, pcap_dir) = (temp_dir("eout"), temp_dir("epcap"));
    let common = [
        "--set",
        "interfaces=enso",
        "--set",
        "frames=300",
        "--set",
        "warmup_frames_per_core=100",
    ];
    let mut args = vec![
        "run",
        "enso-cache-misses",
        "--quick",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    args.extend(common);
    args.extend(["--pcap", pcap_dir.to_str().unwrap()]);
    let out = nextio(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let captured: Vec<_> = std::fs::read_dir(pcap_dir.join("enso-cache-misses"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(captured.len(), 2, "{captured:?}");
    let to_host = captured
        .iter()
        .find(|p| p.to_string_lossy().ends_with("to-host.pcap"))
        .expect("generator side");
    assert_eq!(
        count_pcap_records_any(to_host),
        400,
        "warm-up and measured frames on the wire"
    );

    // The capture replays as a traffic source.
    let replay = format!("traffic_pcap={}", to_host.display());
    let mut args = vec![
        "run",
        "enso-cache-misses",
        "--quick",
        "--out",
        out_dir.to_str().unwrap(),
        "--set",
        &replay,
    ];
    args.extend(common);
    let out = nextio(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A file that is not a pcap is one clear error.
    let bogus = out_dir.join("enso-cache-misses/result.json");
    let bad = format!("traffic_pcap={}", bogus.display());
    let out = nextio(&[
        "run",
        "enso-cache-misses",
        "--quick",
        "--set",
        &bad,
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a readable pcap"));
}

/// Records of a pcap as `(secs, frac, incl_len, orig_len, bytes)`, read
/// directly from its bytes (nanosecond or microsecond magic, either order).
fn pcap_records(path: &Path) -> Vec<(u32, u32, u32, u32, Vec<u8>)> {
    let raw = std::fs::read(path).expect("pcap written");
    let be = raw[..4] == [0xa1, 0xb2, 0x3c, 0x4d] || raw[..4] == [0xa1, 0xb2, 0xc3, 0xd4];
    let u32_at = |o: usize| {
        let b: [u8; 4] = raw[o..o + 4].try_into().unwrap();
        if be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= raw.len() {
        let incl = u32_at(off + 8) as usize;
        out.push((
            u32_at(off),
            u32_at(off + 4),
            incl as u32,
            u32_at(off + 12),
            raw[off + 16..off + 16 + incl].to_vec(),
        ));
        off += 16 + incl;
    }
    out
}

/// The same frames as a little-endian pcapng file with nanosecond
/// timestamps: section header, interface description (if_tsresol 9), a
/// name-resolution block (carries no frame) and one enhanced packet block
/// per frame.
fn as_pcapng(records: &[(u32, u32, u32, u32, Vec<u8>)]) -> Vec<u8> {
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
    shb.extend(1u16.to_le_bytes());
    shb.extend(0u16.to_le_bytes());
    shb.extend((-1i64).to_le_bytes());
    let mut f = block(0x0a0d_0d0a, &shb);
    let mut idb = 1u16.to_le_bytes().to_vec();
    idb.extend(0u16.to_le_bytes());
    idb.extend(0u32.to_le_bytes());
    idb.extend([9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
    f.extend(block(1, &idb));
    f.extend(block(4, &[0; 4]));
    for (secs, nanos, incl, orig, bytes) in records {
        let ts = *secs as u64 * 1_000_000_000 + *nanos as u64;
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend(((ts >> 32) as u32).to_le_bytes());
        epb.extend((ts as u32).to_le_bytes());
        epb.extend(incl.to_le_bytes());
        epb.extend(orig.to_le_bytes());
        epb.extend_from_slice(bytes);
        f.extend(block(6, &epb));
    }
    f
}

/// A capture the bench wrote, of `frame_bytes` frames: `(pcap path, out dir)`.
fn captured(name: &str, frame_bytes: &str) -> (PathBuf, PathBuf) {
    let (out_dir, pcap_dir) = (
        temp_dir(&format!("{name}-out")),
        temp_dir(&format!("{name}-pcap")),
    );
    let size = format!("frame_bytes={frame_bytes}");
    let args = [
        "run",
        "enso-cache-misses",
        "--quick",
        "--set",
        "interfaces=enso",
        "--set",
        "frames=200",
        "--set",
        "warmup_frames_per_core=0",
        "--set",
        &size,
        "--out",
        out_dir.to_str().unwrap(),
        "--pcap",
        pcap_dir.to_str().unwrap(),
    ];
    let out = nextio(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let to_host = std::fs::read_dir(pcap_dir.join("enso-cache-misses"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("to-host.pcap"))
        .expect("generator side");
    (to_host, out_dir)
}

/// Run enso-cache-misses replaying `path`; its result.json.
fn replay(path: &Path, out_dir: &Path) -> serde_json::Value {
    let replay = format!("traffic_pcap={}", path.display());
    let args = [
        "run",
        "enso-cache-misses",
        "--quick",
        "--set",
        "interfaces=enso",
        "--set",
        "frames=200",
        "--set",
        "warmup_frames_per_core=0",
        "--set",
        &replay,
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let out = nextio(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stable_json(&out_dir.join("enso-cache-misses/result.json"))
}

#[test]
fn pcapng_and_snap_length_truncation_are_read_as_tshark_reads_them() {
    let (pcap, out_dir) = captured("ng", "1518");
    let records = pcap_records(&pcap);
    assert_eq!(records.len(), 200);

    // pcapng: the same frames, replayed the same way.
    let ng = out_dir.join("same.pcapng");
    std::fs::write(&ng, as_pcapng(&records)).unwrap();
    let r = replay(&ng, &out_dir);
    let input = &r["inputs"]["traffic_pcap"];
    assert_eq!(input["format"], "pcapng", "{input}");
    assert_eq!(input["replayed_frames"], 200);
    assert_eq!(input["mean_frame_bytes"], 1518.0);
    assert_eq!(input["blocks_skipped"]["name resolution"], 1);

    // Every other frame cut by a 100-byte snap length: those are skipped
    // and counted, the file is not rejected.
    let cut: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(i, (s, f, incl, orig, bytes))| {
            if i % 2 == 0 {
                (*s, *f, 100, *orig, bytes[..100].to_vec())
            } else {
                (*s, *f, *incl, *orig, bytes.clone())
            }
        })
        .collect();
    let truncated = out_dir.join("truncated.pcapng");
    std::fs::write(&truncated, as_pcapng(&cut)).unwrap();
    let r = replay(&truncated, &out_dir);
    let input = &r["inputs"]["traffic_pcap"];
    assert_eq!(input["skipped"]["truncated"], 100, "{input}");
    assert_eq!(input["replayed_frames"], 100);
    assert!(
        r["notes"][0].as_str().unwrap().contains("100 truncated"),
        "{}",
        r["notes"][0]
    );

    // A capture with nothing usable is one clear error.
    let all_cut: Vec<_> = cut.iter().step_by(2).cloned().collect();
    let none = out_dir.join("none.pcapng");
    std::fs::write(&none, as_pcapng(&all_cut)).unwrap();
    let arg = format!("traffic_pcap={}", none.display());
    let args = [
        "run",
        "enso-cache-misses",
        "--quick",
        "--set",
        &arg,
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let err = one_error_line(&args, &nextio(&args));
    assert!(
        err.contains("no frame to replay") && err.contains("100 truncated"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_or_device_is_refused_not_waited_on() {
    let dir = temp_dir("fifo");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("no-writer.pcap");
    let made = Command::new("mkfifo").arg(&fifo).status();
    let mut paths = vec![PathBuf::from("/dev/null")];
    if made.is_ok_and(|s| s.success()) {
        paths.push(fifo);
    }
    for path in paths {
        let arg = format!("traffic_pcap={}", path.display());
        let args = [
            "run",
            "enso-cache-misses",
            "--quick",
            "--set",
            &arg,
            "--out",
            dir.to_str().unwrap(),
        ];
        let err = one_error_line(&args, &nextio(&args));
        assert!(err.contains("not a regular file"), "{err}");
    }
}

/// Count the records of a big-endian nanosecond pcap of any frame size.
fn count_pcap_records_any(path: &Path) -> usize {
    let raw = std::fs::read(path).expect("pcap written");
    let mut off = 24;
    let mut n = 0;
    while off + 16 <= raw.len() {
        let incl = u32::from_be_bytes(raw[off + 8..off + 12].try_into().unwrap()) as usize;
        off += 16 + incl;
        n += 1;
    }
    assert_eq!(off, raw.len());
    n
}

#[test]
fn progress_outside_a_terminal_is_plain_lines_on_stderr() {
    let out_dir = temp_dir("progress").display().to_string();
    let args = [
        "run",
        "ethernet-linerate",
        "--quick",
        "--seeds",
        "2",
        "--set",
        "frame_bytes=64",
        "--out",
        &out_dir,
    ];
    let out = nextio(&args);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("progress: ethernet-linerate ended (1/2)"),
        "{err}"
    );
    assert!(
        err.contains("progress: ethernet-linerate ended (2/2)"),
        "{err}"
    );
    assert!(!err.contains('\r'), "no carriage returns in a log: {err:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("progress:"));
}

/// A stats file's `name value` lines (the `#` header left out).
fn stats_entries(path: &Path) -> std::collections::BTreeMap<String, f64> {
    let text = std::fs::read_to_string(path).expect("the stats file exists");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("name value");
            (name.trim().to_string(), value.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn stats_files_hold_every_counter_and_conserve_frames() {
    let out_dir = temp_dir("stats");
    let mut args = enso_echo_args(&out_dir);
    args.push("--stats".into());
    run_ok(&args);
    let folder = out_dir.join("enso-pcie-metadata");
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("result.json")).unwrap())
            .unwrap();
    let files: Vec<&str> = result["stats"]
        .as_array()
        .expect("result.json lists the stats files")
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(!files.is_empty());
    let mut host_rx_frames = 0.0;
    for f in &files {
        let s = stats_entries(&folder.join(f));
        let get = |k: &str| s.get(k).copied().unwrap_or(0.0);
        // Every component is there.
        for want in [
            ".core0.ledger.application_ps",
            ".core0.cache.l1d.misses",
            ".fabric.",
            ".iommu.",
            ".link.upstream.bytes_by_purpose.",
            ".wire.",
        ] {
            assert!(s.keys().any(|k| k.contains(want)), "{f}: no {want}");
        }
        // Every frame offered to a wire was accepted or dropped.
        for k in s.keys().filter(|k| k.ends_with(".offered")) {
            let p = k.trim_end_matches(".offered");
            assert_eq!(
                get(k),
                get(&format!("{p}.accepted"))
                    + get(&format!("{p}.drop.queue_full"))
                    + get(&format!("{p}.drop.link_down")),
                "{f}: {p}"
            );
        }
        // Every frame the host's wire delivered reached the NIC, which
        // counted it.
        let rx: Vec<_> = s
            .keys()
            .filter(|k| k.starts_with("host0.wire.") && k.ends_with(".rx.accepted"))
            .collect();
        assert_eq!(rx.len(), 1, "{f}: one receive wire");
        let nic = rx[0]
            .trim_start_matches("host0.wire.")
            .split(".port")
            .next()
            .unwrap();
        assert_eq!(get(rx[0]), get(&format!("host0.{nic}.rx_frames")), "{f}");
        host_rx_frames += get(rx[0]);
        // The generator's round trips: one per measured frame it received,
        // each in exactly one bucket of its histogram.
        assert!(get("trafficgen0.received") > 0.0, "{f}: no generator");
        assert_eq!(
            get("trafficgen0.rtt.count"),
            get("trafficgen0.received"),
            "{f}"
        );
        let bucketed: f64 = s
            .iter()
            .filter(|(n, _)| n.starts_with("trafficgen0.rtt.bucket_from_"))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(bucketed, get("trafficgen0.rtt.count"), "{f}");
        assert!(get("trafficgen0.rtt.p50_ps") <= get("trafficgen0.rtt.p99_ps"));
        // A ledger's categories sum to its total.
        for k in s.keys().filter(|k| k.ends_with(".ledger.total_ps")) {
            let p = k.trim_end_matches("total_ps");
            let sum: f64 = s
                .iter()
                .filter(|(n, _)| n.starts_with(p) && !n.ends_with("total_ps"))
                .map(|(_, v)| v)
                .sum();
            assert_eq!(sum, get(k), "{f}: {p}");
        }
    }
    // The files add up to the totals the result reports: every frame the
    // simulations moved went over a host's receive wire.
    assert_eq!(host_rx_frames, result["sim"]["packets"].as_f64().unwrap());
}
