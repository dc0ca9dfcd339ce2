//! Cluster mode with real parts: three etcd members (Debian's etcd-server, started here on
//! loopback ports) and real `imei-lockd` nodes, driven over RADIUS (raw UDP, signed like
//! radclient), Gx and S6b (python-diameter) and the REST API.
//!
//! - the store conformance battery on the etcd store;
//! - racing first sessions over three nodes and three interfaces bind exactly one IMEI;
//! - a change reported processed on one node is in effect at once on another (no stale read), 200
//!   times;
//! - a node killed with -9 under sessions restarts, catches up, and its cache equals etcd.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::etcd::EtcdCluster;
use common::radius::{access_request, authenticator, exchange, udp, SECRET};
use imei_lockd::store::etcd::{EtcdSettings, EtcdStore};
use imei_lockd::store::rocks::RocksOptions;

use common::cluster::{assert_cache_equals_etcd, nodes, radius, unique_prefix};
use common::cluster::{wait_serving, with_check_digit};
use common::cluster::{ACCEPT, PCEF, REJECT};

#[test]
fn store_conformance_on_etcd() {
    let etcd = EtcdCluster::start(3);
    let endpoints = etcd.endpoints();
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
    let dirs = std::sync::Mutex::new(Vec::new());
    let handle = rt.handle().clone();
    let fresh = move || -> Box<dyn imei_lockd::store::Store> {
        let dir = tempfile::tempdir().unwrap();
        let settings = EtcdSettings {
            endpoints: endpoints.clone(),
            prefix: unique_prefix("conformance"),
            node_name: "conformance".into(),
            lease_ttl: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(2),
            ..EtcdSettings::default()
        };
        let path = dir.path().to_path_buf();
        dirs.lock().unwrap().push(dir);
        let store = handle.block_on(async {
            let s = EtcdStore::open(&path, &RocksOptions::default(), settings)
                .await
                .unwrap();
            assert!(s.wait_serving(Duration::from_secs(15)).await, "not serving");
            s
        });
        Box::new(store)
    };
    // The battery blocks on ledger futures: run it on the runtime's blocking pool.
    rt.block_on(async move {
        tokio::task::spawn_blocking(move || imei_lockd::store::conformance::run_all(&fresh))
            .await
            .unwrap();
    });
}

#[test]
fn racing_first_sessions_on_three_nodes_bind_one_imei() {
    let etcd = EtcdCluster::start(3);
    let ds = nodes(&etcd, 3, "race");
    let imsi = "001010000000501";
    ds[0]
        .api()
        .put_sim(imsi, json!({"imei_management": "lock"}));
    // 30 first sessions, 10 devices per node and interface, all at once: RADIUS on node 0,
    // Gx on node 1, S6b on node 2.
    let imeis: Vec<String> = (0..30)
        .map(|i| format!("35209900{:06}01", 100 + i))
        .collect();
    let mut radius_threads = Vec::new();
    for (i, imei) in imeis.iter().take(10).enumerate() {
        let imei = imei.clone();
        let port = ds[0].ports.radius_auth;
        radius_threads.push(thread::spawn(move || {
            let s = udp("127.0.0.1:0", Duration::from_secs(3));
            let pkt = access_request(
                i as u8,
                authenticator(i as u8),
                imsi,
                Some(&imei),
                SECRET,
                true,
            );
            (
                imei,
                exchange(&s, port, &pkt).and_then(|a| a.first().copied()),
            )
        }));
    }
    let gx_steps: Vec<Value> = std::iter::once(json!({"op": "cer"}))
        .chain((10..20).map(|i| json!({"op": "ccr", "type": 1, "imsi": imsi, "imei": imeis[i]})))
        .collect();
    let s6b_steps: Vec<Value> = std::iter::once(json!({"op": "cer"}))
        .chain((20..30).map(|i| {
            json!({"op": "aar", "imsi": imsi, "imei": with_check_digit(&imeis[i][..14]), "sv": "01"})
        }))
        .collect();
    let gx = common::pydiameter::spawn_client(ds[1].ports.diameter, PCEF, json!(gx_steps));
    let s6b = common::pydiameter::spawn_client(ds[2].ports.diameter, PCEF, json!(s6b_steps));
    let mut accepted: Vec<String> = Vec::new();
    let mut answered = 0;
    for t in radius_threads {
        let (imei, code) = t.join().unwrap();
        match code {
            Some(ACCEPT) => accepted.push(imei[..14].to_owned()),
            Some(REJECT) => {}
            other => panic!("RADIUS answer {other:?} for {imei}"),
        }
        answered += 1;
    }
    for (results, first) in [
        (common::pydiameter::finish(gx), 10),
        (common::pydiameter::finish(s6b), 20),
    ] {
        for (k, r) in results[1..].iter().enumerate() {
            let code = r["result_code"]
                .as_u64()
                .or(r["experimental_result"].as_u64());
            match code {
                Some(2001) => accepted.push(imeis[first + k][..14].to_owned()),
                Some(5003) | Some(5420) | Some(5030) => {}
                other => panic!("Diameter answer {other:?}: {r}"),
            }
            answered += 1;
        }
    }
    assert_eq!(answered, 30);
    accepted.dedup();
    assert_eq!(
        accepted.len(),
        1,
        "exactly one device accepted: {accepted:?}"
    );
    let bound = accepted[0].clone();
    for d in &ds {
        assert_eq!(
            d.api().sim(imsi)["bound_imei"],
            bound,
            "every node sees one binding"
        );
    }
    // A retransmission-like repeat to another node never flips the decision.
    for (i, d) in ds.iter().enumerate() {
        let again = radius(d, imsi, &format!("{bound}01"), 200 + i as u8);
        assert_eq!(again, Some(ACCEPT), "bound device on node {i}");
        let other = radius(d, imsi, &imeis[29], 210 + i as u8);
        let other_bound = imeis[29][..14] == bound;
        assert_eq!(other, Some(if other_bound { ACCEPT } else { REJECT }));
    }
}

#[test]
fn a_change_processed_on_one_node_is_in_effect_on_another_at_once() {
    let etcd = EtcdCluster::start(3);
    let ds = nodes(&etcd, 3, "visibility");
    let imsi = "001010000000601";
    let bound = "35209900176148";
    let other = "4901542032375101";
    ds[0]
        .api()
        .put_sim(imsi, json!({"imei_management": "lock"}));
    assert_eq!(radius(&ds[1], imsi, &format!("{bound}23"), 1), Some(ACCEPT));
    let mut stale = 0;
    let rounds = 200;
    let mut latencies = Vec::new();
    for round in 0..rounds {
        let value = if round % 2 == 0 { "disabled" } else { "lock" };
        let t = Instant::now();
        ds[0].api().set_value(imsi, Some(value));
        latencies.push(t.elapsed());
        // At once, on another node: another device is accepted exactly when disabled.
        let node = &ds[1 + round % 2];
        let code = radius(node, imsi, other, (round % 250) as u8);
        let want = if value == "disabled" { ACCEPT } else { REJECT };
        if code != Some(want) {
            stale += 1;
            eprintln!(
                "round {round}: {value} answered {code:?} on node {}",
                1 + round % 2
            );
        }
    }
    latencies.sort();
    eprintln!(
        "processed (202 → processed on every node): p50 {:?}, p99 {:?}",
        latencies[rounds / 2],
        latencies[rounds * 99 / 100]
    );
    assert_eq!(
        stale, 0,
        "sessions answered from state older than a processed request"
    );
}

#[test]
fn a_node_killed_under_sessions_restarts_and_catches_up() {
    let etcd = EtcdCluster::start(3);
    let mut ds = nodes(&etcd, 2, "kill");
    let imsis: Vec<String> = (0..20).map(|i| format!("0010100000007{i:02}")).collect();
    ds[0].api().import_locked(imsis.clone());
    let device = |i: usize| format!("3520990017{i:04}");
    // First sessions for the first half hammer node 1 from a thread while it is killed.
    let port = ds[1].ports.radius_auth;
    let first_half: Vec<String> = imsis[..10].to_vec();
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = killed.clone();
    let load = thread::spawn(move || {
        let s = udp("127.0.0.1:0", Duration::from_millis(300));
        let mut answered = 0;
        let mut round = 0u8;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            round = round.wrapping_add(1);
            for (i, imsi) in first_half.iter().enumerate() {
                let id = round.wrapping_mul(10).wrapping_add(i as u8);
                let imei = format!("{}01", device(i));
                let pkt = access_request(id, authenticator(id), imsi, Some(&imei), SECRET, true);
                match exchange(&s, port, &pkt).and_then(|a| a.first().copied()) {
                    Some(ACCEPT) => answered += 1,
                    Some(other) => panic!("node 1 answered {other} for {imsi}"),
                    None => {}
                }
            }
        }
        answered
    });
    thread::sleep(Duration::from_millis(400));
    ds[1].kill9();
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    let answered_before_kill = load.join().unwrap();
    assert!(
        answered_before_kill > 0,
        "node 1 answered nothing before the kill"
    );
    // Every SIM (bound through node 1 or not yet) is accepted from its device through node 0.
    for (i, imsi) in imsis.iter().enumerate() {
        assert_eq!(
            radius(&ds[0], imsi, &format!("{}01", device(i)), i as u8),
            Some(ACCEPT),
            "{imsi}"
        );
    }
    ds[0].api().set_value(&imsis[0], Some("disabled"));
    ds[1].spawn();
    wait_serving(&ds[1], 2);
    for (i, imsi) in imsis.iter().enumerate() {
        let sim = ds[1].api().sim(imsi);
        assert_eq!(sim["bound_imei"], device(i), "{sim}");
    }
    assert_eq!(ds[1].api().sim(&imsis[0])["effective"], "disabled");
    // Another device: rejected on the restarted node for a locked SIM.
    assert_eq!(
        radius(&ds[1], &imsis[5], "4901542032375101", 77),
        Some(REJECT)
    );
    // Both caches equal a read of etcd at the revision each has applied.
    for d in &ds {
        common::cluster::assert_cache_equals_etcd(d);
    }
}

#[test]
fn nodes_restarted_one_after_the_other_still_know_each_other() {
    let etcd = EtcdCluster::start(3);
    let mut ds = nodes(&etcd, 2, "restart");
    // Node 0 restarts, then node 1: node 1 resumes its watch after node 0's publications, so it
    // must read the node records (kept in memory, not in the cache) rather than wait for the
    // watch to bring them; else it would not wait for node 0 before reporting processed.
    for d in ds.iter_mut() {
        assert_eq!(d.terminate(), Some(0), "clean stop");
        d.spawn();
        wait_serving(d, 2);
    }
    for d in &ds {
        wait_serving(d, 2);
    }
}

#[test]
fn a_large_import_is_applied_once_and_an_oversize_one_is_refused_with_413() {
    let etcd = EtcdCluster::start(3);
    let mut ds = nodes(&etcd, 2, "import");
    // 60 000 SIMs: 527 transactions of 114 SIMs (and their two bundles) at etcd's default
    // --max-txn-ops, up to 16 of them in flight at once.
    let imsis: Vec<String> = (0..60_000).map(|i| format!("00102{i:010}")).collect();
    // Inside the range, before the import: SIMs with a key of their own (created one by one,
    // two of them bound) and a deleted one (a tombstone). The import's compares of "no key of
    // its own" go around them; they are written under their own keys and keep their bindings.
    let own: Vec<String> = [7, 1_000, 1_001, 30_000, 59_998]
        .iter()
        .map(|&i| imsis[i].clone())
        .collect();
    ds[0].api().import_locked(own.clone());
    let device = |i: usize| format!("3520990019{i:04}01");
    for (i, imsi) in own.iter().enumerate().take(2) {
        assert_eq!(radius(&ds[1], imsi, &device(i), i as u8), Some(ACCEPT));
    }
    ds[0]
        .api()
        .submit_wait("DELETE", &format!("/v1/sims/{}", own[4]), None);
    ds[0].api().import_locked(imsis.clone());
    for (i, imsi) in own.iter().enumerate() {
        let sim = ds[1].api().sim(imsi);
        assert_eq!(sim["effective"], "lock", "{sim}");
        let want = if i < 2 {
            Value::from(&device(i)[..14])
        } else {
            Value::Null
        };
        assert_eq!(sim["bound_imei"], want, "{sim}");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let month = imei_lockd::provisioning::month_of(now);
    let (s, rows) = ds[1].api().get(&format!("/v1/billing/{month}"));
    assert_eq!(s, 200);
    let charged = rows.as_array().unwrap();
    assert_eq!(charged.len(), imsis.len(), "one charge per SIM");
    for imsi in imsis.iter().step_by(499) {
        let sim = ds[1].api().sim(imsi);
        assert_eq!(sim["effective"], "lock", "{sim}");
        let (_, events) = ds[1].api().get(&format!("/v1/sims/{imsi}/events"));
        let changes = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "value_changed")
            .count();
        assert_eq!(changes, 1, "{events}");
    }
    // One request over the members' --max-request-bytes (1.5 MiB by default): 413 naming the
    // body, not a 503 to retry; the log is not stuck behind it.
    let mut csv = String::from("imsi,msisdn,profile,imei_management\n");
    for i in 0..100_000 {
        csv.push_str(&format!("00103{i:010},4917{i:09},,lock\n"));
    }
    let r = common::http()
        .post(ds[0].url("/v1/sims:import"))
        .bearer_auth(common::TOKEN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().unwrap();
    assert_eq!(body["field"], "body", "{body}");
    ds[1]
        .api()
        .import_locked((0..10).map(|i| format!("00104{i:010}")));
    // Node 1 starts again with an empty cache: it rebuilds from a read whose first pages hold
    // the bundles (~1 000 keys of 5–8 KiB, more than the 4 MiB a gRPC answer may be), in
    // smaller pages, and holds what etcd holds.
    ds[1].terminate();
    std::fs::remove_dir_all(ds[1].dir.path().join("data")).unwrap();
    ds[1].spawn();
    wait_serving(&ds[1], 2);
    assert!(
        ds[1].log_text().contains("asking fewer keys"),
        "the rebuild met an answer over the limit and went on in smaller pages"
    );
    assert_cache_equals_etcd(&ds[1]);
    let (_, events) = ds[1]
        .api()
        .get(&format!("/v1/sims/{}/events", imsis[59_999]));
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{events}");
    let (_, rows) = ds[1].api().get(&format!("/v1/billing/{month}"));
    assert_eq!(rows.as_array().map(Vec::len), Some(imsis.len() + 10));
}
