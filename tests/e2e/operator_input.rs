//! Bad operator input: the config parser and the admin API's bodies never
//! panic and always refuse clearly. Property tests here; the fuzz targets in
//! `fuzz/` run the same entry points (`switchyard::fuzzing`) and their seed
//! corpus is replayed below on every `cargo test`.

use proptest::prelude::*;
use std::path::Path;
use switchyard::admin::routes::{parse_body, BODY_ROUTES};
use switchyard::fuzzing;

/// The seed corpus of a fuzz target, as (path, bytes), sorted by path.
pub(crate) fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_config_fuzz_corpus_replays_cleanly() {
    let seeds = corpus("config");
    assert!(seeds.len() >= 30, "the config corpus lost its seeds");
    for (path, data) in &seeds {
        let started = std::time::Instant::now();
        fuzzing::config(data);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{path} took {:?} to parse",
            started.elapsed()
        );
    }
    // The seeds that must be refused are refused, with a position.
    for bad in [
        "unknown-key.yaml",
        "billion-laughs.yaml",
        "deep-nesting.yaml",
        "weights-nan-inf.yaml",
    ] {
        let (_, data) = seeds.iter().find(|(p, _)| p.ends_with(bad)).unwrap();
        let err =
            switchyard::config::parse(std::str::from_utf8(data).unwrap(), bad).expect_err(bad);
        assert!(
            err.diagnostics().iter().all(|d| d.line >= 1),
            "{bad}: {err}"
        );
    }
    // An error at the end of input points into the file, not past it.
    let err = switchyard::config::parse("{", "x.yaml").unwrap_err();
    assert_eq!(
        err.diagnostics()
            .iter()
            .map(|d| (d.line, d.column))
            .collect::<Vec<_>>(),
        [(1, 2)],
        "{err}"
    );
}

#[test]
fn the_admin_body_fuzz_corpus_replays_cleanly() {
    let seeds = corpus("admin_body");
    assert!(seeds.len() >= 20, "the admin body corpus lost its seeds");
    for (_, data) in &seeds {
        fuzzing::admin_body(data);
    }
    let status = |name: &str| {
        let (_, d) = seeds.iter().find(|(p, _)| p.ends_with(name)).unwrap();
        let route = BODY_ROUTES[usize::from(d[0]) % BODY_ROUTES.len()];
        parse_body(route, &d[1..]).map_or_else(|e| e.status.as_u16(), |()| 200)
    };
    for (name, want) in [
        ("weights-ok", 200),
        ("weights-sum", 422),
        ("weights-array", 422),
        ("weights-unknown", 422),
        ("weights-gen", 422),
        ("rollout-steps", 422),
        ("pause-empty", 200),
        ("reload-garbage", 400),
        ("rearm-deep", 400),
        ("rollback-too-large", 413),
    ] {
        assert_eq!(status(name), want, "{name}");
    }
}

/// Pieces of YAML that an edit by hand (or a bad template) inserts.
const YAML_BITS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "\n",
    "  ",
    "\t",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "\"",
    "'",
    "#",
    "!!str ",
    "!!binary ",
    "null",
    "~",
    "1e999",
    "-1",
    "0x10",
    ".nan",
    "<<: *a",
    "blue",
    "green",
    "endpoints",
    "steps",
    "1s",
    "---\n",
    "|\n",
    ">-\n",
    "?",
    "%YAML 1.2\n",
    "\u{feff}",
    "é",
    "\u{202e}",
];

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, usize),
    Delete(usize, usize),
    DuplicateLine(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0..YAML_BITS.len()).prop_map(|(at, bit)| Edit::Insert(at, bit)),
        (any::<usize>(), 1usize..40).prop_map(|(at, n)| Edit::Delete(at, n)),
        any::<usize>().prop_map(Edit::DuplicateLine),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut s: Vec<char> = text.chars().collect();
    for e in edits {
        match *e {
            Edit::Insert(at, bit) => {
                let at = at % (s.len() + 1);
                s.splice(at..at, YAML_BITS[bit].chars());
            }
            Edit::Delete(at, n) if !s.is_empty() => {
                let at = at % s.len();
                let end = (at + n).min(s.len());
                s.drain(at..end);
            }
            Edit::Delete(..) => {}
            Edit::DuplicateLine(i) => {
                let text: String = s.iter().collect();
                let lines: Vec<&str> = text.split_inclusive('\n').collect();
                if !lines.is_empty() {
                    let i = i % lines.len();
                    let mut out: Vec<&str> = lines.clone();
                    out.insert(i, lines[i]);
                    s = out.concat().chars().collect();
                }
            }
        }
    }
    s.into_iter().collect()
}

const EXAMPLE: &str = include_str!("../../config/switchyard.example.yaml");

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "blue", "green", "30s", "0s", "-1s", "", "purple", "1e3", "BLUE",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let keys = prop::sample::select(vec![
            "blue",
            "green",
            "to",
            "force",
            "steps",
            "step_interval",
            "reason",
            "if_generation",
            "extra",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(keys, inner, 0..5).prop_map(|m| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_text_is_a_valid_config_or_clearly_refused(
        chars in prop::collection::vec(any::<char>(), 0..300)
    ) {
        let text: String = chars.into_iter().collect();
        fuzzing::config(text.as_bytes());
    }

    #[test]
    fn a_hand_edited_example_is_valid_or_clearly_refused(
        edits in prop::collection::vec(edit(), 1..6)
    ) {
        fuzzing::config(apply(EXAMPLE, &edits).as_bytes());
    }

    #[test]
    fn a_well_formed_config_reads_back_what_it_says(
        blue_bp in 0u32..=10_000,
        attempts in 0u32..=10,
        failures in 1u32..=1000,
        connect_ms in 1u64..=600_000,
        ports in prop::collection::btree_set(1u16..=65535, 2..6),
        max_connections in 1usize..=1_000_000,
    ) {
        let ports: Vec<u16> = ports.into_iter().collect();
        let (b, g) = ports.split_at(ports.len() / 2);
        let list = |ps: &[u16]| ps.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect::<Vec<_>>().join(", ");
        let blue = f64::from(blue_bp) / 100.0;
        let green = (10_000 - blue_bp) as f64 / 100.0;
        let yaml = format!(
            "pools:\n  blue: {{endpoints: [{}]}}\n  green: {{endpoints: [{}]}}\n\
             traffic:\n  initial: {{blue: {blue}, green: {green}}}\n\
             retries: {{attempts: {attempts}}}\noutlier_detection: {{consecutive_failures: {failures}}}\n\
             timeouts: {{connect: {connect_ms}ms}}\nlimits: {{max_connections: {max_connections}}}\nstate_file: null\n",
            list(b), list(g)
        );
        let c = switchyard::config::parse(&yaml, "gen.yaml")
            .map_err(|e| TestCaseError::fail(format!("{e}\n{yaml}")))?;
        prop_assert_eq!(c.traffic.initial.blue, blue);
        prop_assert_eq!(c.traffic.initial.green, green);
        prop_assert_eq!(c.retries.attempts, attempts);
        prop_assert_eq!(c.outlier_detection.consecutive_failures, failures);
        prop_assert_eq!(c.timeouts.connect.as_millis() as u64, connect_ms);
        prop_assert_eq!(c.limits.max_connections, max_connections);
        prop_assert_eq!(c.pools.blue.endpoints.len(), b.len());
    }

    #[test]
    fn any_json_body_is_accepted_or_refused_with_400_413_or_422(
        route in 0..BODY_ROUTES.len(),
        body in json_value(),
    ) {
        let mut data = vec![route as u8];
        data.extend_from_slice(body.to_string().as_bytes());
        fuzzing::admin_body(&data);
    }

    #[test]
    fn any_bytes_as_a_body_are_accepted_or_refused_clearly(
        data in prop::collection::vec(any::<u8>(), 0..200)
    ) {
        fuzzing::admin_body(&data);
    }

    #[test]
    fn every_split_in_hundredths_is_accepted_and_others_refused(
        blue_bp in 0u32..=10_000,
        off in -50i32..=50,
    ) {
        let blue = f64::from(blue_bp) / 100.0;
        let green = f64::from(10_000 - blue_bp as i32 + off) / 100.0;
        let body = format!(r#"{{"blue": {blue}, "green": {green}}}"#);
        let got = parse_body("/api/v1/weights", body.as_bytes());
        if off == 0 {
            prop_assert!(got.is_ok(), "{body}: {got:?}");
        } else {
            prop_assert_eq!(got.map_err(|e| e.status.as_u16()), Err(422), "{}", body);
        }
    }
}
