//! The PostgreSQL gate (SPEC.md section 13) against real servers: an
//! `initdb` primary and a `pg_basebackup -R` streaming replica on loopback
//! ports, a blue app writing to the primary and a green app on the
//! replica, the proxy in front. Ignored by a plain `cargo test` (it needs
//! Debian's postgresql); `.ci/checks/postgres.sh` installs it and runs
//! them with `--ignored`.

use crate::support::pg_app::{PgApp, TABLE};
use crate::support::postgres::{in_recovery, Pair, PASSWORD, TLS_ROLE};
use crate::support::*;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard::server::Server;
use tokio::time::Instant;

const POLL_MS: u64 = 50;

/// Both apps and the proxy in front of them, on `pg`.
struct Rig {
    proxy: Server,
    _blue: PgApp,
    _green: PgApp,
}

/// The gate's connection strings: the superuser, password from the file.
async fn rig(pg: &Pair, max_hold: &str, promote: bool) -> Rig {
    rig_on(
        pg,
        &pg.primary.conn(),
        &pg.replica.conn(),
        max_hold,
        promote,
    )
    .await
}

async fn rig_on(pg: &Pair, primary: &str, replica: &str, max_hold: &str, promote: bool) -> Rig {
    pg.wait_streaming().await;
    pg.primary
        .client()
        .await
        .batch_execute(TABLE)
        .await
        .expect("create table");
    let blue = PgApp::start(pg.primary.client().await).await;
    let green = PgApp::start(pg.replica.client().await).await;
    let yaml = config_yaml(
        &[blue.addr],
        &[green.addr],
        &format!(
            "cutover:\n  hold_writes: true\n  max_hold: {max_hold}\n  gate:\n    poll_interval: {POLL_MS}ms\n    timeout: 1s\n    postgres:\n      primary: \"{primary}\"\n      replica: \"{replica}\"\n      password_file: \"{}\"\n      promote: {promote}\nrollout:\n  bake_time: 0s\nhealth_check:\n  interval: 200ms\n  timeout: 100ms\n  healthy_threshold: 1\n",
            pg.password_file.display()
        ),
    );
    let proxy = start_proxy(&yaml).await;
    wait_healthy(proxy.admin_addr, "green").await;
    Rig {
        proxy,
        _blue: blue,
        _green: green,
    }
}

async fn write(c: &TestClient, s: &Server, id: &str) -> Answer {
    let req = Request::builder()
        .method(Method::POST)
        .uri(proxy_url(s, "/write"))
        .header("x-request-id", id)
        .body(Full::new(Bytes::new()))
        .unwrap();
    read(c.request(req).await.expect("the write is answered")).await
}

/// Ask for the switch to green in a task: the answer waits for the hold.
fn switch_to_green(s: &Server) -> tokio::task::JoinHandle<(u16, Value, Instant)> {
    let admin = s.admin_addr;
    tokio::spawn(async move {
        let (code, v) = api(
            admin,
            Method::POST,
            "/api/v1/switch",
            Some(json!({"to": "green"})),
            None,
        )
        .await;
        (code, v, Instant::now())
    })
}

/// A write through the proxy in a task: its status once answered.
fn write_later(s: &Server, id: &str) -> tokio::task::JoinHandle<u16> {
    let (c, url, id) = (client(), proxy_url(s, "/write"), id.to_string());
    tokio::spawn(async move { write_to(&c, url, &id).await.status })
}

async fn write_to(c: &TestClient, url: String, id: &str) -> Answer {
    let req = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header("x-request-id", id)
        .body(Full::new(Bytes::new()))
        .unwrap();
    read(c.request(req).await.expect("the write is answered")).await
}

/// Wait until the switch in flight is promoting the replica, and a write
/// sent now is held.
async fn promoting(s: &Server, id: &str) -> tokio::task::JoinHandle<u16> {
    wait_for(
        Duration::from_secs(10),
        "the gate promoting the replica",
        || async { status(s).await["gate"]["state"] == "promoting" },
    )
    .await;
    held_write(s, id).await
}

/// A write through the proxy while it holds writes, once it is held.
async fn held_write(s: &Server, id: &str) -> tokio::task::JoinHandle<u16> {
    let held = write_later(s, id);
    wait_for(Duration::from_secs(5), "the write held", || async {
        status(s).await["held_requests"].as_u64() >= Some(1)
    })
    .await;
    held
}

/// How many rows each id has on `client`'s server.
async fn rows(client: &tokio_postgres::Client) -> HashMap<String, i64> {
    client
        .query("SELECT id, count(*) FROM writes GROUP BY id", &[])
        .await
        .expect("read writes")
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run .ci/checks/postgres.sh"]
async fn paused_replay_holds_the_switch_until_it_resumes() {
    let pg = Pair::start();
    let r = rig(&pg, "10s", false).await;
    let replica = pg.replica.client().await;
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    let c = client();
    for i in 0..20 {
        assert_eq!(
            write(&c, &r.proxy, &format!("before-{i}")).await.status,
            200
        );
    }
    let switch = switch_to_green(&r.proxy);
    // The switch waits, holding writes, with the replica behind.
    wait_for(
        Duration::from_secs(5),
        "the gate waiting on a lag",
        || async {
            let st = status(&r.proxy).await;
            st["phase"] == "switching"
                && st["gate"]["state"] == "waiting"
                && st["gate"]["lag_bytes"].as_u64() > Some(0)
        },
    )
    .await;
    let metrics = metrics_text(&r.proxy).await;
    let lag_line = metrics
        .lines()
        .find(|l| l.starts_with("switchyard_gate_lag_bytes "))
        .expect("the gauge");
    assert_ne!(lag_line, "switchyard_gate_lag_bytes 0", "{lag_line}");
    let held = {
        let (c, s) = (c.clone(), r.proxy.admin_addr);
        let url = proxy_url(&r.proxy, "/write");
        tokio::spawn(async move {
            let req = Request::builder()
                .method(Method::POST)
                .uri(url)
                .header("x-request-id", "held-1")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let a = read(c.request(req).await.expect("the held write is answered")).await;
            (a.status, s)
        })
    };
    // Still waiting after several polls: nothing passes a paused replica.
    wait_for(
        Duration::from_secs(5),
        "six polls of the replica",
        || async {
            status(&r.proxy).await["gate"]["lag"]
                .as_array()
                .map_or(0, Vec::len)
                >= 6
        },
    )
    .await;
    assert!(
        !switch.is_finished(),
        "the switch must wait for the replica"
    );
    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("resume replay");
    let resumed = Instant::now();
    let (code, report, answered) = switch.await.unwrap();
    let after_resume = answered.duration_since(resumed);
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["outcome"], "completed", "{report}");
    let db = &report["database"];
    assert_eq!(db["lag_bytes"], 0, "{report}");
    assert!(
        db["primary_lsn"].as_str().is_some_and(|s| s.contains('/')),
        "{report}"
    );
    assert!(
        db["lag"]
            .as_array()
            .is_some_and(|l| l.iter().any(|p| p["bytes"].as_u64() > Some(0))),
        "{report}"
    );
    assert_eq!(db["promoted"], false, "{report}");
    // Within a poll interval of the resume (and the time to answer on a
    // busy two-core machine).
    assert!(
        after_resume < Duration::from_millis(POLL_MS + 250),
        "answered {after_resume:?} after the resume: {report}"
    );
    let (held_status, _) = held.await.unwrap();
    assert_eq!(
        held_status, 500,
        "a held write goes to green, the replica (not promoted: read-only)"
    );
    eprintln!(
        "paused replay: switch answered {} ms after replay resumed (poll {POLL_MS} ms), hold {} ms, gate {} ms, {} lag samples",
        after_resume.as_millis(), report["hold_ms"], report["gate_ms"], db["lag"].as_array().map_or(0, Vec::len)
    );
    let st = status(&r.proxy).await;
    assert_eq!(
        st["gate"]["state"], "caught_up",
        "status keeps the last gate: {st}"
    );
    assert!(metrics_text(&r.proxy)
        .await
        .contains("switchyard_gate_lag_bytes 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run .ci/checks/postgres.sh"]
async fn replay_paused_for_good_aborts_after_max_hold_and_promotes_nothing() {
    let pg = Pair::start();
    let r = rig(&pg, "1s", true).await;
    let replica = pg.replica.client().await;
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    let c = client();
    assert_eq!(write(&c, &r.proxy, "before").await.status, 200);
    let started = Instant::now();
    let (code, v, _) = switch_to_green(&r.proxy).await.unwrap();
    let took = started.elapsed();
    assert_eq!(code, 409, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("max_hold"), "{v}");
    let db = &v["error"]["report"]["database"];
    assert_eq!(db["promoted"], false, "{v}");
    assert!(db["lag_bytes"].as_u64() > Some(0), "{v}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let in_recovery: bool = replica
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery, "nothing may be promoted after an abort");
    assert_eq!(status(&r.proxy).await["live"], "blue");
    assert_eq!(
        write(&c, &r.proxy, "after").await.status,
        200,
        "blue writes again"
    );
    eprintln!(
        "paused for good: 409 after {} ms ({message})",
        took.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run .ci/checks/postgres.sh"]
async fn promotion_under_writers_loses_no_write_and_stores_each_once() {
    let pg = Pair::start();
    let r = rig(&pg, "3s", true).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let seq = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (c, stop, seq) = (client(), stop.clone(), seq.clone());
            let url = proxy_url(&r.proxy, "/write");
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut failed = Vec::new();
                while !stop.is_cancelled() {
                    let id = format!("w{w}-{}", seq.fetch_add(1, Ordering::Relaxed));
                    let req = Request::builder()
                        .method(Method::POST)
                        .uri(&url)
                        .header("x-request-id", &id)
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    match c.request(req).await {
                        Ok(resp) if resp.status() == 200 => acked.push(id),
                        Ok(resp) => failed.push(format!("{id}: {}", read(resp).await.text())),
                        Err(e) => failed.push(format!("{id}: {e}")),
                    }
                }
                (acked, failed)
            })
        })
        .collect();
    wait_for(Duration::from_secs(10), "writes flowing", || async {
        seq.load(Ordering::Relaxed) > 40
    })
    .await;
    let (code, report, _) = switch_to_green(&r.proxy).await.unwrap();
    // Out of recovery when the switch answers, and writable.
    let replica = pg.replica.client().await;
    let in_recovery: bool = replica
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(code, 200, "{report}");
    assert!(
        !in_recovery,
        "the replica must be promoted when the switch answers: {report}"
    );
    replica
        .execute("INSERT INTO writes (id) VALUES ('direct')", &[])
        .await
        .expect("the promoted replica accepts a write");
    let after = seq.load(Ordering::Relaxed);
    wait_for(Duration::from_secs(10), "writes on green", || async {
        seq.load(Ordering::Relaxed) > after + 20
    })
    .await;
    stop.cancel();
    let mut acked = Vec::new();
    for w in writers {
        let (a, failed) = w.await.unwrap();
        assert!(failed.is_empty(), "no write may fail: {failed:?}");
        acked.push(a);
    }
    let stored = rows(&replica).await;
    for (w, ids) in acked.iter().enumerate() {
        for id in ids {
            assert_eq!(
                stored.get(id),
                Some(&1),
                "writer {w}'s {id} must be on the promoted replica exactly once"
            );
        }
    }
    let db = &report["database"];
    assert_eq!(db["promoted"], true, "{report}");
    assert_eq!(report["outcome"], "completed", "{report}");
    let events = crate::support::admin::events(&client(), &r.proxy).await;
    let completed = events
        .iter()
        .find(|e| e["kind"] == "switch_completed")
        .expect("a switch_completed event");
    assert_eq!(
        completed["stats"]["database"]["promoted"], true,
        "{completed}"
    );
    eprintln!(
        "promotion under 4 writers: hold {} ms (drain {} ms, connected at {} ms, caught up at {} ms), held {}, promotion {} ms, writes acknowledged per writer {:?}, each stored once",
        report["hold_ms"], report["drain_ms"], db["connected_ms"], db["caught_up_ms"], report["held_requests"], db["promote_ms"], acked.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

/// Needs no PostgreSQL: a database that cannot be reached at switch time
/// aborts the switch at once (not at max_hold) with the reason, and the
/// held writes go to blue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_aborts_the_switch_at_once_with_its_reason() {
    let (blue, green) = (
        Upstream::start("blue-1").await,
        Upstream::start("green-1").await,
    );
    let refused = refusing_addr().await;
    let yaml = config_yaml(
        &[blue.addr],
        &[green.addr],
        &format!(
            "cutover:\n  hold_writes: true\n  max_hold: 10s\n  gate:\n    postgres:\n      primary: \"host=127.0.0.1 port={} user=app\"\n      replica: \"host=127.0.0.1 port={} user=app\"\n",
            refused.port(),
            green.addr.port()
        ),
    );
    let s = start_proxy(&yaml).await;
    wait_healthy(s.admin_addr, "green").await;
    let started = Instant::now();
    let (code, v, _) = switch_to_green(&s).await.unwrap();
    let took = started.elapsed();
    assert_eq!(code, 409, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("the gate failed: primary:"), "{v}");
    assert!(!message.contains("max_hold"), "{v}");
    assert!(
        took < Duration::from_secs(5),
        "aborted after {took:?}, not at once"
    );
    assert_eq!(v["error"]["report"]["database"]["state"], "failed", "{v}");
    assert_eq!(status(&s).await["live"], "blue");
    let c = client();
    assert_eq!(
        send(&c, Method::POST, proxy_url(&s, "/"), "x")
            .await
            .upstream(),
        "blue-1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run .ci/checks/postgres.sh"]
async fn a_tls_gate_verifies_the_servers_and_a_wrong_ca_aborts_at_once() {
    let (pg, tls) = Pair::start_tls();
    // The gate's role is refused without TLS: passing below means TLS.
    let plain = format!(
        "host=127.0.0.1 port={} user={TLS_ROLE} password={PASSWORD} dbname=postgres",
        pg.primary.port
    );
    assert!(
        tokio_postgres::connect(&plain, tokio_postgres::NoTls)
            .await
            .is_err(),
        "{TLS_ROLE} must need TLS"
    );
    let conn = |port: u16, ca: &std::path::Path| {
        format!("host=127.0.0.1 port={port} user={TLS_ROLE} dbname=postgres sslmode=verify-full sslrootcert={}", ca.display())
    };
    {
        let (p, r) = (
            conn(pg.primary.port, &tls.wrong_ca),
            conn(pg.replica.port, &tls.wrong_ca),
        );
        let rig = rig_on(&pg, &p, &r, "5s", true).await;
        let started = Instant::now();
        let (code, v, _) = switch_to_green(&rig.proxy).await.unwrap();
        assert_eq!(code, 409, "{v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("the gate failed") && message.contains("certificate"),
            "{v}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "a wrong CA aborts at once, not at max_hold"
        );
        eprintln!(
            "TLS with the wrong CA: 409 after {} ms ({message})",
            started.elapsed().as_millis()
        );
    }
    let replica = pg.replica.client().await;
    let in_recovery: bool = replica
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        in_recovery,
        "nothing promoted after the refused certificate"
    );
    let (p, r) = (
        conn(pg.primary.port, &tls.ca),
        conn(pg.replica.port, &tls.ca),
    );
    let rig = rig_on(&pg, &p, &r, "5s", true).await;
    let (code, report, _) = switch_to_green(&rig.proxy).await.unwrap();
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["database"]["promoted"], true, "{report}");
    let in_recovery: bool = replica
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!in_recovery, "promoted over TLS");
    eprintln!(
        "TLS gate: hold {} ms, promotion {} ms",
        report["hold_ms"], report["database"]["promote_ms"]
    );
}

/// SPEC.md section 13: promotion cannot be undone, so once it has begun
/// the switch completes. The replica's promotion is held at the end of
/// recovery (`recovery_end_command`, see `Pair::stall_promotion`) for
/// longer than `max_hold`; meanwhile a rollback is refused with 409 and
/// the deadline passes without an abort; once the replica has left
/// recovery the switch flips and the write held meanwhile lands on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run .ci/checks/postgres.sh"]
async fn once_promotion_began_a_rollback_is_refused_and_max_hold_passes_without_an_abort() {
    let pg = Pair::start();
    let stall = pg.stall_promotion().await;
    let r = rig(&pg, "1s", true).await;
    let replica = pg.replica.client().await;
    let c = client();
    assert_eq!(write(&c, &r.proxy, "before").await.status, 200);
    let started = Instant::now();
    let switch = switch_to_green(&r.proxy);
    let held = promoting(&r.proxy, "held-1").await;

    let (code, v) = api(
        r.proxy.admin_addr,
        Method::POST,
        "/api/v1/rollback",
        Some(json!({"reason": "bad deploy"})),
        None,
    )
    .await;
    assert_eq!(code, 409, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the replica is being promoted") && message.contains("roll back after it"),
        "{v}"
    );

    // Past max_hold (1 s), with the replica still in recovery: no abort.
    wait_for(
        Duration::from_secs(10),
        "max_hold to pass during the promotion",
        || async { started.elapsed() > Duration::from_millis(1500) },
    )
    .await;
    let st = status(&r.proxy).await;
    assert_eq!(st["phase"], "switching", "{st}");
    assert_eq!(st["gate"]["state"], "promoting", "{st}");
    assert!(in_recovery(&replica).await, "the promotion is still held");
    assert!(!switch.is_finished() && !held.is_finished());

    stall.release();
    let released = Instant::now();
    let (code, report, answered) = switch.await.unwrap();
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["outcome"], "completed", "{report}");
    let db = &report["database"];
    assert_eq!(db["promoted"], true, "{report}");
    assert!(
        db["max_hold_exceeded_ms"].as_u64() > Some(0),
        "the report says by how much max_hold was exceeded: {report}"
    );
    assert!(
        !in_recovery(&replica).await,
        "promoted when the switch answers"
    );
    assert_eq!(
        held.await.unwrap(),
        200,
        "the held write goes to green, writable"
    );
    let stored = rows(&replica).await;
    assert_eq!(stored.get("held-1"), Some(&1), "{stored:?}");
    assert_eq!(stored.get("before"), Some(&1), "{stored:?}");
    assert_eq!(status(&r.proxy).await["live"], "green");
    let events = crate::support::admin::events(&client(), &r.proxy).await;
    assert!(
        !events
            .iter()
            .any(|e| e["kind"] == "switch_aborted" || e["kind"] == "rollback"),
        "{events:?}"
    );
    eprintln!(
        "rollback during promotion: 409 ({message}); switch answered {} ms after the promotion was let end, max_hold exceeded by {} ms, hold {} ms, promotion {} ms",
        answered.duration_since(released).as_millis(),
        db["max_hold_exceeded_ms"],
        report["hold_ms"],
        db["promote_ms"]
    );
}

/// A shutdown (what SIGTERM runs) during promotion waits for it and
/// flips: flipping at once would send the held writes to a database
/// still in recovery, aborting would leave a promoted replica behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run .ci/checks/postgres.sh"]
async fn a_shutdown_during_promotion_waits_for_it_and_flips() {
    let pg = Pair::start();
    let stall = pg.stall_promotion().await;
    let Rig {
        proxy,
        _blue,
        _green,
    } = rig(&pg, "1s", true).await;
    let replica = pg.replica.client().await;
    let started = Instant::now();
    let switch = switch_to_green(&proxy);
    let held = promoting(&proxy, "held-1").await;
    let admin = proxy.admin_addr;
    let stopping = tokio::spawn(proxy.shutdown());
    wait_for(Duration::from_secs(5), "the shutdown to begin", || async {
        let (code, v) = api(admin, Method::GET, "/api/v1/status", None, None).await;
        code == 200 && v["shutting_down"] == true
    })
    .await;
    // Past max_hold: the shutdown waits for the promotion, held.
    wait_for(
        Duration::from_secs(10),
        "max_hold to pass during the promotion",
        || async { started.elapsed() > Duration::from_millis(1500) },
    )
    .await;
    let (_, st) = api(admin, Method::GET, "/api/v1/status", None, None).await;
    assert_eq!(st["phase"], "switching", "{st}");
    assert!(in_recovery(&replica).await, "the promotion is still held");
    assert!(!stopping.is_finished() && !switch.is_finished() && !held.is_finished());

    stall.release();
    let (code, report, _) = switch.await.unwrap();
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["outcome"], "completed", "{report}");
    assert_eq!(report["database"]["promoted"], true, "{report}");
    assert_eq!(
        held.await.unwrap(),
        200,
        "the held write goes to the promoted replica"
    );
    assert_eq!(rows(&replica).await.get("held-1"), Some(&1));
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the shutdown ends after the flip")
        .unwrap();
    assert!(!in_recovery(&replica).await);
    eprintln!(
        "shutdown during promotion: flipped, hold {} ms, promotion {} ms",
        report["hold_ms"], report["database"]["promote_ms"]
    );
}

/// The mirror: before promotion began a rollback takes the switch over
/// and a shutdown aborts it, and nothing is promoted (max_hold:
/// `replay_paused_for_good_aborts_after_max_hold_and_promotes_nothing`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run .ci/checks/postgres.sh"]
async fn before_promotion_a_rollback_or_a_shutdown_aborts_and_promotes_nothing() {
    let pg = Pair::start();
    let Rig {
        proxy,
        _blue,
        _green,
    } = rig(&pg, "10s", true).await;
    let replica = pg.replica.client().await;
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    let c = client();
    assert_eq!(write(&c, &proxy, "before").await.status, 200);
    let waiting = || async {
        let st = status(&proxy).await;
        st["phase"] == "switching" && st["gate"]["state"] == "waiting"
    };
    let switch = switch_to_green(&proxy);
    wait_for(Duration::from_secs(10), "the gate waiting", waiting).await;
    let (code, v) = api(
        proxy.admin_addr,
        Method::POST,
        "/api/v1/rollback",
        Some(json!({"reason": "bad deploy"})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, v, _) = switch.await.unwrap();
    assert_eq!(code, 409, "{v}");
    assert_eq!(
        v["error"]["report"]["reason"], "a rollback took over",
        "{v}"
    );
    assert!(in_recovery(&replica).await, "nothing promoted");
    assert_eq!(status(&proxy).await["live"], "blue");

    let (code, v) = api(proxy.admin_addr, Method::POST, "/api/v1/rearm", None, None).await;
    assert_eq!(code, 200, "{v}");
    let switch = switch_to_green(&proxy);
    wait_for(Duration::from_secs(10), "the gate waiting again", waiting).await;
    let held = held_write(&proxy, "held-1").await;
    proxy.shutdown().await;
    let (code, v, _) = switch.await.unwrap();
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["error"]["report"]["reason"], "shutting down", "{v}");
    assert_eq!(held.await.unwrap(), 200, "the held write goes to blue");
    assert!(in_recovery(&replica).await, "nothing promoted");
    let primary = pg.primary.client().await;
    assert_eq!(rows(&primary).await.get("held-1"), Some(&1));
}
