//! S6b User-Name identity forms against the real binary, with python-diameter as the P-GW
//! (`integration-tests/peers/diameter_client.py`): every permanent-identity form (EAP-AKA,
//! EAP-SIM, EAP-AKA', plain and decorated) is judged as its IMSI; pseudonyms and fast
//! re-authentication identities get Result-Code DIAMETER_USER_UNKNOWN (5030), a log line and a
//! metric label (docs/integration/s6b-identities.md).

mod common;

use serde_json::{json, Value};

use common::Daemon;

const PCEF: &str = "pcef.localdomain";
const REALM: &str = "nai.epc.mnc001.mcc001.3gppnetwork.org";
/// The device the SIMs are bound to (15 digits with check digit) and another one.
const IMEI_A: &str = "352099001761481";
const IMEI_B: &str = "354858041234561";

fn start() -> Daemon {
    Daemon::start(&format!("[[diameter.peers]]\norigin_host = \"{PCEF}\"\n"))
}

fn client(d: &Daemon, steps: Value) -> Vec<Value> {
    common::pydiameter::client(d, PCEF, steps)
}

fn lock_and_bind(d: &Daemon, imsi: &str) {
    d.api().submit_wait(
        "PUT",
        &format!("/v1/sims/{imsi}"),
        Some(json!({"imei_management": "lock"})),
    );
    let r = client(
        d,
        json!([{"op": "cer"}, {"op": "aar", "imsi": imsi, "imei": IMEI_A, "sv": "23"}]),
    );
    assert_eq!(r[1]["result_code"], 2001, "{r:#?}");
    assert_eq!(d.api().sim(imsi)["bound_imei"], &IMEI_A[..14]);
}

#[test]
fn every_permanent_identity_form_is_judged_as_its_imsi() {
    let d = start();
    let imsi = "001010000000401";
    // A 14-digit IMSI: its permanent forms have 15 digits, told from a bare IMSI by the realm.
    let short = "00101000000402";
    lock_and_bind(&d, imsi);
    lock_and_bind(&d, short);
    let forms = [
        (format!("0{imsi}@{REALM}"), "eap_aka_permanent", "false"),
        (format!("1{imsi}@{REALM}"), "eap_sim_permanent", "false"),
        (
            format!("6{imsi}@{REALM}"),
            "eap_aka_prime_permanent",
            "false",
        ),
        (format!("6{imsi}"), "eap_aka_prime_permanent", "false"),
        (format!("0{short}@{REALM}"), "eap_aka_permanent", "false"),
        (
            format!("6{short}@{REALM}"),
            "eap_aka_prime_permanent",
            "false",
        ),
        (
            format!("{REALM}!0{imsi}@nai.epc.mnc002.mcc002.3gppnetwork.org"),
            "eap_aka_permanent",
            "true",
        ),
        (
            format!("{REALM}!6{short}@nai.epc.mnc002.mcc002.3gppnetwork.org"),
            "eap_aka_prime_permanent",
            "true",
        ),
        (format!("{REALM}!{imsi}@visited.example"), "imsi", "true"),
    ];
    let mut steps = vec![json!({"op": "cer"})];
    for (user_name, _, _) in &forms {
        // The bound device is accepted (a wrong IMSI would be an unknown SIM: 5003), the other
        // one is a mismatch on the right SIM.
        steps.push(json!({"op": "aar", "imsi": "", "user_name": user_name,
            "imei": IMEI_A, "sv": "01"}));
        steps.push(json!({"op": "aar", "imsi": "", "user_name": user_name,
            "imei": IMEI_B, "sv": "01"}));
        steps.push(json!({"op": "str", "user_name": user_name, "session": "it;1"}));
    }
    let r = client(&d, json!(steps));
    for (i, (user_name, _, _)) in forms.iter().enumerate() {
        let (ok, mismatch, end) = (&r[1 + 3 * i], &r[2 + 3 * i], &r[3 + 3 * i]);
        assert_eq!(ok["result_code"], 2001, "{user_name}: {ok}");
        assert_eq!(mismatch["result_code"], 5003, "{user_name}: {mismatch}");
        assert_eq!(mismatch["error_message"], "IMEI mismatch", "{user_name}");
        assert_eq!(end["result_code"], 2001, "{user_name}: {end}");
    }
    let m = common::metrics_text(&d);
    for (_, form, decorated) in &forms {
        let n = common::counter(
            &m,
            "imei_lockd_s6b_identities_total",
            &[
                &format!("form=\"{form}\""),
                &format!("decorated=\"{decorated}\""),
            ],
        );
        assert!(n >= 2.0, "{form} decorated={decorated}: {n}\n{m}");
    }
    // The IMSIs stayed bound to device A: no form bound or rebound anything.
    assert_eq!(d.api().sim(imsi)["bound_imei"], &IMEI_A[..14]);
    assert_eq!(d.api().sim(short)["bound_imei"], &IMEI_A[..14]);
}

#[test]
fn pseudonyms_and_fast_reauth_identities_get_user_unknown() {
    let d = start();
    let forms = [
        (
            "2kYtRGd1cVhzeA@nai.epc.mnc001.mcc001.3gppnetwork.org",
            "eap_aka_pseudonym",
            "false",
        ),
        (
            "3R2Zjd2hV@nai.epc.mnc001.mcc001.3gppnetwork.org",
            "eap_sim_pseudonym",
            "false",
        ),
        (
            "4reauth-77@nai.epc.mnc001.mcc001.3gppnetwork.org",
            "eap_aka_fast_reauth",
            "false",
        ),
        (
            "5reauth-78@nai.epc.mnc001.mcc001.3gppnetwork.org",
            "eap_sim_fast_reauth",
            "false",
        ),
        (
            "7cHNldWRvbnlt@nai.epc.mnc001.mcc001.3gppnetwork.org",
            "eap_aka_prime_pseudonym",
            "false",
        ),
        (
            "8reauth-79@nai.epc.mnc001.mcc001.3gppnetwork.org",
            "eap_aka_prime_fast_reauth",
            "false",
        ),
        (
            "nai.epc.mnc001.mcc001.3gppnetwork.org!7cHNldWRv@visited.example",
            "eap_aka_prime_pseudonym",
            "true",
        ),
    ];
    let mut steps = vec![json!({"op": "cer"})];
    for (user_name, _, _) in &forms {
        steps.push(json!({"op": "aar", "imsi": "", "user_name": user_name,
            "imei": IMEI_A, "sv": "01"}));
        steps.push(json!({"op": "str", "user_name": user_name, "session": "it;2"}));
    }
    // What is no identity at all keeps its 5004.
    steps.push(json!({"op": "aar", "imsi": "", "user_name": "alice@example.org"}));
    let r = client(&d, json!(steps));
    for (i, (user_name, form, decorated)) in forms.iter().enumerate() {
        let (aaa, sta) = (&r[1 + 2 * i], &r[2 + 2 * i]);
        assert_eq!(aaa["result_code"], 5030, "{user_name}: {aaa}");
        assert!(
            aaa["experimental_result_code"].is_null(),
            "{user_name}: {aaa}"
        );
        assert_eq!(aaa["error"], false, "{user_name}: not an 'E'-bit answer");
        assert_eq!(aaa["command"], 265);
        assert_eq!(aaa["application_id"], 16_777_272);
        let text = aaa["error_message"].as_str().unwrap_or_default();
        assert!(text.contains("cannot be mapped to an IMSI"), "{text}");
        // Session ends are always answered with success.
        assert_eq!(sta["result_code"], 2001, "{user_name}: {sta}");
        let m = common::metrics_text(&d);
        let n = common::counter(
            &m,
            "imei_lockd_s6b_identities_total",
            &[
                &format!("form=\"{form}\""),
                &format!("decorated=\"{decorated}\""),
            ],
        );
        assert!(n >= 1.0, "{form}: {n}");
    }
    let last = r.last().unwrap();
    assert_eq!(last["result_code"], 5004, "{last}");
    let m = common::metrics_text(&d);
    let user_unknown = common::counter(
        &m,
        "imei_lockd_diameter_answers_total",
        &["app=\"s6b\"", "result_code=\"5030\""],
    );
    assert_eq!(user_unknown, forms.len() as f64, "{m}");
    assert_eq!(
        common::counter(&m, "imei_lockd_s6b_identities_total", &["form=\"no_imsi\""]),
        1.0
    );
    // One log line per refused AAR, naming the form and the reason.
    let log = d.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("DIAMETER_USER_UNKNOWN (5030)"))
        .collect();
    assert_eq!(lines.len(), forms.len(), "{log}");
    assert!(lines[0].contains("eap_aka_pseudonym"), "{}", lines[0]);
    assert!(
        lines[0].contains("cannot be mapped to an IMSI"),
        "{}",
        lines[0]
    );
    // Nothing was judged: no SIM, no decision.
    assert_eq!(
        common::counter(&m, "imei_lockd_decisions_total", &["interface=\"s6b\""]),
        0.0
    );
}
