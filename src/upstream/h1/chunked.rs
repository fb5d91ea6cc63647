//! Decoding `chunked` transfer coding (RFC 9112 section 7.1) over the bytes
//! buffered so far, one step at a time: chunk-size lines (extensions
//! ignored), chunk data handed on without a copy, the CRLF after each chunk,
//! and the trailer section.
//!
//! It owns the decoder's state and its limits. It must not read the socket
//! (it says [`Step::More`] and the body reads) nor decide whether a
//! response is chunked ([`super::head`] does).

use super::{H1Error, MAX_HEADERS, MAX_HEAD_BYTES};
use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body::Frame;

/// A chunk-size line (with its extensions) longer than this is invalid.
const MAX_CHUNK_LINE: usize = 4096;

/// Where the decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkState {
    /// A chunk-size line is next.
    Size,
    /// This many bytes of chunk data are left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer fields (or the final CRLF) after the last chunk.
    Trailers,
}

/// One step of chunked decoding over the buffered bytes.
pub(crate) enum Step {
    /// A frame to hand on, and the state after it.
    Frame(ChunkState, Frame<Bytes>),
    /// Consumed framing; go on from this state.
    Next(ChunkState),
    /// The body ended, with these trailers if any.
    End(Option<HeaderMap>),
    /// More bytes are needed.
    More,
}

pub(crate) fn step_chunked(buf: &mut BytesMut, state: ChunkState) -> Result<Step, H1Error> {
    match state {
        ChunkState::Size => {
            // The same limit however the line arrives: without its CRLF a
            // line is at least as long as what is buffered, less a CR.
            let Some(eol) = find_crlf(buf) else {
                return if buf.len() > MAX_CHUNK_LINE + 1 {
                    Err(H1Error::Invalid("chunk-size line too long"))
                } else {
                    Ok(Step::More)
                };
            };
            if eol > MAX_CHUNK_LINE {
                return Err(H1Error::Invalid("chunk-size line too long"));
            }
            let line = &buf[..eol];
            // chunk-size [ chunk-ext ]: the extension is ignored.
            let digits_end = line
                .iter()
                .position(|&b| !b.is_ascii_hexdigit())
                .unwrap_or(line.len());
            // BWS, then nothing or a chunk extension.
            let rest = line[digits_end..].trim_ascii_start();
            if digits_end == 0 || digits_end > 15 || !(rest.is_empty() || rest[0] == b';') {
                return Err(H1Error::Invalid("invalid chunk size"));
            }
            let mut size = 0u64;
            for &b in &line[..digits_end] {
                size = size * 16 + u64::from((b as char).to_digit(16).unwrap_or(0));
            }
            buf.advance(eol + 2);
            Ok(Step::Next(if size == 0 {
                ChunkState::Trailers
            } else {
                ChunkState::Data(size)
            }))
        }
        ChunkState::Data(left) => {
            if buf.is_empty() {
                return Ok(Step::More);
            }
            let take = (buf.len() as u64).min(left);
            let data = buf.split_to(take as usize).freeze();
            let next = if take == left {
                ChunkState::DataEnd
            } else {
                ChunkState::Data(left - take)
            };
            Ok(Step::Frame(next, Frame::data(data)))
        }
        ChunkState::DataEnd => {
            if buf.len() < 2 {
                return Ok(Step::More);
            }
            if &buf[..2] != b"\r\n" {
                return Err(H1Error::Invalid("chunk data not followed by CRLF"));
            }
            buf.advance(2);
            Ok(Step::Next(ChunkState::Size))
        }
        ChunkState::Trailers => {
            if buf.starts_with(b"\r\n") {
                buf.advance(2);
                return Ok(Step::End(None));
            }
            // The same limit however the section arrives: without its end
            // it is at least one byte longer than what is buffered.
            let Some(end) = find(buf, b"\r\n\r\n") else {
                return if buf.len() >= MAX_HEAD_BYTES {
                    Err(H1Error::Invalid("trailer section too large"))
                } else {
                    Ok(Step::More)
                };
            };
            if end + 4 > MAX_HEAD_BYTES {
                return Err(H1Error::Invalid("trailer section too large"));
            }
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let fields = match httparse::parse_headers(&buf[..end + 4], &mut slots) {
                Ok(httparse::Status::Complete((_, fields))) => fields,
                _ => return Err(H1Error::Invalid("malformed trailer section")),
            };
            let mut trailers = HeaderMap::with_capacity(fields.len());
            for f in fields.iter() {
                let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(f.name.as_bytes()),
                    HeaderValue::from_bytes(f.value),
                ) else {
                    return Err(H1Error::Invalid("invalid trailer field"));
                };
                trailers.append(name, value);
            }
            buf.advance(end + 4);
            Ok(Step::End(Some(trailers)))
        }
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    find(b, b"\r\n")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>), H1Error> {
        let mut buf = BytesMut::from(input);
        let mut state = ChunkState::Size;
        let mut out = Vec::new();
        loop {
            match step_chunked(&mut buf, state)? {
                Step::Frame(next, f) => {
                    out.extend_from_slice(&f.into_data().unwrap());
                    state = next;
                }
                Step::Next(next) => state = next,
                Step::End(t) => return Ok((out, t)),
                Step::More => return Err(H1Error::Closed),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let (body, t) = decode(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"hello world");
        assert!(t.is_none());
        let (body, t) = decode(b"3\r\nabc\r\n0\r\nx-sum: 1\r\ny: 2\r\n\r\n").unwrap();
        assert_eq!(body, b"abc");
        let t = t.unwrap();
        assert_eq!(t["x-sum"], "1");
        assert_eq!(t["y"], "2");
        assert_eq!(
            decode(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap().0,
            b"0123456789"
        );
    }

    #[test]
    fn bad_chunking_is_invalid_and_short_input_asks_for_more() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"-1\r\n",
            b"1111111111111111\r\n",
            b"5 garbage\r\n",
        ] {
            assert!(
                matches!(decode(bad), Err(H1Error::Invalid(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(decode(b"5\r\nhel"), Err(H1Error::Closed)));
        assert!(matches!(decode(b"5"), Err(H1Error::Closed)));
    }

    /// Decodes `input` arriving in reads of `read` bytes, to its end, its
    /// error or the end of the input.
    fn decode_by_reads(input: &[u8], read: usize) -> Result<Vec<u8>, H1Error> {
        let mut buf = BytesMut::new();
        let mut state = ChunkState::Size;
        let mut out = Vec::new();
        for piece in input.chunks(read) {
            buf.extend_from_slice(piece);
            loop {
                match step_chunked(&mut buf, state)? {
                    Step::Frame(next, f) => {
                        out.extend_from_slice(&f.into_data().unwrap());
                        state = next;
                    }
                    Step::Next(next) => state = next,
                    Step::End(_) => return Ok(out),
                    Step::More => break,
                }
            }
        }
        Err(H1Error::Closed)
    }

    /// Found by the `h1_chunked` fuzz target: a long chunk extension was
    /// refused when it came in small reads and taken when it came in one.
    #[test]
    fn limits_hold_however_the_bytes_arrive() {
        let body = |line: usize| {
            let mut b = b"5;".to_vec();
            b.resize(line, b'e');
            b.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
            b
        };
        for read in [1, 7, 4096, 1 << 20] {
            let fits = decode_by_reads(&body(MAX_CHUNK_LINE), read);
            assert_eq!(fits.unwrap(), b"hello", "reads of {read}");
            let long = decode_by_reads(&body(MAX_CHUNK_LINE + 1), read);
            assert!(
                matches!(long, Err(H1Error::Invalid("chunk-size line too long"))),
                "reads of {read}: {long:?}"
            );
        }
        let trailers = |section: usize| {
            let mut b = b"0\r\nx: ".to_vec();
            b.resize(3 + section - 4, b'v');
            b.extend_from_slice(b"\r\n\r\n");
            b
        };
        for read in [1000, 4096, 1 << 20] {
            assert!(decode_by_reads(&trailers(MAX_HEAD_BYTES), read).is_ok());
            let large = decode_by_reads(&trailers(MAX_HEAD_BYTES + 1), read);
            assert!(
                matches!(large, Err(H1Error::Invalid("trailer section too large"))),
                "reads of {read}: {large:?}"
            );
        }
    }

    /// Whatever an upstream sends, the chunked decoder answers with data,
    /// "more", or an error: never a panic, and never a body longer than
    /// what was sent.
    #[test]
    fn any_bytes_decode_without_panicking() {
        use proptest::prelude::*;
        let chunked = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            "([0-9a-fA-F]{1,3}(;[a-z=]{0,6})?\r\n[ -~]{0,20}\r\n){0,5}0\r\n(x: [a-z]{0,5}\r\n)?\r\n"
                .prop_map(String::into_bytes),
        ];
        proptest!(ProptestConfig::with_cases(2000), |(bytes in chunked)| {
            let total = bytes.len();
            let mut buf = BytesMut::from(&bytes[..]);
            let mut state = ChunkState::Size;
            let mut out = 0usize;
            while let Ok(step) = step_chunked(&mut buf, state) {
                match step {
                    Step::Frame(next, f) => {
                        out += f.data_ref().map_or(0, |d| d.len());
                        state = next;
                    }
                    Step::Next(next) => state = next,
                    Step::End(_) | Step::More => break,
                }
            }
            prop_assert!(out <= total);
        });
    }
}
