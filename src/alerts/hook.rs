//! One configured webhook at run time: its settings, its HTTP client (plain HTTP or HTTPS with
//! rustls: the system's roots plus an optional private CA from `ca_file`, and a whole-request
//! timeout) and the POST of one alert with its optional signature.
//!
//! This module checks the webhook's configuration for `check-config` and sends one request; it
//! does not retry, schedule or keep state (see [`super::AlertDelivery`] and [`super::circuit`]).

use std::path::Path;
use std::time::Duration;

use crate::config::WebhookConfig;
use crate::store::EventKind;

use super::payload::{signature, ID_HEADER, SIGNATURE_HEADER};

/// `outcome` of `imei_lockd_alert_deliveries_total`.
pub const OUTCOMES: [&str; 5] = [
    "delivered",
    "http_error",
    "timeout",
    "connect_error",
    "transport_error",
];

/// Why a webhook could not be set up (read at start; `check-config` reports the same).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("alerts.webhooks[{index}].ca_file {path}: {message}")]
    CaFile {
        index: usize,
        path: String,
        message: String,
    },
    #[error("alerts.webhooks[{index}]: HTTP client: {message}")]
    Client { index: usize, message: String },
}

/// One configured webhook.
#[derive(Clone, Debug)]
pub struct Webhook {
    /// Metric label and log field (see [`webhook_name`]).
    pub name: String,
    pub url: String,
    pub events: Vec<EventKind>,
    pub min_interval_ms: i64,
    pub secret: Option<Vec<u8>>,
    pub max_in_flight: usize,
    pub circuit_failures: u32,
    pub circuit_cooldown_ms: i64,
    pub(super) client: reqwest::Client,
}

/// The name of a webhook: `name` if set, else its URL without user info, query and fragment
/// (which may hold credentials and must not reach metrics).
pub fn webhook_name(c: &WebhookConfig) -> String {
    if let Some(n) = &c.name {
        return n.clone();
    }
    match reqwest::Url::parse(&c.url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => c.url.clone(),
    }
}

fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// Checks what `Config::validate` cannot see from the types: returns the sub-key at fault and
/// why (the caller prefixes `alerts.webhooks[i].`).
///
/// # Errors
/// The key (`url`, `name`, `secret`, `ca_file`, `timeout_ms`, `max_in_flight`,
/// `circuit_failures`, `circuit_cooldown_s`) and a message.
pub fn validate_webhook(c: &WebhookConfig) -> Result<(), (&'static str, String)> {
    let url = reqwest::Url::parse(&c.url).map_err(|e| ("url", format!("{:?}: {e}", c.url)))?;
    if url.host_str().is_none() {
        return Err(("url", format!("{:?} has no host", c.url)));
    }
    if c.name.as_deref().is_some_and(str::is_empty) {
        return Err(("name", "must not be empty".into()));
    }
    if c.secret.as_deref().is_some_and(str::is_empty) {
        return Err((
            "secret",
            "must not be empty (leave it out for unsigned alerts)".into(),
        ));
    }
    if let Some(p) = &c.ca_file {
        if url.scheme() != "https" {
            return Err(("ca_file", "only an https:// webhook uses a CA file".into()));
        }
        read_ca(p).map_err(|m| ("ca_file", format!("{}: {m}", p.display())))?;
    }
    if !(100..=60_000).contains(&c.timeout_ms) {
        return Err(("timeout_ms", format!("{}: use 100 to 60000", c.timeout_ms)));
    }
    if !(1..=64).contains(&c.max_in_flight) {
        return Err(("max_in_flight", format!("{}: use 1 to 64", c.max_in_flight)));
    }
    if !(1..=1_000).contains(&c.circuit_failures) {
        return Err((
            "circuit_failures",
            format!("{}: use 1 to 1000", c.circuit_failures),
        ));
    }
    if !(1..=86_400).contains(&c.circuit_cooldown_s) {
        return Err((
            "circuit_cooldown_s",
            format!("{}: use 1 to 86400", c.circuit_cooldown_s),
        ));
    }
    Ok(())
}

impl Webhook {
    /// Builds the webhook and its client (reads `ca_file`).
    ///
    /// # Errors
    /// An unreadable CA file, or a client the TLS stack refuses to build.
    pub fn new(index: usize, c: &WebhookConfig) -> Result<Self, WebhookError> {
        let timeout = Duration::from_millis(c.timeout_ms.max(1));
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(p) = &c.ca_file {
            let certs = read_ca(p).map_err(|message| WebhookError::CaFile {
                index,
                path: p.display().to_string(),
                message,
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| WebhookError::Client {
            index,
            message: e.to_string(),
        })?;
        Ok(Self {
            name: webhook_name(c),
            url: c.url.clone(),
            events: c.events.iter().filter_map(|e| e.parse().ok()).collect(),
            min_interval_ms: (c.min_interval_s as i64).saturating_mul(1000),
            secret: c.secret.as_ref().map(|s| s.as_bytes().to_vec()),
            max_in_flight: c.max_in_flight.max(1),
            circuit_failures: c.circuit_failures,
            circuit_cooldown_ms: (c.circuit_cooldown_s as i64).saturating_mul(1000),
            client,
        })
    }

    /// POSTs `body` (signed when the webhook has a secret); `Ok` on a 2xx answer, else the
    /// outcome label (one of [`OUTCOMES`] but `delivered`) and a message.
    pub async fn post(&self, id: &str, body: Vec<u8>) -> Result<(), (&'static str, String)> {
        let mut req = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(ID_HEADER, id);
        if let Some(secret) = &self.secret {
            req = req.header(SIGNATURE_HEADER, signature(secret, &body));
        }
        match req.body(body).send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(("http_error", format!("HTTP {}", resp.status()))),
            Err(e) if e.is_timeout() => Err(("timeout", e.to_string())),
            Err(e) if e.is_connect() => Err(("connect_error", error_chain(&e))),
            Err(e) => Err(("transport_error", error_chain(&e))),
        }
    }
}

/// The error with its sources (reqwest's own message hides the TLS or socket cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(body: &str) -> Result<Config, String> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, body).unwrap();
        Config::load(&p).map_err(|e| e.to_string())
    }

    #[test]
    fn webhook_keys_are_checked_and_the_error_names_the_key() {
        let ok = load(
            "[[alerts.webhooks]]\nurl = \"https://user:pw@alerts.example.net:8443/imei?token=x\"\n\
             secret = \"s\"\ntimeout_ms = 2000\nmax_in_flight = 8\ncircuit_failures = 3\n\
             circuit_cooldown_s = 10\n",
        )
        .unwrap();
        let w = &ok.alerts.webhooks[0];
        assert_eq!(
            super::webhook_name(w),
            "https://alerts.example.net:8443/imei",
            "no credentials in the metric label"
        );
        let d = tempfile::tempdir().unwrap();
        let not_pem = d.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate\n").unwrap();
        for (hook, key) in [
            ("url = \"ftp://x/\"", "alerts.webhooks[0].url"),
            ("url = \"https://\"", "alerts.webhooks[0].url"),
            (
                "url = \"http://x/\"\nca_file = \"/etc/hosts\"",
                "alerts.webhooks[0].ca_file",
            ),
            (
                "url = \"https://x/\"\nca_file = \"/nonexistent/ca.pem\"",
                "alerts.webhooks[0].ca_file",
            ),
            (
                "url = \"https://x/\"\nsecret = \"\"",
                "alerts.webhooks[0].secret",
            ),
            (
                "url = \"https://x/\"\ntimeout_ms = 0",
                "alerts.webhooks[0].timeout_ms",
            ),
            (
                "url = \"https://x/\"\nmax_in_flight = 0",
                "alerts.webhooks[0].max_in_flight",
            ),
            (
                "url = \"https://x/\"\ncircuit_failures = 0",
                "alerts.webhooks[0].circuit_failures",
            ),
            (
                "url = \"https://x/\"\ncircuit_cooldown_s = 0",
                "alerts.webhooks[0].circuit_cooldown_s",
            ),
            (
                "url = \"https://x/\"\nname = \"\"",
                "alerts.webhooks[0].name",
            ),
        ] {
            let e = load(&format!("[[alerts.webhooks]]\n{hook}\n")).unwrap_err();
            assert!(e.contains(key), "{hook}: {e}");
        }
        let e = load(&format!(
            "[[alerts.webhooks]]\nurl = \"https://x/\"\nca_file = \"{}\"\n",
            not_pem.display()
        ))
        .unwrap_err();
        assert!(e.contains("alerts.webhooks[0].ca_file"), "{e}");
        let e = load(
            "[[alerts.webhooks]]\nurl = \"http://a/\"\nname = \"noc\"\n\
             [[alerts.webhooks]]\nurl = \"http://b/\"\nname = \"noc\"\n",
        )
        .unwrap_err();
        assert!(e.contains("alerts.webhooks[1].name"), "{e}");
    }
}
