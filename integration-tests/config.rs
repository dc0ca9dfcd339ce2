//! `imei-lockd check-config` and startup against the real binary: the shipped file passes, bad
//! files exit with code 2 and name the key, environment overrides apply.

mod common;

use std::process::Command;

use common::{bin, repo_root};

fn check(path: &std::path::Path, env: &[(&str, &str)]) -> (i32, String) {
    common::check_config_file(path, env)
}

#[test]
fn shipped_config_passes_check_config() {
    let (code, text) = check(&repo_root().join("conf/imei-lockd.toml"), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("valid"), "{text}");
}

#[test]
fn bad_files_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo_root().join("conf/imei-lockd.toml")).unwrap();
    let cases = [
        // wrong type
        (
            shipped.replace("watchdog_s = 30", "watchdog_s = \"thirty\""),
            "diameter.watchdog_s",
        ),
        // unknown policy value
        (
            shipped.replace("unknown_sim = \"reject\"", "unknown_sim = \"sometimes\""),
            "policy.unknown_sim",
        ),
        // bad CIDR
        (
            shipped.replace("address = \"127.0.0.1/32\"", "address = \"127.0.0.1/40\""),
            "radius.clients[0].address",
        ),
        // unknown key
        (
            shipped.replace("acct_listen =", "acct_lissen ="),
            "acct_lissen",
        ),
        // not TOML at all
        ("[radius\nauth_listen = 1".to_owned(), "imei-lockd.toml"),
    ];
    for (body, key) in cases {
        let p = dir.path().join("imei-lockd.toml");
        std::fs::write(&p, &body).unwrap();
        let (code, text) = check(&p, &[]);
        assert_eq!(code, 2, "{key}: {text}");
        assert!(text.contains(key), "message should name {key}: {text}");
    }
}

/// `[cluster]` (issue 17): an etcd configuration passes `check-config`; each bad value exits 2
/// naming its key.
#[test]
fn cluster_section_is_checked_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo_root().join("conf/imei-lockd.toml")).unwrap();
    let pem = dir.path().join("client.pem");
    std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let etcd = |cluster: &str| format!("{shipped}\n{cluster}");
    let three = "[cluster]\nbackend = \"etcd\"\nnode_name = \"aaa-1\"\n[cluster.etcd]\n\
                 endpoints = [\"http://127.0.0.1:2379\", \"http://127.0.0.1:22379\", \
                 \"http://127.0.0.1:32379\"]\n";
    let p = dir.path().join("imei-lockd.toml");
    std::fs::write(&p, etcd(three)).unwrap();
    let (code, text) = check(&p, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("valid"), "{text}");

    let cases = [
        (
            etcd("[cluster]\nbackend = \"etcd\"\n[cluster.etcd]\nendpoints = []\n"),
            "`cluster.etcd.endpoints`",
        ),
        (
            etcd("[cluster]\nbackend = \"etcd\"\n"),
            "`cluster.etcd.endpoints`",
        ),
        (
            etcd(&three.replace("http://127.0.0.1:22379", "127.0.0.1:22379")),
            "`cluster.etcd.endpoints[1]`",
        ),
        (
            etcd(&three.replace("http://127.0.0.1:32379", "http://127.0.0.1:32379/v3")),
            "`cluster.etcd.endpoints[2]`",
        ),
        (
            etcd(&format!(
                "{}cert_file = \"{}\"\n",
                three.replace("http://", "https://"),
                pem.display()
            )),
            "`cluster.etcd.key_file`",
        ),
        (etcd("[cluster]\nbackend = \"raft\"\n"), "cluster.backend"),
    ];
    for (body, key) in cases {
        std::fs::write(&p, &body).unwrap();
        let (code, text) = check(&p, &[]);
        assert_eq!(code, 2, "{key}: {text}");
        assert!(text.contains(key), "message should name {key}: {text}");
    }

    // Environment overrides: the endpoints as a comma-separated list, and checked too.
    let shipped = repo_root().join("conf/imei-lockd.toml");
    let env = |endpoints| {
        check(
            &shipped,
            &[
                ("IMEI_LOCKD__CLUSTER__BACKEND", "etcd"),
                ("IMEI_LOCKD__CLUSTER__ETCD__ENDPOINTS", endpoints),
            ],
        )
    };
    let (code, text) = env("http://10.0.0.1:2379,http://10.0.0.2:2379,http://10.0.0.3:2379");
    assert_eq!(code, 0, "{text}");
    let (code, text) = env("http://10.0.0.1:2379,http://10.0.0.2");
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("`cluster.etcd.endpoints[1]`"), "{text}");
}

#[test]
fn missing_file_exits_2() {
    let (code, text) = check(std::path::Path::new("/nonexistent/imei-lockd.toml"), &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("/nonexistent/imei-lockd.toml"), "{text}");
}

#[test]
fn environment_overrides_apply_and_are_checked() {
    let shipped = repo_root().join("conf/imei-lockd.toml");
    let (code, text) = check(&shipped, &[("IMEI_LOCKD__RADIUS__AUTH_LISTEN", "nowhere")]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("radius.auth_listen"), "{text}");
    let (code, text) = check(&shipped, &[("IMEI_LOCKD__POLICY__UNKNOWN_SIM", "perhaps")]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("unknown_sim"), "{text}");
    let (code, text) = check(
        &shipped,
        &[
            ("IMEI_LOCKD__RADIUS__AUTH_LISTEN", "127.0.0.1:11812"),
            ("IMEI_LOCKD__DIAMETER__WATCHDOG_S", "12"),
            (
                "IMEI_LOCKD__DIAMETER__LISTEN",
                "tcp://127.0.0.1:3868,sctp://127.0.0.1:3868",
            ),
        ],
    );
    assert_eq!(code, 0, "{text}");
}

#[test]
fn daemon_starts_on_shipped_config_and_stops_on_sigterm() {
    // The shipped file as is, with only ports and the data directory moved by environment
    // overrides so that tests can run side by side.
    let dir = tempfile::tempdir().unwrap();
    let ports = common::Ports::new();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let logf = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(bin("imei-lockd"))
        .arg("--config")
        .arg(repo_root().join("conf/imei-lockd.toml"))
        .env("IMEI_LOCKD__NODE__DATA_DIR", &data)
        .env(
            "IMEI_LOCKD__API__LISTEN",
            format!("127.0.0.1:{}", ports.api),
        )
        .env(
            "IMEI_LOCKD__METRICS__LISTEN",
            format!("127.0.0.1:{}", ports.metrics),
        )
        .env(
            "IMEI_LOCKD__RADIUS__AUTH_LISTEN",
            format!("127.0.0.1:{}", ports.radius_auth),
        )
        .env(
            "IMEI_LOCKD__RADIUS__ACCT_LISTEN",
            format!("127.0.0.1:{}", ports.radius_acct),
        )
        .env(
            "IMEI_LOCKD__DIAMETER__LISTEN",
            format!("tcp://127.0.0.1:{}", ports.diameter),
        )
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{}/healthz", ports.api);
    let mut up = false;
    for _ in 0..600 {
        if common::http()
            .get(&url)
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(up, "{}", std::fs::read_to_string(&log).unwrap());
    assert!(
        data.join("CURRENT").exists(),
        "RocksDB created under node.data_dir"
    );
    common::unsafe_kill(child.id() as i32, 15);
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

/// Type=notify: READY=1 once listening, STOPPING=1 on SIGTERM, on `$NOTIFY_SOCKET`.
#[test]
fn sd_notify_ready_and_stopping() {
    let mut d = common::Daemon::start("");
    d.kill9();
    let sock_path = d.dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    d.env
        .push(("NOTIFY_SOCKET".into(), sock_path.display().to_string()));
    d.env.push(("WATCHDOG_USEC".into(), "400000".into()));
    d.spawn();
    let mut buf = [0u8; 256];
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m == "WATCHDOG=1") {
        let n = sock.recv(&mut buf).unwrap();
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("READY=1"),
        "{seen:?}"
    );
    assert_eq!(d.terminate(), Some(0));
    let mut stopping = false;
    while let Ok(n) = sock.recv(&mut buf) {
        if &buf[..n] == b"STOPPING=1" {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 on SIGTERM");
}

// ---------------------------------------------------------------------------------------------
// SIGHUP reload
// ---------------------------------------------------------------------------------------------

/// An Access-Request for an unprovisioned IMSI, signed with `secret`.
fn access_request(id: u8, secret: &str) -> Vec<u8> {
    common::radius::access_request(id, [id; 16], "001019999999999", None, secret, true)
}

/// Sends an Access-Request from `local` signed with `secret`; the answer's Code, if any.
fn radius_code(d: &common::Daemon, local: &str, id: u8, secret: &str) -> Option<u8> {
    let s = common::radius::udp(local, std::time::Duration::from_millis(700));
    common::radius::exchange(&s, d.ports.radius_auth, &access_request(id, secret)).map(|a| a[0])
}

/// A raw Diameter connection (CER/CEA, DWR/DWA only).
struct Diameter(common::diameter::Raw);

impl Diameter {
    /// Connects and sends a CER as `origin_host`; the CEA's Result-Code.
    fn connect(d: &common::Daemon, origin_host: &str) -> (Self, Option<u32>) {
        let (c, cea) = common::diameter::Raw::connect_cea(d, origin_host, "reload-it");
        let rc = cea.and_then(|a| a.result_code()).map(|c| c.0);
        (Self(c), rc)
    }

    /// A DWR on this connection; the DWA's Result-Code.
    fn watchdog(&mut self, origin_host: &str) -> Option<u32> {
        let a = self.0.try_call(common::diameter::dwr(origin_host))?;
        a.result_code().map(|c| c.0)
    }
}

/// Waits until `imei_lockd_config_reloads_total{result}` reaches `n`.
fn wait_reloads(d: &common::Daemon, result: &str, n: u32) {
    let needle = format!("imei_lockd_config_reloads_total{{result=\"{result}\"}} {n}");
    for _ in 0..200 {
        let text = common::http()
            .get(format!("http://127.0.0.1:{}/metrics", d.ports.metrics))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        if text.lines().any(|l| l == needle) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no `{needle}` in the metrics:\n{}", d.log_text());
}

#[test]
fn sighup_reloads_clients_peers_and_policies_and_refuses_a_bad_file() {
    let mut d = common::Daemon::start("");
    let base = common::config_text(d.dir.path(), &d.ports, "");
    // Before: 127.0.0.3 is no client; the unknown SIM is rejected; pgw2 is no peer.
    assert_eq!(radius_code(&d, "127.0.0.3:0", 1, "other"), None);
    assert_eq!(radius_code(&d, "127.0.0.1:0", 2, "testing123"), Some(3));
    let (_, rc) = Diameter::connect(&d, "pgw2.localdomain");
    assert_eq!(rc, Some(3010));
    let (mut old, rc) = Diameter::connect(&d, "pgw.localdomain");
    assert_eq!(rc, Some(2001));

    // A new client, a new peer, another policy, and a listen address (needs a restart).
    let extra = "[[radius.clients]]\nname = \"other\"\naddress = \"127.0.0.3/32\"\n\
                 secret = \"other\"\n\
                 [[diameter.peers]]\norigin_host = \"pgw2.localdomain\"\n";
    let new = common::config_text(d.dir.path(), &d.ports, extra)
        .replace("unknown_sim = \"reject\"", "unknown_sim = \"accept\"")
        .replace(
            &format!("acct_listen = \"127.0.0.1:{}\"", d.ports.radius_acct),
            "acct_listen = \"127.0.0.1:1\"",
        );
    assert_ne!(new, base);
    std::fs::write(&d.config, &new).unwrap();
    common::unsafe_kill(d.pid() as i32, 1);
    wait_reloads(&d, "ok", 1);
    // The new client is answered, and the new policy accepts the unknown SIM.
    assert_eq!(radius_code(&d, "127.0.0.3:0", 3, "other"), Some(2));
    assert_eq!(radius_code(&d, "127.0.0.1:0", 4, "testing123"), Some(2));
    // The new peer is known to new connections; the open one stays open.
    let (_, rc) = Diameter::connect(&d, "pgw2.localdomain");
    assert_eq!(rc, Some(2001));
    assert_eq!(old.watchdog("pgw.localdomain"), Some(2001));
    let log = d.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("configuration reloaded") && l.contains("\"radius_clients\":2")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("after a restart") && l.contains("radius.acct_listen")),
        "{log}"
    );

    // A bad file: refused, the key named, the running configuration kept.
    let bad = new.replace("address = \"127.0.0.3/32\"", "address = \"127.0.0.3/40\"");
    std::fs::write(&d.config, bad).unwrap();
    common::unsafe_kill(d.pid() as i32, 1);
    wait_reloads(&d, "error", 1);
    assert!(
        d.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the daemon keeps running"
    );
    assert_eq!(radius_code(&d, "127.0.0.3:0", 5, "other"), Some(2));
    assert_eq!(radius_code(&d, "127.0.0.1:0", 6, "testing123"), Some(2));
    let log = d.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("reload failed") && l.contains("radius.clients[1].address")),
        "{log}"
    );
    assert_eq!(old.watchdog("pgw.localdomain"), Some(2001));
    assert_eq!(d.terminate(), Some(0), "{}", d.log_text());
}

// ---------------------------------------------------------------------------------------------
// Packaging: the systemd unit, scripts/install.sh
// ---------------------------------------------------------------------------------------------

/// `systemd-analyze verify` on the shipped unit, with its binary paths pointed at the built
/// binary (verify checks that ExecStart= commands exist). Unknown keys only warn (exit 0), so
/// any line about the unit fails the test too.
#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    if !common::unit::systemd_analyze_available() {
        return;
    }
    let unit = std::fs::read_to_string(repo_root().join("systemd/imei-lockd.service")).unwrap();
    common::unit::assert_unit_verifies(&unit, &bin("imei-lockd"));
}

fn install_sh(args: &[&str], env: &[(&str, &std::path::Path)]) -> (i32, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("scripts/install.sh")).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::output(&mut cmd)
}

#[test]
fn install_sh_dry_run_lists_the_files_and_changes_nothing() {
    let dest = tempfile::tempdir().unwrap();
    let (code, text) = install_sh(&["--dry-run", "--no-build"], &[("DESTDIR", dest.path())]);
    assert_eq!(code, 0, "{text}");
    let root = dest.path().display().to_string();
    for file in [
        "/usr/bin/imei-lockd",
        "/usr/bin/imei-lockctl",
        "/etc/systemd/system/imei-lockd.service",
        "/etc/imei-lockd/imei-lockd.toml",
    ] {
        assert!(text.contains(&format!("{root}{file}")), "{file}: {text}");
    }
    assert!(!text.contains("cargo build"), "{text}");
    assert!(text.contains("nothing changed"), "{text}");
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
    // Without --no-build the release build is part of the plan.
    let (code, text) = install_sh(&["--dry-run"], &[("DESTDIR", dest.path())]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("cargo build --release"), "{text}");
    let (code, text) = install_sh(&["--bogus"], &[]);
    assert_eq!(code, 2, "{text}");
}

/// A real install into a staging root, from the test build's binaries, with PREFIX moved: the
/// unit follows PREFIX, and a second install keeps the operator's configuration.
#[test]
fn install_sh_stages_binaries_unit_and_keeps_the_config() {
    let dest = tempfile::tempdir().unwrap();
    let bin_dir = bin("imei-lockd").parent().unwrap().to_path_buf();
    let prefix = std::path::Path::new("/usr/local");
    let env = [
        ("DESTDIR", dest.path()),
        ("BIN_DIR", bin_dir.as_path()),
        ("PREFIX", prefix),
    ];
    let (code, text) = install_sh(&["--no-build"], &env);
    assert_eq!(code, 0, "{text}");
    let root = dest.path();
    for b in ["imei-lockd", "imei-lockctl"] {
        let p = root.join("usr/local/bin").join(b);
        let mode = std::os::unix::fs::PermissionsExt::mode(&p.metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o755, "{}", p.display());
    }
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/imei-lockd.service")).unwrap();
    assert!(
        unit.contains(
            "ExecStart=/usr/local/bin/imei-lockd --config /etc/imei-lockd/imei-lockd.toml"
        ),
        "{unit}"
    );
    assert!(!unit.contains("/usr/bin/imei-lockd"), "{unit}");
    let conf = root.join("etc/imei-lockd/imei-lockd.toml");
    let (code, text) = check(&conf, &[]);
    assert_eq!(code, 0, "{text}");
    std::fs::write(&conf, "# edited by the operator\n").unwrap();
    let (code, text) = install_sh(&["--no-build"], &env);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("keep existing"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        "# edited by the operator\n"
    );
}

/// `cargo deb` metadata: every asset exists (or is a binary of this package, or one of the
/// completions and man pages scripts/package-deb.sh generates into target/assets/), the
/// configuration is a conffile, and the unit comes from systemd/ with maintainer scripts.
#[test]
fn deb_metadata_assets_exist() {
    let out = common::stdout_of(
        Command::new(env!("CARGO"))
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--offline",
            ])
            .current_dir(repo_root()),
    );
    let meta: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let package = &meta["packages"][0];
    let deb = &package["metadata"]["deb"];
    let bins: Vec<&str> = package["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"][0] == "bin")
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let package_deb = std::fs::read_to_string(repo_root().join("scripts/package-deb.sh")).unwrap();
    let mut dests = Vec::new();
    for a in deb["assets"].as_array().unwrap() {
        let (src, dest) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
        if let Some(b) = src.strip_prefix("target/release/") {
            assert!(bins.contains(&b), "{src} is not a binary: {bins:?}");
        } else if let Some(generated) = src.strip_prefix("target/assets/") {
            let dir = generated.trim_end_matches("/*");
            assert!(
                package_deb.contains(&format!("/{dir}")),
                "{src}: not generated"
            );
        } else {
            assert!(repo_root().join(src).is_file(), "{src} missing");
        }
        let name = src.rsplit('/').next().unwrap();
        dests.push(format!("/{dest}{name}"));
    }
    for want in [
        "/usr/bin/imei-lockd",
        "/usr/bin/imei-lockctl",
        "/etc/imei-lockd/imei-lockd.toml",
        "/usr/lib/sysctl.d/60-imei-lockd.conf",
    ] {
        assert!(dests.iter().any(|d| d == want), "{want}: {dests:?}");
    }
    assert_eq!(
        deb["conf-files"],
        serde_json::json!(["/etc/imei-lockd/imei-lockd.toml"])
    );
    // The unit is an asset of the systemd-units table (cargo-deb adds it and the maintainer
    // scripts' systemd parts), read from unit-scripts.
    let units = &deb["systemd-units"];
    let unit_dir = units["unit-scripts"].as_str().unwrap();
    assert!(repo_root()
        .join(unit_dir)
        .join("imei-lockd.service")
        .is_file());
    let scripts = deb["maintainer-scripts"].as_str().unwrap();
    for s in ["postinst", "postrm"] {
        let text = std::fs::read_to_string(repo_root().join(scripts).join(s)).unwrap();
        assert!(text.contains("#DEBHELPER#"), "{s}");
    }
}

#[test]
fn help_documents_the_flags_and_the_subcommand() {
    let help = |args: &[&str]| {
        let out = Command::new(bin("imei-lockd")).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let top = help(&["--help"]);
    for needle in [
        "--config <FILE>",
        "IMEI_LOCKD__",
        "/etc/imei-lockd/imei-lockd.toml",
        "check-config",
        "--version",
        "SIGHUP",
        "Exit codes",
    ] {
        assert!(top.contains(needle), "{needle}: {top}");
    }
    let sub = help(&["check-config", "--help"]);
    for needle in ["--config <FILE>", "Exit code 0", "naming the key"] {
        assert!(sub.contains(needle), "{needle}: {sub}");
    }
    assert!(help(&["--version"]).contains(env!("CARGO_PKG_VERSION")));
}
