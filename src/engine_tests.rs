//! Engine tests: every row of SPEC §1.2, the policies, concurrency and persistence.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Barrier};

use super::*;
use crate::context::{AuthContext, Imsi, Interface, Phase, PresentedImei};
use crate::imei::{Imei, ImeiError};
use crate::store::memory::MemStore;
#[cfg(feature = "rocksdb")]
use crate::store::rocks::{RocksOptions, RocksStore};
use crate::store::{ProfileRecord, SimRecord};

const A: &str = "35209900176148";
const B: &str = "49015420323751";

struct FixedClock(AtomicI64);

impl Clock for FixedClock {
    fn now_ms(&self) -> Millis {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

fn imei(s: &str) -> Imei {
    s.parse().unwrap()
}

fn imsi(s: &str) -> Imsi {
    s.parse().unwrap()
}

fn engine_on(store: Arc<dyn Store>, policy: EnginePolicy) -> Engine {
    Engine::new(store, policy, Arc::new(FixedClock(AtomicI64::new(1_000))))
}

fn mem_engine() -> Engine {
    engine_on(Arc::new(MemStore::new()), EnginePolicy::default())
}

fn ctx(interface: Interface, phase: Phase, sim: &str, presented: Option<&str>) -> AuthContext {
    AuthContext {
        interface,
        peer: "test-peer".into(),
        session_id: "s1".into(),
        phase,
        imsi: imsi(sim),
        msisdn: None,
        imei: match presented {
            Some(p) => PresentedImei::from_wire(p.as_bytes()),
            None => PresentedImei::None,
        },
        apn: Some("iot.apn".into()),
        rat_type: Some(6),
    }
}

fn start(sim: &str, presented: Option<&str>) -> AuthContext {
    ctx(Interface::Radius, Phase::Start, sim, presented)
}

/// Provisions a SIM directly in the store (provisioning requests come with their own module).
fn put_sim(e: &Engine, sim: &str, value: Option<ImeiManagement>, bound: Option<&str>) {
    let store = e.store();
    let mut rec = store
        .sim(&imsi(sim))
        .unwrap()
        .unwrap_or_else(|| SimRecord::new(imsi(sim)));
    rec.value = value;
    rec.bound = bound.map(imei);
    let mut b = Batch::new();
    b.put_sim(rec);
    assert_eq!(
        crate::store::commit_blocking(&**store, b, Durability::Synced).unwrap(),
        crate::store::Commit::Committed
    );
}

fn set_profile(e: &Engine, sim: &str, profile: &str, value: ImeiManagement) {
    let store = e.store();
    let mut b = Batch::new();
    b.push(Op::PutProfile(ProfileRecord {
        name: profile.into(),
        value,
        lock_fee: None,
        rev: 1,
    }));
    let mut rec = store
        .sim(&imsi(sim))
        .unwrap()
        .unwrap_or_else(|| SimRecord::new(imsi(sim)));
    rec.profile = Some(profile.into());
    b.put_sim(rec);
    assert_eq!(
        crate::store::commit_blocking(&**store, b, Durability::Synced).unwrap(),
        crate::store::Commit::Committed
    );
}

fn bound(e: &Engine, sim: &str) -> Option<Imei> {
    e.store().sim(&imsi(sim)).unwrap().unwrap().bound
}

fn events(e: &Engine, sim: &str) -> Vec<EventKind> {
    e.store()
        .events(&imsi(sim), 100)
        .unwrap()
        .into_iter()
        .map(|ev| ev.kind)
        .collect()
}

const SIM: &str = "001010000000001";

#[test]
fn judge_covers_every_row_of_the_table() {
    use ImeiManagement::*;
    use MissingImeiPolicy as M;
    let (a, b) = (Some(imei(A)), Some(imei(B)));
    let rows = [
        // disabled: any bound, any presented → accept, no state change
        (Disabled, None, a, M::Reject, Reason::Disabled, None, None),
        (Disabled, b, a, M::Reject, Reason::Disabled, None, None),
        (Disabled, b, None, M::Reject, Reason::Disabled, None, None),
        // pairing + P → bound := P, event only if it changed
        (
            Pairing,
            None,
            a,
            M::Reject,
            Reason::Paired,
            a,
            Some(EventKind::ImeiPaired),
        ),
        (
            Pairing,
            b,
            a,
            M::Reject,
            Reason::Paired,
            a,
            Some(EventKind::ImeiPaired),
        ),
        (Pairing, a, a, M::Reject, Reason::Paired, None, None),
        // pairing + none → accept
        (
            Pairing,
            b,
            None,
            M::Reject,
            Reason::PairingNoImei,
            None,
            None,
        ),
        // lock, none bound, P → bind
        (
            Lock,
            None,
            a,
            M::Reject,
            Reason::Bound,
            a,
            Some(EventKind::ImeiBound),
        ),
        // lock, B, P = B → accept
        (Lock, a, a, M::Reject, Reason::Match, None, None),
        // lock, B, P ≠ B → reject, mismatch
        (
            Lock,
            b,
            a,
            M::Accept,
            Reason::Mismatch,
            None,
            Some(EventKind::ImeiMismatch),
        ),
        // lock, none presented → policy
        (
            Lock,
            b,
            None,
            M::Reject,
            Reason::MissingImeiRejected,
            None,
            Some(EventKind::ImeiMissing),
        ),
        (
            Lock,
            b,
            None,
            M::Accept,
            Reason::MissingImeiAccepted,
            None,
            Some(EventKind::ImeiMissing),
        ),
        (
            Lock,
            None,
            None,
            M::Reject,
            Reason::MissingImeiRejected,
            None,
            Some(EventKind::ImeiMissing),
        ),
    ];
    for (value, bnd, pres, missing, reason, bind, event) in rows {
        let j = judge(value, bnd, pres, missing);
        assert_eq!(
            j,
            Judgement {
                reason,
                bind,
                event
            },
            "{value:?} bound={bnd:?} presented={pres:?} {missing:?}"
        );
    }
}

#[test]
fn disabled_accepts_any_and_keeps_binding() {
    let e = mem_engine();
    put_sim(&e, SIM, Some(ImeiManagement::Disabled), Some(B));
    let d = e.decide(&start(SIM, Some(A))).unwrap();
    assert_eq!(d.reason, Reason::Disabled);
    assert!(d.is_accept());
    let rec = e.store().sim(&imsi(SIM)).unwrap().unwrap();
    assert_eq!(rec.bound, Some(imei(B)), "disabled keeps the bound IMEI");
    assert_eq!(rec.last_seen, Some(imei(A)), "last seen is recorded");
    assert!(events(&e, SIM).is_empty());
}

#[test]
fn lock_binds_first_then_rejects_other_and_accepts_svn_change() {
    let e = mem_engine();
    put_sim(&e, SIM, Some(ImeiManagement::Lock), None);
    let d = e.decide(&start(SIM, Some("3520990017614801"))).unwrap();
    assert_eq!(d.reason, Reason::Bound);
    assert_eq!(bound(&e, SIM), Some(imei(A)));
    // Same device, new firmware (SVN 02), and as a 15-digit IMEI: still the same key.
    for form in ["3520990017614802", "352099001761481", "352099001761481,07"] {
        let d = e.decide(&start(SIM, Some(form))).unwrap();
        assert_eq!(d.reason, Reason::Match, "{form}");
    }
    let d = e.decide(&start(SIM, Some(B))).unwrap();
    assert_eq!(d.reason, Reason::Mismatch);
    assert!(!d.is_accept());
    assert_eq!(bound(&e, SIM), Some(imei(A)));
    assert_eq!(
        events(&e, SIM),
        vec![EventKind::ImeiMismatch, EventKind::ImeiBound]
    );
}

#[test]
fn pairing_replaces_and_lock_then_holds_the_new_device() {
    let e = mem_engine();
    put_sim(&e, SIM, Some(ImeiManagement::Lock), Some(A));
    put_sim(&e, SIM, Some(ImeiManagement::Pairing), Some(A));
    assert_eq!(
        e.decide(&start(SIM, Some(B))).unwrap().reason,
        Reason::Paired
    );
    assert_eq!(bound(&e, SIM), Some(imei(B)));
    assert_eq!(
        e.decide(&start(SIM, None)).unwrap().reason,
        Reason::PairingNoImei
    );
    put_sim(&e, SIM, Some(ImeiManagement::Lock), Some(B));
    assert_eq!(
        e.decide(&start(SIM, Some(A))).unwrap().reason,
        Reason::Mismatch
    );
    assert_eq!(
        e.decide(&start(SIM, Some(B))).unwrap().reason,
        Reason::Match
    );
    assert_eq!(
        events(&e, SIM),
        vec![EventKind::ImeiMismatch, EventKind::ImeiPaired]
    );
}

#[test]
fn malformed_imei_is_treated_as_none_presented() {
    let e = mem_engine();
    put_sim(&e, SIM, Some(ImeiManagement::Lock), None);
    let mut c = start(SIM, Some("352099001761482")); // bad Luhn
    assert!(matches!(
        c.imei,
        PresentedImei::Malformed(ImeiError::CheckDigit { .. })
    ));
    assert_eq!(e.decide(&c).unwrap().reason, Reason::MissingImeiRejected);
    assert_eq!(bound(&e, SIM), None, "a malformed IMEI never binds");
    c.interface = Interface::S6b;
    assert_eq!(e.decide(&c).unwrap().reason, Reason::MissingImeiAccepted);
}

#[test]
fn missing_imei_policy_is_per_interface() {
    let policy = EnginePolicy {
        missing_imei_gx: MissingImeiPolicy::Accept,
        ..EnginePolicy::default()
    };
    let e = engine_on(Arc::new(MemStore::new()), policy);
    put_sim(&e, SIM, Some(ImeiManagement::Lock), Some(A));
    for (iface, reason) in [
        (Interface::Radius, Reason::MissingImeiRejected),
        (Interface::Gx, Reason::MissingImeiAccepted),
        (Interface::S6b, Reason::MissingImeiAccepted),
    ] {
        let d = e.decide(&ctx(iface, Phase::Start, SIM, None)).unwrap();
        assert_eq!(d.reason, reason, "{iface:?}");
    }
}

#[test]
fn unknown_sim_policy() {
    let e = mem_engine();
    let d = e.decide(&start("999990000000001", Some(A))).unwrap();
    assert_eq!(d.reason, Reason::UnknownSimRejected);
    assert!(!d.is_accept());
    e.set_policy(EnginePolicy {
        unknown_sim: UnknownSimPolicy::Accept,
        ..EnginePolicy::default()
    });
    let d = e.decide(&start("999990000000001", Some(A))).unwrap();
    assert_eq!(d.reason, Reason::UnknownSimAccepted);
    // Updates and ends are answered with success whatever the policy says.
    e.set_policy(EnginePolicy::default());
    let c = ctx(Interface::Gx, Phase::End, "999990000000001", Some(A));
    assert!(e.decide(&c).unwrap().is_accept());
}

#[test]
fn profile_value_applies_and_sim_value_overrides() {
    let e = mem_engine();
    set_profile(&e, SIM, "iot-locked", ImeiManagement::Lock);
    assert_eq!(
        e.decide(&start(SIM, Some(A))).unwrap().reason,
        Reason::Bound
    );
    assert_eq!(
        e.decide(&start(SIM, Some(B))).unwrap().reason,
        Reason::Mismatch
    );
    put_sim(&e, SIM, Some(ImeiManagement::Disabled), Some(A));
    assert_eq!(
        e.decide(&start(SIM, Some(B))).unwrap().reason,
        Reason::Disabled
    );
    // No value anywhere: disabled.
    let other = "001010000000002";
    put_sim(&e, other, None, None);
    assert_eq!(
        e.decide(&start(other, Some(B))).unwrap().reason,
        Reason::Disabled
    );
}

#[test]
fn updates_and_ends() {
    let e = mem_engine();
    put_sim(&e, SIM, Some(ImeiManagement::Lock), Some(A));
    let upd = |p: Option<&str>| ctx(Interface::Gx, Phase::Update, SIM, p);
    assert_eq!(
        e.decide(&upd(Some(A))).unwrap().reason,
        Reason::SessionContinues
    );
    assert_eq!(
        e.decide(&upd(None)).unwrap().reason,
        Reason::SessionContinues
    );
    // A different IMEI in an update on a locked SIM is judged like a start.
    assert_eq!(e.decide(&upd(Some(B))).unwrap().reason, Reason::Mismatch);
    let end = ctx(Interface::Gx, Phase::End, SIM, Some(B));
    assert_eq!(e.decide(&end).unwrap().reason, Reason::SessionContinues);
}

#[test]
fn retransmission_never_binds_twice_or_flips() {
    let e = mem_engine();
    put_sim(&e, SIM, Some(ImeiManagement::Lock), None);
    let c = start(SIM, Some(A));
    assert_eq!(e.decide(&c).unwrap().reason, Reason::Bound);
    for _ in 0..3 {
        let d = e.decide(&c).unwrap();
        assert!(d.is_accept());
        assert_eq!(d.bound, Some(imei(A)));
    }
    assert_eq!(events(&e, SIM), vec![EventKind::ImeiBound]);
}

#[test]
fn mismatch_goes_to_the_outbox_when_alerts_want_it() {
    let p = EnginePolicy {
        alert_events: [EventKind::ImeiMismatch].into(),
        ..EnginePolicy::default()
    };
    let e = engine_on(Arc::new(MemStore::new()), p);
    put_sim(&e, SIM, Some(ImeiManagement::Lock), Some(A));
    e.decide(&start(SIM, Some(A))).unwrap();
    assert!(e.store().outbox(10).unwrap().is_empty());
    e.decide(&start(SIM, Some(B))).unwrap();
    let out = e.store().outbox(10).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.event.kind, EventKind::ImeiMismatch);
    assert_eq!(out[0].1.event.imei, Some(imei(B)));
    assert_eq!(out[0].1.event.bound, Some(imei(A)));
}

/// N threads race first sessions from N devices on one unbound locked SIM.
fn race(store: Arc<dyn Store>) {
    const N: usize = 16;
    let e = Arc::new(engine_on(store, EnginePolicy::default()));
    put_sim(&e, SIM, Some(ImeiManagement::Lock), None);
    let barrier = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let e = e.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let dev = Imei::from_u64(35_209_900_000_000 + i as u64).unwrap();
                let c = start(SIM, Some(&dev.to_string()));
                barrier.wait();
                (dev, e.decide(&c).unwrap())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<_> = results
        .iter()
        .filter(|(_, d)| d.reason == Reason::Bound)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one binds: {results:?}");
    let winner = winners[0].0;
    for (dev, d) in &results {
        if *dev != winner {
            assert_eq!(
                d.reason,
                Reason::Mismatch,
                "{dev} judged against the winner"
            );
            assert_eq!(d.bound, Some(winner));
        }
    }
    assert_eq!(bound(&e, SIM), Some(winner));
    let evs = events(&e, SIM);
    assert_eq!(
        evs.iter().filter(|k| **k == EventKind::ImeiBound).count(),
        1
    );
}

#[test]
fn concurrent_first_sessions_bind_exactly_one_mem() {
    for _ in 0..20 {
        race(Arc::new(MemStore::new()));
    }
}

#[cfg(feature = "rocksdb")]
#[test]
fn concurrent_first_sessions_bind_exactly_one_rocks() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        race(Arc::new(
            RocksStore::open(dir.path(), &RocksOptions::default()).unwrap(),
        ));
    }
}

#[cfg(feature = "rocksdb")]
#[test]
fn bindings_and_state_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store: Arc<dyn Store> =
            Arc::new(RocksStore::open(dir.path(), &RocksOptions::default()).unwrap());
        let e = engine_on(store, EnginePolicy::default());
        set_profile(&e, SIM, "fleet", ImeiManagement::Lock);
        assert_eq!(
            e.decide(&start(SIM, Some(A))).unwrap().reason,
            Reason::Bound
        );
        let other = "001010000000002";
        put_sim(&e, other, Some(ImeiManagement::Disabled), None);
        e.decide(&start(other, Some(B))).unwrap();
    }
    let store: Arc<dyn Store> =
        Arc::new(RocksStore::open(dir.path(), &RocksOptions::default()).unwrap());
    // Time goes on across the restart.
    let e = Engine::new(
        store,
        EnginePolicy::default(),
        Arc::new(FixedClock(AtomicI64::new(10_000))),
    );
    assert_eq!(bound(&e, SIM), Some(imei(A)));
    assert_eq!(
        e.decide(&start(SIM, Some(B))).unwrap().reason,
        Reason::Mismatch
    );
    assert_eq!(
        e.decide(&start(SIM, Some(A))).unwrap().reason,
        Reason::Match
    );
    let other = e.store().sim(&imsi("001010000000002")).unwrap().unwrap();
    assert_eq!(other.last_seen, Some(imei(B)), "last seen flushed at close");
    assert_eq!(
        e.store().sims_of_profile("fleet", None, 10).unwrap(),
        vec![imsi(SIM)]
    );
    assert_eq!(
        events(&e, SIM),
        vec![EventKind::ImeiMismatch, EventKind::ImeiBound]
    );
}

/// `decide_in_memory` decides exactly what `decide` would when no I/O is needed, and leaves
/// (undecided, unwritten) everything that binds, records an event or needs a store read.
fn in_memory_decisions(e: &Engine, cached: bool) {
    let unknown = "001010000000009";
    assert!(
        e.decide_in_memory(&start(unknown, Some(A))).is_none(),
        "an unknown SIM is not in memory"
    );
    put_sim(e, SIM, Some(ImeiManagement::Lock), None);
    assert!(
        e.decide_in_memory(&start(SIM, Some(A))).is_none(),
        "a bind needs the store"
    );
    assert_eq!(bound(e, SIM), None, "nothing written");
    assert_eq!(
        e.decide(&start(SIM, Some(A))).unwrap().reason,
        Reason::Bound
    );
    let matched = e.decide_in_memory(&start(SIM, Some(A)));
    let mismatch = e.decide_in_memory(&start(SIM, Some(B)));
    let update = e.decide_in_memory(&ctx(Interface::Gx, Phase::Update, SIM, Some(A)));
    if cached {
        assert_eq!(matched.unwrap().unwrap().reason, Reason::Match);
        assert_eq!(update.unwrap().unwrap().reason, Reason::SessionContinues);
    } else {
        assert!(
            matched.is_none() && update.is_none(),
            "not in memory: a read"
        );
    }
    assert!(mismatch.is_none(), "a mismatch records an event");
    assert_eq!(events(e, SIM), vec![EventKind::ImeiBound]);
    put_sim(e, "001010000000010", Some(ImeiManagement::Disabled), None);
    let disabled = e.decide_in_memory(&start("001010000000010", Some(B)));
    assert_eq!(
        disabled.map(|d| d.unwrap().reason),
        cached.then_some(Reason::Disabled)
    );
}

#[test]
fn decide_in_memory_mem() {
    in_memory_decisions(&mem_engine(), true);
}

#[cfg(feature = "rocksdb")]
#[test]
fn decide_in_memory_rocks_with_and_without_sim_cache() {
    for (entries, cached) in [(64, true), (0, false)] {
        let dir = tempfile::tempdir().unwrap();
        let opts = RocksOptions {
            sim_cache_entries: entries,
            ..RocksOptions::default()
        };
        let store: Arc<dyn Store> = Arc::new(RocksStore::open(dir.path(), &opts).unwrap());
        in_memory_decisions(&engine_on(store, EnginePolicy::default()), cached);
    }
}

#[test]
fn last_seen_is_recorded_once_per_resolution_for_the_same_device() {
    let clock = Arc::new(FixedClock(AtomicI64::new(1_000)));
    let e = Engine::new(
        Arc::new(MemStore::new()),
        EnginePolicy::default(),
        clock.clone(),
    );
    put_sim(&e, SIM, Some(ImeiManagement::Disabled), None);
    let seen = |e: &Engine| {
        let s = e.store().sim(&imsi(SIM)).unwrap().unwrap();
        (s.last_seen, s.last_seen_at)
    };
    e.decide(&start(SIM, Some(A))).unwrap();
    let (imei_a, first) = seen(&e);
    assert_eq!(imei_a, Some(imei(A)));
    e.decide(&start(SIM, Some(A))).unwrap();
    assert_eq!(
        seen(&e).1,
        first,
        "same device, within the resolution: not rewritten"
    );
    e.decide(&start(SIM, Some(B))).unwrap();
    let (imei_b, at_b) = seen(&e);
    assert!(
        imei_b == Some(imei(B)) && at_b > first,
        "another device: recorded at once"
    );
    clock
        .0
        .fetch_add(LAST_SEEN_RESOLUTION_MS, Ordering::Relaxed);
    e.decide(&start(SIM, Some(B))).unwrap();
    assert!(seen(&e).1.unwrap() >= at_b.unwrap() + LAST_SEEN_RESOLUTION_MS);
}
