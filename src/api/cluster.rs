//! `GET /v1/cluster`: the nodes as this node sees them (their applied revision, lag, serving
//! state), who holds each singleton, and the etcd members with their leader. On the embedded
//! store: one local node holding everything. Reads only; changes nothing.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::Shared;

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/cluster", get(cluster))
}

async fn cluster(State(st): State<Shared>) -> Json<serde_json::Value> {
    Json(st.coordination.describe().await)
}
