//! The imei-lockd daemon.
//!
//! `imei-lockd --config FILE` runs it; `imei-lockd check-config --config FILE` validates a
//! configuration and exits. Configuration errors exit with code 2 and name the key.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::sync::watch;

use imei_lockd::alerts::{AlertDelivery, Webhook};
use imei_lockd::api;
use imei_lockd::config::{parse_addr, Config};
use imei_lockd::diameter::server::DiameterService;
use imei_lockd::engine::{Clock, Engine, SystemClock};
use imei_lockd::provisioning::{BillingSettings, Provisioner};
use imei_lockd::radius::server::RadiusService;
use imei_lockd::store::rocks::{RocksOptions, RocksStore};
use imei_lockd::store::Store;

/// Exit code for configuration errors.
const EXIT_CONFIG: u8 = 2;
/// Exit code for runtime failures (store cannot open, listener cannot bind).
const EXIT_RUNTIME: u8 = 1;

/// IMEI-lock AAA daemon: RADIUS and Diameter (Gx, S6b) in front of a RocksDB lock engine.
#[derive(Parser, Debug)]
#[command(name = "imei-lockd", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML). Every key can be overridden by IMEI_LOCKD__SECTION__KEY.
    #[arg(
        long,
        short = 'c',
        global = true,
        default_value = "/etc/imei-lockd/imei-lockd.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the configuration file and exit (0 if valid, 2 with the key at fault if not).
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imei-lockd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(Command::CheckConfig) = cli.command {
        println!("{}: configuration is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = imei_lockd::logging::init(&cfg.log) {
        eprintln!("imei-lockd: invalid value for key `log.level`: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "imei-lockd stopped");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn run(cfg: Config) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("imei-lockd")
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    let token = cfg.api_token().map_err(|e| e.to_string())?;
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install metrics recorder: {e}"))?;
    let store = RocksStore::open(
        &cfg.node.data_dir,
        &RocksOptions {
            block_cache_mb: cfg.node.block_cache_mb,
        },
    )
    .map_err(|e| format!("cannot open store at {}: {e}", cfg.node.data_dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);
    tracing::info!(data_dir = %cfg.node.data_dir.display(), "store open");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock {
        offset_ms: test_clock_offset_ms(),
    });
    let engine = Arc::new(Engine::new(
        store.clone(),
        cfg.engine_policy(),
        clock.clone(),
    ));
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
    let alerts = AlertDelivery::new(
        store.clone(),
        clock.clone(),
        cfg.alerts.webhooks.iter().map(Webhook::from).collect(),
    );

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
        tasks.spawn(radius.run(engine.clone(), stop_rx.clone()));
        tasks.spawn(diameter.run(engine.clone(), stop_rx.clone()));
        if std::env::var_os("IMEI_LOCKD_TEST_HOLD_PROVISIONING").is_some() {
            // Test-only: accept requests but do not process them (crash tests).
            tracing::warn!(
                "IMEI_LOCKD_TEST_HOLD_PROVISIONING set: provisioning requests stay pending"
            );
        } else {
            tasks.spawn(provisioner.clone().run(stop_rx.clone()));
        }
        tasks.spawn(alerts.run(stop_rx.clone()));
        let state = Arc::new(api::ApiState {
            provisioner: provisioner.clone(),
            token,
        });
        tasks.spawn(serve_until(
            api::serve(api_listener, state, stopped(stop_rx.clone())),
            "api",
        ));
        let metrics_router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = metrics.clone();
                async move { m.render() }
            }),
        );
        let metrics_stop = stopped(stop_rx.clone());
        tasks.spawn(serve_until(
            async move {
                axum::serve(metrics_listener, metrics_router)
                    .with_graceful_shutdown(metrics_stop)
                    .await
            },
            "metrics",
        ));
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
        wait_for_shutdown().await;
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

/// Test-only: shifts the daemon's clock (billing month boundaries in integration tests).
fn test_clock_offset_ms() -> i64 {
    std::env::var("IMEI_LOCKD_TEST_CLOCK_OFFSET_S")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(0, |s| s.saturating_mul(1000))
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

async fn wait_for_shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
