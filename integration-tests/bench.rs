//! Smoke runs of the benchmark scripts (benchmarks are not tests: this only keeps
//! `scripts/bench-{radius,diameter,scale,n5g}.sh --smoke` working on the test build and checks that
//! what they wrote adds up). A few seconds each; the figures are not judged.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Runs `scripts/<script> --smoke` on this build's binaries; returns the parsed `<kind>.json`
/// and the printed table.
fn smoke(script: &str, kind: &str, extra: &[&str]) -> (Value, String) {
    let out = tempfile::tempdir().unwrap();
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_imei-lockd"))
        .parent()
        .unwrap()
        .to_path_buf();
    let r = Command::new(common::repo_root().join("scripts").join(script))
        .arg("--smoke")
        .args(extra)
        .env("BIN_DIR", &bin_dir)
        .env("OUT", out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(
        r.status.success(),
        "{script}: {}\n{stdout}\n{}",
        r.status,
        String::from_utf8_lossy(&r.stderr)
    );
    let json = std::fs::read(out.path().join(format!("{kind}.json"))).unwrap();
    let svg = std::fs::read_to_string(out.path().join(format!("{kind}.svg"))).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let md = std::fs::read_to_string(out.path().join(format!("{kind}.md"))).unwrap();
    assert!(stdout.contains(md.lines().nth(2).unwrap()), "table printed");
    (serde_json::from_slice(&json).unwrap(), stdout)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Every request answered with `code`, at peak and at half rate.
fn all_answered(name: &str, r: &Value, code: &str) {
    for phase in ["peak", "half"] {
        let p = &r[phase];
        assert!(u(&p["answered"]) > 0, "{name} {phase}: {p}");
        assert_eq!(p["answered"], p["sent"], "{name} {phase}: {p}");
        assert_eq!(
            u(&p["codes"][code]),
            u(&p["answered"]),
            "{name} {phase}: {p}"
        );
        assert!(p["server_cpu_s"].as_f64().unwrap() >= 0.0);
        assert!(p["latency_us"]["p99"].as_f64().unwrap() > 0.0);
    }
}

fn freeradius_installed() -> bool {
    ["/usr/sbin/freeradius", "/usr/sbin/radiusd"]
        .iter()
        .any(|p| Path::new(p).exists())
}

#[test]
fn bench_radius_smoke() {
    let (v, table) = smoke("bench-radius.sh", "radius", &[]);
    let mut expect = vec!["echo", "imei-lockd"];
    if freeradius_installed() {
        expect.insert(1, "freeradius");
    } else {
        eprintln!("freeradius not installed: its column is skipped (scripts/setup.sh --test)");
    }
    assert_eq!(v["servers"], serde_json::json!(expect), "{v}");
    for name in &expect {
        all_answered(name, &v["results"][name], "accept");
    }
    // imei-lockd answered from bound SIMs: the one sampled is locked to its device.
    let sim = &v["results"]["imei-lockd"]["sample_sim"];
    assert_eq!(sim["imei_management"], "lock", "{sim}");
    assert!(sim["bound_imei"].is_string(), "{sim}");
    assert!(v["summary"]["vs_ceiling_req_s"].as_f64().unwrap() > 0.0);
    assert!(table.contains("imei-lockd / echo ceiling"), "{table}");
}

#[test]
fn bench_diameter_smoke() {
    let (v, table) = smoke("bench-diameter.sh", "diameter", &["--connections", "1,2"]);
    // Gx over 1 and 2 connections against the echo ceiling, then S13 over the widest count.
    let expect = [
        "echo ×1",
        "echo ×2",
        "imei-lockd ×1",
        "imei-lockd ×2",
        "imei-lockd S13 ×2",
    ];
    assert_eq!(v["servers"], serde_json::json!(expect), "{v}");
    for name in expect {
        all_answered(name, &v["results"][name], "2001");
    }
    assert!(table.contains("imei-lockd ×2"), "{table}");
    let s13_vs_gx = v["summary"]["s13_vs_gx_per_cpu_x2"].as_f64().unwrap_or(0.0);
    assert!(s13_vs_gx > 0.0, "{v}");
}

#[test]
fn bench_scale_smoke() {
    let (v, table) = smoke("bench-scale.sh", "scale", &["--sizes", "1000,5000"]);
    let rs = v["results"].as_array().unwrap();
    assert_eq!(rs.len(), 2, "{v}");
    for (r, n) in rs.iter().zip([1000u64, 5000]) {
        assert_eq!(u(&r["sims"]), n);
        assert!(r["import_sims_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(u(&r["disk_bytes"]) > 0, "{r}");
        let d = &r["decision"];
        assert!(u(&d["answered"]) > 0, "{r}");
        assert_eq!(u(&d["codes"]["accept"]), u(&d["answered"]), "{r}");
    }
    assert!(table.contains("p99 vs smallest"), "{table}");
}

/// `scripts/bench-n5g.sh --smoke`: h2load's closed-loop peak, then `imei-lock-load n5g`'s paced
/// half of it against the real daemon; every check of both answered 200.
#[test]
fn bench_n5g_smoke() {
    let out = tempfile::tempdir().unwrap();
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_imei-lockd"))
        .parent()
        .unwrap()
        .to_path_buf();
    let r = Command::new(common::repo_root().join("scripts").join("bench-n5g.sh"))
        .arg("--smoke")
        .env("BIN_DIR", &bin_dir)
        .env("OUT", out.path())
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "bench-n5g.sh: {}\n{}\n{}",
        r.status,
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    let v: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("n5g.json")).unwrap()).unwrap();
    let (peak, half) = (&v["peak"], &v["half_peak"]);
    assert_eq!(u(&peak["status_2xx"]), u(&v["requests"]), "{v}");
    assert!(u(&half["samples"]) > 0, "{v}");
    assert_eq!(u(&half["codes"]["200"]), u(&half["samples"]), "{v}");
    assert!(half["p99_ms"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
}
