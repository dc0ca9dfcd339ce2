//! EIR tests: the mapping table of the module doc, the policies, and one lock across the EIR
//! and a session interface.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::*;
use crate::engine::{Clock, EnginePolicy};
use crate::store::memory::MemStore;
use crate::store::{commit_blocking, Batch, Commit, Durability, EventKind, ImeiManagement};
use crate::store::{Millis, SimRecord, Store};

const SIM: &str = "001010000000001";
/// Two SVNs of one device (same TAC+SNR), and another device.
const A_SV1: &str = "3520990017614801";
const A_SV2: &str = "3520990017614823";
const B: &str = "490154203237518";

const WHITE: EirAnswer = EirAnswer::Status(EquipmentStatus::Whitelisted);
const BLACK: EirAnswer = EirAnswer::Status(EquipmentStatus::Blacklisted);
const GREY: EirAnswer = EirAnswer::Status(EquipmentStatus::Greylisted);

struct TickClock(AtomicI64);

impl Clock for TickClock {
    fn now_ms(&self) -> Millis {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

fn eir_with(policy: EirPolicy) -> (Eir, Arc<Engine>) {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let engine = Arc::new(Engine::new(
        store,
        EnginePolicy {
            unknown_sim_eir: policy.unknown_sim.as_unknown_sim_policy(),
            ..EnginePolicy::default()
        },
        Arc::new(TickClock(AtomicI64::new(1_000))),
    ));
    (Eir::new(engine.clone(), policy), engine)
}

fn put_sim(engine: &Engine, value: ImeiManagement) {
    let store = engine.store();
    let imsi = SIM.parse().unwrap();
    let mut rec = store
        .sim(&imsi)
        .unwrap()
        .unwrap_or_else(|| SimRecord::new(imsi));
    rec.value = Some(value);
    let mut b = Batch::new();
    b.put_sim(rec);
    assert_eq!(
        commit_blocking(&**store, b, Durability::Synced).unwrap(),
        Commit::Committed
    );
}

fn req(interface: Interface, imsi: Option<&str>, imei: &str) -> EirRequest {
    EirRequest {
        interface,
        peer: "mme.test".into(),
        session_id: "eir;1".into(),
        imsi: imsi.map(|s| s.parse().unwrap()),
        imei: PresentedImei::from_wire(imei.as_bytes()),
        msisdn: None,
    }
}

fn s13(imei: &str) -> EirRequest {
    req(Interface::S13, Some(SIM), imei)
}

fn bound(engine: &Engine) -> Option<String> {
    let sim = engine.store().sim(&SIM.parse().unwrap()).unwrap().unwrap();
    sim.bound.map(|i| i.to_string())
}

#[test]
fn lock_binds_the_first_device_and_blacklists_another() {
    let (eir, engine) = eir_with(EirPolicy::default());
    put_sim(&engine, ImeiManagement::Lock);
    assert_eq!(eir.check(&s13(A_SV1)).unwrap(), WHITE);
    assert_eq!(bound(&engine).as_deref(), Some("35209900176148"));
    // The same device with another software version: the lock keys on TAC+SNR.
    assert_eq!(eir.check(&s13(A_SV2)).unwrap(), WHITE);
    assert_eq!(eir.check(&s13(B)).unwrap(), BLACK);
    assert_eq!(bound(&engine).as_deref(), Some("35209900176148"));
    let events = engine.store().events(&SIM.parse().unwrap(), 10).unwrap();
    let mismatch = events
        .iter()
        .find(|e| e.kind == EventKind::ImeiMismatch)
        .expect("a mismatch event");
    assert_eq!(mismatch.interface, Interface::S13);
}

#[test]
fn disabled_whitelists_anything_and_binds_nothing() {
    let (eir, engine) = eir_with(EirPolicy::default());
    put_sim(&engine, ImeiManagement::Disabled);
    assert_eq!(eir.check(&s13(B)).unwrap(), WHITE);
    assert_eq!(bound(&engine), None);
}

#[test]
fn pairing_rebinds_and_lock_then_holds_the_new_device() {
    let (eir, engine) = eir_with(EirPolicy::default());
    put_sim(&engine, ImeiManagement::Lock);
    eir.check(&s13(A_SV1)).unwrap();
    put_sim(&engine, ImeiManagement::Pairing);
    assert_eq!(
        eir.check(&req(Interface::N5gEir, Some(SIM), B)).unwrap(),
        WHITE
    );
    assert_eq!(bound(&engine).as_deref(), Some("49015420323751"));
    put_sim(&engine, ImeiManagement::Lock);
    assert_eq!(eir.check(&s13(A_SV1)).unwrap(), BLACK);
    assert_eq!(eir.check(&s13(B)).unwrap(), WHITE);
}

#[test]
fn one_lock_for_the_eir_and_the_sessions() {
    let (eir, engine) = eir_with(EirPolicy::default());
    put_sim(&engine, ImeiManagement::Lock);
    assert_eq!(eir.check(&s13(B)).unwrap(), WHITE);
    // A RADIUS session from another device is rejected by the binding S13 made.
    let ctx = AuthContext {
        interface: Interface::Radius,
        peer: "ggsn".into(),
        session_id: "r1".into(),
        phase: Phase::Start,
        imsi: SIM.parse().unwrap(),
        msisdn: None,
        imei: PresentedImei::from_wire(A_SV1.as_bytes()),
        apn: None,
        rat_type: None,
    };
    assert_eq!(engine.decide(&ctx).unwrap().reason, Reason::Mismatch);
}

#[test]
fn policies_answer_where_the_lock_cannot_judge() {
    for answer in [
        PolicyAnswer::Whitelisted,
        PolicyAnswer::Greylisted,
        PolicyAnswer::Blacklisted,
        PolicyAnswer::Unknown,
    ] {
        let all = EirPolicy {
            unknown_sim: answer,
            missing_imsi: answer,
            malformed_imei: answer,
        };
        let (eir, engine) = eir_with(all);
        put_sim(&engine, ImeiManagement::Lock);
        let want = answer.answer();
        let unknown = req(Interface::S13, Some("999990000000009"), A_SV1);
        assert_eq!(eir.check(&unknown).unwrap(), want, "unknown SIM {answer:?}");
        let no_imsi = req(Interface::N5gEir, None, A_SV1);
        assert_eq!(eir.check(&no_imsi).unwrap(), want, "no IMSI {answer:?}");
        let bad = s13("35209900176X48");
        assert_eq!(eir.check(&bad).unwrap(), want, "malformed {answer:?}");
        // None of them bound anything.
        assert_eq!(bound(&engine), None, "{answer:?}");
    }
}

#[test]
fn defaults_whitelist_unknown_and_missing_and_greylist_malformed() {
    let (eir, engine) = eir_with(EirPolicy::default());
    put_sim(&engine, ImeiManagement::Lock);
    let unknown = req(Interface::S13, Some("999990000000009"), A_SV1);
    assert_eq!(eir.check(&unknown).unwrap(), WHITE);
    assert_eq!(eir.check(&req(Interface::S13, None, A_SV1)).unwrap(), WHITE);
    assert_eq!(eir.check(&s13("1234")).unwrap(), GREY);
}

#[test]
fn in_memory_answers_a_match_and_defers_a_bind() {
    let (eir, engine) = eir_with(EirPolicy::default());
    put_sim(&engine, ImeiManagement::Lock);
    // A bind needs the store: nothing decided, nothing bound.
    assert!(eir.check_in_memory(&s13(A_SV1)).is_none());
    assert_eq!(bound(&engine), None);
    assert_eq!(eir.check(&s13(A_SV1)).unwrap(), WHITE);
    assert_eq!(bound(&engine).as_deref(), Some("35209900176148"));
    // The policy answers need no store at all.
    let r = eir.check_in_memory(&req(Interface::S13, None, B));
    assert_eq!(r.map(Result::unwrap), Some(WHITE));
}

#[test]
fn equipment_status_codes_are_the_standards() {
    assert_eq!(EquipmentStatus::Whitelisted.code(), 0);
    assert_eq!(EquipmentStatus::Blacklisted.code(), 1);
    assert_eq!(EquipmentStatus::Greylisted.code(), 2);
    assert_eq!(EquipmentStatus::Blacklisted.as_str(), "BLACKLISTED");
}
