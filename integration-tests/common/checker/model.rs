//! The per-SIM sequential model behind `stale_read`: (value, bound IMEI) replayed from the
//! requests and accepted sessions that certainly took effect before a session, in every order
//! their time windows allow.
//!
//! It does not decide which sessions may be judged (the caller checks that nothing could be
//! concurrent with the session) and reports nothing itself.
//!
//! # Transitions (SPEC §1.2, §1.4)
//! - `SetValue(v)`: value := v; the bound IMEI is kept. A switch to `disabled` and back keeps the
//!   binding ("`disabled` keeps it (it is just not checked)"); a switch to `pairing` keeps it too,
//!   but every accepted `pairing` session with an IMEI rebinds to that IMEI, so after `pairing`
//!   → session from P → `lock` the SIM is bound to P.
//! - `Reset`: bound := none; the value is unchanged.
//! - accepted session presenting P: `pairing` → bound := P; `lock` → bound := P (it was none or
//!   P; were it another IMEI, the accept already broke the lock, and the model keeps both the old
//!   binding and P possible so later sessions do not repeat that one breach); `disabled` →
//!   unchanged; value unknown → bound P or unchanged.
//! - rejected sessions, and sessions presenting no usable IMEI, change nothing.
//!
//! # Order
//! Events come with a window [lo, hi] in which they took effect. Events whose windows chain by
//! overlap form a cluster; clusters are totally ordered. Inside a cluster every order that keeps
//! "i before j whenever i.hi < j.lo" is tried (a dynamic programme over subsets), and the model
//! keeps the set of states any of them can reach. A cluster larger than [`MAX_CLUSTER`] (or a set
//! larger than [`MAX_STATES`]) yields the unknown state: sound, only less precise.

use std::collections::BTreeSet;

use super::super::history::Value;

/// Largest cluster whose orders are enumerated (2^12 subsets).
pub const MAX_CLUSTER: usize = 12;
/// Largest set of possible states kept.
pub const MAX_STATES: usize = 64;

/// What the model knows of the bound IMEI.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bound {
    Unknown,
    Free,
    To(String),
}

/// One possible state of a SIM; `value: None` = not known (before any value was set).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct State {
    pub value: Option<Value>,
    pub bound: Bound,
}

impl State {
    /// Nothing known: the state before the run's first request.
    pub fn unknown() -> Self {
        Self {
            value: None,
            bound: Bound::Unknown,
        }
    }

    /// The answer this state gives to a session presenting `imei` (14 digits): `Some(true)` =
    /// accept, `None` = the state does not say.
    pub fn expects_accept(&self, imei: &str) -> Option<bool> {
        match (self.value?, &self.bound) {
            (Value::Disabled | Value::Pairing, _) => Some(true),
            (Value::Lock, Bound::Free) => Some(true),
            (Value::Lock, Bound::To(b)) => Some(b == imei),
            (Value::Lock, Bound::Unknown) => None,
        }
    }
}

/// Something that changed a SIM's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    Set(Value),
    Reset,
    /// An accepted session presenting this IMEI (14 digits).
    Accept(String),
}

/// An [`Act`] that certainly took effect at some instant in [lo, hi] (hi finite).
#[derive(Clone, Debug)]
pub struct Event {
    pub lo: u64,
    pub hi: u64,
    pub act: Act,
}

/// The states `state` can move to under `act`.
fn apply(state: &State, act: &Act) -> Vec<State> {
    match act {
        Act::Set(v) => vec![State {
            value: Some(*v),
            bound: state.bound.clone(),
        }],
        Act::Reset => vec![State {
            value: state.value,
            bound: Bound::Free,
        }],
        Act::Accept(imei) => {
            let to = Bound::To(imei.clone());
            match state.value {
                Some(Value::Disabled) => vec![state.clone()],
                // Bound elsewhere and locked: the node broke the lock (reported on its own);
                // keep both bindings possible so the breach is not counted again downstream.
                Some(Value::Lock) if matches!(&state.bound, Bound::To(b) if b != imei) => vec![
                    state.clone(),
                    State {
                        value: Some(Value::Lock),
                        bound: to,
                    },
                ],
                Some(v @ (Value::Pairing | Value::Lock)) => vec![State {
                    value: Some(v),
                    bound: to,
                }],
                None => vec![
                    state.clone(),
                    State {
                        value: None,
                        bound: to,
                    },
                ],
            }
        }
    }
}

/// The sequence of clusters of a SIM's events and the states possible after each.
pub struct Timeline {
    /// Per cluster: the largest `hi` of its events and the states possible after it.
    after: Vec<(u64, BTreeSet<State>)>,
}

impl Timeline {
    /// Replays `events` (any order) from the unknown state.
    pub fn build(mut events: Vec<Event>) -> Self {
        events.sort_by_key(|e| (e.lo, e.hi));
        let mut after = Vec::new();
        let mut states = BTreeSet::from([State::unknown()]);
        let mut start = 0;
        while start < events.len() {
            let mut max_hi = events[start].hi;
            let mut end = start + 1;
            while end < events.len() && events[end].lo <= max_hi {
                max_hi = max_hi.max(events[end].hi);
                end += 1;
            }
            states = run_cluster(&states, &events[start..end]);
            after.push((max_hi, states.clone()));
            start = end;
        }
        Self { after }
    }

    /// The states possible at an instant `t` that no event's window reaches (the caller has
    /// checked that every event ended before `t` or starts after the session).
    pub fn states_before(&self, t: u64) -> BTreeSet<State> {
        self.after
            .iter()
            .take_while(|(max_hi, _)| *max_hi < t)
            .last()
            .map_or_else(|| BTreeSet::from([State::unknown()]), |(_, s)| s.clone())
    }
}

/// The states reachable from `input` through every order of `cluster` its windows allow.
fn run_cluster(input: &BTreeSet<State>, cluster: &[Event]) -> BTreeSet<State> {
    let n = cluster.len();
    if n > MAX_CLUSTER {
        return BTreeSet::from([State::unknown()]);
    }
    // must_follow[j]: the events that certainly took effect before j.
    let must_follow: Vec<usize> = cluster
        .iter()
        .map(|ej| {
            cluster
                .iter()
                .enumerate()
                .filter(|(_, ei)| ei.hi < ej.lo)
                .fold(0, |m, (i, _)| m | (1 << i))
        })
        .collect();
    let full = (1usize << n) - 1;
    let mut reach: Vec<BTreeSet<State>> = vec![BTreeSet::new(); full + 1];
    reach[0] = input.clone();
    // Masks grow by one bit per step, so numeric order visits a subset before its supersets.
    for mask in 0..full {
        if reach[mask].is_empty() {
            continue;
        }
        let here = std::mem::take(&mut reach[mask]);
        for (j, e) in cluster.iter().enumerate() {
            if mask & (1 << j) != 0 || must_follow[j] & !mask != 0 {
                continue;
            }
            let next = &mut reach[mask | (1 << j)];
            for s in &here {
                next.extend(apply(s, &e.act));
            }
            if next.len() > MAX_STATES {
                return BTreeSet::from([State::unknown()]);
            }
        }
    }
    std::mem::take(&mut reach[full])
}

/// The answer every state of `states` gives to `imei`, if they all agree and all know.
pub fn expected(states: &BTreeSet<State>, imei: &str) -> Option<bool> {
    let mut answers = states.iter().map(|s| s.expects_accept(imei));
    let first = answers.next()??;
    answers.all(|a| a == Some(first)).then_some(first)
}

/// A short description of `states` for a failure message.
pub fn describe(states: &BTreeSet<State>) -> String {
    let parts: Vec<String> = states
        .iter()
        .map(|s| {
            let value = s
                .value
                .map_or_else(|| "?".to_owned(), |v| format!("{v:?}").to_lowercase());
            match &s.bound {
                Bound::Unknown => format!("{value}, bound ?"),
                Bound::Free => format!("{value}, unbound"),
                Bound::To(b) => format!("{value}, bound {b}"),
            }
        })
        .collect();
    parts.join(" | ")
}
