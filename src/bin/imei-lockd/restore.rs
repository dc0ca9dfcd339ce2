//! `imei-lockd restore --config FILE --from DIR`: the daemon stopped, puts a backup taken with
//! `POST /v1/backups` in place of `[node] data_dir` (through [`imei_lockd::backup::restore`],
//! which checks and copies) and prints what it did.
//!
//! Exit status: 0 restored; 2 a configuration error, cluster mode, or DIR no usable backup of
//! this format version; 1 the data directory is in use (a daemon runs on it) or the file system
//! failed. This module starts nothing.

use std::path::Path;
use std::process::ExitCode;

use imei_lockd::backup::restore::restore;
use imei_lockd::config::{ClusterBackend, Config};

pub(crate) fn run(cfg: &Config, from: &Path) -> ExitCode {
    if cfg.cluster.backend == ClusterBackend::Etcd {
        eprintln!(
            "imei-lockd: restore refused: cluster.backend = \"etcd\": the state lives in etcd, \
             not in node.data_dir; restore etcd with `etcdctl snapshot restore` (the nodes \
             rebuild their caches from it)"
        );
        return ExitCode::from(2);
    }
    let data_dir = &cfg.node.data_dir;
    match restore(data_dir, from, time::OffsetDateTime::now_utc()) {
        Ok(r) => {
            let m = &r.manifest;
            println!(
                "backup {} checked: taken {} by imei-lockd {}, {} SIMs ({})",
                m.name,
                m.created_at,
                m.daemon_version,
                m.sims,
                from.display()
            );
            match &r.moved_aside {
                Some(aside) => println!(
                    "moved the data directory {} aside to {} (delete it once the restored state \
                     is verified)",
                    r.data_dir.display(),
                    aside.display()
                ),
                None => println!("{}: no data directory there before", r.data_dir.display()),
            }
            println!(
                "copied {} files ({} bytes) into {}",
                r.files,
                r.bytes,
                r.data_dir.display()
            );
            println!(
                "restored: start imei-lockd to serve the state of {}",
                m.created_at
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("imei-lockd: restore refused: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
