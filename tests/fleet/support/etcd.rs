//! Real etcd processes for the tests: Debian's `/usr/bin/etcd` on free
//! 127.0.0.1 ports, each with its own temporary data dir, killed when
//! dropped. One member, or three for the tests of etcd's leader. Helpers
//! freeze (SIGSTOP), thaw (SIGCONT), kill and restart a member, find the
//! etcd leader, and compact.
//!
//! Readiness and leadership are read from each member's metrics listener
//! (`/health`, `etcd_server_is_leader`), plain HTTP even when clients speak
//! TLS, so the harness needs no etcd client of its own for them.

use super::eventually;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The etcd binary: `$ETCD_BIN`, else Debian's.
fn binary() -> String {
    std::env::var("ETCD_BIN").unwrap_or_else(|_| "/usr/bin/etcd".to_string())
}

/// Certificate files for an etcd that speaks TLS to its clients.
#[derive(Clone)]
pub struct ServerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Node {
    pub name: String,
    pub client: SocketAddr,
    peer: SocketAddr,
    metrics: SocketAddr,
    dir: PathBuf,
    cluster: String,
    token: String,
    tls: Option<ServerTls>,
    child: Option<Child>,
}

impl Node {
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.client)
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join(format!("{}.log", self.name)))
            .expect("etcd log file");
        let mut cmd = Command::new(binary());
        let url = self.url();
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.dir.join(&self.name))
            .arg("--listen-client-urls")
            .arg(&url)
            .arg("--advertise-client-urls")
            .arg(&url)
            .arg("--listen-peer-urls")
            .arg(format!("http://{}", self.peer))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://{}", self.peer))
            .arg("--initial-cluster")
            .arg(&self.cluster)
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--listen-metrics-urls")
            .arg(format!("http://{}", self.metrics))
            .arg("--unsafe-no-fsync")
            .arg("--experimental-watch-progress-notify-interval")
            .arg("1s")
            .arg("--logger")
            .arg("zap")
            .arg("--log-level")
            .arg("warn")
            .arg("--log-outputs")
            .arg("stderr");
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} (install etcd-server)", binary()));
        self.child = Some(child);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(sig)
            .arg(self.pid().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {}", self.pid());
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Thawed first: a frozen process dies of SIGKILL too, but this
            // keeps the order of events the same in every test.
            let _still_frozen_is_fine = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
            child.kill().expect("kill etcd");
            child.wait().expect("reap etcd");
        }
    }

    /// What the member's metrics listener answers at `path`, if anything.
    async fn get(&self, path: &str) -> Option<String> {
        let io = async {
            let mut s = tokio::net::TcpStream::connect(self.metrics).await.ok()?;
            let req = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.metrics);
            s.write_all(req.as_bytes()).await.ok()?;
            let mut body = String::new();
            s.read_to_string(&mut body).await.ok()?;
            Some(body)
        };
        tokio::time::timeout(Duration::from_millis(500), io)
            .await
            .ok()
            .flatten()
    }

    pub async fn healthy(&self) -> bool {
        self.get("/health")
            .await
            .is_some_and(|b| b.contains("\"health\":\"true\""))
    }

    pub async fn is_leader(&self) -> bool {
        self.get("/metrics")
            .await
            .is_some_and(|b| b.lines().any(|l| l == "etcd_server_is_leader 1"))
    }

    /// This member's log.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }

    /// The end of this member's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An etcd cluster of real processes.
pub struct Etcd {
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

/// How many times a cluster is started on new ports when a port was taken.
const START_TRIES: usize = 3;
/// What etcd logs when its port was taken.
const IN_USE: &str = "address already in use";

/// `n` distinct free ports on 127.0.0.1 (bound together so none repeats).
fn free_ports(n: usize) -> Vec<SocketAddr> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    held.iter().map(|l| l.local_addr().expect("addr")).collect()
}

impl Etcd {
    /// One member.
    pub async fn one() -> Etcd {
        Etcd::start(1, None).await
    }

    /// One member speaking TLS to clients, requiring client certificates.
    pub async fn one_tls(tls: ServerTls) -> Etcd {
        Etcd::start(1, Some(tls)).await
    }

    /// Three members.
    pub async fn three() -> Etcd {
        Etcd::start(3, None).await
    }

    /// Start `n` members; again on new ports (at most [`START_TRIES`]
    /// times) when a port picked free was taken before etcd bound it: the
    /// pick is released for etcd to take, and meanwhile another test's
    /// connection may get it as its ephemeral port.
    async fn start(n: usize, tls: Option<ServerTls>) -> Etcd {
        for attempt in 1..=START_TRIES {
            match Etcd::try_start(n, tls.clone()).await {
                Ok(etcd) => return etcd,
                Err(e) if attempt < START_TRIES && e.contains(IN_USE) => {
                    eprintln!("etcd: a picked port was taken; new ports (try {attempt}): {e}");
                }
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!("the last try returns or panics")
    }

    async fn try_start(n: usize, tls: Option<ServerTls>) -> Result<Etcd, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(3 * n);
        let token = format!("t{}", fastrand::u64(..));
        let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
        let cluster = names
            .iter()
            .zip(ports.chunks(3))
            .map(|(name, p)| format!("{name}=http://{}", p[1]))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes: Vec<Node> = names
            .into_iter()
            .zip(ports.chunks(3))
            .map(|(name, p)| Node {
                name,
                client: p[0],
                peer: p[1],
                metrics: p[2],
                dir: dir.path().to_path_buf(),
                cluster: cluster.clone(),
                token: token.clone(),
                tls: tls.clone(),
                child: None,
            })
            .collect();
        for node in &mut nodes {
            node.spawn();
        }
        let mut etcd = Etcd { nodes, _dir: dir };
        etcd.all_healthy().await?;
        Ok(etcd)
    }

    /// Wait (at most 30 s) until every member serves with a leader; Err
    /// with the log of a member that exited, or of one still unhealthy.
    async fn all_healthy(&mut self) -> Result<(), String> {
        let end = std::time::Instant::now() + Duration::from_secs(30);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            let mut unhealthy = None;
            for (i, node) in self.nodes.iter_mut().enumerate() {
                if let Some(Ok(Some(status))) = node.child.as_mut().map(Child::try_wait) {
                    return Err(format!(
                        "etcd {} exited ({status}):\n{}",
                        node.name,
                        node.log_tail()
                    ));
                }
                if unhealthy.is_none() && !node.healthy().await {
                    unhealthy = Some(i);
                }
            }
            match unhealthy {
                None => return Ok(()),
                Some(i) if std::time::Instant::now() >= end => {
                    let node = &self.nodes[i];
                    return Err(format!(
                        "etcd {} did not become healthy:\n{}",
                        node.name,
                        node.log_tail()
                    ));
                }
                Some(_) => {}
            }
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// Wait (at most 30 s) until member `i` serves with a leader.
    pub async fn wait_healthy(&self, i: usize) {
        let node = &self.nodes[i];
        let ok = eventually(Duration::from_secs(30), || async {
            node.healthy().await.then_some(())
        })
        .await;
        assert!(
            ok.is_some(),
            "etcd {} did not become healthy:\n{}",
            node.name,
            node.log_tail()
        );
    }

    /// Which member leads (waiting at most 10 s for one).
    pub async fn leader(&self) -> usize {
        let found = eventually(Duration::from_secs(10), || async {
            for (i, n) in self.nodes.iter().enumerate() {
                if n.child.is_some() && n.is_leader().await {
                    return Some(i);
                }
            }
            None
        })
        .await;
        found.expect("etcd has no leader")
    }

    /// Freeze member `i` (SIGSTOP): its sockets stay open, it answers
    /// nothing. Returns once the kernel shows it stopped, so nothing sent
    /// after this call is answered.
    pub fn freeze(&self, i: usize) {
        let node = &self.nodes[i];
        node.signal("-STOP");
        let stat = format!("/proc/{}/stat", node.pid());
        let end = std::time::Instant::now() + Duration::from_secs(5);
        // The state is the field after the parenthesised command name.
        let stopped = || {
            std::fs::read_to_string(&stat)
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
                .unwrap_or(false)
        };
        while !stopped() {
            assert!(
                std::time::Instant::now() < end,
                "etcd {} did not stop",
                node.name
            );
            std::thread::yield_now();
        }
    }

    pub fn thaw(&self, i: usize) {
        self.nodes[i].signal("-CONT");
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Start member `i` again on its data dir and ports; wait until healthy.
    pub async fn restart(&mut self, i: usize) {
        self.nodes[i].kill();
        self.nodes[i].spawn();
        self.wait_healthy(i).await;
    }

    /// A plain etcd client of member 0, for setting the scene (compaction,
    /// raw writes); not for TLS members.
    pub async fn raw(&self) -> etcd_client::Client {
        etcd_client::Client::connect(self.endpoints(), None)
            .await
            .expect("raw etcd client")
    }

    /// Compact the history up to the current revision; returns it.
    pub async fn compact(&self) -> i64 {
        let mut c = self.raw().await;
        let rev = c
            .get("compaction-marker", None)
            .await
            .expect("read revision")
            .header()
            .expect("header")
            .revision();
        c.compact(
            rev,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .expect("compact");
        rev
    }
}
