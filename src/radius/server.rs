//! The RADIUS UDP I/O shell: sockets and receive tasks feeding the codec and the engine.
//!
//! # Shape
//! One UDP socket per port (auth, accounting), each with a large receive buffer
//! (`radius.recv_buffer_bytes`, see [`crate::radius::recv_buffer`]) and `radius.workers` receive
//! tasks sharing it. A receive task takes what is queued in batches ([`RecvBatch`](crate::radius::mmsg::RecvBatch): one `recvmmsg`
//! for up to 32 datagrams) and does only the cheap, bounded work of the calling contract in
//! [`crate::radius`]: client lookup, [`Request::decode`](crate::radius::request::Request::decode) (framing and HMAC-MD5), the duplicate
//! cache, and the answers that need no engine (Status-Server, "No IMSI", Accounting-On/Off). A
//! decision the engine can make from memory (a match or an update of a SIM held in memory: nearly
//! all of them once SIMs are bound) runs on the receive task itself, see
//! [`Engine::decide_in_memory`]: about a microsecond, no I/O. Every other request (a bind, an event
//! to record, a SIM not in memory) is handed to tokio's blocking pool
//! ([`tokio::task::spawn_blocking`]): [`Engine::decide`] is synchronous, reads the disk or waits
//! for an fsync, and must not stall the reactor or the receive loop. So a store that falls behind
//! holds up only this bounded path. Work in flight on it is bounded per port ([`MAX_IN_FLIGHT`]
//! permits). When all are taken, the receive task waits up to [`OVERLOAD_WAIT`] for one (a short
//! burst then queues in the socket's receive buffer, which is what the buffer is for); if none
//! frees up, the task *sheds*: it drops every request that finds no free permit at once, counted as
//! `overload` (the client retransmits), until a permit is free again. A persistently slow engine
//! thus costs one wait, not one wait per packet. After each batch the task spends one unit of
//! tokio's cooperative budget per datagram ([`tokio::task::consume_budget`]): readiness waits and
//! `try_io` spend none, so without it a socket that never empties would keep a worker thread for
//! ever.
//!
//! # Why several tasks on one socket, not `SO_REUSEPORT`
//! - The kernel spreads `SO_REUSEPORT` sockets by a hash of the 4-tuple. A GGSN/P-GW sends from
//!   one or a few source ports, so all its traffic would land on one socket and one task; tasks
//!   sharing a socket all drain whatever arrives.
//! - `SO_REUSEPORT` lets a second daemon (same user) bind the same port silently and take half
//!   the traffic with its own, different state; without it that second bind fails loudly
//!   ("cannot listen on radius.auth_listen …"), which is what an operator expects.
//! - The receive path is a few microseconds per datagram (the engine runs elsewhere), so one
//!   socket's queue is not the bottleneck; its buffer absorbs bursts.
//!
//! # Synchronisation
//! - The duplicate cache ([`ResponseCache`](crate::radius::dedup::ResponseCache)) is sharded ([`DEDUP_SHARDS`] per port) behind
//!   `parking_lot` mutexes, each held for one `begin`/`insert`/`abandon` call, never across an
//!   await or the engine call.
//! - A per-port [`Semaphore`] bounds evaluations in flight; on stop, [`RadiusService::run`]
//!   waits until all its permits are back (every answer in flight has been sent) or
//!   [`DRAIN_TIMEOUT`] passes.
//!
//! # Failure handling
//! Every discard is silent on the wire (RFC 2865 §3) and counted in
//! `imei_lockd_radius_drops_total{reason}`: `unknown_client`, the [`RequestError`](crate::radius::request::RequestError) labels,
//! `duplicate_in_progress`, `overload`, `engine_error` (store failure: no answer, the client
//! retransmits, never an accept), `encode_error`, `send_error`, and `receive_buffer`: datagrams
//! the kernel dropped because the socket's receive buffer was full (the daemon is behind: CPU
//! bound, or a burst longer than the buffer), learnt from `SO_RXQ_OVFL` and warned about at most
//! once per [`LOG_INTERVAL`] per port. A datagram from an unknown client, a Message-Authenticator
//! or Request Authenticator that does not verify, and a missing Message-Authenticator the client
//! must send are logged at WARN (an operator's misconfiguration or an attack; see
//! [`WARN_REASONS`]), other drops at debug; either way at most one line per (source address,
//! reason) per [`LOG_INTERVAL`], the next one carrying the count suppressed in between
//! ([`crate::logging::limit`], bounded under a flood of spoofed sources).
//!
//! # Metrics
//! `imei_lockd_radius_packets_total{port,code}` (every datagram received, by its Code octet),
//! `imei_lockd_radius_drops_total{port,reason}`, `imei_lockd_radius_duplicates_total{port}`
//! (answered from the cache), `imei_lockd_radius_responses_total{port,type}` with type
//! `access_accept`, `access_reject`, `accounting_response` or `status` (evaluated answers; cached
//! resends are counted as duplicates only).
//!
//! # What this shell does not do
//! No decoding or encoding of its own, no decision. Of the configuration, only the client table
//! is reloadable ([`RadiusService::reloader`]): receive tasks read it through a
//! `parking_lot::RwLock<Arc<Clients>>` (a read lock held for one `Arc` clone per datagram), a
//! reload swaps the `Arc`. Sockets, workers and the duplicate window are fixed at bind time.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::{parse_addr, Config};
use crate::engine::Engine;
use crate::radius::clients::Clients;
use crate::radius::request::Port;

mod port;

use port::{DedupShards, PortShell};

/// Evaluations (engine calls) in flight per port. Engine time is mostly waiting for an fsync
/// that RocksDB group-commits, so concurrency well above the CPU count helps; at ~5 ms per bind
/// this still allows ~25 000 binds per second per port.
pub const MAX_IN_FLIGHT: u32 = 128;
/// Duplicate-cache shards per port.
pub const DEDUP_SHARDS: usize = 16;
/// Entries per shard: 131 072 per port, i.e. ~26 000 requests per second within a 5 s window.
pub const DEDUP_SHARD_CAPACITY: usize = 8192;
/// How long [`RadiusService::run`] waits for answers in flight after `stop`.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one line per (source address, drop reason) per interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Bound on the (source, reason) pairs remembered by the log limiter.
const LOG_LIMITER_CAPACITY: usize = 4096;
/// Drop reasons logged at WARN, with the line's text; other reasons are logged at debug.
pub const WARN_REASONS: &[(&str, &str)] = &[
    (
        "unknown_client",
        "RADIUS packet dropped: its source address matches no radius.clients address (an \
         unknown client)",
    ),
    (
        "bad_message_authenticator",
        "RADIUS packet dropped: its Message-Authenticator does not verify (the client's \
         shared secret differs from radius.clients' secret, or the packet is forged)",
    ),
    (
        "bad_request_authenticator",
        "RADIUS packet dropped: an Accounting-Request whose Request Authenticator does not \
         verify (the client's shared secret differs from radius.clients' secret, or the \
         packet is forged)",
    ),
    (
        "missing_message_authenticator",
        "RADIUS packet dropped: an Access-Request without Message-Authenticator, which this \
         client must send (require_message_authenticator; BlastRADIUS, CVE-2024-3596)",
    ),
];

type LogLimiter = crate::logging::limit::LogLimiter<(IpAddr, &'static str)>;
/// Pause after a receive error (e.g. ENOMEM) so a persistent one cannot spin.
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(10);
/// How long a receive task waits for a free evaluation permit before it starts shedding.
pub const OVERLOAD_WAIT: Duration = Duration::from_millis(100);

/// Bound RADIUS sockets, ready to serve.
pub struct RadiusService {
    auth: Arc<UdpSocket>,
    acct: Arc<UdpSocket>,
    clients: SharedClients,
    window: Duration,
    workers: usize,
}

impl RadiusService {
    /// Binds the auth and accounting sockets named by `[radius]`.
    ///
    /// # Errors
    /// A message naming the key whose address cannot be parsed or bound, e.g.
    /// "cannot listen on radius.auth_listen 0.0.0.0:1812: Address already in use (os error 98)".
    pub async fn bind(cfg: &Config) -> Result<Self, String> {
        let r = &cfg.radius;
        let clients = clients_from_config(cfg)?;
        let auth = bind_udp(
            "radius.auth_listen",
            Port::Auth,
            &r.auth_listen,
            r.recv_buffer_bytes,
        )?;
        let acct = bind_udp(
            "radius.acct_listen",
            Port::Acct,
            &r.acct_listen,
            r.recv_buffer_bytes,
        )?;
        for port in [Port::Auth, Port::Acct] {
            super::series::register(port);
        }
        Ok(Self {
            auth: Arc::new(auth),
            acct: Arc::new(acct),
            clients: Arc::new(RwLock::new(Arc::new(clients))),
            window: Duration::from_secs(r.dedup_window_s),
            workers: r.workers.max(1),
        })
    }

    /// The bound (auth, accounting) addresses.
    ///
    /// # Errors
    /// As [`UdpSocket::local_addr`].
    pub fn local_addrs(&self) -> io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.auth.local_addr()?, self.acct.local_addr()?))
    }

    /// A handle that replaces the client table of this service (and of its running tasks).
    pub fn reloader(&self) -> RadiusReloader {
        RadiusReloader {
            clients: self.clients.clone(),
        }
    }

    /// Serves until `stop` becomes true (or its sender is dropped), then waits up to
    /// [`DRAIN_TIMEOUT`] for the answers in flight to go out.
    pub async fn run(self, engine: Arc<Engine>, stop: watch::Receiver<bool>) {
        let limiter = Arc::new(LogLimiter::new(LOG_INTERVAL, LOG_LIMITER_CAPACITY));
        let ports = [(Port::Auth, self.auth), (Port::Acct, self.acct)].map(|(port, socket)| {
            Arc::new(PortShell {
                port,
                socket,
                clients: self.clients.clone(),
                engine: engine.clone(),
                cache: DedupShards::new(self.window),
                in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT as usize)),
                limiter: limiter.clone(),
                kernel_drops: AtomicU32::new(0),
            })
        });
        let mut loops = JoinSet::new();
        for shell in &ports {
            if let Ok(addr) = shell.socket.local_addr() {
                tracing::info!(port = %shell.port, %addr, workers = self.workers,
                    clients = self.clients.read().len(), "RADIUS listening");
            }
            for _ in 0..self.workers {
                loops.spawn(shell.clone().receive_loop(stop.clone()));
            }
        }
        while loops.join_next().await.is_some() {}
        let drain = async {
            for shell in &ports {
                // All permits back = every evaluation has finished and sent its answer.
                let _ = shell.in_flight.acquire_many(MAX_IN_FLIGHT).await;
            }
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
            tracing::warn!("RADIUS answers still in flight after {DRAIN_TIMEOUT:?}; stopping");
        }
        tracing::info!("RADIUS stopped");
    }
}

/// The client table, shared by the receive tasks of both ports and swapped on reload.
type SharedClients = Arc<RwLock<Arc<Clients>>>;

/// The client table of `[[radius.clients]]`, with a warning when it is empty.
fn clients_from_config(cfg: &Config) -> Result<Clients, String> {
    let clients = Clients::from_config(&cfg.radius.clients).map_err(|e| e.to_string())?;
    if clients.is_empty() {
        tracing::warn!("no [[radius.clients]] configured: every RADIUS packet will be dropped");
    }
    Ok(clients)
}

/// Replaces the client table of a [`RadiusService`] (SIGHUP). Requests already past the client
/// lookup finish with the client they found; the next datagram uses the new table.
#[derive(Clone)]
pub struct RadiusReloader {
    clients: SharedClients,
}

impl RadiusReloader {
    /// Builds the client table of `cfg` and swaps it in; returns the number of clients.
    ///
    /// # Errors
    /// A message naming `radius.clients[i].address` (the running table is kept).
    pub fn reload(&self, cfg: &Config) -> Result<usize, String> {
        let clients = clients_from_config(cfg)?;
        let n = clients.len();
        *self.clients.write() = Arc::new(clients);
        Ok(n)
    }
}

/// Creates, tunes and binds one UDP socket; errors name `key`.
fn bind_udp(key: &str, port: Port, value: &str, recv_buffer: usize) -> Result<UdpSocket, String> {
    let addr = parse_addr(key, value).map_err(|e| e.to_string())?;
    let fail = |e: io::Error| format!("cannot listen on {key} {addr}: {e}");
    let sock =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(fail)?;
    crate::radius::recv_buffer::apply(&sock, key, port.as_str(), recv_buffer);
    if let Err(e) = crate::radius::mmsg::enable_drop_count(&sock) {
        tracing::debug!(key, error = %e, "SO_RXQ_OVFL not available: kernel drops not counted");
    }
    sock.set_nonblocking(true).map_err(fail)?;
    sock.bind(&addr.into()).map_err(fail)?;
    UdpSocket::from_std(sock.into()).map_err(fail)
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
