//! `udma-pollution` — an application's cache misses and speed while
//! copies run beside it on the CPU or on the engine. One core alternates
//! a pass over its working set (loads of every line, with compute) with
//! one copy of fresh buffers: done by the same core through its caches
//! (`memcpy`), or handed to the engine before the pass and waited for
//! after it. The copy's lines evict the working set from L1d/L2 in the
//! first case; the engine's writes land in the LLC's DDIO ways and its
//! reads touch no core cache in the second.
//!
//! Reports, per working-set pass: demand-load misses at L1d, L2 and LLC
//! and the pass's duration; and each iteration's total time. Model only
//! (the paper gives no numbers; Kuper et al. report reduced pollution
//! with DSA without a figure that could be obtained here).

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Category, Duration};
use nextio_hw::cache::CoreStats;
use nextio_hw::devices::udma::layout::{opcode, status};
use nextio_hw::mem::VirtAddr;
use nextio_lib::udma::{UdmaQueue, cpu_memcpy};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, Series, SimTally,
};
use crate::params::{ParamKind, ParamSpec};
use crate::udma_common::{client, udma_host};

pub struct UdmaPollution;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "working_set_kib",
        ParamKind::U64,
        "512",
        "KiB",
        "the application's working set, 4 KiB to 64 MiB",
    )
    .int(4, 65536),
    ParamSpec::new(
        "copy_kib",
        ParamKind::U64,
        "1024",
        "KiB",
        "bytes copied per iteration, 4 KiB to 16 MiB",
    )
    .int(4, 16384),
    ParamSpec::new(
        "iterations",
        ParamKind::U64,
        "12",
        "passes",
        "iterations, 1 to 1000",
    )
    .quick("4")
    .int(1, 1000),
];

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "l2-misses-added-by-cpu-copies",
        "working-set L2 demand misses per pass, copies on the CPU − on the engine",
        "misses",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "l2-misses-engine",
        "working-set L2 demand misses per pass with engine copies",
        "misses",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "pass-slowdown-cpu-copies",
        "working-set pass time with CPU copies ÷ with engine copies",
        "×",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "iteration-speedup-engine",
        "iteration time (pass + copy), copies on the CPU ÷ with the engine",
        "×",
        Origin::Simulated,
    ),
];

/// The benchmark's own costs: the root preset's `[apps.udma_pollution]`,
/// where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollutionCosts {
    /// Compute per working-set line.
    pub work_cycles_per_line: u64,
}

/// The root preset's benchmark costs (read once per process).
fn costs() -> &'static PollutionCosts {
    nextio_presets::cached_root_section!(PollutionCosts, "apps.udma_pollution")
}

#[derive(Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Point {
    l1d: f64,
    l2: f64,
    llc: f64,
    pass_us: f64,
    iteration_us: f64,
    tally: SimTally,
}

fn delta(a: &CoreStats, b: &CoreStats) -> (u64, u64, u64) {
    (
        b.l1d.misses - a.l1d.misses,
        b.l2.misses - a.l2.misses,
        b.llc.misses - a.llc.misses,
    )
}

fn run_point(
    ctx: &RunContext,
    on_engine: bool,
    ws: u64,
    copy: u64,
    iters: u64,
    seed: u64,
) -> Result<Point, RunError> {
    let err = |e: &dyn std::fmt::Display| RunError::Config(e.to_string());
    let sim = ctx.new_sim();
    let (host, drv) = udma_host(&sim, 1, seed)?;
    let warm = 1;
    let c = client(&drv, &host, copy * (iters + warm))?;
    let wset = c.process.mmap(ws, false).map_err(|e| err(&e))?;
    let mut q =
        UdmaQueue::new(&c.process, c.thread.ctx.clone(), c.portal, 4).map_err(|e| err(&e))?;
    let mem = host.machine().memory().clone();
    let out = Rc::new(RefCell::new(Err::<Point, String>("not run".into())));
    let o = out.clone();
    let t = c.thread.ctx.clone();
    let (src, dst) = (c.src, c.dst);
    sim.spawn(async move {
        let r: Result<Point, String> = async {
            let e = |x: &dyn std::fmt::Display| x.to_string();
            let mut p = Point::default();
            let mut line = [0u8; 64];
            let pass = |t: &nextio_hw::cpu::CoreCtx, line: &mut [u8; 64]| -> Result<(), String> {
                for off in (0..ws).step_by(64) {
                    t.load(wset.offset(off), line, Category::Application)
                        .map_err(|x| x.to_string())?;
                }
                t.cycles(
                    Category::Application,
                    ws / 64 * costs().work_cycles_per_line,
                );
                Ok(())
            };
            for i in 0..iters + warm {
                let (s, d) = (src.offset(i * copy), dst.offset(i * copy));
                let begin = t.local_now();
                let mut chunks = 0u64;
                if on_engine {
                    // Hand the copy over in ≤ 1 MiB pieces, then work.
                    let mut off = 0;
                    while off < copy {
                        let n = (copy - off).min(1 << 20);
                        let slot = (chunks % 4) as usize;
                        if chunks >= 4 {
                            q.wait(slot).await.map_err(|x| e(&x))?;
                        }
                        q.start(slot, opcode::MEMMOVE, s.0 + off, d.0 + off, n as u32)
                            .await
                            .map_err(|x| e(&x))?;
                        off += n;
                        chunks += 1;
                    }
                }
                t.sync().await;
                let before = mem.borrow().caches.stats(0).copied().unwrap_or_default();
                let pass_start = t.local_now();
                pass(&t, &mut line)?;
                t.sync().await;
                let pass_end = t.local_now();
                let after = mem.borrow().caches.stats(0).copied().unwrap_or_default();
                if on_engine {
                    for k in chunks.saturating_sub(4)..chunks {
                        let r = q.wait((k % 4) as usize).await.map_err(|x| e(&x))?;
                        if r.status() != status::SUCCESS {
                            return Err(format!("copy status {:#x}", r.status()));
                        }
                    }
                } else {
                    cpu_memcpy(&t, d, s, copy).await.map_err(|x| e(&x))?;
                }
                t.sync().await;
                if i >= warm {
                    let (a, b, c) = delta(&before, &after);
                    p.l1d += a as f64;
                    p.l2 += b as f64;
                    p.llc += c as f64;
                    p.pass_us += (pass_end - pass_start).as_us_f64();
                    p.iteration_us += (t.local_now() - begin).as_us_f64();
                }
            }
            let n = iters as f64;
            p.l1d /= n;
            p.l2 /= n;
            p.llc /= n;
            p.pass_us /= n;
            p.iteration_us /= n;
            Ok(p)
        }
        .await;
        *o.borrow_mut() = r;
    });
    sim.run();
    let mut p = out.borrow().clone().map_err(RunError::Config)?;
    let mut got = vec![0u8; 64];
    c.thread
        .ctx
        .peek(VirtAddr(dst.0 + copy * iters), &mut got)
        .map_err(|e| err(&e))?;
    let expect: Vec<u8> = (0..64).map(|i| ((copy * iters + i) % 251) as u8).collect();
    if got != expect {
        return Err(RunError::Config(
            "the last copy's bytes differ from its source".into(),
        ));
    }
    ctx.write_artefacts(&format!("udma-pollution-{on_engine}"), &sim)?;
    sim.shutdown();
    p.tally = SimTally::of(&sim, iters);
    let _ = Duration::ZERO;
    Ok(p)
}

impl Experiment for UdmaPollution {
    fn host(&self) -> &'static str {
        "ice-lake-sp"
    }
    fn name(&self) -> &'static str {
        "udma-pollution"
    }
    fn reproduces(&self) -> &'static str {
        "User-space DMA (Iida & Shinagawa, datacenter tax): an application's cache misses and speed while copies run on the CPU vs on the engine"
    }
    fn about(&self) -> &'static str {
        "One core alternates passes over its working set with copies of fresh buffers, done by the core itself or by the engine while the core works. Reports the working-set pass's demand-load misses at each level, its duration and the iteration time."
    }
    fn paper(&self) -> &'static str {
        "User-space DMA (Iida & Shinagawa)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn checks(&self) -> &'static [CheckSpec] {
        CHECKS
    }
    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError> {
        let ws = ctx.params.u64("working_set_kib") << 10;
        let copy = ctx.params.u64("copy_kib") << 10;
        let iters = ctx.params.u64("iterations");
        let res = ctx.sweep(&[false, true], |i, &e| {
            run_point(ctx, e, ws, copy, iters, ctx.point_seed(i))
        })?;
        let mut series = Series::new(
            "pollution",
            "on_engine",
            &[
                "l1d_misses",
                "l2_misses",
                "llc_misses",
                "pass_us",
                "iteration_us",
            ],
        );
        for (e, p) in [false, true].iter().zip(&res) {
            ctx.record(p.tally);
            series.push(
                json!({"on_engine": *e as u8, "copier": if *e {"engine"} else {"cpu"},
                "l1d_misses": p.l1d, "l2_misses": p.l2, "llc_misses": p.llc,
                "pass_us": p.pass_us, "iteration_us": p.iteration_us}),
            );
        }
        let (cpu, eng) = (res[0], res[1]);
        // A zero denominator cannot happen (a pass takes time); 0 marks it if so.
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let checks = vec![
            CHECKS[0].judge(cpu.l2 - eng.l2),
            CHECKS[1].judge(eng.l2),
            CHECKS[2].judge(ratio(cpu.pass_us, eng.pass_us)),
            CHECKS[3].judge(ratio(cpu.iteration_us, eng.iteration_us)),
        ];
        Ok(Outcome {
            series: vec![series],
            axes: vec![
                Axis::new("on_engine", "copies on the engine (0: on the CPU)"),
                Axis::new("l1d_misses", "working-set L1d demand misses per pass"),
                Axis::new("l2_misses", "working-set L2 demand misses per pass"),
                Axis::new("llc_misses", "working-set LLC demand misses per pass"),
                Axis::new("pass_us", "working-set pass (µs)"),
                Axis::new("iteration_us", "iteration: pass and copy (µs)"),
            ],
            checks,
            notes: vec![
                "The working set fits the L2 (512 KiB of 1.25 MiB by default); a 1 MiB CPU copy streams 2 MiB through L1d and L2 and evicts it, the engine's reads and DDIO writes do not touch the core's private caches.".into(),
                "Engine copies overlap the pass; CPU copies cannot. Compute per line (4 cycles) is an assumption.".into(),
            ],
        })
    }
}
