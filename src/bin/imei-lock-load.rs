//! imei-lock-load: a load generator for imei-lockd (and any RADIUS or Diameter Gx server).
//!
//! - `radius`: Access-Requests with 3GPP-IMSI, 3GPP-IMEISV and Message-Authenticator (or, with
//!   `--accounting`, Accounting-Requests), from one UDP socket per thread, up to `--window`
//!   outstanding per socket (Identifiers 0–255), closed loop (as fast as answers come) or open
//!   loop at `--rate` requests/s.
//! - `gx`: CER, then Gx CCR-I (and, with `--terminate`, CCR-T for every session) over
//!   `--connections` TCP connections, `--window` in flight each, answers matched by Hop-by-Hop id.
//!   With `--s13`, S13 ME-Identity-Check-Requests (User-Name = IMSI, Terminal-Information with
//!   IMEI and Software-Version) instead of CCR-I, on the same connections and pacing.
//!
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
//! Plain threads and non-blocking sockets waited on with ppoll: one thread per socket or
//! connection does all its I/O, requests of one loop turn go out in one write (Diameter), which
//! is cheaper per request than a runtime and keeps the generator faster than the servers it
//! measures.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use serde_json::json;

use imei_lockd::diameter::codec::dict::{self, VENDOR_3GPP};
use imei_lockd::diameter::codec::{Avp, Decoder, Message, HEADER_LEN};
use imei_lockd::imei::Imei;
use imei_lockd::radius::codec::Code;
use imei_lockd::radius::encode::{
    encode_access_request, encode_accounting_request, encode_response,
};
use imei_lockd::radius::vsa::encode_vsa;

const APP_GX: u32 = 16_777_238;
const APP_S6B: u32 = 16_777_272;
const APP_S13: u32 = 16_777_252;

/// Load generator for imei-lockd: RADIUS and Diameter Gx.
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
    /// TCP connections (one thread each).
    #[arg(long, default_value_t = 1)]
    connections: usize,
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

/// What one worker measured.
struct Tally {
    sent: u64,
    codes: HashMap<&'static str, u64>,
    timeouts: u64,
    errors: u64,
    hist: Histogram<u64>,
}

impl Tally {
    fn new() -> Result<Self, String> {
        Ok(Self {
            sent: 0,
            codes: HashMap::new(),
            timeouts: 0,
            errors: 0,
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?,
        })
    }

    fn answer(&mut self, code: &'static str, latency: Duration) {
        *self.codes.entry(code).or_default() += 1;
        let _ = self.hist.record((latency.as_nanos() as u64).max(1));
    }

    fn merge(&mut self, o: Self) {
        self.sent += o.sent;
        self.timeouts += o.timeouts;
        self.errors += o.errors;
        for (k, v) in o.codes {
            *self.codes.entry(k).or_default() += v;
        }
        let _ = self.hist.add(&o.hist);
    }
}

/// Paces one worker in open-loop mode: the time the next request is due.
struct Pacer {
    start: Instant,
    interval: Option<Duration>,
    n: u64,
}

impl Pacer {
    fn new(total_rate: u64, workers: usize) -> Self {
        let per = total_rate as f64 / workers.max(1) as f64;
        Self {
            start: Instant::now(),
            interval: (per > 0.0).then(|| Duration::from_secs_f64(1.0 / per)),
            n: 0,
        }
    }

    /// Closed loop: `Ok(None)`, send now. Open loop: `Ok(Some(due))` when the next request was
    /// due at or before `now` (and takes it), else `Err(when it is due)`.
    fn due(&mut self, now: Instant) -> Result<Option<Instant>, Instant> {
        match self.interval {
            None => Ok(None),
            Some(iv) => {
                let due = self.start + iv.mul_f64(self.n as f64);
                if now >= due {
                    self.n += 1;
                    Ok(Some(due))
                } else {
                    Err(due)
                }
            }
        }
    }
}

/// This worker's share of `--count` (0 = no limit): worker w sends SIMs w, w + workers, ...
fn quota_of(count: u64, seed: u64, workers: usize) -> u64 {
    let w = workers.max(1) as u64;
    if count == 0 {
        u64::MAX
    } else {
        count / w + u64::from(seed < count % w)
    }
}

/// The SIM of request `k` (numbered across workers) and the device it presents; `n` is the
/// request's number within its worker, so that every worker presents another device on every
/// `--mismatch-every`th request whatever share of the load it gets.
fn sim_of(c: &Common, k: u64, n: u64) -> (String, String) {
    let i = (k % c.sims.max(1)) * c.stride.max(1);
    let imsi = format!("{:015}", c.imsi_base + i);
    let mismatch = c.mismatch_every > 0 && n % c.mismatch_every == c.mismatch_every - 1;
    let dev = c.imei_base + i + if mismatch { 50_000_000 } else { 0 };
    let imei = Imei::from_u64(dev % 100_000_000_000_000)
        .map_or_else(|| "35000000000000".to_owned(), |x| x.to_string());
    (imsi, format!("{imei}01"))
}

/// Waits until `fd` is ready for `events` or `timeout` passes (ppoll: nanosecond timeouts, which
/// open-loop pacing at 100k/s needs; std only offers per-socket timeouts that cost a syscall to
/// change).
#[allow(unsafe_code)]
fn wait_fd(fd: RawFd, events: libc::c_short, timeout: Duration) {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `p` is one live pollfd (nfds = 1), `ts` a live timespec, no signal mask; ppoll(2)
    // only reads them and writes `p.revents`. The result (ready, timeout or EINTR) is not needed:
    // the caller tries its non-blocking I/O again either way.
    unsafe {
        libc::ppoll(&mut p, 1, &ts, std::ptr::null());
    }
}

/// Timer slack of this thread down to 1 ns, so short ppoll timeouts (open-loop pacing) are not
/// rounded up to the default 50 µs.
#[allow(unsafe_code)]
fn fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

fn is_would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// How often outstanding requests are checked for their timeout.
const TIMEOUT_SCAN: Duration = Duration::from_millis(10);
/// Longest wait for an answer before the loop looks at the clock again.
const IDLE_WAIT: Duration = Duration::from_millis(5);

/// A socket receive buffer large enough that the generator itself does not drop answers.
fn big_recv_buffer(s: &UdpSocket) {
    let _ = socket2::SockRef::from(s).set_recv_buffer_size(4 << 20);
}

fn radius_worker(args: Arc<RadiusArgs>, seed: u64, workers: usize) -> Result<Tally, String> {
    fine_timer_slack();
    let c = &args.common;
    let sock = UdpSocket::bind(if args.target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .map_err(|e| e.to_string())?;
    big_recv_buffer(&sock);
    sock.connect(args.target).map_err(|e| e.to_string())?;
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    let fd = sock.as_raw_fd();
    let mut tally = Tally::new()?;
    let window = c.window.clamp(1, 256);
    let timeout = Duration::from_millis(c.timeout_ms);
    let mut outstanding: [Option<Instant>; 256] = [None; 256];
    let mut in_flight = 0usize;
    let mut next_id = 0u8;
    let mut k = seed;
    let mut pacer = Pacer::new(c.rate, workers);
    let end = Instant::now() + Duration::from_secs_f64(c.duration);
    let quota = quota_of(c.count, seed, workers);
    let mut last_scan = Instant::now();
    let mut buf = [0u8; 4096];
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    loop {
        let now = Instant::now();
        let sending = now < end && tally.sent < quota;
        if (!sending && in_flight == 0) || now > end + timeout {
            break;
        }
        let mut next_due = None;
        let mut progressed = false;
        while sending && in_flight < window && tally.sent < quota {
            let due = match pacer.due(now) {
                Ok(due) => due,
                Err(later) => {
                    next_due = Some(later);
                    break;
                }
            };
            // A free Identifier: `in_flight < window <= 256` guarantees one.
            let mut tries = 0;
            while outstanding[usize::from(next_id)].is_some() && tries < 256 {
                next_id = next_id.wrapping_add(1);
                tries += 1;
            }
            let (imsi, imeisv) = sim_of(c, k, tally.sent);
            k += workers as u64;
            let vsa = encode_vsa(
                10415,
                &[(1, imsi.as_bytes()), (20, imeisv.as_bytes()), (21, &[6])],
            )
            .map_err(|e| e.to_string())?;
            let attrs: [(u8, &[u8]); 3] = [(1, imsi.as_bytes()), (30, b"iot.apn"), (26, &vsa)];
            let pkt = if args.accounting {
                let status = 3u32.to_be_bytes();
                let acct: [(u8, &[u8]); 5] = [
                    (1, imsi.as_bytes()),
                    (40, &status),
                    (44, imsi.as_bytes()),
                    (30, b"iot.apn"),
                    (26, &vsa),
                ];
                encode_accounting_request(next_id, &acct, args.secret.as_bytes(), false)
            } else {
                let mut auth = [0u8; 16];
                for chunk in auth.chunks_mut(8) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    chunk.copy_from_slice(&rng.to_le_bytes());
                }
                encode_access_request(
                    Code::AccessRequest,
                    next_id,
                    &auth,
                    &attrs,
                    args.secret.as_bytes(),
                    true,
                )
            }
            .map_err(|e| e.to_string())?;
            match sock.send(&pkt) {
                Ok(_) => {
                    // Open loop: latency counts from when the request was due, so a generator
                    // that falls behind shows up in the figures (no coordinated omission).
                    outstanding[usize::from(next_id)] = Some(due.unwrap_or_else(Instant::now));
                    in_flight += 1;
                    tally.sent += 1;
                }
                Err(e) if is_would_block(&e) => {
                    tally.errors += 1;
                    break;
                }
                Err(_) => tally.errors += 1,
            }
            progressed = true;
            next_id = next_id.wrapping_add(1);
        }
        loop {
            match sock.recv(&mut buf) {
                Ok(n) if n >= 20 => {
                    progressed = true;
                    let (code, id) = (buf[0], usize::from(buf[1])); // n >= 20: both present
                    if let Some(t0) = outstanding[id].take() {
                        in_flight -= 1;
                        let code = match code {
                            2 => "accept",
                            3 => "reject",
                            5 => "accounting_response",
                            _ => "other",
                        };
                        tally.answer(code, t0.elapsed());
                    }
                }
                Ok(_) => tally.errors += 1,
                Err(e) if is_would_block(&e) => break,
                Err(_) => {
                    tally.errors += 1;
                    break;
                }
            }
        }
        let now = Instant::now();
        if now.duration_since(last_scan) >= TIMEOUT_SCAN {
            last_scan = now;
            for slot in outstanding.iter_mut() {
                if slot.is_some_and(|t0| now.saturating_duration_since(t0) > timeout) {
                    *slot = None;
                    in_flight -= 1;
                    tally.timeouts += 1;
                }
            }
        }
        if !progressed {
            let wait = next_due.map_or(IDLE_WAIT, |d| {
                d.saturating_duration_since(now).min(IDLE_WAIT)
            });
            wait_fd(fd, libc::POLLIN, wait);
        }
    }
    Ok(tally)
}

/// Top-level AVPs of a Diameter frame as (code, data), for the generator and the ceiling's
/// answers: a light scan that stops at the first AVP that does not fit (the full decoder
/// allocates every AVP, which would make the generator slower than what it measures).
fn raw_avps(frame: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let mut rest = frame.get(HEADER_LEN..).unwrap_or_default();
    std::iter::from_fn(move || {
        let code = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        let flags = *rest.get(4)?;
        let len = u32::from_be_bytes([0, *rest.get(5)?, *rest.get(6)?, *rest.get(7)?]) as usize;
        let hdr = if flags & 0x80 != 0 { 12 } else { 8 };
        let data = rest.get(hdr..len)?;
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((code, data))
    })
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The length of the first complete Diameter frame in `buf`, if there is one.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let len = be32(buf, 0)? as usize & 0x00ff_ffff;
    (len >= HEADER_LEN && buf.len() >= len).then_some(len)
}

/// A Diameter connection with a read buffer.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    decoder: Decoder,
}

impl Conn {
    fn send(&mut self, m: &Message) -> Result<(), String> {
        let b = m.encode().map_err(|e| e.to_string())?;
        self.s.write_all(&b).map_err(|e| e.to_string())
    }

    /// The next complete message, or None on a read timeout.
    fn read(&mut self) -> Result<Option<Message>, String> {
        loop {
            if let Some(len) = self
                .decoder
                .peek_length(&self.buf)
                .map_err(|e| e.to_string())?
            {
                if self.buf.len() >= len {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    return self
                        .decoder
                        .decode(&frame)
                        .map(Some)
                        .map_err(|e| e.to_string());
                }
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return Err("connection closed by the server".into()),
                Ok(n) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if is_would_block(&e) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

fn ccr(
    args: &GxArgs,
    host: &str,
    session: &str,
    imsi: &str,
    imeisv: &str,
    kind: u32,
) -> Result<Message, String> {
    let mut m = Message::request(272, APP_GX, true)
        .with(Avp::utf8(dict::SESSION_ID, 0, session))
        .with(Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_GX))
        .with(Avp::utf8(dict::ORIGIN_HOST, 0, host))
        .with(Avp::utf8(dict::ORIGIN_REALM, 0, &args.origin_realm))
        .with(Avp::utf8(dict::DESTINATION_REALM, 0, &args.origin_realm))
        .with(Avp::u32(dict::CC_REQUEST_TYPE, 0, kind))
        .with(Avp::u32(dict::CC_REQUEST_NUMBER, 0, u32::from(kind == 3)));
    let sub = Avp::grouped(
        dict::SUBSCRIPTION_ID,
        0,
        &[
            Avp::u32(dict::SUBSCRIPTION_ID_TYPE, 0, 1),
            Avp::utf8(dict::SUBSCRIPTION_ID_DATA, 0, imsi),
        ],
    )
    .map_err(|e| e.to_string())?;
    m.push(sub);
    if kind == 1 {
        let uei = Avp::grouped(
            dict::USER_EQUIPMENT_INFO,
            0,
            &[
                Avp::u32(dict::USER_EQUIPMENT_INFO_TYPE, 0, 0),
                Avp::new(dict::USER_EQUIPMENT_INFO_VALUE, 0, imeisv.as_bytes()),
            ],
        )
        .map_err(|e| e.to_string())?;
        m.push(uei);
        m.push(Avp::utf8(dict::CALLED_STATION_ID, 0, "iot.apn"));
    }
    Ok(m)
}

/// An S13 ECR: User-Name = IMSI, Terminal-Information { IMEI (14 digits), Software-Version }.
fn ecr(
    args: &GxArgs,
    host: &str,
    session: &str,
    imsi: &str,
    imeisv: &str,
) -> Result<Message, String> {
    let (imei, sv) = imeisv.split_at(imeisv.len().min(14));
    let ti = Avp::grouped(
        1401,
        VENDOR_3GPP,
        &[
            Avp::utf8(1402, VENDOR_3GPP, imei),
            Avp::utf8(1403, VENDOR_3GPP, if sv.is_empty() { "00" } else { sv }),
        ],
    )
    .map_err(|e| e.to_string())?;
    Ok(Message::request(324, APP_S13, true)
        .with(Avp::utf8(dict::SESSION_ID, 0, session))
        .with(Avp::u32(dict::AUTH_SESSION_STATE, 0, 1))
        .with(Avp::utf8(dict::ORIGIN_HOST, 0, host))
        .with(Avp::utf8(dict::ORIGIN_REALM, 0, &args.origin_realm))
        .with(Avp::utf8(dict::DESTINATION_REALM, 0, &args.origin_realm))
        .with(ti)
        .with(Avp::utf8(dict::USER_NAME, 0, imsi)))
}

/// A Gx request in flight: when it was sent (or due), and the CCR-T to send after it.
type Pending = (Instant, Option<(String, String)>);

fn gx_worker(args: Arc<GxArgs>, seed: u64, workers: usize) -> Result<Tally, String> {
    fine_timer_slack();
    let c = &args.common;
    let hosts = &args.origin_host;
    let host = hosts
        .get(seed as usize % hosts.len().max(1))
        .ok_or("no --origin-host")?
        .clone();
    let s = TcpStream::connect(args.target).map_err(|e| format!("connect {}: {e}", args.target))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(5)))
        .map_err(|e| e.to_string())?;
    let mut conn = Conn {
        s,
        buf: Vec::new(),
        decoder: Decoder::default(),
    };
    let vsai = |app| {
        Avp::grouped(
            dict::VENDOR_SPECIFIC_APPLICATION_ID,
            0,
            &[
                Avp::u32(dict::VENDOR_ID, 0, VENDOR_3GPP),
                Avp::u32(dict::AUTH_APPLICATION_ID, 0, app),
            ],
        )
        .map_err(|e| e.to_string())
    };
    let local_ip = conn.s.local_addr().map_err(|e| e.to_string())?.ip();
    let mut cer = Message::request(257, 0, false)
        .with(Avp::utf8(dict::ORIGIN_HOST, 0, &host))
        .with(Avp::utf8(dict::ORIGIN_REALM, 0, &args.origin_realm))
        .with(Avp::address(dict::HOST_IP_ADDRESS, 0, local_ip))
        .with(Avp::u32(dict::VENDOR_ID, 0, 0))
        .with(Avp::utf8(dict::PRODUCT_NAME, 0, "imei-lock-load"))
        .with(vsai(APP_GX)?)
        .with(vsai(APP_S6B)?);
    if args.s13 {
        cer.push(vsai(APP_S13)?);
    }
    cer.header.hop_by_hop = 1;
    cer.header.end_to_end = (seed as u32) << 20;
    conn.send(&cer)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match conn.read()? {
            Some(m) if m.header.code == 257 => {
                let rc = m.result_code().map_or(0, |r| r.0);
                if rc != 2001 {
                    return Err(format!("CEA Result-Code {rc}"));
                }
                break;
            }
            Some(_) => {}
            None if Instant::now() > deadline => return Err("no CEA".into()),
            None => {}
        }
    }

    let Conn {
        s, buf: mut rbuf, ..
    } = conn;
    let mut s = s;
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    let fd = s.as_raw_fd();
    let mut tally = Tally::new()?;
    let timeout = Duration::from_millis(c.timeout_ms);
    let mut outstanding: HashMap<u32, Pending> = HashMap::new();
    let mut hbh = 1u32;
    let e2e_base = ((seed as u32) & 0xfff) << 20;
    let mut k = seed;
    let mut pacer = Pacer::new(c.rate, workers);
    let end = Instant::now() + Duration::from_secs_f64(c.duration);
    let mut last_scan = Instant::now();
    let quota = quota_of(c.count, seed, workers);
    let mut started = 0u64;
    let mut pending_t: Vec<(String, String)> = Vec::new();
    // Encoded requests not yet written (one write per loop turn, not one per request).
    let mut wbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        let now = Instant::now();
        let sending = now < end && started < quota;
        if (!sending && outstanding.is_empty() && pending_t.is_empty() && wbuf.is_empty())
            || now > end + timeout
        {
            break;
        }
        let mut next_due = None;
        let mut progressed = false;
        while outstanding.len() < c.window && (sending || !pending_t.is_empty()) {
            let (msg, follow, due) = if let Some((session, imsi)) = pending_t.pop() {
                (ccr(&args, &host, &session, &imsi, "", 3)?, None, None)
            } else if sending && started < quota {
                match pacer.due(now) {
                    Ok(due) => {
                        let (imsi, imeisv) = sim_of(c, k, started);
                        started += 1;
                        let session = format!("{host};{seed};{k}");
                        k += workers as u64;
                        if args.s13 {
                            (ecr(&args, &host, &session, &imsi, &imeisv)?, None, due)
                        } else {
                            let follow = args.terminate.then(|| (session.clone(), imsi.clone()));
                            (ccr(&args, &host, &session, &imsi, &imeisv, 1)?, follow, due)
                        }
                    }
                    Err(later) => {
                        next_due = Some(later);
                        break;
                    }
                }
            } else {
                break;
            };
            hbh = hbh.wrapping_add(1);
            let mut msg = msg;
            msg.header.hop_by_hop = hbh;
            msg.header.end_to_end = e2e_base | (hbh & 0xf_ffff);
            wbuf.extend_from_slice(&msg.encode().map_err(|e| e.to_string())?);
            outstanding.insert(hbh, (due.unwrap_or_else(Instant::now), follow));
            tally.sent += 1;
            progressed = true;
        }
        if !wbuf.is_empty() {
            match s.write(&wbuf) {
                Ok(n) => {
                    wbuf.drain(..n);
                    progressed = true;
                }
                Err(e) if is_would_block(&e) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("connection closed by the server".into()),
            Ok(n) => {
                progressed = true;
                rbuf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                let mut at = 0;
                while let Some(len) = rbuf.get(at..).and_then(frame_len) {
                    let frame = rbuf.get(at..at + len).unwrap_or_default();
                    at += len;
                    let flags = frame.get(4).copied().unwrap_or(0);
                    let code = be32(frame, 4).unwrap_or(0) & 0x00ff_ffff;
                    if flags & 0x80 != 0 {
                        // Answer the server's DWR so the connection stays up.
                        if code == 280 {
                            let hdr = Decoder::default()
                                .decode_header(frame)
                                .map_err(|e| e.to_string())?;
                            let a = Message::answer_to(&hdr)
                                .with(Avp::u32(dict::RESULT_CODE, 0, 2001))
                                .with(Avp::utf8(dict::ORIGIN_HOST, 0, &host))
                                .with(Avp::utf8(dict::ORIGIN_REALM, 0, &args.origin_realm));
                            wbuf.extend_from_slice(&a.encode().map_err(|e| e.to_string())?);
                        }
                        continue;
                    }
                    let id = be32(frame, 12).unwrap_or(0);
                    if let Some((t0, follow)) = outstanding.remove(&id) {
                        let rc = raw_avps(frame)
                            .find(|&(code, _)| code == dict::RESULT_CODE)
                            .and_then(|(_, d)| be32(d, 0))
                            .unwrap_or(0);
                        tally.answer(result_code_label(rc), t0.elapsed());
                        if let Some(f) = follow {
                            pending_t.push(f);
                        }
                    }
                }
                rbuf.drain(..at);
            }
            Err(e) if is_would_block(&e) => {}
            Err(e) => return Err(e.to_string()),
        }
        let now = Instant::now();
        if now.duration_since(last_scan) >= TIMEOUT_SCAN {
            last_scan = now;
            let before = outstanding.len();
            outstanding.retain(|_, (t0, _)| now.saturating_duration_since(*t0) <= timeout);
            tally.timeouts += (before - outstanding.len()) as u64;
        }
        if !progressed {
            let wait = next_due.map_or(IDLE_WAIT, |d| {
                d.saturating_duration_since(now).min(IDLE_WAIT)
            });
            let events = if wbuf.is_empty() {
                libc::POLLIN
            } else {
                libc::POLLIN | libc::POLLOUT
            };
            wait_fd(fd, events, wait);
        }
    }
    Ok(tally)
}

/// Result-Codes as labels without an allocation per answer.
fn result_code_label(rc: u32) -> &'static str {
    match rc {
        2001 => "2001",
        3004 => "3004",
        5003 => "5003",
        5012 => "5012",
        0 => "none",
        _ => "other",
    }
}

/// The ceiling of `bench-radius.sh`: answers every Access-Request (and Accounting-Request) with a
/// minimal valid answer — Message-Authenticator first, Response Authenticator — signed with the
/// project's encoder, from one thread doing blocking recv/send. No client table, no decoding of
/// attributes, no decision: what is left is the cost any RADIUS server pays per packet.
fn echo_radius(a: &EchoArgs) -> Result<(), String> {
    let sock = UdpSocket::bind(a.listen).map_err(|e| format!("bind {}: {e}", a.listen))?;
    // The same receive buffer the daemon asks for (radius.recv_buffer_bytes default).
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(8 << 20);
    eprintln!("echo-radius listening on {}", a.listen);
    let mut buf = [0u8; 4096];
    loop {
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if is_would_block(&e) => continue,
            Err(e) => return Err(e.to_string()),
        };
        let Some(pkt) = buf.get(..n) else { continue };
        let (Some(&code), Some(&id), Some(auth)) = (pkt.first(), pkt.get(1), pkt.get(4..20)) else {
            continue;
        };
        let answer = match Code::from_u8(code) {
            Code::AccessRequest | Code::StatusServer => Code::AccessAccept,
            Code::AccountingRequest => Code::AccountingResponse,
            _ => continue,
        };
        let mut ra = [0u8; 16];
        ra.copy_from_slice(auth);
        if let Ok(resp) = encode_response(
            Code::from_u8(code),
            answer,
            id,
            &ra,
            &[],
            a.secret.as_bytes(),
        ) {
            let _ = sock.send_to(&resp, src);
        }
    }
}

/// The ceiling of `bench-diameter.sh`: CER → CEA 2001, DWR → DWA, CCR → CCA 2001 (Session-Id,
/// Result-Code, Origin-Host/Realm, Auth-Application-Id, CC-Request-Type/Number copied), one
/// thread per connection, every complete message of a read answered in one write. No peer
/// table, no validation, no decision.
fn echo_diameter(a: &EchoArgs) -> Result<(), String> {
    let l = std::net::TcpListener::bind(a.listen).map_err(|e| format!("bind {}: {e}", a.listen))?;
    eprintln!("echo-diameter listening on {}", a.listen);
    for s in l.incoming() {
        let Ok(s) = s else { continue };
        std::thread::spawn(move || {
            let _ = echo_diameter_conn(s);
        });
    }
    Ok(())
}

fn echo_diameter_conn(mut s: TcpStream) -> Result<(), String> {
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let local = s.local_addr().map_err(|e| e.to_string())?.ip();
    let decoder = Decoder::default();
    let mut rbuf: Vec<u8> = Vec::with_capacity(256 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(256 * 1024);
    let mut chunk = vec![0u8; 256 * 1024];
    let origin = |m: Message| {
        m.with(Avp::utf8(dict::ORIGIN_HOST, 0, "echo.localdomain"))
            .with(Avp::utf8(dict::ORIGIN_REALM, 0, "localdomain"))
    };
    loop {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        rbuf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let mut at = 0;
        while let Some(len) = rbuf.get(at..).and_then(frame_len) {
            let frame = rbuf.get(at..at + len).unwrap_or_default();
            at += len;
            let Ok(hdr) = decoder.decode_header(frame) else {
                return Ok(());
            };
            if !hdr.flags.is_request() {
                continue;
            }
            let rc = Avp::u32(dict::RESULT_CODE, 0, 2001);
            let m = match hdr.code {
                257 => origin(Message::answer_to(&hdr).with(rc))
                    .with(Avp::address(dict::HOST_IP_ADDRESS, 0, local))
                    .with(Avp::u32(dict::VENDOR_ID, 0, 0))
                    .with(Avp::utf8(dict::PRODUCT_NAME, 0, "imei-lock-load echo"))
                    .with(Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_GX)),
                272 => {
                    let mut m = Message::answer_to(&hdr);
                    if let Some((_, sid)) = raw_avps(frame).find(|&(c, _)| c == dict::SESSION_ID) {
                        m.push(Avp::new(dict::SESSION_ID, 0, sid));
                    }
                    let mut m =
                        origin(m.with(rc)).with(Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_GX));
                    for (code, data) in raw_avps(frame) {
                        if code == dict::CC_REQUEST_TYPE || code == dict::CC_REQUEST_NUMBER {
                            m.push(Avp::new(code, 0, data));
                        }
                    }
                    m
                }
                _ => origin(Message::answer_to(&hdr).with(rc)),
            };
            out.extend_from_slice(&m.encode().map_err(|e| e.to_string())?);
        }
        rbuf.drain(..at);
        if !out.is_empty() {
            s.write_all(&out).map_err(|e| e.to_string())?;
            out.clear();
        }
    }
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
            run_workers(a.clone(), workers, radius_worker).map(|(t, e)| {
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
            let workers = a.connections.max(1);
            let a = Arc::new(a);
            run_workers(a.clone(), workers, gx_worker).map(|(t, e)| {
                report("gx", &a.common, workers, &t, e);
                t.sent > 0 && t.codes.values().sum::<u64>() > 0
            })
        }
        Mode::EchoRadius(a) => echo_radius(&a).map(|()| true),
        Mode::EchoDiameter(a) => echo_diameter(&a).map(|()| true),
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
