//! Retention of billing rows on etcd: which charge bundles a batch that deletes a month's rows
//! takes with it. The cache does not know which bundle a row came in, so the keys are read
//! from etcd, a few at a time (every row of such a month goes, so a bundle may go whole).
//!
//! This module only reads keys; the ledger writes the deletions with the batch.

use std::time::Instant;

use etcd_client::GetOptions;

use super::layout::Layout;
use super::{etcd_err, observe, unsent, Shared};
use crate::store::{Batch, Op, StoreError};

/// Charge bundles deleted by one retention batch, at most: each reaches every node's watch
/// with its previous value (up to `max_txn_ops` rows), which must stay well under the gRPC
/// client's 4 MiB message limit.
pub(super) const CHARGE_BUNDLES_PER_TXN: i64 = 4;

impl Shared {
    /// For a batch that deletes billing rows (retention, whole months): the keys of up to
    /// [`CHARGE_BUNDLES_PER_TXN`] charge bundles of each month it deletes rows of (read from
    /// etcd: the cache does not know which bundle a row came in). Every row of such a month
    /// goes, so a bundle may go whole.
    pub(super) async fn charge_bundles_to_delete(
        &self,
        batch: &Batch,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let months: std::collections::BTreeSet<&str> = batch
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::DeleteCharge { month, .. } => Some(month.as_str()),
                _ => None,
            })
            .collect();
        let mut keys = Vec::new();
        // What the transaction limit leaves beside the batch's own writes.
        let room = self.settings.max_txn_ops.saturating_sub(batch.ops.len()) / months.len().max(1);
        let limit = i64::try_from(room)
            .unwrap_or(i64::MAX)
            .min(CHARGE_BUNDLES_PER_TXN);
        if limit == 0 {
            return Ok(keys);
        }
        let mut kv = self.client.kv_client();
        for month in months {
            let prefix = self.layout.charge_bundles(month);
            let opts = GetOptions::new()
                .with_range(Layout::range_end(&prefix))
                .with_keys_only()
                .with_limit(limit);
            let started = Instant::now();
            let got =
                unsent::get(&mut kv, &prefix, Some(opts), self.settings.request_timeout).await;
            observe("get", started, got.is_ok());
            keys.extend(
                got.map_err(etcd_err)?
                    .kvs()
                    .iter()
                    .map(|k| k.key().to_vec()),
            );
        }
        Ok(keys)
    }
}
