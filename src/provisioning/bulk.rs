//! Bulk writes of one provisioning request: the chunks of an import, of a profile change's
//! fan-out and of a month roll-over, each a batch of at most [`Ledger::max_batch_sims`] SIMs.
//!
//! [`Bulk`] commits them with up to [`Ledger::max_batches_in_flight`] in flight at once: one on
//! the embedded store (each batch is written when `commit` returns, exactly as before), several
//! on etcd (each batch is a transaction waiting on a raft round; etcd folds concurrent ones
//! into one WAL fsync). The batches in flight together must touch disjoint SIMs: a batch is
//! staged from this node's reads, which show a batch of the same request only once it has
//! committed. The caller sees to that (an import that names a SIM twice is written one batch
//! at a time).
//!
//! Exactly once is kept by the request's final batch, not here: it carries the compare on the
//! provisioning cursor and is committed only after [`Bulk::finish`] returned `Ok`, i.e. after
//! every batch of the request committed. A batch that loses a compare or whose outcome is
//! unknown fails the whole pass: the batches still in flight are waited for (so this node's
//! reads show whatever they did), and the request stays pending, to be applied again from
//! fresh state (what the earlier attempt wrote reads as already done: no second event, no
//! second charge).
//!
//! This module does not decide what a batch holds or stage anything; it only commits.

use crate::store::blocking::InFlight;
use crate::store::{Batch, Commit, Durability, Store, StoreError};

/// The batches of one request being committed. Dropping it waits for the ones in flight.
pub(super) struct Bulk<'a> {
    store: &'a dyn Store,
    in_flight: InFlight<'a, (Result<Commit, StoreError>, usize)>,
    /// SIMs in the batches committed so far (`imei_lockd_provisioning_bulk_sims_total`).
    sims: metrics::Counter,
}

impl<'a> Bulk<'a> {
    /// Batches of `store`, at most `limit` in flight (at least 1).
    pub(super) fn new(store: &'a dyn Store, limit: usize) -> Self {
        Self {
            store,
            in_flight: InFlight::new(limit),
            sims: metrics::counter!("imei_lockd_provisioning_bulk_sims_total"),
        }
    }

    /// Starts committing `batch` (of `sims` SIMs), after waiting, if the limit is reached, for
    /// an earlier one to finish.
    ///
    /// # Errors
    /// An earlier batch (or this one) lost a compare, has an unknown outcome or failed: every
    /// batch still in flight has then been waited for.
    pub(super) fn commit(&mut self, batch: Batch, sims: usize) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let fut = self.store.commit(batch, Durability::Synced);
        let done = self.in_flight.push(Box::pin(async move {
            let r = fut.await;
            (r, sims)
        }));
        self.settle(done)
    }

    /// Waits for every batch in flight.
    ///
    /// # Errors
    /// As [`Bulk::commit`]: the first batch that did not commit.
    pub(super) fn finish(mut self) -> Result<(), StoreError> {
        let done = self.in_flight.finish();
        self.settle(done)
    }

    /// Counts the batches that committed; on the first that did not, waits for the rest and
    /// returns its error.
    fn settle(&mut self, done: Vec<(Result<Commit, StoreError>, usize)>) -> Result<(), StoreError> {
        let mut failed = None;
        for (outcome, sims) in done {
            match outcome {
                Ok(Commit::Committed) => self.sims.increment(sims as u64),
                Ok(Commit::Conflict) => {
                    failed.get_or_insert(StoreError::Conflict("a SIM of a bulk batch".into()));
                }
                Ok(Commit::Unknown) => {
                    failed.get_or_insert(StoreError::Unknown("a provisioning batch".into()));
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        let Some(e) = failed else {
            return Ok(());
        };
        let rest = self.in_flight.finish();
        for (outcome, sims) in rest {
            if matches!(outcome, Ok(Commit::Committed)) {
                self.sims.increment(sims as u64);
            }
        }
        tracing::warn!(error = %e, "a bulk batch did not commit; the request will be applied again");
        Err(e)
    }
}

impl Drop for Bulk<'_> {
    fn drop(&mut self) {
        // A caller that stopped half-way (a read failed while staging) leaves nothing running:
        // the next attempt reads what these batches did.
        if !self.in_flight.is_empty() {
            let _ = self.in_flight.finish();
        }
    }
}

#[cfg(test)]
#[path = "bulk_tests.rs"]
mod tests;
