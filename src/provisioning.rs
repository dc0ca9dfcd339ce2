//! Provisioning requests (SPEC §1.4) and the billing ledger (§1.5).
//!
//! A request is appended to the store's ordered log, durably, before the API answers 202. One
//! processor applies requests strictly in log order (so requests for one SIM are applied in the
//! order they were accepted) and marks each `processed` or `failed` in the same atomic batch as its
//! effects. Sessions read only the store, so they see a change exactly when it is processed.
//!
//! Billing needs no history replay: the effective value of a SIM changes only here, so the
//! processor charges a SIM for the current month whenever a processed request makes its effective
//! value `lock`, and at each month boundary (before the first request of the new month, also after
//! downtime) charges every SIM that is `lock` at that moment, with the month's start as its first
//! moment of lock.
//!
//! This module knows no HTTP: the REST API calls [`Provisioner::submit`] and waits with
//! [`Provisioner::wait_processed`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use crate::context::{Imsi, Interface};
use crate::engine::Clock;
use crate::store::{
    commit_blocking, Batch, Charge, Commit, Durability, Event, EventKind, ImeiManagement,
    LocalRead, Millis, Op, Operation, ProfileRecord, RequestRecord, RequestStatus, SimRecord,
    Singleton, Store, StoreError,
};

/// Meta key: the last processed request's sequence number (8 octets BE).
const CURSOR_KEY: &str = "provisioning_cursor";
/// Meta key: the last month (`YYYY-MM`) whose carry-over charges were written.
const BILLED_MONTH_KEY: &str = "billing_month";
/// SIMs per batch when a request fans out (profile change, import, month roll-over).
const CHUNK: usize = 10_000;
/// Requests taken from the log per pass.
const PASS: usize = 256;

/// Fee settings (from `[billing]`).
#[derive(Clone, Debug)]
pub struct BillingSettings {
    pub lock_fee: String,
    pub currency: String,
}

/// Provisioning failures that are not a request's own fault.
#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The calendar month (UTC) of a timestamp, as `YYYY-MM`.
pub fn month_of(ms: Millis) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}", t.year(), u8::from(t.month()))
}

/// Parses `YYYY-MM` into (year, month).
pub fn parse_month(s: &str) -> Option<(i32, u8)> {
    let (y, m) = s.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let y: i32 = y.parse().ok()?;
    let m: u8 = m.parse().ok()?;
    (1..=12).contains(&m).then_some((y, m))
}

/// First millisecond of a month.
pub fn month_start(year: i32, month: u8) -> Millis {
    let m = time::Month::try_from(month).unwrap_or(time::Month::January);
    time::Date::from_calendar_date(year, m, 1)
        .map(|d| (d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as Millis)
        .unwrap_or(0)
}

fn next_month(year: i32, month: u8) -> (i32, u8) {
    if month >= 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

/// Applies provisioning requests in log order.
pub struct Provisioner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    billing: BillingSettings,
    /// Sequence number of the last processed request; API waiters watch it.
    processed: watch::Sender<u64>,
    /// Wakes the processor when a request is submitted.
    wake: tokio::sync::Notify,
    /// `imei_lockd_provisioning_pending`, set by [`Provisioner::publish_pending`].
    pending: metrics::Gauge,
}

impl Provisioner {
    /// # Errors
    /// Store errors reading the cursor.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        billing: BillingSettings,
    ) -> Result<Self, ProvisioningError> {
        let cursor = read_cursor(&*store)?;
        let (processed, _) = watch::channel(cursor);
        for status in ["submitted", "processed", "failed"] {
            // Present from the start, at 0.
            metrics::counter!("imei_lockd_provisioning_requests_total", "status" => status)
                .increment(0);
        }
        let this = Self {
            store,
            clock,
            billing,
            processed,
            wake: tokio::sync::Notify::new(),
            pending: metrics::gauge!("imei_lockd_provisioning_pending"),
        };
        this.publish_pending();
        Ok(this)
    }

    /// Sets `imei_lockd_provisioning_pending`: the requests accepted after the last processed
    /// one (sequence numbers have no gaps). Called on each submit and each processed request,
    /// so a stuck or slow processor shows as a count that stays up.
    fn publish_pending(&self) {
        let last = self.store.last_request_seq();
        let done = *self.processed.borrow();
        self.pending.set(last.saturating_sub(done) as f64);
    }

    /// Accepts a request: durable when this returns (embedded: synced; cluster: on a quorum).
    ///
    /// # Errors
    /// Store errors; the request was then not accepted.
    pub async fn submit(&self, op: Operation) -> Result<RequestRecord, ProvisioningError> {
        let rec = self.store.append_request(op, self.clock.now_ms()).await?;
        metrics::counter!("imei_lockd_provisioning_requests_total", "status" => "submitted")
            .increment(1);
        tracing::info!(request = rec.seq, "provisioning request accepted");
        self.publish_pending();
        self.wake.notify_one();
        Ok(rec)
    }

    /// The sequence number of the last request in effect on every node serving sessions (the
    /// API reports a request `processed` or `failed` only up to here).
    pub fn processed_seq(&self) -> u64 {
        *self.processed.borrow()
    }

    /// Waits until request `seq` is processed (or failed), at most `timeout`.
    pub async fn wait_processed(&self, seq: u64, timeout: Duration) {
        let mut rx = self.processed.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|&done| done >= seq)).await;
    }

    /// Runs the processor until `stop` fires: processes whatever is pending (on the node that
    /// holds the provisioning singleton), publishes what is in effect everywhere, then sleeps
    /// until a submit, a change applied to this node's reads, or a one-second tick (month
    /// roll-over).
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if self.store.holds(Singleton::Provisioning) {
                let this = self.clone();
                let res = tokio::task::spawn_blocking(move || this.process_pending()).await;
                match res {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "provisioning pass failed; retrying"),
                    Err(e) => tracing::error!(error = %e, "provisioning task failed; retrying"),
                }
            }
            self.publish_processed().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.store.applied_changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// Advances [`Provisioner::processed_seq`] to the cursor this node's reads show, once every
    /// node serving sessions has applied as much (at once on the embedded store).
    pub async fn publish_processed(&self) {
        let Ok(cursor) = read_cursor(&*self.store) else {
            return;
        };
        if cursor <= *self.processed.borrow() {
            return;
        }
        let position = self.store.applied();
        if self
            .store
            .wait_everywhere(position, Duration::from_secs(2))
            .await
        {
            self.processed.send_if_modified(|p| {
                let advance = cursor > *p;
                if advance {
                    *p = cursor;
                }
                advance
            });
            self.publish_pending();
        } else {
            tracing::warn!(
                request = cursor,
                "processed requests not yet in effect on every serving node; still waiting"
            );
        }
    }

    /// Commits a batch of the processor's; a lost compare or an unknown outcome is an error (the
    /// pass stops and the request is applied again from fresh state).
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        match commit_blocking(&*self.store, batch, Durability::Synced)? {
            Commit::Committed => Ok(()),
            Commit::Conflict => Err(StoreError::Conflict("a SIM or the request cursor".into())),
            Commit::Unknown => Err(StoreError::Unknown("a provisioning batch".into())),
        }
    }

    /// Processes every pending request in order (and month roll-overs first). Returns how many
    /// requests were processed.
    ///
    /// # Errors
    /// Store errors; the failed request stays pending and is retried.
    pub fn process_pending(&self) -> Result<usize, ProvisioningError> {
        self.roll_months()?;
        let mut done = 0;
        loop {
            let cursor = read_cursor(&*self.store)?;
            let batch = self.store.requests_after(cursor, PASS)?;
            if batch.is_empty() {
                break;
            }
            for req in batch {
                if !self.process_one(req)? {
                    // Not applied this time (a lost compare): next pass, from fresh state.
                    self.publish_pending();
                    return Ok(done);
                }
                done += 1;
            }
        }
        self.publish_pending();
        Ok(done)
    }

    /// Applies one request; `false` if it was left pending (a compare lost).
    fn process_one(&self, req: RequestRecord) -> Result<bool, ProvisioningError> {
        // The cursor as read now: the final batch applies only if it still is (one processor's
        // write fences any other that believes it holds the singleton).
        let cursor_before = self.store.meta(CURSOR_KEY)?;
        let now = self.clock.now_ms();
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            match self.apply(&req, now) {
                Err(ApplyError::Store(StoreError::Conflict(_))) if attempt < 16 => continue,
                other => break other,
            }
        };
        let (status, error, mut batch) = match outcome {
            Ok(batch) => (RequestStatus::Processed, None, batch),
            Err(ApplyError::Rejected(msg)) => (RequestStatus::Failed, Some(msg), Batch::new()),
            Err(ApplyError::Store(e)) => return Err(e.into()),
        };
        batch.push(Op::PutRequest(RequestRecord {
            status,
            error: error.clone(),
            processed_at: Some(now),
            ..req.clone()
        }));
        batch.push(Op::ExpectMeta {
            key: CURSOR_KEY.into(),
            value: cursor_before,
        });
        batch.push(Op::PutMeta {
            key: CURSOR_KEY.into(),
            value: req.seq.to_be_bytes().to_vec(),
        });
        match commit_blocking(&*self.store, batch, Durability::Synced)? {
            Commit::Committed => {}
            // A session changed a SIM between apply and write, or another processor moved the
            // cursor; or the outcome is unknown: leave it pending, the next pass applies it again
            // from fresh state (or skips it if it did commit).
            Commit::Conflict | Commit::Unknown => return Ok(false),
        }
        let label = if status == RequestStatus::Processed {
            "processed"
        } else {
            "failed"
        };
        metrics::counter!("imei_lockd_provisioning_requests_total", "status" => label).increment(1);
        match &error {
            None => tracing::info!(
                request = req.seq,
                op = op_name(&req.op),
                "request processed"
            ),
            Some(e) => {
                tracing::warn!(request = req.seq, op = op_name(&req.op), error = %e, "request failed")
            }
        }
        self.publish_pending();
        Ok(true)
    }

    /// Builds the batch that applies `req`. Fan-out requests write their SIM chunks directly and
    /// return the final batch.
    fn apply(&self, req: &RequestRecord, now: Millis) -> Result<Batch, ApplyError> {
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
            Operation::Import { rows } => {
                for row in rows {
                    if let Some(p) = &row.profile {
                        self.require_profile(p)?;
                    }
                }
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
                        self.stage_sim(&mut b, current.as_ref(), next, now, &detail)?;
                        staged.insert(row.imsi, staged_next);
                    }
                    self.commit(b)?;
                }
            }
        }
        Ok(batch)
    }

    /// SIMs per batch of a fan-out: [`CHUNK`], or less if the ledger takes less.
    fn chunk(&self) -> usize {
        CHUNK.min(self.store.max_batch_sims()).max(1)
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

    fn effective(&self, sim: &SimRecord) -> Result<ImeiManagement, StoreError> {
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

    /// Charges `sim` for the month of `now` unless it already owes it.
    fn stage_charge(
        &self,
        batch: &mut Batch,
        sim: &SimRecord,
        now: Millis,
        first_lock_at: Millis,
        profile: Option<&ProfileRecord>,
    ) -> Result<(), StoreError> {
        let month = month_of(now);
        if self.store.charge(&month, &sim.imsi)?.is_some() {
            return Ok(());
        }
        let fee = match (profile, &sim.profile) {
            (Some(p), _) => p.lock_fee.clone(),
            (None, Some(name)) => self.store.profile(name)?.and_then(|p| p.lock_fee),
            (None, None) => None,
        };
        let amount = fee.unwrap_or_else(|| self.billing.lock_fee.clone());
        batch.push(Op::PutCharge(Charge {
            imsi: sim.imsi,
            month,
            amount,
            currency: self.billing.currency.clone(),
            first_lock_at,
        }));
        Ok(())
    }

    /// A profile's value changed: events and charges for every SIM that follows it.
    fn fan_out_profile(
        &self,
        profile: &ProfileRecord,
        old_value: ImeiManagement,
        now: Millis,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut after: Option<Imsi> = None;
        loop {
            let imsis = self
                .store
                .sims_of_profile(&profile.name, after.as_ref(), self.chunk())?;
            let Some(last) = imsis.last().copied() else {
                return Ok(());
            };
            let mut b = Batch::new();
            for imsi in &imsis {
                let Some(sim) = self.store.sim(imsi)? else {
                    continue;
                };
                if sim.value.is_some() {
                    continue; // the SIM's own value overrides the profile
                }
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
            self.commit(b)?;
            after = Some(last);
        }
    }

    /// Writes carry-over charges for every month boundary passed since the last run.
    fn roll_months(&self) -> Result<(), ProvisioningError> {
        let now_month = month_of(self.clock.now_ms());
        let raw = self.store.meta(BILLED_MONTH_KEY)?;
        let billed = raw.clone().and_then(|v| String::from_utf8(v).ok());
        let Some(mut billed) = billed else {
            let mut b = Batch::new();
            b.push(Op::ExpectMeta {
                key: BILLED_MONTH_KEY.into(),
                value: None,
            });
            b.push(Op::PutMeta {
                key: BILLED_MONTH_KEY.into(),
                value: now_month.into_bytes(),
            });
            self.commit(b)?;
            return Ok(());
        };
        while billed < now_month {
            let Some((y, m)) = parse_month(&billed) else {
                break;
            };
            let (ny, nm) = next_month(y, m);
            let start = month_start(ny, nm);
            let charged = self.charge_locked_sims(start)?;
            let previous = std::mem::replace(&mut billed, month_of(start));
            let mut b = Batch::new();
            // Done once cluster-wide: a second processor's roll-over of the same month loses.
            b.push(Op::ExpectMeta {
                key: BILLED_MONTH_KEY.into(),
                value: Some(previous.into_bytes()),
            });
            b.push(Op::PutMeta {
                key: BILLED_MONTH_KEY.into(),
                value: billed.clone().into_bytes(),
            });
            self.commit(b)?;
            tracing::info!(month = %billed, sims = charged, "billing month rolled over");
        }
        Ok(())
    }

    /// Charges every SIM whose effective value is `lock` for the month starting at `start`.
    fn charge_locked_sims(&self, start: Millis) -> Result<u64, StoreError> {
        let mut after: Option<Imsi> = None;
        let mut charged = 0;
        loop {
            let sims = self.store.scan_sims("", after.as_ref(), self.chunk())?;
            let Some(last) = sims.last().map(|s| s.imsi) else {
                return Ok(charged);
            };
            let mut b = Batch::new();
            for sim in &sims {
                if self.effective(sim)? == ImeiManagement::Lock {
                    self.stage_charge(&mut b, sim, start, start, None)?;
                    charged += 1;
                }
            }
            self.commit(b)?;
            after = Some(last);
        }
    }
}

enum ApplyError {
    /// The request itself cannot be applied: it is marked failed with this reason.
    Rejected(String),
    Store(StoreError),
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
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

fn op_name(op: &Operation) -> &'static str {
    match op {
        Operation::UpsertSim { .. } => "upsert_sim",
        Operation::SetSimValue { .. } => "set_sim_value",
        Operation::Reset { .. } => "reset",
        Operation::DeleteSim { .. } => "delete_sim",
        Operation::UpsertProfile { .. } => "upsert_profile",
        Operation::Import { .. } => "import",
    }
}

fn read_cursor(store: &(impl LocalRead + ?Sized)) -> Result<u64, StoreError> {
    Ok(store
        .meta(CURSOR_KEY)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map_or(0, u64::from_be_bytes))
}

#[cfg(test)]
#[path = "provisioning_tests.rs"]
mod tests;
