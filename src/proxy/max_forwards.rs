//! `Max-Forwards` (RFC 9110 section 7.6.2): how many more intermediaries an
//! `OPTIONS` or `TRACE` request may pass. At `0` the proxy is the final
//! recipient and answers itself; above, it forwards with the value one less.
//! Other methods keep the field untouched, as the RFC says.
//!
//! `OPTIONS` at `0` gets `200` with `Allow` (the methods the proxy forwards).
//! `TRACE` at `0` gets `405`, not a reflection of the request: the head that
//! reached the proxy holds what everything in front of it added (client
//! addresses in `X-Forwarded-For`, an edge's own tokens), and a reflection
//! would hand it back; a list of fields to strip would always miss one.
//! A `TRACE` with a budget left is forwarded: the upstream decides.
//!
//! A value that is not one decimal number (absent, repeated, malformed,
//! too large) leaves the request as it is.

use crate::proxy::body::ProxyBody;
use crate::proxy::error::{error_response, ProxyError};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};

/// The methods the proxy forwards, as it answers them in `Allow`: all but
/// `CONNECT` (no tunnels) and `TRACE` (never reflected).
pub const ALLOW: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

/// Apply `Max-Forwards` to `req`: the proxy's own answer when it is the
/// final recipient, else `None` (with the value decremented when present).
/// Call only for `OPTIONS` and `TRACE`.
pub fn apply<B>(req: &mut Request<B>) -> Option<Response<ProxyBody>> {
    let mut values = req.headers().get_all(header::MAX_FORWARDS).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let remaining = parse(value.as_bytes())?;
    if remaining > 0 {
        req.headers_mut()
            .insert(header::MAX_FORWARDS, HeaderValue::from(remaining - 1));
        return None;
    }
    Some(if req.method() == Method::TRACE {
        error_response(&ProxyError::TraceNotForwarded)
    } else {
        let mut resp = Response::new(ProxyBody::empty());
        *resp.status_mut() = StatusCode::OK;
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
        resp
    })
}

/// `1*DIGIT`, within `u64`.
fn parse(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, values: &[&str]) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/x");
        for v in values {
            b = b.header(header::MAX_FORWARDS, *v);
        }
        b.body(()).unwrap()
    }

    fn forwarded(r: &Request<()>) -> Vec<&str> {
        r.headers()
            .get_all(header::MAX_FORWARDS)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn zero_is_answered_by_the_proxy() {
        let mut r = req(Method::OPTIONS, &["0"]);
        let resp = apply(&mut r).expect("answered here");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[header::ALLOW], ALLOW);
        let mut r = req(Method::TRACE, &["0"]);
        let resp = apply(&mut r).expect("answered here");
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()[header::ALLOW], ALLOW);
    }

    #[test]
    fn above_zero_is_forwarded_one_less() {
        for (sent, fwd) in [("1", "0"), ("7", "6"), ("0010", "9")] {
            for m in [Method::OPTIONS, Method::TRACE] {
                let mut r = req(m, &[sent]);
                assert!(apply(&mut r).is_none());
                assert_eq!(forwarded(&r), [fwd]);
            }
        }
    }

    #[test]
    fn anything_but_one_number_is_left_alone() {
        for values in [
            &[][..],
            &["-1"],
            &["1.0"],
            &[" 1"],
            &[""],
            &["1", "2"],
            &["99999999999999999999999"],
        ] {
            let mut r = req(Method::OPTIONS, values);
            assert!(apply(&mut r).is_none(), "{values:?}");
            assert_eq!(forwarded(&r), values, "{values:?}");
        }
    }
}
