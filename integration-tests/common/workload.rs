//! The mixed workload of the fault runs (issue 18): data sessions over RADIUS (raw UDP) and Gx
//! (python-diameter, a third-party Diameter stack) and provisioning flaps and resets over the REST
//! API, sent through every node and recorded in a [`Recorder`] as the history module's contract
//! says (an answer the client cannot interpret is `Unknown`, never a decision).
//!
//! It does not inject faults or judge the history. Each SIM has three devices: sessions mostly
//! present the first (matches), sometimes another (mismatches, or new binds after a pairing or a
//! reset). Workers pace themselves so that a 20-minute run stays a history the checker reads in
//! seconds.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

use super::history::{Change, Interface, OpKind, Outcome, Recorder, Value};
use super::radius::{access_request, SECRET};
use super::rng::Rng;
use super::{http_within, Daemon, Ports, TOKEN};

/// How long a session waits for its answer before it counts as `Unknown` / `Unavailable`.
const SESSION_WAIT: Duration = Duration::from_millis(1000);
/// Pause between two sessions of one worker.
const SESSION_PACE: Duration = Duration::from_millis(15);
/// Pause between two provisioning requests.
const REQUEST_PACE: Duration = Duration::from_millis(60);
/// Bound on one API call of the workload.
const API_WAIT: Duration = Duration::from_millis(1500);
/// Bound on one look at a request's status by the poller (a frozen node must not hold it up).
const POLL_WAIT: Duration = Duration::from_millis(400);

/// A node as the workload sees it: its name in the history and its listeners.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub ports: Ports,
}

impl Target {
    pub fn of(name: &str, d: &Daemon) -> Self {
        Self {
            name: name.to_owned(),
            ports: d.ports,
        }
    }

    fn host(&self) -> Ipv4Addr {
        self.ports.host
    }

    fn api(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host(), self.ports.api)
    }
}

/// The SIMs of a run and each one's three devices (IMEISVs).
pub struct Plan {
    pub imsis: Vec<String>,
    pub devices: Vec<[String; 3]>,
}

impl Plan {
    /// `n` SIMs from `001019<base>…`, each with three distinct devices.
    pub fn new(n: usize, base: u64) -> Self {
        let imsis = (0..n as u64)
            .map(|i| format!("00101{:010}", base + i))
            .collect();
        let devices = (0..n as u64)
            .map(|i| [0u64, 1, 2].map(|k| format!("35{:06}{:06}{:02}", 100 + k, i, 1 + k)))
            .collect();
        Self { imsis, devices }
    }
}

/// A session's device: mostly the first, sometimes another.
fn pick_device(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0..=6 => 0,
        7 | 8 => 1,
        _ => 2,
    }
}

/// A provisioning change: flaps between lock and pairing, resets, now and then disabled.
fn pick_change(rng: &mut Rng) -> Change {
    match rng.below(20) {
        0..=7 => Change::SetValue(Value::Lock),
        8..=11 => Change::SetValue(Value::Pairing),
        12 | 13 => Change::SetValue(Value::Disabled),
        _ => Change::Reset,
    }
}

/// A request acknowledged and not yet seen processed.
struct Pending {
    id: String,
    target: usize,
}

/// The running workload; [`Workload::stop`] ends it.
pub struct Workload {
    rec: Recorder,
    targets: Vec<Target>,
    stop: Arc<AtomicBool>,
    pending: Arc<Mutex<Vec<Pending>>>,
    failed: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

/// Submits `change` of `imsi` through `t`, recorded; returns the request id when acknowledged.
fn submit(
    rec: &Recorder,
    client: &reqwest::blocking::Client,
    t: &Target,
    imsi: &str,
    change: Change,
) -> Option<String> {
    let h = rec.invoke(
        &t.name,
        OpKind::Request {
            imsi: imsi.to_owned(),
            change,
        },
    );
    let req = match change {
        Change::SetValue(v) => client
            .put(t.api(&format!("/v1/sims/{imsi}/imei-management")))
            .json(&json!({ "value": v })),
        Change::Reset => client.post(t.api(&format!("/v1/sims/{imsi}/reset"))),
    };
    let outcome = match req.bearer_auth(TOKEN).send() {
        Ok(r) if r.status().as_u16() == 202 => match r.json::<Json>() {
            Ok(v) => match v["request_id"].as_str() {
                Some(id) => Outcome::Acked {
                    request_id: id.to_owned(),
                    processed_at: None,
                },
                None => Outcome::Unknown,
            },
            Err(_) => Outcome::Unknown,
        },
        // A 4xx is a refusal before any write; a 5xx may hide a write that committed.
        Ok(r) if r.status().is_client_error() => Outcome::Refused,
        _ => Outcome::Unknown,
    };
    let id = match &outcome {
        Outcome::Acked { request_id, .. } => Some(request_id.clone()),
        _ => None,
    };
    rec.complete(h, outcome);
    id
}

/// One RADIUS Access-Request from a fresh socket (a late answer to an earlier one cannot be
/// taken for this one's).
fn radius_session(t: &Target, imsi: &str, imei: &str, id: u8, auth: [u8; 16]) -> Outcome {
    let Ok(s) = UdpSocket::bind("0.0.0.0:0") else {
        return Outcome::Unknown;
    };
    let _ = s.set_read_timeout(Some(SESSION_WAIT));
    let pkt = access_request(id, auth, imsi, Some(imei), SECRET, true);
    if s.send_to(&pkt, (t.host(), t.ports.radius_auth)).is_err() {
        return Outcome::Unavailable;
    }
    let mut buf = [0u8; 4096];
    match s.recv_from(&mut buf) {
        Ok((n, _)) if n >= 2 && buf[1] == id => match buf[0] {
            2 => Outcome::Accept,
            3 => Outcome::Reject,
            _ => Outcome::Unknown,
        },
        Ok(_) => Outcome::Unknown,
        // Silence: the node did not serve (or is frozen and may still decide).
        Err(_) => Outcome::Unavailable,
    }
}

fn radius_worker(rec: Recorder, t: Target, plan: Arc<Plan>, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut id: u8 = 0;
    while !stop.load(Ordering::Relaxed) {
        let sim = rng.below(plan.imsis.len());
        let imei = &plan.devices[sim][pick_device(&mut rng)];
        let imsi = &plan.imsis[sim];
        id = id.wrapping_add(1);
        let h = rec.invoke(
            &t.name,
            OpKind::Session {
                interface: Interface::Radius,
                imsi: imsi.clone(),
                imei: imei.clone(),
            },
        );
        let mut auth = [0u8; 16];
        auth[..8].copy_from_slice(&rng.next().to_le_bytes());
        auth[8..].copy_from_slice(&rng.next().to_le_bytes());
        let outcome = radius_session(&t, imsi, imei, id, auth);
        rec.complete(h, outcome);
        thread::sleep(SESSION_PACE);
    }
}

/// A python-diameter client in its `--stream` mode, connected (CER/CEA done).
struct GxClient {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl GxClient {
    fn connect(t: &Target) -> Option<Self> {
        let mut child = Command::new(super::pydiameter::python())
            .arg(super::pydiameter::client_script())
            .arg("--stream")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take()?;
        let stdout = child.stdout.take()?;
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut c = Self {
            child,
            stdin,
            lines,
        };
        let cfg = json!({"host": t.host().to_string(), "port": t.ports.diameter,
            "origin_host": super::cluster::PCEF, "origin_realm": "localdomain"});
        c.send(&cfg)?;
        let cea = c.step(&json!({"op": "cer", "timeout": 1.0}))?;
        (cea["result_code"] == 2001).then_some(c)
    }

    fn send(&mut self, v: &Json) -> Option<()> {
        writeln!(self.stdin, "{v}").ok()?;
        self.stdin.flush().ok()
    }

    /// Sends a step and waits for its result line (None: the client died or hung).
    fn step(&mut self, v: &Json) -> Option<Json> {
        self.send(v)?;
        let line = self
            .lines
            .recv_timeout(SESSION_WAIT + Duration::from_secs(2))
            .ok()?;
        serde_json::from_str(&line).ok()
    }
}

impl Drop for GxClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CCA's Result-Code as an outcome: 2001 and 5003 are the lock's decisions; any other code
/// (3002/3004 not serving, 5012 when the store failed mid-decision, ...) is no decision, and
/// the state may still have changed (a bind whose outcome the node could not learn).
fn gx_outcome(r: &Json) -> Outcome {
    match r["result_code"].as_u64() {
        Some(2001) => Outcome::Accept,
        // DIAMETER_AUTHORIZATION_REJECTED: the lock said no.
        Some(5003) => Outcome::Reject,
        Some(_) => Outcome::Unavailable,
        None => Outcome::Unknown,
    }
}

fn gx_worker(rec: Recorder, t: Target, plan: Arc<Plan>, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut client: Option<GxClient> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = client.as_mut() else {
            client = GxClient::connect(&t);
            if client.is_none() {
                thread::sleep(Duration::from_millis(200));
            }
            continue;
        };
        let sim = rng.below(plan.imsis.len());
        let imei = &plan.devices[sim][pick_device(&mut rng)];
        let imsi = &plan.imsis[sim];
        let h = rec.invoke(
            &t.name,
            OpKind::Session {
                interface: Interface::Gx,
                imsi: imsi.clone(),
                imei: imei.clone(),
            },
        );
        let step = json!({"op": "ccr", "type": 1, "imsi": imsi, "imei": imei,
            "timeout": SESSION_WAIT.as_secs_f64()});
        match c.step(&step) {
            Some(r) => {
                rec.complete(h, gx_outcome(&r));
                if r["closed"] == true {
                    client = None;
                }
            }
            None => {
                rec.complete(h, Outcome::Unknown);
                client = None;
            }
        }
        thread::sleep(SESSION_PACE);
    }
}

fn request_worker(
    rec: Recorder,
    targets: Vec<Target>,
    plan: Arc<Plan>,
    stop: Arc<AtomicBool>,
    pending: Arc<Mutex<Vec<Pending>>>,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let client = http_within(API_WAIT);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let target = n % targets.len();
        let imsi = &plan.imsis[rng.below(plan.imsis.len())];
        if let Some(id) = submit(&rec, &client, &targets[target], imsi, pick_change(&mut rng)) {
            pending.lock().unwrap().push(Pending { id, target });
        }
        thread::sleep(REQUEST_PACE);
    }
}

/// One look at request `id` through `t`: its status, None when `t` did not answer.
fn request_status(client: &reqwest::blocking::Client, t: &Target, id: &str) -> Option<(u16, Json)> {
    let r = client
        .get(t.api(&format!("/v1/requests/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().ok()?))
}

/// Notes every pending request's processing as soon as some node reports it.
fn poll_processed(
    rec: &Recorder,
    client: &reqwest::blocking::Client,
    targets: &[Target],
    pending: &Mutex<Vec<Pending>>,
    failed: &AtomicU64,
) {
    let batch: Vec<(String, usize)> = pending
        .lock()
        .unwrap()
        .iter()
        .map(|p| (p.id.clone(), p.target))
        .collect();
    let mut done: HashMap<String, Option<usize>> = HashMap::new();
    for (id, target) in batch {
        let t = &targets[target];
        match request_status(client, t, &id) {
            Some((200, v)) if v["status"] == "processed" || v["status"] == "failed" => {
                if v["status"] == "failed" {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                rec.set_processed(&id, rec.now_ms());
                done.insert(id, None);
            }
            Some((200, _)) => {}
            // A node that does not answer: ask the next one next time.
            _ => {
                done.insert(id, Some((target + 1) % targets.len()));
            }
        }
    }
    pending
        .lock()
        .unwrap()
        .retain_mut(|p| match done.get(&p.id) {
            Some(None) => false,
            Some(Some(next)) => {
                p.target = *next;
                true
            }
            None => true,
        });
}

impl Workload {
    /// Starts a RADIUS and a Gx worker per target, one provisioning worker over all targets and
    /// the poller that notes processing.
    pub fn start(rec: &Recorder, targets: &[Target], plan: Arc<Plan>, seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let pending = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let (r, t2, p, s) = (rec.clone(), t.clone(), plan.clone(), stop.clone());
            let seed_r = seed ^ (i as u64 * 7919 + 1);
            threads.push(thread::spawn(move || radius_worker(r, t2, p, s, seed_r)));
            let (r, t2, p, s) = (rec.clone(), t.clone(), plan.clone(), stop.clone());
            let seed_g = seed ^ (i as u64 * 104_729 + 2);
            threads.push(thread::spawn(move || gx_worker(r, t2, p, s, seed_g)));
        }
        {
            let (r, ts, p, s, q) = (
                rec.clone(),
                targets.to_vec(),
                plan.clone(),
                stop.clone(),
                pending.clone(),
            );
            threads.push(thread::spawn(move || {
                request_worker(r, ts, p, s, q, seed ^ 3)
            }));
        }
        {
            let (r, ts, s, q, f) = (
                rec.clone(),
                targets.to_vec(),
                stop.clone(),
                pending.clone(),
                failed.clone(),
            );
            threads.push(thread::spawn(move || {
                let client = http_within(POLL_WAIT);
                while !s.load(Ordering::Relaxed) {
                    poll_processed(&r, &client, &ts, &q, &f);
                    thread::sleep(Duration::from_millis(20));
                }
            }));
        }
        Self {
            rec: rec.clone(),
            targets: targets.to_vec(),
            stop,
            pending,
            failed,
            threads,
        }
    }

    /// Stops the workers, then waits (up to `within`) until every acknowledged request is seen
    /// processed; returns how many requests were reported `failed`.
    pub fn stop(mut self, within: Duration) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        let client = http_within(API_WAIT);
        let deadline = Instant::now() + within;
        while !self.pending.lock().unwrap().is_empty() && Instant::now() < deadline {
            poll_processed(
                &self.rec,
                &client,
                &self.targets,
                &self.pending,
                &self.failed,
            );
            thread::sleep(Duration::from_millis(50));
        }
        let left = self.pending.lock().unwrap().len();
        assert_eq!(
            left, 0,
            "{left} acknowledged requests not processed within {within:?}"
        );
        self.failed.load(Ordering::Relaxed)
    }
}

/// Starts every SIM of `plan` in a known state, recorded: `lock`, then a reset (the checker's
/// model judges from there), each waited for through `t`.
pub fn seed_state(rec: &Recorder, t: &Target, plan: &Plan) {
    let client = http_within(API_WAIT);
    for change in [Change::SetValue(Value::Lock), Change::Reset] {
        let mut ids = Vec::new();
        for imsi in &plan.imsis {
            let id = submit(rec, &client, t, imsi, change)
                .unwrap_or_else(|| panic!("seeding {imsi} {change:?} through {} refused", t.name));
            ids.push(id);
        }
        for id in ids {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some((200, v)) = request_status(&client, t, &id) {
                    if v["status"] == "processed" {
                        rec.set_processed(&id, rec.now_ms());
                        break;
                    }
                }
                assert!(Instant::now() < deadline, "seed request {id} not processed");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The final read of every acknowledged request (the `lost_request` check), through `t`.
pub fn read_back_requests(rec: &Recorder, t: &Target) {
    let client = http_within(API_WAIT);
    let ids: Vec<String> = rec
        .history()
        .iter()
        .filter_map(|op| match &op.outcome {
            Outcome::Acked { request_id, .. } => Some(request_id.clone()),
            _ => None,
        })
        .collect();
    for request_id in ids {
        let h = rec.invoke(
            &t.name,
            OpKind::ReadRequest {
                request_id: request_id.clone(),
            },
        );
        let outcome = match request_status(&client, t, &request_id) {
            Some((200, v)) => Outcome::Found {
                status: v["status"].as_str().unwrap_or("").to_owned(),
            },
            Some((404, _)) => Outcome::NotFound,
            _ => Outcome::Unknown,
        };
        rec.complete(h, outcome);
    }
}
