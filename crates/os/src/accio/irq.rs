//! Accio's interrupt handlers and scheduler hook.
//!
//! * The I/O interrupt (one per core): pop every ready row from the
//!   core's hardware ready queue and make its thread runnable (the
//!   prototype's handler acknowledges all connections in one interrupt,
//!   §7). An idle core then runs the first of them.
//! * The control interrupt: drain the control event queue. A NIC-side
//!   miss refills the row; link down or an engine error reverts every
//!   fast-path connection to the kernel path (the NIC confirms each with
//!   a quiesced event, after which the kernel sends what was left in the
//!   connection's TX ring itself); link up lets the kernel's qdisc run
//!   again; the engine ready again brings the connections back.
//! * The hook: before the scheduler picks from its run queue it reads the
//!   core's `SCHED_READ`, so a ready accelerated thread runs first (§6);
//!   after every switch it tells the table what now runs (`CURRENT`).

use std::rc::{Rc, Weak};

use nextio_engine::Category;
use nextio_hw::accio::regs::{self as ict, EventKind, control, kernel, row, state};
use nextio_hw::accio::ring;
use nextio_hw::accio::table;
use nextio_hw::cpu::CoreCtx;
use nextio_hw::nic::accio::regs::FlowOp;

use super::{AccioError, AccioOs, CONTROL_VECTOR, IO_VECTOR, Inner, Mode};
use crate::irq::IrqHandler;
use crate::kernel::Tid;
use crate::sched::{LocalFuture, SchedHook};

struct IoIrq(Weak<Inner>);
struct ControlIrq(Weak<Inner>);
struct Hook(Weak<Inner>);

impl IrqHandler for IoIrq {
    fn handle<'a>(&'a self, kctx: &'a CoreCtx, core: usize, _v: u8) -> LocalFuture<'a, ()> {
        Box::pin(async move {
            if let Some(i) = self.0.upgrade() {
                let os = AccioOs(i);
                if os.io_interrupt(kctx, core).await.is_err() {
                    os.0.state.borrow_mut().counters.inc("irq_errors");
                }
            }
        })
    }
}

impl IrqHandler for ControlIrq {
    fn handle<'a>(&'a self, kctx: &'a CoreCtx, _core: usize, _v: u8) -> LocalFuture<'a, ()> {
        Box::pin(async move {
            if let Some(i) = self.0.upgrade() {
                let os = AccioOs(i);
                if os.control_interrupt(kctx).await.is_err() {
                    os.0.state.borrow_mut().counters.inc("irq_errors");
                }
            }
        })
    }
}

impl SchedHook for Hook {
    fn pick_first<'a>(&'a self, kctx: &'a CoreCtx, core: usize) -> LocalFuture<'a, Option<Tid>> {
        Box::pin(async move {
            let os = AccioOs(self.0.upgrade()?);
            if !os.has_rows(core) {
                return None;
            }
            let v = os
                .kread(kctx, ict::kernel_reg(core, kernel::SCHED_READ))
                .await
                .ok()?;
            (v >> 63 == 1).then_some(Tid((v & 0xffff_ffff) as usize))
        })
    }

    fn switched_in<'a>(&'a self, kctx: &'a CoreCtx, core: usize, tid: Tid) -> LocalFuture<'a, ()> {
        Box::pin(async move {
            let Some(i) = self.0.upgrade() else { return };
            let os = AccioOs(i);
            if !os.has_rows(core) && !os.owns_rows(tid) {
                return;
            }
            let cur = os.current_of(tid);
            if os
                .kwrite(kctx, ict::kernel_reg(core, kernel::CURRENT), cur)
                .await
                .is_err()
            {
                os.0.state.borrow_mut().counters.inc("irq_errors");
            }
        })
    }
}

impl AccioOs {
    pub(super) fn install_interrupts(&self) -> Result<(), AccioError> {
        for core in 0..self.0.cfg.table.cores {
            self.0
                .irqs
                .register(core, IO_VECTOR, Rc::new(IoIrq(Rc::downgrade(&self.0))))?;
            self.0.irqs.register(
                core,
                CONTROL_VECTOR,
                Rc::new(ControlIrq(Rc::downgrade(&self.0))),
            )?;
        }
        self.0.disp.add_hook(Rc::new(Hook(Rc::downgrade(&self.0))));
        Ok(())
    }

    /// Whether any row is resident on `core`.
    fn has_rows(&self, core: usize) -> bool {
        self.0
            .state
            .borrow()
            .resident
            .range((core, 0)..(core + 1, 0))
            .next()
            .is_some()
    }

    fn owns_rows(&self, tid: Tid) -> bool {
        self.0.state.borrow().conns.values().any(|c| c.tid == tid)
    }

    /// `CURRENT` for `tid`: its address space, and the accelerated bit and
    /// priority if it owns a fast-path connection.
    fn current_of(&self, tid: Tid) -> u64 {
        let st = self.0.state.borrow();
        let mine = st.conns.values().find(|c| c.tid == tid);
        match mine {
            Some(c) => {
                let asid = (table::get(&c.shadow, row::OWNER) & 0xffff) as u16;
                ict::current(asid, c.mode == Mode::Fast, self.0.cfg.priority)
            }
            None => {
                let k = self.0.host.kernel().borrow();
                let asid = k
                    .process_of(tid)
                    .and_then(|p| k.space(p))
                    .map_or(0, |s| s.asid.0);
                ict::current(asid, false, 0)
            }
        }
    }

    async fn io_interrupt(&self, kctx: &CoreCtx, core: usize) -> Result<(), AccioError> {
        kctx.cycles(Category::Interrupt, self.0.cfg.costs.irq_cycles);
        let mut ready = Vec::new();
        loop {
            let v = self
                .kread(kctx, ict::kernel_reg(core, kernel::SCHED_READ))
                .await?;
            if v >> 63 == 0 {
                break;
            }
            ready.push(Tid((v & 0xffff_ffff) as usize));
        }
        self.0
            .state
            .borrow_mut()
            .counters
            .add("irq_wakeups", ready.len() as u64);
        self.0.state.borrow_mut().counters.inc("io_interrupts");
        kctx.sync().await;
        for t in ready {
            self.0.disp.wake(t)?;
        }
        Ok(())
    }

    async fn control_interrupt(&self, kctx: &CoreCtx) -> Result<(), AccioError> {
        kctx.cycles(Category::Interrupt, self.0.cfg.costs.irq_cycles);
        loop {
            let v = self
                .kread(kctx, ict::CONTROL_BASE + control::EVENT_POP)
                .await?;
            let Some(e) = ict::Event::decode(v) else {
                break;
            };
            self.0.state.borrow_mut().counters.inc("control_events");
            let _held = self.0.lock.lock().await;
            match e.kind {
                EventKind::Miss => self.nic_missed(kctx, e.conn).await?,
                EventKind::LinkDown | EventKind::EngineError => {
                    self.0.state.borrow_mut().engine_ready = false;
                    if e.kind == EventKind::LinkDown {
                        self.0.stack.set_carrier(kctx, false).await?;
                    }
                    self.revert_all(kctx).await?;
                }
                EventKind::LinkUp => self.0.stack.set_carrier(kctx, true).await?,
                EventKind::EngineReady => {
                    self.0.state.borrow_mut().engine_ready = true;
                    self.resume_all(kctx).await?;
                }
                EventKind::Quiesced => self.quiesced(kctx, e.conn).await?,
            }
        }
        Ok(())
    }

    /// The NIC found `conn`'s row absent: refill it on its owner's core.
    async fn nic_missed(&self, kctx: &CoreCtx, conn: u32) -> Result<(), AccioError> {
        let who = {
            let st = self.0.state.borrow();
            st.conns.get(&conn).map(|c| (c.tid, c.slot, c.mode))
        };
        let Some((tid, slot, mode)) = who else {
            return Ok(());
        };
        self.0.state.borrow_mut().counters.inc("nic_misses");
        let core = self.0.host.kernel().borrow().home_core(tid)?;
        match slot {
            // Refilled meanwhile by the owner's own miss: let the NIC go on.
            Some((c, _)) => self.nic_cmd(kctx, FlowOp::Retry, c, conn).await,
            None if mode == Mode::Fast => self.install(kctx, conn, core).await,
            None => Ok(()),
        }
    }

    async fn revert_all(&self, kctx: &CoreCtx) -> Result<(), AccioError> {
        let fast: Vec<u32> = self
            .0
            .state
            .borrow()
            .conns
            .iter()
            .filter(|(_, c)| c.mode == Mode::Fast)
            .map(|(k, _)| *k)
            .collect();
        for conn in fast {
            kctx.cycles(Category::Kernel, self.0.cfg.costs.mode_change_cycles);
            let st = self.read_field(kctx, conn, row::STATE).await?;
            let waiter = {
                let mut s = self.0.state.borrow_mut();
                s.counters.inc("reverted");
                let c = s.conns.get_mut(&conn).expect("listed");
                c.mode = Mode::Reverting;
                c.waiting.take()
            };
            let keep = st & !(state::ACCELERATED | state::READY | state::RX_SUSPENDED);
            self.write_field(kctx, conn, row::STATE, keep).await?;
            let core = self.row_core(conn);
            self.nic_cmd(kctx, FlowOp::Fallback, core, conn).await?;
            // A thread asleep on the ring learns of the fallback.
            if let Some(t) = waiter {
                kctx.sync().await;
                self.0.disp.wake(t)?;
            }
        }
        Ok(())
    }

    fn row_core(&self, conn: u32) -> usize {
        let st = self.0.state.borrow();
        st.conns.get(&conn).map_or(0, |c| {
            c.slot
                .map_or(table::get(&c.shadow, row::CPU) as usize, |(core, _)| core)
        })
    }

    /// The NIC is done with `conn`: send what its TX ring still holds by
    /// the kernel path, and take it back if the engine is ready again.
    async fn quiesced(&self, kctx: &CoreCtx, conn: u32) -> Result<(), AccioError> {
        let info = {
            let st = self.0.state.borrow();
            st.conns.get(&conn).map(|c| (c.local, c.remote, c.mode))
        };
        let Some((local, remote, Mode::Reverting)) = info else {
            return Ok(());
        };
        let head = self.read_field(kctx, conn, row::TX_HEAD).await?;
        let tail = self.read_field(kctx, conn, row::TX_TAIL).await?;
        let mut at = head;
        let mut sent = 0u64;
        while at < tail {
            let Some((kva, size)) = self.ring_kva(conn, true, at) else {
                break;
            };
            let mut h = [0u8; ring::HEADER_BYTES as usize];
            kctx.load(kva, &mut h, Category::NetworkStack)
                .map_err(|e| AccioError::Hardware(e.to_string()))?;
            let Some(hdr) = ring::RecordHeader::new(&h[..]) else {
                break;
            };
            if hdr.is_pad() {
                at += size - at % size;
                continue;
            }
            let len = hdr.len() as u64;
            if len == 0 || len > ring::MAX_PAYLOAD_BYTES {
                self.0
                    .state
                    .borrow_mut()
                    .counters
                    .inc("drop.fallback_bad_record");
                break;
            }
            let dst = if hdr.ip().is_unspecified() {
                remote
            } else {
                Some((hdr.ip(), hdr.port()))
            };
            let mut payload = vec![0u8; len as usize];
            kctx.load(
                kva.offset(ring::HEADER_BYTES),
                &mut payload,
                Category::NetworkStack,
            )
            .map_err(|e| AccioError::Hardware(e.to_string()))?;
            match dst {
                Some(dst) => {
                    self.0
                        .stack
                        .send_from_kernel(kctx, local, dst, &payload)
                        .await?;
                    sent += 1;
                }
                None => self
                    .0
                    .state
                    .borrow_mut()
                    .counters
                    .inc("drop.fallback_no_destination"),
            }
            at += ring::record_bytes(len);
        }
        self.write_field(kctx, conn, row::TX_HEAD, tail).await?;
        let (resume, waiter) = {
            let mut st = self.0.state.borrow_mut();
            st.counters.add("fallback_tx_drained", sent);
            let ready = st.engine_ready;
            let c = st.conns.get_mut(&conn).expect("present");
            c.mode = Mode::Fallback;
            (ready, c.waiting.take())
        };
        if let Some(t) = waiter {
            kctx.sync().await;
            self.0.disp.wake(t)?;
        }
        if resume {
            self.resume(kctx, conn).await?;
        }
        Ok(())
    }

    async fn resume_all(&self, kctx: &CoreCtx) -> Result<(), AccioError> {
        let back: Vec<u32> = self
            .0
            .state
            .borrow()
            .conns
            .iter()
            .filter(|(_, c)| c.mode == Mode::Fallback)
            .map(|(k, _)| *k)
            .collect();
        for conn in back {
            self.resume(kctx, conn).await?;
        }
        Ok(())
    }

    async fn resume(&self, kctx: &CoreCtx, conn: u32) -> Result<(), AccioError> {
        kctx.cycles(Category::Kernel, self.0.cfg.costs.mode_change_cycles);
        let mut bits = state::ENABLED | state::ACCELERATED;
        if self.0.cfg.hiprio_irq {
            bits |= state::HIPRIO_IRQ;
        }
        self.write_field(kctx, conn, row::STATE, bits).await?;
        let core = self.row_core(conn);
        self.nic_cmd(kctx, FlowOp::Resume, core, conn).await?;
        let waiter = {
            let mut st = self.0.state.borrow_mut();
            st.counters.inc("resumed");
            let c = st.conns.get_mut(&conn).expect("present");
            c.mode = Mode::Fast;
            c.waiting.take()
        };
        if let Some(t) = waiter {
            kctx.sync().await;
            self.0.disp.wake(t)?;
        }
        Ok(())
    }
}
