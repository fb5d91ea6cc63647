//! The real `switchyard` binary as a child process, for what only a process
//! shows: memory, signals, exit codes, restarts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A free loopback port (bound, then released for the child to take).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `yaml` with its `{PROXY}` and `{ADMIN}` placeholders on free ports,
/// written to `dir/switchyard.yaml`.
fn write_config(dir: &Path, yaml: &str) -> (PathBuf, SocketAddr, SocketAddr) {
    let proxy = free_addr();
    let admin = free_addr();
    let text = yaml
        .replace("{PROXY}", &proxy.to_string())
        .replace("{ADMIN}", &admin.to_string());
    let config = dir.join("switchyard.yaml");
    std::fs::write(&config, text).unwrap();
    (config, proxy, admin)
}

/// A child's stderr, kept in a file and shown only when the test fails.
/// libtest captures what a test prints, not what a child writes to an
/// inherited stderr: without this a passing run printed every WARN and
/// ERROR the proxies under test logged on purpose.
pub struct StderrOnFailure {
    path: PathBuf,
}

impl StderrOnFailure {
    /// `path` is appended to: a restarted proxy adds to the same file.
    pub fn new(path: PathBuf) -> StderrOnFailure {
        StderrOnFailure { path }
    }

    /// A handle to the file, for `Command::stderr`.
    pub fn stdio(&self) -> Stdio {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .expect("open the child's stderr file");
        Stdio::from(file)
    }
}

impl Drop for StderrOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            // eprintln!, not a write to fd 2: libtest captures it and shows
            // it with the failure.
            eprintln!(
                "--- stderr of switchyard ({}):\n{text}--- end",
                self.path.display()
            );
        }
    }
}

pub struct ProxyProcess {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub config: PathBuf,
    /// Dropped after the child is killed: the log is complete when shown.
    _stderr: StderrOnFailure,
}

impl ProxyProcess {
    /// Write `yaml` (with `{PROXY}` and `{ADMIN}` placeholders) to
    /// `dir/switchyard.yaml`, start `switchyard run`, wait until ready.
    pub async fn start(dir: &Path, yaml: &str) -> ProxyProcess {
        let (config, proxy, admin) = write_config(dir, yaml);
        Self::start_with(config, proxy, admin).await
    }

    /// Its stderr (level `warn`) goes to `switchyard.stderr.log` beside the
    /// config, shown only if the test fails.
    pub async fn start_with(config: PathBuf, proxy: SocketAddr, admin: SocketAddr) -> ProxyProcess {
        let log = StderrOnFailure::new(config.with_file_name("switchyard.stderr.log"));
        Self::spawn(config, proxy, admin, "warn", log).await
    }

    /// Like [`ProxyProcess::start`], with the log (stderr, level `info`)
    /// written to `log`, a file: what an operator's `2> run.log` gets.
    pub async fn start_logging_to(dir: &Path, yaml: &str, log: &Path) -> ProxyProcess {
        let (config, proxy, admin) = write_config(dir, yaml);
        std::fs::File::create(log).expect("create the log file");
        let log = StderrOnFailure::new(log.to_path_buf());
        Self::spawn(config, proxy, admin, "info", log).await
    }

    async fn spawn(
        config: PathBuf,
        proxy: SocketAddr,
        admin: SocketAddr,
        level: &str,
        stderr: StderrOnFailure,
    ) -> ProxyProcess {
        let child = Command::new(BIN)
            .args(["run", "-c"])
            .arg(&config)
            .env("RUST_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.stdio())
            .spawn()
            .expect("spawn switchyard");
        let p = ProxyProcess {
            child,
            proxy,
            admin,
            config,
            _stderr: stderr,
        };
        p.wait_ready().await;
        p
    }

    pub async fn wait_ready(&self) {
        let url = format!("http://{}/healthz", self.admin);
        let c = super::client();
        super::wait_for(Duration::from_secs(20), "switchyard to start", || {
            let c = c.clone();
            let url = url.clone();
            async move {
                match c.get(url.parse().unwrap()).await {
                    Ok(r) => r.status() == 200,
                    Err(_) => false,
                }
            }
        })
        .await;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
    pub fn status_kib(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        text.lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Wait for the process to exit, at most `deadline`.
    pub async fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let end = tokio::time::Instant::now() + deadline;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "switchyard did not exit in time"
            );
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _killed = self.child.kill();
            let _reaped = self.child.wait();
        }
    }
}
