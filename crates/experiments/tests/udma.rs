//! The user-space DMA experiments end to end in quick mode: each runs,
//! its checks are declared, a seed replays it exactly, and bad
//! parameters are refused with an error rather than a panic.

use nextio_experiments::experiment::{RunContext, execute};
use nextio_experiments::params::Params;

fn run(name: &str, sets: &[&str], seed: u64) -> nextio_experiments::ExperimentResult {
    let exp = nextio_experiments::find(name).expect("registered");
    let raw: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let params = Params::resolve(name, exp.params(), true, &raw).expect("valid parameters");
    execute(exp, RunContext::new(params, seed, true)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const RUNS: &[(&str, &[&str])] = &[
    (
        "udma-offload",
        &["sizes=64,8192,65536", "ops=4", "inflight=4"],
    ),
    ("udma-submission", &["sizes=64,4096", "ops=5"]),
    (
        "udma-pollution",
        &["working_set_kib=64", "copy_kib=128", "iterations=2"],
    ),
    ("udma-cross-space", &["sizes=64,5000", "messages=3"]),
    ("udma-p2p", &["kib=4,12", "transfers=2"]),
];

#[test]
fn every_udma_experiment_runs_and_replays_exactly() {
    for (name, sets) in RUNS {
        let a = run(name, sets, 7);
        assert!(!a.checks.is_empty(), "{name} declares checks");
        assert!(!a.series.is_empty() && a.series.iter().all(|s| !s.points.is_empty()));
        let b = run(name, sets, 7);
        assert_eq!(
            a.checks, b.checks,
            "{name}: the same seed gives the same checks"
        );
        assert_eq!(a.series, b.series, "{name}: and the same series");
    }
}

#[test]
fn bad_parameters_are_errors() {
    for (name, bad) in [
        ("udma-offload", "sizes=0"),
        ("udma-offload", "inflight=0"),
        ("udma-submission", "sizes=8192"),
        ("udma-pollution", "iterations=0"),
        ("udma-cross-space", "messages=0"),
        ("udma-p2p", "kib=0"),
    ] {
        let exp = nextio_experiments::find(name).expect("registered");
        // Refused where the parameter is declared, or else by the run.
        let refused = match Params::resolve(name, exp.params(), true, &[bad.to_string()]) {
            Err(_) => true,
            Ok(params) => execute(exp, RunContext::new(params, 1, true)).is_err(),
        };
        assert!(refused, "{name} {bad}");
    }
}

/// `udma-p2p` on both paths: one frame per block read, each frame's UDP
/// payload exactly its media block in order; the direct path's NIC reads
/// the frames out of the block device's CMB and no payload crosses the
/// switch's uplink, while the bounce path's payload crosses it twice.
#[test]
fn p2p_frames_carry_the_media_blocks_and_direct_keeps_payload_off_the_uplink() {
    use nextio_experiments::udma_p2p::{BLOCK_BYTES, Way, deliver};
    let exp = nextio_experiments::find("udma-p2p").expect("registered");
    let params = Params::resolve("udma-p2p", exp.params(), true, &[]).expect("defaults");
    let ctx = RunContext::new(params, 3, true);
    let (kib, transfers) = (8u64, 3u64);
    let blocks = kib * 1024 / BLOCK_BYTES;
    let payload = kib * 1024 * transfers;
    let mut dram = Vec::new();
    for way in [Way::Bounce, Way::Direct] {
        let d = deliver(&ctx, way, kib, transfers).unwrap_or_else(|e| panic!("{way:?}: {e}"));
        assert_eq!(d.frames.len() as u64, blocks * transfers, "{way:?}: frames");
        // Transfer i reads blocks (i % 2) * blocks.. of the media.
        let mut sent = Vec::new();
        for f in &d.frames {
            let v = nextio_hw::packet::parse_udp(&f.bytes).expect("a valid UDP frame");
            assert_eq!(v.payload_len as u64, BLOCK_BYTES);
            sent.extend_from_slice(&f.bytes[v.payload_offset..v.payload_offset + v.payload_len]);
        }
        for i in 0..transfers {
            let at = ((i % 2) * blocks * BLOCK_BYTES) as usize;
            let got =
                &sent[(i * blocks * BLOCK_BYTES) as usize..][..(blocks * BLOCK_BYTES) as usize];
            assert!(
                got == &d.media[at..at + (blocks * BLOCK_BYTES) as usize],
                "{way:?}: transfer {i} carries its blocks in order"
            );
        }
        assert!(d.verify().is_ok(), "{way:?}");
        match way {
            Way::Direct => {
                assert!(
                    d.uplink_bytes < payload,
                    "direct: {} uplink bytes for {payload} payload bytes",
                    d.uplink_bytes
                );
                assert!(
                    d.cmb_bytes_read >= payload,
                    "direct: the NIC read the frames from the CMB"
                );
            }
            Way::Bounce => {
                assert!(
                    d.uplink_bytes >= 2 * payload,
                    "bounce: {} uplink bytes for {payload} payload bytes",
                    d.uplink_bytes
                );
                assert_eq!(d.cmb_bytes_read, 0, "bounce: nothing read from the CMB");
            }
        }
        dram.push(d.dram_bytes);
    }
    assert!(
        dram[1] <= dram[0],
        "direct adds no host DRAM traffic: {dram:?}"
    );
}

/// The delivery check can fail: a frame whose payload differs from its
/// block, or a missing frame, is reported.
#[test]
fn p2p_verification_catches_a_wrong_or_missing_frame() {
    use nextio_experiments::udma_p2p::{Way, deliver};
    let exp = nextio_experiments::find("udma-p2p").expect("registered");
    let params = Params::resolve("udma-p2p", exp.params(), true, &[]).expect("defaults");
    let ctx = RunContext::new(params, 3, true);
    let mut d = deliver(&ctx, Way::Direct, 2, 2).expect("runs");
    assert!(d.verify().is_ok());
    let last = d.frames.len() - 1;
    let end = d.frames[last].bytes.len() - 1;
    d.frames[last].bytes[end] ^= 1;
    assert!(d.verify().is_err(), "a corrupted frame is caught");
    d.frames.pop();
    assert!(d.verify().is_err(), "a missing frame is caught");
}
