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

use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode,
    Options, WriteBatch, WriteOptions, DB,
};

use super::encoding::{self, CURRENT_VERSION};
use super::{keys, Batch, Durability, Op, Store, StoreCounts, StoreError};
use super::{Charge, Event, Millis, Operation, OutboxEntry, ProfileRecord, RequestRecord};
use super::{RequestStatus, SimRecord};
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

/// The RocksDB-backed [`Store`].
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

impl Store for RocksStore {
    fn sim(&self, imsi: &Imsi) -> Result<Option<SimRecord>, StoreError> {
        let inner = &*self.inner;
        Ok(inner.cached_sim(imsi)?.map(|sim| inner.with_seen(sim)))
    }

    fn sim_in_memory(&self, imsi: &Imsi) -> Option<SimRecord> {
        let inner = &*self.inner;
        if inner.sim_cache_per_shard == 0 {
            return None;
        }
        let sim = inner.cache_shard(imsi).read().get(imsi).cloned()?;
        Some(inner.with_seen(sim))
    }

    fn profile(&self, name: &str) -> Result<Option<ProfileRecord>, StoreError> {
        Ok(self.inner.profiles.read().get(name).cloned())
    }

    fn sims_of_profile(
        &self,
        name: &str,
        after: Option<&Imsi>,
        limit: usize,
    ) -> Result<Vec<Imsi>, StoreError> {
        let prefix = keys::member_prefix(name);
        let start = match after {
            Some(i) => keys::member(name, i),
            None => prefix.clone(),
        };
        let cf = self.inner.cf(CF_MEMBERS)?;
        let mut out = Vec::new();
        let it = self
            .inner
            .db
            .iterator_cf(&cf, IteratorMode::From(&start, Direction::Forward));
        for item in it {
            let (k, _) = item.map_err(backend)?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            if after.is_some() && *k == *start {
                continue;
            }
            let raw = k.get(prefix.len()..).unwrap_or_default();
            let imsi = Imsi::parse(raw).map_err(|_| corrupt(&k, encoding::EncodingError::Empty))?;
            out.push(imsi);
        }
        Ok(out)
    }

    fn scan_sims(
        &self,
        prefix: &str,
        after: Option<&Imsi>,
        limit: usize,
    ) -> Result<Vec<SimRecord>, StoreError> {
        let inner = &*self.inner;
        // Start at the prefix or just after `after`, whichever is later in key order.
        let after_key = sim_key_after(after);
        let start: &[u8] = if after_key.as_slice() > prefix.as_bytes() {
            &after_key
        } else {
            prefix.as_bytes()
        };
        let rows = inner.prefix_scan::<SimRecord>(CF_SIMS, prefix.as_bytes(), start, limit + 1)?;
        Ok(rows
            .into_iter()
            .filter(|(k, _)| after.is_none() || **k != *after_key)
            .take(limit)
            .map(|(_, v)| inner.with_seen(v))
            .collect())
    }

    fn profiles(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ProfileRecord>, StoreError> {
        Ok(super::profiles_page(
            self.inner.profiles.read().values(),
            after,
            limit,
        ))
    }

    fn profile_member_count(&self, name: &str) -> Result<u64, StoreError> {
        let prefix = keys::member_prefix(name);
        let cf = self.inner.cf(CF_MEMBERS)?;
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_range(rocksdb::PrefixRange(prefix.as_slice()));
        let mut it = self.inner.db.raw_iterator_cf_opt(&cf, opts);
        it.seek(&prefix);
        let mut n = 0u64;
        while it.valid() {
            n += 1;
            it.next();
        }
        it.status().map_err(backend)?;
        Ok(n)
    }

    fn write(&self, batch: Batch, durability: Durability) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let stripes: BTreeSet<usize> = batch
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::PutSim { sim, .. } => Some(inner.stripe_of(&sim.imsi)),
                Op::DeleteSim { imsi, .. } => Some(inner.stripe_of(imsi)),
                _ => None,
            })
            .collect();
        // Ascending order: two batches can never wait on each other in a cycle.
        let _guards: Vec<_> = stripes.iter().map(|&s| inner.stripes[s].lock()).collect();

        let sims = inner.cf(CF_SIMS)?;
        let members = inner.cf(CF_MEMBERS)?;
        let mut wb = WriteBatch::default();
        let mut profiles_changed = Vec::new();
        // Within one batch a SIM may appear twice (import): later ops see earlier ones.
        let mut pending: HashMap<Imsi, Option<SimRecord>> = HashMap::new();
        for op in batch.ops {
            match op {
                Op::PutSim {
                    mut sim,
                    expect_rev,
                } => {
                    let current = match pending.get(&sim.imsi) {
                        Some(c) => c.clone(),
                        None => inner.cached_sim_locked(&sim.imsi)?,
                    };
                    let current_rev = current.as_ref().map_or(0, |c| c.rev);
                    if current_rev != expect_rev {
                        return Err(StoreError::Conflict(sim.imsi));
                    }
                    if let Some(cur) = &current {
                        // Never move last-seen backwards (the flusher may have written newer).
                        if cur.last_seen_at > sim.last_seen_at {
                            sim.last_seen = cur.last_seen;
                            sim.last_seen_at = cur.last_seen_at;
                        }
                    }
                    let old_profile = current.as_ref().and_then(|c| c.profile.clone());
                    if old_profile != sim.profile {
                        if let Some(p) = &old_profile {
                            wb.delete_cf(&members, keys::member(p, &sim.imsi));
                        }
                        if let Some(p) = &sim.profile {
                            wb.put_cf(&members, keys::member(p, &sim.imsi), []);
                        }
                    }
                    wb.put_cf(&sims, sim.imsi.as_bytes(), encoding::encode(&sim));
                    pending.insert(sim.imsi, Some(sim));
                }
                Op::DeleteSim { imsi, expect_rev } => {
                    let current = match pending.get(&imsi) {
                        Some(c) => c.clone(),
                        None => inner.cached_sim_locked(&imsi)?,
                    };
                    if current.as_ref().map_or(0, |c| c.rev) != expect_rev {
                        return Err(StoreError::Conflict(imsi));
                    }
                    if let Some(p) = current.as_ref().and_then(|c| c.profile.as_ref()) {
                        wb.delete_cf(&members, keys::member(p, &imsi));
                    }
                    wb.delete_cf(&sims, imsi.as_bytes());
                    pending.insert(imsi, None);
                }
                Op::PutProfile(p) => {
                    let cf = inner.cf(CF_PROFILES)?;
                    wb.put_cf(&cf, p.name.as_bytes(), encoding::encode(&p));
                    profiles_changed.push(p);
                }
                Op::PutEvent(ev) => {
                    let cf = inner.cf(CF_EVENTS)?;
                    let n = inner.event_counter.fetch_add(1, Ordering::Relaxed);
                    wb.put_cf(&cf, keys::event(&ev.imsi, ev.at, n), encoding::encode(&ev));
                }
                Op::PutRequest(r) => {
                    let cf = inner.cf(CF_REQUESTS)?;
                    wb.put_cf(&cf, r.seq.to_be_bytes(), encoding::encode(&r));
                }
                Op::PutCharge(c) => {
                    let cf = inner.cf(CF_BILLING)?;
                    wb.put_cf(&cf, keys::charge(&c.month, &c.imsi), encoding::encode(&c));
                }
                Op::PutOutbox { id, entry } => {
                    let cf = inner.cf(CF_OUTBOX)?;
                    wb.put_cf(&cf, id.to_be_bytes(), encoding::encode(&entry));
                }
                Op::DeleteOutbox { id } => {
                    let cf = inner.cf(CF_OUTBOX)?;
                    wb.delete_cf(&cf, id.to_be_bytes());
                }
                Op::PutMeta { key, value } => {
                    let cf = inner.cf(CF_META)?;
                    wb.put_cf(&cf, key.as_bytes(), value);
                }
            }
        }
        inner
            .db
            .write_opt(wb, &write_opts(durability))
            .map_err(backend)?;
        // Still under the stripes: the cache follows the store exactly.
        for (imsi, rec) in pending {
            match rec {
                Some(r) => inner.cache_put(r),
                None => inner.cache_remove(&imsi),
            }
        }
        if !profiles_changed.is_empty() {
            let mut map = inner.profiles.write();
            for p in profiles_changed {
                map.insert(p.name.clone(), p);
            }
        }
        Ok(())
    }

    fn note_seen(&self, imsi: &Imsi, imei: Imei, at: Millis) -> Result<(), StoreError> {
        self.inner.seen_shard(imsi).lock().insert(*imsi, (imei, at));
        Ok(())
    }

    fn events(&self, imsi: &Imsi, limit: usize) -> Result<Vec<Event>, StoreError> {
        let cf = self.inner.cf(CF_EVENTS)?;
        let prefix = keys::event_prefix(imsi);
        let mut end = prefix.clone();
        end.extend_from_slice(&[0xff; 12]);
        let mut out = Vec::new();
        let it = self
            .inner
            .db
            .iterator_cf(&cf, IteratorMode::From(&end, Direction::Reverse));
        for item in it {
            let (k, v) = item.map_err(backend)?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    fn submit_request(&self, op: Operation, at: Millis) -> Result<RequestRecord, StoreError> {
        let inner = &*self.inner;
        let _log = inner.request_log.lock();
        let seq = inner.next_request.load(Ordering::SeqCst);
        let rec = RequestRecord {
            seq,
            op,
            status: RequestStatus::Pending,
            error: None,
            submitted_at: at,
            processed_at: None,
        };
        let cf = inner.cf(CF_REQUESTS)?;
        inner
            .db
            .put_cf_opt(
                &cf,
                seq.to_be_bytes(),
                encoding::encode(&rec),
                &write_opts(Durability::Synced),
            )
            .map_err(backend)?;
        inner.next_request.store(seq + 1, Ordering::SeqCst);
        Ok(rec)
    }

    fn last_request_seq(&self) -> u64 {
        self.inner
            .next_request
            .load(Ordering::SeqCst)
            .saturating_sub(1)
    }

    fn request(&self, seq: u64) -> Result<Option<RequestRecord>, StoreError> {
        let cf = self.inner.cf(CF_REQUESTS)?;
        let key = seq.to_be_bytes();
        match self.inner.db.get_pinned_cf(&cf, key).map_err(backend)? {
            Some(v) => decode(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn requests_after(&self, after: u64, limit: usize) -> Result<Vec<RequestRecord>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        Ok(self
            .inner
            .prefix_scan::<RequestRecord>(CF_REQUESTS, b"", &start, limit)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    fn charges(&self, month: &str) -> Result<Vec<Charge>, StoreError> {
        let prefix = keys::charge_prefix(month);
        Ok(self
            .inner
            .prefix_scan::<Charge>(CF_BILLING, &prefix, &prefix, usize::MAX)?
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }

    fn charge(&self, month: &str, imsi: &Imsi) -> Result<Option<Charge>, StoreError> {
        let cf = self.inner.cf(CF_BILLING)?;
        let key = keys::charge(month, imsi);
        match self.inner.db.get_pinned_cf(&cf, &key).map_err(backend)? {
            Some(v) => decode(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn outbox(&self, limit: usize) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        Ok(self
            .inner
            .prefix_scan::<OutboxEntry>(CF_OUTBOX, b"", b"", limit)?
            .into_iter()
            .filter_map(|(k, e)| Some((be_u64(&k)?, e)))
            .collect())
    }

    fn next_outbox_id(&self) -> u64 {
        self.inner.next_outbox.fetch_add(1, Ordering::SeqCst)
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let cf = self.inner.cf(CF_META)?;
        self.inner.db.get_cf(&cf, key).map_err(backend)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush_seen()?;
        self.inner.db.flush_wal(true).map_err(backend)
    }

    fn approximate_counts(&self) -> StoreCounts {
        let prop = |cf: &str, name: &str| -> u64 {
            self.inner
                .cf(cf)
                .ok()
                .and_then(|h| self.inner.db.property_int_value_cf(&h, name).ok().flatten())
                .unwrap_or(0)
        };
        // Every file of the data directory (SST files, WAL, manifest, options): what the store
        // holds on disk, including what is not yet compacted into SST files.
        let disk = std::fs::read_dir(self.inner.db.path())
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .filter(std::fs::Metadata::is_file)
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        StoreCounts {
            sims: prop(CF_SIMS, "rocksdb.estimate-num-keys"),
            events: prop(CF_EVENTS, "rocksdb.estimate-num-keys"),
            outbox: prop(CF_OUTBOX, "rocksdb.estimate-num-keys"),
            disk_bytes: disk,
        }
    }
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
            store.write(b, Durability::Buffered).unwrap();
        }
        let dev = |i: u32| Imei::from_u64(35_000_000_000_000 + u64::from(i)).unwrap();
        for i in 0..1000 {
            let mut s = store.sim(&imsi(i)).unwrap().unwrap();
            assert_eq!(s.rev, 1);
            store.note_seen(&imsi(i), dev(i + 1), 5).unwrap();
            s.bound = Some(dev(i));
            let mut b = Batch::new();
            b.put_sim(s.clone());
            store.write(b, Durability::Buffered).unwrap();
            // A second CAS from the stale copy loses.
            let mut b = Batch::new();
            b.put_sim(s);
            assert!(matches!(
                store.write(b, Durability::Buffered),
                Err(StoreError::Conflict(_))
            ));
        }
        store.inner.flush_seen().unwrap();
        let mut b = Batch::new();
        b.delete_sim(&store.sim(&imsi(7)).unwrap().unwrap());
        store.write(b, Durability::Buffered).unwrap();
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
            store.write(b, Durability::Buffered).unwrap();
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
