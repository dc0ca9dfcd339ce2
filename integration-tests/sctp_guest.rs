//! Diameter over kernel SCTP, for real. The build machines' kernel has no SCTP (the `diameter`
//! test's `sctp_listener` only sees startup refuse there), so `scripts/sctp-guest.sh` boots a
//! qemu guest (TCG) with a Debian kernel and its sctp module, runs the real `imei-lockd` and the
//! project's client `examples/diameter-sctp-probe.rs` inside it (see `scripts/guest/init.sh`),
//! and this test asserts the results the guest printed on its serial console.
//!
//! Not a skip: when qemu or the kernel package cannot be had, the script fails and so does this
//! test (`scripts/setup.sh --test` installs qemu-system-x86, busybox-static and cpio).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The guest's console: `PROBE <step> k=v ...` lines by step, and the whole text for messages.
struct Console {
    text: String,
    steps: HashMap<String, HashMap<String, String>>,
}

impl Console {
    fn parse(text: String) -> Self {
        let mut steps = HashMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("PROBE ") else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let Some(step) = words.next() else { continue };
            let kv = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            steps.insert(step.to_owned(), kv);
        }
        Self { text, steps }
    }

    /// Value `key` of step `step`; panics (showing the console) when it is missing.
    fn get(&self, step: &str, key: &str) -> &str {
        self.steps
            .get(step)
            .and_then(|kv| kv.get(key))
            .unwrap_or_else(|| panic!("no {key}= on the PROBE {step} line:\n{}", self.text))
    }

    fn expect(&self, step: &str, key: &str, want: &str) {
        let got = self.get(step, key);
        assert_eq!(got, want, "PROBE {step} {key}; console:\n{}", self.text);
    }

    fn number(&self, step: &str, key: &str) -> u64 {
        let v = self.get(step, key);
        v.parse()
            .unwrap_or_else(|_| panic!("PROBE {step} {key}={v} is not a number:\n{}", self.text))
    }

    fn has_line(&self, prefix: &str) -> bool {
        self.text.lines().any(|l| l.starts_with(prefix))
    }
}

/// The probe example next to this test's binary (`target/<profile>/examples/`).
fn probe_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let p = profile.join("examples").join("diameter-sctp-probe");
    assert!(
        p.is_file(),
        "{} is not built: run `cargo build --all-targets` (or `cargo build --example \
         diameter-sctp-probe`) first",
        p.display()
    );
    p
}

#[test]
fn diameter_over_sctp_in_a_guest_kernel() {
    let t0 = Instant::now();
    let out = Command::new(common::repo_root().join("scripts/sctp-guest.sh"))
        .env("SCTP_GUEST_DAEMON", common::bin("imei-lockd"))
        .env("SCTP_GUEST_PROBE", probe_bin())
        .output()
        .expect("run scripts/sctp-guest.sh");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let c = Console::parse(String::from_utf8_lossy(&out.stdout).into_owned());
    println!("{stderr}{}", c.text);
    println!("guest test took {:.1} s", t0.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "scripts/sctp-guest.sh failed ({}):\n{stderr}\n{}",
        out.status,
        c.text
    );
    assert!(c.has_line("GUEST sctp loaded"), "{}", c.text);
    assert!(c.has_line("GUEST done ok"), "{}", c.text);

    // Phase 1: listen = ["sctp://127.0.0.1:3868"].
    assert!(
        c.has_line("DAEMON single ") && c.text.contains(r#"addresses=[127.0.0.1:3868]"#),
        "the daemon's SCTP listener line:\n{}",
        c.text
    );
    c.expect("provisioned", "sims", "201");
    c.expect("cea", "rc", "2001");
    c.expect("cea", "origin_host", "aaa.localdomain");
    // The locked SIM binds the first device (14 digits TAC+SNR of 3512345600090101) ...
    c.expect("ccr_bind", "rc", "2001");
    c.expect("ccr_bind", "bound_imei", "35123456000901");
    // ... and rejects another one, keeping the binding.
    c.expect("ccr_mismatch", "rc", "5003");
    c.expect("ccr_mismatch", "error_message", "IMEI_mismatch");
    c.expect("ccr_mismatch", "bound_imei", "35123456000901");
    c.expect("dwa", "rc", "2001");
    c.expect("dpa", "rc", "2001");
    c.expect("dpa", "closed", "true");

    // The same with 200 requests in flight: `sims` first CCR-Is at once (each binds its SIM),
    // then `requests` alternating the bound device (2001) and another one (5003), a DWR among
    // them; every answer matched to its request by Hop-by-Hop id and checked against the plan.
    c.expect("window_cea", "rc", "2001");
    let (sims, requests) = (c.number("window", "sims"), c.number("window", "requests"));
    assert!(sims >= 200 && requests >= 200, "{}", c.text);
    c.expect("window", "sent", &(sims + requests).to_string());
    c.expect("window", "max_in_flight", "200");
    c.expect(
        "window",
        "rc2001",
        &(sims + requests.div_ceil(2)).to_string(),
    );
    c.expect("window", "rc5003", &(requests / 2).to_string());
    c.expect("window", "unexpected", "0");
    c.expect("window", "dwa_rc", "2001");
    c.expect("window_dpa", "rc", "2001");
    c.expect("exchange_done", "result", "ok");

    // Phase 2: one endpoint bound to 127.0.0.1 and 127.0.0.2 (sctp_bindx); the association
    // learns both, loses its primary path (127.0.0.2 deleted) and keeps answering.
    assert!(
        c.text
            .contains("addresses=[127.0.0.1:3868, 127.0.0.2:3868]"),
        "the multi-homed listener line:\n{}",
        c.text
    );
    c.expect("mh_assoc", "cea_rc", "2001");
    let mut peers: Vec<&str> = c.get("mh_assoc", "peer_addrs").split(',').collect();
    peers.sort_unstable();
    assert_eq!(peers, ["127.0.0.1", "127.0.0.2"], "{}", c.text);
    c.expect("mh_assoc", "primary", "127.0.0.2");
    c.expect("mh_assoc", "state", "established");
    c.expect("mh_ccr_before", "rc", "2001");
    c.expect("mh_drop", "exit", "0");
    c.expect("mh_after_loss", "dwa_rc", "2001");
    c.expect("mh_after_loss", "ccr_rc", "2001");
    c.expect("mh_path", "state", "inactive");
    c.expect("mh_final", "dwa_rc", "2001");
    c.expect("mh_final", "state", "established");
    let paths = c.get("mh_final", "paths");
    assert!(
        paths.contains("127.0.0.2:inactive") && paths.contains("127.0.0.1:active"),
        "{}",
        c.text
    );
    c.expect("mh_dpa", "rc", "2001");
    c.expect("multihome_done", "result", "ok");
}
