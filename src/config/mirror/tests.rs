use super::*;

fn parse(yaml: &str) -> Result<crate::config::Config, Vec<crate::config::Diagnostic>> {
    let text = format!(
        "pools:\n  blue: {{ endpoints: [\"127.0.0.1:1\"] }}\n  green: {{ endpoints: [\"127.0.0.1:2\"] }}\n{yaml}"
    );
    crate::config::validate::parse_and_validate_in(&text, "t.yaml", &Default::default())
}

#[test]
fn defaults_copy_nothing_and_only_safe_methods() {
    let cfg = parse("").unwrap();
    assert_eq!(cfg.mirror, MirrorConfig::default());
    assert_eq!(cfg.mirror.percent, 0.0);
    assert!(cfg.mirror.unsafe_methods().is_empty());
    assert_eq!(cfg.mirror.max_body, ByteSize(65536));
}

#[test]
fn the_spec_example_reads() {
    let cfg = parse(
        "mirror:\n  percent: 10\n  methods: [GET, HEAD, POST]\n  max_body: 64KiB\n  max_inflight: 256\n  compare:\n    enabled: true\n    ignore_headers: [date, set-cookie, x-request-id]\n    ignore_json: [\"$.timestamp\"]\n    learn_noise: true\n  max_mismatch_rate: 0.01\n",
    )
    .unwrap();
    assert_eq!(cfg.mirror.percent, 10.0);
    assert_eq!(cfg.mirror.unsafe_methods(), ["POST"]);
    assert_eq!(cfg.mirror.max_mismatch_rate, Some(0.01));
}

#[test]
fn every_mistake_is_placed_at_its_value() {
    let errs = parse(
        "mirror:\n  percent: 100.5\n  methods: [GET, get, GET]\n  max_body: 1MiB\n  max_inflight: 0\n  compare:\n    ignore_headers: [\"bad header\"]\n    ignore_json: [timestamp, \"$.a[\"]\n  max_mismatch_rate: 2\n",
    )
    .unwrap_err();
    let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
    let want = [
        ("t.yaml:5:12: mirror.percent", "outside 0..=100"),
        ("t.yaml:6:18: mirror.methods[1]", "upper case"),
        ("t.yaml:6:23: mirror.methods[2]", "listed twice"),
        ("t.yaml:8:17: mirror.max_inflight", "1..="),
        (
            "t.yaml:10:22: mirror.compare.ignore_headers[0]",
            "not a header",
        ),
        (
            "t.yaml:11:19: mirror.compare.ignore_json[0]",
            "must start with `$`",
        ),
        ("t.yaml:11:30: mirror.compare.ignore_json[1]", "without `]`"),
        ("t.yaml:12:22: mirror.max_mismatch_rate", "between 0 and 1"),
    ];
    for (at, what) in want {
        assert!(
            text.iter().any(|t| t.starts_with(at) && t.contains(what)),
            "no `{at}` ... `{what}` in {text:#?}"
        );
    }
}

#[test]
fn a_size_in_no_known_unit_is_refused_at_its_value() {
    let errs = parse("mirror:\n  max_body: 64 furlongs\n").unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .to_string()
            .starts_with("t.yaml:5:13: mirror.max_body: invalid size (e.g. 65536, 64KiB, 1MiB) \"64 furlongs\": unknown size unit `furlongs`"),
        "{}",
        errs[0]
    );
}

#[test]
fn sizes_read_in_the_usual_units() {
    assert_eq!(ByteSize::parse("512"), Ok(512));
    assert_eq!(ByteSize::parse("64KiB"), Ok(65536));
    assert_eq!(ByteSize::parse("64 KiB"), Ok(65536));
    assert_eq!(ByteSize::parse("1MiB"), Ok(1 << 20));
    assert_eq!(ByteSize::parse("10kB"), Ok(10_000));
    assert!(ByteSize::parse("KiB").is_err());
    assert!(ByteSize::parse("99999999999999999999MiB").is_err());
    assert!(ByteSize::parse("1GiB").unwrap_err().contains("unit"));
}

#[test]
fn json_paths_parse_print_and_cover() {
    let p = JsonPath::parse("$.items[*].id").unwrap();
    assert_eq!(p.to_string(), "$.items[*].id");
    let concrete = JsonPath::parse("$.items[3].id.sub").unwrap();
    assert!(p.covers(&concrete.0));
    assert!(!p.covers(&JsonPath::parse("$.items[3].name").unwrap().0));
    assert!(!p.covers(&JsonPath::parse("$.items").unwrap().0));
    let q = JsonPath::parse("$['a.b'][\"c\"].*[0]").unwrap();
    assert_eq!(
        q.0,
        [
            Seg::Key("a.b".into()),
            Seg::Key("c".into()),
            Seg::AnyKey,
            Seg::Index(0)
        ]
    );
    assert_eq!(q.to_string(), "$[\"a.b\"].c.*[0]");
    assert_eq!(JsonPath::parse("$").unwrap().0, []);
    assert!(JsonPath::parse("$.").is_err());
    assert!(JsonPath::parse("$[x]").is_err());
    assert!(JsonPath::parse("$x").is_err());
    assert_eq!(concrete.generalized().to_string(), "$.items[*].id.sub");
    // Printed paths read back as themselves.
    for s in ["$.a", "$[\"a b\"][2].c", "$[*].*"] {
        assert_eq!(JsonPath::parse(s).unwrap().to_string(), s);
    }
}
