//! A user-level ONC RPC server, the software baseline Lauberhorn is
//! measured against (§2): it receives UDP datagrams, parses the RPC
//! header, demultiplexes to the procedure, unmarshals the XDR arguments,
//! calls the handler, marshals the results and sends the reply — every
//! step on the core, each charged to the §2 step it is.
//!
//! Where datagrams come from is a small trait ([`DatagramIo`]): a
//! DPDK-style poll-mode driver with a statically assigned core
//! ([`DpdkIo`], kernel bypass), or the kernel's UDP sockets with the
//! server thread blocked in `recvfrom` ([`SocketIo`], the Linux
//! baseline).
//!
//! Invariant: every datagram received is answered once (a reply, or an
//! RFC 5531 error reply) or counted under a `drop.*` reason.

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

use std::rc::Rc;

use nextio_engine::{Category, Counters, Notify};
use nextio_hw::cpu::CoreCtx;
use nextio_hw::mem::VirtAddr;
use nextio_hw::oncrpc::{self, AcceptStat, XdrValue};
use nextio_hw::packet::{
    FCS_BYTES, FlowKey, MAX_FRAME_BYTES, MIN_FRAME_BYTES, Macs, UDP_HEADERS_BYTES, build_udp,
    parse_udp,
};
use nextio_lib::dpdk::{Mbuf, Pmd, PmdError};
use nextio_lib::lauberhorn::{Outcome, Procedure};
use nextio_os::lauberhorn::{Step, StepMeter};
use nextio_os::net::{Fd, NetStack};
use nextio_os::{Dispatcher, Process, Thread, Tid};

/// A future returned by a [`DatagramIo`].
pub type IoFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Who sent a datagram, to reply to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The reply's flow (the request's, reversed).
    pub flow: FlowKey,
    pub macs: Macs,
}

/// A received datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub from: Peer,
    pub payload: Vec<u8>,
}

/// Datagrams in and out of a user-level server.
pub trait DatagramIo {
    /// The core the server runs on.
    fn ctx(&self) -> &CoreCtx;
    /// Get ready to receive (post the receive ring, bind the socket).
    fn start<'a>(&'a mut self) -> IoFuture<'a, bool>;
    /// The next datagram (waiting for one), metering its steps (1)–(4).
    fn recv<'a>(&'a mut self, meter: Option<&'a StepMeter>) -> IoFuture<'a, Option<Datagram>>;
    /// Send `payload` to `to`.
    fn send<'a>(&'a mut self, to: Peer, payload: &'a [u8]) -> IoFuture<'a, bool>;
    /// What the I/O layer counted.
    fn counters(&self) -> Counters;
}

/// Instruction costs of the software RPC path, in core cycles: the root
/// preset's `[apps.soft_rpc]`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SoftRpcCosts {
    /// Ethernet/IPv4/UDP header checks with the checksum offloaded.
    pub udp_parse_cycles: u64,
    /// Parse the RPC call header.
    pub rpc_header_cycles: u64,
    /// Find the service of a port (static binding).
    pub service_lookup_cycles: u64,
    /// Unmarshal one XDR argument.
    pub xdr_arg_cycles: u64,
    /// Marshal one XDR result.
    pub xdr_result_cycles: u64,
    /// Find the procedure in the dispatch table.
    pub proc_lookup_cycles: u64,
    /// Call through the table.
    pub call_cycles: u64,
    /// Build the reply's headers.
    pub reply_build_cycles: u64,
}

impl Default for SoftRpcCosts {
    /// The root preset's `[apps.soft_rpc]`.
    fn default() -> Self {
        nextio_presets::root_section("apps.soft_rpc")
    }
}

/// A user-level RPC server on one core.
pub struct SoftRpcServer<Io: DatagramIo> {
    io: Io,
    procedures: Vec<Procedure>,
    costs: SoftRpcCosts,
    meter: Option<StepMeter>,
    counters: Counters,
}

impl<Io: DatagramIo> SoftRpcServer<Io> {
    pub fn new(io: Io, procedures: Vec<Procedure>, costs: SoftRpcCosts) -> SoftRpcServer<Io> {
        SoftRpcServer {
            io,
            procedures,
            costs,
            meter: None,
            counters: Counters::new(),
        }
    }
    pub fn set_meter(&mut self, meter: StepMeter) {
        self.meter = Some(meter);
    }
    pub fn counters(&self) -> Counters {
        let mut c = self.counters.clone();
        c.merge(&self.io.counters());
        c
    }

    /// Serve `n` requests (or forever if `None`).
    pub async fn serve(&mut self, n: Option<u64>) {
        if !self.io.start().await {
            self.counters.inc("drop.start_failed");
            return;
        }
        let mut served = 0;
        while n.is_none_or(|n| served < n) {
            let Some(dg) = self.io.recv(self.meter.as_ref()).await else {
                continue;
            };
            self.handle(dg).await;
            served += 1;
        }
    }

    async fn handle(&mut self, dg: Datagram) {
        let ctx = self.io.ctx().clone();
        let c = self.costs;
        let meter = self.meter.clone();
        let mark = |s: Step, t0| {
            if let Some(m) = &meter {
                m.charge(s, t0, ctx.local_now());
            }
        };
        let t0 = ctx.local_now();
        ctx.cycles(Category::NetworkStack, c.rpc_header_cycles);
        let Ok((h, off)) = oncrpc::parse_call(&dg.payload) else {
            self.counters.inc("drop.bad_rpc");
            return;
        };
        mark(Step::GeneralProtocol, t0);
        let t1 = ctx.local_now();
        ctx.cycles(Category::Application, c.service_lookup_cycles);
        mark(Step::IdentifyProcess, t1);
        let t2 = ctx.local_now();
        ctx.cycles(Category::Application, c.proc_lookup_cycles);
        let found = self
            .procedures
            .iter()
            .position(|p| p.prog == h.prog && p.vers == h.vers && p.proc_ == h.proc_);
        mark(Step::FindFunction, t2);
        let Some(i) = found else {
            self.reply(dg.from, h.xid, AcceptStat::ProcUnavail, &[])
                .await;
            self.counters.inc("error_replies");
            return;
        };
        let t3 = ctx.local_now();
        let args = oncrpc::decode_args(&dg.payload[off..], &self.procedures[i].args);
        ctx.cycles(
            Category::Application,
            c.xdr_arg_cycles * self.procedures[i].args.len() as u64,
        );
        mark(Step::Unmarshal, t3);
        let Ok(args) = args else {
            self.reply(dg.from, h.xid, AcceptStat::GarbageArgs, &[])
                .await;
            self.counters.inc("error_replies");
            return;
        };
        let t4 = ctx.local_now();
        ctx.cycles(Category::Application, c.call_cycles);
        mark(Step::Jump, t4);
        let handler = self.procedures[i].handler.clone();
        let outcome = handler(&ctx, args).await;
        match outcome {
            Outcome::Reply(v) => {
                ctx.cycles(Category::Application, c.xdr_result_cycles * v.len() as u64);
                let mut out = Vec::new();
                for x in &v {
                    oncrpc::put_value(&mut out, x);
                }
                self.reply(dg.from, h.xid, AcceptStat::Success, &out).await;
                self.counters.inc("served");
            }
            Outcome::Error(s) => {
                self.reply(dg.from, h.xid, s, &[]).await;
                self.counters.inc("error_replies");
            }
            Outcome::Call { .. } => {
                // Nested calls are Lauberhorn's continuation mechanism.
                self.reply(dg.from, h.xid, AcceptStat::SystemErr, &[]).await;
                self.counters.inc("drop.nested_unsupported");
            }
        }
        if let Some(m) = &meter {
            m.rpc_done();
        }
    }

    async fn reply(&mut self, to: Peer, xid: u32, stat: AcceptStat, results: &[u8]) {
        self.io
            .ctx()
            .cycles(Category::NetworkStack, self.costs.reply_build_cycles);
        let msg = oncrpc::build_reply(xid, stat, results);
        if !self.io.send(to, &msg).await {
            self.counters.inc("drop.send_failed");
        }
    }
}

/// Kernel bypass: a DPDK-style driver on a statically assigned core —
/// the core to itself, or time-sliced with other threads by the kernel
/// ([`DpdkIo::time_sliced`]).
pub struct DpdkIo {
    pmd: Pmd,
    mac: [u8; 6],
    costs: SoftRpcCosts,
    rx: Vec<Mbuf>,
    buf: Vec<u8>,
    counters: Counters,
    slicing: Option<Slicing>,
}

/// A bypass thread that shares its core under the kernel's time slicing:
/// it polls only while it is the core's running thread, and its poll
/// loop is a preemption point.
struct Slicing {
    disp: Dispatcher,
    tid: Tid,
    /// Fired by the RX ring's write-backs and by the end of the slice.
    wake: Rc<Notify>,
}

impl DpdkIo {
    /// Over `pmd` (started), answering from `mac`.
    pub fn new(pmd: Pmd, mac: [u8; 6], costs: SoftRpcCosts) -> DpdkIo {
        DpdkIo {
            pmd,
            mac,
            costs,
            rx: Vec::new(),
            buf: Vec::new(),
            counters: Counters::new(),
            slicing: None,
        }
    }
    pub fn pmd(&self) -> &Pmd {
        &self.pmd
    }

    /// Poll from thread `tid`, which `disp` time-slices with the other
    /// threads of its core (`disp` must have adopted it, on the core the
    /// driver's context is on): the thread waits for its turn before its
    /// first poll, and gives its core up when its slice ends; requests
    /// for it meanwhile wait in its RX ring.
    pub fn time_sliced(mut self, disp: &Dispatcher, tid: Tid) -> Result<DpdkIo, PmdError> {
        let wake = Rc::new(Notify::new(self.pmd.ctx().sim()));
        self.pmd.watch_rx(wake.clone())?;
        disp.watch_resched(tid, wake.clone())?;
        self.slicing = Some(Slicing {
            disp: disp.clone(),
            tid,
            wake,
        });
        Ok(self)
    }
}

impl DatagramIo for DpdkIo {
    fn ctx(&self) -> &CoreCtx {
        self.pmd.ctx()
    }
    fn counters(&self) -> Counters {
        self.counters.clone()
    }
    fn start<'a>(&'a mut self) -> IoFuture<'a, bool> {
        Box::pin(async move {
            // The queue is posted at launch, as `rte_eth_dev_start` does
            // before the polling threads run; a time-sliced thread then
            // waits for its turn on the core.
            if self.pmd.start().await.is_err() {
                return false;
            }
            match &self.slicing {
                Some(s) => s.disp.wait_turn(s.tid).await.is_ok(),
                None => true,
            }
        })
    }
    fn recv<'a>(&'a mut self, meter: Option<&'a StepMeter>) -> IoFuture<'a, Option<Datagram>> {
        Box::pin(async move {
            if self.rx.is_empty() {
                // (4) is replaced by busy polling: waiting is no step.
                loop {
                    if let Some(s) = &self.slicing
                        && s.disp.preempt_point(s.tid).await.is_err()
                    {
                        // The thread is gone: stop, as a socket server does.
                        self.counters.inc("io_failed");
                        std::future::pending::<()>().await;
                        return None;
                    }
                    let t0 = self.pmd.ctx().local_now();
                    match self.pmd.rx_burst(&mut self.rx, 1).await {
                        Ok(n) if n > 0 => {
                            if let Some(m) = meter {
                                m.charge(Step::ReadPacket, t0, self.pmd.ctx().local_now());
                            }
                            break;
                        }
                        Ok(_) => match &self.slicing {
                            // Spin until a request or the slice's end.
                            Some(s) => {
                                let (pmd, disp, tid) = (&self.pmd, &s.disp, s.tid);
                                pmd.ctx()
                                    .spin_until(&s.wake, || {
                                        pmd.rx_ready() || disp.need_resched(tid)
                                    })
                                    .await
                            }
                            None => self.pmd.wait_rx().await,
                        },
                        Err(_) => {
                            self.counters.inc("drop.rx_error");
                            return None;
                        }
                    }
                }
            }
            let m = self.rx.remove(0);
            let ctx = self.pmd.ctx().clone();
            let t0 = ctx.local_now();
            let read = self.pmd.read_packet(m, &mut self.buf);
            self.pmd.free(m);
            if let Some(mt) = meter {
                mt.charge(Step::ReadPacket, t0, ctx.local_now());
            }
            if read.is_err() {
                self.counters.inc("drop.rx_error");
                return None;
            }
            let t1 = ctx.local_now();
            ctx.cycles(Category::NetworkStack, self.costs.udp_parse_cycles);
            let parsed = parse_udp(&self.buf);
            if let Some(mt) = meter {
                mt.charge(Step::ProtocolProcessing, t1, ctx.local_now());
            }
            let Ok(v) = parsed else {
                self.counters.inc("drop.bad_frame");
                return None;
            };
            let from = Peer {
                flow: v.flow.reversed(),
                macs: Macs {
                    src: self.mac,
                    dst: self.buf[6..12].try_into().unwrap_or([0; 6]),
                },
            };
            self.counters.inc("datagrams");
            Some(Datagram {
                from,
                payload: self.buf[v.payload_offset..v.payload_offset + v.payload_len].to_vec(),
            })
        })
    }
    fn send<'a>(&'a mut self, to: Peer, payload: &'a [u8]) -> IoFuture<'a, bool> {
        Box::pin(async move {
            let size = (payload.len() + UDP_HEADERS_BYTES + FCS_BYTES).max(MIN_FRAME_BYTES);
            if size > MAX_FRAME_BYTES {
                return false;
            }
            let Ok(frame) = build_udp(to.macs, to.flow, payload, size) else {
                return false;
            };
            let Some(m) = self.pmd.alloc() else {
                return false;
            };
            if self.pmd.write_packet(m, &frame).is_err() {
                return false;
            }
            let mut tx = vec![m];
            while !tx.is_empty() {
                if self.pmd.tx_burst(&mut tx).await.is_err() {
                    return false;
                }
            }
            true
        })
    }
}

/// Bytes of the user buffer a [`SocketIo`] receives into (one Ethernet
/// frame's payload fits); the reply is built in the half after it.
const SOCKET_BUF_BYTES: usize = 2048;

/// The Linux baseline: one thread of a process, a UDP socket bound to the
/// service's port, `recvfrom` blocking until the kernel's receive path
/// has queued a datagram, `sendto` for the reply.
///
/// Steps (1)–(4) and (8)–(9) are read from the kernel's own stamps of
/// each datagram ([`nextio_os::net::RxStamps`]) and the core's ledger:
/// (4) the hard IRQ and softirq entry, (1) the driver's poll and GRO plus
/// `recvmsg`'s copy to user and the return (the process reading the
/// packet's contents), (2) IP, (3) UDP's socket lookup and enqueue, (9)
/// the context switch into the reader, (8) everything from the enqueue to
/// that switch (wake-up, NAPI completion, the re-arm, the scheduler's
/// pick).
///
/// After a failed system call other than a datagram's own (the socket or
/// thread gone) the I/O stops: `recv` never returns again, counted as
/// `io_failed`, so a server cannot spin on an error.
pub struct SocketIo {
    stack: NetStack,
    disp: Dispatcher,
    thread: Thread,
    fd: Fd,
    /// The process's receive buffer; the reply is built after it.
    buf: VirtAddr,
    local: (std::net::Ipv4Addr, u16),
    bytes: Vec<u8>,
    counters: Counters,
}

impl SocketIo {
    /// A socket of `process` bound to `port` on `stack`'s address, read by
    /// `thread` (adopted by `disp`, the dispatcher the stack uses).
    pub fn new(
        stack: NetStack,
        disp: Dispatcher,
        process: &Process,
        thread: Thread,
        port: u16,
    ) -> Result<SocketIo, nextio_os::net::NetError> {
        let fd = stack.socket(process.pid());
        let port = stack.bind(process.pid(), fd, port)?;
        let buf = process.mmap(2 * SOCKET_BUF_BYTES as u64, false)?;
        let local = (stack.config().ip, port);
        Ok(SocketIo {
            stack,
            disp,
            thread,
            fd,
            buf,
            local,
            bytes: Vec::new(),
            counters: Counters::new(),
        })
    }

    /// The reading thread's id.
    pub fn tid(&self) -> Tid {
        self.thread.tid
    }

    fn switched(&self) -> nextio_engine::Duration {
        let ctx = &self.thread.ctx;
        ctx.core()
            .ledger_at(ctx.local_now())
            .get(Category::ContextSwitch)
    }
}

impl DatagramIo for SocketIo {
    fn ctx(&self) -> &CoreCtx {
        &self.thread.ctx
    }
    fn counters(&self) -> Counters {
        self.counters.clone()
    }
    fn start<'a>(&'a mut self) -> IoFuture<'a, bool> {
        Box::pin(async move { self.disp.wait_turn(self.thread.tid).await.is_ok() })
    }
    fn recv<'a>(&'a mut self, meter: Option<&'a StepMeter>) -> IoFuture<'a, Option<Datagram>> {
        Box::pin(async move {
            let ctx = self.thread.ctx.clone();
            let switched0 = self.switched();
            let got = self
                .stack
                .recvfrom(
                    &ctx,
                    self.thread.tid,
                    self.fd,
                    self.buf,
                    SOCKET_BUF_BYTES,
                    false,
                )
                .await;
            let d = match got {
                Ok(d) => d,
                // The kernel counted the datagram it could not copy.
                Err(nextio_os::net::NetError::Access(_)) => return None,
                Err(_) => {
                    self.counters.inc("io_failed");
                    std::future::pending::<()>().await;
                    return None;
                }
            };
            let switch = self.switched().saturating_sub(switched0);
            let t0 = ctx.local_now();
            self.bytes.resize(d.len, 0);
            let read = ctx.load(self.buf, &mut self.bytes, Category::Application);
            if let Some(m) = meter {
                let s = d.stamps;
                m.charge(Step::Notify, s.irq_entry, s.poll_start);
                m.charge(Step::ReadPacket, s.poll_start, s.header_start);
                m.charge(Step::ProtocolProcessing, s.header_start, s.demux_start);
                m.charge(Step::Demultiplex, s.demux_start, s.queued);
                let switch_start = (nextio_engine::Time::ZERO
                    + (d.resumed - nextio_engine::Time::ZERO).saturating_sub(switch))
                .max(s.queued);
                m.charge(Step::Schedule, s.queued, switch_start);
                m.charge(Step::ContextSwitch, switch_start, d.resumed);
                m.charge(Step::ReadPacket, d.resumed, d.returned);
                m.charge(Step::ReadPacket, t0, ctx.local_now());
            }
            if read.is_err() {
                self.counters.inc("drop.rx_error");
                return None;
            }
            let mac = self.stack.config().mac;
            let from = Peer {
                flow: FlowKey {
                    src_ip: self.local.0,
                    dst_ip: d.src.0,
                    src_port: self.local.1,
                    dst_port: d.src.1,
                },
                macs: Macs {
                    src: mac,
                    dst: self.stack.neighbour(d.src.0).unwrap_or([0; 6]),
                },
            };
            self.counters.inc("datagrams");
            Some(Datagram {
                from,
                payload: std::mem::take(&mut self.bytes),
            })
        })
    }
    fn send<'a>(&'a mut self, to: Peer, payload: &'a [u8]) -> IoFuture<'a, bool> {
        Box::pin(async move {
            if payload.len() > SOCKET_BUF_BYTES {
                return false;
            }
            let ctx = self.thread.ctx.clone();
            let out = self.buf.offset(SOCKET_BUF_BYTES as u64);
            if ctx.store(out, payload, Category::Application).is_err() {
                return false;
            }
            self.stack
                .sendto(
                    &ctx,
                    self.thread.tid,
                    self.fd,
                    out,
                    payload.len(),
                    Some((to.flow.dst_ip, to.flow.dst_port)),
                )
                .await
                .is_ok()
        })
    }
}

/// The values a call carries, for callers that build them.
pub fn values(v: &[u64]) -> Vec<XdrValue> {
    v.iter().map(|x| XdrValue::U64(*x)).collect()
}
