//! The log lines an operator relies on, against the real binary (docs/operations/logging.md):
//! WARN for a datagram from an unknown RADIUS client, a bad Message-Authenticator and a
//! refused Diameter peer, at most one line per source and reason per 10 s with the suppressed
//! count on the next; journald priority prefixes when stderr is the journal stream.

mod common;

use std::net::UdpSocket;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::diameter::Raw;
use common::radius::{access_request, authenticator, drops, udp, SECRET};
use common::Daemon;
use imei_lockd::diameter::codec::ResultCode;

/// The log's JSON lines (a journald `<N>` prefix removed) at `level` whose message contains
/// `text`.
fn lines(log: &str, level: &str, text: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| {
            let json = l.find('{').map(|i| &l[i..])?;
            serde_json::from_str::<Value>(json).ok()
        })
        .filter(|v| v["level"] == level)
        .filter(|v| v["message"].as_str().is_some_and(|m| m.contains(text)))
        .collect()
}

/// Waits up to 10 s for `cond` on the daemon's log; returns the log.
fn wait_log(d: &Daemon, cond: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = d.log_text();
        if cond(&log) || Instant::now() >= deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn send(s: &UdpSocket, d: &Daemon, pkt: &[u8]) {
    s.send_to(pkt, ("127.0.0.1", d.ports.radius_auth)).unwrap();
}

/// Lines of `reason` from source address `ip` (any port).
fn from<'a>(ls: &'a [Value], reason: &str, ip: &str) -> Vec<&'a Value> {
    ls.iter()
        .filter(|v| v["reason"] == reason)
        .filter(|v| {
            v["src"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("{ip}:")))
        })
        .collect()
}

#[test]
fn radius_warnings_once_per_source_per_window_then_the_suppressed_count() {
    let d = Daemon::start("");
    // 127.0.0.2 and .3 are loopback addresses outside the daemon's only client, 127.0.0.1/32.
    let stranger = udp("127.0.0.2:0", Duration::from_millis(200));
    let other = udp("127.0.0.3:0", Duration::from_millis(200));
    let client = udp("127.0.0.1:0", Duration::from_millis(200));
    let ok = |id| access_request(id, authenticator(id), "001010000000501", None, SECRET, true);
    let forged = |id| {
        access_request(
            id,
            authenticator(id),
            "001010000000501",
            None,
            "not-the-secret",
            true,
        )
    };
    for id in 0..5 {
        send(&stranger, &d, &ok(id));
        send(&client, &d, &forged(id));
    }
    send(&other, &d, &ok(9));
    let m = common::wait_metrics(&d, Duration::from_secs(10), |m| {
        drops(m, "unknown_client") >= 6.0 && drops(m, "bad_message_authenticator") >= 5.0
    });
    assert_eq!(drops(&m, "unknown_client"), 6.0, "{m}");
    assert_eq!(drops(&m, "bad_message_authenticator"), 5.0, "{m}");
    let log = wait_log(&d, |l| {
        !lines(l, "WARN", "Message-Authenticator does not verify").is_empty()
            && lines(l, "WARN", "unknown client").len() >= 2
    });
    let unknown = lines(&log, "WARN", "unknown client");
    let bad_ma = lines(&log, "WARN", "Message-Authenticator does not verify");
    let a = from(&unknown, "unknown_client", "127.0.0.2");
    assert_eq!(a.len(), 1, "one line for 5 datagrams:\n{log}");
    assert_eq!(a[0]["suppressed"], 0);
    assert_eq!(a[0]["port"], "auth");
    assert_eq!(from(&unknown, "unknown_client", "127.0.0.3").len(), 1);
    let b = from(&bad_ma, "bad_message_authenticator", "127.0.0.1");
    assert_eq!(b.len(), 1, "{log}");
    // Still inside the window: more drops, no more lines.
    send(&stranger, &d, &ok(20));
    common::wait_metrics(&d, Duration::from_secs(5), |m| {
        drops(m, "unknown_client") >= 7.0
    });
    std::thread::sleep(Duration::from_millis(200));
    let log = d.log_text();
    assert_eq!(
        from(
            &lines(&log, "WARN", "unknown client"),
            "unknown_client",
            "127.0.0.2"
        )
        .len(),
        1
    );
    // After the window: one more line each, saying how many were left out.
    std::thread::sleep(Duration::from_millis(10_300));
    send(&stranger, &d, &ok(30));
    send(&client, &d, &forged(30));
    let log = wait_log(&d, |l| {
        from(
            &lines(l, "WARN", "unknown client"),
            "unknown_client",
            "127.0.0.2",
        )
        .len()
            >= 2
            && from(
                &lines(l, "WARN", "Message-Authenticator does not verify"),
                "bad_message_authenticator",
                "127.0.0.1",
            )
            .len()
                >= 2
    });
    let unknown = lines(&log, "WARN", "unknown client");
    let a = from(&unknown, "unknown_client", "127.0.0.2");
    assert_eq!(a.len(), 2, "{log}");
    assert_eq!(a[1]["suppressed"], 5, "4 of the burst and 1 more: {}", a[1]);
    let bad_ma = lines(&log, "WARN", "Message-Authenticator does not verify");
    let b = from(&bad_ma, "bad_message_authenticator", "127.0.0.1");
    assert_eq!(b.len(), 2, "{log}");
    assert_eq!(b[1]["suppressed"], 4, "{}", b[1]);
}

#[test]
fn refused_diameter_peers_are_warned_once_per_source_and_reason() {
    let d = Daemon::start(
        "[[diameter.peers]]\norigin_host = \"far.localdomain\"\naddress = \"10.99.0.0/16\"\n",
    );
    for _ in 0..3 {
        let (_r, cea) = Raw::connect_cea(&d, "stranger.localdomain", "it");
        assert_eq!(cea.unwrap().result_code(), Some(ResultCode::UNKNOWN_PEER));
    }
    for _ in 0..2 {
        let (_r, cea) = Raw::connect_cea(&d, "far.localdomain", "it");
        assert_eq!(cea.unwrap().result_code(), Some(ResultCode::UNKNOWN_PEER));
    }
    common::wait_metrics(&d, Duration::from_secs(10), |m| {
        common::counter(
            m,
            "imei_lockd_diameter_errors_total",
            &["reason=\"cer_rejected\""],
        ) >= 5.0
    });
    let log = wait_log(&d, |l| lines(l, "WARN", "diameter peer refused").len() >= 2);
    assert!(!log.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let log = d.log_text();
    let refused = lines(&log, "WARN", "diameter peer refused");
    let unknown: Vec<_> = refused
        .iter()
        .filter(|v| v["reason"] == "unknown_origin_host")
        .collect();
    assert_eq!(unknown.len(), 1, "three refusals, one line:\n{log}");
    assert_eq!(unknown[0]["origin_host"], "stranger.localdomain");
    assert_eq!(unknown[0]["suppressed"], 0);
    assert!(unknown[0]["message"]
        .as_str()
        .unwrap()
        .contains("not in [[diameter.peers]]"));
    let addr: Vec<_> = refused
        .iter()
        .filter(|v| v["reason"] == "address_not_allowed")
        .collect();
    assert_eq!(addr.len(), 1, "{log}");
    assert_eq!(addr[0]["origin_host"], "far.localdomain");
    // The connection-closed INFO line is not written for refusals (the WARN replaces it).
    assert!(
        lines(&log, "INFO", "closed before capabilities exchange").is_empty(),
        "{log}"
    );
}

/// The `<N>` prefix of a line, and the priority its level should have.
fn priority_of(line: &str) -> Option<(&str, &'static str)> {
    let end = line.find('>')?;
    let prefix = line.get(..=end)?;
    let v: Value = serde_json::from_str(line.get(end + 1..)?).ok()?;
    let want = match v["level"].as_str()? {
        "ERROR" => "<3>",
        "WARN" => "<4>",
        "INFO" => "<6>",
        _ => "<7>",
    };
    Some((prefix, want))
}

#[test]
fn journald_priority_prefix_when_stderr_is_the_journal_stream() {
    let mut d = Daemon::start("");
    // Without JOURNAL_STREAM: plain lines.
    let plain = d.log_text();
    assert!(
        plain.lines().all(|l| l.starts_with('{')),
        "no prefix without JOURNAL_STREAM:\n{plain}"
    );
    // The daemon's stderr is this file: name its device and inode as systemd would.
    let meta = std::fs::metadata(&d.log).unwrap();
    d.terminate();
    let before = d.log_text().len();
    d.env.push((
        "JOURNAL_STREAM".into(),
        format!("{}:{}", meta.dev(), meta.ino()),
    ));
    d.spawn();
    let stranger = udp("127.0.0.2:0", Duration::from_millis(200));
    let pkt = access_request(1, authenticator(1), "001010000000502", None, SECRET, true);
    send(&stranger, &d, &pkt);
    let log = wait_log(&d, |l| l.get(before..).is_some_and(|t| t.contains("<4>{")));
    let after = &log[before..];
    let mut seen = std::collections::BTreeSet::new();
    for line in after.lines().filter(|l| !l.is_empty()) {
        let (prefix, want) =
            priority_of(line).unwrap_or_else(|| panic!("no priority prefix: {line}"));
        assert_eq!(prefix, want, "{line}");
        seen.insert(want);
    }
    assert!(
        seen.contains("<4>") && seen.contains("<6>"),
        "{seen:?}\n{after}"
    );
    // A stale JOURNAL_STREAM (another stream's inode): no prefix.
    d.terminate();
    let before = d.log_text().len();
    d.env.retain(|(k, _)| k != "JOURNAL_STREAM");
    d.env.push((
        "JOURNAL_STREAM".into(),
        format!("{}:{}", meta.dev(), meta.ino() + 1),
    ));
    d.spawn();
    let log = d.log_text();
    assert!(
        log[before..].lines().all(|l| l.starts_with('{')),
        "{}",
        &log[before..]
    );
}

/// `journalctl -p warning` shows the daemon's WARN lines: run where journald is (a systemd
/// host); skipped with a message where it is not (containers, CI runners without systemd).
#[test]
fn journalctl_priority_filter_on_a_systemd_host() {
    if !Path::new("/run/systemd/journal/stdout").exists()
        || Command::new("systemd-run")
            .arg("--version")
            .output()
            .is_err()
    {
        eprintln!(
            "skipped: no journald on this machine (/run/systemd/journal/stdout missing); \
             the prefix itself is checked by journald_priority_prefix_when_stderr_is_the_journal_stream"
        );
        return;
    }
    // A daemon without RADIUS clients warns at start ("no [[radius.clients]] configured").
    let dir = tempfile::tempdir().unwrap();
    let ports = common::Ports::new();
    let text = common::config_text(dir.path(), &ports, "");
    let start = text.find("[[radius.clients]]").unwrap();
    let end = text[start..].find("[diameter]").unwrap() + start;
    let config = dir.path().join("c.toml");
    std::fs::write(&config, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let unit = format!("imei-lockd-it-{}", std::process::id());
    let status = Command::new("systemd-run")
        .args(["--quiet", "--collect", "--unit", &unit])
        .args(["-p", "RuntimeMaxSec=5", "-p", "StandardError=journal"])
        .arg(common::bin("imei-lockd"))
        .arg("--config")
        .arg(&config)
        .status()
        .unwrap();
    if !status.success() {
        eprintln!("skipped: systemd-run refused to start a transient unit ({status})");
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = Command::new("journalctl")
            .args(["-u", &unit, "-p", "warning", "-o", "cat", "--no-pager"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("no [[radius.clients]] configured") {
            assert!(
                !text.contains("diameter listening"),
                "INFO filtered out: {text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "WARN not in journalctl -p warning:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("systemctl").args(["stop", &unit]).status();
}
