//! A webhook receiver for alert tests: a tiny HTTP/1.1 server on loopback that counts the POSTs
//! to `/alerts` and keeps their bodies (one request per connection, as reqwest sends them with
//! `Connection: close` answers).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A tiny HTTP server counting POSTs to /alerts (answers 204, or 503 to the first `fail_first`).
pub struct Receiver {
    pub port: u16,
    pub posts: Arc<AtomicUsize>,
    pub bodies: Arc<parking_lot::Mutex<Vec<String>>>,
}

impl Receiver {
    pub fn start() -> Self {
        Self::start_failing(0)
    }

    /// Answers the first `fail_first` POSTs with 503 Service Unavailable, later ones with 204.
    pub fn start_failing(fail_first: usize) -> Self {
        Self::listen(TcpListener::bind("127.0.0.1:0").unwrap(), fail_first)
    }

    /// On a port chosen beforehand (a webhook configured while it was still down).
    #[allow(dead_code)] // not every test binary that includes this module uses it
    pub fn start_on(port: u16) -> Self {
        Self::listen(TcpListener::bind(("127.0.0.1", port)).unwrap(), 0)
    }

    fn listen(l: TcpListener, fail_first: usize) -> Self {
        let port = l.local_addr().unwrap().port();
        let posts = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let (p, b) = (posts.clone(), bodies.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                // One request per connection is enough for this test.
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                let mut answer: &[u8] =
                    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                if line.starts_with("POST /alerts") {
                    let n = p.fetch_add(1, Ordering::SeqCst);
                    b.lock().push(String::from_utf8_lossy(&body).into_owned());
                    if n < fail_first {
                        answer = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\
                                   Connection: close\r\n\r\n";
                    }
                }
                let _ = conn.write_all(answer);
            }
        });
        Self {
            port,
            posts,
            bodies,
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
