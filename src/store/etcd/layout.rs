//! Where each record lives in etcd, under the configured prefix `P`:
//!
//! | key | value |
//! |---|---|
//! | `P/sim/<imsi>` | [`SimRecord`] (its `rev` is the key's `mod_revision`, not the stored one) |
//! | `P/profile/<name>` | [`ProfileRecord`] |
//! | `P/event/<imsi>/<at:016x><counter:08x>` | [`Event`] |
//! | `P/evbundle/<at:016x><counter:08x>` | events of one bulk write, all at `at`: `Vec<(counter, Event)>` |
//! | `P/req/<seq:020>` | [`RequestRecord`] |
//! | `P/reqseq` | last request sequence number (8 octets BE) |
//! | `P/charge/<YYYY-MM>/<imsi>` | [`Charge`] |
//! | `P/chbundle/<YYYY-MM>/<at:016x><counter:08x>` | charges of one bulk write: `Vec<Charge>` |
//! | `P/outbox/<id:020>` | [`OutboxEntry`] |
//! | `P/meta/<name>` | raw bytes (provisioning cursor, billed month) |
//! | `P/seen/<imsi>` | last-seen IMEI (8 octets BE) and time (8 octets BE) |
//! | `P/node/<name>` | a node's [`NodeRecord`] (JSON), attached to its lease |
//! | `P/lock/<singleton>` | the holder's node name, attached to its lease |
//!
//! Values use the same versioned encoding as the embedded store ([`super::super::encoding`]).
//!
//! **Bundles.** A bulk write (an import's chunk, a profile change's fan-out, a month roll-over)
//! puts its events and its charges as one key each instead of one key per SIM: etcd's cost is
//! per key (raft entry size, MVCC index, bbolt page), and a SIM then costs one key (its
//! record) instead of three. A bundle parses into the same cache changes its records would
//! have; nodes' caches cannot tell the two apart. Charges are never deleted. An event bundle
//! holds events of one time, which its key starts with, and is deleted whole by retention (a
//! range delete up to a time takes exactly the bundles of events no newer); the watch's
//! `prev_kv` says which events the deletion removes.
//! This module only names keys and turns key-values into cache [`Change`]s; it does no I/O.

use serde::{Deserialize, Serialize};

use crate::context::Imsi;
use crate::imei::Imei;
use crate::store::rocks::replica::Change;
use crate::store::{encoding, Charge, Event, Millis, SimRecord, StoreError};

/// A node's published state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The revision of the last data change this node's cache applied.
    pub data_rev: u64,
    /// Whether it answers sessions.
    pub serving: bool,
    /// The lease the record is attached to (etcd's, not in the JSON; 0 when not known).
    #[serde(skip)]
    pub lease: i64,
}

/// What one key under the prefix is.
#[derive(Debug)]
pub enum Parsed {
    /// A record the cache holds.
    Data(Change),
    /// Several (a bundle's), or their deletion.
    Bundle(Vec<Change>),
    /// A record removed from the cache.
    Node(String, Option<NodeRecord>),
    Lock(String, Option<String>),
    /// The request counter and anything unknown: nothing to cache.
    Other,
}

/// Key construction for one prefix.
#[derive(Clone, Debug)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    fn key(&self, parts: &[&str]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push('/');
            k.push_str(p);
        }
        k.into_bytes()
    }

    /// `P/` — every key of the daemon.
    pub fn root(&self) -> Vec<u8> {
        self.key(&[""])
    }

    /// The first key after every key starting with `prefix` (etcd's range end for a prefix).
    pub fn range_end(prefix: &[u8]) -> Vec<u8> {
        let mut end = prefix.to_vec();
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                return end;
            }
        }
        vec![0]
    }

    pub fn sim(&self, imsi: &Imsi) -> Vec<u8> {
        self.key(&["sim", imsi.as_str()])
    }
    pub fn profile(&self, name: &str) -> Vec<u8> {
        self.key(&["profile", name])
    }
    pub fn event(&self, imsi: &Imsi, at: Millis, counter: u32) -> Vec<u8> {
        let id = format!("{:016x}{counter:08x}", at.max(0));
        self.key(&["event", imsi.as_str(), &id])
    }
    /// An event bundle's key; `at` is the time of its events.
    pub fn event_bundle(&self, at: Millis, counter: u32) -> Vec<u8> {
        let id = format!("{:016x}{counter:08x}", at.max(0));
        self.key(&["evbundle", &id])
    }
    /// `P/evbundle/`: every event bundle.
    pub fn event_bundles(&self) -> Vec<u8> {
        self.key(&["evbundle", ""])
    }
    /// The first event-bundle key after every bundle of events at or before `at`.
    pub fn event_bundles_end(&self, at: Millis) -> Vec<u8> {
        let id = format!("{:016x}", at.max(0).saturating_add(1));
        self.key(&["evbundle", &id])
    }
    pub fn charge_bundle(&self, month: &str, at: Millis, counter: u32) -> Vec<u8> {
        let id = format!("{:016x}{counter:08x}", at.max(0));
        self.key(&["chbundle", month, &id])
    }
    pub fn request(&self, seq: u64) -> Vec<u8> {
        self.key(&["req", &format!("{seq:020}")])
    }
    pub fn request_counter(&self) -> Vec<u8> {
        self.key(&["reqseq"])
    }
    pub fn charge(&self, month: &str, imsi: &Imsi) -> Vec<u8> {
        self.key(&["charge", month, imsi.as_str()])
    }
    pub fn outbox(&self, id: u64) -> Vec<u8> {
        self.key(&["outbox", &format!("{id:020}")])
    }
    pub fn meta(&self, name: &str) -> Vec<u8> {
        self.key(&["meta", name])
    }
    pub fn seen(&self, imsi: &Imsi) -> Vec<u8> {
        self.key(&["seen", imsi.as_str()])
    }
    pub fn node(&self, name: &str) -> Vec<u8> {
        self.key(&["node", name])
    }
    pub fn lock(&self, singleton: &str) -> Vec<u8> {
        self.key(&["lock", singleton])
    }

    /// What `key` holds, given its `value` (`None`: deleted) and `mod_revision`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a value or key under a known kind that does not decode.
    pub fn parse(
        &self,
        key: &[u8],
        value: Option<&[u8]>,
        mod_revision: i64,
    ) -> Result<Parsed, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            source: encoding::EncodingError::Malformed(what.to_owned()),
        };
        let Some(rest) = key
            .strip_prefix(self.prefix.as_bytes())
            .and_then(|r| r.strip_prefix(b"/"))
        else {
            return Ok(Parsed::Other);
        };
        let rest = std::str::from_utf8(rest).map_err(|_| corrupt("key is not UTF-8"))?;
        let (kind, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let imsi = |s: &str| Imsi::parse(s.as_bytes()).map_err(|_| corrupt("IMSI in key"));
        fn decode<T: serde::de::DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T, StoreError> {
            encoding::decode(v).map_err(|e| StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                source: e,
            })
        }
        Ok(Parsed::Data(match (kind, value) {
            ("sim", Some(v)) => {
                let mut sim: SimRecord = decode(key, v)?;
                sim.rev = u64::try_from(mod_revision).unwrap_or(0);
                Change::PutSim(sim)
            }
            ("sim", None) => Change::DeleteSim(imsi(tail)?),
            ("profile", Some(v)) => Change::PutProfile(decode(key, v)?),
            ("profile", None) => Change::DeleteProfile(tail.to_owned()),
            ("event", v) => {
                let (who, id) = tail.split_once('/').ok_or_else(|| corrupt("event key"))?;
                if id.len() != 24 || !id.is_ascii() {
                    return Err(corrupt("event id"));
                }
                let (at, counter) = id.split_at(16);
                let at = u64::from_str_radix(at, 16).map_err(|_| corrupt("event time"))?;
                let at = Millis::try_from(at).map_err(|_| corrupt("event time"))?;
                let counter = u32::from_str_radix(counter, 16).map_err(|_| corrupt("event id"))?;
                match v {
                    Some(v) => Change::PutEvent {
                        at,
                        counter,
                        event: decode(key, v)?,
                    },
                    None => Change::DeleteEvent {
                        imsi: imsi(who)?,
                        at,
                        counter,
                    },
                }
            }
            ("evbundle", Some(v)) => {
                let events: Vec<(u32, Event)> = decode(key, v)?;
                return Ok(Parsed::Bundle(
                    events
                        .into_iter()
                        .map(|(counter, event)| Change::PutEvent {
                            at: event.at,
                            counter,
                            event,
                        })
                        .collect(),
                ));
            }
            ("chbundle", Some(v)) => {
                let charges: Vec<Charge> = decode(key, v)?;
                return Ok(Parsed::Bundle(
                    charges.into_iter().map(Change::PutCharge).collect(),
                ));
            }
            ("req", Some(v)) => Change::PutRequest(decode(key, v)?),
            ("charge", Some(v)) => Change::PutCharge(decode(key, v)?),
            ("outbox", v) => {
                let id: u64 = tail.parse().map_err(|_| corrupt("outbox id"))?;
                match v {
                    Some(v) => Change::PutOutbox {
                        id,
                        entry: decode(key, v)?,
                    },
                    None => Change::DeleteOutbox(id),
                }
            }
            ("meta", Some(v)) => Change::PutMeta {
                key: tail.to_owned(),
                value: v.to_vec(),
            },
            ("meta", None) => Change::DeleteMeta(tail.to_owned()),
            ("seen", Some(v)) => {
                let (imei, at) = decode_seen(v).ok_or_else(|| corrupt("last-seen value"))?;
                Change::Seen {
                    imsi: imsi(tail)?,
                    imei,
                    at,
                }
            }
            ("node", v) => {
                let rec = v.and_then(|v| serde_json::from_slice(v).ok());
                return Ok(Parsed::Node(tail.to_owned(), rec));
            }
            ("lock", v) => {
                let holder = v.map(|v| String::from_utf8_lossy(v).into_owned());
                return Ok(Parsed::Lock(tail.to_owned(), holder));
            }
            _ => return Ok(Parsed::Other),
        }))
    }
}

impl Layout {
    /// What the deletion of `key`, which held `prev` (the watch's `prev_kv`), removes: for an
    /// event bundle the deletion of each of its events; for any other key what
    /// [`Layout::parse`] says of a deletion.
    ///
    /// # Errors
    /// As [`Layout::parse`]; also an event bundle deleted without its previous value (the
    /// caller cannot know which events went: it must rebuild).
    pub fn parse_deleted(
        &self,
        key: &[u8],
        prev: Option<&[u8]>,
        mod_revision: i64,
    ) -> Result<Parsed, StoreError> {
        let bundles = self.event_bundles();
        if !key.starts_with(&bundles) {
            return self.parse(key, None, mod_revision);
        }
        let Some(prev) = prev else {
            return Err(StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                source: encoding::EncodingError::Malformed(
                    "event bundle deleted without its previous value".into(),
                ),
            });
        };
        let Parsed::Bundle(puts) = self.parse(key, Some(prev), mod_revision)? else {
            return Ok(Parsed::Other);
        };
        Ok(Parsed::Bundle(
            puts.into_iter()
                .filter_map(|c| match c {
                    Change::PutEvent { at, counter, event } => Some(Change::DeleteEvent {
                        imsi: event.imsi,
                        at,
                        counter,
                    }),
                    _ => None,
                })
                .collect(),
        ))
    }

    /// The key and value under which etcd holds what `change` puts (the inverse of
    /// [`Layout::parse`]: an event keeps its id, a request its sequence number, an outbox entry
    /// its id); `None` for a deletion, which is no record. A SIM's stored `rev` is written as
    /// it is and ignored when read back (its key's `mod_revision` replaces it).
    pub fn encode(&self, change: &Change) -> Option<(Vec<u8>, Vec<u8>)> {
        Some(match change {
            Change::PutSim(s) => (self.sim(&s.imsi), encoding::encode(s)),
            Change::PutProfile(p) => (self.profile(&p.name), encoding::encode(p)),
            Change::PutEvent { at, counter, event } => (
                self.event(&event.imsi, *at, *counter),
                encoding::encode(event),
            ),
            Change::PutRequest(r) => (self.request(r.seq), encoding::encode(r)),
            Change::PutCharge(c) => (self.charge(&c.month, &c.imsi), encoding::encode(c)),
            Change::PutOutbox { id, entry } => (self.outbox(*id), encoding::encode(entry)),
            Change::PutMeta { key, value } => (self.meta(key), value.clone()),
            Change::Seen { imsi, imei, at } => (self.seen(imsi), encode_seen(*imei, *at)),
            Change::DeleteSim(_)
            | Change::DeleteProfile(_)
            | Change::DeleteEvent { .. }
            | Change::DeleteOutbox(_)
            | Change::DeleteMeta(_) => return None,
        })
    }
}

/// The value of `P/seen/<imsi>`.
pub fn encode_seen(imei: Imei, at: Millis) -> Vec<u8> {
    let mut v = imei.as_u64().to_be_bytes().to_vec();
    v.extend_from_slice(&at.to_be_bytes());
    v
}

fn decode_seen(v: &[u8]) -> Option<(Imei, Millis)> {
    let imei = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let at = i64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
    Some((Imei::from_u64(imei)?, at))
}

#[cfg(test)]
mod tests {
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
}
