//! `udma-cross-space` — inter-process communication by an engine copy
//! between two address spaces, against a pipe and shared memory. The
//! sender (core 0) hands each message to the receiver (core 1), which
//! spins on the message's trailing sequence word and consumes it:
//!
//! * **engine**: the receiver granted the sender a write capability for
//!   its receive buffer; the sender submits one batch — the message's
//!   copy, then, fenced, its sequence word's — whose destinations are
//!   named by the capability (no system call, one copy, by the engine;
//!   the fence is needed because an engine does not order one copy's
//!   writes);
//! * **pipe**: `write` copies the message into a kernel buffer (a system
//!   call, a CPU copy through the caches), `read` copies it out (a system
//!   call, a wake-up, a second CPU copy);
//! * **shared memory**: the sender copies the message into a region both
//!   map; the receiver reads it there.
//!
//! Messages go one at a time (the next starts when the receiver has
//! consumed the last, through an unmodelled channel). Reports latency per
//! message and each side's core time that is not waiting. Model only: the
//! paper gives no numbers.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use nextio_engine::{Category, Duration, Notify};
use nextio_hw::cpu::CoreCtx;
use nextio_hw::devices::udma::layout::{Descriptor, flags, opcode, status};
use nextio_hw::mem::VirtAddr;
use nextio_hw::memory::Privilege;
use nextio_lib::udma::{UdmaQueue, cpu_memcpy, descriptor};
use nextio_os::OsCosts;
use nextio_os::kernel::DIRECT_MAP_BASE;
use serde_json::json;

use crate::experiment::{
    Axis, CheckSpec, Experiment, Origin, Outcome, RunContext, RunError, Series, SimTally,
};
use crate::params::{ParamKind, ParamSpec};
use crate::udma_common::{busy, udma_host};

pub struct UdmaCrossSpace;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "sizes",
        ParamKind::U64List,
        "64,4096,65536",
        "B",
        "message sizes, 1 B to 1 MiB",
    )
    .int(1, 1 << 20)
    .items(1, 16),
    ParamSpec::new(
        "messages",
        ParamKind::U64,
        "50",
        "messages",
        "messages per point, 1 to 100000",
    )
    .quick("10")
    .int(1, 100_000),
];

const CHECKS: &[CheckSpec] = &[
    CheckSpec::new(
        "pipe-over-engine-latency",
        "pipe ÷ engine latency per message, the largest size",
        "×",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "shm-over-engine-latency",
        "shared memory ÷ engine latency per message, the largest size",
        "×",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "engine-sender-busy",
        "sender core time per message with the engine, the largest size",
        "ns",
        Origin::Simulated,
    ),
    CheckSpec::new(
        "pipe-sender-busy",
        "sender core time per message with a pipe, the largest size",
        "ns",
        Origin::Simulated,
    ),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ipc {
    Engine,
    Pipe,
    Shm,
}
const IPCS: [(Ipc, &str); 3] = [
    (Ipc::Engine, "engine"),
    (Ipc::Pipe, "pipe"),
    (Ipc::Shm, "shared-memory"),
];

#[derive(Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
struct Point {
    latency_us: f64,
    sender_ns: f64,
    receiver_ns: f64,
    tally: SimTally,
}

/// Run `f` with `ctx`'s core in the kernel's address space (a system
/// call with separate kernel page tables), then return to `back`.
fn in_kernel<T>(ctx: &CoreCtx, kernel: nextio_hw::mem::AddressSpace, f: impl FnOnce() -> T) -> T {
    let back = ctx.core().space();
    ctx.core().set_space(kernel, Privilege::Kernel);
    let r = f();
    if let Some((s, p)) = back {
        ctx.core().set_space(s, p);
    }
    r
}

fn run_point(
    ctx: &RunContext,
    ipc: Ipc,
    size: u64,
    messages: u64,
    seed: u64,
) -> Result<Point, RunError> {
    let err = |e: &dyn std::fmt::Display| RunError::Config(e.to_string());
    let sim = ctx.new_sim();
    let (host, drv) = udma_host(&sim, 2, seed)?;
    let os = OsCosts::default();
    let snd = host.create_process().map_err(|e| err(&e))?;
    let rcv = host.create_process().map_err(|e| err(&e))?;
    let portal = drv.open_dedicated(&snd, 0).map_err(|e| err(&e))?;
    let st = snd.thread(0).map_err(|e| err(&e))?;
    let rt = rcv.thread(1).map_err(|e| err(&e))?;
    let len = size + 8; // the message and its sequence word
    let msg = snd.mmap(len, false).map_err(|e| err(&e))?;
    let rbuf = rcv.mmap(len, false).map_err(|e| err(&e))?;
    // Where the receiver polls and reads: its buffer, the shared region,
    // or the pipe's kernel buffer (through the kernel's direct map).
    let (shared_s, shared_r) = {
        let s = snd.mmap(len, false).map_err(|e| err(&e))?;
        let r = host
            .kernel()
            .borrow_mut()
            .share_mapping(snd.pid(), s, len, rcv.pid())
            .map_err(|e| err(&e))?;
        (s, r)
    };
    let kbuf_pa = host
        .machine()
        .memory()
        .borrow_mut()
        .phys
        .alloc(len.div_ceil(4096) * 4096, 4096)
        .map_err(|e| err(&e))?
        .base;
    let kbuf = VirtAddr(DIRECT_MAP_BASE + kbuf_pa.0);
    let kspace = host.kernel().borrow().kernel_space();
    let cap = drv
        .grant(&rcv, &snd, rbuf, len, false, true)
        .map_err(|e| err(&e))?;
    let payload: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    st.ctx.poke(msg, &payload).map_err(|e| err(&e))?;
    let mut q = UdmaQueue::new(&snd, st.ctx.clone(), portal, 1).map_err(|e| err(&e))?;
    // Kernel-side translations of the user buffers, for the pipe's copies.
    let pa_of = |p: &nextio_os::Process, va: VirtAddr| -> Result<VirtAddr, RunError> {
        let k = host.kernel().borrow();
        let space = k.space(p.pid()).map_err(|e| err(&e))?;
        let m = host.machine().memory().borrow();
        let r = m.physical_ranges(&space, va, len).map_err(|e| err(&e))?;
        if r.len() != 1 {
            return Err(err(&"a pipe buffer must be physically contiguous"));
        }
        Ok(VirtAddr(DIRECT_MAP_BASE + r[0].0.0))
    };
    let (msg_k, rbuf_k) = (pa_of(&snd, msg)?, pa_of(&rcv, rbuf)?);
    let (poll_va, poll_space) = match ipc {
        Ipc::Engine => (rbuf, None),
        Ipc::Shm => (shared_r, None),
        Ipc::Pipe => (kbuf, Some(kspace)),
    };
    let rctx = rt.ctx.clone();
    let arrived = match poll_space {
        None => rctx.watch(poll_va.offset(size), 8).map_err(|e| err(&e))?,
        Some(_) => host
            .machine()
            .memory()
            .borrow_mut()
            .watch(kbuf_pa.offset(size), 8),
    };
    let consumed = Rc::new(Notify::new(&sim));
    let done_seq = Rc::new(Cell::new(0u64));
    let result = Rc::new(RefCell::new(Err::<Point, String>("not run".into())));
    let starts = Rc::new(RefCell::new(Vec::new()));
    let lats = Rc::new(RefCell::new(Vec::new()));
    let sbusy = Rc::new(Cell::new(Duration::ZERO));
    {
        // The sender.
        let (t, c, d, s, sb) = (
            st.ctx.clone(),
            consumed.clone(),
            done_seq.clone(),
            starts.clone(),
            sbusy.clone(),
        );
        let core = host
            .machine()
            .core(0)
            .cloned()
            .ok_or_else(|| err(&"core"))?;
        let errs = result.clone();
        sim.spawn(async move {
            let r: Result<(), String> = async {
                let e = |x: &dyn std::fmt::Display| x.to_string();
                let b0 = busy(&core.ledger_at(t.local_now()));
                for seq in 1..=messages {
                    t.sync().await;
                    s.borrow_mut().push(t.local_now());
                    t.store_u64(msg.offset(size), seq, Category::Application)
                        .map_err(|x| e(&x))?;
                    match ipc {
                        Ipc::Engine => {
                            // A batch: the message, then — fenced, so it
                            // lands after — its sequence word (an engine
                            // does not order the writes of one copy).
                            let member = |src: u64, dst_off: u64, n: u64, fl: u32| {
                                let mut d =
                                    descriptor(opcode::MEMMOVE, 0, src, dst_off, n as u32, 0);
                                let mut v =
                                    Descriptor::new(&mut d[..]).unwrap_or_else(|| unreachable!());
                                v.set_op(opcode::MEMMOVE, fl | flags::DST_CAP);
                                v.set_dst_cap(cap);
                                d
                            };
                            let batch = [
                                member(msg.0, 0, size, 0),
                                member(msg.0 + size, size, 8, flags::FENCE),
                            ];
                            q.batch(0, &batch).await.map_err(|x| e(&x))?;
                            let r = q.wait(0).await.map_err(|x| e(&x))?;
                            if r.status() != status::SUCCESS {
                                return Err(format!("engine status {:#x}", r.status()));
                            }
                        }
                        Ipc::Shm => cpu_memcpy(&t, shared_s, msg, len)
                            .await
                            .map_err(|x| e(&x))?,
                        Ipc::Pipe => {
                            t.cycles(Category::Kernel, os.syscall_cycles + os.wakeup_cycles);
                            let copy = in_kernel(&t, kspace, || {
                                let mut buf = vec![0u8; len as usize];
                                t.load(msg_k, &mut buf, Category::Kernel)?;
                                t.store(kbuf, &buf, Category::Kernel)
                            });
                            copy.map_err(|x| e(&x))?;
                            t.cycles(Category::Kernel, len.div_ceil(32));
                            t.sync().await;
                        }
                    }
                    // Wait (unmodelled channel) until the receiver has it.
                    while d.get() < seq {
                        c.notified().await;
                    }
                }
                sb.set(busy(&core.ledger_at(t.local_now())).saturating_sub(b0));
                Ok(())
            }
            .await;
            if let Err(x) = r {
                *errs.borrow_mut() = Err(x);
            }
        });
    }
    let rbusy = Rc::new(Cell::new(Duration::ZERO));
    {
        // The receiver.
        let (t, c, d, l, s, rb) = (
            rctx.clone(),
            consumed.clone(),
            done_seq.clone(),
            lats.clone(),
            starts.clone(),
            rbusy.clone(),
        );
        let core = host
            .machine()
            .core(1)
            .cloned()
            .ok_or_else(|| err(&"core"))?;
        let mem = host.machine().memory().clone();
        let errs = result.clone();
        sim.spawn(async move {
            let r: Result<(), String> = async {
                let e = |x: &dyn std::fmt::Display| x.to_string();
                let b0 = busy(&core.ledger_at(t.local_now()));
                for seq in 1..=messages {
                    let seen = || match poll_space {
                        None => {
                            let mut b = [0u8; 8];
                            t.peek(poll_va.offset(size), &mut b).is_ok()
                                && u64::from_le_bytes(b) >= seq
                        }
                        Some(_) => mem
                            .borrow()
                            .phys
                            .read_u64(kbuf_pa.offset(size))
                            .is_ok_and(|v| v >= seq),
                    };
                    t.spin_until(&arrived, seen).await;
                    let mut buf = vec![0u8; len as usize];
                    match ipc {
                        Ipc::Engine | Ipc::Shm => t
                            .load(poll_va, &mut buf, Category::Application)
                            .map_err(|x| e(&x))?,
                        Ipc::Pipe => {
                            t.cycles(
                                Category::Kernel,
                                os.syscall_cycles + os.context_switch_cycles,
                            );
                            let copy = in_kernel(&t, kspace, || {
                                t.load(kbuf, &mut buf, Category::Kernel)?;
                                t.store(rbuf_k, &buf, Category::Kernel)
                            });
                            copy.map_err(|x| e(&x))?;
                            t.cycles(Category::Kernel, len.div_ceil(32));
                        }
                    }
                    t.cycles(Category::Application, len.div_ceil(32));
                    t.sync().await;
                    if buf[..size as usize] != payload[..] {
                        let at = buf.iter().zip(&payload).position(|(a, b)| a != b);
                        return Err(format!(
                            "{ipc:?} {size} B: message {seq} differs at byte {at:?}"
                        ));
                    }
                    let start = s
                        .borrow()
                        .get(seq as usize - 1)
                        .copied()
                        .unwrap_or_default();
                    l.borrow_mut().push(t.local_now() - start);
                    d.set(seq);
                    c.notify();
                }
                rb.set(busy(&core.ledger_at(t.local_now())).saturating_sub(b0));
                Ok(())
            }
            .await;
            if let Err(x) = r {
                *errs.borrow_mut() = Err(x);
            }
        });
    }
    sim.run();
    if let Err(e) = result.borrow().clone()
        && e != "not run"
    {
        return Err(RunError::Config(e));
    }
    let lats = lats.borrow();
    if lats.len() as u64 != messages {
        return Err(RunError::Config(format!(
            "{ipc:?}: {} of {messages} messages arrived",
            lats.len()
        )));
    }
    ctx.write_artefacts(&format!("udma-cross-space-{ipc:?}-{size}"), &sim)?;
    sim.shutdown();
    let n = messages as f64;
    Ok(Point {
        latency_us: lats.iter().map(|d| d.as_us_f64()).sum::<f64>() / n,
        sender_ns: sbusy.get().as_ns_f64() / n,
        receiver_ns: rbusy.get().as_ns_f64() / n,
        tally: SimTally::of(&sim, messages),
    })
}

impl Experiment for UdmaCrossSpace {
    fn host(&self) -> &'static str {
        "ice-lake-sp"
    }
    fn name(&self) -> &'static str {
        "udma-cross-space"
    }
    fn reproduces(&self) -> &'static str {
        "User-space DMA (Iida & Shinagawa) G2: IPC by an engine copy across address spaces with a capability, vs a pipe and shared memory"
    }
    fn about(&self) -> &'static str {
        "A sender process passes messages to a receiver process on another core: by one engine copy into the receiver's buffer through a write capability the receiver granted, by a pipe (two system calls and two CPU copies through a kernel buffer), or through shared memory (one CPU copy in, read in place). Reports latency per message and each side's non-waiting core time."
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
        let messages = ctx.params.u64("messages");
        let points: Vec<(usize, u64)> = (0..IPCS.len())
            .flat_map(|k| sizes.iter().map(move |s| (k, *s)))
            .collect();
        let res = ctx.sweep(&points, |i, &(k, s)| {
            run_point(ctx, IPCS[k].0, s, messages, ctx.point_seed(i))
        })?;
        let mut series: Vec<Series> = IPCS
            .iter()
            .map(|(_, n)| {
                Series::new(
                    *n,
                    "size_bytes",
                    &["latency_us", "sender_busy_ns", "receiver_busy_ns"],
                )
            })
            .collect();
        let mut get = std::collections::BTreeMap::new();
        for ((k, s), p) in points.iter().zip(&res) {
            ctx.record(p.tally);
            get.insert((*k, *s), *p);
            series[*k].push(json!({"size_bytes": s, "latency_us": p.latency_us,
                "sender_busy_ns": p.sender_ns, "receiver_busy_ns": p.receiver_ns}));
        }
        let big = *sizes.iter().max().unwrap_or(&0);
        let mut checks = Vec::new();
        if let (Some(e), Some(p), Some(s)) =
            (get.get(&(0, big)), get.get(&(1, big)), get.get(&(2, big)))
        {
            checks.push(CHECKS[0].judge(p.latency_us / e.latency_us));
            checks.push(CHECKS[1].judge(s.latency_us / e.latency_us));
            checks.push(CHECKS[2].judge(e.sender_ns));
            checks.push(CHECKS[3].judge(p.sender_ns));
        }
        Ok(Outcome {
            series,
            axes: vec![
                Axis::new("size_bytes", "message size (B)").log(),
                Axis::new("latency_us", "latency per message (µs)").log(),
                Axis::new("sender_busy_ns", "sender core time per message (ns)").log(),
                Axis::new("receiver_busy_ns", "receiver core time per message (ns)").log(),
            ],
            checks,
            notes: vec![
                "The pipe's kernel copies run in the kernel's address space through its direct map (separate kernel page tables), each a CPU copy through the cache model at 32 B/cycle (assumption) plus stalls; its system calls, wake-up and context switch are OsCosts' (assumptions).".into(),
                "The engine path's capability is checked by the engine when the copy starts; the receiver granted write access to its buffer only.".into(),
                "Messages are sent one at a time; the sender learns that the receiver consumed one through an unmodelled, free channel, so latencies do not include a reply.".into(),
            ],
        })
    }
}
