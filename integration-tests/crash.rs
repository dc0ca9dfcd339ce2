//! Crash safety against the real binary: under load from `imei-lock-load`, the daemon is killed
//! with SIGKILL again and again while recording clients bind locked SIMs (RADIUS Access-Request,
//! Gx CCR-I) and submit provisioning requests. After every restart, every binding that was
//! answered Access-Accept / 2001 is there with the device it was answered for, and every
//! request that was answered 202 exists.

mod common;

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::diameter::{ccr, cer, Raw};
use common::radius::{access_request, SECRET};
use common::{Daemon, TOKEN};
use imei_lockd::diameter::codec::{ResultCode, APP_GX};

/// The recording Gx client's Origin-Host.
const PEER: &str = "crash.localdomain";
/// Kill cycles.
const CYCLES: usize = 5;
/// SIMs of the load generator's pool (IMSI 001010000000000 + i, locked).
const LOAD_SIMS: u64 = 2000;
/// SIMs per recording pool (more than the recorders can bind in the test).
const POOL: u64 = 20_000;
/// First IMSI of the RADIUS, Gx and API recorders' pools.
const RADIUS_BASE: u64 = 1_020_000_000_000;
const GX_BASE: u64 = 1_030_000_000_000;
const API_BASE: u64 = 1_040_000_000_000;

fn imsi(base: u64, i: u64) -> String {
    format!("{:015}", base + i)
}

/// IMEISV of the device of SIM `i` of a pool (distinct TAC+SNR per i).
fn imeisv(i: u64) -> String {
    format!("35{:012}01", 123_000_000_000 + i)
}

/// What the recording clients were told.
#[derive(Default)]
struct Record {
    /// (IMSI, IMEISV) answered Access-Accept / 2001 for a first binding.
    bindings: Vec<(String, String)>,
    /// Request ids answered 202.
    requests: Vec<String>,
}

/// Imports the pools as locked SIMs in one request.
fn provision(d: &Daemon) {
    let load = (0..LOAD_SIMS).map(|i| imsi(1_010_000_000_000, i));
    let pools = [RADIUS_BASE, GX_BASE]
        .into_iter()
        .flat_map(|base| (0..POOL).map(move |i| imsi(base, i)));
    d.api().import_locked(load.chain(pools));
}

/// Binds pool SIMs `start, start + step, ...` over RADIUS until `stop`; records the accepts.
fn radius_recorder(port: u16, start: u64, step: u64, stop: Arc<AtomicBool>) -> Vec<(u64, bool)> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut out = Vec::new();
    let mut i = start;
    let mut id = 0u8;
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) && i < POOL {
        let mut auth = [0u8; 16];
        auth[..8].copy_from_slice(&i.to_be_bytes());
        auth[8] = 0xc5;
        let pkt = access_request(
            id,
            auth,
            &imsi(RADIUS_BASE, i),
            Some(&imeisv(i)),
            SECRET,
            true,
        );
        let _ = s.send_to(&pkt, ("127.0.0.1", port));
        // The answer to this request (same Identifier), or none (the daemon died).
        let answered = loop {
            match s.recv_from(&mut buf) {
                Ok((n, _)) if n >= 20 && buf[1] == id => break Some(buf[0]),
                Ok(_) => continue,
                Err(_) => break None,
            }
        };
        if let Some(code) = answered {
            out.push((i, code == 2));
        }
        id = id.wrapping_add(1);
        i += step;
    }
    out
}

/// Binds pool SIMs `start..` over Gx CCR-I until `stop`; records the 2001s.
fn gx_recorder(port: u16, start: u64, stop: Arc<AtomicBool>) -> Vec<(u64, bool)> {
    let mut out = Vec::new();
    let mut i = start;
    let mut conn: Option<Raw> = None;
    while !stop.load(Ordering::Relaxed) && i < POOL {
        let Some(c) = conn.as_mut() else {
            conn = Raw::try_open(port).and_then(|mut c| {
                c.s.set_read_timeout(Some(Duration::from_millis(500)))
                    .ok()?;
                let cea = c.try_call(cer(PEER, "crash-it", &[APP_GX]))?;
                (cea.result_code() == Some(ResultCode::SUCCESS)).then_some(c)
            });
            if conn.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            continue;
        };
        let m = ccr(
            &format!("crash;{i}"),
            PEER,
            1,
            &imsi(GX_BASE, i),
            Some(&imeisv(i)),
        );
        match c.try_call(m) {
            Some(a) => out.push((i, a.result_code() == Some(ResultCode::SUCCESS))),
            None => conn = None,
        }
        i += 1;
    }
    out
}

/// Submits `PUT /v1/sims/{imsi}` for new SIMs until `stop`; records the 202 request ids.
fn api_recorder(base_url: String, start: u64, stop: Arc<AtomicBool>) -> (u64, Vec<String>) {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut ids = Vec::new();
    let mut i = start;
    while !stop.load(Ordering::Relaxed) {
        let r = http
            .put(format!("{base_url}/v1/sims/{}", imsi(API_BASE, i)))
            .bearer_auth(TOKEN)
            .json(&json!({"imei_management": "lock", "msisdn": format!("49{}", 170_000_000 + i)}))
            .send();
        i += 1;
        match r {
            Ok(r) if r.status() == 202 => {
                if let Ok(v) = r.json::<Value>() {
                    if let Some(id) = v["request_id"].as_str() {
                        ids.push(id.to_owned());
                    }
                }
            }
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    (i, ids)
}

/// The load generator for one cycle: RADIUS Access-Requests, open loop, on the locked pool.
fn load(d: &Daemon, seconds: f64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_imei-lock-load"))
        .args(["radius", "--target"])
        .arg(format!("127.0.0.1:{}", d.ports.radius_auth))
        .args(["--sims", &LOAD_SIMS.to_string()])
        .args(["--rate", "1500", "--window", "64", "--timeout-ms", "500"])
        .args(["--duration", &seconds.to_string(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Checks `rec` against the restarted daemon; panics naming what is missing.
fn verify(d: &Daemon, http: &reqwest::blocking::Client, rec: &Record) {
    let get = |path: &str| -> (u16, Value) {
        let r = http
            .get(d.url(path))
            .bearer_auth(TOKEN)
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    };
    for (imsi, imei) in &rec.bindings {
        let (s, sim) = get(&format!("/v1/sims/{imsi}"));
        assert_eq!(s, 200, "{imsi}: {sim}");
        assert_eq!(
            sim["bound_imei"].as_str(),
            Some(&imei[..14]),
            "SIM {imsi} was answered accept for {imei} before the kill: {sim}"
        );
    }
    for id in &rec.requests {
        let (s, r) = get(&format!("/v1/requests/{id}"));
        assert_eq!(s, 200, "request {id} was answered 202 before the kill: {r}");
        assert!(
            matches!(r["status"].as_str(), Some("pending" | "processed")),
            "{id}: {r}"
        );
    }
}

#[test]
fn kill_9_under_load_loses_no_answered_binding_or_request() {
    let t0 = Instant::now();
    let mut d = Daemon::start(&format!("[[diameter.peers]]\norigin_host = \"{PEER}\"\n"));
    provision(&d);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut all = Record::default();
    let (mut radius_next, mut gx_next, mut api_next) = (0u64, 0u64, 0u64);
    let mut load_sent = 0u64;
    let mut load_answered = 0u64;
    for cycle in 0..CYCLES {
        let stop = Arc::new(AtomicBool::new(false));
        let generator = load(&d, 3.0);
        let port = d.ports.radius_auth;
        let radius: Vec<JoinHandle<Vec<(u64, bool)>>> = (0..2)
            .map(|k| {
                let stop = stop.clone();
                std::thread::spawn(move || radius_recorder(port, radius_next + k, 2, stop))
            })
            .collect();
        let gx = {
            let (stop, port) = (stop.clone(), d.ports.diameter);
            std::thread::spawn(move || gx_recorder(port, gx_next, stop))
        };
        let api = {
            let (stop, url) = (stop.clone(), d.url(""));
            std::thread::spawn(move || api_recorder(url, api_next, stop))
        };
        // Kill at a different moment of each cycle, while everything is in flight.
        std::thread::sleep(Duration::from_millis(1200 + 150 * cycle as u64));
        d.kill9();
        stop.store(true, Ordering::Relaxed);

        let mut rec = Record::default();
        for h in radius {
            for (i, accepted) in h.join().unwrap() {
                radius_next = radius_next.max(i + 1);
                if accepted {
                    rec.bindings.push((imsi(RADIUS_BASE, i), imeisv(i)));
                }
            }
        }
        // The two RADIUS threads interleave: continue after the highest SIM either used.
        radius_next += radius_next % 2;
        for (i, ok) in gx.join().unwrap() {
            gx_next = gx_next.max(i + 1);
            if ok {
                rec.bindings.push((imsi(GX_BASE, i), imeisv(i)));
            }
        }
        let (next, ids) = api.join().unwrap();
        api_next = next;
        rec.requests = ids;
        assert!(
            !rec.bindings.is_empty() && !rec.requests.is_empty(),
            "cycle {cycle}: nothing was answered before the kill ({} bindings, {} requests)",
            rec.bindings.len(),
            rec.requests.len()
        );

        d.spawn();
        verify(&d, &http, &rec);
        let out = generator.wait_with_output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        load_sent += v["sent"].as_u64().unwrap_or(0);
        load_answered += v["answered"].as_u64().unwrap_or(0);
        println!(
            "cycle {}: {} bindings and {} requests answered before kill -9, all present after \
             restart; load generator sent {} answered {}",
            cycle + 1,
            rec.bindings.len(),
            rec.requests.len(),
            v["sent"],
            v["answered"]
        );
        all.bindings.extend(rec.bindings);
        all.requests.extend(rec.requests);
    }
    // Once more at the end: everything recorded over all cycles.
    verify(&d, &http, &all);
    assert!(load_answered > 0, "the load generator got no answers");
    println!(
        "crash safety: {CYCLES} kill -9 cycles, {} bindings checked, {} requests checked, \
         load generator {load_sent} sent / {load_answered} answered, in {:?}",
        all.bindings.len(),
        all.requests.len(),
        t0.elapsed()
    );
}
