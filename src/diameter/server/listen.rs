//! Binding the `[diameter] listen` entries: TCP through tokio, SCTP as a kernel one-to-one
//! socket (`socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP)`) handed to tokio.
//!
//! A one-to-one SCTP socket behaves like a stream socket for `accept`, `read` and `write`
//! (RFC 6458 §4), so tokio's [`TcpListener`] drives it unchanged; Diameter framing does not
//! rely on SCTP message boundaries.
//!
//! # Multi-homing
//! The `sctp://` entries of one port and family are one endpoint
//! ([`DiameterListen::Sctp`]): the socket `bind`s the first address and adds each further one
//! with `sctp_bindx(SCTP_BINDX_ADD_ADDR)` (RFC 6458 §9.1), so an association can use every
//! path and survives the loss of one. `sctp_bindx` is libsctp's wrapper around one
//! `setsockopt(SOL_SCTP, SCTP_SOCKOPT_BINDX_ADD)`; we make that call ourselves (the libc crate
//! exports neither constant, and linking libsctp for one setsockopt is not worth a
//! dependency). SCTP stream counts are left at the kernel's defaults.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use crate::config::DiameterListen;

/// IPPROTO_SCTP.
pub const IPPROTO_SCTP: i32 = 132;

/// Listen backlog for both transports.
const BACKLOG: i32 = 1024;

/// The transport of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Sctp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bound listener.
#[derive(Debug)]
pub struct Bound {
    pub listener: TcpListener,
    pub transport: Transport,
    /// The address `bind` took (with the port the kernel chose for port 0).
    pub local: SocketAddr,
    /// Every bound address: `local` alone, or all addresses of a multi-homed SCTP endpoint.
    pub addresses: Vec<SocketAddr>,
}

/// Binds one listener (a TCP address, or every address of an SCTP endpoint).
///
/// # Errors
/// A message naming `diameter.listen` and the address; for SCTP on a kernel without it, a
/// message saying so and what to do.
pub fn bind(entry: DiameterListen) -> Result<Bound, String> {
    let (transport, addrs) = match entry {
        DiameterListen::Tcp(a) => (Transport::Tcp, vec![a]),
        DiameterListen::Sctp(v) => (Transport::Sctp, v),
    };
    let Some(&first) = addrs.first() else {
        return Err("diameter.listen: an SCTP endpoint without an address".into());
    };
    let std = match transport {
        Transport::Tcp => bind_stream(&addrs, None),
        Transport::Sctp => bind_stream(&addrs, Some(Protocol::from(IPPROTO_SCTP))),
    }
    .map_err(|(addr, step, e)| {
        let key = format!("diameter.listen {transport}://{addr}");
        match (transport, step) {
            (Transport::Sctp, "socket") if is_no_sctp(&e) => format!(
                "{key}: the kernel has no SCTP support (socket: {}); load the sctp module or \
                 remove the sctp:// listener",
                plain(&e)
            ),
            _ => format!("{key}: cannot listen ({step}: {e})"),
        }
    })?;
    let listener = TcpListener::from_std(std)
        .map_err(|e| format!("diameter.listen {transport}://{first}: {e}"))?;
    let local = listener.local_addr().unwrap_or(first);
    // Port 0 (tests): the further addresses share the port the kernel chose.
    let addresses = addrs
        .iter()
        .map(|a| SocketAddr::new(a.ip(), local.port()))
        .collect();
    Ok(Bound {
        listener,
        transport,
        local,
        addresses,
    })
}

/// socket, SO_REUSEADDR, bind the first address, `sctp_bindx` the others (SCTP only), listen,
/// non-blocking; the address and the failing step on error.
fn bind_stream(
    addrs: &[SocketAddr],
    protocol: Option<Protocol>,
) -> Result<std::net::TcpListener, (SocketAddr, &'static str, io::Error)> {
    let Some((&first, more)) = addrs.split_first() else {
        return Err((
            SocketAddr::from(([0, 0, 0, 0], 0)),
            "bind",
            io::Error::from(io::ErrorKind::InvalidInput),
        ));
    };
    let s = Socket::new(Domain::for_address(first), Type::STREAM, protocol)
        .map_err(|e| (first, "socket", e))?;
    s.set_reuse_address(true)
        .map_err(|e| (first, "setsockopt", e))?;
    if first.is_ipv6() {
        // Same behaviour on every host: [::] is IPv6 only; list 0.0.0.0 too for IPv4.
        let _ = s.set_only_v6(true);
    }
    if protocol == Some(Protocol::from(IPPROTO_SCTP)) {
        // Accepted associations inherit it: without it Nagle holds each answer until the
        // previous one is acknowledged (up to the delayed-SACK 200 ms). tokio's set_nodelay
        // on the accepted stream sets TCP_NODELAY, which an SCTP socket refuses.
        set_sctp_nodelay(&s).map_err(|e| (first, "setsockopt SCTP_NODELAY", e))?;
    }
    s.bind(&first.into()).map_err(|e| (first, "bind", e))?;
    if !more.is_empty() && protocol != Some(Protocol::from(IPPROTO_SCTP)) {
        return Err((
            first,
            "bind",
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "only an SCTP endpoint binds several addresses",
            ),
        ));
    }
    for &a in more {
        sctp_bindx_add(&s, a).map_err(|e| (a, "sctp_bindx", e))?;
    }
    s.listen(BACKLOG).map_err(|e| (first, "listen", e))?;
    s.set_nonblocking(true).map_err(|e| (first, "fcntl", e))?;
    Ok(s.into())
}

/// SOL_SCTP (linux/socket.h).
const SOL_SCTP: libc::c_int = 132;
/// SCTP_SOCKOPT_BINDX_ADD (linux/sctp.h): the option behind `sctp_bindx(SCTP_BINDX_ADD_ADDR)`.
const SCTP_SOCKOPT_BINDX_ADD: libc::c_int = 100;

/// SCTP_NODELAY (linux/sctp.h).
const SCTP_NODELAY: libc::c_int = 3;

/// Turns Nagle off on an SCTP socket (SCTP_NODELAY).
pub fn set_sctp_nodelay(s: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `on` is a valid c_int for the duration of the call; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            SOL_SCTP,
            SCTP_NODELAY,
            std::ptr::from_ref(&on).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `sctp_bindx(fd, [addr], 1, SCTP_BINDX_ADD_ADDR)`: adds `addr` to a bound SCTP socket.
/// Port 0 means the port the socket is bound to; another port is an error (EINVAL).
pub fn sctp_bindx_add(s: &Socket, addr: SocketAddr) -> io::Result<()> {
    let raw = sockaddr_bytes(addr);
    let len = libc::socklen_t::try_from(raw.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `raw` is a valid, initialised buffer of `len` bytes for the duration of the
    // call; the kernel only reads it. The descriptor is owned by `s`.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            SOL_SCTP,
            SCTP_SOCKOPT_BINDX_ADD,
            raw.as_ptr().cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `struct sockaddr_in` / `struct sockaddr_in6` as the kernel reads them (the packed address
/// array of `sctp_bindx` holds these back to back).
pub fn sockaddr_bytes(addr: SocketAddr) -> Vec<u8> {
    let family = |f: libc::c_int| u16::try_from(f).unwrap_or(0).to_ne_bytes();
    let mut b = Vec::with_capacity(28);
    match addr {
        SocketAddr::V4(a) => {
            b.extend_from_slice(&family(libc::AF_INET));
            b.extend_from_slice(&a.port().to_be_bytes());
            b.extend_from_slice(&a.ip().octets());
            b.extend_from_slice(&[0; 8]);
        }
        SocketAddr::V6(a) => {
            b.extend_from_slice(&family(libc::AF_INET6));
            b.extend_from_slice(&a.port().to_be_bytes());
            b.extend_from_slice(&a.flowinfo().to_be_bytes());
            b.extend_from_slice(&a.ip().octets());
            b.extend_from_slice(&a.scope_id().to_ne_bytes());
        }
    }
    b
}

/// Errors meaning "this kernel cannot make SCTP sockets".
pub fn is_no_sctp(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT | libc::EAFNOSUPPORT)
    )
}

/// "Protocol not supported" rather than "Protocol not supported (os error 93)".
fn plain(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s.get(..i).unwrap_or(&s).to_owned(),
        None => s,
    }
}

/// Can this kernel create SCTP sockets? (For tests and diagnostics.)
pub fn sctp_supported() -> bool {
    match Socket::new(
        Domain::IPV4,
        Type::STREAM,
        Some(Protocol::from(IPPROTO_SCTP)),
    ) {
        Ok(_) => true,
        Err(e) => !is_no_sctp(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tcp_binds_and_sctp_fails_clearly_without_kernel_support() {
        let b = bind(DiameterListen::Tcp("127.0.0.1:0".parse().unwrap())).unwrap();
        assert_eq!(b.transport, Transport::Tcp);
        assert_ne!(b.local.port(), 0);
        let r = bind(DiameterListen::Sctp(vec!["127.0.0.1:0".parse().unwrap()]));
        if sctp_supported() {
            assert_eq!(r.unwrap().transport, Transport::Sctp);
        } else {
            let e = r.unwrap_err();
            assert_eq!(
                e,
                "diameter.listen sctp://127.0.0.1:0: the kernel has no SCTP support (socket: \
                 Protocol not supported); load the sctp module or remove the sctp:// listener"
            );
        }
    }

    #[test]
    fn sockaddr_bytes_match_the_c_structs() {
        for a in ["192.0.2.7:3868", "[2001:db8::1]:3868"] {
            let a: SocketAddr = a.parse().unwrap();
            let sa = socket2::SockAddr::from(a);
            let len = sa.len() as usize;
            // SAFETY: `sa` holds `len` initialised bytes of a sockaddr.
            let want = unsafe { std::slice::from_raw_parts(sa.as_ptr().cast::<u8>(), len) };
            assert_eq!(sockaddr_bytes(a), want, "{a}");
        }
    }

    #[tokio::test]
    async fn a_multi_homed_sctp_endpoint_binds_every_address() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.2:0".parse().unwrap(),
        ];
        let r = bind(DiameterListen::Sctp(addrs));
        if !sctp_supported() {
            assert!(r.unwrap_err().contains("the kernel has no SCTP support"));
            return;
        }
        let b = r.unwrap();
        let port = b.local.port();
        assert_ne!(port, 0);
        assert_eq!(
            b.addresses,
            vec![
                SocketAddr::from(([127, 0, 0, 1], port)),
                SocketAddr::from(([127, 0, 0, 2], port)),
            ]
        );
    }
}
