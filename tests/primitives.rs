//! Primitive costs as a user meets them: `nextio presets` lists the hosts
//! and prints one as a whole configuration; `--describe` lists every
//! primitive of an experiment's host with its unit and source; a dotted
//! `--set` or a `--config` file changes the result it should and the result
//! says so; a bad path, value or file is one `error:` line with status 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nextio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nextio"))
        .args(args)
        .output()
        .expect("the nextio binary runs")
}

fn stdout(args: &[&str]) -> String {
    let out = nextio(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn error_line(args: &[&str]) -> String {
    let out = nextio(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}:\n{err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

fn temp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("nextio-prim-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// `xui-timer-core --quick` into `dir` with `extra` arguments: its
/// result.json. Its one check is composed from primitives (workers per
/// 5 µs = 10 000 cycles / (senduipi + timer loop)), so a changed primitive
/// shows.
fn timer_core(dir: &Path, extra: &[&str]) -> serde_json::Value {
    let d = dir.display().to_string();
    let mut args = vec!["run", "xui-timer-core", "--quick", "--out", &d];
    args.extend_from_slice(extra);
    stdout(&args);
    let text = std::fs::read_to_string(dir.join("xui-timer-core/result.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for k in ["wall_s", "events_per_wall_s", "packets_per_wall_s"] {
        v["sim"].as_object_mut().unwrap().remove(k);
    }
    for k in ["started", "command"] {
        v["run"].as_object_mut().unwrap().remove(k);
    }
    v
}

fn capacity(v: &serde_json::Value) -> f64 {
    v["checks"][0]["model"].as_f64().expect("a model value")
}

#[test]
fn presets_are_listed_and_each_prints_as_a_configuration() {
    let list = stdout(&["presets"]);
    for name in ["skylake-x", "enso-testbed", "ice-lake-sp", "xui-server"] {
        assert!(list.contains(name), "{list}");
    }
    let toml = stdout(&["presets", "enso-testbed"]);
    assert!(toml.contains("name = \"enso-testbed\""), "{toml}");
    assert!(toml.contains("[machine.nic_slot]"), "{toml}");
    assert!(toml.contains("# source: Ensō §3.3.1"), "{toml}");
    assert!(error_line(&["presets", "no-such-host"]).contains("unknown preset"));
}

#[test]
fn describe_lists_every_primitive_with_unit_and_source() {
    let text = stdout(&["run", "xui-timer-core", "--describe"]);
    let listed = text
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(" = "))
        .count();
    // Every value of the printed preset is listed, none twice.
    let toml = stdout(&["presets", "xui-server"]);
    let values = toml
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && l.contains(" = "))
        .count()
        - 2; // name, description
    assert!(listed >= values, "{listed} listed, {values} in the preset");
    assert!(text.contains("host preset `xui-server`"), "{text}");
    assert!(
        text.contains("xui.ucode.senduipi_cycles = 383 cycles"),
        "{text}"
    );
    assert!(
        text.contains("source: xUI Table 2: senduipi 383 cycles"),
        "{text}"
    );
    assert!(
        text.contains("machine.nic_slot.flight_ps = 200000 ps"),
        "{text}"
    );
    // An override shows with who set it.
    let set = stdout(&[
        "run",
        "xui-timer-core",
        "--describe",
        "--set",
        "xui.ucode.senduipi_cycles=800",
    ]);
    assert!(
        set.contains("xui.ucode.senduipi_cycles = 800 cycles [from --set]"),
        "{set}"
    );
}

#[test]
fn a_set_primitive_changes_the_result_it_should_and_is_recorded() {
    let base = timer_core(&temp("base"), &[]);
    // 10 000 cycles / (383 + 25) = 24 workers on the shipped preset.
    assert_eq!(capacity(&base), 24.0);
    assert!(
        base.get("inputs").is_none(),
        "no changes, no record: {base}"
    );
    let slow = timer_core(&temp("slow"), &["--set", "xui.ucode.senduipi_cycles=800"]);
    // 10 000 / (800 + 25) = 12.
    assert_eq!(capacity(&slow), 12.0);
    let changed = &slow["inputs"]["primitives"]["changed"]["xui.ucode.senduipi_cycles"];
    assert_eq!(changed["value"], 800);
    assert_eq!(changed["shipped"], 383);
    assert_eq!(changed["from"], "--set");
    // A parameter and a primitive in one run: both apply.
    let both = timer_core(
        &temp("both"),
        &[
            "--set",
            "runtime.timer_loop_cycles=117",
            "--set",
            "interval_us=5",
        ],
    );
    assert_eq!(capacity(&both), 20.0, "10 000 / (383 + 117)");
}

#[test]
fn a_whole_configuration_reproduces_the_preset_and_a_partial_one_changes_it() {
    let dir = temp("config");
    std::fs::create_dir_all(&dir).unwrap();
    let whole = dir.join("whole.toml");
    std::fs::write(&whole, stdout(&["presets", "xui-server"])).unwrap();
    let base = timer_core(&dir.join("base"), &[]);
    let same = timer_core(
        &dir.join("same"),
        &["--config", &whole.display().to_string()],
    );
    assert_eq!(base, same, "the printed preset is the preset");
    let partial = dir.join("partial.toml");
    std::fs::write(
        &partial,
        "[xui.ucode]\n# source: a measurement of my own\nsenduipi_cycles = 475\n",
    )
    .unwrap();
    let mine = timer_core(
        &dir.join("mine"),
        &["--config", &partial.display().to_string()],
    );
    assert_eq!(capacity(&mine), 20.0, "10 000 / (475 + 25)");
    let changed = &mine["inputs"]["primitives"]["changed"]["xui.ucode.senduipi_cycles"];
    assert_eq!(changed["from"], partial.display().to_string());
}

#[test]
fn bad_paths_values_and_files_are_one_line_errors() {
    let run = |extra: &[&str]| {
        let mut a = vec!["run", "xui-timer-core", "--quick", "--describe"];
        a.extend_from_slice(extra);
        error_line(&a)
    };
    let e = run(&["--set", "xui.ucode.senduipi=800"]);
    assert!(
        e.contains("did you mean `xui.ucode.senduipi_cycles`"),
        "{e}"
    );
    let e = run(&["--set", "xui.ucode=800"]);
    assert!(e.contains("is a section"), "{e}");
    let e = run(&["--set", "xui.ucode.senduipi_cycles=fast"]);
    assert!(e.contains("expects an integer"), "{e}");
    let e = run(&["--set", "machine.nic_slot.lanes=300"]);
    assert!(e.contains("machine.nic_slot.lanes"), "{e}");
    let e = run(&["--set", "machine.caches.core_clock_hz=0"]);
    assert!(e.contains("0 Hz"), "{e}");
    let e = run(&["--set", "apps.echo.rx_burst=0"]);
    assert!(e.contains("apps.echo.rx_burst"), "{e}");
    let e = run(&["--set", "ethernet.rate_bits_per_s"]);
    assert!(e.contains("PATH=VALUE"), "{e}");

    let dir = temp("bad");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text, says) in [
        ("broken.toml", "[xui.ucode\nsenduipi_cycles = 1\n", "line 1"),
        (
            "unknown.toml",
            "[xui.ucode]\nsenduipi = 1\n",
            "did you mean",
        ),
        (
            "typed.toml",
            "[xui.ucode]\nsenduipi_cycles = \"many\"\n",
            "expects an integer",
        ),
        ("base.toml", "base = \"no-such-host\"\n", "unknown preset"),
        ("binary.toml", "\u{0}\u{1}\u{2}", "binary.toml"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let e = run(&["--config", &path.display().to_string()]);
        assert!(e.contains(says), "{name}: {e}");
    }
    let e = run(&["--config", &dir.join("missing.toml").display().to_string()]);
    assert!(
        e.contains("cannot read") && e.contains("missing.toml"),
        "{e}"
    );
}

#[test]
fn every_models_costs_are_settable_and_a_coherent_link_is_a_machines_primitive() {
    // A kernel cost of Accio's (its section is checked before the run's
    // configuration is fixed, which must read no preset value early).
    let dir = temp("accio");
    let d = dir.display().to_string();
    stdout(&[
        "run",
        "accio-cpu",
        "--quick",
        "--out",
        &d,
        "--set",
        "os.accio.wait_cycles=201",
    ]);
    let text = std::fs::read_to_string(dir.join("accio-cpu/result.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let changed = &v["inputs"]["primitives"]["changed"]["os.accio.wait_cycles"];
    assert_eq!(changed["value"], 201, "{}", v["inputs"]);
    assert_eq!(changed["shipped"], 200);
    // Lauberhorn needs its host's coherent link: taking it away is refused
    // with the reason, not a panic.
    let dir = temp("nolink");
    let d = dir.display().to_string();
    let out = nextio(&[
        "run",
        "lauberhorn-rtt",
        "--quick",
        "--out",
        &d,
        "--set",
        "machine.coherent.protocol=none",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no coherent link"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // An unknown protocol is a one-line error before anything runs.
    let err = error_line(&[
        "run",
        "lauberhorn-rtt",
        "--quick",
        "--set",
        "machine.coherent.protocol=pcie",
    ]);
    assert!(err.contains("machine.coherent"), "{err}");
}
