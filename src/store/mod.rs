//! Durable state behind a trait, so that the engine and provisioning never name RocksDB.
//!
//! Two implementations: [`rocks::RocksStore`] (the embedded default) and [`memory::MemStore`]
//! (its in-memory twin, for tests). A later release adds an etcd-backed one; the trait is shaped for
//! that: every SIM write is a compare-and-swap on the record's revision ([`Batch::put_sim`]), and
//! provisioning requests form one log ordered by sequence number.
//!
//! The store does not decide anything: it reads, checks revisions and writes atomically.

pub mod blocking;
pub mod checkpoint;
pub mod conformance;
pub mod delayed;
pub mod encoding;
#[cfg(feature = "rocksdb")]
pub mod etcd;
mod forward;
pub(crate) use forward::forward_local_read_but_sim;
pub mod memory;
pub mod model;
#[cfg(feature = "rocksdb")]
pub mod rocks;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use crate::context::Imsi;
use crate::imei::Imei;
pub use model::*;

/// `kind` of `imei_lockd_store_errors_total`, counted by the implementations where a backend
/// error or an undecodable value becomes a [`StoreError`] (a lost compare-and-swap,
/// [`Commit::Conflict`], is normal contention and not counted).
pub const ERROR_KINDS: [&str; 2] = ["backend", "corrupt"];

/// Registers the store's error series at 0 (the size gauges are set by the daemon's sampler).
pub fn register_metrics() {
    for kind in ERROR_KINDS {
        metrics::counter!("imei_lockd_store_errors_total", "kind" => kind).increment(0);
    }
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-swap lost ([`Commit::Conflict`] where a caller needs an error): the record
    /// changed since it was read. Re-read and retry.
    #[error("conflict: {0} changed concurrently")]
    Conflict(String),
    /// [`Commit::Unknown`] where a caller needs an error: the write may or may not be in.
    #[error("outcome of a write unknown: {0}")]
    Unknown(String),
    #[error("stored value under {key} is unreadable: {source}")]
    Corrupt {
        key: String,
        source: encoding::EncodingError,
    },
    #[error("storage backend: {0}")]
    Backend(String),
    /// The backend refused a write as larger than it takes in one request (etcd's
    /// `--max-request-bytes`): nothing was written, and the same write will never fit.
    #[error("write too large for the storage backend: {0}")]
    TooLarge(String),
}

/// How hard a write must be made durable before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Written to the WAL and fsynced: survives power loss. Bindings and accepted requests.
    Synced,
    /// Written to the WAL without fsync: survives a crash of the process (`kill -9`), not of the
    /// machine. Events, last-seen, status changes.
    Buffered,
}

/// One write inside a [`Batch`].
#[derive(Clone, Debug)]
pub enum Op {
    /// Put a SIM if its stored revision is `expect_rev` (0 = must not exist). The record's `rev`
    /// must be `expect_rev + 1`.
    PutSim {
        sim: SimRecord,
        expect_rev: u64,
    },
    /// Delete a SIM if its stored revision is `expect_rev`.
    DeleteSim {
        imsi: Imsi,
        expect_rev: u64,
    },
    PutProfile(ProfileRecord),
    PutEvent(Event),
    /// Delete one event (retention), by the id [`LocalRead::expired_events`] gave. Only
    /// retention deletes events, oldest first: a store may delete, with it, other events no
    /// newer than it (etcd deletes bulk writes' events by bundle).
    DeleteEvent(EventId),
    PutRequest(RequestRecord),
    /// Delete one settled request (retention), by its sequence number. A store ignores it for
    /// the newest request it holds (and any newer): the sequence counter is rebuilt from the
    /// newest request at a restart or a cache rebuild, so that one is never deleted.
    DeleteRequest(u64),
    PutCharge(Charge),
    /// Delete one billing row (retention). Only retention deletes billing rows, whole months,
    /// oldest first: a store may delete, with it, other rows of the same month (etcd deletes
    /// bulk writes' rows by bundle).
    DeleteCharge {
        month: String,
        imsi: Imsi,
    },
    PutOutbox {
        id: u64,
        entry: OutboxEntry,
    },
    DeleteOutbox {
        id: u64,
    },
    /// Small named values (cursors, markers).
    PutMeta {
        key: String,
        value: Vec<u8>,
    },
    /// A compare, no write: the batch applies only if meta `key` holds `value` now (`None`: is
    /// absent). How one processor fences another (the provisioning cursor, the billed month).
    ExpectMeta {
        key: String,
        value: Option<Vec<u8>>,
    },
}

/// Where one event is stored: its SIM, its time and the store's counter that keeps two events
/// of one millisecond apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub imsi: Imsi,
    pub at: Millis,
    pub counter: u64,
}

/// A set of writes applied atomically, all or none: if any compare fails (a SIM revision, an
/// [`Op::ExpectMeta`]), nothing is written and the result is [`Commit::Conflict`].
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Compare-and-swap a SIM: stores `sim` (with `rev` bumped) if the stored revision is still
    /// `sim.rev` as read.
    pub fn put_sim(&mut self, mut sim: SimRecord) -> &mut Self {
        let expect_rev = sim.rev;
        sim.rev += 1;
        self.ops.push(Op::PutSim { sim, expect_rev });
        self
    }

    pub fn delete_sim(&mut self, sim: &SimRecord) -> &mut Self {
        self.ops.push(Op::DeleteSim {
            imsi: sim.imsi,
            expect_rev: sim.rev,
        });
        self
    }

    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Reads of this node's copy of the state: they never touch the network (the embedded store's
/// RocksDB and its caches; in cluster mode the node's local cache of etcd).
///
/// Reads see every commit of this node that returned before them. Methods are blocking and short
/// (a point read or a bounded scan).
pub trait LocalRead: Send + Sync + 'static {
    fn sim(&self, imsi: &Imsi) -> Result<Option<SimRecord>, StoreError>;
    /// The SIM as [`LocalRead::sim`] would return it, if that takes no I/O: `Some` when the
    /// record is held in memory, `None` when it is not (not cached, or no such SIM) — the caller
    /// then asks [`LocalRead::sim`], off any task that must not wait. Never blocks on I/O.
    fn sim_in_memory(&self, imsi: &Imsi) -> Option<SimRecord>;
    /// A profile. Profiles are few: every implementation holds them all in memory, so this is
    /// as cheap as [`LocalRead::sim_in_memory`].
    fn profile(&self, name: &str) -> Result<Option<ProfileRecord>, StoreError>;
    /// IMSIs of SIMs pointing at profile `name`, in key order, starting after `after`.
    fn sims_of_profile(
        &self,
        name: &str,
        after: Option<&Imsi>,
        limit: usize,
    ) -> Result<Vec<Imsi>, StoreError>;
    /// SIMs whose IMSI starts with `prefix` (digits; empty: all), in key order (the bytes of
    /// the IMSI: `12` < `123` < `13`), starting after `after`, as [`LocalRead::sim`] returns
    /// them (last-seen included). Bulk scans: billing roll-over, the API's SIM list. A SIM
    /// written during a walk of pages is seen at most once; one that exists throughout, exactly
    /// once.
    fn scan_sims(
        &self,
        prefix: &str,
        after: Option<&Imsi>,
        limit: usize,
    ) -> Result<Vec<SimRecord>, StoreError>;
    /// Profiles in name order (bytes), starting after `after`.
    fn profiles(&self, after: Option<&str>, limit: usize)
        -> Result<Vec<ProfileRecord>, StoreError>;
    /// How many SIMs point at profile `name` (a scan of its member index: proportional to the
    /// count, for listings, not for the request path).
    fn profile_member_count(&self, name: &str) -> Result<u64, StoreError>;
    /// Events of one SIM, newest first.
    fn events(&self, imsi: &Imsi, limit: usize) -> Result<Vec<Event>, StoreError>;
    /// Scans at most `scan` events in (IMSI, time) order from just after `after` (the start when
    /// `None`) and returns the ids of those older than `before`, with where to go on (`None`:
    /// the scan reached the end).
    fn expired_events(
        &self,
        before: Millis,
        after: Option<EventId>,
        scan: usize,
    ) -> Result<(Vec<EventId>, Option<EventId>), StoreError>;
    fn request(&self, seq: u64) -> Result<Option<RequestRecord>, StoreError>;
    /// Requests with `seq > after`, in log order.
    fn requests_after(&self, after: u64, limit: usize) -> Result<Vec<RequestRecord>, StoreError>;
    /// The sequence number of the last request appended (0: none yet). Sequence numbers start
    /// at 1 and have no gaps, so `last_request_seq() - cursor` requests follow a cursor.
    fn last_request_seq(&self) -> u64;
    /// Charges of a month, in IMSI order.
    fn charges(&self, month: &str) -> Result<Vec<Charge>, StoreError>;
    /// At most `limit` charges of a month in IMSI order (bytes), starting after `after`: the
    /// pages of the billing export, which never holds a whole month in memory.
    fn charges_page(
        &self,
        month: &str,
        after: Option<&Imsi>,
        limit: usize,
    ) -> Result<Vec<Charge>, StoreError>;
    fn charge(&self, month: &str, imsi: &Imsi) -> Result<Option<Charge>, StoreError>;
    /// The earliest month (`YYYY-MM`) that has a billing row (`None`: no row at all).
    fn oldest_charge_month(&self) -> Result<Option<String>, StoreError>;
    /// Alerts waiting for delivery, oldest first.
    fn outbox(&self, limit: usize) -> Result<Vec<(u64, OutboxEntry)>, StoreError>;
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Approximate sizes for metrics: (SIMs, events, pending outbox).
    fn approximate_counts(&self) -> StoreCounts;
    /// Writes a consistent copy of this node's whole state into `dir` (which must not exist;
    /// its parent must), for an online backup, and returns how many SIMs the copy holds.
    /// Blocking (a flush and a copy of files). A store without authoritative files of its own
    /// refuses with [`checkpoint::CheckpointError::Unsupported`], saying what to use instead.
    fn checkpoint(&self, dir: &Path) -> Result<u64, checkpoint::CheckpointError> {
        let _ = dir;
        Err(checkpoint::CheckpointError::Unsupported(
            "this store keeps no files of its own to back up".into(),
        ))
    }
}

/// What became of a [`Ledger::commit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    /// Durable (on the embedded store: written; on etcd: on a quorum) and visible to this node's
    /// [`LocalRead`].
    Committed,
    /// A compare of the batch lost (a SIM revision or an [`Op::ExpectMeta`]): nothing was
    /// written. This node's reads already show the newer state; re-read and judge again.
    Conflict,
    /// The outcome is not known (a timeout across an etcd leader change): the batch may or may
    /// not be in. Resolve with [`Ledger::read_back`]; never act as if it had committed.
    Unknown,
}

/// A ledger operation in flight.
pub type LedgerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Writes: the source of truth. Embedded: this node's RocksDB; cluster: etcd transactions.
pub trait Ledger: Send + Sync + 'static {
    /// Applies a batch atomically, all or nothing, if every compare in it holds.
    fn commit(&self, batch: Batch, durability: Durability) -> LedgerFuture<'_, Commit>;
    /// Appends a provisioning request to the one ordered log, durably, assigning its sequence
    /// number; returns the stored record.
    fn append_request(&self, op: Operation, at: Millis) -> LedgerFuture<'_, RequestRecord>;
    /// The SIM as the source of truth holds it now (a linearizable read in cluster mode): how an
    /// [`Commit::Unknown`] is resolved.
    fn read_back(&self, imsi: Imsi) -> LedgerFuture<'_, Option<SimRecord>>;
    /// Records the IMEI a SIM was last seen with. Buffered in memory and written later,
    /// coalesced (never waits on I/O); reads through [`LocalRead::sim`] see it at once.
    fn note_seen(&self, imsi: &Imsi, imei: Imei, at: Millis) -> Result<(), StoreError>;
    /// A fresh outbox id: unique (cluster-wide in cluster mode) and increasing on this node.
    fn next_outbox_id(&self) -> u64;
    /// Writes buffered data (last-seen) and flushes the WAL.
    fn flush(&self) -> Result<(), StoreError>;
    /// How many SIMs a bulk writer (import, profile fan-out, month roll-over) puts in one batch
    /// (each SIM may bring a record, an event and a charge).
    fn max_batch_sims(&self) -> usize {
        10_000
    }
    /// How many bulk batches of disjoint SIMs a bulk writer may have committing at once. 1 where
    /// a commit is done when it returns (embedded); more where each waits on the network
    /// (etcd), so that a large import is not one round trip per batch.
    fn max_batches_in_flight(&self) -> usize {
        1
    }
}

/// Work that must run on one node at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Singleton {
    /// The provisioning processor (also the month carry-over).
    Provisioning,
    /// Alert delivery from the outbox.
    Alerts,
    /// Deleting events, requests and billing rows past their retention.
    Retention,
}

impl Singleton {
    pub const ALL: [Self; 3] = [Self::Provisioning, Self::Alerts, Self::Retention];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Alerts => "alerts",
            Self::Retention => "retention",
        }
    }
}

/// Who may do what, now. The provided methods describe a single node (the memory and embedded
/// stores), which is the whole cluster: always serving, holding every singleton, and whatever
/// it applied is in effect everywhere. A clustered store overrides them.
pub trait Coordination: Send + Sync + 'static {
    /// Whether this node may answer sessions at this instant: in cluster mode its lease is
    /// valid by the monotonic clock and its cache has caught up. Checked before each answer.
    fn serving(&self) -> bool {
        true
    }
    /// Whether this node holds `singleton` now.
    fn holds(&self, _singleton: Singleton) -> bool {
        true
    }
    /// How far this node's [`LocalRead`] has applied the ledger (embedded: a commit counter;
    /// etcd: the applied revision).
    fn applied(&self) -> u64;
    /// Resolves `true` once every node serving sessions has applied at least `position` (an
    /// [`Coordination::applied`] value of this node), `false` if `timeout` passes first.
    fn wait_everywhere(
        &self,
        _position: u64,
        _timeout: std::time::Duration,
    ) -> BoxFuture<'_, bool> {
        Box::pin(std::future::ready(true))
    }
    /// Resolves when [`Coordination::applied`] may have moved because of another node's write
    /// (how a node that does not process requests learns of their processing). The embedded
    /// store has no other node: never.
    fn applied_changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
    /// The cluster as this node sees it, for `GET /v1/cluster` (JSON).
    fn describe(&self) -> BoxFuture<'_, serde_json::Value> {
        Box::pin(std::future::ready(serde_json::json!({
            "backend": "embedded",
            "nodes": [{"name": "local", "serving": self.serving(), "applied": self.applied()}],
            "singletons": Singleton::ALL.iter()
                .map(|s| (s.as_str(), "local"))
                .collect::<std::collections::BTreeMap<_, _>>(),
        })))
    }
    /// Compares this node's cache with the source of truth at one revision
    /// (`POST /v1/cluster/verify`, JSON). `None`: there is no separate cache (embedded store).
    fn verify_cache(&self) -> BoxFuture<'_, Option<Result<serde_json::Value, StoreError>>> {
        Box::pin(std::future::ready(None))
    }
}

/// A boxed future that yields a plain value.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The three faces of one backend, as the daemon wires them: the engine uses all three, the
/// provisioning processor too, the API only [`LocalRead`] (and writes through provisioning).
pub trait Store: LocalRead + Ledger + Coordination {}

impl<T: LocalRead + Ledger + Coordination + ?Sized> Store for T {}

/// [`Ledger::commit`] from blocking code (the engine and the provisioning processor run on
/// tokio's blocking pool): drives the future on this thread. Never call it on an async task.
///
/// # Errors
/// The ledger's.
pub fn commit_blocking(
    ledger: &(impl Ledger + ?Sized),
    batch: Batch,
    durability: Durability,
) -> Result<Commit, StoreError> {
    blocking::wait(ledger.commit(batch, durability))
}

/// One page of profiles, in name order after `after`, from all of them (both stores hold
/// every profile in memory).
pub(crate) fn profiles_page<'a>(
    all: impl Iterator<Item = &'a ProfileRecord>,
    after: Option<&str>,
    limit: usize,
) -> Vec<ProfileRecord> {
    let mut v: Vec<_> = all
        .filter(|p| after.is_none_or(|a| p.name.as_bytes() > a.as_bytes()))
        .cloned()
        .collect();
    v.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    v.truncate(limit);
    v
}

impl Batch {
    /// The compare-only ops, checked by [`check_meta_expectations`].
    pub fn meta_expectations(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.ops.iter().filter_map(|op| match op {
            Op::ExpectMeta { key, value } => Some((key.as_str(), value.as_deref())),
            _ => None,
        })
    }
}

/// Whether every [`Op::ExpectMeta`] of `batch` holds against `read` (one implementation's meta
/// read, done under its write lock).
///
/// # Errors
/// The read's.
pub(crate) fn check_meta_expectations(
    batch: &Batch,
    mut read: impl FnMut(&str) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<bool, StoreError> {
    for (key, want) in batch.meta_expectations() {
        if read(key)?.as_deref() != want {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Rough sizes, for metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreCounts {
    pub sims: u64,
    pub events: u64,
    pub outbox: u64,
    pub disk_bytes: u64,
}

/// Keys shared by both implementations.
#[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
pub(crate) mod keys {
    use crate::context::Imsi;

    /// Meta key: schema version of the data directory.
    pub const SCHEMA: &str = "schema_version";

    /// `imsi` `/` — the prefix of one SIM's events.
    pub fn event_prefix(imsi: &Imsi) -> Vec<u8> {
        let mut k = imsi.as_bytes().to_vec();
        k.push(b'/');
        k
    }

    /// `imsi` `/` `at` (8 octets BE) `counter` (4 octets BE).
    pub fn event(imsi: &Imsi, at: i64, counter: u32) -> Vec<u8> {
        let mut k = event_prefix(imsi);
        k.extend_from_slice(&(at.max(0) as u64).to_be_bytes());
        k.extend_from_slice(&counter.to_be_bytes());
        k
    }

    /// The SIM, time and counter of an [`event`] key (`None`: not one).
    pub fn parse_event(key: &[u8]) -> Option<super::EventId> {
        let slash = key.iter().position(|&b| b == b'/')?;
        let imsi = Imsi::parse(key.get(..slash)?).ok()?;
        let rest = key.get(slash + 1..)?;
        let at = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        let counter = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?);
        (rest.len() == 12).then_some(super::EventId {
            imsi,
            at: i64::try_from(at).ok()?,
            counter: u64::from(counter),
        })
    }

    /// `profile` NUL `imsi`.
    pub fn member(profile: &str, imsi: &Imsi) -> Vec<u8> {
        let mut k = member_prefix(profile);
        k.extend_from_slice(imsi.as_bytes());
        k
    }

    pub fn member_prefix(profile: &str) -> Vec<u8> {
        let mut k = profile.as_bytes().to_vec();
        k.push(0);
        k
    }

    /// `YYYY-MM` `/` `imsi`.
    pub fn charge(month: &str, imsi: &Imsi) -> Vec<u8> {
        let mut k = month.as_bytes().to_vec();
        k.push(b'/');
        k.extend_from_slice(imsi.as_bytes());
        k
    }

    pub fn charge_prefix(month: &str) -> Vec<u8> {
        let mut k = month.as_bytes().to_vec();
        k.push(b'/');
        k
    }
}
