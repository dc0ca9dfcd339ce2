//! Checks of bulk writes (an import's batches): they read like single writes, and the SIMs
//! they create take part in compare-and-swap like any other (the etcd store keeps such SIMs in
//! an import bundle until their first single write).

use super::{commit, event, get, imei, imsi, put, wait};
use crate::context::Imsi;
use crate::store::{Batch, Charge, Commit, EventKind, ImeiManagement, Op, SimRecord, Store};

pub(super) fn bulk_batch_reads_like_single_writes(store: &dyn Store) {
    let sims: Vec<u64> = (100..140).collect();
    let mut b = Batch::new();
    for &n in &sims {
        let mut s = SimRecord::new(imsi(n));
        s.value = Some(ImeiManagement::Lock);
        b.put_sim(s);
        let at = if n < 120 { 1_000 } else { 5_000 };
        b.push(Op::PutEvent(event(n, at, EventKind::ValueChanged)));
        b.push(Op::PutCharge(Charge {
            imsi: imsi(n),
            month: if n % 2 == 0 { "2026-11" } else { "2026-12" }.into(),
            amount: "2.00".into(),
            currency: "EUR".into(),
            first_lock_at: at,
        }));
    }
    assert_eq!(commit(store, b), Commit::Committed);
    for &n in &sims {
        assert!(get(store, n).is_some(), "SIM {n}");
        let events = store.events(&imsi(n), 10).expect("events");
        assert_eq!(events.len(), 1, "SIM {n}: {events:?}");
        assert_eq!(
            events.first().map(|e| e.kind),
            Some(EventKind::ValueChanged)
        );
    }
    assert_eq!(store.charges("2026-11").expect("charges").len(), 20);
    assert_eq!(store.charges("2026-12").expect("charges").len(), 20);
    assert_eq!(
        store
            .charge("2026-12", &imsi(101))
            .expect("charge")
            .map(|c| c.amount),
        Some("2.00".into())
    );
    let (expired, next) = store.expired_events(2_500, None, 100).expect("scan");
    assert!(next.is_none());
    let got: Vec<Imsi> = expired.iter().map(|e| e.imsi).collect();
    assert_eq!(got, (100..120).map(imsi).collect::<Vec<_>>());
    let mut b = Batch::new();
    for id in expired {
        b.push(Op::DeleteEvent(id));
    }
    assert_eq!(commit(store, b), Commit::Committed);
    for &n in &sims {
        let left = store.events(&imsi(n), 10).expect("events").len();
        assert_eq!(left, usize::from(n >= 120), "events left of SIM {n}");
    }
    let (none, _) = store.expired_events(2_500, None, 100).expect("scan");
    assert!(none.is_empty(), "nothing expired left: {none:?}");
    assert_eq!(
        store.charges("2026-11").expect("charges").len(),
        20,
        "charges stay"
    );
}

/// New SIMs of one batch (at least 8: etcd bundles them).
fn bulk_create(store: &dyn Store, sims: std::ops::Range<u64>, extra: Option<SimRecord>) -> Commit {
    let mut b = Batch::new();
    for n in sims {
        let mut s = SimRecord::new(imsi(n));
        s.value = Some(ImeiManagement::Lock);
        b.put_sim(s);
    }
    if let Some(s) = extra {
        b.put_sim(s);
    }
    commit(store, b)
}

fn delete(store: &dyn Store, sim: &SimRecord) -> Commit {
    let mut b = Batch::new();
    b.delete_sim(sim);
    commit(store, b)
}

pub(super) fn bulk_created_sims_compare_and_swap_like_others(store: &dyn Store) {
    assert_eq!(bulk_create(store, 200..220, None), Commit::Committed);
    assert_eq!(
        get(store, 203).and_then(|s| s.value),
        Some(ImeiManagement::Lock)
    );
    // Created again from "absent": loses alone, and takes its whole bulk batch with it.
    assert_eq!(put(store, SimRecord::new(imsi(200))), Commit::Conflict);
    assert_eq!(
        bulk_create(store, 220..230, Some(SimRecord::new(imsi(201)))),
        Commit::Conflict
    );
    assert!(get(store, 220).is_none(), "nothing of a batch that lost");
    // An update from the read copy wins once; the stale copy then loses.
    let read = get(store, 202).expect("bulk-created SIM");
    let mut bound = read.clone();
    bound.bound = Some(imei(202));
    assert_eq!(
        put(store, bound),
        Commit::Committed,
        "bind from the read copy"
    );
    let mut stale = read.clone();
    stale.bound = Some(imei(999));
    assert_eq!(put(store, stale), Commit::Conflict, "stale bind");
    assert_eq!(delete(store, &read), Commit::Conflict, "stale delete");
    assert_eq!(get(store, 202).and_then(|s| s.bound), Some(imei(202)));
    let truth = wait(store.read_back(imsi(202))).expect("read back");
    assert_eq!(truth.and_then(|s| s.bound), Some(imei(202)));
    // The source of truth of a SIM untouched since its bulk write is that write.
    let truth = wait(store.read_back(imsi(203)))
        .expect("read back")
        .expect("bulk-created SIM in the source of truth");
    assert_eq!(truth.value, Some(ImeiManagement::Lock));
    assert_eq!(truth.rev, get(store, 203).map_or(0, |s| s.rev), "same rev");
    // Deleted from the read copy (untouched, and bound): gone, everywhere.
    for n in [204, 202] {
        let read = get(store, n).expect("SIM");
        assert_eq!(delete(store, &read), Commit::Committed, "delete {n}");
        assert!(get(store, n).is_none(), "{n} deleted");
        assert!(wait(store.read_back(imsi(n))).expect("read back").is_none());
        assert_eq!(delete(store, &read), Commit::Conflict, "delete {n} again");
    }
    // Created again: alone, then in a bulk batch with new SIMs.
    let mut again = SimRecord::new(imsi(204));
    again.value = Some(ImeiManagement::Pairing);
    assert_eq!(put(store, again), Commit::Committed, "204 created again");
    assert_eq!(put(store, SimRecord::new(imsi(204))), Commit::Conflict);
    let mut again = SimRecord::new(imsi(202));
    again.value = Some(ImeiManagement::Pairing);
    assert_eq!(bulk_create(store, 230..240, Some(again)), Commit::Committed);
    for n in [202, 204, 235] {
        let s = get(store, n).expect("SIM created again");
        assert_eq!(s.bound, None, "{n}: a new SIM has nothing bound");
        let mut bound = s.clone();
        bound.bound = Some(imei(n));
        assert_eq!(put(store, bound), Commit::Committed, "bind {n}");
        assert_eq!(get(store, n).and_then(|s| s.bound), Some(imei(n)));
    }
    assert_eq!(
        get(store, 202).and_then(|s| s.value),
        Some(ImeiManagement::Pairing)
    );
}
