//! The command line (SPEC.md section 1): `run`, `check`, `demo`, and `ctl`,
//! a client of the admin API.
//!
//! Owns argument parsing and process concerns (runtime, signals, exit codes).
//! Everything it runs lives in the library.

pub mod check;
pub mod ctl;
pub mod docs;
pub mod explain;
pub mod gate;
pub mod mirror;
pub mod output;
pub mod render;

use crate::config;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version = VERSION,
    about = "A blue/green reverse proxy that moves traffic safely"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the proxy.
    Run {
        /// Config file (default: $SWITCHYARD_CONFIG, then ./switchyard.yaml).
        #[arg(
            short,
            long,
            env = "SWITCHYARD_CONFIG",
            default_value = DEFAULT_CONFIG,
            value_parser = config_path
        )]
        config: PathBuf,
    },
    /// Validate a config file: exit 0 with a summary, or 1 with every error.
    Check(check::CheckArgs),
    /// Everything on one machine: sample upstreams, the proxy, the admin API.
    Demo {
        /// The proxy's plain HTTP listener.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The HTTPS listener, with a certificate made at start-up.
        #[arg(long, default_value = "127.0.0.1:8443")]
        tls_listen: SocketAddr,
        /// The admin API.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// The demo's failure switch (POST /fail/blue|green?rate=0.2) and
        /// orders (GET /orders/blue|green; POST /orders/green/stop|start)
        #[arg(long, default_value = "127.0.0.1:9902")]
        control: SocketAddr,
        /// Background requests per second through the proxy (0: none).
        #[arg(long, default_value_t = 50)]
        traffic: u32,
    },
    /// Talk to a running proxy's admin API.
    Ctl(ctl::CtlArgs),
    /// Print a shell completion script, e.g.
    /// `switchyard completions bash > /etc/bash_completion.d/switchyard`.
    Completions {
        /// The shell to complete for.
        shell: docs::Shell,
    },
    /// Print the man page (roff), e.g. `switchyard man | man -l -`.
    Man,
}

/// The version `--version` prints: the crate's, and the commit it was
/// built from (`unknown` outside a git checkout; see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SWITCHYARD_COMMIT"),
    ")"
);

/// The config file when neither `-c` nor `$SWITCHYARD_CONFIG` names one.
pub const DEFAULT_CONFIG: &str = "./switchyard.yaml";

/// A config path from `-c` or `$SWITCHYARD_CONFIG`. Blank means the default:
/// `SWITCHYARD_CONFIG=` in a script or an env file means "not set", as
/// `SWITCHYARD_ADMIN=` does for `ctl`, not "a value is required".
fn config_path(raw: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(if raw.trim().is_empty() {
        DEFAULT_CONFIG
    } else {
        raw
    }))
}

/// Worker threads: `$SWITCHYARD_WORKERS`, else one per core the process
/// may run on (its CPU affinity). With one, a current-thread runtime: the
/// same work without the multi-thread scheduler's cross-thread handoffs.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let workers = std::env::var("SWITCHYARD_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 1 {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops");
                let _ctrl_c = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ctrl_c = tokio::signal::ctrl_c().await;
    }
}

pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Cmd::Check(args) => check::main(args),
        Cmd::Run { config: path } => {
            let cfg = match config::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    output::err(&format!("{e}\n"));
                    return ExitCode::FAILURE;
                }
            };
            crate::telemetry::logging::init(cfg.log.format, &cfg.log.level, cfg.log.access_log);
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    output::err(&format!("cannot start the runtime: {e}\n"));
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(crate::server::run(cfg, Some(path), shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // Once, plainly, as a bad config is: not also as a log line.
                    output::err(&format!("switchyard: {e}\n"));
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Demo {
            listen,
            tls_listen,
            admin,
            control,
            traffic,
        } => {
            crate::telemetry::logging::init(config::LogFormat::Text, "info", false);
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    output::err(&format!("cannot start the runtime: {e}\n"));
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(crate::demo::run(
                crate::demo::DemoOptions {
                    listen,
                    tls_listen,
                    admin,
                    control,
                    traffic,
                },
                shutdown_signal(),
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    output::err(&format!("switchyard demo: {e}\n"));
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Ctl(args) => ctl::main(args),
        Cmd::Completions { shell } => docs::completions(shell),
        Cmd::Man => docs::man(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_config_path_is_the_default() {
        for blank in ["", " ", "\n"] {
            assert_eq!(config_path(blank).unwrap(), PathBuf::from(DEFAULT_CONFIG));
        }
        assert_eq!(config_path("a.yaml").unwrap(), PathBuf::from("a.yaml"));
    }

    #[test]
    fn an_empty_config_flag_parses() {
        let cli = Cli::try_parse_from(["switchyard", "check", "-c", ""]).expect("parses");
        let Cmd::Check(args) = cli.command else {
            panic!("not check: {cli:?}");
        };
        assert_eq!(args.config, PathBuf::from(DEFAULT_CONFIG));
    }
}
