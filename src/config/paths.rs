//! Relative file paths in a config file are relative to the file's folder,
//! not to the directory the proxy happens to be started from: `state_file:
//! ./switchyard-state.json` (the default) beside `/etc/app/switchyard.yaml`
//! is `/etc/app/switchyard-state.json` whether the proxy is started by hand
//! in a home directory or by systemd in `/`.

use super::schema::Config;
use std::path::{Path, PathBuf};

/// Make every relative file path of `cfg` relative to `base`, the folder of
/// the config file, and absolute, so logs and status name the real file.
pub(super) fn resolve(cfg: &mut Config, base: &Path) {
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = absolute(&base.join(&*p));
        }
    };
    for l in &mut cfg.listeners {
        if let Some(tls) = &mut l.tls {
            fix(&mut tls.cert);
            fix(&mut tls.key);
        }
    }
    cfg.admin.token_file.as_mut().map(fix);
    for pool in [&mut cfg.pools.blue, &mut cfg.pools.green] {
        if let Some(ca) = pool.tls.as_mut().and_then(|t| t.ca.as_mut()) {
            fix(ca);
        }
    }
    let gate = cfg.cutover.gate.as_mut().and_then(|g| g.postgres.as_mut());
    if let Some(file) = gate.and_then(|pg| pg.password_file.as_mut()) {
        fix(file);
    }
    cfg.state_file.as_mut().map(fix);
    cfg.audit_log.as_mut().map(fix);
    for n in &mut cfg.notify {
        n.secret_file.as_mut().map(fix);
    }
    if let Some(etcd) = cfg.fleet.as_mut().map(|f| &mut f.etcd) {
        if let Some(tls) = &mut etcd.tls {
            fix(&mut tls.ca);
            tls.cert.as_mut().map(fix);
            tls.key.as_mut().map(fix);
        }
        if let Some(auth) = &mut etcd.auth {
            fix(&mut auth.password_file);
        }
    }
}

/// `p` made absolute without touching the disk (`.` components dropped,
/// symlinks kept); `p` as it is when the working directory is unknown.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_config_file_and_absolute_ones_stay() {
        let text = "pools: {blue: {endpoints: [\"127.0.0.1:1\"]}, green: {endpoints: [\"127.0.0.1:2\"]}}\n";
        let mut cfg = crate::config::parse(text, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        cfg.admin.token_file = Some(PathBuf::from("/etc/token"));
        cfg.audit_log = Some(PathBuf::from("logs/audit.jsonl"));
        resolve(&mut cfg, Path::new("/srv/app"));
        assert_eq!(
            cfg.state_file.as_deref(),
            Some(Path::new("/srv/app/switchyard-state.json"))
        );
        assert_eq!(
            cfg.audit_log.as_deref(),
            Some(Path::new("/srv/app/logs/audit.jsonl"))
        );
        assert_eq!(
            cfg.admin.token_file.as_deref(),
            Some(Path::new("/etc/token"))
        );
    }
}
