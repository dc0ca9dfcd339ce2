//! `POST /v1/sims:import`: many SIMs in one provisioning request, from CSV (SPEC §3).
//!
//! # Format
//! `text/csv`, header `imsi,msisdn,profile,imei_management`, one SIM a line; an empty field
//! leaves it unset; fields are trimmed. An export's header ([`EXPORT_HEADER`]: the same four,
//! then the SIM's state) is taken too, the state columns ignored. A bad line rejects the whole file with a 400 naming the
//! line (`"field": "line N"`); an unknown profile is a 404 naming the line.
//!
//! The import is one request, processed in one go; this module only parses and submits. In
//! cluster mode the request is one etcd value: a file over the members' `--max-request-bytes`
//! is refused with 413 (split it, or raise the limit).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;

use super::error::{ApiError, ApiResult};
use super::input::{check_content_type, check_msisdn, check_profile_name, BodyKind};
use super::{accepted, store, Shared};
use crate::context::Imsi;
use crate::provisioning::ProvisioningError;
use crate::store::{ImeiManagement, ImportRow, Operation, StoreError};

/// Largest CSV import accepted (beyond: 413): about 1.5 million rows of
/// `imsi,msisdn,profile,imei_management`, while a hostile client cannot make one request buffer
/// more than this.
pub const IMPORT_LIMIT: usize = 64 * 1024 * 1024;

pub(super) fn routes() -> Router<Shared> {
    Router::new().route(
        "/v1/sims:import",
        post(import_sims).layer(axum::extract::DefaultBodyLimit::max(IMPORT_LIMIT)),
    )
}

/// The header an import must start with.
const HEADER: [&str; 4] = ["imsi", "msisdn", "profile", "imei_management"];

/// The header of an export (`imei-lockctl export --format csv`): [`HEADER`], then the SIM's
/// state (which sessions write). An import takes a file with this header as is and ignores the
/// state columns, so an export can be imported into another daemon.
pub const EXPORT_HEADER: [&str; 9] = [
    "imsi",
    "msisdn",
    "profile",
    "imei_management",
    "effective",
    "bound_imei",
    "bound_at",
    "last_seen_imei",
    "last_seen_at",
];

/// Parses a CSV import: header `imsi,msisdn,profile,imei_management`, empty fields are unset.
/// A bad row rejects the whole file, naming its line.
///
/// # Errors
/// 400 naming `line N` (or `body` for a file with no rows); 404 naming the line of an unknown
/// profile.
pub fn parse_import(
    body: &[u8],
    known_profile: impl Fn(&str) -> bool,
) -> Result<Vec<ImportRow>, ApiError> {
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let header = rd
        .headers()
        .map_err(|e| ApiError::bad("line 1", format!("cannot read the header: {e}")))?
        .clone();
    let names = header.iter().collect::<Vec<_>>();
    if names != HEADER && names != EXPORT_HEADER {
        return Err(ApiError::bad(
            "line 1",
            format!(
                "header must be {} (or an export's {})",
                HEADER.join(","),
                EXPORT_HEADER.join(",")
            ),
        ));
    }
    let mut rows = Vec::new();
    for (i, rec) in rd.records().enumerate() {
        let line = i + 2;
        let at = |m: String| ApiError::bad(format!("line {line}"), m);
        let rec = rec.map_err(|e| at(e.to_string()))?;
        if rec.len() != names.len() {
            return Err(at(format!(
                "expected {} fields, found {}",
                names.len(),
                rec.len()
            )));
        }
        let field = |n: usize| rec.get(n).filter(|s| !s.is_empty());
        let imsi = field(0)
            .ok_or_else(|| at("imsi is empty".into()))?
            .parse::<Imsi>()
            .map_err(|_| at("imsi is not 5 to 15 digits".into()))?;
        let msisdn = field(1).map(str::to_owned);
        if let Some(m) = &msisdn {
            check_msisdn("msisdn", m).map_err(|e| at(e.message().to_owned()))?;
        }
        let profile = field(2).map(str::to_owned);
        if let Some(p) = &profile {
            check_profile_name("profile", p).map_err(|e| at(e.message().to_owned()))?;
            if !known_profile(p) {
                return Err(ApiError::not_found(
                    &format!("line {line}"),
                    format!("unknown profile {p:?}"),
                ));
            }
        }
        let value = match field(3) {
            Some(v) => Some(
                v.parse::<ImeiManagement>()
                    .map_err(|e| at(format!("imei_management: {e}")))?,
            ),
            None => None,
        };
        rows.push(ImportRow {
            imsi,
            msisdn,
            profile,
            value,
        });
    }
    if rows.is_empty() {
        return Err(ApiError::bad("body", "the file has no rows"));
    }
    Ok(rows)
}

async fn import_sims(
    State(st): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    check_content_type(&headers, BodyKind::Csv)?;
    let st2 = st.clone();
    let rows = tokio::task::spawn_blocking(move || {
        let s = store(&st2);
        parse_import(&body, |p| matches!(s.profile(p), Ok(Some(_))))
    })
    .await
    .map_err(ApiError::internal)??;
    let n = rows.len();
    let rec = st
        .provisioner
        .submit(Operation::Import { rows })
        .await
        .map_err(|e| match e {
            ProvisioningError::Store(StoreError::TooLarge(why)) => {
                tracing::info!(rows = n, reason = %why, "SIM import refused: too large for the store");
                ApiError::too_large_for_store(format!(
                    "{n} rows are more than the cluster store takes in one request ({why}): \
                     split the file"
                ))
            }
            e => ApiError::internal(e),
        })?;
    tracing::info!(request = rec.seq, rows = n, "SIM import accepted");
    Ok(accepted(&rec))
}
