//! Cluster mode, day to day, with real parts (three etcd members from Debian's etcd-server,
//! real `imei-lockd` nodes, RADIUS sessions signed as radclient signs them, the REST API):
//!
//! - the seed's pairing procedure with the API on one node and sessions on two others, then 50
//!   pairing/lock flaps across nodes: never a stale binding;
//! - etcd compacted while a node is stopped: it rebuilds its cache on restart and serves right;
//! - billing: a SIM locked through two nodes is one row a month, the month carried over once;
//! - an alert raised on two nodes within the window is one POST;
//! - a node frozen (SIGSTOP) while a change is processed is not waited for, and wakes not
//!   answering from its stale state;
//! - events past `cluster.event_retention_days` (the older key, with its WARN), settled requests
//!   past `retention.requests_days` (not the newest) and billing rows past
//!   `retention.billing_months` (bundles included) leave etcd and every cache.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::cluster::{assert_cache_equals_etcd, node_toml, nodes, nodes_with, radius};
use common::cluster::{unique_prefix, wait_serving, ACCEPT, REJECT};
use common::etcd::EtcdCluster;
use common::webhook::Receiver;
use common::{counter, metrics_text, Daemon};

/// A device's IMEISV as the gateways send it: TAC+SNR (14 digits) and SVN `01`.
fn imeisv(tac_snr: &str) -> String {
    format!("{tac_snr}01")
}

#[test]
fn pairing_procedure_then_50_flaps_across_nodes_never_leave_a_stale_binding() {
    let etcd = EtcdCluster::start(3);
    let ds = nodes(&etcd, 3, "pairing");
    let api = ds[0].api();
    let imsi = "001010000000801";
    let old = "35209900176148";
    let new = "49015420323751";
    // The seed's procedure: locked in the old device; Pairing; a session from the new device;
    // back to Lock. API on node 0, sessions on nodes 1 and 2.
    api.put_sim(imsi, json!({"imei_management": "lock"}));
    assert_eq!(radius(&ds[1], imsi, &imeisv(old), 1), Some(ACCEPT));
    assert_eq!(radius(&ds[2], imsi, &imeisv(new), 2), Some(REJECT));
    api.set_value(imsi, Some("pairing"));
    assert_eq!(radius(&ds[2], imsi, &imeisv(new), 3), Some(ACCEPT));
    api.set_value(imsi, Some("lock"));
    assert_eq!(radius(&ds[1], imsi, &imeisv(new), 4), Some(ACCEPT));
    assert_eq!(radius(&ds[2], imsi, &imeisv(old), 5), Some(REJECT));
    for d in &ds {
        assert_eq!(d.api().sim(imsi)["bound_imei"], new);
    }

    // 50 flaps: each Pairing round a fresh device pairs through one node; each Lock round that
    // device is the only one accepted, on the other node.
    let mut bound = new.to_owned();
    let mut wrong = 0;
    for round in 0..50u32 {
        let pairing = round % 2 == 0;
        api.set_value(imsi, Some(if pairing { "pairing" } else { "lock" }));
        let (a, b) = (&ds[1 + (round % 2) as usize], &ds[2 - (round % 2) as usize]);
        let id = (10 + 3 * round) as u8;
        let device = format!("3520990018{round:04}");
        let got = radius(a, imsi, &imeisv(&device), id);
        let want = if pairing { ACCEPT } else { REJECT };
        if got != Some(want) {
            wrong += 1;
            eprintln!("round {round}: new device got {got:?}, want {want}");
        }
        if pairing {
            bound = device;
        }
        // The bound device is accepted on the other node at once.
        let got = radius(b, imsi, &imeisv(&bound), id + 1);
        if got != Some(ACCEPT) {
            wrong += 1;
            eprintln!("round {round}: bound device {bound} got {got:?}");
        }
        let seen = b.api().sim(imsi)["bound_imei"].clone();
        if seen != bound.as_str() {
            wrong += 1;
            eprintln!("round {round}: node shows {seen}, want {bound}");
        }
    }
    assert_eq!(wrong, 0, "answers or bindings from stale state");
    for d in &ds {
        assert_cache_equals_etcd(d);
    }
}

#[test]
fn compaction_while_a_node_is_stopped_rebuilds_its_cache_on_restart() {
    let etcd = EtcdCluster::start(3);
    let mut ds = nodes(&etcd, 2, "compact");
    let imsis: Vec<String> = (0..30).map(|i| format!("0010100000009{i:02}")).collect();
    ds[0].api().import_locked(imsis.clone());
    let device = |i: usize| format!("3520990019{i:04}");
    for (i, imsi) in imsis.iter().enumerate().take(10) {
        assert_eq!(
            radius(&ds[1], imsi, &imeisv(&device(i)), i as u8),
            Some(ACCEPT)
        );
    }
    ds[1].terminate();
    // While node 1 is down: binds, a value change, a deleted SIM; then etcd compacts past
    // everything node 1 has applied.
    for (i, imsi) in imsis.iter().enumerate().skip(10) {
        assert_eq!(
            radius(&ds[0], imsi, &imeisv(&device(i)), i as u8),
            Some(ACCEPT)
        );
    }
    ds[0].api().set_value(&imsis[3], Some("disabled"));
    ds[0]
        .api()
        .submit_wait("DELETE", &format!("/v1/sims/{}", imsis[29]), None);
    etcd.compact(etcd.revision());
    ds[1].spawn();
    wait_serving(&ds[1], 2);
    let text = metrics_text(&ds[1]);
    assert_eq!(
        counter(
            &text,
            "imei_lockd_cache_rebuilds_total",
            &["reason=\"compacted\""]
        ),
        1.0,
        "one rebuild for the compaction:\n{}",
        ds[1].log_text()
    );
    for (i, imsi) in imsis.iter().enumerate().take(29) {
        assert_eq!(ds[1].api().sim(imsi)["bound_imei"], device(i), "{imsi}");
    }
    assert_eq!(ds[1].api().get(&format!("/v1/sims/{}", imsis[29])).0, 404);
    assert_eq!(ds[1].api().sim(&imsis[3])["effective"], "disabled");
    // Sessions on the rebuilt node: the bound device in, another out, the disabled SIM open.
    assert_eq!(
        radius(&ds[1], &imsis[20], &imeisv(&device(20)), 100),
        Some(ACCEPT)
    );
    assert_eq!(
        radius(&ds[1], &imsis[20], &imeisv(&device(21)), 101),
        Some(REJECT)
    );
    assert_eq!(
        radius(&ds[1], &imsis[3], &imeisv(&device(4)), 102),
        Some(ACCEPT)
    );
    for d in &ds {
        assert_cache_equals_etcd(d);
    }
}

/// Locks `imsi` through `a`'s API, binds 35209900176148 there, and has 49015420323751 rejected
/// on `b` (events: a bind and a mismatch).
fn lock_bind_and_mismatch(a: &Daemon, b: &Daemon, imsi: &str) {
    a.api().put_sim(imsi, json!({"imei_management": "lock"}));
    assert_eq!(radius(a, imsi, &imeisv("35209900176148"), 1), Some(ACCEPT));
    assert_eq!(radius(b, imsi, &imeisv("49015420323751"), 2), Some(REJECT));
}

/// The billing rows of `month` as node `d` shows them.
fn billing(d: &Daemon, month: &str) -> Vec<Value> {
    let (st, v) = d.api().get(&format!("/v1/billing/{month}"));
    assert_eq!(st, 200, "{v}");
    v.as_array().cloned().unwrap_or_default()
}

/// This month and the next, `YYYY-MM`, by the machine's clock.
fn this_and_next_month() -> (String, String) {
    let now = time::OffsetDateTime::now_utc();
    let (y, m) = (now.year(), u8::from(now.month()));
    let next = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (
        format!("{y:04}-{m:02}"),
        format!("{:04}-{:02}", next.0, next.1),
    )
}

#[test]
fn a_sim_locked_through_two_nodes_is_one_billing_row_and_the_month_rolls_over_once() {
    let etcd = EtcdCluster::start(3);
    let prefix = unique_prefix("billing");
    let mut ds: Vec<Daemon> = (0..2)
        .map(|i| Daemon::start(&node_toml(&etcd, &prefix, i)))
        .collect();
    for d in &ds {
        wait_serving(d, 2);
    }
    let (month, next) = this_and_next_month();
    let imsi = "001010000000951";
    let other = "001010000000952";
    // Locked through node 0, unlocked through node 1, locked again through node 1; a second
    // SIM locked through node 1 only.
    ds[0]
        .api()
        .put_sim(imsi, json!({"imei_management": "lock"}));
    ds[1].api().set_value(imsi, Some("disabled"));
    ds[1].api().set_value(imsi, Some("lock"));
    ds[1]
        .api()
        .put_sim(other, json!({"imei_management": "lock"}));
    for d in &ds {
        let rows = billing(d, &month);
        let of = |s: &str| rows.iter().filter(|r| r["imsi"] == s).count();
        assert_eq!((of(imsi), of(other), rows.len()), (1, 1, 2), "{rows:?}");
    }
    // Next month: both nodes restart with their clocks 32 days ahead (fresh caches, rebuilt
    // from etcd) and race for the roll-over; it happens once, one row per locked SIM.
    for d in &mut ds {
        d.terminate();
    }
    let ahead = (32 * 86_400).to_string();
    let env = [("IMEI_LOCKD_TEST_CLOCK_OFFSET_S", ahead.as_str())];
    let ds: Vec<Daemon> = (0..2)
        .map(|i| Daemon::start_with_env(&node_toml(&etcd, &prefix, i), &env))
        .collect();
    for d in &ds {
        wait_serving(d, 2);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while billing(&ds[0], &next).len() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let rolled = ds
        .iter()
        .map(|d| d.log_text().matches("billing month rolled over").count())
        .sum::<usize>();
    assert_eq!(rolled, 1, "one roll-over cluster-wide");
    for d in &ds {
        let rows = billing(d, &next);
        let of = |s: &str| rows.iter().filter(|r| r["imsi"] == s).count();
        assert_eq!((of(imsi), of(other), rows.len()), (1, 1, 2), "{rows:?}");
        assert_eq!(billing(d, &month).len(), 2);
    }
}

#[test]
fn an_alert_raised_on_two_nodes_within_its_window_is_one_post() {
    let hook = Receiver::start();
    let etcd = EtcdCluster::start(3);
    let extra = format!(
        "[[alerts.webhooks]]\nurl = \"http://127.0.0.1:{}/alerts\"\n\
         events = [\"imei_mismatch\"]\nmin_interval_s = 300\n",
        hook.port
    );
    let ds = nodes_with(&etcd, 2, "alerts", &extra);
    let imsi = "001010000000961";
    // Mismatches on both nodes, one after the other and at once.
    lock_bind_and_mismatch(&ds[0], &ds[0], imsi);
    assert_eq!(
        radius(&ds[1], imsi, &imeisv("49015420323752"), 3),
        Some(REJECT)
    );
    let t: Vec<_> = (0..2)
        .map(|i| {
            let port = ds[i].ports.radius_auth;
            thread::spawn(move || {
                let s = common::radius::udp("127.0.0.1:0", Duration::from_secs(2));
                let id = 10 + i as u8;
                let pkt = common::radius::access_request(
                    id,
                    common::radius::authenticator(id),
                    imsi,
                    Some(&imeisv(&format!("4901542032376{i}"))),
                    common::radius::SECRET,
                    true,
                );
                common::radius::exchange(&s, port, &pkt).and_then(|a| a.first().copied())
            })
        })
        .collect();
    for h in t {
        assert_eq!(h.join().unwrap(), Some(REJECT));
    }
    assert_eq!(
        hook.wait_for(1, Duration::from_secs(10)),
        1,
        "the first mismatch"
    );
    // Both nodes' outbox entries are handled (delivered or suppressed), nothing more is sent.
    let deadline = Instant::now() + Duration::from_secs(10);
    let suppressed = |d: &Daemon| {
        counter(
            &metrics_text(d),
            "imei_lockd_alerts_total",
            &["result=\"suppressed\""],
        )
    };
    while suppressed(&ds[0]) + suppressed(&ds[1]) < 3.0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        suppressed(&ds[0]) + suppressed(&ds[1]),
        3.0,
        "three alerts inside the window"
    );
    thread::sleep(Duration::from_secs(2));
    assert_eq!(hook.count(), 1, "{:?}", hook.bodies.lock());
    assert!(hook.bodies.lock()[0].contains(imsi));
}

#[test]
fn a_frozen_node_is_not_waited_for_and_wakes_without_answering_from_stale_state() {
    let etcd = EtcdCluster::start(3);
    let extra = "max_lag_ms = 300\n";
    let prefix = unique_prefix("frozen");
    // `max_lag_ms` belongs to [cluster], the last table node_toml opens before [cluster.etcd]:
    // put it in through the cluster table's text.
    let toml = |i: usize| {
        node_toml(&etcd, &prefix, i).replace("[cluster.etcd]", &format!("{extra}[cluster.etcd]"))
    };
    let ds: Vec<Daemon> = (0..2).map(|i| Daemon::start(&toml(i))).collect();
    for d in &ds {
        wait_serving(d, 2);
    }
    let imsi = "001010000000971";
    let bound = "35209900176148";
    let other = "49015420323751";
    ds[0]
        .api()
        .put_sim(imsi, json!({"imei_management": "lock"}));
    assert_eq!(radius(&ds[1], imsi, &imeisv(bound), 1), Some(ACCEPT));
    assert_eq!(radius(&ds[1], imsi, &imeisv(other), 2), Some(REJECT));
    // Node 1 frozen; a change is processed meanwhile: the API on node 0 says processed once
    // node 1 is surely not serving (evicted or its lease expired), not before.
    common::unsafe_kill(ds[1].pid() as i32, 19);
    let t = Instant::now();
    ds[0].api().set_value(imsi, Some("disabled"));
    let waited = t.elapsed();
    eprintln!("processed with node 1 frozen after {waited:?}");
    assert!(
        waited < Duration::from_secs(8),
        "waited {waited:?} for a frozen node"
    );
    // Woken: it answers nothing from its stale state (the lock), only the new state or nothing.
    common::unsafe_kill(ds[1].pid() as i32, 18);
    let mut stale = 0;
    let mut answered = 0;
    let until = Instant::now() + Duration::from_secs(10);
    let mut id = 10u8;
    while Instant::now() < until && answered < 5 {
        id = id.wrapping_add(1);
        match radius(&ds[1], imsi, &imeisv(other), id) {
            Some(ACCEPT) => answered += 1,
            Some(_) => stale += 1,
            None => {}
        }
    }
    assert_eq!(
        stale, 0,
        "the woken node answered from the state before the change"
    );
    assert_eq!(
        answered,
        5,
        "the woken node serves again:\n{}",
        ds[1].log_text()
    );
    let evicted: f64 = ds
        .iter()
        .map(|d| counter(&metrics_text(d), "imei_lockd_cluster_evictions_total", &[]))
        .sum();
    eprintln!("evictions: {evicted}");
    assert_cache_equals_etcd(&ds[1]);
}

#[test]
fn events_past_their_retention_leave_etcd_and_every_cache() {
    let etcd = EtcdCluster::start(3);
    let prefix = unique_prefix("retention");
    let toml = |i: usize| {
        node_toml(&etcd, &prefix, i).replace(
            "[cluster.etcd]",
            "event_retention_days = 30\n[cluster.etcd]",
        ) + "[retention]\nrequests_days = 30\nbilling_months = 1\n"
    };
    let mut ds: Vec<Daemon> = (0..2).map(|i| Daemon::start(&toml(i))).collect();
    for d in &ds {
        wait_serving(d, 2);
    }
    let imsi = "001010000000981";
    lock_bind_and_mismatch(&ds[0], &ds[1], imsi);
    let events = |d: &Daemon| {
        let (st, v) = d.api().get(&format!("/v1/sims/{imsi}/events"));
        assert_eq!(st, 200, "{v}");
        v.as_array().cloned().unwrap_or_default()
    };
    let before = events(&ds[1]).len();
    assert!(before >= 2, "a bind and a mismatch: {:?}", events(&ds[1]));
    // An import's value_changed events are written as one bundle key in etcd; they expire with
    // the rest.
    let imported: Vec<String> = (0..40)
        .map(|i| format!("00101000000{:04}", 2000 + i))
        .collect();
    ds[0].api().import_locked(imported.clone());
    let bundles = |etcd: &EtcdCluster| {
        let (rc, out) = etcd.etcdctl(&[
            "get",
            "--prefix",
            "--keys-only",
            &format!("{prefix}/evbundle/"),
        ]);
        assert_eq!(rc, 0, "{out}");
        out.lines().filter(|l| l.contains("/evbundle/")).count()
    };
    assert_eq!(bundles(&etcd), 1, "one bundle for the import's events");
    let sim_events = |d: &Daemon, imsi: &str| {
        let (st, v) = d.api().get(&format!("/v1/sims/{imsi}/events"));
        assert_eq!(st, 200, "{v}");
        v.as_array().map_or(0, Vec::len)
    };
    for d in &ds {
        assert!(
            imported.iter().all(|i| sim_events(d, i) == 1),
            "one event per imported SIM"
        );
    }
    // The newest request (it stays, however old); this month's billing rows: the locked SIM
    // (its own key) and the 40 imported ones (a bundle).
    let newest = {
        let (st, v) = ds[0].api().call(
            "PUT",
            "/v1/sims/001010000000982",
            Some(json!({"imei_management": "disabled"})),
        );
        assert_eq!(st, 202, "{v}");
        let id = v["request_id"].as_str().unwrap().to_owned();
        let (_, r) = ds[0].api().get(&format!("/v1/requests/{id}?wait=30"));
        assert_eq!(r["status"], "processed", "{r}");
        id.parse::<u64>().unwrap()
    };
    assert!(newest >= 3, "{newest}");
    // Its event expires with the others.
    let newest_events = sim_events(&ds[0], "001010000000982");
    let (m0, m1) = this_and_next_month();
    let rows_m0 = billing(&ds[0], &m0).len();
    assert_eq!(rows_m0, 1 + imported.len());
    let keys = |etcd: &EtcdCluster, under: &str| {
        let (rc, out) = etcd.etcdctl(&[
            "get",
            "--prefix",
            "--keys-only",
            &format!("{prefix}/{under}"),
        ]);
        assert_eq!(rc, 0, "{out}");
        out.lines().filter(|l| !l.trim().is_empty()).count()
    };
    assert_eq!(
        keys(&etcd, &format!("chbundle/{m0}/")),
        1,
        "the import's rows: one bundle"
    );
    assert_eq!(keys(&etcd, &format!("charge/{m0}/")), 1);
    assert_eq!(keys(&etcd, "req/") as u64, newest);

    // In the middle of the month after next (both nodes restarted with their clocks ahead):
    // one new mismatch; the retention singleton deletes the old events, the settled requests
    // but the newest, and this month's billing rows (the next month's, carried over, stay),
    // on every node.
    for d in &mut ds {
        d.terminate();
    }
    let now = time::OffsetDateTime::now_utc();
    let (y, m) = (now.year(), u8::from(now.month()));
    let (y2, m2) = if m >= 11 { (y + 1, m - 10) } else { (y, m + 2) };
    let target = time::Date::from_calendar_date(y2, time::Month::try_from(m2).unwrap(), 15)
        .unwrap()
        .midnight()
        .assume_utc();
    let ahead = (target.unix_timestamp() - now.unix_timestamp()).to_string();
    let env = [("IMEI_LOCKD_TEST_CLOCK_OFFSET_S", ahead.as_str())];
    let ds: Vec<Daemon> = (0..2)
        .map(|i| Daemon::start_with_env(&toml(i), &env))
        .collect();
    for d in &ds {
        wait_serving(d, 2);
    }
    assert_eq!(
        radius(&ds[1], imsi, &imeisv("49015420323752"), 3),
        Some(REJECT)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while ds.iter().any(|d| events(d).len() != 1) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    for d in &ds {
        let left = events(d);
        assert_eq!(left.len(), 1, "only the new event is left: {left:?}");
        assert_eq!(left[0]["imei"], "49015420323752", "{left:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while ds
        .iter()
        .any(|d| imported.iter().any(|i| sim_events(d, i) != 0))
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(100));
    }
    for d in &ds {
        for i in &imported {
            assert_eq!(sim_events(d, i), 0, "imported SIM {i}'s event expired");
        }
    }
    assert_eq!(bundles(&etcd), 0, "the bundle left etcd");
    // Requests and billing rows, on every node and in etcd.
    let settled = |d: &Daemon| {
        billing(d, &m0).is_empty()
            && billing(d, &m1).len() == rows_m0
            && d.api().get("/v1/requests/1").0 == 404
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ds.iter().all(settled) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    for d in &ds {
        assert!(billing(d, &m0).is_empty(), "{m0}'s rows deleted");
        assert_eq!(
            billing(d, &m1).len(),
            rows_m0,
            "{m1}'s rows carried over and kept"
        );
        for seq in 1..newest {
            assert_eq!(
                d.api().get(&format!("/v1/requests/{seq}")).0,
                404,
                "request {seq}"
            );
        }
        let (st, v) = d.api().get(&format!("/v1/requests/{newest}"));
        assert_eq!(
            (st, &v["status"]),
            (200, &json!("processed")),
            "the newest stays: {v}"
        );
    }
    assert_eq!(
        keys(&etcd, &format!("chbundle/{m0}/")),
        0,
        "the bundle left etcd"
    );
    assert_eq!(keys(&etcd, &format!("charge/{m0}/")), 0);
    assert!(
        keys(&etcd, &format!("chbundle/{m1}/")) >= 1,
        "{m1}'s rows stay"
    );
    assert_eq!(
        keys(&etcd, "req/"),
        1,
        "only the newest request is left in etcd"
    );
    let deleted = |kind: &str| -> f64 {
        ds.iter()
            .map(|d| {
                counter(
                    &metrics_text(d),
                    "imei_lockd_retention_deleted_total",
                    &[&format!("kind=\"{kind}\"")],
                )
            })
            .sum()
    };
    assert_eq!(deleted("requests"), (newest - 1) as f64);
    assert_eq!(deleted("billing"), rows_m0 as f64);
    assert_eq!(
        deleted("events"),
        (before + imported.len() + newest_events) as f64
    );
    assert!(
        ds.iter()
            .all(|d| d.log_text().contains("older name of retention.events_days")),
        "the older key is used, with a WARN"
    );
    let expired: f64 = ds
        .iter()
        .map(|d| counter(&metrics_text(d), "imei_lockd_events_expired_total", &[]))
        .sum();
    assert_eq!(
        expired,
        (before + imported.len() + newest_events) as f64,
        "each old event deleted once"
    );
    for d in &ds {
        assert_cache_equals_etcd(d);
    }
}
