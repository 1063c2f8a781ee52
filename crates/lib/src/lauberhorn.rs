//! The user-level side of Lauberhorn: a process's RPC runtime. It
//! registers the process's procedures with the kernel (which installs
//! them in the NIC's endpoint table with a code pointer into the
//! process's text), and runs the user loop (§6 ①) on the process's own
//! channel: a load that returns the code pointer and native arguments of
//! the next request, a jump to the handler, the result written back into
//! the same control line, the next load on the other line — no system
//! call, no copy, no unmarshalling on the core. YIELDNOW ends the loop
//! (the kernel takes the core back); TRYAGAIN just loads again.
//!
//! A handler computes on its decoded arguments and returns results, or
//! makes a nested call (its reply is delivered later to the procedure's
//! continuation, on whichever core the NIC picks).
//!
//! Invariant: a request is answered in the line it arrived in, exactly
//! once; a handler only ever sees requests for its own endpoints (the NIC
//! dispatched by code pointer, the runtime checks it).

use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use nextio_engine::{Category, Counters};
use nextio_hw::cpu::CoreCtx;
use nextio_hw::nic::lauberhorn::layout::{RxKind, TxKind, decode_native, encode_native};
use nextio_hw::nic::lauberhorn::rx_stat;
use nextio_hw::oncrpc::{AcceptStat, Signature, XdrValue};
use nextio_os::Process;
use nextio_os::lauberhorn::{
    ChannelIo, Delivery, LauberhornOs, LauberhornOsError, LocalFuture, LoopExit, RpcProcess,
    ServiceEndpoint, Step,
};

/// What a handler decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Reply with these results.
    Reply(Vec<XdrValue>),
    /// Call destination `dest` with these arguments; the reply goes to the
    /// procedure's continuation, which produces the results.
    Call { dest: u16, args: Vec<XdrValue> },
    /// Fail the call with this status.
    Error(AcceptStat),
}

/// A handler: the core it runs on and its decoded arguments.
pub type HandlerFn = Rc<dyn for<'a> Fn(&'a CoreCtx, Vec<XdrValue>) -> LocalFuture<'a, Outcome>>;

/// One procedure a process serves.
#[derive(Clone)]
pub struct Procedure {
    pub prog: u32,
    pub vers: u32,
    pub proc_: u32,
    pub args: Signature,
    pub results: Signature,
    pub handler: HandlerFn,
    /// Runs on the reply of the handler's nested call, if it makes one,
    /// with the nested procedure's results (of types `nested_results`).
    pub continuation: Option<HandlerFn>,
    pub nested_results: Signature,
}

/// The runtime's own instruction costs, in core cycles: the root preset's
/// `[lauberhorn_lib]`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeCosts {
    /// Read the control line's kind and jump through its code pointer.
    pub dispatch_cycles: u64,
    /// Write the result header.
    pub result_cycles: u64,
}

impl Default for RuntimeCosts {
    /// The root preset's `[lauberhorn_lib]`.
    fn default() -> Self {
        nextio_presets::root_section("lauberhorn_lib")
    }
}

struct Entry {
    proc_: Procedure,
}

/// A process's Lauberhorn runtime.
pub struct RpcServer {
    os: LauberhornOs,
    by_code: BTreeMap<u64, Entry>,
    channels: RefCell<Vec<ChannelIo>>,
    costs: RuntimeCosts,
    counters: RefCell<Counters>,
    /// Looped-back messages received (for loopback benchmarks).
    messages: RefCell<Vec<Vec<u8>>>,
    /// Whether the process stays in its user loop after a request the
    /// kernel dispatched (§6 ①); off, every request takes the kernel path.
    stay_in_user_loop: std::cell::Cell<bool>,
}

/// Bytes of text each procedure's code pointer is given.
const CODE_STRIDE: u64 = 64;

impl RpcServer {
    /// Register `process` and its `procedures` with the NIC through the
    /// kernel, and return its runtime (the kernel dispatch threads start
    /// it on demand).
    pub fn register(
        os: &LauberhornOs,
        process: &Process,
        procedures: Vec<Procedure>,
        costs: RuntimeCosts,
    ) -> Result<Rc<RpcServer>, LauberhornOsError> {
        let text_len = (procedures.len() as u64 * CODE_STRIDE).max(4096);
        let text = process.mmap(text_len, false)?;
        let mut by_code = BTreeMap::new();
        for (i, p) in procedures.into_iter().enumerate() {
            by_code.insert(text.0 + i as u64 * CODE_STRIDE, Entry { proc_: p });
        }
        let server = Rc::new(RpcServer {
            os: os.clone(),
            by_code,
            channels: RefCell::new(Vec::new()),
            costs,
            counters: RefCell::new(Counters::new()),
            messages: RefCell::new(Vec::new()),
            stay_in_user_loop: std::cell::Cell::new(true),
        });
        let reg = os.register_process(process, server.clone(), (text, text_len))?;
        for (&code, e) in &server.by_code {
            let p = &e.proc_;
            os.register_endpoint(
                reg.pid,
                ServiceEndpoint {
                    prog: p.prog,
                    vers: p.vers,
                    proc_: p.proc_,
                    code,
                    data: 0,
                    args: p.args.clone(),
                    results: p.results.clone(),
                },
            )?;
        }
        *server.channels.borrow_mut() = reg.channels;
        Ok(server)
    }

    pub fn counters(&self) -> Counters {
        self.counters.borrow().clone()
    }
    /// Stay in the user loop after a kernel-dispatched request (the
    /// default), or give the core back at once so that every request
    /// takes the kernel's dispatch path.
    pub fn set_user_loop(&self, on: bool) {
        self.stay_in_user_loop.set(on);
    }
    /// Messages looped back to this process so far.
    pub fn take_messages(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.messages.borrow_mut())
    }
    /// This process's channel on `core` (to send through it).
    pub fn channel(&self, core: usize) -> Option<ChannelIo> {
        self.channels.borrow().get(core).cloned()
    }

    /// Run the request or continuation `d` on `ctx`: find its procedure by
    /// code pointer, decode nothing (the NIC did), call it, and encode its
    /// outcome as the native result the NIC will marshal.
    async fn run(&self, ctx: &CoreCtx, d: &Delivery, core: usize) -> (u8, Vec<u8>) {
        let meter = self.os.meter();
        let t0 = ctx.local_now();
        ctx.cycles(Category::Driver, self.costs.dispatch_cycles);
        let Some(e) = self.by_code.get(&d.hdr.code) else {
            self.counters.borrow_mut().inc("drop.unknown_code");
            return (AcceptStat::SystemErr as u8, Vec::new());
        };
        let p = &e.proc_;
        let f = match d.kind {
            RxKind::Reply => p.continuation.clone(),
            _ => Some(p.handler.clone()),
        };
        let sig = match d.kind {
            RxKind::Reply => &p.nested_results,
            _ => &p.args,
        };
        let args = decode_native(&d.args, sig);
        let (Some(f), Some(args)) = (f, args) else {
            self.counters.borrow_mut().inc("drop.bad_delivery");
            return (AcceptStat::GarbageArgs as u8, Vec::new());
        };
        if let Some(m) = &meter {
            m.charge(Step::Jump, t0, ctx.local_now());
        }
        let outcome = f(ctx, args).await;
        ctx.cycles(Category::Driver, self.costs.result_cycles);
        match outcome {
            Outcome::Reply(v) => {
                self.counters.borrow_mut().inc("served");
                (AcceptStat::Success as u8, encode_native(&v))
            }
            Outcome::Error(s) => (s as u8, Vec::new()),
            Outcome::Call { dest, args } => {
                self.counters.borrow_mut().inc("nested_calls");
                let ch = self.channels.borrow().get(core).cloned();
                let Some(mut ch) = ch else {
                    return (AcceptStat::SystemErr as u8, Vec::new());
                };
                let payload = encode_native(&args);
                let sent = ch
                    .send(
                        ctx,
                        TxKind::Call,
                        dest,
                        d.hdr.seq as u64,
                        &payload,
                        Category::Driver,
                    )
                    .await;
                if let Some(slot) = self.channels.borrow_mut().get_mut(core) {
                    *slot = ch;
                }
                if sent.is_err() {
                    return (AcceptStat::SystemErr as u8, Vec::new());
                }
                (rx_stat::DEFERRED, Vec::new())
            }
        }
    }
}

impl RpcProcess for RpcServer {
    fn handle<'a>(&'a self, ctx: &'a CoreCtx, d: &'a Delivery) -> LocalFuture<'a, (u8, Vec<u8>)> {
        Box::pin(async move {
            let core = ctx.core().id();
            self.counters.borrow_mut().inc("kernel_dispatched");
            self.run(ctx, d, core).await
        })
    }

    fn user_loop<'a>(&'a self, ctx: &'a CoreCtx, core: usize) -> LocalFuture<'a, LoopExit> {
        Box::pin(async move {
            if !self.stay_in_user_loop.get() {
                return LoopExit::Yield;
            }
            loop {
                let ch = self.channels.borrow().get(core).cloned();
                let Some(mut ch) = ch else {
                    return LoopExit::Failed;
                };
                let got = ch.receive(ctx, Category::Polling, Category::Driver).await;
                if let Some(slot) = self.channels.borrow_mut().get_mut(core) {
                    *slot = ch.clone();
                }
                let d = match got {
                    Ok(d) => d,
                    Err(_) => return LoopExit::Failed,
                };
                match d.kind {
                    RxKind::TryAgain => {
                        self.counters.borrow_mut().inc("tryagain");
                    }
                    RxKind::YieldNow | RxKind::Retire => {
                        self.counters.borrow_mut().inc("yields");
                        return LoopExit::Yield;
                    }
                    RxKind::Message => {
                        self.messages.borrow_mut().push(d.args.clone());
                    }
                    RxKind::Request | RxKind::Reply => {
                        let (stat, result) = self.run(ctx, &d, core).await;
                        let ch = self.channels.borrow().get(core).cloned();
                        let Some(ch) = ch else {
                            return LoopExit::Failed;
                        };
                        if ch
                            .write_result(ctx, &d, stat, &result, Category::Driver)
                            .await
                            .is_err()
                        {
                            return LoopExit::Failed;
                        }
                        if let Some(m) = self.os.meter() {
                            m.rpc_done();
                        }
                    }
                    RxKind::Result => return LoopExit::Failed,
                }
            }
        })
    }
}

/// A convenient handler: pure computation on the arguments costing
/// `cycles`, then `f`'s results.
pub fn compute_handler(cycles: u64, f: impl Fn(&[XdrValue]) -> Outcome + 'static) -> HandlerFn {
    let f = Rc::new(f);
    Rc::new(move |ctx: &CoreCtx, args: Vec<XdrValue>| {
        let f = f.clone();
        Box::pin(async move {
            ctx.compute(Category::Application, cycles).await;
            f(&args)
        })
    })
}

/// The address a procedure's text starts at, for tests that attack it.
pub fn code_pointers(server: &RpcServer) -> Vec<u64> {
    server.by_code.keys().copied().collect()
}
