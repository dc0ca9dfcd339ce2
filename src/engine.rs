//! The lock engine: SPEC §1.2 as code.
//!
//! [`Engine::decide`] takes an [`AuthContext`] from any front-end and returns a [`Decision`]. It
//! reads the SIM and its profile from the [`Store`], applies [`judge`] (a pure function, one arm per
//! row of the SPEC table), and when the row changes state it writes the new binding with its event
//! as one compare-and-swap batch, synced before the decision is returned. A lost compare-and-swap
//! (another session bound first, or provisioning changed the SIM) re-reads and judges again, so
//! concurrent first sessions bind exactly one IMEI and every other is judged against it.
//!
//! The engine knows no protocol and no storage technology; it records a metric and a log line for
//! every decision.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use metrics::{Counter, Histogram};
use serde::Deserialize;

use crate::context::{AuthContext, Decision, Interface, Phase, PresentedImei, Reason, Verdict};
use crate::imei::Imei;
use crate::store::{
    commit_blocking, Batch, Commit, Durability, Event, EventKind, ImeiManagement, LocalRead,
    Millis, Op, OutboxEntry, SimRecord, Store, StoreError,
};
use crate::telemetry::Handles;

/// How fine `last_seen_at` is: a SIM seen again with the same IMEI within this many
/// milliseconds of its recorded last-seen time is not recorded again (a different IMEI always
/// is, at once).
pub const LAST_SEEN_RESOLUTION_MS: Millis = 60_000;

/// How many times a decision re-reads after losing a compare-and-swap before giving up.
const MAX_CAS_ATTEMPTS: usize = 16;

/// `[policy] unknown_sim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownSimPolicy {
    Reject,
    /// Treat the SIM as `disabled`.
    Accept,
}

/// `missing_imei` of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingImeiPolicy {
    Reject,
    Accept,
}

/// The policies the engine applies.
#[derive(Clone, Debug)]
pub struct EnginePolicy {
    pub unknown_sim: UnknownSimPolicy,
    pub missing_imei_radius: MissingImeiPolicy,
    pub missing_imei_gx: MissingImeiPolicy,
    pub missing_imei_s6b: MissingImeiPolicy,
    /// `unknown_sim` for the EIR interfaces (S13, N5g-eir), from `[eir] unknown_sim`: an EIR
    /// answer of WHITELISTED or GREYLISTED is an accept here, BLACKLISTED or unknown a reject
    /// (the EIR layer turns it into its own answer).
    pub unknown_sim_eir: UnknownSimPolicy,
    /// Event kinds that some webhook wants: these also go to the alert outbox.
    pub alert_events: HashSet<EventKind>,
}

impl Default for EnginePolicy {
    fn default() -> Self {
        Self {
            unknown_sim: UnknownSimPolicy::Reject,
            missing_imei_radius: MissingImeiPolicy::Reject,
            missing_imei_gx: MissingImeiPolicy::Reject,
            missing_imei_s6b: MissingImeiPolicy::Accept,
            unknown_sim_eir: UnknownSimPolicy::Accept,
            alert_events: HashSet::new(),
        }
    }
}

impl EnginePolicy {
    fn missing_imei(&self, interface: Interface) -> MissingImeiPolicy {
        match interface {
            Interface::Radius => self.missing_imei_radius,
            Interface::Gx => self.missing_imei_gx,
            Interface::S6b => self.missing_imei_s6b,
            Interface::Api => MissingImeiPolicy::Accept,
            // The EIR answers a missing IMEI itself (a protocol error); not reached.
            Interface::S13 | Interface::N5gEir => MissingImeiPolicy::Reject,
        }
    }

    fn unknown_sim(&self, interface: Interface) -> UnknownSimPolicy {
        match interface {
            Interface::S13 | Interface::N5gEir => self.unknown_sim_eir,
            _ => self.unknown_sim,
        }
    }
}

/// Wall-clock source, injectable for tests (billing months, event times).
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> Millis;
}

/// The system clock, optionally shifted (for month-boundary tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock {
    pub offset_ms: i64,
}

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        now + self.offset_ms
    }
}

/// Engine failures (the front-end answers "unable to comply", never accept).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("SIM {0} kept changing during {MAX_CAS_ATTEMPTS} attempts")]
    Contention(crate::context::Imsi),
    /// This node may not answer sessions now (cluster mode: its lease is not valid or its cache
    /// has not caught up). RADIUS sends no answer, so the gateway fails over; Diameter answers
    /// DIAMETER_TOO_BUSY.
    #[error("this node is not serving sessions (lease lost or catching up)")]
    NotServing,
}

/// The outcome of one row of the decision table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub reason: Reason,
    /// The new bound IMEI when the row changes the binding.
    pub bind: Option<Imei>,
    /// The event the row records.
    pub event: Option<EventKind>,
}

/// SPEC §1.2 for a session start (or an update judged like one), as a pure function.
pub fn judge(
    effective: ImeiManagement,
    bound: Option<Imei>,
    presented: Option<Imei>,
    missing: MissingImeiPolicy,
) -> Judgement {
    let j = |reason, bind, event| Judgement {
        reason,
        bind,
        event,
    };
    match (effective, bound, presented) {
        (ImeiManagement::Disabled, _, _) => j(Reason::Disabled, None, None),
        (ImeiManagement::Pairing, b, Some(p)) => {
            if b == Some(p) {
                j(Reason::Paired, None, None)
            } else {
                j(Reason::Paired, Some(p), Some(EventKind::ImeiPaired))
            }
        }
        (ImeiManagement::Pairing, _, None) => j(Reason::PairingNoImei, None, None),
        (ImeiManagement::Lock, None, Some(p)) => {
            j(Reason::Bound, Some(p), Some(EventKind::ImeiBound))
        }
        (ImeiManagement::Lock, Some(b), Some(p)) if b == p => j(Reason::Match, None, None),
        (ImeiManagement::Lock, Some(_), Some(_)) => {
            j(Reason::Mismatch, None, Some(EventKind::ImeiMismatch))
        }
        (ImeiManagement::Lock, _, None) => match missing {
            MissingImeiPolicy::Accept => j(
                Reason::MissingImeiAccepted,
                None,
                Some(EventKind::ImeiMissing),
            ),
            MissingImeiPolicy::Reject => j(
                Reason::MissingImeiRejected,
                None,
                Some(EventKind::ImeiMissing),
            ),
        },
    }
}

/// The effective value of a SIM (SPEC §1.1): its own value, else its profile's, else `disabled`
/// (also when the profile it names does not exist).
///
/// # Errors
/// Store errors reading the profile.
pub fn effective_value(
    store: &(impl LocalRead + ?Sized),
    sim: &SimRecord,
) -> Result<ImeiManagement, StoreError> {
    if let Some(v) = sim.value {
        return Ok(v);
    }
    match &sim.profile {
        Some(name) => Ok(store
            .profile(name)?
            .map_or(ImeiManagement::Disabled, |p| p.value)),
        None => Ok(ImeiManagement::Disabled),
    }
}

/// Where a decision may read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// The store, with whatever I/O that takes.
    Store,
    /// Memory only: give up (undecided) rather than wait on I/O.
    MemoryOnly,
}

/// Registers the engine's series at 0 (every interface the engine decides for × every reason
/// with its verdict, the latency histograms, the malformed-IMEI and error counters), so they
/// exist before the first request. Called by [`Engine::new`]; the series are the recorder's,
/// so calling it again changes nothing.
pub fn register_metrics() {
    for interface in Interface::SESSIONS {
        let i = interface.as_str();
        for reason in Reason::ALL {
            let verdict = match reason.verdict() {
                Verdict::Accept => "accept",
                Verdict::Reject => "reject",
            };
            metrics::counter!("imei_lockd_decisions_total",
                "interface" => i, "decision" => verdict, "reason" => reason.as_str())
            .increment(0);
        }
        // A histogram is rendered (all buckets 0) once registered.
        let _ = metrics::histogram!("imei_lockd_decision_duration_seconds", "interface" => i);
        metrics::counter!("imei_lockd_imei_malformed_total", "interface" => i).increment(0);
        metrics::counter!("imei_lockd_engine_errors_total", "interface" => i).increment(0);
        metrics::counter!("imei_lockd_not_serving_total", "interface" => i).increment(0);
    }
    for outcome in ["committed", "lost_compare", "unknown"] {
        metrics::counter!("imei_lockd_bind_commits_total", "outcome" => outcome).increment(0);
    }
}

/// The lock engine.
pub struct Engine {
    store: Arc<dyn Store>,
    policy: parking_lot::RwLock<Arc<EnginePolicy>>,
    clock: Arc<dyn Clock>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, policy: EnginePolicy, clock: Arc<dyn Clock>) -> Self {
        register_metrics();
        Self {
            store,
            policy: parking_lot::RwLock::new(Arc::new(policy)),
            clock,
        }
    }

    /// Replaces the policies (configuration reload).
    pub fn set_policy(&self, policy: EnginePolicy) {
        *self.policy.write() = Arc::new(policy);
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The effective value of a SIM: its own, else its profile's, else `disabled`.
    ///
    /// # Errors
    /// Store errors reading the profile.
    pub fn effective(&self, sim: &SimRecord) -> Result<ImeiManagement, StoreError> {
        effective_value(&*self.store, sim)
    }

    /// Decides one request; records its metric and log line.
    ///
    /// # Errors
    /// [`EngineError`] when the store fails or the SIM keeps changing; the front-end must then
    /// answer with a temporary failure, never an accept.
    pub fn decide(&self, ctx: &AuthContext) -> Result<Decision, EngineError> {
        match self.decide_with(ctx, Access::Store) {
            Some(result) => result,
            // Not reached: only `Access::MemoryOnly` leaves a request undecided.
            None => Err(EngineError::Contention(ctx.imsi)),
        }
    }

    /// [`Engine::decide`], if the decision needs no I/O: the SIM is held in memory
    /// ([`Store::sim_in_memory`]) and the decision writes nothing to the store but the buffered
    /// last-seen IMEI — a match, a session update or end, a SIM in `disabled`, a pairing with
    /// the IMEI already paired. That is nearly every request once SIMs are bound, and costs
    /// about a microsecond, so front-ends call this on their receive task. `None` (nothing
    /// decided, nothing counted or logged) otherwise: a SIM not in memory, an unknown SIM, or a
    /// row that binds or records an event; the front-end then calls [`Engine::decide`] on its
    /// bounded blocking path, where a store that has fallen behind is met and shed.
    pub fn decide_in_memory(&self, ctx: &AuthContext) -> Option<Result<Decision, EngineError>> {
        self.decide_with(ctx, Access::MemoryOnly)
    }

    fn decide_with(
        &self,
        ctx: &AuthContext,
        access: Access,
    ) -> Option<Result<Decision, EngineError>> {
        let started = Instant::now();
        // Before every answer, not only in a background task: a node that was frozen (SIGSTOP,
        // a VM pause) wakes believing in a lease the cluster has already expired.
        if !self.store.serving() {
            static REFUSED: Handles<Interface, Counter> = Handles::new();
            REFUSED.with(
                ctx.interface,
                |i| metrics::counter!("imei_lockd_not_serving_total", "interface" => i.as_str()),
                |c| c.increment(1),
            );
            tracing::debug!(imsi = %ctx.imsi, interface = %ctx.interface, peer = %ctx.peer,
                "session not answered: this node is not serving");
            return Some(Err(EngineError::NotServing));
        }
        let result = self.decide_inner(ctx, access).transpose()?;
        if let PresentedImei::Malformed(e) = &ctx.imei {
            metrics::counter!("imei_lockd_imei_malformed_total", "interface" => ctx.interface.as_str())
                .increment(1);
            tracing::info!(imsi = %ctx.imsi, interface = %ctx.interface, peer = %ctx.peer,
                error = %e, "malformed IMEI treated as none presented");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let interface = ctx.interface.as_str();
        match &result {
            Ok(d) => {
                let verdict = if d.is_accept() { "accept" } else { "reject" };
                static DECISIONS: Handles<(Interface, Reason), Counter> = Handles::new();
                static DURATIONS: Handles<Interface, Histogram> = Handles::new();
                DECISIONS.with(
                    (ctx.interface, d.reason),
                    |(interface, reason)| {
                        metrics::counter!("imei_lockd_decisions_total",
                            "interface" => interface.as_str(), "decision" => verdict,
                            "reason" => reason.as_str())
                    },
                    |c| c.increment(1),
                );
                DURATIONS.with(
                    ctx.interface,
                    |interface| {
                        metrics::histogram!("imei_lockd_decision_duration_seconds",
                            "interface" => interface.as_str())
                    },
                    |h| h.record(elapsed),
                );
                log_decision(ctx, d);
            }
            Err(e) => {
                metrics::counter!("imei_lockd_engine_errors_total", "interface" => interface)
                    .increment(1);
                tracing::error!(imsi = %ctx.imsi, interface, peer = %ctx.peer,
                    session = %ctx.session_id, error = %e, "decision failed");
            }
        }
        Some(result)
    }

    /// `Ok(None)`: `access` is [`Access::MemoryOnly`] and the decision needs the store.
    fn decide_inner(
        &self,
        ctx: &AuthContext,
        access: Access,
    ) -> Result<Option<Decision>, EngineError> {
        let presented = ctx.imei.imei();
        let policy = self.policy.read().clone();
        // After a commit whose outcome is unknown: the SIM as the source of truth holds it.
        let mut read_back: Option<Option<SimRecord>> = None;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let sim = match access {
                _ if read_back.is_some() => read_back.take().flatten(),
                Access::Store => self.store.sim(&ctx.imsi)?,
                Access::MemoryOnly => match self.store.sim_in_memory(&ctx.imsi) {
                    Some(sim) => Some(sim),
                    None => return Ok(None),
                },
            };
            let Some(sim) = sim else {
                let reason = match (ctx.phase, policy.unknown_sim(ctx.interface)) {
                    (Phase::Update | Phase::End, _) => Reason::SessionContinues,
                    (Phase::Start, UnknownSimPolicy::Accept) => Reason::UnknownSimAccepted,
                    (Phase::Start, UnknownSimPolicy::Reject) => Reason::UnknownSimRejected,
                };
                return Ok(Some(Decision {
                    reason,
                    bound: None,
                }));
            };
            let effective = self.effective(&sim)?;
            let judged_like_start = match ctx.phase {
                Phase::Start => true,
                // An update that presents a different IMEI on a locked SIM is judged like a start.
                Phase::Update => {
                    effective == ImeiManagement::Lock
                        && sim.bound.is_some()
                        && presented.is_some()
                        && presented != sim.bound
                }
                Phase::End => false,
            };
            if !judged_like_start {
                self.note_seen(&sim, presented, self.clock.now_ms())?;
                return Ok(Some(Decision {
                    reason: Reason::SessionContinues,
                    bound: sim.bound,
                }));
            }
            let j = judge(
                effective,
                sim.bound,
                presented,
                policy.missing_imei(ctx.interface),
            );
            if access == Access::MemoryOnly && (j.bind.is_some() || j.event.is_some()) {
                return Ok(None);
            }
            let now = self.clock.now_ms();
            let event = j.event.map(|kind| Event {
                kind,
                imsi: ctx.imsi,
                at: now,
                interface: ctx.interface,
                peer: ctx.peer.clone(),
                imei: presented,
                bound: sim.bound,
                detail: Some(format!("session {}", ctx.session_id)),
            });
            let mut batch = Batch::new();
            let durability = match j.bind {
                Some(new) => {
                    let mut next = sim.clone();
                    next.bound = Some(new);
                    next.bound_at = Some(now);
                    next.last_seen = Some(new);
                    next.last_seen_at = Some(now);
                    batch.put_sim(next);
                    Durability::Synced
                }
                None => {
                    self.note_seen(&sim, presented, now)?;
                    Durability::Buffered
                }
            };
            if let Some(ev) = event {
                if policy.alert_events.contains(&ev.kind) {
                    let id = self.store.next_outbox_id();
                    batch.push(Op::PutOutbox {
                        id,
                        entry: OutboxEntry {
                            event: ev.clone(),
                            attempts: 0,
                            next_attempt_at: now,
                            done: Vec::new(),
                        },
                    });
                }
                batch.push(Op::PutEvent(ev));
            }
            if !batch.is_empty() {
                let binds = j.bind.is_some();
                match commit_blocking(&*self.store, batch, durability)? {
                    Commit::Committed => count_bind(binds, "committed"),
                    Commit::Conflict => {
                        // Judge again on the newer state (this node's reads already show it).
                        count_bind(binds, "lost_compare");
                        continue;
                    }
                    Commit::Unknown => {
                        // Never accept on a write that may not be in: read the source of truth
                        // and judge again (a bind that did commit then reads as a match).
                        count_bind(binds, "unknown");
                        tracing::warn!(imsi = %ctx.imsi, session = %ctx.session_id,
                            "outcome of a bind unknown; reading it back");
                        read_back = Some(crate::store::blocking::wait(
                            self.store.read_back(ctx.imsi),
                        )?);
                        continue;
                    }
                }
            }
            return Ok(Some(Decision {
                reason: j.reason,
                bound: j.bind.or(sim.bound),
            }));
        }
        Err(EngineError::Contention(ctx.imsi))
    }

    fn note_seen(
        &self,
        sim: &SimRecord,
        presented: Option<Imei>,
        now: Millis,
    ) -> Result<(), StoreError> {
        match presented {
            // The same device again within LAST_SEEN_RESOLUTION: nothing new to record. This
            // keeps the steady state (every session of a bound SIM) from rewriting each SIM's
            // record at every flush of the buffered last-seen.
            Some(imei)
                if sim.last_seen == Some(imei)
                    && sim
                        .last_seen_at
                        .is_some_and(|t| (0..LAST_SEEN_RESOLUTION_MS).contains(&(now - t))) =>
            {
                Ok(())
            }
            Some(imei) => self.store.note_seen(&sim.imsi, imei, now),
            None => Ok(()),
        }
    }
}

/// `imei_lockd_bind_commits_total{outcome}`: what became of each write of a binding (state
/// changes that bind nothing are not counted).
fn count_bind(binds: bool, outcome: &'static str) {
    if binds {
        metrics::counter!("imei_lockd_bind_commits_total", "outcome" => outcome).increment(1);
    }
}

/// An optional IMEI for log fields: formatted only if the line is enabled (the hot path pays
/// nothing for a disabled debug line).
struct LogImei(Option<Imei>);

impl std::fmt::Display for LogImei {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(i) => write!(f, "{i}"),
            None => Ok(()),
        }
    }
}

/// One line per decision: rejects and state changes at info, other accepts at debug.
fn log_decision(ctx: &AuthContext, d: &Decision) {
    let imei = LogImei(ctx.imei.imei());
    let bound = LogImei(d.bound);
    let state_change = matches!(d.reason, Reason::Bound | Reason::Paired | Reason::Mismatch);
    if !d.is_accept() || state_change {
        tracing::info!(imsi = %ctx.imsi, imei = %imei, bound = %bound, interface = %ctx.interface,
            peer = %ctx.peer, session = %ctx.session_id, phase = ctx.phase.as_str(),
            reason = d.reason.as_str(), decision = if d.is_accept() { "accept" } else { "reject" },
            "decision");
    } else {
        tracing::debug!(imsi = %ctx.imsi, imei = %imei, bound = %bound, interface = %ctx.interface,
            peer = %ctx.peer, session = %ctx.session_id, phase = ctx.phase.as_str(),
            reason = d.reason.as_str(), decision = "accept", "decision");
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
