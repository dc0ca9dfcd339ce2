//! Online copies of a node's own store files: what [`super::LocalRead::checkpoint`] answers.
//!
//! The embedded store writes a RocksDB checkpoint (a consistent copy, SST files hard-linked
//! where the file system allows); a store that keeps no authoritative files of its own (the
//! cluster store's cache of etcd, the in-memory twin) refuses with [`CheckpointError::Unsupported`]
//! and says what to use instead.
//!
//! This module only names the outcomes; naming, manifests and restoring backups are
//! [`crate::backup`]'s.

use super::StoreError;

/// Why a checkpoint was not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// This store cannot be backed up from here; the text says what to use instead.
    #[error("{0}")]
    Unsupported(String),
    /// The target directory exists already (a checkpoint never overwrites).
    #[error("{0}: exists already")]
    Exists(String),
    /// The store or the file system failed while writing or checking the copy.
    #[error(transparent)]
    Store(#[from] StoreError),
}
