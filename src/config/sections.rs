//! The per-section structs of the configuration (`[node]`, `[log]`, `[policy]`, `[radius]`,
//! `[diameter]`, `[api]`, `[metrics]`, `[billing]`, `[alerts]`) with their serde defaults: the
//! key names and default values operators see (SPEC §3).
//!
//! Types and defaults only: the checks that types cannot express are in
//! [`super::Config::validate`], loading is in [`super::load`]; `[cluster]` is in [`super::cluster`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::{MissingImeiPolicy, UnknownSimPolicy};

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
