//! Where each record lives in etcd, under the configured prefix `P`:
//!
//! | key | value |
//! |---|---|
//! | `P/sim/<imsi>` | [`SimRecord`] (its `rev` is the key's `mod_revision`, not the stored one), or empty: a tombstone |
//! | `P/simbundle/<at:016x><counter:08x>` | SIMs created by one bulk write: `Vec<SimRecord>` |
//! | `P/simbundle-mark` | empty, rewritten with each SIM bundle |
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
//! have; nodes' caches cannot tell the two apart. An event bundle holds events of one time,
//! which its key starts with, and is deleted whole by retention (a range delete up to a time
//! takes exactly the bundles of events no newer). Charges are deleted only by retention, whole
//! months: a charge bundle goes whole with its month, a few bundles a transaction (so that
//! the deletion's watch message stays small). For either kind of bundle the watch's `prev_kv`
//! says which records the deletion removes.
//!
//! **SIM bundles.** The SIMs a bulk write *creates* go in one `P/simbundle/` key too (an
//! import of new SIMs is then a few keys a transaction, not one a SIM). A SIM's own key
//! `P/sim/<imsi>` always wins over a bundle: the first single write of a bundled SIM (a bind,
//! a change) creates it, and a deletion leaves it as a tombstone (an empty value) so that the
//! bundle's copy stays hidden. A bundle is written only with a compare that each of its SIMs
//! has no key of its own, is never changed or deleted afterwards, and a SIM is in one bundle
//! (the writer bundles only SIMs that it reads as absent and that have no tombstone). In the
//! cache a bundled SIM's `rev` is [`bundled`]`(bundle's mod_revision)`: the token tells the
//! ledger to compare "no key of its own" instead of a `mod_revision`; a tombstone is the meta
//! record [`tomb_meta`] holding the tombstone's `mod_revision`, which a later creation compares.
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

/// The cache's `rev` of a SIM that has no key of its own, only its entry in the import bundle
/// written at `bundle_rev` (etcd revisions are below 2^63: the top bit is free).
pub const fn bundled(bundle_rev: u64) -> u64 {
    bundle_rev | BUNDLED_BIT
}

/// Whether a SIM's `rev` (as read from the cache) is a [`bundled`] token.
pub const fn is_bundled(rev: u64) -> bool {
    rev & BUNDLED_BIT != 0
}

const BUNDLED_BIT: u64 = 1 << 63;

/// The value of a deleted SIM's own key.
pub const TOMBSTONE: &[u8] = b"";

/// The cache's meta record of a SIM tombstone (its value: the tombstone's `mod_revision`, 8
/// octets BE).
pub fn tomb_meta(imsi: &Imsi) -> String {
    format!("tomb/{imsi}")
}

/// The IMSI of a [`tomb_meta`] key.
pub fn tomb_imsi(meta_key: &str) -> Option<Imsi> {
    Imsi::parse(meta_key.strip_prefix("tomb/")?.as_bytes()).ok()
}

/// The revision a [`tomb_meta`] value holds.
pub fn tomb_rev(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.get(..8)?.try_into().ok()?))
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
    /// A SIM bundle's key (`at`: when it was written).
    pub fn sim_bundle(&self, at: Millis, counter: u32) -> Vec<u8> {
        let id = format!("{:016x}{counter:08x}", at.max(0));
        self.key(&["simbundle", &id])
    }
    /// `P/simbundle-mark`: rewritten with every SIM bundle (its `mod_revision` is the newest
    /// bundle's), so that a SIM created from a read of "absent" can compare that no bundle came
    /// since the read.
    pub fn sim_bundle_mark(&self) -> Vec<u8> {
        self.key(&["simbundle-mark"])
    }
    /// `P/simbundle/`: every SIM bundle.
    pub fn sim_bundles(&self) -> Vec<u8> {
        self.key(&["simbundle", ""])
    }
    /// The IMSI whose own key `key` is (`P/sim/<imsi>`), if it is one.
    pub fn sim_of_key(&self, key: &[u8]) -> Option<Imsi> {
        let tail = key
            .strip_prefix(self.prefix.as_bytes())?
            .strip_prefix(b"/sim/")?;
        Imsi::parse(tail).ok()
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
    /// `P/chbundle/<month>/`: every charge bundle of one month.
    pub fn charge_bundles(&self, month: &str) -> Vec<u8> {
        self.key(&["chbundle", month, ""])
    }
    /// `P/chbundle/`: every charge bundle.
    pub fn all_charge_bundles(&self) -> Vec<u8> {
        self.key(&["chbundle", ""])
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
            ("sim", Some(v)) if v == TOMBSTONE => {
                let imsi = imsi(tail)?;
                let rev = u64::try_from(mod_revision).unwrap_or(0);
                return Ok(Parsed::Bundle(vec![
                    Change::DeleteSim(imsi),
                    Change::PutMeta {
                        key: tomb_meta(&imsi),
                        value: rev.to_be_bytes().to_vec(),
                    },
                ]));
            }
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
            ("simbundle", Some(v)) => {
                let sims: Vec<SimRecord> = decode(key, v)?;
                let rev = bundled(u64::try_from(mod_revision).unwrap_or(0));
                return Ok(Parsed::Bundle(
                    sims.into_iter()
                        .map(|mut s| {
                            s.rev = rev;
                            Change::PutSim(s)
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
            ("req", None) => {
                Change::DeleteRequest(tail.parse().map_err(|_| corrupt("request id"))?)
            }
            ("charge", Some(v)) => Change::PutCharge(decode(key, v)?),
            ("charge", None) => {
                let (month, who) = tail.split_once('/').ok_or_else(|| corrupt("charge key"))?;
                Change::DeleteCharge {
                    month: month.to_owned(),
                    imsi: imsi(who)?,
                }
            }
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
    /// Whether `key` is an event or a charge bundle: its deletion says which records went only
    /// with its previous value.
    pub fn is_bundle_of_rows(&self, key: &[u8]) -> bool {
        key.starts_with(&self.event_bundles()) || key.starts_with(&self.all_charge_bundles())
    }

    /// What the deletion of `key`, which held `prev` (the watch's `prev_kv`), removes: for an
    /// event or charge bundle the deletion of each of its events or rows; for any other key
    /// what [`Layout::parse`] says of a deletion.
    ///
    /// # Errors
    /// As [`Layout::parse`]; also a bundle deleted without its previous value (the caller
    /// cannot know which records went: it must rebuild).
    pub fn parse_deleted(
        &self,
        key: &[u8],
        prev: Option<&[u8]>,
        mod_revision: i64,
    ) -> Result<Parsed, StoreError> {
        if !self.is_bundle_of_rows(key) {
            return self.parse(key, None, mod_revision);
        }
        let Some(prev) = prev else {
            return Err(StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                source: encoding::EncodingError::Malformed(
                    "bundle deleted without its previous value".into(),
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
                    Change::PutCharge(c) => Some(Change::DeleteCharge {
                        month: c.month,
                        imsi: c.imsi,
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
            | Change::DeleteRequest(_)
            | Change::DeleteCharge { .. }
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
#[path = "layout_tests.rs"]
mod tests;
