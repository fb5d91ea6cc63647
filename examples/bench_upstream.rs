//! A deliberately small and fast HTTP/1.1 upstream for load comparisons.
//!
//! One process serves several upstream instances, one per `--listen`, so the
//! comparison harness (`benches/compare/run.sh`) can start two blue and two
//! green instances pinned to a single core. Every response carries
//! `x-upstream: NAME` so a run can verify the traffic split, and a fixed body
//! of `--body-size` bytes. `GET /health` answers 200 with `ok`.
//!
//! **Failure knob.** Each instance can be told, while it runs, to answer a
//! share of its requests with a 5xx, so that a harness can make green fail
//! in the middle of a load run (the automatic-rollback scenario of
//! `run.sh`). The knob is a control path on the instance's own listener:
//!
//! ```text
//! curl -X POST 'http://127.0.0.1:18011/__fail?rate=0.5&status=500'  # on
//! curl -X POST 'http://127.0.0.1:18011/__fail?rate=0'               # off
//! curl 'http://127.0.0.1:18011/__fail'                              # read
//! ```
//!
//! Both answer `rate=R status=S injected=N`: N counts the failures this
//! instance has answered since it started, so a harness can tell exactly how
//! many of the 5xx its client saw came from the upstream. Failures are spread
//! evenly, not drawn at random: at `rate=0.5` every second request fails, so
//! a run is reproducible (and no instance sees five failures in a row, which
//! would let passive outlier detection eject it). `/health` and `/__fail`
//! itself never fail: the knob models an application whose health check
//! passes while its requests fail, the case health checks cannot catch and
//! automatic rollback must. With the knob off (the default) a request costs
//! one relaxed atomic load more than before.
//!
//! ```text
//! cargo run --release --example bench_upstream -- \
//!     --listen blue-1=127.0.0.1:18001 --listen blue-2=127.0.0.1:18002 \
//!     --listen green-1=127.0.0.1:18011 --listen green-2=127.0.0.1:18012 \
//!     --body-size 64
//! ```
//!
//! A plain `--listen ADDR` is named `upstream-N` (N counted from 1 in the
//! order given). `--delay-ms N` makes every answer other than `/health` and
//! `/__fail` wait N ms first (a slow application: the matrix's 20 ms cell).
//! `--h2` serves HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1, and
//! answers a request of `content-type: application/grpc` as a gRPC unary
//! call: one length-prefixed message of `--body-size` bytes, then the
//! trailer `grpc-status: 0`.
//!
//! The server runs on a current-thread runtime: the harness pins
//! it to one core, and a single thread keeps its CPU use easy to reason about.
//! It does no work per request beyond parsing and writing a prebuilt response,
//! so that what a benchmark measures is the proxy, not the upstream.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::HeaderMap;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::WithTrailers;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::{ready, Ready};
use std::time::Duration;
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

    /// Milliseconds every answer other than `/health` and `/__fail` waits.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,

    /// Serve HTTP/2 (prior knowledge) instead of HTTP/1.1; gRPC requests
    /// get a gRPC answer.
    #[arg(long)]
    h2: bool,
}

/// A gRPC answer's trailers, ready at once.
type Trailers = Ready<Option<Result<HeaderMap, Infallible>>>;
/// A plain answer, or a gRPC one with its trailers.
type AnswerBody = Either<Full<Bytes>, WithTrailers<Full<Bytes>, Trailers>>;

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

/// Failures are injected per million requests.
const PPM: u64 = 1_000_000;

/// The failure knob of one instance (`/__fail`). Every field is an atomic
/// touched with relaxed ordering: the runtime has one thread, and the knob
/// needs no ordering between its fields beyond "eventually seen".
#[derive(Debug)]
struct FailKnob {
    /// Share of requests to fail, per million; 0 = off (the fast path).
    rate_ppm: AtomicU32,
    /// Status of an injected failure.
    status: AtomicU16,
    /// Requests seen while the knob was on, since it was last set.
    seq: AtomicU64,
    /// Failures answered since the process started.
    injected: AtomicU64,
}

impl FailKnob {
    fn new() -> Self {
        FailKnob {
            rate_ppm: AtomicU32::new(0),
            status: AtomicU16::new(500),
            seq: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// The status to answer this request with instead of 200, if any.
    /// Spread evenly: request n (from 0) fails when floor((n + 1) * rate)
    /// passes an integer, so any run of requests fails at `rate` of them,
    /// rounded, and 0.5 fails every second one.
    #[inline]
    fn injected_failure(&self) -> Option<StatusCode> {
        let ppm = u64::from(self.rate_ppm.load(Ordering::Relaxed));
        if ppm == 0 {
            return None;
        }
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        if (n + 1) * ppm / PPM == n * ppm / PPM {
            return None;
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        StatusCode::from_u16(self.status.load(Ordering::Relaxed)).ok()
    }

    /// Applies `rate=R[&status=S]` (a POST's query string).
    fn set(&self, query: &str) -> Result<(), String> {
        let (mut rate, mut status) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("rate", v)) => rate = Some(parse_rate(v)?),
                Some(("status", v)) => status = Some(parse_status(v)?),
                _ => {
                    return Err(format!(
                        "unknown parameter {pair:?}: expected rate=R[&status=S]"
                    ))
                }
            }
        }
        let rate = rate.ok_or("rate=R missing (0 to 1, e.g. rate=0.5)")?;
        if let Some(status) = status {
            self.status.store(status, Ordering::Relaxed);
        }
        self.seq.store(0, Ordering::Relaxed);
        self.rate_ppm.store(rate, Ordering::Relaxed);
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "rate={} status={} injected={}\n",
            f64::from(self.rate_ppm.load(Ordering::Relaxed)) / PPM as f64,
            self.status.load(Ordering::Relaxed),
            self.injected.load(Ordering::Relaxed)
        )
    }
}

fn parse_rate(v: &str) -> Result<u32, String> {
    match v.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok((r * PPM as f64).round() as u32),
        _ => Err(format!("rate={v}: expected a share from 0 to 1")),
    }
}

fn parse_status(v: &str) -> Result<u16, String> {
    match v.parse::<u16>() {
        Ok(s) if (500..=599).contains(&s) => Ok(s),
        _ => Err(format!("status={v}: expected a 5xx status")),
    }
}

/// The prebuilt parts of every response of one instance, and its knob.
#[derive(Clone)]
struct Responder {
    name: HeaderValue,
    body: Bytes,
    /// The same bytes as one gRPC message (5-byte prefix, then the body).
    grpc: Bytes,
    fail: Arc<FailKnob>,
    delay: Option<Duration>,
}

impl Responder {
    /// The answer to `req`, and whether it waits `--delay-ms` first.
    fn answer(&self, req: &Request<Incoming>) -> (Response<AnswerBody>, bool) {
        let waits = !matches!(req.uri().path(), "/health" | "/__fail");
        let grpc = req
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if grpc && waits {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let body = Full::new(self.grpc.clone()).with_trailers(ready(Some(Ok(trailers))));
            let mut response = Response::new(Either::Right(body));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert("x-upstream", self.name.clone());
            return (response, true);
        }
        (self.respond(req).map(Either::Left), waits)
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let body = match req.uri().path() {
            "/health" => {
                if req.method() != Method::GET && req.method() != Method::HEAD {
                    return self.with_headers(StatusCode::METHOD_NOT_ALLOWED, Bytes::new());
                }
                Bytes::from_static(b"ok\n")
            }
            "/__fail" => return self.control(req),
            _ => match self.fail.injected_failure() {
                None => self.body.clone(),
                Some(status) => {
                    return self.with_headers(status, Bytes::from_static(b"injected failure\n"))
                }
            },
        };
        self.with_headers(StatusCode::OK, body)
    }

    /// `/__fail`: GET reads the knob, POST sets it from the query string.
    fn control(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() == Method::POST {
            if let Err(msg) = self.fail.set(req.uri().query().unwrap_or("")) {
                return self.with_headers(StatusCode::BAD_REQUEST, Bytes::from(msg + "\n"));
            }
        } else if req.method() != Method::GET {
            return self.with_headers(StatusCode::METHOD_NOT_ALLOWED, Bytes::new());
        }
        self.with_headers(StatusCode::OK, Bytes::from(self.fail.describe()))
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

async fn serve(listener: TcpListener, responder: Responder, h2: bool) {
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
            let delay = responder.delay;
            let service = service_fn(move |req: Request<Incoming>| {
                let (response, waits) = responder.answer(&req);
                let mut upload = req.into_body();
                async move {
                    // An upload is read to its end before the answer, as an
                    // application does: answering first makes hyper close
                    // the connection and the client (h2load) fail it.
                    while !upload.is_end_stream() {
                        match upload.frame().await {
                            Some(Ok(_)) => {}
                            _ => break,
                        }
                    }
                    if let (Some(d), true) = (delay, waits) {
                        // The slow application this upstream plays.
                        tokio::time::sleep(d).await;
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            // Client resets at the end of a wrk run are normal: not reported.
            let io = TokioIo::new(stream);
            let _ = if h2 {
                http2::Builder::new(TokioExecutor::new())
                    .max_concurrent_streams(1024)
                    .serve_connection(io, service)
                    .await
            } else {
                http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(io, service)
                    .await
            };
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
    let mut grpc = Vec::with_capacity(5 + args.body_size);
    grpc.push(0);
    grpc.extend_from_slice(&u32::try_from(args.body_size)?.to_be_bytes());
    grpc.extend_from_slice(&body);
    let grpc = Bytes::from(grpc);
    let delay = (args.delay_ms > 0).then(|| Duration::from_millis(args.delay_ms));
    let h2 = args.h2;

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
                grpc: grpc.clone(),
                fail: Arc::new(FailKnob::new()),
                delay,
            };
            tokio::spawn(serve(listener, responder, h2));
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

    fn failures_of(knob: &FailKnob, n: usize) -> Vec<bool> {
        (0..n).map(|_| knob.injected_failure().is_some()).collect()
    }

    #[test]
    fn the_knob_is_off_by_default_and_spreads_failures_evenly() {
        let knob = FailKnob::new();
        assert!(failures_of(&knob, 100).iter().all(|f| !f));
        knob.set("rate=0.5").unwrap();
        assert_eq!(
            failures_of(&knob, 6),
            [false, true, false, true, false, true]
        );
        knob.set("rate=1&status=503").unwrap();
        assert_eq!(
            knob.injected_failure(),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        knob.set("rate=0.1").unwrap();
        assert_eq!(failures_of(&knob, 1000).iter().filter(|f| **f).count(), 100);
        knob.set("rate=0").unwrap();
        assert!(failures_of(&knob, 100).iter().all(|f| !f));
        assert_eq!(knob.describe(), "rate=0 status=503 injected=104\n");
    }

    #[test]
    fn bad_knob_settings_are_refused_and_change_nothing() {
        let knob = FailKnob::new();
        for query in [
            "",
            "rate=2",
            "rate=-0.1",
            "rate=x",
            "rate=1&status=200",
            "rate=1&x=1",
        ] {
            assert!(knob.set(query).is_err(), "{query}");
        }
        assert_eq!(knob.injected_failure(), None);
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(parse_instance("blue-1=localhost", 1).is_err());
        assert!(parse_instance("=127.0.0.1:1", 1).is_err());
        assert!(parse_instance("bad\nname=127.0.0.1:1", 1).is_err());
    }
}
