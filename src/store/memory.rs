//! The in-memory twin of [`super::rocks::RocksStore`]: same semantics (revision checks, atomic
//! batches, log order), no durability. For engine tests and as the reference the RocksDB store
//! is compared against.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{Batch, Commit, Coordination, Durability, Ledger, LedgerFuture, LocalRead};
use super::{Charge, Event, Millis, Operation, OutboxEntry, ProfileRecord, RequestRecord};
use super::{EventId, Op, StoreCounts, StoreError};
use super::{RequestStatus, SimRecord};
use crate::context::Imsi;
use crate::imei::Imei;

#[derive(Default)]
struct State {
    sims: BTreeMap<Imsi, SimRecord>,
    profiles: BTreeMap<String, ProfileRecord>,
    /// (imsi, time, sequence) → event: a SIM's events in time order, as the RocksDB key orders
    /// them (the sequence keeps two in one millisecond apart).
    events: BTreeMap<(Imsi, Millis, u64), Event>,
    requests: BTreeMap<u64, RequestRecord>,
    charges: BTreeMap<(String, Imsi), Charge>,
    outbox: BTreeMap<u64, OutboxEntry>,
    meta: BTreeMap<String, Vec<u8>>,
}

/// A [`super::Store`] held in memory.
#[derive(Default)]
pub struct MemStore {
    state: Mutex<State>,
    counter: AtomicU64,
    next_outbox: AtomicU64,
    /// Commits applied ([`Coordination::applied`]).
    applied: AtomicU64,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self, batch: Batch) -> Result<Commit, StoreError> {
        let mut st = self.state.lock();
        if !super::check_meta_expectations(&batch, |k| Ok(st.meta.get(k).cloned()))? {
            return Ok(Commit::Conflict);
        }
        // Check every revision first: all or nothing.
        let mut revs: BTreeMap<Imsi, u64> = BTreeMap::new();
        for op in &batch.ops {
            let (imsi, expect, next) = match op {
                Op::PutSim { sim, expect_rev } => (sim.imsi, *expect_rev, sim.rev),
                Op::DeleteSim { imsi, expect_rev } => (*imsi, *expect_rev, 0),
                _ => continue,
            };
            let current = match revs.get(&imsi) {
                Some(r) => *r,
                None => st.sims.get(&imsi).map_or(0, |s| s.rev),
            };
            if current != expect {
                return Ok(Commit::Conflict);
            }
            revs.insert(imsi, next);
        }
        for op in batch.ops {
            match op {
                Op::PutSim { mut sim, .. } => {
                    if let Some(cur) = st.sims.get(&sim.imsi) {
                        if cur.last_seen_at > sim.last_seen_at {
                            sim.last_seen = cur.last_seen;
                            sim.last_seen_at = cur.last_seen_at;
                        }
                    }
                    st.sims.insert(sim.imsi, sim);
                }
                Op::DeleteSim { imsi, .. } => {
                    st.sims.remove(&imsi);
                }
                Op::PutProfile(p) => {
                    st.profiles.insert(p.name.clone(), p);
                }
                Op::PutEvent(e) => {
                    let n = self.counter.fetch_add(1, Ordering::Relaxed);
                    st.events.insert((e.imsi, e.at, n), e);
                }
                Op::DeleteEvent(id) => {
                    st.events.remove(&(id.imsi, id.at, id.counter));
                }
                Op::PutRequest(r) => {
                    st.requests.insert(r.seq, r);
                }
                Op::DeleteRequest(seq) => {
                    // Never the newest: the next sequence number is the newest's + 1.
                    if st
                        .requests
                        .keys()
                        .next_back()
                        .is_some_and(|&last| seq < last)
                    {
                        st.requests.remove(&seq);
                    }
                }
                Op::PutCharge(c) => {
                    st.charges.insert((c.month.clone(), c.imsi), c);
                }
                Op::DeleteCharge { month, imsi } => {
                    st.charges.remove(&(month, imsi));
                }
                Op::PutOutbox { id, entry } => {
                    st.outbox.insert(id, entry);
                }
                Op::DeleteOutbox { id } => {
                    st.outbox.remove(&id);
                }
                Op::PutMeta { key, value } => {
                    st.meta.insert(key, value);
                }
                Op::ExpectMeta { .. } => {}
            }
        }
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(Commit::Committed)
    }

    fn append(&self, op: Operation, at: Millis) -> Result<RequestRecord, StoreError> {
        let mut st = self.state.lock();
        let seq = st.requests.keys().next_back().map_or(1, |s| s + 1);
        let rec = RequestRecord {
            seq,
            op,
            status: RequestStatus::Pending,
            error: None,
            submitted_at: at,
            processed_at: None,
        };
        st.requests.insert(seq, rec.clone());
        Ok(rec)
    }
}

impl LocalRead for MemStore {
    fn sim(&self, imsi: &Imsi) -> Result<Option<SimRecord>, StoreError> {
        Ok(self.state.lock().sims.get(imsi).cloned())
    }

    fn sim_in_memory(&self, imsi: &Imsi) -> Option<SimRecord> {
        self.state.lock().sims.get(imsi).cloned()
    }

    fn profile(&self, name: &str) -> Result<Option<ProfileRecord>, StoreError> {
        Ok(self.state.lock().profiles.get(name).cloned())
    }

    fn sims_of_profile(
        &self,
        name: &str,
        after: Option<&Imsi>,
        limit: usize,
    ) -> Result<Vec<Imsi>, StoreError> {
        Ok(self
            .state
            .lock()
            .sims
            .values()
            .filter(|s| s.profile.as_deref() == Some(name))
            .filter(|s| after.is_none_or(|a| s.imsi.as_bytes() > a.as_bytes()))
            .take(limit)
            .map(|s| s.imsi)
            .collect())
    }

    fn scan_sims(
        &self,
        prefix: &str,
        after: Option<&Imsi>,
        limit: usize,
    ) -> Result<Vec<SimRecord>, StoreError> {
        let st = self.state.lock();
        let mut v: Vec<_> = st
            .sims
            .values()
            .filter(|s| s.imsi.as_bytes().starts_with(prefix.as_bytes()))
            .filter(|s| after.is_none_or(|a| s.imsi.as_bytes() > a.as_bytes()))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.imsi.as_bytes().cmp(b.imsi.as_bytes()));
        v.truncate(limit);
        Ok(v)
    }

    fn profiles(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ProfileRecord>, StoreError> {
        Ok(super::profiles_page(
            self.state.lock().profiles.values(),
            after,
            limit,
        ))
    }

    fn profile_member_count(&self, name: &str) -> Result<u64, StoreError> {
        let st = self.state.lock();
        Ok(st
            .sims
            .values()
            .filter(|s| s.profile.as_deref() == Some(name))
            .count() as u64)
    }

    fn events(&self, imsi: &Imsi, limit: usize) -> Result<Vec<Event>, StoreError> {
        Ok(self
            .state
            .lock()
            .events
            .range((*imsi, Millis::MIN, 0)..=(*imsi, Millis::MAX, u64::MAX))
            .rev()
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn expired_events(
        &self,
        before: Millis,
        after: Option<EventId>,
        scan: usize,
    ) -> Result<(Vec<EventId>, Option<EventId>), StoreError> {
        use std::ops::Bound;
        let st = self.state.lock();
        let from = match after {
            Some(a) => Bound::Excluded((a.imsi, a.at, a.counter)),
            None => Bound::Unbounded,
        };
        let mut expired = Vec::new();
        let mut last = None;
        for &(imsi, at, counter) in st
            .events
            .range((from, Bound::Unbounded))
            .map(|(k, _)| k)
            .take(scan)
        {
            let id = EventId { imsi, at, counter };
            if at < before {
                expired.push(id);
            }
            last = Some(id);
        }
        let more = last.is_some_and(|l| {
            st.events
                .range((Bound::Excluded((l.imsi, l.at, l.counter)), Bound::Unbounded))
                .next()
                .is_some()
        });
        Ok((expired, if more { last } else { None }))
    }

    fn request(&self, seq: u64) -> Result<Option<RequestRecord>, StoreError> {
        Ok(self.state.lock().requests.get(&seq).cloned())
    }

    fn requests_after(&self, after: u64, limit: usize) -> Result<Vec<RequestRecord>, StoreError> {
        Ok(self
            .state
            .lock()
            .requests
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn last_request_seq(&self) -> u64 {
        self.state
            .lock()
            .requests
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
    }

    fn charges(&self, month: &str) -> Result<Vec<Charge>, StoreError> {
        let mut v: Vec<Charge> = self
            .state
            .lock()
            .charges
            .values()
            .filter(|c| c.month == month)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.imsi.as_bytes().cmp(b.imsi.as_bytes()));
        Ok(v)
    }

    fn charges_page(
        &self,
        month: &str,
        after: Option<&Imsi>,
        limit: usize,
    ) -> Result<Vec<Charge>, StoreError> {
        let mut v = self.charges(month)?;
        if let Some(a) = after {
            v.retain(|c| c.imsi.as_bytes() > a.as_bytes());
        }
        v.truncate(limit);
        Ok(v)
    }

    fn charge(&self, month: &str, imsi: &Imsi) -> Result<Option<Charge>, StoreError> {
        Ok(self
            .state
            .lock()
            .charges
            .get(&(month.to_owned(), *imsi))
            .cloned())
    }

    fn oldest_charge_month(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .state
            .lock()
            .charges
            .keys()
            .next()
            .map(|(m, _)| m.clone()))
    }

    fn outbox(&self, limit: usize) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        Ok(self
            .state
            .lock()
            .outbox
            .iter()
            .take(limit)
            .map(|(k, v)| (*k, v.clone()))
            .collect())
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.lock().meta.get(key).cloned())
    }

    fn approximate_counts(&self) -> StoreCounts {
        let st = self.state.lock();
        StoreCounts {
            sims: st.sims.len() as u64,
            events: st.events.len() as u64,
            outbox: st.outbox.len() as u64,
            disk_bytes: 0,
        }
    }
}

impl Ledger for MemStore {
    fn commit(&self, batch: Batch, _durability: Durability) -> LedgerFuture<'_, Commit> {
        Box::pin(std::future::ready(self.write(batch)))
    }

    fn append_request(&self, op: Operation, at: Millis) -> LedgerFuture<'_, RequestRecord> {
        Box::pin(std::future::ready(self.append(op, at)))
    }

    fn read_back(&self, imsi: Imsi) -> LedgerFuture<'_, Option<SimRecord>> {
        Box::pin(std::future::ready(self.sim(&imsi)))
    }

    fn note_seen(&self, imsi: &Imsi, imei: Imei, at: Millis) -> Result<(), StoreError> {
        if let Some(s) = self.state.lock().sims.get_mut(imsi) {
            if s.last_seen_at.is_none_or(|t| t <= at) {
                s.last_seen = Some(imei);
                s.last_seen_at = Some(at);
            }
        }
        Ok(())
    }

    fn next_outbox_id(&self) -> u64 {
        self.next_outbox.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Coordination for MemStore {
    fn applied(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }
}
