//! The controller task: the single writer of deployment state.
//!
//! It receives [`Command`]s with a oneshot reply, validates each against the
//! current phase, builds the new [`RoutingTable`], swaps it in, records an
//! event, persists the state file and publishes a [`ControlView`] for status.
//! Its timers drive rollout steps, the end of a bake, and the automatic
//! rollback evaluation. Nothing else stores into the table.

use crate::config::{Config, Diagnostic, PoolName};
use crate::control::build::{build_table, BuildError};
use crate::control::events::{Event, EventKind, EventLog};
use crate::control::rollout::Rollout;
use crate::control::judge::RollbackJudge;
use crate::control::state::{self, Bake, PersistedState, RollbackLock};
use crate::routing::{Hold, PoolRuntime, RoutingTable, Weights, WritesInFlight};
use crate::telemetry::metrics::Metrics;
use crate::upstream::health::HealthChecks;
use crate::upstream::EndpointState;
use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub use crate::control::commands::{Command, RolloutAction, SwitchReport};

const DAY_MS: u64 = 24 * 3600 * 1000;

/// The deployment phase (SPEC.md section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Stable,
    Rolling,
    Paused,
    Switching,
    Baking,
}

/// A config error as status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigErrorView {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigView {
    pub path: Option<PathBuf>,
    pub loaded_at: String,
    pub last_error: Option<ConfigErrorView>,
    /// Set while the file differs from the running config in something only
    /// a restart applies (listeners, admin.bind, limits, ...).
    pub restart_needed: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateFileView {
    pub path: Option<PathBuf>,
    pub last_error: Option<String>,
}

/// What the controller publishes after every change, for status.
#[derive(Debug, Clone, Serialize)]
pub struct ControlView {
    pub generation: u64,
    pub phase: Phase,
    pub live: PoolName,
    pub candidate: PoolName,
    pub weights: Weights,
    pub rollout: Option<serde_json::Value>,
    pub bake: Option<serde_json::Value>,
    pub rollback_lock: Option<RollbackLock>,
    pub rollback_armed: bool,
    pub config: ConfigView,
    pub state_file: StateFileView,
}

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

/// Who asked for a change (SPEC.md section 3, events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
    Admin,
    Config,
    Auto,
    Signal,
}

/// `admin`, `config`, `auto`, `signal`: the API's words, for the log.
impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::control::events::api_word(self, f)
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
    /// A switch with a write hold gave up; nothing changed.
    #[error("switch aborted: {}", .0.reason.as_deref().unwrap_or("max_hold exceeded"))]
    SwitchAborted(Box<crate::control::commands::SwitchReport>),
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
    pub(crate) generation: u64,
    pub(crate) live: PoolName,
    pub(crate) weights: Weights,
    pub(crate) rollout: Option<Rollout>,
    pub(crate) bake: Option<Bake>,
    pub(crate) lock: Option<RollbackLock>,
    pub(crate) switching: bool,
    /// The hold of a switch in progress, published in the table.
    pub(crate) hold: Option<Arc<Hold>>,
    pub(crate) judge: RollbackJudge,
    /// Monotonic ms of the last weight change: statistics before it do not count.
    pub(crate) changed_at_ms: u64,
    pub(crate) config_path: Option<PathBuf>,
    pub(crate) loaded_at: String,
    pub(crate) config_error: Option<ConfigErrorView>,
    pub(crate) restart_needed: Option<String>,
    state_file: Option<PathBuf>,
    state_error: Option<String>,
    /// One checker per endpoint, kept in step with every table.
    pub(crate) health: Option<HealthChecks>,
    /// The config the process started with: what the sections applied only
    /// at start (listeners, admin.bind, limits, ...) still run on, whatever
    /// reloads stored since.
    pub(crate) started: Arc<Config>,
    /// The admin API's bearer token, replaced by a reload when the content
    /// of `admin.token_file` changed.
    pub(crate) admin_token: Option<Arc<ArcSwapOption<String>>>,
}

impl Controller {
    /// Restore the state file (or start from `cfg`), build the first table
    /// and publish it.
    pub fn new(
        cfg: Config,
        config_path: Option<PathBuf>,
        runtimes: [Arc<PoolRuntime>; 2],
        metrics: Arc<Metrics>,
    ) -> Result<(Controller, ControllerHandle, Arc<Shared>), CommandError> {
        let events = EventLog::new(cfg.audit_log.as_deref())
            .map_err(|e| CommandError::Invalid(e.to_string()))?;
        let mut notes = Vec::new();
        let restored = match cfg.state_file.as_deref().map(state::load) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::error!(error = %e, "state file unusable; starting from the config");
                notes
                    .push(Event::new(EventKind::StateFileError, Actor::Auto).reason(e.to_string()));
                None
            }
            None => None,
        };
        let (generation, live, weights, mut rollout, bake, lock) = match restored {
            Some(s) => (
                s.generation,
                s.live,
                s.weights,
                s.rollout,
                s.bake,
                s.rollback_lock,
            ),
            None => {
                let weights = Weights::from_config(&cfg.traffic.initial);
                let live = if weights.bp(PoolName::Green) > weights.bp(PoolName::Blue) {
                    PoolName::Green
                } else {
                    PoolName::Blue
                };
                (0, live, weights, None, None, None)
            }
        };
        if let Some(r) = rollout.as_mut().filter(|r| !r.paused) {
            r.pause();
            notes.push(
                Event::new(EventKind::RolloutPaused, Actor::Auto)
                    .to(r.view())
                    .weights(weights)
                    .reason("restarted during a rollout: it resumes paused"),
            );
        }
        let table = build_table(&cfg, None, &runtimes, generation, weights, live)?;
        let judge = RollbackJudge::new(&cfg.rollback);
        let state_file = cfg.state_file.clone();
        let started = Arc::new(cfg.clone());
        let placeholder = ControlView {
            generation,
            phase: Phase::Stable,
            live,
            candidate: live.other(),
            weights,
            rollout: None,
            bake: None,
            rollback_lock: None,
            rollback_armed: false,
            config: ConfigView {
                path: None,
                loaded_at: String::new(),
                last_error: None,
                restart_needed: None,
            },
            state_file: StateFileView {
                path: None,
                last_error: None,
            },
        };
        let shared = Arc::new(Shared {
            table: Arc::new(ArcSwap::from_pointee(table)),
            view: ArcSwap::from_pointee(placeholder),
            runtimes,
            metrics,
            config: ArcSwap::new(started.clone()),
            events,
            writes: Arc::new(WritesInFlight::default()),
            config_read: ArcSwapOption::empty(),
            shutting_down: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel(256);
        let mut ctl = Controller {
            shared: shared.clone(),
            rx,
            generation,
            live,
            weights,
            rollout,
            bake,
            lock,
            switching: false,
            hold: None,
            judge,
            changed_at_ms: crate::clock::now_ms(),
            config_path,
            loaded_at: crate::clock::rfc3339(crate::clock::unix_ms()),
            config_error: None,
            restart_needed: None,
            state_file,
            state_error: None,
            health: None,
            started,
            admin_token: None,
        };
        ctl.judge.reset(tokio::time::Instant::now());
        ctl.publish(None);
        ctl.sync_endpoint_gauges();
        for e in notes {
            ctl.shared.events.record(e);
        }
        Ok((ctl, ControllerHandle { tx }, shared))
    }

    /// Hand over the health checkers, already reconciled with the first
    /// table; the controller keeps them in step with later tables.
    pub fn set_health_checks(&mut self, health: HealthChecks) {
        self.health = Some(health);
    }

    /// Hand over the admin API's token, which reloads keep current.
    pub fn set_admin_token(&mut self, token: Arc<ArcSwapOption<String>>) {
        self.admin_token = Some(token);
    }

    /// The current phase, derived from the state.
    pub fn phase(&self) -> Phase {
        if self.switching {
            Phase::Switching
        } else if let Some(r) = &self.rollout {
            if r.paused {
                Phase::Paused
            } else {
                Phase::Rolling
            }
        } else if self.bake.is_some() {
            Phase::Baking
        } else if self.weights.sole_pool() == Some(self.live) {
            Phase::Stable
        } else {
            // A manual split outside a rollout.
            Phase::Paused
        }
    }

    pub fn candidate(&self) -> PoolName {
        self.live.other()
    }

    /// Automatic rollback watches whenever the candidate takes traffic.
    pub fn armed(&self) -> bool {
        !self.switching && self.weights.bp(self.candidate()) > 0
    }

    /// Serve commands and timers until every handle is dropped.
    pub async fn run(mut self) {
        let mut interval = self.shared.config.load().rollback.interval;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => break,
                },
                _ = tick.tick() => {
                    self.evaluate().await;
                    self.retry_persist();
                }
                _ = sleep_until_opt(deadline) => self.on_timer(),
            }
            let configured = self.shared.config.load().rollback.interval;
            if configured != interval {
                interval = configured;
                tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            }
        }
    }

    /// The next rollout step or end of bake, as a tokio instant.
    fn next_deadline(&self) -> Option<tokio::time::Instant> {
        let at = [
            self.rollout.as_ref().and_then(|r| r.next_step_at_unix_ms),
            self.bake.as_ref().map(|b| b.until_unix_ms),
        ]
        .into_iter()
        .flatten()
        .min()?;
        // Held to a day: the loop computes the deadline again after every
        // wake-up, and an Instant far in the future can overflow.
        let wait = at.saturating_sub(crate::clock::unix_ms()).min(DAY_MS);
        Some(tokio::time::Instant::now() + Duration::from_millis(wait))
    }

    /// A weight change: restart grace, forget statistics from before.
    pub(crate) fn weights_changed(&mut self) {
        self.changed_at_ms = crate::clock::now_ms();
        self.judge.reset(tokio::time::Instant::now());
    }

    pub(crate) fn check_generation(&self, expected: Option<u64>) -> Result<(), CommandError> {
        match expected {
            Some(e) if e != self.generation => Err(CommandError::StaleGeneration {
                expected: e,
                current: self.generation,
            }),
            _ => Ok(()),
        }
    }

    /// Publish the current state: a new table (`next` when the pools or
    /// settings changed, else the current ones with new weights), the view,
    /// the weight gauges and the state file.
    pub(crate) fn publish(&mut self, next: Option<RoutingTable>) -> ControlView {
        self.generation += 1;
        let prev = self.shared.table.load_full();
        let mut table = next.unwrap_or_else(|| RoutingTable {
            generation: 0,
            weights: self.weights,
            live: self.live,
            pools: prev.pools.clone(),
            settings: prev.settings.clone(),
            hold: None,
        });
        table.hold = self.hold.clone();
        table.generation = self.generation;
        table.weights = self.weights;
        table.live = self.live;
        let table = Arc::new(table);
        self.shared.table.store(table.clone());
        let drain = self.shared.config.load().drain.timeout;
        crate::routing::drain::weights_changed(&prev, &table, drain);
        for p in PoolName::ALL {
            self.shared
                .metrics
                .pool(p)
                .set_weight(self.weights.percent(p));
        }
        self.persist();
        self.publish_view()
    }

    /// Swap in a table rebuilt from an unchanged config under the same
    /// generation: the deployment state did not move, so an
    /// `if_generation` read before it still holds; the table is still
    /// replaced because files it was built from (an upstream CA bundle)
    /// may have changed.
    pub(crate) fn replace_table(&mut self, mut table: RoutingTable) {
        table.hold = self.hold.clone();
        table.generation = self.generation;
        table.weights = self.weights;
        table.live = self.live;
        self.shared.table.store(Arc::new(table));
    }

    /// Publish the view alone (e.g. a rejected reload changes no state).
    pub(crate) fn publish_view(&mut self) -> ControlView {
        let view = self.view();
        self.shared.view.store(Arc::new(view.clone()));
        view
    }

    /// After a failed write (full disk, read-only directory), try again at
    /// every tick, so the file is current as soon as the disk allows.
    fn retry_persist(&mut self) {
        if self.state_error.is_some() {
            self.persist();
            if self.state_error.is_none() {
                tracing::info!("state file written again");
                self.publish_view();
            }
        }
    }

    fn persist(&mut self) {
        let Some(path) = self.state_file.clone() else {
            return;
        };
        let snapshot = PersistedState {
            version: state::STATE_VERSION,
            generation: self.generation,
            live: self.live,
            weights: self.weights,
            rollout: self.rollout.clone(),
            bake: self.bake.clone(),
            rollback_lock: self.lock.clone(),
            saved_at: crate::clock::rfc3339(crate::clock::unix_ms()),
        };
        match state::save(&path, &snapshot) {
            Ok(()) => self.state_error = None,
            Err(e) => {
                let msg = e.to_string();
                // Retried every tick: say it once per distinct failure.
                if self.state_error.as_deref() != Some(msg.as_str()) {
                    tracing::error!(error = %e, "state not persisted; the change is kept in memory");
                }
                self.state_error = Some(msg);
            }
        }
    }

    fn view(&self) -> ControlView {
        ControlView {
            generation: self.generation,
            phase: self.phase(),
            live: self.live,
            candidate: self.candidate(),
            weights: self.weights,
            rollout: self.rollout.as_ref().map(Rollout::view),
            bake: self.bake.as_ref().map(|b| {
                serde_json::json!({"pool": b.pool, "until": crate::clock::rfc3339(b.until_unix_ms)})
            }),
            rollback_lock: self.lock.clone(),
            rollback_armed: self.armed() && self.shared.config.load().rollback.enabled,
            config: ConfigView {
                path: self.config_path.clone(),
                loaded_at: self.loaded_at.clone(),
                last_error: self.config_error.clone(),
                restart_needed: self.restart_needed.clone(),
            },
            state_file: StateFileView {
                path: self.state_file.clone(),
                last_error: self.state_error.clone(),
            },
        }
    }

    /// `switchyard_endpoint_healthy` for every endpoint of the current table
    /// (1 while it may serve), so each has a series from the start.
    pub(crate) fn sync_endpoint_gauges(&self) {
        let table = self.shared.table.load();
        let now = crate::clock::now_ms();
        for p in PoolName::ALL {
            for e in &table.pool(p).endpoints {
                self.shared
                    .metrics
                    .set_endpoint_healthy(p, &e.address, e.is_available(now));
            }
        }
    }

    pub(crate) fn record_endpoint_health(
        &mut self,
        pool: PoolName,
        address: String,
        state: EndpointState,
        reason: String,
    ) {
        let up = matches!(state, EndpointState::Healthy | EndpointState::Unknown);
        self.shared.metrics.set_endpoint_healthy(pool, &address, up);
        let kind = match state {
            EndpointState::Healthy | EndpointState::Unknown => EventKind::EndpointUp,
            EndpointState::Ejected => EventKind::EndpointEjected,
            _ => EventKind::EndpointDown,
        };
        self.shared.events.record(
            Event::new(kind, Actor::Auto)
                .to(serde_json::json!({"pool": pool, "endpoint": address, "state": state}))
                .reason(reason),
        );
        self.publish_view();
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
