//! The billing pass: the rows of every month strictly before the cutoff month (the current
//! month, UTC, minus `billing_months`) go, oldest month first, a batch at a time. With 36
//! months in December 2026 the cutoff is 2023-12: 2023-11 and older go, 2023-12 stays.
//!
//! The current month and the ones within the retention are never touched, so the month
//! roll-over and the billing export are not affected by a pass.

use crate::provisioning::{month_of, parse_month};
use crate::store::{Millis, Op, Store, StoreError};

use super::{count, delete};

/// The first month kept (`YYYY-MM`): the month of `now` minus `months`.
pub fn cutoff_month(now: Millis, months: u32) -> String {
    let current = month_of(now);
    let (y, m) = parse_month(&current).unwrap_or((1970, 1));
    let index = i64::from(y) * 12 + i64::from(m) - 1 - i64::from(months);
    let (year, month) = (index.div_euclid(12), index.rem_euclid(12) + 1);
    format!("{:04}-{month:02}", year.max(0))
}

/// Rows of `month`, counted a page at a time.
fn rows_of(store: &dyn Store, month: &str, page: usize) -> Result<u64, StoreError> {
    let mut n = 0u64;
    let mut after = None;
    loop {
        let rows = store.charges_page(month, after.as_ref(), page)?;
        let Some(last) = rows.last() else {
            return Ok(n);
        };
        after = Some(last.imsi);
        n += rows.len() as u64;
    }
}

/// Deletes the rows of every month before `cutoff`; returns how many.
///
/// # Errors
/// Store errors (what was deleted before stays deleted), or a month whose rows do not go.
pub(super) async fn expire(store: &dyn Store, cutoff: &str) -> Result<u64, StoreError> {
    let per_batch = store.max_batch_sims().max(1);
    let mut deleted = 0u64;
    while let Some(month) = store.oldest_charge_month()? {
        if month.as_str() >= cutoff {
            break;
        }
        // A store may delete more rows of the month than a batch names (etcd: a bundle
        // whole): counted per batch, and what the month held beyond that at its end.
        let held = rows_of(store, &month, per_batch)?;
        let mut counted = 0u64;
        // Each committed batch deletes at least one row (etcd: its rows' own keys, or a
        // bundle, which need not hold the page's rows): more rounds than rows is a store that
        // does not delete.
        let mut rounds = 0u64;
        loop {
            let page = store.charges_page(&month, None, per_batch)?;
            if page.is_empty() {
                break;
            }
            rounds += 1;
            if rounds > held.saturating_add(1) {
                return Err(StoreError::Backend(format!(
                    "billing rows of {month} are not deleted ({rounds} rounds for {held} rows)"
                )));
            }
            let n = page.len() as u64;
            let ops = page
                .into_iter()
                .map(|c| Op::DeleteCharge {
                    month: c.month,
                    imsi: c.imsi,
                })
                .collect();
            if delete(store, ops).await? {
                let n = n.min(held.saturating_sub(counted));
                counted += n;
                count("billing", n);
            }
        }
        let rest = held.saturating_sub(counted);
        count("billing", rest);
        deleted += held;
        tracing::debug!(%month, rows = held, "billing month deleted");
    }
    Ok(deleted)
}
