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
    let mut filter = EnvFilter::try_new(level)?;
    // The file watcher's library says at `info` what it calls "not a real
    // error" (`unable to remove watch descriptor`, when a watched directory
    // went away first): noise an operator reads as a fault. Its warnings
    // and errors still pass; a level that names `notify` itself wins.
    if !level.contains("notify") {
        filter = filter.add_directive(QUIET_WATCHER.parse()?);
    }
    Ok(if access_log {
        filter.add_directive(ACCESS.parse()?)
    } else {
        filter
    })
}

const ACCESS: &str = "switchyard::access=info";
const QUIET_WATCHER: &str = "notify=warn";

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

    /// What passes `filter`, of an info and a warning from the file
    /// watcher's library and an info of switchyard's own.
    fn passed(filter: EnvFilter) -> Vec<String> {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::{Context, Layer};
        struct Capture(Arc<Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> Layer<S> for Capture {
            fn on_event(&self, ev: &tracing::Event<'_>, _: Context<'_, S>) {
                let m = ev.metadata();
                if let Ok(mut seen) = self.0.lock() {
                    seen.push(format!("{} {}", m.level(), m.target()));
                }
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = Registry::default().with(filter).with(Capture(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "notify::inotify", "unable to remove watch descriptor");
            tracing::warn!(target: "notify::inotify", "a real warning");
            tracing::info!(target: "switchyard::server", "switchyard stopped");
        });
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        seen
    }

    #[test]
    fn the_watchers_info_lines_are_quiet_and_its_warnings_are_not() {
        assert_eq!(
            passed(config_filter("info", false).unwrap()),
            ["WARN notify::inotify", "INFO switchyard::server"]
        );
        // Asked for by name, it is shown.
        assert_eq!(
            passed(config_filter("info,notify=info", false).unwrap()).len(),
            3
        );
    }
}
