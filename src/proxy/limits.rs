//! The `limits.*` the proxy checks before it forwards anything: the cap on client
//! connections (`limits.max_connections`), the size of a request head
//! (`limits.max_header_bytes`, `limits.max_uri_bytes`), and the one rule of
//! RFC 9112 that hyper's parser leaves to the application: a request names
//! its host exactly once (section 3.2).
//!
//! Framing rules (conflicting `Content-Length` and `Transfer-Encoding`, a
//! `Transfer-Encoding` that does not end in `chunked`, bad lengths) are
//! enforced by hyper while it parses; these checks run on what it parsed.
//! Counting connections is one atomic; nothing here takes a lock.

use crate::config::LimitsConfig;
use crate::proxy::error::{status_of, ProxyError};
use crate::telemetry::metrics::ClientConnGauges;
use http::{header, Request, Version};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Refusals being written at once; beyond, a refused connection is closed
/// without a word, so that a flood cannot grow the refusals instead.
const MAX_REFUSING: usize = 64;
/// How long a refusal waits for the client to read it before closing.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The connections open over all listeners, against `limits.max_connections`.
#[derive(Debug)]
pub struct ConnectionLimit {
    max: usize,
    open: AtomicUsize,
    refusing: AtomicUsize,
    refusal: Vec<u8>,
    gauges: ClientConnGauges,
}

/// One parked connection, counted until dropped.
#[derive(Debug)]
pub struct ParkedMark<'a>(&'a ConnectionLimit);

impl Drop for ParkedMark<'_> {
    fn drop(&mut self) {
        self.0.gauges.parked.dec();
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<ConnectionLimit>);

impl ConnectionSlot {
    /// The cap this place counts against.
    pub fn limit(&self) -> &ConnectionLimit {
        &self.0
    }

    /// The connection is parked: counted as such until woken or dropped.
    pub fn park(self) -> ParkedSlot {
        self.0.gauges.parked.inc();
        ParkedSlot(Some(self))
    }
}

/// The place of a parked connection ([`ConnectionSlot::park`]).
#[derive(Debug)]
pub struct ParkedSlot(Option<ConnectionSlot>);

impl ParkedSlot {
    /// The connection is served again: no longer counted as parked.
    pub fn wake(mut self) -> ConnectionSlot {
        let slot = self.0.take().expect("a parked slot is woken once");
        slot.0.gauges.parked.dec();
        slot
    }
}

impl Drop for ParkedSlot {
    fn drop(&mut self) {
        if let Some(slot) = &self.0 {
            slot.0.gauges.parked.dec();
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.gauges.open.dec();
    }
}

impl ConnectionLimit {
    pub fn new(max: usize) -> Arc<Self> {
        Self::with_gauges(max, ClientConnGauges::default())
    }

    /// [`new`](Self::new), counting connections on `gauges` too.
    pub fn with_gauges(max: usize, gauges: ClientConnGauges) -> Arc<Self> {
        let (status, body, _) = status_of(&ProxyError::TooManyConnections);
        let refusal = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncache-control: no-store\r\n\
             retry-after: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        );
        Arc::new(ConnectionLimit {
            max,
            open: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            refusal: refusal.into_bytes(),
            gauges,
        })
    }

    /// A place for one more connection, or `None` at the cap.
    pub fn try_open(self: &Arc<Self>) -> Option<ConnectionSlot> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        self.gauges.open.inc();
        Some(ConnectionSlot(self.clone()))
    }

    /// Count a parked connection until the mark is dropped.
    pub fn parked(&self) -> ParkedMark<'_> {
        self.gauges.parked.inc();
        ParkedMark(self)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Of those, parked now.
    pub fn parked_now(&self) -> i64 {
        self.gauges.parked.get()
    }

    /// Turn away a connection beyond the cap. A cleartext one is told why
    /// (`503`, `Retry-After: 1`, `Connection: close`) before it is closed;
    /// what it already sent is read and dropped for a moment, so the close
    /// does not reset the answer away. A TLS one is closed at once.
    pub fn refuse(self: &Arc<Self>, mut stream: TcpStream, plaintext: bool) {
        if !plaintext || self.refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
            if plaintext {
                self.refusing.fetch_sub(1, Ordering::Relaxed);
            }
            return;
        }
        let limit = self.clone();
        tokio::spawn(async move {
            let linger = async {
                stream.write_all(&limit.refusal).await?;
                stream.shutdown().await?;
                let mut sink = [0u8; 4096];
                for _ in 0..16 {
                    if stream.read(&mut sink).await? == 0 {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            };
            if let Ok(Err(e)) = tokio::time::timeout(REFUSAL_LINGER, linger).await {
                tracing::debug!(error = %e, "refusal not delivered");
            }
            limit.refusing.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// The per-request limits, from `limits`.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_header_bytes: usize,
    pub max_uri_bytes: usize,
}

impl RequestLimits {
    pub fn from_config(l: &LimitsConfig) -> Self {
        RequestLimits {
            max_header_bytes: l.max_header_bytes,
            max_uri_bytes: l.max_uri_bytes,
        }
    }
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self::from_config(&LimitsConfig::default())
    }
}

/// Refuse a request that must not be forwarded: `CONNECT` (501), a target longer than
/// `max_uri_bytes` (414), a head larger than `max_header_bytes` (431, counted
/// as HTTP/1.1 would carry it), or a `Host` that is missing from an HTTP/1.1
/// request, repeated, or not a host (400, RFC 9112 section 3.2).
pub fn check_request<B>(req: &Request<B>, limits: &RequestLimits) -> Result<(), ProxyError> {
    // A reverse proxy opens no tunnels to arbitrary hosts (RFC 9110 9.3.6).
    if req.method() == http::Method::CONNECT {
        return Err(ProxyError::NotImplemented);
    }
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > limits.max_uri_bytes {
        return Err(ProxyError::UriTooLong);
    }
    // Request line: method, target, version, two spaces and CRLF.
    let mut head = req.method().as_str().len() + target + 12;
    let mut hosts = 0;
    for (name, value) in req.headers() {
        head += name.as_str().len() + value.len() + 4;
        if name == header::HOST {
            hosts += 1;
        }
    }
    if head > limits.max_header_bytes {
        return Err(ProxyError::HeaderTooLarge);
    }
    match hosts {
        0 if req.version() == Version::HTTP_11 => Err(ProxyError::BadRequest("no Host header")),
        0 => Ok(()),
        1 => match req.headers().get(header::HOST) {
            Some(v) if valid_host(v.as_bytes()) => Ok(()),
            _ => Err(ProxyError::BadRequest("invalid Host header")),
        },
        _ => Err(ProxyError::BadRequest("more than one Host header")),
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 section 7.2, RFC 3986 section 3.2),
/// or empty. Byte classes only: no allocation on the request path.
fn valid_host(v: &[u8]) -> bool {
    if v.is_empty() {
        return true;
    }
    // RFC 3986: unreserved / sub-delims (reg-name adds pct-encoded).
    fn reg_name_byte(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b)
    }
    let (host_ok, rest) = if v[0] == b'[' {
        // IP-literal: IPv6address / IPvFuture, inside brackets.
        let Some(end) = v.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &v[1..end];
        let ok = !inner.is_empty() && inner.iter().all(|&b| reg_name_byte(b) || b == b':');
        (ok, &v[end + 1..])
    } else {
        let at = v.iter().position(|&b| b == b':').unwrap_or(v.len());
        let host = &v[..at];
        (
            !host.is_empty() && host.iter().all(|&b| reg_name_byte(b)),
            &v[at..],
        )
    };
    host_ok
        && match rest.split_first() {
            None => true,
            Some((b':', port)) => port.len() <= 5 && port.iter().all(u8::is_ascii_digit),
            Some(_) => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, hosts: &[&str], uri: &str) -> Request<()> {
        let mut b = Request::get(uri).version(version);
        for h in hosts {
            b = b.header("host", *h);
        }
        b.body(()).unwrap()
    }

    fn status(r: Result<(), ProxyError>) -> u16 {
        match r {
            Ok(()) => 0,
            Err(e) => status_of(&e).0.as_u16(),
        }
    }

    #[test]
    fn host_rules_of_rfc_9112() {
        let l = RequestLimits::default();
        let v11 = Version::HTTP_11;
        assert_eq!(status(check_request(&req(v11, &["a.example"], "/"), &l)), 0);
        assert_eq!(
            status(check_request(&req(v11, &["a.example:8080"], "/"), &l)),
            0
        );
        assert_eq!(status(check_request(&req(v11, &["[::1]:80"], "/"), &l)), 0);
        assert_eq!(status(check_request(&req(v11, &[""], "/"), &l)), 0);
        assert_eq!(status(check_request(&req(v11, &[], "/"), &l)), 400);
        assert_eq!(status(check_request(&req(v11, &["a", "b"], "/"), &l)), 400);
        assert_eq!(status(check_request(&req(v11, &["a", "a"], "/"), &l)), 400);
        assert_eq!(status(check_request(&req(v11, &["[v1.x]"], "/"), &l)), 0);
        assert_eq!(
            status(check_request(&req(v11, &["a.example:"], "/"), &l)),
            0
        );
        for bad in [
            "u@a.example",
            "a.example/x",
            "a b",
            "a.example:port",
            ":80",
            "a:80:80",
            "[::1",
            "[]",
            "[::1]x",
            "a.example:123456",
            "a\\b",
            "a?b",
            "a#b",
        ] {
            assert_eq!(
                status(check_request(&req(v11, &[bad], "/"), &l)),
                400,
                "{bad}"
            );
        }
        let connect = Request::connect("example.com:443")
            .header("host", "example.com:443")
            .body(())
            .unwrap();
        assert_eq!(status(check_request(&connect, &l)), 501);
        // HTTP/1.0 and HTTP/2 (`:authority`) may leave Host out.
        assert_eq!(
            status(check_request(&req(Version::HTTP_10, &[], "/"), &l)),
            0
        );
        assert_eq!(
            status(check_request(&req(Version::HTTP_2, &[], "/"), &l)),
            0
        );
    }

    #[test]
    fn long_targets_get_414_and_large_heads_431() {
        let l = RequestLimits {
            max_header_bytes: 2048,
            max_uri_bytes: 1024,
        };
        let ok = format!("/{}", "a".repeat(1023));
        assert_eq!(
            status(check_request(&req(Version::HTTP_11, &["h"], &ok), &l)),
            0
        );
        let long = format!("/{}", "a".repeat(1024));
        assert_eq!(
            status(check_request(&req(Version::HTTP_11, &["h"], &long), &l)),
            414
        );
        let mut big = req(Version::HTTP_11, &["h"], "/");
        big.headers_mut()
            .insert("x-big", "v".repeat(2100).parse().unwrap());
        assert_eq!(status(check_request(&big, &l)), 431);
    }

    #[tokio::test]
    async fn the_cap_admits_up_to_max_and_frees_places() {
        let limit = ConnectionLimit::new(2);
        let a = limit.try_open().unwrap();
        let _b = limit.try_open().unwrap();
        assert!(limit.try_open().is_none());
        assert_eq!(limit.open(), 2);
        drop(a);
        assert!(limit.try_open().is_some());
        assert!(String::from_utf8_lossy(&limit.refusal).starts_with("HTTP/1.1 503 "));
    }
}
