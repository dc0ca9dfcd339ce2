//! Reaching etcd: the settings from `[cluster]`, and a client with the configured endpoints,
//! timeouts, credentials and TLS files.
//!
//! This module only connects; it reads and writes nothing under the prefix.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use super::{etcd_err, EtcdSettings};
use crate::store::StoreError;

impl EtcdSettings {
    /// The settings of `[cluster]` and `[cluster.etcd]`.
    pub fn from_config(cluster: &crate::config::ClusterConfig) -> Self {
        let e = &cluster.etcd;
        Self {
            endpoints: e.endpoints.clone(),
            prefix: e.prefix.clone(),
            node_name: cluster.node_name.clone(),
            lease_ttl: Duration::from_secs(cluster.lease_ttl_s),
            connect_timeout: Duration::from_millis(e.connect_timeout_ms),
            request_timeout: Duration::from_millis(e.request_timeout_ms),
            credentials: e.credentials().map(|(u, p)| (u.to_owned(), p.to_owned())),
            ca_file: e.ca_file.clone(),
            cert_file: e.cert_file.clone(),
            key_file: e.key_file.clone(),
            max_txn_ops: e.max_txn_ops,
            max_lag: Duration::from_millis(cluster.max_lag_ms),
            event_retention: Duration::from_secs(
                cluster
                    .event_retention_days
                    .unwrap_or(90)
                    .saturating_mul(86_400),
            ),
        }
    }
}

/// A client of the etcd cluster `settings` name: endpoints, timeouts, credentials, TLS.
///
/// # Errors
/// [`StoreError::Backend`] when a TLS file cannot be read or no endpoint answers within the
/// connect timeout.
pub(crate) async fn connect(settings: &EtcdSettings) -> Result<Client, StoreError> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(settings.connect_timeout)
        .with_timeout(settings.request_timeout)
        .with_keep_alive(Duration::from_secs(2), settings.request_timeout);
    if let Some((user, password)) = &settings.credentials {
        opts = opts.with_user(user.clone(), password.clone());
    }
    if let Some(tls) = tls_options(settings)? {
        opts = opts.with_tls(tls);
    }
    tokio::time::timeout(
        settings.connect_timeout,
        Client::connect(settings.endpoints.clone(), Some(opts)),
    )
    .await
    .map_err(|_| StoreError::Backend("etcd: connect timed out".into()))?
    .map_err(etcd_err)
}

fn tls_options(s: &EtcdSettings) -> Result<Option<etcd_client::TlsOptions>, StoreError> {
    let https = s.endpoints.iter().any(|e| e.starts_with("https://"));
    if !https {
        return Ok(None);
    }
    let read = |p: &std::path::PathBuf| {
        std::fs::read(p).map_err(|e| StoreError::Backend(format!("{}: {e}", p.display())))
    };
    let mut tls = etcd_client::TlsOptions::new();
    if let Some(ca) = &s.ca_file {
        tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&s.cert_file, &s.key_file) {
        tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(tls))
}
