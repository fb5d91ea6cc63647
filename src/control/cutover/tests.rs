//! The rule of SPEC.md section 13 in the controller: once promotion of the
//! replica has begun the switch completes (a rollback is refused with 409,
//! `max_hold` passing does not abort it, a shutdown waits for the
//! promotion and flips); before it began, each of these aborts and the
//! gate may not promote. The controller is driven by hand on a paused
//! clock; the test plays the gate through its events
//! ([`gate::Prepared::Scripted`]), as the PostgreSQL gate talks to it.

use super::*;
use crate::config::PoolName;
use crate::control::commands::Command;
use crate::control::controller::{CommandError, Controller};
use crate::control::document::Phase;
use crate::control::gate::{DatabaseFigures, GateOutcome, Script};
use crate::routing::PoolRuntime;
use crate::telemetry::metrics::Metrics;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

const MAX_HOLD: Duration = Duration::from_secs(1);
/// Bounds every wait on the paused clock (reached only when stuck).
const BOUND: Duration = Duration::from_secs(60);

/// A controller whose switches hold writes behind a PostgreSQL gate that
/// promotes (its servers are never reached: the test plays the gate).
async fn controller() -> Controller {
    let yaml = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\nadmin:\n  bind: \"127.0.0.1:0\"\npools:\n  blue:\n    endpoints: [\"127.0.0.1:1\"]\n  green:\n    endpoints: [\"127.0.0.1:2\"]\nstate_file: null\n\
         cutover:\n  hold_writes: true\n  max_hold: {}ms\n  gate:\n    poll_interval: 50ms\n    postgres:\n      primary: \"host=127.0.0.1 port=1 user=app\"\n      replica: \"host=127.0.0.1 port=2 user=app\"\n      promote: true\nrollout:\n  bake_time: 0s\n",
        MAX_HOLD.as_millis()
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
    let (ctl, _handle, _shared) = Controller::new(cfg, None, runtimes, metrics).await.unwrap();
    ctl
}

type Answer = oneshot::Receiver<Result<SwitchReport, CommandError>>;

/// A switch to green whose writes have drained and whose gate runs:
/// the answer to come, and the gate's script.
async fn gate_running(ctl: &mut Controller) -> (Answer, mpsc::UnboundedSender<Script>) {
    let (reply, answer) = oneshot::channel();
    ctl.handle(Command::Switch {
        to: PoolName::Green,
        force: true,
        if_generation: None,
        actor: Actor::Admin,
        reply,
    })
    .await;
    assert_eq!(ctl.doc.phase(), Phase::Switching);
    let (script, steps) = mpsc::unbounded_channel();
    let c = ctl.cutover.as_mut().expect("the switch's hold");
    // The connections the real gate began opening close with it.
    c.gate = Some(gate::Prepared::Scripted(steps));
    // No write in flight: the writes settle, then the gate runs.
    let settled = next_progress(ctl).await;
    assert!(
        matches!(settled, Progress::Settled { settled: true, .. }),
        "{settled:?}"
    );
    ctl.on_progress(settled).await;
    assert!(ctl.cutover.as_ref().is_some_and(|c| c.task.is_some()));
    script.send(Script::Figures(figures("waiting"))).unwrap();
    step(ctl).await;
    (answer, script)
}

async fn next_progress(ctl: &mut Controller) -> Progress {
    timeout(BOUND, ctl.progress_rx.recv())
        .await
        .expect("the hold's task reports")
        .expect("the channel is open")
}

/// Hand the controller the next report of the hold's task.
async fn step(ctl: &mut Controller) {
    let p = next_progress(ctl).await;
    ctl.on_progress(p).await;
}

/// The gate asks to promote; the controller's answer.
async fn ask_promote(ctl: &mut Controller, script: &mpsc::UnboundedSender<Script>) -> bool {
    let (back, answer) = oneshot::channel();
    script.send(Script::AskPromote(back)).unwrap();
    step(ctl).await;
    timeout(BOUND, answer).await.unwrap().unwrap()
}

fn figures(state: &'static str) -> DatabaseFigures {
    DatabaseFigures {
        state,
        promote: true,
        lag_bytes: Some(0),
        ..DatabaseFigures::default()
    }
}

/// How the PostgreSQL gate ends once the replica has left recovery.
fn promoted() -> GateOutcome {
    let mut f = figures("promoted");
    f.promoted = true;
    f.promote_ms = Some(2_500);
    GateOutcome {
        passed: true,
        answer: Some("replica at 0/3000060, 0 bytes behind 0/3000060".into()),
        error: None,
        database: Some(f),
        promoted: true,
    }
}

/// How it ends when the controller said no to promotion.
fn refused() -> GateOutcome {
    let mut f = figures("failed");
    f.error = Some("not promoted".into());
    GateOutcome {
        passed: false,
        answer: Some("replica at 0/3000060, 0 bytes behind 0/3000060".into()),
        error: None,
        database: Some(f),
        promoted: false,
    }
}

async fn rollback(ctl: &mut Controller) -> Result<crate::control::view::ControlView, CommandError> {
    let (reply, answer) = oneshot::channel();
    ctl.handle(Command::Rollback {
        reason: Some("bad deploy".into()),
        if_generation: None,
        reply,
    })
    .await;
    timeout(BOUND, answer).await.unwrap().unwrap()
}

fn still_holding(ctl: &Controller, answer: &mut Answer) {
    assert_eq!(ctl.doc.phase(), Phase::Switching);
    assert!(ctl.shared.table.load().hold.is_some(), "writes stay held");
    assert!(
        matches!(answer.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
        "the switch is not answered yet"
    );
}

fn completed(answer: &mut Answer) -> SwitchReport {
    match answer.try_recv() {
        Ok(Ok(report)) => report,
        other => panic!("expected a completed switch, got {other:?}"),
    }
}

fn aborted(answer: &mut Answer) -> SwitchReport {
    match answer.try_recv() {
        Ok(Err(CommandError::SwitchAborted(report))) => *report,
        other => panic!("expected an aborted switch, got {other:?}"),
    }
}

fn flipped(ctl: &Controller) {
    let table = ctl.shared.table.load();
    assert!(table.hold.is_none(), "the held writes are released");
    assert_eq!(
        table.weights,
        crate::routing::Weights::all_on(PoolName::Green)
    );
}

fn stayed_blue(ctl: &Controller) {
    let table = ctl.shared.table.load();
    assert!(table.hold.is_none(), "the held writes are released");
    assert_eq!(
        table.weights,
        crate::routing::Weights::all_on(PoolName::Blue)
    );
}

#[tokio::test(start_paused = true)]
async fn once_promotion_began_a_rollback_is_refused_and_max_hold_passes_without_an_abort() {
    let mut ctl = controller().await;
    let (mut answer, script) = gate_running(&mut ctl).await;
    assert!(ask_promote(&mut ctl, &script).await, "before max_hold");
    assert!(ctl.cutover.as_ref().is_some_and(|c| c.promoting));

    let refused = rollback(&mut ctl).await;
    match &refused {
        // The admin API answers a conflict 409.
        Err(CommandError::Conflict(m)) => {
            assert!(m.contains("the replica is being promoted"), "{m}");
            assert!(m.contains("roll back after it"), "{m}");
        }
        other => panic!("expected a 409, got {other:?}"),
    }
    still_holding(&ctl, &mut answer);

    // Promotion takes longer than max_hold.
    script.send(Script::Figures(figures("promoting"))).unwrap();
    step(&mut ctl).await;
    tokio::time::advance(MAX_HOLD * 3).await;
    still_holding(&ctl, &mut answer);

    script.send(Script::End(promoted())).unwrap();
    step(&mut ctl).await;
    let report = completed(&mut answer);
    assert_eq!(report.outcome, "completed");
    let db = report.database.expect("the gate's figures");
    assert!(db.promoted);
    let exceeded = db
        .max_hold_exceeded_ms
        .expect("by how much max_hold was exceeded");
    assert!(exceeded >= 2 * MAX_HOLD.as_millis() as u64, "{exceeded}");
    flipped(&ctl);
}

#[tokio::test(start_paused = true)]
async fn once_promotion_began_even_a_failed_gate_flips() {
    let mut ctl = controller().await;
    let (mut answer, script) = gate_running(&mut ctl).await;
    assert!(ask_promote(&mut ctl, &script).await);
    tokio::time::advance(MAX_HOLD * 2).await;
    let mut gone = refused();
    gone.error = Some("replica: no answer within 1s".into());
    script.send(Script::End(gone)).unwrap();
    step(&mut ctl).await;
    assert_eq!(completed(&mut answer).outcome, "completed");
    flipped(&ctl);
}

#[tokio::test(start_paused = true)]
async fn before_promotion_a_rollback_takes_the_hold_over_and_stops_the_gate() {
    let mut ctl = controller().await;
    let (mut answer, script) = gate_running(&mut ctl).await;
    let view = rollback(&mut ctl).await.expect("the rollback takes over");
    assert_eq!(view.phase, Phase::Stable);
    let report = aborted(&mut answer);
    assert_eq!(report.reason.as_deref(), Some("a rollback took over"));
    stayed_blue(&ctl);
    // The gate's task was stopped: it can ask for nothing more.
    tokio::task::yield_now().await;
    assert!(
        script
            .send(Script::AskPromote(oneshot::channel().0))
            .is_err(),
        "the gate is gone"
    );
}

#[tokio::test(start_paused = true)]
async fn past_max_hold_before_promotion_the_gate_may_not_promote_and_the_switch_aborts() {
    let mut ctl = controller().await;
    let (mut answer, script) = gate_running(&mut ctl).await;
    tokio::time::advance(MAX_HOLD + Duration::from_millis(1)).await;
    assert!(!ask_promote(&mut ctl, &script).await, "past max_hold");
    assert!(ctl.cutover.as_ref().is_some_and(|c| !c.promoting));
    script.send(Script::End(refused())).unwrap();
    step(&mut ctl).await;
    let report = aborted(&mut answer);
    let reason = report.reason.unwrap_or_default();
    assert!(
        reason.starts_with("max_hold 1s exceeded waiting for the gate"),
        "{reason}"
    );
    stayed_blue(&ctl);
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_during_promotion_waits_for_it_then_flips() {
    let mut ctl = controller().await;
    let (mut answer, script) = gate_running(&mut ctl).await;
    assert!(ask_promote(&mut ctl, &script).await);
    ctl.shared.set_shutting_down();
    let (reply, mut stopped) = oneshot::channel();
    ctl.handle(Command::Shutdown { reply }).await;
    // Flipping now would send the held writes to a database in recovery.
    still_holding(&ctl, &mut answer);
    assert!(
        matches!(stopped.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
        "the shutdown waits for the promotion"
    );
    tokio::time::advance(MAX_HOLD * 2).await;
    still_holding(&ctl, &mut answer);

    script.send(Script::End(promoted())).unwrap();
    step(&mut ctl).await;
    assert_eq!(completed(&mut answer).outcome, "completed");
    flipped(&ctl);
    assert!(
        matches!(stopped.try_recv(), Ok(Ok(()))),
        "answered at the flip"
    );
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_before_promotion_aborts_at_once() {
    let mut ctl = controller().await;
    let (mut answer, script) = gate_running(&mut ctl).await;
    ctl.shared.set_shutting_down();
    let (reply, mut stopped) = oneshot::channel();
    ctl.handle(Command::Shutdown { reply }).await;
    assert!(matches!(stopped.try_recv(), Ok(Ok(()))), "answered at once");
    let report = aborted(&mut answer);
    assert_eq!(report.reason.as_deref(), Some("shutting down"));
    stayed_blue(&ctl);
    tokio::task::yield_now().await;
    assert!(
        script
            .send(Script::AskPromote(oneshot::channel().0))
            .is_err(),
        "the gate is gone"
    );
}

/// The process began stopping (readiness off) and the gate asked before
/// the controller heard of it: promotion is refused, and the switch is
/// aborted for the shutdown, not for max_hold.
#[tokio::test(start_paused = true)]
async fn a_gate_that_asks_as_the_process_stops_may_not_promote() {
    let mut ctl = controller().await;
    let (mut answer, script) = gate_running(&mut ctl).await;
    ctl.shared.set_shutting_down();
    assert!(!ask_promote(&mut ctl, &script).await);
    script.send(Script::End(refused())).unwrap();
    step(&mut ctl).await;
    let report = aborted(&mut answer);
    assert_eq!(report.reason.as_deref(), Some("shutting down"));
    stayed_blue(&ctl);
    let (reply, mut stopped) = oneshot::channel();
    ctl.handle(Command::Shutdown { reply }).await;
    assert!(matches!(stopped.try_recv(), Ok(Ok(()))));
}
