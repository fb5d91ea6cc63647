//! The outside services of analysis (SPEC.md section 10), for real on
//! 127.0.0.1:0: a webhook receiver that records every delivery and answers
//! from a script of statuses, and a check URL answering `{"value": N}` per
//! pool. Both stop when dropped.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

type Handler = Arc<dyn Fn(&http::request::Parts, Bytes) -> (u16, String) + Send + Sync>;

/// A tiny HTTP/1.1 server answering with `handler`.
struct Serving {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(handler: Handler) -> Serving {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                _ = token.cancelled() => return,
            };
            let (handler, token) = (handler.clone(), token.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let (status, text) = handler(&parts, body);
                        let resp = Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(text)))
                            .expect("response");
                        Ok::<_, Infallible>(resp)
                    }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                tokio::select! {
                    _ = conn => {}
                    _ = token.cancelled() => {}
                }
            });
        }
    });
    Serving { addr, stop }
}

/// One delivery to the receiver.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// The status the receiver answered.
    pub answered: u16,
}

impl Delivery {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A webhook receiver. It answers the statuses of its script in order,
/// then 200 forever.
pub struct Receiver {
    serving: Serving,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    pub async fn start(script: &[u16]) -> Receiver {
        let script = Mutex::new(script.iter().copied().collect::<VecDeque<_>>());
        Self::answering(move |_| script.lock().unwrap().pop_front().unwrap_or(200)).await
    }

    /// A receiver that answers 500 to the first `n` deliveries of each
    /// distinct body (each event), then 200.
    pub async fn failing_first(n: usize) -> Receiver {
        let seen = Mutex::new(std::collections::HashMap::<Bytes, usize>::new());
        Self::answering(move |body| {
            let mut seen = seen.lock().unwrap();
            let count = seen.entry(body.clone()).or_default();
            *count += 1;
            if *count <= n {
                500
            } else {
                200
            }
        })
        .await
    }

    async fn answering(answer: impl Fn(&Bytes) -> u16 + Send + Sync + 'static) -> Receiver {
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let log = deliveries.clone();
        let serving = serve(Arc::new(move |parts, body| {
            let answered = answer(&body);
            log.lock().unwrap().push(Delivery {
                path: parts.uri.path().to_string(),
                headers: parts.headers.clone(),
                body,
                answered,
            });
            (answered, "{}".into())
        }))
        .await;
        Receiver {
            serving,
            deliveries,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.serving.addr)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// Deliveries answered 2xx whose event is of `kind`.
    pub fn accepted(&self, kind: &str) -> Vec<serde_json::Value> {
        self.deliveries()
            .iter()
            .filter(|d| (200..300).contains(&d.answered))
            .map(Delivery::json)
            .filter(|e| e["kind"] == kind)
            .collect()
    }
}

/// A check URL: `GET /value/POOL` answers `{"value": N}` with that pool's
/// value, or 503 while the value is negative.
pub struct CheckValues {
    serving: Serving,
    values: Arc<[AtomicI64; 2]>,
}

impl CheckValues {
    pub async fn start(blue: i64, green: i64) -> CheckValues {
        let values = Arc::new([AtomicI64::new(blue), AtomicI64::new(green)]);
        let v = values.clone();
        let serving = serve(Arc::new(move |parts, _| {
            let i = match parts.uri.path() {
                "/value/blue" => 0,
                "/value/green" => 1,
                _ => return (404, "{}".into()),
            };
            match v[i].load(Ordering::Relaxed) {
                n if n < 0 => (503, "{}".into()),
                n => (200, format!("{{\"value\": {n}}}")),
            }
        }))
        .await;
        CheckValues { serving, values }
    }

    /// The URL template of an http check.
    pub fn url(&self) -> String {
        format!("http://{}/value/{{{{pool}}}}", self.serving.addr)
    }

    pub fn set(&self, pool: &str, value: i64) {
        let i = usize::from(pool == "green");
        self.values[i].store(value, Ordering::Relaxed);
    }
}
