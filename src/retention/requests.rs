//! The requests pass: settled provisioning requests (processed or failed) whose settling time
//! (or, without one, their submission) is older than the cutoff go, a CSV import's request
//! like any other once it is settled.
//!
//! A pending request is never deleted, nor the newest request (pending or not): the stores
//! rebuild the next sequence number from it. The scan walks the log in sequence order from
//! the start and stops at the first request submitted well after the cutoff (the log is in
//! submission order, up to the clock skew between nodes).

use std::time::Duration;

use crate::store::{Millis, Op, RequestRecord, RequestStatus, Store, StoreError};

use super::{count, delete, millis, SCAN};

/// How far a later request's submission time may be before an earlier one's (clocks of two
/// cluster nodes): the scan goes on that far past the cutoff.
const SKEW: Duration = Duration::from_secs(600);

/// Whether `r` may go: settled before `before`, and not the newest (`newest`).
pub(super) fn expired(r: &RequestRecord, before: Millis, newest: u64) -> bool {
    r.seq < newest
        && r.status != RequestStatus::Pending
        && r.processed_at.unwrap_or(r.submitted_at) < before
}

/// Deletes every settled request older than `before` but the newest; returns how many.
///
/// # Errors
/// Store errors; what was deleted before stays deleted.
pub(super) async fn expire(store: &dyn Store, before: Millis) -> Result<u64, StoreError> {
    let per_batch = store.max_batch_sims().max(1);
    let newest = store.last_request_seq();
    let stop_at = before.saturating_add(millis(SKEW));
    let mut after = 0u64;
    let mut deleted = 0u64;
    loop {
        let page = store.requests_after(after, SCAN)?;
        let Some(last) = page.last() else {
            return Ok(deleted);
        };
        after = last.seq;
        let past = page.iter().any(|r| r.submitted_at >= stop_at);
        let gone: Vec<u64> = page
            .iter()
            .filter(|r| expired(r, before, newest))
            .map(|r| r.seq)
            .collect();
        for chunk in gone.chunks(per_batch) {
            let ops = chunk.iter().map(|&seq| Op::DeleteRequest(seq)).collect();
            if delete(store, ops).await? {
                let n = chunk.len() as u64;
                deleted += n;
                count("requests", n);
            }
        }
        if past || page.len() < SCAN || after >= newest {
            return Ok(deleted);
        }
    }
}
