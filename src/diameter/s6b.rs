//! S6b (3GPP TS 29.273) AAR/STR → [`AuthContext`] and AAA/STA builders. Pure functions.
//!
//! AAR (command 265, application 16777272, TS 29.273 §9.2.2.1.1):
//! - IMSI from User-Name (1): a bare IMSI (`<IMSI>@realm` or digits alone), a permanent
//!   identity (`0<IMSI>@…` EAP-AKA, `1<IMSI>@…` EAP-SIM, `6<IMSI>@…` EAP-AKA'), plain or
//!   decorated (`homerealm!user@otherrealm`); see [`super::nai`]. A pseudonym or fast
//!   re-authentication identity carries no IMSI: the AAA answers Result-Code
//!   DIAMETER_USER_UNKNOWN (5030) without asking the engine ([`aaa_user_unknown`]); in an STR it ends the session like an STR without
//!   User-Name;
//! - IMEI from Terminal-Information (1401/10415: IMEI 1402, 14 or 15 digits, and
//!   Software-Version 1403, 2 digits, combined as `IMEI,SV`), else from User-Equipment-Info
//!   (458) as on Gx, else none (the interface's `missing_imei` policy applies);
//! - APN from Service-Selection (493); RAT from RAT-Type (1032/10415); phase Start.
//!
//! STR (275) is phase End. The AAA (§9.2.2.1.2) carries Session-Id, Auth-Application-Id,
//! Result-Code (2001, 5003 DIAMETER_AUTHORIZATION_REJECTED or 5030 DIAMETER_USER_UNKNOWN),
//! Origin-Host, Origin-Realm and the request's Auth-Request-Type. The STA (§9.2.2.3.2, as
//! RFC 6733 §8.5) carries Session-Id, Result-Code, Origin-Host, Origin-Realm — and no
//! Auth-Application-Id, which neither grammar lists.
//!
//! This module does not validate the whole request (see
//! [`mod@crate::diameter::codec::validate`]) nor decide anything.

use crate::context::{AuthContext, Decision, Imsi, Interface, Phase, PresentedImei};
use crate::diameter::codec::dict::{self, VENDOR_3GPP};
use crate::diameter::codec::{
    answer_for_error, Avp, AvpList, Message, MessageError, Origin, ResultCode, APP_S6B,
};
use crate::diameter::gx::imei_from_uei;
use crate::diameter::nai;

/// Why an AAR or STR cannot be mapped to an [`AuthContext`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum S6bError {
    /// Malformed or missing AVPs: answered with the RFC 6733 Result-Code ([`error_answer`]).
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The User-Name is a pseudonym or fast re-authentication identity, which only the AAA
    /// server that issued it can map to an IMSI: answered DIAMETER_USER_UNKNOWN (5030,
    /// [`aaa_user_unknown`]).
    #[error("User-Name is an {} {}, which cannot be mapped to an IMSI", .method.name(), .kind.name())]
    TemporaryIdentity {
        method: nai::EapMethod,
        kind: nai::TemporaryKind,
        /// The `form` label of `imei_lockd_s6b_identities_total`.
        label: &'static str,
    },
}

/// An AAR read: the context to judge and how its User-Name was written.
#[derive(Clone, Debug)]
pub struct Aar {
    pub ctx: AuthContext,
    /// The `form` label of `imei_lockd_s6b_identities_total` ([`nai::Identity::label`]).
    pub form: &'static str,
    /// A decorated NAI.
    pub decorated: bool,
}

/// The identity in a User-Name (see [`nai::parse`]).
///
/// # Errors
/// 5005 when User-Name is absent, 5004 when it is not UTF-8 or holds no identity
/// [`nai`] knows.
fn identity(avps: &[Avp]) -> Result<nai::Identity, MessageError> {
    let name = avps.require_utf8(dict::USER_NAME, 0)?;
    nai::parse(name).map_err(|e| MessageError::InvalidAvpValue {
        failed_avp: avps
            .find(dict::USER_NAME, 0)
            .cloned()
            .unwrap_or_else(|| Avp::utf8(dict::USER_NAME, 0, "")),
        reason: match e {
            nai::NaiError::Empty => "User-Name has an empty username",
            nai::NaiError::NoImsi => "User-Name holds no IMSI",
        },
    })
}

/// The IMSI of an identity, or [`S6bError::TemporaryIdentity`].
fn imsi_of(id: &nai::Identity) -> Result<Imsi, S6bError> {
    match *id {
        nai::Identity::Imsi { imsi, .. } => Ok(imsi),
        nai::Identity::Temporary { method, kind, .. } => Err(S6bError::TemporaryIdentity {
            method,
            kind,
            label: id.label(),
        }),
    }
}

/// The IMEI from Terminal-Information, else User-Equipment-Info, else none.
///
/// # Errors
/// When a grouped AVP or a child's type is malformed.
fn imei(avps: &[Avp]) -> Result<PresentedImei, MessageError> {
    if let Some(ti) = avps.find(dict::TERMINAL_INFORMATION, VENDOR_3GPP) {
        let kids = ti.children()?;
        if let Some(imei) = kids.find(dict::IMEI, VENDOR_3GPP) {
            let sv = kids
                .find(dict::SOFTWARE_VERSION, VENDOR_3GPP)
                .map(|s| s.data.as_slice())
                .filter(|s| s.len() == 2 && s.iter().all(u8::is_ascii_digit));
            let raw = match sv {
                Some(sv) => [imei.data.as_slice(), b",", sv].concat(),
                None => imei.data.clone(),
            };
            return Ok(PresentedImei::from_wire(&raw));
        }
    }
    imei_from_uei(avps)
}

/// Maps a decoded S6b AAR to an [`AuthContext`] (interface S6b, phase Start).
///
/// # Errors
/// See [`read_aar`].
pub fn aar_to_context(aar: &Message) -> Result<AuthContext, S6bError> {
    read_aar(aar).map(|a| a.ctx)
}

/// Reads a decoded S6b AAR: its [`AuthContext`] (interface S6b, phase Start) and the form of
/// its User-Name.
///
/// # Errors
/// 5005 when Session-Id, Origin-Host or User-Name is missing; 5004 when User-Name holds no
/// IMSI or a value is not UTF-8; 5014 for malformed fixed-length AVPs;
/// [`S6bError::TemporaryIdentity`] for a pseudonym or fast re-authentication identity.
pub fn read_aar(aar: &Message) -> Result<Aar, S6bError> {
    let a = &aar.avps;
    let peer = a.require_utf8(dict::ORIGIN_HOST, 0)?.to_owned();
    let session_id = a.require_utf8(dict::SESSION_ID, 0)?;
    let id = identity(a)?;
    let imsi = imsi_of(&id)?;
    Ok(Aar {
        ctx: AuthContext {
            interface: Interface::S6b,
            peer,
            session_id: session_id.into(),
            phase: Phase::Start,
            imsi,
            msisdn: None,
            imei: imei(a)?,
            apn: a.get_utf8(dict::SERVICE_SELECTION, 0)?.map(str::to_owned),
            rat_type: a.get_u32(dict::RAT_TYPE, VENDOR_3GPP)?,
        },
        form: id.label(),
        decorated: id.decorated(),
    })
}

/// Maps an S6b STR to an [`AuthContext`] (phase End); `Ok(None)` when it carries no
/// User-Name, or one with a pseudonym or fast re-authentication identity (User-Name is
/// optional in the STR: answer 2001 without asking the engine).
///
/// # Errors
/// 5005 when Session-Id or Origin-Host is missing; 5004 when User-Name holds no identity.
pub fn str_to_context(str_: &Message) -> Result<Option<AuthContext>, MessageError> {
    let a = &str_.avps;
    let peer = a.require_utf8(dict::ORIGIN_HOST, 0)?.to_owned();
    let session_id = a.require_utf8(dict::SESSION_ID, 0)?.to_owned();
    if a.find(dict::USER_NAME, 0).is_none() {
        return Ok(None);
    }
    let Some(imsi) = identity(a)?.imsi() else {
        return Ok(None);
    };
    Ok(Some(AuthContext {
        interface: Interface::S6b,
        peer,
        session_id: session_id.into(),
        phase: Phase::End,
        imsi,
        msisdn: None,
        imei: PresentedImei::None,
        apn: None,
        rat_type: None,
    }))
}

/// The AAA for an engine decision: 2001, or 5003 with the reason as Error-Message.
pub fn aaa(aar: &Message, origin: &Origin, decision: &Decision) -> Message {
    if decision.is_accept() {
        aaa_with(aar, origin, ResultCode::SUCCESS, None, None)
    } else {
        aaa_with(
            aar,
            origin,
            ResultCode::AUTHORIZATION_REJECTED,
            Some(decision.reason.message()),
            None,
        )
    }
}

/// An AAA with any Result-Code: Session-Id, Auth-Application-Id, Result-Code, Origin-Host,
/// Origin-Realm, Auth-Request-Type (copied), Origin-State-Id, Error-Message, Failed-AVP.
pub fn aaa_with(
    aar: &Message,
    origin: &Origin,
    code: ResultCode,
    error_message: Option<&str>,
    failed_avp: Option<&Avp>,
) -> Message {
    let mut m = Message::answer_to(&aar.header);
    if let Some(s) = aar.session_id() {
        m.push(Avp::utf8(dict::SESSION_ID, 0, s));
    }
    m.push(Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_S6B));
    m.push(Avp::u32(dict::RESULT_CODE, 0, code.0));
    m.avps.extend(origin.avps());
    if let Ok(Some(v)) = aar.avps.get_u32(dict::AUTH_REQUEST_TYPE, 0) {
        m.push(Avp::u32(dict::AUTH_REQUEST_TYPE, 0, v));
    }
    m.push_answer_tail(origin, error_message, failed_avp);
    m
}

/// The STA: Session-Id, Result-Code, Origin-Host, Origin-Realm (+ Origin-State-Id).
pub fn sta(str_: &Message, origin: &Origin) -> Message {
    sta_with(str_, origin, ResultCode::SUCCESS, None, None)
}

fn sta_with(
    str_: &Message,
    origin: &Origin,
    code: ResultCode,
    error_message: Option<&str>,
    failed_avp: Option<&Avp>,
) -> Message {
    let mut m = Message::answer_to(&str_.header);
    if let Some(s) = str_.session_id() {
        m.push(Avp::utf8(dict::SESSION_ID, 0, s));
    }
    m.push(Avp::u32(dict::RESULT_CODE, 0, code.0));
    m.avps.extend(origin.avps());
    m.push_answer_tail(origin, error_message, failed_avp);
    m
}

/// The answer to an AAR or STR that failed validation or mapping: AAA/STA for 5xxx errors,
/// the RFC 6733 §7.2 answer-message ('E' bit) for 3xxx.
pub fn error_answer(req: &Message, origin: &Origin, err: &MessageError) -> Message {
    let code = err.result_code();
    if code.is_protocol_error() {
        return answer_for_error(&req.header, req.session_id(), origin, err);
    }
    let text = err.to_string();
    if req.header.code == crate::diameter::codec::validate::CMD_STR {
        sta_with(req, origin, code, Some(&text), err.failed_avp())
    } else {
        aaa_with(req, origin, code, Some(&text), err.failed_avp())
    }
}

/// The AAA for an AAR whose User-Name carries no IMSI the daemon can read (a pseudonym or fast
/// re-authentication identity): Result-Code 5030 DIAMETER_USER_UNKNOWN, a permanent failure
/// without the 'E' bit, and `text` as Error-Message.
pub fn aaa_user_unknown(aar: &Message, origin: &Origin, text: &str) -> Message {
    let mut m = Message::answer_to(&aar.header);
    if let Some(s) = aar.session_id() {
        m.push(Avp::utf8(dict::SESSION_ID, 0, s));
    }
    m.push(Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_S6B));
    m.push(Avp::u32(dict::RESULT_CODE, 0, ResultCode::USER_UNKNOWN.0));
    m.avps.extend(origin.avps());
    if let Ok(Some(v)) = aar.avps.get_u32(dict::AUTH_REQUEST_TYPE, 0) {
        m.push(Avp::u32(dict::AUTH_REQUEST_TYPE, 0, v));
    }
    m.push_answer_tail(origin, Some(text), None);
    m
}

/// The answer to an AAR that could not be mapped: [`error_answer`] or [`aaa_user_unknown`].
pub fn refusal_answer(aar: &Message, origin: &Origin, err: &S6bError) -> Message {
    match err {
        S6bError::Message(e) => error_answer(aar, origin, e),
        S6bError::TemporaryIdentity { .. } => aaa_user_unknown(aar, origin, &err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Reason;
    use crate::diameter::app::known_spec as spec_for;
    use crate::diameter::app::s6b::{AAR as S6B_AAR, STR as S6B_STR};
    use crate::diameter::codec::tests::vector;
    use crate::diameter::codec::validate;
    use crate::diameter::codec::Decoder;

    fn origin() -> Origin {
        Origin {
            host: "aaa.localdomain".into(),
            realm: "localdomain".into(),
            state_id: Some(3),
        }
    }

    fn aar(extra: Vec<Avp>) -> Message {
        let mut m = Message::request(265, APP_S6B, true)
            .with(Avp::utf8(dict::SESSION_ID, 0, "pgw;9"))
            .with(Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_S6B))
            .with(Avp::utf8(dict::ORIGIN_HOST, 0, "pgw.localdomain"))
            .with(Avp::utf8(dict::ORIGIN_REALM, 0, "localdomain"))
            .with(Avp::utf8(dict::DESTINATION_REALM, 0, "localdomain"))
            .with(Avp::u32(dict::AUTH_REQUEST_TYPE, 0, 1))
            .with(Avp::utf8(
                dict::USER_NAME,
                0,
                "001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org",
            ))
            .with(Avp::utf8(dict::SERVICE_SELECTION, 0, "iot.apn"));
        m.avps.extend(extra);
        m
    }

    /// Terminal-Information from the open5gs S6a ULR vector (IMEI 35722009245138, SV 39).
    fn real_terminal_information() -> Option<Avp> {
        let b = vector("open5gs-srsenb.hex", 7)?;
        let m = Decoder::default().decode(&b).unwrap();
        m.find(dict::TERMINAL_INFORMATION, VENDOR_3GPP).cloned()
    }

    #[test]
    fn aar_with_terminal_information_maps() {
        let Some(ti) = real_terminal_information() else {
            return;
        };
        let m = aar(vec![ti]);
        validate::validate(&m, &S6B_AAR).unwrap();
        let c = aar_to_context(&m).unwrap();
        assert_eq!((c.interface, c.phase), (Interface::S6b, Phase::Start));
        assert_eq!(c.imsi.as_str(), "001010000000001");
        let PresentedImei::Valid(p) = c.imei else {
            panic!("{:?}", c.imei)
        };
        assert_eq!(p.imei.to_string(), "35722009245138");
        assert_eq!(p.svn, Some(39));
        assert_eq!(c.apn.as_deref(), Some("iot.apn"));
        assert_eq!(c.peer, "pgw.localdomain");
        assert_eq!(c.session_id, "pgw;9");
    }

    #[test]
    fn aar_imei_sources() {
        // No IMEI at all.
        assert_eq!(
            aar_to_context(&aar(vec![])).unwrap().imei,
            PresentedImei::None
        );
        // Terminal-Information with a 15-digit IMEI and no SV.
        let ti = Avp::grouped(
            dict::TERMINAL_INFORMATION,
            VENDOR_3GPP,
            &[Avp::utf8(dict::IMEI, VENDOR_3GPP, "352099001761481")],
        )
        .unwrap();
        let c = aar_to_context(&aar(vec![ti])).unwrap();
        assert_eq!(c.imei.imei().unwrap().to_string(), "35209900176148");
        // User-Equipment-Info TBCD.
        let uei = Avp::grouped(
            dict::USER_EQUIPMENT_INFO,
            0,
            &[
                Avp::u32(dict::USER_EQUIPMENT_INFO_TYPE, 0, 0),
                Avp::new(
                    dict::USER_EQUIPMENT_INFO_VALUE,
                    0,
                    crate::imei::to_tbcd("35209900176148".parse().unwrap(), 23),
                ),
            ],
        )
        .unwrap();
        let c = aar_to_context(&aar(vec![uei])).unwrap();
        assert_eq!(c.imei.imei().unwrap().to_string(), "35209900176148");
        // Garbage IMEI: malformed, not an error.
        let ti = Avp::grouped(
            dict::TERMINAL_INFORMATION,
            VENDOR_3GPP,
            &[Avp::utf8(dict::IMEI, VENDOR_3GPP, "12ab")],
        )
        .unwrap();
        assert!(matches!(
            aar_to_context(&aar(vec![ti])).unwrap().imei,
            PresentedImei::Malformed(_)
        ));
    }

    fn message_error(e: S6bError) -> MessageError {
        match e {
            S6bError::Message(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn user_name_forms() {
        let mut m = aar(vec![]);
        m.avps.retain(|a| a.code != dict::USER_NAME);
        let e = message_error(aar_to_context(&m).unwrap_err());
        assert_eq!(e.result_code(), ResultCode::MISSING_AVP);
        m.push(Avp::utf8(dict::USER_NAME, 0, "001010000000002"));
        assert_eq!(aar_to_context(&m).unwrap().imsi.as_str(), "001010000000002");
        m.avps.retain(|a| a.code != dict::USER_NAME);
        m.push(Avp::utf8(dict::USER_NAME, 0, "alice@example.org"));
        let e = message_error(aar_to_context(&m).unwrap_err());
        assert_eq!(e.result_code(), ResultCode::INVALID_AVP_VALUE);
        let a = error_answer(&m, &origin(), &e);
        assert_eq!(a.result_code(), Some(ResultCode::INVALID_AVP_VALUE));
        assert_eq!(
            a.avps.get_u32(dict::AUTH_APPLICATION_ID, 0),
            Ok(Some(APP_S6B))
        );
    }

    fn with_user_name(name: &str) -> Message {
        let mut m = aar(vec![]);
        m.avps.retain(|a| a.code != dict::USER_NAME);
        m.push(Avp::utf8(dict::USER_NAME, 0, name));
        m
    }

    #[test]
    fn permanent_and_decorated_identities_map_to_the_imsi() {
        for (name, form, decorated) in [
            (
                "0001010000000003@nai.epc.mnc001.mcc001.3gppnetwork.org",
                "eap_aka_permanent",
                false,
            ),
            ("1001010000000003@nai.epc.mnc001.mcc001.3gppnetwork.org", "eap_sim_permanent", false),
            ("6001010000000003", "eap_aka_prime_permanent", false),
            (
                "nai.epc.mnc001.mcc001.3gppnetwork.org!6001010000000003@nai.epc.mnc002.mcc002.3gppnetwork.org",
                "eap_aka_prime_permanent",
                true,
            ),
        ] {
            let m = with_user_name(name);
            let a = read_aar(&m).unwrap();
            assert_eq!(a.ctx.imsi.as_str(), "001010000000003", "{name}");
            assert_eq!((a.form, a.decorated), (form, decorated), "{name}");
            let str_ = Message::request(275, APP_S6B, true)
                .with(Avp::utf8(dict::SESSION_ID, 0, "pgw;9"))
                .with(Avp::utf8(dict::ORIGIN_HOST, 0, "pgw.localdomain"))
                .with(Avp::utf8(dict::USER_NAME, 0, name));
            let c = str_to_context(&str_).unwrap().unwrap();
            assert_eq!(c.imsi.as_str(), "001010000000003");
        }
    }

    #[test]
    fn temporary_identities_get_user_unknown() {
        for (name, label) in [
            (
                "2pseudo@nai.epc.mnc001.mcc001.3gppnetwork.org",
                "eap_aka_pseudonym",
            ),
            (
                "5reauth@nai.epc.mnc001.mcc001.3gppnetwork.org",
                "eap_sim_fast_reauth",
            ),
            (
                "home.example!7pseudo@visited.example",
                "eap_aka_prime_pseudonym",
            ),
        ] {
            let m = with_user_name(name);
            let e = read_aar(&m).unwrap_err();
            let S6bError::TemporaryIdentity { label: l, .. } = e else {
                panic!("{e:?}")
            };
            assert_eq!(l, label);
            let a = refusal_answer(&m, &origin(), &e);
            assert_eq!(a.result_code(), Some(ResultCode::USER_UNKNOWN));
            assert_eq!(a.experimental_result(), None);
            let codes: Vec<u32> = a.avps.iter().map(|a| a.code).collect();
            assert_eq!(codes, [263, 258, 268, 264, 296, 274, 278, 281], "{name}");
            assert!(a
                .avps
                .get_utf8(dict::ERROR_MESSAGE, 0)
                .unwrap()
                .unwrap()
                .contains("cannot be mapped to an IMSI"));
            assert!(!a.header.flags.is_error());
            // In an STR: the session ends without asking the engine.
            let str_ = Message::request(275, APP_S6B, true)
                .with(Avp::utf8(dict::SESSION_ID, 0, "pgw;9"))
                .with(Avp::utf8(dict::ORIGIN_HOST, 0, "pgw.localdomain"))
                .with(Avp::utf8(dict::USER_NAME, 0, name));
            assert!(matches!(str_to_context(&str_), Ok(None)));
        }
    }

    #[test]
    fn aaa_and_sta() {
        let req = aar(vec![]);
        let ok = aaa(
            &req,
            &origin(),
            &Decision {
                reason: Reason::Bound,
                bound: None,
            },
        );
        let codes: Vec<u32> = ok.avps.iter().map(|a| a.code).collect();
        assert_eq!(codes, [263, 258, 268, 264, 296, 274, 278]);
        let no = aaa(
            &req,
            &origin(),
            &Decision {
                reason: Reason::Mismatch,
                bound: None,
            },
        );
        assert_eq!(no.result_code(), Some(ResultCode::AUTHORIZATION_REJECTED));
        assert_eq!(
            no.avps.get_utf8(dict::ERROR_MESSAGE, 0),
            Ok(Some("IMEI mismatch"))
        );

        let str_ = Message::request(275, APP_S6B, true)
            .with(Avp::utf8(dict::SESSION_ID, 0, "pgw;9"))
            .with(Avp::utf8(dict::ORIGIN_HOST, 0, "pgw.localdomain"))
            .with(Avp::utf8(dict::ORIGIN_REALM, 0, "localdomain"))
            .with(Avp::utf8(dict::DESTINATION_REALM, 0, "localdomain"))
            .with(Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_S6B))
            .with(Avp::u32(dict::TERMINATION_CAUSE, 0, 1));
        validate::validate(&str_, &S6B_STR).unwrap();
        assert!(str_to_context(&str_).unwrap().is_none());
        let with_user = str_
            .clone()
            .with(Avp::utf8(dict::USER_NAME, 0, "001010000000001@nai"));
        let c = str_to_context(&with_user).unwrap().unwrap();
        assert_eq!(c.phase, Phase::End);
        let a = sta(&str_, &origin());
        let codes: Vec<u32> = a.avps.iter().map(|a| a.code).collect();
        assert_eq!(codes, [263, 268, 264, 296, 278]);
        assert_eq!(a.header.code, 275);
    }

    #[test]
    fn rx_aar_decodes_but_is_not_s6b() {
        let Some(b) = vector("open5gs-testepc.hex", 11) else {
            return;
        };
        let m = Decoder::default().decode(&b).unwrap();
        assert_eq!((m.header.code, m.header.application_id), (265, 16_777_236));
        assert!(spec_for(16_777_236, 265).is_none(), "Rx is not handled");
        let sub = m
            .avps
            .get_grouped(dict::SUBSCRIPTION_ID, 0)
            .unwrap()
            .unwrap();
        assert_eq!(sub.get_u32(dict::SUBSCRIPTION_ID_TYPE, 0), Ok(Some(1)));
        let data = sub
            .get_utf8(dict::SUBSCRIPTION_ID_DATA, 0)
            .unwrap()
            .unwrap();
        assert_eq!(data.len(), 16, "the 16-digit test IMSI of the capture");
        assert!(
            m.find(517, VENDOR_3GPP).is_some(),
            "Media-Component-Description kept raw"
        );
    }
}
