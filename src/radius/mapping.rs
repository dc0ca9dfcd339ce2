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
mod tests {
    use super::*;
    use crate::context::Reason;
    use crate::imei::{to_tbcd, Imei, ImeiForm};
    use crate::radius::encode::{encode_access_request, encode_accounting_request};
    use crate::radius::request::ClientPolicy;
    use crate::radius::tests::vectors;
    use crate::radius::vsa::{encode_vsa, VENDOR_3GPP};

    const SECRET: &[u8] = b"testing123";
    const POLICY: ClientPolicy<'static> = ClientPolicy {
        secret: SECRET,
        require_message_authenticator: true,
    };

    fn src() -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], 50817))
    }

    fn access_ctx(attrs: &[(u8, &[u8])]) -> Result<AuthContext, MappingError> {
        let raw = encode_access_request(Code::AccessRequest, 46, &[0xab; 16], attrs, SECRET, true)
            .unwrap();
        let req = Request::decode(&raw, Port::Auth, &POLICY).unwrap();
        access_context(&req, "ggsn1", src())
    }

    fn key() -> Imei {
        "35209900176148".parse().unwrap()
    }

    #[test]
    fn radclient_access_request_maps() {
        let raw = vectors::access_request();
        let req = Request::decode(&raw, Port::Auth, &POLICY).unwrap();
        let c = access_context(&req, "ggsn1", src()).unwrap();
        assert_eq!(c.interface, Interface::Radius);
        assert_eq!(c.peer, "ggsn1");
        assert_eq!(c.phase, Phase::Start);
        assert_eq!(c.imsi.as_str(), "001010000000001");
        assert_eq!(c.msisdn.as_deref(), Some("491701234567"));
        assert_eq!(c.apn.as_deref(), Some("iot.example"));
        assert_eq!(c.imei.imei(), Some(key()));
        assert_eq!(c.rat_type, Some(6));
        assert_eq!(c.session_id, "radius:192.0.2.1:50817:46:61cb0c70");
    }

    #[test]
    fn radclient_bogus_imeisv_is_malformed_not_none() {
        // radclient sent the literal text "0x5302990071168432".
        let raw = vectors::access_request_bad_imei();
        let req = Request::decode(&raw, Port::Auth, &POLICY).unwrap();
        let c = access_context(&req, "g", src()).unwrap();
        assert!(matches!(c.imei, PresentedImei::Malformed(_)));
        assert_eq!(c.imsi.as_str(), "001010000000002");
        assert_eq!(c.rat_type, Some(1));
    }

    #[test]
    fn imsi_3gpp_wins_over_user_name() {
        let v = encode_vsa(VENDOR_3GPP, &[(1, b"001010000000009")]).unwrap();
        let c = access_ctx(&[(1, b"001010000000001"), (26, &v)]).unwrap();
        assert_eq!(c.imsi.as_str(), "001010000000009");
        // An invalid 3GPP-IMSI falls back to User-Name.
        let v = encode_vsa(VENDOR_3GPP, &[(1, b"00101x")]).unwrap();
        let c = access_ctx(&[(1, b"001010000000001"), (26, &v)]).unwrap();
        assert_eq!(c.imsi.as_str(), "001010000000001");
    }

    #[test]
    fn user_name_forms() {
        for (name, imsi) in [
            (&b"001010000000001"[..], Some("001010000000001")),
            (
                b"001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org",
                Some("001010000000001"),
            ),
            (b"12345@x", Some("12345")),
            (b"0001010000000001@wlan.mnc001.mcc001.3gppnetwork.org", None), // EAP-AKA prefix: 16 digits
            (b"user@example.com", None),
            (b"@realm", None),
            (b"1234", None),
        ] {
            let got = access_ctx(&[(1, name)])
                .ok()
                .map(|c| c.imsi.as_str().to_owned());
            assert_eq!(got.as_deref(), imsi, "{}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn no_imsi_is_reject() {
        let e = access_ctx(&[(31, b"4917")]).unwrap_err();
        assert_eq!(e, MappingError::NoImsi);
        assert_eq!(e.disposition(), Disposition::Reject("No IMSI"));
    }

    #[test]
    fn imeisv_forms() {
        let tb = to_tbcd(key(), 23);
        let magma: Vec<u8> = key().digits().into_iter().chain([2, 3]).collect();
        for (value, form) in [
            (&b"3520990017614823"[..], ImeiForm::AsciiImeisv),
            (b"352099001761481", ImeiForm::AsciiImei),
            (b"352099001761481,23", ImeiForm::CommaSv),
            (&tb[..], ImeiForm::Tbcd),
            (&magma[..], ImeiForm::DigitOctets),
        ] {
            let v = encode_vsa(VENDOR_3GPP, &[(20, value)]).unwrap();
            let c = access_ctx(&[(1, b"001010000000001"), (26, &v)]).unwrap();
            match c.imei {
                PresentedImei::Valid(p) => assert_eq!((p.imei, p.form), (key(), form)),
                other => panic!("{value:02x?}: {other:?}"),
            }
        }
        let c = access_ctx(&[(1, b"001010000000001")]).unwrap();
        assert_eq!(c.imei, PresentedImei::None);
        let v = encode_vsa(VENDOR_3GPP, &[(20, b"352099001761482")]).unwrap(); // bad Luhn
        let c = access_ctx(&[(1, b"001010000000001"), (26, &v)]).unwrap();
        assert!(matches!(c.imei, PresentedImei::Malformed(_)));
    }

    #[test]
    fn rat_and_foreign_vendor() {
        let v = encode_vsa(VENDOR_3GPP, &[(21, &[6])]).unwrap();
        assert_eq!(
            access_ctx(&[(1, b"00101"), (26, &v)]).unwrap().rat_type,
            Some(6)
        );
        let v = encode_vsa(VENDOR_3GPP, &[(21, &[0, 0, 0, 6])]).unwrap();
        assert_eq!(
            access_ctx(&[(1, b"00101"), (26, &v)]).unwrap().rat_type,
            None
        );
        // A Cisco VSA shaped like 3GPP-IMSI / IMEISV is not read.
        let cisco = encode_vsa(9, &[(1, b"001010000000009"), (20, b"3520990017614823")]).unwrap();
        let c = access_ctx(&[(1, b"001010000000001"), (26, &cisco)]).unwrap();
        assert_eq!(c.imsi.as_str(), "001010000000001");
        assert_eq!(c.imei, PresentedImei::None);
    }

    #[test]
    fn session_id_from_acct_session_id() {
        let c = access_ctx(&[(1, b"00101"), (44, b"sess-1")]).unwrap();
        assert_eq!(c.session_id, "sess-1");
    }

    fn acct(status: Option<u32>, extra: &[(u8, &[u8])]) -> Accounting {
        let st = status.map(u32::to_be_bytes);
        let mut attrs: Vec<(u8, &[u8])> = extra.to_vec();
        if let Some(s) = &st {
            attrs.push((40, s));
        }
        let raw = encode_accounting_request(7, &attrs, SECRET, false).unwrap();
        let req = Request::decode(&raw, Port::Acct, &POLICY).unwrap();
        accounting_context(&req, "ggsn1", src()).unwrap()
    }

    #[test]
    fn accounting_phases() {
        let id: &[(u8, &[u8])] = &[(1, b"001010000000001"), (44, b"s1")];
        for (st, phase) in [(1, Phase::Update), (3, Phase::Update), (2, Phase::End)] {
            match acct(Some(st), id) {
                Accounting::Session(c) => {
                    assert_eq!(c.phase, phase);
                    assert_eq!(c.session_id, "s1");
                }
                other => panic!("{st}: {other:?}"),
            }
        }
        assert!(matches!(
            acct(Some(7), id),
            Accounting::AnswerOnly(AnswerOnly::AccountingOnOff)
        ));
        assert!(matches!(
            acct(Some(8), id),
            Accounting::AnswerOnly(AnswerOnly::AccountingOnOff)
        ));
        assert!(matches!(
            acct(Some(15), id),
            Accounting::AnswerOnly(AnswerOnly::OtherStatusType(Some(15)))
        ));
        assert!(matches!(
            acct(None, id),
            Accounting::AnswerOnly(AnswerOnly::OtherStatusType(None))
        ));
        assert!(matches!(
            acct(Some(3), &[]),
            Accounting::AnswerOnly(AnswerOnly::NoImsi)
        ));
    }

    #[test]
    fn radclient_accounting_maps() {
        let raw = vectors::acct_interim_ma();
        let req = Request::decode(&raw, Port::Acct, &POLICY).unwrap();
        match accounting_context(&req, "g", src()).unwrap() {
            Accounting::Session(c) => {
                assert_eq!(c.phase, Phase::Update);
                assert_eq!(c.imei.imei(), Some(key()));
                assert_eq!(c.session_id, "0a0b0c0d");
            }
            other => panic!("{other:?}"),
        }
        // Kind mismatch is an error, not a panic.
        assert_eq!(
            access_context(&req, "g", src()).unwrap_err(),
            MappingError::WrongKind(RequestKind::Accounting)
        );
    }

    fn check_response(resp: &[u8], req_raw: &[u8], code: u8) {
        assert_eq!(resp[0], code);
        assert_eq!(resp[1], req_raw[1]);
        assert_eq!(&resp[20..22], &[80, 18], "Message-Authenticator first");
        let mut hdr = req_raw[..20].to_vec();
        hdr[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert!(radius::core::packet::Packet::is_authentic_response(
            resp, &hdr, SECRET
        ));
        // FreeRADIUS convention: zeros for Accounting-Response to Accounting-Request.
        let vector: [u8; 16] = if req_raw[0] == 4 {
            [0; 16]
        } else {
            req_raw[4..20].try_into().unwrap()
        };
        assert!(crate::radius::auth::verify_message_authenticator(
            resp, 22, &vector, SECRET
        ));
    }

    #[test]
    fn responses() {
        let raw = vectors::access_request();
        let req = Request::decode(&raw, Port::Auth, &POLICY).unwrap();
        let reject = Decision {
            reason: Reason::Mismatch,
            bound: None,
        };
        let resp = encode_decision(&req, &reject, SECRET).unwrap();
        check_response(&resp, &raw, 3);
        assert_eq!(&resp[38..40], &[18, 15]);
        assert_eq!(&resp[40..], b"IMEI mismatch");
        let accept = Decision {
            reason: Reason::Match,
            bound: Some(key()),
        };
        let resp = encode_decision(&req, &accept, SECRET).unwrap();
        check_response(&resp, &raw, 2);
        assert_eq!(resp.len(), 38);
        let resp = encode_reject(&req, NO_IMSI_MESSAGE, SECRET).unwrap();
        check_response(&resp, &raw, 3);

        let raw = vectors::acct_start();
        let req = Request::decode(&raw, Port::Acct, &POLICY).unwrap();
        check_response(&encode_accounting_response(&req, SECRET).unwrap(), &raw, 5);

        let raw = vectors::status_server();
        for (port, code) in [(Port::Auth, 2), (Port::Acct, 5)] {
            let req = Request::decode(&raw, port, &POLICY).unwrap();
            check_response(&encode_status_response(&req, SECRET).unwrap(), &raw, code);
        }
    }

    #[test]
    fn proxy_state_copied_in_order() {
        let raw = encode_access_request(
            Code::AccessRequest,
            1,
            &[1; 16],
            &[(1, b"00101"), (33, b"first"), (33, b"second")],
            SECRET,
            true,
        )
        .unwrap();
        let req = Request::decode(&raw, Port::Auth, &POLICY).unwrap();
        let resp = encode_reject(&req, "x", SECRET).unwrap();
        let p = Packet::decode(&resp).unwrap();
        let types: Vec<(u8, &[u8])> = p.attributes().map(|a| (a.typ, a.value)).collect();
        assert_eq!(types[0].0, 80);
        assert_eq!(
            &types[1..],
            &[(18, &b"x"[..]), (33, b"first"), (33, b"second")]
        );
    }
}
