//! Overload against the real binary with a store that has fallen behind (the test-only
//! `IMEI_LOCKD_TEST_STORE_DELAY_MS` makes every write and every read not served from memory take
//! that long): Diameter answers 3004 DIAMETER_TOO_BUSY beyond 256 requests in flight on a
//! connection, RADIUS drops beyond 128 evaluations in flight per port and counts the drops as
//! `overload` — nothing is queued without bound, and both keep serving once the store catches
//! up. Requests the engine decides from memory (a SIM held in memory that binds nothing) do not
//! wait for the lagging store: they are answered at once while the bounded path is full.
//! Memory under sustained overload is measured by `scripts/bench-overload.sh`.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::json;

use common::diameter::{ccr, Raw};
use common::radius::{access_request, drops, loopback, socket_drops, udp, SECRET};
use common::{counter, metrics_text, wait_metrics, Daemon, Keys};
use imei_lockd::diameter::codec::ResultCode;

const PCEF: &str = "pcef.localdomain";
const IMEI_A: &str = "3520990017614823";

#[test]
fn diameter_answers_3004_beyond_the_in_flight_cap() {
    let cap = imei_lockd::diameter::server::MAX_IN_FLIGHT;
    let d = Daemon::start_with_env(
        &format!("[[diameter.peers]]\norigin_host = \"{PCEF}\"\n"),
        &[("IMEI_LOCKD_TEST_STORE_DELAY_MS", "300")],
    );
    let imsi = "001010000008001";
    d.api().put_sim(imsi, json!({"imei_management": "lock"}));
    // Every request of the pipeline would bind (a locked SIM of its own, unbound), so each one
    // goes through the bounded engine path and waits for the slow write.
    let n = cap + 200;
    d.api()
        .import_locked((0..n).map(|i| format!("00104{i:010}")));
    let mut c = Raw::connect(&d, PCEF);
    // 64 engine calls at a time, 300 ms each (the write of the binding): the first 256 stay in
    // flight for over a second,
    // far longer than the whole pipeline takes to arrive.
    let msgs = (0..n).map(|i| {
        ccr(
            &format!("busy;{i}"),
            PCEF,
            1,
            &format!("00104{i:010}"),
            Some(IMEI_A),
        )
    });
    c.s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut codes = BTreeMap::new();
    for (_, a) in c.pipeline(msgs.collect()) {
        *codes.entry(a.result_code().map(|r| r.0)).or_insert(0usize) += 1;
    }
    println!("{n} pipelined CCRs, slow store: answers by Result-Code {codes:?}");
    let busy = codes.get(&Some(3004)).copied().unwrap_or(0);
    let judged = codes.get(&Some(2001)).copied().unwrap_or(0);
    assert_eq!(
        busy + judged,
        n,
        "only 3004 or a judgement (each binds its SIM): {codes:?}"
    );
    assert!(busy > 0, "nothing answered 3004: {codes:?}");
    assert!(judged >= cap, "the first {cap} are judged: {codes:?}");
    let m = metrics_text(&d);
    assert_eq!(
        counter(
            &m,
            "imei_lockd_diameter_errors_total",
            &["reason=\"too_busy\""]
        ),
        busy as f64,
        "{m}"
    );
    assert_eq!(
        counter(
            &m,
            "imei_lockd_diameter_answers_total",
            &["app=\"gx\"", "result_code=\"3004\""]
        ),
        busy as f64,
        "{m}"
    );
    assert!(d
        .log_text()
        .contains("too many diameter requests in flight: 3004"));
    // The connection survives and is served normally once the backlog is through.
    let a = c.call(ccr("busy;after", PCEF, 1, imsi, Some(IMEI_A)));
    assert_eq!(a.result_code(), Some(ResultCode::SUCCESS));
    assert_eq!(d.api().sim(imsi)["bound_imei"], &IMEI_A[..14]);
}

#[test]
fn radius_drops_beyond_the_in_flight_cap_are_counted_not_queued() {
    let cap = imei_lockd::radius::server::MAX_IN_FLIGHT as usize;
    let d = Daemon::start_with_env("", &[("IMEI_LOCKD_TEST_STORE_DELAY_MS", "1000")]);
    let imsi = "001010000008101";
    d.api().put_sim(imsi, json!({"imei_management": "lock"}));
    let port = d.ports.radius_auth;
    // Two sockets (two RADIUS "clients" by source port), 200 distinct requests each, at once.
    let socks = [
        udp("127.0.0.1:0", Duration::from_millis(3000)),
        udp("127.0.0.1:0", Duration::from_millis(3000)),
    ];
    let per = 200usize;
    // Each request would bind a locked SIM of its own, so goes through the bounded engine path
    // and waits for the slow write.
    let sim = |k: usize, id: usize| format!("00102{k}{id:09}");
    d.api()
        .import_locked((0..2).flat_map(|k| (0..per).map(move |id| sim(k, id))));
    let pkt = |k: usize, id: usize| {
        let mut auth = [0u8; 16];
        auth[0] = id as u8;
        auth[1] = 0x5a;
        access_request(id as u8, auth, &sim(k, id), Some(IMEI_A), SECRET, true)
    };
    for (k, s) in socks.iter().enumerate() {
        for id in 0..per {
            s.send_to(&pkt(k, id), ("127.0.0.1", port)).unwrap();
        }
    }
    let mut answered: Vec<HashSet<u8>> = vec![HashSet::new(), HashSet::new()];
    for (k, s) in socks.iter().enumerate() {
        let mut buf = [0u8; 4096];
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            assert!(n >= 20);
            answered[k].insert(buf[1]);
        }
    }
    let total: usize = answered.iter().map(HashSet::len).sum();
    let sent = 2 * per;
    let label = ["reason=\"overload\""];
    let m = wait_metrics(&d, Duration::from_secs(5), |m| {
        counter(m, "imei_lockd_radius_drops_total", &label) as usize + total >= sent
    });
    let dropped = counter(&m, "imei_lockd_radius_drops_total", &label) as usize;
    println!("{sent} requests, slow store: {total} answered, {dropped} dropped as overload");
    assert!(total >= cap, "at least the {cap} admitted are answered");
    assert!(dropped > 0, "{m}");
    // Each request was either evaluated or dropped and counted: none waits in a queue.
    assert_eq!(total + dropped, sent, "{m}");
    assert!(d
        .log_text()
        .lines()
        .any(|l| l.contains("RADIUS packet dropped") && l.contains("overload")));
    // A dropped request is not remembered as a duplicate: its retransmission is evaluated.
    let id = (0..per)
        .find(|id| !answered[0].contains(&(*id as u8)))
        .expect("a dropped request on the first socket");
    socks[0].send_to(&pkt(0, id), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = socks[0]
        .recv_from(&mut buf)
        .expect("the retransmission is answered");
    assert!(
        n >= 20 && buf[1] == id as u8 && buf[0] == 2,
        "Access-Accept (the retransmission binds)"
    );
    // And a binding request still binds.
    let s = udp("127.0.0.1:0", Duration::from_secs(5));
    let a = common::radius::exchange(
        &s,
        port,
        &access_request(1, [7; 16], imsi, Some(IMEI_A), SECRET, true),
    )
    .expect("answer");
    assert_eq!(a[0], 2, "Access-Accept");
    assert_eq!(d.api().sim(imsi)["bound_imei"], &IMEI_A[..14]);
}

/// Unknown SIMs are not in memory: their decisions read the (slow) store, so they take the
/// bounded path and are shed beyond it, although they bind nothing. Requests for a bound SIM
/// held in memory, pipelined among them, are answered at once, before any of those reads ends.
#[test]
fn diameter_store_reads_are_bounded_while_memory_decisions_flow() {
    let cap = imei_lockd::diameter::server::MAX_IN_FLIGHT;
    let d = Daemon::start_with_env(
        &format!("[[diameter.peers]]\norigin_host = \"{PCEF}\"\n"),
        &[("IMEI_LOCKD_TEST_STORE_DELAY_MS", "300")],
    );
    let bound = "001010000008201";
    d.api().put_sim(bound, json!({"imei_management": "lock"}));
    let mut c = Raw::connect(&d, PCEF);
    let a = c.call(ccr("mem;bind", PCEF, 1, bound, Some(IMEI_A)));
    assert_eq!(a.result_code(), Some(ResultCode::SUCCESS), "binds");
    let unknown = cap + 200;
    let mut msgs = Vec::new();
    let mut kinds = Vec::new();
    for i in 0..unknown {
        let imsi = format!("00199{i:010}");
        msgs.push(ccr(&format!("unknown;{i}"), PCEF, 1, &imsi, Some(IMEI_A)));
        kinds.push("unknown");
        if i % 4 == 0 {
            msgs.push(ccr(&format!("mem;{i}"), PCEF, 1, bound, Some(IMEI_A)));
            kinds.push("memory");
        }
    }
    let matches = kinds.iter().filter(|k| **k == "memory").count();
    c.s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // Answers in arrival order: (kind, Result-Code).
    let order: Vec<_> = c
        .pipeline(msgs)
        .into_iter()
        .map(|(i, a)| (kinds[i], a.result_code().map(|r| r.0)))
        .collect();
    let count = |k: &str, code: u32| {
        order
            .iter()
            .filter(|(kk, c)| *kk == k && *c == Some(code))
            .count()
    };
    let (busy, judged) = (count("unknown", 3004), count("unknown", 5003));
    println!(
        "{unknown} CCRs for unknown SIMs and {matches} for a bound SIM, slow store: unknown \
         {judged} × 5003, {busy} × 3004; bound SIM {} × 2001",
        count("memory", 2001)
    );
    assert_eq!(
        count("memory", 2001),
        matches,
        "every in-memory match is 2001: {order:?}"
    );
    assert_eq!(
        busy + judged,
        unknown,
        "only 3004 or a judgement: {order:?}"
    );
    assert!(judged >= cap && busy > 0, "{order:?}");
    // No in-memory answer waited for a store read: each came before the first read ended.
    let first_read = order
        .iter()
        .position(|(k, c)| *k == "unknown" && *c == Some(5003))
        .unwrap();
    let last_memory = order.iter().rposition(|(k, _)| *k == "memory").unwrap();
    assert!(
        last_memory < first_read,
        "a memory decision waited: {order:?}"
    );
    let m = metrics_text(&d);
    assert_eq!(
        counter(
            &m,
            "imei_lockd_diameter_errors_total",
            &["reason=\"too_busy\""]
        ),
        busy as f64,
        "{m}"
    );
}

/// As above for RADIUS: reads of unknown SIMs beyond the 128 in flight are dropped and counted
/// as `overload`, the bound SIM's requests among them are all answered Access-Accept.
#[test]
fn radius_store_reads_are_bounded_while_memory_decisions_flow() {
    let d = Daemon::start_with_env("", &[("IMEI_LOCKD_TEST_STORE_DELAY_MS", "1000")]);
    let bound = "001010000008301";
    d.api().put_sim(bound, json!({"imei_management": "lock"}));
    let port = d.ports.radius_auth;
    let s = udp("127.0.0.1:0", Duration::from_secs(5));
    let a = common::radius::exchange(
        &s,
        port,
        &access_request(1, [9; 16], bound, Some(IMEI_A), SECRET, true),
    )
    .expect("answer");
    assert_eq!(a[0], 2, "Access-Accept (binds)");
    // Identifiers 0..=199 for unknown SIMs, 200..=249 for the bound one (one socket).
    let unknown = 200usize;
    let s = udp("127.0.0.1:0", Duration::from_millis(3000));
    for id in 0..unknown {
        let mut auth = [0u8; 16];
        auth[0] = id as u8;
        let imsi = format!("00198{id:010}");
        let p = access_request(id as u8, auth, &imsi, Some(IMEI_A), SECRET, true);
        s.send_to(&p, ("127.0.0.1", port)).unwrap();
        if id % 4 == 0 {
            let mid = (unknown + id / 4) as u8;
            let mut auth = [1u8; 16];
            auth[0] = mid;
            let p = access_request(mid, auth, bound, Some(IMEI_A), SECRET, true);
            s.send_to(&p, ("127.0.0.1", port)).unwrap();
        }
    }
    let matches = unknown / 4;
    let mut codes: BTreeMap<(bool, u8), usize> = BTreeMap::new();
    let mut buf = [0u8; 4096];
    while let Ok((n, _)) = s.recv_from(&mut buf) {
        assert!(n >= 20);
        *codes
            .entry(((buf[1] as usize) < unknown, buf[0]))
            .or_insert(0) += 1;
    }
    let label = ["reason=\"overload\""];
    let answered_unknown = codes.get(&(true, 3)).copied().unwrap_or(0);
    let m = wait_metrics(&d, Duration::from_secs(5), |m| {
        counter(m, "imei_lockd_radius_drops_total", &label) as usize + answered_unknown >= unknown
    });
    let dropped = counter(&m, "imei_lockd_radius_drops_total", &label) as usize;
    println!(
        "{unknown} requests for unknown SIMs, {matches} for a bound SIM, slow store: answers \
         (unknown?, code) {codes:?}, {dropped} dropped as overload"
    );
    assert_eq!(codes.get(&(false, 2)).copied(), Some(matches), "{codes:?}");
    assert_eq!(answered_unknown + dropped, unknown, "{codes:?} {m}");
    assert!(dropped > 0 && answered_unknown > 0, "{codes:?}");
}

/// Datagrams the kernel drops because the socket's receive buffer is full (here: a 4 KiB buffer
/// while the receive task waits for an evaluation permit) are counted as `receive_buffer` drops,
/// exactly as many as the kernel reports for the socket: every request is accounted for, as
/// answered, `overload` or `receive_buffer`.
#[test]
fn radius_kernel_drops_are_counted() {
    let keys = Keys {
        radius: "recv_buffer_bytes = 4096",
        ..Keys::default()
    };
    let d = Daemon::start_with_keys(&keys, "", &[("IMEI_LOCKD_TEST_STORE_DELAY_MS", "1000")]);
    let port = d.ports.radius_auth;
    if socket_drops(loopback(port)).is_none() {
        eprintln!("no /proc/net/udp entry for the RADIUS port here: skipped");
        return;
    }
    let sent = 600usize;
    let sim = |id: usize| format!("00103{id:010}");
    d.api().import_locked((0..sent).map(sim));
    let s = udp("127.0.0.1:0", Duration::from_millis(3000));
    for id in 0..sent {
        let mut auth = [0u8; 16];
        auth[..8].copy_from_slice(&(id as u64).to_be_bytes());
        let p = access_request(id as u8, auth, &sim(id), Some(IMEI_A), SECRET, true);
        s.send_to(&p, ("127.0.0.1", port)).unwrap();
    }
    let mut answered = 0usize;
    let mut buf = [0u8; 4096];
    while let Ok((n, _)) = s.recv_from(&mut buf) {
        assert!(n >= 20 && buf[0] == 2, "Access-Accept");
        answered += 1;
    }
    // The kernel tells its count with the next datagram received: one more request, answered.
    let bound = "001030000009999";
    d.api().put_sim(bound, json!({"imei_management": "lock"}));
    let a = common::radius::exchange(
        &s,
        port,
        &access_request(1, [0xee; 16], bound, Some(IMEI_A), SECRET, true),
    )
    .expect("answer");
    assert_eq!(a[0], 2, "Access-Accept");
    let kernel = socket_drops(loopback(port)).unwrap() as usize;
    let m = metrics_text(&d);
    let (overload, receive_buffer) = (
        drops(&m, "overload") as usize,
        drops(&m, "receive_buffer") as usize,
    );
    println!(
        "{sent} requests, 4 KiB buffer, slow store: {answered} answered, {overload} overload, \
         {receive_buffer} receive_buffer (kernel: {kernel})"
    );
    assert!(kernel > 0, "the burst overflowed the buffer");
    assert_eq!(receive_buffer, kernel, "{m}");
    assert_eq!(answered + overload + receive_buffer, sent, "{m}");
    assert!(d
        .log_text()
        .lines()
        .any(|l| l.contains("dropped by the kernel") && l.contains("receive buffer")));
}
