//! The bodies N5g-eir answers: `EirResponseData` (TS 29.511 §6.1.6.2.2) and `ProblemDetails`
//! (TS 29.571 §5.2.4.1) with `application/problem+json`.
//!
//! This module only encodes; what to answer is decided in [`super`].

use axum::body::Bytes;
use axum::http::{header, HeaderValue, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::Response;
use crate::eir::EquipmentStatus;

/// A ProblemDetails to send.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    /// The application error (TS 29.500 §5.2.7, TS 29.511 §6.1.7.3).
    pub cause: &'static str,
    pub detail: Option<String>,
    /// `invalidParams`: (param, reason).
    pub invalid: Option<(String, String)>,
}

impl Problem {
    pub fn new(status: StatusCode, cause: &'static str) -> Self {
        Self {
            status,
            cause,
            detail: None,
            invalid: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn invalid(mut self, param: &str, reason: String) -> Self {
        self.invalid = Some((param.to_owned(), reason));
        self
    }
}

fn with_body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// 200 `{"status":"WHITELISTED"}`.
pub fn status(s: EquipmentStatus) -> Response {
    let body = match s {
        EquipmentStatus::Whitelisted => &br#"{"status":"WHITELISTED"}"#[..],
        EquipmentStatus::Blacklisted => br#"{"status":"BLACKLISTED"}"#,
        EquipmentStatus::Greylisted => br#"{"status":"GREYLISTED"}"#,
    };
    with_body(StatusCode::OK, "application/json", body.to_vec())
}

/// The ProblemDetails response.
pub fn problem(p: Problem) -> Response {
    let mut body = json!({
        "title": p.status.canonical_reason().unwrap_or("Error"),
        "status": p.status.as_u16(),
        "cause": p.cause,
    });
    if let Some(d) = &p.detail {
        body["detail"] = json!(d);
    }
    if let Some((param, reason)) = &p.invalid {
        body["invalidParams"] = json!([{"param": param, "reason": reason}]);
    }
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    with_body(p.status, "application/problem+json", bytes)
}
