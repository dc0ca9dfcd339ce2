//! `imei-lockd check-config` and startup against the real binary: the shipped file passes, bad
//! files exit with code 2 and name the key, environment overrides apply.

mod common;

use std::process::Command;

use common::{bin, repo_root};

fn check(path: &std::path::Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(bin("imei-lockd"));
    cmd.arg("check-config").arg("--config").arg(path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
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
