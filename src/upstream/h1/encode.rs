//! The request head as HTTP/1.1 bytes, and the numbers in it (a decimal
//! `content-length`, a hexadecimal chunk size), written into a reused
//! buffer without allocating.
//!
//! It owns what the head says about the body's length. It must not write
//! to the socket (the connection does) nor change the request's fields.

use crate::upstream::request_body::ClientBody;
use http::header;
use http::{Method, Request};
use http_body::Body;

/// Write the head of `req` into `w` (cleared first): request line, fields
/// as given, and a `content-length` when the request needs one and has
/// none (a body of known length, or an empty `POST`, `PUT` or `PATCH`).
pub(super) fn encode_head(w: &mut Vec<u8>, req: &Request<ClientBody>) {
    w.clear();
    w.extend_from_slice(req.method().as_str().as_bytes());
    w.push(b' ');
    match req.uri().path_and_query() {
        Some(pq) if !pq.as_str().is_empty() => w.extend_from_slice(pq.as_str().as_bytes()),
        _ => w.push(b'/'),
    }
    w.extend_from_slice(b" HTTP/1.1\r\n");
    let headers = req.headers();
    for (name, value) in headers {
        w.extend_from_slice(name.as_str().as_bytes());
        w.extend_from_slice(b": ");
        w.extend_from_slice(value.as_bytes());
        w.extend_from_slice(b"\r\n");
    }
    let body = req.body();
    let end = body.is_end_stream();
    // Servers may answer 411 to a POST without a length. (A GET without
    // a body needs no lookup at all.)
    let wants_length = !end || matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    if wants_length
        && !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key(header::TRANSFER_ENCODING)
    {
        if end {
            w.extend_from_slice(b"content-length: 0\r\n");
        } else if let Some(n) = body.size_hint().exact() {
            w.extend_from_slice(b"content-length: ");
            w.extend_from_slice(itoa_u64(n, &mut [0u8; 20]));
            w.extend_from_slice(b"\r\n");
        }
    }
    w.extend_from_slice(b"\r\n");
}

/// The encoded head says the body goes chunked. The handler sets
/// `transfer-encoding: chunked` (and nothing else) for a body of unknown
/// length.
pub(super) fn says_chunked(head: &[u8]) -> bool {
    head.windows(b"\r\ntransfer-encoding: chunked\r\n".len())
        .any(|w| w.eq_ignore_ascii_case(b"\r\ntransfer-encoding: chunked\r\n"))
}

fn itoa_u64(mut n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &out[i..]
}

/// `n` in lowercase hexadecimal, as a chunk-size line starts.
pub(crate) fn hex_len(mut n: usize, out: &mut [u8; 16]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &out[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_like_std() {
        for n in [0u64, 7, 10, 255, 65_536, u64::MAX] {
            assert_eq!(itoa_u64(n, &mut [0; 20]), n.to_string().as_bytes());
        }
        for n in [0usize, 9, 10, 255, 4096, 1 << 40] {
            assert_eq!(hex_len(n, &mut [0; 16]), format!("{n:x}").as_bytes());
        }
    }

    #[test]
    fn chunked_is_read_off_the_encoded_head() {
        assert!(says_chunked(
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
        ));
        assert!(says_chunked(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"
        ));
        assert!(!says_chunked(
            b"POST / HTTP/1.1\r\nx-transfer-encoding: chunked\r\n\r\n"
        ));
        assert!(!says_chunked(
            b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n"
        ));
    }
}
