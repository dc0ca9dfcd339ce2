//! `GET /v1/sims`: the SIM list with filters and cursor pagination (SPEC §3).
//!
//! # Format
//! `?profile=&effective=&imei_management=&bound=&imsi_prefix=&msisdn_prefix=&limit=&cursor=` →
//! `{"items": [SIM as GET /v1/sims/{imsi}], "next_cursor": "…" | null}`.
//!
//! SIMs come in key order (the bytes of the IMSI). The cursor is the last IMSI a page looked
//! at, so a walk stays stable under concurrent writes: a SIM that exists throughout the walk is
//! listed exactly once, one created or deleted during it at most once. A page holds at most
//! `limit` items; with selective filters it may hold fewer (even none) and still carry a cursor,
//! because one request reads at most [`SCAN_BUDGET`] SIMs. `next_cursor` is null only when the
//! walk is complete.
//!
//! This module only reads; it changes nothing and keeps no state between pages.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::input::{check_digits, check_profile_name, number, parse_imsi, Query};
use super::sims::{effective, pending_by_sim, SimView};
use super::{store, Shared};
use crate::context::Imsi;
use crate::store::{ImeiManagement, SimRecord};

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/sims", get(list_sims))
}

/// Default and largest page size.
pub(super) const DEFAULT_LIMIT: usize = 100;
pub(super) const MAX_LIMIT: usize = 1000;
/// Most SIMs one request reads (filters that match few SIMs page through the rest in steps).
const SCAN_BUDGET: usize = 20_000;
/// SIMs read from the store at a time.
const CHUNK: usize = 1024;

/// The query, as text: each parameter is checked by itself so the error names it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    profile: Option<String>,
    effective: Option<String>,
    imei_management: Option<String>,
    bound: Option<String>,
    imsi_prefix: Option<String>,
    msisdn_prefix: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// The checked filters.
#[derive(Default)]
struct Filter {
    profile: Option<String>,
    effective: Option<ImeiManagement>,
    /// `Some(None)`: SIMs without a value of their own (following their profile).
    value: Option<Option<ImeiManagement>>,
    bound: Option<bool>,
    imsi_prefix: String,
    msisdn_prefix: Option<String>,
}

fn value_of(field: &str, raw: &str) -> ApiResult<ImeiManagement> {
    raw.parse()
        .map_err(|e: crate::store::UnknownValue| ApiError::bad(field, e.to_string()))
}

impl Filter {
    fn parse(q: &ListQuery) -> ApiResult<Self> {
        let mut f = Self::default();
        if let Some(p) = &q.profile {
            check_profile_name("profile", p)?;
            f.profile = Some(p.clone());
        }
        if let Some(v) = &q.effective {
            f.effective = Some(value_of("effective", v)?);
        }
        if let Some(v) = &q.imei_management {
            f.value = Some(match v.as_str() {
                "none" => None,
                v => Some(value_of("imei_management", v).map_err(|_| {
                    ApiError::bad(
                        "imei_management",
                        format!("{v:?}: use disabled, lock, pairing or none"),
                    )
                })?),
            });
        }
        f.bound = match q.bound.as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err(ApiError::bad(
                    "bound",
                    format!("{other:?}: use true or false"),
                ))
            }
        };
        if let Some(p) = &q.imsi_prefix {
            check_digits("imsi_prefix", p, 15)?;
            f.imsi_prefix = p.clone();
        }
        if let Some(p) = &q.msisdn_prefix {
            let digits = p.strip_prefix('+').unwrap_or(p);
            check_digits("msisdn_prefix", digits, 15)?;
            f.msisdn_prefix = Some(digits.to_owned());
        }
        Ok(f)
    }

    /// Whether `sim` (with its effective value) passes every filter.
    fn admits(&self, sim: &SimRecord, effective: ImeiManagement) -> bool {
        self.profile
            .as_ref()
            .is_none_or(|p| sim.profile.as_ref() == Some(p))
            && self.effective.is_none_or(|e| e == effective)
            && self.value.is_none_or(|v| v == sim.value)
            && self.bound.is_none_or(|b| b == sim.bound.is_some())
            && self.msisdn_prefix.as_ref().is_none_or(|p| {
                sim.msisdn
                    .as_deref()
                    .is_some_and(|m| m.strip_prefix('+').unwrap_or(m).starts_with(p.as_str()))
            })
    }
}

#[derive(Serialize)]
struct Page {
    items: Vec<SimView>,
    next_cursor: Option<String>,
}

async fn list_sims(State(st): State<Shared>, Query(q): Query<ListQuery>) -> ApiResult<Response> {
    let limit = number("limit", q.limit.as_deref(), 1..=MAX_LIMIT, DEFAULT_LIMIT)?;
    let filter = Filter::parse(&q)?;
    let cursor = match q.cursor.as_deref() {
        Some(c) => Some(parse_imsi(c).map_err(|_| {
            ApiError::bad("cursor", format!("{c:?} is not a cursor this API gave out"))
        })?),
        None => None,
    };
    let page = tokio::task::spawn_blocking(move || walk(&st, &filter, cursor, limit))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(page).into_response())
}

/// Reads SIMs after `cursor` until `limit` pass the filter, the store ends, or the budget is
/// spent.
fn walk(st: &Shared, filter: &Filter, cursor: Option<Imsi>, limit: usize) -> ApiResult<Page> {
    let s = store(st);
    let mut matched: Vec<(SimRecord, ImeiManagement)> = Vec::new();
    let mut after = cursor;
    let mut scanned = 0usize;
    let mut complete = false;
    'scan: while scanned < SCAN_BUDGET {
        let Some(chunk) = next_chunk(st, filter, after.as_ref())? else {
            complete = true;
            break;
        };
        scanned += chunk.seen;
        after = Some(chunk.last);
        for sim in chunk.sims {
            let eff = effective(s, &sim)?;
            if filter.admits(&sim, eff) {
                matched.push((sim, eff));
                // One more than asked for: then there is a next page for sure.
                if matched.len() > limit {
                    break 'scan;
                }
            }
        }
    }
    let next_cursor = if matched.len() > limit {
        matched.truncate(limit);
        matched.last().map(|(s, _)| s.imsi.to_string())
    } else if complete {
        None
    } else {
        after.map(|i| i.to_string())
    };
    let mut pending = if matched.is_empty() {
        Default::default()
    } else {
        pending_by_sim(st)?
    };
    let items = matched
        .into_iter()
        .map(|(sim, eff)| {
            let p = pending.remove(&sim.imsi).unwrap_or_default();
            SimView::new(sim, eff, p)
        })
        .collect();
    Ok(Page { items, next_cursor })
}

/// SIMs read in one step of a walk.
struct Chunk {
    /// The SIMs to judge, in key order.
    sims: Vec<SimRecord>,
    /// The last key looked at (the walk goes on after it).
    last: Imsi,
    /// Keys looked at.
    seen: usize,
}

/// The next SIMs after `after` (None at the end): through the profile's member index when the
/// list is of one profile, else a key-order scan of the IMSI prefix.
fn next_chunk(st: &Shared, filter: &Filter, after: Option<&Imsi>) -> ApiResult<Option<Chunk>> {
    let s = store(st);
    let Some(profile) = &filter.profile else {
        let sims = s
            .scan_sims(&filter.imsi_prefix, after, CHUNK)
            .map_err(ApiError::internal)?;
        return Ok(sims.last().map(|l| l.imsi).map(|last| Chunk {
            seen: sims.len(),
            last,
            sims,
        }));
    };
    let imsis = s
        .sims_of_profile(profile, after, CHUNK)
        .map_err(ApiError::internal)?;
    let Some(&last) = imsis.last() else {
        return Ok(None);
    };
    let mut sims = Vec::with_capacity(imsis.len());
    for imsi in &imsis {
        if !imsi.as_bytes().starts_with(filter.imsi_prefix.as_bytes()) {
            continue;
        }
        // A member deleted since the index was read is skipped; one moved to another profile
        // is read and then refused by the filter.
        if let Some(sim) = s.sim(imsi).map_err(ApiError::internal)? {
            sims.push(sim);
        }
    }
    Ok(Some(Chunk {
        sims,
        last,
        seen: imsis.len(),
    }))
}
