//! Build script: records the compiler's version for the `imei_lockd_build_info` metric
//! (`IMEI_LOCKD_RUSTC_VERSION`, e.g. `1.90.0`; `unknown` if `rustc --version` cannot be read).
//! It reads nothing of the source tree (no git), so builds from a tarball work the same.

fn main() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_owned))
        .filter(|v| {
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=IMEI_LOCKD_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC");
}
