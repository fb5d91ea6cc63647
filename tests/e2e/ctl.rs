//! `switchyard ctl` as an operator and a script use it: what it prints,
//! what it refuses, and its exit status.

use crate::support::process::free_addr;
use crate::support::process::BIN;
use crate::support::*;
use std::process::{Command, Output, Stdio};

/// What a ctl run gave: exit code, stdout, stderr.
struct Ran {
    code: Option<i32>,
    out: String,
    err: String,
}

impl From<Output> for Ran {
    fn from(o: Output) -> Ran {
        Ran {
            code: o.status.code(),
            out: String::from_utf8_lossy(&o.stdout).into_owned(),
            err: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// `switchyard ctl ARGS` with none of the ctl variables inherited from the
/// test's environment. Blocking: call it from `block_in_place`, or from a
/// test whose servers run on another thread.
fn ctl(args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut c = Command::new(BIN);
    c.arg("ctl")
        .args(args)
        .env_remove("SWITCHYARD_ADMIN")
        .env_remove("SWITCHYARD_ADMIN_TOKEN");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run switchyard ctl").into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_refuses_an_answer_that_is_not_the_admin_api() {
    // The slip this guards against: --admin pointing at the application (or
    // the proxy in front of it), which answers 200 text to anything.
    let app = Upstream::start("blue-1").await;
    let admin = format!("http://{}", app.addr);
    for args in [
        vec!["--admin", &admin, "weights", "50", "50"],
        vec!["--admin", &admin, "status"],
        vec!["--admin", &admin, "--json", "status"],
    ] {
        let r = tokio::task::block_in_place(|| ctl(&args, &[]));
        assert_eq!(r.code, Some(1), "{args:?} succeeded: {}{}", r.out, r.err);
        assert!(
            r.err
                .contains(&format!("not a switchyard admin API at {admin}")),
            "{args:?}: {}",
            r.err
        );
        assert!(r.out.is_empty(), "{args:?} printed {}", r.out);
    }
}

/// A reload that changed a key only a restart applies (here `log.format`)
/// says so in `ctl status`, not only in the JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_status_says_when_a_restart_is_needed() {
    let blue = Upstream::start("blue-1").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(&path, config_yaml(&[blue.addr], &[blue.addr], "")).unwrap();
    let s = start_proxy_from_file(&path).await;
    let admin = format!("http://{}", s.admin_addr);
    let r = tokio::task::block_in_place(|| ctl(&["--admin", &admin, "status"], &[]));
    assert_eq!(r.code, Some(0), "{}", r.err);
    assert!(!r.out.contains("RESTART NEEDED"), "{}", r.out);
    std::fs::write(
        &path,
        config_yaml(&[blue.addr], &[blue.addr], "log:\n  format: json\n"),
    )
    .unwrap();
    // The file watcher reloads it.
    wait_for(
        std::time::Duration::from_secs(10),
        "the reload to note a restart",
        || async { status(&s).await["config"]["restart_needed"].is_string() },
    )
    .await;
    let r = tokio::task::block_in_place(|| ctl(&["--admin", &admin, "status"], &[]));
    assert_eq!(r.code, Some(0), "{}", r.err);
    assert!(
        r.out
            .contains("RESTART NEEDED: changed but applied only at restart: log.format"),
        "{}",
        r.out
    );
    s.shutdown().await;
}

/// A token copied with its newline (`$(cat file)`, a Kubernetes Secret)
/// works, as the server trims its own; one a header cannot carry is named
/// as a bad token, not a bad URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_trims_the_token_and_names_a_bad_one() {
    const TOKEN: &str = "s3cret-token";
    let blue = Upstream::start("blue-1").await;
    let (s, _dir) = crate::support::admin::start_with_token_file(&blue, TOKEN).await;
    let admin = format!("http://{}", s.admin_addr);
    let with_newline = format!("{TOKEN}\n");
    let r = tokio::task::block_in_place(|| {
        ctl(
            &["--admin", &admin, "status"],
            &[("SWITCHYARD_ADMIN_TOKEN", &with_newline)],
        )
    });
    assert_eq!(r.code, Some(0), "token from the environment: {}", r.err);
    let r = tokio::task::block_in_place(|| {
        ctl(
            &["--admin", &admin, "--token", &with_newline, "status"],
            &[],
        )
    });
    assert_eq!(r.code, Some(0), "token from the flag: {}", r.err);
    let r = tokio::task::block_in_place(|| {
        ctl(
            &["--admin", &admin, "--token", "s3cret\u{1}token", "status"],
            &[],
        )
    });
    assert_eq!(r.code, Some(2), "invalid input");
    assert!(
        r.err.contains("bad admin token") && !r.err.contains("URL"),
        "{}",
        r.err
    );
    s.shutdown().await;
}

/// "is switchyard running?" only when nothing listens; a URL without
/// `http://`, or with `https://`, says what to write instead.
#[test]
fn ctl_messages_say_what_is_wrong() {
    let closed = free_addr();
    let r = ctl(&["--admin", &format!("http://{closed}"), "status"], &[]);
    assert_eq!(r.code, Some(5), "unreachable");
    assert!(r.err.contains("is switchyard running?"), "{}", r.err);
    for (admin, says) in [
        (format!("{closed}"), "missing http://"),
        (format!("https://{closed}"), "use http://"),
    ] {
        let r = ctl(&["--admin", &admin, "status"], &[]);
        assert_eq!(r.code, Some(2), "invalid input: {admin}");
        assert!(r.err.contains(says), "{admin}: {}", r.err);
        assert!(
            !r.err.contains("is switchyard running?"),
            "{admin}: {}",
            r.err
        );
    }
}

/// A stdout whose reader is already gone, as in `switchyard ctl status |
/// true` once `true` has exited: every write fails with EPIPE.
fn closed_pipe() -> Stdio {
    let (writer, reader) = tokio::net::unix::pipe::pipe().expect("a pipe");
    drop(reader);
    Stdio::from(writer.into_blocking_fd().expect("the pipe's fd"))
}

/// `check` and `ctl` (`watch` too) piped into a reader that goes away stop
/// quietly with their own verdict: no panic, no backtrace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_into_a_closed_pipe_ends_quietly() {
    let blue = Upstream::start("blue-1").await;
    let s = start_proxy(&config_yaml(&[blue.addr], &[blue.addr], "")).await;
    let admin = format!("http://{}", s.admin_addr);
    for args in [
        vec!["check", "-c", "config/minimal.yaml"],
        vec!["ctl", "--admin", &admin, "status"],
        vec!["ctl", "--admin", &admin, "--json", "status"],
        vec!["ctl", "--admin", &admin, "watch"],
    ] {
        let out = tokio::task::block_in_place(|| {
            Command::new(BIN)
                .args(&args)
                .env_remove("SWITCHYARD_ADMIN_TOKEN")
                .env("RUST_BACKTRACE", "1")
                .stdout(closed_pipe())
                .output()
                .expect("run switchyard")
        });
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} complained: {err}");
    }
    s.shutdown().await;
}

/// With `--json`, a refusal prints the API's error document on stdout (a
/// script parses it) and still exits with the refusal's code (2: invalid).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_json_prints_the_api_error_document() {
    let blue = Upstream::start("blue-1").await;
    let s = start_proxy(&config_yaml(&[blue.addr], &[blue.addr], "")).await;
    let admin = format!("http://{}", s.admin_addr);
    let r = tokio::task::block_in_place(|| {
        ctl(&["--admin", &admin, "--json", "weights", "80", "19"], &[])
    });
    assert_eq!(r.code, Some(2), "{}", r.out);
    let v: serde_json::Value = serde_json::from_str(&r.out)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", r.out));
    assert!(v["error"]["code"].is_string(), "{v}");
    assert!(r.err.contains("422"), "{}", r.err);
    s.shutdown().await;
}

/// The first `lines` lines `ctl watch ARGS` prints into a pipe; the child
/// is then stopped.
fn watch_lines(admin: &str, json: bool, lines: usize) -> Vec<String> {
    use std::io::BufRead;
    let mut c = Command::new(BIN);
    c.args(["ctl", "--admin", admin, "watch"]);
    if json {
        c.arg("--json");
    }
    let mut child = c
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ctl watch");
    let stdout = child.stdout.take().expect("stdout");
    // Ends at EOF too: a watch that fails exits, and the test sees too few lines.
    let got: Vec<String> = std::io::BufReader::new(stdout)
        .lines()
        .take(lines)
        .map(|l| l.expect("read watch output"))
        .collect();
    let _stopped = child.kill();
    let _reaped = child.wait();
    got
}

/// Into a pipe, `ctl watch` appends plain refreshes (no clear-screen
/// escapes), and with `--json` one JSON document per line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_watch_into_a_pipe_prints_plain_refreshes() {
    let blue = Upstream::start("blue-1").await;
    let s = start_proxy(&config_yaml(&[blue.addr], &[blue.addr], "")).await;
    let admin = format!("http://{}", s.admin_addr);
    let plain = tokio::task::block_in_place(|| watch_lines(&admin, false, 3));
    assert_eq!(plain.len(), 3, "{plain:?}");
    assert!(plain[0].starts_with("phase "), "{plain:?}");
    assert!(!plain.concat().contains('\u{1b}'), "{plain:?}");
    let json = tokio::task::block_in_place(|| watch_lines(&admin, true, 2));
    assert_eq!(json.len(), 2, "{json:?}");
    for line in &json {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert!(v["generation"].is_u64(), "{v}");
    }
    s.shutdown().await;
}
