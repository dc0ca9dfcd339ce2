//! Capabilities exchange (RFC 6733 §5.3): reading a CER and building the CEA.
//!
//! RFC 6733 §5.3: "If the local policy permits receiving CERs from unknown hosts, a successful
//! CEA MAY be returned. If a CER from an unknown peer is answered with a successful CEA, the
//! lifetime of the peer entry is equal to the lifetime of the transport connection." We do not
//! permit it: unknown Origin-Host → 3010 DIAMETER_UNKNOWN_PEER. "If the CER contains no common
//! application ... the CEA MUST have its Result-Code set to DIAMETER_NO_COMMON_APPLICATION".
//! The relay application (0xffffffff) is common with every application.
//!
//! ```text
//! <CEA> ::= < Diameter Header: 257 >
//!           { Result-Code }
//!           { Origin-Host }
//!           { Origin-Realm }
//!        1* { Host-IP-Address }
//!           { Vendor-Id }
//!           { Product-Name }
//!           [ Origin-State-Id ]
//!           [ Error-Message ]
//!           [ Failed-AVP ]
//!         * [ Supported-Vendor-Id ]
//!         * [ Auth-Application-Id ]
//!         * [ Inband-Security-Id ]
//!         * [ Acct-Application-Id ]
//!         * [ Vendor-Specific-Application-Id ]
//!           [ Firmware-Revision ]
//!         * [ AVP ]
//! ```

use super::config::{PeerConfig, PeerInfo};
use crate::diameter::codec::dict::{self, VENDOR_3GPP};
use crate::diameter::codec::validate::{self, CER};
use crate::diameter::codec::{Avp, AvpList, CommandFlags, Message, MessageError, ResultCode};

/// The outcome of judging a CER.
#[derive(Clone, Debug)]
pub(crate) enum CerVerdict {
    Accept(PeerInfo),
    Reject {
        code: ResultCode,
        text: String,
        failed_avp: Option<Avp>,
    },
}

/// Judges a CER against our configuration.
pub(crate) fn judge(cfg: &PeerConfig, cer: &Message) -> CerVerdict {
    match read(cfg, cer) {
        Ok(info) => CerVerdict::Accept(info),
        Err(e) => CerVerdict::Reject {
            code: e.0,
            text: e.1,
            failed_avp: e.2,
        },
    }
}

type Reject = (ResultCode, String, Option<Avp>);

fn from_err(e: &MessageError) -> Reject {
    (e.result_code(), e.to_string(), e.failed_avp().cloned())
}

fn read(cfg: &PeerConfig, cer: &Message) -> Result<PeerInfo, Reject> {
    validate::validate(cer, &CER).map_err(|e| from_err(&e))?;
    let a = &cer.avps;
    let origin_host = a
        .require_utf8(dict::ORIGIN_HOST, 0)
        .map_err(|e| from_err(&e))?
        .to_owned();
    let origin_realm = a
        .require_utf8(dict::ORIGIN_REALM, 0)
        .map_err(|e| from_err(&e))?
        .to_owned();
    if !cfg.is_known(&origin_host) {
        return Err((
            ResultCode::UNKNOWN_PEER,
            format!("unknown peer {origin_host}"),
            None,
        ));
    }
    let mut auth = Vec::new();
    let mut acct = Vec::new();
    collect_apps(a, &mut auth, &mut acct).map_err(|e| from_err(&e))?;
    for vsai in a.find_all(dict::VENDOR_SPECIFIC_APPLICATION_ID, 0) {
        let kids = vsai.children().map_err(|e| from_err(&e))?;
        collect_apps(&kids, &mut auth, &mut acct).map_err(|e| from_err(&e))?;
    }
    let host_ip_addresses = a
        .find_all(dict::HOST_IP_ADDRESS, 0)
        .filter_map(|h| h.as_ip().ok())
        .collect();
    let info = PeerInfo {
        origin_host,
        origin_realm,
        host_ip_addresses,
        product_name: a
            .get_utf8(dict::PRODUCT_NAME, 0)
            .ok()
            .flatten()
            .map(str::to_owned),
        origin_state_id: a.get_u32(dict::ORIGIN_STATE_ID, 0).ok().flatten(),
        auth_applications: auth,
        acct_applications: acct,
    };
    if !cfg.catalog.iter().any(|app| info.supports(app.id())) {
        return Err((
            ResultCode::NO_COMMON_APPLICATION,
            format!("no common application ({})", cfg.catalog.describe()),
            None,
        ));
    }
    Ok(info)
}

fn collect_apps(
    avps: &[Avp],
    auth: &mut Vec<u32>,
    acct: &mut Vec<u32>,
) -> Result<(), MessageError> {
    for x in avps.find_all(dict::AUTH_APPLICATION_ID, 0) {
        auth.push(x.as_u32()?);
    }
    for x in avps.find_all(dict::ACCT_APPLICATION_ID, 0) {
        acct.push(x.as_u32()?);
    }
    Ok(())
}

/// Our capability AVPs after Result-Code (Origin-*, Host-IP-Address, Vendor-Id, Product-Name,
/// Origin-State-Id, Supported-Vendor-Id, Vendor-Specific-Application-Ids, Firmware-Revision).
pub(crate) fn capability_avps(cfg: &PeerConfig) -> Vec<Avp> {
    let mut v: Vec<Avp> = cfg.origin.avps().into();
    for ip in &cfg.host_ip_addresses {
        v.push(Avp::address(dict::HOST_IP_ADDRESS, 0, *ip));
    }
    v.push(Avp::u32(dict::VENDOR_ID, 0, cfg.vendor_id));
    v.push(Avp::utf8(dict::PRODUCT_NAME, 0, &cfg.product_name));
    if let Some(s) = cfg.origin.state_id {
        v.push(Avp::u32(dict::ORIGIN_STATE_ID, 0, s));
    }
    v.push(Avp::u32(dict::SUPPORTED_VENDOR_ID, 0, VENDOR_3GPP));
    for app in cfg.catalog.iter() {
        let auth = Avp::u32(dict::AUTH_APPLICATION_ID, 0, app.id());
        if !app.vendor_specific() {
            v.push(auth);
            continue;
        }
        let kids = [Avp::u32(dict::VENDOR_ID, 0, VENDOR_3GPP), auth];
        // Two 12-byte children never exceed the AVP length field.
        if let Ok(g) = Avp::grouped(dict::VENDOR_SPECIFIC_APPLICATION_ID, 0, &kids) {
            v.push(g);
        }
    }
    v.push(Avp::u32(dict::FIRMWARE_REVISION, 0, cfg.firmware_revision));
    v
}

/// The CEA for a CER: Result-Code first, then our capabilities, then Error-Message and
/// Failed-AVP on failure. 3xxx sets the 'E' bit.
pub(crate) fn cea(
    cfg: &PeerConfig,
    cer: &Message,
    code: ResultCode,
    text: Option<&str>,
    failed_avp: Option<&Avp>,
) -> Message {
    let mut m = Message::answer_to(&cer.header);
    if code.is_protocol_error() {
        m.header.flags = m.header.flags.with(CommandFlags::ERROR, true);
    }
    m.push(Avp::u32(dict::RESULT_CODE, 0, code.0));
    m.avps.extend(capability_avps(cfg));
    if let Some(t) = text {
        m.push(Avp::utf8(dict::ERROR_MESSAGE, 0, t));
    }
    if let Some(f) = failed_avp {
        m.push(Avp::new(dict::FAILED_AVP, 0, f.to_bytes_lossy()));
    }
    m
}
