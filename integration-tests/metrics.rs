//! metrics integration test (against the real binary): drives RADIUS (raw UDP), Diameter Gx (raw
//! TCP) and the provisioning API, then scrapes `GET /metrics` and checks the series moved, with
//! their exact names and labels; that the scrape passes `promtool check metrics` (HELP for every
//! family, process metrics, build info); that the series known at start exist at 0 before any
//! traffic; and that the pending-requests gauge counts requests.

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

// ---------------------------------------------------------------------------------------------
// Prometheus conventions: promtool, HELP, process metrics, build info, zero series

/// `# TYPE` and `# HELP` names of a scrape.
fn typed_and_helped(text: &str) -> (Vec<&str>, Vec<&str>) {
    let names = |prefix: &str| -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|rest| rest.split(' ').next())
            .collect()
    };
    (names("# TYPE "), names("# HELP "))
}

#[test]
fn scrape_passes_promtool_with_help_process_metrics_build_info_and_zero_series() {
    let d = Daemon::start(&format!("[[diameter.peers]]\norigin_host = \"{PCEF}\"\n"));

    // Before any traffic: the series known at start exist, at 0.
    let m = scrape(&d);
    let v = |m: &str, name: &str, labels: &[&str]| value(m, name, labels);
    for (name, labels) in [
        (
            "imei_lockd_decisions_total",
            &[
                "interface=\"radius\"",
                "decision=\"reject\"",
                "reason=\"imei_mismatch\"",
            ][..],
        ),
        (
            "imei_lockd_decisions_total",
            &[
                "interface=\"s6b\"",
                "decision=\"accept\"",
                "reason=\"missing_imei_accepted\"",
            ],
        ),
        (
            "imei_lockd_decision_duration_seconds_count",
            &["interface=\"gx\""],
        ),
        ("imei_lockd_engine_errors_total", &["interface=\"radius\""]),
        (
            "imei_lockd_radius_drops_total",
            &["port=\"auth\"", "reason=\"receive_buffer\""],
        ),
        (
            "imei_lockd_radius_drops_total",
            &["port=\"acct\"", "reason=\"overload\""],
        ),
        (
            "imei_lockd_radius_packets_total",
            &["port=\"auth\"", "code=\"Access-Request\""],
        ),
        (
            "imei_lockd_radius_responses_total",
            &["port=\"acct\"", "type=\"accounting_response\""],
        ),
        ("imei_lockd_radius_duplicates_total", &["port=\"auth\""]),
        ("imei_lockd_diameter_peers", &["state=\"open\""]),
        ("imei_lockd_diameter_peers", &["state=\"suspect\""]),
        (
            "imei_lockd_diameter_peer_up",
            &["origin_host=\"pcef.localdomain\""],
        ),
        (
            "imei_lockd_diameter_peer_up",
            &["origin_host=\"pgw.localdomain\""],
        ),
        (
            "imei_lockd_diameter_errors_total",
            &["reason=\"watchdog_expired\""],
        ),
        (
            "imei_lockd_diameter_answers_total",
            &["app=\"gx\"", "result_code=\"5003\""],
        ),
        (
            "imei_lockd_api_errors_total",
            &["reason=\"body_too_large\""],
        ),
        ("imei_lockd_api_unauthorized_total", &[]),
        (
            "imei_lockd_provisioning_requests_total",
            &["status=\"failed\""],
        ),
        ("imei_lockd_provisioning_pending", &[]),
        ("imei_lockd_alerts_total", &["result=\"dropped\""]),
        ("imei_lockd_alert_outbox_depth", &[]),
        ("imei_lockd_config_reloads_total", &["result=\"error\""]),
        ("imei_lockd_store_errors_total", &["kind=\"backend\""]),
    ] {
        assert_eq!(
            v(&m, name, labels),
            Some(0.0),
            "{name} {labels:?} at 0 before traffic:\n{m}"
        );
    }
    let (code, report) = common::promtool::check_metrics(&m);
    assert!(
        code == 0 && report.trim().is_empty(),
        "promtool check metrics (idle):\n{report}"
    );

    // Traffic: API (a SIM, a 401), RADIUS (bind, mismatch, a drop), Diameter (CER, CCR-I).
    d.api().put_sim(IMSI, json!({"imei_management": "lock"}));
    let unauthorized = common::http()
        .get(d.url(&format!("/v1/sims/{IMSI}")))
        .send()
        .expect("API answers");
    assert_eq!(unauthorized.status().as_u16(), 401);
    let port = d.ports.radius_auth;
    let s = udp("127.0.0.1:0", Duration::from_secs(5));
    let bind = exchange(&s, port, &access_request(1, IMEI_A, true)).expect("answer");
    assert_eq!(bind[0], 2, "Access-Accept");
    let reject = exchange(&s, port, &access_request(2, IMEI_B, true)).expect("answer");
    assert_eq!(reject[0], 3, "Access-Reject");
    let quiet = udp("127.0.0.1:0", Duration::from_millis(700));
    assert!(exchange(&quiet, port, &access_request(3, IMEI_A, false)).is_none());
    let mut gx = Raw::connect(&d, PCEF);
    let cca = gx.call(ccr_initial(IMEI_A));
    assert_eq!(cca.result_code(), Some(ResultCode::SUCCESS), "CCA");

    let m = scrape(&d);
    let (code, report) = common::promtool::check_metrics(&m);
    eprintln!(
        "promtool check metrics: exit {code}, report: {:?}",
        report.trim()
    );
    assert!(
        code == 0 && report.trim().is_empty(),
        "promtool check metrics:\n{report}\n{m}"
    );

    // HELP for every family (promtool requires it too; this names the family).
    let (typed, helped) = typed_and_helped(&m);
    assert!(typed.len() >= 25, "{typed:?}");
    for name in &typed {
        assert!(helped.contains(name), "no # HELP for {name}:\n{m}");
    }
    assert!(typed.iter().any(|n| n.starts_with("imei_lockd_")));

    // Process metrics under Prometheus' standard names, with plausible values.
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        assert!(typed.contains(&name), "{name} missing:\n{m}");
    }
    assert!(
        m.contains("# TYPE process_cpu_seconds_total counter"),
        "{m}"
    );
    let rss = v(&m, "process_resident_memory_bytes", &[]).unwrap_or(0.0);
    let rss_kib = common::rss_kib(d.pid()).expect("VmRSS") as f64;
    assert!(
        rss > 1e6 && (rss / 1024.0 - rss_kib).abs() < rss_kib * 0.5,
        "RSS {rss} B vs /proc {rss_kib} KiB"
    );
    assert!(
        v(&m, "process_open_fds", &[]).is_some_and(|n| n >= 5.0),
        "{m}"
    );
    assert!(
        v(&m, "process_threads", &[]).is_some_and(|n| n >= 2.0),
        "{m}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let start = v(&m, "process_start_time_seconds", &[]).unwrap_or(0.0);
    assert!((now - start).abs() < 600.0, "start time {start}, now {now}");

    // Build information.
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        v(
            &m,
            "imei_lockd_build_info",
            &[&version, "rustc=\"", "profile=\""]
        ),
        Some(1.0),
        "{m}"
    );

    // What the traffic moved.
    assert_eq!(
        v(&m, "imei_lockd_api_unauthorized_total", &[]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        v(
            &m,
            "imei_lockd_diameter_peer_up",
            &["origin_host=\"pcef.localdomain\""]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        v(
            &m,
            "imei_lockd_diameter_peer_up",
            &["origin_host=\"pgw.localdomain\""]
        ),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        v(
            &m,
            "imei_lockd_radius_drops_total",
            &["port=\"auth\"", "reason=\"missing_message_authenticator\""]
        ),
        Some(1.0),
        "{m}"
    );

    // The peer closes: its gauge returns to 0.
    drop(gx);
    let m = common::wait_metrics(&d, Duration::from_secs(10), |m| {
        value(
            m,
            "imei_lockd_diameter_peer_up",
            &["origin_host=\"pcef.localdomain\""],
        ) == Some(0.0)
    });
    assert_eq!(
        v(
            &m,
            "imei_lockd_diameter_peer_up",
            &["origin_host=\"pcef.localdomain\""]
        ),
        Some(0.0),
        "{m}"
    );
}

/// `imei_lockd_provisioning_pending` counts the requests not yet processed (the processor held).
#[test]
fn pending_gauge_counts_requests_waiting() {
    let d = Daemon::start_with_env("", &[("IMEI_LOCKD_TEST_HOLD_PROVISIONING", "1")]);
    assert_eq!(
        value(&scrape(&d), "imei_lockd_provisioning_pending", &[]),
        Some(0.0)
    );
    for i in 0..3 {
        let (s, v) = d.api().call(
            "PUT",
            &format!("/v1/sims/00101000000095{i}"),
            Some(json!({"imei_management": "lock"})),
        );
        assert_eq!(s, 202, "{v}");
    }
    let m = scrape(&d);
    assert_eq!(
        value(&m, "imei_lockd_provisioning_pending", &[]),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            "imei_lockd_provisioning_requests_total",
            &["status=\"submitted\""]
        ),
        Some(3.0),
        "{m}"
    );
    // After a restart the count is read back from the store.
    let mut d = d;
    d.terminate();
    d.spawn();
    let m = scrape(&d);
    assert_eq!(
        value(&m, "imei_lockd_provisioning_pending", &[]),
        Some(3.0),
        "{m}"
    );
}
