//! S13 (ME-Identity-Check, TS 29.272) against the real binary, with python-diameter as the MME
//! (`integration-tests/peers/diameter_client.py`), directly and through freeDiameterd as a
//! relay, radclient as the RADIUS gateway of the cross-interface test: one lock, every
//! interface (docs/reference/diameter.md, "S13").

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::Daemon;
use imei_lockd::diameter::codec::Decoder;

/// The MME (python client) and the relay.
const MME: &str = "mme.localdomain";
const RELAY: &str = "relay.localdomain";
const APP_S13: u64 = 16_777_252;
const APP_GX: u64 = 16_777_238;
/// Device A (15 digits, valid check digit), B, C; the lock keeps the 14-digit TAC + SNR.
const IMEI_A: &str = "352099001761481";
const IMEI_B: &str = "354858041234561";
const IMEI_C: &str = "490154203237518";
const WHITELISTED: u64 = 0;
const BLACKLISTED: u64 = 1;
const GREYLISTED: u64 = 2;

fn peers() -> String {
    format!(
        "[[diameter.peers]]\norigin_host = \"{MME}\"\n\
         [[diameter.peers]]\norigin_host = \"{RELAY}\"\naddress = \"127.0.0.1/32\"\n"
    )
}

/// A daemon serving S13, with `eir` (more `[eir]` keys) before the S13 table.
fn start_with(eir: &str) -> Daemon {
    Daemon::start(&format!(
        "{}[eir]\n{eir}\n[eir.s13]\nenabled = true\n",
        peers()
    ))
}

fn start() -> Daemon {
    start_with("")
}

fn client(d: &Daemon, steps: Value) -> Vec<Value> {
    common::pydiameter::client(d, MME, steps)
}

fn cer() -> Value {
    json!({"op": "cer", "apps": [APP_S13]})
}

fn ecr(imsi: Option<&str>, imei: &str, sv: &str) -> Value {
    json!({"op": "ecr", "imsi": imsi, "imei": imei, "sv": sv})
}

fn rc(v: &Value) -> Option<u64> {
    v["result_code"].as_u64()
}

/// (Result-Code, Equipment-Status) of an ECA; panics naming the answer when it has neither.
fn status(v: &Value) -> (u64, u64) {
    match (rc(v), v["equipment_status"].as_u64()) {
        (Some(r), Some(s)) => (r, s),
        _ => panic!("no Result-Code and Equipment-Status in {v}"),
    }
}

fn lock(d: &Daemon, imsi: &str) {
    d.api().put_sim(imsi, json!({"imei_management": "lock"}));
}

fn bound(d: &Daemon, imsi: &str) -> Value {
    d.api().sim(imsi)["bound_imei"].clone()
}

fn events(d: &Daemon, imsi: &str) -> Vec<String> {
    let (s, v) = d.api().get(&format!("/v1/sims/{imsi}/events?limit=50"));
    assert_eq!(s, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str().map(str::to_owned))
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The (code, vendor) path of the Failed-AVP of an answer: the outer AVP and, for a grouped
/// one, its first child.
fn failed_path(v: &Value) -> Vec<(u32, u32)> {
    let raw = unhex(
        v["failed_avp"]
            .as_str()
            .unwrap_or_else(|| panic!("no Failed-AVP: {v}")),
    );
    let avps = Decoder::default().decode_avps(&raw).unwrap();
    let outer = &avps[0];
    let mut path = vec![(outer.code, outer.vendor())];
    if outer.code == 1401 {
        if let Some(c) = outer.children().unwrap().first() {
            path.push((c.code, c.vendor()));
        }
    }
    path
}

#[test]
fn first_ecr_binds_other_svn_is_whitelisted_other_device_blacklisted() {
    let d = start();
    let imsi = "001010000001301";
    lock(&d, imsi);
    let r = client(
        &d,
        json!([
            cer(),
            ecr(Some(imsi), IMEI_A, "01"),
            ecr(Some(imsi), IMEI_A, "99"),
            ecr(Some(imsi), IMEI_B, "01"),
        ]),
    );
    assert_eq!(rc(&r[0]), Some(2001), "{}", r[0]);
    assert!(
        r[0]["apps"].as_array().unwrap().contains(&json!(APP_S13)),
        "CEA advertises S13: {}",
        r[0]
    );
    assert_eq!(status(&r[1]), (2001, WHITELISTED), "{r:#?}");
    assert_eq!(status(&r[2]), (2001, WHITELISTED), "{r:#?}");
    assert_eq!(status(&r[3]), (2001, BLACKLISTED), "{r:#?}");
    for a in &r[1..] {
        assert_eq!(a["application_id"], APP_S13);
        assert_eq!(a["command"], 324);
        assert_eq!(a["auth_session_state"], 1, "NO_STATE_MAINTAINED: {a}");
    }
    assert_eq!(bound(&d, imsi), &IMEI_A[..14]);
    let ev = events(&d, imsi);
    assert!(ev.iter().any(|e| e == "imei_mismatch"), "{ev:?}");
}

#[test]
fn pairing_moves_the_binding_then_the_lock_holds() {
    let d = start();
    let imsi = "001010000001302";
    lock(&d, imsi);
    let r = client(&d, json!([cer(), ecr(Some(imsi), IMEI_A, "01")]));
    assert_eq!(status(&r[1]), (2001, WHITELISTED));
    d.api().set_value(imsi, Some("pairing"));
    let r = client(&d, json!([cer(), ecr(Some(imsi), IMEI_C, "03")]));
    assert_eq!(status(&r[1]), (2001, WHITELISTED), "{r:#?}");
    assert_eq!(bound(&d, imsi), &IMEI_C[..14]);
    d.api().set_value(imsi, Some("lock"));
    let r = client(
        &d,
        json!([
            cer(),
            ecr(Some(imsi), IMEI_C, "03"),
            ecr(Some(imsi), IMEI_A, "01")
        ]),
    );
    assert_eq!(status(&r[1]), (2001, WHITELISTED), "{r:#?}");
    assert_eq!(status(&r[2]), (2001, BLACKLISTED), "{r:#?}");
}

#[test]
fn unknown_sim_and_missing_user_name_follow_the_policies() {
    // Defaults: an unknown SIM (a roamer) and an ECR without User-Name are WHITELISTED.
    let d = start();
    let r = client(
        &d,
        json!([
            cer(),
            ecr(Some("001019999999991"), IMEI_A, "01"),
            ecr(None, IMEI_A, "01")
        ]),
    );
    assert_eq!(status(&r[1]), (2001, WHITELISTED), "{r:#?}");
    assert_eq!(status(&r[2]), (2001, WHITELISTED), "{r:#?}");

    // "unknown": Experimental-Result 5422 (vendor 10415), no Result-Code, no Equipment-Status.
    let d = start_with("unknown_sim = \"unknown\"\nmissing_imsi = \"blacklisted\"\n");
    let r = client(
        &d,
        json!([
            cer(),
            ecr(Some("001019999999992"), IMEI_A, "01"),
            ecr(None, IMEI_A, "01")
        ]),
    );
    let u = &r[1];
    assert_eq!(rc(u), None, "{u}");
    assert_eq!(u["experimental_result_code"], 5422, "{u}");
    assert_eq!(u["experimental_vendor_id"], 10415, "{u}");
    assert!(u["equipment_status"].is_null(), "{u}");
    assert_eq!(u["auth_session_state"], 1, "{u}");
    assert_eq!(status(&r[2]), (2001, BLACKLISTED), "{r:#?}");
}

#[test]
fn malformed_terminal_information_and_user_name() {
    let d = start();
    let imsi = "001010000001303";
    lock(&d, imsi);
    let r = client(
        &d,
        json!([
            cer(),
            {"op": "ecr", "imsi": imsi, "terminal": false},
            {"op": "ecr", "imsi": imsi, "sv": "01"},
            ecr(Some(imsi), "1234", "01"),
            ecr(Some("not-an-imsi"), IMEI_A, "01"),
            // Non-digits: malformed, by policy (default GREYLISTED); the SIM stays unbound.
            ecr(Some(imsi), "35209900176148X", "01"),
            {"op": "ecr", "imsi": imsi, "meid": "a1000000000001"},
        ]),
    );
    assert_eq!(rc(&r[1]), Some(5005), "{}", r[1]);
    assert_eq!(failed_path(&r[1]), [(1401, 10415)]);
    assert_eq!(rc(&r[2]), Some(5005), "{}", r[2]);
    assert_eq!(failed_path(&r[2]), [(1401, 10415), (1402, 10415)]);
    assert_eq!(rc(&r[3]), Some(5004), "{}", r[3]);
    assert_eq!(failed_path(&r[3]), [(1401, 10415), (1402, 10415)]);
    assert_eq!(rc(&r[4]), Some(5004), "{}", r[4]);
    assert_eq!(failed_path(&r[4]), [(1, 0)]);
    for a in &r[1..5] {
        assert!(a["equipment_status"].is_null(), "{a}");
        assert_eq!(a["error"], false, "5xxx is no protocol error: {a}");
        assert!(a["error_message"].is_string(), "{a}");
    }
    assert_eq!(status(&r[5]), (2001, GREYLISTED), "{r:#?}");
    assert_eq!(status(&r[6]), (2001, GREYLISTED), "{r:#?}");
    assert_eq!(bound(&d, imsi), Value::Null);
}

#[test]
fn s13_disabled_is_not_advertised_and_ecr_gets_3007() {
    let d = Daemon::start(&peers());
    let r = client(
        &d,
        json!([{"op": "cer", "apps": [APP_GX, APP_S13]}, ecr(Some("001010000001304"), IMEI_A, "01")]),
    );
    assert_eq!(rc(&r[0]), Some(2001), "{}", r[0]);
    let apps = r[0]["apps"].as_array().unwrap();
    assert!(!apps.contains(&json!(APP_S13)), "{}", r[0]);
    assert_eq!(rc(&r[1]), Some(3007), "{}", r[1]);
    assert_eq!(r[1]["error"], true, "3007 is a protocol error: 'E' bit");
    // A peer offering only S13 has nothing in common with us.
    let r = client(
        &d,
        json!([{"op": "cer", "apps": [APP_S13], "close_wait": 3}]),
    );
    assert_eq!(rc(&r[0]), Some(5010), "{}", r[0]);
}

// ---------------------------------------------------------------------------------------------
// One lock, every interface

/// radclient Access-Request with `imeisv`: "Access-Accept" / "Access-Reject" / None.
fn radius(d: &Daemon, imsi: &str, imeisv: &str) -> Option<String> {
    common::radclient_access(d.ports.radius_auth, imsi, imeisv)
}

#[test]
fn one_lock_every_interface() {
    let d = start();
    // Locked through S13 (device A), refused on RADIUS and Gx in device B.
    let s13_sim = "001010000001305";
    lock(&d, s13_sim);
    let r = client(&d, json!([cer(), ecr(Some(s13_sim), IMEI_A, "01")]));
    assert_eq!(status(&r[1]), (2001, WHITELISTED));
    assert_eq!(bound(&d, s13_sim), &IMEI_A[..14]);
    let b_sv = format!("{}01", &IMEI_B[..14]);
    let a_sv = format!("{}07", &IMEI_A[..14]);
    assert_eq!(radius(&d, s13_sim, &b_sv).as_deref(), Some("Access-Reject"));
    assert_eq!(radius(&d, s13_sim, &a_sv).as_deref(), Some("Access-Accept"));
    let r = client(
        &d,
        json!([
            {"op": "cer", "apps": [APP_GX, APP_S13]},
            {"op": "ccr", "type": 1, "imsi": s13_sim, "imei": b_sv},
            {"op": "ccr", "type": 1, "imsi": s13_sim, "imei": a_sv},
        ]),
    );
    assert_eq!((rc(&r[1]), rc(&r[2])), (Some(5003), Some(2001)), "{r:#?}");

    // Bound on RADIUS (device A): BLACKLISTED on S13 in device B.
    let radius_sim = "001010000001306";
    lock(&d, radius_sim);
    assert_eq!(
        radius(&d, radius_sim, &a_sv).as_deref(),
        Some("Access-Accept")
    );
    let r = client(
        &d,
        json!([
            cer(),
            ecr(Some(radius_sim), IMEI_B, "01"),
            ecr(Some(radius_sim), IMEI_A, "02")
        ]),
    );
    assert_eq!(status(&r[1]), (2001, BLACKLISTED), "{r:#?}");
    assert_eq!(status(&r[2]), (2001, WHITELISTED), "{r:#?}");
}

// ---------------------------------------------------------------------------------------------
// freeDiameter as a relay: python MME → freeDiameterd → imei-lockd

/// Kills the relay when the test ends.
struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn s13_through_a_freediameter_relay() {
    let ext = PathBuf::from("/usr/lib/freeDiameter");
    assert!(
        Command::new("freeDiameterd")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
            && ext.join("acl_wl.fdx").is_file(),
        "freeDiameterd and its extensions not found: run scripts/setup.sh --test \
         (Debian freediameterd, freediameter-extensions)"
    );
    let d = start();
    let imsi = "001010000001307";
    lock(&d, imsi);

    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    // freeDiameter insists on TLS credentials even when every peer is No_TLS.
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", &format!("/CN={RELAY}"), "-keyout", &p("key.pem")])
        .args(["-out", &p("cert.pem")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl could not make the relay's certificate");
    std::fs::write(p("acl_wl.conf"), format!("ALLOW_IPSEC {MME}\n")).unwrap();
    let (port, sec_port) = (common::free_port(), common::free_port());
    // The S13 AVPs are in dict_dcca_3gpp (TS 29.272 is among its sources); a relay forwards
    // what it does not understand anyway.
    let conf = format!(
        r#"Identity = "{RELAY}";
Realm = "relaydomain";
Port = {port};
SecPort = {sec_port};
No_SCTP;
No_IPv6;
ListenOn = "127.0.0.1";
TLS_Cred = "{cert}", "{key}";
TLS_CA = "{cert}";
LoadExtension = "{ext}/dict_nasreq.fdx";
LoadExtension = "{ext}/dict_dcca.fdx";
LoadExtension = "{ext}/dict_dcca_3gpp.fdx";
LoadExtension = "{ext}/acl_wl.fdx" : "{acl}";
ConnectPeer = "aaa.localdomain" {{ ConnectTo = "127.0.0.1"; Port = {dport}; No_TLS; No_SCTP; }};
"#,
        cert = p("cert.pem"),
        key = p("key.pem"),
        ext = ext.display(),
        acl = p("acl_wl.conf"),
        dport = d.ports.diameter,
    );
    std::fs::write(p("fd.conf"), conf).unwrap();
    let log = std::fs::File::create(p("fd.log")).unwrap();
    let relay = Relay(
        Command::new("freeDiameterd")
            .args(["-c", &p("fd.conf")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    // The relay connects to us (CER from relay.localdomain) ...
    common::wait_metrics(&d, Duration::from_secs(10), |m| {
        m.lines()
            .any(|l| l.starts_with("imei_lockd_diameter_peers{state=\"open\"} 1"))
    });
    // ... and listens for the MME.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "relay not listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = common::pydiameter::finish(common::pydiameter::spawn_client(
        port,
        MME,
        json!([
            cer(),
            ecr(Some(imsi), IMEI_A, "01"),
            ecr(Some(imsi), IMEI_A, "42"),
            ecr(Some(imsi), IMEI_B, "01"),
            {"op": "ecr", "imsi": imsi, "terminal": false},
        ]),
    ));
    let fd_log = std::fs::read_to_string(p("fd.log")).unwrap_or_default();
    let got: Vec<(Option<u64>, Option<u64>)> = r[1..]
        .iter()
        .map(|v| (rc(v), v["equipment_status"].as_u64()))
        .collect();
    assert_eq!(
        got,
        [
            (Some(2001), Some(WHITELISTED)),
            (Some(2001), Some(WHITELISTED)),
            (Some(2001), Some(BLACKLISTED)),
            (Some(5005), None),
        ],
        "{r:#?}\nrelay log:\n{fd_log}"
    );
    assert_eq!(bound(&d, imsi), &IMEI_A[..14]);
    drop(relay);
}
