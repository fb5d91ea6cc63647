//! One active health check: `GET path` on a new connection, bounded by
//! `health_check.timeout`, reduced to a [`CheckResult`].
//!
//! The [`Probe`] trait lets tests replace the network with a script, so the
//! checker's timing can be tested with paused tokio time.

use crate::upstream::health::CheckSettings;
use crate::upstream::{CheckResult, Endpoint};
use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{HeaderValue, Request};
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::future::Future;
use tokio::net::TcpStream;

const AGENT: HeaderValue = HeaderValue::from_static("switchyard-health-check");

/// Runs one check against an endpoint.
pub trait Probe: Send + Sync + 'static {
    fn check(
        &self,
        ep: &Endpoint,
        settings: &CheckSettings,
    ) -> impl Future<Output = CheckResult> + Send;
}

/// The real check over plain HTTP/1.1.
///
/// Upstream TLS (`pools.*.tls`) is not applied here yet: when the connector
/// learns TLS, this probe must use it too.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpProbe;

impl Probe for HttpProbe {
    async fn check(&self, ep: &Endpoint, s: &CheckSettings) -> CheckResult {
        match tokio::time::timeout(s.timeout, exchange(ep, s)).await {
            Ok(result) => result,
            Err(_elapsed) => CheckResult::TimedOut,
        }
    }
}

async fn exchange(ep: &Endpoint, s: &CheckSettings) -> CheckResult {
    let stream = match TcpStream::connect(ep.address.as_str()).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(endpoint = %ep.address, error = %e, "health check: connect failed");
            return CheckResult::ConnectFailed;
        }
    };
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let (mut sender, conn) = match http1::handshake(TokioIo::new(stream)).await {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(endpoint = %ep.address, error = %e, "health check: handshake failed");
            return CheckResult::ProtocolError;
        }
    };
    let req = Request::get(s.path.as_str())
        .header(HOST, ep.authority.as_str())
        .header(USER_AGENT, AGENT)
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new());
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "health check request cannot be built");
            return CheckResult::ProtocolError;
        }
    };
    // Drive the connection in this future (no task per check); dropping it
    // after the response headers closes the connection. When the connection
    // ends first, the response may still have been delivered.
    let send = sender.send_request(req);
    tokio::pin!(conn, send);
    let resp = tokio::select! {
        biased;
        resp = &mut send => resp,
        _ = &mut conn => send.await,
    };
    match resp {
        Ok(resp) => CheckResult::Status(resp.status().as_u16()),
        Err(e) => {
            tracing::debug!(endpoint = %ep.address, error = %e, "health check: no valid response");
            CheckResult::ProtocolError
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HealthCheckConfig, PoolName};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn settings(timeout_ms: u64) -> CheckSettings {
        CheckSettings::from_config(&HealthCheckConfig {
            timeout: Duration::from_millis(timeout_ms),
            ..HealthCheckConfig::default()
        })
        .unwrap()
    }

    /// A server answering every connection with `reply` (None: stays silent),
    /// and sending each request head it read to the returned channel.
    async fn server(
        reply: Option<&'static str>,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1024];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let _sent = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                    match reply {
                        Some(r) => {
                            let _written = s.write_all(r.as_bytes()).await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn a_check_reports_the_status_and_sends_a_plain_get() {
        let (addr, mut heads) = server(Some(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        ))
        .await;
        let ep = Endpoint::new(PoolName::Blue, &addr).unwrap();
        assert_eq!(
            HttpProbe.check(&ep, &settings(2000)).await,
            CheckResult::Status(503)
        );
        let head = heads.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /health http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("host: {addr}")), "{head}");
        assert!(head.contains("connection: close"), "{head}");
    }

    #[tokio::test]
    async fn silence_is_a_timeout_refusal_a_connect_failure_garbage_a_protocol_error() {
        let (silent, _h1) = server(None).await;
        let ep = Endpoint::new(PoolName::Blue, &silent).unwrap();
        assert_eq!(
            HttpProbe.check(&ep, &settings(100)).await,
            CheckResult::TimedOut
        );

        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = l.local_addr().unwrap().to_string();
        drop(l);
        let ep = Endpoint::new(PoolName::Blue, &refused).unwrap();
        assert_eq!(
            HttpProbe.check(&ep, &settings(2000)).await,
            CheckResult::ConnectFailed
        );

        let (garbage, _h2) = server(Some("SSH-2.0-OpenSSH\r\n")).await;
        let ep = Endpoint::new(PoolName::Blue, &garbage).unwrap();
        assert_eq!(
            HttpProbe.check(&ep, &settings(2000)).await,
            CheckResult::ProtocolError
        );
    }
}
