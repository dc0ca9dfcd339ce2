//! The events pass: every event older than the cutoff goes (scanned in (IMSI, time) order
//! from the local store, deleted a batch at a time).
//!
//! It also counts `imei_lockd_events_expired_total`, the older metric of the same deletions.

use crate::store::{EventId, Millis, Op, Store, StoreError};

use super::{count, delete, SCAN};

/// Deletes every event older than `before`; returns how many.
///
/// # Errors
/// Store errors; what was deleted before stays deleted.
pub(super) async fn expire(store: &dyn Store, before: Millis) -> Result<u64, StoreError> {
    let per_batch = store.max_batch_sims().max(1);
    let mut after: Option<EventId> = None;
    let mut deleted = 0u64;
    loop {
        let (expired, next) = store.expired_events(before, after, SCAN)?;
        for chunk in expired.chunks(per_batch) {
            let ops = chunk.iter().map(|id| Op::DeleteEvent(*id)).collect();
            if !delete(store, ops).await? {
                continue;
            }
            let n = chunk.len() as u64;
            deleted += n;
            metrics::counter!("imei_lockd_events_expired_total").increment(n);
            count("events", n);
        }
        match next {
            Some(n) => after = Some(n),
            None => return Ok(deleted),
        }
    }
}
