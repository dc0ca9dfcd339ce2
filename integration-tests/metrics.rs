//! metrics integration test (against the real binary): drives RADIUS (raw UDP), Diameter Gx (raw
//! TCP) and the provisioning API, then scrapes `GET /metrics` and checks the series moved, with
//! their exact names and labels.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

use common::diameter::Raw;
use common::radius::{authenticator, exchange, udp, SECRET};
use common::Daemon;
use imei_lockd::diameter::codec::{Message, ResultCode};

const IMSI: &str = "001010000000901";
/// Device A, B (IMEISV: TAC + SNR + SVN).
const IMEI_A: &str = "3520990017614823";
const IMEI_B: &str = "3548580412345601";
/// The Diameter client's Origin-Host (a configured peer).
const PCEF: &str = "pcef.localdomain";

// ---------------------------------------------------------------------------------------------
// Scraping

fn scrape(d: &Daemon) -> String {
    common::http()
        .get(format!("http://127.0.0.1:{}/metrics", d.ports.metrics))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default()
}

/// The value of the series `name` whose labels include all of `labels` (e.g. `reason="x"`),
/// summed over the matching series; None when no series matches.
fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            (rest.starts_with('{') || rest.starts_with(' ')).then_some(l)
        })
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

// ---------------------------------------------------------------------------------------------
// Requests (raw UDP and TCP clients: common::radius, common::diameter)

/// Access-Request octets with 3GPP-IMSI, User-Name and 3GPP-IMEISV; with a Message-Authenticator
/// when `with_ma`.
fn access_request(id: u8, imei: &str, with_ma: bool) -> Vec<u8> {
    common::radius::access_request(id, authenticator(id), IMSI, Some(imei), SECRET, with_ma)
}

/// A Gx CCR-Initial for `IMSI` presenting `imei`.
fn ccr_initial(imei: &str) -> Message {
    common::diameter::ccr(&format!("metrics;{IMSI};1"), PCEF, 1, IMSI, Some(imei))
}

// ---------------------------------------------------------------------------------------------

#[test]
fn scrape_shows_decisions_drops_peers_provisioning_and_store_sizes() {
    let d = Daemon::start(&format!("[[diameter.peers]]\norigin_host = \"{PCEF}\"\n"));
    d.api().put_sim(IMSI, json!({"imei_management": "lock"}));
    let port = d.ports.radius_auth;

    // RADIUS: a binding accept, a mismatch reject and a retransmission of the latter.
    let s = udp("127.0.0.1:0", Duration::from_secs(5));
    let bind = exchange(&s, port, &access_request(1, IMEI_A, true)).expect("answer");
    assert_eq!(bind[0], 2, "Access-Accept");
    let mismatch = access_request(2, IMEI_B, true);
    let reject = exchange(&s, port, &mismatch).expect("answer");
    assert_eq!(reject[0], 3, "Access-Reject");
    let again = exchange(&s, port, &mismatch).expect("answer to the retransmission");
    assert_eq!(again, reject, "a retransmission gets the cached answer");
    // Dropped: no Message-Authenticator (required for this client), unknown source.
    let quiet = udp("127.0.0.1:0", Duration::from_millis(700));
    assert!(exchange(&quiet, port, &access_request(3, IMEI_A, false)).is_none());
    let stranger = udp("127.0.0.3:0", Duration::from_millis(700));
    assert!(exchange(&stranger, port, &access_request(4, IMEI_A, true)).is_none());

    // Diameter: CER, then an accepted Gx CCR-I (the bound device). The connection stays open
    // for the peers gauge.
    let mut gx = Raw::connect(&d, PCEF);
    let cca = gx.call(ccr_initial(IMEI_A));
    assert_eq!(cca.result_code(), Some(ResultCode::SUCCESS), "CCA");

    let m = scrape(&d);
    let v = |name: &str, labels: &[&str]| value(&m, name, labels);

    // Decisions by interface, decision and reason.
    let decisions = "imei_lockd_decisions_total";
    assert_eq!(
        v(
            decisions,
            &[
                "interface=\"radius\"",
                "decision=\"accept\"",
                "reason=\"bound\""
            ]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        v(
            decisions,
            &[
                "interface=\"radius\"",
                "decision=\"reject\"",
                "reason=\"imei_mismatch\""
            ]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        v(
            decisions,
            &[
                "interface=\"gx\"",
                "decision=\"accept\"",
                "reason=\"match\""
            ]
        ),
        Some(1.0),
        "{m}"
    );
    // The retransmission and the drops were not decided again.
    assert_eq!(v(decisions, &["interface=\"radius\""]), Some(2.0), "{m}");

    // Decision latency: a real histogram (buckets, sum, count), per interface.
    assert!(
        m.contains("# TYPE imei_lockd_decision_duration_seconds histogram"),
        "{m}"
    );
    let hist = "imei_lockd_decision_duration_seconds";
    assert_eq!(
        v(
            &format!("{hist}_bucket"),
            &["interface=\"radius\"", "le=\"+Inf\""]
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        v(
            &format!("{hist}_bucket"),
            &["interface=\"radius\"", "le=\"0.00005\""]
        )
        .map(|_| ()),
        Some(()),
        "a 50 µs bucket: {m}"
    );
    assert_eq!(
        v(&format!("{hist}_count"), &["interface=\"radius\""]),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        v(&format!("{hist}_count"), &["interface=\"gx\""]),
        Some(1.0),
        "{m}"
    );
    assert!(
        v(&format!("{hist}_sum"), &["interface=\"radius\""]).is_some_and(|s| s > 0.0),
        "{m}"
    );

    // RADIUS drops by reason, duplicates.
    let drops = "imei_lockd_radius_drops_total";
    assert_eq!(
        v(drops, &["port=\"auth\"", "reason=\"unknown_client\""]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        v(
            drops,
            &["port=\"auth\"", "reason=\"missing_message_authenticator\""]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        v("imei_lockd_radius_duplicates_total", &["port=\"auth\""]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        v(
            "imei_lockd_radius_responses_total",
            &["port=\"auth\"", "type=\"access_reject\""]
        ),
        Some(1.0),
        "the retransmission's cached answer counts as a duplicate, not a response: {m}"
    );

    // Diameter: answers by application and result code, peers by state.
    assert_eq!(
        v(
            "imei_lockd_diameter_answers_total",
            &["app=\"gx\"", "result_code=\"2001\""]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        v("imei_lockd_diameter_peers", &["state=\"open\""]),
        Some(1.0),
        "{m}"
    );

    // Provisioning: the SIM's request was processed, none pending.
    assert_eq!(
        v(
            "imei_lockd_provisioning_requests_total",
            &["status=\"processed\""]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(v("imei_lockd_provisioning_pending", &[]), Some(0.0), "{m}");
    assert_eq!(
        v(
            "imei_lockd_provisioning_requests_total",
            &["status=\"failed\""]
        ),
        Some(0.0),
        "{m}"
    );

    // Alerts (no webhook configured): outbox depth and delivery results, present at 0.
    assert_eq!(v("imei_lockd_alert_outbox_depth", &[]), Some(0.0), "{m}");
    assert_eq!(
        v("imei_lockd_alerts_total", &["result=\"failed\""]),
        Some(0.0),
        "{m}"
    );

    // Store sizes: sampled every 10 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    let m = loop {
        let m = scrape(&d);
        if value(&m, "imei_lockd_store_sims", &[]).is_some_and(|n| n >= 1.0) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "imei_lockd_store_sims not >= 1 within 15 s:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    for gauge in [
        "imei_lockd_store_events",
        "imei_lockd_store_outbox",
        "imei_lockd_store_disk_bytes",
    ] {
        assert!(value(&m, gauge, &[]).is_some(), "{gauge} missing:\n{m}");
    }
    assert!(
        value(&m, "imei_lockd_store_events", &[]).is_some_and(|n| n >= 1.0),
        "events were recorded (bind, mismatch): {m}"
    );
    // The peer is still open.
    assert_eq!(
        value(&m, "imei_lockd_diameter_peers", &["state=\"open\""]),
        Some(1.0),
        "{m}"
    );
    drop(gx);
}
