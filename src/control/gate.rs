//! The gate of a held switch (SPEC.md sections 5 and 13): after the writes
//! in flight have drained, what must hold before the flip.
//!
//! - `url`: a URL polled until it answers 2xx.
//! - `postgres`: the primary's WAL position read once, then the replica's
//!   replay position polled until it has caught up; with `promote`, the
//!   replica promoted and out of recovery.
//! - `lsn`, `password`: log sequence numbers and `.pgpass` files, pure.
//!
//! A gate runs in a task the cutover spawns ([`crate::control::cutover`]);
//! it reports its figures as it goes and asks the controller before it
//! promotes, because promotion cannot be undone: from then on the switch
//! completes whatever the time, and a rollback cannot take it over. Any
//! coordinator of a held switch (the single proxy's cutover, a fleet's)
//! runs a gate the same way: [`prepare`] when the hold starts (connections
//! are opened while writes drain), [`pass`] once they have drained.

mod lsn;
mod password;
mod postgres;
mod url;

pub use lsn::Lsn;

use crate::config::GateConfig;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// At most this many lag samples are kept; past it every other old one goes.
const MAX_POINTS: usize = 240;

/// What a PostgreSQL gate saw, for the report, the events and status.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DatabaseFigures {
    /// `connecting`, `waiting`, `caught_up`, `promoting`, `promoted`, `failed`.
    pub state: &'static str,
    /// When both connections were up, ms since the hold began.
    pub connected_ms: Option<u64>,
    /// The primary's `pg_current_wal_lsn()` once the writes had drained:
    /// what the replica must replay.
    pub primary_lsn: Option<Lsn>,
    /// The replica's last `pg_last_wal_replay_lsn()`.
    pub replay_lsn: Option<Lsn>,
    /// `primary_lsn - replay_lsn`, at the last poll.
    pub lag_bytes: Option<u64>,
    pub max_lag_bytes: u64,
    /// The lag over time: ms since the hold began, bytes.
    pub lag: Vec<LagPoint>,
    /// When the replica had caught up, ms since the hold began.
    pub caught_up_ms: Option<u64>,
    pub promote: bool,
    pub promoted: bool,
    /// From `pg_promote` until the replica left recovery.
    pub promote_ms: Option<u64>,
    /// By how much promotion took the switch past `max_hold`.
    pub max_hold_exceeded_ms: Option<u64>,
    /// What went wrong, when something did.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LagPoint {
    pub ms: u64,
    pub bytes: u64,
}

impl DatabaseFigures {
    /// Add a sample; the oldest half is thinned when the series is full,
    /// so a long wait keeps its shape and its latest points.
    pub fn push_lag(&mut self, p: LagPoint) {
        if self.lag.len() >= MAX_POINTS {
            let half = self.lag.len() / 2;
            let mut i = 0;
            self.lag.retain(|_| {
                i += 1;
                i > half || i % 2 == 1
            });
        }
        self.lag.push(p);
    }
}

/// What a gate tells its coordinator while it runs.
#[derive(Debug)]
pub enum GateEvent {
    /// The figures moved (a poll, a state change).
    Figures(Box<DatabaseFigures>),
    /// The replica has caught up: may it be promoted? Answered `true` only
    /// while the switch is still on, before its deadline; from then on
    /// the coordinator completes the switch whatever happens.
    Promote(oneshot::Sender<bool>),
}

/// How a gate ended.
#[derive(Debug, Default)]
pub struct GateOutcome {
    pub passed: bool,
    /// The last answer, e.g. `200`, `503`, or the replica's position.
    pub answer: Option<String>,
    /// A failure that is not the deadline (a database unreachable, a
    /// replica that is not a standby): the switch aborts at once with it.
    pub error: Option<String>,
    pub database: Option<DatabaseFigures>,
    /// Promotion began: the switch must complete.
    pub promoted: bool,
}

/// A gate ready to run, its connections already being opened.
pub enum Prepared {
    Url(GateConfig),
    Postgres(GateConfig, postgres::Connecting),
    /// Tests of the controller: a gate the test plays, step by step.
    #[cfg(test)]
    Scripted(tokio::sync::mpsc::UnboundedReceiver<Script>),
}

/// A step of a [`Prepared::Scripted`] gate.
#[cfg(test)]
pub enum Script {
    /// Ask the coordinator whether to promote; its answer goes back.
    AskPromote(oneshot::Sender<bool>),
    /// Report figures.
    Figures(DatabaseFigures),
    /// End the gate with this outcome.
    End(GateOutcome),
}

#[cfg(test)]
async fn scripted(
    mut script: tokio::sync::mpsc::UnboundedReceiver<Script>,
    events: impl Fn(GateEvent) + Send,
) -> GateOutcome {
    while let Some(step) = script.recv().await {
        match step {
            Script::AskPromote(back) => {
                let (tx, rx) = oneshot::channel();
                events(GateEvent::Promote(tx));
                let _ = back.send(rx.await == Ok(true));
            }
            Script::Figures(f) => events(GateEvent::Figures(Box::new(f))),
            Script::End(outcome) => return outcome,
        }
    }
    GateOutcome {
        error: Some("the script ended".into()),
        ..GateOutcome::default()
    }
}

/// Start what can start before the writes have drained: for PostgreSQL,
/// connecting to both servers.
pub fn prepare(gate: GateConfig) -> Prepared {
    match gate.postgres.clone() {
        Some(pg) => {
            let connecting = postgres::Connecting::start(pg, gate.timeout);
            Prepared::Postgres(gate, connecting)
        }
        None => Prepared::Url(gate),
    }
}

/// Run the gate until it passes, fails, or `deadline` comes (before a
/// promotion; after one, promotion has its own bound). `started` is when
/// the hold began (the figures count from it); `events` reaches the
/// coordinator.
pub async fn pass(
    prepared: Prepared,
    started: Instant,
    deadline: Instant,
    events: impl Fn(GateEvent) + Send,
) -> GateOutcome {
    match prepared {
        Prepared::Url(gate) => url::pass(&gate, deadline).await,
        Prepared::Postgres(gate, connecting) => {
            postgres::pass(&gate, connecting, started, deadline, events).await
        }
        #[cfg(test)]
        Prepared::Scripted(script) => scripted(script, events).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_lag_series_is_thinned_from_the_old_end() {
        let mut f = DatabaseFigures::default();
        for ms in 0..1000 {
            f.push_lag(LagPoint { ms, bytes: ms });
        }
        assert!(f.lag.len() <= MAX_POINTS, "{}", f.lag.len());
        assert!(f.lag.len() > MAX_POINTS / 2, "{}", f.lag.len());
        assert_eq!(f.lag.first().map(|p| p.ms), Some(0), "the start stays");
        assert_eq!(f.lag.last().map(|p| p.ms), Some(999), "the latest stays");
        assert!(f.lag.windows(2).all(|w| w[0].ms < w[1].ms), "in order");
    }
}
