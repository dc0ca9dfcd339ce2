//! `[eir]`, `[eir.s13]` and `[eir.n5g]`: the Equipment Identity Register front-ends and the
//! answers the EIR gives where the lock cannot judge (see [`crate::eir`]).
//!
//! This module parses and checks the keys and resolves `eir.n5g.token_file`; it does not open
//! a listener or answer anything.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::secrets::{check_tls, check_tls_pair, read_secret, resolve, tls_files};
use super::{invalid, parse_addr, ConfigError};
use crate::eir::{EirPolicy, PolicyAnswer};

/// `[eir]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EirConfig {
    /// A SIM this daemon does not manage (roamers, other offers).
    pub unknown_sim: PolicyAnswer,
    /// A check without the IMSI (S13 without User-Name, N5g-eir without `supi`).
    pub missing_imsi: PolicyAnswer,
    /// An IMEI that is not one (bad digits, bad length).
    pub malformed_imei: PolicyAnswer,
    pub s13: S13Config,
    pub n5g: N5gConfig,
}

impl Default for EirConfig {
    fn default() -> Self {
        Self {
            unknown_sim: PolicyAnswer::Whitelisted,
            missing_imsi: PolicyAnswer::Whitelisted,
            malformed_imei: PolicyAnswer::Greylisted,
            s13: S13Config::default(),
            n5g: N5gConfig::default(),
        }
    }
}

/// `[eir.s13]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S13Config {
    /// Serve S13 (application 16777252) on the Diameter listeners and advertise it in CEA.
    pub enabled: bool,
}

/// `[eir.n5g]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct N5gConfig {
    /// `ADDR:PORT` of the HTTP/2 listener; absent: N5g-eir is not served.
    pub listen: Option<String>,
    /// Bearer token the AMF must send; absent (with `token_file`): no token is asked for.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain: with `tls_key`, N5g-eir is served over TLS only.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// A connection that completes no request within this many seconds (after it opened, or
    /// after its last answer) is closed: silent, slow and idle clients alike.
    pub idle_timeout_s: u64,
    /// The token read from `token_file` when the configuration was loaded.
    #[serde(skip)]
    pub token_from_file: Option<String>,
}

impl Default for N5gConfig {
    fn default() -> Self {
        Self {
            listen: None,
            token: None,
            token_file: None,
            tls_cert: None,
            tls_key: None,
            idle_timeout_s: 30,
            token_from_file: None,
        }
    }
}

impl N5gConfig {
    /// The listen address, when N5g-eir is served.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `eir.n5g.listen` when it is no `ADDR:PORT`.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.listen
            .as_deref()
            .map(|l| parse_addr("eir.n5g.listen", l))
            .transpose()
    }

    /// The bearer token, from `token` or `token_file`.
    pub fn bearer_token(&self) -> Option<&str> {
        self.token.as_deref().or(self.token_from_file.as_deref())
    }
}

impl EirConfig {
    /// The answers of the EIR where the lock cannot judge.
    pub fn policy(&self) -> EirPolicy {
        EirPolicy {
            unknown_sim: self.unknown_sim,
            missing_imsi: self.missing_imsi,
            malformed_imei: self.malformed_imei,
        }
    }

    /// Checks what serde's types cannot, naming the key.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.n5g.listen_addr()?;
        if !(1..=3600).contains(&self.n5g.idle_timeout_s) {
            return Err(invalid(
                "eir.n5g.idle_timeout_s",
                "must be 1 to 3600 seconds",
            ));
        }
        match (&self.n5g.token, &self.n5g.token_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "eir.n5g.token",
                    "set eir.n5g.token or eir.n5g.token_file, not both",
                ))
            }
            (Some(t), None) if t.is_empty() => {
                return Err(invalid("eir.n5g.token", "must not be empty"))
            }
            _ => {}
        }
        if self.n5g.listen.is_none() {
            for (key, set) in [
                ("eir.n5g.token", self.n5g.token.is_some()),
                ("eir.n5g.token_file", self.n5g.token_file.is_some()),
                ("eir.n5g.tls_cert", self.n5g.tls_cert.is_some()),
                ("eir.n5g.tls_key", self.n5g.tls_key.is_some()),
            ] {
                if set {
                    return Err(invalid(
                        key,
                        "has no effect without eir.n5g.listen (N5g-eir is not served)",
                    ));
                }
            }
        }
        check_tls_pair("eir.n5g", &self.n5g.tls_cert, &self.n5g.tls_key)
    }

    /// Resolves `token_file`, `tls_cert` and `tls_key` against `base` (the credentials or
    /// configuration directory), reads the token and checks the TLS files.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key whose file cannot be read or used.
    pub(super) fn read_files(&mut self, base: &Path) -> Result<(), ConfigError> {
        let n5g = &mut self.n5g;
        if let Some(p) = &n5g.token_file {
            let p = resolve(p, base);
            n5g.token_from_file = Some(read_secret("eir.n5g.token_file", &p)?);
            n5g.token_file = Some(p);
        }
        for p in [&mut n5g.tls_cert, &mut n5g.tls_key].into_iter().flatten() {
            *p = resolve(p, base);
        }
        if let Some(files) = tls_files(&n5g.tls_cert, &n5g.tls_key) {
            check_tls("eir.n5g", &files)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<EirConfig, String> {
        let c: EirConfig = config::Config::builder()
            .add_source(config::File::from_str(body, config::FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn defaults_are_an_operators_eir() {
        let c = parse("").unwrap();
        assert_eq!(c.unknown_sim, PolicyAnswer::Whitelisted);
        assert_eq!(c.missing_imsi, PolicyAnswer::Whitelisted);
        assert_eq!(c.malformed_imei, PolicyAnswer::Greylisted);
        assert!(!c.s13.enabled);
        assert!(c.n5g.listen_addr().unwrap().is_none());
    }

    #[test]
    fn every_answer_parses() {
        for (text, want) in [
            ("whitelisted", PolicyAnswer::Whitelisted),
            ("greylisted", PolicyAnswer::Greylisted),
            ("blacklisted", PolicyAnswer::Blacklisted),
            ("unknown", PolicyAnswer::Unknown),
        ] {
            let c = parse(&format!("unknown_sim = \"{text}\"")).unwrap();
            assert_eq!(c.unknown_sim, want);
        }
        let e = parse("missing_imsi = \"maybe\"").unwrap_err();
        assert!(e.contains("maybe"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (body, key) in [
            ("[n5g]\nlisten = \"nowhere\"", "eir.n5g.listen"),
            (
                "[n5g]\nlisten = \"127.0.0.1:8442\"\ntoken = \"a\"\ntoken_file = \"/t\"",
                "eir.n5g.token",
            ),
            (
                "[n5g]\nlisten = \"127.0.0.1:8442\"\ntoken = \"\"",
                "eir.n5g.token",
            ),
            ("[n5g]\ntoken = \"a\"", "eir.n5g.token"),
            ("[n5g]\nidle_timeout_s = 0", "eir.n5g.idle_timeout_s"),
            (
                "[n5g]\nlisten = \"127.0.0.1:8442\"\ntls_cert = \"/c.pem\"",
                "eir.n5g",
            ),
        ] {
            let e = parse(body).unwrap_err();
            assert!(e.contains(key), "{body}: {e}");
        }
    }
}
