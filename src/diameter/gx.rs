//! Gx (3GPP TS 29.212) CCR → [`AuthContext`] and [`Decision`] → CCA. Pure functions.
//!
//! From the CCR (command 272, application 16777238):
//! - phase from CC-Request-Type (416): 1 INITIAL → Start, 2 UPDATE → Update, 3 TERMINATION → End
//!   (4 EVENT is not used by Gx → 5004);
//! - IMSI from Subscription-Id (443) with Subscription-Id-Type (450) 1 END_USER_IMSI,
//!   Subscription-Id-Data (444); MSISDN from type 0 END_USER_E164;
//! - IMEI from User-Equipment-Info (458) with User-Equipment-Info-Type (459) 0 IMEISV, value
//!   (460) in any form [`PresentedImei::from_wire`] accepts (ASCII, TBCD, Magma digit octets);
//! - APN from Called-Station-Id (30); RAT from RAT-Type (1032/10415); session from Session-Id;
//!   peer from Origin-Host.
//!
//! The CCA (TS 29.212 §5.6.3) carries Session-Id, Result-Code, Origin-Host, Origin-Realm,
//! Auth-Application-Id, CC-Request-Type, CC-Request-Number; a reject is Result-Code 5003
//! DIAMETER_AUTHORIZATION_REJECTED (a base Result-Code, not an Experimental-Result) with the
//! reason in Error-Message.
//!
//! This module does not validate the whole request (see
//! [`mod@crate::diameter::codec::validate`]) nor decide anything (the engine does).

use crate::context::{AuthContext, Decision, Imsi, Interface, Phase, PresentedImei};
use crate::diameter::codec::avp_read::missing;
use crate::diameter::codec::dict::{self, VENDOR_3GPP};
use crate::diameter::codec::{
    answer_for_error, Avp, AvpList, Message, MessageError, Origin, ResultCode, APP_GX,
};
use crate::imei::ImeiError;

/// Subscription-Id-Type END_USER_E164.
const END_USER_E164: u32 = 0;
/// Subscription-Id-Type END_USER_IMSI.
const END_USER_IMSI: u32 = 1;
/// User-Equipment-Info-Type IMEISV.
const UEI_IMEISV: u32 = 0;

/// Maps a decoded Gx CCR to an [`AuthContext`] (interface Gx).
///
/// # Errors
/// 5005 DIAMETER_MISSING_AVP (with Failed-AVP) when Session-Id, Origin-Host, Origin-Realm,
/// CC-Request-Type, CC-Request-Number or an END_USER_IMSI Subscription-Id is missing; 5004 for
/// an unknown CC-Request-Type or an IMSI that is not 5–15 digits; 5014/5004 for AVPs whose
/// data does not fit their type.
pub fn ccr_to_context(ccr: &Message) -> Result<AuthContext, MessageError> {
    let a = &ccr.avps;
    let session_id = a.require_utf8(dict::SESSION_ID, 0)?.to_owned();
    let peer = a.require_utf8(dict::ORIGIN_HOST, 0)?.to_owned();
    a.require_utf8(dict::ORIGIN_REALM, 0)?;
    let phase = match a.require_u32(dict::CC_REQUEST_TYPE, 0)? {
        1 => Phase::Start,
        2 => Phase::Update,
        3 => Phase::End,
        _ => {
            return Err(MessageError::InvalidAvpValue {
                failed_avp: a
                    .find(dict::CC_REQUEST_TYPE, 0)
                    .cloned()
                    .unwrap_or_else(|| Avp::u32(dict::CC_REQUEST_TYPE, 0, 0)),
                reason: "CC-Request-Type must be 1, 2 or 3 on Gx",
            })
        }
    };
    a.require_u32(dict::CC_REQUEST_NUMBER, 0)?;
    let mut imsi = None;
    let mut msisdn = None;
    for sub in a.find_all(dict::SUBSCRIPTION_ID, 0) {
        let kids = sub.children()?;
        let ty = kids
            .require_u32(dict::SUBSCRIPTION_ID_TYPE, 0)
            .map_err(|e| e.within(sub))?;
        let data = kids
            .require_utf8(dict::SUBSCRIPTION_ID_DATA, 0)
            .map_err(|e| e.within(sub))?;
        match ty {
            END_USER_IMSI if imsi.is_none() => {
                imsi = Some(Imsi::parse(data.as_bytes()).map_err(|_| {
                    MessageError::InvalidAvpValue {
                        failed_avp: sub.clone(),
                        reason: "IMSI must be 5 to 15 digits",
                    }
                })?);
            }
            END_USER_E164 if msisdn.is_none() => msisdn = Some(data.to_owned()),
            _ => {}
        }
    }
    let imsi = imsi.ok_or_else(|| missing(dict::SUBSCRIPTION_ID, 0))?;
    Ok(AuthContext {
        interface: Interface::Gx,
        peer,
        session_id: session_id.into(),
        phase,
        imsi,
        msisdn,
        imei: imei_from_uei(a)?,
        apn: a.get_utf8(dict::CALLED_STATION_ID, 0)?.map(str::to_owned),
        rat_type: a.get_u32(dict::RAT_TYPE, VENDOR_3GPP)?,
    })
}

/// The IMEI in a User-Equipment-Info of type IMEISV, if any (shared with S6b).
///
/// # Errors
/// When the grouped AVP or its type is malformed.
pub(crate) fn imei_from_uei(avps: &[Avp]) -> Result<PresentedImei, MessageError> {
    for uei in avps.find_all(dict::USER_EQUIPMENT_INFO, 0) {
        let kids = uei.children()?;
        let ty = kids
            .get_u32(dict::USER_EQUIPMENT_INFO_TYPE, 0)
            .map_err(|e| e.within(uei))?;
        if ty == Some(UEI_IMEISV) {
            return Ok(match kids.find(dict::USER_EQUIPMENT_INFO_VALUE, 0) {
                Some(v) => PresentedImei::from_wire(&v.data),
                None => PresentedImei::Malformed(ImeiError::Length(0)),
            });
        }
    }
    Ok(PresentedImei::None)
}

/// The CCA for an engine decision: 2001, or 5003 with the reason as Error-Message.
pub fn cca(ccr: &Message, origin: &Origin, decision: &Decision) -> Message {
    if decision.is_accept() {
        cca_with(ccr, origin, ResultCode::SUCCESS, None, None)
    } else {
        cca_with(
            ccr,
            origin,
            ResultCode::AUTHORIZATION_REJECTED,
            Some(decision.reason.message()),
            None,
        )
    }
}

/// A CCA with any Result-Code: Session-Id, Result-Code, Origin-Host, Origin-Realm,
/// Auth-Application-Id, CC-Request-Type, CC-Request-Number (the last two copied when the CCR
/// had them well-formed), Origin-State-Id, Error-Message, Failed-AVP.
pub fn cca_with(
    ccr: &Message,
    origin: &Origin,
    code: ResultCode,
    error_message: Option<&str>,
    failed_avp: Option<&Avp>,
) -> Message {
    let mut m = Message::answer_to(&ccr.header);
    if let Some(s) = ccr.session_id() {
        m.push(Avp::utf8(dict::SESSION_ID, 0, s));
    }
    m.push(Avp::u32(dict::RESULT_CODE, 0, code.0));
    m.avps.extend(origin.avps());
    m.push(Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_GX));
    for c in [dict::CC_REQUEST_TYPE, dict::CC_REQUEST_NUMBER] {
        if let Ok(Some(v)) = ccr.avps.get_u32(c, 0) {
            m.push(Avp::u32(c, 0, v));
        }
    }
    m.push_answer_tail(origin, error_message, failed_avp);
    m
}

/// The answer to a CCR that failed validation or mapping: a CCA for 5xxx errors, the
/// RFC 6733 §7.2 answer-message ('E' bit) for 3xxx.
pub fn error_answer(ccr: &Message, origin: &Origin, err: &MessageError) -> Message {
    if err.result_code().is_protocol_error() {
        return answer_for_error(&ccr.header, ccr.session_id(), origin, err);
    }
    let text = err.to_string();
    cca_with(
        ccr,
        origin,
        err.result_code(),
        Some(&text),
        err.failed_avp(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Reason;
    use crate::diameter::codec::tests::vector;
    use crate::diameter::codec::Decoder;

    fn origin() -> Origin {
        Origin {
            host: "aaa.localdomain".into(),
            realm: "localdomain".into(),
            state_id: None,
        }
    }

    fn decode(file: &str, line: usize) -> Option<Message> {
        vector(file, line).map(|b| Decoder::default().decode(&b).unwrap())
    }

    #[test]
    fn magma_ccr_i_maps() {
        let Some(m) = decode("magma-gx-gy-03.hex", 7) else {
            return;
        };
        let c = ccr_to_context(&m).unwrap();
        assert_eq!(c.interface, Interface::Gx);
        assert_eq!(c.phase, Phase::Start);
        assert_eq!(c.imsi.as_str(), "999991234567810");
        assert!(c.msisdn.is_some());
        assert_eq!(c.imei.imei().unwrap().to_string(), "40941753377600");
        assert_eq!(c.apn.as_deref(), Some("internet"));
        assert_eq!(c.rat_type, Some(1004));
        assert_eq!(c.session_id, "string;490;022;IMSI999991234567810");
        assert_eq!(c.peer, "string");
        // CCR-T of the same session.
        let Some(t) = decode("magma-gx-gy-03.hex", 14) else {
            return;
        };
        let c = ccr_to_context(&t).unwrap();
        assert_eq!(c.phase, Phase::End);
        assert_eq!(c.imei, PresentedImei::None);
    }

    #[test]
    fn open5gs_ccrs_map() {
        for (file, line, phase) in [
            ("open5gs-testepc.hex", 7, Phase::Start),
            ("open5gs-testepc.hex", 17, Phase::End),
            ("open5gs-srsenb.hex", 9, Phase::Start),
            ("open5gs-srsenb.hex", 11, Phase::End),
        ] {
            let Some(m) = decode(file, line) else { return };
            let c = ccr_to_context(&m).unwrap_or_else(|e| panic!("{file}:{line}: {e}"));
            assert_eq!(c.phase, phase);
            assert_eq!(c.imei, PresentedImei::None, "no UE-Info in open5gs");
            assert!(c.imsi.as_str().len() == 15, "{:?}", c.imsi);
            assert!(c.msisdn.is_none());
            assert!(c.apn.is_some());
        }
    }

    fn ccr() -> Message {
        Message::request(272, APP_GX, true)
            .with(Avp::utf8(dict::SESSION_ID, 0, "pgw;1;2"))
            .with(Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_GX))
            .with(Avp::utf8(dict::ORIGIN_HOST, 0, "pgw"))
            .with(Avp::utf8(dict::ORIGIN_REALM, 0, "realm"))
            .with(Avp::utf8(dict::DESTINATION_REALM, 0, "realm"))
            .with(Avp::u32(dict::CC_REQUEST_TYPE, 0, 2))
            .with(Avp::u32(dict::CC_REQUEST_NUMBER, 0, 5))
            .with(
                Avp::grouped(
                    dict::SUBSCRIPTION_ID,
                    0,
                    &[
                        Avp::u32(dict::SUBSCRIPTION_ID_TYPE, 0, 1),
                        Avp::utf8(dict::SUBSCRIPTION_ID_DATA, 0, "001010000000001"),
                    ],
                )
                .unwrap(),
            )
            .with(
                Avp::grouped(
                    dict::USER_EQUIPMENT_INFO,
                    0,
                    &[
                        Avp::u32(dict::USER_EQUIPMENT_INFO_TYPE, 0, 0),
                        Avp::new(dict::USER_EQUIPMENT_INFO_VALUE, 0, *b"3520990017614823"),
                    ],
                )
                .unwrap(),
            )
    }

    #[test]
    fn synthetic_ccr_u_maps() {
        let c = ccr_to_context(&ccr()).unwrap();
        assert_eq!(c.phase, Phase::Update);
        assert_eq!(c.imei.imei().unwrap().to_string(), "35209900176148");
        assert_eq!(c.apn, None);
    }

    #[test]
    fn missing_avps_are_5005_with_failed_avp() {
        for code in [
            dict::SESSION_ID,
            dict::ORIGIN_HOST,
            dict::ORIGIN_REALM,
            dict::CC_REQUEST_TYPE,
            dict::CC_REQUEST_NUMBER,
            dict::SUBSCRIPTION_ID,
        ] {
            let mut m = ccr();
            m.avps.retain(|a| a.code != code);
            let e = ccr_to_context(&m).unwrap_err();
            assert_eq!(e.result_code(), ResultCode::MISSING_AVP, "{code}");
            assert_eq!(e.failed_avp().unwrap().code, code);
            let a = error_answer(&m, &origin(), &e);
            assert_eq!(a.result_code(), Some(ResultCode::MISSING_AVP));
            assert!(a.find(dict::FAILED_AVP, 0).is_some());
        }
        let mut m = ccr();
        m.avps.retain(|a| a.code != dict::CC_REQUEST_TYPE);
        m.push(Avp::u32(dict::CC_REQUEST_TYPE, 0, 4));
        assert_eq!(
            ccr_to_context(&m).unwrap_err().result_code(),
            ResultCode::INVALID_AVP_VALUE
        );
    }

    #[test]
    fn cca_accept_and_reject() {
        let req = ccr();
        let ok = cca(
            &req,
            &origin(),
            &Decision {
                reason: Reason::Match,
                bound: None,
            },
        );
        let codes: Vec<u32> = ok.avps.iter().map(|a| a.code).collect();
        assert_eq!(codes, [263, 268, 264, 296, 258, 416, 415]);
        assert_eq!(ok.result_code(), Some(ResultCode::SUCCESS));
        assert_eq!(ok.avps.get_u32(dict::CC_REQUEST_NUMBER, 0), Ok(Some(5)));
        assert_eq!(ok.header.hop_by_hop, req.header.hop_by_hop);
        assert!(!ok.is_request() && ok.header.flags.is_proxiable());
        let no = cca(
            &req,
            &origin(),
            &Decision {
                reason: Reason::Mismatch,
                bound: None,
            },
        );
        assert_eq!(no.result_code(), Some(ResultCode::AUTHORIZATION_REJECTED));
        assert!(!no.header.flags.is_error());
        assert_eq!(
            no.avps.get_utf8(dict::ERROR_MESSAGE, 0),
            Ok(Some("IMEI mismatch"))
        );
        assert!(Decoder::default().decode(&no.encode().unwrap()).is_ok());
    }
}
