//! Loading [`Config`]: the file merged with the `IMEI_LOCKD__SECTION__KEY` environment
//! overrides by the `config` crate, then [`Config::validate`], then the files the configuration
//! names (`cluster.etcd.password_file`, the secret files, the TLS files: [`super::secrets`]).
//!
//! This module does not check values itself (that is [`Config::validate`]) nor define keys
//! ([`super::sections`], [`super::cluster`]).

use std::path::Path;

use super::{Config, ConfigError};

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
}
