//! The API keeps its contract (issue 16), against the real binary: a body that lacks its only
//! field changes nothing; every 4xx is JSON naming the field or parameter, query and path
//! errors included; the server takes what the OpenAPI document allows and refuses what it
//! forbids; 202 points at its request.

mod common;

use common::{http, Daemon, TOKEN};
use serde_json::{json, Value};

const SIM: &str = "001010000000161";

/// Sends `body` as JSON with `method` to `path`; returns status, content type and JSON.
fn raw(d: &Daemon, method: &str, path: &str, body: Option<&str>) -> (u16, String, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = http().request(m, d.url(path)).bearer_auth(TOKEN);
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let resp = r.send().unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = resp.text().unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, ct, v)
}

/// Asserts a JSON 400 naming `field`.
fn assert_names(d: &Daemon, method: &str, path: &str, body: Option<&str>, field: &str) {
    let (st, ct, v) = raw(d, method, path, body);
    assert_eq!(st, 400, "{method} {path}: {v}");
    assert!(ct.starts_with("application/json"), "{method} {path}: {ct}");
    assert_eq!(v["field"], field, "{method} {path}: {v}");
    assert!(v["error"].is_string(), "{v}");
}

#[test]
fn an_empty_value_body_never_turns_a_lock_off() {
    let d = Daemon::start("");
    let api = d.api();
    api.put_sim(SIM, json!({"imei_management": "lock"}));
    let path = format!("/v1/sims/{SIM}/imei-management");
    assert_names(&d, "PUT", &path, Some("{}"), "value");
    assert_names(&d, "PUT", &path, Some(""), "body");
    assert_names(&d, "PUT", &path, None, "body");
    let s = api.sim(SIM);
    assert_eq!(s["imei_management"], "lock", "{s}");
    assert_eq!(s["effective"], "lock", "{s}");
    assert_eq!(
        s["pending_requests"],
        json!([]),
        "nothing was submitted: {s}"
    );
    // `null` keeps its documented meaning: follow the profile (none here: disabled).
    api.set_value(SIM, None);
    assert_eq!(api.sim(SIM)["effective"], "disabled");
}

#[test]
fn query_and_path_errors_are_json_naming_the_parameter() {
    let d = Daemon::start("");
    let api = d.api();
    api.put_sim(SIM, json!({}));
    let r = api.submit_wait("PUT", &format!("/v1/sims/{SIM}"), Some(json!({})));
    let id = r["id"].as_str().unwrap().to_owned();
    for (path, field) in [
        (format!("/v1/requests/{id}?wait=abc"), "wait"),
        (format!("/v1/requests/{id}?wait="), "wait"),
        (format!("/v1/requests/{id}?wait=-1"), "wait"),
        (format!("/v1/requests/{id}?colour=red"), "colour"),
        (format!("/v1/sims/{SIM}/events?limit=x"), "limit"),
        ("/v1/billing/2026-01?format=".to_owned(), "format"),
        ("/v1/billing/0000-00".to_owned(), "month"),
        ("/v1/sims?limit=0".to_owned(), "limit"),
        ("/v1/sims?limit=1001".to_owned(), "limit"),
        ("/v1/sims?bound=yes".to_owned(), "bound"),
        ("/v1/sims?effective=on".to_owned(), "effective"),
        ("/v1/sims?imei_management=x".to_owned(), "imei_management"),
        ("/v1/sims?imsi_prefix=12a".to_owned(), "imsi_prefix"),
        ("/v1/sims?cursor=abc".to_owned(), "cursor"),
        ("/v1/sims?profile=a%20b".to_owned(), "profile"),
        ("/v1/profiles?limit=x".to_owned(), "limit"),
        ("/v1/requests/12x".to_owned(), "id"),
        ("/v1/sims/12ab".to_owned(), "imsi"),
    ] {
        assert_names(&d, "GET", &path, None, field);
    }
    // Routes and methods that do not exist: JSON too.
    let (st, ct, v) = raw(&d, "GET", "/v1/nothing-here", None);
    assert_eq!((st, ct.as_str()), (404, "application/json"), "{v}");
    assert_eq!(v["field"], "path");
    let r = http()
        .patch(d.url(&format!("/v1/sims/{SIM}")))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    let allow = r.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("PUT") && allow.contains("DELETE"), "{allow}");
    assert_eq!(r.json::<Value>().unwrap()["field"], "method");
    // Each refusal is counted by status and logged naming the field.
    let m = common::metrics_text(&d);
    let count = |status: &str| common::counter(&m, "imei_lockd_api_refused_total", &[status]);
    assert_eq!(count("status=\"400\""), 18.0, "{m}");
    assert_eq!(count("status=\"404\""), 1.0);
    assert_eq!(count("status=\"405\""), 1.0);
    assert_eq!(count("status=\"415\""), 0.0, "registered at 0");
    assert!(d.log_text().contains("API request refused"));
    assert!(d.log_text().contains("imsi_prefix"));
}

#[test]
fn the_server_takes_what_the_document_allows_and_refuses_what_it_forbids() {
    let d = Daemon::start("");
    let api = d.api();
    // Profile names of every allowed character; a lock_fee of null is the configured default.
    for name in ["a", "fleet.eu-west_2", &"x".repeat(64)] {
        api.submit_wait(
            "PUT",
            &format!("/v1/profiles/{name}"),
            Some(json!({"imei_management": "lock", "lock_fee": null})),
        );
        let (st, p) = api.get(&format!("/v1/profiles/{name}"));
        assert_eq!(st, 200, "{p}");
        assert_eq!(p["lock_fee"], Value::Null, "{p}");
    }
    let (st, v) = api.call("GET", &format!("/v1/profiles/{}", "x".repeat(65)), None);
    assert_eq!((st, v["field"].as_str()), (400, Some("name")), "{v}");
    // Forbidden by the document, refused by the server: no body, an array for an object
    // (serde would read `[null, null]` as msisdn and profile cleared).
    assert_names(&d, "PUT", &format!("/v1/sims/{SIM}"), None, "body");
    assert_names(
        &d,
        "PUT",
        &format!("/v1/sims/{SIM}"),
        Some("[null, null]"),
        "body",
    );
    assert_names(
        &d,
        "PUT",
        "/v1/profiles/fleet",
        Some(r#"{"imei_management":"lock","lock_fee":""}"#),
        "lock_fee",
    );
    assert_names(
        &d,
        "PUT",
        "/v1/profiles/fleet",
        Some(r#"{"imei_management":null}"#),
        "imei_management",
    );
    // A year 0000 is a month the document allows.
    let (st, v) = api.get("/v1/billing/0000-01");
    assert_eq!((st, v), (200, json!([])));
    // An empty CSV (and one with a header only) is refused, naming the body.
    for csv in ["", "imsi,msisdn,profile,imei_management\n"] {
        let r = http()
            .post(d.url("/v1/sims:import"))
            .bearer_auth(TOKEN)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{csv:?}");
        let v: Value = r.json().unwrap();
        assert!(v["field"].is_string(), "{v}");
    }
}

#[test]
fn bodies_of_another_type_are_415_and_202_points_at_the_request() {
    let d = Daemon::start("");
    let r = http()
        .put(d.url(&format!("/v1/sims/{SIM}")))
        .bearer_auth(TOKEN)
        .header("content-type", "text/xml")
        .body("<sim/>")
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(r.json::<Value>().unwrap()["field"], "content-type");
    // `curl -d` and urllib label any body form-urlencoded: taken as JSON, as it always was.
    let r = http()
        .put(d.url(&format!("/v1/sims/{SIM}")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"msisdn": "4917"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http()
        .post(d.url("/v1/sims:import"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);

    let r = http()
        .put(d.url(&format!("/v1/sims/{SIM}")))
        .bearer_auth(TOKEN)
        .json(&json!({"imei_management": "lock"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let v: Value = r.json().unwrap();
    assert_eq!(
        location,
        format!("/v1/requests/{}", v["request_id"].as_str().unwrap())
    );
    let (st, req) = d.api().get(&format!("{location}?wait=30"));
    assert_eq!((st, req["status"].as_str()), (200, Some("processed")));
    // An oversize body is JSON too (axum's own 413 is plain text).
    let big = format!(
        "{{\"msisdn\":\"{}\"}}",
        "1".repeat(imei_lockd::api::JSON_LIMIT)
    );
    let r = http()
        .put(d.url(&format!("/v1/sims/{SIM}")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(big)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().unwrap()["field"], "body");
}
