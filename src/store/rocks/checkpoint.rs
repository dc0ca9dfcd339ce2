//! Online checkpoints of the embedded store ([`crate::store::LocalRead::checkpoint`]) and the
//! count of SIM records in a copied data directory.
//!
//! A checkpoint is RocksDB's own: a consistent, point-in-time copy of every column family (SST
//! files hard-linked when the target is on the same file system, copied otherwise; the MANIFEST
//! and the live WAL copied), taken while the daemon keeps serving. Every `WriteBatch` is in it
//! whole or not at all, so a binding and its event, a request and its status, always travel
//! together. Last-seen IMEIs still buffered in memory are written first, so the copy holds
//! everything this node answered before the call.
//!
//! This module does not name backups, write manifests or restore them (see [`crate::backup`]).

use std::path::Path;

use rocksdb::checkpoint::Checkpoint;
use rocksdb::{IteratorMode, Options, DB};

use super::{backend, RocksStore, CF_SIMS};
use crate::store::checkpoint::CheckpointError;
use crate::store::StoreError;

impl RocksStore {
    /// [`crate::store::LocalRead::checkpoint`] of the embedded store.
    pub(super) fn write_checkpoint(&self, dir: &Path) -> Result<u64, CheckpointError> {
        if dir.exists() {
            return Err(CheckpointError::Exists(dir.display().to_string()));
        }
        let inner = &*self.inner;
        inner.flush_seen()?;
        let started = std::time::Instant::now();
        Checkpoint::new(&inner.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(backend)?;
        let sims = count_sims(dir)?;
        tracing::info!(dir = %dir.display(), sims, elapsed_ms = started.elapsed().as_millis() as u64,
            "store checkpoint written");
        Ok(sims)
    }
}

/// How many SIM records the data directory `dir` holds (a checkpoint, or a stopped daemon's
/// directory). Opens it read-only: takes no lock and writes nothing into `dir`.
///
/// # Errors
/// [`StoreError::Backend`] when `dir` is no RocksDB directory of this layout or cannot be read.
pub fn count_sims(dir: &Path) -> Result<u64, StoreError> {
    let opts = Options::default();
    let families = DB::list_cf(&opts, dir).map_err(backend)?;
    let db = DB::open_cf_for_read_only(&opts, dir, &families, false).map_err(backend)?;
    let cf = db.cf_handle(CF_SIMS).ok_or_else(|| {
        StoreError::Backend(format!(
            "{}: column family {CF_SIMS} missing",
            dir.display()
        ))
    })?;
    let mut n = 0u64;
    for item in db.iterator_cf(cf, IteratorMode::Start) {
        item.map_err(backend)?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Imsi;
    use crate::store::rocks::RocksOptions;
    use crate::store::{Batch, Commit, Durability, LocalRead as _, SimRecord};

    fn imsi(i: u32) -> Imsi {
        format!("00101{i:010}").parse().unwrap()
    }

    /// The checkpoint holds every SIM written before it and none written after; it opens as a
    /// store of its own with the same records; a second checkpoint into the same place is
    /// refused.
    #[test]
    fn checkpoint_is_a_point_in_time_copy() {
        let dir = tempfile::tempdir().unwrap();
        let opts = RocksOptions {
            block_cache_mb: 8,
            sim_cache_entries: 16,
        };
        let store = RocksStore::open(&dir.path().join("data"), &opts).unwrap();
        let put = |i: u32| {
            let mut b = Batch::new();
            b.put_sim(SimRecord::new(imsi(i)));
            assert_eq!(
                store.write(b, Durability::Buffered).unwrap(),
                Commit::Committed
            );
        };
        (0..300).for_each(put);
        let cp = dir.path().join("cp");
        assert_eq!(store.checkpoint(&cp).unwrap(), 300);
        (300..400).for_each(put);
        assert!(matches!(
            store.checkpoint(&cp),
            Err(CheckpointError::Exists(_))
        ));
        assert_eq!(count_sims(&cp).unwrap(), 300);
        assert_eq!(count_sims(&dir.path().join("data")).unwrap(), 400);
        let copy = RocksStore::open(&cp, &opts).unwrap();
        assert_eq!(copy.scan_sims("", None, 1000).unwrap().len(), 300);
        assert!(copy.sim(&imsi(299)).unwrap().is_some());
        assert!(copy.sim(&imsi(300)).unwrap().is_none());
    }
}
