//! imei-lock-load: a load generator for imei-lockd (and any RADIUS, Diameter Gx/S13 or N5g-eir
//! server).
//!
//! - `radius`: Access-Requests with 3GPP-IMSI, 3GPP-IMEISV and Message-Authenticator (or, with
//!   `--accounting`, Accounting-Requests), from one UDP socket per thread, up to `--window`
//!   outstanding per socket (Identifiers 0–255), closed loop (as fast as answers come) or open
//!   loop at `--rate` requests/s.
//! - `gx`: CER, then Gx CCR-I (and, with `--terminate`, CCR-T for every session) over
//!   `--connections` TCP connections, `--window` in flight each, answers matched by Hop-by-Hop id.
//!   With `--s13`, S13 ME-Identity-Check-Requests (User-Name = IMSI, Terminal-Information with
//!   IMEI and Software-Version) instead of CCR-I, on the same connections and pacing.
//!   `--threads` spreads the connections over fewer threads (one ppoll each).
//! - `n5g`: N5g-eir equipment checks over HTTP/2 cleartext (`n5g.rs` says why beside h2load).
//! - `echo-radius`, `echo-diameter`: the benchmark ceilings (`scripts/bench-radius.sh`,
//!   `scripts/bench-diameter.sh`): trivial servers that answer every request with success and do
//!   nothing else. They live here rather than in a separate binary because they share this
//!   tool's purpose and the project's codecs (their answers are valid: Message-Authenticator and
//!   Response Authenticator, CEA/CCA with Result-Code 2001).
//!
//! SIM `i` of the pool (`--sims`) has IMSI `--imsi-base + i × --stride` and IMEI `--imei-base +
//! i × --stride` (the same device every time, so a locked SIM matches after its first session;
//! `--mismatch-every N` presents another device every Nth request). Reports requests/s, answers
//! by code, timeouts, and latency percentiles (hdrhistogram), as text and with `--json` as one
//! JSON object (with the latency distribution, for charts). In open loop, latency counts from
//! the moment a request was due, not when it went out, so a generator that falls behind cannot
//! hide it (no coordinated omission).
//!
//! Plain threads and non-blocking sockets waited on with ppoll (`n5g` excepted: HTTP/2 is the `h2`
//! crate on a one-thread tokio runtime): each thread does all the I/O of its sockets, requests of one loop turn go out in one write (Diameter), which
//! is cheaper per request than a runtime and keeps the generator faster than the servers it
//! measures.

mod echo;
mod gx;
mod n5g;
mod pace;
mod radius;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use pace::Tally;

/// Load generator for imei-lockd: RADIUS, Diameter Gx/S13 and N5g-eir.
#[derive(Parser, Debug)]
#[command(name = "imei-lock-load", version, about)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// RADIUS Access-Request (or Accounting-Request) load over UDP.
    Radius(RadiusArgs),
    /// Diameter Gx CCR load over TCP.
    Gx(GxArgs),
    /// N5g-eir equipment checks over HTTP/2 (h2c).
    N5g(N5gArgs),
    /// Benchmark ceiling: a trivial RADIUS server answering every Access-Request with an
    /// Access-Accept (runs until killed).
    EchoRadius(EchoArgs),
    /// Benchmark ceiling: a trivial Diameter server answering CER and every CCR with 2001
    /// (runs until killed).
    EchoDiameter(EchoArgs),
}

#[derive(Args, Debug)]
struct EchoArgs {
    /// Address to serve on (UDP for echo-radius, TCP for echo-diameter).
    #[arg(long)]
    listen: SocketAddr,
    /// RADIUS shared secret (echo-radius).
    #[arg(long, default_value = "testing123")]
    secret: String,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Test length, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Send this many requests in all, then stop (0 = no limit; --duration still bounds the
    /// run). `--count` = `--sims` visits every SIM of the pool exactly once.
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Open loop: total requests per second (0 = closed loop, as fast as answers come).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Requests in flight per socket or connection.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Size of the SIM pool.
    #[arg(long, default_value_t = 10_000)]
    sims: u64,
    /// First IMSI of the pool (15 digits; SIM i is base + i).
    #[arg(long, default_value_t = 1_010_000_000_000)]
    imsi_base: u64,
    /// First IMEI (TAC+SNR) of the pool (SIM i presents base + i).
    #[arg(long, default_value_t = 35_000_000_000_000)]
    imei_base: u64,
    /// Spread the pool over the key space: SIM i has IMSI base + i × stride (and IMEI base +
    /// i × stride).
    #[arg(long, default_value_t = 1)]
    stride: u64,
    /// Present another device's IMEI on every Nth request of each worker (0 = never).
    #[arg(long, default_value_t = 0)]
    mismatch_every: u64,
    /// A request unanswered after this many milliseconds counts as a timeout.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct RadiusArgs {
    /// Server address (auth port, or acct port with --accounting).
    #[arg(long, default_value = "127.0.0.1:1812")]
    target: SocketAddr,
    #[arg(long, default_value = "testing123")]
    secret: String,
    /// Sockets (one thread each).
    #[arg(long, default_value_t = 2)]
    sockets: usize,
    /// Send Accounting-Request Interim-Updates instead of Access-Requests.
    #[arg(long)]
    accounting: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct GxArgs {
    #[arg(long, default_value = "127.0.0.1:3868")]
    target: SocketAddr,
    /// Our Origin-Hosts, comma-separated; connection i uses the (i mod n)th. Each must be a
    /// configured peer of the server, and a server keeps one connection per Origin-Host (RFC 6733
    /// §5.6.4), so give as many as --connections.
    #[arg(long, default_value = "pgw.localdomain", value_delimiter = ',')]
    origin_host: Vec<String>,
    #[arg(long, default_value = "localdomain")]
    origin_realm: String,
    /// TCP connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Threads driving them (0 = one per connection). `--threads 1` drives every connection
    /// from one thread: for latency in open loop, where more threads than the generator's CPUs
    /// would add the scheduler's time slices to the latencies measured.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Follow every CCR-I with a CCR-T of the same session.
    #[arg(long)]
    terminate: bool,
    /// Send S13 ME-Identity-Check-Requests instead of Gx CCR-I (the server must serve S13:
    /// `[eir.s13] enabled = true`); `--terminate` does not apply.
    #[arg(long)]
    s13: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct N5gArgs {
    /// Server address (`[eir.n5g] listen`; HTTP/2 cleartext, prior knowledge).
    #[arg(long, default_value = "127.0.0.1:8080")]
    target: SocketAddr,
    /// Bearer token (`[eir.n5g] token`), if the server checks one.
    #[arg(long, env = "IMEI_LOCK_LOAD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// HTTP/2 connections, all driven from one thread; `--window` streams in flight on each.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    #[command(flatten)]
    common: Common,
}

fn report(mode: &str, c: &Common, workers: usize, t: &Tally, elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let answered: u64 = t.codes.values().sum();
    let q = |p: f64| t.hist.value_at_quantile(p) as f64 / 1000.0;
    if c.json {
        // The latency distribution, for charts: (percentile, µs).
        let dist: Vec<(f64, f64)> = [
            1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0,
        ]
        .iter()
        .map(|&p| (p, q(p / 100.0)))
        .collect();
        let v = json!({
            "mode": mode,
            "workers": workers,
            "window": c.window,
            "rate_target": c.rate,
            "duration_s": secs,
            "sent": t.sent,
            "answered": answered,
            "answers_per_s": answered as f64 / secs,
            "codes": t.codes,
            "timeouts": t.timeouts,
            "errors": t.errors,
            "latency_us": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": t.hist.max() as f64 / 1000.0},
            "latency_dist_us": dist,
        });
        println!("{v}");
    } else {
        println!(
            "{mode}: {} sent, {answered} answered in {secs:.2} s = {:.0}/s, {} timeouts, {} errors",
            t.sent,
            answered as f64 / secs,
            t.timeouts,
            t.errors
        );
        let mut codes: Vec<_> = t.codes.iter().collect();
        codes.sort();
        for (k, v) in codes {
            println!("  {k}: {v}");
        }
        println!(
            "  latency µs: p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}",
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999)
        );
    }
}

fn run_workers<A: Send + Sync + 'static>(
    args: Arc<A>,
    workers: usize,
    f: fn(Arc<A>, u64, usize) -> Result<Tally, String>,
) -> Result<(Tally, Duration), String> {
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let a = args.clone();
            std::thread::spawn(move || f(a, w as u64, workers))
        })
        .collect();
    let mut total = Tally::new()?;
    for h in handles {
        let t = h.join().map_err(|_| "worker panicked".to_owned())??;
        total.merge(t);
    }
    Ok((total, started.elapsed()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.mode {
        Mode::Radius(a) => {
            let workers = a.sockets.max(1);
            let a = Arc::new(a);
            run_workers(a.clone(), workers, radius::radius_worker).map(|(t, e)| {
                let mode = if a.accounting {
                    "radius-acct"
                } else {
                    "radius-auth"
                };
                report(mode, &a.common, workers, &t, e);
                t.sent > 0 && t.codes.values().sum::<u64>() > 0
            })
        }
        Mode::Gx(a) => {
            let conns = a.connections.max(1);
            let workers = if a.threads == 0 {
                conns
            } else {
                a.threads.min(conns)
            };
            let a = Arc::new(a);
            run_workers(a.clone(), workers, gx::gx_worker).map(|(t, e)| {
                report("gx", &a.common, workers, &t, e);
                t.sent > 0 && t.codes.values().sum::<u64>() > 0
            })
        }
        Mode::N5g(a) => n5g::run(&a).map(|(t, e)| {
            report("n5g", &a.common, a.connections.max(1), &t, e);
            t.sent > 0 && t.codes.values().sum::<u64>() > 0
        }),
        Mode::EchoRadius(a) => echo::echo_radius(&a).map(|()| true),
        Mode::EchoDiameter(a) => echo::echo_diameter(&a).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("imei-lock-load: no answers");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("imei-lock-load: {e}");
            ExitCode::from(1)
        }
    }
}
