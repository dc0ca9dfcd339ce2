//! Cluster mode: etcd is the source of truth, each node keeps a local RocksDB cache of it.
//!
//! - [`LocalRead`]: the node's cache ([`RocksStore`] in `node.data_dir`), fed by one watch on the
//!   prefix ([`follow`]): each watch response's changes and the revision they bring the cache to
//!   are one write. A restart resumes at that revision + 1; a compacted revision, or a SIM whose
//!   `prev_kv` does not continue the cached revision, rebuilds the cache from a paginated read at
//!   one fixed revision.
//! - [`Ledger`]: every batch is one etcd transaction. A SIM write compares the key's
//!   `mod_revision` with the one the caller read (the cache holds it as the record's `rev`; a
//!   SIM still only in its import bundle compares that it has no key of its own, see
//!   [`layout`]); an [`Op::ExpectMeta`] compares a value. A commit returns once this node's cache has applied it
//!   (read-your-writes); a lost compare once the cache shows the newer state; a transport error
//!   is [`Commit::Unknown`].
//! - [`Coordination`]: a lease per node ([`lease`]); the node key carries how far the node has
//!   applied and whether it serves; singletons are lease-attached keys created if absent.
//!
//! This module does not decide anything and knows no protocol; it does not compact etcd (the
//! operator runs etcd with `--auto-compaction-retention`; the cache survives compaction by
//! rebuilding).

mod applied;
mod bundle;
mod charges;
mod connect;
mod coordination;
mod follow;
pub mod import;
pub mod layout;
mod lease;
mod ledger;
mod unsent;
mod verify;
pub use verify::{FamilyCheck, Verification};

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::Client;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use super::rocks::{RocksOptions, RocksStore};
use super::{
    Charge, Event, EventId, LocalRead, Millis, OutboxEntry, ProfileRecord, RequestRecord,
    SimRecord, StoreCounts, StoreError,
};
use crate::context::Imsi;
use crate::imei::Imei;
pub(crate) use connect::connect;
use layout::{Layout, NodeRecord};

/// Meta key of the cache: the etcd revision it has applied (8 octets BE; 0 or absent: rebuild).
const POSITION_KEY: &str = "etcd_revision";
/// How to reach etcd and who this node is (from `[cluster]`).
#[derive(Clone, Debug)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub node_name: String,
    pub lease_ttl: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub credentials: Option<(String, String)>,
    /// PEM files: CA, client certificate and key.
    pub ca_file: Option<std::path::PathBuf>,
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
    /// Most operations in one transaction (etcd's `--max-txn-ops`, default 128).
    pub max_txn_ops: usize,
    /// How long another serving node may stay behind a change this node waits for before its
    /// lease is revoked ([`Coordination::wait_everywhere`]).
    pub max_lag: Duration,
    /// How long events are kept in etcd.
    pub event_retention: Duration,
}

impl Default for EtcdSettings {
    /// The `[cluster]` defaults, on `http://127.0.0.1:2379` under `/imei-lockd`.
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/imei-lockd".into(),
            node_name: "node".into(),
            lease_ttl: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
            credentials: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            max_txn_ops: 128,
            max_lag: Duration::from_secs(1),
            event_retention: Duration::from_secs(90 * 86_400),
        }
    }
}

/// Counts an etcd call's latency and failure.
fn observe(op: &'static str, started: Instant, ok: bool) {
    metrics::histogram!("imei_lockd_etcd_request_duration_seconds", "op" => op)
        .record(started.elapsed().as_secs_f64());
    if !ok {
        metrics::counter!("imei_lockd_store_errors_total", "kind" => "backend").increment(1);
    }
}

fn etcd_err(e: etcd_client::Error) -> StoreError {
    StoreError::Backend(format!("etcd: {e}"))
}

/// State shared by the store and its background tasks.
pub(crate) struct Shared {
    cache: RocksStore,
    client: Client,
    layout: Layout,
    settings: EtcdSettings,
    /// Last etcd revision the cache applied (any key under the prefix), and who waits for it.
    applied_rev: applied::Applied,
    /// Revision of the last data change applied (not node or lock keys): what nodes publish.
    data_rev: AtomicU64,
    data_changed: Notify,
    /// The lease and until when it is valid by this node's monotonic clock.
    lease: Mutex<LeaseState>,
    /// The cache is being rebuilt: not serving.
    rebuilding: AtomicBool,
    /// Revision of this node's "serving" publication for its current lease (0: none yet).
    joined_at: AtomicU64,
    /// The revision this node must reach before it may publish itself serving.
    catch_up_to: AtomicU64,
    state_changed: Notify,
    nodes: RwLock<BTreeMap<String, NodeRecord>>,
    nodes_changed: Notify,
    locks: RwLock<HashMap<String, String>>,
    /// Nodes seen behind a position, by lease ([`coordination`]).
    lagging: Mutex<HashMap<i64, Lagging>>,
    /// Leases this node revoked, by lease: waited for until the TTL has surely passed.
    evicted: Mutex<HashMap<i64, Evicted>>,
    /// Whether this node's own view of etcd is live, and since when.
    health: Mutex<coordination::Health>,
    /// Last-seen IMEIs waiting to be written to etcd.
    seen: Mutex<HashMap<Imsi, (Imei, Millis)>>,
    outbox_counter: AtomicU32,
    node_hash: u64,
    stopped: AtomicBool,
}

/// Since when a node has stayed behind `position`.
#[derive(Clone, Copy, Debug)]
struct Lagging {
    position: u64,
    since: Instant,
}

/// A revoked lease whose node may believe in it until `until`.
#[derive(Clone, Copy, Debug)]
struct Evicted {
    until: Instant,
}

#[derive(Clone, Copy, Debug, Default)]
struct LeaseState {
    id: i64,
    valid_until: Option<Instant>,
}

impl Shared {
    fn lease_valid(&self) -> bool {
        self.lease
            .lock()
            .valid_until
            .is_some_and(|t| Instant::now() < t)
    }

    fn lease_id(&self) -> i64 {
        self.lease.lock().id
    }

    fn applied(&self) -> u64 {
        self.applied_rev.get()
    }

    /// Waits (at most `timeout`) until the cache has applied `rev`.
    async fn wait_applied(&self, rev: u64, timeout: Duration) -> bool {
        self.applied_rev.wait(rev, timeout).await
    }

    fn serving(&self) -> bool {
        let joined = self.joined_at.load(Ordering::SeqCst);
        self.lease_valid()
            && !self.rebuilding.load(Ordering::SeqCst)
            && joined > 0
            && self.applied() >= joined
    }
}

/// The cluster store of one node.
pub struct EtcdStore {
    shared: Arc<Shared>,
}

impl EtcdStore {
    /// Opens the cache under `dir`, connects to etcd, and starts following it (the watch, the
    /// lease, the last-seen writer). The node serves once its cache has caught up.
    ///
    /// # Errors
    /// The cache cannot open, or etcd cannot be reached within the connect timeout.
    pub async fn open(
        dir: &Path,
        rocks: &RocksOptions,
        settings: EtcdSettings,
    ) -> Result<Self, StoreError> {
        let cache = RocksStore::open(dir, rocks)?;
        let client = connect(&settings).await?;
        let position = cache.meta_u64(POSITION_KEY)?;
        let node_hash = {
            use std::hash::{BuildHasher, Hasher};
            let mut h =
                std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().build_hasher();
            h.write(settings.node_name.as_bytes());
            h.finish()
        };
        register_metrics();
        let applied_rev = applied::Applied::new(position);
        let shared = Arc::new(Shared {
            cache,
            client,
            layout: Layout::new(&settings.prefix),
            settings,
            applied_rev,
            data_rev: AtomicU64::new(position),
            data_changed: Notify::new(),
            lease: Mutex::new(LeaseState::default()),
            rebuilding: AtomicBool::new(false),
            joined_at: AtomicU64::new(0),
            catch_up_to: AtomicU64::new(u64::MAX),
            state_changed: Notify::new(),
            nodes: RwLock::new(BTreeMap::new()),
            nodes_changed: Notify::new(),
            locks: RwLock::new(HashMap::new()),
            lagging: Mutex::new(HashMap::new()),
            evicted: Mutex::new(HashMap::new()),
            health: Mutex::new(coordination::Health::default()),
            seen: Mutex::new(HashMap::new()),
            outbox_counter: AtomicU32::new(0),
            node_hash,
            stopped: AtomicBool::new(false),
        });
        tokio::spawn(follow::run(shared.clone()));
        tokio::spawn(lease::run(shared.clone()));
        tokio::spawn(lease::publish(shared.clone()));
        tokio::spawn(lease::write_seen(shared.clone()));
        tracing::info!(node = %shared.settings.node_name, prefix = %shared.settings.prefix,
            endpoints = ?shared.settings.endpoints, position, "cluster store open on etcd");
        Ok(Self { shared })
    }

    /// Waits until this node serves (tests, start-up), at most `timeout`.
    pub async fn wait_serving(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.shared.serving() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// This node's view of the cluster: nodes with their published state, singleton holders.
    pub fn cluster_view(&self) -> ClusterView {
        ClusterView {
            node: self.shared.settings.node_name.clone(),
            applied_rev: self.shared.applied(),
            data_rev: self.shared.data_rev.load(Ordering::SeqCst),
            serving: self.shared.serving(),
            nodes: self.shared.nodes.read().clone(),
            singletons: self.shared.locks.read().clone(),
        }
    }

    /// Compares this node's cache with a read of etcd at the revision the cache has applied.
    ///
    /// # Errors
    /// See [`verify::verify`].
    pub async fn verify(&self) -> Result<Verification, StoreError> {
        verify::verify(&self.shared).await
    }

    /// Stops the background tasks at their next step (the lease then expires on its own).
    pub fn stop(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.state_changed.notify_waiters();
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What [`EtcdStore::cluster_view`] returns.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClusterView {
    pub node: String,
    pub applied_rev: u64,
    pub data_rev: u64,
    pub serving: bool,
    pub nodes: BTreeMap<String, NodeRecord>,
    pub singletons: HashMap<String, String>,
}

/// Registers the cluster series at 0.
fn register_metrics() {
    for op in ["txn", "get", "put", "lease"] {
        let _ = metrics::histogram!("imei_lockd_etcd_request_duration_seconds", "op" => op);
    }
    for outcome in ["compacted", "gap", "start"] {
        metrics::counter!("imei_lockd_cache_rebuilds_total", "reason" => outcome).increment(0);
    }
    metrics::counter!("imei_lockd_cluster_evictions_total").increment(0);
    metrics::counter!("imei_lockd_etcd_unsent_retries_total").increment(0);
    for result in ["equal", "different"] {
        metrics::counter!("imei_lockd_cache_verifications_total", "result" => result).increment(0);
    }
    metrics::gauge!("imei_lockd_cluster_applied_revision").set(0.0);
    metrics::gauge!("imei_lockd_cluster_serving").set(0.0);
}

impl LocalRead for EtcdStore {
    fn sim(&self, imsi: &Imsi) -> Result<Option<SimRecord>, StoreError> {
        self.shared.cache.sim(imsi)
    }
    fn sim_in_memory(&self, imsi: &Imsi) -> Option<SimRecord> {
        self.shared.cache.sim_in_memory(imsi)
    }
    fn profile(&self, name: &str) -> Result<Option<ProfileRecord>, StoreError> {
        self.shared.cache.profile(name)
    }
    fn sims_of_profile(
        &self,
        name: &str,
        after: Option<&Imsi>,
        limit: usize,
    ) -> Result<Vec<Imsi>, StoreError> {
        self.shared.cache.sims_of_profile(name, after, limit)
    }
    fn scan_sims(
        &self,
        prefix: &str,
        after: Option<&Imsi>,
        limit: usize,
    ) -> Result<Vec<SimRecord>, StoreError> {
        self.shared.cache.scan_sims(prefix, after, limit)
    }
    fn profiles(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ProfileRecord>, StoreError> {
        self.shared.cache.profiles(after, limit)
    }
    fn profile_member_count(&self, name: &str) -> Result<u64, StoreError> {
        self.shared.cache.profile_member_count(name)
    }
    fn events(&self, imsi: &Imsi, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.shared.cache.events(imsi, limit)
    }
    fn expired_events(
        &self,
        before: Millis,
        after: Option<EventId>,
        scan: usize,
    ) -> Result<(Vec<EventId>, Option<EventId>), StoreError> {
        self.shared.cache.expired_events(before, after, scan)
    }
    fn request(&self, seq: u64) -> Result<Option<RequestRecord>, StoreError> {
        self.shared.cache.request(seq)
    }
    fn requests_after(&self, after: u64, limit: usize) -> Result<Vec<RequestRecord>, StoreError> {
        self.shared.cache.requests_after(after, limit)
    }
    fn last_request_seq(&self) -> u64 {
        self.shared.cache.last_request_seq()
    }
    fn charges(&self, month: &str) -> Result<Vec<Charge>, StoreError> {
        self.shared.cache.charges(month)
    }
    fn charges_page(
        &self,
        month: &str,
        after: Option<&Imsi>,
        limit: usize,
    ) -> Result<Vec<Charge>, StoreError> {
        self.shared.cache.charges_page(month, after, limit)
    }
    fn charge(&self, month: &str, imsi: &Imsi) -> Result<Option<Charge>, StoreError> {
        self.shared.cache.charge(month, imsi)
    }
    fn oldest_charge_month(&self) -> Result<Option<String>, StoreError> {
        self.shared.cache.oldest_charge_month()
    }
    fn outbox(&self, limit: usize) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        self.shared.cache.outbox(limit)
    }
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.shared.cache.meta(key)
    }
    fn approximate_counts(&self) -> StoreCounts {
        self.shared.cache.approximate_counts()
    }
    /// Refused: the state is etcd's, and this node's cache of it is rebuilt from etcd, not
    /// restored. The etcd cluster is backed up with its own tool.
    fn checkpoint(&self, _dir: &Path) -> Result<u64, super::checkpoint::CheckpointError> {
        Err(super::checkpoint::CheckpointError::Unsupported(
            "cluster mode (cluster.backend = \"etcd\"): the state lives in etcd and this \
             node's cache is no backup; take one with `etcdctl snapshot save FILE` on an etcd \
             member and restore it with `etcdctl snapshot restore`"
                .into(),
        ))
    }
}
