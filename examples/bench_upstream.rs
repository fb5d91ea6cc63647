//! A deliberately small and fast HTTP/1.1 upstream for load comparisons.
//!
//! One process serves several upstream instances, one per `--listen`, so the
//! comparison harness (`benches/compare/run.sh`) can start two blue and two
//! green instances pinned to a single core. Every response carries
//! `x-upstream: NAME` so a run can verify the traffic split, and a fixed body
//! of `--body-size` bytes. `GET /health` answers 200 with `ok`.
//!
//! ```text
//! cargo run --release --example bench_upstream -- \
//!     --listen blue-1=127.0.0.1:18001 --listen blue-2=127.0.0.1:18002 \
//!     --listen green-1=127.0.0.1:18011 --listen green-2=127.0.0.1:18012 \
//!     --body-size 64
//! ```
//!
//! A plain `--listen ADDR` is named `upstream-N` (N counted from 1 in the
//! order given). The server runs on a current-thread runtime: the harness pins
//! it to one core, and a single thread keeps its CPU use easy to reason about.
//! It does no work per request beyond parsing and writing a prebuilt response,
//! so that what a benchmark measures is the proxy, not the upstream.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A fast upstream for switchyard's load comparison.
#[derive(Debug, Parser)]
#[command(name = "bench_upstream")]
struct Args {
    /// `[NAME=]ADDR` to serve, e.g. `blue-1=127.0.0.1:18001`. Repeatable.
    #[arg(long = "listen", required = true, value_name = "[NAME=]ADDR")]
    listen: Vec<String>,

    /// Size in bytes of the body of every response other than `/health`.
    #[arg(long, default_value_t = 64)]
    body_size: usize,
}

/// One upstream instance: its name and the address it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Instance {
    name: String,
    addr: SocketAddr,
}

/// Parses `NAME=ADDR` or `ADDR`; the latter is named `upstream-{index}`.
fn parse_instance(spec: &str, index: usize) -> anyhow::Result<Instance> {
    let (name, addr) = match spec.split_once('=') {
        Some((name, addr)) => (name.to_owned(), addr),
        None => (format!("upstream-{index}"), spec),
    };
    if name.is_empty() || HeaderValue::from_str(&name).is_err() {
        bail!("--listen {spec:?}: the name must be a non-empty header-safe string");
    }
    let addr = addr
        .parse()
        .with_context(|| format!("--listen {spec:?}: not an IP:PORT address"))?;
    Ok(Instance { name, addr })
}

/// The prebuilt parts of every response of one instance.
#[derive(Clone)]
struct Responder {
    name: HeaderValue,
    body: Bytes,
}

impl Responder {
    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let body = if req.uri().path() == "/health" {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return self.with_headers(StatusCode::METHOD_NOT_ALLOWED, Bytes::new());
            }
            Bytes::from_static(b"ok\n")
        } else {
            self.body.clone()
        };
        self.with_headers(StatusCode::OK, body)
    }

    fn with_headers(&self, status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert("x-upstream", self.name.clone());
        response
    }
}

async fn serve(listener: TcpListener, responder: Responder) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE and friends: report, back off briefly, keep serving.
                eprintln!("bench_upstream: accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Err(err) = stream.set_nodelay(true) {
            eprintln!("bench_upstream: TCP_NODELAY failed: {err}");
        }
        let responder = responder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = responder.respond(&req);
                async move { Ok::<_, Infallible>(response) }
            });
            // Client resets at the end of a wrk run are normal: not reported.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let instances = args
        .listen
        .iter()
        .enumerate()
        .map(|(i, spec)| parse_instance(spec, i + 1))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let body = Bytes::from(vec![b'x'; args.body_size]);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(async move {
        for instance in instances {
            let listener = TcpListener::bind(instance.addr)
                .await
                .with_context(|| format!("binding {} ({})", instance.addr, instance.name))?;
            println!("bench_upstream: {} on {}", instance.name, instance.addr);
            let responder = Responder {
                name: HeaderValue::from_str(&instance.name).context("instance name")?,
                body: body.clone(),
            };
            tokio::spawn(serve(listener, responder));
        }
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_anonymous_instances() {
        let named = parse_instance("green-2=127.0.0.1:18012", 4).unwrap();
        assert_eq!(named.name, "green-2");
        assert_eq!(named.addr, "127.0.0.1:18012".parse().unwrap());
        let anonymous = parse_instance("127.0.0.1:18001", 1).unwrap();
        assert_eq!(anonymous.name, "upstream-1");
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(parse_instance("blue-1=localhost", 1).is_err());
        assert!(parse_instance("=127.0.0.1:1", 1).is_err());
        assert!(parse_instance("bad\nname=127.0.0.1:1", 1).is_err());
    }
}
