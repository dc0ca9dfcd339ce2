//! Alert delivery (SPEC §1.6): events that webhooks want are written by the engine into a durable
//! outbox in the same batch as the event itself; this task POSTs them as JSON, retries with
//! exponential backoff, and sends at most one alert per SIM per webhook per `min_interval_s`
//! (the last send time is stored, so the window holds across restarts).
//!
//! Delivery is at least once: a crash after the POST and before its bookkeeping resends it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use crate::config::WebhookConfig;
use crate::engine::Clock;
use crate::store::{
    Batch, Durability, EventKind, Millis, Op, OutboxEntry, Singleton, Store, StoreError,
};

/// Give up on an alert after this many failed attempts (about a day with the backoff cap).
const MAX_ATTEMPTS: u32 = 300;
/// Longest pause between two attempts.
const MAX_BACKOFF_MS: i64 = 300_000;

/// One configured webhook.
#[derive(Clone, Debug)]
pub struct Webhook {
    pub url: String,
    pub events: Vec<EventKind>,
    pub min_interval_ms: i64,
}

impl From<&WebhookConfig> for Webhook {
    fn from(c: &WebhookConfig) -> Self {
        Self {
            url: c.url.clone(),
            events: c.events.iter().filter_map(|e| e.parse().ok()).collect(),
            min_interval_ms: (c.min_interval_s as i64).saturating_mul(1000),
        }
    }
}

/// The outbox worker.
pub struct AlertDelivery {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    webhooks: Vec<Webhook>,
    http: reqwest::Client,
}

fn last_sent_key(url: &str, imsi: &str) -> String {
    format!("alert_last/{url}/{imsi}")
}

/// `result` of `imei_lockd_alerts_total`: `dropped` is an alert given up after
/// [`MAX_ATTEMPTS`] failed attempts.
pub const RESULTS: [&str; 4] = ["delivered", "failed", "suppressed", "dropped"];

impl AlertDelivery {
    /// Also registers the alert series at 0 (every result, the outbox depth).
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, webhooks: Vec<Webhook>) -> Self {
        for result in RESULTS {
            metrics::counter!("imei_lockd_alerts_total", "result" => result).increment(0);
        }
        metrics::gauge!("imei_lockd_alert_outbox_depth").increment(0.0);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            store,
            clock,
            webhooks,
            http,
        }
    }

    /// Delivers until `stop` changes.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            // One node at a time delivers from the (cluster-wide) outbox.
            if self.store.holds(Singleton::Alerts) {
                if let Err(e) = self.pass().await {
                    tracing::warn!(error = %e, "alert outbox pass failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One pass over the due outbox entries.
    ///
    /// # Errors
    /// Store errors.
    pub async fn pass(&self) -> Result<(), StoreError> {
        let entries = self.store.outbox(256)?;
        metrics::gauge!("imei_lockd_alert_outbox_depth").set(entries.len() as f64);
        let now = self.clock.now_ms();
        for (id, mut entry) in entries {
            if entry.next_attempt_at > now {
                continue;
            }
            let mut failed = false;
            let mut batch = Batch::new();
            for hook in &self.webhooks {
                if !hook.events.contains(&entry.event.kind) || entry.done.contains(&hook.url) {
                    continue;
                }
                let key = last_sent_key(&hook.url, entry.event.imsi.as_str());
                let last: Option<Millis> = self
                    .store
                    .meta(&key)?
                    .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                    .map(i64::from_be_bytes);
                if last.is_some_and(|t| now - t < hook.min_interval_ms) {
                    metrics::counter!("imei_lockd_alerts_total", "result" => "suppressed")
                        .increment(1);
                    tracing::debug!(imsi = %entry.event.imsi, url = %hook.url,
                        "alert suppressed inside its window");
                    entry.done.push(hook.url.clone());
                    continue;
                }
                match self.post(hook, &entry).await {
                    Ok(()) => {
                        metrics::counter!("imei_lockd_alerts_total", "result" => "delivered")
                            .increment(1);
                        tracing::info!(imsi = %entry.event.imsi, event = %entry.event.kind,
                            url = %hook.url, "alert delivered");
                        entry.done.push(hook.url.clone());
                        batch.push(Op::PutMeta {
                            key,
                            value: now.to_be_bytes().to_vec(),
                        });
                    }
                    Err(e) => {
                        metrics::counter!("imei_lockd_alerts_total", "result" => "failed")
                            .increment(1);
                        tracing::warn!(imsi = %entry.event.imsi, url = %hook.url, error = %e,
                            attempt = entry.attempts + 1, "alert delivery failed; will retry");
                        failed = true;
                    }
                }
            }
            if failed && entry.attempts + 1 < MAX_ATTEMPTS {
                entry.attempts += 1;
                let backoff = (1000i64 << entry.attempts.min(20)).min(MAX_BACKOFF_MS);
                entry.next_attempt_at = now + backoff;
                batch.push(Op::PutOutbox { id, entry });
            } else {
                if failed {
                    metrics::counter!("imei_lockd_alerts_total", "result" => "dropped")
                        .increment(1);
                    tracing::error!(imsi = %entry.event.imsi, "alert dropped after {MAX_ATTEMPTS} attempts");
                }
                batch.push(Op::DeleteOutbox { id });
            }
            // At least once: a lost compare cannot happen (no SIM, no expectation in it).
            self.store.commit(batch, Durability::Buffered).await?;
        }
        Ok(())
    }

    async fn post(&self, hook: &Webhook, entry: &OutboxEntry) -> Result<(), String> {
        let ev = &entry.event;
        let body = json!({
            "event": ev.kind.as_str(),
            "imsi": ev.imsi.as_str(),
            "imei": ev.imei.map(|i| i.to_string()),
            "bound_imei": ev.bound.map(|i| i.to_string()),
            "interface": ev.interface.as_str(),
            "peer": ev.peer,
            "at_ms": ev.at,
            "detail": ev.detail,
        });
        let resp = self
            .http
            .post(&hook.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status()))
        }
    }
}
