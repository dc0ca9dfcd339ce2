//! Provisioning and billing on the in-memory store with an injected clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::*;
use crate::context::{AuthContext, Interface, Phase, PresentedImei, Reason};
use crate::engine::{Engine, EnginePolicy};
use crate::store::memory::MemStore;
use crate::store::{Charge, EventKind, ImeiManagement, ImportRow, Millis};

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

struct World {
    clock: Arc<TestClock>,
    store: Arc<dyn Store>,
    prov: Provisioner,
    engine: Engine,
}

const SIM: &str = "001010000000001";
const A: &str = "35209900176148";
const B: &str = "49015420323751";

fn world(start: Millis) -> World {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let clock = Arc::new(TestClock(AtomicI64::new(start)));
    let prov = Provisioner::new(
        store.clone(),
        clock.clone(),
        BillingSettings {
            lock_fee: "1.00".into(),
            currency: "EUR".into(),
        },
    )
    .unwrap();
    let engine = Engine::new(store.clone(), EnginePolicy::default(), clock.clone());
    World {
        clock,
        store,
        prov,
        engine,
    }
}

impl World {
    fn apply(&self, op: Operation) -> RequestRecord {
        let rec = crate::store::blocking::wait(self.prov.submit(op)).unwrap();
        self.prov.process_pending().unwrap();
        self.store.request(rec.seq).unwrap().unwrap()
    }

    fn set_value(&self, sim: &str, v: Option<ImeiManagement>) -> RequestRecord {
        self.apply(Operation::SetSimValue {
            imsi: sim.parse().unwrap(),
            value: v,
        })
    }

    fn create(&self, sim: &str, profile: Option<&str>, v: Option<ImeiManagement>) {
        let r = self.apply(Operation::UpsertSim {
            imsi: sim.parse().unwrap(),
            msisdn: None,
            profile: Some(profile.map(str::to_owned)),
            value: Some(v),
        });
        assert_eq!(r.status, RequestStatus::Processed, "{r:?}");
    }

    fn session(&self, sim: &str, imei: &str) -> Reason {
        let ctx = AuthContext {
            interface: Interface::Radius,
            peer: "t".into(),
            session_id: "s".into(),
            phase: Phase::Start,
            imsi: sim.parse().unwrap(),
            msisdn: None,
            imei: PresentedImei::from_wire(imei.as_bytes()),
            apn: None,
            rat_type: None,
        };
        self.engine.decide(&ctx).unwrap().reason
    }

    fn advance(&self, ms: i64) {
        self.clock.0.fetch_add(ms, Ordering::SeqCst);
    }

    fn charges(&self, month: &str) -> Vec<Charge> {
        self.store.charges(month).unwrap()
    }
}

/// 2026-03-10T12:00:00Z
const MAR_10: Millis = 1_773_144_000_000;
const DAY: i64 = 86_400_000;

#[test]
fn months() {
    assert_eq!(month_of(MAR_10), "2026-03");
    assert_eq!(month_start(2026, 3), 1_772_323_200_000);
    assert_eq!(month_of(month_start(2026, 4) - 1), "2026-03");
    assert_eq!(month_of(month_start(2026, 4)), "2026-04");
    assert_eq!(parse_month("2026-12"), Some((2026, 12)));
    for bad in ["2026-13", "2026-00", "26-01", "2026-1", "abcd-ef", ""] {
        assert_eq!(parse_month(bad), None, "{bad}");
    }
}

#[test]
fn requests_apply_in_order_and_only_when_processed() {
    let w = world(MAR_10);
    w.create(SIM, None, Some(ImeiManagement::Lock));
    // Submitted but not processed: sessions do not see it.
    let rec = crate::store::blocking::wait(w.prov.submit(Operation::SetSimValue {
        imsi: SIM.parse().unwrap(),
        value: Some(ImeiManagement::Disabled),
    }))
    .unwrap();
    assert_eq!(rec.status, RequestStatus::Pending);
    assert_eq!(w.session(SIM, A), Reason::Bound);
    assert_eq!(w.session(SIM, B), Reason::Mismatch);
    w.prov.process_pending().unwrap();
    assert_eq!(w.session(SIM, B), Reason::Disabled);
    // Reported processed once in effect everywhere (on one node: at once).
    assert_eq!(w.prov.processed_seq(), 0);
    crate::store::blocking::wait(w.prov.publish_processed());
    assert_eq!(w.prov.processed_seq(), rec.seq);
}

#[test]
fn failures_are_reported_and_do_not_block_the_log() {
    let w = world(MAR_10);
    let r = w.set_value("001019999999999", Some(ImeiManagement::Lock));
    assert_eq!(r.status, RequestStatus::Failed);
    assert!(r.error.unwrap().contains("unknown SIM"));
    let r = w.apply(Operation::UpsertSim {
        imsi: SIM.parse().unwrap(),
        msisdn: None,
        profile: Some(Some("nope".into())),
        value: None,
    });
    assert_eq!(r.status, RequestStatus::Failed);
    w.create(SIM, None, None);
}

#[test]
fn seed_pairing_procedure_and_reset() {
    let w = world(MAR_10);
    w.create(SIM, None, Some(ImeiManagement::Lock));
    assert_eq!(w.session(SIM, A), Reason::Bound);
    w.set_value(SIM, Some(ImeiManagement::Pairing));
    assert_eq!(w.session(SIM, B), Reason::Paired);
    w.set_value(SIM, Some(ImeiManagement::Lock));
    assert_eq!(w.session(SIM, A), Reason::Mismatch);
    assert_eq!(w.session(SIM, B), Reason::Match);
    let r = w.apply(Operation::Reset {
        imsi: SIM.parse().unwrap(),
    });
    assert_eq!(r.status, RequestStatus::Processed);
    assert_eq!(w.session(SIM, A), Reason::Bound, "binds afresh after reset");
    let kinds: Vec<_> = w
        .store
        .events(&SIM.parse().unwrap(), 100)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&EventKind::ImeiReset));
    assert!(kinds.contains(&EventKind::ValueChanged));
}

#[test]
fn profile_change_applies_to_its_sims_and_sim_value_overrides() {
    let w = world(MAR_10);
    w.apply(Operation::UpsertProfile {
        name: "fleet".into(),
        value: ImeiManagement::Disabled,
        lock_fee: Some("2.50".into()),
    });
    let sims: Vec<String> = (0..5).map(|i| format!("00101000000010{i}")).collect();
    for s in &sims {
        w.create(s, Some("fleet"), None);
    }
    w.create(SIM, Some("fleet"), Some(ImeiManagement::Disabled));
    w.apply(Operation::UpsertProfile {
        name: "fleet".into(),
        value: ImeiManagement::Lock,
        lock_fee: Some("2.50".into()),
    });
    for s in &sims {
        assert_eq!(w.session(s, A), Reason::Bound);
        assert_eq!(w.session(s, B), Reason::Mismatch);
    }
    assert_eq!(
        w.session(SIM, B),
        Reason::Disabled,
        "SIM value beats profile"
    );
    let charges = w.charges("2026-03");
    assert_eq!(charges.len(), 5, "{charges:?}");
    assert!(charges.iter().all(|c| c.amount == "2.50"), "profile fee");
}

#[test]
fn lock_is_charged_once_a_month_and_again_next_month() {
    let w = world(MAR_10);
    w.create(SIM, None, Some(ImeiManagement::Pairing));
    let other = "001010000000002";
    w.create(other, None, Some(ImeiManagement::Disabled));
    assert!(
        w.charges("2026-03").is_empty(),
        "pairing and disabled cost nothing"
    );
    w.set_value(SIM, Some(ImeiManagement::Lock));
    let first = MAR_10;
    w.advance(DAY);
    w.set_value(SIM, Some(ImeiManagement::Pairing));
    w.advance(DAY);
    w.set_value(SIM, Some(ImeiManagement::Lock));
    let march = w.charges("2026-03");
    assert_eq!(march.len(), 1, "{march:?}");
    assert_eq!(march[0].first_lock_at, first);
    assert_eq!(
        (march[0].amount.as_str(), march[0].currency.as_str()),
        ("1.00", "EUR")
    );
    // Still lock when April starts: carried over, charged again, first moment = month start.
    w.clock
        .0
        .store(month_start(2026, 4) + DAY, Ordering::SeqCst);
    w.prov.process_pending().unwrap();
    let april = w.charges("2026-04");
    assert_eq!(april.len(), 1);
    assert_eq!(april[0].first_lock_at, month_start(2026, 4));
    // Switched off during April, never on in May (after downtime across two boundaries).
    w.set_value(SIM, Some(ImeiManagement::Disabled));
    w.clock
        .0
        .store(month_start(2026, 6) + DAY, Ordering::SeqCst);
    w.prov.process_pending().unwrap();
    assert!(w.charges("2026-05").is_empty());
    assert!(w.charges("2026-06").is_empty());
}

#[test]
fn import_applies_every_row_in_one_request() {
    let w = world(MAR_10);
    let rows: Vec<ImportRow> = (0..2500)
        .map(|i| ImportRow {
            imsi: format!("00101{i:010}").parse().unwrap(),
            msisdn: Some(format!("49170{i:07}")),
            profile: None,
            value: Some(if i % 2 == 0 {
                ImeiManagement::Lock
            } else {
                ImeiManagement::Disabled
            }),
        })
        .collect();
    let r = w.apply(Operation::Import { rows });
    assert_eq!(r.status, RequestStatus::Processed);
    assert!(
        matches!(&r.op, Operation::Import { rows } if rows.is_empty()),
        "the settled record keeps no copy of the file"
    );
    assert_eq!(w.session("001010000000000", A), Reason::Bound);
    assert_eq!(w.session("001010000000001", A), Reason::Disabled);
    assert_eq!(w.charges("2026-03").len(), 1250);
}
