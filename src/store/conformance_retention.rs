//! Checks of the deletions only retention makes: settled requests (never the newest one, from
//! which the sequence counter is rebuilt) and billing rows, whole months (the etcd store keeps
//! a bulk write's rows in a bundle, which goes whole with its month).

use super::{commit, imsi, wait};
use crate::store::{Batch, Charge, Commit, Op, Operation, RequestRecord, RequestStatus, Store};

fn settle(store: &dyn Store, rec: &RequestRecord, at: i64) {
    let mut b = Batch::new();
    b.push(Op::PutRequest(RequestRecord {
        status: RequestStatus::Processed,
        processed_at: Some(at),
        ..rec.clone()
    }));
    assert_eq!(commit(store, b), Commit::Committed);
}

fn seqs(store: &dyn Store) -> Vec<u64> {
    store
        .requests_after(0, 100)
        .expect("requests")
        .iter()
        .map(|r| r.seq)
        .collect()
}

pub(super) fn settled_requests_are_deleted_but_never_the_newest(store: &dyn Store) {
    let mut recs = Vec::new();
    for n in 0..4 {
        let op = Operation::Reset { imsi: imsi(n) };
        recs.push(wait(store.append_request(op, 1_000 + n as i64)).expect("append"));
    }
    for r in &recs {
        settle(store, r, 2_000);
    }
    // 1 and 2 go; 4 is the newest and stays, in the same batch.
    let mut b = Batch::new();
    for seq in [1, 2, 4] {
        b.push(Op::DeleteRequest(seq));
    }
    assert_eq!(commit(store, b), Commit::Committed);
    assert_eq!(seqs(store), vec![3, 4], "1 and 2 deleted, the newest kept");
    assert!(store.request(1).expect("request").is_none());
    assert!(store.request(2).expect("request").is_none());
    assert_eq!(store.last_request_seq(), 4);
    // The log goes on after the newest, whatever was deleted before it.
    let next =
        wait(store.append_request(Operation::Reset { imsi: imsi(9) }, 3_000)).expect("append");
    assert_eq!(next.seq, 5);
    assert_eq!(store.requests_after(2, 10).expect("requests").len(), 3);
    // Deleting an unknown or already deleted request changes nothing.
    let mut b = Batch::new();
    b.push(Op::DeleteRequest(1));
    assert_eq!(commit(store, b), Commit::Committed);
    assert_eq!(seqs(store), vec![3, 4, 5]);
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

pub(super) fn charges_are_deleted_by_month(store: &dyn Store) {
    assert_eq!(store.oldest_charge_month().expect("oldest"), None);
    // A bulk write of one month (a roll-over: etcd bundles it), single rows of that month
    // and of two later ones.
    let mut b = Batch::new();
    for n in 200..220 {
        b.push(Op::PutCharge(charge(n, "2026-10")));
    }
    assert_eq!(commit(store, b), Commit::Committed);
    for (n, month) in [(300, "2026-10"), (301, "2026-11"), (302, "2026-12")] {
        let mut b = Batch::new();
        b.push(Op::PutCharge(charge(n, month)));
        assert_eq!(commit(store, b), Commit::Committed);
    }
    assert_eq!(
        store.oldest_charge_month().expect("oldest").as_deref(),
        Some("2026-10")
    );
    // As retention deletes: the first page of what is left, until the month is empty.
    let mut rounds = 0;
    loop {
        let page = store.charges_page("2026-10", None, 4).expect("page");
        if page.is_empty() {
            break;
        }
        let mut b = Batch::new();
        for c in page {
            b.push(Op::DeleteCharge {
                month: c.month,
                imsi: c.imsi,
            });
        }
        assert_eq!(commit(store, b), Commit::Committed);
        rounds += 1;
        assert!(rounds <= 6, "21 rows, at least 4 a round");
    }
    assert!(store.charges("2026-10").expect("charges").is_empty());
    assert!(store
        .charge("2026-10", &imsi(300))
        .expect("charge")
        .is_none());
    assert_eq!(
        store.oldest_charge_month().expect("oldest").as_deref(),
        Some("2026-11")
    );
    assert!(store
        .charge("2026-11", &imsi(301))
        .expect("charge")
        .is_some());
    assert_eq!(store.charges("2026-12").expect("charges").len(), 1);
}
