//! One RADIUS port's receive path (see [`super`] for the shape, the synchronisation and the
//! failure handling): the receive loop over a socket shared by `radius.workers` tasks, the
//! per-datagram work (client lookup, decode, the sharded duplicate cache, the answers that need
//! no engine), evaluations on the receive task or the blocking pool under the port's permits,
//! sending answers, and counting and rate-limited logging of every drop.
//!
//! It does not bind sockets, reload clients or drain on stop ([`super::RadiusService`]), and it
//! neither decodes nor decides itself: the codec and the engine do.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::Counter;
use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::sync::{watch, Semaphore};

use crate::context::{AuthContext, Decision};
use crate::engine::Engine;
use crate::radius::clients::Client;
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

use super::{
    LogLimiter, SharedClients, DEDUP_SHARDS, DEDUP_SHARD_CAPACITY, OVERLOAD_WAIT, RECV_ERROR_PAUSE,
    WARN_REASONS,
};

/// The duplicate cache of one port, sharded.
pub(super) struct DedupShards {
    shards: [Mutex<ResponseCache>; DEDUP_SHARDS],
}

impl DedupShards {
    pub(super) fn new(window: Duration) -> Self {
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
    pub(super) fn begin(&self, key: DedupKey) -> Seen {
        match self.shard(&key).lock().begin(key, Instant::now()) {
            Begin::Cached(b) => Seen::Cached(b.to_vec()),
            Begin::InProgress => Seen::InProgress,
            Begin::Started => Seen::New,
        }
    }

    pub(super) fn insert(&self, key: DedupKey, response: Vec<u8>) {
        self.shard(&key)
            .lock()
            .insert(key, response, Instant::now());
    }

    pub(super) fn abandon(&self, key: &DedupKey) {
        self.shard(key).lock().abandon(key);
    }
}

pub(super) enum Seen {
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
pub(super) struct PortShell {
    pub(super) port: Port,
    /// Shared by the port's receive tasks (tokio allows concurrent `recv_from`/`send_to` on
    /// `&UdpSocket`) and by evaluations, which send their answer on it.
    pub(super) socket: Arc<UdpSocket>,
    pub(super) clients: SharedClients,
    pub(super) engine: Arc<Engine>,
    pub(super) cache: DedupShards,
    /// Permits for evaluations in flight ([`MAX_IN_FLIGHT`](super::MAX_IN_FLIGHT)); `run` takes them all back to drain.
    pub(super) in_flight: Arc<Semaphore>,
    pub(super) limiter: Arc<LogLimiter>,
    /// The socket's kernel drop count already counted as `receive_buffer` drops.
    pub(super) kernel_drops: AtomicU32,
}

impl PortShell {
    pub(super) async fn receive_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
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
    /// older one is ignored) and warns, at most once per [`LOG_INTERVAL`](super::LOG_INTERVAL).
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
