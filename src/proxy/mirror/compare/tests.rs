use super::*;

fn plan(ignore_headers: &[&str], ignore_json: &[&str]) -> ComparePlan {
    ComparePlan {
        ignore_headers: ignore_headers
            .iter()
            .map(|h| HeaderName::from_bytes(h.as_bytes()).unwrap())
            .collect(),
        ignore_json: ignore_json
            .iter()
            .map(|p| JsonPath::parse(p).unwrap())
            .collect(),
        learn_noise: true,
    }
}

fn answer(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    Answer {
        status,
        headers: h,
        body: Captured::whole(body),
    }
}

fn fields(d: &[Difference]) -> Vec<(&str, &str, &str)> {
    d.iter()
        .map(|d| {
            (
                d.diff.field.as_str(),
                d.diff.live.as_str(),
                d.diff.candidate.as_str(),
            )
        })
        .collect()
}

#[test]
fn the_same_answer_matches_whatever_the_key_order() {
    let a = answer(
        200,
        &[("content-type", "application/json")],
        br#"{"a": 1, "b": [1, 2]}"#,
    );
    let b = answer(
        200,
        &[("content-type", "application/json")],
        br#"{"b":[1,2],"a":1}"#,
    );
    assert!(compare(&a, &b, &plan(&[], &[])).is_empty());
}

#[test]
fn status_headers_and_json_fields_are_each_named_with_both_values() {
    let a = answer(
        200,
        &[
            ("x-v", "1"),
            ("x-only-live", "y"),
            ("date", "Mon"),
            ("connection", "close"),
        ],
        br#"{"items": [{"id": 1, "price": 10}], "total": 10, "at": 5}"#,
    );
    let b = answer(
        201,
        &[("x-v", "2"), ("date", "Tue")],
        br#"{"items": [{"id": 1, "price": 12}, {"id": 2}], "total": 10, "at": 6}"#,
    );
    let d = compare(&a, &b, &plan(&["date"], &["$.at"]));
    assert_eq!(
        fields(&d),
        [
            ("status", "200", "201"),
            ("header:x-only-live", "y", "(absent)"),
            ("header:x-v", "1", "2"),
            ("$.items[0].price", "10", "12"),
            ("$.items[1]", "(absent)", r#"{"id":2}"#),
        ]
    );
    // Noise is learned with indices made [*].
    assert_eq!(d[3].key, "$.items[*].price");
}

#[test]
fn an_ignored_path_covers_everything_below_it() {
    let a = answer(
        200,
        &[],
        br#"{"meta": {"t": 1, "host": "a"}, "v": [{"ts": 1}, {"ts": 2}]}"#,
    );
    let b = answer(
        200,
        &[],
        br#"{"meta": {"t": 2}, "v": [{"ts": 3}, {"ts": 4}]}"#,
    );
    assert!(compare(&a, &b, &plan(&[], &["$.meta", "$.v[*].ts"])).is_empty());
}

#[test]
fn other_bodies_compare_byte_for_byte_and_long_ones_by_digest() {
    let d = compare(
        &answer(200, &[], b"hello"),
        &answer(200, &[], b"hellp"),
        &plan(&[], &[]),
    );
    assert_eq!(fields(&d), [("body", "hello", "hellp")]);
    let big = vec![b'x'; COMPARE_CAP + 10];
    let mut other = big.clone();
    *other.last_mut().unwrap() = b'y';
    assert!(compare(
        &answer(200, &[], &big),
        &answer(200, &[], &big),
        &plan(&[], &[])
    )
    .is_empty());
    let d = compare(
        &answer(200, &[], &big),
        &answer(200, &[], &other),
        &plan(&[], &[]),
    );
    assert_eq!(d.len(), 1);
    assert!(d[0].diff.live.starts_with("65546 bytes, sha256 "), "{d:?}");
    assert_ne!(d[0].diff.live, d[0].diff.candidate);
    // Shown values are cut short.
    let long_a = vec![b'a'; 1000];
    let d = compare(
        &answer(200, &[], &long_a),
        &answer(200, &[], b"b"),
        &plan(&[], &[]),
    );
    assert_eq!(d[0].diff.live.chars().count(), SHOWN_MAX + 1);
}

#[test]
fn credentials_are_never_shown() {
    let a = answer(200, &[("set-cookie", "session=secret1")], b"");
    let b = answer(200, &[("set-cookie", "session=secret2")], b"");
    let d = compare(&a, &b, &plan(&[], &[]));
    assert_eq!(fields(&d), [("header:set-cookie", "(hidden)", "(hidden)")]);
}

#[test]
fn many_differences_are_capped_with_a_count() {
    let a: String = format!(
        "[{}]",
        (0..40).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    );
    let b: String = format!(
        "[{}]",
        (0..40)
            .map(|i| (i + 1).to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let d = compare(
        &answer(200, &[], a.as_bytes()),
        &answer(200, &[], b.as_bytes()),
        &plan(&[], &[]),
    );
    assert_eq!(d.len(), FIELDS_MAX + 1);
    assert_eq!(d[FIELDS_MAX].diff.live, "24 more differences");
}

#[test]
fn deep_json_is_compared_without_recursing_without_end() {
    let deep = |leaf: &str| format!("{}{leaf}{}", "[".repeat(200), "]".repeat(200));
    let (a, b) = (deep("1"), deep("2"));
    let d = compare(
        &answer(200, &[], a.as_bytes()),
        &answer(200, &[], b.as_bytes()),
        &plan(&[], &[]),
    );
    // serde_json stops at 128 levels: these are compared as bytes.
    assert_eq!(d.len(), 1);
    let (a, b) = (
        deep("1").replace("[[", "[").replace("]]", "]"),
        deep("2").replace("[[", "[").replace("]]", "]"),
    );
    let d = compare(
        &answer(200, &[], a.as_bytes()),
        &answer(200, &[], b.as_bytes()),
        &plan(&[], &[]),
    );
    assert_eq!(d.len(), 1, "{d:?}");
}
