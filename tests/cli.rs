//! The command line as a user meets it: listing, running, describing,
//! reproducible output, and one-line errors with status 2 for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nextio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nextio"))
        .args(args)
        .output()
        .expect("the nextio binary runs")
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
fn bad_input_is_one_line_and_status_2() {
    for args in [
        vec!["run", "no-such-experiment"],
        vec!["run", "ethernet-linerate", "--set", "nope=1"],
        vec!["run", "ethernet-linerate", "--set", "frames=many"],
        vec!["run", "ethernet-linerate", "--set", "frame_bytes=10"],
        vec!["run", "ethernet-linerate", "--set", "gbps"],
        vec!["run", "ethernet-linerate", "--seed", "-3"],
        vec!["frobnicate"],
    ] {
        let out = nextio(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?} printed:\n{err}"
        );
        assert!(err.starts_with("error: "), "{err}");
    }
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
        text.contains("59 Mpps (stated)") && text.contains("origin: fitted"),
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
    let frames = count_pcap_records(&pcap_dir.join("ethernet-linerate-128B.pcap"));
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

#[test]
fn trace_writes_time_ordered_events() {
    let (out_dir, trace_dir) = (temp_dir("tout"), temp_dir("trace"));
    let out = nextio(&[
        "run",
        "ethernet-linerate",
        "--quick",
        "--set",
        "frame_bytes=64",
        "--set",
        "frames=50",
        "--out",
        out_dir.to_str().unwrap(),
        "--trace",
        trace_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(trace_dir.join("ethernet-linerate-64B.trace"))
        .expect("trace written");
    let times: Vec<u64> = text
        .lines()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        times.len() >= 50,
        "at least one wake-up per delivered frame: {} events",
        times.len()
    );
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "events are in time order"
    );
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
    let captured: Vec<_> = std::fs::read_dir(&pcap_dir)
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
