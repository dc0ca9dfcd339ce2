//! Backups of the embedded store: named, self-describing copies under `[node] backup_dir`.
//!
//! # Layout
//! `backup_dir/NAME/` is one backup: the store's checkpoint files
//! ([`crate::store::LocalRead::checkpoint`]) plus [`MANIFEST_FILE`], a small JSON [`Manifest`]
//! (format and its version, name, creation time, SIM count, daemon version). NAME is the UTC
//! time it was taken, `20261207T203000Z`, with `-2`, `-3`, ... for more backups in the same
//! second. A backup is written as `backup_dir/.NAME.partial` and renamed into place once its
//! manifest is on disk: a directory without the leading dot is always complete.
//!
//! [`create`] takes one (one at a time per process), [`list`] lists them newest first,
//! [`restore`] (daemon stopped) puts one in place of the data directory.
//!
//! This module does not decide whether a store can be backed up (the store does, refusing in
//! cluster mode), serves no HTTP and never deletes a backup.

#[cfg(feature = "rocksdb")]
pub mod restore;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::store::checkpoint::CheckpointError;
use crate::store::LocalRead;

/// The manifest's file name inside a backup directory.
pub const MANIFEST_FILE: &str = "imei-lockd-backup.json";
/// [`Manifest::format`] of every backup.
pub const FORMAT: &str = "imei-lockd-backup";
/// The backup format this release writes and restores.
pub const FORMAT_VERSION: u32 = 1;

/// What [`MANIFEST_FILE`] says about a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    pub format_version: u32,
    /// The backup's directory name.
    pub name: String,
    /// When it was taken (RFC 3339, UTC).
    pub created_at: String,
    /// SIM records in it.
    pub sims: u64,
    /// The version of the daemon that took it.
    pub daemon_version: String,
    /// The store's record encoding version ([`crate::store::encoding::CURRENT_VERSION`]).
    pub schema_version: u8,
}

/// One backup, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Backup {
    pub name: String,
    /// Its directory (absolute when the backup directory could be resolved).
    pub path: String,
    pub created_at: String,
    pub sims: u64,
}

/// Why a backup was not taken or the backups not listed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The store refused or failed ([`CheckpointError::Unsupported`] in cluster mode).
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("node.backup_dir: {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Serialises [`create`]: one checkpoint at a time, and no two backups choose one name.
static CREATING: parking_lot::Mutex<()> = parking_lot::const_mutex(());

/// `20261207T203000Z`: the base of a backup's name.
pub fn stamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A name's ordering key: its base and its suffix (1 without one).
fn order_key(name: &str) -> (&str, u32) {
    match name.split_once('-') {
        Some((base, n)) => (base, n.parse().unwrap_or(0)),
        None => (name, 1),
    }
}

/// Takes a backup of `store` into a new directory under `backup_dir` (created if missing),
/// named after `now`. Blocking; one at a time.
///
/// # Errors
/// [`BackupError::Checkpoint`] when the store refuses or fails, [`BackupError::Io`] naming the
/// path the file system refused. Nothing is left under a backup's name on error.
pub fn create(
    store: &dyn LocalRead,
    backup_dir: &Path,
    now: OffsetDateTime,
) -> Result<Backup, BackupError> {
    let _one = CREATING.lock();
    // Whole seconds: the name and `created_at` say the same time.
    let now = now.replace_nanosecond(0).unwrap_or(now);
    std::fs::create_dir_all(backup_dir).map_err(io(backup_dir))?;
    let base = stamp(now);
    let name = (1u32..)
        .map(|n| {
            if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|n| !backup_dir.join(n).exists() && !backup_dir.join(partial_name(n)).exists())
        .unwrap_or_else(|| base.clone());
    let partial = backup_dir.join(partial_name(&name));
    let result = write_backup(store, &partial, &name, now);
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            if partial.exists() {
                if let Err(rm) = std::fs::remove_dir_all(&partial) {
                    tracing::warn!(dir = %partial.display(), error = %rm,
                        "cannot remove an incomplete backup");
                }
            }
            return Err(e);
        }
    };
    let dir = backup_dir.join(&name);
    std::fs::rename(&partial, &dir).map_err(io(&dir))?;
    sync_dir(backup_dir).map_err(io(backup_dir))?;
    Ok(backup_of(&dir, manifest))
}

fn partial_name(name: &str) -> String {
    format!(".{name}.partial")
}

/// The checkpoint and its manifest, in `partial`.
fn write_backup(
    store: &dyn LocalRead,
    partial: &Path,
    name: &str,
    now: OffsetDateTime,
) -> Result<Manifest, BackupError> {
    let sims = store.checkpoint(partial)?;
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        name: name.to_owned(),
        created_at: now.format(&Rfc3339).unwrap_or_default(),
        sims,
        daemon_version: env!("CARGO_PKG_VERSION").into(),
        schema_version: crate::store::encoding::CURRENT_VERSION,
    };
    let path = partial.join(MANIFEST_FILE);
    let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    write_synced(&path, &text).map_err(io(&path))?;
    sync_dir(partial).map_err(io(partial))?;
    Ok(manifest)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Makes a directory's entries (a rename, a new file) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn backup_of(dir: &Path, m: Manifest) -> Backup {
    let path = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Backup {
        name: m.name,
        path: path.display().to_string(),
        created_at: m.created_at,
        sims: m.sims,
    }
}

/// Reads `dir`'s manifest if it is a backup of this format (any version); `None` otherwise.
fn manifest_of(dir: &Path) -> Option<Manifest> {
    let text = std::fs::read(dir.join(MANIFEST_FILE)).ok()?;
    let m: Manifest = serde_json::from_slice(&text).ok()?;
    (m.format == FORMAT).then_some(m)
}

/// The backups under `backup_dir`, newest first (none when it does not exist yet). Directories
/// without a readable manifest (and partial ones) are skipped.
///
/// # Errors
/// [`BackupError::Io`] when `backup_dir` exists but cannot be read.
pub fn list(backup_dir: &Path) -> Result<Vec<Backup>, BackupError> {
    let entries = match std::fs::read_dir(backup_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(backup_dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(backup_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let dir = entry.path();
        match manifest_of(&dir) {
            Some(m) if m.name == name => found.push(backup_of(&dir, m)),
            _ => tracing::debug!(dir = %dir.display(), "not a backup: skipped in the list"),
        }
    }
    found.sort_by(|a, b| order_key(&b.name).cmp(&order_key(&a.name)));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemStore;

    #[test]
    fn names_are_utc_stamps_ordered_with_their_suffix() {
        let t = time::macros::datetime!(2026-12-07 20:30:00 +01:00);
        assert_eq!(stamp(t), "20261207T193000Z");
        let mut names = vec![
            "20261207T193000Z-10",
            "20261207T193000Z",
            "20261207T193001Z",
            "20261207T193000Z-2",
        ];
        names.sort_by(|a, b| order_key(b).cmp(&order_key(a)));
        assert_eq!(
            names,
            [
                "20261207T193001Z",
                "20261207T193000Z-10",
                "20261207T193000Z-2",
                "20261207T193000Z"
            ]
        );
    }

    /// A store that has no files of its own refuses, and nothing is left behind.
    #[test]
    fn a_refusing_store_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemStore::default();
        let err = create(&store, dir.path(), OffsetDateTime::now_utc()).unwrap_err();
        assert!(matches!(
            err,
            BackupError::Checkpoint(CheckpointError::Unsupported(_))
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(list(dir.path()).unwrap().is_empty());
        assert!(list(&dir.path().join("absent")).unwrap().is_empty());
    }
}
