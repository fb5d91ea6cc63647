//! etcd killed (SIGKILL: its sockets close, calls are refused at once,
//! unlike the frozen etcd of `replicas`) under read load over three
//! replicas, then started again on the same data dir and port (SPEC.md
//! section 9, out of touch):
//! - reads keep flowing throughout, with no client error;
//! - writes still get 200 for a while, then 503 with Retry-After no later
//!   than `write_fence` plus a bounded margin after the kill (the lease's
//!   last acknowledged keep-alive was sent at most `write_fence / 3` before
//!   the kill, and the fence is looked at every 100 ms);
//! - admin changes get 503 `fleet_unavailable` with Retry-After;
//! - etcd back: writes flow, a change goes through, every member
//!   converges to one generation.

use crate::replicas::{converged, fleet, try_put_weights};
use crate::support::etcd::Etcd;
use crate::support::replica::{call, call_within, client, HttpClient, Replica};
use crate::support::wait_for;
use http::Method;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The replicas' `write_fence` (their `member_ttl` is 3 s).
const FENCE: Duration = Duration::from_millis(1500);
const FENCE_YAML: &str = "1500ms";
/// Writes sent this soon after the kill still go through: the fence is
/// at least `FENCE - FENCE / 3` away (the lease is renewed 3× per fence).
const STILL_OPEN: Duration = Duration::from_millis(300);
/// How late past `FENCE` the first 503 may come: the fence is checked
/// every 100 ms, the rest is a loaded machine's scheduling.
const MARGIN: Duration = Duration::from_millis(1000);
/// The pause between two writes of a probe, and two reads of the load.
const WRITE_EVERY: Duration = Duration::from_millis(25);
const READ_EVERY: Duration = Duration::from_millis(10);
/// A bound on each reader's requests (the test ends long before).
const MAX_READS: u64 = 20_000;

/// GETs through every replica until stopped: how many got 200, and what
/// went wrong otherwise.
struct ReadLoad {
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ReadLoad {
    fn start(c: &HttpClient, rs: &[Replica]) -> ReadLoad {
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = rs
            .iter()
            .map(|r| {
                let (c, addr, id) = (c.clone(), r.proxy, r.id.clone());
                let (ok, failures, stop) = (ok.clone(), failures.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(READ_EVERY);
                    for i in 0..MAX_READS {
                        if stop.load(Ordering::Acquire) {
                            return;
                        }
                        tick.tick().await;
                        match call(&c, addr, Method::GET, &format!("/read{i}"), None).await {
                            Ok((200, _, _)) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok((s, _, body)) => {
                                failures.lock().unwrap().push(format!("{id}: {s} {body}"))
                            }
                            Err(e) => failures.lock().unwrap().push(format!("{id}: {e}")),
                        }
                    }
                })
            })
            .collect();
        ReadLoad {
            ok,
            failures,
            stop,
            tasks,
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stop the readers; every failure they saw.
    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Release);
        for t in self.tasks {
            t.await.expect("reader");
        }
        let failures = self.failures.lock().unwrap().clone();
        failures
    }
}

/// One write through the proxy: when it was sent and answered (since the
/// kill), its status and Retry-After.
#[derive(Debug)]
struct Write {
    sent: Duration,
    answered: Duration,
    status: u16,
    retry_after: Option<String>,
}

/// POSTs through `proxy` every [`WRITE_EVERY`] from the kill until the
/// first 503 or `killed + FENCE + MARGIN`.
async fn probe_writes(c: &HttpClient, proxy: SocketAddr, killed: Instant) -> Vec<Write> {
    let end = killed + FENCE + MARGIN;
    let mut tick = tokio::time::interval(WRITE_EVERY);
    let mut out = Vec::new();
    loop {
        tick.tick().await;
        let sent = killed.elapsed();
        let (status, retry_after, _) = call_within(
            c,
            proxy,
            Method::POST,
            &format!("/write{}", out.len()),
            None,
            Duration::from_secs(2),
        )
        .await
        .unwrap_or_else(|e| panic!("a write got a client error {sent:?} after the kill: {e}"));
        out.push(Write {
            sent,
            answered: killed.elapsed(),
            status,
            retry_after,
        });
        if status == 503 || Instant::now() >= end {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_killed_under_read_load_fences_writes_within_write_fence_then_all_converge() {
    let mut etcd = Etcd::one().await;
    let e = etcd.endpoints();
    let f = fleet("killed", [e.clone(), e.clone(), e], FENCE_YAML).await;
    let c = client();
    converged(
        &c,
        &f.replicas,
        Duration::from_secs(10),
        "a first generation",
    )
    .await;
    for r in &f.replicas {
        wait_for(
            Duration::from_secs(10),
            "writes flow while in touch",
            || async {
                let (s, _, _) = call(&c, r.proxy, Method::POST, "/x", None).await.ok()?;
                (s == 200).then_some(())
            },
        )
        .await;
    }
    let reads = ReadLoad::start(&c, &f.replicas);
    wait_for(Duration::from_secs(5), "reads under way", || async {
        (reads.ok() >= 10).then_some(())
    })
    .await;

    etcd.kill(0);
    let killed = Instant::now();
    let (pa, pb, pc) = tokio::join!(
        probe_writes(&c, f.replicas[0].proxy, killed),
        probe_writes(&c, f.replicas[1].proxy, killed),
        probe_writes(&c, f.replicas[2].proxy, killed),
    );
    for (r, writes) in f.replicas.iter().zip([pa, pb, pc]) {
        let first_503 = writes
            .iter()
            .position(|w| w.status == 503)
            .unwrap_or_else(|| {
                panic!(
                    "{}: no write 503 within {:?} of the kill: {writes:?}",
                    r.id,
                    FENCE + MARGIN
                )
            });
        let fenced = &writes[first_503];
        eprintln!(
            "{}: writes 200 until {:?} after the kill, first 503 answered at {:?} (write_fence {FENCE:?})",
            r.id,
            writes[..first_503].last().map(|w| w.sent),
            fenced.answered
        );
        assert!(
            writes[..first_503].iter().all(|w| w.status == 200),
            "{}: only 200 before the fence: {writes:?}",
            r.id
        );
        assert!(
            writes[0].status == 200 && writes[0].sent < STILL_OPEN,
            "{}: a write right after the kill still goes through: {writes:?}",
            r.id
        );
        assert!(
            fenced.sent >= STILL_OPEN,
            "{}: fenced too early: {fenced:?}",
            r.id
        );
        assert!(
            fenced.answered <= FENCE + MARGIN,
            "{}: fenced later than write_fence + {MARGIN:?}: {fenced:?}",
            r.id
        );
        assert!(fenced.retry_after.is_some(), "Retry-After on {fenced:?}");
    }
    // Admin changes: 503 fleet_unavailable with Retry-After on every member.
    for r in &f.replicas {
        let (s, retry, body) = wait_for(Duration::from_secs(20), "admin 503", || async {
            let r = try_put_weights(&c, r, 10.0, None).await.ok()?;
            (r.0 == 503).then_some(r)
        })
        .await;
        assert_eq!(s, 503);
        assert_eq!(body["error"]["code"], "fleet_unavailable", "{body}");
        assert!(retry.is_some(), "Retry-After on the admin 503");
        let st = r.status(&c).await.expect("status answers");
        assert_eq!(st["fleet"]["connected"], false, "{}", st["fleet"]);
    }
    let (s, _, _) = call(&c, f.replicas[1].proxy, Method::POST, "/y", None)
        .await
        .unwrap();
    assert_eq!(s, 503, "writes stay fenced while etcd is down");
    let reads_down = reads.ok();

    etcd.restart(0).await;
    let back = Instant::now();
    assert!(reads.ok() > reads_down, "reads flowed while etcd was down");
    for r in &f.replicas {
        wait_for(Duration::from_secs(20), "writes flow again", || async {
            let (s, _, _) = call(&c, r.proxy, Method::POST, "/x", None).await.ok()?;
            (s == 200).then_some(())
        })
        .await;
    }
    let a = &f.replicas[0];
    let (s, _, body) = wait_for(Duration::from_secs(20), "an admin change", || async {
        let r = try_put_weights(&c, a, 20.0, None).await.ok()?;
        (r.0 == 200).then_some(r)
    })
    .await;
    assert_eq!(s, 200, "{body}");
    let g = a.generation(&c).await.unwrap();
    let all = converged(&c, &f.replicas, Duration::from_secs(10), "convergence").await;
    assert_eq!(all, g);
    eprintln!(
        "etcd back: writes and a change through a, all at generation {g}, {:?} after the restart",
        back.elapsed()
    );
    let failures = reads.finish().await;
    assert!(failures.is_empty(), "reads failed: {failures:?}");
}
