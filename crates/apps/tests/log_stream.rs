//! The stream log monitor on both NIC interfaces, end to end: a log
//! stream cut into frames of varying size (so lines span frames) is sent
//! through the host, enough of it that every Ensō RX pipe wraps twice
//! (frames, and so lines, straddle the ring's end); the lines the monitor
//! counts and matches are exactly those of a plain scan of the whole text,
//! and every frame comes back once. Behaviour and data, not timing.

use std::rc::Rc;

use nextio_apps::app::{AppFactory, PacketApp};
use nextio_apps::echo::{self, EchoConfig, EchoSystem, NotificationMode};
use nextio_apps::log_monitor::{self, LogMonitor, LogMonitorConfig, log_line};
use nextio_engine::{Duration, Mailbox, Sim, Time};
use nextio_hw::ethernet::LinkConfig;
use nextio_hw::machine::MachineSpec;
use nextio_hw::nic::enso::PIPE_BYTES;
use nextio_hw::packet::{Frame, Macs, build_udp_datagram};
use nextio_hw::trafficgen::{STAMP_BYTES, synthetic_flow};

fn factory() -> AppFactory {
    Rc::new(|_core| {
        let config = LogMonitorConfig {
            stream: true,
            ..LogMonitorConfig::default()
        };
        Box::new(LogMonitor::new(config, *log_monitor::costs()).expect("a valid monitor"))
            as Box<dyn PacketApp>
    })
}

/// The stream, the lines in it, and its frames (payloads of 37 to 1436
/// text bytes after the generator's stamp, one flow so one pipe).
fn traffic(lines: u64) -> (Vec<String>, Vec<Vec<u8>>) {
    let lines: Vec<String> = (0..lines).map(log_line).collect();
    let text: Vec<u8> = lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect();
    let (mut frames, mut at, mut k) = (Vec::new(), 0, 0u64);
    while at < text.len() {
        let n = (37 + (k * 397) % 1400) as usize;
        let n = n.min(text.len() - at);
        let mut payload = vec![0u8; STAMP_BYTES];
        payload.extend_from_slice(&text[at..at + n]);
        frames.push(build_udp_datagram(Macs::default(), synthetic_flow(0), &payload).unwrap());
        at += n;
        k += 1;
    }
    (lines, frames)
}

fn run(enso: bool, frames: &[Vec<u8>]) -> (u64, EchoSystem) {
    let sim = Sim::new();
    let mut machine = MachineSpec::ice_lake_sp(1);
    machine.memory_bytes = 256 << 20;
    let config = EchoConfig { machine, seed: 5 };
    let sys = if enso {
        echo::enso::build_app(&sim, &config, NotificationMode::Reactive, Some(factory()))
    } else {
        echo::packetized::build_app(&sim, &config, Some(factory()))
    }
    .unwrap();
    let back = Rc::new(Mailbox::new(&sim));
    let deep = LinkConfig {
        queue_frames: 1 << 16,
        ..LinkConfig::default()
    };
    let (_, to_host) = sys
        .host
        .machine()
        .wire_port(sys.nic, 0, back.clone(), deep, deep)
        .unwrap();
    let offered = frames.to_vec();
    let s = sim.clone();
    let ready = sys.ready.clone();
    sim.spawn(async move {
        ready.wait().await;
        for (i, bytes) in offered.into_iter().enumerate() {
            // ≈ 20 Gb/s of 800-byte frames: well within one core.
            s.sleep(Duration::from_ns(320)).await;
            let _ = to_host.send(Frame::new(bytes, i as u64));
        }
    });
    sim.run_until(Time(Duration::from_ms(10).ps()));
    let mut got = 0;
    while back.try_recv().is_some() {
        got += 1;
    }
    (got, sys)
}

fn check(enso: bool) {
    let (lines, frames) = traffic(80_000);
    let patterns = LogMonitorConfig::default().patterns;
    let want = lines
        .iter()
        .filter(|l| patterns.iter().any(|p| l.contains(p.as_str())))
        .count() as u64;
    let padded: u64 = frames
        .iter()
        .map(|f| (f.len() as u64).next_multiple_of(64))
        .sum();
    assert!(padded > 2 * PIPE_BYTES, "the RX pipe wraps: {padded} B");
    // The NIC appends frames to the pipe back to back (64-byte aligned),
    // so a frame lies across the ring's end at some lap.
    let mut at = 0;
    let straddles = frames.iter().any(|f| {
        let end = at + (f.len() as u64).next_multiple_of(64);
        let crosses = at / PIPE_BYTES != (end - 1) / PIPE_BYTES;
        at = end;
        crosses
    });
    assert!(straddles, "a frame's text lies across the ring's end");
    let (got, sys) = run(enso, &frames);
    let app = sys.app.borrow().clone();
    assert_eq!(got, frames.len() as u64, "every frame back once: {app:?}");
    assert_eq!(app.get("processed"), frames.len() as u64);
    assert_eq!(app.get("log.lines"), lines.len() as u64, "{app:?}");
    assert_eq!(app.get("log.matched_lines"), want);
    assert_eq!(app.get("log.overlong_lines"), 0);
    assert_eq!(app.get("error.table_access"), 0);
    if enso {
        assert!(
            app.get("batches") < frames.len() as u64 / 2,
            "batches of several frames: {app:?}"
        );
    }
}

#[test]
fn on_enso_the_monitor_scans_batches_as_one_stream_across_the_ring_wrap() {
    check(true);
}

#[test]
fn with_dpdk_the_monitor_carries_lines_across_mbufs() {
    check(false);
}
