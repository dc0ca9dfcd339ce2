//! A store that has fallen behind, for overload tests: every call that would do I/O waits first.
//!
//! [`Delayed`] wraps a real store and sleeps `delay` before each [`Ledger::commit`],
//! [`Ledger::append_request`] and each [`LocalRead::sim`] that is not served from memory; what the
//! wrapped store holds in memory ([`LocalRead::sim_in_memory`], profiles, the buffered last-seen)
//! stays as fast as it is. The daemon puts it under its engine only when the test-only
//! environment variable `IMEI_LOCKD_TEST_STORE_DELAY_MS` is set.

use std::sync::Arc;
use std::time::Duration;

use super::{
    Batch, BoxFuture, Commit, Coordination, Durability, Ledger, LedgerFuture, LocalRead, Millis,
    Operation, RequestRecord, SimRecord, Singleton, Store, StoreError,
};
use crate::context::Imsi;
use crate::imei::Imei;

/// `inner`, slowed by `delay` wherever it would do I/O.
pub struct Delayed {
    inner: Arc<dyn Store>,
    delay: Duration,
}

impl Delayed {
    pub fn new(inner: Arc<dyn Store>, delay: Duration) -> Self {
        Self { inner, delay }
    }

    fn wait(&self) {
        std::thread::sleep(self.delay);
    }
}

impl LocalRead for Delayed {
    fn sim(&self, imsi: &Imsi) -> Result<Option<SimRecord>, StoreError> {
        if let Some(sim) = self.inner.sim_in_memory(imsi) {
            return Ok(Some(sim));
        }
        self.wait();
        self.inner.sim(imsi)
    }

    crate::store::forward_local_read_but_sim!(inner);
}

impl Ledger for Delayed {
    fn commit(&self, batch: Batch, durability: Durability) -> LedgerFuture<'_, Commit> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.commit(batch, durability).await
        })
    }

    fn append_request(&self, op: Operation, at: Millis) -> LedgerFuture<'_, RequestRecord> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.append_request(op, at).await
        })
    }

    fn read_back(&self, imsi: Imsi) -> LedgerFuture<'_, Option<SimRecord>> {
        self.inner.read_back(imsi)
    }

    fn note_seen(&self, imsi: &Imsi, imei: Imei, at: Millis) -> Result<(), StoreError> {
        self.inner.note_seen(imsi, imei, at)
    }

    fn next_outbox_id(&self) -> u64 {
        self.inner.next_outbox_id()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }

    fn max_batch_sims(&self) -> usize {
        self.inner.max_batch_sims()
    }

    fn max_batches_in_flight(&self) -> usize {
        self.inner.max_batches_in_flight()
    }
}

impl Coordination for Delayed {
    fn serving(&self) -> bool {
        self.inner.serving()
    }

    fn holds(&self, singleton: Singleton) -> bool {
        self.inner.holds(singleton)
    }

    fn applied(&self) -> u64 {
        self.inner.applied()
    }

    fn wait_everywhere(&self, position: u64, timeout: Duration) -> BoxFuture<'_, bool> {
        self.inner.wait_everywhere(position, timeout)
    }

    fn applied_changed(&self) -> BoxFuture<'_, ()> {
        self.inner.applied_changed()
    }

    fn describe(&self) -> BoxFuture<'_, serde_json::Value> {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemStore;

    #[test]
    fn waits_only_where_the_inner_store_would_do_io() {
        let mem: Arc<dyn Store> = Arc::new(MemStore::default());
        let d = Delayed::new(mem, Duration::from_millis(50));
        let imsi: Imsi = "001010000000001".parse().unwrap();
        let t = std::time::Instant::now();
        // MemStore holds nothing for this SIM: the read goes to "disk" and waits.
        assert!(d.sim(&imsi).unwrap().is_none());
        assert!(t.elapsed() >= Duration::from_millis(50));
        let t = std::time::Instant::now();
        assert!(d.sim_in_memory(&imsi).is_none());
        assert!(d.profile("none").unwrap().is_none());
        assert!(t.elapsed() < Duration::from_millis(50));
    }
}
