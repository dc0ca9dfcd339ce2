//! Backup, restore and export with the real binaries: `POST /v1/backups` (and `imei-lockctl
//! backup`) on a daemon under RADIUS and provisioning traffic, `imei-lockd restore` of a
//! stopped daemon, compared over the API with what the daemon showed at the backup's moment;
//! the refusals of `restore`; `imei-lockctl export` round-tripped through the import; the
//! cluster store's 409.
//!
//! "The backup's moment" is made exact by pausing the traffic: every worker finishes the
//! operation it is in (a RADIUS answer received, a provisioning request processed) and waits;
//! the reference state is read over the API, the backup taken, the state read again (it must
//! not have moved); then the traffic resumes so that the daemon's state moves past the backup
//! before it is stopped. A first backup is taken with the traffic running, to show an online
//! checkpoint under load restores to a consistent state.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::cluster::radius;
use common::etcd::EtcdCluster;
use common::{bin, output, Api, Daemon, TOKEN};

const SIMS: u64 = 40;

fn imsi(i: u64) -> String {
    format!("0010{:011}", 7_000_000 + i)
}

/// An IMEISV (16 digits) of device `dev`.
fn imeisv(dev: u64) -> String {
    format!("{:014}01", 35_000_000_000_000 + dev)
}

/// `imei-lockd restore --config FILE --from DIR` with `env`: (exit code, stdout + stderr).
fn restore(config: &Path, from: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(bin("imei-lockd"));
    cmd.arg("restore")
        .arg("--config")
        .arg(config)
        .arg("--from")
        .arg(from);
    for (k, v) in env {
        cmd.env(k, v);
    }
    output(&mut cmd)
}

/// `imei-lockctl ARGS` against `d`: (exit code, stdout, stderr).
fn lockctl(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("imei-lockctl"))
        .args(["--api", &d.url(""), "--token", TOKEN])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Everything the API shows of the daemon's state: SIMs (with bindings and last-seen),
/// profiles, every provisioning request, every SIM's events, this month's billing rows.
fn state(api: &Api) -> BTreeMap<String, Value> {
    let mut s = BTreeMap::new();
    let mut sims = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/sims?limit=1000&cursor={c}"),
            None => "/v1/sims?limit=1000".to_owned(),
        };
        let (st, page) = api.get(&path);
        assert_eq!(st, 200, "{page}");
        sims.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    for sim in &sims {
        let imsi = sim["imsi"].as_str().unwrap();
        let (st, ev) = api.get(&format!("/v1/sims/{imsi}/events?limit=1000"));
        assert_eq!(st, 200, "{ev}");
        s.insert(format!("events {imsi}"), ev);
    }
    s.insert("sims".into(), Value::Array(sims));
    s.insert("profiles".into(), api.get("/v1/profiles").1);
    let mut id = 1;
    loop {
        let (st, r) = api.get(&format!("/v1/requests/{id}"));
        if st == 404 {
            break;
        }
        assert_eq!(st, 200, "{r}");
        s.insert(format!("request {id:06}"), r);
        id += 1;
    }
    let month = time::OffsetDateTime::now_utc();
    let month = format!("{:04}-{:02}", month.year(), u8::from(month.month()));
    s.insert("billing".into(), api.get(&format!("/v1/billing/{month}")).1);
    s
}

/// The request ids `state` saw.
fn requests(s: &BTreeMap<String, Value>) -> usize {
    s.keys().filter(|k| k.starts_with("request ")).count()
}

const RUN: u8 = 0;
const PAUSE: u8 = 1;
const STOP: u8 = 2;

/// RADIUS and provisioning workers that can be paused between operations.
struct Traffic {
    mode: Arc<AtomicU8>,
    parked: Arc<AtomicUsize>,
    /// Operations done: provisioning requests processed, RADIUS answers received.
    ops: Arc<[AtomicUsize; 2]>,
    workers: Vec<thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(d: &Daemon) -> Self {
        let mode = Arc::new(AtomicU8::new(RUN));
        let parked = Arc::new(AtomicUsize::new(0));
        let ops = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let mut workers = Vec::new();
        for w in 0..3u64 {
            let (mode, parked, ops) = (mode.clone(), parked.clone(), ops.clone());
            let api = d.api();
            let port = d.ports.radius_auth;
            workers.push(thread::spawn(move || {
                let mut me_parked = false;
                let mut n = w * 7919;
                loop {
                    match mode.load(Ordering::SeqCst) {
                        STOP => break,
                        PAUSE => {
                            if !me_parked {
                                parked.fetch_add(1, Ordering::SeqCst);
                                me_parked = true;
                            }
                            thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                        _ => {
                            if me_parked {
                                parked.fetch_sub(1, Ordering::SeqCst);
                                me_parked = false;
                            }
                        }
                    }
                    n += 1;
                    let sim = imsi(n % SIMS);
                    if w == 0 {
                        // Provisioning: values, resets and MSISDNs, each waited for.
                        match n % 4 {
                            0 => api.set_value(&sim, Some("pairing")),
                            1 => api.set_value(&sim, Some("lock")),
                            2 => {
                                api.submit_wait("POST", &format!("/v1/sims/{sim}/reset"), None);
                            }
                            _ => api.put_sim(&sim, json!({"msisdn": format!("+49170{n:06}")})),
                        }
                    } else {
                        // Sessions from a few devices per SIM: bindings, pairings, mismatches.
                        let dev = (n * 31 + w) % 3;
                        let answer = radius_at(port, &sim, &imeisv(n % SIMS * 10 + dev), n);
                        assert!(answer.is_some(), "no RADIUS answer for {sim}");
                    }
                    ops[usize::from(w != 0)].fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        Self {
            mode,
            parked,
            ops,
            workers,
        }
    }

    /// Returns once every worker has finished its operation and waits.
    fn pause(&self) {
        self.mode.store(PAUSE, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.parked.load(Ordering::SeqCst) < self.workers.len() {
            assert!(Instant::now() < deadline, "traffic did not pause");
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn resume(&self) {
        self.mode.store(RUN, Ordering::SeqCst);
    }

    /// Lets the workers run until `provisioning` more requests are processed and `sessions`
    /// more RADIUS answers received.
    fn run_for(&self, provisioning: usize, sessions: usize) {
        let target = [
            self.ops[0].load(Ordering::SeqCst) + provisioning,
            self.ops[1].load(Ordering::SeqCst) + sessions,
        ];
        let deadline = Instant::now() + Duration::from_secs(60);
        while (0..2).any(|i| self.ops[i].load(Ordering::SeqCst) < target[i]) {
            assert!(Instant::now() < deadline, "traffic stalled");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(self) {
        self.mode.store(STOP, Ordering::SeqCst);
        for w in self.workers {
            w.join().unwrap();
        }
    }
}

/// One Access-Request to 127.0.0.1:`port`: the answer's code.
fn radius_at(port: u16, imsi: &str, imei: &str, n: u64) -> Option<u8> {
    use common::radius::{access_request, authenticator, exchange, udp, SECRET};
    let s = udp("127.0.0.1:0", Duration::from_secs(5));
    let id = (n % 251) as u8;
    let pkt = access_request(id, authenticator(id), imsi, Some(imei), SECRET, true);
    exchange(&s, port, &pkt).and_then(|a| a.first().copied())
}

fn provision(api: &Api) {
    api.put_profile("fleet", "lock");
    api.put_profile("pairs", "pairing");
    for i in 0..SIMS {
        let body = match i % 3 {
            0 => json!({"profile": "fleet"}),
            1 => json!({"profile": "pairs", "msisdn": format!("+4917000{i:04}")}),
            _ => json!({"imei_management": "lock"}),
        };
        api.put_sim(&imsi(i), body);
    }
}

fn post_backup(api: &Api) -> Value {
    let (st, b) = api.call("POST", "/v1/backups", None);
    assert_eq!(st, 201, "{b}");
    b
}

#[test]
fn restore_brings_back_the_state_at_the_backup_moment() {
    let mut d = Daemon::start("");
    let api = d.api();
    provision(&api);
    let traffic = Traffic::start(&d);
    traffic.run_for(20, 100);

    // Online, under traffic: must succeed and be complete on disk.
    let busy = post_backup(&api);
    assert_eq!(busy["sims"], SIMS, "{busy}");
    traffic.run_for(20, 100);

    // The exact moment: traffic paused, state read, backup, state read again.
    traffic.pause();
    let before = state(&api);
    let (code, out, err) = lockctl(&d, &["--json", "backup", "create"]);
    assert_eq!(code, 0, "{out}{err}");
    let exact: Value = serde_json::from_str(&out).unwrap();
    let after = state(&api);
    assert_eq!(before, after, "the state moved while traffic was paused");
    assert_eq!(exact["sims"], SIMS);
    let bound = after["sims"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["bound_imei"].is_null())
        .count();
    assert!(bound > 0, "the traffic bound no IMEI: {:?}", after["sims"]);
    assert!(
        requests(&after) >= 2 + SIMS as usize + 40,
        "little provisioning"
    );

    // The backups as listed: newest first, in the default directory beside the data dir.
    let (st, list) = api.get("/v1/backups");
    assert_eq!(st, 200);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            exact["name"].as_str().unwrap(),
            busy["name"].as_str().unwrap()
        ]
    );
    let backups = d.dir.path().join("backups");
    let exact_dir = PathBuf::from(exact["path"].as_str().unwrap());
    assert_eq!(
        exact_dir,
        backups.canonicalize().unwrap().join(names[0]),
        "{exact}"
    );
    let (code, table, err) = lockctl(&d, &["backup", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains(names[0]) && table.contains(names[1]),
        "{table}"
    );
    let m = common::metrics_text(&d);
    assert_eq!(
        common::counter(&m, "imei_lockd_backups_total", &["result=\"created\""]),
        2.0,
        "{m}"
    );

    // The daemon moves on past the backup, then stops.
    traffic.resume();
    traffic.run_for(20, 100);
    traffic.pause();
    let moved = state(&api);
    assert_ne!(moved, after, "the traffic after the backup changed nothing");
    traffic.stop();
    assert_eq!(d.terminate(), Some(0));

    let (code, out) = restore(&d.config, &exact_dir, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("before-restore-"), "{out}");
    let data = d.dir.path().join("data");
    let aside: Vec<PathBuf> = std::fs::read_dir(d.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("data.before-restore-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    d.spawn();
    assert_eq!(
        state(&d.api()),
        after,
        "the restored daemon shows another state than at the backup"
    );

    // The backup taken under traffic restores to a consistent state: its requests are those
    // of the log at that point (a prefix of what the daemon later had), all processed.
    assert_eq!(d.terminate(), Some(0));
    let busy_dir = PathBuf::from(busy["path"].as_str().unwrap());
    let (code, out) = restore(&d.config, &busy_dir, &[]);
    assert_eq!(code, 0, "{out}");
    d.spawn();
    let api = d.api();
    let restored = state(&api);
    let n = requests(&restored);
    assert!(n > 0 && n < requests(&after), "{n} requests");
    for id in 1..=n {
        let key = format!("request {id:06}");
        let r = &restored[&key];
        assert_eq!(r["submitted_at"], after[&key]["submitted_at"], "{key}");
        let (_, done) = api.get(&format!("/v1/requests/{id}?wait=10"));
        assert_eq!(done["status"], "processed", "{key}: {done}");
    }
    assert_eq!(restored["sims"].as_array().unwrap().len() as u64, SIMS);
    assert!(data.is_dir());
}

#[test]
fn restore_refuses_a_running_daemon_and_what_is_no_backup() {
    let mut d = Daemon::start("");
    let api = d.api();
    api.put_profile("fleet", "lock");
    api.put_sim(&imsi(1), json!({"profile": "fleet"}));
    assert_eq!(
        radius(&d, &imsi(1), &imeisv(5), 9),
        Some(common::cluster::ACCEPT)
    );
    let b = post_backup(&api);
    let from = PathBuf::from(b["path"].as_str().unwrap());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(from.join("imei-lockd-backup.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["format"], "imei-lockd-backup");
    assert_eq!(manifest["format_version"], 1);
    assert_eq!(manifest["sims"], 1);
    assert_eq!(manifest["name"], b["name"]);

    // The daemon runs on the data directory: refused, nothing moved.
    let (code, out) = restore(&d.config, &from, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("in use") && out.contains("stop imei-lockd"),
        "{out}"
    );
    let entries = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let top = entries(d.dir.path());
    assert!(!top.iter().any(|n| n.contains("restor")), "{top:?}");
    assert_eq!(d.terminate(), Some(0));

    // A plain directory, and a backup of another format version: status 2, named.
    let work = tempfile::tempdir().unwrap();
    let (code, out) = restore(&d.config, work.path(), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not an imei-lockd backup"), "{out}");
    assert!(out.contains(work.path().to_str().unwrap()), "{out}");
    let newer = work.path().join("newer");
    std::fs::create_dir(&newer).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), newer.join(e.file_name())).unwrap();
    }
    let mut m = manifest.clone();
    m["format_version"] = json!(2);
    std::fs::write(newer.join("imei-lockd-backup.json"), m.to_string()).unwrap();
    let (code, out) = restore(&d.config, &newer, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("format version 2"), "{out}");
    // Cluster mode has no data directory to restore into.
    let (code, out) = restore(
        &d.config,
        &from,
        &[
            ("IMEI_LOCKD__CLUSTER__BACKEND", "etcd"),
            ("IMEI_LOCKD__CLUSTER__ETCD__ENDPOINTS", "http://127.0.0.1:9"),
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("etcdctl snapshot restore"), "{out}");
    assert_eq!(entries(d.dir.path()), top, "a refusal changes nothing");

    // A backup directory inside the data directory is a configuration error, named.
    let inside = d.dir.path().join("data").join("backups");
    let (code, out) = common::check_config_file(
        &d.config,
        &[("IMEI_LOCKD__NODE__BACKUP_DIR", inside.to_str().unwrap())],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("node.backup_dir"), "{out}");

    // Into a fresh data directory (none there before): the daemon starts on the backup.
    let fresh = work.path().join("fresh-data");
    let env = [("IMEI_LOCKD__NODE__DATA_DIR", fresh.to_str().unwrap())];
    let (code, out) = restore(&d.config, &from, &env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no data directory there before"), "{out}");
    d.env.push((env[0].0.to_owned(), env[0].1.to_owned()));
    d.spawn();
    let sim = d.api().sim(&imsi(1));
    assert_eq!(sim["bound_imei"], imeisv(5)[..14], "{sim}");
}

/// Rows of a CSV export, as (header, rows of cells).
fn csv_rows(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    let header = rd.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = rd
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

#[test]
fn export_round_trips_through_the_import() {
    let d = Daemon::start("");
    let api = d.api();
    provision(&api);
    // More than two pages of the list.
    api.import_locked((0..2100).map(|i| format!("00102{i:010}")));
    for i in 0..SIMS {
        if i % 4 == 0 {
            assert!(radius(&d, &imsi(i), &imeisv(i), 7).is_some());
        }
    }
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("sims.csv");
    let (code, out, err) = lockctl(
        &d,
        &[
            "export",
            "--format",
            "csv",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("exported 2140 SIMs"), "{err}");
    let first = std::fs::read_to_string(&file).unwrap();
    let (header, rows) = csv_rows(&first);
    assert_eq!(
        header.join(","),
        "imsi,msisdn,profile,imei_management,effective,bound_imei,bound_at,last_seen_imei,last_seen_at"
    );
    assert_eq!(rows.len(), 2140);
    // Rows match the API, cell by cell (empty for absent values).
    for i in [0, 1, 2, 4] {
        let sim = api.sim(&imsi(i));
        let row = rows.iter().find(|r| r[0] == imsi(i)).unwrap();
        for (k, col) in header.iter().enumerate() {
            assert_eq!(row[k], sim[col].as_str().unwrap_or(""), "{col} of {sim}");
        }
    }

    // NDJSON: one object per line with the same keys, to standard output.
    let (code, out, err) = lockctl(&d, &["export", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2140);
    assert_eq!(lines[0].as_object().unwrap().len(), header.len());
    let bound = lines.iter().find(|l| l["imsi"] == imsi(0)).unwrap();
    assert_eq!(bound["bound_imei"], imeisv(0)[..14]);
    assert_eq!(bound["imei_management"], Value::Null);

    // Into a fresh daemon (profiles first), and out again: the same SIMs and values. The
    // state columns stay empty there: bindings come from sessions, not from an import.
    let fresh = Daemon::start("");
    fresh.api().put_profile("fleet", "lock");
    fresh.api().put_profile("pairs", "pairing");
    let (code, out, err) = lockctl(&fresh, &["sim", "import", file.to_str().unwrap(), "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, again, err) = lockctl(&fresh, &["export", "--format", "csv"]);
    assert_eq!(code, 0, "{err}");
    let (header2, rows2) = csv_rows(&again);
    assert_eq!(header2, header);
    let import_cols = |rows: &[Vec<String>]| -> Vec<Vec<String>> {
        rows.iter().map(|r| r[..5].to_vec()).collect()
    };
    assert_eq!(import_cols(&rows2), import_cols(&rows));
    assert!(rows2.iter().all(|r| r[5..].iter().all(String::is_empty)));
    // With no state to lose (no session seen on the second daemon), a third round is equal
    // byte for byte.
    let round2 = work.path().join("round2.csv");
    std::fs::write(&round2, &again).unwrap();
    let third = Daemon::start("");
    third.api().put_profile("fleet", "lock");
    third.api().put_profile("pairs", "pairing");
    let (code, _, err) = lockctl(
        &third,
        &["sim", "import", round2.to_str().unwrap(), "--wait"],
    );
    assert_eq!(code, 0, "{err}");
    let (_, third_out, _) = lockctl(&third, &["export", "--format", "csv"]);
    assert_eq!(third_out, again);
}

#[test]
fn cluster_mode_answers_409_with_the_etcd_way() {
    common::etcd::require_etcd();
    let etcd = EtcdCluster::start(1);
    let nodes = common::cluster::nodes(&etcd, 1, "backup");
    let api = nodes[0].api();
    let (st, v) = api.call("POST", "/v1/backups", None);
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["field"], "cluster.backend");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("etcdctl snapshot save"),
        "{v}"
    );
    let (code, _, err) = lockctl(&nodes[0], &["backup", "create"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("HTTP 409"), "{err}");
    let m = common::metrics_text(&nodes[0]);
    assert_eq!(
        common::counter(&m, "imei_lockd_backups_total", &["result=\"refused\""]),
        2.0,
        "the API's refusal and the CLI's"
    );
}
