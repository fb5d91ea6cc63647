//! The set of running checkers, one per endpoint, reconciled against each new
//! routing table: checkers start for new endpoints and stop for removed ones,
//! keyed by endpoint `Arc` identity, so an endpoint carried over by a reload
//! keeps its checker, its counters and its state.
//!
//! The controller owns the set (it builds every table); a reload calls
//! [`HealthChecks::reconcile`] with the new table's endpoints and settings.

use crate::telemetry::metrics::Metrics;
use crate::upstream::health::checker::Checker;
use crate::upstream::health::{CheckSettings, HttpProbe, PoolConnectors, Probe};
use crate::upstream::{Endpoint, EndpointState};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where checkers report every change of an endpoint's health state
/// (`unknown`, `healthy`, `unhealthy`, `ejected`). Called from the checker's
/// task; must not block.
pub trait HealthSink: Send + Sync + 'static {
    fn transition(&self, ep: &Endpoint, state: EndpointState, reason: String);
}

/// What a reconciliation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    pub started: usize,
    pub stopped: usize,
}

struct Running {
    ep: Arc<Endpoint>,
    cancel: CancellationToken,
}

pub struct HealthChecks<P: Probe = HttpProbe> {
    settings: Arc<CheckSettings>,
    probe: Arc<P>,
    sink: Arc<dyn HealthSink>,
    /// `switchyard_endpoint_healthy` series appear and go with their checker.
    metrics: Option<Arc<Metrics>>,
    clock: fn() -> u64,
    /// Keyed by the endpoint's address in memory; the `Arc` held in the value
    /// keeps that address from being reused while the entry lives.
    running: HashMap<usize, Running>,
    root: CancellationToken,
    tracker: TaskTracker,
}

fn key(ep: &Arc<Endpoint>) -> usize {
    Arc::as_ptr(ep) as usize
}

impl HealthChecks<HttpProbe> {
    /// No checker runs until the first [`reconcile`](Self::reconcile).
    /// Checks reach each endpoint the way its pool does (TLS, h2), with the
    /// connector `connectors` gives for it.
    pub fn new(
        settings: CheckSettings,
        sink: Arc<dyn HealthSink>,
        metrics: Arc<Metrics>,
        connectors: Arc<dyn PoolConnectors>,
    ) -> Self {
        let probe = HttpProbe {
            connectors: Some(connectors),
        };
        let mut hc = Self::with_probe(settings, Arc::new(probe), sink, crate::clock::now_ms);
        hc.metrics = Some(metrics);
        hc
    }
}

impl<P: Probe> HealthChecks<P> {
    /// With another probe and clock (tests), and no metrics.
    pub fn with_probe(
        settings: CheckSettings,
        probe: Arc<P>,
        sink: Arc<dyn HealthSink>,
        clock: fn() -> u64,
    ) -> Self {
        HealthChecks {
            settings: Arc::new(settings),
            probe,
            sink,
            metrics: None,
            clock,
            running: HashMap::new(),
            root: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    /// Run exactly one checker per endpoint in `endpoints`, with `settings`.
    /// Changed settings restart every checker; each restarts from its
    /// endpoint's current verdict, so no state is lost. Must run inside a
    /// tokio runtime.
    pub fn reconcile<'a>(
        &mut self,
        endpoints: impl IntoIterator<Item = &'a Arc<Endpoint>>,
        settings: &CheckSettings,
    ) -> Reconciled {
        let mut done = Reconciled::default();
        if *settings != *self.settings {
            for (_, run) in self.running.drain() {
                run.cancel.cancel();
                done.stopped += 1;
            }
            self.settings = Arc::new(settings.clone());
        }
        let wanted: HashMap<usize, &Arc<Endpoint>> =
            endpoints.into_iter().map(|ep| (key(ep), ep)).collect();
        // Stop before starting: a removed endpoint and its replacement may
        // share an address, and so a gauge series.
        let metrics = self.metrics.clone();
        self.running.retain(|k, run| {
            let keep = wanted.contains_key(k);
            if !keep {
                run.cancel.cancel();
                if let Some(m) = &metrics {
                    m.remove_endpoint(run.ep.pool, &run.ep.address);
                }
                done.stopped += 1;
            }
            keep
        });
        for (k, ep) in wanted {
            if !self.running.contains_key(&k) {
                self.start(ep);
                done.started += 1;
            }
        }
        done
    }

    fn start(&mut self, ep: &Arc<Endpoint>) {
        if let Some(m) = &self.metrics {
            let up = !matches!(
                ep.health_state((self.clock)()),
                EndpointState::Unhealthy | EndpointState::Ejected
            );
            m.set_endpoint_healthy(ep.pool, &ep.address, up);
        }
        let cancel = self.root.child_token();
        let checker = Checker {
            ep: ep.clone(),
            settings: self.settings.clone(),
            probe: self.probe.clone(),
            sink: self.sink.clone(),
            clock: self.clock,
            cancel: cancel.clone(),
        };
        self.tracker.spawn(checker.run());
        self.running.insert(
            key(ep),
            Running {
                ep: ep.clone(),
                cancel,
            },
        );
    }

    /// Checkers running now.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// A handle that stops every checker, for whoever shuts down.
    pub fn stopper(&self) -> HealthStop {
        HealthStop {
            root: self.root.clone(),
            tracker: self.tracker.clone(),
        }
    }
}

impl<P: Probe> Drop for HealthChecks<P> {
    fn drop(&mut self) {
        self.root.cancel();
    }
}

/// Stops every checker of a [`HealthChecks`] set.
#[derive(Clone)]
pub struct HealthStop {
    root: CancellationToken,
    tracker: TaskTracker,
}

impl HealthStop {
    /// Cancel every checker and wait until all have ended.
    pub async fn stop(self) {
        self.root.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}
