//! The embedded store: RocksDB with one column family per record kind.
//!
//! # Layout
//! | column family | key | value |
//! |---|---|---|
//! | `sims` | IMSI digits | [`SimRecord`] |
//! | `profiles` | profile name | [`ProfileRecord`] |
//! | `members` | profile NUL IMSI | empty (index of SIMs per profile) |
//! | `events` | IMSI `/` time (8 BE) counter (4 BE) | [`Event`] |
//! | `requests` | sequence number (8 BE) | [`RequestRecord`] |
//! | `billing` | `YYYY-MM` `/` IMSI | [`Charge`] |
//! | `outbox` | id (8 BE) | [`OutboxEntry`] |
//! | `meta` | name | raw bytes (`schema_version`, cursors) |
//!
//! Values use the versioned encoding of [`super::encoding`].
//!
//! # Concurrency
//! A SIM write is a compare-and-swap on its revision, done under a striped mutex (one of
//! [`STRIPES`], by IMSI hash) so that read-check-write is atomic against other writers of that
//! SIM. Batches touching several SIMs take their stripes in ascending order (no deadlock). The
//! whole batch is one RocksDB `WriteBatch`: all or nothing, also across a crash.
//!
//! Last-seen updates are buffered in memory and written every second (coalesced per SIM); reads
//! merge the buffer, so they are visible at once. They are informational and may lose the last
//! second on a crash; bindings never are buffered.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::Path;

mod checkpoint;
pub use checkpoint::count_sims;
pub mod export;
mod fingerprint;
mod read;
pub mod replica;
pub use fingerprint::{FamilyPrint, Fingerprint};
mod write;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode,
    Options, WriteOptions, DB,
};

use super::encoding::{self, CURRENT_VERSION};
use super::{keys, Durability, StoreError};
use super::{Millis, ProfileRecord, SimRecord};
use crate::context::Imsi;
use crate::imei::Imei;

/// Number of striped SIM locks.
pub const STRIPES: usize = 1024;
const SEEN_SHARDS: usize = 64;
const CACHE_SHARDS: usize = 64;

const CF_SIMS: &str = "sims";
const CF_PROFILES: &str = "profiles";
const CF_MEMBERS: &str = "members";
const CF_EVENTS: &str = "events";
const CF_REQUESTS: &str = "requests";
const CF_BILLING: &str = "billing";
const CF_OUTBOX: &str = "outbox";
const CF_META: &str = "meta";
const ALL_CFS: [&str; 8] = [
    CF_SIMS,
    CF_PROFILES,
    CF_MEMBERS,
    CF_EVENTS,
    CF_REQUESTS,
    CF_BILLING,
    CF_OUTBOX,
    CF_META,
];

/// Tuning knobs (from `[node]`).
#[derive(Clone, Debug)]
pub struct RocksOptions {
    /// Shared block cache, MiB.
    pub block_cache_mb: usize,
    /// Decoded SIM records kept in memory (0 = none).
    pub sim_cache_entries: usize,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self {
            block_cache_mb: 256,
            sim_cache_entries: 2_000_000,
        }
    }
}

/// The RocksDB-backed [`crate::store::Store`].
pub struct RocksStore {
    inner: Arc<Inner>,
    /// Dropping it stops the last-seen flusher thread.
    _stop_flusher: mpsc::Sender<()>,
}

struct Inner {
    db: DB,
    /// Serialises read-check-write of SIM records; index by [`stripe_of`].
    stripes: Vec<Mutex<()>>,
    /// Profiles are few and read on every decision: kept in memory, written through.
    profiles: RwLock<HashMap<String, ProfileRecord>>,
    /// Decoded SIM records, read through and written through. Filled and changed only while
    /// holding the SIM's stripe (so a reader can never put back a value older than a write),
    /// read without it.
    sim_cache: Vec<RwLock<ImsiMap<SimRecord>>>,
    /// Most entries per cache shard (0 = no cache).
    sim_cache_per_shard: usize,
    /// Buffered last-seen per SIM, sharded by IMSI hash.
    seen: Vec<Mutex<ImsiMap<(Imei, Millis)>>>,
    /// Serialises sequence assignment with the write of a request, so the log has no holes.
    request_log: Mutex<()>,
    next_request: AtomicU64,
    next_outbox: AtomicU64,
    event_counter: AtomicU32,
    /// Serialises batches that compare or write meta values ([`crate::store::Op::ExpectMeta`]).
    meta_lock: Mutex<()>,
    /// Commits applied ([`crate::store::Coordination::applied`]).
    applied: AtomicU64,
    hasher: foldhash::fast::RandomState,
}

/// Every RocksDB error becomes a [`StoreError`] here, and is counted.
fn backend(e: rocksdb::Error) -> StoreError {
    metrics::counter!("imei_lockd_store_errors_total", "kind" => "backend").increment(1);
    StoreError::Backend(e.into_string())
}

/// Every undecodable stored value becomes a [`StoreError`] here, and is counted.
fn corrupt(key: &[u8], source: encoding::EncodingError) -> StoreError {
    metrics::counter!("imei_lockd_store_errors_total", "kind" => "corrupt").increment(1);
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    encoding::decode(bytes).map_err(|e| corrupt(key, e))
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

impl RocksStore {
    /// Opens (creating if needed) the store under `dir`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when RocksDB cannot open the directory, or the directory was
    /// written by a newer release.
    pub fn open(dir: &Path, opts: &RocksOptions) -> Result<Self, StoreError> {
        super::register_metrics();
        let cache = Cache::new_lru_cache(opts.block_cache_mb.max(8) * 1024 * 1024);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_keep_log_file_num(4);
        db_opts.increase_parallelism(2);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut bb = BlockBasedOptions::default();
            bb.set_block_cache(&cache);
            bb.set_bloom_filter(10.0, false);
            bb.set_cache_index_and_filter_blocks(true);
            bb.set_pin_l0_filter_and_index_blocks_in_cache(true);
            let mut o = Options::default();
            o.set_block_based_table_factory(&bb);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            if *name == CF_SIMS {
                bb.set_block_size(4096);
                o.set_block_based_table_factory(&bb);
            }
            // Point lookups that mostly miss (a new SIM, a SIM not charged yet this month, a
            // cluster cache's tombstone of a SIM never deleted): a memtable bloom filter answers
            // them without a skip-list search.
            if *name == CF_SIMS || *name == CF_BILLING || *name == CF_META {
                o.set_memtable_whole_key_filtering(true);
                o.set_memtable_prefix_bloom_ratio(0.1);
            }
            ColumnFamilyDescriptor::new(*name, o)
        });
        let db = DB::open_cf_descriptors(&db_opts, dir, cfs).map_err(backend)?;

        let inner = Inner {
            db,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            profiles: RwLock::new(HashMap::new()),
            seen: (0..SEEN_SHARDS)
                .map(|_| Mutex::new(ImsiMap::default()))
                .collect(),
            sim_cache: (0..CACHE_SHARDS)
                .map(|_| RwLock::new(ImsiMap::default()))
                .collect(),
            sim_cache_per_shard: opts.sim_cache_entries.div_ceil(CACHE_SHARDS),
            request_log: Mutex::new(()),
            next_request: AtomicU64::new(1),
            next_outbox: AtomicU64::new(1),
            // Event keys are (IMSI, time, counter): a start that differs per open keeps two
            // events of one SIM in the same millisecond apart across restarts.
            event_counter: AtomicU32::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos()),
            ),
            hasher: Default::default(),
            meta_lock: Mutex::new(()),
            applied: AtomicU64::new(0),
        };
        inner.check_schema()?;
        inner.load_profiles()?;
        let last_req = inner.last_u64_key(CF_REQUESTS)?;
        inner.next_request.store(last_req + 1, Ordering::SeqCst);
        let last_out = inner.last_u64_key(CF_OUTBOX)?;
        inner.next_outbox.store(last_out + 1, Ordering::SeqCst);

        let inner = Arc::new(inner);
        let (tx, rx) = mpsc::channel::<()>();
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn(move || flusher(weak, rx))
            .map_err(|e| StoreError::Backend(format!("cannot start flusher thread: {e}")))?;
        Ok(Self {
            inner,
            _stop_flusher: tx,
        })
    }

    /// Flushes every memtable to SST files and compacts the SIM table (bulk loads, benchmarks).
    ///
    /// # Errors
    /// [`StoreError::Backend`] from RocksDB.
    pub fn compact(&self) -> Result<(), StoreError> {
        let inner = &*self.inner;
        inner.flush_seen()?;
        for name in ALL_CFS {
            let cf = inner.cf(name)?;
            inner.db.flush_cf(&cf).map_err(backend)?;
        }
        let sims = inner.cf(CF_SIMS)?;
        inner
            .db
            .compact_range_cf(&sims, None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }
}

/// Writes buffered last-seen once a second until the store is dropped.
fn flusher(weak: Weak<Inner>, stop: mpsc::Receiver<()>) {
    loop {
        match stop.recv_timeout(Duration::from_secs(1)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let Some(inner) = weak.upgrade() else { return };
        if let Err(e) = inner.flush_seen() {
            tracing::warn!(error = %e, "writing last-seen IMEIs failed; will retry");
        }
    }
}

impl Inner {
    fn cf(&self, name: &str) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Backend(format!("column family {name} missing")))
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let meta = self.cf(CF_META)?;
        match self.db.get_cf(&meta, keys::SCHEMA).map_err(backend)? {
            Some(v) => match v.first() {
                Some(&ver) if ver <= CURRENT_VERSION => Ok(()),
                _ => Err(StoreError::Backend(format!(
                    "data directory has schema version {v:?}; this release reads up to {CURRENT_VERSION}"
                ))),
            },
            None => self
                .db
                .put_cf(&meta, keys::SCHEMA, [CURRENT_VERSION])
                .map_err(backend),
        }
    }

    fn load_profiles(&self) -> Result<(), StoreError> {
        let cf = self.cf(CF_PROFILES)?;
        let mut map = HashMap::new();
        for item in self.db.iterator_cf(&cf, IteratorMode::Start) {
            let (k, v) = item.map_err(backend)?;
            let p: ProfileRecord = decode(&k, &v)?;
            map.insert(p.name.clone(), p);
        }
        *self.profiles.write() = map;
        Ok(())
    }

    fn last_u64_key(&self, cf: &str) -> Result<u64, StoreError> {
        let cf = self.cf(cf)?;
        let mut it = self.db.iterator_cf(&cf, IteratorMode::End);
        match it.next() {
            Some(item) => {
                let (k, _) = item.map_err(backend)?;
                Ok(be_u64(&k).unwrap_or(0))
            }
            None => Ok(0),
        }
    }

    fn hash_of(&self, imsi: &Imsi) -> usize {
        self.hasher.hash_one(imsi) as usize
    }

    fn stripe_of(&self, imsi: &Imsi) -> usize {
        self.hash_of(imsi) % STRIPES
    }

    fn seen_shard(&self, imsi: &Imsi) -> &Mutex<ImsiMap<(Imei, Millis)>> {
        let i = (self.hash_of(imsi) >> 16) % SEEN_SHARDS;
        // `i < SEEN_SHARDS == self.seen.len()`.
        &self.seen[i]
    }

    fn cache_shard(&self, imsi: &Imsi) -> &RwLock<ImsiMap<SimRecord>> {
        let i = (self.hash_of(imsi) >> 24) % CACHE_SHARDS;
        // `i < CACHE_SHARDS == self.sim_cache.len()`.
        &self.sim_cache[i]
    }

    /// The SIM as stored: from the cache, else from RocksDB (then cached). Must be called
    /// WITHOUT the SIM's stripe held; takes it on a miss.
    fn cached_sim(&self, imsi: &Imsi) -> Result<Option<SimRecord>, StoreError> {
        if self.sim_cache_per_shard == 0 {
            return self.read_sim(imsi);
        }
        if let Some(rec) = self.cache_shard(imsi).read().get(imsi) {
            return Ok(Some(rec.clone()));
        }
        let _stripe = self.stripes[self.stripe_of(imsi)].lock();
        self.cached_sim_locked(imsi)
    }

    /// As [`Self::cached_sim`], with the SIM's stripe already held by the caller.
    fn cached_sim_locked(&self, imsi: &Imsi) -> Result<Option<SimRecord>, StoreError> {
        if self.sim_cache_per_shard == 0 {
            return self.read_sim(imsi);
        }
        if let Some(rec) = self.cache_shard(imsi).read().get(imsi) {
            return Ok(Some(rec.clone()));
        }
        let rec = self.read_sim(imsi)?;
        if let Some(r) = &rec {
            self.cache_put(r.clone());
        }
        Ok(rec)
    }

    /// Caches a record just written (stripe held by the caller).
    fn cache_put(&self, rec: SimRecord) {
        if self.sim_cache_per_shard == 0 {
            return;
        }
        let mut shard = self.cache_shard(&rec.imsi).write();
        if shard.len() >= self.sim_cache_per_shard && !shard.contains_key(&rec.imsi) {
            // Full: drop an arbitrary entry (hash order is effectively random).
            if let Some(victim) = shard.keys().next().copied() {
                shard.remove(&victim);
            }
        }
        shard.insert(rec.imsi, rec);
    }

    /// Forgets a deleted record (stripe held by the caller).
    fn cache_remove(&self, imsi: &Imsi) {
        if self.sim_cache_per_shard > 0 {
            self.cache_shard(imsi).write().remove(imsi);
        }
    }

    /// `sim` with the last-seen IMEI still buffered for it, when that one is newer.
    fn with_seen(&self, mut sim: SimRecord) -> SimRecord {
        if let Some(&(imei, at)) = self.seen_shard(&sim.imsi).lock().get(&sim.imsi) {
            if sim.last_seen_at.is_none_or(|t| t <= at) {
                sim.last_seen = Some(imei);
                sim.last_seen_at = Some(at);
            }
        }
        sim
    }

    fn read_sim(&self, imsi: &Imsi) -> Result<Option<SimRecord>, StoreError> {
        let cf = self.cf(CF_SIMS)?;
        match self
            .db
            .get_pinned_cf(&cf, imsi.as_bytes())
            .map_err(backend)?
        {
            Some(v) => decode(imsi.as_bytes(), &v).map(Some),
            None => Ok(None),
        }
    }

    fn flush_seen(&self) -> Result<(), StoreError> {
        let sims = self.cf(CF_SIMS)?;
        for shard in &self.seen {
            let drained: Vec<_> = shard.lock().drain().collect();
            // Each SIM is read, merged and written under its stripe, so a concurrent
            // compare-and-swap (a new binding) can never be overwritten by an older copy.
            for (imsi, (imei, at)) in drained {
                let _stripe = self.stripes[self.stripe_of(&imsi)].lock();
                let Some(mut sim) = self.cached_sim_locked(&imsi)? else {
                    continue;
                };
                if sim.last_seen_at.is_some_and(|t| t > at) {
                    continue;
                }
                sim.last_seen = Some(imei);
                sim.last_seen_at = Some(at);
                self.db
                    .put_cf_opt(
                        &sims,
                        imsi.as_bytes(),
                        encoding::encode(&sim),
                        &write_opts(Durability::Buffered),
                    )
                    .map_err(backend)?;
                self.cache_put(sim);
            }
        }
        Ok(())
    }

    fn prefix_scan<T: serde::de::DeserializeOwned>(
        &self,
        cf: &str,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue<T>>, StoreError> {
        let cf = self.cf(cf)?;
        let mut out = Vec::new();
        let it = self
            .db
            .iterator_cf(&cf, IteratorMode::From(start, Direction::Forward));
        for item in it {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(backend)?;
            if !k.starts_with(prefix) {
                break;
            }
            let val = decode(&k, &v)?;
            out.push((k, val));
        }
        Ok(out)
    }
}

/// In-memory maps keyed by IMSI (foldhash: far cheaper than SipHash on the request path).
type ImsiMap<V> = HashMap<Imsi, V, foldhash::fast::RandomState>;

/// A raw key with its decoded value.
type KeyValue<T> = (Box<[u8]>, T);

fn write_opts(d: Durability) -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(d == Durability::Synced);
    w
}

fn sim_key_after(after: Option<&Imsi>) -> Vec<u8> {
    after.map(|i| i.as_bytes().to_vec()).unwrap_or_default()
}

impl Drop for RocksStore {
    fn drop(&mut self) {
        if let Err(e) = self.inner.flush_seen() {
            tracing::warn!(error = %e, "writing last-seen IMEIs at close failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Batch, ImeiManagement};
    use crate::store::{Commit, Ledger as _, LocalRead as _};

    fn imsi(i: u32) -> Imsi {
        format!("00101{i:010}").parse().unwrap()
    }

    /// A cache smaller than the data set: every read still returns what was last written,
    /// across evictions, CAS writes, last-seen flushes, deletes and a reopen.
    #[test]
    fn small_cache_never_serves_stale_records() {
        let dir = tempfile::tempdir().unwrap();
        let opts = RocksOptions {
            block_cache_mb: 8,
            sim_cache_entries: 64,
        };
        let store = RocksStore::open(dir.path(), &opts).unwrap();
        for i in 0..1000 {
            let mut s = SimRecord::new(imsi(i));
            s.value = Some(ImeiManagement::Lock);
            let mut b = Batch::new();
            b.put_sim(s);
            assert_eq!(
                store.write(b, Durability::Buffered).unwrap(),
                Commit::Committed
            );
        }
        let dev = |i: u32| Imei::from_u64(35_000_000_000_000 + u64::from(i)).unwrap();
        for i in 0..1000 {
            let mut s = store.sim(&imsi(i)).unwrap().unwrap();
            assert_eq!(s.rev, 1);
            store.note_seen(&imsi(i), dev(i + 1), 5).unwrap();
            s.bound = Some(dev(i));
            let mut b = Batch::new();
            b.put_sim(s.clone());
            assert_eq!(
                store.write(b, Durability::Buffered).unwrap(),
                Commit::Committed
            );
            // A second CAS from the stale copy loses.
            let mut b = Batch::new();
            b.put_sim(s);
            assert_eq!(
                store.write(b, Durability::Buffered).unwrap(),
                Commit::Conflict
            );
        }
        store.inner.flush_seen().unwrap();
        let mut b = Batch::new();
        b.delete_sim(&store.sim(&imsi(7)).unwrap().unwrap());
        assert_eq!(
            store.write(b, Durability::Buffered).unwrap(),
            Commit::Committed
        );
        let check = |store: &RocksStore| {
            for i in 0..1000 {
                let got = store.sim(&imsi(i)).unwrap();
                if i == 7 {
                    assert!(got.is_none());
                    continue;
                }
                let s = got.unwrap();
                // Last-seen does not bump the revision (it is no compare-and-swap token).
                assert_eq!((s.rev, s.bound), (2, Some(dev(i))), "{i}");
                assert_eq!(s.last_seen, Some(dev(i + 1)), "{i}");
            }
        };
        check(&store);
        drop(store);
        check(&RocksStore::open(dir.path(), &opts).unwrap());
    }

    /// Disk bytes count the whole data directory: records still only in the WAL count too, and
    /// the figure grows with what is written.
    #[test]
    fn disk_bytes_count_wal_and_sst_files() {
        let dir = tempfile::tempdir().unwrap();
        let opts = RocksOptions {
            block_cache_mb: 8,
            sim_cache_entries: 0,
        };
        let store = RocksStore::open(dir.path(), &opts).unwrap();
        let empty = store.approximate_counts().disk_bytes;
        assert!(
            empty > 0,
            "a new data directory has its manifest and options files"
        );
        for i in 0..2000 {
            let mut b = Batch::new();
            b.put_sim(SimRecord::new(imsi(i)));
            assert_eq!(
                store.write(b, Durability::Buffered).unwrap(),
                Commit::Committed
            );
        }
        let in_wal = store.approximate_counts().disk_bytes;
        assert!(
            in_wal > empty + 2000 * 8,
            "WAL counted: {empty} -> {in_wal}"
        );
        let files: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum();
        assert_eq!(in_wal, files);
    }
}
