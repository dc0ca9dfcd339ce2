//! Real etcd members for the cluster-mode tests: [`EtcdCluster::start`] bootstraps N members of
//! Debian's `etcd-server` (3.4.23; `scripts/setup.sh --test` installs it and `etcd-client`'s
//! `etcdctl`) on free loopback ports, each with its own data directory and log file in one
//! temporary directory, and waits until every member is healthy and a leader is elected. Faults
//! for the tests: [`EtcdCluster::kill`] (SIGKILL), [`EtcdCluster::restart`] (same data
//! directory), [`EtcdCluster::pause`] / [`EtcdCluster::resume`] (SIGSTOP / SIGCONT), and
//! compaction. Everything else goes through `etcdctl` (API v3). Dropping the cluster kills every
//! member and removes the directory.
//!
//! A missing `etcd` or `etcdctl` fails the test (they are test dependencies, not optional ones).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::free_port;
use super::netns::{Host, Net};

/// How long [`EtcdCluster::start`] and [`EtcdCluster::restart`] wait for health.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// Bound on one `etcdctl` run of [`EtcdCluster::etcdctl`] (its own `--command-timeout` is 5 s).
const ETCDCTL_WITHIN: Duration = Duration::from_secs(30);
/// Lines of each member's log printed when something fails.
const LOG_TAIL: usize = 25;

/// One member: its ports, data directory, log file and process.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// Raft member id, as `endpoint status` reports it (known once the cluster is up).
    id: u64,
    /// Its address: 127.0.0.1, or its namespace's when it runs in one.
    addr: String,
    /// The namespace it runs in ([`EtcdCluster::start_in`]).
    netns: Option<Host>,
}

/// A running etcd cluster on 127.0.0.1 (members indexed 0..n, named `m0`, `m1`, ...).
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    token: String,
    members: Vec<Member>,
    /// `etcd --version`'s first line, e.g. `etcd Version: 3.4.23`.
    pub version: String,
}

/// Panics with a clear message when `etcd` or `etcdctl` is not installed; returns
/// `etcd --version`'s first line.
pub fn require_etcd() -> String {
    static VERSION: OnceLock<Result<String, String>> = OnceLock::new();
    let checked = VERSION.get_or_init(|| {
        let mut version = String::new();
        for (tool, arg, package) in [
            ("etcd", "--version", "etcd-server"),
            ("etcdctl", "version", "etcd-client"),
        ] {
            match Command::new(tool).arg(arg).env("ETCDCTL_API", "3").output() {
                Ok(out) if out.status.success() => {
                    if tool == "etcd" {
                        version = String::from_utf8_lossy(&out.stdout)
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                    }
                }
                Ok(out) => {
                    return Err(format!(
                        "`{tool} {arg}` failed ({}): {}{}",
                        out.status,
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "{tool} not found ({e}): install Debian's {package} \
                         (run scripts/setup.sh --test)"
                    ))
                }
            }
        }
        Ok(version)
    });
    match checked {
        Ok(v) => v.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// What one command printed, and how it ended.
struct Run {
    /// Exit code; -1 when killed by a signal, or still running at the deadline (then killed).
    code: i32,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

impl Run {
    /// stdout followed by stderr, as [`super::output`] gives them.
    fn text(&self) -> String {
        let mut t = format!("{}{}", self.stdout, self.stderr);
        if self.timed_out {
            t.push_str("[still running at the deadline: killed]\n");
        }
        t
    }
}

/// Runs `cmd` to completion or until `within` has passed (then kills it).
fn run_bounded(cmd: &mut Command, within: Duration) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + within;
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        timed_out,
    }
}

/// Process state letter of /proc/PID/stat (`R`, `S`, `T` stopped, `Z` exited, not reaped...).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid of our own child, which is not reaped yet (so not reused).
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// `--command-timeout` of a readiness poll: short at first (a member that is not ready holds
/// the health check until the timeout, and the next poll starts later), longer after 5 s in case
/// the machine is that slow.
fn health_timeout(started: Instant) -> &'static str {
    if started.elapsed() < Duration::from_secs(5) {
        "--command-timeout=300ms"
    } else {
        "--command-timeout=2s"
    }
}

/// `k` different free ports ([`free_port`] may hand out a port twice: it is free again once
/// the probe socket is closed).
fn distinct_free_ports(k: usize) -> Vec<u16> {
    let mut ports = Vec::with_capacity(k);
    while ports.len() < k {
        let p = free_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports
}

/// A token no other cluster (of this run or another) uses.
fn unique_token() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "imei-lockd-it-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl EtcdCluster {
    /// Starts `n` members and waits (up to 20 s) until each reports healthy and a leader is
    /// elected. Panics with the tail of every member's log when they do not come up. A start
    /// that lost a port to another process between [`free_port`] and etcd's bind is retried on
    /// new ports (twice).
    pub fn start(n: usize) -> EtcdCluster {
        Self::start_placed(n, None)
    }

    /// [`EtcdCluster::start`] with each member in a namespace of its own (`e0`, `e1`, ...) of
    /// `net`, listening on its namespace address (ports 2379 and 2380): [`Net::cut`] of
    /// [`EtcdCluster::host`] partitions that member from the other members and the nodes.
    pub fn start_in(net: &mut Net, n: usize) -> EtcdCluster {
        let hosts = (0..n).map(|i| net.add(&format!("e{i}"), false)).collect();
        Self::start_placed(n, Some(hosts))
    }

    fn start_placed(n: usize, hosts: Option<Vec<Host>>) -> EtcdCluster {
        assert!(n >= 1, "an etcd cluster needs at least one member");
        let version = require_etcd();
        let mut attempt = 1;
        loop {
            match Self::try_start(n, version.clone(), hosts.clone()) {
                Ok(c) => return c,
                Err(e) if attempt < 3 && e.contains("address already in use") => {
                    eprintln!("etcd cluster: a port was taken meanwhile, starting again: {e}");
                    attempt += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn try_start(
        n: usize,
        version: String,
        hosts: Option<Vec<Host>>,
    ) -> Result<EtcdCluster, String> {
        let dir = tempfile::tempdir().unwrap();
        let ports = match hosts {
            Some(_) => [2379, 2380].repeat(n),
            None => distinct_free_ports(2 * n),
        };
        let members = (0..n)
            .map(|i| {
                let name = format!("m{i}");
                Member {
                    data_dir: dir.path().join(format!("{name}.etcd")),
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    client_port: ports[2 * i],
                    peer_port: ports[2 * i + 1],
                    child: None,
                    paused: false,
                    id: 0,
                    addr: hosts
                        .as_ref()
                        .map_or_else(|| "127.0.0.1".to_owned(), |h| h[i].addr.to_string()),
                    netns: hosts.as_ref().map(|h| h[i].clone()),
                }
            })
            .collect();
        let mut c = EtcdCluster {
            dir,
            token: unique_token(),
            members,
            version,
        };
        for i in 0..n {
            c.spawn(i, "new");
        }
        let started = Instant::now();
        let deadline = started + READY_WITHIN;
        let all: Vec<usize> = (0..n).collect();
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Err(e) = c.check_alive() {
                return Err(format!("{e}\n{}", c.log_tails()));
            }
            let health = c.run_etcdctl(
                &all,
                &["endpoint", "health", health_timeout(started)],
                Duration::from_secs(5),
            );
            if health.code == 0 {
                let statuses = c.statuses(&all);
                if statuses.iter().all(Option::is_some) {
                    for (m, s) in c.members.iter_mut().zip(&statuses) {
                        m.id = s.as_ref().unwrap()["header"]["member_id"]
                            .as_u64()
                            .expect("member_id in endpoint status");
                    }
                    if c.leader().is_some() {
                        return Ok(c);
                    }
                    last = "no leader yet".into();
                } else {
                    last = "healthy, but not every member answers endpoint status".into();
                }
            } else {
                last = health.text();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "etcd cluster of {n} not healthy with a leader within {} s; last: {last}\n{}",
            READY_WITHIN.as_secs(),
            c.log_tails()
        ))
    }

    /// An error naming the first member that exited (and forgets its process).
    fn check_alive(&mut self) -> Result<(), String> {
        for i in 0..self.members.len() {
            if let Some(child) = self.members[i].child.as_mut() {
                if let Some(status) = child.try_wait().unwrap() {
                    self.members[i].child = None;
                    return Err(format!("etcd member m{i} exited with {status}"));
                }
            }
        }
        Ok(())
    }

    /// `--initial-cluster` of every member: `m0=http://127.0.0.1:PEER,...`.
    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://{}:{}", m.name, m.addr, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `i`'s process (`state`: `new` at bootstrap, `existing` on restart).
    fn spawn(&mut self, i: usize, state: &str) {
        let initial_cluster = self.initial_cluster();
        let m = &mut self.members[i];
        assert!(m.child.is_none(), "etcd member m{i} is already running");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        writeln!(
            log,
            "=== imei-lockd test harness: starting m{i} ({state}) ==="
        )
        .unwrap();
        let client = format!("http://{}:{}", m.addr, m.client_port);
        let peer = format!("http://{}:{}", m.addr, m.peer_port);
        let mut cmd = match &m.netns {
            Some(h) => Net::exec(h, "etcd"),
            None => Command::new("etcd"),
        };
        // The environment configures etcd too (ETCD_*): only the flags below count.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD") {
                cmd.env_remove(k);
            }
        }
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            // Loopback round trips are well under 1 ms, so a 50 ms heartbeat and a 500 ms election
            // timeout (defaults 100 / 1000 ms) are safe and make a new leader appear in ~0.5-1 s
            // after the leader is killed or paused. Pre-vote on (3.5's default, off in 3.4): a
            // member that was cut off asks before it campaigns, so it does not depose a healthy
            // leader when it comes back (the README recommends it to operators). etcd 3.4's
            // default otherwise: no automatic compaction (the tests compact themselves).
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .arg("--pre-vote")
            // zap: the structured logger (3.4's default, capnslog, goes away in 3.5).
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        m.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start etcd for m{i}: {e}")),
        );
        m.paused = false;
    }

    /// Number of members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Client URL of every member: `http://127.0.0.1:PORT`.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.size()).map(|i| self.endpoint(i)).collect()
    }

    /// Client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        let m = &self.members[i];
        format!("http://{}:{}", m.addr, m.client_port)
    }

    /// The namespace member `i` runs in, if started with [`EtcdCluster::start_in`].
    pub fn host(&self, i: usize) -> Option<&Host> {
        self.members[i].netns.as_ref()
    }

    /// Member `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.members[i].data_dir.clone()
    }

    /// The temporary directory holding every member's data directory and log.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Raft member id of member `i` (as `endpoint status` and the leader field show it).
    pub fn member_id(&self, i: usize) -> u64 {
        self.members[i].id
    }

    /// Process id of member `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// Whether member `i`'s process is alive (also when paused).
    pub fn is_running(&self, i: usize) -> bool {
        self.pid(i)
            .and_then(proc_state)
            .is_some_and(|s| s != 'Z' && s != 'X')
    }

    /// Whether member `i` is paused by [`EtcdCluster::pause`].
    pub fn is_paused(&self, i: usize) -> bool {
        self.members[i].paused
    }

    /// Members that run and are not paused: the ones that can answer.
    pub fn live(&self) -> Vec<usize> {
        (0..self.size())
            .filter(|&i| self.is_running(i) && !self.is_paused(i))
            .collect()
    }

    fn run_etcdctl(&self, members: &[usize], args: &[&str], within: Duration) -> Run {
        assert!(!members.is_empty(), "etcdctl needs at least one endpoint");
        let endpoints: Vec<String> = members.iter().map(|&i| self.endpoint(i)).collect();
        let mut cmd = Command::new("etcdctl");
        // ETCDCTL_ENDPOINTS, ETCDCTL_CACERT, ... of the caller's shell must not apply.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCDCTL") {
                cmd.env_remove(k);
            }
        }
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg("--dial-timeout=1s")
            .args(args);
        run_bounded(&mut cmd, within)
    }

    /// `etcdctl ARGS` (API v3) against every member's endpoint: (exit code, stdout followed by
    /// stderr). etcdctl's `--command-timeout` is 5 s unless `args` say otherwise; a run still
    /// going after 30 s is killed (code -1).
    pub fn etcdctl(&self, args: &[&str]) -> (i32, String) {
        let all: Vec<usize> = (0..self.size()).collect();
        self.etcdctl_on(&all, args)
    }

    /// [`EtcdCluster::etcdctl`] against the endpoints of `members` only.
    pub fn etcdctl_on(&self, members: &[usize], args: &[&str]) -> (i32, String) {
        self.etcdctl_within(members, args, ETCDCTL_WITHIN)
    }

    /// [`EtcdCluster::etcdctl_on`], killing etcdctl (code -1, output so far) when it still runs
    /// after `within` (e.g. a `watch`, which runs until it is cancelled).
    pub fn etcdctl_within(
        &self,
        members: &[usize],
        args: &[&str],
        within: Duration,
    ) -> (i32, String) {
        let r = self.run_etcdctl(members, args, within);
        (r.code, r.text())
    }

    /// `etcdctl put KEY VALUE` through the endpoints of `members`; panics when it fails.
    pub fn put_on(&self, members: &[usize], key: &str, value: &str) {
        let (code, out) = self.etcdctl_on(members, &["put", key, value]);
        assert_eq!(code, 0, "put {key} through {members:?} failed: {out}");
    }

    /// The `Status` object of `etcdctl endpoint status -w json` for member `i` (`header` with
    /// `member_id` and `revision`, `leader`, `raftTerm`, `raftIndex`, `dbSize`, ...), or None
    /// when it does not answer within 1 s (killed, paused, not up yet).
    pub fn status(&self, i: usize) -> Option<Value> {
        let r = self.run_etcdctl(
            &[i],
            &["endpoint", "status", "-w", "json", "--command-timeout=1s"],
            Duration::from_secs(5),
        );
        if r.code != 0 {
            return None;
        }
        let v: Value = serde_json::from_str(&r.stdout).ok()?;
        v.get(0)?.get("Status").cloned()
    }

    /// [`EtcdCluster::status`] of `members`, asked in parallel.
    pub fn statuses(&self, members: &[usize]) -> Vec<Option<Value>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = members
                .iter()
                .map(|&i| s.spawn(move || self.status(i)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    /// The member that is leader: one whose own `endpoint status` names itself as leader (the
    /// highest raft term wins should a deposed leader not know it yet). Only live members are
    /// asked (a paused leader is no leader). None while there is no leader.
    pub fn leader(&self) -> Option<usize> {
        let live = self.live();
        let statuses = self.statuses(&live);
        live.iter()
            .zip(statuses)
            .filter_map(|(&i, s)| {
                let s = s?;
                let leader = s["leader"].as_u64()?;
                let me = s["header"]["member_id"].as_u64()?;
                (leader == me).then(|| (s["raftTerm"].as_u64().unwrap_or(0), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Waits up to `timeout` for a leader; panics with the logs when none is elected.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            if Instant::now() >= deadline {
                // Drop prints the members' logs.
                panic!(
                    "no etcd leader within {timeout:?} (live members {:?})",
                    self.live()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL member `i` (paused or not) and reap it.
    pub fn kill(&mut self, i: usize) {
        let m = &mut self.members[i];
        let mut child = m
            .child
            .take()
            .unwrap_or_else(|| panic!("etcd member m{i} is not running"));
        let _ = child.kill();
        child.wait().unwrap();
        m.paused = false;
    }

    /// Starts member `i` again on its data directory (`--initial-cluster-state existing`) and
    /// waits (up to 20 s) until it answers `endpoint health` (a quorum read through it).
    pub fn restart(&mut self, i: usize) {
        self.spawn(i, "existing");
        let started = Instant::now();
        let deadline = started + READY_WITHIN;
        loop {
            if let Err(e) = self.check_alive() {
                panic!("restart of m{i}: {e}");
            }
            let r = self.run_etcdctl(
                &[i],
                &["endpoint", "health", health_timeout(started)],
                Duration::from_secs(5),
            );
            if r.code == 0 {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "restarted m{i} not healthy within {} s: {}",
                    READY_WITHIN.as_secs(),
                    r.text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGSTOP member `i`; returns once the kernel shows it stopped.
    pub fn pause(&mut self, i: usize) {
        let pid = self
            .pid(i)
            .unwrap_or_else(|| panic!("etcd member m{i} is not running"));
        signal(pid, libc::SIGSTOP);
        self.members[i].paused = true;
        self.wait_state(i, pid, |s| s == 'T', "stopped");
    }

    /// SIGCONT member `i`; returns once the kernel shows it running again.
    pub fn resume(&mut self, i: usize) {
        let pid = self
            .pid(i)
            .unwrap_or_else(|| panic!("etcd member m{i} is not running"));
        signal(pid, libc::SIGCONT);
        self.members[i].paused = false;
        self.wait_state(i, pid, |s| s != 'T', "resumed");
    }

    fn wait_state(&self, i: usize, pid: u32, ok: impl Fn(char) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let state = proc_state(pid);
            if state.is_some_and(&ok) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd member m{i} (pid {pid}) not {what} after 2 s: state {state:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The cluster's current revision: the header of a linearizable `get` through the live
    /// members.
    pub fn revision(&self) -> i64 {
        let r = self.run_etcdctl(
            &self.live(),
            &["get", "/", "--prefix", "--limit", "1", "-w", "json"],
            ETCDCTL_WITHIN,
        );
        assert_eq!(
            r.code,
            0,
            "etcdctl get for the revision failed: {}",
            r.text()
        );
        serde_json::from_str::<Value>(&r.stdout)
            .ok()
            .and_then(|v| v["header"]["revision"].as_i64())
            .unwrap_or_else(|| panic!("no header.revision in: {}", r.text()))
    }

    /// `etcdctl compact REV --physical` through the live members (returns once the compaction
    /// is applied to the backend); panics when it fails.
    pub fn compact(&self, rev: i64) {
        let (code, out) =
            self.etcdctl_on(&self.live(), &["compact", &rev.to_string(), "--physical"]);
        assert_eq!(code, 0, "etcdctl compact {rev} --physical failed: {out}");
    }

    /// `etcdctl defrag` of every live member; panics when it fails.
    pub fn defrag(&self) {
        let (code, out) = self.etcdctl_on(&self.live(), &["defrag", "--command-timeout=20s"]);
        assert_eq!(code, 0, "etcdctl defrag failed: {out}");
    }

    /// Path of member `i`'s log (appended to across restarts).
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.members[i].log.clone()
    }

    /// The last `lines` lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The tail of every member's log, for panic messages.
    pub fn log_tails(&self) -> String {
        (0..self.size())
            .map(|i| {
                format!(
                    "--- m{i} ({}), last {LOG_TAIL} lines of {} ---\n{}\n",
                    self.endpoint(i),
                    self.members[i].log.display(),
                    self.log_tail(i, LOG_TAIL)
                )
            })
            .collect()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("etcd cluster at a failed test:\n{}", self.log_tails());
            // The TempDir goes below: keep whole logs for a post-mortem.
            for (i, m) in self.members.iter().enumerate() {
                let kept = std::env::temp_dir()
                    .join(format!("imei-lockd-etcd-{}-m{i}.log", std::process::id()));
                if std::fs::copy(&m.log, &kept).is_ok() {
                    eprintln!("m{i}'s whole log kept in {}", kept.display());
                }
            }
        }
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                // A stopped process dies of SIGKILL too; SIGCONT first all the same.
                // SAFETY: kill(2) of our own child, not reaped yet.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // The TempDir removes the data directories and logs.
    }
}
