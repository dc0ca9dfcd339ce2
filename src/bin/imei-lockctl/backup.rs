//! `imei-lockctl backup create` (`POST /v1/backups`) and `imei-lockctl backup list`
//! (`GET /v1/backups`): online backups of the daemon's embedded store, as a table or, with
//! `--json`, the API's JSON.
//!
//! This module takes and lists backups through the API only; restoring is
//! `imei-lockd restore` on the daemon's host, with the daemon stopped.

use clap::Subcommand;
use serde_json::Value;

use super::{print_table, print_value, Api, Failure};

#[derive(Subcommand, Debug)]
pub(crate) enum BackupCommand {
    /// Take an online backup of the daemon's store into its node.backup_dir (embedded store
    /// only; in cluster mode back up etcd with `etcdctl snapshot save`).
    Create,
    /// List the backups under the daemon's node.backup_dir, newest first.
    List,
}

const COLUMNS: [(&str, &str); 4] = [
    ("NAME", "name"),
    ("CREATED AT", "created_at"),
    ("SIMS", "sims"),
    ("PATH", "path"),
];

pub(crate) fn run(api: &Api, cmd: BackupCommand, as_json: bool) -> Result<(), Failure> {
    use reqwest::Method as M;
    match cmd {
        BackupCommand::Create => {
            let v = api.json(api.req(M::POST, "/v1/backups"))?;
            if as_json {
                print_value(&v, true);
            } else {
                print_table(std::slice::from_ref(&v), &COLUMNS);
            }
        }
        BackupCommand::List => {
            let v = api.json(api.req(M::GET, "/v1/backups"))?;
            let items = v
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if as_json {
                println!("{}", Value::Array(items));
            } else {
                print_table(&items, &COLUMNS);
            }
        }
    }
    Ok(())
}
