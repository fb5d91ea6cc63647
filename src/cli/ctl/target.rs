//! Which admin API `ctl` talks to, and with which token: `--admin` and
//! `--token`, else the config file given with `-c` (`admin.bind`,
//! `admin.token_file`), else `$SWITCHYARD_ADMIN` and
//! `$SWITCHYARD_ADMIN_TOKEN`, else the default address and no token.
//!
//! An explicit `-c` wins over the environment: the operator named the proxy.

use super::api::{CtlError, DEFAULT_ADMIN};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

const ADMIN_ENV: &str = "SWITCHYARD_ADMIN";
const TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";

/// The admin API's base URL and the token to send it.
#[derive(Debug, PartialEq)]
pub struct Target {
    pub admin: String,
    pub token: Option<String>,
}

/// Resolve the target from the flags, the `-c` file and the environment.
pub fn resolve(
    admin: Option<&str>,
    token: Option<&str>,
    config: Option<&Path>,
) -> Result<Target, CtlError> {
    let env = |name: &str| std::env::var(name).ok();
    let from_file = match config {
        Some(path) => Some(from_config(path)?),
        None => None,
    };
    let admin = admin
        .map(str::to_string)
        .or_else(|| from_file.as_ref().map(|t| t.admin.clone()))
        .or_else(|| env(ADMIN_ENV))
        .unwrap_or_else(|| DEFAULT_ADMIN.to_string());
    let token = match (token, &from_file) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(f)) => f.token.clone(),
        (None, None) => env(TOKEN_ENV),
    };
    Ok(Target { admin, token })
}

/// The admin address and token a switchyard config file gives the proxy.
fn from_config(path: &Path) -> Result<Target, CtlError> {
    let bad = |why: String| CtlError::Config {
        path: path.display().to_string(),
        why,
    };
    let cfg = crate::config::load(path).map_err(|e| bad(e.to_string()))?;
    let token = crate::config::token::load_token(cfg.admin.token_file.as_deref())
        .map_err(|e| bad(e.to_string()))?;
    Ok(Target {
        admin: format!("http://{}", reachable(cfg.admin.bind)),
        token,
    })
}

/// Where to connect for a bind address: a wildcard bind (`0.0.0.0`, `::`)
/// is reached on loopback.
fn reachable(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_bind_is_reached_on_loopback() {
        let r = |s: &str| reachable(s.parse().unwrap()).to_string();
        assert_eq!(r("0.0.0.0:9901"), "127.0.0.1:9901");
        assert_eq!(r("[::]:9901"), "[::1]:9901");
        assert_eq!(r("127.0.0.2:9901"), "127.0.0.2:9901");
    }

    #[test]
    fn flags_win_then_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let path = dir.path().join("switchyard.yaml");
        std::fs::write(
            &path,
            format!(
                "admin:\n  bind: \"0.0.0.0:9911\"\n  token_file: {}\npools:\n  blue:\n    endpoints: [\"127.0.0.1:1\"]\n  green:\n    endpoints: [\"127.0.0.1:2\"]\nstate_file: null\n",
                token.display()
            ),
        )
        .unwrap();
        let t = resolve(None, None, Some(&path)).unwrap();
        assert_eq!(t.admin, "http://127.0.0.1:9911");
        assert_eq!(t.token.as_deref(), Some("s3cret"));
        let t = resolve(Some("http://127.0.0.1:1"), Some("x"), Some(&path)).unwrap();
        assert_eq!(
            t,
            Target {
                admin: "http://127.0.0.1:1".into(),
                token: Some("x".into())
            }
        );
        let e = resolve(None, None, Some(&dir.path().join("missing.yaml"))).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot take the admin API from "),
            "{e}"
        );
        assert_eq!(e.exit_code(), super::super::api::exit::INVALID);
    }
}
