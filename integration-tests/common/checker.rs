//! The history checker of the fault runs (issue 18): reads a [`super::history`] and says whether a
//! correct imei-lockd could have produced it, with the operations behind each violation.
//!
//! It does not run anything, and it is sound rather than complete: it reports a violation only
//! when no placement of the operations inside their time windows explains it. Every request takes
//! effect at one instant in [invoke, processed_at] (or any time after invoke when processed_at is
//! unknown); every session is decided at one instant in [invoke, completion].
//!
//! # Windows
//! - A request that may have taken effect: `Acked` (window [invoke, processed_at], or [invoke, ∞)
//!   if it was never reported processed) or `Unknown` ([invoke, ∞), and it may also never have).
//!   `Refused` requests never took effect.
//! - A session `Accept`ed or `Reject`ed: [invoke, completion]. `Unknown` and `Unavailable`
//!   sessions may have been decided at any time after invoke (a paused node may serve a request
//!   long after the client gave up), so they block the model from then on.
//! - R is *definitely before* a window [lo, hi] if R.hi < lo, *definitely after* if R.lo > hi,
//!   else *possibly concurrent* (equal milliseconds count as concurrent).
//! - A request R *could be between* sessions a and b if some instants of the three windows put it
//!   after a and before b, in either order of a and b: `a.invoke <= b.completion`,
//!   `R.invoke <= b.completion` and `a.invoke <= R.hi` (or the same with a and b swapped).
//! - Only a `Reset` or a `SetValue(pairing)` can legitimately move a binding (SPEC §1.2: the
//!   bound IMEI persists across value changes, `disabled` included), so only they excuse a pair.
//!
//! # Value "for sure" `lock`
//! A session's value is certain if no `SetValue` request is possibly concurrent with it and every
//! `SetValue` that is definitely before it and could be the last of those (no other one
//! definitely after it) sets the same value. With no `SetValue` definitely before, the value is
//! the provisioning's, unknown to the checker, so never certain.
//!
//! # Properties (per SIM)
//! - `double_bind`: accepted sessions a, b with different IMEIs, both for sure in `lock`, with no
//!   `Reset`/`pairing` request that could be between them (one reported per b).
//! - `lost_bind`: a accepted for IMEI X for sure in `lock`, then b for X rejected, invoked after a
//!   completed, with no `Reset`/`pairing` request that could be between them. Whatever the value
//!   at b, a SIM bound to X accepts X.
//! - `lost_request`: a request `Acked` whose latest `ReadRequest` says `NotFound`.
//! - `stale_read`: a session judged by the sequential model ([`model`]) and answered otherwise. A
//!   session is *determined* when every request that may take effect and every session that may
//!   change state (accepted, `Unknown` or `Unavailable`, with an IMEI) is definitely before or
//!   definitely after it, and at least one request is definitely before it; it is then judged
//!   if all orders of the events before it lead to the same answer.
//!
//! # Assumptions
//! - The workload changes SIMs only with SIM-level `SetValue` and `Reset` (no profile changes,
//!   deletes or re-imports), and the harness follows [`super::history`]'s outcome contract.
//! - The state before a SIM's first request is unknown (its value and its binding): start each
//!   SIM with a value and a `Reset` to let the model judge from the start.
//! - Requests of one SIM are processed in order (SPEC §1.4); the checker does not use it to
//!   narrow windows, which is sound, only less sharp.
//!
//! Sessions whose IMEI is not 14–16 digits (optionally `IMEI,SV`) count as *no IMEI* and are
//! never judged (their answer depends on the interface's `missing_imei` policy). IMEIs are
//! compared on TAC+SNR, the first 14 digits (SPEC §1.3).

mod model;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::history::{Change, Op, OpKind, Outcome, Value};
use model::{Act, Event, Timeline};

/// "Never reported": the upper end of an open window.
const NEVER: u64 = u64::MAX;

/// The properties the checker verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    DoubleBind,
    LostBind,
    LostRequest,
    StaleRead,
}

impl ViolationKind {
    pub const ALL: [Self; 4] = [
        Self::DoubleBind,
        Self::LostBind,
        Self::LostRequest,
        Self::StaleRead,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::DoubleBind => "double_bind",
            Self::LostBind => "lost_bind",
            Self::LostRequest => "lost_request",
            Self::StaleRead => "stale_read",
        }
    }
}

/// An operation named in a violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpRef {
    pub id: u64,
    pub node: String,
    pub invoke: u64,
    pub complete: Option<u64>,
}

impl OpRef {
    fn of(op: &Op) -> Self {
        Self {
            id: op.id,
            node: op.node.clone(),
            invoke: op.invoke,
            complete: op.complete,
        }
    }
}

impl fmt::Display for OpRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.complete {
            Some(c) => write!(f, "#{} {} [{}..{}]", self.id, self.node, self.invoke, c),
            None => write!(f, "#{} {} [{}..]", self.id, self.node, self.invoke),
        }
    }
}

/// One violation, with the operations that show it.
#[derive(Clone, Debug)]
pub struct Violation {
    pub kind: ViolationKind,
    /// The SIM, if the violation is about one (`lost_request` is about a request id).
    pub imsi: Option<String>,
    pub detail: String,
    pub ops: Vec<OpRef>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind.name())?;
        if let Some(imsi) = &self.imsi {
            write!(f, " imsi={imsi}")?;
        }
        write!(f, ": {}; ops:", self.detail)?;
        for op in &self.ops {
            write!(f, " {op}")?;
        }
        Ok(())
    }
}

/// What [`check`] found.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    pub ops: usize,
    pub sessions: usize,
    pub accept: usize,
    pub reject: usize,
    pub unavailable: usize,
    pub unknown: usize,
    pub requests: usize,
    pub acked: usize,
    /// Sessions the sequential model could judge (the power of `stale_read`).
    pub judged: usize,
    pub violations: Vec<Violation>,
}

impl Verdict {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn count(&self, kind: ViolationKind) -> usize {
        self.violations.iter().filter(|v| v.kind == kind).count()
    }

    /// One line: `checker: OK ops=… sessions=… (accept …) requests=… (acked …) judged=…
    /// violations=0`, or `checker: FAIL … violations=3: double_bind=1 lost_bind=1 …`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "checker: {} ops={} sessions={} (accept {}, reject {}, unavailable {}, unknown {}) \
             requests={} (acked {}) judged={} violations={}",
            if self.is_ok() { "OK" } else { "FAIL" },
            self.ops,
            self.sessions,
            self.accept,
            self.reject,
            self.unavailable,
            self.unknown,
            self.requests,
            self.acked,
            self.judged,
            self.violations.len(),
        );
        if !self.is_ok() {
            let counts: Vec<String> = ViolationKind::ALL
                .iter()
                .map(|k| format!("{}={}", k.name(), self.count(*k)))
                .collect();
            line.push_str(": ");
            line.push_str(&counts.join(" "));
        }
        line
    }

    /// [`Self::line`] followed by one line per violation (for a failure message).
    pub fn report(&self) -> String {
        let mut out = self.line();
        for v in &self.violations {
            out.push_str("\n  ");
            out.push_str(&v.to_string());
        }
        out
    }
}

/// TAC+SNR of a presented IMEI (14, 15 or 16 digits, or `IMEI,SV`); `None` = no usable IMEI.
pub fn tac_snr(imei: &str) -> Option<String> {
    let main = imei.split(',').next().unwrap_or(imei);
    let ok = (14..=16).contains(&main.len()) && main.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| main[..14].to_owned())
}

/// A request that may have taken effect in [lo, hi].
struct Req<'a> {
    op: &'a Op,
    change: Change,
    lo: u64,
    hi: u64,
}

/// A session with a usable IMEI; `hi` is NEVER unless it was accepted or rejected.
struct Sess<'a> {
    op: &'a Op,
    imei: String,
    lo: u64,
    hi: u64,
}

impl Sess<'_> {
    fn accepted(&self) -> bool {
        self.op.outcome == Outcome::Accept
    }
    fn rejected(&self) -> bool {
        self.op.outcome == Outcome::Reject
    }
    /// Accepted, Unknown or Unavailable: may have changed the SIM's state.
    fn may_change_state(&self) -> bool {
        !self.rejected()
    }
}

/// One SIM's operations.
#[derive(Default)]
struct Sim<'a> {
    reqs: Vec<Req<'a>>,
    sessions: Vec<Sess<'a>>,
}

/// Checks `history` (any order of ops).
pub fn check(history: &[Op]) -> Verdict {
    let mut verdict = Verdict {
        ops: history.len(),
        ..Verdict::default()
    };
    let mut sims: BTreeMap<&str, Sim<'_>> = BTreeMap::new();
    for op in history {
        match &op.kind {
            OpKind::Session { imsi, imei, .. } => {
                verdict.sessions += 1;
                match op.outcome {
                    Outcome::Accept => verdict.accept += 1,
                    Outcome::Reject => verdict.reject += 1,
                    Outcome::Unavailable => verdict.unavailable += 1,
                    _ => verdict.unknown += 1,
                }
                let Some(imei) = tac_snr(imei) else { continue };
                let decided = matches!(op.outcome, Outcome::Accept | Outcome::Reject);
                let hi = if decided {
                    op.complete.unwrap_or(NEVER)
                } else {
                    NEVER
                };
                let sim = sims.entry(imsi.as_str()).or_default();
                sim.sessions.push(Sess {
                    op,
                    imei,
                    lo: op.invoke,
                    hi: hi.max(op.invoke),
                });
            }
            OpKind::Request { imsi, change } => {
                verdict.requests += 1;
                let hi = match &op.outcome {
                    Outcome::Acked { processed_at, .. } => {
                        verdict.acked += 1;
                        processed_at.unwrap_or(NEVER)
                    }
                    Outcome::Refused => continue,
                    _ => NEVER,
                };
                sims.entry(imsi.as_str()).or_default().reqs.push(Req {
                    op,
                    change: *change,
                    lo: op.invoke,
                    hi: hi.max(op.invoke),
                });
            }
            OpKind::ReadRequest { .. } => {}
        }
    }
    for (imsi, sim) in &sims {
        check_binds(imsi, sim, &mut verdict.violations);
        verdict.judged += check_stale(imsi, sim, &mut verdict.violations);
    }
    check_lost_requests(history, &mut verdict.violations);
    verdict
}

/// The value of the SIM for sure over [lo, hi], if it is certain (see the module doc).
fn certain_value(reqs: &[Req<'_>], lo: u64, hi: u64) -> Option<Value> {
    let sets: Vec<(&Req<'_>, Value)> = reqs
        .iter()
        .filter_map(|r| match r.change {
            Change::SetValue(v) => Some((r, v)),
            Change::Reset => None,
        })
        .collect();
    if sets.iter().any(|(r, _)| r.lo <= hi && r.hi >= lo) {
        return None;
    }
    let before: Vec<&(&Req<'_>, Value)> = sets.iter().filter(|(r, _)| r.hi < lo).collect();
    let mut last = before
        .iter()
        .filter(|(r, _)| !before.iter().any(|(r2, _)| r2.lo > r.hi))
        .map(|(_, v)| *v);
    let first = last.next()?;
    last.all(|v| v == first).then_some(first)
}

/// Could `r` have taken effect after `a` was decided and before `b` was?
fn between(r: &Req<'_>, a: &Sess<'_>, b: &Sess<'_>) -> bool {
    a.lo <= b.hi && r.lo <= b.hi && a.lo <= r.hi
}

/// Can `r` legitimately move a binding (SPEC §1.2)?
fn rebinds(r: &Req<'_>) -> bool {
    matches!(r.change, Change::Reset | Change::SetValue(Value::Pairing))
}

/// `double_bind` and `lost_bind` of one SIM.
fn check_binds(imsi: &str, sim: &Sim<'_>, out: &mut Vec<Violation>) {
    let rebinders: Vec<&Req<'_>> = sim.reqs.iter().filter(|r| rebinds(r)).collect();
    let mut locked: Vec<&Sess<'_>> = sim
        .sessions
        .iter()
        .filter(|s| s.accepted() && certain_value(&sim.reqs, s.lo, s.hi) == Some(Value::Lock))
        .collect();
    locked.sort_by_key(|s| (s.lo, s.op.id));
    for (j, b) in locked.iter().enumerate() {
        let conflict = locked[..j].iter().find(|a| {
            a.imei != b.imei
                && !rebinders
                    .iter()
                    .any(|r| between(r, a, b) || between(r, b, a))
        });
        if let Some(a) = conflict {
            out.push(Violation {
                kind: ViolationKind::DoubleBind,
                imsi: Some(imsi.to_owned()),
                detail: format!(
                    "accepted {} and {} while locked, no reset/pairing between",
                    a.imei, b.imei
                ),
                ops: vec![OpRef::of(a.op), OpRef::of(b.op)],
            });
        }
    }
    let mut rejected: Vec<&Sess<'_>> = sim.sessions.iter().filter(|s| s.rejected()).collect();
    rejected.sort_by_key(|s| (s.lo, s.op.id));
    for b in rejected {
        let lost = locked.iter().find(|a| {
            a.imei == b.imei && a.hi < b.lo && !rebinders.iter().any(|r| between(r, a, b))
        });
        if let Some(a) = lost {
            out.push(Violation {
                kind: ViolationKind::LostBind,
                imsi: Some(imsi.to_owned()),
                detail: format!(
                    "{} accepted while locked, later rejected, no reset/pairing between",
                    b.imei
                ),
                ops: vec![OpRef::of(a.op), OpRef::of(b.op)],
            });
        }
    }
}

/// `stale_read` of one SIM; returns how many sessions the model judged.
fn check_stale(imsi: &str, sim: &Sim<'_>, out: &mut Vec<Violation>) -> usize {
    let mut events: Vec<Event> = Vec::new();
    // Windows of everything that may change the state; the open ones block the model.
    let mut windows: Vec<(u64, u64, u64)> = Vec::new();
    for r in &sim.reqs {
        windows.push((r.lo, r.hi, r.op.id));
        if r.hi != NEVER {
            let act = match r.change {
                Change::SetValue(v) => Act::Set(v),
                Change::Reset => Act::Reset,
            };
            events.push(Event {
                lo: r.lo,
                hi: r.hi,
                act,
            });
        }
    }
    for s in sim.sessions.iter().filter(|s| s.may_change_state()) {
        windows.push((s.lo, s.hi, s.op.id));
        if s.accepted() && s.hi != NEVER {
            events.push(Event {
                lo: s.lo,
                hi: s.hi,
                act: Act::Accept(s.imei.clone()),
            });
        }
    }
    let timeline = Timeline::build(events);
    let mut judged = 0;
    for s in &sim.sessions {
        if !(s.accepted() || s.rejected()) || s.hi == NEVER {
            continue;
        }
        let concurrent = windows
            .iter()
            .any(|&(lo, hi, id)| id != s.op.id && lo <= s.hi && hi >= s.lo);
        let request_before = sim.reqs.iter().any(|r| r.hi < s.lo);
        if concurrent || !request_before {
            continue;
        }
        let states = timeline.states_before(s.lo);
        let Some(expect_accept) = model::expected(&states, &s.imei) else {
            continue;
        };
        judged += 1;
        if expect_accept != s.accepted() {
            let mut ops: Vec<OpRef> = Vec::new();
            if let Some(last) = sim.reqs.iter().filter(|r| r.hi < s.lo).max_by_key(|r| r.hi) {
                ops.push(OpRef::of(last.op));
            }
            ops.push(OpRef::of(s.op));
            out.push(Violation {
                kind: ViolationKind::StaleRead,
                imsi: Some(imsi.to_owned()),
                detail: format!(
                    "{} {} but the state after every processed request ({}) says {}",
                    s.imei,
                    if s.accepted() { "accepted" } else { "rejected" },
                    model::describe(&states),
                    if expect_accept { "accept" } else { "reject" },
                ),
                ops,
            });
        }
    }
    judged
}

/// `lost_request`: an acknowledged request whose final read says it does not exist.
fn check_lost_requests(history: &[Op], out: &mut Vec<Violation>) {
    let mut final_read: HashMap<&str, &Op> = HashMap::new();
    for op in history {
        let OpKind::ReadRequest { request_id } = &op.kind else {
            continue;
        };
        if !matches!(op.outcome, Outcome::Found { .. } | Outcome::NotFound) {
            continue;
        }
        let slot = final_read.entry(request_id.as_str()).or_insert(op);
        if (op.invoke, op.id) > (slot.invoke, slot.id) {
            *slot = op;
        }
    }
    for op in history {
        let Outcome::Acked { request_id, .. } = &op.outcome else {
            continue;
        };
        let Some(read) = final_read.get(request_id.as_str()) else {
            continue;
        };
        if read.outcome == Outcome::NotFound {
            out.push(Violation {
                kind: ViolationKind::LostRequest,
                imsi: op.imsi().map(str::to_owned),
                detail: format!("request {request_id} was acknowledged (202), then not found"),
                ops: vec![OpRef::of(op), OpRef::of(read)],
            });
        }
    }
}
