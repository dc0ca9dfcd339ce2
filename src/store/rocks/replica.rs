//! The embedded store as a cluster node's cache: changes that another source already decided
//! (etcd, in the order of its revisions) are applied without compares, together with the
//! position they bring the cache to, in one `WriteBatch`.
//!
//! Nothing here checks a revision or decides whether a change may happen: the source of truth
//! did. The SIM stripes are still taken, so readers never see a record half-applied and a
//! record never goes back to an older copy.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;

use rocksdb::WriteBatch;

use super::{backend, decode, write_opts, RocksStore, ALL_CFS};
use super::{CF_BILLING, CF_EVENTS, CF_META, CF_OUTBOX, CF_PROFILES, CF_REQUESTS, CF_SIMS};
use crate::context::Imsi;
use crate::imei::Imei;
use crate::store::{encoding, keys, Charge, Durability, Event, LocalRead, Millis, OutboxEntry};
use crate::store::{ProfileRecord, RequestRecord, SimRecord, StoreError};

/// One change decided elsewhere.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The SIM as the source holds it, `rev` set to the source's revision of it.
    PutSim(SimRecord),
    DeleteSim(Imsi),
    PutProfile(ProfileRecord),
    DeleteProfile(String),
    /// An event under its id (`at`, `counter`), as the source keys it.
    PutEvent {
        at: Millis,
        counter: u32,
        event: Event,
    },
    DeleteEvent {
        imsi: Imsi,
        at: Millis,
        counter: u32,
    },
    PutRequest(RequestRecord),
    /// A request deleted by retention (never the newest).
    DeleteRequest(u64),
    PutCharge(Charge),
    /// A billing row deleted by retention.
    DeleteCharge {
        month: String,
        imsi: Imsi,
    },
    PutOutbox {
        id: u64,
        entry: OutboxEntry,
    },
    DeleteOutbox(u64),
    PutMeta {
        key: String,
        value: Vec<u8>,
    },
    DeleteMeta(String),
    /// A last-seen IMEI (kept only if newer than what the cache has).
    Seen {
        imsi: Imsi,
        imei: Imei,
        at: Millis,
    },
}

/// What the caller of [`RocksStore::apply_changes_over`] knows of the SIMs its changes touch,
/// so that a SIM known to be absent is not looked up (a bulk import's new SIMs, a rebuild).
#[derive(Clone, Copy, Debug)]
pub enum Prior<'a> {
    /// Nothing: each SIM is read as stored.
    Unknown,
    /// These SIMs are not stored (read by the caller, the store's only writer of SIM records).
    Absent(&'a HashSet<Imsi>),
    /// No SIM the changes touch is stored (a cleared or new store being filled).
    Empty,
}

impl RocksStore {
    /// Applies `changes` in order and sets meta `position_key` to `position` (8 octets BE), in
    /// one atomic write.
    ///
    /// # Errors
    /// [`StoreError::Backend`] from RocksDB.
    pub fn apply_changes(
        &self,
        changes: Vec<Change>,
        position_key: &str,
        position: u64,
    ) -> Result<(), StoreError> {
        self.apply_changes_over(changes, Prior::Unknown, position_key, position)
    }

    /// [`RocksStore::apply_changes`], told what is known of the SIMs before them.
    ///
    /// # Errors
    /// [`StoreError::Backend`] from RocksDB.
    pub fn apply_changes_over(
        &self,
        changes: Vec<Change>,
        prior: Prior<'_>,
        position_key: &str,
        position: u64,
    ) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let stripes: BTreeSet<usize> = changes
            .iter()
            .filter_map(|c| match c {
                Change::PutSim(s) => Some(inner.stripe_of(&s.imsi)),
                Change::DeleteSim(imsi) => Some(inner.stripe_of(imsi)),
                _ => None,
            })
            .collect();
        let _guards: Vec<_> = stripes.iter().map(|&s| inner.stripes[s].lock()).collect();
        let _meta = inner.meta_lock.lock();
        let mut wb = WriteBatch::default();
        let mut sims_after: Vec<(Imsi, Option<SimRecord>)> = Vec::new();
        // Where each SIM's latest state in `sims_after` is (a response may change one twice).
        let mut latest: HashMap<Imsi, usize> = HashMap::new();
        let mut profiles: Vec<(String, Option<ProfileRecord>)> = Vec::new();
        let mut last_request = 0;
        for change in changes {
            match change {
                Change::PutSim(mut sim) => {
                    let current = self.current(&sims_after, &latest, prior, &sim.imsi)?;
                    inner.stage_put_sim(&mut wb, current.as_ref(), &mut sim)?;
                    latest.insert(sim.imsi, sims_after.len());
                    sims_after.push((sim.imsi, Some(sim)));
                }
                Change::DeleteSim(imsi) => {
                    let current = self.current(&sims_after, &latest, prior, &imsi)?;
                    inner.stage_delete_sim(&mut wb, current.as_ref(), &imsi)?;
                    latest.insert(imsi, sims_after.len());
                    sims_after.push((imsi, None));
                }
                Change::PutProfile(p) => {
                    wb.put_cf(
                        &inner.cf(CF_PROFILES)?,
                        p.name.as_bytes(),
                        encoding::encode(&p),
                    );
                    profiles.push((p.name.clone(), Some(p)));
                }
                Change::DeleteProfile(name) => {
                    wb.delete_cf(&inner.cf(CF_PROFILES)?, name.as_bytes());
                    profiles.push((name, None));
                }
                Change::PutEvent { at, counter, event } => {
                    let key = keys::event(&event.imsi, at, counter);
                    wb.put_cf(&inner.cf(CF_EVENTS)?, key, encoding::encode(&event));
                }
                Change::DeleteEvent { imsi, at, counter } => {
                    wb.delete_cf(&inner.cf(CF_EVENTS)?, keys::event(&imsi, at, counter));
                }
                Change::PutRequest(r) => {
                    last_request = last_request.max(r.seq);
                    let cf = inner.cf(CF_REQUESTS)?;
                    wb.put_cf(&cf, r.seq.to_be_bytes(), encoding::encode(&r));
                }
                Change::DeleteRequest(seq) => {
                    wb.delete_cf(&inner.cf(CF_REQUESTS)?, seq.to_be_bytes());
                }
                Change::PutCharge(c) => {
                    let cf = inner.cf(CF_BILLING)?;
                    wb.put_cf(&cf, keys::charge(&c.month, &c.imsi), encoding::encode(&c));
                }
                Change::DeleteCharge { month, imsi } => {
                    wb.delete_cf(&inner.cf(CF_BILLING)?, keys::charge(&month, &imsi));
                }
                Change::PutOutbox { id, entry } => {
                    let cf = inner.cf(CF_OUTBOX)?;
                    wb.put_cf(&cf, id.to_be_bytes(), encoding::encode(&entry));
                }
                Change::DeleteOutbox(id) => {
                    wb.delete_cf(&inner.cf(CF_OUTBOX)?, id.to_be_bytes());
                }
                Change::PutMeta { key, value } => {
                    wb.put_cf(&inner.cf(CF_META)?, key.as_bytes(), value);
                }
                Change::DeleteMeta(key) => {
                    wb.delete_cf(&inner.cf(CF_META)?, key.as_bytes());
                }
                Change::Seen { imsi, imei, at } => {
                    // Buffered like the node's own sessions' last-seen; merged into reads.
                    let mut shard = inner.seen_shard(&imsi).lock();
                    let newer = shard.get(&imsi).is_none_or(|&(_, t)| t <= at);
                    if newer {
                        shard.insert(imsi, (imei, at));
                    }
                }
            }
        }
        wb.put_cf(
            &inner.cf(CF_META)?,
            position_key.as_bytes(),
            position.to_be_bytes(),
        );
        inner
            .db
            .write_opt(wb, &write_opts(Durability::Buffered))
            .map_err(backend)?;
        for (imsi, rec) in sims_after {
            match rec {
                Some(r) => inner.cache_put(r),
                None => inner.cache_remove(&imsi),
            }
        }
        if !profiles.is_empty() {
            let mut map = inner.profiles.write();
            for (name, p) in profiles {
                match p {
                    Some(p) => map.insert(name, p),
                    None => map.remove(&name),
                };
            }
        }
        if last_request > 0 {
            inner
                .next_request
                .fetch_max(last_request + 1, Ordering::SeqCst);
        }
        inner.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The SIM as this batch leaves it so far, else as stored (stripe held).
    fn current(
        &self,
        staged: &[(Imsi, Option<SimRecord>)],
        latest: &HashMap<Imsi, usize>,
        prior: Prior<'_>,
        imsi: &Imsi,
    ) -> Result<Option<SimRecord>, StoreError> {
        if let Some((_, rec)) = latest.get(imsi).and_then(|&i| staged.get(i)) {
            return Ok(rec.clone());
        }
        match prior {
            Prior::Empty => Ok(None),
            Prior::Absent(set) if set.contains(imsi) => Ok(None),
            _ => self.inner.cached_sim_locked(imsi),
        }
    }

    /// Empties every column family (a cache about to be rebuilt from a full read), keeping the
    /// schema version.
    ///
    /// # Errors
    /// [`StoreError::Backend`] from RocksDB.
    pub fn clear(&self) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let _all: Vec<_> = inner.stripes.iter().map(|s| s.lock()).collect();
        let _meta = inner.meta_lock.lock();
        let mut wb = WriteBatch::default();
        // Every key of every family sorts below 64 octets of 0xff (digits, names, BE numbers).
        let end = [0xffu8; 64];
        for name in ALL_CFS {
            wb.delete_range_cf(&inner.cf(name)?, &b""[..], &end[..]);
        }
        wb.put_cf(
            &inner.cf(CF_META)?,
            keys::SCHEMA,
            [encoding::CURRENT_VERSION],
        );
        inner
            .db
            .write_opt(wb, &write_opts(Durability::Buffered))
            .map_err(backend)?;
        for shard in &inner.sim_cache {
            shard.write().clear();
        }
        for shard in &inner.seen {
            shard.lock().clear();
        }
        inner.profiles.write().clear();
        inner.next_request.store(1, Ordering::SeqCst);
        Ok(())
    }

    /// The records stored under `imsis`, in their order (`None`: not stored), read in one
    /// batched lookup (RocksDB's multi-get: cheaper than a read each for the SIMs of an import
    /// bundle). Records as stored: no buffered last-seen merged in.
    ///
    /// # Errors
    /// [`StoreError::Backend`] from RocksDB, [`StoreError::Corrupt`] for a record that does not
    /// decode.
    pub fn sims_stored(&self, imsis: &[Imsi]) -> Result<Vec<Option<SimRecord>>, StoreError> {
        let inner = &*self.inner;
        let cf = inner.cf(CF_SIMS)?;
        let keys: Vec<&[u8]> = imsis.iter().map(|i| i.as_bytes()).collect();
        inner
            .db
            .batched_multi_get_cf(&cf, keys, false)
            .into_iter()
            .zip(imsis)
            .map(|(got, imsi)| match got.map_err(backend)? {
                Some(v) => decode(imsi.as_bytes(), &v).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    /// IMSIs of the SIMs stored from `from` to `to` (both included, in key order), at most
    /// `limit`: `None` when there are more.
    ///
    /// # Errors
    /// [`StoreError::Backend`] from RocksDB.
    pub fn sims_between(
        &self,
        from: &Imsi,
        to: &Imsi,
        limit: usize,
    ) -> Result<Option<Vec<Imsi>>, StoreError> {
        let keys = self.keys_between(CF_SIMS, from.as_bytes(), to.as_bytes(), limit)?;
        Ok(keys.map(|ks| ks.iter().filter_map(|k| Imsi::parse(k).ok()).collect()))
    }

    /// Meta keys from `from` to `to` (both included, in key order), at most `limit`: `None`
    /// when there are more.
    ///
    /// # Errors
    /// [`StoreError::Backend`] from RocksDB.
    pub fn meta_keys_between(
        &self,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let keys = self.keys_between(CF_META, from.as_bytes(), to.as_bytes(), limit)?;
        Ok(keys.map(|ks| {
            ks.into_iter()
                .map(|k| String::from_utf8_lossy(&k).into_owned())
                .collect()
        }))
    }

    fn keys_between(
        &self,
        cf: &str,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let inner = &*self.inner;
        let mut end = to.to_vec();
        end.push(0);
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_range(from.to_vec()..end);
        let mut it = inner.db.raw_iterator_cf_opt(&inner.cf(cf)?, opts);
        it.seek_to_first();
        let mut out = Vec::new();
        while let Some(k) = it.key() {
            if out.len() >= limit {
                return Ok(None);
            }
            out.push(k.to_vec());
            it.next();
        }
        it.status().map_err(backend)?;
        Ok(Some(out))
    }

    /// Meta `key` as a big-endian u64 (0 when absent).
    ///
    /// # Errors
    /// [`StoreError::Backend`] from RocksDB.
    pub fn meta_u64(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self
            .meta(key)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_be_bytes))
    }
}
