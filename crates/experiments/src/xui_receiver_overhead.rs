//! `xui-receiver-overhead` — Fig. 4 of the xUI paper: what periodic user
//! interrupts cost a compute-bound program, per event and as slowdown, for
//! UIPI sent by a software timer core (flush), tracked xUI interrupts sent
//! by a timer core (UPID processing kept), and xUI tracked KB_Timer
//! interrupts (no UPID).
//!
//! Every value here is *composed*, not simulated: the runtime charges each
//! event a fixed cost, `delivery_cost()` of `nextio_hw::interrupt::pipeline`
//! — a sum of calibrated microcode costs (Table 2, Fig. 2) and of terms of
//! an assumed instruction mix (ROB occupancy, in-flight misses) — so the
//! simulation only counts events; the slowdown is that count times the
//! cost. The mean over programs of those sums is the per-event figure.
//! KB_Timer's figure is *fitted*: its delivery cost is Fig. 2's 105 cycles,
//! the paper's own result used as an input.

use nextio_engine::Duration;
use nextio_hw::interrupt::pipeline::{
    CoreParams, Programs, Route, Strategy, UcodeCosts, delivery_cost, programs,
};
use nextio_lib::Preemption;
use serde_json::json;

use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, STATED, Series, SeriesKind,
    Tolerance,
};
use crate::params::{ParamKind, ParamSpec};
use crate::xui_common::{FREQ, mean, run_single_job, split_by};

pub struct XuiReceiverOverhead;

/// Fig. 4, Table 2 and §6.1 of the xUI paper.
const PAPER_PER_EVENT: [f64; 3] = [645.0, 231.0, 105.0];
const PAPER_SLOWDOWN_5US: [f64; 2] = [6.86, 1.06];

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "per-event-uipi",
        "UIPI (SW timer, flush): mean cycles per event over the programs and intervals",
        "cycles",
        Origin::Composed,
    )
    .stated(PAPER_PER_EVENT[0], STATED),
    CheckSpec::new(
        "per-event-xui-sw",
        "xUI tracking, SW timer: mean cycles per event over the programs and intervals",
        "cycles",
        Origin::Composed,
    )
    .stated(PAPER_PER_EVENT[1], STATED),
    CheckSpec::new(
        "per-event-xui-kb",
        "xUI tracking, KB_Timer: mean cycles per event (its delivery cost is Fig. 2's 105 cycles, an input)",
        "cycles",
        Origin::Fitted,
    )
    .stated(PAPER_PER_EVENT[2], STATED),
    CheckSpec::new(
        "reduction-uipi-vs-kb",
        "per-event cost, UIPI ÷ KB_Timer (paper: 645 ÷ 105)",
        "×",
        Origin::Composed,
    )
    .stated(PAPER_PER_EVENT[0] / PAPER_PER_EVENT[2], STATED),
    CheckSpec::new(
        "slowdown-5us-uipi",
        "slowdown at a 5 µs interval, UIPI (events × the fixed per-event cost)",
        "%",
        Origin::Composed,
    )
    .stated(PAPER_SLOWDOWN_5US[0], STATED),
    CheckSpec::new(
        "slowdown-5us-kb",
        "slowdown at a 5 µs interval, KB_Timer + tracking (events × the fitted per-event cost)",
        "%",
        Origin::Fitted,
    )
    .stated(PAPER_SLOWDOWN_5US[1], STATED),
    CheckSpec::new(
        "end-to-end-uipi",
        "Table 2: senduipi start → handler, UIPI (IPI transit + flush + notification + delivery, summed)",
        "cycles",
        Origin::Composed,
    )
    .stated(1360.0, STATED),
    CheckSpec::new(
        "tracked-worst-case-latency",
        "§6.1: tracked delivery latency when SP depends on 50 long-latency loads (50 × an assumed 130-cycle DRAM miss + delivery)",
        "cycles",
        Origin::Composed,
    )
    .stated(7000.0, STATED),
    CheckSpec::new(
        "flush-vs-tracked-worst-case",
        "§6.1: tracking's worst-case latency is an order of magnitude above flush's (ratio; read as 10× ± 50 %)",
        "×",
        Origin::Composed,
    )
    .words(10.0, Tolerance::Relative(0.5)),
];

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "interval_us",
        ParamKind::U64List,
        "1,2,5,10,20,50,100",
        "µs",
        "interrupt period, 1 to 10000 µs, at most half the program (so every point has interrupts to count)",
    )
    .quick("1,5,20,100")
    .int(1, 10_000)
    .items(1, 64),
    ParamSpec::new(
        "program_ms",
        ParamKind::U64,
        "10",
        "ms",
        "length of the compute program without interrupts, 1 to 1000",
    )
    .quick("2")
    .int(1, 1000),
];

const MECHANISMS: [(&str, Preemption); 3] = [
    (
        "uipi-sw-timer",
        Preemption::TimerCore {
            strategy: Strategy::Flush,
        },
    ),
    (
        "xui-sw-timer",
        Preemption::TimerCore {
            strategy: Strategy::Tracked,
        },
    ),
    ("xui-kb-timer", Preemption::KbTimer),
];

impl Experiment for XuiReceiverOverhead {
    fn host(&self) -> &'static str {
        "xui-server"
    }
    fn name(&self) -> &'static str {
        "xui-receiver-overhead"
    }
    fn reproduces(&self) -> &'static str {
        "xUI (ASPLOS '25) Fig. 4: receiver overhead of UIPI vs tracked interrupts vs KB_Timer"
    }
    fn about(&self) -> &'static str {
        "A fib-, linpack- or memops-like program runs on one core while interrupts arrive every interval: UIPIs from a timer core delivered by pipeline flush, the same delivered by tracking, or the core's own KB_Timer tracked without UPID processing. Reports cycles lost per event and the slowdown."
    }
    fn paper(&self) -> &'static str {
        "xUI (ASPLOS '25)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn checks(&self) -> &'static [CheckSpec] {
        CHECKS
    }
    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError> {
        let intervals = ctx.params.u64_list("interval_us");
        if intervals.contains(&0) {
            return Err(RunError::Config("interval_us must be positive".into()));
        }
        let program_ms = ctx.params.u64("program_ms");
        if program_ms == 0 || program_ms > 1000 {
            return Err(RunError::Config("program_ms must be in 1..=1000".into()));
        }
        // An interval the program cannot hold twice leaves (almost) no
        // interrupt to divide by: a meaningless cycles-per-event.
        if let Some(i) = intervals
            .iter()
            .find(|i| i.saturating_mul(2) > program_ms * 1000)
        {
            return Err(RunError::Config(format!(
                "interval_us {i} leaves fewer than two interrupts in a {program_ms} ms program (at most {} µs)",
                program_ms * 500
            )));
        }
        let cycles = FREQ.duration_to_cycles(Duration::from_ms(program_ms));
        let mixes = [programs::fib(), programs::linpack(), programs::memops()];
        let mut points = Vec::new();
        for (m, p) in MECHANISMS {
            for mix in mixes {
                for &i in &intervals {
                    points.push((m, p, mix, i));
                }
            }
        }
        let base = cycles as f64;
        let results = ctx.sweep(&points, |_, &(_, p, mix, i)| {
            run_single_job(ctx, p, Duration::from_us(i), mix, cycles, false)
        })?;
        let mut series: Vec<Series> = MECHANISMS
            .iter()
            .map(|(m, _)| Series::new(*m, "interval_us", &["cycles_per_event", "slowdown_pct"]))
            .collect();
        let mut per_event: [Vec<f64>; 3] = Default::default();
        let mut at5: [Vec<f64>; 3] = Default::default();
        for ((m, _, mix, i), r) in points.iter().zip(&results) {
            ctx.record(r.tally);
            let k = MECHANISMS.iter().position(|(n, _)| n == m).unwrap_or(0);
            let elapsed_cycles = FREQ.cycles_f64(r.elapsed);
            let extra = elapsed_cycles - base;
            let cpe = if r.events > 0 {
                extra / r.events as f64
            } else {
                0.0
            };
            let slow = 100.0 * extra / base;
            per_event[k].push(cpe);
            if *i == 5 {
                at5[k].push(slow);
            }
            series[k].push(json!({
                "mechanism": m, "program": mix.name, "interval_us": i,
                "cycles_per_event": cpe, "slowdown_pct": slow, "events": r.events,
            }));
        }
        let pe: Vec<f64> = per_event.iter().map(|v| mean(v)).collect();
        let mut checks = vec![
            CHECKS[0].judge(pe[0]),
            CHECKS[1].judge(pe[1]),
            CHECKS[2].judge(pe[2]),
            CHECKS[3].judge(pe[0] / pe[2].max(1e-9)),
        ];
        if !at5[0].is_empty() {
            checks.push(CHECKS[4].judge(mean(&at5[0])));
            checks.push(CHECKS[5].judge(mean(&at5[2])));
        }
        // Latencies of single deliveries, from the same mechanism.
        let core = CoreParams::default();
        let u = UcodeCosts::default();
        let flush = delivery_cost(&core, &u, &programs::fib(), Strategy::Flush, Route::Posted);
        checks.push(CHECKS[6].judge((u.ipi_transit_cycles + flush.latency_cycles) as f64));
        // §6.1 pathological case: the stack pointer depends on a chain of
        // 50 dependent DRAM misses (≈130 cycles each at 2 GHz, assumption).
        let mut chained = programs::memops();
        chained.sp_chain_cycles = 50 * Programs::default().sp_chain.miss_cycles;
        let worst = delivery_cost(&core, &u, &chained, Strategy::Tracked, Route::Direct);
        checks.push(CHECKS[7].judge(worst.latency_cycles as f64));
        let flush_chain = delivery_cost(&core, &u, &chained, Strategy::Flush, Route::Direct);
        checks.push(
            CHECKS[8].judge(worst.latency_cycles as f64 / flush_chain.latency_cycles.max(1) as f64),
        );
        let mut series = split_by(series, "program", "");
        // The paper's per-event means hold across intervals: drawn across
        // the sweep; its slowdowns are at 5 µs.
        let (lo, hi) = intervals
            .iter()
            .fold((u64::MAX, 0), |(lo, hi), i| (lo.min(*i), hi.max(*i)));
        for (k, name) in ["paper: UIPI", "paper: xUI SW timer", "paper: xUI KB_Timer"]
            .iter()
            .enumerate()
        {
            let mut s = Series::new(*name, "interval_us", &["cycles_per_event", "slowdown_pct"])
                .kind(SeriesKind::Paper)
                .with(json!({"interval_us": lo, "cycles_per_event": PAPER_PER_EVENT[k]}))
                .with(json!({"interval_us": hi, "cycles_per_event": PAPER_PER_EVENT[k]}));
            let slowdown = match k {
                0 => Some(PAPER_SLOWDOWN_5US[0]),
                2 => Some(PAPER_SLOWDOWN_5US[1]),
                _ => None,
            };
            if let Some(v) = slowdown {
                s.push(json!({"interval_us": 5, "slowdown_pct": v}));
            }
            series.push(s);
        }
        Ok(Outcome {
            series,
            axes: vec![
                Axis::new("interval_us", "interrupt interval (µs)").log(),
                Axis::new("cycles_per_event", "cycles lost per interrupt"),
                Axis::new("slowdown_pct", "slowdown of the program (%)").log(),
            ],
            checks,
            notes: vec![
                "Origins: every value is composed — each event is charged the fixed delivery_cost() of its mechanism and the program's mix, and the simulation only counts events — and KB_Timer's per-event cost and 5 µs slowdown are fitted (Fig. 2's 105-cycle delivery is an input). A simulated version would take the flush and drain costs from the pipeline state of the thread actually running; that is not modelled.".into(),
                "Calibrated inputs are only Table 2 and the Fig. 2 timeline (flush window 424, notification+delivery 262 with delivery 105, uiret 10, receiver 720). Per-event costs are sums over the delivery mechanism's terms: flush = squash (ROB occupancy / squash width) + microcode entry + front-end refill twice + exposed microcode and handler + re-issued in-flight misses; tracking = serialising microcode only (UPID processing if routed through a UPID, then delivery) + fetch slots of the handler and uiret.".into(),
                "UIPI comes out above the paper's 645: the model's flush cannot be cheaper than the 720-cycle silicon receiver cost of Table 2 that it is calibrated to, plus the refill and lost misses that depend on the program; the paper's gem5 figure is below its own silicon receiver cost, which the model has no mechanism to reproduce.".into(),
                "xUI with a SW timer comes out above 231 because notification processing is taken as Fig. 2's 262 − 105 = 157 cycles (a lower bound on silicon, including the remote UPID miss); the paper's gem5 model evidently has a cheaper UPID access.".into(),
                "End-to-end UIPI latency comes out below Table 2's 1360 cycles: the model stops at the first handler instruction, while the paper's measurement ends at an event the sender observes (a further cross-core cache-line transfer and the handler's own work).".into(),
                "Program mixes (IPC, ROB occupancy, in-flight misses) are stated assumptions in nextio_hw::interrupt::pipeline::programs; the paper does not give them.".into(),
            ],
        })
    }
}
