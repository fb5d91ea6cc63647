//! Configuration: the YAML schema, its validation, and loading from disk.
//!
//! Owns turning a file into a [`Config`] that is known to be valid, or into a
//! list of every mistake with file, line and column. It must not touch
//! runtime state: applying a config is the controller's job.
//!
//! - `schema`: the serde types and defaults of SPEC.md section 2.
//! - `validate`: the entry point; runs the stages below in order.
//! - `tree`: the YAML text as a tree with line and column of every node.
//! - `typed`: reads that tree into [`Config`], finding every unknown key,
//!   missing key and wrong type.
//! - `semantic`: ranges, cross-field rules, addresses, files on disk.
//! - `values`: what one value may be, shared with the admin API.
//! - `paths`: relative file paths follow the config file's folder.
//! - `analysis`: the `analysis` and `notify` sections and the judge's keys.
//! - `fswatch`: which file system events concern a watched file.
//! - `tls_files`: reading and checking certificates, keys and CA bundles,
//!   for validation and for the proxy and upstream clients alike.
//! - `token`: reading the admin token, for validation and the admin API.
//! - `fleet`, `mirror`: the sections of SPEC.md sections 9 and 12, each with its rules.
//! - `gate`: `cutover.gate`, a URL or PostgreSQL replication caught up.

pub mod analysis;
pub mod cidr;
pub mod fleet;
pub mod fswatch;
pub mod gate;
pub mod mirror;
mod paths;
pub mod schema;
mod semantic;
pub mod tls_files;
pub mod token;
mod tree;
mod typed;
pub mod validate;
pub mod values;

pub use cidr::Cidr;
pub use gate::{GateConfig, PostgresGate};
pub use schema::*;
pub use typed::parse_duration;
pub use validate::{validate_steps, validate_weights, Diagnostic, Environment, StatusRanges};

use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// Every diagnostic, one per mistake (a read error yields one without a position).
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            ConfigError::Invalid(d) => d.clone(),
            ConfigError::Read { path, source } => vec![Diagnostic {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                message: format!("cannot read file: {source}"),
            }],
        }
    }
}

fn render(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Read, parse and validate the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    parse_file(&read(path)?, path)
}

/// Parse and validate `text`, read from the file at `path`: diagnostics
/// name it, and relative file paths in it are relative to its folder.
pub fn parse_file(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    validate::parse_and_validate_in(text, &file, &Environment::for_file(path))
        .map_err(ConfigError::Invalid)
}

/// The text of the file at `path`, for a caller that keeps it (a reload
/// remembers what it read) before [`parse`].
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parse and validate YAML text; `file` names it in diagnostics.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    validate::parse_and_validate(text, file).map_err(ConfigError::Invalid)
}

#[cfg(test)]
mod tests;
