//! The small JSON application behind the mirroring tests: `/static` (the
//! same everywhere), `/items` (with a `now` stamp that differs in every
//! answer), `/price` (this instance's price, and a session cookie naming
//! the instance), `/big` (1 MiB, the same everywhere), `/health`. With
//! `hang`, everything but `/health` never answers; with `fail`, it closes
//! the connection without an answer instead. Every request is noted
//! (whether it was a copy, its method, target and body).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Unique in the process: the `now` field differs between any two answers.
static STAMP: AtomicU64 = AtomicU64::new(1);

/// Size of `/big`'s answer.
pub const BIG: usize = 1 << 20;

/// One request as the application got it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// It carried `x-switchyard-mirror: 1`.
    pub copy: bool,
    pub method: String,
    pub target: String,
    pub body: Bytes,
}

pub struct App {
    pub addr: SocketAddr,
    pub hang: Arc<AtomicBool>,
    pub fail: Arc<AtomicBool>,
    /// Requests that carried `x-switchyard-mirror: 1`.
    pub mirrored: Arc<AtomicU64>,
    /// Every request but `/health`.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: CancellationToken,
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl App {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[derive(Clone)]
struct Shared {
    name: &'static str,
    price: u32,
    hang: Arc<AtomicBool>,
    fail: Arc<AtomicBool>,
    mirrored: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

pub async fn app(name: &'static str, price: u32) -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Shared {
        name,
        price,
        hang: Arc::new(AtomicBool::new(false)),
        fail: Arc::new(AtomicBool::new(false)),
        mirrored: Arc::new(AtomicU64::new(0)),
        seen: Arc::new(Mutex::new(Vec::new())),
    };
    let stop = CancellationToken::new();
    let (sh, s) = (shared.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                _ = s.cancelled() => return,
            };
            let (sh, s) = (sh.clone(), s.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let sh = sh.clone();
                    async move { answer(req, &sh).await }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                tokio::select! { _ = conn => {}, _ = s.cancelled() => {} }
            });
        }
    });
    App {
        addr,
        hang: shared.hang,
        fail: shared.fail,
        mirrored: shared.mirrored,
        seen: shared.seen,
        stop,
    }
}

/// The answer; an error (hyper then closes the connection) with `fail`.
async fn answer(req: Request<Incoming>, sh: &Shared) -> Result<Response<Full<Bytes>>, String> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let copy = parts
        .headers
        .get("x-switchyard-mirror")
        .is_some_and(|v| v == "1");
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if path != "/health" {
        if copy {
            sh.mirrored.fetch_add(1, Ordering::Relaxed);
        }
        sh.seen.lock().unwrap().push(Seen {
            copy,
            method: parts.method.to_string(),
            target: parts.uri.to_string(),
            body,
        });
        if sh.hang.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        if sh.fail.load(Ordering::Relaxed) {
            return Err(format!("{} fails {path}", sh.name));
        }
    }
    let mut resp = Response::builder()
        .header("content-type", "application/json")
        .header("x-instance", sh.name);
    let body = match path.as_str() {
        "/health" => json!({"ok": true}),
        "/static" => json!({"greeting": "hello", "items": [1, 2, 3]}),
        "/items" => json!({"items": [1, 2, 3], "now": STAMP.fetch_add(1, Ordering::Relaxed)}),
        "/price" => {
            resp = resp.header("set-cookie", format!("sid={}-secret", sh.name));
            json!({"sku": "a-1", "price": sh.price})
        }
        "/big" => {
            let body = Bytes::from(vec![b'x'; BIG]);
            return Ok(resp.body(Full::new(body)).unwrap());
        }
        _ => json!({"path": path}),
    };
    Ok(resp.body(Full::new(Bytes::from(body.to_string()))).unwrap())
}
