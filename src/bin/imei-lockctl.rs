//! imei-lockctl: the admin CLI, a client of the imei-lockd REST API (and, for `cluster import`
//! only, of etcd).
//!
//! Human output by default, `--json` for scripts. Exit codes: 0 success, 1 the API (or the
//! import) refused or failed (the message says why), 2 usage or configuration errors, 3 the API
//! (or etcd) could not be reached.

#[path = "imei-lockctl/api.rs"]
mod api;
#[path = "imei-lockctl/backup.rs"]
mod backup;
#[path = "imei-lockctl/cluster.rs"]
mod cluster;
#[path = "imei-lockctl/export.rs"]
mod export;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use reqwest::blocking::Client;
use serde_json::{json, Value};

use api::{Api, Failure, PAGE};

/// Admin CLI for imei-lockd: SIMs, profiles, provisioning requests, events and billing, over the
/// daemon's REST API.
#[derive(Parser, Debug)]
#[command(name = "imei-lockctl", version, about, long_about = None)]
struct Cli {
    /// Base URL of the imei-lockd API.
    #[arg(
        long,
        env = "IMEI_LOCKCTL_API",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    api: String,
    /// API bearer token (`[api] token` of the daemon). A command-line value shows in `ps` and
    /// the shell history: prefer --token-file (or the environment).
    #[arg(
        long,
        env = "IMEI_LOCKCTL_TOKEN",
        global = true,
        hide_env_values = true
    )]
    token: Option<String>,
    /// File holding the API bearer token (one trailing newline ignored); instead of --token.
    #[arg(
        long,
        env = "IMEI_LOCKCTL_TOKEN_FILE",
        global = true,
        value_name = "PATH"
    )]
    token_file: Option<std::path::PathBuf>,
    /// PEM CA certificate(s) to trust for an https:// API, instead of the system's (as curl's
    /// --cacert).
    #[arg(long, env = "IMEI_LOCKCTL_CACERT", global = true, value_name = "PATH")]
    cacert: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of human text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// SIMs.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Service profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Provisioning requests.
    #[command(subcommand)]
    Request(RequestCommand),
    /// Events of a SIM, newest first.
    Events {
        imsi: String,
        /// How many events.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Cluster mode: the cluster's state, and moving an embedded data directory into etcd.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Lock fees owed for a month (YYYY-MM).
    Billing {
        month: String,
        /// CSV instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// Online backups of the daemon's embedded store (restore: `imei-lockd restore`).
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Every SIM with its state, as CSV (importable as is) or NDJSON, page by page.
    Export(export::ExportArgs),
    /// Print the shell completion script for SHELL, e.g.
    /// `imei-lockctl completions bash > /etc/bash_completion.d/imei-lockctl`.
    Completions {
        #[arg(value_enum)]
        shell: imei_lockd::cli_docs::Shell,
    },
    /// Write the man pages (section 1) into DIR and list them.
    #[command(hide = true)]
    Manpages { dir: std::path::PathBuf },
}

#[derive(Args, Debug)]
struct Wait {
    /// Wait until the request is processed (up to 30 s) and exit non-zero if it failed.
    #[arg(long)]
    wait: bool,
}

#[derive(Subcommand, Debug)]
enum SimCommand {
    /// Show a SIM.
    Get { imsi: String },
    /// List SIMs (every page, in IMSI order), filtered: a table, or a JSON array with --json.
    List(SimFilter),
    /// Create or update a SIM (unset options are left as they are; "none" clears).
    Set {
        imsi: String,
        #[arg(long)]
        msisdn: Option<String>,
        #[arg(long)]
        profile: Option<String>,
        /// disabled, lock, pairing, or none (follow the profile).
        #[arg(long)]
        imei_management: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Delete a SIM.
    Delete {
        imsi: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Import SIMs from a CSV file (header imsi,msisdn,profile,imei_management).
    Import {
        file: std::path::PathBuf,
        #[command(flatten)]
        wait: Wait,
    },
    /// Clear the bound IMEI (the next lock session binds afresh).
    Reset {
        imsi: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Set the SIM-level IMEI management value: disabled, lock, pairing, or none.
    ImeiManagement {
        imsi: String,
        value: String,
        #[command(flatten)]
        wait: Wait,
    },
}

/// Filters of `sim list` (the query parameters of `GET /v1/sims`).
#[derive(Args, Debug)]
struct SimFilter {
    /// Only SIMs of this service profile.
    #[arg(long)]
    profile: Option<String>,
    /// Only SIMs whose effective value is this: disabled, lock or pairing.
    #[arg(long)]
    effective: Option<String>,
    /// Only SIMs whose own value is this: disabled, lock, pairing, or none (following the
    /// profile).
    #[arg(long)]
    imei_management: Option<String>,
    /// Only SIMs with (true) or without (false) a bound IMEI.
    #[arg(long)]
    bound: Option<bool>,
    /// Only IMSIs starting with these digits.
    #[arg(long)]
    imsi_prefix: Option<String>,
    /// Only MSISDNs starting with these digits.
    #[arg(long)]
    msisdn_prefix: Option<String>,
    #[command(flatten)]
    pages: Pages,
}

/// How much of a list to fetch.
#[derive(Args, Debug)]
struct Pages {
    /// Stop after this many items (default: all).
    #[arg(long)]
    limit: Option<usize>,
    /// Start after this cursor (a `next_cursor` the API gave).
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Subcommand, Debug)]
enum ProfileCommand {
    /// Show a profile.
    Get { name: String },
    /// List service profiles with their member counts.
    List(Pages),
    /// Create or change a profile.
    Set {
        name: String,
        /// disabled, lock or pairing.
        value: String,
        /// Monthly Lock fee for SIMs of this profile, e.g. 1.50.
        #[arg(long)]
        lock_fee: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
}

#[derive(Subcommand, Debug)]
enum RequestCommand {
    /// Show a provisioning request.
    Get {
        id: String,
        #[command(flatten)]
        wait: Wait,
    },
}

/// Prints `rows` as a table under `columns` (name, JSON field), `-` for null: no borders,
/// columns left-aligned and two spaces apart, no trailing blanks (scripts split on whitespace;
/// `--json` is the stable form).
fn print_table(rows: &[Value], columns: &[(&str, &str)]) {
    let cell = |row: &Value, field: &str| match row.get(field) {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => "-".to_owned(),
        Some(other) => other.to_string(),
    };
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(columns.iter().map(|(h, _)| *h));
    for row in rows {
        t.add_row(columns.iter().map(|(_, f)| cell(row, f)));
    }
    let last = columns.len().saturating_sub(1);
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if i == last { 0 } else { 2 }));
    }
    for line in t.lines() {
        println!("{}", line.trim_end());
    }
}

fn print_value(v: &Value, as_json: bool) {
    if as_json {
        println!("{v}");
        return;
    }
    match v {
        Value::Object(map) => {
            let width = map.keys().map(String::len).max().unwrap_or(0);
            for (k, val) in map {
                let text = match val {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".into(),
                    other => other.to_string(),
                };
                println!("{k:width$}  {text}");
            }
        }
        Value::Array(items) => {
            for item in items {
                print_value(item, false);
                println!();
            }
        }
        other => println!("{other}"),
    }
}

/// "none" clears a value; anything else is sent as given.
fn nullable(s: &str) -> Value {
    if s == "none" {
        Value::Null
    } else {
        Value::String(s.to_owned())
    }
}

/// The token of `--token` or `--token-file` (exit 2 when both are set or the file is bad).
fn token(cli: &Cli) -> Result<Option<String>, Failure> {
    match (&cli.token, &cli.token_file) {
        (Some(_), Some(_)) => Err(Failure(
            2,
            "set --token (IMEI_LOCKCTL_TOKEN) or --token-file (IMEI_LOCKCTL_TOKEN_FILE), not both"
                .into(),
        )),
        (Some(t), None) => Ok(Some(t.clone())),
        (None, Some(path)) => imei_lockd::config::secrets::read_secret("--token-file", path)
            .map(Some)
            .map_err(|e| Failure(2, e.to_string())),
        (None, None) => Ok(None),
    }
}

/// The HTTP client: a 60 s timeout; with `--cacert`, only its certificates are trusted.
fn http_client(cli: &Cli) -> Result<Client, Failure> {
    let mut builder = Client::builder().timeout(Duration::from_secs(60));
    if let Some(path) = &cli.cacert {
        let bad = |why: String| Failure(2, format!("--cacert {}: {why}", path.display()));
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate in the file".into()));
        }
        builder = builder.tls_built_in_root_certs(false);
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    builder.build().map_err(|e| Failure(3, e.to_string()))
}

fn run(cli: Cli) -> Result<(), Failure> {
    let api = Api {
        base: cli.api.clone(),
        token: token(&cli)?,
        http: http_client(&cli)?,
    };
    let j = cli.json;
    use reqwest::Method as M;
    match cli.command {
        Command::Sim(SimCommand::Get { imsi }) => {
            let v = api.json(api.req(M::GET, &format!("/v1/sims/{imsi}")))?;
            print_value(&v, j);
        }
        Command::Sim(SimCommand::Set {
            imsi,
            msisdn,
            profile,
            imei_management,
            wait,
        }) => {
            let mut body = serde_json::Map::new();
            if let Some(m) = msisdn {
                body.insert("msisdn".into(), nullable(&m));
            }
            if let Some(p) = profile {
                body.insert("profile".into(), nullable(&p));
            }
            if let Some(v) = imei_management {
                body.insert("imei_management".into(), nullable(&v));
            }
            let r = api.req(M::PUT, &format!("/v1/sims/{imsi}")).json(&body);
            api.submit(r, &wait, j)?;
        }
        Command::Sim(SimCommand::Delete { imsi, wait }) => {
            api.submit(api.req(M::DELETE, &format!("/v1/sims/{imsi}")), &wait, j)?;
        }
        Command::Sim(SimCommand::Import { file, wait }) => {
            let body = std::fs::read(&file)
                .map_err(|e| Failure(2, format!("cannot read {}: {e}", file.display())))?;
            let r = api
                .req(M::POST, "/v1/sims:import")
                .header(reqwest::header::CONTENT_TYPE, "text/csv")
                .body(body);
            api.submit(r, &wait, j)?;
        }
        Command::Sim(SimCommand::Reset { imsi, wait }) => {
            api.submit(
                api.req(M::POST, &format!("/v1/sims/{imsi}/reset")),
                &wait,
                j,
            )?;
        }
        Command::Sim(SimCommand::ImeiManagement { imsi, value, wait }) => {
            let r = api
                .req(M::PUT, &format!("/v1/sims/{imsi}/imei-management"))
                .json(&json!({ "value": nullable(&value) }));
            api.submit(r, &wait, j)?;
        }
        Command::Sim(SimCommand::List(f)) => {
            let mut q = Vec::new();
            for (name, value) in [
                ("profile", f.profile),
                ("effective", f.effective),
                ("imei_management", f.imei_management),
                ("bound", f.bound.map(|b| b.to_string())),
                ("imsi_prefix", f.imsi_prefix),
                ("msisdn_prefix", f.msisdn_prefix),
            ] {
                if let Some(v) = value {
                    q.push((name, v));
                }
            }
            let items = api.list("/v1/sims", &q, &f.pages)?;
            if j {
                println!("{}", Value::Array(items));
            } else {
                print_table(
                    &items,
                    &[
                        ("IMSI", "imsi"),
                        ("MSISDN", "msisdn"),
                        ("PROFILE", "profile"),
                        ("VALUE", "imei_management"),
                        ("EFFECTIVE", "effective"),
                        ("BOUND IMEI", "bound_imei"),
                        ("LAST SEEN IMEI", "last_seen_imei"),
                        ("LAST SEEN AT", "last_seen_at"),
                    ],
                );
            }
        }
        Command::Profile(ProfileCommand::List(pages)) => {
            let items = api.list("/v1/profiles", &[], &pages)?;
            if j {
                println!("{}", Value::Array(items));
            } else {
                print_table(
                    &items,
                    &[
                        ("NAME", "name"),
                        ("VALUE", "imei_management"),
                        ("LOCK FEE", "lock_fee"),
                        ("SIMS", "sims"),
                    ],
                );
            }
        }
        Command::Profile(ProfileCommand::Get { name }) => {
            let v = api.json(api.req(M::GET, &format!("/v1/profiles/{name}")))?;
            print_value(&v, j);
        }
        Command::Profile(ProfileCommand::Set {
            name,
            value,
            lock_fee,
            wait,
        }) => {
            let mut body = json!({ "imei_management": value });
            if let Some(f) = lock_fee {
                body["lock_fee"] = json!(f);
            }
            let r = api.req(M::PUT, &format!("/v1/profiles/{name}")).json(&body);
            api.submit(r, &wait, j)?;
        }
        Command::Request(RequestCommand::Get { id, wait }) => {
            api.show_request(&id, wait.wait, j)?;
        }
        Command::Events { imsi, limit } => {
            let v = api.json(api.req(M::GET, &format!("/v1/sims/{imsi}/events?limit={limit}")))?;
            match v.as_array() {
                Some(items) if !j => print_table(
                    items,
                    &[
                        ("AT", "at"),
                        ("EVENT", "event"),
                        ("INTERFACE", "interface"),
                        ("PEER", "peer"),
                        ("IMEI", "imei"),
                        ("BOUND IMEI", "bound_imei"),
                        ("DETAIL", "detail"),
                    ],
                ),
                _ => print_value(&v, j),
            }
        }
        Command::Cluster(c) => cluster::run(&api, c, j)?,
        Command::Backup(c) => backup::run(&api, c, j)?,
        Command::Export(args) => export::run(&api, args)?,
        Command::Billing { month, csv } => {
            if csv {
                let (_, body) =
                    api.send(api.req(M::GET, &format!("/v1/billing/{month}?format=csv")))?;
                print!("{body}");
            } else {
                let v = api.json(api.req(M::GET, &format!("/v1/billing/{month}")))?;
                match v.as_array() {
                    Some(items) if !j => print_table(
                        items,
                        &[
                            ("IMSI", "imsi"),
                            ("MONTH", "month"),
                            ("AMOUNT", "amount"),
                            ("CURRENCY", "currency"),
                            ("FIRST LOCK AT", "first_lock_at"),
                            ("VALUE", "imei_management"),
                            ("LABEL", "label"),
                        ],
                    ),
                    _ => print_value(&v, j),
                }
            }
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            imei_lockd::cli_docs::write_completion(Cli::command(), shell, &mut std::io::stdout())
                .map_err(|e| Failure(1, e.to_string()))?;
        }
        Command::Manpages { dir } => {
            use clap::CommandFactory;
            let pages = imei_lockd::cli_docs::write_man_pages(Cli::command(), "1", &dir)
                .map_err(|e| Failure(1, e.to_string()))?;
            for p in pages {
                println!("{}", p.display());
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, msg)) => {
            eprintln!("imei-lockctl: {msg}");
            ExitCode::from(code)
        }
    }
}
