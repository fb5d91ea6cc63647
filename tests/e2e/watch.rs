//! `ctl watch` and the figures it shows, from the outside: rates that
//! follow a weight change within 2 s (`pools.*.recent`), colour only on a
//! terminal and never with `NO_COLOR`, countdowns, and a watch that keeps
//! going through a proxy restart and says so.

use crate::support::process::{ProxyProcess, BIN};
use crate::support::*;
use http::Method;
use serde_json::json;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tokio::time::Instant;

/// Green's share of the requests per second in `stats` (the window) and
/// `recent` (the last 2 s).
fn green_share(st: &serde_json::Value, key: &str) -> f64 {
    let rps = |pool: &str| st["pools"][pool][key]["rps"].as_f64().unwrap_or(0.0);
    let total = rps("blue") + rps("green");
    if total == 0.0 {
        0.0
    } else {
        rps("green") / total
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_rates_follow_a_weight_change_within_two_seconds() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], "")).await;
    let load = Load::start(proxy_url(&s, "/"), 2);
    // Several seconds of traffic on blue first, so the window holds them.
    wait_for(
        Duration::from_secs(20),
        "4 s of traffic on blue",
        || async {
            let st = status(&s).await;
            let blue = &st["pools"]["blue"];
            let rps = blue["recent"]["rps"].as_f64().unwrap_or(0.0);
            rps > 10.0 && blue["stats"]["requests"].as_f64().unwrap_or(0.0) >= 4.0 * rps
        },
    )
    .await;
    let (code, v) = api(
        s.admin_addr,
        Method::PUT,
        "/api/v1/weights",
        Some(json!({"blue": 0, "green": 100})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let changed = Instant::now();
    let half = std::cell::Cell::new(None);
    let (took, window_share) = wait_until(
        Duration::from_secs(5),
        "green's recent share at 90 %",
        || {
            let (half, s) = (&half, &s);
            async move {
                let st = status(s).await;
                let share = green_share(&st, "recent");
                if share >= 0.5 && half.get().is_none() {
                    half.set(Some(changed.elapsed()));
                }
                (share >= 0.9).then(|| (changed.elapsed(), green_share(&st, "stats")))
            }
        },
    )
    .await;
    load.finish().await;
    let half = half.get().unwrap_or(took);
    println!(
        "recent rates after blue 100 -> green 100: green above half of req/s after {:.2} s, above 90 % after {:.2} s (the 60 s window showed {:.0} % then)",
        half.as_secs_f64(),
        took.as_secs_f64(),
        window_share * 100.0
    );
    assert!(
        half < Duration::from_millis(1500),
        "took {half:?} to cross half"
    );
    assert!(
        took < Duration::from_millis(2300),
        "took {took:?} to reach 90 %"
    );
    assert!(window_share < 0.7, "the window lags behind: {window_share}");
    s.shutdown().await;
}

/// `ctl ARGS` under a pseudo-terminal (util-linux `script`), as a person
/// runs it: what it printed.
fn on_a_terminal(args: &str, no_color: bool) -> String {
    let mut c = Command::new("script");
    c.args(["-qec", &format!("{BIN} ctl {args}"), "/dev/null"])
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .env("TERM", "xterm");
    if no_color {
        c.env("NO_COLOR", "1");
    } else {
        c.env_remove("NO_COLOR");
    }
    let o = c.output().expect("run script");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colour_on_a_terminal_only_and_countdowns_to_the_next_step() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], "")).await;
    wait_healthy(s.admin_addr, "green").await;
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollout",
        Some(json!({"to": "green", "steps": [10, 100], "step_interval": "90s"})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let args = format!("--admin http://{} status", s.admin_addr);
    let tty = tokio::task::block_in_place(|| on_a_terminal(&args, false));
    assert!(
        tty.contains("\x1b[36mrolling\x1b[0m"),
        "rolling in colour: {tty:?}"
    );
    assert!(tty.contains("\x1b[32mhealthy"), "{tty:?}");
    let next = tty
        .lines()
        .find(|l| l.starts_with("rollout"))
        .expect("a rollout line");
    assert!(
        next.contains("(in 1m 2") || next.contains("(in 1m 3"),
        "a countdown to the next step: {next}"
    );
    let plain = tokio::task::block_in_place(|| on_a_terminal(&args, true));
    assert!(!plain.contains('\x1b'), "NO_COLOR: {plain:?}");
    assert!(plain.contains("phase rolling"), "{plain}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_keeps_going_through_a_proxy_restart() {
    let blue = Upstream::start("blue-1").await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listeners:\n  - bind: \"{{PROXY}}\"\nadmin:\n  bind: \"{{ADMIN}}\"\npools:\n  blue:\n    endpoints: [\"{0}\"]\n  green:\n    endpoints: [\"{0}\"]\nstate_file: null\n",
        blue.addr
    );
    let p = ProxyProcess::start(dir.path(), &yaml).await;
    let mut watch = Command::new(BIN)
        .args(["ctl", "--admin", &format!("http://{}", p.admin), "watch"])
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ctl watch");
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    for (is_err, pipe) in [
        (
            false,
            Box::new(watch.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        ),
        (true, Box::new(watch.stderr.take().unwrap())),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send((is_err, line)).is_err() {
                    return;
                }
            }
        });
    }
    let next = |want: &dyn Fn(bool, &str) -> bool| -> String {
        let end = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok((e, line)) if want(e, &line) => return line,
                Ok(_) => {}
                Err(_) => panic!("ctl watch did not print what was expected in time"),
            }
        }
    };
    tokio::task::block_in_place(|| next(&|e, l| !e && l.starts_with("phase stable")));
    let (proxy, admin, config) = (p.proxy, p.admin, p.config.clone());
    p.signal("KILL");
    drop(p);
    let lost = tokio::task::block_in_place(|| next(&|e, _| e));
    assert!(
        lost.contains("lost the proxy") && lost.contains("reconnecting"),
        "{lost}"
    );
    let _p = ProxyProcess::start_with(config, proxy, admin).await;
    let back = tokio::task::block_in_place(|| next(&|e, _| e));
    assert!(back.contains("reconnected to the proxy"), "{back}");
    tokio::task::block_in_place(|| next(&|e, l| !e && l.starts_with("phase stable")));
    let _stopped = watch.kill();
    let _reaped = watch.wait();
}
