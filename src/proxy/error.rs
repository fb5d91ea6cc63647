//! Every error the proxy answers itself, and the one function that maps them
//! to HTTP (SPEC.md section 8).
//!
//! Clients get a short generic plain-text body that never names an internal
//! address; the log gets the detail.

use crate::proxy::body::ProxyBody;
use crate::upstream::connector::ConnectError;
use crate::upstream::h1::H1Error;
use crate::upstream::request_body::ClientBodyError;
use crate::upstream::UpstreamError;
use http::{header, HeaderValue, Response, StatusCode};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no healthy endpoint in any usable pool")]
    NoHealthyEndpoint,
    #[error("the write-hold queue is full")]
    HoldQueueFull,
    #[error("out of touch with the fleet: writes are fenced")]
    Fenced,
    #[error("a held write whose switch outcome is unknown here")]
    HoldUndecided,
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream connection failed: {0}")]
    UpstreamReset(#[source] UpstreamError),
    #[error("upstream sent an invalid response: {0}")]
    UpstreamProtocol(#[source] UpstreamError),
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    /// The client's own request body broke (bad chunked framing, a client
    /// gone mid-upload): the client's fault, never counted against the upstream.
    #[error("the client's request body failed: {0}")]
    ClientBody(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The client paused mid-body longer than `timeouts.client_body`: its
    /// fault too, never counted against the upstream.
    #[error("the client stalled its request body for {0:?}")]
    ClientBodyStalled(Duration),
    #[error("request target longer than limits.max_uri_bytes")]
    UriTooLong,
    #[error("request head larger than limits.max_header_bytes")]
    HeaderTooLarge,
    #[error("CONNECT: the proxy does not open tunnels")]
    NotImplemented,
    /// `TRACE` with `Max-Forwards: 0`: the proxy would be its final
    /// recipient, and does not reflect requests.
    #[error("TRACE with Max-Forwards: 0 is not answered")]
    TraceNotForwarded,
    #[error("client connections at limits.max_connections")]
    TooManyConnections,
}

pub use crate::telemetry::metrics::UpstreamErrorKind;

impl ProxyError {
    /// Sort an error from sending a request on an upstream connection.
    pub fn from_send(err: UpstreamError) -> Self {
        // A failed request body comes back from the proxy's own client as
        // such, and from hyper as a "user" error whose cause is the body's.
        let body_error = match &err {
            UpstreamError::Raw(H1Error::ClientBody(e)) => e.downcast_ref::<ClientBodyError>(),
            UpstreamError::Hyper(e) if e.is_user() => {
                std::error::Error::source(e).and_then(|s| s.downcast_ref::<ClientBodyError>())
            }
            _ => None,
        };
        if let Some(ClientBodyError::Stalled(idle)) = body_error {
            ProxyError::ClientBodyStalled(*idle)
        } else if body_error.is_some() || matches!(err, UpstreamError::Raw(H1Error::ClientBody(_)))
        {
            ProxyError::ClientBody(err.into())
        } else if err.is_protocol() || matches!(&err, UpstreamError::Hyper(e) if e.is_user()) {
            ProxyError::UpstreamProtocol(err)
        } else {
            ProxyError::UpstreamReset(err)
        }
    }

    pub fn upstream_kind(&self) -> Option<UpstreamErrorKind> {
        match self {
            ProxyError::Connect(_) => Some(UpstreamErrorKind::Connect),
            ProxyError::Timeout(_) => Some(UpstreamErrorKind::Timeout),
            ProxyError::UpstreamReset(_) => Some(UpstreamErrorKind::Reset),
            ProxyError::UpstreamProtocol(_) => Some(UpstreamErrorKind::Protocol),
            _ => None,
        }
    }
}

/// Status, body and whether to add `Retry-After`: the whole mapping.
pub fn status_of(err: &ProxyError) -> (StatusCode, &'static str, bool) {
    match err {
        ProxyError::NoHealthyEndpoint => (
            StatusCode::SERVICE_UNAVAILABLE,
            "503 service unavailable: no healthy upstream\n",
            false,
        ),
        ProxyError::HoldQueueFull => (
            StatusCode::SERVICE_UNAVAILABLE,
            "503 service unavailable: switch in progress, retry shortly\n",
            true,
        ),
        ProxyError::Fenced => (
            StatusCode::SERVICE_UNAVAILABLE,
            "503 service unavailable: out of touch with the fleet, writes refused\n",
            true,
        ),
        ProxyError::HoldUndecided => (
            StatusCode::SERVICE_UNAVAILABLE,
            "503 service unavailable: the switch's outcome is not known here yet, retry shortly\n",
            true,
        ),
        ProxyError::Connect(_) | ProxyError::UpstreamReset(_) | ProxyError::UpstreamProtocol(_) => {
            (StatusCode::BAD_GATEWAY, "502 bad gateway\n", false)
        }
        ProxyError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "504 gateway timeout\n", false),
        ProxyError::BadRequest(_) | ProxyError::ClientBody(_) => {
            (StatusCode::BAD_REQUEST, "400 bad request\n", false)
        }
        ProxyError::ClientBodyStalled(_) => (
            StatusCode::REQUEST_TIMEOUT,
            "408 request timeout: the request body stalled\n",
            false,
        ),
        ProxyError::UriTooLong => (StatusCode::URI_TOO_LONG, "414 URI too long\n", false),
        ProxyError::HeaderTooLarge => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "431 request header fields too large\n",
            false,
        ),
        ProxyError::NotImplemented => (StatusCode::NOT_IMPLEMENTED, "501 not implemented\n", false),
        ProxyError::TraceNotForwarded => (
            StatusCode::METHOD_NOT_ALLOWED,
            "405 method not allowed: TRACE ends here (Max-Forwards: 0) and is not reflected\n",
            false,
        ),
        ProxyError::TooManyConnections => (
            StatusCode::SERVICE_UNAVAILABLE,
            "503 service unavailable: too many connections, retry shortly\n",
            true,
        ),
    }
}

/// The response the client sees for `err`.
pub fn error_response(err: &ProxyError) -> Response<ProxyBody> {
    let (status, body, retry_after) = status_of(err);
    let mut resp = plain_response(status, body, retry_after);
    match err {
        // The rest of the body may still come: the connection cannot be reused.
        ProxyError::ClientBodyStalled(_) => {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        // RFC 9110 section 15.5.6: a 405 says what is allowed.
        ProxyError::TraceNotForwarded => {
            resp.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static(crate::proxy::max_forwards::ALLOW),
            );
        }
        _ => {}
    }
    resp
}

pub fn plain_response(
    status: StatusCode,
    body: &'static str,
    retry_after: bool,
) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins SPEC.md section 8: changing a status here must be deliberate.
    #[test]
    fn every_error_maps_to_its_status() {
        let connect = ProxyError::Connect(ConnectError::Timeout {
            address: "127.0.0.1:9".into(),
            timeout: Duration::from_secs(1),
        });
        let cases = [
            (ProxyError::NoHealthyEndpoint, 503, false),
            (ProxyError::HoldQueueFull, 503, true),
            (ProxyError::Fenced, 503, true),
            (ProxyError::HoldUndecided, 503, true),
            (connect, 502, false),
            (
                ProxyError::Connect(ConnectError::Tls {
                    address: "127.0.0.1:9".into(),
                    source: std::io::Error::other("invalid peer certificate: UnknownIssuer"),
                }),
                502,
                false,
            ),
            (ProxyError::Timeout(Duration::from_secs(1)), 504, false),
            (ProxyError::BadRequest("x"), 400, false),
            (
                ProxyError::ClientBodyStalled(Duration::from_secs(1)),
                408,
                false,
            ),
            (ProxyError::UriTooLong, 414, false),
            (ProxyError::HeaderTooLarge, 431, false),
            (ProxyError::TooManyConnections, 503, true),
            (ProxyError::NotImplemented, 501, false),
            (ProxyError::TraceNotForwarded, 405, false),
        ];
        for (err, status, retry) in cases {
            let (s, body, r) = status_of(&err);
            assert_eq!(s.as_u16(), status, "{err}");
            assert_eq!(r, retry, "{err}");
            assert!(!body.contains("127.0.0.1"), "body leaks an address: {body}");
            let resp = error_response(&err);
            assert_eq!(resp.headers().contains_key(header::RETRY_AFTER), retry);
            // Only a stalled body leaves the connection unusable.
            assert_eq!(
                resp.headers().get(header::CONNECTION).is_some(),
                status == 408,
                "{err}"
            );
        }
    }
}
