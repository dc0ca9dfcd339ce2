//! Request → context mapping and the answers' octets, from packets built with the codec.

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
    let raw =
        encode_access_request(Code::AccessRequest, 46, &[0xab; 16], attrs, SECRET, true).unwrap();
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
