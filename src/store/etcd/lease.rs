//! A node's membership: its lease, its published state, its singletons, its last-seen writes.
//!
//! - [`run`] grants a lease of `lease_ttl_s` and keeps it alive every third of the TTL. The
//!   lease is valid, by this node's monotonic clock, until the *send* time of the last answered
//!   keep-alive plus the TTL, so the node stops believing in it no later than etcd expires it.
//!   [`super::Shared::serving`] checks that instant before every answer: a node frozen past its
//!   TTL wakes not serving. A lost lease is replaced by a new one, and the node rejoins: it
//!   catches up to the revision read after the grant before it publishes itself serving.
//! - [`publish`] writes `P/node/<name>` (attached to the lease) whenever the data revision the
//!   cache applied or the serving state changes (at most every few milliseconds). A node counts
//!   as serving only once the cache has applied its own "serving" publication; provisioning
//!   waits for every node whose record says serving.
//! - Singletons: `P/lock/<name>` created if absent with the lease; the holder keeps it while its
//!   lease lives; when the key goes, any node takes it.
//! - Catching up: after a new lease (or a rebuild) the node publishes "not serving"; once its
//!   cache has applied that very write (everything committed before it, under the prefix), it
//!   publishes "serving", and serves once the cache has applied that one too.
//! - [`write_seen`] writes buffered last-seen IMEIs once a second.
//!
//! This module answers no session; it only says whether this node may.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::layout::{encode_seen, NodeRecord};
use super::{observe, unsent, Shared};
use crate::store::Singleton;

/// Bound on one publication of this node's state.
const PUBLISH_WAIT: Duration = Duration::from_millis(500);

/// Bound on one lease grant.
const GRANT_WAIT: Duration = Duration::from_secs(1);

/// Keeps this node's lease until the store stops.
pub(super) async fn run(shared: Arc<Shared>) {
    let ttl = shared.settings.lease_ttl.as_secs().max(1) as i64;
    while !shared.stopped.load(Ordering::SeqCst) {
        let mut client = shared.client.clone();
        let sent = Instant::now();
        // Bounded: an attempt stuck on an unreachable member must not delay the next one
        // past the moment the network heals.
        let granted = tokio::time::timeout(GRANT_WAIT, client.lease_grant(ttl, None)).await;
        observe("lease", sent, matches!(granted, Ok(Ok(_))));
        let granted = match granted {
            Ok(Ok(g)) => g,
            Err(_) => {
                tracing::warn!("no lease from etcd within 1 s; retrying");
                continue;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot get a lease from etcd; retrying");
                // Not sent (a dead member's channel): at once elsewhere; else after a pause.
                let pause = if unsent::unsent(&e) {
                    unsent::RETRY
                } else {
                    Duration::from_millis(250)
                };
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let id = granted.id();
        let granted_ttl = Duration::from_secs(granted.ttl().max(1) as u64);
        {
            let mut l = shared.lease.lock();
            l.id = id;
            l.valid_until = Some(sent + granted_ttl);
        }
        // Rejoin: publish "not serving" first; once the cache has applied that publication
        // (so everything committed before it), publish "serving" (see `publish`).
        shared.joined_at.store(0, Ordering::SeqCst);
        shared.catch_up_to.store(u64::MAX, Ordering::SeqCst);
        shared.state_changed.notify_waiters();
        tracing::info!(
            lease = id,
            ttl_s = granted_ttl.as_secs(),
            "cluster lease granted"
        );
        keep_alive(&shared, id, granted_ttl).await;
        shared.joined_at.store(0, Ordering::SeqCst);
        shared.state_changed.notify_waiters();
        metrics::gauge!("imei_lockd_cluster_serving").set(0.0);
        tracing::warn!(lease = id, "cluster lease lost; not serving until rejoined");
    }
}

/// Pause before a keep-alive is retried after one went unanswered (a member killed or cut off:
/// the next try goes through a fresh stream, which the client balances onto a live member).
const KEEP_ALIVE_RETRY: Duration = Duration::from_millis(100);

/// Keeps lease `id` alive until it cannot be.
///
/// A keep-alive goes out every third of the TTL and waits at most that long (and at most 1 s)
/// for its answer; an unanswered one is retried on a new stream (opened within the same bound)
/// every 100 ms while the lease is still valid here, so a new etcd leader elected within the
/// TTL finds the lease renewed instead of this node rejoining. Singletons are not taken while
/// retrying.
async fn keep_alive(shared: &Shared, id: i64, ttl: Duration) {
    let mut client = shared.client.clone();
    let Ok((mut keeper, mut stream)) = client.lease_keep_alive(id).await else {
        return;
    };
    let every = ttl / 3;
    let wait = every.min(Duration::from_secs(1));
    let mut retrying = false;
    loop {
        if retrying {
            tokio::time::sleep(KEEP_ALIVE_RETRY).await;
        } else {
            // Not while retrying: a singleton's transaction must not hold up the keep-alive.
            acquire_singletons(shared, id).await;
            let wake = shared.state_changed.notified();
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = wake => {
                    // A state change (a lock released, caught up): act on it, keep-alive on
                    // time.
                    if shared.lease.lock().valid_until.is_some_and(|t| {
                        t.saturating_duration_since(Instant::now()) > ttl - every
                    }) {
                        continue;
                    }
                }
            }
        }
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let sent = Instant::now();
        if retrying {
            // A fresh stream first: the old one may sit on a member that is gone.
            match tokio::time::timeout(wait, client.lease_keep_alive(id)).await {
                Ok(Ok((k, s))) => {
                    keeper = k;
                    stream = s;
                }
                _ => {
                    observe("lease", sent, false);
                    if !shared.lease_valid() {
                        return;
                    }
                    continue;
                }
            }
        }
        let answered = async {
            keeper.keep_alive().await.ok()?;
            stream.message().await.ok().flatten()
        };
        match tokio::time::timeout(wait, answered).await {
            Ok(Some(r)) if r.ttl() > 0 => {
                shared.lease.lock().valid_until = Some(sent + Duration::from_secs(r.ttl() as u64));
                observe("lease", sent, true);
                retrying = false;
            }
            Ok(Some(_)) => {
                observe("lease", sent, false);
                return; // expired at etcd
            }
            _ => {
                observe("lease", sent, false);
                if !shared.lease_valid() {
                    return;
                }
                // Not answered: keep trying while the lease is still valid here.
                retrying = true;
            }
        }
    }
}

/// Takes every free singleton, with lease `id`.
async fn acquire_singletons(shared: &Shared, id: i64) {
    if shared.joined_at.load(Ordering::SeqCst) == 0 {
        return;
    }
    let me = shared.settings.node_name.clone();
    for s in Singleton::ALL {
        if shared.locks.read().contains_key(s.as_str()) {
            continue;
        }
        let key = shared.layout.lock(s.as_str());
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(
                key,
                me.clone().into_bytes(),
                Some(PutOptions::new().with_lease(id)),
            )]);
        let t = Instant::now();
        let r = shared.client.kv_client().txn(txn).await;
        observe("txn", t, r.is_ok());
        if let Ok(r) = r {
            if r.succeeded() {
                tracing::info!(singleton = s.as_str(), "this node now runs the singleton");
                // Seen by the watch too; recorded now so `holds` is true without waiting.
                shared
                    .locks
                    .write()
                    .insert(s.as_str().to_owned(), me.clone());
            }
        }
    }
}

/// Publishes this node's record whenever what it says changes.
pub(super) async fn publish(shared: Arc<Shared>) {
    let mut last: Option<(NodeRecord, i64)> = None;
    while !shared.stopped.load(Ordering::SeqCst) {
        let data_changed = shared.data_changed.notified();
        let state_changed = shared.state_changed.notified();
        tokio::pin!(data_changed, state_changed);
        data_changed.as_mut().enable();
        state_changed.as_mut().enable();
        let lease = shared.lease_id();
        let caught_up = shared.applied() >= shared.catch_up_to.load(Ordering::SeqCst);
        let serving_wanted = lease != 0
            && shared.lease_valid()
            && !shared.rebuilding.load(Ordering::SeqCst)
            && caught_up;
        let rec = NodeRecord {
            data_rev: shared.data_rev.load(Ordering::SeqCst),
            serving: serving_wanted,
            lease,
        };
        if lease != 0 && last.as_ref() != Some(&(rec.clone(), lease)) {
            let body = serde_json::to_vec(&rec).unwrap_or_default();
            let t = Instant::now();
            let mut kv = shared.client.kv_client();
            let put = kv.put(
                shared.layout.node(&shared.settings.node_name),
                body,
                Some(PutOptions::new().with_lease(lease)),
            );
            // Bounded well below `max_lag_ms`: a put stuck on a member that died is given up and
            // sent again, so the others see this node's progress soon after a new leader.
            let put = match tokio::time::timeout(PUBLISH_WAIT, put).await {
                Ok(r) => r.map_err(|e| (unsent::unsent(&e), e.to_string())),
                Err(_) => Err((false, "timed out".to_owned())),
            };
            observe("put", t, put.is_ok());
            shared.health.lock().publish(put.is_ok());
            match put {
                Ok(r) => {
                    let revision = r.header().map_or(0, |h| h.revision()).max(0) as u64;
                    if rec.serving && shared.joined_at.load(Ordering::SeqCst) == 0 {
                        shared.joined_at.store(revision, Ordering::SeqCst);
                        metrics::gauge!("imei_lockd_cluster_serving").set(1.0);
                        tracing::info!(revision, "node serving (cache caught up, lease held)");
                    }
                    if !rec.serving {
                        // Caught up once the watch delivers this very write: the revision of
                        // our own key is past everything committed before it.
                        shared.joined_at.store(0, Ordering::SeqCst);
                        shared.catch_up_to.store(revision, Ordering::SeqCst);
                    }
                    last = Some((rec, lease));
                }
                Err((unsent, e)) => {
                    tracing::warn!(error = %e, "cannot publish node state");
                    let pause = if unsent { 20 } else { 100 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    continue;
                }
            }
            // Coalesce bursts of data changes into one publication per few milliseconds.
            tokio::time::sleep(Duration::from_millis(3)).await;
            continue;
        }
        tokio::select! {
            _ = data_changed => {}
            _ = state_changed => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Writes buffered last-seen IMEIs to etcd once a second (coalesced per SIM).
pub(super) async fn write_seen(shared: Arc<Shared>) {
    while !shared.stopped.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pending: Vec<_> = shared.seen.lock().drain().collect();
        let per_txn = shared.settings.max_txn_ops.max(1);
        for chunk in pending.chunks(per_txn) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|(imsi, (imei, at))| {
                    TxnOp::put(shared.layout.seen(imsi), encode_seen(*imei, *at), None)
                })
                .collect();
            let t = Instant::now();
            let r = shared
                .client
                .kv_client()
                .txn(Txn::new().and_then(ops))
                .await;
            observe("txn", t, r.is_ok());
            if let Err(e) = r {
                // Informational data: the next sighting writes it again.
                tracing::debug!(error = %e, "writing last-seen IMEIs to etcd failed");
            }
        }
    }
}
