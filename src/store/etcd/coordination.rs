//! [`Coordination`] on etcd: serving, singletons, and waiting until a change is in effect on
//! every serving node.
//!
//! A node that stays behind a change for longer than `max_lag` while its record says serving
//! (connected, but its cache cannot keep up) is evicted: the waiting node revokes its lease.
//! Its next keep-alive fails, so it stops serving and rejoins once caught up (see
//! [`super::lease`]). Until the revoked lease's TTL has passed the evicted node may still
//! believe in it, so it is waited for until then, and not after: the wait is bounded by
//! `max_lag` + the TTL. A node cut off from etcd is not evicted; its lease simply expires.
//!
//! Lag is only counted while this node's own view of etcd is live ([`Health`]): its watch is
//! open and its last publication went through. While etcd elects a leader every node's
//! publication stalls alike; a node that judged the others by its stale view would evict them
//! all (and they it), so that one leader kill would cost every lease.
//!
//! This module decides no session and writes no data.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{observe, EtcdStore, Evicted, Lagging};
use crate::store::{BoxFuture, Coordination, Singleton, StoreError};

/// Since when this node's view of etcd has been live: its watch (which carries the other
/// nodes' records) open, and its own last publication through. `None` while either is failing.
#[derive(Debug, Default)]
pub(super) struct Health {
    watch: Option<Instant>,
    publish: Option<Instant>,
}

impl Health {
    /// The watch was opened (`true`) or failed (`false`).
    pub(super) fn watch(&mut self, ok: bool) {
        Self::mark(&mut self.watch, ok);
    }

    /// A publication of this node's record went through (`true`) or failed (`false`).
    pub(super) fn publish(&mut self, ok: bool) {
        Self::mark(&mut self.publish, ok);
    }

    fn mark(since: &mut Option<Instant>, ok: bool) {
        match (ok, *since) {
            (true, None) => *since = Some(Instant::now()),
            (false, _) => *since = None,
            (true, Some(_)) => {}
        }
    }

    /// Since when both have been fine, if they are.
    fn live_since(&self) -> Option<Instant> {
        Some(self.watch?.max(self.publish?))
    }
}

/// What one look at the published node records says about a position.
struct Check {
    /// Some serving node (or this one) has not applied the position yet.
    behind: bool,
    /// Nodes behind for longer than `max_lag`: name, lease, applied revision.
    evict: Vec<(String, i64, u64)>,
}

impl EtcdStore {
    fn check(&self, position: u64) -> Check {
        let shared = &self.shared;
        let now = Instant::now();
        let me = &shared.settings.node_name;
        let mut evicted = shared.evicted.lock();
        evicted.retain(|_, e| e.until > now);
        let mut lagging = shared.lagging.lock();
        let mut check = Check {
            behind: shared.data_rev.load(Ordering::SeqCst) < position || !evicted.is_empty(),
            evict: Vec::new(),
        };
        let may_evict = shared.serving();
        // Lag counts from when this node could see it: not while its own view was stale.
        let live_since = shared.health.lock().live_since();
        for (name, n) in shared.nodes.read().iter() {
            if name == me || !n.serving || evicted.contains_key(&n.lease) {
                continue;
            }
            if n.data_rev >= position {
                lagging.remove(&n.lease);
                continue;
            }
            check.behind = true;
            let lag = lagging.entry(n.lease).or_insert(Lagging {
                position,
                since: now,
            });
            if n.data_rev >= lag.position {
                // It reached what it lagged behind before: this is a new, fresh lag.
                *lag = Lagging {
                    position,
                    since: now,
                };
            }
            let lagged = live_since.map(|live| now.duration_since(lag.since.max(live)));
            if may_evict && n.lease != 0 && lagged.is_some_and(|d| d >= shared.settings.max_lag) {
                check.evict.push((name.clone(), n.lease, n.data_rev));
            }
        }
        check
    }

    /// Revokes `lease` of node `name`, which stays behind `position`, and remembers until when
    /// the node may still believe in it.
    async fn evict(&self, name: &str, lease: i64, applied: u64, position: u64) {
        let shared = &self.shared;
        let mut client = shared.client.lease_client();
        let t = Instant::now();
        let granted = client.time_to_live(lease, None).await;
        observe("lease", t, granted.is_ok());
        let ttl = granted
            .as_ref()
            .map_or(shared.settings.lease_ttl, |r| {
                Duration::from_secs(r.granted_ttl().max(0) as u64)
            })
            .max(shared.settings.lease_ttl);
        // Counted as serving until the revoke is surely in and the TTL has passed since.
        let margin = shared.settings.request_timeout;
        shared.evicted.lock().insert(
            lease,
            Evicted {
                until: Instant::now() + margin + ttl,
            },
        );
        shared.lagging.lock().remove(&lease);
        let t = Instant::now();
        let revoked = client.revoke(lease).await;
        observe("lease", t, revoked.is_ok());
        match revoked {
            Ok(_) => {
                shared.evicted.lock().insert(
                    lease,
                    Evicted {
                        until: Instant::now() + ttl,
                    },
                );
                metrics::counter!("imei_lockd_cluster_evictions_total").increment(1);
                tracing::warn!(
                    node = name,
                    lease,
                    applied,
                    position,
                    max_lag_ms = shared.settings.max_lag.as_millis() as u64,
                    "node lags behind a processed change: its lease is revoked, it stops \
                     serving until it has caught up"
                );
            }
            Err(e) => {
                tracing::warn!(node = name, lease, error = %e,
                    "revoking a lagging node's lease failed (it may have expired already)");
            }
        }
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
                let nodes_changed = self.shared.nodes_changed.notified();
                let data_changed = self.shared.data_changed.notified();
                tokio::pin!(nodes_changed, data_changed);
                nodes_changed.as_mut().enable();
                data_changed.as_mut().enable();
                let check = self.check(position);
                if !check.behind {
                    return true;
                }
                for (name, lease, applied) in check.evict {
                    self.evict(&name, lease, applied, position).await;
                }
                let tick = tokio::time::Instant::now() + Duration::from_millis(50);
                tokio::select! {
                    _ = nodes_changed => {}
                    _ = data_changed => {}
                    _ = tokio::time::sleep_until(tick.min(deadline)) => {}
                }
                if tokio::time::Instant::now() >= deadline {
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

    fn verify_cache(&self) -> BoxFuture<'_, Option<Result<serde_json::Value, StoreError>>> {
        Box::pin(async move {
            Some(
                self.verify()
                    .await
                    .map(|v| serde_json::to_value(v).unwrap_or_default()),
            )
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
