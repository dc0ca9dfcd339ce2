//! Reading a whole embedded data directory, record by record, for `imei-lockctl cluster import`.
//!
//! [`DataDir::open`] opens the directory as the daemon does (a normal RocksDB open, so that a
//! daemon still running on it — RocksDB's `LOCK` held — is refused rather than read while it
//! writes), but creates nothing: a missing directory, missing column families or a node's
//! cluster cache are refused with an error naming the directory. [`DataDir::records`] yields
//! every record as the [`Change`] that puts it, each with the identity it has in the store (an
//! event its time and counter, a request its sequence number, an outbox entry its id), in this
//! order: profiles, SIMs, events, requests, billing rows, outbox, meta.
//!
//! This module does not write records (RocksDB's own recovery at open aside), knows nothing of
//! etcd, and does not export the per-profile member index (it is derived from the SIMs) nor the
//! schema version (the reader writes its own).

use std::path::{Path, PathBuf};

use rocksdb::{IteratorMode, Options, DB};

use super::{ALL_CFS, CF_BILLING, CF_EVENTS, CF_META, CF_OUTBOX, CF_PROFILES, CF_REQUESTS};
use super::{CF_SIMS, CURRENT_VERSION};
use crate::context::Imsi;
use crate::store::encoding::{self, EncodingError};
use crate::store::rocks::replica::Change;
use crate::store::{keys, Charge, Event, Millis, OutboxEntry, ProfileRecord, RequestRecord};
use crate::store::{SimRecord, StoreError};

/// Meta key a cluster node's cache keeps its etcd revision under (see `store::etcd`): a
/// directory holding it is a cache of etcd, not an embedded store.
const CLUSTER_POSITION_KEY: &str = "etcd_revision";

/// The record kinds in the order [`DataDir::records`] yields them, with their column family.
pub const KINDS: [(&str, &str); 7] = [
    ("profiles", CF_PROFILES),
    ("sims", CF_SIMS),
    ("events", CF_EVENTS),
    ("requests", CF_REQUESTS),
    ("charges", CF_BILLING),
    ("outbox", CF_OUTBOX),
    ("meta", CF_META),
];

/// Why a data directory cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error("{}: not an imei-lockd data directory (no RocksDB CURRENT file)", dir.display())]
    NotADataDir { dir: PathBuf },
    #[error("{} is in use (RocksDB's LOCK is held): stop imei-lockd before importing its data directory", dir.display())]
    Locked { dir: PathBuf },
    #[error("{}: column family {family} is missing: not an imei-lockd data directory", dir.display())]
    MissingFamily { dir: PathBuf, family: &'static str },
    #[error("{} is a cluster node's cache (meta key {CLUSTER_POSITION_KEY}), not an embedded data directory: its records are already in etcd", dir.display())]
    ClusterCache { dir: PathBuf },
    #[error("{}: schema version {found:?}; this release reads up to {CURRENT_VERSION}", dir.display())]
    Schema { dir: PathBuf, found: Vec<u8> },
    #[error("{}: RocksDB: {message}", dir.display())]
    Backend { dir: PathBuf, message: String },
    #[error("{}: column family {family}, key {key}: {source}", dir.display())]
    Corrupt {
        dir: PathBuf,
        family: &'static str,
        key: String,
        source: EncodingError,
    },
}

/// An embedded data directory opened for reading every record.
pub struct DataDir {
    db: DB,
    dir: PathBuf,
}

impl DataDir {
    /// Opens `dir`, refusing a directory that is not an embedded data directory or that a
    /// running daemon holds.
    ///
    /// # Errors
    /// [`ExportError`] naming `dir` (and the family or key at fault).
    pub fn open(dir: &Path) -> Result<Self, ExportError> {
        let owned = || dir.to_path_buf();
        if !dir.join("CURRENT").is_file() {
            return Err(ExportError::NotADataDir { dir: owned() });
        }
        let opts = Options::default();
        let families = DB::list_cf(&opts, dir).map_err(|e| backend(dir, &e))?;
        for family in ALL_CFS {
            if !families.iter().any(|f| f == family) {
                return Err(ExportError::MissingFamily {
                    dir: owned(),
                    family,
                });
            }
        }
        // Every family the directory has must be named to open it (unknown ones are not read).
        let db = DB::open_cf(&opts, dir, &families).map_err(|e| {
            if e.kind() == rocksdb::ErrorKind::IOError
                && e.as_ref().to_ascii_lowercase().contains("lock")
            {
                ExportError::Locked { dir: owned() }
            } else {
                backend(dir, &e)
            }
        })?;
        let this = Self { db, dir: owned() };
        match this.meta(keys::SCHEMA)? {
            Some(v) if v.first().is_some_and(|&ver| ver <= CURRENT_VERSION) => {}
            None => {}
            Some(found) => {
                return Err(ExportError::Schema {
                    dir: owned(),
                    found,
                })
            }
        }
        if this.meta(CLUSTER_POSITION_KEY)?.is_some() {
            return Err(ExportError::ClusterCache { dir: owned() });
        }
        tracing::info!(dir = %dir.display(), "data directory open for export");
        Ok(this)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, ExportError> {
        let cf = self.family(CF_META)?;
        self.db.get_cf(cf, key).map_err(|e| backend(&self.dir, &e))
    }

    fn family(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, ExportError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| ExportError::MissingFamily {
                dir: self.dir.clone(),
                family: name,
            })
    }

    /// The highest request sequence number (0: no request).
    ///
    /// # Errors
    /// [`ExportError`] from RocksDB or a malformed key.
    pub fn last_request_seq(&self) -> Result<u64, ExportError> {
        let cf = self.family(CF_REQUESTS)?;
        match self.db.iterator_cf(cf, IteratorMode::End).next() {
            None => Ok(0),
            Some(item) => {
                let (k, _) = item.map_err(|e| backend(&self.dir, &e))?;
                be_u64(&k).ok_or_else(|| self.corrupt(CF_REQUESTS, &k, "request key"))
            }
        }
    }

    /// Every record, kind after kind (see [`KINDS`]), as `(kind, change)`.
    pub fn records(
        &self,
    ) -> impl Iterator<Item = Result<(&'static str, Change), ExportError>> + '_ {
        KINDS
            .into_iter()
            .flat_map(move |(kind, _)| self.records_of(kind))
    }

    /// Every record of `kind` (a name of [`KINDS`]; another name yields nothing).
    pub fn records_of(
        &self,
        kind: &str,
    ) -> Box<dyn Iterator<Item = Result<(&'static str, Change), ExportError>> + '_> {
        let Some(&(kind, family)) = KINDS.iter().find(|(k, _)| *k == kind) else {
            return Box::new(std::iter::empty());
        };
        match self.family(family) {
            Err(e) => Box::new(std::iter::once(Err(e))),
            Ok(cf) => Box::new(self.db.iterator_cf(cf, IteratorMode::Start).filter_map(
                move |item| {
                    let decoded = item
                        .map_err(|e| backend(&self.dir, &e))
                        .and_then(|(k, v)| self.decode(family, &k, &v));
                    decoded.transpose().map(|r| r.map(|c| (kind, c)))
                },
            )),
        }
    }

    /// The change that puts the record `key` = `value` of `family` (`None`: not exported).
    fn decode(
        &self,
        family: &'static str,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Change>, ExportError> {
        let bad = |what: &str| self.corrupt(family, key, what);
        Ok(Some(match family {
            CF_PROFILES => Change::PutProfile(self.value::<ProfileRecord>(family, key, value)?),
            CF_SIMS => {
                let sim: SimRecord = self.value(family, key, value)?;
                if sim.imsi.as_bytes() != key {
                    return Err(bad("SIM record under another IMSI's key"));
                }
                Change::PutSim(sim)
            }
            CF_EVENTS => {
                let event: Event = self.value(family, key, value)?;
                let (at, counter) = event_id(key, &event.imsi).ok_or_else(|| bad("event key"))?;
                Change::PutEvent { at, counter, event }
            }
            CF_REQUESTS => {
                let r: RequestRecord = self.value(family, key, value)?;
                if be_u64(key) != Some(r.seq) {
                    return Err(bad("request record under another sequence number"));
                }
                Change::PutRequest(r)
            }
            CF_BILLING => {
                let c: Charge = self.value(family, key, value)?;
                if keys::charge(&c.month, &c.imsi) != key {
                    return Err(bad("billing row under another key"));
                }
                Change::PutCharge(c)
            }
            CF_OUTBOX => Change::PutOutbox {
                id: be_u64(key).ok_or_else(|| bad("outbox key"))?,
                entry: self.value::<OutboxEntry>(family, key, value)?,
            },
            CF_META => {
                let name = std::str::from_utf8(key).map_err(|_| bad("meta key is not UTF-8"))?;
                if name == keys::SCHEMA {
                    return Ok(None);
                }
                Change::PutMeta {
                    key: name.to_owned(),
                    value: value.to_vec(),
                }
            }
            _ => return Ok(None),
        }))
    }

    fn value<T: serde::de::DeserializeOwned>(
        &self,
        family: &'static str,
        key: &[u8],
        value: &[u8],
    ) -> Result<T, ExportError> {
        encoding::decode(value).map_err(|source| ExportError::Corrupt {
            dir: self.dir.clone(),
            family,
            key: show_key(key),
            source,
        })
    }

    fn corrupt(&self, family: &'static str, key: &[u8], what: &str) -> ExportError {
        ExportError::Corrupt {
            dir: self.dir.clone(),
            family,
            key: show_key(key),
            source: EncodingError::Malformed(what.to_owned()),
        }
    }
}

fn backend(dir: &Path, e: &rocksdb::Error) -> ExportError {
    ExportError::Backend {
        dir: dir.to_path_buf(),
        message: e.as_ref().to_owned(),
    }
}

impl From<ExportError> for StoreError {
    fn from(e: ExportError) -> Self {
        Self::Backend(e.to_string())
    }
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// `(at, counter)` of an event key `imsi / at (8 BE) counter (4 BE)` (see [`keys::event`]).
fn event_id(key: &[u8], imsi: &Imsi) -> Option<(Millis, u32)> {
    let id = key.strip_prefix(keys::event_prefix(imsi).as_slice())?;
    let at = u64::from_be_bytes(id.get(..8)?.try_into().ok()?);
    let counter = u32::from_be_bytes(id.get(8..)?.try_into().ok()?);
    Some((Millis::try_from(at).ok()?, counter))
}

/// A key for messages: as text when it is printable ASCII, else as hex.
fn show_key(key: &[u8]) -> String {
    if key.iter().all(|b| b.is_ascii_graphic()) {
        String::from_utf8_lossy(key).into_owned()
    } else {
        key.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Interface;
    use crate::imei::Imei;
    use crate::store::rocks::{RocksOptions, RocksStore};
    use crate::store::{Batch, Commit, Durability, EventKind, ImeiManagement, Ledger as _};
    use crate::store::{Op, Operation};

    fn imsi(i: u32) -> Imsi {
        format!("00101{i:010}").parse().unwrap()
    }

    /// Writes one record of every kind through the store, then reads them back as changes.
    #[test]
    fn every_record_comes_back_with_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
        let imei = Imei::from_u64(35_209_900_176_148).unwrap();
        let mut sim = SimRecord::new(imsi(1));
        sim.value = Some(ImeiManagement::Lock);
        sim.bound = Some(imei);
        let event = Event {
            kind: EventKind::ImeiBound,
            imsi: imsi(1),
            at: 1_700_000_000_000,
            interface: Interface::Radius,
            peer: "127.0.0.1".into(),
            imei: Some(imei),
            bound: None,
            detail: None,
        };
        let mut b = Batch::new();
        b.put_sim(sim);
        b.push(Op::PutEvent(event.clone()));
        b.push(Op::PutProfile(ProfileRecord {
            name: "iot".into(),
            value: ImeiManagement::Lock,
            lock_fee: None,
            rev: 1,
        }));
        b.push(Op::PutMeta {
            key: "provisioning_cursor".into(),
            value: 1u64.to_be_bytes().to_vec(),
        });
        assert_eq!(
            store.write(b, Durability::Synced).unwrap(),
            Commit::Committed
        );
        let r = crate::store::blocking::wait(
            store.append_request(Operation::Reset { imsi: imsi(1) }, 5),
        )
        .unwrap();
        drop(store);

        let data = DataDir::open(dir.path()).unwrap();
        assert_eq!(data.last_request_seq().unwrap(), r.seq);
        let all: Vec<_> = data.records().collect::<Result<_, _>>().unwrap();
        let kinds: Vec<&str> = all.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, ["profiles", "sims", "events", "requests", "meta"]);
        match &all[2].1 {
            Change::PutEvent { at, event: e, .. } => assert_eq!((*at, e), (event.at, &event)),
            other => panic!("{other:?}"),
        }
        assert_eq!(all[3].1, Change::PutRequest(r));
        assert!(matches!(&all[4].1, Change::PutMeta { key, .. } if key == "provisioning_cursor"));
    }

    #[test]
    fn refuses_a_running_store_a_plain_directory_and_a_cluster_cache() {
        let dir = tempfile::tempdir().unwrap();
        let plain = DataDir::open(dir.path()).err().unwrap();
        assert!(matches!(plain, ExportError::NotADataDir { .. }), "{plain}");
        let store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
        let locked = DataDir::open(dir.path()).err().unwrap();
        assert!(matches!(locked, ExportError::Locked { .. }), "{locked}");
        assert!(locked.to_string().contains("stop imei-lockd"), "{locked}");
        store
            .apply_changes(Vec::new(), CLUSTER_POSITION_KEY, 9)
            .unwrap();
        drop(store);
        let cache = DataDir::open(dir.path()).err().unwrap();
        assert!(matches!(cache, ExportError::ClusterCache { .. }), "{cache}");
    }

    #[test]
    fn a_damaged_value_names_its_family_and_key() {
        let dir = tempfile::tempdir().unwrap();
        drop(RocksStore::open(dir.path(), &RocksOptions::default()).unwrap());
        {
            let families = DB::list_cf(&Options::default(), dir.path()).unwrap();
            let db = DB::open_cf(&Options::default(), dir.path(), &families).unwrap();
            let cf = db.cf_handle(CF_SIMS).unwrap();
            db.put_cf(cf, b"001010000000009", b"\x01\xff\xff").unwrap();
        }
        let data = DataDir::open(dir.path()).unwrap();
        let err = data.records().find_map(Result::err).unwrap();
        let text = err.to_string();
        assert!(
            text.contains("sims") && text.contains("001010000000009"),
            "{text}"
        );
    }

    #[test]
    fn event_ids_parse_only_under_their_imsi() {
        let key = keys::event(&imsi(1), 1_700_000_000_000, 7);
        assert_eq!(event_id(&key, &imsi(1)), Some((1_700_000_000_000, 7)));
        assert_eq!(event_id(&key, &imsi(2)), None);
        assert_eq!(event_id(&key[..key.len() - 1], &imsi(1)), None);
    }
}
