//! A clean Debian root to install packages into, for the packaging tests: a
//! `mmdebstrap --variant=minbase` of this machine's Debian release with the packages asked for
//! and init-system-helpers, built once and cached as a tarball under target/tmp/ (the first run
//! downloads it, about a minute), unpacked afresh for each test, and commands run in it with
//! `chroot` (as root, or as an account of the root).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Why these tests cannot run here, if they cannot.
pub fn cannot_run() -> Option<String> {
    let (_, uid) = super::output(Command::new("id").arg("-u"));
    if uid.trim() != "0" {
        return Some("not root (dpkg into a chroot needs root)".into());
    }
    if Command::new("chroot")
        .args(["/", "true"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        return Some("chroot is not permitted here".into());
    }
    if Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some(
            "mmdebstrap not installed (apt-get install mmdebstrap, or scripts/setup.sh --test)"
                .into(),
        );
    }
    let deb = Command::new("cargo").args(["deb", "--version"]).output();
    if !deb.map(|o| o.status.success()).unwrap_or(false) {
        return Some(
            "cargo-deb not installed (cargo install cargo-deb, or scripts/setup.sh --test)".into(),
        );
    }
    None
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns the output.
pub fn ok(cmd: &mut Command) -> String {
    let (code, text) = super::output(cmd);
    assert_eq!(code, 0, "{cmd:?}:\n{text}");
    text
}

/// This machine's Debian codename (the binaries need its C library, or a newer one).
pub fn codename() -> String {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    os.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "stable".into())
}

/// The package names of a `Depends` field (first of each alternative, versions dropped).
pub fn depends_names(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter_map(|alt| alt.split('|').next())
        .filter_map(|d| d.split_whitespace().next())
        .map(|name| name.split(':').next().unwrap_or(name).to_owned())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The cached minbase tarball with `packages` included, built on first use.
pub fn base_tarball(packages: &[String]) -> PathBuf {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let mut include: Vec<String> = packages.to_vec();
    include.push("init-system-helpers".into());
    include.sort();
    include.dedup();
    let suite = codename();
    let key = format!("{suite}-{}", include.join("+"));
    let digest: u64 = key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("packaging-roots");
    std::fs::create_dir_all(&dir).unwrap();
    let tar = dir.join(format!("{suite}-minbase-{digest:016x}.tar"));
    if tar.is_file() {
        return tar;
    }
    let partial = tar.with_extension("partial.tar");
    eprintln!(
        "packaging: building a clean {suite} root ({}), once",
        include.join(",")
    );
    ok(Command::new("mmdebstrap")
        .args([
            "--quiet",
            "--mode=root",
            "--variant=minbase",
            "--format=tar",
        ])
        .arg(format!("--include={}", include.join(",")))
        .arg(&suite)
        .arg(&partial));
    std::fs::rename(&partial, &tar).unwrap();
    tar
}

/// A clean root unpacked from `tar` into a temporary directory.
pub struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    pub fn unpack(tar: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pkg-root-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        ok(Command::new("tar")
            .args(["--numeric-owner", "-xpf"])
            .arg(tar)
            .arg("-C")
            .arg(dir.path()));
        Self { dir }
    }

    pub fn path(&self, inside: &str) -> PathBuf {
        self.dir.path().join(inside.trim_start_matches('/'))
    }

    /// `chroot ROOT args...` as root: (exit code, output).
    pub fn run(&self, args: &[&str]) -> (i32, String) {
        self.run_as(None, args)
    }

    /// As `uid:gid` when given.
    pub fn run_as(&self, ids: Option<(u32, u32)>, args: &[&str]) -> (i32, String) {
        let mut cmd = Command::new("chroot");
        if let Some((uid, gid)) = ids {
            cmd.arg(format!("--userspec={uid}:{gid}")).arg("--groups=");
        }
        cmd.arg(self.dir.path())
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LANG", "C");
        super::output(&mut cmd)
    }

    pub fn read(&self, inside: &str) -> String {
        std::fs::read_to_string(self.path(inside)).unwrap_or_default()
    }

    /// The `/etc/passwd` line of `user`, split into its fields.
    pub fn passwd(&self, user: &str) -> Option<Vec<String>> {
        self.read("/etc/passwd")
            .lines()
            .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
            .find(|f| f.first().map(String::as_str) == Some(user))
    }

    /// `(uid, gid)` of the account imei-lockd, checking it is a system account without a
    /// login and with the group of its name.
    pub fn account(&self) -> (u32, u32) {
        let f = self
            .passwd("imei-lockd")
            .unwrap_or_else(|| panic!("no account imei-lockd:\n{}", self.read("/etc/passwd")));
        let uid: u32 = f[2].parse().unwrap();
        let gid: u32 = f[3].parse().unwrap();
        assert!(uid < 1000, "not a system account: {f:?}");
        assert_eq!(f[5], "/var/lib/imei-lockd", "{f:?}");
        assert!(
            f[6].ends_with("nologin") || f[6].ends_with("false"),
            "{f:?}"
        );
        let group = self
            .read("/etc/group")
            .lines()
            .find(|l| l.starts_with("imei-lockd:"))
            .map(str::to_owned)
            .unwrap_or_default();
        assert_eq!(
            group.split(':').nth(2),
            Some(gid.to_string().as_str()),
            "{group}"
        );
        let lines = self.read("/etc/passwd");
        assert_eq!(
            lines
                .lines()
                .filter(|l| l.starts_with("imei-lockd:"))
                .count(),
            1
        );
        (uid, gid)
    }

    /// Asserts `inside` has `mode` and belongs to root and group `gid`.
    pub fn assert_root_group(&self, inside: &str, mode: u32, gid: u32) {
        let m = std::fs::metadata(self.path(inside)).unwrap_or_else(|e| panic!("{inside}: {e}"));
        assert_eq!(m.permissions().mode() & 0o7777, mode, "{inside}: mode");
        assert_eq!((m.uid(), m.gid()), (0, gid), "{inside}: owner");
    }

    /// `imei-lockd check-config` of the installed configuration, as `ids`.
    pub fn check_config_as(&self, ids: (u32, u32)) -> (i32, String) {
        self.run_as(
            Some(ids),
            &[
                "/usr/bin/imei-lockd",
                "check-config",
                "--config",
                "/etc/imei-lockd/imei-lockd.toml",
            ],
        )
    }
}

/// Every path under `dir` (recursively), `dir` included.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        i += 1;
        if p.symlink_metadata().map(|m| m.is_dir()).unwrap_or(false) {
            if let Ok(rd) = std::fs::read_dir(&p) {
                out.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
            }
        }
    }
    out
}

/// Asserts nothing under `inside` is readable by other users.
pub fn assert_not_world_readable(root: &Root, inside: &str) {
    for p in walk(&root.path(inside)) {
        let Ok(m) = p.symlink_metadata() else {
            continue;
        };
        if m.file_type().is_symlink() {
            continue;
        }
        assert_eq!(
            m.permissions().mode() & 0o004,
            0,
            "{} is world-readable",
            p.display()
        );
    }
}
