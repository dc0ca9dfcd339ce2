//! `imei-lockd restore --config FILE --from DIR`: puts a backup in place of `[node] data_dir`,
//! the daemon stopped.
//!
//! In this order, stopping at the first refusal with nothing changed: DIR must be a backup of
//! [`FORMAT_VERSION`] (its manifest) whose store opens and holds the SIM count its manifest
//! says; the data directory must not be in use (RocksDB's `LOCK` held by a running daemon) and
//! must not contain DIR. Then the backup's files are copied next to the data directory
//! (`<data_dir>.restoring-<stamp>`, each file synced), the current data directory is moved
//! aside to `<data_dir>.before-restore-<stamp>` (never deleted), and the copy is renamed into
//! place. The backup itself is left as it was.
//!
//! This module does not start or stop the daemon and knows nothing of etcd (cluster mode is
//! refused by the caller, which has the configuration).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::{stamp, sync_dir, Manifest, FORMAT, FORMAT_VERSION, MANIFEST_FILE};
use crate::store::rocks::count_sims;

/// Why a restore was refused or failed. Nothing was changed unless the error says so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    #[error("{}: not an imei-lockd backup: {reason}", dir.display())]
    NotABackup { dir: PathBuf, reason: String },
    #[error("{}: backup format version {found}; this release restores version {FORMAT_VERSION}", dir.display())]
    Version { dir: PathBuf, found: u64 },
    #[error("{}: the backup is damaged: {reason}", dir.display())]
    Damaged { dir: PathBuf, reason: String },
    #[error("{}: the backup lies inside node.data_dir {}: copy it elsewhere first", from.display(), data_dir.display())]
    Inside { from: PathBuf, data_dir: PathBuf },
    #[error("node.data_dir {} is in use (RocksDB's LOCK is held): stop imei-lockd first", dir.display())]
    Locked { dir: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl RestoreError {
    /// The exit status for it: 2 for a directory that is no usable backup (the caller's
    /// input), 1 for a data directory in use or a failing file system.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotABackup { .. }
            | Self::Version { .. }
            | Self::Damaged { .. }
            | Self::Inside { .. } => 2,
            Self::Locked { .. } | Self::Io { .. } => 1,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`restore`] did.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    pub data_dir: PathBuf,
    /// Where the data directory that was there went (`None`: there was none).
    pub moved_aside: Option<PathBuf>,
    /// Files and bytes copied.
    pub files: usize,
    pub bytes: u64,
}

/// Reads and checks `dir`'s manifest: a backup of this format and version.
///
/// # Errors
/// [`RestoreError::NotABackup`] or [`RestoreError::Version`], naming `dir`.
pub fn check_backup(dir: &Path) -> Result<Manifest, RestoreError> {
    let not = |reason: String| RestoreError::NotABackup {
        dir: dir.to_path_buf(),
        reason,
    };
    if !dir.is_dir() {
        return Err(not("no such directory".into()));
    }
    let text = std::fs::read(dir.join(MANIFEST_FILE))
        .map_err(|e| not(format!("cannot read its {MANIFEST_FILE} ({e})")))?;
    // Format and version first, so that a newer layout says "version", not "unreadable".
    let raw: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| not(format!("{MANIFEST_FILE} is not JSON ({e})")))?;
    if raw.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(not(format!(
            "{MANIFEST_FILE} has no \"format\": \"{FORMAT}\""
        )));
    }
    match raw
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
    {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(found) => {
            return Err(RestoreError::Version {
                dir: dir.to_path_buf(),
                found,
            })
        }
        None => return Err(not(format!("{MANIFEST_FILE} has no format_version"))),
    }
    let m: Manifest = serde_json::from_value(raw)
        .map_err(|e| not(format!("{MANIFEST_FILE} is incomplete ({e})")))?;
    if !dir.join("CURRENT").is_file() {
        return Err(not("no RocksDB CURRENT file".into()));
    }
    Ok(m)
}

/// Restores the backup `from` into `data_dir` (see the module documentation); `now` names the
/// directories it leaves beside it.
///
/// # Errors
/// [`RestoreError`]: see [`RestoreError::exit_code`]. A failure after the data directory was
/// moved aside names the path at fault; the moved directory stays where it went.
pub fn restore(
    data_dir: &Path,
    from: &Path,
    now: OffsetDateTime,
) -> Result<Restored, RestoreError> {
    let manifest = check_backup(from)?;
    // `./data/` and `./data` are one directory: siblings are named from the normalised path.
    let data_dir: PathBuf = data_dir.components().collect();
    if let (Ok(f), Ok(d)) = (
        std::fs::canonicalize(from),
        std::fs::canonicalize(&data_dir),
    ) {
        if f.starts_with(&d) {
            return Err(RestoreError::Inside {
                from: from.to_path_buf(),
                data_dir,
            });
        }
    }
    if data_dir_locked(&data_dir).map_err(io(&data_dir))? {
        return Err(RestoreError::Locked { dir: data_dir });
    }
    let found = count_sims(from).map_err(|e| RestoreError::Damaged {
        dir: from.to_path_buf(),
        reason: e.to_string(),
    })?;
    if found != manifest.sims {
        return Err(RestoreError::Damaged {
            dir: from.to_path_buf(),
            reason: format!(
                "its store holds {found} SIMs, its manifest says {}",
                manifest.sims
            ),
        });
    }
    let stamp = stamp(now);
    let staging = free_sibling(&data_dir, &format!(".restoring-{stamp}"));
    let (files, bytes) = match copy_files(from, &staging) {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let moved_aside = if data_dir.exists() {
        let aside = free_sibling(&data_dir, &format!(".before-restore-{stamp}"));
        std::fs::rename(&data_dir, &aside).map_err(io(&data_dir))?;
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&staging, &data_dir).map_err(io(&data_dir))?;
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(io(parent))?;
    }
    Ok(Restored {
        manifest,
        data_dir,
        moved_aside,
        files,
        bytes,
    })
}

/// `<dir><suffix>`, or with `-2`, `-3`, ... appended, whichever does not exist yet.
fn free_sibling(dir: &Path, suffix: &str) -> PathBuf {
    let with = |extra: String| {
        let mut s: OsString = dir.as_os_str().to_owned();
        s.push(suffix);
        s.push(extra);
        PathBuf::from(s)
    };
    let first = with(String::new());
    if !first.exists() {
        return first;
    }
    (2u32..)
        .map(|n| with(format!("-{n}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// Copies the backup's files (not its manifest) into the new directory `to`, each synced.
/// A checkpoint is flat: a subdirectory means it is not one.
fn copy_files(from: &Path, to: &Path) -> Result<(usize, u64), RestoreError> {
    std::fs::create_dir(to).map_err(io(to))?;
    let mut files = 0;
    let mut bytes = 0;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let src = entry.path();
        if entry.file_name() == MANIFEST_FILE {
            continue;
        }
        if !src.is_file() {
            return Err(RestoreError::Damaged {
                dir: from.to_path_buf(),
                reason: format!("{} is not a regular file", src.display()),
            });
        }
        let dst = to.join(entry.file_name());
        bytes += std::fs::copy(&src, &dst).map_err(io(&src))?;
        std::fs::File::open(&dst)
            .and_then(|f| f.sync_all())
            .map_err(io(&dst))?;
        files += 1;
    }
    sync_dir(to).map_err(io(to))?;
    Ok((files, bytes))
}

/// Whether a process holds RocksDB's lock on `dir` (a POSIX record lock on `dir/LOCK`, which is
/// how RocksDB locks a directory on Linux). Asks with `F_GETLK`: takes no lock itself.
#[allow(unsafe_code)]
fn data_dir_locked(dir: &Path) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let file = match std::fs::File::open(dir.join("LOCK")) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    // SAFETY: `flock` is plain old data; all-zero is a valid value of it.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: the descriptor is open for the whole call and `lock` is a valid, writable
    // `struct flock` that F_GETLK fills in.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) };
    if rc == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemStore;
    use crate::store::rocks::{RocksOptions, RocksStore};
    use crate::store::{Batch, Commit, Durability, LocalRead as _, SimRecord};

    fn opts() -> RocksOptions {
        RocksOptions {
            block_cache_mb: 8,
            sim_cache_entries: 16,
        }
    }

    fn store_with(dir: &Path, sims: u32) -> RocksStore {
        let store = RocksStore::open(dir, &opts()).unwrap();
        add_sims(&store, 0..sims);
        store
    }

    /// Writes one SIM per number of `numbers`.
    fn add_sims(store: &RocksStore, numbers: std::ops::Range<u32>) {
        for i in numbers {
            let mut b = Batch::new();
            b.put_sim(SimRecord::new(format!("00101{i:010}").parse().unwrap()));
            assert_eq!(
                store.write(b, Durability::Buffered).unwrap(),
                Commit::Committed
            );
        }
    }

    /// A backup restores over a data directory (moved aside, kept), and stays as it was.
    #[test]
    fn restore_moves_the_data_dir_aside_and_keeps_the_backup() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let backups = root.path().join("backups");
        let store = store_with(&data, 50);
        let b = super::super::create(&store, &backups, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(b.sims, 50);
        drop(store_with_more(store));
        let from = backups.join(&b.name);

        // (The refusal of a data directory a running daemon holds needs another process: a
        // POSIX lock does not conflict with its own process. See integration-tests/backup.rs.)
        let done = restore(&data, &from, OffsetDateTime::now_utc()).unwrap();
        let aside = done.moved_aside.clone().unwrap();
        assert!(aside.to_string_lossy().contains("data.before-restore-"));
        assert_eq!(count_sims(&aside).unwrap(), 80);
        assert_eq!(count_sims(&data).unwrap(), 50);
        assert!(!data.join(MANIFEST_FILE).exists());
        // The backup is untouched and can be restored again (beside the first one moved aside).
        assert!(check_backup(&from).is_ok());
        let again = restore(&data, &from, OffsetDateTime::now_utc()).unwrap();
        assert_ne!(again.moved_aside.unwrap(), aside);
        assert_eq!(
            RocksStore::open(&data, &opts())
                .unwrap()
                .scan_sims("", None, 100)
                .unwrap()
                .len(),
            50
        );
    }

    fn store_with_more(store: RocksStore) -> RocksStore {
        add_sims(&store, 1000..1030);
        store
    }

    #[test]
    fn directories_that_are_no_backup_are_refused_with_status_2() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let plain = root.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        let cases: Vec<(PathBuf, &str)> = vec![
            (root.path().join("absent"), "no such directory"),
            (plain.clone(), "cannot read its"),
        ];
        for (dir, want) in cases {
            let err = restore(&data, &dir, OffsetDateTime::now_utc()).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
            assert_eq!(err.exit_code(), 2);
        }
        let write = |text: &str| std::fs::write(plain.join(MANIFEST_FILE), text).unwrap();
        write("{\"format\": \"imei-lockd-backup\", \"format_version\": 7}");
        let err = restore(&data, &plain, OffsetDateTime::now_utc()).unwrap_err();
        assert!(
            matches!(err, RestoreError::Version { found: 7, .. }),
            "{err}"
        );
        write("{\"format\": \"other\", \"format_version\": 1}");
        assert!(matches!(
            restore(&data, &plain, OffsetDateTime::now_utc()),
            Err(RestoreError::NotABackup { .. })
        ));
        assert!(!data.exists(), "a refusal creates nothing");
        assert!(super::super::create(&MemStore::new(), &plain, OffsetDateTime::now_utc()).is_err());
    }
}
