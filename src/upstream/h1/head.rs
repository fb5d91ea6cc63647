//! Parsing a response head from the connection's buffer (interim 1xx heads
//! skipped), and deciding from it how the body is framed and whether the
//! connection may be kept (RFC 9112 sections 6 and 9.3).
//!
//! It owns the header-field rules that framing depends on
//! (`Content-Length`, `Transfer-Encoding`, `Connection`). Header values are
//! slices of the read buffer, never copies. It must not read the socket (it
//! says "more is needed" and the connection reads) nor decode the body.

use super::body::Framing;
use super::chunked::ChunkState;
use super::{H1Error, MAX_HEADERS, MAX_HEAD_BYTES};
use bytes::{Buf, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use std::mem::MaybeUninit;

/// A parsed response head.
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
}

/// A whole response head from `buf` (consumed from it), None if more is
/// needed; one larger than `MAX_HEAD_BYTES` is invalid. Interim (1xx) heads are consumed and skipped. `is_head`: the
/// request was `HEAD`, so the response has no body whatever it says.
pub(crate) fn parse_head(buf: &mut BytesMut, is_head: bool) -> Result<Option<Head>, H1Error> {
    loop {
        let mut slots: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
            [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            buf,
            &mut slots,
        ) {
            Ok(httparse::Status::Complete(n)) => n,
            // The same limit however the head arrives: a partial head is
            // shorter than the whole.
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                return Err(H1Error::Invalid("response head too large"))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(H1Error::Invalid("too many response header fields"))
            }
            Err(_) => return Err(H1Error::Invalid("malformed response head")),
        };
        if len > MAX_HEAD_BYTES {
            return Err(H1Error::Invalid("response head too large"));
        }
        let code = parsed.code.unwrap_or(0);
        let status =
            StatusCode::from_u16(code).map_err(|_| H1Error::Invalid("invalid status code"))?;
        if status.is_informational() {
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(H1Error::Invalid("101 to a request that asked no upgrade"));
            }
            buf.advance(len);
            if buf.is_empty() {
                return Ok(None);
            }
            continue;
        }
        let http11 = parsed.version == Some(1);
        // Where each field stands in the head, as plain offsets (no
        // allocation); what framing needs is noted on the way.
        let base = buf.as_ptr() as usize;
        let count = parsed.headers.len();
        let mut spans = [[0u32; 4]; MAX_HEADERS];
        let mut seen = Seen::default();
        for (span, h) in spans.iter_mut().zip(parsed.headers.iter()) {
            seen.note(h.name.as_bytes(), h.value)?;
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            // A head is at most MAX_HEAD_BYTES long: offsets fit in u32.
            *span = [name, h.name.len(), value, h.value.len()].map(|n| n as u32);
        }
        let head = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        for [name, name_len, value, value_len] in
            spans[..count].iter().map(|s| s.map(|n| n as usize))
        {
            let name = HeaderName::from_bytes(&head[name..name + name_len])
                .map_err(|_| H1Error::Invalid("invalid header name"))?;
            let value = HeaderValue::from_maybe_shared(head.slice(value..value + value_len))
                .map_err(|_| H1Error::Invalid("invalid header value"))?;
            headers.append(name, value);
        }
        let mut keep_alive = http11 && !seen.close;
        let framing =
            if is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
                Framing::Length(0)
            } else if seen.transfer_encoding {
                if last_coding_is_chunked(&headers) {
                    Framing::Chunked(ChunkState::Size)
                } else {
                    keep_alive = false;
                    Framing::Close
                }
            } else if let Some(n) = seen.length {
                Framing::Length(n)
            } else {
                keep_alive = false;
                Framing::Close
            };
        return Ok(Some(Head {
            status,
            headers,
            framing,
            keep_alive,
        }));
    }
}

/// RFC 9112 section 6.3: chunked must be the final coding.
fn last_coding_is_chunked(h: &HeaderMap) -> bool {
    let last = h
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .rfind(|t| !t.is_empty());
    last.is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
}

/// What the framing of a response depends on, noted field by field.
#[derive(Default)]
struct Seen {
    transfer_encoding: bool,
    /// One valid length; repeated values (or a list) must agree.
    length: Option<u64>,
    /// `Connection: close`.
    close: bool,
}

impl Seen {
    fn note(&mut self, name: &[u8], value: &[u8]) -> Result<(), H1Error> {
        if name.eq_ignore_ascii_case(b"content-length") {
            for part in value.split(|&b| b == b',') {
                let n = parse_length(part.trim_ascii())
                    .ok_or(H1Error::Invalid("invalid Content-Length"))?;
                if self.length.is_some_and(|f| f != n) {
                    return Err(H1Error::Invalid("conflicting Content-Length values"));
                }
                self.length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            self.close |= value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        Ok(())
    }
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_must_be_one_number() {
        let length = |values: &[&str]| {
            let mut seen = Seen::default();
            for v in values {
                seen.note(b"Content-Length", v.as_bytes())?;
            }
            Ok::<_, H1Error>(seen.length)
        };
        assert_eq!(length(&["42"]).unwrap(), Some(42));
        assert_eq!(length(&["42", "42"]).unwrap(), Some(42));
        assert_eq!(length(&["42, 42"]).unwrap(), Some(42));
        assert!(length(&["42", "43"]).is_err());
        for bad in ["", "-1", "1e3", "4 2", "99999999999999999999", "+5", "42,"] {
            assert!(length(&[bad]).is_err(), "{bad:?}");
        }
        let mut seen = Seen::default();
        seen.note(b"connection", b"keep-alive, Close").unwrap();
        seen.note(b"TRANSFER-ENCODING", b"chunked").unwrap();
        assert!(seen.close && seen.transfer_encoding && seen.length.is_none());
    }

    #[test]
    fn chunked_must_be_the_last_coding() {
        let te = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static(v));
            last_coding_is_chunked(&h)
        };
        assert!(te("chunked"));
        assert!(te("gzip, Chunked"));
        assert!(!te("chunked, gzip"));
        assert!(!te("gzip"));
    }

    fn parse(bytes: &[u8], is_head: bool) -> (Result<Option<Head>, H1Error>, BytesMut) {
        let mut buf = BytesMut::from(bytes);
        let r = parse_head(&mut buf, is_head);
        (r, buf)
    }

    #[test]
    fn a_head_is_consumed_whole_and_its_values_are_not_copied() {
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 200 OK\r\nX-A: one\r\nContent-Length: 3\r\n\r\nabc"[..]);
        let start = buf.as_ptr() as usize;
        let head = parse_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(&buf[..], b"abc");
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.framing, Framing::Length(3));
        assert!(head.keep_alive);
        let a = head.headers["x-a"].as_bytes();
        assert_eq!(a, b"one");
        let at = a.as_ptr() as usize;
        assert!(at > start && at < start + 40, "x-a's value was copied");
    }

    #[test]
    fn interim_heads_are_skipped_and_101_is_refused() {
        let (r, rest) = parse(b"HTTP/1.1 100 Continue\r\n\r\n", false);
        assert!(r.unwrap().is_none());
        assert!(rest.is_empty());
        let (r, _) = parse(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\nHTTP/1.1 204 No\r\n\r\n",
            false,
        );
        assert_eq!(r.unwrap().unwrap().status, StatusCode::NO_CONTENT);
        let (r, _) = parse(b"HTTP/1.1 101 Switching\r\n\r\n", false);
        assert!(matches!(r, Err(H1Error::Invalid(_))));
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let framing = |head: &str, is_head: bool| {
            let h = parse(head.as_bytes(), is_head).0.unwrap().unwrap();
            (h.framing, h.keep_alive)
        };
        let cl = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(framing(cl, false), (Framing::Length(5), true));
        assert_eq!(framing(cl, true), (Framing::Length(0), true));
        for no_body in ["204 No Content", "304 Not Modified"] {
            let h = format!("HTTP/1.1 {no_body}\r\nContent-Length: 5\r\n\r\n");
            assert_eq!(framing(&h, false), (Framing::Length(0), true));
        }
        let te = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(
            framing(te, false),
            (Framing::Chunked(ChunkState::Size), true)
        );
        let gz = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(framing(gz, false), (Framing::Close, false));
        let none = "HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(framing(none, false), (Framing::Close, false));
        let close = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(framing(close, false), (Framing::Length(1), false));
        let old = "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(framing(old, false), (Framing::Length(1), false));
    }

    /// A head over the limit was refused when read in pieces and taken
    /// when it came in one read.
    #[test]
    fn the_size_limit_holds_however_the_head_arrives() {
        let head = |len: usize| {
            let mut h = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
            h.resize(len - 4, b'v');
            h.extend_from_slice(b"\r\n\r\n");
            h
        };
        let fits = head(MAX_HEAD_BYTES);
        assert!(parse(&fits, false).0.unwrap().is_some());
        assert!(parse(&fits[..MAX_HEAD_BYTES - 1], false)
            .0
            .unwrap()
            .is_none());
        let large = head(MAX_HEAD_BYTES + 1);
        let larger = head(MAX_HEAD_BYTES + 2);
        for seen in [&large[..], &larger[..MAX_HEAD_BYTES + 1]] {
            let (r, _) = parse(seen, false);
            assert!(
                matches!(r, Err(H1Error::Invalid("response head too large"))),
                "{} bytes",
                seen.len()
            );
        }
    }

    /// Whatever an upstream sends, the head parser answers with a response,
    /// "more", or an error: never a panic.
    #[test]
    fn any_upstream_bytes_parse_without_panicking() {
        use proptest::prelude::*;
        let heads = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            "HTTP/1\\.[01] [0-9]{3} [a-zA-Z ]{0,8}\r\n([a-zA-Z-]{1,12}: [ -~]{0,20}\r\n){0,6}\r\n[ -~]{0,40}"
                .prop_map(String::into_bytes),
        ];
        proptest!(ProptestConfig::with_cases(2000), |(bytes in heads, is_head in any::<bool>())| {
            let mut buf = BytesMut::from(&bytes[..]);
            if let Ok(Some(head)) = parse_head(&mut buf, is_head) {
                prop_assert!(head.status.as_u16() >= 200);
            }
        });
    }
}
