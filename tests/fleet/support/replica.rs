//! Replicas: the real `switchyard` binary (built with the fleet feature)
//! as child processes, each with a generated config naming the shared test
//! upstreams and one etcd prefix; killed on Drop. Plus the small HTTP
//! client the replica tests use on the admin API and the proxy.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// One request; the status, the `Retry-After` header and the body as JSON
/// (Null when it is not JSON).
pub async fn call(
    c: &HttpClient,
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, Option<String>, serde_json::Value), String> {
    call_within(c, addr, method, path, body, Duration::from_secs(5)).await
}

/// [`call`], waiting at most `within` for the answer.
pub async fn call_within(
    c: &HttpClient,
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    within: Duration,
) -> Result<(u16, Option<String>, serde_json::Value), String> {
    let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(bytes))
        .unwrap();
    let resp = tokio::time::timeout(within, c.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    Ok((status, retry, json))
}

/// How many times a replica is started on new ports when one was taken.
const START_TRIES: usize = 3;
/// What the binary says when its port was taken.
const IN_USE: &str = "Address already in use";

/// The fleet section's settings of a replica.
pub struct FleetOpts {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub write_fence: &'static str,
    pub member_ttl: &'static str,
}

pub struct Replica {
    pub id: String,
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub dir: PathBuf,
}

impl Replica {
    /// Start replica `id` in `dir` (its config, state file and log), on
    /// the upstreams `blue` and `green`; waits until its admin API answers.
    pub async fn start(
        dir: &Path,
        id: &str,
        blue: SocketAddr,
        green: SocketAddr,
        fleet: &FleetOpts,
    ) -> Replica {
        Self::start_with(dir, id, blue, green, fleet, "").await
    }

    /// [`start`](Self::start) with `extra` top-level YAML sections appended
    /// (e.g. `rollback:`).
    pub async fn start_with(
        dir: &Path,
        id: &str,
        blue: SocketAddr,
        green: SocketAddr,
        fleet: &FleetOpts,
        extra: &str,
    ) -> Replica {
        Self::spawn(dir, id, blue, green, Some(fleet), extra).await
    }

    /// A single proxy (no `fleet` section) with `extra` sections, for
    /// figures measured side by side with a fleet.
    pub async fn start_single(
        dir: &Path,
        id: &str,
        blue: SocketAddr,
        green: SocketAddr,
        extra: &str,
    ) -> Replica {
        Self::spawn(dir, id, blue, green, None, extra).await
    }

    /// Start the replica on ports picked free; on new ones (at most
    /// [`START_TRIES`] times) when one was taken before it bound it.
    async fn spawn(
        dir: &Path,
        id: &str,
        blue: SocketAddr,
        green: SocketAddr,
        fleet: Option<&FleetOpts>,
        extra: &str,
    ) -> Replica {
        let dir = dir.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let fleet_yaml = fleet.map_or_else(String::new, |fleet| {
            let endpoints = fleet
                .endpoints
                .iter()
                .map(|e| format!("\"{e}\""))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "fleet:\n  etcd:\n    endpoints: [{endpoints}]\n    prefix: \"{prefix}\"\n  member_id: \"{id}\"\n  member_ttl: {ttl}\n  write_fence: {fence}\n",
                prefix = fleet.prefix,
                ttl = fleet.member_ttl,
                fence = fleet.write_fence,
            )
        });
        for attempt in 1..=START_TRIES {
            let (proxy, admin) = (free_addr(), free_addr());
            let yaml = format!(
                "listeners:\n  - bind: \"{proxy}\"\nadmin:\n  bind: \"{admin}\"\npools:\n  blue:\n    endpoints: [\"{blue}\"]\n  green:\n    endpoints: [\"{green}\"]\nhealth_check:\n  interval: 200ms\n  timeout: 100ms\n  healthy_threshold: 1\nstate_file: \"{state}\"\nrollout:\n  bake_time: 0s\n{fleet_yaml}",
                state = dir.join("state.json").display(),
            );
            let config = dir.join("switchyard.yaml");
            std::fs::write(&config, yaml + extra).unwrap();
            let mut r = Replica::launch(&dir, id, &config, proxy, admin);
            match r.ready().await {
                Ok(()) => return r,
                Err(log) if attempt < START_TRIES && log.contains(IN_USE) => {
                    eprintln!("replica {id}: a picked port was taken; new ports (try {attempt})");
                }
                Err(log) => panic!("replica {id} did not start: {log}"),
            }
        }
        unreachable!("the last try returns or panics")
    }

    fn launch(
        dir: &Path,
        id: &str,
        config: &Path,
        proxy: SocketAddr,
        admin: SocketAddr,
    ) -> Replica {
        let log = std::fs::File::create(dir.join("run.log")).unwrap();
        let child = Command::new(BIN)
            .args(["run", "-c"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn switchyard");
        Replica {
            id: id.to_string(),
            child,
            proxy,
            admin,
            dir: dir.to_path_buf(),
        }
    }

    /// Wait (at most 20 s) until the admin API answers; Err with the log
    /// when the process exited or never answered.
    async fn ready(&mut self) -> Result<(), String> {
        let c = client();
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if let Ok((200, _, _)) = call(&c, self.admin, Method::GET, "/healthz", None).await {
                return Ok(());
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) || tokio::time::Instant::now() >= end {
                return Err(self.log());
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("run.log")).unwrap_or_default()
    }

    /// `GET /api/v1/status`.
    pub async fn status(&self, c: &HttpClient) -> Option<serde_json::Value> {
        let (s, _, v) = call(c, self.admin, Method::GET, "/api/v1/status", None)
            .await
            .ok()?;
        (s == 200).then_some(v)
    }

    pub async fn generation(&self, c: &HttpClient) -> Option<u64> {
        self.status(c).await?["generation"].as_u64()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _cont = Command::new("kill")
                .arg("-CONT")
                .arg(self.child.id().to_string())
                .status();
            let _killed = self.child.kill();
            let _reaped = self.child.wait();
        }
    }
}
