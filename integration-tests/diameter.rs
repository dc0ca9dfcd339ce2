//! diameter integration tests (against the real binary), with python-diameter as the Gx/S6b
//! client (`integration-tests/peers/diameter_client.py`), freeDiameter as a relay, and raw TCP
//! where a test needs exact bytes (malformed messages, duplicates, bursts).

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::diameter::Raw;
use common::Daemon;
use imei_lockd::diameter::codec::dict;
use imei_lockd::diameter::codec::{Avp, CommandFlags, Message, ResultCode, APP_GX};

/// Device A, B (IMEISV: TAC + SNR + SVN); the lock keeps TAC + SNR (14 digits).
const IMEI_A: &str = "3520990017614823";
const IMEI_A_NEW_SVN: &str = "3520990017614899";
const IMEI_B: &str = "3548580412345601";
const IMEI_C: &str = "4901542032375101";

/// The python client's Origin-Host (listed as a peer in the daemons of these tests).
const PCEF: &str = "pcef.localdomain";
/// The relay's Origin-Host.
const RELAY: &str = "relay.localdomain";

/// Extra config: the python client and the relay as peers.
fn peers_toml() -> String {
    format!(
        "[[diameter.peers]]\norigin_host = \"{PCEF}\"\n\
         [[diameter.peers]]\norigin_host = \"{RELAY}\"\naddress = \"127.0.0.1/32\"\n"
    )
}

fn start() -> Daemon {
    Daemon::start(&peers_toml())
}

fn tac_snr(imeisv: &str) -> &str {
    &imeisv[..14]
}

fn python() -> &'static str {
    common::pydiameter::python()
}

fn spawn_client(port: u16, origin_host: &str, steps: Value) -> Child {
    common::pydiameter::spawn_client(port, origin_host, steps)
}

fn finish(child: Child) -> Vec<Value> {
    common::pydiameter::finish(child)
}

/// Runs the python client against the daemon and returns one result per step.
fn client(d: &Daemon, origin_host: &str, steps: Value) -> Vec<Value> {
    common::pydiameter::client(d, origin_host, steps)
}

fn rc(v: &Value) -> u64 {
    v["result_code"]
        .as_u64()
        .unwrap_or_else(|| panic!("no Result-Code in {v}"))
}

fn lock_sim(d: &Daemon, imsi: &str) {
    d.api().put_sim(imsi, json!({"imei_management": "lock"}));
}

fn bound(d: &Daemon, imsi: &str) -> Value {
    d.api().sim(imsi)["bound_imei"].clone()
}

fn metrics(d: &Daemon) -> String {
    common::http()
        .get(format!("http://127.0.0.1:{}/metrics", d.ports.metrics))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default()
}

fn wait_metric(d: &Daemon, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if metrics(d).lines().any(|l| l.starts_with(needle)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("metric {needle} not seen:\n{}", metrics(d));
}

// ---------------------------------------------------------------------------------------------
// Base protocol

#[test]
fn cer_dwr_both_ways_and_dpr() {
    // Tw = 6 s (the minimum) so the daemon's own DWR comes within the test.
    let d = Daemon::start_with_env(&peers_toml(), &[("IMEI_LOCKD__DIAMETER__WATCHDOG_S", "6")]);
    let r = client(
        &d,
        PCEF,
        json!([
            {"op": "cer"},
            {"op": "dwr"},
            {"op": "wait_dwr", "timeout": 12},
            {"op": "dwr"},
            {"op": "dpr"},
        ]),
    );
    assert_eq!(rc(&r[0]), 2001, "{}", r[0]);
    assert_eq!(r[0]["peer_origin_host"], "aaa.localdomain");
    assert_eq!(r[0]["host_ip"], json!(["127.0.0.1"]));
    let apps: Vec<u64> = serde_json::from_value(r[0]["apps"].clone()).unwrap();
    assert!(
        apps.contains(&16_777_238) && apps.contains(&16_777_272),
        "{apps:?}"
    );
    assert_eq!(rc(&r[1]), 2001);
    assert_eq!(r[2]["got_dwr"], true, "the daemon sent no DWR within Tw");
    assert_eq!(rc(&r[3]), 2001, "the connection must stay up after our DWA");
    assert_eq!(rc(&r[4]), 2001, "DPA");
    assert_eq!(r[4]["closed"], true, "the daemon must close after DPA");
    let m = metrics(&d);
    assert!(m.contains("imei_lockd_diameter_answers_total"), "{m}");
}

#[test]
fn unknown_peer_gets_3010_and_no_common_application_5010() {
    let d = start();
    let r = client(
        &d,
        "stranger.example",
        json!([{"op": "cer", "close_wait": 3}]),
    );
    assert_eq!(rc(&r[0]), 3010, "{}", r[0]);
    assert_eq!(r[0]["error"], true, "3010 is a protocol error: 'E' bit");
    assert_eq!(r[0]["closed_after"], true);
    let r = client(
        &d,
        PCEF,
        json!([{"op": "cer", "apps": [4], "close_wait": 3}]),
    );
    assert_eq!(rc(&r[0]), 5010, "{}", r[0]);
    assert_eq!(r[0]["closed_after"], true);
    // A peer restricted to an address it does not connect from is unknown too.
    let d2 = Daemon::start(
        "[[diameter.peers]]\norigin_host = \"far.localdomain\"\naddress = \"192.0.2.0/24\"\n",
    );
    let r = client(
        &d2,
        "far.localdomain",
        json!([{"op": "cer", "close_wait": 3}]),
    );
    assert_eq!(rc(&r[0]), 3010, "{}", r[0]);
}

#[test]
fn shutdown_sends_dpr_to_open_peers() {
    let mut d = start();
    let c = spawn_client(
        d.ports.diameter,
        PCEF,
        json!([{"op": "cer"}, {"op": "wait_dpr", "timeout": 20}]),
    );
    wait_metric(&d, "imei_lockd_diameter_peers{state=\"open\"} 1");
    let t0 = Instant::now();
    assert_eq!(d.terminate(), Some(0), "{}", d.log_text());
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        t0.elapsed()
    );
    let r = finish(c);
    assert_eq!(rc(&r[0]), 2001);
    assert_eq!(r[1]["got_dpr"], true, "{}", r[1]);
    assert_eq!(r[1]["cause"], 0, "Disconnect-Cause REBOOTING");
    assert_eq!(r[1]["closed"], true);
}

// ---------------------------------------------------------------------------------------------
// Gx

#[test]
fn gx_lock_binds_rejects_mismatch_accepts_new_svn_and_tbcd() {
    let d = start();
    let imsi = "001010000000101";
    lock_sim(&d, imsi);
    let ccr = |ty: u64, imei: &str, fmt: &str| json!({"op": "ccr", "type": ty, "imsi": imsi, "imei": imei, "imei_format": fmt});
    let r = client(
        &d,
        PCEF,
        json!([
            {"op": "cer"},
            ccr(1, IMEI_A, "ascii"),
            ccr(1, IMEI_B, "ascii"),
            ccr(1, IMEI_A_NEW_SVN, "ascii"),
            ccr(1, IMEI_A, "tbcd"),
            ccr(1, IMEI_B, "tbcd"),
            ccr(2, IMEI_A, "ascii"),
            ccr(2, IMEI_B, "ascii"),
            ccr(3, IMEI_B, "ascii"),
        ]),
    );
    let codes: Vec<u64> = r[1..].iter().map(rc).collect();
    assert_eq!(
        codes,
        [2001, 5003, 2001, 2001, 5003, 2001, 5003, 2001],
        "{r:#?}"
    );
    assert_eq!(bound(&d, imsi), tac_snr(IMEI_A));
    // The CCA echoes Session-Id and names Gx.
    assert_eq!(r[1]["auth_application_id"], 16_777_238);
    assert_eq!(r[1]["application_id"], 16_777_238);
    assert!(r[2]["error_message"].is_string(), "{}", r[2]);
}

#[test]
fn gx_pairing_moves_the_binding() {
    let d = start();
    let imsi = "001010000000102";
    lock_sim(&d, imsi);
    let ccr = |imei: &str| json!({"op": "ccr", "type": 1, "imsi": imsi, "imei": imei});
    let r = client(&d, PCEF, json!([{"op": "cer"}, ccr(IMEI_A)]));
    assert_eq!(rc(&r[1]), 2001);
    d.api().set_value(imsi, Some("pairing"));
    let r = client(&d, PCEF, json!([{"op": "cer"}, ccr(IMEI_C)]));
    assert_eq!(rc(&r[1]), 2001);
    assert_eq!(bound(&d, imsi), tac_snr(IMEI_C));
    d.api().set_value(imsi, Some("lock"));
    let r = client(&d, PCEF, json!([{"op": "cer"}, ccr(IMEI_C), ccr(IMEI_A)]));
    assert_eq!((rc(&r[1]), rc(&r[2])), (2001, 5003), "{r:#?}");
}

#[test]
fn gx_missing_imei_is_rejected_and_unknown_sim_too() {
    let d = start();
    let imsi = "001010000000103";
    lock_sim(&d, imsi);
    let r = client(
        &d,
        PCEF,
        json!([
            {"op": "cer"},
            {"op": "ccr", "type": 1, "imsi": imsi},
            {"op": "ccr", "type": 1, "imsi": "001019999999999", "imei": IMEI_A},
        ]),
    );
    assert_eq!((rc(&r[1]), rc(&r[2])), (5003, 5003), "{r:#?}");
}

#[test]
fn many_pipelined_requests_on_one_connection_are_all_answered() {
    let d = start();
    let r = client(
        &d,
        PCEF,
        json!([
            {"op": "cer"},
            {"op": "pipeline", "count": 200, "imsi_base": "001020000000000", "imei": IMEI_A},
            {"op": "dwr"},
        ]),
    );
    let p = &r[1];
    assert_eq!(p["answered"], 200, "{p}");
    assert_eq!(p["all_matched"], true, "{p}");
    // Unknown SIMs under unknown_sim = reject.
    assert_eq!(p["codes"], json!({"5003": 200}), "{p}");
    assert_eq!(rc(&r[2]), 2001);
}

// ---------------------------------------------------------------------------------------------
// S6b

#[test]
fn s6b_aar_with_and_without_terminal_information_and_str() {
    let d = start();
    let imsi = "001010000000201";
    lock_sim(&d, imsi);
    let r = client(
        &d,
        PCEF,
        json!([
            {"op": "cer"},
            // No IMEI: S6b's missing_imei defaults to accept, nothing is bound.
            {"op": "aar", "imsi": imsi},
            // Terminal-Information IMEI (15 digits with check digit) + Software-Version.
            {"op": "aar", "imsi": imsi, "imei": "352099001761481", "sv": "23"},
            {"op": "aar", "imsi": imsi, "imei": "354858041234561", "sv": "01"},
            {"op": "aar", "imsi": imsi, "imei": "352099001761481", "sv": "99"},
            {"op": "str", "imsi": imsi, "session": "s6b;1"},
            {"op": "str", "session": "s6b;2"},
        ]),
    );
    let codes: Vec<u64> = r[1..].iter().map(rc).collect();
    assert_eq!(codes, [2001, 2001, 5003, 2001, 2001, 2001], "{r:#?}");
    assert_eq!(bound(&d, imsi), tac_snr(IMEI_A));
    assert_eq!(r[1]["application_id"], 16_777_272);
    assert_eq!(r[5]["session_id"], "s6b;1");
}

// ---------------------------------------------------------------------------------------------
// Raw TCP: malformed messages, duplicates, overload

fn ccr(imsi: &str, imei: Option<&str>) -> Message {
    common::diameter::ccr(&format!("raw;{imsi};1"), PCEF, 1, imsi, imei)
}

fn failed_avp_code(a: &Message) -> Option<u32> {
    let f = a.find(dict::FAILED_AVP, 0)?;
    Some(u32::from_be_bytes(f.data.get(..4)?.try_into().ok()?))
}

#[test]
fn malformed_messages_get_the_right_error_and_the_connection_survives() {
    let d = start();
    let imsi = "001010000000301";
    d.api()
        .put_sim(imsi, json!({"imei_management": "disabled"}));
    let mut c = Raw::connect(&d, PCEF);

    // Unknown AVP with the M bit → 5001, Failed-AVP names it.
    let mut m = ccr(imsi, Some(IMEI_A));
    m.push(Avp::new(99_999, 0, b"x".to_vec()).mandatory(true));
    let a = c.call(m);
    assert_eq!(a.result_code(), Some(ResultCode::AVP_UNSUPPORTED));
    assert_eq!(failed_avp_code(&a), Some(99_999));
    assert_eq!(
        a.header.application_id, APP_GX,
        "answered in the CCA format"
    );

    // Missing Session-Id → 5005 naming Session-Id.
    let mut m = ccr(imsi, Some(IMEI_A));
    m.avps.retain(|a| a.code != dict::SESSION_ID);
    let a = c.call(m);
    assert_eq!(a.result_code(), Some(ResultCode::MISSING_AVP));
    assert_eq!(failed_avp_code(&a), Some(dict::SESSION_ID));

    // Missing Subscription-Id → 5005 naming Subscription-Id.
    let mut m = ccr(imsi, Some(IMEI_A));
    m.avps.retain(|a| a.code != dict::SUBSCRIPTION_ID);
    let a = c.call(m);
    assert_eq!(a.result_code(), Some(ResultCode::MISSING_AVP));
    assert_eq!(failed_avp_code(&a), Some(dict::SUBSCRIPTION_ID));

    // An AVP length overrunning the message → 5014.
    let (_, mut b) = c.stamp(ccr(imsi, Some(IMEI_A)));
    let last = b.len() - 16; // Called-Station-Id "iot.apn": 8 header + 7 data + 1 pad
    assert_eq!(&b[last..last + 4], &30u32.to_be_bytes());
    b[last + 7] = 200;
    let a = c.call_bytes(&b);
    assert_eq!(a.result_code(), Some(ResultCode::INVALID_AVP_LENGTH));

    // A reserved command-flag bit → 3008 with the 'E' bit.
    let (_, mut b) = c.stamp(ccr(imsi, Some(IMEI_A)));
    b[4] |= 0x01;
    let a = c.call_bytes(&b);
    assert_eq!(a.result_code(), Some(ResultCode::INVALID_HDR_BITS));
    assert!(a.header.flags.is_error());

    // Unknown command in Gx → 3001; unknown application → 3007.
    let mut m = ccr(imsi, Some(IMEI_A));
    m.header.code = 999;
    assert_eq!(
        c.call(m).result_code(),
        Some(ResultCode::COMMAND_UNSUPPORTED)
    );
    let mut m = ccr(imsi, Some(IMEI_A));
    m.header.application_id = 4;
    assert_eq!(
        c.call(m).result_code(),
        Some(ResultCode::APPLICATION_UNSUPPORTED)
    );

    // The connection is still usable.
    let a = c.call(ccr(imsi, Some(IMEI_A)));
    assert_eq!(a.result_code(), Some(ResultCode::SUCCESS));
    let dwr = Message::request(280, 0, false)
        .with(Avp::utf8(dict::ORIGIN_HOST, 0, PCEF))
        .with(Avp::utf8(dict::ORIGIN_REALM, 0, "localdomain"));
    assert_eq!(c.call(dwr).result_code(), Some(ResultCode::SUCCESS));
}

#[test]
fn duplicates_get_the_first_answer_and_are_not_reevaluated() {
    let d = start();
    let imsi = "001010000000401";
    lock_sim(&d, imsi);
    let mut c = Raw::connect(&d, PCEF);
    let (hbh, b) = c.stamp(ccr(imsi, Some(IMEI_A)));
    let first = c.call_bytes(&b);
    assert_eq!(first.result_code(), Some(ResultCode::SUCCESS));
    // Same (Origin-Host, End-to-End) with 'T' and a new Hop-by-Hop, even with another IMEI:
    // the first answer comes back, the request is not judged again.
    let mut m = ccr(imsi, Some(IMEI_B));
    m.header.flags = m.header.flags.with(CommandFlags::RETRANSMIT, true);
    m.header.hop_by_hop = hbh + 1000;
    m.header.end_to_end = hbh;
    let a = c.call_bytes(&m.encode().unwrap());
    assert_eq!(a.result_code(), Some(ResultCode::SUCCESS));
    assert_eq!(a.header.hop_by_hop, hbh + 1000);
    // ... and also on another connection (failover).
    let mut c2 = Raw::connect(&d, PCEF);
    m.header.hop_by_hop = 5;
    let a = c2.call_bytes(&m.encode().unwrap());
    assert_eq!(a.result_code(), Some(ResultCode::SUCCESS));
    // A new End-to-End id is judged: mismatch.
    let a = c2.call(ccr(imsi, Some(IMEI_B)));
    assert_eq!(a.result_code(), Some(ResultCode::AUTHORIZATION_REJECTED));
    assert_eq!(bound(&d, imsi), tac_snr(IMEI_A));
}

#[test]
fn a_burst_beyond_the_in_flight_cap_is_answered_in_full() {
    let d = start();
    let mut c = Raw::connect(&d, PCEF);
    let n = 1500u32;
    let msgs = (0..n).map(|i| ccr(&format!("00103{:010}", i), Some(IMEI_A)));
    let mut codes = std::collections::BTreeMap::new();
    for (_, a) in c.pipeline(msgs.collect()) {
        *codes.entry(a.result_code().map(|r| r.0)).or_insert(0) += 1;
    }
    println!("burst answers by Result-Code: {codes:?}");
    // Unknown SIMs → 5003; beyond 256 in flight → 3004 DIAMETER_TOO_BUSY.
    assert!(
        codes.keys().all(|k| matches!(k, Some(5003 | 3004))),
        "{codes:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// SCTP

#[test]
fn sctp_listener() {
    let sctp = imei_lockd::diameter::server::listen::sctp_supported();
    let dir = tempfile::tempdir().unwrap();
    let ports = common::Ports::new();
    let config = dir.path().join("imei-lockd.toml");
    std::fs::write(&config, common::config_text(dir.path(), &ports, "")).unwrap();
    let listen = format!("sctp://127.0.0.1:{}", ports.diameter);
    if !sctp {
        // Startup must fail, saying why.
        let out = Command::new(common::bin("imei-lockd"))
            .arg("--config")
            .arg(&config)
            .env("IMEI_LOCKD__DIAMETER__LISTEN", &listen)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains("the kernel has no SCTP support") && text.contains(&listen),
            "{text}"
        );
        println!("skipping: kernel has no SCTP (startup with {listen} fails as it should)");
        return;
    }
    // This kernel has SCTP: serve Gx over it.
    let d = Daemon::start_with_env(&peers_toml(), &[("IMEI_LOCKD__DIAMETER__LISTEN", &listen)]);
    let imsi = "001010000000501";
    lock_sim(&d, imsi);
    let input = json!({
        "host": "127.0.0.1", "port": ports.diameter, "origin_host": PCEF,
        "origin_realm": "localdomain", "transport": "sctp",
        "steps": [
            {"op": "cer"},
            {"op": "ccr", "type": 1, "imsi": imsi, "imei": IMEI_A},
            {"op": "ccr", "type": 1, "imsi": imsi, "imei": IMEI_B},
            {"op": "dpr"},
        ],
    });
    let out = common::stdout_of(
        Command::new(python())
            .arg(common::pydiameter::client_script())
            .arg(input.to_string()),
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    let r = v["results"].as_array().unwrap();
    let codes: Vec<u64> = r[..4].iter().map(rc).collect();
    assert_eq!(codes, [2001, 2001, 5003, 2001], "{r:#?}");
}

// ---------------------------------------------------------------------------------------------
// freeDiameter as a relay: python client → freeDiameterd → imei-lockd

/// Kills the relay when the test ends.
struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn gx_through_a_freediameter_relay() {
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
    let imsi = "001010000000601";
    lock_sim(&d, imsi);

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
    // The python client connects in over plain TCP: acl_wl must allow it without TLS.
    std::fs::write(p("acl_wl.conf"), format!("ALLOW_IPSEC {PCEF}\n")).unwrap();
    let (port, sec_port) = (common::free_port(), common::free_port());
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
    wait_metric(&d, "imei_lockd_diameter_peers{state=\"open\"} 1");
    // ... and listens for the client.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "relay not listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = finish(spawn_client(
        port,
        PCEF,
        json!([
            {"op": "cer"},
            {"op": "ccr", "type": 1, "imsi": imsi, "imei": IMEI_A},
            {"op": "ccr", "type": 1, "imsi": imsi, "imei": IMEI_B},
            {"op": "ccr", "type": 3, "imsi": imsi, "imei": IMEI_A},
        ]),
    ));
    let fd_log = std::fs::read_to_string(p("fd.log")).unwrap_or_default();
    let codes: Vec<Option<u64>> = r.iter().map(|v| v["result_code"].as_u64()).collect();
    assert_eq!(
        codes,
        [Some(2001), Some(2001), Some(5003), Some(2001)],
        "{r:#?}\nrelay log:\n{fd_log}"
    );
    assert_eq!(bound(&d, imsi), tac_snr(IMEI_A));
    assert!(
        d.log_text().contains(RELAY),
        "the relay's connection was not logged"
    );
    drop(relay);
}
