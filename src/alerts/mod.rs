//! Alert delivery (SPEC §1.6): events that webhooks want are written by the engine into a durable
//! outbox in the same batch as the event itself; this task POSTs them as JSON (`http://` or
//! `https://`, optionally signed, see [`payload`]), retries each webhook's failures with
//! exponential backoff and jitter, and sends at most one alert per SIM per webhook per
//! `min_interval_s` (the last send time is stored, so the window holds across restarts).
//!
//! Webhooks do not wait for each other: every webhook has its own deliveries in flight (at
//! most `max_in_flight`), its own retry schedule and its own [`circuit`] (after
//! `circuit_failures` consecutive failures nothing is sent to it for `circuit_cooldown_s`, then
//! one probe). A dead receiver therefore costs the others nothing. The outbox entry records
//! which webhooks have the alert (`done`); it is deleted once every webhook that wants it has
//! it, was inside its window, or gave up after [`MAX_ATTEMPTS`].
//!
//! Delivery is at least once: a crash after the POST and before its bookkeeping resends it,
//! with the same `id` (derived from the outbox entry), so a receiver can drop duplicates.
//! Retry schedules and circuits live in memory: after a restart (or a singleton move) an entry
//! is next tried at the time its entry records, and circuits start closed.
//!
//! Each pass reads the oldest entries of the outbox: the *parked* ones at its head (entries
//! that only webhooks whose circuit is not closed still want: nothing can go out for them
//! before a probe succeeds) and [`READ_AHEAD`] more, so the alerts of healthy webhooks behind
//! a dead webhook's backlog go out at once. The store has no read from a position of the
//! outbox, so the parked head is read again each pass; it is counted up to [`MAX_PARKED`]
//! entries. Beyond that a dead webhook's backlog holds back newer alerts for the others until
//! its entries are given up (a store read after an outbox id would lift this).

mod circuit;
mod hook;
pub mod payload;

use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::context::Imsi;
use crate::engine::Clock;
use crate::store::{Batch, Durability, Millis, Op, OutboxEntry, Singleton, Store, StoreError};

pub use circuit::{Circuit, State as CircuitState};
pub use hook::{validate_webhook, webhook_name, Webhook, WebhookError, OUTCOMES};

/// Give up on an alert for one webhook after this many failed attempts (about a day with the
/// backoff cap).
pub const MAX_ATTEMPTS: u32 = 300;
/// Longest pause between two attempts.
const MAX_BACKOFF_MS: i64 = 300_000;
/// Outbox entries read per pass (oldest first) past the parked head.
pub const READ_AHEAD: usize = 1_024;
/// Parked entries (wanted only by webhooks whose circuit is not closed) read past at most at
/// the head of the outbox each pass.
pub const MAX_PARKED: usize = 15 * READ_AHEAD;
/// Time between two passes.
const TICK: Duration = Duration::from_millis(250);

fn last_sent_key(url: &str, imsi: &str) -> String {
    format!("alert_last/{url}/{imsi}")
}

/// `result` of `imei_lockd_alerts_total`: `dropped` is an alert given up for a webhook after
/// [`MAX_ATTEMPTS`] failed attempts.
pub const RESULTS: [&str; 4] = ["delivered", "failed", "suppressed", "dropped"];

/// The retry schedule of one (webhook, outbox entry).
#[derive(Clone, Copy, Debug)]
struct Retry {
    attempts: u32,
    next_at: Millis,
}

/// What the delivery loop keeps per webhook.
struct HookState {
    circuit: Circuit,
    /// Outbox ids with a delivery out to this webhook (at most `max_in_flight`).
    out: HashSet<u64>,
    /// Outbox id → schedule; removed when the webhook is done with the entry.
    retry: BTreeMap<u64, Retry>,
    /// SIMs with a delivery out to this webhook: their later alerts wait for it, so the
    /// `min_interval_s` window sees the first one delivered.
    busy_sims: HashSet<Imsi>,
}

/// What one POST came back with.
struct Outcome {
    hook: usize,
    id: u64,
    imsi: Imsi,
    result: Result<(), (&'static str, String)>,
}

/// The outbox worker.
pub struct AlertDelivery {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    webhooks: Vec<Arc<Webhook>>,
    states: Vec<HookState>,
    /// The entries of the last read (and those with a delivery out), by outbox id.
    entries: BTreeMap<u64, OutboxEntry>,
    flying: JoinSet<Outcome>,
    jitter: std::collections::hash_map::RandomState,
    /// Parked entries at the head of the last read (see the module doc): the next read takes
    /// that many more than [`READ_AHEAD`].
    parked: usize,
}

impl AlertDelivery {
    /// Also registers the alert series at 0 (every result, the outbox depth, each webhook's
    /// outcomes and circuit state).
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, webhooks: Vec<Webhook>) -> Self {
        for result in RESULTS {
            metrics::counter!("imei_lockd_alerts_total", "result" => result).increment(0);
        }
        metrics::gauge!("imei_lockd_alert_outbox_depth").increment(0.0);
        let states = webhooks
            .iter()
            .map(|w| {
                for outcome in OUTCOMES {
                    metrics::counter!("imei_lockd_alert_deliveries_total",
                        "webhook" => w.name.clone(), "outcome" => outcome)
                    .increment(0);
                }
                metrics::gauge!("imei_lockd_alert_circuit_state", "webhook" => w.name.clone())
                    .set(0.0);
                HookState {
                    circuit: Circuit::new(w.circuit_failures, w.circuit_cooldown_ms),
                    out: HashSet::new(),
                    retry: BTreeMap::new(),
                    busy_sims: HashSet::new(),
                }
            })
            .collect();
        Self {
            store,
            clock,
            webhooks: webhooks.into_iter().map(Arc::new).collect(),
            states,
            entries: BTreeMap::new(),
            flying: JoinSet::new(),
            jitter: std::collections::hash_map::RandomState::new(),
            parked: 0,
        }
    }

    /// Delivers until `stop` changes. Deliveries still out then are abandoned: their entries
    /// stay in the outbox and go out again (same id) at the next start.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // One node at a time delivers from the (cluster-wide) outbox.
                    if self.store.holds(Singleton::Alerts) {
                        if let Err(e) = self.dispatch().await {
                            tracing::warn!(error = %e, "alert outbox pass failed");
                        }
                    }
                }
                Some(done) = self.flying.join_next(), if !self.flying.is_empty() => {
                    let Ok(outcome) = done else { continue };
                    if let Err(e) = self.settle(outcome).await {
                        tracing::warn!(error = %e, "alert bookkeeping failed; the alert is resent");
                    }
                }
                _ = stop.changed() => {
                    self.flying.abort_all();
                    return;
                }
            }
        }
    }

    /// Whether `hook` still owes `entry` a delivery.
    fn wants(hook: &Webhook, entry: &OutboxEntry) -> bool {
        hook.events.contains(&entry.event.kind) && !entry.done.contains(&hook.url)
    }

    /// Reads the outbox and starts every delivery that is due, allowed by its webhook's circuit
    /// and fits in its webhook's `max_in_flight`.
    async fn dispatch(&mut self) -> Result<(), StoreError> {
        let read = self
            .store
            .outbox(self.parked.min(MAX_PARKED) + READ_AHEAD)?;
        // As before the parked head was read past (the metric's HELP says so): at most 1024.
        metrics::gauge!("imei_lockd_alert_outbox_depth").set(read.len().min(READ_AHEAD) as f64);
        let mut fresh: BTreeMap<u64, OutboxEntry> = read.into_iter().collect();
        // Keep entries with a delivery out even if this read did not reach them.
        let mut old = std::mem::take(&mut self.entries);
        for st in &self.states {
            for id in &st.out {
                if let (false, Some(e)) = (fresh.contains_key(id), old.remove(id)) {
                    fresh.insert(*id, e);
                }
            }
        }
        self.entries = fresh;
        // Schedules of entries gone (or not read this time: they start again from the time
        // their entry records).
        for st in &mut self.states {
            let entries = &self.entries;
            st.retry.retain(|id, _| entries.contains_key(id));
        }
        let now = self.clock.now_ms();
        let ids: Vec<u64> = self.entries.keys().copied().collect();
        let webhooks = self.webhooks.clone();
        for id in ids {
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            // Parked for every webhook that wants it (its circuit open, or the probe out):
            // nothing to do this pass.
            if self.blocked_for_all(entry, now) {
                continue;
            }
            let entry = entry.clone();
            let mut settled = false;
            for (h, hook) in webhooks.iter().enumerate() {
                if !Self::wants(hook, &entry) {
                    continue;
                }
                settled |= self.consider(h, hook, id, &entry, now)?;
            }
            // Nobody wants it (any more): a webhook removed from the configuration, or every
            // remaining one was inside its window.
            let entry_now = self.entries.get(&id).cloned();
            let pending = entry_now
                .as_ref()
                .is_some_and(|e| self.webhooks.iter().any(|w| Self::wants(w, e)));
            if settled || !pending {
                if let Some(e) = entry_now {
                    self.write_back(id, e).await?;
                }
            }
        }
        self.parked = self.parked_head();
        Ok(())
    }

    /// Whether some webhook still wants `entry` and every one that does may send nothing now.
    fn blocked_for_all(&self, entry: &OutboxEntry, now: Millis) -> bool {
        let mut wanting = self
            .webhooks
            .iter()
            .zip(&self.states)
            .filter(|(w, _)| Self::wants(w, entry))
            .peekable();
        wanting.peek().is_some() && wanting.all(|(_, st)| st.circuit.is_blocked(now))
    }

    /// How many entries at the head of the outbox (as last read) only webhooks whose circuit
    /// is not closed still want: their backlog, which must not hide the entries behind it.
    fn parked_head(&self) -> usize {
        self.entries
            .values()
            .take_while(|e| {
                self.webhooks
                    .iter()
                    .zip(&self.states)
                    .filter(|(w, _)| Self::wants(w, e))
                    .all(|(_, st)| !matches!(st.circuit.state(), CircuitState::Closed { .. }))
            })
            .count()
    }

    /// One (webhook, entry): suppresses it inside the window (returns `true`: the entry
    /// changed), starts its delivery, or leaves it for a later pass.
    fn consider(
        &mut self,
        h: usize,
        hook: &Arc<Webhook>,
        id: u64,
        entry: &OutboxEntry,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let Some(st) = self.states.get_mut(h) else {
            return Ok(false);
        };
        let imsi = entry.event.imsi;
        let retry = *st.retry.entry(id).or_insert(Retry {
            attempts: entry.attempts,
            next_at: entry.next_attempt_at,
        });
        if st.circuit.is_blocked(now)
            || st.busy_sims.contains(&imsi)
            || st.out.contains(&id)
            || retry.next_at > now
            || st.out.len() >= hook.max_in_flight
        {
            return Ok(false);
        }
        let key = last_sent_key(&hook.url, imsi.as_str());
        let last: Option<Millis> = self
            .store
            .meta(&key)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(i64::from_be_bytes);
        if last.is_some_and(|t| now - t < hook.min_interval_ms) {
            metrics::counter!("imei_lockd_alerts_total", "result" => "suppressed").increment(1);
            tracing::debug!(%imsi, webhook = %hook.name, "alert suppressed inside its window");
            st.retry.remove(&id);
            if let Some(e) = self.entries.get_mut(&id) {
                e.done.push(hook.url.clone());
            }
            return Ok(true);
        }
        let (go, changed) = st.circuit.try_send(now);
        if let Some(s) = changed {
            circuit_changed(hook, s);
        }
        if !go {
            return Ok(false);
        }
        st.out.insert(id);
        st.busy_sims.insert(imsi);
        let alert_id = payload::alert_id(id, entry);
        let body = payload::body(id, entry);
        let hook = hook.clone();
        self.flying.spawn(async move {
            let result = hook.post(&alert_id, body).await;
            Outcome {
                hook: h,
                id,
                imsi,
                result,
            }
        });
        Ok(false)
    }

    /// Records what a delivery came back with: the circuit, the schedule, and the entry.
    async fn settle(&mut self, o: Outcome) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let (Some(hook), Some(st)) = (
            self.webhooks.get(o.hook).cloned(),
            self.states.get_mut(o.hook),
        ) else {
            return Ok(());
        };
        st.out.remove(&o.id);
        st.busy_sims.remove(&o.imsi);
        let Some(mut entry) = self.entries.get(&o.id).cloned() else {
            return Ok(());
        };
        let mut batch = Batch::new();
        match o.result {
            Ok(()) => {
                if let Some(s) = st.circuit.on_success() {
                    circuit_changed(&hook, s);
                }
                st.retry.remove(&o.id);
                metrics::counter!("imei_lockd_alerts_total", "result" => "delivered").increment(1);
                metrics::counter!("imei_lockd_alert_deliveries_total",
                    "webhook" => hook.name.clone(), "outcome" => "delivered")
                .increment(1);
                tracing::info!(imsi = %o.imsi, event = %entry.event.kind, webhook = %hook.name,
                    id = %payload::alert_id(o.id, &entry), "alert delivered");
                entry.done.push(hook.url.clone());
                batch.push(Op::PutMeta {
                    key: last_sent_key(&hook.url, o.imsi.as_str()),
                    value: now.to_be_bytes().to_vec(),
                });
            }
            Err((outcome, message)) => {
                if let Some(s) = st.circuit.on_failure(now) {
                    circuit_changed(&hook, s);
                }
                metrics::counter!("imei_lockd_alerts_total", "result" => "failed").increment(1);
                metrics::counter!("imei_lockd_alert_deliveries_total",
                    "webhook" => hook.name.clone(), "outcome" => outcome)
                .increment(1);
                let retry = st.retry.entry(o.id).or_insert(Retry {
                    attempts: entry.attempts,
                    next_at: now,
                });
                retry.attempts += 1;
                if retry.attempts >= MAX_ATTEMPTS {
                    metrics::counter!("imei_lockd_alerts_total", "result" => "dropped")
                        .increment(1);
                    tracing::error!(imsi = %o.imsi, webhook = %hook.name, error = %message,
                        "alert dropped after {MAX_ATTEMPTS} attempts");
                    st.retry.remove(&o.id);
                    entry.done.push(hook.url.clone());
                } else {
                    let random = self.jitter.hash_one((o.id, retry.attempts, now));
                    retry.next_at =
                        now + payload::backoff_ms(retry.attempts, MAX_BACKOFF_MS, random);
                    tracing::warn!(imsi = %o.imsi, webhook = %hook.name, outcome, error = %message,
                        attempt = retry.attempts, retry_in_ms = retry.next_at - now,
                        "alert delivery failed; will retry");
                    // Durable for a restart: the furthest any webhook has got.
                    entry.attempts = entry.attempts.max(retry.attempts);
                    entry.next_attempt_at = retry.next_at;
                }
            }
        }
        self.entries.insert(o.id, entry.clone());
        self.write_back_with(o.id, entry, batch).await
    }

    async fn write_back(&mut self, id: u64, entry: OutboxEntry) -> Result<(), StoreError> {
        self.write_back_with(id, entry, Batch::new()).await
    }

    /// Stores `entry` (or deletes it when no webhook wants it any more) with `batch`.
    async fn write_back_with(
        &mut self,
        id: u64,
        entry: OutboxEntry,
        mut batch: Batch,
    ) -> Result<(), StoreError> {
        // A delivery still out means its webhook has not got it: it still wants it.
        let pending = self.webhooks.iter().any(|w| Self::wants(w, &entry));
        if pending {
            batch.push(Op::PutOutbox { id, entry });
        } else {
            batch.push(Op::DeleteOutbox { id });
            self.entries.remove(&id);
            for st in &mut self.states {
                st.retry.remove(&id);
            }
        }
        // At least once: a lost compare cannot happen (no SIM, no expectation in it).
        self.store.commit(batch, Durability::Buffered).await?;
        Ok(())
    }
}

/// Logs and exports a circuit transition.
fn circuit_changed(hook: &Webhook, s: CircuitState) {
    metrics::gauge!("imei_lockd_alert_circuit_state", "webhook" => hook.name.clone())
        .set(s.gauge());
    match s {
        CircuitState::Open { .. } => tracing::warn!(webhook = %hook.name,
            cool_down_ms = hook.circuit_cooldown_ms,
            "webhook circuit open: nothing is sent to it until the cool-down ends"),
        _ => tracing::info!(webhook = %hook.name, state = s.name(), "webhook circuit changed"),
    }
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;
