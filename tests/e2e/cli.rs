//! The command line as an operator uses it: `check`, `demo`, `ctl`.

use crate::support::process::BIN;
use crate::support::*;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn check_reports_every_mistake_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "pools:\n  blue:\n    endpoints: [\"127.0.0.1:8001\"]\n  green:\n    endpoints: [\"not an address\"]\ntraffic:\n  initial: { blue: 90, green: 9 }\nhealth_check:\n  intervall: 2s\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let file = path.display().to_string();
    // Three mistakes: a bad endpoint (line 5), weights summing to 99 (line 7),
    // an unknown key (line 9).
    for line in [5, 7, 9] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{file}:{line}:"))),
            "no error reported on line {line}:\n{text}"
        );
    }
}

#[test]
fn check_accepts_the_shipped_examples() {
    for f in ["config/switchyard.example.yaml", "config/minimal.yaml"] {
        let out = Command::new(BIN).args(["check", "-c", f]).output().unwrap();
        assert!(
            out.status.success(),
            "{f} rejected:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn demo_serves_blue_on_8080_and_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = client();
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let a = loop {
        tick.tick().await;
        if let Ok(r) = c.get("http://127.0.0.1:8080/".parse().unwrap()).await {
            break read(r).await;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "the demo never answered on 8080"
        );
    };
    assert_eq!(a.status, 200);
    assert!(a.text().starts_with("Hello from blue-"), "{}", a.text());
    assert_eq!(a.headers["x-switchyard-pool"], "blue");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        tick.tick().await;
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "demo did not stop on SIGTERM"
        );
    };
    assert!(status.success(), "demo exited with {status}");
}

/// `check` and `run` agree on a blank `$SWITCHYARD_ADMIN_TOKEN`: it is no
/// token (`run` serves no auth with it, and refuses a non-loopback bind), so
/// `check` must not report "token from $SWITCHYARD_ADMIN_TOKEN".
#[test]
fn check_treats_a_blank_token_variable_as_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.yaml");
    let check = |bind: &str| {
        std::fs::write(
            &path,
            format!("admin:\n  bind: \"{bind}\"\npools:\n  blue:\n    endpoints: [\"127.0.0.1:8001\"]\n  green:\n    endpoints: [\"127.0.0.1:8011\"]\n"),
        )
        .unwrap();
        let out = Command::new(BIN)
            .args(["check", "-c"])
            .arg(&path)
            .env("SWITCHYARD_ADMIN_TOKEN", " \n")
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    // 192.0.2.1 (TEST-NET-1): not loopback; `check` binds nothing.
    let (code, text) = check("192.0.2.1:9901");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("admin.bind"), "{text}");
    let (code, text) = check("127.0.0.1:9901");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("no token (loopback only)"), "{text}");
}

/// `switchyard run 2> run.log`: no colour escapes in the file, and events
/// logged with the API's words (`endpoint_up`, `auto`), so one grep finds
/// them in the log, the audit log and the API alike.
#[tokio::test]
async fn the_log_in_a_file_is_plain_and_uses_the_api_words() {
    let blue = Upstream::start("blue-1").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.log");
    let yaml = format!(
        "listeners:\n  - bind: \"{{PROXY}}\"\nadmin:\n  bind: \"{{ADMIN}}\"\npools:\n  blue:\n    endpoints: [\"{b}\"]\n  green:\n    endpoints: [\"{b}\"]\nhealth_check:\n  interval: 100ms\n  timeout: 50ms\n  healthy_threshold: 1\nstate_file: null\n",
        b = blue.addr
    );
    let p = crate::support::process::ProxyProcess::start_logging_to(dir.path(), &yaml, &log).await;
    // The event is logged before the API shows it.
    wait_for(Duration::from_secs(10), "an endpoint_up event", || async {
        let (_, v) = api(p.admin, http::Method::GET, "/api/v1/events", None, None).await;
        v["events"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["kind"] == "endpoint_up"))
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains('\u{1b}'),
        "colour escapes in the log:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("kind=endpoint_up") && l.contains("actor=auto")),
        "{text}"
    );
    assert!(!text.contains("EndpointUp"), "{text}");
}

/// `demo` on ports of the test's choosing: its guide, read from stdout
/// until its last line, then the demo stopped.
fn demo_guide(admin: std::net::SocketAddr, traffic: &str) -> String {
    use crate::support::process::free_addr;
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .arg("demo")
        .args(["--listen", &free_addr().to_string()])
        .args(["--tls-listen", &free_addr().to_string()])
        .args(["--admin", &admin.to_string()])
        .args(["--control", &free_addr().to_string()])
        .args(["--traffic", traffic])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let end = std::time::Instant::now() + Duration::from_secs(20);
    let mut guide = String::new();
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                guide.push_str(&line);
                guide.push('\n');
                if line.starts_with("Ctrl-C stops everything") {
                    break;
                }
            }
            Err(e) => {
                let _killed = child.kill();
                panic!("no whole guide from the demo ({e}):\n{guide}");
            }
        }
    }
    // SIGTERM, not a kill: the demo removes its temporary CA on the way out.
    let termed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(termed.success());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait()));
    let status = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("demo did not stop on SIGTERM")
        .unwrap();
    assert!(status.success(), "demo exited with {status}");
    guide
}

/// Copied as printed, the guide's `ctl` lines must reach this demo, not
/// whatever answers on the default 127.0.0.1:9901; and it says the rate
/// of background traffic it was given.
#[test]
fn the_demo_guide_matches_its_flags() {
    let admin = crate::support::process::free_addr();
    let guide = demo_guide(admin, "2");
    assert_eq!(
        guide.lines().next(),
        Some(format!("Dashboard: http://{admin}/").as_str()),
        "the dashboard's address comes first: {guide}"
    );
    let ctl: Vec<&str> = guide
        .lines()
        .filter(|l| l.contains("switchyard ctl"))
        .collect();
    assert!(ctl.len() >= 6, "{guide}");
    for l in &ctl {
        assert!(
            l.contains(&format!("switchyard ctl --admin http://{admin} ")),
            "{l}\n{guide}"
        );
    }
    assert!(guide.contains("sends 2 requests/s"), "{guide}");
    assert!(!guide.contains("~50"), "{guide}");

    let quiet = demo_guide(crate::support::process::free_addr(), "0");
    assert!(quiet.contains("sends no requests"), "{quiet}");
    assert!(!quiet.contains("requests/s"), "{quiet}");
}

/// A busy `--control` port is named, as the proxy's own ports are, and
/// stops the demo before anything says it is serving.
#[test]
fn demo_names_a_busy_control_port() {
    use crate::support::process::free_addr;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let out = Command::new(BIN)
        .arg("demo")
        .args(["--listen", &free_addr().to_string()])
        .args(["--tls-listen", &free_addr().to_string()])
        .args(["--admin", &free_addr().to_string()])
        .args(["--control", &addr.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(!stderr.contains("serving"), "{stderr}");
}

/// A port that is taken at start-up is said once, plainly: not also as a
/// log line repeating it.
#[test]
fn a_busy_listener_is_reported_once() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(
        &path,
        format!("listeners:\n  - bind: \"{addr}\"\nadmin:\n  bind: \"127.0.0.1:0\"\npools:\n  blue:\n    endpoints: [\"127.0.0.1:8001\"]\n  green:\n    endpoints: [\"127.0.0.1:8011\"]\nstate_file: null\n"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let said = format!("cannot listen on {addr}");
    assert_eq!(stderr.matches(&said).count(), 1, "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l == format!("switchyard: {said}: Address already in use (os error 98)")),
        "{stderr}"
    );
}

/// `SWITCHYARD_CONFIG=` (set, but empty) is "not set": the default file,
/// not clap's "a value is required for '--config'" that nobody typed.
#[test]
fn an_empty_config_variable_means_the_default_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("switchyard.yaml"),
        "pools:\n  blue:\n    endpoints: [\"127.0.0.1:8001\"]\n  green:\n    endpoints: [\"127.0.0.1:8011\"]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .env("SWITCHYARD_CONFIG", "")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A file that cannot be read is a mistake about the file: no `:0:0:`,
/// which reads as a position.
#[test]
fn an_unreadable_file_has_no_fake_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonexistent.yaml");
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("{}: cannot read file", path.display())),
        "{stderr}"
    );
    assert!(!stderr.contains(":0:0"), "{stderr}");
}
