//! Accio's user library (§6 "User-Application API"): POSIX-shaped
//! `socket`, `bind`, `connect`, `send`, `sendto`, `recv`, `recvfrom` and
//! `close`, plus the `accelerate` ioctl, for one thread.
//!
//! The fast path of `send` and `recv` touches only the connection's ring
//! (ordinary loads and stores of pinned memory) and its row in the I/O
//! Connection Table (uncached loads and stores the core checks against
//! the row's address space): no system call. `recv` reads `RX_TAIL`
//! only when it has consumed everything it last saw, copies one record's
//! payload into the caller's buffer and stores `RX_HEAD`; `send` writes a
//! record and stores `TX_TAIL`, which notifies the NIC. One system call
//! blocks when the ring is empty (or full) — the kernel suspends the row
//! and the NIC's pointer update wakes the thread through the table.
//!
//! A miss (the row is not resident in the core's table) traps to the
//! kernel's refill handler and the access is retried, as a TLB miss is.
//! When the kernel has moved the connection to the kernel path, the
//! library uses the ordinary socket calls on the fallback socket until
//! the kernel says the fast path is back; datagrams that took the kernel
//! path are received before the ring's.
//!
//! Deviation from the paper, stated: the paper's `send`/`recv` take
//! buffers from the connection's pinned pool; this library copies between
//! the ring and any caller buffer (POSIX semantics), a copy the cache
//! model charges.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use nextio_engine::Category;
use nextio_hw::accio::regs::row;
use nextio_hw::accio::ring;
use nextio_hw::cpu::{CoreCtx, MmioAccessError};
use nextio_hw::fabric::{GuardFault, MmioError};
use nextio_hw::mem::VirtAddr;
use nextio_os::accio::{Accelerated, AccioError, AccioOs, Dir, FallbackRecv, Refill, WaitResult};
use nextio_os::net::{Fd, NetError};
use nextio_os::{Pid, Tid};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An IPv4 address and port.
pub type SockAddr = (Ipv4Addr, u16);

/// The library's own instructions per call, in cycles of a server core:
/// the root preset's `[accio_lib]`, where each value's source is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibCosts {
    pub send_cycles: u64,
    pub recv_cycles: u64,
    /// Each record past the first that [`Accio::recv_batch`] walks (its
    /// header parsed, its length checked, the head advanced), beside the
    /// one `recv_cycles` the call pays.
    pub batch_record_cycles: u64,
}

impl Default for LibCosts {
    /// The root preset's `[accio_lib]`.
    fn default() -> Self {
        nextio_presets::root_section("accio_lib")
    }
}

impl LibCosts {
    pub fn scaled(self, factor: f64) -> LibCosts {
        let s = |c: u64| (c as f64 * factor).round() as u64;
        LibCosts {
            send_cycles: s(self.send_cycles),
            recv_cycles: s(self.recv_cycles),
            batch_record_cycles: s(self.batch_record_cycles),
        }
    }
}

/// Refills of one row access before the library gives up (one is enough
/// unless another core's kernel took the row away in between).
const MAX_REFILLS: u32 = 4;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum LibError {
    /// The core refused an access to a row: another address space's, or
    /// a field the user may not store (SIGSEGV in a real process).
    #[error("protection fault on connection {0}'s row")]
    Protection(u32),
    #[error("EBADF: {0:?}")]
    BadFd(Fd),
    #[error("EMSGSIZE: {0} B")]
    TooLong(usize),
    #[error("connection {0}'s row is still not resident after a refill")]
    StillMissing(u32),
    #[error("the ring holds a record the NIC cannot have written")]
    Corrupt,
    #[error(transparent)]
    Accio(#[from] AccioError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("memory: {0}")]
    Access(String),
}

impl From<nextio_hw::mem::AccessError> for LibError {
    fn from(e: nextio_hw::mem::AccessError) -> LibError {
        LibError::Access(e.to_string())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Fast,
    Fallback,
}

/// The library's view of one accelerated socket.
#[derive(Clone, Copy, Debug)]
struct Accel {
    info: Accelerated,
    path: Path,
    rx_head: u64,
    rx_tail_seen: u64,
    tx_tail: u64,
    tx_head_seen: u64,
}

/// What waiting for the RX ring came to.
enum RxReady {
    /// Records are between `rx_head` and `rx_tail_seen`.
    Ring,
    /// A datagram came by the kernel path instead.
    Fallback(usize, SockAddr),
}

/// What a row access ran into.
enum RowFault {
    Fallback,
    Err(LibError),
}

/// One thread's use of the library.
pub struct Accio {
    os: AccioOs,
    tid: Tid,
    pid: Pid,
    ctx: CoreCtx,
    costs: LibCosts,
    socks: BTreeMap<Fd, Option<Accel>>,
}

impl Accio {
    /// The library for thread `tid` of `pid`, running on `ctx`.
    pub fn new(os: AccioOs, pid: Pid, tid: Tid, ctx: CoreCtx, costs: LibCosts) -> Accio {
        Accio {
            os,
            tid,
            pid,
            ctx,
            costs,
            socks: BTreeMap::new(),
        }
    }

    pub fn ctx(&self) -> &CoreCtx {
        &self.ctx
    }
    pub fn tid(&self) -> Tid {
        self.tid
    }

    fn round_trip(&self) {
        let c = self.os.stack().config().costs;
        self.ctx.cycles(
            Category::Kernel,
            c.syscall_entry_cycles + c.syscall_exit_cycles,
        );
    }

    /// The thread may have moved while it slept.
    fn refresh_ctx(&mut self) {
        if let Ok(c) = self.os.dispatcher().ctx(self.tid) {
            self.ctx = c;
        }
    }

    /// `socket(AF_INET, SOCK_DGRAM, 0)`.
    pub fn socket(&mut self) -> Fd {
        self.round_trip();
        let fd = self.os.stack().socket(self.pid);
        self.socks.insert(fd, None);
        fd
    }

    /// `bind` to `port` of the host's address (0: ephemeral).
    pub fn bind(&mut self, fd: Fd, port: u16) -> Result<u16, LibError> {
        self.round_trip();
        Ok(self.os.stack().bind(self.pid, fd, port)?)
    }

    /// `connect` to `remote`.
    pub fn connect(&mut self, fd: Fd, remote: SockAddr) -> Result<(), LibError> {
        self.round_trip();
        Ok(self.os.stack().connect(self.pid, fd, remote)?)
    }

    /// `ioctl(fd, ACCIO_ACCELERATE)`: put the socket on the fast path.
    pub async fn accelerate(&mut self, fd: Fd) -> Result<u32, LibError> {
        let info = self.os.accelerate(&self.ctx, self.tid, fd).await?;
        self.socks.insert(
            fd,
            Some(Accel {
                info,
                path: Path::Fast,
                rx_head: 0,
                rx_tail_seen: 0,
                tx_tail: 0,
                tx_head_seen: 0,
            }),
        );
        Ok(info.conn)
    }

    fn accel(&self, fd: Fd) -> Result<Option<Accel>, LibError> {
        self.socks.get(&fd).copied().ok_or(LibError::BadFd(fd))
    }

    /// Load or store `field` of `a`'s row, refilling on a miss.
    async fn row(&mut self, a: &Accel, field: u64, store: Option<u64>) -> Result<u64, RowFault> {
        let va = a.info.row.offset(field);
        // A refill makes the row resident before it returns, so one retry
        // suffices; a bound turns a kernel that says "resident" for a row
        // the core cannot find into an error, not a spin.
        let mut refills = 0;
        loop {
            let r = match store {
                Some(v) => {
                    self.ctx.cycles(
                        Category::NetworkStack,
                        self.os.config().costs.mmio_store_cycles,
                    );
                    self.ctx
                        .mmio_write(va, &v.to_le_bytes(), "ict")
                        .await
                        .map(|_| v)
                }
                None => self
                    .ctx
                    .mmio_read(va, 8, "ict", Category::NetworkStack)
                    .await
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))),
            };
            match r {
                Ok(v) => return Ok(v),
                Err(MmioAccessError::Mmio(MmioError::Guarded { fault, .. })) => match fault {
                    GuardFault::Protection => {
                        return Err(RowFault::Err(LibError::Protection(a.info.conn)));
                    }
                    GuardFault::Miss if refills >= MAX_REFILLS => {
                        return Err(RowFault::Err(LibError::StillMissing(a.info.conn)));
                    }
                    GuardFault::Miss => {
                        refills += 1;
                        match self.os.refill(&self.ctx, self.tid, a.info.conn).await {
                            Ok(Refill::Resident) => continue,
                            Ok(Refill::Fallback) => return Err(RowFault::Fallback),
                            Err(AccioError::NotOwner(c)) => {
                                return Err(RowFault::Err(LibError::Protection(c)));
                            }
                            Err(e) => return Err(RowFault::Err(e.into())),
                        }
                    }
                },
                Err(e) => return Err(RowFault::Err(LibError::Access(e.to_string()))),
            }
        }
    }

    fn save(&mut self, fd: Fd, a: Accel) {
        self.socks.insert(fd, Some(a));
    }

    /// Wait until the RX ring of `a` holds records (reading `RX_TAIL`
    /// only when everything seen is consumed, blocking in one call when
    /// it is empty) or a datagram arrives by the kernel path.
    async fn rx_ready(
        &mut self,
        a: &mut Accel,
        buf: VirtAddr,
        cap: usize,
    ) -> Result<RxReady, LibError> {
        let conn = a.info.conn;
        loop {
            if a.path == Path::Fallback {
                match self
                    .os
                    .fallback_recv(&self.ctx, self.tid, conn, buf, cap, false)
                    .await?
                {
                    FallbackRecv::Data(d) => {
                        self.refresh_ctx();
                        return Ok(RxReady::Fallback(d.len, d.src));
                    }
                    FallbackRecv::Accelerated => {
                        self.refresh_ctx();
                        a.path = Path::Fast;
                        continue;
                    }
                }
            }
            if a.rx_tail_seen == a.rx_head {
                match self.row(a, row::RX_TAIL, None).await {
                    Ok(t) => a.rx_tail_seen = t,
                    Err(RowFault::Fallback) => {
                        a.path = Path::Fallback;
                        continue;
                    }
                    Err(RowFault::Err(e)) => return Err(e),
                }
                if a.rx_tail_seen == a.rx_head {
                    let w = self
                        .os
                        .wait(&self.ctx, self.tid, conn, Dir::Rx, a.rx_tail_seen)
                        .await?;
                    self.refresh_ctx();
                    match w {
                        WaitResult::Ready => {}
                        WaitResult::Fallback => a.path = Path::Fallback,
                        WaitResult::FallbackData => {
                            if let FallbackRecv::Data(d) = self
                                .os
                                .fallback_recv(&self.ctx, self.tid, conn, buf, cap, true)
                                .await?
                            {
                                return Ok(RxReady::Fallback(d.len, d.src));
                            }
                        }
                    }
                    continue;
                }
            }
            return Ok(RxReady::Ring);
        }
    }

    /// `recv(fd, buf, cap)`: bytes copied.
    pub async fn recv(&mut self, fd: Fd, buf: VirtAddr, cap: usize) -> Result<usize, LibError> {
        Ok(self.recvfrom(fd, buf, cap).await?.0)
    }

    /// `recvfrom(fd, buf, cap)`: bytes copied and the sender.
    pub async fn recvfrom(
        &mut self,
        fd: Fd,
        buf: VirtAddr,
        cap: usize,
    ) -> Result<(usize, SockAddr), LibError> {
        let Some(mut a) = self.accel(fd)? else {
            let d = self
                .os
                .stack()
                .recvfrom(&self.ctx, self.tid, fd, buf, cap, false)
                .await?;
            return Ok((d.len, d.src));
        };
        loop {
            if let RxReady::Fallback(n, src) = self.rx_ready(&mut a, buf, cap).await? {
                self.save(fd, a);
                return Ok((n, src));
            }
            // A record is at the head.
            self.ctx
                .cycles(Category::NetworkStack, self.costs.recv_cycles);
            let Some((n, src)) = self.read_record(&mut a, buf, cap)? else {
                continue;
            };
            let head = a.rx_head;
            match self.row(&a, row::RX_HEAD, Some(head)).await {
                Ok(_) | Err(RowFault::Fallback) => {}
                Err(RowFault::Err(e)) => return Err(e),
            }
            self.save(fd, a);
            return Ok((n, src));
        }
    }

    /// Consume the record at `a`'s head (which `rx_tail_seen` covers): its
    /// payload, at most `cap` bytes, copied to `buf`; `None` for a pad.
    /// Moves the library's head, not the row's.
    fn read_record(
        &mut self,
        a: &mut Accel,
        buf: VirtAddr,
        cap: usize,
    ) -> Result<Option<(usize, SockAddr)>, LibError> {
        let rx = a.info.rx;
        let at = rx.va.offset(a.rx_head % rx.bytes);
        let mut h = [0u8; ring::HEADER_BYTES as usize];
        self.ctx.load(at, &mut h, Category::NetworkStack)?;
        let hdr = ring::RecordHeader::new(&h[..]).ok_or(LibError::Corrupt)?;
        if hdr.is_pad() {
            a.rx_head += rx.bytes - a.rx_head % rx.bytes;
            return Ok(None);
        }
        let len = hdr.len() as u64;
        let rec = ring::record_bytes(len);
        if len > ring::MAX_PAYLOAD_BYTES || a.rx_head + rec > a.rx_tail_seen {
            return Err(LibError::Corrupt);
        }
        let src = (hdr.ip(), hdr.port());
        let n = (len as usize).min(cap);
        let mut data = vec![0u8; n];
        self.ctx.load(
            at.offset(ring::HEADER_BYTES),
            &mut data,
            Category::NetworkStack,
        )?;
        self.ctx.store(buf, &data, Category::Application)?;
        a.rx_head += rec;
        Ok(Some((n, src)))
    }

    /// Receive a batch, Ensō-style (the `accio-with-enso` design, beyond
    /// the paper): every record up to the `RX_TAIL` last read, at most
    /// `max`, the i-th payload (at most `slot` bytes) copied to
    /// `buf + i × slot`, then one `RX_HEAD` store for the whole batch —
    /// one pointer update consumes it. Waits as `recv` does (one blocking
    /// call when the ring is empty). A datagram that came by the kernel
    /// path is returned alone. Works on any accelerated socket; it pays
    /// off on a streaming ring, whose NIC posts `RX_TAIL` once per batch.
    pub async fn recv_batch(
        &mut self,
        fd: Fd,
        buf: VirtAddr,
        slot: usize,
        max: usize,
    ) -> Result<Vec<(usize, SockAddr)>, LibError> {
        let Some(mut a) = self.accel(fd)? else {
            return Ok(vec![self.recvfrom(fd, buf, slot).await?]);
        };
        let mut got = Vec::new();
        if max == 0 {
            return Ok(got);
        }
        while got.is_empty() {
            if let RxReady::Fallback(n, src) = self.rx_ready(&mut a, buf, slot).await? {
                self.save(fd, a);
                return Ok(vec![(n, src)]);
            }
            while got.len() < max && a.rx_head != a.rx_tail_seen {
                let cost = if got.is_empty() {
                    self.costs.recv_cycles
                } else {
                    self.costs.batch_record_cycles
                };
                self.ctx.cycles(Category::NetworkStack, cost);
                let dst = buf.offset((got.len() * slot) as u64);
                if let Some(d) = self.read_record(&mut a, dst, slot)? {
                    got.push(d);
                }
            }
        }
        let head = a.rx_head;
        match self.row(&a, row::RX_HEAD, Some(head)).await {
            Ok(_) | Err(RowFault::Fallback) => {}
            Err(RowFault::Err(e)) => return Err(e),
        }
        self.save(fd, a);
        Ok(got)
    }

    /// `send(fd, buf, len)` on a connected socket.
    pub async fn send(&mut self, fd: Fd, buf: VirtAddr, len: usize) -> Result<usize, LibError> {
        self.sendto(fd, buf, len, None).await
    }

    /// `sendto(fd, buf, len, dst)`.
    pub async fn sendto(
        &mut self,
        fd: Fd,
        buf: VirtAddr,
        len: usize,
        dst: Option<SockAddr>,
    ) -> Result<usize, LibError> {
        let Some(mut a) = self.accel(fd)? else {
            return Ok(self
                .os
                .stack()
                .sendto(&self.ctx, self.tid, fd, buf, len, dst)
                .await?);
        };
        if len as u64 > ring::MAX_PAYLOAD_BYTES {
            return Err(LibError::TooLong(len));
        }
        let conn = a.info.conn;
        let tx = a.info.tx;
        let rec = ring::record_bytes(len as u64);
        loop {
            if a.path == Path::Fallback {
                let (n, back) = self
                    .os
                    .fallback_send(&self.ctx, self.tid, conn, buf, len, dst)
                    .await?;
                if back {
                    a.path = Path::Fast;
                }
                self.save(fd, a);
                return Ok(n);
            }
            let pad = ring::pad_before(a.tx_tail, tx.bytes, rec);
            if ring::free_bytes(a.tx_head_seen, a.tx_tail, tx.bytes) < pad + rec {
                match self.row(&a, row::TX_HEAD, None).await {
                    Ok(h) => a.tx_head_seen = h,
                    Err(RowFault::Fallback) => {
                        a.path = Path::Fallback;
                        continue;
                    }
                    Err(RowFault::Err(e)) => return Err(e),
                }
                if ring::free_bytes(a.tx_head_seen, a.tx_tail, tx.bytes) < pad + rec {
                    let w = self
                        .os
                        .wait(&self.ctx, self.tid, conn, Dir::Tx, a.tx_head_seen)
                        .await?;
                    self.refresh_ctx();
                    if w == WaitResult::Fallback {
                        a.path = Path::Fallback;
                    }
                    continue;
                }
            }
            self.ctx
                .cycles(Category::NetworkStack, self.costs.send_cycles);
            if pad > 0 {
                self.ctx.store(
                    tx.va.offset(a.tx_tail % tx.bytes),
                    &ring::pad_header(),
                    Category::NetworkStack,
                )?;
            }
            let mut record = Vec::with_capacity(rec as usize);
            let peer = dst.unwrap_or((Ipv4Addr::UNSPECIFIED, 0));
            record.extend_from_slice(&ring::header(len as u16, peer));
            let mut payload = vec![0u8; len];
            self.ctx.load(buf, &mut payload, Category::Application)?;
            record.extend_from_slice(&payload);
            record.resize(rec as usize, 0);
            self.ctx.store(
                tx.va.offset((a.tx_tail + pad) % tx.bytes),
                &record,
                Category::NetworkStack,
            )?;
            let tail = a.tx_tail + pad + rec;
            match self.row(&a, row::TX_TAIL, Some(tail)).await {
                Ok(_) => {
                    a.tx_tail = tail;
                    self.save(fd, a);
                    return Ok(len);
                }
                Err(RowFault::Fallback) => {
                    // The record stays unsent in the ring; the kernel path
                    // carries the datagram.
                    a.path = Path::Fallback;
                    continue;
                }
                Err(RowFault::Err(e)) => return Err(e),
            }
        }
    }

    /// `close(fd)`.
    pub async fn close(&mut self, fd: Fd) -> Result<(), LibError> {
        self.socks.remove(&fd).ok_or(LibError::BadFd(fd))?;
        self.os.close(&self.ctx, self.tid, fd).await?;
        Ok(())
    }

    /// The thread exits: its rows are released.
    pub async fn exit(self) -> Result<(), LibError> {
        self.os.thread_exit(&self.ctx, self.tid).await?;
        Ok(())
    }

    /// The connection id `fd` was accelerated as.
    pub fn conn(&self, fd: Fd) -> Option<u32> {
        self.socks.get(&fd).copied().flatten().map(|a| a.info.conn)
    }

    /// The rings of `fd`'s connection, for tests that look at memory.
    pub fn rings(&self, fd: Fd) -> Option<Accelerated> {
        self.socks.get(&fd).copied().flatten().map(|a| a.info)
    }
}
