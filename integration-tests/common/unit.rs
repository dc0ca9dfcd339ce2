//! `systemd-analyze verify` of the imei-lockd unit: the shipped one (config.rs) and the one the
//! Debian package installed (packaging.rs). No systemd runs here: verify checks the unit file
//! offline (keys, values, that ExecStart= names an executable), nothing is started.

use std::path::Path;
use std::process::Command;

use super::output;

/// Whether `systemd-analyze` can run; prints a SKIPPED line when it cannot.
pub fn systemd_analyze_available() -> bool {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok();
    if !ok {
        eprintln!(
            "SKIPPED: systemd-analyze not installed (apt-get install systemd, or \
             scripts/setup.sh --test)"
        );
    }
    ok
}

/// Runs `systemd-analyze verify` on the unit text `unit` with `/usr/bin/imei-lockd` pointed at
/// `binary` (verify checks that ExecStart= commands exist) and fails the test on a non-zero exit
/// or any line about the unit (unknown keys only warn, with exit 0).
pub fn assert_unit_verifies(unit: &str, binary: &Path) {
    assert!(unit.contains("ExecStart=/usr/bin/imei-lockd "), "{unit}");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("imei-lockd.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/imei-lockd ", &format!("{} ", binary.display())),
    )
    .unwrap();
    let (code, text) = output(Command::new("systemd-analyze").arg("verify").arg(&copy));
    assert_eq!(code, 0, "{text}");
    let about_unit: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("imei-lockd.service"))
        .collect();
    assert!(about_unit.is_empty(), "{text}");
}
