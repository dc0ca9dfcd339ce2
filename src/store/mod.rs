//! Durable state behind a trait, so that the engine and provisioning never name RocksDB.
//!
//! Two implementations: [`rocks::RocksStore`] (the embedded default) and [`memory::MemStore`]
//! (its in-memory twin, for tests). A later release adds an etcd-backed one; the trait is shaped for
//! that: every SIM write is a compare-and-swap on the record's revision ([`Batch::put_sim`]), and
//! provisioning requests form one log ordered by sequence number.
//!
//! The store does not decide anything: it reads, checks revisions and writes atomically.

pub mod delayed;
pub mod encoding;
pub mod memory;
pub mod model;
#[cfg(feature = "rocksdb")]
pub mod rocks;

use crate::context::Imsi;
use crate::imei::Imei;
pub use model::*;

/// `kind` of `imei_lockd_store_errors_total`, counted by the implementations where a backend
/// error or an undecodable value becomes a [`StoreError`] (a lost compare-and-swap,
/// [`StoreError::Conflict`], is normal contention and not counted).
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
    /// A compare-and-swap lost: the record changed since it was read. Re-read and retry.
    #[error("conflict: SIM {0} changed concurrently")]
    Conflict(Imsi),
    #[error("stored value under {key} is unreadable: {source}")]
    Corrupt {
        key: String,
        source: encoding::EncodingError,
    },
    #[error("storage backend: {0}")]
    Backend(String),
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
    PutRequest(RequestRecord),
    PutCharge(Charge),
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
}

/// A set of writes applied atomically, all or none: if any SIM revision check fails, nothing is
/// written and the result is [`StoreError::Conflict`].
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

/// The durable state of one node.
///
/// Reads see every write that returned before them. All methods are blocking and short (a point
/// read, or a write of one batch); callers on an async runtime call them from blocking-friendly
/// contexts.
pub trait Store: Send + Sync + 'static {
    fn sim(&self, imsi: &Imsi) -> Result<Option<SimRecord>, StoreError>;
    /// The SIM as [`Store::sim`] would return it, if that takes no I/O: `Some` when the record
    /// is held in memory, `None` when it is not (not cached, or no such SIM) — the caller then
    /// asks [`Store::sim`], off any task that must not wait. Never blocks on I/O.
    fn sim_in_memory(&self, imsi: &Imsi) -> Option<SimRecord>;
    /// A profile. Profiles are few: both implementations hold them all in memory, so this is
    /// as cheap as [`Store::sim_in_memory`].
    fn profile(&self, name: &str) -> Result<Option<ProfileRecord>, StoreError>;
    /// IMSIs of SIMs pointing at profile `name`, in key order, starting after `after`.
    fn sims_of_profile(
        &self,
        name: &str,
        after: Option<&Imsi>,
        limit: usize,
    ) -> Result<Vec<Imsi>, StoreError>;
    /// SIMs whose IMSI starts with `prefix` (digits; empty: all), in key order (the bytes of
    /// the IMSI: `12` < `123` < `13`), starting after `after`, as [`Store::sim`] returns them
    /// (last-seen included). Bulk scans: billing roll-over, the API's SIM list. A SIM written
    /// during a walk of pages is seen at most once; one that exists throughout, exactly once.
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
    /// Applies a batch atomically.
    fn write(&self, batch: Batch, durability: Durability) -> Result<(), StoreError>;

    /// Records the IMEI a SIM was last seen with. Buffered in memory and written later,
    /// coalesced (never waits on I/O); reads through [`Store::sim`] see it at once.
    fn note_seen(&self, imsi: &Imsi, imei: Imei, at: Millis) -> Result<(), StoreError>;

    /// Events of one SIM, newest first.
    fn events(&self, imsi: &Imsi, limit: usize) -> Result<Vec<Event>, StoreError>;

    /// Appends a provisioning request to the log, durably (synced), assigning its sequence
    /// number; returns the stored record.
    fn submit_request(&self, op: Operation, at: Millis) -> Result<RequestRecord, StoreError>;
    fn request(&self, seq: u64) -> Result<Option<RequestRecord>, StoreError>;
    /// Requests with `seq > after`, in log order.
    fn requests_after(&self, after: u64, limit: usize) -> Result<Vec<RequestRecord>, StoreError>;
    /// The sequence number of the last request appended (0: none yet). Sequence numbers start
    /// at 1 and have no gaps, so `last_request_seq() - cursor` requests follow a cursor.
    fn last_request_seq(&self) -> u64;

    /// Charges of a month, in IMSI order.
    fn charges(&self, month: &str) -> Result<Vec<Charge>, StoreError>;
    fn charge(&self, month: &str, imsi: &Imsi) -> Result<Option<Charge>, StoreError>;

    /// Alerts waiting for delivery, oldest first.
    fn outbox(&self, limit: usize) -> Result<Vec<(u64, OutboxEntry)>, StoreError>;
    /// A fresh outbox id (monotonic).
    fn next_outbox_id(&self) -> u64;

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes buffered data (last-seen) and flushes the WAL.
    fn flush(&self) -> Result<(), StoreError>;

    /// Approximate sizes for metrics: (SIMs, events, pending outbox).
    fn approximate_counts(&self) -> StoreCounts;
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
