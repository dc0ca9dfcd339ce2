//! The provisioning REST API (SPEC §3): one more shell over the engine's side of the house.
//!
//! Writes become provisioning requests through [`Provisioner::submit`] (202 with a request id,
//! durable when answered); reads come from the store as sessions see it (processed state only).
//! Every route but `/healthz` needs `Authorization: Bearer <token>` (compared in constant time).
//! Bad input is a 400 whose JSON names the field; unknown SIMs, profiles and requests are 404.
//!
//! The routes are a contract with operators' scripts: add, never rename.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::context::Imsi;
use crate::provisioning::{parse_month, Provisioner};
use crate::store::{
    Event, ImeiManagement, ImportRow, Millis, Operation, RequestRecord, RequestStatus, SimRecord,
    Store,
};

/// Largest JSON body accepted (beyond: 413).
pub const JSON_LIMIT: usize = 64 * 1024;
/// Largest CSV import accepted (beyond: 413): about 1.5 million rows of
/// `imsi,msisdn,profile,imei_management`, while a hostile client cannot make one request buffer
/// more than this.
pub const IMPORT_LIMIT: usize = 64 * 1024 * 1024;
/// Longest `?wait=`.
const MAX_WAIT_S: u64 = 30;

/// Shared state of the API handlers.
pub struct ApiState {
    pub provisioner: Arc<Provisioner>,
    pub token: Option<String>,
}

type Shared = Arc<ApiState>;

/// An API error: status plus a JSON body naming the field at fault.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            field: None,
        }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "API request failed");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "storage unavailable, retry later".into(),
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.field {
            Some(f) => json!({"error": self.message, "field": f}),
            None => json!({"error": self.message}),
        };
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Builds the router.
pub fn router(state: Shared) -> Router {
    let v1 = Router::new()
        .route(
            "/v1/sims/{imsi}",
            put(put_sim).get(get_sim).delete(delete_sim),
        )
        .route("/v1/sims/{imsi}/imei-management", put(put_sim_value))
        .route("/v1/sims/{imsi}/reset", post(reset_sim))
        .route("/v1/sims/{imsi}/events", get(sim_events))
        .route(
            "/v1/sims:import",
            post(import_sims).layer(DefaultBodyLimit::max(IMPORT_LIMIT)),
        )
        .route("/v1/profiles/{name}", put(put_profile).get(get_profile))
        .route("/v1/requests/{id}", get(get_request))
        .route("/v1/billing/{month}", get(get_billing))
        .route("/v1/imei-management/values", get(values))
        .route("/v1/openapi.json", get(openapi))
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(v1)
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        .with_state(state)
}

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
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Shared,
    limits: ServeLimits,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let body_timeout = limits.body_timeout;
    let app = router(state).layer(middleware::from_fn(move |req: Request, next: Next| {
        guard_body(body_timeout, req, next)
    }));
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    for reason in ["header_timeout", "body_timeout", "body_too_large"] {
        metrics::counter!("imei_lockd_api_errors_total", "reason" => reason).increment(0);
    }
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
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
            Json(json!({"error": format!("request body over {limit} bytes")})),
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

async fn require_token(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let Some(expected) = &st.token else {
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
            Json(json!({"error": "missing or invalid bearer token"})),
        )
            .into_response()
    }
}

fn rfc3339(ms: Millis) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn parse_imsi(raw: &str) -> ApiResult<Imsi> {
    raw.parse()
        .map_err(|_| ApiError::bad("imsi", format!("{raw:?} is not an IMSI (5 to 15 digits)")))
}

/// Parses a JSON body, naming the field at fault.
fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // serde reports a missing field at its parent: name the field itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        let field = match (missing, path.as_str()) {
            (Some(f), ".") => f.to_owned(),
            (Some(f), p) => format!("{p}.{f}"),
            (None, ".") => "body".to_owned(),
            (None, _) => path,
        };
        ApiError::bad(field, message)
    })
}

/// `Some(None)` for an explicit `null`, `None` when absent (with `#[serde(default)]`).
fn explicit<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn accepted(rec: &RequestRecord) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({"request_id": rec.seq.to_string()})),
    )
        .into_response()
}

fn submit(st: &ApiState, op: Operation) -> ApiResult<Response> {
    let rec = st.provisioner.submit(op).map_err(ApiError::internal)?;
    Ok(accepted(&rec))
}

fn store(st: &ApiState) -> &dyn Store {
    &**st.provisioner.store()
}

fn existing_sim(st: &ApiState, imsi: &Imsi) -> ApiResult<SimRecord> {
    store(st)
        .sim(imsi)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("unknown SIM {imsi}")))
}

fn check_profile_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(
            "profile",
            format!("{name:?}: profile names are 1-64 of A-Z a-z 0-9 - _ ."),
        ))
    }
}

fn check_msisdn(m: &str) -> ApiResult<()> {
    let digits = m.strip_prefix('+').unwrap_or(m);
    if (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ApiError::bad(
            "msisdn",
            format!("{m:?} is not an MSISDN (up to 15 digits)"),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutSimBody {
    #[serde(default, deserialize_with = "explicit")]
    msisdn: Option<Option<String>>,
    #[serde(default, deserialize_with = "explicit")]
    profile: Option<Option<String>>,
    #[serde(default, deserialize_with = "explicit")]
    imei_management: Option<Option<ImeiManagement>>,
}

async fn put_sim(
    State(st): State<Shared>,
    Path(imsi): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let imsi = parse_imsi(&imsi)?;
    let b: PutSimBody = if body.is_empty() {
        PutSimBody {
            msisdn: None,
            profile: None,
            imei_management: None,
        }
    } else {
        parse_json(&body)?
    };
    if let Some(Some(m)) = &b.msisdn {
        check_msisdn(m)?;
    }
    if let Some(Some(p)) = &b.profile {
        check_profile_name(p)?;
        if store(&st).profile(p).map_err(ApiError::internal)?.is_none() {
            return Err(ApiError::bad("profile", format!("unknown profile {p:?}")));
        }
    }
    submit(
        &st,
        Operation::UpsertSim {
            imsi,
            msisdn: b.msisdn,
            profile: b.profile,
            value: b.imei_management,
        },
    )
}

#[derive(Serialize)]
struct SimView {
    imsi: String,
    msisdn: Option<String>,
    profile: Option<String>,
    imei_management: Option<ImeiManagement>,
    effective: ImeiManagement,
    bound_imei: Option<String>,
    bound_at: Option<String>,
    last_seen_imei: Option<String>,
    last_seen_at: Option<String>,
    pending_requests: Vec<String>,
}

async fn get_sim(State(st): State<Shared>, Path(imsi): Path<String>) -> ApiResult<Response> {
    let imsi = parse_imsi(&imsi)?;
    let sim = existing_sim(&st, &imsi)?;
    let s = store(&st);
    let effective = crate::engine::effective_value(s, &sim).map_err(ApiError::internal)?;
    let pending = s
        .requests_after(st.provisioner.processed_seq(), 10_000)
        .map_err(ApiError::internal)?
        .into_iter()
        .filter(|r| r.status == RequestStatus::Pending && r.op.imsi() == Some(&imsi))
        .map(|r| r.seq.to_string())
        .collect();
    Ok(Json(SimView {
        imsi: imsi.to_string(),
        msisdn: sim.msisdn,
        profile: sim.profile,
        imei_management: sim.value,
        effective,
        bound_imei: sim.bound.map(|i| i.to_string()),
        bound_at: sim.bound_at.map(rfc3339),
        last_seen_imei: sim.last_seen.map(|i| i.to_string()),
        last_seen_at: sim.last_seen_at.map(rfc3339),
        pending_requests: pending,
    })
    .into_response())
}

async fn delete_sim(State(st): State<Shared>, Path(imsi): Path<String>) -> ApiResult<Response> {
    let imsi = parse_imsi(&imsi)?;
    existing_sim(&st, &imsi)?;
    submit(&st, Operation::DeleteSim { imsi })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueBody {
    value: Option<ImeiManagement>,
}

async fn put_sim_value(
    State(st): State<Shared>,
    Path(imsi): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let imsi = parse_imsi(&imsi)?;
    let b: ValueBody = parse_json(&body)?;
    existing_sim(&st, &imsi)?;
    submit(
        &st,
        Operation::SetSimValue {
            imsi,
            value: b.value,
        },
    )
}

async fn reset_sim(State(st): State<Shared>, Path(imsi): Path<String>) -> ApiResult<Response> {
    let imsi = parse_imsi(&imsi)?;
    existing_sim(&st, &imsi)?;
    submit(&st, Operation::Reset { imsi })
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

#[derive(Serialize)]
struct EventView {
    event: &'static str,
    imsi: String,
    at: String,
    interface: &'static str,
    peer: String,
    imei: Option<String>,
    bound_imei: Option<String>,
    detail: Option<String>,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        Self {
            event: e.kind.as_str(),
            imsi: e.imsi.to_string(),
            at: rfc3339(e.at),
            interface: e.interface.as_str(),
            peer: e.peer,
            imei: e.imei.map(|i| i.to_string()),
            bound_imei: e.bound.map(|i| i.to_string()),
            detail: e.detail,
        }
    }
}

async fn sim_events(
    State(st): State<Shared>,
    Path(imsi): Path<String>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Response> {
    let imsi = parse_imsi(&imsi)?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::bad("limit", "must be 1 to 10000"));
    }
    existing_sim(&st, &imsi)?;
    let events: Vec<EventView> = store(&st)
        .events(&imsi, limit)
        .map_err(ApiError::internal)?
        .into_iter()
        .map(EventView::from)
        .collect();
    Ok(Json(events).into_response())
}

/// Parses a CSV import: header `imsi,msisdn,profile,imei_management`, empty fields are unset.
/// A bad row rejects the whole file, naming its line.
pub fn parse_import(
    body: &[u8],
    known_profile: impl Fn(&str) -> bool,
) -> ApiResult<Vec<ImportRow>> {
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let header = rd
        .headers()
        .map_err(|e| ApiError::bad("line 1", format!("cannot read the header: {e}")))?
        .clone();
    let expected = ["imsi", "msisdn", "profile", "imei_management"];
    if header.iter().collect::<Vec<_>>() != expected {
        return Err(ApiError::bad(
            "line 1",
            format!("header must be {}", expected.join(",")),
        ));
    }
    let mut rows = Vec::new();
    for (i, rec) in rd.records().enumerate() {
        let line = i + 2;
        let at = |m: String| ApiError::bad(format!("line {line}"), m);
        let rec = rec.map_err(|e| at(e.to_string()))?;
        if rec.len() != 4 {
            return Err(at(format!("expected 4 fields, found {}", rec.len())));
        }
        let field = |n: usize| rec.get(n).filter(|s| !s.is_empty());
        let imsi = field(0)
            .ok_or_else(|| at("imsi is empty".into()))?
            .parse::<Imsi>()
            .map_err(|_| at("imsi is not 5 to 15 digits".into()))?;
        let msisdn = field(1).map(str::to_owned);
        if let Some(m) = &msisdn {
            check_msisdn(m).map_err(|e| at(e.message))?;
        }
        let profile = field(2).map(str::to_owned);
        if let Some(p) = &profile {
            check_profile_name(p).map_err(|e| at(e.message))?;
            if !known_profile(p) {
                return Err(at(format!("unknown profile {p:?}")));
            }
        }
        let value = match field(3) {
            Some(v) => Some(
                v.parse::<ImeiManagement>()
                    .map_err(|e| at(format!("imei_management: {e}")))?,
            ),
            None => None,
        };
        rows.push(ImportRow {
            imsi,
            msisdn,
            profile,
            value,
        });
    }
    if rows.is_empty() {
        return Err(ApiError::bad("body", "the file has no rows"));
    }
    Ok(rows)
}

async fn import_sims(State(st): State<Shared>, body: Bytes) -> ApiResult<Response> {
    let st2 = st.clone();
    let rows = tokio::task::spawn_blocking(move || {
        let s = store(&st2);
        parse_import(&body, |p| matches!(s.profile(p), Ok(Some(_))))
    })
    .await
    .map_err(ApiError::internal)??;
    let n = rows.len();
    let rec =
        tokio::task::spawn_blocking(move || st.provisioner.submit(Operation::Import { rows }))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
    tracing::info!(request = rec.seq, rows = n, "SIM import accepted");
    Ok(accepted(&rec))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    imei_management: ImeiManagement,
    #[serde(default)]
    lock_fee: Option<String>,
}

async fn put_profile(
    State(st): State<Shared>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    check_profile_name(&name).map_err(|e| ApiError::bad("name", e.message))?;
    let b: ProfileBody = parse_json(&body)?;
    if let Some(fee) = &b.lock_fee {
        crate::config::parse_amount("lock_fee", fee).map_err(|_| {
            ApiError::bad(
                "lock_fee",
                format!("{fee:?} is not an amount such as \"1.00\""),
            )
        })?;
    }
    submit(
        &st,
        Operation::UpsertProfile {
            name,
            value: b.imei_management,
            lock_fee: b.lock_fee,
        },
    )
}

async fn get_profile(State(st): State<Shared>, Path(name): Path<String>) -> ApiResult<Response> {
    let p = store(&st)
        .profile(&name)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("unknown profile {name:?}")))?;
    Ok(Json(json!({
        "name": p.name,
        "imei_management": p.value,
        "lock_fee": p.lock_fee,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct WaitQuery {
    wait: Option<u64>,
}

async fn get_request(
    State(st): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Response> {
    let seq: u64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("unknown request {id:?}")))?;
    let wait = q.wait.unwrap_or(0);
    if wait > MAX_WAIT_S {
        return Err(ApiError::bad(
            "wait",
            format!("must be 0 to {MAX_WAIT_S} seconds"),
        ));
    }
    let s = store(&st);
    if s.request(seq).map_err(ApiError::internal)?.is_none() {
        return Err(ApiError::not_found(format!("unknown request {id}")));
    }
    if wait > 0 {
        st.provisioner
            .wait_processed(seq, Duration::from_secs(wait))
            .await;
    }
    let r = s
        .request(seq)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("unknown request {id}")))?;
    let mut body = json!({
        "id": r.seq.to_string(),
        "status": r.status,
        "submitted_at": rfc3339(r.submitted_at),
    });
    if let Some(e) = r.error {
        body["error"] = json!(e);
    }
    if let Some(t) = r.processed_at {
        body["processed_at"] = json!(rfc3339(t));
    }
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

async fn get_billing(
    State(st): State<Shared>,
    Path(month): Path<String>,
    Query(q): Query<FormatQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if parse_month(&month).is_none() {
        return Err(ApiError::bad("month", format!("{month:?} is not YYYY-MM")));
    }
    let csv_wanted = match q.format.as_deref() {
        Some("csv") => true,
        Some("json") => false,
        Some(other) => {
            return Err(ApiError::bad(
                "format",
                format!("{other:?}: use csv or json"),
            ));
        }
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv")),
    };
    let charges = store(&st).charges(&month).map_err(ApiError::internal)?;
    let label = ImeiManagement::Lock.label();
    if csv_wanted {
        let mut out =
            String::from("imsi,month,amount,currency,first_lock_at,imei_management,label\n");
        for c in &charges {
            out.push_str(&format!(
                "{},{},{},{},{},lock,\"{}\"\n",
                c.imsi,
                c.month,
                c.amount,
                c.currency,
                rfc3339(c.first_lock_at),
                label
            ));
        }
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response());
    }
    let rows: Vec<_> = charges
        .iter()
        .map(|c| {
            json!({
                "imsi": c.imsi.to_string(),
                "month": c.month,
                "amount": c.amount,
                "currency": c.currency,
                "first_lock_at": rfc3339(c.first_lock_at),
                "imei_management": "lock",
                "label": label,
            })
        })
        .collect();
    Ok(Json(rows).into_response())
}

/// The OpenAPI document of these routes (committed as `src/openapi.json`).
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn values() -> Json<serde_json::Value> {
    Json(json!(ImeiManagement::ALL
        .iter()
        .map(|v| json!({
            "value": v.as_str(),
            "label": v.label(),
            "extra_fees": *v == ImeiManagement::Lock,
        }))
        .collect::<Vec<_>>()))
}
