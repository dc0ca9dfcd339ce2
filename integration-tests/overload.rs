//! Overload against the real binary with an engine that has fallen behind (the test-only
//! `IMEI_LOCKD_TEST_ENGINE_DELAY_MS` makes every decision take that long, as a stalled store
//! would): Diameter answers 3004 DIAMETER_TOO_BUSY beyond 256 requests in flight on a
//! connection, RADIUS drops beyond 128 evaluations in flight per port and counts the drops as
//! `overload` — nothing is queued without bound, and both keep serving once the engine catches
//! up. Memory under sustained overload is measured by `scripts/bench-overload.sh`.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::time::Duration;

use serde_json::json;

use common::diameter::{ccr, Raw};
use common::radius::{access_request, udp, SECRET};
use common::{counter, metrics_text, wait_metrics, Daemon};
use imei_lockd::diameter::codec::ResultCode;

const PCEF: &str = "pcef.localdomain";
const IMEI_A: &str = "3520990017614823";

#[test]
fn diameter_answers_3004_beyond_the_in_flight_cap() {
    let cap = imei_lockd::diameter::server::MAX_IN_FLIGHT;
    let d = Daemon::start_with_env(
        &format!("[[diameter.peers]]\norigin_host = \"{PCEF}\"\n"),
        &[("IMEI_LOCKD_TEST_ENGINE_DELAY_MS", "300")],
    );
    let imsi = "001010000008001";
    d.api().put_sim(imsi, json!({"imei_management": "lock"}));
    // Every request of the pipeline would bind (a locked SIM of its own, unbound), so each one
    // goes through the bounded engine path; decisions that bind nothing are answered inline.
    let n = cap + 200;
    d.api()
        .import_locked((0..n).map(|i| format!("00104{i:010}")));
    let mut c = Raw::connect(&d, PCEF);
    // 64 engine calls at a time, 300 ms each: the first 256 stay in flight for over a second,
    // far longer than the whole pipeline takes to arrive.
    let mut blob = Vec::new();
    let mut want = HashSet::new();
    for i in 0..n {
        let (hbh, b) = c.stamp(ccr(
            &format!("busy;{i}"),
            PCEF,
            1,
            &format!("00104{i:010}"),
            Some(IMEI_A),
        ));
        want.insert(hbh);
        blob.extend_from_slice(&b);
    }
    c.s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = c.s.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&blob).unwrap());
    let mut codes = BTreeMap::new();
    while !want.is_empty() {
        let a = c.read();
        if a.is_request() {
            continue;
        }
        assert!(want.remove(&a.header.hop_by_hop), "unexpected answer");
        *codes.entry(a.result_code().map(|r| r.0)).or_insert(0usize) += 1;
    }
    writer.join().unwrap();
    println!("{n} pipelined CCRs, slow engine: answers by Result-Code {codes:?}");
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
    let d = Daemon::start_with_env("", &[("IMEI_LOCKD_TEST_ENGINE_DELAY_MS", "1000")]);
    let imsi = "001010000008101";
    d.api().put_sim(imsi, json!({"imei_management": "lock"}));
    let port = d.ports.radius_auth;
    // Two sockets (two RADIUS "clients" by source port), 200 distinct requests each, at once.
    let socks = [
        udp("127.0.0.1:0", Duration::from_millis(3000)),
        udp("127.0.0.1:0", Duration::from_millis(3000)),
    ];
    let per = 200usize;
    // Each request would bind a locked SIM of its own (so goes through the bounded engine path;
    // decisions that bind nothing are answered inline on the receive task).
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
    println!("{sent} requests, slow engine: {total} answered, {dropped} dropped as overload");
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
