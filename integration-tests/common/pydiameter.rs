//! The python-diameter client (`integration-tests/peers/diameter_client.py`, a real third-party
//! Diameter stack) as the Gx/S6b peer of the tests: steps in, one JSON result per step out.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde_json::{json, Value};

use super::Daemon;

/// Panics with a clear message when python-diameter is missing.
pub fn python() -> &'static str {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import diameter.message"])
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        ok,
        "python3 with python-diameter 0.9.0 not found: run scripts/setup.sh --test"
    );
    "python3"
}

pub fn client_script() -> PathBuf {
    super::repo_root().join("integration-tests/peers/diameter_client.py")
}

/// Starts the python client on `port` with `steps`; its output is read by [`finish`].
pub fn spawn_client(port: u16, origin_host: &str, steps: Value) -> Child {
    let input = json!({
        "host": "127.0.0.1", "port": port, "origin_host": origin_host,
        "origin_realm": "localdomain", "steps": steps,
    });
    let mut child = Command::new(python())
        .arg(client_script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    child
}

pub fn finish(child: Child) -> Vec<Value> {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    v["results"].as_array().unwrap().clone()
}

/// Runs the python client against the daemon and returns one result per step.
pub fn client(d: &Daemon, origin_host: &str, steps: Value) -> Vec<Value> {
    finish(spawn_client(d.ports.diameter, origin_host, steps))
}
