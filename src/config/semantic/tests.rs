//! One test per rule of `semantic.rs`, in its order: each fails if its rule
//! goes. Longer than 500 lines because there are that many rules, each with
//! its own short test; the whole-file helpers are those of `config/tests.rs`.

use crate::config::tests::*;
use crate::config::validate::Environment;

fn with(section: &str) -> String {
    format!("{POOLS}{section}")
}

/// A file holding `contents`, kept for the test's lifetime.
fn temp_file(dir: &tempfile::TempDir, name: &str, contents: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {name}: {e}"));
    path.display().to_string()
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"))
}

#[test]
fn initial_weights() {
    let t = with("traffic:\n  initial: {blue: 60, green: 30}\n");
    assert_one(&t, at(&t, "{blue: 60"), "weights must sum to 100, got 90");
    let t = with("traffic:\n  initial: {blue: 120, green: -20}\n");
    let d = errors(&t);
    assert_eq!(d.len(), 2, "{}", render(&d));
    assert_has(&d, at(&t, "120"), "blue weight 120 is outside 0..=100");
    assert_has(&d, at(&t, "-20"), "green weight -20 is outside 0..=100");
    let t = with("traffic: {initial: {blue: 33.333, green: 66.667}}\n");
    assert_has(
        &errors(&t),
        at(&t, "33.333"),
        "finer than the 0.01 resolution",
    );
    valid(&with("traffic: {initial: {blue: 0, green: 100}}\n"));
}

#[test]
fn pool_endpoints() {
    let t = "pools:\n  blue: {endpoints: []}\n  green: {endpoints: [\"127.0.0.1:8011\"]}\n";
    assert_one(
        t,
        at(t, "[]"),
        "pools.blue.endpoints: a pool needs at least one endpoint",
    );
    for (bad, why) in [
        ("127.0.0.1", "has no port"),
        ("127.0.0.1:0", "outside 1-65535"),
        ("127.0.0.1:70000", "outside 1-65535"),
        ("http://127.0.0.1:8001", "has a scheme"),
    ] {
        let t = format!("pools:\n  blue: {{endpoints: [\"127.0.0.1:8001\"]}}\n  green: {{endpoints: [\"{bad}\"]}}\n");
        assert_one(&t, at_last(&t, &format!("\"{bad}")), why);
    }
    let t = "pools:\n  blue: {endpoints: [\"127.0.0.1:8001\", \"127.0.0.1:8001\"]}\n  green: {endpoints: [\"127.0.0.1:8011\"]}\n";
    assert_one(
        t,
        at_last(t, "\"127.0.0.1:8001"),
        "pools.blue.endpoints[1]: `127.0.0.1:8001` is listed twice",
    );
}

#[test]
fn pool_tls() {
    let t = POOLS.replace(
        "8011\"]}",
        "8011\"], tls: {ca: /nonexistent/ca.pem, server_name: \"bad name\"}}",
    );
    let d = errors(&t);
    assert_eq!(d.len(), 2, "{}", render(&d));
    assert_has(
        &d,
        at(&t, "/nonexistent"),
        "`/nonexistent/ca.pem` does not exist",
    );
    assert_has(&d, at(&t, "\"bad name\""), "not a valid DNS name");
    let dir = temp_dir();
    // Readable but no certificate in it: refused where the path is written.
    let junk = temp_file(&dir, "junk.pem", "pem");
    let t = POOLS.replace("8011\"]}", &format!("8011\"], tls: {{ca: \"{junk}\"}}}}"));
    assert_one(
        &t,
        at(&t, &format!("\"{junk}")),
        "pools.green.tls.ca: CA bundle",
    );
    let authority = crate::proxy::listener_tls::selfsigned::Ca::new("test CA").unwrap();
    let ca = temp_file(&dir, "ca.pem", &authority.cert_pem);
    valid(&POOLS.replace(
        "8011\"]}",
        &format!("8011\"], tls: {{ca: \"{ca}\", server_name: app.internal}}}}"),
    ));
}

#[test]
fn listener_binds() {
    let t = with("listeners:\n  - bind: \"127.0.0.1:8080\"\n  - bind: \"127.0.0.1:8080\"\n");
    assert_one(
        &t,
        at_last(&t, "\"127.0.0.1:8080"),
        "is the same as listeners[0]",
    );
    let t = with("listeners:\n  - bind: \"0.0.0.0:8080\"\n  - bind: \"127.0.0.1:8080\"\n");
    assert_one(
        &t,
        at(&t, "\"127.0.0.1:8080"),
        "overlaps listeners[0] (0.0.0.0:8080)",
    );
    let t = with("listeners: [{bind: \"127.0.0.1:9901\"}]\n");
    assert_one(
        &t,
        at(&t, "\"127.0.0.1:9901"),
        "is the same as the admin bind",
    );
    let t = with("listeners: []\n");
    assert_one(&t, at(&t, "[]"), "at least one listener");
    // Port 0 asks the system for a free port each time: no clash.
    valid(&with(
        "listeners: [{bind: \"127.0.0.1:0\"}, {bind: \"127.0.0.1:0\"}]\n",
    ));
}

#[test]
fn listener_tls_files() {
    let t = with("listeners:\n  - bind: \"127.0.0.1:8443\"\n    tls: {cert: /nonexistent/tls.crt, key: /nonexistent/tls.key}\n");
    let d = errors(&t);
    assert_eq!(d.len(), 2, "{}", render(&d));
    assert_has(
        &d,
        at(&t, "/nonexistent/tls.crt"),
        "listeners[0].tls.cert: `/nonexistent/tls.crt` does not exist",
    );
    assert_has(&d, at(&t, "/nonexistent/tls.key"), "does not exist");
    let dir = temp_dir();
    let listener = |cert: &str, key: &str| {
        with(&format!(
            "listeners: [{{bind: \"127.0.0.1:8443\", tls: {{cert: \"{cert}\", key: \"{key}\"}}}}]\n"
        ))
    };
    let ca = crate::proxy::listener_tls::selfsigned::Ca::new("test CA").unwrap();
    let issued = ca.issue(&["localhost"]).unwrap();
    let other = ca.issue(&["localhost"]).unwrap();
    let cert = temp_file(&dir, "c.pem", &issued.cert_pem);
    let key = temp_file(&dir, "k.pem", &issued.key_pem);
    valid(&listener(&cert, &key));
    // Readable is not enough: what would be served is checked, and the
    // error points at the file at fault.
    let junk = temp_file(&dir, "junk.pem", "x");
    let t = listener(&junk, &key);
    assert_one(&t, at(&t, &format!("\"{junk}")), "holds no certificate");
    let t = listener(&cert, &junk);
    assert_one(&t, at(&t, &format!("\"{junk}")), "listeners[0].tls.key:");
    let wrong_key = temp_file(&dir, "other.key", &other.key_pem);
    let t = listener(&cert, &wrong_key);
    assert_one(&t, at(&t, &format!("\"{wrong_key}")), "does not match");
    let d = dir.path().display().to_string();
    let t = with(&format!(
        "listeners: [{{bind: \"127.0.0.1:8443\", tls: {{cert: \"{d}\", key: \"{key}\"}}}}]\n"
    ));
    assert_one(&t, at(&t, &format!("\"{d}\"")), "is a directory");
}

#[test]
fn admin_reachable_from_other_hosts_needs_a_token() {
    let t = with("admin: {bind: \"0.0.0.0:9901\"}\n");
    assert_one(&t, at(&t, "\"0.0.0.0"), "reachable from other hosts");
    let env = Environment {
        admin_token_in_env: true,
        ..Environment::default()
    };
    assert_eq!(errors_in(&t, &env), []);
    let dir = temp_dir();
    let token = temp_file(&dir, "token", "s3cret\n");
    valid(&with(&format!(
        "admin: {{bind: \"0.0.0.0:9901\", token_file: \"{token}\"}}\n"
    )));
}

#[test]
fn admin_token_file_must_be_readable_and_not_empty() {
    let t = with("admin: {token_file: /nonexistent/admin.token}\n");
    assert_one(
        &t,
        at(&t, "/nonexistent"),
        "admin.token_file: `/nonexistent/admin.token` does not exist",
    );
    let dir = temp_dir();
    let empty = temp_file(&dir, "empty", " \n");
    let t = with(&format!("admin: {{token_file: \"{empty}\"}}\n"));
    assert_one(&t, at(&t, &format!("\"{empty}")), "is empty");
}

#[test]
fn health_check_rules() {
    let t = with("health_check: {path: health}\n");
    assert_one(&t, at(&t, "health}"), "must start with /");
    let t = with("health_check: {path: \"/he alth\"}\n");
    assert_one(&t, at(&t, "\"/he"), "not a valid request path");
    let t = with("health_check: {expected_status: \"200-99\"}\n");
    assert_one(&t, at(&t, "\"200-99"), "bad status range");
    let t = with("health_check: {interval: 2s, timeout: 3s}\n");
    assert_one(
        &t,
        at(&t, "3s"),
        "timeout (3s) is longer than interval (2s)",
    );
    // Only interval written: the rule points at it, not at the default.
    let t = with("health_check:\n  interval: 500ms\n");
    assert_one(
        &t,
        at(&t, "500ms"),
        "timeout (1s) is longer than interval (500ms)",
    );
}

#[test]
fn zero_thresholds() {
    for (section, key) in [
        ("health_check", "healthy_threshold"),
        ("health_check", "unhealthy_threshold"),
        ("outlier_detection", "consecutive_failures"),
        ("rollback", "consecutive_breaches"),
        ("cutover", "max_held_requests"),
    ] {
        let t = with(&format!("{section}: {{{key}: 0}}\n"));
        assert_one(
            &t,
            after(&t, &format!("{key}: ")),
            &format!("{section}.{key}: must be at least 1"),
        );
    }
}

#[test]
fn ejection_share_is_a_percentage() {
    let t = with("outlier_detection: {max_ejection_percent: 150}\n");
    assert_one(
        &t,
        after(&t, "max_ejection_percent: "),
        "outlier_detection.max_ejection_percent: 150 is more than 100",
    );
    for ok in [0, 50, 100] {
        let t = with(&format!(
            "outlier_detection: {{max_ejection_percent: {ok}}}\n"
        ));
        assert_eq!(valid(&t).outlier_detection.max_ejection_percent, ok);
    }
}

#[test]
fn zero_durations() {
    for (section, key) in [
        ("health_check", "interval"),
        ("health_check", "timeout"),
        ("rollback", "interval"),
        ("rollout", "step_interval"),
        ("timeouts", "connect"),
        ("timeouts", "request"),
        ("timeouts", "client_header"),
        ("timeouts", "client_body"),
        ("timeouts", "upstream_idle"),
        ("drain", "timeout"),
        ("cutover", "max_hold"),
        ("rollback", "max_p99_latency"),
    ] {
        let t = with(&format!("{section}: {{{key}: 0s}}\n"));
        assert_one(
            &t,
            after(&t, &format!("{key}: ")),
            &format!("{section}.{key}: must be longer than 0"),
        );
    }
}

/// No duration may be so long that the times it leads to cannot be shown
/// (10000 years crashed the proxy): each bound is named at its value.
#[test]
fn too_long_durations() {
    for (yaml, key, max) in [
        (
            "rollout: {step_interval: 10000years}",
            "rollout.step_interval",
            "1 year",
        ),
        (
            "rollout: {bake_time: 10000years}",
            "rollout.bake_time",
            "1 year",
        ),
        (
            "traffic: {sticky: {max_age: 2years}}",
            "traffic.sticky.max_age",
            "1 year",
        ),
        (
            "outlier_detection: {ejection_time: 2days}",
            "outlier_detection.ejection_time",
            "1 day",
        ),
        ("drain: {timeout: 10000years}", "drain.timeout", "1 day"),
        ("timeouts: {connect: 25h}", "timeouts.connect", "1 day"),
        ("timeouts: {request: 25h}", "timeouts.request", "1 day"),
        (
            "timeouts: {client_header: 25h}",
            "timeouts.client_header",
            "1 day",
        ),
        (
            "timeouts: {client_body: 25h}",
            "timeouts.client_body",
            "1 day",
        ),
        (
            "timeouts: {upstream_idle: 25h}",
            "timeouts.upstream_idle",
            "1 day",
        ),
        (
            "health_check: {interval: 2h}",
            "health_check.interval",
            "1h",
        ),
        (
            "rollback: {interval: 2h, window: 2h}",
            "rollback.interval",
            "1h",
        ),
        ("rollback: {window: 2days}", "rollback.window", "1 day"),
        ("rollback: {grace: 2days}", "rollback.grace", "1 day"),
        (
            "rollback: {max_p99_latency: 2h}",
            "rollback.max_p99_latency",
            "1h",
        ),
        ("cutover: {max_hold: 6m}", "cutover.max_hold", "5m"),
        (
            "cutover: {max_hold: 5m, gate: {url: \"http://127.0.0.1:1/\", timeout: 6m}}",
            "cutover.gate.timeout",
            "5m",
        ),
        (
            "cutover: {gate: {url: \"http://127.0.0.1:1/\", poll_interval: 6m}}",
            "cutover.gate.poll_interval",
            "5m",
        ),
    ] {
        let t = with(&format!("{yaml}\n"));
        let field = key.rsplit('.').next().unwrap_or(key);
        assert_one(&t, after(&t, &format!("{field}: ")), &format!("{key}: "));
        let d = errors(&t);
        assert!(
            d[0].message
                .ends_with(&format!("is longer than the maximum of {max}")),
            "{key}: {}",
            d[0].message
        );
    }
    // The bounds themselves are allowed.
    valid(&with(
        "rollout: {step_interval: 1year, bake_time: 1year}\ncutover: {max_hold: 5m}\ntimeouts: {request: 1day}\n",
    ));
}

#[test]
fn rollback_rules() {
    let t = with("rollback: {window: 500ms}\n");
    assert_one(&t, at(&t, "500ms"), "rollback.window: must be at least 1s");
    let t = with("rollback: {interval: 5s, window: 2s}\n");
    assert_one(
        &t,
        at(&t, "2s"),
        "window (2s) is shorter than interval (5s)",
    );
    let t = with("rollback: {max_error_rate: 1.5}\n");
    assert_one(&t, at(&t, "1.5"), "must be between 0 and 1");
    let t = with("rollback: {max_error_rate: -0.1}\n");
    assert_one(&t, at(&t, "-0.1"), "must be between 0 and 1");
    let t = with("rollback: {max_error_rate_increase: 2}\n");
    assert_one(
        &t,
        after(&t, "increase: "),
        "rollback.max_error_rate_increase: must be between 0 and 1",
    );
    valid(&with(
        "rollback: {max_error_rate: 0, max_error_rate_increase: 0.005, max_p99_latency: 800ms}\n",
    ));
}

#[test]
fn rollout_steps() {
    let t = with("rollout: {steps: []}\n");
    assert_one(
        &t,
        at(&t, "[]"),
        "rollout.steps: rollout steps must not be empty",
    );
    let t = with("rollout: {steps: [50, 25, 100]}\n");
    assert_one(
        &t,
        at(&t, "25"),
        "rollout.steps[1]: step 25 does not increase",
    );
    let t = with("rollout: {steps: [0, 100]}\n");
    assert_one(&t, after(&t, "steps: ["), "step 0 is outside (0, 100]");
    let t = with("rollout: {steps: [10.005, 100]}\n");
    assert_one(&t, at(&t, "10.005"), "finer than the 0.01 resolution");
    let t = with("rollout: {steps: [10, 50]}\n");
    assert_one(
        &t,
        at(&t, "50"),
        "the last step is 50: a rollout must end at 100",
    );
}

#[test]
fn retries_limit() {
    let t = with("retries: {attempts: 11}\n");
    assert_one(
        &t,
        after(&t, "attempts: "),
        "retries.attempts: 11 is more than 10",
    );
    valid(&with("retries: {attempts: 10}\n"));
}

#[test]
fn traffic_names() {
    let t = with("traffic: {override_header: \"X Pool\"}\n");
    assert_one(&t, at(&t, "\"X Pool"), "not a valid HTTP header name");
    let t = with("traffic: {sticky: {cookie: \"a;b\"}}\n");
    assert_one(&t, at(&t, "\"a;b"), "not a valid cookie name");
    let t = with("traffic: {sticky: {max_age: 0s}}\n");
    assert_one(
        &t,
        at(&t, "0s"),
        "traffic.sticky.max_age: must be longer than 0",
    );
    let c = valid(&with(
        "traffic: {sticky: {}, override_header: X-Switchyard-Pool}\n",
    ));
    assert_eq!(
        c.traffic.sticky.map(|s| s.cookie),
        Some("switchyard-bucket".into())
    );
}

#[test]
fn cutover_rules() {
    for url in [
        "https://127.0.0.1:7000/ready",
        "127.0.0.1:7000/ready",
        "/ready",
    ] {
        let t = with(&format!("cutover: {{gate: {{url: \"{url}\"}}}}\n"));
        assert_one(
            &t,
            at(&t, &format!("\"{url}")),
            "not an http:// URL with a host",
        );
    }
    let t = with("cutover: {gate: {url: \"http://127.0.0.1:7000/ready\", timeout: 0s}}\n");
    assert_one(
        &t,
        at(&t, "0s"),
        "cutover.gate.timeout: must be longer than 0",
    );
    let t = with("cutover: {gate: {url: \"http://127.0.0.1:7000/ready\", poll_interval: 0s}}\n");
    assert_one(
        &t,
        at(&t, "0s"),
        "cutover.gate.poll_interval: must be longer than 0",
    );
    let t = with("cutover: {min_healthy: 2}\n");
    assert_one(&t, at(&t, "2}"), "more than the 1 endpoint(s) of pool blue");
    valid(&with(
        "cutover: {min_healthy: 0, gate: {url: \"http://127.0.0.1:7000/ready\"}}\n",
    ));
}

#[test]
fn log_level() {
    let t = with("log: {level: loud}\n");
    assert_one(&t, at(&t, "loud"), "log.level: `loud` is not a log level");
    let t = with("log: {level: \"info,switchyard=loud\"}\n");
    assert_one(&t, at(&t, "\"info"), "not a valid log filter");
    valid(&with(
        "log: {level: \"warn,switchyard=debug\", format: json}\n",
    ));
}

#[test]
fn state_and_audit_files() {
    let t = with("state_file: /nonexistent-dir/state.json\n");
    assert_one(
        &t,
        at(&t, "/nonexistent"),
        "the directory `/nonexistent-dir` of `/nonexistent-dir/state.json` does not exist",
    );
    let t = with("state_file: ./s.json\naudit_log: ./s.json\n");
    assert_one(
        &t,
        at_last(&t, "./s.json"),
        "audit_log: must not be the same file as state_file",
    );
    let t = with("audit_log: /nonexistent-dir/audit.jsonl\n");
    assert_one(
        &t,
        at(&t, "/nonexistent"),
        "audit_log: the directory `/nonexistent-dir`",
    );
    valid(&with("state_file: null\naudit_log: ./audit.jsonl\n"));
}

#[test]
fn limits() {
    let t = with("limits:\n  max_connections: 0\n");
    assert_one(
        &t,
        at(&t, "0\n"),
        "limits.max_connections: must be between 1",
    );
    let t = with("limits:\n  max_header_bytes: 100\n");
    assert_one(
        &t,
        at(&t, "100"),
        "limits.max_header_bytes: must be between 1024",
    );
    let t = with("limits:\n  max_header_bytes: 4096\n  max_uri_bytes: 8192\n");
    assert_one(
        &t,
        at(&t, "8192"),
        "max_uri_bytes (8192) must be between 1 and",
    );
    valid(&with(
        "limits: {max_connections: 2, max_header_bytes: 4096, max_uri_bytes: 1024}\n",
    ));
}
