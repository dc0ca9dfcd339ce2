//! Logging with `tracing`: human text by default, JSON by `[log] format = "json"`, on stderr.
//!
//! - [`journal`]: when stderr is the systemd journal (`JOURNAL_STREAM`), each line starts with
//!   its syslog priority (`<4>` for WARN, ...) so journald files it at that priority.
//! - [`limit`]: one line per key (source, reason) per interval with a suppressed count, in
//!   bounded memory, for the WARN lines a hostile network could otherwise flood.
//!
//! This module installs the subscriber and nothing else: each subsystem writes its own lines.

pub mod journal;
pub mod limit;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `[log] level`.
///
/// # Errors
/// When the level is not a valid filter (already checked by config validation).
pub fn init(cfg: &LogConfig) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v),
        _ => EnvFilter::try_new(&cfg.level),
    }
    .map_err(|e| e.to_string())?;
    let to_journal = journal::stderr_is_journal();
    if to_journal {
        install(filter, cfg.format, false, journal::JournalStderr)?;
        tracing::debug!(
            "stderr is the systemd journal (JOURNAL_STREAM): each line carries its syslog priority"
        );
        Ok(())
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        install(filter, cfg.format, ansi, std::io::stderr)
    }
}

fn install<W>(filter: EnvFilter, format: LogFormat, ansi: bool, writer: W) -> Result<(), String>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    let res = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    res.map_err(|e| e.to_string())
}
