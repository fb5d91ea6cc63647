//! The controller task: the single writer of deployment state.
//!
//! It receives [`Command`]s with a oneshot reply, validates each against the
//! current state, builds the new [`RoutingTable`], swaps it in, and publishes
//! a [`ControlView`] for status. Nothing else stores into the table.

use crate::config::{Config, PoolName};
use crate::control::build::{build_table, BuildError};
use crate::control::events::{Event, EventKind, EventLog};
use crate::routing::{PoolRuntime, RoutingTable, Weights};
use crate::telemetry::metrics::Metrics;
use crate::upstream::health::HealthChecks;
use crate::upstream::EndpointState;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

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
    pub rollback_lock: Option<serde_json::Value>,
    pub config: ConfigView,
}

/// State shared between the controller, the data plane and the admin API.
/// Only the controller stores into `table` and `view`.
pub struct Shared {
    pub table: Arc<ArcSwap<RoutingTable>>,
    pub view: ArcSwap<ControlView>,
    pub runtimes: [Arc<PoolRuntime>; 2],
    pub metrics: Arc<Metrics>,
    pub config: ArcSwap<Config>,
    pub events: EventLog,
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

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The state moved on since the generation the caller saw.
    #[error("state is at generation {current}, not {expected}")]
    StaleGeneration { expected: u64, current: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error("refused: {0}")]
    Conflict(String),
    #[error("the controller has stopped")]
    Stopped,
    #[error(transparent)]
    Build(#[from] BuildError),
}

pub type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

pub enum Command {
    /// An endpoint changed health (active checks) or was ejected (passive).
    /// Recorded as `endpoint_down` / `endpoint_up`; no reply.
    EndpointHealth {
        pool: PoolName,
        address: String,
        state: EndpointState,
        reason: String,
    },
    SetWeights {
        weights: Weights,
        if_generation: Option<u64>,
        actor: Actor,
        reply: Reply<ControlView>,
    },
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
    /// Send a command that takes no reply; dropped (and logged) when the
    /// controller's inbox is full, so a caller on a timer never blocks.
    pub fn notify(&self, cmd: Command) {
        if let Err(e) = self.tx.try_send(cmd) {
            tracing::warn!(error = %e, "controller inbox full; notification dropped");
        }
    }

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
}

pub struct Controller {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Command>,
    generation: u64,
    weights: Weights,
    live: PoolName,
    phase: Phase,
    config_path: Option<PathBuf>,
    loaded_at: String,
    /// One checker per endpoint. A reload, once it stored the new table,
    /// calls `health.reconcile(table.endpoints(), &CheckSettings::from_config(..)?)`
    /// and `routing::drain::drain_removed(build::removed_endpoints(&prev, &table), ..)`.
    health: Option<HealthChecks>,
}

impl Controller {
    /// Build the first table from `cfg` and publish it.
    pub fn new(
        cfg: Config,
        config_path: Option<PathBuf>,
        runtimes: [Arc<PoolRuntime>; 2],
        metrics: Arc<Metrics>,
    ) -> Result<(Controller, ControllerHandle, Arc<Shared>), CommandError> {
        let events = EventLog::new(cfg.audit_log.as_deref())
            .map_err(|e| CommandError::Invalid(e.to_string()))?;
        let weights = Weights::from_config(&cfg.traffic.initial);
        let live = if weights.bp(PoolName::Green) > weights.bp(PoolName::Blue) {
            PoolName::Green
        } else {
            PoolName::Blue
        };
        let generation = 1;
        let table = build_table(&cfg, None, &runtimes, generation, weights, live)?;
        let loaded_at = crate::clock::rfc3339(crate::clock::unix_ms());
        let phase = if weights.sole_pool().is_some() {
            Phase::Stable
        } else {
            Phase::Paused
        };
        let view = ControlView {
            generation,
            phase,
            live,
            candidate: live.other(),
            weights,
            rollout: None,
            rollback_lock: None,
            config: ConfigView {
                path: config_path.clone(),
                loaded_at: loaded_at.clone(),
                last_error: None,
            },
        };
        let shared = Arc::new(Shared {
            table: Arc::new(ArcSwap::from_pointee(table)),
            view: ArcSwap::from_pointee(view),
            runtimes,
            metrics,
            config: ArcSwap::from_pointee(cfg),
            events,
            shutting_down: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel(64);
        let ctl = Controller {
            shared: shared.clone(),
            rx,
            generation,
            weights,
            live,
            phase,
            config_path,
            loaded_at,
            health: None,
        };
        Ok((ctl, ControllerHandle { tx }, shared))
    }

    /// Hand over the health checkers, already reconciled with the first
    /// table; the controller keeps them in step with later tables.
    pub fn set_health_checks(&mut self, health: HealthChecks) {
        self.health = Some(health);
    }

    /// Serve commands until every handle is dropped.
    pub async fn run(mut self) {
        while let Some(cmd) = self.rx.recv().await {
            self.handle(cmd);
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::EndpointHealth {
                pool,
                address,
                state,
                reason,
            } => {
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
            }
            Command::SetWeights {
                weights,
                if_generation,
                actor,
                reply,
            } => {
                let r = self
                    .check_generation(if_generation)
                    .and_then(|()| self.set_weights(weights, actor));
                let _ignored = reply.send(r);
            }
        }
    }

    fn check_generation(&self, expected: Option<u64>) -> Result<(), CommandError> {
        match expected {
            Some(e) if e != self.generation => Err(CommandError::StaleGeneration {
                expected: e,
                current: self.generation,
            }),
            _ => Ok(()),
        }
    }

    fn set_weights(&mut self, weights: Weights, actor: Actor) -> Result<ControlView, CommandError> {
        let from = self.weights;
        self.weights = weights;
        if let Some(sole) = weights.sole_pool() {
            self.live = sole;
            self.phase = Phase::Stable;
        } else {
            self.phase = Phase::Paused;
        }
        let view = self.publish()?;
        self.shared.events.record(
            Event::new(EventKind::WeightsChanged, actor)
                .from(from)
                .to(weights)
                .weights(weights),
        );
        Ok(view)
    }

    /// Build and swap in a table for the current state; publish the view.
    fn publish(&mut self) -> Result<ControlView, CommandError> {
        let prev = self.shared.table.load_full();
        self.generation += 1;
        let table = RoutingTable {
            generation: self.generation,
            weights: self.weights,
            live: self.live,
            pools: prev.pools.clone(),
            settings: prev.settings.clone(),
        };
        let table = Arc::new(table);
        self.shared.table.store(table.clone());
        let drain = self.shared.config.load().drain.timeout;
        crate::routing::drain::weights_changed(&prev, &table, drain);
        let view = self.view();
        self.shared.view.store(Arc::new(view.clone()));
        Ok(view)
    }

    fn view(&self) -> ControlView {
        let prev = self.shared.view.load();
        ControlView {
            generation: self.generation,
            phase: self.phase,
            live: self.live,
            candidate: self.live.other(),
            weights: self.weights,
            rollout: None,
            rollback_lock: None,
            config: ConfigView {
                path: self.config_path.clone(),
                loaded_at: self.loaded_at.clone(),
                last_error: prev.config.last_error.clone(),
            },
        }
    }
}
