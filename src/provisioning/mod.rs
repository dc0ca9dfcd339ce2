//! Provisioning requests (SPEC §1.4) and the billing ledger (§1.5).
//!
//! A request is appended to the store's ordered log, durably, before the API answers 202. One
//! processor applies requests strictly in log order (so requests for one SIM are applied in the
//! order they were accepted) and marks each `processed` or `failed` in the same atomic batch as its
//! effects, fenced by a compare on the processing cursor (so a request is applied exactly once
//! even if two nodes believe they are the processor). Sessions read only the store, so they see
//! a change exactly when it is processed.
//!
//! This module knows no HTTP: the REST API calls [`Provisioner::submit`] and waits with
//! [`Provisioner::wait_processed`].
//!
//! # Layout
//! - this file: the log, the processor's loop, the final batch and its cursor fence;
//! - [`apply`]: what each request writes (and an import's or a profile change's SIM chunks);
//! - [`bulk`]: committing those chunks, several in flight where the store allows it;
//! - [`billing`]: charges and the month roll-over.

mod apply;
mod billing;
mod bulk;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::engine::Clock;
use crate::store::{
    commit_blocking, Batch, Commit, Durability, LocalRead, Op, Operation, RequestRecord,
    RequestStatus, Singleton, Store, StoreError,
};
use apply::ApplyError;
pub use billing::{month_of, month_start, parse_month, BillingSettings};

/// Meta key: the last processed request's sequence number (8 octets BE).
const CURSOR_KEY: &str = "provisioning_cursor";
/// SIMs per batch when a request fans out (profile change, import, month roll-over).
const CHUNK: usize = 10_000;
/// Requests taken from the log per pass.
const PASS: usize = 256;

/// Provisioning failures that are not a request's own fault.
#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies provisioning requests in log order.
pub struct Provisioner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    billing: BillingSettings,
    /// Sequence number of the last processed request; API waiters watch it.
    processed: watch::Sender<u64>,
    /// Wakes the processor when a request is submitted.
    wake: tokio::sync::Notify,
    /// `imei_lockd_provisioning_pending`, set by [`Provisioner::publish_pending`].
    pending: metrics::Gauge,
}

impl Provisioner {
    /// # Errors
    /// Store errors reading the cursor.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        billing: BillingSettings,
    ) -> Result<Self, ProvisioningError> {
        let cursor = read_cursor(&*store)?;
        let (processed, _) = watch::channel(cursor);
        for status in ["submitted", "processed", "failed"] {
            // Present from the start, at 0.
            metrics::counter!("imei_lockd_provisioning_requests_total", "status" => status)
                .increment(0);
        }
        metrics::counter!("imei_lockd_provisioning_bulk_sims_total").increment(0);
        let this = Self {
            store,
            clock,
            billing,
            processed,
            wake: tokio::sync::Notify::new(),
            pending: metrics::gauge!("imei_lockd_provisioning_pending"),
        };
        this.publish_pending();
        Ok(this)
    }

    /// Sets `imei_lockd_provisioning_pending`: the requests accepted after the last processed
    /// one (sequence numbers have no gaps). Called on each submit and each processed request,
    /// so a stuck or slow processor shows as a count that stays up.
    fn publish_pending(&self) {
        let last = self.store.last_request_seq();
        let done = *self.processed.borrow();
        self.pending.set(last.saturating_sub(done) as f64);
    }

    /// Accepts a request: durable when this returns (embedded: synced; cluster: on a quorum).
    ///
    /// # Errors
    /// Store errors; the request was then not accepted.
    pub async fn submit(&self, op: Operation) -> Result<RequestRecord, ProvisioningError> {
        let rec = self.store.append_request(op, self.clock.now_ms()).await?;
        metrics::counter!("imei_lockd_provisioning_requests_total", "status" => "submitted")
            .increment(1);
        tracing::info!(request = rec.seq, "provisioning request accepted");
        self.publish_pending();
        self.wake.notify_one();
        Ok(rec)
    }

    /// The sequence number of the last request in effect on every node serving sessions (the
    /// API reports a request `processed` or `failed` only up to here).
    pub fn processed_seq(&self) -> u64 {
        *self.processed.borrow()
    }

    /// Waits until request `seq` is processed (or failed), at most `timeout`.
    pub async fn wait_processed(&self, seq: u64, timeout: Duration) {
        let mut rx = self.processed.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|&done| done >= seq)).await;
    }

    /// Runs the processor until `stop` fires: processes whatever is pending (on the node that
    /// holds the provisioning singleton), publishes what is in effect everywhere, then sleeps
    /// until a submit, a change applied to this node's reads, or a one-second tick (month
    /// roll-over).
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if self.store.holds(Singleton::Provisioning) {
                let this = self.clone();
                let res = tokio::task::spawn_blocking(move || this.process_pending()).await;
                match res {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "provisioning pass failed; retrying"),
                    Err(e) => tracing::error!(error = %e, "provisioning task failed; retrying"),
                }
            }
            self.publish_processed().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.store.applied_changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// Advances [`Provisioner::processed_seq`] to the cursor this node's reads show, once every
    /// node serving sessions has applied as much (at once on the embedded store).
    pub async fn publish_processed(&self) {
        let Ok(cursor) = read_cursor(&*self.store) else {
            return;
        };
        if cursor <= *self.processed.borrow() {
            return;
        }
        let position = self.store.applied();
        if self
            .store
            .wait_everywhere(position, Duration::from_secs(2))
            .await
        {
            self.processed.send_if_modified(|p| {
                let advance = cursor > *p;
                if advance {
                    *p = cursor;
                }
                advance
            });
            self.publish_pending();
        } else {
            tracing::warn!(
                request = cursor,
                "processed requests not yet in effect on every serving node; still waiting"
            );
        }
    }

    /// Commits a batch of the processor's; a lost compare or an unknown outcome is an error (the
    /// pass stops and the request is applied again from fresh state).
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        match commit_blocking(&*self.store, batch, Durability::Synced)? {
            Commit::Committed => Ok(()),
            Commit::Conflict => Err(StoreError::Conflict("a SIM or the request cursor".into())),
            Commit::Unknown => Err(StoreError::Unknown("a provisioning batch".into())),
        }
    }

    /// Processes every pending request in order (and month roll-overs first). Returns how many
    /// requests were processed.
    ///
    /// # Errors
    /// Store errors; the failed request stays pending and is retried.
    pub fn process_pending(&self) -> Result<usize, ProvisioningError> {
        self.roll_months()?;
        let mut done = 0;
        loop {
            let cursor = read_cursor(&*self.store)?;
            let batch = self.store.requests_after(cursor, PASS)?;
            if batch.is_empty() {
                break;
            }
            for req in batch {
                if !self.process_one(req)? {
                    // Not applied this time (a lost compare): next pass, from fresh state.
                    self.publish_pending();
                    return Ok(done);
                }
                done += 1;
            }
        }
        self.publish_pending();
        Ok(done)
    }

    /// Applies one request; `false` if it was left pending (a compare lost).
    fn process_one(&self, req: RequestRecord) -> Result<bool, ProvisioningError> {
        // The cursor as read now: the final batch applies only if it still is (one processor's
        // write fences any other that believes it holds the singleton).
        let cursor_before = self.store.meta(CURSOR_KEY)?;
        let now = self.clock.now_ms();
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            match self.apply(&req, now) {
                Err(ApplyError::Store(StoreError::Conflict(_))) if attempt < 16 => continue,
                other => break other,
            }
        };
        let (status, error, mut batch) = match outcome {
            Ok(batch) => (RequestStatus::Processed, None, batch),
            Err(ApplyError::Rejected(msg)) => (RequestStatus::Failed, Some(msg), Batch::new()),
            Err(ApplyError::Store(e)) => return Err(e.into()),
        };
        // An import's rows are needed only until it is applied: the settled record keeps its
        // id, kind, status and times, not a copy of the file (in cluster mode that copy would
        // be written to etcd, and sent to every node, a second time).
        let op = match &req.op {
            Operation::Import { .. } => Operation::Import { rows: Vec::new() },
            other => other.clone(),
        };
        batch.push(Op::PutRequest(RequestRecord {
            op,
            status,
            error: error.clone(),
            processed_at: Some(now),
            ..req.clone()
        }));
        batch.push(Op::ExpectMeta {
            key: CURSOR_KEY.into(),
            value: cursor_before,
        });
        batch.push(Op::PutMeta {
            key: CURSOR_KEY.into(),
            value: req.seq.to_be_bytes().to_vec(),
        });
        match commit_blocking(&*self.store, batch, Durability::Synced)? {
            Commit::Committed => {}
            // A session changed a SIM between apply and write, or another processor moved the
            // cursor; or the outcome is unknown: leave it pending, the next pass applies it again
            // from fresh state (or skips it if it did commit).
            Commit::Conflict | Commit::Unknown => return Ok(false),
        }
        let label = if status == RequestStatus::Processed {
            "processed"
        } else {
            "failed"
        };
        metrics::counter!("imei_lockd_provisioning_requests_total", "status" => label).increment(1);
        match &error {
            None => tracing::info!(
                request = req.seq,
                op = op_name(&req.op),
                "request processed"
            ),
            Some(e) => {
                tracing::warn!(request = req.seq, op = op_name(&req.op), error = %e, "request failed")
            }
        }
        self.publish_pending();
        Ok(true)
    }

    /// SIMs per batch of a fan-out: [`CHUNK`], or less if the ledger takes less.
    fn chunk(&self) -> usize {
        CHUNK.min(self.store.max_batch_sims()).max(1)
    }
}

fn op_name(op: &Operation) -> &'static str {
    match op {
        Operation::UpsertSim { .. } => "upsert_sim",
        Operation::SetSimValue { .. } => "set_sim_value",
        Operation::Reset { .. } => "reset",
        Operation::DeleteSim { .. } => "delete_sim",
        Operation::UpsertProfile { .. } => "upsert_profile",
        Operation::Import { .. } => "import",
    }
}

fn read_cursor(store: &(impl LocalRead + ?Sized)) -> Result<u64, StoreError> {
    Ok(store
        .meta(CURSOR_KEY)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(0, u64::from_be_bytes))
}

#[cfg(test)]
mod tests;
