//! What the controller publishes for status ([`ControlView`]), and the
//! local observations it records without a change of deployment state:
//! endpoint health transitions and the per-endpoint gauges.
//!
//! The view is derived from the applied document plus the controller's
//! local facts (config file, store status); it is never read back.

use crate::config::PoolName;
use crate::control::controller::Controller;
use crate::control::document::{HoldDoc, Phase, RollbackLock, StateDoc};
use crate::control::events::{Actor, Event, EventKind};
use crate::control::rollout::Rollout;
use crate::control::store::StoreStatus;
use crate::routing::Weights;
use crate::upstream::EndpointState;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

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
    /// The write hold in flight (phase `switching`), null otherwise.
    pub hold: Option<HoldDoc>,
    /// The PostgreSQL gate of the switch in flight, else of the last one:
    /// LSNs, the lag over time, the promotion (SPEC.md section 13).
    pub gate: Option<crate::control::gate::DatabaseFigures>,
    pub config: ConfigView,
    pub state_file: StoreStatus,
}

impl ControlView {
    /// The view before the controller published its first.
    pub(crate) fn placeholder(doc: &StateDoc) -> Self {
        ControlView {
            generation: doc.generation,
            phase: Phase::Stable,
            live: doc.live,
            candidate: doc.candidate(),
            weights: doc.weights,
            rollout: None,
            bake: None,
            rollback_lock: None,
            rollback_armed: false,
            hold: None,
            gate: None,
            config: ConfigView {
                path: None,
                loaded_at: String::new(),
                last_error: None,
                restart_needed: None,
            },
            state_file: StoreStatus::default(),
        }
    }
}

impl Controller {
    fn view(&self) -> ControlView {
        let doc = &self.doc;
        ControlView {
            generation: doc.generation,
            phase: doc.phase(),
            live: doc.live,
            candidate: doc.candidate(),
            weights: doc.weights,
            rollout: doc.rollout.as_ref().map(Rollout::view),
            bake: doc.bake.as_ref().map(|b| {
                serde_json::json!({"pool": b.pool, "until": crate::clock::rfc3339(b.until_unix_ms)})
            }),
            rollback_lock: doc.rollback_lock.clone(),
            rollback_armed: doc.armed() && self.shared.config.load().rollback.enabled,
            hold: doc.hold_in_flight().cloned(),
            gate: self.gate_view(),
            config: ConfigView {
                path: self.config_path.clone(),
                loaded_at: self.loaded_at.clone(),
                last_error: self.config_error.clone(),
                restart_needed: self.restart_needed.clone(),
            },
            state_file: self.store.status(),
        }
    }

    /// Publish the view (after a change, or alone when only local facts
    /// moved: a rejected reload, the store's status).
    pub(crate) fn publish_view(&mut self) -> ControlView {
        let view = self.view();
        self.shared.view.store(Arc::new(view.clone()));
        self.shared.feed.send(crate::control::feed::Change::Status);
        view
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

    /// An endpoint changed health: gauge, event, view. Local to this proxy:
    /// no document changes.
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

/// `status.fleet` (SPEC.md section 9): this member and the fleet as it
/// sees it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FleetView {
    pub member_id: String,
    pub connected: bool,
    /// The member that leads, if any.
    pub leader: Option<String>,
    pub members: Vec<MemberView>,
}

/// One member, as it last published itself.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct MemberView {
    pub id: String,
    pub admin: String,
    #[serde(default)]
    pub version: String,
    pub generation: u64,
    /// When the member last published itself (RFC 3339).
    pub last_seen: String,
    pub connected: bool,
    #[serde(default)]
    pub fenced: bool,
    pub healthy: HealthyView,
    pub rps: f64,
    pub error_rate: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct HealthyView {
    pub blue: usize,
    pub green: usize,
}
