//! Validation of a configuration file: every mistake, each with file, line
//! and column, in one run.
//!
//! The stages, each in its own module: the YAML tree (`tree.rs`; a syntax
//! error stops everything), reading it into the typed [`Config`] with every
//! unknown key and wrong type (`typed.rs`), then the semantic rules
//! (`semantic.rs`, built on the single-value rules of `values.rs`). This
//! module only runs them in order and owns the public names.

use super::schema::Config;
use super::tree::{Issue, Tree};
use super::{semantic, typed, values};

/// One mistake in a configuration file. `line` and `column` are 1-based; 0
/// when the mistake has no position (e.g. the file could not be read).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `file:0:0:` would read as a position; a file-level mistake (the
        // file cannot be read) is said about the file alone.
        if self.line == 0 {
            return write!(f, "{}: {}", self.file, self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Status codes a health check accepts, e.g. `200-399` or `200,204,300-399`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRanges(pub Vec<(u16, u16)>);

impl StatusRanges {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let lo: u16 = lo.parse().map_err(|_| format!("bad status {part:?}"))?;
            let hi: u16 = hi.parse().map_err(|_| format!("bad status {part:?}"))?;
            if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
                return Err(format!(
                    "bad status range {part:?}: expected 100-599, low to high"
                ));
            }
            out.push((lo, hi));
        }
        Ok(StatusRanges(out))
    }

    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

/// The environment variable that may hold the admin token.
pub const ADMIN_TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";

/// The admin token in `$SWITCHYARD_ADMIN_TOKEN`, if any. `check` (through
/// [`Environment`]) and `run` (the admin API's auth) both read it here, so
/// they cannot disagree on whether there is one.
pub fn admin_token_from_env() -> Option<String> {
    admin_token_value(std::env::var(ADMIN_TOKEN_ENV).ok().as_deref())
}

/// A token as given (a file, a variable, a flag), trimmed: tokens copied
/// from files and secrets often end in a newline. Blank means no token:
/// a token of spaces would be one nobody meant to set.
pub fn admin_token_value(raw: Option<&str>) -> Option<String> {
    raw.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// What validation needs from outside the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// `$SWITCHYARD_ADMIN_TOKEN` holds a token (not blank): a non-loopback
    /// admin bind is then allowed without `token_file`.
    pub admin_token_in_env: bool,
    /// The folder of the config file: relative file paths in it are
    /// relative to this folder. None: to the working directory.
    pub base_dir: Option<std::path::PathBuf>,
}

impl Environment {
    /// Read from this process's environment.
    pub fn from_process() -> Self {
        Environment {
            admin_token_in_env: admin_token_from_env().is_some(),
            base_dir: None,
        }
    }

    /// [`Environment::from_process`] for the config file at `path`.
    pub fn for_file(path: &std::path::Path) -> Self {
        let base = path.parent().filter(|d| !d.as_os_str().is_empty());
        Environment {
            base_dir: Some(base.unwrap_or(std::path::Path::new(".")).to_path_buf()),
            ..Self::from_process()
        }
    }
}

/// Parse `text` and check it; on failure, every mistake found, in file order.
pub fn parse_and_validate(text: &str, file: &str) -> Result<Config, Vec<Diagnostic>> {
    parse_and_validate_in(text, file, &Environment::from_process())
}

/// [`parse_and_validate`] with an explicit environment (tests, callers that
/// already know it).
pub fn parse_and_validate_in(
    text: &str,
    file: &str,
    env: &Environment,
) -> Result<Config, Vec<Diagnostic>> {
    let diagnostics = |issues: Vec<Issue>| -> Vec<Diagnostic> {
        issues
            .into_iter()
            .map(|i| Diagnostic {
                file: file.to_string(),
                line: i.pos.line,
                column: i.pos.column,
                message: i.message,
            })
            .collect()
    };
    let (doc, mut issues) = Tree::parse(text).map_err(|i| diagnostics(vec![i]))?;
    let mut typed = typed::read(&doc);
    issues.extend(typed.issues);
    if let (Some(cfg), Some(base)) = (&mut typed.config, &env.base_dir) {
        super::paths::resolve(cfg, base);
    }
    if let Some(cfg) = &typed.config {
        let mut later = semantic::check(cfg, &doc, env, &typed.dirty);
        later.extend(super::fleet::check(cfg.fleet.as_ref(), &doc, &typed.dirty));
        later.extend(super::analysis::check(cfg, &doc, &typed.dirty));
        later.extend(super::mirror::check(&cfg.mirror, &doc, &typed.dirty));
        later.retain(|i| !about_unread(&i.message, &typed.unread));
        issues.extend(later);
    }
    match typed.config {
        Some(cfg) if issues.is_empty() => Ok(cfg),
        _ => {
            issues.sort_by_key(|i| i.pos);
            Err(diagnostics(issues))
        }
    }
}

/// Whether a semantic rule's `message` is about a key whose value could not
/// be read (the rule saw its default), or compares another key of the same
/// section with it (`window (30s) is shorter than interval (1s)`): said
/// already, or said against a value the operator did not write.
fn about_unread(message: &str, unread: &std::collections::BTreeSet<String>) -> bool {
    let Some((path, rest)) = message.split_once(": ") else {
        return false;
    };
    let section = |p: &str| p.split(['.', '[']).next().unwrap_or("").to_string();
    unread.iter().any(|u| {
        let under =
            path == u || path.starts_with(&format!("{u}.")) || path.starts_with(&format!("{u}["));
        let name = u.rsplit(['.', ']']).next().unwrap_or(u);
        under || (section(path) == section(u) && !name.is_empty() && rest.contains(name))
    })
}

/// Whether a blue/green split is valid: each weight in `0..=100` with at most
/// two decimals, summing to 100. The message names the first problem.
pub fn validate_weights(blue: f64, green: f64) -> Result<(), String> {
    match values::weight_problems(blue, green).into_iter().next() {
        Some((_, msg)) => Err(msg),
        None => Ok(()),
    }
}

/// Whether rollout steps are valid: not empty, each in `(0, 100]` with at
/// most two decimals, strictly increasing, ending at 100.
pub fn validate_steps(steps: &[f64]) -> Result<(), String> {
    match values::step_problems(steps).into_iter().next() {
        Some((_, msg)) => Err(msg),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_token_is_no_token() {
        assert_eq!(admin_token_value(None), None);
        for blank in ["", "  ", "\n", " \t\r\n"] {
            assert_eq!(admin_token_value(Some(blank)), None, "{blank:?}");
        }
        assert_eq!(
            admin_token_value(Some(" s3cret\n")).as_deref(),
            Some("s3cret")
        );
    }
}
