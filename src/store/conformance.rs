//! One conformance battery for every [`Store`]: the memory twin, the embedded RocksDB store and
//! the etcd cluster store run the same checks (hickory-dns runs one battery over every store of
//! its `store/` the same way). Unit tests run it over the first two; `integration-tests/cluster.rs`
//! over etcd with real members.
//!
//! Each check takes a fresh, empty store and panics (with what differed) on the first
//! violation. Checks assume nothing about revision numbers beyond "a stale copy loses": the
//! embedded stores count writes, etcd uses its `mod_revision`.
//!
//! This module is test support compiled into the library so that integration tests can call
//! it; the daemon never does.

use crate::context::{Imsi, Interface};
use crate::imei::Imei;

use super::blocking::wait;
use super::{
    Batch, Charge, Commit, Durability, Event, EventKind, ImeiManagement, Op, Operation,
    OutboxEntry, ProfileRecord, SimRecord, Store,
};

#[path = "conformance_bulk.rs"]
mod bulk;
#[path = "conformance_retention.rs"]
mod retention;

/// One check: panics on the first violation.
pub type Check = fn(&dyn Store);

/// Every check, by name, so a failure names the one that failed.
pub const CHECKS: &[(&str, Check)] = &[
    ("sim_compare_and_swap", sim_compare_and_swap),
    ("batch_all_or_nothing", batch_all_or_nothing),
    ("meta_expectations_fence", meta_expectations_fence),
    (
        "request_log_is_ordered_without_gaps",
        request_log_is_ordered_without_gaps,
    ),
    ("profile_members_follow_sims", profile_members_follow_sims),
    (
        "scan_is_in_key_order_with_prefix",
        scan_is_in_key_order_with_prefix,
    ),
    ("events_newest_first", events_newest_first),
    (
        "expired_events_are_found_and_deleted",
        expired_events_are_found_and_deleted,
    ),
    ("charges_by_month", charges_by_month),
    (
        "settled_requests_are_deleted_but_never_the_newest",
        retention::settled_requests_are_deleted_but_never_the_newest,
    ),
    (
        "charges_are_deleted_by_month",
        retention::charges_are_deleted_by_month,
    ),
    (
        "bulk_batch_reads_like_single_writes",
        bulk::bulk_batch_reads_like_single_writes,
    ),
    (
        "bulk_created_sims_compare_and_swap_like_others",
        bulk::bulk_created_sims_compare_and_swap_like_others,
    ),
    ("outbox_put_and_delete", outbox_put_and_delete),
    ("last_seen_is_visible_at_once", last_seen_is_visible_at_once),
    (
        "read_back_and_applied_follow_commits",
        read_back_and_applied_follow_commits,
    ),
];

/// Runs every check, each on a store from `fresh`.
pub fn run_all(fresh: &dyn Fn() -> Box<dyn Store>) {
    for (name, check) in CHECKS {
        let store = fresh();
        eprintln!("store conformance: {name}");
        check(&*store);
    }
}

fn imsi(n: u64) -> Imsi {
    let s = format!("00101{n:010}");
    Imsi::parse(s.as_bytes()).expect("test IMSI")
}

fn imei(n: u64) -> Imei {
    Imei::from_u64(35_000_000_000_000 + n).expect("test IMEI")
}

fn commit(store: &dyn Store, batch: Batch) -> Commit {
    wait(store.commit(batch, Durability::Synced)).expect("commit")
}

fn put(store: &dyn Store, sim: SimRecord) -> Commit {
    let mut b = Batch::new();
    b.put_sim(sim);
    commit(store, b)
}

fn get(store: &dyn Store, n: u64) -> Option<SimRecord> {
    store.sim(&imsi(n)).expect("read")
}

fn event(n: u64, at: i64, kind: EventKind) -> Event {
    Event {
        kind,
        imsi: imsi(n),
        at,
        interface: Interface::Radius,
        peer: "conformance".into(),
        imei: Some(imei(n)),
        bound: None,
        detail: Some(format!("at {at}")),
    }
}

fn sim_compare_and_swap(store: &dyn Store) {
    let mut s = SimRecord::new(imsi(1));
    s.value = Some(ImeiManagement::Lock);
    assert_eq!(put(store, s.clone()), Commit::Committed, "create");
    assert_eq!(
        put(store, s.clone()),
        Commit::Conflict,
        "create of an existing SIM"
    );
    let read = get(store, 1).expect("created SIM reads back");
    assert_eq!(read.value, Some(ImeiManagement::Lock));
    let mut bound = read.clone();
    bound.bound = Some(imei(1));
    assert_eq!(
        put(store, bound),
        Commit::Committed,
        "update from the read copy"
    );
    let mut stale = read.clone();
    stale.bound = Some(imei(2));
    assert_eq!(
        put(store, stale),
        Commit::Conflict,
        "update from a stale copy"
    );
    let now = get(store, 1).expect("SIM");
    assert_eq!(now.bound, Some(imei(1)), "the first writer's binding stays");
    let mut b = Batch::new();
    b.delete_sim(&read);
    assert_eq!(
        commit(store, b),
        Commit::Conflict,
        "delete from a stale copy"
    );
    let mut b = Batch::new();
    b.delete_sim(&now);
    assert_eq!(commit(store, b), Commit::Committed, "delete");
    assert!(get(store, 1).is_none(), "deleted");
    assert_eq!(
        put(store, SimRecord::new(imsi(1))),
        Commit::Committed,
        "re-create"
    );
}

fn batch_all_or_nothing(store: &dyn Store) {
    assert_eq!(put(store, SimRecord::new(imsi(2))), Commit::Committed);
    let stale = get(store, 2).expect("SIM");
    let mut moved = stale.clone();
    moved.msisdn = Some("491700000002".into());
    assert_eq!(put(store, moved), Commit::Committed);
    let mut b = Batch::new();
    b.put_sim(SimRecord::new(imsi(3)));
    b.push(Op::PutEvent(event(3, 10, EventKind::ImeiBound)));
    b.push(Op::PutMeta {
        key: "conformance".into(),
        value: b"x".to_vec(),
    });
    b.put_sim(stale);
    assert_eq!(commit(store, b), Commit::Conflict);
    assert!(
        get(store, 3).is_none(),
        "nothing of a lost batch is written"
    );
    assert!(store.events(&imsi(3), 10).expect("events").is_empty());
    assert_eq!(store.meta("conformance").expect("meta"), None);
}

fn meta_expectations_fence(store: &dyn Store) {
    let expect = |value: Option<&[u8]>, write: &[u8]| {
        let mut b = Batch::new();
        b.push(Op::ExpectMeta {
            key: "cursor".into(),
            value: value.map(<[u8]>::to_vec),
        });
        b.push(Op::PutMeta {
            key: "cursor".into(),
            value: write.to_vec(),
        });
        commit(store, b)
    };
    assert_eq!(expect(None, b"1"), Commit::Committed, "absent as expected");
    assert_eq!(expect(None, b"2"), Commit::Conflict, "no longer absent");
    assert_eq!(expect(Some(b"2"), b"3"), Commit::Conflict, "wrong value");
    assert_eq!(expect(Some(b"1"), b"2"), Commit::Committed, "right value");
    assert_eq!(
        store.meta("cursor").expect("meta").as_deref(),
        Some(&b"2"[..])
    );
}

fn request_log_is_ordered_without_gaps(store: &dyn Store) {
    assert_eq!(store.last_request_seq(), 0);
    let mut seqs = Vec::new();
    for n in 0..5 {
        let op = Operation::Reset { imsi: imsi(n) };
        let rec = wait(store.append_request(op, 1_000 + n as i64)).expect("append");
        seqs.push(rec.seq);
    }
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert_eq!(store.last_request_seq(), 5);
    let after: Vec<u64> = store
        .requests_after(2, 10)
        .expect("requests")
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(after, vec![3, 4, 5]);
    let r = store.request(4).expect("request").expect("request 4");
    assert_eq!(r.submitted_at, 1_003);
    assert!(store.request(6).expect("request").is_none());
}

fn profile_members_follow_sims(store: &dyn Store) {
    let mut b = Batch::new();
    for name in ["fleet", "meters"] {
        b.push(Op::PutProfile(ProfileRecord {
            name: name.into(),
            value: ImeiManagement::Lock,
            lock_fee: None,
            rev: 1,
        }));
    }
    for n in 10..14 {
        let mut s = SimRecord::new(imsi(n));
        s.profile = Some("fleet".into());
        b.put_sim(s);
    }
    assert_eq!(commit(store, b), Commit::Committed);
    assert_eq!(store.profile_member_count("fleet").expect("count"), 4);
    let mut moved = get(store, 11).expect("SIM");
    moved.profile = Some("meters".into());
    assert_eq!(put(store, moved), Commit::Committed);
    let fleet = store.sims_of_profile("fleet", None, 10).expect("members");
    assert_eq!(fleet, vec![imsi(10), imsi(12), imsi(13)]);
    let page = store
        .sims_of_profile("fleet", Some(&imsi(10)), 1)
        .expect("members");
    assert_eq!(page, vec![imsi(12)]);
    assert_eq!(store.profile_member_count("meters").expect("count"), 1);
    let names: Vec<String> = store
        .profiles(None, 10)
        .expect("profiles")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["fleet", "meters"]);
    assert_eq!(
        store.profile("meters").expect("profile").map(|p| p.value),
        Some(ImeiManagement::Lock)
    );
}

fn scan_is_in_key_order_with_prefix(store: &dyn Store) {
    let mut b = Batch::new();
    for n in [7, 3, 25, 21, 1] {
        b.put_sim(SimRecord::new(imsi(n)));
    }
    assert_eq!(commit(store, b), Commit::Committed);
    let all: Vec<Imsi> = store
        .scan_sims("", None, 10)
        .expect("scan")
        .iter()
        .map(|s| s.imsi)
        .collect();
    assert_eq!(all, vec![imsi(1), imsi(3), imsi(7), imsi(21), imsi(25)]);
    let twenties: Vec<Imsi> = store
        .scan_sims("00101000000002", None, 10)
        .expect("scan")
        .iter()
        .map(|s| s.imsi)
        .collect();
    assert_eq!(twenties, vec![imsi(21), imsi(25)]);
    let after: Vec<Imsi> = store
        .scan_sims("", Some(&imsi(3)), 2)
        .expect("scan")
        .iter()
        .map(|s| s.imsi)
        .collect();
    assert_eq!(after, vec![imsi(7), imsi(21)]);
}

fn events_newest_first(store: &dyn Store) {
    for (at, kind) in [
        (100, EventKind::ImeiBound),
        (300, EventKind::ImeiMismatch),
        (200, EventKind::ImeiReset),
    ] {
        let mut b = Batch::new();
        b.push(Op::PutEvent(event(5, at, kind)));
        assert_eq!(commit(store, b), Commit::Committed);
    }
    let got: Vec<i64> = store
        .events(&imsi(5), 10)
        .expect("events")
        .iter()
        .map(|e| e.at)
        .collect();
    assert_eq!(got, vec![300, 200, 100]);
    assert_eq!(store.events(&imsi(5), 1).expect("events").len(), 1);
    assert!(store.events(&imsi(6), 10).expect("events").is_empty());
}

fn expired_events_are_found_and_deleted(store: &dyn Store) {
    let mut b = Batch::new();
    for n in [7, 8] {
        for at in [1_000, 2_000, 3_000] {
            b.push(Op::PutEvent(event(n, at, EventKind::ImeiBound)));
        }
    }
    assert_eq!(commit(store, b), Commit::Committed);
    // Scanned two at a time: every page goes on from the last event scanned.
    let mut expired = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let (found, next) = store.expired_events(2_500, after, 2).expect("scan");
        expired.extend(found);
        pages += 1;
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
        assert!(pages < 10, "the scan does not end");
    }
    assert_eq!(pages, 3, "six events, two per page");
    let got: Vec<(Imsi, i64)> = expired.iter().map(|e| (e.imsi, e.at)).collect();
    assert_eq!(
        got,
        vec![
            (imsi(7), 1_000),
            (imsi(7), 2_000),
            (imsi(8), 1_000),
            (imsi(8), 2_000)
        ]
    );
    let mut b = Batch::new();
    for id in expired {
        b.push(Op::DeleteEvent(id));
    }
    assert_eq!(commit(store, b), Commit::Committed);
    for n in [7, 8] {
        let left: Vec<i64> = store
            .events(&imsi(n), 10)
            .expect("events")
            .iter()
            .map(|e| e.at)
            .collect();
        assert_eq!(left, vec![3_000], "only the young event of SIM {n} is left");
    }
    let (none, _) = store.expired_events(2_500, None, 100).expect("scan");
    assert!(none.is_empty(), "nothing expired left: {none:?}");
}

fn charges_by_month(store: &dyn Store) {
    let mut b = Batch::new();
    for (n, month) in [(9, "2026-11"), (4, "2026-11"), (4, "2026-12")] {
        b.push(Op::PutCharge(Charge {
            imsi: imsi(n),
            month: month.into(),
            amount: "1.00".into(),
            currency: "EUR".into(),
            first_lock_at: 0,
        }));
    }
    assert_eq!(commit(store, b), Commit::Committed);
    let nov: Vec<Imsi> = store
        .charges("2026-11")
        .expect("charges")
        .iter()
        .map(|c| c.imsi)
        .collect();
    assert_eq!(nov, vec![imsi(4), imsi(9)]);
    // Pages: one charge at a time, each after the last, none past the month.
    let page = |after: Option<Imsi>, limit| -> Vec<Imsi> {
        store
            .charges_page("2026-11", after.as_ref(), limit)
            .expect("charges page")
            .iter()
            .map(|c| c.imsi)
            .collect()
    };
    assert_eq!(page(None, 1), vec![imsi(4)]);
    assert_eq!(page(Some(imsi(4)), 1), vec![imsi(9)]);
    assert_eq!(page(Some(imsi(9)), 1), Vec::<Imsi>::new());
    assert_eq!(page(None, 10), nov);
    assert!(store
        .charges_page("2026-10", None, 10)
        .expect("charges page")
        .is_empty());
    assert!(store.charge("2026-12", &imsi(4)).expect("charge").is_some());
    assert!(store.charge("2026-12", &imsi(9)).expect("charge").is_none());
}

/// A bulk write (an import's chunk: many SIMs, their events of one time, their charges) reads
/// back record by record as single writes do, and its events expire by time (etcd puts such
/// events and charges in bundles).
fn outbox_put_and_delete(store: &dyn Store) {
    let ids: Vec<u64> = (0..3).map(|_| store.next_outbox_id()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing: {ids:?}");
    let mut b = Batch::new();
    for (i, id) in ids.iter().enumerate() {
        b.push(Op::PutOutbox {
            id: *id,
            entry: OutboxEntry {
                event: event(i as u64, i as i64, EventKind::ImeiMismatch),
                attempts: 0,
                next_attempt_at: 0,
                done: Vec::new(),
            },
        });
    }
    assert_eq!(commit(store, b), Commit::Committed);
    let mut b = Batch::new();
    b.push(Op::DeleteOutbox { id: ids[1] });
    assert_eq!(commit(store, b), Commit::Committed);
    let left: Vec<u64> = store
        .outbox(10)
        .expect("outbox")
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(left, vec![ids[0], ids[2]]);
}

fn last_seen_is_visible_at_once(store: &dyn Store) {
    assert_eq!(put(store, SimRecord::new(imsi(8))), Commit::Committed);
    store.note_seen(&imsi(8), imei(8), 5_000).expect("note");
    let s = get(store, 8).expect("SIM");
    assert_eq!((s.last_seen, s.last_seen_at), (Some(imei(8)), Some(5_000)));
    // Seen data is not a change of the SIM: a copy read before it still compares equal.
    let mut bound = SimRecord::new(imsi(8));
    bound.rev = s.rev;
    bound.bound = Some(imei(8));
    assert_eq!(put(store, bound), Commit::Committed);
    store.flush().expect("flush");
    let s = get(store, 8).expect("SIM");
    assert_eq!(
        s.last_seen,
        Some(imei(8)),
        "a write never moves last-seen backwards"
    );
}

fn read_back_and_applied_follow_commits(store: &dyn Store) {
    let before = store.applied();
    assert_eq!(put(store, SimRecord::new(imsi(30))), Commit::Committed);
    assert!(store.applied() > before, "applied moves with a commit");
    let local = get(store, 30).expect("SIM");
    let truth = wait(store.read_back(imsi(30)))
        .expect("read back")
        .expect("SIM in the source of truth");
    assert_eq!(
        truth.rev, local.rev,
        "read back sees the committed revision"
    );
    assert!(wait(store.read_back(imsi(31)))
        .expect("read back")
        .is_none());
    assert!(store.serving(), "a healthy store serves");
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_store_conforms() {
        super::run_all(&|| Box::new(super::super::memory::MemStore::new()));
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn embedded_store_conforms() {
        let dirs = std::sync::Mutex::new(Vec::new());
        super::run_all(&|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = super::super::rocks::RocksStore::open(dir.path(), &Default::default())
                .expect("open");
            dirs.lock().expect("dirs").push(dir);
            Box::new(store)
        });
    }
}
