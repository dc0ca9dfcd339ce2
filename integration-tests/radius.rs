//! radius integration tests (against the real binary), with FreeRADIUS's `radclient` as the peer
//! and raw UDP where a test needs exact bytes (retransmissions, forged authenticators, unknown
//! sources, bursts).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;

use common::radius::{
    access_request, authenticator, drops, exchange, loopback, socket_drops, udp,
    udp_with_recv_buffer, SECRET,
};
use common::webhook::Receiver;
use common::{counter, wait_metrics, Daemon};
use imei_lockd::radius::attr;
use imei_lockd::radius::encode::encode_accounting_request;
/// Device A, B, C (IMEISV: TAC + SNR + SVN); the lock keeps TAC + SNR (14 digits).
const IMEI_A: &str = "3520990017614823";
const IMEI_A_NEW_SVN: &str = "3520990017614899";
const IMEI_B: &str = "3548580412345601";
const IMEI_C: &str = "4901542032375101";

fn tac_snr(imeisv: &str) -> &str {
    &imeisv[..14]
}

/// Panics with a clear message when radclient is not installed.
fn radclient_path() -> &'static str {
    static CHECKED: OnceLock<bool> = OnceLock::new();
    let ok = *CHECKED.get_or_init(|| {
        Command::new("radclient")
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    assert!(
        ok,
        "radclient not found: install Debian's freeradius-utils (scripts/setup.sh --test)"
    );
    "radclient"
}

/// What radclient printed.
#[derive(Debug)]
struct Reply {
    /// "Access-Accept", "Access-Reject", "Accounting-Response", or None (no reply).
    code: Option<String>,
    reply_message: Option<String>,
    output: String,
}

impl Reply {
    fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// Runs `radclient -x -r 1 -t TIMEOUT 127.0.0.1:PORT COMMAND SECRET` with `attrs` on stdin.
fn radclient_timeout(port: u16, command: &str, secret: &str, attrs: &str, timeout: u32) -> Reply {
    let mut child = Command::new(radclient_path())
        .args(["-x", "-r", "1", "-t", &timeout.to_string()])
        .arg(format!("127.0.0.1:{port}"))
        .arg(command)
        .arg(secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radclient starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(attrs.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = output
        .lines()
        .find_map(|l| l.strip_prefix("Received "))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_owned);
    let reply_message = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Reply-Message = "))
        .map(|v| v.trim_matches('"').to_owned());
    Reply {
        code,
        reply_message,
        output,
    }
}

fn radclient(port: u16, command: &str, secret: &str, attrs: &str) -> Reply {
    radclient_timeout(port, command, secret, attrs, 2)
}

/// Attributes of an Access-Request with Message-Authenticator (radclient computes it).
fn access_attrs(imsi: &str, imei: Option<&str>) -> String {
    let mut a = format!("User-Name = \"{imsi}\"\n3GPP-IMSI = \"{imsi}\"\n");
    if let Some(i) = imei {
        a.push_str(&format!("3GPP-IMEISV = \"{i}\"\n"));
    }
    a.push_str("Called-Station-Id = \"iot.apn\"\n3GPP-RAT-Type = EUTRAN\n");
    a.push_str("Message-Authenticator = 0x00\n");
    a
}

/// One Access-Request through radclient.
fn session(d: &Daemon, imsi: &str, imei: Option<&str>) -> Reply {
    radclient(
        d.ports.radius_auth,
        "auth",
        SECRET,
        &access_attrs(imsi, imei),
    )
}

#[track_caller]
fn assert_accept(r: &Reply) {
    assert!(
        r.is("Access-Accept"),
        "expected Access-Accept:\n{}",
        r.output
    );
}

#[track_caller]
fn assert_reject(r: &Reply, message: &str) {
    assert!(
        r.is("Access-Reject"),
        "expected Access-Reject:\n{}",
        r.output
    );
    assert_eq!(r.reply_message.as_deref(), Some(message), "{}", r.output);
}

#[track_caller]
fn assert_no_reply(r: &Reply) {
    assert!(r.code.is_none(), "expected no reply:\n{}", r.output);
    assert!(r.output.contains("No reply"), "{}", r.output);
}

fn bound(d: &Daemon, imsi: &str) -> Option<String> {
    d.api().sim(imsi)["bound_imei"].as_str().map(str::to_owned)
}

fn lock_sim(d: &Daemon, imsi: &str) {
    d.api().put_sim(imsi, json!({"imei_management": "lock"}));
}

/// The daemon's Prometheus text.
fn metrics(d: &Daemon) -> String {
    common::http()
        .get(format!("http://127.0.0.1:{}/metrics", d.ports.metrics))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// Raw Access-Request octets: 3GPP-IMSI, User-Name, optional 3GPP-IMEISV; with a
/// Message-Authenticator computed with `ma_secret` when given.
fn raw_access(
    id: u8,
    auth: [u8; 16],
    imsi: &str,
    imei: Option<&str>,
    ma_secret: Option<&str>,
) -> Vec<u8> {
    access_request(
        id,
        auth,
        imsi,
        imei,
        ma_secret.unwrap_or(SECRET),
        ma_secret.is_some(),
    )
}

// ---------------------------------------------------------------------------------------------
// Lock semantics over radclient
// ---------------------------------------------------------------------------------------------

#[test]
fn lock_binds_first_imei_rejects_another_and_ignores_svn() {
    let d = Daemon::start("");
    let imsi = "001010000000001";
    lock_sim(&d, imsi);
    assert_eq!(bound(&d, imsi), None);

    assert_accept(&session(&d, imsi, Some(IMEI_A)));
    assert_eq!(bound(&d, imsi).as_deref(), Some(tac_snr(IMEI_A)));

    assert_reject(&session(&d, imsi, Some(IMEI_B)), "IMEI mismatch");
    // A firmware update changes only the SVN: still the same device.
    assert_accept(&session(&d, imsi, Some(IMEI_A_NEW_SVN)));
    assert_accept(&session(&d, imsi, Some(IMEI_A)));
    assert_eq!(bound(&d, imsi).as_deref(), Some(tac_snr(IMEI_A)));
    let m = metrics(&d);
    assert!(
        counter(
            &m,
            "imei_lockd_radius_responses_total",
            &["type=\"access_reject\""]
        ) >= 1.0,
        "{m}"
    );
}

#[test]
fn pairing_replaces_the_binding_and_disabled_accepts_any() {
    let d = Daemon::start("");
    let imsi = "001010000000002";
    lock_sim(&d, imsi);
    assert_accept(&session(&d, imsi, Some(IMEI_A)));

    d.api().set_value(imsi, Some("pairing"));
    assert_accept(&session(&d, imsi, Some(IMEI_B)));
    assert_eq!(bound(&d, imsi).as_deref(), Some(tac_snr(IMEI_B)));
    // Pairing with no IMEI presented: accepted, binding kept.
    assert_accept(&session(&d, imsi, None));
    assert_eq!(bound(&d, imsi).as_deref(), Some(tac_snr(IMEI_B)));

    d.api().set_value(imsi, Some("disabled"));
    for imei in [Some(IMEI_A), Some(IMEI_C), None] {
        assert_accept(&session(&d, imsi, imei));
    }
    // Disabled keeps (but does not check) the binding.
    assert_eq!(bound(&d, imsi).as_deref(), Some(tac_snr(IMEI_B)));

    // A SIM with no value and no profile is disabled.
    let plain = "001010000000012";
    d.api().put_sim(plain, json!({}));
    assert_accept(&session(&d, plain, Some(IMEI_C)));
    assert_eq!(bound(&d, plain), None);
}

#[test]
fn unknown_imsi_and_no_imsi_are_rejected() {
    let d = Daemon::start("");
    assert_reject(&session(&d, "001019999999999", Some(IMEI_A)), "Unknown SIM");
    // No IMSI at all: rejected with "No IMSI", the engine is not asked.
    let r = radclient(
        d.ports.radius_auth,
        "auth",
        SECRET,
        "User-Name = \"someone@example.org\"\nMessage-Authenticator = 0x00\n",
    );
    assert_reject(&r, "No IMSI");
}

#[test]
fn missing_imei_rejected_by_default_policy() {
    let d = Daemon::start("");
    let imsi = "001010000000003";
    lock_sim(&d, imsi);
    assert_reject(&session(&d, imsi, None), "IMEI missing");
    // A malformed IMEI counts as none presented.
    assert_reject(&session(&d, imsi, Some("12ab")), "IMEI missing");
    assert_eq!(bound(&d, imsi), None);
}

#[test]
fn missing_imei_accepted_when_policy_says_so() {
    let d = Daemon::start_with_env("", &[("IMEI_LOCKD__RADIUS__MISSING_IMEI", "accept")]);
    let imsi = "001010000000004";
    lock_sim(&d, imsi);
    assert_accept(&session(&d, imsi, None));
    assert_eq!(bound(&d, imsi), None);
    // The policy covers a missing IMEI only: a different device is still rejected.
    assert_accept(&session(&d, imsi, Some(IMEI_A)));
    assert_reject(&session(&d, imsi, Some(IMEI_B)), "IMEI mismatch");
}

// ---------------------------------------------------------------------------------------------
// Discards
// ---------------------------------------------------------------------------------------------

#[test]
fn unauthenticated_requests_are_discarded_and_counted() {
    let d = Daemon::start("");
    let imsi = "001010000000005";
    lock_sim(&d, imsi);
    let port = d.ports.radius_auth;

    // radclient: no Message-Authenticator (the client requires one), and a wrong secret.
    let r = radclient_timeout(
        port,
        "auth",
        SECRET,
        &format!("User-Name = \"{imsi}\"\n3GPP-IMSI = \"{imsi}\"\n3GPP-IMEISV = \"{IMEI_A}\"\n"),
        1,
    );
    assert_no_reply(&r);
    let r = radclient_timeout(
        port,
        "auth",
        "wrong-secret",
        &access_attrs(imsi, Some(IMEI_A)),
        1,
    );
    assert_no_reply(&r);

    // Raw: no Message-Authenticator; one computed with another secret.
    let s = udp("127.0.0.1:0", Duration::from_millis(700));
    assert!(exchange(
        &s,
        port,
        &raw_access(1, authenticator(1), imsi, Some(IMEI_A), None)
    )
    .is_none());
    let forged = raw_access(
        2,
        authenticator(2),
        imsi,
        Some(IMEI_A),
        Some("not-the-secret"),
    );
    assert!(exchange(&s, port, &forged).is_none());
    // A correct one with a flipped bit in the Message-Authenticator (first attribute, value at 22).
    let mut flipped = raw_access(3, authenticator(3), imsi, Some(IMEI_A), Some(SECRET));
    flipped[22] ^= 1;
    assert!(exchange(&s, port, &flipped).is_none());

    // Nothing was evaluated: the SIM is still unbound.
    assert_eq!(bound(&d, imsi), None);
    // The same request, properly signed, is answered.
    let good = raw_access(4, authenticator(4), imsi, Some(IMEI_A), Some(SECRET));
    let answer = exchange(&s, port, &good).expect("answer to a valid request");
    assert_eq!(answer[0], 2, "Access-Accept");
    assert_eq!(
        answer[20],
        attr::MESSAGE_AUTHENTICATOR,
        "Message-Authenticator first"
    );

    let m = metrics(&d);
    assert_eq!(drops(&m, "missing_message_authenticator"), 2.0, "{m}");
    assert_eq!(drops(&m, "bad_message_authenticator"), 3.0, "{m}");
}

#[test]
fn unknown_source_is_dropped_and_counted() {
    let d = Daemon::start("");
    let imsi = "001010000000006";
    lock_sim(&d, imsi);
    // Loopback accepts any 127/8 source; only 127.0.0.1/32 is a configured client.
    let stranger = udp("127.0.0.3:0", Duration::from_millis(700));
    for id in 0..3 {
        let pkt = raw_access(id, authenticator(id), imsi, Some(IMEI_A), Some(SECRET));
        assert!(exchange(&stranger, d.ports.radius_auth, &pkt).is_none());
    }
    assert_eq!(bound(&d, imsi), None);
    let m = metrics(&d);
    assert_eq!(drops(&m, "unknown_client"), 3.0, "{m}");
    // Logged (at WARN), once per source per 10 s.
    let log = d.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("RADIUS packet dropped") && l.contains("unknown_client"))
        .count();
    assert_eq!(lines, 1, "{log}");
}

// ---------------------------------------------------------------------------------------------
// Accounting, Status-Server, duplicates
// ---------------------------------------------------------------------------------------------

#[test]
fn accounting_start_interim_stop_answered_and_recorded() {
    let d = Daemon::start("");
    let imsi = "001010000000007";
    lock_sim(&d, imsi);
    assert_accept(&session(&d, imsi, Some(IMEI_A)));
    let acct = |status: &str, imei: &str| {
        radclient(
            d.ports.radius_acct,
            "acct",
            SECRET,
            &format!(
                "Acct-Status-Type = {status}\nAcct-Session-Id = \"sess-1\"\nUser-Name = \"{imsi}\"\n\
                 3GPP-IMSI = \"{imsi}\"\n3GPP-IMEISV = \"{imei}\"\nCalling-Station-Id = \"491700000007\"\n"
            ),
        )
    };
    for status in ["Start", "Interim-Update", "Stop"] {
        let r = acct(status, IMEI_A_NEW_SVN);
        assert!(r.is("Accounting-Response"), "{status}:\n{}", r.output);
    }
    let sim = d.api().sim(imsi);
    assert_eq!(sim["last_seen_imei"], tac_snr(IMEI_A), "{sim}");
    // Never a reject, even with another device on a locked SIM (it is judged and logged only).
    let r = acct("Interim-Update", IMEI_B);
    assert!(r.is("Accounting-Response"), "{}", r.output);
    // Accounting-On, an unknown SIM: answered too.
    let r = radclient(
        d.ports.radius_acct,
        "acct",
        SECRET,
        "Acct-Status-Type = Accounting-On\n",
    );
    assert!(r.is("Accounting-Response"), "{}", r.output);
    let r = radclient(
        d.ports.radius_acct,
        "acct",
        SECRET,
        "Acct-Status-Type = Start\nAcct-Session-Id = \"x\"\n3GPP-IMSI = \"001019999999998\"\n",
    );
    assert!(r.is("Accounting-Response"), "{}", r.output);
    // Wrong secret: the Request Authenticator does not verify, no answer.
    let r = radclient_timeout(
        d.ports.radius_acct,
        "acct",
        "wrong-secret",
        "Acct-Status-Type = Start\nAcct-Session-Id = \"y\"\n",
        1,
    );
    assert_no_reply(&r);
    assert_eq!(bound(&d, imsi).as_deref(), Some(tac_snr(IMEI_A)));
}

#[test]
fn status_server_answered_on_both_ports() {
    let d = Daemon::start("");
    let r = radclient(
        d.ports.radius_auth,
        "status",
        SECRET,
        "Message-Authenticator = 0x00\n",
    );
    assert!(r.is("Access-Accept"), "{}", r.output);
    let r = radclient(
        d.ports.radius_acct,
        "status",
        SECRET,
        "Message-Authenticator = 0x00\n",
    );
    assert!(r.is("Accounting-Response"), "{}", r.output);
    let m = metrics(&d);
    assert_eq!(
        counter(
            &m,
            "imei_lockd_radius_responses_total",
            &["type=\"status\""]
        ),
        2.0,
        "{m}"
    );
}

#[test]
fn retransmission_gets_the_cached_answer_without_a_second_evaluation() {
    let d = Daemon::start("");
    let imsi = "001010000000008";
    lock_sim(&d, imsi);
    assert_accept(&session(&d, imsi, Some(IMEI_A)));

    let s = udp("127.0.0.1:0", Duration::from_secs(2));
    let port = d.ports.radius_auth;
    let pkt = raw_access(42, authenticator(42), imsi, Some(IMEI_B), Some(SECRET));
    let first = exchange(&s, port, &pkt).expect("first answer");
    assert_eq!(first[0], 3, "Access-Reject (IMEI mismatch)");

    // Clear the binding: evaluated again, this request would now bind B and be accepted.
    d.api()
        .submit_wait("POST", &format!("/v1/sims/{imsi}/reset"), None);
    let again = exchange(&s, port, &pkt).expect("cached answer");
    assert_eq!(again, first, "byte for byte");
    assert_eq!(bound(&d, imsi), None, "the retransmission must not bind");

    // Same Identifier, new Request Authenticator: a new request.
    let fresh = raw_access(42, authenticator(43), imsi, Some(IMEI_B), Some(SECRET));
    let answer = exchange(&s, port, &fresh).expect("answer");
    assert_eq!(answer[0], 2, "Access-Accept");
    assert_eq!(bound(&d, imsi).as_deref(), Some(tac_snr(IMEI_B)));

    // Accounting retransmission: answered from the cache too.
    let acct_pkt = encode_accounting_request(
        9,
        &[
            (attr::ACCT_STATUS_TYPE, &1u32.to_be_bytes()),
            (attr::ACCT_SESSION_ID, b"dup-1"),
            (attr::USER_NAME, imsi.as_bytes()),
        ],
        SECRET.as_bytes(),
        false,
    )
    .unwrap();
    let a1 = exchange(&s, d.ports.radius_acct, &acct_pkt).expect("Accounting-Response");
    let a2 = exchange(&s, d.ports.radius_acct, &acct_pkt).expect("cached");
    assert_eq!(a1[0], 5);
    assert_eq!(a1, a2);

    let m = metrics(&d);
    assert_eq!(
        counter(&m, "imei_lockd_radius_duplicates_total", &[]),
        2.0,
        "{m}"
    );
}

/// Receive buffer asked for the burst's client socket: 3000 answers take ~2.5 MB queued (832
/// octets each), so the whole burst fits even when the reader thread gets no CPU meanwhile.
const BURST_CLIENT_RCVBUF: usize = 16 << 20;

/// A burst of 3000 Access-Requests from one socket, sent as fast as one thread can while another
/// reads the answers: every request is accounted for, by the daemon's own counters and by the
/// kernel's drop count of each socket (`drops` of /proc/net/udp), and none is lost silently:
/// - sent = taken by the daemon (`packets_total`) + dropped by the kernel on the daemon's socket
///   (`drops_total{reason="receive_buffer"}`, equal to that socket's own kernel count);
/// - taken = answered (`responses_total` + `duplicates_total`) + `overload` drops, and no drop
///   of any other reason;
/// - answered = answers read by the client + answers the kernel dropped on the client's sockets
///   + `send_error` drops.
///
/// Issue 16 (this test failed 2 runs of 3, 96 to 207 of 3000 answers missing, `RcvbufErrors`
/// rising) was the test's own socket: on this 2-core machine under a parallel cargo build or
/// `stress-ng --cpu 2`, with the client socket at the default 208 KiB, 8 runs of 10 lost 40 to
/// 1044 answers, every one dropped by the kernel on the test's client socket (its `drops` = the
/// answers missing = the `RcvbufErrors` increase) and none on the daemon's (8 MiB buffer:
/// 0 `receive_buffer`, 0 `overload`, all 3000 answered). An answer takes 832 octets of receive
/// buffer, so 208 KiB holds 256 of them, and the reader thread, sharing 2 cores with the sender
/// and the daemon, fell behind. The client socket now asks for [`BURST_CLIENT_RCVBUF`]
/// (`SO_RCVBUFFORCE` as root, else `SO_RCVBUF` within `net.core.rmem_max`): 0 answers missing
/// in 16 runs of 16 under such load. With 32 KiB buffers on both sides instead, thousands of
/// drops on the daemon's socket and some on the client's are accounted for exactly; a daemon
/// that leaves kernel drops uncounted or silently loses 1 request in 100 fails. The test no longer
/// requires that nothing be dropped: whether the daemon keeps up with a burst without kernel
/// drops is a performance figure, which the overload benchmark (`scripts/bench-overload.sh`:
/// `receive_buffer` drops) measures. The machine-wide `RcvbufErrors` is not compared at all: every
/// other process's UDP sockets count there too.
#[test]
fn a_burst_is_answered_or_counted_as_dropped() {
    let d = Daemon::start("");
    let port = d.ports.radius_auth;
    if socket_drops(loopback(port)).is_none() {
        eprintln!("no /proc/net/udp entry for the RADIUS port here: skipped");
        return;
    }
    let imsi = "001010000000009";
    d.api()
        .put_sim(imsi, json!({"imei_management": "disabled"}));
    let n: usize = 3000;
    let (s, granted) =
        udp_with_recv_buffer("127.0.0.1:0", Duration::from_secs(3), BURST_CLIENT_RCVBUF);
    let s = Arc::new(s);
    let received = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (s, received) = (s.clone(), received.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while received.load(Ordering::Relaxed) < n {
                match s.recv_from(&mut buf) {
                    Ok(_) => {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
            }
        })
    };
    let started = Instant::now();
    for i in 0..n {
        let mut auth = [0u8; 16];
        auth[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let pkt = raw_access((i % 256) as u8, auth, imsi, Some(IMEI_A), Some(SECRET));
        s.send_to(&pkt, ("127.0.0.1", port)).unwrap();
    }
    let sent_in = started.elapsed();
    reader.join().unwrap();
    let elapsed = started.elapsed();

    // The daemon learns its socket's kernel drop count with the next datagram it takes
    // (SO_RXQ_OVFL): a probe after the burst, from another socket (its answer is no burst
    // answer), sent until answered.
    let p = udp("127.0.0.1:0", Duration::from_secs(3));
    let mut probes = 0usize;
    let mut probe_answers = 0usize;
    while probe_answers == 0 {
        assert!(probes < 5, "no answer to {probes} requests after the burst");
        probes += 1;
        let mut auth = [0xee; 16];
        auth[0] = probes as u8;
        let pkt = raw_access(probes as u8, auth, imsi, Some(IMEI_A), Some(SECRET));
        if exchange(&p, port, &pkt).is_some() {
            probe_answers += 1;
        }
    }
    let sent = n + probes;
    // Every request the daemon took is answered or dropped (an evaluation on the blocking pool
    // may still run), then the answers sent meanwhile are read.
    let m = wait_metrics(&d, Duration::from_secs(30), |m| {
        let f = BurstFigures::of(m);
        f.taken == f.answered + f.overload + f.other_drops
    });
    probe_answers += drain(&p);
    let answers = received.load(Ordering::Relaxed) + drain(&s);
    let f = BurstFigures::of(&m);
    let daemon_socket = socket_drops(loopback(port)).unwrap() as usize;
    let client_socket = socket_drops(s.local_addr().unwrap()).unwrap() as usize
        + socket_drops(p.local_addr().unwrap()).unwrap() as usize;
    eprintln!(
        "burst: {n} sent in {sent_in:?}, read for {elapsed:?} (client buffer {granted} octets), \
         then {probes} probe(s); daemon: {f:?}, its socket's kernel drops {daemon_socket}; \
         client: {answers} + {probe_answers} answers read, {client_socket} dropped by its \
         sockets' kernel"
    );
    assert_eq!(
        f.receive_buffer, daemon_socket,
        "the daemon counted each datagram the kernel dropped on its socket\n{m}"
    );
    assert_eq!(
        f.taken + f.receive_buffer,
        sent,
        "each request reached the daemon or was counted as a kernel drop\n{m}"
    );
    assert_eq!(
        f.other_drops, 0,
        "no drop but overload or receive_buffer\n{m}"
    );
    assert_eq!(
        f.answered + f.overload,
        f.taken,
        "the daemon answered each request it took, or counted it as overload\n{m}"
    );
    assert_eq!(
        answers + probe_answers + client_socket + f.send_error,
        f.answered,
        "each answer was read, or dropped by the kernel on the client's socket, or counted as \
         a send error\n{m}"
    );
}

/// The auth port's counters for [`a_burst_is_answered_or_counted_as_dropped`].
#[derive(Debug)]
struct BurstFigures {
    /// Datagrams the daemon received (`packets_total`).
    taken: usize,
    /// Answers sent: evaluated (`responses_total`) or from the duplicate cache.
    answered: usize,
    receive_buffer: usize,
    overload: usize,
    send_error: usize,
    /// Drops of any other reason (unanswered requests the daemon took).
    other_drops: usize,
}

impl BurstFigures {
    fn of(m: &str) -> Self {
        let auth = "port=\"auth\"";
        let get = |name: &str, labels: &[&str]| counter(m, name, labels) as usize;
        let drops = |reason: &str| {
            get(
                "imei_lockd_radius_drops_total",
                &[auth, &format!("reason=\"{reason}\"")],
            )
        };
        let (receive_buffer, overload, send_error) = (
            drops("receive_buffer"),
            drops("overload"),
            drops("send_error"),
        );
        Self {
            taken: get("imei_lockd_radius_packets_total", &[auth]),
            answered: get("imei_lockd_radius_responses_total", &[auth])
                + get("imei_lockd_radius_duplicates_total", &[auth]),
            receive_buffer,
            overload,
            send_error,
            other_drops: get("imei_lockd_radius_drops_total", &[auth])
                - receive_buffer
                - overload
                - send_error,
        }
    }
}

/// Reads what is queued on `s` (waiting up to 500 ms for each datagram); returns how many.
fn drain(s: &std::net::UdpSocket) -> usize {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut n = 0;
    while s.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    n
}

// ---------------------------------------------------------------------------------------------
// End to end over the API and radclient
// ---------------------------------------------------------------------------------------------

#[test]
fn pairing_procedure_moves_a_locked_sim_to_a_new_device() {
    let d = Daemon::start("");
    let imsi = "001010000000010";
    lock_sim(&d, imsi);
    assert_accept(&session(&d, imsi, Some(IMEI_A)));
    // Set pairing, wait for processed (put/set_value wait), use the SIM in the new device.
    d.api().set_value(imsi, Some("pairing"));
    assert_accept(&session(&d, imsi, Some(IMEI_B)));
    d.api().set_value(imsi, Some("lock"));
    assert_reject(&session(&d, imsi, Some(IMEI_A)), "IMEI mismatch");
    assert_accept(&session(&d, imsi, Some(IMEI_B)));
    assert_eq!(bound(&d, imsi).as_deref(), Some(tac_snr(IMEI_B)));
}

#[test]
fn a_profile_set_to_lock_locks_its_sims() {
    let d = Daemon::start("");
    let api = d.api();
    api.put_profile("iot-fleet", "disabled");
    let (s1, s2) = ("001010000000020", "001010000000021");
    api.put_sim(s1, json!({"profile": "iot-fleet"}));
    api.put_sim(s2, json!({"profile": "iot-fleet"}));
    assert_accept(&session(&d, s1, Some(IMEI_A)));
    assert_eq!(bound(&d, s1), None, "disabled binds nothing");

    api.put_profile("iot-fleet", "lock");
    assert_accept(&session(&d, s1, Some(IMEI_A)));
    assert_accept(&session(&d, s2, Some(IMEI_B)));
    assert_reject(&session(&d, s1, Some(IMEI_B)), "IMEI mismatch");
    assert_reject(&session(&d, s2, Some(IMEI_A)), "IMEI mismatch");
    // A SIM-level value overrides the profile's.
    api.set_value(s2, Some("disabled"));
    assert_accept(&session(&d, s2, Some(IMEI_A)));
}

/// IMEISV number `i` (distinct TAC+SNR for each i).
fn imei_n(i: usize) -> String {
    format!("35209900{:06}01", i)
}

#[test]
fn flapping_pairing_and_lock_never_leaves_a_stale_binding() {
    let d = Daemon::start("");
    let imsi = "001010000000030";
    lock_sim(&d, imsi);
    assert_accept(&session(&d, imsi, Some(&imei_n(0))));
    for i in 1..=50 {
        let (old, new) = (imei_n(i - 1), imei_n(i));
        d.api().set_value(imsi, Some("pairing"));
        assert_accept(&session(&d, imsi, Some(&new)));
        d.api().set_value(imsi, Some("lock"));
        assert_reject(&session(&d, imsi, Some(&old)), "IMEI mismatch");
        assert_accept(&session(&d, imsi, Some(&new)));
        assert_eq!(bound(&d, imsi).as_deref(), Some(tac_snr(&new)), "round {i}");
    }
}

#[test]
fn reset_clears_the_binding_so_the_next_lock_session_binds_afresh() {
    let d = Daemon::start("");
    let imsi = "001010000000031";
    lock_sim(&d, imsi);
    assert_accept(&session(&d, imsi, Some(IMEI_A)));
    assert_reject(&session(&d, imsi, Some(IMEI_B)), "IMEI mismatch");
    d.api()
        .submit_wait("POST", &format!("/v1/sims/{imsi}/reset"), None);
    assert_eq!(bound(&d, imsi), None);
    assert_accept(&session(&d, imsi, Some(IMEI_B)));
    assert_eq!(bound(&d, imsi).as_deref(), Some(tac_snr(IMEI_B)));
    assert_reject(&session(&d, imsi, Some(IMEI_A)), "IMEI mismatch");
}

#[test]
fn mismatch_alert_reaches_the_webhook_once_per_window_across_a_restart() {
    let hook = Receiver::start();
    let mut d = Daemon::start(&format!(
        "[[alerts.webhooks]]\nurl = \"http://127.0.0.1:{}/alerts\"\nevents = [\"imei_mismatch\"]\n\
         min_interval_s = 300\n",
        hook.port
    ));
    let imsi = "001010000000040";
    lock_sim(&d, imsi);
    assert_accept(&session(&d, imsi, Some(IMEI_A)));
    assert_reject(&session(&d, imsi, Some(IMEI_B)), "IMEI mismatch");
    assert_eq!(
        hook.wait_for(1, Duration::from_secs(10)),
        1,
        "first mismatch alerted"
    );
    assert!(
        hook.bodies.lock()[0].contains(imsi),
        "{:?}",
        hook.bodies.lock()
    );

    // More mismatches within the window: no more alerts.
    assert_reject(&session(&d, imsi, Some(IMEI_C)), "IMEI mismatch");
    d.kill9();
    d.spawn();
    assert_reject(&session(&d, imsi, Some(IMEI_B)), "IMEI mismatch");
    // The delivery task polls every 500 ms: give it a few rounds.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(hook.count(), 1, "{:?}", hook.bodies.lock());
}

/// One value of a Prometheus text exposition (`name{labels}` with every label given), if present.
fn metric(d: &Daemon, name: &str, label: &str) -> Option<f64> {
    let text = common::http()
        .get(format!("http://127.0.0.1:{}/metrics", d.ports.metrics))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn failing_webhook_is_counted_and_retried_until_delivered() {
    // The receiver refuses the first two deliveries (503); the outbox retries with backoff
    // (2 s, then 4 s) and the third POST is delivered. The failures are counted.
    let hook = Receiver::start_failing(2);
    let d = Daemon::start(&format!(
        "[[alerts.webhooks]]\nurl = \"http://127.0.0.1:{}/alerts\"\nevents = [\"imei_mismatch\"]\n\
         min_interval_s = 300\n",
        hook.port
    ));
    let imsi = "001010000000041";
    lock_sim(&d, imsi);
    assert_accept(&session(&d, imsi, Some(IMEI_A)));
    assert_reject(&session(&d, imsi, Some(IMEI_B)), "IMEI mismatch");

    assert_eq!(
        hook.wait_for(1, Duration::from_secs(10)),
        1,
        "first attempt"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&d, "imei_lockd_alerts_total", "result=\"failed\"") != Some(1.0) {
        assert!(Instant::now() < deadline, "failed delivery not counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        hook.wait_for(3, Duration::from_secs(20)),
        3,
        "retried after each failure until delivered"
    );
    let bodies = hook.bodies.lock().clone();
    assert!(
        bodies.iter().all(|b| b == &bodies[0] && b.contains(imsi)),
        "{bodies:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&d, "imei_lockd_alerts_total", "result=\"delivered\"") != Some(1.0) {
        assert!(Instant::now() < deadline, "delivery not counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        metric(&d, "imei_lockd_alerts_total", "result=\"failed\""),
        Some(2.0)
    );
    // Delivered: nothing more is sent.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(hook.count(), 3);
}
