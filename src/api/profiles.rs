//! `/v1/profiles`: service profiles — create or change one (`PUT`, a provisioning request), read
//! one, list them with their member counts (SPEC §3).
//!
//! # Format
//! `PUT /v1/profiles/{name}` `{"imei_management", "lock_fee"?}`: the profile as a whole;
//! `lock_fee` absent or `null` means the configured default (`[billing] lock_fee`).
//! `GET /v1/profiles?limit=&cursor=` → `{"items": [{"name","imei_management","lock_fee","sims"}],
//! "next_cursor": "…" | null}`, in name order; the cursor is the last name of the page.
//!
//! Nothing here changes state directly; member counts are read from the store's index.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::input::{check_profile_name, explicit, json_body, number, Query};
use super::sim_list::{DEFAULT_LIMIT, MAX_LIMIT};
use super::{store, submit, Shared};
use crate::store::{ImeiManagement, Operation, ProfileRecord};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/profiles", get(list_profiles))
        .route("/v1/profiles/{name}", put(put_profile).get(get_profile))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    imei_management: ImeiManagement,
    #[serde(default, deserialize_with = "explicit")]
    lock_fee: Option<Option<String>>,
}

/// A decimal amount such as `1.00` (pattern `^[0-9]+(\.[0-9]{1,4})?$`).
fn check_fee(fee: &str) -> ApiResult<()> {
    crate::config::parse_amount("lock_fee", fee).map_err(|_| {
        ApiError::bad(
            "lock_fee",
            format!("{fee:?} is not an amount such as \"1.00\" (digits, up to 4 decimals)"),
        )
    })
}

async fn put_profile(
    State(st): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    check_profile_name("name", &name)?;
    let b: ProfileBody = json_body(&headers, &body)?;
    let lock_fee = b.lock_fee.flatten();
    if let Some(fee) = &lock_fee {
        check_fee(fee)?;
    }
    submit(
        &st,
        Operation::UpsertProfile {
            name,
            value: b.imei_management,
            lock_fee,
        },
    )
    .await
}

/// A profile as the API shows it; `sims` only in lists.
#[derive(Serialize)]
struct ProfileView {
    name: String,
    imei_management: ImeiManagement,
    lock_fee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sims: Option<u64>,
}

impl ProfileView {
    fn new(p: ProfileRecord, sims: Option<u64>) -> Self {
        Self {
            name: p.name,
            imei_management: p.value,
            lock_fee: p.lock_fee,
            sims,
        }
    }
}

async fn get_profile(State(st): State<Shared>, Path(name): Path<String>) -> ApiResult<Response> {
    check_profile_name("name", &name)?;
    let p = store(&st)
        .profile(&name)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("name", format!("unknown profile {name:?}")))?;
    Ok(Json(ProfileView::new(p, None)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct Page {
    items: Vec<ProfileView>,
    next_cursor: Option<String>,
}

async fn list_profiles(
    State(st): State<Shared>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let limit = number("limit", q.limit.as_deref(), 1..=MAX_LIMIT, DEFAULT_LIMIT)?;
    if let Some(c) = &q.cursor {
        check_profile_name("cursor", c)?;
    }
    let page = tokio::task::spawn_blocking(move || -> ApiResult<Page> {
        let s = store(&st);
        let mut profiles = s
            .profiles(q.cursor.as_deref(), limit + 1)
            .map_err(ApiError::internal)?;
        let more = profiles.len() > limit;
        profiles.truncate(limit);
        let next_cursor = more
            .then(|| profiles.last().map(|p| p.name.clone()))
            .flatten();
        let mut items = Vec::with_capacity(profiles.len());
        for p in profiles {
            let n = s
                .profile_member_count(&p.name)
                .map_err(ApiError::internal)?;
            items.push(ProfileView::new(p, Some(n)));
        }
        Ok(Page { items, next_cursor })
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(page).into_response())
}
