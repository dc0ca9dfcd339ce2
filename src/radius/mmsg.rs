//! Datagrams in batches: one `recvmmsg(2)` takes up to [`RECV_BATCH`] datagrams, one
//! `sendmmsg(2)` sends the answers made meanwhile.
//!
//! Under load a RADIUS port always has datagrams waiting; taking them one `recvfrom` at a time
//! and answering each with its own `sendto` costs two system calls per request, about as much
//! as the rest of the receive path. [`RecvBatch::recv`] takes whatever is queued (up to the
//! batch size) in one call, non-blocking, through tokio's readiness (`try_io`), so a receive
//! task still sleeps on the reactor when the socket is empty; the answers decided on the receive
//! task go into a [`SendBatch`], flushed once per batch. Other systems than Linux fall back to
//! one datagram per call.
//!
//! Datagrams the kernel dropped because the socket's receive buffer was full never reach us;
//! with [`enable_drop_count`] (`SO_RXQ_OVFL`) each datagram received after such a drop carries
//! the socket's drop count so far, which [`RecvBatch::kernel_drops`] returns, so the shell can
//! count them as its own drops rather than leave them to `/proc/net/snmp`.

use std::io;
use std::net::SocketAddr;

use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::radius::codec::MAX_PACKET_LEN;

/// Datagrams taken per receive call at most.
pub const RECV_BATCH: usize = 32;

/// Control-message space per datagram: one `SO_RXQ_OVFL` message (`CMSG_SPACE(4)`, 24 octets
/// on 64-bit Linux) with room to spare; `u64` for the alignment `cmsghdr` needs.
const CONTROL_WORDS: usize = 8;

/// Asks the kernel to attach the socket's drop count to received datagrams (`SO_RXQ_OVFL`).
///
/// # Errors
/// The `setsockopt` error; other systems than Linux: `Unsupported`.
#[cfg(target_os = "linux")]
pub fn enable_drop_count(socket: &impl std::os::fd::AsRawFd) -> io::Result<()> {
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
}

/// `setsockopt(2)` of an option whose value is a C `int`, for the options `socket2` does not
/// offer (`SO_RXQ_OVFL`, `SO_RCVBUFFORCE`; the integration tests' clients use it too).
///
/// # Errors
/// The `setsockopt` error.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
pub fn set_int_option(
    socket: &impl std::os::fd::AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the descriptor is open for the call (borrowed); the value points to a live c_int
    // whose size is passed as the option length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn enable_drop_count<T>(_socket: &T) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Buffers for one batch: [`RECV_BATCH`] datagrams of up to [`MAX_PACKET_LEN`] octets (a longer
/// datagram is cut there, as a single `recvfrom` into that buffer would cut it).
pub struct RecvBatch {
    bufs: Vec<u8>,
    lens: [usize; RECV_BATCH],
    srcs: [Option<SocketAddr>; RECV_BATCH],
    count: usize,
    /// Per datagram, the space for its control messages.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    control: Box<[[u64; CONTROL_WORDS]; RECV_BATCH]>,
    /// The socket's drop count carried by the latest datagram that carried one.
    drops: Option<u32>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            bufs: vec![0; RECV_BATCH * MAX_PACKET_LEN],
            lens: [0; RECV_BATCH],
            srcs: [None; RECV_BATCH],
            count: 0,
            control: Box::new([[0; CONTROL_WORDS]; RECV_BATCH]),
            drops: None,
        }
    }
}

impl RecvBatch {
    /// Takes the datagrams queued on `socket` (at least one, at most [`RECV_BATCH`]); waits on
    /// the reactor while there are none. Returns how many.
    ///
    /// # Errors
    /// The socket's receive error.
    pub async fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        loop {
            socket.readable().await?;
            match socket.try_io(Interest::READABLE, || self.recv_now(socket)) {
                Ok(n) => {
                    self.count = n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The datagrams of the last [`RecvBatch::recv`], in arrival order, with their sources.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        (0..self.count).filter_map(|i| {
            let src = (*self.srcs.get(i)?)?;
            let len = *self.lens.get(i)?;
            let start = i * MAX_PACKET_LEN;
            Some((self.bufs.get(start..start + len.min(MAX_PACKET_LEN))?, src))
        })
    }

    /// The number of datagrams the kernel has dropped on this socket since it was opened
    /// (receive buffer full), as carried by the latest datagram that carried one in this or an
    /// earlier batch: `None` until one did (none dropped yet, or [`enable_drop_count`] not set).
    /// The count is the kernel's `u32`: it wraps.
    pub fn kernel_drops(&self) -> Option<u32> {
        self.drops
    }

    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn recv_now(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY (all of the below): zeroed `sockaddr_storage`, `iovec` and `mmsghdr` are valid
        // values of these plain C structs.
        let mut addrs: [libc::sockaddr_storage; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let addr_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        for (i, (chunk, control)) in self
            .bufs
            .chunks_exact_mut(MAX_PACKET_LEN)
            .zip(self.control.iter_mut())
            .enumerate()
        {
            let (Some(iov), Some(msg), Some(addr)) =
                (iovs.get_mut(i), msgs.get_mut(i), addrs.get_mut(i))
            else {
                break;
            };
            iov.iov_base = chunk.as_mut_ptr().cast();
            iov.iov_len = chunk.len();
            msg.msg_hdr.msg_name = std::ptr::from_mut(addr).cast();
            msg.msg_hdr.msg_namelen = addr_len;
            msg.msg_hdr.msg_iov = std::ptr::from_mut(iov);
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_hdr.msg_control = control.as_mut_ptr().cast();
            msg.msg_hdr.msg_controllen = std::mem::size_of_val(control);
        }
        // SAFETY: the descriptor is open (borrowed from `socket`) for the call; each of the
        // RECV_BATCH headers points at its own live sockaddr_storage (length passed), at one
        // iovec covering its own MAX_PACKET_LEN slice of `self.bufs` and at its own control
        // buffer (length passed), all of which outlive the call; recvmmsg writes only inside
        // those.
        let rc = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                RECV_BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = usize::try_from(rc).map_err(|_| io::Error::last_os_error())?;
        for i in 0..n.min(RECV_BATCH) {
            let (Some(msg), Some(addr)) = (msgs.get(i), addrs.get(i)) else {
                break;
            };
            if let (Some(len), Some(src)) = (self.lens.get_mut(i), self.srcs.get_mut(i)) {
                *len = msg.msg_len as usize;
                *src = socket_addr(addr, msg.msg_hdr.msg_namelen);
            }
            // SAFETY: recvmmsg filled this header's control buffer and set its msg_controllen
            // (at most the buffer's length); the buffer is alive and unchanged.
            if let Some(d) = unsafe { drop_count(&msg.msg_hdr) } {
                self.drops = Some(d);
            }
        }
        Ok(n.min(RECV_BATCH))
    }

    #[cfg(not(target_os = "linux"))]
    fn recv_now(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let buf = self.bufs.get_mut(..MAX_PACKET_LEN).unwrap_or_default();
        let (n, src) = socket.try_recv_from(buf)?;
        self.lens[0] = n;
        self.srcs[0] = Some(src);
        Ok(1)
    }
}

/// The `SO_RXQ_OVFL` count among the control messages of a received header.
///
/// # Safety
/// `hdr.msg_control`/`msg_controllen` describe a live buffer filled by the kernel.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
unsafe fn drop_count(hdr: &libc::msghdr) -> Option<u32> {
    if hdr.msg_control.is_null() || hdr.msg_controllen == 0 {
        return None;
    }
    let mut found = None;
    // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR stay within msg_controllen (they return null past it);
    // each header they return lies in the buffer, and CMSG_DATA of an SO_RXQ_OVFL message whose
    // length covers four octets points at those four octets (read unaligned).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            let h = &*c;
            if h.cmsg_level == libc::SOL_SOCKET
                && h.cmsg_type == libc::SO_RXQ_OVFL
                && h.cmsg_len as usize >= libc::CMSG_LEN(4) as usize
            {
                found = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    found
}

/// Answers waiting to be sent together (at most [`RECV_BATCH`] between flushes in practice).
#[derive(Default)]
pub struct SendBatch {
    items: Vec<(Vec<u8>, SocketAddr)>,
}

impl SendBatch {
    pub fn push(&mut self, bytes: Vec<u8>, dst: SocketAddr) {
        self.items.push((bytes, dst));
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sends everything queued, in order (waiting on the reactor while the socket buffer is
    /// full), and empties the batch. A datagram the kernel refuses is skipped: its destination
    /// and error are passed to `failed`.
    pub async fn flush(
        &mut self,
        socket: &UdpSocket,
        mut failed: impl FnMut(SocketAddr, io::Error),
    ) {
        let mut start = 0;
        while let Some(rest) = self.items.get(start..).filter(|r| !r.is_empty()) {
            match socket.try_io(Interest::WRITABLE, || send_now(socket, rest)) {
                Ok(n) => start += n.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = socket.writable().await {
                        if let Some((_, dst)) = rest.first() {
                            failed(*dst, e);
                        }
                        start += 1;
                    }
                }
                Err(e) => {
                    // The first datagram of `rest` failed; the others are tried again.
                    if let Some((_, dst)) = rest.first() {
                        failed(*dst, e);
                    }
                    start += 1;
                }
            }
        }
        self.items.clear();
    }
}

/// Sends a prefix of `items` in one call; how many went out (at least one on success).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn send_now(socket: &UdpSocket, items: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let items = items.get(..items.len().min(RECV_BATCH)).unwrap_or_default();
    let addrs: Vec<socket2::SockAddr> = items.iter().map(|(_, a)| (*a).into()).collect();
    // SAFETY: zeroed `iovec` and `mmsghdr` are valid values of these plain C structs.
    let mut iovs: [libc::iovec; RECV_BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
    for (((bytes, _), addr), (iov, msg)) in items
        .iter()
        .zip(&addrs)
        .zip(iovs.iter_mut().zip(msgs.iter_mut()))
    {
        iov.iov_base = bytes.as_ptr().cast_mut().cast();
        iov.iov_len = bytes.len();
        msg.msg_hdr.msg_name = addr.as_ptr().cast_mut().cast();
        msg.msg_hdr.msg_namelen = addr.len();
        msg.msg_hdr.msg_iov = std::ptr::from_mut(iov);
        msg.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the descriptor is open (borrowed from `socket`) for the call; the first
    // `items.len()` headers point at live socket addresses (`addrs`, lengths passed) and at one
    // iovec each over an answer's bytes, all of which outlive the call; sendmmsg only reads
    // them (and writes each header's msg_len).
    let rc = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            items.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

#[cfg(not(target_os = "linux"))]
fn send_now(socket: &UdpSocket, items: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    match items.first() {
        Some((bytes, dst)) => socket.try_send_to(bytes, *dst).map(|_| 1),
        None => Ok(0),
    }
}

/// The source address the kernel wrote (`len` octets of `addr`); `None` for a family other
/// than IPv4 and IPv6 or a short length.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn socket_addr(addr: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    let len = len as usize;
    match libc::c_int::from(addr.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which is smaller than
            // and aligned within sockaddr_storage.
            let a = unsafe { &*std::ptr::from_ref(addr).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*std::ptr::from_ref(addr).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takes_what_is_queued_in_order_with_sources() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = server.local_addr().unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let big = vec![7u8; MAX_PACKET_LEN + 100];
        a.send_to(b"one", to).await.unwrap();
        b.send_to(b"two", to).await.unwrap();
        a.send_to(&big, to).await.unwrap();
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        while got.len() < 3 {
            batch.recv(&server).await.unwrap();
            got.extend(batch.datagrams().map(|(d, s)| (d.to_vec(), s)));
        }
        let (pa, pb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        assert_eq!(got[0], (b"one".to_vec(), pa));
        assert_eq!(got[1], (b"two".to_vec(), pb));
        assert_eq!(
            got[2].0.len(),
            MAX_PACKET_LEN,
            "cut at the buffer, as recvfrom would"
        );
        assert_eq!(got[2].1, pa);
    }

    #[tokio::test]
    async fn send_batch_sends_in_order_to_each_destination() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (pa, pb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut out = SendBatch::default();
        let total = RECV_BATCH + 7;
        for i in 0..total {
            out.push(vec![i as u8; 1 + i], if i % 3 == 0 { pb } else { pa });
        }
        let mut failures = 0;
        out.flush(&server, |_, _| failures += 1).await;
        assert!(out.is_empty() && failures == 0);
        let mut buf = [0u8; 64];
        for i in 0..total {
            let s = if i % 3 == 0 { &b } else { &a };
            let (n, from) = s.recv_from(&mut buf).await.unwrap();
            assert_eq!(
                (&buf[..n], from),
                (&vec![i as u8; 1 + i][..], server.local_addr().unwrap())
            );
        }
    }

    #[tokio::test]
    async fn ipv6_sources() {
        let Ok(server) = UdpSocket::bind("[::1]:0").await else {
            eprintln!("no IPv6 loopback here: skipped");
            return;
        };
        let c = UdpSocket::bind("[::1]:0").await.unwrap();
        c.send_to(b"six", server.local_addr().unwrap())
            .await
            .unwrap();
        let mut batch = RecvBatch::default();
        batch.recv(&server).await.unwrap();
        let got: Vec<_> = batch.datagrams().map(|(d, s)| (d.to_vec(), s)).collect();
        assert_eq!(got, vec![(b"six".to_vec(), c.local_addr().unwrap())]);
    }

    /// Datagrams sent into a full receive buffer are lost; the next one received carries the
    /// socket's drop count, which equals what was sent and not received.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn reports_the_kernel_drop_count() {
        let sock = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        sock.set_recv_buffer_size(1).unwrap(); // the kernel's minimum, a few datagrams
        sock.set_nonblocking(true).unwrap();
        sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        enable_drop_count(&sock).unwrap();
        let server = UdpSocket::from_std(sock.into()).unwrap();
        let to = server.local_addr().unwrap();
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = 200u32;
        for i in 0..sent {
            c.send_to(&[i as u8; 512], to).unwrap();
        }
        let mut batch = RecvBatch::default();
        let mut received = 0u32;
        let drain = |batch: &mut RecvBatch| batch.recv_now(&server).map(|n| n as u32);
        while let Ok(n) = drain(&mut batch) {
            received += n;
        }
        assert!(received > 0 && received < sent, "received {received}");
        // The datagrams queued before the drops carry no count; one sent now does.
        c.send_to(b"after", to).unwrap();
        assert_eq!(batch.recv(&server).await.unwrap(), 1);
        received += 1;
        assert_eq!(batch.kernel_drops(), Some(sent + 1 - received));
    }

    #[tokio::test]
    async fn more_than_a_batch_comes_in_several() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = server.local_addr().unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let total = RECV_BATCH * 2 + 5;
        for i in 0..total {
            c.send_to(&(i as u32).to_be_bytes(), to).await.unwrap();
        }
        let mut batch = RecvBatch::default();
        let mut seen = Vec::new();
        while seen.len() < total {
            let n = batch.recv(&server).await.unwrap();
            assert!((1..=RECV_BATCH).contains(&n));
            seen.extend(
                batch
                    .datagrams()
                    .map(|(d, _)| u32::from_be_bytes(d.try_into().unwrap())),
            );
        }
        assert_eq!(seen, (0..total as u32).collect::<Vec<_>>());
    }
}
