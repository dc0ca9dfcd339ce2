//! Availability figures of a fault run (issue 18), from the same history the checker reads: for
//! each fault and each node, how long sessions went without a decision (silence, Diameter
//! 3002/3004, timeouts) and when the node answered again, and how long provisioning waited.
//!
//! It judges nothing about correctness (that is [`super::checker`]) and measures only what the
//! clients saw: a node's outage starts at the first undecided session's invoke and ends at the
//! completion of the next decided one.

use std::fmt::Write as _;

use super::history::{Op, OpKind, Outcome};

/// Outages that begin within this long after the reference count as the fault's; later ones as
/// stalls after recovery.
pub const SETTLE_MS: u64 = 2000;
/// Sessions invoked this close to the window's end are left out (their answer may fall in the
/// next fault).
const TAIL_MS: u64 = 1500;

/// One injected fault, as the harness timed it (ms on the history's clock).
#[derive(Clone, Debug)]
pub struct FaultSpan {
    pub name: String,
    /// What it hit (`m1`, `node-2`, ...).
    pub victim: String,
    pub start: u64,
    pub healed: u64,
    /// When the answers are measured from: the new leader's election after a leader kill,
    /// else the heal.
    pub reference: u64,
    /// End of the window its figures look at (the next fault's start, or the run's end).
    pub until: u64,
}

/// The figures of one node under one fault.
#[derive(Clone, Debug)]
pub struct NodeFigures {
    pub node: String,
    /// Sessions sent to it in the fault's window, and how many got no decision.
    pub sessions: usize,
    pub undecided: usize,
    /// Longest stretch without a decision, ms.
    pub longest_outage: u64,
    /// From the reference instant until the end of the last outage that began before the
    /// reference plus [`SETTLE_MS`] (0: none ended after the reference). None: that outage was
    /// not over at the window's end.
    pub answers_after: Option<u64>,
    /// Longest outage that began later than that (a stall after the node answered again).
    pub later_outage: u64,
    /// From the fault's start until the last decision of a session sent before the heal (the
    /// cut-off node's "stops answering within its lease TTL"); None when none was decided.
    pub last_answer_after_start: Option<u64>,
}

/// The figures of one fault.
#[derive(Clone, Debug)]
pub struct FaultFigures {
    pub span: FaultSpan,
    pub nodes: Vec<NodeFigures>,
    /// Requests invoked during the fault: how many, and the longest wait for "processed" (ms;
    /// None if none was acknowledged).
    pub requests: usize,
    pub requests_unknown: usize,
    pub longest_request_wait: Option<u64>,
}

fn decided(op: &Op) -> bool {
    matches!(op.outcome, Outcome::Accept | Outcome::Reject)
}

fn node_figures(span: &FaultSpan, node: &str, ops: &[&Op]) -> NodeFigures {
    let mut sessions: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|o| o.node == node && matches!(o.kind, OpKind::Session { .. }))
        .filter(|o| o.invoke >= span.start && o.invoke + TAIL_MS < span.until)
        .collect();
    sessions.sort_by_key(|o| (o.invoke, o.id));
    let mut longest = 0;
    let mut outage_since: Option<u64> = None;
    // (start, end) of each outage; end None = not over by the window's end.
    let mut outages: Vec<(u64, Option<u64>)> = Vec::new();
    for o in &sessions {
        if decided(o) {
            if let Some(since) = outage_since.take() {
                let end = o.complete.unwrap_or(o.invoke);
                longest = longest.max(end.saturating_sub(since));
                outages.push((since, Some(end)));
            }
        } else if outage_since.is_none() {
            outage_since = Some(o.invoke);
        }
    }
    if let Some(since) = outage_since {
        longest = longest.max(span.until.saturating_sub(since));
        outages.push((since, None));
    }
    let settle = span.reference + SETTLE_MS;
    let answers_after = match outages.iter().rfind(|(since, _)| *since < settle) {
        None => Some(0),
        Some((_, None)) => None,
        Some((_, Some(end))) => Some(end.saturating_sub(span.reference)),
    };
    let later_outage = outages
        .iter()
        .filter(|(since, _)| *since >= settle)
        .map(|(since, end)| end.unwrap_or(span.until).saturating_sub(*since))
        .max()
        .unwrap_or(0);
    let last_answer_after_start = sessions
        .iter()
        .filter(|o| decided(o) && o.invoke < span.healed)
        .filter_map(|o| o.complete)
        .max()
        .map(|t| t.saturating_sub(span.start));
    NodeFigures {
        node: node.to_owned(),
        undecided: sessions.iter().filter(|o| !decided(o)).count(),
        sessions: sessions.len(),
        longest_outage: longest,
        answers_after,
        later_outage,
        last_answer_after_start,
    }
}

/// The figures of every fault in `spans` for `nodes`, from `history`.
pub fn figures(history: &[Op], spans: &[FaultSpan], nodes: &[String]) -> Vec<FaultFigures> {
    let ops: Vec<&Op> = history.iter().collect();
    spans
        .iter()
        .map(|span| {
            let reqs: Vec<&Op> = ops
                .iter()
                .copied()
                .filter(|o| matches!(o.kind, OpKind::Request { .. }))
                .filter(|o| o.invoke >= span.start && o.invoke < span.healed)
                .collect();
            let longest_request_wait = reqs
                .iter()
                .filter_map(|o| match &o.outcome {
                    Outcome::Acked {
                        processed_at: Some(p),
                        ..
                    } => Some(p.saturating_sub(o.invoke)),
                    _ => None,
                })
                .max();
            FaultFigures {
                span: span.clone(),
                nodes: nodes.iter().map(|n| node_figures(span, n, &ops)).collect(),
                requests: reqs.len(),
                requests_unknown: reqs
                    .iter()
                    .filter(|o| o.outcome == Outcome::Unknown)
                    .count(),
                longest_request_wait,
            }
        })
        .collect()
}

/// `v` in a table cell, `absent` when there is none.
fn ms(v: Option<u64>, absent: &str) -> String {
    v.map_or_else(|| absent.to_owned(), |v| v.to_string())
}

/// A Markdown table of `figures`, one row per fault and node.
pub fn table(figures: &[FaultFigures]) -> String {
    let mut out = String::from(
        "| fault | victim | lasted ms | node | sessions (undecided) | longest outage ms \
         | answers again after ms | later stall ms | last answer after start ms \
         | requests (unknown) | longest request wait ms |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for f in figures {
        for n in &f.nodes {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} ({}) | {} |",
                f.span.name,
                f.span.victim,
                f.span.healed - f.span.start,
                n.node,
                n.sessions,
                n.undecided,
                n.longest_outage,
                ms(n.answers_after, "never"),
                n.later_outage,
                ms(n.last_answer_after_start, "-"),
                f.requests,
                f.requests_unknown,
                ms(f.longest_request_wait, "-"),
            );
        }
    }
    out
}
