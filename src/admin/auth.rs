//! Bearer-token authentication for the admin API, compared in constant time.
//! The token itself is read by [`crate::config::token`].

use subtle::ConstantTimeEq;

pub const TOKEN_ENV: &str = crate::config::validate::ADMIN_TOKEN_ENV;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("admin.bind {0} is not a loopback address: a token is required (admin.token_file or ${TOKEN_ENV})")]
    TokenRequired(std::net::SocketAddr),
}

/// Does the `Authorization` header carry exactly `Bearer <token>`? The
/// scheme is case-insensitive (RFC 9110 section 11.1), the token is not.
pub fn authorized(header: Option<&[u8]>, token: &str) -> bool {
    let Some(h) = header else { return false };
    if h.len() < 7 || !h[..7].eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    h[7..].ct_eq(token.as_bytes()).into()
}

/// Query parameter names that carry a credential. The admin API takes its
/// token from the `Authorization` header only; one of these in a URL is
/// refused, since URLs are written to logs, proxies' logs and shell histories.
const CREDENTIAL_PARAMS: [&str; 7] = [
    "token",
    "access_token",
    "bearer",
    "auth",
    "authorization",
    "api_key",
    "apikey",
];

/// Whether a query string names a credential parameter (any case, also
/// percent-encoded names are decoded first).
pub fn names_a_credential(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or("");
        let name = percent_decode(name);
        CREDENTIAL_PARAMS
            .iter()
            .any(|p| name.eq_ignore_ascii_case(p.as_bytes()))
    })
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
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
        assert!(authorized(Some(b"bearer s3cret"), "s3cret"));
        assert!(!authorized(Some(b"Bearer S3CRET"), "s3cret"));
        assert!(!authorized(Some(b"Basic s3cret"), "s3cret"));
        assert!(!authorized(Some(b"Bearer"), "s3cret"));
    }

    #[test]
    fn credentials_in_a_query_are_recognised() {
        for q in [
            "token=x",
            "limit=5&access_token=x",
            "TOKEN=x",
            "%74oken=x",
            "api_key",
            "Authorization=Bearer+x",
        ] {
            assert!(names_a_credential(q), "{q}");
        }
        for q in ["limit=5", "tokens=3", "x=token", ""] {
            assert!(!names_a_credential(q), "{q}");
        }
    }
}
