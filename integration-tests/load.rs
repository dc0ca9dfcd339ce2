//! Smoke run of the load generator against the real daemon (benchmarks are scripts, not tests:
//! this only keeps `imei-lock-load` working and checks that what it reports adds up).

mod common;

use std::process::Command;

use common::Daemon;
use serde_json::Value;

fn load(args: &[String]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_imei-lock-load"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn radius_and_gx_load_smoke() {
    let extra = "[[diameter.peers]]\norigin_host = \"load1.localdomain\"\n";
    let d = Daemon::start(extra);
    // 200 locked SIMs: IMSI 001010000000000 + i, as the generator numbers them.
    d.api()
        .import_locked((0..200u64).map(|i| format!("{:015}", 1_010_000_000_000u64 + i)));

    let common_args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--sims",
            "200",
            "--duration",
            "1",
            "--window",
            "16",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // First pass binds every SIM to its device; a second pass with every 4th request from
    // another device gets rejects for exactly those.
    let mut a = vec![
        "radius".to_owned(),
        "--target".into(),
        format!("127.0.0.1:{}", d.ports.radius_auth),
    ];
    a.extend(common_args(&[]));
    let v = load(&a);
    assert_eq!(v["timeouts"], 0, "{v}");
    assert!(v["codes"]["accept"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["codes"].get("reject"), None, "{v}");
    assert_eq!(v["sent"], v["answered"]);

    let mut a = vec![
        "radius".to_owned(),
        "--target".into(),
        format!("127.0.0.1:{}", d.ports.radius_auth),
    ];
    a.extend(common_args(&["--mismatch-every", "4"]));
    let v = load(&a);
    let accept = v["codes"]["accept"].as_u64().unwrap_or(0);
    let reject = v["codes"]["reject"].as_u64().unwrap_or(0);
    assert!(reject > 0 && accept > 0, "{v}");
    let share = reject as f64 / (accept + reject) as f64;
    assert!((0.2..0.3).contains(&share), "a quarter rejected: {v}");

    let mut a = vec![
        "gx".to_owned(),
        "--target".into(),
        format!("127.0.0.1:{}", d.ports.diameter),
        "--connections".into(),
        "2".into(),
        "--origin-host".into(),
        "pgw.localdomain,load1.localdomain".into(),
        "--terminate".into(),
    ];
    a.extend(common_args(&[]));
    let v = load(&a);
    assert_eq!(v["timeouts"], 0, "{v}");
    assert!(v["codes"]["2001"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["sent"], v["answered"]);
    assert!(v["latency_us"]["p99"].as_f64().unwrap() > 0.0);
}
