//! The controller task: the single writer of deployment state.
//!
//! One `select!` loop over commands (a oneshot reply each), documents the
//! state store committed elsewhere, the progress of a write hold in flight,
//! the rollback tick and the rollout/bake timers. No branch awaits anything
//! long: a held switch is a state of the document (`switching`), its waits
//! run in spawned tasks that report back ([`crate::control::cutover`]).
//!
//! Every change goes the same way: the next [`StateDoc`] from a pure
//! function ([`crate::control::transition`]) → commit to the
//! [`StateStore`] → [`Controller::apply`] (table, gauges, events, view).
//! Nothing else stores into the table.

use crate::config::{Config, Diagnostic, PoolName};
use crate::control::analysis::drive::Analysis;
use crate::control::build::{build_table, BuildError};
use crate::control::cutover::{Cutover, LocalHold, Progress};
use crate::control::document::StateDoc;
use crate::control::events::{Event, EventKind, EventLog};
use crate::control::judge::RollbackJudge;
use crate::control::store::{FileStore, StateStore, StoreError, StoreEvent};
use crate::control::view::{ConfigErrorView, ControlView};
use crate::routing::{PoolRuntime, RoutingTable, Weights, WritesInFlight};
use crate::telemetry::metrics::Metrics;
use crate::upstream::health::HealthChecks;
use crate::upstream::EndpointState;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub use crate::control::commands::{Command, RolloutAction, SwitchReport};
pub use crate::control::document::Phase;
pub use crate::control::events::Actor;

const DAY_MS: u64 = 24 * 3600 * 1000;

/// State shared between the controller, the data plane and the admin API.
/// Only the controller stores into `table`, `view` and `config`.
pub struct Shared {
    pub table: Arc<ArcSwap<RoutingTable>>,
    pub view: ArcSwap<ControlView>,
    pub runtimes: [Arc<PoolRuntime>; 2],
    pub metrics: Arc<Metrics>,
    pub config: ArcSwap<Config>,
    pub events: EventLog,
    /// Writes being routed or in flight (what a write hold waits for).
    pub writes: Arc<WritesInFlight>,
    /// The config file's bytes as the last reload read them; None before
    /// the first reload or when the file could not be read. The file
    /// watcher asks for a reload only when the file differs from them, so
    /// an edit that `POST /reload` already applied is not reloaded again,
    /// and a file that comes back after a failed read is.
    pub config_read: ArcSwapOption<Vec<u8>>,
    /// Fleet mode: the fleet as this member sees it, kept by the
    /// membership task; None for a single proxy.
    pub fleet: ArcSwapOption<crate::control::view::FleetView>,
    /// Events, view changes and traffic samples as they happen (the
    /// dashboard's stream); sending on it never waits.
    pub feed: crate::control::feed::Feed,
    shutting_down: AtomicBool,
}

impl Shared {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The state moved on since the generation the caller saw.
    #[error("state is at generation {current}, not {expected}")]
    StaleGeneration { expected: u64, current: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error("{}", render_diagnostics(.0))]
    ConfigInvalid(Vec<Diagnostic>),
    #[error("refused: {0}")]
    Conflict(String),
    /// The command names something that does not exist (an endpoint).
    #[error("{0}")]
    NotFound(String),
    /// A switch with a write hold gave up; nothing changed.
    #[error("switch aborted: {}", .0.reason.as_deref().unwrap_or("max_hold exceeded"))]
    SwitchAborted(Box<crate::control::commands::SwitchReport>),
    /// The state store cannot take the change now (fleet mode: etcd).
    #[error("{0}")]
    Unavailable(String),
    /// The state store refused the change for a reason of its own.
    #[error(transparent)]
    Store(StoreError),
    #[error("the controller has stopped")]
    Stopped,
    #[error(transparent)]
    Build(#[from] BuildError),
}

fn render_diagnostics(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

pub type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

/// Answer a requester; one that went away is no error.
pub(crate) fn send<T>(reply: Reply<T>, r: Result<T, CommandError>) {
    if reply.send(r).is_err() {
        tracing::debug!("the requester went away before the answer");
    }
}

/// A cheap handle for sending commands to the controller.
#[derive(Clone)]
pub struct ControllerHandle {
    tx: mpsc::Sender<Command>,
}

/// Health checkers report every endpoint transition to the controller.
impl crate::upstream::health::HealthSink for ControllerHandle {
    fn transition(&self, ep: &crate::upstream::Endpoint, state: EndpointState, reason: String) {
        self.notify(Command::EndpointHealth {
            pool: ep.pool,
            address: ep.address.clone(),
            state,
            reason,
        });
    }
}

impl ControllerHandle {
    pub async fn request<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, CommandError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| CommandError::Stopped)?;
        rx.await.map_err(|_| CommandError::Stopped)?
    }

    /// Send a command that takes no reply; dropped (and logged) when the
    /// controller's inbox is full, so a caller on a timer never blocks.
    pub fn notify(&self, cmd: Command) {
        if let Err(e) = self.tx.try_send(cmd) {
            tracing::warn!(error = %e, "controller inbox full; notification dropped");
        }
    }
}

pub struct Controller {
    pub(crate) shared: Arc<Shared>,
    rx: mpsc::Receiver<Command>,
    pub(crate) store: Box<dyn StateStore>,
    /// The document in force: committed, and applied to the table.
    pub(crate) doc: StateDoc,
    /// The data plane's side of the document's hold, published in the table.
    pub(crate) held: Option<LocalHold>,
    /// The hold this controller drives: its progress and who waits for it.
    pub(crate) cutover: Option<Cutover>,
    /// Fleet mode: this member's side of every write hold, and the
    /// decision of the one in flight (the barrier).
    pub(crate) fleet_hold: Option<crate::control::fleet_hold::FleetHold>,
    /// The last PostgreSQL gate's figures, shown by status after its switch.
    pub(crate) last_gate: Option<crate::control::gate::DatabaseFigures>,
    pub(crate) progress_tx: mpsc::UnboundedSender<Progress>,
    pub(crate) progress_rx: mpsc::UnboundedReceiver<Progress>,
    pub(crate) judge: RollbackJudge,
    /// Monotonic ms of the last weight change: statistics before it do not count.
    pub(crate) changed_at_ms: u64,
    /// Both pools' counts since the last weight change: what the
    /// sequential judge weighs (the statistics ring holds only `window`).
    pub(crate) since_change: crate::control::fleet_judge::Publisher,
    pub(crate) config_path: Option<PathBuf>,
    pub(crate) loaded_at: String,
    pub(crate) config_error: Option<ConfigErrorView>,
    pub(crate) restart_needed: Option<String>,
    /// A reload the file watcher or a signal asked for while a hold was in
    /// flight: it runs when the hold ends.
    pub(crate) pending_reload: Option<Actor>,
    /// One checker per endpoint, kept in step with every table.
    pub(crate) health: Option<HealthChecks>,
    /// The config the process started with: what the sections applied only
    /// at start (listeners, admin.bind, limits, ...) still run on, whatever
    /// reloads stored since.
    pub(crate) started: Arc<Config>,
    /// The admin API's bearer token, replaced by a reload when the content
    /// of `admin.token_file` changed.
    pub(crate) admin_token: Option<Arc<ArcSwapOption<String>>>,
    /// The analysis checks: their tasks, and what their reports decided.
    pub(crate) analysis: Analysis,
}

/// Say at start which stored state the proxy resumes, from where, and that
/// it, not the config's `traffic.initial`, sets the weights: a warning when
/// they differ (a proxy that comes up at 70/30 with 100/0 in its config
/// must say why), else a plain line.
fn restored(doc: &StateDoc, origin: &str, initial: &crate::config::WeightsConfig) {
    let state = doc.describe();
    let config = format!("blue {}, green {}", initial.blue, initial.green);
    if Weights::from_config(initial) == doc.weights {
        tracing::info!(from = %origin, %state, "restored the stored state; it overrides traffic.initial ({config}), which it equals");
    } else {
        tracing::warn!(from = %origin, %state, "restored the stored state; its weights, not traffic.initial ({config}), are in force");
    }
}

impl Controller {
    /// The state file's store (or memory, without `state_file`), then
    /// [`Controller::with_store`].
    pub async fn new(
        cfg: Config,
        config_path: Option<PathBuf>,
        runtimes: [Arc<PoolRuntime>; 2],
        metrics: Arc<Metrics>,
    ) -> Result<(Controller, ControllerHandle, Arc<Shared>), CommandError> {
        let store = Box::new(FileStore::new(cfg.state_file.clone()));
        Self::with_store(cfg, config_path, runtimes, metrics, store).await
    }

    /// Load the stored document (or start from `cfg`), build the first
    /// table and publish it; then commit what a restart changes (a rollout
    /// resumes paused, a hold the old process left in flight ends).
    pub async fn with_store(
        cfg: Config,
        config_path: Option<PathBuf>,
        runtimes: [Arc<PoolRuntime>; 2],
        metrics: Arc<Metrics>,
        mut store: Box<dyn StateStore>,
    ) -> Result<(Controller, ControllerHandle, Arc<Shared>), CommandError> {
        let feed = crate::control::feed::Feed::default();
        // Before the first event is recorded, so `started` is sent too.
        let notify_rx = feed.subscribe();
        let events = EventLog::new(cfg.audit_log.as_deref(), feed.clone())
            .map_err(|e| CommandError::Invalid(e.to_string()))?;
        let now = crate::clock::unix_ms();
        let mut note = None;
        let doc = match store.load().await {
            Ok(Some(doc)) => {
                restored(&doc, &store.origin(), &cfg.traffic.initial);
                doc
            }
            Ok(None) => StateDoc::initial(Weights::from_config(&cfg.traffic.initial), now),
            Err(e) => {
                tracing::error!(error = %e, "state file unusable; starting from the config");
                note =
                    Some(Event::new(EventKind::StateFileError, Actor::Auto).reason(e.to_string()));
                StateDoc::initial(Weights::from_config(&cfg.traffic.initial), now)
            }
        };
        let table = build_table(&cfg, None, &runtimes, doc.generation, doc.weights, doc.live)?;
        let judge = RollbackJudge::new(&cfg.rollback);
        let started = Arc::new(cfg.clone());
        let shared = Arc::new(Shared {
            table: Arc::new(ArcSwap::from_pointee(table)),
            view: ArcSwap::from_pointee(ControlView::placeholder(&doc)),
            runtimes,
            metrics,
            config: ArcSwap::new(started.clone()),
            events,
            writes: Arc::new(WritesInFlight::default()),
            config_read: ArcSwapOption::empty(),
            fleet: ArcSwapOption::empty(),
            feed,
            shutting_down: AtomicBool::new(false),
        });
        crate::control::notify::spawn(
            notify_rx,
            Arc::downgrade(&shared),
            store.member_id().map(str::to_string),
            shared.metrics.analysis.clone(),
        );
        let (tx, rx) = mpsc::channel(256);
        let analysis = Analysis::new(report_sink(&tx), &cfg.analysis.checks);
        let (progress_tx, progress_rx) = mpsc::unbounded_channel();
        let fleet_hold = crate::control::fleet_hold::FleetHold::for_store(store.as_ref());
        let mut ctl = Controller {
            shared: shared.clone(),
            rx,
            store,
            doc,
            held: None,
            cutover: None,
            fleet_hold,
            last_gate: None,
            progress_tx,
            progress_rx,
            judge,
            changed_at_ms: crate::clock::now_ms(),
            since_change: crate::control::fleet_judge::Publisher::new(0, 0, crate::clock::now_ms()),
            config_path,
            loaded_at: crate::clock::rfc3339(now),
            config_error: None,
            restart_needed: None,
            pending_reload: None,
            health: None,
            started,
            admin_token: None,
            analysis,
        };
        ctl.judge.reset(tokio::time::Instant::now());
        ctl.publish_table();
        ctl.publish_view();
        ctl.sync_endpoint_gauges();
        if let Some(e) = note {
            ctl.shared.events.record(e);
        }
        // Nothing stored: the config's state becomes generation 1 (in
        // fleet mode, unless another member stored one first). Stored: a
        // restart is no change, unless the old process left something
        // running that cannot go on as it was.
        let next = match ctl.doc.generation {
            0 => Some(crate::control::transition::first(&ctl.doc, now)),
            // Fleet mode: another member's hold is that member's to end
            // (or, past its deadline, any member's: the barrier's).
            _ if ctl.fleet_hold.is_some() && !ctl.coordinates_hold() => None,
            _ => crate::control::transition::restarted(&ctl.doc, now),
        };
        if let Some(next) = next {
            if let Err(e) = ctl.commit(next).await {
                tracing::error!(error = %e, "the state at start was not stored");
            }
        }
        Ok((ctl, ControllerHandle { tx }, shared))
    }

    /// Hand over the health checkers, already reconciled with the first
    /// table; the controller keeps them in step with later tables.
    pub fn set_health_checks(&mut self, health: HealthChecks) {
        self.health = Some(health);
    }

    /// Fleet mode: unsafe requests are refused while `fence` is up; the
    /// table carries it from now on (reloads keep it).
    pub fn set_write_fence(&mut self, fence: Arc<crate::routing::WriteFence>) {
        let prev = self.shared.table.load_full();
        let mut settings = (*prev.settings).clone();
        settings.fence = Some(fence);
        self.shared.table.store(Arc::new(RoutingTable {
            generation: prev.generation,
            weights: prev.weights,
            live: prev.live,
            pools: prev.pools.clone(),
            settings: Arc::new(settings),
            hold: prev.hold.clone(),
        }));
    }

    /// Hand over the admin API's token, which reloads keep current.
    pub fn set_admin_token(&mut self, token: Arc<ArcSwapOption<String>>) {
        self.admin_token = Some(token);
    }

    /// The current phase, derived from the document.
    pub fn phase(&self) -> Phase {
        self.doc.phase()
    }

    pub fn candidate(&self) -> PoolName {
        self.doc.candidate()
    }

    /// Serve commands, store events, hold progress, the tick and the
    /// timers until every handle is dropped.
    pub async fn run(mut self) {
        let mut interval = self.shared.config.load().rollback.interval;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut store_events = self.store.events();
        // A hold in flight when this member started (fleet mode).
        self.fleet_on_doc();
        loop {
            let deadline = self.next_deadline();
            let hold_wake = self.fleet_hold_wake();
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => break,
                },
                Some(p) = self.progress_rx.recv() => self.on_progress(p).await,
                Some(ev) = recv_opt(&mut store_events) => self.on_store_event(ev),
                _ = tick.tick() => {
                    self.evaluate().await;
                    self.store_tick().await;
                }
                _ = sleep_until_opt(deadline) => self.on_timer().await,
                _ = sleep_until_opt(hold_wake) => {}
            }
            self.drive_fleet_hold().await;
            if !self.doc.switching() {
                if let Some(actor) = self.pending_reload.take() {
                    if let Err(e) = self.reload(actor).await {
                        tracing::warn!(error = %e, "the reload asked for during the hold failed");
                    }
                }
            }
            let configured = self.shared.config.load().rollback.interval;
            if configured != interval {
                interval = configured;
                tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            }
        }
    }

    /// The next rollout step or end of bake, as a tokio instant; none
    /// while a hold is in flight (timers wait for it).
    fn next_deadline(&self) -> Option<tokio::time::Instant> {
        // Out of touch (fleet mode), no automatic decision: the tick wakes
        // the loop, which looks again.
        if self.doc.switching() || !self.store.in_touch() || !self.store.leads() {
            return None;
        }
        // A due step waiting for the checks is no deadline: a check's
        // report wakes the loop, which looks again.
        let now = crate::clock::unix_ms();
        let step_waits = self.analysis.step_ready().is_err();
        let at = [
            self.doc
                .rollout
                .as_ref()
                .and_then(|r| r.next_step_at_unix_ms)
                .filter(|&t| !(step_waits && t <= now)),
            self.doc.bake.as_ref().map(|b| b.until_unix_ms),
        ]
        .into_iter()
        .flatten()
        .min()?;
        // Held to a day: the loop computes the deadline again after every
        // wake-up, and an Instant far in the future can overflow.
        let wait = at.saturating_sub(now).min(DAY_MS);
        Some(tokio::time::Instant::now() + Duration::from_millis(wait))
    }

    /// Rollout steps and the end of a bake.
    async fn on_timer(&mut self) {
        if !self.store.in_touch() || !self.store.leads() {
            return; // no automatic decision out of touch or off the lead; the timer fires again
        }
        let cfg = self.shared.config.load_full();
        let now = crate::clock::unix_ms();
        let step_allowed = self.analysis.step_ready().is_ok();
        if let Some(mut next) =
            crate::control::transition::timers_gated(&self.doc, &cfg, now, step_allowed)
        {
            self.attach_evidence(&mut next);
            if let Err(e) = self.commit(next).await {
                tracing::error!(error = %e, "a rollout step or the end of a bake was not stored");
            }
        }
    }

    /// A document another proxy committed (fleet mode).
    fn on_store_event(&mut self, ev: StoreEvent) {
        match ev {
            StoreEvent::Doc(doc) => {
                self.apply(*doc);
                self.follow_remote_hold();
            }
            StoreEvent::Resynced => tracing::info!("the state store read the state again"),
            // The barrier reads the acks after this event (drive_fleet_hold).
            StoreEvent::HoldNews => {}
        }
    }

    /// Retry what the store could not write, and show whether it could.
    async fn store_tick(&mut self) {
        let before = self.store.status();
        self.store.tick().await;
        if self.store.status() != before {
            self.publish_view();
        }
        self.retry_decision().await;
    }

    /// A weight change: restart grace, forget statistics from before.
    pub(crate) fn weights_changed(&mut self) {
        self.changed_at_ms = crate::clock::now_ms();
        self.since_change = crate::control::fleet_judge::Publisher::new(0, 0, self.changed_at_ms);
        self.judge.reset(tokio::time::Instant::now());
        self.analysis.step_began();
    }

    pub(crate) fn check_generation(&self, expected: Option<u64>) -> Result<(), CommandError> {
        match expected {
            Some(e) if e != self.doc.generation => Err(CommandError::StaleGeneration {
                expected: e,
                current: self.doc.generation,
            }),
            _ => Ok(()),
        }
    }
}

/// Where the check tasks send their reports: the controller's inbox,
/// through a weak sender, so the tasks never keep the controller running.
fn report_sink(tx: &mpsc::Sender<Command>) -> crate::control::analysis::runner::Sink {
    let weak = tx.downgrade();
    Arc::new(move |report| {
        if let Some(tx) = weak.upgrade() {
            ControllerHandle { tx }.notify(Command::CheckResult(Box::new(report)));
        }
    })
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn recv_opt(rx: &mut Option<mpsc::Receiver<StoreEvent>>) -> Option<StoreEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
