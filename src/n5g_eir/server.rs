//! N5g-eir's HTTP shell: connections, protocol detection, limits, graceful shutdown.
//!
//! Each connection is served by hyper-util's automatic builder: a client that opens with the
//! HTTP/2 preface (h2c with prior knowledge, as open5gs and free5GC call NFs; or ALPN `h2` over
//! TLS) speaks HTTP/2, any other speaks HTTP/1.1 and is answered the same way (one request at a
//! time per connection).
//!
//! Limits, so a hostile or broken client holds up nobody:
//! - at most [`ServeLimits::max_connections`] connections (beyond: closed at accept);
//! - at most [`ServeLimits::max_streams`] concurrent HTTP/2 streams per connection;
//! - request heads of at most [`MAX_HEAD`] bytes (HTTP/1.1: 431 or 414 by hyper; HTTP/2:
//!   the header list limit);
//! - a connection that completes no request within [`ServeLimits::idle_timeout`] after it opened
//!   or after its last answer is closed (a silent client, one that dribbles its bytes, an idle
//!   one), counted in `imei_lockd_n5g_errors_total{reason="idle_timeout"}`.
//!
//! This module knows nothing of the resource: requests go to [`N5gEir::handle`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

use super::N5gEir;
use crate::logging::limit::LogLimiter;

/// Largest request head (HTTP/1.1 buffer, HTTP/2 header list).
pub const MAX_HEAD: usize = 16 * 1024;

/// How long [`serve`] waits for requests in flight after `stop`.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Connection limits.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// `[eir.n5g] idle_timeout_s`.
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_streams: u32,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_streams: 128,
        }
    }
}

/// Registers `imei_lockd_n5g_errors_total` at 0.
pub(super) fn register_metrics() {
    for reason in ["idle_timeout", "too_many_connections"] {
        metrics::counter!("imei_lockd_n5g_errors_total", "reason" => reason).increment(0);
    }
}

/// When the connection last began or ended a request, and how many are in flight.
struct Activity {
    opened: Instant,
    /// Milliseconds after `opened`.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long nothing has happened; zero while a request is in flight.
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }
}

/// One request in flight (ends when its future completes or is dropped).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(a: &Arc<Activity>) -> Self {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        a.touch();
        Self(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves N5g-eir on `listener` until `stop` resolves, then closes connections gracefully
/// (HTTP/2 GOAWAY) and waits up to [`DRAIN_TIMEOUT`] for requests in flight.
///
/// # Errors
/// None today (accept errors are logged and retried by the listener).
pub async fn serve<L: Listener<Addr = SocketAddr>>(
    mut listener: L,
    svc: Arc<N5gEir>,
    limits: ServeLimits,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    let conns_allowed = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut conns = tokio::task::JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    let log_limit = Arc::new(LogLimiter::new(Duration::from_secs(10), 1024));
    loop {
        let (stream, remote) = tokio::select! {
            a = listener.accept() => a,
            () = &mut stop => break,
        };
        while conns.try_join_next().is_some() {}
        let Ok(permit) = conns_allowed.clone().try_acquire_owned() else {
            metrics::counter!("imei_lockd_n5g_errors_total", "reason" => "too_many_connections")
                .increment(1);
            if log_limit
                .admit((remote.ip(), "too_many_connections"), Instant::now())
                .is_some()
            {
                tracing::warn!(%remote, max = limits.max_connections,
                    "N5g-eir connection closed: too many connections open");
            }
            continue;
        };
        let svc = svc.clone();
        let close = close_rx.clone();
        let log_limit = log_limit.clone();
        conns.spawn(async move {
            serve_connection(stream, remote, svc, limits, close, &log_limit).await;
            drop(permit);
        });
    }
    let _ = close_tx.send(true);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!("N5g-eir requests still in flight after {DRAIN_TIMEOUT:?}; stopping");
    }
    Ok(())
}

async fn serve_connection<I>(
    stream: I,
    remote: SocketAddr,
    svc: Arc<N5gEir>,
    limits: ServeLimits,
    mut close: tokio::sync::watch::Receiver<bool>,
    log_limit: &LogLimiter<(std::net::IpAddr, &'static str)>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity {
        opened: Instant::now(),
        last_ms: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let act = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let svc = svc.clone();
        let guard = InFlight::begin(&act);
        async move {
            let resp = svc.handle(req, remote).await;
            drop(guard);
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(MAX_HEAD);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .max_header_list_size(u32::try_from(MAX_HEAD).unwrap_or(u32::MAX));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let mut tick = tokio::time::interval(
        (limits.idle_timeout / 5).clamp(Duration::from_millis(100), Duration::from_secs(1)),
    );
    // Set once the connection is asked to close: then it is cut at this instant.
    let mut cut_at: Option<tokio::time::Instant> = None;
    let result = loop {
        let cut = async {
            match cut_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = close.changed(), if cut_at.is_none() => {
                conn.as_mut().graceful_shutdown();
                cut_at = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
            }
            _ = tick.tick(), if cut_at.is_none() => {
                if activity.idle_for() >= limits.idle_timeout {
                    idle_cut(remote, limits, log_limit);
                    conn.as_mut().graceful_shutdown();
                    cut_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                }
            }
            () = cut => break Ok(()),
        }
    };
    match result {
        // HTTP/1.1's own header read timeout (the same limit) got there first.
        Err(e)
            if e.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout) =>
        {
            idle_cut(remote, limits, log_limit);
        }
        Err(e) => tracing::debug!(%remote, error = %e, "N5g-eir connection ended with an error"),
        Ok(()) => {}
    }
}

/// Counts and logs (rate-limited) a connection cut for completing no request in time.
fn idle_cut(
    remote: SocketAddr,
    limits: ServeLimits,
    log_limit: &LogLimiter<(std::net::IpAddr, &'static str)>,
) {
    metrics::counter!("imei_lockd_n5g_errors_total", "reason" => "idle_timeout").increment(1);
    if let Some(admit) = log_limit.admit((remote.ip(), "idle_timeout"), Instant::now()) {
        tracing::info!(%remote, timeout_s = limits.idle_timeout.as_secs(),
            suppressed = admit.suppressed,
            "N5g-eir connection completed no request within eir.n5g.idle_timeout_s: closed");
    }
}
