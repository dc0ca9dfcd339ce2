//! The RADIUS UDP I/O shell: sockets and receive tasks feeding the codec and the engine.
//!
//! # Shape
//! One UDP socket per port (auth, accounting), each with a large receive buffer
//! (`radius.recv_buffer_bytes`, see [`crate::radius::recv_buffer`]) and `radius.workers` receive
//! tasks sharing it. A receive task takes what is queued in batches ([`RecvBatch`]: one `recvmmsg`
//! for up to 32 datagrams) and does only the cheap, bounded work of the calling contract in
//! [`crate::radius`]: client lookup, [`Request::decode`] (framing and HMAC-MD5), the duplicate
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
//! - The duplicate cache ([`ResponseCache`]) is sharded ([`DEDUP_SHARDS`] per port) behind
//!   `parking_lot` mutexes, each held for one `begin`/`insert`/`abandon` call, never across an
//!   await or the engine call.
//! - A per-port [`Semaphore`] bounds evaluations in flight; on stop, [`RadiusService::run`]
//!   waits until all its permits are back (every answer in flight has been sent) or
//!   [`DRAIN_TIMEOUT`] passes.
//!
//! # Failure handling
//! Every discard is silent on the wire (RFC 2865 §3) and counted in
//! `imei_lockd_radius_drops_total{reason}`: `unknown_client`, the [`RequestError`] labels,
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
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::Counter;
use parking_lot::{Mutex, RwLock};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::{parse_addr, Config};
use crate::context::{AuthContext, Decision};
use crate::engine::Engine;
use crate::radius::clients::{Client, Clients};
use crate::radius::codec::Code;
use crate::radius::dedup::{Begin, DedupKey, ResponseCache};
use crate::radius::mapping::{
    access_context, accounting_context, encode_accounting_response, encode_decision, encode_reject,
    encode_status_response, Accounting,
};
use crate::radius::mmsg::{RecvBatch, SendBatch};
use crate::radius::request::{Disposition, Port, Request, RequestError, RequestKind};
use crate::radius::EncodeError;
use crate::telemetry::Handles;

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

/// The duplicate cache of one port, sharded.
struct DedupShards {
    shards: [Mutex<ResponseCache>; DEDUP_SHARDS],
}

impl DedupShards {
    fn new(window: Duration) -> Self {
        Self {
            shards: std::array::from_fn(|_| {
                Mutex::new(ResponseCache::new(window, DEDUP_SHARD_CAPACITY))
            }),
        }
    }

    fn shard(&self, key: &DedupKey) -> &Mutex<ResponseCache> {
        // `DedupKey::shard` is below DEDUP_SHARDS, so `get` always finds it.
        let [first, ..] = &self.shards;
        self.shards.get(key.shard(DEDUP_SHARDS)).unwrap_or(first)
    }

    /// [`ResponseCache::begin`], with the cached octets copied out of the lock.
    fn begin(&self, key: DedupKey) -> Seen {
        match self.shard(&key).lock().begin(key, Instant::now()) {
            Begin::Cached(b) => Seen::Cached(b.to_vec()),
            Begin::InProgress => Seen::InProgress,
            Begin::Started => Seen::New,
        }
    }

    fn insert(&self, key: DedupKey, response: Vec<u8>) {
        self.shard(&key)
            .lock()
            .insert(key, response, Instant::now());
    }

    fn abandon(&self, key: &DedupKey) {
        self.shard(key).lock().abandon(key);
    }
}

enum Seen {
    Cached(Vec<u8>),
    InProgress,
    New,
}

/// What was sent, for `imei_lockd_radius_responses_total{type}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Answer {
    AccessAccept,
    AccessReject,
    AccountingResponse,
    Status,
}

impl Answer {
    fn label(self) -> &'static str {
        match self {
            Self::AccessAccept => "access_accept",
            Self::AccessReject => "access_reject",
            Self::AccountingResponse => "accounting_response",
            Self::Status => "status",
        }
    }
}

/// Why an evaluation sent nothing.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("engine failed (logged by the engine)")]
    Engine,
    #[error("evaluation task failed: {0}")]
    Task(String),
    #[error("request no longer decodes: {0}")]
    Redecode(RequestError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl Failure {
    fn label(&self) -> &'static str {
        match self {
            Self::Engine | Self::Task(_) => "engine_error",
            Self::Redecode(e) => e.label(),
            Self::Encode(_) => "encode_error",
        }
    }
}

/// A request handed to the engine: owned copies of what the blocking task needs.
struct Job {
    /// The packet's octets (up to its Length), decoded again after the decision to encode the
    /// answer: [`Request`] borrows its datagram, and decoding is deterministic, so the second
    /// decode succeeds like the first (one more HMAC, ~1 µs).
    bytes: Box<[u8]>,
    ctx: AuthContext,
    client: Arc<Client>,
}

/// One port's state, shared by its receive tasks and evaluations.
struct PortShell {
    port: Port,
    /// Shared by the port's receive tasks (tokio allows concurrent `recv_from`/`send_to` on
    /// `&UdpSocket`) and by evaluations, which send their answer on it.
    socket: Arc<UdpSocket>,
    clients: SharedClients,
    engine: Arc<Engine>,
    cache: DedupShards,
    /// Permits for evaluations in flight ([`MAX_IN_FLIGHT`]); `run` takes them all back to drain.
    in_flight: Arc<Semaphore>,
    limiter: Arc<LogLimiter>,
    /// The socket's kernel drop count already counted as `receive_buffer` drops.
    kernel_drops: AtomicU32,
}

impl PortShell {
    async fn receive_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut batch = RecvBatch::default();
        // Answers decided on this task, sent once per received batch.
        let mut out = SendBatch::default();
        // True after a permit wait timed out, until a permit is free again (see module docs).
        let mut shedding = false;
        loop {
            let received = tokio::select! {
                biased;
                _ = stop.wait_for(|&s| s) => break,
                r = batch.recv(&self.socket) => r,
            };
            match received {
                Ok(n) => {
                    if let Some(seen) = batch.kernel_drops() {
                        self.count_kernel_drops(seen);
                    }
                    for (datagram, src) in batch.datagrams() {
                        self.handle_datagram(datagram, src, &mut shedding, &mut out)
                            .await;
                    }
                    self.flush(&mut out).await;
                    // tokio's cooperative budget, one unit per datagram: readiness and `try_io`
                    // consume none, so on a socket that never empties this task would keep its
                    // worker thread for ever and starve Diameter, the API and the timers.
                    for _ in 0..n {
                        tokio::task::consume_budget().await;
                    }
                }
                Err(e) => {
                    tracing::debug!(port = %self.port, error = %e, "RADIUS receive error");
                    tokio::time::sleep(RECV_ERROR_PAUSE).await;
                }
            }
        }
    }

    /// The calling contract of [`crate::radius`] for one datagram.
    async fn handle_datagram(
        self: &Arc<Self>,
        datagram: &[u8],
        src: SocketAddr,
        shedding: &mut bool,
        out: &mut SendBatch,
    ) {
        let code = datagram
            .first()
            .map_or("none", |&c| Code::from_u8(c).name());
        static PACKETS: Handles<(Port, &str), Counter> = Handles::new();
        PACKETS.with(
            (self.port, code),
            |(port, code)| {
                metrics::counter!("imei_lockd_radius_packets_total",
                    "port" => port.as_str(), "code" => code)
            },
            |c| c.increment(1),
        );
        let clients = self.clients.read().clone();
        let Some(client) = clients.by_source(src.ip()) else {
            self.drop_packet(
                src,
                "unknown_client",
                &"source matches no radius.clients address",
            );
            return;
        };
        let req = match Request::decode(datagram, self.port, &client.policy()) {
            Ok(r) => r,
            Err(e) => {
                self.drop_packet(src, e.label(), &e);
                return;
            }
        };
        let key = req.dedup_key(src);
        match self.cache.begin(key) {
            Seen::Cached(bytes) => {
                metrics::counter!("imei_lockd_radius_duplicates_total",
                    "port" => self.port.as_str())
                .increment(1);
                out.push(bytes, src);
                return;
            }
            Seen::InProgress => {
                self.drop_packet(src, "duplicate_in_progress", &"first copy still evaluated");
                return;
            }
            Seen::New => {}
        }
        match req.kind() {
            RequestKind::Status => {
                let r = encode_status_response(&req, client.secret());
                self.finish(key, src, r.map(|b| (b, Answer::Status)), Some(out))
                    .await;
            }
            RequestKind::Access => match access_context(&req, &client.name, src) {
                Ok(ctx) => {
                    self.evaluate(key, src, &req, ctx, client, shedding, out)
                        .await;
                }
                Err(e) => match e.disposition() {
                    Disposition::Reject(message) => {
                        let r = encode_reject(&req, message, client.secret());
                        let r = r.map(|b| (b, Answer::AccessReject));
                        self.finish(key, src, r, Some(out)).await;
                    }
                    Disposition::SilentDrop => {
                        self.cache.abandon(&key);
                        self.drop_packet(src, e.label(), &e);
                    }
                },
            },
            RequestKind::Accounting => match accounting_context(&req, &client.name, src) {
                Ok(Accounting::Session(ctx)) => {
                    self.evaluate(key, src, &req, ctx, client, shedding, out)
                        .await;
                }
                Ok(Accounting::AnswerOnly(_)) => {
                    let r = encode_accounting_response(&req, client.secret());
                    let r = r.map(|b| (b, Answer::AccountingResponse));
                    self.finish(key, src, r, Some(out)).await;
                }
                Err(e) => {
                    self.cache.abandon(&key);
                    self.drop_packet(src, e.label(), &e);
                }
            },
        }
    }

    /// Decides a request: here when the engine can from memory
    /// ([`Engine::decide_in_memory`]), else on the blocking pool once a permit is free (see the module docs for the wait and
    /// shedding).
    // The receive task's own state (shedding flag, answer batch) is passed alongside the
    // request; bundling them would only move the count.
    #[allow(clippy::too_many_arguments)]
    async fn evaluate(
        self: &Arc<Self>,
        key: DedupKey,
        src: SocketAddr,
        req: &Request<'_>,
        ctx: AuthContext,
        client: &Arc<Client>,
        shedding: &mut bool,
        out: &mut SendBatch,
    ) {
        if let Some(decided) = self.engine.decide_in_memory(&ctx) {
            let outcome = decided
                .map_err(|_| Failure::Engine)
                .and_then(|d| encode_answer(req, &d, client.secret()));
            self.finish_evaluated(key, src, outcome, Some(out)).await;
            return;
        }
        let permit = match self.in_flight.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) if *shedding => None,
            Err(_) => {
                // Answers already made go out before this task waits.
                self.flush(out).await;
                let wait = self.in_flight.clone().acquire_owned();
                match tokio::time::timeout(OVERLOAD_WAIT, wait).await {
                    Ok(Ok(p)) => Some(p),
                    _ => None,
                }
            }
        };
        *shedding = permit.is_none();
        let Some(permit) = permit else {
            self.cache.abandon(&key);
            self.drop_packet(src, "overload", &"evaluations in flight at their bound");
            return;
        };
        let job = Job {
            bytes: req.packet().as_bytes().into(),
            ctx,
            client: client.clone(),
        };
        let shell = self.clone();
        tokio::spawn(async move {
            let port = shell.port;
            let engine = shell.engine.clone();
            let outcome =
                tokio::task::spawn_blocking(move || decide_and_encode(&engine, port, &job))
                    .await
                    .unwrap_or_else(|e| Err(Failure::Task(e.to_string())));
            shell.finish_evaluated(key, src, outcome, None).await;
            drop(permit);
        });
    }

    async fn finish_evaluated(
        &self,
        key: DedupKey,
        src: SocketAddr,
        outcome: Result<(Vec<u8>, Answer), Failure>,
        out: Option<&mut SendBatch>,
    ) {
        match outcome {
            Ok(answer) => self.finish(key, src, Ok(answer), out).await,
            Err(e) => {
                self.cache.abandon(&key);
                self.drop_packet(src, e.label(), &e);
            }
        }
    }

    /// Caches and sends an answer (into `out` when given, else at once), or abandons the
    /// request when it could not be encoded.
    async fn finish(
        &self,
        key: DedupKey,
        src: SocketAddr,
        answer: Result<(Vec<u8>, Answer), EncodeError>,
        out: Option<&mut SendBatch>,
    ) {
        match answer {
            Ok((bytes, kind)) => {
                self.cache.insert(key, bytes.clone());
                static RESPONSES: Handles<(Port, Answer), Counter> = Handles::new();
                RESPONSES.with(
                    (self.port, kind),
                    |(port, kind)| {
                        metrics::counter!("imei_lockd_radius_responses_total",
                            "port" => port.as_str(), "type" => kind.label())
                    },
                    |c| c.increment(1),
                );
                match out {
                    Some(out) => out.push(bytes, src),
                    None => self.send(&bytes, src).await,
                }
            }
            Err(e) => {
                self.cache.abandon(&key);
                tracing::warn!(port = %self.port, %src, error = %e, "cannot encode RADIUS answer");
                self.drop_packet(src, "encode_error", &e);
            }
        }
    }

    /// Sends the answers queued in `out`.
    async fn flush(&self, out: &mut SendBatch) {
        if !out.is_empty() {
            out.flush(&self.socket, |dst, e| {
                self.drop_packet(dst, "send_error", &e)
            })
            .await;
        }
    }

    async fn send(&self, bytes: &[u8], dst: SocketAddr) {
        if let Err(e) = self.socket.send_to(bytes, dst).await {
            self.drop_packet(dst, "send_error", &e);
        }
    }

    /// Counts the datagrams the kernel dropped since the last count (`seen` is the socket's
    /// total, see [`RecvBatch::kernel_drops`]; receive tasks may report totals out of order, an
    /// older one is ignored) and warns, at most once per [`LOG_INTERVAL`].
    fn count_kernel_drops(&self, seen: u32) {
        let mut counted = self.kernel_drops.load(Ordering::Relaxed);
        let new = loop {
            let new = seen.wrapping_sub(counted);
            // Zero: nothing new; above half the range: an older total than already counted.
            if new == 0 || new > u32::MAX / 2 {
                return;
            }
            match self.kernel_drops.compare_exchange_weak(
                counted,
                seen,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break new,
                Err(now) => counted = now,
            }
        };
        static DROPS: Handles<Port, Counter> = Handles::new();
        DROPS.with(
            self.port,
            |port| {
                metrics::counter!("imei_lockd_radius_drops_total",
                    "port" => port.as_str(), "reason" => "receive_buffer")
            },
            |c| c.increment(u64::from(new)),
        );
        // The limiter is keyed by (source, reason) and shared by the ports; kernel drops have no
        // source, so they are keyed by the port's name under the unspecified address (which no
        // datagram comes from): one line per port per interval, without a getsockname.
        let key = IpAddr::from([0, 0, 0, 0]);
        if self
            .limiter
            .admit((key, self.port.as_str()), Instant::now())
            .is_some()
        {
            tracing::warn!(port = %self.port, dropped = new, total = seen,
                "RADIUS datagrams dropped by the kernel: the socket's receive buffer was full \
                 (the daemon is behind its load; see radius.recv_buffer_bytes and \
                 radius.workers; further lines for 10 s are not logged)");
        }
    }

    /// Counts a drop and logs it (WARN for [`WARN_REASONS`], else debug), rate-limited per
    /// (source, reason).
    fn drop_packet(&self, src: SocketAddr, reason: &'static str, detail: &dyn std::fmt::Display) {
        static DROPS: Handles<(Port, &str), Counter> = Handles::new();
        DROPS.with(
            (self.port, reason),
            |(port, reason)| {
                metrics::counter!("imei_lockd_radius_drops_total",
                    "port" => port.as_str(), "reason" => reason)
            },
            |c| c.increment(1),
        );
        let warn = WARN_REASONS
            .iter()
            .find(|(r, _)| *r == reason)
            .map(|(_, text)| *text);
        if warn.is_none() && !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let Some(admit) = self.limiter.admit((src.ip(), reason), Instant::now()) else {
            return;
        };
        let suppressed = admit.suppressed;
        match (warn, admit.overflow) {
            (Some(text), false) => tracing::warn!(port = %self.port, %src, reason,
                detail = %detail, suppressed,
                "{text} (at most one line per source and reason per 10 s; suppressed: the \
                 drops not logged since the previous line)"),
            (None, false) => tracing::debug!(port = %self.port, %src, reason,
                detail = %detail, suppressed,
                "RADIUS packet dropped (further drops of this reason from this source are not \
                 logged for 10 s)"),
            (_, true) => tracing::warn!(port = %self.port, %src, reason, suppressed,
                "RADIUS datagrams dropped from more sources than the log tracks (a flood, \
                 perhaps of spoofed addresses): one line per 10 s stands for all of them \
                 (suppressed: the drops not logged); see imei_lockd_radius_drops_total"),
        }
    }
}

/// The blocking part of an evaluation: the engine's decision, then the answer's octets.
fn decide_and_encode(engine: &Engine, port: Port, job: &Job) -> Result<(Vec<u8>, Answer), Failure> {
    // The engine logs and counts its own errors.
    let decision = engine.decide(&job.ctx).map_err(|_| Failure::Engine)?;
    let req = Request::decode(&job.bytes, port, &job.client.policy()).map_err(Failure::Redecode)?;
    encode_answer(&req, &decision, job.client.secret())
}

/// The answer to a decided request, and its kind for metrics.
fn encode_answer(
    req: &Request<'_>,
    decision: &Decision,
    secret: &[u8],
) -> Result<(Vec<u8>, Answer), Failure> {
    Ok(match req.kind() {
        RequestKind::Access => {
            let kind = if decision.is_accept() {
                Answer::AccessAccept
            } else {
                Answer::AccessReject
            };
            (encode_decision(req, decision, secret)?, kind)
        }
        RequestKind::Accounting => (
            encode_accounting_response(req, secret)?,
            Answer::AccountingResponse,
        ),
        RequestKind::Status => (encode_status_response(req, secret)?, Answer::Status),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_shards_cache_and_abandon() {
        let c = DedupShards::new(Duration::from_secs(5));
        let key = DedupKey::new("192.0.2.1:1000".parse().unwrap(), 7, [7; 16]);
        assert!(matches!(c.begin(key), Seen::New));
        assert!(matches!(c.begin(key), Seen::InProgress));
        c.abandon(&key);
        assert!(matches!(c.begin(key), Seen::New));
        c.insert(key, vec![1, 2, 3]);
        assert!(matches!(c.begin(key), Seen::Cached(b) if b == [1, 2, 3]));
    }

    fn config(auth: &str, acct: &str) -> Config {
        let mut cfg = Config::default();
        cfg.radius.auth_listen = auth.into();
        cfg.radius.acct_listen = acct.into();
        cfg
    }

    #[tokio::test]
    async fn bind_error_names_the_key() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let Err(e) = RadiusService::bind(&config("127.0.0.1:0", &addr)).await else {
            panic!("bind to a taken port succeeded");
        };
        assert!(
            e.starts_with(&format!("cannot listen on radius.acct_listen {addr}: ")),
            "{e}"
        );
        let Err(e) = RadiusService::bind(&config("nonsense", "127.0.0.1:0")).await else {
            panic!("bad address accepted");
        };
        assert!(e.contains("radius.auth_listen"), "{e}");
    }

    /// A clock that takes `delay` per reading: makes every engine call slow.
    struct SlowClock(Duration);

    impl crate::engine::Clock for SlowClock {
        fn now_ms(&self) -> crate::store::Millis {
            std::thread::sleep(self.0);
            0
        }
    }

    struct Running {
        auth: SocketAddr,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(delay: Duration) -> Running {
        start_with(delay, crate::store::memory::MemStore::new()).await
    }

    async fn start_with(delay: Duration, store: crate::store::memory::MemStore) -> Running {
        let mut cfg = config("127.0.0.1:0", "127.0.0.1:0");
        cfg.radius.clients = vec![crate::config::RadiusClientConfig {
            name: "local".into(),
            address: "127.0.0.1/32".into(),
            secret: Some("testing123".into()),
            secret_file: None,
            require_message_authenticator: true,
            secret_from_file: None,
        }];
        let service = RadiusService::bind(&cfg).await.unwrap();
        let (auth, _) = service.local_addrs().unwrap();
        let engine = Arc::new(Engine::new(
            Arc::new(store),
            crate::engine::EnginePolicy::default(),
            Arc::new(SlowClock(delay)),
        ));
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(service.run(engine, rx));
        Running { auth, stop, task }
    }

    fn access_request(id: u8, seed: u8) -> Vec<u8> {
        use crate::radius::vsa::{encode_vsa, TGPP_IMSI, VENDOR_3GPP};
        let imsi = encode_vsa(VENDOR_3GPP, &[(TGPP_IMSI, b"001010000000001")]).unwrap();
        encode_with(id, seed, &imsi)
    }

    /// An Access-Request presenting an IMEI: on a locked SIM with nothing bound it binds, so it
    /// goes to the blocking pool (see `Engine::decide_in_memory`).
    fn binding_request(id: u8, seed: u8) -> Vec<u8> {
        use crate::radius::vsa::{encode_vsa, TGPP_IMEISV, TGPP_IMSI, VENDOR_3GPP};
        let vsa = encode_vsa(
            VENDOR_3GPP,
            &[
                (TGPP_IMSI, b"001010000000001"),
                (TGPP_IMEISV, b"3500000000000101"),
            ],
        )
        .unwrap();
        encode_with(id, seed, &vsa)
    }

    fn encode_with(id: u8, seed: u8, imsi: &[u8]) -> Vec<u8> {
        crate::radius::encode::encode_access_request(
            Code::AccessRequest,
            id,
            &[seed; 16],
            &[(crate::radius::attr::VENDOR_SPECIFIC, imsi)],
            b"testing123",
            true,
        )
        .unwrap()
    }

    async fn client() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    async fn recv(s: &UdpSocket, within: Duration) -> Option<Vec<u8>> {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(within, s.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => buf.get(..n).map(<[u8]>::to_vec),
            _ => None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_in_flight_go_out_after_stop() {
        let r = start(Duration::from_millis(300)).await;
        let c = client().await;
        c.send_to(&access_request(1, 1), r.auth).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        r.stop.send(true).unwrap();
        // Unknown SIM: Access-Reject, sent although stop fired while it was evaluated.
        let answer = recv(&c, Duration::from_secs(3))
            .await
            .expect("answer after stop");
        assert_eq!(answer.first(), Some(&3));
        tokio::time::timeout(Duration::from_secs(3), r.task)
            .await
            .expect("run returns after the drain")
            .unwrap();
        // Nothing is received any more.
        c.send_to(&access_request(2, 2), r.auth).await.unwrap();
        assert!(recv(&c, Duration::from_millis(300)).await.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overload_sheds_beyond_the_in_flight_bound() {
        use crate::store::{commit_blocking, Batch, Durability, ImeiManagement, SimRecord};
        // A locked SIM with nothing bound: every request may bind, so every one goes to the
        // blocking pool (decisions made from memory run inline and are not bounded here).
        let store = crate::store::memory::MemStore::new();
        let imsi = crate::context::Imsi::parse(b"001010000000001").unwrap();
        let mut sim = SimRecord::new(imsi);
        sim.value = Some(ImeiManagement::Lock);
        let mut batch = Batch::new();
        batch.put_sim(sim);
        commit_blocking(&store, batch, Durability::Synced).unwrap();
        let r = start_with(Duration::from_millis(1500), store).await;
        let c = client().await;
        let sent = MAX_IN_FLIGHT as usize + 40;
        for i in 0..sent {
            let pkt = binding_request((i % 256) as u8, (i / 256) as u8 + 1);
            c.send_to(&pkt, r.auth).await.unwrap();
        }
        let mut answers = 0;
        while recv(&c, Duration::from_millis(2500)).await.is_some() {
            answers += 1;
        }
        // Each engine call reads the clock at least once (1.5 s): only the permitted ones are
        // evaluated, the rest are dropped, not queued without bound.
        assert_eq!(answers, MAX_IN_FLIGHT as usize);
        r.stop.send(true).unwrap();
        r.task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_server_and_retransmission() {
        let r = start(Duration::ZERO).await;
        let c = client().await;
        let status = crate::radius::encode::encode_access_request(
            Code::StatusServer,
            9,
            &[9; 16],
            &[],
            b"testing123",
            true,
        )
        .unwrap();
        c.send_to(&status, r.auth).await.unwrap();
        let a = recv(&c, Duration::from_secs(2))
            .await
            .expect("status answer");
        assert_eq!(a.first(), Some(&2));
        let pkt = access_request(3, 3);
        c.send_to(&pkt, r.auth).await.unwrap();
        let first = recv(&c, Duration::from_secs(2)).await.expect("answer");
        c.send_to(&pkt, r.auth).await.unwrap();
        let again = recv(&c, Duration::from_secs(2))
            .await
            .expect("cached answer");
        assert_eq!(first, again);
        r.stop.send(true).unwrap();
        r.task.await.unwrap();
    }

    #[tokio::test]
    async fn binds_with_a_large_receive_buffer() {
        let s = RadiusService::bind(&config("127.0.0.1:0", "127.0.0.1:0"))
            .await
            .unwrap();
        let (auth, acct) = s.local_addrs().unwrap();
        assert_ne!(auth.port(), 0);
        assert_ne!(acct.port(), 0);
    }

    #[tokio::test]
    async fn reloader_swaps_the_client_table_and_keeps_it_on_error() {
        let mut cfg = config("127.0.0.1:0", "127.0.0.1:0");
        let client = |name: &str, address: &str| crate::config::RadiusClientConfig {
            name: name.into(),
            address: address.into(),
            secret: Some("s".into()),
            secret_file: None,
            require_message_authenticator: true,
            secret_from_file: None,
        };
        cfg.radius.clients = vec![client("a", "127.0.0.1/32")];
        let s = RadiusService::bind(&cfg).await.unwrap();
        let r = s.reloader();
        cfg.radius.clients = vec![client("a", "127.0.0.1/32"), client("b", "127.0.0.3")];
        assert_eq!(r.reload(&cfg), Ok(2));
        let ip = "127.0.0.3".parse().unwrap();
        let name = |s: &RadiusService| s.clients.read().by_source(ip).map(|c| c.name.to_string());
        assert_eq!(name(&s).as_deref(), Some("b"));
        cfg.radius.clients = vec![client("c", "127.0.0.3/33")];
        let e = r.reload(&cfg).unwrap_err();
        assert!(e.contains("radius.clients[0].address"), "{e}");
        assert_eq!(name(&s).as_deref(), Some("b"));
    }
}
