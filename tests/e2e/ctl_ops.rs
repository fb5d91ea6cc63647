//! `switchyard ctl` for operators and CI pipelines, from the outside: the
//! documented exit codes, `-c FILE`, `--wait`, the completions, the man
//! page and `--version`.

use crate::support::process::{free_addr, BIN};
use crate::support::*;
use std::process::Command;

/// `switchyard ARGS`: exit code, stdout, stderr; no ctl variables inherited.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(BIN)
        .args(args)
        .env_remove("SWITCHYARD_ADMIN")
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .env("NO_COLOR", "1")
        .output()
        .expect("run switchyard");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A proxy whose config file names its admin address and a token file,
/// as `ctl -c` reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_takes_the_admin_api_from_the_config_file_and_exits_with_documented_codes() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let admin = free_addr();
    let path = dir.path().join("switchyard.yaml");
    let yaml = config_yaml(&[blue.addr], &[green.addr], "").replacen(
        "admin:\n  bind: \"127.0.0.1:0\"\n",
        &format!(
            "admin:\n  bind: \"{admin}\"\n  token_file: \"{}\"\n",
            token.display()
        ),
        1,
    );
    std::fs::write(&path, yaml).unwrap();
    let s = start_proxy_from_file(&path).await;
    let c = path.to_str().unwrap();

    let (code, out, err) = blocking(|| run(&["ctl", "-c", c, "status"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("phase stable "), "{out}");
    // A flag still wins over the file: a wrong token is 4, unauthorized.
    let (code, _, err) = blocking(|| run(&["ctl", "-c", c, "--token", "wrong", "status"]));
    assert_eq!(code, Some(4), "{err}");
    // No rollout to pause: refused by the phase, 3.
    let (code, _, err) = blocking(|| run(&["ctl", "-c", c, "rollout", "pause"]));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("409"), "{err}");
    // Invalid input, from the API (422) or from the command line: 2.
    let (code, _, err) = blocking(|| run(&["ctl", "-c", c, "weights", "50", "49"]));
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = blocking(|| run(&["ctl", "-c", c, "switch", "purple"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("possible values: blue, green"), "{err}");
    let missing = dir.path().join("missing.yaml");
    let (code, _, err) = blocking(|| run(&["ctl", "-c", missing.to_str().unwrap(), "status"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot take the admin API from"), "{err}");
    s.shutdown().await;
    // Nothing there any more: 5, unreachable.
    let (code, _, err) = blocking(|| run(&["ctl", "-c", c, "status"]));
    assert_eq!(code, Some(5), "{err}");
}

#[test]
fn completions_man_page_and_version_come_from_the_binary() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, Some(0), "{shell}: {err}");
        assert!(
            out.contains("switchyard") && out.contains("rollout"),
            "{shell}"
        );
    }
    let (code, _, _) = run(&["completions", "tcsh"]);
    assert_eq!(code, Some(2));
    let (code, out, _) = run(&["man"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains(".TH switchyard 1"),
        "{}",
        &out[..out.len().min(300)]
    );
    assert!(
        out.contains("Exit codes"),
        "the man page lacks ctl's exit codes"
    );
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
    // `switchyard 0.1.0 (commit 0123456789ab)`, or `unknown` without git.
    let commit = out
        .trim()
        .strip_prefix(&format!(
            "switchyard {} (commit ",
            env!("CARGO_PKG_VERSION")
        ))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{out}"
    );
}

/// `--wait` blocks until the bake is over (exit 0), and exits 6 when the
/// rollout is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_start_wait_ends_with_the_bake_or_exits_6_on_rollback() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let extra = "rollout:\n  bake_time: 1s\noutlier_detection:\n  consecutive_failures: 100000\nrollback:\n  interval: 100ms\n  window: 5s\n  min_requests: 10\n  consecutive_breaches: 1\n  grace: 0s\n";
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], extra)).await;
    wait_healthy(s.admin_addr, "green").await;
    let admin = format!("http://{}", s.admin_addr);
    let (code, out, err) = blocking(|| {
        run(&[
            "ctl",
            "--admin",
            &admin,
            "rollout",
            "start",
            "green",
            "--steps",
            "50,100",
            "--step-interval",
            "300ms",
            "--wait",
            "--timeout",
            "30s",
        ])
    });
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("rollout_step"), "progress is printed: {out}");
    assert!(
        out.trim_end()
            .lines()
            .last()
            .unwrap()
            .contains("bake_completed"),
        "{out}"
    );
    let st = status(&s).await;
    assert_eq!(
        (st["phase"].as_str(), st["live"].as_str()),
        (Some("stable"), Some("green")),
        "{st}"
    );

    // Back to blue the same way, while blue fails every request: rolled back.
    // The rollout to blue needs blue healthy (cutover.min_healthy): after
    // the bake its health may read "not checked yet" for a moment.
    wait_healthy(s.admin_addr, "blue").await;
    blue.set_failure_rate(1.0);
    let load = Load::start(proxy_url(&s, "/"), 2);
    let (code, out, err) = blocking(|| {
        run(&[
            "ctl",
            "--admin",
            &admin,
            "rollout",
            "start",
            "blue",
            "--steps",
            "50,100",
            "--step-interval",
            "1h",
            "--wait",
            "--timeout",
            "30s",
        ])
    });
    load.finish().await;
    assert_eq!(code, Some(6), "{out}{err}");
    assert!(err.contains("rolled back: error_rate"), "{err}");
    // The outcome is still there for a later `rollout status --wait`.
    let (code, _, _) = blocking(|| run(&["ctl", "--admin", &admin, "rollout", "status", "--wait"]));
    assert_eq!(code, Some(6));
    s.shutdown().await;
}

/// `switch --wait` the same way: exit 0 once the bake completes; exit 6
/// when the new pool fails during its bake and is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_wait_ends_with_the_bake_or_exits_6_on_rollback() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let rules = "outlier_detection:\n  consecutive_failures: 100000\nrollback:\n  interval: 100ms\n  window: 5s\n  min_requests: 10\n  consecutive_breaches: 1\n  grace: 0s\n";
    for (bake, fail) in [("1s", false), ("1h", true)] {
        let extra = format!("rollout:\n  bake_time: {bake}\n{rules}");
        let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], &extra)).await;
        wait_healthy(s.admin_addr, "green").await;
        let admin = format!("http://{}", s.admin_addr);
        green.set_failure_rate(if fail { 1.0 } else { 0.0 });
        let load = fail.then(|| Load::start(proxy_url(&s, "/"), 2));
        let (code, out, err) = blocking(|| {
            run(&[
                "ctl",
                "--admin",
                &admin,
                "switch",
                "green",
                "--wait",
                "--timeout",
                "30s",
            ])
        });
        if let Some(load) = load {
            load.finish().await;
        }
        let st = status(&s).await;
        if fail {
            assert_eq!(code, Some(6), "{out}{err}");
            assert!(err.contains("rolled back"), "{err}");
            assert_eq!(st["live"].as_str(), Some("blue"), "{st}");
        } else {
            assert_eq!(code, Some(0), "{out}{err}");
            let last = out.trim_end().lines().last().unwrap_or_default();
            assert!(last.contains("bake_completed"), "{out}");
            assert_eq!(
                (st["phase"].as_str(), st["live"].as_str()),
                (Some("stable"), Some("green")),
                "{st}"
            );
        }
        s.shutdown().await;
    }
}
