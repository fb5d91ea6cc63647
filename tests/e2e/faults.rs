//! Faults between the proxy and an upstream (a fault proxy of our own in
//! front of a real test upstream): for each, the status the client gets,
//! what was retried (idempotent requests only, and only when SPEC.md allows),
//! how the endpoint's health follows, and that it heals when the fault goes.
//! Descriptors and memory of the real binary: `faults_leave_no_descriptors_or_memory_behind`.

use crate::support::admin::*;
use crate::support::fault::{Fault, FaultProxy};
use crate::support::process::ProxyProcess;
use crate::support::*;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Long enough for an answer trickled a byte per millisecond (about 150
/// bytes to the end of the head: 0.3 s on an idle machine, past 0.6 s on a
/// loaded one), far below the 50 ms a byte one.
const REQUEST_TIMEOUT_MS: u64 = 1500;

fn fault_yaml(blue: SocketAddr, green: SocketAddr) -> String {
    config_yaml(
        &[blue],
        &[green],
        &format!(
            "health_check:\n  interval: 1s\n  timeout: 500ms\n  unhealthy_threshold: 2\n  healthy_threshold: 1\n\
             outlier_detection:\n  consecutive_failures: 2\n  ejection_time: 500ms\n\
             timeouts:\n  request: {REQUEST_TIMEOUT_MS}ms\nretries:\n  attempts: 1\n"
        ),
    )
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Send one request with a fresh `x-request-id`; `(id, answer)`.
async fn send_id(c: &TestClient, method: Method, url: String) -> (String, Answer) {
    let id = format!("fault-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let body = if method == Method::POST { "data" } else { "" };
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("x-request-id", &id)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let a = read(c.request(req).await.expect("the proxy answers")).await;
    (id, a)
}

fn deliveries(id: &str, ups: &[&Upstream]) -> usize {
    ups.iter()
        .map(|u| u.request_ids().iter().filter(|r| *r == id).count())
        .sum()
}

/// `switchyard_upstream_errors_total` for blue and `kind`.
async fn upstream_errors(c: &TestClient, s: &switchyard::server::Server, kind: &str) -> u64 {
    let a = get(c, admin_url(s, "/metrics")).await;
    let kind = format!("kind=\"{kind}\"");
    a.text()
        .lines()
        .filter(|l| l.starts_with("switchyard_upstream_errors_total{"))
        .find(|l| l.contains(&kind) && l.contains("pool=\"blue\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Case {
    fault: Fault,
    /// Requests sent once the fault is on, and the status each must get.
    steps: &'static [(Method, u16)],
    /// The `kind` of upstream error the failures count as.
    kind: Option<&'static str>,
    /// Two failures in a row: the endpoint leaves rotation.
    ejects: bool,
}

async fn run(case: Case) {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let fault = FaultProxy::start(blue.addr, Fault::Pass).await;
    let s = start_proxy(&fault_yaml(fault.addr, green.addr)).await;
    let c = client();
    // A pooled keep-alive connection through the fault proxy.
    let (_, warm) = send_id(&c, Method::GET, proxy_url(&s, "/")).await;
    assert_eq!((warm.status, warm.upstream()), (200, "blue-1"));

    fault.set(case.fault);
    for (method, want) in case.steps {
        let (id, a) = send_id(&c, method.clone(), proxy_url(&s, "/")).await;
        assert_eq!(
            a.status,
            *want,
            "{:?}: {method} got {} {:?}",
            case.fault,
            a.status,
            a.text()
        );
        let delivered = deliveries(&id, &[&blue, &green]);
        if a.status == 200 {
            assert_eq!(a.upstream(), "blue-1");
            assert_eq!(delivered, 1, "{:?}: {method} answered 200", case.fault);
        } else {
            // Reached blue at most once, never retried on green.
            assert!(delivered <= 1, "{:?}: {method} delivered twice", case.fault);
            assert_eq!(
                deliveries(&id, &[&green]),
                0,
                "{:?}: {method} retried",
                case.fault
            );
            for leak in [
                fault.addr.to_string(),
                blue.addr.to_string(),
                "127.0.0.1".into(),
            ] {
                assert!(!a.text().contains(&leak), "error body leaks {leak}");
            }
            assert!(a
                .headers
                .values()
                .all(|v| !v.to_str().unwrap_or("").contains("127.0.0.1")));
        }
    }
    if let Some(kind) = case.kind {
        assert!(
            upstream_errors(&c, &s, kind).await >= 1,
            "{:?}: no upstream error of kind {kind} counted",
            case.fault
        );
    }
    if case.ejects {
        let state = endpoint_state(&c, &s, "blue", fault.addr).await;
        assert!(
            state == "ejected" || state == "unhealthy",
            "{:?}: endpoint is {state} after two failures",
            case.fault
        );
        // Health follows: failover takes the requests to green meanwhile.
        let (_, a) = send_id(&c, Method::GET, proxy_url(&s, "/")).await;
        assert_eq!((a.status, a.upstream()), (200, "green-1"));
    }
    // The fault goes: blue serves again once ejection and checks allow.
    fault.set(Fault::Pass);
    wait_for(Duration::from_secs(5), "blue to serve again", || {
        let c = c.clone();
        let url = proxy_url(&s, "/");
        async move { get(&c, url).await.upstream() == "blue-1" }
    })
    .await;
    s.shutdown().await;
}

#[tokio::test]
async fn latency_under_the_request_timeout_is_only_slower() {
    run(Case {
        fault: Fault::Latency(Duration::from_millis(100)),
        steps: &[(Method::GET, 200), (Method::POST, 200)],
        kind: None,
        ejects: false,
    })
    .await;
}

#[tokio::test]
async fn latency_past_the_request_timeout_gives_504_and_ejects() {
    run(Case {
        fault: Fault::Latency(Duration::from_millis(REQUEST_TIMEOUT_MS + 600)),
        steps: &[(Method::GET, 504), (Method::POST, 504)],
        kind: Some("timeout"),
        ejects: true,
    })
    .await;
}

#[tokio::test]
async fn an_upstream_that_never_answers_gives_504_and_is_not_retried() {
    run(Case {
        fault: Fault::Blackhole,
        steps: &[(Method::GET, 504), (Method::POST, 504)],
        kind: Some("timeout"),
        ejects: true,
    })
    .await;
}

#[tokio::test]
async fn a_malformed_answer_gives_502() {
    run(Case {
        fault: Fault::Malformed,
        steps: &[(Method::GET, 502), (Method::POST, 502)],
        kind: Some("protocol"),
        ejects: true,
    })
    .await;
}

#[tokio::test]
async fn a_reset_before_the_response_head_gives_502() {
    run(Case {
        fault: Fault::Reset { after: 5 },
        steps: &[(Method::GET, 502), (Method::POST, 502)],
        kind: Some("reset"),
        ejects: true,
    })
    .await;
}

#[tokio::test]
async fn a_keepalive_connection_closed_while_idle_costs_no_request() {
    run(Case {
        fault: Fault::CloseIdle,
        steps: &[
            (Method::GET, 200),
            (Method::POST, 200),
            (Method::GET, 200),
            (Method::POST, 200),
            (Method::PUT, 200),
        ],
        kind: None,
        ejects: false,
    })
    .await;
}

/// The request reached the upstream, which closed without answering: SPEC.md
/// allows no retry then, for any method.
#[tokio::test]
async fn a_connection_closed_as_it_is_reused_gives_502_and_no_retry() {
    run(Case {
        fault: Fault::CloseOnReuse,
        steps: &[(Method::POST, 502), (Method::GET, 200), (Method::GET, 502)],
        kind: Some("reset"),
        ejects: false,
    })
    .await;
}

#[tokio::test]
async fn an_answer_trickled_byte_by_byte_arrives_whole() {
    run(Case {
        fault: Fault::Trickle(Duration::from_millis(1)),
        steps: &[(Method::GET, 200), (Method::POST, 200)],
        kind: None,
        ejects: false,
    })
    .await;
}

#[tokio::test]
async fn a_head_trickled_past_the_request_timeout_gives_504() {
    run(Case {
        fault: Fault::Trickle(Duration::from_millis(50)),
        steps: &[(Method::GET, 504), (Method::POST, 504)],
        kind: Some("timeout"),
        ejects: true,
    })
    .await;
}

/// A reset after the head was passed on: the client must see a broken body,
/// never a short one that looks complete.
#[tokio::test]
async fn a_reset_mid_body_breaks_the_clients_body_too() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let fault = FaultProxy::start(blue.addr, Fault::Reset { after: 100_000 }).await;
    let s = start_proxy(&fault_yaml(fault.addr, green.addr)).await;
    let c = client();
    let resp = c
        .get(proxy_url(&s, "/bytes/1000000").parse().unwrap())
        .await
        .expect("the head arrives");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await;
    assert!(body.is_err(), "a truncated body looked complete");
    // The proxy is fine afterwards, and so is the connection pool.
    fault.set(Fault::Pass);
    let a = get(&c, proxy_url(&s, "/bytes/100000")).await;
    assert_eq!((a.status, a.body.len()), (200, 100_000));
    s.shutdown().await;
}

/// A reset while the body streams is an upstream failure like one before
/// the head: it counts in `switchyard_upstream_errors_total{kind="reset"}`
/// and in the endpoint's consecutive failures, so repeated ones eject it
/// (two in a row here), even though each head was a 200: the success of an
/// exchange is only recorded once its body has been read whole.
#[tokio::test]
async fn resets_mid_body_count_as_upstream_errors_and_eject() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let fault = FaultProxy::start(blue.addr, Fault::Pass).await;
    let yaml = config_yaml(
        &[fault.addr],
        &[green.addr],
        "health_check:\n  interval: 1m\n\
         outlier_detection:\n  consecutive_failures: 2\n  ejection_time: 1m\n",
    );
    let s = start_proxy(&yaml).await;
    let c = client();
    // The fault proxy counts bytes per connection: every request below
    // opens a new one (the last one was reset), so each is cut mid-body.
    fault.set(Fault::Reset { after: 100_000 });
    for n in 1..=2u64 {
        let resp = c
            .get(proxy_url(&s, "/bytes/1000000").parse().unwrap())
            .await
            .expect("the head arrives");
        assert_eq!(resp.status(), 200);
        assert!(
            resp.into_body().collect().await.is_err(),
            "a cut body looked whole"
        );
        wait_for(Duration::from_secs(5), "the reset to be counted", || {
            let c = c.clone();
            let s = &s;
            async move { upstream_errors(&c, s, "reset").await == n }
        })
        .await;
        let state = endpoint_state(&c, &s, "blue", fault.addr).await;
        if n == 1 {
            assert_ne!(state, "ejected", "ejected after one failure of two");
        } else {
            assert_eq!(state, "ejected", "two resets in a row did not eject");
        }
    }
    // Ejected: failover takes the requests to green.
    fault.set(Fault::Pass);
    let a = get(&c, proxy_url(&s, "/")).await;
    assert_eq!((a.status, a.upstream()), (200, "green-1"));
    s.shutdown().await;
}

fn process_yaml(blue: SocketAddr, green: SocketAddr) -> String {
    format!(
        "listeners:\n  - bind: \"{{PROXY}}\"\nadmin:\n  bind: \"{{ADMIN}}\"\n\
         pools:\n  blue:\n    endpoints: [\"{blue}\"]\n  green:\n    endpoints: [\"{green}\"]\n\
         state_file: null\nhealth_check:\n  interval: 1m\n  timeout: 1s\n\
         outlier_detection:\n  consecutive_failures: 1000\n\
         timeouts:\n  request: 150ms\n  upstream_idle: 60s\n"
    )
}

/// Every fault, three rounds, against the real binary (health checks slowed
/// down, so their short-lived connections do not blur the count): after each fault is
/// gone its descriptors come back to the baseline, and memory does not grow
/// from round to round.
#[tokio::test]
async fn faults_leave_no_descriptors_or_memory_behind() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let fault = FaultProxy::start(blue.addr, Fault::Pass).await;
    let dir = tempfile::tempdir().unwrap();
    let p = ProxyProcess::start(dir.path(), &process_yaml(fault.addr, green.addr)).await;
    let url = format!("http://{}/", p.proxy);
    let faults = [
        Fault::Latency(Duration::from_millis(500)),
        Fault::Blackhole,
        Fault::Malformed,
        Fault::Reset { after: 5 },
        Fault::CloseIdle,
        Fault::CloseOnReuse,
        Fault::Trickle(Duration::from_millis(20)),
    ];
    let round = || async {
        for f in faults {
            // A fresh client per fault, so that its connections close with it.
            let c = client();
            fault.set(f);
            for m in [Method::GET, Method::POST, Method::GET] {
                let (_, a) = send_id(&c, m, url.clone()).await;
                assert!(matches!(a.status, 200 | 502 | 504), "{f:?}: {}", a.status);
            }
            fault.set(Fault::Pass);
        }
        // Connections the faults left open upstream are closed or reused.
        let c = client();
        for _ in 0..5 {
            assert_eq!(get(&c, url.clone()).await.status, 200);
        }
    };
    // Warm up with connections the proxy closes itself: once the client
    // sees the close, the proxy's descriptor is gone, so the baseline is exact.
    for _ in 0..5 {
        let mut c = crate::support::raw::RawConn::connect(p.proxy).await;
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .await;
        let r = c.response(Duration::from_secs(5)).await.expect("an answer");
        assert_eq!(r.status, 200);
        assert!(c.closes_within(Duration::from_secs(5)).await);
    }
    let baseline_fds = p.open_fds();
    // The count sees client connections, so what is measured can fail.
    // (Three: a warm-up descriptor may still be on its way out.)
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(p.proxy).await.unwrap());
    }
    wait_for(
        Duration::from_secs(5),
        "the held connections to count",
        || {
            let fds = p.open_fds();
            async move { fds >= baseline_fds + 2 }
        },
    )
    .await;
    drop(held);
    round().await;
    let rss_after_first = p.status_kib("VmRSS:");
    for _ in 0..2 {
        round().await;
    }
    // The blackholed connections are the proxy's to close (at its request
    // timeout), the client connections at their end.
    wait_for(
        Duration::from_secs(10),
        "descriptors back to the baseline",
        || {
            let fds = p.open_fds();
            async move { fds <= baseline_fds + 2 }
        },
    )
    .await;
    let rss = p.status_kib("VmRSS:");
    eprintln!(
        "fds: baseline {baseline_fds}, now {}; RSS after round 1 {rss_after_first} KiB, after round 3 {rss} KiB",
        p.open_fds()
    );
    assert!(
        rss <= rss_after_first + 4 * 1024,
        "memory grew by {} KiB over two rounds of faults",
        rss.saturating_sub(rss_after_first)
    );
}
