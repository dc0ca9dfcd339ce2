//! Secrets and TLS files named by the configuration: `[api] token_file`, `[[radius.clients]]
//! secret_file`, and `[api]` / `[metrics]` `tls_cert` and `tls_key`.
//!
//! # Where a relative path is looked up
//! In `$CREDENTIALS_DIRECTORY` when that variable is set (systemd's `LoadCredential=` puts the
//! files there and sets it), else in the directory of the configuration file. Absolute paths
//! are used as given. [`super::Config::load`] replaces each path by the one it resolved, so
//! errors and logs show the file actually read.
//!
//! # Secret files
//! The whole file is the secret, less one trailing newline (`\n` or `\r\n`); an empty file is
//! an error, and so is a secret with control characters left (it could not be typed or sent in
//! a header). The files are read by [`super::Config::load`], so `check-config` reports a
//! missing or empty one naming the key, and SIGHUP (which loads the file again) re-reads them.
//!
//! # API token hygiene
//! [`token_warnings`] says what is wrong with the token the API will run with: the shipped
//! example (`change-me`), or none at all on a non-loopback address. The daemon logs each at
//! WARN, at start and on every reload, and sets the gauge `imei_lockd_api_token_weak`.
//!
//! This module does not keep files open or watch them, and does not decide how a secret is used.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{invalid, Config, ConfigError};
use crate::tls::{TlsFileError, TlsFiles};

/// The environment variable systemd sets to the directory of the unit's credentials.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// The token of the shipped `conf/imei-lockd.toml`: an example, never a secret.
pub const SHIPPED_API_TOKEN: &str = "change-me";

/// The directory relative secret and TLS paths are looked up in: `$CREDENTIALS_DIRECTORY` when
/// set and not empty, else the directory of `config_path`.
pub fn base_dir(config_path: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os(CREDENTIALS_DIRECTORY).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match config_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `path` itself when absolute, else `base.join(path)`.
pub fn resolve(path: &Path, base: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Reads the secret file at `path` for `key`: its content less one trailing newline.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `key` when the file cannot be read, is not UTF-8, is empty,
/// or holds control characters beyond the one trailing newline.
pub fn read_secret(key: &str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
    let secret = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if secret.is_empty() {
        return Err(invalid(key, format!("{} is empty", path.display())));
    }
    if secret.chars().any(char::is_control) {
        return Err(invalid(
            key,
            format!(
                "{} holds control characters (line breaks?) besides one trailing newline",
                path.display()
            ),
        ));
    }
    Ok(secret.to_owned())
}

/// What is wrong with the API token the daemon runs with (see [`token_warnings`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenWarning {
    /// The token is the shipped example `change-me` (anywhere).
    Shipped,
    /// The shipped example, and the API listens on a non-loopback address.
    ShippedExposed,
    /// No token (or a blank one) while the API listens on a non-loopback address.
    MissingExposed,
}

impl TokenWarning {
    /// The WARN line's message.
    pub fn message(self) -> &'static str {
        match self {
            Self::Shipped => {
                "the API token is the shipped example \"change-me\": set a token of your own \
                 (api.token_file; see docs/operations/security.md)"
            }
            Self::ShippedExposed => {
                "the API token is the shipped example \"change-me\" and the API listens on a \
                 non-loopback address: anyone who can reach it can provision SIMs"
            }
            Self::MissingExposed => {
                "the API has no token and listens on a non-loopback address: anyone who can \
                 reach it can provision SIMs"
            }
        }
    }
}

/// The warnings for running the API on `listen` with `token`.
pub fn token_warnings(token: Option<&str>, listen: SocketAddr) -> Vec<TokenWarning> {
    let exposed = !listen.ip().is_loopback();
    let mut out = Vec::new();
    match token.map(str::trim) {
        Some(SHIPPED_API_TOKEN) => {
            out.push(TokenWarning::Shipped);
            if exposed {
                out.push(TokenWarning::ShippedExposed);
            }
        }
        None | Some("") if exposed => out.push(TokenWarning::MissingExposed),
        _ => {}
    }
    out
}

/// `(cert, key)` of a listener section as [`TlsFiles`], when both are set.
pub fn tls_files(cert: &Option<PathBuf>, key: &Option<PathBuf>) -> Option<TlsFiles> {
    match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    }
}

/// Checks that `cert` and `key` (of `section`, `api` or `metrics`) make a TLS configuration,
/// naming `section.tls_cert` or `section.tls_key`.
pub(super) fn check_tls(section: &str, files: &TlsFiles) -> Result<(), ConfigError> {
    crate::tls::load(files)
        .map(|_| ())
        .map_err(|e: TlsFileError| {
            let key = if e.is_key() { "tls_key" } else { "tls_cert" };
            invalid(format!("{section}.{key}"), e.to_string())
        })
}

/// Checks that both or neither of `section.tls_cert` and `section.tls_key` are set.
pub(super) fn check_tls_pair(
    section: &str,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    match (cert, key) {
        (Some(_), None) => Err(invalid(
            format!("{section}.tls_key"),
            format!("{section}.tls_cert is set: set {section}.tls_key too (both or neither)"),
        )),
        (None, Some(_)) => Err(invalid(
            format!("{section}.tls_cert"),
            format!("{section}.tls_key is set: set {section}.tls_cert too (both or neither)"),
        )),
        _ => Ok(()),
    }
}

impl Config {
    /// Resolves the secret and TLS paths (see the module doc), reads the secret files and
    /// checks the TLS files. Called by [`Config::load`] after [`Config::validate`].
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key of the first file at fault.
    pub(super) fn read_files(&mut self, config_path: &Path) -> Result<(), ConfigError> {
        let base = base_dir(config_path);
        if let Some(p) = &self.api.token_file {
            let p = resolve(p, &base);
            self.api.token_from_file = Some(read_secret("api.token_file", &p)?);
            self.api.token_file = Some(p);
        }
        for (i, c) in self.radius.clients.iter_mut().enumerate() {
            if let Some(p) = &c.secret_file {
                let p = resolve(p, &base);
                c.secret_from_file = Some(read_secret(
                    &format!("radius.clients[{i}].secret_file"),
                    &p,
                )?);
                c.secret_file = Some(p);
            }
        }
        for (section, cert, key) in [
            ("api", &mut self.api.tls_cert, &mut self.api.tls_key),
            (
                "metrics",
                &mut self.metrics.tls_cert,
                &mut self.metrics.tls_key,
            ),
        ] {
            for p in [&mut *cert, &mut *key].into_iter().flatten() {
                *p = resolve(p, &base);
            }
            if let Some(files) = tls_files(cert, key) {
                check_tls(section, &files)?;
            }
        }
        self.eir.read_files(&base)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_not_part_of_the_secret() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        for (body, want) in [
            ("abc\n", "abc"),
            ("abc\r\n", "abc"),
            ("abc", "abc"),
            (" a b ", " a b "),
        ] {
            std::fs::write(&p, body).unwrap();
            assert_eq!(read_secret("k", &p).unwrap(), want, "{body:?}");
        }
        for (body, says) in [
            ("", "is empty"),
            ("\n", "is empty"),
            ("abc\n\n", "control characters"),
            ("a\nb\n", "control characters"),
        ] {
            std::fs::write(&p, body).unwrap();
            let e = read_secret("radius.clients[2].secret_file", &p)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("radius.clients[2].secret_file") && e.contains(says),
                "{body:?}: {e}"
            );
        }
        let e = read_secret("api.token_file", &d.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("api.token_file") && e.contains("cannot read"),
            "{e}"
        );
    }

    /// Loads `body` as `c.toml` in `dir` (`CREDENTIALS_DIRECTORY` is not set in unit tests).
    fn load(dir: &tempfile::TempDir, body: &str) -> Result<Config, ConfigError> {
        let p = dir.path().join("c.toml");
        std::fs::write(&p, body).unwrap();
        Config::load(&p)
    }

    const CLIENT: &str = "[[radius.clients]]\nname = \"a\"\naddress = \"127.0.0.1\"\n";

    #[test]
    fn files_next_to_the_config_are_read_and_errors_name_the_key() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("radius.secret"), "s3cret\n").unwrap();
        std::fs::write(d.path().join("api-token"), "t0ken\n").unwrap();
        let c = load(
            &d,
            &format!(
                "[api]\ntoken_file = \"api-token\"\n{CLIENT}secret_file = \"radius.secret\"\n"
            ),
        )
        .unwrap();
        assert_eq!(c.radius.clients[0].shared_secret(), Some("s3cret"));
        assert_eq!(
            c.radius.clients[0].secret_file.as_deref(),
            Some(d.path().join("radius.secret").as_path())
        );
        assert_eq!(c.api_token().unwrap().as_deref(), Some("t0ken"));
        let inline = load(&d, &format!("{CLIENT}secret = \"x\"\n")).unwrap();
        assert_eq!(inline.radius.clients[0].shared_secret(), Some("x"));

        std::fs::write(d.path().join("empty"), "").unwrap();
        for (body, key, says) in [
            (
                format!("{CLIENT}secret = \"x\"\nsecret_file = \"radius.secret\"\n"),
                "radius.clients[0].secret_file",
                "not both",
            ),
            (CLIENT.to_owned(), "radius.clients[0].secret", "secret_file"),
            (
                format!("{CLIENT}secret = \"\"\n"),
                "radius.clients[0].secret",
                "empty",
            ),
            (
                format!("{CLIENT}secret = \"x\"\n{CLIENT}secret_file = \"empty\"\n"),
                "radius.clients[1].secret_file",
                "is empty",
            ),
            (
                format!("{CLIENT}secret_file = \"missing\"\n"),
                "radius.clients[0].secret_file",
                "cannot read",
            ),
            (
                "[api]\ntoken_file = \"missing\"\n".to_owned(),
                "api.token_file",
                "cannot read",
            ),
            (
                "[api]\ntls_cert = \"c.pem\"\n".to_owned(),
                "api.tls_key",
                "both or neither",
            ),
            (
                "[metrics]\ntls_key = \"k.pem\"\n".to_owned(),
                "metrics.tls_cert",
                "both or neither",
            ),
            (
                "[api]\ntls_cert = \"api-token\"\ntls_key = \"api-token\"\n".to_owned(),
                "api.tls_cert",
                "no PEM certificate",
            ),
            (
                "[metrics]\ntls_cert = \"nope.pem\"\ntls_key = \"nope.key\"\n".to_owned(),
                "metrics.tls_cert",
                "cannot read",
            ),
        ] {
            let e = load(&d, &body).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(says), "{body:?}: {e}");
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_base() {
        let base = Path::new("/etc/imei-lockd");
        assert_eq!(
            resolve(Path::new("api-token"), base),
            PathBuf::from("/etc/imei-lockd/api-token")
        );
        assert_eq!(resolve(Path::new("/run/x"), base), PathBuf::from("/run/x"));
    }

    #[test]
    fn token_warnings_for_the_shipped_and_the_missing_token() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            token_warnings(Some("change-me"), lo),
            vec![TokenWarning::Shipped]
        );
        assert_eq!(
            token_warnings(Some("change-me"), any),
            vec![TokenWarning::Shipped, TokenWarning::ShippedExposed]
        );
        assert_eq!(
            token_warnings(None, any),
            vec![TokenWarning::MissingExposed]
        );
        assert_eq!(
            token_warnings(Some("  "), any),
            vec![TokenWarning::MissingExposed]
        );
        assert!(token_warnings(None, lo).is_empty());
        assert!(token_warnings(Some("s3cret"), any).is_empty());
    }
}
