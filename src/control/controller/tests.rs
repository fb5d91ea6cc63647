//! The controller task itself, on a gate the test opens: while a held
//! switch waits on it, the loop goes on (status, health events, refusals),
//! and the switch ends by its gate, a rollback, or shutdown.

use super::*;
use crate::control::commands::SwitchReport;
use crate::control::events::EventKind;
use std::sync::atomic::AtomicBool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(10);

/// An HTTP gate on 127.0.0.1 answering 503 until `open` is set, then 200.
async fn gate(open: Arc<AtomicBool>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let open = open.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                // One request head per connection (it closes after the answer).
                if conn.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                let status = match open.load(Ordering::SeqCst) {
                    true => "200 OK",
                    false => "503 Service Unavailable",
                };
                let answer =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                if let Err(e) = conn.write_all(answer.as_bytes()).await {
                    tracing::debug!(error = %e, "gate client went away");
                }
            });
        }
    });
    addr
}

struct Running {
    handle: ControllerHandle,
    shared: Arc<Shared>,
    open: Arc<AtomicBool>,
}

/// A controller with writes held on switches, behind a closed gate.
async fn running() -> Running {
    let open = Arc::new(AtomicBool::new(false));
    let gate = gate(open.clone()).await;
    let yaml = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\nadmin:\n  bind: \"127.0.0.1:0\"\npools:\n  blue:\n    endpoints: [\"127.0.0.1:1\"]\n  green:\n    endpoints: [\"127.0.0.1:2\"]\nstate_file: null\n\
         cutover:\n  hold_writes: true\n  max_hold: 30s\n  gate:\n    url: \"http://{gate}/gate\"\n    poll_interval: 10ms\n    timeout: 1s\nrollout:\n  bake_time: 0s\n"
    );
    let cfg = crate::config::parse(&yaml, "<test>").unwrap();
    let metrics = Arc::new(Metrics::new());
    let runtimes = PoolName::ALL.map(|p| {
        Arc::new(PoolRuntime::new(
            p,
            cfg.rollback.window,
            metrics.pool(p).clone(),
        ))
    });
    let (ctl, handle, shared) = Controller::new(cfg, None, runtimes, metrics).await.unwrap();
    tokio::spawn(ctl.run());
    Running {
        handle,
        shared,
        open,
    }
}

type SwitchAnswer = JoinHandle<Result<SwitchReport, CommandError>>;

/// A forced switch to green (the endpoints are never checked here), once
/// its hold is in force.
async fn switching(r: &Running) -> SwitchAnswer {
    let handle = r.handle.clone();
    let answer = tokio::spawn(async move {
        handle
            .request(|reply| Command::Switch {
                to: PoolName::Green,
                force: true,
                if_generation: None,
                actor: Actor::Admin,
                reply,
            })
            .await
    });
    let mut poll = tokio::time::interval(Duration::from_millis(5));
    timeout(BOUND, async {
        while r.shared.view.load().phase != Phase::Switching {
            poll.tick().await;
        }
    })
    .await
    .expect("the switch holds writes");
    answer
}

async fn status(r: &Running) -> ControlView {
    timeout(BOUND, r.handle.request(|reply| Command::Status { reply }))
        .await
        .expect("the controller answers at once")
        .unwrap()
}

#[tokio::test]
async fn while_a_switch_waits_on_its_gate_the_loop_answers_and_records_health() {
    let r = running().await;
    assert_eq!(status(&r).await.generation, 1, "the config's state, stored");
    let answer = switching(&r).await;
    let hold = r.shared.table.load().hold.clone().expect("published");
    let ticket = hold.enter().expect("a place in the queue");
    let write = tokio::spawn(ticket.wait());

    let st = status(&r).await;
    assert_eq!((st.phase, st.generation), (Phase::Switching, 2));
    assert_eq!(st.hold.as_ref().map(|h| h.to), Some(PoolName::Green));

    r.handle.notify(Command::EndpointHealth {
        pool: PoolName::Blue,
        address: "127.0.0.1:1".into(),
        state: EndpointState::Unhealthy,
        reason: "status 500".into(),
    });
    // The inbox is in order: once status answers, the event is recorded.
    let st = status(&r).await;
    assert_eq!(st.phase, Phase::Switching);
    let down = r.shared.events.recent(5);
    assert!(
        down.iter().any(|e| e.kind == EventKind::EndpointDown),
        "{down:?}"
    );
    assert!(r
        .shared
        .metrics
        .encode()
        .contains("switchyard_endpoint_healthy{endpoint=\"127.0.0.1:1\",pool=\"blue\"} 0"));
    // Another change: refused by the controller, at once.
    let refused = timeout(
        BOUND,
        r.handle.request(|reply| Command::SetWeights {
            weights: Weights::with_percent(PoolName::Green, 50.0),
            force: false,
            if_generation: None,
            actor: Actor::Admin,
            reply,
        }),
    )
    .await
    .expect("answered at once");
    assert!(
        matches!(&refused, Err(CommandError::Conflict(m)) if m.contains("a switch is in progress")),
        "{refused:?}"
    );
    assert!(!answer.is_finished() && !write.is_finished());

    r.open.store(true, Ordering::SeqCst);
    let report = timeout(BOUND, answer).await.unwrap().unwrap().unwrap();
    assert_eq!(report.outcome, "completed");
    assert_eq!(
        report.generation, 3,
        "the flip is the hold's second document"
    );
    assert_eq!(report.held_requests, 1);
    timeout(BOUND, write).await.unwrap().unwrap();
    let table = r.shared.table.load();
    assert!(table.hold.is_none());
    assert_eq!(table.weights, Weights::all_on(PoolName::Green));
    assert_eq!(status(&r).await.phase, Phase::Stable);
}

#[tokio::test]
async fn a_rollback_aborts_a_waiting_switch_and_shutdown_does_too() {
    let r = running().await;
    let answer = switching(&r).await;
    let view = timeout(
        BOUND,
        r.handle.request(|reply| Command::Rollback {
            reason: Some("stop".into()),
            if_generation: None,
            reply,
        }),
    )
    .await
    .expect("the rollback is not held up by the gate")
    .unwrap();
    assert_eq!(view.phase, Phase::Stable);
    assert_eq!(view.weights, Weights::all_on(PoolName::Blue));
    assert_eq!(view.rollback_lock.map(|l| l.pool), Some(PoolName::Green));
    match timeout(BOUND, answer).await.unwrap().unwrap() {
        Err(CommandError::SwitchAborted(report)) => {
            assert_eq!(report.outcome, "aborted");
            assert_eq!(report.reason.as_deref(), Some("a rollback took over"));
        }
        other => panic!("expected an aborted switch, got {other:?}"),
    }
    assert!(
        r.shared.table.load().hold.is_none(),
        "the writes are released"
    );

    // Rearm, then a switch that shutdown aborts.
    let rearmed = r.handle.request(|reply| Command::Rearm {
        if_generation: None,
        reply,
    });
    assert!(timeout(BOUND, rearmed).await.unwrap().is_ok());
    let answer = switching(&r).await;
    let generation = status(&r).await.generation;
    timeout(BOUND, r.handle.request(|reply| Command::Shutdown { reply }))
        .await
        .unwrap()
        .unwrap();
    match timeout(BOUND, answer).await.unwrap().unwrap() {
        Err(CommandError::SwitchAborted(report)) => {
            assert_eq!(report.reason.as_deref(), Some("shutting down"));
            assert_eq!(report.generation, generation + 1);
        }
        other => panic!("expected an aborted switch, got {other:?}"),
    }
    let st = status(&r).await;
    assert_eq!(
        (st.phase, st.weights),
        (Phase::Stable, Weights::all_on(PoolName::Blue))
    );
}
