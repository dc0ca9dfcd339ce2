//! The RADIUS sockets' kernel receive buffer: asking for `radius.recv_buffer_bytes`, finding out
//! what the kernel granted, and saying so accurately.
//!
//! `SO_RCVBUFFORCE` is tried first (it needs CAP_NET_ADMIN: root, not the systemd unit), then
//! `SO_RCVBUF`, which Linux caps at `net.core.rmem_max` (208 KiB unless raised; the package's
//! `/usr/lib/sysctl.d/60-imei-lockd.conf` raises it to 8 MiB). Linux reports twice the size set
//! (its bookkeeping overhead), so the size granted is half the reported one.
//!
//! The outcome is one log line (a WARN only when the buffer is really smaller than asked, naming
//! the limit that capped it and the fix) and the gauge `imei_lockd_radius_recv_buffer_bytes`.
//! This module does not bind or read sockets and changes no kernel setting.

use std::io;

use socket2::Socket;

/// Where Linux keeps the cap on `SO_RCVBUF`.
const RMEM_MAX_PATH: &str = "/proc/sys/net/core/rmem_max";

/// What became of the buffer asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// At least the size asked for.
    Granted,
    /// Smaller, and `net.core.rmem_max` (known) is below the size asked: that cap is why.
    CappedByRmemMax { rmem_max: usize },
    /// Smaller for another reason (the cap unknown, or not the cause).
    Smaller,
}

/// Judges `got` (bytes granted) against `asked`, with the kernel's `rmem_max` when known.
pub fn outcome(asked: usize, got: usize, rmem_max: Option<usize>) -> Outcome {
    if got >= asked {
        return Outcome::Granted;
    }
    match rmem_max {
        Some(cap) if cap < asked => Outcome::CappedByRmemMax { rmem_max: cap },
        _ => Outcome::Smaller,
    }
}

/// The size granted from what `SO_RCVBUF` reports (Linux doubles the size set).
pub fn granted_from_reported(reported: usize) -> usize {
    if cfg!(any(target_os = "linux", target_os = "android")) {
        reported / 2
    } else {
        reported
    }
}

/// `net.core.rmem_max`, when this system has it and it can be read.
pub fn rmem_max() -> Option<usize> {
    std::fs::read_to_string(RMEM_MAX_PATH)
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Sets the receive buffer of `sock` (the socket of config key `key`, port label `port`) to
/// `bytes` as far as the kernel allows, logs the outcome and sets the gauge. Never fails: a
/// smaller buffer is logged, not fatal.
pub fn apply(sock: &Socket, key: &str, port: &'static str, bytes: usize) {
    let forced = set_force(sock, bytes);
    if let Err(e) = &forced {
        tracing::debug!(key, error = %e, "SO_RCVBUFFORCE refused; using SO_RCVBUF");
        if let Err(e) = sock.set_recv_buffer_size(bytes) {
            tracing::warn!(key, error = %e, bytes, "cannot set the socket receive buffer");
        }
    }
    let got = granted_from_reported(sock.recv_buffer_size().unwrap_or(0));
    metrics::gauge!("imei_lockd_radius_recv_buffer_bytes", "port" => port).set(got as f64);
    match outcome(bytes, got, rmem_max()) {
        Outcome::Granted => tracing::debug!(
            key,
            asked = bytes,
            got,
            forced = forced.is_ok(),
            "receive buffer set"
        ),
        Outcome::CappedByRmemMax { rmem_max } => tracing::warn!(
            key,
            asked = bytes,
            got,
            rmem_max,
            "RADIUS receive buffer capped by net.core.rmem_max: apply the sysctl drop-in \
             60-imei-lockd.conf (the package installs it in /usr/lib/sysctl.d/) or run \
             `sysctl -w net.core.rmem_max={bytes}`, or lower radius.recv_buffer_bytes"
        ),
        Outcome::Smaller => tracing::warn!(
            key,
            asked = bytes,
            got,
            "RADIUS receive buffer smaller than radius.recv_buffer_bytes (the kernel granted \
             less although net.core.rmem_max allows it)"
        ),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_force(sock: &Socket, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer size too large"))?;
    crate::radius::mmsg::set_int_option(sock, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_force(_sock: &Socket, _bytes: usize) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB8: usize = 8 * 1024 * 1024;

    #[test]
    fn no_warning_when_the_limit_allows_the_buffer() {
        assert_eq!(outcome(MIB8, MIB8, Some(MIB8)), Outcome::Granted);
        assert_eq!(outcome(MIB8, MIB8, Some(4 * MIB8)), Outcome::Granted);
        // Forced past a low cap (CAP_NET_ADMIN): granted all the same.
        assert_eq!(outcome(MIB8, MIB8, Some(212_992)), Outcome::Granted);
    }

    #[test]
    fn a_low_rmem_max_is_named_as_the_cause() {
        assert_eq!(
            outcome(MIB8, 212_992, Some(212_992)),
            Outcome::CappedByRmemMax { rmem_max: 212_992 }
        );
        assert_eq!(
            outcome(MIB8, MIB8 / 2, Some(MIB8 - 1)),
            Outcome::CappedByRmemMax { rmem_max: MIB8 - 1 }
        );
    }

    #[test]
    fn smaller_without_a_known_cause() {
        assert_eq!(outcome(MIB8, 1024, None), Outcome::Smaller);
        assert_eq!(outcome(MIB8, 1024, Some(MIB8)), Outcome::Smaller);
    }

    /// On this kernel: SO_RCVBUF within rmem_max is granted in full (the doubling accounted
    /// for), so the judgement says Granted exactly when the cap allows the size.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_grants_up_to_rmem_max() {
        let Some(cap) = rmem_max() else { return };
        let sock = Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        let asked = cap.min(MIB8);
        sock.set_recv_buffer_size(asked).unwrap();
        let got = granted_from_reported(sock.recv_buffer_size().unwrap());
        assert_eq!(outcome(asked, got, Some(cap)), Outcome::Granted, "{got}");
    }
}
