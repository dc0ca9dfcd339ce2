//! S13 (3GPP TS 29.272 §5.3, §7.2.19-20): the MME asks the EIR whether a device may attach;
//! ME-Identity-Check-Request (ECR, command 324, application 16777252) → [`EirRequest`] →
//! the lock ([`Eir`]) → ME-Identity-Check-Answer (ECA).
//!
//! # Format
//! ```text
//! < ME-Identity-Check-Request > ::= < Diameter Header: 324, REQ, PXY, 16777252 >
//!                                   < Session-Id >
//!                                   [ DRMP ]
//!                                   [ Vendor-Specific-Application-Id ]
//!                                   { Auth-Session-State }
//!                                   { Origin-Host }
//!                                   { Origin-Realm }
//!                                   [ Destination-Host ]
//!                                   { Destination-Realm }
//!                                   { Terminal-Information }
//!                                   [ User-Name ]
//!                                 * [ AVP ]
//!                                 * [ Proxy-Info ]
//!                                 * [ Route-Record ]
//! < ME-Identity-Check-Answer > ::= < Diameter Header: 324, PXY, 16777252 >
//!                                  < Session-Id >
//!                                  [ Vendor-Specific-Application-Id ]
//!                                  [ Result-Code ]
//!                                  [ Experimental-Result ]
//!                                  { Auth-Session-State }
//!                                  { Origin-Host }
//!                                  { Origin-Realm }
//!                                  [ Equipment-Status ]
//!                                * [ AVP ]
//!                                  [ Failed-AVP ]
//! ```
//!
//! # Mapping
//! - IMSI from User-Name (1). Absent → `imsi: None` (the core's `missing_imsi` policy); present
//!   but not 5–15 digits → 5004 DIAMETER_INVALID_AVP_VALUE with the User-Name in Failed-AVP.
//! - IMEI from Terminal-Information (1401/10415) → IMEI (1402/10415), with Software-Version
//!   (1403/10415) as the SVN when it is two digits (TS 29.272 §7.3.5; another value is ignored:
//!   the lock keys on the IMEI, any SVN). The IMEI AVP "should consist of 14 or 15 digits"
//!   (§7.3.4): 14 digits carry no check digit and are accepted; 15 must pass Luhn; the 16-digit
//!   IMEISV and the `IMEI,SV` forms are accepted too.
//! - Errors (RFC 6733 §7.1.5, TS 29.272 §7.2.1 leaves the base protocol's handling in place):
//!   no Terminal-Information → 5005 DIAMETER_MISSING_AVP (Failed-AVP: Terminal-Information);
//!   Terminal-Information without IMEI and without 3GPP2-MEID → 5005 with Failed-AVP
//!   Terminal-Information { IMEI }; an IMEI of digits only whose length is none of 14, 15, 16 →
//!   5004 with Failed-AVP Terminal-Information { IMEI } (the AVP's value is outside its
//!   definition: a protocol error of the request, the MME's to fix). An IMEI that has the
//!   right shape but is no IMEI (a non-digit, a wrong check digit, a bad `,SV`), and a
//!   3GPP2-MEID (1471) in place of an IMEI, are *malformed*: the core answers per its
//!   `malformed_imei` policy (default GREYLISTED), logs and counts it.
//! - Vendor-Specific-Application-Id in the request is ignored.
//!
//! # Answer
//! Result-Code 2001 with Equipment-Status (1445/10415, M): WHITELISTED 0, BLACKLISTED 1,
//! GREYLISTED 2; the core's `Unknown` → Experimental-Result { Vendor-Id 10415,
//! Experimental-Result-Code 5422 DIAMETER_ERROR_EQUIPMENT_UNKNOWN } with no Result-Code and no
//! Equipment-Status. Engine not serving → 3004 DIAMETER_TOO_BUSY ('E' bit); other engine errors
//! → 5012 DIAMETER_UNABLE_TO_COMPLY. Every ECA carries Auth-Session-State NO_STATE_MAINTAINED.
//!
//! # What this module does not do
//! It decides nothing (the core [`Eir`] maps the lock to an Equipment-Status, logs and counts
//! every answer), validates only what [`ECR`] lists at the top level (the peer machine runs it),
//! and does not exempt emergency attach (the MME's to do: it must not ask, or must ignore, the
//! EIR for an emergency attach without a SIM).

use std::sync::Arc;

use crate::context::{Imsi, Interface, PresentedImei};
use crate::diameter::app::{not_serving, Application};
use crate::diameter::codec::dict::{self, Apps, VENDOR_3GPP};
use crate::diameter::codec::validate::ORIGIN;
use crate::diameter::codec::{
    answer_for_error, Avp, AvpList, CommandSpec, Message, MessageError, Origin, ResultCode,
};
use crate::eir::{Eir, EirAnswer, EirRequest, EquipmentStatus};
use crate::engine::EngineError;
use crate::imei::{Imei, ImeiError};

/// S13 (TS 29.272 §7.1.8; S13' shares it).
pub const APP_S13: u32 = 16_777_252;
/// ME-Identity-Check (TS 29.272 §7.2.19).
pub const CMD_ECR: u32 = 324;
/// Auth-Session-State NO_STATE_MAINTAINED (RFC 6733 §8.11).
pub const NO_STATE_MAINTAINED: u32 = 1;
/// Experimental-Result-Code DIAMETER_ERROR_EQUIPMENT_UNKNOWN (TS 29.272 §7.4.3).
pub const EXPERIMENTAL_EQUIPMENT_UNKNOWN: u32 = 5422;

/// ECR (TS 29.272 §7.2.19).
pub const ECR: CommandSpec = CommandSpec {
    name: "S13 ECR",
    code: CMD_ECR,
    application_id: APP_S13,
    required: &[
        (dict::SESSION_ID, 0),
        (dict::AUTH_SESSION_STATE, 0),
        ORIGIN[0],
        ORIGIN[1],
        (dict::DESTINATION_REALM, 0),
        (dict::TERMINAL_INFORMATION, VENDOR_3GPP),
    ],
    apps: Apps(Apps::BASE.0 | Apps::S13.0),
};

/// The commands S13 serves.
pub static COMMANDS: &[CommandSpec] = &[ECR];

/// Maps a validated ECR to the core's request.
///
/// # Errors
/// 5005 / 5004 with Failed-AVP as listed in the module docs, and 5014/5004 for AVPs whose data
/// does not fit their type.
pub fn ecr_to_request(ecr: &Message) -> Result<EirRequest, MessageError> {
    let a = &ecr.avps;
    let session_id = a.require_utf8(dict::SESSION_ID, 0)?.to_owned();
    let peer = a.require_utf8(dict::ORIGIN_HOST, 0)?.to_owned();
    let imsi = match a.find(dict::USER_NAME, 0) {
        None => None,
        Some(u) => Some(
            Imsi::parse(&u.data).map_err(|_| MessageError::InvalidAvpValue {
                failed_avp: u.clone(),
                reason: "User-Name must be an IMSI of 5 to 15 digits",
            })?,
        ),
    };
    let ti = a
        .find(dict::TERMINAL_INFORMATION, VENDOR_3GPP)
        .ok_or_else(|| {
            crate::diameter::codec::avp_read::missing(dict::TERMINAL_INFORMATION, VENDOR_3GPP)
        })?;
    let kids = ti.children()?;
    let imei = terminal_imei(ti, &kids)?;
    Ok(EirRequest {
        interface: Interface::S13,
        peer,
        session_id: session_id.into(),
        imsi,
        imei,
        msisdn: None,
    })
}

/// The IMEI inside Terminal-Information `ti` (whose children are `kids`).
fn terminal_imei(ti: &Avp, kids: &[Avp]) -> Result<PresentedImei, MessageError> {
    let Some(imei) = kids.find(dict::IMEI, VENDOR_3GPP) else {
        if let Some(meid) = kids.find(dict::TGPP2_MEID, VENDOR_3GPP) {
            // A CDMA2000 device identifier, not an IMEI: malformed, judged by policy.
            return Ok(PresentedImei::Malformed(ImeiError::Length(meid.data.len())));
        }
        return Err(crate::diameter::codec::avp_read::missing(dict::IMEI, VENDOR_3GPP).within(ti));
    };
    let raw = imei.data.as_slice();
    if raw.iter().all(u8::is_ascii_digit) && !matches!(raw.len(), 14..=16) {
        return Err(MessageError::InvalidAvpValue {
            failed_avp: imei.clone(),
            reason: "IMEI must be 14 or 15 digits (TS 29.272 §7.3.4), or a 16-digit IMEISV",
        }
        .within(ti));
    }
    let text = match std::str::from_utf8(raw) {
        Ok(t) => t,
        Err(e) => {
            return Ok(PresentedImei::Malformed(ImeiError::NonDigit(
                e.valid_up_to(),
            )))
        }
    };
    let mut parsed = match Imei::parse_text(text) {
        Ok(p) => p,
        Err(e) => return Ok(PresentedImei::Malformed(e)),
    };
    if parsed.svn.is_none() {
        parsed.svn = kids
            .find(dict::SOFTWARE_VERSION, VENDOR_3GPP)
            .and_then(|sv| software_version(&sv.data));
    }
    Ok(PresentedImei::Valid(parsed))
}

/// Software-Version: exactly two ASCII digits (TS 29.272 §7.3.5).
fn software_version(raw: &[u8]) -> Option<u8> {
    match raw {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => Some((a - b'0') * 10 + (b - b'0')),
        _ => None,
    }
}

/// The start of every ECA: Session-Id, then Result-Code or Experimental-Result (by `result`).
fn eca_head(ecr: &Message, result: Avp) -> Message {
    let mut m = Message::answer_to(&ecr.header);
    if let Some(s) = ecr.session_id() {
        m.push(Avp::utf8(dict::SESSION_ID, 0, s));
    }
    m.push(result);
    m
}

/// An ECA with a Result-Code, Auth-Session-State, Origin-*, optionally Equipment-Status, then
/// Origin-State-Id, Error-Message and Failed-AVP.
pub fn eca_with(
    ecr: &Message,
    origin: &Origin,
    code: ResultCode,
    status: Option<EquipmentStatus>,
    error_message: Option<&str>,
    failed_avp: Option<&Avp>,
) -> Message {
    let mut m = eca_head(ecr, Avp::u32(dict::RESULT_CODE, 0, code.0));
    m.push(Avp::u32(dict::AUTH_SESSION_STATE, 0, NO_STATE_MAINTAINED));
    m.avps.extend(origin.avps());
    if let Some(s) = status {
        m.push(Avp::u32(dict::EQUIPMENT_STATUS, VENDOR_3GPP, s.code()));
    }
    m.push_answer_tail(origin, error_message, failed_avp);
    m
}

/// The ECA for the core's answer: 2001 + Equipment-Status, or Experimental-Result 5422.
pub fn eca(ecr: &Message, origin: &Origin, answer: EirAnswer) -> Message {
    match answer {
        EirAnswer::Status(s) => eca_with(ecr, origin, ResultCode::SUCCESS, Some(s), None, None),
        EirAnswer::Unknown => {
            let kids = [
                Avp::u32(dict::VENDOR_ID, 0, VENDOR_3GPP),
                Avp::u32(
                    dict::EXPERIMENTAL_RESULT_CODE,
                    0,
                    EXPERIMENTAL_EQUIPMENT_UNKNOWN,
                ),
            ];
            // Two 12-byte children never exceed the AVP length field.
            let result = Avp::grouped(dict::EXPERIMENTAL_RESULT, 0, &kids)
                .unwrap_or_else(|_| Avp::new(dict::EXPERIMENTAL_RESULT, 0, Vec::new()));
            let mut m = eca_head(ecr, result);
            m.push(Avp::u32(dict::AUTH_SESSION_STATE, 0, NO_STATE_MAINTAINED));
            m.avps.extend(origin.avps());
            m.push_answer_tail(origin, None, None);
            m
        }
    }
}

/// The answer to an ECR that failed validation or mapping: an ECA for 5xxx errors, the
/// RFC 6733 §7.2 answer-message ('E' bit) for 3xxx.
pub fn error_answer(ecr: &Message, origin: &Origin, err: &MessageError) -> Message {
    if err.result_code().is_protocol_error() {
        return answer_for_error(&ecr.header, ecr.session_id(), origin, err);
    }
    let text = err.to_string();
    eca_with(
        ecr,
        origin,
        err.result_code(),
        None,
        Some(&text),
        err.failed_avp(),
    )
}

/// The S13 application over the EIR core.
pub struct S13 {
    eir: Arc<Eir>,
}

impl S13 {
    pub fn new(eir: Arc<Eir>) -> Self {
        Self { eir }
    }
}

impl Application for S13 {
    fn id(&self) -> u32 {
        APP_S13
    }

    fn name(&self) -> &'static str {
        "s13"
    }

    fn title(&self) -> &'static str {
        "S13"
    }

    fn commands(&self) -> &'static [CommandSpec] {
        COMMANDS
    }

    fn answer(&self, ecr: &Message, origin: &Origin, inline: bool) -> Option<Message> {
        let req = match ecr_to_request(ecr) {
            Ok(r) => r,
            Err(e) => {
                // Logged once: the inline attempt answers it (no store needed).
                tracing::info!(error = %e, session = ?ecr.session_id(), peer = ?ecr.origin_host(),
                    "S13 ECR refused");
                return Some(error_answer(ecr, origin, &e));
            }
        };
        let result = if inline {
            self.eir.check_in_memory(&req)?
        } else {
            self.eir.check(&req)
        };
        Some(match result {
            Ok(a) => eca(ecr, origin, a),
            Err(EngineError::NotServing) => not_serving(ecr, origin),
            Err(_) => eca_with(
                ecr,
                origin,
                ResultCode::UNABLE_TO_COMPLY,
                None,
                Some(crate::diameter::app::ENGINE_FAILED),
                None,
            ),
        })
    }

    fn error_answer(&self, req: &Message, origin: &Origin, err: &MessageError) -> Message {
        error_answer(req, origin, err)
    }
}

#[cfg(test)]
#[path = "s13_tests.rs"]
mod tests;
