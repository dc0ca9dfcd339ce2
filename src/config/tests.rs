//! Loading and validating whole configuration files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::*;
use crate::engine::MissingImeiPolicy;

fn write(dir: &tempfile::TempDir, body: &str) -> PathBuf {
    let p = dir.path().join("c.toml");
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn shipped_file_is_valid() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/imei-lockd.toml");
    let c = Config::load(&p).unwrap();
    assert_eq!(c.node.data_dir, PathBuf::from("./data"));
    assert_eq!(c.radius.clients.len(), 1);
    assert!(c.radius.clients[0].require_message_authenticator);
    assert_eq!(c.diameter.s6b.missing_imei, MissingImeiPolicy::Accept);
    assert_eq!(c.cluster.backend, ClusterBackend::Embedded);
}

/// The metrics port moved off node_exporter's 9100; 9100 still works when configured.
#[test]
fn metrics_listen_default_and_the_old_port() {
    let d = tempfile::tempdir().unwrap();
    let c = Config::load(&write(&d, "")).unwrap();
    assert_eq!(c.metrics.listen, DEFAULT_METRICS_LISTEN);
    assert_eq!(DEFAULT_METRICS_LISTEN, "127.0.0.1:13868");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/imei-lockd.toml");
    assert_eq!(
        Config::load(&shipped).unwrap().metrics.listen,
        DEFAULT_METRICS_LISTEN
    );
    let c = Config::load(&write(&d, "[metrics]\nlisten = \"127.0.0.1:9100\"\n")).unwrap();
    assert_eq!(c.metrics.listen, "127.0.0.1:9100");
}

/// The commented `[cluster]` example of the shipped file, uncommented (without the TLS and
/// authentication lines, which need files), is a valid etcd configuration.
#[test]
fn shipped_cluster_example_is_valid() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/imei-lockd.toml");
    let shipped = std::fs::read_to_string(p).unwrap();
    let (before, example) = shipped.split_once("\n# [cluster]\n").unwrap();
    let mut body = format!("{before}\n[cluster]\n");
    for line in example.lines() {
        let Some(l) = line.strip_prefix("# ") else {
            continue;
        };
        let key = l.split_once(" = ").map(|(k, _)| k);
        let is_key = key.is_some_and(|k| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        let needs_files = ["ca_file", "cert_file", "key_file", "user", "password_file"];
        if l.starts_with("[cluster.") || (is_key && !needs_files.contains(&key.unwrap())) {
            body.push_str(l);
            body.push('\n');
        }
    }
    let d = tempfile::tempdir().unwrap();
    let c = Config::load(&write(&d, &body)).unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert_eq!(c.cluster.backend, ClusterBackend::Etcd);
    assert_eq!(c.cluster.node_name, "aaa-1");
    assert_eq!(c.cluster.etcd.endpoints.len(), 3);
    assert_eq!(c.cluster.etcd.prefix, "/imei-lockd");
}

#[test]
fn errors_name_the_key() {
    let d = tempfile::tempdir().unwrap();
    for (body, key) in [
        ("[diameter]\nwatchdog_s = \"soon\"\n", "watchdog_s"),
        ("[policy]\nunknown_sim = \"maybe\"\n", "unknown_sim"),
        (
            "[radius]\nauth_listen = \"nowhere\"\n",
            "radius.auth_listen",
        ),
        (
            "[[radius.clients]]\nname=\"a\"\naddress=\"10.0.0.0/33\"\nsecret=\"s\"\n",
            "radius.clients[0].address",
        ),
        (
            "[diameter]\nlisten = [\"udp://1.2.3.4:1\"]\n",
            "diameter.listen",
        ),
        ("[billing]\nlock_fee = \"1,00\"\n", "billing.lock_fee"),
        ("[radius]\nauth_listn = \"0.0.0.0:1\"\n", "auth_listn"),
        ("[api]\nlisten = \"0.0.0.0:8080\"\n", "api.token"),
        ("[cluster]\nbackend = \"raft\"\n", "cluster.backend"),
        ("[cluster]\nlease_ttl_s = \"5s\"\n", "cluster.lease_ttl_s"),
        ("[cluster]\nnode_nam = \"a\"\n", "node_nam"),
        ("[cluster.etcd]\nendpoint = [\"http://e:1\"]\n", "endpoint"),
        (
            "[cluster.etcd]\nendpoints = \"http://e:1\"\n",
            "cluster.etcd.endpoints",
        ),
        ("[cluster]\nbackend = \"etcd\"\n", "cluster.etcd.endpoints"),
        (
            "[cluster.etcd]\nendpoints = [\"http://e:1\", \"http://e:\"]\n",
            "cluster.etcd.endpoints[1]",
        ),
    ] {
        let p = write(&d, body);
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains(key), "{body:?}: {e}");
    }
}

#[test]
fn sctp_entries_of_one_port_and_family_are_one_endpoint() {
    let mut c = Config::default();
    let listen = |c: &mut Config, l: &[&str]| {
        c.diameter.listen = l.iter().map(|s| (*s).to_owned()).collect();
        c.diameter_listeners()
    };
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    let got = listen(
        &mut c,
        &[
            "sctp://127.0.0.1:3868",
            "tcp://127.0.0.1:3868",
            "sctp://[::1]:3868",
            "sctp://127.0.0.2:3868",
            "sctp://127.0.0.1:3869",
        ],
    )
    .unwrap();
    assert_eq!(
        got,
        vec![
            DiameterListen::Sctp(vec![a("127.0.0.1:3868"), a("127.0.0.2:3868")]),
            DiameterListen::Tcp(a("127.0.0.1:3868")),
            DiameterListen::Sctp(vec![a("[::1]:3868")]),
            DiameterListen::Sctp(vec![a("127.0.0.1:3869")]),
        ]
    );
    // Wildcards of both families stay two endpoints, as before.
    let got = listen(&mut c, &["sctp://0.0.0.0:3868", "sctp://[::]:3868"]).unwrap();
    assert_eq!(got.len(), 2);
    for (bad, says) in [
        (
            &["sctp://0.0.0.0:3868", "sctp://127.0.0.1:3868"][..],
            "sctp://0.0.0.0:3868 already binds every address of port 3868",
        ),
        (
            &["sctp://127.0.0.1:3868", "sctp://0.0.0.0:3868"][..],
            "sctp://0.0.0.0:3868 already binds every address of port 3868",
        ),
        (
            &["sctp://127.0.0.1:3868", "sctp://127.0.0.1:3868"][..],
            "listed twice",
        ),
    ] {
        let e = listen(&mut c, bad).unwrap_err().to_string();
        assert!(
            e.contains("diameter.listen") && e.contains(says),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn amounts() {
    for ok in ["1", "1.00", "0.5", "12.3456"] {
        parse_amount("k", ok).unwrap();
    }
    for bad in ["", "-1", "1.", ".5", "1.23456", "1e3", "one"] {
        assert!(parse_amount("k", bad).is_err(), "{bad}");
    }
}

#[test]
fn backup_dir_defaults_beside_the_data_dir_and_never_inside_it() {
    let mut c = Config::default();
    assert_eq!(c.node.backup_dir(), PathBuf::from("./backups"));
    c.node.data_dir = "/var/lib/imei-lockd/".into();
    assert_eq!(c.node.backup_dir(), PathBuf::from("/var/lib/backups"));
    c.node.data_dir = "data".into();
    assert_eq!(c.node.backup_dir(), PathBuf::from("backups"));
    c.node.backup_dir = Some("data/backups".into());
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("node.backup_dir"), "{err}");
    c.node.backup_dir = Some("/srv/backups".into());
    assert_eq!(c.node.backup_dir(), PathBuf::from("/srv/backups"));
}
