//! One task per check, off the controller's loop. The controller arms them
//! with a [`Target`] (which pool is the candidate, whether the live pool
//! has traffic to compare with, and the arming's epoch) while the candidate
//! takes traffic, and disarms them otherwise; an armed task reads its value
//! at once, then every `interval`, and hands each [`CheckReport`] to the
//! sink (the controller's inbox, never awaited). A reload reconciles the
//! tasks with the new list: a changed check restarts, a removed one stops.

use super::{judge, probe, CheckReport, CheckVerdict, Reading};
use crate::config::analysis::{CheckConfig, Compare};
use crate::config::PoolName;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the checks run against while armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub candidate: PoolName,
    /// The live pool takes traffic: a baseline check has something to
    /// compare with (not while the candidate takes everything).
    pub baseline: bool,
    /// Changes with every weight change: readings of an older epoch are dropped.
    pub epoch: u64,
}

/// Where reports go.
pub type Sink = Arc<dyn Fn(CheckReport) + Send + Sync>;

struct Task {
    cfg: CheckConfig,
    stop: CancellationToken,
}

/// The check tasks and their arming.
pub struct Runner {
    target: watch::Sender<Option<Target>>,
    tasks: HashMap<String, Task>,
    sink: Sink,
}

impl Runner {
    pub fn new(sink: Sink) -> Self {
        Runner {
            target: watch::Sender::new(None),
            tasks: HashMap::new(),
            sink,
        }
    }

    /// Arm (`Some`) or disarm (`None`); nothing happens when it is the same.
    pub fn arm(&self, target: Option<Target>) {
        self.target.send_if_modified(|t| {
            let changed = *t != target;
            *t = target;
            changed
        });
    }

    pub fn target(&self) -> Option<Target> {
        *self.target.borrow()
    }

    /// Run exactly the checks of `checks`: start new ones, restart changed
    /// ones, stop removed ones.
    pub fn reconcile(&mut self, checks: &[CheckConfig]) {
        self.tasks.retain(|name, task| {
            let keep = checks.iter().any(|c| &c.name == name && *c == task.cfg);
            if !keep {
                task.stop.cancel();
            }
            keep
        });
        for c in checks {
            if self.tasks.contains_key(&c.name) {
                continue;
            }
            let stop = CancellationToken::new();
            tokio::spawn(run(
                c.clone(),
                self.target.subscribe(),
                self.sink.clone(),
                stop.clone(),
            ));
            let task = Task {
                cfg: c.clone(),
                stop,
            };
            self.tasks.insert(c.name.clone(), task);
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.stop.cancel();
        }
    }
}

async fn run(
    cfg: CheckConfig,
    mut target: watch::Receiver<Option<Target>>,
    sink: Sink,
    stop: CancellationToken,
) {
    loop {
        let armed = *target.borrow_and_update();
        let runnable = armed.filter(|t| t.baseline || cfg.compare == Compare::Absolute);
        let Some(t) = runnable else {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = target.changed() => if r.is_err() { return },
            }
            continue;
        };
        let mut tick = tokio::time::interval(cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = target.changed() => match r {
                    Ok(()) => break,
                    Err(_) => return,
                },
                _ = tick.tick() => {
                    let report = tokio::select! {
                        _ = stop.cancelled() => return,
                        r = once(&cfg, t) => r,
                    };
                    sink(report);
                }
            }
        }
    }
}

/// Read and judge `cfg` once against `t`.
pub async fn once(cfg: &CheckConfig, t: Target) -> CheckReport {
    let (candidate, live) = match cfg.compare {
        Compare::Baseline => {
            let (c, l) = tokio::join!(
                probe::read(cfg, t.candidate),
                probe::read(cfg, t.candidate.other())
            );
            (c, Some(l))
        }
        Compare::Absolute => (probe::read(cfg, t.candidate).await, None),
    };
    report(cfg, t, &candidate, live.as_ref())
}

fn report(
    cfg: &CheckConfig,
    t: Target,
    candidate: &Reading,
    live: Option<&Reading>,
) -> CheckReport {
    let j = judge(cfg, candidate, live);
    if j.verdict != CheckVerdict::Pass {
        tracing::info!(check = %cfg.name, verdict = j.verdict.as_str(), detail = %j.detail, "check");
    }
    CheckReport {
        check: cfg.name.clone(),
        epoch: t.epoch,
        verdict: j.verdict,
        candidate_pool: t.candidate,
        candidate: j.candidate,
        live: j.live,
        ratio: j.ratio,
        threshold: super::threshold(cfg),
        detail: j.detail,
        time: crate::clock::rfc3339(crate::clock::unix_ms()),
    }
}
