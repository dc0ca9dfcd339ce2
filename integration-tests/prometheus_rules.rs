//! prometheus_rules integration test: what ships for Prometheus and Grafana works with what the
//! daemon exports. `promtool check rules` and `promtool test rules` on
//! `conf/prometheus/imei-lockd-alerts.yml` (every alert fires in its unit tests, normal values
//! fire none) must report no problem; the Grafana dashboard `conf/grafana/imei-lockd.json` must
//! be dashboard JSON whose every query, like every rule expression, names only metrics that a
//! scrape of the real daemon contains (or `up`, which Prometheus adds itself).

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use common::promtool;
use common::Daemon;

fn prometheus_dir() -> PathBuf {
    common::repo_root().join("conf/prometheus")
}

#[test]
fn alert_rules_pass_promtool_check() {
    let (code, out) = promtool::run(
        &["check", "rules", "imei-lockd-alerts.yml"],
        Some(&prometheus_dir()),
        "",
    );
    assert_eq!(code, 0, "promtool check rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    assert!(!out.contains("WARNING"), "{out}");
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    let (code, out) = promtool::run(
        &["test", "rules", "imei-lockd-alerts.test.yml"],
        Some(&prometheus_dir()),
        "",
    );
    assert_eq!(code, 0, "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS") && !out.contains("FAILED"), "{out}");
}

/// Each alert of the rule file has a unit test that expects it to fire, and the rules carry the
/// annotations an operator needs.
#[test]
fn every_alert_is_tested_and_annotated() {
    let rules = std::fs::read_to_string(prometheus_dir().join("imei-lockd-alerts.yml")).unwrap();
    let tests =
        std::fs::read_to_string(prometheus_dir().join("imei-lockd-alerts.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 10, "{alerts:?}");
    for a in &alerts {
        // A test expecting it to fire: its name followed by a non-empty exp_alerts.
        let fires = tests
            .match_indices(&format!("alertname: {a}\n"))
            .any(|(i, m)| {
                tests[i + m.len()..]
                    .trim_start()
                    .strip_prefix("exp_alerts:")
                    .is_some_and(|rest| !rest.trim_start().starts_with("[]"))
            });
        assert!(fires, "no unit test fires {a}");
    }
    for key in ["summary:", "description:", "runbook:"] {
        assert_eq!(
            rules.matches(&format!(" {key} ")).count(),
            alerts.len(),
            "every alert has a {key} annotation"
        );
    }
    assert!(
        tests.contains("exp_alerts: []"),
        "a test checks that normal values fire nothing"
    );
}

/// Every `expr` string of a JSON value, recursively.
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

#[test]
fn dashboard_and_rules_only_use_exported_metrics() {
    // The dashboard: valid JSON, a dashboard with a Prometheus datasource variable.
    let path = common::repo_root().join("conf/grafana/imei-lockd.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    assert!(
        dash["title"].is_string() && dash["uid"].is_string(),
        "{dash}"
    );
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let vars = dash["templating"]["list"]
        .as_array()
        .expect("templating.list");
    assert!(
        vars.iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus datasource variable: {vars:?}"
    );
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 15, "{}", panels.len());
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id"
        );
        let g = &p["gridPos"];
        assert!(g["w"].as_u64().is_some_and(|w| w > 0 && w <= 24), "{p}");
        if p["type"] != "row" {
            assert!(
                p["targets"].as_array().is_some_and(|t| !t.is_empty()),
                "{p}"
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{p}");
        }
    }
    let mut dash_exprs = Vec::new();
    exprs(&dash, &mut dash_exprs);
    assert!(dash_exprs.len() >= 30, "{dash_exprs:?}");

    // The rules' expressions.
    let rules = std::fs::read_to_string(prometheus_dir().join("imei-lockd-alerts.yml")).unwrap();
    let mut rule_exprs = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(l) = lines.next() {
        let Some(rest) = l.trim().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest == "|" {
            let mut e = String::new();
            while let Some(next) = lines.next_if(|n| n.starts_with("          ")) {
                e.push_str(next.trim());
                e.push(' ');
            }
            rule_exprs.push(e);
        } else {
            rule_exprs.push(rest.to_owned());
        }
    }
    assert!(rule_exprs.len() >= 10, "{rule_exprs:?}");

    // A scrape of the real daemon after a little traffic (histograms render their buckets).
    let d = Daemon::start("");
    d.api().put_sim(
        "001010000000777",
        serde_json::json!({"imei_management": "lock"}),
    );
    let scrape = common::wait_metrics(&d, std::time::Duration::from_secs(15), |m| {
        m.contains("imei_lockd_store_sims ")
    });
    let exported = promtool::scrape_names(&scrape);
    let (code, report) = promtool::check_metrics(&scrape);
    assert!(code == 0 && report.trim().is_empty(), "{report}");

    let mut used = BTreeSet::new();
    for (what, list) in [("dashboard", &dash_exprs), ("rules", &rule_exprs)] {
        for e in list {
            let names = promtool::promql_metric_names(e);
            assert!(!names.is_empty(), "{what}: no metric in {e}");
            for n in names {
                assert!(
                    n == "up" || exported.contains(&n),
                    "{what} uses {n}, which the daemon does not export (query: {e})\n\
                     exported: {exported:?}"
                );
                used.insert(n);
            }
        }
    }
    // The dashboard covers the subsystems it is meant to show.
    for must in [
        "imei_lockd_decisions_total",
        "imei_lockd_decision_duration_seconds_bucket",
        "imei_lockd_radius_drops_total",
        "imei_lockd_diameter_peers",
        "imei_lockd_provisioning_pending",
        "imei_lockd_provisioning_requests_total",
        "imei_lockd_store_disk_bytes",
        "imei_lockd_store_errors_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(used.contains(must), "nothing shows {must}");
    }
}

#[test]
fn promql_names_are_extracted() {
    let n = promtool::promql_metric_names(
        "histogram_quantile(0.99, sum by (le, interface) (rate(a_bucket{instance=~\"$i\"}\
         [$__rate_interval]))) / on(instance) up and imei_lockd_x > 0",
    );
    let want: BTreeSet<String> = ["a_bucket", "imei_lockd_x"].map(String::from).into();
    assert_eq!(n, want);
}
