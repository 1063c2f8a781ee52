//! `ethernet-linerate`: validates the Ethernet link model. A sender pushes
//! back-to-back real UDP frames into one direction of a link; the receiver
//! verifies every frame (checksums, order) and measures the delivered rate,
//! which must equal the closed-form line rate `rate / (8 × (frame + 20))`.

use std::cell::{Cell, RefCell};
use std::net::Ipv4Addr;
use std::rc::Rc;

use nextio_engine::{Duration, Mailbox, Rate, Time};
use nextio_hw::ethernet::{EthTx, LinkConfig, Wire};
use nextio_hw::packet::{self, FlowKey, Frame, Macs};
use nextio_hw::pcap::Capture;
use serde_json::json;

use crate::experiment::{Check, Experiment, Outcome, RunContext, RunError, Series};
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

/// What one point measured.
struct PointResult {
    frame_bytes: u64,
    delivered: u64,
    dropped: u64,
    offered: u64,
    fps: f64,
    intact: bool,
}

impl Experiment for EthernetLinerate {
    fn name(&self) -> &'static str {
        "ethernet-linerate"
    }
    fn reproduces(&self) -> &'static str {
        "Ethernet line rate (IEEE 802.3 closed form): model validation"
    }
    fn about(&self) -> &'static str {
        "A sender keeps a link's transmit queue full of real UDP frames; the receiver checks each frame and measures frames per second, compared with the closed-form line rate including 20 bytes of preamble, SFD and inter-frame gap per frame."
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
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
        let results = ctx.sweep(&sizes, |_, &size| run_point(ctx, config, size, frames))?;

        let mut series = Series::new("simulated", "frame_bytes", &["mpps", "gbps"]);
        let mut reference = Series::new("closed form", "frame_bytes", &["mpps", "gbps"]);
        let mut checks = Vec::new();
        for r in &results {
            let mpps = r.fps / 1e6;
            let gbps = r.fps * r.frame_bytes as f64 * 8.0 / 1e9;
            let expected = EthTx::line_rate_fps(rate, r.frame_bytes);
            series.push(json!({"frame_bytes": r.frame_bytes, "mpps": mpps, "gbps": gbps}));
            reference.push(json!({"frame_bytes": r.frame_bytes, "mpps": expected / 1e6, "gbps": expected * r.frame_bytes as f64 * 8.0 / 1e9}));
            checks.push(
                Check::new(
                    format!("linerate-{}B", r.frame_bytes),
                    format!(
                        "{} B frames at {} Gb/s: closed-form line rate",
                        r.frame_bytes,
                        rate.gbps_f64()
                    ),
                    Some(expected / 1e6),
                    mpps,
                    "Mpps",
                )
                .within(0.001),
            );
            checks.push(
                Check::new(
                    format!("conservation-{}B", r.frame_bytes),
                    "frames offered = delivered intact + dropped",
                    Some(r.offered as f64),
                    (if r.intact { r.delivered } else { 0 } + r.dropped) as f64,
                    "frames",
                )
                .within(0.0),
            );
        }
        Ok(Outcome {
            series: vec![series, reference],
            checks,
            notes: vec![
                "Frame sizes count the 4-byte FCS; each frame also occupies 20 bytes of preamble, SFD and inter-frame gap. Gb/s counts frame bytes (FCS included), not the per-frame overhead.".into(),
                "The rate is measured between the first and last arrival at the receiver, from simulated time.".into(),
            ],
        })
    }
}

fn run_point(
    ctx: &RunContext,
    config: LinkConfig,
    frame_bytes: u64,
    frames: u64,
) -> Result<PointResult, RunError> {
    let sim = ctx.new_sim();
    let rx = Rc::new(Mailbox::new(&sim));
    let wire = Rc::new(Wire::new(&sim, config, rx.clone()));
    if ctx.pcap_dir.is_some() {
        wire.set_capture(Capture::new());
    }
    let flow = FlowKey {
        src_ip: Ipv4Addr::new(10, 0, 0, 1),
        dst_ip: Ipv4Addr::new(10, 0, 0, 2),
        src_port: 9000,
        dst_port: 9001,
    };
    let template = packet::build_udp(Macs::default(), flow, &[], frame_bytes as usize)
        .map_err(|e| RunError::Config(e.to_string()))?;

    // Sender: keep the queue full; every frame carries its sequence number.
    let (s, w) = (sim.clone(), wire.clone());
    let build_error = Rc::new(RefCell::new(None));
    let be = build_error.clone();
    sim.spawn(async move {
        for id in 0..frames {
            w.wait_for_room().await;
            match packet::build_udp(
                Macs::default(),
                flow,
                &id.to_be_bytes(),
                frame_bytes as usize,
            ) {
                Ok(bytes) => {
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
    if let (Some(dir), Some(cap)) = (&ctx.pcap_dir, wire.take_capture()) {
        std::fs::create_dir_all(dir).map_err(|e| crate::output::path_error(dir, e))?;
        cap.write(&dir.join(format!("ethernet-linerate-{frame_bytes}B.pcap")))
            .map_err(RunError::from_capture)?;
    }
    let span = last.get() - first.get();
    let n = delivered.get();
    let fps = if span.ps() > 0 {
        (n - 1) as f64 / span.as_secs_f64()
    } else {
        0.0
    };
    ctx.finish_sim(&format!("ethernet-linerate-{frame_bytes}B"), &sim, n)?;
    sim.shutdown();
    Ok(PointResult {
        frame_bytes,
        delivered: n,
        dropped: counters.sum_prefix("drop."),
        offered: counters.get("offered"),
        fps,
        intact: intact.get(),
    })
}
