//! diameter-sctp-probe: a Diameter Gx client over kernel SCTP, for the guest test
//! (`scripts/sctp-guest.sh`, asserted by `integration-tests/sctp_guest.rs`).
//!
//! It provisions SIMs over the REST API, opens a one-to-one SCTP association to imei-lockd and
//! runs an exchange with the project's own codec (`imei_lockd::diameter::codec`). It reports
//! what it saw, one line per step on stdout, `PROBE <step> key=value ...`; it judges nothing
//! itself (the host-side test does), so every line carries the raw codes and counts.
//!
//! - `exchange`: CER/CEA, a CCR-I that binds a locked SIM (and the binding as the API reports
//!   it), a mismatching CCR-I, DWR/DWA, DPR/DPA; then a second association doing the same with
//!   `--window` requests in flight: `--sims` first CCR-Is at once (each binds), then
//!   `--requests` CCR-Is alternating matching and mismatching devices, a DWR among them.
//! - `multihome`: over an association to a multi-homed endpoint: the server's addresses as the
//!   kernel learnt them (SCTP_GET_PEER_ADDRS), the primary path, a CCR-I; then `--drop-cmd`
//!   (e.g. delete the primary's address) and a DWR and a CCR-I on the same association, with
//!   the time to their answers and each path's state (SCTP_GET_PEER_ADDR_INFO) afterwards.
//!
//! Linux only (SCTP socket options through libc; the libc crate exports the option numbers
//! below only partly, so they are spelled out from linux/sctp.h).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use socket2::{Domain, Protocol, Socket, Type};

use imei_lockd::diameter::codec::dict::{self, VENDOR_3GPP};
use imei_lockd::diameter::codec::{Avp, AvpList, Decoder, Message, APP_GX};

const IPPROTO_SCTP: i32 = 132;
const SOL_SCTP: libc::c_int = 132;
const SCTP_STATUS: libc::c_int = 14;
const SCTP_GET_PEER_ADDR_INFO: libc::c_int = 15;
const SCTP_GET_PEER_ADDRS: libc::c_int = 108;
/// `struct sctp_status` (176 bytes): state at 4, `sstat_primary` (a `sctp_paddrinfo`) at 24.
const STATUS_LEN: usize = 176;
/// `struct sctp_paddrinfo` (packed, 152 bytes): address at 4, state at 132.
const PADDRINFO_LEN: usize = 152;

const CER: u32 = 257;
const CCR: u32 = 272;
const DWR: u32 = 280;
const DPR: u32 = 282;

#[derive(Parser)]
#[command(about = "Diameter Gx over SCTP against imei-lockd, for the guest test")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// CER, binding CCR-I, mismatching CCR-I, DWR, DPR; then the same with a window.
    Exchange(ExchangeArgs),
    /// A multi-homed endpoint: its addresses, then the loss of one path (`--drop-cmd`).
    Multihome(MultihomeArgs),
}

#[derive(Args)]
struct Common {
    /// imei-lockd's SCTP address.
    #[arg(long, default_value = "127.0.0.1:3868")]
    server: SocketAddr,
    /// Local address to bind before connecting (default: the kernel's choice).
    #[arg(long)]
    bind: Option<IpAddr>,
    /// The REST API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    #[arg(long, default_value = "guest-token")]
    token: String,
    #[arg(long, default_value = "pgw.localdomain")]
    origin_host: String,
    #[arg(long, default_value = "localdomain")]
    origin_realm: String,
    /// Seconds to wait for any one answer.
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
}

#[derive(Args)]
struct ExchangeArgs {
    #[command(flatten)]
    c: Common,
    /// Requests in flight at once on the window association.
    #[arg(long, default_value_t = 200)]
    window: usize,
    /// Locked SIMs bound at once by first CCR-Is.
    #[arg(long, default_value_t = 200)]
    sims: usize,
    /// CCR-Is after the binding round, alternating matching and mismatching devices.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
}

#[derive(Args)]
struct MultihomeArgs {
    #[command(flatten)]
    c: Common,
    /// Shell command that takes one path away (run with `sh -c`).
    #[arg(long)]
    drop_cmd: String,
}

/// Prints one result line.
macro_rules! report {
    ($($t:tt)*) => {{
        println!("PROBE {}", format!($($t)*));
        let _ = std::io::stdout().flush();
    }};
}

fn imsi_of(i: usize) -> String {
    format!("0010100{:08}", 10_000 + i)
}

/// IMEISV (16 digits) of device `dev` for SIM `i`.
fn imeisv_of(dev: u8, i: usize) -> String {
    format!("35{dev}{i:011}01")
}

// ---------------------------------------------------------------------------------------------
// Provisioning over the REST API

struct Api {
    http: reqwest::blocking::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(c: &Common) -> Result<Self, String> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            base: c.api.trim_end_matches('/').to_owned(),
            token: c.token.clone(),
        })
    }

    /// Waits for `/healthz` (the daemon may still be starting).
    fn wait_ready(&self) -> Result<Duration, String> {
        let t0 = Instant::now();
        loop {
            match self.http.get(format!("{}/healthz", self.base)).send() {
                Ok(r) if r.status().is_success() => return Ok(t0.elapsed()),
                _ if t0.elapsed() > Duration::from_secs(90) => {
                    return Err("the API did not answer within 90 s".into())
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn json(&self, r: reqwest::blocking::RequestBuilder) -> Result<Value, String> {
        let r = r
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let body = r.text().map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("API answered {status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }

    /// Waits until a write request is processed.
    fn processed(&self, accepted: &Value) -> Result<(), String> {
        let id = accepted["request_id"]
            .as_str()
            .ok_or_else(|| format!("no request_id in {accepted}"))?;
        let r = self.json(
            self.http
                .get(format!("{}/v1/requests/{id}?wait=30", self.base)),
        )?;
        match r["status"].as_str() {
            Some("processed") => Ok(()),
            _ => Err(format!("request {id}: {r}")),
        }
    }

    fn lock_sim(&self, imsi: &str) -> Result<(), String> {
        let a = self.json(
            self.http
                .put(format!("{}/v1/sims/{imsi}", self.base))
                .json(&json!({"imei_management": "lock"})),
        )?;
        self.processed(&a)
    }

    /// Locked SIMs `0..n` in one CSV import.
    fn lock_sims(&self, n: usize) -> Result<(), String> {
        let mut csv = String::from("imsi,msisdn,profile,imei_management\n");
        for i in 0..n {
            csv.push_str(&format!("{},,,lock\n", imsi_of(i)));
        }
        let a = self.json(
            self.http
                .post(format!("{}/v1/sims:import", self.base))
                .header("content-type", "text/csv")
                .body(csv),
        )?;
        self.processed(&a)
    }

    fn sim(&self, imsi: &str) -> Result<Value, String> {
        self.json(self.http.get(format!("{}/v1/sims/{imsi}", self.base)))
    }
}

// ---------------------------------------------------------------------------------------------
// The association

struct Assoc {
    s: TcpStream,
    buf: Vec<u8>,
    decoder: Decoder,
    host: String,
    realm: String,
    hbh: u32,
    timeout: Duration,
}

impl Assoc {
    /// A one-to-one SCTP socket (RFC 6458 §4) connected to `c.server`.
    fn connect(c: &Common) -> Result<Self, String> {
        let sock = Socket::new(
            Domain::for_address(c.server),
            Type::STREAM,
            Some(Protocol::from(IPPROTO_SCTP)),
        )
        .map_err(|e| format!("socket(IPPROTO_SCTP): {e}"))?;
        imei_lockd::diameter::server::listen::set_sctp_nodelay(&sock)
            .map_err(|e| format!("SCTP_NODELAY: {e}"))?;
        if let Some(ip) = c.bind {
            sock.bind(&SocketAddr::new(ip, 0).into())
                .map_err(|e| format!("bind {ip}: {e}"))?;
        }
        sock.connect(&c.server.into())
            .map_err(|e| format!("connect {}: {e}", c.server))?;
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            s,
            buf: Vec::new(),
            decoder: Decoder::default(),
            host: c.origin_host.clone(),
            realm: c.origin_realm.clone(),
            hbh: 0,
            timeout: Duration::from_secs(c.timeout_s),
        })
    }

    fn request(&self, code: u32, app: u32) -> Message {
        Message::request(code, app, code == CCR)
            .with(Avp::utf8(dict::ORIGIN_HOST, 0, &self.host))
            .with(Avp::utf8(dict::ORIGIN_REALM, 0, &self.realm))
    }

    /// Sends `m` with a fresh Hop-by-Hop (and End-to-End) id; returns the id.
    fn send(&mut self, mut m: Message) -> Result<u32, String> {
        self.hbh = self.hbh.wrapping_add(1);
        m.header.hop_by_hop = self.hbh;
        m.header.end_to_end = next_end_to_end();
        let b = m.encode().map_err(|e| e.to_string())?;
        self.write_frame(&b)?;
        Ok(self.hbh)
    }

    /// Writes one frame; while the socket is full, reads what the server sent meanwhile (into
    /// `buf`), so that neither side blocks on a full window with many requests in flight.
    fn write_frame(&mut self, b: &[u8]) -> Result<(), String> {
        self.s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + self.timeout;
        let mut off = 0;
        let r = loop {
            let Some(rest) = b.get(off..).filter(|r| !r.is_empty()) else {
                break Ok(());
            };
            match self.s.write(rest) {
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.read_available() {
                        break Err(e);
                    }
                    if Instant::now() > deadline {
                        break Err(format!("write blocked for {:?}", self.timeout));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => break Err(format!("write: {e}")),
            }
        };
        self.s.set_nonblocking(false).map_err(|e| e.to_string())?;
        r
    }

    /// Reads whatever is available without waiting (the socket is non-blocking here).
    fn read_available(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 65536];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return Err("association closed by the server".into()),
                Ok(n) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// The next message, None after a 200 ms read timeout. Answers the server's DWR itself.
    fn poll(&mut self) -> Result<Option<Message>, String> {
        loop {
            if let Some(len) = self
                .decoder
                .peek_length(&self.buf)
                .map_err(|e| e.to_string())?
            {
                if self.buf.len() >= len {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    let m = self.decoder.decode(&frame).map_err(|e| e.to_string())?;
                    if m.is_request() && m.header.code == DWR {
                        let a = Message::answer_to(&m.header)
                            .with(Avp::u32(dict::RESULT_CODE, 0, 2001))
                            .with(Avp::utf8(dict::ORIGIN_HOST, 0, &self.host))
                            .with(Avp::utf8(dict::ORIGIN_REALM, 0, &self.realm));
                        let b = a.encode().map_err(|e| e.to_string())?;
                        self.write_frame(&b)?;
                        continue;
                    }
                    return Ok(Some(m));
                }
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return Err("association closed by the server".into()),
                Ok(n) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Waits for the answer to `hbh` (other messages are an error here).
    fn answer(&mut self, hbh: u32) -> Result<Message, String> {
        let deadline = Instant::now() + self.timeout;
        while Instant::now() < deadline {
            match self.poll()? {
                Some(m) if !m.is_request() && m.header.hop_by_hop == hbh => return Ok(m),
                Some(m) => {
                    return Err(format!(
                        "unexpected message code {} hbh {}",
                        m.header.code, m.header.hop_by_hop
                    ))
                }
                None => {}
            }
        }
        Err(format!(
            "no answer to hop-by-hop {hbh} within {:?}",
            self.timeout
        ))
    }

    fn exchange(&mut self, m: Message) -> Result<Message, String> {
        let hbh = self.send(m)?;
        self.answer(hbh)
    }

    fn cer(&mut self) -> Result<Message, String> {
        let local = self.s.local_addr().map_err(|e| e.to_string())?.ip();
        let vsai = Avp::grouped(
            dict::VENDOR_SPECIFIC_APPLICATION_ID,
            0,
            &[
                Avp::u32(dict::VENDOR_ID, 0, VENDOR_3GPP),
                Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_GX),
            ],
        )
        .map_err(|e| e.to_string())?;
        let m = self
            .request(CER, 0)
            .with(Avp::address(dict::HOST_IP_ADDRESS, 0, local))
            .with(Avp::u32(dict::VENDOR_ID, 0, 0))
            .with(Avp::utf8(dict::PRODUCT_NAME, 0, "diameter-sctp-probe"))
            .with(vsai);
        self.exchange(m)
    }

    fn ccr_i(&self, session: &str, imsi: &str, imeisv: &str) -> Result<Message, String> {
        let sub = Avp::grouped(
            dict::SUBSCRIPTION_ID,
            0,
            &[
                Avp::u32(dict::SUBSCRIPTION_ID_TYPE, 0, 1),
                Avp::utf8(dict::SUBSCRIPTION_ID_DATA, 0, imsi),
            ],
        )
        .map_err(|e| e.to_string())?;
        let uei = Avp::grouped(
            dict::USER_EQUIPMENT_INFO,
            0,
            &[
                Avp::u32(dict::USER_EQUIPMENT_INFO_TYPE, 0, 0),
                Avp::new(dict::USER_EQUIPMENT_INFO_VALUE, 0, imeisv.as_bytes()),
            ],
        )
        .map_err(|e| e.to_string())?;
        Ok(Message::request(CCR, APP_GX, true)
            .with(Avp::utf8(dict::SESSION_ID, 0, session))
            .with(Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_GX))
            .with(Avp::utf8(dict::ORIGIN_HOST, 0, &self.host))
            .with(Avp::utf8(dict::ORIGIN_REALM, 0, &self.realm))
            .with(Avp::utf8(dict::DESTINATION_REALM, 0, &self.realm))
            .with(Avp::u32(dict::CC_REQUEST_TYPE, 0, 1))
            .with(Avp::u32(dict::CC_REQUEST_NUMBER, 0, 0))
            .with(sub)
            .with(uei)
            .with(Avp::utf8(dict::CALLED_STATION_ID, 0, "iot.apn")))
    }

    fn dwr(&self) -> Message {
        self.request(DWR, 0)
    }

    fn dpr(&self) -> Message {
        // Disconnect-Cause DO_NOT_WANT_TO_TALK_TO_YOU (2).
        self.request(DPR, 0)
            .with(Avp::u32(dict::DISCONNECT_CAUSE, 0, 2))
    }

    /// After DPA the server closes: true when the association ends (EOF) within the timeout.
    fn closed_by_server(&mut self) -> bool {
        let deadline = Instant::now() + self.timeout;
        while Instant::now() < deadline {
            match self.poll() {
                Ok(Some(_)) => {}
                Ok(None) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// End-to-End ids unique across this process's associations (the server's duplicate
/// detection is per Origin-Host, any connection): high 12 bits from the clock (RFC 6733 §3).
fn next_end_to_end() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = u32::try_from(secs & 0xfff).unwrap_or(0) << 20;
    base | (NEXT.fetch_add(1, Ordering::Relaxed) & 0xf_ffff)
}

fn rc(m: &Message) -> u32 {
    m.result_code().map_or(0, |r| r.0)
}

/// Error-Message of an answer, spaces as `_` (one token on the result line).
fn error_message(m: &Message) -> String {
    m.avps
        .get_utf8(dict::ERROR_MESSAGE, 0)
        .ok()
        .flatten()
        .unwrap_or("")
        .replace(' ', "_")
}

// ---------------------------------------------------------------------------------------------
// SCTP socket options

fn getsockopt(s: &TcpStream, opt: libc::c_int, buf: &mut [u8]) -> Result<usize, String> {
    let mut len = libc::socklen_t::try_from(buf.len()).map_err(|e| e.to_string())?;
    // SAFETY: `buf` is valid for writes of `len` bytes; the kernel writes at most `len` bytes
    // and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            SOL_SCTP,
            opt,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc == 0 {
        usize::try_from(len).map_err(|e| e.to_string())
    } else {
        Err(format!(
            "getsockopt {opt}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A `sockaddr_in`/`sockaddr_in6` at the start of `b`: the address and its size.
fn sockaddr_at(b: &[u8]) -> Option<(SocketAddr, usize)> {
    let family = i32::from(u16_at(b, 0)?);
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    if family == libc::AF_INET {
        let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        Some((SocketAddr::from((ip, port)), 16))
    } else if family == libc::AF_INET6 {
        let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
        Some((SocketAddr::from((ip, port)), 28))
    } else {
        None
    }
}

/// The server's addresses as this association knows them (SCTP_GET_PEER_ADDRS).
fn peer_addrs(s: &TcpStream) -> Result<Vec<SocketAddr>, String> {
    let mut buf = vec![0u8; 8 + 16 * 28];
    getsockopt(s, SCTP_GET_PEER_ADDRS, &mut buf)?;
    let n = u32::from_ne_bytes(
        buf.get(4..8)
            .and_then(|b| b.try_into().ok())
            .ok_or("short answer")?,
    );
    let mut out = Vec::new();
    let mut at = 8;
    for _ in 0..n {
        let (a, len) = buf
            .get(at..)
            .and_then(sockaddr_at)
            .ok_or("bad address list")?;
        out.push(a);
        at += len;
    }
    Ok(out)
}

fn path_state(v: i32) -> &'static str {
    match v {
        0 => "inactive",
        1 => "pf",
        2 => "active",
        3 => "unconfirmed",
        _ => "unknown",
    }
}

/// The association state and its primary path (SCTP_STATUS).
fn status(s: &TcpStream) -> Result<(i32, SocketAddr), String> {
    let mut buf = vec![0u8; STATUS_LEN];
    getsockopt(s, SCTP_STATUS, &mut buf)?;
    let state = i32_at(&buf, 4).ok_or("short status")?;
    let (primary, _) = buf
        .get(28..)
        .and_then(sockaddr_at)
        .ok_or("no primary address")?;
    Ok((state, primary))
}

/// The state of the path to `addr` (SCTP_GET_PEER_ADDR_INFO).
fn path_of(s: &TcpStream, addr: SocketAddr) -> Result<&'static str, String> {
    let mut buf = vec![0u8; PADDRINFO_LEN];
    let raw = imei_lockd::diameter::server::listen::sockaddr_bytes(addr);
    buf.get_mut(4..4 + raw.len())
        .ok_or("address too long")?
        .copy_from_slice(&raw);
    getsockopt(s, SCTP_GET_PEER_ADDR_INFO, &mut buf)?;
    Ok(path_state(i32_at(&buf, 132).ok_or("short paddrinfo")?))
}

fn assoc_state(v: i32) -> &'static str {
    match v {
        4 => "established",
        1 => "closed",
        2 | 3 => "opening",
        _ => "closing",
    }
}

fn list(v: &[SocketAddr]) -> String {
    v.iter()
        .map(|a| a.ip().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------------------------------------
// Modes

fn run_exchange(a: &ExchangeArgs) -> Result<(), String> {
    let api = Api::new(&a.c)?;
    let ready = api.wait_ready()?;
    report!("api ready_ms={}", ready.as_millis());
    let imsi = "001010000000901";
    let (dev_a, dev_b) = ("3512345600090101", "3598765400090201");
    api.lock_sim(imsi)?;
    api.lock_sims(a.sims)?;
    report!("provisioned sims={}", a.sims + 1);

    // One request at a time.
    let mut s = Assoc::connect(&a.c)?;
    let cea = s.cer()?;
    report!(
        "cea rc={} origin_host={}",
        rc(&cea),
        cea.origin_host().unwrap_or("")
    );
    let m = s.ccr_i("pgw;probe;1", imsi, dev_a)?;
    let ans = s.exchange(m)?;
    let bound = api.sim(imsi)?;
    report!(
        "ccr_bind rc={} bound_imei={}",
        rc(&ans),
        bound["bound_imei"].as_str().unwrap_or("none")
    );
    let m = s.ccr_i("pgw;probe;2", imsi, dev_b)?;
    let ans = s.exchange(m)?;
    let after = api.sim(imsi)?;
    report!(
        "ccr_mismatch rc={} error_message={} bound_imei={}",
        rc(&ans),
        error_message(&ans),
        after["bound_imei"].as_str().unwrap_or("none")
    );
    let m = s.dwr();
    let dwa = s.exchange(m)?;
    report!("dwa rc={}", rc(&dwa));
    let m = s.dpr();
    let dpa = s.exchange(m)?;
    report!("dpa rc={} closed={}", rc(&dpa), s.closed_by_server());

    // Many requests in flight.
    let t0 = Instant::now();
    let mut s = Assoc::connect(&a.c)?;
    let cea = s.cer()?;
    report!("window_cea rc={}", rc(&cea));
    // The binding round (each SIM's first device, all at once), answered in full before any
    // SIM sees a second device; then matching (2001) and mismatching (5003) devices in turn.
    let bind: Vec<Planned> = (0..a.sims).map(|i| (i, 1, 2001)).collect();
    let mixed: Vec<Planned> = (0..a.requests)
        .map(|k| {
            let i = k % a.sims.max(1);
            if k % 2 == 0 {
                (i, 1, 2001)
            } else {
                (i, 2, 5003)
            }
        })
        .collect();
    let mut st = WindowStats::default();
    window(&mut s, "bind", &bind, a.window, None, &mut st)?;
    window(
        &mut s,
        "mixed",
        &mixed,
        a.window,
        Some(a.requests / 2),
        &mut st,
    )?;
    let by_code: Vec<String> = st.codes.iter().map(|(c, n)| format!("rc{c}={n}")).collect();
    report!(
        "window sims={} requests={} sent={} window={} max_in_flight={} {} unexpected={} \
         dwa_rc={} ms={}",
        a.sims,
        a.requests,
        bind.len() + mixed.len(),
        a.window,
        st.max_in_flight,
        by_code.join(" "),
        st.unexpected,
        st.dwa_rc.map_or(0, |c| c),
        t0.elapsed().as_millis()
    );
    let m = s.dpr();
    let dpa = s.exchange(m)?;
    report!("window_dpa rc={} closed={}", rc(&dpa), s.closed_by_server());
    Ok(())
}

/// A planned CCR-I: SIM index, device number, expected Result-Code.
type Planned = (usize, u8, u32);

#[derive(Default)]
struct WindowStats {
    codes: std::collections::BTreeMap<u32, u64>,
    /// Answers with another code than planned, or to no outstanding request.
    unexpected: u64,
    max_in_flight: usize,
    dwa_rc: Option<u32>,
}

/// Sends `plan` keeping up to `limit` requests outstanding; with `dwr_after`, a DWR goes out
/// among them once that many are sent. Returns when every answer is in.
fn window(
    s: &mut Assoc,
    tag: &str,
    plan: &[Planned],
    limit: usize,
    dwr_after: Option<usize>,
    st: &mut WindowStats,
) -> Result<(), String> {
    let mut outstanding: HashMap<u32, u32> = HashMap::new();
    let mut dwr: Option<u32> = None;
    let mut next = 0;
    let mut deadline = Instant::now() + s.timeout;
    while next < plan.len() || !outstanding.is_empty() || dwr.is_some() {
        while outstanding.len() < limit {
            let Some(&(i, dev, expect)) = plan.get(next) else {
                break;
            };
            let m = s.ccr_i(
                &format!("pgw;probe;{tag};{next}"),
                &imsi_of(i),
                &imeisv_of(dev, i),
            )?;
            outstanding.insert(s.send(m)?, expect);
            next += 1;
            if dwr_after == Some(next) {
                let m = s.dwr();
                dwr = Some(s.send(m)?);
            }
        }
        st.max_in_flight = st.max_in_flight.max(outstanding.len());
        match s.poll()? {
            Some(m) if dwr == Some(m.header.hop_by_hop) => {
                st.dwa_rc = Some(rc(&m));
                dwr = None;
                deadline = Instant::now() + s.timeout;
            }
            Some(m) => {
                let code = rc(&m);
                *st.codes.entry(code).or_default() += 1;
                let answered: u64 = st.codes.values().sum();
                if answered % 200 == 0 {
                    report!("window_progress {tag} answered={answered}");
                }
                if outstanding.remove(&m.header.hop_by_hop) != Some(code) {
                    st.unexpected += 1;
                }
                deadline = Instant::now() + s.timeout;
            }
            None if Instant::now() > deadline => {
                return Err(format!(
                    "window: no answer for {:?}, {} outstanding",
                    s.timeout,
                    outstanding.len()
                ))
            }
            None => {}
        }
    }
    Ok(())
}

fn run_multihome(a: &MultihomeArgs) -> Result<(), String> {
    let api = Api::new(&a.c)?;
    let ready = api.wait_ready()?;
    report!("mh_api ready_ms={}", ready.as_millis());
    let imsi = "001010000000902";
    let dev = "3512345600090201";
    api.lock_sim(imsi)?;
    let mut s = Assoc::connect(&a.c)?;
    let cea = s.cer()?;
    let peers = peer_addrs(&s.s)?;
    let (state, primary) = status(&s.s)?;
    report!(
        "mh_assoc cea_rc={} peer_addrs={} primary={} state={}",
        rc(&cea),
        list(&peers),
        primary.ip(),
        assoc_state(state)
    );
    let m = s.ccr_i("pgw;probe;mh1", imsi, dev)?;
    let ans = s.exchange(m)?;
    report!("mh_ccr_before rc={}", rc(&ans));

    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&a.drop_cmd)
        .output()
        .map_err(|e| format!("{}: {e}", a.drop_cmd))?;
    report!(
        "mh_drop exit={} cmd={}",
        out.status.code().unwrap_or(-1),
        a.drop_cmd.replace(' ', "_")
    );
    // The same association right after the loss: answered over the other path.
    let t0 = Instant::now();
    let m = s.dwr();
    let dwa = s.exchange(m)?;
    let dwa_ms = t0.elapsed().as_millis();
    let m = s.ccr_i("pgw;probe;mh2", imsi, dev)?;
    let t1 = Instant::now();
    let ans = s.exchange(m)?;
    report!(
        "mh_after_loss dwa_rc={} dwa_ms={dwa_ms} ccr_rc={} ccr_ms={}",
        rc(&dwa),
        rc(&ans),
        t1.elapsed().as_millis()
    );
    // The kernel marks the lost path inactive after path_max_retrans missed heartbeats.
    let t2 = Instant::now();
    let mut lost = path_of(&s.s, primary)?;
    while lost != "inactive" && t2.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
        lost = path_of(&s.s, primary)?;
    }
    report!(
        "mh_path addr={} state={lost} after_ms={}",
        primary.ip(),
        t2.elapsed().as_millis()
    );
    let m = s.dwr();
    let dwa = s.exchange(m)?;
    let (state, primary_after) = status(&s.s)?;
    let mut paths = Vec::new();
    for p in &peers {
        paths.push(format!("{}:{}", p.ip(), path_of(&s.s, *p)?));
    }
    report!(
        "mh_final dwa_rc={} state={} primary={} paths={}",
        rc(&dwa),
        assoc_state(state),
        primary_after.ip(),
        paths.join(",")
    );
    let m = s.dpr();
    let dpa = s.exchange(m)?;
    report!("mh_dpa rc={}", rc(&dpa));
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, r) = match &cli.mode {
        Mode::Exchange(a) => ("exchange", run_exchange(a)),
        Mode::Multihome(a) => ("multihome", run_multihome(a)),
    };
    match r {
        Ok(()) => {
            report!("{name}_done result=ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            report!("{name}_done result=error error={}", e.replace(' ', "_"));
            ExitCode::FAILURE
        }
    }
}
