//! `ethernet-linerate`: validates the Ethernet link model against its
//! closed form. Per frame size two runs push real UDP frames into one
//! direction of a link, and the receiver verifies every frame (checksums,
//! order):
//!
//! * at line rate — the sender keeps the transmit queue full without
//!   overflowing it; the delivered rate must equal the closed-form line
//!   rate `rate / (8 × (frame + 20))`;
//! * under overload — the sender offers [`OVERLOAD`]× the line rate and the
//!   full queue drops; the frames delivered must equal what the line can
//!   serialise in the offer window plus the queue it ends with.
//!
//! Both are validation (the simulator against the formula it serialises
//! with): they catch a broken serialiser, queue bound or drop path, not a
//! disagreement with a paper. Every run also keeps frame conservation —
//! offered = delivered intact + dropped for a full queue — or fails: under
//! overload drops are possible, so the count can catch a frame lost or
//! counted twice.

use std::cell::{Cell, RefCell};
use std::net::Ipv4Addr;
use std::rc::Rc;

use nextio_engine::{Duration, Mailbox, Rate, Time};
use nextio_hw::ethernet::{EthTx, LinkConfig, Wire};
use nextio_hw::packet::{self, FlowKey, Frame, Macs};
use serde_json::json;

use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, Series, SeriesKind,
    Tolerance,
};
use crate::params::{ParamKind, ParamSpec};

pub struct EthernetLinerate;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "frame_bytes",
        ParamKind::U64List,
        "64,128,256,512,1024,1518",
        "bytes",
        "Ethernet frame sizes, FCS included (IEEE 802.3: 64 to 1518)",
    )
    .int(64, 1518)
    .items(1, 64),
    ParamSpec::new(
        "gbps",
        ParamKind::U64,
        "100",
        "Gb/s",
        "link rate, 1 to 1600 (up to 1.6 Tb/s Ethernet)",
    )
    .int(1, 1600),
    ParamSpec::new(
        "frames",
        ParamKind::U64,
        "200000",
        "frames",
        "frames sent per point, 2 to 10^8 (500× the default)",
    )
    .quick("20000")
    .int(2, 100_000_000),
    ParamSpec::new(
        "queue_frames",
        ParamKind::U64,
        "256",
        "frames",
        "transmit queue capacity, 1 to 65536 (the queue holds real frames, up to 100 MB of them)",
    )
    .int(1, 65_536),
];

/// The overloaded sender offers this many times the line rate.
const OVERLOAD: u64 = 2;

const CHECKS: &[CheckSpec] = &[
    // 0.1 %: the rate is measured over every frame of a point, so the
    // first frame's propagation delay and the serialiser's sub-ps
    // remainders stay far below it.
    CheckSpec::new(
        "linerate",
        "frames of this size sent back to back: delivered rate equals the closed-form line rate rate/(8×(frame+20))",
        "Mpps",
        Origin::Validation,
    )
    .closed_form(Tolerance::Relative(0.001))
    .per_point(),
    // 0.1 % of the frames offered: the closed form counts whole frames
    // and may be off by one at either end of the offer window.
    CheckSpec::new(
        "overload-delivered",
        "frames offered at 2× the line rate into a full queue: frames delivered equal the closed form (offer window ÷ frame time + queue)",
        "frames",
        Origin::Validation,
    )
    .closed_form(Tolerance::Relative(0.001))
    .per_point(),
];

/// What one run measured.
#[derive(serde::Serialize, serde::Deserialize)]
struct PointResult {
    frame_bytes: u64,
    delivered: u64,
    dropped: u64,
    fps: f64,
}

impl Experiment for EthernetLinerate {
    /// No machine: two ports and a wire, whose values (`[ethernet]`) are
    /// the root preset's.
    fn host(&self) -> &'static str {
        "skylake-x"
    }
    fn name(&self) -> &'static str {
        "ethernet-linerate"
    }
    fn reproduces(&self) -> &'static str {
        "Ethernet line rate (IEEE 802.3 closed form): model validation"
    }
    fn about(&self) -> &'static str {
        "A sender keeps a link's transmit queue full of real UDP frames; the receiver checks each frame and measures frames per second, compared with the closed-form line rate including 20 bytes of preamble, SFD and inter-frame gap per frame. A second run per size offers twice the line rate, so the queue overflows: the frames delivered are compared with the closed form, and every frame must be delivered intact or counted as dropped."
    }
    fn paper(&self) -> &'static str {
        "IEEE 802.3 (closed form)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn checks(&self) -> &'static [CheckSpec] {
        CHECKS
    }

    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError> {
        let sizes = ctx.params.u64_list("frame_bytes");
        if let Some(bad) = sizes.iter().find(|s| {
            !(packet::MIN_FRAME_BYTES as u64..=packet::MAX_FRAME_BYTES as u64).contains(s)
        }) {
            return Err(RunError::Config(format!(
                "frame_bytes {bad} is outside 64..=1518"
            )));
        }
        let rate = ctx
            .params
            .u64("gbps")
            .checked_mul(1_000_000_000)
            .and_then(Rate::from_bits_per_s)
            .ok_or_else(|| RunError::Config("gbps must be 1 to 1600".into()))?;
        let frames = ctx.params.u64("frames");
        if frames < 2 {
            return Err(RunError::Config(
                "frames must be at least 2 to measure a rate".into(),
            ));
        }
        let config = LinkConfig {
            rate,
            queue_frames: ctx.params.u64("queue_frames").max(1) as usize,
            ..LinkConfig::default()
        };
        let points: Vec<(u64, bool)> = sizes
            .iter()
            .flat_map(|&s| [(s, false), (s, true)])
            .collect();
        let results = ctx.sweep(&points, |_, &(size, overload)| {
            run_point(ctx, config, size, frames, overload)
        })?;

        let mut series = Series::new("simulated", "frame_bytes", &["mpps", "gbps"]);
        let mut reference = Series::new("closed form", "frame_bytes", &["mpps", "gbps"])
            .kind(SeriesKind::ClosedForm);
        let mut overload = Series::new(
            "simulated, 2× overload",
            "frame_bytes",
            &["delivered_share"],
        );
        let mut overload_reference = Series::new(
            "closed form, 2× overload",
            "frame_bytes",
            &["delivered_share"],
        )
        .kind(SeriesKind::ClosedForm);
        let mut checks = Vec::new();
        for pair in results.chunks(2) {
            let [r, o] = pair else {
                return Err(RunError::Config(
                    "a frame size lost its overload run".into(),
                ));
            };
            let mpps = r.fps / 1e6;
            let gbps = r.fps * r.frame_bytes as f64 * 8.0 / 1e9;
            let expected = EthTx::line_rate_fps(rate, r.frame_bytes);
            series.push(json!({"frame_bytes": r.frame_bytes, "mpps": mpps, "gbps": gbps}));
            reference.push(json!({"frame_bytes": r.frame_bytes, "mpps": expected / 1e6, "gbps": expected * r.frame_bytes as f64 * 8.0 / 1e9}));
            let point = format!("{}B", r.frame_bytes);
            checks.push(CHECKS[0].at(&point).judge_against(expected / 1e6, mpps));

            let expected_delivered = overload_delivered(config, o.frame_bytes, frames);
            overload.push(json!({
                "frame_bytes": o.frame_bytes,
                "delivered_share": o.delivered as f64 / frames as f64,
                "delivered": o.delivered,
                "dropped": o.dropped,
            }));
            overload_reference.push(json!({
                "frame_bytes": o.frame_bytes,
                "delivered_share": expected_delivered as f64 / frames as f64,
            }));
            checks.push(
                CHECKS[1]
                    .at(&point)
                    .judge_against(expected_delivered as f64, o.delivered as f64),
            );
        }
        Ok(Outcome {
            series: vec![series, reference, overload, overload_reference],
            axes: vec![
                Axis::new("frame_bytes", "frame size, FCS included (bytes)"),
                Axis::new("mpps", "delivered rate (Mpps)"),
                Axis::new("gbps", "delivered frame bytes (Gb/s)"),
                Axis::new(
                    "delivered_share",
                    "frames delivered at 2× line rate (share of offered)",
                ),
            ],
            checks,
            notes: vec![
                "Frame sizes count the 4-byte FCS; each frame also occupies 20 bytes of preamble, SFD and inter-frame gap. Gb/s counts frame bytes (FCS included), not the per-frame overhead.".into(),
                "The rate is measured between the first and last arrival at the receiver, from simulated time.".into(),
                format!(
                    "Both checks are validation: the link serialises with the closed form it is compared with, so they test the simulator (the serialiser, the queue bound of {} frames, the drop path), not a published measurement. Every run must also conserve frames — offered = delivered intact, in order + dropped for a full queue — or it fails; under 2× overload about half the frames are dropped, so the count is exercised.",
                    config.queue_frames
                ),
            ],
        })
    }
}

/// Frames a link delivers when `frames` frames are offered at [`OVERLOAD`]×
/// its line rate: those that start during the offer window, plus the full
/// queue waiting when the last is offered (never more than were offered).
fn overload_delivered(config: LinkConfig, frame_bytes: u64, frames: u64) -> u64 {
    let frame_ps = Rate::duration_for_bytes(config.rate, frame_bytes + 20).ps() as f64;
    let window_ps = offer_gap(config, frame_bytes).ps() as f64 * (frames - 1) as f64;
    let started = (window_ps / frame_ps).floor() as u64 + 1;
    (started + config.queue_frames.max(1) as u64).min(frames)
}

/// The gap between offers of the overloaded sender.
fn offer_gap(config: LinkConfig, frame_bytes: u64) -> Duration {
    Duration(Rate::duration_for_bytes(config.rate, frame_bytes + 20).ps() / OVERLOAD)
}

/// One run: back to back at line rate, or offered at [`OVERLOAD`]× it.
fn run_point(
    ctx: &RunContext,
    config: LinkConfig,
    frame_bytes: u64,
    frames: u64,
    overload: bool,
) -> Result<PointResult, RunError> {
    let label = if overload {
        format!("ethernet-linerate-{frame_bytes}B-overload")
    } else {
        format!("ethernet-linerate-{frame_bytes}B")
    };
    let sim = ctx.new_sim();
    let rx = Rc::new(Mailbox::new(&sim));
    let wire = Rc::new(Wire::new(&sim, config, rx.clone()));
    // No host here: the wire is its own component in the trace and stats.
    let host = sim.trace_host(|| "link under test".into());
    if let Some(track) = sim.trace_track(host, || "wire".into()) {
        wire.trace_on(track);
    }
    let counted = wire.clone();
    sim.on_stats(move |r| r.counters("wire", &counted.counters()));
    if let Some(capture) = ctx.new_capture() {
        wire.set_capture(capture);
    }
    let flow = FlowKey {
        src_ip: Ipv4Addr::new(10, 0, 0, 1),
        dst_ip: Ipv4Addr::new(10, 0, 0, 2),
        src_port: 9000,
        dst_port: 9001,
    };
    let template = packet::build_udp(Macs::default(), flow, &[], frame_bytes as usize)
        .map_err(|e| RunError::Config(e.to_string()))?;

    // Sender: keep the queue full, or offer faster than the line drains
    // and let the full queue drop; every frame carries its sequence number.
    let (s, w) = (sim.clone(), wire.clone());
    let build_error = Rc::new(RefCell::new(None));
    let be = build_error.clone();
    let gap = offer_gap(config, frame_bytes);
    sim.spawn(async move {
        for id in 0..frames {
            if overload {
                if id > 0 {
                    s.sleep(gap).await;
                }
            } else {
                w.wait_for_room().await;
            }
            match packet::build_udp(
                Macs::default(),
                flow,
                &id.to_be_bytes(),
                frame_bytes as usize,
            ) {
                Ok(bytes) => {
                    // A drop is counted by the wire; conservation below
                    // checks the count.
                    let _ = w.send(Frame::new(bytes, id));
                }
                Err(e) => {
                    *be.borrow_mut() = Some(e.to_string());
                    s.stop();
                    return;
                }
            }
        }
    });

    // Receiver: verify every frame and record first/last arrival.
    let first = Rc::new(Cell::new(Time::ZERO));
    let last = Rc::new(Cell::new(Time::ZERO));
    let delivered = Rc::new(Cell::new(0u64));
    let intact = Rc::new(Cell::new(true));
    let (s, r, f, l, d, ok) = (
        sim.clone(),
        rx.clone(),
        first.clone(),
        last.clone(),
        delivered.clone(),
        intact.clone(),
    );
    sim.spawn(async move {
        let mut expected_id = 0;
        loop {
            let frame: Frame = r.recv().await;
            let good = frame.bytes.len() == template.len()
                && packet::parse_udp(&frame.bytes).is_ok_and(|v| {
                    frame.bytes[v.payload_offset..v.payload_offset + 8] == frame.id.to_be_bytes()
                })
                && frame.id >= expected_id;
            ok.set(ok.get() && good);
            expected_id = frame.id + 1;
            if d.get() == 0 {
                f.set(s.now());
            }
            l.set(s.now());
            d.set(d.get() + 1);
        }
    });
    // Enough simulated time for every frame at line rate, with margin.
    let line_bytes = (frame_bytes + 20).checked_mul(frames).ok_or_else(|| {
        RunError::Config(format!(
            "{frames} frames of {frame_bytes} B overflow the byte count"
        ))
    })?;
    let horizon =
        Rate::duration_for_bytes(config.rate, line_bytes).times(2) + Duration::from_us(10);
    sim.run_until(Time::ZERO + horizon);
    if let Some(e) = build_error.borrow_mut().take() {
        return Err(RunError::Config(e));
    }
    let counters = wire.counters();
    if let Some(capture) = wire.take_capture() {
        ctx.write_capture(&label, &capture)?;
    }
    let span = last.get() - first.get();
    let n = delivered.get();
    let fps = if span.ps() > 0 {
        (n - 1) as f64 / span.as_secs_f64()
    } else {
        0.0
    };
    ctx.finish_sim(&label, &sim, n)?;
    sim.shutdown();
    let dropped = counters.sum_prefix("drop.");
    let offered = counters.get("offered");
    if !intact.get() || offered != frames || offered != n + dropped {
        return Err(RunError::Config(format!(
            "{label}: frame conservation broke: {frames} sent, {offered} offered, {n} delivered ({}), {dropped} dropped",
            if intact.get() {
                "intact, in order"
            } else {
                "some damaged or out of order"
            }
        )));
    }
    Ok(PointResult {
        frame_bytes,
        delivered: n,
        dropped,
        fps,
    })
}
