//! The CI fuzz smoke run: every seed (`fuzz/corpus/<target>/`) and every input a fuzzer ever
//! found (`fuzz/regressions/<target>/`) through the same entry points the `cargo fuzz` targets
//! call ([`imei_lockd::fuzzing`]), then a bounded, deterministic random mutation of the seeds.
//!
//! Why not `cargo fuzz` in CI: it needs a sanitizer build of every dependency (minutes of CI);
//! this runs in the normal test build. Real fuzzing is `scripts/fuzz.sh` (README, "Fuzzing").
//! `IMEI_LOCKD_FUZZ_SMOKE_ROUNDS` overrides the mutation rounds per target.

mod common;

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use common::rng::Rng;
use imei_lockd::fuzzing::TARGETS;

/// Mutated inputs per target (under a second in all in the release test build).
const ROUNDS: usize = 10_000;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir` (sorted; README files skipped), empty when it does not exist.
fn inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("README")
        })
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

/// Runs `f` on `input`; on a panic, saves the input under target/ and fails naming it.
fn run(name: &str, f: fn(&[u8]), input: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| f(input))).is_err() {
        let out = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(format!("fuzz-smoke-{name}-crash"));
        let _ = fs::write(&out, input);
        panic!(
            "fuzz target {name} failed on {what}; input saved to {} (add it to fuzz/regressions/{name}/)",
            out.display()
        );
    }
}

#[test]
fn corpus_and_regressions_replay() {
    for (name, f) in TARGETS {
        let seeds = inputs(&fuzz_dir().join("corpus").join(name));
        assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seeds");
        let found = inputs(&fuzz_dir().join("regressions").join(name));
        for (path, bytes) in seeds.iter().chain(&found) {
            run(name, f, bytes, &path.display().to_string());
        }
    }
}

const INTERESTING: [u8; 8] = [0, 1, 2, 0x0f, 0x7f, 0x80, 0xfe, 0xff];
const MAX_LEN: usize = 8192;

/// One to four of: bit flip, random octet, interesting octet, 16/24/32-bit big-endian length
/// value, insertion, deletion, duplication of a range, splice with another seed.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = [
                    0u32,
                    1,
                    7,
                    8,
                    12,
                    20,
                    253,
                    255,
                    256,
                    4096,
                    65535,
                    0x00ff_ffff,
                ][rng.below(12)]
                .wrapping_add(rng.below(3) as u32);
                let w = [2, 3, 4][rng.below(3)];
                input[i..i + w].copy_from_slice(&v.to_be_bytes()[4 - w..]);
            }
            4 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(i..i, bytes);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                input.drain(i..i + n);
            }
            6 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let chunk = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, chunk);
            }
            7 => {
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let at = rng.below(len + 1);
                    input.truncate(at);
                    input.extend_from_slice(&other[from..]);
                }
            }
            _ => {
                if len > 1 {
                    input.truncate(rng.below(len));
                }
            }
        }
    }
    input.truncate(MAX_LEN);
}

#[test]
fn seeds_mutated_deterministically() {
    let rounds = std::env::var("IMEI_LOCKD_FUZZ_SMOKE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS);
    for (t, (name, f)) in TARGETS.into_iter().enumerate() {
        let seeds: Vec<Vec<u8>> = inputs(&fuzz_dir().join("corpus").join(name))
            .into_iter()
            .chain(inputs(&fuzz_dir().join("regressions").join(name)))
            .map(|(_, b)| b)
            .collect();
        assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seeds");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
        for round in 0..rounds {
            let mut input = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, &seeds, &mut input);
            run(name, f, &input, &format!("mutation round {round}"));
        }
    }
}

/// Writes the `store_value` seeds (records as the store encodes them) into the directory named
/// by `IMEI_LOCKD_WRITE_STORE_SEEDS`: run by `scripts/fuzz-seeds.sh`, not by CI.
#[test]
#[ignore = "writes seed files; run by scripts/fuzz-seeds.sh"]
fn write_store_seeds() {
    use imei_lockd::context::Interface;
    use imei_lockd::store::encoding::encode;
    use imei_lockd::store::*;

    let dir = PathBuf::from(std::env::var("IMEI_LOCKD_WRITE_STORE_SEEDS").unwrap());
    fs::create_dir_all(&dir).unwrap();
    let imsi = "001010000000001".parse().unwrap();
    let imei = "35209900176148".parse().unwrap();
    let mut sim = SimRecord::new(imsi);
    sim.msisdn = Some("46700000001".into());
    sim.profile = Some("fleet".into());
    sim.value = Some(ImeiManagement::Lock);
    sim.bound = Some(imei);
    sim.bound_at = Some(1_700_000_000_000);
    sim.last_seen = Some(imei);
    sim.last_seen_at = Some(1_700_000_001_000);
    sim.rev = 7;
    let event = Event {
        kind: EventKind::ImeiBound,
        imsi,
        at: 1_700_000_000_000,
        interface: Interface::Gx,
        peer: "pgw.localdomain".into(),
        imei: Some(imei),
        bound: None,
        detail: Some("pgw.localdomain;1;1".into()),
    };
    let request = |seq, op| RequestRecord {
        seq,
        op,
        status: RequestStatus::Processed,
        error: None,
        submitted_at: 1_700_000_000_000,
        processed_at: Some(1_700_000_000_010),
    };
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("sim-new", encode(&SimRecord::new(imsi))),
        ("sim-bound", encode(&sim)),
        (
            "profile",
            encode(&ProfileRecord {
                name: "fleet".into(),
                value: ImeiManagement::Lock,
                lock_fee: Some("1.00".into()),
                rev: 1,
            }),
        ),
        ("event", encode(&event)),
        (
            "request-upsert",
            encode(&request(
                1,
                Operation::UpsertSim {
                    imsi,
                    msisdn: Some(None),
                    profile: Some(Some("fleet".into())),
                    value: None,
                },
            )),
        ),
        (
            "request-import",
            encode(&request(
                2,
                Operation::Import {
                    rows: vec![ImportRow {
                        imsi,
                        msisdn: None,
                        profile: Some("iot".into()),
                        value: Some(ImeiManagement::Pairing),
                    }],
                },
            )),
        ),
        (
            "charge",
            encode(&Charge {
                imsi,
                month: "2026-11".into(),
                amount: "1.00".into(),
                currency: "EUR".into(),
                first_lock_at: 1_700_000_000_000,
            }),
        ),
        (
            "outbox",
            encode(&OutboxEntry {
                event,
                attempts: 2,
                next_attempt_at: 1_700_000_060_000,
                done: vec!["http://127.0.0.1:9/hook".into()],
            }),
        ),
    ];
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap();
    }
}
