//! The embedded store's [`Ledger`] and [`Coordination`]: compare-and-swap batches under the
//! SIM stripes, the request log, the buffered last-seen. A single node is the whole cluster: it
//! always serves and holds every singleton.
//!
//! Reads are in [`super::read`].

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;

use rocksdb::WriteBatch;

use super::CF_SIMS;
use super::{backend, write_opts, RocksStore};
use super::{CF_BILLING, CF_EVENTS, CF_MEMBERS, CF_META, CF_OUTBOX, CF_PROFILES, CF_REQUESTS};
use crate::context::Imsi;
use crate::imei::Imei;
use crate::store::{encoding, keys, Batch, Commit, Coordination, Durability, Ledger};
use crate::store::{LedgerFuture, LocalRead, Millis, Op, Operation, RequestRecord, RequestStatus};
use crate::store::{SimRecord, StoreError};

impl RocksStore {
    /// Applies `batch` if its compares hold, all or nothing, as one RocksDB `WriteBatch`.
    pub(crate) fn write(&self, batch: Batch, durability: Durability) -> Result<Commit, StoreError> {
        let inner = &*self.inner;
        let stripes: BTreeSet<usize> = batch
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::PutSim { sim, .. } => Some(inner.stripe_of(&sim.imsi)),
                Op::DeleteSim { imsi, .. } => Some(inner.stripe_of(imsi)),
                _ => None,
            })
            .collect();
        // Ascending order: two batches can never wait on each other in a cycle.
        let _guards: Vec<_> = stripes.iter().map(|&s| inner.stripes[s].lock()).collect();
        // Batches that compare or write meta values are serialised (after the stripes, always in
        // this order): a compare and the write it guards are then atomic.
        let touches_meta = batch
            .ops
            .iter()
            .any(|op| matches!(op, Op::ExpectMeta { .. } | Op::PutMeta { .. }));
        let _meta = touches_meta.then(|| inner.meta_lock.lock());
        if !crate::store::check_meta_expectations(&batch, |k| self.meta(k))? {
            return Ok(Commit::Conflict);
        }

        let mut wb = WriteBatch::default();
        let mut profiles_changed = Vec::new();
        // Within one batch a SIM may appear twice (import): later ops see earlier ones.
        let mut pending: HashMap<Imsi, Option<SimRecord>> = HashMap::new();
        for op in batch.ops {
            match op {
                Op::PutSim {
                    mut sim,
                    expect_rev,
                } => {
                    let current = match pending.get(&sim.imsi) {
                        Some(c) => c.clone(),
                        None => inner.cached_sim_locked(&sim.imsi)?,
                    };
                    let current_rev = current.as_ref().map_or(0, |c| c.rev);
                    if current_rev != expect_rev {
                        return Ok(Commit::Conflict);
                    }
                    inner.stage_put_sim(&mut wb, current.as_ref(), &mut sim)?;
                    pending.insert(sim.imsi, Some(sim));
                }
                Op::DeleteSim { imsi, expect_rev } => {
                    let current = match pending.get(&imsi) {
                        Some(c) => c.clone(),
                        None => inner.cached_sim_locked(&imsi)?,
                    };
                    if current.as_ref().map_or(0, |c| c.rev) != expect_rev {
                        return Ok(Commit::Conflict);
                    }
                    inner.stage_delete_sim(&mut wb, current.as_ref(), &imsi)?;
                    pending.insert(imsi, None);
                }
                Op::PutProfile(p) => {
                    let cf = inner.cf(CF_PROFILES)?;
                    wb.put_cf(&cf, p.name.as_bytes(), encoding::encode(&p));
                    profiles_changed.push(p);
                }
                Op::PutEvent(ev) => {
                    let cf = inner.cf(CF_EVENTS)?;
                    let n = inner.event_counter.fetch_add(1, Ordering::Relaxed);
                    wb.put_cf(&cf, keys::event(&ev.imsi, ev.at, n), encoding::encode(&ev));
                }
                Op::DeleteEvent(id) => {
                    let cf = inner.cf(CF_EVENTS)?;
                    let counter = u32::try_from(id.counter).unwrap_or(u32::MAX);
                    wb.delete_cf(&cf, keys::event(&id.imsi, id.at, counter));
                }
                Op::PutRequest(r) => {
                    let cf = inner.cf(CF_REQUESTS)?;
                    wb.put_cf(&cf, r.seq.to_be_bytes(), encoding::encode(&r));
                }
                Op::DeleteRequest(seq) => {
                    // Never the newest: the next sequence number is rebuilt from it at open.
                    if seq.saturating_add(1) < inner.next_request.load(Ordering::SeqCst) {
                        wb.delete_cf(&inner.cf(CF_REQUESTS)?, seq.to_be_bytes());
                    }
                }
                Op::PutCharge(c) => {
                    let cf = inner.cf(CF_BILLING)?;
                    wb.put_cf(&cf, keys::charge(&c.month, &c.imsi), encoding::encode(&c));
                }
                Op::DeleteCharge { month, imsi } => {
                    wb.delete_cf(&inner.cf(CF_BILLING)?, keys::charge(&month, &imsi));
                }
                Op::PutOutbox { id, entry } => {
                    let cf = inner.cf(CF_OUTBOX)?;
                    wb.put_cf(&cf, id.to_be_bytes(), encoding::encode(&entry));
                }
                Op::DeleteOutbox { id } => {
                    let cf = inner.cf(CF_OUTBOX)?;
                    wb.delete_cf(&cf, id.to_be_bytes());
                }
                Op::PutMeta { key, value } => {
                    let cf = inner.cf(CF_META)?;
                    wb.put_cf(&cf, key.as_bytes(), value);
                }
                Op::ExpectMeta { .. } => {}
            }
        }
        inner
            .db
            .write_opt(wb, &write_opts(durability))
            .map_err(backend)?;
        // Still under the stripes: the cache follows the store exactly.
        for (imsi, rec) in pending {
            match rec {
                Some(r) => inner.cache_put(r),
                None => inner.cache_remove(&imsi),
            }
        }
        if !profiles_changed.is_empty() {
            let mut map = inner.profiles.write();
            for p in profiles_changed {
                map.insert(p.name.clone(), p);
            }
        }
        inner.applied.fetch_add(1, Ordering::SeqCst);
        Ok(Commit::Committed)
    }

    fn append(&self, op: Operation, at: Millis) -> Result<RequestRecord, StoreError> {
        let inner = &*self.inner;
        let _log = inner.request_log.lock();
        let seq = inner.next_request.load(Ordering::SeqCst);
        let rec = RequestRecord {
            seq,
            op,
            status: RequestStatus::Pending,
            error: None,
            submitted_at: at,
            processed_at: None,
        };
        let cf = inner.cf(CF_REQUESTS)?;
        inner
            .db
            .put_cf_opt(
                &cf,
                seq.to_be_bytes(),
                encoding::encode(&rec),
                &write_opts(Durability::Synced),
            )
            .map_err(backend)?;
        inner.next_request.store(seq + 1, Ordering::SeqCst);
        Ok(rec)
    }
}

impl super::Inner {
    /// Stages `sim` over `current` (as stored or staged): never moves last-seen backwards (the
    /// flusher, or another node's sighting, may have recorded a newer one) and moves the SIM in
    /// the profile member index. Shared by the checked write and the replicated one.
    pub(super) fn stage_put_sim(
        &self,
        wb: &mut WriteBatch,
        current: Option<&SimRecord>,
        sim: &mut SimRecord,
    ) -> Result<(), StoreError> {
        if let Some(cur) = current {
            if cur.last_seen_at > sim.last_seen_at {
                sim.last_seen = cur.last_seen;
                sim.last_seen_at = cur.last_seen_at;
            }
        }
        let old_profile = current.and_then(|c| c.profile.as_ref());
        if old_profile != sim.profile.as_ref() {
            let members = self.cf(CF_MEMBERS)?;
            if let Some(p) = old_profile {
                wb.delete_cf(&members, keys::member(p, &sim.imsi));
            }
            if let Some(p) = &sim.profile {
                wb.put_cf(&members, keys::member(p, &sim.imsi), []);
            }
        }
        wb.put_cf(
            &self.cf(CF_SIMS)?,
            sim.imsi.as_bytes(),
            encoding::encode(&*sim),
        );
        Ok(())
    }

    /// Stages the deletion of SIM `imsi`, `current` as stored or staged, with its index entry.
    pub(super) fn stage_delete_sim(
        &self,
        wb: &mut WriteBatch,
        current: Option<&SimRecord>,
        imsi: &Imsi,
    ) -> Result<(), StoreError> {
        if let Some(p) = current.and_then(|c| c.profile.as_ref()) {
            wb.delete_cf(&self.cf(CF_MEMBERS)?, keys::member(p, imsi));
        }
        wb.delete_cf(&self.cf(CF_SIMS)?, imsi.as_bytes());
        Ok(())
    }
}

impl Ledger for RocksStore {
    fn commit(&self, batch: Batch, durability: Durability) -> LedgerFuture<'_, Commit> {
        Box::pin(std::future::ready(self.write(batch, durability)))
    }

    fn append_request(&self, op: Operation, at: Millis) -> LedgerFuture<'_, RequestRecord> {
        Box::pin(std::future::ready(self.append(op, at)))
    }

    fn read_back(&self, imsi: Imsi) -> LedgerFuture<'_, Option<SimRecord>> {
        Box::pin(std::future::ready(self.sim(&imsi)))
    }

    fn note_seen(&self, imsi: &Imsi, imei: Imei, at: Millis) -> Result<(), StoreError> {
        self.inner.seen_shard(imsi).lock().insert(*imsi, (imei, at));
        Ok(())
    }

    fn next_outbox_id(&self) -> u64 {
        self.inner.next_outbox.fetch_add(1, Ordering::SeqCst)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush_seen()?;
        self.inner.db.flush_wal(true).map_err(backend)
    }
}

impl Coordination for RocksStore {
    fn applied(&self) -> u64 {
        self.inner.applied.load(Ordering::SeqCst)
    }
}
