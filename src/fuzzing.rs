//! Entry points for fuzzing and property tests of what comes from outside:
//! operator input (the config parser, the admin API's request bodies),
//! upstream bytes (the HTTP/1.1 client's response-head parser and chunked
//! decoder) and the answers the mirror compares. `fuzz/` (cargo fuzz),
//! `tests/e2e/operator_input.rs`, `tests/e2e/upstream_input.rs` and
//! `tests/e2e/mirror.rs` (which replay the fuzz corpus and run property
//! tests) call these same functions, so a finding of one is a test of the
//! other.
//!
//! Each panics when an invariant breaks: never a panic inside, always a
//! clear error (a diagnostic with a message, a status of 400, 413 or 422,
//! a protocol error), and the same answer however the bytes arrive. It
//! owns no behaviour of the proxy and must not be called by it.

use crate::upstream::h1::{self, ChunkState, Framing, H1Error, Step};
use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Parse `data` as a config file. Valid UTF-8 that is not a valid config
/// must give at least one diagnostic, each with a message.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = crate::config::parse(text, "fuzz.yaml") {
        let diags = e.diagnostics();
        assert!(!diags.is_empty(), "an invalid config without a diagnostic");
        // YAML breaks lines at CRLF, CR and LF alike.
        let lines = text.replace("\r\n", "\n").matches(['\r', '\n']).count() + 1;
        for d in &diags {
            assert!(
                !d.message.trim().is_empty(),
                "a diagnostic without a message"
            );
            assert!(
                d.line <= lines,
                "diagnostic on line {} of {lines}: {d}",
                d.line
            );
        }
    }
}

/// The first byte picks an admin route that reads a body; the rest is the
/// body. A refusal must be 400, 413 or 422, with a code and a message.
pub fn admin_body(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let routes = crate::admin::routes::BODY_ROUTES;
    let route = routes[usize::from(pick) % routes.len()];
    if let Err(e) = crate::admin::routes::parse_body(route, body) {
        assert!(
            matches!(e.status.as_u16(), 400 | 413 | 422),
            "{route}: status {} for a bad body",
            e.status
        );
        assert!(
            !e.code.is_empty() && !e.message.is_empty(),
            "{route}: an empty error"
        );
    }
}

/// Upstream bytes as a response head. The first byte says how they arrive:
/// bit 0, the request was `HEAD`; the other bits, the size of each read
/// (1 to 128 bytes). The rest is what the upstream sent.
///
/// Parsed at once and read by read, the answer is the same; a parsed head
/// has a final status (200 to 999), at most 100 fields whose values are
/// slices of the input (not copies) without CR or LF, and a framing that
/// agrees with its fields.
pub fn h1_response(data: &[u8]) {
    let Some((&how, sent)) = data.split_first() else {
        return;
    };
    let is_head = how & 1 == 1;
    let read = usize::from(how >> 1) + 1;

    let mut buf = BytesMut::from(sent);
    let start = buf.as_ptr() as usize;
    let whole = h1::parse_head(&mut buf, is_head);
    let consumed = sent.len() - buf.len();
    let mut pieces = BytesMut::new();
    let mut fed = 0;
    let mut by_reads = Ok(None);
    for piece in sent.chunks(read) {
        pieces.extend_from_slice(piece);
        fed += piece.len();
        by_reads = h1::parse_head(&mut pieces, is_head);
        if !matches!(by_reads, Ok(None)) {
            break;
        }
    }
    match (&whole, &by_reads) {
        (Ok(None), Ok(None)) => {}
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "at once and by reads"),
        (Ok(Some(a)), Ok(Some(b))) => {
            assert_eq!(a.status, b.status);
            assert_eq!(a.headers, b.headers);
            assert_eq!(a.framing, b.framing);
            assert_eq!(a.keep_alive, b.keep_alive);
            assert_eq!(
                consumed,
                fed - pieces.len(),
                "at once and by reads took apart"
            );
        }
        (a, b) => panic!(
            "at once: {}; by reads of {read}: {}",
            outcome(a),
            outcome(b)
        ),
    }
    let Ok(Some(head)) = whole else {
        return;
    };

    assert!(
        (200..=999).contains(&head.status.as_u16()),
        "status {}",
        head.status
    );
    assert!(head.headers.len() <= h1::MAX_HEADERS);
    let taken = &sent[..consumed];
    // A head ends with an empty line; httparse takes LF for CRLF.
    assert!(taken.ends_with(b"\n\n") || taken.ends_with(b"\n\r\n"));
    for (name, value) in &head.headers {
        let v = value.as_bytes();
        let at = v.as_ptr() as usize;
        assert!(
            v.is_empty() || (at >= start && at + v.len() <= start + consumed),
            "{name}'s value is not a slice of the head"
        );
        assert!(
            !v.contains(&b'\r') && !v.contains(&b'\n'),
            "{name}: CR or LF"
        );
        let n = name.as_str().as_bytes();
        assert!(
            taken.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n)),
            "{name} is not in the head"
        );
    }

    let h = &head.headers;
    let no_body = is_head || matches!(head.status.as_u16(), 204 | 304);
    match head.framing {
        Framing::Length(0) if no_body => {}
        _ if no_body => panic!("{} to HEAD={is_head}: {:?}", head.status, head.framing),
        Framing::Length(n) => {
            assert!(!h.contains_key(header::TRANSFER_ENCODING));
            for v in h.get_all(header::CONTENT_LENGTH) {
                for part in v.as_bytes().split(|&b| b == b',') {
                    let part = std::str::from_utf8(part.trim_ascii()).unwrap();
                    assert_eq!(part.parse::<u64>().ok(), Some(n), "content-length {v:?}");
                }
            }
        }
        Framing::Chunked(state) => {
            assert_eq!(state, ChunkState::Size);
            let last = h
                .get_all(header::TRANSFER_ENCODING)
                .iter()
                .flat_map(|v| v.to_str().ok())
                .flat_map(|s| s.split(','))
                .map(str::trim)
                .rfind(|t| !t.is_empty());
            assert!(last.is_some_and(|t| t.eq_ignore_ascii_case("chunked")));
        }
        Framing::Close => assert!(!head.keep_alive, "read to the close yet kept alive"),
    }
    if head.keep_alive {
        let close = h
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        assert!(!close, "kept alive after Connection: close");
    }
}

/// What the head parser makes of `sent`, in words, for tests to name:
/// "200 length 5 keep-alive", "304 length 0 close", "200 chunked
/// keep-alive", "200 until-close close", "more needed" or "error: …".
pub fn h1_head_summary(sent: &[u8], is_head: bool) -> String {
    let mut buf = BytesMut::from(sent);
    match h1::parse_head(&mut buf, is_head) {
        Ok(Some(head)) => {
            let framing = match head.framing {
                Framing::Length(n) => format!("length {n}"),
                Framing::Chunked(_) => "chunked".into(),
                Framing::Close => "until-close".into(),
            };
            let conn = if head.keep_alive {
                "keep-alive"
            } else {
                "close"
            };
            format!("{} {framing} {conn}", head.status.as_u16())
        }
        Ok(None) => "more needed".into(),
        Err(e) => format!("error: {e}"),
    }
}

fn outcome<T>(r: &Result<Option<T>, H1Error>) -> String {
    match r {
        Ok(Some(_)) => "a head".into(),
        Ok(None) => "more needed".into(),
        Err(e) => format!("error {e}"),
    }
}

/// Upstream bytes as a chunked body, and a valid chunked encoding made from
/// them. The first byte sets the size of each read (1 to 256 bytes).
///
/// Decoded at once and read by read, the bytes give the same body, the same
/// trailers and the same end (done, more needed, or the same error); every
/// step consumes input (no endless loop) and the body is never longer than
/// the input. The valid encoding, whatever its chunk sizes, hex case,
/// leading zeros, extensions and trailers, decodes to exactly its chunks.
pub fn h1_chunked(data: &[u8]) {
    let Some((&how, sent)) = data.split_first() else {
        return;
    };
    let read = usize::from(how) + 1;
    let whole = decode_chunked(sent, sent.len().max(1));
    let by_reads = decode_chunked(sent, read);
    assert_eq!(whole, by_reads, "at once and by reads of {read}");
    assert!(whole.body.len() <= sent.len());

    let (encoded, body, trailers) = encode_chunked(data);
    let got = decode_chunked(&encoded, encoded.len().max(1));
    let expect = Decoded {
        body,
        trailers,
        end: End::Done { left: 0 },
    };
    assert_eq!(got, expect, "{:?}", String::from_utf8_lossy(&encoded));
    assert_eq!(decode_chunked(&encoded, read), expect, "reads of {read}");
}

/// What a chunked decoding gave.
#[derive(Debug, PartialEq)]
pub struct Decoded {
    pub body: Vec<u8>,
    pub trailers: Option<HeaderMap>,
    pub end: End,
}

/// How a chunked decoding ended.
#[derive(Debug, PartialEq)]
pub enum End {
    /// The body ended; `left` bytes followed it.
    Done {
        left: usize,
    },
    /// The input ended first.
    More,
    Invalid(String),
}

/// Decode `sent` as a chunked body arriving in reads of `read` bytes, as
/// the response body does; panics when a step consumes nothing.
pub fn decode_chunked(sent: &[u8], read: usize) -> Decoded {
    let mut buf = BytesMut::new();
    let mut state = ChunkState::Size;
    let mut out = Decoded {
        body: Vec::new(),
        trailers: None,
        end: End::More,
    };
    let mut fed = 0;
    for piece in sent.chunks(read) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            let before = buf.len();
            let step = match h1::step_chunked(&mut buf, state) {
                Ok(step) => step,
                Err(e) => {
                    out.end = End::Invalid(e.to_string());
                    return out;
                }
            };
            if !matches!(step, Step::More) {
                assert!(buf.len() < before, "{state:?}: a step consumed nothing");
            }
            match step {
                Step::Frame(next, frame) => {
                    out.body
                        .extend_from_slice(frame.data_ref().expect("a data frame"));
                    state = next;
                }
                Step::Next(next) => state = next,
                Step::End(trailers) => {
                    out.trailers = trailers;
                    // What was read after the body, and what was not read yet.
                    out.end = End::Done {
                        left: buf.len() + sent.len() - fed,
                    };
                    return out;
                }
                Step::More => break,
            }
        }
    }
    out
}

/// Bytes the fuzzer gave, read one at a time (zero past the end).
struct Draw<'a>(&'a [u8]);

impl Draw<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// A valid chunked encoding drawn from `data`: 0 to 7 chunks of 1 to 303 bytes
/// whose size lines vary in case, leading zeros, whitespace and extensions,
/// then 0 to 3 trailer fields. Returns the encoding, the body and the
/// trailers it carries.
pub fn encode_chunked(data: &[u8]) -> (Vec<u8>, Vec<u8>, Option<HeaderMap>) {
    let mut d = Draw(data);
    let mut out = Vec::new();
    let mut body = Vec::new();
    let chunks = d.byte() % 8;
    for _ in 0..chunks {
        let style = d.byte();
        let want = usize::from(d.byte()) + usize::from(style & 0x30);
        let data = d.take(want.max(1)).to_vec();
        let data = if data.is_empty() { vec![b'x'] } else { data };
        size_line(&mut out, data.len(), style);
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\r\n");
        body.extend_from_slice(&data);
    }
    let last = d.byte();
    size_line(&mut out, 0, last);
    let mut trailers = None;
    for i in 0..d.byte() % 4 {
        let name = format!("x-t{i}");
        let len = usize::from(d.byte() % 12);
        let value: Vec<u8> = d.take(len).iter().map(|b| b'a' + b % 26).collect();
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&value);
        out.extend_from_slice(b"\r\n");
        trailers.get_or_insert_with(HeaderMap::new).append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(&value).unwrap(),
        );
    }
    out.extend_from_slice(b"\r\n");
    (out, body, trailers)
}

/// A chunk-size line for `len`, styled by the bits of `style`.
fn size_line(out: &mut Vec<u8>, len: usize, style: u8) {
    let mut hex = [0u8; 16];
    let digits = h1::hex_len(len, &mut hex);
    // Leading zeros, up to the 15 digits the decoder reads.
    let zeros = usize::from(style >> 6) * 4;
    out.extend(std::iter::repeat_n(b'0', zeros.min(15 - digits.len())));
    if style & 1 == 1 {
        out.extend(digits.iter().map(u8::to_ascii_uppercase));
    } else {
        out.extend_from_slice(digits);
    }
    if style & 2 == 2 {
        out.extend_from_slice(b" \t");
    }
    match (style >> 2) & 3 {
        1 => out.extend_from_slice(b";ext"),
        2 => out.extend_from_slice(b";name=value;q=\"a b\""),
        3 => out.extend_from_slice(b" ; x=1"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// Two answers to one request, from one input: byte 0 holds flags (bit 0:
/// the statuses differ; bit 1: each answer starts with header lines up to
/// a blank line), bytes 1-2 the first answer's length (little endian, cut
/// to what is there), the rest the two answers. The comparison of the
/// mirror must never panic, find nothing between an answer and itself,
/// find the same fields both ways (values swapped), and keep a diff within
/// its bounds: at most `FIELDS_MAX` fields (and a count), values cut short,
/// cookies never shown.
pub fn mirror_compare(data: &[u8]) {
    use crate::proxy::mirror::compare::{compare, Answer, Captured, FIELDS_MAX, SHOWN_MAX};
    if data.len() < 3 {
        return;
    }
    let flags = data[0];
    let rest = &data[3..];
    let cut = usize::from(u16::from_le_bytes([data[1], data[2]])).min(rest.len());
    let (a, b) = rest.split_at(cut);
    let answer = |raw: &[u8], status: u16| -> Answer {
        let mut headers = HeaderMap::new();
        let mut body = raw;
        let end = raw.windows(2).position(|w| w == b"\n\n");
        if let (true, Some(end)) = (flags & 2 != 0, end) {
            for line in raw[..end].split(|&c| c == b'\n') {
                let Some(colon) = line.iter().position(|&c| c == b':') else {
                    continue;
                };
                let value = line[colon + 1..].trim_ascii();
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(&line[..colon]),
                    HeaderValue::from_bytes(value),
                ) {
                    headers.append(n, v);
                }
            }
            body = &raw[end + 2..];
        }
        Answer {
            status,
            headers,
            body: Captured::whole(body),
        }
    };
    let x = answer(a, 200);
    let y = answer(b, if flags & 1 != 0 { 500 } else { 200 });
    let plan = crate::routing::mirror::ComparePlan {
        ignore_headers: vec![header::DATE],
        ignore_json: ["$.t", "$.a[*].b"]
            .iter()
            .filter_map(|p| crate::config::mirror::JsonPath::parse(p).ok())
            .collect(),
        learn_noise: true,
    };
    assert!(
        compare(&x, &x, &plan).is_empty(),
        "an answer differs from itself"
    );
    assert!(
        compare(&y, &y, &plan).is_empty(),
        "an answer differs from itself"
    );
    let xy = compare(&x, &y, &plan);
    let yx = compare(&y, &x, &plan);
    assert_eq!(xy.len(), yx.len(), "the comparison is not symmetric");
    assert!(xy.len() <= FIELDS_MAX + 1, "{} fields", xy.len());
    for (p, q) in xy.iter().zip(&yx) {
        assert_eq!(p.diff.field, q.diff.field);
        assert_eq!(
            (&p.diff.live, &p.diff.candidate),
            (&q.diff.candidate, &q.diff.live)
        );
        assert!(!p.diff.field.is_empty() && !p.key.is_empty());
        for v in [&p.diff.live, &p.diff.candidate] {
            assert!(v.chars().count() <= SHOWN_MAX + 1, "a value not cut short");
        }
        if p.diff.field == "header:set-cookie" {
            assert!(
                [&p.diff.live, &p.diff.candidate]
                    .iter()
                    .all(|v| *v == "(hidden)" || *v == "(absent)"),
                "a cookie shown"
            );
        }
    }
}
