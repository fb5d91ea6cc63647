//! Logging set-up with `tracing`: text or JSON, level from the config unless
//! `RUST_LOG` says otherwise. The level and the access log follow config
//! reloads ([`set_level`]); the format is chosen once, at start.
//!
//! The access log (`log.access_log`) is target `switchyard::access` at
//! `info`: it is let through whatever `log.level` says, so `level: warn`
//! with `access_log: true` gives warnings and the access log.

use crate::config::LogFormat;
use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The installed filter, when the config (not `RUST_LOG`) sets it.
static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Why a config's logging settings could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("log.level: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("the log filter could not be swapped: {0}")]
    Reload(#[from] reload::Error),
}

/// The filter for a config's `log.level` and `log.access_log`.
fn config_filter(level: &str, access_log: bool) -> Result<EnvFilter, LoggingError> {
    let filter = EnvFilter::try_new(level)?;
    Ok(if access_log {
        filter.add_directive(ACCESS.parse()?)
    } else {
        filter
    })
}

const ACCESS: &str = "switchyard::access=info";

/// Install the global subscriber once; later calls are ignored.
pub fn init(format: LogFormat, level: &str, access_log: bool) {
    let (filter, from_config) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, false),
        Err(_) => (
            config_filter(level, access_log).unwrap_or_else(|_| EnvFilter::new("info")),
            true,
        ),
    };
    let (filter, handle) = reload::Layer::new(filter);
    // Colours only for a person at a terminal: in a file or a log
    // collector the escape codes are noise that breaks grep.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Json => registry.with(fmt.json()).try_init(),
        LogFormat::Text => registry.with(fmt).try_init(),
    };
    match installed {
        Ok(()) if from_config => {
            // Set once: only the subscriber installed first gets here.
            if LEVEL.set(handle).is_err() {
                tracing::debug!("the log filter handle was already kept");
            }
        }
        Ok(()) => {}
        Err(_) => tracing::debug!("a tracing subscriber was already installed"),
    }
}

/// Apply a reloaded config's `log.level` and `log.access_log` (already
/// validated). Nothing changes when `RUST_LOG` set the filter at start:
/// the environment wins, as it did then.
pub fn set_level(level: &str, access_log: bool) -> Result<(), LoggingError> {
    let Some(handle) = LEVEL.get() else {
        return Ok(());
    };
    Ok(handle.reload(config_filter(level, access_log)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_log_passes_whatever_the_level() {
        let f = config_filter("warn", true).unwrap().to_string();
        assert!(f.contains("switchyard::access=info"), "{f}");
        assert!(f.contains("warn"), "{f}");
        let f = config_filter("warn", false).unwrap().to_string();
        assert!(!f.contains("access"), "{f}");
    }
}
