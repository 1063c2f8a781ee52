//! The stack of one host: the interface (address, MAC, static neighbour
//! table), the driver, the skb pool, the sockets, the qdisc, the NAPI
//! interrupt handler, and the socket system calls.
//!
//! System calls run on the calling thread's core as kernel code (entry
//! and exit charged, the copies cache-modelled); the NAPI handler runs in
//! interrupt context on the queue's interrupt core. A `recvfrom` that
//! finds its queue empty blocks the thread through the dispatcher; the
//! handler that queues a datagram for it wakes it once the poll is done
//! (a woken reader runs when the softirq returns, as in Linux).
//!
//! No borrow of the stack's state is held across an await: the driver's
//! register writes are returned as doorbells and rung afterwards.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::rc::{Rc, Weak};

use nextio_engine::{Category, Counters, Time};
use nextio_hw::cpu::CoreCtx;
use nextio_hw::device::DeviceId;
use nextio_hw::fabric::MsiMessage;
use nextio_hw::mem::VirtAddr;
use nextio_hw::packet::{
    FlowKey, MAX_FRAME_BYTES, Macs, UDP_HEADERS_BYTES, build_udp_datagram, parse_udp,
};

use super::ice::{Doorbell, IceConfig, IceDriver, PacketizedQueues, RxFrame, ring};
use super::skb::{BufId, RxStamps, SKB_BUFFER_BYTES, Skb, SkbPool};
use super::udp::{Fd, SocketId, Sockets};
use super::{LinuxNetCosts, NetError};
use crate::irq::{Interrupts, IrqHandler};
use crate::kernel::{Pid, Tid};
use crate::kmem;
use crate::sched::{Dispatcher, LocalFuture};

/// An IPv4 address and UDP port.
pub type SockAddr = (Ipv4Addr, u16);

/// `txqueuelen` of an Ethernet device: 1000 packets (Linux's default for
/// `ether_setup`).
pub const QDISC_LIMIT_PACKETS: usize = 1000;

/// How a host's stack is set up.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// Static neighbour (ARP) entries.
    pub neighbours: Vec<(Ipv4Addr, [u8; 6])>,
    pub ice: IceConfig,
    /// Socket buffers in the pool. Assumption: 2048 (the RX ring's 512
    /// plus room for queued datagrams and the TX ring).
    pub buffers: u32,
    /// The NIC queue the stack drives, the core its interrupt goes to
    /// (NAPI runs there) and the APIC vector it uses.
    pub queue: usize,
    pub irq_core: usize,
    pub vector: u8,
    pub costs: LinuxNetCosts,
}

impl NetConfig {
    /// A stack at `ip`/`mac` with the Table 1 kernel's costs.
    pub fn new(ip: Ipv4Addr, mac: [u8; 6], costs: LinuxNetCosts) -> NetConfig {
        NetConfig {
            ip,
            mac,
            neighbours: Vec::new(),
            ice: IceConfig::default(),
            buffers: 2048,
            queue: 0,
            irq_core: 0,
            // The first vector Linux hands out to device MSI-X entries on
            // x86 (`FIRST_EXTERNAL_VECTOR` 0x20 plus the legacy range).
            vector: 0x41,
            costs,
        }
    }
}

/// A datagram `recvfrom` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Bytes copied to the buffer.
    pub len: usize,
    pub src: (Ipv4Addr, u16),
    pub stamps: RxStamps,
    /// When the reader ran again after blocking (its switch-in paid), or
    /// when it found the datagram queued if it did not block.
    pub resumed: Time,
    /// When the system call returned to user mode.
    pub returned: Time,
}

struct State {
    driver: IceDriver,
    pool: SkbPool,
    socks: Sockets,
    qdisc: VecDeque<(BufId, u16)>,
    /// The link has carrier: without it the qdisc holds what it has
    /// (`netif_carrier_off` stops the queue) until carrier returns.
    carrier: bool,
    counters: Counters,
}

struct Inner {
    disp: Dispatcher,
    cfg: NetConfig,
    regs: VirtAddr,
    state: RefCell<State>,
}

/// A host's network stack. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct NetStack(Rc<Inner>);

struct Napi(Weak<Inner>);

impl IrqHandler for Napi {
    fn handle<'a>(&'a self, kctx: &'a CoreCtx, _core: usize, _vector: u8) -> LocalFuture<'a, ()> {
        Box::pin(async move {
            if let Some(inner) = self.0.upgrade() {
                let s = NetStack(inner);
                if s.napi(kctx).await.is_err() {
                    s.0.state.borrow_mut().counters.inc("napi_errors");
                }
            }
        })
    }
}

impl NetStack {
    /// Bring up the stack on the packetized NIC `dev` (configured through
    /// `queues`): kernel rings and buffers, the queue's MSI-X entry aimed
    /// at `cfg.irq_core`, the NAPI handler. [`NetStack::start`] hands the
    /// ring to the NIC.
    pub fn new(
        irqs: &Interrupts,
        queues: &mut dyn PacketizedQueues,
        dev: DeviceId,
        cfg: NetConfig,
    ) -> Result<NetStack, NetError> {
        let disp = irqs.dispatcher().clone();
        let host = disp.host().clone();
        if cfg.buffers <= cfg.ice.rx_entries {
            return Err(NetError::Config(
                "the skb pool must hold more buffers than the RX ring".into(),
            ));
        }
        let (rx_ring, tx_ring, pool_mem, regs) = {
            let mut k = host.kernel().borrow_mut();
            let rx = kmem::dma_alloc(&mut k, dev, cfg.ice.rx_entries as u64 * 32)?;
            let tx = kmem::dma_alloc(&mut k, dev, cfg.ice.tx_entries as u64 * 16)?;
            let pool = kmem::dma_alloc(&mut k, dev, cfg.buffers as u64 * SKB_BUFFER_BYTES)?;
            let regs = kmem::ioremap(
                &mut k,
                dev,
                0,
                0,
                nextio_hw::nic::packetized::regs::BAR0_BYTES,
            )?;
            (rx, tx, pool, regs)
        };
        let mut pool = SkbPool::new(pool_mem, cfg.buffers);
        let kctx = disp.core_kernel_ctx(cfg.irq_core)?;
        let msix_entry = cfg.queue as u16;
        let driver = IceDriver::new(
            queues, cfg.queue, cfg.ice, regs, rx_ring, tx_ring, &mut pool, &kctx, msix_entry,
        )?;
        host.machine()
            .fabric()
            .set_msix(
                dev,
                msix_entry,
                MsiMessage {
                    core: cfg.irq_core,
                    vector: cfg.vector,
                },
            )
            .map_err(|e| NetError::Config(e.to_string()))?;
        let stack = NetStack(Rc::new(Inner {
            disp,
            regs,
            state: RefCell::new(State {
                driver,
                pool,
                socks: Sockets::default(),
                qdisc: VecDeque::new(),
                carrier: true,
                counters: Counters::new(),
            }),
            cfg,
        }));
        irqs.register(
            stack.0.cfg.irq_core,
            stack.0.cfg.vector,
            Rc::new(Napi(Rc::downgrade(&stack.0))),
        )?;
        Ok(stack)
    }

    pub fn config(&self) -> &NetConfig {
        &self.0.cfg
    }
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.0.disp
    }

    /// Hand the RX ring to the NIC and arm its interrupt (a kernel task
    /// on the interrupt core, at the current time).
    pub fn start(&self) -> Result<(), NetError> {
        let kctx = self.0.disp.core_kernel_ctx(self.0.cfg.irq_core)?;
        let dbs = self.0.state.borrow().driver.start();
        let me = self.clone();
        self.0.disp.host().sim().spawn(async move {
            for db in dbs {
                if ring(&kctx, me.0.regs, db).await.is_err() {
                    me.0.state.borrow_mut().counters.inc("start_errors");
                }
            }
        });
        Ok(())
    }

    fn pid(&self, tid: Tid) -> Result<Pid, NetError> {
        Ok(self.0.disp.host().kernel().borrow().process_of(tid)?)
    }

    // ---- socket calls that do not sleep or move data (their cost is a
    // system call round trip, charged by the caller) -------------------

    /// `socket(AF_INET, SOCK_DGRAM, 0)` for `pid`.
    pub fn socket(&self, pid: Pid) -> Fd {
        self.0.state.borrow_mut().socks.socket(pid)
    }

    /// `bind` to this host's address and `port` (0: ephemeral); returns
    /// the port bound.
    pub fn bind(&self, pid: Pid, fd: Fd, port: u16) -> Result<u16, NetError> {
        let mut st = self.0.state.borrow_mut();
        let id = st.socks.lookup_fd(pid, fd)?;
        st.socks.bind(id, self.0.cfg.ip, port)
    }

    /// `connect` to `remote`.
    pub fn connect(&self, pid: Pid, fd: Fd, remote: (Ipv4Addr, u16)) -> Result<(), NetError> {
        let mut st = self.0.state.borrow_mut();
        let id = st.socks.lookup_fd(pid, fd)?;
        st.socks.connect(id, self.0.cfg.ip, remote)
    }

    /// `close`: datagrams still queued are freed (counted).
    pub fn close(&self, pid: Pid, fd: Fd) -> Result<(), NetError> {
        let mut st = self.0.state.borrow_mut();
        let left = st.socks.close(pid, fd)?;
        for skb in left {
            st.pool.free(skb.buf);
            st.counters.inc("freed_at_close");
        }
        Ok(())
    }

    /// The socket `pid`'s `fd` names.
    pub fn socket_id(&self, pid: Pid, fd: Fd) -> Result<SocketId, NetError> {
        self.0.state.borrow().socks.lookup_fd(pid, fd)
    }

    /// Local and remote addresses of a socket.
    pub fn addresses(&self, id: SocketId) -> (Option<SockAddr>, Option<SockAddr>) {
        let st = self.0.state.borrow();
        let s = st.socks.get(id);
        (s.local, s.remote)
    }

    /// The owner of a socket.
    pub fn owner(&self, id: SocketId) -> Pid {
        self.0.state.borrow().socks.get(id).owner
    }

    /// Datagrams queued on `id`.
    pub fn queued(&self, id: SocketId) -> usize {
        self.0.state.borrow().socks.get(id).queued()
    }

    /// Datagrams queued on every open socket.
    pub fn queued_total(&self) -> usize {
        self.0.state.borrow().socks.queued_total()
    }

    /// The MAC of `ip`'s neighbour entry.
    pub fn neighbour(&self, ip: Ipv4Addr) -> Option<[u8; 6]> {
        self.0
            .cfg
            .neighbours
            .iter()
            .find(|(a, _)| *a == ip)
            .map(|(_, m)| *m)
    }

    /// The stack's and the driver's counters.
    pub fn counters(&self) -> Counters {
        let st = self.0.state.borrow();
        let mut c = st.counters.clone();
        c.merge(&st.driver.counters);
        c.add("pool_failures", st.pool.failures());
        c
    }

    /// Buffers free in the pool, and held by the driver, sockets and qdisc
    /// (they always sum to the pool's size).
    pub fn buffer_census(&self) -> (usize, usize) {
        let st = self.0.state.borrow();
        let held = st.driver.buffers_held() + st.socks.queued_total() + st.qdisc.len();
        (st.pool.free_count(), held)
    }

    // ---- sleeping and data-moving system calls ------------------------

    /// `recvfrom` by thread `tid` running on `ctx`: copy the oldest
    /// datagram of `fd` into `[buf, buf + cap)` (truncating), blocking
    /// while there is none unless `nonblocking`.
    pub async fn recvfrom(
        &self,
        ctx: &CoreCtx,
        tid: Tid,
        fd: Fd,
        buf: VirtAddr,
        cap: usize,
        nonblocking: bool,
    ) -> Result<Datagram, NetError> {
        let c = self.0.cfg.costs;
        ctx.cycles(Category::Kernel, c.syscall_entry_cycles);
        let pid = self.pid(tid)?;
        let skb = loop {
            let got = {
                let mut st = self.0.state.borrow_mut();
                let id = st.socks.lookup_fd(pid, fd)?;
                match st.socks.dequeue(id) {
                    Some(s) => Ok(s),
                    None => {
                        if !nonblocking {
                            st.socks.get_mut(id).waiter = Some(tid);
                        }
                        Err(id)
                    }
                }
            };
            match got {
                Ok(s) => break s,
                Err(_) if nonblocking => {
                    ctx.cycles(Category::Kernel, c.syscall_exit_cycles);
                    return Err(NetError::WouldBlock);
                }
                Err(_) => self.0.disp.block(tid).await?,
            }
        };
        let resumed = ctx.local_now();
        ctx.cycles(Category::NetworkStack, c.recvmsg_cycles);
        let n = (skb.payload_len as usize).min(cap);
        let kctx = self.0.disp.kernel_ctx(ctx);
        let kva = self.0.state.borrow().pool.kva(skb.buf);
        let mut data = vec![0u8; n];
        let copied = kctx
            .load(
                kva.offset(skb.payload_offset as u64),
                &mut data,
                Category::NetworkStack,
            )
            .and_then(|_| ctx.store(buf, &data, Category::NetworkStack));
        ctx.cycles(Category::NetworkStack, c.copy_cycles(n as u64));
        {
            let mut st = self.0.state.borrow_mut();
            st.pool.free(skb.buf);
            st.counters.inc(if copied.is_ok() {
                "recv_datagrams"
            } else {
                "drop.recv_efault"
            });
        }
        ctx.cycles(Category::Kernel, c.syscall_exit_cycles);
        copied?;
        Ok(Datagram {
            len: n,
            src: skb.src,
            stamps: skb.stamps,
            resumed,
            returned: ctx.local_now(),
        })
    }

    /// `sendto` by thread `tid` on `ctx`: send the `len` bytes at `buf`
    /// to `dst` (or the connected peer). Returns the bytes accepted.
    #[allow(clippy::too_many_arguments)]
    pub async fn sendto(
        &self,
        ctx: &CoreCtx,
        tid: Tid,
        fd: Fd,
        buf: VirtAddr,
        len: usize,
        dst: Option<(Ipv4Addr, u16)>,
    ) -> Result<usize, NetError> {
        let c = self.0.cfg.costs;
        ctx.cycles(Category::Kernel, c.syscall_entry_cycles);
        let result = self.send_inner(ctx, tid, fd, buf, len, dst).await;
        ctx.cycles(Category::Kernel, c.syscall_exit_cycles);
        result
    }

    async fn send_inner(
        &self,
        ctx: &CoreCtx,
        tid: Tid,
        fd: Fd,
        buf: VirtAddr,
        len: usize,
        dst: Option<(Ipv4Addr, u16)>,
    ) -> Result<usize, NetError> {
        let c = self.0.cfg.costs;
        let pid = self.pid(tid)?;
        if len + UDP_HEADERS_BYTES + nextio_hw::packet::FCS_BYTES > MAX_FRAME_BYTES {
            return Err(NetError::TooLong(len));
        }
        let (local, remote) = {
            let mut st = self.0.state.borrow_mut();
            let id = st.socks.lookup_fd(pid, fd)?;
            if st.socks.get(id).local.is_none() {
                st.socks.bind(id, self.0.cfg.ip, 0)?;
            }
            let s = st.socks.get(id);
            (s.local, s.remote)
        };
        let dst = dst.or(remote).ok_or(NetError::NoDestination)?;
        let local = local.ok_or(NetError::NoDestination)?;
        ctx.cycles(Category::NetworkStack, c.udp_send_cycles);
        // copy_from_user into a fresh skb.
        let mut payload = vec![0u8; len];
        ctx.load(buf, &mut payload, Category::NetworkStack)?;
        let kctx = self.0.disp.kernel_ctx(ctx);
        self.output(&kctx, local, dst, &payload).await?;
        Ok(len)
    }

    /// A datagram the kernel itself sends (Accio's fallback drains a
    /// connection's ring this way): UDP, IP, qdisc and driver, from kernel
    /// code `kctx`, with `payload` already in kernel hands.
    pub async fn send_from_kernel(
        &self,
        kctx: &CoreCtx,
        local: SockAddr,
        dst: SockAddr,
        payload: &[u8],
    ) -> Result<(), NetError> {
        kctx.cycles(Category::NetworkStack, self.0.cfg.costs.udp_send_cycles);
        self.output(kctx, local, dst, payload).await
    }

    /// Build the frame in an skb and hand it to the qdisc.
    async fn output(
        &self,
        kctx: &CoreCtx,
        local: SockAddr,
        dst: SockAddr,
        payload: &[u8],
    ) -> Result<(), NetError> {
        let c = self.0.cfg.costs;
        let len = payload.len();
        let mac = self
            .neighbour(dst.0)
            .ok_or(NetError::HostUnreachable(dst.0))?;
        let flow = FlowKey {
            src_ip: local.0,
            dst_ip: dst.0,
            src_port: local.1,
            dst_port: dst.1,
        };
        let frame = build_udp_datagram(
            Macs {
                src: self.0.cfg.mac,
                dst: mac,
            },
            flow,
            payload,
        )
        .map_err(|_| NetError::TooLong(len))?;
        let skb = {
            let mut st = self.0.state.borrow_mut();
            match st.pool.alloc() {
                Some(b) => b,
                None => {
                    st.counters.inc("drop.tx_nobufs");
                    return Err(NetError::NoBuffers);
                }
            }
        };
        let kva = self.0.state.borrow().pool.kva(skb);
        kctx.store(kva, &frame, Category::NetworkStack)?;
        kctx.cycles(Category::NetworkStack, c.copy_cycles(len as u64));
        kctx.cycles(Category::NetworkStack, c.ip_output_cycles);
        kctx.cycles(Category::NetworkStack, c.qdisc_cycles);
        let db = {
            let mut st = self.0.state.borrow_mut();
            st.counters.inc("sent_datagrams");
            self.enqueue_tx(&mut st, kctx, skb, frame.len() as u16)?
        };
        if let Some(db) = db {
            ring(kctx, self.0.regs, db).await?;
        }
        Ok(())
    }

    /// Carrier lost or back; with it back the qdisc runs again.
    pub async fn set_carrier(&self, kctx: &CoreCtx, up: bool) -> Result<(), NetError> {
        let db = {
            let mut st = self.0.state.borrow_mut();
            st.carrier = up;
            st.counters
                .inc(if up { "carrier_up" } else { "carrier_down" });
            if up {
                self.run_qdisc(&mut st, kctx)?
            } else {
                None
            }
        };
        if let Some(db) = db {
            ring(kctx, self.0.regs, db).await?;
        }
        Ok(())
    }

    /// Make `tid` the reader to wake when a datagram reaches `id` (a
    /// blocking wait that is not `recvfrom` itself, such as Accio's).
    pub fn set_waiter(&self, id: SocketId, tid: Tid) {
        self.0.state.borrow_mut().socks.get_mut(id).waiter = Some(tid);
    }

    /// Datagrams held by the qdisc.
    pub fn qdisc_len(&self) -> usize {
        self.0.state.borrow().qdisc.len()
    }

    /// The qdisc takes `buf` and runs: frames go to the driver while its
    /// ring has room. Returns the tail doorbell to ring.
    fn enqueue_tx(
        &self,
        st: &mut State,
        kctx: &CoreCtx,
        buf: BufId,
        len: u16,
    ) -> Result<Option<Doorbell>, NetError> {
        if st.qdisc.len() >= QDISC_LIMIT_PACKETS {
            st.pool.free(buf);
            st.counters.inc("drop.tx_qdisc");
            return Ok(None);
        }
        st.qdisc.push_back((buf, len));
        self.run_qdisc(st, kctx)
    }

    fn run_qdisc(&self, st: &mut State, kctx: &CoreCtx) -> Result<Option<Doorbell>, NetError> {
        let c = self.0.cfg.costs;
        let mut db = None;
        if !st.carrier {
            return Ok(None);
        }
        while let Some(&(buf, len)) = st.qdisc.front() {
            if !st.driver.tx_has_room() {
                let State { driver, pool, .. } = st;
                driver.clean_tx(kctx, pool, c.tx_clean_cycles)?;
                if !driver.tx_has_room() {
                    break;
                }
            }
            st.qdisc.pop_front();
            let State { driver, pool, .. } = st;
            db = Some(driver.xmit(kctx, pool, buf, len, c.driver_tx_cycles)?);
        }
        Ok(db)
    }

    // ---- interrupt context -------------------------------------------

    async fn napi(&self, kctx: &CoreCtx) -> Result<(), NetError> {
        let c = self.0.cfg.costs;
        let budget = self.0.cfg.ice.napi_budget;
        let irq_entry = kctx.local_now();
        kctx.cycles(Category::Interrupt, c.hardirq_cycles);
        kctx.cycles(Category::Interrupt, c.softirq_cycles);
        let entry = (irq_entry, kctx.local_now());
        let mut wake = Vec::new();
        loop {
            kctx.sync().await;
            let mut frames = Vec::new();
            let (rx_db, tx_db) = {
                let mut st = self.0.state.borrow_mut();
                let State { driver, pool, .. } = &mut *st;
                let rx_db = driver.clean_rx(kctx, pool, budget, c.driver_rx_cycles, &mut frames)?;
                for f in &frames {
                    self.receive(&mut st, kctx, *f, entry, &mut wake);
                }
                let State { driver, pool, .. } = &mut *st;
                driver.clean_tx(kctx, pool, c.tx_clean_cycles)?;
                let tx_db = self.run_qdisc(&mut st, kctx)?;
                (rx_db, tx_db)
            };
            for db in [rx_db, tx_db].into_iter().flatten() {
                ring(kctx, self.0.regs, db).await?;
            }
            if (frames.len() as u32) < budget {
                break;
            }
        }
        kctx.cycles(Category::Interrupt, c.napi_complete_cycles);
        let arm = self.0.state.borrow().driver.arm();
        ring(kctx, self.0.regs, arm).await?;
        // Readers woken in the poll run once the softirq has returned.
        kctx.sync().await;
        for tid in wake {
            self.0.disp.wake(tid)?;
        }
        Ok(())
    }

    /// IP and UDP receive of one frame: onto its socket's queue or a
    /// `drop.rx_*` counter. `entry` is when the interrupt's handler and
    /// its poll began, for the datagram's stamps.
    fn receive(
        &self,
        st: &mut State,
        kctx: &CoreCtx,
        f: RxFrame,
        entry: (Time, Time),
        wake: &mut Vec<Tid>,
    ) {
        let c = self.0.cfg.costs;
        kctx.cycles(Category::NetworkStack, c.netif_rx_cycles);
        let header_start = kctx.local_now();
        let kva = st.pool.kva(f.buf);
        let len = f.len as usize;
        let mut hdr = vec![0u8; len.min(UDP_HEADERS_BYTES)];
        let mut bytes = vec![0u8; len];
        // Headers through the cache; the payload is only checked here (the
        // NIC validated its checksum, CHECKSUM_UNNECESSARY).
        let seen = kctx
            .load(kva, &mut hdr, Category::NetworkStack)
            .and_then(|_| kctx.peek(kva, &mut bytes));
        let view = match seen.ok().and_then(|_| parse_udp(&bytes).ok()) {
            Some(v) => v,
            None => {
                st.pool.free(f.buf);
                st.counters.inc("drop.rx_malformed");
                return;
            }
        };
        kctx.cycles(Category::NetworkStack, c.ip_rcv_cycles);
        if view.flow.dst_ip != self.0.cfg.ip {
            st.pool.free(f.buf);
            st.counters.inc("drop.rx_not_local");
            return;
        }
        let demux_start = kctx.local_now();
        kctx.cycles(Category::NetworkStack, c.udp_rcv_cycles);
        let src = (view.flow.src_ip, view.flow.src_port);
        let Some(id) = st.socks.demux((view.flow.dst_ip, view.flow.dst_port), src) else {
            st.pool.free(f.buf);
            st.counters.inc("drop.rx_no_socket");
            return;
        };
        kctx.cycles(Category::NetworkStack, c.sock_enqueue_cycles);
        let skb = Skb {
            buf: f.buf,
            payload_offset: view.payload_offset as u16,
            payload_len: view.payload_len as u16,
            src,
            stamps: RxStamps {
                irq_entry: entry.0,
                poll_start: entry.1,
                header_start,
                demux_start,
                queued: kctx.local_now(),
            },
        };
        match st.socks.enqueue(id, skb) {
            Err(skb) => {
                st.pool.free(skb.buf);
                st.counters.inc("drop.rx_rcvbuf");
            }
            Ok(waiter) => {
                st.counters.inc("rx_delivered");
                if let Some(t) = waiter {
                    kctx.cycles(Category::Kernel, c.wakeup_cycles);
                    wake.push(t);
                }
            }
        }
    }
}
