//! TLS for the daemon's HTTP listeners (`[api]` and `[metrics]` `tls_cert` / `tls_key`).
//!
//! - [`load`]: a PEM certificate chain and its PEM private key into a rustls server
//!   configuration (the `ring` provider, TLS 1.2 and 1.3, ALPN `http/1.1`), with an error that
//!   says which of the two files is at fault ([`TlsFileError::is_key`]).
//! - [`ReloadableTls`]: the configuration a listener hands to each new connection; SIGHUP swaps
//!   it ([`ReloadableTls::reload`]), and a pair of files that does not load keeps the running
//!   one (an ERROR line, `imei_lockd_tls_reloads_total{result="error"}`).
//! - [`TlsListener`]: a TCP listener whose connections come out TLS-terminated, for
//!   `axum::serve` or the API's own shell. Handshakes run concurrently (at most
//!   [`MAX_HANDSHAKES`]), each bounded by a timeout, so a client that connects and stays silent
//!   holds up nobody; failures are counted in `imei_lockd_tls_handshake_failures_total`.
//!
//! This module does not speak HTTP, never asks for client certificates, and does not watch the
//! files: they are read at start and on SIGHUP only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Most TLS handshakes a listener runs at once; connections beyond are closed at once.
pub const MAX_HANDSHAKES: usize = 256;

/// A certificate chain file and its private key file (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why a pair of TLS files does not make a server configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        key: bool,
        source: std::io::Error,
    },
    #[error("{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file", path.display())]
    NoCertificate { path: PathBuf },
    #[error(
        "{}: no PEM private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY) \
         in the file", path.display()
    )]
    NoKey { path: PathBuf },
    #[error("{}: not valid PEM: {message}", path.display())]
    Pem {
        path: PathBuf,
        key: bool,
        message: String,
    },
    #[error(
        "{} is not a usable private key for the certificate in {}: {message}",
        key.display(), cert.display()
    )]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

impl TlsFileError {
    /// Whether the private key file is at fault (else the certificate file).
    pub fn is_key(&self) -> bool {
        match self {
            Self::Read { key, .. } | Self::Pem { key, .. } => *key,
            Self::NoCertificate { .. } => false,
            Self::NoKey { .. } | Self::Mismatch { .. } => true,
        }
    }
}

fn read(path: &Path, key: bool) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read {
        path: path.to_path_buf(),
        key,
        source,
    })
}

/// Every certificate of the PEM file at `path`, in order (the server's first).
///
/// # Errors
/// [`TlsFileError`] when the file cannot be read, is not PEM, or holds no certificate.
pub fn read_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let pem = read(path, false)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsFileError::Pem {
            path: path.to_path_buf(),
            key: false,
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsFileError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of the PEM file at `path`.
///
/// # Errors
/// [`TlsFileError`] when the file cannot be read, is not PEM, or holds no private key.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let pem = read(path, true)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsFileError::NoKey {
            path: path.to_path_buf(),
        },
        other => TlsFileError::Pem {
            path: path.to_path_buf(),
            key: true,
            message: other.to_string(),
        },
    })
}

/// Reads both files into a server configuration: the `ring` provider, its safe default
/// protocol versions (TLS 1.2, 1.3), no client authentication, ALPN `http/1.1`.
///
/// # Errors
/// [`TlsFileError`] naming the file at fault; [`TlsFileError::Mismatch`] when the key is not
/// the certificate's.
pub fn load(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsFileError> {
    load_with_alpn(files, HTTP1)
}

/// ALPN of the API and metrics listeners.
pub const HTTP1: &[&[u8]] = &[b"http/1.1"];
/// ALPN of a listener that speaks HTTP/2 and HTTP/1.1 (N5g-eir), h2 preferred.
pub const H2_AND_HTTP1: &[&[u8]] = &[b"h2", b"http/1.1"];

/// [`load`] with the ALPN protocols `alpn` (in the server's order of preference).
///
/// # Errors
/// As [`load`].
pub fn load_with_alpn(files: &TlsFiles, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsFileError> {
    let chain = read_cert_chain(&files.cert)?;
    let key = read_private_key(&files.key)?;
    let mismatch = |e: rustls::Error| TlsFileError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        message: e.to_string(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(mismatch)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(mismatch)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The TLS configuration of one listener, swapped on SIGHUP: each new connection takes the
/// configuration current when it is accepted; connections already open keep theirs.
pub struct ReloadableTls {
    /// `api` or `metrics`: the `listener` label and log field.
    listener: &'static str,
    /// The files and what they held when last loaded; replaced whole, read once per
    /// connection (a short read lock, never held across an await).
    current: RwLock<(TlsFiles, Arc<ServerConfig>)>,
    /// The ALPN protocols offered ([`HTTP1`] unless built by [`ReloadableTls::with_alpn`]).
    alpn: &'static [&'static [u8]],
}

impl ReloadableTls {
    /// Loads `files` for `listener` (`api`, `metrics`) and registers its series at 0.
    ///
    /// # Errors
    /// [`TlsFileError`] naming the file at fault.
    pub fn new(listener: &'static str, files: TlsFiles) -> Result<Self, TlsFileError> {
        Self::with_alpn(listener, files, HTTP1)
    }

    /// [`ReloadableTls::new`] offering the ALPN protocols `alpn` (kept across reloads).
    ///
    /// # Errors
    /// [`TlsFileError`] naming the file at fault.
    pub fn with_alpn(
        listener: &'static str,
        files: TlsFiles,
        alpn: &'static [&'static [u8]],
    ) -> Result<Self, TlsFileError> {
        let config = load_with_alpn(&files, alpn)?;
        for result in ["ok", "error"] {
            metrics::counter!("imei_lockd_tls_reloads_total", "listener" => listener,
                "result" => result)
            .increment(0);
        }
        for reason in ["error", "timeout", "overload"] {
            metrics::counter!("imei_lockd_tls_handshake_failures_total", "listener" => listener,
                "reason" => reason)
            .increment(0);
        }
        tracing::info!(listener, cert = %files.cert.display(), key = %files.key.display(),
            "TLS certificate loaded");
        Ok(Self {
            listener,
            current: RwLock::new((files, config)),
            alpn,
        })
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().1.clone())
    }

    /// The files last loaded.
    pub fn files(&self) -> TlsFiles {
        self.current.read().0.clone()
    }

    /// Loads `files` (the same paths or new ones) for the connections accepted from now on.
    /// Files that do not load keep the running configuration: an ERROR line naming the file.
    /// Counted in `imei_lockd_tls_reloads_total{listener, result}`.
    ///
    /// # Errors
    /// The [`TlsFileError`], already logged.
    pub fn reload(&self, files: TlsFiles) -> Result<(), TlsFileError> {
        match load_with_alpn(&files, self.alpn) {
            Ok(config) => {
                tracing::info!(listener = self.listener, cert = %files.cert.display(),
                    key = %files.key.display(), "TLS certificate reloaded");
                *self.current.write() = (files, config);
                metrics::counter!("imei_lockd_tls_reloads_total", "listener" => self.listener,
                    "result" => "ok")
                .increment(1);
                Ok(())
            }
            Err(e) => {
                tracing::error!(listener = self.listener, error = %e,
                    "TLS certificate reload failed; new connections keep the running certificate");
                metrics::counter!("imei_lockd_tls_reloads_total", "listener" => self.listener,
                    "result" => "error")
                .increment(1);
                Err(e)
            }
        }
    }
}

/// What one handshake task yields.
type Handshake = (
    SocketAddr,
    Result<std::io::Result<TlsStream<TcpStream>>, ()>,
);

/// A TCP listener that yields TLS streams ([`axum::serve::Listener`]).
pub struct TlsListener {
    tcp: TcpListener,
    tls: Arc<ReloadableTls>,
    /// A handshake that takes longer is abandoned (label `timeout`).
    handshake_timeout: Duration,
    /// Handshakes in progress, at most [`MAX_HANDSHAKES`].
    handshakes: JoinSet<Handshake>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, tls: Arc<ReloadableTls>, handshake_timeout: Duration) -> Self {
        Self {
            tcp,
            tls,
            handshake_timeout,
            handshakes: JoinSet::new(),
        }
    }

    fn failed(&self, reason: &'static str) {
        metrics::counter!("imei_lockd_tls_handshake_failures_total",
            "listener" => self.tls.listener, "reason" => reason)
        .increment(1);
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                r = self.tcp.accept() => match r {
                    Ok((stream, remote)) => {
                        if self.handshakes.len() >= MAX_HANDSHAKES {
                            self.failed("overload");
                            tracing::warn!(listener = self.tls.listener, %remote,
                                max = MAX_HANDSHAKES, "too many TLS handshakes in progress: connection closed");
                            continue;
                        }
                        let acceptor = self.tls.acceptor();
                        let timeout = self.handshake_timeout;
                        self.handshakes.spawn(async move {
                            let r = tokio::time::timeout(timeout, acceptor.accept(stream)).await;
                            (remote, r.map_err(|_| ()))
                        });
                    }
                    Err(e) => {
                        tracing::warn!(listener = self.tls.listener, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(done) = self.handshakes.join_next() => match done {
                    Ok((remote, Ok(Ok(stream)))) => return (stream, remote),
                    Ok((remote, Ok(Err(e)))) => {
                        self.failed("error");
                        tracing::info!(listener = self.tls.listener, %remote, error = %e,
                            "TLS handshake failed (a plain-HTTP client, or one that does not trust the certificate)");
                    }
                    Ok((remote, Err(()))) => {
                        self.failed("timeout");
                        tracing::info!(listener = self.tls.listener, %remote,
                            timeout_s = self.handshake_timeout.as_secs(),
                            "TLS handshake not completed in time: disconnected");
                    }
                    Err(e) => tracing::warn!(listener = self.tls.listener, error = %e,
                        "TLS handshake task failed"),
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &tempfile::TempDir, cert: &str, key: &str) -> TlsFiles {
        let c = dir.path().join("cert.pem");
        let k = dir.path().join("key.pem");
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        TlsFiles { cert: c, key: k }
    }

    #[test]
    fn errors_name_the_file_at_fault() {
        let d = tempfile::tempdir().unwrap();
        let missing = TlsFiles {
            cert: d.path().join("nope.pem"),
            key: d.path().join("nope.key"),
        };
        let e = load(&missing).unwrap_err();
        assert!(!e.is_key() && e.to_string().contains("nope.pem"), "{e}");

        let e = load(&files(&d, "hello\n", "")).unwrap_err();
        assert!(matches!(e, TlsFileError::NoCertificate { .. }), "{e}");

        let broken = "-----BEGIN CERTIFICATE-----\nMIIB\n";
        let e = load(&files(&d, broken, "")).unwrap_err();
        assert!(!e.is_key(), "{e}");

        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = load(&files(&d, cert, "no key here\n")).unwrap_err();
        assert!(e.is_key() && matches!(e, TlsFileError::NoKey { .. }), "{e}");

        // A key that is no key at all for the (bogus) certificate.
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let e = load(&files(&d, cert, key)).unwrap_err();
        assert!(
            e.is_key() && matches!(e, TlsFileError::Mismatch { .. }),
            "{e}"
        );
    }
}
