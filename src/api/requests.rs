//! `GET /v1/requests/{id}[?wait=SECONDS]`: a provisioning request's status (SPEC §1.4), waiting
//! up to `wait` seconds for it to be processed.
//!
//! Read-only: requests are created by the write routes and processed by the provisioner.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, ApiResult};
use super::input::{number, rfc3339, Query};
use super::{store, Shared};
use crate::store::RequestStatus;

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/requests/{id}", get(get_request))
}

/// Longest `?wait=`.
pub(super) const MAX_WAIT_S: u64 = 30;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    wait: Option<String>,
}

async fn get_request(
    State(st): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Response> {
    // Ids are 1 to 20 digits (pattern `^[0-9]{1,20}$`); one that fits the pattern but no u64
    // is as unknown as any other.
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad(
            "id",
            format!("{id:?} is not a request id (1 to 20 digits)"),
        ));
    }
    let wait = number("wait", q.wait.as_deref(), 0..=MAX_WAIT_S, 0)?;
    let s = store(&st);
    let unknown = || ApiError::not_found("id", format!("unknown request {id}"));
    let Ok(seq) = id.parse::<u64>() else {
        return Err(unknown());
    };
    if s.request(seq).map_err(ApiError::internal)?.is_none() {
        return Err(unknown());
    }
    if wait > 0 {
        st.provisioner
            .wait_processed(seq, Duration::from_secs(wait))
            .await;
    }
    let r = s
        .request(seq)
        .map_err(ApiError::internal)?
        .ok_or_else(unknown)?;
    // Processed (or failed) only once in effect on every node serving sessions: until then a
    // session on another node could still see the state before it.
    let settled = r.seq <= st.provisioner.processed_seq();
    let status = if settled {
        r.status
    } else {
        RequestStatus::Pending
    };
    let mut body = json!({
        "id": r.seq.to_string(),
        "status": status,
        "submitted_at": rfc3339(r.submitted_at),
    });
    if let (true, Some(e)) = (settled, r.error) {
        body["error"] = json!(e);
    }
    if let (true, Some(t)) = (settled, r.processed_at) {
        body["processed_at"] = json!(rfc3339(t));
    }
    Ok(Json(body).into_response())
}
