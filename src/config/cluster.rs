//! `[cluster]` and `[cluster.etcd]`: one node on its embedded RocksDB store (the default, as
//! before), or several nodes that make one lock on an etcd cluster (issue 17).
//!
//! Only the configuration lives here: the keys, their defaults and their checks. Like the rest of
//! [`super::Config`], unknown keys are errors and every check names its key
//! (`cluster.etcd.endpoints[1]`). Every key is checked whatever the backend, so a prepared
//! `[cluster.etcd]` section is already right on the day `backend` becomes `"etcd"`; only the
//! requirement of at least one endpoint depends on it. [`super::Config::load`] also reads
//! `cluster.etcd.password_file`, so that an unreadable secret fails `check-config` rather than
//! the first connection.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Where the node keeps the shared state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterBackend {
    /// One node, its own RocksDB store in `node.data_dir`.
    Embedded,
    /// Several nodes, one etcd cluster (`[cluster.etcd]`) as the source of truth.
    Etcd,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub backend: ClusterBackend,
    /// This node's name among the cluster's nodes: 1 to 63 of `[A-Za-z0-9._-]`. Default: the
    /// host name ([`default_node_name`]).
    pub node_name: String,
    /// How long a node may be cut off from etcd before it stops serving sessions and the others
    /// no longer wait for it, seconds (2 to 60).
    pub lease_ttl_s: u64,
    /// How far behind a change another node may stay before the node waiting for it revokes
    /// its lease (it stops serving until it has caught up), milliseconds (100 to 60000).
    pub max_lag_ms: u64,
    /// How long events are kept, days (1 to 3650). The older key of `retention.events_days`,
    /// which wins when both are set (absent: that one, or its default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_retention_days: Option<u64>,
    pub etcd: EtcdConfig,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            backend: ClusterBackend::Embedded,
            node_name: default_node_name(),
            lease_ttl_s: 5,
            max_lag_ms: 1000,
            event_retention_days: None,
            etcd: EtcdConfig::default(),
        }
    }
}

/// `[cluster.etcd]`. `Debug` shows the password as `"***"`.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdConfig {
    /// `http://HOST:PORT` or `https://HOST:PORT`, all with one scheme; at least one when
    /// `cluster.backend = "etcd"`.
    pub endpoints: Vec<String>,
    /// Every key the cluster writes starts with this: `/` and printable ASCII, no space, no
    /// trailing `/`.
    pub prefix: String,
    /// Connecting to an endpoint, milliseconds (100 to 60000).
    pub connect_timeout_ms: u64,
    /// One etcd request, milliseconds (100 to 60000).
    pub request_timeout_ms: u64,
    /// Most writes in one transaction: the etcd members' `--max-txn-ops` (etcd's default 128).
    /// Provisioning writes SIMs in chunks that fit (a third of it per chunk).
    pub max_txn_ops: usize,
    /// PEM CA bundle for `https://` endpoints; without it the system roots are trusted.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (TLS client authentication); with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// etcd user (authentication enabled on the cluster); with `password` or `password_file`.
    pub user: Option<String>,
    pub password: Option<String>,
    /// A file holding the password (one trailing newline ignored), read by `Config::load`.
    pub password_file: Option<PathBuf>,
    /// The password read from `password_file`.
    #[serde(skip)]
    password_from_file: Option<String>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            prefix: "/imei-lockd".into(),
            connect_timeout_ms: 2000,
            request_timeout_ms: 2000,
            max_txn_ops: 128,
            ca_file: None,
            cert_file: None,
            key_file: None,
            user: None,
            password: None,
            password_file: None,
            password_from_file: None,
        }
    }
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |p: &Option<String>| p.as_ref().map(|_| "***");
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("max_txn_ops", &self.max_txn_ops)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("password_file", &self.password_file)
            .field("password_from_file", &hidden(&self.password_from_file))
            .finish()
    }
}

impl EtcdConfig {
    /// Whether the endpoints are `https://` (validated: all endpoints share one scheme).
    pub fn tls(&self) -> bool {
        self.endpoints.iter().any(|e| e.starts_with("https://"))
    }

    /// `(user, password)` when `user` is set, the password from `password` or from
    /// `password_file` (read by `Config::load`).
    pub fn credentials(&self) -> Option<(&str, &str)> {
        let user = self.user.as_deref()?;
        let password = self
            .password
            .as_deref()
            .or(self.password_from_file.as_deref())?;
        Some((user, password))
    }

    /// Reads `password_file`, if set. Trailing `\n` / `\r\n` are not part of the password.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `cluster.etcd.password_file` when the file cannot be
    /// read or holds nothing else.
    pub(super) fn read_password_file(&mut self) -> Result<(), ConfigError> {
        const KEY: &str = "cluster.etcd.password_file";
        let Some(path) = &self.password_file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(KEY, format!("cannot read {}: {e}", path.display())))?;
        let password = text.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            return Err(invalid(KEY, format!("{} is empty", path.display())));
        }
        self.password_from_file = Some(password.to_owned());
        Ok(())
    }
}

impl ClusterConfig {
    /// Checks what serde's types cannot, naming the key. Does not read `password_file` (see
    /// `Config::load`), but checks that the TLS files can be read.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !valid_node_name(&self.node_name) {
            return Err(invalid(
                "cluster.node_name",
                format!(
                    "{:?} must be 1 to 63 characters of A-Z a-z 0-9 . _ -",
                    self.node_name
                ),
            ));
        }
        if !(2..=60).contains(&self.lease_ttl_s) {
            return Err(invalid("cluster.lease_ttl_s", "must be 2 to 60 seconds"));
        }
        if !(100..=60_000).contains(&self.max_lag_ms) {
            return Err(invalid(
                "cluster.max_lag_ms",
                "must be 100 to 60000 milliseconds",
            ));
        }
        if self
            .event_retention_days
            .is_some_and(|d| !(1..=3650).contains(&d))
        {
            return Err(invalid(
                "cluster.event_retention_days",
                "must be 1 to 3650 days",
            ));
        }
        self.etcd.validate(self.backend)
    }
}

impl EtcdConfig {
    fn validate(&self, backend: ClusterBackend) -> Result<(), ConfigError> {
        if backend == ClusterBackend::Etcd && self.endpoints.is_empty() {
            return Err(invalid(
                "cluster.etcd.endpoints",
                "cluster.backend is \"etcd\": list at least one endpoint, e.g. \
                 [\"http://127.0.0.1:2379\"]",
            ));
        }
        let mut first_http = None;
        for (i, e) in self.endpoints.iter().enumerate() {
            let key = format!("cluster.etcd.endpoints[{i}]");
            let tls = parse_endpoint(&key, e)?;
            if self.endpoints[..i]
                .iter()
                .any(|o| o.eq_ignore_ascii_case(e))
            {
                return Err(invalid(key, format!("{e:?} is listed twice")));
            }
            if i > 0 && tls != self.endpoints[0].starts_with("https://") {
                return Err(invalid(
                    key,
                    format!(
                        "{e:?} does not use the scheme of cluster.etcd.endpoints[0] {:?}: use \
                         http:// or https:// for every endpoint",
                        self.endpoints[0]
                    ),
                ));
            }
            if !tls && first_http.is_none() {
                first_http = Some(i);
            }
        }
        if !valid_prefix(&self.prefix) {
            return Err(invalid(
                "cluster.etcd.prefix",
                format!(
                    "{:?} must start with '/', not end with '/', and be printable ASCII \
                     without spaces (e.g. \"/imei-lockd\")",
                    self.prefix
                ),
            ));
        }
        for (key, v) in [
            ("cluster.etcd.connect_timeout_ms", self.connect_timeout_ms),
            ("cluster.etcd.request_timeout_ms", self.request_timeout_ms),
        ] {
            if !(100..=60_000).contains(&v) {
                return Err(invalid(key, "must be 100 to 60000 milliseconds"));
            }
        }
        if !(3..=1_000_000).contains(&self.max_txn_ops) {
            return Err(invalid(
                "cluster.etcd.max_txn_ops",
                "must be 3 to 1000000 (the etcd members' --max-txn-ops)",
            ));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                return Err(invalid(
                    "cluster.etcd.key_file",
                    "cluster.etcd.cert_file is set: set cluster.etcd.key_file too (both or \
                     neither)",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "cluster.etcd.cert_file",
                    "cluster.etcd.key_file is set: set cluster.etcd.cert_file too (both or \
                     neither)",
                ))
            }
            _ => {}
        }
        for (key, path) in [
            ("cluster.etcd.ca_file", &self.ca_file),
            ("cluster.etcd.cert_file", &self.cert_file),
            ("cluster.etcd.key_file", &self.key_file),
        ] {
            let Some(path) = path else { continue };
            if let Some(i) = first_http {
                return Err(invalid(
                    key,
                    format!(
                        "TLS needs https:// endpoints, and cluster.etcd.endpoints[{i}] is {:?}",
                        self.endpoints[i]
                    ),
                ));
            }
            check_readable(key, path)?;
        }
        if let Some(user) = &self.user {
            if user.is_empty() {
                return Err(invalid("cluster.etcd.user", "must not be empty"));
            }
            match (&self.password, &self.password_file) {
                (None, None) => {
                    return Err(invalid(
                        "cluster.etcd.password",
                        "cluster.etcd.user is set: set cluster.etcd.password or \
                         cluster.etcd.password_file",
                    ))
                }
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "cluster.etcd.password",
                        "set cluster.etcd.password or cluster.etcd.password_file, not both",
                    ))
                }
                _ => {}
            }
        } else {
            for (key, set) in [
                ("cluster.etcd.password", self.password.is_some()),
                ("cluster.etcd.password_file", self.password_file.is_some()),
            ] {
                if set {
                    return Err(invalid(key, "is set without cluster.etcd.user"));
                }
            }
        }
        if self.password.as_deref() == Some("") {
            return Err(invalid("cluster.etcd.password", "must not be empty"));
        }
        Ok(())
    }
}

/// Checks an etcd endpoint, `http://HOST:PORT` or `https://HOST:PORT` (HOST: a DNS name, an
/// IPv4 address or a bracketed IPv6 address; no path). Returns whether it is `https://`.
fn parse_endpoint(key: &str, value: &str) -> Result<bool, ConfigError> {
    let bad = |why: &str| {
        invalid(
            key,
            format!("{value:?} is not http://HOST:PORT or https://HOST:PORT: {why}"),
        )
    };
    let (tls, rest) = if let Some(r) = value.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = value.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad("the scheme must be http:// or https://"));
    };
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    if port.is_empty()
        || !port.bytes().all(|b| b.is_ascii_digit())
        || !port.parse::<u16>().is_ok_and(|p| p != 0)
    {
        return Err(bad("the port must be 1 to 65535, with nothing after it"));
    }
    let host_ok = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .is_some_and(|a| a.parse::<Ipv6Addr>().is_ok()),
        None => host.parse::<Ipv4Addr>().is_ok() || valid_dns_name(host),
    };
    if !host_ok {
        return Err(bad(
            "the host must be a DNS name, an IPv4 address or an [IPv6] address",
        ));
    }
    Ok(tls)
}

/// A DNS host name (RFC 1123): dot-separated labels of letters, digits and inner hyphens, the
/// last one not all digits (that would be a malformed IPv4 address).
fn valid_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && !host
            .rsplit('.')
            .next()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

fn valid_node_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_prefix(prefix: &str) -> bool {
    prefix.len() >= 2
        && prefix.starts_with('/')
        && !prefix.ends_with('/')
        && prefix.bytes().all(|b| b.is_ascii_graphic())
}

/// A regular file this process can open for reading.
fn check_readable(key: &str, path: &Path) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    let cannot =
        |e: &dyn fmt::Display| invalid(key, format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    let meta = file.metadata().map_err(|e| cannot(&e))?;
    if !meta.is_file() {
        return Err(cannot(&"not a regular file"));
    }
    Ok(())
}

/// The default `cluster.node_name`: the host name (gethostname(2), else `/etc/hostname`) if it
/// is a valid node name, else `"imei-lockd"`.
pub fn default_node_name() -> String {
    first_valid_node_name([gethostname(), etc_hostname()])
}

fn first_valid_node_name(candidates: impl IntoIterator<Item = Option<String>>) -> String {
    candidates
        .into_iter()
        .flatten()
        .find(|n| valid_node_name(n))
        .unwrap_or_else(|| "imei-lockd".into())
}

#[allow(unsafe_code)]
fn gethostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len() - 1` bytes for the duration of the call;
    // its last byte stays 0, so the name is NUL-terminated even if the kernel truncated it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0)?;
    String::from_utf8(buf[..end].to_vec()).ok()
}

fn etc_hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
