//! schemathesis (a schema-driven API fuzzer, from PyPI; `scripts/setup.sh --test` installs the
//! pinned version) against the real binary, over the `/v1/openapi.json` it serves: every phase
//! (examples, coverage, fuzzing, stateful) and every check (`--checks all`), with a fixed seed
//! and a bounded budget. Zero failures, or the test fails with schemathesis' report.
//!
//! The daemon runs with its default configuration apart from ports and the token; the run
//! starts from an empty store and builds its own state (profiles, SIMs, requests) as it goes.

mod common;

use std::process::Command;

use common::{Daemon, TOKEN};

/// Test cases per operation and phase: with the fixed seed, about a minute on 2 cores.
const MAX_EXAMPLES: &str = "40";
/// Ceiling on the whole run (fuzzing and stateful testing stop when it is spent).
const MAX_TIME_S: &str = "90";
const SEED: &str = "16";

#[test]
fn schemathesis_finds_nothing() {
    let version = Command::new("schemathesis").arg("--version").output();
    let Ok(version) = version else {
        panic!("schemathesis is not installed: run scripts/setup.sh --test (pip: schemathesis)");
    };
    eprintln!("{}", String::from_utf8_lossy(&version.stdout).trim());
    let d = Daemon::start("");
    // A profile and a SIM, so that positive cases can meet existing things too.
    let api = d.api();
    api.put_profile("fleet", "lock");
    api.put_sim(
        "001010000000001",
        serde_json::json!({"profile": "fleet", "msisdn": "+4917000001"}),
    );
    let report = tempfile::tempdir().unwrap();
    let out = Command::new("schemathesis")
        .args(["run", &d.url("/v1/openapi.json")])
        .args(["--url", &d.url("")])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--seed", SEED, "--max-examples", MAX_EXAMPLES])
        .args(["--max-time", MAX_TIME_S])
        .args(["--workers", "1", "--request-timeout", "40"])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--report", "junit"])
        .arg("--report-dir")
        .arg(report.path())
        // Its cache (`.schemathesis/`) goes to the temporary directory, not the work tree.
        .current_dir(report.path())
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "schemathesis reported failures (exit {:?}); see above",
        out.status.code()
    );
    // It really tested: every phase ran and made requests.
    for phase in ["Examples", "Coverage", "Fuzzing", "Stateful"] {
        assert!(text.contains(phase), "phase {phase} did not run");
    }
    assert!(
        !d.log_text().contains(TOKEN),
        "the token must never be logged"
    );
}
