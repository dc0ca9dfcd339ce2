//! The imei-lockd daemon.
//!
//! `imei-lockd --config FILE` runs it; `imei-lockd check-config --config FILE` validates a
//! configuration and exits; `imei-lockd restore --config FILE --from DIR` restores a backup
//! (the daemon stopped). Configuration errors exit with code 2 and name the key.
//!
//! Signals: SIGTERM (or SIGINT) drains and stops; SIGHUP re-reads the same file (environment
//! overrides included) and applies the RADIUS clients (their secret files re-read), the
//! Diameter peers, the engine policies, the API token and the TLS certificates (`secrets`). A
//! file that does not load on SIGHUP is logged (naming the key) and the running
//! configuration kept; keys that need a restart (listen addresses, ...) are logged as such.

#[path = "imei-lockd/n5g.rs"]
mod n5g;
#[path = "imei-lockd/restore.rs"]
mod restore;
#[path = "imei-lockd/secrets.rs"]
mod secrets;
#[path = "imei-lockd/signals.rs"]
mod signals;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use imei_lockd::alerts::{AlertDelivery, Webhook};
use imei_lockd::api;
use imei_lockd::config::retention::EventsFrom;
use imei_lockd::config::ClusterBackend;
use imei_lockd::config::{parse_addr, Config};
use imei_lockd::diameter::server::DiameterService;
use imei_lockd::eir::Eir;
use imei_lockd::engine::{Clock, Engine, SystemClock};
use imei_lockd::provisioning::{BillingSettings, Provisioner};
use imei_lockd::radius::server::RadiusService;
use imei_lockd::retention::{Retention, RetentionSettings};
use imei_lockd::store::delayed::Delayed;
use imei_lockd::store::etcd::{EtcdSettings, EtcdStore};
use imei_lockd::store::rocks::{RocksOptions, RocksStore};
use imei_lockd::store::{Coordination, LocalRead, Store};
use imei_lockd::telemetry::ProcessMetrics;
use signals::{Reload, Signal, Signals};

/// Exit code for configuration errors.
const EXIT_CONFIG: u8 = 2;
/// Exit code for runtime failures (store cannot open, listener cannot bind).
const EXIT_RUNTIME: u8 = 1;

/// Upper bounds of the buckets of every `*_seconds` histogram (rendered as Prometheus
/// histograms, not summaries): 50 µs to 1 s.
const LATENCY_BUCKETS_S: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// How often the store size gauges are refreshed.
const STORE_GAUGES_EVERY: Duration = Duration::from_secs(10);
/// How often the recorder's upkeep drains histogram samples (8 octets each until drained: at
/// 400 000 decisions/s a 10 s interval held ~37 MB of them, 1 s holds a tenth).
const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// IMEI-lock AAA daemon: RADIUS and Diameter (Gx, S6b) in front of a RocksDB lock engine.
///
/// Without a subcommand, runs the daemon in the foreground (systemd Type=notify) until SIGTERM.
#[derive(Parser, Debug)]
#[command(
    name = "imei-lockd",
    version,
    about,
    after_help = "Signals: SIGTERM/SIGINT drain and stop (Diameter peers get a DPR); SIGHUP reloads \
                  RADIUS clients, Diameter peers, policies, the API token and TLS certificates \
                  from the same file.\n\
                  Exit codes: 0 clean stop, 1 runtime failure (store, bind), 2 configuration error \
                  (the message names the key)."
)]
struct Cli {
    /// Configuration file (TOML). Every key can be overridden by an environment variable
    /// IMEI_LOCKD__SECTION__KEY, e.g. IMEI_LOCKD__RADIUS__AUTH_LISTEN=0.0.0.0:1812.
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "FILE",
        default_value = "/etc/imei-lockd/imei-lockd.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the configuration file and exit.
    ///
    /// Loads the file with its environment overrides and checks every value, without opening
    /// the store or binding any port. Exit code 0 if valid, 2 with a message naming the key at
    /// fault if not (the daemon itself checks the same at start and exits 2 too).
    CheckConfig,
    /// Restore a backup (POST /v1/backups) into node.data_dir, imei-lockd stopped.
    ///
    /// Checks DIR's manifest and store (exit 2: not a backup of this format version, or
    /// damaged), refuses a data directory a running daemon holds (exit 1), moves the current
    /// data directory aside to <data_dir>.before-restore-<UTC time> (never deletes it) and
    /// copies the backup into its place. Embedded store only (cluster mode: etcdctl).
    Restore {
        /// The backup's directory (under node.backup_dir).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
    },
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: imei_lockd::cli_docs::Shell,
    },
    /// Write the man pages (section 8) into DIR and list them.
    #[command(hide = true)]
    Manpages { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(exit) = docs(&cli) {
        return exit;
    }
    let cfg = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imei-lockd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // The token file is part of the configuration: unreadable (e.g. not readable by the unit's
    // user) is a configuration error, found by check-config too, not a restart loop.
    if let Err(e) = cfg.api_token() {
        eprintln!("imei-lockd: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Err(e) = n5g::check(&cfg) {
        eprintln!("imei-lockd: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Some(Command::CheckConfig) = cli.command {
        println!("{}: configuration is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Restore { from }) = &cli.command {
        return restore::run(&cfg, from);
    }
    if let Err(e) = imei_lockd::logging::init(&cfg.log) {
        eprintln!("imei-lockd: invalid value for key `log.level`: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match run(cfg, &cli.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "imei-lockd stopped");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// The hidden `completions` and `manpages` subcommands (used by scripts/package-deb.sh and
/// scripts/install.sh): their exit, or `None` for every other command.
fn docs(cli: &Cli) -> Option<ExitCode> {
    use clap::CommandFactory;
    use imei_lockd::cli_docs;
    let done = match &cli.command {
        Some(Command::Completions { shell }) => {
            cli_docs::write_completion(Cli::command(), *shell, &mut std::io::stdout())
        }
        Some(Command::Manpages { dir }) => {
            cli_docs::write_man_pages(Cli::command(), "8", dir).map(|pages| {
                for p in pages {
                    println!("{}", p.display());
                }
            })
        }
        _ => return None,
    };
    Some(match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imei-lockd: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    })
}

fn run(cfg: Config, path: &Path) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("imei-lockd")
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    // First, before the store opens: until then SIGHUP's default action would end the process.
    let mut signals = {
        let _runtime = rt.enter();
        Signals::new().map_err(|e| format!("cannot install signal handlers: {e}"))?
    };
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_S)
        .map_err(|e| format!("cannot configure metrics buckets: {e}"))?
        .install_recorder()
        .map_err(|e| format!("cannot install metrics recorder: {e}"))?;
    // HELP text for every family, before anything can scrape; then the series known now. The
    // subsystems register theirs at 0 as they are built (store, engine, provisioning, alerts,
    // RADIUS and Diameter at bind, the API when it serves).
    imei_lockd::telemetry::describe();
    imei_lockd::telemetry::build_info();
    register_metrics();
    // After the recorder (the token's gauge), before the store: a bad file fails fast.
    let secrets = Arc::new(secrets::Secrets::start(&cfg)?);
    let store = open_store(&cfg, &rt)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock {
        offset_ms: test_clock_offset_ms(),
    });
    let engine = Arc::new(Engine::new(
        engine_store(store.clone()),
        cfg.engine_policy(),
        clock.clone(),
    ));
    // The EIR front-ends (S13, N5g-eir) ask the same engine through the EIR's policies.
    let eir = Arc::new(Eir::new(engine.clone(), cfg.eir.policy()));
    let provisioner = Arc::new(
        Provisioner::new(
            store.clone(),
            clock.clone(),
            BillingSettings {
                lock_fee: cfg.billing.lock_fee.clone(),
                currency: cfg.billing.currency.clone(),
            },
        )
        .map_err(|e| format!("cannot read provisioning state: {e}"))?,
    );
    let webhooks = cfg
        .alerts
        .webhooks
        .iter()
        .enumerate()
        .map(|(i, c)| Webhook::new(i, c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot set up alert webhooks: {e}"))?;
    let alerts = AlertDelivery::new(store.clone(), clock.clone(), webhooks);
    // `[retention]`, in either mode: the node holding the retention singleton deletes (the
    // embedded node always holds it).
    if let (days, EventsFrom::Cluster) = cfg.retention.events(&cfg.cluster) {
        tracing::warn!(
            days,
            "cluster.event_retention_days is the older name of retention.events_days: move the \
             value to [retention] events_days"
        );
    }
    let retention = Retention::new(
        store.clone(),
        clock.clone(),
        RetentionSettings::from_config(&cfg),
    );

    let sized_store = store.clone();
    let api_reads: Arc<dyn LocalRead> = store.clone();
    let api_coordination: Arc<dyn Coordination> = store.clone();
    rt.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        let api_addr = parse_addr("api.listen", &cfg.api.listen).map_err(|e| e.to_string())?;
        let api_listener = api::bind(api_addr)
            .await
            .map_err(|e| format!("cannot listen on api.listen {api_addr}: {e}"))?;
        let metrics_addr =
            parse_addr("metrics.listen", &cfg.metrics.listen).map_err(|e| e.to_string())?;
        let metrics_listener = tokio::net::TcpListener::bind(metrics_addr)
            .await
            .map_err(|e| format!("cannot listen on metrics.listen {metrics_addr}: {e}"))?;

        let radius = RadiusService::bind(&cfg).await?;
        let diameter = DiameterService::bind(&cfg).await?;
        let mut tasks = tokio::task::JoinSet::new();
        // The AMF's EIR, when [eir.n5g] listen is set.
        let n5g = n5g::start(&cfg, eir.clone(), stopped(stop_rx.clone()), &mut tasks).await?;
        let reload = Reload {
            path: path.to_path_buf(),
            running: cfg.clone(),
            radius: radius.reloader(),
            diameter: diameter.reloader(),
            engine: engine.clone(),
            eir: eir.clone(),
            secrets: secrets.clone(),
            n5g,
        };

        tasks.spawn(radius.run(engine.clone(), stop_rx.clone()));
        // The Diameter applications served, fixed at start ([eir.s13] enabled adds S13).
        let catalog = Arc::new(imei_lockd::diameter::app::Catalog::from_config(
            &cfg,
            engine.clone(),
            eir.clone(),
        ));
        tasks.spawn(diameter.run(catalog, stop_rx.clone()));
        if std::env::var_os("IMEI_LOCKD_TEST_HOLD_PROVISIONING").is_some() {
            // Test-only: accept requests but do not process them (crash tests).
            tracing::warn!(
                "IMEI_LOCKD_TEST_HOLD_PROVISIONING set: provisioning requests stay pending"
            );
        } else {
            tasks.spawn(provisioner.clone().run(stop_rx.clone()));
        }
        tasks.spawn(alerts.run(stop_rx.clone()));
        tasks.spawn(retention.run(stop_rx.clone()));
        let state = Arc::new(api::ApiState {
            provisioner: provisioner.clone(),
            reads: api_reads,
            coordination: api_coordination,
            token: secrets.token.clone(),
            backup_dir: cfg.node.backup_dir(),
        });
        let limits = api::ServeLimits {
            header_timeout: Duration::from_secs(cfg.api.header_timeout_s),
            body_timeout: Duration::from_secs(cfg.api.body_timeout_s),
        };
        let api_stop = stopped(stop_rx.clone());
        match &secrets.api_tls {
            // HTTPS only: the handshake must complete within the header timeout.
            Some(tls) => tasks.spawn(serve_until(
                api::serve(
                    imei_lockd::tls::TlsListener::new(
                        api_listener,
                        tls.clone(),
                        limits.header_timeout,
                    ),
                    state,
                    limits,
                    api_stop,
                ),
                "api",
            )),
            None => tasks.spawn(serve_until(
                api::serve(api_listener, state, limits, api_stop),
                "api",
            )),
        };
        let metrics_upkeep = metrics.clone();
        let process = ProcessMetrics::default();
        let metrics_router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = metrics.clone();
                let process = process.clone();
                async move {
                    // The process_* figures as of this scrape (a few reads of /proc/self).
                    process.collect();
                    m.render()
                }
            }),
        );
        let metrics_stop = stopped(stop_rx.clone());
        match secrets.metrics_listener(metrics_listener) {
            Ok(tls_listener) => tasks.spawn(serve_until(
                async move {
                    axum::serve(tls_listener, metrics_router)
                        .with_graceful_shutdown(metrics_stop)
                        .await
                },
                "metrics",
            )),
            Err(metrics_listener) => tasks.spawn(serve_until(
                async move {
                    axum::serve(metrics_listener, metrics_router)
                        .with_graceful_shutdown(metrics_stop)
                        .await
                },
                "metrics",
            )),
        };
        tasks.spawn(store_gauges(sized_store, stop_rx.clone()));
        tasks.spawn(metrics_upkeep_loop(metrics_upkeep, stop_rx.clone()));
        let _engine = engine;
        if let Some(every) = imei_lockd::systemd::watchdog_interval() {
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = tick.tick() => imei_lockd::systemd::notify("WATCHDOG=1"),
                        _ = stop.changed() => return,
                    }
                }
            });
        }
        tracing::info!(version = env!("CARGO_PKG_VERSION"), api = %api_addr,
            metrics = %metrics_addr, "imei-lockd ready");
        imei_lockd::systemd::notify("READY=1");
        while let Signal::Reload = signals.next().await {
            reload.apply();
        }
        tracing::info!("shutting down");
        imei_lockd::systemd::notify("STOPPING=1");
        let _ = stop_tx.send(true);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            tracing::warn!("tasks did not stop within 10 s");
        }
        Ok::<(), String>(())
    })?;
    store.flush().map_err(|e| format!("flushing store: {e}"))?;
    tracing::info!("store flushed; bye");
    Ok(())
}

/// The store `[cluster] backend` names: the embedded RocksDB store, or the etcd cluster store
/// (its cache in `node.data_dir`).
fn open_store(cfg: &Config, rt: &tokio::runtime::Runtime) -> Result<Arc<dyn Store>, String> {
    let rocks = RocksOptions {
        block_cache_mb: cfg.node.block_cache_mb,
        sim_cache_entries: cfg.node.sim_cache_entries,
    };
    let dir = &cfg.node.data_dir;
    match cfg.cluster.backend {
        ClusterBackend::Embedded => {
            let store = RocksStore::open(dir, &rocks)
                .map_err(|e| format!("cannot open store at {}: {e}", dir.display()))?;
            tracing::info!(data_dir = %dir.display(), "store open");
            Ok(Arc::new(store))
        }
        ClusterBackend::Etcd => {
            let e = &cfg.cluster.etcd;
            let settings = EtcdSettings::from_config(&cfg.cluster);
            let store = rt
                .block_on(EtcdStore::open(dir, &rocks, settings))
                .map_err(|err| {
                    format!(
                        "cannot open the cluster store (cache {}, etcd {:?}): {err}",
                        dir.display(),
                        e.endpoints
                    )
                })?;
            Ok(Arc::new(store))
        }
    }
}

/// Registers the daemon's own series at 0: configuration reloads by result, and the API's 401
/// counter (the API registers its limit counters when it serves).
fn register_metrics() {
    for result in ["ok", "error"] {
        metrics::counter!("imei_lockd_config_reloads_total", "result" => result).increment(0);
    }
    metrics::counter!("imei_lockd_api_unauthorized_total").increment(0);
}

/// Test-only: `IMEI_LOCKD_TEST_STORE_DELAY_MS` puts the engine on a store that has fallen
/// behind ([`Delayed`]: every write and every read not served from memory waits that long), for
/// the overload tests; else `store` itself. Provisioning and the API keep the real store.
fn engine_store(store: Arc<dyn Store>) -> Arc<dyn Store> {
    let delay = std::env::var("IMEI_LOCKD_TEST_STORE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms > 0);
    match delay {
        Some(ms) => {
            tracing::warn!(
                delay_ms = ms,
                "IMEI_LOCKD_TEST_STORE_DELAY_MS set: the engine's store is slowed"
            );
            Arc::new(Delayed::new(store, Duration::from_millis(ms)))
        }
        None => store,
    }
}

/// Test-only: shifts the daemon's clock (billing month boundaries in integration tests).
fn test_clock_offset_ms() -> i64 {
    std::env::var("IMEI_LOCKD_TEST_CLOCK_OFFSET_S")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(0, |s| s.saturating_mul(1000))
}

/// Sets the `imei_lockd_store_*` gauges from [`Store::approximate_counts`] at startup and every
/// [`STORE_GAUGES_EVERY`] until stopped.
async fn store_gauges(store: Arc<dyn Store>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(STORE_GAUGES_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.approximate_counts()).await {
            Ok(c) => {
                metrics::gauge!("imei_lockd_store_sims").set(c.sims as f64);
                metrics::gauge!("imei_lockd_store_events").set(c.events as f64);
                metrics::gauge!("imei_lockd_store_outbox").set(c.outbox as f64);
                metrics::gauge!("imei_lockd_store_disk_bytes").set(c.disk_bytes as f64);
            }
            Err(e) => tracing::warn!(error = %e, "store size sampling failed"),
        }
    }
}

/// Drains the recorder's histogram samples every [`METRICS_UPKEEP_EVERY`] so they do not pile
/// up between scrapes.
async fn metrics_upkeep_loop(metrics: PrometheusHandle, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(METRICS_UPKEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => metrics.run_upkeep(),
            _ = stop.changed() => return,
        }
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|&s| s).await;
}

async fn serve_until(
    fut: impl std::future::Future<Output = std::io::Result<()>>,
    what: &'static str,
) {
    if let Err(e) = fut.await {
        tracing::error!(error = %e, server = what, "server stopped");
    }
}
