//! Secrets and TLS against the real binaries (issue 19): RADIUS client secrets and the API token
//! read from files (next to the configuration, or in `$CREDENTIALS_DIRECTORY` as systemd's
//! `LoadCredential=` provides them) and rotated by SIGHUP, checked with radclient and
//! imei-lockctl (`--token-file`, `IMEI_LOCKCTL_TOKEN_FILE`); the WARN lines for the shipped
//! token; the API and `/metrics` over HTTPS with a test CA made by the openssl CLI at test time
//! (curl --cacert, imei-lockctl --cacert, plain HTTP refused, a new certificate on SIGHUP seen by
//! the next connection, a bad one refused and the running one kept).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::testca::{make_ca, make_cert};
use common::{counter, output, Ports, TOKEN};

/// A daemon started by [`start`]: its directory (configuration, data, log) and process.
struct Running {
    dir: tempfile::TempDir,
    ports: Ports,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://127.0.0.1:<api port><path>`.
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.api)
    }

    /// SIGTERM and wait for exit; the exit code.
    fn terminate(&mut self) -> Option<i32> {
        common::terminate_child(self.child.take()?)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `imei-lockd` on the configuration `write` returns (given the daemon's fresh
/// directory and ports) with `env`, and waits for its "ready" log line (the harness's own
/// readiness check speaks plain HTTP, which a TLS API refuses).
fn start(write: impl Fn(&Path, &Ports) -> String, env: &[(&str, &str)]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::new();
    let config = dir.path().join("imei-lockd.toml");
    std::fs::write(&config, write(dir.path(), &ports)).unwrap();
    let log = dir.path().join("daemon.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(common::bin("imei-lockd"));
    cmd.arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .env_remove("CREDENTIALS_DIRECTORY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut d = Running {
        dir,
        ports,
        config,
        log,
        child: Some(cmd.spawn().unwrap()),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
            d.child = None;
            panic!("daemon exited early ({status}):\n{}", d.log_text());
        }
        if d.log_text().contains("imei-lockd ready") {
            return d;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("daemon not ready in 30 s:\n{}", d.log_text());
}

/// The daemon's plain-HTTP metrics (empty when they cannot be scraped).
fn metrics_text(d: &Running) -> String {
    common::http()
        .get(format!("http://127.0.0.1:{}/metrics", d.ports.metrics))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default()
}

/// The test configuration with `api.token` and the RADIUS client's `secret` replaced by the
/// given lines.
fn config_with(dir: &Path, ports: &Ports, token_line: &str, secret_line: &str) -> String {
    let text = common::config_text(dir, ports, "");
    let token = format!("token = \"{TOKEN}\"\n");
    let secret = "secret = \"testing123\"\n";
    assert!(text.contains(&token) && text.contains(secret), "{text}");
    text.replace(&token, &format!("{token_line}\n"))
        .replace(secret, &format!("{secret_line}\n"))
}

/// radclient's answer code to an Access-Request (with Message-Authenticator) for an
/// unprovisioned IMSI signed with `secret`: `Some("Access-Reject")` (the daemon's
/// `unknown_sim = "reject"`) when the daemon knows the secret, `None` when it drops the request.
fn radclient(port: u16, secret: &str) -> Option<String> {
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "1", "-t", "1"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("auth")
        .arg(secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radclient (freeradius-utils, scripts/setup.sh --test)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"User-Name = \"001019999999999\"\n3GPP-IMSI = \"001019999999999\"\n\
              Message-Authenticator = 0x00\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("Received "))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_owned)
}

/// The status of `GET path` on the plain-HTTP API with `token`.
fn status(d: &Running, path: &str, token: &str) -> u16 {
    common::http()
        .get(d.url(path))
        .bearer_auth(token)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// SIGHUP, then waits until `imei_lockd_config_reloads_total{result}` reaches `n` (the
/// metrics scraped by `scrape`).
fn reload(d: &Running, result: &str, n: f64, scrape: impl Fn() -> String) {
    common::unsafe_kill(d.pid() as i32, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let m = scrape();
        let label = format!("result=\"{result}\"");
        if counter(&m, "imei_lockd_config_reloads_total", &[&label]) >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no reload {result} #{n}:\n{}\n{}", scrape(), d.log_text());
}

fn lockctl(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(common::bin("imei-lockctl"));
    cmd.args(args)
        .env_remove("IMEI_LOCKCTL_TOKEN")
        .env_remove("IMEI_LOCKCTL_TOKEN_FILE")
        .env_remove("IMEI_LOCKCTL_CACERT")
        .env_remove("IMEI_LOCKCTL_API");
    for (k, v) in env {
        cmd.env(k, v);
    }
    output(&mut cmd)
}

#[test]
fn secret_files_from_the_credentials_directory_rotate_on_sighup() {
    let creds = tempfile::tempdir().unwrap();
    let cred = |name: &str, body: &str| std::fs::write(creds.path().join(name), body).unwrap();
    cred("api-token", "cred-token\n");
    cred("radius.secret", "file-secret\n");
    let creds_dir = creds.path().to_str().unwrap().to_owned();
    let env = [("CREDENTIALS_DIRECTORY", creds_dir.as_str())];
    let mut d = start(
        |dir, ports| {
            config_with(
                dir,
                ports,
                "token_file = \"api-token\"",
                "secret_file = \"radius.secret\"",
            )
        },
        &env,
    );

    // check-config finds the relative files in $CREDENTIALS_DIRECTORY, and only there.
    let (code, text) = common::check_config_file(&d.config, &env);
    assert_eq!(code, 0, "{text}");
    let (code, text) = common::check_config_file(&d.config, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("api.token_file") && text.contains("cannot read"),
        "{text}"
    );

    // RADIUS: the file's secret (without its newline) is the client's; another is dropped.
    let port = d.ports.radius_auth;
    assert_eq!(
        radclient(port, "file-secret").as_deref(),
        Some("Access-Reject")
    );
    assert_eq!(radclient(port, "testing123"), None);
    assert_eq!(radclient(port, "file-secret\n"), None);

    // API: the file's token.
    assert_eq!(status(&d, "/v1/sims/001010000000001", "cred-token"), 404);
    assert_eq!(status(&d, "/v1/sims/001010000000001", TOKEN), 401);

    // imei-lockctl: --token-file, and IMEI_LOCKCTL_TOKEN_FILE.
    let api = d.url("");
    let token_file = creds.path().join("api-token");
    let tf = token_file.to_str().unwrap();
    let (code, text) = lockctl(
        &[
            "--api",
            &api,
            "--token-file",
            tf,
            "sim",
            "set",
            "001010000000001",
            "--imei-management",
            "lock",
            "--wait",
        ],
        &[],
    );
    assert_eq!(code, 0, "{text}");
    let (code, text) = lockctl(
        &["--api", &api, "--json", "sim", "get", "001010000000001"],
        &[("IMEI_LOCKCTL_TOKEN_FILE", tf)],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("\"effective\":\"lock\""), "{text}");
    let wrong = creds.path().join("wrong");
    std::fs::write(&wrong, "nope\n").unwrap();
    let (code, text) = lockctl(
        &[
            "--api",
            &api,
            "--token-file",
            wrong.to_str().unwrap(),
            "sim",
            "get",
            "001010000000001",
        ],
        &[],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("HTTP 401"), "{text}");
    let (code, text) = lockctl(
        &[
            "--api",
            &api,
            "--token-file",
            tf,
            "sim",
            "get",
            "001010000000001",
        ],
        &[("IMEI_LOCKCTL_TOKEN", "cred-token")],
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not both"), "{text}");

    // Rotation: new contents, SIGHUP; the old secret and token stop working.
    cred("api-token", "rotated-token\n");
    cred("radius.secret", "rotated-secret\n");
    let scrape = || metrics_text(&d);
    reload(&d, "ok", 1.0, scrape);
    assert_eq!(
        radclient(port, "rotated-secret").as_deref(),
        Some("Access-Reject")
    );
    assert_eq!(radclient(port, "file-secret"), None);
    assert_eq!(status(&d, "/v1/sims/001010000000001", "rotated-token"), 200);
    assert_eq!(status(&d, "/v1/sims/001010000000001", "cred-token"), 401);

    // An empty secret file on SIGHUP: refused naming the key, the running secret kept.
    cred("radius.secret", "");
    reload(&d, "error", 1.0, || metrics_text(&d));
    assert_eq!(
        radclient(port, "rotated-secret").as_deref(),
        Some("Access-Reject")
    );
    let log = d.log_text();
    assert!(
        log.lines().any(|l| l.contains("reload failed")
            && l.contains("radius.clients[0].secret_file")
            && l.contains("is empty")),
        "{log}"
    );
    assert_eq!(d.terminate(), Some(0), "{}", d.log_text());
}

/// The WARN lines (and the gauge) of the shipped token, on loopback and on every address.
#[test]
fn the_shipped_token_is_logged_at_warn() {
    let warns = |d: &Running, needle: &str| {
        d.log_text()
            .lines()
            .filter(|l| l.contains("\"level\":\"WARN\"") && l.contains(needle))
            .count()
    };
    let shipped = "token = \"change-me\"";
    let secret = "secret = \"testing123\"";
    let d = start(|dir, ports| config_with(dir, ports, shipped, secret), &[]);
    let m = metrics_text(&d);
    assert_eq!(counter(&m, "imei_lockd_api_token_weak", &[]), 1.0, "{m}");
    assert_eq!(
        warns(&d, "shipped example \\\"change-me\\\""),
        1,
        "{}",
        d.log_text()
    );
    assert_eq!(warns(&d, "non-loopback"), 0, "{}", d.log_text());
    // A reload warns again.
    reload(&d, "ok", 1.0, || metrics_text(&d));
    assert_eq!(
        warns(&d, "shipped example \\\"change-me\\\""),
        2,
        "{}",
        d.log_text()
    );
    drop(d);

    let exposed = start(
        |dir, ports| {
            config_with(dir, ports, shipped, secret).replace(
                &format!("listen = \"127.0.0.1:{}\"", ports.api),
                &format!("listen = \"0.0.0.0:{}\"", ports.api),
            )
        },
        &[],
    );
    assert_eq!(warns(&exposed, "non-loopback"), 1, "{}", exposed.log_text());
    drop(exposed);

    let own = start(
        |dir, ports| config_with(dir, ports, "token = \"mine\"", secret),
        &[],
    );
    let m = metrics_text(&own);
    assert_eq!(counter(&m, "imei_lockd_api_token_weak", &[]), 0.0, "{m}");
    assert_eq!(warns(&own, "API token"), 0, "{}", own.log_text());
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// `curl --cacert CA URL`: (curl's exit code, HTTP status or 0, body).
fn curl(ca: Option<&Path>, url: &str, token: Option<&str>) -> (i32, u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("curl (scripts/setup.sh --test)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        out.status.code().unwrap_or(-1),
        code.trim().parse().unwrap_or(0),
        body.to_owned(),
    )
}

/// The serial and subject of the certificate a new TLS connection to `port` is served, as
/// `openssl x509 -serial -subject` prints them.
fn served_cert(port: u16, ca: &Path) -> String {
    let s_client = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .arg("-CAfile")
        .arg(ca)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-subject"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin
        .take()
        .unwrap()
        .write_all(&s_client.stdout)
        .unwrap();
    let out = x509.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Copies `<from>.pem` / `<from>.key` of `certs` over `<to>.crt` / `<to>.key` of `dir`.
fn install(certs: &Path, from: &str, dir: &Path, to: &str) {
    std::fs::copy(
        certs.join(format!("{from}.pem")),
        dir.join(format!("{to}.crt")),
    )
    .unwrap();
    std::fs::copy(
        certs.join(format!("{from}.key")),
        dir.join(format!("{to}.key")),
    )
    .unwrap();
}

#[test]
fn api_and_metrics_over_tls_with_a_certificate_reloaded_on_sighup() {
    let certs = tempfile::tempdir().unwrap();
    make_ca(certs.path());
    make_cert(certs.path(), "one", "imei-lockd-api-1", "1001");
    make_cert(certs.path(), "two", "imei-lockd-api-2", "2002");
    let ca: PathBuf = certs.path().join("ca.pem");
    let certs_dir = certs.path().to_path_buf();
    // Relative paths: next to the configuration file.
    let tls = "tls_cert = \"api.crt\"\ntls_key = \"api.key\"\n";
    let mut d = start(
        |dir, ports| {
            install(&certs_dir, "one", dir, "api");
            install(&certs_dir, "one", dir, "metrics");
            common::config_text(dir, ports, "")
                .replace(
                    &format!("token = \"{TOKEN}\"\n"),
                    &format!("token = \"{TOKEN}\"\n{tls}"),
                )
                .replace(
                    &format!("listen = \"127.0.0.1:{}\"\n", ports.metrics),
                    &format!(
                        "listen = \"127.0.0.1:{}\"\ntls_cert = \"metrics.crt\"\n\
                         tls_key = \"metrics.key\"\n",
                        ports.metrics
                    ),
                )
        },
        &[],
    );
    let (code, text) = common::check_config_file(&d.config, &[]);
    assert_eq!(code, 0, "{text}");
    let api = format!("https://127.0.0.1:{}", d.ports.api);
    let metrics_url = format!("https://127.0.0.1:{}/metrics", d.ports.metrics);

    // HTTPS with the CA: 200; the token still applies.
    let (code, status, body) = curl(Some(&ca), &format!("{api}/healthz"), None);
    assert_eq!((code, status), (0, 200), "{body}");
    let (_, status, _) = curl(Some(&ca), &format!("{api}/v1/sims/001010000000002"), None);
    assert_eq!(status, 401);
    // Without the CA the certificate is not trusted; plain HTTP gets no answer.
    let (code, _, _) = curl(None, &format!("{api}/healthz"), None);
    assert_ne!(code, 0);
    let (code, status, _) = curl(
        None,
        &format!("http://127.0.0.1:{}/healthz", d.ports.api),
        None,
    );
    assert!(
        code != 0 && status == 0,
        "plain HTTP: curl {code}, HTTP {status}"
    );
    // /metrics over HTTPS too; it counts the refused plain-HTTP handshake.
    let scrape = || curl(Some(&ca), &metrics_url, None).2;
    let m = scrape();
    assert!(
        counter(
            &m,
            "imei_lockd_tls_handshake_failures_total",
            &["listener=\"api\"", "reason=\"error\""]
        ) >= 1.0,
        "{m}"
    );
    let (code, _, _) = curl(
        None,
        &format!("http://127.0.0.1:{}/metrics", d.ports.metrics),
        None,
    );
    assert_ne!(code, 0, "plain HTTP to the metrics TLS port");

    // imei-lockctl --cacert and IMEI_LOCKCTL_CACERT; without it the server is not trusted.
    let ca_s = ca.to_str().unwrap();
    let (code, text) = lockctl(
        &[
            "--api",
            &api,
            "--cacert",
            ca_s,
            "--token",
            TOKEN,
            "sim",
            "set",
            "001010000000002",
            "--imei-management",
            "pairing",
            "--wait",
        ],
        &[],
    );
    assert_eq!(code, 0, "{text}");
    let (code, text) = lockctl(
        &["--api", &api, "--json", "sim", "get", "001010000000002"],
        &[("IMEI_LOCKCTL_CACERT", ca_s), ("IMEI_LOCKCTL_TOKEN", TOKEN)],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("\"effective\":\"pairing\""), "{text}");
    let (code, text) = lockctl(
        &[
            "--api",
            &api,
            "--token",
            TOKEN,
            "sim",
            "get",
            "001010000000002",
        ],
        &[],
    );
    assert_eq!(code, 3, "{text}");

    // The first certificate; after SIGHUP with new files, a new connection gets the second.
    let first = served_cert(d.ports.api, &ca);
    assert!(
        first.contains("serial=1001") && first.contains("imei-lockd-api-1"),
        "{first}"
    );
    install(certs.path(), "two", d.dir.path(), "api");
    install(certs.path(), "two", d.dir.path(), "metrics");
    reload(&d, "ok", 1.0, scrape);
    let second = served_cert(d.ports.api, &ca);
    assert!(
        second.contains("serial=2002") && second.contains("imei-lockd-api-2"),
        "{second}"
    );
    assert!(served_cert(d.ports.metrics, &ca).contains("serial=2002"));
    let m = scrape();
    for listener in ["api", "metrics"] {
        let l = format!("listener=\"{listener}\"");
        assert_eq!(
            counter(&m, "imei_lockd_tls_reloads_total", &[&l, "result=\"ok\""]),
            1.0,
            "{m}"
        );
    }

    // A key that is not the certificate's: check-config names the key, SIGHUP refuses the
    // file and the running certificate stays.
    std::fs::copy(certs.path().join("one.key"), d.dir.path().join("api.key")).unwrap();
    let (code, text) = common::check_config_file(&d.config, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("api.tls_key"), "{text}");
    reload(&d, "error", 1.0, scrape);
    let log = d.log_text();
    assert!(
        log.lines().any(|l| l.contains("\"level\":\"ERROR\"")
            && l.contains("reload failed")
            && l.contains("api.tls_key")),
        "{log}"
    );
    assert!(served_cert(d.ports.api, &ca).contains("serial=2002"));
    let (code, status, _) = curl(Some(&ca), &format!("{api}/healthz"), None);
    assert_eq!((code, status), (0, 200));
    assert_eq!(d.terminate(), Some(0), "{}", d.log_text());
}
