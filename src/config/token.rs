//! Reading the admin token: from `admin.token_file`, else from
//! `$SWITCHYARD_ADMIN_TOKEN`.
//!
//! Start-up (the admin API's auth) and every reload (which puts a rotated
//! token in force) read it the same way, here, below both. It must not
//! compare tokens or answer requests (that is `admin::auth`).

use std::path::Path;

/// Why the admin token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read admin token file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("admin token file {0} is empty")]
    Empty(String),
}

/// The admin token: from `token_file`, trimmed, else from the environment
/// (see [`super::validate::admin_token_from_env`]). `None`: no token.
pub fn load_token(token_file: Option<&Path>) -> Result<Option<String>, TokenError> {
    if let Some(path) = token_file {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::File {
            path: path.display().to_string(),
            source,
        })?;
        let token = text.trim().to_string();
        if token.is_empty() {
            return Err(TokenError::Empty(path.display().to_string()));
        }
        return Ok(Some(token));
    }
    Ok(super::validate::admin_token_from_env())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_trimmed_and_must_not_be_blank() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        assert!(matches!(
            load_token(Some(&path)),
            Err(TokenError::File { .. })
        ));
        std::fs::write(&path, "  s3cret\n").unwrap();
        assert_eq!(load_token(Some(&path)).unwrap().as_deref(), Some("s3cret"));
        std::fs::write(&path, " \n").unwrap();
        let err = load_token(Some(&path)).unwrap_err();
        assert!(matches!(err, TokenError::Empty(_)), "{err}");
        assert!(err.to_string().ends_with("is empty"), "{err}");
    }
}
