use super::*;
use crate::control::document::StateDoc;
use crate::routing::Weights;
use std::io::Write as _;

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

const POOLS: &str =
    "pools: {blue: {endpoints: [\"127.0.0.1:1\"]}, green: {endpoints: [\"127.0.0.1:2\"]}}\n";

#[test]
fn valid_file_gets_a_summary() {
    let f = file(
        "pools:\n  blue: {endpoints: [\"127.0.0.1:8001\", \"127.0.0.1:8002\"]}\n  green: {endpoints: [\"127.0.0.1:8011\"], protocol: h2}\nstate_file: null\nrollout: {bake_time: 3d, step_interval: 1d}\n",
    );
    let r = run(f.path());
    let out = r.text();
    assert!(r.errors.is_empty(), "{out}");
    assert!(out.contains("configuration is valid"), "{out}");
    assert!(out.contains("listeners: 0.0.0.0:8080"), "{out}");
    assert!(out.contains("pool blue: 2 endpoints, http1"), "{out}");
    assert!(out.contains("pool green: 1 endpoint, h2"), "{out}");
    assert!(out.contains("initial weights: blue 100, green 0"), "{out}");
    assert!(out.contains("health check: GET /health every 2s"), "{out}");
    assert!(
        out.contains("rollout: 10, 25, 50, 75, 100 % every 1 day, then a bake of 3 days"),
        "{out}"
    );
    assert!(
        out.contains("switch: instant, writes not held (max_hold 2s)"),
        "{out}"
    );
    assert!(
        out.contains("automatic rollback: error rate > 0.01 for 3 evaluations"),
        "{out}"
    );
    assert!(out.contains("state file: none"), "{out}");
    assert!(
        out.contains("stored state: none (state_file: null); every start begins at traffic.initial (blue 100, green 0)"),
        "{out}"
    );
}

#[test]
fn summary_names_where_the_admin_token_comes_from() {
    let cfg = crate::config::parse(POOLS, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let with_env = Environment {
        admin_token_in_env: true,
        ..Environment::default()
    };
    assert!(summary(&cfg, &with_env)
        .contains(&"admin: 127.0.0.1:9901, token from $SWITCHYARD_ADMIN_TOKEN".to_string()));
    let without = Environment::default();
    assert!(summary(&cfg, &without)
        .contains(&"admin: 127.0.0.1:9901, no token (loopback only)".to_string()));
}

#[test]
fn invalid_file_lists_every_error_then_the_count() {
    let f = file("pools:\n  blue: {endpoints: []}\n  green: {endpoints: [\"127.0.0.1:8011\"]}\nretries: {attempts: 11}\n");
    let r = run(f.path());
    let out = r.text();
    let name = f.path().display().to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with(&format!("{name}:2:21: pools.blue.endpoints:")),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!("{name}:4:21: retries.attempts:")),
        "{out}"
    );
    assert_eq!(lines[2], "2 errors");
}

#[test]
fn unreadable_file_is_one_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.yaml");
    let out = run(&path).text();
    // The file, then the reason: no `:0:0:` that reads as a position.
    assert!(
        out.starts_with(&format!("{}: cannot read file", path.display())),
        "{out}"
    );
    assert!(out.ends_with("1 error"), "{out}");
}

#[test]
fn the_stored_state_is_named_with_where_it_is_and_what_it_overrides() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchyard.yaml");
    // Relative: beside the config file, wherever `check` runs from.
    std::fs::write(&config, format!("{POOLS}state_file: state.json\n")).expect("write");
    let state = dir.path().join("state.json");

    let out = run(&config).text();
    assert!(
        out.contains(&format!(
            "stored state: nothing yet in {}; a start begins at traffic.initial (blue 100, green 0)",
            state.display()
        )),
        "{out}"
    );

    let mut doc = StateDoc::initial(Weights::with_percent(PoolName::Green, 30.0), 0);
    doc.generation = 5;
    file::save(&state, &doc).expect("save");
    let r = run(&config);
    let out = r.text();
    assert!(
        out.contains(&format!(
            "stored state: {} holds blue 70, green 30 (live blue, generation 5, saved 1970-01-01T00:00:00.000Z); a start restores it, NOT traffic.initial (blue 100, green 0)",
            state.display()
        )),
        "{out}"
    );
    let j = r.json();
    assert_eq!(j["valid"], true);
    assert_eq!(j["stored_state"]["overrides_initial"], true);
    assert_eq!(j["stored_state"]["state"]["weights"]["green"], 30.0);

    std::fs::write(&state, "{not json").expect("write");
    let out = run(&config).text();
    assert!(out.contains("is unusable ("), "{out}");
    assert!(out.contains("a start sets it aside"), "{out}");
    // `check` only looks: the file is where it was.
    assert_eq!(std::fs::read_to_string(&state).expect("read"), "{not json");
}

#[test]
fn json_lists_the_errors_with_positions() {
    let f = file("pools:\n  blue: {endpoints: []}\n  green: {endpoints: [\"127.0.0.1:8011\"]}\n");
    let j = run(f.path()).json();
    assert_eq!(j["valid"], false);
    assert_eq!(j["errors"][0]["line"], 2);
    assert_eq!(j["errors"][0]["column"], 21);
    assert!(j["errors"][0]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("pools.blue.endpoints:")));
    assert!(j["stored_state"].is_null());
}
