//! [`Ledger`] on etcd: every batch is one transaction. A SIM write compares the key's
//! `mod_revision` with the revision the caller read (the cache holds it as the record's `rev`;
//! for a SIM known only from an import bundle, that the key does not exist; see
//! [`super::layout`]), an [`Op::ExpectMeta`] compares a value; a commit returns once this node's cache has applied it
//! (read-your-writes), a lost compare once the cache shows the newer state, a transport error as
//! [`Commit::Unknown`]. The request log's sequence numbers come from one counter key.
//!
//! This module decides nothing (the engine and provisioning judge) and reads no session state of
//! its own: reads are the cache's.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, DeleteOptions, Txn, TxnOp};

use super::layout::{self, Parsed};
use super::{etcd_err, observe, unsent, EtcdStore, Shared};
use crate::context::Imsi;
use crate::engine::{Clock, SystemClock};
use crate::imei::Imei;
use crate::store::rocks::replica::Change;
use crate::store::{
    encoding, Batch, Charge, Commit, Durability, Event, Ledger, LedgerFuture, LocalRead, Millis,
    Op, Operation, RequestRecord, RequestStatus, SimRecord, StoreError,
};

/// Bulk transactions (an import's chunks of disjoint SIMs) one provisioning request keeps
/// committing at once, at most: etcd batches concurrent proposals into one raft round and one
/// WAL fsync, so the import is not one round trip per `max_txn_ops / 3` SIMs...
const BULK_TXNS_IN_FLIGHT: usize = 16;
/// ... and their writes together, at most: etcd applies transactions one after another, and
/// what waits to be applied delays everything else (binds, node publications, and lease
/// renewals, which etcd 3.4 grants only once the leader has applied what it committed). With
/// 16 transactions of 1 023 writes in flight a 1M-SIM import on the benchmark machine made
/// etcd take 250 ms per transaction, time out requests and let leases expire; 2 048 writes
/// keep that queue short (16 transactions at `max_txn_ops` 128, 2 at 1 024).
const BULK_OPS_IN_FLIGHT: usize = 2_048;

/// gRPC status codes of a request etcd refused for its size: INVALID_ARGUMENT ("etcdserver:
/// request is too large", beyond `--max-request-bytes`) and RESOURCE_EXHAUSTED (beyond the gRPC
/// message limit etcd derives from it). Either way the request was not applied.
const GRPC_INVALID_ARGUMENT: i32 = 3;
const GRPC_RESOURCE_EXHAUSTED: i32 = 8;

/// The refusal of a request for its size, if `e` is one.
fn too_large(e: &etcd_client::Error) -> Option<StoreError> {
    let etcd_client::Error::GRpcStatus(s) = e else {
        return None;
    };
    let code = i32::from(s.code());
    let sized = code == GRPC_RESOURCE_EXHAUSTED
        || (code == GRPC_INVALID_ARGUMENT && s.message().contains("too large"));
    sized.then(|| {
        StoreError::TooLarge(format!(
            "etcd: {} (the members' --max-request-bytes)",
            s.message()
        ))
    })
}

/// Events (and charges) of one batch from which on they are put as one bundle key
/// ([`super::layout`]): bulk writes; a session's bind keeps its event under its own key.
pub(super) const BUNDLE_MIN: usize = 8;

/// A transaction's writes, one per key (a later write of a key replaces the earlier one, in
/// place), in order.
#[derive(Default)]
struct Writes {
    list: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    index: HashMap<Vec<u8>, usize>,
}

impl Writes {
    fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match self.index.get(&key) {
            Some(&i) => {
                if let Some(slot) = self.list.get_mut(i) {
                    slot.1 = value;
                }
            }
            None => {
                self.index.insert(key.clone(), self.list.len());
                self.list.push((key, value));
            }
        }
    }
}

impl Shared {
    /// A counter that keeps this node's event and bundle keys of one millisecond apart from
    /// each other and (by the node's hash) from other nodes'.
    fn next_counter(&self) -> u32 {
        (self.node_hash as u32).wrapping_add(self.outbox_counter.fetch_add(1, Ordering::Relaxed))
    }

    /// The compares that SIM `imsi` (whose own key is `key`) is as the caller read it
    /// (`expect_rev`: the cache's `rev`, 0 when it read no SIM).
    fn sim_compares(
        &self,
        imsi: &Imsi,
        key: &[u8],
        expect_rev: u64,
        compares: &mut Vec<Compare>,
    ) -> Result<(), StoreError> {
        if layout::is_bundled(expect_rev) {
            // Read from its import bundle: it must still have no key of its own.
            compares.push(Compare::create_revision(key.to_vec(), CompareOp::Equal, 0));
            return Ok(());
        }
        if expect_rev != 0 {
            compares.push(rev_compare(key, expect_rev));
            return Ok(());
        }
        // Read as absent: deleted (its key is a tombstone), or never there.
        if let Some(tomb) = self.cache.meta(&layout::tomb_meta(imsi))? {
            compares.push(rev_compare(key, layout::tomb_rev(&tomb).unwrap_or(0)));
            return Ok(());
        }
        compares.push(rev_compare(key, 0));
        // Nor in an import bundle: none this node holds (its entry would be read)...
        if self
            .cache
            .sim(imsi)?
            .is_some_and(|s| layout::is_bundled(s.rev))
        {
            compares.push(Compare::create_revision(key.to_vec(), CompareOp::Equal, -1));
        }
        // ... and none written since this node's cache position.
        let applied = i64::try_from(self.applied()).unwrap_or(i64::MAX);
        compares.push(Compare::mod_revision(
            self.layout.sim_bundle_mark(),
            CompareOp::Less,
            applied.saturating_add(1),
        ));
        Ok(())
    }

    /// The transaction for `batch`: its compares, its writes (one per key, the last wins), and
    /// on failure reads of the compared keys (to know how far the cache must get; none for the
    /// SIMs of an import bundle: the failure then waits for the current revision).
    fn txn(
        &self,
        batch: Batch,
        deletes: Vec<Vec<u8>>,
    ) -> Result<(Txn, Vec<Vec<u8>>, bool), StoreError> {
        let l = &self.layout;
        let mut compares = Vec::new();
        let mut compared: Vec<Vec<u8>> = Vec::new();
        let mut writes = Writes::default();
        for key in deletes {
            writes.put(key, None);
        }
        let (new_sims, bundle_compares) = self.bundled_sims(&batch)?;
        compares.extend(bundle_compares);
        let mut bundled_sims: Vec<SimRecord> = Vec::with_capacity(new_sims.len());
        let events = batch
            .ops
            .iter()
            .filter(|op| matches!(op, Op::PutEvent(_)))
            .count();
        let charges = batch
            .ops
            .iter()
            .filter(|op| matches!(op, Op::PutCharge(_)))
            .count();
        let mut bundled_events: BTreeMap<Millis, Vec<(u32, Event)>> = BTreeMap::new();
        let mut bundled_charges: BTreeMap<String, Vec<Charge>> = BTreeMap::new();
        let mut expired_up_to: Option<Millis> = None;
        for op in batch.ops {
            match op {
                Op::PutSim { sim, .. } if new_sims.contains(&sim.imsi) => {
                    bundled_sims.push(sim);
                }
                Op::PutSim { sim, expect_rev } => {
                    let key = l.sim(&sim.imsi);
                    if !compared.contains(&key) {
                        self.sim_compares(&sim.imsi, &key, expect_rev, &mut compares)?;
                        compared.push(key.clone());
                    }
                    writes.put(key, Some(encoding::encode(&sim)));
                }
                Op::DeleteSim { imsi, expect_rev } => {
                    // A tombstone, not a deletion: the SIM may be in an import bundle.
                    let key = l.sim(&imsi);
                    if !compared.contains(&key) {
                        self.sim_compares(&imsi, &key, expect_rev, &mut compares)?;
                        compared.push(key.clone());
                    }
                    writes.put(key, Some(layout::TOMBSTONE.to_vec()));
                }
                Op::PutProfile(p) => writes.put(l.profile(&p.name), Some(encoding::encode(&p))),
                Op::PutEvent(ev) => {
                    let counter = self.next_counter();
                    if events >= BUNDLE_MIN {
                        bundled_events.entry(ev.at).or_default().push((counter, ev));
                    } else {
                        writes.put(
                            l.event(&ev.imsi, ev.at, counter),
                            Some(encoding::encode(&ev)),
                        );
                    }
                }
                Op::DeleteEvent(id) => {
                    // Ids come from the cache, whose counters are etcd's (32 bits). An event
                    // that came in a bundle has no key of its own (this delete is then a no-op):
                    // its bundle goes with the range delete below, which takes every bundle of
                    // events no newer than the newest deleted here (only retention deletes
                    // events, oldest first: all of them are expired too).
                    let counter = u32::try_from(id.counter).unwrap_or(u32::MAX);
                    writes.put(l.event(&id.imsi, id.at, counter), None);
                    expired_up_to = Some(expired_up_to.map_or(id.at, |t| t.max(id.at)));
                }
                Op::PutRequest(r) => writes.put(l.request(r.seq), Some(encoding::encode(&r))),
                Op::DeleteRequest(seq) => {
                    // Never the newest this node knows of (`P/reqseq` counts on from it, and a
                    // rebuilt cache's sequence from the newest request it reads).
                    if seq < self.cache.last_request_seq() {
                        writes.put(l.request(seq), None);
                    }
                }
                Op::DeleteCharge { month, imsi } => writes.put(l.charge(&month, &imsi), None),
                Op::PutCharge(c) if charges >= BUNDLE_MIN => {
                    bundled_charges.entry(c.month.clone()).or_default().push(c);
                }
                Op::PutCharge(c) => {
                    writes.put(l.charge(&c.month, &c.imsi), Some(encoding::encode(&c)));
                }
                Op::PutOutbox { id, entry } => {
                    writes.put(l.outbox(id), Some(encoding::encode(&entry)));
                }
                Op::DeleteOutbox { id } => writes.put(l.outbox(id), None),
                Op::PutMeta { key, value } => writes.put(l.meta(&key), Some(value)),
                Op::ExpectMeta { key, value } => {
                    let k = l.meta(&key);
                    compares.push(match value {
                        Some(v) => Compare::value(k.clone(), CompareOp::Equal, v),
                        None => Compare::create_revision(k.clone(), CompareOp::Equal, 0),
                    });
                    compared.push(k);
                }
            }
        }
        let bundled_sims_empty = bundled_sims.is_empty();
        if !bundled_sims_empty {
            let at = bundled_events
                .keys()
                .next_back()
                .copied()
                .unwrap_or_else(|| SystemClock::default().now_ms());
            let key = l.sim_bundle(at, self.next_counter());
            writes.put(key, Some(encoding::encode(&bundled_sims)));
            writes.put(l.sim_bundle_mark(), Some(Vec::new()));
        }
        // One bundle per event time (a bulk write stamps all its events alike), so a bundle's
        // key says how old all of its events are.
        for (at, list) in bundled_events {
            let key = l.event_bundle(at, self.next_counter());
            writes.put(key, Some(encoding::encode(&list)));
        }
        for (month, list) in bundled_charges {
            let at = list.iter().map(|c| c.first_lock_at).max().unwrap_or(0);
            let key = l.charge_bundle(&month, at, self.next_counter());
            writes.put(key, Some(encoding::encode(&list)));
        }
        let mut ops = Vec::with_capacity(writes.list.len() + 1);
        if let Some(up_to) = expired_up_to {
            // Retention: the event bundles whose newest event is expired too.
            let range = DeleteOptions::new().with_range(l.event_bundles_end(up_to));
            ops.push(TxnOp::delete(l.event_bundles(), Some(range)));
        }
        ops.extend(writes.list.into_iter().map(|(k, v)| match v {
            Some(v) => TxnOp::put(k, v, None),
            None => TxnOp::delete(k, None),
        }));
        if ops.len() > self.settings.max_txn_ops {
            return Err(StoreError::Backend(format!(
                "a batch of {} writes exceeds cluster.etcd.max_txn_ops = {}",
                ops.len(),
                self.settings.max_txn_ops
            )));
        }
        let reads: Vec<TxnOp> = compared
            .iter()
            .map(|k| TxnOp::get(k.clone(), None))
            .collect();
        Ok((
            Txn::new().when(compares).and_then(ops).or_else(reads),
            compared,
            !bundled_sims_empty,
        ))
    }

    async fn commit(&self, batch: Batch) -> Result<Commit, StoreError> {
        if batch.is_empty() {
            return Ok(Commit::Committed);
        }
        let deletes = self.charge_bundles_to_delete(&batch).await?;
        let (txn, compared, unread) = self.txn(batch, deletes)?;
        let started = Instant::now();
        let deadline = started + self.settings.request_timeout;
        let mut kv = self.client.kv_client();
        let res = unsent::txn(&mut kv, &txn, deadline).await;
        let resp = match res {
            Some(Ok(r)) => {
                observe("txn", started, true);
                r
            }
            Some(Err(e)) => {
                observe("txn", started, false);
                if let Some(refused) = too_large(&e) {
                    return Err(refused);
                }
                tracing::warn!(error = %e, "etcd transaction failed; outcome unknown");
                return Ok(Commit::Unknown);
            }
            None => {
                observe("txn", started, false);
                tracing::warn!("etcd transaction timed out; outcome unknown");
                return Ok(Commit::Unknown);
            }
        };
        let revision = resp.header().map_or(0, |h| h.revision()).max(0) as u64;
        if resp.succeeded() {
            // Read-your-writes: this node's reads show the batch when the caller goes on.
            if !self
                .wait_applied(revision, self.settings.request_timeout)
                .await
            {
                tracing::warn!(revision, "cache has not applied a committed batch in time");
            }
            return Ok(Commit::Committed);
        }
        // Lost: wait until the cache shows the state that won (the newest compared key).
        let mut target = 0u64;
        let mut absent = false;
        for r in resp.op_responses() {
            if let etcd_client::TxnOpResponse::Get(g) = r {
                match g.kvs().first() {
                    Some(kv) => target = target.max(kv.mod_revision().max(0) as u64),
                    None => absent = true,
                }
            }
        }
        if unread {
            // A SIM of the bundle has a key of its own now, written at most at `revision`.
            self.wait_applied(revision, self.settings.request_timeout)
                .await;
        } else if absent || compared.is_empty() {
            // A deleted key's deletion revision is not returned: wait briefly for the current one.
            self.wait_applied(revision, Duration::from_millis(200))
                .await;
        }
        self.wait_applied(target, self.settings.request_timeout)
            .await;
        Ok(Commit::Conflict)
    }

    async fn append_request(&self, op: Operation, at: Millis) -> Result<RequestRecord, StoreError> {
        let counter = self.layout.request_counter();
        let mut kv = self.client.kv_client();
        for _ in 0..64 {
            let started = Instant::now();
            let got = unsent::get(&mut kv, &counter, None, self.settings.request_timeout).await;
            observe("get", started, got.is_ok());
            let got = got.map_err(etcd_err)?;
            let (last, mod_rev) = match got.kvs().first() {
                Some(kv) => (
                    <[u8; 8]>::try_from(kv.value())
                        .map(u64::from_be_bytes)
                        .unwrap_or(0),
                    kv.mod_revision(),
                ),
                None => (0, 0),
            };
            let rec = RequestRecord {
                seq: last + 1,
                op: op.clone(),
                status: RequestStatus::Pending,
                error: None,
                submitted_at: at,
                processed_at: None,
            };
            let txn = Txn::new()
                .when(vec![Compare::mod_revision(
                    counter.clone(),
                    CompareOp::Equal,
                    mod_rev,
                )])
                .and_then(vec![
                    TxnOp::put(self.layout.request(rec.seq), encoding::encode(&rec), None),
                    TxnOp::put(counter.clone(), rec.seq.to_be_bytes().to_vec(), None),
                ]);
            let started = Instant::now();
            let deadline = started + self.settings.request_timeout;
            let resp = unsent::txn(&mut kv, &txn, deadline).await;
            observe("txn", started, matches!(resp, Some(Ok(_))));
            let resp = match resp {
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    return Err(
                        too_large(&e).unwrap_or_else(|| StoreError::Unknown(format!("etcd: {e}")))
                    )
                }
                None => return Err(StoreError::Unknown("etcd: transaction timed out".into())),
            };
            if resp.succeeded() {
                let revision = resp.header().map_or(0, |h| h.revision()).max(0) as u64;
                if !self
                    .wait_applied(revision, self.settings.request_timeout)
                    .await
                {
                    // Accepted all the same (it is in etcd); this node's reads show it later.
                    tracing::warn!(
                        request = rec.seq,
                        revision,
                        "cache has not applied an accepted request in time"
                    );
                }
                return Ok(rec);
            }
        }
        Err(StoreError::Conflict("the request log (64 attempts)".into()))
    }

    async fn read_back(&self, imsi: Imsi) -> Result<Option<SimRecord>, StoreError> {
        let key = self.layout.sim(&imsi);
        let started = Instant::now();
        let mut kv = self.client.kv_client();
        let got = unsent::get(&mut kv, &key, None, self.settings.request_timeout).await;
        observe("get", started, got.is_ok());
        let got = got.map_err(etcd_err)?;
        let Some(kv) = got.kvs().first() else {
            // No key of its own: the SIM is its import bundle's entry, if it has one (a bundle
            // never changes; one newer than the cache holds only SIMs this node has not read).
            return Ok(self.cache.sim(&imsi)?.filter(|s| layout::is_bundled(s.rev)));
        };
        match self
            .layout
            .parse(&key, Some(kv.value()), kv.mod_revision())?
        {
            Parsed::Data(Change::PutSim(s)) => {
                // Keep the cache's last-seen (it is not part of the SIM key).
                let local = self.cache.sim(&imsi)?;
                Ok(Some(SimRecord {
                    last_seen: local.as_ref().and_then(|l| l.last_seen).or(s.last_seen),
                    last_seen_at: local
                        .as_ref()
                        .and_then(|l| l.last_seen_at)
                        .or(s.last_seen_at),
                    ..s
                }))
            }
            _ => Ok(None),
        }
    }
}

fn rev_compare(key: &[u8], expect_rev: u64) -> Compare {
    Compare::mod_revision(
        key.to_vec(),
        CompareOp::Equal,
        i64::try_from(expect_rev).unwrap_or(i64::MAX),
    )
}

/// SIMs per bulk batch for a transaction limit of `max_txn_ops` writes: each SIM one write (its
/// record), plus the batch's two bundles, or, below [`BUNDLE_MIN`], up to `BUNDLE_MIN - 1`
/// events and as many charges under their own keys; three writes a SIM where the limit is too
/// small for bundles to matter.
fn max_batch_sims(max_txn_ops: usize) -> usize {
    let unbundled = 2 * (BUNDLE_MIN - 1);
    if max_txn_ops >= 3 * BUNDLE_MIN {
        max_txn_ops - unbundled
    } else {
        (max_txn_ops / 3).max(1)
    }
}

impl Ledger for EtcdStore {
    fn commit(&self, batch: Batch, _durability: Durability) -> LedgerFuture<'_, Commit> {
        // Every etcd commit is durable on a quorum: both durabilities are the same here.
        Box::pin(self.shared.commit(batch))
    }

    fn append_request(&self, op: Operation, at: Millis) -> LedgerFuture<'_, RequestRecord> {
        Box::pin(self.shared.append_request(op, at))
    }

    fn read_back(&self, imsi: Imsi) -> LedgerFuture<'_, Option<SimRecord>> {
        Box::pin(self.shared.read_back(imsi))
    }

    fn note_seen(&self, imsi: &Imsi, imei: Imei, at: Millis) -> Result<(), StoreError> {
        self.shared.cache.note_seen(imsi, imei, at)?;
        self.shared.seen.lock().insert(*imsi, (imei, at));
        Ok(())
    }

    fn next_outbox_id(&self) -> u64 {
        // Time (ms) · node (10 bits) · counter (12 bits): unique across nodes with distinct
        // names (barring a 1-in-1024 hash collision within one millisecond's counter), and
        // increasing on this node.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let n = u64::from(self.shared.outbox_counter.fetch_add(1, Ordering::Relaxed) & 0xfff);
        (now << 22) | ((self.shared.node_hash & 0x3ff) << 12) | n
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.shared.cache.flush()
    }

    fn max_batch_sims(&self) -> usize {
        max_batch_sims(self.shared.settings.max_txn_ops)
    }

    fn max_batches_in_flight(&self) -> usize {
        (BULK_OPS_IN_FLIGHT / self.shared.settings.max_txn_ops.max(1)).clamp(1, BULK_TXNS_IN_FLIGHT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bulk batch of `max_batch_sims` SIMs, with an event and a charge each (two bundles), or
    /// below the bundle threshold every event and charge under its own key, stays within the
    /// transaction limit.
    #[test]
    fn bulk_batches_fit_the_transaction_limit() {
        for ops in [3, 5, 23, 24, 128, 1024, 10_000] {
            let sims = max_batch_sims(ops);
            assert!(sims >= 1, "{ops}");
            let worst = if sims >= BUNDLE_MIN {
                sims + 2
            } else {
                3 * sims
            };
            let worst_small = (BUNDLE_MIN - 1).min(sims);
            assert!(worst <= ops, "{ops} ops: {sims} SIMs need {worst}");
            assert!(sims + 2 * worst_small <= ops.max(3 * sims), "{ops}");
        }
        assert_eq!(max_batch_sims(128), 114);
        assert_eq!(max_batch_sims(1024), 1010);
        assert_eq!(max_batch_sims(12), 4);
    }

    #[test]
    fn a_key_written_twice_keeps_its_place_and_last_value() {
        let mut w = Writes::default();
        w.put(b"a".to_vec(), Some(b"1".to_vec()));
        w.put(b"b".to_vec(), None);
        w.put(b"a".to_vec(), Some(b"2".to_vec()));
        assert_eq!(
            w.list,
            vec![(b"a".to_vec(), Some(b"2".to_vec())), (b"b".to_vec(), None)]
        );
    }
}
