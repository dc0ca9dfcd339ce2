//! The Diameter I/O shell: TCP and SCTP listeners, one task per connection driving a
//! [`Peer`](crate::diameter::peer::Peer) (after quinn's `ConnectionDriver`).
//!
//! # Layout
//! - [`listen`]: binding `[diameter] listen` (TCP, kernel one-to-one SCTP).
//! - `conn`: one connection: framing, the peer machine, timers, the single writer, requests in
//!   flight.
//! - [`series`]: the label values of the shell's metrics, registered at 0 at bind.
//! - `refusal`: the rate-limited WARN line of a refused peer.
//!
//! # Limits
//! - At most [`MAX_CONNECTIONS`] connections: one beyond is accepted and closed at once, counted
//!   as `imei_lockd_diameter_errors_total{reason="connection_limit"}` and logged (at most once
//!   per 10 s), rather than left waiting unseen in the kernel's listen backlog.
//! - A connection that sends no CER within `diameter.cer_timeout_s`, or leaves a message
//!   incomplete for `diameter.message_timeout_s`, is closed (reasons `cer_timeout`,
//!   `message_timeout`).
//! - At most [`MAX_IN_FLIGHT`] application requests in flight per connection; beyond that a
//!   request is answered 3004 DIAMETER_TOO_BUSY at once.
//! - At most [`MAX_ENGINE_CALLS`] engine calls at a time on the blocking pool, daemon-wide;
//!   further requests wait (still counted in flight on their connection).
//!
//! # Shutdown
//! When `stop` turns true the listeners stop accepting, every open peer gets a DPR
//! (Disconnect-Cause REBOOTING) and each connection closes on DPA or after [`DPA_TIMEOUT`].
//!
//! # Reload
//! The peer allow-list (`[[diameter.peers]]`) is replaceable at run time through
//! [`DiameterService::reloader`] (SIGHUP): a connection takes its known peers when it is
//! accepted, so new connections use the new list and open ones are left as they are. Listeners,
//! identity and timers are fixed at bind time.
//!
//! This module does not initiate connections to peers (we are the responder side only).

mod conn;
pub mod listen;
mod refusal;
pub mod series;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use crate::config::{parse_cidr, Config};
use crate::diameter::app::Catalog;
use crate::diameter::peer::{DuplicateCache, PeerConfig};

use listen::Bound;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Application requests in flight per connection before 3004.
pub const MAX_IN_FLIGHT: usize = 256;
/// Engine calls running at once on the blocking pool.
pub const MAX_ENGINE_CALLS: usize = 64;
/// At most one log line per interval for connections refused at [`MAX_CONNECTIONS`], and per
/// (source address, reason) for refused peers.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How long we wait for DPA after our DPR.
pub const DPA_TIMEOUT: Duration = Duration::from_secs(2);
/// Duplicate-detection window (RFC 6733 §3: End-to-End ids are unique for 4 minutes).
const DUPLICATE_TTL: Duration = Duration::from_secs(240);
/// Answers remembered for duplicate detection.
const DUPLICATE_CAPACITY: usize = 200_000;

/// State shared by every connection.
pub(crate) struct Shared {
    /// Our side of every connection; `known_peers` and `host_ip_addresses` are filled per
    /// connection.
    template: PeerConfig,
    /// Configured peers: Origin-Host and the optional source network they must connect from.
    /// Read once per accepted connection; replaced on reload.
    peers: RwLock<Arc<Vec<AllowedPeer>>>,
    /// Answers by (Origin-Host, End-to-End-Id), daemon-wide: a retransmission may arrive on
    /// another connection after failover. Locked briefly per request, never across an await.
    dup: Mutex<DuplicateCache>,
    /// Engine calls running at once (see [`MAX_ENGINE_CALLS`]).
    engine_slots: Arc<Semaphore>,
    /// Open peers by lower-cased Origin-Host: the connection id and the notifier that tells
    /// that connection it was replaced by a newer one from the same peer.
    open: Mutex<HashMap<String, (u64, Arc<Notify>)>>,
    next_conn: AtomicU64,
    /// Per-process randomness for identifier seeds.
    random: RandomState,
    /// How long an incomplete message may wait for its remaining bytes
    /// (`diameter.message_timeout_s`).
    message_timeout: Duration,
    /// WARN lines about refused peers: one per (source address, reason) per
    /// [`REFUSAL_LOG_INTERVAL`], bounded under a flood of connections.
    refusals: RefusalLimiter,
}

/// The limiter of refused-peer lines, by (source address, reason).
pub(crate) type RefusalLimiter = crate::logging::limit::LogLimiter<(IpAddr, &'static str)>;
/// Sources (and reasons) the refused-peer limiter remembers.
const REFUSAL_LOG_CAPACITY: usize = 4096;

impl Shared {
    /// Our configuration for a connection from `remote` accepted on `local`: only peers whose
    /// `address` admits `remote` are known on it.
    fn peer_config(
        &self,
        remote: IpAddr,
        local: IpAddr,
        catalog: &Arc<Catalog>,
    ) -> Arc<PeerConfig> {
        let mut c = self.template.clone();
        c.catalog = catalog.clone();
        let peers = self.peers.read().clone();
        c.known_peers = peers
            .iter()
            .filter(|(_, net)| net.is_none_or(|n| n.contains(&remote)))
            .map(|(h, _)| h.clone())
            .collect();
        c.host_ip_addresses = vec![local];
        Arc::new(c)
    }

    /// Is `origin_host` in `[[diameter.peers]]` at all (whatever its address)?
    fn is_configured(&self, origin_host: &str) -> bool {
        self.peers
            .read()
            .iter()
            .any(|(h, _)| h.eq_ignore_ascii_case(origin_host))
    }

    fn random_u64(&self, salt: u64) -> u64 {
        self.random.hash_one((salt, SystemTime::now()))
    }
}

/// A configured peer: Origin-Host and the optional network it must connect from.
type AllowedPeer = (String, Option<IpNet>);

/// The peers of `[[diameter.peers]]`; errors name `diameter.peers[i].address`.
fn peers_from_config(cfg: &Config) -> Result<Vec<AllowedPeer>, String> {
    let mut peers = Vec::with_capacity(cfg.diameter.peers.len());
    for (i, p) in cfg.diameter.peers.iter().enumerate() {
        let net = match &p.address {
            Some(a) => Some(
                parse_cidr(&format!("diameter.peers[{i}].address"), a)
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        peers.push((p.origin_host.clone(), net));
    }
    Ok(peers)
}

/// Replaces the peer allow-list of a [`DiameterService`] (SIGHUP); see the module docs.
#[derive(Clone)]
pub struct DiameterReloader {
    shared: Arc<Shared>,
}

impl DiameterReloader {
    /// Takes the peers of `cfg` for connections accepted from now on; returns their number.
    ///
    /// # Errors
    /// A message naming `diameter.peers[i].address` (the running list is kept).
    pub fn reload(&self, cfg: &Config) -> Result<usize, String> {
        let peers = peers_from_config(cfg)?;
        let n = peers.len();
        series::register_peers(peers.iter().map(|(h, _)| h.as_str()));
        *self.shared.peers.write() = Arc::new(peers);
        Ok(n)
    }
}

/// Bound Diameter listeners, ready to serve.
pub struct DiameterService {
    listeners: Vec<Bound>,
    shared: Arc<Shared>,
}

impl DiameterService {
    /// Binds the listeners of `[diameter] listen`.
    ///
    /// # Errors
    /// A message naming the key whose address cannot be bound; for `sctp://` on a kernel
    /// without SCTP, a message saying so.
    pub async fn bind(cfg: &Config) -> Result<Self, String> {
        let d = &cfg.diameter;
        let mut listeners = Vec::new();
        for entry in cfg.diameter_listeners().map_err(|e| e.to_string())? {
            let b = listen::bind(entry)?;
            tracing::info!(transport = %b.transport, address = %b.local,
                addresses = ?b.addresses, "diameter listening");
            listeners.push(b);
        }
        let peers = peers_from_config(cfg)?;
        series::register();
        series::register_peers(peers.iter().map(|(h, _)| h.as_str()));
        let mut template = PeerConfig::new(&d.origin_host, &d.origin_realm);
        template.watchdog = Duration::from_secs(d.watchdog_s);
        template.cer_timeout = Duration::from_secs(d.cer_timeout_s);
        template.dpa_timeout = DPA_TIMEOUT;
        let boot = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| t.as_secs());
        // RFC 6733 §8.16: a value that increases with each restart.
        template.origin.state_id = Some(boot as u32);
        Ok(Self {
            listeners,
            shared: Arc::new(Shared {
                template,
                peers: RwLock::new(Arc::new(peers)),
                dup: Mutex::new(DuplicateCache::new(DUPLICATE_CAPACITY, DUPLICATE_TTL)),
                engine_slots: Arc::new(Semaphore::new(MAX_ENGINE_CALLS)),
                open: Mutex::new(HashMap::new()),
                next_conn: AtomicU64::new(1),
                random: RandomState::new(),
                message_timeout: Duration::from_secs(d.message_timeout_s),
                refusals: RefusalLimiter::new(REFUSAL_LOG_INTERVAL, REFUSAL_LOG_CAPACITY),
            }),
        })
    }

    /// A handle that replaces the peer allow-list of this service while it runs.
    pub fn reloader(&self) -> DiameterReloader {
        DiameterReloader {
            shared: self.shared.clone(),
        }
    }

    /// Serves the applications of `catalog` (built once at start from the configuration, see
    /// [`Catalog::standard`]) until `stop` becomes true, then disconnects every peer (DPR) and
    /// returns once all connections are closed (or after the DPA timeout and a grace second).
    pub async fn run(self, catalog: Arc<Catalog>, mut stop: watch::Receiver<bool>) {
        let conn_slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        // Every connection task holds a clone; `recv` returns `None` once all are gone.
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        let mut accepting = tokio::task::JoinSet::new();
        for b in self.listeners {
            accepting.spawn(accept_loop(
                b,
                self.shared.clone(),
                catalog.clone(),
                stop.clone(),
                conn_slots.clone(),
                alive_tx.clone(),
            ));
        }
        drop(alive_tx);
        stopped(&mut stop).await;
        while accepting.join_next().await.is_some() {}
        let grace = DPA_TIMEOUT + Duration::from_secs(1);
        if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
            tracing::warn!("diameter connections still open after the DPA timeout");
        }
    }
}

/// Resolves once `stop` is true (the watch `Ref` stays inside, so callers stay `Send`).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&s| s).await;
}

async fn accept_loop(
    b: Bound,
    shared: Arc<Shared>,
    catalog: Arc<Catalog>,
    mut stop: watch::Receiver<bool>,
    conn_slots: Arc<Semaphore>,
    alive: mpsc::Sender<()>,
) {
    // Refusals at the connection cap are logged at most once per REFUSAL_LOG_INTERVAL.
    let mut last_refusal_log: Option<std::time::Instant> = None;
    let mut refused_since_log = 0u64;
    loop {
        let accepted = tokio::select! {
            r = b.listener.accept() => r,
            () = stopped(&mut stop) => return,
        };
        match accepted {
            Ok((stream, remote)) => {
                // Accept, then check the cap: a connection beyond it is closed at once (and
                // counted) rather than left in the kernel's backlog.
                let Ok(permit) = conn_slots.clone().try_acquire_owned() else {
                    drop(stream);
                    metrics::counter!("imei_lockd_diameter_errors_total",
                        "reason" => "connection_limit")
                    .increment(1);
                    refused_since_log += 1;
                    let now = std::time::Instant::now();
                    if last_refusal_log.is_none_or(|t| now - t >= REFUSAL_LOG_INTERVAL) {
                        tracing::warn!(transport = %b.transport, %remote,
                            limit = MAX_CONNECTIONS, refused = refused_since_log,
                            "diameter connection refused: connection limit reached");
                        last_refusal_log = Some(now);
                        refused_since_log = 0;
                    }
                    continue;
                };
                let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                let ctx = conn::ConnCtx {
                    id,
                    remote,
                    transport: b.transport,
                    shared: shared.clone(),
                    catalog: catalog.clone(),
                };
                let stop = stop.clone();
                let alive = alive.clone();
                tokio::spawn(async move {
                    conn::serve(stream, ctx, stop).await;
                    drop(permit);
                    drop(alive);
                });
            }
            Err(e) => {
                metrics::counter!("imei_lockd_diameter_errors_total", "reason" => "accept")
                    .increment(1);
                tracing::warn!(transport = %b.transport, address = %b.local, error = %e,
                    "diameter accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
