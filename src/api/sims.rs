//! `/v1/sims/{imsi}` and its sub-resources: create or change a SIM, set its IMEI-management
//! value, reset its bound IMEI, delete it, read it as sessions see it.
//!
//! Writes become provisioning requests (202 with a request id); nothing here changes state
//! directly. A request that lacks its field changes nothing (400). The SIM list is
//! [`super::sim_list`], the CSV import [`super::import`], the event log [`super::events`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::input::{
    check_msisdn, check_profile_name, explicit, json_body, nullable, parse_imsi, rfc3339,
};
use super::{existing_sim, store, submit, Shared};
use crate::context::Imsi;
use crate::store::{ImeiManagement, LocalRead, Operation, RequestStatus, SimRecord};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v1/sims/{imsi}",
            put(put_sim).get(get_sim).delete(delete_sim),
        )
        .route("/v1/sims/{imsi}/imei-management", put(put_sim_value))
        .route("/v1/sims/{imsi}/reset", post(reset_sim))
}

/// `PUT /v1/sims/{imsi}`: every field optional; absent leaves it as is, `null` clears it
/// (`imei_management: null`: follow the profile).
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
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let imsi = parse_imsi(&imsi)?;
    let b: PutSimBody = json_body(&headers, &body)?;
    if let Some(Some(m)) = &b.msisdn {
        check_msisdn("msisdn", m)?;
    }
    if let Some(Some(p)) = &b.profile {
        check_profile_name("profile", p)?;
        if store(&st).profile(p).map_err(ApiError::internal)?.is_none() {
            return Err(ApiError::not_found(
                "profile",
                format!("unknown profile {p:?}: create it first (PUT /v1/profiles/{p})"),
            ));
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
    .await
}

/// A SIM as `GET /v1/sims/{imsi}` and the list show it (SPEC §3).
#[derive(Serialize)]
pub(super) struct SimView {
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

impl SimView {
    pub(super) fn new(sim: SimRecord, effective: ImeiManagement, pending: Vec<String>) -> Self {
        Self {
            imsi: sim.imsi.to_string(),
            msisdn: sim.msisdn,
            profile: sim.profile,
            imei_management: sim.value,
            effective,
            bound_imei: sim.bound.map(|i| i.to_string()),
            bound_at: sim.bound_at.map(rfc3339),
            last_seen_imei: sim.last_seen.map(|i| i.to_string()),
            last_seen_at: sim.last_seen_at.map(rfc3339),
            pending_requests: pending,
        }
    }
}

/// Most pending requests looked at for a SIM's `pending_requests` (the backlog is normally a
/// handful; beyond this, a SIM's list may be incomplete).
const PENDING_SCAN: usize = 10_000;

/// Ids of the requests not yet processed, by the SIM they name (imports name none).
pub(super) fn pending_by_sim(st: &Shared) -> ApiResult<HashMap<Imsi, Vec<String>>> {
    let mut by_sim: HashMap<Imsi, Vec<String>> = HashMap::new();
    let pending = store(st)
        .requests_after(st.provisioner.processed_seq(), PENDING_SCAN)
        .map_err(ApiError::internal)?;
    for r in pending {
        if r.status != RequestStatus::Pending {
            continue;
        }
        if let Some(imsi) = r.op.imsi() {
            by_sim.entry(*imsi).or_default().push(r.seq.to_string());
        }
    }
    Ok(by_sim)
}

/// The effective value of a SIM (its own, else its profile's, else disabled).
pub(super) fn effective(s: &dyn LocalRead, sim: &SimRecord) -> ApiResult<ImeiManagement> {
    crate::engine::effective_value(s, sim).map_err(ApiError::internal)
}

async fn get_sim(State(st): State<Shared>, Path(imsi): Path<String>) -> ApiResult<Response> {
    let imsi = parse_imsi(&imsi)?;
    let sim = existing_sim(&st, &imsi)?;
    let effective = effective(store(&st), &sim)?;
    let pending = pending_by_sim(&st)?.remove(&imsi).unwrap_or_default();
    Ok(Json(SimView::new(sim, effective, pending)).into_response())
}

async fn delete_sim(State(st): State<Shared>, Path(imsi): Path<String>) -> ApiResult<Response> {
    let imsi = parse_imsi(&imsi)?;
    existing_sim(&st, &imsi)?;
    submit(&st, Operation::DeleteSim { imsi }).await
}

/// `PUT /v1/sims/{imsi}/imei-management`: `value` is required; `null` means "follow the
/// profile". `{}` is a 400 and changes nothing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueBody {
    #[serde(deserialize_with = "nullable")]
    value: Option<ImeiManagement>,
}

async fn put_sim_value(
    State(st): State<Shared>,
    Path(imsi): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let imsi = parse_imsi(&imsi)?;
    let b: ValueBody = json_body(&headers, &body)?;
    existing_sim(&st, &imsi)?;
    submit(
        &st,
        Operation::SetSimValue {
            imsi,
            value: b.value,
        },
    )
    .await
}

async fn reset_sim(State(st): State<Shared>, Path(imsi): Path<String>) -> ApiResult<Response> {
    let imsi = parse_imsi(&imsi)?;
    existing_sim(&st, &imsi)?;
    submit(&st, Operation::Reset { imsi }).await
}
