//! Validation as an operator meets it: whole files in, `file:line:col`
//! diagnostics out. The helpers here serve every test of that kind; the
//! semantic rules, one by one, are tested in `semantic/tests.rs`, the YAML
//! itself in `tree/tests.rs`.

use super::validate::{parse_and_validate_in, Environment};
use super::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Two valid pools, three lines: what most tests add their sections to.
pub(super) const POOLS: &str = "pools:\n  blue: {endpoints: [\"127.0.0.1:8001\"]}\n  green: {endpoints: [\"127.0.0.1:8011\"]}\n";

pub(super) fn errors_in(text: &str, env: &Environment) -> Vec<Diagnostic> {
    match parse_and_validate_in(text, "t.yaml", env) {
        Ok(_) => Vec::new(),
        Err(d) => d,
    }
}

pub(super) fn errors(text: &str) -> Vec<Diagnostic> {
    errors_in(text, &Environment::default())
}

#[track_caller]
pub(super) fn valid(text: &str) -> Config {
    match parse_and_validate_in(text, "t.yaml", &Environment::default()) {
        Ok(c) => c,
        Err(d) => panic!("expected valid, got:\n{}", render(&d)),
    }
}

pub(super) fn render(d: &[Diagnostic]) -> String {
    d.iter().map(|d| format!("{d}\n")).collect()
}

/// 1-based line and column of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Where `needle` first starts in `text`.
#[track_caller]
pub(super) fn at(text: &str, needle: &str) -> (usize, usize) {
    match text.find(needle) {
        Some(i) => line_col(text, i),
        None => panic!("{needle:?} not in the test text"),
    }
}

/// Where `needle` last starts in `text`.
#[track_caller]
pub(super) fn at_last(text: &str, needle: &str) -> (usize, usize) {
    match text.rfind(needle) {
        Some(i) => line_col(text, i),
        None => panic!("{needle:?} not in the test text"),
    }
}

/// Just past the first `needle` (e.g. the value after `"interval: "`).
#[track_caller]
pub(super) fn after(text: &str, needle: &str) -> (usize, usize) {
    match text.find(needle) {
        Some(i) => line_col(text, i + needle.len()),
        None => panic!("{needle:?} not in the test text"),
    }
}

/// The diagnostics contain one at `pos` whose message contains `msg`.
#[track_caller]
pub(super) fn assert_has(diags: &[Diagnostic], pos: (usize, usize), msg: &str) {
    let found = diags
        .iter()
        .any(|d| (d.line, d.column) == pos && d.message.contains(msg));
    assert!(
        found,
        "expected {}:{}: ...{msg}... in:\n{}",
        pos.0,
        pos.1,
        render(diags)
    );
}

/// Exactly one diagnostic, at `pos`, containing `msg`.
#[track_caller]
pub(super) fn assert_one(text: &str, pos: (usize, usize), msg: &str) {
    let d = errors(text);
    assert_eq!(d.len(), 1, "expected one error, got:\n{}", render(&d));
    assert_has(&d, pos, msg);
}

#[test]
fn three_mistakes_in_three_sections_are_all_reported_in_file_order() {
    let text = "\
listeners:
  - bind: \"127.0.0.1:8080\"
    tsl: {cert: a, key: b}
pools:
  blue: {endpoints: [\"127.0.0.1:8001\"]}
  green: {endpoints: [\"127.0.0.1:8011\"]}
health_check:
  interval: soon
traffic:
  initial: {blue: 60, green: 30}
";
    let d = errors(text);
    assert_eq!(d.len(), 3, "{}", render(&d));
    assert_eq!((d[0].line, d[0].column), (3, 5));
    assert!(d[0].message.contains("unknown key `tsl`"), "{}", d[0]);
    assert!(d[0].message.contains("did you mean `tls`?"), "{}", d[0]);
    assert_eq!((d[1].line, d[1].column), (8, 13));
    assert!(d[1]
        .message
        .starts_with("health_check.interval: invalid duration \"soon\""));
    assert_eq!((d[2].line, d[2].column), (10, 12));
    assert!(
        d[2].message.contains("weights must sum to 100, got 90"),
        "{}",
        d[2]
    );
    assert_eq!(
        d[1].to_string(),
        format!("t.yaml:8:13: {}", d[1].message),
        "Display is file:line:col: message"
    );
}

#[test]
fn every_type_error_is_reported_across_and_within_sections() {
    let text = format!(
        "{POOLS}\
health_check: {{healthy_threshold: -1, interval: 5, path: /health}}
rollback: {{min_requests: many, max_error_rate: \"0.1\"}}
timeouts: {{connect: 5 parsecs}}
log: {{format: xml}}
retries: {{attempts: \"3\"}}
traffic: {{failover: yes}}
"
    );
    let d = errors(&text);
    assert_eq!(d.len(), 8, "{}", render(&d));
    assert_has(&d, after(&text, "threshold: "), "invalid value -1");
    assert_has(&d, after(&text, "interval: "), "time unit needed");
    assert_has(&d, after(&text, "min_requests: "), "found string \"many\"");
    assert_has(&d, after(&text, "max_error_rate: "), "expected a number");
    assert_has(
        &d,
        after(&text, "connect: "),
        "unknown time unit \"parsecs\"",
    );
    assert_has(&d, after(&text, "format: "), "unknown value `xml`");
    assert_has(&d, after(&text, "attempts: "), "found string \"3\"");
    assert_has(&d, after(&text, "failover: "), "expected a boolean");
}

#[test]
fn a_section_with_a_type_error_gets_no_second_error_from_defaults() {
    // With `interval` unreadable, "timeout longer than interval" would only confuse.
    let text = format!("{POOLS}health_check: {{interval: soon, timeout: 5s}}\n");
    assert_one(&text, after(&text, "interval: "), "invalid duration");
}

#[test]
fn a_type_error_does_not_hide_the_other_keys_of_its_section() {
    // One pass: the unreadable key, and the range errors beside it.
    let text = format!(
        "{POOLS}rollback: {{interval: -5s, max_error_rate: 5, window: 500ms}}\nrollout: {{steps: [50, 20], bake_time: 1d}}\n"
    );
    let d = errors(&text);
    assert_eq!(d.len(), 4, "{}", render(&d));
    assert_has(
        &d,
        after(&text, "interval: "),
        "rollback.interval: invalid duration \"-5s\": durations cannot be negative",
    );
    assert_has(
        &d,
        after(&text, "max_error_rate: "),
        "rollback.max_error_rate: must be between 0 and 1",
    );
    assert_has(
        &d,
        after(&text, "window: "),
        "rollback.window: must be at least 1s",
    );
    assert_has(&d, at(&text, "20"), "rollout.steps[1]");
}

#[test]
fn unknown_keys_are_all_reported_with_hints() {
    let text = "\
helth_check: {}
pools:
  blue:
    endpoints: [\"127.0.0.1:8001\"]
    protocl: h2
  green: {endpoints: [\"127.0.0.1:8011\"], weight: 3}
listeners:
  - {bind: \"127.0.0.1:8080\", pol: blue}
admin: {bind: \"127.0.0.1:9901\", token-file: x}
";
    let d = errors(text);
    assert_eq!(d.len(), 5, "{}", render(&d));
    assert_has(
        &d,
        (1, 1),
        "unknown key `helth_check` (did you mean `health_check`?)",
    );
    assert_has(
        &d,
        (5, 5),
        "unknown key `protocl` in `pools.blue` (did you mean `protocol`?)",
    );
    assert_has(
        &d,
        at(text, "weight"),
        "known keys: endpoints, tls, protocol",
    );
    assert_has(
        &d,
        at(text, "pol:"),
        "in `listeners[0]` (did you mean `pool`?)",
    );
    assert_has(&d, at(text, "token-file"), "did you mean `token_file`?");
}

#[test]
fn missing_required_keys_are_reported_at_their_parent() {
    let text = "\
pools:
  blue:
    protocol: h2
listeners:
  - bind: \"127.0.0.1:8080\"
  - pool: blue
";
    let d = errors(text);
    assert_eq!(d.len(), 3, "{}", render(&d));
    assert_has(&d, (1, 1), "missing required key `green` in `pools`");
    assert_has(
        &d,
        (2, 3),
        "missing required key `endpoints` in `pools.blue`",
    );
    assert_has(&d, (6, 5), "missing required key `bind` in `listeners[1]`");
}

#[test]
fn mistakes_deep_in_mappings_and_lists_point_at_themselves() {
    let text = format!(
        "{POOLS}\
traffic:
  sticky:
    cookie: b
    max_agee: 1h
rollout:
  steps:
    - 10
    - ten
    - 100
listeners:
  - bind: \"127.0.0.1:8080\"
  - {{bind: nope, pool: purple}}
  - [\"127.0.0.1:8082\"]
"
    );
    let d = errors(&text);
    assert_eq!(d.len(), 5, "{}", render(&d));
    assert_has(
        &d,
        at(&text, "max_agee"),
        "unknown key `max_agee` in `traffic.sticky` (did you mean `max_age`?)",
    );
    assert_has(
        &d,
        at(&text, "ten"),
        "rollout.steps[1]: expected a number, found string \"ten\"",
    );
    assert_has(
        &d,
        at(&text, "nope"),
        "listeners[1].bind: invalid socket address",
    );
    assert_has(
        &d,
        at(&text, "purple"),
        "listeners[1].pool: unknown value `purple`",
    );
    assert_has(
        &d,
        at(&text, "[\"127.0.0.1:8082"),
        "listeners[2]: expected a mapping of keys, found a list",
    );
    let text = "pools:\n  blue:\n    endpoints:\n      - \"127.0.0.1:1\"\n      - {a: 1}\n  green: {endpoints: [\"127.0.0.1:2\"]}\n";
    assert_one(
        text,
        at(text, "{a: 1}"),
        "pools.blue.endpoints[1]: expected a string, found a mapping",
    );
}

#[test]
fn every_missing_key_of_one_mapping_is_reported() {
    let d = errors("pools: ~\n");
    assert_eq!(d.len(), 2, "{}", render(&d));
    assert_has(&d, (1, 1), "missing required key `blue` in `pools`");
    assert_has(&d, (1, 1), "missing required key `green` in `pools`");
}

#[test]
fn without_pools_the_other_sections_are_still_checked() {
    let text = "rollout: {steps: [50, 25, 100]}\n";
    let d = errors(text);
    assert_eq!(d.len(), 2, "{}", render(&d));
    assert_has(&d, (1, 1), "missing required key `pools`");
    assert_has(&d, at(text, "25"), "does not increase");
    assert_one("", (1, 1), "missing required key `pools`");
}

#[test]
fn yaml_syntax_error_is_reported_alone_at_its_position() {
    let text =
        "pools:\n  blue: {endpoints: [\"127.0.0.1:8001\"]}\n   green: x\nretries: {attempts: 99}\n";
    let d = errors(text);
    assert_eq!(d.len(), 1, "{}", render(&d));
    assert_eq!((d[0].line, d[0].column), (3, 4));
    assert!(d[0].message.starts_with("YAML syntax error: "), "{}", d[0]);
    assert!(
        !d[0].message.contains("line 3 column 4"),
        "position not repeated: {}",
        d[0]
    );

    let d = errors("pools:\n  blue: [a, b\n");
    assert_eq!((d[0].line, d[0].column), (3, 1), "{}", render(&d));
}

#[test]
fn duplicate_keys_and_a_non_mapping_file_are_reported() {
    let text = format!("{POOLS}retries: {{attempts: 1}}\nretries: {{attempts: 2}}\n");
    assert_one(
        &text,
        at_last(&text, "retries"),
        "duplicate key `retries` (first written at line 4)",
    );
    assert_one(
        "- a\n- b\n",
        (1, 1),
        "top level: expected a mapping of keys, found a list",
    );
}

#[test]
fn empty_sections_and_quoted_strings_are_accepted() {
    let c = valid(&format!(
        "{POOLS}health_check:\naudit_log: ~\ntraffic: {{override_header: 'X-Pool', initial: {{blue: 33.33, green: 66.67}}}}\nrollout: {{step_interval: 1m 30s}}\n"
    ));
    assert_eq!(c.health_check, HealthCheckConfig::default());
    assert_eq!(c.traffic.override_header.as_deref(), Some("X-Pool"));
    assert_eq!(c.rollout.step_interval, Duration::from_secs(90));
}

#[test]
fn minimal_file_gets_the_defaults_of_spec_section_2() {
    let c = valid(POOLS);
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].bind.to_string(), "0.0.0.0:8080");
    assert_eq!(
        (c.listeners[0].tls.clone(), c.listeners[0].pool),
        (None, None)
    );
    assert_eq!(c.admin.bind.to_string(), "127.0.0.1:9901");
    assert_eq!(
        (c.admin.token_file.clone(), c.admin.metrics_public),
        (None, false)
    );
    assert_eq!(c.pools.blue.endpoints, ["127.0.0.1:8001"]);
    assert_eq!(c.pools.green.protocol, UpstreamProtocol::Http1);
    assert_eq!(c.pools.green.tls, None);
    let h = &c.health_check;
    assert_eq!(h.path, "/health");
    assert_eq!(
        (h.interval, h.timeout),
        (Duration::from_secs(2), Duration::from_secs(1))
    );
    assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (2, 3));
    assert_eq!(h.expected_status, "200-399");
    assert_eq!(c.outlier_detection.consecutive_failures, 5);
    assert_eq!(c.outlier_detection.ejection_time, Duration::from_secs(30));
    let t = &c.traffic;
    assert_eq!((t.initial.blue, t.initial.green), (100.0, 0.0));
    assert_eq!((t.sticky.clone(), t.override_header.clone()), (None, None));
    assert_eq!((t.expose_pool_header, t.failover), (false, true));
    let r = &c.rollout;
    assert_eq!(r.steps, [10.0, 25.0, 50.0, 75.0, 100.0]);
    assert_eq!(
        (r.step_interval, r.bake_time),
        (Duration::from_secs(60), Duration::from_secs(600))
    );
    assert!(r.auto_promote);
    let b = &c.rollback;
    assert!(b.enabled);
    assert_eq!(
        (b.interval, b.window),
        (Duration::from_secs(1), Duration::from_secs(60))
    );
    assert_eq!((b.min_requests, b.max_error_rate), (50, 0.01));
    assert_eq!((b.max_error_rate_increase, b.max_p99_latency), (None, None));
    assert_eq!(
        (b.consecutive_breaches, b.grace),
        (3, Duration::from_secs(10))
    );
    let k = &c.cutover;
    assert!(!k.hold_writes);
    assert_eq!(
        (k.max_hold, k.max_held_requests),
        (Duration::from_secs(2), 10_000)
    );
    assert_eq!((k.gate.clone(), k.min_healthy), (None, 1));
    assert_eq!(c.drain.timeout, Duration::from_secs(30));
    let o = &c.timeouts;
    assert_eq!(
        (o.connect, o.request),
        (Duration::from_secs(2), Duration::from_secs(60))
    );
    assert_eq!(
        (o.client_header, o.upstream_idle),
        (Duration::from_secs(10), Duration::from_secs(90))
    );
    assert_eq!(o.client_body, Duration::from_secs(30));
    assert_eq!(c.retries.attempts, 1);
    assert_eq!(c.state_file, Some(PathBuf::from("./switchyard-state.json")));
    assert_eq!(c.audit_log, None);
    assert_eq!(
        (c.log.format, c.log.level.as_str(), c.log.access_log),
        (LogFormat::Text, "info", false)
    );
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name)
}

#[test]
fn minimal_example_is_valid_and_names_only_pools() {
    let path = example("minimal.yaml");
    let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.pools.blue.endpoints, ["127.0.0.1:8001", "127.0.0.1:8002"]);
    assert_eq!(
        c.pools.green.endpoints,
        ["127.0.0.1:8011", "127.0.0.1:8012"]
    );
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let top: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with([' ', '#']) && !l.trim().is_empty())
        .collect();
    assert_eq!(top, ["pools:"]);
}

#[test]
fn full_example_is_valid_and_its_values_come_through() {
    let c = load(&example("switchyard.example.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let binds: Vec<String> = c.listeners.iter().map(|l| l.bind.to_string()).collect();
    assert_eq!(binds, ["127.0.0.1:8080", "127.0.0.1:8081"]);
    assert_eq!(c.listeners[1].pool, Some(PoolSelector::Candidate));
    assert!(c.listeners.iter().all(|l| l.bind.ip().is_loopback()));
    assert!(c.admin.bind.ip().is_loopback() && !c.admin.metrics_public);
    assert_eq!(
        c.pools.green.endpoints,
        ["127.0.0.1:8011", "127.0.0.1:8012"]
    );
    assert_eq!(c.pools.blue.protocol, UpstreamProtocol::Http1);
    assert_eq!(c.health_check.unhealthy_threshold, 3);
    assert_eq!(c.outlier_detection.ejection_time, Duration::from_secs(30));
    let sticky = c
        .traffic
        .sticky
        .clone()
        .unwrap_or_else(|| panic!("sticky is set"));
    assert_eq!(
        (sticky.cookie.as_str(), sticky.max_age),
        ("switchyard-bucket", Duration::from_secs(3600))
    );
    assert_eq!(c.rollout.steps, [10.0, 25.0, 50.0, 75.0, 100.0]);
    assert_eq!(c.rollout.bake_time, Duration::from_secs(600));
    assert_eq!(c.rollback.max_error_rate, 0.01);
    assert_eq!(c.cutover.max_held_requests, 10_000);
    assert_eq!(c.timeouts.upstream_idle, Duration::from_secs(90));
    assert_eq!(c.log.format, LogFormat::Text);
    // Relative: beside the file, not in the working directory.
    let beside = std::path::absolute(Path::new(env!("CARGO_MANIFEST_DIR")).join("config"))
        .expect("absolute")
        .join("switchyard-state.json");
    assert_eq!(c.state_file, Some(beside));
}

#[test]
fn reusable_checks_for_the_admin_api() {
    assert_eq!(validate_weights(90.0, 10.0), Ok(()));
    assert_eq!(validate_weights(99.99, 0.01), Ok(()));
    assert!(validate_weights(90.0, 20.0).is_err_and(|e| e.contains("sum to 100")));
    assert!(validate_weights(-10.0, 110.0).is_err_and(|e| e.contains("outside 0..=100")));
    assert!(validate_weights(f64::NAN, 100.0).is_err());
    assert!(validate_weights(50.005, 49.995).is_err_and(|e| e.contains("0.01 resolution")));
    assert_eq!(validate_steps(&[10.0, 25.5, 100.0]), Ok(()));
    assert_eq!(validate_steps(&[100.0]), Ok(()));
    assert!(validate_steps(&[]).is_err_and(|e| e.contains("empty")));
    assert!(validate_steps(&[50.0, 50.0, 100.0]).is_err_and(|e| e.contains("does not increase")));
    assert!(validate_steps(&[0.0, 100.0]).is_err_and(|e| e.contains("outside (0, 100]")));
    assert!(validate_steps(&[10.001, 100.0]).is_err_and(|e| e.contains("resolution")));
    assert!(validate_steps(&[10.0, 50.0]).is_err_and(|e| e.contains("must end at 100")));
}
