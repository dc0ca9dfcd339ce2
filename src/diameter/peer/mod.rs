//! The Diameter peer state machine, responder side, sans-IO (after quinn-proto).
//!
//! One [`Peer`] per transport connection that a peer opened to us. It has no networking code
//! and reads no clock: the shell feeds it framed bytes ([`Peer::handle_frame`]), timer expiries
//! ([`Peer::handle_timeout`]), shutdown ([`Peer::begin_disconnect`]) and transport loss, each
//! with `now`, and then drains its outputs.
//!
//! # Calling contract
//! After every `handle_*` / `begin_disconnect` call, drain in this order:
//! 1. [`Peer::poll_transmit`] until `None`, writing each [`Transmit`] to the connection;
//! 2. [`Peer::poll_event`] until `None` (an [`Event::Closed`] means: close the connection once
//!    the transmits before it are written);
//! 3. [`Peer::poll_timeout`], and call [`Peer::handle_timeout`] when that instant passes.
//!
//! `now` must never go backwards.
//!
//! # Behaviour (RFC 6733 §5, RFC 3539)
//! - States: [`State::WaitCer`] → [`State::Open`] → ([`State::Closing`]) → [`State::Closed`].
//! - The first message must be a CER. Anything else closes the connection **without an
//!   answer**: until the CER the connection is not associated with any peer (RFC 6733 §5.6.4)
//!   and nothing is sent to an unidentified sender. Silence beyond `cer_timeout` also closes.
//! - CER: invalid → CEA with the error (5005, 5014, ...) then close; unknown Origin-Host → CEA
//!   3010 DIAMETER_UNKNOWN_PEER ('E' bit) then close; no common application → CEA 5010
//!   DIAMETER_NO_COMMON_APPLICATION then close; else CEA 2001 and Open ([`Event::Open`]).
//! - A second CER while Open: RFC 6733 §5.6 (R-Open, R-Rcv-CER → R-Snd-CEA) answers it with a
//!   CEA; we re-judge it, and a changed Origin-Host is refused with 5012
//!   DIAMETER_UNABLE_TO_COMPLY. A failed re-CER closes the connection. (A CER on a *new*
//!   connection from an Open peer is the shell's business: it should drop the older one.)
//! - DWR → DWA 2001. Watchdog per RFC 3539 §3.4.1: any received message re-arms Tw (± jitter);
//!   on expiry with no DWR pending we send a DWR; on expiry with one pending the connection is
//!   SUSPECT ([`Event::Suspect`]); any message received then restores it
//!   ([`Event::Recovered`]); a further expiry closes it ([`CloseReason::WatchdogExpired`]).
//! - DPR → DPA 2001 then close. [`Peer::begin_disconnect`] sends DPR and waits up to
//!   `dpa_timeout` for the DPA.
//! - Application requests while Open (or Closing) are routed through the configured
//!   [`Catalog`](crate::diameter::app::Catalog): an application it does not serve (or the peer
//!   did not advertise) → 3007, a command the application does not list → 3001, a request
//!   failing [`validate`] against the application's spec → its error in the application's
//!   answer format; otherwise [`Event::Request`] for the application layer, which answers
//!   through the shell. This machine names no application: it handles only the base protocol.
//! - Answers are matched by Hop-by-Hop Identifier against the requests we sent (DWR, DPR);
//!   others are discarded and counted ([`PeerStats::unmatched_answers`]).
//! - Undecodable frames: requests are answered with the error ([`MessageError::result_code`],
//!   Failed-AVP); version and length errors leave the stream unframed and close it.

mod cer;
pub mod config;
pub mod dup;
pub mod ids;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::diameter::app::Application;
use crate::diameter::codec::dict;
use crate::diameter::codec::validate::{self, APP_BASE, CMD_CER, CMD_DPR, CMD_DWR, DPR, DWR};
use crate::diameter::codec::{
    answer_for_error, error_answer, Avp, AvpList, Decoder, Header, Message, MessageError,
    ResultCode,
};

pub use config::{PeerConfig, PeerInfo};
pub use dup::{DuplicateCache, Lookup};
pub use ids::IdGenerator;

/// Disconnect-Cause values (RFC 6733 §5.4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectCause {
    Rebooting = 0,
    Busy = 1,
    DoNotWantToTalkToYou = 2,
}

/// Connection state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Connected, waiting for the peer's CER.
    WaitCer,
    /// Capabilities exchanged.
    Open,
    /// We sent DPR and wait for DPA.
    Closing,
    /// Done; the shell closes the transport.
    Closed,
}

/// Why the connection closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The first message was not a CER (no answer sent).
    NotCer,
    /// No CER within `cer_timeout`.
    CerTimeout,
    /// The CER (or a re-CER) was refused with this Result-Code.
    CerRejected(ResultCode),
    /// An undecodable frame that breaks framing, or any decode error before Open.
    Protocol(MessageError),
    /// RFC 3539: no answer to DWR and then no traffic for another Tw.
    WatchdogExpired,
    /// The peer sent DPR with this Disconnect-Cause; we answered DPA.
    PeerDisconnect(u32),
    /// Our DPR was answered, or we were not yet open.
    LocalDisconnect,
    /// Our DPR was not answered in time.
    DpaTimeout,
    /// The transport went away.
    TransportClosed,
}

/// What the application layer and the shell hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Capabilities exchanged.
    Open(PeerInfo),
    /// A valid application request to evaluate and answer.
    Request(Box<Message>),
    /// RFC 3539 SUSPECT: the watchdog went unanswered.
    Suspect,
    /// Traffic resumed after [`Event::Suspect`].
    Recovered,
    /// Close the connection after writing the transmits queued before this event.
    Closed(CloseReason),
}

/// Bytes to write to the connection.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub bytes: Vec<u8>,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    pub dwr_sent: u64,
    pub dwa_received: u64,
    pub dwr_received: u64,
    /// Answers matching no request we sent.
    pub unmatched_answers: u64,
    /// Frames that failed to decode.
    pub decode_errors: u64,
    /// Requests answered with an error by this machine.
    pub error_answers: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Dwr,
    Dpr,
}

/// RFC 3539 watchdog sub-state while Open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watchdog {
    Okay { pending: bool },
    Suspect,
}

/// Seeds for identifiers and jitter, supplied by the shell (time and randomness).
#[derive(Clone, Copy, Debug)]
pub struct Seed {
    pub unix_time_secs: u64,
    pub random: u64,
}

/// One connection's state machine.
#[derive(Debug)]
pub struct Peer {
    cfg: Arc<PeerConfig>,
    decoder: Decoder,
    state: State,
    remote: Option<PeerInfo>,
    ids: IdGenerator,
    outstanding: HashMap<u32, Sent>,
    watchdog: Watchdog,
    timer: Option<Instant>,
    rng: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: PeerStats,
    /// The Origin-Host of a refused CER (for the shell's log line), when it had one.
    refused_origin_host: Option<String>,
}

impl Peer {
    /// A machine for a connection accepted at `now`.
    pub fn new(cfg: Arc<PeerConfig>, now: Instant, seed: Seed) -> Self {
        let timer = Some(now + cfg.cer_timeout);
        Self {
            decoder: Decoder::new(cfg.max_message_len),
            cfg,
            state: State::WaitCer,
            remote: None,
            ids: IdGenerator::new(seed.unix_time_secs, seed.random as u32),
            outstanding: HashMap::new(),
            watchdog: Watchdog::Okay { pending: false },
            timer,
            rng: seed.random | 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: PeerStats::default(),
            refused_origin_host: None,
        }
    }

    /// The Origin-Host of the CER this machine refused ([`CloseReason::CerRejected`]), when
    /// it carried one.
    pub fn refused_origin_host(&self) -> Option<&str> {
        self.refused_origin_host.as_deref()
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The peer, once Open.
    pub fn remote(&self) -> Option<&PeerInfo> {
        self.remote.as_ref()
    }

    pub fn stats(&self) -> PeerStats {
        self.stats
    }

    /// The decoder the shell should frame with ([`Decoder::peek_length`]).
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Next bytes to write.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    /// A complete frame (exactly the length [`Decoder::peek_length`] gave).
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        match self.decoder.decode(frame) {
            Ok(m) => self.handle_message(now, m),
            Err(e) => self.handle_decode_error(now, frame, e),
        }
    }

    /// A framing error from [`Decoder::peek_length`] on the buffered bytes `head`: answers if
    /// the header is readable and a request, then closes.
    pub fn handle_stream_error(&mut self, _now: Instant, head: &[u8], err: MessageError) {
        if self.state == State::Closed {
            return;
        }
        self.stats.decode_errors += 1;
        self.answer_raw_error(head, &err);
        self.close(CloseReason::Protocol(err));
    }

    /// The transport closed.
    pub fn handle_transport_closed(&mut self, _now: Instant) {
        if self.state != State::Closed {
            self.close(CloseReason::TransportClosed);
        }
    }

    /// Starts an orderly shutdown: DPR with `cause` when Open, else close at once.
    pub fn begin_disconnect(&mut self, now: Instant, cause: DisconnectCause) {
        match self.state {
            State::Open => {
                let hbh = self.send_request(CMD_DPR, |m| {
                    m.push(Avp::u32(dict::DISCONNECT_CAUSE, 0, cause as u32));
                });
                self.outstanding.insert(hbh, Sent::Dpr);
                self.state = State::Closing;
                self.timer = Some(now + self.cfg.dpa_timeout);
            }
            State::WaitCer => self.close(CloseReason::LocalDisconnect),
            State::Closing | State::Closed => {}
        }
    }

    /// The timer from [`poll_timeout`](Self::poll_timeout) fired (early calls are ignored).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.timer {
            Some(t) if t <= now => {}
            _ => return,
        }
        match self.state {
            State::WaitCer => self.close(CloseReason::CerTimeout),
            State::Closing => self.close(CloseReason::DpaTimeout),
            State::Open => match self.watchdog {
                Watchdog::Okay { pending: false } => {
                    let hbh = self.send_request(CMD_DWR, |_| {});
                    self.outstanding.insert(hbh, Sent::Dwr);
                    self.stats.dwr_sent += 1;
                    self.watchdog = Watchdog::Okay { pending: true };
                    self.set_watchdog(now);
                }
                Watchdog::Okay { pending: true } => {
                    self.watchdog = Watchdog::Suspect;
                    self.events.push_back(Event::Suspect);
                    self.set_watchdog(now);
                }
                Watchdog::Suspect => self.close(CloseReason::WatchdogExpired),
            },
            State::Closed => self.timer = None,
        }
    }

    /// A decoded message (normally via [`handle_frame`](Self::handle_frame)).
    pub fn handle_message(&mut self, now: Instant, msg: Message) {
        match self.state {
            State::Closed => {}
            State::WaitCer => {
                if msg.is_request()
                    && (msg.header.application_id, msg.header.code) == (APP_BASE, CMD_CER)
                {
                    self.handle_cer(now, &msg);
                } else {
                    self.close(CloseReason::NotCer);
                }
            }
            State::Open | State::Closing => {
                if self.state == State::Open {
                    self.on_receive(now);
                }
                if msg.is_request() {
                    self.handle_request(now, msg);
                } else {
                    self.handle_answer(&msg);
                }
            }
        }
    }

    fn handle_cer(&mut self, now: Instant, msg: &Message) {
        match cer::judge(&self.cfg, msg) {
            cer::CerVerdict::Accept(info) => {
                if let Some(old) = &self.remote {
                    if !old.origin_host.eq_ignore_ascii_case(&info.origin_host) {
                        let text = "Origin-Host changed in re-CER";
                        let a = cer::cea(
                            &self.cfg,
                            msg,
                            ResultCode::UNABLE_TO_COMPLY,
                            Some(text),
                            None,
                        );
                        self.queue(&a);
                        self.refused_origin_host = Some(info.origin_host);
                        self.close(CloseReason::CerRejected(ResultCode::UNABLE_TO_COMPLY));
                        return;
                    }
                }
                let a = cer::cea(&self.cfg, msg, ResultCode::SUCCESS, None, None);
                self.queue(&a);
                let first = self.state == State::WaitCer;
                self.remote = Some(info.clone());
                if first {
                    // A re-CER while Closing leaves us Closing.
                    self.state = State::Open;
                    self.watchdog = Watchdog::Okay { pending: false };
                    self.set_watchdog(now);
                    self.events.push_back(Event::Open(info));
                }
            }
            cer::CerVerdict::Reject {
                code,
                text,
                failed_avp,
            } => {
                let a = cer::cea(&self.cfg, msg, code, Some(&text), failed_avp.as_ref());
                self.queue(&a);
                self.refused_origin_host = msg.origin_host().map(str::to_owned);
                self.close(CloseReason::CerRejected(code));
            }
        }
    }

    fn handle_request(&mut self, now: Instant, msg: Message) {
        let h = msg.header;
        match (h.application_id, h.code) {
            (APP_BASE, CMD_CER) => self.handle_cer(now, &msg),
            (APP_BASE, CMD_DWR) => {
                self.stats.dwr_received += 1;
                if let Err(e) = validate::validate(&msg, &DWR) {
                    return self.answer_error(&msg, &e, None);
                }
                let a = self.base_answer(&h, ResultCode::SUCCESS);
                self.queue(&a);
            }
            (APP_BASE, CMD_DPR) => {
                if let Err(e) = validate::validate(&msg, &DPR) {
                    return self.answer_error(&msg, &e, None);
                }
                let cause = msg
                    .avps
                    .get_u32(dict::DISCONNECT_CAUSE, 0)
                    .ok()
                    .flatten()
                    .unwrap_or(0);
                let mut a = self.base_answer(&h, ResultCode::SUCCESS);
                a.avps.retain(|x| x.code != dict::ORIGIN_STATE_ID);
                self.queue(&a);
                self.close(CloseReason::PeerDisconnect(cause));
            }
            (APP_BASE, _) => self.answer_code(&msg, ResultCode::COMMAND_UNSUPPORTED),
            (app_id, code) => {
                let catalog = self.cfg.catalog.clone();
                let app = catalog
                    .get(app_id)
                    .filter(|_| self.remote.as_ref().is_some_and(|r| r.supports(app_id)));
                let Some(app) = app else {
                    return self.answer_code(&msg, ResultCode::APPLICATION_UNSUPPORTED);
                };
                let Some(spec) = app.commands().iter().find(|s| s.code == code) else {
                    return self.answer_code(&msg, ResultCode::COMMAND_UNSUPPORTED);
                };
                match validate::validate(&msg, spec) {
                    Ok(()) => self.events.push_back(Event::Request(Box::new(msg))),
                    Err(e) => self.answer_error(&msg, &e, Some(app)),
                }
            }
        }
    }

    fn handle_answer(&mut self, msg: &Message) {
        match self.outstanding.remove(&msg.header.hop_by_hop) {
            Some(Sent::Dwr) if msg.header.code == CMD_DWR => {
                self.stats.dwa_received += 1;
                if let Watchdog::Okay { pending: true } = self.watchdog {
                    self.watchdog = Watchdog::Okay { pending: false };
                }
            }
            Some(Sent::Dpr) if msg.header.code == CMD_DPR => {
                if self.state == State::Closing {
                    self.close(CloseReason::LocalDisconnect);
                }
            }
            Some(other) => {
                // Right Hop-by-Hop, wrong command: keep waiting for the real answer.
                self.outstanding.insert(msg.header.hop_by_hop, other);
                self.stats.unmatched_answers += 1;
            }
            None => self.stats.unmatched_answers += 1,
        }
    }

    /// RFC 3539: any message received re-arms the watchdog and ends SUSPECT.
    fn on_receive(&mut self, now: Instant) {
        if self.watchdog == Watchdog::Suspect {
            // The DWR stays outstanding in the table; a late DWA is still matched.
            self.watchdog = Watchdog::Okay { pending: false };
            self.events.push_back(Event::Recovered);
        }
        self.set_watchdog(now);
    }

    fn set_watchdog(&mut self, now: Instant) {
        let tw = self.cfg.watchdog.max(Duration::from_secs(6));
        let j = self.cfg.watchdog_jitter.as_millis().min(10_000) as u64;
        let t = if j == 0 {
            tw
        } else {
            // xorshift64: deterministic for a given seed.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let off = self.rng % (2 * j + 1);
            (tw + Duration::from_millis(off)).saturating_sub(Duration::from_millis(j))
        };
        self.timer = Some(now + t);
    }

    fn send_request(&mut self, code: u32, extra: impl FnOnce(&mut Message)) -> u32 {
        let mut m = Message::request(code, APP_BASE, false);
        let hbh = self.ids.next_hop_by_hop();
        m.header.hop_by_hop = hbh;
        m.header.end_to_end = self.ids.next_end_to_end();
        m.avps.extend(self.cfg.origin.avps());
        if code == CMD_DWR {
            if let Some(s) = self.cfg.origin.state_id {
                m.push(Avp::u32(dict::ORIGIN_STATE_ID, 0, s));
            }
        }
        extra(&mut m);
        self.queue(&m);
        hbh
    }

    /// DWA/DPA: Result-Code, Origin-Host, Origin-Realm, Origin-State-Id.
    fn base_answer(&self, req: &Header, code: ResultCode) -> Message {
        let mut a = Message::answer_to(req);
        a.push(Avp::u32(dict::RESULT_CODE, 0, code.0));
        a.avps.extend(self.cfg.origin.avps());
        if let Some(s) = self.cfg.origin.state_id {
            a.push(Avp::u32(dict::ORIGIN_STATE_ID, 0, s));
        }
        a
    }

    fn answer_code(&mut self, msg: &Message, code: ResultCode) {
        self.stats.error_answers += 1;
        let a = error_answer(
            &msg.header,
            msg.session_id(),
            &self.cfg.origin,
            code,
            None,
            None,
        );
        self.queue(&a);
    }

    /// Answers a request that failed validation: in `app`'s format for a 5xxx, in the generic
    /// format (RFC 6733 §7.2) for a 3xxx or a base protocol request.
    fn answer_error(&mut self, msg: &Message, err: &MessageError, app: Option<&dyn Application>) {
        self.stats.error_answers += 1;
        let origin = &self.cfg.origin;
        let a = match app {
            Some(app) if !err.result_code().is_protocol_error() => {
                app.error_answer(msg, origin, err)
            }
            _ => answer_for_error(&msg.header, msg.session_id(), origin, err),
        };
        self.queue(&a);
    }

    /// Answers an undecodable request from its raw header, if readable.
    fn answer_raw_error(&mut self, head: &[u8], err: &MessageError) {
        if let Some((_, h)) = Header::parse_unchecked(head) {
            if h.flags.is_request() {
                self.stats.error_answers += 1;
                let a = answer_for_error(&h, None, &self.cfg.origin, err);
                self.queue(&a);
            }
        }
    }

    fn handle_decode_error(&mut self, now: Instant, frame: &[u8], err: MessageError) {
        self.stats.decode_errors += 1;
        if self.state == State::Open {
            self.on_receive(now);
        }
        self.answer_raw_error(frame, &err);
        if err.is_stream_fatal() || self.state == State::WaitCer {
            self.close(CloseReason::Protocol(err));
        }
    }

    fn queue(&mut self, m: &Message) {
        // Our messages are small; an encode failure would be a bug, and sending nothing is
        // the safe outcome.
        if let Ok(bytes) = m.encode() {
            self.transmits.push_back(Transmit { bytes });
        }
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.timer = None;
        self.outstanding.clear();
        self.events.push_back(Event::Closed(reason));
    }
}
