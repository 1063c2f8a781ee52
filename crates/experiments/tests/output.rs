//! Writing results to disk: a failed write names the file it could not
//! write and leaves no partial `result.json` — a `result.json` on disk is
//! always a whole one.

use nextio_experiments::{Params, RunContext, execute, find, output};

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_names_the_file_and_leaves_the_last_whole_result() {
    let exp = find("ethernet-linerate").unwrap();
    let set = vec!["frame_bytes=64".to_string(), "frames=100".to_string()];
    let params = Params::resolve(exp.name(), exp.params(), true, &set).unwrap();
    let result = execute(exp, RunContext::new(params, 1, true)).unwrap();
    let out = std::env::temp_dir().join(format!("nextio-output-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let dir = output::write_result(&out, &result).unwrap();
    let json = dir.join("result.json");
    let before = std::fs::read_to_string(&json).unwrap();

    // Writes to /dev/full fail with "no space left on device": make the
    // temporary file result.json is written through one.
    let tmp = nextio_hw::pcap::temporary_path(&json);
    std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
    let mut changed = result.clone();
    changed.seed = 99;
    let e = output::write_result(&out, &changed).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("result.json"), "{text}");
    assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{text}");
    assert_eq!(std::fs::read_to_string(&json).unwrap(), before);
    assert!(
        std::fs::symlink_metadata(&tmp).is_err(),
        "no temporary left"
    );

    // Nothing stale is left in the way of the next write.
    output::write_result(&out, &changed).unwrap();
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(after["seed"], 99);
    let _ = std::fs::remove_dir_all(&out);
}
