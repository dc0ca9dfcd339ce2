//! The daemon's secrets at run time: the API token and the TLS configurations of the API and
//! metrics listeners, as loaded at start and replaced on SIGHUP.
//!
//! The files themselves are read and checked by `Config::load` (`imei_lockd::config::secrets`);
//! this module only logs what is wrong with the token (WARN, `imei_lockd_api_token_weak`),
//! builds the TLS listeners and hands a reloaded configuration to them. It does not bind.

use std::sync::Arc;
use std::time::Duration;

use imei_lockd::api::ApiToken;
use imei_lockd::config::secrets::{tls_files, token_warnings};
use imei_lockd::config::{parse_addr, Config};
use imei_lockd::tls::{ReloadableTls, TlsFiles, TlsListener};

/// How long a metrics client may take to complete its TLS handshake.
const METRICS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The token and TLS configurations the listeners use.
pub struct Secrets {
    pub token: ApiToken,
    /// `[api] tls_cert`/`tls_key` were set at start: the API serves HTTPS only.
    pub api_tls: Option<Arc<ReloadableTls>>,
    /// `[metrics] tls_cert`/`tls_key` were set at start.
    pub metrics_tls: Option<Arc<ReloadableTls>>,
}

impl Secrets {
    /// The token and the TLS configurations of `cfg`; logs the token's warnings.
    ///
    /// # Errors
    /// A message naming the file when the token or a TLS file does not load.
    pub fn start(cfg: &Config) -> Result<Self, String> {
        let token = cfg.api_token().map_err(|e| e.to_string())?;
        warn_token(cfg, token.as_deref());
        let tls = |listener: &'static str, files: Option<TlsFiles>| -> Result<_, String> {
            match files {
                Some(f) => ReloadableTls::new(listener, f)
                    .map(|t| Some(Arc::new(t)))
                    .map_err(|e| format!("{listener} TLS: {e}")),
                None => Ok(None),
            }
        };
        Ok(Self {
            token: ApiToken::new(token),
            api_tls: tls("api", tls_files(&cfg.api.tls_cert, &cfg.api.tls_key))?,
            metrics_tls: tls(
                "metrics",
                tls_files(&cfg.metrics.tls_cert, &cfg.metrics.tls_key),
            )?,
        })
    }

    /// Applies `new`'s token and certificates (a certificate that does not load keeps the
    /// running one; [`ReloadableTls::reload`] logs it). Returns the keys that need a restart:
    /// TLS turned on or off on a listener.
    pub fn reload(&self, new: &Config) -> Vec<&'static str> {
        match new.api_token() {
            Ok(token) => {
                warn_token(new, token.as_deref());
                self.token.set(token);
            }
            // Config::load has read the file already: not reached in practice.
            Err(e) => tracing::error!(error = %e, "API token not reloaded"),
        }
        let mut restart = Vec::new();
        for (key, running, files) in [
            (
                "api.tls_cert",
                &self.api_tls,
                tls_files(&new.api.tls_cert, &new.api.tls_key),
            ),
            (
                "metrics.tls_cert",
                &self.metrics_tls,
                tls_files(&new.metrics.tls_cert, &new.metrics.tls_key),
            ),
        ] {
            match (running, files) {
                (Some(tls), Some(files)) => {
                    let _ = tls.reload(files);
                }
                (None, None) => {}
                _ => restart.push(key),
            }
        }
        restart
    }

    /// The metrics listener wrapped in TLS when `[metrics]` has TLS files, else (`Err`) as it
    /// was.
    pub fn metrics_listener(
        &self,
        tcp: tokio::net::TcpListener,
    ) -> Result<TlsListener, tokio::net::TcpListener> {
        match &self.metrics_tls {
            Some(t) => Ok(TlsListener::new(tcp, t.clone(), METRICS_HANDSHAKE_TIMEOUT)),
            None => Err(tcp),
        }
    }
}

/// Logs a WARN per [`token_warnings`] and sets `imei_lockd_api_token_weak`.
fn warn_token(cfg: &Config, token: Option<&str>) {
    let Ok(listen) = parse_addr("api.listen", &cfg.api.listen) else {
        return;
    };
    let warnings = token_warnings(token, listen);
    for w in &warnings {
        tracing::warn!(api = %listen, "{}", w.message());
    }
    let weak = if warnings.is_empty() { 0.0 } else { 1.0 };
    metrics::gauge!("imei_lockd_api_token_weak").set(weak);
}
