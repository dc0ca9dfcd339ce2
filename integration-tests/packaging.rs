//! The Debian package and scripts/install.sh, installed for real into a clean Debian root.
//!
//! The root is a `mmdebstrap --variant=minbase` of this machine's Debian release with the
//! package's dependencies (its `Depends`), built once and cached, unpacked afresh for each
//! test. Everything runs through `chroot` as root: dpkg runs the real maintainer scripts
//! (debian/postinst and postrm with cargo-deb's systemd parts: deb-systemd-helper,
//! deb-systemd-invoke), adduser creates the account.
//!
//! What a chroot cannot show is systemd itself: no systemd runs in it. The root has
//! /run/systemd/system (so the maintainer scripts take their "systemd is running" branch) and a
//! `/usr/sbin/policy-rc.d` that records each action deb-systemd-invoke asks about and answers
//! 101 (deny), the interface Debian provides for chroots: the test sees that the service would
//! be started on install, restarted after an upgrade and stopped on removal. The unit is checked
//! by `systemd-analyze` (verify in config.rs, security here); the sysctl drop-in cannot be
//! applied in a chroot (no /proc): the tolerant path is what is tested.
//!
//! Needs root, chroot, mmdebstrap and cargo-deb (scripts/setup.sh --test installs the last two);
//! skips with a message when one is missing. The clean root: [`common::debroot`].
//!
//! Also here, what the unit relies on: its `systemd-analyze security` exposure, configuration
//! errors exiting with 2 (RestartPreventExitStatus=2), the completions and man pages of both
//! binaries, and the RADIUS receive buffer warning that the sysctl drop-in silences (the daemon
//! run without CAP_NET_ADMIN, as under the unit).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::debroot::{
    assert_not_world_readable, base_tarball, cannot_run, depends_names, ok, walk, Root,
};
use common::{bin, repo_root};

// ---------------------------------------------------------------------------------------------
// The .deb
// ---------------------------------------------------------------------------------------------

/// The package built from the release binaries with version `version` (once per test run:
/// both tests use it, and scripts/package-deb.sh regenerates target/assets/ each time), and
/// what the script printed (its `dpkg-deb --contents` listing).
fn package(version: &str) -> (PathBuf, String) {
    static BUILT: Mutex<Vec<(String, PathBuf, String)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, deb, text)) = built.iter().find(|(v, _, _)| v == version) {
        return (deb.clone(), text.clone());
    }
    let deb = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("packaging-test-imei-lockd_{version}.deb"));
    let text = ok(Command::new("bash")
        .arg(repo_root().join("scripts/package-deb.sh"))
        .args(["--no-build", "--fast", "--deb-version", version, "--output"])
        .arg(&deb)
        .current_dir(repo_root()));
    built.push((version.to_owned(), deb.clone(), text.clone()));
    (deb, text)
}

/// The package names the package depends on (its clean root has them).
fn depends(deb: &Path) -> Vec<String> {
    let (_, field) = common::output(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Depends"));
    depends_names(field.trim())
}

/// The actions deb-systemd-invoke asked policy-rc.d about since the last call (and forgets
/// them).
fn service_actions(root: &Root) -> Vec<String> {
    let log = root.path("/var/log/policy-rc.d.log");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    text.lines().map(str::to_owned).collect()
}

const UNIT: &str = "imei-lockd.service";

#[test]
fn deb_installs_upgrades_removes_and_purges_in_a_clean_root() {
    if let Some(why) = cannot_run() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let (first, text) = package("0.1.0-1");
    for listed in [
        "./usr/bin/imei-lockd",
        "./usr/bin/imei-lockctl",
        "./etc/imei-lockd/imei-lockd.toml",
        "./usr/lib/sysctl.d/60-imei-lockd.conf",
        "/systemd/system/imei-lockd.service",
        "./usr/share/bash-completion/completions/imei-lockctl",
        "./usr/share/zsh/vendor-completions/_imei-lockctl",
        "./usr/share/man/man1/imei-lockctl.1.gz",
        "./usr/share/man/man1/imei-lockctl-sim-get.1.gz",
        "./usr/share/man/man8/imei-lockd.8.gz",
    ] {
        assert!(
            text.contains(listed),
            "{listed} not in the package:\n{text}"
        );
    }
    let conf_entry = text
        .lines()
        .find(|l| l.ends_with("./etc/imei-lockd/imei-lockd.toml"))
        .unwrap_or_default();
    assert!(conf_entry.starts_with("-rw-r----- 0/0 "), "{text}");
    let (second, _) = package("0.1.0-2");
    let names = depends(&first);
    assert!(names.iter().any(|n| n == "adduser"), "{names:?}");
    let root = Root::unpack(&base_tarball(&names));

    // The maintainer scripts see a running systemd; policy-rc.d records and refuses.
    std::fs::create_dir_all(root.path("/run/systemd/system")).unwrap();
    let policy = root.path("/usr/sbin/policy-rc.d");
    std::fs::write(
        &policy,
        "#!/bin/sh\necho \"$*\" >>/var/log/policy-rc.d.log\nexit 101\n",
    )
    .unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(&first, root.path("/tmp/imei-lockd_1.deb")).unwrap();
    std::fs::copy(&second, root.path("/tmp/imei-lockd_2.deb")).unwrap();

    // Install.
    let (code, out) = root.run(&["dpkg", "-i", "/tmp/imei-lockd_1.deb"]);
    assert_eq!(code, 0, "{out}");
    let (uid, gid) = root.account();
    root.assert_root_group("/etc/imei-lockd", 0o750, gid);
    root.assert_root_group("/etc/imei-lockd/imei-lockd.toml", 0o640, gid);
    assert_not_world_readable(&root, "/etc/imei-lockd");
    assert_eq!(service_actions(&root), [format!("{UNIT} start")]);
    let wants = root
        .path("/etc/systemd/system/multi-user.target.wants")
        .join(UNIT);
    assert!(wants.symlink_metadata().is_ok(), "not enabled:\n{out}");
    // The unit as installed (where cargo-deb put it) verifies, its ExecStart= pointed at the
    // installed binary.
    if common::unit::systemd_analyze_available() {
        let installed = ["/usr/lib/systemd/system/", "/lib/systemd/system/"]
            .iter()
            .map(|d| root.path(&format!("{d}{UNIT}")))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("no installed {UNIT}:\n{out}"));
        let unit = std::fs::read_to_string(installed).unwrap();
        common::unit::assert_unit_verifies(&unit, &root.path("/usr/bin/imei-lockd"));
    }
    // No /proc in the chroot: the drop-in is installed, not applied, and that is said.
    assert!(root
        .read("/usr/lib/sysctl.d/60-imei-lockd.conf")
        .contains("net.core.rmem_max = 8388608"));
    assert!(out.contains("applies at the next boot"), "{out}");
    // The account reads its configuration (as docs/operations/install-upgrade.md checks it);
    // another account does not, and is told why.
    let (code, text) = root.run(&[
        "runuser",
        "-u",
        "imei-lockd",
        "--",
        "imei-lockd",
        "check-config",
        "--config",
        "/etc/imei-lockd/imei-lockd.toml",
    ]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = root.check_config_as((65534, 65534));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("cannot read"), "{text}");
    // Completions and man pages work as shipped.
    assert!(root
        .read("/usr/share/bash-completion/completions/imei-lockctl")
        .contains("imei-lockctl"));
    let (code, man) = root.run(&["gzip", "-dc", "/usr/share/man/man8/imei-lockd.8.gz"]);
    assert_eq!(code, 0, "{man}");
    assert!(
        man.contains(".TH IMEI-LOCKD 8") && man.contains("check\\-config"),
        "{man}"
    );
    // Outside the configuration, only binaries, documentation, completions, man pages, the
    // unit and the sysctl drop-in are readable by all.
    let (_, files) = root.run(&["dpkg", "-L", "imei-lockd"]);
    for f in files.lines().filter(|f| root.path(f).is_file()) {
        let mode = root.path(f).metadata().unwrap().permissions().mode();
        if mode & 0o004 != 0 {
            assert!(
                [
                    "/usr/bin/",
                    "/usr/share/",
                    "/lib/systemd/system/",
                    "/usr/lib/systemd/system/",
                    "/usr/lib/sysctl.d/"
                ]
                .iter()
                .any(|p| f.starts_with(p)),
                "{f} is world-readable"
            );
        }
    }

    // Upgrade over itself: the operator's edit stays, the service is restarted.
    let conf = root.path("/etc/imei-lockd/imei-lockd.toml");
    let mut edited = std::fs::read_to_string(&conf).unwrap();
    edited.push_str("# edited by the operator\n");
    std::fs::write(&conf, &edited).unwrap();
    let (code, out) = root.run(&["dpkg", "-i", "/tmp/imei-lockd_2.deb"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(service_actions(&root), [format!("{UNIT} restart")], "{out}");
    let (_, status) = root.run(&["dpkg-query", "-W", "-f=${Version}", "imei-lockd"]);
    assert_eq!(status.trim(), "0.1.0-2");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);
    assert_eq!(root.account(), (uid, gid), "the account is kept");
    root.assert_root_group("/etc/imei-lockd/imei-lockd.toml", 0o640, gid);

    // Remove: stopped, binaries gone, configuration kept.
    let (code, out) = root.run(&["dpkg", "-r", "imei-lockd"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(service_actions(&root), [format!("{UNIT} stop")], "{out}");
    assert!(!root.path("/usr/bin/imei-lockd").exists());
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), edited);

    // Purge: configuration and data (as the unit's StateDirectory= left them) are deleted;
    // nothing of the account's is left behind, and the unit is no longer enabled.
    let data = root.path("/var/lib/imei-lockd/data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("CURRENT"), "MANIFEST-000001\n").unwrap();
    std::os::unix::fs::chown(root.path("/var/lib/imei-lockd"), Some(uid), Some(gid)).unwrap();
    std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
    let (code, out) = root.run(&["dpkg", "-P", "imei-lockd"]);
    assert_eq!(code, 0, "{out}");
    assert!(!root.path("/etc/imei-lockd").exists(), "{out}");
    assert!(!root.path("/var/lib/imei-lockd").exists(), "{out}");
    assert!(
        wants.symlink_metadata().is_err(),
        "still enabled after purge"
    );
    let (code, _) = root.run(&["dpkg-query", "-W", "imei-lockd"]);
    assert_ne!(code, 0, "still known to dpkg after purge");
    for inside in ["/etc", "/var", "/usr", "/run", "/tmp"] {
        for p in walk(&root.path(inside)) {
            let Ok(m) = p.symlink_metadata() else {
                continue;
            };
            assert!(
                m.uid() != uid && m.gid() != gid,
                "{} still belongs to imei-lockd after purge",
                p.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// scripts/install.sh
// ---------------------------------------------------------------------------------------------

#[test]
fn install_sh_in_a_clean_root_creates_the_account_and_locks_the_config_down() {
    if let Some(why) = cannot_run() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    // The same root as the package test: the package's dependencies are the binaries' too.
    let (deb, _) = package("0.1.0-1");
    let root = Root::unpack(&base_tarball(&depends(&deb)));
    // The parts of the source tree install.sh uses, and the built binaries.
    let src = root.path("/src");
    for f in [
        "scripts/install.sh",
        "systemd/imei-lockd.service",
        "conf/imei-lockd.toml",
        "conf/sysctl.d/60-imei-lockd.conf",
    ] {
        let to = src.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo_root().join(f), &to).unwrap();
    }
    std::fs::create_dir_all(src.join("bin")).unwrap();
    for b in ["imei-lockd", "imei-lockctl"] {
        std::fs::copy(bin(b), src.join("bin").join(b)).unwrap();
    }
    let install = |root: &Root| {
        root.run(&[
            "env",
            "BIN_DIR=/src/bin",
            "bash",
            "/src/scripts/install.sh",
            "--no-build",
        ])
    };
    let (code, out) = install(&root);
    assert_eq!(code, 0, "{out}");
    let (uid, gid) = root.account();
    root.assert_root_group("/etc/imei-lockd", 0o750, gid);
    root.assert_root_group("/etc/imei-lockd/imei-lockd.toml", 0o640, gid);
    assert_not_world_readable(&root, "/etc/imei-lockd");
    assert!(root
        .read("/etc/sysctl.d/60-imei-lockd.conf")
        .contains("net.core.rmem_max = 8388608"));
    assert!(out.contains("applies at the next boot"), "{out}");
    let unit = root.read("/etc/systemd/system/imei-lockd.service");
    assert!(
        unit.lines().any(|l| l == "User=imei-lockd")
            && !unit.lines().any(|l| l.starts_with("DynamicUser=")),
        "{unit}"
    );
    assert!(root
        .read("/usr/share/bash-completion/completions/imei-lockctl")
        .contains("imei-lockctl"));
    assert!(root
        .read("/usr/share/zsh/vendor-completions/_imei-lockd")
        .contains("imei-lockd"));
    assert!(root
        .read("/usr/share/man/man8/imei-lockd.8")
        .contains(".TH IMEI-LOCKD 8"));
    assert!(root
        .read("/usr/share/man/man1/imei-lockctl.1")
        .contains(".TH IMEI-LOCKCTL 1"));
    let (code, text) = root.check_config_as((uid, gid));
    assert_eq!(code, 0, "{text}");

    // Again, over a configuration an older install.sh left world-readable: the content is
    // kept, the mode tightened, the account reused.
    let conf = root.path("/etc/imei-lockd/imei-lockd.toml");
    std::fs::write(&conf, "# edited by the operator\n").unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = install(&root);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("keep existing account: imei-lockd"), "{out}");
    assert_eq!(root.account(), (uid, gid));
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        "# edited by the operator\n"
    );
    root.assert_root_group("/etc/imei-lockd/imei-lockd.toml", 0o640, gid);
}

// ---------------------------------------------------------------------------------------------
// The unit and the exit codes it relies on
// ---------------------------------------------------------------------------------------------

/// `systemd-analyze security` of the unit: the static account must not cost exposure. With
/// DynamicUser=yes the unit scored 2.0; User= alone would score 2.1 (RemoveIPC= is no longer
/// implied), so the unit sets it and a few more.
#[test]
fn unit_runs_as_the_static_account_without_more_exposure() {
    let unit = std::fs::read_to_string(repo_root().join("systemd/imei-lockd.service")).unwrap();
    for line in [
        "User=imei-lockd",
        "Group=imei-lockd",
        "StateDirectory=imei-lockd",
        "RestartPreventExitStatus=2",
        "RemoveIPC=yes",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}: {unit}");
    }
    assert!(
        !unit.lines().any(|l| l.starts_with("DynamicUser=")),
        "{unit}"
    );
    if !common::unit::systemd_analyze_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(UNIT);
    std::fs::write(&copy, &unit).unwrap();
    let (_, text) = common::output(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&copy),
    );
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for imei-lockd.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure level:\n{text}"));
    assert!(
        level <= 1.7,
        "exposure {level} (was 2.0 with DynamicUser=yes):\n{text}"
    );
}

/// RestartPreventExitStatus=2 relies on every configuration error exiting with 2 from the main
/// process (and check-config saying the same), including an API token file the account cannot
/// read.
#[test]
fn configuration_errors_exit_with_2() {
    let dir = tempfile::tempdir().unwrap();
    let ports = common::Ports::new();
    let good = common::config_text(dir.path(), &ports, "");
    let conf = dir.path().join("imei-lockd.toml");
    let missing_token = dir.path().join("no-such-token");
    let cases = [
        (
            good.replace("unknown_sim = \"reject\"", "unknown_sim = \"maybe\""),
            "unknown_sim",
        ),
        (
            good.replacen(
                "[api]\n",
                &format!("[api]\ntoken_file = \"{}\"\n", missing_token.display()),
                1,
            )
            .replace(&format!("token = \"{}\"\n", common::TOKEN), ""),
            "api.token_file",
        ),
    ];
    for (text, key) in cases {
        std::fs::write(&conf, &text).unwrap();
        for args in [&["check-config"][..], &[][..]] {
            let (code, out) = common::output(
                Command::new(bin("imei-lockd"))
                    .args(args)
                    .arg("--config")
                    .arg(&conf),
            );
            assert_eq!(code, 2, "{args:?} {key}: {out}\n{text}");
            assert!(out.contains(key), "{args:?} {key}: {out}");
        }
    }
    let (code, out) = common::output(
        Command::new(bin("imei-lockd"))
            .arg("--config")
            .arg(dir.path().join("absent.toml")),
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not found"), "{out}");
}

/// The public `imei-lockctl completions SHELL` and the hidden generators of both binaries.
#[test]
fn completions_and_man_pages_come_from_the_binaries() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, text) =
            common::output(Command::new(bin("imei-lockctl")).args(["completions", shell]));
        assert_eq!(code, 0, "{text}");
        for word in ["imei-lockctl", "sim", "profile", "billing"] {
            assert!(text.contains(word), "{shell}: {word}: {text}");
        }
        let (code, text) =
            common::output(Command::new(bin("imei-lockd")).args(["completions", shell]));
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("check-config"), "{shell}: {text}");
    }
    let (code, text) =
        common::output(Command::new(bin("imei-lockctl")).args(["completions", "tcsh"]));
    assert_eq!(code, 2, "{text}");
    let (_, help) = common::output(Command::new(bin("imei-lockd")).arg("--help"));
    assert!(
        !help.contains("manpages") && !help.contains("completions"),
        "{help}"
    );

    let dir = tempfile::tempdir().unwrap();
    let (code, text) = common::output(
        Command::new(bin("imei-lockctl"))
            .arg("manpages")
            .arg(dir.path()),
    );
    assert_eq!(code, 0, "{text}");
    let page = std::fs::read_to_string(dir.path().join("imei-lockctl-sim-set.1")).unwrap();
    assert!(page.contains("imei\\-management"), "{page}");
    assert!(!dir.path().join("imei-lockctl-manpages.1").exists());
    let (code, text) = common::output(
        Command::new(bin("imei-lockd"))
            .arg("manpages")
            .arg(dir.path()),
    );
    assert_eq!(code, 0, "{text}");
    let page = std::fs::read_to_string(dir.path().join("imei-lockd.8")).unwrap();
    assert!(
        page.contains("SIGHUP") && page.contains(".TH IMEI-LOCKD 8"),
        "{page}"
    );
    assert!(dir.path().join("imei-lockd-check-config.8").is_file());
}

// ---------------------------------------------------------------------------------------------
// The RADIUS receive buffer and net.core.rmem_max
// ---------------------------------------------------------------------------------------------

/// Starts the daemon without CAP_NET_ADMIN (as nobody when the test runs as root), so that the
/// kernel caps SO_RCVBUF at net.core.rmem_max as it does under the unit, with
/// `radius.recv_buffer_bytes = bytes`; returns (its log, the auth socket's gauge).
fn start_unprivileged(bytes: usize) -> (String, f64) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let ports = common::Ports::new();
    let radius = format!("recv_buffer_bytes = {bytes}");
    let keys = common::Keys {
        radius: &radius,
        ..Default::default()
    };
    let conf = dir.path().join("imei-lockd.toml");
    std::fs::write(
        &conf,
        common::config_text_with_keys(dir.path(), &ports, &keys, ""),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let out = std::fs::File::create(&log).unwrap();
    let (_, uid) = common::output(Command::new("id").arg("-u"));
    let mut cmd = if uid.trim() == "0" {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin("imei-lockd"));
        c
    } else {
        Command::new(bin("imei-lockd"))
    };
    let mut child = cmd
        .arg("--config")
        .arg(&conf)
        .current_dir(dir.path())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let http = common::http_within(std::time::Duration::from_secs(5));
    let metrics_url = format!("http://127.0.0.1:{}/metrics", ports.metrics);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut gauge = None;
    while gauge.is_none() && std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if let Ok(text) = http.get(&metrics_url).send().and_then(|r| r.text()) {
            gauge = text
                .lines()
                .find(|l| {
                    l.starts_with("imei_lockd_radius_recv_buffer_bytes{") && l.contains("\"auth\"")
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let gauge = gauge.unwrap_or_else(|| panic!("no receive buffer gauge:\n{text}"));
    (text, gauge)
}

/// The start-up warning appears exactly when net.core.rmem_max is below what the daemon asks
/// for, names the limit, and the gauge shows what the kernel granted.
#[test]
fn receive_buffer_warning_only_when_rmem_max_is_too_low() {
    let Some(cap) = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
    else {
        eprintln!("SKIPPED: /proc/sys/net/core/rmem_max cannot be read here");
        return;
    };
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIPPED: setpriv not installed (util-linux)");
        return;
    }
    const WARNING: &str = "RADIUS receive buffer capped by net.core.rmem_max";
    // Exactly the limit: granted in full, no warning.
    let (log, gauge) = start_unprivileged(cap);
    assert!(!log.contains(WARNING), "{log}");
    assert!(!log.contains("RADIUS receive buffer smaller"), "{log}");
    assert_eq!(gauge, cap as f64, "{log}");
    // Above it: capped, and said so with the limit's value.
    let (log, gauge) = start_unprivileged(cap + 65_536);
    let line = log
        .lines()
        .find(|l| l.contains(WARNING) && l.contains("radius.auth_listen"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(line.contains(&format!("\"rmem_max\":{cap}")), "{line}");
    assert!(line.contains("60-imei-lockd.conf"), "{line}");
    assert_eq!(gauge, cap as f64, "{log}");
}
