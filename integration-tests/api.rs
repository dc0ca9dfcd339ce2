//! Provisioning API against the real binary: every route, 401/400/404, profile semantics,
//! billing, bulk import, crash safety of accepted requests, the OpenAPI document.

mod common;

use std::time::{Duration, Instant};

use common::{http, Daemon, TOKEN};
use serde_json::{json, Value};

const SIM: &str = "001010000000001";

#[test]
fn token_is_required_except_for_healthz() {
    let d = Daemon::start("");
    let r = http().get(d.url("/healthz")).send().unwrap();
    assert_eq!(r.status(), 200);
    for (method, path) in [
        ("GET", "/v1/sims/001010000000001"),
        ("PUT", "/v1/sims/001010000000001"),
        ("GET", "/v1/imei-management/values"),
        ("GET", "/v1/billing/2026-01"),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = http().request(m.clone(), d.url(path)).send().unwrap();
        assert_eq!(r.status(), 401, "{method} {path} without token");
        let r = http()
            .request(m, d.url(path))
            .bearer_auth("wrong-token")
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path} with a wrong token");
    }
    assert!(
        !d.log_text().contains(TOKEN),
        "the token must never be logged"
    );
}

#[test]
fn sim_lifecycle_over_every_sim_route() {
    let d = Daemon::start("");
    let api = d.api();
    api.put_sim(
        SIM,
        json!({"msisdn": "491700000001", "imei_management": "lock"}),
    );
    let s = api.sim(SIM);
    assert_eq!(s["imsi"], SIM);
    assert_eq!(s["msisdn"], "491700000001");
    assert_eq!(s["imei_management"], "lock");
    assert_eq!(s["effective"], "lock");
    assert_eq!(s["bound_imei"], Value::Null);
    assert_eq!(s["pending_requests"], json!([]));

    // Partial update: absent fields stay, null clears.
    api.put_sim(SIM, json!({"msisdn": null}));
    let s = api.sim(SIM);
    assert_eq!(s["msisdn"], Value::Null);
    assert_eq!(s["imei_management"], "lock");

    api.set_value(SIM, Some("pairing"));
    assert_eq!(api.sim(SIM)["effective"], "pairing");
    api.set_value(SIM, None);
    let s = api.sim(SIM);
    assert_eq!(s["imei_management"], Value::Null);
    assert_eq!(s["effective"], "disabled");

    api.submit_wait("POST", &format!("/v1/sims/{SIM}/reset"), None);
    let (st, ev) = api.get(&format!("/v1/sims/{SIM}/events?limit=10"));
    assert_eq!(st, 200);
    let kinds: Vec<&str> = ev
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.first(),
        Some(&"imei_reset"),
        "newest first: {kinds:?}"
    );
    assert!(kinds.contains(&"value_changed"));
    let (_, one) = api.get(&format!("/v1/sims/{SIM}/events?limit=1"));
    assert_eq!(one.as_array().unwrap().len(), 1);

    let r = api.submit_wait("DELETE", &format!("/v1/sims/{SIM}"), None);
    assert!(r["processed_at"].is_string());
    let (st, _) = api.get(&format!("/v1/sims/{SIM}"));
    assert_eq!(st, 404);
}

#[test]
fn bad_input_names_the_field_and_unknown_things_are_404() {
    let d = Daemon::start("");
    let api = d.api();
    api.put_sim(SIM, json!({}));
    let cases: Vec<(&str, String, Option<Value>, &str)> = vec![
        ("PUT", "/v1/sims/12ab".into(), Some(json!({})), "imsi"),
        ("GET", "/v1/sims/123".into(), None, "imsi"),
        (
            "PUT",
            format!("/v1/sims/{SIM}"),
            Some(json!({"imei_management": "sometimes"})),
            "imei_management",
        ),
        (
            "PUT",
            format!("/v1/sims/{SIM}"),
            Some(json!({"msisdn": "phone"})),
            "msisdn",
        ),
        (
            "PUT",
            format!("/v1/sims/{SIM}"),
            Some(json!({"colour": "red"})),
            "colour",
        ),
        (
            "PUT",
            format!("/v1/sims/{SIM}/imei-management"),
            Some(json!({"value": 3})),
            "value",
        ),
        (
            "PUT",
            "/v1/profiles/fleet".into(),
            Some(json!({"imei_management": "lock", "lock_fee": "cheap"})),
            "lock_fee",
        ),
        (
            "PUT",
            "/v1/profiles/fleet".into(),
            Some(json!({})),
            "imei_management",
        ),
        ("GET", "/v1/billing/2026-13".into(), None, "month"),
        (
            "GET",
            "/v1/billing/2026-01?format=xml".into(),
            None,
            "format",
        ),
        (
            "GET",
            format!("/v1/sims/{SIM}/events?limit=0"),
            None,
            "limit",
        ),
        ("GET", "/v1/requests/1?wait=31".into(), None, "wait"),
        ("GET", "/v1/requests/not-a-number".into(), None, "id"),
    ];
    for (method, path, body, field) in cases {
        let (st, v) = api.call(method, &path, body);
        assert_eq!(st, 400, "{method} {path}: {v}");
        assert!(
            v["field"].as_str().unwrap_or("").contains(field),
            "{method} {path} should name {field}: {v}"
        );
        assert!(v["error"].is_string(), "{v}");
    }
    // Bad JSON.
    let r = http()
        .put(d.url(&format!("/v1/sims/{SIM}")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{\"msisdn\": ")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().unwrap();
    assert!(v["error"].as_str().unwrap().contains("EOF"), "{v}");

    for path in [
        "/v1/sims/001019999999999".to_owned(),
        "/v1/sims/001019999999999/events".to_owned(),
        "/v1/profiles/nobody".to_owned(),
        "/v1/requests/999999".to_owned(),
    ] {
        let (st, v) = api.get(&path);
        assert_eq!(st, 404, "{path}: {v}");
        assert!(
            v["field"].is_string(),
            "{path}: a 404 names what is unknown: {v}"
        );
    }
    // A profile that does not exist is named, and nothing is submitted.
    let (st, v) = api.call(
        "PUT",
        &format!("/v1/sims/{SIM}"),
        Some(json!({"profile": "no-such-profile"})),
    );
    assert_eq!((st, v["field"].as_str()), (404, Some("profile")), "{v}");
    for (method, path) in [
        ("PUT", "/v1/sims/001019999999999/imei-management"),
        ("POST", "/v1/sims/001019999999999/reset"),
        ("DELETE", "/v1/sims/001019999999999"),
    ] {
        let (st, v) = api.call(method, path, Some(json!({"value": "lock"})));
        assert_eq!(st, 404, "{method} {path}: {v}");
    }
}

#[test]
fn profiles_apply_to_their_sims_and_sim_values_override() {
    let d = Daemon::start("");
    let api = d.api();
    api.put_profile("fleet", "disabled");
    let (st, p) = api.get("/v1/profiles/fleet");
    assert_eq!(st, 200);
    assert_eq!(p["imei_management"], "disabled");
    let sims: Vec<String> = (0..20).map(|i| format!("0010100000002{i:02}")).collect();
    for s in &sims {
        api.put_sim(s, json!({"profile": "fleet"}));
    }
    api.put_sim(
        SIM,
        json!({"profile": "fleet", "imei_management": "pairing"}),
    );
    api.put_profile("fleet", "lock");
    for s in &sims {
        assert_eq!(api.sim(s)["effective"], "lock", "{s}");
    }
    let s = api.sim(SIM);
    assert_eq!(s["effective"], "pairing", "the SIM's own value wins");
    assert_eq!(s["profile"], "fleet");
    // Clearing the SIM's value makes it follow the profile again.
    api.set_value(SIM, None);
    assert_eq!(api.sim(SIM)["effective"], "lock");
}

fn billing_rows(api: &common::Api, month: &str) -> Vec<Value> {
    let (st, v) = api.get(&format!("/v1/billing/{month}"));
    assert_eq!(st, 200, "{v}");
    v.as_array().unwrap().clone()
}

fn this_month() -> (i64, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let month = time::OffsetDateTime::from_unix_timestamp(now).unwrap();
    (
        now,
        format!("{:04}-{:02}", month.year(), u8::from(month.month())),
    )
}

#[test]
fn billing_charges_lock_once_per_month_and_again_next_month() {
    let mut d = Daemon::start("");
    let api = d.api();
    let (now, month) = this_month();
    api.put_profile("plain", "pairing");
    api.put_sim(SIM, json!({"imei_management": "lock"}));
    api.set_value(SIM, Some("pairing"));
    api.set_value(SIM, Some("lock"));
    api.put_sim("001010000000002", json!({"imei_management": "pairing"}));
    api.put_sim("001010000000003", json!({"imei_management": "disabled"}));
    api.put_sim("001010000000004", json!({"profile": "plain"}));
    let rows = billing_rows(&api, &month);
    assert_eq!(rows.len(), 1, "one row, one SIM: {rows:?}");
    assert_eq!(rows[0]["imsi"], SIM);
    assert_eq!(rows[0]["amount"], "1.00");
    assert_eq!(rows[0]["currency"], "EUR");
    assert!(rows[0]["label"]
        .as_str()
        .unwrap()
        .contains("extra fees apply"));

    let r = http()
        .get(d.url(&format!("/v1/billing/{month}")))
        .bearer_auth(TOKEN)
        .header("accept", "text/csv")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let csv = r.text().unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("imsi,month,amount,currency,first_lock_at"));
    assert!(lines[1].starts_with(&format!("{SIM},{month},1.00,EUR,")));
    let (_, csv2) = {
        let r = http()
            .get(d.url(&format!("/v1/billing/{month}?format=csv")))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        (r.status(), r.text().unwrap())
    };
    assert_eq!(csv, csv2);

    // Restart 40 days later: a new month; the SIM is still lock, so it owes that month too.
    d.kill9();
    d.env.push((
        "IMEI_LOCKD_TEST_CLOCK_OFFSET_S".into(),
        (40 * 86_400).to_string(),
    ));
    d.spawn();
    let later = time::OffsetDateTime::from_unix_timestamp(now + 40 * 86_400).unwrap();
    let next = format!("{:04}-{:02}", later.year(), u8::from(later.month()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut rows = Vec::new();
    while Instant::now() < deadline {
        rows = billing_rows(&api, &next);
        if !rows.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(rows.len(), 1, "carried over into {next}: {rows:?}");
    assert_eq!(rows[0]["imsi"], SIM);
    assert!(
        rows[0]["first_lock_at"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{next}-01T00:00:00")),
        "{rows:?}"
    );
    assert_eq!(
        billing_rows(&api, &month).len(),
        1,
        "the old month is unchanged"
    );
}

#[test]
fn values_are_listed_with_labels() {
    let d = Daemon::start("");
    let (st, v) = d.api().get("/v1/imei-management/values");
    assert_eq!(st, 200);
    let vals = v.as_array().unwrap();
    let names: Vec<&str> = vals.iter().map(|x| x["value"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["disabled", "lock", "pairing"]);
    let lock = &vals[1];
    assert!(lock["label"].as_str().unwrap().contains("extra fees apply"));
    assert_eq!(lock["extra_fees"], true);
    assert_eq!(vals[0]["extra_fees"], false);
}

#[test]
fn csv_import_of_100k_sims() {
    let d = Daemon::start("");
    let api = d.api();
    api.put_profile("fleet", "lock");
    let mut csv = String::from("imsi,msisdn,profile,imei_management\n");
    for i in 0..100_000u32 {
        let value = match i % 3 {
            0 => "lock",
            1 => "pairing",
            _ => "",
        };
        let profile = if i % 3 == 2 { "fleet" } else { "" };
        csv.push_str(&format!("00102{i:010},49171{i:07},{profile},{value}\n"));
    }
    let started = Instant::now();
    let r = http()
        .post(d.url("/v1/sims:import"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut status = Value::Null;
    while started.elapsed() < Duration::from_secs(120) {
        let (_, v) = api.get(&format!("/v1/requests/{id}?wait=30"));
        status = v["status"].clone();
        if status != "pending" {
            break;
        }
    }
    assert_eq!(status, "processed");
    eprintln!("100k SIM import processed in {:?}", started.elapsed());
    let s = api.sim("001020000099999");
    assert_eq!(s["msisdn"], "491710099999");
    assert_eq!(s["effective"], "lock");
    assert_eq!(api.sim("001020000099997")["effective"], "pairing");
    let s = api.sim("001020000099998");
    assert_eq!(
        (
            s["profile"].as_str(),
            s["imei_management"].as_str(),
            s["effective"].as_str()
        ),
        (Some("fleet"), None, Some("lock"))
    );
}

#[test]
fn a_bad_import_row_rejects_the_whole_file() {
    let d = Daemon::start("");
    let api = d.api();
    let csv =
        "imsi,msisdn,profile,imei_management\n001030000000001,,,lock\n001030000000002,,,maybe\n";
    let r = http()
        .post(d.url("/v1/sims:import"))
        .bearer_auth(TOKEN)
        .body(csv)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().unwrap();
    assert_eq!(v["field"], "line 3", "{v}");
    let (st, _) = api.get("/v1/sims/001030000000001");
    assert_eq!(st, 404, "nothing applied");
    let r = http()
        .post(d.url("/v1/sims:import"))
        .bearer_auth(TOKEN)
        .body("imsi,msisdn\n001030000000001,1\n")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn accepted_requests_survive_kill_9() {
    // Processing is held, so every request is still pending when the daemon is killed.
    let mut d = Daemon::start_with_env("", &[("IMEI_LOCKD_TEST_HOLD_PROVISIONING", "1")]);
    let api = d.api();
    let mut ids = Vec::new();
    for i in 0..50 {
        let (st, v) = api.call(
            "PUT",
            &format!("/v1/sims/0010400000000{i:02}"),
            Some(json!({"imei_management": "lock"})),
        );
        assert_eq!(st, 202);
        ids.push(v["request_id"].as_str().unwrap().to_owned());
    }
    let (_, r) = api.get(&format!("/v1/requests/{}", ids[0]));
    assert_eq!(r["status"], "pending");
    d.kill9();
    d.env.clear();
    d.spawn();
    for id in &ids {
        let (st, r) = api.get(&format!("/v1/requests/{id}?wait=10"));
        assert_eq!(st, 200);
        assert_eq!(r["status"], "processed", "{id}: {r}");
    }
    assert_eq!(api.sim("001040000000049")["effective"], "lock");
}

/// Every path and method in the committed OpenAPI document is served (not the router's own
/// 404/405), and the document the daemon serves is the committed one.
#[test]
fn openapi_document_matches_the_routes() {
    let d = Daemon::start("");
    let committed: Value = serde_json::from_str(include_str!("../src/api/openapi.json")).unwrap();
    let (st, served) = d.api().get("/v1/openapi.json");
    assert_eq!(st, 200);
    assert_eq!(served, committed);
    let paths = committed["paths"].as_object().unwrap();
    assert!(paths.len() >= 11);
    for (path, item) in paths {
        let concrete = path
            .replace("{imsi}", SIM)
            .replace("{name}", "fleet")
            .replace("{id}", "1")
            .replace("{month}", "2026-01");
        for method in ["get", "put", "post", "delete"] {
            let served = item.get(method).is_some();
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = http()
                .request(m, d.url(&concrete))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .unwrap();
            let status = r.status().as_u16();
            let body = r.text().unwrap();
            if served {
                assert_ne!(status, 405, "{method} {path} is documented but not routed");
                // The router's fallback names no resource: "no route".
                assert!(
                    status != 404 || !body.contains("no route"),
                    "{method} {path} is documented but not routed: {body}"
                );
            } else {
                assert!(
                    status == 405 || status == 404,
                    "{method} {path} answers {status} but is not documented"
                );
            }
        }
    }
}

/// `imei-lockctl` drives the same API: human and JSON output, `--wait`, non-zero exits.
#[test]
fn imei_lockctl_over_the_api() {
    let d = Daemon::start("");
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(common::bin("imei-lockctl"))
            .args([
                "--api",
                &format!("http://127.0.0.1:{}", d.ports.api),
                "--token",
                TOKEN,
            ])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = ctl(&[
        "profile",
        "set",
        "fleet",
        "lock",
        "--lock-fee",
        "2.00",
        "--wait",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("processed"), "{out}");
    let (code, out, err) = ctl(&[
        "sim",
        "set",
        SIM,
        "--profile",
        "fleet",
        "--msisdn",
        "4917000001",
        "--wait",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = ctl(&["--json", "sim", "get", SIM]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["effective"], "lock");
    assert_eq!(v["profile"], "fleet");
    let (code, out, _) = ctl(&["sim", "get", SIM]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("effective") && l.ends_with("lock")),
        "{out}"
    );
    let (code, _, _) = ctl(&["sim", "imei-management", SIM, "pairing", "--wait"]);
    assert_eq!(code, 0);
    let (code, _, _) = ctl(&["sim", "reset", SIM, "--wait"]);
    assert_eq!(code, 0);
    let (code, out, _) = ctl(&["events", SIM]);
    assert_eq!(code, 0);
    assert!(out.contains("imei_reset"), "{out}");
    let (_, month) = this_month();
    let (code, out, _) = ctl(&["billing", &month, "--csv"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("{SIM},{month},2.00,EUR")), "{out}");
    // Errors: a 400 names the field and exits 1; an unknown SIM exits 1; no daemon exits 3.
    let (code, _, err) = ctl(&["sim", "imei-management", SIM, "sometimes"]);
    assert_eq!(code, 1);
    assert!(err.contains("value"), "{err}");
    let (code, _, _) = ctl(&["sim", "get", "001019999999999"]);
    assert_eq!(code, 1);
    let out = std::process::Command::new(common::bin("imei-lockctl"))
        .args(["--api", "http://127.0.0.1:1", "sim", "get", SIM])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

fn scrape(d: &Daemon) -> String {
    http()
        .get(format!("http://127.0.0.1:{}/metrics", d.ports.metrics))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// The value of the first sample whose line starts with `prefix` (name plus labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn provisioning_metrics_move() {
    let d = Daemon::start("");
    let api = d.api();
    api.put_sim(SIM, json!({"imei_management": "lock"}));
    api.put_sim("001010000000002", json!({}));
    let (st, _) = api.call(
        "PUT",
        "/v1/sims/001010000000002",
        Some(json!({"profile": null})),
    );
    assert_eq!(st, 202);
    let r = http()
        .get(d.url("/v1/sims/001010000000001"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(&d);
        let processed = sample(
            &m,
            "imei_lockd_provisioning_requests_total{status=\"processed\"}",
        )
        .unwrap_or(0.0);
        if processed >= 3.0 {
            assert_eq!(
                sample(
                    &m,
                    "imei_lockd_provisioning_requests_total{status=\"submitted\"}"
                ),
                Some(3.0),
                "{m}"
            );
            assert_eq!(
                sample(&m, "imei_lockd_provisioning_pending"),
                Some(0.0),
                "{m}"
            );
            assert_eq!(
                sample(&m, "imei_lockd_api_unauthorized_total"),
                Some(1.0),
                "{m}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processed counter did not move: {m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
