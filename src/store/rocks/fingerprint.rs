//! A fingerprint of the embedded store's content at one instant: per column family, how many
//! records and a digest of them, read from one RocksDB snapshot together with a position (the
//! cluster cache's etcd revision). Two stores with equal fingerprints hold the same records.
//!
//! What a fingerprint leaves out: the position key itself and the schema version (bookkeeping,
//! not content), and each SIM's last-seen IMEI and time (informational, buffered for up to a
//! second on every node and written to etcd by each node on its own schedule).
//!
//! This file changes nothing; it only reads.

use std::hash::{DefaultHasher, Hasher};

use rocksdb::IteratorMode;
use serde::Serialize;

use super::{backend, be_u64, decode, RocksStore, ALL_CFS, CF_META, CF_SIMS};
use crate::store::{encoding, keys, SimRecord, StoreError};

/// One column family's share of a [`Fingerprint`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FamilyPrint {
    pub name: &'static str,
    pub records: u64,
    /// Digest of every key and value in key order (hex).
    pub digest: String,
}

/// What [`RocksStore::fingerprint`] returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    /// Meta `position_key` in the same snapshot (0 when absent).
    pub position: u64,
    pub families: Vec<FamilyPrint>,
}

impl RocksStore {
    /// The directory the store lives in.
    pub fn path(&self) -> &std::path::Path {
        self.inner.db.path()
    }

    /// Fingerprints every column family from one snapshot, with meta `position_key` read from
    /// that snapshot too.
    ///
    /// # Errors
    /// [`StoreError::Backend`] from RocksDB; [`StoreError::Corrupt`] for an unreadable SIM.
    pub fn fingerprint(&self, position_key: &str) -> Result<Fingerprint, StoreError> {
        let inner = &*self.inner;
        let snapshot = inner.db.snapshot();
        let meta = inner.cf(CF_META)?;
        let position = snapshot
            .get_cf(&meta, position_key.as_bytes())
            .map_err(backend)?
            .and_then(|v| be_u64(&v))
            .unwrap_or(0);
        let mut families = Vec::with_capacity(ALL_CFS.len());
        for name in ALL_CFS {
            let cf = inner.cf(name)?;
            let mut hasher = DefaultHasher::new();
            let mut records = 0u64;
            for item in snapshot.iterator_cf(&cf, IteratorMode::Start) {
                let (k, v) = item.map_err(backend)?;
                if name == CF_META
                    && (*k == *position_key.as_bytes() || *k == *keys::SCHEMA.as_bytes())
                {
                    continue;
                }
                records += 1;
                hasher.write_usize(k.len());
                hasher.write(&k);
                if name == CF_SIMS {
                    let mut sim: SimRecord = decode(&k, &v)?;
                    sim.last_seen = None;
                    sim.last_seen_at = None;
                    let v = encoding::encode(&sim);
                    hasher.write_usize(v.len());
                    hasher.write(&v);
                } else {
                    hasher.write_usize(v.len());
                    hasher.write(&v);
                }
            }
            families.push(FamilyPrint {
                name,
                records,
                digest: format!("{:016x}", hasher.finish()),
            });
        }
        Ok(Fingerprint { position, families })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Imsi;
    use crate::imei::Imei;
    use crate::store::rocks::replica::Change;
    use crate::store::rocks::RocksOptions;
    use crate::store::Ledger;

    fn store(dir: &std::path::Path) -> RocksStore {
        RocksStore::open(dir, &RocksOptions::default()).unwrap()
    }

    fn sim(imsi: &str, bound: Option<&str>) -> SimRecord {
        let mut s = SimRecord::new(Imsi::parse(imsi.as_bytes()).unwrap());
        s.bound = bound.map(|b| Imei::from_u64(b.parse().unwrap()).unwrap());
        s.rev = 7;
        s
    }

    /// SIM 001010000000001 bound to `imei`, at position 9.
    fn bind(store: &RocksStore, imei: &str) {
        let change = Change::PutSim(sim("001010000000001", Some(imei)));
        store.apply_changes(vec![change], "pos", 9).unwrap();
    }

    #[test]
    fn equal_content_equal_print_whatever_last_seen_says() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (store(a.path()), store(b.path()));
        bind(&a, "35209900176148");
        let imsi = Imsi::parse(b"001010000000001").unwrap();
        a.note_seen(&imsi, Imei::from_u64(35209900176149).unwrap(), 5)
            .unwrap();
        a.flush().unwrap();
        bind(&b, "35209900176148");
        let (pa, pb) = (a.fingerprint("pos").unwrap(), b.fingerprint("pos").unwrap());
        assert_eq!(pa.position, 9);
        assert_eq!(pa, pb);
        assert_eq!(
            pa.families
                .iter()
                .find(|f| f.name == "sims")
                .unwrap()
                .records,
            1
        );
    }

    #[test]
    fn a_different_binding_or_a_missing_record_shows() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (store(a.path()), store(b.path()));
        bind(&a, "35209900176148");
        bind(&b, "49015420323751");
        let (pa, pb) = (a.fingerprint("pos").unwrap(), b.fingerprint("pos").unwrap());
        assert_ne!(pa, pb);
        bind(&b, "35209900176148");
        assert_eq!(a.fingerprint("pos").unwrap(), b.fingerprint("pos").unwrap());
        b.apply_changes(
            vec![Change::PutMeta {
                key: "cursor".into(),
                value: vec![1],
            }],
            "pos",
            9,
        )
        .unwrap();
        let (pa, pb) = (a.fingerprint("pos").unwrap(), b.fingerprint("pos").unwrap());
        assert_ne!(pa, pb);
        let meta = |p: &Fingerprint| {
            p.families
                .iter()
                .find(|f| f.name == "meta")
                .unwrap()
                .records
        };
        assert_eq!(meta(&pb), meta(&pa) + 1);
    }
}
