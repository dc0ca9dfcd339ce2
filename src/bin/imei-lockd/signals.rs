//! Signals and SIGHUP: which signal asks for what, and what a reload re-reads and applies (the
//! RADIUS clients, Diameter peers, engine and EIR policies, the API token and TLS material,
//! the N5g-eir token and certificate). It does not restart listeners or reopen the store: keys
//! that need a restart are named in a WARN.

use std::path::PathBuf;
use std::sync::Arc;

use imei_lockd::config::Config;
use imei_lockd::diameter::server::DiameterReloader;
use imei_lockd::eir::Eir;
use imei_lockd::engine::Engine;
use imei_lockd::radius::server::RadiusReloader;

use super::{n5g, secrets};

/// What a signal asks for.
pub enum Signal {
    Stop,
    Reload,
}

/// SIGTERM, SIGINT and SIGHUP streams.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

/// What SIGHUP re-reads and where it applies it.
pub struct Reload {
    pub path: PathBuf,
    /// The configuration the daemon started with: what the non-reloadable keys still are.
    pub running: Config,
    pub radius: RadiusReloader,
    pub diameter: DiameterReloader,
    pub engine: Arc<Engine>,
    pub eir: Arc<Eir>,
    pub secrets: Arc<secrets::Secrets>,
    pub n5g: n5g::N5gRuntime,
}

impl Reload {
    /// Re-reads the file; applies it if valid, else logs the key at fault and keeps running as
    /// before. Counted in `imei_lockd_config_reloads_total{result}`.
    pub fn apply(&self) {
        tracing::info!(path = %self.path.display(), "SIGHUP: reloading the configuration");
        let result = Config::load(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|new| self.swap(&new));
        match result {
            Ok(()) => {
                metrics::counter!("imei_lockd_config_reloads_total", "result" => "ok").increment(1);
            }
            Err(e) => {
                metrics::counter!("imei_lockd_config_reloads_total", "result" => "error")
                    .increment(1);
                tracing::error!(path = %self.path.display(), error = %e,
                    "configuration reload failed; keeping the running configuration");
            }
        }
    }

    /// Applies a valid configuration. The tables are checked by [`Config::load`] already, so the
    /// reloaders do not fail in practice; the engine policy is set last.
    fn swap(&self, new: &Config) -> Result<(), String> {
        let clients = self.radius.reload(new)?;
        let peers = self.diameter.reload(new)?;
        let mut policy = new.engine_policy();
        // Alert events follow the webhooks, which are not reloaded (AlertDelivery keeps the
        // ones it started with): keep the running set so events and delivery agree.
        policy.alert_events = self.running.engine_policy().alert_events;
        self.engine.set_policy(policy);
        self.eir.set_policy(new.eir.policy());
        let mut stale = restart_needed(&self.running, new);
        stale.extend(self.secrets.reload(new));
        // The N5g-eir token and certificate are applied; its listener needs a restart.
        stale.extend(self.n5g.reload(&self.running, new));
        if !stale.is_empty() {
            tracing::warn!(keys = %stale.join(", "),
                "configuration keys changed that only take effect after a restart");
        }
        tracing::info!(
            radius_clients = clients,
            diameter_peers = peers,
            "configuration reloaded (RADIUS clients, Diameter peers, policies, API token, TLS)"
        );
        Ok(())
    }
}

/// The keys SIGHUP does not apply whose value in `new` differs from the running one.
fn restart_needed(running: &Config, new: &Config) -> Vec<&'static str> {
    fn differs<T: serde::Serialize>(a: &T, b: &T) -> bool {
        serde_json::to_value(a).ok() != serde_json::to_value(b).ok()
    }
    // The key named in the warning is derived from the field compared, so the two cannot drift.
    macro_rules! changed {
        ($($section:ident $(. $field:ident)?),* $(,)?) => {
            [$((
                concat!(stringify!($section) $(, ".", stringify!($field))?),
                differs(&running.$section $(.$field)?, &new.$section $(.$field)?),
            )),*]
        };
    }
    changed!(
        node.data_dir,
        node.block_cache_mb,
        node.sim_cache_entries,
        node.backup_dir,
        log.format,
        log.level,
        radius.auth_listen,
        radius.acct_listen,
        radius.dedup_window_s,
        radius.recv_buffer_bytes,
        radius.workers,
        diameter.listen,
        diameter.origin_host,
        diameter.origin_realm,
        diameter.watchdog_s,
        diameter.cer_timeout_s,
        diameter.message_timeout_s,
        api.listen,
        api.header_timeout_s,
        api.body_timeout_s,
        metrics.listen,
        billing,
        alerts.webhooks,
        eir.s13,
    )
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}
