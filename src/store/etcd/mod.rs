//! Cluster mode: etcd is the source of truth, each node keeps a local RocksDB cache of it.
//!
//! - [`LocalRead`]: the node's cache ([`RocksStore`] in `node.data_dir`), fed by one watch on the
//!   prefix ([`follow`]): each watch response's changes and the revision they bring the cache to
//!   are one write. A restart resumes at that revision + 1; a compacted revision, or a SIM whose
//!   `prev_kv` does not continue the cached revision, rebuilds the cache from a paginated read at
//!   one fixed revision.
//! - [`Ledger`]: every batch is one etcd transaction. A SIM write compares the key's
//!   `mod_revision` with the one the caller read (the cache holds it as the record's `rev`); an
//!   [`Op::ExpectMeta`] compares a value. A commit returns once this node's cache has applied it
//!   (read-your-writes); a lost compare once the cache shows the newer state; a transport error
//!   is [`Commit::Unknown`].
//! - [`Coordination`]: a lease per node ([`lease`]); the node key carries how far the node has
//!   applied and whether it serves; singletons are lease-attached keys created if absent.
//!
//! This module does not decide anything and knows no protocol; it does not compact etcd (the
//! operator runs etcd with `--auto-compaction-retention`; the cache survives compaction by
//! rebuilding).

mod follow;
pub mod layout;
mod lease;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{watch, Notify};

use super::rocks::{RocksOptions, RocksStore};
use super::{
    encoding, Batch, BoxFuture, Charge, Commit, Coordination, Durability, Event, Ledger,
    LedgerFuture, LocalRead, Millis, Op, Operation, OutboxEntry, ProfileRecord, RequestRecord,
    RequestStatus, SimRecord, Singleton, StoreCounts, StoreError,
};
use crate::context::Imsi;
use crate::imei::Imei;
use layout::{Layout, NodeRecord};

/// Meta key of the cache: the etcd revision it has applied (8 octets BE; 0 or absent: rebuild).
const POSITION_KEY: &str = "etcd_revision";
/// Bulk transactions (an import's chunks of disjoint SIMs) one provisioning request keeps
/// committing at once, at most: etcd batches concurrent proposals into one raft round and one
/// WAL fsync, so the import is not one round trip per `max_txn_ops / 3` SIMs...
const BULK_TXNS_IN_FLIGHT: usize = 16;
/// ... and their writes together, at most: etcd applies transactions one after another, and
/// what waits to be applied delays everything else (binds, node publications, and lease
/// renewals, which etcd 3.4 grants only once the leader has applied what it committed). With
/// 16 transactions of 1 023 writes in flight a 1M-SIM import on the benchmark machine made
/// etcd take 250 ms per transaction, time out requests and let leases expire; 2 048 writes
/// keep that queue short (16 transactions at `max_txn_ops` 128, 2 at 1 024).
const BULK_OPS_IN_FLIGHT: usize = 2_048;

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

/// gRPC status codes of a request etcd refused for its size: INVALID_ARGUMENT ("etcdserver:
/// request is too large", beyond `--max-request-bytes`) and RESOURCE_EXHAUSTED (beyond the gRPC
/// message limit etcd derives from it). Either way the request was not applied.
const GRPC_INVALID_ARGUMENT: i32 = 3;
const GRPC_RESOURCE_EXHAUSTED: i32 = 8;

/// The refusal of a request for its size, if `e` is one.
fn too_large(e: &etcd_client::Error) -> Option<StoreError> {
    let etcd_client::Error::GRpcStatus(s) = e else {
        return None;
    };
    let code = i32::from(s.code());
    let sized = code == GRPC_RESOURCE_EXHAUSTED
        || (code == GRPC_INVALID_ARGUMENT && s.message().contains("too large"));
    sized.then(|| {
        StoreError::TooLarge(format!(
            "etcd: {} (the members' --max-request-bytes)",
            s.message()
        ))
    })
}

/// State shared by the store and its background tasks.
pub(crate) struct Shared {
    cache: RocksStore,
    client: Client,
    layout: Layout,
    settings: EtcdSettings,
    /// Last etcd revision the cache applied (any key under the prefix).
    applied_rev: watch::Sender<u64>,
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
    /// Last-seen IMEIs waiting to be written to etcd.
    seen: Mutex<HashMap<Imsi, (Imei, Millis)>>,
    outbox_counter: AtomicU32,
    node_hash: u64,
    stopped: AtomicBool,
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
        *self.applied_rev.borrow()
    }

    /// Waits (at most `timeout`) until the cache has applied `rev`.
    async fn wait_applied(&self, rev: u64, timeout: Duration) -> bool {
        let mut rx = self.applied_rev.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|a| *a >= rev))
            .await
            .is_ok_and(|r| r.is_ok())
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
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(settings.connect_timeout)
            .with_timeout(settings.request_timeout)
            .with_keep_alive(Duration::from_secs(2), settings.request_timeout);
        if let Some((user, password)) = &settings.credentials {
            opts = opts.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = tls_options(&settings)? {
            opts = opts.with_tls(tls);
        }
        let client = tokio::time::timeout(
            settings.connect_timeout,
            Client::connect(settings.endpoints.clone(), Some(opts)),
        )
        .await
        .map_err(|_| StoreError::Backend("etcd: connect timed out".into()))?
        .map_err(etcd_err)?;
        let position = cache.meta_u64(POSITION_KEY)?;
        let node_hash = {
            use std::hash::{BuildHasher, Hasher};
            let mut h =
                std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().build_hasher();
            h.write(settings.node_name.as_bytes());
            h.finish()
        };
        register_metrics();
        let (applied_rev, _) = watch::channel(position);
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

fn tls_options(s: &EtcdSettings) -> Result<Option<etcd_client::TlsOptions>, StoreError> {
    let https = s.endpoints.iter().any(|e| e.starts_with("https://"));
    if !https {
        return Ok(None);
    }
    let read = |p: &std::path::PathBuf| {
        std::fs::read(p).map_err(|e| StoreError::Backend(format!("{}: {e}", p.display())))
    };
    let mut tls = etcd_client::TlsOptions::new();
    if let Some(ca) = &s.ca_file {
        tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&s.cert_file, &s.key_file) {
        tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(tls))
}

/// Registers the cluster series at 0.
fn register_metrics() {
    for op in ["txn", "get", "put", "lease"] {
        let _ = metrics::histogram!("imei_lockd_etcd_request_duration_seconds", "op" => op);
    }
    for outcome in ["compacted", "gap", "start"] {
        metrics::counter!("imei_lockd_cache_rebuilds_total", "reason" => outcome).increment(0);
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
    fn charge(&self, month: &str, imsi: &Imsi) -> Result<Option<Charge>, StoreError> {
        self.shared.cache.charge(month, imsi)
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
}

impl Shared {
    /// The transaction for `batch`: its compares, its writes (one per key, the last wins), and
    /// on failure reads of the compared keys (to know how far the cache must get).
    fn txn(&self, batch: Batch) -> Result<(Txn, Vec<Vec<u8>>), StoreError> {
        let l = &self.layout;
        let mut compares = Vec::new();
        let mut compared: Vec<Vec<u8>> = Vec::new();
        let mut writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut put = |key: Vec<u8>, value: Option<Vec<u8>>| {
            writes.retain(|(k, _)| *k != key);
            writes.push((key, value));
        };
        for op in batch.ops {
            match op {
                Op::PutSim { sim, expect_rev } => {
                    let key = l.sim(&sim.imsi);
                    if !compared.contains(&key) {
                        compares.push(rev_compare(&key, expect_rev));
                        compared.push(key.clone());
                    }
                    put(key, Some(encoding::encode(&sim)));
                }
                Op::DeleteSim { imsi, expect_rev } => {
                    let key = l.sim(&imsi);
                    if !compared.contains(&key) {
                        compares.push(rev_compare(&key, expect_rev));
                        compared.push(key.clone());
                    }
                    put(key, None);
                }
                Op::PutProfile(p) => put(l.profile(&p.name), Some(encoding::encode(&p))),
                Op::PutEvent(ev) => {
                    let counter = (self.node_hash as u32)
                        .wrapping_add(self.outbox_counter.fetch_add(1, Ordering::Relaxed));
                    put(
                        l.event(&ev.imsi, ev.at, counter),
                        Some(encoding::encode(&ev)),
                    );
                }
                Op::PutRequest(r) => put(l.request(r.seq), Some(encoding::encode(&r))),
                Op::PutCharge(c) => put(l.charge(&c.month, &c.imsi), Some(encoding::encode(&c))),
                Op::PutOutbox { id, entry } => put(l.outbox(id), Some(encoding::encode(&entry))),
                Op::DeleteOutbox { id } => put(l.outbox(id), None),
                Op::PutMeta { key, value } => put(l.meta(&key), Some(value)),
                Op::ExpectMeta { key, value } => {
                    let k = l.meta(&key);
                    compares.push(match value {
                        Some(v) => Compare::value(k.clone(), CompareOp::Equal, v),
                        None => Compare::create_revision(k.clone(), CompareOp::Equal, 0),
                    });
                    compared.push(k);
                }
            }
        }
        if writes.len() > self.settings.max_txn_ops {
            return Err(StoreError::Backend(format!(
                "a batch of {} writes exceeds cluster.etcd.max_txn_ops = {}",
                writes.len(),
                self.settings.max_txn_ops
            )));
        }
        let ops: Vec<TxnOp> = writes
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => TxnOp::put(k, v, None),
                None => TxnOp::delete(k, None),
            })
            .collect();
        let reads: Vec<TxnOp> = compared
            .iter()
            .map(|k| TxnOp::get(k.clone(), None))
            .collect();
        Ok((
            Txn::new().when(compares).and_then(ops).or_else(reads),
            compared,
        ))
    }

    async fn commit(&self, batch: Batch) -> Result<Commit, StoreError> {
        if batch.is_empty() {
            return Ok(Commit::Committed);
        }
        let (txn, compared) = self.txn(batch)?;
        let started = Instant::now();
        let mut kv = self.client.kv_client();
        let res = tokio::time::timeout(self.settings.request_timeout, kv.txn(txn)).await;
        let resp = match res {
            Ok(Ok(r)) => {
                observe("txn", started, true);
                r
            }
            Ok(Err(e)) => {
                observe("txn", started, false);
                if let Some(refused) = too_large(&e) {
                    return Err(refused);
                }
                tracing::warn!(error = %e, "etcd transaction failed; outcome unknown");
                return Ok(Commit::Unknown);
            }
            Err(_) => {
                observe("txn", started, false);
                tracing::warn!("etcd transaction timed out; outcome unknown");
                return Ok(Commit::Unknown);
            }
        };
        let revision = resp.header().map_or(0, |h| h.revision()).max(0) as u64;
        if resp.succeeded() {
            // Read-your-writes: this node's reads show the batch when the caller goes on.
            if !self
                .wait_applied(revision, self.settings.request_timeout)
                .await
            {
                tracing::warn!(revision, "cache has not applied a committed batch in time");
            }
            return Ok(Commit::Committed);
        }
        // Lost: wait until the cache shows the state that won (the newest compared key).
        let mut target = 0u64;
        let mut absent = false;
        for r in resp.op_responses() {
            if let etcd_client::TxnOpResponse::Get(g) = r {
                match g.kvs().first() {
                    Some(kv) => target = target.max(kv.mod_revision().max(0) as u64),
                    None => absent = true,
                }
            }
        }
        if absent || compared.is_empty() {
            // A deleted key's deletion revision is not returned: wait briefly for the current one.
            self.wait_applied(revision, Duration::from_millis(200))
                .await;
        }
        self.wait_applied(target, self.settings.request_timeout)
            .await;
        Ok(Commit::Conflict)
    }

    async fn append_request(&self, op: Operation, at: Millis) -> Result<RequestRecord, StoreError> {
        let counter = self.layout.request_counter();
        let mut kv = self.client.kv_client();
        for _ in 0..64 {
            let started = Instant::now();
            let got = kv.get(counter.clone(), None).await;
            observe("get", started, got.is_ok());
            let got = got.map_err(etcd_err)?;
            let (last, mod_rev) = match got.kvs().first() {
                Some(kv) => (
                    <[u8; 8]>::try_from(kv.value())
                        .map(u64::from_be_bytes)
                        .unwrap_or(0),
                    kv.mod_revision(),
                ),
                None => (0, 0),
            };
            let rec = RequestRecord {
                seq: last + 1,
                op: op.clone(),
                status: RequestStatus::Pending,
                error: None,
                submitted_at: at,
                processed_at: None,
            };
            let txn = Txn::new()
                .when(vec![Compare::mod_revision(
                    counter.clone(),
                    CompareOp::Equal,
                    mod_rev,
                )])
                .and_then(vec![
                    TxnOp::put(self.layout.request(rec.seq), encoding::encode(&rec), None),
                    TxnOp::put(counter.clone(), rec.seq.to_be_bytes().to_vec(), None),
                ]);
            let started = Instant::now();
            let resp = kv.txn(txn).await;
            observe("txn", started, resp.is_ok());
            let resp = resp.map_err(|e| {
                too_large(&e).unwrap_or_else(|| StoreError::Unknown(format!("etcd: {e}")))
            })?;
            if resp.succeeded() {
                let revision = resp.header().map_or(0, |h| h.revision()).max(0) as u64;
                if !self
                    .wait_applied(revision, self.settings.request_timeout)
                    .await
                {
                    // Accepted all the same (it is in etcd); this node's reads show it later.
                    tracing::warn!(
                        request = rec.seq,
                        revision,
                        "cache has not applied an accepted request in time"
                    );
                }
                return Ok(rec);
            }
        }
        Err(StoreError::Conflict("the request log (64 attempts)".into()))
    }

    async fn read_back(&self, imsi: Imsi) -> Result<Option<SimRecord>, StoreError> {
        let key = self.layout.sim(&imsi);
        let started = Instant::now();
        let got = self.client.kv_client().get(key.clone(), None).await;
        observe("get", started, got.is_ok());
        let got = got.map_err(etcd_err)?;
        let Some(kv) = got.kvs().first() else {
            return Ok(None);
        };
        match self
            .layout
            .parse(&key, Some(kv.value()), kv.mod_revision())?
        {
            layout::Parsed::Data(super::rocks::replica::Change::PutSim(s)) => {
                // Keep the cache's last-seen (it is not part of the SIM key).
                let local = self.cache.sim(&imsi)?;
                Ok(Some(SimRecord {
                    last_seen: local.as_ref().and_then(|l| l.last_seen).or(s.last_seen),
                    last_seen_at: local
                        .as_ref()
                        .and_then(|l| l.last_seen_at)
                        .or(s.last_seen_at),
                    ..s
                }))
            }
            _ => Ok(None),
        }
    }
}

fn rev_compare(key: &[u8], expect_rev: u64) -> Compare {
    Compare::mod_revision(
        key.to_vec(),
        CompareOp::Equal,
        i64::try_from(expect_rev).unwrap_or(i64::MAX),
    )
}

impl Ledger for EtcdStore {
    fn commit(&self, batch: Batch, _durability: Durability) -> LedgerFuture<'_, Commit> {
        // Every etcd commit is durable on a quorum: both durabilities are the same here.
        Box::pin(self.shared.commit(batch))
    }

    fn append_request(&self, op: Operation, at: Millis) -> LedgerFuture<'_, RequestRecord> {
        Box::pin(self.shared.append_request(op, at))
    }

    fn read_back(&self, imsi: Imsi) -> LedgerFuture<'_, Option<SimRecord>> {
        Box::pin(self.shared.read_back(imsi))
    }

    fn note_seen(&self, imsi: &Imsi, imei: Imei, at: Millis) -> Result<(), StoreError> {
        self.shared.cache.note_seen(imsi, imei, at)?;
        self.shared.seen.lock().insert(*imsi, (imei, at));
        Ok(())
    }

    fn next_outbox_id(&self) -> u64 {
        // Time (ms) · node (10 bits) · counter (12 bits): unique across nodes with distinct
        // names (barring a 1-in-1024 hash collision within one millisecond's counter), and
        // increasing on this node.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let n = u64::from(self.shared.outbox_counter.fetch_add(1, Ordering::Relaxed) & 0xfff);
        (now << 22) | ((self.shared.node_hash & 0x3ff) << 12) | n
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.shared.cache.flush()
    }

    fn max_batch_sims(&self) -> usize {
        (self.shared.settings.max_txn_ops / 3).max(1)
    }

    fn max_batches_in_flight(&self) -> usize {
        (BULK_OPS_IN_FLIGHT / self.shared.settings.max_txn_ops.max(1)).clamp(1, BULK_TXNS_IN_FLIGHT)
    }
}

impl Coordination for EtcdStore {
    fn serving(&self) -> bool {
        self.shared.serving()
    }

    fn holds(&self, singleton: Singleton) -> bool {
        self.shared.serving()
            && self
                .shared
                .locks
                .read()
                .get(singleton.as_str())
                .is_some_and(|h| *h == self.shared.settings.node_name)
    }

    fn applied(&self) -> u64 {
        self.shared.data_rev.load(Ordering::SeqCst)
    }

    fn wait_everywhere(&self, position: u64, timeout: Duration) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let changed = self.shared.nodes_changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let me = &self.shared.settings.node_name;
                let behind = self
                    .shared
                    .nodes
                    .read()
                    .iter()
                    .any(|(name, n)| name != me && n.serving && n.data_rev < position);
                let mine = self.shared.data_rev.load(Ordering::SeqCst) >= position;
                if !behind && mine {
                    return true;
                }
                if tokio::time::timeout_at(deadline, changed).await.is_err() {
                    return false;
                }
            }
        })
    }

    fn describe(&self) -> BoxFuture<'_, serde_json::Value> {
        Box::pin(async move {
            let view = self.cluster_view();
            let mut maintenance = self.shared.client.maintenance_client();
            let t = Instant::now();
            let status =
                tokio::time::timeout(self.shared.settings.request_timeout, maintenance.status())
                    .await
                    .ok()
                    .and_then(Result::ok);
            observe("get", t, status.is_some());
            let members = tokio::time::timeout(
                self.shared.settings.request_timeout,
                self.shared.client.cluster_client().member_list(),
            )
            .await
            .ok()
            .and_then(Result::ok);
            let leader = status.as_ref().map(|s| s.leader());
            let head = status
                .as_ref()
                .and_then(|s| s.header())
                .map_or(0, |h| h.revision().max(0) as u64);
            let members: Vec<serde_json::Value> = members
                .map(|m| {
                    m.members()
                        .iter()
                        .map(|m| {
                            serde_json::json!({
                                "id": format!("{:x}", m.id()),
                                "name": m.name(),
                                "client_urls": m.client_urls(),
                                "leader": Some(m.id()) == leader,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let nodes: Vec<serde_json::Value> = view
                .nodes
                .iter()
                .map(|(name, n)| {
                    serde_json::json!({
                        "name": name,
                        "serving": n.serving,
                        "applied": n.data_rev,
                        "lag_revisions": head.saturating_sub(n.data_rev),
                    })
                })
                .collect();
            serde_json::json!({
                "backend": "etcd",
                "node": view.node,
                "serving": view.serving,
                "applied_revision": view.applied_rev,
                "etcd_revision": head,
                "nodes": nodes,
                "singletons": view.singletons,
                "etcd": {"members": members, "reachable": status.is_some()},
            })
        })
    }

    fn applied_changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let start = self.shared.data_rev.load(Ordering::SeqCst);
            loop {
                let changed = self.shared.data_changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.shared.data_rev.load(Ordering::SeqCst) != start {
                    return;
                }
                changed.await;
            }
        })
    }
}
