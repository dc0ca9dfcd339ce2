//! Retention: events, settled provisioning requests and billing rows older than `[retention]`
//! says are deleted, by the one node that holds the retention singleton (in embedded mode the
//! only node: it always does), once when it takes the singleton and then every hour.
//!
//! Each kind has its pass, in its own file ([`events`], [`requests`], [`billing`]). The scans
//! read this node's local store (no network: in cluster mode the cache), a page at a time; the
//! deletes are ordinary ledger batches of at most [`crate::store::Ledger::max_batch_sims`]
//! records, written [`Durability::Buffered`] (a deletion lost in a crash is made again by the
//! next pass), so in cluster mode every node's cache loses the same records through the watch.
//! Each pass logs one INFO line per kind with what it deleted, and counts it in
//! `imei_lockd_retention_deleted_total{kind}`.
//!
//! This module decides nothing else: SIMs, bindings, profiles and the alert outbox are never
//! touched; a pending request and the newest request are never deleted; the current month's
//! billing rows and the `billing_months` before it stay.

mod billing;
mod events;
mod requests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::engine::Clock;
use crate::store::{Batch, Commit, Durability, Op, Singleton, Store, StoreError};

pub use billing::cutoff_month;

/// Time between two passes.
const EVERY: Duration = Duration::from_secs(3_600);
/// Records looked at per scan step.
const SCAN: usize = 2_000;

/// The `kind` label of `imei_lockd_retention_deleted_total`.
pub const KINDS: [&str; 3] = ["events", "requests", "billing"];

/// How long each kind is kept (`None`: forever).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionSettings {
    pub events: Option<Duration>,
    pub requests: Option<Duration>,
    /// Billing rows of months more than this many months before the current one go.
    pub billing_months: Option<u32>,
}

impl RetentionSettings {
    /// From `[retention]` (and `cluster.event_retention_days`, the older key for events): 0
    /// days or months is `None`, kept forever.
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        let days = |d: u64| (d > 0).then(|| Duration::from_secs(d.saturating_mul(86_400)));
        let (events_days, _) = cfg.retention.events(&cfg.cluster);
        Self {
            events: days(events_days),
            requests: days(cfg.retention.requests_days),
            billing_months: u32::try_from(cfg.retention.billing_months)
                .ok()
                .filter(|&m| m > 0),
        }
    }
}

/// What one pass deleted, by kind (`None`: the kind is kept forever, or its pass failed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub events: Option<u64>,
    pub requests: Option<u64>,
    pub billing: Option<u64>,
}

/// The retention worker.
pub struct Retention {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: RetentionSettings,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Retention {
    /// Registers `imei_lockd_retention_deleted_total{kind}` (and the older
    /// `imei_lockd_events_expired_total`) at 0.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: RetentionSettings) -> Self {
        metrics::counter!("imei_lockd_events_expired_total").increment(0);
        for kind in KINDS {
            metrics::counter!("imei_lockd_retention_deleted_total", "kind" => kind).increment(0);
        }
        Self {
            store,
            clock,
            settings,
        }
    }

    /// Runs a pass whenever this node newly holds the singleton, and every [`EVERY`] while it
    /// does, until `stop` changes (a pass in progress is abandoned: what it deleted stays
    /// deleted, the rest waits for the next one).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut held = false;
        let mut last_pass = tokio::time::Instant::now();
        loop {
            let holds = self.store.holds(Singleton::Retention);
            if holds && (!held || last_pass.elapsed() >= EVERY) {
                last_pass = tokio::time::Instant::now();
                tokio::select! {
                    _ = self.pass() => {}
                    _ = stop.changed() => return,
                }
            }
            held = holds;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One pass over every kind, each logged on one line (a failed kind with a WARN; the others
    /// still run).
    pub async fn pass(&self) -> PassReport {
        let now = self.clock.now_ms();
        let store = &*self.store;
        let mut report = PassReport::default();
        match self.settings.events {
            None => tracing::info!(kind = "events", "retention: kept forever"),
            Some(keep) => {
                let before = now.saturating_sub(millis(keep));
                report.events = logged("events", events::expire(store, before).await);
            }
        }
        match self.settings.requests {
            None => tracing::info!(kind = "requests", "retention: kept forever"),
            Some(keep) => {
                let before = now.saturating_sub(millis(keep));
                report.requests = logged("requests", requests::expire(store, before).await);
            }
        }
        match self.settings.billing_months {
            None => tracing::info!(kind = "billing", "retention: kept forever"),
            Some(months) => {
                let cutoff = cutoff_month(now, months);
                report.billing = logged("billing", billing::expire(store, &cutoff).await);
            }
        }
        report
    }
}

fn logged(kind: &'static str, result: Result<u64, StoreError>) -> Option<u64> {
    match result {
        Ok(n) => {
            tracing::info!(kind, deleted = n, "retention pass done");
            Some(n)
        }
        Err(e) => {
            tracing::warn!(kind, error = %e, "retention pass failed; next hour");
            None
        }
    }
}

/// Commits one batch of deletes: `true` when it committed (no compare in it: a conflict or an
/// unknown outcome cannot really happen, and counts as not deleted; the next pass sees).
async fn delete(store: &dyn Store, ops: Vec<Op>) -> Result<bool, StoreError> {
    let batch = Batch { ops };
    Ok(matches!(
        store.commit(batch, Durability::Buffered).await?,
        Commit::Committed
    ))
}

/// Counts `n` deletions of `kind`.
fn count(kind: &'static str, n: u64) {
    metrics::counter!("imei_lockd_retention_deleted_total", "kind" => kind).increment(n);
}

#[cfg(test)]
mod tests;
