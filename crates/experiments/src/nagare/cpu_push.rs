//! `nagare-cpu-push` — §4.5: the CPU moving data to a device. Today's way
//! is a doorbell (an MMIO write) after which the device pulls descriptor
//! and data by DMA reads; with Nagare's push primitive in the fabric the
//! CPU issues one MMIO write and the fabric itself reads host memory and
//! pushes the data to the device. The CPU could also write the data
//! itself as MMIO writes into a stream window. And the same primitive
//! copies host memory to host memory. Latency to the data's arrival at
//! the device (or the copy's completion) comes from the fabric's
//! transaction log; the CPU time is what the issuing thread spent.
//!
//! The fabric's engine here is the programmable switch's dataplane one
//! hop below the root complex, not inside the root complex as §4.5
//! proposes: its reads of host memory cross that one link.

use std::cell::RefCell;
use std::rc::Rc;

use nextio_apps::chain::{self, ChainConfig, ChainMode};
use nextio_engine::{Category, Duration, Time};
use nextio_hw::accel::cmdq::Descriptor;
use nextio_hw::accel::ml::OP_CLASSIFY;
use nextio_hw::fabric::txlog::{Party, TxnKind};
use nextio_hw::machine::MachineSpec;
use nextio_hw::nagare::layout::{ENTRY_BYTES, MessageHeader};
use nextio_lib::cmdq::{CmdqCosts, CommandQueue};
use nextio_lib::nagare::{Hop, Nagare, Source, Via};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, Series,
};
use crate::params::{ParamKind, ParamSpec};

pub struct NagareCpuPush;

const PARAMS: &[ParamSpec] = &[ParamSpec::new(
    "sizes",
    ParamKind::U64List,
    "64,128,256,512,1024,2048,4096",
    "bytes",
    "bytes moved, 16 to 4096",
)
.quick("64,1024,4096")
.int(16, 4096)
.items(1, 32)];

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "push-saving",
        "doorbell + DMA reads − fabric push, latency to the device (§4.5: a push avoids round trips; no published value)",
        "ns",
        Origin::Simulated,
    )
    .per_point(),
    CheckSpec::new(
        "mmio-cpu-over-push",
        "CPU time to write the bytes as MMIO writes itself ÷ CPU time of one push command (§4.5: MMIO pushes are expensive for the CPU; no published value)",
        "×",
        Origin::Simulated,
    )
    .per_point(),
];

/// The benchmark's own costs: the root preset's `[apps.nagare_cpu_push]`,
/// where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuPushCosts {
    /// Bytes the CPU's copy loop moves per cycle (the cache model adds the
    /// misses).
    pub memcpy_bytes_per_cycle: u64,
}

/// The root preset's benchmark costs (read once per process).
fn costs() -> &'static CpuPushCosts {
    nextio_presets::cached_root_section!(CpuPushCosts, "apps.nagare_cpu_push")
}

fn cfg_err(e: impl std::fmt::Display) -> RunError {
    RunError::Config(e.to_string())
}

/// What one size measured, in ns.
#[derive(Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Point {
    doorbell_ns: f64,
    push_ns: f64,
    mmio_ns: f64,
    copy_ns: f64,
    memcpy_ns: f64,
    doorbell_cpu_ns: f64,
    push_cpu_ns: f64,
    mmio_cpu_ns: f64,
}

/// Issue times, recorded by the thread, for the log to be read against.
#[derive(Default)]
struct Marks {
    doorbell: Vec<Time>,
    push: Vec<Time>,
    mmio: Vec<Time>,
    copy: Vec<Time>,
    cpu: Vec<[f64; 4]>,
}

fn run_sizes(ctx: &RunContext, sizes: &[u64]) -> Result<Vec<Point>, RunError> {
    let sim = ctx.new_sim();
    let sys = chain::build(
        &sim,
        &ChainConfig::new(MachineSpec::enso_testbed(2), ChainMode::Nagare),
    )
    .map_err(cfg_err)?;
    sim.run();
    let nagare = sys.nagare.clone().ok_or_else(|| cfg_err("no switch"))?;
    let process = sys.host.create_process().map_err(cfg_err)?;
    let thread = process.thread(1).map_err(cfg_err)?;
    let c = thread.ctx.clone();
    let max = *sizes.iter().max().unwrap_or(&64);
    // The data, readable by the classifier (doorbell path) and the
    // switch (push path); results go to a ring the CPU owns.
    let data = process
        .dma_alloc(sys.ml.id, max.max(4096))
        .map_err(cfg_err)?;
    process.dma_share(data, nagare.id).map_err(cfg_err)?;
    let copy_dst = process
        .dma_alloc(nagare.id, max.max(4096))
        .map_err(cfg_err)?;
    let done = process.dma_alloc(nagare.id, 4096).map_err(cfg_err)?;
    let results = process.dma_alloc(nagare.id, 1 << 20).map_err(cfg_err)?;
    let outbuf = process.dma_alloc(sys.ml.id, 4096).map_err(cfg_err)?;
    let mut cq = CommandQueue::open(c.clone(), &process, &sys.ml, 64).map_err(cfg_err)?;
    let mut lib = Nagare::open(c.clone(), &process, nagare.clone()).map_err(cfg_err)?;
    let window = {
        let marks = Rc::new(RefCell::new(Marks::default()));
        let m = marks.clone();
        let s = sim.clone();
        let ml = sys.ml.id;
        let sizes = sizes.to_vec();
        let failed = Rc::new(RefCell::new(None::<String>));
        let f = failed.clone();
        let proc2 = process.clone();
        let window_bytes = nagare.borrow().config().window_bytes;
        let sw_id = nagare.id;
        sim.spawn(async move {
            let res: Result<(), String> = async {
                // A stream from the CPU into the classifier, results to host.
                let hops = [
                    Hop {
                        device: ml,
                        via: Via::Stream,
                        op: OP_CLASSIFY,
                        param: 0,
                        state: [0; 16],
                    },
                    Hop {
                        device: ml,
                        via: Via::Host { ring: results },
                        op: 0,
                        param: 0,
                        state: [0; 16],
                    },
                ];
                let chain = lib
                    .create_chain(Source::Cpu, &hops, &mut |_, _, _| Ok(()))
                    .await
                    .map_err(|e| e.to_string())?;
                let stream = chain.streams[0];
                let window_va = proc2
                    .map_bar(sw_id, 1, stream as u64 * window_bytes, 8192)
                    .map_err(|e| e.to_string())?;
                // The first round warms the caches, TLBs and IOTLB and is
                // not reported.
                let rounds = std::iter::once(sizes[0]).chain(sizes.iter().copied());
                for n in rounds {
                    let bytes: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
                    c.store(data.va, &bytes, Category::Application)
                        .map_err(|e| e.to_string())?;
                    c.sync().await;
                    s.sleep(Duration::from_us(20)).await;
                    // (1) Doorbell and device pulls.
                    c.sync().await;
                    let t0 = c.local_now();
                    cq.submit(Descriptor {
                        op: OP_CLASSIFY,
                        status: 0,
                        state: [0; 16],
                        src: data.iova,
                        src_len: n as u32,
                        dst: outbuf.iova,
                        dst_cap: 64,
                        out_len: 0,
                        param: 0,
                        cookie: n,
                    })
                    .map_err(|e| e.to_string())?;
                    cq.ring_doorbell().await.map_err(|e| e.to_string())?;
                    let cpu_db = (c.local_now() - t0).as_ns_f64();
                    m.borrow_mut().doorbell.push(t0);
                    s.sleep(Duration::from_us(20)).await;
                    while cq.poll().map_err(|e| e.to_string())?.is_some() {}
                    // (2) One MMIO write: the fabric reads and pushes.
                    c.sync().await;
                    let t1 = c.local_now();
                    lib.push(data.iova, n as u32, stream)
                        .await
                        .map_err(|e| e.to_string())?;
                    let cpu_push = (c.local_now() - t1).as_ns_f64();
                    m.borrow_mut().push.push(t1);
                    s.sleep(Duration::from_us(20)).await;
                    // (3) The CPU writes the message itself, 64 B at a time.
                    c.sync().await;
                    let t2 = c.local_now();
                    let msg = MessageHeader::data(n as u32, 1 << 40).message(&bytes);
                    for (k, chunk) in msg.chunks(ENTRY_BYTES).enumerate() {
                        c.cycles(Category::Driver, CmdqCosts::default().doorbell_cycles);
                        c.mmio_write(window_va.offset(k as u64 * 64), chunk, "stream-push")
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    c.sync().await;
                    let cpu_mmio = (c.local_now() - t2).as_ns_f64();
                    m.borrow_mut().mmio.push(t2);
                    s.sleep(Duration::from_us(20)).await;
                    // (4) Host-to-host copy by the fabric, and by the CPU.
                    c.store(done.va, &[0; 8], Category::Application)
                        .map_err(|e| e.to_string())?;
                    c.sync().await;
                    let t3 = c.local_now();
                    lib.copy(data.iova, copy_dst.iova, n as u32, done.iova)
                        .await
                        .map_err(|e| e.to_string())?;
                    m.borrow_mut().copy.push(t3);
                    s.sleep(Duration::from_us(20)).await;
                    c.sync().await;
                    let t4 = c.local_now();
                    let mut buf = vec![0u8; n as usize];
                    c.load(data.va, &mut buf, Category::Application)
                        .map_err(|e| e.to_string())?;
                    c.store(copy_dst.va, &buf, Category::Application)
                        .map_err(|e| e.to_string())?;
                    c.cycles(
                        Category::Application,
                        n.div_ceil(costs().memcpy_bytes_per_cycle.max(1)),
                    );
                    c.sync().await;
                    let memcpy = (c.local_now() - t4).as_ns_f64();
                    m.borrow_mut()
                        .cpu
                        .push([cpu_db, cpu_push, cpu_mmio, memcpy]);
                    s.sleep(Duration::from_us(20)).await;
                }
                Ok(())
            }
            .await;
            if let Err(e) = res {
                *f.borrow_mut() = Some(e);
            }
        });
        sys.host.machine().fabric().record_transactions(true);
        sim.run();
        if let Some(e) = failed.borrow().clone() {
            return Err(RunError::Config(e));
        }
        marks
    };
    let log = sys.host.machine().fabric().transactions();
    let (ml, sw) = (Party::Device(sys.ml.id), Party::Device(nagare.id));
    // The first transaction of `pred` at or after `t`.
    let after = |t: Time, pred: &dyn Fn(&nextio_hw::fabric::txlog::Txn) -> bool| {
        log.iter()
            .find(|x| x.issued >= t && pred(x))
            .map(|x| x.done)
    };
    let m = window.borrow();
    let mut out = Vec::new();
    // Skip the warm-up round (index 0).
    for (k, &n) in sizes.iter().enumerate() {
        let i = k + 1;
        let ns = |t: Time, d: Option<Time>| d.map_or(f64::NAN, |d| (d - t).as_ns_f64());
        let db = m.doorbell[i];
        let data_read = after(db, &|x| {
            x.from == ml && x.kind == TxnKind::Read && x.purpose == "accel-input" && x.bytes == n
        });
        let push = m.push[i];
        let pushed = after(push, &|x| x.from == sw && x.to == ml);
        let mm = m.mmio[i];
        let mm_done = after(mm, &|x| x.from == sw && x.to == ml);
        let cp = m.copy[i];
        let copied = after(cp, &|x| {
            x.from == sw && x.to == Party::Memory && x.bytes == 8
        });
        let cpu = m.cpu[i];
        out.push(Point {
            doorbell_ns: ns(db, data_read),
            push_ns: ns(push, pushed),
            mmio_ns: ns(mm, mm_done),
            copy_ns: ns(cp, copied),
            memcpy_ns: cpu[3],
            doorbell_cpu_ns: cpu[0],
            push_cpu_ns: cpu[1],
            mmio_cpu_ns: cpu[2],
        });
    }
    ctx.finish_sim("nagare-cpu-push", &sim, (sizes.len() as u64 + 1) * 4)?;
    sim.shutdown();
    Ok(out)
}

impl Experiment for NagareCpuPush {
    fn host(&self) -> &'static str {
        "enso-testbed"
    }
    fn name(&self) -> &'static str {
        "nagare-cpu-push"
    }
    fn reproduces(&self) -> &'static str {
        "Ensō/Nagare thesis §4.5: data push from the CPU through the fabric vs doorbell + device DMA read, by size; host-to-host copy"
    }
    fn about(&self) -> &'static str {
        "On the chain host with Nagare, a CPU thread moves n bytes to the classifier three ways — doorbell then the device's descriptor and data reads; one MMIO push command after which the switch reads host memory and pushes; the CPU writing the message itself in 64-byte MMIO writes — and copies n bytes host to host through the switch and by itself. Latency to the data's arrival (from the transaction log) and the issuing thread's time."
    }
    fn paper(&self) -> &'static str {
        "Nagare (thesis §4)"
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn checks(&self) -> &'static [CheckSpec] {
        CHECKS
    }
    fn run(&self, ctx: &RunContext) -> Result<Outcome, RunError> {
        let sizes = ctx.params.u64_list("sizes");
        // One simulation moves every size: the whole run is one shard's.
        let pts = ctx.single(|| run_sizes(ctx, &sizes))?;
        let mut lat = Series::new("to-device", "bytes", &["doorbell_ns", "push_ns", "mmio_ns"]);
        let mut cpu = Series::new(
            "cpu-time",
            "bytes",
            &["doorbell_cpu_ns", "push_cpu_ns", "mmio_cpu_ns"],
        );
        let mut copy = Series::new("copy", "bytes", &["copy_ns", "memcpy_ns"]);
        for (n, p) in sizes.iter().zip(&pts) {
            lat.push(json!({"bytes": n, "doorbell_ns": p.doorbell_ns, "push_ns": p.push_ns, "mmio_ns": p.mmio_ns}));
            cpu.push(json!({"bytes": n, "doorbell_cpu_ns": p.doorbell_cpu_ns, "push_cpu_ns": p.push_cpu_ns, "mmio_cpu_ns": p.mmio_cpu_ns}));
            copy.push(json!({"bytes": n, "copy_ns": p.copy_ns, "memcpy_ns": p.memcpy_ns}));
        }
        let mut checks = Vec::new();
        for (n, p) in sizes.iter().zip(&pts) {
            let at = format!("{n}B");
            checks.push(CHECKS[0].at(&at).judge(p.doorbell_ns - p.push_ns));
            checks.push(
                CHECKS[1]
                    .at(&at)
                    .judge(p.mmio_cpu_ns / p.push_cpu_ns.max(1e-9)),
            );
        }
        Ok(Outcome {
            series: vec![lat, cpu, copy],
            axes: vec![
                Axis::new("bytes", "bytes moved").log(),
                Axis::new("doorbell_ns", "latency to the device (ns)"),
                Axis::new("push_ns", "latency to the device, push (ns)"),
                Axis::new("mmio_ns", "latency to the device, MMIO data (ns)"),
                Axis::new("doorbell_cpu_ns", "issuing thread's time (ns)"),
                Axis::new("push_cpu_ns", "issuing thread's time, push (ns)"),
                Axis::new("mmio_cpu_ns", "issuing thread's time, MMIO data (ns)"),
                Axis::new("copy_ns", "copy completion (ns)"),
                Axis::new("memcpy_ns", "CPU memcpy (ns)"),
            ],
            checks,
            notes: vec![
                "The push engine is the programmable switch's dataplane one link below the root complex; §4.5 puts it in the root complex, which would save that link's flight on the read of host memory (about 200 ns each way in this model) — the push's latency here is an upper bound of the proposal's.".into(),
                "Posted MMIO writes do not stall the core in this model: the CPU time of an MMIO push is its per-store cost (a 30-cycle fence-and-store, an assumption shared with the drivers) times the 64-byte writes, not a wait.".into(),
                "The CPU's own copy is timed by the cache model (the source is hot in the cache right after the CPU wrote it); the fabric's copy reads host memory and writes it back across the switch link, then writes the completion flag.".into(),
            ],
        })
    }
}
