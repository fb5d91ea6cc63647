//! `switchyard demo`: everything on one machine with no set-up. Two blue and
//! two green sample upstreams on loopback, the proxy on 127.0.0.1:8080 (and
//! HTTPS on 127.0.0.1:8443, with a throwaway CA and certificate made at
//! start-up in a temporary directory, removed on exit), the admin API on
//! 127.0.0.1:9901, and a printed guide of what to try.
//!
//! The sample upstreams are also what the end-to-end tests of the demo talk
//! to; they answer with their colour and instance name and serve `/health`.
//! Each also keeps a business metric ([`orders`]): the demo's control
//! listener serves a pool's orders per request to the demo's
//! `analysis.checks` entry, and can stop a pool taking orders while it
//! keeps answering 200.

mod guide;
pub mod orders;

use crate::config::{self, PoolName};
use crate::proxy::listener_tls::selfsigned::Ca;
use crate::server;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A sample application instance: answers with its name and colour.
pub struct SampleApp {
    pub name: String,
    pub pool: PoolName,
    pub addr: SocketAddr,
    /// Share of requests (in 1/10000) answered with 500, for trying rollback.
    pub failure_bp: Arc<AtomicU32>,
    /// Unix ms of the first 500 it answered since the failure rate was
    /// last set (0: none yet): when a failure began, as the upstream saw it.
    pub first_failure_ms: Arc<AtomicU64>,
    /// Orders placed by the requests it answers.
    pub orders: Arc<orders::Orders>,
    stop: CancellationToken,
}

impl SampleApp {
    /// Start an instance on `bind` (use port 0 for any free port).
    pub async fn start(name: &str, pool: PoolName, bind: SocketAddr) -> std::io::Result<SampleApp> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let failure_bp = Arc::new(AtomicU32::new(0));
        let first_failure_ms = Arc::new(AtomicU64::new(0));
        let orders = Arc::new(orders::Orders::default());
        let app = Arc::new(AppInfo {
            orders: orders.clone(),
            greeting: Bytes::from(format!("Hello from {name} ({pool})\n")),
            name: http::HeaderValue::from_str(name)
                .unwrap_or(http::HeaderValue::from_static("app")),
            pool,
            failure_bp: failure_bp.clone(),
            first_failure_ms: first_failure_ms.clone(),
        });
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                    _ = token.cancelled() => break,
                };
                let app = app.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(app.answer(req)) }
                    });
                    let _closed = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(SampleApp {
            name: name.to_string(),
            pool,
            addr,
            failure_bp,
            first_failure_ms,
            orders,
            stop,
        })
    }

    /// Answer 500 to `rate` (0.0..=1.0) of requests from now on.
    pub fn set_failure_rate(&self, rate: f64) {
        let bp = (rate.clamp(0.0, 1.0) * 10_000.0).round() as u32;
        self.first_failure_ms.store(0, Ordering::SeqCst);
        self.failure_bp.store(bp, Ordering::SeqCst);
    }
}

impl Drop for SampleApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct AppInfo {
    greeting: Bytes,
    name: http::HeaderValue,
    pool: PoolName,
    failure_bp: Arc<AtomicU32>,
    first_failure_ms: Arc<AtomicU64>,
    orders: Arc<orders::Orders>,
}

impl AppInfo {
    fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, body) = if req.uri().path() == "/health" {
            (StatusCode::OK, Bytes::from_static(b"ok\n"))
        } else if fastrand::u32(0..10_000) < self.failure_bp.load(Ordering::Relaxed) {
            let now = crate::clock::unix_ms();
            let _first = self.first_failure_ms.compare_exchange(
                0,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Bytes::from_static(b"injected failure\n"),
            )
        } else {
            (StatusCode::OK, self.greeting.clone())
        };
        if req.uri().path() != "/health" {
            let second = crate::clock::unix_ms() / 1000;
            self.orders.record(second, status == StatusCode::OK);
        }
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert("x-upstream", self.name.clone());
        h.insert(
            "x-upstream-pool",
            http::HeaderValue::from_static(self.pool.as_str()),
        );
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        resp
    }
}

/// The demo's configuration; `{BLUE}` and `{GREEN}` become endpoint lists.
pub const DEMO_CONFIG: &str = r#"# switchyard demo configuration (generated; upstreams on loopback)
listeners:
  - bind: "{LISTEN}"
  - bind: "{TLS_LISTEN}"
    tls: { cert: "{CERT}", key: "{KEY}" }
admin:
  bind: "{ADMIN}"
pools:
  blue:
    endpoints: {BLUE}
  green:
    endpoints: {GREEN}
health_check:
  interval: 1s
  timeout: 500ms
traffic:
  initial: { blue: 100, green: 0 }
  expose_pool_header: true
rollout:
  steps: [10, 25, 50, 75, 100]
  step_interval: 15s
  bake_time: 30s
rollback:
  interval: 250ms
  window: 10s
  recent_window: 2s
  min_requests: 5
  max_error_rate: 0.05
  consecutive_breaches: 2
  grace: 2s
analysis:
  checks:
    # The sample upstreams' business metric: orders per request over the
    # last 5 s, served by the demo's control listener. Green must take at
    # least 90 % of blue's; 3 failed readings in a row roll back.
    - name: orders
      http: { url: "http://{CONTROL}/orders/{{pool}}" }
      compare: baseline
      min_ratio: 0.9
      interval: 1s
      timeout: 500ms
      failure_limit: 3
state_file: null
"#;

/// The running demo: its upstreams, the proxy, and the demo's own helpers
/// (background traffic and the failure switch).
pub struct Demo {
    pub apps: Vec<Arc<SampleApp>>,
    pub server: server::Server,
    pub control_addr: SocketAddr,
    /// Background requests per second (0: none).
    pub traffic: u32,
    stop: CancellationToken,
    pub certs: DemoCerts,
}

/// The demo's CA and certificate files, removed when dropped.
pub struct DemoCerts {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl DemoCerts {
    /// A new CA and a certificate for `localhost` and 127.0.0.1, written to
    /// a fresh directory only this user can read.
    fn create() -> anyhow::Result<DemoCerts> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let ca = Ca::new("switchyard demo CA")?;
        let issued = ca.issue(&["localhost", "127.0.0.1"])?;
        let dir = std::env::temp_dir().join(format!(
            "switchyard-demo-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let certs = DemoCerts {
            ca: dir.join("ca.pem"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            dir,
        };
        for (path, text) in [
            (&certs.ca, &ca.cert_pem),
            (&certs.cert, &issued.cert_pem),
            (&certs.key, &issued.key_pem),
        ] {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            std::io::Write::write_all(&mut f, text.as_bytes())?;
        }
        Ok(certs)
    }
}

impl Drop for DemoCerts {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the demo certificates");
        }
    }
}

impl Demo {
    /// Set the failure rate of every sample upstream of `pool`.
    pub fn set_failure_rate(&self, pool: PoolName, rate: f64) {
        for a in self.apps.iter().filter(|a| a.pool == pool) {
            a.set_failure_rate(rate);
        }
    }
}

/// The demo control endpoint:
/// - `POST /fail/{blue|green}?rate=0.2` sets the share of that pool's
///   requests the sample upstreams answer with 500;
/// - `GET /orders/{blue|green}` is the pool's orders per request over the
///   last few seconds as `{"value": N}` (the demo's check reads it), or 503
///   when the pool answered no request then (no data);
/// - `POST /orders/{blue|green}/stop` (and `/start`): the pool's upstreams
///   stop (resume) taking orders, and keep answering 200.
async fn control(req: Request<Incoming>, apps: Arc<Vec<Arc<SampleApp>>>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let post = req.method() == http::Method::POST;
    let (status, body) = if let Some(rest) = path.strip_prefix("/orders/") {
        orders_control(post, rest, &apps)
    } else {
        fail_control(post, path, req.uri().query(), &apps)
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

fn fail_control(
    post: bool,
    path: &str,
    query: Option<&str>,
    apps: &[Arc<SampleApp>],
) -> (StatusCode, String) {
    let pool = path
        .strip_prefix("/fail/")
        .and_then(|p| p.parse::<PoolName>().ok());
    let rate = query
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("rate=")))
        .and_then(|r| r.parse::<f64>().ok())
        .filter(|r| (0.0..=1.0).contains(r));
    match (post, pool, rate) {
        (true, Some(pool), Some(rate)) => {
            for a in apps.iter().filter(|a| a.pool == pool) {
                a.set_failure_rate(rate);
            }
            (
                StatusCode::OK,
                format!(
                    "{pool} upstreams now fail {:.0}% of requests\n",
                    rate * 100.0
                ),
            )
        }
        _ => (
            StatusCode::BAD_REQUEST,
            "use: POST /fail/blue|green?rate=0.0..1.0, GET /orders/blue|green, POST /orders/blue|green/stop|start\n"
                .to_string(),
        ),
    }
}

/// `rest` is the path after `/orders/`: `green`, `green/stop`, `green/start`.
fn orders_control(post: bool, rest: &str, apps: &[Arc<SampleApp>]) -> (StatusCode, String) {
    let (pool, action) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(pool) = pool.parse::<PoolName>() else {
        return (
            StatusCode::NOT_FOUND,
            "use: GET /orders/blue|green, POST /orders/blue|green/stop|start\n".to_string(),
        );
    };
    let of_pool = || apps.iter().filter(move |a| a.pool == pool);
    match (post, action) {
        (false, "") => {
            let now = crate::clock::unix_ms() / 1000;
            let mut recent = orders::Counts::default();
            let mut total = orders::Counts::default();
            for a in of_pool() {
                recent.add(a.orders.recent(now));
                total.add(a.orders.total());
            }
            let taking = of_pool().all(|a| a.orders.taking());
            match recent.per_request() {
                Some(value) => (
                    StatusCode::OK,
                    format!(
                        "{}\n",
                        serde_json::json!({
                            "value": value,
                            "pool": pool,
                            "window_seconds": orders::WINDOW_SECONDS,
                            "requests": recent.requests,
                            "orders": recent.orders,
                            "requests_total": total.requests,
                            "orders_total": total.orders,
                            "taking_orders": taking,
                        })
                    ),
                ),
                None => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "no {pool} requests in the last {} s: no data\n",
                        orders::WINDOW_SECONDS
                    ),
                ),
            }
        }
        (true, "stop" | "start") => {
            let taking = action == "start";
            for a in of_pool() {
                a.orders.set_taking(taking);
            }
            let now = if taking {
                "take orders again"
            } else {
                "stop taking orders (and still answer 200)"
            };
            (StatusCode::OK, format!("{pool} upstreams now {now}\n"))
        }
        _ => (
            StatusCode::BAD_REQUEST,
            "use: GET /orders/blue|green, POST /orders/blue|green/stop|start\n".to_string(),
        ),
    }
}

/// Steady background requests so status and `ctl watch` show live figures
/// and automatic rollback has a request stream to judge.
async fn traffic(proxy: SocketAddr, per_second: u32, stop: CancellationToken) {
    if per_second == 0 {
        return;
    }
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = match format!("http://{proxy}/").parse() {
        Ok(u) => u,
        Err(_) => return,
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1) / per_second);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let (c, u) = (client.clone(), uri.clone());
        tokio::spawn(async move {
            if let Ok(resp) = c.get(u).await {
                let _drained = http_body_util::BodyExt::collect(resp.into_body()).await;
            }
        });
    }
}

/// Where the proxy's check reaches a listener bound to `addr`: an
/// unspecified address (`0.0.0.0`) is reached on loopback.
fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

fn endpoint_list(apps: &[Arc<SampleApp>], pool: PoolName) -> String {
    let list: Vec<String> = apps
        .iter()
        .filter(|a| a.pool == pool)
        .map(|a| format!("\"{}\"", a.addr))
        .collect();
    format!("[{}]", list.join(", "))
}

/// Where the demo listens and how much traffic it makes.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub tls_listen: SocketAddr,
    pub admin: SocketAddr,
    pub control: SocketAddr,
    /// Background requests per second through the proxy (0: none).
    pub traffic: u32,
}

/// Start the four sample upstreams, the proxy (plain and HTTPS), the
/// failure switch and the background traffic.
pub async fn start(opts: DemoOptions) -> anyhow::Result<Demo> {
    let (listen, tls_listen, admin) = (opts.listen, opts.tls_listen, opts.admin);
    // First, so a busy port stops the demo before anything says "serving",
    // and named, as the proxy names its own.
    let control_listener = TcpListener::bind(opts.control).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {} (the failure switch, --control): {e}",
            opts.control
        )
    })?;
    let certs = DemoCerts::create()?;
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut apps = Vec::new();
    for (name, pool) in [
        ("blue-1", PoolName::Blue),
        ("blue-2", PoolName::Blue),
        ("green-1", PoolName::Green),
        ("green-2", PoolName::Green),
    ] {
        apps.push(Arc::new(SampleApp::start(name, pool, any).await?));
    }
    let text = DEMO_CONFIG
        .replace("{LISTEN}", &listen.to_string())
        .replace("{TLS_LISTEN}", &tls_listen.to_string())
        .replace("{CERT}", &certs.cert.display().to_string())
        .replace("{KEY}", &certs.key.display().to_string())
        .replace("{ADMIN}", &admin.to_string())
        .replace(
            "{CONTROL}",
            &reachable(control_listener.local_addr()?).to_string(),
        )
        .replace("{BLUE}", &endpoint_list(&apps, PoolName::Blue))
        .replace("{GREEN}", &endpoint_list(&apps, PoolName::Green));
    let cfg = config::parse(&text, "<demo>")?;
    let server = server::start(cfg, None).await?;
    let stop = CancellationToken::new();
    let control_addr = control_listener.local_addr()?;
    let shared_apps = Arc::new(apps.clone());
    let token = stop.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                r = control_listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                _ = token.cancelled() => break,
            };
            let apps = shared_apps.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let apps = apps.clone();
                    async move { Ok::<_, Infallible>(control(req, apps).await) }
                });
                let _closed = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    tokio::spawn(traffic(server.proxy_addrs[0], opts.traffic, stop.clone()));
    Ok(Demo {
        apps,
        server,
        control_addr,
        traffic: opts.traffic,
        stop,
        certs,
    })
}

/// `switchyard demo`: run until `shutdown`.
pub async fn run(opts: DemoOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // Signal handlers in place before the guide invites a Ctrl-C.
    let shutdown = server::arm(shutdown).await;
    let demo = start(opts).await?;
    let program = guide::program(std::env::var_os("PATH").as_deref());
    println!("{}", guide::guide(&demo, &program));
    shutdown.await;
    demo.stop.cancel();
    demo.server.shutdown().await;
    drop(demo.apps);
    drop(demo.certs);
    Ok(())
}
