//! Validation of a decoded request against the dictionary, per command.
//!
//! RFC 6733 §4.1: "If an AVP with the 'M' bit set is received by a Diameter client, server,
//! proxy, or translation agent and either the AVP or its value is unrecognized, the message
//! MUST be rejected" (5001 DIAMETER_AVP_UNSUPPORTED, with the AVP in Failed-AVP). §7.1.5:
//! 5004 DIAMETER_INVALID_AVP_VALUE, 5005 DIAMETER_MISSING_AVP, 5014 DIAMETER_INVALID_AVP_LENGTH.
//!
//! The specs of the base protocol's requests (CER, DWR, DPR) are here; each application lists
//! its own ([`crate::diameter::app::Application::commands`]), so this module names no
//! application.
//!
//! Only the top level of the commands we handle is checked ([`CommandSpec`]): the 'M' bit of
//! an AVP is judged against the AVPs the command's application may carry, so a Gx CCR may carry
//! the 3GPP AVPs real gateways send and an AVP that only S6b knows is still 5001 in a Gx CCR.
//! Grouped AVPs' contents are not checked here (their structure was checked at decode), nor are
//! AVP occurrence counts or order.

use super::avp::Avp;
use super::avp_read::missing;
use super::dict::{self, Apps, AvpType};
use super::error::MessageError;
use super::message::Message;

/// Base protocol application (CER, DWR, DPR).
pub const APP_BASE: u32 = 0;
/// Gx (TS 29.212).
pub const APP_GX: u32 = 16_777_238;
/// S6b (TS 29.273).
pub const APP_S6B: u32 = 16_777_272;
/// Relay (RFC 6733 §2.4).
pub const APP_RELAY: u32 = 0xffff_ffff;

/// Capabilities-Exchange.
pub const CMD_CER: u32 = 257;
/// Re-Auth.
pub const CMD_RAR: u32 = 258;
/// AA (S6b AAR/AAA, also Rx).
pub const CMD_AAR: u32 = 265;
/// Credit-Control (Gx CCR/CCA).
pub const CMD_CCR: u32 = 272;
/// Abort-Session.
pub const CMD_ASR: u32 = 274;
/// Session-Termination (S6b STR/STA).
pub const CMD_STR: u32 = 275;
/// Device-Watchdog.
pub const CMD_DWR: u32 = 280;
/// Disconnect-Peer.
pub const CMD_DPR: u32 = 282;

/// What a request of one command must and may carry at its top level.
#[derive(Clone, Copy, Debug)]
pub struct CommandSpec {
    pub name: &'static str,
    pub code: u32,
    pub application_id: u32,
    /// (code, vendor) of the required AVPs, in answer order for 5005.
    pub required: &'static [(u32, u32)],
    /// Applications whose dictionary AVPs are understood here (always including base).
    pub apps: Apps,
}

/// Origin-Host and Origin-Realm, required in every request.
pub const ORIGIN: [(u32, u32); 2] = [(dict::ORIGIN_HOST, 0), (dict::ORIGIN_REALM, 0)];

/// CER (RFC 6733 §5.3.1).
pub const CER: CommandSpec = CommandSpec {
    name: "CER",
    code: CMD_CER,
    application_id: APP_BASE,
    required: &[
        ORIGIN[0],
        ORIGIN[1],
        (dict::HOST_IP_ADDRESS, 0),
        (dict::VENDOR_ID, 0),
        (dict::PRODUCT_NAME, 0),
    ],
    apps: Apps::BASE,
};

/// DWR (RFC 6733 §5.5.1).
pub const DWR: CommandSpec = CommandSpec {
    name: "DWR",
    code: CMD_DWR,
    application_id: APP_BASE,
    required: &ORIGIN,
    apps: Apps::BASE,
};

/// DPR (RFC 6733 §5.4.1).
pub const DPR: CommandSpec = CommandSpec {
    name: "DPR",
    code: CMD_DPR,
    application_id: APP_BASE,
    required: &[ORIGIN[0], ORIGIN[1], (dict::DISCONNECT_CAUSE, 0)],
    apps: Apps::BASE,
};

/// The base protocol's request specs.
pub static BASE_SPECS: &[CommandSpec] = &[CER, DWR, DPR];

/// Checks a request's top-level AVPs: unknown with 'M' → 5001, known with data not fitting its
/// type → 5014/5004, required but absent → 5005. The first error in message order wins (5005
/// comes after the per-AVP checks).
///
/// # Errors
/// The [`MessageError`] to answer with.
pub fn validate(msg: &Message, spec: &CommandSpec) -> Result<(), MessageError> {
    for avp in &msg.avps {
        match dict::lookup(avp.code, avp.vendor()) {
            Some(def) if def.apps.overlaps(spec.apps) => check_type(avp, def.ty)?,
            _ if avp.flags.is_mandatory() => {
                return Err(MessageError::AvpUnsupported {
                    failed_avp: avp.clone(),
                })
            }
            _ => {}
        }
    }
    for &(code, vendor) in spec.required {
        if msg.find(code, vendor).is_none() {
            return Err(missing(code, vendor));
        }
    }
    Ok(())
}

/// Checks that the data fits the type (RFC 6733 §4.2, §4.3).
///
/// # Errors
/// 5014 for a wrong fixed length, 5004 for a bad UTF-8 string or empty identity.
pub fn check_type(avp: &Avp, ty: AvpType) -> Result<(), MessageError> {
    let n = avp.data.len();
    let bad_value = |reason| MessageError::InvalidAvpValue {
        failed_avp: avp.clone(),
        reason,
    };
    match ty {
        AvpType::Unsigned32 | AvpType::Integer32 | AvpType::Enumerated | AvpType::Time
            if n != 4 =>
        {
            Err(avp.length_error())
        }
        AvpType::Unsigned64 | AvpType::Integer64 if n != 8 => Err(avp.length_error()),
        AvpType::Address => match avp.data.get(..2) {
            None => Err(avp.length_error()),
            Some([0, 1]) if n != 6 => Err(avp.length_error()),
            Some([0, 2]) if n != 18 => Err(avp.length_error()),
            Some(_) => Ok(()),
        },
        AvpType::UTF8String => avp.as_utf8().map(|_| ()),
        AvpType::DiameterIdentity => {
            let s = avp.as_utf8()?;
            if s.is_empty() || !s.is_ascii() {
                Err(bad_value("DiameterIdentity must be non-empty ASCII"))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}
