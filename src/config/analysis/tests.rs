//! The `analysis` and `notify` sections: defaults, each rule, and where
//! mistakes are reported in a file.

use super::*;
use crate::config::validate::{parse_and_validate_in, Diagnostic, Environment};

const POOLS: &str = "pools:\n  blue: {endpoints: [\"127.0.0.1:8001\"]}\n  green: {endpoints: [\"127.0.0.1:8011\"]}\n";

fn parse(text: &str) -> Result<Config, Vec<Diagnostic>> {
    parse_and_validate_in(text, "t.yaml", &Environment::default())
}

fn errors(text: &str) -> Vec<String> {
    parse(&format!("{POOLS}{text}"))
        .expect_err("refused")
        .iter()
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn the_spec_example_reads_with_its_defaults() {
    let text = format!(
        "{POOLS}analysis:\n  checks:\n    - name: orders\n      prometheus: {{ url: \"http://127.0.0.1:9090\", query: 'sum(rate(orders_total{{pool=\"{{{{pool}}}}\"}}[1m]))' }}\n      compare: baseline\n      min_ratio: 0.9\n      interval: 10s\n      failure_limit: 3\n    - name: ping\n      http: {{ url: \"https://127.0.0.1:7000/ok?pool={{{{pool}}}}\" }}\n      compare: absolute\nrollback:\n  judge: sequential\nnotify:\n  - url: \"http://127.0.0.1:7100/hooks\"\n    events: [rollback, switch_completed]\n"
    );
    let cfg = parse(&text).expect("valid");
    let c = &cfg.analysis.checks[0];
    assert_eq!(c.name, "orders");
    assert_eq!(c.min_ratio, Some(0.9));
    assert_eq!(c.timeout, Duration::from_secs(5));
    assert!(!c.status_only());
    assert!(cfg.analysis.checks[1].status_only());
    assert_eq!(cfg.rollback.judge, JudgeKind::Sequential);
    assert_eq!(cfg.rollback.confidence, 0.99);
    assert_eq!(cfg.rollback.min_effect, 0.005);
    assert_eq!(cfg.notify[0].format, NotifyFormat::Json);
    assert_eq!(cfg.notify[0].events, ["rollback", "switch_completed"]);
    let none = parse(POOLS).expect("valid");
    assert!(none.analysis.checks.is_empty() && none.notify.is_empty());
    assert_eq!(none.rollback.judge, JudgeKind::Threshold);
}

#[test]
fn a_bad_placeholder_is_refused_at_its_line_and_column() {
    let e = errors(
        "analysis:\n  checks:\n    - name: orders\n      prometheus: {url: \"http://127.0.0.1:9090\", query: 'up{pool=\"{{pol}}\"}'}\n      min_ratio: 0.9\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("t.yaml:7:"), "{e:?}");
    assert!(
        e[0].contains("analysis.checks[0].prometheus.query"),
        "{e:?}"
    );
    assert!(e[0].contains("unknown placeholder `{{pol}}`"), "{e:?}");
    assert!(placeholders("a {{ pool }} b {{pool}}").is_ok());
    assert!(placeholders("a {{pool").is_err());
    assert!(placeholders("a pool}}").is_err());
    assert_eq!(
        fill("x?p={{pool}}&q={{pool}}", "green"),
        "x?p=green&q=green"
    );
}

#[test]
fn min_ratio_above_max_ratio_and_misplaced_bounds_are_refused() {
    let e = errors(
        "analysis:\n  checks:\n    - name: a\n      http: {url: \"http://127.0.0.1:1/{{pool}}\"}\n      min_ratio: 2\n      max_ratio: 1\n    - name: b\n      http: {url: \"http://127.0.0.1:1/\"}\n      compare: absolute\n      min: 5\n      max: 1\n      max_ratio: 3\n    - name: c\n      http: {url: \"http://127.0.0.1:1/\"}\n",
    );
    let all = e.join("\n");
    assert!(
        all.contains(
            "t.yaml:8:18: analysis.checks[0].min_ratio: min_ratio (2) is above max_ratio (1)"
        ),
        "{all}"
    );
    assert!(
        all.contains("analysis.checks[1].min: min (5) is above max (1)"),
        "{all}"
    );
    assert!(
        all.contains("analysis.checks[1].max_ratio: belongs to `compare: baseline`"),
        "{all}"
    );
    assert!(
        all.contains("analysis.checks[2].compare: baseline needs `min_ratio` or `max_ratio`"),
        "{all}"
    );
    assert_eq!(e.len(), 4, "{all}");
}

#[test]
fn a_check_needs_one_source_a_good_url_a_unique_name_and_positive_counts() {
    let e = errors(
        "analysis:\n  checks:\n    - name: a\n      min_ratio: 1\n    - name: a\n      http: {url: \"ftp://127.0.0.1/\"}\n      min_ratio: 1\n      interval: 0s\n      failure_limit: 0\n    - name: \"has space\"\n      prometheus: {url: \"http://127.0.0.1:9090\", query: up}\n      compare: absolute\n",
    );
    let all = e.join("\n");
    assert!(all.contains("analysis.checks[0]: needs a source"), "{all}");
    assert!(
        all.contains("analysis.checks[1].name: `a` names another check already"),
        "{all}"
    );
    assert!(
        all.contains(
            "analysis.checks[1].http.url: `ftp://127.0.0.1/` is not an http:// or https:// URL"
        ),
        "{all}"
    );
    assert!(
        all.contains("analysis.checks[1].interval: must be longer than 0"),
        "{all}"
    );
    assert!(
        all.contains("analysis.checks[1].failure_limit: must be at least 1"),
        "{all}"
    );
    assert!(
        all.contains("analysis.checks[2].name: may hold only"),
        "{all}"
    );
    assert!(
        all.contains("analysis.checks[2].compare: absolute needs `min` or `max`"),
        "{all}"
    );
    assert_eq!(e.len(), 7, "{all}");
}

#[test]
fn notify_refuses_an_unknown_kind_a_missing_secret_and_a_bad_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let blank = dir.path().join("blank");
    std::fs::write(&blank, "\n").expect("write");
    let e = errors(&format!(
        "notify:\n  - url: \"http://127.0.0.1:7100/h\"\n    events: [rollback, rolback]\n    secret_file: {}\n  - url: \"127.0.0.1:7100\"\n    events: []\n    secret_file: {}\n    format: slack\n",
        missing.display(),
        blank.display()
    ));
    let all = e.join("\n");
    assert!(
        all.contains("t.yaml:6:24: notify[0].events[1]: unknown event kind `rolback`"),
        "{all}"
    );
    assert!(all.contains("notify[0].secret_file:"), "{all}");
    assert!(all.contains("notify[1].url:"), "{all}");
    assert!(
        all.contains("notify[1].events: name at least one event kind"),
        "{all}"
    );
    assert!(all.contains("notify[1].secret_file: is empty"), "{all}");
    assert_eq!(e.len(), 5, "{all}");
    let e = errors(
        "notify:\n  - url: \"http://127.0.0.1:1/\"\n    events: [rollback]\n    format: teams\n",
    );
    assert!(e[0].contains("teams"), "{e:?}");
}

#[test]
fn the_judge_keys_have_ranges() {
    let e = errors("rollback:\n  judge: sequential\n  confidence: 1\n  min_effect: 0\n");
    let all = e.join("\n");
    assert!(
        all.contains("t.yaml:6:15: rollback.confidence: must be above 0.5 and below 1"),
        "{all}"
    );
    assert!(
        all.contains("t.yaml:7:15: rollback.min_effect: must be above 0"),
        "{all}"
    );
    let e = errors("rollback:\n  judge: bayesian\n");
    assert!(e[0].contains("bayesian"), "{e:?}");
}

#[test]
fn a_secret_is_read_with_its_trailing_newline_trimmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("s");
    std::fs::write(&f, "s3cret \n").expect("write");
    assert_eq!(read_secret(&f).as_deref(), Some(&b"s3cret"[..]));
    std::fs::write(&f, " \n").expect("write");
    assert_eq!(read_secret(&f), None);
}
