//! Event retention: events older than the configured retention are deleted, by the one node
//! that holds the retention singleton, once when it takes the singleton and then every hour.
//!
//! The scan reads this node's local store (no network: in cluster mode the cache), a page of
//! events at a time; the deletes are ordinary ledger batches, so in cluster mode every node's
//! cache loses the same events through the watch. Only events are concerned: SIMs, bindings,
//! requests and billing rows are not touched here.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::engine::Clock;
use crate::store::{Batch, Commit, Durability, EventId, Op, Singleton, Store, StoreError};

/// Events looked at per scan step.
const SCAN: usize = 2_000;
/// Time between two passes.
const EVERY: Duration = Duration::from_secs(3_600);

/// The retention worker.
pub struct EventRetention {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    keep_ms: i64,
}

impl EventRetention {
    /// Keeps events for `keep`; registers `imei_lockd_events_expired_total` at 0.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, keep: Duration) -> Self {
        metrics::counter!("imei_lockd_events_expired_total").increment(0);
        Self {
            store,
            clock,
            keep_ms: i64::try_from(keep.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Runs a pass whenever this node newly holds the singleton, and every [`EVERY`] while it
    /// does, until `stop` changes.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut held = false;
        let mut last_pass = tokio::time::Instant::now();
        loop {
            let holds = self.store.holds(Singleton::Retention);
            if holds && (!held || last_pass.elapsed() >= EVERY) {
                last_pass = tokio::time::Instant::now();
                match self.pass().await {
                    Ok(n) => tracing::info!(deleted = n, "event retention pass done"),
                    Err(e) => tracing::warn!(error = %e, "event retention pass failed; next hour"),
                }
            }
            held = holds;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Deletes every event older than the retention; returns how many.
    ///
    /// # Errors
    /// Store errors; what was deleted before stays deleted.
    pub async fn pass(&self) -> Result<u64, StoreError> {
        let before = self.clock.now_ms().saturating_sub(self.keep_ms);
        let per_batch = self.store.max_batch_sims().max(1);
        let mut after: Option<EventId> = None;
        let mut deleted = 0u64;
        loop {
            let (expired, next) = self.store.expired_events(before, after, SCAN)?;
            for chunk in expired.chunks(per_batch) {
                let mut b = Batch::new();
                for id in chunk {
                    b.push(Op::DeleteEvent(*id));
                }
                match self.store.commit(b, Durability::Buffered).await? {
                    Commit::Committed => {}
                    // No compare in the batch: neither can happen; counted as not deleted.
                    Commit::Conflict | Commit::Unknown => continue,
                }
                deleted += chunk.len() as u64;
                metrics::counter!("imei_lockd_events_expired_total").increment(chunk.len() as u64);
            }
            match next {
                Some(n) => after = Some(n),
                None => return Ok(deleted),
            }
        }
    }
}
