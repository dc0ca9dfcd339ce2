//! Prometheus' `promtool` (Debian package `prometheus`, installed by `scripts/setup.sh --test`)
//! for the tests that check what Prometheus and Grafana are given: the scrape, the alert rules
//! and the dashboard's queries. A missing promtool fails the test (it is a test dependency, not
//! an optional one).

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `promtool ARGS` (in `dir` when given), with `stdin` as its input: (exit code, stdout
/// followed by stderr). Panics with a clear message when promtool is not installed.
pub fn run(args: &[&str], dir: Option<&std::path::Path>, stdin: &str) -> (i32, String) {
    let mut cmd = Command::new("promtool");
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool not found on PATH: install Debian's `prometheus` package \
             (scripts/setup.sh --test, which scripts/test.sh runs, installs it)"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    {
        let mut input = child.stdin.take().expect("stdin piped");
        input
            .write_all(stdin.as_bytes())
            .expect("write promtool stdin");
    }
    let out = child.wait_with_output().expect("promtool output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// `promtool check metrics` on a scrape: (exit code, its report; empty when nothing is wrong).
pub fn check_metrics(scrape: &str) -> (i32, String) {
    run(&["check", "metrics"], None, scrape)
}

/// The metric names of a Prometheus text scrape (histograms as their `_bucket`, `_sum` and
/// `_count` series), sorted.
pub fn scrape_names(scrape: &str) -> std::collections::BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The metric names a PromQL expression selects: identifiers followed by a `{` selector, and
/// any `imei_lockd_*` / `process_*` identifier outside label matchers and strings.
pub fn promql_metric_names(expr: &str) -> std::collections::BTreeSet<String> {
    // Drop string literals and the bodies of label matchers.
    let mut cleaned = String::new();
    let mut in_str = false;
    let mut depth = 0u32;
    for c in expr.chars() {
        match c {
            '"' => {
                in_str = !in_str;
                cleaned.push(' ');
            }
            _ if in_str => {}
            '{' => {
                depth += 1;
                cleaned.push('{');
            }
            '}' => {
                depth = depth.saturating_sub(1);
                cleaned.push(' ');
            }
            _ if depth > 0 => {}
            c => cleaned.push(c),
        }
    }
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = std::collections::BTreeSet::new();
    let chars: Vec<char> = cleaned.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let prev_ok = i == 0 || !(is_part(chars[i - 1]) || chars[i - 1] == '$');
        if prev_ok && is_start(chars[i]) {
            let start = i;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
            let ident: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if next == Some(&'{')
                || ident.starts_with("imei_lockd_")
                || ident.starts_with("process_")
            {
                names.insert(ident);
            }
        } else {
            i += 1;
        }
    }
    names
}
