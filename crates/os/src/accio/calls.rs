//! Accio's system calls: accelerate a socket, wait on an empty or full
//! ring, the miss handler, the fallback socket's receive and send, close,
//! thread exit and migration.
//!
//! Each runs as kernel code on the calling thread's core: entry and exit
//! are the kernel's, every access to the table or the NIC an MMIO access
//! timed by the fabric.

use std::net::Ipv4Addr;

use nextio_engine::Category;
use nextio_hw::accio::regs::{self as ict, kernel, row, state};
use nextio_hw::accio::table;
use nextio_hw::cpu::CoreCtx;
use nextio_hw::mem::VirtAddr;
use nextio_hw::nic::accio::flows::FlowMatch;

use super::{AccioError, AccioOs, Arena, Conn, Mode, RingMem};
use crate::kernel::{Pid, Tid};
use crate::net::{Datagram, Fd};

/// Which ring a wait is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Waiting for data: the RX ring is empty.
    Rx,
    /// Waiting for space: the TX ring is full.
    Tx,
}

/// Why the wait call returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitResult {
    /// The pointer moved (or the thread was woken): look again.
    Ready,
    /// The connection is on the kernel path: use the fallback socket.
    Fallback,
    /// Datagrams reached the fallback socket: receive them there first.
    FallbackData,
}

/// What the miss handler did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refill {
    /// The row is resident: retry the access.
    Resident,
    /// The connection is on the kernel path.
    Fallback,
}

/// What the library learns from `accelerate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accelerated {
    pub conn: u32,
    /// The connection's row in the process's view of the table.
    pub row: VirtAddr,
    pub rx: RingMem,
    pub tx: RingMem,
}

/// A receive on the fallback socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackRecv {
    Data(Datagram),
    /// Nothing waits there and the fast path is back.
    Accelerated,
}

/// Ring memory is handed out in chunks of this many bytes (hugepages,
/// pinned, in the process and the NIC's domain).
const ARENA_BYTES: u64 = 2 << 20;

impl AccioOs {
    fn pid_of(&self, tid: Tid) -> Result<Pid, AccioError> {
        Ok(self.0.host.kernel().borrow().process_of(tid)?)
    }

    fn entry(&self, ctx: &CoreCtx) {
        ctx.cycles(
            Category::Kernel,
            self.0.stack.config().costs.syscall_entry_cycles,
        );
    }
    fn exit_call(&self, ctx: &CoreCtx) {
        ctx.cycles(
            Category::Kernel,
            self.0.stack.config().costs.syscall_exit_cycles,
        );
    }

    /// `conn`, checked to be `pid`'s.
    fn owned(&self, pid: Pid, conn: u32) -> Result<Conn, AccioError> {
        match self.0.state.borrow().conns.get(&conn) {
            Some(c) if c.pid == pid => Ok(c.clone()),
            _ => Err(AccioError::NotOwner(conn)),
        }
    }

    /// The accelerated connection of `pid`'s socket `fd`.
    pub fn conn_of(&self, pid: Pid, fd: Fd) -> Option<u32> {
        self.0.state.borrow().by_fd.get(&(pid, fd)).copied()
    }

    fn rings(&self, pid: Pid) -> Result<(RingMem, RingMem), AccioError> {
        let bytes = self.0.cfg.ring_bytes;
        let need = 2 * bytes;
        let fits = {
            let st = self.0.state.borrow();
            st.arenas
                .get(&pid)
                .is_some_and(|a| a.used.next_multiple_of(bytes) + need <= a.bytes)
        };
        if !fits {
            // Kernel memory for the NIC (its IOVA is its physical address,
            // distinct for every process), shared with the process.
            let chunk = ARENA_BYTES.max(need.next_power_of_two());
            let (mem, va) = {
                let mut k = self.0.host.kernel().borrow_mut();
                let mem = crate::kmem::dma_alloc(&mut k, self.0.nic.id, chunk)?;
                let va = k.map_frames(pid, nextio_hw::mem::PhysAddr(mem.iova), mem.len)?;
                (mem, va)
            };
            self.0.state.borrow_mut().arenas.insert(
                pid,
                Arena {
                    va,
                    iova: mem.iova,
                    kva: mem.kva,
                    bytes: mem.len,
                    used: 0,
                },
            );
        }
        let mut st = self.0.state.borrow_mut();
        let a = st.arenas.get_mut(&pid).expect("just made");
        let at = a.used.next_multiple_of(bytes);
        a.used = at + need;
        let ring = |off: u64| RingMem {
            va: a.va.offset(off),
            iova: a.iova + off,
            kva: a.kva.offset(off),
            bytes,
        };
        Ok((ring(at), ring(at + bytes)))
    }

    /// `ioctl(fd, ACCIO_ACCELERATE)` by thread `tid`: put the bound socket
    /// `fd` on the fast path. The thread becomes its owner; its rows live
    /// on the thread's core.
    pub async fn accelerate(
        &self,
        ctx: &CoreCtx,
        tid: Tid,
        fd: Fd,
    ) -> Result<Accelerated, AccioError> {
        self.entry(ctx);
        ctx.cycles(Category::Kernel, self.0.cfg.costs.accelerate_cycles);
        let r = self.accelerate_inner(ctx, tid, fd).await;
        self.exit_call(ctx);
        r
    }

    async fn accelerate_inner(
        &self,
        ctx: &CoreCtx,
        tid: Tid,
        fd: Fd,
    ) -> Result<Accelerated, AccioError> {
        let pid = self.pid_of(tid)?;
        // Only the socket's own process gets this far: another's
        // descriptor is EBADF here.
        let sock = self.0.stack.socket_id(pid, fd)?;
        if self.conn_of(pid, fd).is_some() {
            return Err(AccioError::AlreadyAccelerated(fd));
        }
        let (local, remote) = self.0.stack.addresses(sock);
        let local = local.ok_or_else(|| AccioError::Invalid("bind the socket first".into()))?;
        let (core, asid) = {
            let k = self.0.host.kernel().borrow();
            (k.home_core(tid)?, k.space(pid)?.asid.0)
        };
        let conn = {
            let mut st = self.0.state.borrow_mut();
            match st.free_conns.pop() {
                Some(c) => c,
                None if st.next_conn < ict::MAX_CONNECTIONS => {
                    st.next_conn += 1;
                    st.next_conn - 1
                }
                None => return Err(AccioError::NoConnections(ict::MAX_CONNECTIONS)),
            }
        };
        let window = {
            let w = self.0.state.borrow().windows.get(&pid).copied();
            match w {
                Some(w) => w,
                None => {
                    let w = self.0.host.kernel().borrow_mut().map_bar(
                        pid,
                        self.0.table.id,
                        0,
                        ict::USER_BASE,
                        ict::USER_BYTES,
                    )?;
                    self.0.state.borrow_mut().windows.insert(pid, w);
                    w
                }
            }
        };
        let (rx, tx) = self.rings(pid)?;
        let mac = remote
            .and_then(|r| self.0.stack.neighbour(r.0))
            .unwrap_or_default();
        let mut shadow = [0u64; table::ROW_BEATS];
        let mut st_bits = state::ENABLED | state::ACCELERATED;
        if self.0.cfg.hiprio_irq {
            st_bits |= state::HIPRIO_IRQ;
        }
        let udp = nextio_hw::packet::FlowKey::PROTOCOL;
        for (f, v) in [
            (row::STATE, st_bits),
            (
                row::OWNER,
                ict::owner(asid, true, self.0.cfg.priority, tid.0 as u32),
            ),
            (row::CPU, core as u64),
            (row::RX_RING_ADDR, rx.iova),
            (row::RX_RING_SIZE, rx.bytes),
            (row::TX_RING_ADDR, tx.iova),
            (row::TX_RING_SIZE, tx.bytes),
            (row::LOCAL, ict::endpoint(local.0, local.1, udp)),
            (
                row::REMOTE,
                remote.map_or(0, |r| ict::endpoint(r.0, r.1, udp)),
            ),
            (
                row::REMOTE_MAC,
                u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0]),
            ),
            (row::DIRECTION, 3),
        ] {
            table::set(&mut shadow, f, v);
        }
        let installed = self.0.host.machine().fabric().act(&self.0.nic, |n, _| {
            n.install_flow(FlowMatch { local, remote }, conn, core)
        });
        if installed.is_err() {
            self.0.state.borrow_mut().free_conns.push(conn);
            return Err(AccioError::Invalid(format!(
                "another accelerated socket takes {local:?} → {remote:?}"
            )));
        }
        {
            let mut st = self.0.state.borrow_mut();
            st.conns.insert(
                conn,
                Conn {
                    pid,
                    tid,
                    fd,
                    sock,
                    shadow,
                    slot: None,
                    mode: Mode::Fast,
                    rx,
                    tx,
                    local,
                    remote,
                    waiting: None,
                },
            );
            st.by_fd.insert((pid, fd), conn);
            st.counters.inc("accelerated");
        }
        let kctx = self.0.disp.kernel_ctx(ctx);
        let _held = self.0.lock.lock().await;
        self.install(&kctx, conn, core).await?;
        Ok(Accelerated {
            conn,
            row: window.offset(ict::user_field(conn, 0)),
            rx,
            tx,
        })
    }

    /// The library found `conn`'s ring empty (`Rx`; `seen` is the
    /// `RX_TAIL` it read) or full (`Tx`; `seen` is the `TX_HEAD`): sleep
    /// until the NIC moves the pointer. The row is suspended first, then
    /// the pointer read again, so a move in between is never missed.
    pub async fn wait(
        &self,
        ctx: &CoreCtx,
        tid: Tid,
        conn: u32,
        dir: Dir,
        seen: u64,
    ) -> Result<WaitResult, AccioError> {
        self.entry(ctx);
        ctx.cycles(Category::Kernel, self.0.cfg.costs.wait_cycles);
        let r = self.wait_inner(ctx, tid, conn, dir, seen).await;
        // The thread may have migrated while it slept: it leaves the call
        // on the core it runs on now, not the one it entered on.
        self.exit_call(&self.ctx_now(tid, ctx));
        r
    }

    /// The context `tid` runs in now (`entered` if the dispatcher no
    /// longer knows it): after a block it may be another core's.
    fn ctx_now(&self, tid: Tid, entered: &CoreCtx) -> CoreCtx {
        self.0.disp.ctx(tid).unwrap_or_else(|_| entered.clone())
    }

    async fn wait_inner(
        &self,
        ctx: &CoreCtx,
        tid: Tid,
        conn: u32,
        dir: Dir,
        seen: u64,
    ) -> Result<WaitResult, AccioError> {
        let pid = self.pid_of(tid)?;
        let c = self.owned(pid, conn)?;
        if c.mode != Mode::Fast {
            return Ok(WaitResult::Fallback);
        }
        if self.0.stack.queued(c.sock) > 0 {
            return Ok(WaitResult::FallbackData);
        }
        let kctx = self.0.disp.kernel_ctx(ctx);
        let core = ctx.core().id();
        let held = self.0.lock.lock().await;
        self.0.state.borrow_mut().protect[core] = Some(conn);
        self.install(&kctx, conn, core).await?;
        let (bit, ptr) = match dir {
            Dir::Rx => (state::RX_SUSPENDED, row::RX_TAIL),
            Dir::Tx => (state::TX_SUSPENDED, row::TX_HEAD),
        };
        let asid = (table::get(&c.shadow, row::OWNER) & 0xffff) as u16;
        let base = table::get(&c.shadow, row::STATE)
            & !(state::READY | state::RX_SUSPENDED | state::TX_SUSPENDED);
        // The core is leaving this thread: a wake-up may interrupt it.
        self.kwrite(
            &kctx,
            ict::kernel_reg(core, kernel::CURRENT),
            ict::current(asid, false, 0),
        )
        .await?;
        self.write_field(&kctx, conn, row::STATE, base | bit)
            .await?;
        let now = self.read_field(&kctx, conn, ptr).await?;
        if now != seen || self.0.stack.queued(c.sock) > 0 {
            self.write_field(&kctx, conn, row::STATE, base).await?;
            self.kwrite(
                &kctx,
                ict::kernel_reg(core, kernel::CURRENT),
                ict::current(asid, true, self.0.cfg.priority),
            )
            .await?;
            self.0.state.borrow_mut().counters.inc("waits_averted");
            return Ok(WaitResult::Ready);
        }
        if let Some(cc) = self.0.state.borrow_mut().conns.get_mut(&conn) {
            cc.waiting = Some(tid);
        }
        self.0.stack.set_waiter(c.sock, tid);
        self.0.state.borrow_mut().counters.inc("waits_blocked");
        drop(held);
        self.0.disp.block(tid).await?;
        if let Some(cc) = self.0.state.borrow_mut().conns.get_mut(&conn) {
            cc.waiting = None;
        }
        let mode = self.0.state.borrow().conns.get(&conn).map(|c| c.mode);
        Ok(match mode {
            Some(Mode::Fast) if self.0.stack.queued(c.sock) > 0 => WaitResult::FallbackData,
            Some(Mode::Fast) => WaitResult::Ready,
            _ => WaitResult::Fallback,
        })
    }

    /// The miss trap: a load or store of `conn`'s row by `tid` missed in
    /// its core's table (not resident), or stored `TX_TAIL` on a row that
    /// is not on the fast path. Refills the row on the thread's core, or
    /// says the connection is on the kernel path; another process's
    /// connection is a protection fault.
    pub async fn refill(&self, ctx: &CoreCtx, tid: Tid, conn: u32) -> Result<Refill, AccioError> {
        ctx.cycles(Category::Kernel, self.0.cfg.costs.refill_trap_cycles);
        let pid = self.pid_of(tid)?;
        let c = match self.owned(pid, conn) {
            Ok(c) => c,
            Err(e) => {
                self.0.state.borrow_mut().counters.inc("refill_denied");
                return Err(e);
            }
        };
        self.0.state.borrow_mut().counters.inc("refills");
        if c.mode != Mode::Fast {
            return Ok(Refill::Fallback);
        }
        let kctx = self.0.disp.kernel_ctx(ctx);
        let core = ctx.core().id();
        let _held = self.0.lock.lock().await;
        self.0.state.borrow_mut().protect[core] = Some(conn);
        self.install(&kctx, conn, core).await?;
        Ok(Refill::Resident)
    }

    /// `recvfrom` on `conn`'s fallback socket: a datagram that went the
    /// kernel path, or word that the fast path is back (blocking until
    /// one of them, unless `nonblocking`).
    #[allow(clippy::too_many_arguments)]
    pub async fn fallback_recv(
        &self,
        ctx: &CoreCtx,
        tid: Tid,
        conn: u32,
        buf: VirtAddr,
        cap: usize,
        nonblocking: bool,
    ) -> Result<FallbackRecv, AccioError> {
        let pid = self.pid_of(tid)?;
        let c = self.owned(pid, conn)?;
        let mut ctx = ctx.clone();
        loop {
            if self.0.stack.queued(c.sock) > 0 {
                let d = self
                    .0
                    .stack
                    .recvfrom(&ctx, tid, c.fd, buf, cap, true)
                    .await?;
                return Ok(FallbackRecv::Data(d));
            }
            let mode = self.mode(conn);
            if mode == Some(Mode::Fast) {
                self.entry(&ctx);
                self.exit_call(&ctx);
                return Ok(FallbackRecv::Accelerated);
            }
            if nonblocking {
                return Err(AccioError::Net(crate::net::NetError::WouldBlock));
            }
            self.entry(&ctx);
            self.0.stack.set_waiter(c.sock, tid);
            if let Some(cc) = self.0.state.borrow_mut().conns.get_mut(&conn) {
                cc.waiting = Some(tid);
            }
            self.0.disp.block(tid).await?;
            if let Some(cc) = self.0.state.borrow_mut().conns.get_mut(&conn) {
                cc.waiting = None;
            }
            // Woken perhaps on another core (a migration while blocked).
            ctx = self.ctx_now(tid, &ctx);
            self.exit_call(&ctx);
        }
    }

    /// `sendto` on `conn`'s fallback socket; also says whether the fast
    /// path is back.
    pub async fn fallback_send(
        &self,
        ctx: &CoreCtx,
        tid: Tid,
        conn: u32,
        buf: VirtAddr,
        len: usize,
        dst: Option<(Ipv4Addr, u16)>,
    ) -> Result<(usize, bool), AccioError> {
        let pid = self.pid_of(tid)?;
        let c = self.owned(pid, conn)?;
        let n = self.0.stack.sendto(ctx, tid, c.fd, buf, len, dst).await?;
        Ok((n, self.mode(conn) == Some(Mode::Fast)))
    }

    /// Release `conn`: its row out of the table, its flow out of the NIC,
    /// its fallback socket closed.
    async fn release(&self, kctx: &CoreCtx, conn: u32) -> Result<(), AccioError> {
        let _held = self.0.lock.lock().await;
        let slot = self.0.state.borrow().conns.get(&conn).and_then(|c| c.slot);
        if let Some((core, s)) = slot {
            self.evict(kctx, core, s).await?;
        }
        let c = {
            let mut st = self.0.state.borrow_mut();
            let Some(c) = st.conns.remove(&conn) else {
                return Ok(());
            };
            st.by_fd.remove(&(c.pid, c.fd));
            for p in st.protect.iter_mut().filter(|p| **p == Some(conn)) {
                *p = None;
            }
            st.free_conns.push(conn);
            st.counters.inc("released");
            c
        };
        let _ = self
            .0
            .host
            .machine()
            .fabric()
            .act(&self.0.nic, |n, cx| n.remove_flow(cx, conn));
        self.0.stack.close(c.pid, c.fd)?;
        Ok(())
    }

    /// `close(fd)` by `tid`: an accelerated socket is released, any other
    /// closed as usual.
    pub async fn close(&self, ctx: &CoreCtx, tid: Tid, fd: Fd) -> Result<(), AccioError> {
        self.entry(ctx);
        let pid = self.pid_of(tid)?;
        let r = match self.conn_of(pid, fd) {
            Some(conn) => {
                let kctx = self.0.disp.kernel_ctx(ctx);
                self.release(&kctx, conn).await
            }
            None => self.0.stack.close(pid, fd).map_err(AccioError::from),
        };
        self.exit_call(ctx);
        r
    }

    /// Thread `tid` exits: every row it owns is released, then it leaves
    /// its core.
    pub async fn thread_exit(&self, ctx: &CoreCtx, tid: Tid) -> Result<(), AccioError> {
        self.entry(ctx);
        let mine: Vec<u32> = self
            .0
            .state
            .borrow()
            .conns
            .iter()
            .filter(|(_, c)| c.tid == tid)
            .map(|(k, _)| *k)
            .collect();
        let kctx = self.0.disp.kernel_ctx(ctx);
        for conn in mine {
            self.release(&kctx, conn).await?;
        }
        self.0.disp.exit(tid).await?;
        Ok(())
    }

    /// Move `tid` (not running) to `core`; its resident rows follow it.
    /// `kctx` is the kernel code doing it (the load balancer). Returns the
    /// thread's context on its new core.
    pub async fn migrate(
        &self,
        kctx: &CoreCtx,
        tid: Tid,
        core: usize,
    ) -> Result<CoreCtx, AccioError> {
        let ctx = self.0.disp.migrate(tid, core)?;
        let mine: Vec<u32> = self
            .0
            .state
            .borrow()
            .conns
            .iter()
            .filter(|(_, c)| c.tid == tid && c.slot.is_some())
            .map(|(k, _)| *k)
            .collect();
        let held = self.0.lock.lock().await;
        for conn in mine {
            self.install(kctx, conn, core).await?;
        }
        drop(held);
        self.0.state.borrow_mut().counters.inc("migrations");
        Ok(ctx)
    }

    /// The kernel's address of `conn`'s ring bytes at free-running `ptr`.
    pub(super) fn ring_kva(&self, conn: u32, tx: bool, ptr: u64) -> Option<(VirtAddr, u64)> {
        let st = self.0.state.borrow();
        let c = st.conns.get(&conn)?;
        let r = if tx { c.tx } else { c.rx };
        Some((r.kva.offset(ptr % r.bytes), r.bytes))
    }
}
