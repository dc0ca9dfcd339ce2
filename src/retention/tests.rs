//! Each pass over the in-memory store (and the embedded one) with an injected clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::context::{Imsi, Interface};
use crate::provisioning::month_start;
use crate::store::blocking::wait;
use crate::store::memory::MemStore;
use crate::store::{
    Charge, Event, EventKind, Ledger as _, LocalRead as _, Millis, Operation, RequestRecord,
    RequestStatus, Store,
};

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

const DAY: Millis = 86_400_000;

/// 2026-12-07 00:00 UTC.
fn now() -> Millis {
    month_start(2026, 12) + 6 * DAY
}

fn imsi(n: u64) -> Imsi {
    Imsi::parse(format!("00101{n:010}").as_bytes()).unwrap()
}

fn retention(store: Arc<dyn Store>, settings: RetentionSettings) -> Retention {
    Retention::new(store, Arc::new(TestClock(AtomicI64::new(now()))), settings)
}

fn days(d: u64) -> Option<Duration> {
    Some(Duration::from_secs(d * 86_400))
}

fn put(store: &dyn Store, ops: Vec<Op>) {
    assert_eq!(
        wait(store.commit(Batch { ops }, Durability::Synced)).unwrap(),
        Commit::Committed
    );
}

fn event(n: u64, at: Millis) -> Event {
    Event {
        kind: EventKind::ImeiBound,
        imsi: imsi(n),
        at,
        interface: Interface::Radius,
        peer: "test".into(),
        imei: None,
        bound: None,
        detail: None,
    }
}

fn charge(n: u64, month: &str) -> Charge {
    Charge {
        imsi: imsi(n),
        month: month.into(),
        amount: "1.00".into(),
        currency: "EUR".into(),
        first_lock_at: 0,
    }
}

/// Appends a request submitted at `at`, settled at `settled` (`None`: left pending).
fn request(store: &dyn Store, at: Millis, settled: Option<(RequestStatus, Option<Millis>)>) -> u64 {
    let rec = wait(store.append_request(Operation::Reset { imsi: imsi(1) }, at)).unwrap();
    if let Some((status, processed_at)) = settled {
        put(
            store,
            vec![Op::PutRequest(RequestRecord {
                status,
                processed_at,
                ..rec.clone()
            })],
        );
    }
    rec.seq
}

#[tokio::test]
async fn events_older_than_the_retention_go() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    put(
        &*store,
        vec![
            Op::PutEvent(event(1, now() - 40 * DAY)),
            Op::PutEvent(event(1, now() - 20 * DAY)),
            Op::PutEvent(event(2, now() - 31 * DAY)),
            Op::PutEvent(event(2, now() - DAY)),
        ],
    );
    let r = retention(
        store.clone(),
        RetentionSettings {
            events: days(30),
            ..Default::default()
        },
    );
    let report = r.pass().await;
    assert_eq!(
        report,
        PassReport {
            events: Some(2),
            requests: None,
            billing: None
        }
    );
    let left = |n| -> Vec<Millis> {
        store
            .events(&imsi(n), 10)
            .unwrap()
            .iter()
            .map(|e| now() - e.at)
            .collect()
    };
    assert_eq!(left(1), vec![20 * DAY]);
    assert_eq!(left(2), vec![DAY]);
    // A second pass finds nothing more.
    assert_eq!(r.pass().await.events, Some(0));
}

async fn requests_pass(store: Arc<dyn Store>) {
    use RequestStatus::{Failed, Processed};
    let old = now() - 100 * DAY;
    let processed_old = request(&*store, old, Some((Processed, Some(old + 1_000))));
    let failed_old = request(&*store, old, Some((Failed, Some(old + 2_000))));
    // Settled without a settling time: its submission counts.
    let no_time_old = request(&*store, old, Some((Processed, None)));
    let pending_old = request(&*store, old, None);
    // Submitted long ago, settled recently: stays.
    let settled_recently = request(&*store, old, Some((Processed, Some(now() - DAY))));
    let young = request(&*store, now() - DAY, Some((Processed, Some(now() - DAY))));
    let newest_old = request(&*store, old, Some((Processed, Some(old + 3_000))));
    let r = retention(
        store.clone(),
        RetentionSettings {
            requests: days(90),
            ..Default::default()
        },
    );
    assert_eq!(r.pass().await.requests, Some(3));
    let left: Vec<u64> = store
        .requests_after(0, 100)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(
        left,
        vec![pending_old, settled_recently, young, newest_old],
        "deleted: {processed_old} {failed_old} {no_time_old}"
    );
    assert_eq!(store.last_request_seq(), newest_old);
    assert_eq!(r.pass().await.requests, Some(0));
    // The log goes on after the newest.
    let next = wait(store.append_request(Operation::Reset { imsi: imsi(2) }, now())).unwrap();
    assert_eq!(next.seq, newest_old + 1);
}

#[tokio::test]
async fn settled_requests_go_but_never_pending_ones_nor_the_newest() {
    requests_pass(Arc::new(MemStore::new())).await;
}

#[cfg(feature = "rocksdb")]
#[tokio::test]
async fn settled_requests_go_on_the_embedded_store_and_the_sequence_survives_a_reopen() {
    use crate::store::rocks::RocksStore;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RocksStore::open(dir.path(), &Default::default()).unwrap());
    requests_pass(store.clone()).await;
    let last = store.last_request_seq();
    drop(store);
    let store = RocksStore::open(dir.path(), &Default::default()).unwrap();
    assert_eq!(store.last_request_seq(), last);
    let next = wait(store.append_request(Operation::Reset { imsi: imsi(3) }, now())).unwrap();
    assert_eq!(next.seq, last + 1);
}

#[tokio::test]
async fn billing_months_before_the_cutoff_go() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let mut ops = Vec::new();
    for (month, sims) in [
        ("2022-12", 12),
        ("2023-11", 3),
        ("2023-12", 2),
        ("2026-12", 4),
    ] {
        for n in 0..sims {
            ops.push(Op::PutCharge(charge(n, month)));
        }
    }
    put(&*store, ops);
    let r = retention(
        store.clone(),
        RetentionSettings {
            billing_months: Some(36),
            ..Default::default()
        },
    );
    assert_eq!(r.pass().await.billing, Some(15));
    assert_eq!(
        store.oldest_charge_month().unwrap().as_deref(),
        Some("2023-12")
    );
    assert_eq!(store.charges("2023-12").unwrap().len(), 2);
    assert_eq!(store.charges("2026-12").unwrap().len(), 4);
    assert_eq!(r.pass().await.billing, Some(0));
}

#[test]
fn the_cutoff_month_counts_back_across_years() {
    assert_eq!(cutoff_month(now(), 36), "2023-12");
    assert_eq!(cutoff_month(now(), 1), "2026-11");
    assert_eq!(cutoff_month(now(), 12), "2025-12");
    let january = month_start(2026, 1) + DAY;
    assert_eq!(cutoff_month(january, 1), "2025-12");
    assert_eq!(cutoff_month(january, 13), "2024-12");
    assert_eq!(cutoff_month(january, 24), "2024-01");
}

#[tokio::test]
async fn kept_forever_deletes_nothing() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    put(
        &*store,
        vec![
            Op::PutEvent(event(1, 0)),
            Op::PutCharge(charge(1, "1999-01")),
        ],
    );
    request(&*store, 0, Some((RequestStatus::Processed, Some(0))));
    request(&*store, 0, Some((RequestStatus::Processed, Some(0))));
    let r = retention(store.clone(), RetentionSettings::default());
    assert_eq!(r.pass().await, PassReport::default());
    assert_eq!(store.events(&imsi(1), 10).unwrap().len(), 1);
    assert_eq!(store.requests_after(0, 10).unwrap().len(), 2);
    assert_eq!(
        store.oldest_charge_month().unwrap().as_deref(),
        Some("1999-01")
    );
}

#[test]
fn settings_follow_the_config() {
    let mut cfg = crate::config::Config::default();
    let s = RetentionSettings::from_config(&cfg);
    assert_eq!(s.events, days(90));
    assert_eq!(s.requests, days(90));
    assert_eq!(s.billing_months, Some(36));
    cfg.cluster.event_retention_days = Some(30);
    assert_eq!(RetentionSettings::from_config(&cfg).events, days(30));
    cfg.retention.events_days = Some(0);
    cfg.retention.requests_days = 0;
    cfg.retention.billing_months = 0;
    assert_eq!(
        RetentionSettings::from_config(&cfg),
        RetentionSettings::default()
    );
}
