//! `gx`: CER, then Gx CCR-I (and CCR-T) or S13 ECRs over TCP connections, one thread each.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imei_lockd::diameter::codec::dict::{self, VENDOR_3GPP};
use imei_lockd::diameter::codec::{Avp, Decoder, Message, HEADER_LEN};

use super::pace::{fine_timer_slack, is_would_block, quota_of, sim_of, wait_fds, Pacer, Tally};
use super::pace::{IDLE_WAIT, TIMEOUT_SCAN};
use super::GxArgs;

pub const APP_GX: u32 = 16_777_238;
const APP_S6B: u32 = 16_777_272;
const APP_S13: u32 = 16_777_252;

/// Top-level AVPs of a Diameter frame as (code, data), for the generator and the ceiling's
/// answers: a light scan that stops at the first AVP that does not fit (the full decoder
/// allocates every AVP, which would make the generator slower than what it measures).
pub fn raw_avps(frame: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
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

pub fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The length of the first complete Diameter frame in `buf`, if there is one.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
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

/// One Diameter connection of a worker thread, after its CER/CEA.
struct GxConn {
    host: String,
    s: TcpStream,
    /// Answers not yet complete.
    rbuf: Vec<u8>,
    /// Encoded requests not yet written (one write per loop turn, not one per request).
    wbuf: Vec<u8>,
    outstanding: HashMap<u32, Pending>,
    /// CCR-Ts owed for answered CCR-Is (`--terminate`).
    pending_t: Vec<(String, String)>,
    hbh: u32,
    e2e_base: u32,
}

/// Connects connection `i` (Origin-Host `--origin-host[i mod n]`) and exchanges CER/CEA.
fn open(args: &GxArgs, i: usize) -> Result<GxConn, String> {
    let hosts = &args.origin_host;
    let host = hosts
        .get(i % hosts.len().max(1))
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
    let e2e_base = ((i as u32) & 0xfff) << 20;
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
    cer.header.end_to_end = e2e_base;
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
    let Conn { s, buf, .. } = conn;
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(GxConn {
        host,
        s,
        rbuf: buf,
        wbuf: Vec::with_capacity(64 * 1024),
        outstanding: HashMap::new(),
        pending_t: Vec::new(),
        hbh: 1,
        e2e_base,
    })
}

impl GxConn {
    fn idle(&self) -> bool {
        self.outstanding.is_empty() && self.pending_t.is_empty() && self.wbuf.is_empty()
    }

    /// Queues `msg` (numbered here) as outstanding since `t0`.
    fn queue(
        &mut self,
        mut msg: Message,
        t0: Instant,
        follow: Option<(String, String)>,
    ) -> Result<(), String> {
        self.hbh = self.hbh.wrapping_add(1);
        msg.header.hop_by_hop = self.hbh;
        msg.header.end_to_end = self.e2e_base | (self.hbh & 0xf_ffff);
        self.wbuf
            .extend_from_slice(&msg.encode().map_err(|e| e.to_string())?);
        self.outstanding.insert(self.hbh, (t0, follow));
        Ok(())
    }

    /// Writes what it can of the queued requests; true when something went out.
    fn flush(&mut self) -> Result<bool, String> {
        if self.wbuf.is_empty() {
            return Ok(false);
        }
        match self.s.write(&self.wbuf) {
            Ok(n) => {
                self.wbuf.drain(..n);
                Ok(true)
            }
            Err(e) if is_would_block(&e) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Reads what has arrived and records each answer; true when something came.
    fn receive(
        &mut self,
        args: &GxArgs,
        chunk: &mut [u8],
        tally: &mut Tally,
    ) -> Result<bool, String> {
        let n = match self.s.read(chunk) {
            Ok(0) => return Err("connection closed by the server".into()),
            Ok(n) => n,
            Err(e) if is_would_block(&e) => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        self.rbuf
            .extend_from_slice(chunk.get(..n).unwrap_or_default());
        let mut at = 0;
        while let Some(len) = self.rbuf.get(at..).and_then(frame_len) {
            let frame = self.rbuf.get(at..at + len).unwrap_or_default();
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
                        .with(Avp::utf8(dict::ORIGIN_HOST, 0, &self.host))
                        .with(Avp::utf8(dict::ORIGIN_REALM, 0, &args.origin_realm));
                    self.wbuf
                        .extend_from_slice(&a.encode().map_err(|e| e.to_string())?);
                }
                continue;
            }
            let id = be32(frame, 12).unwrap_or(0);
            if let Some((t0, follow)) = self.outstanding.remove(&id) {
                let rc = raw_avps(frame)
                    .find(|&(code, _)| code == dict::RESULT_CODE)
                    .and_then(|(_, d)| be32(d, 0))
                    .unwrap_or(0);
                tally.answer(result_code_label(rc), t0.elapsed());
                if let Some(f) = follow {
                    self.pending_t.push(f);
                }
            }
        }
        self.rbuf.drain(..at);
        Ok(true)
    }
}

/// Worker `seed` of `workers` threads: drives connections seed, seed + workers, ... from one
/// thread (one ppoll over their sockets), its share of the rate spread over them round-robin.
pub fn gx_worker(args: Arc<GxArgs>, seed: u64, workers: usize) -> Result<Tally, String> {
    fine_timer_slack();
    let c = &args.common;
    let mut conns = (0..args.connections.max(1))
        .filter(|i| i % workers.max(1) == seed as usize)
        .map(|i| open(&args, i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tally = Tally::new()?;
    let timeout = Duration::from_millis(c.timeout_ms);
    let mut k = seed;
    let mut pacer = Pacer::new(c.rate, workers);
    let end = Instant::now() + Duration::from_secs_f64(c.duration);
    let mut last_scan = Instant::now();
    let quota = quota_of(c.count, seed, workers);
    let mut started = 0u64;
    // A request the pacer released that found every window full: it goes out (late, and its
    // latency counts from when it was due) as soon as a connection has room.
    let mut held: Option<Option<Instant>> = None;
    let mut next = 0usize;
    let mut chunk = vec![0u8; 256 * 1024];
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(conns.len());
    loop {
        let now = Instant::now();
        let sending = now < end && started < quota;
        if (!sending && held.is_none() && conns.iter().all(GxConn::idle)) || now > end + timeout {
            break;
        }
        let mut next_due = None;
        let mut progressed = false;
        // CCR-Ts owed go first, on their own connections.
        for conn in &mut conns {
            while conn.outstanding.len() < c.window {
                let Some((session, imsi)) = conn.pending_t.pop() else {
                    break;
                };
                let m = ccr(&args, &conn.host, &session, &imsi, "", 3)?;
                conn.queue(m, Instant::now(), None)?;
                tally.sent += 1;
                progressed = true;
            }
        }
        while sending || held.is_some() {
            let due = match held.take() {
                Some(due) => due,
                None if started < quota && now < end => match pacer.due(now) {
                    Ok(due) => due,
                    Err(later) => {
                        next_due = Some(later);
                        break;
                    }
                },
                None => break,
            };
            let n = conns.len();
            let Some(i) = (0..n)
                .map(|j| (next + j) % n)
                .find(|&j| conns.get(j).is_some_and(|x| x.outstanding.len() < c.window))
            else {
                held = Some(due);
                break;
            };
            next = i + 1;
            let Some(conn) = conns.get_mut(i) else { break };
            let (imsi, imeisv) = sim_of(c, k, started);
            started += 1;
            let session = format!("{};{seed};{k}", conn.host);
            k += workers as u64;
            let (m, follow) = if args.s13 {
                (ecr(&args, &conn.host, &session, &imsi, &imeisv)?, None)
            } else {
                let follow = args.terminate.then(|| (session.clone(), imsi.clone()));
                (ccr(&args, &conn.host, &session, &imsi, &imeisv, 1)?, follow)
            };
            conn.queue(m, due.unwrap_or_else(Instant::now), follow)?;
            tally.sent += 1;
            progressed = true;
        }
        for conn in &mut conns {
            progressed |= conn.flush()?;
            progressed |= conn.receive(&args, &mut chunk, &mut tally)?;
        }
        let now = Instant::now();
        if now.duration_since(last_scan) >= TIMEOUT_SCAN {
            last_scan = now;
            for conn in &mut conns {
                let before = conn.outstanding.len();
                conn.outstanding
                    .retain(|_, (t0, _)| now.saturating_duration_since(*t0) <= timeout);
                tally.timeouts += (before - conn.outstanding.len()) as u64;
            }
        }
        if !progressed {
            let wait = next_due.map_or(IDLE_WAIT, |d| {
                d.saturating_duration_since(now).min(IDLE_WAIT)
            });
            fds.clear();
            fds.extend(conns.iter().map(|conn| libc::pollfd {
                fd: conn.s.as_raw_fd(),
                events: if conn.wbuf.is_empty() {
                    libc::POLLIN
                } else {
                    libc::POLLIN | libc::POLLOUT
                },
                revents: 0,
            }));
            wait_fds(&mut fds, wait);
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
