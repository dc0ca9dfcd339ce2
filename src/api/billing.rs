//! `GET /v1/billing/{YYYY-MM}`: the Lock fees of a month (SPEC §1.5), as JSON or CSV
//! (`?format=csv`, or `Accept: text/csv`).
//!
//! Read-only: charges are recorded by provisioning when a SIM's effective value becomes `lock`.
//! The CSV is streamed page by page ([`super::billing_csv`]); the JSON is built in memory.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::billing_csv;
use super::error::{ApiError, ApiResult};
use super::input::{rfc3339, Query};
use super::{store, Shared};
use crate::provisioning::parse_month;
use crate::store::ImeiManagement;

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/billing/{month}", get(get_billing))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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
        return Err(ApiError::bad(
            "month",
            format!("{month:?} is not a month YYYY-MM (01 to 12)"),
        ));
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
    if csv_wanted {
        // Streamed page by page (see billing_csv); a store error before the first page is
        // still a 500 with a problem body.
        store(&st)
            .charges_page(&month, None, 1)
            .map_err(ApiError::internal)?;
        let body = billing_csv::stream(st.reads.clone(), month);
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response());
    }
    let charges = store(&st).charges(&month).map_err(ApiError::internal)?;
    let label = ImeiManagement::Lock.label();
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
