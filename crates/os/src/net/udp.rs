//! UDP sockets of the kernel: bound and connected addresses, the receive
//! queue with its memory limit, the reader blocked on it, and the
//! demultiplexing of arriving datagrams to a socket (`__udp4_lib_lookup`).
//!
//! Invariants: a port is bound by at most one socket per local address;
//! a datagram queued on a socket is either received by exactly one
//! `recvfrom` or freed when the socket closes (counted); the receive
//! queue never exceeds its buffer limit (an arrival that would is
//! dropped and counted, as `UDP_MIB_RCVBUFERRORS`).

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;

use crate::kernel::{Pid, Tid};

use super::NetError;
use super::skb::{SKB_TRUESIZE_BYTES, Skb};

/// A file descriptor of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fd(pub u32);

/// A socket of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketId(pub usize);

/// `net.core.rmem_default`: 212992 bytes (Linux's default socket receive
/// buffer).
pub const RCVBUF_DEFAULT_BYTES: u64 = 212_992;

/// A UDP socket.
#[derive(Debug)]
pub struct UdpSocket {
    pub owner: Pid,
    pub local: Option<(Ipv4Addr, u16)>,
    pub remote: Option<(Ipv4Addr, u16)>,
    pub(super) queue: VecDeque<Skb>,
    queued_truesize: u64,
    pub rcvbuf_bytes: u64,
    /// The thread blocked in `recvfrom` on this socket, if any.
    pub(super) waiter: Option<Tid>,
    pub open: bool,
}

impl UdpSocket {
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// The sockets of one host.
#[derive(Debug, Default)]
pub struct Sockets {
    socks: Vec<UdpSocket>,
    fds: BTreeMap<(Pid, Fd), SocketId>,
    next_fd: BTreeMap<Pid, u32>,
    /// Bound sockets by local port.
    ports: BTreeMap<u16, Vec<SocketId>>,
    next_ephemeral: u16,
}

/// First port of Linux's ephemeral range (`net.ipv4.ip_local_port_range`
/// starts at 32768).
const EPHEMERAL_FIRST: u16 = 32768;

impl Sockets {
    /// `socket(AF_INET, SOCK_DGRAM)` for `pid`: descriptors start at 3.
    pub fn socket(&mut self, pid: Pid) -> Fd {
        let id = SocketId(self.socks.len());
        self.socks.push(UdpSocket {
            owner: pid,
            local: None,
            remote: None,
            queue: VecDeque::new(),
            queued_truesize: 0,
            rcvbuf_bytes: RCVBUF_DEFAULT_BYTES,
            waiter: None,
            open: true,
        });
        let n = self.next_fd.entry(pid).or_insert(3);
        let fd = Fd(*n);
        *n += 1;
        self.fds.insert((pid, fd), id);
        fd
    }

    /// The socket `pid`'s descriptor `fd` names: `EBADF` for any other
    /// process's descriptor, however it was learned.
    pub fn lookup_fd(&self, pid: Pid, fd: Fd) -> Result<SocketId, NetError> {
        self.fds
            .get(&(pid, fd))
            .copied()
            .filter(|s| self.socks[s.0].open)
            .ok_or(NetError::BadFd(fd))
    }

    pub fn get(&self, id: SocketId) -> &UdpSocket {
        &self.socks[id.0]
    }
    pub fn get_mut(&mut self, id: SocketId) -> &mut UdpSocket {
        &mut self.socks[id.0]
    }

    /// `bind`: port 0 picks an ephemeral port.
    pub fn bind(&mut self, id: SocketId, ip: Ipv4Addr, port: u16) -> Result<u16, NetError> {
        if self.socks[id.0].local.is_some() {
            return Err(NetError::Invalid("socket already bound".into()));
        }
        let port = if port == 0 { self.ephemeral()? } else { port };
        let taken = self.ports.get(&port).is_some_and(|v| {
            v.iter().any(|s| {
                let l = self.socks[s.0].local.map(|(a, _)| a);
                l == Some(ip) || l == Some(Ipv4Addr::UNSPECIFIED) || ip == Ipv4Addr::UNSPECIFIED
            })
        });
        if taken {
            return Err(NetError::AddrInUse(port));
        }
        self.ports.entry(port).or_default().push(id);
        self.socks[id.0].local = Some((ip, port));
        Ok(port)
    }

    fn ephemeral(&mut self) -> Result<u16, NetError> {
        for _ in 0..=(u16::MAX - EPHEMERAL_FIRST) {
            let p = EPHEMERAL_FIRST.wrapping_add(self.next_ephemeral);
            self.next_ephemeral = (self.next_ephemeral + 1) % (u16::MAX - EPHEMERAL_FIRST);
            if !self.ports.contains_key(&p) {
                return Ok(p);
            }
        }
        Err(NetError::AddrInUse(0))
    }

    /// `connect`: fix the remote address (binding an ephemeral port first
    /// if needed, with local address `ip`).
    pub fn connect(
        &mut self,
        id: SocketId,
        ip: Ipv4Addr,
        remote: (Ipv4Addr, u16),
    ) -> Result<(), NetError> {
        if remote.1 == 0 {
            return Err(NetError::Invalid("connect to port 0".into()));
        }
        if self.socks[id.0].local.is_none() {
            self.bind(id, ip, 0)?;
        }
        self.socks[id.0].remote = Some(remote);
        Ok(())
    }

    /// `close`: frees the descriptor; returns the datagrams still queued
    /// (their buffers are the caller's to free).
    pub fn close(&mut self, pid: Pid, fd: Fd) -> Result<Vec<Skb>, NetError> {
        let id = self.lookup_fd(pid, fd)?;
        self.fds.remove(&(pid, fd));
        let s = &mut self.socks[id.0];
        s.open = false;
        s.waiter = None;
        s.queued_truesize = 0;
        if let Some((_, port)) = s.local
            && let Some(v) = self.ports.get_mut(&port)
        {
            v.retain(|x| *x != id);
            if v.is_empty() {
                self.ports.remove(&port);
            }
        }
        Ok(self.socks[id.0].queue.drain(..).collect())
    }

    /// `__udp4_lib_lookup`: the socket for a datagram to `dst` from `src`:
    /// a connected socket whose remote is `src` first, else one bound to
    /// the port and not connected elsewhere.
    pub fn demux(&self, dst: (Ipv4Addr, u16), src: (Ipv4Addr, u16)) -> Option<SocketId> {
        let cands = self.ports.get(&dst.1)?;
        let local_ok = |s: &UdpSocket| {
            s.local
                .is_some_and(|(a, _)| a == dst.0 || a == Ipv4Addr::UNSPECIFIED)
        };
        cands
            .iter()
            .copied()
            .find(|id| {
                let s = &self.socks[id.0];
                s.open && local_ok(s) && s.remote == Some(src)
            })
            .or_else(|| {
                cands.iter().copied().find(|id| {
                    let s = &self.socks[id.0];
                    s.open && local_ok(s) && s.remote.is_none()
                })
            })
    }

    /// Queue `skb` on `id` if its receive buffer has room; otherwise hand
    /// it back. Returns the reader to wake, if one is blocked.
    pub fn enqueue(&mut self, id: SocketId, skb: Skb) -> Result<Option<Tid>, Skb> {
        let s = &mut self.socks[id.0];
        if !s.open || s.queued_truesize + SKB_TRUESIZE_BYTES > s.rcvbuf_bytes {
            return Err(skb);
        }
        s.queued_truesize += SKB_TRUESIZE_BYTES;
        s.queue.push_back(skb);
        Ok(s.waiter.take())
    }

    /// Take the oldest datagram of `id`.
    pub fn dequeue(&mut self, id: SocketId) -> Option<Skb> {
        let s = &mut self.socks[id.0];
        let skb = s.queue.pop_front()?;
        s.queued_truesize -= SKB_TRUESIZE_BYTES;
        Some(skb)
    }

    /// Datagrams waiting on every open socket.
    pub fn queued_total(&self) -> usize {
        self.socks
            .iter()
            .filter(|s| s.open)
            .map(|s| s.queue.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::skb::{BufId, RxStamps};

    fn skb(n: u32) -> Skb {
        Skb {
            buf: BufId(n),
            payload_offset: 42,
            payload_len: 18,
            src: (Ipv4Addr::new(10, 0, 0, 2), 9),
            stamps: RxStamps::default(),
        }
    }

    #[test]
    fn demux_prefers_connected_and_ports_are_exclusive() {
        let mut s = Sockets::default();
        let me = Ipv4Addr::new(10, 0, 0, 1);
        let peer = (Ipv4Addr::new(10, 0, 0, 2), 7);
        let a = s.socket(Pid(0));
        let ida = s.lookup_fd(Pid(0), a).unwrap();
        s.bind(ida, me, 5000).unwrap();
        let b = s.socket(Pid(1));
        let idb = s.lookup_fd(Pid(1), b).unwrap();
        assert_eq!(s.bind(idb, me, 5000), Err(NetError::AddrInUse(5000)));
        s.connect(idb, me, peer).unwrap();
        assert_ne!(s.get(idb).local.unwrap().1, 5000);
        let pb = s.get(idb).local.unwrap().1;
        assert_eq!(s.demux((me, 5000), peer), Some(ida));
        assert_eq!(s.demux((me, pb), peer), Some(idb));
        assert_eq!(s.demux((me, pb), (peer.0, 8)), None, "connected elsewhere");
        // Another process cannot use a descriptor it did not get.
        assert_eq!(s.lookup_fd(Pid(2), a), Err(NetError::BadFd(a)));
        assert_eq!(s.lookup_fd(Pid(1), Fd(4)), Err(NetError::BadFd(Fd(4))));
    }

    #[test]
    fn the_receive_buffer_bounds_the_queue() {
        let mut s = Sockets::default();
        let fd = s.socket(Pid(0));
        let id = s.lookup_fd(Pid(0), fd).unwrap();
        s.get_mut(id).rcvbuf_bytes = 3 * SKB_TRUESIZE_BYTES;
        for i in 0..3 {
            assert!(s.enqueue(id, skb(i)).is_ok());
        }
        assert!(s.enqueue(id, skb(3)).is_err());
        assert_eq!(s.dequeue(id).unwrap().buf, BufId(0));
        assert!(s.enqueue(id, skb(4)).is_ok());
        let left = s.close(Pid(0), fd).unwrap();
        assert_eq!(left.len(), 3);
        assert_eq!(s.lookup_fd(Pid(0), fd), Err(NetError::BadFd(fd)));
    }
}
