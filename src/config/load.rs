//! Loading [`Config`]: the file merged with the `IMEI_LOCKD__SECTION__KEY` environment
//! overrides by the `config` crate, then [`Config::validate`], then the files the configuration
//! names (`cluster.etcd.password_file`, the secret files, the TLS files: [`super::secrets`]);
//! and what the daemon derives from a loaded configuration (the API token, the engine policy).
//!
//! This module does not check values itself (that is [`Config::validate`]) nor define keys
//! ([`super::sections`], [`super::cluster`]).

use std::path::Path;

use super::{secrets, Config, ConfigError};

impl Config {
    /// Reads `path`, applies `IMEI_LOCKD__*` environment overrides, validates, reads
    /// `cluster.etcd.password_file`, the secret files and checks the TLS files
    /// ([`secrets`]).
    ///
    /// # Errors
    /// [`ConfigError`] naming the key (or the file) at fault.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(ConfigError::NotFound(path.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NotFound(path.to_path_buf()))
            }
            Err(source) => {
                return Err(ConfigError::Unreadable {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        // Opened once here so that a permission problem names the file (the config crate's
        // error would not).
        if let Err(source) = std::fs::File::open(path) {
            return Err(ConfigError::Unreadable {
                path: path.to_path_buf(),
                source,
            });
        }
        let built = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("IMEI_LOCKD")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("diameter.listen")
                    .with_list_parse_key("cluster.etcd.endpoints"),
            )
            .build()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        let mut cfg: Self = built
            .try_deserialize()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        cfg.validate()?;
        cfg.cluster.etcd.read_password_file()?;
        cfg.read_files(path)?;
        Ok(cfg)
    }

    /// The API token, from `api.token` or `api.token_file` (read by [`Config::load`]; read
    /// here if it was not).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `api.token_file` when the file cannot be read.
    pub fn api_token(&self) -> Result<Option<String>, ConfigError> {
        if let Some(t) = &self.api.token {
            return Ok(Some(t.clone()));
        }
        if let Some(t) = &self.api.token_from_file {
            return Ok(Some(t.clone()));
        }
        match &self.api.token_file {
            Some(path) => secrets::read_secret("api.token_file", path).map(Some),
            None => Ok(None),
        }
    }

    /// The engine policies this configuration asks for.
    pub fn engine_policy(&self) -> crate::engine::EnginePolicy {
        crate::engine::EnginePolicy {
            unknown_sim: self.policy.unknown_sim,
            missing_imei_radius: self.radius.missing_imei,
            missing_imei_gx: self.diameter.gx.missing_imei,
            missing_imei_s6b: self.diameter.s6b.missing_imei,
            unknown_sim_eir: self.eir.unknown_sim.as_unknown_sim_policy(),
            alert_events: self
                .alerts
                .webhooks
                .iter()
                .flat_map(|w| w.events.iter().filter_map(|e| e.parse().ok()))
                .collect(),
        }
    }
}
