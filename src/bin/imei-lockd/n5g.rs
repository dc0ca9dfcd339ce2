//! The daemon's N5g-eir listener (`[eir.n5g]`): the address check `check-config` runs, the
//! bind, TLS (ALPN h2 and http/1.1), and what SIGHUP changes (the token, the certificate).
//!
//! The service itself is `imei_lockd::n5g_eir`; this module only wires it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use imei_lockd::api::ApiToken;
use imei_lockd::config::secrets::tls_files;
use imei_lockd::config::{parse_addr, Config};
use imei_lockd::eir::Eir;
use imei_lockd::n5g_eir::{self, N5gEir, ServeLimits};
use imei_lockd::tls::{ReloadableTls, TlsListener, H2_AND_HTTP1};

/// How long an N5g-eir client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `eir.n5g.listen` must not be a TCP address another listener of this daemon takes.
///
/// # Errors
/// A message naming `eir.n5g.listen` and the key it collides with.
pub fn check(cfg: &Config) -> Result<(), String> {
    let Ok(Some(n5g)) = cfg.eir.n5g.listen_addr() else {
        return Ok(());
    };
    for (key, value) in [
        ("api.listen", &cfg.api.listen),
        ("metrics.listen", &cfg.metrics.listen),
    ] {
        let Ok(other) = parse_addr(key, value) else {
            continue;
        };
        let same_ip =
            n5g.ip() == other.ip() || n5g.ip().is_unspecified() || other.ip().is_unspecified();
        if n5g.port() == other.port() && same_ip {
            return Err(format!(
                "invalid value for key `eir.n5g.listen`: {n5g} collides with {key} {other}"
            ));
        }
    }
    Ok(())
}

/// The running listener's token and TLS, for SIGHUP.
pub struct N5gRuntime {
    token: ApiToken,
    tls: Option<Arc<ReloadableTls>>,
    listen: Option<SocketAddr>,
}

impl N5gRuntime {
    /// Applies `new`'s token and certificate; returns the keys that need a restart
    /// (`eir.n5g.listen`, `eir.n5g.idle_timeout_s`, TLS turned on or off).
    pub fn reload(&self, running: &Config, new: &Config) -> Vec<&'static str> {
        let mut restart = Vec::new();
        let new_n5g = &new.eir.n5g;
        if new_n5g.listen_addr().ok().flatten() != self.listen {
            restart.push("eir.n5g.listen");
        }
        if new_n5g.idle_timeout_s != running.eir.n5g.idle_timeout_s {
            restart.push("eir.n5g.idle_timeout_s");
        }
        if self.listen.is_some() {
            self.token.set(new_n5g.bearer_token().map(str::to_owned));
        }
        match (&self.tls, tls_files(&new_n5g.tls_cert, &new_n5g.tls_key)) {
            (Some(tls), Some(files)) => {
                let _ = tls.reload(files);
            }
            (None, None) => {}
            _ => restart.push("eir.n5g.tls_cert"),
        }
        restart
    }
}

/// Binds `[eir.n5g] listen` and spawns the server into `tasks` (nothing when not set).
///
/// # Errors
/// A message naming the key when the address cannot be bound or the TLS files not loaded.
pub async fn start(
    cfg: &Config,
    eir: Arc<Eir>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<N5gRuntime, String> {
    let token = ApiToken::new(cfg.eir.n5g.bearer_token().map(str::to_owned));
    let listen = cfg.eir.n5g.listen_addr().map_err(|e| e.to_string())?;
    let Some(addr) = listen else {
        return Ok(N5gRuntime {
            token,
            tls: None,
            listen: None,
        });
    };
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on eir.n5g.listen {addr}: {e}"))?;
    let tls = match tls_files(&cfg.eir.n5g.tls_cert, &cfg.eir.n5g.tls_key) {
        Some(files) => Some(Arc::new(
            ReloadableTls::with_alpn("n5g_eir", files, H2_AND_HTTP1)
                .map_err(|e| format!("eir.n5g TLS: {e}"))?,
        )),
        None => None,
    };
    let svc = Arc::new(N5gEir::new(eir, token.clone()));
    let limits = ServeLimits {
        idle_timeout: Duration::from_secs(cfg.eir.n5g.idle_timeout_s),
        ..ServeLimits::default()
    };
    tracing::info!(listen = %addr, tls = tls.is_some(), token = token.get().is_some(),
        "N5g-eir listening (HTTP/2 with prior knowledge and HTTP/1.1{})",
        if tls.is_some() { ", over TLS only" } else { "" });
    match &tls {
        Some(t) => {
            let listener = TlsListener::new(tcp, t.clone(), HANDSHAKE_TIMEOUT).tap_io(|s| {
                let _ = s.get_ref().0.set_nodelay(true);
            });
            tasks.spawn(async move {
                if let Err(e) = n5g_eir::serve(listener, svc, limits, stop).await {
                    tracing::error!(error = %e, server = "n5g_eir", "server stopped");
                }
            });
        }
        None => {
            let listener = tcp.tap_io(|s| {
                let _ = s.set_nodelay(true);
            });
            tasks.spawn(async move {
                if let Err(e) = n5g_eir::serve(listener, svc, limits, stop).await {
                    tracing::error!(error = %e, server = "n5g_eir", "server stopped");
                }
            });
        }
    }
    Ok(N5gRuntime { token, tls, listen })
}
