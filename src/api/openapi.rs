//! `GET /v1/openapi.json`: the OpenAPI 3.0 document of every route (committed beside this file
//! as `openapi.json`, served as is).
//!
//! The document is the contract third-party tools check the server against: the test below
//! compares its paths and methods with the router's, and `integration-tests/schemathesis.rs`
//! runs schemathesis over it against the real daemon. This module does not generate it.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::Shared;

/// The OpenAPI document of these routes.
pub const OPENAPI: &str = include_str!("openapi.json");

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/openapi.json", get(openapi))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
