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
//! Invariants: the lines counted are exactly those a plain scan of every
//! line for every pattern finds; a line is counted once however many
//! patterns it holds.

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
}

impl Default for LogMonitorConfig {
    fn default() -> Self {
        LogMonitorConfig {
            patterns: ["ERROR", "FATAL", "timeout", "denied"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            matcher: Matcher::Literal,
        }
    }
}

/// One monitor instance.
pub struct LogMonitor {
    config: LogMonitorConfig,
    costs: LogMonitorCosts,
    automaton: AhoCorasick,
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
        })
    }

    /// Lines of `text` (split at `\n`) holding a pattern.
    pub fn matching_lines(&self, text: &[u8]) -> u64 {
        text.split(|b| *b == b'\n')
            .filter(|line| self.automaton.is_match(line))
            .count() as u64
    }
}

impl PacketApp for LogMonitor {
    fn name(&self) -> &'static str {
        "log-monitor"
    }
    fn memory_bytes(&self) -> u64 {
        // The automaton is small and hot; its tables are not modelled as
        // memory (their misses would be few), only its per-byte work.
        64
    }
    fn init(&mut self, _mem: &mut dyn AppMemory) {}
    fn reads(&self, frame_len: usize) -> usize {
        frame_len
    }
    fn process(
        &mut self,
        frame: &mut [u8],
        _frame_len: usize,
        mem: &mut dyn AppMemory,
        counters: &mut Counters,
    ) -> Verdict {
        mem.compute(self.costs.frame_cycles);
        let Some(l) = udp_layout(frame) else {
            return Verdict::Skipped("skipped.not_udp");
        };
        let (at, end) = (l.app_data(), l.end().min(frame.len()));
        if at >= end {
            return Verdict::Skipped("skipped.no_text");
        }
        let text = &frame[at..end];
        // Trailing NULs pad a frame's last line; they are not text.
        let text = &text[..text.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1)];
        let lines = text.split(|b| *b == b'\n').count() as u64;
        let matched = self.matching_lines(text);
        let per_64 = match self.config.matcher {
            Matcher::Literal => self.costs.literal_cycles_per_64_bytes,
            Matcher::Dfa => self.costs.dfa_cycles_per_64_bytes,
        };
        mem.compute((text.len() as u64).div_ceil(64) * per_64 + lines * self.costs.line_cycles);
        counters.add("log.lines", lines);
        counters.add("log.matched_lines", matched);
        counters.add("log.bytes", text.len() as u64);
        Verdict::Done
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
            },
            COSTS,
        )
        .unwrap();
        assert_eq!(lit.matching_lines(b"xab\nzzz\nb"), 2);
        let mut dfa = LogMonitor::new(
            LogMonitorConfig {
                patterns,
                matcher: Matcher::Dfa,
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
                    matcher: Matcher::Dfa
                },
                COSTS
            )
            .is_err()
        );
    }
}
