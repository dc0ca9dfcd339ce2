//! N5g-eir (TS 29.511 equipment-status) against the real daemon, with real HTTP/2 clients:
//! `curl --http2-prior-knowledge` (h2c), `nghttp` (Debian's nghttp2-client), `curl --http2`
//! over TLS, `curl --http1.1`, and FreeRADIUS's `radclient` for the one-lock-every-interface
//! checks. Every answer is checked for its status code, content type and body.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::webhook::TestPki;
use common::{counter, free_port, wait_metrics, Daemon, TOKEN};
use serde_json::{json, Value};

const PATH: &str = "/n5g-eir-eic/v1/equipment-status";
/// Devices as IMEISV (TAC + SNR + SVN).
const DEV_A: &str = "3520990017614823";
const DEV_A_OTHER_SVN: &str = "3520990017614899";
const DEV_B: &str = "3548580412345601";
const DEV_C: &str = "4901542032375101";
const N5G_TOKEN: &str = "n5g-test-token-0123456789abcdef";

/// The 15-digit IMEI (TAC + SNR + Luhn digit) of an IMEISV.
fn imei15(imeisv: &str) -> String {
    let body = &imeisv[..14];
    let mut sum = 0;
    for (i, c) in body.bytes().rev().enumerate() {
        let mut v = u32::from(c - b'0');
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// A daemon serving N5g-eir on a free port (idle connections cut after 2 s), `more` appended.
fn start(more: &str) -> (Daemon, u16) {
    let port = free_port();
    let d = Daemon::start(&format!(
        "[eir.n5g]\nlisten = \"127.0.0.1:{port}\"\nidle_timeout_s = 2\n{more}"
    ));
    (d, port)
}

fn url(port: u16, query: &str) -> String {
    format!("http://127.0.0.1:{port}{PATH}?{query}")
}

fn q(pei: &str, imsi: Option<&str>) -> String {
    match imsi {
        Some(i) => format!("pei={pei}&supi=imsi-{i}"),
        None => format!("pei={pei}"),
    }
}

/// An answer: status, content type, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
    /// The HTTP version curl used ("2", "1.1").
    version: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    #[track_caller]
    fn status_is(&self, status: &str) {
        assert_eq!(self.status, 200, "{self:?}");
        assert_eq!(self.content_type, "application/json", "{self:?}");
        assert_eq!(self.json(), json!({ "status": status }), "{self:?}");
    }

    #[track_caller]
    fn problem(&self, status: u16, cause: &str) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.content_type, "application/problem+json", "{self:?}");
        let v = self.json();
        assert_eq!(v["status"], status, "{self:?}");
        assert_eq!(v["cause"], cause, "{self:?}");
        v
    }
}

/// `curl -s` with `args` (the URL among them).
fn curl(args: &[&str]) -> Answer {
    let out = Command::new("curl")
        .args([
            "-s",
            "-m",
            "10",
            "-w",
            "\n%{http_code} %{http_version} %{content_type}",
        ])
        .args(args)
        .output()
        .expect("curl (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut parts = tail.splitn(3, ' ');
    Answer {
        status: parts.next().unwrap_or("0").parse().unwrap_or(0),
        version: parts.next().unwrap_or("").to_owned(),
        content_type: parts.next().unwrap_or("").trim().to_owned(),
        body: body.to_owned(),
    }
}

/// `curl --http2-prior-knowledge` (h2c, as open5gs and free5GC call NFs).
fn h2c(port: u16, query: &str) -> Answer {
    let a = curl(&["--http2-prior-knowledge", &url(port, query)]);
    assert_eq!(a.version, "2", "{a:?}");
    a
}

/// `nghttp` (HTTP/2 with prior knowledge for http URLs): `-v` for the head, a second run for
/// the body alone.
fn nghttp(url: &str, headers: &[&str]) -> Answer {
    let run = |verbose: bool| {
        let mut c = Command::new("nghttp");
        if verbose {
            c.arg("-v");
        }
        for h in headers {
            c.args(["-H", h]);
        }
        let out = c
            .args(["-t", "10", url])
            .stderr(Stdio::null())
            .output()
            .expect("nghttp (Debian's nghttp2-client; scripts/setup.sh --test installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let head = run(true);
    let field = |name: &str| {
        head.lines()
            .find_map(|l| l.split_once(&format!(") {name}: ")).map(|(_, v)| v.trim()))
            .unwrap_or("")
            .to_owned()
    };
    Answer {
        status: field(":status").parse().unwrap_or(0),
        content_type: field("content-type"),
        body: run(false),
        version: "2".to_owned(),
    }
}

fn bound(d: &Daemon, imsi: &str) -> Option<String> {
    d.api().sim(imsi)["bound_imei"].as_str().map(str::to_owned)
}

fn lock_sim(d: &Daemon, imsi: &str) {
    d.api().put_sim(imsi, json!({"imei_management": "lock"}));
}

/// radclient Access-Request for `imsi` in device `imeisv`: "Access-Accept" / "Access-Reject".
fn radius(d: &Daemon, imsi: &str, imeisv: &str) -> String {
    common::radclient_access(d.ports.radius_auth, imsi, imeisv).unwrap_or_else(|| "no reply".into())
}

#[test]
fn the_lock_over_n5g_with_curl_and_nghttp() {
    let (d, port) = start("");
    let imsi = "001010000005001";
    lock_sim(&d, imsi);
    assert_eq!(bound(&d, imsi), None);

    // First check binds (first wins), answered WHITELISTED.
    h2c(port, &q(&format!("imei-{}", imei15(DEV_A)), Some(imsi))).status_is("WHITELISTED");
    assert_eq!(bound(&d, imsi).as_deref(), Some(&DEV_A[..14]));
    // The same device with another software version, over nghttp.
    let a = nghttp(
        &url(port, &q(&format!("imeisv-{DEV_A_OTHER_SVN}"), Some(imsi))),
        &[],
    );
    a.status_is("WHITELISTED");
    // Another device: BLACKLISTED, and an imei_mismatch event of interface n5g_eir.
    h2c(
        port,
        &format!(
            "pei=imei-{}&supi=imsi-{imsi}&gpsi=msisdn-4915112345678",
            imei15(DEV_B)
        ),
    )
    .status_is("BLACKLISTED");
    nghttp(&url(port, &q(&format!("imeisv-{DEV_B}"), Some(imsi))), &[]).status_is("BLACKLISTED");
    let (s, events) = d.api().get(&format!("/v1/sims/{imsi}/events"));
    assert_eq!(s, 200, "{events}");
    let mismatch = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "imei_mismatch")
        .unwrap_or_else(|| panic!("no imei_mismatch event: {events}"));
    assert_eq!(mismatch["interface"], "n5g_eir", "{mismatch}");
    assert_eq!(mismatch["imei"], &DEV_B[..14], "{mismatch}");
    assert_eq!(mismatch["bound_imei"], &DEV_A[..14], "{mismatch}");

    // Pairing: the next device checked is bound.
    d.api().set_value(imsi, Some("pairing"));
    nghttp(&url(port, &q(&format!("imeisv-{DEV_C}"), Some(imsi))), &[]).status_is("WHITELISTED");
    assert_eq!(bound(&d, imsi).as_deref(), Some(&DEV_C[..14]));
    d.api().set_value(imsi, Some("lock"));
    h2c(port, &q(&format!("imei-{}", imei15(DEV_C)), Some(imsi))).status_is("WHITELISTED");
    h2c(port, &q(&format!("imei-{}", imei15(DEV_A)), Some(imsi))).status_is("BLACKLISTED");

    // Disabled: any device.
    d.api().set_value(imsi, Some("disabled"));
    h2c(port, &q(&format!("imei-{}", imei15(DEV_B)), Some(imsi))).status_is("WHITELISTED");

    // Default policies: an unknown SIM, a check without supi or with a non-IMSI SUPI, and an
    // IMEI with a wrong check digit (greylisted).
    h2c(
        port,
        &q(&format!("imei-{}", imei15(DEV_A)), Some("001019999999999")),
    )
    .status_is("WHITELISTED");
    h2c(port, &q(&format!("imei-{}", imei15(DEV_A)), None)).status_is("WHITELISTED");
    h2c(
        port,
        &format!("pei=imei-{}&supi=nai-user%40example.com", imei15(DEV_A)),
    )
    .status_is("WHITELISTED");
    let mut bad_luhn = imei15(DEV_A);
    let last = bad_luhn.pop().unwrap();
    bad_luhn.push(if last == '9' { '0' } else { '9' });
    lock_sim(&d, imsi);
    h2c(port, &q(&format!("imei-{bad_luhn}"), Some(imsi))).status_is("GREYLISTED");

    let m = wait_metrics(&d, Duration::from_secs(5), |m| {
        counter(m, "imei_lockd_n5g_requests_total", &["code=\"200\""]) >= 13.0
    });
    assert!(
        counter(
            &m,
            "imei_lockd_eir_answers_total",
            &[
                "interface=\"n5g_eir\"",
                "status=\"blacklisted\"",
                "cause=\"lock\""
            ]
        ) >= 3.0,
        "{m}"
    );
}

#[test]
fn policies_unknown_sim_and_missing_imsi() {
    let (d, port) = start("[eir]\nunknown_sim = \"unknown\"\nmissing_imsi = \"greylisted\"\n");
    let pei = format!("imei-{}", imei15(DEV_A));
    let v = h2c(port, &q(&pei, Some("001019999999999"))).problem(404, "ERROR_EQUIPMENT_UNKNOWN");
    assert!(v["detail"].is_string(), "{v}");
    let a = nghttp(&url(port, &q(&pei, Some("001019999999998"))), &[]);
    a.problem(404, "ERROR_EQUIPMENT_UNKNOWN");
    h2c(port, &q(&pei, None)).status_is("GREYLISTED");
    h2c(port, &format!("pei={pei}&supi=gci-anything")).status_is("GREYLISTED");
    // A managed SIM is judged by the lock all the same.
    lock_sim(&d, "001010000005002");
    h2c(port, &q(&pei, Some("001010000005002"))).status_is("WHITELISTED");
}

#[test]
fn bad_requests_are_problem_details_naming_the_parameter() {
    let (_d, port) = start("");
    let pei = format!("imei-{}", imei15(DEV_A));
    for (query, param, cause) in [
        (
            "supi=imsi-001010000000001".to_owned(),
            "pei",
            "MANDATORY_IE_MISSING",
        ),
        (String::new(), "pei", "MANDATORY_IE_MISSING"),
        (
            "pei=imei-35209900176148".to_owned(),
            "pei",
            "MANDATORY_IE_INCORRECT",
        ),
        (
            "pei=352099001761482".to_owned(),
            "pei",
            "MANDATORY_IE_INCORRECT",
        ),
        (
            format!("pei={pei}&supi=imsi-12"),
            "supi",
            "OPTIONAL_IE_INCORRECT",
        ),
        (
            format!("pei={pei}&gpsi=msisdn-12a"),
            "gpsi",
            "OPTIONAL_IE_INCORRECT",
        ),
        ("pei=imei-%ZZ".to_owned(), "pei", "INVALID_QUERY_PARAM"),
        (
            format!("pei={pei}&supi=imsi-%E0%80"),
            "supi",
            "INVALID_QUERY_PARAM",
        ),
    ] {
        let v = h2c(port, &query).problem(400, cause);
        assert_eq!(v["invalidParams"][0]["param"], param, "{query}: {v}");
        assert!(v["invalidParams"][0]["reason"].is_string(), "{query}: {v}");
    }
    // nghttp too.
    let v =
        nghttp(&url(port, "supi=imsi-001010000000001"), &[]).problem(400, "MANDATORY_IE_MISSING");
    assert_eq!(v["invalidParams"][0]["param"], "pei", "{v}");

    // Another path, another method.
    let a = curl(&[
        "--http2-prior-knowledge",
        &format!("http://127.0.0.1:{port}/nope"),
    ]);
    a.problem(404, "RESOURCE_URI_STRUCTURE_NOT_FOUND");
    let a = curl(&[
        "--http2-prior-knowledge",
        "-X",
        "POST",
        &url(port, &format!("pei={pei}")),
    ]);
    a.problem(405, "METHOD_NOT_ALLOWED");

    // A huge query: 414 up to the 16 KiB head limit, 431 from the HTTP layer beyond.
    let junk = "x".repeat(5000);
    h2c(port, &format!("pei={pei}&junk={junk}")).problem(414, "INVALID_QUERY_PARAM");
    let junk = "x".repeat(40_000);
    let a = curl(&[
        "--http2-prior-knowledge",
        &url(port, &format!("pei={pei}&j={junk}")),
    ]);
    assert!(matches!(a.status, 414 | 431), "{a:?}");
    let a = curl(&["--http1.1", &url(port, &format!("pei={pei}&j={junk}"))]);
    assert!(matches!(a.status, 414 | 431), "{a:?}");

    // HTTP/1.1 is served the same way.
    let a = curl(&["--http1.1", &url(port, &q(&pei, None))]);
    assert_eq!(a.version, "1.1", "{a:?}");
    a.status_is("WHITELISTED");
    let a = curl(&["--http1.1", &url(port, "pei=foo")]);
    assert_eq!(a.version, "1.1", "{a:?}");
    a.problem(400, "MANDATORY_IE_INCORRECT");
}

#[test]
fn slow_and_silent_clients_are_cut_and_others_answered() {
    let (d, port) = start("");
    let pei = format!("imei-{}", imei15(DEV_A));
    let started = Instant::now();
    // Silent: connects and sends nothing.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Dribbling: an HTTP/1.1 request head, one byte at a time, never complete.
    let mut dribble = TcpStream::connect(("127.0.0.1", port)).unwrap();
    dribble
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // A half-sent HTTP/2 preface.
    let mut half = TcpStream::connect(("127.0.0.1", port)).unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    half.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let head = b"GET /n5g-eir-eic/v1/equipment-status?pei=imei-1 HTTP/1.1\r\nHost: x\r\n";
    let mut cut = false;
    for &b in head.iter().cycle().take(60) {
        if dribble.write_all(&[b]).is_err() {
            cut = true;
            break;
        }
        // Others are answered meanwhile.
        h2c(port, &q(&pei, None)).status_is("WHITELISTED");
        let mut buf = [0u8; 64];
        match dribble.read(&mut buf) {
            Ok(0) => {
                cut = true;
                break;
            }
            Ok(_) => panic!("the dribbling client got an answer"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "the dribbling client was not cut");
    for (name, s) in [("silent", &mut silent), ("half preface", &mut half)] {
        let mut buf = [0u8; 64];
        let r = s.read(&mut buf);
        assert!(
            matches!(r, Ok(0) | Err(_)) && started.elapsed() < Duration::from_secs(9),
            "{name}: {r:?} after {:?}",
            started.elapsed()
        );
    }
    h2c(port, &q(&pei, None)).status_is("WHITELISTED");
    let m = wait_metrics(&d, Duration::from_secs(5), |m| {
        counter(
            m,
            "imei_lockd_n5g_errors_total",
            &["reason=\"idle_timeout\""],
        ) >= 3.0
    });
    assert!(
        counter(
            &m,
            "imei_lockd_n5g_errors_total",
            &["reason=\"idle_timeout\""]
        ) >= 3.0,
        "{m}"
    );
}

#[test]
fn token_and_tls() {
    let pki = TestPki::generate();
    let (d, port) = start(&format!(
        "token = \"{N5G_TOKEN}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        pki.cert_pem.display(),
        pki.key_pem.display()
    ));
    let pei = format!("imei-{}", imei15(DEV_A));
    let https = format!(
        "https://localhost:{port}{PATH}?{}",
        q(&pei, Some("001010000005003"))
    );
    let ca = pki.ca_pem.to_str().unwrap();
    // No token, a wrong one: 401 with WWW-Authenticate: Bearer.
    let a = curl(&["--http2", "--cacert", ca, &https]);
    assert_eq!(a.version, "2", "ALPN h2: {a:?}");
    a.problem(401, "UNAUTHORIZED");
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--http2",
            "--cacert",
            ca,
        ])
        .args(["-H", "Authorization: Bearer wrong", &https])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        head.contains(" 401") && head.contains("www-authenticate: bearer"),
        "{head}"
    );
    // With the token.
    let auth = format!("Authorization: Bearer {N5G_TOKEN}");
    let a = curl(&["--http2", "--cacert", ca, "-H", &auth, &https]);
    assert_eq!(a.version, "2", "{a:?}");
    a.status_is("WHITELISTED");
    // HTTP/1.1 over TLS (ALPN http/1.1).
    let a = curl(&["--http1.1", "--cacert", ca, "-H", &auth, &https]);
    assert_eq!(a.version, "1.1", "{a:?}");
    a.status_is("WHITELISTED");
    // nghttp over TLS (ALPN h2).
    nghttp(&https, &[&auth]).status_is("WHITELISTED");
    nghttp(&https, &[]).problem(401, "UNAUTHORIZED");
    // Cleartext on the TLS port is no HTTP/2 session.
    let a = curl(&[
        "--http2-prior-knowledge",
        "-H",
        &auth,
        &url(port, &q(&pei, None)),
    ]);
    assert_eq!(a.status, 0, "{a:?}");
    let m = wait_metrics(&d, Duration::from_secs(5), |m| {
        counter(m, "imei_lockd_n5g_requests_total", &["code=\"401\""]) >= 3.0
    });
    assert!(
        counter(&m, "imei_lockd_n5g_requests_total", &["code=\"401\""]) >= 3.0,
        "{m}"
    );
    let _ = TOKEN;
}

#[test]
fn one_lock_every_interface() {
    let (d, port) = start("");
    // Bound through N5g-eir: another device is rejected on RADIUS.
    let n5g_first = "001010000005010";
    lock_sim(&d, n5g_first);
    h2c(
        port,
        &q(&format!("imei-{}", imei15(DEV_A)), Some(n5g_first)),
    )
    .status_is("WHITELISTED");
    assert_eq!(radius(&d, n5g_first, DEV_B), "Access-Reject");
    assert_eq!(radius(&d, n5g_first, DEV_A_OTHER_SVN), "Access-Accept");
    // Bound on RADIUS: another device is BLACKLISTED on N5g-eir.
    let radius_first = "001010000005011";
    lock_sim(&d, radius_first);
    assert_eq!(radius(&d, radius_first, DEV_A), "Access-Accept");
    assert_eq!(bound(&d, radius_first).as_deref(), Some(&DEV_A[..14]));
    h2c(
        port,
        &q(&format!("imei-{}", imei15(DEV_B)), Some(radius_first)),
    )
    .status_is("BLACKLISTED");
    nghttp(
        &url(port, &q(&format!("imeisv-{DEV_A}"), Some(radius_first))),
        &[],
    )
    .status_is("WHITELISTED");
}
