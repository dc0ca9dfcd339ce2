//! Binding the `[diameter] listen` entries: TCP through tokio, SCTP as a kernel one-to-one
//! socket (`socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP)`) handed to tokio.
//!
//! A one-to-one SCTP socket behaves like a stream socket for `accept`, `read` and `write`
//! (RFC 6458 §4), so tokio's [`TcpListener`] drives it unchanged; Diameter framing does not
//! rely on SCTP message boundaries. This module does not bind the extra addresses of a
//! multi-homed SCTP endpoint (`sctp_bindx`), nor set SCTP stream counts.

use std::fmt;
use std::io;
use std::net::SocketAddr;

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
    pub local: SocketAddr,
}

/// Binds one `listen` entry.
///
/// # Errors
/// A message naming `diameter.listen` and the address; for SCTP on a kernel without it, a
/// message saying so and what to do.
pub fn bind(entry: DiameterListen) -> Result<Bound, String> {
    let (transport, addr) = match entry {
        DiameterListen::Tcp(a) => (Transport::Tcp, a),
        DiameterListen::Sctp(a) => (Transport::Sctp, a),
    };
    let key = format!("diameter.listen {transport}://{addr}");
    let std = match transport {
        Transport::Tcp => bind_stream(addr, None),
        Transport::Sctp => bind_stream(addr, Some(Protocol::from(IPPROTO_SCTP))),
    }
    .map_err(|(step, e)| match (transport, step) {
        (Transport::Sctp, "socket") if is_no_sctp(&e) => format!(
            "{key}: the kernel has no SCTP support (socket: {}); load the sctp module or \
             remove the sctp:// listener",
            plain(&e)
        ),
        _ => format!("{key}: cannot listen ({step}: {e})"),
    })?;
    let listener = TcpListener::from_std(std).map_err(|e| format!("{key}: {e}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    Ok(Bound {
        listener,
        transport,
        local,
    })
}

/// socket, SO_REUSEADDR, bind, listen, non-blocking; the failing step on error.
fn bind_stream(
    addr: SocketAddr,
    protocol: Option<Protocol>,
) -> Result<std::net::TcpListener, (&'static str, io::Error)> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, protocol)
        .map_err(|e| ("socket", e))?;
    s.set_reuse_address(true).map_err(|e| ("setsockopt", e))?;
    if addr.is_ipv6() {
        // Same behaviour on every host: [::] is IPv6 only; list 0.0.0.0 too for IPv4.
        let _ = s.set_only_v6(true);
    }
    s.bind(&addr.into()).map_err(|e| ("bind", e))?;
    s.listen(BACKLOG).map_err(|e| ("listen", e))?;
    s.set_nonblocking(true).map_err(|e| ("fcntl", e))?;
    Ok(s.into())
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
        let r = bind(DiameterListen::Sctp("127.0.0.1:0".parse().unwrap()));
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
}
