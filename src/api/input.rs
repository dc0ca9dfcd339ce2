//! Checked reading of API input: path parameters, query strings, JSON and the content types of
//! bodies. Every failure is an [`ApiError`] naming the parameter or field, with the same rules the
//! OpenAPI document states as patterns (`openapi.json`), so the two cannot drift apart unnoticed
//! (`tests` below and the schemathesis run in `integration-tests/schemathesis.rs`).
//!
//! This module does not look anything up: whether a SIM or profile exists is the resource's
//! business.

use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::{Deserialize, Deserializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::error::{ApiError, ApiResult};
use crate::context::Imsi;
use crate::store::Millis;

/// Time as RFC 3339 (UTC), as every timestamp of the API is written.
pub(super) fn rfc3339(ms: Millis) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// An IMSI path parameter or filter: 5 to 15 digits.
pub(super) fn parse_imsi(raw: &str) -> ApiResult<Imsi> {
    raw.parse()
        .map_err(|_| ApiError::bad("imsi", format!("{raw:?} is not an IMSI (5 to 15 digits)")))
}

/// A profile name: 1 to 64 of `A-Z a-z 0-9 - _ .` (pattern `^[A-Za-z0-9._-]{1,64}$`).
pub(super) fn check_profile_name(field: &str, name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(
            field,
            format!("{name:?}: profile names are 1-64 of A-Z a-z 0-9 - _ ."),
        ))
    }
}

/// An MSISDN: up to 15 digits, optionally after `+` (pattern `^\+?[0-9]{1,15}$`).
pub(super) fn check_msisdn(field: &str, m: &str) -> ApiResult<()> {
    let digits = m.strip_prefix('+').unwrap_or(m);
    if (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ApiError::bad(
            field,
            format!("{m:?} is not an MSISDN (up to 15 digits, optionally after +)"),
        ))
    }
}

/// Digits only, at most `max` (prefix filters), possibly empty.
pub(super) fn check_digits(field: &str, s: &str, max: usize) -> ApiResult<()> {
    if s.len() <= max && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ApiError::bad(field, format!("{s:?}: up to {max} digits")))
    }
}

/// The `Content-Type` of a body, checked against what the route takes: `expected` (`json`:
/// `application/json` or any `+json` type; `csv`: `text/csv` or `text/plain`). A body sent
/// without a type, or with `application/x-www-form-urlencoded` — the type `curl -d` and
/// Python's urllib put on any body when the caller names none — is taken as the route's own:
/// operators' scripts written that way kept working before types were checked, and must keep
/// working. Any other type is a 415.
pub(super) fn check_content_type(headers: &HeaderMap, expected: BodyKind) -> ApiResult<()> {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let raw = v.to_str().unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/x-www-form-urlencoded" {
        return Ok(());
    }
    let ok = match expected {
        BodyKind::Json => essence == "application/json" || essence.ends_with("+json"),
        BodyKind::Csv => essence == "text/csv" || essence == "text/plain",
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::unsupported_type(expected.as_str(), raw))
    }
}

/// What a route's body is.
#[derive(Clone, Copy, Debug)]
pub(super) enum BodyKind {
    Json,
    Csv,
}

impl BodyKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Csv => "text/csv",
        }
    }
}

/// Parses a JSON body (checking its type first), naming the field at fault. An empty body is a
/// 400 naming `body`: every JSON route takes an object, `{}` at least.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<T> {
    check_content_type(headers, BodyKind::Json)?;
    // serde also reads a struct from a JSON array (`[null, null]` would be msisdn and profile
    // cleared): only an object is a body here.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad(
            "body",
            "a JSON object is required ({} at least)",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // serde reports a missing field at its parent: name the field itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        let field = match (missing, path.as_str()) {
            (Some(f), ".") => f.to_owned(),
            (Some(f), p) => format!("{p}.{f}"),
            (None, ".") => "body".to_owned(),
            (None, _) => path,
        };
        ApiError::bad(field, message)
    })
}

/// For optional fields where `null` means something: `Some(None)` for an explicit `null`,
/// `None` when absent (with `#[serde(default)]`).
pub(super) fn explicit<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// For required fields that may be `null`: without `#[serde(default)]`, serde reports the
/// field missing when it is absent (a plain `Option` field would silently read as `null`).
pub(super) fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// A query string decoded into `T`; a bad or unknown parameter is a 400 naming it (axum's own
/// `Query` answers in plain text).
pub(super) struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let message = e.inner().to_string();
                let named = message
                    .strip_prefix("unknown field `")
                    .or_else(|| message.strip_prefix("missing field `"))
                    .and_then(|m| m.split('`').next())
                    .map(str::to_owned);
                let path = e.path().to_string();
                let field = named.unwrap_or(if path == "." { "query".into() } else { path });
                ApiError::bad(field, message)
            })
    }
}

/// A number from a query string: the parameters are decoded as text first, so that an empty or
/// malformed value names its parameter instead of failing the whole string.
pub(super) fn number<T>(
    field: &str,
    raw: Option<&str>,
    range: std::ops::RangeInclusive<T>,
    default: T,
) -> ApiResult<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(raw) = raw else {
        return Ok(default);
    };
    let n: T = raw.parse().map_err(|_| {
        ApiError::bad(
            field,
            format!(
                "{raw:?} is not a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )
    })?;
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(ApiError::bad(
            field,
            format!("must be {} to {}", range.start(), range.end()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(check_content_type(&h, BodyKind::Json).is_ok());
        for (t, json_ok, csv_ok) in [
            ("application/json", true, false),
            ("application/json; charset=utf-8", true, false),
            ("application/merge-patch+json", true, false),
            ("text/csv", false, true),
            ("text/plain;charset=utf-8", false, true),
            ("application/x-www-form-urlencoded", true, true),
            ("text/xml", false, false),
            ("multipart/form-data; boundary=x", false, false),
        ] {
            h.insert(header::CONTENT_TYPE, t.parse().unwrap());
            assert_eq!(
                check_content_type(&h, BodyKind::Json).is_ok(),
                json_ok,
                "{t}"
            );
            assert_eq!(check_content_type(&h, BodyKind::Csv).is_ok(), csv_ok, "{t}");
        }
    }

    #[test]
    fn numbers_name_their_parameter() {
        assert_eq!(number("wait", None, 0..=30, 0).unwrap(), 0);
        assert_eq!(number("wait", Some("30"), 0..=30, 0).unwrap(), 30);
        for bad in ["", "abc", "31", "-1", "1.5"] {
            let e = number("wait", Some(bad), 0u64..=30, 0).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("wait"), "{bad:?}");
        }
    }

    #[test]
    fn missing_body_and_missing_field_are_400() {
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct B {
            #[serde(deserialize_with = "nullable")]
            #[allow(dead_code)]
            value: Option<u8>,
        }
        let h = HeaderMap::new();
        let e = json_body::<B>(&h, &Bytes::from_static(b"")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"));
        let e = json_body::<B>(&h, &Bytes::from_static(b"[null]")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"), "an array is no object");
        let e = json_body::<B>(&h, &Bytes::from_static(b"{}")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("value"));
        assert!(json_body::<B>(&h, &Bytes::from_static(b"{\"value\":null}"))
            .unwrap()
            .value
            .is_none());
        let e = json_body::<B>(&h, &Bytes::from_static(b"{\"value\":1,\"x\":2}")).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
    }
}
