//! `POST /v1/backups` (take an online backup of this node's store) and `GET /v1/backups` (the
//! backups under `[node] backup_dir`, newest first).
//!
//! # Format
//! Both answer backups as `{"name", "path", "created_at", "sims"}`: POST the one it took
//! (201), GET `{"items": [...]}`. A store that cannot be backed up
//! from here (cluster mode: etcd holds the state) answers 409 naming `cluster.backend`, with what
//! to use instead; a backup directory the daemon cannot write answers 500 naming
//! `node.backup_dir`.
//!
//! The store decides whether and how it is copied ([`crate::store::LocalRead::checkpoint`]);
//! naming and manifests are [`crate::backup`]'s. This module knows no storage type and never
//! deletes a backup. Every backup is logged and counted in `imei_lockd_backups_total{result}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::error::{ApiError, ApiResult};
use super::Shared;
use crate::backup::{self, Backup, BackupError};
use crate::store::checkpoint::CheckpointError;

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/backups", post(create).get(list))
}

/// `result` of `imei_lockd_backups_total`.
const RESULTS: [&str; 3] = ["created", "refused", "failed"];

/// Registers the backup series: the counters at 0, and the time of the newest backup already
/// under `backup_dir` (0 when there is none).
pub(super) fn register(backup_dir: &std::path::Path) {
    for r in RESULTS {
        metrics::counter!("imei_lockd_backups_total", "result" => r).increment(0);
    }
    let newest = backup::list(backup_dir)
        .ok()
        .and_then(|l| l.into_iter().next())
        .map_or(0.0, |b| unix_seconds(&b.created_at));
    metrics::gauge!("imei_lockd_backup_last_success_timestamp_seconds").set(newest);
}

fn unix_seconds(rfc3339: &str) -> f64 {
    OffsetDateTime::parse(rfc3339, &Rfc3339).map_or(0.0, |t| t.unix_timestamp() as f64)
}

fn count(result: &'static str) {
    metrics::counter!("imei_lockd_backups_total", "result" => result).increment(1);
}

async fn create(State(st): State<Shared>) -> ApiResult<Response> {
    let st2 = st.clone();
    let started = std::time::Instant::now();
    let made = tokio::task::spawn_blocking(move || {
        backup::create(&*st2.reads, &st2.backup_dir, OffsetDateTime::now_utc())
    })
    .await
    .map_err(ApiError::internal)?;
    match made {
        Ok(b) => {
            count("created");
            metrics::gauge!("imei_lockd_backup_last_success_timestamp_seconds")
                .set(unix_seconds(&b.created_at));
            tracing::info!(name = %b.name, path = %b.path, sims = b.sims,
                elapsed_ms = started.elapsed().as_millis() as u64, "backup created");
            Ok((StatusCode::CREATED, Json(b)).into_response())
        }
        Err(BackupError::Checkpoint(CheckpointError::Unsupported(why))) => {
            count("refused");
            tracing::info!(reason = %why, "backup refused: this store is not backed up here");
            Err(ApiError {
                status: StatusCode::CONFLICT,
                message: why,
                field: Some("cluster.backend".into()),
            })
        }
        Err(e) => {
            count("failed");
            tracing::error!(error = %e, backup_dir = %st.backup_dir.display(), "backup failed");
            Err(ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("backup failed: {e}"),
                field: Some("node.backup_dir".into()),
            })
        }
    }
}

async fn list(State(st): State<Shared>) -> ApiResult<Json<serde_json::Value>> {
    let st2 = st.clone();
    let items: Vec<Backup> = tokio::task::spawn_blocking(move || backup::list(&st2.backup_dir))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "listing backups failed");
            ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: e.to_string(),
                field: Some("node.backup_dir".into()),
            }
        })?;
    Ok(Json(json!({ "items": items })))
}
