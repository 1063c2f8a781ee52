//! `lauberhorn-large` — Lauberhorn §7: for large messages the cache-line
//! path loses to DMA ("empirically for Enzian this happens at about
//! 4KiB"). A core loops messages of growing size through the NIC; the
//! NIC answers the receive control line either with the whole message in
//! the control and overflow lines (every line a miss the core takes over
//! the coherent link, two in flight on ECI) or with a header whose bytes
//! it has already written by DMA into the channel's buffer in host
//! memory (which the core then reads from DRAM). The receive time of each
//! is measured; the crossover is where DMA's line first falls below the
//! cache lines', interpolated between the two sizes around it on a log
//! scale.
//!
//! Both modes run on the same host with the same transmit path (the
//! core's message always leaves through its transmit lines), so only the
//! receive differs; the threshold parameter the NIC uses in service is
//! not consulted — each mode forces its path at every size.

use serde_json::json;

use nextio_hw::machine::MachineSpec;

use super::common::repo;
use super::rtt::{Point, coherent};
use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, Series, SeriesKind,
    Tolerance,
};
use crate::params::{ParamKind, ParamSpec};

pub struct LauberhornLarge;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "sizes",
        ParamKind::U64List,
        "256,512,1024,2048,3072,4096,6144,8192,12288,16000",
        "B",
        "message sizes, ascending (at most 16000: a channel's 16 KiB of overflow lines and DMA half)",
    )
    .quick("256,1024,2048,4096,8192,16000")
    .int(1, 16_000)
    .items(2, 32),
    ParamSpec::new(
        "iterations",
        ParamKind::U64,
        "60",
        "",
        "round trips per point",
    )
    .quick("10")
    .int(1, 10_000),
    ParamSpec::new(
        "machine",
        ParamKind::Str,
        "enzian",
        "",
        "the server: Enzian (ECI, 128 B lines) or the CXL server (64 B lines)",
    )
    .choices(&["enzian", "cxl"]),
];

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "crossover-bytes",
        "message size at which DMA delivery's receive time falls below cache-line delivery's (§7: 'about 4KiB' on Enzian; 'about' read as ±50 %)",
        "B",
        Origin::Simulated,
    )
    .words(4096.0, Tolerance::Relative(0.5)),
    CheckSpec::new(
        "small-dma-over-lines",
        "smallest size: DMA receive ÷ cache-line receive (§7: the direct path is the low-latency one for small messages, read as > 1)",
        "ratio",
        Origin::Simulated,
    )
    .words(1.0, Tolerance::AtLeast),
    CheckSpec::new(
        "large-lines-over-dma",
        "largest size: cache-line receive ÷ DMA receive (§7: DMA wins for large messages, read as > 1)",
        "ratio",
        Origin::Simulated,
    )
    .words(1.0, Tolerance::AtLeast),
];

/// The size at which `dma` first is no slower than `lines` (both receive
/// times at `sizes`, ascending), interpolated on log size between the two
/// sizes around the sign change; `None` if DMA never catches up.
fn crossover(sizes: &[f64], lines: &[f64], dma: &[f64]) -> Option<f64> {
    let d: Vec<f64> = lines.iter().zip(dma).map(|(l, m)| l - m).collect();
    let i = d.iter().position(|x| *x >= 0.0)?;
    if i == 0 {
        return Some(sizes[0]);
    }
    let (a, b) = (sizes[i - 1].ln(), sizes[i].ln());
    let f = -d[i - 1] / (d[i] - d[i - 1]);
    Some((a + (b - a) * f).exp())
}

impl Experiment for LauberhornLarge {
    fn host(&self) -> &'static str {
        "enzian"
    }
    fn name(&self) -> &'static str {
        "lauberhorn-large"
    }
    fn reproduces(&self) -> &'static str {
        "Lauberhorn (HotOS '25) §7: the message size at which DMA overtakes cache-line delivery (~4 KiB on Enzian)"
    }
    fn about(&self) -> &'static str {
        "A core loops messages of 256 B to 16 KB through the Lauberhorn NIC on Enzian's coherent link; the NIC delivers each either as control and overflow cache lines the core loads, or by DMA into the channel's buffer with only the header in the control line. Reports both receive times per size and the size where DMA becomes faster."
    }
    fn paper(&self) -> &'static str {
        "Lauberhorn (HotOS '25)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn checks(&self) -> &'static [CheckSpec] {
        CHECKS
    }
    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError> {
        let sizes = ctx.params.u64_list("sizes");
        let iterations = ctx.params.u64("iterations");
        let spec = match ctx.params.str("machine") {
            "cxl" => MachineSpec::cxl_server(1),
            _ => MachineSpec::enzian(1),
        };
        if sizes.is_empty()
            || sizes.iter().any(|s| *s == 0 || *s > 16_000)
            || !sizes.windows(2).all(|w| w[0] < w[1])
            || iterations == 0
            || iterations > 10_000
        {
            return Err(RunError::Config(
                "sizes ascending in 1..=16000 bytes, iterations in 1..=10000".into(),
            ));
        }
        let points: Vec<(bool, usize)> = [false, true]
            .iter()
            .flat_map(|&dma| sizes.iter().map(move |&z| (dma, z as usize)))
            .collect();
        let res: Vec<Point> = ctx.sweep(&points, |_, &(dma, z)| {
            // DMA above nothing (every message) or above everything (none).
            let threshold = if dma { 0 } else { usize::MAX };
            coherent(ctx, spec.clone(), z, iterations, threshold)
        })?;
        let n = sizes.len();
        let (lines, dma) = res.split_at(n);
        let mut series = Vec::new();
        for (name, pts) in [("cache-lines", lines), ("dma", dma)] {
            let mut s = Series::new(name, "bytes", &["rx_us", "rtt_us"]);
            for (z, p) in sizes.iter().zip(pts) {
                ctx.record(p.tally);
                s.push(json!({"mode": name, "bytes": z, "rx_us": p.rx_us, "rtt_us": p.rtt_us}));
            }
            series.push(s);
        }
        // The repository's measured ECI receives (the cache-line path).
        series.push(
            Series::new("repository eci (cache lines)", "bytes", &["rx_us"])
                .kind(SeriesKind::Paper)
                .with(json!({"bytes": 64, "rx_us": repo::ECI_RX_64_US}))
                .with(json!({"bytes": 4096, "rx_us": repo::ECI_RX_4096_US})),
        );
        let xs: Vec<f64> = sizes.iter().map(|z| *z as f64).collect();
        let rx = |v: &[Point]| v.iter().map(|p| p.rx_us).collect::<Vec<_>>();
        let cross = crossover(&xs, &rx(lines), &rx(dma));
        let checks = vec![
            CHECKS[0].judge(cross.unwrap_or(f64::NAN)),
            CHECKS[1].judge(dma[0].rx_us / lines[0].rx_us),
            CHECKS[2].judge(lines[n - 1].rx_us / dma[n - 1].rx_us),
        ];
        let mut notes = vec![
            "Cache-line receive is one control-line miss plus one miss per further line over the coherent link, two in flight on ECI (the link's outstanding misses, from the repository's 4 KiB loopback); DMA receive is the control-line miss, the NIC's posted write and flushing read before it answers, and the core's reads of the buffer from DRAM with the cache hierarchy's prefetching.".into(),
            "The paper gives only 'about 4KiB' and no curve, so the crossover is judged with a wide declared band.".into(),
            "Why the model's crossover is far below 4 KiB: its cache-line receive grows by about 3.2 ns per byte (a 128 B line per 0.4 µs with two misses in flight, which puts 4 KiB within 20 % of the repository's 16.7 µs), while its DMA receive is a nearly fixed 2.2–3.7 µs (one posted write and a flushing read across the NIC's PCIe link at the repository's 1.29 µs read round trip, then DRAM reads with prefetching). For DMA to lose up to 4 KiB it would have to cost about 15 µs at 4 KiB; the prototype's DMA path evidently carries costs the model does not have (the paper does not describe it), so this stays a documented miss.".into(),
        ];
        if cross.is_none() {
            notes.push("DMA never became faster within the sizes run: no crossover.".into());
        }
        Ok(Outcome {
            series,
            axes: vec![
                Axis::new("bytes", "message size (bytes)").log(),
                Axis::new("rx_us", "receive: doorbell answered → message read (µs)").log(),
                Axis::new("rtt_us", "round trip (µs)").log(),
            ],
            checks,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::crossover;

    #[test]
    fn crossover_interpolates_between_the_sizes_around_the_sign_change() {
        let s = [1000.0, 4000.0];
        // Lines 1 µs slower at 4000, 1 µs faster at 1000: halfway on log.
        let x = crossover(&s, &[1.0, 3.0], &[2.0, 2.0]).unwrap();
        assert!((x - 2000.0).abs() < 1e-6, "{x}");
        assert_eq!(crossover(&s, &[1.0, 1.0], &[2.0, 2.0]), None);
        assert_eq!(crossover(&s, &[3.0, 3.0], &[2.0, 2.0]), Some(1000.0));
    }
}
