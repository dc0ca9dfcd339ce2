//! One Diameter connection: frames bytes into the peer machine, drains its outputs, runs its
//! timer, and answers application requests through the application [`Catalog`].
//!
//! # Tasks and channels
//! - This task owns the read half and the [`Peer`]; it is the only one that decides what is
//!   written, so nothing is written after the machine closes except what it queued before.
//! - A writer task owns the write half and drains a bounded channel (backpressure: when the
//!   peer stops reading our answers, we stop reading its requests).
//! - Each application request runs in its own task (engine on the blocking pool) and sends
//!   its encoded answer back here; answers go out as they complete, in any order, matched by
//!   the peer through Hop-by-Hop (RFC 6733 §6.2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use super::listen::Transport;
use super::{Shared, MAX_IN_FLIGHT};
use crate::diameter::app::Catalog;
use crate::diameter::codec::{error_answer, Decoder, Header, Message, ResultCode, HEADER_LEN};
use crate::diameter::peer::{
    CloseReason, DisconnectCause, Event, Lookup, Peer, PeerConfig, PeerStats, Seed, State,
};
use crate::telemetry::Handles;

/// Messages queued to the writer before this task waits.
const WRITE_QUEUE: usize = 1024;
/// How long the writer may take to flush the last messages after close.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes reserved per read.
const READ_CHUNK: usize = 16 * 1024;

/// Who this connection is.
pub(super) struct ConnCtx {
    pub id: u64,
    pub remote: SocketAddr,
    pub transport: Transport,
    pub shared: Arc<Shared>,
    /// The applications served, shared by every connection.
    pub catalog: Arc<Catalog>,
}

/// An application answer, encoded, from a request task.
struct Done {
    bytes: Vec<u8>,
    app: &'static str,
    code: Outcome,
}

/// The `imei_lockd_diameter_peers{state}` gauge for one connection.
struct StateGauge(Option<&'static str>);

impl StateGauge {
    fn set(&mut self, state: Option<&'static str>) {
        if self.0 == state {
            return;
        }
        if let Some(old) = self.0 {
            metrics::gauge!("imei_lockd_diameter_peers", "state" => old).decrement(1.0);
        }
        if let Some(new) = state {
            metrics::gauge!("imei_lockd_diameter_peers", "state" => new).increment(1.0);
        }
        self.0 = state;
    }
}

impl Drop for StateGauge {
    fn drop(&mut self) {
        self.set(None);
    }
}

fn error(reason: &'static str) {
    static ERRORS: Handles<&str, Counter> = Handles::new();
    ERRORS.with(
        reason,
        |reason| metrics::counter!("imei_lockd_diameter_errors_total", "reason" => reason),
        |c| c.increment(1),
    );
}

/// An answer's result for metrics: (0, Result-Code), or (Vendor-Id, Experimental-Result-Code)
/// when it carries an Experimental-Result instead (S13 DIAMETER_ERROR_EQUIPMENT_UNKNOWN).
type Outcome = Option<(u32, u32)>;

fn outcome(m: &Message) -> Outcome {
    m.result_code()
        .map(|c| (0, c.0))
        .or_else(|| m.experimental_result())
}

fn answered(app: &'static str, code: Outcome) {
    static ANSWERS: Handles<(&str, Outcome), Counter> = Handles::new();
    ANSWERS.with(
        (app, code),
        |(app, code)| {
            let code = match code {
                None => "none".to_owned(),
                Some((0, c)) => c.to_string(),
                Some((vendor, c)) => format!("{vendor}:{c}"),
            };
            metrics::counter!("imei_lockd_diameter_answers_total", "app" => app,
                "result_code" => code)
        },
        |c| c.increment(1),
    );
}

struct Conn {
    ctx: ConnCtx,
    cfg: Arc<PeerConfig>,
    peer: Peer,
    out: mpsc::Sender<Vec<u8>>,
    done_tx: mpsc::UnboundedSender<Done>,
    in_flight: Arc<Semaphore>,
    /// Notified when a newer connection from the same peer opened.
    replaced: Arc<Notify>,
    /// Origin-Host once Open.
    host: Option<String>,
    gauge: StateGauge,
    suspect: bool,
    stats: PeerStats,
    /// Set once the machine reported [`Event::Closed`].
    closed: Option<CloseReason>,
}

/// Serves one accepted connection until it closes.
pub(super) async fn serve(stream: TcpStream, ctx: ConnCtx, mut stop: watch::Receiver<bool>) {
    // Nagle off: TCP_NODELAY on TCP; an SCTP socket refuses that option and takes SCTP_NODELAY
    // (the listener sets it too, but accepted associations do not reliably inherit it).
    if stream.set_nodelay(true).is_err() {
        if let Err(e) = super::listen::set_sctp_nodelay(&socket2::SockRef::from(&stream)) {
            tracing::debug!(remote = %ctx.remote, error = %e, "neither TCP_NODELAY nor SCTP_NODELAY");
        }
    }
    let local = stream
        .local_addr()
        .map_or_else(|_| ctx.remote.ip(), |a| a.ip());
    let cfg = ctx.shared.peer_config(ctx.remote.ip(), local, &ctx.catalog);
    let seed = Seed {
        unix_time_secs: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        random: ctx.shared.random_u64(ctx.id),
    };
    let peer = Peer::new(cfg.clone(), Instant::now(), seed);
    tracing::debug!(remote = %ctx.remote, transport = %ctx.transport, conn = ctx.id,
        "diameter connection accepted");
    let (mut rd, wr) = stream.into_split();
    let (out, out_rx) = mpsc::channel(WRITE_QUEUE);
    let writer = tokio::spawn(write_loop(wr, out_rx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut c = Conn {
        ctx,
        cfg,
        peer,
        out,
        done_tx,
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        replaced: Arc::new(Notify::new()),
        host: None,
        gauge: StateGauge(None),
        suspect: false,
        stats: PeerStats::default(),
        closed: None,
    };
    c.gauge.set(Some("wait_cer"));
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut stopping = false;
    let replaced = c.replaced.clone();
    // Since when the bytes in `buf` (an incomplete message) have waited for the rest of it.
    let mut partial_since: Option<tokio::time::Instant> = None;
    let message_timeout = c.ctx.shared.message_timeout;
    let reason = loop {
        if let Some(reason) = c.drain().await {
            break reason;
        }
        let deadline = c.peer.poll_timeout();
        let sleep_to = deadline.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            tokio::time::Instant::from_std,
        );
        let partial_deadline = partial_since.map(|t| t + message_timeout);
        tokio::select! {
            r = read_more(&mut rd, &mut buf) => match r {
                Ok(true) => {
                    let progressed = c.handle_bytes(&mut buf).await;
                    // A message must arrive in full within `message_timeout` (counted from
                    // the end of the previous one when they come back to back).
                    partial_since = match partial_since {
                        _ if buf.is_empty() => None,
                        Some(t) if !progressed => Some(t),
                        _ => Some(tokio::time::Instant::now()),
                    };
                }
                Ok(false) => c.peer.handle_transport_closed(Instant::now()),
                Err(e) => {
                    tracing::debug!(remote = %c.ctx.remote, error = %e, "diameter read failed");
                    c.peer.handle_transport_closed(Instant::now());
                }
            },
            Some(d) = done_rx.recv() => c.send_done(d).await,
            () = tokio::time::sleep_until(sleep_to), if deadline.is_some() => {
                c.peer.handle_timeout(Instant::now());
            }
            () = sleep_until_some(partial_deadline), if partial_deadline.is_some() => {
                error("message_timeout");
                tracing::info!(remote = %c.ctx.remote, origin_host = ?c.host,
                    buffered = buf.len(), timeout_s = message_timeout.as_secs(),
                    "diameter message incomplete within diameter.message_timeout_s: closing");
                partial_since = None;
                c.peer.handle_transport_closed(Instant::now());
            }
            () = super::stopped(&mut stop), if !stopping => {
                stopping = true;
                c.peer.begin_disconnect(Instant::now(), DisconnectCause::Rebooting);
            }
            () = replaced.notified() => {
                tracing::info!(origin_host = ?c.host, remote = %c.ctx.remote,
                    "diameter peer reconnected: closing its older connection");
                c.peer.handle_transport_closed(Instant::now());
            }
        }
    };
    c.finish(&reason);
    // Answers still being computed (e.g. to a valid request followed by bytes that cannot be
    // framed) go out before the close while the transport is up, within FLUSH_TIMEOUT.
    if !matches!(reason, CloseReason::TransportClosed) {
        let flush = async {
            let _ = c.in_flight.acquire_many(MAX_IN_FLIGHT as u32).await;
            while let Ok(d) = done_rx.try_recv() {
                answered(d.app, d.code);
                if c.out.send(d.bytes).await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, flush).await;
    }
    // The writer ends once it has written what was queued.
    drop(c);
    let mut writer = writer;
    if tokio::time::timeout(FLUSH_TIMEOUT, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// Sleeps until `at`; never resolves for `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Reads more bytes into `buf`: `Ok(false)` at end of stream. Cancel-safe (one `read`).
async fn read_more(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut Vec<u8>,
) -> std::io::Result<bool> {
    buf.reserve(READ_CHUNK);
    Ok(rd.read_buf(buf).await? > 0)
}

/// Writes queued messages, coalescing what is ready into one write.
async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut batch = Vec::with_capacity(READ_CHUNK);
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if wr.write_all(&batch).await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

impl Conn {
    /// Feeds every complete frame in `buf` to the machine, draining after each; true when at
    /// least one frame was complete.
    async fn handle_bytes(&mut self, buf: &mut Vec<u8>) -> bool {
        let mut start = 0;
        loop {
            if self.peer.state() == State::Closed {
                break;
            }
            let rest = buf.get(start..).unwrap_or_default();
            match self.peer.decoder().peek_length(rest) {
                Ok(Some(len)) if rest.len() >= len => {
                    let frame = rest.get(..len).unwrap_or_default();
                    self.peer.handle_frame(Instant::now(), frame);
                    start += len;
                    self.count_stats();
                    if self.drain_outputs().await.is_some() {
                        break;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::info!(remote = %self.ctx.remote, origin_host = ?self.host,
                        error = %e, "diameter stream error: closing");
                    let head = rest.get(..rest.len().min(HEADER_LEN)).unwrap_or_default();
                    self.peer.handle_stream_error(Instant::now(), head, e);
                    self.count_stats();
                    break;
                }
            }
        }
        buf.drain(..start.min(buf.len()));
        start > 0
    }

    /// Drains the machine; `Some(reason)` once it closed (after writing what it queued).
    async fn drain(&mut self) -> Option<CloseReason> {
        self.drain_outputs().await;
        self.closed.clone()
    }

    async fn drain_outputs(&mut self) -> Option<CloseReason> {
        while let Some(t) = self.peer.poll_transmit() {
            count_transmit(&self.ctx.catalog, &t.bytes);
            if self.out.send(t.bytes).await.is_err() {
                self.peer.handle_transport_closed(Instant::now());
            }
        }
        let mut closed = None;
        while let Some(ev) = self.peer.poll_event() {
            match ev {
                Event::Open(info) => {
                    tracing::info!(origin_host = %info.origin_host,
                        origin_realm = %info.origin_realm, remote = %self.ctx.remote,
                        transport = %self.ctx.transport, product = ?info.product_name,
                        "diameter peer open");
                    let key = info.origin_host.to_ascii_lowercase();
                    let old = {
                        // Set under the lock, as `finish` clears it: the gauge follows the map.
                        let mut open = self.ctx.shared.open.lock();
                        super::series::set_peer_up(&key, true);
                        open.insert(key, (self.ctx.id, self.replaced.clone()))
                    };
                    if let Some((_, n)) = old {
                        n.notify_one();
                    }
                    self.host = Some(info.origin_host);
                }
                Event::Request(msg) => self.dispatch(*msg).await,
                Event::Suspect => {
                    self.suspect = true;
                    tracing::info!(origin_host = ?self.host, remote = %self.ctx.remote,
                        "diameter peer suspect: watchdog unanswered");
                }
                Event::Recovered => {
                    self.suspect = false;
                    tracing::info!(origin_host = ?self.host, remote = %self.ctx.remote,
                        "diameter peer recovered");
                }
                Event::Closed(r) => {
                    self.closed = Some(r.clone());
                    closed = Some(r);
                }
            }
        }
        self.gauge.set(match self.peer.state() {
            State::WaitCer => Some("wait_cer"),
            State::Open if self.suspect => Some("suspect"),
            State::Open => Some("open"),
            State::Closing => Some("closing"),
            State::Closed => None,
        });
        closed
    }

    /// Counts what the machine did with the last input.
    fn count_stats(&mut self) {
        let s = self.peer.stats();
        let inc = |reason, now: u64, before: u64| {
            if now > before {
                metrics::counter!("imei_lockd_diameter_errors_total", "reason" => reason)
                    .increment(now - before);
            }
        };
        inc("decode", s.decode_errors, self.stats.decode_errors);
        inc("error_answer", s.error_answers, self.stats.error_answers);
        inc(
            "unmatched_answer",
            s.unmatched_answers,
            self.stats.unmatched_answers,
        );
        self.stats = s;
    }

    /// A validated application request: duplicate check, admission, then a task.
    async fn dispatch(&mut self, msg: Message) {
        let h = msg.header;
        let app = self.ctx.catalog.label(h.application_id);
        // Validation guarantees Origin-Host; the connection's peer is a fallback.
        let origin_host = msg
            .origin_host()
            .map(str::to_owned)
            .or_else(|| self.host.clone())
            .unwrap_or_default();
        let lookup = self.ctx.shared.dup.lock().check(
            Instant::now(),
            &origin_host,
            h.end_to_end,
            h.hop_by_hop,
        );
        match lookup {
            Lookup::New => {}
            Lookup::InFlight => {
                error("duplicate_in_flight");
                tracing::debug!(
                    origin_host = %origin_host,
                    end_to_end = h.end_to_end,
                    "duplicate of a request in flight dropped"
                );
                return;
            }
            Lookup::Answered(bytes) => {
                error("duplicate");
                tracing::debug!(
                    origin_host = %origin_host,
                    end_to_end = h.end_to_end,
                    "duplicate request answered from cache"
                );
                let code = Decoder::default()
                    .decode(&bytes)
                    .ok()
                    .and_then(|m| outcome(&m));
                answered(app, code);
                self.write(bytes).await;
                return;
            }
        }
        // A decision the engine makes from memory is answered here, without a task
        // (Catalog::answer_inline); the rest take the bounded path below.
        if let Some(a) = self.ctx.catalog.answer_inline(&msg, &self.cfg.origin) {
            let dup = &self.ctx.shared.dup;
            let Ok(bytes) = a.encode() else {
                error("engine_task");
                dup.lock().abandon(&origin_host, h.end_to_end);
                return;
            };
            dup.lock().complete(&origin_host, h.end_to_end, &bytes);
            answered(app, outcome(&a));
            self.write(bytes).await;
            return;
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            self.ctx
                .shared
                .dup
                .lock()
                .abandon(&origin_host, h.end_to_end);
            error("too_busy");
            tracing::info!(origin_host = ?self.host, remote = %self.ctx.remote,
                "too many diameter requests in flight: 3004");
            let a = error_answer(
                &h,
                msg.session_id(),
                &self.cfg.origin,
                ResultCode::TOO_BUSY,
                Some("too many requests in flight on this connection"),
                None,
            );
            if let Ok(bytes) = a.encode() {
                answered(app, Some((0, ResultCode::TOO_BUSY.0)));
                self.write(bytes).await;
            }
            return;
        };
        let shared = self.ctx.shared.clone();
        let catalog = self.ctx.catalog.clone();
        let origin = self.cfg.origin.clone();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let slots = shared.engine_slots.clone();
            let answer = match slots.acquire_owned().await {
                Ok(slot) => tokio::task::spawn_blocking(move || {
                    let _slot = slot;
                    catalog.answer(&msg, &origin)
                })
                .await
                .ok(),
                Err(_) => None,
            };
            let encoded = answer.and_then(|a| a.encode().ok().map(|b| (b, outcome(&a))));
            let Some((bytes, code)) = encoded else {
                error("engine_task");
                shared.dup.lock().abandon(&origin_host, h.end_to_end);
                return;
            };
            shared
                .dup
                .lock()
                .complete(&origin_host, h.end_to_end, &bytes);
            let _ = done.send(Done { bytes, app, code });
        });
    }

    async fn send_done(&mut self, d: Done) {
        if self.peer.state() == State::Closed {
            return;
        }
        answered(d.app, d.code);
        self.write(d.bytes).await;
    }

    async fn write(&mut self, bytes: Vec<u8>) {
        if self.out.send(bytes).await.is_err() {
            self.peer.handle_transport_closed(Instant::now());
        }
    }

    /// Logs the close and forgets the peer.
    fn finish(&mut self, reason: &CloseReason) {
        let r = match reason {
            CloseReason::NotCer => Some("not_cer"),
            CloseReason::CerTimeout => Some("cer_timeout"),
            CloseReason::CerRejected(_) => Some("cer_rejected"),
            CloseReason::Protocol(_) => Some("protocol"),
            CloseReason::WatchdogExpired => Some("watchdog_expired"),
            CloseReason::DpaTimeout => Some("dpa_timeout"),
            CloseReason::PeerDisconnect(_)
            | CloseReason::LocalDisconnect
            | CloseReason::TransportClosed => None,
        };
        if let Some(r) = r {
            error(r);
        }
        match &self.host {
            Some(h) => {
                tracing::info!(origin_host = %h, remote = %self.ctx.remote, reason = ?reason,
                    "diameter peer closed");
                let key = h.to_ascii_lowercase();
                let mut open = self.ctx.shared.open.lock();
                if open.get(&key).is_some_and(|(id, _)| *id == self.ctx.id) {
                    open.remove(&key);
                    super::series::set_peer_up(&key, false);
                }
            }
            // Logged at WARN, rate-limited, by `refusal::warn`.
            None if matches!(reason, CloseReason::CerRejected(_)) => {}
            None => tracing::info!(remote = %self.ctx.remote, reason = ?reason,
                "diameter connection closed before capabilities exchange"),
        }
        if let CloseReason::CerRejected(code) = reason {
            super::refusal::warn(
                &self.ctx,
                self.peer.refused_origin_host(),
                self.host.is_some(),
                *code,
            );
        }
        self.gauge.set(None);
    }
}

/// Counts an answer the machine wrote (CEA, DWA, DPA, error answers) and logs errors.
fn count_transmit(catalog: &Catalog, bytes: &[u8]) {
    let Some((_, h)) = Header::parse_unchecked(bytes) else {
        return;
    };
    if h.flags.is_request() {
        return;
    }
    let Ok(m) = Decoder::default().decode(bytes) else {
        answered(catalog.label(h.application_id), None);
        return;
    };
    if let Some(c) = m.result_code().filter(|c| !c.is_success()) {
        tracing::info!(command = h.code, application = h.application_id,
            hop_by_hop = h.hop_by_hop, result_code = %c, "diameter error answer");
    }
    answered(catalog.label(h.application_id), outcome(&m));
}
