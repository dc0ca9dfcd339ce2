//! The API's HTTP shell: the listener, connection limits (header and body timeouts, body
//! sizes), the bearer-token check and graceful shutdown.
//!
//! The listener is any [`axum::serve::Listener`]: the plain TCP listener, or
//! [`crate::tls::TlsListener`] when `[api] tls_cert` and `tls_key` are set (it hands over
//! connections once their TLS handshake is done, so everything here is the same either way).
//!
//! Nothing here knows a resource: routes are [`super::router`]'s, answers the handlers'.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::Listener;
use axum::Json;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::import::IMPORT_LIMIT;
use super::{router, Shared, JSON_LIMIT};

/// Connection limits of the API server.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// A client must send a request's headers within this time (`api.header_timeout_s`); an
    /// idle keep-alive connection is closed after it too.
    pub header_timeout: Duration,
    /// A request body may pause at most this long between chunks (`api.body_timeout_s`).
    pub body_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// How long [`serve`] waits for requests in flight after `stop`.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the API until `stop` resolves, then lets requests in flight finish (up to
/// [`DRAIN_TIMEOUT`]).
///
/// HTTP/1.1 through hyper's connection builder rather than `axum::serve`, which sets no header
/// read timeout: a client that trickles its headers (slowloris) is disconnected after
/// [`ServeLimits::header_timeout`], one that stalls its body after
/// [`ServeLimits::body_timeout`] (408); both are
/// counted in `imei_lockd_api_errors_total{reason}` and logged. Body sizes are capped by the
/// router (413 beyond).
///
/// # Errors
/// None today (accept errors are logged and retried); the signature leaves room for them.
pub async fn serve<L: Listener<Addr = SocketAddr>>(
    mut listener: L,
    state: Shared,
    limits: ServeLimits,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let body_timeout = limits.body_timeout;
    super::backups::register(&state.backup_dir);
    let app = router(state)
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            guard_body(body_timeout, req, next)
        }))
        // Outermost, so it sees the 408/413 of the body guard too.
        .layer(middleware::from_fn(super::error::json_errors));
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    super::error::register();
    for reason in ["header_timeout", "body_timeout", "body_too_large"] {
        metrics::counter!("imei_lockd_api_errors_total", "reason" => reason).increment(0);
    }
    loop {
        // Accept errors are logged and retried by the listener.
        let (stream, remote) = tokio::select! {
            a = listener.accept() => a,
            () = &mut stop => break,
        };
        while conns.try_join_next().is_some() {}
        let service = TowerToHyperService::new(app.clone());
        let mut close = close_rx.clone();
        conns.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let mut closing = false;
            let result = loop {
                tokio::select! {
                    r = conn.as_mut() => break r,
                    _ = close.changed(), if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            };
            match result {
                Err(e) if e.is_timeout() => {
                    metrics::counter!("imei_lockd_api_errors_total", "reason" => "header_timeout")
                        .increment(1);
                    tracing::info!(%remote, timeout_s = limits.header_timeout.as_secs(),
                        "API client sent no complete request headers within api.header_timeout_s: disconnected");
                }
                Err(e) => tracing::debug!(%remote, error = %e, "API connection ended with an error"),
                Ok(()) => {}
            }
        });
    }
    let _ = close_tx.send(true);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!("API requests still in flight after {DRAIN_TIMEOUT:?}; stopping");
    }
    Ok(())
}

/// Gives the request body a per-chunk timeout (tower-http's `TimeoutBody`); a body that times
/// out ends the request with 408. Both 408 and 413 (body over the router's limit) are counted in
/// `imei_lockd_api_errors_total{reason}` and logged.
async fn guard_body(timeout: Duration, req: Request, next: Next) -> Response {
    use http_body_util::BodyExt;
    let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = timed_out.clone();
    let path = req.uri().path().to_owned();
    // An announced length over the route's limit is refused before anything is read (the
    // router's limits only count bytes as they arrive).
    let limit = if path == "/v1/sims:import" {
        IMPORT_LIMIT
    } else {
        JSON_LIMIT
    };
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        metrics::counter!("imei_lockd_api_errors_total", "reason" => "body_too_large").increment(1);
        tracing::info!(path = %path, "API request body over its size limit: 413");
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONNECTION, "close")],
            Json(json!({"error": format!("request body over {limit} bytes"), "field": "body"})),
        )
            .into_response();
    }
    let req = req.map(|body| {
        let hint = http_body::Body::size_hint(&body);
        let body = tower_http::timeout::TimeoutBody::new(timeout, body).map_err(move |e| {
            if e.is::<tower_http::timeout::TimeoutError>() {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            e
        });
        axum::body::Body::new(Hinted {
            inner: Box::pin(body),
            hint,
        })
    });
    let mut resp = next.run(req).await;
    if timed_out.load(std::sync::atomic::Ordering::Relaxed) {
        metrics::counter!("imei_lockd_api_errors_total", "reason" => "body_timeout").increment(1);
        tracing::info!(path = %path, timeout_s = timeout.as_secs(),
            "API request body stalled beyond api.body_timeout_s: 408");
        *resp.status_mut() = StatusCode::REQUEST_TIMEOUT;
    } else if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        metrics::counter!("imei_lockd_api_errors_total", "reason" => "body_too_large").increment(1);
        tracing::info!(path = %path, "API request body over its size limit: 413");
    }
    resp
}

/// A body that reports the size hint of the body it wraps (`TimeoutBody` does not), so the
/// router's size limits still refuse an oversize `Content-Length` before reading anything.
struct Hinted {
    inner: std::pin::Pin<
        Box<dyn http_body::Body<Data = Bytes, Error = axum::BoxError> + Send + 'static>,
    >,
    hint: http_body::SizeHint,
}

impl http_body::Body for Hinted {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.inner.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.hint
    }
}

/// Binds the API listener.
///
/// # Errors
/// The bind error, for the caller to report with the key name.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// The bearer token the API requires (none: every request passes, loopback only), shared with
/// the daemon's SIGHUP reload, which replaces it ([`ApiToken::set`]).
#[derive(Clone, Default)]
pub struct ApiToken(Arc<parking_lot::RwLock<Option<Arc<str>>>>);

impl ApiToken {
    pub fn new(token: Option<String>) -> Self {
        Self(Arc::new(parking_lot::RwLock::new(token.map(Arc::from))))
    }

    /// Replaces the token for the requests that arrive from now on.
    pub fn set(&self, token: Option<String>) {
        *self.0.write() = token.map(Arc::from);
    }

    /// The token now (`None`: none is asked for).
    pub fn get(&self) -> Option<Arc<str>> {
        self.0.read().clone()
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.0.read().is_some();
        f.debug_tuple("ApiToken")
            .field(&if set { "*redacted*" } else { "none" })
            .finish()
    }
}

pub(super) async fn require_token(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let Some(expected) = st.token.get() else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        next.run(req).await
    } else {
        metrics::counter!("imei_lockd_api_unauthorized_total").increment(1);
        tracing::info!(path = %req.uri().path(), "API request without a valid token");
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({"error": "missing or invalid bearer token", "field": "authorization"})),
        )
            .into_response()
    }
}
