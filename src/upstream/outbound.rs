//! One-shot HTTP(S) calls of the control plane to services that are not
//! upstreams: a check's Prometheus server or URL, a notification webhook.
//!
//! Each call opens one connection (HTTP/1.1, TLS for `https://` with the
//! operating system's roots, the same rustls on ring as everything else),
//! sends one request, reads at most [`MAX_BODY`] of the answer and closes.
//! These calls are seconds apart, so a pool would buy nothing. The whole
//! call is bounded by the caller's timeout. It must not be used on the
//! request path.

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpStream;

/// Largest answer read; a Prometheus answer of one series is a few hundred bytes.
pub const MAX_BODY: usize = 1024 * 1024;

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("`{0}` is not an http:// or https:// URL with a host")]
    Url(String),
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS to {host}: {source}")]
    Tls {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no TLS roots: {0}")]
    Roots(String),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("request: {0}")]
    Request(#[from] http::Error),
    #[error("answer body: {0}")]
    Body(String),
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
}

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// The TLS settings of outbound calls: system roots, HTTP/1.1. Built once.
fn tls() -> Result<tokio_rustls::TlsConnector, OutboundError> {
    static TLS: OnceLock<Result<tokio_rustls::TlsConnector, String>> = OnceLock::new();
    TLS.get_or_init(|| {
        let roots = crate::upstream::pool_tls::system_roots().map_err(|e| e.to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsConnector::from(Arc::new(client)))
    })
    .clone()
    .map_err(OutboundError::Roots)
}

/// `method url` with `headers` and `body`, all within `timeout`.
pub async fn call(
    method: Method,
    url: &str,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Result<Answer, OutboundError> {
    tokio::time::timeout(timeout, call_unbounded(method, url, headers, body))
        .await
        .map_err(|_| OutboundError::Timeout(timeout))?
}

/// GET `url` within `timeout`.
pub async fn get(url: &str, timeout: Duration) -> Result<Answer, OutboundError> {
    call(Method::GET, url, HeaderMap::new(), Bytes::new(), timeout).await
}

async fn call_unbounded(
    method: Method,
    url: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Answer, OutboundError> {
    let bad = || OutboundError::Url(url.to_string());
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(bad()),
    };
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = format!("{host}:{port}");
    let tcp = TcpStream::connect((bare, port))
        .await
        .map_err(|source| OutboundError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or(addr);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, "switchyard")
        .body(Full::new(body))?;
    req.headers_mut().extend(headers);
    if https {
        let name = ServerName::try_from(bare.to_string()).map_err(|_| bad())?;
        let stream = tls()?
            .connect(name, tcp)
            .await
            .map_err(|source| OutboundError::Tls {
                host: bare.to_string(),
                source,
            })?;
        exchange(TokioIo::new(stream), req).await
    } else {
        exchange(TokioIo::new(tcp), req).await
    }
}

async fn exchange<IO>(io: IO, req: Request<Full<Bytes>>) -> Result<Answer, OutboundError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "outbound connection ended");
        }
    });
    let resp = sender.send_request(req).await;
    let answer = match resp {
        Ok(resp) => {
            let status = resp.status().as_u16();
            Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map(|b| Answer {
                    status,
                    body: b.to_bytes(),
                })
                .map_err(|e| OutboundError::Body(e.to_string()))
        }
        Err(e) => Err(e.into()),
    };
    driver.abort();
    answer
}

/// `%XX` for every byte outside RFC 3986's unreserved set: a query
/// parameter's value (PromQL holds `{`, `"`, `[`, spaces).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promql_is_encoded_as_a_query_value() {
        assert_eq!(
            percent_encode(r#"sum(rate(x{pool="blue"}[1m]))"#),
            "sum%28rate%28x%7Bpool%3D%22blue%22%7D%5B1m%5D%29%29"
        );
        assert_eq!(percent_encode("a b~"), "a%20b~");
    }

    #[tokio::test]
    async fn a_refused_connection_and_a_bad_url_are_errors_not_answers() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        let e = get(&format!("http://{addr}/"), Duration::from_secs(2))
            .await
            .expect_err("refused");
        assert!(matches!(e, OutboundError::Connect { .. }), "{e}");
        let e = get("ftp://127.0.0.1/", Duration::from_secs(1))
            .await
            .expect_err("bad url");
        assert!(matches!(e, OutboundError::Url(_)), "{e}");
    }
}
