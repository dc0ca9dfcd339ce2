//! The query of `GET /n5g-eir-eic/v1/equipment-status` (TS 29.511 §6.1.3.2.3.1): `pei`
//! (mandatory), `supi` and `gpsi` (optional), decoded into what the EIR needs.
//!
//! - `pei`: `imei-<15 digits>` or `imeisv-<16 digits>` (TS 29.571 `Pei`). A 15-digit IMEI
//!   whose Luhn check digit is wrong is an IMEI that is not one: [`PresentedImei::Malformed`],
//!   answered by `[eir] malformed_imei`. Anything else (no prefix, another digit count, the
//!   `mac-`/`eui-` forms of wireline devices) is a 400 `MANDATORY_IE_INCORRECT`; a missing or
//!   empty `pei` a 400 `MANDATORY_IE_MISSING`.
//! - `supi`: `imsi-<5..15 digits>`; another SUPI form (`nai-`, `gci-`, `gli-`, …) carries no
//!   IMSI: the lock cannot judge it and `[eir] missing_imsi` answers, as without `supi`. An
//!   `imsi-` that is not 5–15 digits, or an empty `supi`, is a 400 `OPTIONAL_IE_INCORRECT`.
//! - `gpsi`: `msisdn-<5..15 digits>` becomes the MSISDN; another form (`extid-…`) is ignored;
//!   a malformed `msisdn-` is a 400 `OPTIONAL_IE_INCORRECT`.
//! - Percent-encoding is strict (`%` must start two hex digits; the result must be UTF-8; `+`
//!   is a space): else a 400 `INVALID_QUERY_PARAM`. A parameter given twice is a 400; other
//!   parameters (`supported-features`) are ignored.
//!
//! A pure function of the query text: no I/O, no clock, no allocation beyond the values.

use std::borrow::Cow;

use crate::context::{Imsi, PresentedImei};
use crate::imei::Imei;

/// What the query says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EquipmentQuery {
    pub pei: PresentedImei,
    /// `None`: no `supi`, or one of another form than `imsi-`.
    pub imsi: Option<Imsi>,
    /// The digits of a `gpsi` of the form `msisdn-`.
    pub msisdn: Option<String>,
}

/// Why a query is refused (a 400 ProblemDetails).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("{param} is missing")]
    Missing { param: &'static str },
    #[error("{param}: {reason}")]
    Incorrect { param: &'static str, reason: String },
    #[error("{param}: bad percent-encoding")]
    Encoding { param: String },
}

impl QueryError {
    /// The parameter named in `invalidParams`.
    pub fn param(&self) -> &str {
        match self {
            Self::Missing { param } | Self::Incorrect { param, .. } => param,
            Self::Encoding { param } => param,
        }
    }

    /// The TS 29.500 application error (`cause`).
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Missing { .. } => "MANDATORY_IE_MISSING",
            Self::Incorrect { param: "pei", .. } => "MANDATORY_IE_INCORRECT",
            Self::Incorrect { .. } => "OPTIONAL_IE_INCORRECT",
            Self::Encoding { .. } => "INVALID_QUERY_PARAM",
        }
    }

    /// The `reason` of the `invalidParams` entry.
    pub fn reason(&self) -> String {
        match self {
            Self::Missing { param } => format!("{param} is mandatory"),
            Self::Incorrect { reason, .. } => reason.clone(),
            Self::Encoding { .. } => {
                "bad percent-encoding (% must start two hex digits; the value must be UTF-8)"
                    .to_owned()
            }
        }
    }
}

const PEI_FORMS: &str = "expected imei-<15 digits> or imeisv-<16 digits>";

/// Parses the raw query (after `?`, still percent-encoded).
///
/// # Errors
/// [`QueryError`] naming the parameter at fault.
pub fn parse_query(raw: &str) -> Result<EquipmentQuery, QueryError> {
    let mut pei: Option<Cow<'_, str>> = None;
    let mut supi: Option<Cow<'_, str>> = None;
    let mut gpsi: Option<Cow<'_, str>> = None;
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(k).map_err(|()| QueryError::Encoding {
            param: "query".to_owned(),
        })?;
        let (slot, name) = match &*key {
            "pei" => (&mut pei, "pei"),
            "supi" => (&mut supi, "supi"),
            "gpsi" => (&mut gpsi, "gpsi"),
            _ => continue,
        };
        if slot.is_some() {
            return Err(QueryError::Incorrect {
                param: name,
                reason: format!("{name} is given more than once"),
            });
        }
        *slot = Some(decode(v).map_err(|()| QueryError::Encoding {
            param: name.to_owned(),
        })?);
    }
    let pei = match pei.as_deref() {
        None | Some("") => return Err(QueryError::Missing { param: "pei" }),
        Some(p) => parse_pei(p)?,
    };
    let imsi = supi.as_deref().map(parse_supi).transpose()?.flatten();
    let msisdn = gpsi.as_deref().map(parse_gpsi).transpose()?.flatten();
    Ok(EquipmentQuery { pei, imsi, msisdn })
}

fn digits(s: &str, n: std::ops::RangeInclusive<usize>) -> bool {
    n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_pei(p: &str) -> Result<PresentedImei, QueryError> {
    let incorrect = || QueryError::Incorrect {
        param: "pei",
        reason: PEI_FORMS.to_owned(),
    };
    let text = if let Some(d) = p.strip_prefix("imei-") {
        digits(d, 15..=15).then_some(d).ok_or_else(incorrect)?
    } else if let Some(d) = p.strip_prefix("imeisv-") {
        digits(d, 16..=16).then_some(d).ok_or_else(incorrect)?
    } else {
        return Err(incorrect());
    };
    Ok(match Imei::parse_text(text) {
        Ok(parsed) => PresentedImei::Valid(parsed),
        // 15 digits with a wrong check digit (the only error left after the digit checks).
        Err(e) => PresentedImei::Malformed(e),
    })
}

fn parse_supi(s: &str) -> Result<Option<Imsi>, QueryError> {
    let incorrect = |reason: &str| QueryError::Incorrect {
        param: "supi",
        reason: reason.to_owned(),
    };
    if s.is_empty() {
        return Err(incorrect("empty"));
    }
    match s.strip_prefix("imsi-") {
        Some(d) => Imsi::parse(d.as_bytes())
            .map(Some)
            .map_err(|_| incorrect("expected imsi-<5 to 15 digits>")),
        // nai-, gci-, gli-: a SUPI without an IMSI.
        None => Ok(None),
    }
}

fn parse_gpsi(s: &str) -> Result<Option<String>, QueryError> {
    match s.strip_prefix("msisdn-") {
        Some(d) if digits(d, 5..=15) => Ok(Some(d.to_owned())),
        Some(_) => Err(QueryError::Incorrect {
            param: "gpsi",
            reason: "expected msisdn-<5 to 15 digits>".to_owned(),
        }),
        None if s.is_empty() => Err(QueryError::Incorrect {
            param: "gpsi",
            reason: "empty".to_owned(),
        }),
        None => Ok(None),
    }
}

/// Strict percent-decoding (`+` is a space); `Err` for a `%` not followed by two hex digits
/// or a result that is not UTF-8.
fn decode(s: &str) -> Result<Cow<'_, str>, ()> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = bytes.next().and_then(hex).ok_or(())?;
                let lo = bytes.next().and_then(hex).ok_or(())?;
                out.push(hi << 4 | lo);
            }
            b'+' => out.push(b' '),
            other => out.push(other),
        }
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| ())
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMEI15: &str = "490154203237518";

    fn ok(q: &str) -> EquipmentQuery {
        parse_query(q).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    fn err(q: &str) -> QueryError {
        parse_query(q).expect_err(q)
    }

    #[test]
    fn the_forms_of_the_spec() {
        let q = ok(&format!(
            "pei=imei-{IMEI15}&supi=imsi-001010000000001&gpsi=msisdn-4915112345678"
        ));
        assert_eq!(q.pei.imei().unwrap().to_imei15(), IMEI15);
        assert_eq!(q.imsi.unwrap().as_str(), "001010000000001");
        assert_eq!(q.msisdn.as_deref(), Some("4915112345678"));
        let q = ok("supi=imsi-00101&pei=imeisv-4901542032375101&supported-features=1");
        let PresentedImei::Valid(p) = q.pei else {
            panic!()
        };
        assert_eq!(p.svn, Some(1));
        assert_eq!(q.imsi.unwrap().as_str(), "00101");
        // Percent-encoded and other SUPI / GPSI forms.
        let q = ok(&format!(
            "pei=imei%2D{IMEI15}&supi=nai-user%40realm&gpsi=extid-a%40b"
        ));
        assert!(q.pei.imei().is_some() && q.imsi.is_none() && q.msisdn.is_none());
    }

    #[test]
    fn a_bad_check_digit_is_a_malformed_imei() {
        let q = ok("pei=imei-490154203237519&supi=imsi-001010000000001");
        assert!(matches!(q.pei, PresentedImei::Malformed(_)));
    }

    #[test]
    fn refusals_name_the_parameter_and_cause() {
        for (q, param, cause) in [
            ("", "pei", "MANDATORY_IE_MISSING"),
            ("supi=imsi-00101", "pei", "MANDATORY_IE_MISSING"),
            ("pei=", "pei", "MANDATORY_IE_MISSING"),
            ("pei=imei-49015420323751", "pei", "MANDATORY_IE_INCORRECT"),
            ("pei=490154203237518", "pei", "MANDATORY_IE_INCORRECT"),
            ("pei=mac-00-11-22-33-44-55", "pei", "MANDATORY_IE_INCORRECT"),
            ("pei=imeisv-12", "pei", "MANDATORY_IE_INCORRECT"),
            (
                "pei=imei-490154203237518&pei=imei-490154203237518",
                "pei",
                "MANDATORY_IE_INCORRECT",
            ),
            (
                "pei=imei-490154203237518&supi=imsi-12",
                "supi",
                "OPTIONAL_IE_INCORRECT",
            ),
            (
                "pei=imei-490154203237518&supi=",
                "supi",
                "OPTIONAL_IE_INCORRECT",
            ),
            (
                "pei=imei-490154203237518&gpsi=msisdn-x",
                "gpsi",
                "OPTIONAL_IE_INCORRECT",
            ),
            ("pei=imei-%G0", "pei", "INVALID_QUERY_PARAM"),
            ("pei=imei-%4", "pei", "INVALID_QUERY_PARAM"),
            ("pei=%FF", "pei", "INVALID_QUERY_PARAM"),
            ("p%ei=1", "query", "INVALID_QUERY_PARAM"),
        ] {
            let e = err(q);
            assert_eq!((e.param(), e.cause()), (param, cause), "{q}: {e}");
        }
    }
}
