//! Request → [`AuthContext`] and engine answer → response octets.
//!
//! | context field | source |
//! |---|---|
//! | interface | always [`Interface::Radius`] |
//! | peer | the client's configured name, passed in |
//! | session id | Acct-Session-Id (44) when present, else `radius:<src>:<Identifier>:<first 4 octets of the Request Authenticator, hex>` (unique enough for logs: the Identifier alone wraps every 256 requests) |
//! | phase | Access-Request: Start. Accounting: see [`accounting_context`] |
//! | IMSI | 3GPP-IMSI (10415/1) if it is 5–15 digits, else User-Name when it is 5–15 digits or an NAI whose user part is (`<IMSI>@realm`) |
//! | MSISDN | Calling-Station-Id (31) |
//! | APN | Called-Station-Id (30) |
//! | IMEI | 3GPP-IMEISV (10415/20) via [`PresentedImei::from_wire`] (any form of SPEC §1.3); absent → `None`, unparsable → `Malformed` |
//! | RAT | 3GPP-RAT-Type (10415/21), one octet (TS 29.061 §16.4.7); another length is ignored like FreeRADIUS does (the RAT is informational) |
//!
//! The first instance of each attribute wins. Text values that are not UTF-8 are converted
//! lossily (they are only logged). An Access-Request without any IMSI is answered Access-Reject
//! with Reply-Message "No IMSI" ([`MappingError::NoImsi`]): the client learns why and does not
//! retransmit, which a silent drop would cause; the engine is not asked. EAP-style identities
//! (`0<IMSI>@…`) are not IMSIs here.
//!
//! Nothing here touches the store or decides: the engine does.

use std::net::SocketAddr;

use crate::context::{AuthContext, Decision, Imsi, Interface, Phase, PresentedImei, SessionId};
use crate::radius::attr;
use crate::radius::codec::{Code, Packet};
use crate::radius::encode::{self, EncodeError};
use crate::radius::request::{Disposition, Port, Request, RequestKind};
use crate::radius::vsa;

/// Reply-Message of the reject sent when a request names no IMSI.
pub const NO_IMSI_MESSAGE: &str = "No IMSI";

/// Why a request yields no context.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// No valid 3GPP-IMSI and no User-Name that is (or starts with) an IMSI.
    #[error("request carries no IMSI")]
    NoImsi,
    /// The mapping function does not fit the request kind (a bug in the caller).
    #[error("request kind {0:?} does not fit this mapping")]
    WrongKind(RequestKind),
}

impl MappingError {
    /// Stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoImsi => "no_imsi",
            Self::WrongKind(_) => "wrong_kind",
        }
    }

    /// [`MappingError::NoImsi`] on an Access-Request: reject with "No IMSI"; otherwise drop.
    pub fn disposition(&self) -> Disposition {
        match self {
            Self::NoImsi => Disposition::Reject(NO_IMSI_MESSAGE),
            Self::WrongKind(_) => Disposition::SilentDrop,
        }
    }
}

/// What an Accounting-Request asks of the engine.
#[derive(Clone, Debug)]
pub enum Accounting {
    /// A session update or end: ask the engine (it answers success except for a changed IMEI on
    /// a locked SIM), then answer Accounting-Response regardless.
    Session(AuthContext),
    /// Nothing to judge: just answer Accounting-Response.
    AnswerOnly(AnswerOnly),
}

/// Why an Accounting-Request needs no judgement (for metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerOnly {
    /// Accounting-On (7) / Accounting-Off (8): the NAS rebooted.
    AccountingOnOff,
    /// No Acct-Status-Type, or a value other than 1, 2, 3, 7, 8.
    OtherStatusType(Option<u32>),
    /// No IMSI to look up.
    NoImsi,
}

/// Values read from a packet (the first instance of each).
#[derive(Default)]
struct Fields<'a> {
    user_name: Option<&'a [u8]>,
    imsi_3gpp: Option<&'a [u8]>,
    imeisv: Option<&'a [u8]>,
    rat: Option<&'a [u8]>,
    msisdn: Option<&'a [u8]>,
    apn: Option<&'a [u8]>,
    session_id: Option<&'a [u8]>,
    status_type: Option<&'a [u8]>,
}

fn first<'a>(slot: &mut Option<&'a [u8]>, v: &'a [u8]) {
    if slot.is_none() {
        *slot = Some(v);
    }
}

fn fields<'a>(packet: &Packet<'a>) -> Fields<'a> {
    let mut f = Fields::default();
    for a in packet.attributes() {
        match a.typ {
            attr::USER_NAME => first(&mut f.user_name, a.value),
            attr::CALLING_STATION_ID => first(&mut f.msisdn, a.value),
            attr::CALLED_STATION_ID => first(&mut f.apn, a.value),
            attr::ACCT_SESSION_ID => first(&mut f.session_id, a.value),
            attr::ACCT_STATUS_TYPE => first(&mut f.status_type, a.value),
            attr::VENDOR_SPECIFIC => {
                // Other vendors and (already rejected) malformed VSAs are skipped.
                for s in vsa::parse_3gpp(a.value).into_iter().flatten() {
                    match s.typ {
                        vsa::TGPP_IMSI => first(&mut f.imsi_3gpp, s.value),
                        vsa::TGPP_IMEISV => first(&mut f.imeisv, s.value),
                        vsa::TGPP_RAT_TYPE => first(&mut f.rat, s.value),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    f
}

/// IMSI from 3GPP-IMSI, else User-Name digits, else the digit user part of a User-Name NAI.
fn imsi(f: &Fields<'_>) -> Option<Imsi> {
    if let Some(i) = f.imsi_3gpp.and_then(|v| Imsi::parse(v).ok()) {
        return Some(i);
    }
    let name = f.user_name?;
    let user = match name.iter().position(|&b| b == b'@') {
        Some(at) => name.get(..at)?,
        None => name,
    };
    Imsi::parse(user).ok()
}

fn text(v: Option<&[u8]>) -> Option<String> {
    v.map(|b| String::from_utf8_lossy(b).into_owned())
}

fn session_id(f: &Fields<'_>, req: &Request<'_>, src: SocketAddr) -> SessionId {
    match f.session_id {
        Some(s) => SessionId::Text(String::from_utf8_lossy(s).into_owned()),
        None => {
            let a = req.authenticator();
            SessionId::Radius {
                src,
                identifier: req.identifier(),
                authenticator: [a[0], a[1], a[2], a[3]],
            }
        }
    }
}

fn context(
    req: &Request<'_>,
    f: &Fields<'_>,
    imsi: Imsi,
    phase: Phase,
    peer: &str,
    src: SocketAddr,
) -> AuthContext {
    AuthContext {
        interface: Interface::Radius,
        peer: peer.to_owned(),
        session_id: session_id(f, req, src),
        phase,
        imsi,
        msisdn: text(f.msisdn),
        imei: f
            .imeisv
            .map_or(PresentedImei::None, PresentedImei::from_wire),
        apn: text(f.apn),
        rat_type: match f.rat {
            Some([r]) => Some(u32::from(*r)),
            _ => None,
        },
    }
}

/// Builds the context of an Access-Request (phase Start).
///
/// # Errors
/// [`MappingError::NoImsi`] (answer [`encode_reject`] with [`NO_IMSI_MESSAGE`]);
/// [`MappingError::WrongKind`] when `req` is not an Access-Request.
pub fn access_context(
    req: &Request<'_>,
    peer: &str,
    src: SocketAddr,
) -> Result<AuthContext, MappingError> {
    if req.kind() != RequestKind::Access {
        return Err(MappingError::WrongKind(req.kind()));
    }
    let f = fields(req.packet());
    let imsi = imsi(&f).ok_or(MappingError::NoImsi)?;
    Ok(context(req, &f, imsi, Phase::Start, peer, src))
}

/// Builds the context of an Accounting-Request, by Acct-Status-Type (RFC 2866 §5.1):
/// Start (1) → [`Phase::Update`] (the Access-Request was the judgement; accounting Start after it
/// is a session update, judged only if it presents a different IMEI on a locked SIM, SPEC §1.2),
/// Interim-Update (3) → Update, Stop (2) → [`Phase::End`], anything else → answer only.
///
/// # Errors
/// [`MappingError::WrongKind`] when `req` is not an Accounting-Request.
pub fn accounting_context(
    req: &Request<'_>,
    peer: &str,
    src: SocketAddr,
) -> Result<Accounting, MappingError> {
    if req.kind() != RequestKind::Accounting {
        return Err(MappingError::WrongKind(req.kind()));
    }
    let f = fields(req.packet());
    let status = f
        .status_type
        .and_then(|v| v.try_into().ok())
        .map(u32::from_be_bytes);
    let phase = match status {
        Some(attr::acct_status::START | attr::acct_status::INTERIM_UPDATE) => Phase::Update,
        Some(attr::acct_status::STOP) => Phase::End,
        Some(attr::acct_status::ACCOUNTING_ON | attr::acct_status::ACCOUNTING_OFF) => {
            return Ok(Accounting::AnswerOnly(AnswerOnly::AccountingOnOff))
        }
        other => return Ok(Accounting::AnswerOnly(AnswerOnly::OtherStatusType(other))),
    };
    Ok(match imsi(&f) {
        Some(imsi) => Accounting::Session(context(req, &f, imsi, phase, peer, src)),
        None => Accounting::AnswerOnly(AnswerOnly::NoImsi),
    })
}

/// Proxy-State attributes of the request, in order (RFC 2865 §5.33: returned unmodified).
fn proxy_states<'a>(req: &Request<'a>) -> impl Iterator<Item = (u8, &'a [u8])> {
    req.packet()
        .attributes()
        .filter(|a| a.typ == attr::PROXY_STATE)
        .map(|a| (a.typ, a.value))
}

fn respond(
    req: &Request<'_>,
    code: Code,
    reply_message: Option<&str>,
    secret: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut attrs: Vec<(u8, &[u8])> = reply_message
        .map(encode::reply_message_chunks)
        .unwrap_or_default()
        .into_iter()
        .map(|c| (attr::REPLY_MESSAGE, c.as_bytes()))
        .collect();
    attrs.extend(proxy_states(req));
    encode::encode_response(
        req.packet().code(),
        code,
        req.identifier(),
        req.authenticator(),
        &attrs,
        secret,
    )
}

/// Access-Accept for an accepting decision, Access-Reject with Reply-Message
/// [`crate::context::Reason::message`] (e.g. "IMEI mismatch") for a rejecting one.
///
/// # Errors
/// [`EncodeError`] when the response would exceed 4096 octets (only with huge Proxy-States).
pub fn encode_decision(
    req: &Request<'_>,
    decision: &Decision,
    secret: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    if decision.is_accept() {
        respond(req, Code::AccessAccept, None, secret)
    } else {
        respond(
            req,
            Code::AccessReject,
            Some(decision.reason.message()),
            secret,
        )
    }
}

/// Access-Reject with a Reply-Message (e.g. [`NO_IMSI_MESSAGE`]).
///
/// # Errors
/// As [`encode_decision`].
pub fn encode_reject(
    req: &Request<'_>,
    reply_message: &str,
    secret: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    respond(req, Code::AccessReject, Some(reply_message), secret)
}

/// Accounting-Response (always, whatever the engine said: RFC 2866 has no reject).
///
/// # Errors
/// As [`encode_decision`].
pub fn encode_accounting_response(
    req: &Request<'_>,
    secret: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    respond(req, Code::AccountingResponse, None, secret)
}

/// Answer to Status-Server (RFC 5997 §3): Access-Accept on the auth port, Accounting-Response on
/// the accounting port.
///
/// # Errors
/// As [`encode_decision`].
pub fn encode_status_response(req: &Request<'_>, secret: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let code = match req.port() {
        Port::Auth => Code::AccessAccept,
        Port::Acct => Code::AccountingResponse,
    };
    respond(req, code, None, secret)
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
