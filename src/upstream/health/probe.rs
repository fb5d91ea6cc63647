//! One active health check: `GET path` on a new connection, bounded by
//! `health_check.timeout`, reduced to a [`CheckResult`].
//!
//! The [`Probe`] trait lets tests replace the network with a script, so the
//! checker's timing can be tested with paused tokio time.
//!
//! A check reaches its endpoint the way the endpoint's pool does (TLS, h2):
//! the pool's [`Connector`] comes from a [`PoolConnectors`] handed in from
//! above (the routing table in force implements it), since `upstream` must
//! not know the routing table.

use crate::config::{PoolName, UpstreamProtocol};
use crate::upstream::health::CheckSettings;
use crate::upstream::Connector;
use crate::upstream::{CheckResult, Endpoint};
use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{HeaderValue, Request};
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper::client::conn::http2;
use hyper_util::rt::TokioExecutor;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::sync::Arc;

const AGENT: HeaderValue = HeaderValue::from_static("switchyard-health-check");

/// Runs one check against an endpoint.
pub trait Probe: Send + Sync + 'static {
    fn check(
        &self,
        ep: &Endpoint,
        settings: &CheckSettings,
    ) -> impl Future<Output = CheckResult> + Send;
}

/// The connector each pool's requests use now, read at every check so a
/// reload's new TLS or protocol settings apply to the next one.
pub trait PoolConnectors: Send + Sync + 'static {
    fn connector(&self, pool: PoolName) -> Connector;
}

/// The real check, over the endpoint's pool's own transport: TLS when the
/// pool has it, HTTP/2 for `protocol: h2` pools, else HTTP/1.1. Without
/// [`PoolConnectors`] (unit tests) it speaks plain HTTP/1.1.
#[derive(Clone, Default)]
pub struct HttpProbe {
    pub connectors: Option<Arc<dyn PoolConnectors>>,
}

impl Probe for HttpProbe {
    async fn check(&self, ep: &Endpoint, s: &CheckSettings) -> CheckResult {
        let connector = self
            .connectors
            .as_ref()
            .map(|c| c.connector(ep.pool))
            .unwrap_or_else(|| Connector::new(s.timeout));
        match tokio::time::timeout(s.timeout, exchange(&connector, ep, s)).await {
            Ok(result) => result,
            Err(_elapsed) => CheckResult::TimedOut,
        }
    }
}

fn check_request(
    ep: &Endpoint,
    s: &CheckSettings,
    h2: bool,
    scheme: &str,
) -> Option<Request<Empty<Bytes>>> {
    let b = if h2 {
        Request::get(format!("{scheme}://{}{}", ep.authority, s.path))
            .version(http::Version::HTTP_2)
    } else {
        Request::get(s.path.as_str())
            .header(HOST, ep.authority.as_str())
            .header(CONNECTION, "close")
    };
    match b.header(USER_AGENT, AGENT).body(Empty::<Bytes>::new()) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "health check request cannot be built");
            None
        }
    }
}

async fn exchange(connector: &Connector, ep: &Endpoint, s: &CheckSettings) -> CheckResult {
    let stream = match connector.open_stream(ep).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(endpoint = %ep.address, error = %e, "health check: connect failed");
            return CheckResult::ConnectFailed;
        }
    };
    if connector.protocol == UpstreamProtocol::H2 {
        let Some(req) = check_request(ep, s, true, connector.scheme().as_str()) else {
            return CheckResult::ProtocolError;
        };
        let (mut sender, conn) = match http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
        {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(endpoint = %ep.address, error = %e, "health check: h2 handshake failed");
                return CheckResult::ProtocolError;
            }
        };
        let send = sender.send_request(req);
        tokio::pin!(conn, send);
        let resp = tokio::select! {
            biased;
            resp = &mut send => resp,
            _ = &mut conn => send.await,
        };
        return match resp {
            Ok(resp) => CheckResult::Status(resp.status().as_u16()),
            Err(e) => {
                tracing::debug!(endpoint = %ep.address, error = %e, "health check: no valid h2 response");
                CheckResult::ProtocolError
            }
        };
    }
    let (mut sender, conn) = match http1::handshake(TokioIo::new(stream)).await {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(endpoint = %ep.address, error = %e, "health check: handshake failed");
            return CheckResult::ProtocolError;
        }
    };
    let Some(req) = check_request(ep, s, false, "http") else {
        return CheckResult::ProtocolError;
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
            HttpProbe::default().check(&ep, &settings(2000)).await,
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
            HttpProbe::default().check(&ep, &settings(100)).await,
            CheckResult::TimedOut
        );

        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = l.local_addr().unwrap().to_string();
        drop(l);
        let ep = Endpoint::new(PoolName::Blue, &refused).unwrap();
        assert_eq!(
            HttpProbe::default().check(&ep, &settings(2000)).await,
            CheckResult::ConnectFailed
        );

        let (garbage, _h2) = server(Some("SSH-2.0-OpenSSH\r\n")).await;
        let ep = Endpoint::new(PoolName::Blue, &garbage).unwrap();
        assert_eq!(
            HttpProbe::default().check(&ep, &settings(2000)).await,
            CheckResult::ProtocolError
        );
    }
}
