//! Security basics and bad operator input at the admin API: no token, no
//! start on a non-loopback address; tokens never in a log or an output;
//! refusals with the right status (401, 400, 413, 422) that change nothing.

use crate::support::process::{free_addr, BIN};
use crate::support::*;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "tok-5ee1-never-logged";

async fn raw_api(
    admin: std::net::SocketAddr,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"));
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    let a = read(
        client()
            .request(b.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .expect("admin answers"),
    )
    .await;
    (
        a.status,
        serde_json::from_slice(&a.body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn admin_refusals_have_the_right_status_and_change_nothing() {
    let blue = Upstream::start("blue-1").await;
    let (s, _dir) =
        crate::support::admin::start_with_token_file(&blue, &format!("{TOKEN}\n")).await;
    let a = s.admin_addr;
    let bearer = format!("Bearer {TOKEN}");
    let ok = Some(bearer.as_str());
    let generation = status_with(&s, &bearer).await;

    // Credentials: missing, wrong, other schemes, in the URL.
    for (auth, path, want, code) in [
        (None, "/api/v1/status", 401, "unauthorized"),
        (Some("Bearer wrong"), "/api/v1/status", 401, "unauthorized"),
        (Some(TOKEN), "/api/v1/status", 401, "unauthorized"),
        (
            Some("Basic dG9rOnRvaw=="),
            "/api/v1/status",
            401,
            "unauthorized",
        ),
        (
            ok,
            &format!("/api/v1/status?token={TOKEN}"),
            400,
            "token_in_query",
        ),
        (
            None,
            &format!("/api/v1/status?access_token={TOKEN}"),
            400,
            "token_in_query",
        ),
        (ok, "/metrics?api_key=x", 400, "token_in_query"),
    ] {
        let (status, v) = raw_api(a, Method::GET, path, auth, Vec::new()).await;
        assert_eq!(status, want, "{path} with {auth:?}: {v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(
            !v.to_string().contains(TOKEN),
            "the answer echoes the token"
        );
    }
    // The scheme is case-insensitive (RFC 9110 section 11.1).
    let lower = format!("bearer {TOKEN}");
    assert_eq!(
        raw_api(a, Method::GET, "/api/v1/status", Some(&lower), Vec::new())
            .await
            .0,
        200
    );

    // Bodies: too large, malformed, wrong types, unknown fields, out of range.
    let huge = format!(r#"{{"reason": "{}"}}"#, "x".repeat(70 * 1024)).into_bytes();
    let cases: Vec<(Method, &str, Vec<u8>, u16)> = vec![
        (Method::POST, "/api/v1/rollback", huge, 413),
        (
            Method::PUT,
            "/api/v1/weights",
            b"{\"blue\": 90,".to_vec(),
            400,
        ),
        (Method::PUT, "/api/v1/weights", b"[90, 10]".to_vec(), 422),
        // Just above 100: JSON numbers are read exactly, not rounded to 100
        // (schemathesis found this one).
        (
            Method::PUT,
            "/api/v1/weights",
            b"{\"blue\": 100.00000000000001, \"green\": 0}".to_vec(),
            422,
        ),
        (Method::PUT, "/api/v1/weights", b"\xff\xfe".to_vec(), 400),
        (
            Method::PUT,
            "/api/v1/weights",
            json_bytes(json!({"blue": "ninety", "green": 10})),
            422,
        ),
        (
            Method::PUT,
            "/api/v1/weights",
            json_bytes(json!({"blue": 90})),
            422,
        ),
        (
            Method::PUT,
            "/api/v1/weights",
            json_bytes(json!({"blue": 1e308, "green": -1e308})),
            422,
        ),
        (
            Method::PUT,
            "/api/v1/weights",
            json_bytes(json!({"blue": 90, "green": 10, "if_generation": -1})),
            422,
        ),
        (
            Method::PUT,
            "/api/v1/weights",
            json_bytes(json!({"blue": 90, "green": 10, "extra": 1})),
            422,
        ),
        (
            Method::POST,
            "/api/v1/switch",
            json_bytes(json!({"to": "purple"})),
            422,
        ),
        (
            Method::POST,
            "/api/v1/switch",
            json_bytes(json!({"to": "green", "force": "yes"})),
            422,
        ),
        (
            Method::POST,
            "/api/v1/switch",
            json_bytes(json!({"to": "green", "sudo": true})),
            422,
        ),
        (
            Method::POST,
            "/api/v1/rollout",
            json_bytes(json!({"to": "green", "steps": ["ten"]})),
            422,
        ),
        (
            Method::POST,
            "/api/v1/rollout",
            json_bytes(json!({"to": "green", "steps": [50, 10]})),
            422,
        ),
        (
            Method::POST,
            "/api/v1/rollout",
            json_bytes(json!({"to": "green", "step_interval": 30})),
            422,
        ),
        (
            Method::POST,
            "/api/v1/rollout",
            json_bytes(json!({"to": "green", "step_interval": "soon"})),
            422,
        ),
        (
            Method::POST,
            "/api/v1/rollback",
            json_bytes(json!({"reason": 5})),
            422,
        ),
        (
            Method::POST,
            "/api/v1/rearm",
            json_bytes(json!({"now": true})),
            422,
        ),
        (
            Method::POST,
            "/api/v1/rollout/pause",
            json_bytes(json!({"if_generation": "1"})),
            422,
        ),
        (Method::GET, "/api/v1/events?limit=-1", Vec::new(), 400),
        (Method::GET, "/api/v1/events?colour=red", Vec::new(), 400),
    ];
    for (method, path, body, want) in cases {
        let body_copy = body.clone();
        let (status, v) = raw_api(a, method.clone(), path, ok, body).await;
        assert_eq!(
            status,
            want,
            "{method} {path} {}: {v}",
            String::from_utf8_lossy(&body_copy)
        );
        assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{method} {path}: not the error shape: {v}"
        );
    }
    assert_eq!(
        status_with(&s, &bearer).await,
        generation,
        "a refusal changed state"
    );
    s.shutdown().await;
}

fn json_bytes(v: serde_json::Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

async fn status_with(s: &switchyard::server::Server, bearer: &str) -> u64 {
    let (code, v) = raw_api(
        s.admin_addr,
        Method::GET,
        "/api/v1/status",
        Some(bearer),
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    v["generation"].as_u64().expect("generation")
}

/// 192.0.2.1 (TEST-NET-1) is not loopback and not bindable here, so even a
/// regression could not open the admin API beyond this machine.
#[tokio::test]
async fn the_admin_api_refuses_a_non_loopback_address_without_a_token() {
    let blue = Upstream::start("blue-1").await;
    let yaml = config_yaml(&[blue.addr], &[blue.addr], "").replacen(
        "bind: \"127.0.0.1:0\"\npools",
        "bind: \"192.0.2.1:9901\"\npools",
        1,
    );
    assert!(yaml.contains("192.0.2.1"), "{yaml}");
    // The checked config is refused with the reason...
    let err = switchyard::config::parse(&yaml, "<test>").unwrap_err();
    assert!(
        err.to_string().contains("admin.bind") && err.to_string().contains("token"),
        "{err}"
    );
    // ...and so is a start that skipped the check.
    let mut cfg: switchyard::config::Config =
        switchyard::config::parse(&config_yaml(&[blue.addr], &[blue.addr], ""), "<test>").unwrap();
    cfg.admin.bind = "192.0.2.1:9901".parse().unwrap();
    match switchyard::server::start(cfg, None).await {
        Err(switchyard::server::StartError::Auth(e)) => {
            assert!(e.to_string().contains("token is required"), "{e}")
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("the admin API started on a non-loopback address without a token"),
    }
    // The real binary says so and exits 1.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("admin.bind")
            || String::from_utf8_lossy(&out.stderr).contains("admin.bind")
    );
}

/// Everything the binary writes at the most verbose log level, and every
/// output of `check` and `ctl`, while the token is used right, wrong and
/// in a URL: the token appears nowhere.
#[tokio::test]
async fn tokens_never_appear_in_logs_or_outputs() {
    let blue = Upstream::start("blue-1").await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, admin) = (free_addr(), free_addr());
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(
        &path,
        format!(
            "listeners:\n  - bind: \"{proxy}\"\nadmin:\n  bind: \"{admin}\"\npools:\n  blue:\n    endpoints: [\"{b}\"]\n  green:\n    endpoints: [\"{b}\"]\nstate_file: null\nlog:\n  level: trace\n  access_log: true\n",
            b = blue.addr
        ),
    )
    .unwrap();
    let log_path = dir.path().join("stderr.log");
    let mut child = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&path)
        .env("SWITCHYARD_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
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
    let bearer = format!("Bearer {TOKEN}");
    for (path, auth) in [
        ("/api/v1/status", Some(bearer.as_str())),
        ("/api/v1/status", Some("Bearer nope")),
        ("/api/v1/status", None),
        (&*format!("/api/v1/status?token={TOKEN}"), None),
        ("/metrics", Some(bearer.as_str())),
    ] {
        raw_api(admin, Method::GET, path, auth, Vec::new()).await;
    }
    raw_api(
        admin,
        Method::POST,
        "/api/v1/rollback",
        Some(&bearer),
        b"{}".to_vec(),
    )
    .await;
    // The token also travels to the upstream when a client sends it through
    // the proxy; the access log must not copy headers.
    let req = Request::get(format!("http://{proxy}/"))
        .header("authorization", &bearer)
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(read(c.request(req).await.unwrap()).await.status, 200);

    let mut outputs = Vec::new();
    let admin_url = format!("http://{admin}");
    for args in [
        vec!["ctl", "--admin", &admin_url, "status"],
        vec!["ctl", "--admin", &admin_url, "--token", "wrong", "status"],
        vec!["ctl", "--admin", "http://127.0.0.1:9", "status"],
        vec!["ctl", "--help"],
        vec!["ctl", "status", "--help"],
        vec!["check", "-c", path.to_str().unwrap()],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .env("SWITCHYARD_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap();
        outputs.push((args.join(" "), out.stdout, out.stderr));
    }
    let _stopped = child.kill();
    let _reaped = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.len() > 1000,
        "trace logging produced almost nothing: {log}"
    );
    assert!(!log.contains(TOKEN), "the token is in the log");
    for (what, stdout, stderr) in outputs {
        for text in [stdout, stderr] {
            assert!(
                !String::from_utf8_lossy(&text).contains(TOKEN),
                "`switchyard {what}` printed the token"
            );
        }
    }
}
