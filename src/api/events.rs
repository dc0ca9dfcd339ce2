//! `GET /v1/sims/{imsi}/events`: a SIM's event log, newest first (SPEC §1.6).
//!
//! Read-only; events are written by the engine and by provisioning, never here.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::input::{number, parse_imsi, rfc3339, Query};
use super::{existing_sim, store, Shared};
use crate::store::Event;

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/sims/{imsi}/events", get(sim_events))
}

/// Largest `?limit=`.
const MAX_LIMIT: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    limit: Option<String>,
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
    let limit = number("limit", q.limit.as_deref(), 1..=MAX_LIMIT, 100)?;
    existing_sim(&st, &imsi)?;
    let events: Vec<EventView> = store(&st)
        .events(&imsi, limit)
        .map_err(ApiError::internal)?
        .into_iter()
        .map(EventView::from)
        .collect();
    Ok(Json(events).into_response())
}
