//! `imei-lockctl cluster import` and `imei-lockctl cluster status` with real parts: an embedded
//! `imei-lockd` provisioned over the API and used over RADIUS, then stopped; the real
//! `imei-lockctl` moving its data directory into three real etcd members (Debian's etcd-server);
//! two cluster nodes started on that prefix, compared over the API with what the embedded daemon
//! showed, and used over RADIUS.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use common::cluster::{radius, unique_prefix, wait_serving, ACCEPT, REJECT};
use common::etcd::EtcdCluster;
use common::webhook::Receiver;
use common::{bin, free_port, http, output, Daemon, Ports, TOKEN};

/// The alert webhook every daemon of a test posts `imei_mismatch` to.
fn webhook_toml(port: u16) -> String {
    format!(
        "[[alerts.webhooks]]\nurl = \"http://127.0.0.1:{port}/alerts\"\n\
         events = [\"imei_mismatch\"]\nmin_interval_s = 300\n"
    )
}

/// `[cluster]` of node `i` on `endpoints` under `prefix`.
fn cluster_toml(endpoints: &[String], prefix: &str, i: usize) -> String {
    let quoted: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
    format!(
        "[cluster]\nbackend = \"etcd\"\nnode_name = \"node-{i}\"\nlease_ttl_s = 3\n\
         [cluster.etcd]\nendpoints = [{}]\nprefix = \"{prefix}\"\n",
        quoted.join(", ")
    )
}

/// Writes a whole daemon configuration with `extra` into `dir` and returns its path.
fn config_file(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("cluster.toml");
    std::fs::write(&path, common::config_text(dir, &Ports::new(), extra)).unwrap();
    path
}

/// `imei-lockctl ARGS`: (exit code, stdout + stderr).
fn lockctl(args: &[&str]) -> (i32, String) {
    output(Command::new(bin("imei-lockctl")).args(args))
}

/// `imei-lockctl cluster import --from DIR --config FILE`.
fn import(from: &Path, config: &Path) -> (i32, String) {
    lockctl(&[
        "cluster",
        "import",
        "--from",
        from.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ])
}

/// `imei-lockctl cluster status` (plus `more` arguments) against `d`.
fn status(d: &Daemon, more: &[&str]) -> (i32, String) {
    let api = d.url("");
    let mut args = vec!["--api", &api, "--token", TOKEN, "cluster", "status"];
    args.extend_from_slice(more);
    lockctl(&args)
}

/// Everything the API shows about the data set: each SIM, its events, the request log, the
/// profiles, the SIM list, and the month's billing as JSON and CSV.
fn snapshot(d: &Daemon, imsis: &[String], month: &str) -> Value {
    let api = d.api();
    let mut sims = serde_json::Map::new();
    let mut events = serde_json::Map::new();
    for imsi in imsis {
        sims.insert(imsi.clone(), api.sim(imsi));
        let (s, ev) = api.get(&format!("/v1/sims/{imsi}/events?limit=100"));
        assert_eq!(s, 200, "{ev}");
        events.insert(imsi.clone(), ev);
    }
    let mut requests = Vec::new();
    for id in 1.. {
        let (s, r) = api.get(&format!("/v1/requests/{id}"));
        if s == 404 {
            break;
        }
        assert_eq!(s, 200, "{r}");
        requests.push(r);
    }
    let csv = http()
        .get(d.url(&format!("/v1/billing/{month}?format=csv")))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .text()
        .unwrap();
    json!({
        "sims": sims,
        "events": events,
        "requests": requests,
        "profiles": api.get("/v1/profiles?limit=100").1,
        "list": api.get("/v1/sims?limit=1000").1,
        "billing": api.get(&format!("/v1/billing/{month}")).1,
        "billing_csv": csv,
    })
}

/// The month (`YYYY-MM`) of an RFC 3339 time the API gave.
fn month_of(rfc3339: &Value) -> String {
    rfc3339.as_str().unwrap()[..7].to_owned()
}

#[test]
fn embedded_data_moves_into_etcd_and_two_nodes_serve_it() {
    let hook_port = free_port();
    let hook = webhook_toml(hook_port);
    let mut embedded = Daemon::start(&hook);
    let api = embedded.api();
    api.submit_wait(
        "PUT",
        "/v1/profiles/iot",
        Some(json!({"imei_management": "lock", "lock_fee": "2.50"})),
    );
    api.put_profile("quiet", "disabled");
    let locked: Vec<String> = (0..10).map(|i| format!("0010100000090{i:02}")).collect();
    api.import_locked(locked.clone());
    let in_iot = "001010000009100";
    let pairing = "001010000009101";
    api.put_sim(in_iot, json!({"msisdn": "491700000100", "profile": "iot"}));
    api.put_sim(
        pairing,
        json!({"profile": "quiet", "imei_management": "pairing"}),
    );
    let device = |i: usize| format!("3520990017{i:04}");
    for (i, imsi) in locked.iter().enumerate().take(6) {
        assert_eq!(
            radius(&embedded, imsi, &format!("{}01", device(i)), i as u8),
            Some(ACCEPT)
        );
    }
    assert_eq!(
        radius(&embedded, in_iot, &format!("{}01", device(100)), 50),
        Some(ACCEPT)
    );
    assert_eq!(
        radius(&embedded, pairing, &format!("{}01", device(101)), 51),
        Some(ACCEPT)
    );
    api.set_value(&locked[1], Some("disabled"));
    api.submit_wait("POST", &format!("/v1/sims/{}/reset", locked[2]), None);
    // A mismatch (an event and an alert the webhook, down now, does not take: it stays in the
    // outbox).
    let thief = "4901542032375101";
    assert_eq!(radius(&embedded, &locked[0], thief, 60), Some(REJECT));
    let mut imsis = locked.clone();
    imsis.extend([in_iot.to_owned(), pairing.to_owned()]);
    let month = month_of(&api.sim(&locked[0])["bound_at"]);
    let before = snapshot(&embedded, &imsis, &month);
    assert_eq!(
        before["billing"].as_array().map_or(0, Vec::len),
        11,
        "the 10 locked SIMs and the one of profile iot: {}",
        before["billing"]
    );
    let last_request = before["requests"].as_array().unwrap().len();
    assert_eq!(last_request, 7, "{}", before["requests"]);
    assert_eq!(embedded.terminate(), Some(0), "{}", embedded.log_text());

    let etcd = EtcdCluster::start(3);
    let prefix = unique_prefix("import");
    let work = tempfile::tempdir().unwrap();
    let config = config_file(
        work.path(),
        &format!("{hook}{}", cluster_toml(&etcd.endpoints(), &prefix, 0)),
    );
    let data = embedded.dir.path().join("data");
    let (code, out) = import(&data, &config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sims      12"), "{out}");
    assert!(out.contains("SIMs/s"), "{out}");

    let alerts = Receiver::start_on(hook_port);
    let nodes: Vec<Daemon> = (0..2)
        .map(|i| {
            Daemon::start(&format!(
                "{hook}{}",
                cluster_toml(&etcd.endpoints(), &prefix, i)
            ))
        })
        .collect();
    for d in &nodes {
        wait_serving(d, 2);
    }
    for (i, d) in nodes.iter().enumerate() {
        let after = snapshot(d, &imsis, &month);
        for part in [
            "sims",
            "events",
            "requests",
            "profiles",
            "list",
            "billing",
            "billing_csv",
        ] {
            assert_eq!(
                after[part], before[part],
                "node-{i}: {part} differs from the embedded daemon's"
            );
        }
    }
    // The alert the embedded daemon could not deliver is delivered from the imported outbox.
    assert!(
        alerts.wait_body(Duration::from_secs(30), |a| {
            a["imei"] == thief[..14] && a["imsi"] == locked[0].as_str()
        }),
        "the imported alert is delivered by the cluster"
    );
    for (i, d) in nodes.iter().enumerate() {
        let id = 100 + 10 * i as u8;
        assert_eq!(
            radius(d, &locked[0], &format!("{}01", device(0)), id),
            Some(ACCEPT),
            "the bound device on node-{i}"
        );
        assert_eq!(
            radius(d, &locked[0], "4901542032375202", id + 1),
            Some(REJECT),
            "another device on node-{i}"
        );
        assert_eq!(
            radius(d, &locked[1], "4901542032375303", id + 2),
            Some(ACCEPT),
            "a disabled SIM on node-{i}"
        );
    }
    // The request counter came along: the next request continues the log.
    let (s, v) = nodes[1].api().call(
        "PUT",
        "/v1/sims/001010000009999",
        Some(json!({"imei_management": "lock"})),
    );
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["request_id"], (last_request + 1).to_string());

    let (code, out) = import(&data, &config);
    assert_eq!(code, 1, "a second import into the same prefix: {out}");
    assert!(
        out.contains(&prefix) && out.contains("already holds"),
        "{out}"
    );

    let (code, out) = status(&nodes[0], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("node-0") && out.contains("node-1"),
        "both nodes: {out}"
    );
    let leader = format!("m{}", etcd.wait_for_leader(Duration::from_secs(10)));
    let members: Vec<&str> = out.lines().filter(|l| l.starts_with('m')).collect();
    assert_eq!(members.len(), 3, "three etcd members: {out}");
    for line in members {
        let is_leader = line.split_whitespace().next() == Some(leader.as_str());
        assert_eq!(line.contains("leader"), is_leader, "{line}\n{out}");
    }
    let (code, out) = status(&nodes[1], &["--json"]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["backend"], "etcd");
    assert_eq!(v["node"], "node-1");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(2));

    // `cluster verify`: each node's cache equals etcd at one revision.
    for d in &nodes {
        let api = d.url("");
        let (code, out) = lockctl(&["--api", &api, "--token", TOKEN, "cluster", "verify"]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(": equal"), "{out}");
        assert!(out.contains("sims") && out.contains("events"), "{out}");
    }
}

#[test]
fn import_refuses_a_running_daemon_a_plain_directory_and_an_embedded_config() {
    let running = Daemon::start("");
    let work = tempfile::tempdir().unwrap();
    // Nothing listens there: every refusal below happens before etcd is asked.
    let endpoints = vec![format!("http://127.0.0.1:{}", free_port())];
    let config = config_file(work.path(), &cluster_toml(&endpoints, "/refused", 0));
    let data = running.dir.path().join("data");

    let (code, out) = import(&data, &config);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("in use") && out.contains("stop imei-lockd"),
        "{out}"
    );
    assert!(
        out.contains(data.to_str().unwrap()),
        "names the directory: {out}"
    );

    let (code, out) = import(work.path(), &config);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not an imei-lockd data directory"), "{out}");

    let embedded = work.path().join("embedded.toml");
    std::fs::write(
        &embedded,
        common::config_text(work.path(), &Ports::new(), ""),
    )
    .unwrap();
    let (code, out) = import(&data, &embedded);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cluster.backend"), "{out}");

    // A stopped daemon's directory, etcd unreachable: exit 3, naming the endpoint.
    let mut running = running;
    assert_eq!(running.terminate(), Some(0));
    let (code, out) = import(&data, &config);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains(&endpoints[0]), "{out}");
}

#[test]
fn status_and_verify_on_an_embedded_daemon_say_embedded() {
    let d = Daemon::start("");
    let (code, out) = status(&d, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("backend: embedded"), "{out}");
    assert!(
        out.contains("provisioning") && out.contains("local"),
        "{out}"
    );
    let (code, out) = status(&d, &["--json"]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["backend"], "embedded");
    // Nothing to verify: the API's 409 names the embedded store.
    let api = d.url("");
    let (code, out) = lockctl(&["--api", &api, "--token", TOKEN, "cluster", "verify"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("embedded store"), "{out}");
}
