//! Bulk batches in flight together, on a store whose commits complete only when polled again
//! (as etcd's do), with a failure injected half-way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::context::Imsi;
use crate::engine::Clock;
use crate::imei::Imei;
use crate::provisioning::{BillingSettings, Provisioner};
use crate::store::memory::MemStore;
use crate::store::{
    Batch, BoxFuture, Commit, Coordination, Durability, EventKind, ImeiManagement, ImportRow,
    Ledger, LedgerFuture, LocalRead, Millis, Op, Operation, RequestRecord, RequestStatus,
    SimRecord, Singleton, StoreError,
};

/// 2026-03-10T12:00:00Z
const NOW: Millis = 1_773_144_000_000;

struct FixedClock;

impl Clock for FixedClock {
    fn now_ms(&self) -> Millis {
        NOW
    }
}

/// A [`MemStore`] whose bulk commits (batches without a cursor compare) are written on their
/// 6th poll, 7 SIMs a batch, up to 4 in flight; the `fail_at`-th bulk
/// commit (counting from 1) is written and then reported [`Commit::Unknown`], as a timeout
/// across an etcd leader change would.
struct Pipelined {
    inner: MemStore,
    fail_at: AtomicUsize,
    bulk_commits: AtomicUsize,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

impl Pipelined {
    fn new(fail_at: usize) -> Self {
        Self {
            inner: MemStore::new(),
            fail_at: AtomicUsize::new(fail_at),
            bulk_commits: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
        }
    }
}

impl Ledger for Pipelined {
    fn commit(&self, batch: Batch, durability: Durability) -> LedgerFuture<'_, Commit> {
        let fenced = batch
            .ops
            .iter()
            .any(|op| matches!(op, Op::ExpectMeta { .. }));
        if fenced {
            return self.inner.commit(batch, durability);
        }
        let n = self.bulk_commits.fetch_add(1, Ordering::SeqCst) + 1;
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(running, Ordering::SeqCst);
        let mut batch = Some(batch);
        let mut polls = 0;
        Box::pin(std::future::poll_fn(move |cx| {
            // In flight for 5 polls (the bulk writer polls every running batch whenever it
            // starts one or waits), written at the 6th (and maybe reported unknown).
            polls += 1;
            if polls < 6 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let Some(b) = batch.take() else {
                return Poll::Ready(Err(StoreError::Backend("polled after completion".into())));
            };
            self.running.fetch_sub(1, Ordering::SeqCst);
            let committed = crate::store::blocking::wait(self.inner.commit(b, durability));
            if n == self.fail_at.load(Ordering::SeqCst) {
                return Poll::Ready(committed.map(|_| Commit::Unknown));
            }
            Poll::Ready(committed)
        }))
    }
    fn append_request(&self, op: Operation, at: Millis) -> LedgerFuture<'_, RequestRecord> {
        self.inner.append_request(op, at)
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
        7
    }
    fn max_batches_in_flight(&self) -> usize {
        4
    }
}

impl LocalRead for Pipelined {
    fn sim(&self, imsi: &Imsi) -> Result<Option<SimRecord>, StoreError> {
        self.inner.sim(imsi)
    }

    crate::store::forward_local_read_but_sim!(inner);
}

impl Coordination for Pipelined {
    fn serving(&self) -> bool {
        true
    }
    fn holds(&self, _singleton: Singleton) -> bool {
        true
    }
    fn applied(&self) -> u64 {
        self.inner.applied()
    }
    fn wait_everywhere(&self, position: u64, timeout: Duration) -> BoxFuture<'_, bool> {
        self.inner.wait_everywhere(position, timeout)
    }
}

fn provisioner(store: Arc<Pipelined>) -> Provisioner {
    let billing = BillingSettings {
        lock_fee: "1.00".into(),
        currency: "EUR".into(),
    };
    match Provisioner::new(store, Arc::new(FixedClock), billing) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn rows(n: u64, value: ImeiManagement) -> Vec<ImportRow> {
    (0..n)
        .map(|i| ImportRow {
            imsi: format!("00101{i:010}").parse().unwrap(),
            msisdn: None,
            profile: None,
            value: Some(value),
        })
        .collect()
}

/// Every SIM of `rows` has `value`, one `value_changed` event and (if locked) one charge.
fn applied_once(store: &Pipelined, rows: &[ImportRow], value: ImeiManagement) {
    for r in rows {
        let sim = store.sim(&r.imsi).unwrap().unwrap();
        assert_eq!(sim.value, Some(value), "{}", r.imsi);
        let events = store.events(&r.imsi, 10).unwrap();
        let changes = events
            .iter()
            .filter(|e| e.kind == EventKind::ValueChanged)
            .count();
        assert_eq!(changes, 1, "{}: {events:?}", r.imsi);
    }
    let charged = store.charges("2026-03").unwrap().len();
    let want = if value == ImeiManagement::Lock {
        rows.len()
    } else {
        0
    };
    assert_eq!(charged, want);
}

#[test]
fn import_chunks_commit_several_at_once() {
    let store = Arc::new(Pipelined::new(0));
    let prov = provisioner(store.clone());
    let rows = rows(100, ImeiManagement::Lock);
    let rec = crate::store::blocking::wait(prov.submit(Operation::Import { rows: rows.clone() }))
        .unwrap();
    assert_eq!(prov.process_pending().unwrap(), 1);
    let done = store.request(rec.seq).unwrap().unwrap();
    assert_eq!(done.status, RequestStatus::Processed);
    // 100 SIMs, 7 a batch: 15 batches, 4 of them in flight at once.
    assert_eq!(store.bulk_commits.load(Ordering::SeqCst), 15);
    assert_eq!(store.most_running.load(Ordering::SeqCst), 4);
    applied_once(&store, &rows, ImeiManagement::Lock);
}

#[test]
fn an_import_that_names_a_sim_twice_writes_one_chunk_at_a_time() {
    let store = Arc::new(Pipelined::new(0));
    let prov = provisioner(store.clone());
    let mut rows = rows(30, ImeiManagement::Disabled);
    // The last row locks the first SIM again: it must see the first row's write.
    let mut again = rows[0].clone();
    again.value = Some(ImeiManagement::Lock);
    rows.push(again);
    crate::store::blocking::wait(prov.submit(Operation::Import { rows: rows.clone() })).unwrap();
    assert_eq!(prov.process_pending().unwrap(), 1);
    assert_eq!(store.most_running.load(Ordering::SeqCst), 1);
    let first = store.sim(&rows[0].imsi).unwrap().unwrap();
    assert_eq!(first.value, Some(ImeiManagement::Lock));
    assert_eq!(store.charges("2026-03").unwrap().len(), 1);
}

#[test]
fn a_batch_with_an_unknown_outcome_leaves_the_request_pending_and_it_applies_once_later() {
    // The 6th batch is written but reported unknown while others are in flight.
    let store = Arc::new(Pipelined::new(6));
    let prov = provisioner(store.clone());
    let rows = rows(100, ImeiManagement::Lock);
    let rec = crate::store::blocking::wait(prov.submit(Operation::Import { rows: rows.clone() }))
        .unwrap();
    assert!(prov.process_pending().is_err(), "the pass stops");
    assert_eq!(
        store.running.load(Ordering::SeqCst),
        0,
        "nothing left running"
    );
    let pending = store.request(rec.seq).unwrap().unwrap();
    assert_eq!(pending.status, RequestStatus::Pending);
    // Next pass: applied again from fresh state; what was written reads as done.
    assert_eq!(prov.process_pending().unwrap(), 1);
    let done = store.request(rec.seq).unwrap().unwrap();
    assert_eq!(done.status, RequestStatus::Processed);
    applied_once(&store, &rows, ImeiManagement::Lock);
}
