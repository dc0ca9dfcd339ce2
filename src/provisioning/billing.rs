//! The billing ledger's writes (SPEC §1.5): a SIM's charge for a month, and the carry-over of
//! every `lock` SIM at each month boundary.
//!
//! Billing needs no history replay: the effective value of a SIM changes only in provisioning,
//! so [`Provisioner::stage_charge`] charges a SIM for the current month whenever a processed
//! request makes its effective value `lock`, and [`Provisioner::roll_months`], at each month
//! boundary (before the first request of the new month, also after downtime), charges every SIM
//! that is `lock` at that moment, with the month's start as its first moment of lock. The
//! ledger key is month + IMSI, so a SIM owes at most one row per month by construction.
//!
//! This module does not decide when a value changes, and does not export anything (the API's
//! billing routes read the ledger).

use time::OffsetDateTime;

use super::bulk::Bulk;
use super::Provisioner;
use crate::context::Imsi;
use crate::store::{
    Batch, Charge, ImeiManagement, Millis, Op, ProfileRecord, SimRecord, StoreError,
};

/// Meta key: the last month (`YYYY-MM`) whose carry-over charges were written.
const BILLED_MONTH_KEY: &str = "billing_month";

/// Fee settings (from `[billing]`).
#[derive(Clone, Debug)]
pub struct BillingSettings {
    pub lock_fee: String,
    pub currency: String,
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

impl Provisioner {
    /// Charges `sim` for the month of `now` unless it already owes it.
    pub(super) fn stage_charge(
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

    /// Writes carry-over charges for every month boundary passed since the last run.
    pub(super) fn roll_months(&self) -> Result<(), StoreError> {
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

    /// Charges every SIM whose effective value is `lock` for the month starting at `start`
    /// (pages of distinct SIMs: several in flight where the store allows it).
    fn charge_locked_sims(&self, start: Millis) -> Result<u64, StoreError> {
        let mut after: Option<Imsi> = None;
        let mut charged = 0;
        let mut bulk = Bulk::new(&*self.store, self.store.max_batches_in_flight());
        loop {
            let sims = self.store.scan_sims("", after.as_ref(), self.chunk())?;
            let Some(last) = sims.last().map(|s| s.imsi) else {
                bulk.finish()?;
                return Ok(charged);
            };
            let mut b = Batch::new();
            let mut locked = 0;
            for sim in &sims {
                if self.effective(sim)? == ImeiManagement::Lock {
                    self.stage_charge(&mut b, sim, start, start, None)?;
                    locked += 1;
                }
            }
            charged += locked as u64;
            bulk.commit(b, locked)?;
            after = Some(last);
        }
    }
}
