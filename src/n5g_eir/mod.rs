//! N5g-eir (TS 29.511): the EIR as the AMF asks it at 5G registration.
//!
//! `GET /n5g-eir-eic/v1/equipment-status?pei=…&supi=…&gpsi=…` is decoded ([`query`]) into an
//! [`EirRequest`] of interface `n5g_eir`, the [`Eir`] answers, and the answer is encoded:
//!
//! | the EIR | HTTP |
//! |---|---|
//! | a status | 200 `application/json` `{"status":"WHITELISTED"}` (`BLACKLISTED`, `GREYLISTED`) |
//! | equipment unknown | 404 `application/problem+json`, `cause` `ERROR_EQUIPMENT_UNKNOWN` |
//! | bad query | 400 ProblemDetails with `cause` and `invalidParams` naming the parameter |
//! | `EngineError::NotServing`, or the blocking path full | 503 with `Retry-After` |
//! | another engine error | 500 ProblemDetails `SYSTEM_FAILURE` |
//!
//! Other paths are 404 (`RESOURCE_URI_STRUCTURE_NOT_FOUND`), other methods 405, a query over
//! [`MAX_QUERY`] bytes 414, a missing or wrong bearer token (when `[eir.n5g] token` is set)
//! 401 with `WWW-Authenticate: Bearer`: every error is ProblemDetails, counted in
//! `imei_lockd_n5g_requests_total{code}` and logged (rate-limited per client and reason).
//!
//! A check the engine can answer from memory is answered on the connection's task
//! ([`Eir::check_in_memory`]); one that needs the store (a bind) runs [`Eir::check`] on the
//! blocking pool, at most [`MAX_BLOCKING`] at once (a check waits up to [`BLOCKING_WAIT`] for
//! its turn, then: 503).
//!
//! [`server`] is the HTTP shell: HTTP/2 with prior knowledge (h2c, how open5gs and free5GC
//! call NFs) and HTTP/1.1 on the same port, or TLS with ALPN `h2` and `http/1.1`.
//!
//! This module stores nothing and holds no lock logic: the [`Eir`] and its engine decide.

pub mod query;
mod response;
pub mod server;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{self, header, Method, Request, StatusCode};
use http_body_util::Full;
use metrics::{Counter, Histogram};
use subtle::ConstantTimeEq;

use crate::api::ApiToken;
use crate::context::{Interface, SessionId};
use crate::eir::{Eir, EirAnswer, EirRequest};
use crate::engine::EngineError;
use crate::logging::limit::LogLimiter;
use response::{problem, Problem};

pub use query::{parse_query, EquipmentQuery, QueryError};
pub use server::{serve, ServeLimits};

/// The resource TS 29.511 §6.1 defines.
pub const PATH: &str = "/n5g-eir-eic/v1/equipment-status";
/// Longest query accepted (beyond: 414).
pub const MAX_QUERY: usize = 2048;
/// Checks that need the store (binds) running at once; a check waits at most
/// [`BLOCKING_WAIT`] for its turn, then gets a 503.
pub const MAX_BLOCKING: usize = 64;
/// How long a check that needs the store waits for one of the [`MAX_BLOCKING`] slots.
pub const BLOCKING_WAIT: Duration = Duration::from_secs(1);

/// A response.
pub type Response = http::Response<Full<Bytes>>;

/// The status codes counted in `imei_lockd_n5g_requests_total{code}`.
const CODES: [u16; 8] = [200, 400, 401, 404, 405, 414, 500, 503];

/// The N5g-eir service: the EIR, the token, the bound on blocking checks, the metrics.
pub struct N5gEir {
    eir: Arc<Eir>,
    token: ApiToken,
    blocking: Arc<tokio::sync::Semaphore>,
    requests: Vec<(u16, Counter)>,
    duration: Histogram,
    log_limit: LogLimiter<(IpAddr, &'static str)>,
}

impl N5gEir {
    /// Registers `imei_lockd_n5g_*` at 0. `token`: the bearer token (`None`: not asked for);
    /// SIGHUP may replace it through the same [`ApiToken`].
    pub fn new(eir: Arc<Eir>, token: ApiToken) -> Self {
        let requests = CODES
            .iter()
            .map(|&c| {
                let counter =
                    metrics::counter!("imei_lockd_n5g_requests_total", "code" => c.to_string());
                counter.increment(0);
                (c, counter)
            })
            .collect();
        server::register_metrics();
        Self {
            eir,
            token,
            blocking: Arc::new(tokio::sync::Semaphore::new(MAX_BLOCKING)),
            requests,
            duration: metrics::histogram!("imei_lockd_n5g_request_duration_seconds"),
            log_limit: LogLimiter::new(Duration::from_secs(10), 1024),
        }
    }

    /// Answers one request (never fails: every error is a response).
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>, remote: SocketAddr) -> Response {
        let started = Instant::now();
        let resp = self.answer(&req, remote).await;
        let code = resp.status().as_u16();
        match self.requests.iter().find(|(c, _)| *c == code) {
            Some((_, counter)) => counter.increment(1),
            None => metrics::counter!("imei_lockd_n5g_requests_total", "code" => code.to_string())
                .increment(1),
        }
        self.duration.record(started.elapsed().as_secs_f64());
        resp
    }

    async fn answer<B>(&self, req: &Request<B>, remote: SocketAddr) -> Response {
        if let Err(p) = self.authorize(req) {
            return self.refuse(remote, "unauthorized", p);
        }
        if req.uri().path() != PATH {
            let p = Problem::new(StatusCode::NOT_FOUND, "RESOURCE_URI_STRUCTURE_NOT_FOUND")
                .detail(format!("no resource here; the service is GET {PATH}"));
            return self.refuse(remote, "no_route", p);
        }
        if req.method() != Method::GET {
            let p = Problem::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED")
                .detail(format!("{} is not served on {PATH}: use GET", req.method()));
            let mut resp = self.refuse(remote, "method", p);
            resp.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
            return resp;
        }
        let raw = req.uri().query().unwrap_or("");
        if raw.len() > MAX_QUERY {
            let p = Problem::new(StatusCode::URI_TOO_LONG, "INVALID_QUERY_PARAM")
                .detail(format!("query over {MAX_QUERY} bytes"));
            return self.refuse(remote, "uri_too_long", p);
        }
        let q = match parse_query(raw) {
            Ok(q) => q,
            Err(e) => {
                let p = Problem::new(StatusCode::BAD_REQUEST, e.cause())
                    .detail(e.to_string())
                    .invalid(e.param(), e.reason());
                return self.refuse(remote, "bad_query", p);
            }
        };
        let check = EirRequest {
            interface: Interface::N5gEir,
            peer: remote.ip().to_string(),
            session_id: SessionId::Text(format!("n5g-eir:{remote}")),
            imsi: q.imsi,
            imei: q.pei,
            msisdn: q.msisdn,
        };
        let result = match self.eir.check_in_memory(&check) {
            Some(r) => r,
            None => {
                match tokio::time::timeout(BLOCKING_WAIT, self.blocking.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(permit)) => {
                        let eir = self.eir.clone();
                        let joined = tokio::task::spawn_blocking(move || {
                            let r = eir.check(&check);
                            drop(permit);
                            r
                        })
                        .await;
                        match joined {
                            Ok(r) => r,
                            Err(e) => {
                                let p = Problem::new(
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    "SYSTEM_FAILURE",
                                )
                                .detail("the check failed");
                                tracing::error!(error = %e, "N5g-eir check task failed");
                                return self.refuse(remote, "internal", p);
                            }
                        }
                    }
                    Ok(Err(_)) | Err(_) => {
                        let p = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "NF_CONGESTION")
                            .detail(format!("{MAX_BLOCKING} checks already wait for the store"));
                        return self.refuse(remote, "busy", p);
                    }
                }
            }
        };
        match result {
            Ok(EirAnswer::Status(s)) => response::status(s),
            Ok(EirAnswer::Unknown) => problem(
                Problem::new(StatusCode::NOT_FOUND, "ERROR_EQUIPMENT_UNKNOWN")
                    .detail("the equipment is unknown to this EIR"),
            ),
            Err(EngineError::NotServing) => {
                let p = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "NF_SERVICE_FAILOVER")
                    .detail("this node does not serve checks now: ask another EIR");
                self.refuse(remote, "not_serving", p)
            }
            Err(e) => {
                let p = Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "SYSTEM_FAILURE")
                    .detail("the lock could not be read or written");
                tracing::error!(error = %e, "N5g-eir check failed");
                self.refuse(remote, "internal", p)
            }
        }
    }

    /// `Err(401)` when a token is configured and the request does not carry it.
    fn authorize<B>(&self, req: &Request<B>) -> Result<(), Problem> {
        let Some(expected) = self.token.get() else {
            return Ok(());
        };
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(Problem::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
                .detail("missing or invalid bearer token"))
        }
    }

    /// The error response, with a log line (at most one per client and reason per 10 s).
    fn refuse(&self, remote: SocketAddr, reason: &'static str, p: Problem) -> Response {
        if let Some(admit) = self.log_limit.admit((remote.ip(), reason), Instant::now()) {
            tracing::info!(%remote, reason, status = p.status.as_u16(), cause = p.cause,
                detail = p.detail.as_deref().unwrap_or(""), suppressed = admit.suppressed,
                "N5g-eir request refused");
        }
        let status = p.status;
        let mut resp = problem(p);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
