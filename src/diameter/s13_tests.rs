//! S13 mapping and answers, without a network.

use super::*;
use crate::diameter::codec::validate::validate;
use crate::diameter::codec::Decoder;

fn origin() -> Origin {
    Origin {
        host: "eir.localdomain".into(),
        realm: "localdomain".into(),
        state_id: Some(7),
    }
}

fn ti(kids: &[Avp]) -> Avp {
    Avp::grouped(dict::TERMINAL_INFORMATION, VENDOR_3GPP, kids).unwrap()
}

fn imei(s: &str) -> Avp {
    Avp::utf8(dict::IMEI, VENDOR_3GPP, s)
}

fn sv(s: &str) -> Avp {
    Avp::utf8(dict::SOFTWARE_VERSION, VENDOR_3GPP, s)
}

fn ecr(user_name: Option<&str>, terminal: Option<Avp>) -> Message {
    let mut m = Message::request(CMD_ECR, APP_S13, true)
        .with(Avp::utf8(dict::SESSION_ID, 0, "mme.localdomain;1;2"))
        .with(Avp::u32(dict::AUTH_SESSION_STATE, 0, NO_STATE_MAINTAINED))
        .with(Avp::utf8(dict::ORIGIN_HOST, 0, "mme.localdomain"))
        .with(Avp::utf8(dict::ORIGIN_REALM, 0, "localdomain"))
        .with(Avp::utf8(dict::DESTINATION_REALM, 0, "localdomain"));
    if let Some(t) = terminal {
        m.push(t);
    }
    if let Some(u) = user_name {
        m.push(Avp::utf8(dict::USER_NAME, 0, u));
    }
    m
}

/// 15 digits with a valid Luhn digit.
const IMEI15: &str = "490154203237518";

#[test]
fn ecr_with_imsi_imei_and_software_version() {
    let m = ecr(Some("001010000000001"), Some(ti(&[imei(IMEI15), sv("07")])));
    validate(&m, &ECR).unwrap();
    let r = ecr_to_request(&m).unwrap();
    assert_eq!(r.interface, Interface::S13);
    assert_eq!(r.peer, "mme.localdomain");
    assert_eq!(r.imsi.unwrap().as_str(), "001010000000001");
    let PresentedImei::Valid(p) = r.imei else {
        panic!("{:?}", r.imei)
    };
    assert_eq!(p.imei.to_string(), "49015420323751");
    assert_eq!(p.svn, Some(7));
}

#[test]
fn fourteen_digits_and_imeisv_forms_are_accepted() {
    for v in ["49015420323751", "4901542032375107", "490154203237518,07"] {
        let r = ecr_to_request(&ecr(None, Some(ti(&[imei(v)])))).unwrap();
        assert!(matches!(r.imei, PresentedImei::Valid(_)), "{v}");
        assert!(r.imsi.is_none());
    }
}

#[test]
fn missing_terminal_information_is_5005() {
    let m = ecr(Some("001010000000001"), None);
    let e = validate(&m, &ECR).unwrap_err();
    assert_eq!(e.result_code(), ResultCode::MISSING_AVP);
    assert_eq!(e.failed_avp().unwrap().code, dict::TERMINAL_INFORMATION);
    let e = ecr_to_request(&m).unwrap_err();
    assert_eq!(e.result_code(), ResultCode::MISSING_AVP);
}

#[test]
fn terminal_information_without_imei_is_5005_naming_imei() {
    let e = ecr_to_request(&ecr(None, Some(ti(&[sv("01")])))).unwrap_err();
    assert_eq!(e.result_code(), ResultCode::MISSING_AVP);
    let f = e.failed_avp().unwrap();
    assert_eq!(f.code, dict::TERMINAL_INFORMATION);
    let inner = f.children().unwrap();
    assert_eq!(
        (inner[0].code, inner[0].vendor()),
        (dict::IMEI, VENDOR_3GPP)
    );
}

#[test]
fn digits_of_a_wrong_length_are_5004() {
    for v in ["", "1234", "4901542032375", "49015420323751071"] {
        let e = ecr_to_request(&ecr(None, Some(ti(&[imei(v)])))).unwrap_err();
        assert_eq!(e.result_code(), ResultCode::INVALID_AVP_VALUE, "{v}");
        let inner = e.failed_avp().unwrap().children().unwrap();
        assert_eq!(inner[0].data, v.as_bytes());
    }
}

#[test]
fn non_digits_meid_and_bad_check_digit_are_malformed() {
    for v in ["49015420323751X", "490154203237519", "4901542032375A07"] {
        let r = ecr_to_request(&ecr(None, Some(ti(&[imei(v)])))).unwrap();
        assert!(matches!(r.imei, PresentedImei::Malformed(_)), "{v}");
    }
    let meid = Avp::new(dict::TGPP2_MEID, VENDOR_3GPP, vec![0xa1; 7]);
    let r = ecr_to_request(&ecr(None, Some(ti(&[meid])))).unwrap();
    assert!(matches!(r.imei, PresentedImei::Malformed(_)));
}

#[test]
fn a_user_name_that_is_no_imsi_is_5004() {
    let m = ecr(Some("user@realm"), Some(ti(&[imei(IMEI15)])));
    let e = ecr_to_request(&m).unwrap_err();
    assert_eq!(e.result_code(), ResultCode::INVALID_AVP_VALUE);
    assert_eq!(e.failed_avp().unwrap().code, dict::USER_NAME);
}

#[test]
fn vendor_specific_application_id_is_ignored() {
    let vsai = Avp::grouped(
        dict::VENDOR_SPECIFIC_APPLICATION_ID,
        0,
        &[
            Avp::u32(dict::VENDOR_ID, 0, VENDOR_3GPP),
            Avp::u32(dict::AUTH_APPLICATION_ID, 0, 4),
        ],
    )
    .unwrap();
    let m = ecr(None, Some(ti(&[imei(IMEI15)]))).with(vsai);
    validate(&m, &ECR).unwrap();
    ecr_to_request(&m).unwrap();
}

#[test]
fn eca_forms() {
    let m = ecr(None, Some(ti(&[imei(IMEI15)])));
    let a = eca(
        &m,
        &origin(),
        EirAnswer::Status(EquipmentStatus::Blacklisted),
    );
    let a = Decoder::default().decode(&a.encode().unwrap()).unwrap();
    assert_eq!(a.result_code(), Some(ResultCode::SUCCESS));
    assert_eq!(
        a.avps.get_u32(dict::EQUIPMENT_STATUS, VENDOR_3GPP),
        Ok(Some(1))
    );
    assert_eq!(
        a.avps.get_u32(dict::AUTH_SESSION_STATE, 0),
        Ok(Some(NO_STATE_MAINTAINED))
    );
    assert_eq!(a.header.code, CMD_ECR);
    assert!(!a.is_request());

    let u = eca(&m, &origin(), EirAnswer::Unknown);
    assert_eq!(u.result_code(), None);
    assert_eq!(u.experimental_result(), Some((VENDOR_3GPP, 5422)));
    assert!(u.find(dict::EQUIPMENT_STATUS, VENDOR_3GPP).is_none());

    let e = ecr_to_request(&ecr(Some("x"), Some(ti(&[imei(IMEI15)])))).unwrap_err();
    let ea = error_answer(&m, &origin(), &e);
    assert_eq!(ea.result_code(), Some(ResultCode::INVALID_AVP_VALUE));
    assert!(ea.find(dict::FAILED_AVP, 0).is_some());
    assert!(ea.find(dict::EQUIPMENT_STATUS, VENDOR_3GPP).is_none());
}
