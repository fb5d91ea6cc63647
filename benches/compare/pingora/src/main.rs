//! Pingora as a peer of the load comparison (benches/compare/run.sh
//! --with-pingora): the smallest HTTP/1.1 reverse proxy with the same
//! configuration as the nginx, HAProxy and switchyard peers.
//!
//! - one listener on the given address, plain HTTP/1.1, no TLS;
//! - 2 blue + 2 green upstreams, weighted 9:9:1:1 (blue 90 %, green 10 %)
//!   through pingora-load-balancing's `Weighted<RoundRobin>` selection, the
//!   weighted round robin it offers (exactly 18 blue of every 20 requests);
//! - keep-alive to the upstreams: pingora's connection pool (default size
//!   128 idle connections, above the 64 client connections);
//! - the client's `Host` passed as it is (pingora forwards the request
//!   header unchanged), `X-Forwarded-For` appended as nginx's
//!   `$proxy_add_x_forwarded_for` does;
//! - active health checks: `GET /health` every 2 s, healthy after 2
//!   successes, unhealthy after 3 failures (HAProxy's and switchyard's
//!   thresholds), from pingora-load-balancing's `HttpHealthCheck`;
//! - `threads: 1` in the server configuration, no daemon; no logger is
//!   installed, so pingora logs nothing.
//!
//! Usage: pingora-bench-proxy --listen 127.0.0.1:PORT --blue ADDR --blue ADDR
//!            --green ADDR --green ADDR [--blue-weight 9] [--green-weight 1]
//!            [--work-stealing true|false]
//!
//! `--work-stealing false` (default true, pingora's default) runs the
//! service on pingora's no-steal runtime: one current-thread tokio runtime
//! per thread instead of a multi-thread runtime with one worker.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use pingora::lb::discovery::Static;
use pingora::lb::health_check::HttpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::services::background::background_service;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Proxy(Arc<LoadBalancer<RoundRobin>>);

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = ();
    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        // Round robin ignores the key; 256 = how many backends to try past
        // unhealthy ones.
        let backend = self
            .0
            .select(b"", 256)
            .ok_or_else(|| Error::explain(HTTPStatus(502), "no healthy upstream"))?;
        Ok(Box::new(HttpPeer::new(backend, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        let Some(ip) = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()) else {
            return Ok(());
        };
        let xff = match upstream_request.headers.get("x-forwarded-for") {
            Some(prev) => format!("{}, {}", String::from_utf8_lossy(prev.as_bytes()), ip),
            None => ip.to_string(),
        };
        upstream_request.insert_header("x-forwarded-for", xff)?;
        Ok(())
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: pingora-bench-proxy --listen ADDR --blue ADDR --blue ADDR --green ADDR \
         --green ADDR [--blue-weight N] [--green-weight N] [--work-stealing true|false]"
    );
    std::process::exit(2)
}

fn main() {
    let mut listen = None;
    let (mut blue, mut green) = (Vec::new(), Vec::new());
    let (mut blue_weight, mut green_weight) = (9usize, 1usize);
    let mut work_stealing = true; // pingora's default
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--listen" => listen = Some(value),
            "--blue" => blue.push(value),
            "--green" => green.push(value),
            "--blue-weight" => blue_weight = value.parse().unwrap_or_else(|_| usage()),
            "--green-weight" => green_weight = value.parse().unwrap_or_else(|_| usage()),
            "--work-stealing" => work_stealing = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let listen = listen.unwrap_or_else(|| usage());
    if blue.is_empty() || green.is_empty() {
        usage();
    }

    let mut backends = BTreeSet::new();
    for (addrs, weight) in [(&blue, blue_weight), (&green, green_weight)] {
        for addr in addrs {
            let b = Backend::new_with_weight(addr, weight).unwrap_or_else(|e| {
                eprintln!("pingora-bench-proxy: bad upstream address {addr}: {e}");
                std::process::exit(2)
            });
            backends.insert(b);
        }
    }
    let mut upstreams = LoadBalancer::<RoundRobin>::from_backends(Backends::new(Static::new(backends)));
    // Static discovery never blocks: the backends are in place before the
    // first request rather than after the background service's first pass.
    upstreams.update().now_or_never().expect("static discovery").expect("static discovery");

    let mut hc = HttpHealthCheck::new("127.0.0.1", false);
    hc.req = RequestHeader::build("GET", b"/health", None).expect("health request");
    hc.req.insert_header("Host", "127.0.0.1").expect("health request");
    hc.consecutive_success = 2;
    hc.consecutive_failure = 3;
    hc.reuse_connection = true;
    upstreams.set_health_check(Box::new(hc));
    upstreams.health_check_frequency = Some(Duration::from_secs(2));

    let mut conf = ServerConf::default();
    conf.threads = 1;
    conf.work_stealing = work_stealing;
    conf.daemon = false;
    // run.sh stops its peers with SIGTERM and waits 3 s: no grace period.
    conf.grace_period_seconds = Some(0);
    conf.graceful_shutdown_timeout_seconds = Some(1);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let background = background_service("health check", upstreams);
    let mut proxy = http_proxy_service(&server.configuration, Proxy(background.task()));
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.add_service(background);
    server.run_forever();
}
