//! Puts the git commit the binary is built from into `--version`
//! (`SWITCHYARD_COMMIT`). A build outside a git checkout (a source tarball,
//! a container build without `.git`) says `unknown`, unless
//! `SWITCHYARD_COMMIT` is set in the build's environment.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=SWITCHYARD_COMMIT");
    let commit = std::env::var("SWITCHYARD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    // Rebuild when HEAD moves: the file HEAD, and the branch it names.
    // Only paths that exist: cargo reruns a build script whose watched path
    // is missing on every build, and rebuilds the crate after it.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for path in watched {
        if let Some(p) = git(&["rev-parse", "--git-path", &path]) {
            if std::path::Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
    println!("cargo:rustc-env=SWITCHYARD_COMMIT={commit}");
}
