//! `n5g`: N5g-eir equipment checks (`GET /n5g-eir-eic/v1/equipment-status?pei=imeisv-…&supi=imsi-…`)
//! over HTTP/2 cleartext with prior knowledge, `--connections` connections with up to `--window`
//! streams in flight each, closed loop or open loop at `--rate`.
//!
//! Why not only h2load: h2load's `--rps` timer ticks every 100 ms at the finest, so each client
//! sends a tenth of a second's requests at once and its latencies are those of a full window
//! (the queueing of 8 × 64 streams), not those of the rate asked for; its `--timing-script-file`
//! paces exactly but did not exceed about 10 000 requests/s on one core here. This mode paces
//! each request to the microsecond (the driver spins on its own CPU between due times closer
//! than 2 ms) and counts latency from the moment a request was due, like the other modes.
//!
//! One thread, a current-thread tokio runtime and the `h2` crate (hyper's HTTP/2); a request is
//! a task that reports its status and latency back to the driver over a channel.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use h2::client::SendRequest;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

use super::pace::{quota_of, sim_of, Pacer, Tally};
use super::N5gArgs;

/// What became of one check.
enum Outcome {
    Status(&'static str, Duration),
    Timeout,
    Error,
}

/// Due times closer than this are waited for by spinning (tokio's timer has 1 ms steps).
const SPIN_BELOW: Duration = Duration::from_millis(2);

pub fn run(args: &N5gArgs) -> Result<(Tally, Duration), String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(drive(args))
}

async fn connect(target: SocketAddr) -> Result<SendRequest<&'static [u8]>, String> {
    let tcp = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect {target}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (send, conn) = h2::client::Builder::new()
        .handshake::<_, &'static [u8]>(tcp)
        .await
        .map_err(|e| format!("HTTP/2 handshake with {target}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("imei-lock-load: connection to {target}: {e}");
        }
    });
    Ok(send)
}

async fn drive(args: &N5gArgs) -> Result<(Tally, Duration), String> {
    let c = &args.common;
    let n = args.connections.max(1);
    let window = c.window.max(1);
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push((connect(args.target).await?, Arc::new(AtomicUsize::new(0))));
    }
    let token: Option<Arc<str>> = args.token.as_deref().map(|t| format!("Bearer {t}").into());
    let timeout = Duration::from_millis(c.timeout_ms);
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let room = Arc::new(Notify::new());
    let mut tally = Tally::new()?;
    let record = |tally: &mut Tally, o: Outcome| match o {
        Outcome::Status(code, latency) => tally.answer(code, latency),
        Outcome::Timeout => tally.timeouts += 1,
        Outcome::Error => tally.errors += 1,
    };

    let started_at = Instant::now();
    let end = started_at + Duration::from_secs_f64(c.duration);
    let quota = quota_of(c.count, 0, 1);
    let mut pacer = Pacer::new(c.rate, 1);
    // A request the pacer released that found every window full: it goes out (late, and its
    // latency counts from when it was due) as soon as a stream finishes.
    let mut held: Option<Option<Instant>> = None;
    let mut next = 0usize;
    while tally.sent < quota {
        while let Ok(o) = rx.try_recv() {
            record(&mut tally, o);
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = match held.take() {
            Some(due) => due,
            None => match pacer.due(now) {
                Ok(due) => due,
                Err(at) => {
                    let wait = at.saturating_duration_since(now);
                    if wait > SPIN_BELOW {
                        tokio::time::sleep(wait - Duration::from_millis(1)).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                    continue;
                }
            },
        };
        let free = (0..n).map(|j| (next + j) % n).find(|&j| {
            conns
                .get(j)
                .is_some_and(|(_, f)| f.load(Ordering::Relaxed) < window)
        });
        let Some((sr, in_flight)) = free.and_then(|j| conns.get(j)) else {
            held = Some(due);
            tokio::select! {
                () = room.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            continue;
        };
        next = free.map_or(0, |j| j + 1);
        let (imsi, imeisv) = sim_of(c, tally.sent, tally.sent);
        let uri = format!(
            "http://{}/n5g-eir-eic/v1/equipment-status?pei=imeisv-{imeisv}&supi=imsi-{imsi}",
            args.target
        );
        in_flight.fetch_add(1, Ordering::Relaxed);
        tally.sent += 1;
        let (sr, in_flight, tx, room) = (sr.clone(), in_flight.clone(), tx.clone(), room.clone());
        let token = token.clone();
        let due = due.unwrap_or(now);
        tokio::spawn(async move {
            let o = match tokio::time::timeout(timeout, check(sr, uri, token)).await {
                Ok(Ok(code)) => Outcome::Status(code, due.elapsed()),
                Ok(Err(_)) => Outcome::Error,
                Err(_) => Outcome::Timeout,
            };
            in_flight.fetch_sub(1, Ordering::Relaxed);
            room.notify_one();
            let _ = tx.send(o);
        });
    }
    drop(tx);
    while let Some(o) = rx.recv().await {
        record(&mut tally, o);
    }
    Ok((tally, started_at.elapsed()))
}

/// One equipment check: the status of the answer, its body read (and its flow-control credit
/// given back, or the connection's window would run dry after a few thousand answers).
async fn check(
    sr: SendRequest<&'static [u8]>,
    uri: String,
    token: Option<Arc<str>>,
) -> Result<&'static str, h2::Error> {
    let mut sr = sr.ready().await?;
    let mut req = http::Request::get(uri);
    if let Some(t) = token.as_deref() {
        req = req.header(http::header::AUTHORIZATION, t);
    }
    let Ok(req) = req.body(()) else {
        return Ok("bad-request");
    };
    let (resp, _) = sr.send_request(req, true)?;
    let resp = resp.await?;
    let code = status_label(resp.status().as_u16());
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Ok(code)
}

/// Status codes as labels without an allocation per answer.
fn status_label(s: u16) -> &'static str {
    match s {
        200 => "200",
        400 => "400",
        401 => "401",
        404 => "404",
        503 => "503",
        _ => "other",
    }
}
