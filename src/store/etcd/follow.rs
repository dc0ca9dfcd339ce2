//! The watch that feeds a node's cache, and the rebuild when the watch cannot continue.
//!
//! One watch on the whole prefix, from the cache's revision + 1, with `prev_kv`. Each response
//! becomes one cache write (its changes and its revision). The watch cannot continue, and the
//! cache is rebuilt from a paginated read at one fixed revision, when:
//! - etcd has compacted past the revision asked for (the watch is cancelled with a compact
//!   revision);
//! - a SIM event does not continue the cached record: its `prev_kv` revision differs from the
//!   revision the cache holds (a lost event: etcd 3.4 has known watch-event losses around
//!   compaction, detected here rather than assumed away);
//! - the cache has no position (first start, or a rebuild interrupted by a crash).
//!
//! On a resume (the cache has a position) the node records and singleton holders, which live in
//! memory and not in the cache, are read at that position first.
//!
//! This module decides nothing about sessions; it only keeps the cache equal to etcd.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{EventType, GetOptions, WatchOptions};

use super::layout::{self, Layout, Parsed};
use super::{etcd_err, observe, unsent, Shared, POSITION_KEY};
use crate::context::Imsi;
use crate::store::rocks::replica::{Change, Prior};
use crate::store::rocks::RocksStore;
use crate::store::{LocalRead, StoreError};

/// Keys per page of a rebuild read, at most: a page whose answer is over the gRPC client's
/// message limit (4 MiB: bundles are tens of KiB each) is asked again with a quarter of the
/// keys, and each page after a good one asks twice as many again, up to this.
const PAGE: i64 = 2_000;
/// gRPC status code OUT_OF_RANGE: etcd's answer to a read at a compacted revision.
const GRPC_OUT_OF_RANGE: i32 = 11;

/// Why the watch stopped.
enum Stop {
    /// Rebuild the cache, for this reason (metric label).
    Rebuild(&'static str),
    /// Reconnect and resume from the cache's position.
    Resume,
}

/// Longest pause between two attempts to reach etcd again. Short: a node cut off from etcd
/// must serve again soon after the network heals (issue 18's target is 2 s), and an attempt
/// every quarter second costs nothing.
const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// Follows etcd until the store stops.
pub(super) async fn run(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(50);
    while !shared.stopped.load(Ordering::SeqCst) {
        if shared.applied() == 0 {
            if let Err(e) = rebuild(&shared, "start").await {
                tracing::warn!(error = %e, "cache rebuild failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        } else if let Err(e) = load_membership(&shared, shared.applied()).await {
            tracing::warn!(error = %e, "reading the cluster's nodes from etcd failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        let stopped = watch(&shared).await;
        // Closed, for whatever reason: the view of the other nodes is stale until reopened.
        shared.health.lock().watch(false);
        match stopped {
            Ok(Stop::Rebuild(reason)) => {
                if let Err(e) = rebuild(&shared, reason).await {
                    tracing::warn!(error = %e, "cache rebuild failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            Ok(Stop::Resume) => backoff = Duration::from_millis(50),
            Err(e) => {
                tracing::warn!(error = %e, "etcd watch failed; resuming");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Watches from the cache's position + 1 and applies every response.
async fn watch(shared: &Shared) -> Result<Stop, StoreError> {
    let from = shared.applied() + 1;
    let root = shared.layout.root();
    let opts = WatchOptions::new()
        .with_range(Layout::range_end(&root))
        .with_start_revision(i64::try_from(from).unwrap_or(i64::MAX))
        .with_prev_key()
        .with_progress_notify();
    let mut client = shared.client.clone();
    let within = shared.settings.request_timeout;
    let mut stream = unsent::watch(&mut client, &root, opts, within)
        .await
        .map_err(etcd_err)?;
    shared.health.lock().watch(true);
    while let Some(resp) = stream.message().await.map_err(etcd_err)? {
        if shared.stopped.load(Ordering::SeqCst) {
            return Ok(Stop::Resume);
        }
        if resp.compact_revision() > 0 {
            tracing::warn!(
                compacted = resp.compact_revision(),
                from,
                "etcd compacted past the cache's position; rebuilding the cache"
            );
            return Ok(Stop::Rebuild("compacted"));
        }
        if resp.canceled() {
            tracing::warn!(
                reason = resp.cancel_reason(),
                "etcd cancelled the watch; resuming"
            );
            return Ok(Stop::Resume);
        }
        let header_rev = resp.header().map_or(0, |h| h.revision()).max(0) as u64;
        if resp.events().is_empty() {
            // Progress notification: every event up to the header's revision was delivered.
            if header_rev > shared.applied() {
                shared
                    .cache
                    .apply_changes(Vec::new(), POSITION_KEY, header_rev)?;
                advance(shared, header_rev, None);
            }
            continue;
        }
        let mut changes = Vec::with_capacity(resp.events().len());
        let mut last = 0u64;
        let mut data = None;
        // Within one response a SIM may change twice: the second continues the first.
        let mut expected: HashMap<Imsi, Option<u64>> = HashMap::new();
        // SIMs this response touches that the cache does not hold (read once, here: this
        // task is the cache's only writer of SIM records).
        let mut absent: HashSet<Imsi> = HashSet::new();
        let sim_bundles = shared.layout.sim_bundles();
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let rev = kv.mod_revision().max(0) as u64;
            last = last.max(rev);
            let parsed = match ev.event_type() {
                EventType::Put => {
                    shared
                        .layout
                        .parse(kv.key(), Some(kv.value()), kv.mod_revision())
                }
                EventType::Delete => shared.layout.parse_deleted(
                    kv.key(),
                    ev.prev_kv().map(|p| p.value()),
                    kv.mod_revision(),
                ),
            };
            if ev.event_type() == EventType::Delete
                && ev.prev_kv().is_none()
                && shared.layout.is_bundle_of_rows(kv.key())
            {
                // Which events or rows went is unknown without the bundle's previous value.
                tracing::warn!(revision = rev, "bundle deleted without prev_kv; rebuilding");
                return Ok(Stop::Rebuild("gap"));
            }
            if let Some(imsi) = shared.layout.sim_of_key(kv.key()) {
                // A SIM's own key: it must continue what the cache holds of that key.
                if ev.event_type() == EventType::Delete {
                    // imei-lockd leaves a tombstone; a deletion (by hand) may uncover the
                    // SIM's entry in an import bundle, which only a fresh read shows.
                    tracing::warn!(%imsi, revision = rev,
                        "a SIM's key was deleted outside imei-lockd; rebuilding");
                    return Ok(Stop::Rebuild("gap"));
                }
                let prev = ev.prev_kv().map(|p| p.mod_revision().max(0) as u64);
                let cached = match expected.get(&imsi) {
                    Some(r) => *r,
                    None => own_key_rev(&shared.cache, &imsi, &mut absent)?,
                };
                if prev != cached {
                    tracing::warn!(%imsi, ?prev, ?cached, revision = rev,
                        "watch event does not continue the cached SIM; rebuilding");
                    return Ok(Stop::Rebuild("gap"));
                }
                expected.insert(imsi, Some(rev));
                if ev.prev_kv().is_some_and(|p| p.value() == layout::TOMBSTONE)
                    && kv.value() != layout::TOMBSTONE
                {
                    // Created again after a deletion: the tombstone goes.
                    changes.push(Change::DeleteMeta(layout::tomb_meta(&imsi)));
                }
            } else if kv.key().starts_with(&sim_bundles) {
                // Its SIMs had no key of its own (record or tombstone) when it was written:
                // its compares say so. The cache holds none of them, or, after a failover of
                // the provisioning processor mid-import, their entry of an earlier bundle of
                // the same request; a record of their own means an event was lost.
                if let Ok(Parsed::Bundle(list)) = &parsed {
                    let imsis: Vec<Imsi> = list
                        .iter()
                        .filter_map(|c| match c {
                            Change::PutSim(s) => Some(s.imsi),
                            _ => None,
                        })
                        .collect();
                    let held = shared.cache.sims_stored(&imsis)?;
                    for (imsi, held) in imsis.iter().zip(held) {
                        let own = match held {
                            Some(h) => !layout::is_bundled(h.rev),
                            None => {
                                absent.insert(*imsi);
                                false
                            }
                        };
                        if own || expected.contains_key(imsi) {
                            tracing::warn!(%imsi, revision = rev,
                                "import bundle over a SIM's own key; rebuilding");
                            return Ok(Stop::Rebuild("gap"));
                        }
                    }
                }
            }
            match parsed {
                Ok(Parsed::Bundle(list)) => {
                    data = Some(rev);
                    changes.extend(list);
                }
                Ok(Parsed::Data(change)) => {
                    data = Some(rev);
                    changes.push(change);
                }
                Ok(Parsed::Node(name, rec)) => {
                    node_changed(shared, name, rec.map(|r| with_lease(r, kv.lease())));
                }
                Ok(Parsed::Lock(name, holder)) => lock_changed(shared, name, holder),
                Ok(Parsed::Other) => {}
                Err(e) => {
                    // A value this release cannot read: counted, logged, skipped (a newer
                    // node's record); the rest of the response still applies.
                    metrics::counter!("imei_lockd_store_errors_total", "kind" => "corrupt")
                        .increment(1);
                    tracing::error!(error = %e, "unreadable value in etcd; skipped");
                }
            }
        }
        let position = last.max(header_rev.min(last));
        shared
            .cache
            .apply_changes_over(changes, Prior::Absent(&absent), POSITION_KEY, position)?;
        advance(shared, position, data);
    }
    Ok(Stop::Resume)
}

fn with_lease(mut rec: super::NodeRecord, lease: i64) -> super::NodeRecord {
    rec.lease = lease;
    rec
}

/// The `mod_revision` of `imsi`'s own key as `cache` knows it: its record's, or its
/// tombstone's; `None` when it has neither (not stored, or stored from an import bundle). A SIM
/// `cache` does not store goes into `absent`.
fn own_key_rev(
    cache: &RocksStore,
    imsi: &Imsi,
    absent: &mut HashSet<Imsi>,
) -> Result<Option<u64>, StoreError> {
    match cache.sim(imsi)? {
        Some(s) if layout::is_bundled(s.rev) => Ok(None),
        Some(s) => Ok(Some(s.rev)),
        None => {
            absent.insert(*imsi);
            let tomb = cache.meta(&layout::tomb_meta(imsi))?;
            Ok(tomb.as_deref().and_then(layout::tomb_rev))
        }
    }
}

/// Publishes a new cache position (and data revision) to waiters and metrics.
fn advance(shared: &Shared, position: u64, data: Option<u64>) {
    if let Some(d) = data {
        shared.data_rev.fetch_max(d, Ordering::SeqCst);
        shared.data_changed.notify_waiters();
    }
    shared.applied_rev.advance(position);
    metrics::gauge!("imei_lockd_cluster_applied_revision").set(position as f64);
    shared.state_changed.notify_waiters();
}

fn node_changed(shared: &Shared, name: String, rec: Option<super::NodeRecord>) {
    {
        let mut nodes = shared.nodes.write();
        match rec {
            Some(r) => nodes.insert(name, r),
            None => nodes.remove(&name),
        };
    }
    shared.nodes_changed.notify_waiters();
}

fn lock_changed(shared: &Shared, name: String, holder: Option<String>) {
    {
        let mut locks = shared.locks.write();
        match holder {
            Some(h) => locks.insert(name, h),
            None => locks.remove(&name),
        };
    }
    // A released singleton is taken over at once by whoever sees it first.
    shared.state_changed.notify_waiters();
}

/// Node records and singleton holders as of `revision`, the cache's position. They live in
/// memory only (the cache holds data), so a node that resumes its watch reads them first: else
/// it would not know the nodes that published before it stopped, and would not wait for them.
/// The watch then continues from `revision + 1`, so nothing is applied twice or out of order.
/// A compacted `revision` is left to the watch, which meets it too and rebuilds (reading these
/// keys again).
async fn load_membership(shared: &Shared, revision: u64) -> Result<(), StoreError> {
    let mut kv = shared.client.kv_client();
    let mut nodes = Vec::new();
    let mut locks = Vec::new();
    for prefix in [shared.layout.node(""), shared.layout.lock("")] {
        let opts = GetOptions::new()
            .with_range(Layout::range_end(&prefix))
            .with_revision(i64::try_from(revision).unwrap_or(i64::MAX));
        let t = Instant::now();
        let got = unsent::get(
            &mut kv,
            &prefix,
            Some(opts),
            shared.settings.request_timeout,
        )
        .await;
        observe("get", t, got.is_ok());
        let got = match got {
            Ok(g) => g,
            Err(etcd_client::Error::GRpcStatus(s)) if i32::from(s.code()) == GRPC_OUT_OF_RANGE => {
                return Ok(());
            }
            Err(e) => return Err(etcd_err(e)),
        };
        for item in got.kvs() {
            match shared
                .layout
                .parse(item.key(), Some(item.value()), item.mod_revision())
            {
                Ok(Parsed::Node(n, r)) => nodes.push((n, r)),
                Ok(Parsed::Lock(n, h)) => locks.push((n, h)),
                _ => {}
            }
        }
    }
    shared.nodes.write().clear();
    shared.locks.write().clear();
    for (n, r) in nodes {
        node_changed(shared, n, r);
    }
    for (n, h) in locks {
        lock_changed(shared, n, h);
    }
    Ok(())
}

/// Reads everything under the prefix at one revision into an emptied cache.
async fn rebuild(shared: &Shared, reason: &'static str) -> Result<(), StoreError> {
    let started = Instant::now();
    shared.rebuilding.store(true, Ordering::SeqCst);
    shared.joined_at.store(0, Ordering::SeqCst);
    shared.state_changed.notify_waiters();
    metrics::counter!("imei_lockd_cache_rebuilds_total", "reason" => reason).increment(1);
    // Position 0 until the read is complete: a crash mid-way rebuilds again.
    shared.cache.clear()?;
    shared.cache.apply_changes(Vec::new(), POSITION_KEY, 0)?;
    let read = read_at(shared, 0, &shared.cache).await?;
    shared.nodes.write().clear();
    shared.locks.write().clear();
    for (n, r) in read.nodes {
        node_changed(shared, n, r);
    }
    for (n, h) in read.locks {
        lock_changed(shared, n, h);
    }
    let revision = read.revision;
    shared
        .cache
        .apply_changes(Vec::new(), POSITION_KEY, revision)?;
    // The cache may now be *behind* what the applied-revision channel said (never ahead of
    // etcd): reset it to the rebuild's revision. The data revision published is the last data
    // change the read covers: the other nodes only publish data changes, and waiting for them to
    // reach a revision no data change has would keep requests processed before this start
    // `pending` here until the next data change.
    shared.applied_rev.reset(revision);
    shared.data_rev.store(read.data_rev, Ordering::SeqCst);
    shared.data_changed.notify_waiters();
    shared.rebuilding.store(false, Ordering::SeqCst);
    shared.state_changed.notify_waiters();
    tracing::info!(
        reason,
        revision,
        keys = read.keys,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "cache rebuilt from etcd"
    );
    Ok(())
}

/// What [`read_at`] found besides the data it wrote.
pub(super) struct Read {
    /// The revision read at.
    pub revision: u64,
    /// The last data change the read covers: the newest data key's revision, or a newer one
    /// another node published (a deletion, which a read does not show); never a node or lock
    /// key's revision.
    pub data_rev: u64,
    pub keys: u64,
    pub nodes: Vec<(String, Option<super::NodeRecord>)>,
    pub locks: Vec<(String, Option<String>)>,
}

/// Whether `e` is the gRPC client refusing an answer over its message size limit (not etcd
/// refusing the request: a smaller page of the same read fits).
fn answer_too_large(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if i32::from(s.code()) == GRPC_OUT_OF_RANGE && s.message().contains("message length too large"))
}

/// Reads everything under the prefix at `revision` (0: the current one, fixed by the first
/// page), page by page, applying the data into `target`, which must hold no SIM (cleared, or
/// new), at position 0: the caller sets the position once the read is complete.
///
/// # Errors
/// etcd errors (a compacted `revision` among them) and RocksDB errors of `target`.
pub(super) async fn read_at(
    shared: &Shared,
    revision: u64,
    target: &RocksStore,
) -> Result<Read, StoreError> {
    let root = shared.layout.root();
    let end = Layout::range_end(&root);
    let mut kv = shared.client.kv_client();
    let mut revision = i64::try_from(revision).unwrap_or(i64::MAX);
    let mut start = root.clone();
    let mut read = Read {
        revision: 0,
        data_rev: 0,
        keys: 0,
        nodes: Vec::new(),
        locks: Vec::new(),
    };
    let mut limit = PAGE;
    loop {
        let mut opts = GetOptions::new().with_range(end.clone()).with_limit(limit);
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let t = Instant::now();
        let page = unsent::get(&mut kv, &start, Some(opts), shared.settings.request_timeout).await;
        observe("get", t, page.is_ok());
        let page = match page {
            Err(e) if limit > 1 && answer_too_large(&e) => {
                limit = (limit / 4).max(1);
                tracing::debug!(
                    limit,
                    "rebuild page over the message limit; asking fewer keys"
                );
                continue;
            }
            other => other.map_err(etcd_err)?,
        };
        // Back up towards full pages once past the large values: etcd 3.4 counts the whole
        // rest of the range for every page, so small pages over a large range are slow.
        limit = (limit * 2).min(PAGE);
        if revision == 0 {
            revision = page.header().map_or(0, |h| h.revision());
        }
        let mut changes = Vec::with_capacity(page.kvs().len());
        // SIMs of this page not stored yet. The target was cleared (or is new), each key comes
        // once, and SIMs' own keys (`P/sim/`) all come before the import bundles
        // (`P/simbundle/`), whose entries a SIM's own key hides.
        let mut absent = HashSet::new();
        // SIMs of this page with a key of their own (a record or a tombstone).
        let mut own = HashSet::new();
        for item in page.kvs() {
            read.keys += 1;
            match shared
                .layout
                .parse(item.key(), Some(item.value()), item.mod_revision())
            {
                Ok(Parsed::Data(c)) => {
                    read.data_rev = read.data_rev.max(item.mod_revision().max(0) as u64);
                    if let Change::PutSim(s) = &c {
                        absent.insert(s.imsi);
                        own.insert(s.imsi);
                    }
                    changes.push(c);
                }
                Ok(Parsed::Bundle(list)) => {
                    read.data_rev = read.data_rev.max(item.mod_revision().max(0) as u64);
                    for c in list {
                        match &c {
                            // Hidden by a key of its own (record or tombstone), read on this
                            // page or an earlier one.
                            Change::PutSim(s)
                                if layout::is_bundled(s.rev)
                                    && (own.contains(&s.imsi)
                                        || own_key_rev(target, &s.imsi, &mut absent)?
                                            .is_some()) =>
                            {
                                continue;
                            }
                            Change::DeleteSim(imsi) => {
                                absent.insert(*imsi);
                                own.insert(*imsi);
                            }
                            _ => {}
                        }
                        changes.push(c);
                    }
                }
                Ok(Parsed::Node(n, r)) => {
                    read.data_rev = read.data_rev.max(r.as_ref().map_or(0, |r| r.data_rev));
                    read.nodes.push((n, r.map(|r| with_lease(r, item.lease()))));
                }
                Ok(Parsed::Lock(n, h)) => read.locks.push((n, h)),
                Ok(Parsed::Other) => {}
                Err(e) => tracing::error!(error = %e, "unreadable value in etcd; skipped"),
            }
        }
        target.apply_changes_over(changes, Prior::Absent(&absent), POSITION_KEY, 0)?;
        let Some(last) = page.kvs().last() else { break };
        start = last.key().to_vec();
        start.push(0);
        if !page.more() {
            break;
        }
    }
    read.revision = revision.max(0) as u64;
    read.data_rev = read.data_rev.min(read.revision);
    Ok(read)
}
