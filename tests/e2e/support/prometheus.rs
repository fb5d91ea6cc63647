//! A real Prometheus server (Debian's `prometheus`, or `$PROMETHEUS_BIN`)
//! on a free loopback port, scraping test upstreams' `/metrics` every
//! second with a `pool` label. Its data lives in a temporary directory; it
//! is killed when dropped or stopped. Used by the `#[ignore]`d tests that
//! `.ci/checks/prometheus-analysis.sh` runs.

use super::process::free_addr;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Prometheus {
    child: Option<Child>,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start it scraping each `(upstream, pool)` and wait until it is ready.
    pub async fn start(targets: &[(SocketAddr, &str)]) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let statics: String = targets
            .iter()
            .map(|(addr, pool)| {
                format!("      - targets: [\"{addr}\"]\n        labels: {{ pool: \"{pool}\" }}\n")
            })
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: upstreams\n    static_configs:\n{statics}"
        );
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).expect("write prometheus.yml");
        let addr = free_addr();
        let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (is Prometheus installed?): {e}"));
        let p = Prometheus {
            child: Some(child),
            addr,
            _dir: dir,
        };
        let ready = format!("http://{addr}/-/ready");
        super::wait_for(Duration::from_secs(30), "Prometheus ready", || async {
            switchyard::upstream::outbound::get(&ready, Duration::from_secs(1))
                .await
                .is_ok_and(|a| a.status == 200)
        })
        .await;
        p
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The value of an instant `query` now, if it has one sample.
    pub async fn value(&self, query: &str) -> Option<f64> {
        let url = format!(
            "{}/api/v1/query?query={}",
            self.url(),
            switchyard::upstream::outbound::percent_encode(query)
        );
        let a = switchyard::upstream::outbound::get(&url, Duration::from_secs(2))
            .await
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&a.body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Kill it and wait for its end: its port refuses from now on.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}
