//! A webhook receiver for alert tests: a tiny HTTP/1.1 server on loopback, plain or HTTPS (a
//! test CA and a `localhost` certificate made at test time by [`super::testca`], served with
//! rustls), that counts the POSTs to `/alerts` and keeps their headers and bodies (one request
//! per connection: it answers with `Connection: close`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One POST to /alerts as received.
#[derive(Clone, Debug)]
#[allow(dead_code)] // not every test binary that includes this module reads every field
pub struct Posted {
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[allow(dead_code)]
impl Posted {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A tiny HTTP server counting POSTs to /alerts (answers 204, or `fail_status` to the first
/// `fail_first`).
pub struct Receiver {
    pub port: u16,
    pub posts: Arc<AtomicUsize>,
    pub bodies: Arc<parking_lot::Mutex<Vec<String>>>,
    pub requests: Arc<parking_lot::Mutex<Vec<Posted>>>,
}

/// A test CA and a server certificate for `localhost` / 127.0.0.1 signed by it (PEM files).
#[allow(dead_code)]
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

#[allow(dead_code)]
impl TestPki {
    /// Generates the CA and the certificate (see [`super::testca`]).
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().unwrap();
        super::testca::make_ca(dir.path());
        super::testca::make_cert(dir.path(), "srv", "localhost", "1001");
        let p = |n: &str| dir.path().join(n);
        Self {
            ca_pem: p("ca.pem"),
            cert_pem: p("srv.pem"),
            key_pem: p("srv.key"),
            dir,
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert_pem)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&self.key_pem).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        )
    }
}

struct Shared {
    posts: Arc<AtomicUsize>,
    bodies: Arc<parking_lot::Mutex<Vec<String>>>,
    requests: Arc<parking_lot::Mutex<Vec<Posted>>>,
    fail_first: usize,
    fail_status: &'static str,
}

impl Shared {
    /// Reads one request from `conn` and answers it.
    fn serve(&self, conn: &mut (impl Read + Write)) {
        let mut r = BufReader::new(&mut *conn);
        let mut line = String::new();
        if r.read_line(&mut line).is_err() {
            return;
        }
        let mut len = 0usize;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                let n = n.trim().to_ascii_lowercase();
                if n == "content-length" {
                    len = v.trim().parse().unwrap_or(0);
                }
                headers.push((n, v.trim().to_string()));
            }
        }
        let mut body = vec![0u8; len];
        let _ = r.read_exact(&mut body);
        drop(r);
        let mut answer =
            "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string();
        if line.starts_with("POST /alerts") {
            let n = self.posts.fetch_add(1, Ordering::SeqCst);
            self.bodies
                .lock()
                .push(String::from_utf8_lossy(&body).into_owned());
            self.requests.lock().push(Posted { headers, body });
            if n < self.fail_first {
                answer = format!(
                    "HTTP/1.1 {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.fail_status
                );
            }
        }
        let _ = conn.write_all(answer.as_bytes());
        let _ = conn.flush();
    }
}

impl Receiver {
    pub fn start() -> Self {
        Self::start_failing(0)
    }

    /// Answers the first `fail_first` POSTs with 503 Service Unavailable, later ones with 204.
    pub fn start_failing(fail_first: usize) -> Self {
        Self::listen(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            fail_first,
            "503 Service Unavailable",
            None,
        )
    }

    /// On a port chosen beforehand (a webhook configured while it was still down).
    #[allow(dead_code)] // not every test binary that includes this module uses it
    pub fn start_on(port: u16) -> Self {
        Self::listen(
            TcpListener::bind(("127.0.0.1", port)).unwrap(),
            0,
            "503 Service Unavailable",
            None,
        )
    }

    /// HTTPS with `pki`'s certificate; answers the first `fail_first` POSTs with 500.
    #[allow(dead_code)]
    pub fn start_tls(pki: &TestPki, fail_first: usize) -> Self {
        Self::listen(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            fail_first,
            "500 Internal Server Error",
            Some(pki.server_config()),
        )
    }

    fn listen(
        l: TcpListener,
        fail_first: usize,
        fail_status: &'static str,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let port = l.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            posts: Arc::new(AtomicUsize::new(0)),
            bodies: Arc::new(parking_lot::Mutex::new(Vec::new())),
            requests: Arc::new(parking_lot::Mutex::new(Vec::new())),
            fail_first,
            fail_status,
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                match &tls {
                    None => s.serve(&mut conn),
                    Some(cfg) => {
                        let Ok(server) = rustls::ServerConnection::new(cfg.clone()) else {
                            continue;
                        };
                        let mut stream = rustls::StreamOwned::new(server, conn);
                        s.serve(&mut stream);
                        stream.conn.send_close_notify();
                        let _ = stream.flush();
                    }
                }
            }
        });
        Self {
            port,
            posts: shared.posts.clone(),
            bodies: shared.bodies.clone(),
            requests: shared.requests.clone(),
        }
    }

    pub fn count(&self) -> usize {
        self.posts.load(Ordering::SeqCst)
    }

    /// Waits (until `within` has passed) for a POSTed JSON body that `matches`.
    #[allow(dead_code)]
    pub fn wait_body(
        &self,
        within: Duration,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let found =
                self.bodies.lock().iter().any(|b| {
                    serde_json::from_str::<serde_json::Value>(b).is_ok_and(|v| matches(&v))
                });
            if found {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `n` POSTs arrived (or the deadline), then returns the count.
    pub fn wait_for(&self, n: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        while self.count() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.count()
    }
}
