//! Bearer-token authentication for the admin API, compared in constant time.

use std::path::Path;
use subtle::ConstantTimeEq;

pub const TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read admin token file {path}: {source}")]
    TokenFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("admin token file {0} is empty")]
    EmptyToken(String),
    #[error("admin.bind {0} is not a loopback address: a token is required (admin.token_file or ${TOKEN_ENV})")]
    TokenRequired(std::net::SocketAddr),
}

/// The admin token: from `token_file`, else from the environment.
pub fn load_token(token_file: Option<&Path>) -> Result<Option<String>, AuthError> {
    if let Some(path) = token_file {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::TokenFile {
            path: path.display().to_string(),
            source,
        })?;
        let token = text.trim().to_string();
        if token.is_empty() {
            return Err(AuthError::EmptyToken(path.display().to_string()));
        }
        return Ok(Some(token));
    }
    Ok(std::env::var(TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

/// Does the `Authorization` header carry exactly `Bearer <token>`?
pub fn authorized(header: Option<&[u8]>, token: &str) -> bool {
    let Some(h) = header else { return false };
    let Some(given) = h.strip_prefix(b"Bearer ") else {
        return false;
    };
    given.ct_eq(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_must_match_exactly() {
        assert!(authorized(Some(b"Bearer s3cret"), "s3cret"));
        assert!(!authorized(Some(b"Bearer s3cret2"), "s3cret"));
        assert!(!authorized(Some(b"Bearer s3cre"), "s3cret"));
        assert!(!authorized(Some(b"s3cret"), "s3cret"));
        assert!(!authorized(None, "s3cret"));
    }
}
