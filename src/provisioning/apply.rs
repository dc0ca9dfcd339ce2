//! What a request does: the writes that apply one provisioning request to the state as this
//! node reads it.
//!
//! [`Provisioner::apply`] returns the request's final batch (the SIM or profile record itself);
//! a request that fans out (an import, a profile whose value changes) first commits its SIM
//! chunks through [`Bulk`], all of them before it returns. Every SIM write is a compare on the
//! revision read, so a session that changed a SIM meanwhile makes the write lose, and the
//! request is applied again from fresh state; a state that already holds what the request
//! writes yields no event and no second charge, so applying again is harmless.
//!
//! This module does not commit the final batch, does not touch the cursor and does not mark
//! the request (see [`super::Provisioner::process_one`]).

use std::collections::{HashMap, HashSet};

use super::bulk::Bulk;
use super::Provisioner;
use crate::context::{Imsi, Interface};
use crate::store::{
    Batch, Event, EventKind, ImeiManagement, ImportRow, Millis, Op, Operation, ProfileRecord,
    RequestRecord, SimRecord, StoreError,
};

/// Why a request could not be applied.
pub(super) enum ApplyError {
    /// The request itself cannot be applied: it is marked failed with this reason.
    Rejected(String),
    Store(StoreError),
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl Provisioner {
    /// Builds the batch that applies `req`. Fan-out requests write their SIM chunks directly
    /// and return the final batch.
    pub(super) fn apply(&self, req: &RequestRecord, now: Millis) -> Result<Batch, ApplyError> {
        let detail = format!("request {}", req.seq);
        let mut batch = Batch::new();
        match &req.op {
            Operation::UpsertSim {
                imsi,
                msisdn,
                profile,
                value,
            } => {
                if let Some(Some(p)) = profile {
                    self.require_profile(p)?;
                }
                let current = self.store.sim(imsi)?;
                let mut next = current.clone().unwrap_or_else(|| SimRecord::new(*imsi));
                if let Some(m) = msisdn {
                    next.msisdn = m.clone();
                }
                if let Some(p) = profile {
                    next.profile = p.clone();
                }
                if let Some(v) = value {
                    next.value = *v;
                }
                self.stage_sim(&mut batch, current.as_ref(), next, now, &detail)?;
            }
            Operation::SetSimValue { imsi, value } => {
                let current = self.existing_sim(imsi)?;
                let mut next = current.clone();
                next.value = *value;
                self.stage_sim(&mut batch, Some(&current), next, now, &detail)?;
            }
            Operation::Reset { imsi } => {
                let current = self.existing_sim(imsi)?;
                let mut next = current.clone();
                next.bound = None;
                next.bound_at = None;
                batch.push(Op::PutEvent(Event {
                    kind: EventKind::ImeiReset,
                    imsi: *imsi,
                    at: now,
                    interface: Interface::Api,
                    peer: "api".into(),
                    imei: None,
                    bound: current.bound,
                    detail: Some(detail.clone()),
                }));
                batch.put_sim(next);
            }
            Operation::DeleteSim { imsi } => {
                let current = self.existing_sim(imsi)?;
                batch.delete_sim(&current);
            }
            Operation::UpsertProfile {
                name,
                value,
                lock_fee,
            } => {
                let old = self.store.profile(name)?;
                let rec = ProfileRecord {
                    name: name.clone(),
                    value: *value,
                    lock_fee: lock_fee.clone(),
                    rev: old.as_ref().map_or(1, |p| p.rev + 1),
                };
                let old_value = old.map_or(ImeiManagement::Disabled, |p| p.value);
                // Events and charges of its SIMs first, in chunks; the profile record itself goes
                // in the final batch with the request's status, so sessions see the new value
                // exactly when the request is processed, and a crash in between re-applies it.
                if old_value != *value {
                    self.fan_out_profile(&rec, old_value, now, &detail)?;
                }
                batch.push(Op::PutProfile(rec));
            }
            Operation::Import { rows } => self.import(rows, now, &detail)?,
        }
        Ok(batch)
    }

    /// Writes an import's SIMs in chunks. Chunks of distinct SIMs commit several at once where
    /// the store allows it; a file that names a SIM twice is written one chunk at a time, in
    /// order, so each row is staged on the state the rows before it made.
    fn import(&self, rows: &[ImportRow], now: Millis, detail: &str) -> Result<(), ApplyError> {
        for row in rows {
            if let Some(p) = &row.profile {
                self.require_profile(p)?;
            }
        }
        let mut seen = HashSet::with_capacity(rows.len());
        let distinct = rows.iter().all(|r| seen.insert(r.imsi));
        drop(seen);
        let in_flight = if distinct {
            self.store.max_batches_in_flight()
        } else {
            1
        };
        let mut bulk = Bulk::new(&*self.store, in_flight);
        for chunk in rows.chunks(self.chunk()) {
            let mut b = Batch::new();
            let mut staged: HashMap<Imsi, SimRecord> = HashMap::new();
            for row in chunk {
                let current = match staged.get(&row.imsi) {
                    Some(s) => Some(s.clone()),
                    None => self.store.sim(&row.imsi)?,
                };
                let mut next = current.clone().unwrap_or_else(|| SimRecord::new(row.imsi));
                next.msisdn = row.msisdn.clone();
                next.profile = row.profile.clone();
                next.value = row.value;
                let mut staged_next = next.clone();
                staged_next.rev = current.as_ref().map_or(0, |c| c.rev) + 1;
                self.stage_sim(&mut b, current.as_ref(), next, now, detail)?;
                staged.insert(row.imsi, staged_next);
            }
            bulk.commit(b, chunk.len())?;
        }
        bulk.finish()?;
        Ok(())
    }

    fn require_profile(&self, name: &str) -> Result<(), ApplyError> {
        match self.store.profile(name)? {
            Some(_) => Ok(()),
            None => Err(ApplyError::Rejected(format!("unknown profile {name:?}"))),
        }
    }

    fn existing_sim(&self, imsi: &Imsi) -> Result<SimRecord, ApplyError> {
        self.store
            .sim(imsi)?
            .ok_or_else(|| ApplyError::Rejected(format!("unknown SIM {imsi}")))
    }

    pub(super) fn effective(&self, sim: &SimRecord) -> Result<ImeiManagement, StoreError> {
        crate::engine::effective_value(&*self.store, sim)
    }

    /// Stages a SIM write plus its `value_changed` event and, if it becomes `lock`, its charge.
    fn stage_sim(
        &self,
        batch: &mut Batch,
        current: Option<&SimRecord>,
        next: SimRecord,
        now: Millis,
        detail: &str,
    ) -> Result<(), StoreError> {
        let before = match current {
            Some(c) => Some(self.effective(c)?),
            None => None,
        };
        let after = self.effective(&next)?;
        if before != Some(after) {
            batch.push(Op::PutEvent(value_event(
                &next.imsi, before, after, now, detail,
            )));
        }
        if after == ImeiManagement::Lock {
            self.stage_charge(batch, &next, now, now, None)?;
        }
        batch.put_sim(next);
        Ok(())
    }

    /// A profile's value changed: events and charges for every SIM that follows it (pages of
    /// distinct SIMs: several in flight where the store allows it).
    fn fan_out_profile(
        &self,
        profile: &ProfileRecord,
        old_value: ImeiManagement,
        now: Millis,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut after: Option<Imsi> = None;
        let mut bulk = Bulk::new(&*self.store, self.store.max_batches_in_flight());
        loop {
            let imsis = self
                .store
                .sims_of_profile(&profile.name, after.as_ref(), self.chunk())?;
            let Some(last) = imsis.last().copied() else {
                return bulk.finish();
            };
            let mut b = Batch::new();
            let mut following = 0;
            for imsi in &imsis {
                let Some(sim) = self.store.sim(imsi)? else {
                    continue;
                };
                if sim.value.is_some() {
                    continue; // the SIM's own value overrides the profile
                }
                following += 1;
                b.push(Op::PutEvent(value_event(
                    imsi,
                    Some(old_value),
                    profile.value,
                    now,
                    detail,
                )));
                if profile.value == ImeiManagement::Lock {
                    self.stage_charge(&mut b, &sim, now, now, Some(profile))?;
                }
            }
            bulk.commit(b, following)?;
            after = Some(last);
        }
    }
}

fn value_event(
    imsi: &Imsi,
    before: Option<ImeiManagement>,
    after: ImeiManagement,
    now: Millis,
    detail: &str,
) -> Event {
    let from = before.map_or("none", ImeiManagement::as_str);
    Event {
        kind: EventKind::ValueChanged,
        imsi: *imsi,
        at: now,
        interface: Interface::Api,
        peer: "api".into(),
        imei: None,
        bound: None,
        detail: Some(format!("{from} -> {after} ({detail})")),
    }
}
