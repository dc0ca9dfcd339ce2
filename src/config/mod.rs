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
//!
//! # Layout
//! This file holds [`Config`] (the list of sections), [`Config::validate`] and what is derived
//! from a configuration (the API token, the engine policy); the sections' structs and defaults
//! are in [`sections`], value parsers in [`values`], loading in [`load`]. This module does not
//! start anything: the binaries read a [`Config`] and build the daemon from it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::store::EventKind;

pub mod cluster;
pub mod eir;
mod load;
pub mod retention;
pub mod secrets;
mod sections;
mod values;

pub use cluster::{default_node_name, ClusterBackend, ClusterConfig, EtcdConfig};
pub use eir::EirConfig;

pub use sections::{
    AlertsConfig, ApiConfig, BillingConfig, DiameterAppConfig, DiameterConfig, DiameterPeerConfig,
    LogConfig, LogFormat, MetricsConfig, NodeConfig, PolicyConfig, RadiusClientConfig,
    RadiusConfig, WebhookConfig, DEFAULT_METRICS_LISTEN,
};
pub use values::{parse_addr, parse_amount, parse_cidr, DiameterListen};

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
    pub retention: retention::RetentionConfig,
}

impl Config {
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
        self.retention.validate()?;
        Ok(())
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
mod tests;
