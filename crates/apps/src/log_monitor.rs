//! A log monitor in the manner of AWS CloudWatch Logs' metric filters
//! (Ensō paper §3.3.3): log lines arrive as UDP payload text and every line
//! containing one of a set of patterns is counted, by pattern set, with an
//! Aho–Corasick automaton (the `aho-corasick` crate) over the real bytes.
//! Frames pass through unchanged.
//!
//! What a scan costs depends on the target application's patterns — the
//! paper reports a range (2–100 Gb/s) for that reason — so the cost per
//! byte is the matcher's: [`Matcher::Literal`] (a few literals, found by a
//! SIMD prefilter that skips most bytes) or [`Matcher::Dfa`] (one automaton
//! transition per byte, what a large pattern set degrades to).
//!
//! Two ways to take the text ([`LogMonitorConfig::stream`]):
//! - **framed** (the default): each frame's payload holds whole lines and
//!   is scanned on its own, one call per frame — what a packetized
//!   interface hands an application.
//! - **stream**: the sender streams log text, so a payload holds whatever
//!   bytes come next and a line may span two (or more) frames. The
//!   monitor keeps the unfinished tail of the last line in a carry buffer
//!   in its own memory (stored and reloaded through the cache model) and
//!   completes it with the next bytes. With the packetized driver the
//!   stream comes one mbuf at a time ([`PacketApp::process`]); on Ensō the
//!   wrapper hands over a batch's contiguous pipe bytes and the monitor
//!   consumes the payload regions of all its frames in one pass
//!   ([`PacketApp::process_stream`]): one call's set-up and one count
//!   update per batch, the per-64-byte scan over the batch's text as a
//!   whole. The pipe holds raw packets — the paper enables only
//!   traditional offloads (RSS, checksum) on either NIC — so headers and
//!   the generator's stamp stay in the pipe, between the payloads, and
//!   are skipped; the frame bounds come from the packet walk the wrapper
//!   does anyway.
//!
//! Invariants: the lines counted are exactly those a plain scan of every
//! line for every pattern finds (in stream mode: of the concatenated
//! text, whatever the frame and batch boundaries); a line is counted once
//! however many patterns it holds; a line longer than the carry buffer is
//! counted as `log.overlong_lines`, not matched, never a panic.

use aho_corasick::AhoCorasick;
use nextio_engine::Counters;
use serde::{Deserialize, Serialize};

use crate::app::{AppMemory, PacketApp, Verdict, udp_layout};

/// The log monitor's primitives: the preset's `[apps.log_monitor]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogMonitorCosts {
    /// Per frame: headers, finding the text, updating the counts.
    pub frame_cycles: u64,
    /// Per line: finding its end and counting a match.
    pub line_cycles: u64,
    /// Per 64 bytes scanned by the literal prefilter.
    pub literal_cycles_per_64_bytes: u64,
    /// Per 64 bytes scanned by a full automaton (one transition a byte).
    pub dfa_cycles_per_64_bytes: u64,
}

/// The root preset's log-monitor costs (read once per process).
pub fn costs() -> &'static LogMonitorCosts {
    nextio_presets::cached_root_section!(LogMonitorCosts, "apps.log_monitor")
}

/// How the automaton scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matcher {
    Literal,
    Dfa,
}

/// A monitor's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogMonitorConfig {
    pub patterns: Vec<String>,
    pub matcher: Matcher,
    /// Lines may span frames: carry the unfinished line across frames and
    /// consume Ensō batches as one stream (see the module doc).
    pub stream: bool,
}

impl Default for LogMonitorConfig {
    fn default() -> Self {
        LogMonitorConfig {
            patterns: ["ERROR", "FATAL", "timeout", "denied"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            matcher: Matcher::Literal,
            stream: false,
        }
    }
}

/// Bytes of the carry buffer, the longest line the stream mode matches.
/// assumption: 4 KiB, far above the generator's lines (under 80 B) and the
/// order of a syslog message's customary limit (RFC 5426 asks receivers to
/// take at least 2048 B); it is the monitor's whole table memory.
pub const MAX_LINE_BYTES: u64 = 4096;

/// What one stretch of stream text held: complete lines, matching lines,
/// bytes the automaton scanned (a carried line's head is scanned again
/// with its end).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Scanned {
    lines: u64,
    matched: u64,
    bytes: u64,
    overlong: u64,
}

/// One monitor instance.
pub struct LogMonitor {
    config: LogMonitorConfig,
    costs: LogMonitorCosts,
    automaton: AhoCorasick,
    /// The unfinished line's bytes so far (stream mode), mirrored at
    /// offset 0 of the application's memory.
    carry: Vec<u8>,
    /// The unfinished line outgrew the carry buffer: skip to its end.
    overlong: bool,
}

impl LogMonitor {
    pub fn new(config: LogMonitorConfig, costs: LogMonitorCosts) -> Result<LogMonitor, String> {
        if config.patterns.is_empty() || config.patterns.iter().any(String::is_empty) {
            return Err("a log monitor needs non-empty patterns".into());
        }
        let automaton = AhoCorasick::new(&config.patterns).map_err(|e| e.to_string())?;
        Ok(LogMonitor {
            config,
            costs,
            automaton,
            carry: Vec::new(),
            overlong: false,
        })
    }

    /// Consume `text`, the next bytes of the stream: complete the carried
    /// line with its first line's bytes, match every line it completes,
    /// and carry its unfinished tail (stored into the carry buffer, whose
    /// head is reloaded when the line completes).
    fn feed(&mut self, text: &[u8], mem: &mut dyn AppMemory) -> Scanned {
        let mut s = Scanned {
            bytes: text.len() as u64,
            ..Scanned::default()
        };
        let mut rest = text;
        if let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let head = &rest[..nl];
            rest = &rest[nl + 1..];
            s.lines += 1;
            if self.overlong || self.carry.len() + head.len() > MAX_LINE_BYTES as usize {
                s.overlong += 1;
            } else if self.carry.is_empty() {
                s.matched += self.automaton.is_match(head) as u64;
            } else {
                // The line's head comes back from the carry buffer.
                let mut back = vec![0u8; self.carry.len()];
                mem.load(0, &mut back);
                back.extend_from_slice(head);
                s.bytes += self.carry.len() as u64;
                s.matched += self.automaton.is_match(&back) as u64;
            }
            self.carry.clear();
            self.overlong = false;
        } else {
            self.push_carry(rest, mem);
            return s;
        }
        let tail_at = rest.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        if tail_at > 0 {
            let whole = &rest[..tail_at - 1];
            s.lines += whole.split(|b| *b == b'\n').count() as u64;
            s.matched += self.matching_lines(whole);
        }
        self.push_carry(&rest[tail_at..], mem);
        s
    }

    /// Append `bytes` to the unfinished line (stored in the carry buffer).
    fn push_carry(&mut self, bytes: &[u8], mem: &mut dyn AppMemory) {
        if bytes.is_empty() || self.overlong {
            return;
        }
        if self.carry.len() + bytes.len() > MAX_LINE_BYTES as usize {
            self.overlong = true;
            self.carry.clear();
            return;
        }
        mem.store(self.carry.len() as u64, bytes);
        self.carry.extend_from_slice(bytes);
    }

    /// The automaton's cost for `bytes` scanned in one pass.
    fn scan_cycles(&self, bytes: u64) -> u64 {
        let per_64 = match self.config.matcher {
            Matcher::Literal => self.costs.literal_cycles_per_64_bytes,
            Matcher::Dfa => self.costs.dfa_cycles_per_64_bytes,
        };
        bytes.div_ceil(64) * per_64
    }

    /// Charge and count what a pass scanned.
    fn account(&self, s: Scanned, mem: &mut dyn AppMemory, counters: &mut Counters) {
        mem.compute(self.scan_cycles(s.bytes) + s.lines * self.costs.line_cycles);
        counters.add("log.lines", s.lines);
        counters.add("log.matched_lines", s.matched);
        counters.add("log.bytes", s.bytes);
        counters.add("log.overlong_lines", s.overlong);
    }

    /// Lines of `text` (split at `\n`) holding a pattern.
    pub fn matching_lines(&self, text: &[u8]) -> u64 {
        text.split(|b| *b == b'\n')
            .filter(|line| self.automaton.is_match(line))
            .count() as u64
    }
}

/// The log text of a frame: its UDP payload after the generator's stamp,
/// without the NULs that pad a frame's last line.
fn frame_text(frame: &[u8]) -> Result<&[u8], &'static str> {
    let l = udp_layout(frame).ok_or("skipped.not_udp")?;
    let (at, end) = (l.app_data(), l.end().min(frame.len()));
    if at >= end {
        return Err("skipped.no_text");
    }
    let text = &frame[at..end];
    Ok(&text[..text.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1)])
}

impl PacketApp for LogMonitor {
    fn name(&self) -> &'static str {
        "log-monitor"
    }
    fn memory_bytes(&self) -> u64 {
        // The automaton is small and hot; its tables are not modelled as
        // memory (their misses would be few), only its per-byte work. The
        // region is the stream mode's carry buffer.
        MAX_LINE_BYTES
    }
    fn init(&mut self, _mem: &mut dyn AppMemory) {}
    fn reads(&self, frame_len: usize) -> usize {
        frame_len
    }
    fn streams(&self) -> bool {
        self.config.stream
    }
    fn process(
        &mut self,
        frame: &mut [u8],
        _frame_len: usize,
        mem: &mut dyn AppMemory,
        counters: &mut Counters,
    ) -> Verdict {
        mem.compute(self.costs.frame_cycles);
        let text = match frame_text(frame) {
            Ok(t) => t,
            Err(why) => return Verdict::Skipped(why),
        };
        let s = if self.config.stream {
            self.feed(text, mem)
        } else {
            // A last line ends the frame, whether or not a newline does.
            let text = text.strip_suffix(b"\n").unwrap_or(text);
            Scanned {
                lines: text.split(|b| *b == b'\n').count() as u64,
                matched: self.matching_lines(text),
                bytes: text.len() as u64,
                overlong: 0,
            }
        };
        self.account(s, mem, counters);
        Verdict::Done
    }
    fn process_stream(
        &mut self,
        batch: &[u8],
        frames: &[std::ops::Range<usize>],
        mem: &mut dyn AppMemory,
        counters: &mut Counters,
    ) -> Vec<Verdict> {
        // One set-up and one count update for the batch; the frames'
        // payloads are one stretch of text with headers to step over.
        mem.compute(self.costs.frame_cycles);
        let mut total = Scanned::default();
        let verdicts = frames
            .iter()
            .map(|r| {
                let Some(frame) = batch.get(r.clone()) else {
                    return Verdict::Skipped("skipped.outside_batch");
                };
                match frame_text(frame) {
                    Ok(text) => {
                        let s = self.feed(text, mem);
                        total.lines += s.lines;
                        total.matched += s.matched;
                        total.bytes += s.bytes;
                        total.overlong += s.overlong;
                        Verdict::Done
                    }
                    Err(why) => Verdict::Skipped(why),
                }
            })
            .collect();
        self.account(total, mem, counters);
        verdicts
    }
}

/// A deterministic log line: a timestamp, a level and a message, some of
/// which hold the default patterns.
pub fn log_line(i: u64) -> String {
    const LEVELS: [&str; 6] = ["INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG"];
    const MESSAGES: [&str; 6] = [
        "request served in 3 ms",
        "cache refreshed",
        "upstream timeout after 500 ms",
        "permission denied for user 17",
        "disk usage at 71 %",
        "FATAL: worker exited",
    ];
    let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    format!(
        "2023-07-10T12:{:02}:{:02}Z {} svc-{} {}",
        (i / 60) % 60,
        i % 60,
        LEVELS[(h % 6) as usize],
        h % 97,
        MESSAGES[((h >> 8) % 6) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::VecMemory;
    use nextio_hw::packet::{Macs, build_udp};
    use nextio_hw::trafficgen::{STAMP_BYTES, synthetic_flow};

    const COSTS: LogMonitorCosts = LogMonitorCosts {
        frame_cycles: 1,
        line_cycles: 1,
        literal_cycles_per_64_bytes: 1,
        dfa_cycles_per_64_bytes: 64,
    };

    /// A plain scan: every line, every pattern.
    fn reference(lines: &[String], patterns: &[String]) -> u64 {
        lines
            .iter()
            .filter(|l| patterns.iter().any(|p| l.contains(p.as_str())))
            .count() as u64
    }

    #[test]
    fn it_counts_exactly_the_lines_a_plain_scan_finds() {
        let config = LogMonitorConfig::default();
        let mut app = LogMonitor::new(config.clone(), COSTS).unwrap();
        let mut mem = VecMemory::new(app.memory_bytes());
        let mut c = Counters::new();
        let mut all = Vec::new();
        let mut i = 0;
        for _ in 0..50 {
            let mut text = String::new();
            let mut lines = Vec::new();
            while text.len() + 80 < 1400 {
                let l = log_line(i);
                i += 1;
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&l);
                lines.push(l);
            }
            let mut payload = vec![0u8; STAMP_BYTES];
            payload.extend_from_slice(text.as_bytes());
            let mut f = build_udp(Macs::default(), synthetic_flow(1), &payload, 1518).unwrap();
            let before = f.clone();
            let len = f.len();
            assert_eq!(app.process(&mut f, len, &mut mem, &mut c), Verdict::Done);
            assert_eq!(f, before, "frames pass unchanged");
            all.extend(lines);
        }
        let want = reference(&all, &config.patterns);
        assert!(
            want > 0 && want < all.len() as u64,
            "{want} of {}",
            all.len()
        );
        assert_eq!(c.get("log.matched_lines"), want);
        assert_eq!(c.get("log.lines"), all.len() as u64);
    }

    #[test]
    fn a_line_with_two_patterns_counts_once_and_the_dfa_costs_more() {
        let patterns = vec!["ab".to_string(), "b".to_string()];
        let lit = LogMonitor::new(
            LogMonitorConfig {
                patterns: patterns.clone(),
                matcher: Matcher::Literal,
                stream: false,
            },
            COSTS,
        )
        .unwrap();
        assert_eq!(lit.matching_lines(b"xab\nzzz\nb"), 2);
        let mut dfa = LogMonitor::new(
            LogMonitorConfig {
                patterns,
                matcher: Matcher::Dfa,
                stream: false,
            },
            COSTS,
        )
        .unwrap();
        let mut lit = lit;
        let mut payload = vec![0u8; STAMP_BYTES];
        payload.extend_from_slice(&[b'q'; 600]);
        let f = build_udp(Macs::default(), synthetic_flow(1), &payload, 1000).unwrap();
        let (mut a, mut b) = (VecMemory::new(64), VecMemory::new(64));
        let len = f.len();
        lit.process(&mut f.clone(), len, &mut a, &mut Counters::new());
        dfa.process(&mut f.clone(), len, &mut b, &mut Counters::new());
        assert!(b.cycles > 10 * a.cycles, "{} vs {}", b.cycles, a.cycles);
        assert!(
            LogMonitor::new(
                LogMonitorConfig {
                    patterns: vec![],
                    matcher: Matcher::Dfa,
                    stream: false,
                },
                COSTS
            )
            .is_err()
        );
    }

    /// `n` log lines, each ended by a newline: the stream a sender sends.
    fn stream_text(n: u64) -> (String, Vec<String>) {
        let lines: Vec<String> = (0..n).map(log_line).collect();
        let mut text = String::new();
        for l in &lines {
            text.push_str(l);
            text.push('\n');
        }
        (text, lines)
    }

    /// A UDP frame carrying `text` after the generator's stamp, exactly.
    fn text_frame(text: &[u8]) -> Vec<u8> {
        let mut payload = vec![0u8; STAMP_BYTES];
        payload.extend_from_slice(text);
        nextio_hw::packet::build_udp_datagram(Macs::default(), synthetic_flow(1), &payload).unwrap()
    }

    /// Lay `frames` out as a pipe holds them (each padded to 64 bytes)
    /// and return the bytes and each frame's range.
    fn as_pipe(frames: &[Vec<u8>]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        let (mut bytes, mut ranges) = (Vec::new(), Vec::new());
        for f in frames {
            ranges.push(bytes.len()..bytes.len() + f.len());
            bytes.extend_from_slice(f);
            bytes.resize(bytes.len().next_multiple_of(64), 0);
        }
        (bytes, ranges)
    }

    fn stream_monitor() -> LogMonitor {
        LogMonitor::new(
            LogMonitorConfig {
                stream: true,
                ..LogMonitorConfig::default()
            },
            COSTS,
        )
        .unwrap()
    }

    #[test]
    fn the_stream_finds_the_reference_lines_whatever_the_frame_and_batch_cuts() {
        let (text, lines) = stream_text(600);
        let want = reference(&lines, &LogMonitorConfig::default().patterns);
        // Payloads of varying length cut lines anywhere, several times a
        // line for the short ones.
        let mut frames = Vec::new();
        let (bytes, mut at, mut k) = (text.as_bytes(), 0, 0);
        while at < bytes.len() {
            let n = [1400, 37, 1, 250, 900, 64][k % 6].min(bytes.len() - at);
            frames.push(text_frame(&bytes[at..at + n]));
            at += n;
            k += 1;
        }
        // Ensō: batches of 1 to 7 frames, each consumed in one call.
        let mut enso = stream_monitor();
        let (mut mem, mut c) = (VecMemory::new(MAX_LINE_BYTES), Counters::new());
        let (mut i, mut batches) = (0, 0);
        while i < frames.len() {
            let n = (batches % 7 + 1).min(frames.len() - i);
            let (pipe, ranges) = as_pipe(&frames[i..i + n]);
            let v = enso.process_stream(&pipe, &ranges, &mut mem, &mut c);
            assert_eq!(v, vec![Verdict::Done; n]);
            i += n;
            batches += 1;
        }
        assert_eq!(c.get("log.matched_lines"), want);
        assert_eq!(c.get("log.lines"), lines.len() as u64);
        assert_eq!(c.get("log.overlong_lines"), 0);
        assert!(
            mem.stores > 0 && mem.loads > 0,
            "the carry went through memory"
        );
        // Packetized: the same monitor fed one mbuf at a time.
        let mut dpdk = stream_monitor();
        let (mut mem2, mut c2) = (VecMemory::new(MAX_LINE_BYTES), Counters::new());
        for f in &frames {
            let mut f = f.clone();
            let len = f.len();
            assert_eq!(dpdk.process(&mut f, len, &mut mem2, &mut c2), Verdict::Done);
        }
        assert_eq!(c2.get("log.matched_lines"), want);
        assert_eq!(c2.get("log.lines"), lines.len() as u64);
        // Per frame, a scan's set-up each time; per batch, once.
        assert!(
            mem2.cycles > mem.cycles,
            "{} vs {}",
            mem2.cycles,
            mem.cycles
        );
        // A framed monitor on the same frames breaks the cut lines apart.
        let mut framed = LogMonitor::new(LogMonitorConfig::default(), COSTS).unwrap();
        let mut c3 = Counters::new();
        for f in &frames {
            let mut f = f.clone();
            let len = f.len();
            framed.process(&mut f, len, &mut VecMemory::new(64), &mut c3);
        }
        assert_ne!(c3.get("log.lines"), lines.len() as u64);
    }

    #[test]
    fn without_straddling_lines_stream_and_framed_agree() {
        let (text, lines) = stream_text(300);
        // Whole lines per frame: cut after a newline once past 1000 bytes.
        let mut frames = Vec::new();
        let mut start = 0;
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' && i + 1 - start > 1000 {
                frames.push(text_frame(&text.as_bytes()[start..=i]));
                start = i + 1;
            }
        }
        frames.push(text_frame(&text.as_bytes()[start..]));
        let mut framed = LogMonitor::new(LogMonitorConfig::default(), COSTS).unwrap();
        let mut c1 = Counters::new();
        for f in &frames {
            let mut f = f.clone();
            let len = f.len();
            framed.process(&mut f, len, &mut VecMemory::new(64), &mut c1);
        }
        let mut stream = stream_monitor();
        let mut c2 = Counters::new();
        let (pipe, ranges) = as_pipe(&frames);
        stream.process_stream(&pipe, &ranges, &mut VecMemory::new(MAX_LINE_BYTES), &mut c2);
        let want = reference(&lines, &LogMonitorConfig::default().patterns);
        assert_eq!(c1.get("log.matched_lines"), want);
        assert_eq!(c2.get("log.matched_lines"), want);
        assert_eq!(c1.get("log.lines"), c2.get("log.lines"));
    }

    #[test]
    fn an_overlong_line_is_counted_not_matched_and_bad_frames_are_skipped() {
        let mut m = stream_monitor();
        let mut mem = VecMemory::new(MAX_LINE_BYTES);
        let mut c = Counters::new();
        let long = "x".repeat(1400);
        let mut frames: Vec<Vec<u8>> = (0..4).map(|_| text_frame(long.as_bytes())).collect();
        frames.push(text_frame(b"ERROR tail\nFATAL next\n"));
        frames.push(vec![0u8; 60]);
        let (pipe, mut ranges) = as_pipe(&frames);
        ranges.push(pipe.len()..pipe.len() + 10);
        let v = m.process_stream(&pipe, &ranges, &mut mem, &mut c);
        assert_eq!(v[..5], [Verdict::Done; 5]);
        assert_eq!(v[5], Verdict::Skipped("skipped.not_udp"));
        assert_eq!(v[6], Verdict::Skipped("skipped.outside_batch"));
        assert_eq!(c.get("log.overlong_lines"), 1);
        assert_eq!(c.get("log.lines"), 2);
        assert_eq!(c.get("log.matched_lines"), 1, "only the line after it");
        assert_eq!(mem.faults, 0);
    }
}
