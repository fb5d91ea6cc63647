//! What a new operator meets first, tried from the outside (the binary and
//! what it prints): `check`'s report, the state a restart restores, where
//! relative paths point.

use crate::support::api;
use crate::support::process::{ProxyProcess, BIN};
use std::path::Path;
use std::process::{Command, Output};
use switchyard::config::PoolName;
use switchyard::control::document::StateDoc;
use switchyard::routing::Weights;

const POOLS: &str = "pools:\n  blue:\n    endpoints: [\"127.0.0.1:8001\"]\n  green:\n    endpoints: [\"127.0.0.1:8011\"]\n";

/// `switchyard check -c FILE ARGS`, run from `cwd`.
fn check(cwd: &Path, file: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(cwd)
        .args(["check", "-c"])
        .arg(file)
        .args(args)
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .output()
        .expect("run switchyard check")
}

fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn check_reports_every_mistake_in_one_pass_and_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    // A type error and a range error in one section, a range error in
    // another: before, the range errors showed only once the type was fixed.
    std::fs::write(
        &file,
        format!(
            "{POOLS}rollback:\n  interval: -5s\n  max_error_rate: 5\nretries:\n  attempts: 11\n"
        ),
    )
    .unwrap();
    let out = check(dir.path(), &file, &[]);
    let text = both(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let f = file.display();
    for want in [
        format!(
            "{f}:7:13: rollback.interval: invalid duration \"-5s\": durations cannot be negative"
        ),
        format!("{f}:8:19: rollback.max_error_rate: must be between 0 and 1"),
        format!("{f}:10:13: retries.attempts: 11 is more than 10"),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&want)),
            "no `{want}`:\n{text}"
        );
    }
    assert!(text.ends_with("3 errors\n"), "{text}");

    let out = check(dir.path(), &file, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["valid"], false);
    let errors = v["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 3, "{v}");
    assert_eq!(
        (errors[0]["line"].as_u64(), errors[0]["column"].as_u64()),
        (Some(7), Some(13))
    );
}

#[test]
fn check_says_a_tab_is_in_the_indentation() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tab.yaml");
    std::fs::write(&file, format!("{POOLS}retries:\n\tattempts: 2\n")).unwrap();
    let out = check(dir.path(), &file, &[]);
    let text = both(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with(&format!(
            "{}:7:1: YAML syntax error: a tab in the indentation; YAML indents with spaces only",
            file.display()
        )),
        "{text}"
    );
}

#[test]
fn check_prints_days_as_words() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("days.yaml");
    std::fs::write(
        &file,
        format!("{POOLS}rollout: {{step_interval: 1d, bake_time: 3d}}\ncutover: {{hold_writes: true, max_hold: 90s}}\nstate_file: null\n"),
    )
    .unwrap();
    let out = check(dir.path(), &file, &[]);
    let text = both(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("every 1 day, then a bake of 3 days"),
        "{text}"
    );
    assert!(
        text.contains("switch: writes held at most 1m 30s"),
        "{text}"
    );
    let out = check(dir.path(), &file, &["--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["valid"], true);
    assert!(
        v["summary"].as_array().is_some_and(|l| !l.is_empty()),
        "{v}"
    );
}

/// A state file of 70/30 under a config saying 100/0: `check` says which
/// wins, `run` logs what it restored and from where, and both find the
/// file beside the config (a relative `state_file`), not in the working
/// directory they run from.
#[tokio::test]
async fn a_restored_state_is_named_by_check_and_logged_by_run() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut doc = StateDoc::initial(Weights::with_percent(PoolName::Green, 30.0), 0);
    doc.generation = 4;
    switchyard::control::store::file::save(&state, &doc).unwrap();
    let yaml = format!(
        "listeners:\n  - bind: \"{{PROXY}}\"\nadmin:\n  bind: \"{{ADMIN}}\"\n{POOLS}traffic:\n  initial: {{blue: 100, green: 0}}\nstate_file: state.json\n"
    );
    let ports = yaml
        .replace("{PROXY}", "127.0.0.1:0")
        .replace("{ADMIN}", "127.0.0.1:0");
    std::fs::write(dir.path().join("check.yaml"), ports).unwrap();

    let out = check(elsewhere.path(), &dir.path().join("check.yaml"), &[]);
    let text = both(&out);
    assert!(out.status.success(), "{text}");
    let stored = format!(
        "stored state: {} holds blue 70, green 30 (live blue, generation 4,",
        state.display()
    );
    assert!(text.contains(&stored), "{text}");
    assert!(
        text.contains("a start restores it, NOT traffic.initial (blue 100, green 0)"),
        "{text}"
    );
    assert!(!elsewhere.path().join("state.json").exists());

    let log = dir.path().join("run.log");
    let p = ProxyProcess::start_logging_to(dir.path(), &yaml, &log).await;
    let (_, status) = api(p.admin, http::Method::GET, "/api/v1/status", None, None).await;
    assert_eq!(status["weights"]["green"], 30.0, "{status}");
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("restored the stored state"))
        .unwrap_or_else(|| panic!("nothing logged about the restored state:\n{text}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("not traffic.initial (blue 100, green 0)"),
        "{line}"
    );
    assert!(
        line.contains(&format!("from={}", state.display())),
        "{line}"
    );
    assert!(line.contains("blue 70, green 30"), "{line}");
}

/// The value of `key=` in the systemd unit.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

/// contrib/systemd/switchyard.service sends the signals the proxy acts on:
/// its ExecReload's signal reloads the config, its KillSignal drains and
/// exits 0, and TimeoutStopSec leaves the default drain time room.
#[tokio::test]
async fn the_systemd_unit_signals_are_the_ones_the_proxy_handles() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd/switchyard.service"),
    )
    .unwrap();
    let reload = unit_value(&unit, "ExecReload");
    let hup = reload
        .strip_prefix("/bin/kill -")
        .and_then(|r| r.strip_suffix(" $MAINPID"))
        .unwrap_or_else(|| panic!("ExecReload is not `/bin/kill -SIG $MAINPID`: {reload}"));
    let stop = unit_value(&unit, "KillSignal")
        .strip_prefix("SIG")
        .expect("KillSignal=SIG...");
    let timeout: u64 = unit_value(&unit, "TimeoutStopSec")
        .trim_end_matches('s')
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!(
        timeout > 30,
        "TimeoutStopSec={timeout}s leaves drain.timeout (30s) no room"
    );

    let blue = crate::support::Upstream::start("blue-1").await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listeners:\n  - bind: \"{{PROXY}}\"\nadmin:\n  bind: \"{{ADMIN}}\"\npools:\n  blue:\n    endpoints: [\"{b}\"]\n  green:\n    endpoints: [\"{b}\"]\nstate_file: null\n",
        b = blue.addr
    );
    let mut p = ProxyProcess::start(dir.path(), &yaml).await;
    let admin = p.admin;
    // The file is left as it is: the reload is the signal's, not the watcher's.
    p.signal(hup);
    crate::support::wait_for(
        std::time::Duration::from_secs(10),
        "the reload",
        || async move {
            let (_, v) = api(admin, http::Method::GET, "/api/v1/events", None, None).await;
            v["events"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|e| e["kind"] == "config_reloaded" && e["actor"] == "signal")
            })
        },
    )
    .await;
    p.signal(stop);
    let status = p.wait_exit(std::time::Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
}

/// The demo's guide, copied as printed, runs: with `switchyard` not on the
/// PATH (a `cargo run` demo) it names the binary by its absolute path, and
/// with this binary on the PATH by its name.
#[test]
fn the_demo_guide_commands_run_as_printed() {
    let admin = crate::support::process::free_addr();
    let bare = "/usr/bin:/bin";
    crate::cli::demo_guide_then(admin, "0", Some(bare), |guide| {
        let status = guide
            .lines()
            .find(|l| l.contains(" ctl --admin ") && l.trim_end().ends_with(" status"))
            .unwrap_or_else(|| panic!("no ctl status line:\n{guide}"))
            .trim();
        let bin = std::fs::canonicalize(BIN).unwrap();
        assert!(
            status.starts_with(&format!("{} ctl", bin.display())),
            "{status}"
        );
        let out = Command::new("sh")
            .args(["-c", status])
            .env("PATH", bare)
            .output()
            .unwrap();
        assert!(out.status.success(), "`{status}`: {}", both(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("blue"),
            "{}",
            both(&out)
        );
    });
    let dir = Path::new(BIN).parent().unwrap().display().to_string();
    let guide = crate::cli::demo_guide_then(
        crate::support::process::free_addr(),
        "0",
        Some(&format!("{dir}:{bare}")),
        |_| {},
    );
    assert!(
        guide
            .lines()
            .any(|l| l.trim_start().starts_with("switchyard ctl --admin")),
        "{guide}"
    );
}

/// Words that point at what a fresh clone does not have.
const OUTSIDE: [&str; 4] = ["../", "SPEC.md", "DESIGN.md", "shared/"];

/// `what` names nothing of [`OUTSIDE`].
fn points_nowhere_outside(what: &str, text: &str) {
    for word in OUTSIDE {
        let at: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains(word))
            .map(|(i, _)| i + 1)
            .collect();
        assert!(at.is_empty(), "{what} names `{word}` on lines {at:?}");
    }
}

/// The README stands on its own: no link or word pointing outside the
/// repository (a reader of a fresh clone has nothing beside it), and every
/// relative link it makes points at a file that exists. So do the files it
/// sends a reader to, and the help the binary prints (its man page holds
/// every subcommand's).
#[test]
fn the_readme_points_nowhere_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    points_nowhere_outside("README.md", &readme);
    for file in [
        "config/minimal.yaml",
        "config/switchyard.example.yaml",
        "openapi.yaml",
        "Dockerfile",
        "contrib/docker/switchyard.yaml",
        "contrib/systemd/switchyard.service",
        "contrib/systemd/switchyard.yaml",
        "scripts/fleet-demo.sh",
        "scripts/pg-demo.sh",
    ] {
        points_nowhere_outside(file, &std::fs::read_to_string(root.join(file)).unwrap());
    }
    let man = Command::new(BIN).arg("man").output().unwrap();
    assert!(man.status.success());
    points_nowhere_outside("switchyard man", &String::from_utf8_lossy(&man.stdout));
    for (i, line) in readme.lines().enumerate() {
        for target in line.split("](").skip(1).filter_map(|r| r.split(')').next()) {
            if target.contains("://") || target.starts_with('#') {
                continue;
            }
            assert!(
                root.join(target).exists(),
                "README.md line {}: `{target}` does not exist",
                i + 1
            );
        }
    }
    assert!(root.join("LICENSE").exists(), "no LICENSE");
    let license = std::fs::read_to_string(root.join("LICENSE")).unwrap();
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(cargo.contains("license = \"Apache-2.0\""));
    assert!(license.contains("Apache License") && license.contains("Version 2.0"));
}
