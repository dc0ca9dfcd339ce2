//! Hostile peers against the real binary: each is refused cleanly (a log line and a metric) and
//! the daemon keeps serving a legitimate peer afterwards. Diameter: a partial message that
//! stalls (before and after CER), a 16 MiB length field, a connection flood beyond the cap,
//! messages before CER, a second CER, garbage after a valid message. RADIUS: a flood from an
//! unknown source. API: oversize bodies, slow headers (slowloris) and stalled bodies.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use common::diameter::{ccr, cer, dwr, Raw};
use common::radius::{
    access_request, authenticator, exchange, loopback, socket_drops, udp, SECRET,
};
use common::{counter, metrics_text, wait_metrics, Daemon, TOKEN};
use imei_lockd::diameter::codec::{Message, ResultCode, APP_GX, APP_S6B};

/// The raw client's Origin-Host (a configured peer of these daemons).
const PCEF: &str = "pcef.localdomain";
/// Another configured peer.
const PGW: &str = "pgw.localdomain";
const IMEI_A: &str = "3520990017614823";

fn peers() -> String {
    format!("[[diameter.peers]]\norigin_host = \"{PCEF}\"\n")
}

/// A daemon whose Diameter timers are short enough for tests.
/// CER timeout 2 s, message timeout 4 s: before CER the CER timeout always fires first, so
/// each close has one cause whatever the machine's load.
fn start_short_timers() -> Daemon {
    Daemon::start_with_env(
        &peers(),
        &[
            ("IMEI_LOCKD__DIAMETER__CER_TIMEOUT_S", "2"),
            ("IMEI_LOCKD__DIAMETER__MESSAGE_TIMEOUT_S", "4"),
        ],
    )
}

fn diameter_errors(d: &Daemon, reason: &str) -> f64 {
    counter(
        &metrics_text(d),
        "imei_lockd_diameter_errors_total",
        &[&format!("reason=\"{reason}\"")],
    )
}

/// Waits until `imei_lockd_diameter_errors_total{reason}` reaches `n`; asserts it does.
#[track_caller]
fn wait_diameter_error(d: &Daemon, reason: &str, n: f64) {
    let label = format!("reason=\"{reason}\"");
    let m = wait_metrics(d, Duration::from_secs(10), |m| {
        counter(m, "imei_lockd_diameter_errors_total", &[&label]) >= n
    });
    assert!(
        counter(&m, "imei_lockd_diameter_errors_total", &[&label]) >= n,
        "errors{{{label}}} < {n}:\n{m}"
    );
}

#[track_caller]
fn assert_logged(d: &Daemon, needle: &str) {
    let log = d.log_text();
    assert!(log.contains(needle), "no log line with {needle:?}:\n{log}");
}

/// A legitimate peer still gets a Gx CCR-I judged: the locked SIM binds (2001), then a CER and
/// CCR on a fresh connection.
#[track_caller]
fn assert_legit_gx_works(d: &Daemon, imsi: &str) {
    d.api().put_sim(imsi, json!({"imei_management": "lock"}));
    let mut c = Raw::connect(d, PCEF);
    let a = c.call(ccr(&format!("legit;{imsi}"), PCEF, 1, imsi, Some(IMEI_A)));
    assert_eq!(a.result_code(), Some(ResultCode::SUCCESS), "legit CCR-I");
    assert_eq!(d.api().sim(imsi)["bound_imei"], &IMEI_A[..14]);
}

/// Reads until the daemon closes the connection; the bytes it sent first. Panics if the
/// connection is still open after `within`.
#[track_caller]
fn read_until_closed(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(within)).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                return got
            }
            Err(e) => panic!(
                "connection still open after {:?} ({e}); got {} bytes",
                started.elapsed(),
                got.len()
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Diameter

#[test]
fn diameter_partial_message_that_stalls_is_closed() {
    let d = start_short_timers();
    // Before CER: three header bytes, then nothing. Closed by diameter.cer_timeout_s.
    let mut s = TcpStream::connect(("127.0.0.1", d.ports.diameter)).unwrap();
    s.write_all(&[1, 0, 0]).unwrap();
    let t0 = Instant::now();
    let got = read_until_closed(&mut s, Duration::from_secs(10));
    assert!(got.is_empty(), "nothing is sent before CER");
    println!("partial header before CER: closed after {:?}", t0.elapsed());
    wait_diameter_error(&d, "cer_timeout", 1.0);

    // After CER: half of a CCR, then nothing. Closed by diameter.message_timeout_s.
    let mut c = Raw::connect(&d, PCEF);
    let (_, bytes) = c.stamp(ccr("partial;1", PCEF, 1, "001010000007001", Some(IMEI_A)));
    c.send_bytes(&bytes[..bytes.len() / 2]);
    let t0 = Instant::now();
    read_until_closed(&mut c.s, Duration::from_secs(10));
    println!("half a CCR after CER: closed after {:?}", t0.elapsed());
    wait_diameter_error(&d, "message_timeout", 1.0);
    assert_logged(
        &d,
        "diameter message incomplete within diameter.message_timeout_s",
    );

    // A trickle (one byte every 300 ms) is no better: the message must be complete in time.
    let mut c = Raw::connect(&d, PCEF);
    let (_, bytes) = c.stamp(ccr("trickle;1", PCEF, 1, "001010000007002", Some(IMEI_A)));
    let t0 = Instant::now();
    let mut closed = false;
    for b in &bytes {
        if c.s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if t0.elapsed() > Duration::from_secs(12) {
            break;
        }
    }
    if !closed {
        read_until_closed(&mut c.s, Duration::from_secs(5));
    }
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "a trickled message held the connection for {:?}",
        t0.elapsed()
    );
    wait_diameter_error(&d, "message_timeout", 2.0);

    assert_legit_gx_works(&d, "001010000007003");
}

#[test]
fn diameter_16_mib_length_field_is_refused_without_allocating_it() {
    let d = Daemon::start(&peers());
    let mut c = Raw::connect(&d, PCEF);
    let rss_before = common::rss_kib(d.pid()).unwrap_or(0);
    // A CCR header claiming 16 MiB - 4 octets (the largest aligned 24-bit length).
    let (hbh, bytes) = c.stamp(ccr("huge;1", PCEF, 1, "001010000007101", Some(IMEI_A)));
    let mut head = bytes[..20].to_vec();
    head[1..4].copy_from_slice(&[0xff, 0xff, 0xfc]);
    c.send_bytes(&head);
    // ... followed by 1 MiB of what would be its body.
    let _ = c.s.write_all(&vec![0u8; 1 << 20]);
    let a = c.try_read().expect("an answer before the close");
    assert_eq!(a.header.hop_by_hop, hbh);
    assert_eq!(a.result_code(), Some(ResultCode::INVALID_MESSAGE_LENGTH));
    assert!(
        c.closed_by_peer(),
        "the stream cannot be framed any more: closed"
    );
    let rss_after = common::rss_kib(d.pid()).unwrap_or(0);
    println!("RSS before {rss_before} KiB, after {rss_after} KiB");
    assert!(
        rss_after < rss_before + 8 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    wait_diameter_error(&d, "decode", 1.0);
    assert_logged(&d, "diameter stream error: closing");
    assert_legit_gx_works(&d, "001010000007102");
}

/// Raises this process's soft RLIMIT_NOFILE to `want` (or the hard limit); the new soft limit.
/// The daemon started afterwards inherits it.
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

#[test]
fn diameter_connection_flood_is_capped_and_a_legit_peer_gets_in_afterwards() {
    let cap = imei_lockd::diameter::server::MAX_CONNECTIONS;
    let limit = raise_nofile(24_000);
    // The flood's sockets plus the daemon's own files (it inherits the limit).
    let attempts = 10_000usize.min(limit.saturating_sub(512) as usize);
    assert!(
        attempts > cap + 100,
        "RLIMIT_NOFILE {limit} is too low to flood past the cap of {cap}"
    );
    let d = Daemon::start_with_env(&peers(), &[("IMEI_LOCKD__DIAMETER__CER_TIMEOUT_S", "5")]);
    let t0 = Instant::now();
    let mut flood = Vec::with_capacity(attempts);
    let mut failed = 0usize;
    for _ in 0..attempts {
        match TcpStream::connect_timeout(
            &([127, 0, 0, 1], d.ports.diameter).into(),
            Duration::from_millis(500),
        ) {
            Ok(s) => flood.push(s),
            Err(_) => failed += 1,
        }
        if t0.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    println!(
        "flood: {} connected, {failed} failed to connect, in {:?}",
        flood.len(),
        t0.elapsed()
    );
    // Every connection beyond the cap is accepted and closed at once, counted.
    let m = wait_metrics(&d, Duration::from_secs(10), |m| {
        counter(
            m,
            "imei_lockd_diameter_errors_total",
            &["reason=\"connection_limit\""],
        ) >= 1.0
    });
    let refused = counter(
        &m,
        "imei_lockd_diameter_errors_total",
        &["reason=\"connection_limit\""],
    );
    let waiting = counter(&m, "imei_lockd_diameter_peers", &["state=\"wait_cer\""]);
    println!("refused at the cap: {refused}, served (waiting for CER): {waiting}");
    assert!(waiting <= cap as f64, "{waiting} connections served");
    assert!(refused >= 1.0, "{m}");
    assert_logged(&d, "diameter connection refused: connection limit reached");
    // The flood never sends CER: its connections close after cer_timeout_s, and a legitimate
    // peer gets in although the flooder keeps its sockets.
    let m = wait_metrics(&d, Duration::from_secs(20), |m| {
        counter(m, "imei_lockd_diameter_peers", &["state=\"wait_cer\""]) == 0.0
    });
    assert_eq!(
        counter(&m, "imei_lockd_diameter_peers", &["state=\"wait_cer\""]),
        0.0,
        "{m}"
    );
    assert_legit_gx_works(&d, "001010000007201");
    drop(flood);
}

#[test]
fn diameter_messages_before_cer_close_the_connection_without_an_answer() {
    let d = Daemon::start(&peers());
    for first in [
        ccr("early;1", PCEF, 1, "001010000007301", Some(IMEI_A)),
        dwr(PCEF),
    ] {
        let mut c = Raw::open(d.ports.diameter);
        let (_, b) = c.stamp(first);
        c.send_bytes(&b);
        let got = read_until_closed(&mut c.s, Duration::from_secs(10));
        assert!(got.is_empty(), "no answer to an unidentified sender");
    }
    wait_diameter_error(&d, "not_cer", 2.0);
    assert_logged(
        &d,
        "diameter connection closed before capabilities exchange",
    );
    assert_legit_gx_works(&d, "001010000007302");
}

#[test]
fn diameter_second_cer_is_answered_and_a_changed_origin_host_refused() {
    let d = Daemon::start(&format!(
        "{}[[diameter.peers]]\norigin_host = \"{PGW}\"\n",
        peers()
    ));
    let imsi = "001010000007401";
    d.api().put_sim(imsi, json!({"imei_management": "lock"}));
    let mut c = Raw::connect(&d, PCEF);
    // RFC 6733 §5.6 R-Open + R-Rcv-CER: answered with a CEA; the connection stays usable.
    let a = c.call(cer(PCEF, "again", &[APP_GX, APP_S6B]));
    assert_eq!(a.result_code(), Some(ResultCode::SUCCESS));
    let a = c.call(ccr("recer;1", PCEF, 1, imsi, Some(IMEI_A)));
    assert_eq!(a.result_code(), Some(ResultCode::SUCCESS));
    // A re-CER claiming another identity: 5012 and closed.
    let a = c.call(cer(PGW, "impostor", &[APP_GX]));
    assert_eq!(a.result_code(), Some(ResultCode::UNABLE_TO_COMPLY));
    assert!(c.closed_by_peer(), "closed after the refused re-CER");
    wait_diameter_error(&d, "cer_rejected", 1.0);
    assert_logged(&d, "diameter peer closed");
    assert_legit_gx_works(&d, "001010000007402");
}

#[test]
fn diameter_garbage_after_a_valid_message_answers_it_then_closes() {
    let d = Daemon::start(&peers());
    let imsi = "001010000007501";
    d.api().put_sim(imsi, json!({"imei_management": "lock"}));
    let mut c = Raw::connect(&d, PCEF);
    let before = diameter_errors(&d, "decode");
    let (hbh, mut b) = c.stamp(ccr("garbage;1", PCEF, 1, imsi, Some(IMEI_A)));
    b.extend_from_slice(b"GET / HTTP/1.1\r\nHost: aaa\r\n\r\n");
    c.send_bytes(&b);
    let a: Message = c.try_read().expect("the valid CCR is answered");
    assert_eq!(a.header.hop_by_hop, hbh);
    assert_eq!(a.result_code(), Some(ResultCode::SUCCESS));
    assert!(c.closed_by_peer(), "garbage cannot be framed: closed");
    wait_diameter_error(&d, "decode", before + 1.0);
    assert_logged(&d, "diameter stream error: closing");
    assert_eq!(d.api().sim(imsi)["bound_imei"], &IMEI_A[..14]);
    assert_legit_gx_works(&d, "001010000007502");
}

// ---------------------------------------------------------------------------------------------
// RADIUS

#[test]
fn radius_flood_from_an_unknown_source_is_counted_and_the_client_still_answered() {
    let d = Daemon::start("");
    let imsi = "001010000007601";
    d.api().put_sim(imsi, json!({"imei_management": "lock"}));
    let port = d.ports.radius_auth;
    let n = 5000u32;
    // The kernel's drops on the daemon's socket, not the machine-wide RcvbufErrors, which every
    // other process's UDP sockets add to.
    let kernel_before = socket_drops(loopback(port));
    // 127.0.0.3 is no configured client (only 127.0.0.1/32 is).
    let flooder = std::thread::spawn(move || {
        let s = udp("127.0.0.3:0", Duration::from_millis(100));
        for i in 0..n {
            let mut auth = [0u8; 16];
            auth[..4].copy_from_slice(&i.to_be_bytes());
            let pkt = access_request(i as u8, auth, imsi, Some(IMEI_A), SECRET, true);
            s.send_to(&pkt, ("127.0.0.1", port)).unwrap();
        }
    });
    // Meanwhile the real client is answered: binds, then matches.
    let s = udp("127.0.0.1:0", Duration::from_secs(3));
    for id in 0..20u8 {
        let pkt = access_request(id, authenticator(id), imsi, Some(IMEI_A), SECRET, true);
        let a = exchange(&s, port, &pkt).expect("the configured client is answered");
        assert_eq!(a[0], 2, "Access-Accept");
    }
    flooder.join().unwrap();
    // Each configured client's request was answered, so what the kernel dropped on the
    // daemon's socket was the flood's.
    let kernel = match (kernel_before, socket_drops(loopback(port))) {
        (Some(b), Some(a)) => a - b,
        _ => 0,
    };
    let label = ["reason=\"unknown_client\""];
    let m = wait_metrics(&d, Duration::from_secs(10), |m| {
        counter(m, "imei_lockd_radius_drops_total", &label) + kernel as f64 >= n as f64
    });
    let dropped = counter(&m, "imei_lockd_radius_drops_total", &label);
    println!("flood of {n}: {dropped} counted as unknown_client, {kernel} dropped by the kernel");
    assert_eq!(dropped + kernel as f64, n as f64, "{m}");
    assert_eq!(d.api().sim(imsi)["bound_imei"], &IMEI_A[..14]);
    // One line per source per 10 s, not one per packet.
    let lines = d
        .log_text()
        .lines()
        .filter(|l| l.contains("RADIUS packet dropped") && l.contains("127.0.0.3"))
        .count();
    assert_eq!(lines, 1, "{}", d.log_text());
}

/// A RADIUS flood that never lets the socket empty must not take the daemon's worker threads:
/// meanwhile a Diameter peer connects (CER/CEA), is answered a CCR, and the API answers, each
/// within a second.
#[test]
fn sustained_radius_flood_does_not_starve_diameter_or_the_api() {
    let d = Daemon::start(&peers());
    let imsi = "001010000007701";
    d.api().put_sim(imsi, json!({"imei_management": "lock"}));
    let port = d.ports.radius_auth;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders: Vec<_> = (0..2u32)
        .map(|k| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // Unknown sources (127.0.0.4/5): each datagram is a cheap drop, so the flood
                // outruns nothing but the receive loop itself.
                let s = udp(&format!("127.0.0.{}:0", 4 + k), Duration::from_millis(100));
                let pkt = access_request(1, [k as u8; 16], imsi, Some(IMEI_A), SECRET, true);
                let mut sent = 0u64;
                // At most 5 s, so that a starved daemon recovers and the test fails, not hangs.
                let until = Instant::now() + Duration::from_secs(5);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
                    for _ in 0..256 {
                        let _ = s.send_to(&pkt, ("127.0.0.1", port));
                    }
                    sent += 256;
                }
                sent
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let mut c = Raw::connect(&d, PCEF);
    let cea = t0.elapsed();
    let a = c.call(ccr(&format!("flood;{imsi}"), PCEF, 1, imsi, Some(IMEI_A)));
    let cca = t0.elapsed() - cea;
    let t1 = Instant::now();
    let sim = d.api().sim(imsi);
    let api = t1.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent: u64 = flooders.into_iter().map(|f| f.join().unwrap()).sum();
    let m = metrics_text(&d);
    let dropped = counter(&m, "imei_lockd_radius_drops_total", &[]);
    println!(
        "flood of {sent} datagrams ({dropped} counted as drops): CEA after {cea:?}, CCA after \
         {cca:?}, API after {api:?}"
    );
    assert!(dropped > 10_000.0, "the flood reached the daemon: {m}");
    assert_eq!(a.result_code(), Some(ResultCode::SUCCESS), "CCR-I");
    assert_eq!(sim["bound_imei"], &IMEI_A[..14]);
    let limit = Duration::from_secs(1);
    assert!(
        cea < limit && cca < limit && api < limit,
        "{cea:?} {cca:?} {api:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// API

/// Sends `head` (and `body`) on a raw connection to the API; what the daemon answers, up to its
/// close or `within`.
fn raw_http(d: &Daemon, head: &str, body: &[u8], within: Duration) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", d.ports.api)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    s.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
        if got.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn api_errors(d: &Daemon, reason: &str) -> f64 {
    counter(
        &metrics_text(d),
        "imei_lockd_api_errors_total",
        &[&format!("reason=\"{reason}\"")],
    )
}

#[test]
fn api_oversize_bodies_get_413() {
    let d = Daemon::start("");
    // A JSON body over the 64 KiB cap.
    let big = json!({"msisdn": "4917", "pad": "x".repeat(imei_lockd::api::JSON_LIMIT)});
    let r = common::http()
        .put(d.url("/v1/sims/001010000007701"))
        .bearer_auth(TOKEN)
        .json(&big)
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    // An import announcing more than the import cap is refused before it is sent.
    let head = format!(
        "POST /v1/sims:import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: text/csv\r\nContent-Length: {}\r\n\r\n",
        imei_lockd::api::IMPORT_LIMIT + 1
    );
    let t0 = Instant::now();
    let answer = raw_http(&d, &head, b"imsi,msisdn,profile,imei_management\n", {
        Duration::from_secs(10)
    });
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    println!("oversize import refused in {:?}", t0.elapsed());
    // A chunked JSON body that grows past the cap.
    let head = format!(
        "PUT /v1/sims/001010000007702 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let chunk = format!("{:x}\r\n{}\r\n", 8192, " ".repeat(8192));
    let answer = raw_http(
        &d,
        &head,
        chunk.repeat(10).as_bytes(),
        Duration::from_secs(10),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        api_errors(&d, "body_too_large") >= 3.0,
        "{}",
        metrics_text(&d)
    );
    assert_logged(&d, "API request body over its size limit: 413");
    // Normal requests still work.
    d.api()
        .put_sim("001010000007703", json!({"imei_management": "lock"}));
}

#[test]
fn api_slow_clients_are_disconnected() {
    let d = Daemon::start_with_env(
        "",
        &[
            ("IMEI_LOCKD__API__HEADER_TIMEOUT_S", "2"),
            ("IMEI_LOCKD__API__BODY_TIMEOUT_S", "2"),
        ],
    );
    // Slowloris: 50 connections that each send part of a request line and stall.
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", d.ports.api)).unwrap();
            s.write_all(b"GET /v1/imei-management/values HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    // Meanwhile the API answers others.
    let (status, _) = d.api().get("/v1/imei-management/values");
    assert_eq!(status, 200);
    let t0 = Instant::now();
    for s in &mut slow {
        let got = read_until_closed(s, Duration::from_secs(10));
        let text = String::from_utf8_lossy(&got);
        assert!(
            got.is_empty() || text.starts_with("HTTP/1.1 408"),
            "slow client got {text}"
        );
    }
    println!("50 slowloris connections closed within {:?}", t0.elapsed());
    let m = wait_metrics(&d, Duration::from_secs(5), |m| {
        counter(
            m,
            "imei_lockd_api_errors_total",
            &["reason=\"header_timeout\""],
        ) >= 50.0
    });
    assert!(
        counter(
            &m,
            "imei_lockd_api_errors_total",
            &["reason=\"header_timeout\""]
        ) >= 50.0,
        "{m}"
    );
    assert_logged(&d, "within api.header_timeout_s: disconnected");

    // A body announced and then stalled: 408 after api.body_timeout_s.
    let head = format!(
        "PUT /v1/sims/001010000007801 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    let answer = raw_http(&d, &head, b"{\"msisdn\":", Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(api_errors(&d, "body_timeout") >= 1.0);
    assert_logged(&d, "API request body stalled beyond api.body_timeout_s");
    d.api()
        .put_sim("001010000007802", json!({"imei_management": "lock"}));
}

// ---------------------------------------------------------------------------------------------
// API security

/// `imei-lockd check-config` on `body`, with `env`; (exit code, output).
fn check_config(body: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("imei-lockd.toml");
    std::fs::write(&p, body).unwrap();
    common::check_config_file(&p, env)
}

fn shipped() -> String {
    std::fs::read_to_string(common::repo_root().join("conf/imei-lockd.toml")).unwrap()
}

#[test]
fn api_token_is_never_logged() {
    let token = "tok-3f9c1d8e7a6b5c4d";
    let wrong = "tok-wrong-77aa55cc33ee";
    let d = Daemon::start_with_env("", &[("IMEI_LOCKD__API__TOKEN", token)]);
    let http = common::http();
    let url = d.url("/v1/sims/001010000007901");
    // Right token, wrong token, a malformed header, and a request that fails (404).
    let r = http
        .put(&url)
        .bearer_auth(token)
        .json(&json!({"imei_management": "lock"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        http.get(&url).bearer_auth(wrong).send().unwrap().status(),
        401
    );
    let r = http
        .get(&url)
        .header("Authorization", format!("Basic {token}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(d.url("/v1/sims/001019999999999"))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    // A SIGHUP reload logs the configuration summary.
    common::unsafe_kill(d.pid() as i32, 1);
    wait_metrics(&d, Duration::from_secs(10), |m| {
        counter(m, "imei_lockd_config_reloads_total", &[]) >= 1.0
    });
    let log = d.log_text();
    assert!(log.contains("API request without a valid token"), "{log}");
    assert!(!log.contains(token), "the token was logged:\n{log}");
    assert!(!log.contains(wrong), "a presented token was logged:\n{log}");

    // Configuration errors name the key, never the token's value: next to another bad key, as
    // a value of the wrong type (from the file and from the environment), and as a token file
    // that cannot be read.
    let with_token = shipped().replace("token = \"change-me\"", &format!("token = \"{token}\""));
    // (configuration text, environment overrides, the key the error must name)
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            with_token.replace("watchdog_s = 30", "watchdog_s = 2"),
            vec![],
            "diameter.watchdog_s",
        ),
        (
            shipped().replace("token = \"change-me\"", "token = [\"918273645546372819\"]"),
            vec![],
            "api.token",
        ),
        (
            with_token.clone(),
            vec![("IMEI_LOCKD__API__TOKEN_FILE", "/nonexistent/token")],
            "api.token",
        ),
    ];
    for (body, env, key) in cases {
        let (code, text) = check_config(&body, &env);
        assert_eq!(code, 2, "{key}: {text}");
        assert!(text.contains(key), "{key}: {text}");
        assert!(
            !text.contains(token) && !text.contains("918273645546372819"),
            "the token appears in a configuration error: {text}"
        );
    }
}

#[test]
fn api_and_metrics_listen_on_loopback_by_default() {
    let defaults = imei_lockd::config::Config::default();
    for (key, value) in [
        ("api.listen", &defaults.api.listen),
        ("metrics.listen", &defaults.metrics.listen),
    ] {
        let a = imei_lockd::config::parse_addr(key, value).unwrap();
        assert!(a.ip().is_loopback(), "default {key} = {value}");
    }
    let conf = imei_lockd::config::Config::load(&common::repo_root().join("conf/imei-lockd.toml"))
        .unwrap();
    for (key, value) in [
        ("api.listen", &conf.api.listen),
        ("metrics.listen", &conf.metrics.listen),
    ] {
        let a = imei_lockd::config::parse_addr(key, value).unwrap();
        assert!(a.ip().is_loopback(), "shipped {key} = {value}");
    }
}

#[test]
fn a_public_api_without_a_token_is_refused_with_exit_2() {
    let no_token = shipped().replace("token = \"change-me\"\n", "");
    assert!(!no_token.contains("\ntoken ="), "{no_token}");
    // Loopback without a token is allowed.
    let (code, text) = check_config(&no_token, &[]);
    assert_eq!(code, 0, "{text}");
    for public in ["0.0.0.0:8080", "[::]:8080", "192.0.2.10:8080"] {
        let (code, text) = check_config(&no_token, &[("IMEI_LOCKD__API__LISTEN", public)]);
        assert_eq!(code, 2, "{public}: {text}");
        assert!(
            text.contains("api.token") && text.contains("non-loopback"),
            "{public}: {text}"
        );
        // With a token (or a token file) it is accepted.
        let (code, text) = check_config(
            &no_token,
            &[
                ("IMEI_LOCKD__API__LISTEN", public),
                ("IMEI_LOCKD__API__TOKEN", "s3cret-value"),
            ],
        );
        assert_eq!(code, 0, "{public}: {text}");
    }
    // The daemon itself refuses to start, with the same exit code and message (TEST-NET-1: had
    // the check failed, the bind would fail too, nothing listens publicly).
    let dir = tempfile::tempdir().unwrap();
    let ports = common::Ports::new();
    let cfg = common::config_text(dir.path(), &ports, "")
        .replace(&format!("token = \"{TOKEN}\"\n"), "")
        .replace(
            &format!("listen = \"127.0.0.1:{}\"", ports.api),
            &format!("listen = \"192.0.2.10:{}\"", ports.api),
        );
    let path = dir.path().join("imei-lockd.toml");
    std::fs::write(&path, cfg).unwrap();
    let (code, text) = common::output(
        std::process::Command::new(common::bin("imei-lockd"))
            .arg("--config")
            .arg(&path),
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("api.token"), "{text}");
}
