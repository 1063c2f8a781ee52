//! The per-core loop of an RPC core (§6, Fig. 5): the kernel-mode
//! dispatch thread polls the core's kernel channel; a request for any
//! process makes it switch to that process, deliver the request in
//! software and run its handler, then return to user mode into the
//! process's own loop, which polls the process's channel with no kernel
//! involvement until the NIC says YIELDNOW. TRYAGAIN is where the kernel
//! thread calls the scheduler; RETIRE hands the core to other work until
//! the NIC's interrupt wants it back (the call-back's delivery priced by
//! the pipeline model: a flush for the kernel's interrupt, tracked for
//! xUI's).

use std::rc::Rc;

use nextio_engine::Category;
use nextio_hw::interrupt::pipeline::{CoreParams, Route, Strategy, UcodeCosts, delivery_cost};
use nextio_hw::memory::Privilege;
use nextio_hw::nic::lauberhorn::layout::RxKind;
use nextio_hw::nic::lauberhorn::regs;
use nextio_hw::oncrpc::AcceptStat;

use super::channel::ChannelIo;
use super::steps::Step;
use super::{Callback, CallbackSignal, Inner, LoopExit};

pub(super) async fn core_loop(os: Rc<Inner>, core: usize) {
    let machine = os.host.machine();
    let Some(ctx) = machine.ctx(core) else { return };
    let kspace = os.host.kernel().borrow().kernel_space();
    let mut kch = ChannelIo::new(os.coh.clone(), os.layout, os.kernel_channels[core], None);
    let c = machine.core(core).expect("a core of the host").clone();
    c.set_space(kspace, Privilege::Kernel);
    if os
        .reg_write(&ctx, regs::core_ctrl(core), regs::ONLINE)
        .await
        .is_err()
    {
        return;
    }
    let os_costs = os.host.kernel().borrow().costs;
    loop {
        c.set_space(kspace, Privilege::Kernel);
        let d = match kch.receive(&ctx, Category::Polling, Category::Kernel).await {
            Ok(d) => d,
            Err(_) => {
                os.counters.borrow_mut().inc("kernel.channel_errors");
                continue;
            }
        };
        if os.cores[core].irq.replace(false) {
            // A preemption or a stray wake: the interrupt entry and exit.
            os.cores[core].line.take();
            ctx.cycles(Category::Interrupt, os_costs.irq_cycles);
        }
        match d.kind {
            RxKind::TryAgain | RxKind::YieldNow => {
                ctx.cycles(Category::Kernel, os.costs.tryagain_cycles);
                if os.stop.get() {
                    return;
                }
            }
            RxKind::Retire => {
                os.counters.borrow_mut().inc("kernel.retired");
                retired(&os, &ctx, core).await;
                c.set_space(kspace, Privilege::Kernel);
                if os
                    .reg_write(&ctx, regs::core_ctrl(core), regs::ONLINE)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            RxKind::Message | RxKind::Result => {
                os.counters.borrow_mut().inc("kernel.stray_messages");
            }
            RxKind::Request | RxKind::Reply => {
                let meter = os.meter.borrow().clone();
                let t0 = ctx.local_now();
                ctx.cycles(Category::Kernel, os.costs.kernel_dispatch_cycles);
                let slot = d.hdr.slot as usize;
                let target = os
                    .slots
                    .borrow()
                    .get(slot)
                    .and_then(|s| s.as_ref())
                    .map(|s| (s.service.clone(), s.threads.get(core).copied(), s.pid));
                let Some((service, Some(tid), pid)) = target else {
                    os.counters.borrow_mut().inc("kernel.no_process");
                    let _ = kch
                        .write_result(&ctx, &d, AcceptStat::SystemErr as u8, &[], Category::Kernel)
                        .await;
                    continue;
                };
                let t1 = ctx.local_now();
                // Schedule the process here and switch to it.
                let now_cycles = c
                    .freq()
                    .duration_to_cycles(ctx.local_now() - nextio_engine::Time::ZERO);
                let switch = {
                    let mut k = os.host.kernel().borrow_mut();
                    let _ = k.wake(tid);
                    k.run_thread(core, tid, now_cycles)
                };
                let Ok(switch) = switch else {
                    os.counters.borrow_mut().inc("kernel.switch_failed");
                    continue;
                };
                ctx.cycles(Category::ContextSwitch, switch);
                let t2 = ctx.local_now();
                let _ = os
                    .reg_write(&ctx, regs::running(core), slot as u32 + 1)
                    .await;
                // Deliver the unmarshalled request in software.
                let copy = os.costs.copy_fixed_cycles
                    + d.args.len() as u64 / os.costs.copy_bytes_per_cycle.max(1);
                ctx.cycles(Category::Kernel, copy);
                let t3 = ctx.local_now();
                if let Some(m) = &meter {
                    m.charge(Step::IdentifyProcess, t0, t1);
                    m.charge(Step::ContextSwitch, t1, t2);
                    m.charge(Step::Unmarshal, t2, t3);
                }
                let (stat, result) = service.handle(&ctx, &d).await;
                // The handler returns its result to the kernel (a system
                // call), which writes it into the kernel channel.
                ctx.cycles(Category::Kernel, os_costs.syscall_cycles);
                c.set_space(kspace, Privilege::Kernel);
                if kch
                    .write_result(&ctx, &d, stat, &result, Category::Kernel)
                    .await
                    .is_err()
                {
                    os.counters.borrow_mut().inc("kernel.result_failed");
                }
                os.counters.borrow_mut().inc("kernel.dispatched");
                if let Some(m) = &meter {
                    m.rpc_done();
                }
                // Back to user mode, into the process's own loop.
                let space = os.host.kernel().borrow().space(pid);
                let Ok(space) = space else { continue };
                c.set_space(space, Privilege::User);
                let exit = service.user_loop(&ctx, core).await;
                if exit == LoopExit::Failed {
                    os.counters.borrow_mut().inc("kernel.user_loop_failed");
                }
                // The loop's system call back into the kernel: the thread
                // blocks and the dispatch thread runs.
                ctx.cycles(Category::Kernel, os_costs.syscall_cycles);
                let _ = os
                    .host
                    .kernel()
                    .borrow_mut()
                    .block_current(core, now_cycles);
                let _ = os.reg_write(&ctx, regs::running(core), 0).await;
            }
        }
    }
}

/// The core does background work until the NIC interrupts it.
async fn retired(os: &Rc<Inner>, ctx: &nextio_hw::cpu::CoreCtx, core: usize) {
    let os_costs = os.host.kernel().borrow().costs;
    let bg = os.background.borrow().clone();
    let c = ctx.core().clone();
    let Some((work, threads)) = bg else {
        // Nothing else to run: the core idles until it is called back.
        ctx.sync().await;
        let st = &os.cores[core];
        ctx.block_until(&st.irq_notify, || st.irq.get()).await;
        st.irq.set(false);
        st.line.take();
        ctx.cycles(Category::Interrupt, os_costs.irq_cycles);
        return;
    };
    let tid = threads[core];
    let now_cycles = c
        .freq()
        .duration_to_cycles(ctx.local_now() - nextio_engine::Time::ZERO);
    let switch = {
        let mut k = os.host.kernel().borrow_mut();
        let _ = k.wake(tid);
        k.run_thread(core, tid, now_cycles)
    };
    if switch.is_err() {
        return;
    }
    ctx.cycles(Category::ContextSwitch, os_costs.context_switch_cycles);
    let st = &os.cores[core];
    while !st.irq.get() {
        work.chunk(ctx, core, &st.line).await;
    }
    st.irq.set(false);
    ctx.sync().await;
    let arrived = st.line.take().unwrap_or_else(|| ctx.local_now());
    // The NIC's message reaches the running background thread: delivery
    // to the first handler instruction, priced by the pipeline model for
    // what the work keeps in flight.
    let (strategy, give_back) = match os.signal.get() {
        // The kernel's handler: entry and exit around it.
        CallbackSignal::Ipi => (Strategy::Flush, os_costs.irq_cycles),
        // The user handler asks for the core to be given back.
        CallbackSignal::XuiTracked => (Strategy::Tracked, os_costs.syscall_cycles),
    };
    let d = delivery_cost(
        &CoreParams::default(),
        &UcodeCosts::default(),
        &work.mix(),
        strategy,
        Route::Direct,
    );
    ctx.cycles(Category::Interrupt, d.latency_cycles);
    let handler = ctx.local_now();
    ctx.cycles(Category::Interrupt, give_back);
    // The switch back to the dispatch thread.
    ctx.cycles(Category::ContextSwitch, os_costs.context_switch_cycles);
    let _ = os
        .host
        .kernel()
        .borrow_mut()
        .block_current(core, now_cycles);
    os.callbacks.borrow_mut().push(Callback {
        core,
        arrived,
        handler,
        back: ctx.local_now(),
    });
}
