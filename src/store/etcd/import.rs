//! `imei-lockctl cluster import`: moves an embedded data directory into an empty etcd prefix,
//! for an operator who grows from one node to several.
//!
//! The source is read on a blocking thread ([`DataDir::records`]); each record is encoded under
//! its cluster key by [`Layout::encode`] (an event keeps its time and counter, a request its
//! sequence number, an outbox entry its id), and the key-values are cut into transactions of at
//! most `max_txn_ops` puts and [`MAX_TXN_BYTES`] bytes, up to `in_flight` of them sent at once.
//! The transactions have no compares: the prefix was found empty first, and a put of a fixed
//! value is idempotent, so a transaction lost in transit is simply sent again. The request
//! counter `P/reqseq` (the last sequence number) is written last, after every other record.
//!
//! Nodes started on the prefix afterwards have no cache position, so each rebuilds its cache
//! from one read of the prefix and shows what the embedded daemon showed: SIMs with their
//! bindings and last-seen IMEIs (which travel inside the SIM record), profiles, events, the
//! request log and its counter, billing rows, the alert outbox and the meta values (the
//! provisioning cursor, the billed month, the alert windows).
//!
//! A processed (or failed) CSV-import request larger than a transaction may be is kept without
//! its rows: its SIMs are imported as SIMs, and the API never shows the rows of a request. A
//! *pending* one cannot be shortened: the import refuses before writing anything.
//!
//! This module does not merge into a prefix that holds data, does not delete anything (an import
//! that fails half-way leaves a partial prefix, and its error says how to delete it), starts no
//! node, and does not change the source directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etcd_client::{GetOptions, KvClient, Txn, TxnOp};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::layout::Layout;
use super::{connect, EtcdSettings};
use crate::store::encoding;
use crate::store::rocks::export::{DataDir, ExportError, KINDS};
use crate::store::rocks::replica::Change;
use crate::store::{Operation, RequestStatus};

/// Most bytes of keys and values in one transaction: under etcd's default `--max-request-bytes`
/// (1.5 MiB), with room for the request's framing.
pub const MAX_TXN_BYTES: usize = 1024 * 1024;

/// Attempts of one transaction before the import gives up.
const ATTEMPTS: u32 = 5;

/// How the import writes.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Transactions sent at once (at least 1).
    pub in_flight: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self { in_flight: 16 }
    }
}

/// Why an import did not happen, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    #[error(transparent)]
    Source(#[from] ExportError),
    #[error("cannot reach etcd at {endpoints:?}: {message}")]
    Connect {
        endpoints: Vec<String>,
        message: String,
    },
    #[error(
        "etcd prefix {prefix} already holds {keys} keys: the import writes only into an empty \
         prefix (is a cluster already running on it, or was it imported before?); set another \
         cluster.etcd.prefix, or delete it with `etcdctl del --prefix '{prefix}/'`"
    )]
    PrefixNotEmpty { prefix: String, keys: i64 },
    #[error(
        "request {seq} is a pending CSV import of {rows} rows ({bytes} bytes encoded), larger \
         than one etcd transaction ({MAX_TXN_BYTES} bytes): start the embedded daemon again until \
         it is processed, stop it, and import then"
    )]
    PendingTooLarge { seq: u64, rows: usize, bytes: usize },
    #[error(
        "the record {key} is {bytes} bytes encoded, larger than one etcd transaction \
         ({MAX_TXN_BYTES} bytes)"
    )]
    TooLarge { key: String, bytes: usize },
    #[error(
        "writing to etcd failed after {written} keys: {message}. The prefix {prefix} now holds \
         part of the data: delete it with `etcdctl del --prefix '{prefix}/'` and import again"
    )]
    Write {
        prefix: String,
        written: u64,
        message: String,
    },
}

/// What an import wrote.
#[derive(Clone, Debug, Default)]
pub struct ImportSummary {
    pub source: PathBuf,
    pub prefix: String,
    /// Records per kind, in the order of [`KINDS`].
    pub counts: Vec<(&'static str, u64)>,
    /// Processed CSV-import requests kept without their rows (too large for a transaction).
    pub trimmed_requests: u64,
    /// Keys written (the records and the request counter).
    pub keys: u64,
    pub transactions: u64,
    pub max_txn_ops: usize,
    pub in_flight: usize,
    /// The request counter written (`P/reqseq`; 0: no request, not written).
    pub last_request_seq: u64,
    pub elapsed: Duration,
}

impl ImportSummary {
    /// Records of `kind` (a name of [`KINDS`]).
    pub fn count(&self, kind: &str) -> u64 {
        self.counts
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }

    /// SIMs per second of the whole import (every kind written in that time).
    pub fn sims_per_second(&self) -> f64 {
        self.count("sims") as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The summary as JSON (for `--json`).
    pub fn to_json(&self) -> serde_json::Value {
        let counts: serde_json::Map<String, serde_json::Value> = self
            .counts
            .iter()
            .map(|(k, n)| ((*k).to_owned(), (*n).into()))
            .collect();
        serde_json::json!({
            "source": self.source.display().to_string(),
            "prefix": self.prefix,
            "records": counts,
            "trimmed_requests": self.trimmed_requests,
            "keys": self.keys,
            "transactions": self.transactions,
            "max_txn_ops": self.max_txn_ops,
            "in_flight": self.in_flight,
            "last_request_seq": self.last_request_seq,
            "seconds": self.elapsed.as_secs_f64(),
            "sims_per_second": self.sims_per_second(),
        })
    }
}

/// Copies the embedded data directory `from` into the empty prefix of the etcd cluster
/// `settings` names (its `node_name` and `lease_ttl` are not used).
///
/// # Errors
/// [`ImportError`]: the source cannot be read (missing, in use, damaged), etcd cannot be
/// reached, the prefix holds data, or a write failed (the prefix then holds part of the data).
pub async fn import(
    from: &Path,
    settings: &EtcdSettings,
    opts: &ImportOptions,
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let source = from.to_path_buf();
    let data = tokio::task::spawn_blocking(move || -> Result<DataDir, ImportError> {
        let data = DataDir::open(&source)?;
        refuse_large_pending(&data)?;
        Ok(data)
    })
    .await
    .map_err(|e| ImportError::Source(join_failed(from, &e)))??;

    let connect_err = |message: String| ImportError::Connect {
        endpoints: settings.endpoints.clone(),
        message,
    };
    let client = connect(settings)
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let layout = Layout::new(&settings.prefix);
    let mut kv = client.kv_client();
    let root = layout.root();
    let existing = tokio::time::timeout(
        settings.request_timeout,
        kv.get(
            root.clone(),
            Some(
                GetOptions::new()
                    .with_range(Layout::range_end(&root))
                    .with_count_only(),
            ),
        ),
    )
    .await
    .map_err(|_| connect_err("no answer within cluster.etcd.request_timeout_ms".into()))?
    .map_err(|e| connect_err(e.to_string()))?;
    if existing.count() > 0 {
        return Err(ImportError::PrefixNotEmpty {
            prefix: settings.prefix.clone(),
            keys: existing.count(),
        });
    }
    let max_ops = settings.max_txn_ops.max(1);
    let in_flight = opts.in_flight.max(1);
    tracing::info!(from = %from.display(), prefix = %settings.prefix, max_txn_ops = max_ops,
        in_flight, "importing an embedded data directory into etcd");

    let (tx, mut rx) = mpsc::channel::<Chunk>(in_flight * 2);
    let reader_layout = layout.clone();
    let reader =
        tokio::task::spawn_blocking(move || read_source(&data, &reader_layout, max_ops, &tx));
    let write_err = |written: u64, message: String| ImportError::Write {
        prefix: settings.prefix.clone(),
        written,
        message,
    };
    let mut tasks: JoinSet<Result<u64, String>> = JoinSet::new();
    let mut written = 0u64;
    let mut transactions = 0u64;
    let mut failure = None;
    'send: while let Some(chunk) = rx.recv().await {
        while tasks.len() >= in_flight {
            match reap(&mut tasks).await {
                Some(Ok(n)) => written += n,
                Some(Err(message)) => {
                    failure = Some(message);
                    break 'send;
                }
                None => break,
            }
        }
        transactions += 1;
        tasks.spawn(put_chunk(
            kv.clone(),
            chunk,
            settings.request_timeout,
            max_ops,
        ));
    }
    // On a failure the reader stops at its next send (the receiver is gone).
    drop(rx);
    while failure.is_none() {
        match reap(&mut tasks).await {
            Some(Ok(n)) => written += n,
            Some(Err(message)) => failure = Some(message),
            None => break,
        }
    }
    tasks.abort_all();
    let tally = reader
        .await
        .map_err(|e| ImportError::Source(join_failed(from, &e)))?;
    if let Some(message) = failure {
        return Err(write_err(written, message));
    }
    let tally = tally?;
    if tally.last_request_seq > 0 {
        let counter = Chunk {
            ops: vec![(
                layout.request_counter(),
                tally.last_request_seq.to_be_bytes().to_vec(),
            )],
            bytes: 0,
        };
        transactions += 1;
        written += put_chunk(kv.clone(), counter, settings.request_timeout, max_ops)
            .await
            .map_err(|m| write_err(written, m))?;
    }
    let summary = ImportSummary {
        source: from.to_path_buf(),
        prefix: settings.prefix.clone(),
        counts: tally.counts,
        trimmed_requests: tally.trimmed,
        keys: written,
        transactions,
        max_txn_ops: max_ops,
        in_flight,
        last_request_seq: tally.last_request_seq,
        elapsed: started.elapsed(),
    };
    tracing::info!(
        keys = summary.keys,
        transactions,
        seconds = summary.elapsed.as_secs_f64(),
        sims_per_second = summary.sims_per_second(),
        "import done"
    );
    Ok(summary)
}

fn join_failed(from: &Path, e: &tokio::task::JoinError) -> ExportError {
    ExportError::Backend {
        dir: from.to_path_buf(),
        message: format!("reading task failed: {e}"),
    }
}

/// The next finished transaction: its keys, or why it failed (`None`: none in flight).
async fn reap(tasks: &mut JoinSet<Result<u64, String>>) -> Option<Result<u64, String>> {
    Some(match tasks.join_next().await? {
        Ok(r) => r,
        Err(e) => Err(format!("a write task failed: {e}")),
    })
}

/// Refuses a pending request too large for one transaction (before anything is written).
fn refuse_large_pending(data: &DataDir) -> Result<(), ImportError> {
    for item in data.records_of("requests") {
        let (_, change) = item?;
        if let Change::PutRequest(r) = change {
            if r.status != RequestStatus::Pending {
                continue;
            }
            let bytes = encoding::encode(&r).len();
            if bytes + 64 > MAX_TXN_BYTES {
                let rows = match &r.op {
                    Operation::Import { rows } => rows.len(),
                    _ => 1,
                };
                return Err(ImportError::PendingTooLarge {
                    seq: r.seq,
                    rows,
                    bytes,
                });
            }
        }
    }
    Ok(())
}

/// Key-values of one transaction.
#[derive(Debug, Default)]
struct Chunk {
    ops: Vec<(Vec<u8>, Vec<u8>)>,
    bytes: usize,
}

/// Cuts key-values into [`Chunk`]s of at most `max_ops` entries and `max_bytes` bytes.
struct Chunker {
    max_ops: usize,
    max_bytes: usize,
    current: Chunk,
}

impl Chunker {
    fn new(max_ops: usize, max_bytes: usize) -> Self {
        Self {
            max_ops: max_ops.max(1),
            max_bytes,
            current: Chunk::default(),
        }
    }

    /// Adds one key-value; returns the chunk it did not fit in, when there is one.
    fn push(&mut self, key: Vec<u8>, value: Vec<u8>) -> Option<Chunk> {
        let size = key.len() + value.len();
        let full = !self.current.ops.is_empty()
            && (self.current.ops.len() >= self.max_ops
                || self.current.bytes + size > self.max_bytes);
        let done = full.then(|| std::mem::take(&mut self.current));
        self.current.ops.push((key, value));
        self.current.bytes += size;
        done
    }

    /// The last, partly filled chunk.
    fn finish(self) -> Option<Chunk> {
        (!self.current.ops.is_empty()).then_some(self.current)
    }
}

/// What the reader saw.
struct Tally {
    counts: Vec<(&'static str, u64)>,
    trimmed: u64,
    last_request_seq: u64,
}

/// Reads every record of `data`, encodes it, and sends it on in chunks; stops early (with what
/// it counted) when the writer is gone.
fn read_source(
    data: &DataDir,
    layout: &Layout,
    max_ops: usize,
    tx: &mpsc::Sender<Chunk>,
) -> Result<Tally, ImportError> {
    let mut tally = Tally {
        counts: KINDS.iter().map(|(k, _)| (*k, 0)).collect(),
        trimmed: 0,
        last_request_seq: data.last_request_seq()?,
    };
    let mut chunker = Chunker::new(max_ops, MAX_TXN_BYTES);
    for item in data.records() {
        let (kind, change) = item?;
        let Some(Encoded {
            key,
            value,
            trimmed,
        }) = encode_record(layout, change)?
        else {
            continue;
        };
        if let Some((_, n)) = tally.counts.iter_mut().find(|(k, _)| *k == kind) {
            *n += 1;
        }
        tally.trimmed += u64::from(trimmed);
        if let Some(chunk) = chunker.push(key, value) {
            if tx.blocking_send(chunk).is_err() {
                return Ok(tally);
            }
        }
    }
    if let Some(chunk) = chunker.finish() {
        // A closed channel means the writer failed; its error is the one reported.
        let _ = tx.blocking_send(chunk);
    }
    Ok(tally)
}

/// A record as etcd holds it.
#[derive(Debug)]
struct Encoded {
    key: Vec<u8>,
    value: Vec<u8>,
    /// A processed import request lost its rows to fit in a transaction.
    trimmed: bool,
}

/// `change` as its etcd key and value (`None`: nothing to write).
fn encode_record(layout: &Layout, change: Change) -> Result<Option<Encoded>, ImportError> {
    let Some((key, value)) = layout.encode(&change) else {
        return Ok(None);
    };
    if key.len() + value.len() <= MAX_TXN_BYTES {
        return Ok(Some(Encoded {
            key,
            value,
            trimmed: false,
        }));
    }
    match change {
        Change::PutRequest(mut r)
            if r.status != RequestStatus::Pending && matches!(r.op, Operation::Import { .. }) =>
        {
            tracing::info!(
                request = r.seq,
                bytes = value.len(),
                "a processed CSV import request is kept without its rows (too large for etcd)"
            );
            r.op = Operation::Import { rows: Vec::new() };
            Ok(Some(Encoded {
                key,
                value: encoding::encode(&r),
                trimmed: true,
            }))
        }
        _ => Err(ImportError::TooLarge {
            key: String::from_utf8_lossy(&key).into_owned(),
            bytes: key.len() + value.len(),
        }),
    }
}

/// Sends one chunk as one transaction of puts, again after a transport failure or timeout (a
/// put of a fixed value is idempotent); returns how many keys it wrote.
async fn put_chunk(
    mut kv: KvClient,
    chunk: Chunk,
    timeout: Duration,
    max_ops: usize,
) -> Result<u64, String> {
    let n = chunk.ops.len() as u64;
    let ops: Vec<TxnOp> = chunk
        .ops
        .into_iter()
        .map(|(k, v)| TxnOp::put(k, v, None))
        .collect();
    let txn = Txn::new().and_then(ops);
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=ATTEMPTS {
        let message = match tokio::time::timeout(timeout, kv.txn(txn.clone())).await {
            Ok(Ok(_)) => return Ok(n),
            Ok(Err(e)) if !retryable(&e) => return Err(explain(&e, n, max_ops)),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", timeout.as_millis()),
        };
        if attempt == ATTEMPTS {
            return Err(format!("{message} ({ATTEMPTS} attempts)"));
        }
        tracing::warn!(attempt, error = %message, "etcd transaction failed; sending it again");
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    Err("no attempt made".into())
}

/// Whether a failed transaction may succeed when sent again: transport trouble and an
/// unavailable or changing leader, not a refusal of the request itself.
fn retryable(e: &etcd_client::Error) -> bool {
    match e {
        // gRPC codes: 2 unknown, 4 deadline exceeded, 10 aborted, 13 internal, 14 unavailable.
        etcd_client::Error::GRpcStatus(s) => matches!(i32::from(s.code()), 2 | 4 | 10 | 13 | 14),
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => false,
        _ => true,
    }
}

/// etcd's refusal, with what to change when it is a limit.
fn explain(e: &etcd_client::Error, ops: u64, max_ops: usize) -> String {
    let text = e.to_string();
    if text.contains("too many operations") {
        format!(
            "{text}: a transaction of {ops} operations exceeds the members' --max-txn-ops; set \
             cluster.etcd.max_txn_ops to it (etcd's default is 128; this import used {max_ops})"
        )
    } else if text.contains("too large") {
        format!("{text}: the members' --max-request-bytes is below {MAX_TXN_BYTES} bytes")
    } else {
        text
    }
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod tests;
