//! `[cluster]`: defaults, the etcd keys' checks and the password file.

use super::*;

/// An etcd configuration every test below breaks in one place.
fn etcd() -> ClusterConfig {
    ClusterConfig {
        backend: ClusterBackend::Etcd,
        node_name: "aaa-1".into(),
        etcd: EtcdConfig {
            endpoints: vec![
                "http://127.0.0.1:2379".into(),
                "http://etcd-2.example.net:2379".into(),
                "http://[::1]:2379".into(),
            ],
            ..EtcdConfig::default()
        },
        ..ClusterConfig::default()
    }
}

/// `f` breaks [`etcd`]; the error names `key` (and, if given, says `says`).
fn refused(key: &str, says: &str, f: impl FnOnce(&mut ClusterConfig)) {
    let mut c = etcd();
    f(&mut c);
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains(&format!("`{key}`")) && e.contains(says),
        "want `{key}` ({says}): {e}"
    );
}

fn file(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn https(c: &mut ClusterConfig) {
    c.etcd.endpoints = vec!["https://10.0.0.1:2379".into(), "https://etcd:2379".into()];
}

#[test]
fn defaults_are_embedded_and_valid() {
    let c = ClusterConfig::default();
    assert_eq!(c.backend, ClusterBackend::Embedded);
    assert_eq!(c.lease_ttl_s, 5);
    assert_eq!(c.event_retention_days, None);
    assert!(c.etcd.endpoints.is_empty());
    assert_eq!(c.etcd.prefix, "/imei-lockd");
    assert_eq!(c.etcd.connect_timeout_ms, 2000);
    assert_eq!(c.etcd.request_timeout_ms, 2000);
    assert!(valid_node_name(&c.node_name), "{}", c.node_name);
    c.validate().unwrap();
    etcd().validate().unwrap();
    assert!(!etcd().etcd.tls());
    assert_eq!(etcd().etcd.credentials(), None);
}

#[test]
fn node_name_defaults_to_the_first_valid_host_name() {
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(first_valid_node_name([s("aaa-1"), s("other")]), "aaa-1");
    assert_eq!(
        first_valid_node_name([None, s("aaa-2.example.net")]),
        "aaa-2.example.net"
    );
    assert_eq!(
        first_valid_node_name([s(&"a".repeat(64)), s("")]),
        "imei-lockd"
    );
    assert_eq!(first_valid_node_name([None, None]), "imei-lockd");
    if let Some(h) = gethostname().filter(|h| valid_node_name(h)) {
        assert_eq!(default_node_name(), h);
    }
}

#[test]
fn node_name() {
    for ok in ["a", "aaa-1", "node_2.dc1", &"n".repeat(63)] {
        let mut c = etcd();
        c.node_name = ok.into();
        c.validate().unwrap();
    }
    for bad in ["", "aaa 1", "aaa/1", "nœud", &"n".repeat(64)] {
        refused("cluster.node_name", "1 to 63", |c| c.node_name = bad.into());
    }
}

#[test]
fn lease_ttl_and_event_retention_ranges() {
    for (ttl, ok) in [(1, false), (2, true), (60, true), (61, false), (0, false)] {
        let mut c = etcd();
        c.lease_ttl_s = ttl;
        assert_eq!(c.validate().is_ok(), ok, "{ttl}");
    }
    refused("cluster.lease_ttl_s", "2 to 60", |c| c.lease_ttl_s = 61);
    for (days, ok) in [(0, false), (1, true), (3650, true), (3651, false)] {
        let mut c = etcd();
        c.event_retention_days = Some(days);
        assert_eq!(c.validate().is_ok(), ok, "{days}");
    }
    refused("cluster.max_lag_ms", "100 to 60000", |c| c.max_lag_ms = 99);
    refused("cluster.max_lag_ms", "100 to 60000", |c| {
        c.max_lag_ms = 60_001
    });
    refused("cluster.event_retention_days", "1 to 3650", |c| {
        c.event_retention_days = Some(0);
    });
}

#[test]
fn endpoints_are_required_for_etcd_only() {
    refused("cluster.etcd.endpoints", "at least one", |c| {
        c.etcd.endpoints.clear();
    });
    let mut c = etcd();
    c.backend = ClusterBackend::Embedded;
    c.etcd.endpoints.clear();
    c.validate().unwrap();
}

#[test]
fn endpoints_are_http_or_https_host_port() {
    for ok in [
        "http://127.0.0.1:2379",
        "https://127.0.0.1:1",
        "http://localhost:65535",
        "http://etcd-1.example.net.:2379",
        "http://[::1]:2379",
        "https://[fd00::1]:2379",
    ] {
        let mut c = etcd();
        c.etcd.endpoints = vec![ok.into()];
        c.validate().unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, says) in [
        ("127.0.0.1:2379", "scheme"),
        ("unix:///run/etcd.sock", "scheme"),
        ("grpc://127.0.0.1:2379", "scheme"),
        ("HTTP://127.0.0.1:2379", "scheme"),
        ("http://127.0.0.1", "port"),
        ("http://127.0.0.1:", "port"),
        ("http://127.0.0.1:0", "port"),
        ("http://127.0.0.1:65536", "port"),
        ("http://127.0.0.1:+1", "port"),
        ("http://127.0.0.1:2379/", "port"),
        ("http://127.0.0.1:2379/v3", "port"),
        ("http://:2379", "host"),
        ("http://user@etcd:2379", "host"),
        ("http://999.0.0.1:2379", "host"),
        ("http://::1:2379", "host"),
        ("http://[::g]:2379", "host"),
        ("http://-etcd:2379", "host"),
        ("http://et_cd:2379", "host"),
        ("http://et cd:2379", "host"),
    ] {
        refused("cluster.etcd.endpoints[1]", says, |c| {
            c.etcd.endpoints[1] = bad.into();
        });
    }
    refused("cluster.etcd.endpoints[2]", "listed twice", |c| {
        c.etcd.endpoints[2] = "http://127.0.0.1:2379".into();
    });
    refused("cluster.etcd.endpoints[1]", "scheme of", |c| {
        c.etcd.endpoints[1] = "https://127.0.0.2:2379".into();
    });
}

#[test]
fn prefix() {
    for ok in ["/imei-lockd", "/a", "/prod/imei-lockd", "/x_1.2~"] {
        let mut c = etcd();
        c.etcd.prefix = ok.into();
        c.validate().unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        "",
        "/",
        "imei-lockd",
        "/imei-lockd/",
        "/imei lockd",
        "/é",
        "/a\tb",
    ] {
        refused("cluster.etcd.prefix", "must start with '/'", |c| {
            c.etcd.prefix = bad.into();
        });
    }
}

#[test]
fn timeouts() {
    for (v, ok) in [(99, false), (100, true), (60_000, true), (60_001, false)] {
        let mut c = etcd();
        c.etcd.connect_timeout_ms = v;
        c.etcd.request_timeout_ms = v;
        assert_eq!(c.validate().is_ok(), ok, "{v}");
    }
    refused("cluster.etcd.connect_timeout_ms", "100 to 60000", |c| {
        c.etcd.connect_timeout_ms = 99;
    });
    refused("cluster.etcd.request_timeout_ms", "100 to 60000", |c| {
        c.etcd.request_timeout_ms = 60_001;
    });
}

#[test]
fn tls_files() {
    let d = tempfile::tempdir().unwrap();
    let pem = file(&d, "x.pem", "-----BEGIN CERTIFICATE-----\n");
    let missing = d.path().join("missing.pem");
    // https:// without any file: the system roots, valid.
    let mut c = etcd();
    https(&mut c);
    c.validate().unwrap();
    assert!(c.etcd.tls());
    // All three, readable.
    c.etcd.ca_file = Some(pem.clone());
    c.etcd.cert_file = Some(pem.clone());
    c.etcd.key_file = Some(pem.clone());
    c.validate().unwrap();
    // Cert and key together or neither.
    refused("cluster.etcd.key_file", "both or neither", |c| {
        https(c);
        c.etcd.cert_file = Some(pem.clone());
    });
    refused("cluster.etcd.cert_file", "both or neither", |c| {
        https(c);
        c.etcd.key_file = Some(pem.clone());
    });
    // Readable regular files.
    for key in ["ca_file", "cert_file", "key_file"] {
        for (path, says) in [
            (missing.clone(), "cannot read"),
            (d.path().to_path_buf(), "not a regular file"),
            (PathBuf::new(), "must not be empty"),
        ] {
            refused(&format!("cluster.etcd.{key}"), says, |c| {
                https(c);
                c.etcd.cert_file = Some(pem.clone());
                c.etcd.key_file = Some(pem.clone());
                match key {
                    "ca_file" => c.etcd.ca_file = Some(path),
                    "cert_file" => c.etcd.cert_file = Some(path),
                    _ => c.etcd.key_file = Some(path),
                }
            });
        }
    }
    // Any TLS file with an http:// endpoint names that file's key and the endpoint.
    refused("cluster.etcd.ca_file", "endpoints[0]", |c| {
        c.etcd.ca_file = Some(pem.clone());
    });
    refused("cluster.etcd.cert_file", "TLS needs https://", |c| {
        c.etcd.cert_file = Some(pem.clone());
        c.etcd.key_file = Some(pem.clone());
    });
}

#[test]
fn user_and_password() {
    let d = tempfile::tempdir().unwrap();
    let pw = file(&d, "pw", "s3cret\n");
    let mut c = etcd();
    c.etcd.user = Some("root".into());
    c.etcd.password = Some("inline".into());
    c.validate().unwrap();
    assert_eq!(c.etcd.credentials(), Some(("root", "inline")));
    assert!(!format!("{c:?}").contains("inline"), "{c:?}");
    refused("cluster.etcd.user", "must not be empty", |c| {
        c.etcd.user = Some(String::new());
        c.etcd.password = Some("x".into());
    });
    refused("cluster.etcd.password", "password_file", |c| {
        c.etcd.user = Some("root".into());
    });
    refused("cluster.etcd.password", "not both", |c| {
        c.etcd.user = Some("root".into());
        c.etcd.password = Some("x".into());
        c.etcd.password_file = Some(pw.clone());
    });
    refused("cluster.etcd.password", "must not be empty", |c| {
        c.etcd.user = Some("root".into());
        c.etcd.password = Some(String::new());
    });
    refused("cluster.etcd.password", "without cluster.etcd.user", |c| {
        c.etcd.password = Some("x".into());
    });
    refused(
        "cluster.etcd.password_file",
        "without cluster.etcd.user",
        |c| c.etcd.password_file = Some(pw.clone()),
    );
}

#[test]
fn password_file_is_read_without_its_trailing_newline() {
    let d = tempfile::tempdir().unwrap();
    let mut c = etcd();
    c.etcd.user = Some("root".into());
    for (body, want) in [
        ("s3cret\n", "s3cret"),
        ("s3 cret \r\n", "s3 cret "),
        ("no-newline", "no-newline"),
    ] {
        c.etcd.password_file = Some(file(&d, "pw", body));
        c.validate().unwrap();
        c.etcd.read_password_file().unwrap();
        assert_eq!(c.etcd.credentials(), Some(("root", want)));
        assert!(!format!("{c:?}").contains(want), "{c:?}");
    }
    for (path, says) in [
        (file(&d, "empty", "\n"), "is empty"),
        (d.path().join("missing"), "cannot read"),
    ] {
        c.etcd.password_file = Some(path);
        let e = c.etcd.read_password_file().unwrap_err().to_string();
        assert!(
            e.contains("`cluster.etcd.password_file`") && e.contains(says),
            "{e}"
        );
    }
}
