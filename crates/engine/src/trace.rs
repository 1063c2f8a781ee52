//! The structured event trace: named spans and instants on named tracks,
//! grouped by host, written as Chrome trace-event JSON (the format
//! Perfetto and `chrome://tracing` load).
//!
//! Models register a track once (a core, a device, a link) and keep the
//! small [`TrackId`] they get back; a track the filter leaves out, or any
//! track while tracing is off, comes back as `None`, so a model's hot path
//! pays one `Option` test when nothing is traced. Events name what
//! happened with `&'static str`s, so recording one allocates nothing.
//!
//! What it keeps true:
//! * the file is valid JSON whatever the names hold (strings are escaped);
//! * timestamps are microseconds written exactly from picoseconds
//!   (`12.000345` is 12 000 345 ps), never rounded through a float;
//! * on each written track (`tid`) no two spans overlap: spans that do
//!   (concurrent transactions on one device) are spread over extra lanes
//!   of that track, so every track is well formed and sorted by time;
//! * nothing recorded is lost silently: events past the record cap are
//!   counted and the count is written into the file (`otherData`).

use std::fmt::Write as _;

use crate::time::{Duration, Time};

/// A registered track. Cheap to copy; meaningful only to the simulator
/// that gave it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrackId(u32);

/// A host (a trace-event process) tracks are grouped under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostId(u32);

/// Most events kept by default; later ones are counted, not stored.
pub const DEFAULT_TRACE_LIMIT: usize = 1_000_000;

/// What a trace keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceConfig {
    /// Keep only tracks whose full name (`host/track`) contains one of
    /// these; empty keeps every track.
    pub filter: Vec<String>,
    /// Keep only events that overlap `[start, end)`, if set.
    pub window: Option<(Time, Time)>,
    /// Most events kept.
    pub limit: usize,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            filter: Vec::new(),
            window: None,
            limit: DEFAULT_TRACE_LIMIT,
        }
    }
}

/// One recorded event: a span when `dur_ps` is set, else an instant —
/// or, when `counter`, a counter's new value (`arg`) from `start_ps` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Event {
    track: u32,
    name: &'static str,
    category: &'static str,
    start_ps: u64,
    dur_ps: Option<u64>,
    arg: Option<(&'static str, u64)>,
    counter: bool,
}

/// The trace of one simulation.
#[derive(Debug, Default)]
pub struct TraceSink {
    config: TraceConfig,
    hosts: Vec<String>,
    /// `(host, name)` of every track kept.
    tracks: Vec<(u32, String)>,
    events: Vec<Event>,
    /// Per track, the index of its latest span (to extend it when the
    /// next one continues it under the same name).
    last_span: Vec<Option<usize>>,
    /// Events past the cap.
    dropped: u64,
    /// Tracks the filter left out.
    filtered_tracks: u64,
}

impl TraceSink {
    pub fn new(config: TraceConfig) -> TraceSink {
        TraceSink {
            config,
            ..TraceSink::default()
        }
    }

    /// Register a host; its tracks are grouped under it.
    pub fn host(&mut self, name: String) -> HostId {
        self.hosts.push(name);
        HostId(self.hosts.len() as u32 - 1)
    }

    /// Register track `name` of `host`, or `None` if the filter leaves it
    /// out (or the host is unknown).
    pub fn track(&mut self, host: HostId, name: String) -> Option<TrackId> {
        let host_name = self.hosts.get(host.0 as usize)?;
        let full = format!("{host_name}/{name}");
        if !self.config.filter.is_empty() && !self.config.filter.iter().any(|f| full.contains(f)) {
            self.filtered_tracks += 1;
            return None;
        }
        self.tracks.push((host.0, name));
        self.last_span.push(None);
        Some(TrackId(self.tracks.len() as u32 - 1))
    }

    fn in_window(&self, start: Time, end: Time) -> bool {
        match self.config.window {
            None => true,
            // An instant (start == end) is kept inside [lo, hi); a span if
            // it overlaps it.
            Some((lo, hi)) => start < hi && (end > lo || (end == start && start >= lo)),
        }
    }

    fn push(&mut self, e: Event) {
        if self.events.len() >= self.config.limit {
            self.dropped += 1;
            return;
        }
        self.events.push(e);
    }

    /// Record a span of `dur` from `start`. A span that continues the
    /// track's previous one (same name, category and no argument, starting
    /// where it ended) extends it instead of adding an event.
    pub fn span(
        &mut self,
        track: TrackId,
        name: &'static str,
        category: &'static str,
        start: Time,
        dur: Duration,
        arg: Option<(&'static str, u64)>,
    ) {
        if !self.in_window(start, start + dur) {
            return;
        }
        let t = track.0 as usize;
        if arg.is_none()
            && let Some(Some(i)) = self.last_span.get(t)
            && let Some(prev) = self.events.get_mut(*i)
            && prev.name == name
            && prev.category == category
            && prev.arg.is_none()
            && prev.start_ps + prev.dur_ps.unwrap_or(0) == start.ps()
        {
            prev.dur_ps = Some(prev.dur_ps.unwrap_or(0) + dur.0);
            return;
        }
        let before = self.events.len();
        self.push(Event {
            track: track.0,
            name,
            category,
            start_ps: start.ps(),
            dur_ps: Some(dur.0),
            arg,
            counter: false,
        });
        if self.events.len() > before
            && let Some(slot) = self.last_span.get_mut(t)
        {
            *slot = Some(before);
        }
    }

    /// Record an instant at `at`.
    pub fn instant(
        &mut self,
        track: TrackId,
        name: &'static str,
        category: &'static str,
        at: Time,
        arg: Option<(&'static str, u64)>,
    ) {
        if !self.in_window(at, at) {
            return;
        }
        self.push(Event {
            track: track.0,
            name,
            category,
            start_ps: at.ps(),
            dur_ps: None,
            arg,
            counter: false,
        });
    }

    /// Record that `track`'s counter `name` (a queue's depth, say) holds
    /// `value` from `at` on. It is drawn as its own counter track named
    /// after `track`; values may be recorded out of time order.
    pub fn counter(&mut self, track: TrackId, name: &'static str, at: Time, value: u64) {
        if !self.in_window(at, at) {
            return;
        }
        self.push(Event {
            track: track.0,
            name,
            category: "counter",
            start_ps: at.ps(),
            dur_ps: None,
            arg: Some((name, value)),
            counter: true,
        });
    }

    /// Events kept.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Events left out by the record cap.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The trace as Chrome trace-event JSON: `{"traceEvents": [...]}` with
    /// a metadata event naming every host (`pid`) and track lane (`tid`),
    /// `X` spans and `i` instants, sorted by time.
    pub fn to_json(&self) -> String {
        let mut order: Vec<usize> = (0..self.events.len()).collect();
        order.sort_by_key(|&i| (self.events[i].track, self.events[i].start_ps, i));
        // Greedy lanes per track: a span goes on the first lane free at
        // its start, so spans on a lane never overlap.
        let mut lane_of = vec![0u32; self.events.len()];
        let mut lanes: Vec<Vec<u64>> = vec![Vec::new(); self.tracks.len()];
        for &i in &order {
            let e = &self.events[i];
            let ends = &mut lanes[e.track as usize];
            let end = e.start_ps + e.dur_ps.unwrap_or(0);
            let lane = match ends.iter().position(|&free| free <= e.start_ps) {
                Some(l) => l,
                None => {
                    ends.push(0);
                    ends.len() - 1
                }
            };
            if e.dur_ps.is_some() {
                ends[lane] = end;
            }
            lane_of[i] = lane as u32;
        }
        // tids: lane 0 of every track first (track index + 1), extra lanes
        // after them.
        let mut tid_base = Vec::with_capacity(self.tracks.len());
        let mut next = self.tracks.len() as u64 + 1;
        for l in &lanes {
            tid_base.push(next);
            next += l.len().saturating_sub(1) as u64;
        }
        let tid = |track: u32, lane: u32| -> u64 {
            if lane == 0 {
                track as u64 + 1
            } else {
                tid_base[track as usize] + lane as u64 - 1
            }
        };
        let mut out = String::with_capacity(64 + self.events.len() * 96);
        out.push_str("{\"traceEvents\":[\n");
        let mut first = true;
        let mut sep = |out: &mut String| {
            if !first {
                out.push_str(",\n");
            }
            first = false;
        };
        for (pid, name) in self.hosts.iter().enumerate() {
            sep(&mut out);
            let _ = write!(
                out,
                "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{},\"tid\":0,\"args\":{{\"name\":{}}}}}",
                pid + 1,
                quote(name)
            );
        }
        for (t, (host, name)) in self.tracks.iter().enumerate() {
            for lane in 0..lanes[t].len().max(1) as u32 {
                let shown = if lane == 0 {
                    name.clone()
                } else {
                    format!("{name} #{}", lane + 1)
                };
                let id = tid(t as u32, lane);
                sep(&mut out);
                let _ = write!(
                    out,
                    "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{},\"tid\":{id},\"args\":{{\"name\":{}}}}}",
                    host + 1,
                    quote(&shown)
                );
                sep(&mut out);
                let _ = write!(
                    out,
                    "{{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":{},\"tid\":{id},\"args\":{{\"sort_index\":{id}}}}}",
                    host + 1
                );
            }
        }
        order.sort_by_key(|&i| (self.events[i].start_ps, i));
        for &i in &order {
            let e = &self.events[i];
            let pid = self.tracks[e.track as usize].0 + 1;
            sep(&mut out);
            if e.counter {
                let series = format!("{} {}", self.tracks[e.track as usize].1, e.name);
                let _ = write!(
                    out,
                    "{{\"ph\":\"C\",\"name\":{},\"cat\":\"counter\",\"pid\":{pid},\"ts\":{},\"args\":{{{}:{}}}}}",
                    quote(&series),
                    micros(e.start_ps),
                    quote(e.name),
                    e.arg.map_or(0, |(_, v)| v)
                );
                continue;
            }
            let _ = write!(
                out,
                "{{\"ph\":\"{}\",\"name\":{},\"cat\":{},\"pid\":{pid},\"tid\":{},\"ts\":{}",
                if e.dur_ps.is_some() { "X" } else { "i" },
                quote(e.name),
                quote(e.category),
                tid(e.track, lane_of[i]),
                micros(e.start_ps)
            );
            match e.dur_ps {
                Some(d) => {
                    let _ = write!(out, ",\"dur\":{}", micros(d));
                }
                None => out.push_str(",\"s\":\"t\""),
            }
            if let Some((k, v)) = e.arg {
                let _ = write!(out, ",\"args\":{{{}:{v}}}", quote(k));
            }
            out.push('}');
        }
        let _ = write!(
            out,
            "\n],\"displayTimeUnit\":\"ns\",\"otherData\":{{\"time_unit\":\"ts and dur in microseconds, exact to the picosecond\",\"events\":{},\"dropped_events\":{},\"limit\":{},\"filtered_tracks\":{}}}}}\n",
            self.events.len(),
            self.dropped,
            self.config.limit,
            self.filtered_tracks
        );
        out
    }
}

/// `ps` picoseconds as microseconds, exactly: `1234567` → `1.234567`.
fn micros(ps: u64) -> String {
    format!("{}.{:06}", ps / 1_000_000, ps % 1_000_000)
}

/// `s` as a JSON string literal.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(q, "\\u{:04x}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(config: TraceConfig) -> (TraceSink, HostId) {
        let mut s = TraceSink::new(config);
        let h = s.host("test".into());
        (s, h)
    }

    #[test]
    fn contiguous_spans_of_one_name_merge() {
        let (mut s, h) = sink(TraceConfig::default());
        let t = s.track(h, "core 0".into()).unwrap();
        s.span(t, "app", "cpu", Time(0), Duration(10), None);
        s.span(t, "app", "cpu", Time(10), Duration(5), None);
        s.span(t, "driver", "cpu", Time(15), Duration(5), None);
        s.span(t, "driver", "cpu", Time(30), Duration(5), None);
        assert_eq!(s.len(), 3);
        assert_eq!(s.events[0].dur_ps, Some(15));
    }

    #[test]
    fn counters_are_written_as_named_counter_events_in_time_order() {
        let (mut s, h) = sink(TraceConfig::default());
        let w = s.track(h, "wire nic port 0 tx".into()).unwrap();
        s.counter(w, "queue", Time(2_000_000), 0);
        s.counter(w, "queue", Time(1_000_000), 3);
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        let c: Vec<&serde_json::Value> = v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "C")
            .collect();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0]["name"], "wire nic port 0 tx queue");
        assert_eq!(c[0]["ts"].as_f64(), Some(1.0));
        assert_eq!(c[0]["args"]["queue"], 3);
        assert_eq!(c[1]["args"]["queue"], 0);
    }

    #[test]
    fn filter_window_and_cap_reduce_and_count() {
        let (mut s, h) = sink(TraceConfig {
            filter: vec!["nic".into()],
            window: Some((Time(100), Time(200))),
            limit: 2,
        });
        assert!(s.track(h, "core 0".into()).is_none());
        let nic = s.track(h, "pcie nic".into()).unwrap();
        s.instant(nic, "early", "x", Time(50), None);
        s.span(nic, "spans-into", "x", Time(50), Duration(60), None);
        s.instant(nic, "in", "x", Time(150), Some(("bytes", 64)));
        s.instant(nic, "past-cap", "x", Time(160), None);
        s.instant(nic, "late", "x", Time(200), None);
        assert_eq!(s.len(), 2);
        assert_eq!(s.dropped(), 1);
        let json = s.to_json();
        assert!(json.contains("\"dropped_events\":1"));
        assert!(json.contains("\"filtered_tracks\":1"));
        assert!(!json.contains("early"));
    }

    #[test]
    fn overlapping_spans_get_lanes_and_times_are_exact() {
        let (mut s, h) = sink(TraceConfig::default());
        let t = s.track(h, "dev \"x\"".into()).unwrap();
        s.span(
            t,
            "a",
            "dma",
            Time(1_000_001),
            Duration(10),
            Some(("bytes", 1)),
        );
        s.span(
            t,
            "b",
            "dma",
            Time(1_000_005),
            Duration(10),
            Some(("bytes", 2)),
        );
        let json = s.to_json();
        assert!(json.contains("\"ts\":1.000001"), "{json}");
        assert!(json.contains("\"dur\":0.000010"), "{json}");
        assert!(json.contains("dev \\\"x\\\" #2"), "{json}");
    }

    #[test]
    fn micros_are_exact() {
        assert_eq!(micros(0), "0.000000");
        assert_eq!(micros(1_234_567), "1.234567");
        assert_eq!(micros(u64::MAX), "18446744073709.551615");
    }
}
