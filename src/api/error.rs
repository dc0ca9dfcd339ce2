//! API errors: every 4xx and 5xx answer is JSON `{"error": "...", "field": "..."}`, the field
//! (or parameter) named where one is at fault — also for the router's own refusals (no such
//! route, method not allowed), which axum would otherwise answer in plain text or with no body.
//!
//! This module does not decide what is wrong with an input ([`super::input`] does); it only
//! shapes the answer.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An API error: status plus a JSON body naming the field at fault.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
    pub(super) field: Option<String>,
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// 400, naming the body field, path or query parameter at fault.
    pub(super) fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// 404, naming the path parameter of the thing that does not exist.
    pub(super) fn not_found(field: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    /// 413 for a body the store cannot take in one write (an import over etcd's request
    /// limit in cluster mode), with the store's reason.
    pub(super) fn too_large_for_store(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: message.into(),
            field: Some("body".into()),
        }
    }

    /// 415 for a body whose `Content-Type` the route does not take.
    pub(super) fn unsupported_type(expected: &str, got: &str) -> Self {
        Self {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: format!("Content-Type {got:?} is not accepted here: send {expected}"),
            field: Some("content-type".into()),
        }
    }

    /// 503: the store failed. Logged here, with the cause; the client learns only to retry.
    pub(super) fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "API request failed");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "storage unavailable, retry later".into(),
            field: None,
        }
    }

    /// The message, for callers that wrap it (CSV lines).
    pub(super) fn message(&self) -> &str {
        &self.message
    }
}

/// The statuses counted in `imei_lockd_api_refused_total` (registered at 0 by [`register`]).
const REFUSED: [StatusCode; 4] = [
    StatusCode::BAD_REQUEST,
    StatusCode::NOT_FOUND,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::UNSUPPORTED_MEDIA_TYPE,
];

/// Registers every `imei_lockd_api_refused_total{status}` series at 0.
pub(super) fn register() {
    for s in REFUSED {
        metrics::counter!("imei_lockd_api_refused_total", "status" => s.as_str().to_owned())
            .increment(0);
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if REFUSED.contains(&self.status) {
            metrics::counter!("imei_lockd_api_refused_total", "status" => self.status.as_str().to_owned())
                .increment(1);
            tracing::info!(status = self.status.as_u16(), field = self.field.as_deref().unwrap_or(""),
                error = %self.message, "API request refused");
        }
        let body = match &self.field {
            Some(f) => json!({"error": self.message, "field": f}),
            None => json!({"error": self.message}),
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}

/// The router's fallback: a JSON 404 for a path that no route serves.
pub(super) async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no route {}", uri.path()),
        field: Some("path".into()),
    }
}

/// A JSON 405 for a method that a served path does not take (axum adds the `Allow` header).
pub(super) async fn no_method(method: axum::http::Method) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!("method {method} not allowed here"),
        field: Some("method".into()),
    }
}

/// Longest plain-text error body turned into JSON by [`json_errors`].
const PLAIN_LIMIT: usize = 4096;

/// Makes every error answer JSON: one that a layer below the handlers produced in plain text
/// (axum's body-limit 413, a body timeout's 408, a path that is not UTF-8) is rewritten to
/// `{"error": <its text>, "field": ...}` with the same status and headers.
pub(super) async fn json_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, PLAIN_LIMIT).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).trim().to_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned(),
    };
    let field = match status {
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT => "body",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "content-type",
        StatusCode::METHOD_NOT_ALLOWED => "method",
        _ => "request",
    };
    let body = serde_json::to_vec(&json!({"error": text, "field": field})).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}
