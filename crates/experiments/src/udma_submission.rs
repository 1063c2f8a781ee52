//! `udma-submission` — what it costs to hand one copy to the engine, by
//! the way it is submitted: a user-space doorbell (MOVDIR64B to a
//! dedicated queue), ENQCMD to a shared queue (a non-posted write the
//! core waits on), a system call in which the kernel pins, maps, submits
//! and unmaps (one per operation), the kernel offloading its own copy
//! (memory it already has mapped: the prototype's in-kernel `memcpy`),
//! and the CPU copying itself. Reports latency per copy and the core time
//! each path spends that is not waiting (submission overhead).
//!
//! The paper (Iida and Shinagawa) gives no numbers; every check here is
//! model only, its value simulated.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_engine::{Duration, Ledger};
use nextio_hw::devices::udma::layout::status;
use nextio_lib::udma::{KernelPath, UdmaQueue, cpu_memcpy};
use nextio_os::OsCosts;
use nextio_os::udma::{Pinned, UdmaCosts};
use serde_json::json;

use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, Series, SimTally,
};
use crate::params::{ParamKind, ParamSpec};
use crate::udma_common::{busy, client, udma_host};

pub struct UdmaSubmission;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "sizes",
        ParamKind::U64List,
        "64,4096",
        "B",
        "copy sizes, 1 to 4096 B",
    )
    .int(1, 4096)
    .items(1, 16),
    ParamSpec::new(
        "ops",
        ParamKind::U64,
        "200",
        "copies",
        "copies per point, 1 to 100000",
    )
    .quick("40")
    .int(1, 100_000),
];

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "syscall-over-doorbell-latency",
        "latency of a copy (the largest size) by system call ÷ by user doorbell",
        "×",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "syscall-minus-doorbell-busy",
        "core time per copy (the largest size), system call − doorbell: the system call, pinning, mapping and unmapping",
        "ns",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "kernel-internal-latency",
        "the kernel's own offload of a copy (the largest size) of memory it has mapped: no system call, no pinning",
        "µs",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "enqcmd-minus-doorbell-latency",
        "ENQCMD (non-posted: the core waits for the device's answer) − MOVDIR64B latency, the largest size",
        "µs",
        Origin::Simulated,
    ),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    Doorbell,
    Enqcmd,
    Syscall,
    KernelInternal,
    Cpu,
}

const PATHS: [(Path, &str); 5] = [
    (Path::Doorbell, "doorbell"),
    (Path::Enqcmd, "enqcmd"),
    (Path::Syscall, "syscall"),
    (Path::KernelInternal, "kernel-internal"),
    (Path::Cpu, "cpu"),
];

#[derive(serde::Serialize, serde::Deserialize)]
struct Point {
    latency_us: f64,
    busy_ns: f64,
    tally: SimTally,
}

fn run_point(
    ctx: &RunContext,
    path: Path,
    size: u64,
    ops: u64,
    seed: u64,
) -> Result<Point, RunError> {
    let err = |e: &dyn std::fmt::Display| RunError::Config(e.to_string());
    let sim = ctx.new_sim();
    let (host, drv) = udma_host(&sim, 1, seed)?;
    let c = client(&drv, &host, size)?;
    let portal = match path {
        Path::Enqcmd => drv.open_shared(&c.process, 1).map_err(|e| err(&e))?,
        _ => c.portal,
    };
    let mut q = UdmaQueue::new(&c.process, c.thread.ctx.clone(), portal, 1).map_err(|e| err(&e))?;
    let freq_mhz = host.machine().spec().caches.core_clock.hz() / 1_000_000;
    let kernel = KernelPath::new(&drv, 2, OsCosts::default(), UdmaCosts::at_mhz(freq_mhz))
        .map_err(|e| err(&e))?;
    let (ksrc, kdst) = (
        drv.kernel_page().map_err(|e| err(&e))?,
        drv.kernel_page().map_err(|e| err(&e))?,
    );
    host.machine()
        .memory()
        .borrow_mut()
        .phys
        .write(ksrc, &vec![0x5a; size as usize])
        .map_err(|e| err(&e))?;
    let core = host
        .machine()
        .core(0)
        .cloned()
        .ok_or_else(|| err(&"no core 0"))?;
    let out = Rc::new(RefCell::new(Err::<(Duration, Duration), String>(
        "not run".into(),
    )));
    let o = out.clone();
    let t = c.thread.ctx.clone();
    let p = c.process.clone();
    let (src, dst) = (c.src, c.dst);
    sim.spawn(async move {
        let r: Result<(Duration, Duration), String> = async {
            let e = |x: &dyn std::fmt::Display| x.to_string();
            let mut start = (t.local_now(), Ledger::new(t.local_now()));
            for i in 0..ops + 2 {
                if i == 2 {
                    t.sync().await;
                    let now = t.local_now();
                    start = (now, core.ledger_at(now));
                }
                let st = match path {
                    Path::Doorbell | Path::Enqcmd => q
                        .memcpy(dst, src, size as u32)
                        .await
                        .map_err(|x| e(&x))?
                        .status(),
                    Path::Syscall => kernel
                        .memcpy(&t, &p, dst, src, size)
                        .await
                        .map_err(|x| e(&x))?
                        .status(),
                    Path::KernelInternal => kernel
                        .kernel_memcpy(
                            &t,
                            Pinned {
                                iova: kdst.0,
                                len: size,
                            },
                            Pinned {
                                iova: ksrc.0,
                                len: size,
                            },
                        )
                        .await
                        .map_err(|x| e(&x))?
                        .status(),
                    Path::Cpu => {
                        cpu_memcpy(&t, dst, src, size).await.map_err(|x| e(&x))?;
                        status::SUCCESS
                    }
                };
                if st != status::SUCCESS {
                    return Err(format!("status {st:#x}"));
                }
            }
            t.sync().await;
            let end = t.local_now();
            let l = core.ledger_at(end);
            Ok((end - start.0, busy(&l).saturating_sub(busy(&start.1))))
        }
        .await;
        *o.borrow_mut() = r;
    });
    sim.run();
    let (elapsed, busy_time) = out.borrow().clone().map_err(RunError::Config)?;
    ctx.write_artefacts(&format!("udma-submission-{path:?}-{size}"), &sim)?;
    sim.shutdown();
    Ok(Point {
        latency_us: elapsed.as_us_f64() / ops as f64,
        busy_ns: busy_time.as_ns_f64() / ops as f64,
        tally: SimTally::of(&sim, ops),
    })
}

impl Experiment for UdmaSubmission {
    fn host(&self) -> &'static str {
        "ice-lake-sp"
    }
    fn name(&self) -> &'static str {
        "udma-submission"
    }
    fn reproduces(&self) -> &'static str {
        "User-space DMA (Iida & Shinagawa) G1: user doorbell vs ENQCMD vs system call vs in-kernel offload vs CPU"
    }
    fn about(&self) -> &'static str {
        "One process copies small buffers synchronously through each submission path: MOVDIR64B to its dedicated queue, ENQCMD to a shared queue, a system call in which the kernel pins and maps the pages, the kernel's own offload of memory it has mapped, and the CPU. Reports latency per copy and the core's non-waiting time per copy."
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
        let sizes = ctx.params.u64_list("sizes");
        let ops = ctx.params.u64("ops");
        let points: Vec<(usize, u64)> = (0..PATHS.len())
            .flat_map(|k| sizes.iter().map(move |s| (k, *s)))
            .collect();
        let res = ctx.sweep(&points, |i, &(k, s)| {
            run_point(ctx, PATHS[k].0, s, ops, ctx.point_seed(i))
        })?;
        let mut series: Vec<Series> = PATHS
            .iter()
            .map(|(_, n)| Series::new(*n, "size_bytes", &["latency_us", "core_busy_ns"]))
            .collect();
        let mut get = std::collections::BTreeMap::new();
        for ((k, s), p) in points.iter().zip(&res) {
            ctx.record(p.tally);
            get.insert((*k, *s), (p.latency_us, p.busy_ns));
            series[*k].push(
                json!({"size_bytes": s, "latency_us": p.latency_us, "core_busy_ns": p.busy_ns}),
            );
        }
        let mut checks = Vec::new();
        let s = *sizes.iter().max().unwrap_or(&4096);
        if let (Some(d), Some(sys), Some(k), Some(enq)) = (
            get.get(&(0, s)),
            get.get(&(2, s)),
            get.get(&(3, s)),
            get.get(&(1, s)),
        ) {
            checks.push(CHECKS[0].judge(sys.0 / d.0));
            checks.push(CHECKS[1].judge(sys.1 - d.1));
            checks.push(CHECKS[2].judge(k.0));
            checks.push(CHECKS[3].judge(enq.0 - d.0));
        }
        Ok(Outcome {
            series,
            axes: vec![
                Axis::new("size_bytes", "copy size (B)").log(),
                Axis::new("latency_us", "latency per copy (µs)").log(),
                Axis::new("core_busy_ns", "core time per copy, not waiting (ns)").log(),
            ],
            checks,
            notes: vec![
                "The paper reports that offloading the kernel's memset/memcpy to its FPGA engine improves performance, without numbers; all checks are model only.".into(),
                "The system-call path charges a system call (OsCosts), pinning and IOMMU-mapping each page (≈150 ns per page, assumption) and one unmap with IOTLB/ATC invalidation (≈500 ns, assumption), then waits for the engine like the kernel-internal path.".into(),
                "Core busy time counts application, kernel, driver and interrupt time; spinning on the record is waiting and not counted.".into(),
            ],
        })
    }
}
