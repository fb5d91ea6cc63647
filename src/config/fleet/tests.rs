//! The `fleet:` section: its defaults, each rule, and where its mistakes
//! are reported in a file.

use super::*;
use crate::config::validate::{parse_and_validate_in, Diagnostic, Environment};

const POOLS: &str = "pools:\n  blue: {endpoints: [\"127.0.0.1:8001\"]}\n  green: {endpoints: [\"127.0.0.1:8011\"]}\n";

fn parse(text: &str) -> Result<crate::config::Config, Vec<Diagnostic>> {
    parse_and_validate_in(text, "t.yaml", &Environment::default())
}

/// A section that breaks no rule, for tests to change one value of.
fn good() -> FleetConfig {
    FleetConfig {
        etcd: EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/switchyard/shop/".into(),
            tls: None,
            auth: None,
        },
        member_id: None,
        member_ttl: Duration::from_secs(5),
        write_fence: Duration::from_secs(3),
        min_reporting: MinReporting::Majority,
    }
}

/// The paths and messages of `f`'s problems.
fn broken(f: &FleetConfig) -> Vec<(String, String)> {
    problems(f)
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect()
}

#[track_caller]
fn only_problem_at(f: &FleetConfig, path: &str, words: &str) {
    let got = broken(f);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, path, "{got:?}");
    assert!(got[0].1.contains(words), "{:?} lacks {words:?}", got[0].1);
}

#[test]
fn the_good_section_breaks_no_rule() {
    assert_eq!(broken(&good()), vec![]);
}

#[test]
fn a_minimal_section_gets_the_documented_defaults_or_is_refused_without_the_feature() {
    let text = format!("{POOLS}fleet:\n  etcd:\n    endpoints: [\"http://127.0.0.1:2379\"]\n    prefix: /switchyard/shop/\n");
    let read = parse(&text);
    if SUPPORTED {
        assert_eq!(read.expect("valid").fleet, Some(good()));
    } else {
        let d = read.expect_err("a binary without fleet support refuses the section");
        assert_eq!(d.len(), 1, "{d:?}");
        // The `fleet` key itself: line 4, column 1.
        assert_eq!((d[0].line, d[0].column), (4, 1), "{d:?}");
        assert!(
            d[0].message.contains("built without fleet support"),
            "{d:?}"
        );
    }
}

#[test]
fn no_section_or_a_null_one_is_a_single_proxy_in_every_build() {
    assert_eq!(parse(POOLS).expect("valid").fleet, None);
    assert_eq!(
        parse(&format!("{POOLS}fleet: null\n"))
            .expect("valid")
            .fleet,
        None
    );
}

#[test]
fn mistakes_are_reported_at_their_value_in_the_file() {
    if !SUPPORTED {
        return; // the section is refused whole; see the test above
    }
    let text = format!(
        "{POOLS}fleet:\n  etcd:\n    endpoints: [\"ftp://127.0.0.1:2379\"]\n    prefix: /switchyard/shop\n  write_fence: 6s\n"
    );
    let d = parse(&text).expect_err("three mistakes");
    let got: Vec<_> = d
        .iter()
        .map(|d| (d.line, d.column, d.message.as_str()))
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!((got[0].0, got[0].1), (6, 17), "{got:?}");
    assert!(
        got[0].2.starts_with("fleet.etcd.endpoints[0]: `ftp://"),
        "{got:?}"
    );
    assert_eq!((got[1].0, got[1].1), (7, 13), "{got:?}");
    assert!(
        got[1].2.starts_with("fleet.etcd.prefix: must end with `/`"),
        "{got:?}"
    );
    assert_eq!((got[2].0, got[2].1), (8, 16), "{got:?}");
    assert!(got[2].2.contains("shorter than member_ttl (5s)"), "{got:?}");
}

#[test]
fn unknown_keys_and_a_missing_prefix_are_named() {
    let text = format!(
        "{POOLS}fleet:\n  etcd: {{endpoints: [\"http://127.0.0.1:2379\"]}}\n  member_tll: 5s\n"
    );
    let d = parse(&text).expect_err("two mistakes");
    let all: String = d.iter().map(|d| format!("{d}\n")).collect();
    assert!(all.contains("member_tll"), "{all}");
    assert!(all.contains("missing required key `prefix`"), "{all}");
}

#[test]
fn write_fence_must_be_below_member_ttl_and_above_zero() {
    let mut f = good();
    f.write_fence = Duration::from_secs(5);
    only_problem_at(&f, "write_fence", "shorter than member_ttl");
    f.write_fence = Duration::ZERO;
    only_problem_at(&f, "write_fence", "longer than 0");
    f.write_fence = Duration::from_millis(4999);
    assert_eq!(broken(&f), vec![]);
}

#[test]
fn member_ttl_is_at_least_etcds_minimum_lease_in_whole_seconds() {
    let mut f = good();
    f.member_ttl = Duration::from_millis(1999);
    f.write_fence = Duration::from_secs(1);
    only_problem_at(&f, "member_ttl", "at least 2s");
    f.member_ttl = Duration::from_millis(2500);
    only_problem_at(&f, "member_ttl", "whole number of seconds");
    f.member_ttl = Duration::from_secs(2);
    assert_eq!(broken(&f), vec![]);
}

#[test]
fn the_prefix_ends_with_a_slash() {
    let mut f = good();
    f.etcd.prefix = "/switchyard/shop".into();
    only_problem_at(&f, "etcd.prefix", "`/switchyard/shop/`");
}

#[test]
fn endpoints_are_http_urls_on_any_host_and_there_is_at_least_one() {
    let mut f = good();
    f.etcd.endpoints.clear();
    only_problem_at(&f, "etcd.endpoints", "at least one");
    for bad in [
        "127.0.0.1:2379",
        "ftp://127.0.0.1:2379",
        "http://",
        "http://127.0.0.1:2379/v3",
    ] {
        f.etcd.endpoints = vec![bad.into()];
        only_problem_at(&f, "etcd.endpoints.0", bad);
    }
    f.etcd.endpoints = vec![
        "http://etcd-0.etcd:2379".into(),
        "http://[::1]:2379".into(),
        "http://127.0.0.1:2379/".into(),
    ];
    assert_eq!(broken(&f), vec![]);
}

#[test]
fn https_goes_with_tls_and_http_without() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "x").expect("write");
    let mut f = good();
    f.etcd.endpoints = vec!["https://127.0.0.1:2379".into()];
    only_problem_at(&f, "etcd.endpoints.0", "`fleet.etcd.tls` is not set");
    f.etcd.tls = Some(EtcdTls {
        ca: ca.clone(),
        cert: None,
        key: None,
    });
    assert_eq!(broken(&f), vec![]);
    f.etcd.endpoints = vec!["http://127.0.0.1:2379".into()];
    only_problem_at(&f, "etcd.endpoints.0", "use an https URL");
}

#[test]
fn tls_and_auth_files_must_be_readable_and_cert_goes_with_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("f.pem");
    std::fs::write(&file, "x").expect("write");
    let missing = dir.path().join("missing.pem");
    let mut f = good();
    f.etcd.endpoints = vec!["https://127.0.0.1:2379".into()];
    f.etcd.tls = Some(EtcdTls {
        ca: missing.clone(),
        cert: Some(file.clone()),
        key: Some(file.clone()),
    });
    only_problem_at(&f, "etcd.tls.ca", "does not exist");
    f.etcd.tls = Some(EtcdTls {
        ca: file.clone(),
        cert: Some(file.clone()),
        key: None,
    });
    only_problem_at(&f, "etcd.tls", "`cert` needs `key`");
    f.etcd.tls = None;
    f.etcd.endpoints = vec!["http://127.0.0.1:2379".into()];
    f.etcd.auth = Some(EtcdAuth {
        user: "switchyard".into(),
        password_file: missing,
    });
    only_problem_at(&f, "etcd.auth.password_file", "does not exist");
    f.etcd.auth = Some(EtcdAuth {
        user: " ".into(),
        password_file: file,
    });
    only_problem_at(&f, "etcd.auth.user", "must not be empty");
}

#[test]
fn a_member_id_can_be_part_of_an_etcd_key() {
    let mut f = good();
    for bad in ["", "a/b", "a b", "a\nb"] {
        f.member_id = Some(bad.into());
        assert_eq!(broken(&f).len(), 1, "{bad:?}");
        assert_eq!(broken(&f)[0].0, "member_id");
    }
    f.member_id = Some("x".repeat(129));
    only_problem_at(&f, "member_id", "at most 128");
    f.member_id = Some("proxy-a.example:9901".into());
    assert_eq!(broken(&f), vec![]);
}

#[test]
fn the_member_id_defaults_to_hostname_and_admin_port() {
    let mut f = good();
    let admin: SocketAddr = "127.0.0.1:9901".parse().expect("addr");
    let id = f.member_id_for(admin);
    assert!(id.ends_with(":9901") && id.len() > ":9901".len(), "{id}");
    assert_eq!(member_id_rule(&id), Ok(()), "{id}");
    f.member_id = Some("a".into());
    assert_eq!(f.member_id_for(admin), "a");
}

#[test]
fn min_reporting_reads_all_majority_or_a_count() {
    let read = |v: &str| serde_yaml::from_str::<MinReporting>(v);
    assert_eq!(read("all").expect("all"), MinReporting::All);
    assert_eq!(read("majority").expect("majority"), MinReporting::Majority);
    assert_eq!(read("3").expect("3"), MinReporting::Count(3));
    assert!(read("most").is_err());
    assert!(read("-1").is_err());
    let mut f = good();
    f.min_reporting = MinReporting::Count(0);
    only_problem_at(&f, "min_reporting", "at least 1");
    assert_eq!(MinReporting::All.needed(3), 3);
    assert_eq!(MinReporting::Majority.needed(3), 2);
    assert_eq!(MinReporting::Majority.needed(4), 3);
    assert_eq!(MinReporting::Count(2).needed(5), 2);
}

#[test]
fn min_reporting_in_a_file_names_the_choices() {
    if !SUPPORTED {
        return;
    }
    let text = format!("{POOLS}fleet:\n  etcd: {{endpoints: [\"http://127.0.0.1:2379\"], prefix: /s/}}\n  min_reporting: most\n");
    let d = parse(&text).expect_err("bad value");
    assert_eq!((d[0].line, d[0].column), (6, 18), "{d:?}");
    assert!(
        d[0].message.contains("`all`, `majority` or a number"),
        "{d:?}"
    );
}
