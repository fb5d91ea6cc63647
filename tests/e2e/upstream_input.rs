//! Bad upstream bytes: the HTTP/1.1 client's response-head parser and
//! chunked decoder never panic, never loop, refuse clearly, and answer the
//! same however the bytes arrive. The fuzz targets in `fuzz/` (`h1_response`,
//! `h1_chunked`) run the same entry points (`switchyard::fuzzing`); their
//! seed corpus is replayed here on every `cargo test`, next to property
//! tests.

use crate::operator_input::corpus;
use proptest::prelude::*;
use switchyard::fuzzing::{self, End};

fn seed<'a>(seeds: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    let (_, data) = seeds
        .iter()
        .find(|(p, _)| p.ends_with(&format!("/{name}")))
        .unwrap_or_else(|| panic!("no seed {name}"));
    data
}

#[test]
fn the_h1_response_fuzz_corpus_replays_cleanly() {
    let seeds = corpus("h1_response");
    assert!(seeds.len() >= 30, "the h1_response corpus lost its seeds");
    for (_, data) in &seeds {
        fuzzing::h1_response(data);
    }
    // What the client makes of each kind of head (the first byte of a seed
    // says how it is read; bit 0, a HEAD request).
    for (name, want) in [
        ("length", "200 length 5 keep-alive"),
        ("length-in-reads", "200 length 5 keep-alive"),
        ("head-request", "200 length 0 keep-alive"),
        ("chunked", "200 chunked keep-alive"),
        ("chunked-not-last", "200 until-close close"),
        ("te-and-length", "200 chunked keep-alive"),
        ("interim-100", "200 length 0 keep-alive"),
        ("interim-103-in-reads", "201 length 0 keep-alive"),
        ("interim-only", "more needed"),
        (
            "switching-101",
            "error: 101 to a request that asked no upgrade",
        ),
        ("no-content-204", "204 length 0 keep-alive"),
        ("not-modified-304", "304 length 0 keep-alive"),
        ("http10", "200 length 2 close"),
        ("connection-close", "200 length 2 close"),
        ("no-length", "200 until-close close"),
        (
            "length-conflict",
            "error: conflicting Content-Length values",
        ),
        ("length-list", "200 length 3 keep-alive"),
        ("length-negative", "error: invalid Content-Length"),
        ("length-20-digits", "error: invalid Content-Length"),
        (
            "length-19-digits",
            "200 length 9999999999999999999 keep-alive",
        ),
        ("too-many-fields", "error: too many response header fields"),
        ("fields-100", "200 until-close close"),
        ("status-999", "999 length 0 keep-alive"),
        ("status-099", "error: invalid status code"),
        ("partial", "more needed"),
        ("truncated-status", "more needed"),
    ] {
        let data = seed(&seeds, name);
        let got = fuzzing::h1_head_summary(&data[1..], data[0] & 1 == 1);
        assert_eq!(got, want, "{name}");
    }
    for refused in [
        "obs-fold",
        "status-4-digits",
        "space-before-colon",
        "nul-in-value",
        "garbage",
        "http2-preface",
        "version-2",
    ] {
        let data = seed(&seeds, refused);
        let got = fuzzing::h1_head_summary(&data[1..], false);
        assert!(got.starts_with("error: "), "{refused}: {got}");
    }
}

#[test]
fn the_h1_chunked_fuzz_corpus_replays_cleanly() {
    let seeds = corpus("h1_chunked");
    assert!(seeds.len() >= 20, "the h1_chunked corpus lost its seeds");
    for (_, data) in &seeds {
        fuzzing::h1_chunked(data);
    }
    let decode = |name: &str| fuzzing::decode_chunked(&seed(&seeds, name)[1..], 1);
    for (name, body) in [
        ("simple", &b"hello world"[..]),
        ("extensions", b"hello"),
        ("whitespace-before-ext", b"hello"),
        ("uppercase-hex", b"0123456789"),
        ("leading-zeros", b"hello"),
        ("size-line-4096", b"hello"),
    ] {
        let got = decode(name);
        assert_eq!(got.end, End::Done { left: 0 }, "{name}");
        assert_eq!(got.body, body, "{name}");
    }
    let trailers = decode("trailers").trailers.expect("trailers");
    assert_eq!(trailers["x-sum"], "1");
    assert_eq!(trailers["y"], "2");
    assert_eq!(decode("after-the-end").end, End::Done { left: 17 });
    for (name, why) in [
        ("sixteen-digits", "invalid chunk size"),
        ("negative", "invalid chunk size"),
        ("no-digits", "invalid chunk size"),
        ("garbage-after-size", "invalid chunk size"),
        ("no-crlf-after-data", "chunk data not followed by CRLF"),
        ("trailer-malformed", "malformed trailer section"),
        ("size-line-too-long", "chunk-size line too long"),
        ("size-line-unended", "chunk-size line too long"),
    ] {
        assert_eq!(decode(name).end, End::Invalid(why.into()), "{name}");
    }
    // Bare LF ends no line: the size line goes on (and a CRLF later ends it
    // as an invalid one).
    for unfinished in ["unfinished", "largest-size", "empty", "bare-lf"] {
        assert_eq!(decode(unfinished).end, End::More, "{unfinished}");
    }
}

/// Response heads as upstreams write them, and as they garble them.
fn response_head() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        Just("Content-Length: 5".to_string()),
        Just("Content-Length: 5, 5".to_string()),
        Just("Content-Length: 6".to_string()),
        Just("Transfer-Encoding: chunked".to_string()),
        Just("Transfer-Encoding: gzip".to_string()),
        Just("Connection: close".to_string()),
        Just("Connection: keep-alive".to_string()),
        "[a-zA-Z-]{1,12}: [ -~]{0,20}",
        "[ -~]{0,30}",
    ];
    let head = (
        prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2", "http/1.1"]),
        prop::sample::select(vec![
            "100", "101", "103", "200", "204", "304", "404", "999", "099", "20",
        ]),
        prop::collection::vec(field, 0..6),
        prop::sample::select(vec!["\r\n", "\n"]),
    )
        .prop_map(|(version, status, fields, eol)| {
            let mut h = format!("{version} {status} Reason{eol}");
            for f in fields {
                h.push_str(&f);
                h.push_str(eol);
            }
            h.push_str(eol);
            h.into_bytes()
        });
    (
        any::<u8>(),
        prop::collection::vec(head, 1..3),
        prop::collection::vec(any::<u8>(), 0..20),
    )
        .prop_map(|(how, heads, tail)| {
            let mut data = vec![how];
            data.extend(heads.concat());
            data.extend(tail);
            data
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_upstream_head_is_parsed_soundly_however_it_is_read(data in response_head()) {
        fuzzing::h1_response(&data);
    }

    #[test]
    fn any_bytes_as_a_head_never_panic(data in prop::collection::vec(any::<u8>(), 0..400)) {
        fuzzing::h1_response(&data);
    }

    #[test]
    fn any_bytes_as_a_chunked_body_decode_the_same_however_they_are_read(
        data in prop::collection::vec(any::<u8>(), 0..400)
    ) {
        fuzzing::h1_chunked(&data);
    }

    #[test]
    fn near_valid_chunked_bodies_decode_the_same_however_they_are_read(
        read in 0u8..=255,
        body in "([0-9a-fA-F]{1,3}( ?;[a-z=\"]{0,6})?\r?\n[ -~]{0,20}\r?\n){0,5}0\r\n([a-z]: [a-z]{0,5}\r\n)?\r?\n?",
    ) {
        let mut data = vec![read];
        data.extend_from_slice(body.as_bytes());
        fuzzing::h1_chunked(&data);
    }
}
