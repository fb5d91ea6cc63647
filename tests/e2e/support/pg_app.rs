//! A small application that writes to PostgreSQL, on 127.0.0.1:0: blue's
//! connects to the primary, green's to the replica. `POST /write` inserts
//! one row whose id is the request's `x-request-id` and answers 200 once it
//! is committed (500 with the database's message if not); anything else
//! answers 200 (its health check). Stops when dropped.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// The table every write goes to: no unique key, so a write stored twice
/// shows as two rows.
pub const TABLE: &str =
    "CREATE TABLE IF NOT EXISTS writes (id text NOT NULL, at timestamptz DEFAULT now())";

pub struct PgApp {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for PgApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl PgApp {
    pub async fn start(db: Client) -> PgApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let addr = listener.local_addr().expect("app addr");
        let stop = CancellationToken::new();
        let (token, db) = (stop.clone(), Arc::new(db));
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                    _ = token.cancelled() => break,
                };
                let (db, conn_token) = (db.clone(), token.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let db = db.clone();
                        async move { Ok::<_, Infallible>(answer(req, &db).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = conn_token.cancelled() => {}
                    }
                });
            }
        });
        PgApp { addr, stop }
    }
}

async fn answer(req: Request<Incoming>, db: &Client) -> Response<Full<Bytes>> {
    let reply = |status: u16, body: String| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body)))
            .expect("a response")
    };
    if req.method() != http::Method::POST {
        return reply(200, "ok\n".into());
    }
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    match db
        .execute("INSERT INTO writes (id) VALUES ($1)", &[&id])
        .await
    {
        Ok(_) => reply(200, format!("stored {id}\n")),
        Err(e) => reply(500, format!("{e}\n")),
    }
}
