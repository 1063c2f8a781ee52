//! Shared set-up for the xUI experiments: one worker core (and, when the
//! preemption source needs it, a timer core) running the user-level
//! runtime on one long compute thread, measured against the same thread
//! run without notifications.

use nextio_engine::{Duration, Freq, Sim, Time};
use nextio_hw::interrupt::pipeline::InstrMix;
use nextio_hw::machine::MachineSpec;
use nextio_lib::{Job, Preemption, Runtime, RuntimeConfig};
use nextio_os::{Host, OsCosts};

use crate::experiment::{RunContext, RunError, SimTally};

/// The Table 3 clock.
pub const FREQ: Freq = Freq::mhz(2000);

/// The xUI evaluation's host with `cores` cores.
pub fn xui_host(sim: &Sim, cores: usize) -> Result<Host, RunError> {
    let spec = MachineSpec::xui_server(cores);
    debug_assert_eq!(spec.caches.core_clock, FREQ);
    Host::new(sim, spec, OsCosts::default()).map_err(|e| RunError::Config(e.to_string()))
}

/// Result of running one compute thread to completion.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SingleRun {
    pub elapsed: Duration,
    pub events: u64,
    pub tally: SimTally,
}

/// Run a `cycles`-long thread of `mix` under `preemption` every `interval`.
pub fn run_single_job(
    run: &RunContext,
    preemption: Preemption,
    interval: Duration,
    mix: InstrMix,
    cycles: u64,
    switch_threads: bool,
) -> Result<SingleRun, RunError> {
    let sim = run.new_sim();
    let host = xui_host(&sim, 2)?;
    let mut cfg = RuntimeConfig::new(preemption, interval, mix);
    cfg.switch_threads = switch_threads;
    let rt = Runtime::start(&host, cfg, 0, Some(1)).map_err(|e| RunError::Config(e.to_string()))?;
    rt.submit(Job {
        id: 0,
        class: 0,
        cycles,
        arrival: Time::ZERO,
    });
    // Stop the source once the thread is done; the horizon is generous.
    let r = rt.clone();
    let s = sim.clone();
    sim.spawn(async move {
        while r.completions().is_empty() {
            s.sleep(Duration::from_us(1)).await;
        }
        r.stop();
        s.stop();
    });
    let horizon = FREQ.cycles_to_duration(cycles).times(20) + Duration::from_ms(1);
    sim.run_until(Time::ZERO + horizon);
    let done = rt.completions().first().copied();
    let events = rt.events();
    let tally = SimTally::of(&sim, events);
    run.write_artefacts(
        &format!("{preemption:?}-{}us-{cycles}cycles", interval.as_us_f64()),
        &sim,
    )?;
    sim.shutdown();
    let done = done.ok_or_else(|| {
        RunError::Config("the compute thread did not finish within 20× its length".into())
    })?;
    Ok(SingleRun {
        elapsed: done.finished - Time::ZERO,
        events,
        tally,
    })
}

/// Mean of a slice (0 for none).
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Split each series into one curve per value of `field` (in first-seen
/// order), named `series, VALUE UNIT` (`polling, 4 queues`), so a chart
/// draws one line per curve and its legend reads as words.
pub fn split_by(
    series: Vec<crate::experiment::Series>,
    field: &str,
    unit: &str,
) -> Vec<crate::experiment::Series> {
    let mut out = Vec::new();
    for mut s in series {
        let points = std::mem::take(&mut s.points);
        let mut groups: Vec<(String, crate::experiment::Series)> = Vec::new();
        for p in points {
            let key = match p.get(field) {
                Some(serde_json::Value::String(v)) => v.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            let pos = groups.iter().position(|(k, _)| *k == key);
            let i = pos.unwrap_or_else(|| {
                let mut n = s.clone_shape();
                n.name = format!("{}, {key}{unit}", s.name);
                groups.push((key.clone(), n));
                groups.len() - 1
            });
            groups[i].1.points.push(p);
        }
        out.extend(groups.into_iter().map(|(_, g)| g));
    }
    out
}
