//! Day-two operations end to end (issue 19), against the real release binaries:
//! - alert webhooks (SPEC §1.6, docs/reference/webhooks.md): the daemon posts `imei_mismatch`
//!   alerts to real local receivers: HTTPS with a test CA made at test time and a signature,
//!   the same `id` on a retry, and dead receivers (closed port, blackhole) that cost a healthy
//!   webhook nothing and open their own circuits;
//! - the billing CSV, streamed page by page, byte for byte what the `format!`-built export was;
//! - imei-lockctl's tables for billing and events.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use common::radius::{access_request, authenticator, exchange, udp, SECRET};
use common::webhook::{Receiver, TestPki};
use common::{counter, metrics_text, wait_metrics, Daemon};

const IMEI_A: &str = "3520990017614823";
const IMEI_B: &str = "3548580412345601";

/// Binds `imsi` to IMEI_A, then presents IMEI_B: one `imei_mismatch` (RADIUS answers
/// Access-Accept then Access-Reject).
fn mismatch(d: &Daemon, imsi: &str, seed: u8) {
    let s = udp("127.0.0.1:0", Duration::from_secs(5));
    for (i, imei) in [IMEI_A, IMEI_B].into_iter().enumerate() {
        let id = seed.wrapping_mul(2).wrapping_add(i as u8);
        let pkt = access_request(id, authenticator(id), imsi, Some(imei), SECRET, true);
        let answer = exchange(&s, d.ports.radius_auth, &pkt).expect("RADIUS answer");
        let want = if i == 0 { 2 } else { 3 }; // Access-Accept, Access-Reject
        assert_eq!(answer.first(), Some(&want), "{imsi} with {imei}");
    }
}

fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn https_alert_is_signed_and_keeps_its_id_across_a_retry() {
    let pki = TestPki::generate();
    // The first POST is answered 500: the retry must carry the same id and bytes.
    let hook = Receiver::start_tls(&pki, 1);
    let d = Daemon::start(&format!(
        "[[alerts.webhooks]]\nurl = \"https://localhost:{}/alerts\"\nevents = [\"imei_mismatch\"]\n\
         min_interval_s = 300\nname = \"noc\"\nsecret = \"s3cr3t\"\nca_file = \"{}\"\n",
        hook.port,
        pki.ca_pem.display()
    ));
    let imsi = "001010000000501";
    d.api().import_locked([imsi.to_string()]);
    mismatch(&d, imsi, 1);
    assert_eq!(
        hook.wait_for(2, Duration::from_secs(15)),
        2,
        "a retry after the 500"
    );
    let posts = hook.requests.lock().clone();
    let (first, second) = (&posts[0], &posts[1]);
    let body = first.json();
    assert_eq!(body["event"], "imei_mismatch");
    assert_eq!(body["imsi"], imsi);
    let id = body["id"].as_str().expect("an id").to_string();
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(second.json()["id"], id.as_str(), "same id on the retry");
    assert_eq!(first.body, second.body, "same bytes on the retry");
    assert_eq!(first.header("x-alert-id"), Some(id.as_str()));
    for p in [first, second] {
        let sig = p.header("x-signature-256").expect("signed");
        assert_eq!(sig, format!("sha256={}", hmac_hex(b"s3cr3t", &p.body)));
        assert_ne!(sig, format!("sha256={}", hmac_hex(b"other", &p.body)));
    }
    let m = wait_metrics(&d, Duration::from_secs(5), |m| {
        counter(
            m,
            "imei_lockd_alert_deliveries_total",
            &["webhook=\"noc\"", "outcome=\"delivered\""],
        ) == 1.0
    });
    assert_eq!(
        counter(
            &m,
            "imei_lockd_alert_deliveries_total",
            &["webhook=\"noc\"", "outcome=\"http_error\""]
        ),
        1.0
    );
    assert_eq!(
        counter(&m, "imei_lockd_alert_circuit_state", &["webhook=\"noc\""]),
        0.0
    );
}

#[test]
fn https_webhook_with_an_unknown_ca_is_refused_and_counted() {
    // No ca_file: the test CA is not among the system roots, so TLS fails (connect_error), and
    // nothing reaches the receiver.
    let pki = TestPki::generate();
    let hook = Receiver::start_tls(&pki, 0);
    let d = Daemon::start(&format!(
        "[[alerts.webhooks]]\nurl = \"https://localhost:{}/alerts\"\nname = \"untrusted\"\n",
        hook.port
    ));
    let imsi = "001010000000502";
    d.api().import_locked([imsi.to_string()]);
    mismatch(&d, imsi, 3);
    let m = wait_metrics(&d, Duration::from_secs(10), |m| {
        counter(
            m,
            "imei_lockd_alert_deliveries_total",
            &["webhook=\"untrusted\"", "outcome=\"connect_error\""],
        ) >= 1.0
    });
    assert!(
        counter(
            &m,
            "imei_lockd_alert_deliveries_total",
            &["webhook=\"untrusted\"", "outcome=\"connect_error\""]
        ) >= 1.0,
        "{m}"
    );
    assert_eq!(hook.count(), 0);
}

#[test]
fn dead_receivers_do_not_delay_a_healthy_webhook_and_open_their_circuit() {
    let healthy = Receiver::start();
    // A blackhole: the kernel accepts the connection, nobody ever answers.
    let blackhole = TcpListener::bind("127.0.0.1:0").unwrap();
    // A closed port: bound, then freed.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = Daemon::start(&format!(
        "[[alerts.webhooks]]\nurl = \"http://127.0.0.1:{}/alerts\"\nname = \"blackhole\"\n\
         timeout_ms = 4000\ncircuit_failures = 2\ncircuit_cooldown_s = 60\n\
         [[alerts.webhooks]]\nurl = \"http://127.0.0.1:{closed}/alerts\"\nname = \"closed\"\n\
         circuit_failures = 2\ncircuit_cooldown_s = 60\n\
         [[alerts.webhooks]]\nurl = \"http://127.0.0.1:{}/alerts\"\nname = \"healthy\"\n",
        blackhole.local_addr().unwrap().port(),
        healthy.port
    ));
    let imsis: Vec<String> = (0..8).map(|i| format!("0010100000006{i:02}")).collect();
    d.api().import_locked(imsis.clone());
    // Eight alerts, one per SIM. The old one-at-a-time delivery spent 5 s per alert on the
    // blackhole before the healthy webhook's turn.
    let start = Instant::now();
    for (i, imsi) in imsis.iter().enumerate() {
        mismatch(&d, imsi, 10 + i as u8);
    }
    assert_eq!(
        healthy.wait_for(8, Duration::from_secs(4)),
        8,
        "all alerts reach the healthy webhook"
    );
    let took = start.elapsed();
    assert!(took < Duration::from_secs(4), "{took:?}");
    for imsi in &imsis {
        assert!(
            healthy.wait_body(Duration::ZERO, |v| v["imsi"] == imsi.as_str()),
            "{imsi}"
        );
    }
    // Both dead webhooks fail twice in a row and open their circuits.
    let m = wait_metrics(&d, Duration::from_secs(15), |m| {
        counter(
            m,
            "imei_lockd_alert_circuit_state",
            &["webhook=\"blackhole\""],
        ) == 2.0
            && counter(m, "imei_lockd_alert_circuit_state", &["webhook=\"closed\""]) == 2.0
    });
    assert_eq!(
        counter(
            &m,
            "imei_lockd_alert_circuit_state",
            &["webhook=\"blackhole\""]
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        counter(
            &m,
            "imei_lockd_alert_circuit_state",
            &["webhook=\"closed\""]
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        counter(
            &m,
            "imei_lockd_alert_circuit_state",
            &["webhook=\"healthy\""]
        ),
        0.0
    );
    // The new families carry HELP and pass promtool's lint.
    for family in [
        "imei_lockd_alert_deliveries_total",
        "imei_lockd_alert_circuit_state",
    ] {
        assert!(m.contains(&format!("# HELP {family} ")), "{family}");
    }
    let (code, report) = common::promtool::check_metrics(&m);
    assert!(
        code == 0 && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
    assert!(
        counter(
            &m,
            "imei_lockd_alert_deliveries_total",
            &["webhook=\"blackhole\"", "outcome=\"timeout\""]
        ) >= 2.0,
        "{m}"
    );
    assert!(
        counter(
            &m,
            "imei_lockd_alert_deliveries_total",
            &["webhook=\"closed\"", "outcome=\"connect_error\""]
        ) >= 2.0,
        "{m}"
    );
    // Open: nothing more is tried while the cool-down runs (in-flight ones may still land).
    let settled = |m: &str| {
        counter(
            m,
            "imei_lockd_alert_deliveries_total",
            &["webhook=\"closed\""],
        )
    };
    std::thread::sleep(Duration::from_secs(1));
    let before = settled(&metrics_text(&d));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        settled(&metrics_text(&d)),
        before,
        "an open circuit sends nothing"
    );
    assert_eq!(
        counter(
            &metrics_text(&d),
            "imei_lockd_alert_deliveries_total",
            &["webhook=\"healthy\"", "outcome=\"delivered\""]
        ),
        8.0
    );
    drop(blackhole);
}

#[test]
fn billing_csv_is_streamed_with_the_bytes_the_export_always_had() {
    let d = Daemon::start("");
    let api = d.api();
    // 2 500 charged SIMs: three pages of the export (1 000 rows each).
    let imsis: Vec<String> = (0..2_500).map(|i| format!("0010170{i:08}")).collect();
    api.import_locked(imsis.clone());
    let now = time::OffsetDateTime::now_utc();
    let month = format!("{:04}-{:02}", now.year(), u8::from(now.month()));
    let (st, rows) = api.get(&format!("/v1/billing/{month}"));
    assert_eq!(st, 200, "{rows}");
    let rows = rows.as_array().unwrap().clone();
    assert_eq!(rows.len(), 2_500);
    // The export as it was built before streaming (format!, one string), from the JSON rows.
    let mut want = String::from("imsi,month,amount,currency,first_lock_at,imei_management,label\n");
    for r in &rows {
        want.push_str(&format!(
            "{},{},{},{},{},lock,\"{}\"\n",
            r["imsi"].as_str().unwrap(),
            r["month"].as_str().unwrap(),
            r["amount"].as_str().unwrap(),
            r["currency"].as_str().unwrap(),
            r["first_lock_at"].as_str().unwrap(),
            r["label"].as_str().unwrap(),
        ));
    }
    let resp = common::http()
        .get(d.url(&format!("/v1/billing/{month}?format=csv")))
        .bearer_auth(common::TOKEN)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    // Streamed: no length known up front, so HTTP/1.1 sends it chunked.
    assert!(
        resp.headers().get("content-length").is_none(),
        "{:?}",
        resp.headers()
    );
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    let got = resp.text().unwrap();
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "first difference at byte {:?}",
        got.bytes().zip(want.bytes()).position(|(a, b)| a != b)
    );
    // IMSI order, each SIM once.
    let listed: Vec<&str> = got
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(listed, imsis.iter().map(String::as_str).collect::<Vec<_>>());
    // imei-lockctl: the month as a table (header + one line per row), --json as before,
    // --csv the same bytes; a SIM's events as a table.
    let ctl = |args: &[&str]| {
        let out = common::stdout_of(
            std::process::Command::new(common::bin("imei-lockctl"))
                .args([
                    "--api",
                    &format!("http://127.0.0.1:{}", d.ports.api),
                    "--token",
                    common::TOKEN,
                ])
                .args(args),
        );
        String::from_utf8(out).unwrap()
    };
    let table = ctl(&["billing", &month]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines.len(),
        2_501,
        "{}",
        lines.first().copied().unwrap_or_default()
    );
    // Columns are two or more spaces apart (cells hold single spaces at most).
    let cells = |l: &str| -> Vec<String> {
        l.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        cells(lines[0]),
        [
            "IMSI",
            "MONTH",
            "AMOUNT",
            "CURRENCY",
            "FIRST LOCK AT",
            "VALUE",
            "LABEL"
        ]
    );
    assert_eq!(
        cells(lines[1]),
        [
            imsis[0].as_str(),
            month.as_str(),
            "1.00",
            "EUR",
            rows[0]["first_lock_at"].as_str().unwrap(),
            "lock",
            "IMEI Lock is enabled (extra fees apply)"
        ]
    );
    let v: serde_json::Value = serde_json::from_str(&ctl(&["--json", "billing", &month])).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2_500);
    assert_eq!(ctl(&["billing", &month, "--csv"]), want);
    mismatch(&d, &imsis[0], 40);
    let events = ctl(&["events", &imsis[0]]);
    let lines: Vec<&str> = events.lines().collect();
    assert!(
        lines[0].starts_with("AT") && lines[0].contains("EVENT"),
        "{events}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("imei_mismatch") && l.contains("radius")),
        "{events}"
    );
    assert!(lines.iter().any(|l| l.contains("imei_bound")), "{events}");
    // An empty month: the header line alone.
    let resp = common::http()
        .get(d.url("/v1/billing/2001-01?format=csv"))
        .bearer_auth(common::TOKEN)
        .send()
        .unwrap();
    assert_eq!(
        resp.text().unwrap(),
        "imsi,month,amount,currency,first_lock_at,imei_management,label\n"
    );
}
