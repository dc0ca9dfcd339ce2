//! `GET /v1/cluster`: the nodes as this node sees them (their applied revision, lag, serving
//! state), who holds each singleton, and the etcd members with their leader. On the embedded
//! store: one local node holding everything.
//!
//! `POST /v1/cluster/verify`: compares this node's cache with etcd at one revision. Neither
//! route changes anything.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::error::{ApiError, ApiResult};
use super::Shared;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/cluster", get(cluster))
        .route("/v1/cluster/verify", post(verify))
}

async fn cluster(State(st): State<Shared>) -> Json<serde_json::Value> {
    Json(st.coordination.describe().await)
}

async fn verify(State(st): State<Shared>) -> ApiResult<Json<serde_json::Value>> {
    match st.coordination.verify_cache().await {
        Some(Ok(v)) => Ok(Json(v)),
        Some(Err(e)) => Err(ApiError::internal(e)),
        None => Err(ApiError {
            status: StatusCode::CONFLICT,
            message: "this node runs the embedded store: there is no cache to compare".into(),
            field: Some("cluster.backend".into()),
        }),
    }
}
