//! `--wait`: block until a rollout or a switch is done, for CI pipelines.
//!
//! Done means the bake is over (`bake_completed`): exit 0. A `rollback`
//! (automatic, manual, or an abort) or a `switch_aborted` event exits 6.
//! Anything else that ends the rollout (a manual split, a switch back)
//! exits 1, and so does `--timeout`. Progress is read from the audit log
//! (events after the one that was newest when the wait began) and from
//! status; each step is printed as it happens. A proxy that restarts is
//! waited for: the state file brings the rollout back.

use super::api::{Api, CtlError};
use crate::cli::render::render_events;
use http::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

/// How often the wait looks.
const POLL: Duration = Duration::from_millis(250);
/// How long the admin API may be out of reach before the wait gives up.
const OUT_OF_REACH: Duration = Duration::from_secs(60);

/// The event kinds that end a wait, and how.
fn verdict(e: &Value) -> Option<Result<(), CtlError>> {
    let reason = e["reason"].as_str().unwrap_or("");
    match e["kind"].as_str()? {
        "bake_completed" => Some(Ok(())),
        "rollback" => Some(Err(CtlError::RolledBack(format!("rolled back: {reason}")))),
        "switch_aborted" => Some(Err(CtlError::RolledBack(format!(
            "switch aborted: {reason}"
        )))),
        _ => None,
    }
}

/// The id of the newest event (0 with none): a wait reads what comes after.
pub(super) async fn newest_event(api: &Api) -> Result<u64, CtlError> {
    let v = api
        .call(Method::GET, "/api/v1/events?limit=1", None)
        .await?;
    Ok(v["events"][0]["id"].as_u64().unwrap_or(0))
}

/// `rollout status --wait` when nothing is in progress: the outcome of the
/// last rollout or switch, from the log.
pub(super) async fn last_outcome(api: &Api, json: bool) -> Result<(), CtlError> {
    let v = api
        .call(Method::GET, "/api/v1/events?limit=1000", None)
        .await?;
    for e in v["events"].as_array().into_iter().flatten() {
        if let Some(r) = verdict(e) {
            print_event(e, json)?;
            return r;
        }
    }
    super::print("nothing in progress and no rollout in the log\n")
}

/// Wait until what began after event `since` is done.
pub(super) async fn until_done(
    api: &Api,
    since: u64,
    timeout: Option<Duration>,
    json: bool,
) -> Result<(), CtlError> {
    let started = Instant::now();
    let mut seen = since;
    let mut last_ok = Instant::now();
    let mut lost = false;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            return Err(CtlError::WaitEnded(format!(
                "gave up waiting after {}",
                humantime::format_duration(timeout.unwrap_or_default())
            )));
        }
        // Status first: if it shows the change over, the events that ended
        // it are already in the log read next.
        let step = async {
            let status = api.call(Method::GET, "/api/v1/status", None).await?;
            let events = api
                .call(Method::GET, "/api/v1/events?limit=200", None)
                .await?;
            Ok::<_, CtlError>((status, events))
        };
        let (status, events) = match step.await {
            Ok(x) => x,
            Err(e) if e.transient() && last_ok.elapsed() < OUT_OF_REACH => {
                if !lost {
                    super::say(&format!("lost the admin API ({e}); still waiting\n"));
                    lost = true;
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        last_ok = Instant::now();
        if std::mem::take(&mut lost) {
            super::say("the admin API answers again\n");
        }
        let list = events["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let newest = list.first().and_then(|e| e["id"].as_u64()).unwrap_or(0);
        if newest < seen {
            // The proxy restarted: its log numbers from 1 again.
            seen = 0;
        }
        let mut new: Vec<&Value> = list
            .iter()
            .filter(|e| e["id"].as_u64().is_some_and(|id| id > seen))
            .collect();
        new.reverse();
        for e in new {
            seen = seen.max(e["id"].as_u64().unwrap_or(0));
            if let Some(r) = verdict(e) {
                print_event(e, json)?;
                return r;
            }
            if !json && progress(e) {
                super::print(&render_events(&json!({ "events": [e] })))?;
            }
        }
        if in_progress(&status).is_none() {
            return Err(CtlError::WaitEnded(format!(
                "it ended without completing: phase {}, weights blue {}% green {}%",
                status["phase"].as_str().unwrap_or("?"),
                status["weights"]["blue"],
                status["weights"]["green"]
            )));
        }
    }
}

/// What is in progress: a rollout, a bake or a switch's hold; None when
/// nothing is.
pub(super) fn in_progress(status: &Value) -> Option<&'static str> {
    if !status["hold"].is_null() {
        Some("switch")
    } else if !status["rollout"].is_null() {
        Some("rollout")
    } else if !status["bake"].is_null() {
        Some("bake")
    } else {
        None
    }
}

/// Events worth a line while waiting.
fn progress(e: &Value) -> bool {
    matches!(
        e["kind"].as_str(),
        Some(
            "rollout_started"
                | "rollout_step"
                | "rollout_paused"
                | "rollout_resumed"
                | "rollout_completed"
                | "switch_completed"
                | "weights_changed"
        )
    )
}

fn print_event(e: &Value, json: bool) -> Result<(), CtlError> {
    if json {
        super::print(&super::pretty(e))
    } else {
        super::print(&render_events(&json!({ "events": [e] })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_says_how_a_wait_ends() {
        let ok = verdict(&json!({"kind": "bake_completed"}));
        assert!(matches!(ok, Some(Ok(()))));
        let back = verdict(&json!({"kind": "rollback", "reason": "error_rate: x"}));
        match back {
            Some(Err(e)) => {
                assert_eq!(e.exit_code(), 6);
                assert_eq!(e.to_string(), "rolled back: error_rate: x");
            }
            other => panic!("{other:?}"),
        }
        let aborted = verdict(&json!({"kind": "switch_aborted", "reason": "max_hold"}));
        assert!(matches!(aborted, Some(Err(CtlError::RolledBack(_)))));
        assert!(verdict(&json!({"kind": "rollout_step"})).is_none());
    }

    #[test]
    fn in_progress_reads_the_status() {
        assert_eq!(
            in_progress(&json!({"rollout": {"step": 1}})),
            Some("rollout")
        );
        assert_eq!(
            in_progress(&json!({"rollout": null, "bake": {}})),
            Some("bake")
        );
        assert_eq!(in_progress(&json!({"hold": {"id": 3}})), Some("switch"));
        assert_eq!(in_progress(&json!({"rollout": null, "bake": null})), None);
    }
}
