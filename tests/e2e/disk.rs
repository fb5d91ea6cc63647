//! Nothing lost on disk: the state file survives a crash at any point of a
//! write, and a full disk or a read-only directory is reported, never
//! corrupts the previous state, and heals by itself when the disk allows.

use crate::support::process::{free_addr, StderrOnFailure, BIN};
use crate::support::*;
use http::Method;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use switchyard::config::PoolName;
use switchyard::control::document::{StateDoc, DOC_VERSION};
use switchyard::control::store::file as state;

fn state_json(generation: u64, green: f64) -> Value {
    json!({
        "version": DOC_VERSION,
        "generation": generation,
        "live": "blue",
        "weights": {"blue": 100.0 - green, "green": green},
        "rollout": null, "bake": null, "rollback_lock": null,
        "saved_at": "2026-11-20T10:00:00Z"
    })
}

fn persisted(v: Value) -> StateDoc {
    serde_json::from_value(v).expect("a valid state")
}

/// Every point a crash can stop `save` at leaves files that `load` reads as
/// the old state (before the rename) or the new one (after it): a temporary
/// file cut after any byte, or complete but not renamed, is never read and
/// is cleaned away.
#[test]
fn a_crash_at_any_byte_of_a_write_leaves_the_old_state_or_the_new() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let old = persisted(state_json(7, 10.0));
    let new = persisted(state_json(8, 25.0));
    state::save(&path, &old).unwrap();
    let old_bytes = std::fs::read(&path).unwrap();
    // The exact bytes `save` writes for `new`.
    let other = tempfile::tempdir().unwrap();
    state::save(&other.path().join("state.json"), &new).unwrap();
    let new_bytes = std::fs::read(other.path().join("state.json")).unwrap();

    let tmp = dir.path().join("state.json.tmp-4242");
    for cut in 0..=new_bytes.len() {
        std::fs::write(&tmp, &new_bytes[..cut]).unwrap();
        let got = state::load(&path).expect("never corrupt").expect("present");
        assert_eq!(got, old, "a crash after byte {cut} of the temporary file");
        assert!(!tmp.exists(), "the interrupted write was not cleaned away");
        assert_eq!(std::fs::read(&path).unwrap(), old_bytes);
    }
    // After the rename (before or after the directory's fsync): the new state.
    std::fs::write(&tmp, &new_bytes).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert_eq!(state::load(&path).unwrap(), Some(new));
}

fn yaml(
    proxy: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    up: std::net::SocketAddr,
    state: &Path,
) -> String {
    format!(
        "listeners:\n  - bind: \"{proxy}\"\nadmin:\n  bind: \"{admin}\"\npools:\n  blue:\n    endpoints: [\"{up}\"]\n  green:\n    endpoints: [\"{up}\"]\n\
         state_file: \"{}\"\nrollback:\n  interval: 200ms\n  window: 10s\n",
        state.display()
    )
}

/// Effective user id, from /proc (no unsafe code, no libc).
fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("Uid in /proc/self/status")
}

/// `switchyard run -c config`, as `nobody` when the tests run as root (root
/// ignores directory permissions), waiting until the admin API answers.
/// Its stderr is shown only if the test fails.
async fn spawn(
    config: &Path,
    admin: std::net::SocketAddr,
    as_nobody: bool,
) -> (Child, StderrOnFailure) {
    let stderr = StderrOnFailure::new(config.with_file_name("switchyard.stderr.log"));
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    let child = cmd
        .args(["run", "-c"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.stdio())
        .spawn()
        .expect("spawn switchyard");
    let c = client();
    wait_for(Duration::from_secs(20), "switchyard to start", || {
        let c = c.clone();
        async move {
            c.get(format!("http://{admin}/healthz").parse().unwrap())
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    (child, stderr)
}

async fn put_weights(admin: std::net::SocketAddr, green: f64) -> (u16, Value) {
    api(
        admin,
        Method::PUT,
        "/api/v1/weights",
        Some(json!({"blue": 100.0 - green, "green": green})),
        None,
    )
    .await
}

fn file_green(path: &Path) -> f64 {
    state::load(path)
        .expect("the state file is never corrupt")
        .expect("the state file exists")
        .weights
        .percent(PoolName::Green)
}

/// SIGKILL at random moments while weights change as fast as the API takes
/// them: the file is whole every time, holds an acknowledged change (or the
/// one in flight), and a restart resumes exactly it.
#[tokio::test]
async fn killed_mid_write_the_state_file_is_whole_and_resumed() {
    let up = Upstream::start("blue-1").await;
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("state.json");
    for round in 0..4 {
        let (proxy, admin) = (free_addr(), free_addr());
        let config = dir.path().join("switchyard.yaml");
        std::fs::write(&config, yaml(proxy, admin, up.addr, &state_path)).unwrap();
        let (mut child, _stderr) = spawn(&config, admin, false).await;
        if round > 0 {
            let st = api(admin, Method::GET, "/api/v1/status", None, None)
                .await
                .1;
            let resumed = st["weights"]["green"].as_f64().unwrap();
            assert_eq!(
                resumed,
                file_green(&state_path),
                "round {round}: not resumed"
            );
        }
        let acks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = acks.clone();
        let writer = tokio::spawn(async move {
            let c = client();
            let mut acked = Vec::new();
            for i in 0..10_000u32 {
                let green = f64::from(1 + (i + round * 7) % 98);
                let body = json!({"blue": 100.0 - green, "green": green}).to_string();
                let req = http::Request::put(format!("http://{admin}/api/v1/weights"))
                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    .unwrap();
                let sent = tokio::time::timeout(Duration::from_secs(2), c.request(req)).await;
                match sent {
                    Ok(Ok(r)) if r.status() == 200 => {
                        acked.push(green);
                        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    // Killed: no answer, or none that says it was applied.
                    _ => return (acked, Some(green)),
                }
            }
            (acked, None)
        });
        // Let some changes through (however loaded the machine), then kill
        // at a random moment: the pause is the randomness, not a wait.
        wait_for(
            Duration::from_secs(20),
            "a few acknowledged changes",
            || std::future::ready(acks.load(std::sync::atomic::Ordering::Relaxed) > 3),
        )
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(fastrand::u64(0..250));
        tokio::time::sleep_until(deadline).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let (acked, in_flight) = writer.await.unwrap();
        assert!(
            acked.len() > 3,
            "round {round}: too few changes before the kill"
        );
        let on_disk = file_green(&state_path);
        let last = *acked.last().unwrap();
        assert!(
            on_disk == last || Some(on_disk) == in_flight,
            "round {round}: disk has {on_disk}, last acknowledged {last}, in flight {in_flight:?}"
        );
    }
}

/// A full disk: the temporary file is made a link to /dev/full, whose
/// writes fail with ENOSPC. The change stays in memory and is reported, the
/// previous file is untouched, and the next tick writes it once it can.
#[tokio::test]
async fn a_full_disk_is_reported_keeps_the_previous_state_and_heals() {
    let up = Upstream::start("blue-1").await;
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("state.json");
    let yaml = config_yaml(
        &[up.addr],
        &[up.addr],
        "rollback:\n  interval: 200ms\n  window: 10s\n",
    )
    .replace(
        "state_file: null",
        &format!("state_file: \"{}\"", state_path.display()),
    );
    let s = start_proxy(&yaml).await;
    assert_eq!(put_weights(s.admin_addr, 10.0).await.0, 200);
    let before = std::fs::read(&state_path).unwrap();
    assert_eq!(file_green(&state_path), 10.0);

    let tmp: PathBuf = dir
        .path()
        .join(format!("state.json.tmp-{}", std::process::id()));
    std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
    let (code, view) = put_weights(s.admin_addr, 20.0).await;
    assert_eq!(code, 200, "{view}");
    let err = view["state_file"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("No space left"), "not reported: {view}");
    assert_eq!(
        std::fs::read(&state_path).unwrap(),
        before,
        "the previous state was touched"
    );
    assert_eq!(
        status(&s).await["weights"]["green"],
        20.0,
        "the change was lost in memory"
    );

    wait_for(
        Duration::from_secs(5),
        "the state to be written again",
        || {
            let s = &s;
            async move { status(s).await["state_file"]["last_error"].is_null() }
        },
    )
    .await;
    assert_eq!(file_green(&state_path), 20.0);
    s.shutdown().await;
}

/// A directory that turns read-only under a running proxy: reported, the
/// previous file untouched, written as soon as the directory allows again.
#[tokio::test]
async fn a_read_only_directory_is_reported_and_heals() {
    use std::os::unix::fs::PermissionsExt;
    let up = Upstream::start("blue-1").await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    let as_nobody = euid() == 0;
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    chmod(root.path(), 0o755);
    if as_nobody {
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    }
    let state_path = dir.join("state.json");
    let (proxy, admin) = (free_addr(), free_addr());
    let config = root.path().join("switchyard.yaml");
    std::fs::write(&config, yaml(proxy, admin, up.addr, &state_path)).unwrap();
    chmod(&config, 0o644);
    let (mut child, _stderr) = spawn(&config, admin, as_nobody).await;

    assert_eq!(put_weights(admin, 30.0).await.0, 200);
    assert_eq!(file_green(&state_path), 30.0);
    let before = std::fs::read(&state_path).unwrap();

    chmod(&dir, 0o555);
    let (code, view) = put_weights(admin, 40.0).await;
    assert_eq!(code, 200, "{view}");
    let err = view["state_file"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("Permission denied"), "not reported: {view}");
    assert_eq!(std::fs::read(&state_path).unwrap(), before);

    chmod(&dir, 0o755);
    let c = client();
    wait_for(
        Duration::from_secs(5),
        "the state to be written again",
        || {
            let c = c.clone();
            async move {
                let a = get(&c, format!("http://{admin}/api/v1/status")).await;
                serde_json::from_slice::<Value>(&a.body).unwrap()["state_file"]["last_error"]
                    .is_null()
            }
        },
    )
    .await;
    assert_eq!(file_green(&state_path), 40.0);
    let _killed = child.kill();
    let _reaped = child.wait();
}
