//! Operation history of a fault run (issue 18): what each worker asked which node, when, and what
//! came back, recorded from many threads and kept on disk as JSON lines.
//!
//! The recorder only records. It does not judge (that is [`super::checker`]), talk to a node, or
//! inject faults, and its clock is the run's own (milliseconds since [`Recorder::new`]), not the
//! daemons'.
//!
//! # Calling contract
//! A worker calls [`Recorder::invoke`] just before it sends and [`Recorder::complete`] as soon as
//! it has the answer (or has given up: then the outcome is `Unknown`). An operation never
//! completed keeps `complete: None` and outcome `Unknown`. When the API reports a request
//! processed, the worker calls [`Recorder::set_processed`] with the time it learnt it.
//!
//! How the harness maps answers to outcomes matters for the checker's soundness:
//! - a session's `Accept`/`Reject` is the node's decision; `Unavailable` is an answer saying the
//!   node did not serve (Diameter 3002/3004, RADIUS silence, connection refused); `Unknown` is a
//!   timeout that might have been decided. The checker treats `Unavailable` like `Unknown` when
//!   it reasons about state (silence may hide a decision), and never as a violation;
//! - a request is `Acked` only on HTTP 202, `Refused` only when the write cannot have been
//!   accepted (a 4xx, or a 5xx from a node that never wrote); anything else is `Unknown`.
//!
//! # Format
//! One [`Op`] per line, serde's externally tagged JSON, e.g.
//! `{"id":3,"node":"node-1","kind":{"Session":{"interface":"radius","imsi":"001010000000001",
//! "imei":"3520990017614801"}},"invoke":120,"complete":131,"outcome":"Accept"}`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// An IMEI-management value (SPEC §1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Value {
    Disabled,
    Lock,
    Pairing,
}

/// The interface a session came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interface {
    Radius,
    Gx,
    S6b,
}

/// What a provisioning request changes on its SIM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// The SIM-level IMEI-management value.
    SetValue(Value),
    /// Clears the bound IMEI; the value is unchanged.
    Reset,
}

/// What an operation asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    /// A data-session start. `imei` is as presented (IMEISV, IMEI or 14 digits; anything else
    /// counts as no IMEI for the checker).
    Session {
        interface: Interface,
        imsi: String,
        imei: String,
    },
    /// A provisioning request through the REST API.
    Request { imsi: String, change: Change },
    /// The final read of a request after the cluster healed.
    ReadRequest { request_id: String },
}

/// What came back. Which variants fit which [`OpKind`]:
/// - `Session`: `Accept`, `Reject`, `Unavailable`, `Unknown`;
/// - `Request`: `Acked`, `Refused`, `Unknown`;
/// - `ReadRequest`: `Found`, `NotFound` (or `Unknown` if the read itself failed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Accept,
    Reject,
    /// The node did not serve (Diameter 3002 / 3004, RADIUS silence, refused connection).
    Unavailable,
    /// No answer in time: the operation might or might not have taken effect.
    Unknown,
    /// HTTP 202 with the request's id; `processed_at` is when the API reported it processed.
    Acked {
        request_id: String,
        processed_at: Option<u64>,
    },
    /// 4xx/5xx: the request was not accepted.
    Refused,
    /// The request exists, with this status (`pending`, `processed`, `failed`).
    Found {
        status: String,
    },
    NotFound,
}

/// One recorded operation. Times are milliseconds since the run's start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Unique in its history (the order of `invoke` calls).
    pub id: u64,
    /// Name of the node asked (e.g. `node-1`).
    pub node: String,
    pub kind: OpKind,
    pub invoke: u64,
    /// `None` if it never completed.
    pub complete: Option<u64>,
    pub outcome: Outcome,
}

impl Op {
    /// The IMSI this operation is about, if any (`ReadRequest` has none).
    pub fn imsi(&self) -> Option<&str> {
        match &self.kind {
            OpKind::Session { imsi, .. } | OpKind::Request { imsi, .. } => Some(imsi),
            OpKind::ReadRequest { .. } => None,
        }
    }
}

/// An operation in flight, returned by [`Recorder::invoke`]: complete it exactly once.
#[must_use = "complete the operation, or it stays Unknown"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpHandle(usize);

impl OpHandle {
    /// The id of the operation (its [`Op::id`]).
    pub fn id(self) -> u64 {
        self.0 as u64
    }
}

/// A thread-safe recorder; clones share one history.
#[derive(Clone)]
pub struct Recorder {
    /// The run's start: every time is measured from here.
    start: Instant,
    /// The ops in invoke order; index = id. One lock for all workers: an append or an update
    /// is a few hundred nanoseconds, far below a network round trip.
    ops: Arc<parking_lot::Mutex<Vec<Op>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A new, empty history whose time 0 is now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            ops: Arc::new(parking_lot::Mutex::new(Vec::new())),
        }
    }

    /// Milliseconds since the run's start.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records that `node` is asked `kind` now.
    pub fn invoke(&self, node: &str, kind: OpKind) -> OpHandle {
        let t = self.now_ms();
        self.invoke_at(node, kind, t)
    }

    /// Records the answer to `handle`, received now.
    pub fn complete(&self, handle: OpHandle, outcome: Outcome) {
        let t = self.now_ms();
        self.complete_at(handle, outcome, t);
    }

    /// [`Self::invoke`] at an explicit time (hand-built histories, replays).
    pub fn invoke_at(&self, node: &str, kind: OpKind, t: u64) -> OpHandle {
        let mut ops = self.ops.lock();
        let index = ops.len();
        ops.push(Op {
            id: index as u64,
            node: node.to_owned(),
            kind,
            invoke: t,
            complete: None,
            outcome: Outcome::Unknown,
        });
        OpHandle(index)
    }

    /// [`Self::complete`] at an explicit time. A handle from another recorder is ignored.
    pub fn complete_at(&self, handle: OpHandle, outcome: Outcome, t: u64) {
        if let Some(op) = self.ops.lock().get_mut(handle.0) {
            op.complete = Some(t);
            op.outcome = outcome;
        }
    }

    /// Notes that the request acknowledged as `request_id` was reported processed at `t`.
    /// Returns false if no acknowledged request has that id.
    pub fn set_processed(&self, request_id: &str, t: u64) -> bool {
        let mut ops = self.ops.lock();
        for op in ops.iter_mut() {
            if let Outcome::Acked {
                request_id: id,
                processed_at,
            } = &mut op.outcome
            {
                if id.as_str() == request_id {
                    *processed_at = Some(t);
                    return true;
                }
            }
        }
        false
    }

    /// A copy of the history so far, in id order.
    pub fn history(&self) -> Vec<Op> {
        self.ops.lock().clone()
    }

    /// Writes the history so far to `path` as JSON lines (see the module's `# Format`).
    ///
    /// # Errors
    /// Creating or writing the file.
    pub fn write_jsonl(&self, path: &Path) -> io::Result<()> {
        write_jsonl(path, &self.history())
    }
}

/// Writes `ops` to `path`, one JSON object per line.
///
/// # Errors
/// Creating or writing the file.
pub fn write_jsonl(path: &Path, ops: &[Op]) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    for op in ops {
        serde_json::to_writer(&mut out, op).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Reads a history written by [`write_jsonl`]; blank lines are skipped.
///
/// # Errors
/// Reading the file, or a line that is not an [`Op`] (the error names the line).
pub fn read_jsonl(path: &Path) -> io::Result<Vec<Op>> {
    let mut ops = Vec::new();
    for (n, line) in BufReader::new(File::open(path)?).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let op = serde_json::from_str(&line).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("line {}: {e}", n + 1))
        })?;
        ops.push(op);
    }
    Ok(ops)
}
