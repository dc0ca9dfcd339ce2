//! Retention with the real daemon in embedded mode: records are made with its clock shifted
//! back (`IMEI_LOCKD_TEST_CLOCK_OFFSET_S`), then the daemon restarts at the real time with
//! `[retention]` set through the environment, and its pass at start deletes what is past it.
//! The REST API and `/metrics` show what went and what stayed:
//!
//! - settled requests (a CSV import's among them) older than `requests_days` go; a pending one
//!   and the newest stay; a deleted one answers 404; the log goes on after the newest, also
//!   across a restart;
//! - billing rows of months before the current month minus `billing_months` go, the newer
//!   months stay;
//! - events older than `events_days` go, newer ones stay;
//! - 0 keeps everything.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{counter, metrics_text, wait_metrics, Api, Daemon};

const DAY: i64 = 86_400;
const HOLD: &str = "IMEI_LOCKD_TEST_HOLD_PROVISIONING";
const OFFSET: &str = "IMEI_LOCKD_TEST_CLOCK_OFFSET_S";

/// Restarts `d` with `env` (and nothing else) in its environment; returns how many lines its
/// log had before (the log file is appended to across restarts).
fn restart(d: &mut Daemon, env: &[(&str, String)]) -> usize {
    d.terminate();
    let lines = d.log_text().lines().count();
    d.env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    d.spawn();
    lines
}

/// A daemon started with `env`.
fn start(extra: &str, env: &[(&str, String)]) -> Daemon {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Daemon::start_with_env(extra, &env)
}

/// `[retention]` through the environment.
fn retention(events: u64, requests: u64, billing: u64) -> Vec<(&'static str, String)> {
    vec![
        ("IMEI_LOCKD__RETENTION__EVENTS_DAYS", events.to_string()),
        ("IMEI_LOCKD__RETENTION__REQUESTS_DAYS", requests.to_string()),
        ("IMEI_LOCKD__RETENTION__BILLING_MONTHS", billing.to_string()),
    ]
}

fn with(
    mut a: Vec<(&'static str, String)>,
    more: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    a.extend_from_slice(more);
    a
}

/// Submits and returns the request id (not waiting).
fn submit(api: &Api, method: &str, path: &str, body: Value) -> String {
    let (st, v) = api.call(method, path, Some(body));
    assert_eq!(st, 202, "{method} {path}: {v}");
    v["request_id"].as_str().unwrap().to_owned()
}

/// Submits and waits until processed; returns the request id.
fn processed(api: &Api, method: &str, path: &str, body: Value) -> String {
    let id = submit(api, method, path, body);
    let (st, r) = api.get(&format!("/v1/requests/{id}?wait=30"));
    assert_eq!((st, &r["status"]), (200, &json!("processed")), "{r}");
    id
}

fn import(api: &Api, imsis: &[&str]) -> String {
    api.import_locked(imsis.iter().map(|i| (*i).to_owned()))
}

fn request_status(api: &Api, id: &str) -> (u16, Value) {
    api.get(&format!("/v1/requests/{id}"))
}

fn events(api: &Api, imsi: &str) -> usize {
    let (st, v) = api.get(&format!("/v1/sims/{imsi}/events"));
    assert_eq!(st, 200, "{v}");
    v.as_array().map_or(0, Vec::len)
}

fn billing(api: &Api, month: &str) -> Vec<String> {
    let (st, v) = api.get(&format!("/v1/billing/{month}"));
    assert_eq!(st, 200, "{v}");
    let mut imsis: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["imsi"].as_str().unwrap().to_owned())
        .collect();
    imsis.sort();
    imsis
}

/// `YYYY-MM` of the month `back` months before the one of now + `offset_s`.
fn month(offset_s: i64, back: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = time::OffsetDateTime::from_unix_timestamp(now + offset_s).unwrap();
    let index = i64::from(t.year()) * 12 + i64::from(u8::from(t.month())) - 1 - back;
    format!(
        "{:04}-{:02}",
        index.div_euclid(12),
        index.rem_euclid(12) + 1
    )
}

/// Months from `from` to `to`, both included (`YYYY-MM`).
fn months_between(from: &str, to: &str) -> Vec<String> {
    let index = |m: &str| {
        let (y, mo) = m.split_once('-').unwrap();
        y.parse::<i64>().unwrap() * 12 + mo.parse::<i64>().unwrap() - 1
    };
    (index(from)..=index(to))
        .map(|i| format!("{:04}-{:02}", i.div_euclid(12), i.rem_euclid(12) + 1))
        .collect()
}

fn deleted(d: &Daemon, kind: &str) -> f64 {
    counter(
        &metrics_text(d),
        "imei_lockd_retention_deleted_total",
        &[&format!("kind=\"{kind}\"")],
    )
}

/// Waits until the pass at start has logged its line for each of the three kinds, in the log
/// after line `since`.
fn wait_pass(d: &Daemon, since: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let count = || {
        d.log_text()
            .lines()
            .skip(since)
            .filter(|l| l.contains("retention pass done") || l.contains("retention: kept forever"))
            .count()
    };
    while count() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(count() >= 3, "no retention pass:\n{}", d.log_text());
}

#[test]
fn old_records_go_and_the_rest_stays() {
    let back = (-400 * DAY).to_string();
    let keep = retention(0, 0, 0);
    // 400 days ago: a SIM locked then set to pairing, two SIMs imported locked (value_changed
    // events, billing rows of that month).
    let mut d = start("", &with(keep.clone(), &[(OFFSET, back.clone())]));
    let api = d.api();
    let (a, b, c, e, f) = (
        "001010000000701",
        "001010000000702",
        "001010000000703",
        "001010000000705",
        "001010000000706",
    );
    let r_a = processed(
        &api,
        "PUT",
        &format!("/v1/sims/{a}"),
        json!({"imei_management": "lock"}),
    );
    let r_import = import(&api, &[b, c]);
    let r_pairing = processed(
        &api,
        "PUT",
        &format!("/v1/sims/{a}/imei-management"),
        json!({"value": "pairing"}),
    );
    let old_month = month(-400 * DAY, 0);
    assert_eq!(billing(&api, &old_month), vec![a, b, c]);
    let old_events: usize = [a, b, c].iter().map(|i| events(&api, i)).sum();
    assert!(old_events >= 3, "value_changed events: {old_events}");

    // Now, kept forever: the month roll-over charges the two locked SIMs for every month
    // since, a young request is processed, and nothing is deleted.
    let since = restart(&mut d, &keep);
    wait_pass(&d, since);
    let now_month = month(0, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while billing(&api, &now_month).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(billing(&api, &now_month), vec![b, c], "carried over");
    let r_young = processed(
        &api,
        "PUT",
        &format!("/v1/sims/{e}"),
        json!({"imei_management": "lock"}),
    );
    for id in [&r_a, &r_import, &r_pairing] {
        assert_eq!(request_status(&api, id).0, 200, "0 keeps request {id}");
    }
    assert_eq!(billing(&api, &old_month).len(), 3, "0 keeps billing rows");
    let m = metrics_text(&d);
    for kind in ["events", "requests", "billing"] {
        let line = format!("imei_lockd_retention_deleted_total{{kind=\"{kind}\"}} 0");
        assert!(m.contains(&line), "registered at 0: {line}");
    }

    // 400 days ago again, provisioning held: a request that stays pending (old), then a
    // second one, also pending, the newest.
    restart(
        &mut d,
        &with(keep.clone(), &[(OFFSET, back.clone()), (HOLD, "1".into())]),
    );
    let r_pending = submit(
        &api,
        "PUT",
        &format!("/v1/sims/{f}"),
        json!({"imei_management": "lock"}),
    );
    let r_newest = submit(
        &api,
        "PUT",
        &format!("/v1/sims/{f}"),
        json!({"msisdn": "4915112345"}),
    );

    // Now, with retention (provisioning still held, so the pending ones stay pending):
    // 90 days of events and requests, 6 months of billing.
    let kept_months = 6;
    let since = restart(
        &mut d,
        &with(retention(90, 90, kept_months), &[(HOLD, "1".into())]),
    );
    wait_pass(&d, since);
    let m = wait_metrics(&d, Duration::from_secs(20), |m| {
        counter(
            m,
            "imei_lockd_retention_deleted_total",
            &["kind=\"requests\""],
        ) >= 3.0
    });
    // Requests: the three old settled ones (the import's among them) went.
    for id in [&r_a, &r_import, &r_pairing] {
        let (st, v) = request_status(&api, id);
        assert_eq!(st, 404, "request {id} deleted: {v}");
        assert_eq!(
            v["error"],
            format!("unknown request {id}"),
            "as for an unknown id: {v}"
        );
    }
    assert_eq!(
        counter(
            &m,
            "imei_lockd_retention_deleted_total",
            &["kind=\"requests\""]
        ),
        3.0
    );
    for id in [&r_young, &r_pending, &r_newest] {
        assert_eq!(request_status(&api, id).0, 200, "request {id} stays");
    }
    assert_eq!(request_status(&api, &r_pending).1["status"], "pending");
    // Billing: months before (now - 6) went, the rest stayed.
    let cutoff = month(0, kept_months as i64);
    let mut gone = 0;
    for mo in months_between(&old_month, &now_month) {
        let rows = billing(&api, &mo);
        if mo < cutoff {
            assert!(rows.is_empty(), "{mo} deleted: {rows:?}");
            gone += if mo == old_month { 3 } else { 2 };
        } else if mo == now_month {
            assert_eq!(rows, vec![b, c, e], "{mo} kept");
        } else {
            assert_eq!(rows, vec![b, c], "{mo} kept");
        }
    }
    assert!(
        gone >= 3 + 2 * 5,
        "the old month and the ones after it: {gone}"
    );
    assert_eq!(deleted(&d, "billing"), f64::from(gone));
    // Events: the old ones went, the young SIM's stayed.
    for i in [a, b, c] {
        assert_eq!(events(&api, i), 0, "{i}'s old events deleted");
    }
    assert!(events(&api, e) >= 1, "young events stay");
    assert_eq!(deleted(&d, "events"), old_events as f64);
    assert_eq!(
        counter(&metrics_text(&d), "imei_lockd_events_expired_total", &[]),
        old_events as f64,
        "the older metric counts the same deletions"
    );
}

#[test]
fn the_newest_request_stays_and_the_log_goes_on_after_it() {
    let back = (-200 * DAY).to_string();
    let mut d = start("", &[(OFFSET, back.clone())]);
    let api = d.api();
    let imsi = "001010000000711";
    let ids: Vec<String> = ["lock", "pairing", "disabled"]
        .iter()
        .map(|v| {
            processed(
                &api,
                "PUT",
                &format!("/v1/sims/{imsi}"),
                json!({"imei_management": v}),
            )
        })
        .collect();
    let newest: u64 = ids.last().unwrap().parse().unwrap();
    let since = restart(&mut d, &retention(90, 90, 36));
    wait_pass(&d, since);
    let m = metrics_text(&d);
    assert_eq!(
        counter(
            &m,
            "imei_lockd_retention_deleted_total",
            &["kind=\"requests\""]
        ),
        2.0,
        "all settled and old, but the newest stays"
    );
    for id in &ids[..2] {
        assert_eq!(request_status(&api, id).0, 404);
    }
    let (st, v) = request_status(&api, &ids[2]);
    assert_eq!((st, &v["status"]), (200, &json!("processed")), "{v}");
    // The log goes on after the newest, now and after a restart (the sequence is rebuilt
    // from the newest request).
    let next = processed(
        &api,
        "PUT",
        &format!("/v1/sims/{imsi}"),
        json!({"msisdn": "491511"}),
    );
    assert_eq!(next, (newest + 1).to_string());
    d.kill9();
    d.spawn();
    let after = processed(
        &api,
        "PUT",
        &format!("/v1/sims/{imsi}"),
        json!({"msisdn": "491512"}),
    );
    assert_eq!(after, (newest + 2).to_string());
    assert_eq!(request_status(&api, &ids[0]).0, 404, "still gone");
}

#[test]
fn the_older_cluster_key_still_sets_the_events_retention_with_a_warning() {
    let warned = |d: &Daemon| {
        d.log_text().lines().any(|l| {
            l.contains("WARN")
                && l.contains("cluster.event_retention_days")
                && l.contains("move the value to [retention] events_days")
        })
    };
    let d = Daemon::start("[cluster]\nevent_retention_days = 30\n");
    wait_pass(&d, 0);
    assert!(warned(&d), "{}", d.log_text());
    let d = Daemon::start("[cluster]\nevent_retention_days = 30\n[retention]\nevents_days = 5\n");
    wait_pass(&d, 0);
    assert!(!warned(&d), "no warning when retention.events_days is set");
}

#[test]
fn check_config_names_a_retention_key_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let ports = common::Ports::new();
    let path = dir.path().join("imei-lockd.toml");
    let write = |extra: &str| {
        std::fs::write(&path, common::config_text(dir.path(), &ports, extra)).unwrap();
    };
    write("[retention]\nevents_days = 0\nrequests_days = 0\nbilling_months = 0\n");
    let (rc, out) = common::check_config_file(&path, &[]);
    assert_eq!(rc, 0, "0 keeps forever: {out}");
    for (extra, key) in [
        (
            "[retention]\nevents_days = 36501\n",
            "retention.events_days",
        ),
        (
            "[retention]\nrequests_days = 99999\n",
            "retention.requests_days",
        ),
        (
            "[retention]\nbilling_months = 1201\n",
            "retention.billing_months",
        ),
        ("[retention]\nbilling_days = 3\n", "billing_days"),
    ] {
        write(extra);
        let (rc, out) = common::check_config_file(&path, &[]);
        assert_eq!(rc, 2, "{extra}: {out}");
        assert!(out.contains(key), "{extra}: names {key}: {out}");
    }
    write("");
    let (rc, out) =
        common::check_config_file(&path, &[("IMEI_LOCKD__RETENTION__REQUESTS_DAYS", "40000")]);
    assert_eq!(rc, 2, "{out}");
    assert!(out.contains("retention.requests_days"), "{out}");
}
