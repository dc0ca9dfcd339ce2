//! Shared harness for the integration tests: starts the real `imei-lockd` binary on free loopback
//! ports with its own data directory, waits until its API answers, and talks to it over HTTP.
//! `history` and `checker` (the fault runs' operation history and its checker) need no daemon.

#![allow(dead_code)]

pub mod availability;
pub mod checker;
pub mod cluster;
pub mod debroot;
pub mod diameter;
pub mod etcd;
pub mod faults;
pub mod history;
pub mod netns;
pub mod promtool;
pub mod pydiameter;
pub mod radius;
pub mod rng;
pub mod testca;
pub mod unit;
pub mod webhook;
pub mod workload;

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const TOKEN: &str = "it-token";

/// Path of a built binary of this package.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "imei-lockd" => PathBuf::from(env!("CARGO_BIN_EXE_imei-lockd")),
        "imei-lockctl" => PathBuf::from(env!("CARGO_BIN_EXE_imei-lockctl")),
        other => panic!("unknown binary {other}"),
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `imei-lockd check-config --config PATH` with `env`: (exit code, stdout + stderr).
pub fn check_config_file(path: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(bin("imei-lockd"));
    cmd.arg("check-config").arg("--config").arg(path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    output(&mut cmd)
}

/// Runs `cmd` to completion: (exit code or -1, stdout followed by stderr).
pub fn output(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Runs `cmd` and returns its standard output; fails the test, with the standard error, when it
/// exits non-zero.
pub fn stdout_of(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A free TCP port on 127.0.0.1 (also free for UDP, checked).
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Ports of one daemon instance.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// The address every listener binds: 127.0.0.1, or a namespace's ([`Daemon::start_in`]).
    pub host: Ipv4Addr,
    pub api: u16,
    pub metrics: u16,
    pub radius_auth: u16,
    pub radius_acct: u16,
    pub diameter: u16,
}

impl Ports {
    pub fn new() -> Self {
        Self {
            host: Ipv4Addr::LOCALHOST,
            api: free_port(),
            metrics: free_port(),
            radius_auth: free_port(),
            radius_acct: free_port(),
            diameter: free_port(),
        }
    }
}

/// A daemon under test: its config file, data directory and process.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub ports: Ports,
    pub config: PathBuf,
    pub child: Option<Child>,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    /// The namespace it runs in ([`Daemon::start_in`]).
    pub netns: Option<netns::Host>,
}

/// The configuration a test daemon runs with; `extra` is appended (more sections or tables).
pub fn config_text(dir: &Path, ports: &Ports, extra: &str) -> String {
    config_text_with_keys(dir, ports, &Keys::default(), extra)
}

/// More keys for the tables [`config_text`] writes itself (one `key = value` per line), which
/// `extra` cannot reopen.
#[derive(Clone, Copy, Default)]
pub struct Keys<'a> {
    pub node: &'a str,
    pub radius: &'a str,
}

/// [`config_text`] with more `[node]` and `[radius]` keys.
pub fn config_text_with_keys(dir: &Path, ports: &Ports, keys: &Keys, extra: &str) -> String {
    let Keys { node, radius } = keys;
    let host = ports.host;
    // The RADIUS client: the test process, on loopback or on the host end of the node's link.
    let client = if host.is_loopback() {
        "127.0.0.1/32".to_owned()
    } else {
        let [a, b, c, _] = host.octets();
        format!("{a}.{b}.{c}.0/24")
    };
    format!(
        r#"
[node]
data_dir = "{data}"
block_cache_mb = 16
{node}
[log]
format = "json"
level = "debug"
[policy]
unknown_sim = "reject"
[radius]
auth_listen = "{host}:{ra}"
acct_listen = "{host}:{rc}"
missing_imei = "reject"
{radius}
[[radius.clients]]
name = "local"
address = "{client}"
secret = "testing123"
require_message_authenticator = true
[diameter]
listen = ["tcp://{host}:{d}"]
origin_host = "aaa.localdomain"
origin_realm = "localdomain"
watchdog_s = 30
[[diameter.peers]]
origin_host = "pgw.localdomain"
[api]
listen = "{host}:{api}"
token = "{TOKEN}"
[metrics]
listen = "{host}:{m}"
[billing]
lock_fee = "1.00"
currency = "EUR"
{extra}
"#,
        data = dir.join("data").display(),
        ra = ports.radius_auth,
        rc = ports.radius_acct,
        d = ports.diameter,
        api = ports.api,
        m = ports.metrics,
    )
}

impl Daemon {
    /// Writes a config (with `extra` appended) and starts the daemon.
    pub fn start(extra: &str) -> Self {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with_keys(&Keys::default(), extra, env)
    }

    /// [`Daemon::start_with_env`] with more `[node]`/`[radius]` keys (see [`Keys`]).
    pub fn start_with_keys(keys: &Keys, extra: &str, env: &[(&str, &str)]) -> Self {
        Self::start_placed(keys, extra, env, None)
    }

    /// [`Daemon::start`] inside `host`'s namespace, every listener on its second link's address
    /// (which the test reaches while a [`netns::Net::cut`] of its first link keeps etcd away).
    pub fn start_in(host: &netns::Host, extra: &str) -> Self {
        Self::start_placed(&Keys::default(), extra, &[], Some(host.clone()))
    }

    fn start_placed(
        keys: &Keys,
        extra: &str,
        env: &[(&str, &str)],
        netns: Option<netns::Host>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let host = netns.as_ref().map(|h| {
            h.side_addr
                .expect("a node's namespace has a client-side link")
        });
        let place = |mut p: Ports| {
            if let Some(h) = host {
                p.host = h;
            }
            p
        };
        let ports = place(Ports::new());
        let config = dir.path().join("imei-lockd.toml");
        std::fs::write(
            &config,
            config_text_with_keys(dir.path(), &ports, keys, extra),
        )
        .unwrap();
        let log = dir.path().join("daemon.log");
        let mut d = Self {
            dir,
            ports,
            config,
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log,
            netns,
        };
        // A port found free may be taken by another process before the daemon binds it (tests
        // run in parallel, with etcd members and other daemons): new ports, a few times.
        for _ in 0..3 {
            match d.try_spawn() {
                Ok(()) => return d,
                Err(log) if log.contains("Address already in use") => {
                    d.ports = place(Ports::new());
                    std::fs::write(
                        &d.config,
                        config_text_with_keys(d.dir.path(), &d.ports, keys, extra),
                    )
                    .unwrap();
                }
                Err(log) => panic!("daemon exited early:\n{log}"),
            }
        }
        d.spawn();
        d
    }

    /// Starts the process and waits for its API.
    pub fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("daemon exited early:\n{log}");
        }
    }

    /// [`Daemon::spawn`]; `Err(log)` when the process exits before its API answers.
    fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = match &self.netns {
            Some(h) => netns::Net::exec(h, bin("imei-lockd")),
            None => Command::new(bin("imei-lockd")),
        };
        cmd.arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().unwrap());
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exit {status}:\n{}", self.log_text()));
            }
            if let Ok(r) = http().get(self.url("/healthz")).send() {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon not ready in 30 s:\n{}", self.log_text());
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{}", self.ports.host, self.ports.api, path)
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        terminate_child(self.child.take()?)
    }

    pub fn api(&self) -> Api {
        Api {
            base: format!("http://{}:{}", self.ports.host, self.ports.api),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends a signal with the `kill` command (no libc in the tests).
pub fn unsafe_kill(pid: i32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

pub fn http() -> reqwest::blocking::Client {
    http_within(Duration::from_secs(60))
}

/// An HTTP client whose every request gives up after `timeout`.
pub fn http_within(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()
        .unwrap()
}

/// A small API client for tests.
pub struct Api {
    pub base: String,
}

impl Api {
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = http()
            .request(m, format!("{}{}", self.base, path))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    /// Submits and waits for the request to be processed; asserts it was.
    pub fn submit_wait(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, body);
        assert_eq!(s, 202, "{method} {path}: {v}");
        let id = v["request_id"].as_str().unwrap().to_owned();
        let (s, r) = self.get(&format!("/v1/requests/{id}?wait=30"));
        assert_eq!(s, 200);
        assert_eq!(r["status"], "processed", "{method} {path}: {r}");
        r
    }

    pub fn put_profile(&self, name: &str, value: &str) {
        self.submit_wait(
            "PUT",
            &format!("/v1/profiles/{name}"),
            Some(serde_json::json!({ "imei_management": value })),
        );
    }

    pub fn put_sim(&self, imsi: &str, body: Value) {
        self.submit_wait("PUT", &format!("/v1/sims/{imsi}"), Some(body));
    }

    pub fn set_value(&self, imsi: &str, value: Option<&str>) {
        self.submit_wait(
            "PUT",
            &format!("/v1/sims/{imsi}/imei-management"),
            Some(serde_json::json!({ "value": value })),
        );
    }

    /// Imports `imsis` as locked, unbound SIMs in one CSV request and waits until processed;
    /// returns the request id.
    pub fn import_locked<I: IntoIterator<Item = String>>(&self, imsis: I) -> String {
        let mut csv = String::from("imsi,msisdn,profile,imei_management\n");
        for imsi in imsis {
            csv.push_str(&format!("{imsi},,,lock\n"));
        }
        let r = http()
            .post(format!("{}/v1/sims:import", self.base))
            .bearer_auth(TOKEN)
            .body(csv)
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        let id = r.json::<Value>().unwrap()["request_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, st) = self.get(&format!("/v1/requests/{id}?wait=30"));
        assert_eq!(st["status"], "processed", "{st}");
        id
    }

    pub fn sim(&self, imsi: &str) -> Value {
        let (s, v) = self.get(&format!("/v1/sims/{imsi}"));
        assert_eq!(s, 200, "{v}");
        v
    }
}

/// The daemon's Prometheus text (empty when it cannot be scraped).
pub fn metrics_text(d: &Daemon) -> String {
    http()
        .get(format!(
            "http://{}:{}/metrics",
            d.ports.host, d.ports.metrics
        ))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default()
}

/// Sum of the series `name` whose labels contain all of `labels` (e.g. `reason="x"`); 0 when
/// none matches.
pub fn counter(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits up to `within` until `cond` holds for the daemon's metrics; returns the last text.
pub fn wait_metrics(d: &Daemon, within: Duration, cond: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + within;
    loop {
        let m = metrics_text(d);
        if cond(&m) || Instant::now() >= deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Resident set size of a process, KiB (VmRSS of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// SIGTERM `c`, wait up to 20 s for it to exit (then SIGKILL); its exit code, None if killed.
pub fn terminate_child(mut c: std::process::Child) -> Option<i32> {
    unsafe_kill(c.id() as i32, 15);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(s) = c.try_wait().unwrap() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
    None
}

/// A real radclient Access-Request (`testing123`) for `imsi` in device `imeisv` to the daemon's
/// auth port: the answer's name ("Access-Accept", "Access-Reject"), or `None` without one.
pub fn radclient_access(auth_port: u16, imsi: &str, imeisv: &str) -> Option<String> {
    use std::io::Write;
    let attrs = format!(
        "User-Name = \"{imsi}\"\n3GPP-IMSI = \"{imsi}\"\n3GPP-IMEISV = \"{imeisv}\"\n\
         Called-Station-Id = \"iot.apn\"\n3GPP-RAT-Type = EUTRAN\nMessage-Authenticator = 0x00\n"
    );
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "1", "-t", "3"])
        .arg(format!("127.0.0.1:{auth_port}"))
        .args(["auth", "testing123"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radclient (Debian freeradius-utils: scripts/setup.sh --test)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(attrs.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Received "))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_owned)
}
