//! systemd integration without libsystemd: `sd_notify(3)` datagrams on `$NOTIFY_SOCKET`
//! (READY=1, STOPPING=1, WATCHDOG=1) and the watchdog interval from `$WATCHDOG_USEC`.
//! Outside systemd (no `$NOTIFY_SOCKET`) every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one notification; errors are logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = UnixDatagram::unbound().and_then(|sock| {
        let bytes = state.as_bytes();
        match path.to_str().and_then(|p| p.strip_prefix('@')) {
            // Abstract socket namespace.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                sock.send_to_addr(bytes, &addr)
            }
            None => sock.send_to(bytes, &path),
        }
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, state, "sd_notify failed");
    }
}

/// Half the watchdog interval systemd asks for, if it asks.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
