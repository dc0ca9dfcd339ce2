//! `GET /v1/imei-management/values`: the drop-down's values with the labels the customer sees
//! ("extra fees apply" beside Lock, SPEC §1.5). Static; reads nothing.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::Shared;
use crate::store::ImeiManagement;

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/imei-management/values", get(values))
}

async fn values() -> Json<serde_json::Value> {
    Json(json!(ImeiManagement::ALL
        .iter()
        .map(|v| json!({
            "value": v.as_str(),
            "label": v.label(),
            "extra_fees": *v == ImeiManagement::Lock,
        }))
        .collect::<Vec<_>>()))
}
