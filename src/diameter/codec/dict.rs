//! The small AVP dictionary: code, vendor, name, type, the M bit we send, and which
//! applications' commands may carry it at the top level.
//!
//! Sources: RFC 6733 §4.5 (base), RFC 4006 (DCCA), RFC 5447/5777 (MIP6), 3GPP TS 29.212 (Gx),
//! TS 29.061 (3GPP-* RADIUS-derived AVPs), TS 29.272/29.273 (S6a/S13/S6b/SWx). Types only matter for
//! the length checks of [`mod@super::validate`]; 3GPP AVPs listed only so that their 'M' bit is not
//! answered with 5001 are typed [`AvpType::OctetString`] (no check), as are all AVPs whose
//! exact type does not matter to us.
//!
//! This is not a general-purpose dictionary: it has no enumerated value names and no grouped
//! AVP grammar.

/// AVP data types (RFC 6733 §4.2, §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AvpType {
    OctetString,
    UTF8String,
    DiameterIdentity,
    Unsigned32,
    Unsigned64,
    Integer32,
    Integer64,
    Address,
    Grouped,
    Enumerated,
    Time,
}

/// A set of applications, as bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Apps(pub u8);

impl Apps {
    /// Base protocol and AVPs every command may carry.
    pub const BASE: Self = Self(1);
    /// Gx (TS 29.212) CCR.
    pub const GX: Self = Self(2);
    /// S6b (TS 29.273) AAR/STR.
    pub const S6B: Self = Self(4);
    /// Gx and S6b.
    pub const GX_S6B: Self = Self(2 | 4);
    /// S13 (TS 29.272 §5.3) ECR.
    pub const S13: Self = Self(8);

    /// True when the sets intersect.
    pub fn overlaps(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
}

/// One dictionary entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvpDef {
    pub code: u32,
    /// 0 for IETF AVPs.
    pub vendor: u32,
    pub name: &'static str,
    pub ty: AvpType,
    /// Whether we set the M bit when sending it.
    pub mandatory: bool,
    /// Which commands may carry it at the top level without a 5001 for its M bit.
    pub apps: Apps,
}

/// Vendor-Id of 3GPP.
pub const VENDOR_3GPP: u32 = 10415;

// Codes used by name elsewhere in the crate.
pub const USER_NAME: u32 = 1;
pub const FRAMED_IP_ADDRESS: u32 = 8;
pub const CALLED_STATION_ID: u32 = 30;
pub const HOST_IP_ADDRESS: u32 = 257;
pub const AUTH_APPLICATION_ID: u32 = 258;
pub const ACCT_APPLICATION_ID: u32 = 259;
pub const VENDOR_SPECIFIC_APPLICATION_ID: u32 = 260;
pub const SESSION_ID: u32 = 263;
pub const ORIGIN_HOST: u32 = 264;
pub const SUPPORTED_VENDOR_ID: u32 = 265;
pub const VENDOR_ID: u32 = 266;
pub const FIRMWARE_REVISION: u32 = 267;
pub const RESULT_CODE: u32 = 268;
pub const PRODUCT_NAME: u32 = 269;
pub const DISCONNECT_CAUSE: u32 = 273;
pub const AUTH_REQUEST_TYPE: u32 = 274;
pub const AUTH_SESSION_STATE: u32 = 277;
pub const ORIGIN_STATE_ID: u32 = 278;
pub const FAILED_AVP: u32 = 279;
pub const ERROR_MESSAGE: u32 = 281;
pub const ROUTE_RECORD: u32 = 282;
pub const DESTINATION_REALM: u32 = 283;
pub const PROXY_INFO: u32 = 284;
pub const RE_AUTH_REQUEST_TYPE: u32 = 285;
pub const DESTINATION_HOST: u32 = 293;
pub const TERMINATION_CAUSE: u32 = 295;
pub const ORIGIN_REALM: u32 = 296;
pub const EXPERIMENTAL_RESULT: u32 = 297;
pub const EXPERIMENTAL_RESULT_CODE: u32 = 298;
pub const INBAND_SECURITY_ID: u32 = 299;
pub const CC_REQUEST_NUMBER: u32 = 415;
pub const CC_REQUEST_TYPE: u32 = 416;
pub const SUBSCRIPTION_ID: u32 = 443;
pub const SUBSCRIPTION_ID_DATA: u32 = 444;
pub const SUBSCRIPTION_ID_TYPE: u32 = 450;
pub const USER_EQUIPMENT_INFO: u32 = 458;
pub const USER_EQUIPMENT_INFO_TYPE: u32 = 459;
pub const USER_EQUIPMENT_INFO_VALUE: u32 = 460;
pub const MIP6_AGENT_INFO: u32 = 486;
pub const SERVICE_SELECTION: u32 = 493;
/// 3GPP-RAT-Type (TS 29.061), vendor 10415.
pub const TGPP_RAT_TYPE: u32 = 21;
/// RAT-Type (TS 29.212), vendor 10415.
pub const RAT_TYPE: u32 = 1032;
/// IP-CAN-Type (TS 29.212), vendor 10415.
pub const IP_CAN_TYPE: u32 = 1027;
/// Terminal-Information (TS 29.272), vendor 10415.
pub const TERMINAL_INFORMATION: u32 = 1401;
/// IMEI (TS 29.272), vendor 10415.
pub const IMEI: u32 = 1402;
/// Software-Version (TS 29.272), vendor 10415.
pub const SOFTWARE_VERSION: u32 = 1403;
/// Equipment-Status (TS 29.272 §7.3.51), vendor 10415.
pub const EQUIPMENT_STATUS: u32 = 1445;
/// 3GPP2-MEID (TS 29.272 §7.3.6), vendor 10415.
pub const TGPP2_MEID: u32 = 1471;
/// Context-Identifier (TS 29.272), vendor 10415.
pub const CONTEXT_IDENTIFIER: u32 = 1423;
/// APN-Configuration (TS 29.272), vendor 10415.
pub const APN_CONFIGURATION: u32 = 1430;

const fn d(
    code: u32,
    vendor: u32,
    name: &'static str,
    ty: AvpType,
    mandatory: bool,
    apps: Apps,
) -> AvpDef {
    AvpDef {
        code,
        vendor,
        name,
        ty,
        mandatory,
        apps,
    }
}

use AvpType::{
    Address as Ad, DiameterIdentity as Id, Enumerated as En, Grouped as Gr, OctetString as Os,
    Time as Ti, UTF8String as Ut, Unsigned32 as U32, Unsigned64 as U64,
};
const B: Apps = Apps::BASE;
const GX: Apps = Apps::GX;
const S6: Apps = Apps::S6B;
const GS: Apps = Apps::GX_S6B;
const S13: Apps = Apps::S13;
/// S6b and S13 (Terminal-Information and its children).
const S6_S13: Apps = Apps(Apps::S6B.0 | Apps::S13.0);
const V3: u32 = VENDOR_3GPP;

/// The dictionary, sorted by (vendor, code).
pub static DICTIONARY: &[AvpDef] = &[
    d(1, 0, "User-Name", Ut, true, B),
    d(8, 0, "Framed-IP-Address", Os, true, GS),
    d(25, 0, "Class", Os, true, S6),
    d(30, 0, "Called-Station-Id", Ut, true, GX),
    d(33, 0, "Proxy-State", Os, true, B),
    d(97, 0, "Framed-IPv6-Prefix", Os, true, GS),
    d(124, 0, "MIP6-Feature-Vector", U64, true, S6),
    d(257, 0, "Host-IP-Address", Ad, true, B),
    d(258, 0, "Auth-Application-Id", U32, true, B),
    d(259, 0, "Acct-Application-Id", U32, true, B),
    d(260, 0, "Vendor-Specific-Application-Id", Gr, true, B),
    d(263, 0, "Session-Id", Ut, true, B),
    d(264, 0, "Origin-Host", Id, true, B),
    d(265, 0, "Supported-Vendor-Id", U32, true, B),
    d(266, 0, "Vendor-Id", U32, true, B),
    d(267, 0, "Firmware-Revision", U32, false, B),
    d(268, 0, "Result-Code", U32, true, B),
    d(269, 0, "Product-Name", Ut, false, B),
    d(273, 0, "Disconnect-Cause", En, true, B),
    d(274, 0, "Auth-Request-Type", En, true, B),
    d(277, 0, "Auth-Session-State", En, true, B),
    d(278, 0, "Origin-State-Id", U32, true, B),
    d(279, 0, "Failed-AVP", Gr, true, B),
    d(280, 0, "Proxy-Host", Id, true, B),
    d(281, 0, "Error-Message", Ut, false, B),
    d(282, 0, "Route-Record", Id, true, B),
    d(283, 0, "Destination-Realm", Id, true, B),
    d(284, 0, "Proxy-Info", Gr, true, B),
    d(285, 0, "Re-Auth-Request-Type", En, true, B),
    d(291, 0, "Authorization-Lifetime", U32, true, B),
    d(293, 0, "Destination-Host", Id, true, B),
    d(294, 0, "Error-Reporting-Host", Id, false, B),
    d(295, 0, "Termination-Cause", En, true, B),
    d(296, 0, "Origin-Realm", Id, true, B),
    d(297, 0, "Experimental-Result", Gr, true, B),
    d(298, 0, "Experimental-Result-Code", U32, true, B),
    d(299, 0, "Inband-Security-Id", U32, true, B),
    d(301, 0, "DRMP", En, false, B),
    d(415, 0, "CC-Request-Number", U32, true, GX),
    d(416, 0, "CC-Request-Type", En, true, GX),
    d(443, 0, "Subscription-Id", Gr, true, GX),
    d(444, 0, "Subscription-Id-Data", Ut, true, GX),
    d(450, 0, "Subscription-Id-Type", En, true, GX),
    d(458, 0, "User-Equipment-Info", Gr, false, GS),
    d(459, 0, "User-Equipment-Info-Type", En, false, GS),
    d(460, 0, "User-Equipment-Info-Value", Os, false, GS),
    d(486, 0, "MIP6-Agent-Info", Gr, true, S6),
    d(493, 0, "Service-Selection", Ut, true, S6),
    d(621, 0, "OC-Supported-Features", Gr, false, B),
    // 3GPP TS 29.061 AVPs seen with the M bit at the top level of real Gx CCRs
    // (vectors: magma, open5gs).
    d(6, V3, "3GPP-SGSN-Address", Os, true, GX),
    d(7, V3, "3GPP-GGSN-Address", Os, true, GX),
    d(12, V3, "3GPP-Selection-Mode", Os, true, GX),
    d(13, V3, "3GPP-Charging-Characteristics", Os, true, GX),
    d(15, V3, "3GPP-SGSN-IPv6-Address", Os, true, GX),
    d(16, V3, "3GPP-GGSN-IPv6-Address", Os, true, GX),
    d(18, V3, "3GPP-SGSN-MCC-MNC", Os, true, GX),
    d(21, V3, "3GPP-RAT-Type", Os, true, GX),
    d(22, V3, "3GPP-User-Location-Info", Os, true, GX),
    d(23, V3, "3GPP-MS-TimeZone", Os, true, GX),
    d(501, V3, "Access-Network-Charging-Address", Ad, true, GX),
    d(600, V3, "Visited-Network-Identifier", Os, true, S6),
    d(628, V3, "Supported-Features", Gr, false, GS),
    d(909, V3, "RAI", Os, true, GX),
    // TS 29.212 §5.6.2 CCR AVPs.
    d(1000, V3, "Bearer-Usage", En, true, GX),
    d(1006, V3, "Event-Trigger", En, true, GX),
    d(1008, V3, "Offline", En, true, GX),
    d(1009, V3, "Online", En, true, GX),
    d(1013, V3, "TFT-Packet-Filter-Information", Os, true, GX),
    d(1016, V3, "QoS-Information", Os, true, GX),
    d(1018, V3, "Charging-Rule-Report", Os, true, GX),
    d(1020, V3, "Bearer-Identifier", Os, true, GX),
    d(1021, V3, "Bearer-Operation", En, true, GX),
    d(
        1022,
        V3,
        "Access-Network-Charging-Identifier-Gx",
        Os,
        true,
        GX,
    ),
    d(1024, V3, "Network-Request-Support", En, true, GX),
    d(1027, V3, "IP-CAN-Type", En, true, GX),
    d(1029, V3, "QoS-Negotiation", En, true, GX),
    d(1030, V3, "QoS-Upgrade", En, true, GX),
    d(1032, V3, "RAT-Type", En, true, GS),
    d(1033, V3, "Event-Report-Indication", Os, true, GX),
    d(1039, V3, "CoA-Information", Os, true, GX),
    d(1049, V3, "Default-EPS-Bearer-QoS", Os, true, GX),
    d(1050, V3, "AN-GW-Address", Ad, true, GX),
    d(1061, V3, "Packet-Filter-Information", Os, true, GX),
    d(1062, V3, "Packet-Filter-Operation", En, true, GX),
    d(1065, V3, "PDN-Connection-ID", Os, true, GX),
    d(1067, V3, "Usage-Monitoring-Information", Os, true, GX),
    d(1098, V3, "Application-Detection-Information", Os, true, GX),
    // TS 29.272 / 29.273.
    d(1401, V3, "Terminal-Information", Gr, true, S6_S13),
    d(1402, V3, "IMEI", Ut, true, S6_S13),
    d(1403, V3, "Software-Version", Ut, true, S6_S13),
    d(1423, V3, "Context-Identifier", U32, true, S6),
    d(1430, V3, "APN-Configuration", Gr, true, S6),
    d(1445, V3, "Equipment-Status", En, true, S13),
    d(1471, V3, "3GPP2-MEID", Os, true, S6_S13),
    d(2050, V3, "PDN-Connection-Charging-ID", U32, true, GX),
    d(2051, V3, "Dynamic-Address-Flag", En, true, GX),
    d(2811, V3, "AN-GW-Status", En, true, GX),
    d(2812, V3, "User-Location-Info-Time", Ti, true, GX),
];

/// Looks up (code, vendor); vendor 0 is the IETF space.
///
/// A direct index for the two vendor spaces we list (called for every AVP decoded, validated
/// and encoded: a binary search cost ~3k instructions per CCR), else a binary search.
pub fn lookup(code: u32, vendor: u32) -> Option<&'static AvpDef> {
    let index = match vendor {
        0 => IETF_INDEX.get(code as usize),
        VENDOR_3GPP => TGPP_INDEX.get(code as usize),
        _ => None,
    };
    let i = match index {
        Some(&NONE) => return None,
        Some(&i) => usize::from(i),
        None => DICTIONARY
            .binary_search_by(|e| (e.vendor, e.code).cmp(&(vendor, code)))
            .ok()?,
    };
    DICTIONARY.get(i)
}

/// "Not listed" in the direct indexes.
const NONE: u8 = u8::MAX;
const IETF_SPAN: usize = 1024;
const TGPP_SPAN: usize = 3072;
static IETF_INDEX: [u8; IETF_SPAN] = index_of(0);
static TGPP_INDEX: [u8; TGPP_SPAN] = index_of(VENDOR_3GPP);

/// The DICTIONARY position of each code of `vendor` below `N` (NONE when not listed).
const fn index_of<const N: usize>(vendor: u32) -> [u8; N] {
    assert!(DICTIONARY.len() < NONE as usize);
    let mut t = [NONE; N];
    let mut i = 0;
    while i < DICTIONARY.len() {
        let e = &DICTIONARY[i];
        if e.vendor == vendor {
            // Every listed code of these vendors must fit its index (checked at compile time).
            assert!((e.code as usize) < N);
            t[e.code as usize] = i as u8;
        }
        i += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_unique() {
        for w in DICTIONARY.windows(2) {
            assert!((w[0].vendor, w[0].code) < (w[1].vendor, w[1].code), "{w:?}");
        }
    }

    #[test]
    fn direct_index_agrees_with_the_table() {
        for (i, e) in DICTIONARY.iter().enumerate() {
            assert!(std::ptr::eq(
                lookup(e.code, e.vendor).unwrap(),
                &DICTIONARY[i]
            ));
        }
        for vendor in [0, VENDOR_3GPP, 5535, u32::MAX] {
            for code in (0..4000).chain([u32::MAX]) {
                let listed = DICTIONARY
                    .iter()
                    .find(|e| (e.code, e.vendor) == (code, vendor));
                assert_eq!(lookup(code, vendor).map(|e| e.name), listed.map(|e| e.name));
            }
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(lookup(264, 0).unwrap().name, "Origin-Host");
        assert_eq!(lookup(1032, VENDOR_3GPP).unwrap().ty, AvpType::Enumerated);
        assert!(lookup(1032, 0).is_none());
        assert!(lookup(9999, 0).is_none());
        assert!(!lookup(PRODUCT_NAME, 0).unwrap().mandatory);
    }
}
