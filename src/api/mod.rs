//! The provisioning REST API (SPEC §3): one more shell over the engine's side of the house.
//!
//! # Layout
//! One file per resource, each with its routes and handlers (`sims`, `sim_list`, `import`,
//! `events`, `profiles`, `requests`, `billing`, `values`, `cluster`, `backups`, `openapi`);
//! [`input`] checks what clients send, [`error`] shapes every error as JSON naming the field or
//! parameter, [`serve`] is the HTTP shell (listener, timeouts, body sizes, token).
//!
//! Writes become provisioning requests through [`Provisioner::submit`] (202 with a request id,
//! durable when answered); reads come from this node's [`LocalRead`] (never the network: in
//! cluster mode, the node's cache of etcd), as sessions on this node see it. The API holds no
//! writable store handle.
//! Every route but `/healthz` needs `Authorization: Bearer <token>` (compared in constant time).
//! Bad input is a 400 whose JSON names the field; unknown SIMs, profiles and requests are 404.
//!
//! This layer decides nothing about the lock and never writes the store itself. The routes are
//! a contract with operators' scripts: add, never rename.

mod backups;
mod billing;
mod billing_csv;
mod cluster;
mod error;
mod events;
mod import;
mod input;
mod openapi;
mod profiles;
mod requests;
mod serve;
mod sim_list;
mod sims;
mod values;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub use error::ApiError;
pub use import::{parse_import, EXPORT_HEADER, IMPORT_LIMIT};
pub use openapi::OPENAPI;
pub use serve::{bind, serve, ApiToken, ServeLimits};

use crate::context::Imsi;
use crate::provisioning::Provisioner;
use crate::store::{Coordination, LocalRead, Operation, RequestRecord, SimRecord};
use error::ApiResult;

/// Largest JSON body accepted (beyond: 413).
pub const JSON_LIMIT: usize = 64 * 1024;

/// Shared state of the API handlers.
pub struct ApiState {
    pub provisioner: Arc<Provisioner>,
    /// This node's reads (what sessions here see).
    pub reads: Arc<dyn LocalRead>,
    /// Who serves and who holds what (`GET /v1/cluster`).
    pub coordination: Arc<dyn Coordination>,
    /// The bearer token (SIGHUP replaces it).
    pub token: ApiToken,
    /// Where `POST /v1/backups` writes (`[node] backup_dir`).
    pub backup_dir: std::path::PathBuf,
}

type Shared = Arc<ApiState>;

/// Builds the router: every resource's routes behind the token check, `/healthz` without it,
/// JSON errors for paths and methods that no route serves.
pub fn router(state: Shared) -> Router {
    let v1 = Router::new()
        .merge(sims::routes())
        .merge(sim_list::routes())
        .merge(import::routes())
        .merge(events::routes())
        .merge(profiles::routes())
        .merge(requests::routes())
        .merge(billing::routes())
        .merge(values::routes())
        .merge(cluster::routes())
        .merge(backups::routes())
        .merge(openapi::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            serve::require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(v1)
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::no_method)
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        .with_state(state)
}

/// 202 with the request's id, and its status resource in `Location`.
fn accepted(rec: &RequestRecord) -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/requests/{}", rec.seq))],
        Json(json!({"request_id": rec.seq.to_string()})),
    )
        .into_response()
}

/// Submits a provisioning request: 202 once it is durable.
async fn submit(st: &ApiState, op: Operation) -> ApiResult<Response> {
    let rec = st
        .provisioner
        .submit(op)
        .await
        .map_err(ApiError::internal)?;
    Ok(accepted(&rec))
}

fn store(st: &ApiState) -> &dyn LocalRead {
    &*st.reads
}

/// The SIM, or a 404 naming `imsi`.
fn existing_sim(st: &ApiState, imsi: &Imsi) -> ApiResult<SimRecord> {
    store(st)
        .sim(imsi)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("imsi", format!("unknown SIM {imsi}")))
}
