//! Does this node's cache equal etcd? The cache's fingerprint is taken from one RocksDB snapshot
//! together with the etcd revision it has applied; etcd is then read at that very revision into
//! a scratch store beside the cache (the same parsing and applying a rebuild uses), and the two
//! fingerprints are compared family by family.
//!
//! An operator's and a test's check (`POST /v1/cluster/verify`); sessions never wait for it. It
//! repairs nothing: a cache that differs is rebuilt by restarting the node with an emptied
//! `data_dir`, and a difference is a bug to report.

use std::time::Instant;

use serde::Serialize;

use super::follow::read_at;
use super::{Shared, POSITION_KEY};
use crate::store::rocks::{FamilyPrint, RocksOptions, RocksStore};
use crate::store::StoreError;

/// One family compared.
#[derive(Clone, Debug, Serialize)]
pub struct FamilyCheck {
    pub name: &'static str,
    pub cache_records: u64,
    pub etcd_records: u64,
    pub equal: bool,
}

/// What [`verify`] found.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// The etcd revision both sides were read at.
    pub revision: u64,
    pub equal: bool,
    pub families: Vec<FamilyCheck>,
    pub elapsed_ms: u64,
}

/// Compares the cache with a read of etcd at the revision the cache has applied.
///
/// # Errors
/// The cache is being rebuilt (no revision to compare at), etcd cannot be read at that
/// revision (compacted meanwhile: try again), or the scratch store cannot be written.
pub(super) async fn verify(shared: &Shared) -> Result<Verification, StoreError> {
    let started = Instant::now();
    let cache = shared.cache.fingerprint(POSITION_KEY)?;
    if cache.position == 0 {
        return Err(StoreError::Backend(
            "the cache is being rebuilt; nothing to compare yet".into(),
        ));
    }
    // Inside the cache's directory (RocksDB ignores a subdirectory; the directory is the one
    // the node may write to under systemd's sandbox); removed before and after.
    let scratch_dir = shared.cache.path().join("verify-scratch");
    let _ = std::fs::remove_dir_all(&scratch_dir);
    let scratch_opts = RocksOptions {
        block_cache_mb: 8,
        sim_cache_entries: 0,
    };
    let result = async {
        let scratch = RocksStore::open(&scratch_dir, &scratch_opts)?;
        let read = read_at(shared, cache.position, &scratch).await?;
        scratch.apply_changes(Vec::new(), POSITION_KEY, read.revision)?;
        scratch.fingerprint(POSITION_KEY)
    }
    .await;
    let _ = std::fs::remove_dir_all(&scratch_dir);
    let etcd = result?;
    let find = |name: &str, fs: &[FamilyPrint]| fs.iter().find(|f| f.name == name).cloned();
    let families: Vec<FamilyCheck> = cache
        .families
        .iter()
        .map(|c| {
            let e = find(c.name, &etcd.families);
            FamilyCheck {
                name: c.name,
                cache_records: c.records,
                etcd_records: e.as_ref().map_or(0, |e| e.records),
                equal: e.as_ref() == Some(c),
            }
        })
        .collect();
    let equal = families.iter().all(|f| f.equal) && etcd.position == cache.position;
    let v = Verification {
        revision: cache.position,
        equal,
        families,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    metrics::counter!("imei_lockd_cache_verifications_total",
        "result" => if equal { "equal" } else { "different" })
    .increment(1);
    if equal {
        tracing::info!(
            revision = v.revision,
            elapsed_ms = v.elapsed_ms,
            "cache equals etcd"
        );
    } else {
        tracing::error!(revision = v.revision, families = ?v.families,
            "cache differs from etcd at the same revision");
    }
    Ok(v)
}
