//! Logging set-up with `tracing`: text or JSON, level from the config unless
//! `RUST_LOG` says otherwise. The level follows config reloads
//! ([`set_level`]); the format is chosen once, at start.

use crate::config::LogFormat;
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The installed filter, when the config (not `RUST_LOG`) sets it.
static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Install the global subscriber once; later calls are ignored.
pub fn init(format: LogFormat, level: &str) {
    let (filter, from_config) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, false),
        Err(_) => (
            EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")),
            true,
        ),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Json => registry.with(fmt.json()).try_init(),
        LogFormat::Text => registry.with(fmt).try_init(),
    };
    match installed {
        Ok(()) if from_config => {
            let _ = LEVEL.set(handle);
        }
        Ok(()) => {}
        Err(_) => tracing::debug!("a tracing subscriber was already installed"),
    }
}

/// Apply a reloaded config's `log.level` (already validated). Nothing
/// changes when `RUST_LOG` set the filter at start: the environment wins,
/// as it did then.
pub fn set_level(level: &str) -> Result<(), String> {
    let Some(handle) = LEVEL.get() else {
        return Ok(());
    };
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    handle.reload(filter).map_err(|e| e.to_string())
}
