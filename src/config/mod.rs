//! Configuration: TOML read with the `config` crate, every key overridable from the environment
//! as `IMEI_LOCKD__SECTION__KEY` (SPEC §3). The key names are a contract with operators' scripts:
//! keys may be added, never renamed.
//!
//! Loading is two steps: the `config` crate merges file and environment and deserializes into
//! [`Config`] (type errors name the key), then [`Config::validate`] checks values the types cannot
//! (addresses, CIDRs, URLs, amounts) and names the key too. Unknown keys are errors, so a typo is
//! never silently ignored.
//!
//! `[cluster]` lives in [`cluster`]: the embedded single node (the default) or etcd.
//! [`secrets`] reads the secret files (`api.token_file`, `radius.clients[].secret_file`) and
//! checks the TLS files (`tls_cert`, `tls_key` of `[api]` and `[metrics]`), as the third step
//! of [`Config::load`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::engine::{MissingImeiPolicy, UnknownSimPolicy};
use crate::store::EventKind;

pub mod cluster;
pub mod eir;
pub mod secrets;

pub use cluster::{default_node_name, ClusterBackend, ClusterConfig, EtcdConfig};
pub use eir::EirConfig;

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0}: not found")]
    NotFound(PathBuf),
    /// The file (or a directory above it) exists but this process may not read it.
    #[error(
        "configuration file {path}: cannot read it: {source} (the daemon's user needs read \
         access; the package installs it root:imei-lockd 0640 for the unit's User=imei-lockd)"
    )]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Load(String),
    #[error("invalid value for key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeConfig,
    pub log: LogConfig,
    pub policy: PolicyConfig,
    pub radius: RadiusConfig,
    pub diameter: DiameterConfig,
    pub api: ApiConfig,
    pub metrics: MetricsConfig,
    pub billing: BillingConfig,
    pub alerts: AlertsConfig,
    pub cluster: ClusterConfig,
    pub eir: EirConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// RocksDB data directory.
    pub data_dir: PathBuf,
    /// RocksDB block cache, MiB.
    pub block_cache_mb: usize,
    /// Decoded SIM records kept in memory for the decision path (0 disables the cache).
    pub sim_cache_entries: usize,
    /// Where `POST /v1/backups` writes backups; absent: [`NodeConfig::backup_dir`]'s default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_dir: Option<PathBuf>,
}

impl NodeConfig {
    /// `backup_dir`, or by default the directory `backups` beside the data directory
    /// (`<data_dir>/../backups`: `./data` → `./backups`).
    pub fn backup_dir(&self) -> PathBuf {
        if let Some(dir) = &self.backup_dir {
            return dir.clone();
        }
        let data: PathBuf = self.data_dir.components().collect();
        match data.parent() {
            Some(parent) => parent.join("backups"),
            None => data.join("..").join("backups"),
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            block_cache_mb: 256,
            sim_cache_entries: 2_000_000,
            backup_dir: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `imei_lockd=debug,info`, ...
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub unknown_sim: UnknownSimPolicy,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            unknown_sim: UnknownSimPolicy::Reject,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RadiusConfig {
    pub auth_listen: String,
    pub acct_listen: String,
    pub missing_imei: MissingImeiPolicy,
    /// Duplicate-detection window (RFC 5080), seconds.
    pub dedup_window_s: u64,
    /// Socket receive buffer, bytes.
    pub recv_buffer_bytes: usize,
    /// Receive tasks per port.
    pub workers: usize,
    pub clients: Vec<RadiusClientConfig>,
}

impl Default for RadiusConfig {
    fn default() -> Self {
        Self {
            auth_listen: "0.0.0.0:1812".into(),
            acct_listen: "0.0.0.0:1813".into(),
            missing_imei: MissingImeiPolicy::Reject,
            dedup_window_s: 5,
            recv_buffer_bytes: 8 * 1024 * 1024,
            workers: 2,
            clients: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusClientConfig {
    pub name: String,
    /// CIDR (a bare address means /32 or /128).
    pub address: String,
    /// The shared secret; or `secret_file` (exactly one of the two).
    #[serde(default)]
    pub secret: Option<String>,
    /// A file holding the shared secret (see [`secrets`] for relative paths), read by
    /// [`Config::load`].
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default = "yes")]
    pub require_message_authenticator: bool,
    /// The secret read from `secret_file`.
    #[serde(skip)]
    pub secret_from_file: Option<String>,
}

impl RadiusClientConfig {
    /// The shared secret: `secret`, or what [`Config::load`] read from `secret_file`.
    pub fn shared_secret(&self) -> Option<&str> {
        self.secret.as_deref().or(self.secret_from_file.as_deref())
    }
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiameterConfig {
    /// `tcp://ADDR:PORT` and/or `sctp://ADDR:PORT`.
    pub listen: Vec<String>,
    pub origin_host: String,
    pub origin_realm: String,
    /// Tw, the watchdog interval (RFC 3539), seconds.
    pub watchdog_s: u64,
    /// How long a new connection may stay without sending its CER, seconds.
    pub cer_timeout_s: u64,
    /// How long a message may take to arrive once its first byte has, seconds.
    pub message_timeout_s: u64,
    pub gx: DiameterAppConfig,
    pub s6b: DiameterAppConfig,
    pub peers: Vec<DiameterPeerConfig>,
}

impl Default for DiameterConfig {
    fn default() -> Self {
        Self {
            listen: vec!["tcp://0.0.0.0:3868".into()],
            origin_host: "aaa.localdomain".into(),
            origin_realm: "localdomain".into(),
            watchdog_s: 30,
            cer_timeout_s: 10,
            message_timeout_s: 10,
            gx: DiameterAppConfig {
                missing_imei: MissingImeiPolicy::Reject,
            },
            s6b: DiameterAppConfig {
                missing_imei: MissingImeiPolicy::Accept,
            },
            peers: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiameterAppConfig {
    pub missing_imei: MissingImeiPolicy,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiameterPeerConfig {
    pub origin_host: String,
    /// Optional: only accept this peer from this address (CIDR or address).
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub listen: String,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// How long a client may take to send a request's headers, seconds.
    pub header_timeout_s: u64,
    /// How long a request body may stay without sending data, seconds.
    pub body_timeout_s: u64,
    /// PEM certificate chain: with `tls_key`, the API serves HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The token read from `token_file` by [`Config::load`].
    #[serde(skip)]
    pub token_from_file: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            token: None,
            token_file: None,
            header_timeout_s: 10,
            body_timeout_s: 30,
            tls_cert: None,
            tls_key: None,
            token_from_file: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub listen: String,
    /// PEM certificate chain: with `tls_key`, `/metrics` is served over HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

/// `[metrics] listen` by default. 9100 is node_exporter's; the Prometheus exporter range
/// 9100–9999 ("Default port allocations") is fully allocated, so this is outside it, below
/// Linux's ephemeral ports (32768–60999) and used by no common exporter: Diameter's 3868 with a
/// leading 1.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:13868";

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_METRICS_LISTEN.into(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    pub lock_fee: String,
    pub currency: String,
}

impl Default for BillingConfig {
    fn default() -> Self {
        Self {
            lock_fee: "1.00".into(),
            currency: "EUR".into(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub webhooks: Vec<WebhookConfig>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default = "default_alert_events")]
    pub events: Vec<String>,
    #[serde(default = "default_min_interval")]
    pub min_interval_s: u64,
    /// Name in metrics and logs (`webhook` label); default: the URL without user info and query.
    #[serde(default)]
    pub name: Option<String>,
    /// HMAC-SHA256 key: when set, every POST carries `X-Signature-256: sha256=<hex>`.
    #[serde(default)]
    pub secret: Option<String>,
    /// PEM file of CA certificates trusted for this `https://` webhook, besides the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Whole-request timeout (connect, TLS, send, answer), milliseconds.
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
    /// Deliveries to this webhook in flight at once.
    #[serde(default = "default_webhook_max_in_flight")]
    pub max_in_flight: usize,
    /// Consecutive failed deliveries that open the webhook's circuit.
    #[serde(default = "default_circuit_failures")]
    pub circuit_failures: u32,
    /// How long an open circuit sends nothing before one probe, seconds.
    #[serde(default = "default_circuit_cooldown_s")]
    pub circuit_cooldown_s: u64,
}

fn default_webhook_timeout_ms() -> u64 {
    5_000
}

fn default_webhook_max_in_flight() -> usize {
    4
}

fn default_circuit_failures() -> u32 {
    5
}

fn default_circuit_cooldown_s() -> u64 {
    30
}

fn default_alert_events() -> Vec<String> {
    vec!["imei_mismatch".into()]
}

fn default_min_interval() -> u64 {
    300
}

/// A Diameter listener made of `[diameter] listen` entries.
///
/// Every `tcp://` entry is a listener of its own. `sctp://` entries of one port and one address
/// family are one multi-homed SCTP endpoint bound to all their addresses (`sctp_bindx`), in the
/// order listed (the first is the one `bind` takes); a wildcard address (`0.0.0.0`, `[::]`)
/// already covers every address and stands alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiameterListen {
    Tcp(SocketAddr),
    /// One SCTP endpoint: at least one address, all with the same port and family.
    Sctp(Vec<SocketAddr>),
}

/// Parses a socket address, naming the key on error.
pub fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            format!("{value:?} is not an ADDRESS:PORT socket address"),
        )
    })
}

/// Parses a CIDR or a bare address.
pub fn parse_cidr(key: &str, value: &str) -> Result<IpNet, ConfigError> {
    if let Ok(net) = value.parse::<IpNet>() {
        return Ok(net);
    }
    value
        .parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| {
            invalid(
                key,
                format!("{value:?} is not an address or CIDR (e.g. 10.0.0.0/8)"),
            )
        })
}

/// Checks a decimal amount such as `1.00` (up to 4 decimals, not negative).
pub fn parse_amount(key: &str, value: &str) -> Result<(), ConfigError> {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    let ok = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 4
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(value.contains('.') && frac.is_empty());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{value:?} is not a decimal amount such as \"1.00\""),
        ))
    }
}

impl Config {
    /// Reads `path`, applies `IMEI_LOCKD__*` environment overrides, validates, reads
    /// `cluster.etcd.password_file`, the secret files and checks the TLS files
    /// ([`secrets`]).
    ///
    /// # Errors
    /// [`ConfigError`] naming the key (or the file) at fault.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(ConfigError::NotFound(path.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NotFound(path.to_path_buf()))
            }
            Err(source) => {
                return Err(ConfigError::Unreadable {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        // Opened once here so that a permission problem names the file (the config crate's
        // error would not).
        if let Err(source) = std::fs::File::open(path) {
            return Err(ConfigError::Unreadable {
                path: path.to_path_buf(),
                source,
            });
        }
        let built = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("IMEI_LOCKD")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("diameter.listen")
                    .with_list_parse_key("cluster.etcd.endpoints"),
            )
            .build()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        let mut cfg: Self = built
            .try_deserialize()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        cfg.validate()?;
        cfg.cluster.etcd.read_password_file()?;
        cfg.read_files(path)?;
        Ok(cfg)
    }

    /// Checks what serde's types cannot, naming the key.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node.data_dir.as_os_str().is_empty() {
            return Err(invalid("node.data_dir", "must not be empty"));
        }
        if let Some(b) = &self.node.backup_dir {
            let data: PathBuf = self.node.data_dir.components().collect();
            if b.as_os_str().is_empty() {
                return Err(invalid("node.backup_dir", "must not be empty"));
            }
            if b.components().collect::<PathBuf>().starts_with(&data) {
                return Err(invalid(
                    "node.backup_dir",
                    "must not be node.data_dir nor inside it (a restore moves the data directory aside)",
                ));
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", e.to_string()))?;
        parse_addr("radius.auth_listen", &self.radius.auth_listen)?;
        parse_addr("radius.acct_listen", &self.radius.acct_listen)?;
        if self.radius.workers == 0 || self.radius.workers > 64 {
            return Err(invalid("radius.workers", "must be 1 to 64"));
        }
        for (i, c) in self.radius.clients.iter().enumerate() {
            let key = |k: &str| format!("radius.clients[{i}].{k}");
            if c.name.is_empty() {
                return Err(invalid(key("name"), "must not be empty"));
            }
            parse_cidr(&key("address"), &c.address)?;
            match (&c.secret, &c.secret_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        key("secret_file"),
                        format!("set {} or {}, not both", key("secret"), key("secret_file")),
                    ))
                }
                (None, None) => {
                    return Err(invalid(
                        key("secret"),
                        format!("set {} or {}", key("secret"), key("secret_file")),
                    ))
                }
                (Some(s), None) if s.is_empty() => {
                    return Err(invalid(key("secret"), "must not be empty"));
                }
                _ => {}
            }
        }
        self.diameter_listeners()?;
        if self.diameter.origin_host.is_empty() {
            return Err(invalid("diameter.origin_host", "must not be empty"));
        }
        if self.diameter.origin_realm.is_empty() {
            return Err(invalid("diameter.origin_realm", "must not be empty"));
        }
        if self.diameter.watchdog_s < 6 {
            return Err(invalid(
                "diameter.watchdog_s",
                "must be at least 6 seconds (RFC 3539 §3.4.1)",
            ));
        }
        for (key, v) in [
            ("diameter.cer_timeout_s", self.diameter.cer_timeout_s),
            (
                "diameter.message_timeout_s",
                self.diameter.message_timeout_s,
            ),
            ("api.header_timeout_s", self.api.header_timeout_s),
            ("api.body_timeout_s", self.api.body_timeout_s),
        ] {
            if !(1..=300).contains(&v) {
                return Err(invalid(key, "must be 1 to 300 seconds"));
            }
        }
        for (i, p) in self.diameter.peers.iter().enumerate() {
            if p.origin_host.is_empty() {
                return Err(invalid(
                    format!("diameter.peers[{i}].origin_host"),
                    "must not be empty",
                ));
            }
            if let Some(a) = &p.address {
                parse_cidr(&format!("diameter.peers[{i}].address"), a)?;
            }
        }
        let api = parse_addr("api.listen", &self.api.listen)?;
        if self.api.token.is_some() && self.api.token_file.is_some() {
            return Err(invalid(
                "api.token",
                "set api.token or api.token_file, not both",
            ));
        }
        if let Some(t) = &self.api.token {
            if t.is_empty() {
                return Err(invalid("api.token", "must not be empty"));
            }
        }
        if self.api.token.is_none() && self.api.token_file.is_none() && !api.ip().is_loopback() {
            return Err(invalid(
                "api.token",
                "the API listens on a non-loopback address and has no token: set api.token or api.token_file",
            ));
        }
        secrets::check_tls_pair("api", &self.api.tls_cert, &self.api.tls_key)?;
        parse_addr("metrics.listen", &self.metrics.listen)?;
        secrets::check_tls_pair("metrics", &self.metrics.tls_cert, &self.metrics.tls_key)?;
        self.eir.validate()?;
        parse_amount("billing.lock_fee", &self.billing.lock_fee)?;
        if self.billing.currency.len() != 3
            || !self
                .billing
                .currency
                .bytes()
                .all(|b| b.is_ascii_uppercase())
        {
            return Err(invalid(
                "billing.currency",
                format!(
                    "{:?} is not an ISO 4217 code such as EUR",
                    self.billing.currency
                ),
            ));
        }
        for (i, w) in self.alerts.webhooks.iter().enumerate() {
            if !w.url.starts_with("http://") && !w.url.starts_with("https://") {
                return Err(invalid(
                    format!("alerts.webhooks[{i}].url"),
                    format!("{:?} must be an http:// or https:// URL", w.url),
                ));
            }
            for e in &w.events {
                e.parse::<EventKind>()
                    .map_err(|m| invalid(format!("alerts.webhooks[{i}].events"), m))?;
            }
            crate::alerts::validate_webhook(w)
                .map_err(|(key, m)| invalid(format!("alerts.webhooks[{i}].{key}"), m))?;
        }
        let names: Vec<String> = self
            .alerts
            .webhooks
            .iter()
            .map(crate::alerts::webhook_name)
            .collect();
        for (i, n) in names.iter().enumerate() {
            if names.iter().take(i).any(|m| m == n) {
                return Err(invalid(
                    format!("alerts.webhooks[{i}].name"),
                    format!("{n:?} is already the name of another webhook: set a distinct name"),
                ));
            }
        }
        self.cluster.validate()?;
        Ok(())
    }

    /// The Diameter listeners.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `diameter.listen`.
    pub fn diameter_listeners(&self) -> Result<Vec<DiameterListen>, ConfigError> {
        const KEY: &str = "diameter.listen";
        let mut out: Vec<DiameterListen> = Vec::new();
        for l in &self.diameter.listen {
            if let Some(a) = l.strip_prefix("tcp://") {
                out.push(DiameterListen::Tcp(parse_addr(KEY, a)?));
                continue;
            }
            let Some(a) = l.strip_prefix("sctp://") else {
                return Err(invalid(
                    KEY,
                    format!("{l:?} must start with tcp:// or sctp://"),
                ));
            };
            let addr = parse_addr(KEY, a)?;
            // The endpoint of this port and family, if an earlier entry opened it.
            let endpoint = out.iter_mut().find_map(|e| match e {
                DiameterListen::Sctp(v)
                    if v.first().is_some_and(|f| {
                        f.port() == addr.port() && f.is_ipv4() == addr.is_ipv4()
                    }) =>
                {
                    Some(v)
                }
                _ => None,
            });
            let Some(addrs) = endpoint else {
                out.push(DiameterListen::Sctp(vec![addr]));
                continue;
            };
            if addrs.contains(&addr) {
                return Err(invalid(KEY, format!("{l:?} is listed twice")));
            }
            if let Some(w) = addrs
                .iter()
                .chain(std::iter::once(&addr))
                .find(|a| a.ip().is_unspecified())
            {
                return Err(invalid(
                    KEY,
                    format!(
                        "sctp://{w} already binds every address of port {}; list either it or \
                         the addresses of a multi-homed endpoint",
                        addr.port()
                    ),
                ));
            }
            addrs.push(addr);
        }
        Ok(out)
    }

    /// The API token, from `api.token` or `api.token_file` (read by [`Config::load`]; read
    /// here if it was not).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `api.token_file` when the file cannot be read.
    pub fn api_token(&self) -> Result<Option<String>, ConfigError> {
        if let Some(t) = &self.api.token {
            return Ok(Some(t.clone()));
        }
        if let Some(t) = &self.api.token_from_file {
            return Ok(Some(t.clone()));
        }
        match &self.api.token_file {
            Some(path) => secrets::read_secret("api.token_file", path).map(Some),
            None => Ok(None),
        }
    }

    /// The engine policies this configuration asks for.
    pub fn engine_policy(&self) -> crate::engine::EnginePolicy {
        crate::engine::EnginePolicy {
            unknown_sim: self.policy.unknown_sim,
            missing_imei_radius: self.radius.missing_imei,
            missing_imei_gx: self.diameter.gx.missing_imei,
            missing_imei_s6b: self.diameter.s6b.missing_imei,
            unknown_sim_eir: self.eir.unknown_sim.as_unknown_sim_policy(),
            alert_events: self
                .alerts
                .webhooks
                .iter()
                .flat_map(|w| w.events.iter().filter_map(|e| e.parse().ok()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let is_key =
                key.is_some_and(|k| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
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
}
