//! The history checker of issue 18, on hand-built histories (no daemon): each violation kind is
//! reported with its count, tricky but legal histories are not, and a history survives a round
//! trip through JSON lines.

mod common;

use std::thread;

use common::checker::{check, tac_snr, Verdict, ViolationKind};
use common::history::{read_jsonl, write_jsonl, Change, Interface, OpKind, Outcome, Recorder};
use common::history::{Op, Value};

const IMSI: &str = "001010000000001";
/// Three devices, as IMEISV (TAC+SNR then SVN `01`).
const X: &str = "3520990017614801";
const Y: &str = "4901542032375101";
const Z: &str = "3566550123456701";

/// A hand-built history: every op is invoked and completed at explicit times.
struct Builder {
    rec: Recorder,
    next_request: u32,
}

impl Builder {
    fn new() -> Self {
        Self {
            rec: Recorder::new(),
            next_request: 0,
        }
    }

    /// A session of `IMSI` presenting `imei` on `node`, over [t0, t1] (`None`: never completed).
    fn session(&mut self, node: &str, imei: &str, t0: u64, t1: Option<u64>, outcome: Outcome) {
        let kind = OpKind::Session {
            interface: Interface::Radius,
            imsi: IMSI.to_owned(),
            imei: imei.to_owned(),
        };
        let h = self.rec.invoke_at(node, kind, t0);
        if let Some(t1) = t1 {
            self.rec.complete_at(h, outcome, t1);
        }
    }

    /// A request acknowledged at `t0 + 2` and reported processed at `processed`; returns its id.
    fn request(&mut self, change: Change, t0: u64, processed: Option<u64>) -> String {
        self.next_request += 1;
        let id = format!("req-{}", self.next_request);
        let kind = OpKind::Request {
            imsi: IMSI.to_owned(),
            change,
        };
        let h = self.rec.invoke_at("node-0", kind, t0);
        let outcome = Outcome::Acked {
            request_id: id.clone(),
            processed_at: None,
        };
        self.rec.complete_at(h, outcome, t0 + 2);
        if let Some(p) = processed {
            assert!(self.rec.set_processed(&id, p));
        }
        id
    }

    /// The SIM set to `lock` (processed at `t0 + 5`) and reset (processed at `t0 + 10`), so the
    /// model starts from a known state: locked and unbound.
    fn locked_unbound(&mut self, t0: u64) {
        self.request(Change::SetValue(Value::Lock), t0, Some(t0 + 5));
        self.request(Change::Reset, t0 + 6, Some(t0 + 10));
    }

    fn read(&mut self, request_id: &str, t0: u64, outcome: Outcome) {
        let kind = OpKind::ReadRequest {
            request_id: request_id.to_owned(),
        };
        let h = self.rec.invoke_at("node-2", kind, t0);
        self.rec.complete_at(h, outcome, t0 + 1);
    }

    fn check(&self) -> Verdict {
        let verdict = check(&self.rec.history());
        println!("{}", verdict.report());
        verdict
    }
}

/// Asserts the verdict's counts per kind (in `ViolationKind::ALL` order) and its line's prefix.
fn assert_counts(v: &Verdict, counts: [usize; 4]) {
    for (kind, want) in ViolationKind::ALL.iter().zip(counts) {
        assert_eq!(v.count(*kind), want, "{}: {}", kind.name(), v.report());
    }
    let prefix = if counts.iter().sum::<usize>() == 0 {
        "checker: OK "
    } else {
        "checker: FAIL "
    };
    assert!(v.line().starts_with(prefix), "{}", v.line());
    assert!(
        v.line()
            .ends_with(&format!("violations={}", v.violations.len()))
            || v.line()
                .contains(&format!("violations={}: ", v.violations.len())),
        "{}",
        v.line()
    );
}

#[test]
fn two_nodes_accepting_two_devices_of_a_locked_sim_is_a_double_bind() {
    let mut h = Builder::new();
    h.request(Change::SetValue(Value::Lock), 0, Some(10));
    // Racing first sessions on two nodes: exactly one may bind.
    h.session("node-1", X, 100, Some(110), Outcome::Accept);
    h.session("node-2", Y, 105, Some(115), Outcome::Accept);
    let v = h.check();
    assert_counts(&v, [1, 0, 0, 0]);
    let ids: Vec<u64> = v.violations[0].ops.iter().map(|o| o.id).collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(v.violations[0].ops[1].node, "node-2");
    assert!(v
        .line()
        .contains("double_bind=1 lost_bind=0 lost_request=0 stale_read=0"));

    // The same one after the other is also a stale read: the model knew X was bound.
    let mut h = Builder::new();
    h.locked_unbound(0);
    h.session("node-1", X, 100, Some(110), Outcome::Accept);
    h.session("node-2", Y, 200, Some(210), Outcome::Accept);
    assert_counts(&h.check(), [1, 0, 0, 1]);
}

#[test]
fn a_locked_device_rejected_later_is_a_lost_bind() {
    let mut h = Builder::new();
    h.request(Change::SetValue(Value::Lock), 0, Some(10));
    h.session("node-1", X, 20, Some(30), Outcome::Accept);
    // A session that timed out keeps the model from judging what follows; the lost bind is
    // still certain: under `lock` only a reset or a pairing moves a binding.
    h.session("node-3", Z, 35, None, Outcome::Unknown);
    h.session("node-2", X, 50, Some(60), Outcome::Reject);
    let v = h.check();
    assert_counts(&v, [0, 1, 0, 0]);
    let nodes: Vec<&str> = v.violations[0]
        .ops
        .iter()
        .map(|o| o.node.as_str())
        .collect();
    assert_eq!(nodes, vec!["node-1", "node-2"]);
    assert_eq!(v.judged, 0);

    // Without the timeout the model judges the reject too.
    let mut h = Builder::new();
    h.request(Change::SetValue(Value::Lock), 0, Some(10));
    h.session("node-1", X, 20, Some(30), Outcome::Accept);
    h.session("node-2", X, 50, Some(60), Outcome::Reject);
    assert_counts(&h.check(), [0, 1, 0, 1]);
}

#[test]
fn an_acknowledged_request_not_found_after_healing_is_lost() {
    let mut h = Builder::new();
    let lost = h.request(Change::SetValue(Value::Lock), 0, None);
    let kept = h.request(Change::Reset, 10, Some(20));
    // A read during the partition found it; the final one, after healing, does not.
    h.read(
        &lost,
        50,
        Outcome::Found {
            status: "pending".to_owned(),
        },
    );
    h.read(&lost, 500, Outcome::NotFound);
    h.read(
        &kept,
        500,
        Outcome::Found {
            status: "processed".to_owned(),
        },
    );
    let v = h.check();
    assert_counts(&v, [0, 0, 1, 0]);
    assert_eq!(v.violations[0].ops[0].id, 0);
    assert_eq!(v.violations[0].ops[1].invoke, 500);

    // The reverse order (not found during the partition, found after) is fine.
    let mut h = Builder::new();
    let id = h.request(Change::SetValue(Value::Lock), 0, None);
    h.read(&id, 50, Outcome::NotFound);
    h.read(
        &id,
        500,
        Outcome::Found {
            status: "processed".to_owned(),
        },
    );
    assert_counts(&h.check(), [0, 0, 0, 0]);
}

#[test]
fn a_session_answered_from_before_a_processed_reset_is_a_stale_read() {
    let mut h = Builder::new();
    h.request(Change::SetValue(Value::Lock), 0, Some(10));
    h.session("node-1", X, 20, Some(30), Outcome::Accept);
    h.request(Change::Reset, 90, Some(100));
    // The reset was reported processed at 100: a new device at 150 binds afresh.
    h.session("node-2", Y, 150, Some(160), Outcome::Reject);
    let v = h.check();
    assert_counts(&v, [0, 0, 0, 1]);
    let ids: Vec<u64> = v.violations[0].ops.iter().map(|o| o.id).collect();
    assert_eq!(ids, vec![2, 3], "the reset and the session");
    assert_eq!(v.judged, 1);

    // Pairing → a session from the new device → lock: the old device is now rejected, and an
    // accept of it is stale.
    let mut h = Builder::new();
    h.locked_unbound(0);
    h.session("node-1", X, 20, Some(30), Outcome::Accept);
    h.request(Change::SetValue(Value::Pairing), 40, Some(50));
    h.session("node-2", Y, 60, Some(70), Outcome::Accept);
    h.request(Change::SetValue(Value::Lock), 80, Some(90));
    h.session("node-1", X, 100, Some(110), Outcome::Accept);
    let v = h.check();
    assert_counts(&v, [0, 0, 0, 1]);
    assert_eq!(v.judged, 3);
}

#[test]
fn tricky_but_legal_histories_are_not_violations() {
    // Two devices accepted with a reset possibly between them (concurrent with both).
    let mut h = Builder::new();
    h.request(Change::SetValue(Value::Lock), 0, Some(10));
    h.session("node-1", X, 20, Some(30), Outcome::Accept);
    h.request(Change::Reset, 25, Some(70));
    h.session("node-2", Y, 60, Some(65), Outcome::Accept);
    assert_counts(&h.check(), [0, 0, 0, 0]);

    // A reject overlapping a pairing request not yet processed, then the pairing procedure:
    // the new device binds and the old one is rejected.
    let mut h = Builder::new();
    h.locked_unbound(0);
    h.session("node-1", X, 20, Some(30), Outcome::Accept);
    h.request(Change::SetValue(Value::Pairing), 40, Some(80));
    h.session("node-2", Y, 50, Some(60), Outcome::Reject);
    h.session("node-2", Y, 90, Some(100), Outcome::Accept);
    h.request(Change::SetValue(Value::Lock), 110, Some(120));
    h.session("node-1", X, 130, Some(140), Outcome::Reject);
    h.session("node-3", Y, 150, Some(160), Outcome::Accept);
    let v = h.check();
    assert_counts(&v, [0, 0, 0, 0]);
    assert_eq!(v.judged, 4, "X, the second Y, the old X and the last Y");

    // A session that timed out (it may never have been decided), then another device binds and
    // the first one is rejected.
    let mut h = Builder::new();
    h.locked_unbound(0);
    h.session("node-1", X, 20, Some(25), Outcome::Unknown);
    h.session("node-2", Y, 50, Some(60), Outcome::Accept);
    h.session("node-1", X, 70, Some(80), Outcome::Reject);
    h.session("node-3", Z, 90, None, Outcome::Unknown);
    h.session("node-2", Z, 200, Some(210), Outcome::Reject);
    assert_counts(&h.check(), [0, 0, 0, 0]);

    // `disabled` and back keeps the binding: Y accepted while disabled, rejected once locked.
    let mut h = Builder::new();
    h.locked_unbound(0);
    h.session("node-1", X, 20, Some(30), Outcome::Accept);
    h.request(Change::SetValue(Value::Disabled), 40, Some(50));
    h.session("node-2", Y, 60, Some(70), Outcome::Accept);
    h.request(Change::SetValue(Value::Lock), 80, Some(90));
    h.session("node-2", Y, 100, Some(110), Outcome::Reject);
    h.session("node-1", X, 120, Some(130), Outcome::Accept);
    let v = h.check();
    assert_counts(&v, [0, 0, 0, 0]);
    assert_eq!(v.judged, 4);

    // An accept and a reset with overlapping windows, both over before the next session: either
    // order is possible, so a new device may be rejected (or accepted); the old one is accepted
    // in both orders, and that is judged.
    let mut h = Builder::new();
    h.locked_unbound(0);
    h.session("node-1", X, 20, Some(40), Outcome::Accept);
    h.request(Change::Reset, 30, Some(50));
    h.session("node-2", Y, 100, Some(110), Outcome::Reject);
    h.session("node-1", X, 120, Some(130), Outcome::Accept);
    let v = h.check();
    assert_counts(&v, [0, 0, 0, 0]);
    assert_eq!(v.judged, 1, "only the last X");

    // Unavailable answers anywhere, with any device, are availability, not violations.
    let mut h = Builder::new();
    h.locked_unbound(0);
    h.session("node-3", Z, 15, Some(16), Outcome::Unavailable);
    h.session("node-1", X, 20, Some(30), Outcome::Accept);
    h.session("node-2", Y, 25, Some(26), Outcome::Unavailable);
    h.session("node-3", Z, 40, Some(41), Outcome::Unavailable);
    h.session("node-1", X, 50, Some(60), Outcome::Accept);
    h.session("node-2", Y, 70, Some(80), Outcome::Reject);
    let v = h.check();
    assert_counts(&v, [0, 0, 0, 0]);
    assert_eq!(v.unavailable, 3);
    assert!(v.line().contains("unavailable 3"), "{}", v.line());

    // A request never reported processed may take effect at any time after it was asked for:
    // nothing after that is judged, and a pairing acknowledged but not processed excuses a later new device.
    let mut h = Builder::new();
    h.locked_unbound(0);
    h.session("node-1", X, 20, Some(30), Outcome::Accept);
    h.request(Change::SetValue(Value::Pairing), 40, None);
    h.session("node-2", Y, 500, Some(510), Outcome::Accept);
    h.session("node-1", X, 600, Some(610), Outcome::Reject);
    let v = h.check();
    assert_counts(&v, [0, 0, 0, 0]);
    assert_eq!(
        v.judged, 1,
        "only the first X, before the pairing was asked for"
    );
}

#[test]
fn imeis_compare_on_tac_and_snr() {
    assert_eq!(
        tac_snr("3520990017614801").as_deref(),
        Some("35209900176148")
    );
    assert_eq!(
        tac_snr("352099001761481").as_deref(),
        Some("35209900176148")
    );
    assert_eq!(
        tac_snr("352099001761481,02").as_deref(),
        Some("35209900176148")
    );
    assert_eq!(tac_snr(""), None);
    assert_eq!(tac_snr("35209900176"), None);
    assert_eq!(tac_snr("3520990017614x01"), None);

    // A firmware update (new SVN) is the same device.
    let mut h = Builder::new();
    h.request(Change::SetValue(Value::Lock), 0, Some(10));
    h.session("node-1", "3520990017614801", 20, Some(30), Outcome::Accept);
    h.session("node-2", "3520990017614802", 40, Some(50), Outcome::Accept);
    assert_counts(&h.check(), [0, 0, 0, 0]);
}

#[test]
fn a_history_survives_jsonl_and_a_recorder_is_shared_across_threads() {
    let rec = Recorder::new();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let rec = rec.clone();
            thread::spawn(move || {
                for i in 0..25 {
                    let kind = OpKind::Session {
                        interface: [Interface::Radius, Interface::Gx, Interface::S6b][i % 3],
                        imsi: format!("00101100000{w:04}"),
                        imei: X.to_owned(),
                    };
                    let op = rec.invoke(&format!("node-{w}"), kind);
                    let outcome =
                        [Outcome::Accept, Outcome::Reject, Outcome::Unavailable][i % 3].clone();
                    if i % 5 != 4 {
                        rec.complete(op, outcome);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let kind = OpKind::Request {
        imsi: IMSI.to_owned(),
        change: Change::SetValue(Value::Pairing),
    };
    let op = rec.invoke("node-1", kind);
    rec.complete(
        op,
        Outcome::Acked {
            request_id: "r-1".to_owned(),
            processed_at: None,
        },
    );
    assert!(rec.set_processed("r-1", rec.now_ms()));
    assert!(!rec.set_processed("r-404", 1));
    let op = rec.invoke(
        "node-2",
        OpKind::ReadRequest {
            request_id: "r-1".to_owned(),
        },
    );
    rec.complete(op, Outcome::NotFound);

    let history = rec.history();
    assert_eq!(history.len(), 102);
    let ids: Vec<u64> = history.iter().map(|o| o.id).collect();
    assert_eq!(ids, (0..102).collect::<Vec<u64>>());
    assert_eq!(history.iter().filter(|o| o.complete.is_none()).count(), 20);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    rec.write_jsonl(&path).unwrap();
    let back: Vec<Op> = read_jsonl(&path).unwrap();
    assert_eq!(back, history);
    assert_eq!(check(&back).line(), check(&history).line());
    assert_counts(&check(&back), [0, 0, 1, 0]);

    write_jsonl(&path, &back[..3]).unwrap();
    assert_eq!(read_jsonl(&path).unwrap(), history[..3].to_vec());
    std::fs::write(&path, "{\"id\":1}\n").unwrap();
    let err = read_jsonl(&path).unwrap_err();
    assert!(err.to_string().starts_with("line 1:"), "{err}");
}

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// A history of one SIM from a correct sequential system: every op takes effect at its own
/// instant `t` (10 to 70 ms apart) and windows of up to 20 ms either side of it often overlap
/// (and chain into clusters of several ops). With `hidden`, the recorded outcome sometimes hides
/// what happened (refusals, timeouts, requests never reported processed, Unavailable).
fn correct_history(seed: u64, hidden: bool) -> Vec<Op> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let rec = Recorder::new();
    let devices = [X, Y, Z];
    let values = [Value::Disabled, Value::Lock, Value::Pairing];
    let mut value = values[rng.below(3) as usize];
    let mut bound: Option<&str> = None;
    let mut acked = Vec::new();
    let mut t = 100;
    for k in 1..60u64 {
        t += 10 + rng.below(60);
        let (invoke, complete) = (t - rng.below(20), t + rng.below(20));
        let node = format!("node-{}", rng.below(3));
        let roll = if hidden {
            rng.below(100)
        } else {
            30 + rng.below(70)
        };
        if rng.below(4) == 0 {
            let change = match rng.below(4) {
                0 => Change::Reset,
                v => Change::SetValue(values[v as usize - 1]),
            };
            let kind = OpKind::Request {
                imsi: IMSI.to_owned(),
                change,
            };
            let h = rec.invoke_at(&node, kind, invoke);
            if roll < 5 {
                rec.complete_at(h, Outcome::Refused, complete);
                continue;
            }
            if roll >= 10 {
                match change {
                    Change::Reset => bound = None,
                    Change::SetValue(v) => value = v,
                }
            }
            if roll < 20 {
                continue; // timed out: it may or may not have taken effect (here: 5–9 did not)
            }
            let id = format!("r{k}");
            let processed_at = (roll >= 30).then(|| t + rng.below(20));
            let outcome = Outcome::Acked {
                request_id: id.clone(),
                processed_at,
            };
            rec.complete_at(h, outcome, complete.max(invoke + 1));
            acked.push(id);
        } else {
            let imei = devices[rng.below(3) as usize];
            let kind = OpKind::Session {
                interface: Interface::Gx,
                imsi: IMSI.to_owned(),
                imei: imei.to_owned(),
            };
            let h = rec.invoke_at(&node, kind, invoke);
            if roll < 5 {
                rec.complete_at(h, Outcome::Unavailable, complete);
                continue;
            }
            if roll < 10 {
                rec.complete_at(h, Outcome::Unknown, complete); // never decided
                continue;
            }
            let accept = match (value, bound) {
                (Value::Disabled, _) => true,
                (Value::Pairing, _) | (Value::Lock, None) => {
                    bound = Some(imei);
                    true
                }
                (Value::Lock, Some(b)) => b == imei,
            };
            let outcome = match (roll < 15, accept) {
                (true, _) => Outcome::Unknown, // decided, answer lost
                (false, true) => Outcome::Accept,
                (false, false) => Outcome::Reject,
            };
            rec.complete_at(h, outcome, complete);
        }
    }
    for id in acked {
        let h = rec.invoke_at("node-1", OpKind::ReadRequest { request_id: id }, 2000);
        let status = "processed".to_owned();
        rec.complete_at(h, Outcome::Found { status }, 2001);
    }
    rec.history()
}

#[test]
fn histories_of_a_correct_system_never_fail() {
    let (mut judged, mut sessions) = (0, 0);
    for seed in 0..500 {
        let v = check(&correct_history(seed, false));
        assert!(v.is_ok(), "seed {seed}: {}", v.report());
        judged += v.judged;
        sessions += v.sessions;
        // Timeouts and Unavailable answers make the model give up (for good: a paused node may
        // still serve them), never report.
        let v = check(&correct_history(seed, true));
        assert!(v.is_ok(), "seed {seed} (hidden): {}", v.report());
    }
    // Not vacuous: with every answer seen, the model judges a good share of the sessions.
    println!("judged {judged} of {sessions} sessions");
    assert!(judged * 5 > sessions, "judged {judged} of {sessions}");
}

#[test]
fn one_flipped_answer_in_a_correct_history_is_mostly_caught() {
    let (mut caught, mut runs) = (0, 0);
    for seed in 0..500u64 {
        let mut history = correct_history(seed, false);
        let decided: Vec<usize> = (0..history.len())
            .filter(|&i| matches!(history[i].outcome, Outcome::Accept | Outcome::Reject))
            .collect();
        let Some(&i) = decided.get(seed as usize % decided.len().max(1)) else {
            continue;
        };
        history[i].outcome = match history[i].outcome {
            Outcome::Accept => Outcome::Reject,
            _ => Outcome::Accept,
        };
        runs += 1;
        if !check(&history).is_ok() {
            caught += 1;
        }
    }
    println!("caught {caught} of {runs} flipped answers");
    assert!(caught * 2 > runs, "caught {caught} of {runs}");
}
