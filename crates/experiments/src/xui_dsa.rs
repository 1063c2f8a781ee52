//! `xui-dsa` — Fig. 9 of the xUI paper: a closed-loop client offloads to a
//! DSA-like accelerator (completion latency = mean ± uniform noise, means
//! 2 µs and 20 µs) and learns of each completion by busy spinning on the
//! completion record, by periodic polling from an interval timer
//! (`setitimer`, SIGALRM through the kernel), or by an xUI forwarded device
//! interrupt delivered with tracking. Reports mean offload latency
//! (submit → completion seen) and free cycles (the fraction of the core
//! not spent spinning, in timer signals or in interrupt delivery).

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Category, Duration, Notify, SimRng, Time};
use nextio_hw::cpu::{Core, CoreCtx};
use nextio_hw::interrupt::dsa::{Dsa, LatencyDist};
use nextio_hw::interrupt::pipeline::{
    CoreParams, InstrMix, Route, Strategy, UcodeCosts, delivery_cost,
};
use nextio_os::{DeliveryPath, Kernel, OsCosts, OsError, Tid};
use serde_json::json;

use crate::experiment::{Check, Experiment, Outcome, RunContext, RunError, Series, SimTally};
use crate::params::{ParamKind, ParamSpec};
use crate::xui_common::{FREQ, split_by};

pub struct XuiDsa;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "mean_us",
        ParamKind::U64List,
        "2,20",
        "µs",
        "mean completion latency",
    ),
    ParamSpec::new(
        "noise_frac",
        ParamKind::F64List,
        "0,0.25,0.5,0.75,1",
        "× mean",
        "half-width of the uniform noise, as a fraction of the mean",
    )
    .quick("0,0.5,1"),
    ParamSpec::new(
        "requests",
        ParamKind::U64,
        "20000",
        "offloads",
        "offloads per point",
    )
    .quick("2000"),
];

/// Client work per offload: build the descriptor and ENQCMD it (a
/// non-posted 64-byte MMIO write), assumption ≈200 ns.
const SUBMIT_CYCLES: u64 = 400;
/// Consuming a completion record and recycling the buffer (assumption).
const COMPLETE_CYCLES: u64 = 200;
/// Seeing a completion record the device just wrote: the line was
/// invalidated (a miss) and the spin branch mispredicts (§2: ≈100 cycles).
const POLL_HIT_CYCLES: u64 = 100;
/// The client's pipeline while it waits (a light loop; assumption).
const CLIENT_MIX: InstrMix = InstrMix {
    name: "offload-client",
    ipc: 2.0,
    rob_occupancy: 100,
    inflight_miss_cycles: 0,
    sp_chain_cycles: 0,
};

/// The accelerator's completion interrupt vector.
const DSA_VECTOR: u8 = 48;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mech {
    Spin,
    Periodic,
    Xui,
}

struct Point {
    latency_us: f64,
    free: f64,
    tally: SimTally,
}

fn run_point(
    run: &RunContext,
    mech: Mech,
    mean: Duration,
    noise: Duration,
    requests: u64,
    seed: u64,
) -> Result<Point, RunError> {
    let sim = run.new_sim();
    let core = Core::new(0, FREQ, Time::ZERO);
    let ctx = CoreCtx::new(&sim, core.clone());
    let dist = LatencyDist::new(mean, noise).map_err(|e| RunError::Config(e.to_string()))?;
    let dsa = Rc::new(RefCell::new(Dsa::new(dist, SimRng::new(seed).fork("dsa"))));
    let written = Rc::new(Notify::new(&sim));
    let lat = Rc::new(RefCell::new(Vec::with_capacity(requests as usize)));
    let os = OsCosts::default();
    let xui = delivery_cost(
        &CoreParams::default(),
        &UcodeCosts::default(),
        &CLIENT_MIX,
        Strategy::Tracked,
        Route::Direct,
    );
    // The client thread registers a handler and asks for the accelerator's
    // completion vector to be forwarded to it (xUI), or sets an interval
    // timer (periodic polling).
    let mut k = Kernel::new(1, os);
    let setup = (|| -> Result<Tid, OsError> {
        let pid = k.create_process();
        let tid = k.create_thread(pid, 0)?;
        k.schedule(0, 0)?;
        k.sys_register_handler(tid, 0x1000)?;
        k.sys_register_forward(tid, DSA_VECTOR, 2)?;
        if mech == Mech::Periodic {
            k.sys_setitimer(tid, Some(mean.0))?;
        }
        Ok(tid)
    })();
    let tid = setup.map_err(|e| RunError::Config(e.to_string()))?;
    let kernel = Rc::new(RefCell::new(k));
    let misrouted = Rc::new(std::cell::Cell::new(0u64));
    let (kk, mis) = (kernel.clone(), misrouted.clone());
    let (s, d, w, l) = (sim.clone(), dsa.clone(), written.clone(), lat.clone());
    sim.spawn(async move {
        for _ in 0..requests {
            ctx.compute(Category::Application, SUBMIT_CYCLES).await;
            let submitted = s.now();
            let (_, done_at) = d.borrow_mut().submit(submitted);
            // The device writes the completion record at done_at.
            let w2 = w.clone();
            s.at(done_at, move || w2.notify())
                .expect("a device event is never scheduled in the past");
            match mech {
                Mech::Spin => {
                    ctx.spin_until(&w, || s.now() >= done_at).await;
                    ctx.compute(Category::Polling, POLL_HIT_CYCLES).await;
                }
                Mech::Periodic => {
                    // setitimer with period = mean: the thread sleeps; each
                    // SIGALRM costs the full kernel path, then checks.
                    let period = mean;
                    loop {
                        let now = ctx.local_now();
                        let k = (now - Time::ZERO).0 / period.0 + 1;
                        s.sleep_until(Time(k * period.0)).await;
                        {
                            let mut k = kk.borrow_mut();
                            let _ = k.itimer_expire(tid);
                            let _ = k.deliver_signals(tid);
                        }
                        ctx.cycles(Category::Kernel, os.itimer_tick_cycles());
                        ctx.sync().await;
                        if s.now() >= done_at {
                            ctx.compute(Category::Polling, POLL_HIT_CYCLES).await;
                            break;
                        }
                    }
                }
                Mech::Xui => {
                    // The core is free (halted or running other work) until
                    // the forwarded interrupt is delivered, tracked, no UPID.
                    ctx.block_until(&w, || s.now() >= done_at).await;
                    // MSI from the device → APIC → forwarded to the thread.
                    let fast = kk
                        .borrow_mut()
                        .interrupt(0, DSA_VECTOR, false)
                        .map(|v| v.iter().any(|d| d.path == DeliveryPath::Fast))
                        .unwrap_or(false);
                    if !fast {
                        mis.set(mis.get() + 1);
                    }
                    ctx.spend(Category::Idle, FREQ.cycles_to_duration(xui.latency_cycles));
                    ctx.compute(Category::Interrupt, xui.overhead_cycles).await;
                }
            }
            d.borrow_mut().poll_completions(s.now());
            l.borrow_mut().push(s.now() - submitted);
            ctx.compute(Category::Application, COMPLETE_CYCLES).await;
        }
    });
    sim.run();
    let end = sim.now();
    let ledger = core.ledger_at(end);
    let free = ledger.fraction(Category::Idle);
    let lat = lat.borrow();
    let mean_lat = lat.iter().map(|d| d.as_us_f64()).sum::<f64>() / lat.len().max(1) as f64;
    let ok = dsa.borrow().completed() == requests && lat.len() as u64 == requests;
    if misrouted.get() > 0 {
        return Err(RunError::Config(format!(
            "{} completion interrupts missed the fast path",
            misrouted.get()
        )));
    }
    if !ok {
        return Err(RunError::Config(
            "offloads lost: completion accounting broke".into(),
        ));
    }
    run.write_trace(
        &format!(
            "xui-dsa-{mech:?}-{}us-{}us",
            mean.as_us_f64(),
            noise.as_us_f64()
        ),
        &sim,
    )?;
    // Tasks hold the simulator: drop them (the clock and counters stay).
    sim.shutdown();
    Ok(Point {
        latency_us: mean_lat,
        free,
        tally: SimTally::of(&sim, requests),
    })
}

impl Experiment for XuiDsa {
    fn name(&self) -> &'static str {
        "xui-dsa"
    }
    fn reproduces(&self) -> &'static str {
        "xUI (ASPLOS '25) Fig. 9: DSA completion delivery — spin vs periodic polling vs xUI"
    }
    fn about(&self) -> &'static str {
        "A closed-loop client offloads to a DSA-like accelerator whose completion latency is 2 µs or 20 µs ± uniform noise, and learns of completions by spinning, by polling from a setitimer signal each mean interval, or by an xUI forwarded device interrupt. Reports mean offload latency and the fraction of core cycles left free."
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError> {
        let means = ctx.params.u64_list("mean_us");
        let noises = ctx.params.f64_list("noise_frac");
        let requests = ctx.params.u64("requests");
        if means.iter().any(|m| *m == 0 || *m > 10_000)
            || noises.iter().any(|n| !(0.0..=1.0).contains(n))
            || requests == 0
            || requests > 10_000_000
        {
            return Err(RunError::Config(
                "mean_us in 1..=10000, noise_frac in 0..=1, requests in 1..=10^7".into(),
            ));
        }
        let names = ["spin", "periodic", "xui"];
        let mechs = [Mech::Spin, Mech::Periodic, Mech::Xui];
        let mut points = Vec::new();
        for (k, m) in mechs.iter().enumerate() {
            for &mu in &means {
                for &n in &noises {
                    points.push((k, *m, mu, n));
                }
            }
        }
        let res = ctx.sweep(&points, |i, &(_, m, mu, n)| {
            let mean = Duration::from_us(mu);
            let noise = Duration((mean.0 as f64 * n) as u64);
            run_point(
                ctx,
                m,
                mean,
                noise,
                requests,
                ctx.point_seed(i % (means.len() * noises.len())),
            )
        })?;
        let mut series: Vec<Series> = names
            .iter()
            .map(|n| Series::new(*n, "noise_us", &["latency_us", "free_cycles"]))
            .collect();
        let mut get = std::collections::BTreeMap::new();
        for ((k, _, mu, n), r) in points.iter().zip(&res) {
            ctx.record(r.tally);
            let noise_us = *mu as f64 * n;
            get.insert((*k, *mu, (n * 1000.0) as u64), (r.latency_us, r.free));
            series[*k].push(json!({
                "mechanism": names[*k], "mean_us": mu, "noise_us": noise_us,
                "latency_us": r.latency_us, "free_cycles": r.free,
            }));
        }
        let mut checks = Vec::new();
        if let (Some(x), Some(s)) = (get.get(&(2, 2, 0)), get.get(&(0, 2, 0))) {
            checks.push(Check::new(
                "xui-free-2us",
                "free cycles with xUI, 2 µs offloads, no noise",
                Some(0.75),
                x.1,
                "fraction",
            ));
            checks.push(Check::new(
                "spin-free-2us",
                "free cycles with busy spinning",
                Some(0.0),
                s.1,
                "fraction",
            ));
            checks.push(Check::new(
                "xui-minus-spin-2us",
                "xUI latency − spin latency, 2 µs (paper: within 0.2 µs)",
                Some(0.2),
                x.0 - s.0,
                "µs",
            ));
        }
        let worst = get
            .iter()
            .filter(|((k, _, _), _)| *k == 2)
            .map(|(key, v)| {
                let s = get.get(&(0, key.1, key.2)).map(|s| s.0).unwrap_or(v.0);
                v.0 - s
            })
            .fold(0.0f64, f64::max);
        checks.push(Check::new(
            "xui-minus-spin-worst",
            "largest xUI − spin latency gap over all points (paper: ≤0.2 µs)",
            Some(0.2),
            worst,
            "µs",
        ));
        if let (Some(p0), Some(p1)) = (get.get(&(1, 20, 0)), get.get(&(1, 20, 1000))) {
            checks.push(Check::new(
                "periodic-20us-noise-penalty",
                "periodic polling latency, 20 µs: full noise − no noise (paper: rises sharply)",
                None,
                p1.0 - p0.0,
                "µs",
            ));
        }
        Ok(Outcome {
            series: split_by(series, "mean_us"),
            checks,
            notes: vec![
                "Periodic polling uses setitimer with period = the mean latency; each tick costs the kernel timer path plus a §2 signal (≈2.8 µs in all). At a 2 µs period that exceeds the period, so the model's periodic polling saturates the core at 2 µs — the paper's gem5 OS timer is evidently far cheaper than the 2.4 µs signal the paper itself measured on silicon.".into(),
                "xUI completions are forwarded device interrupts (no UPID) delivered with tracking; their latency and overhead come from the same pipeline model as Fig. 4. Free cycles count the core as free while it waits.".into(),
                "Periodic polling with zero noise is the model's worst case, not its best: the client submits just after a tick (the submit costs 400 cycles), so a completion exactly one mean later lands just after the next tick and waits a whole period; noise randomises that phase and lowers the mean. The paper reports the opposite trend, which implies a timer phase the paper does not describe.".into(),
                "Client work per offload (400 cycles submit, 200 cycles completion) is an assumption; the paper gives none.".into(),
            ],
        })
    }
}
