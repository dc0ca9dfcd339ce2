//! Tests of [`super`]: keys and values parse back to the cache changes they were made from.

use super::*;

#[test]
fn keys_parse_back_to_their_records() {
    let l = Layout::new("/imei-lockd/");
    let imsi = Imsi::parse(b"001010000000001").unwrap();
    assert_eq!(l.sim(&imsi), b"/imei-lockd/sim/001010000000001");
    let mut sim = SimRecord::new(imsi);
    sim.rev = 99;
    let v = encoding::encode(&sim);
    match l.parse(&l.sim(&imsi), Some(&v), 42).unwrap() {
        Parsed::Data(Change::PutSim(s)) => assert_eq!(s.rev, 42, "rev is the mod_revision"),
        other => panic!("{other:?}"),
    }
    match l
        .parse(&l.event(&imsi, 1_700_000_000_000, 7), None, 3)
        .unwrap()
    {
        Parsed::Data(Change::DeleteEvent { at, counter, .. }) => {
            assert_eq!((at, counter), (1_700_000_000_000, 7));
        }
        other => panic!("{other:?}"),
    }
    let imei = Imei::from_u64(35_209_900_176_148).unwrap();
    match l
        .parse(&l.seen(&imsi), Some(&encode_seen(imei, 5)), 1)
        .unwrap()
    {
        Parsed::Data(Change::Seen { imei: i, at, .. }) => assert_eq!((i, at), (imei, 5)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        l.parse(b"/other/sim/1", None, 1).unwrap(),
        Parsed::Other
    ));
    assert!(l.parse(&l.sim(&imsi), Some(b"\xff\x00"), 1).is_err());
    assert!(l
        .parse(b"/imei-lockd/event/001010000000001/zz", None, 1)
        .is_err());
}

/// Every record kind, encoded and parsed back, is the same change (a SIM's `rev` becomes
/// the key's `mod_revision`).
#[test]
fn every_record_encodes_to_the_key_it_parses_back_from() {
    use crate::context::Interface;
    use crate::store::{
        Charge, Event, EventKind, ImeiManagement, Operation, OutboxEntry, ProfileRecord,
        RequestRecord, RequestStatus,
    };
    let l = Layout::new("/p");
    let imsi = Imsi::parse(b"001010000000001").unwrap();
    let imei = Imei::from_u64(35_209_900_176_148).unwrap();
    let mut sim = SimRecord::new(imsi);
    sim.profile = Some("iot/eu".into());
    sim.value = Some(ImeiManagement::Lock);
    sim.bound = Some(imei);
    sim.bound_at = Some(1_700_000_000_000);
    sim.last_seen = Some(imei);
    sim.last_seen_at = Some(1_700_000_000_500);
    sim.rev = 3;
    let event = Event {
        kind: EventKind::ImeiMismatch,
        imsi,
        at: 1_700_000_000_123,
        interface: Interface::Radius,
        peer: "127.0.0.1".into(),
        imei: Some(imei),
        bound: None,
        detail: Some("s1".into()),
    };
    let changes = vec![
        Change::PutSim(sim.clone()),
        Change::PutProfile(ProfileRecord {
            name: "iot/eu".into(),
            value: ImeiManagement::Pairing,
            lock_fee: Some("2.50".into()),
            rev: 1,
        }),
        Change::PutEvent {
            at: event.at,
            counter: 0xdead_beef,
            event: event.clone(),
        },
        Change::PutRequest(RequestRecord {
            seq: 42,
            op: Operation::Reset { imsi },
            status: RequestStatus::Processed,
            error: None,
            submitted_at: 1,
            processed_at: Some(2),
        }),
        Change::PutCharge(Charge {
            imsi,
            month: "2026-12".into(),
            amount: "1.00".into(),
            currency: "EUR".into(),
            first_lock_at: 5,
        }),
        Change::PutOutbox {
            id: 7,
            entry: OutboxEntry {
                event,
                attempts: 2,
                next_attempt_at: 9,
                done: vec!["http://a/b".into()],
            },
        },
        Change::PutMeta {
            key: "last_sent/http://a/b/001010000000001".into(),
            value: vec![0, 1, 2],
        },
        Change::Seen { imsi, imei, at: 77 },
    ];
    for change in changes {
        let (key, value) = l.encode(&change).unwrap();
        assert!(key.starts_with(b"/p/"), "{change:?}");
        let back = match l.parse(&key, Some(&value), 3).unwrap() {
            Parsed::Data(c) => c,
            other => panic!("{change:?} parsed as {other:?}"),
        };
        assert_eq!(back, change);
    }
    assert!(l.encode(&Change::DeleteOutbox(7)).is_none());
}

/// A bundle parses into the records it holds; its deletion (with its previous value) into
/// the deletion of each event; without the previous value it is an error, not a silent
/// no-op. The range end for retention takes bundles of events up to a time, no newer.
#[test]
fn bundles_parse_into_their_records() {
    use crate::context::Interface;
    use crate::store::EventKind;
    let l = Layout::new("/p");
    let imsis: Vec<Imsi> = [b"001010000000001", b"001010000000002"]
        .iter()
        .map(|i| Imsi::parse(*i).unwrap())
        .collect();
    let events: Vec<(u32, Event)> = imsis
        .iter()
        .enumerate()
        .map(|(i, imsi)| {
            let counter = u32::try_from(i).unwrap();
            let event = Event {
                kind: EventKind::ValueChanged,
                imsi: *imsi,
                at: 1_000,
                interface: Interface::Api,
                peer: "api".into(),
                imei: None,
                bound: None,
                detail: Some("request 7".into()),
            };
            (counter, event)
        })
        .collect();
    let key = l.event_bundle(1_000, 9);
    let value = encoding::encode(&events);
    let Parsed::Bundle(puts) = l.parse(&key, Some(&value), 5).unwrap() else {
        panic!("not a bundle");
    };
    assert_eq!(puts.len(), 2);
    assert!(
        matches!(&puts[1], Change::PutEvent { at: 1_000, counter: 1, event }
        if event.imsi == imsis[1])
    );
    let Parsed::Bundle(dels) = l.parse_deleted(&key, Some(&value), 6).unwrap() else {
        panic!("not a bundle");
    };
    assert_eq!(
        dels,
        vec![
            Change::DeleteEvent {
                imsi: imsis[0],
                at: 1_000,
                counter: 0
            },
            Change::DeleteEvent {
                imsi: imsis[1],
                at: 1_000,
                counter: 1
            },
        ]
    );
    assert!(l.parse_deleted(&key, None, 6).is_err());
    assert!(matches!(
        l.parse_deleted(&l.outbox(3), None, 6).unwrap(),
        Parsed::Data(Change::DeleteOutbox(3))
    ));
    // Retention's range: [P/evbundle/, end) holds bundles at <= 1 000, not 1 001.
    let end = l.event_bundles_end(1_000);
    assert!(key.as_slice() < end.as_slice() && key.starts_with(&l.event_bundles()));
    assert!(l.event_bundle(1_001, 0).as_slice() >= end.as_slice());
    let charges = vec![Charge {
        imsi: imsis[0],
        month: "2026-12".into(),
        amount: "1.00".into(),
        currency: "EUR".into(),
        first_lock_at: 1_000,
    }];
    let Parsed::Bundle(c) = l
        .parse(
            &l.charge_bundle("2026-12", 1_000, 1),
            Some(&encoding::encode(&charges)),
            5,
        )
        .unwrap()
    else {
        panic!("not a bundle");
    };
    assert_eq!(c, vec![Change::PutCharge(charges[0].clone())]);
}

#[test]
fn range_end_is_the_next_prefix() {
    assert_eq!(Layout::range_end(b"/a/"), b"/a0");
    assert_eq!(Layout::range_end(b"a\xff"), b"b");
}

/// A SIM bundle parses into its SIMs, each with the bundled token of the bundle's revision; a
/// tombstone into the SIM's deletion and its tombstone record; a SIM's own key is told apart
/// from the bundles' keys.
#[test]
fn sim_bundles_and_tombstones_parse_to_their_cache_changes() {
    let l = Layout::new("/p");
    let a = Imsi::parse(b"001010000000001").unwrap();
    let b = Imsi::parse(b"001010000000002").unwrap();
    let mut sa = SimRecord::new(a);
    sa.rev = 5;
    let v = encoding::encode(&vec![sa, SimRecord::new(b)]);
    let key = l.sim_bundle(1_700_000_000_000, 3);
    assert!(key.starts_with(&l.sim_bundles()));
    assert_eq!(l.sim_of_key(&key), None);
    assert_eq!(l.sim_of_key(&l.sim(&a)), Some(a));
    assert_eq!(l.sim_of_key(&l.sim_bundle_mark()), None);
    match l.parse(&key, Some(&v), 77).unwrap() {
        Parsed::Bundle(list) => {
            let got: Vec<(Imsi, u64)> = list
                .iter()
                .filter_map(|c| match c {
                    Change::PutSim(s) => Some((s.imsi, s.rev)),
                    _ => None,
                })
                .collect();
            assert_eq!(got, vec![(a, bundled(77)), (b, bundled(77))]);
            assert!(got.iter().all(|(_, r)| is_bundled(*r) && !is_bundled(77)));
        }
        other => panic!("{other:?}"),
    }
    match l.parse(&l.sim(&a), Some(TOMBSTONE), 80).unwrap() {
        Parsed::Bundle(list) => match list.as_slice() {
            [Change::DeleteSim(i), Change::PutMeta { key, value }] => {
                assert_eq!(*i, a);
                assert_eq!(key, &tomb_meta(&a));
                assert_eq!(tomb_imsi(key), Some(a));
                assert_eq!(tomb_rev(value), Some(80));
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        l.parse(&l.sim_bundle_mark(), Some(b""), 81).unwrap(),
        Parsed::Other
    ));
}

/// Retention's deletions: a request's and a charge's own key name the record; a charge
/// bundle's deletion, with its previous value, each of its rows, and without it is an error
/// (the watch rebuilds).
#[test]
fn deleted_requests_charges_and_charge_bundles_name_their_records() {
    let l = Layout::new("/p");
    let imsi = Imsi::parse(b"001010000000001").unwrap();
    match l.parse(&l.request(42), None, 9).unwrap() {
        Parsed::Data(Change::DeleteRequest(42)) => {}
        other => panic!("{other:?}"),
    }
    match l
        .parse_deleted(&l.charge("2023-11", &imsi), None, 9)
        .unwrap()
    {
        Parsed::Data(Change::DeleteCharge { month, imsi: i }) => {
            assert_eq!((month.as_str(), i), ("2023-11", imsi));
        }
        other => panic!("{other:?}"),
    }
    let rows: Vec<Charge> = (1..=3)
        .map(|n| Charge {
            imsi: Imsi::parse(format!("00101000000000{n}").as_bytes()).unwrap(),
            month: "2023-11".into(),
            amount: "1.00".into(),
            currency: "EUR".into(),
            first_lock_at: 0,
        })
        .collect();
    let key = l.charge_bundle("2023-11", 5, 1);
    assert!(key.starts_with(&l.charge_bundles("2023-11")));
    assert!(l.is_bundle_of_rows(&key));
    assert!(!l.is_bundle_of_rows(&l.charge("2023-11", &imsi)));
    let prev = encoding::encode(&rows);
    match l.parse_deleted(&key, Some(&prev), 9).unwrap() {
        Parsed::Bundle(changes) => assert_eq!(
            changes,
            rows.iter()
                .map(|c| Change::DeleteCharge {
                    month: c.month.clone(),
                    imsi: c.imsi,
                })
                .collect::<Vec<_>>()
        ),
        other => panic!("{other:?}"),
    }
    assert!(l.parse_deleted(&key, None, 9).is_err());
    assert!(l.parse(&l.request(1), None, 9).is_ok());
    assert!(l
        .parse(b"/p/req/not-a-number", None, 9)
        .is_err_and(|e| e.to_string().contains("request id")));
    assert!(l.encode(&Change::DeleteRequest(1)).is_none());
}
