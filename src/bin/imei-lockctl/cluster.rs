//! `imei-lockctl cluster status` (`GET /v1/cluster` as tables), `cluster verify`
//! (`POST /v1/cluster/verify`) and `imei-lockctl cluster import`
//! (an embedded data directory into etcd, through the library's
//! [`imei_lockd::store::etcd::import`]; it talks to etcd, not to the API).
//!
//! This module decides nothing about the cluster: it shows what one node answers, and the
//! import's checks (source in use, prefix not empty) are the library's.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::Value;

use super::{print_table, Api, Failure};

#[derive(Subcommand, Debug)]
pub(crate) enum ClusterCommand {
    /// This node (serving, applied revision vs etcd's), every node's applied revision and lag,
    /// who holds each singleton, and the etcd members with the leader marked.
    Status,
    /// Compare this node's cache, record family by family, with a read of etcd at the revision
    /// the cache has applied (`POST /v1/cluster/verify`). Exit status 1 when they differ.
    Verify,
    /// Copy an embedded data directory (imei-lockd stopped) into the empty etcd prefix of a
    /// cluster configuration, for growing from one node to several. Talks to etcd, not to the
    /// API.
    #[cfg(feature = "rocksdb")]
    Import {
        /// The embedded daemon's data directory (its `node.data_dir`).
        #[arg(long)]
        from: PathBuf,
        /// A daemon configuration with `[cluster] backend = "etcd"` (endpoints, prefix, TLS,
        /// credentials and max_txn_ops are taken from it).
        #[arg(long)]
        config: PathBuf,
        /// Transactions sent at once.
        #[arg(long, default_value_t = 16)]
        in_flight: usize,
    },
}

pub(crate) fn run(api: &Api, command: ClusterCommand, as_json: bool) -> Result<(), Failure> {
    match command {
        ClusterCommand::Status => {
            let v = api.json(api.req(reqwest::Method::GET, "/v1/cluster"))?;
            if as_json {
                println!("{v}");
            } else {
                print_status(&v);
            }
            Ok(())
        }
        ClusterCommand::Verify => {
            let v = api.json(api.req(reqwest::Method::POST, "/v1/cluster/verify"))?;
            if as_json {
                println!("{v}");
            } else {
                print_verification(&v);
            }
            if v["equal"] == true {
                Ok(())
            } else {
                Err(Failure(1, "the cache differs from etcd".into()))
            }
        }
        #[cfg(feature = "rocksdb")]
        ClusterCommand::Import {
            from,
            config,
            in_flight,
        } => import(&from, &config, in_flight, as_json),
    }
}

/// `POST /v1/cluster/verify` as text: the verdict, then one row per record family.
fn print_verification(v: &Value) {
    println!(
        "cache vs etcd at revision {}: {} ({} ms)",
        text(&v["revision"]),
        if v["equal"] == true {
            "equal"
        } else {
            "DIFFERENT"
        },
        text(&v["elapsed_ms"])
    );
    let rows: Vec<Value> = v["families"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f["name"],
                "cache": f["cache_records"],
                "etcd": f["etcd_records"],
                "equal": yes_no(&f["equal"]),
            })
        })
        .collect();
    print_table(
        &rows,
        &[
            ("FAMILY", "name"),
            ("CACHE", "cache"),
            ("ETCD", "etcd"),
            ("EQUAL", "equal"),
        ],
    );
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn yes_no(v: &Value) -> &'static str {
    if v.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
}

/// `GET /v1/cluster` as text: the node, the nodes, the singletons, the etcd members.
fn print_status(v: &Value) {
    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
    if v["backend"] == "embedded" {
        println!("backend: embedded (one node on its own RocksDB store; no cluster)");
        for n in &nodes {
            println!(
                "node:    {} (serving: {})",
                text(&n["name"]),
                yes_no(&n["serving"])
            );
        }
    } else {
        let applied = v["applied_revision"].as_u64().unwrap_or(0);
        let head = v["etcd_revision"].as_u64().unwrap_or(0);
        println!("backend:          {}", text(&v["backend"]));
        println!(
            "this node:        {} (serving: {})",
            text(&v["node"]),
            yes_no(&v["serving"])
        );
        println!(
            "applied revision: {applied} of etcd's {head} ({} behind)",
            head.saturating_sub(applied)
        );
        println!();
        let rows: Vec<Value> = nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "name": n["name"],
                    "serving": yes_no(&n["serving"]),
                    "applied": n["applied"],
                    "lag": n["lag_revisions"],
                })
            })
            .collect();
        print_table(
            &rows,
            &[
                ("NODE", "name"),
                ("SERVING", "serving"),
                ("APPLIED", "applied"),
                ("LAG", "lag"),
            ],
        );
    }
    println!();
    let singletons: Vec<Value> = v["singletons"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, holder)| serde_json::json!({"name": name, "holder": holder}))
                .collect()
        })
        .unwrap_or_default();
    print_table(&singletons, &[("SINGLETON", "name"), ("HOLDER", "holder")]);
    let Some(etcd) = v.get("etcd") else {
        return;
    };
    println!();
    let members: Vec<Value> = etcd["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    let urls: Vec<String> = m["client_urls"]
                        .as_array()
                        .map(|u| u.iter().map(text).collect())
                        .unwrap_or_default();
                    serde_json::json!({
                        "name": m["name"],
                        "id": m["id"],
                        "leader": if m["leader"] == true { "leader" } else { "" },
                        "urls": urls.join(","),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    print_table(
        &members,
        &[
            ("ETCD MEMBER", "name"),
            ("ID", "id"),
            ("ROLE", "leader"),
            ("CLIENT URLS", "urls"),
        ],
    );
    if etcd["reachable"] != true {
        println!("etcd: not reachable from this node");
    }
}

/// `cluster import`: loads the configuration, runs the import, prints the summary.
#[cfg(feature = "rocksdb")]
fn import(from: &Path, config: &Path, in_flight: usize, as_json: bool) -> Result<(), Failure> {
    use imei_lockd::config::{ClusterBackend, Config, LogConfig, LogFormat};
    use imei_lockd::store::etcd::import::{import, ImportError, ImportOptions};
    use imei_lockd::store::etcd::EtcdSettings;

    let cfg = Config::load(config).map_err(|e| Failure(2, format!("{}: {e}", config.display())))?;
    if cfg.cluster.backend != ClusterBackend::Etcd {
        return Err(Failure(
            2,
            format!(
                "{}: cluster.backend is \"embedded\"; give the configuration of the cluster's \
                 nodes ([cluster] backend = \"etcd\" with [cluster.etcd] endpoints)",
                config.display()
            ),
        ));
    }
    // Warnings (retried transactions) and errors on stderr; RUST_LOG overrides.
    let _ = imei_lockd::logging::init(&LogConfig {
        format: LogFormat::Text,
        level: "warn".into(),
    });
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(from, &cfg.node.data_dir) {
        eprintln!(
            "imei-lockctl: note: {} is also node.data_dir of {}: a node started with it uses \
             the directory as its cache and clears it first (keep a copy of it if you want one)",
            from.display(),
            config.display()
        );
    }
    let settings = EtcdSettings::from_config(&cfg.cluster);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure(1, format!("cannot start the runtime: {e}")))?;
    let summary = rt
        .block_on(import(from, &settings, &ImportOptions { in_flight }))
        .map_err(|e| match e {
            ImportError::Connect { .. } => Failure(3, e.to_string()),
            other => Failure(1, other.to_string()),
        })?;
    if as_json {
        println!("{}", summary.to_json());
        return Ok(());
    }
    println!(
        "imported {} into etcd {} under {} in {:.2} s",
        from.display(),
        settings.endpoints.join(","),
        summary.prefix,
        summary.elapsed.as_secs_f64()
    );
    for (kind, n) in &summary.counts {
        println!("  {kind:<9} {n}");
    }
    if summary.trimmed_requests > 0 {
        println!(
            "  ({} processed CSV import request(s) kept without their rows: too large for one \
             etcd transaction; their SIMs are imported)",
            summary.trimmed_requests
        );
    }
    println!(
        "  {} keys in {} transactions of up to {} operations, {} in flight; request counter {}",
        summary.keys,
        summary.transactions,
        summary.max_txn_ops,
        summary.in_flight,
        summary.last_request_seq
    );
    println!("  {:.0} SIMs/s", summary.sims_per_second());
    Ok(())
}
